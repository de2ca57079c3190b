//! Coalesced page reads for a take by ID on a local data file (issue 13 item 1 at 10 M clips).
//!
//! Parquet's reader asks its [`ChunkReader`] for one page at a time; on a plain positioned file
//! ([`PositionedFile`]) that is one `pread` and one allocation per page, about 500 k pages of
//! ~2 KiB per take of 100 k ids out of 10 M clips. Before a file is read, [`wanted_pages`]
//! lists the byte ranges of exactly the pages the selection touches (from the offset index,
//! plus dictionary pages), [`reads`] merges the ranges that touch into runs and keeps the runs
//! of several pages (the scalar columns, where every page holds a wanted row), and
//! [`PrefetchedFile`] reads each run with one `pread` into one buffer and hands the reader
//! zero-copy slices of it. Any other page (the lone trajectory pages, one per child and wanted
//! row) is read from the file as before and counted in [`PrefetchedFile::misses`], so the rows
//! returned never depend on the plan.

use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::errors::Result as ParquetResult;
use deltalake::parquet::file::metadata::ParquetMetaData;
use deltalake::parquet::file::reader::{ChunkReader, Length};

/// A local data file read with positioned reads: one `pread` per request, where Parquet's
/// reader for [`std::fs::File`] duplicates the descriptor and seeks for each page.
#[derive(Debug, Clone)]
pub(crate) struct PositionedFile {
    /// The open file.
    pub(crate) file: Arc<std::fs::File>,
    /// Its length in bytes.
    pub(crate) len: u64,
}

impl Length for PositionedFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for PositionedFile {
    type T = std::io::BufReader<PositionedRead>;

    fn get_read(&self, start: u64) -> ParquetResult<Self::T> {
        Ok(std::io::BufReader::new(PositionedRead {
            file: Arc::clone(&self.file),
            pos: start,
        }))
    }

    fn get_bytes(&self, start: u64, length: usize) -> ParquetResult<Bytes> {
        let mut buf = vec![0; length];
        self.file.read_exact_at(&mut buf, start)?;
        Ok(buf.into())
    }
}

/// A [`Read`] at a position of a shared file (positioned reads, no shared cursor).
#[derive(Debug)]
pub(crate) struct PositionedRead {
    file: Arc<std::fs::File>,
    pos: u64,
}

impl Read for PositionedRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Byte ranges (absolute file offsets, sorted by start) of the pages a reader of `metadata`'s
/// file touches when it reads the file rows `rows` (sorted, distinct, 0-based over the whole
/// file) of the leaf columns in `mask`: per row group holding one of the rows and per projected
/// leaf, the data pages (offset index) holding one of them and the chunk's dictionary page.
/// `None` when the file has no offset index (then nothing is prefetched).
pub(crate) fn wanted_pages(
    metadata: &ParquetMetaData,
    rows: &[usize],
    mask: &ProjectionMask,
) -> Option<Vec<Range<u64>>> {
    let offset_index = metadata.offset_index()?;
    let mut out = Vec::new();
    let (mut lo, mut k) = (0usize, 0usize);
    for (g, rg) in metadata.row_groups().iter().enumerate() {
        let hi = lo + usize::try_from(rg.num_rows()).unwrap_or(0);
        let first = k;
        while k < rows.len() && rows[k] < hi {
            k += 1;
        }
        let group_rows = &rows[first..k];
        if !group_rows.is_empty() {
            let columns = offset_index.get(g)?;
            for (leaf, chunk) in rg.columns().iter().enumerate() {
                if !mask.leaf_included(leaf) {
                    continue;
                }
                let pages = columns.get(leaf)?.page_locations();
                let (chunk_start, _) = chunk.byte_range();
                match pages.first() {
                    Some(p) if u64::try_from(p.offset).ok()? > chunk_start => {
                        out.push(chunk_start..u64::try_from(p.offset).ok()?);
                    }
                    _ => {}
                }
                let mut page = 0usize;
                let mut last = None;
                for &r in group_rows {
                    let rel = i64::try_from(r - lo).ok()?;
                    while page + 1 < pages.len() && pages[page + 1].first_row_index <= rel {
                        page += 1;
                    }
                    if last != Some(page) {
                        let p = pages.get(page)?;
                        let start = u64::try_from(p.offset).ok()?;
                        out.push(start..start + u64::try_from(p.compressed_page_size).ok()?);
                        last = Some(page);
                    }
                }
            }
        }
        lo = hi;
    }
    out.sort_unstable_by_key(|r| r.start);
    Some(out)
}

