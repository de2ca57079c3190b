//! Offline training and held-out evaluation (seed ¶99-¶100): StatTrees serialised to
//! disk are read back, turned into feature rows and used to train the ad-node forest; the
//! soft-404 forest is trained on the dead-link data set's rows ([`crate::deadlink_data`]); the
//! models are saved as `ad.json` and `soft404.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ad_tokens::{
    DEFAULT_TOKENS, NodeTokens, Vocabulary, extend_rows, node_tokens, page_domain,
};
use crate::corpus::{Category, category_of_key};
use crate::deadlink_data::{self, LabelOrigin, Sample};
use crate::error::{Error, Result};
use crate::features::{NODE_FEATURES, ad_labels, node_rows};
use crate::model::{Draws, Forest, ForestParams, Scores};
use crate::stat_node::{StatTree, read_file};

/// File name of the ad model in the models directory.
pub const AD_MODEL_FILE: &str = "ad.json";
/// File name of the soft-404 model in the models directory.
pub const SOFT404_MODEL_FILE: &str = "soft404.json";

/// A tree with its key (`<category>__<page>`).
#[derive(Debug, Clone)]
pub struct NamedTree {
    /// The key (file stem).
    pub key: String,
    /// The tree.
    pub tree: StatTree,
}

impl NamedTree {
    /// The category from the key.
    pub fn category(&self) -> Option<Category> {
        category_of_key(&self.key)
    }
}

/// Reads every `*.pb` file of `dir`, sorted by name.
///
/// # Errors
/// [`Error::Io`] / [`Error::Decode`].
pub fn load_trees(dir: &Path) -> Result<Vec<NamedTree>> {
    let mut paths: Vec<PathBuf> = fs_err::read_dir(dir)
        .map_err(|e| Error::io("listing", dir, e))?
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pb"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            Ok(NamedTree {
                key: p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                tree: read_file(p)?,
            })
        })
        .collect()
}

/// What training produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Trees used for the ad model (categories ads and clean).
    pub ad_trees: usize,
    /// Node rows (after negative sampling) and positives.
    pub ad_rows: (usize, usize),
    /// Decision threshold chosen on a calibration split of the training trees.
    pub ad_threshold: f64,
    /// Dead-link rows used for the soft-404 model.
    pub soft404_rows: usize,
    /// Positives among them.
    pub soft404_positives: usize,
    /// Synthetic positives among those.
    pub soft404_synthetic: usize,
}

/// Largest number of negative rows kept per positive row of a page (and at least 40 per page).
const NEGATIVES_PER_POSITIVE: usize = 20;

/// One tree's ad samples, computed once: its site, the layout rows, token sets and labels of
/// its sample nodes ([`node_rows`], [`node_tokens`], [`ad_labels`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdSamples {
    /// The page's site (registrable domain, else the tree key): vocabulary tokens must occur
    /// on several sites.
    pub site: String,
    /// Layout rows ([`NODE_FEATURES`] columns).
    pub rows: Vec<Vec<f64>>,
    /// Token sets, one per row.
    pub tokens: Vec<NodeTokens>,
    /// Filter-list labels, one per row.
    pub labels: Vec<bool>,
}

impl AdSamples {
    /// The samples of `named`.
    pub fn of(named: &NamedTree) -> Self {
        let (samples, rows) = node_rows(&named.tree);
        let all = ad_labels(&named.tree);
        Self {
            site: page_domain(&named.tree).unwrap_or_else(|| named.key.clone()),
            tokens: node_tokens(&named.tree, &samples),
            labels: samples.iter().map(|i| all[*i]).collect(),
            rows,
        }
    }

    /// Full rows for `vocab` (layout only when it is empty and `tokens` is false).
    fn full_rows(&self, vocab: Option<&Vocabulary>) -> Vec<Vec<f64>> {
        let mut rows = self.rows.clone();
        if let Some(vocab) = vocab {
            extend_rows(&mut rows, &self.tokens, vocab);
        }
        rows
    }
}

