//! `dataloop bench` rows for take by ID (issue 13 items 1 and 9): a synthetic warehouse of
//! `--take-rows` clips written through [`Warehouse::append_batches`] (the ingest's write path:
//! sort, Parquet, id index sidecar, Delta commit), then `--take-ids` ids taken with their blobs
//! by [`Warehouse::take_raw`] beside DuckDB's semi-join on the same Parquet files.
//!
//! Synthetic clips: the bundled logs' warehouse rows replicated under `clip_id#k` with their real
//! trajectories (so sample counts and compression are the real ones), one Delta commit per 1 M
//! rows. The
//! ids taken are every `rows / ids`-th id (spread over every file and row group). Peak RSS per
//! phase is `VmHWM` after resetting it through `/proc/self/clear_refs`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use deltalake::arrow::array::{ArrayRef, RecordBatch, StringArray};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::parquet::arrow::ArrowWriter;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::closed_loop::DataLoop;
use crate::warehouse::{BeforeCommit, Warehouse, warehouse_schema};

/// Rows per Delta commit of the synthetic warehouse.
const COMMIT_ROWS: usize = 1_000_000;
/// Rows per record batch handed to the writer.
const CHUNK_ROWS: usize = 50_000;

/// Resets the process's peak RSS (`VmHWM`) where the kernel allows it.
pub fn reset_peak_rss() {
    // Best effort: without it the figure is the peak since process start.
    let _ = fs_err::write("/proc/self/clear_refs", "5");
}

/// Current RSS (`VmRSS`) \[MiB\]: the baseline a phase's peak is read against.
pub fn rss_mib() -> f64 {
    svckit::procstat::status_kb(Path::new("/proc/self/status"), "VmRSS") as f64 / 1024.0
}

/// Peak RSS since the last [`reset_peak_rss`] \[MiB\].
pub fn peak_rss_mib() -> f64 {
    svckit::procstat::status_kb(Path::new("/proc/self/status"), "VmHWM") as f64 / 1024.0
}

