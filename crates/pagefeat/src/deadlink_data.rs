//! The dead-link data set (issue 15, items 1 and 3): labelled pages with their site, the label's
//! origin and their feature rows; the feature cache shipped in the repository; the hand-checked
//! regression set; site-held-out evaluation and training of the soft-404 forest.
//!
//! Rows: every bundled page except the popup fixtures, every page of the shared corpus
//! (`pages-corpus/pages/*.gz`, 1,229 real saved pages, negatives), and a synthetic error page
//! ([`crate::deadlink::synthesize`]) made from every second of those normal pages (by a hash
//! of the file name), which keeps its page's site. Labels and their origins:
//! - `hand-checked`: pages listed in `hand-checked.tsv` (title and main text read one by one);
//! - `content-rule`: the other real pages, negative because they are saved article / benchmark
//!   pages and neither their title nor their first heading holds an error phrase (a rule checked
//!   over the whole corpus; no corpus page is an error page);
//! - `synthetic`: generated error pages, positive.
//!
//! Feature rows are cached in `features.tsv` (`pagefeat deadlinks --corpus DIR` rebuilds it),
//! so training and the demo do not read the 36 MB corpus; the test suite recomputes the rows of
//! the shipped pages and compares them with the cache.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::deadlink::{self, FEATURES, TEMPLATES};
use crate::error::{Error, Result};
use crate::evaluation::{self, Outcome, Report};
use crate::input::PageInput;
use crate::model::{Forest, ForestParams};
use crate::site::{SiteSource, site_of};

/// The feature cache's file name in the dead-link data directory.
pub const FEATURES_FILE: &str = "features.tsv";
/// The hand-checked set's file name in the dead-link data directory.
pub const HAND_CHECKED_FILE: &str = "hand-checked.tsv";

/// Where a label comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelOrigin {
    /// A filter-list rule (EasyList).
    FilterList,
    /// A rule over the page's content, written and checked by hand (see the module docs).
    ContentRule,
    /// The page's title and main text were read and the label decided by a person.
    HandChecked,
    /// A generated page.
    Synthetic,
}

impl LabelOrigin {
    /// The kebab-case name used in TSV files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FilterList => "filter-list",
            Self::ContentRule => "content-rule",
            Self::HandChecked => "hand-checked",
            Self::Synthetic => "synthetic",
        }
    }

    /// Parses [`LabelOrigin::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::FilterList,
            Self::ContentRule,
            Self::HandChecked,
            Self::Synthetic,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One labelled page with its features.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `corpus/<file>`, `bundled/<category>/<file>` or `synthetic/<template>/<base file>`.
    pub file: String,
    /// Its site ([`crate::site`]).
    pub site: String,
    /// Where the site came from.
    pub site_source: SiteSource,
    /// Dead link (soft-404 or error page).
    pub label: bool,
    /// Where the label comes from.
    pub origin: LabelOrigin,
    /// The feature row ([`FEATURES`]).
    pub row: Vec<f64>,
}

/// One line of `hand-checked.tsv`: `file, site, label, origin, note`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandChecked {
    /// As in [`Sample::file`].
    pub file: String,
    /// The site.
    pub site: String,
    /// `dead-link` or `normal`.
    pub dead_link: bool,
    /// `hand-checked` (or `synthetic` for generated pages that were looked at).
    pub origin: LabelOrigin,
    /// What the page is, and why it is in the set (`mentions:` = a normal page that mentions
    /// not-found words).
    pub note: String,
}

impl HandChecked {
    /// A normal page that merely mentions not-found words (its note starts with `mentions`).
    pub fn mentions_not_found(&self) -> bool {
        !self.dead_link && self.note.starts_with("mentions")
    }
}

fn bad(path: &Path, reason: String) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads `hand-checked.tsv` (a header line, then tab-separated lines).
///
/// # Errors
/// [`Error::Io`]; [`Error::Model`] for a malformed line.
pub fn read_hand_checked(path: &Path) -> Result<Vec<HandChecked>> {
    let text = fs_err::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, site, label, origin, note] = cols[..] else {
            return Err(bad(path, format!("line {}: 5 columns expected", n + 1)));
        };
        let dead_link = match label {
            "dead-link" => true,
            "normal" => false,
            other => return Err(bad(path, format!("line {}: label {other:?}", n + 1))),
        };
        let origin = LabelOrigin::parse(origin)
            .ok_or_else(|| bad(path, format!("line {}: origin {origin:?}", n + 1)))?;
        out.push(HandChecked {
            file: file.to_owned(),
            site: site.to_owned(),
            dead_link,
            origin,
            note: note.to_owned(),
        });
    }
    Ok(out)
}

