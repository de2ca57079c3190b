//! Read-only SQL under limits (issue 13 item 6): the engine behind `POST /sql` and `dataloop sql`.
//!
//! Every query is planned first and the logical plan is checked with DataFusion's
//! [`SQLOptions::verify_plan`] with DDL, DML and statements disallowed, so `CREATE EXTERNAL TABLE`,
//! `COPY ... TO`, `INSERT` and `SET` are refused before anything runs ([`Error::SqlRefused`]).
//! Accepted plans run on a thread pool of their own (so a long query never starves the HTTP
//! server's threads), with a wall-clock limit after which the query is cancelled
//! ([`Error::QueryTimeout`]), a memory pool shared by all running queries and no spilling to
//! disk ([`Error::QueryMemory`]), a bound on the rows returned ([`Error::TooManyRows`]) and on
//! the queries running at once ([`Error::QueryBusy`]).

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use deltalake::datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use deltalake::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use tokio::sync::Semaphore;

use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::olap::{self, Olap};
use crate::warehouse::Warehouse;

/// Longest accepted SQL text, in bytes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;
/// Threads of the query pool.
const QUERY_THREADS: usize = 2;

/// Limits of every query, from [`ServeConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Wall-clock limit of one query.
    pub timeout: Duration,
    /// Memory pool of all running queries \[bytes\].
    pub memory_bytes: usize,
    /// Rows a result may hold.
    pub max_rows: usize,
    /// Queries running at once.
    pub max_concurrent: usize,
}

impl QueryLimits {
    /// The limits `config` names (zero counts become 1).
    pub fn from_config(config: &ServeConfig) -> Self {
        Self {
            timeout: Duration::from_millis(config.query_timeout_ms.max(1)),
            memory_bytes: usize::try_from(config.query_memory_mib.max(1).saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            max_rows: config.query_max_rows.max(1),
            max_concurrent: config.max_concurrent_queries.max(1),
        }
    }
}

/// DataFusion's options for read-only SQL: no DDL, no DML (which includes `COPY`), no
/// statements (`SET`, transactions).
pub fn read_only_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The query engine: a DataFusion runtime with a bounded memory pool and no disk manager, a
/// dedicated thread pool and a concurrency bound.
pub struct QueryEngine {
    limits: QueryLimits,
    runtime: Arc<RuntimeEnv>,
    pool: Option<tokio::runtime::Runtime>,
    permits: Semaphore,
}

impl fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for QueryEngine {
    fn drop(&mut self) {
        // Dropping a runtime blocks on its threads, which is not allowed inside async code.
        if let Some(pool) = self.pool.take() {
            pool.shutdown_background();
        }
    }
}

impl QueryEngine {
    /// An engine with `limits`.
    ///
    /// # Errors
    /// [`Error::QueryRuntime`] when the thread pool cannot start, [`Error::Query`] when the
    /// DataFusion runtime cannot be built.
    pub fn new(limits: QueryLimits) -> Result<Self> {
        let pool = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(QUERY_THREADS)
            .thread_name("dataloop-sql")
            .enable_all()
            .build()
            .map_err(|e| Error::QueryRuntime(e.to_string()))?;
        let memory = TrackConsumersPool::new(
            GreedyMemoryPool::new(limits.memory_bytes),
            NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        );
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(memory))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?;
        Ok(Self {
            limits,
            runtime,
            pool: Some(pool),
            permits: Semaphore::new(limits.max_concurrent),
        })
    }

    /// The limits.
    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// Runs the read-only query `sql` over `warehouse` and `olap` and collects its rows.
    ///
    /// # Errors
    /// [`Error::SqlRefused`] for anything but a single read-only query (checked before it runs),
    /// [`Error::Query`] for syntax, planning and execution errors, [`Error::QueryBusy`],
    /// [`Error::QueryTimeout`], [`Error::QueryMemory`], [`Error::TooManyRows`].
    pub async fn run(
        &self,
        warehouse: &Warehouse,
        olap: &Olap,
        sql: &str,
    ) -> Result<Vec<RecordBatch>> {
        if sql.len() > MAX_SQL_BYTES {
            return Err(Error::SqlRefused {
                reason: format!(
                    "the query is {} bytes long (limit {MAX_SQL_BYTES})",
                    sql.len()
                ),
            });
        }
        let _permit = self.permits.try_acquire().map_err(|_| Error::QueryBusy {
            limit: self.limits.max_concurrent,
        })?;
        let ctx = SessionContext::new_with_config_rt(olap::session_config(), self.runtime.clone());
        warehouse.register(&ctx).await?;
        olap.register(&ctx).await?;
        let plan = ctx.state().create_logical_plan(sql).await?;
        read_only_options()
            .verify_plan(&plan)
            .map_err(|e| Error::SqlRefused {
                reason: e.strip_backtrace(),
            })?;
        let frame = ctx.execute_logical_plan(plan).await?;
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| Error::QueryRuntime("the query pool is shut down".to_owned()))?;
        let task = pool.spawn(collect_bounded(frame, self.limits.max_rows));
        let abort = task.abort_handle();
        let Ok(joined) = tokio::time::timeout(self.limits.timeout, task).await else {
            abort.abort();
            tracing::warn!(
                limit_ms = self.limits.timeout.as_millis(),
                "query timed out; cancelled"
            );
            return Err(Error::QueryTimeout {
                limit_ms: u64::try_from(self.limits.timeout.as_millis()).unwrap_or(u64::MAX),
            });
        };
        let result = joined.map_err(|e| Error::QueryRuntime(e.to_string()))?;
        result.map_err(|e| self.classify(e))
    }

    fn classify(&self, error: Error) -> Error {
        match error {
            Error::Query(e) => match e.find_root() {
                DataFusionError::ResourcesExhausted(detail) => Error::QueryMemory {
                    limit_mib: (self.limits.memory_bytes >> 20) as u64,
                    detail: detail.clone(),
                },
                _ => Error::Query(e),
            },
            other => other,
        }
    }
}

/// Collects at most `max_rows + 1` rows of `frame` (the limit is pushed into the plan, so a
/// large result stops early) and fails when more than `max_rows` arrived.
async fn collect_bounded(frame: DataFrame, max_rows: usize) -> Result<Vec<RecordBatch>> {
    let batches = frame
        .limit(0, Some(max_rows.saturating_add(1)))?
        .collect()
        .await?;
    if batches.iter().map(RecordBatch::num_rows).sum::<usize>() > max_rows {
        return Err(Error::TooManyRows { limit: max_rows });
    }
    Ok(batches)
}
