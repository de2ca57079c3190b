//! The OLAP store (issue item 3; seed ¶36-¶37): the simple fields only, in their own
//! Parquet table laid out for pruning, queried with DataFusion SQL.
//!
//! Layout: `clips/source=<source>/batch-<batch_id>.parquet` (hive partitions on `source`, so a
//! filter on it skips whole directories); inside a file rows are sorted by `object_type`,
//! `category`, `start_time_s` and written with page-level min/max statistics and 8 Ki-row row
//! groups, so filters on those columns skip row groups and pages. Files are written through
//! `object_store` (a local directory or an `s3://` prefix, [`crate::store`]) with one atomic put
//! each (locally a temporary file renamed into place), so readers never see a half-written file.

use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::{RecordBatch, StringArray};
use deltalake::arrow::compute::{
    SortColumn, concat_batches, lexsort_to_indices, take_record_batch,
};
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef};
use deltalake::datafusion::datasource::file_format::parquet::ParquetFormat;
use deltalake::datafusion::datasource::listing::ListingOptions;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use futures::TryStreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{DynObjectStore, ObjectStoreExt as _, PutPayload};

use crate::error::{Error, Result};
use crate::store::Location;
use crate::warehouse::simple_schema;

/// Table name used in SQL.
pub const TABLE: &str = "olap";
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 8192;

/// A DataFusion session tuned for the stores: Parquet filter pushdown on, so row groups and pages
/// are pruned with their statistics.
pub fn session() -> SessionContext {
    SessionContext::new_with_config(session_config())
}

/// The configuration of [`session`]: 2 target partitions, Parquet filter pushdown and reordering.
pub fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_target_partitions(2)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true)
}

/// The OLAP table: a directory or an `s3://` prefix of Parquet files.
#[derive(Debug, Clone)]
pub struct Olap {
    location: Location,
    store: Arc<DynObjectStore>,
    prefix: StorePath,
}

/// Writes `part` as `dir/name` through `dir/name.tmp` and a rename, so a reader never sees a
/// half-written file.
///
/// # Errors
/// [`Error::Io`] when the directory or file cannot be written, [`crate::Error::Parquet`] when
/// the writer fails.
fn write_local(dir: &Path, name: &str, part: &RecordBatch, props: WriterProperties) -> Result<()> {
    fs_err::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let file = fs_err::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut writer = ArrowWriter::try_new(file, part.schema(), Some(props))?;
    writer.write(part)?;
    writer.close()?;
    fs_err::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(())
}

/// Schema of the Parquet files: the simple fields without the `source` partition column.
pub fn file_schema() -> SchemaRef {
    let full = simple_schema();
    Arc::new(Schema::new(
        full.fields()
            .iter()
            .filter(|f| f.name() != "source")
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    ))
}

