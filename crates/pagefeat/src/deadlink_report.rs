//! The dead-link part of `demo` and `bench` (issue 15, items 1 and 3): the cached data set is
//! checked against the shipped pages, evaluated held out by site, the hand-checked pages that
//! mention not-found words are scored by a model that never saw their sites, and the final
//! soft-404 model is trained on every row.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::deadlink;
use crate::deadlink_data::{
    self, Evaluation, FEATURES_FILE, HAND_CHECKED_FILE, HandChecked, Sample, read_features,
    read_hand_checked, read_page_file,
};
use crate::error::Result;
use crate::model::Forest;

/// The shipped pages of the hand-checked set (`<deadlinks_dir>/pages/<file>.gz`).
pub const PAGES_DIR: &str = "pages";

/// The regression check on the shipped "mentions not-found words" pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Regression {
    /// Pages checked (features computed from the shipped HTML).
    pub pages: usize,
    /// Rows left out of training because their site is one of these pages' sites.
    pub rows_left_out: usize,
    /// Pages called dead links (file, score).
    pub false_positives: Vec<(String, f64)>,
    /// The highest score among them.
    pub max_score: f64,
}

/// What [`run`] measured.
#[derive(Debug)]
pub struct DeadlinkRun {
    /// Site-held-out figures.
    pub evaluation: Evaluation,
    /// The hand-checked regression pages.
    pub regression: Regression,
    /// Cached rows whose page is in the repository but whose features no longer match (the
    /// cache is stale: rebuild it with `pagefeat deadlinks --corpus DIR --write`).
    pub stale: Vec<String>,
    /// Rows compared with their shipped page.
    pub checked_rows: usize,
    /// The soft-404 model trained on every row.
    pub model: Forest,
    /// Wall time of evaluation and training, s.
    pub seconds: f64,
    /// Pages whose features were computed here, per second (real pages only).
    pub feature_pages_per_s: f64,
}

/// The shipped pages of the "mentions not-found words" negatives: (file as in the data set,
/// path of its shipped copy).
pub fn shipped_mentions(dir: &Path, hand: &[HandChecked]) -> Vec<(String, std::path::PathBuf)> {
    hand.iter()
        .filter(|h| h.mentions_not_found())
        .filter_map(|h| {
            let name = h.file.strip_prefix("corpus/")?;
            let path = dir.join(PAGES_DIR).join(format!("{name}.gz"));
            path.is_file().then(|| (h.file.clone(), path))
        })
        .collect()
}

/// The bundled page file a `bundled/<category>/<file>` row came from.
fn bundled_path(pages_dir: &Path, file: &str) -> Option<std::path::PathBuf> {
    file.strip_prefix("bundled/")
        .map(|rest| pages_dir.join(rest))
}

