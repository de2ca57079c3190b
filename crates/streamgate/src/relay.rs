//! A relay's upstream session: the source of a forwarder's or the proxy's fan-out channel.
//! One HTTP-FLV request to the next hop per stream, however many viewers watch; its tags are
//! republished, shared and uncopied, to every viewer of this hop.
//!
//! **Re-attaching** (issue 12 item 4): when the upstream stream breaks (the media server was
//! killed, or moved and registered a new address), the relay resolves the target again from
//! the watched routes, waits for a change when it has none, and requests the stream again,
//! for as long as [`RelaySettings::reattach_within`] while its viewers stay connected. The
//! viewers never see the second FLV header; configuration tags reach them only when they
//! differ from the current ones ([`crate::fanout::Channel::publish`]); timestamps are rebased
//! ([`Rebase`]) so they continue where the old session stopped, one frame later, and never go
//! back on either track.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, VIA};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tracing::{Instrument, debug, info, warn};

use crate::discovery::{RouteWatch, Watched};
use crate::error::HopError;
use crate::fanout::hub::idle_stop;
use crate::fanout::{Channel, Hub, JOIN_HEADER, Refusal, Status, StreamLabel};
use crate::flv::reader::FlvHeader;
use crate::flv::{FlvReader, ReadTag, Tag, TagKind, mux};
use crate::hop::{HopClient, VIA as VIA_VALUE};

/// Where the upstream hop is now: its name (for errors) and address, or the answer viewers
/// get while it is nowhere.
pub type Resolver = Arc<dyn Fn(&Watched) -> Result<(String, SocketAddr), Refusal> + Send + Sync>;

/// Longest error body read from an upstream refusal.
const MAX_REFUSAL_BYTES: usize = 64 * 1024;

/// How a relay keeps its upstream session.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// How long a broken upstream is retried while viewers wait.
    pub reattach_within: Duration,
    /// An upstream that sends no tag for this long, once streaming, counts as broken.
    pub silence_timeout: Duration,
    /// Time allowed for an upstream's first tag: longer than the media server's first-frame
    /// timeout (12 s by default), since a cold pull of a camera that sends no parameter sets
    /// before its key frames waits up to a whole GOP.
    pub first_tag_timeout: Duration,
    /// Pause between two attempts when the address did not change.
    pub retry_every: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            reattach_within: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(8),
            first_tag_timeout: Duration::from_secs(15),
            retry_every: Duration::from_millis(100),
        }
    }
}

/// Upstream-session counters of a relay, by stream.
#[derive(Debug, Clone, Default)]
pub struct RelayMetrics {
    /// Upstream sessions that started streaming (the first, and every re-attach).
    pub sessions: Family<StreamLabel, Counter>,
    /// Upstream sessions that broke while viewers watched.
    pub breaks: Family<StreamLabel, Counter>,
}

impl RelayMetrics {
    /// Registers `streamgate_{role}_upstream_sessions_total` and
    /// `streamgate_{role}_upstream_breaks_total`.
    pub fn register(role: &str, registry: &mut prometheus_client::registry::Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            format!("streamgate_{role}_upstream_sessions"),
            "Upstream sessions that started streaming (one per stream, plus re-attaches)",
            metrics.sessions.clone(),
        );
        registry.register(
            format!("streamgate_{role}_upstream_breaks"),
            "Upstream sessions that broke while viewers watched",
            metrics.breaks.clone(),
        );
        metrics
    }
}

