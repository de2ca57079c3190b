//! One stream's shared pull: its state, the fan-out to viewers, and the map of running
//! pulls ([`Hub`]).
//!
//! There is at most one channel, hence one RTSP session, per stream at a time. Viewers share
//! it: each muxed tag is one reference-counted [`Bytes`] sent through a bounded `tokio`
//! broadcast queue that never blocks the pull. Joining, leaving and stopping are decided under
//! the hub's lock, so a viewer can never join a channel that is shutting down.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::{Notify, broadcast, watch};
use url::Url;

use super::metrics::{MediaMetrics, StreamLabel};
use crate::error::PullError;
use crate::flv::mux::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use crate::flv::{Tag, TagKind};
use crate::gop::{Admit, GopCache, ViewerCursor};
use crate::lifecycle::Lifecycle;

/// Where a channel's pull stands.
#[derive(Debug, Clone)]
pub enum Status {
    /// Connecting to the camera.
    Connecting,
    /// The camera is playing; viewers may subscribe.
    Playing,
    /// The pull failed before or while playing.
    Failed(PullError),
    /// The pull stopped (idle, or the server is shutting down).
    Ended,
}

/// Settings shared by every channel of a media server.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// How long the pull outlives its last viewer.
    pub linger: Duration,
    /// Length of the broadcast queue, in tags; a viewer further behind skips ahead.
    pub backlog_tags: usize,
    /// Largest group of pictures kept for new viewers, in bytes.
    pub gop_cache_max_bytes: usize,
}

#[derive(Debug)]
struct Inner {
    header: Option<Bytes>,
    meta: Option<Bytes>,
    avc: Option<Bytes>,
    aac: Option<Bytes>,
    gop: GopCache,
    tx: Option<broadcast::Sender<Tag>>,
    lifecycle: Lifecycle,
    finished: bool,
}

/// One stream's pull and its viewers.
#[derive(Debug)]
pub struct Channel {
    key: String,
    url: Url,
    label: StreamLabel,
    inner: Mutex<Inner>,
    status: watch::Sender<Status>,
    wake: Notify,
    metrics: MediaMetrics,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The camera-map key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The camera URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The metric label of this stream.
    pub fn metric_label(&self) -> &StreamLabel {
        &self.label
    }

    /// The metrics.
    pub fn metrics(&self) -> &MediaMetrics {
        &self.metrics
    }

    /// The camera answered `PLAY`: the FLV header (with the audio flag only if an audio
    /// track was set up) and the AAC sequence header, if any, are known now.
    pub fn set_playing(&self, header: Bytes, aac_config: Option<Tag>) {
        {
            let mut inner = self.lock();
            inner.header = Some(header);
            inner.aac = aac_config.map(|t| t.bytes);
        }
        self.status.send_replace(Status::Playing);
    }

    /// Publishes a tag to every viewer and the GOP cache. Configuration tags replace the
    /// stored ones of their type.
    pub fn publish(&self, tag: Tag) {
        let mut inner = self.lock();
        if tag.kind == TagKind::Config {
            match tag.bytes.first().copied() {
                Some(TAG_SCRIPT) => inner.meta = Some(tag.bytes.clone()),
                Some(TAG_VIDEO) => {
                    // New parameters: the cached group belongs to the old ones.
                    inner.gop.clear();
                    inner.avc = Some(tag.bytes.clone());
                }
                Some(TAG_AUDIO) => inner.aac = Some(tag.bytes.clone()),
                _ => {}
            }
        } else {
            inner.gop.push(&tag);
        }
        if let Some(tx) = &inner.tx {
            // No receivers is fine: nobody subscribed yet.
            let _ = tx.send(tag);
        }
    }

