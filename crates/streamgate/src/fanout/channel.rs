//! One stream's shared state: the FLV header, the current configuration tags, the GOP cache,
//! the time-bounded send queue ([`Ring`]), the viewer count and the source's status.
//!
//! A source (the media server's RTSP pull, or a relay's upstream session) publishes tags;
//! every viewer reads them through its own cursor ([`super::viewer`]). Publishing never waits
//! for a viewer. Joining, leaving and stopping are decided under the hub's lock, so a viewer
//! never joins a channel that is shutting down.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, watch};

use super::gop::GopCache;
use super::metrics::{FanoutMetrics, StreamLabel};
use super::ring::Ring;
use super::{FanoutSettings, Refusal};
use crate::flv::mux::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use crate::flv::{Tag, TagKind};
use crate::lifecycle::Lifecycle;

/// Where a channel's source stands.
#[derive(Debug, Clone)]
pub enum Status {
    /// Connecting to the camera or the upstream hop.
    Connecting,
    /// Playing; viewers may subscribe.
    Playing,
    /// The source failed before playing; viewers get this answer.
    Failed(Refusal),
    /// The source stopped (idle, ended, or the server is shutting down).
    Ended,
}

/// The configuration tags a decoder needs before any frame, with a version that changes
/// whenever one of them does.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigTags {
    pub(crate) meta: Option<Bytes>,
    pub(crate) avc: Option<Bytes>,
    pub(crate) aac: Option<Bytes>,
    pub(crate) version: u64,
}

impl ConfigTags {
    pub(crate) fn iter(&self) -> impl Iterator<Item = Bytes> + '_ {
        [&self.meta, &self.avc, &self.aac]
            .into_iter()
            .filter_map(Clone::clone)
    }

    /// Stores `tag` in its slot; false when the slot already held the same bytes.
    fn store(&mut self, tag: &Tag) -> bool {
        let slot = match tag.bytes.first().copied() {
            Some(TAG_SCRIPT) => &mut self.meta,
            Some(TAG_VIDEO) => &mut self.avc,
            Some(TAG_AUDIO) => &mut self.aac,
            _ => return false,
        };
        // Identical bytes except the timestamp are the same configuration.
        let same = slot
            .as_ref()
            .is_some_and(|old| same_but_timestamp(old, &tag.bytes));
        if !same {
            *slot = Some(tag.bytes.clone());
            self.version += 1;
        }
        !same
    }
}

/// Whether two complete tags differ at most in their timestamp bytes (4..8).
fn same_but_timestamp(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.len() >= 8 && a[..4] == b[..4] && a[8..] == b[8..]
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) header: Option<Bytes>,
    pub(crate) config: ConfigTags,
    pub(crate) gop: GopCache,
    pub(crate) ring: Ring,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) finished: bool,
    /// Timestamp of the newest video frame published (the live edge), ms.
    pub(crate) live_ts: Option<u32>,
    /// Sequence number of the newest key frame in the send queue.
    pub(crate) latest_key_seq: Option<u64>,
}

/// One stream's shared state and its viewers.
#[derive(Debug)]
pub struct Channel {
    key: String,
    label: StreamLabel,
    state: Mutex<State>,
    /// The sequence number the next tag will get; viewers wait on changes.
    pub(crate) published: watch::Sender<u64>,
    status: watch::Sender<Status>,
    wake: Notify,
    pub(crate) settings: Arc<FanoutSettings>,
    pub(crate) metrics: FanoutMetrics,
}

