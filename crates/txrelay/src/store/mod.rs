//! Durable state and the transactional outbox: SQLite by default, PostgreSQL by configuration
//! (through sqlx's `any` driver; the schema files in `migrations/` differ only in id columns).
//!
//! The store is split by what it holds:
//!
//! | module | tables | what |
//! |---|---|---|
//! | [`submissions`] | `transactions`, `submissions`, `tx_devices` | submissions (group-committed by [`group`]) |
//! | [`transactions`] | `transactions` | a transaction's life, tracker decisions |
//! | `inclusion` | `transactions` | a block's inclusion updates, one statement per batch |
//! | [`devices`] | `devices`, `device_accounts` | device registrations: rules and accounts |
//! | [`keys`] | `api_keys`, `siwe_nonces` | API keys (hashed) and single-use sign-in nonces |
//! | [`idempotency`] | `idempotency_keys` | first answers of `Idempotency-Key` requests |
//! | [`jobs`] | `broadcast_jobs` | the outbox of sends to a node |
//! | [`notifications`] | `notifications` | the outbox of results for receivers, dead letters |
//! | [`outbox`] | `notifications` | one block's notification rows, written together |
//! | [`overdue`] | `transactions` | late transactions: lowest per sender, lifetime, outcomes |
//! | `params` | - | placeholders of statements built at run time (`?` on SQLite) |
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
//! Rows are read into typed records ([`TxRecord`], [`BroadcastJob`], ...) through
//! `sqlx::FromRow` and the column codec in [`codec`].

mod codec;
pub mod devices;
pub mod gauges;
pub mod group;
pub mod idempotency;
mod inclusion;
pub mod jobs;
pub mod keys;
pub mod notifications;
pub mod outbox;
pub mod overdue;
mod params;
pub mod retention;
pub mod submissions;
pub mod transactions;

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlSafeStr};
use svckit::redact::SafeUrl;
use tracing::info;

use crate::error::StoreError;

pub use gauges::Backlog;
pub use group::{GroupCommit, GroupSettings, HandedJobs, Handoff, QueueError};
pub use jobs::{BroadcastFacts, BroadcastJob, BroadcastOutcome};
pub use notifications::{AccountEvent, DeliveryOutcome, NotificationRecord, WebhookJob};
pub use outbox::Lease;
pub use retention::{Cutoffs, Purged};
pub use submissions::Submission;
pub use transactions::{Applied, Decision, TxRecord, TxStatus};

/// The database kind behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (one writer).
    Sqlite,
    /// PostgreSQL server (several instances may share it).
    Postgres,
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
    /// Database transactions committed on the writer pool (`txrelay_db_commits_total`).
    commits: Counter,
    /// SQLite: one connection that only checkpoints the write-ahead log ([`Self::checkpoint`]),
    /// so the writer's commits never copy it back into the database file themselves.
    wal: Option<AnyPool>,
    /// Checkpoints that found a log to copy (`txrelay_db_wal_checkpoints_total`).
    checkpoints: Counter,
}

/// What one `PRAGMA wal_checkpoint(PASSIVE)` did ([`Store::checkpoint`]; SQLite's
/// documentation of that pragma names the three values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCheckpoint {
    /// Whether the checkpoint could not run to completion (another checkpoint was running).
    pub busy: bool,
    /// Frames in the write-ahead log.
    pub log_frames: i64,
    /// Frames of the log now copied into the database file.
    pub checkpointed_frames: i64,
}

