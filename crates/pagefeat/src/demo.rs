//! `pagefeat demo`: everything on the bundled pages, with checks that decide the exit code.
//!
//! 1. Every bundled page through the embedded engine: panorama StatTrees with EasyList labels,
//!    written as protobuf; pages/s over real saved pages only ([`Throughput`]; the count of
//!    real pages timed and of any synthetic ones is reported beside it) and peak RSS.
//! 2. The ad classifier trained on the trees of the training pages, P/R/F1 against the filter
//!    list on held-out pages; the dead-link (soft-404) classifier evaluated held out by site on
//!    the dead-link data set ([`crate::deadlink_report`]: 1,229 corpus pages, the bundled ones,
//!    synthetic error pages), with bootstrap intervals and the trivial baselines, and 0 false
//!    positives required on the hand-checked pages that mention not-found words.
//! 3. Every bundled page through Chromium (network blocked): pages/s, and the median IoU of
//!    matched element boxes between the engines.
//! 4. Popups: each banner fixture is injected by a script after the load event into a host
//!    page (as consent-management scripts do) and must be found by Chromium's parse-end vs
//!    settled diff and classified `consent`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use serde_json::json;
use svckit::{Clock, SystemClock};

use crate::adfilter::AdFilter;
use crate::bench::{Throughput, max_option, own_peak_rss_mb, tree_memory};
use crate::config::{Config, resolve_path};
use crate::corpus::{Category, CorpusPage, bundled};
use crate::engine::ChromiumBrowser;
use crate::error::Result;
use crate::extract::{ExtractOptions, Pipeline, ProfileArg, read_page};
use crate::input::PageInput;
use crate::layout::EngineKind;
use crate::model::ForestParams;
use crate::recognize::Recognizer;
use crate::stat_node::{self, StatTree};
use crate::training::{self, NamedTree};

/// A progress bar on stderr, hidden unless `show`.
pub fn progress_bar(show: bool, len: u64, label: &str) -> ProgressBar {
    let bar = if show {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(label.to_owned());
    bar
}

/// The demo's outcome: the report (the JSON shape) and the failed checks.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The report printed as the last stdout line.
    pub report: serde_json::Value,
    /// Checks that failed (empty: exit 0).
    pub failures: Vec<String>,
}

/// Trees of the corpus from the embedded engine: each bundled page (the popup fixtures when
/// `include_popups`). Returns the trees, the keys of held-out trees, the
/// pages that failed with their errors, and the time per page ([`Throughput`]: real pages
/// apart from synthetic ones).
///
/// # Errors
/// Only when the workers stop; page errors are collected.
pub async fn corpus_trees(
    pipeline: &Pipeline,
    pages: &[CorpusPage],
    bar: Option<&ProgressBar>,
    include_popups: bool,
) -> Result<(Vec<NamedTree>, HashSet<String>, Vec<String>, Throughput)> {
    let options = ExtractOptions::embedded_panorama();
    let max = pipeline.config().input.max_bytes;
    let mut trees = Vec::new();
    let mut held_out = HashSet::new();
    let mut failures = Vec::new();
    let mut timed = Throughput::default();
    for page in pages {
        if page.category == Category::Popups && !include_popups {
            continue;
        }
        let started = Instant::now();
        let mut inputs: Vec<(String, PageInput)> = Vec::new();
        match read_page(&page.path, max) {
            Ok(input) => inputs.push((page.key(), input)),
            Err(error) => {
                timed.record(&page.key(), false, started.elapsed().as_secs_f64());
                failures.push(format!("{}: {error}", page.key()));
            }
        }
        for (key, input) in inputs {
            let outcome = pipeline.extract(&input, None, &options).await;
            timed.record(&key, outcome.is_ok(), started.elapsed().as_secs_f64());
            match outcome {
                Ok(extraction) => {
                    if page.held_out {
                        held_out.insert(key.clone());
                    }
                    trees.push(NamedTree {
                        key,
                        tree: extraction.result.tree,
                    });
                }
                Err(crate::Error::WorkersGone) => return Err(crate::Error::WorkersGone),
                Err(error) => failures.push(format!("{key}: {error}")),
            }
        }
        if let Some(bar) = bar {
            bar.inc(1);
        }
    }
    Ok((trees, held_out, failures, timed))
}

