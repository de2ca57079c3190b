//! Injectable time (delta-rs's `Clock`/`TestClock` is the model): time-driven logic takes a
//! [`Clock`] so tests advance time with [`TestClock::tick`] instead of sleeping.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// A source of the current time.
pub trait Clock: Debug + Send + Sync {
    /// Monotonic time, for deadlines, timeouts and durations.
    fn now(&self) -> Instant;
    /// Wall-clock time, for timestamps shown to people or stored.
    fn wall(&self) -> SystemTime;
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct TestClock {
    start: Instant,
    start_wall: SystemTime,
    elapsed: Arc<Mutex<Duration>>,
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClock {
    /// A clock standing at the moment of creation; its wall time starts at the real wall time.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A clock whose wall time starts at `wall` (for reproducible timestamps).
    pub fn starting_at(wall: SystemTime) -> Self {
        Self {
            start: Instant::now(),
            start_wall: wall,
            elapsed: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    /// Moves the clock forward by `step`.
    pub fn tick(&self, step: Duration) {
        let mut elapsed = self.elapsed.lock().unwrap_or_else(PoisonError::into_inner);
        *elapsed += step;
    }

    /// Time advanced since creation.
    pub fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn wall(&self) -> SystemTime {
        self.start_wall + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_moves_only_on_tick() {
        let clock = TestClock::starting_at(SystemTime::UNIX_EPOCH);
        let (t0, w0) = (clock.now(), clock.wall());
        assert_eq!(clock.now(), t0);
        let shared = clock.clone();
        shared.tick(Duration::from_millis(250));
        assert_eq!(clock.now() - t0, Duration::from_millis(250));
        assert_eq!(clock.wall(), w0 + Duration::from_millis(250));
        assert_eq!(clock.elapsed(), Duration::from_millis(250));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let a = SystemClock.now();
        let b = SystemClock.now();
        assert!(b >= a);
    }
}
