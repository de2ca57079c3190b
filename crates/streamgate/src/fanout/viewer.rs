//! One viewer of a channel: what it receives first, and its cursor in the send queue.
//!
//! **Joining** ([`subscribe`]): the FLV header and the configuration tags, then
//! * with [`JoinPoint::KeyFrame`]: the cached group of pictures from its key frame. When the
//!   group is older than the catch-up time, its video frames are retimed by a monotonic
//!   piecewise-linear map that is the identity from the live edge on and compresses the past
//!   into the catch-up time (decoding and presentation times through the same map, so frame
//!   order and `dts <= pts` are kept; cached audio is left out): a player starts at once with a
//!   picture at most one GOP old and reaches the live edge after the catch-up time;
//! * with [`JoinPoint::LiveEdge`]: nothing more; the first frame is the next key frame.
//!
//! **Sending** ([`ViewerStream::next`]): live tags in order, taken from the send queue in
//! batches. The viewer's backlog is the age of the tag at its cursor. When it exceeds
//! `max_behind` (or the queue dropped tags the viewer had not read, or tags it was handed
//! still wait in the connection's buffer that long), the viewer skips: it jumps to the newest
//! key frame in the queue that is not late (or waits for the next one), the configuration is
//! sent again before it if it changed meanwhile, and sending resumes there. Other viewers are
//! never slowed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::watch;

use super::channel::{Channel, State, Status};
use super::hub::ViewerGuard;
use super::{FanoutSettings, JoinPoint, Refusal};
use crate::flv::mux::{self, composition_ms};
use crate::flv::{Tag, TagKind};

/// Most tags taken from the queue per lock.
const BATCH_TAGS: usize = 16;

/// How a viewer joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    /// Where it starts.
    pub point: JoinPoint,
    /// Catch-up time for [`JoinPoint::KeyFrame`] (zero: the cached group as it is).
    pub catch_up: Duration,
}

impl Join {
    /// The configured join of `settings`.
    pub fn configured(settings: &FanoutSettings) -> Self {
        Self {
            point: settings.join,
            catch_up: settings.catch_up,
        }
    }

    /// The cached group as it is (no catch-up retiming): what a relay asks its upstream hop
    /// for with [`super::JOIN_HEADER`] `raw`.
    pub const RAW: Self = Self {
        point: JoinPoint::KeyFrame,
        catch_up: Duration::ZERO,
    };
}

/// The join a request asks for with the value of [`super::JOIN_HEADER`]: `raw`, `key_frame`
/// (with the configured catch-up), `live_edge`, or (absent or anything else) the configured
/// one.
pub fn join_for(settings: &FanoutSettings, header: Option<&str>) -> Join {
    match header {
        Some("raw") => Join::RAW,
        Some("key_frame") => Join {
            point: JoinPoint::KeyFrame,
            catch_up: settings.catch_up,
        },
        Some("live_edge") => Join {
            point: JoinPoint::LiveEdge,
            catch_up: Duration::ZERO,
        },
        _ => Join::configured(settings),
    }
}

/// Why [`subscribe`] gave no stream.
#[derive(Debug, Clone)]
pub enum JoinError {
    /// The source failed; answer this.
    Refused(Refusal),
    /// The channel ended before the viewer could subscribe (it was stopping); retry with a
    /// fresh channel.
    Ended,
}

/// One viewer's stream of FLV bytes; see the module docs.
#[derive(Debug)]
pub struct ViewerStream {
    channel: Arc<Channel>,
    published: watch::Receiver<u64>,
    cursor: u64,
    pending: VecDeque<(Bytes, Option<Instant>)>,
    skipping: bool,
    config_seen: u64,
    skips: u64,
    /// Bytes the connection wrote to its socket, when known, and the tags handed over but not
    /// yet written: (end offset in connection bytes, publish instant).
    written: Option<crate::hop::Written>,
    handed: u64,
    /// Framing bytes the connection adds around a chunk of this length.
    overhead: fn(usize) -> u64,
    in_flight: VecDeque<(u64, Instant)>,
    _guard: ViewerGuard,
}