/// Write-ahead-log pages past which the SQLite writer checkpoints by itself: a backstop 10x
/// SQLite's default of 1,000, reached only when [`Store::checkpoint`] is not called (its
/// worker stopped or fell behind), so the log stays bounded (about 40 MB at 4 KiB pages).
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Page cache of the SQLite writer connection, KiB (SQLite's default is 2,000 KiB, which
/// at 1,000 tx/s makes most B-tree pages a read from the operating system's cache).
pub const WRITER_CACHE_KIB: u32 = 65_536;

/// Page cache of each of the four SQLite read connections, KiB.
pub const READER_CACHE_KIB: u32 = 16_384;

/// The migrations, in order: `(version, name, SQLite text, PostgreSQL text)`.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "outbox",
        include_str!("../../migrations/sqlite/0001_outbox.sql"),
        include_str!("../../migrations/postgres/0001_outbox.sql"),
    ),
    (
        2,
        "v2",
        include_str!("../../migrations/sqlite/0002_v2.sql"),
        include_str!("../../migrations/postgres/0002_v2.sql"),
    ),
    (
        3,
        "open_sender",
        include_str!("../../migrations/sqlite/0003_open_sender.sql"),
        include_str!("../../migrations/postgres/0003_open_sender.sql"),
    ),
];

impl Store {
    /// Opens (creating a missing SQLite file) and migrates the database at `url`; PostgreSQL
    /// gets a pool of `max_connections`, SQLite one writer connection in WAL mode, four
    /// read-only ones and one for [`Self::checkpoint`] (page caches at most
    /// [`WRITER_CACHE_KIB`] + 4 x [`READER_CACHE_KIB`], 128 MiB).
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
        let connect_error = |source| StoreError::Connect {
            url: url.to_string(),
            source,
        };
        let options = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            let backstop =
                                format!("PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}");
                            conn.execute(sqlx::AssertSqlSafe(backstop)).await?;
                            let cache = format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}");
                            conn.execute(sqlx::AssertSqlSafe(cache)).await?;
                            conn.execute("PRAGMA temp_store = MEMORY").await?;
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
            .map_err(connect_error)?;
        let read = match backend {
            Backend::Postgres => pool.clone(),
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA query_only = 1").await?;
                        let cache = format!("PRAGMA cache_size = -{READER_CACHE_KIB}");
                        conn.execute(sqlx::AssertSqlSafe(cache)).await?;
                        Ok(())
                    })
                })
                .acquire_timeout(Duration::from_secs(30))
                .connect_lazy(&text)
                .map_err(connect_error)?,
        };
        let wal = match backend {
            Backend::Sqlite if text.contains(":memory:") => None,
            Backend::Postgres => None,
            Backend::Sqlite => Some(
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            Ok(())
                        })
                    })
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_lazy(&text)
                    .map_err(connect_error)?,
            ),
        };
        let store = Self {
            pool,
            read,
            backend,
            commits: Counter::default(),
            wal,
            checkpoints: Counter::default(),
        };
        store.migrate().await?;
        info!(database = %url, backend = ?backend, "database ready");
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sqlite, postgres)| {
                let sql = match self.backend {
                    Backend::Sqlite => *sqlite,
                    Backend::Postgres => *postgres,
                };
                Migration::new(
                    *version,
                    (*name).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// The count of database transactions this store committed on its writer pool (clones
    /// share it): registered as `txrelay_db_commits_total`, and what shows that submissions
    /// are group-committed (far fewer commits than submissions).
    pub fn commits(&self) -> Counter {
        self.commits.clone()
    }

    /// Commits `tx` and counts it in [`Self::commits`].
    async fn commit(&self, tx: Tx<'_>) -> Result<(), StoreError> {
        tx.commit().await.map_err(q("commit"))?;
        self.commits.inc();
        Ok(())
    }

    /// SQLite: copies the committed part of the write-ahead log into the database file
    /// (`PRAGMA wal_checkpoint(PASSIVE)`) on its own connection, beside the writer and the
    /// readers, neither of which it waits for; with it called every few hundred
    /// milliseconds the writer's commits never pay for a checkpoint (the log is written from
    /// its start again once it is all copied and no reader still reads it: at 1,000 tx/s
    /// every 1,000-10,000 pages, [`WAL_AUTOCHECKPOINT_PAGES`] being the writer's own
    /// backstop). `None` on PostgreSQL, which manages its own log.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn checkpoint(&self) -> Result<Option<WalCheckpoint>, StoreError> {
        let Some(wal) = &self.wal else {
            return Ok(None);
        };
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(wal)
            .await
            .map_err(q("wal checkpoint"))?;
        let value = |index: usize| -> Result<i64, StoreError> {
            row.try_get::<i64, _>(index).map_err(q("wal checkpoint"))
        };
        let done = WalCheckpoint {
            busy: value(0)? != 0,
            log_frames: value(1)?,
            checkpointed_frames: value(2)?,
        };
        if done.log_frames > 0 {
            self.checkpoints.inc();
        }
        Ok(Some(done))
    }

    /// The count of [`Self::checkpoint`] calls that found a write-ahead log to copy (clones
    /// share it): registered as `txrelay_db_wal_checkpoints_total`.
    pub fn checkpoints(&self) -> Counter {
        self.checkpoints.clone()
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The statement for this backend from a `(SQLite, PostgreSQL)` pair.
    fn pick(&self, sql: (&'static str, &'static str)) -> &'static str {
        match self.backend {
            Backend::Sqlite => sql.0,
            Backend::Postgres => sql.1,
        }
    }

    /// Answers when the writer connection runs a trivial statement (readiness).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(q("ping"))?;
        Ok(())
    }

    /// Closes the pools (waits for connections to return).
    pub async fn close(&self) {
        self.read.close().await;
        self.pool.close().await;
    }

    /// Releases the leases `instance` held before a restart (SQLite: all leases, it has one
    /// writer), on broadcast jobs, notifications and WebSocket sessions (`{instance}/...`).
    /// Returns the number of rows released.
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
             WHERE state = 'pending' AND locked_by IS NOT NULL \
             AND ($1 = 1 OR locked_by = $2 OR locked_by LIKE $3)",
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
}

