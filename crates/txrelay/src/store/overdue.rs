//! Rows of transactions that are late (issue 11 item 5): each sender's lowest unmined
//! transaction for the follower's nonce watch ([`crate::core::overdue`]), transactions past
//! their lifetime, and the `replaced` / `stuck` / `expired` outcomes written together with
//! their notices (the same delivery rules as every other event, seed ¶41-43).

use alloy::primitives::B256;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::codec::{Db, RowExt, int};
use super::notifications::{Notice, insert_notifications, make_event};
use super::params::Params;
use super::transactions::{Applied, TxRecord};
use super::{Store, q};
use crate::core::overdue::StuckReason;
use crate::error::StoreError;
use crate::event::EventStatus;

/// A sender's lowest unmined transaction, as the nonce watch reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lowest {
    /// The transaction.
    pub record: TxRecord,
    /// Its signed bytes (EIP-2718), for its fee cap.
    pub raw: Vec<u8>,
    /// The head block the watch first saw it at (`None`: not seen yet).
    pub watched_since_block: Option<u64>,
    /// A `stuck` notice was made.
    pub stuck_notified: bool,
}

impl FromRow<'_, AnyRow> for Lowest {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let raw: String = row.try_get("raw")?;
        Ok(Self {
            record: TxRecord::from_row(row)?,
            raw: hex::decode(&raw).map_err(|error| sqlx::Error::ColumnDecode {
                index: "raw".to_owned(),
                source: Box::new(error),
            })?,
            watched_since_block: row.opt_uint("sent_at_block")?,
            stuck_notified: row.flag("stuck_notified")?,
        })
    }
}

/// A late transaction's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Another transaction (`by`, when known) used its nonce: final, status `replaced`.
    Replaced {
        /// The transaction that was mined with the same sender and nonce.
        by: Option<B256>,
    },
    /// Not mined for a reason the node reports: one `stuck` notice; still tracked.
    Stuck(StuckReason),
    /// Past its lifetime: final, status `expired`, its open broadcast jobs closed.
    Expired,
}

/// The columns [`TxRecord`] is read from (as in `transactions::select_tx!`), prefixed `t.`.
const RECORD_COLUMNS: &str = "t.tx_hash, t.chain_id, t.sender, t.recipient, t.nonce, t.status, \
     t.finalized, t.accepted_at_ms, t.last_activity_ms, t.broadcast_count, t.nonce_conflicts, \
     t.reorgs, t.block_number, t.block_hash, t.gas_used, t.success, t.revert_reason, t.error, \
     t.receipt, t.replaced_by";