/// Writes the feature cache: `file, site, site_source, label, origin`, then the features.
///
/// # Errors
/// [`Error::Io`].
pub fn write_features(path: &Path, samples: &[Sample]) -> Result<()> {
    let mut text = String::from("file\tsite\tsite_source\tlabel\torigin");
    for name in FEATURES {
        text.push('\t');
        text.push_str(name);
    }
    text.push('\n');
    for s in samples {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}",
            s.file,
            s.site,
            s.site_source.as_str(),
            u8::from(s.label),
            s.origin.as_str()
        ));
        for v in &s.row {
            // Shortest text that reads back to the same f64.
            text.push_str(&format!("\t{v}"));
        }
        text.push('\n');
    }
    fs_err::write(path, text).map_err(|e| Error::io("writing", path, e))
}

/// Reads the feature cache written by [`write_features`].
///
/// # Errors
/// [`Error::Io`]; [`Error::Model`] when the header does not name [`FEATURES`] (a stale cache:
/// rebuild it) or a line is malformed.
pub fn read_features(path: &Path) -> Result<Vec<Sample>> {
    let text = fs_err::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    if header.len() != 5 + FEATURES.len() || header[5..] != FEATURES[..] {
        return Err(bad(
            path,
            "its columns are not this version's dead-link features (rebuild with `pagefeat deadlinks --corpus DIR`)".to_owned(),
        ));
    }
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        let malformed = || bad(path, format!("line {}: malformed", n + 2));
        if cols.len() != header.len() {
            return Err(malformed());
        }
        let row: Vec<f64> = cols[5..]
            .iter()
            .map(|v| v.parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| malformed())?;
        out.push(Sample {
            file: cols[0].to_owned(),
            site: cols[1].to_owned(),
            site_source: SiteSource::parse(cols[2]).ok_or_else(malformed)?,
            label: cols[3] == "1",
            origin: LabelOrigin::parse(cols[4]).ok_or_else(malformed)?,
            row,
        });
    }
    Ok(out)
}

/// Reads a page file, gunzipping `*.gz`, and decodes it from its charset.
///
/// # Errors
/// [`Error::Io`] and the [`PageInput::from_bytes`] errors.
pub fn read_page_file(path: &Path, max_bytes: usize) -> Result<PageInput> {
    let raw = fs_err::read(path).map_err(|e| Error::io("reading", path, e))?;
    let bytes = if path.extension().is_some_and(|x| x == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::io("gunzipping", path, e))?;
        out
    } else {
        raw
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    PageInput::from_bytes(name, None, &bytes, max_bytes)
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A real page to label: its sample name, its file, its stem for the site rule, and its
/// label before the hand-checked set overrides it.
#[derive(Debug, Clone)]
pub struct Source {
    /// As in [`Sample::file`].
    pub file: String,
    /// The page file (`.html` or `.html.gz`).
    pub path: PathBuf,
    /// Dead link by its place (the bundled `errors` directory).
    pub label: bool,
    /// Make a synthetic variant of it (normal pages only).
    pub make_variant: bool,
}

/// The real pages: the bundled ones (`pages_dir/<category>/*.html`, without popups) and, when
/// given, the corpus (`corpus_dir/pages/*.gz`), sorted.
///
/// # Errors
/// [`Error::Io`] when a directory cannot be listed.
pub fn sources(pages_dir: &Path, corpus_dir: Option<&Path>) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for category in ["ads", "clean", "errors", "hardneg"] {
        for path in list(&pages_dir.join(category), ".html")? {
            let name = file_name(&path);
            out.push(Source {
                file: format!("bundled/{category}/{name}"),
                label: category == "errors",
                make_variant: matches!(category, "ads" | "clean"),
                path,
            });
        }
    }
    if let Some(corpus) = corpus_dir {
        for path in list(&corpus.join("pages"), ".gz")? {
            let name = file_name(&path);
            out.push(Source {
                file: format!("corpus/{}", name.trim_end_matches(".gz")),
                label: false,
                make_variant: true,
                path,
            });
        }
    }
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs_err::read_dir(dir)
        .map_err(|e| Error::io("listing", dir, e))?
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    Ok(files)
}