    fn config_tags(inner: &Inner) -> impl Iterator<Item = Bytes> + '_ {
        [&inner.meta, &inner.avc, &inner.aac]
            .into_iter()
            .filter_map(|b| b.clone())
    }

    /// The earliest time the pull may stop (no viewers left), `None` while anyone watches.
    pub fn stop_deadline(&self) -> Option<Instant> {
        self.lock().lifecycle.deadline()
    }

    /// Resolves when the viewer count changed (to recompute [`Channel::stop_deadline`]).
    pub async fn viewers_changed(&self) {
        self.wake.notified().await;
    }

    /// Current viewers.
    pub fn viewers(&self) -> usize {
        self.lock().lifecycle.viewers()
    }

    /// Current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    fn leave(&self, now: Instant) {
        self.lock().lifecycle.leave(now);
        self.metrics.viewers.get_or_create(&self.label).dec();
        self.wake.notify_one();
    }

    /// Ends the channel: no more tags, viewers' streams end after what they have queued.
    fn finish(&self, status: Status) {
        {
            let mut inner = self.lock();
            inner.finished = true;
            inner.tx = None;
            inner.gop.clear();
        }
        self.status.send_replace(status);
    }

    /// Snapshot for a new viewer plus its receiver, taken atomically with respect to
    /// [`Channel::publish`]: nothing is lost or sent twice between the two.
    fn subscribe(&self) -> Option<(Bytes, broadcast::Receiver<Tag>, bool)> {
        let inner = self.lock();
        let rx = inner.tx.as_ref()?.subscribe();
        let header = inner.header.clone()?;
        let mut first = BytesMut::from(&header[..]);
        for tag in Self::config_tags(&inner) {
            first.extend_from_slice(&tag);
        }
        let started_at_key = inner.gop.has_key_frame() && inner.avc.is_some();
        if started_at_key {
            for tag in inner.gop.snapshot() {
                first.extend_from_slice(&tag);
            }
        }
        Some((first.freeze(), rx, started_at_key))
    }
}

/// Why [`Hub::join`] gave no stream.
#[derive(Debug, Clone)]
pub enum JoinError {
    /// The pull failed.
    Pull(PullError),
    /// The pull ended before the viewer could subscribe (it was stopping); retry.
    Ended,
}

/// The running channels of a media server.
#[derive(Debug)]
pub struct Hub {
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    settings: ChannelSettings,
    metrics: MediaMetrics,
}

/// What [`Hub::join`] returns besides the viewer: whether it created the channel (the caller
/// then starts its pull).
#[derive(Debug)]
pub struct Joined {
    /// The channel.
    pub channel: Arc<Channel>,
    /// The viewer's membership; dropping it leaves the channel.
    pub guard: ViewerGuard,
    /// Whether this call created the channel.
    pub created: bool,
}

impl Hub {
    /// An empty hub.
    pub fn new(settings: ChannelSettings, metrics: MediaMetrics) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            settings,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Channel>>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings.
    pub fn settings(&self) -> &ChannelSettings {
        &self.settings
    }

    /// The metrics.
    pub fn metrics(&self) -> &MediaMetrics {
        &self.metrics
    }

    /// Joins the channel of `key` (pulling `url`), creating it if none is running.
    pub fn join(&self, key: &str, url: &Url) -> Joined {
        let label = MediaMetrics::label(key);
        let mut map = self.lock();
        if let Some(channel) = map.get(key) {
            let mut inner = channel.lock();
            if !inner.finished {
                inner.lifecycle.join();
                drop(inner);
                let channel = channel.clone();
                self.metrics.viewers.get_or_create(&label).inc();
                channel.wake.notify_one();
                return Joined {
                    guard: ViewerGuard {
                        channel: channel.clone(),
                    },
                    channel,
                    created: false,
                };
            }
        }
        let (tx, _) = broadcast::channel(self.settings.backlog_tags.max(16));
        let (status, _) = watch::channel(Status::Connecting);
        let channel = Arc::new(Channel {
            key: key.to_owned(),
            url: url.clone(),
            label: label.clone(),
            inner: Mutex::new(Inner {
                header: None,
                meta: None,
                avc: None,
                aac: None,
                gop: GopCache::new(self.settings.gop_cache_max_bytes),
                tx: Some(tx),
                lifecycle: Lifecycle::with_first_viewer(self.settings.linger),
                finished: false,
            }),
            status,
            wake: Notify::new(),
            metrics: self.metrics.clone(),
        });
        map.insert(key.to_owned(), channel.clone());
        self.metrics.viewers.get_or_create(&label).inc();
        Joined {
            guard: ViewerGuard {
                channel: channel.clone(),
            },
            channel,
            created: true,
        }
    }

    /// Stops `channel` if it has had no viewer for its linger time at `now`; true if it
    /// stopped. Decided under the hub's lock, so no viewer joins in between.
    pub fn try_stop_idle(&self, channel: &Arc<Channel>, now: Instant) -> bool {
        let mut map = self.lock();
        let mut inner = channel.lock();
        if !inner.lifecycle.should_stop(now) {
            return false;
        }
        inner.finished = true;
        drop(inner);
        if map
            .get(&channel.key)
            .is_some_and(|c| Arc::ptr_eq(c, channel))
        {
            map.remove(&channel.key);
        }
        drop(map);
        channel.finish(Status::Ended);
        true
    }