/// One stream's upstream: the path and headers to request, and where to send them.
#[derive(Clone)]
pub struct Upstream {
    /// The request path at the next hop, e.g. `/main_stream/0.flv`.
    pub path: String,
    /// Extra request headers (the proxy's route header).
    pub headers: Vec<(&'static str, String)>,
    /// Where the next hop is.
    pub resolve: Resolver,
    /// The routes it is resolved from.
    pub routes: RouteWatch,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("path", &self.path)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// The fan-out side of a relay hop (forwarder or proxy): its channels, its upstream client
/// and settings. [`RelayHop::play`] joins a viewer to a stream's channel, starting the
/// upstream session when the stream is not running yet.
#[derive(Debug)]
pub struct RelayHop {
    hub: Arc<Hub>,
    client: HopClient,
    settings: RelaySettings,
    metrics: RelayMetrics,
}

/// What a relay hop is built from.
#[derive(Debug, Clone)]
pub struct RelayHopConfig {
    /// Connect timeout to the upstream hop.
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response headers.
    pub header_timeout: Duration,
    /// How long an upstream session outlives its last viewer.
    pub idle_stop: Duration,
    /// How long a broken upstream is re-attached.
    pub reattach_within: Duration,
    /// The fan-out settings.
    pub fanout: crate::fanout::FanoutSettings,
}

impl RelayHop {
    /// A hop with no stream running, counting into `fanout` and `metrics`.
    pub fn new(
        config: RelayHopConfig,
        fanout: crate::fanout::FanoutMetrics,
        metrics: RelayMetrics,
    ) -> Self {
        Self {
            hub: Arc::new(Hub::new(config.fanout, config.idle_stop, fanout)),
            client: HopClient::new(config.connect_timeout, config.header_timeout),
            settings: RelaySettings {
                reattach_within: config.reattach_within,
                ..RelaySettings::default()
            },
            metrics,
        }
    }

    /// The fan-out settings.
    pub fn fanout(&self) -> &crate::fanout::FanoutSettings {
        self.hub.settings()
    }

    /// Ends every stream.
    pub fn shutdown(&self) {
        self.hub.end_all();
    }

    /// Joins a viewer to the stream `key` (whose upstream `upstream` builds when it must be
    /// started) as `join` says.
    ///
    /// # Errors
    /// The refusal to answer: the upstream's own, or a 502 when the session ended as the
    /// viewer joined twice in a row.
    pub async fn play(
        &self,
        key: &str,
        upstream: impl Fn() -> Upstream,
        join: crate::fanout::Join,
    ) -> Result<crate::fanout::ViewerStream, Refusal> {
        for _ in 0..2 {
            let joined = self.hub.join(key);
            if joined.created {
                tokio::spawn(
                    run(
                        self.hub.clone(),
                        joined.channel.clone(),
                        upstream(),
                        self.client.clone(),
                        self.settings.clone(),
                        self.metrics.clone(),
                    )
                    .instrument(tracing::info_span!("relay", stream = %key)),
                );
            }
            match crate::fanout::subscribe(joined.channel, joined.guard, join).await {
                Ok(viewer) => return Ok(viewer),
                Err(crate::fanout::JoinError::Refused(refusal)) => return Err(refusal),
                Err(crate::fanout::JoinError::Ended) => {}
            }
        }
        Err(Refusal::from_error(&HopError::Broke {
            target: key.to_owned(),
            reason: "the upstream session ended while the viewer joined".to_owned(),
        }))
    }
}

/// Timestamp continuity across upstream sessions (sans-I/O); see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Rebase {
    offset: i64,
    anchored: bool,
    last_video: Option<i64>,
    last_audio: Option<i64>,
    last_out: Option<i64>,
    step: Option<i64>,
}

impl Rebase {
    /// A new upstream session starts: its first media tag is placed one frame after the last
    /// one sent (the first session keeps its own timestamps).
    pub fn new_session(&mut self) {
        self.anchored = self.last_out.is_none();
    }

