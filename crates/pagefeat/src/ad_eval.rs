//! `pagefeat adnodes`: ad-node recognition evaluated held out by site (issue 15 items 1 and 2).
//!
//! Every page (the bundled ones and, when given, the shared corpus' `pages/*.gz`) is laid out
//! by the embedded engine and labelled by the bundled EasyList ([`crate::adfilter`]: cosmetic
//! selectors and network rules on the node's URLs; label origin `filter-list`). Pages are
//! dealt to `k` folds by site ([`crate::site::site_of`]: canonical / og:url / base href, else
//! the file name), so no site is on both sides. For each fold two models are trained on the
//! other folds' pages, the layout-only forest and the forest with token features
//! ([`crate::ad_tokens`], vocabulary learned from the training folds only), and every visible
//! element node of the held-out pages is scored. The report gives precision / recall / F1 with
//! bootstrap intervals over sites beside the trivial baselines ([`crate::evaluation`]).

use std::time::Instant;

use indicatif::ProgressBar;
use serde::Serialize;

use crate::ad_linear::{LinearAd, LinearParams};
use crate::deadlink_data::{Source, read_page_file, stem_of};
use crate::error::{Error, Result};
use crate::evaluation::{self, Outcome, Report, site_folds, split_fold};
use crate::extract::{ExtractOptions, Pipeline};
use crate::model::ForestParams;
use crate::pagetext;
use crate::site::site_of;
use crate::training::{AdSamples, NamedTree, fit_ad, score_samples};

/// Writes labelled `pages` to `path` as gzipped JSON (a cache for [`read_cache`]).
///
/// # Errors
/// [`Error::Io`] when the file cannot be written, [`Error::Model`] when it does not serialise.
pub fn write_cache(path: &std::path::Path, pages: &[AdSamples]) -> Result<()> {
    let file = fs_err::File::create(path).map_err(|e| Error::io("creating", path, e))?;
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    serde_json::to_writer(&mut gz, pages).map_err(|e| Error::Model {
        path: path.to_path_buf(),
        reason: format!("sample cache: {e}"),
    })?;
    gz.finish()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .map_err(|e| Error::io("writing", path, e))
}