/// Bytes of HTTP/1.1 framing around a chunk of `len` bytes (`{hex len}\r\n` and `\r\n`).
fn chunk_overhead(len: usize) -> u64 {
    let mut digits = 1;
    let mut rest = len >> 4;
    while rest > 0 {
        digits += 1;
        rest >>= 4;
    }
    digits + 4
}

/// Slack for the response head written before the first chunk, bytes.
const HEAD_SLACK: u64 = 512;

/// Waits until `channel` plays, then returns the viewer's stream, starting as `join` says.
///
/// # Errors
/// [`JoinError::Refused`] when the source failed, [`JoinError::Ended`] when the channel ended
/// first.
pub async fn subscribe(
    channel: Arc<Channel>,
    guard: ViewerGuard,
    join: Join,
) -> Result<ViewerStream, JoinError> {
    let mut status = channel.status_changes();
    loop {
        let current = status.borrow_and_update().clone();
        match current {
            Status::Playing => break,
            Status::Failed(refusal) => return Err(JoinError::Refused(refusal)),
            Status::Ended => return Err(JoinError::Ended),
            Status::Connecting => {
                if status.changed().await.is_err() {
                    return Err(JoinError::Ended);
                }
            }
        }
    }
    let published = channel.published.subscribe();
    let state = channel.lock();
    if state.finished {
        return Err(JoinError::Ended);
    }
    let header = state.header.clone().ok_or(JoinError::Ended)?;
    let mut first = BytesMut::from(&header[..]);
    for tag in state.config.iter() {
        first.extend_from_slice(&tag);
    }
    let mut skipping = true;
    if join.point == JoinPoint::KeyFrame && state.gop.has_key_frame() && state.config.avc.is_some()
    {
        for tag in burst(&state, join.catch_up) {
            first.extend_from_slice(&tag.bytes);
        }
        skipping = false;
    }
    let cursor = state.ring.next_seq();
    let config_seen = state.config.version;
    drop(state);
    Ok(ViewerStream {
        channel,
        published,
        cursor,
        pending: VecDeque::from([(first.freeze(), None)]),
        skipping,
        config_seen,
        skips: 0,
        written: None,
        handed: HEAD_SLACK,
        overhead: chunk_overhead,
        in_flight: VecDeque::new(),
        _guard: guard,
    })
}

/// The cached group for a joining viewer, retimed for catch-up when it is older than
/// `catch_up` (see the module docs).
fn burst(state: &State, catch_up: Duration) -> Vec<Tag> {
    let tags = state.gop.tags();
    let (Some(first), Some(live)) = (tags.first(), state.live_ts) else {
        return tags.to_vec();
    };
    let live = i64::from(live);
    let age = live - i64::from(first.timestamp_ms);
    let frames = tags.iter().filter(|t| t.kind != TagKind::Audio).count();
    // At least 2 ms per frame, so retimed frames keep distinct times.
    let window = i64::try_from(catch_up.as_millis())
        .unwrap_or(i64::MAX)
        .max(2 * i64::try_from(frames).unwrap_or(0));
    if catch_up.is_zero() || age <= window {
        return tags.to_vec();
    }
    let map = |t: i64| {
        if t >= live {
            t
        } else {
            live - (live - t) * window / age
        }
    };
    let mut out = Vec::with_capacity(frames);
    let mut last_dts = i64::MIN;
    for tag in tags {
        if tag.kind == TagKind::Audio {
            continue;
        }
        let dts = i64::from(tag.timestamp_ms);
        let cts = i64::from(composition_ms(tag).unwrap_or(0));
        let new_dts = map(dts).max(last_dts).max(0);
        let new_pts = map(dts + cts).max(new_dts);
        last_dts = new_dts;
        out.push(mux::retimed(
            tag,
            u32::try_from(new_dts).unwrap_or(0),
            i32::try_from(new_pts - new_dts).ok(),
        ));
    }
    out
}

impl ViewerStream {
    /// Counts the bytes a connection wrote (see [`crate::hop::Written`]) into the backlog:
    /// a tag handed to the connection but not yet written still counts as waiting.
    pub fn track_written(&mut self, written: crate::hop::Written) {
        self.written = Some(written);
    }

