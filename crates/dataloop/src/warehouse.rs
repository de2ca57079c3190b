//! The warehouse store (issue item 3; seed ¶34-¶35, ¶38): a Delta Lake table holding the
//! simple fields and the complex field (native columns: `present_index`, the lane columns and
//! `trajectory` as `List<Struct>`, see [`crate::trajectory`]; row layout in [`crate::rows`]),
//! partitioned by `ingest_date`, in a local directory or under an `s3://` prefix
//! ([`crate::store`]). One ingest batch is one atomic Delta commit: the Parquet data files are
//! written first and only the commit makes them visible, so an ingest interrupted before its
//! commit leaves the previous table version intact (orphan files are ignored by readers).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use deltalake::datafusion::prelude::{SessionContext, col, lit};
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow as _, TryIntoKernel as _};
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, StructType};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder};
use url::Url;

use crate::error::{Error, Result};
use crate::store::Location;
use crate::trajectory;

/// Name of the partition column.
pub const PARTITION_COLUMN: &str = "ingest_date";
/// Table name used in SQL.
pub const TABLE: &str = "warehouse";

pub use crate::rows::{
    SIMPLE_COLUMNS, StoredClip, decode_rows, simple_batch, simple_schema, warehouse_batch,
    warehouse_schema,
};

/// Hooks into [`Warehouse::append`] between writing data files and committing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BeforeCommit {
    /// Commit right away.
    #[default]
    Proceed,
    /// Log `data files written; pausing before commit` and wait forever: the commit never
    /// happens (fault-injection aid for crash-consistency tests, which kill the process here).
    HangBeforeCommit,
}

/// The Delta Lake table.
#[derive(Debug)]
pub struct Warehouse {
    table: DeltaTable,
    location: Location,
    /// The take index of the last version taken from (local tables; [`crate::take_cache`]).
    take_cache: crate::take_cache::TakeCache,
}

impl Warehouse {
    /// Opens the table in the local directory `dir`, creating an empty partitioned table
    /// (version 0) when absent.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created, [`Error::Delta`] when the log is
    /// unreadable, [`Error::Store`] for a table of another layout.
    pub async fn open_or_create(dir: &Path) -> Result<Self> {
        Self::open_or_create_at(&Location::Local(dir.to_path_buf())).await
    }

    /// Opens the table at `location` (a local directory or `s3://` prefix), creating an empty
    /// partitioned table (version 0) when absent.
    ///
    /// # Errors
    /// [`Error::Io`] when a local directory cannot be created, [`Error::Delta`] when the log
    /// is unreadable or the store unreachable, [`Error::Store`] for a table of another layout.
    pub async fn open_or_create_at(location: &Location) -> Result<Self> {
        crate::store::register_s3_handlers();
        let location = location.prepare()?;
        let table = DeltaTable::try_from_url_with_storage_options(
            location.url()?,
            location.storage_options(),
        )
        .await?;
        let table = if table.version().is_some() {
            table
        } else {
            let schema: StructType = warehouse_schema().as_ref().try_into_kernel()?;
            table
                .create()
                .with_table_name("clips")
                .with_comment(
                    "dataloop clips: simple fields + trajectory (List<Struct<t_s, x_m, y_m, heading_rad>>)",
                )
                .with_columns(schema.fields().cloned())
                .with_partition_columns([PARTITION_COLUMN])
                .await?
        };
        Self::checked(table, location)
    }

    /// Opens an existing table in the local directory `dir` without creating one.
    ///
    /// # Errors
    /// [`Error::Delta`] when `dir` holds no Delta table; [`Error::Store`] for a table of
    /// another layout.
    pub async fn open(dir: &Path) -> Result<Self> {
        let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        Self::open_location(&Location::Local(dir)).await
    }

    /// Opens an existing table at `location` without creating one.
    ///
    /// # Errors
    /// [`Error::Delta`] when `location` holds no Delta table; [`Error::Store`] for a table of
    /// another layout.
    pub async fn open_location(location: &Location) -> Result<Self> {
        crate::store::register_s3_handlers();
        let table = DeltaTableBuilder::from_url(location.url()?)?
            .with_storage_options(location.storage_options())
            .load()
            .await?;
        Self::checked(table, location.clone())
    }

