//! Broadcast jobs: the outbox of sends to a node (seed ¶27, ¶44-45). A job is enqueued with
//! the state change that causes it (accepted, resubmitted, dropped, reorged), claimed with a
//! lease, and closed with its outcome in one database transaction with the transaction's row.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use alloy::primitives::B256;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::codec::{Db, RowExt, int};
use super::notifications::{Notice, insert_notifications, make_event};
use super::params::Params;
use super::transactions::{TxStatus, tx_in};
use super::{HasId, Store, Tx, claim_sql, q};
use crate::error::StoreError;
use crate::event::EventStatus;

/// A claimed broadcast job with what sending needs.
#[derive(Debug, Clone)]
pub struct BroadcastJob {
    /// Job id.
    pub id: i64,
    /// Transaction.
    pub tx_hash: B256,
    /// Chain.
    pub chain_id: u64,
    /// This attempt's number (1 = first).
    pub attempts: u32,
    /// Why it was enqueued: accepted, resubmitted, dropped or reorged.
    pub reason: String,
}

impl FromRow<'_, AnyRow> for BroadcastJob {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            tx_hash: row.text("tx_hash")?,
            chain_id: row.uint("chain_id")?,
            attempts: row.uint("attempts")?,
            reason: row.try_get("reason")?,
        })
    }
}

impl HasId for BroadcastJob {
    fn id(&self) -> i64 {
        self.id
    }
}

/// What a broadcast needs to know about its transaction.
#[derive(Debug, Clone)]
pub struct BroadcastFacts {
    /// The signed bytes.
    pub raw: Vec<u8>,
    /// Status now.
    pub status: TxStatus,
    /// Times a node accepted it.
    pub broadcast_count: u64,
    /// Conflicts so far.
    pub nonce_conflicts: u32,
    /// The sender.
    pub sender: alloy::primitives::Address,
}

impl FromRow<'_, AnyRow> for BroadcastFacts {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let raw: String = row.try_get("raw")?;
        Ok(Self {
            raw: hex::decode(&raw).map_err(|error| sqlx::Error::ColumnDecode {
                index: "raw".to_owned(),
                source: Box::new(error),
            })?,
            status: row.text("status")?,
            broadcast_count: row.uint("broadcast_count")?,
            nonce_conflicts: row.uint("nonce_conflicts")?,
            sender: row.text("sender")?,
        })
    }
}

/// How a finished broadcast changes the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastOutcome {
    /// Sent (or already held by the node).
    Sent,
    /// Nothing to send (a resubmission of a transaction already in a block): job closed.
    Skipped,
    /// Transient failure; due again at this Unix ms.
    RetryAt(u64),
    /// "nonce too low" to a rebroadcast: counted, job closed.
    NonceConflict,
    /// Never sendable: rejected with this reason, receivers told.
    Rejected(String),
}

const CLAIM_BROADCAST: (&str, &str) = claim_sql!(
    "broadcast_jobs",
    "done_at_ms IS NULL AND next_attempt_at_ms <= $3",
    "id, tx_hash, chain_id, attempts, reason"
);

impl Store {
    /// Claims up to `limit` due broadcast jobs for `instance` until `now_ms + lease`, oldest
    /// first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn claim_broadcasts(
        &self,
        instance: &str,
        now_ms: u64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<BroadcastJob>, StoreError> {
        self.claim(
            CLAIM_BROADCAST,
            "claim broadcasts",
            (instance, now_ms, lease, limit),
        )
        .await
    }

    /// The bytes and counters a broadcast needs.
    ///
    /// # Errors
    /// [`StoreError`]; [`StoreError::Corrupt`] when the job's transaction is missing.
    pub async fn broadcast_facts(&self, hash: B256) -> Result<BroadcastFacts, StoreError> {
        sqlx::query_as(
            "SELECT raw, status, broadcast_count, nonce_conflicts, sender FROM transactions WHERE tx_hash = $1",
        )
        .bind(Db(hash))
        .fetch_optional(&self.read)
        .await
        .map_err(q("broadcast facts"))?
        .ok_or_else(|| StoreError::Corrupt {
            what: "broadcast job transaction",
            value: format!("{hash:#x}"),
        })
    }

