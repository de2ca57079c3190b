//! Transactions: reads of stored transactions, which device sent which hash (¶41-42), and
//! the tracker's decisions about a transaction's life on chain (¶37-38, ¶44-45), each written with
//! the broadcast jobs and notifications it causes.

use std::collections::HashSet;
use std::str::FromStr;

use alloy::primitives::{Address, B256};
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::codec::{Db, RowExt, db_text_enum, int};
use super::inclusion;
use super::notifications::{Notice, WebhookJob, make_event};
use super::outbox::{Lease, Outbox};
use super::params::Params;
use super::{Store, Tx, q};
use crate::core::{Inclusion, Phase, Step, Tracked};
use crate::error::StoreError;
use crate::event::EventStatus;
use crate::node::Receipt;

/// A transaction's status as stored and reported by `GET /v1/transactions/{hash}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// Accepted; not yet taken by a node.
    Queued,
    /// A node accepted it; no receipt yet.
    Pending,
    /// In a block, short of the configured confirmations.
    Included,
    /// Confirmed, receipt status 1.
    Mined,
    /// Confirmed, reverted (final).
    Failed,
    /// No node will take it (final).
    Rejected,
    /// Another transaction with the same sender and nonce was mined (final).
    Replaced,
    /// Not in a block within its lifetime (final): no longer sent or watched.
    Expired,
}

impl TxStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Pending => "pending",
            Self::Included => "included",
            Self::Mined => "mined",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Replaced => "replaced",
            Self::Expired => "expired",
        }
    }
}

impl FromStr for TxStatus {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "queued" => Self::Queued,
            "pending" => Self::Pending,
            "included" => Self::Included,
            "mined" => Self::Mined,
            "failed" => Self::Failed,
            "rejected" => Self::Rejected,
            "replaced" => Self::Replaced,
            "expired" => Self::Expired,
            other => {
                return Err(StoreError::Corrupt {
                    what: "status",
                    value: other.to_owned(),
                });
            }
        })
    }
}

db_text_enum!(TxStatus);

/// A stored transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRecord {
    /// Hash.
    pub tx_hash: B256,
    /// Chain.
    pub chain_id: u64,
    /// Sender.
    pub sender: Address,
    /// Recipient (`None`: contract creation).
    pub recipient: Option<Address>,
    /// Nonce.
    pub nonce: u64,
    /// Status.
    pub status: TxStatus,
    /// Tracking has stopped.
    pub finalized: bool,
    /// Start of the idempotency window, Unix ms.
    pub accepted_at_ms: u64,
    /// Last broadcast or pool check, Unix ms.
    pub last_activity_ms: u64,
    /// Times a node accepted it.
    pub broadcast_count: u64,
    /// "nonce too low" answers to rebroadcasts.
    pub nonce_conflicts: u32,
    /// Reorgs that removed it.
    pub reorgs: u64,
    /// Recorded inclusion.
    pub inclusion: Option<Inclusion>,
    /// Revert reason of a failed transaction.
    pub revert_reason: Option<String>,
    /// Why it was rejected.
    pub error: Option<String>,
    /// The full receipt, once in a block.
    pub receipt: Option<Receipt>,
    /// The transaction that took its nonce (status `replaced`).
    pub replaced_by: Option<B256>,
}

/// `SELECT <the columns TxRecord is read from> FROM transactions <tail>`.
macro_rules! select_tx {
    ($tail:literal) => {
        concat!(
            "SELECT tx_hash, chain_id, sender, recipient, nonce, status, finalized, ",
            "accepted_at_ms, last_activity_ms, broadcast_count, nonce_conflicts, reorgs, ",
            "block_number, block_hash, gas_used, success, revert_reason, error, receipt, ",
            "replaced_by FROM transactions ",
            $tail
        )
    };
}

