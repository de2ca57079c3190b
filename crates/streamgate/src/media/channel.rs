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
