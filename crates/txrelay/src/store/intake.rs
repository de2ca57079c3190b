//! Submissions in groups: many validated transactions recorded in one database transaction
//! with multi-row statements (a group commit), with the broadcast jobs they cause already
//! leased to this instance so the broadcaster can take them from memory.
//!
//! A group costs four statements whatever its size (transactions, jobs, submissions,
//! devices), plus a few per transaction the relay already knew (rare: duplicates and
//! resubmissions, decided by [`admit`] as before).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use alloy::primitives::{Address, B256};
use sqlx::{Any, QueryBuilder, Row};

use super::codec::{Db, RowExt, int};
use super::{Store, Tx, millis, q};
use crate::core::window::{Admission, admit};
use crate::error::StoreError;
use crate::validate::SignedTx;

/// Rows per multi-row statement (well below SQLite's 32 766 bound parameters).
const ROWS_PER_STATEMENT: usize = 200;

/// One submission of a group.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The validated transaction.
    pub signed: SignedTx,
    /// The sending device.
    pub device: String,
    /// Idempotency requested.
    pub idempotent: bool,
}

/// A broadcast job made by a group, leased to the instance that made it.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Job id.
    pub id: i64,
    /// Transaction.
    pub tx_hash: B256,
    /// Chain.
    pub chain_id: u64,
    /// The signed bytes.
    pub raw: Vec<u8>,
    /// The sender.
    pub sender: Address,
}

/// What a group commit decided: an admission per submission (in order) and the jobs made.
#[derive(Debug, Clone, Default)]
pub struct Intake {
    /// Per submission.
    pub admissions: Vec<Admission>,
    /// Broadcast jobs of new transactions, leased to the committing instance (jobs of
    /// resubmissions are left to the claim path).
    pub jobs: Vec<NewJob>,
}

