//! `pagefeat agreement`: layout agreement between the embedded engine and Chromium over the
//! bundled pages (or named pages), page by page, without the rest of the demo.
//!
//! Per page: the rendering mode from the DOCTYPE ([`crate::compat`]), the element boxes
//! matched between the engines (same `tag[n]` path, visible and non-empty in both; see
//! [`crate::demo::matched_ious`]), the share of them with page-coordinate IoU > 0.5, the
//! median IoU, both document heights and the relative error, and the first box in document
//! order whose IoU is <= 0.5 (where the pages part). Totals over all pages and over
//! standards-mode pages.

use std::path::Path;

use serde::Serialize;

use crate::compat::{CompatMode, compat_mode};
use crate::demo::{element_paths, matched_ious, matched_relative_ious, median, round3};
use crate::extract::{ExtractOptions, Pipeline, ProfileArg, read_page};
use crate::layout::EngineKind;
use crate::stat_node::{StatNode, StatTree};

/// A box as `[x, y, width, height]`, CSS px, page coordinates.
pub type BoxXywh = [i32; 4];

/// The first matched box (document order of the embedded tree) whose IoU is <= 0.5.
#[derive(Debug, Clone, Serialize)]
pub struct FirstDrop {
    /// Its `tag[n]` path from the root.
    pub path: String,
    /// The embedded engine's box.
    pub embedded: BoxXywh,
    /// Chromium's box.
    pub chromium: BoxXywh,
    /// Its IoU.
    pub iou: f32,
}

/// One page's agreement.
#[derive(Debug, Clone, Serialize)]
pub struct PageAgreement {
    /// `<category>__<stem>`.
    pub page: String,
    /// Rendering mode from the DOCTYPE.
    pub mode: CompatMode,
    /// Matched element boxes.
    pub matched: usize,
    /// Share of them with IoU > 0.5 (0 when none matched).
    pub share_iou_over_half: f64,
    /// Median page-coordinate IoU.
    pub median_iou: f64,
    /// Median parent-relative IoU.
    pub median_parent_relative_iou: f64,
    /// Document height, embedded engine, px.
    pub height_embedded: u32,
    /// Document height, Chromium, px.
    pub height_chromium: u32,
    /// `|embedded - chromium| / chromium`.
    pub height_error: f64,
    /// Where the boxes first part.
    pub first_drop: Option<FirstDrop>,
}

/// Totals over a set of pages.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Pages.
    pub pages: usize,
    /// Matched element boxes.
    pub matched: usize,
    /// Share of all matched boxes with IoU > 0.5.
    pub share_iou_over_half: f64,
    /// Median IoU over all matched boxes.
    pub median_iou: f64,
    /// Median parent-relative IoU over all matched boxes.
    pub median_parent_relative_iou: f64,
    /// Median over pages of the document-height error.
    pub median_height_error: f64,
    /// Mean over pages of the document-height error.
    pub mean_height_error: f64,
    /// Pages whose document-height error is <= 2 %.
    pub pages_height_within_2pct: usize,
}

/// The report: pages, totals over all of them and over standards-mode pages, failures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Per page.
    pub pages: Vec<PageAgreement>,
    /// Over all pages.
    pub all: Totals,
    /// Over standards-mode (and limited-quirks) pages.
    pub standards: Totals,
    /// Pages an engine failed on, with the error.
    pub failures: Vec<String>,
}

fn box_of(n: &StatNode) -> BoxXywh {
    [n.xpos, n.ypos, n.width, n.height]
}

/// The agreement of one page's two trees.
pub fn page_agreement(
    page: &str,
    mode: CompatMode,
    embedded: &StatTree,
    chromium: &StatTree,
) -> (PageAgreement, Vec<f32>, Vec<f32>) {
    let mut ious = matched_ious(embedded, chromium);
    let mut relative = matched_relative_ious(embedded, chromium);
    let over = ious.iter().filter(|v| **v > 0.5).count();
    let share = over as f64 / ious.len().max(1) as f64;
    let pa = element_paths(embedded);
    let pb = element_paths(chromium);
    let mut by_index: Vec<(usize, &String)> = pa.iter().map(|(p, &i)| (i, p)).collect();
    by_index.sort_unstable();
    let first_drop = by_index.into_iter().find_map(|(i, path)| {
        let j = *pb.get(path)?;
        let (a, b) = (&embedded.nodes[i], &chromium.nodes[j]);
        let shown = |n: &StatNode| n.visible && n.width > 0 && n.height > 0;
        if !(shown(a) && shown(b)) {
            return None;
        }
        let iou = crate::demo::rect_of(a).iou(&crate::demo::rect_of(b));
        (iou <= 0.5).then(|| FirstDrop {
            path: path.clone(),
            embedded: box_of(a),
            chromium: box_of(b),
            iou,
        })
    });
    let (he, hc) = (embedded.document_height, chromium.document_height);
    let height_error = (f64::from(he) - f64::from(hc)).abs() / f64::from(hc.max(1));
    let agreement = PageAgreement {
        page: page.to_owned(),
        mode,
        matched: ious.len(),
        share_iou_over_half: round3(share),
        median_iou: round3(median(&mut ious.clone())),
        median_parent_relative_iou: round3(median(&mut relative.clone())),
        height_embedded: he,
        height_chromium: hc,
        height_error: round3(height_error),
        first_drop,
    };
    ious.sort_by(f32::total_cmp);
    relative.sort_by(f32::total_cmp);
    (agreement, ious, relative)
}

