//! The streaming-media server (seed ¶41, ¶49-¶50, ¶61-¶63): maps a stream's address
//! information to a camera, pulls the camera over RTSP once however many viewers watch, muxes
//! FLV and serves it as HTTP-FLV at `GET /{stream}/{n}.flv` and as HLS at
//! `GET /{stream}/{n}/index.m3u8` ([`crate::hls`], segments from the same pull) on its
//! data-plane port, under the
//! connection policy of every hop ([`crate::hop::listen`]), through the fan-out
//! ([`crate::fanout`]).
//!
//! Answers: 200 `video/x-flv` streaming (headers as soon as the camera plays); 400 for a
//! malformed path; 404 with a JSON reason for a stream it has no camera for; 502 when the
//! camera is unreachable, silent within the RTSP timeout, or offers no H.264 (the reason says
//! which codec it offers). `GET /v1/instance` answers the label and instance id (the registry
//! probes it before it lets another instance take the label). The admin port serves
//! `GET /v1/streams` (the running pulls and HLS sessions), `/healthz` and `/metrics` (from `svckit::serve`).

pub mod metrics;
pub mod pull;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{Method, Request};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, info_span, warn};
use url::Url;

use self::metrics::MediaMetrics;
use self::pull::PullSettings;
use crate::error::{ConfigError, MediaError};
use crate::fanout::{
    FanoutConfig, FanoutMetrics, Hub, JoinError, Refusal, Status, ViewerStream, subscribe,
};
use crate::forwarder::MEDIA_ROUTE;
use crate::hls::{HlsConfig, HlsHub};
use crate::hop::{self, ConnectionPolicy, HopBody, refusal_response};
use crate::route::{HlsFile, is_hls_path, is_valid_name, parse_hls_path, parse_stream_path};

/// Media server settings (`[media]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The server's unique label (seed ¶53), e.g. `media-a`.
    pub label: String,
    /// The namespace it belongs to (seed ¶44), e.g. `NameSpaceA`.
    pub namespace: String,
    /// Data-plane listen address (default `127.0.0.1:7410`; port 0 picks a free one): the
    /// address it registers.
    pub listen: SocketAddr,
    /// Admin listen address for `/healthz`, `/metrics`, `/v1/streams` and `/v1/instance`
    /// (default `127.0.0.1:0`).
    pub admin_listen: SocketAddr,
    /// Stream address information -> camera RTSP URL, e.g.
    /// `main_stream = "rtsp://127.0.0.1:8554/main_stream"`; channel `n` > 0 of a stream is
    /// the key `stream/n`.
    pub cameras: BTreeMap<String, String>,
    /// Time allowed to reach `PLAY`, ms (default 5000); a camera that misses it is answered
    /// with 502.
    pub rtsp_timeout_ms: u64,
    /// Longest silence between frames before the pull is dropped, ms (default 5000).
    pub frame_timeout_ms: u64,
    /// Time allowed after `PLAY` for the first frame, ms (default 12000): a camera that
    /// announces no parameter sets in its SDP sends nothing decodable before its next key
    /// frame, up to a whole GOP later.
    pub first_frame_timeout_ms: u64,
    /// How long a pull outlives its last viewer, ms (default 5000).
    pub idle_stop_ms: u64,
    /// Lease length of the registration, ms (default 3000; renewed every third of it).
    pub lease_ms: u64,
    /// RTP transport to cameras: `tcp` (interleaved, default) or `udp`.
    pub transport: String,
    /// Fan-out to viewers (`[media.fanout]`).
    pub fanout: FanoutConfig,
    /// Connection policy of the data-plane port (`[media.connections]`).
    pub connections: ConnectionPolicy,
    /// HLS output (`[media.hls]`).
    pub hls: HlsConfig,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            label: String::new(),
            namespace: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7410)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cameras: BTreeMap::new(),
            rtsp_timeout_ms: 5000,
            frame_timeout_ms: 5000,
            first_frame_timeout_ms: 12_000,
            idle_stop_ms: 5000,
            lease_ms: 3000,
            transport: "tcp".to_owned(),
            fanout: FanoutConfig::default(),
            connections: ConnectionPolicy::default(),
            hls: HlsConfig::default(),
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
            (
                "media.first_frame_timeout_ms",
                self.first_frame_timeout_ms,
                100,
            ),
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
        self.connections.validate("media.connections")?;
        self.fanout.settings("media.fanout")?;
        self.hls.validate("media.hls")?;
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

