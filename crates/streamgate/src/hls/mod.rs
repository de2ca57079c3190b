//! HLS output of the media server (issue 12 item 8; RFC 8216): MPEG-TS segments cut at key
//! frames from the same camera pull that feeds HTTP-FLV, and a live media playlist.
//!
//! A stream is segmented only while someone asks for it: the first request of its playlist
//! joins the stream's fan-out as one more viewer (no second RTSP pull: the pull is shared
//! with the FLV viewers), feeds its FLV tags to a [`segmenter::Segmenter`], and keeps the
//! newest segments in a bounded [`playlist::Window`]. The playlist answers once the first
//! segment is complete. Nothing is segmented any more once no playlist or segment was asked
//! for during [`HlsConfig::idle_stop_ms`]; the fan-out viewer then leaves (and the pull stops
//! after its own linger time when no FLV viewer remains).
//!
//! Paths on the media server: `/{stream}/{n}/index.m3u8` and `/{stream}/{n}/seg-{seq}.ts`.
//! Sequence numbers of a session start at the Unix time in seconds when it started, so a
//! segment URL never names two different segments (a segment lasts at least a second) and
//! segments are answered as immutable.

pub mod playlist;
pub mod segmenter;
pub mod ts;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use self::playlist::Window;
use self::segmenter::Segmenter;
use crate::error::{Classify, ConfigError, Origin, Retry};
use crate::fanout::{Refusal, ViewerStream};
use crate::flv::FlvReader;
use crate::hop::{HopBody, error_response, refusal_response};

/// Content type of a media playlist (RFC 8216 §4).
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Content type of an MPEG-TS segment.
pub const SEGMENT_TYPE: &str = "video/mp2t";
/// File name of the playlist.
pub const PLAYLIST_NAME: &str = "index.m3u8";
/// `Cache-Control` of playlists: they change with every segment.
pub const PLAYLIST_CACHE: &str = "no-cache";
/// `Cache-Control` of segments: a segment URL always names the same bytes.
pub const SEGMENT_CACHE: &str = "public, max-age=3600, immutable";

/// HLS settings of a media server (`[media.hls]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// Target segment duration, ms (default 2000, at least 1000): a segment ends at the
    /// first key frame this long after its start, so it lasts at least this long and at most
    /// this plus one GOP.
    pub segment_ms: u64,
    /// Segments kept in the sliding window and listed in the playlist (default 6).
    pub window_segments: usize,
    /// Bytes kept in the window at most (default 64 MiB; the newest segment is always kept).
    pub window_max_bytes: usize,
    /// Segmenting stops when nobody asked for the playlist or a segment for this long, ms
    /// (default 30000).
    pub idle_stop_ms: u64,
    /// How long a playlist request waits for the first segment, ms (default 10000; below the
    /// forwarder's header timeout so the answer gets through).
    pub first_segment_timeout_ms: u64,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            segment_ms: 2000,
            window_segments: 6,
            window_max_bytes: 64 << 20,
            idle_stop_ms: 30_000,
            first_segment_timeout_ms: 10_000,
        }
    }
}

impl HlsConfig {
    /// Checks the ranges; `section` names the section in errors.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, reason| ConfigError::Invalid {
            key: format!("{section}.{key}"),
            value,
            reason,
        };
        if self.segment_ms < 1000 {
            return Err(invalid(
                "segment_ms",
                self.segment_ms.to_string(),
                "must be at least 1000 ms",
            ));
        }
        if self.window_segments < 2 {
            return Err(invalid(
                "window_segments",
                self.window_segments.to_string(),
                "must be at least 2",
            ));
        }
        for (key, value) in [
            ("idle_stop_ms", self.idle_stop_ms),
            ("first_segment_timeout_ms", self.first_segment_timeout_ms),
        ] {
            if value < 100 {
                return Err(invalid(key, value.to_string(), "must be at least 100 ms"));
            }
        }
        Ok(())
    }
}

/// Why an HLS request cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HlsError {
    /// A segment that is not in the window (too old, not yet made, or of a stream nobody
    /// segments).
    #[error("segment {seq} of `{stream}` is not available")]
    NoSuchSegment {
        /// The stream key.
        stream: String,
        /// The sequence number asked for.
        seq: u64,
    },
    /// The first segment was not complete in time.
    #[error("no segment of `{stream}` within {after:?}")]
    FirstSegmentTimeout {
        /// The stream key.
        stream: String,
        /// The wait.
        after: Duration,
    },
    /// The stream ended before its first segment was complete.
    #[error("the stream `{stream}` ended before its first segment")]
    EndedEarly {
        /// The stream key.
        stream: String,
    },
}