/// The stem the site rule reads from a sample file name (`corpus/traf__x.de.y.html` ->
/// `traf__x.de.y`).
pub fn stem_of(file: &str) -> &str {
    let name = file.rsplit('/').next().unwrap_or(file);
    name.strip_suffix(".html").unwrap_or(name)
}

/// Labels and featurises `sources` (and their synthetic variants); pages that cannot be read
/// are skipped and returned with their error. Labels and origins of pages listed in `hand`
/// come from it.
pub fn build(
    sources: &[Source],
    hand: &[HandChecked],
    max_bytes: usize,
) -> (Vec<Sample>, Vec<String>) {
    let hand: BTreeMap<&str, &HandChecked> = hand.iter().map(|h| (h.file.as_str(), h)).collect();
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for source in sources {
        let page = match read_page_file(&source.path, max_bytes) {
            Ok(page) => page,
            Err(error) => {
                skipped.push(format!("{}: {error}", source.file));
                continue;
            }
        };
        let text = crate::pagetext::read(&page.html);
        let (site, site_source) = site_of(&text, stem_of(&source.file));
        let (label, origin) = match hand.get(source.file.as_str()) {
            Some(h) => (h.dead_link, h.origin),
            None => (source.label, LabelOrigin::ContentRule),
        };
        samples.push(Sample {
            file: source.file.clone(),
            site: site.clone(),
            site_source,
            label,
            origin,
            row: deadlink::row(&text),
        });
        let hash = fnv(&source.file);
        if source.make_variant && !label && hash.is_multiple_of(2) {
            let template = &TEMPLATES[(hash / 2) as usize % TEMPLATES.len()];
            let html = deadlink::synthesize(&page.html, template);
            let name = source.file.rsplit('/').next().unwrap_or(&source.file);
            samples.push(Sample {
                file: format!("synthetic/{}/{name}", template.name),
                site,
                site_source,
                label: true,
                origin: LabelOrigin::Synthetic,
                row: deadlink::row_of_html(&html),
            });
        }
    }
    (samples, skipped)
}

/// The forest settings of the dead-link model: every tree sees every feature (with random
/// column subsets, trees that miss the lexicon features fall back on page size).
pub fn forest_params(seed: u64) -> ForestParams {
    ForestParams {
        trees: 30,
        max_depth: 8,
        min_samples_leaf: 2,
        feature_fraction: 1.0,
        seed,
    }
}

/// Trains the dead-link forest on `samples`.
///
/// # Errors
/// [`Error::Training`].
pub fn train(samples: &[&Sample], params: ForestParams) -> Result<Forest> {
    let rows: Vec<Vec<f64>> = samples.iter().map(|s| s.row.clone()).collect();
    let labels: Vec<bool> = samples.iter().map(|s| s.label).collect();
    Forest::fit("soft404", &FEATURES, &rows, &labels, params)
}

/// Held-out scores of every sample: `folds`-fold cross-validation with folds by site
/// ([`evaluation::site_folds`]), each sample scored by the forest trained on the other folds.
///
/// # Errors
/// [`Error::Training`] when a fold's training part has one class only.
pub fn held_out_scores(samples: &[Sample], folds: usize, params: ForestParams) -> Result<Vec<f64>> {
    let sites: Vec<String> = samples.iter().map(|s| s.site.clone()).collect();
    let fold_of = evaluation::site_folds(&sites, folds, params.seed);
    let mut scores = vec![0.0; samples.len()];
    for fold in 0..folds.max(1) {
        let (train_part, test_idx) = evaluation::split_fold(samples, &fold_of, fold);
        let forest = train(&train_part, params)?;
        let rows: Vec<Vec<f64>> = test_idx.iter().map(|&i| samples[i].row.clone()).collect();
        for (i, score) in test_idx.iter().zip(forest.score(&rows)?) {
            scores[*i] = score;
        }
    }
    Ok(scores)
}

/// The site-held-out report of `scores` at `threshold`, over the samples `keep` selects.
pub fn report_of(
    samples: &[Sample],
    scores: &[f64],
    threshold: f64,
    keep: impl Fn(&Sample) -> bool,
    resamples: usize,
    seed: u64,
) -> Report {
    let outcomes: Vec<Outcome> = samples
        .iter()
        .zip(scores)
        .filter(|(s, _)| keep(s))
        .map(|(s, score)| Outcome {
            site: s.site.clone(),
            predicted: *score >= threshold,
            actual: s.label,
        })
        .collect();
    evaluation::report(&outcomes, resamples, seed)
}

