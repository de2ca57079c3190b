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

use deltalake::arrow::array::{Array, AsArray as _, RecordBatch};
use deltalake::arrow::compute::{
    SortColumn, cast, interleave, interleave_record_batch, lexsort_to_indices,
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
fn write_local(
    dir: &Path,
    name: &str,
    props: WriterProperties,
    rows: impl FnOnce(&mut ArrowWriter<fs_err::File>) -> Result<()>,
) -> Result<()> {
    fs_err::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let file = fs_err::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut writer = ArrowWriter::try_new(file, file_schema(), Some(props))?;
    rows(&mut writer)?;
    writer.close()?;
    fs_err::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(())
}

/// Writes the rows `order` (`(input batch, row)` pairs) of `inputs` to `writer`, the columns
/// `keep` (schema `schema`), [`ROW_GROUP_ROWS`] rows at a time.
///
/// # Errors
/// [`crate::Error::Arrow`] / [`crate::Error::Parquet`] when gathering or writing fails.
fn write_rows<W: std::io::Write + Send>(
    writer: &mut ArrowWriter<W>,
    inputs: &[RecordBatch],
    order: &[(usize, usize)],
    keep: &[usize],
    schema: &SchemaRef,
) -> Result<()> {
    let refs: Vec<&RecordBatch> = inputs.iter().collect();
    for chunk in order.chunks(ROW_GROUP_ROWS) {
        let rows = interleave_record_batch(&refs, chunk)?;
        writer.write(&RecordBatch::try_new(
            schema.clone(),
            keep.iter().map(|&i| rows.column(i).clone()).collect(),
        )?)?;
    }
    Ok(())
}

/// Rows of an OLAP file in file order, as `(input batch, row)` pairs.
type RowOrder = Vec<(usize, usize)>;

/// For each source of `inputs` (schema [`simple_schema`]; a null source counts as
/// `unknown`), in name order: its rows as `(input batch, row)` pairs sorted by `object_type`,
/// `category`, `start_time_s` with `lexsort_to_indices` over the source's rows in input order
/// (what sorting the concatenated, filtered rows gives, ties included).
///
/// # Errors
/// [`crate::Error::Arrow`] when a column is missing or cannot be gathered.
fn source_orders(inputs: &[RecordBatch]) -> Result<Vec<(String, RowOrder)>> {
    let mut members: std::collections::BTreeMap<String, RowOrder> =
        std::collections::BTreeMap::new();
    for (b, batch) in inputs.iter().enumerate() {
        let sources = cast(
            batch.column(batch.schema().index_of("source")?),
            &DataType::Utf8,
        )?;
        let sources = sources.as_string::<i32>();
        for (row, source) in sources.iter().enumerate() {
            let source = source.unwrap_or("unknown");
            match members.get_mut(source) {
                Some(rows) => rows.push((b, row)),
                None => {
                    members.insert(source.to_owned(), vec![(b, row)]);
                }
            }
        }
    }
    members
        .into_iter()
        .map(|(source, rows)| {
            let key = |name: &str| -> Result<SortColumn> {
                let columns = inputs
                    .iter()
                    .map(|b| Ok(b.column(b.schema().index_of(name)?).as_ref()))
                    .collect::<Result<Vec<&dyn Array>>>()?;
                Ok(SortColumn {
                    values: interleave(&columns, &rows)?,
                    options: None,
                })
            };
            let indices = lexsort_to_indices(
                &[key("object_type")?, key("category")?, key("start_time_s")?],
                None,
            )?;
            let order = indices
                .values()
                .iter()
                .filter_map(|&i| rows.get(i as usize).copied())
                .collect();
            Ok((source, order))
        })
        .collect()
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

    /// Writes one batch's simple fields (schema [`simple_schema`]) as one file per source,
    /// its rows sorted by `object_type`, `category`, `start_time_s` (the sort of
    /// `sorted_without_source` on the source's rows). The rows are not concatenated or copied
    /// whole: only the sort keys are, and the file is written in row groups gathered from
    /// `batches` ([`ROW_GROUP_ROWS`] rows at a time), so memory is `batches` plus about 50
    /// bytes per row.
    ///
    /// # Errors
    /// [`crate::Error::ObjectStore`], [`crate::Error::Arrow`] or [`crate::Error::Parquet`] on
    /// failure; no visible file is left half-written.
    pub async fn write_batch(&self, batch_id: &str, batches: Vec<RecordBatch>) -> Result<usize> {
        let schema = simple_schema();
        let inputs = batches
            .iter()
            .map(|b| conform(b, &schema))
            .collect::<Result<Vec<_>>>()?;
        drop(batches);
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| schema.field(i).name() != "source")
            .collect();
        let file_schema = Arc::new(schema.project(&keep)?);
        let mut written = 0;
        for (source, order) in source_orders(&inputs)? {
            let partition = format!("source={source}");
            let name = format!("batch-{batch_id}.parquet");
            let props = WriterProperties::builder()
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .set_statistics_enabled(EnabledStatistics::Page)
                .build();
            let rows = order.len();
            if let Some(dir) = self.location.local() {
                // Locally the file is written in place under a temporary name and renamed: no
                // copy of the whole file in memory (the put below costs a 1 M-row bench ~20 %).
                let dir = dir.join(partition);
                let (inputs, keep, file_schema) =
                    (inputs.clone(), keep.clone(), file_schema.clone());
                tokio::task::spawn_blocking(move || {
                    write_local(&dir, &name, props, |writer| {
                        write_rows(writer, &inputs, &order, &keep, &file_schema)
                    })
                })
                .await
                .map_err(|e| Error::QueryRuntime(e.to_string()))??;
            } else {
                let path = self.prefix.clone().join(partition).join(name);
                let mut bytes = Vec::new();
                let mut writer =
                    ArrowWriter::try_new(&mut bytes, file_schema.clone(), Some(props))?;
                write_rows(&mut writer, &inputs, &order, &keep, &file_schema)?;
                writer.close()?;
                self.store.put(&path, PutPayload::from(bytes)).await?;
            }
            written += rows;
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
            Ok(cast(col, f.data_type())?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::clip::{self, SimpleFields, WindowSpec};
    use crate::reader;
    use crate::rows::simple_batch;

    /// The former `write_batch` sort: the whole batch of one source, sorted and without the
    /// `source` column.
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

    /// The gathered, chunked write stores the rows the former concatenate-filter-sort write
    /// stored, ties in the same order: every bundled log's clips, five times over (so keys
    /// tie) in more than one row group, three sources.
    #[tokio::test]
    async fn gathered_write_equals_the_sorted_copy() {
        let input = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/driving"));
        let mut inputs = Vec::new();
        for location in reader::discover(input).unwrap() {
            let log = reader::read_log(&location);
            let clips = clip::extract(&log, WindowSpec::default(), None);
            let simple: Vec<&SimpleFields> = clips.iter().map(|c| &c.simple).collect();
            inputs.push(simple_batch(&simple, "t").unwrap());
        }
        let inputs: Vec<RecordBatch> = (0..5).flat_map(|_| inputs.clone()).collect();
        let dir = tempfile::tempdir().unwrap();
        let olap = Olap::open(dir.path()).unwrap();
        let rows = olap.write_batch("t", inputs.clone()).await.unwrap();
        let all = concat_batches(&simple_schema(), &inputs).unwrap();
        assert!(all.num_rows() > ROW_GROUP_ROWS, "{} rows", all.num_rows());
        assert_eq!(rows, all.num_rows());
        let sources = cast(
            all.column(all.schema().index_of("source").unwrap()),
            &DataType::Utf8,
        )
        .unwrap();
        let sources = sources.as_string::<i32>();
        let mut names: Vec<&str> = sources.iter().map(|s| s.unwrap()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 3, "{names:?}");
        for source in names {
            let mask: deltalake::arrow::array::BooleanArray =
                sources.iter().map(|s| Some(s == Some(source))).collect();
            let want = sorted_without_source(&filter_record_batch(&all, &mask).unwrap()).unwrap();
            let path = dir
                .path()
                .join(format!("source={source}"))
                .join("batch-t.parquet");
            let file = fs_err::File::open(&path).unwrap();
            let got: Vec<RecordBatch> =
                ParquetRecordBatchReaderBuilder::try_new(file.into_parts().0)
                    .unwrap()
                    .build()
                    .unwrap()
                    .collect::<std::result::Result<_, _>>()
                    .unwrap();
            let got = concat_batches(&got[0].schema(), &got).unwrap();
            assert_eq!(got.num_rows(), want.num_rows(), "{source}");
            for (g, w) in got.columns().iter().zip(want.columns()) {
                assert_eq!(g.as_ref(), w.as_ref(), "{source}");
            }
        }
    }
}