/// `ranges` (sorted by start) merged where one ends at most `gap` bytes before the next
/// starts (overlaps included), so each result is one read.
pub(crate) fn coalesce(ranges: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r.clone()),
        }
    }
    out
}

/// Merged runs shorter than this are left to the reader's own page-by-page reads \[bytes\]:
/// a lone trajectory page (~2 KiB) gains nothing from the extra buffer (measured at 10 M
/// clips: prefetching every run cost more CPU than it saved; only multi-page runs pay).
pub(crate) const MIN_READ_BYTES: u64 = 16 * 1024;

/// The reads a take makes ahead of the reader for the page ranges `pages` (sorted, from
/// [`wanted_pages`]): the runs of touching pages ([`coalesce`] with no gap) of at least
/// [`MIN_READ_BYTES`].
pub(crate) fn reads(pages: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut runs = coalesce(pages, 0);
    runs.retain(|r| r.end - r.start >= MIN_READ_BYTES);
    runs
}

/// A data file whose wanted byte ranges were read ahead, one `pread` per range: pages inside a
/// range are served as slices of its buffer (no copy, no allocation); anything else is read
/// from the file as by [`PositionedFile`].
#[derive(Debug)]
pub(crate) struct PrefetchedFile {
    /// The file, for reads outside the prefetched ranges.
    file: PositionedFile,
    /// Start offset of each buffer, sorted.
    starts: Vec<u64>,
    /// The bytes of each prefetched range.
    buffers: Vec<Bytes>,
    /// Requests not covered by a prefetched range (shared, see [`Self::misses`]).
    misses: Arc<AtomicUsize>,
}

