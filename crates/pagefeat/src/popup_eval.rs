//! The labelled popup set and its evaluation (issue 15 item 4, seed ¶73-¶79).
//!
//! `data/pages/popup-set/LABELS.tsv` lists each example: the fragment file, the expected kind
//! (`consent`, `ad`, `newsletter`, `other`, or `none` for content that is not a popup), its
//! origin (`real`: a byte copy from a public test corpus; `synthetic`: written here), its
//! family (the site or template it stands for: the unit of the bootstrap) and its split
//! (`dev`: seen while the rules of [`crate::popup`] and [`crate::overlay`] were written;
//! `test`: written after they were frozen, and never used to change them).
//!
//! Every example is rendered two ways: **injected** (the host article of
//! [`injected_host`] appends it 200 ms after the load event; Chromium only, which follows
//! pre-paint) and **static** (the fragment is part of the served page, [`static_host`]; both
//! engines). Per kind, an example counts as predicted when a popup of that kind is reported,
//! and as actual when it is labelled that kind; [`score`] gives precision and recall with
//! bootstrap intervals over families ([`crate::evaluation::report`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::ChromiumBrowser;
use crate::error::{Error, Result};
use crate::evaluation::{self, Outcome, Report};
use crate::extract::{ExtractOptions, Pipeline, ProfileArg, read_page};
use crate::input::PageInput;
use crate::layout::EngineKind;
use crate::popup::PopupKind;

/// The kinds scored, in report order.
pub const KINDS: [PopupKind; 4] = [
    PopupKind::Consent,
    PopupKind::Ad,
    PopupKind::Newsletter,
    PopupKind::Other,
];

/// Which examples were seen while the rules were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Seen while writing the rules.
    Dev,
    /// Written after the rules were frozen.
    Test,
}

/// One labelled example (a row of `LABELS.tsv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Fragment file, relative to the set's directory.
    pub file: String,
    /// The expected kind; `None` for content that is not a popup.
    pub kind: Option<PopupKind>,
    /// `real` or `synthetic`.
    pub origin: String,
    /// Site or template family (bootstrap unit).
    pub family: String,
    /// Dev or test.
    pub split: Split,
    /// The fragment's path.
    #[serde(skip)]
    pub path: PathBuf,
}

fn parse_kind(text: &str) -> Option<Option<PopupKind>> {
    Some(match text {
        "consent" => Some(PopupKind::Consent),
        "ad" => Some(PopupKind::Ad),
        "newsletter" => Some(PopupKind::Newsletter),
        "other" => Some(PopupKind::Other),
        "none" => None,
        _ => return None,
    })
}

/// Reads `dir/LABELS.tsv` (tab-separated: file, kind, origin, family, split; a header row and
/// `#` lines are skipped).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Labels`] naming the line for a row
/// with the wrong number of fields, an unknown kind or split, or a missing fragment file.
pub fn load(dir: &Path) -> Result<Vec<Example>> {
    let path = dir.join("LABELS.tsv");
    let text = fs_err::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
    let mut examples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if n == 0 || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| Error::Labels {
            path: path.clone(),
            line: n + 1,
            reason: why.to_owned(),
        };
        let fields: Vec<&str> = line.split('\t').collect();
        let [file, kind, origin, family, split] = fields.as_slice() else {
            return Err(bad("expected 5 tab-separated fields"));
        };
        let kind = parse_kind(kind).ok_or_else(|| bad(&format!("unknown kind {kind:?}")))?;
        let split = match *split {
            "dev" => Split::Dev,
            "test" => Split::Test,
            other => return Err(bad(&format!("unknown split {other:?}"))),
        };
        let fragment = dir.join(file);
        if !fragment.is_file() {
            return Err(bad(&format!("no file {}", fragment.display())));
        }
        examples.push(Example {
            file: (*file).to_owned(),
            kind,
            origin: (*origin).to_owned(),
            family: (*family).to_owned(),
            split,
            path: fragment,
        });
    }
    Ok(examples)
}

const HOST_PARAGRAPH: &str = "<p>The council met on Tuesday to discuss the new budget. Members \
    debated the proposals for several hours before agreeing on a plan for road repairs, school \
    buildings and the public library.</p>";

fn host(body_end: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Host article</title>\
         <style>body{{margin:0;font-family:sans-serif}}main{{max-width:760px;margin:0 auto;padding:16px}}</style>\
         </head><body><main><h1>Council agrees budget</h1>{}</main>{body_end}</body></html>",
        HOST_PARAGRAPH.repeat(6)
    )
}

/// The host article with `fragment` in a `<template>`, appended to `<body>` by a script
/// 200 ms after the load event (what a consent or newsletter script does).
pub fn injected_host(fragment: &str) -> String {
    host(&format!(
        "<template id=\"pagefeat-popup\">{fragment}</template>\
         <script>addEventListener('load', function () {{ setTimeout(function () {{ \
         var t = document.getElementById('pagefeat-popup'); \
         document.body.appendChild(t.content.cloneNode(true)); }}, 200); }});</script>"
    ))
}