    /// The output timestamp of a tag of `kind` read at `ts`.
    pub fn map(&mut self, kind: TagKind, ts: u32) -> u32 {
        let ts = i64::from(ts);
        if kind == TagKind::Config {
            return u32::try_from(self.last_out.unwrap_or(ts).max(0)).unwrap_or(0);
        }
        if !self.anchored {
            let last = self.last_out.unwrap_or(0);
            self.offset = last + self.step.unwrap_or(40) - ts;
            self.anchored = true;
        }
        let mut out = ts + self.offset;
        let last_track = match kind {
            TagKind::Audio => &mut self.last_audio,
            _ => &mut self.last_video,
        };
        if let Some(last) = *last_track {
            if kind != TagKind::Audio && out > last && out - last < 1000 {
                self.step = Some(out - last);
            }
            out = out.max(last);
        }
        *last_track = Some(out);
        self.last_out = Some(self.last_out.map_or(out, |l| l.max(out)));
        u32::try_from(out.clamp(0, i64::from(u32::MAX))).unwrap_or(0)
    }
}

/// What a read tag is, for the fan-out; `None` for tags a viewer does not need (an AVC end
/// of sequence, unknown packet types).
pub fn kind_of(tag: &ReadTag) -> Option<TagKind> {
    if tag.is_script() || tag.is_avc_sequence_header() || tag.is_aac_sequence_header() {
        Some(TagKind::Config)
    } else if tag.is_key_frame() {
        Some(TagKind::KeyFrame)
    } else if tag.is_video_frame() {
        Some(TagKind::InterFrame)
    } else if tag.is_audio_frame() {
        Some(TagKind::Audio)
    } else {
        None
    }
}

enum SessionEnd {
    /// No viewer for the linger time: the channel is stopped.
    Idle,
    /// The upstream broke; `streamed` when it had sent tags first.
    Broke { streamed: bool, reason: String },
    /// The upstream refused before streaming.
    Refused(Refusal),
}

/// Runs the upstream session of `channel` until it stops: idle for its linger time, refused
/// by the upstream before it ever played, or not re-attached within the re-attach time.
/// Always leaves the channel ended.
pub async fn run(
    hub: Arc<Hub>,
    channel: Arc<Channel>,
    upstream: Upstream,
    client: HopClient,
    settings: RelaySettings,
    metrics: RelayMetrics,
) {
    let mut rebase = Rebase::default();
    let mut broken_since: Option<Instant> = None;
    let mut changes = upstream.routes.changes();
    loop {
        rebase.new_session();
        let watched = changes.borrow_and_update().clone();
        let end = match (upstream.resolve)(&watched) {
            Ok((target, addr)) => {
                let context = SessionContext {
                    hub: &hub,
                    channel: &channel,
                    upstream: &upstream,
                    client: &client,
                    settings: &settings,
                    metrics: &metrics,
                };
                context.session(&mut rebase, &target, addr).await
            }
            Err(refusal) => SessionEnd::Refused(refusal),
        };
        match end {
            SessionEnd::Idle => {
                hub.end(&channel, Status::Ended);
                return;
            }
            SessionEnd::Refused(refusal) if !channel.has_played() => {
                debug!(stream = %channel.key(), %refusal, "upstream refused");
                hub.end(&channel, Status::Failed(refusal));
                return;
            }
            SessionEnd::Refused(refusal) => {
                debug!(stream = %channel.key(), %refusal, "upstream refused a re-attach");
            }
            SessionEnd::Broke { reason, .. } if !channel.has_played() => {
                let error = HopError::Broke {
                    target: channel.key().to_owned(),
                    reason,
                };
                hub.end(&channel, Status::Failed(Refusal::from_error(&error)));
                return;
            }
            SessionEnd::Broke { streamed, reason } => {
                if streamed {
                    info!(stream = %channel.key(), %reason, "upstream broke; re-attaching");
                    metrics.breaks.get_or_create(channel.metric_label()).inc();
                    broken_since = Some(Instant::now());
                } else {
                    debug!(stream = %channel.key(), %reason, "re-attach attempt broke");
                }
            }
        }
        let since = *broken_since.get_or_insert_with(Instant::now);
        if since.elapsed() > settings.reattach_within {
            warn!(stream = %channel.key(), after_ms = since.elapsed().as_millis(), "upstream not back in time; ending the stream");
            hub.end(&channel, Status::Ended);
            return;
        }
        // Retry on new routes or after a short pause, unless the viewers left.
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(settings.retry_every) => {}
            () = idle_stop(&hub, &channel) => {
                hub.end(&channel, Status::Ended);
                return;
            }
        }
        if channel.is_finished() {
            return;
        }
    }
}

async fn request(
    client: &HopClient,
    target: &str,
    addr: SocketAddr,
    upstream: &Upstream,
) -> Result<hyper::Response<Incoming>, HopError> {
    let uri = format!("http://{addr}{}", upstream.path);
    let mut builder = Request::get(uri.as_str())
        .header(JOIN_HEADER, "raw")
        .header(VIA, HeaderValue::from_static(VIA_VALUE));
    for (name, value) in &upstream.headers {
        builder = builder.header(*name, value.as_str());
    }
    let request = builder
        .body(Full::new(Bytes::new()))
        .map_err(|_| HopError::BadUri { uri })?;
    client.send(request).await.map_err(|error| match error {
        Some(source) => HopError::Gone {
            target: target.to_owned(),
            addr,
            source,
        },
        None => HopError::HeaderTimeout {
            target: target.to_owned(),
            addr,
            after: client.header_timeout(),
        },
    })
}