#[derive(Default)]
struct Sums {
    pages: usize,
    ious: Vec<f32>,
    relative: Vec<f32>,
    height_errors: Vec<f32>,
}

impl Sums {
    fn add(&mut self, page: &PageAgreement, ious: &[f32], relative: &[f32]) {
        self.pages += 1;
        self.ious.extend_from_slice(ious);
        self.relative.extend_from_slice(relative);
        self.height_errors.push(page.height_error as f32);
    }

    fn totals(mut self) -> Totals {
        let over = self.ious.iter().filter(|v| **v > 0.5).count();
        let errors = &self.height_errors;
        Totals {
            pages: self.pages,
            matched: self.ious.len(),
            share_iou_over_half: round3(over as f64 / self.ious.len().max(1) as f64),
            median_iou: round3(median(&mut self.ious)),
            median_parent_relative_iou: round3(median(&mut self.relative)),
            mean_height_error: round3(
                errors.iter().map(|e| f64::from(*e)).sum::<f64>() / errors.len().max(1) as f64,
            ),
            pages_height_within_2pct: errors.iter().filter(|e| **e <= 0.02).count(),
            median_height_error: round3(median(&mut self.height_errors)),
        }
    }
}

/// Lays each page out with both engines and compares them. `pages` are `(key, path)`; with
/// `trees`, both trees of each page are written there as `<key>.embedded.pb` and
/// `<key>.chromium.pb` (file name characters other than alphanumerics, `.`, `-`, `_`
/// become `_`).
///
/// # Errors
/// [`crate::Error::WorkersGone`], [`crate::Error::Io`] writing trees; page errors are
/// collected in [`Report::failures`].
pub async fn run(
    pipeline: &Pipeline,
    browser: &crate::engine::ChromiumBrowser,
    pages: &[(String, &Path)],
    trees: Option<&Path>,
) -> crate::error::Result<Report> {
    let embedded_options = ExtractOptions::embedded_panorama();
    let chromium_options = ExtractOptions {
        engine: EngineKind::Chromium,
        profile: ProfileArg::Panorama,
        selector: None,
        scroll_y: None,
    };
    let max = pipeline.config().input.max_bytes;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    let (mut all, mut standards) = (Sums::default(), Sums::default());
    for (key, path) in pages {
        let input = match read_page(path, max) {
            Ok(input) => input,
            Err(error) => {
                failures.push(format!("{key}: {error}"));
                continue;
            }
        };
        let mode = compat_mode(&input.html);
        let embedded = pipeline.extract(&input, None, &embedded_options).await;
        let chromium = pipeline
            .extract(&input, Some(browser), &chromium_options)
            .await;
        let (embedded, chromium) = match (embedded, chromium) {
            (Ok(e), Ok(c)) => (e.result.tree, c.result.tree),
            (Err(crate::Error::WorkersGone), _) | (_, Err(crate::Error::WorkersGone)) => {
                return Err(crate::Error::WorkersGone);
            }
            (Err(error), _) => {
                failures.push(format!("{key}: embedded: {error}"));
                continue;
            }
            (_, Err(error)) => {
                failures.push(format!("{key}: chromium: {error}"));
                continue;
            }
        };
        if let Some(dir) = trees {
            let name: String = key
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            crate::stat_node::write_file(&dir.join(format!("{name}.embedded.pb")), &embedded)?;
            crate::stat_node::write_file(&dir.join(format!("{name}.chromium.pb")), &chromium)?;
        }
        let (page, ious, relative) = page_agreement(key, mode, &embedded, &chromium);
        all.add(&page, &ious, &relative);
        if mode.is_standards() {
            standards.add(&page, &ious, &relative);
        }
        tracing::info!(page = %key, share = page.share_iou_over_half, "agreement");
        out.push(page);
    }
    Ok(Report {
        pages: out,
        all: all.totals(),
        standards: standards.totals(),
        failures,
    })
}

/// The report as text lines: one per page, then the totals.
pub fn table(report: &Report) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<52} {:<9} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6}  first drop",
        "page", "mode", "boxes", ">0.5", "med", "h_emb", "h_chr", "h_err"
    )];
    for p in &report.pages {
        let drop = p.first_drop.as_ref().map_or(String::new(), |d| {
            format!("{} emb {:?} chr {:?}", d.path, d.embedded, d.chromium)
        });
        lines.push(format!(
            "{:<52} {:<9} {:>6} {:>6.3} {:>6.3} {:>7} {:>7} {:>6.3}  {drop}",
            p.page,
            &p.mode.as_str()[..p.mode.as_str().len().min(9)],
            p.matched,
            p.share_iou_over_half,
            p.median_iou,
            p.height_embedded,
            p.height_chromium,
            p.height_error
        ));
    }
    for (name, t) in [("all", &report.all), ("standards", &report.standards)] {
        lines.push(format!(
            "{name}: {} pages, {} boxes, share IoU>0.5 {:.3}, median IoU {:.3}, parent-relative {:.3}, height error median {:.3} mean {:.3}, {} pages within 2 %",
            t.pages,
            t.matched,
            t.share_iou_over_half,
            t.median_iou,
            t.median_parent_relative_iou,
            t.median_height_error,
            t.mean_height_error,
            t.pages_height_within_2pct
        ));
    }
    for f in &report.failures {
        lines.push(format!("failed: {f}"));
    }
    lines
}