impl Store {
    /// Runs a claim statement from [`claim_sql`]: up to `limit` due rows for `instance`,
    /// leased until `now_ms + lease`, sorted by id.
    async fn claim<T>(
        &self,
        sql: (&'static str, &'static str),
        op: &'static str,
        (instance, now_ms, lease, limit): (&str, u64, Duration, u32),
    ) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin + HasId,
    {
        let mut rows: Vec<T> = sqlx::query_as(self.pick(sql))
            .bind(instance)
            .bind(codec::int(now_ms.saturating_add(millis(lease))))
            .bind(codec::int(now_ms))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(q(op))?;
        rows.sort_by_key(HasId::id);
        Ok(rows)
    }
}

/// A claimed row's id (claims answer in id order).
trait HasId {
    fn id(&self) -> i64;
}

/// For a `sqlite://PATH` URL: creates a missing database file with mode 0600 (SQLite gives
/// its `-wal` and `-shm` files the database file's mode), and narrows a looser mode of an
/// existing one to 0600. Other URLs: nothing.
///
/// # Errors
/// [`StoreError::File`] when the file cannot be created or its mode set.
pub fn prepare_sqlite_file(url: &SafeUrl) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let text = url.expose().as_str();
    let Some(rest) = text.strip_prefix("sqlite://") else {
        return Ok(());
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    let path = std::path::Path::new(path);
    let file_error = |source| StoreError::File {
        path: path.display().to_string(),
        source,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = fs_err::metadata(path)
                .map_err(|e| file_error(std::io::Error::other(e)))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "database file readable by others; setting mode 0600");
                fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| file_error(std::io::Error::other(e)))?;
            }
            Ok(())
        }
        Err(error) => Err(file_error(error)),
    }
}

/// A database transaction on the writer pool.
type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Maps a driver error to [`StoreError::Query`] naming the operation.
fn q(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

/// Whole milliseconds of `duration`, saturating.
fn millis(duration: Duration) -> u64 {
    millis_of(duration)
}

/// Whole milliseconds of `duration`, saturating (for callers computing Unix-ms deadlines).
pub fn millis_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
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
use claim_sql;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wal_tests;
