//! Take by ID without a full scan (issue 13, item 1): a `clip_id` index per warehouse data file.
//!
//! Every Parquet data file the warehouse commits gets a sidecar
//! `<table>/_dataloop_ids/<data file path, '/' as '__'>.ids`, written before the Delta commit
//! that adds the file, from the file's own `clip_id` column. Data files are immutable and named
//! uniquely, and a take reads exactly the files of the Delta version it opened, so an index
//! entry can never describe another version's rows (a missing or mismatched sidecar is rebuilt
//! in memory from the file, with a warning). Delta readers ignore `_`-prefixed directories.
//!
//! Sidecar layout (little endian): magic `DLIDS001`, `u64` row count, `u64` data file length in
//! bytes, then one `(u64 FNV-1a hash of clip_id, u32 row index)` entry per row, sorted.
//!
//! A take hashes the requested ids, merge-joins them with each file's sorted entries, and reads
//! only the matching rows with a Parquet [`RowSelection`] over the page index (the warehouse
//! writes small pages, see [`crate::warehouse::writer_properties`]), so the trajectory samples
//! of other rows are mostly never read. Rows are then checked against the requested ids (hash
//! collisions are dropped).
//!
//! This module reads local tables with blocking I/O on threads; tables on S3 go through the
//! same index, layout and selection with `object_store` and Parquet's async reader
//! ([`crate::take_remote`]).

use std::collections::HashSet;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::{cast, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{
    ArrowReaderBuilder, ParquetRecordBatchReaderBuilder, RowSelection,
};

use crate::error::{Error, Result};

/// Directory of the sidecars inside the table directory.
pub const INDEX_DIR: &str = "_dataloop_ids";
pub(crate) const MAGIC: &[u8; 8] = b"DLIDS001";
pub(crate) const HEADER: usize = 24;
pub(crate) const ENTRY: usize = 12;

/// The columns a take (and an export) returns, in order: the ids and labels, then the complex
/// field ([`crate::trajectory::columns`]).
pub const TAKE_COLUMNS: [&str; 9] = [
    "clip_id",
    "split",
    "category",
    "object_type",
    "present_index",
    "lane_heading_rad",
    "lane_offset_m",
    "lane_ahead_heading_rad",
    "trajectory",
];

/// Schema of a take's output: [`TAKE_COLUMNS`] with their warehouse types (strings Utf8,
/// `trajectory` the `List<Struct>` of [`crate::trajectory::list_type`]).
pub fn take_schema() -> SchemaRef {
    let full = crate::warehouse::warehouse_schema();
    Arc::new(Schema::new(
        TAKE_COLUMNS
            .iter()
            .filter_map(|c| full.field_with_name(c).ok().cloned())
            .collect::<Vec<Field>>(),
    ))
}

/// 64-bit FNV-1a of `id` (stable across runs and platforms; the index key).
pub fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The sidecar path of `data_file` (inside `table_dir`).
pub fn sidecar_path(table_dir: &Path, data_file: &Path) -> PathBuf {
    let rel = data_file.strip_prefix(table_dir).unwrap_or(data_file);
    table_dir
        .join(INDEX_DIR)
        .join(sidecar_name(&rel.to_string_lossy()))
}

/// The sidecar's file name for the data file at `rel` (relative to the table root).
pub(crate) fn sidecar_name(rel: &str) -> String {
    format!("{}.ids", rel.replace(['/', '\\'], "__"))
}

/// Sidecar bytes of sorted `entries` for a data file of `len` bytes.
pub(crate) fn sidecar_bytes(entries: &[(u64, u32)], len: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + entries.len() * ENTRY);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    for (h, row) in entries {
        bytes.extend_from_slice(&h.to_le_bytes());
        bytes.extend_from_slice(&row.to_le_bytes());
    }
    bytes
}

/// Whether `bytes` is a sidecar of a data file of `len` bytes.
pub(crate) fn sidecar_matches(bytes: &[u8], len: u64) -> bool {
    bytes.len() >= HEADER
        && &bytes[..8] == MAGIC
        && u64_at(bytes, 16) == len
        && (bytes.len() - HEADER) as u64 == u64_at(bytes, 8) * ENTRY as u64
}