async fn refusal_of(response: hyper::Response<Incoming>) -> Refusal {
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), MAX_REFUSAL_BYTES)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let body = serde_json::from_slice(&body).unwrap_or_else(|_| {
        serde_json::json!({
            "error": format!("upstream answered {status}"),
            "origin": "upstream",
            "retry": "later",
            "status": status.as_u16(),
        })
    });
    Refusal { status, body }
}

/// Everything one upstream session needs.
struct SessionContext<'a> {
    hub: &'a Hub,
    channel: &'a Arc<Channel>,
    upstream: &'a Upstream,
    client: &'a HopClient,
    settings: &'a RelaySettings,
    metrics: &'a RelayMetrics,
}

impl SessionContext<'_> {
    async fn session(&self, rebase: &mut Rebase, target: &str, addr: SocketAddr) -> SessionEnd {
        let Self {
            hub,
            channel,
            upstream,
            client,
            settings,
            metrics,
        } = *self;
        let response = tokio::select! {
            response = request(client, target, addr, upstream) => response,
            () = idle_stop(hub, channel) => return SessionEnd::Idle,
        };
        let response = match response {
            Ok(response) if response.status() == StatusCode::OK => response,
            Ok(response) => return SessionEnd::Refused(refusal_of(response).await),
            Err(error) => return SessionEnd::Refused(Refusal::from_error(&error)),
        };
        let mut body = response.into_body();
        let mut reader = FlvReader::new();
        let mut streamed = false;
        let broke = |streamed, reason: String| SessionEnd::Broke { streamed, reason };
        loop {
            let silence = if streamed {
                settings.silence_timeout
            } else {
                settings.first_tag_timeout
            };
            tokio::select! {
                frame = tokio::time::timeout(silence, body.frame()) => {
                    let frame = match frame {
                        Ok(Some(Ok(frame))) => frame,
                        Ok(Some(Err(error))) => return broke(streamed, error.to_string()),
                        Ok(None) => return broke(streamed, "the upstream ended the stream".to_owned()),
                        Err(_) => return broke(streamed, format!("no data for {silence:?}")),
                    };
                    let Some(data) = frame.data_ref() else { continue };
                    reader.push(data);
                    loop {
                        let tag = match reader.next_tag() {
                            Ok(Some(tag)) => tag,
                            Ok(None) => break,
                            Err(error) => return broke(streamed, error.to_string()),
                        };
                        if !streamed {
                            streamed = true;
                            metrics.sessions.get_or_create(channel.metric_label()).inc();
                            if !channel.has_played() {
                                let FlvHeader { has_audio, has_video } = reader
                                    .header()
                                    .unwrap_or(FlvHeader { has_audio: false, has_video: true });
                                channel.set_playing(mux::header(has_audio, has_video), None);
                            }
                        }
                        let Some(kind) = kind_of(&tag) else { continue };
                        let ts = rebase.map(kind, tag.timestamp_ms);
                        let read = Tag { bytes: tag.raw, kind, timestamp_ms: tag.timestamp_ms };
                        channel.publish(if ts == read.timestamp_ms {
                            read
                        } else {
                            mux::retimed(&read, ts, None)
                        });
                    }
                }
                () = idle_stop(hub, channel) => return SessionEnd::Idle,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_session_continues_one_frame_after_the_first() {
        let mut rebase = Rebase::default();
        rebase.new_session();
        // First session: timestamps kept.
        for ts in [0, 40, 80, 120] {
            assert_eq!(rebase.map(TagKind::InterFrame, ts), ts);
        }
        assert_eq!(rebase.map(TagKind::Audio, 110), 110);
        // The new media server starts again at 0.
        rebase.new_session();
        assert_eq!(
            rebase.map(TagKind::Config, 0),
            120,
            "configuration at the current time"
        );
        assert_eq!(rebase.map(TagKind::KeyFrame, 0), 160, "one frame after 120");
        assert_eq!(rebase.map(TagKind::InterFrame, 40), 200);
        // Audio that starts before the key frame never goes back on its track.
        assert_eq!(rebase.map(TagKind::Audio, 0), 160);
        assert_eq!(rebase.map(TagKind::Audio, 23), 183);
        // Later sessions stack up.
        rebase.new_session();
        assert_eq!(rebase.map(TagKind::KeyFrame, 90_000), 240);
    }
}