/// A key for matching an element between engines: its path of `tag[n]` steps (n = position
/// among element siblings with the same tag in the layout tree).
pub(crate) fn element_paths(tree: &StatTree) -> HashMap<String, usize> {
    let mut paths: Vec<String> = vec![String::new(); tree.nodes.len()];
    let mut out = HashMap::new();
    let index_of = |id: u32| tree.nodes.binary_search_by_key(&id, |n| n.id).ok();
    let mut seen: HashMap<(usize, String), usize> = HashMap::new();
    for (i, node) in tree.nodes.iter().enumerate() {
        if node.name.starts_with('#') {
            continue;
        }
        let parent = node.parent.and_then(index_of);
        let parent_path = parent.map_or("", |p| paths[p].as_str()).to_owned();
        let slot = seen
            .entry((parent.unwrap_or(usize::MAX), node.name.clone()))
            .or_insert(0);
        paths[i] = format!("{parent_path}/{}[{}]", node.name, *slot);
        *slot += 1;
        out.insert(paths[i].clone(), i);
    }
    out
}

/// A node's box as a [`crate::layout::Rect`] (page coordinates, px).
pub(crate) fn rect_of(n: &stat_node::StatNode) -> crate::layout::Rect {
    crate::layout::Rect {
        x: n.xpos as f32,
        y: n.ypos as f32,
        width: n.width as f32,
        height: n.height as f32,
    }
}

/// IoUs of the visible, non-empty element boxes present in both trees.
pub fn matched_ious(a: &StatTree, b: &StatTree) -> Vec<f32> {
    let pa = element_paths(a);
    let pb = element_paths(b);
    let mut ious = Vec::new();
    for (path, &i) in &pa {
        let Some(&j) = pb.get(path) else { continue };
        let (na, nb) = (&a.nodes[i], &b.nodes[j]);
        if na.visible
            && nb.visible
            && na.width > 0
            && na.height > 0
            && nb.width > 0
            && nb.height > 0
        {
            ious.push(rect_of(na).iou(&rect_of(nb)));
        }
    }
    ious
}

/// IoUs of the same matched boxes after moving each to its parent's origin: agreement of the
/// local layout, without the vertical drift that one differently sized box above adds to
/// everything below it.
pub fn matched_relative_ious(a: &StatTree, b: &StatTree) -> Vec<f32> {
    let pa = element_paths(a);
    let pb = element_paths(b);
    let rel = |t: &StatTree, i: usize| {
        let n = &t.nodes[i];
        let (px, py) = n
            .parent
            .and_then(|p| stat_node::node_by_id(t, p))
            .map_or((0, 0), |p| (p.xpos, p.ypos));
        crate::layout::Rect {
            x: (n.xpos - px) as f32,
            y: (n.ypos - py) as f32,
            width: n.width as f32,
            height: n.height as f32,
        }
    };
    let mut ious = Vec::new();
    for (path, &i) in &pa {
        let Some(&j) = pb.get(path) else { continue };
        let (na, nb) = (&a.nodes[i], &b.nodes[j]);
        if na.visible
            && nb.visible
            && na.width > 0
            && na.height > 0
            && nb.width > 0
            && nb.height > 0
        {
            ious.push(rel(a, i).iou(&rel(b, j)));
        }
    }
    ious
}

pub(crate) fn median(values: &mut [f32]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f32::total_cmp);
    let mid = values.len() / 2;
    let m = if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    };
    f64::from(m)
}

pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Runs the demo.
///
/// # Errors
/// Setup failures (filter list, Chromium start, writing files); page failures and wrong
/// results are reported as failed checks instead.
pub async fn run(
    config: &Config,
    out: Option<&Path>,
    progress: bool,
) -> anyhow::Result<DemoOutcome> {
    let temp = tempfile::tempdir()?;
    let out_dir = out.map_or_else(|| temp.path().to_path_buf(), Path::to_path_buf);
    let trees_dir = out_dir.join("trees");
    let models_dir = out_dir.join("models");
    let chromium_dir = out_dir.join("trees-chromium");
    fs_err::create_dir_all(&chromium_dir)?;
    fs_err::create_dir_all(&trees_dir)?;
    let pages = bundled(&resolve_path(&config.paths.pages_dir))?;
    let filter = Arc::new(AdFilter::from_file(&resolve_path(
        &config.paths.filter_list,
    ))?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let label_only = Arc::new(Recognizer {
        filter: Some(Arc::clone(&filter)),
        ad: None,
        soft404: None,
    });
    let pipeline = Pipeline::new(config.clone(), label_only, Arc::clone(&clock));
    let mut failures = Vec::new();

    // 1. Embedded engine over every bundled page (saved pages only; pages/s counts real pages).
    let bar = progress_bar(progress, pages.len() as u64, "embedded");
    let (all_trees, held_out, page_failures, embedded_timed) =
        corpus_trees(&pipeline, &pages, Some(&bar), true).await?;
    bar.finish_and_clear();
    let embedded_rss = own_peak_rss_mb();
    failures.extend(
        page_failures
            .iter()
            .map(|f| format!("embedded engine: {f}")),
    );
    for named in &all_trees {
        stat_node::write_file(&trees_dir.join(format!("{}.pb", named.key)), &named.tree)?;
    }
    let bundled_trees: HashMap<String, &StatTree> = all_trees
        .iter()
        .filter(|t| !t.key.starts_with("synthetic-soft404__"))
        .map(|t| (t.key.clone(), &t.tree))
        .collect();
    tracing::info!(
        trees = all_trees.len(),
        real_pages = embedded_timed.real_pages,
        seconds = embedded_timed.real_seconds,
        "embedded trees written"
    );

    // 2. Train on the training trees (read back from protobuf), evaluate on held-out ones.
    let written = training::load_trees(&trees_dir)?;
    let (train_set, eval_set): (Vec<NamedTree>, Vec<NamedTree>) = written
        .into_iter()
        .partition(|t| !held_out.contains(&t.key));
    let (ad_model, ad_trees) = training::train_ad(&train_set, ForestParams::default())?;
    let (ad_pages, ad_scores) = training::evaluate_ads(&ad_model, &eval_set);
    tracing::info!(ad_trees, ?ad_scores, "ad model trained and evaluated");
    if ad_pages == 0 {
        failures.push("no held-out pages for the ad classifier".to_owned());
    }
    let dead = crate::deadlink_report::run(
        &resolve_path(&config.paths.deadlinks_dir),
        &resolve_path(&config.paths.pages_dir),
        config.input.max_bytes,
        ForestParams::default().seed,
    )?;
    let soft_model = dead.model;
    training::save_models(&models_dir, &ad_model, &soft_model)?;
    if !dead.stale.is_empty() {
        failures.push(format!(
            "dead-link cache is stale for {} shipped page(s), e.g. {} (rebuild: pagefeat deadlinks --corpus DIR --write)",
            dead.stale.len(),
            dead.stale[0]
        ));
    }
    if !dead.regression.false_positives.is_empty() {
        failures.push(format!(
            "{} hand-checked page(s) that mention not-found words called dead links: {:?}",
            dead.regression.false_positives.len(),
            dead.regression.false_positives
        ));
    }
    if dead.regression.pages == 0 {
        failures.push("no shipped hand-checked pages for the dead-link regression".to_owned());
    }
    let dead_eval = &dead.evaluation;
    tracing::info!(evaluation = ?dead_eval.held_out, "dead links evaluated held out by site");

    // 3. Chromium over every bundled page; agreement with the embedded engine.
    // The agreement pass measures load + layout + snapshots: no settle wait. The popup pass
    // below waits `chromium.settle_ms` for scripts to reveal popups.
    let quick = crate::engine::ChromiumConfig {
        settle_ms: 0,
        ..config.chromium.clone()
    };
    let browser = ChromiumBrowser::launch(&quick, config.viewport_size()).await?;
    let options = ExtractOptions {
        engine: EngineKind::Chromium,
        profile: ProfileArg::Panorama,
        selector: None,
        scroll_y: None,
    };
    let bar = progress_bar(progress, pages.len() as u64, "chromium");
    let mut chromium_timed = Throughput::default();
    let mut chromium_rss: Option<f64> = None;
    let mut chromium_pss: Option<f64> = None;
    let mut ious: Vec<f32> = Vec::new();
    let mut relative_ious: Vec<f32> = Vec::new();
    let mut agreement_pages = 0usize;
    let mut nodes_total = 0usize;
    for page in &pages {
        let started = Instant::now();
        let outcome = match read_page(&page.path, config.input.max_bytes) {
            Ok(input) => pipeline.extract(&input, Some(&browser), &options).await,
            Err(e) => Err(e),
        };
        chromium_timed.record(
            &page.key(),
            outcome.is_ok(),
            started.elapsed().as_secs_f64(),
        );
        match outcome {
            Ok(extraction) => {
                stat_node::write_file(
                    &chromium_dir.join(format!("{}.pb", page.key())),
                    &extraction.result.tree,
                )?;
                nodes_total += extraction.result.tree.nodes.len();
                if let Some(embedded) = bundled_trees.get(&page.key()) {
                    let page_ious = matched_ious(embedded, &extraction.result.tree);
                    if !page_ious.is_empty() {
                        agreement_pages += 1;
                        ious.extend(page_ious);
                        relative_ious
                            .extend(matched_relative_ious(embedded, &extraction.result.tree));
                    }
                }
            }
            Err(error) => failures.push(format!("chromium: {}: {error}", page.key())),
        }
        if let Some(memory) = tree_memory(browser.pid()) {
            chromium_pss = max_option(chromium_pss, Some(memory.pss_mb()));
            chromium_rss = max_option(chromium_rss, Some(memory.rss_mb()));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let share_over_half =
        ious.iter().filter(|v| **v > 0.5).count() as f64 / ious.len().max(1) as f64;
    let median_iou = median(&mut ious);
    let median_relative_iou = median(&mut relative_ious);
    if agreement_pages == 0 {
        failures.push("no page had boxes matched between the engines".to_owned());
    }
    nodes_total += bundled_trees.values().map(|t| t.nodes.len()).sum::<usize>();

    // 4. Popups injected after load, found by Chromium, classified.
    let recognizer = Arc::new(Recognizer {
        filter: Some(Arc::clone(&filter)),
        ad: Some(ad_model),
        soft404: Some(soft_model),
    });
    let detect = Pipeline::new(config.clone(), recognizer, Arc::clone(&clock));
    drop(browser);
    let browser = ChromiumBrowser::launch(&config.chromium, config.viewport_size()).await?;
    let popup_set = resolve_path(&config.paths.pages_dir).join(crate::popup_eval::SET_DIR);
    let popups = crate::popup_eval::evaluate(&detect, Some(&browser), &popup_set, config).await?;
    failures.extend(popup_failures(
        &popups,
        &crate::popup_eval::load(&popup_set)?,
    ));
    tracing::info!(table = %popups.table().join("\n"), "popup set");
    drop(browser);

    let report = json!({
        "pages": bundled_trees.len(),
        "engines": {
            "embedded": {
                "pages_per_s": round3(embedded_timed.pages_per_s()),
                "real_pages_timed": embedded_timed.real_pages + embedded_timed.real_failed,
                "synthetic_pages_timed": embedded_timed.synthetic_pages,
                "peak_rss_mb": round3(embedded_rss),
            },
            "chromium": {
                "pages_per_s": round3(chromium_timed.pages_per_s()),
                "real_pages_timed": chromium_timed.real_pages + chromium_timed.real_failed,
                "synthetic_pages_timed": chromium_timed.synthetic_pages,
                "peak_pss_mb": chromium_pss.map(round3),
                "peak_summed_rss_mb": chromium_rss.map(round3),
            },
        },
        "nodes_total": nodes_total,
        "layout_agreement": {
            "pages": agreement_pages,
            "median_iou": round3(median_iou),
            "median_parent_relative_iou": round3(median_relative_iou),
            "share_iou_over_half": round3(share_over_half),
        },
        "ad": {
            "eval_pages": ad_pages,
            "precision": round3(ad_scores.precision()),
            "recall": round3(ad_scores.recall()),
            "f1": round3(ad_scores.f1()),
        },
        "soft404": crate::deadlink_report::summary_json(&dead_eval.held_out),
        "soft404_real_pages_only": crate::deadlink_report::summary_json(&dead_eval.held_out_real),
        "soft404_mentions_not_found": {
            "pages": dead.regression.pages,
            "false_positives": dead.regression.false_positives.len(),
            "max_score": dead.regression.max_score,
            "held_out_cv_false_positives": dead_eval.mentions_false_positives.len(),
        },
        "popups": popup_summary(&popups),
    });
    let details = json!({
        "report": &report,
        "ad_trees": ad_trees,
        "ad_confusion": ad_scores,
        "soft404_evaluation": dead_eval,
        "soft404_regression": &dead.regression,
        "soft404_rows_checked_against_pages": dead.checked_rows,
        "soft404_seconds": round3(dead.seconds),
        "matched_boxes": ious.len(),
        "median_parent_relative_iou": round3(median_relative_iou),
        "share_of_boxes_iou_over_half": round3(share_over_half),
        "chromium_peak_pss_mb": chromium_pss.map(round3),
        "chromium_peak_summed_rss_mb": chromium_rss.map(round3),
        "popups": &popups,
        "failures": &failures,
    });
    fs_err::write(
        out_dir.join("demo-details.json"),
        serde_json::to_string_pretty(&details)?,
    )?;
    tracing::info!(details = %details, "demo details");
    Ok(DemoOutcome { report, failures })
}

/// Least share of the popup set's held-out (test) examples each run must get right.
const POPUP_TEST_SHARE: f64 = 0.8;

/// The demo's popup checks: every real dev example and every `none` dev example (content that
/// is not a popup: a late inline box, a diagnostic page) is right in every run, and each run
/// gets at least [`POPUP_TEST_SHARE`] of the held-out examples right. Held-out examples are
/// not checked one by one: they are scored once and their misses reported, not fixed.
fn popup_failures(
    evaluation: &crate::popup_eval::Evaluation,
    examples: &[crate::popup_eval::Example],
) -> Vec<String> {
    let real: HashSet<&str> = examples
        .iter()
        .filter(|e| e.origin.starts_with("real"))
        .map(|e| e.file.as_str())
        .collect();
    let mut failures = Vec::new();
    for run in &evaluation.runs {
        let label = format!(
            "popups {} {:?} {:?}",
            run.engine.as_str(),
            run.rendering,
            run.split
        );
        for wrong in &run.wrong {
            let dev = wrong.split == crate::popup_eval::Split::Dev;
            if dev && (wrong.expected.is_none() || real.contains(wrong.file.as_str())) {
                failures.push(format!(
                    "{label}: {} expected {:?}, found {:?}",
                    wrong.file, wrong.expected, wrong.kinds
                ));
            }
        }
        let share = run.correct as f64 / run.examples.max(1) as f64;
        if run.split == crate::popup_eval::Split::Test && share < POPUP_TEST_SHARE {
            failures.push(format!(
                "{label}: {}/{} held-out examples right (< {POPUP_TEST_SHARE})",
                run.correct, run.examples
            ));
        }
    }
    failures
}

/// The popup figures of the report: per run, examples right, and per kind precision and
/// recall, each with its 95 % bootstrap interval over families (`[low, high]`), and the counts.
fn popup_summary(evaluation: &crate::popup_eval::Evaluation) -> serde_json::Value {
    let runs: Vec<serde_json::Value> = evaluation
        .runs
        .iter()
        .map(|run| {
            let kinds: serde_json::Map<String, serde_json::Value> = run
                .kinds
                .iter()
                .map(|k| {
                    (
                        format!("{:?}", k.kind).to_lowercase(),
                        json!({
                            "precision": round3(k.report.model.precision.value),
                            "precision_interval": [
                                round3(k.report.model.precision.low),
                                round3(k.report.model.precision.high),
                            ],
                            "recall": round3(k.report.model.recall.value),
                            "recall_interval": [
                                round3(k.report.model.recall.low),
                                round3(k.report.model.recall.high),
                            ],
                            "tp": k.report.confusion.tp,
                            "fp": k.report.confusion.fp,
                            "fn": k.report.confusion.fn_,
                        }),
                    )
                })
                .collect();
            json!({
                "engine": run.engine.as_str(),
                "rendering": run.rendering,
                "split": run.split,
                "correct": run.correct,
                "examples": run.examples,
                "kinds": kinds,
            })
        })
        .collect();
    serde_json::Value::Array(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::popup::PopupKind;
    use crate::popup_eval::{Evaluation, Found, Rendering, RunReport, Split, score};

    #[test]
    fn the_popup_summary_gives_intervals_and_gates_dev_examples_only() {
        let found = |file: &str, expected: Option<PopupKind>, kinds: &[PopupKind], split| Found {
            file: file.to_owned(),
            expected,
            kinds: kinds.to_vec(),
            family: file.to_owned(),
            split,
        };
        let run = |split, rows: Vec<Found>| RunReport {
            engine: EngineKind::Embedded,
            rendering: Rendering::Static,
            split,
            examples: rows.len(),
            correct: rows.iter().filter(|f| f.correct()).count(),
            kinds: score(&rows, 50, 1),
            wrong: rows.iter().filter(|f| !f.correct()).cloned().collect(),
        };
        let test_rows = vec![
            found(
                "a",
                Some(PopupKind::Consent),
                &[PopupKind::Consent],
                Split::Test,
            ),
            found("b", Some(PopupKind::Ad), &[PopupKind::Ad], Split::Test),
            found(
                "c",
                Some(PopupKind::Other),
                &[PopupKind::Other],
                Split::Test,
            ),
            found(
                "d",
                Some(PopupKind::Newsletter),
                &[PopupKind::Newsletter],
                Split::Test,
            ),
            found("e", None, &[PopupKind::Other], Split::Test),
        ];
        let dev_rows = vec![found("f", None, &[PopupKind::Other], Split::Dev)];
        let evaluation = Evaluation {
            runs: vec![run(Split::Dev, dev_rows), run(Split::Test, test_rows)],
        };
        let summary = popup_summary(&evaluation);
        let other = &summary[1]["kinds"]["other"];
        assert_eq!(other["precision"], 0.5);
        assert_eq!(other["fp"], 1);
        let interval = other["precision_interval"].as_array().unwrap();
        assert!(interval[0].as_f64().unwrap() <= 0.5 && interval[1].as_f64().unwrap() >= 0.5);
        assert!(summary[1]["kinds"]["consent"]["recall_interval"].is_array());
        // The held-out `none` miss is reported, not a failure (4/5 = the share); the dev one is.
        let failures = popup_failures(&evaluation, &[]);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].contains("Dev") && failures[0].contains(": f "),
            "{failures:?}"
        );
    }
}
