//! The streaming-media server (seed ¶41, ¶49-¶50, ¶61-¶63): maps a stream's address
//! information to a camera, pulls the camera over RTSP once however many viewers watch, muxes
//! FLV and serves it as HTTP-FLV at `GET /{stream}/{n}.flv`.
//!
//! Answers: 200 `video/x-flv` streaming (headers as soon as the camera plays); 400 for a
//! malformed path; 404 with a JSON reason for a stream it has no camera for; 502 when the
//! camera is unreachable or silent within the RTSP timeout. `GET /v1/streams` lists the
//! running pulls. `/healthz` and `/metrics` come from `svckit::serve`.

pub mod channel;
pub mod metrics;
pub mod pull;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, info_span, warn};
use url::Url;

use self::channel::{ChannelSettings, Hub, JoinError, Status, viewer_stream};
use self::metrics::MediaMetrics;
use self::pull::PullSettings;
use crate::error::{Classify, ConfigError, MediaError, PullError, error_body};
use crate::forwarder::MEDIA_ROUTE;
use crate::route::{is_valid_name, parse_stream_path};

/// Media server settings (`[media]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The server's unique label (seed ¶53), e.g. `media-a`.
    pub label: String,
    /// The namespace it belongs to (seed ¶44), e.g. `NameSpaceA`.
    pub namespace: String,
    /// HTTP listen address (default `127.0.0.1:7410`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Stream address information -> camera RTSP URL, e.g.
    /// `main_stream = "rtsp://127.0.0.1:8554/main_stream"`; channel `n` > 0 of a stream is
    /// the key `stream/n`.
    pub cameras: BTreeMap<String, String>,
    /// Time allowed to reach `PLAY` and the first frame, ms (default 5000); a camera that
    /// misses it is answered with 502.
    pub rtsp_timeout_ms: u64,
    /// Longest silence between frames before the pull is dropped, ms (default 5000).
    pub frame_timeout_ms: u64,
    /// How long a pull outlives its last viewer, ms (default 5000).
    pub idle_stop_ms: u64,
    /// Broadcast queue length in tags (default 512, about 7 s of 25 fps video with audio); a
    /// viewer further behind skips ahead to the next key frame.
    pub viewer_backlog_tags: usize,
    /// Largest group of pictures cached for new viewers, bytes (default 16 MiB).
    pub gop_cache_max_bytes: usize,
    /// Lease length of the registration, ms (default 3000; renewed every third of it).
    pub lease_ms: u64,
    /// RTP transport to cameras: `tcp` (interleaved, default) or `udp`.
    pub transport: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            label: String::new(),
            namespace: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7410)),
            cameras: BTreeMap::new(),
            rtsp_timeout_ms: 5000,
            frame_timeout_ms: 5000,
            idle_stop_ms: 5000,
            viewer_backlog_tags: 512,
            gop_cache_max_bytes: 16 << 20,
            lease_ms: 3000,
            transport: "tcp".to_owned(),
        }
    }
}

impl MediaConfig {
    /// Checks names, camera URLs and ranges; returns the parsed camera map.
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending key.
    pub fn validate(&self) -> Result<BTreeMap<String, Url>, ConfigError> {
        for (key, value) in [
            ("media.label", &self.label),
            ("media.namespace", &self.namespace),
        ] {
            if value.is_empty() {
                return Err(ConfigError::Missing { key });
            }
            if !is_valid_name(value) {
                return Err(ConfigError::Invalid {
                    key: key.to_owned(),
                    value: value.clone(),
                    reason: "must be 1-128 of [A-Za-z0-9_.-]",
                });
            }
        }
        if !matches!(self.transport.as_str(), "tcp" | "udp") {
            return Err(ConfigError::Invalid {
                key: "media.transport".to_owned(),
                value: self.transport.clone(),
                reason: "must be `tcp` or `udp`",
            });
        }
        for (key, value, min) in [
            ("media.rtsp_timeout_ms", self.rtsp_timeout_ms, 100),
            ("media.frame_timeout_ms", self.frame_timeout_ms, 100),
            ("media.lease_ms", self.lease_ms, 100),
        ] {
            if value < min {
                return Err(ConfigError::Invalid {
                    key: key.to_owned(),
                    value: value.to_string(),
                    reason: "must be at least 100 ms",
                });
            }
        }
        let mut cameras = BTreeMap::new();
        for (stream, url) in &self.cameras {
            let valid_key = match stream.split_once('/') {
                Some((name, n)) => {
                    is_valid_name(name) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                }
                None => is_valid_name(stream),
            };
            if !valid_key {
                return Err(ConfigError::Invalid {
                    key: format!("media.cameras.{stream}"),
                    value: stream.clone(),
                    reason: "stream must be a name of [A-Za-z0-9_.-], optionally `/n`",
                });
            }
            let parsed = Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "rtsp" | "rtsps") && u.host().is_some())
                .ok_or_else(|| ConfigError::Invalid {
                    key: format!("media.cameras.{stream}"),
                    value: redact_userinfo(url),
                    reason: "must be an rtsp:// URL with a host",
                })?;
            cameras.insert(stream.clone(), parsed);
        }
        Ok(cameras)
    }
}

