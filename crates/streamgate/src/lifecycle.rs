//! When a camera pull stops (sans-I/O): one pull per stream runs while anyone watches, and
//! stops a configurable linger time (default 5 s) after the last viewer left, unless a new
//! viewer came back in between. Time is passed in, so tests run on virtual time.

use std::time::{Duration, Instant};

/// Default time a pull outlives its last viewer.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

/// Viewer count and idle timer of one stream's pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    viewers: usize,
    idle_since: Option<Instant>,
    linger: Duration,
}

impl Lifecycle {
    /// A pull started for its first viewer.
    pub fn with_first_viewer(linger: Duration) -> Self {
        Self {
            viewers: 1,
            idle_since: None,
            linger,
        }
    }

    /// A viewer joined: the idle timer is cancelled.
    pub fn join(&mut self) {
        self.viewers += 1;
        self.idle_since = None;
    }

    /// A viewer left at `now`; when it was the last, the idle timer starts.
    pub fn leave(&mut self, now: Instant) {
        self.viewers = self.viewers.saturating_sub(1);
        if self.viewers == 0 {
            self.idle_since = Some(now);
        }
    }

    /// Current viewers.
    pub fn viewers(&self) -> usize {
        self.viewers
    }

    /// When the pull should stop if nobody joins before, `None` while anyone watches.
    pub fn deadline(&self) -> Option<Instant> {
        self.idle_since.map(|since| since + self.linger)
    }

    /// Whether the pull should stop at `now`.
    pub fn should_stop(&self, now: Instant) -> bool {
        self.viewers == 0 && self.deadline().is_some_and(|deadline| now >= deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svckit::{Clock, TestClock};

    #[test]
    fn stops_linger_after_the_last_viewer() {
        let clock = TestClock::new();
        let mut life = Lifecycle::with_first_viewer(DEFAULT_LINGER);
        life.join();
        assert_eq!(life.viewers(), 2);
        life.leave(clock.now());
        assert_eq!(life.deadline(), None, "one viewer left");
        clock.tick(Duration::from_secs(60));
        assert!(!life.should_stop(clock.now()));
        life.leave(clock.now());
        let deadline = life.deadline().unwrap();
        assert_eq!(deadline, clock.now() + DEFAULT_LINGER);
        clock.tick(Duration::from_millis(4_999));
        assert!(!life.should_stop(clock.now()));
        clock.tick(Duration::from_millis(1));
        assert!(life.should_stop(clock.now()));
    }

    #[test]
    fn a_returning_viewer_cancels_the_stop() {
        let clock = TestClock::new();
        let mut life = Lifecycle::with_first_viewer(Duration::from_secs(2));
        life.leave(clock.now());
        clock.tick(Duration::from_secs(1));
        life.join();
        clock.tick(Duration::from_secs(5));
        assert!(!life.should_stop(clock.now()));
        life.leave(clock.now());
        clock.tick(Duration::from_secs(2));
        assert!(life.should_stop(clock.now()));
        life.leave(clock.now());
        assert_eq!(life.viewers(), 0, "extra leaves saturate");
    }
}