/// The host article with `fragment` at the end of `<body>` as served (no script).
pub fn static_host(fragment: &str) -> String {
    host(fragment)
}

/// How an example was rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rendering {
    /// Appended by a script after load ([`injected_host`]).
    Injected,
    /// Part of the served page ([`static_host`]).
    Static,
}

/// What was found for one example in one rendering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// The example's file.
    pub file: String,
    /// Its expected kind (`None`: not a popup).
    pub expected: Option<PopupKind>,
    /// Kinds of the popups reported, in report order (empty: none).
    pub kinds: Vec<PopupKind>,
    /// The family (bootstrap unit).
    pub family: String,
    /// Dev or test.
    pub split: Split,
}

impl Found {
    /// True when the example's expectation holds: its kind among the reported ones and no
    /// other kind, or nothing reported for `none`.
    pub fn correct(&self) -> bool {
        match self.expected {
            Some(kind) => self.kinds.iter().all(|k| *k == kind) && self.kinds.contains(&kind),
            None => self.kinds.is_empty(),
        }
    }
}

/// Precision and recall of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindReport {
    /// The kind.
    pub kind: PopupKind,
    /// Figures with bootstrap intervals over families.
    pub report: Report,
}

/// Scores `found` per kind ([`KINDS`]) with `resamples` bootstrap draws over families.
pub fn score(found: &[Found], resamples: usize, seed: u64) -> Vec<KindReport> {
    KINDS
        .iter()
        .map(|&kind| {
            let outcomes: Vec<Outcome> = found
                .iter()
                .map(|f| Outcome {
                    site: f.family.clone(),
                    predicted: f.kinds.contains(&kind),
                    actual: f.expected == Some(kind),
                })
                .collect();
            KindReport {
                kind,
                report: evaluation::report(&outcomes, resamples, seed),
            }
        })
        .collect()
}

/// Renders every example of `examples` with `engine` (a `browser` is needed for Chromium)
/// the `rendering` way and collects the kinds of the popups found.
///
/// # Errors
/// Reading a fragment, or a page that fails to render (the example's file is named).
pub async fn run(
    pipeline: &Pipeline,
    browser: Option<&ChromiumBrowser>,
    examples: &[Example],
    engine: EngineKind,
    rendering: Rendering,
    max_bytes: usize,
) -> Result<Vec<Found>> {
    let options = ExtractOptions {
        engine,
        profile: ProfileArg::Panorama,
        selector: None,
        scroll_y: None,
    };
    let mut found = Vec::with_capacity(examples.len());
    for example in examples {
        let fragment = read_page(&example.path, max_bytes)?;
        let html = match rendering {
            Rendering::Injected => injected_host(&fragment.html),
            Rendering::Static => static_host(&fragment.html),
        };
        let page = PageInput::from_bytes(
            format!("popup-set/{}", example.file),
            Some(fragment.base_url.clone()),
            html.as_bytes(),
            max_bytes,
        )?;
        let extraction = pipeline.extract(&page, browser, &options).await?;
        found.push(Found {
            file: example.file.clone(),
            expected: example.kind,
            kinds: extraction.result.popups.iter().map(|p| p.kind).collect(),
            family: example.family.clone(),
            split: example.split,
        });
    }
    Ok(found)
}

/// Text lines of a per-kind table: `label`, then one row per kind with P and R, their 95 %
/// intervals and the counts.
pub fn table(label: &str, reports: &[KindReport]) -> Vec<String> {
    let mut lines = vec![format!(
        "{label:<34} {:>10} {:>18} {:>18} {:>4} {:>4} {:>4}",
        "kind", "precision", "recall", "tp", "fp", "fn"
    )];
    for r in reports {
        let m = &r.report.model;
        let c = r.report.confusion;
        lines.push(format!(
            "{:<34} {:>10} {:>5.3} [{:.2}-{:.2}] {:>5.3} [{:.2}-{:.2}] {:>4} {:>4} {:>4}",
            "",
            format!("{:?}", r.kind).to_lowercase(),
            m.precision.value,
            m.precision.low,
            m.precision.high,
            m.recall.value,
            m.recall.low,
            m.recall.high,
            c.tp,
            c.fp,
            c.fn_
        ));
    }
    lines
}

/// The set's directory under `data/pages`.
pub const SET_DIR: &str = "popup-set";

/// Bootstrap resamples for the popup figures.
const RESAMPLES: usize = 1000;
/// Bootstrap seed.
const SEED: u64 = 74;