    /// [`Self::broadcast_facts`] of several transactions in one query per 500 hashes;
    /// a hash without a stored transaction is absent from the answer.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn broadcast_facts_many(
        &self,
        hashes: &[B256],
    ) -> Result<HashMap<B256, BroadcastFacts>, StoreError> {
        const CHUNK: usize = 500;
        let mut facts = HashMap::with_capacity(hashes.len());
        for chunk in hashes.chunks(CHUNK) {
            let mut sql = String::from(
                "SELECT tx_hash, raw, status, broadcast_count, nonce_conflicts, sender \
                 FROM transactions WHERE tx_hash IN (",
            );
            Params::new(self.backend).push_list(&mut sql, chunk.len());
            sql.push(')');
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for hash in chunk {
                query = query.bind(Db(*hash));
            }
            for row in query
                .fetch_all(&self.read)
                .await
                .map_err(q("broadcast facts"))?
            {
                let hash: B256 = row.text("tx_hash").map_err(q("broadcast facts"))?;
                let fact = BroadcastFacts::from_row(&row).map_err(q("broadcast facts"))?;
                facts.insert(hash, fact);
            }
        }
        Ok(facts)
    }

    /// Records a broadcast attempt's outcome (job and transaction in one database
    /// transaction). Returns the notifications created (a rejection tells the receivers).
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn finish_broadcast(
        &self,
        job: &BroadcastJob,
        outcome: &BroadcastOutcome,
        now_ms: u64,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let created = finish_in(&mut tx, job, outcome, now_ms).await?;
        self.commit(tx).await?;
        Ok(created)
    }

    /// Records the outcomes of several broadcast attempts in one database transaction (see
    /// [`Self::finish_broadcast`]); answers the notifications created, in input order.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is recorded then.
    pub async fn finish_broadcasts(
        &self,
        finished: &[(BroadcastJob, BroadcastOutcome)],
        now_ms: u64,
    ) -> Result<Vec<usize>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        // The common outcomes (sent, skipped) of transactions that appear once so far are
        // written with two statements per chunk instead of two per job; the rest in order.
        let mut seen = HashSet::with_capacity(finished.len());
        let mut batched = Vec::with_capacity(finished.len());
        for (job, outcome) in finished {
            let first = seen.insert(job.tx_hash);
            batched.push(
                first && matches!(outcome, BroadcastOutcome::Sent | BroadcastOutcome::Skipped),
            );
        }
        let closed: Vec<i64> = finished
            .iter()
            .zip(&batched)
            .filter(|(_, b)| **b)
            .map(|((job, _), _)| job.id)
            .collect();
        let sent: Vec<B256> = finished
            .iter()
            .zip(&batched)
            .filter(|((_, outcome), b)| **b && matches!(outcome, BroadcastOutcome::Sent))
            .map(|((job, _), _)| job.tx_hash)
            .collect();
        self.close_jobs(&mut tx, &closed, now_ms).await?;
        self.mark_sent(&mut tx, &sent, now_ms).await?;
        let mut created = Vec::with_capacity(finished.len());
        for ((job, outcome), batched) in finished.iter().zip(batched) {
            created.push(if batched {
                0
            } else {
                finish_in(&mut tx, job, outcome, now_ms).await?
            });
        }
        self.commit(tx).await?;
        Ok(created)
    }

    /// [`close_job`] without an error for each of `ids`, one statement per [`ID_CHUNK`].
    async fn close_jobs(
        &self,
        tx: &mut Tx<'_>,
        ids: &[i64],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        for chunk in ids.chunks(ID_CHUNK) {
            let mut params = Params::new(self.backend);
            let mut sql = String::from("UPDATE broadcast_jobs SET done_at_ms = ");
            params.push(&mut sql);
            sql.push_str(
                ", locked_by = NULL, locked_until_ms = NULL, last_error = NULL WHERE id IN (",
            );
            params.push_list(&mut sql, chunk.len());
            sql.push(')');
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(int(now_ms));
            for id in chunk {
                query = query.bind(*id);
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(q("close broadcast jobs"))?;
        }
        Ok(())
    }

    /// The transaction update of a `Sent` outcome ([`finish_in`]) for each of `hashes` (each
    /// once), one statement per [`ID_CHUNK`].
    async fn mark_sent(
        &self,
        tx: &mut Tx<'_>,
        hashes: &[B256],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        for chunk in hashes.chunks(ID_CHUNK) {
            let mut params = Params::new(self.backend);
            let mut sql = String::from(
                "UPDATE transactions SET \
                 status = CASE WHEN status IN ('queued', 'rejected') THEN 'pending' ELSE status END, \
                 finalized = CASE WHEN status = 'rejected' THEN 0 ELSE finalized END, \
                 error = CASE WHEN status = 'rejected' THEN NULL ELSE error END, \
                 broadcast_count = broadcast_count + 1, last_activity_ms = ",
            );
            params.push(&mut sql);
            sql.push_str(", updated_at_ms = ");
            params.push(&mut sql);
            sql.push_str(" WHERE tx_hash IN (");
            params.push_list(&mut sql, chunk.len());
            sql.push(')');
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(int(now_ms))
                .bind(int(now_ms));
            for hash in chunk {
                query = query.bind(Db(*hash));
            }
            query.execute(&mut **tx).await.map_err(q("mark sent"))?;
        }
        Ok(())
    }
}

