//! `pagefeat bench`: pages per second of both engines over the same bundled pages in the same
//! run (full path: layout, StatTree, EasyList labels), with peak memory. Speed is measured here
//! and printed, never asserted in tests.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use svckit::{Clock, SystemClock};

use crate::adfilter::AdFilter;
use crate::config::{Config, resolve_path};
use crate::corpus::bundled;
use crate::engine::ChromiumBrowser;
use crate::error::Result;
use crate::extract::{ExtractOptions, Pipeline, ProfileArg, read_page};
use crate::layout::EngineKind;
use crate::recognize::Recognizer;

/// One engine's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    /// "embedded" or "chromium".
    pub engine: String,
    /// Pages laid out without error.
    pub pages: usize,
    /// Pages that failed.
    pub failed: usize,
    /// Wall time, s.
    pub seconds: f64,
    /// Pages per second.
    pub pages_per_s: f64,
    /// Mean layout objects per page.
    pub mean_nodes: f64,
    /// Peak resident memory, MB: pagefeat's own high-water mark for the embedded engine; the
    /// summed RSS of Chromium's process group (sampled after each page; pages shared between
    /// processes are counted once per process) for Chromium.
    pub peak_rss_mb: f64,
}

/// The process's peak resident set (VmHWM), MB; 0 when /proc is not readable.
pub fn own_peak_rss_mb() -> f64 {
    svckit::procstat::status_kb(Path::new("/proc/self/status"), "VmHWM:") as f64 / 1024.0
}

/// Summed VmRSS of every process in process group `pgid`, MB.
pub fn group_rss_mb(pgid: u32) -> f64 {
    svckit::procstat::group_usage(pgid).rss_bytes as f64 / (1024.0 * 1024.0)
}

/// Runs both engines over the bundled pages (at most `max_pages`, 0 = all).
///
/// # Errors
/// The page list or filter list cannot be read; Chromium does not start.
pub async fn run(config: &Config, max_pages: usize, progress: bool) -> Result<Vec<BenchRow>> {
    let mut pages = bundled(&resolve_path(&config.paths.pages_dir))?;
    if max_pages > 0 {
        pages.truncate(max_pages);
    }
    let filter = Arc::new(AdFilter::from_file(&resolve_path(
        &config.paths.filter_list,
    ))?);
    let recognizer = Arc::new(Recognizer {
        filter: Some(filter),
        ad: None,
        soft404: None,
    });
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let pipeline = Pipeline::new(config.clone(), recognizer, clock);
    let bar = crate::demo::progress_bar(progress, pages.len() as u64 * 2, "bench");
    let mut rows = Vec::new();
    for engine in [EngineKind::Embedded, EngineKind::Chromium] {
        let browser = match engine {
            // No settle wait: load event, layout and the two snapshots only.
            EngineKind::Chromium => Some(
                ChromiumBrowser::launch(
                    &crate::engine::ChromiumConfig {
                        settle_ms: 0,
                        ..config.chromium.clone()
                    },
                    config.viewport_size(),
                )
                .await?,
            ),
            EngineKind::Embedded => None,
        };
        let options = ExtractOptions {
            engine,
            profile: ProfileArg::Panorama,
            selector: None,
            scroll_y: None,
        };
        let started = Instant::now();
        let (mut ok, mut failed, mut nodes, mut peak) = (0usize, 0usize, 0usize, 0.0f64);
        for page in &pages {
            let outcome = match read_page(&page.path, config.input.max_bytes) {
                Ok(input) => pipeline.extract(&input, browser.as_ref(), &options).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(extraction) => {
                    ok += 1;
                    nodes += extraction.result.tree.nodes.len();
                }
                Err(error) => {
                    failed += 1;
                    tracing::warn!(page = %page.key(), engine = engine.as_str(), %error, "bench page failed");
                }
            }
            if let Some(browser) = &browser {
                peak = peak.max(group_rss_mb(browser.pid()));
            }
            bar.inc(1);
        }
        let seconds = started.elapsed().as_secs_f64();
        if engine == EngineKind::Embedded {
            peak = own_peak_rss_mb();
        }
        rows.push(BenchRow {
            engine: engine.as_str().to_owned(),
            pages: ok,
            failed,
            seconds,
            pages_per_s: if seconds > 0.0 {
                ok as f64 / seconds
            } else {
                0.0
            },
            mean_nodes: if ok > 0 {
                nodes as f64 / ok as f64
            } else {
                0.0
            },
            peak_rss_mb: peak,
        });
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// The rows as a text table.
pub fn table(rows: &[BenchRow]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<10} {:>6} {:>7} {:>9} {:>8} {:>11} {:>12}",
        "engine", "pages", "failed", "seconds", "pages/s", "mean nodes", "peak RSS MB"
    )];
    for r in rows {
        lines.push(format!(
            "{:<10} {:>6} {:>7} {:>9.2} {:>8.2} {:>11.0} {:>12.1}",
            r.engine, r.pages, r.failed, r.seconds, r.pages_per_s, r.mean_nodes, r.peak_rss_mb
        ));
    }
    if let [a, b] = rows
        && b.pages_per_s > 0.0
    {
        lines.push(format!(
            "embedded / chromium throughput: {:.1}x",
            a.pages_per_s / b.pages_per_s
        ));
    }
    lines
}