impl FromRow<'_, AnyRow> for TxRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let block_number = row.opt_uint("block_number")?;
        let block_hash: Option<B256> = row.opt_text("block_hash")?;
        let gas_used = row.opt_uint("gas_used")?;
        let success: Option<i64> = row.try_get("success")?;
        let inclusion = match (block_number, block_hash, gas_used, success) {
            (Some(block_number), Some(block_hash), Some(gas_used), Some(success)) => {
                Some(Inclusion {
                    block_number,
                    block_hash,
                    gas_used,
                    success: success == 1,
                })
            }
            _ => None,
        };
        Ok(Self {
            tx_hash: row.text("tx_hash")?,
            chain_id: row.uint("chain_id")?,
            sender: row.text("sender")?,
            recipient: row.opt_text("recipient")?,
            nonce: row.uint("nonce")?,
            status: row.text("status")?,
            finalized: row.flag("finalized")?,
            accepted_at_ms: row.uint("accepted_at_ms")?,
            last_activity_ms: row.uint("last_activity_ms")?,
            broadcast_count: row.uint("broadcast_count")?,
            nonce_conflicts: row
                .uint::<u64>("nonce_conflicts")?
                .try_into()
                .unwrap_or(u32::MAX),
            reorgs: row.uint("reorgs")?,
            inclusion,
            revert_reason: row.try_get("revert_reason")?,
            error: row.try_get("error")?,
            receipt: row
                .try_get::<Option<String>, _>("receipt")?
                .and_then(|text| serde_json::from_str(&text).ok()),
            replaced_by: row.opt_text("replaced_by")?,
        })
    }
}

impl TxRecord {
    /// The tracker's view of it (`None` when it is not tracked: queued, rejected, finalized).
    pub fn tracked(&self) -> Option<Tracked> {
        if self.finalized {
            return None;
        }
        let phase = match self.status {
            TxStatus::Pending => Phase::Pending,
            TxStatus::Included => Phase::Included,
            TxStatus::Mined | TxStatus::Failed => Phase::Confirmed,
            TxStatus::Queued | TxStatus::Rejected | TxStatus::Replaced | TxStatus::Expired => {
                return None;
            }
        };
        Some(Tracked {
            phase,
            inclusion: self.inclusion,
            last_activity_ms: self.last_activity_ms,
        })
    }

    /// [`Self::tracked`] for a transaction the follower found in a block: a queued one
    /// counts as pending, since a block holds it, so a node took it (the broadcaster's record
    /// of the send may not be committed yet). Deciding it now saves the second read and a
    /// tick's delay; the broadcaster's later record leaves a decided status as it is.
    pub fn tracked_in_block(&self) -> Option<Tracked> {
        if self.status == TxStatus::Queued && !self.finalized {
            return Some(Tracked {
                phase: Phase::Pending,
                inclusion: self.inclusion,
                last_activity_ms: self.last_activity_ms,
            });
        }
        self.tracked()
    }
}

/// The effect of applying one tracker decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// The row changed (false: another instance or an earlier tick got there first).
    pub changed: bool,
    /// Notification rows created.
    pub notifications: usize,
    /// A broadcast job was enqueued.
    pub rebroadcast: bool,
}

/// One tracker decision with what it needs: the record as read, the step, the receipt of a
/// new inclusion and the revert reason of a newly failed transaction.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// The transaction as read at the start of the tick.
    pub record: &'a TxRecord,
    /// The decision.
    pub step: Step,
    /// The receipt behind an `Include` step.
    pub receipt: Option<Receipt>,
    /// Revert reason for a confirmed, reverted transaction.
    pub revert_reason: Option<String>,
    /// When the relay first saw the block behind an `Include` step, Unix ms.
    pub seen_at_ms: Option<u64>,
}