/// Path of the identity answer on every registered data-plane port.
pub const INSTANCE_PATH: &str = "/v1/instance";

/// A media server: its cameras and running pulls.
#[derive(Debug, Clone)]
pub struct MediaServer {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    label: String,
    instance: String,
    cameras: BTreeMap<String, Url>,
    hub: Arc<Hub>,
    hls: Arc<HlsHub>,
    pull: PullSettings,
    metrics: MediaMetrics,
}

impl MediaServer {
    /// A server for `config` (validated here) whose registrations carry `instance`,
    /// registering its metrics in `registry`.
    ///
    /// # Errors
    /// [`ConfigError`] from [`MediaConfig::validate`].
    pub fn new(
        config: &MediaConfig,
        instance: &str,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, ConfigError> {
        let cameras = config.validate()?;
        let settings = config.fanout.settings("media.fanout")?;
        let metrics = MediaMetrics::register(registry);
        let hub = Arc::new(Hub::new(
            settings,
            Duration::from_millis(config.idle_stop_ms),
            FanoutMetrics::register("streamgate", registry),
        ));
        Ok(Self {
            inner: Arc::new(Shared {
                label: config.label.clone(),
                instance: instance.to_owned(),
                cameras,
                hub,
                hls: Arc::new(HlsHub::new(config.hls.clone())),
                pull: PullSettings {
                    rtsp_timeout: Duration::from_millis(config.rtsp_timeout_ms),
                    frame_timeout: Duration::from_millis(config.frame_timeout_ms),
                    first_frame_timeout: Duration::from_millis(config.first_frame_timeout_ms),
                    udp: config.transport == "udp",
                },
                metrics,
            }),
        })
    }

    /// The stream names (camera-map keys) served.
    pub fn streams(&self) -> Vec<String> {
        self.inner.cameras.keys().cloned().collect()
    }

    /// The admin routes (without `/healthz` and `/metrics`, which `svckit::serve` adds).
    pub fn admin_router(&self) -> Router {
        Router::new()
            .route("/v1/streams", get(list_streams))
            .with_state(self.clone())
    }

    /// Stops every pull (viewers' streams end).
    pub fn shutdown(&self) {
        self.inner.hls.shutdown();
        self.inner.hub.end_all();
    }

    /// Opens a viewer on `path` (`/{stream}/{n}.flv`) joining as `join_header` asks (the
    /// value of [`crate::fanout::JOIN_HEADER`], or the configured join point): waits for the
    /// camera to play, then returns the viewer's FLV stream.
    ///
    /// # Errors
    /// The refusal to answer: malformed path (400), unknown stream (404), or the camera
    /// pull's failure (502).
    pub async fn open(
        &self,
        path: &str,
        join_header: Option<&str>,
    ) -> Result<ViewerStream, Refusal> {
        let parsed = parse_stream_path(path).map_err(|e| {
            let error = match e {
                crate::error::RouteError::Malformed { path, reason } => {
                    MediaError::Malformed { path, reason }
                }
                other => MediaError::Malformed {
                    path: other.to_string(),
                    reason: "malformed",
                },
            };
            Refusal::from_error(&error)
        })?;
        let key = parsed.camera_key();
        let url = self.inner.cameras.get(&key).ok_or_else(|| {
            Refusal::from_error(&MediaError::UnknownStream {
                stream: key.clone(),
            })
        })?;
        let join = crate::fanout::viewer::join_for(self.inner.hub.settings(), join_header);
        // A channel ending just as we join (idle stop) is retried once with a fresh pull.
        for _ in 0..2 {
            let joined = self.inner.hub.join(&key);
            if joined.created {
                tokio::spawn(
                    pull::run(
                        self.inner.hub.clone(),
                        joined.channel.clone(),
                        url.clone(),
                        self.inner.pull.clone(),
                        self.inner.metrics.clone(),
                    )
                    .instrument(info_span!("pull", stream = %key, label = %self.inner.label)),
                );
            }
            match subscribe(joined.channel, joined.guard, join).await {
                Ok(stream) => return Ok(stream),
                Err(JoinError::Refused(refusal)) => return Err(refusal),
                Err(JoinError::Ended) => {}
            }
        }
        Err(Refusal::from_error(&crate::error::PullError::Broken {
            url: svckit::redact::SafeUrl::new(url.clone()).to_string(),
            reason: "the pull ended while the viewer joined".to_owned(),
        }))
    }
}

impl hop::Handler for MediaServer {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        _peer: SocketAddr,
    ) -> http::Response<HopBody> {
        let span = info_span!(
            "media",
            route = MEDIA_ROUTE,
            label = %self.inner.label,
            path = %request.uri().path(),
        );
        async move {
            if is_hls_path(request.uri().path())
                && matches!(*request.method(), Method::GET | Method::HEAD)
            {
                return self.hls(request.uri().path()).await;
            }
            if request.method() != Method::GET {
                return hop::method_not_allowed("GET");
            }
            if request.uri().path() == INSTANCE_PATH {
                return instance_response(&serde_json::json!({
                    "label": self.inner.label,
                    "instance": self.inner.instance,
                }));
            }
            let join = request
                .headers()
                .get(crate::fanout::JOIN_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let written = request.extensions().get::<hop::Written>().cloned();
            match self.open(request.uri().path(), join.as_deref()).await {
                Ok(stream) => {
                    info!("viewer joined");
                    hop::flv_response(stream, written.as_ref())
                }
                Err(refusal) => {
                    if refusal.status.is_server_error() {
                        warn!(%refusal, "viewer refused");
                    } else {
                        info!(%refusal, "viewer refused");
                    }
                    refusal_response(&refusal)
                }
            }
        }
        .instrument(span)
        .await
    }
}

impl MediaServer {
    /// Answers an HLS request: `/{stream}/{n}/index.m3u8` starts (or keeps) the stream's
    /// segmenting session, fed by one more viewer of the same fan-out the FLV viewers read
    /// ([`crate::hls`]); `/{stream}/{n}/seg-{seq}.ts` is served from its window.
    async fn hls(&self, path: &str) -> http::Response<HopBody> {
        let (stream, file) = match parse_hls_path(path) {
            Ok(parsed) => parsed,
            Err(error) => return hop::error_response(&error),
        };
        let key = stream.camera_key();
        if !self.inner.cameras.contains_key(&key) {
            return hop::error_response(&MediaError::UnknownStream { stream: key });
        }
        match file {
            HlsFile::Segment(seq) => self.inner.hls.segment(&key, seq),
            HlsFile::Playlist => {
                let server = self.clone();
                let flv = format!("/{}/{}.flv", stream.stream, stream.channel);
                self.inner
                    .hls
                    .playlist(&key, move || async move {
                        // The cached group as it is: the segmenter needs real timestamps.
                        server.open(&flv, Some("raw")).await
                    })
                    .await
            }
        }
    }
}

/// The identity answer of `GET /v1/instance` on a data-plane port (the registry probes it
/// before it lets another instance take a registration).
pub fn instance_response(identity: &serde_json::Value) -> http::Response<HopBody> {
    hop::json_response(StatusCode::OK, identity)
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
            "hls": server
                .inner
                .hls
                .list()
                .into_iter()
                .map(|(stream, segments, bytes)| {
                    serde_json::json!({ "stream": stream, "segments": segments, "bytes": bytes })
                })
                .collect::<Vec<_>>(),
        })),
    )
        .into_response()
}