/// The figures of one engine and rendering on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Engine.
    pub engine: EngineKind,
    /// How the examples were put on the page.
    pub rendering: Rendering,
    /// Dev or test examples.
    pub split: Split,
    /// Examples scored.
    pub examples: usize,
    /// Examples whose expectation held ([`Found::correct`]).
    pub correct: usize,
    /// Per-kind precision and recall.
    pub kinds: Vec<KindReport>,
    /// The examples that went wrong, with what was found.
    pub wrong: Vec<Found>,
}

/// Every run over the set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Chromium injected, Chromium static, embedded static; each split apart.
    pub runs: Vec<RunReport>,
}

impl Evaluation {
    /// The run for one engine, rendering and split.
    pub fn run(
        &self,
        engine: EngineKind,
        rendering: Rendering,
        split: Split,
    ) -> Option<&RunReport> {
        self.runs
            .iter()
            .find(|r| r.engine == engine && r.rendering == rendering && r.split == split)
    }

    /// Text table of every run (see [`table`]) and the wrong examples.
    pub fn table(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for run in &self.runs {
            let label = format!(
                "{} {:?} {:?} {}/{}",
                run.engine.as_str(),
                run.rendering,
                run.split,
                run.correct,
                run.examples
            )
            .to_lowercase();
            lines.extend(table(&label, &run.kinds));
            for w in &run.wrong {
                lines.push(format!(
                    "    wrong: {} expected {:?} found {:?}",
                    w.file, w.expected, w.kinds
                ));
            }
        }
        lines
    }
}

/// Runs the set in `dir` through Chromium (injected and static, when `browser` is given)
/// and the embedded engine (static), and scores each split apart.
///
/// # Errors
/// As [`load`] and [`run`].
pub async fn evaluate(
    pipeline: &Pipeline,
    browser: Option<&ChromiumBrowser>,
    dir: &Path,
    config: &crate::config::Config,
) -> Result<Evaluation> {
    let examples = load(dir)?;
    let mut plans = vec![(EngineKind::Embedded, Rendering::Static)];
    if browser.is_some() {
        plans.insert(0, (EngineKind::Chromium, Rendering::Static));
        plans.insert(0, (EngineKind::Chromium, Rendering::Injected));
    }
    let mut runs = Vec::new();
    for (engine, rendering) in plans {
        let found = run(
            pipeline,
            browser,
            &examples,
            engine,
            rendering,
            config.input.max_bytes,
        )
        .await?;
        for split in [Split::Dev, Split::Test] {
            let rows: Vec<Found> = found.iter().filter(|f| f.split == split).cloned().collect();
            runs.push(RunReport {
                engine,
                rendering,
                split,
                examples: rows.len(),
                correct: rows.iter().filter(|f| f.correct()).count(),
                kinds: score(&rows, RESAMPLES, SEED),
                wrong: rows.iter().filter(|f| !f.correct()).cloned().collect(),
            });
        }
    }
    Ok(Evaluation { runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(expected: Option<PopupKind>, kinds: &[PopupKind], family: &str) -> Found {
        Found {
            file: family.to_owned(),
            expected,
            kinds: kinds.to_vec(),
            family: family.to_owned(),
            split: Split::Test,
        }
    }

    #[test]
    fn a_wrong_kind_costs_both_kinds_and_a_late_box_costs_precision() {
        let rows = [
            found(Some(PopupKind::Consent), &[PopupKind::Consent], "a"),
            found(Some(PopupKind::Newsletter), &[PopupKind::Other], "b"),
            found(None, &[PopupKind::Other], "c"),
            found(Some(PopupKind::Other), &[PopupKind::Other], "d"),
        ];
        let reports = score(&rows, 50, 1);
        let of = |k: PopupKind| {
            reports
                .iter()
                .find(|r| r.kind == k)
                .map(|r| r.report.confusion)
                .unwrap()
        };
        let consent = of(PopupKind::Consent);
        assert_eq!((consent.tp, consent.fp, consent.fn_), (1, 0, 0));
        let newsletter = of(PopupKind::Newsletter);
        assert_eq!((newsletter.tp, newsletter.fp, newsletter.fn_), (0, 0, 1));
        let other = of(PopupKind::Other);
        assert_eq!((other.tp, other.fp, other.fn_), (1, 2, 0));
        assert!(rows[0].correct() && !rows[1].correct() && !rows[2].correct());
    }

    #[test]
    fn the_bundled_labels_load_and_every_kind_has_test_examples() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/pages/popup-set");
        let examples = load(&dir).unwrap();
        for kind in KINDS.iter().map(|k| Some(*k)).chain([None]) {
            let n = examples
                .iter()
                .filter(|e| e.kind == kind && e.split == Split::Test)
                .count();
            assert!(n >= 6, "{kind:?}: {n} test examples");
        }
    }

    #[test]
    fn a_bad_row_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("LABELS.tsv"),
            "file\tkind\torigin\tfamily\tsplit\nx.html\tpopup\treal\tx\tdev\n",
        )
        .unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("LABELS.tsv`:2:") && error.contains("unknown kind"),
            "{error}"
        );
    }
}
