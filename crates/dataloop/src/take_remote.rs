//! Take by ID on a warehouse in object storage (issue 13 item 7): the index and selection of
//! [`crate::take`] through `object_store` (for `s3://` tables) instead of local files.
//!
//! Each data file's sidecar is the object `_dataloop_ids/<path, '/' as '__'>.ids` beside the
//! table's data (same layout as locally), written by [`write_sidecar`] before the commit that
//! adds the file; a missing or stale sidecar is rebuilt in memory from the file's `clip_id`
//! column (one column read, with a warning). The selected rows are read with Parquet's async
//! reader over ranged GETs: footer, page index, then only the pages holding selected rows.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ArrowReaderOptions;
use deltalake::parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use deltalake::parquet::errors::{ParquetError, Result as ParquetResult};
use deltalake::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _, TryStreamExt as _};
use object_store::path::Path as StorePath;
use object_store::{DynObjectStore, ObjectStoreExt as _, PutPayload};

use crate::error::Result;
use crate::take::{self, FileTake, IndexCheck, Taken};

/// Files read at once.
const CONCURRENT_FILES: usize = 4;

/// Parquet's async reader over one object of known size: ranged GETs for the footer, the page
/// index and the pages the selection needs.
#[derive(Debug, Clone)]
struct ObjectReader {
    store: Arc<DynObjectStore>,
    path: StorePath,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, ParquetResult<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        async move {
            let mut reader = ParquetMetaDataReader::new()
                .with_metadata_options(options.map(|o| o.metadata_options().clone()));
            if let Some(o) = options {
                reader = reader
                    .with_column_index_policy(o.column_index_policy())
                    .with_offset_index_policy(o.offset_index_policy());
            }
            let size = self.size;
            Ok(Arc::new(reader.load_and_finish(self, size).await?))
        }
        .boxed()
    }
}

/// The sidecar object of the data file `file` (paths relative to the table root).
fn sidecar_of(file: &StorePath) -> StorePath {
    StorePath::from(take::INDEX_DIR).join(take::sidecar_name(file.as_ref()))
}

fn as_path(file: &StorePath) -> PathBuf {
    PathBuf::from(file.as_ref())
}

/// Sorted `(hash, row)` entries of `file` in `store` and its size in bytes.
async fn index_file(
    store: &Arc<DynObjectStore>,
    file: &StorePath,
) -> Result<(Vec<(u64, u32)>, u64)> {
    let size = store.head(file).await?.size;
    let reader = ObjectReader {
        store: store.clone(),
        path: file.clone(),
        size,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let idx = builder.schema().index_of("clip_id")?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [idx]);
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()?;
    let mut entries = Vec::new();
    let mut row = 0u32;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        take::add_entries(
            &mut entries,
            &mut row,
            batch.column(0).as_ref(),
            &as_path(file),
        )?;
    }
    entries.sort_unstable();
    Ok((entries, size))
}

/// Writes the sidecar of the data file `file` (relative to the table root of `store`) from its
/// `clip_id` column; returns the rows indexed.
///
/// # Errors
/// [`crate::Error::ObjectStore`] / [`crate::Error::Parquet`] when the file cannot be read or
/// the sidecar written.
pub async fn write_sidecar(store: &Arc<DynObjectStore>, file: &StorePath) -> Result<usize> {
    let (entries, size) = index_file(store, file).await?;
    store
        .put(
            &sidecar_of(file),
            PutPayload::from(take::sidecar_bytes(&entries, size)),
        )
        .await?;
    Ok(entries.len())
}

/// The index of `file`: its sidecar when present and matching, else rebuilt (`true`).
async fn load_index(store: &Arc<DynObjectStore>, file: &StorePath) -> Result<(Vec<u8>, bool, u64)> {
    let size = store.head(file).await?.size;
    if let Ok(got) = store.get(&sidecar_of(file)).await
        && let Ok(bytes) = got.bytes().await
        && take::sidecar_matches(&bytes, size)
    {
        return Ok((bytes.to_vec(), false, size));
    }
    tracing::warn!(file = %file, "id index sidecar missing or stale; indexing the file in memory");
    let (entries, size) = index_file(store, file).await?;
    Ok((take::sidecar_bytes(&entries, size), true, size))
}

async fn take_file(
    store: Arc<DynObjectStore>,
    file: StorePath,
    hashes: Arc<Vec<u64>>,
    wanted: Arc<std::collections::HashSet<String>>,
) -> Result<FileTake> {
    let (index, rebuilt, size) = load_index(&store, &file).await?;
    let rows = take::matching_rows(&index, &hashes);
    drop(index);
    let mut out = FileTake {
        batches: Vec::new(),
        candidates: rows.len(),
        rebuilt,
    };
    if rows.is_empty() {
        return Ok(out);
    }
    let reader = ObjectReader {
        store: store.clone(),
        path: file.clone(),
        size,
    };
    let builder = ParquetRecordBatchStreamBuilder::new_with_options(
        reader,
        ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional),
    )
    .await?;
    let (groups, selection, mask) = take::read_plan(&builder, &rows)?;
    let mut stream = builder
        .with_projection(mask)
        .with_row_groups(groups)
        .with_row_selection(selection)
        .with_batch_size(8192)
        .build()?;
    let wanted: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
    while let Some(batch) = stream.next().await {
        out.batches
            .push(take::conform_and_filter(&batch?, &wanted)?);
    }
    Ok(out)
}

/// Takes the rows of `ids` from the data files `files` (relative to the table root of `store`,
/// one Delta version), [`CONCURRENT_FILES`] files at a time.
///
/// # Errors
/// [`crate::Error::ObjectStore`], [`crate::Error::Parquet`], [`crate::Error::Arrow`] when a
/// file cannot be read.
pub async fn take(
    store: &Arc<DynObjectStore>,
    files: &[StorePath],
    ids: &[String],
) -> Result<Taken> {
    let (wanted, hashes) = take::wanted_hashes(ids);
    let wanted: Arc<std::collections::HashSet<String>> =
        Arc::new(wanted.into_iter().map(str::to_owned).collect());
    let hashes = Arc::new(hashes);
    let per_file: Vec<FileTake> = futures::stream::iter(files.iter().cloned())
        .map(|f| take_file(store.clone(), f, hashes.clone(), wanted.clone()))
        .buffer_unordered(CONCURRENT_FILES)
        .try_collect()
        .await?;
    take::assemble(files.len(), per_file)
}

/// Compares every sidecar of `files` with the index rebuilt from its data file.
///
/// # Errors
/// [`crate::Error::ObjectStore`] / [`crate::Error::Parquet`] when a data file cannot be read.
pub async fn check(store: &Arc<DynObjectStore>, files: &[StorePath]) -> Result<IndexCheck> {
    let mut out = IndexCheck {
        files: files.len(),
        ..IndexCheck::default()
    };
    for f in files {
        let (stored, rebuilt, _) = load_index(store, f).await?;
        let (fresh, _) = index_file(store, f).await?;
        if !rebuilt && take::entries_match(&stored, &fresh) {
            out.consistent += 1;
        } else {
            out.bad.push(as_path(f));
        }
    }
    Ok(out)
}
