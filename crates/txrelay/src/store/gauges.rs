//! The counts behind backpressure and the operations gauges (issue 11 item 3: a bound on
//! tracked transactions instead of the old `TRACK_LIMIT` cliff): unfinished transactions,
//! open broadcast jobs and pending notifications, with the age of the oldest of each kind.
//! Every count is answered from an index (`transactions_open_age`, `broadcast_jobs_due`,
//! `notifications_due`), so a sample stays cheap at a million tracked rows.

use super::codec::Db;
use super::{Store, q};
use crate::error::StoreError;
use crate::store::notifications::NotificationState;

/// One sample of the relay's backlog (shared by every instance on the database).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Transactions not yet final (`finalized = 0`: queued, pending, or included but within
    /// the reorg watch).
    pub tracked: u64,
    /// When the oldest of them was accepted (Unix ms; `None`: there are none).
    pub oldest_tracked_ms: Option<u64>,
    /// Broadcast jobs not done.
    pub open_jobs: u64,
    /// Notifications still to deliver.
    pub pending_notifications: u64,
    /// When the oldest of them was made (Unix ms; `None`: there are none).
    pub oldest_pending_ms: Option<u64>,
}

fn stamp(ms: Option<i64>) -> Option<u64> {
    ms.and_then(|ms| u64::try_from(ms).ok())
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// Counts the backlog (three indexed queries on the read pool).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn backlog_sample(&self) -> Result<Backlog, StoreError> {
        let (tracked, oldest_tracked): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*) AS n, MIN(accepted_at_ms) AS oldest FROM transactions \
             WHERE finalized = 0",
        )
        .fetch_one(&self.read)
        .await
        .map_err(q("backlog sample"))?;
        let open_jobs: i64 =
            sqlx::query_scalar("SELECT COUNT(*) AS n FROM broadcast_jobs WHERE done_at_ms IS NULL")
                .fetch_one(&self.read)
                .await
                .map_err(q("backlog sample"))?;
        let (pending, oldest_pending): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*) AS n, MIN(created_at_ms) AS oldest FROM notifications \
             WHERE state = $1",
        )
        .bind(Db(NotificationState::Pending))
        .fetch_one(&self.read)
        .await
        .map_err(q("backlog sample"))?;
        Ok(Backlog {
            tracked: count(tracked),
            oldest_tracked_ms: stamp(oldest_tracked),
            open_jobs: count(open_jobs),
            pending_notifications: count(pending),
            oldest_pending_ms: stamp(oldest_pending),
        })
    }
}