/// Bytes this process has read through `read`/`pread` so far (`rchar` of `/proc/self/io`; 0
/// where the kernel does not report it): what a take copies from the page cache or the disk.
fn read_bytes() -> u64 {
    fs_err::read_to_string("/proc/self/io")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("rchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn bar(len: u64, msg: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg);
    bar
}

/// Builds the synthetic warehouse, times the take beside DuckDB and returns the report text.
///
/// # Errors
/// Store, Parquet or DuckDB errors; a row-count disagreement between the two.
pub async fn run(
    dl: &DataLoop,
    root: &Path,
    args: &crate::bench::BenchArgs,
    python: &Path,
) -> anyhow::Result<String> {
    let (rows, ids, runs) = (args.take_rows, args.take_ids, args.runs);
    let (export, keep) = (!args.skip_export, args.take_dir.as_deref());
    let (_, real) = dl.sql("SELECT * FROM warehouse").await?;
    let schema = warehouse_schema();
    let real = real
        .iter()
        .map(|b| {
            let cols = schema
                .fields()
                .iter()
                .map(|f| {
                    Ok(cast(
                        b.column(b.schema().index_of(f.name())?),
                        f.data_type(),
                    )?)
                })
                .collect::<anyhow::Result<Vec<ArrayRef>>>()?;
            Ok(RecordBatch::try_new(schema.clone(), cols)?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let real = concat_batches(&schema, &real)?;
    let n_real = real.num_rows();
    if n_real == 0 {
        bail!("no clips in the bundled logs");
    }
    let id_col = schema.index_of("clip_id")?;
    let real_ids: Vec<String> = real
        .column(id_col)
        .as_any()
        .downcast_ref::<StringArray>()
        .context("clip_id is text")?
        .iter()
        .map(|s| s.unwrap_or_default().to_owned())
        .collect();
    let synth_id = |i: usize| format!("{}#{}", real_ids[i % n_real], i / n_real);
    let chunk = |start: usize, end: usize| -> crate::Result<RecordBatch> {
        let idx = deltalake::arrow::array::UInt32Array::from_iter_values(
            (start..end).map(|i| (i % n_real) as u32),
        );
        let mut cols = deltalake::arrow::compute::take_record_batch(&real, &idx)?
            .columns()
            .to_vec();
        cols[id_col] = Arc::new(StringArray::from_iter_values((start..end).map(synth_id)));
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    };

    let dir = keep.map_or_else(|| root.join("warehouse_synthetic"), Path::to_path_buf);
    let mut wh = Warehouse::open_or_create(&dir).await?;
    let progress = bar(rows as u64, "write");
    reset_peak_rss();
    let t = Instant::now();
    // A kept table (`--take-dir`) that already holds rows is reused as it is.
    let reused = wh.version() > 0;
    let mut start = if reused { rows } else { 0 };
    while start < rows {
        let end = (start + COMMIT_ROWS).min(rows);
        let chunks = (start..end).step_by(CHUNK_ROWS).map(|s| {
            let c = chunk(s, (s + CHUNK_ROWS).min(end));
            progress.inc(((s + CHUNK_ROWS).min(end) - s) as u64);
            c
        });
        wh.append_batches(chunks, BeforeCommit::Proceed).await?;
        start = end;
    }
    progress.finish_and_clear();
    let write_s = t.elapsed().as_secs_f64();
    let write_rss = peak_rss_mib();
    let bytes: u64 = wh
        .data_files()?
        .iter()
        .map(|f| fs_err::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let files = wh.data_files()?.len();

    let step = (rows / ids.max(1)).max(1);
    let wanted: Vec<String> = (0..rows).step_by(step).take(ids).map(synth_id).collect();
    let id_file = root.join("take_ids.parquet");
    {
        let batch = RecordBatch::try_from_iter([(
            "id",
            Arc::new(StringArray::from_iter_values(wanted.iter())) as ArrayRef,
        )])?;
        let mut w = ArrowWriter::try_new(fs_err::File::create(&id_file)?, batch.schema(), None)?;
        w.write(&batch)?;
        w.close()?;
    }
    let mut times = Vec::new();
    let mut first = (0.0f64, 0.0f64);
    let mut rss = 0.0f64;
    let mut got = (0, 0, 0usize);
    let mut read = 0u64;
    let progress = bar(runs as u64 + 1, "take");
    for run in 0..=runs {
        reset_peak_rss();
        let read_before = read_bytes();
        let t = Instant::now();
        let taken = wh.take_raw(&wanted).await?;
        let s = t.elapsed().as_secs_f64();
        read = read_bytes().saturating_sub(read_before);
        if run > 0 {
            times.push(s);
        } else {
            first = (s, taken.index_load_s);
        }
        rss = rss.max(peak_rss_mib());
        let samples = taken
            .batch
            .as_ref()
            .and_then(|b| {
                b.column_by_name(crate::trajectory::COLUMN)?
                    .as_any()
                    .downcast_ref::<deltalake::arrow::array::ListArray>()
                    .map(|a| a.values().len())
            })
            .unwrap_or(0);
        got = (taken.rows(), taken.files_read, samples);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let t = Instant::now();
    let decoded = crate::warehouse::decode_rows(&[wh
        .take_raw(&wanted)
        .await?
        .batch
        .unwrap_or_else(|| RecordBatch::new_empty(crate::take::take_schema()))])?;
    let decode_s = t.elapsed().as_secs_f64();
    let (duck_ms, duck_rows, duck_bytes) = duckdb_take(python, &dir, &id_file, runs)?;
    let ours = crate::bench::median(times) * 1e3;
    let export = if export {
        export_into_training(&wh, rows).await?
    } else {
        String::new()
    };
    let written = if reused {
        "reused from --take-dir (not written by this run)".to_owned()
    } else {
        format!(
            "written through Warehouse::append_batches in {write_s:.1} s ({:.0} clips/s, peak RSS {write_rss:.0} MiB)",
            rows as f64 / write_s
        )
    };
    let text = format!(
        "\ntake by id: {rows} synthetic clips ({n_real} real rows with their trajectories replicated) in {files} files, {:.2} GB, {written}\n\
         {:<28} {:>10} {:>10} {:>12} {:>10}\n\
         {:<28} {:>7.1} ms {:>10} {:>12} {:>7.0} MiB\n\
         {:<28} {:>7.1} ms {:>10} {:>12} {:>10}\n\
         ({} ids, every {step}th; median of {runs} hot runs; ours: id index + RowSelection on 2 threads, {} files opened, the version's index (sidecars, footers, offset indexes) kept after the first take, which took {:.1} ms of which {:.1} ms loading it; DuckDB threads=2 semi-join on read_parquet of the same files, count + sum(len(trajectory)) computed in DuckDB; decoding the {} trajectories took {decode_s:.2} s more; the last take read {:.0} MB of the files (rchar))\n",
        bytes as f64 / 1e9,
        "take",
        "time",
        "rows",
        "samples",
        "peak RSS",
        "dataloop take_raw",
        ours,
        got.0,
        got.2,
        rss,
        "duckdb semi-join",
        duck_ms,
        duck_rows,
        duck_bytes,
        "-",
        wanted.len(),
        got.1,
        first.0 * 1e3,
        first.1 * 1e3,
        decoded.len(),
        read as f64 / 1e6,
    );
    if got.0 != duck_rows || got.2 != duck_bytes {
        bail!("{text}take and DuckDB disagree on rows or trajectory samples");
    }
    Ok(text + &export)
}

/// The scheduled trigger's export path on the synthetic warehouse: every row streamed through
/// [`crate::feed::train_streamed`] (scan, decode, windows, statistics, penalty search, solve),
/// with its peak RSS (target <= 2 GiB at 10 M rows, issue 13 item 2).
async fn export_into_training(wh: &Warehouse, rows: usize) -> anyhow::Result<String> {
    let no_pin = crate::pinned::EvalPin {
        log_ids: Vec::new(),
        warehouse_version: wh.version(),
        windows: 0,
        fingerprint: String::new(),
        rule: "none (benchmark)".to_owned(),
        chosen_at: String::new(),
    };
    reset_peak_rss();
    let start_rss = rss_mib();
    let t = Instant::now();
    let batches = wh
        .export_stream()
        .await?
        .map(|b| b.map_err(crate::Error::from));
    let fed =
        crate::feed::train_streamed(batches, &no_pin, None, bar(rows as u64, "export")).await?;
    let export_s = t.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    if fed.rows != rows {
        bail!("the export streamed {} rows of {rows}", fed.rows);
    }
    Ok(format!(
        "scheduled export streamed into training: {} rows in {export_s:.1} s ({:.0} rows/s; scan, decode, statistics, {} validation windows, solve), {} windows fitted, peak RSS {rss:.0} MiB ({start_rss:.0} MiB at its start; target <= 2048 MiB), nothing written\n",
        fed.rows,
        fed.rows as f64 / export_s,
        fed.summary.validation_windows,
        fed.summary.windows,
    ))
}

fn duckdb_take(
    python: &Path,
    dir: &Path,
    ids: &Path,
    runs: usize,
) -> anyhow::Result<(f64, usize, usize)> {
    let script = r#"
import duckdb, sys, time
d, ids, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute("SET threads=2")
con.execute("SET enable_progress_bar=false")
# count and trajectory samples of the semi-join (computed in DuckDB: no pyarrow in the venv;
# DuckDB still decodes every selected trajectory page, it only skips handing rows to Python)
q = (f"SELECT count(*), sum(len(trajectory)) FROM (SELECT clip_id, split, category, trajectory "
     f"FROM read_parquet('{d}/*/*.parquet') WHERE clip_id IN (SELECT id FROM read_parquet('{ids}')))")
times = []
for i in range(runs + 1):
    t = time.perf_counter()
    n, blob = con.execute(q).fetchone()
    times.append((time.perf_counter() - t) * 1e3)
times = sorted(times[1:])
print(times[len(times) // 2], n, blob or 0)
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir)
        .arg(ids)
        .arg(runs.max(1).to_string())
        .output()
        .with_context(|| {
            format!(
                "running `{}` (install with scripts/setup)",
                python.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "duckdb take failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let bad = || format!("duckdb printed {text:?}");
    let ms: f64 = parts
        .next()
        .context("duckdb time")?
        .parse()
        .with_context(bad)?;
    let n: usize = parts
        .next()
        .context("duckdb rows")?
        .parse()
        .with_context(bad)?;
    let b: usize = parts
        .next()
        .context("duckdb bytes")?
        .parse()
        .with_context(bad)?;
    Ok((ms, n, b))
}