fn ad_rows(
    trees: &[&AdSamples],
    vocab: Option<&Vocabulary>,
    seed: u64,
) -> (Vec<Vec<f64>>, Vec<bool>) {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut draws = Draws::new(seed);
    for page in trees {
        let positives = page.labels.iter().filter(|l| **l).count();
        let negatives = page.labels.len() - positives;
        let keep = (positives * NEGATIVES_PER_POSITIVE).max(40);
        for (row, label) in page.full_rows(vocab).into_iter().zip(&page.labels) {
            if *label || negatives <= keep || draws.below(negatives) < keep {
                rows.push(row);
                labels.push(*label);
            }
        }
    }
    (rows, labels)
}

/// The token vocabulary learned from `trees` (sites numbered by name).
fn vocabulary_of(trees: &[&AdSamples], k: usize) -> Vocabulary {
    let sites: BTreeMap<&str, usize> = trees
        .iter()
        .map(|t| t.site.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, i))
        .collect();
    Vocabulary::select(
        trees.iter().flat_map(|t| {
            let site = sites[t.site.as_str()];
            t.tokens
                .iter()
                .zip(&t.labels)
                .map(move |(tokens, label)| (site, tokens, *label))
        }),
        k,
    )
}

fn fit_forest(
    trees: &[&AdSamples],
    vocab: Option<&Vocabulary>,
    params: ForestParams,
) -> Result<Forest> {
    let names: Vec<String> = match vocab {
        Some(v) => v.feature_names(),
        None => NODE_FEATURES.iter().map(|s| (*s).to_owned()).collect(),
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (rows, labels) = ad_rows(trees, vocab, params.seed);
    Forest::fit("ad", &names, &rows, &labels, params)
}

/// Scores of `page`'s sample nodes under `model` (whose feature names give the vocabulary).
///
/// # Errors
/// [`Error::Model`] for feature names of another feature set; forest scoring errors.
pub fn score_samples(model: &Forest, page: &AdSamples) -> Result<Vec<f64>> {
    let vocab = Vocabulary::from_feature_names(&model.features)?;
    let tokens = model.features.len() > NODE_FEATURES.len();
    model.score(&page.full_rows(tokens.then_some(&vocab)))
}

/// Splits training pages into the fitting part (three pages in four) and the calibration part
/// (every fourth page) on which a model's decision threshold is chosen.
pub(crate) fn calibration_split<'a>(
    pages: &[&'a AdSamples],
) -> (Vec<&'a AdSamples>, Vec<&'a AdSamples>) {
    let (mut fit, mut calibration) = (Vec::new(), Vec::new());
    for (i, page) in pages.iter().enumerate() {
        if i % 4 == 3 {
            calibration.push(*page);
        } else {
            fit.push(*page);
        }
    }
    (fit, calibration)
}

/// The F1-best decision threshold among 0.05, 0.10, ..., 0.95 over `scored` (each page's node
/// scores in \[0, 1\] beside its labels); the first of equal ones wins, 0.05 when nothing
/// scores.
pub(crate) fn best_threshold(scored: &[(Vec<f64>, &Vec<bool>)]) -> f64 {
    let mut best = (-1.0, 0.5);
    for step in 1..20 {
        let t = f64::from(step) * 0.05;
        let mut scores = Scores::default();
        for (page_scores, labels) in scored {
            for (score, label) in page_scores.iter().zip(labels.iter()) {
                scores.add(*score >= t, *label);
            }
        }
        if scores.f1() > best.0 {
            best = (scores.f1(), t);
        }
    }
    best.1
}

/// Trains an ad model on `trees`: with `tokens` > 0 the vocabulary ([`Vocabulary::select`],
/// that many tokens) is learned from the fitting part; with 0 the model is layout only. The
/// threshold is picked on every fourth tree held aside (the F1-best of 0.05, 0.10, ..., 0.95),
/// then the final model is trained on all of `trees`.
///
/// # Errors
/// [`Error::Training`] when there is too little data.
pub fn fit_ad(trees: &[&AdSamples], params: ForestParams, tokens: usize) -> Result<Forest> {
    let (fit_part, calibration) = calibration_split(trees);
    let mut threshold = 0.5;
    if !calibration.is_empty() {
        let vocab = (tokens > 0).then(|| vocabulary_of(&fit_part, tokens));
        // Too few positives in the fitting part: keep 0.5.
        let probe = fit_forest(&fit_part, vocab.as_ref(), params).ok();
        if let Some(probe) = &probe {
            let scored: Vec<(Vec<f64>, &Vec<bool>)> = calibration
                .iter()
                .map(|page| (score_samples(probe, page).unwrap_or_default(), &page.labels))
                .collect();
            threshold = best_threshold(&scored);
        }
    }
    let vocab = (tokens > 0).then(|| vocabulary_of(trees, tokens));
    let mut ad = fit_forest(trees, vocab.as_ref(), params)?;
    ad.threshold = threshold;
    Ok(ad)
}

fn is_ad_tree(t: &NamedTree) -> bool {
    matches!(t.category(), Some(Category::Ads | Category::Clean))
}

/// Trains both models: the ad model from `trees`, the soft-404 model from the dead-link rows
/// `deadlinks` ([`deadlink_data::train`]). The ad threshold is picked on every fourth ad tree
/// held aside (the F1-best of 0.05, 0.10, ..., 0.95), then the final model is trained on all.
///
/// # Errors
/// [`Error::Training`] when a model has too little data.
pub fn train(
    trees: &[NamedTree],
    deadlinks: &[Sample],
    params: ForestParams,
) -> Result<(Forest, Forest, TrainSummary)> {
    let (ad, ad_trees) = train_ad(trees, params)?;
    let rows: Vec<&Sample> = deadlinks.iter().collect();
    let soft404 = deadlink_data::train(&rows, deadlink_data::forest_params(params.seed))?;
    let summary = TrainSummary {
        ad_trees,
        ad_rows: ad.trained_on,
        ad_threshold: ad.threshold,
        soft404_rows: deadlinks.len(),
        soft404_positives: deadlinks.iter().filter(|s| s.label).count(),
        soft404_synthetic: deadlinks
            .iter()
            .filter(|s| s.origin == LabelOrigin::Synthetic)
            .count(),
    };
    Ok((ad, soft404, summary))
}

/// Trains the ad model (token features, [`DEFAULT_TOKENS`] tokens) from the ads and clean
/// trees of `trees` (threshold as in [`fit_ad`]); returns it with the number of trees used.
///
/// # Errors
/// [`Error::Training`] when there is too little data.
pub fn train_ad(trees: &[NamedTree], params: ForestParams) -> Result<(Forest, usize)> {
    let samples: Vec<AdSamples> = trees
        .iter()
        .filter(|t| is_ad_tree(t))
        .map(AdSamples::of)
        .collect();
    let refs: Vec<&AdSamples> = samples.iter().collect();
    let ad = fit_ad(&refs, params, DEFAULT_TOKENS)?;
    Ok((ad, samples.len()))
}

/// Ad-node precision/recall/F1 of `model` against the filter-list labels of `trees` (all
/// visible element nodes of the ads and clean pages among them; a node is an ad when a rule
/// matches it, see [`ad_labels`]).
pub fn evaluate_ads(model: &Forest, trees: &[NamedTree]) -> (usize, Scores) {
    let mut scores = Scores::default();
    let mut pages = 0;
    for named in trees.iter().filter(|t| is_ad_tree(t)) {
        pages += 1;
        let page = AdSamples::of(named);
        let predicted = score_samples(model, &page).unwrap_or_default();
        for (score, label) in predicted.iter().zip(&page.labels) {
            scores.add(*score >= model.threshold, *label);
        }
    }
    (pages, scores)
}

/// Saves both models into `dir` (created if missing).
///
/// # Errors
/// [`Error::Io`] / [`Error::Model`].
pub fn save_models(dir: &Path, ad: &Forest, soft404: &Forest) -> Result<()> {
    fs_err::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    ad.save(&dir.join(AD_MODEL_FILE))?;
    soft404.save(&dir.join(SOFT404_MODEL_FILE))
}

/// Loads both models from `dir`.
///
/// # Errors
/// [`Error::Model`] when a file is missing (train first) or does not parse.
pub fn load_models(dir: &Path) -> Result<(Forest, Forest)> {
    Ok((
        Forest::load(&dir.join(AD_MODEL_FILE))?,
        Forest::load(&dir.join(SOFT404_MODEL_FILE))?,
    ))
}
