//! The retention worker (issue 11 item 7): every `retention.interval_seconds` it deletes the
//! finished rows `[retention]` no longer keeps ([`crate::store::retention`] says which), in
//! batches of [`BATCH`] transactions, until a batch comes back short or [`MAX_BATCHES`] ran,
//! so a relay at 1,000 tx/s sheds rows as fast as it makes them (up to 100,000 per run)
//! without holding the database writer for long at a time.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::core::now_ms;
use crate::state::Shared;
use crate::store::{Cutoffs, Purged, millis_of};

/// Transactions deleted per database transaction.
pub(crate) const BATCH: u32 = 2_000;
/// Most batches per run.
pub(crate) const MAX_BATCHES: u32 = 50;
/// Longest one batch may take.
const DEADLINE: Duration = Duration::from_secs(30);
/// Pause between batches, so submissions get the writer in between.
const BREATHER: Duration = Duration::from_millis(20);

/// The cut-offs at `now` for the configured lifetimes.
pub(crate) fn cutoffs(shared: &Shared, now: u64) -> Cutoffs {
    let settings = &shared.settings;
    Cutoffs {
        finished_before_ms: now.saturating_sub(millis_of(settings.retain_finished)),
        dead_before_ms: now.saturating_sub(millis_of(settings.retain_dead)),
        nonces_before_ms: now,
        idempotency_before_ms: now.saturating_sub(millis_of(settings.idempotency_key_ttl)),
    }
}

/// Cleans up until the relay stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.settings.retention_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut total = Purged::default();
        for _ in 0..MAX_BATCHES {
            let at = cutoffs(&shared, now_ms(shared.clock.as_ref()));
            let batch = match tokio::time::timeout(DEADLINE, shared.store.purge(at, BATCH)).await {
                Ok(Ok(batch)) => batch,
                Ok(Err(error)) => {
                    warn!(%error, "retention clean-up failed; retrying at the next interval");
                    break;
                }
                Err(_) => {
                    warn!(deadline = ?DEADLINE, "retention clean-up timed out");
                    break;
                }
            };
            total.transactions += batch.transactions;
            total.notifications += batch.notifications;
            total.dead_letters += batch.dead_letters;
            total.spent += batch.spent;
            if batch.transactions < u64::from(BATCH) && batch.dead_letters < u64::from(BATCH) {
                break;
            }
            tokio::select! {
                () = shared.cancel.cancelled() => return,
                () = tokio::time::sleep(BREATHER) => {}
            }
        }
        if total == Purged::default() {
            debug!("retention: nothing to delete");
        } else {
            info!(
                transactions = total.transactions,
                notifications = total.notifications,
                dead_letters = total.dead_letters,
                spent = total.spent,
                "retention: finished rows deleted"
            );
        }
    }
}