    /// Opens an existing table in the local directory `dir` at `version` (Delta time travel).
    ///
    /// # Errors
    /// As [`Warehouse::open_location_at`]; [`Error::Io`] when `dir` is not there.
    pub async fn open_at(dir: &Path, version: i64) -> Result<Self> {
        let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        Self::open_location_at(&Location::Local(dir), version).await
    }

    /// Opens an existing table at `location` at `version` (Delta time travel): the rows
    /// exactly as that commit left them, whatever was committed after it.
    ///
    /// # Errors
    /// [`Error::PinnedVersion`] when `version` is negative, the table has no such version, or a
    /// commit up to it is missing or unreadable.
    pub async fn open_location_at(location: &Location, version: i64) -> Result<Self> {
        crate::store::register_s3_handlers();
        let bad = |reason: String| Error::PinnedVersion { version, reason };
        let wanted = u64::try_from(version).map_err(|_| bad("negative version".to_owned()))?;
        let table = DeltaTableBuilder::from_url(location.url()?)
            .map_err(|e| bad(e.to_string()))?
            .with_storage_options(location.storage_options())
            .with_version(wanted)
            .load()
            .await
            .map_err(|e| bad(e.to_string()))?;
        if table.version() != Some(wanted) {
            return Err(bad(format!(
                "the table loaded version {:?}",
                table.version()
            )));
        }
        Self::checked(table, location.clone())
    }

    /// `table` when its schema is this build's ([`warehouse_schema`]); a table written by an
    /// older build (the trajectory as Arrow IPC bytes in a binary column) is refused.
    fn checked(table: DeltaTable, location: Location) -> Result<Self> {
        let schema: Schema = table.snapshot()?.schema().as_ref().try_into_arrow()?;
        let want = warehouse_schema();
        for f in want.fields() {
            let found = schema.field_with_name(f.name()).ok();
            if found.map(Field::data_type) != Some(f.data_type()) {
                return Err(Error::Store {
                    location: location.to_string(),
                    reason: format!(
                        "column `{}` is {} here, this build writes {} (a warehouse of an older layout: ingest into a new store)",
                        f.name(),
                        found.map_or_else(|| "missing".to_owned(), |g| g.data_type().to_string()),
                        f.data_type()
                    ),
                });
            }
        }
        Ok(Self {
            table,
            location,
            take_cache: crate::take_cache::TakeCache::default(),
        })
    }

    /// This handle with the take index cache of `other` (a handle of the same table), so a
    /// take on either reuses the version index the other loaded; the cache is keyed by version
    /// and data files, so the two handles may be at different versions.
    pub fn sharing_take_cache(mut self, other: &Self) -> Self {
        if self.location == other.location {
            self.take_cache = other.take_cache.clone();
        }
        self
    }

