//! The backlog sampler: once a second it counts unfinished transactions, open broadcast jobs
//! and pending notifications ([`crate::store::Backlog`]) and publishes them.
//!
//! - The tracked count is what the submission path compares with `tracking.max_tracked`
//!   (503 `backlog_full`, issue 11 item 3). Between samples each new submission adds one, so
//!   the bound overshoots by at most the submissions in flight at a sample, not a second's
//!   worth; the next sample sets the true count (finalized rows leave it).
//! - Gauges: `txrelay_tracked_transactions`, `txrelay_backlog{kind="broadcast_jobs" |
//!   "notifications"}` and `txrelay_oldest_pending_seconds{kind="transaction" |
//!   "notification"}`.
//!
//! A sample that fails or takes longer than [`DEADLINE`] keeps the previous figures (logged).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::warn;

use crate::metrics::Metrics;
use crate::state::Shared;
use crate::store::Backlog;

/// Time between samples.
pub(crate) const EVERY: Duration = Duration::from_secs(1);
/// Longest a sample may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(5);

/// Samples until the relay stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::time::timeout(DEADLINE, shared.store.backlog_sample()).await {
            Ok(Ok(sample)) => publish(&shared, &sample),
            Ok(Err(error)) => warn!(%error, "backlog sample failed"),
            Err(_) => warn!(deadline = ?DEADLINE, "backlog sample timed out"),
        }
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn age_seconds(now_ms: u64, since_ms: Option<u64>) -> i64 {
    since_ms.map_or(0, |since| gauge(now_ms.saturating_sub(since) / 1_000))
}

fn publish(shared: &Shared, sample: &Backlog) {
    shared.tracked.store(sample.tracked, Ordering::Relaxed);
    let metrics = &shared.metrics;
    metrics.tracked.set(gauge(sample.tracked));
    Metrics::set(&metrics.backlog, "broadcast_jobs", gauge(sample.open_jobs));
    Metrics::set(
        &metrics.backlog,
        "notifications",
        gauge(sample.pending_notifications),
    );
    let now = crate::core::now_ms(shared.clock.as_ref());
    Metrics::set(
        &metrics.oldest_pending_seconds,
        "transaction",
        age_seconds(now, sample.oldest_tracked_ms),
    );
    Metrics::set(
        &metrics.oldest_pending_seconds,
        "notification",
        age_seconds(now, sample.oldest_pending_ms),
    );
}

#[cfg(test)]
mod tests {
    use super::age_seconds;

    #[test]
    fn ages_are_whole_seconds_and_zero_when_nothing_waits() {
        assert_eq!(age_seconds(10_500, Some(1_000)), 9);
        assert_eq!(age_seconds(10_000, None), 0);
        // A clock behind the database's stamp (another instance) is not a negative age.
        assert_eq!(age_seconds(1_000, Some(2_000)), 0);
    }
}
