//! The warehouse store (issue item 3; seed ¶34-¶35, ¶38): a Delta Lake table holding the
//! simple fields and the complex field (`trajectory`, Arrow IPC bytes in one binary column),
//! partitioned by `ingest_date`. One ingest batch is one atomic Delta commit: the Parquet data
//! files are written first and only the commit makes them visible, so an ingest interrupted before
//! its commit leaves the previous table version intact (orphan files are ignored by readers).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use deltalake::datafusion::prelude::{SessionContext, col, lit};
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, DataType, StructField};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use url::Url;

use crate::clip::{Clip, SimpleFields};
use crate::error::{Error, Result};
use crate::trajectory::Trajectory;

/// Name of the partition column.
pub const PARTITION_COLUMN: &str = "ingest_date";
/// Table name used in SQL.
pub const TABLE: &str = "warehouse";

/// The simple-field columns shared by the warehouse and the OLAP store, in order:
/// `(name, arrow type, nullable)`.
pub const SIMPLE_COLUMNS: [(&str, ArrowType, bool); 20] = [
    ("clip_id", ArrowType::Utf8, false),
    ("source", ArrowType::Utf8, false),
    ("log_id", ArrowType::Utf8, false),
    ("track_id", ArrowType::Utf8, false),
    ("object_type", ArrowType::Utf8, false),
    ("city", ArrowType::Utf8, true),
    ("split", ArrowType::Utf8, false),
    ("category", ArrowType::Utf8, false),
    ("start_time_s", ArrowType::Float64, false),
    ("duration_s", ArrowType::Float64, false),
    ("mean_speed_mps", ArrowType::Float64, false),
    ("max_speed_mps", ArrowType::Float64, false),
    ("max_decel_mps2", ArrowType::Float64, false),
    ("max_lat_accel_mps2", ArrowType::Float64, false),
    ("max_yaw_rate_radps", ArrowType::Float64, false),
    ("path_length_m", ArrowType::Float64, false),
    ("lead_distance_m", ArrowType::Float64, true),
    ("ttc_s", ArrowType::Float64, true),
    ("agents_nearby", ArrowType::Int64, false),
    ("pedestrians_nearby", ArrowType::Int64, false),
];