impl Store {
    /// Records `group` in one database transaction (see the module docs). The jobs are
    /// leased to `instance` until `now_ms + lease`; transactions expire at `now_ms +
    /// lifetime`.
    ///
    /// # Errors
    /// [`StoreError`]; nothing of the group is recorded then.
    pub async fn submit_batch(
        &self,
        group: &[Submission],
        (instance, lease): (&str, Duration),
        (now_ms, window, lifetime): (u64, Duration, Duration),
    ) -> Result<Intake, StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let expires = int(now_ms.saturating_add(millis(lifetime)));
        // 1. New transactions (the first of equal hashes in the group wins).
        let mut inserted: BTreeSet<B256> = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let firsts: Vec<&Submission> = group
            .iter()
            .filter(|s| seen.insert(s.signed.hash))
            .collect();
        for chunk in firsts.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Any>::new(
                "INSERT INTO transactions (tx_hash, chain_id, sender, recipient, nonce, raw, status, \
                 accepted_at_ms, last_activity_ms, updated_at_ms, max_fee_per_gas, expires_at_ms) ",
            );
            qb.push_values(chunk, |mut row, s| {
                row.push_bind(Db(s.signed.hash))
                    .push_bind(int(s.signed.chain_id))
                    .push_bind(Db(s.signed.sender))
                    .push_bind(s.signed.recipient.map(Db))
                    .push_bind(int(s.signed.nonce))
                    .push_bind(hex::encode(&s.signed.raw))
                    .push_bind("queued")
                    .push_bind(int(now_ms))
                    .push_bind(int(now_ms))
                    .push_bind(int(now_ms))
                    .push_bind(s.signed.max_fee_per_gas.to_string())
                    .push_bind(expires);
            });
            qb.push(" ON CONFLICT (tx_hash) DO NOTHING RETURNING tx_hash");
            let rows = qb
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(q("insert transactions"))?;
            for row in rows {
                inserted.insert(row.text("tx_hash").map_err(q("insert transactions"))?);
            }
        }
        // 2. Admissions: new ones, and the known ones one by one.
        let mut admissions = Vec::with_capacity(group.len());
        let mut first_seen = BTreeSet::new();
        for submission in group {
            let hash = submission.signed.hash;
            let admission = if inserted.contains(&hash) && first_seen.insert(hash) {
                Admission::New
            } else {
                known(&mut tx, hash, submission.idempotent, now_ms, window).await?
            };
            admissions.push(admission);
        }
        // 3. Jobs for new and resent ones; new ones leased to this instance (the
        //    broadcaster takes them from memory), resent ones left to the claim path, which
        //    reads the transaction's state first.
        let sends: Vec<(&Submission, &str)> = group
            .iter()
            .zip(&admissions)
            .filter_map(|(s, a)| match a {
                Admission::New => Some((s, "accepted")),
                Admission::Resend => Some((s, "resubmitted")),
                Admission::Duplicate => None,
            })
            .collect();
        let by_hash: HashMap<B256, &Submission> =
            sends.iter().map(|(s, _)| (s.signed.hash, *s)).collect();
        let mut jobs = Vec::with_capacity(sends.len());
        let locked_until = int(now_ms.saturating_add(millis(lease)));
        for chunk in sends.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Any>::new(
                "INSERT INTO broadcast_jobs (tx_hash, chain_id, reason, attempts, next_attempt_at_ms, \
                 locked_by, locked_until_ms, created_at_ms) ",
            );
            qb.push_values(chunk, |mut row, (s, reason)| {
                let leased = *reason == "accepted";
                row.push_bind(Db(s.signed.hash))
                    .push_bind(int(s.signed.chain_id))
                    .push_bind(*reason)
                    .push_bind(i64::from(leased))
                    .push_bind(int(now_ms))
                    .push_bind(leased.then(|| instance.to_owned()))
                    .push_bind(leased.then_some(locked_until))
                    .push_bind(int(now_ms));
            });
            qb.push(" RETURNING id, tx_hash, reason");
            let rows = qb
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(q("insert broadcast jobs"))?;
            for row in rows {
                let hash: B256 = row.text("tx_hash").map_err(q("insert broadcast jobs"))?;
                let reason: String = row.try_get("reason").map_err(q("insert broadcast jobs"))?;
                if reason != "accepted" {
                    continue;
                }
                if let Some(s) = by_hash.get(&hash) {
                    jobs.push(NewJob {
                        id: row.try_get("id").map_err(q("insert broadcast jobs"))?,
                        tx_hash: hash,
                        chain_id: s.signed.chain_id,
                        raw: s.signed.raw.to_vec(),
                        sender: s.signed.sender,
                    });
                }
            }
        }
        // 4. Every submission, and which device sent which hash (seed ¶41).
        let rows: Vec<(&Submission, bool)> = group
            .iter()
            .zip(&admissions)
            .map(|(s, a)| (s, *a == Admission::Duplicate))
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Any>::new(
                "INSERT INTO submissions (tx_hash, device, idempotent, duplicate, received_at_ms) ",
            );
            qb.push_values(chunk, |mut row, (s, duplicate)| {
                row.push_bind(Db(s.signed.hash))
                    .push_bind(s.device.clone())
                    .push_bind(i64::from(s.idempotent))
                    .push_bind(i64::from(*duplicate))
                    .push_bind(int(now_ms));
            });
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(q("record submissions"))?;
        }
        let mut pairs: Vec<(B256, &str)> = group
            .iter()
            .map(|s| (s.signed.hash, s.device.as_str()))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Any>::new("INSERT INTO tx_devices (tx_hash, device) ");
            qb.push_values(chunk, |mut row, (hash, device)| {
                row.push_bind(Db(*hash)).push_bind((*device).to_owned());
            });
            qb.push(" ON CONFLICT DO NOTHING");
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(q("record devices"))?;
        }
        tx.commit().await.map_err(q("commit"))?;
        Ok(Intake { admissions, jobs })
    }
}

/// The admission of a hash the relay already has (seed ¶30-36 via [`admit`]); an idempotent
/// resubmission outside the window restarts the window, and a concurrent one that restarted
/// it first makes this one a duplicate.
pub(super) async fn known(
    tx: &mut Tx<'_>,
    hash: B256,
    idempotent: bool,
    now_ms: u64,
    window: Duration,
) -> Result<Admission, StoreError> {
    let row = sqlx::query("SELECT accepted_at_ms FROM transactions WHERE tx_hash = $1")
        .bind(Db(hash))
        .fetch_one(&mut **tx)
        .await
        .map_err(q("read transaction"))?;
    let accepted_at: u64 = row.uint("accepted_at_ms").map_err(q("read transaction"))?;
    Ok(match admit(Some(accepted_at), idempotent, now_ms, window) {
        Admission::Resend if idempotent => {
            let restarted = sqlx::query(
                "UPDATE transactions SET accepted_at_ms = $1, updated_at_ms = $1 \
                 WHERE tx_hash = $2 AND accepted_at_ms = $3",
            )
            .bind(int(now_ms))
            .bind(Db(hash))
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
    })
}
