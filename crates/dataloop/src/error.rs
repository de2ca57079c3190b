//! Typed errors of the library (style.md 2.3). Per-file and per-row problems found while
//! ingesting are not errors of the whole batch: they become [`crate::reader::Rejection`]s and the
//! rest of the batch is kept (issue item 1).

use std::path::PathBuf;

use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;
use deltalake::parquet::errors::ParquetError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a reader could not read a log file (the whole file is then rejected).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A NumPy `.npy` file has a malformed header, an unsupported dtype or a short body.
    #[error("`{path}` is not a readable NumPy array: {reason}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An array or table does not have the shape or columns the format requires.
    #[error("`{path}` has an unexpected layout: {reason}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// What was expected and found.
        reason: String,
    },
    /// A Parquet file could not be decoded.
    #[error("`{path}` is not a readable Parquet file")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: ParquetError,
    },
    /// An Arrow IPC (Feather v2) file could not be decoded.
    #[error("`{path}` is not a readable Arrow IPC / Feather file")]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: ArrowError,
    },
}

impl ReadError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Io { path, .. }
            | Self::Npy { path, .. }
            | Self::Layout { path, .. }
            | Self::Parquet { path, .. }
            | Self::Arrow { path, .. } => path,
        }
    }
}

/// Errors of the stores, triggers, training and registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A path given as input is neither an AV2 sensor log directory, an AV2 motion-forecasting
    /// scenario, a comma2k19 segment nor a directory holding such logs.
    #[error("`{0}` holds no comma2k19 segment, AV2 scenario or AV2 sensor log")]
    UnknownInput(PathBuf),
    /// A local file or directory of the data directory could not be read or written.
    #[error("i/o on `{path}` failed")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The Delta Lake warehouse table failed (open, write or commit).
    #[error("warehouse table: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// A DataFusion query failed (syntax, unknown column, execution).
    #[error("query failed: {0}")]
    Query(#[from] DataFusionError),
    /// A SQL query is not read-only (DDL such as `CREATE EXTERNAL TABLE`, DML such as `INSERT` or
    /// `COPY ... TO`, statements such as `SET`), more than one statement, or too long.
    #[error(
        "query refused: only read-only queries (SELECT, EXPLAIN, SHOW, DESCRIBE) are allowed: {reason}"
    )]
    SqlRefused {
        /// What DataFusion's plan check (or the length check) found.
        reason: String,
    },
    /// A SQL query ran longer than `serve.query_timeout_ms` and was cancelled.
    #[error("query cancelled after the {limit_ms} ms limit (serve.query_timeout_ms)")]
    QueryTimeout {
        /// The limit \[ms\].
        limit_ms: u64,
    },
    /// A SQL query needed more memory than the query memory pool holds.
    #[error("query exceeded the {limit_mib} MiB memory limit (serve.query_memory_mib): {detail}")]
    QueryMemory {
        /// The pool size \[MiB\].
        limit_mib: u64,
        /// DataFusion's message (which operator asked for how much).
        detail: String,
    },
    /// A SQL query's result has more rows than `serve.query_max_rows`.
    #[error("query result has more than {limit} rows (serve.query_max_rows); add a LIMIT")]
    TooManyRows {
        /// The limit.
        limit: usize,
    },
    /// `serve.max_concurrent_queries` queries are already running.
    #[error("{limit} queries are already running (serve.max_concurrent_queries); retry later")]
    QueryBusy {
        /// The limit.
        limit: usize,
    },
    /// The query thread pool could not be started or lost a query task.
    #[error("query runtime: {0}")]
    QueryRuntime(String),
    /// `serve` has no usable bearer token (missing, unreadable or too short).
    #[error("bearer token: {0}")]
    Token(String),
    /// Arrow encoding or decoding failed.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// Parquet encoding failed (OLAP store).
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    /// An `object_store` operation failed (file store, OLAP store, id index, S3).
    #[error("object store: {0}")]
    ObjectStore(#[from] deltalake::ObjectStoreError),
    /// A warehouse data file's `clip_id` index cannot be built.
    #[error("id index of `{path}`: {reason}")]
    IdIndex {
        /// The data file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A complex field (the `trajectory` list and its per-clip columns) is not the layout this
    /// crate writes ([`crate::trajectory`]).
    #[error("clip `{clip_id}` has a malformed trajectory field: {reason}")]
    Trajectory {
        /// The clip.
        clip_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A store location (`store_url`, `file_store_dir`) is not a local path or a usable
    /// `s3://bucket/prefix` URL, or an existing store has another layout.
    #[error("store `{location}`: {reason}")]
    Store {
        /// The location as configured.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A named mining rule does not exist in the configuration.
    #[error("no mining rule named `{0}` (see `[rules]` in the config)")]
    UnknownRule(String),
    /// A `--param` is malformed, unknown to the rule, missing, or not a safe literal.
    #[error("rule parameter `{name}`: {reason}")]
    BadParam {
        /// The parameter name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A mining predicate is not a single boolean expression over the OLAP table.
    #[error("mining predicate `{predicate}` rejected: {reason}")]
    BadPredicate {
        /// The predicate text.
        predicate: String,
        /// Why.
        reason: String,
    },
    /// Training had too few usable windows.
    #[error("training needs at least {needed} training windows, got {got}")]
    TooFewWindows {
        /// Minimum.
        needed: usize,
        /// Available.
        got: usize,
    },
    /// The ridge normal equations could not be solved, or a champion's statistics are malformed.
    #[error("model fit failed: {0}")]
    Fit(String),
    /// The pinned evaluation set cannot be chosen: it is a set of whole logs, so the warehouse
    /// needs at least two logs (one for training, one for evaluation).
    #[error(
        "cannot pin an evaluation set: the warehouse (version {warehouse_version}) holds {logs} log(s); whole logs are held out, so at least 2 are needed"
    )]
    NoEvalLogs {
        /// Warehouse version read.
        warehouse_version: i64,
        /// Distinct logs found.
        logs: usize,
    },
    /// The warehouse version the evaluation set is pinned to cannot be read (its commit is
    /// missing, unreadable, or the table has no such version).
    #[error("the pinned evaluation set's warehouse version {version} cannot be read: {reason}")]
    PinnedVersion {
        /// The pinned Delta version.
        version: i64,
        /// What failed.
        reason: String,
    },
    /// The windows read at the pinned version are not the pinned ones (their fingerprint, count
    /// or logs differ from the registry's record).
    #[error(
        "the evaluation set read at warehouse version {version} does not match its pin: {reason}"
    )]
    PinMismatch {
        /// The pinned Delta version.
        version: i64,
        /// Expected and found fingerprint or count.
        reason: String,
    },
    /// An HD map file parses as JSON but a lane is unusable.
    #[error("HD map `{path}`: {reason}")]
    Map {
        /// The map file.
        path: PathBuf,
        /// Which lane and what is wrong.
        reason: String,
    },
    /// An AV2 motion-forecasting scenario cannot be used for the AV2 protocol.
    #[error("AV2 scenario `{path}`: {reason}")]
    Scenario {
        /// The scenario file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No champion model exists yet (run a trigger first).
    #[error("no champion model in the registry at `{0}`; run a trigger first")]
    NoChampion(PathBuf),
    /// A registry or model file is not valid JSON of the expected shape.
    #[error("`{path}` is malformed")]
    Json {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The cron expression in the config does not parse.
    #[error("cron expression `{expression}` is invalid: {reason}")]
    Cron {
        /// The expression.
        expression: String,
        /// The parser's message.
        reason: String,
    },
    /// The champion named in `registry.json` has an artefact that cannot be read or decoded; a
    /// trigger refuses to judge a new model against anything else.
    #[error(
        "champion model v{version} (`{path}`) cannot be used: {reason}; restore it or set another champion in registry.json"
    )]
    CorruptChampion {
        /// The champion version.
        version: u32,
        /// Its artefact.
        path: PathBuf,
        /// What failed (the error chain).
        reason: String,
    },
    /// Another process held a data-directory lock longer than the wait limit.
    #[error("`{path}` is still locked by another process after {limit_s} s")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// The wait limit \[s\].
        limit_s: u64,
    },
    /// The metrics plot could not be drawn.
    #[error("plot `{path}`: {reason}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// The drawing error.
        reason: String,
    },
    /// `/mined/{version}` names a version the registry does not hold, or one whose trigger
    /// stored no ID list (a scheduled run exports everything).
    #[error("model version {version}: {reason}")]
    NoIdList {
        /// The version asked for.
        version: u32,
        /// Why there is no list to show.
        reason: &'static str,
    },
    /// A log given to `eval` yielded no windows.
    #[error("`{0}` yields no complete 5 s windows")]
    NoWindows(PathBuf),
}

impl Error {
    /// This error and its sources, joined by `: `.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