/// The site-held-out evaluation of the dead-link model on a data set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    /// Rows, distinct sites, positives (real and synthetic).
    pub rows: usize,
    /// Distinct sites.
    pub sites: usize,
    /// Real positives (error pages that were not generated).
    pub real_positives: usize,
    /// Synthetic positives.
    pub synthetic_positives: usize,
    /// Folds by site.
    pub folds: usize,
    /// Decision threshold on the forest score.
    pub threshold: f64,
    /// Every row, each scored by a forest that never saw its site.
    pub held_out: Report,
    /// Real pages only (synthetic rows left out of the evaluation, not of training).
    pub held_out_real: Report,
    /// Hand-checked normal pages that mention not-found words, and those called dead links.
    pub mentions_negatives: usize,
    /// Their false positives (file, held-out score).
    pub mentions_false_positives: Vec<(String, f64)>,
    /// All false positives (file, score), highest first, at most 20.
    pub false_positives: Vec<(String, f64)>,
    /// All false negatives (file, score), lowest first, at most 20.
    pub false_negatives: Vec<(String, f64)>,
    /// Held-out recall per synthetic template: (found, total).
    pub recall_by_template: BTreeMap<String, (usize, usize)>,
    /// Label origins of the rows: origin -> (rows, positives).
    pub origins: BTreeMap<String, (usize, usize)>,
}

/// Bootstrap resamples and the seed used for every dead-link figure.
pub const RESAMPLES: usize = 1000;

/// Evaluates the dead-link model on `samples` held out by site (`folds` folds; see
/// [`held_out_scores`]), with bootstrap intervals over sites.
///
/// # Errors
/// [`Error::Training`] when a fold cannot be trained.
pub fn evaluate(
    samples: &[Sample],
    hand: &[HandChecked],
    folds: usize,
    params: ForestParams,
) -> Result<Evaluation> {
    let scores = held_out_scores(samples, folds, params)?;
    let threshold = 0.5;
    let seed = params.seed;
    let mentions: Vec<&str> = hand
        .iter()
        .filter(|h| h.mentions_not_found())
        .map(|h| h.file.as_str())
        .collect();
    let mut fps: Vec<(String, f64)> = Vec::new();
    let mut fns: Vec<(String, f64)> = Vec::new();
    let mut mentions_fp = Vec::new();
    let mut by_template: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut origins: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (s, &score) in samples.iter().zip(&scores) {
        let predicted = score >= threshold;
        let round = (score * 1000.0).round() / 1000.0;
        let entry = origins.entry(s.origin.as_str().to_owned()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(s.label);
        if predicted && !s.label {
            fps.push((s.file.clone(), round));
            if mentions.contains(&s.file.as_str()) {
                mentions_fp.push((s.file.clone(), round));
            }
        }
        if !predicted && s.label {
            fns.push((s.file.clone(), round));
        }
        if s.origin == LabelOrigin::Synthetic {
            let template = s.file.split('/').nth(1).unwrap_or("?").to_owned();
            let e = by_template.entry(template).or_default();
            e.0 += usize::from(predicted);
            e.1 += 1;
        }
    }
    fps.sort_by(|a, b| b.1.total_cmp(&a.1));
    fns.sort_by(|a, b| a.1.total_cmp(&b.1));
    fps.truncate(20);
    fns.truncate(20);
    let sites: std::collections::BTreeSet<&str> = samples.iter().map(|s| s.site.as_str()).collect();
    Ok(Evaluation {
        rows: samples.len(),
        sites: sites.len(),
        real_positives: samples
            .iter()
            .filter(|s| s.label && s.origin != LabelOrigin::Synthetic)
            .count(),
        synthetic_positives: samples
            .iter()
            .filter(|s| s.origin == LabelOrigin::Synthetic)
            .count(),
        folds,
        threshold,
        held_out: report_of(samples, &scores, threshold, |_| true, RESAMPLES, seed),
        held_out_real: report_of(
            samples,
            &scores,
            threshold,
            |s| s.origin != LabelOrigin::Synthetic,
            RESAMPLES,
            seed,
        ),
        mentions_negatives: mentions.len(),
        mentions_false_positives: mentions_fp,
        false_positives: fps,
        false_negatives: fns,
        recall_by_template: by_template,
        origins,
    })
}
