//! Durable state and the transactional outbox: SQLite by default, PostgreSQL by configuration
//! (through sqlx's `any` driver; the schema files in `migrations/` differ only in id columns).
//!
//! Every state change of a transaction is written in one database transaction together with
//! the work it causes: the broadcast job that sends it, the notification rows that deliver its
//! result. Workers claim due work by setting a lease (`locked_by`, `locked_until_ms`); on
//! PostgreSQL the claim uses `FOR UPDATE SKIP LOCKED`, so several relay instances share one
//! database without taking the same job twice. SQLite runs as a single writer (one
//! connection). A restarted instance releases its own leases at once; whatever a crashed
//! instance had claimed becomes due again, so every pending transaction and notification
//! resumes.
//!
//! Webhook secrets are stored with the rules (the relay signs with them); protect the
//! database like a secret store.

use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlSafeStr};
use svckit::redact::SafeUrl;
use tracing::{debug, info};

use crate::core::window::{Admission, admit};
use crate::core::{Inclusion, Phase, Tracked};
use crate::error::StoreError;
use crate::event::{Event, EventStatus, event_id};
use crate::rules::{Registration, Target};
use crate::validate::SignedTx;

/// The database kind behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (one writer).
    Sqlite,
    /// PostgreSQL server (several instances may share it).
    Postgres,
}

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
            other => {
                return Err(StoreError::Corrupt {
                    what: "status",
                    value: other.to_owned(),
                });
            }
        })
    }
}

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
            TxStatus::Queued | TxStatus::Rejected => return None,
        };
        Some(Tracked {
            phase,
            inclusion: self.inclusion,
            last_activity_ms: self.last_activity_ms,
        })
    }
}

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

/// A claimed webhook notification.
#[derive(Debug, Clone)]
pub struct WebhookJob {
    /// Row id.
    pub id: i64,
    /// Event id (header and payload).
    pub event_id: String,
    /// Endpoint.
    pub url: String,
    /// HMAC key.
    pub secret: String,
    /// JSON body.
    pub payload: String,
    /// This attempt's number.
    pub attempts: u32,
    /// When the result was recorded, Unix ms.
    pub created_at_ms: u64,
}

/// The outcome of one webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Answered 2xx.
    Delivered {
        /// Notification row id.
        id: i64,
        /// When, Unix ms.
        at_ms: u64,
    },
    /// Failed; retried at `retry_at_ms`, or dead-lettered when `None`.
    Failed {
        /// Notification row id.
        id: i64,
        /// Next attempt, Unix ms.
        retry_at_ms: Option<u64>,
        /// What went wrong.
        error: String,
    },
}

/// A claimed WebSocket notification.
#[derive(Debug, Clone)]
pub struct AccountEvent {
    /// Row id.
    pub id: i64,
    /// Event id.
    pub event_id: String,
    /// JSON event.
    pub payload: String,
}

/// A notification as listed by the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotificationRecord {
    /// Row id (the dead-letter replay id).
    pub id: i64,
    /// Event id.
    pub event_id: String,
    /// Transaction.
    pub tx_hash: String,
    /// Event status.
    pub kind: String,
    /// `webhook` or `account`.
    pub channel: String,
    /// URL (query redacted) or account.
    pub target: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// Last failure.
    pub last_error: Option<String>,
    /// Created, Unix ms.
    pub created_at_ms: u64,
    /// Delivered, Unix ms.
    pub delivered_at_ms: Option<u64>,
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

