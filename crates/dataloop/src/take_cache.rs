//! The take-by-ID index of one Delta version, loaded once and kept (issue 13 item 1 at 10 M
//! clips): for every data file of the version its `clip_id` sidecar entries
//! ([`crate::take`], parsed into sorted hash and row arrays) and its Parquet metadata (footer
//! and offset index, [`ArrowReaderMetadata`]). Loading reads every file's sidecar, footer and
//! page index on two threads; a take on a loaded version only merge-joins the requested hashes
//! with the arrays and opens the files that hold one of them, with their metadata already
//! decoded.
//!
//! [`TakeCache`] holds the index of the last version taken from. It is keyed by the Delta
//! version AND the exact list of data files: a take on another version (a new commit, a
//! refresh, time travel) loads that version's index, reusing the entries of data files the two
//! versions share (data files are immutable and uniquely named, so an entry keyed by path and
//! length can never describe other rows). Memory: about 12 bytes per row plus the files'
//! decoded metadata (one `PageLocation`, 24 bytes, per data page).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use deltalake::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelectionPolicy,
};
use deltalake::parquet::file::metadata::PageIndexPolicy;

use crate::error::{Error, Result};
use crate::take::{self, FileTake, Taken};
use crate::take_prefetch::{self, PositionedFile, PrefetchedFile};

/// One data file's part of a [`VersionIndex`].
pub struct FileIndex {
    /// The data file.
    path: PathBuf,
    /// The open data file.
    file: PositionedFile,
    /// Its length in bytes when loaded.
    len: u64,
    /// FNV-1a hashes of the file's `clip_id`s, sorted ([`take::id_hash`]).
    hashes: Vec<u64>,
    /// File row index of each entry of `hashes`.
    rows: Vec<u32>,
    /// Footer and offset index, decoded.
    metadata: ArrowReaderMetadata,
    /// Whether the entries were rebuilt from the file (sidecar missing or stale).
    rebuilt: bool,
}

impl std::fmt::Debug for FileIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileIndex")
            .field("path", &self.path)
            .field("rows", &self.rows.len())
            .field("rebuilt", &self.rebuilt)
            .finish_non_exhaustive()
    }
}

