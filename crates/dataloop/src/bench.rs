//! `dataloop bench`: ingest throughput on the bundled logs and OLAP filter latency on a scaled
//! copy of the real simple fields, beside DuckDB (PyPI wheel in `.tools/venv`) on the SAME
//! Parquet files in the same run. Prints a table; nothing here is asserted.
//!
//! Scaling: the real clips' simple rows are replicated `--rows / clips` times with a suffix on
//! `clip_id` and `start_time_s` shifted by one hour per copy (deterministic, documented), so the
//! value distributions are the real ones.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context as _, bail};
use clap::Args;
use deltalake::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use deltalake::arrow::compute::concat_batches;

use crate::closed_loop::DataLoop;
use crate::config::Config;
use crate::olap::{Olap, session};
use crate::query;
use crate::report::out;
use crate::warehouse::{BeforeCommit, simple_schema};

/// `dataloop bench` flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Rows of the scaled OLAP table.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Timed repetitions per measurement (the median is shown).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Ingest batches to time.
    #[arg(long, default_value_t = 3)]
    pub ingest_runs: usize,
    /// Training windows for the closed-form fit timing (the bundled logs' training windows
    /// replicated under new clip ids; 0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub train_windows: usize,
    /// Clips of the synthetic warehouse for the take-by-id rows (0 skips them).
    #[arg(long, default_value_t = 1_000_000)]
    pub take_rows: usize,
    /// Ids taken (with their trajectories) per take-by-id run.
    #[arg(long, default_value_t = 100_000)]
    pub take_ids: usize,
    /// Skip the scheduled export of the synthetic take warehouse into training.
    #[arg(long)]
    pub skip_export: bool,
    /// Keep the synthetic take warehouse in this directory (not deleted after the run) and
    /// reuse it when it already holds a table (written with the same `--take-rows`): repeated
    /// take measurements without rewriting.
    #[arg(long)]
    pub take_dir: Option<PathBuf>,
    /// Copies of the bundled AV2 sensor logs ingested as ONE batch for the ingest-at-scale row
    /// (each copy is a tree of symlinks under a new log name; 0 skips it).
    #[arg(long, default_value_t = 100)]
    pub ingest_copies: usize,
    /// Python with the `duckdb` package (default `.tools/venv/bin/python`).
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// An ad-hoc filter timed beside the configured rules.
const ADHOC: (&str, &str) = (
    "adhoc_type_speed",
    "object_type = 'pedestrian' AND mean_speed_mps > 1.0",
);

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the benchmark.
///
/// # Errors
/// When ingest, queries or DuckDB fail.
pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let root = tempfile::Builder::new()
        .prefix("dataloop-bench-")
        .tempdir()?;
    let config_rules = config.rules.clone();
    let input = if Path::new("data/driving").is_dir() {
        PathBuf::from("data/driving")
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/driving"))
    };
    // Each run ingests into a fresh data directory: a re-ingest of the same logs adds nothing.
    let mut ingest_s = Vec::new();
    let mut clips = 0;
    let mut last = None;
    for run in 0..args.ingest_runs.max(1) {
        let mut run_config = config.clone();
        run_config.data_dir = root.path().join(format!("data-{run}"));
        let mut dl = DataLoop::open(run_config, false).await?;
        let t = Instant::now();
        let report = dl
            .ingest(
                std::slice::from_ref(&input),
                BeforeCommit::Proceed,
                SystemTime::now(),
            )
            .await?;
        ingest_s.push(t.elapsed().as_secs_f64());
        clips = report.clips;
        last = Some(dl);
    }
    let dl = last.context("no ingest run")?;
    let ingest_med = median(ingest_s);
    if args.ingest_copies > 0 {
        out(&scaled_ingest(&config, root.path(), &input, args.ingest_copies).await?)?;
    }
    if args.take_rows > 0 {
        out(&crate::bench_take::run(&dl, root.path(), &args, &python(&args)).await?)?;
    }
    if args.train_windows > 0 {
        out(&train_timing(&dl, args.train_windows).await?)?;
    }

    // Scaled OLAP table from the real simple rows.
    let (_, real) = dl
        .sql(&format!("SELECT {} FROM olap", column_list()))
        .await?;
    let real = concat_batches(&simple_schema(), &real)?;
    let copies = args.rows.div_ceil(real.num_rows().max(1)).max(1);
    let scaled_dir = root.path().join("olap_scaled");
    let olap = Olap::open(&scaled_dir)?;
    let t = Instant::now();
    let mut written = 0;
    let mut files = 0;
    // 100 copies per batch file: files of ~80k rows (~10 row groups), not thousands of tiny ones.
    for chunk in (0..copies).collect::<Vec<_>>().chunks(100) {
        let parts = chunk
            .iter()
            .map(|&k| replicate(&real, k))
            .collect::<anyhow::Result<Vec<_>>>()?;
        written += olap.write_batch(&format!("{:05}", chunk[0]), parts).await?;
        files += 1;
    }
    let write_s = t.elapsed().as_secs_f64();
    let ctx = session();
    olap.register(&ctx).await?;
    // The configured mining rules with their default parameters, plus one ad-hoc filter.
    let mut queries: Vec<(String, String)> = Vec::new();
    for name in config_rules.keys() {
        let rule = crate::trigger::resolve(
            &crate::trigger::MiningRequest {
                rule: name.clone(),
                params: Default::default(),
            },
            &config_rules,
        )?;
        queries.push((name.clone(), rule.predicate));
    }
    queries.push((ADHOC.0.to_owned(), ADHOC.1.to_owned()));
    let mut df_rows = Vec::new();
    for (name, predicate) in &queries {
        let sql = format!("SELECT count(*) AS n FROM olap WHERE {predicate}");
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..=args.runs {
            let t = Instant::now();
            let batches = query::run(&ctx, &sql).await?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            n = query::to_json_rows(&batches)
                .first()
                .and_then(|r| r["n"].as_i64())
                .unwrap_or(-1);
        }
        times.remove(0); // first run warms the caches
        df_rows.push((name, predicate, median(times), n));
    }
    let predicates: Vec<&str> = queries.iter().map(|q| q.1.as_str()).collect();
    let duck = duckdb_times(&args, &scaled_dir, args.runs, &predicates)?;

    let mut text = format!(
        "dataloop bench ({} cores)\n\ningest (bundled logs: read, cut, Delta commit, OLAP file), median of {}: {:.3} s per batch, {} clips -> {:.0} clips/s\nOLAP scaled table: {written} rows ({copies} copies of the real rows) in {files} batches x 3 source partitions written in {:.2} s ({:.0} rows/s)\n\n",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        args.ingest_runs.max(1),
        ingest_med,
        clips,
        clips as f64 / ingest_med,
        write_s,
        written as f64 / write_s
    );
    text.push_str(&format!(
        "{:<20} {:>12} {:>12} {:>10} {:>10}\n",
        "filter", "datafusion", "duckdb", "rows(df)", "rows(duck)"
    ));
    for ((name, _, ms, n), (dms, dn)) in df_rows.iter().zip(&duck) {
        text.push_str(&format!(
            "{name:<20} {ms:>9.1} ms {dms:>9.1} ms {n:>10} {dn:>10}
"
        ));
    }
    text.push_str(&format!(
        "\n(medians of {} hot runs each on the same Parquet files; DataFusion target_partitions=2, DuckDB threads=2)\n",
        args.runs
    ));
    out(&text)?;
    let mismatch = df_rows.iter().zip(&duck).any(|(a, b)| a.3 != b.1);
    if mismatch {
        bail!("DataFusion and DuckDB disagree on a row count");
    }
    Ok(ExitCode::SUCCESS)
}