/// Arrow schema of the simple fields plus `batch_id`.
pub fn simple_schema() -> SchemaRef {
    let mut fields: Vec<Field> = SIMPLE_COLUMNS
        .iter()
        .map(|(n, t, nullable)| Field::new(*n, t.clone(), *nullable))
        .collect();
    fields.push(Field::new("batch_id", ArrowType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Arrow schema of a warehouse row: simple fields, `batch_id`, `trajectory`, `ingest_date`.
pub fn warehouse_schema() -> SchemaRef {
    let mut fields: Vec<Field> = simple_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("trajectory", ArrowType::Binary, false));
    fields.push(Field::new(PARTITION_COLUMN, ArrowType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The simple fields of `clips` as one record batch (OLAP layout, also the warehouse prefix).
///
/// # Errors
/// [`Error::Arrow`] if the columns do not fit the schema (a bug).
pub fn simple_batch(clips: &[&SimpleFields], batch_id: &str) -> Result<RecordBatch> {
    let s = |f: fn(&SimpleFields) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(clips.iter().map(|c| f(c))))
    };
    let d = |f: fn(&SimpleFields) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(clips.iter().map(|c| f(c))))
    };
    let o = |f: fn(&SimpleFields) -> Option<f64>| -> ArrayRef {
        Arc::new(clips.iter().map(|c| f(c)).collect::<Float64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        s(|c| &c.clip_id),
        s(|c| &c.source),
        s(|c| &c.log_id),
        s(|c| &c.track_id),
        s(|c| &c.object_type),
        Arc::new(
            clips
                .iter()
                .map(|c| c.city.as_deref())
                .collect::<StringArray>(),
        ),
        s(|c| &c.split),
        s(|c| &c.category),
        d(|c| c.start_time_s),
        d(|c| c.duration_s),
        d(|c| c.mean_speed_mps),
        d(|c| c.max_speed_mps),
        d(|c| c.max_decel_mps2),
        d(|c| c.max_lat_accel_mps2),
        d(|c| c.max_yaw_rate_radps),
        d(|c| c.path_length_m),
        o(|c| c.lead_distance_m),
        o(|c| c.ttc_s),
        Arc::new(Int64Array::from_iter_values(
            clips.iter().map(|c| c.agents_nearby),
        )),
        Arc::new(Int64Array::from_iter_values(
            clips.iter().map(|c| c.pedestrians_nearby),
        )),
        Arc::new(StringArray::from_iter_values(
            clips.iter().map(|_| batch_id),
        )),
    ];
    Ok(RecordBatch::try_new(simple_schema(), columns)?)
}

/// Full warehouse rows for `clips`.
///
/// # Errors
/// [`Error::Arrow`] on a schema mismatch (a bug) or a trajectory that cannot be encoded.
pub fn warehouse_batch(clips: &[Clip], batch_id: &str, ingest_date: &str) -> Result<RecordBatch> {
    let simple: Vec<&SimpleFields> = clips.iter().map(|c| &c.simple).collect();
    let prefix = simple_batch(&simple, batch_id)?;
    let blobs: Vec<Vec<u8>> = clips
        .iter()
        .map(|c| c.trajectory.encode())
        .collect::<Result<_>>()?;
    let mut columns = prefix.columns().to_vec();
    columns.push(Arc::new(BinaryArray::from_iter_values(blobs.iter())));
    columns.push(Arc::new(StringArray::from_iter_values(
        clips.iter().map(|_| ingest_date),
    )));
    Ok(RecordBatch::try_new(warehouse_schema(), columns)?)
}

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
    dir: PathBuf,
}

impl Warehouse {
    /// Opens the table in `dir`, creating an empty partitioned table (version 0) when absent.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created, [`Error::Delta`] when the log is
    /// unreadable.
    pub async fn open_or_create(dir: &Path) -> Result<Self> {
        fs_err::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let url = dir_url(&dir)?;
        let table = DeltaTable::try_from_url(url).await?;
        let table = if table.version().is_some() {
            table
        } else {
            let columns: Vec<StructField> = warehouse_schema()
                .fields()
                .iter()
                .map(|f| {
                    let t = match f.data_type() {
                        ArrowType::Float64 => DataType::DOUBLE,
                        ArrowType::Int64 => DataType::LONG,
                        ArrowType::Binary => DataType::BINARY,
                        _ => DataType::STRING,
                    };
                    StructField::new(f.name().clone(), t, f.is_nullable())
                })
                .collect();
            table
                .create()
                .with_table_name("clips")
                .with_comment("dataloop clips: simple fields + trajectory (Arrow IPC)")
                .with_columns(columns)
                .with_partition_columns([PARTITION_COLUMN])
                .await?
        };
        Ok(Self { table, dir })
    }

    /// Opens an existing table without creating one.
    ///
    /// # Errors
    /// [`Error::Delta`] when `dir` holds no Delta table.
    pub async fn open(dir: &Path) -> Result<Self> {
        let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let table = deltalake::open_table(dir_url(&dir)?).await?;
        Ok(Self { table, dir })
    }

    /// Opens an existing table at `version` (Delta time travel): the rows exactly as that
    /// commit left them, whatever was committed after it.
    ///
    /// # Errors
    /// [`Error::PinnedVersion`] when `version` is negative, the table has no such version, or a
    /// commit up to it is missing or unreadable; [`Error::Io`] when `dir` is not there.
    pub async fn open_at(dir: &Path, version: i64) -> Result<Self> {
        let bad = |reason: String| Error::PinnedVersion { version, reason };
        let wanted = u64::try_from(version).map_err(|_| bad("negative version".to_owned()))?;
        let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let table = deltalake::open_table_with_version(dir_url(&dir)?, wanted)
            .await
            .map_err(|e| bad(e.to_string()))?;
        if table.version() != Some(wanted) {
            return Err(bad(format!(
                "the table loaded version {:?}",
                table.version()
            )));
        }
        Ok(Self { table, dir })
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
            .select_columns(&["clip_id", "split", "category", "trajectory"])?
            .sort(vec![col("clip_id").sort(true, false)])?
            .collect()
            .await?)
    }

    /// The table directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        let base = dir_url(&self.dir)?;
        for add in &adds {
            let file = base
                .join(&add.path)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .unwrap_or_else(|| self.dir.join(&add.path));
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || crate::take::write_sidecar(&dir, &file))
                .await
                .map_err(|e| Error::QueryRuntime(e.to_string()))??;
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

    /// Local paths of the data files of the loaded version.
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
    /// [`crate::take::take_schema`]) and what was read, on two threads.
    ///
    /// # Errors
    /// Read errors.
    pub async fn take_raw(&self, ids: &[String]) -> Result<crate::take::Taken> {
        let files = self.data_files()?;
        let dir = self.dir.clone();
        let ids = ids.to_vec();
        let taken = tokio::task::spawn_blocking(move || crate::take::take(&dir, &files, &ids, 2))
            .await
            .map_err(|e| Error::QueryRuntime(e.to_string()))??;
        tracing::info!(
            version = self.version(),
            rows = taken.rows(),
            files = taken.files,
            files_read = taken.files_read,
            "take by id"
        );
        Ok(taken)
    }

    /// Checks every data file's id index sidecar of the loaded version against the file.
    ///
    /// # Errors
    /// Read errors.
    pub fn check_index(&self) -> Result<crate::take::IndexCheck> {
        crate::take::check(&self.dir, &self.data_files()?)
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

/// The columns of an export ([`Warehouse::export_stream`]), in the order [`decode_rows`] reads.
const EXPORT_COLUMNS: &str = "clip_id, split, category, trajectory";

/// Size at which a warehouse data file is closed and the next one started \[bytes\].
pub const TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// Parquet properties of warehouse data files: page statistics, 64 Ki-row row groups, 1 MiB
/// data pages except `trajectory`, whose pages close at 8 KiB checked every 4 rows (so a page
/// holds ~4 blobs and a take of 1 % of the rows reads ~4 % of the blob bytes, not all of them).
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_write_batch_size(4)
        .set_column_data_page_size_limit(ColumnPath::from("trajectory"), 8 * 1024)
        .set_max_row_group_row_count(Some(65_536))
        .build()
}

/// A clip's complex field as read back from the warehouse.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredClip {
    /// Clip id.
    pub clip_id: String,
    /// `train`, `eval` or `gap`.
    pub split: String,
    /// Scenario category.
    pub category: String,
    /// Decoded trajectory.
    pub trajectory: Trajectory,
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

/// Decodes `(clip_id, split, category, trajectory)` rows.
///
/// # Errors
/// [`Error::Arrow`] for other column types, [`Error::Trajectory`] for a malformed blob.
pub fn decode_rows(batches: &[RecordBatch]) -> Result<Vec<StoredClip>> {
    let mut out = Vec::new();
    for b in batches {
        let text = |i: usize| deltalake::arrow::compute::cast(b.column(i), &ArrowType::Utf8);
        let (ids, splits, cats) = (text(0)?, text(1)?, text(2)?);
        let blobs = deltalake::arrow::compute::cast(b.column(3), &ArrowType::Binary)?;
        let (ids, splits, cats) = (
            ids.as_string::<i32>(),
            splits.as_string::<i32>(),
            cats.as_string::<i32>(),
        );
        let blobs = blobs.as_binary::<i32>();
        for i in 0..b.num_rows() {
            let clip_id = ids.value(i).to_owned();
            let trajectory = Trajectory::decode(&clip_id, blobs.value(i))?;
            out.push(StoredClip {
                clip_id,
                split: splits.value(i).to_owned(),
                category: cats.value(i).to_owned(),
                trajectory,
            });
        }
    }
    Ok(out)
}

fn dir_url(dir: &Path) -> Result<Url> {
    Url::from_directory_path(dir).map_err(|()| {
        Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an absolute path"),
        )
    })
}