/// Jobs or transactions per batched statement of [`Store::finish_broadcasts`].
const ID_CHUNK: usize = 500;

/// The statements recording one broadcast outcome inside `tx`; answers the notifications
/// created.
async fn finish_in(
    tx: &mut Tx<'_>,
    job: &BroadcastJob,
    outcome: &BroadcastOutcome,
    now_ms: u64,
) -> Result<usize, StoreError> {
    let hash = Db(job.tx_hash);
    let mut created = 0;
    match outcome {
        BroadcastOutcome::RetryAt(at) => {
            sqlx::query(
                "UPDATE broadcast_jobs SET next_attempt_at_ms = $1, locked_by = NULL, \
                     locked_until_ms = NULL, last_error = $2 WHERE id = $3",
            )
            .bind(int(*at))
            .bind("transient node failure")
            .bind(job.id)
            .execute(&mut **tx)
            .await
            .map_err(q("retry broadcast"))?;
        }
        BroadcastOutcome::Sent => {
            close_job(tx, job.id, None, now_ms).await?;
            sqlx::query(
                    "UPDATE transactions SET \
                     status = CASE WHEN status IN ('queued', 'rejected') THEN 'pending' ELSE status END, \
                     finalized = CASE WHEN status = 'rejected' THEN 0 ELSE finalized END, \
                     error = CASE WHEN status = 'rejected' THEN NULL ELSE error END, \
                     broadcast_count = broadcast_count + 1, last_activity_ms = $1, updated_at_ms = $1 \
                     WHERE tx_hash = $2",
                )
                .bind(int(now_ms))
                .bind(hash)
                .execute(&mut **tx)
                .await
                .map_err(q("mark sent"))?;
        }
        BroadcastOutcome::Skipped => {
            close_job(tx, job.id, None, now_ms).await?;
        }
        BroadcastOutcome::NonceConflict => {
            close_job(tx, job.id, Some("nonce too low"), now_ms).await?;
            sqlx::query(
                "UPDATE transactions SET nonce_conflicts = nonce_conflicts + 1, updated_at_ms = $1 \
                     WHERE tx_hash = $2 AND status = 'pending'",
            )
            .bind(int(now_ms))
            .bind(hash)
            .execute(&mut **tx)
            .await
            .map_err(q("count conflict"))?;
        }
        BroadcastOutcome::Rejected(reason) => {
            close_job(tx, job.id, Some(reason), now_ms).await?;
            let changed = sqlx::query(
                    "UPDATE transactions SET status = 'rejected', finalized = 1, error = $1, updated_at_ms = $2 \
                     WHERE tx_hash = $3 AND status IN ('queued', 'pending')",
                )
                .bind(reason)
                .bind(int(now_ms))
                .bind(hash)
                .execute(&mut **tx)
                .await
                .map_err(q("reject"))?
                .rows_affected();
            if changed == 1
                && let Some(record) = tx_in(tx, job.tx_hash).await?
            {
                let notice = Notice {
                    error: Some(reason.clone()),
                    ..Notice::of(EventStatus::Rejected)
                };
                let event = make_event(&record, notice, 0, now_ms);
                created = insert_notifications(tx, &record, &event, (now_ms, None)).await?;
            }
        }
    }
    Ok(created)
}

/// Enqueues a broadcast job for `hash`, due now.
pub(super) async fn insert_job(
    tx: &mut Tx<'_>,
    hash: B256,
    chain_id: u64,
    reason: &str,
    now_ms: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO broadcast_jobs (tx_hash, chain_id, reason, next_attempt_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(Db(hash))
    .bind(int(chain_id))
    .bind(reason)
    .bind(int(now_ms))
    .execute(&mut **tx)
    .await
    .map_err(q("insert broadcast job"))?;
    Ok(())
}

async fn close_job(
    tx: &mut Tx<'_>,
    id: i64,
    error: Option<&str>,
    now_ms: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE broadcast_jobs SET done_at_ms = $1, locked_by = NULL, locked_until_ms = NULL, \
         last_error = $2 WHERE id = $3",
    )
    .bind(int(now_ms))
    .bind(error)
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(q("close broadcast job"))?;
    Ok(())
}
