//! The running channels of a hop, by stream key: at most one channel (one camera pull, one
//! upstream session) per stream at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::FanoutSettings;
use super::channel::{Channel, Status};
use super::metrics::FanoutMetrics;

/// The running channels; see the module docs.
#[derive(Debug)]
pub struct Hub {
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    settings: Arc<FanoutSettings>,
    linger: Duration,
    metrics: FanoutMetrics,
}

/// What [`Hub::join`] returns: the channel, the viewer's membership, and whether this call
/// created the channel (the caller then starts its source).
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
    /// An empty hub whose channels outlive their last viewer by `linger`.
    pub fn new(settings: FanoutSettings, linger: Duration, metrics: FanoutMetrics) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            settings: Arc::new(settings),
            linger,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Channel>>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings.
    pub fn settings(&self) -> &FanoutSettings {
        &self.settings
    }

    /// The metrics.
    pub fn metrics(&self) -> &FanoutMetrics {
        &self.metrics
    }

    /// Joins the channel of `key`, creating it if none is running.
    pub fn join(&self, key: &str) -> Joined {
        let mut map = self.lock();
        if let Some(channel) = map.get(key)
            && channel.join_viewer()
        {
            let channel = channel.clone();
            return Joined {
                guard: ViewerGuard {
                    channel: channel.clone(),
                },
                channel,
                created: false,
            };
        }
        let channel = Arc::new(Channel::new(
            key,
            self.settings.clone(),
            self.metrics.clone(),
            self.linger,
        ));
        map.insert(key.to_owned(), channel.clone());
        self.metrics
            .viewers
            .get_or_create(channel.metric_label())
            .inc();
        Joined {
            guard: ViewerGuard {
                channel: channel.clone(),
            },
            channel,
            created: true,
        }
    }

    /// The running channel of `key`, if any.
    pub fn get(&self, key: &str) -> Option<Arc<Channel>> {
        self.lock().get(key).cloned()
    }

    /// Stops `channel` if it has had no viewer for the linger time at `now`; true if it
    /// stopped. Decided under the hub's lock, so no viewer joins in between.
    pub fn try_stop_idle(&self, channel: &Arc<Channel>, now: Instant) -> bool {
        let mut map = self.lock();
        {
            let state = channel.lock();
            if !state.lifecycle.should_stop(now) {
                return false;
            }
        }
        if map
            .get(channel.key())
            .is_some_and(|c| Arc::ptr_eq(c, channel))
        {
            map.remove(channel.key());
        }
        drop(map);
        channel.finish(Status::Ended);
        true
    }

    /// Ends `channel` with `status` (its source failed or ended) and forgets it.
    pub fn end(&self, channel: &Arc<Channel>, status: Status) {
        let mut map = self.lock();
        if map
            .get(channel.key())
            .is_some_and(|c| Arc::ptr_eq(c, channel))
        {
            map.remove(channel.key());
        }
        drop(map);
        channel.finish(status);
    }

    /// Running channels: (key, viewers, status), sorted by key.
    pub fn list(&self) -> Vec<(String, usize, Status)> {
        let map = self.lock();
        let mut out: Vec<_> = map
            .values()
            .map(|c| (c.key().to_owned(), c.viewers(), c.status()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Ends every channel (the server stops).
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

/// Completes once `channel` had no viewer for its linger time, after stopping it (decided by
/// [`Hub::try_stop_idle`]). Sources select on it beside reading their input.
pub async fn idle_stop(hub: &Hub, channel: &Arc<Channel>) {
    loop {
        let deadline = channel.stop_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            () = sleep_until_opt(deadline) => {
                if hub.try_stop_idle(channel, Instant::now()) {
                    return;
                }
            }
            () = channel.viewers_changed() => {}
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(
            FanoutSettings::default(),
            Duration::from_secs(5),
            FanoutMetrics::default(),
        )
    }

    #[test]
    fn idle_channel_stops_only_after_linger_and_a_new_viewer_gets_a_new_source() {
        let hub = hub();
        let joined = hub.join("cam");
        assert!(joined.created);
        let channel = joined.channel.clone();
        let left_at = Instant::now();
        drop(joined.guard);
        assert_eq!(channel.viewers(), 0);
        let deadline = channel.stop_deadline().unwrap();
        assert!(deadline >= left_at + Duration::from_secs(5));
        assert!(!hub.try_stop_idle(&channel, deadline - Duration::from_millis(1)));
        let again = hub.join("cam");
        assert!(!again.created, "a returning viewer keeps the source");
        drop(again.guard);
        let deadline = channel.stop_deadline().unwrap();
        assert!(hub.try_stop_idle(&channel, deadline));
        assert!(matches!(channel.status(), Status::Ended));
        assert!(hub.list().is_empty());
        let fresh = hub.join("cam");
        assert!(fresh.created, "after the stop a viewer starts a new source");
        assert!(!Arc::ptr_eq(&fresh.channel, &channel));
    }
}