impl PrefetchedFile {
    /// Reads `ranges` (sorted, disjoint; see [`coalesce`]) of `file`, one `pread` each.
    ///
    /// # Errors
    /// The read's I/O error (a range beyond the end of the file included).
    pub(crate) fn read(file: PositionedFile, ranges: &[Range<u64>]) -> std::io::Result<Self> {
        let mut starts = Vec::with_capacity(ranges.len());
        let mut buffers = Vec::with_capacity(ranges.len());
        for r in ranges {
            let len = usize::try_from(r.end.saturating_sub(r.start))
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let mut buf = vec![0; len];
            file.file.read_exact_at(&mut buf, r.start)?;
            starts.push(r.start);
            buffers.push(Bytes::from(buf));
        }
        Ok(Self {
            file,
            starts,
            buffers,
            misses: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The count of requests that were not inside a prefetched range (each cost a `pread`),
    /// readable after the file was handed to a reader.
    pub(crate) fn misses(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.misses)
    }

    /// The prefetched slice `start..start + length`, if one buffer holds all of it.
    fn slice(&self, start: u64, length: usize) -> Option<Bytes> {
        let i = self
            .starts
            .partition_point(|&s| s <= start)
            .checked_sub(1)?;
        let off = usize::try_from(start - self.starts[i]).ok()?;
        let buf = &self.buffers[i];
        (off.checked_add(length)? <= buf.len()).then(|| buf.slice(off..off + length))
    }
}

impl Length for PrefetchedFile {
    fn len(&self) -> u64 {
        self.file.len
    }
}

impl ChunkReader for PrefetchedFile {
    type T = <PositionedFile as ChunkReader>::T;

    fn get_read(&self, start: u64) -> ParquetResult<Self::T> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.file.get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> ParquetResult<Bytes> {
        if let Some(b) = self.slice(start, length) {
            return Ok(b);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.file.get_bytes(start, length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{
        ArrayRef, Float64Array, ListArray, RecordBatch, StringArray, StructArray,
    };
    use deltalake::arrow::buffer::OffsetBuffer;
    use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema};
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::arrow::arrow_reader::{
        ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
        RowSelectionPolicy,
    };
    use deltalake::parquet::file::metadata::PageIndexPolicy;
    use deltalake::parquet::file::properties::WriterProperties;
    use deltalake::parquet::schema::types::ColumnPath;

    /// A file of `n` rows in row groups of 100: an id, a dictionary-encoded label and a
    /// `List<Struct<x, y>>` of `i % 7` samples (`y` null on every third), small pages.
    fn write_file(path: &std::path::Path, n: usize) {
        let fields = Fields::from(vec![
            Field::new("x", DataType::Float64, false),
            Field::new("y", DataType::Float64, true),
        ]);
        let lens: Vec<usize> = (0..n).map(|i| i % 7).collect();
        let total: usize = lens.iter().sum();
        let x = Float64Array::from_iter_values((0..total).map(|v| v as f64 * 0.5));
        let y: Float64Array = (0..total)
            .map(|v| (v % 3 != 0).then_some(-(v as f64)))
            .collect();
        let items = StructArray::new(fields.clone(), vec![Arc::new(x), Arc::new(y)], None);
        let item = Arc::new(Field::new("element", DataType::Struct(fields), false));
        let list = ListArray::new(
            Arc::clone(&item),
            OffsetBuffer::from_lengths(lens),
            Arc::new(items),
            None,
        );
        let ids = StringArray::from_iter_values((0..n).map(|i| format!("clip-{i:05}")));
        let labels = StringArray::from_iter_values((0..n).map(|i| ["a", "b", "c"][i % 3]));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("label", DataType::Utf8, false),
            Field::new("trajectory", DataType::List(item), false),
        ]));
        let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(labels), Arc::new(list)];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
            .unwrap_or_else(|e| panic!("test batch: {e}"));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(100))
            .set_data_page_size_limit(128)
            .set_write_batch_size(8)
            .set_data_page_row_count_limit(16)
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from("label"), true)
            .build();
        let file = fs_err::File::create(path).unwrap_or_else(|e| panic!("{e}"));
        let mut w = ArrowWriter::try_new(file, schema, Some(props))
            .unwrap_or_else(|e| panic!("writer: {e}"));
        w.write(&batch).unwrap_or_else(|e| panic!("write: {e}"));
        w.close().unwrap_or_else(|e| panic!("close: {e}"));
    }

    /// The batches of `rows` read through `reader` with the take's selection policy.
    fn read<T: ChunkReader + 'static>(
        reader: T,
        metadata: &ArrowReaderMetadata,
        rows: &[usize],
    ) -> Vec<RecordBatch> {
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(reader, metadata.clone());
        let group_rows: Vec<usize> = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows() as usize)
            .collect();
        let (groups, selection) = crate::take::plan_selection(&group_rows, rows);
        builder
            .with_row_groups(groups)
            .with_row_selection(selection)
            .with_row_selection_policy(RowSelectionPolicy::Selectors)
            .with_batch_size(64)
            .build()
            .unwrap_or_else(|e| panic!("reader: {e}"))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("read: {e}"))
    }

    #[test]
    fn prefetched_pages_give_the_rows_of_the_page_by_page_reader() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("t.parquet");
        write_file(&path, 1_000);
        let std_file = fs_err::File::open(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_parts()
            .0;
        let len = std_file.metadata().map(|m| m.len()).unwrap_or(0);
        let file = PositionedFile {
            file: Arc::new(std_file),
            len,
        };
        let metadata = ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Required),
        )
        .unwrap_or_else(|e| panic!("metadata: {e}"));
        let pages: usize = metadata
            .metadata()
            .offset_index()
            .map(|o| o.iter().flatten().map(|c| c.page_locations().len()).sum())
            .unwrap_or(0);
        assert!(pages > 100, "{pages} pages: the test needs small pages");
        let all = ProjectionMask::all();
        // Row group boundaries (99/100, 899/900, the last row), a run, every 13th row, single
        // rows, every row, none.
        let cases: Vec<Vec<usize>> = vec![
            vec![0, 99, 100, 101, 899, 900, 999],
            (300..340).collect(),
            (0..1_000).step_by(13).collect(),
            vec![517],
            (0..1_000).collect(),
            vec![],
        ];
        for rows in cases {
            let want = read(file.clone(), &metadata, &rows);
            let ranges = wanted_pages(metadata.metadata(), &rows, &all)
                .unwrap_or_else(|| panic!("no offset index"));
            let merged = coalesce(&ranges, 0);
            let prefetched = PrefetchedFile::read(file.clone(), &merged)
                .unwrap_or_else(|e| panic!("prefetch: {e}"));
            let misses = prefetched.misses();
            let got = read(prefetched, &metadata, &rows);
            assert_eq!(got, want, "rows {rows:?}");
            let n: usize = got.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(n, rows.len());
            assert_eq!(
                misses.load(Ordering::Relaxed),
                0,
                "rows {rows:?}: a page read outside the plan"
            );
            assert!(merged.len() <= ranges.len());
            // The take's plan (short runs left to the reader): same rows.
            let partial = PrefetchedFile::read(file.clone(), &reads(&ranges))
                .unwrap_or_else(|e| panic!("prefetch: {e}"));
            assert_eq!(read(partial, &metadata, &rows), want, "rows {rows:?}");
            if rows.len() > 100 {
                // Adjacent pages read together: far fewer reads than pages.
                assert!(merged.len() * 4 < ranges.len(), "{} reads", merged.len());
            }
        }
    }
}