impl Classify for HlsError {
    fn origin(&self) -> Origin {
        match self {
            Self::NoSuchSegment { .. } => Origin::Downstream,
            Self::FirstSegmentTimeout { .. } | Self::EndedEarly { .. } => Origin::Camera,
        }
    }
    fn retry(&self) -> Retry {
        match self {
            Self::NoSuchSegment { .. } => Retry::Never,
            Self::FirstSegmentTimeout { .. } | Self::EndedEarly { .. } => Retry::Later,
        }
    }
    fn status(&self) -> StatusCode {
        match self {
            Self::NoSuchSegment { .. } => StatusCode::NOT_FOUND,
            Self::FirstSegmentTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::EndedEarly { .. } => StatusCode::BAD_GATEWAY,
        }
    }
    fn public_reason(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// How a segmenting session ended.
#[derive(Debug, Clone)]
enum End {
    Failed(Refusal),
    Ended,
}

#[derive(Debug)]
struct SessionState {
    window: Window,
    end: Option<End>,
    last_access: Instant,
}

/// One stream's segmenting session.
#[derive(Debug)]
struct Session {
    state: Mutex<SessionState>,
    /// Bumped on every new segment and at the end.
    changed: watch::Sender<u64>,
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        self.lock().last_access = Instant::now();
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

/// The HLS sessions of a media server, by stream key; see the module docs.
#[derive(Debug)]
pub struct HlsHub {
    config: HlsConfig,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

/// Sessions listed by [`HlsHub::list`]: stream key, segments held, bytes held.
pub type SessionInfo = (String, usize, usize);

impl HlsHub {
    /// A hub with no session, for `config` (validated by the caller).
    pub fn new(config: HlsConfig) -> Self {
        Self {
            config,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running sessions, sorted by key.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .map()
            .iter()
            .map(|(key, s)| {
                let state = s.lock();
                (key.clone(), state.window.len(), state.window.bytes())
            })
            .collect();
        out.sort();
        out
    }

    /// Answers the playlist of `key`, starting its session with the viewer `open` yields
    /// when none runs, and waiting up to the first-segment timeout for its first segment.
    pub async fn playlist<F, Fut>(self: &Arc<Self>, key: &str, open: F) -> Response<HopBody>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ViewerStream, Refusal>> + Send + 'static,
    {
        let (session, created) = {
            let mut map = self.map();
            match map.get(key) {
                Some(session) if session.lock().end.is_none() => (session.clone(), false),
                _ => {
                    let first_seq = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let (changed, _) = watch::channel(0);
                    let session = Arc::new(Session {
                        state: Mutex::new(SessionState {
                            window: Window::new(
                                first_seq,
                                self.config.window_segments,
                                self.config.window_max_bytes,
                            ),
                            end: None,
                            last_access: Instant::now(),
                        }),
                        changed,
                    });
                    map.insert(key.to_owned(), session.clone());
                    (session, true)
                }
            }
        };
        if created {
            info!(stream = key, "HLS session starts");
            let hub = self.clone();
            let key = key.to_owned();
            let session = session.clone();
            let viewer = open();
            tokio::spawn(async move {
                let end = match viewer.await {
                    Ok(viewer) => hub.segment_stream(&key, &session, viewer).await,
                    Err(refusal) => End::Failed(refusal),
                };
                hub.finish(&key, &session, end);
            });
        }
        session.touch();
        let mut changes = session.changed.subscribe();
        let timeout = Duration::from_millis(self.config.first_segment_timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Seen before the state is read: a change after this wakes the wait below.
            changes.borrow_and_update();
            {
                let state = session.lock();
                if !state.window.is_empty() {
                    let ended = matches!(state.end, Some(End::Ended));
                    return playlist_response(state.window.playlist(ended));
                }
                match &state.end {
                    Some(End::Failed(refusal)) => return refusal_response(refusal),
                    Some(End::Ended) => {
                        return error_response(&HlsError::EndedEarly {
                            stream: key.to_owned(),
                        });
                    }
                    None => {}
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return error_response(&HlsError::FirstSegmentTimeout {
                        stream: key.to_owned(),
                        after: timeout,
                    });
                }
            }
        }
    }

    /// Answers segment `seq` of `key` from its window (and counts as activity).
    pub fn segment(&self, key: &str, seq: u64) -> Response<HopBody> {
        let session = self.map().get(key).cloned();
        let data = session.and_then(|session| {
            let mut state = session.lock();
            state.last_access = Instant::now();
            state.window.get(seq).map(|e| e.data.clone())
        });
        match data {
            Some(data) => bytes_response(data, SEGMENT_TYPE, SEGMENT_CACHE),
            None => error_response(&HlsError::NoSuchSegment {
                stream: key.to_owned(),
                seq,
            }),
        }
    }

    /// Ends every session (the server stops).
    pub fn shutdown(&self) {
        let sessions: Vec<Arc<Session>> = self.map().drain().map(|(_, s)| s).collect();
        for session in sessions {
            session.lock().end.get_or_insert(End::Ended);
            session.bump();
        }
    }

    /// Reads the viewer's FLV into segments until the stream ends or nobody asked for it
    /// for the idle time.
    async fn segment_stream(&self, key: &str, session: &Session, mut viewer: ViewerStream) -> End {
        let idle = Duration::from_millis(self.config.idle_stop_ms);
        let target = Duration::from_millis(self.config.segment_ms);
        let mut check = tokio::time::interval((idle / 4).min(Duration::from_secs(1)));
        let mut reader = FlvReader::new();
        let mut segmenter: Option<Segmenter> = None;
        let add = |segment: segmenter::Segment| {
            let (seq, len, duration) = {
                let mut state = session.lock();
                let (len, duration) = (segment.data.len(), segment.duration_ms);
                (state.window.push(segment), len, duration)
            };
            debug!(
                stream = key,
                seq,
                bytes = len,
                duration_ms = duration,
                "segment ready"
            );
            session.bump();
        };
        loop {
            tokio::select! {
                bytes = viewer.next() => {
                    let Some(bytes) = bytes else {
                        if let Some(last) = segmenter.as_mut().and_then(Segmenter::finish) {
                            add(last);
                        }
                        info!(stream = key, "HLS session ends: the stream ended");
                        return End::Ended;
                    };
                    reader.push(&bytes);
                    loop {
                        let tag = match reader.next_tag() {
                            Ok(Some(tag)) => tag,
                            Ok(None) => break,
                            Err(error) => {
                                warn!(stream = key, %error, "HLS session ends: unreadable FLV");
                                return End::Ended;
                            }
                        };
                        let has_audio = reader.header().is_some_and(|h| h.has_audio);
                        let segmenter = segmenter.get_or_insert_with(|| Segmenter::new(target, has_audio));
                        match segmenter.push(&tag) {
                            Ok(Some(segment)) => add(segment),
                            Ok(None) => {}
                            Err(error) => warn!(stream = key, %error, "tag not remuxed"),
                        }
                    }
                }
                _ = check.tick() => {
                    let last = session.lock().last_access;
                    // A playlist request waiting for the first segment is someone asking.
                    if session.changed.receiver_count() > 0 {
                        session.touch();
                    } else if last.elapsed() >= idle {
                        info!(stream = key, idle_ms = last.elapsed().as_millis(), "HLS session ends: nobody asked");
                        return End::Ended;
                    }
                    if session.lock().end.is_some() {
                        return End::Ended;
                    }
                }
            }
        }
    }

    /// Marks `session` ended and forgets it (a later playlist request starts a new one).
    fn finish(&self, key: &str, session: &Arc<Session>, end: End) {
        {
            let mut map = self.map();
            if map.get(key).is_some_and(|s| Arc::ptr_eq(s, session)) {
                map.remove(key);
            }
        }
        if let End::Failed(refusal) = &end {
            info!(stream = key, %refusal, "HLS session refused");
        }
        session.lock().end.get_or_insert(end);
        session.bump();
    }
}

fn bytes_response(
    data: Bytes,
    content_type: &'static str,
    cache: &'static str,
) -> Response<HopBody> {
    let mut response = Response::new(
        Full::new(data)
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed(),
    );
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// A playlist answer (`application/vnd.apple.mpegurl`, `no-cache`).
pub fn playlist_response(text: String) -> Response<HopBody> {
    bytes_response(Bytes::from(text), PLAYLIST_TYPE, PLAYLIST_CACHE)
}

/// `playlist` with `query` appended to every URI line (the segment URLs), so a player that
/// got the playlist with a signed query string presents it for the segments too.
pub fn with_query(playlist: &str, query: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64);
    for line in playlist.lines() {
        out.push_str(line);
        if !line.is_empty() && !line.starts_with('#') && !query.is_empty() {
            out.push(if line.contains('?') { '&' } else { '?' });
            out.push_str(query);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_goes_on_uri_lines_only() {
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.000,\nseg-3.ts\n";
        assert_eq!(
            with_query(text, "expires=9&kid=k&sig=ab"),
            "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.000,\nseg-3.ts?expires=9&kid=k&sig=ab\n"
        );
        assert_eq!(with_query(text, ""), text);
    }

    #[test]
    fn the_media_hls_section_loads() {
        const TEXT: &str = "[media]\nlabel = \"media-a\"\nnamespace = \"NameSpaceA\"\n\
                            [media.hls]\nsegment_ms = 4000\nwindow_segments = 3\n";
        let config: crate::config::Config =
            svckit::config::load(&svckit::config::Sources::new().embedded(TEXT)).unwrap();
        assert_eq!(config.media.hls.segment_ms, 4000);
        assert_eq!(config.media.hls.window_segments, 3);
        assert_eq!(
            config.media.hls.idle_stop_ms, 30_000,
            "defaults for the rest"
        );
        assert!(config.media.validate().is_ok());
    }

    #[test]
    fn config_ranges() {
        assert!(HlsConfig::default().validate("media.hls").is_ok());
        let short = HlsConfig {
            segment_ms: 500,
            ..HlsConfig::default()
        };
        assert!(matches!(
            short.validate("media.hls"),
            Err(ConfigError::Invalid { key, .. }) if key == "media.hls.segment_ms"
        ));
    }
}