/// Times [`crate::fit::train`] (full fit: statistics, five penalties on the validation part,
/// final solve) on `n` windows: the bundled training windows replicated with a `#k` suffix on
/// their clip ids (so none is deduplicated and the validation split keeps whole tracks).
async fn train_timing(dl: &DataLoop, n: usize) -> anyhow::Result<String> {
    let real: Vec<(String, crate::model::AgentWindow)> =
        crate::warehouse::decode_rows(&dl.current_warehouse().await?.export_all().await?)?
            .into_iter()
            .filter(|c| c.split == "train")
            .map(|c| {
                let w = crate::model::AgentWindow::from_trajectory(&c.trajectory);
                (c.clip_id, w)
            })
            .collect();
    if real.is_empty() {
        bail!("no training windows in the bundled logs");
    }
    let windows: Vec<(String, crate::model::AgentWindow)> = (0..n)
        .map(|i| {
            let (id, w) = &real[i % real.len()];
            // `track#copy:offset` keeps the offset last, as the validation split expects.
            let (track, offset) = id.rsplit_once(':').unwrap_or((id.as_str(), "0"));
            (format!("{track}#{}:{offset}", i / real.len()), w.clone())
        })
        .collect();
    let t = Instant::now();
    let (_, summary) = crate::fit::train(&windows, None, |_, _| {})?;
    let train_s = t.elapsed().as_secs_f64();
    Ok(format!(
        "training (closed-form ridge, full fit incl. penalty search): {} windows ({} real ones replicated) in {train_s:.2} s ({:.0} windows/s), alpha {}\n",
        summary.windows,
        real.len(),
        summary.windows as f64 / train_s,
        summary.alpha
    ))
}