/// Appends the `(hash, row)` entries of one batch of `clip_id`s starting at row `*row`.
///
/// # Errors
/// [`Error::Arrow`] when the ids are not text; [`Error::IdIndex`] beyond 2^32 rows.
pub(crate) fn add_entries(
    entries: &mut Vec<(u64, u32)>,
    row: &mut u32,
    ids: &dyn Array,
    file: &Path,
) -> Result<()> {
    let ids = cast(ids, &DataType::Utf8)?;
    let ids = ids.as_string::<i32>();
    for i in 0..ids.len() {
        entries.push((id_hash(ids.value(i)), *row));
        *row = row.checked_add(1).ok_or_else(|| Error::IdIndex {
            path: file.to_path_buf(),
            reason: "more than 2^32 rows".to_owned(),
        })?;
    }
    Ok(())
}

/// What a take read.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    /// Rows sorted by `clip_id`, schema [`take_schema`]; each requested id that is stored
    /// appears once per stored row (a duplicate request is taken once; absent ids add nothing).
    pub batch: Option<RecordBatch>,
    /// Data files in the version read.
    pub files: usize,
    /// Files in which at least one requested id was found in the index (only those were opened).
    pub files_read: usize,
    /// Rows selected through the index before the id check (>= rows returned).
    pub candidate_rows: usize,
    /// Files whose sidecar was missing or stale, indexed in memory instead.
    pub rebuilt: usize,
    /// Time spent loading the version's index (sidecars, footers, offset indexes) \[s\]; 0 when
    /// it was already loaded ([`crate::take_cache::TakeCache`]) and on S3 (not measured).
    pub index_load_s: f64,
}

impl Taken {
    /// Rows returned.
    pub fn rows(&self) -> usize {
        self.batch.as_ref().map_or(0, RecordBatch::num_rows)
    }
}

/// Writes the sidecar of `data_file` from its `clip_id` column (tmp file + rename). Returns the
/// rows indexed.
///
/// # Errors
/// [`Error::Io`] / [`Error::Parquet`] when the file cannot be read or the sidecar written.
pub fn write_sidecar(table_dir: &Path, data_file: &Path) -> Result<usize> {
    let (entries, len) = index_file(data_file)?;
    let path = sidecar_path(table_dir, data_file);
    let dir = table_dir.join(INDEX_DIR);
    fs_err::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let bytes = sidecar_bytes(&entries, len);
    let tmp = path.with_extension("ids.tmp");
    let mut f = fs_err::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    fs_err::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(entries.len())
}

/// Sorted `(hash, row)` entries of `data_file` and its length in bytes.
fn index_file(data_file: &Path) -> Result<(Vec<(u64, u32)>, u64)> {
    let file = fs_err::File::open(data_file)
        .map_err(|e| Error::io(data_file, e))?
        .into_parts()
        .0;
    let len = file.metadata().map_err(|e| Error::io(data_file, e))?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let idx = builder.schema().index_of("clip_id")?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [idx]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()?;
    let mut entries = Vec::new();
    let mut row: u32 = 0;
    for batch in reader {
        let batch = batch?;
        add_entries(&mut entries, &mut row, batch.column(0).as_ref(), data_file)?;
    }
    entries.sort_unstable();
    Ok((entries, len))
}