impl Channel {
    pub(crate) fn new(
        key: &str,
        settings: Arc<FanoutSettings>,
        metrics: FanoutMetrics,
        linger: Duration,
    ) -> Self {
        let (published, _) = watch::channel(0);
        let (status, _) = watch::channel(Status::Connecting);
        Self {
            key: key.to_owned(),
            label: StreamLabel::new(key),
            state: Mutex::new(State {
                header: None,
                config: ConfigTags::default(),
                gop: GopCache::new(settings.gop_cache_max_bytes),
                ring: Ring::new(settings.max_behind, settings.queue_max_bytes),
                lifecycle: Lifecycle::with_first_viewer(linger),
                finished: false,
                live_ts: None,
                latest_key_seq: None,
            }),
            published,
            status,
            wake: Notify::new(),
            settings,
            metrics,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stream's key (the camera-map key, or the upstream path of a relay).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The metric label of this stream.
    pub fn metric_label(&self) -> &StreamLabel {
        &self.label
    }

    /// The fan-out metrics.
    pub fn metrics(&self) -> &FanoutMetrics {
        &self.metrics
    }

    /// The source is playing: `header` is the FLV header viewers get first (kept for the
    /// channel's life: a relay that re-attaches upstream never sends a second one). Extra
    /// configuration known up front (the AAC sequence header from the SDP) comes as `config`.
    pub fn set_playing(&self, header: Bytes, config: Option<Tag>) {
        {
            let mut state = self.lock();
            if state.header.is_none() {
                state.header = Some(header);
            }
            if let Some(tag) = config {
                state.config.store(&tag);
            }
        }
        self.status.send_replace(Status::Playing);
    }

    /// Whether the source has played (the header is known).
    pub fn has_played(&self) -> bool {
        self.lock().header.is_some()
    }

    /// Publishes a tag to every viewer and the GOP cache. A configuration tag replaces the
    /// stored one of its type and reaches viewers only when it differs from it (so a relay
    /// that re-attaches upstream does not repeat unchanged sequence headers).
    pub fn publish(&self, tag: Tag) {
        self.publish_at(tag, Instant::now());
    }

    /// [`Channel::publish`] at a given instant (tests drive time).
    pub fn publish_at(&self, tag: Tag, now: Instant) {
        let mut state = self.lock();
        if state.finished {
            return;
        }
        match tag.kind {
            TagKind::Config => {
                if !state.config.store(&tag) {
                    return;
                }
                if tag.bytes.first() == Some(&TAG_VIDEO) {
                    // New video parameters: the cached group belongs to the old ones.
                    state.gop.clear();
                }
            }
            TagKind::KeyFrame | TagKind::InterFrame => {
                state.live_ts = Some(tag.timestamp_ms);
                state.gop.push(&tag);
            }
            TagKind::Audio => state.gop.push(&tag),
        }
        let key = tag.kind == TagKind::KeyFrame;
        let seq = state.ring.push(tag, now);
        if key {
            state.latest_key_seq = Some(seq);
        }
        drop(state);
        self.published.send_replace(seq + 1);
    }

    /// The earliest time the source may stop (no viewers left), `None` while anyone watches.
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

    /// A receiver of status changes.
    pub fn status_changes(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    pub(crate) fn join_viewer(&self) -> bool {
        let mut state = self.lock();
        if state.finished {
            return false;
        }
        state.lifecycle.join();
        drop(state);
        self.metrics.viewers.get_or_create(&self.label).inc();
        self.wake.notify_one();
        true
    }

    pub(crate) fn leave(&self, now: Instant) {
        self.lock().lifecycle.leave(now);
        self.metrics.viewers.get_or_create(&self.label).dec();
        self.wake.notify_one();
    }

    /// Ends the channel: no more tags; viewers' streams end after what they have queued.
    pub(crate) fn finish(&self, status: Status) {
        {
            let mut state = self.lock();
            state.finished = true;
            state.gop.clear();
        }
        self.status.send_replace(status);
        // Wake every waiting viewer so it sees the end.
        self.published.send_modify(|_| {});
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.lock().finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::mux;

    #[test]
    fn unchanged_configuration_is_not_published_again() {
        let channel = Channel::new(
            "cam",
            Arc::new(FanoutSettings::default()),
            FanoutMetrics::default(),
            Duration::from_secs(1),
        );
        channel.set_playing(mux::header(false, true), None);
        channel.publish(mux::avc_sequence_header(0, &[1, 0x64, 0, 0x1e]));
        channel.publish(mux::avc_frame(0, 0, true, &[0, 0, 0, 1, 0x65]));
        let first = *channel.published.borrow();
        // The same record at a later timestamp (a relay re-attached upstream).
        channel.publish(mux::avc_sequence_header(5000, &[1, 0x64, 0, 0x1e]));
        assert_eq!(*channel.published.borrow(), first, "not queued again");
        assert_eq!(channel.lock().gop.len(), 1, "the GOP survives");
        channel.publish(mux::avc_sequence_header(5000, &[1, 0x4d, 0, 0x1f]));
        assert_eq!(*channel.published.borrow(), first + 1, "a new one is");
        assert!(channel.lock().gop.is_empty());
        assert_eq!(channel.lock().config.version, 2);
    }
}
