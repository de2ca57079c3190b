//! Retention of finished rows (issue 11 item 7: "retention of finished rows (configurable) so
//! the database does not grow forever"; `[retention]` in the configuration).
//!
//! - A finished transaction (`finalized = 1`: final past the reorg watch, rejected, replaced
//!   or expired) last changed before the cut-off is deleted with its submissions, device
//!   links, broadcast jobs and notifications, but only when every one of its notifications
//!   was delivered: a notification still pending (a receiver down, a WebSocket account not
//!   connected) or dead-lettered keeps its transaction.
//! - Dead letters older than their own cut-off are deleted (the replay window).
//! - Spent or expired sign-in nonces and `Idempotency-Key` answers past their lifetime are
//!   deleted (neither can be used any more).
//!
//! Each call deletes at most `limit` transactions (oldest first) and `limit` dead letters,
//! each batch in one database transaction, so a large backlog is cleaned over several runs
//! without holding the writer for long. After a deletion a resubmission of the same signed
//! bytes is a new transaction to the relay (the node then answers "nonce too low").

use sqlx::Row;

use super::codec::int;
use super::params::Params;
use super::{Store, q};
use crate::error::StoreError;

/// What one [`Store::purge`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Finished transactions (with their dependent rows).
    pub transactions: u64,
    /// Delivered notifications deleted with their transactions.
    pub notifications: u64,
    /// Dead letters past their retention.
    pub dead_letters: u64,
    /// Sign-in nonces and idempotency answers that can no longer be used.
    pub spent: u64,
}

/// Cut-offs of one clean-up, Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Finished transactions last changed before this are deleted.
    pub finished_before_ms: u64,
    /// Dead letters made before this are deleted.
    pub dead_before_ms: u64,
    /// Sign-in nonces that expired before this are deleted.
    pub nonces_before_ms: u64,
    /// `Idempotency-Key` answers made before this are deleted.
    pub idempotency_before_ms: u64,
}

/// Rows of the dependent tables deleted by transaction hash, in this order (the transaction
/// row last).
const BY_HASH: [&str; 5] = [
    "notifications",
    "broadcast_jobs",
    "tx_devices",
    "submissions",
    "transactions",
];

impl Store {
    /// Deletes what retention allows (see the module docs), at most `limit` transactions and
    /// `limit` dead letters.
    ///
    /// # Errors
    /// [`StoreError::Query`]; a failed batch is rolled back whole.
    pub async fn purge(&self, cutoffs: Cutoffs, limit: u32) -> Result<Purged, StoreError> {
        let rows = sqlx::query(
            "SELECT tx_hash FROM transactions t WHERE finalized = 1 AND updated_at_ms < $1 \
             AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.tx_hash = t.tx_hash \
             AND n.state <> 'delivered') ORDER BY updated_at_ms LIMIT $2",
        )
        .bind(int(cutoffs.finished_before_ms))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(q("purge candidates"))?;
        let hashes = rows
            .iter()
            .map(|row| row.try_get::<String, _>("tx_hash"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(q("purge candidates"))?;
        let mut purged = Purged::default();
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        for chunk in hashes.chunks(500) {
            for table in BY_HASH {
                let mut sql = format!("DELETE FROM {table} WHERE tx_hash IN (");
                // The candidates were read outside this transaction: a row that changed
                // since (a reorg made it unfinished, a notification was added) stays.
                let guard = match table {
                    "notifications" => " AND state = 'delivered'",
                    "transactions" => " AND finalized = 1",
                    _ => "",
                };
                Params::new(self.backend).push_list(&mut sql, chunk.len());
                sql.push(')');
                sql.push_str(guard);
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for hash in chunk {
                    query = query.bind(hash.as_str());
                }
                let deleted = query
                    .execute(&mut *tx)
                    .await
                    .map_err(q("purge finished"))?
                    .rows_affected();
                match table {
                    "notifications" => purged.notifications += deleted,
                    "transactions" => purged.transactions += deleted,
                    _ => {}
                }
            }
        }
        purged.dead_letters = sqlx::query(
            "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications \
             WHERE state = 'dead' AND created_at_ms < $1 ORDER BY created_at_ms LIMIT $2)",
        )
        .bind(int(cutoffs.dead_before_ms))
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(q("purge dead letters"))?
        .rows_affected();
        for (sql, before) in [
            (
                "DELETE FROM siwe_nonces WHERE expires_at_ms < $1",
                cutoffs.nonces_before_ms,
            ),
            (
                "DELETE FROM idempotency_keys WHERE created_at_ms < $1",
                cutoffs.idempotency_before_ms,
            ),
        ] {
            purged.spent += sqlx::query(sql)
                .bind(int(before))
                .execute(&mut *tx)
                .await
                .map_err(q("purge spent"))?
                .rows_affected();
        }
        self.commit(tx).await?;
        Ok(purged)
    }
}