impl Store {
    /// Each sender's lowest unfinished pending transaction of `chain_id` whose last
    /// broadcast or check is at or before `cutoff_ms`: no pending or queued transaction of
    /// the same sender has a lower nonce. Oldest activity first, at most `limit`. The
    /// `(chain_id, finalized, sender, nonce)` index answers the "lower nonce" probe.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn lowest_pending(
        &self,
        chain_id: u64,
        cutoff_ms: u64,
        limit: u32,
    ) -> Result<Vec<Lowest>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS}, t.raw, t.sent_at_block, t.stuck_notified \
             FROM transactions t \
             WHERE t.chain_id = $1 AND t.finalized = 0 AND t.status = 'pending' \
             AND t.last_activity_ms <= $2 \
             AND NOT EXISTS (SELECT 1 FROM transactions u WHERE u.chain_id = t.chain_id \
             AND u.finalized = 0 AND u.sender = t.sender AND u.nonce < t.nonce \
             AND u.status IN ('pending', 'queued')) \
             ORDER BY t.last_activity_ms LIMIT $3"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(int(chain_id))
            .bind(int(cutoff_ms))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(q("lowest pending"))
    }

    /// Records `head` as the block the nonce watch first saw each of `hashes` at (rows that
    /// have one keep it).
    ///
    /// # Errors
    /// [`StoreError`]; nothing is applied then.
    pub async fn mark_watched(&self, hashes: &[B256], head: u64) -> Result<(), StoreError> {
        const CHUNK: usize = 500;
        if hashes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        for chunk in hashes.chunks(CHUNK) {
            let mut params = Params::new(self.backend);
            let mut sql = String::from("UPDATE transactions SET sent_at_block = ");
            params.push(&mut sql);
            sql.push_str(" WHERE sent_at_block IS NULL AND tx_hash IN (");
            params.push_list(&mut sql, chunk.len());
            sql.push(')');
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(int(head));
            for hash in chunk {
                query = query.bind(Db(*hash));
            }
            query.execute(&mut *tx).await.map_err(q("mark watched"))?;
        }
        self.commit(tx).await
    }

    /// The unfinished transactions of `chain_id` not yet in a block (queued or pending)
    /// accepted at or before `cutoff_ms`: past their lifetime. Oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn past_lifetime(
        &self,
        chain_id: u64,
        cutoff_ms: u64,
        limit: u32,
    ) -> Result<Vec<TxRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM transactions t \
             WHERE t.chain_id = $1 AND t.finalized = 0 AND t.status IN ('pending', 'queued') \
             AND t.accepted_at_ms <= $2 ORDER BY t.accepted_at_ms LIMIT $3"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(int(chain_id))
            .bind(int(cutoff_ms))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(q("past lifetime"))
    }

    /// A relay transaction of `chain_id` by `sender` with `nonce` that is in a block (the
    /// one that replaced another), if any.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn included_with_nonce(&self, record: &TxRecord) -> Result<Option<B256>, StoreError> {
        let row = sqlx::query(
            "SELECT tx_hash FROM transactions WHERE chain_id = $1 AND sender = $2 AND nonce = $3 \
             AND tx_hash <> $4 AND block_hash IS NOT NULL LIMIT 1",
        )
        .bind(int(record.chain_id))
        .bind(Db(record.sender))
        .bind(int(record.nonce))
        .bind(Db(record.tx_hash))
        .fetch_optional(&self.read)
        .await
        .map_err(q("included with nonce"))?;
        row.map(|row| row.text("tx_hash"))
            .transpose()
            .map_err(q("included with nonce"))
    }

    /// Writes each outcome with its notices in one database transaction: a row that is no
    /// longer pending (or queued, for `Expired`) as read, or already reported stuck, is left
    /// as it is (`changed` false), so a second call adds nothing. Answers in input order.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is applied then.
    pub async fn settle_overdue(
        &self,
        outcomes: &[(&TxRecord, Settle)],
        now_ms: u64,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let mut applied = Vec::with_capacity(outcomes.len());
        for (record, settle) in outcomes {
            let (sql, notice) = match settle {
                Settle::Replaced { by } => (
                    "UPDATE transactions SET status = 'replaced', finalized = 1, replaced_by = $1, \
                     updated_at_ms = $2 WHERE tx_hash = $3 AND status = 'pending' AND finalized = 0",
                    Notice {
                        replaced_by: *by,
                        ..Notice::of(EventStatus::Replaced)
                    },
                ),
                Settle::Stuck(reason) => (
                    "UPDATE transactions SET stuck_notified = 1, updated_at_ms = $2 \
                     WHERE tx_hash = $3 AND status = 'pending' AND finalized = 0 \
                     AND stuck_notified = 0 AND $1 IS NULL",
                    Notice {
                        error: Some(reason.as_str().to_owned()),
                        ..Notice::of(EventStatus::Stuck)
                    },
                ),
                Settle::Expired => (
                    "UPDATE transactions SET status = 'expired', finalized = 1, error = $1, \
                     updated_at_ms = $2 WHERE tx_hash = $3 AND status IN ('pending', 'queued') \
                     AND finalized = 0",
                    Notice {
                        error: Some("lifetime_exceeded".to_owned()),
                        ..Notice::of(EventStatus::Expired)
                    },
                ),
            };
            // `$1`: the replacing hash, the stuck reason (only in the notice: the row keeps
            // no error, so a later `mined` view carries none) or the expiry reason.
            let first = match settle {
                Settle::Replaced { by } => by.map(|h| format!("{h:#x}")),
                Settle::Stuck(_) => None,
                Settle::Expired => Some("lifetime_exceeded".to_owned()),
            };
            let changed = sqlx::query(sql)
                .bind(first)
                .bind(int(now_ms))
                .bind(Db(record.tx_hash))
                .execute(&mut *tx)
                .await
                .map_err(q("settle overdue"))?
                .rows_affected()
                == 1;
            let mut notifications = 0;
            if changed {
                if matches!(settle, Settle::Expired) {
                    sqlx::query(
                        "UPDATE broadcast_jobs SET done_at_ms = $1, locked_by = NULL, \
                         locked_until_ms = NULL, last_error = 'expired' \
                         WHERE tx_hash = $2 AND done_at_ms IS NULL",
                    )
                    .bind(int(now_ms))
                    .bind(Db(record.tx_hash))
                    .execute(&mut *tx)
                    .await
                    .map_err(q("close expired jobs"))?;
                }
                let event = make_event(record, notice, 0, now_ms);
                notifications =
                    insert_notifications(&mut tx, record, &event, (now_ms, None)).await?;
            }
            applied.push(Applied {
                changed,
                notifications,
                rebroadcast: false,
            });
        }
        self.commit(tx).await?;
        Ok(applied)
    }
}