    /// As [`ViewerStream::track_written`] for a connection that frames each chunk with
    /// `overhead(len)` bytes other than HTTP/1.1 chunking (a WebSocket's frame header).
    pub fn track_written_framed(
        &mut self,
        written: crate::hop::Written,
        overhead: fn(usize) -> u64,
    ) {
        self.written = Some(written);
        self.overhead = overhead;
    }

    /// The publish instant of the oldest tag handed over but not yet written to the socket.
    fn oldest_unwritten(&mut self) -> Option<Instant> {
        let written = self.written.as_ref()?.get();
        while self
            .in_flight
            .front()
            .is_some_and(|(end, _)| *end <= written)
        {
            self.in_flight.pop_front();
        }
        self.in_flight.front().map(|(_, at)| *at)
    }

    /// The next bytes to send, `None` once the channel ended and everything queued was sent.
    pub async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some((bytes, at)) = self.pending.pop_front() {
                // A batch taken while the connection was blocked may have aged meanwhile, and
                // what the connection still holds counts too.
                let oldest = self.oldest_unwritten().into_iter().chain(at).min();
                if at.is_some()
                    && !self.skipping
                    && oldest.is_some_and(|t| t.elapsed() > self.channel.settings.max_behind)
                {
                    self.pending.clear();
                    self.start_skip();
                    self.in_flight.clear();
                    continue;
                }
                if self.written.is_some() {
                    self.handed += bytes.len() as u64 + (self.overhead)(bytes.len());
                    if let Some(at) = at {
                        self.in_flight.push_back((self.handed, at));
                    }
                }
                return Some(bytes);
            }
            self.published.borrow_and_update();
            if self.fill(Instant::now()) {
                return None;
            }
            if self.pending.is_empty() && self.published.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Times this viewer was skipped ahead.
    pub fn skips(&self) -> u64 {
        self.skips
    }

    /// Takes up to a batch of tags from the queue into `pending`; true when the channel
    /// ended and nothing is left.
    fn fill(&mut self, now: Instant) -> bool {
        let channel = self.channel.clone();
        let max_behind = channel.settings.max_behind;
        // Tags still in hyper's buffer are part of the backlog.
        let held_late = self
            .oldest_unwritten()
            .is_some_and(|at| now.saturating_duration_since(at) > max_behind);
        let state = channel.lock();
        if self.cursor < state.ring.first_seq() {
            // The queue dropped tags this viewer had not read.
            self.start_skip();
            self.cursor = state.ring.first_seq();
        }
        if self.skipping
            && let Some(key) = state.latest_key_seq
            && key > self.cursor
            && state
                .ring
                .get(key)
                .is_some_and(|e| now.saturating_duration_since(e.at) <= max_behind)
        {
            // Jump straight to the newest key frame that is not late.
            self.cursor = key;
        }
        let mut taken = 0;
        while taken < BATCH_TAGS
            && let Some(entry) = state.ring.get(self.cursor)
        {
            self.cursor += 1;
            taken += 1;
            let tag = &entry.tag;
            let late = now.saturating_duration_since(entry.at) > max_behind;
            if tag.kind == TagKind::Config {
                if !self.skipping {
                    self.pending.push_back((tag.bytes.clone(), Some(entry.at)));
                    self.config_seen = state.config.version;
                }
                continue;
            }
            if !self.skipping && (late || held_late) {
                self.start_skip();
                // What hyper holds goes out anyway; count the backlog afresh from here.
                self.in_flight.clear();
            }
            if self.skipping {
                if tag.kind == TagKind::KeyFrame && !late {
                    self.skipping = false;
                    if self.config_seen != state.config.version {
                        self.pending.extend(state.config.iter().map(|b| (b, None)));
                        self.config_seen = state.config.version;
                    }
                    self.pending.push_back((tag.bytes.clone(), Some(entry.at)));
                }
                continue;
            }
            self.pending.push_back((tag.bytes.clone(), Some(entry.at)));
        }
        self.pending.is_empty() && state.finished && self.cursor >= state.ring.next_seq()
    }