/// The index of `data_file`: its sidecar when present and matching the file, else rebuilt from
/// the file (`true` in the second field).
pub(crate) fn load_index(table_dir: &Path, data_file: &Path) -> Result<(Vec<u8>, bool)> {
    let path = sidecar_path(table_dir, data_file);
    let len = fs_err::metadata(data_file)
        .map_err(|e| Error::io(data_file, e))?
        .len();
    if let Ok(bytes) = fs_err::read(&path)
        && sidecar_matches(&bytes, len)
    {
        return Ok((bytes, false));
    }
    tracing::warn!(file = %data_file.display(), "id index sidecar missing or stale; indexing the file in memory");
    let (entries, _) = index_file(data_file)?;
    Ok((sidecar_bytes(&entries, len), true))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Rows of the index `bytes` whose hash is in the sorted, deduplicated `hashes` (merge join).
pub(crate) fn matching_rows(bytes: &[u8], hashes: &[u64]) -> Vec<usize> {
    let n = (bytes.len() - HEADER) / ENTRY;
    let entry_hash = |i: usize| u64_at(bytes, HEADER + i * ENTRY);
    let mut rows = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n && j < hashes.len() {
        let h = entry_hash(i);
        match h.cmp(&hashes[j]) {
            std::cmp::Ordering::Less => {
                // Gallop: skip ahead by binary search when the query set is sparse.
                let (mut lo, mut hi) = (i + 1, n);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if entry_hash(mid) < hashes[j] {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                i = lo;
            }
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                rows.push(u32_at(bytes, HEADER + i * ENTRY + 8) as usize);
                i += 1;
            }
        }
    }
    rows.sort_unstable();
    rows
}

/// Takes the rows of `ids` from the data files `files` (one Delta version) of the table in
/// `table_dir`, on up to `threads` threads, loading the files' index first (without a cache:
/// see [`crate::take_cache::TakeCache`] to keep it across takes).
///
/// # Errors
/// [`Error::Io`], [`Error::Parquet`], [`Error::Arrow`] when a file cannot be read.
pub fn take(table_dir: &Path, files: &[PathBuf], ids: &[String], threads: usize) -> Result<Taken> {
    let index = crate::take_cache::VersionIndex::load(table_dir, -1, files, threads, None)?;
    let mut taken = index.take(ids, threads)?;
    taken.index_load_s = index.load_s();
    Ok(taken)
}

/// The distinct requested ids and their sorted, distinct hashes.
pub(crate) fn wanted_hashes(ids: &[String]) -> (HashSet<&str>, Vec<u64>) {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut hashes: Vec<u64> = wanted.iter().map(|id| id_hash(id)).collect();
    hashes.sort_unstable();
    hashes.dedup();
    (wanted, hashes)
}

/// The take of `files` data files from what each file gave, rows sorted by `clip_id`.
///
/// # Errors
/// [`Error::Arrow`] when the batches do not fit [`take_schema`].
pub(crate) fn assemble(files: usize, per_file: Vec<FileTake>) -> Result<Taken> {
    let mut taken = Taken {
        files,
        ..Taken::default()
    };
    let mut batches = Vec::new();
    for f in per_file {
        taken.files_read += usize::from(f.candidates > 0);
        taken.candidate_rows += f.candidates;
        taken.rebuilt += usize::from(f.rebuilt);
        batches.extend(f.batches);
    }
    // One copy: the rows of every batch gathered in `clip_id` order (no concatenation; the
    // trajectories one slice per row and child, `crate::take_gather`).
    batches.retain(|b| b.num_rows() > 0);
    let ids: Vec<_> = batches
        .iter()
        .map(|b| b.column(0).as_string::<i32>())
        .collect();
    let mut order: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(k, b)| (0..b.num_rows()).map(move |r| (k, r)))
        .collect();
    order.sort_by(|a, b| ids[a.0].value(a.1).cmp(ids[b.0].value(b.1)));
    taken.batch = Some(if order.is_empty() {
        RecordBatch::new_empty(take_schema())
    } else {
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        crate::take_gather::gather(&refs, &order)?
    });
    Ok(taken)
}

/// What one data file gave a take.
#[derive(Debug, Default)]
pub(crate) struct FileTake {
    /// Rows of requested ids, schema [`take_schema`].
    pub(crate) batches: Vec<RecordBatch>,
    /// Rows selected through the index.
    pub(crate) candidates: usize,
    /// Whether the index was rebuilt from the file.
    pub(crate) rebuilt: bool,
}

/// The row groups holding one of the sorted `rows` (file row numbers) of a file whose row
/// groups have `group_rows` rows each, and the selection of those rows within them.
pub(crate) fn plan_selection(group_rows: &[usize], rows: &[usize]) -> (Vec<usize>, RowSelection) {
    let mut groups = Vec::new();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let (mut lo, mut base, mut k) = (0usize, 0usize, 0usize);
    for (g, &n) in group_rows.iter().enumerate() {
        let hi = lo + n;
        let first = k;
        while k < rows.len() && rows[k] < hi {
            k += 1;
        }
        if k > first {
            groups.push(g);
            for &r in &rows[first..k] {
                let rel = base + r - lo;
                match ranges.last_mut() {
                    Some(last) if last.end == rel => last.end += 1,
                    _ => ranges.push(rel..rel + 1),
                }
            }
            base += n;
        }
        lo = hi;
    }
    (
        groups,
        RowSelection::from_consecutive_ranges(ranges.into_iter(), base),
    )
}

