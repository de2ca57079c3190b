//! Idempotency control (seed ¶30-36).
//!
//! With idempotency requested, a transaction identical to one received within the preset
//! period (same hash, ¶34 "transaction identifier, hash value") is not sent again and the
//! earlier hash is returned (¶34); without it, or outside the period, it is sent (¶35-36).
//! The database makes this exact under concurrency: the first insert of a hash wins
//! (`INSERT ... ON CONFLICT DO NOTHING`), every other submission reads the winner's
//! acceptance time and asks [`admit`].

use std::time::Duration;

/// What to do with a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Never seen: record it and send it.
    New,
    /// Seen within the window with idempotency requested: do not send; answer
    /// `duplicate: true` with the earlier hash.
    Duplicate,
    /// Seen before, but idempotency was not requested or the window has passed: send the
    /// same bytes again (a resubmission; the window restarts when idempotency was requested).
    Resend,
}

/// Decides for a submission of a hash first accepted at `accepted_at_ms` (`None`: never),
/// received at `now_ms`, with `idempotent` as the request says and the configured `window`.
pub fn admit(
    accepted_at_ms: Option<u64>,
    idempotent: bool,
    now_ms: u64,
    window: Duration,
) -> Admission {
    let Some(accepted_at_ms) = accepted_at_ms else {
        return Admission::New;
    };
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    if idempotent && now_ms.saturating_sub(accepted_at_ms) < window_ms {
        Admission::Duplicate
    } else {
        Admission::Resend
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svckit::TestClock;

    #[test]
    fn window_decides_with_virtual_time() {
        let clock = TestClock::starting_at(std::time::UNIX_EPOCH + Duration::from_secs(1_000));
        let window = Duration::from_secs(60);
        let first = crate::core::now_ms(&clock);
        assert_eq!(admit(None, true, first, window), Admission::New);
        clock.tick(Duration::from_secs(59));
        let now = crate::core::now_ms(&clock);
        assert_eq!(admit(Some(first), true, now, window), Admission::Duplicate);
        assert_eq!(admit(Some(first), false, now, window), Admission::Resend);
        clock.tick(Duration::from_secs(1));
        let now = crate::core::now_ms(&clock);
        assert_eq!(admit(Some(first), true, now, window), Admission::Resend);
    }

    #[test]
    fn a_clock_behind_the_record_counts_as_inside() {
        assert_eq!(
            admit(Some(5_000), true, 4_000, Duration::from_secs(1)),
            Admission::Duplicate
        );
    }
}