    /// Distinct `(source, log_id)` pairs in the loaded version, sorted.
    ///
    /// # Errors
    /// Query errors.
    pub async fn logs(&self) -> Result<Vec<(String, String)>> {
        let batches = self
            .sql("SELECT DISTINCT source, log_id FROM warehouse ORDER BY source, log_id")
            .await?
            .collect()
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let text = |i: usize| deltalake::arrow::compute::cast(b.column(i), &ArrowType::Utf8);
            let (sources, logs) = (text(0)?, text(1)?);
            let (sources, logs) = (sources.as_string::<i32>(), logs.as_string::<i32>());
            out.extend(
                (0..b.num_rows()).map(|i| (sources.value(i).to_owned(), logs.value(i).to_owned())),
            );
        }
        Ok(out)
    }

    /// `(clip_id, split, category, trajectory)` of every row of the logs `log_ids` in the loaded
    /// version, sorted by `clip_id` (the pinned evaluation set's read; decode with
    /// [`decode_rows`]).
    ///
    /// # Errors
    /// Query errors.
    pub async fn rows_of_logs(&self, log_ids: &[String]) -> Result<Vec<RecordBatch>> {
        if log_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = SessionContext::new();
        self.register(&ctx).await?;
        Ok(ctx
            .table(TABLE)
            .await?
            .filter(
                col("log_id").in_list(log_ids.iter().map(|l| lit(l.as_str())).collect(), false),
            )?
            .select_columns(&crate::take::TAKE_COLUMNS)?
            .sort(vec![col("clip_id").sort(true, false)])?
            .collect()
            .await?)
    }

    /// The table's location.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The table directory, `None` on S3.
    pub fn local_dir(&self) -> Option<&Path> {
        self.location.local()
    }

    /// Current table version (0 = created, empty).
    pub fn version(&self) -> i64 {
        self.table
            .version()
            .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
    }

    /// Reloads the table to its newest version (commits of other processes) and returns it.
    ///
    /// # Errors
    /// [`Error::Delta`] when the log cannot be read.
    pub async fn refresh(&mut self) -> Result<i64> {
        self.table.update_state().await?;
        Ok(self.version())
    }

    /// The `clip_id`s already stored for the logs `log_ids` (the ingest's duplicate check).
    ///
    /// # Errors
    /// Query errors.
    pub async fn clip_ids_of_logs(&self, log_ids: &[String]) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        if log_ids.is_empty() {
            return Ok(out);
        }
        let ctx = SessionContext::new();
        self.register(&ctx).await?;
        let batches = ctx
            .table(TABLE)
            .await?
            .filter(
                col("log_id").in_list(log_ids.iter().map(|l| lit(l.as_str())).collect(), false),
            )?
            .select_columns(&["clip_id"])?
            .collect()
            .await?;
        for b in &batches {
            let ids = deltalake::arrow::compute::cast(b.column(0), &ArrowType::Utf8)?;
            let ids = ids.as_string::<i32>();
            out.extend((0..ids.len()).map(|i| ids.value(i).to_owned()));
        }
        Ok(out)
    }

    /// Appends one batch as a single Delta commit and returns the new version. Rows are written
    /// sorted by `clip_id` with [`writer_properties`], and each new data file's `clip_id` index
    /// sidecar ([`crate::take`]) is written before the commit that makes the file visible.
    ///
    /// # Errors
    /// [`Error::Delta`] when writing files or committing fails; the table then stays at its
    /// previous version.
    pub async fn append(&mut self, batch: RecordBatch, hook: BeforeCommit) -> Result<i64> {
        self.append_batches(std::iter::once(Ok(batch)), hook).await
    }

    /// Appends the batches of `batches` (consumed one at a time, so memory stays at one batch
    /// plus the writer's buffers) as ONE Delta commit and returns the new version: a
    /// [`Warehouse::begin_append`], one [`Appender::write`] per batch, a
    /// [`Warehouse::commit_append`].
    ///
    /// # Errors
    /// The first error of `batches`; [`Error::Delta`] when writing or committing fails (the table
    /// then stays at its previous version).
    pub async fn append_batches(
        &mut self,
        batches: impl IntoIterator<Item = Result<RecordBatch>>,
        hook: BeforeCommit,
    ) -> Result<i64> {
        let mut appender = self.begin_append()?;
        for batch in batches {
            appender.write(batch?).await?;
        }
        self.commit_append(appender, hook).await
    }

    /// Starts an append: data files are written by [`Appender::write`] and become visible only
    /// at [`Warehouse::commit_append`] (one Delta commit). Files roll at 128 MiB, so the
    /// appender holds at most about one file's bytes whatever the number of rows.
    ///
    /// # Errors
    /// [`Error::Delta`] when the table state is not loaded.
    pub fn begin_append(&self) -> Result<Appender> {
        Ok(Appender {
            writer: RecordBatchWriter::for_table(&self.table)?
                .with_writer_properties(writer_properties())
                .with_target_file_size(TARGET_FILE_BYTES),
            rows: 0,
        })
    }

    /// Commits what `appender` wrote as ONE Delta commit (after writing each new file's
    /// `clip_id` index sidecar, [`crate::take`]) and returns the new version; an appender that
    /// wrote no row commits nothing and returns the current version.
    ///
    /// # Errors
    /// [`Error::Delta`] when flushing or committing fails; the table then stays at its previous
    /// version.
    pub async fn commit_append(&mut self, appender: Appender, hook: BeforeCommit) -> Result<i64> {
        let Appender { mut writer, rows } = appender;
        if rows == 0 {
            return Ok(self.version());
        }
        let adds = writer.flush().await?;
        match self.location.local() {
            Some(dir) => {
                let base = self.location.url()?;
                for add in &adds {
                    let file = base
                        .join(&add.path)
                        .ok()
                        .and_then(|u| u.to_file_path().ok())
                        .unwrap_or_else(|| dir.join(&add.path));
                    let dir = dir.to_path_buf();
                    tokio::task::spawn_blocking(move || crate::take::write_sidecar(&dir, &file))
                        .await
                        .map_err(|e| Error::QueryRuntime(e.to_string()))??;
                }
            }
            None => {
                let store = self.table.object_store();
                for add in &adds {
                    crate::take_remote::write_sidecar(&store, &store_path(&add.path)?).await?;
                }
            }
        }
        if hook == BeforeCommit::HangBeforeCommit {
            tracing::warn!(
                files = adds.len(),
                "data files written; pausing before commit"
            );
            std::future::pending::<()>().await;
        }
        let snapshot = self.table.snapshot()?;
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(vec![PARTITION_COLUMN.to_owned()]),
            predicate: None,
        };
        let finalized = CommitBuilder::default()
            .with_actions(adds.into_iter().map(Action::Add).collect())
            .build(Some(snapshot), self.table.log_store(), operation)
            .await?;
        let version = finalized.version();
        self.table.update_state().await?;
        Ok(i64::try_from(version).unwrap_or(i64::MAX))
    }

    /// Paths of the data files of the loaded version relative to the table root (object-store
    /// paths, for S3 tables).
    ///
    /// # Errors
    /// [`Error::Delta`] when the table state is not loaded; [`Error::Store`] for a file outside
    /// the table.
    pub fn data_file_paths(&self) -> Result<Vec<object_store::path::Path>> {
        let root = self
            .table
            .table_url()
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        self.table
            .get_file_uris()?
            .map(|uri| {
                let rel = uri
                    .strip_prefix(&root)
                    .map(|r| r.trim_start_matches('/').to_owned())
                    .ok_or_else(|| Error::Store {
                        location: self.location.to_string(),
                        reason: format!("data file `{uri}` is outside the table"),
                    })?;
                store_path(&rel)
            })
            .collect()
    }

    /// Local paths of the data files of the loaded version (the object-store URIs of an S3
    /// table, as paths).
    ///
    /// # Errors
    /// [`Error::Delta`] when the table state is not loaded.
    pub fn data_files(&self) -> Result<Vec<PathBuf>> {
        Ok(self
            .table
            .get_file_uris()?
            .map(|uri| {
                Url::parse(&uri)
                    .ok()
                    .filter(|u| u.scheme() == "file")
                    .and_then(|u| u.to_file_path().ok())
                    .unwrap_or_else(|| PathBuf::from(uri))
            })
            .collect())
    }

    /// Plans the read-only query `query` over this version registered as `warehouse` in a
    /// fresh session.
    ///
    /// # Errors
    /// [`Error::Delta`] / [`Error::Query`] when the table cannot be registered or the query not
    /// planned.
    async fn sql(&self, query: &str) -> Result<deltalake::datafusion::dataframe::DataFrame> {
        let ctx = SessionContext::new();
        self.register(&ctx).await?;
        Ok(ctx.sql(query).await?)
    }

    /// Registers the table as `warehouse` in `ctx`.
    ///
    /// # Errors
    /// [`Error::Delta`] / [`Error::Query`] when the provider cannot be built.
    pub async fn register(&self, ctx: &SessionContext) -> Result<()> {
        self.table.update_datafusion_session(&ctx.state())?;
        let provider = self.table.table_provider().await?;
        ctx.register_table(TABLE, provider)?;
        Ok(())
    }

    /// Every row's `(clip_id, split, category, trajectory)` as a stream of batches (at most
    /// DataFusion's batch size, 8,192 rows, each), unordered: the scheduled trigger's full
    /// export (seed ¶40-¶41) read in bounded memory; decode each batch with [`decode_rows`].
    ///
    /// # Errors
    /// [`Error::Delta`] / [`Error::Query`] when the scan cannot be planned; the stream yields
    /// read errors.
    pub async fn export_stream(
        &self,
    ) -> Result<deltalake::datafusion::physical_plan::SendableRecordBatchStream> {
        Ok(self
            .sql(&format!("SELECT {EXPORT_COLUMNS} FROM warehouse"))
            .await?
            .execute_stream()
            .await?)
    }

    /// All rows' `(clip_id, split, category, trajectory)` in memory, sorted by `clip_id` (for
    /// the demo and benchmarks on small tables; the trigger streams [`Warehouse::export_stream`]);
    /// decode them with [`decode_rows`].
    ///
    /// # Errors
    /// Query or decoding errors.
    pub async fn export_all(&self) -> Result<Vec<RecordBatch>> {
        Ok(self
            .sql(&format!(
                "SELECT {EXPORT_COLUMNS} FROM warehouse ORDER BY clip_id"
            ))
            .await?
            .collect()
            .await?)
    }

    /// The rows whose ids are in `ids` (the manual trigger's take, seed ¶43, ¶46), sorted by
    /// `clip_id`: each stored id once, absent ids skipped, duplicates in `ids` taken once. Reads
    /// only the matching rows through the per-file id index ([`crate::take`]).
    ///
    /// # Errors
    /// Read or decoding errors.
    pub async fn take(&self, ids: &[String]) -> Result<Vec<StoredClip>> {
        let taken = self.take_raw(ids).await?;
        decode_rows(taken.batch.as_slice())
    }

    /// [`Warehouse::take`] without decoding: the rows as one batch (schema
    /// [`crate::take::take_schema`]) and what was read, on two threads. On a local table the
    /// loaded version's index (sidecars, footers, offset indexes) is kept in this handle
    /// ([`crate::take_cache::TakeCache`]) for the next take of the same version.
    ///
    /// # Errors
    /// Read errors.
    pub async fn take_raw(&self, ids: &[String]) -> Result<crate::take::Taken> {
        let taken = match self.location.local() {
            Some(dir) => {
                let files = self.data_files()?;
                let dir = dir.to_path_buf();
                let ids = ids.to_vec();
                let (cache, version) = (self.take_cache.clone(), self.version());
                tokio::task::spawn_blocking(move || cache.take(&dir, version, &files, &ids, 2))
                    .await
                    .map_err(|e| Error::QueryRuntime(e.to_string()))??
            }
            None => {
                crate::take_remote::take(&self.table.object_store(), &self.data_file_paths()?, ids)
                    .await?
            }
        };
        tracing::info!(
            version = self.version(),
            rows = taken.rows(),
            files = taken.files,
            files_read = taken.files_read,
            index_load_s = taken.index_load_s,
            "take by id"
        );
        Ok(taken)
    }

    /// Checks every data file's id index sidecar of the loaded version against the file.
    ///
    /// # Errors
    /// Read errors.
    pub async fn check_index(&self) -> Result<crate::take::IndexCheck> {
        match self.location.local() {
            Some(dir) => {
                let (dir, files) = (dir.to_path_buf(), self.data_files()?);
                tokio::task::spawn_blocking(move || crate::take::check(&dir, &files))
                    .await
                    .map_err(|e| Error::QueryRuntime(e.to_string()))?
            }
            None => {
                crate::take_remote::check(&self.table.object_store(), &self.data_file_paths()?)
                    .await
            }
        }
    }

    /// The fixed evaluation split: every row with `split = 'eval'`.
    ///
    /// # Errors
    /// Query or decoding errors.
    pub async fn eval_split(&self) -> Result<Vec<StoredClip>> {
        let batches = self
            .sql(&format!(
                "SELECT {EXPORT_COLUMNS} FROM warehouse WHERE split = 'eval' ORDER BY clip_id"
            ))
            .await?
            .collect()
            .await?;
        decode_rows(&batches)
    }

    /// Distinct `batch_id`s with the rows of their simple fields, for rebuilding the OLAP store.
    ///
    /// # Errors
    /// Query errors.
    pub async fn simple_rows_of_batch(&self, batch_id: &str) -> Result<Vec<RecordBatch>> {
        let ctx = SessionContext::new();
        self.register(&ctx).await?;
        let schema = simple_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let df = ctx
            .table(TABLE)
            .await?
            .filter(col("batch_id").eq(lit(batch_id)))?
            .select_columns(&names)?;
        Ok(df.collect().await?)
    }

    /// Distinct batch ids in the table.
    ///
    /// # Errors
    /// Query errors.
    pub async fn batch_ids(&self) -> Result<Vec<String>> {
        let batches = self
            .sql("SELECT DISTINCT batch_id FROM warehouse ORDER BY batch_id")
            .await?
            .collect()
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let col = deltalake::arrow::compute::cast(b.column(0), &ArrowType::Utf8)?;
            let col = col.as_string::<i32>();
            out.extend((0..col.len()).map(|i| col.value(i).to_owned()));
        }
        Ok(out)
    }
}