/// `batch` (a file's projected columns) cast to [`take_schema`] and cut to the rows whose id is
/// in `wanted`.
///
/// # Errors
/// [`Error::Arrow`] when a column is missing or cannot be cast.
pub(crate) fn conform_and_filter(
    batch: &RecordBatch,
    wanted: &HashSet<&str>,
) -> Result<RecordBatch> {
    let target = take_schema();
    let columns = target
        .fields()
        .iter()
        .map(|f| {
            let c = batch.column(batch.schema().index_of(f.name())?);
            Ok(cast(c, f.data_type())?)
        })
        .collect::<Result<Vec<_>>>()?;
    let batch = RecordBatch::try_new(target, columns)?;
    let ids = batch.column(0).as_string::<i32>();
    let keep: BooleanArray = (0..ids.len())
        .map(|i| Some(wanted.contains(ids.value(i))))
        .collect();
    if keep.true_count() == keep.len() {
        // No hash collision in this batch (the usual case): no copy.
        return Ok(batch);
    }
    Ok(filter_record_batch(&batch, &keep)?)
}

/// Result of [`check`]: how the sidecars of one version compare with their files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexCheck {
    /// Data files in the version.
    pub files: usize,
    /// Files with a sidecar whose entries equal the ones rebuilt from the file.
    pub consistent: usize,
    /// Files without a usable sidecar or with entries that differ, by path.
    pub bad: Vec<PathBuf>,
}

/// Compares every sidecar of `files` with the index rebuilt from its data file.
///
/// # Errors
/// [`Error::Io`] / [`Error::Parquet`] when a data file cannot be read.
pub fn check(table_dir: &Path, files: &[PathBuf]) -> Result<IndexCheck> {
    let mut out = IndexCheck {
        files: files.len(),
        ..IndexCheck::default()
    };
    for f in files {
        let (stored, rebuilt) = load_index(table_dir, f)?;
        let (fresh, _) = index_file(f)?;
        if !rebuilt && entries_match(&stored, &fresh) {
            out.consistent += 1;
        } else {
            out.bad.push(f.clone());
        }
    }
    Ok(out)
}

/// What a take reads of one data file, from its reader `builder` (sync or async): the row
/// groups holding `rows` (file row indices, sorted), the selection within them
/// ([`plan_selection`]) and the projection of [`TAKE_COLUMNS`].
///
/// # Errors
/// [`Error::Arrow`] when the file lacks one of [`TAKE_COLUMNS`].
pub(crate) fn read_plan<T>(
    builder: &ArrowReaderBuilder<T>,
    rows: &[usize],
) -> Result<(Vec<usize>, RowSelection, ProjectionMask)> {
    let group_rows: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| usize::try_from(rg.num_rows()).unwrap_or(0))
        .collect();
    let (groups, selection) = plan_selection(&group_rows, rows);
    let schema = builder.schema();
    let indices = TAKE_COLUMNS
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    Ok((groups, selection, mask))
}

/// Whether the sidecar bytes `stored` (layout in the module docs) hold exactly the entries
/// `fresh` rebuilt from the data file.
pub(crate) fn entries_match(stored: &[u8], fresh: &[(u64, u32)]) -> bool {
    stored.len() >= HEADER
        && (stored.len() - HEADER) / ENTRY == fresh.len()
        && fresh.iter().enumerate().all(|(i, (h, r))| {
            u64_at(stored, HEADER + i * ENTRY) == *h && u32_at(stored, HEADER + i * ENTRY + 8) == *r
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_join_finds_each_hash_once_per_entry() {
        let mut bytes = vec![0; HEADER];
        let entries = [(1u64, 5u32), (3, 0), (3, 7), (9, 2), (12, 1)];
        for (h, r) in entries {
            bytes.extend_from_slice(&h.to_le_bytes());
            bytes.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(matching_rows(&bytes, &[3, 4, 12]), vec![0, 1, 7]);
        assert_eq!(matching_rows(&bytes, &[0, 2, 100]), Vec::<usize>::new());
        assert_eq!(matching_rows(&bytes, &[1, 9]), vec![2, 5]);
    }

    #[test]
    fn selection_keeps_only_groups_with_rows() {
        // Groups of 3, 4 and 2 rows; rows 1 and 2 (group 0) and 7 (group 2, its first row).
        let (groups, selection) = plan_selection(&[3, 4, 2], &[1, 2, 7]);
        assert_eq!(groups, vec![0, 2]);
        assert_eq!(selection.row_count(), 3);
        assert_eq!(selection.skipped_row_count(), 2);
        let (groups, selection) = plan_selection(&[3, 4], &[]);
        assert!(groups.is_empty());
        assert_eq!(selection.row_count(), 0);
    }
}