    fn start_skip(&mut self) {
        if self.skipping {
            return;
        }
        self.skipping = true;
        self.skips += 1;
        tracing::debug!(stream = %self.channel.key(), skips = self.skips, "slow viewer skips to the next key frame");
        self.channel
            .metrics
            .viewer_skips
            .get_or_create(self.channel.metric_label())
            .inc();
    }

    /// The stream as a `futures::Stream` of byte chunks.
    pub fn into_stream(self) -> impl Stream<Item = Bytes> + Send + 'static {
        futures::stream::unfold(self, |mut viewer| async move {
            let bytes = viewer.next().await?;
            Some((bytes, viewer))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{FanoutMetrics, FanoutSettings, Hub};
    use crate::flv::{FlvReader, ReadTag};

    fn hub(max_behind: Duration) -> Hub {
        Hub::new(
            FanoutSettings {
                max_behind,
                ..FanoutSettings::default()
            },
            Duration::from_secs(5),
            FanoutMetrics::default(),
        )
    }

    const RAW: Join = Join::RAW;

    fn key(ts: u32) -> Tag {
        mux::avc_frame(ts, 0, true, &[0, 0, 0, 2, 0x65, 0x88])
    }

    fn inter(ts: u32, cts: i32) -> Tag {
        mux::avc_frame(ts, cts, false, &[0, 0, 0, 2, 0x41, 0x9a])
    }

    fn read_all(reader: &mut FlvReader, bytes: &Bytes) -> Vec<ReadTag> {
        reader.push(bytes);
        let mut tags = Vec::new();
        while let Some(tag) = reader.next_tag().unwrap() {
            tags.push(tag);
        }
        tags
    }

    fn playing(hub: &Hub) -> (Arc<Channel>, ViewerGuard) {
        let joined = hub.join("cam");
        let channel = joined.channel.clone();
        channel.set_playing(mux::header(false, true), None);
        channel.publish(mux::avc_sequence_header(0, &[1, 0x64, 0, 0x1e]));
        (channel, joined.guard)
    }

    async fn drain(viewer: &mut ViewerStream, reader: &mut FlvReader) -> Vec<ReadTag> {
        let mut tags = Vec::new();
        while let Ok(Some(bytes)) =
            tokio::time::timeout(Duration::from_millis(20), viewer.next()).await
        {
            tags.extend(read_all(reader, &bytes));
        }
        tags
    }

    #[tokio::test]
    async fn a_late_viewer_starts_at_the_cached_key_frame() {
        let hub = hub(Duration::from_secs(2));
        let (channel, _keep) = playing(&hub);
        for tag in [key(0), inter(40, 0), key(80), inter(120, 0), inter(160, 0)] {
            channel.publish(tag);
        }
        let late = hub.join("cam");
        assert!(!late.created, "one channel per stream");
        let mut viewer = subscribe(late.channel, late.guard, RAW).await.unwrap();
        let mut reader = FlvReader::new();
        let tags = drain(&mut viewer, &mut reader).await;
        assert!(reader.header().is_some_and(|h| h.has_video && !h.has_audio));
        assert!(tags[0].is_avc_sequence_header());
        assert!(tags[1].is_key_frame());
        assert_eq!(
            tags.iter().map(|t| t.timestamp_ms).collect::<Vec<_>>(),
            vec![0, 80, 120, 160],
            "sequence header, then the current group of pictures only"
        );
        channel.publish(inter(200, 0));
        assert_eq!(drain(&mut viewer, &mut reader).await[0].timestamp_ms, 200);
    }

    #[tokio::test]
    async fn a_viewer_more_than_max_behind_skips_to_the_next_fresh_key_frame() {
        let hub = hub(Duration::from_millis(2000));
        let (channel, _keep) = playing(&hub);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        channel.publish_at(key(0), at(0));
        let joined = hub.join("cam");
        let mut slow = subscribe(joined.channel, joined.guard, RAW).await.unwrap();
        let mut reader = FlvReader::new();
        let first = read_all(&mut reader, &slow.next().await.unwrap());
        assert_eq!(first.len(), 2, "sequence header and key frame 0");
        // 5 s of stream (a key frame each second) while the viewer reads nothing.
        for ms in (40..=5000).step_by(40) {
            let tag = if ms % 1000 == 0 {
                key(ms as u32)
            } else {
                inter(ms as u32, 0)
            };
            channel.publish_at(tag, at(ms as u64));
        }
        // The viewer wakes up at t = 5.02 s: tags older than 2 s are late.
        slow.fill(at(5020));
        let mut got = Vec::new();
        while let Some((bytes, _)) = slow.pending.pop_front() {
            got.extend(read_all(&mut reader, &bytes));
        }
        assert_eq!(slow.skips(), 1);
        assert!(got[0].is_key_frame(), "{:?}", got[0]);
        assert_eq!(got[0].timestamp_ms, 5000, "the newest key frame, not late");
        assert!(
            got.iter().all(|t| t.timestamp_ms >= 5000),
            "nothing older than the skip target"
        );
        assert!(
            !got.iter().any(ReadTag::is_avc_sequence_header),
            "unchanged configuration is not sent again"
        );
        assert_eq!(
            hub.metrics()
                .viewer_skips
                .get_or_create(&crate::fanout::StreamLabel::new("cam"))
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn live_edge_join_waits_for_the_next_key_frame() {
        let hub = hub(Duration::from_secs(2));
        let (channel, _keep) = playing(&hub);
        channel.publish(key(0));
        channel.publish(inter(40, 0));
        let joined = hub.join("cam");
        let join = Join {
            point: JoinPoint::LiveEdge,
            catch_up: Duration::ZERO,
        };
        let mut viewer = subscribe(joined.channel, joined.guard, join).await.unwrap();
        let mut reader = FlvReader::new();
        let tags = drain(&mut viewer, &mut reader).await;
        assert_eq!(tags.len(), 1, "only the sequence header: {tags:?}");
        channel.publish(inter(80, 0));
        channel.publish(key(120));
        let tags = drain(&mut viewer, &mut reader).await;
        assert_eq!(tags.len(), 1);
        assert!(tags[0].is_key_frame() && tags[0].timestamp_ms == 120);
    }

    #[tokio::test]
    async fn catch_up_retimes_an_old_group_into_the_window_keeping_order() {
        let hub = hub(Duration::from_secs(2));
        let (channel, _keep) = playing(&hub);
        // A 10 s group, joined 8 s in: I P B B ... with composition offsets.
        channel.publish(key(0));
        let mut ts = 40;
        while ts <= 8000 {
            channel.publish(inter(ts, if ts % 120 == 40 { 80 } else { 0 }));
            channel.publish(mux::aac_frame(ts, &[1]));
            ts += 40;
        }
        let joined = hub.join("cam");
        let join = Join {
            point: JoinPoint::KeyFrame,
            catch_up: Duration::from_millis(1000),
        };
        let mut viewer = subscribe(joined.channel, joined.guard, join).await.unwrap();
        let mut reader = FlvReader::new();
        let tags = drain(&mut viewer, &mut reader).await;
        let frames: Vec<&ReadTag> = tags.iter().filter(|t| t.is_video_frame()).collect();
        assert_eq!(
            frames.len(),
            201,
            "every cached frame, decodable from the key frame"
        );
        assert!(frames[0].is_key_frame());
        assert!(
            !tags.iter().any(ReadTag::is_audio_frame),
            "cached audio left out"
        );
        assert_eq!(
            frames[0].timestamp_ms, 7000,
            "starts the catch-up time before live"
        );
        assert_eq!(
            frames.last().unwrap().timestamp_ms,
            8000,
            "ends at the live edge"
        );
        let dts: Vec<i64> = frames.iter().map(|t| i64::from(t.timestamp_ms)).collect();
        let pts: Vec<i64> = frames
            .iter()
            .map(|t| i64::from(t.timestamp_ms) + i64::from(t.composition_ms().unwrap()))
            .collect();
        assert!(dts.windows(2).all(|w| w[0] <= w[1]), "dts monotonic");
        assert!(pts.iter().zip(&dts).all(|(p, d)| p >= d), "pts >= dts");
        channel.publish(inter(8040, 0));
        let next = drain(&mut viewer, &mut reader).await;
        assert_eq!(
            next[0].timestamp_ms, 8040,
            "live tags keep their timestamps"
        );
    }
}