/// The columns of an export ([`Warehouse::export_stream`]), what [`decode_rows`] reads.
const EXPORT_COLUMNS: &str = "clip_id, split, category, object_type, present_index, lane_heading_rad, lane_offset_m, lane_ahead_heading_rad, trajectory";

/// Size at which a warehouse data file is closed and the next one started \[bytes\].
pub const TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// Size at which a data page of a `trajectory` child column closes \[bytes\].
pub const TRAJECTORY_PAGE_BYTES: usize = 2 * 1024;

/// Size at which a data page of `clip_id` closes \[bytes\] (checked every
/// [`WRITE_BATCH_VALUES`] values, so a page holds about 32 ids).
pub const CLIP_ID_PAGE_BYTES: usize = 1024;

/// Values the Parquet writer takes between two page-size checks: the granularity of the small
/// `trajectory` and `clip_id` pages.
pub const WRITE_BATCH_VALUES: usize = 32;

/// Parquet properties of warehouse data files: page statistics, 64 Ki-row row groups, 1 MiB
/// data pages except the `trajectory` children (`trajectory.list.element.t_s`, ...), whose
/// pages close at [`TRAJECTORY_PAGE_BYTES`] checked every [`WRITE_BATCH_VALUES`] values: a page holds ~5 clips of
/// 51 samples (8 bytes each), so a take of 1 % of the rows reads a few % of the sample bytes,
/// not all of them. The children are PLAIN encoded, without a dictionary: measured samples
/// rarely repeat, and a take touching one row of a row group would otherwise read and decode
/// that column chunk's dictionary page (up to 1 MiB per child and row group; at 10 M clips
/// and 100 k ids that was most of the take's bytes, issue 13 item 1). `clip_id` is PLAIN in
/// pages closing at [`CLIP_ID_PAGE_BYTES`] (about 32 ids): ids are unique, so a dictionary
/// only costs a take one 1 MiB dictionary page per row group touched, and 1 MiB pages made a
/// take of 1 % of the rows read every id of the file.
pub fn writer_properties() -> WriterProperties {
    let clip_id = ColumnPath::new(vec!["clip_id".to_owned()]);
    let mut b = WriterProperties::builder()
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_write_batch_size(WRITE_BATCH_VALUES)
        .set_max_row_group_row_count(Some(65_536))
        .set_column_data_page_size_limit(clip_id.clone(), CLIP_ID_PAGE_BYTES)
        .set_column_dictionary_enabled(clip_id, false);
    for (child, _) in trajectory::SAMPLE_FIELDS {
        let path = ColumnPath::new(vec![
            trajectory::COLUMN.to_owned(),
            "list".to_owned(),
            trajectory::ELEMENT.to_owned(),
            child.to_owned(),
        ]);
        b = b
            .set_column_data_page_size_limit(path.clone(), TRAJECTORY_PAGE_BYTES)
            .set_column_dictionary_enabled(path, false);
    }
    b.build()
}

/// An append in progress ([`Warehouse::begin_append`]): rows written as data files, not yet
/// committed.
pub struct Appender {
    writer: RecordBatchWriter,
    rows: usize,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("rows", &self.rows)
            .finish()
    }
}

impl Appender {
    /// Writes `batch` (schema [`warehouse_schema`]) sorted by `clip_id`.
    ///
    /// # Errors
    /// [`Error::Arrow`] / [`Error::Delta`] when sorting or writing fails.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let order = deltalake::arrow::compute::sort_to_indices(
            batch.column(batch.schema().index_of("clip_id")?),
            None,
            None,
        )?;
        self.rows += batch.num_rows();
        self.writer
            .write(deltalake::arrow::compute::take_record_batch(
                &batch, &order,
            )?)
            .await?;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// `rel` (a data file path relative to the table root, as in the Delta log) as an object-store
/// path.
fn store_path(rel: &str) -> Result<object_store::path::Path> {
    object_store::path::Path::parse(rel).map_err(|e| Error::Store {
        location: rel.to_owned(),
        reason: e.to_string(),
    })
}