/// Runs the dead-link evaluation on the cache in `dir` (see the module docs).
///
/// # Errors
/// The cache or the hand-checked set cannot be read; a model cannot be trained.
pub fn run(dir: &Path, pages_dir: &Path, max_bytes: usize, seed: u64) -> Result<DeadlinkRun> {
    let started = Instant::now();
    let samples = read_features(&dir.join(FEATURES_FILE))?;
    let hand = read_hand_checked(&dir.join(HAND_CHECKED_FILE))?;
    let by_file: std::collections::BTreeMap<&str, &Sample> =
        samples.iter().map(|s| (s.file.as_str(), s)).collect();

    // Rows whose page ships in the repository are recomputed and compared with the cache.
    let mut stale = Vec::new();
    let mut checked = 0usize;
    let feature_started = Instant::now();
    let mut live: Vec<(String, Vec<f64>)> = Vec::new();
    let shipped = shipped_mentions(dir, &hand);
    let bundled: Vec<(String, std::path::PathBuf)> = samples
        .iter()
        .filter_map(|s| bundled_path(pages_dir, &s.file).map(|p| (s.file.clone(), p)))
        .collect();
    for (file, path) in shipped.iter().chain(bundled.iter()) {
        match read_page_file(path, max_bytes) {
            Ok(page) => {
                let row = deadlink::row_of_html(&page.html);
                checked += 1;
                if by_file.get(file.as_str()).is_none_or(|s| s.row != row) {
                    stale.push(file.clone());
                }
                live.push((file.clone(), row));
            }
            Err(error) => stale.push(format!("{file}: {error}")),
        }
    }
    let feature_seconds = feature_started.elapsed().as_secs_f64();

    let params = deadlink_data::forest_params(seed);
    let evaluation = deadlink_data::evaluate(&samples, &hand, 5, params)?;

    // Regression: the shipped mention pages, scored by a model that never saw their sites.
    let shipped_files: BTreeSet<&str> = shipped.iter().map(|(f, _)| f.as_str()).collect();
    let held_sites: BTreeSet<&str> = samples
        .iter()
        .filter(|s| shipped_files.contains(s.file.as_str()))
        .map(|s| s.site.as_str())
        .collect();
    let train_part: Vec<&Sample> = samples
        .iter()
        .filter(|s| !held_sites.contains(s.site.as_str()))
        .collect();
    let rows_left_out = samples.len() - train_part.len();
    let without = deadlink_data::train(&train_part, params)?;
    let mention_rows: Vec<(String, Vec<f64>)> = live
        .iter()
        .filter(|(f, _)| shipped_files.contains(f.as_str()))
        .cloned()
        .collect();
    let scores = without.score(
        &mention_rows
            .iter()
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>(),
    )?;
    let max_score = scores.iter().copied().fold(0.0, f64::max);
    let false_positives = mention_rows
        .iter()
        .zip(&scores)
        .filter(|(_, s)| **s >= without.threshold)
        .map(|((f, _), s)| (f.clone(), (s * 1000.0).round() / 1000.0))
        .collect();
    let all: Vec<&Sample> = samples.iter().collect();
    let model = deadlink_data::train(&all, params)?;
    Ok(DeadlinkRun {
        evaluation,
        regression: Regression {
            pages: mention_rows.len(),
            rows_left_out,
            false_positives,
            max_score: (max_score * 1000.0).round() / 1000.0,
        },
        stale,
        checked_rows: checked,
        model,
        seconds: started.elapsed().as_secs_f64(),
        feature_pages_per_s: checked as f64 / feature_seconds.max(1e-9),
    })
}

fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn interval_json(i: &crate::evaluation::Interval) -> serde_json::Value {
    serde_json::json!([r3(i.value), r3(i.low), r3(i.high)])
}

fn figures_json(f: &crate::evaluation::Figures) -> serde_json::Value {
    serde_json::json!({
        "precision": interval_json(&f.precision),
        "recall": interval_json(&f.recall),
        "f1": interval_json(&f.f1),
    })
}

/// A report as the demo prints it: each figure as `[value, low, high]` (bootstrap 95 % over
/// sites), beside the always-negative and always-positive baselines.
pub fn summary_json(report: &crate::evaluation::Report) -> serde_json::Value {
    serde_json::json!({
        "rows": report.rows,
        "sites": report.sites,
        "positives": report.positives,
        "model": figures_json(&report.model),
        "always_negative": figures_json(&report.always_negative),
        "always_positive": figures_json(&report.always_positive),
        "confusion": report.confusion,
        "resamples": report.resamples,
        "split": "5 folds by site (registrable domain)",
    })
}

/// The dead-link figures as text lines (for `bench`): value and 95 % interval of each figure,
/// beside the always-positive baseline.
pub fn table(run: &DeadlinkRun) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, r) in [
        ("soft-404, held out by site", &run.evaluation.held_out),
        ("soft-404, real pages only", &run.evaluation.held_out_real),
    ] {
        lines.push(format!(
            "{name}: {} rows, {} sites, {} positives",
            r.rows, r.sites, r.positives
        ));
        for (label, f) in [("model", &r.model), ("always positive", &r.always_positive)] {
            let show = |i: &crate::evaluation::Interval| {
                format!("{:.3} [{:.3}, {:.3}]", i.value, i.low, i.high)
            };
            lines.push(format!(
                "  {label:<16} precision {}  recall {}  F1 {}",
                show(&f.precision),
                show(&f.recall),
                show(&f.f1)
            ));
        }
    }
    lines.push(format!(
        "soft-404 features: {:.1} real pages/s; evaluation and training {:.2} s",
        run.feature_pages_per_s, run.seconds
    ));
    lines
}