/// Reads a cache written by [`write_cache`].
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Model`] when it does not parse.
pub fn read_cache(path: &std::path::Path) -> Result<Vec<AdSamples>> {
    let file = fs_err::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    serde_json::from_reader(gz).map_err(|e| Error::Model {
        path: path.to_path_buf(),
        reason: format!("sample cache: {e}"),
    })
}

/// Held-out outcomes of the linear model ([`crate::ad_linear`]) over `folds` site folds, with
/// one TSV line per held-out error (`FN` / `FP`, site, score, threshold, layout row, tokens)
/// for reading what the model misses.
///
/// # Errors
/// [`Error::Training`] when a fold's training part has only one class.
pub fn held_out_linear_errors(
    pages: &[AdSamples],
    folds: usize,
    params: LinearParams,
    seed: u64,
) -> Result<(Vec<Outcome>, Vec<String>)> {
    let mut errors = Vec::new();
    let sites: Vec<String> = pages.iter().map(|p| p.site.clone()).collect();
    let fold_of = site_folds(&sites, folds, seed);
    let mut outcomes = Vec::new();
    for fold in 0..folds.max(1) {
        let (train, test) = split_fold(pages, &fold_of, fold);
        if test.is_empty() {
            continue;
        }
        let model = LinearAd::fit(&train, params)?;
        for page in test.iter().map(|&i| &pages[i]) {
            let scores = model.score(page);
            for (((s, l), row), t) in scores
                .iter()
                .zip(&page.labels)
                .zip(&page.rows)
                .zip(&page.tokens)
            {
                if (*s >= model.threshold) != *l {
                    let row: Vec<String> = row.iter().map(|v| format!("{v:.2}")).collect();
                    let tokens: Vec<&str> = t.tokens.iter().map(String::as_str).collect();
                    errors.push(format!(
                        "{}\t{}\t{s:.3}\t{:.2}\t{}\t{}\t{}",
                        if *l { "FN" } else { "FP" },
                        page.site,
                        model.threshold,
                        row.join(","),
                        t.third_party,
                        tokens.join(" ")
                    ));
                }
            }
            outcomes.extend(scores.iter().zip(&page.labels).map(|(s, l)| Outcome {
                site: page.site.clone(),
                predicted: *s >= model.threshold,
                actual: *l,
            }));
        }
    }
    Ok((outcomes, errors))
}

/// Bootstrap resamples of the report.
const RESAMPLES: usize = 1000;

/// The two models' held-out figures and what they were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct AdEvaluation {
    /// Pages laid out and labelled.
    pub pages: usize,
    /// Pages with at least one labelled ad node.
    pub pages_with_ads: usize,
    /// Pages skipped (unreadable or refused), with the reason.
    pub skipped: Vec<String>,
    /// Folds by site.
    pub folds: usize,
    /// Token columns asked for ([`crate::ad_tokens::DEFAULT_TOKENS`] in `train`).
    pub tokens: usize,
    /// Layout features only (what `train` used before token features); `None` when the
    /// forests were skipped (`--no-forest`).
    pub layout_only: Option<Report>,
    /// Layout plus token features (forest); `None` when skipped.
    pub with_tokens: Option<Report>,
    /// The sparse logistic model over every token seen on 3+ training sites and their
    /// character pieces ([`crate::ad_linear`]).
    pub linear: Report,
    /// The linear model's held-out errors as TSV lines ([`held_out_linear_errors`]); not in
    /// the JSON report (`adnodes --errors FILE` writes them).
    #[serde(skip)]
    pub linear_errors: Vec<String>,
    /// Vocabulary of the last fold's token model (the first 20 tokens).
    pub vocabulary_sample: Vec<String>,
    /// Seconds spent laying out pages, and training plus scoring.
    pub layout_seconds: f64,
    /// See `layout_seconds`.
    pub train_seconds: f64,
}

/// Lays out and labels `pages` (the pipeline's recognizer must carry the filter list), returning
/// each page's samples with its site and the pages that failed.
///
/// # Errors
/// [`Error::WorkersGone`] when the recognizer workers died; page errors are returned as
/// skipped pages instead.
pub async fn label_pages(
    pipeline: &Pipeline,
    pages: &[Source],
    bar: Option<&ProgressBar>,
) -> Result<(Vec<AdSamples>, Vec<String>)> {
    let options = ExtractOptions::embedded_panorama();
    let max = pipeline.config().input.max_bytes;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for page in pages {
        if let Some(bar) = bar {
            bar.inc(1);
        }
        let input = match read_page_file(&page.path, max) {
            Ok(input) => input,
            Err(error) => {
                skipped.push(format!("{}: {error}", page.file));
                continue;
            }
        };
        let (site, _) = site_of(&pagetext::read(&input.html), stem_of(&page.file));
        match pipeline.extract(&input, None, &options).await {
            Ok(extraction) => {
                let named = NamedTree {
                    key: page.file.clone(),
                    tree: extraction.result.tree,
                };
                let mut samples = AdSamples::of(&named);
                samples.site = site;
                out.push(samples);
            }
            Err(Error::WorkersGone) => return Err(Error::WorkersGone),
            Err(error) => skipped.push(format!("{}: {error}", page.file)),
        }
    }
    Ok((out, skipped))
}

/// Held-out outcomes of one feature set over `folds` site folds (`tokens` = 0: layout only).
/// Returns the outcomes and the last fold's model feature names.
///
/// # Errors
/// [`Error::Training`] when a fold's training part has too little data.
pub fn held_out(
    pages: &[AdSamples],
    folds: usize,
    tokens: usize,
    params: ForestParams,
    seed: u64,
) -> Result<(Vec<Outcome>, Vec<String>)> {
    let sites: Vec<String> = pages.iter().map(|p| p.site.clone()).collect();
    let fold_of = site_folds(&sites, folds, seed);
    let mut outcomes = Vec::new();
    let mut names = Vec::new();
    for fold in 0..folds.max(1) {
        let (train, test) = split_fold(pages, &fold_of, fold);
        if test.is_empty() {
            continue;
        }
        let model = fit_ad(&train, params, tokens)?;
        for page in test.iter().map(|&i| &pages[i]) {
            let scores = score_samples(&model, page)?;
            outcomes.extend(scores.iter().zip(&page.labels).map(|(s, l)| Outcome {
                site: page.site.clone(),
                predicted: *s >= model.threshold,
                actual: *l,
            }));
        }
        names = model.features;
    }
    Ok((outcomes, names))
}

/// Evaluates the feature sets on labelled `pages` (see the module docs); the two forests only
/// when `forests` is true.
///
/// # Errors
/// As [`held_out`].
pub fn evaluate(
    pages: &[AdSamples],
    folds: usize,
    tokens: usize,
    params: ForestParams,
    forests: bool,
) -> Result<AdEvaluation> {
    let started = Instant::now();
    let (linear, linear_errors) =
        held_out_linear_errors(pages, folds, LinearParams::default(), params.seed)?;
    let linear = evaluation::report(&linear, RESAMPLES, params.seed);
    let (mut layout_only, mut with_tokens, mut names) = (None, None, Vec::new());
    if forests {
        let (layout, _) = held_out(pages, folds, 0, params, params.seed)?;
        let (tokened, n) = held_out(pages, folds, tokens, params, params.seed)?;
        layout_only = Some(evaluation::report(&layout, RESAMPLES, params.seed));
        with_tokens = Some(evaluation::report(&tokened, RESAMPLES, params.seed));
        names = n;
    }
    Ok(AdEvaluation {
        pages: pages.len(),
        pages_with_ads: pages.iter().filter(|p| p.labels.contains(&true)).count(),
        skipped: Vec::new(),
        folds,
        tokens,
        layout_only,
        with_tokens,
        linear,
        linear_errors,
        vocabulary_sample: names
            .iter()
            .skip(crate::features::NODE_FEATURES.len() + 1)
            .take(20)
            .cloned()
            .collect(),
        layout_seconds: 0.0,
        train_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The report as table lines: one row per feature set and baseline.
pub fn table(e: &AdEvaluation) -> Vec<String> {
    let mut lines = vec![
        format!(
            "ad nodes held out by site: {} pages ({} with filter-list ads), {} sites, {} nodes, {} labelled, {} folds",
            e.pages, e.pages_with_ads, e.linear.sites, e.linear.rows, e.linear.positives, e.folds
        ),
        format!(
            "{:<28} {:>20} {:>20} {:>20}",
            "model", "precision [95% CI]", "recall [95% CI]", "F1 [95% CI]"
        ),
    ];
    let fmt = |i: &evaluation::Interval| format!("{:.3} [{:.3},{:.3}]", i.value, i.low, i.high);
    let mut rows = vec![("linear, all tokens + pieces", &e.linear.model)];
    if let Some(r) = &e.with_tokens {
        rows.push(("forest, layout + tokens", &r.model));
    }
    if let Some(r) = &e.layout_only {
        rows.push(("forest, layout only", &r.model));
    }
    rows.push(("always positive", &e.linear.always_positive));
    for (name, f) in rows {
        lines.push(format!(
            "{:<28} {:>20} {:>20} {:>20}",
            name,
            fmt(&f.precision),
            fmt(&f.recall),
            fmt(&f.f1)
        ));
    }
    lines.push(format!(
        "vocabulary (first 20): {}",
        e.vocabulary_sample.join(" ")
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ad_tokens::NodeTokens;

    #[test]
    fn sample_cache_round_trips() {
        let page = AdSamples {
            site: "example.org".to_owned(),
            rows: vec![vec![1.5, -2.0], vec![0.0, 3.25]],
            tokens: vec![
                NodeTokens {
                    tokens: ["own:ad".to_owned(), "url:doubleclick".to_owned()].into(),
                    third_party: 1,
                },
                NodeTokens::default(),
            ],
            labels: vec![true, false],
        };
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("samples.json.gz");
        write_cache(&path, std::slice::from_ref(&page)).expect("write");
        let back = read_cache(&path).expect("read");
        assert_eq!(back.len(), 1);
        assert_eq!(
            (
                &back[0].site,
                &back[0].rows,
                &back[0].tokens,
                &back[0].labels
            ),
            (&page.site, &page.rows, &page.tokens, &page.labels)
        );
        assert!(read_cache(&dir.path().join("missing")).is_err());
    }
}