impl Store {
    /// When `hash` was accepted (start of its idempotency window), if ever.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn accepted_at(&self, hash: B256) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT accepted_at_ms FROM transactions WHERE tx_hash = $1")
            .bind(Db(hash))
            .fetch_optional(&self.read)
            .await
            .map_err(q("accepted at"))?;
        row.map(|row| row.uint("accepted_at_ms"))
            .transpose()
            .map_err(q("accepted at"))
    }

    /// A stored transaction.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn transaction(&self, hash: B256) -> Result<Option<TxRecord>, StoreError> {
        sqlx::query_as(select_tx!("WHERE tx_hash = $1"))
            .bind(Db(hash))
            .fetch_optional(&self.read)
            .await
            .map_err(q("get transaction"))
    }

    /// Devices that sent `hash` with their tenants (seed ¶41-42).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn devices_of(
        &self,
        hash: B256,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.device AS device, d.tenant AS tenant FROM tx_devices t \
             LEFT JOIN devices d ON d.device = t.device WHERE t.tx_hash = $1 ORDER BY t.device",
        )
        .bind(Db(hash))
        .fetch_all(&self.read)
        .await
        .map_err(q("devices of"))?;
        rows.iter()
            .map(|row| Ok((row.try_get("device")?, row.try_get("tenant")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("devices of"))
    }

    /// One page of the unfinished transactions of `chain_id` the tracker watches (pending,
    /// included, or confirmed within the reorg watch): at most `limit`, ordered by
    /// (acceptance time, hash), starting after `after` (the last record of the
    /// previous page; `None` for the first page). Paging by this key sees every tracked
    /// transaction once per pass, however many there are.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn tracked_page(
        &self,
        chain_id: u64,
        after: Option<(u64, B256)>,
        limit: u32,
    ) -> Result<Vec<TxRecord>, StoreError> {
        let (after_ms, after_hash) = after.unwrap_or((0, B256::ZERO));
        sqlx::query_as(select_tx!(
            "WHERE chain_id = $1 AND finalized = 0 \
             AND status IN ('pending', 'included', 'mined', 'failed') \
             AND (accepted_at_ms > $2 OR (accepted_at_ms = $2 AND tx_hash > $3) OR $4 = 0) \
             ORDER BY accepted_at_ms, tx_hash LIMIT $5"
        ))
        .bind(int(chain_id))
        .bind(int(after_ms))
        .bind(Db(after_hash))
        .bind(i64::from(after.is_some()))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(q("tracked page"))
    }

    /// The unfinished transactions of `chain_id` among `hashes` (the rows
    /// [`Self::tracked_page`] would show, and queued ones: see
    /// [`TxRecord::tracked_in_block`]; in no particular order), read in chunks of 500 hashes
    /// per query. Used by the head follower for the transactions in the blocks it just read
    /// and those just sent, instead of every tracked row.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn tracked_among(
        &self,
        chain_id: u64,
        hashes: &[B256],
    ) -> Result<Vec<TxRecord>, StoreError> {
        const CHUNK: usize = 500;
        let mut records = Vec::new();
        for chunk in hashes.chunks(CHUNK) {
            let mut params = Params::new(self.backend);
            let mut sql = String::from(select_tx!("WHERE chain_id = "));
            params.push(&mut sql);
            sql.push_str(
                " AND finalized = 0 \
                 AND status IN ('queued', 'pending', 'included', 'mined', 'failed') AND tx_hash IN (",
            );
            params.push_list(&mut sql, chunk.len());
            sql.push(')');
            let mut query =
                sqlx::query_as::<_, TxRecord>(sqlx::AssertSqlSafe(sql)).bind(int(chain_id));
            for hash in chunk {
                query = query.bind(Db(*hash));
            }
            records.extend(
                query
                    .fetch_all(&self.read)
                    .await
                    .map_err(q("tracked among"))?,
            );
        }
        Ok(records)
    }

    /// The pending transactions of `chain_id` whose rebroadcast timer ran out: last
    /// broadcast or pool check at or before `cutoff_ms`, oldest first, at most `limit`. The
    /// follower's periodic timer read (instead of reading every tracked row): the index on
    /// `(chain_id, finalized, status)` narrows it to pending rows, and only due ones are
    /// decoded.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn due_pending(
        &self,
        chain_id: u64,
        cutoff_ms: u64,
        limit: u32,
    ) -> Result<Vec<TxRecord>, StoreError> {
        sqlx::query_as(select_tx!(
            "WHERE chain_id = $1 AND finalized = 0 AND status = 'pending' \
             AND last_activity_ms <= $2 ORDER BY last_activity_ms LIMIT $3"
        ))
        .bind(int(chain_id))
        .bind(int(cutoff_ms))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(q("due pending"))
    }

    /// Ends the reorg watch of every confirmed transaction of `chain_id` in each of
    /// `blocks` (block hashes the follower holds canonical at the finality depth): one
    /// statement per block through the `(chain_id, block_hash)` index, all in one database
    /// transaction, instead of one conditional update per transaction. Answers the rows
    /// finalized. Rows still `included` are left for the tracker.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is applied then.
    pub async fn finalize_blocks(
        &self,
        chain_id: u64,
        blocks: &[B256],
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        if blocks.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let mut finalized = 0;
        for hash in blocks {
            finalized += sqlx::query(
                "UPDATE transactions SET finalized = 1, updated_at_ms = $1 \
                 WHERE chain_id = $2 AND block_hash = $3 AND finalized = 0 \
                 AND status IN ('mined', 'failed')",
            )
            .bind(int(now_ms))
            .bind(int(chain_id))
            .bind(Db(*hash))
            .execute(&mut *tx)
            .await
            .map_err(q("finalize block"))?
            .rows_affected();
        }
        self.commit(tx).await?;
        Ok(finalized)
    }

    /// Applies a tracker decision ([`Step`]) to `record` as read at the start of the tick.
    /// The update is conditional on the row being unchanged since (status and block hash), so
    /// concurrent trackers (several instances) apply each change once. Result notifications
    /// and rebroadcast jobs are written in the same database transaction.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn apply_step(
        &self,
        record: &TxRecord,
        step: &Step,
        revert_reason: Option<String>,
        confirmations: u64,
        now_ms: u64,
    ) -> Result<Applied, StoreError> {
        let decision = Decision {
            record,
            step: *step,
            receipt: None,
            revert_reason,
            seen_at_ms: None,
        };
        Ok(self
            .apply_steps(std::slice::from_ref(&decision), confirmations, now_ms)
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// Applies several decisions of one tick in one database transaction (see
    /// [`Store::apply_step`]); answers in input order.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is applied then.
    pub async fn apply_steps(
        &self,
        decisions: &[Decision<'_>],
        confirmations: u64,
        now_ms: u64,
    ) -> Result<Vec<Applied>, StoreError> {
        Ok(self
            .apply_steps_leased(decisions, confirmations, now_ms, None)
            .await?
            .0)
    }

    /// [`Self::apply_steps`], with the webhook notifications it creates inserted already
    /// claimed under `lease` and answered as jobs, for delivery from memory once this
    /// returns (see [`super::outbox`]). The device rules of every decision are read in one
    /// query and the notification rows written with multi-row statements.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is applied then.
    pub async fn apply_steps_leased(
        &self,
        decisions: &[Decision<'_>],
        confirmations: u64,
        now_ms: u64,
        lease: Option<Lease<'_>>,
    ) -> Result<(Vec<Applied>, Vec<WebhookJob>), StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let notifying: Vec<B256> = decisions
            .iter()
            .filter(|d| !matches!(d.step, Step::Wait | Step::CheckPool | Step::Finalize))
            .map(|d| d.record.tx_hash)
            .collect();
        let mut outbox = Outbox::prefetch(&mut tx, self.backend, &notifying, lease).await?;
        let included = self.update_inclusions(&mut tx, decisions, now_ms).await?;
        let mut applied = Vec::with_capacity(decisions.len());
        for ((index, decision), included) in decisions.iter().enumerate().zip(included) {
            applied.push(
                apply_in(
                    &mut tx,
                    decision,
                    (confirmations, now_ms),
                    (&mut outbox, index),
                    included,
                )
                .await?,
            );
        }
        let (created, jobs) = outbox.flush(&mut tx, decisions.len(), now_ms).await?;
        self.commit(tx).await?;
        for (applied, created) in applied.iter_mut().zip(created) {
            applied.notifications = created;
        }
        Ok((applied, jobs))
    }

    /// Writes the inclusion updates of `decisions` together ([`inclusion::update_many`]);
    /// answers per decision whether its row changed, `None` for decisions without one and
    /// for a transaction repeated in `decisions` (written on its own, after the first).
    async fn update_inclusions(
        &self,
        tx: &mut Tx<'_>,
        decisions: &[Decision<'_>],
        now_ms: u64,
    ) -> Result<Vec<Option<bool>>, StoreError> {
        let mut hashes = HashSet::with_capacity(decisions.len());
        let mut batch = Vec::with_capacity(decisions.len());
        let mut members = Vec::with_capacity(decisions.len());
        for decision in decisions {
            let update =
                inclusion::update_of(decision).filter(|_| hashes.insert(decision.record.tx_hash));
            members.push(update.is_some());
            if let Some(update) = update {
                batch.push((decision.record, update));
            }
        }
        let changed = inclusion::update_many(tx, self.backend, &batch, now_ms).await?;
        Ok(decisions
            .iter()
            .zip(members)
            .map(|(decision, member)| member.then(|| changed.contains(&decision.record.tx_hash)))
            .collect())
    }

    /// Records a pool check of a pending transaction: the rebroadcast timer restarts, and when
    /// the node no longer holds it a broadcast job with the same bytes is enqueued (reason
    /// `dropped`). Conditional on the timer being unchanged, so one instance does it.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn pool_checked(
        &self,
        record: &TxRecord,
        rebroadcast: bool,
        now_ms: u64,
    ) -> Result<Applied, StoreError> {
        Ok(self
            .pool_checked_many(&[(record, rebroadcast)], now_ms)
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// [`Self::pool_checked`] for several transactions in one database transaction (the
    /// pool checks of one tick); answers in input order.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is applied then.
    pub async fn pool_checked_many(
        &self,
        checks: &[(&TxRecord, bool)],
        now_ms: u64,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let mut applied = Vec::with_capacity(checks.len());
        for (record, rebroadcast) in checks {
            let changed = sqlx::query(
                "UPDATE transactions SET last_activity_ms = $1, updated_at_ms = $1 \
                 WHERE tx_hash = $2 AND status = 'pending' AND last_activity_ms = $3",
            )
            .bind(int(now_ms))
            .bind(Db(record.tx_hash))
            .bind(int(record.last_activity_ms))
            .execute(&mut *tx)
            .await
            .map_err(q("pool checked"))?
            .rows_affected()
                == 1;
            if changed && *rebroadcast {
                super::jobs::insert_job(
                    &mut tx,
                    record.tx_hash,
                    record.chain_id,
                    "dropped",
                    now_ms,
                )
                .await?;
            }
            applied.push(Applied {
                changed,
                notifications: 0,
                rebroadcast: changed && *rebroadcast,
            });
        }
        self.commit(tx).await?;
        Ok(applied)
    }
}

/// Reads a transaction inside a database transaction.
pub(super) async fn tx_in(tx: &mut Tx<'_>, hash: B256) -> Result<Option<TxRecord>, StoreError> {
    sqlx::query_as(select_tx!("WHERE tx_hash = $1"))
        .bind(Db(hash))
        .fetch_optional(&mut **tx)
        .await
        .map_err(q("get transaction"))
}

/// The event status of a mined (`success`) or failed result.
fn result_event(success: bool) -> EventStatus {
    if success {
        EventStatus::Mined
    } else {
        EventStatus::Failed
    }
}

/// Makes the event of `notice` for `record` and adds its notifications to `outbox`.
fn record_event(
    (outbox, index): (&mut Outbox<'_>, usize),
    record: &TxRecord,
    notice: Notice<'_>,
    confirmations: u64,
    (now_ms, seen_at_ms): (u64, Option<u64>),
) -> Result<(), StoreError> {
    let event = make_event(record, notice, confirmations, now_ms);
    outbox.add(index, record, &event, seen_at_ms)
}

/// Applies one decision inside `tx`: its row update (unless `included`, the outcome of its
/// inclusion update written already with the others of its batch) and the notifications
/// and jobs it causes.
async fn apply_in(
    tx: &mut Tx<'_>,
    decision: &Decision<'_>,
    (confirmations, now_ms): (u64, u64),
    (outbox, index): (&mut Outbox<'_>, usize),
    included: Option<bool>,
) -> Result<Applied, StoreError> {
    let record = decision.record;
    let revert_reason = decision.revert_reason.clone();
    let seen = decision.seen_at_ms;
    let mut applied = Applied::default();
    match decision.step {
        Step::Wait | Step::CheckPool => {}
        Step::Include {
            inclusion,
            reorged_from,
            notify_reorg,
            confirm,
        } => {
            let event_status = result_event(inclusion.success);
            applied.changed = match (included, inclusion::update_of(decision)) {
                (Some(changed), _) => changed,
                (None, Some(update)) => inclusion::update_one(tx, record, update, now_ms).await?,
                (None, None) => false,
            };
            if applied.changed {
                if let (Some(from), true) = (reorged_from, notify_reorg) {
                    let notice = Notice {
                        inclusion: Some(&from),
                        ..Notice::of(EventStatus::Reorged)
                    };
                    record_event(
                        (&mut *outbox, index),
                        record,
                        notice,
                        confirmations,
                        (now_ms, seen),
                    )?;
                }
                if confirm {
                    let notice = Notice {
                        inclusion: Some(&inclusion),
                        receipt: decision.receipt.as_ref(),
                        revert_reason,
                        ..Notice::of(event_status)
                    };
                    record_event(
                        (&mut *outbox, index),
                        record,
                        notice,
                        confirmations,
                        (now_ms, seen),
                    )?;
                }
            }
        }
        Step::Confirm => {
            let Some(inclusion) = record.inclusion else {
                return Ok(applied);
            };
            let event_status = result_event(inclusion.success);
            applied.changed = match (included, inclusion::update_of(decision)) {
                (Some(changed), _) => changed,
                (None, Some(update)) => inclusion::update_one(tx, record, update, now_ms).await?,
                (None, None) => false,
            };
            if applied.changed {
                let notice = Notice {
                    inclusion: Some(&inclusion),
                    receipt: record.receipt.as_ref(),
                    revert_reason,
                    ..Notice::of(event_status)
                };
                record_event(
                    (&mut *outbox, index),
                    record,
                    notice,
                    confirmations,
                    (now_ms, seen),
                )?;
            }
        }
        Step::Finalize => {
            applied.changed = sqlx::query(
                "UPDATE transactions SET finalized = 1, updated_at_ms = $1 \
                 WHERE tx_hash = $2 AND status = $3 AND block_hash = $4 AND finalized = 0",
            )
            .bind(int(now_ms))
            .bind(Db(record.tx_hash))
            .bind(Db(record.status))
            .bind(record.inclusion.map(|i| Db(i.block_hash)))
            .execute(&mut **tx)
            .await
            .map_err(q("finalize"))?
            .rows_affected()
                == 1;
        }
        Step::Reorged { from, notify } => {
            applied.changed = sqlx::query(
                "UPDATE transactions SET status = 'pending', block_number = NULL, block_hash = NULL, \
                 gas_used = NULL, success = NULL, revert_reason = NULL, receipt = NULL, \
                 reorgs = reorgs + 1, \
                 last_activity_ms = $1, updated_at_ms = $1 \
                 WHERE tx_hash = $2 AND status = $3 AND block_hash = $4",
            )
            .bind(int(now_ms))
            .bind(Db(record.tx_hash))
            .bind(Db(record.status))
            .bind(Db(from.block_hash))
            .execute(&mut **tx)
            .await
            .map_err(q("reorg"))?
            .rows_affected()
                == 1;
            if applied.changed {
                super::jobs::insert_job(tx, record.tx_hash, record.chain_id, "reorged", now_ms)
                    .await?;
                applied.rebroadcast = true;
                if notify {
                    let notice = Notice {
                        inclusion: Some(&from),
                        ..Notice::of(EventStatus::Reorged)
                    };
                    record_event(
                        (&mut *outbox, index),
                        record,
                        notice,
                        confirmations,
                        (now_ms, seen),
                    )?;
                }
            }
        }
    }
    Ok(applied)
}
