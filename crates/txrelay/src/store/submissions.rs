//! Submissions (seed ¶24-36): the transaction row, its first broadcast job and the
//! `submissions` / `tx_devices` rows of one submission, written together; several
//! submissions may share one database transaction ([`Store::submit_batch`], used by the
//! group-commit writer in [`super::group`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use alloy::primitives::B256;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::codec::{Db, RowExt, int};
use super::jobs::{BroadcastFacts, BroadcastJob};
use super::outbox::Lease;
use super::params::Params;
use super::transactions::TxStatus;
use super::{Store, Tx, q};
use crate::core::window::{Admission, admit};
use crate::error::StoreError;
use crate::validate::SignedTx;

/// One validated submission to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The transaction.
    pub signed: SignedTx,
    /// The sending device.
    pub device: String,
    /// Idempotency control of the request (seed ¶30-36).
    pub idempotent: bool,
    /// When it was received, Unix ms.
    pub now_ms: u64,
    /// The idempotency window.
    pub window: Duration,
}

impl Store {
    /// Records a submission that is a duplicate within the window (nothing is sent).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn record_duplicate(
        &self,
        hash: B256,
        device: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        record_submission(&mut tx, hash, device, true, true, now_ms).await?;
        self.commit(tx).await
    }

    /// Records a validated submission and, unless it is a duplicate, the broadcast job that
    /// sends it, in one database transaction (seed ¶30-36 via [`admit`]). Concurrent
    /// identical submissions serialize on the hash's primary key: exactly one is `New`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn submit(
        &self,
        signed: &SignedTx,
        device: &str,
        idempotent: bool,
        now_ms: u64,
        window: Duration,
    ) -> Result<Admission, StoreError> {
        let item = Submission {
            signed: signed.clone(),
            device: device.to_owned(),
            idempotent,
            now_ms,
            window,
        };
        let mut answers = self.submit_batch(std::slice::from_ref(&item)).await?;
        answers.pop().ok_or(StoreError::Corrupt {
            what: "submission batch",
            value: "no answer".to_owned(),
        })
    }

    /// Records `items` as [`Self::submit`] does, all in one database transaction (one
    /// commit for the batch), in order: a later item with the same hash sees the earlier
    /// one. Answers one admission per item, in input order.
    ///
    /// # Errors
    /// [`StoreError::Query`]; nothing of the batch is recorded then.
    pub async fn submit_batch(&self, items: &[Submission]) -> Result<Vec<Admission>, StoreError> {
        Ok(self.submit_batch_leased(items, None).await?.0)
    }

    /// [`Self::submit_batch`], with the broadcast jobs of new transactions inserted already
    /// claimed under `lease` (first attempt) and answered with their facts, for the
    /// broadcaster to send from memory once this returns: no claim query, no read of the
    /// bytes. A job whose instance dies comes back when its lease ends.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is recorded then.
    pub async fn submit_batch_leased(
        &self,
        items: &[Submission],
        lease: Option<Lease<'_>>,
    ) -> Result<(Vec<Admission>, Vec<(BroadcastJob, BroadcastFacts)>), StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        // New transactions (the common case) are written with multi-row statements, four
        // per chunk instead of four per submission; a transaction stored already or
        // repeated in the batch goes through `submit_in`, after them, in order.
        let mut seen = HashSet::with_capacity(items.len());
        let firsts: Vec<&Submission> = items
            .iter()
            .filter(|item| seen.insert(item.signed.hash))
            .collect();
        let inserted = self.insert_new(&mut tx, &firsts).await?;
        let mut answered = HashSet::with_capacity(inserted.len());
        let is_new: Vec<bool> = items
            .iter()
            .map(|item| inserted.contains(&item.signed.hash) && answered.insert(item.signed.hash))
            .collect();
        let fresh: Vec<&Submission> = items
            .iter()
            .zip(&is_new)
            .filter(|(_, new)| **new)
            .map(|(item, _)| item)
            .collect();
        let handed = self.record_new(&mut tx, &fresh, lease).await?;
        let mut answers = Vec::with_capacity(items.len());
        for (item, new) in items.iter().zip(is_new) {
            answers.push(if new {
                Admission::New
            } else {
                submit_in(&mut tx, item).await?
            });
        }
        self.commit(tx).await?;
        Ok((answers, handed))
    }

    /// Inserts the transaction rows of `items` (distinct hashes) that are not stored yet;
    /// answers the hashes inserted.
    async fn insert_new(
        &self,
        tx: &mut Tx<'_>,
        items: &[&Submission],
    ) -> Result<HashSet<B256>, StoreError> {
        let mut inserted = HashSet::with_capacity(items.len());
        for chunk in items.chunks(ROW_CHUNK) {
            let mut params = Params::new(self.backend);
            let mut sql = String::from(
                "INSERT INTO transactions (tx_hash, chain_id, sender, recipient, nonce, raw, \
                 status, accepted_at_ms, last_activity_ms, updated_at_ms) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                params.push_list(&mut sql, 6);
                sql.push_str(", 'queued', ");
                params.push_list(&mut sql, 3);
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (tx_hash) DO NOTHING RETURNING tx_hash");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for item in chunk {
                let signed = &item.signed;
                query = query
                    .bind(Db(signed.hash))
                    .bind(int(signed.chain_id))
                    .bind(Db(signed.sender))
                    .bind(signed.recipient.map(Db))
                    .bind(int(signed.nonce))
                    .bind(hex::encode(&signed.raw))
                    .bind(int(item.now_ms))
                    .bind(int(item.now_ms))
                    .bind(int(item.now_ms));
            }
            let rows: Vec<AnyRow> = query
                .fetch_all(&mut **tx)
                .await
                .map_err(q("insert transactions"))?;
            for row in &rows {
                let hash: B256 = row.text("tx_hash").map_err(q("insert transactions"))?;
                inserted.insert(hash);
            }
        }
        Ok(inserted)
    }

    /// The broadcast job (reason `accepted`; claimed under `lease` when given) and the
    /// `submissions` and `tx_devices` rows of each newly inserted submission in `items`,
    /// multi-row; answers the leased jobs with their facts.
    async fn record_new(
        &self,
        tx: &mut Tx<'_>,
        items: &[&Submission],
        lease: Option<Lease<'_>>,
    ) -> Result<Vec<(BroadcastJob, BroadcastFacts)>, StoreError> {
        let mut handed = Vec::new();
        for chunk in items.chunks(ROW_CHUNK) {
            let mut params = Params::new(self.backend);
            let mut jobs = String::from(
                "INSERT INTO broadcast_jobs (tx_hash, chain_id, reason, next_attempt_at_ms, \
                 created_at_ms, locked_by, locked_until_ms, attempts) VALUES ",
            );
            rows_of(&mut jobs, &mut params, chunk.len(), 7, Some(2));
            jobs.push_str(" RETURNING id, tx_hash");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(jobs));
            for item in chunk {
                query = query
                    .bind(Db(item.signed.hash))
                    .bind(int(item.signed.chain_id))
                    .bind(int(item.now_ms))
                    .bind(int(item.now_ms))
                    .bind(lease.map(|l| l.instance.to_owned()))
                    .bind(lease.map(|l| int(l.until_ms)))
                    .bind(i64::from(lease.is_some()));
            }
            let rows: Vec<AnyRow> = query
                .fetch_all(&mut **tx)
                .await
                .map_err(q("insert broadcast jobs"))?;
            if lease.is_some() {
                let by_hash: HashMap<B256, &Submission> =
                    chunk.iter().map(|item| (item.signed.hash, *item)).collect();
                for row in &rows {
                    let id: i64 = row.try_get("id").map_err(q("insert broadcast jobs"))?;
                    let hash: B256 = row.text("tx_hash").map_err(q("insert broadcast jobs"))?;
                    let Some(item) = by_hash.get(&hash) else {
                        continue;
                    };
                    handed.push((
                        BroadcastJob {
                            id,
                            tx_hash: hash,
                            chain_id: item.signed.chain_id,
                            attempts: 1,
                            reason: "accepted".to_owned(),
                        },
                        BroadcastFacts {
                            raw: item.signed.raw.to_vec(),
                            status: TxStatus::Queued,
                            broadcast_count: 0,
                            nonce_conflicts: 0,
                            sender: item.signed.sender,
                        },
                    ));
                }
            }
            let mut params = Params::new(self.backend);
            let mut submissions = String::from(
                "INSERT INTO submissions (tx_hash, device, idempotent, duplicate, received_at_ms) \
                 VALUES ",
            );
            rows_of(&mut submissions, &mut params, chunk.len(), 5, None);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(submissions));
            for item in chunk {
                query = query
                    .bind(Db(item.signed.hash))
                    .bind(item.device.clone())
                    .bind(i64::from(item.idempotent))
                    .bind(0_i64)
                    .bind(int(item.now_ms));
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(q("record submissions"))?;
            let mut params = Params::new(self.backend);
            let mut devices = String::from("INSERT INTO tx_devices (tx_hash, device) VALUES ");
            rows_of(&mut devices, &mut params, chunk.len(), 2, None);
            devices.push_str(" ON CONFLICT DO NOTHING");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(devices));
            for item in chunk {
                query = query.bind(Db(item.signed.hash)).bind(item.device.clone());
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(q("record devices"))?;
        }
        // In submission order, as a claim would take them (by id).
        handed.sort_by_key(|(job, _)| job.id);
        Ok(handed)
    }
}