impl FileIndex {
    /// Loads the index of `data_file` of the table in `table_dir`: its sidecar (rebuilt from
    /// the file when missing or stale) and its metadata with the offset index.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Parquet`] when the file cannot be read.
    fn load(table_dir: &Path, data_file: &Path) -> Result<Self> {
        let file = fs_err::File::open(data_file)
            .map_err(|e| Error::io(data_file, e))?
            .into_parts()
            .0;
        let len = file.metadata().map_err(|e| Error::io(data_file, e))?.len();
        let (bytes, rebuilt) = take::load_index(table_dir, data_file)?;
        let n = (bytes.len() - take::HEADER) / take::ENTRY;
        let mut hashes = Vec::with_capacity(n);
        let mut rows = Vec::with_capacity(n);
        for i in 0..n {
            let at = take::HEADER + i * take::ENTRY;
            hashes.push(take::u64_at(&bytes, at));
            rows.push(take::u32_at(&bytes, at + 8));
        }
        drop(bytes);
        let file = PositionedFile {
            file: Arc::new(file),
            len,
        };
        let metadata = ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional),
        )?;
        Ok(Self {
            path: data_file.to_path_buf(),
            file,
            len,
            hashes,
            rows,
            metadata,
            rebuilt,
        })
    }

    /// File rows whose hash is in the sorted, distinct `wanted` (merge join with galloping),
    /// sorted.
    fn matching_rows(&self, wanted: &[u64]) -> Vec<usize> {
        let h = &self.hashes;
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < h.len() && j < wanted.len() {
            match h[i].cmp(&wanted[j]) {
                std::cmp::Ordering::Less => i += h[i..].partition_point(|&x| x < wanted[j]),
                std::cmp::Ordering::Greater => j += wanted[j..].partition_point(|&x| x < h[i]),
                std::cmp::Ordering::Equal => {
                    out.push(self.rows[i] as usize);
                    i += 1;
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// The rows of `hashes` in this file, cut to the ids in `wanted`.
    fn take(&self, hashes: &[u64], wanted: &HashSet<&str>) -> Result<FileTake> {
        let rows = self.matching_rows(hashes);
        let mut out = FileTake {
            batches: Vec::new(),
            candidates: rows.len(),
            rebuilt: self.rebuilt,
        };
        if rows.is_empty() {
            return Ok(out);
        }
        let (groups, selection, mask) = take::read_plan(
            &ParquetRecordBatchReaderBuilder::new_with_metadata(
                self.file.clone(),
                self.metadata.clone(),
            ),
            &rows,
        )?;
        // Runs of adjacent selected pages (the scalar columns) read ahead, one `pread` per run
        // (`crate::take_prefetch`), instead of one `pread` and allocation per page.
        let ranges = take_prefetch::wanted_pages(self.metadata.metadata(), &rows, &mask)
            .map(|r| take_prefetch::reads(&r))
            .unwrap_or_default();
        let file = PrefetchedFile::read(self.file.clone(), &ranges)
            .map_err(|e| Error::io(&self.path, e))?;
        let misses = file.misses();
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone());
        let reader = builder
            .with_projection(mask)
            .with_row_groups(groups)
            .with_row_selection(selection)
            .with_row_selection_policy(RowSelectionPolicy::Selectors)
            .with_batch_size(8192)
            .build()?;
        for batch in reader {
            out.batches.push(take::conform_and_filter(&batch?, wanted)?);
        }
        tracing::debug!(file = %self.path.display(), reads = ranges.len(), misses = misses.load(Ordering::Relaxed), "take read");
        Ok(out)
    }
}

/// The take index of one Delta version of a local table: one [`FileIndex`] per data file.
#[derive(Debug)]
pub struct VersionIndex {
    /// The Delta version.
    version: i64,
    /// Per data file, in the version's file order.
    files: Vec<Arc<FileIndex>>,
    /// Wall time the load took \[s\].
    load_s: f64,
}

impl VersionIndex {
    /// Loads the index of `files` (the data files of `version` of the table in `table_dir`) on
    /// up to `threads` threads, reusing the entries of `previous` for files it already holds
    /// (same path and length).
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Parquet`] when a file cannot be read.
    pub fn load(
        table_dir: &Path,
        version: i64,
        files: &[PathBuf],
        threads: usize,
        previous: Option<&Self>,
    ) -> Result<Self> {
        let t = Instant::now();
        let known: HashMap<&Path, &Arc<FileIndex>> = previous
            .map(|p| p.files.iter().map(|f| (f.path.as_path(), f)).collect())
            .unwrap_or_default();
        let files = par_map(files, threads, |f| match known.get(f.as_path()) {
            Some(fi)
                if fs_err::metadata(f)
                    .map(|m| m.len() == fi.len)
                    .unwrap_or(false) =>
            {
                Ok(Arc::clone(fi))
            }
            _ => FileIndex::load(table_dir, f).map(Arc::new),
        })?;
        Ok(Self {
            version,
            files,
            load_s: t.elapsed().as_secs_f64(),
        })
    }

    /// Whether this index describes `version` with exactly the data files `files`.
    fn describes(&self, version: i64, files: &[PathBuf]) -> bool {
        self.version == version
            && self.files.len() == files.len()
            && self.files.iter().zip(files).all(|(a, b)| a.path == *b)
    }

    /// Wall time the load took \[s\].
    pub fn load_s(&self) -> f64 {
        self.load_s
    }

    /// Rows indexed (all files).
    pub fn rows(&self) -> usize {
        self.files.iter().map(|f| f.rows.len()).sum()
    }

    /// Takes the rows of `ids` on up to `threads` threads (files holding a requested id are
    /// read in parallel, one per thread at a time).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Parquet`], [`Error::Arrow`] when a file cannot be read.
    pub fn take(&self, ids: &[String], threads: usize) -> Result<Taken> {
        let (wanted, hashes) = take::wanted_hashes(ids);
        let per_file = par_map(&self.files, threads, |f| f.take(&hashes, &wanted))?;
        take::assemble(self.files.len(), per_file)
    }
}

/// The [`VersionIndex`] of the last version a [`crate::warehouse::Warehouse`] took from,
/// shared by the handles of one table ([`TakeCache::clone`] shares it).
#[derive(Debug, Clone, Default)]
pub struct TakeCache(Arc<Mutex<Option<Arc<VersionIndex>>>>);

impl TakeCache {
    /// Takes `ids` from `version` (data files `files`) of the table in `table_dir`, loading
    /// the version's index unless this cache holds it; `Taken::index_load_s` is 0 on a hit.
    ///
    /// # Errors
    /// As [`VersionIndex::load`] and [`VersionIndex::take`].
    pub fn take(
        &self,
        table_dir: &Path,
        version: i64,
        files: &[PathBuf],
        ids: &[String],
        threads: usize,
    ) -> Result<Taken> {
        let held = self.0.lock().ok().and_then(|g| g.clone());
        let (index, load_s) = match held {
            Some(ix) if ix.describes(version, files) => (ix, 0.0),
            previous => {
                let ix = Arc::new(VersionIndex::load(
                    table_dir,
                    version,
                    files,
                    threads,
                    previous.as_deref(),
                )?);
                if let Ok(mut g) = self.0.lock() {
                    *g = Some(Arc::clone(&ix));
                }
                let s = ix.load_s;
                (ix, s)
            }
        };
        let mut taken = index.take(ids, threads)?;
        taken.index_load_s = load_s;
        Ok(taken)
    }

    /// Drops the held index (memory back; the next take loads its version's index).
    pub fn clear(&self) {
        if let Ok(mut g) = self.0.lock() {
            *g = None;
        }
    }
}

/// `f` over `items` on up to `threads` scoped threads (a shared work queue), results in the
/// order of `items`; the first error wins.
fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, items.len().max(1));
    let parts: Vec<Result<Vec<(usize, R)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(k) else { break };
                        out.push((k, f(item)?));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::QueryRuntime("take worker panicked".into())))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(items.len());
    for p in parts {
        all.extend(p?);
    }
    all.sort_unstable_by_key(|(k, _)| *k);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_map_keeps_order_and_fails_on_first_error() {
        let items: Vec<usize> = (0..50).collect();
        let doubled = par_map(&items, 3, |&x| Ok(x * 2)).unwrap_or_default();
        assert_eq!(doubled, (0..50).map(|x| x * 2).collect::<Vec<_>>());
        let failed = par_map(&items, 2, |&x| {
            if x == 17 {
                Err(Error::QueryRuntime("boom".into()))
            } else {
                Ok(x)
            }
        });
        assert!(failed.is_err());
    }
}