/// Ingest at scale through the real path (read, cut, Delta commit, OLAP file): `copies`
/// copies of every AV2 sensor log under `input` (each a tree of symlinks named
/// `<log>_copyK`, so the log ids differ and no clip is a duplicate), ingested as ONE batch into
/// a fresh data directory; clips/s and peak RSS (targets: >= 200,000 clips/s, <= 2 GiB).
async fn scaled_ingest(
    config: &Config,
    root: &Path,
    input: &Path,
    copies: usize,
) -> anyhow::Result<String> {
    let scaled = root.join("ingest_scaled");
    let mut logs = 0;
    for entry in fs_err::read_dir(input)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("av2_sensor_log_") || !entry.path().is_dir() {
            continue;
        }
        logs += 1;
        let source = fs_err::canonicalize(entry.path())?;
        for k in 0..copies {
            link_tree(&source, &scaled.join(format!("{name}_copy{k}")))?;
        }
    }
    if logs == 0 {
        bail!("no AV2 sensor log under {}", input.display());
    }
    let mut run_config = config.clone();
    run_config.data_dir = root.join("data-scaled");
    let mut dl = DataLoop::open(run_config, false).await?;
    crate::bench_take::reset_peak_rss();
    let start_rss = crate::bench_take::rss_mib();
    let start_cpu = cpu_seconds();
    let t = Instant::now();
    let report = dl
        .ingest(
            std::slice::from_ref(&scaled),
            BeforeCommit::Proceed,
            SystemTime::now(),
        )
        .await?;
    let ingest_s = t.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - start_cpu;
    let rss = crate::bench_take::peak_rss_mib();
    Ok(format!(
        "ingest at scale (ONE batch of {copies} copies of the {logs} bundled AV2 sensor logs, real path): {} clips in {ingest_s:.1} s ({:.0} clips/s; target >= 200,000), CPU {cpu_s:.1} s user+sys over all threads ({:.0} clips per CPU-second), peak RSS {rss:.0} MiB ({start_rss:.0} MiB at its start; target <= 2048)\n",
        report.clips,
        report.clips as f64 / ingest_s,
        report.clips as f64 / cpu_s,
    ))
}

/// User plus system CPU time of this process so far, all threads \[s\] (`utime` + `stime` of
/// `/proc/self/stat`, 100 ticks per second); 0 when it cannot be read.
fn cpu_seconds() -> f64 {
    let ticks = fs_err::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The fields after the command's closing parenthesis: `state ppid ... utime stime`.
            let (_, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace().skip(11);
            let utime: u64 = fields.next()?.parse().ok()?;
            let stime: u64 = fields.next()?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    ticks as f64 / 100.0
}

/// Mirrors the directory tree `source` at `dest` with a symlink per file.
fn link_tree(source: &Path, dest: &Path) -> anyhow::Result<()> {
    fs_err::create_dir_all(dest)?;
    for entry in fs_err::read_dir(source)? {
        let entry = entry?;
        let target = dest.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else {
            std::os::unix::fs::symlink(entry.path(), &target)
                .with_context(|| format!("linking {}", target.display()))?;
        }
    }
    Ok(())
}

fn column_list() -> String {
    simple_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect::<Vec<_>>()
        .join(", ")
}

fn replicate(real: &RecordBatch, k: usize) -> anyhow::Result<RecordBatch> {
    let schema = real.schema();
    let mut columns: Vec<ArrayRef> = real.columns().to_vec();
    let id = schema.index_of("clip_id")?;
    let ids = deltalake::arrow::compute::cast(
        &columns[id],
        &deltalake::arrow::datatypes::DataType::Utf8,
    )?;
    let ids = ids
        .as_any()
        .downcast_ref::<StringArray>()
        .context("clip_id is text")?;
    columns[id] = Arc::new(StringArray::from_iter_values(
        ids.iter().map(|s| format!("{}#{k}", s.unwrap_or(""))),
    ));
    let st = schema.index_of("start_time_s")?;
    let starts = columns[st]
        .as_any()
        .downcast_ref::<Float64Array>()
        .context("start_time_s is f64")?;
    columns[st] = Arc::new(Float64Array::from_iter_values(
        starts.values().iter().map(|s| s + 3600.0 * k as f64),
    ));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The Python with DuckDB: `--python`, else `.tools/venv/bin/python` here or at the workspace root.
fn python(args: &BenchArgs) -> PathBuf {
    args.python.clone().unwrap_or_else(|| {
        let local = PathBuf::from(".tools/venv/bin/python");
        if local.exists() {
            local
        } else {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.tools/venv/bin/python"
            ))
        }
    })
}

fn duckdb_times(
    args: &BenchArgs,
    dir: &Path,
    runs: usize,
    predicates: &[&str],
) -> anyhow::Result<Vec<(f64, i64)>> {
    let python = python(args);
    let script = r#"
import duckdb, json, sys, time
d, runs, preds = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
con = duckdb.connect()
con.execute("SET threads=2")
con.execute("SET enable_progress_bar=false")
con.execute(f"CREATE VIEW olap AS SELECT * FROM read_parquet('{d}/**/*.parquet', hive_partitioning=true)")
out = []
for p in preds:
    times, n = [], None
    for i in range(runs + 1):
        t = time.perf_counter()
        n = con.execute(f"SELECT count(*) FROM olap WHERE {p}").fetchone()[0]
        times.append((time.perf_counter() - t) * 1e3)
    times = sorted(times[1:])
    out.append([times[len(times) // 2], n])
print(json.dumps(out))
"#;
    let output = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(dir)
        .arg(runs.max(1).to_string())
        .arg(serde_json::to_string(predicates)?)
        .output()
        .with_context(|| {
            format!(
                "running `{}` (install with scripts/setup)",
                python.display()
            )
        })?;
    if !output.status.success() {
        bail!("duckdb failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let parsed: Vec<(f64, i64)> =
        serde_json::from_slice(&output.stdout).context("duckdb output")?;
    Ok(parsed)
}