/// Submissions per multi-row statement of [`Store::submit_batch`].
const ROW_CHUNK: usize = 256;

/// Appends `rows` rows of `values` placeholders each, with the literal `'accepted'` (the
/// job reason) inserted before placeholder number `accepted_at` (0-based) when given.
fn rows_of(
    sql: &mut String,
    params: &mut Params,
    rows: usize,
    values: usize,
    accepted_at: Option<usize>,
) {
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for k in 0..values {
            if k > 0 {
                sql.push_str(", ");
            }
            if accepted_at == Some(k) {
                sql.push_str("'accepted', ");
            }
            params.push(sql);
        }
        sql.push(')');
    }
}

/// The statements of one submission inside `tx`.
async fn submit_in(tx: &mut Tx<'_>, item: &Submission) -> Result<Admission, StoreError> {
    let Submission {
        signed,
        device,
        idempotent,
        now_ms,
        window,
    } = item;
    let (idempotent, now_ms) = (*idempotent, *now_ms);
    let hash = Db(signed.hash);
    let inserted = sqlx::query(
        "INSERT INTO transactions (tx_hash, chain_id, sender, recipient, nonce, raw, status, \
         accepted_at_ms, last_activity_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $7, $7) ON CONFLICT (tx_hash) DO NOTHING",
    )
    .bind(hash)
    .bind(int(signed.chain_id))
    .bind(Db(signed.sender))
    .bind(signed.recipient.map(Db))
    .bind(int(signed.nonce))
    .bind(hex::encode(&signed.raw))
    .bind(int(now_ms))
    .execute(&mut **tx)
    .await
    .map_err(q("insert transaction"))?
    .rows_affected();
    let admission = if inserted == 1 {
        Admission::New
    } else {
        let row = sqlx::query("SELECT accepted_at_ms FROM transactions WHERE tx_hash = $1")
            .bind(hash)
            .fetch_one(&mut **tx)
            .await
            .map_err(q("read transaction"))?;
        let accepted_at: u64 = row.uint("accepted_at_ms").map_err(q("read transaction"))?;
        match admit(Some(accepted_at), idempotent, now_ms, *window) {
            Admission::Resend if idempotent => {
                // Restart the window; a concurrent submission that restarted it first
                // makes this one a duplicate.
                let restarted = sqlx::query(
                    "UPDATE transactions SET accepted_at_ms = $1, updated_at_ms = $1 \
                     WHERE tx_hash = $2 AND accepted_at_ms = $3",
                )
                .bind(int(now_ms))
                .bind(hash)
                .bind(int(accepted_at))
                .execute(&mut **tx)
                .await
                .map_err(q("restart window"))?
                .rows_affected();
                if restarted == 1 {
                    Admission::Resend
                } else {
                    Admission::Duplicate
                }
            }
            other => other,
        }
    };
    if admission != Admission::Duplicate {
        let reason = if admission == Admission::New {
            "accepted"
        } else {
            "resubmitted"
        };
        super::jobs::insert_job(tx, signed.hash, signed.chain_id, reason, now_ms).await?;
    }
    record_submission(
        tx,
        signed.hash,
        device,
        idempotent,
        admission == Admission::Duplicate,
        now_ms,
    )
    .await?;
    Ok(admission)
}

async fn record_submission(
    tx: &mut Tx<'_>,
    hash: B256,
    device: &str,
    idempotent: bool,
    duplicate: bool,
    now_ms: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO submissions (tx_hash, device, idempotent, duplicate, received_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Db(hash))
    .bind(device)
    .bind(i64::from(idempotent))
    .bind(i64::from(duplicate))
    .bind(int(now_ms))
    .execute(&mut **tx)
    .await
    .map_err(q("record submission"))?;
    sqlx::query("INSERT INTO tx_devices (tx_hash, device) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(Db(hash))
        .bind(device)
        .execute(&mut **tx)
        .await
        .map_err(q("record device"))?;
    Ok(())
}