impl Olap {
    /// The store in the local directory `dir` (created when missing).
    ///
    /// # Errors
    /// [`crate::Error::Io`] when the directory cannot be created.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_at(&Location::Local(dir.to_path_buf()))
    }

    /// The store at `location` (a local directory is created when missing).
    ///
    /// # Errors
    /// [`crate::Error::Io`], [`crate::Error::Store`] or [`crate::Error::ObjectStore`] when it
    /// cannot be opened.
    pub fn open_at(location: &Location) -> Result<Self> {
        let location = location.prepare()?;
        let (store, prefix) = location.object_store()?;
        Ok(Self {
            location,
            store,
            prefix,
        })
    }

    /// The location.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// `true` when the files of `batch_id` are present.
    ///
    /// # Errors
    /// [`crate::Error::ObjectStore`] when the store cannot be listed.
    pub async fn has_batch(&self, batch_id: &str) -> Result<bool> {
        let name = format!("batch-{batch_id}.parquet");
        let objects: Vec<_> = self.store.list(Some(&self.prefix)).try_collect().await?;
        Ok(objects
            .iter()
            .any(|o| o.location.filename() == Some(name.as_str())))
    }

    /// Writes one batch's simple fields (schema [`simple_schema`]) as one file per source.
    /// `batches` are taken by value and dropped once concatenated, and a batch of one source
    /// is not copied by a filter: memory peaks at about two copies of the rows (the
    /// concatenation and its sorted copy), not four.
    ///
    /// # Errors
    /// [`crate::Error::ObjectStore`], [`crate::Error::Arrow`] or [`crate::Error::Parquet`] on
    /// failure; no visible file is left half-written.
    pub async fn write_batch(&self, batch_id: &str, batches: Vec<RecordBatch>) -> Result<usize> {
        let schema = simple_schema();
        let conformed = batches
            .iter()
            .map(|b| conform(b, &schema))
            .collect::<Result<Vec<_>>>()?;
        drop(batches);
        let all = concat_batches(&schema, &conformed)?;
        drop(conformed);
        if all.num_rows() == 0 {
            return Ok(0);
        }
        let source_idx = schema.index_of("source")?;
        let sources = deltalake::arrow::compute::cast(all.column(source_idx), &DataType::Utf8)?;
        let sources = sources
            .as_any()
            .downcast_ref::<StringArray>()
            .map(|a| {
                a.iter()
                    .map(|s| s.unwrap_or("unknown").to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut distinct = sources.clone();
        distinct.sort();
        distinct.dedup();
        let mut written = 0;
        let single_source = distinct.len() == 1;
        for source in distinct {
            let part = if single_source {
                sorted_without_source(&all)?
            } else {
                let mask: deltalake::arrow::array::BooleanArray =
                    sources.iter().map(|s| Some(*s == source)).collect();
                sorted_without_source(&deltalake::arrow::compute::filter_record_batch(
                    &all, &mask,
                )?)?
            };
            let partition = format!("source={source}");
            let name = format!("batch-{batch_id}.parquet");
            let props = WriterProperties::builder()
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .set_statistics_enabled(EnabledStatistics::Page)
                .build();
            if let Some(dir) = self.location.local() {
                // Locally the file is written in place under a temporary name and renamed: no
                // copy of the whole file in memory (the put below costs a 1 M-row bench ~20 %).
                let dir = dir.join(partition);
                let batch = part.clone();
                tokio::task::spawn_blocking(move || write_local(&dir, &name, &batch, props))
                    .await
                    .map_err(|e| Error::QueryRuntime(e.to_string()))??;
            } else {
                let path = self.prefix.clone().join(partition).join(name);
                let mut bytes = Vec::new();
                let mut writer = ArrowWriter::try_new(&mut bytes, part.schema(), Some(props))?;
                writer.write(&part)?;
                writer.close()?;
                self.store.put(&path, PutPayload::from(bytes)).await?;
            }
            written += part.num_rows();
        }
        Ok(written)
    }

    /// Registers the store as `olap` in `ctx` (empty when no batch was written yet).
    ///
    /// # Errors
    /// [`crate::Error::Query`] when DataFusion rejects the table.
    pub async fn register(&self, ctx: &SessionContext) -> Result<()> {
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("source".to_owned(), DataType::Utf8)]);
        if let Some(bucket) = self.location.bucket_url() {
            let (root, _) = self.location.object_store()?;
            ctx.register_object_store(&bucket, root);
        }
        let url = format!("{}/", self.location.url()?.as_str().trim_end_matches('/'));
        ctx.register_listing_table(TABLE, &url, options, Some(file_schema()), None)
            .await?;
        Ok(())
    }

    /// Number of rows in the store.
    ///
    /// # Errors
    /// Query errors.
    pub async fn rows(&self) -> Result<i64> {
        let ctx = session();
        self.register(&ctx).await?;
        let batches = ctx
            .sql("SELECT count(*) FROM olap")
            .await?
            .collect()
            .await?;
        Ok(batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<deltalake::arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0))
    }
}

/// `batch` with the columns of `schema`, by name, cast to its types (DataFusion may hand back
/// `Utf8View` for `Utf8`).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let col = batch.column(batch.schema().index_of(f.name())?);
            Ok(deltalake::arrow::compute::cast(col, f.data_type())?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn sorted_without_source(batch: &RecordBatch) -> Result<RecordBatch> {
    let key = |name: &str| -> Result<SortColumn> {
        Ok(SortColumn {
            values: batch.column(batch.schema().index_of(name)?).clone(),
            options: None,
        })
    };
    let indices = lexsort_to_indices(
        &[key("object_type")?, key("category")?, key("start_time_s")?],
        None,
    )?;
    let sorted = take_record_batch(batch, &indices)?;
    let keep: Vec<usize> = (0..sorted.num_columns())
        .filter(|&i| sorted.schema().field(i).name() != "source")
        .collect();
    Ok(sorted.project(&keep)?)
}
