//! A circuit breaker per webhook receiver, so a receiver that is down costs a handful of
//! attempts an hour instead of one per notification, and gets everything as soon as it is
//! back (the delivery schedules of Svix and Stripe retry for days; Hystrix-style breakers
//! stop hammering a dead endpoint).
//!
//! ```text
//!   Closed ──(breaker_failures consecutive failures)──> Open
//!     ^                                                   │ one probe at a time, after
//!     │                                                   │ probe_initial, doubling to
//!     └──────────(the probe is delivered: drain)──────────┘ probe_max per failed probe
//! ```
//!
//! While a receiver is open its notifications are parked (not attempted, attempts not
//! counted); when a probe succeeds the worker makes all of them due at once (the drain), so
//! a recovered receiver gets its backlog within one probe interval. Sans-I/O: time is
//! passed in as Unix milliseconds.

use crate::config::settings::BreakerSettings;

/// What a delivery to the receiver may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: deliver.
    Send,
    /// Open and a probe is due: deliver this one as the probe.
    Probe,
    /// Open: park it until the receiver is back.
    Hold,
}

/// One receiver's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Breaker {
    consecutive_failures: u32,
    open: bool,
    probe_wait_ms: u64,
    next_probe_at_ms: u64,
    probing: bool,
}

/// What an outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing worth acting on.
    None,
    /// The circuit opened: park the receiver's notifications.
    Opened,
    /// The circuit closed after a successful probe: drain the parked notifications.
    Closed,
}

fn ms(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Breaker {
    /// Whether the circuit is open.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Whether nothing is remembered (closed, no failures): the entry can be dropped.
    pub fn is_idle(&self) -> bool {
        !self.open && self.consecutive_failures == 0
    }

    /// When the next probe is due (meaningful while open).
    pub fn next_probe_at_ms(&self) -> u64 {
        self.next_probe_at_ms
    }

    /// Whether a delivery may go out at `now_ms`; a `Probe` answer reserves the one probe
    /// slot until [`Self::succeeded`] or [`Self::failed`].
    pub fn permit(&mut self, now_ms: u64) -> Permit {
        if !self.open {
            Permit::Send
        } else if !self.probing && now_ms >= self.next_probe_at_ms {
            self.probing = true;
            Permit::Probe
        } else {
            Permit::Hold
        }
    }

    /// A delivery (or the probe) answered 2xx.
    pub fn succeeded(&mut self) -> Transition {
        let was_open = self.open;
        *self = Self::default();
        if was_open {
            Transition::Closed
        } else {
            Transition::None
        }
    }

    /// A delivery (or the probe) failed at `now_ms`: no answer, 5xx, 408 or 429.
    pub fn failed(&mut self, now_ms: u64, settings: &BreakerSettings) -> Transition {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.open {
            if self.probing {
                self.probing = false;
                self.probe_wait_ms = self
                    .probe_wait_ms
                    .saturating_mul(2)
                    .min(ms(settings.probe_max));
                self.next_probe_at_ms = now_ms.saturating_add(self.probe_wait_ms);
            }
            return Transition::None;
        }
        if self.consecutive_failures >= settings.failures {
            self.open = true;
            self.probing = false;
            self.probe_wait_ms = ms(settings.probe_initial).min(ms(settings.probe_max));
            self.next_probe_at_ms = now_ms.saturating_add(self.probe_wait_ms);
            Transition::Opened
        } else {
            Transition::None
        }
    }

    /// A reserved probe could not be sent (no pending notification): release the slot and
    /// look again after the current wait.
    pub fn probe_skipped(&mut self, now_ms: u64) {
        self.probing = false;
        self.next_probe_at_ms = now_ms.saturating_add(self.probe_wait_ms);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failures: 5,
        probe_initial: Duration::from_secs(1),
        probe_max: Duration::from_secs(45),
    };

    #[test]
    fn opens_after_consecutive_failures_and_probes_one_at_a_time() {
        let mut b = Breaker::default();
        for i in 0..4 {
            assert_eq!(b.permit(i), Permit::Send);
            assert_eq!(b.failed(i, &SETTINGS), Transition::None);
        }
        // A success in between resets the count.
        assert_eq!(b.succeeded(), Transition::None);
        for i in 0..4 {
            b.failed(i, &SETTINGS);
        }
        assert_eq!(b.failed(10, &SETTINGS), Transition::Opened);
        assert!(b.is_open());
        assert_eq!(b.permit(500), Permit::Hold);
        assert_eq!(b.permit(1_010), Permit::Probe);
        // Only one probe at a time.
        assert_eq!(b.permit(1_020), Permit::Hold);
        assert_eq!(b.failed(1_100, &SETTINGS), Transition::None);
        assert_eq!(b.next_probe_at_ms(), 1_100 + 2_000);
        assert_eq!(b.permit(3_100), Permit::Probe);
        assert_eq!(b.succeeded(), Transition::Closed);
        assert_eq!(b.permit(3_200), Permit::Send);
        assert!(b.is_idle());
    }

    /// A receiver down for an hour, with a notification every 10 s and the default schedule,
    /// in virtual time: fewer than 100 attempts while it is down, nothing given up, and
    /// the recovery found within 45 s (the probe interval cap).
    #[test]
    fn an_hour_down_costs_fewer_than_100_attempts() {
        let mut b = Breaker::default();
        let down_until = 3_600_000;
        let mut attempts = 0;
        let mut recovered_at = None;
        let mut now = 0;
        while now < down_until + 120_000 {
            let new_notification = now % 10_000 == 0;
            let due_probe = b.is_open() && now >= b.next_probe_at_ms();
            if new_notification || due_probe {
                match b.permit(now) {
                    Permit::Send | Permit::Probe => {
                        attempts += u32::from(now < down_until);
                        if now < down_until {
                            b.failed(now, &SETTINGS);
                        } else if b.succeeded() == Transition::Closed || recovered_at.is_none() {
                            recovered_at.get_or_insert(now);
                        }
                    }
                    Permit::Hold => {}
                }
            }
            now += 100;
        }
        assert!(attempts < 100, "{attempts} attempts while down");
        let found = recovered_at.unwrap() - down_until;
        assert!(found <= 45_000, "recovery found after {found} ms");
    }
}