fn q(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

fn hash_key(hash: B256) -> String {
    format!("{hash:#x}")
}

fn account_key(account: Address) -> String {
    format!("{account:#x}")
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn uint(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn parse<T: FromStr>(what: &'static str, text: &str) -> Result<T, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt {
        what,
        value: text.to_owned(),
    })
}

/// Claim statements in both dialects: PostgreSQL adds `FOR UPDATE SKIP LOCKED` to the inner
/// select so concurrent instances skip rows another one is claiming.
macro_rules! claim_sql {
    ($table:literal, $filter:literal, $returning:literal) => {
        (
            concat!(
                "UPDATE ", $table, " SET locked_by = $1, locked_until_ms = $2, attempts = attempts + 1 ",
                "WHERE id IN (SELECT id FROM ", $table, " WHERE ", $filter,
                " AND (locked_until_ms IS NULL OR locked_until_ms < $3) ORDER BY id LIMIT $4) ",
                "RETURNING ", $returning
            ),
            concat!(
                "UPDATE ", $table, " SET locked_by = $1, locked_until_ms = $2, attempts = attempts + 1 ",
                "WHERE id IN (SELECT id FROM ", $table, " WHERE ", $filter,
                " AND (locked_until_ms IS NULL OR locked_until_ms < $3) ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) ",
                "RETURNING ", $returning
            ),
        )
    };
}

const CLAIM_BROADCAST: (&str, &str) = claim_sql!(
    "broadcast_jobs",
    "done_at_ms IS NULL AND next_attempt_at_ms <= $3",
    "id, tx_hash, chain_id, attempts, reason"
);

const CLAIM_WEBHOOK: (&str, &str) = claim_sql!(
    "notifications",
    "channel = 'webhook' AND state = 'pending' AND next_attempt_at_ms <= $3",
    "id, event_id, target, secret, payload, attempts, created_at_ms"
);

const CLAIM_ACCOUNT: (&str, &str) = claim_sql!(
    "notifications",
    "channel = 'account' AND state = 'pending' AND target = $5",
    "id, event_id, payload"
);

/// `SELECT <every transactions column the relay reads> FROM transactions <tail>`.
macro_rules! select_tx {
    ($tail:literal) => {
        concat!(
            "SELECT tx_hash, chain_id, sender, recipient, nonce, status, finalized, accepted_at_ms, ",
            "last_activity_ms, broadcast_count, nonce_conflicts, reorgs, block_number, block_hash, ",
            "gas_used, success, revert_reason, error FROM transactions ",
            $tail
        )
    };
}

/// The relay's database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    /// Writes (SQLite: the single writer connection).
    pool: AnyPool,
    /// Reads (SQLite: a few more connections, which WAL lets run beside the writer;
    /// PostgreSQL: the same pool).
    read: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens (creating a missing SQLite file) and migrates the database at `url`; PostgreSQL
    /// gets a pool of `max_connections`, SQLite one connection in WAL mode.
    ///
    /// # Errors
    /// [`StoreError::Connect`] or [`StoreError::Migrate`].
    pub async fn open(url: &SafeUrl, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.expose().scheme() == "sqlite" {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut text = url.expose().to_string();
        if backend == Backend::Sqlite && !text.contains("mode=") && !text.contains(":memory:") {
            text.push(if text.contains('?') { '&' } else { '?' });
            text.push_str("mode=rwc");
        }
        let options = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            Ok(())
                        })
                    })
            }
            Backend::Postgres => AnyPoolOptions::new().max_connections(max_connections),
        };
        let pool = options
            .acquire_timeout(Duration::from_secs(30))
            .connect(&text)
            .await
            .map_err(|source| StoreError::Connect {
                url: url.to_string(),
                source,
            })?;
        let read = match backend {
            Backend::Postgres => pool.clone(),
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA query_only = 1").await?;
                        Ok(())
                    })
                })
                .acquire_timeout(Duration::from_secs(30))
                .connect_lazy(&text)
                .map_err(|source| StoreError::Connect {
                    url: url.to_string(),
                    source,
                })?,
        };
        let store = Self {
            pool,
            read,
            backend,
        };
        store.migrate().await?;
        info!(database = %url, backend = ?backend, "database ready");
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => include_str!("../migrations/sqlite/0001_outbox.sql"),
            Backend::Postgres => include_str!("../migrations/postgres/0001_outbox.sql"),
        };
        let migrator = Migrator::with_migrations(vec![Migration::new(
            1,
            "outbox".into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )]);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn pick(&self, sql: (&'static str, &'static str)) -> &'static str {
        match self.backend {
            Backend::Sqlite => sql.0,
            Backend::Postgres => sql.1,
        }
    }

    /// Closes the pool (waits for connections to return).
    pub async fn close(&self) {
        self.read.close().await;
        self.pool.close().await;
    }

    // --- devices -------------------------------------------------------------------------

    /// Stores a device's registration, replacing the previous one (seed ¶40).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn put_device(
        &self,
        device: &str,
        registration: &Registration,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let rules = serde_json::to_string(registration).unwrap_or_default();
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        sqlx::query(
            "INSERT INTO devices (device, rules, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (device) DO UPDATE SET rules = excluded.rules, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(device)
        .bind(rules)
        .bind(int(now_ms))
        .execute(&mut *tx)
        .await
        .map_err(q("put device"))?;
        sqlx::query("DELETE FROM device_accounts WHERE device = $1")
            .bind(device)
            .execute(&mut *tx)
            .await
            .map_err(q("put device accounts"))?;
        for account in &registration.accounts {
            sqlx::query(
                "INSERT INTO device_accounts (account, device) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(account_key(*account))
            .bind(device)
            .execute(&mut *tx)
            .await
            .map_err(q("put device accounts"))?;
        }
        tx.commit().await.map_err(q("commit"))
    }

    /// A device's registration, if any.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn device(&self, device: &str) -> Result<Option<Registration>, StoreError> {
        let row = sqlx::query("SELECT rules FROM devices WHERE device = $1")
            .bind(device)
            .fetch_optional(&self.read)
            .await
            .map_err(q("get device"))?;
        row.map(|row| {
            let text: String = row.try_get("rules").map_err(q("get device"))?;
            serde_json::from_str(&text).map_err(|_| StoreError::Corrupt {
                what: "device rules",
                value: text,
            })
        })
        .transpose()
    }

    /// Whether some device registered `account`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn account_registered(&self, account: Address) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM device_accounts WHERE account = $1 LIMIT 1")
            .bind(account_key(account))
            .fetch_optional(&self.read)
            .await
            .map_err(q("account registered"))?;
        Ok(row.is_some())
    }

    // --- submissions ---------------------------------------------------------------------

    /// When `hash` was accepted (start of its idempotency window), if ever.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn accepted_at(&self, hash: B256) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT accepted_at_ms FROM transactions WHERE tx_hash = $1")
            .bind(hash_key(hash))
            .fetch_optional(&self.read)
            .await
            .map_err(q("accepted at"))?;
        row.map(|row| row.try_get::<i64, _>("accepted_at_ms").map(uint))
            .transpose()
            .map_err(q("accepted at"))
    }

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
        tx.commit().await.map_err(q("commit"))
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
        let hash = hash_key(signed.hash);
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let inserted = sqlx::query(
            "INSERT INTO transactions (tx_hash, chain_id, sender, recipient, nonce, raw, status, \
             accepted_at_ms, last_activity_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $7, $7) ON CONFLICT (tx_hash) DO NOTHING",
        )
        .bind(&hash)
        .bind(int(signed.chain_id))
        .bind(account_key(signed.sender))
        .bind(signed.recipient.map(account_key))
        .bind(int(signed.nonce))
        .bind(hex::encode(&signed.raw))
        .bind(int(now_ms))
        .execute(&mut *tx)
        .await
        .map_err(q("insert transaction"))?
        .rows_affected();
        let admission = if inserted == 1 {
            Admission::New
        } else {
            let row = sqlx::query("SELECT accepted_at_ms FROM transactions WHERE tx_hash = $1")
                .bind(&hash)
                .fetch_one(&mut *tx)
                .await
                .map_err(q("read transaction"))?;
            let accepted_at: i64 = row
                .try_get("accepted_at_ms")
                .map_err(q("read transaction"))?;
            match admit(Some(uint(accepted_at)), idempotent, now_ms, window) {
                Admission::Resend if idempotent => {
                    // Restart the window; a concurrent submission that restarted it first
                    // makes this one a duplicate.
                    let restarted = sqlx::query(
                        "UPDATE transactions SET accepted_at_ms = $1, updated_at_ms = $1 \
                         WHERE tx_hash = $2 AND accepted_at_ms = $3",
                    )
                    .bind(int(now_ms))
                    .bind(&hash)
                    .bind(accepted_at)
                    .execute(&mut *tx)
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
            insert_job(&mut tx, &hash, signed.chain_id, reason, now_ms).await?;
        }
        record_submission(
            &mut tx,
            signed.hash,
            device,
            idempotent,
            admission == Admission::Duplicate,
            now_ms,
        )
        .await?;
        tx.commit().await.map_err(q("commit"))?;
        Ok(admission)
    }

    // --- transactions --------------------------------------------------------------------

    /// A stored transaction.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn transaction(&self, hash: B256) -> Result<Option<TxRecord>, StoreError> {
        let row = sqlx::query(select_tx!("WHERE tx_hash = $1"))
            .bind(hash_key(hash))
            .fetch_optional(&self.read)
            .await
            .map_err(q("get transaction"))?;
        row.as_ref().map(tx_record).transpose()
    }

    /// Devices that sent `hash` (seed ¶41-42).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn devices_of(&self, hash: B256) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT device FROM tx_devices WHERE tx_hash = $1 ORDER BY device")
            .bind(hash_key(hash))
            .fetch_all(&self.read)
            .await
            .map_err(q("devices of"))?;
        rows.iter()
            .map(|row| row.try_get("device"))
            .collect::<Result<_, _>>()
            .map_err(q("devices of"))
    }

    /// Unfinished transactions of `chain_id` the tracker watches (pending, included, or
    /// confirmed within the reorg watch), oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn tracked(&self, chain_id: u64, limit: u32) -> Result<Vec<TxRecord>, StoreError> {
        let rows = sqlx::query(select_tx!(
            "WHERE chain_id = $1 AND finalized = 0 AND status IN ('pending', 'included', 'mined', 'failed') \
             ORDER BY accepted_at_ms LIMIT $2"
        ))
        .bind(int(chain_id))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(q("tracked"))?;
        rows.iter().map(tx_record).collect()
    }

    // --- broadcast jobs ------------------------------------------------------------------

    /// Releases the leases `instance` held before a restart (SQLite: all leases, it has one
    /// writer). Returns the number of jobs and notifications released.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn release_claims(&self, instance: &str) -> Result<u64, StoreError> {
        let all = self.backend == Backend::Sqlite;
        let mut released = 0;
        for sql in [
            "UPDATE broadcast_jobs SET locked_by = NULL, locked_until_ms = NULL \
             WHERE done_at_ms IS NULL AND locked_by IS NOT NULL AND ($1 = 1 OR locked_by = $2)",
            "UPDATE notifications SET locked_by = NULL, locked_until_ms = NULL \
             WHERE state = 'pending' AND locked_by IS NOT NULL AND ($1 = 1 OR locked_by = $2 OR locked_by LIKE $3)",
        ] {
            released += sqlx::query(sql)
                .bind(i64::from(all))
                .bind(instance)
                .bind(format!("{instance}/%"))
                .execute(&self.pool)
                .await
                .map_err(q("release claims"))?
                .rows_affected();
        }
        Ok(released)
    }

    /// Claims up to `limit` due broadcast jobs for `instance` until `now_ms + lease`.
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
        let rows = sqlx::query(self.pick(CLAIM_BROADCAST))
            .bind(instance)
            .bind(int(now_ms.saturating_add(millis(lease))))
            .bind(int(now_ms))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(q("claim broadcasts"))?;
        let mut jobs: Vec<BroadcastJob> = rows
            .iter()
            .map(|row| {
                let hash: String = row.try_get("tx_hash").map_err(q("claim broadcasts"))?;
                Ok(BroadcastJob {
                    id: row.try_get("id").map_err(q("claim broadcasts"))?,
                    tx_hash: parse("tx hash", &hash)?,
                    chain_id: uint(row.try_get("chain_id").map_err(q("claim broadcasts"))?),
                    attempts: u32::try_from(
                        row.try_get::<i64, _>("attempts")
                            .map_err(q("claim broadcasts"))?,
                    )
                    .unwrap_or(u32::MAX),
                    reason: row.try_get("reason").map_err(q("claim broadcasts"))?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
    }

    /// The bytes and counters a broadcast needs.
    ///
    /// # Errors
    /// [`StoreError`]; [`StoreError::Corrupt`] when the job's transaction is missing.
    pub async fn broadcast_facts(&self, hash: B256) -> Result<BroadcastFacts, StoreError> {
        let row = sqlx::query(
            "SELECT raw, status, broadcast_count, nonce_conflicts FROM transactions WHERE tx_hash = $1",
        )
        .bind(hash_key(hash))
        .fetch_optional(&self.read)
        .await
        .map_err(q("broadcast facts"))?
        .ok_or_else(|| StoreError::Corrupt {
            what: "broadcast job transaction",
            value: hash_key(hash),
        })?;
        let raw: String = row.try_get("raw").map_err(q("broadcast facts"))?;
        let status: String = row.try_get("status").map_err(q("broadcast facts"))?;
        Ok(BroadcastFacts {
            raw: hex::decode(&raw).map_err(|_| StoreError::Corrupt {
                what: "raw transaction",
                value: hash_key(hash),
            })?,
            status: status.parse()?,
            broadcast_count: uint(
                row.try_get("broadcast_count")
                    .map_err(q("broadcast facts"))?,
            ),
            nonce_conflicts: u32::try_from(
                row.try_get::<i64, _>("nonce_conflicts")
                    .map_err(q("broadcast facts"))?,
            )
            .unwrap_or(u32::MAX),
        })
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
        let hash = hash_key(job.tx_hash);
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
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
                .execute(&mut *tx)
                .await
                .map_err(q("retry broadcast"))?;
            }
            BroadcastOutcome::Sent => {
                close_job(&mut tx, job.id, None, now_ms).await?;
                sqlx::query(
                    "UPDATE transactions SET \
                     status = CASE WHEN status IN ('queued', 'rejected') THEN 'pending' ELSE status END, \
                     finalized = CASE WHEN status = 'rejected' THEN 0 ELSE finalized END, \
                     error = CASE WHEN status = 'rejected' THEN NULL ELSE error END, \
                     broadcast_count = broadcast_count + 1, last_activity_ms = $1, updated_at_ms = $1 \
                     WHERE tx_hash = $2",
                )
                .bind(int(now_ms))
                .bind(&hash)
                .execute(&mut *tx)
                .await
                .map_err(q("mark sent"))?;
            }
            BroadcastOutcome::Skipped => {
                close_job(&mut tx, job.id, None, now_ms).await?;
            }
            BroadcastOutcome::NonceConflict => {
                close_job(&mut tx, job.id, Some("nonce too low"), now_ms).await?;
                sqlx::query(
                    "UPDATE transactions SET nonce_conflicts = nonce_conflicts + 1, updated_at_ms = $1 \
                     WHERE tx_hash = $2 AND status = 'pending'",
                )
                .bind(int(now_ms))
                .bind(&hash)
                .execute(&mut *tx)
                .await
                .map_err(q("count conflict"))?;
            }
            BroadcastOutcome::Rejected(reason) => {
                close_job(&mut tx, job.id, Some(reason), now_ms).await?;
                let changed = sqlx::query(
                    "UPDATE transactions SET status = 'rejected', finalized = 1, error = $1, updated_at_ms = $2 \
                     WHERE tx_hash = $3 AND status IN ('queued', 'pending')",
                )
                .bind(reason)
                .bind(int(now_ms))
                .bind(&hash)
                .execute(&mut *tx)
                .await
                .map_err(q("reject"))?
                .rows_affected();
                if changed == 1
                    && let Some(record) = tx_in(&mut tx, job.tx_hash).await?
                {
                    let event = make_event(
                        &record,
                        EventStatus::Rejected,
                        None,
                        None,
                        Some(reason.clone()),
                        0,
                        now_ms,
                    );
                    created = insert_notifications(&mut tx, &record, &event, now_ms).await?;
                }
            }
        }
        tx.commit().await.map_err(q("commit"))?;
        Ok(created)
    }

    // --- tracking ------------------------------------------------------------------------

    /// Applies a tracker decision ([`crate::core::Step`]) to `record` as read at the start of
    /// the tick. The update is conditional on the row being unchanged since (status and block
    /// hash), so concurrent trackers (several instances) apply each change once. Result
    /// notifications and rebroadcast jobs are written in the same database transaction.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn apply_step(
        &self,
        record: &TxRecord,
        step: &crate::core::Step,
        revert_reason: Option<String>,
        confirmations: u64,
        now_ms: u64,
    ) -> Result<Applied, StoreError> {
        let decision = Decision {
            record,
            step: *step,
            revert_reason,
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
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let mut applied = Vec::with_capacity(decisions.len());
        for decision in decisions {
            applied.push(apply_in(&mut tx, decision, confirmations, now_ms).await?);
        }
        tx.commit().await.map_err(q("commit"))?;
        Ok(applied)
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
        let hash = hash_key(record.tx_hash);
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let changed = sqlx::query(
            "UPDATE transactions SET last_activity_ms = $1, updated_at_ms = $1 \
             WHERE tx_hash = $2 AND status = 'pending' AND last_activity_ms = $3",
        )
        .bind(int(now_ms))
        .bind(&hash)
        .bind(int(record.last_activity_ms))
        .execute(&mut *tx)
        .await
        .map_err(q("pool checked"))?
        .rows_affected()
            == 1;
        if changed && rebroadcast {
            insert_job(&mut tx, &hash, record.chain_id, "dropped", now_ms).await?;
        }
        tx.commit().await.map_err(q("commit"))?;
        Ok(Applied {
            changed,
            notifications: 0,
            rebroadcast: changed && rebroadcast,
        })
    }

    // --- notifications -------------------------------------------------------------------

    /// Claims up to `limit` due webhook notifications for `instance`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn claim_webhooks(
        &self,
        instance: &str,
        now_ms: u64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<WebhookJob>, StoreError> {
        let rows = sqlx::query(self.pick(CLAIM_WEBHOOK))
            .bind(instance)
            .bind(int(now_ms.saturating_add(millis(lease))))
            .bind(int(now_ms))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(q("claim webhooks"))?;
        let mut jobs = rows
            .iter()
            .map(|row| -> Result<WebhookJob, sqlx::Error> {
                Ok(WebhookJob {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    url: row.try_get("target")?,
                    secret: row
                        .try_get::<Option<String>, _>("secret")?
                        .unwrap_or_default(),
                    payload: row.try_get("payload")?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    created_at_ms: uint(row.try_get("created_at_ms")?),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(q("claim webhooks"))?;
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
    }

    /// Marks a notification delivered.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn delivered(&self, id: i64, now_ms: u64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET state = 'delivered', delivered_at_ms = $1, locked_by = NULL, \
             locked_until_ms = NULL, last_error = NULL WHERE id = $2 AND state = 'pending'",
        )
        .bind(int(now_ms))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("delivered"))?;
        Ok(())
    }

    /// Records the outcomes of several deliveries in one database transaction.
    ///
    /// # Errors
    /// [`StoreError::Query`]; nothing is recorded then (the leases run out and the
    /// notifications are delivered again: at least once).
    pub async fn record_deliveries(&self, outcomes: &[DeliveryOutcome]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        for outcome in outcomes {
            let query = match outcome {
                DeliveryOutcome::Delivered { id, at_ms } => sqlx::query(
                    "UPDATE notifications SET state = 'delivered', delivered_at_ms = $1, locked_by = NULL, \
                     locked_until_ms = NULL, last_error = NULL WHERE id = $2 AND state = 'pending'",
                )
                .bind(int(*at_ms))
                .bind(*id),
                DeliveryOutcome::Failed {
                    id,
                    retry_at_ms,
                    error,
                } => {
                    let (state, next) = match retry_at_ms {
                        Some(at) => ("pending", int(*at)),
                        None => ("dead", 0),
                    };
                    sqlx::query(
                        "UPDATE notifications SET state = $1, next_attempt_at_ms = CASE WHEN $1 = 'pending' \
                         THEN $2 ELSE next_attempt_at_ms END, locked_by = NULL, locked_until_ms = NULL, \
                         last_error = $3 WHERE id = $4 AND state = 'pending'",
                    )
                    .bind(state)
                    .bind(next)
                    .bind(error.clone())
                    .bind(*id)
                }
            };
            query
                .execute(&mut *tx)
                .await
                .map_err(q("record delivery"))?;
        }
        tx.commit().await.map_err(q("commit"))
    }

    /// Records a failed delivery: due again at `retry_at_ms`, or dead-lettered when `None`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn delivery_failed(
        &self,
        id: i64,
        retry_at_ms: Option<u64>,
        error: &str,
    ) -> Result<(), StoreError> {
        let (state, next) = match retry_at_ms {
            Some(at) => ("pending", int(at)),
            None => ("dead", 0),
        };
        sqlx::query(
            "UPDATE notifications SET state = $1, next_attempt_at_ms = CASE WHEN $1 = 'pending' THEN $2 \
             ELSE next_attempt_at_ms END, locked_by = NULL, locked_until_ms = NULL, last_error = $3 \
             WHERE id = $4 AND state = 'pending'",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("delivery failed"))?;
        Ok(())
    }

    /// Claims up to `limit` pending WebSocket events for `account` for `session` until
    /// `now_ms + lease` (the acknowledgement timeout).
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn claim_account_events(
        &self,
        account: Address,
        session: &str,
        now_ms: u64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<AccountEvent>, StoreError> {
        let rows = sqlx::query(self.pick(CLAIM_ACCOUNT))
            .bind(session)
            .bind(int(now_ms.saturating_add(millis(lease))))
            .bind(int(now_ms))
            .bind(i64::from(limit))
            .bind(account_key(account))
            .fetch_all(&self.pool)
            .await
            .map_err(q("claim account events"))?;
        let mut events = rows
            .iter()
            .map(|row| -> Result<AccountEvent, sqlx::Error> {
                Ok(AccountEvent {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    payload: row.try_get("payload")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(q("claim account events"))?;
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    /// Marks the WebSocket event `event_id` for `account` delivered (the client acknowledged
    /// it). Returns whether a pending row was found.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn account_event_acked(
        &self,
        account: Address,
        event_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE notifications SET state = 'delivered', delivered_at_ms = $1, locked_by = NULL, \
             locked_until_ms = NULL WHERE channel = 'account' AND target = $2 AND event_id = $3 \
             AND state = 'pending'",
        )
        .bind(int(now_ms))
        .bind(account_key(account))
        .bind(event_id)
        .execute(&self.pool)
        .await
        .map_err(q("ack"))?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Releases the unacknowledged events a closed WebSocket session held.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn release_session(&self, session: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET locked_by = NULL, locked_until_ms = NULL \
             WHERE locked_by = $1 AND state = 'pending'",
        )
        .bind(session)
        .execute(&self.pool)
        .await
        .map_err(q("release session"))?;
        Ok(())
    }

    /// Notifications of one transaction, or (with `hash = None`) dead letters, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn notifications(
        &self,
        hash: Option<B256>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let query = match hash {
            Some(hash) => sqlx::query(
                "SELECT id, event_id, tx_hash, kind, channel, target, state, attempts, last_error, \
                 created_at_ms, delivered_at_ms FROM notifications WHERE tx_hash = $1 ORDER BY id LIMIT $2",
            )
            .bind(hash_key(hash)),
            None => sqlx::query(
                "SELECT id, event_id, tx_hash, kind, channel, target, state, attempts, last_error, \
                 created_at_ms, delivered_at_ms FROM notifications WHERE state = 'dead' \
                 ORDER BY id LIMIT $1",
            ),
        };
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(q("list notifications"))?;
        rows.iter()
            .map(|row| -> Result<NotificationRecord, sqlx::Error> {
                let channel: String = row.try_get("channel")?;
                let target: String = row.try_get("target")?;
                let target = if channel == "webhook" {
                    target
                        .parse::<SafeUrl>()
                        .map_or(target, |url| url.to_string())
                } else {
                    target
                };
                Ok(NotificationRecord {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    tx_hash: row.try_get("tx_hash")?,
                    kind: row.try_get("kind")?,
                    channel,
                    target,
                    state: row.try_get("state")?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
                    last_error: row.try_get("last_error")?,
                    created_at_ms: uint(row.try_get("created_at_ms")?),
                    delivered_at_ms: row.try_get::<Option<i64>, _>("delivered_at_ms")?.map(uint),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(q("list notifications"))
    }

    /// Puts dead-lettered notifications back in the queue with fresh attempts: the one with
    /// row id `id`, or all when `None`. Returns how many.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn replay(&self, id: Option<i64>, now_ms: u64) -> Result<u64, StoreError> {
        let changed = sqlx::query(
            "UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at_ms = $1, \
             locked_by = NULL, locked_until_ms = NULL WHERE state = 'dead' AND ($2 = 1 OR id = $3)",
        )
        .bind(int(now_ms))
        .bind(i64::from(id.is_none()))
        .bind(id.unwrap_or(0))
        .execute(&self.pool)
        .await
        .map_err(q("replay"))?
        .rows_affected();
        debug!(replayed = changed, "dead letters replayed");
        Ok(changed)
    }

    /// Counts of broadcast jobs not yet done and notifications by state, for progress and
    /// tests: `(open_jobs, pending, delivered, dead)`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn backlog(&self) -> Result<(u64, u64, u64, u64), StoreError> {
        let jobs = sqlx::query("SELECT COUNT(*) AS n FROM broadcast_jobs WHERE done_at_ms IS NULL")
            .fetch_one(&self.read)
            .await
            .map_err(q("backlog"))?;
        let open: i64 = jobs.try_get("n").map_err(q("backlog"))?;
        let mut counts = [0_u64; 3];
        for (slot, state) in counts.iter_mut().zip(["pending", "delivered", "dead"]) {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM notifications WHERE state = $1")
                .bind(state)
                .fetch_one(&self.read)
                .await
                .map_err(q("backlog"))?;
            *slot = uint(row.try_get("n").map_err(q("backlog"))?);
        }
        Ok((uint(open), counts[0], counts[1], counts[2]))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

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
    .bind(hash_key(hash))
    .bind(device)
    .bind(i64::from(idempotent))
    .bind(i64::from(duplicate))
    .bind(int(now_ms))
    .execute(&mut **tx)
    .await
    .map_err(q("record submission"))?;
    sqlx::query("INSERT INTO tx_devices (tx_hash, device) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(hash_key(hash))
        .bind(device)
        .execute(&mut **tx)
        .await
        .map_err(q("record device"))?;
    Ok(())
}

async fn insert_job(
    tx: &mut Tx<'_>,
    hash: &str,
    chain_id: u64,
    reason: &str,
    now_ms: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO broadcast_jobs (tx_hash, chain_id, reason, next_attempt_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(hash)
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

#[expect(
    clippy::too_many_arguments,
    reason = "one conditional UPDATE with its values"
)]
async fn update_inclusion(
    tx: &mut Tx<'_>,
    record: &TxRecord,
    old_block: &str,
    status: TxStatus,
    inclusion: &Inclusion,
    revert_reason: Option<String>,
    reorgs: u64,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let changed = sqlx::query(
        "UPDATE transactions SET status = $1, block_number = $2, block_hash = $3, gas_used = $4, \
         success = $5, revert_reason = $6, reorgs = reorgs + $7, updated_at_ms = $8 \
         WHERE tx_hash = $9 AND status = $10 AND COALESCE(block_hash, '') = $11",
    )
    .bind(status.as_str())
    .bind(int(inclusion.block_number))
    .bind(hash_key(inclusion.block_hash))
    .bind(int(inclusion.gas_used))
    .bind(i64::from(inclusion.success))
    .bind(revert_reason)
    .bind(int(reorgs))
    .bind(int(now_ms))
    .bind(hash_key(record.tx_hash))
    .bind(record.status.as_str())
    .bind(old_block)
    .execute(&mut **tx)
    .await
    .map_err(q("record inclusion"))?
    .rows_affected();
    Ok(changed == 1)
}

/// One tracker decision with what it needs: the record as read, the step, and the revert
/// reason of a newly failed transaction.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// The transaction as read at the start of the tick.
    pub record: &'a TxRecord,
    /// The decision.
    pub step: crate::core::Step,
    /// Revert reason for a confirmed, reverted transaction.
    pub revert_reason: Option<String>,
}

async fn apply_in(
    tx: &mut Tx<'_>,
    decision: &Decision<'_>,
    confirmations: u64,
    now_ms: u64,
) -> Result<Applied, StoreError> {
    use crate::core::Step;
    let record = decision.record;
    let revert_reason = decision.revert_reason.clone();
    let step = &decision.step;
    let mut applied = Applied::default();
    let old_block = record
        .inclusion
        .map(|i| hash_key(i.block_hash))
        .unwrap_or_default();
    match *step {
        Step::Wait | Step::CheckPool => {}
        Step::Include {
            inclusion,
            reorged_from,
            notify_reorg,
            confirm,
        } => {
            let status = match (confirm, inclusion.success) {
                (false, _) => TxStatus::Included,
                (true, true) => TxStatus::Mined,
                (true, false) => TxStatus::Failed,
            };
            applied.changed = update_inclusion(
                tx,
                record,
                &old_block,
                status,
                &inclusion,
                if confirm { revert_reason.clone() } else { None },
                u64::from(reorged_from.is_some()),
                now_ms,
            )
            .await?;
            if applied.changed {
                if let (Some(from), true) = (reorged_from, notify_reorg) {
                    let event = make_event(
                        record,
                        EventStatus::Reorged,
                        Some(&from),
                        None,
                        None,
                        confirmations,
                        now_ms,
                    );
                    applied.notifications +=
                        insert_notifications(tx, record, &event, now_ms).await?;
                }
                if confirm {
                    let status = if inclusion.success {
                        EventStatus::Mined
                    } else {
                        EventStatus::Failed
                    };
                    let event = make_event(
                        record,
                        status,
                        Some(&inclusion),
                        revert_reason,
                        None,
                        confirmations,
                        now_ms,
                    );
                    applied.notifications +=
                        insert_notifications(tx, record, &event, now_ms).await?;
                }
            }
        }
        Step::Confirm => {
            let Some(inclusion) = record.inclusion else {
                return Ok(applied);
            };
            let status = if inclusion.success {
                TxStatus::Mined
            } else {
                TxStatus::Failed
            };
            applied.changed = update_inclusion(
                tx,
                record,
                &old_block,
                status,
                &inclusion,
                revert_reason.clone(),
                0,
                now_ms,
            )
            .await?;
            if applied.changed {
                let kind = if inclusion.success {
                    EventStatus::Mined
                } else {
                    EventStatus::Failed
                };
                let event = make_event(
                    record,
                    kind,
                    Some(&inclusion),
                    revert_reason,
                    None,
                    confirmations,
                    now_ms,
                );
                applied.notifications += insert_notifications(tx, record, &event, now_ms).await?;
            }
        }
        Step::Finalize => {
            applied.changed = sqlx::query(
                "UPDATE transactions SET finalized = 1, updated_at_ms = $1 \
                 WHERE tx_hash = $2 AND status = $3 AND block_hash = $4 AND finalized = 0",
            )
            .bind(int(now_ms))
            .bind(hash_key(record.tx_hash))
            .bind(record.status.as_str())
            .bind(&old_block)
            .execute(&mut **tx)
            .await
            .map_err(q("finalize"))?
            .rows_affected()
                == 1;
        }
        Step::Reorged { from, notify } => {
            applied.changed = sqlx::query(
                "UPDATE transactions SET status = 'pending', block_number = NULL, block_hash = NULL, \
                 gas_used = NULL, success = NULL, revert_reason = NULL, reorgs = reorgs + 1, \
                 last_activity_ms = $1, updated_at_ms = $1 \
                 WHERE tx_hash = $2 AND status = $3 AND block_hash = $4",
            )
            .bind(int(now_ms))
            .bind(hash_key(record.tx_hash))
            .bind(record.status.as_str())
            .bind(hash_key(from.block_hash))
            .execute(&mut **tx)
            .await
            .map_err(q("reorg"))?
            .rows_affected()
                == 1;
            if applied.changed {
                insert_job(
                    tx,
                    &hash_key(record.tx_hash),
                    record.chain_id,
                    "reorged",
                    now_ms,
                )
                .await?;
                applied.rebroadcast = true;
                if notify {
                    let event = make_event(
                        record,
                        EventStatus::Reorged,
                        Some(&from),
                        None,
                        None,
                        confirmations,
                        now_ms,
                    );
                    applied.notifications +=
                        insert_notifications(tx, record, &event, now_ms).await?;
                }
            }
        }
    }
    Ok(applied)
}

async fn tx_in(tx: &mut Tx<'_>, hash: B256) -> Result<Option<TxRecord>, StoreError> {
    let row = sqlx::query(select_tx!("WHERE tx_hash = $1"))
        .bind(hash_key(hash))
        .fetch_optional(&mut **tx)
        .await
        .map_err(q("get transaction"))?;
    row.as_ref().map(tx_record).transpose()
}

fn make_event(
    record: &TxRecord,
    status: EventStatus,
    inclusion: Option<&Inclusion>,
    revert_reason: Option<String>,
    error: Option<String>,
    confirmations: u64,
    now_ms: u64,
) -> Event {
    let block_hash = inclusion.map(|i| i.block_hash);
    Event {
        event_id: event_id(record.chain_id, record.tx_hash, status, block_hash),
        tx_hash: record.tx_hash,
        chain_id: record.chain_id,
        status,
        block_number: inclusion.map(|i| i.block_number),
        block_hash,
        gas_used: inclusion.map(|i| i.gas_used),
        revert_reason,
        error,
        sender: record.sender,
        recipient: record.recipient,
        nonce: record.nonce,
        confirmations,
        emitted_at_ms: now_ms,
    }
}

/// Inserts one notification row per target of the rules of every device that sent the
/// transaction (seed ¶41-43); a target shared by several devices gets the event once.
async fn insert_notifications(
    tx: &mut Tx<'_>,
    record: &TxRecord,
    event: &Event,
    now_ms: u64,
) -> Result<usize, StoreError> {
    let rows = sqlx::query(
        "SELECT d.rules AS rules FROM tx_devices t JOIN devices d ON d.device = t.device \
         WHERE t.tx_hash = $1 ORDER BY d.device",
    )
    .bind(hash_key(record.tx_hash))
    .fetch_all(&mut **tx)
    .await
    .map_err(q("rules of devices"))?;
    let mut targets = std::collections::BTreeSet::new();
    for row in &rows {
        let text: String = row.try_get("rules").map_err(q("rules of devices"))?;
        let registration: Registration =
            serde_json::from_str(&text).map_err(|_| StoreError::Corrupt {
                what: "device rules",
                value: text.clone(),
            })?;
        targets.extend(registration.targets(record.recipient));
    }
    let payload = serde_json::to_string(event).unwrap_or_default();
    let mut created = 0;
    for target in targets {
        let secret = match &target {
            Target::Webhook { secret, .. } => Some(secret.clone()),
            Target::Account(_) => None,
        };
        created += sqlx::query(
            "INSERT INTO notifications (event_id, tx_hash, kind, channel, target, secret, payload, state, \
             next_attempt_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8) \
             ON CONFLICT (event_id, channel, target) DO NOTHING",
        )
        .bind(&event.event_id)
        .bind(hash_key(record.tx_hash))
        .bind(event.status.as_str())
        .bind(target.channel())
        .bind(target.key())
        .bind(secret)
        .bind(&payload)
        .bind(int(now_ms))
        .execute(&mut **tx)
        .await
        .map_err(q("insert notification"))?
        .rows_affected();
    }
    Ok(usize::try_from(created).unwrap_or(usize::MAX))
}

fn tx_record(row: &AnyRow) -> Result<TxRecord, StoreError> {
    let get_err = q("read transaction");
    let read = || -> Result<_, sqlx::Error> {
        Ok((
            row.try_get::<String, _>("tx_hash")?,
            row.try_get::<i64, _>("chain_id")?,
            row.try_get::<String, _>("sender")?,
            row.try_get::<Option<String>, _>("recipient")?,
            row.try_get::<i64, _>("nonce")?,
            row.try_get::<String, _>("status")?,
            row.try_get::<i64, _>("finalized")?,
            (
                row.try_get::<i64, _>("accepted_at_ms")?,
                row.try_get::<i64, _>("last_activity_ms")?,
                row.try_get::<i64, _>("broadcast_count")?,
                row.try_get::<i64, _>("nonce_conflicts")?,
                row.try_get::<i64, _>("reorgs")?,
            ),
            (
                row.try_get::<Option<i64>, _>("block_number")?,
                row.try_get::<Option<String>, _>("block_hash")?,
                row.try_get::<Option<i64>, _>("gas_used")?,
                row.try_get::<Option<i64>, _>("success")?,
            ),
            row.try_get::<Option<String>, _>("revert_reason")?,
            row.try_get::<Option<String>, _>("error")?,
        ))
    };
    let (
        hash,
        chain_id,
        sender,
        recipient,
        nonce,
        status,
        finalized,
        counters,
        block,
        revert_reason,
        error,
    ) = read().map_err(get_err)?;
    let (accepted_at, last_activity, broadcasts, conflicts, reorgs) = counters;
    let inclusion = match block {
        (Some(number), Some(hash), Some(gas), Some(success)) => Some(Inclusion {
            block_number: uint(number),
            block_hash: parse("block hash", &hash)?,
            gas_used: uint(gas),
            success: success == 1,
        }),
        _ => None,
    };
    Ok(TxRecord {
        tx_hash: parse("tx hash", &hash)?,
        chain_id: uint(chain_id),
        sender: parse("sender", &sender)?,
        recipient: recipient.map(|r| parse("recipient", &r)).transpose()?,
        nonce: uint(nonce),
        status: status.parse()?,
        finalized: finalized == 1,
        accepted_at_ms: uint(accepted_at),
        last_activity_ms: uint(last_activity),
        broadcast_count: uint(broadcasts),
        nonce_conflicts: u32::try_from(conflicts).unwrap_or(u32::MAX),
        reorgs: uint(reorgs),
        inclusion,
        revert_reason,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Step;
    use crate::load::{Wallet, transfer};
    use crate::rules::Receiver;
    use alloy::primitives::U256;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url: SafeUrl = format!("sqlite://{}", dir.path().join("t.db").display())
            .parse()
            .unwrap();
        let store = Store::open(&url, 1).await.unwrap();
        (dir, store)
    }

    fn signed(nonce: u64) -> SignedTx {
        let alice = Wallet::from_seed([9; 32]).unwrap();
        let raw = transfer(
            &alice,
            31337,
            nonce,
            Address::repeat_byte(7),
            U256::from(1),
            21_000,
        )
        .unwrap();
        crate::validate::check_transaction(
            &format!("0x{}", hex::encode(&raw)),
            alice.address(),
            31337,
            true,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn admission_claims_and_leases() {
        let (_dir, store) = store().await;
        let tx = signed(0);
        let window = Duration::from_secs(60);
        assert_eq!(
            store.submit(&tx, "d", true, 1_000, window).await.unwrap(),
            Admission::New
        );
        assert_eq!(
            store.submit(&tx, "d", true, 2_000, window).await.unwrap(),
            Admission::Duplicate
        );
        assert_eq!(
            store.submit(&tx, "e", false, 3_000, window).await.unwrap(),
            Admission::Resend
        );
        assert_eq!(store.accepted_at(tx.hash).await.unwrap(), Some(1_000));
        assert_eq!(store.devices_of(tx.hash).await.unwrap(), ["d", "e"]);
        let lease = Duration::from_secs(10);
        let jobs = store.claim_broadcasts("i", 5_000, lease, 10).await.unwrap();
        assert_eq!(jobs.len(), 2);
        assert!(jobs.iter().all(|j| j.attempts == 1));
        assert!(
            store
                .claim_broadcasts("i", 6_000, lease, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // After the lease, another worker takes them over; a restart releases at once.
        let again = store
            .claim_broadcasts("j", 15_001, lease, 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|j| j.attempts == 2));
        assert_eq!(store.release_claims("j").await.unwrap(), 2);
        assert_eq!(
            store
                .claim_broadcasts("k", 15_002, lease, 1)
                .await
                .unwrap()
                .len(),
            1
        );
        // Outside the window an idempotent submission is sent again and restarts the window.
        assert_eq!(
            store.submit(&tx, "d", true, 70_000, window).await.unwrap(),
            Admission::Resend
        );
        assert_eq!(store.accepted_at(tx.hash).await.unwrap(), Some(70_000));
    }

    #[tokio::test]
    async fn results_go_through_the_outbox() {
        let (_dir, store) = store().await;
        let registration = Registration {
            fixed: vec![Receiver {
                url: "http://127.0.0.1:9/hook".parse().unwrap(),
                secret: svckit::redact::Secret::new("0123456789abcdef"),
            }],
            ..Registration::default()
        };
        store.put_device("d", &registration, 0).await.unwrap();
        let tx = signed(0);
        store
            .submit(&tx, "d", true, 1_000, Duration::from_secs(60))
            .await
            .unwrap();
        let job = store
            .claim_broadcasts("i", 1_000, Duration::from_secs(10), 1)
            .await
            .unwrap()
            .remove(0);
        store
            .finish_broadcast(&job, &BroadcastOutcome::Sent, 1_100)
            .await
            .unwrap();
        let record = store.transaction(tx.hash).await.unwrap().unwrap();
        assert_eq!(record.status, TxStatus::Pending);
        assert_eq!(record.broadcast_count, 1);
        let inclusion = Inclusion {
            block_number: 5,
            block_hash: B256::repeat_byte(5),
            gas_used: 21_000,
            success: true,
        };
        let step = Step::Include {
            inclusion,
            reorged_from: None,
            notify_reorg: false,
            confirm: true,
        };
        let applied = store
            .apply_step(&record, &step, None, 1, 2_000)
            .await
            .unwrap();
        assert!(applied.changed);
        assert_eq!(applied.notifications, 1);
        // The same decision from a stale read (another instance) changes nothing.
        let stale = store
            .apply_step(&record, &step, None, 1, 2_000)
            .await
            .unwrap();
        assert_eq!(stale, Applied::default());
        let webhooks = store
            .claim_webhooks("i", 2_000, Duration::from_secs(10), 10)
            .await
            .unwrap();
        assert_eq!(webhooks.len(), 1);
        let event: Event = serde_json::from_str(&webhooks[0].payload).unwrap();
        assert_eq!(event.status, EventStatus::Mined);
        assert_eq!(event.block_number, Some(5));
        store
            .delivery_failed(webhooks[0].id, None, "HTTP 500")
            .await
            .unwrap();
        let dead = store.notifications(None, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(store.replay(Some(dead[0].id), 3_000).await.unwrap(), 1);
        let retried = store
            .claim_webhooks("i", 3_000, Duration::from_secs(10), 10)
            .await
            .unwrap();
        assert_eq!(retried[0].attempts, 1);
        store.delivered(retried[0].id, 3_100).await.unwrap();
        assert_eq!(store.backlog().await.unwrap(), (0, 0, 1, 0));
        // A reorg puts it back to pending with a rebroadcast job.
        let mined = store.transaction(tx.hash).await.unwrap().unwrap();
        let reorg = Step::Reorged {
            from: inclusion,
            notify: true,
        };
        let applied = store
            .apply_step(&mined, &reorg, None, 1, 4_000)
            .await
            .unwrap();
        assert!(applied.changed && applied.rebroadcast);
        assert_eq!(applied.notifications, 1);
        let record = store.transaction(tx.hash).await.unwrap().unwrap();
        assert_eq!((record.status, record.reorgs), (TxStatus::Pending, 1));
        assert_eq!(store.backlog().await.unwrap().0, 1);
    }
}
