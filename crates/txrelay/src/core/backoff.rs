//! Exponential backoff with jitter for webhook deliveries and broadcasts (seed ¶46-47: "send
//! the execution result to the receiver again").
//!
//! After `n` failed attempts the next one waits `min(max, initial * 2^(n-1))`, of which the
//! upper half is jittered ("equal jitter"): the wait lies in `[d/2, d]`, so receivers that
//! failed together do not all retry at the same instant. After `max_attempts` failures the
//! work is given up (dead-lettered for webhooks).

use std::time::Duration;

use crate::config::BackoffSettings;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again at this Unix millisecond.
    At(u64),
    /// The attempts are used up.
    GiveUp,
}

/// A retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    settings: BackoffSettings,
}

impl Backoff {
    /// A schedule from validated settings.
    pub fn new(settings: BackoffSettings) -> Self {
        Self { settings }
    }

    /// The attempts allowed in total.
    pub fn max_attempts(&self) -> u32 {
        self.settings.max_attempts
    }

    /// The un-jittered delay after `failures` failed attempts (`failures >= 1`):
    /// `min(max, initial * 2^(failures-1))`.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(40);
        let factor = 1_u64 << exponent;
        let initial = u64::try_from(self.settings.initial.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.settings.max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(initial.saturating_mul(factor).min(max))
    }

    /// The delay after `failures` failed attempts with `jitter` in `[0, 1]` (values outside
    /// are clamped): `d/2 + jitter * d/2` for the base delay `d`.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let base = self.base_delay(failures);
        let half = base / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The decision after the `failures`-th failed attempt at Unix millisecond `now_ms`.
    pub fn after_failure(&self, failures: u32, now_ms: u64, jitter: f64) -> Retry {
        if failures >= self.settings.max_attempts {
            Retry::GiveUp
        } else {
            let delay = u64::try_from(self.delay(failures, jitter).as_millis()).unwrap_or(u64::MAX);
            Retry::At(now_ms.saturating_add(delay))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Backoff {
        Backoff::new(BackoffSettings {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            max_attempts: 8,
        })
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let backoff = schedule();
        let millis: Vec<u128> = (1..=8).map(|n| backoff.base_delay(n).as_millis()).collect();
        assert_eq!(
            millis,
            [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
        assert_eq!(backoff.base_delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let backoff = schedule();
        assert_eq!(backoff.delay(3, 0.0), Duration::from_millis(1000));
        assert_eq!(backoff.delay(3, 1.0), Duration::from_millis(2000));
        assert_eq!(backoff.delay(3, 0.5), Duration::from_millis(1500));
        assert_eq!(backoff.delay(3, 7.0), Duration::from_millis(2000));
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let backoff = schedule();
        assert_eq!(backoff.after_failure(1, 1_000, 1.0), Retry::At(1_500));
        assert_eq!(backoff.after_failure(7, 1_000, 1.0), Retry::At(11_000));
        assert_eq!(backoff.after_failure(8, 1_000, 1.0), Retry::GiveUp);
    }

    #[test]
    fn a_schedule_driven_by_virtual_time_dead_letters_on_time() {
        // A receiver that never answers: attempts at t=0 and after each delay; with jitter 1
        // the 8th failure lands at 0.5+1+2+4+8+10+10 = 35.5 s and is the last.
        let clock = svckit::TestClock::starting_at(std::time::UNIX_EPOCH);
        let backoff = schedule();
        let mut failures = 0;
        loop {
            failures += 1;
            match backoff.after_failure(failures, crate::core::now_ms(&clock), 1.0) {
                Retry::At(at) => {
                    clock.tick(Duration::from_millis(at - crate::core::now_ms(&clock)));
                }
                Retry::GiveUp => break,
            }
        }
        assert_eq!(failures, 8);
        assert_eq!(clock.elapsed(), Duration::from_millis(35_500));
    }
}