/// `url` with anything before an `@` in its authority masked, for error messages about URLs
/// that do not parse (so `SafeUrl` cannot redact them).
fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A media server: its cameras and running pulls.
#[derive(Debug, Clone)]
pub struct MediaServer {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    label: String,
    cameras: BTreeMap<String, Url>,
    hub: Arc<Hub>,
    pull: PullSettings,
}

impl MediaServer {
    /// A server for `config` (validated here), registering its metrics in `registry`.
    ///
    /// # Errors
    /// [`ConfigError`] from [`MediaConfig::validate`].
    pub fn new(
        config: &MediaConfig,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, ConfigError> {
        let cameras = config.validate()?;
        let metrics = MediaMetrics::register(registry);
        let hub = Arc::new(Hub::new(
            ChannelSettings {
                linger: Duration::from_millis(config.idle_stop_ms),
                backlog_tags: config.viewer_backlog_tags,
                gop_cache_max_bytes: config.gop_cache_max_bytes,
            },
            metrics,
        ));
        Ok(Self {
            inner: Arc::new(Shared {
                label: config.label.clone(),
                cameras,
                hub,
                pull: PullSettings {
                    rtsp_timeout: Duration::from_millis(config.rtsp_timeout_ms),
                    frame_timeout: Duration::from_millis(config.frame_timeout_ms),
                    udp: config.transport == "udp",
                },
            }),
        })
    }

    /// The stream names (camera-map keys) served.
    pub fn streams(&self) -> Vec<String> {
        self.inner.cameras.keys().cloned().collect()
    }

    /// The HTTP routes (without `/healthz` and `/metrics`, which `svckit::serve` adds).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/streams", get(list_streams))
            .route("/{stream}/{file}", get(watch))
            .with_state(self.clone())
    }

    /// Stops every pull (viewers' streams end).
    pub fn shutdown(&self) {
        self.inner.hub.end_all();
    }

    /// Opens a viewer on `path` (`/{stream}/{n}.flv`): waits for the camera to play, then
    /// returns the FLV byte stream.
    ///
    /// # Errors
    /// [`MediaError`]: malformed path, unknown stream, or the camera pull's failure.
    pub async fn open(
        &self,
        path: &str,
    ) -> Result<impl futures::Stream<Item = bytes::Bytes> + Send + 'static, MediaError> {
        let parsed = parse_stream_path(path).map_err(|e| match e {
            crate::error::RouteError::Malformed { path, reason } => {
                MediaError::Malformed { path, reason }
            }
            other => MediaError::Malformed {
                path: other.to_string(),
                reason: "malformed",
            },
        })?;
        let key = parsed.camera_key();
        let url = self
            .inner
            .cameras
            .get(&key)
            .ok_or_else(|| MediaError::UnknownStream {
                stream: key.clone(),
            })?;
        // A channel ending just as we join (idle stop) is retried once with a fresh pull.
        for _ in 0..2 {
            let joined = self.inner.hub.join(&key, url);
            if joined.created {
                tokio::spawn(
                    pull::run(
                        self.inner.hub.clone(),
                        joined.channel.clone(),
                        self.inner.pull.clone(),
                    )
                    .instrument(info_span!("pull", stream = %key, label = %self.inner.label)),
                );
            }
            match viewer_stream(joined.channel, joined.guard).await {
                Ok(stream) => return Ok(stream),
                Err(JoinError::Pull(error)) => return Err(MediaError::Pull(error)),
                Err(JoinError::Ended) => {}
            }
        }
        Err(MediaError::Pull(PullError::Broken {
            url: svckit::redact::SafeUrl::new(url.clone()).to_string(),
            reason: "the pull ended while the viewer joined".to_owned(),
        }))
    }
}

fn media_error_response(error: &MediaError) -> Response {
    (error.status(), axum::Json(error_body(error))).into_response()
}

async fn watch(State(server): State<MediaServer>, OriginalUri(uri): OriginalUri) -> Response {
    let span = info_span!(
        "media",
        route = MEDIA_ROUTE,
        label = %server.inner.label,
        path = %uri.path(),
    );
    async move {
        match server.open(uri.path()).await {
            Ok(stream) => {
                info!("viewer joined");
                let body = Body::from_stream(stream.map(Ok::<_, Infallible>));
                let mut response = Response::new(body);
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("video/x-flv"),
                );
                headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache, no-store"),
                );
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
                response
            }
            Err(error) => {
                if error.status().is_server_error() {
                    warn!(%error, origin = ?error.origin(), "viewer refused");
                } else {
                    info!(%error, "viewer refused");
                }
                media_error_response(&error)
            }
        }
    }
    .instrument(span)
    .await
}

async fn list_streams(State(server): State<MediaServer>) -> Response {
    let running: Vec<serde_json::Value> = server
        .inner
        .hub
        .list()
        .into_iter()
        .map(|(stream, viewers, status)| {
            let status = match status {
                Status::Connecting => "connecting",
                Status::Playing => "playing",
                Status::Failed(_) => "failed",
                Status::Ended => "ended",
            };
            serde_json::json!({ "stream": stream, "viewers": viewers, "status": status })
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({
            "label": server.inner.label,
            "cameras": server.streams(),
            "running": running,
        })),
    )
        .into_response()
}
