//! The sans-I/O core: decisions about retries, idempotency and a transaction's life on chain,
//! as pure functions of the facts and the time passed in (style.md 2.7, quinn-proto's model).
//! The workers in [`crate::broadcast`], [`crate::follow`] and [`crate::webhook`] fetch the
//! facts, call these functions and write the outcome through the outbox.
//!
//! Times are Unix milliseconds taken from a [`svckit::Clock`]; tests drive them with
//! [`svckit::TestClock`] and never sleep.

pub mod backoff;
pub mod breaker;
pub mod chain;
pub mod overdue;
pub mod ratelimit;
pub mod tracker;
pub mod window;

pub use backoff::{Backoff, Retry};
pub use tracker::{Attempt, BroadcastStep, Inclusion, Phase, Policy, Step, Tracked};
pub use window::Admission;

/// Unix milliseconds of `clock`'s wall time (0 before 1970).
pub fn now_ms(clock: &dyn svckit::Clock) -> u64 {
    clock
        .wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