    /// Ends `channel` with `status` (the pull failed or the server stops) and forgets it.
    pub fn end(&self, channel: &Arc<Channel>, status: Status) {
        let mut map = self.lock();
        if map
            .get(&channel.key)
            .is_some_and(|c| Arc::ptr_eq(c, channel))
        {
            map.remove(&channel.key);
        }
        drop(map);
        channel.finish(status);
    }

    /// Running channels: (key, viewers, status).
    pub fn list(&self) -> Vec<(String, usize, Status)> {
        let map = self.lock();
        let mut out: Vec<_> = map
            .values()
            .map(|c| (c.key.clone(), c.viewers(), c.status()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Ends every channel (server shutdown).
    pub fn end_all(&self) {
        let channels: Vec<Arc<Channel>> = self.lock().drain().map(|(_, c)| c).collect();
        for channel in channels {
            channel.finish(Status::Ended);
        }
    }
}

/// A viewer's membership in a channel; dropping it leaves (and may start the idle timer).
#[derive(Debug)]
pub struct ViewerGuard {
    channel: Arc<Channel>,
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.channel.leave(Instant::now());
    }
}

/// Waits until the channel plays, then returns the viewer's byte stream: the FLV header,
/// the configuration tags and the cached group of pictures in one first chunk, then live
/// tags as they come (skipping ahead to the next key frame if the viewer falls behind).
///
/// # Errors
/// [`JoinError::Pull`] when the camera pull fails, [`JoinError::Ended`] when the channel
/// ended first.
pub async fn viewer_stream(
    channel: Arc<Channel>,
    guard: ViewerGuard,
) -> Result<impl Stream<Item = Bytes> + Send + 'static, JoinError> {
    let mut status = channel.status.subscribe();
    loop {
        let current = status.borrow_and_update().clone();
        match current {
            Status::Playing => break,
            Status::Failed(error) => return Err(JoinError::Pull(error)),
            Status::Ended => return Err(JoinError::Ended),
            Status::Connecting => {
                if status.changed().await.is_err() {
                    return Err(JoinError::Ended);
                }
            }
        }
    }
    let (first, rx, started_at_key) = channel.subscribe().ok_or(JoinError::Ended)?;
    let state = ViewerState {
        pending: VecDeque::from([first]),
        rx,
        cursor: ViewerCursor::new(started_at_key),
        channel,
        _guard: guard,
    };
    Ok(futures::stream::unfold(state, |mut state| async move {
        let bytes = state.next().await?;
        Some((bytes, state))
    }))
}

struct ViewerState {
    pending: VecDeque<Bytes>,
    rx: broadcast::Receiver<Tag>,
    cursor: ViewerCursor,
    channel: Arc<Channel>,
    _guard: ViewerGuard,
}

impl ViewerState {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Some(bytes);
            }
            match self.rx.recv().await {
                Ok(tag) => match self.cursor.admit(tag.kind) {
                    Admit::Deliver => return Some(tag.bytes),
                    Admit::Skip => {}
                    Admit::ResyncThenDeliver => {
                        let inner = self.channel.lock();
                        self.pending.extend(Channel::config_tags(&inner));
                        drop(inner);
                        self.pending.push_back(tag.bytes);
                    }
                },
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(stream = %self.channel.key, missed, "slow viewer skips to the next key frame");
                    self.cursor.lagged();
                    self.channel
                        .metrics
                        .viewer_skips
                        .get_or_create(&self.channel.label)
                        .inc();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::mux;
    use crate::flv::{FlvReader, ReadTag};
    use futures::StreamExt;

    fn hub(backlog: usize) -> Hub {
        Hub::new(
            ChannelSettings {
                linger: Duration::from_secs(5),
                backlog_tags: backlog,
                gop_cache_max_bytes: 1 << 20,
            },
            MediaMetrics::default(),
        )
    }

    fn url() -> Url {
        Url::parse("rtsp://127.0.0.1:9/cam").unwrap()
    }

    fn key(ts: u32) -> Tag {
        mux::avc_frame(ts, 0, true, &[0, 0, 0, 2, 0x65, 0x88])
    }

    fn inter(ts: u32) -> Tag {
        mux::avc_frame(ts, 0, false, &[0, 0, 0, 2, 0x41, 0x9a])
    }

    fn read_all(reader: &mut FlvReader, bytes: &Bytes) -> Vec<ReadTag> {
        reader.push(bytes);
        let mut tags = Vec::new();
        while let Some(tag) = reader.next_tag().unwrap() {
            tags.push(tag);
        }
        tags
    }

    #[tokio::test]
    async fn late_viewer_starts_at_the_cached_key_frame() {
        let hub = hub(64);
        let first = hub.join("cam", &url());
        assert!(first.created);
        let channel = first.channel.clone();
        channel.set_playing(mux::header(false, true), None);
        channel.publish(mux::avc_sequence_header(0, &[1, 0x64, 0, 0x1e]));
        for tag in [key(0), inter(40), key(80), inter(120), inter(160)] {
            channel.publish(tag);
        }
        let late = hub.join("cam", &url());
        assert!(!late.created, "one channel per stream");
        let mut stream = Box::pin(viewer_stream(late.channel, late.guard).await.unwrap());
        let mut reader = FlvReader::new();
        let tags = read_all(&mut reader, &stream.next().await.unwrap());
        assert!(reader.header().is_some_and(|h| h.has_video && !h.has_audio));
        assert!(tags[0].is_avc_sequence_header());
        assert!(tags[1].is_key_frame());
        assert_eq!(
            tags.iter().map(|t| t.timestamp_ms).collect::<Vec<_>>(),
            vec![0, 80, 120, 160],
            "sequence header, then the latest group of pictures"
        );
        channel.publish(inter(200));
        let next = read_all(&mut reader, &stream.next().await.unwrap());
        assert_eq!(next[0].timestamp_ms, 200);
    }

    #[tokio::test]
    async fn a_slow_viewer_skips_to_the_next_key_frame_and_the_fast_one_gets_everything() {
        let hub = hub(16);
        let fast = hub.join("cam", &url());
        let channel = fast.channel.clone();
        channel.set_playing(mux::header(false, true), None);
        channel.publish(mux::avc_sequence_header(0, &[1, 0x64, 0, 0x1e]));
        channel.publish(key(0));
        let slow = hub.join("cam", &url());
        let mut slow_stream = Box::pin(viewer_stream(slow.channel, slow.guard).await.unwrap());
        let mut fast_stream = Box::pin(viewer_stream(fast.channel, fast.guard).await.unwrap());
        let mut fast_reader = FlvReader::new();
        let first = read_all(&mut fast_reader, &fast_stream.next().await.unwrap());
        assert_eq!(first.len(), 2);
        let mut fast_seen = Vec::new();
        for ts in 1..=40 {
            channel.publish(inter(ts));
            for tag in read_all(&mut fast_reader, &fast_stream.next().await.unwrap()) {
                fast_seen.push(tag.timestamp_ms);
            }
        }
        channel.publish(key(41));
        channel.publish(inter(42));
        assert_eq!(
            fast_seen,
            (1..=40).collect::<Vec<u32>>(),
            "the fast viewer lost nothing"
        );
        // The slow viewer read nothing while 42 tags went by a queue of 16.
        let mut slow_reader = FlvReader::new();
        let snapshot = read_all(&mut slow_reader, &slow_stream.next().await.unwrap());
        assert_eq!(snapshot.len(), 2, "header, sequence header and key frame 0");
        let mut after = Vec::new();
        while after.len() < 3 {
            after.extend(read_all(
                &mut slow_reader,
                &slow_stream.next().await.unwrap(),
            ));
        }
        assert!(
            after[0].is_avc_sequence_header(),
            "configuration is sent again"
        );
        assert!(after[1].is_key_frame());
        assert_eq!(after[1].timestamp_ms, 41);
        assert_eq!(after[2].timestamp_ms, 42);
        let skips = hub
            .metrics()
            .viewer_skips
            .get_or_create(&MediaMetrics::label("cam"))
            .get();
        assert_eq!(skips, 1);
    }

    #[tokio::test]
    async fn idle_channel_stops_only_after_linger_and_a_new_viewer_gets_a_new_pull() {
        let hub = hub(16);
        let joined = hub.join("cam", &url());
        let channel = joined.channel.clone();
        let left_at = Instant::now();
        drop(joined.guard);
        assert_eq!(channel.viewers(), 0);
        let deadline = channel.stop_deadline().unwrap();
        assert!(deadline >= left_at + Duration::from_secs(5));
        assert!(!hub.try_stop_idle(&channel, deadline - Duration::from_millis(1)));
        let again = hub.join("cam", &url());
        assert!(!again.created, "a returning viewer keeps the pull");
        drop(again.guard);
        let deadline = channel.stop_deadline().unwrap();
        assert!(hub.try_stop_idle(&channel, deadline));
        assert!(matches!(channel.status(), Status::Ended));
        assert!(hub.list().is_empty());
        let fresh = hub.join("cam", &url());
        assert!(fresh.created, "after the stop a viewer starts a new pull");
        assert!(!Arc::ptr_eq(&fresh.channel, &channel));
    }
}
