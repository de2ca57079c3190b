//! Offline training and held-out evaluation (seed ¶99-¶100): StatTrees serialised to
//! disk are read back, turned into feature rows and used to train the ad-node forest; the
//! soft-404 forest is trained on the dead-link data set's rows ([`crate::deadlink_data`]); the
//! models are saved as `ad.json` and `soft404.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

fn ad_rows(trees: &[&NamedTree], seed: u64) -> (Vec<Vec<f64>>, Vec<bool>) {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut draws = Draws::new(seed);
    for named in trees {
        let (samples, page_rows) = node_rows(&named.tree);
        let all = ad_labels(&named.tree);
        let page_labels: Vec<bool> = samples.iter().map(|i| all[*i]).collect();
        let positives = page_labels.iter().filter(|l| **l).count();
        let negatives = page_labels.len() - positives;
        let keep = (positives * NEGATIVES_PER_POSITIVE).max(40);
        for (row, label) in page_rows.into_iter().zip(page_labels) {
            if label || negatives <= keep || draws.below(negatives) < keep {
                rows.push(row);
                labels.push(label);
            }
        }
    }
    (rows, labels)
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

/// Trains the ad model from the ads and clean trees of `trees` (threshold as for [`train`]);
/// returns it with the number of trees used.
///
/// # Errors
/// [`Error::Training`] when there is too little data.
pub fn train_ad(trees: &[NamedTree], params: ForestParams) -> Result<(Forest, usize)> {
    let ad_trees: Vec<&NamedTree> = trees.iter().filter(|t| is_ad_tree(t)).collect();
    let fit_part: Vec<&NamedTree> = ad_trees
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 3)
        .map(|(_, t)| *t)
        .collect();
    let calibration: Vec<&NamedTree> = ad_trees
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 == 3)
        .map(|(_, t)| *t)
        .collect();
    let mut threshold = 0.5;
    if !calibration.is_empty() {
        let (rows, labels) = ad_rows(&fit_part, params.seed);
        // Too few positives in the fitting part: keep 0.5.
        let probe = Forest::fit("ad", &NODE_FEATURES, &rows, &labels, params).ok();
        let mut best = (-1.0, 0.5);
        for probe in probe.iter() {
            for step in 1..20 {
                let t = f64::from(step) * 0.05;
                let mut scores = Scores::default();
                for named in &calibration {
                    evaluate_ads_into(probe, named, t, &mut scores);
                }
                if scores.f1() > best.0 {
                    best = (scores.f1(), t);
                }
            }
        }
        threshold = best.1;
    }
    let (rows, labels) = ad_rows(&ad_trees, params.seed);
    let mut ad = Forest::fit("ad", &NODE_FEATURES, &rows, &labels, params)?;
    ad.threshold = threshold;

    Ok((ad, ad_trees.len()))
}

fn evaluate_ads_into(model: &Forest, named: &NamedTree, threshold: f64, scores: &mut Scores) {
    let (samples, rows) = node_rows(&named.tree);
    let predicted = model.score(&rows).unwrap_or_default();
    let labels = ad_labels(&named.tree);
    for (i, score) in samples.iter().zip(predicted) {
        scores.add(score >= threshold, labels[*i]);
    }
}

/// Ad-node precision/recall/F1 of `model` against the filter-list labels of `trees` (all
/// visible element nodes of the ads and clean pages among them; a node is an ad when a rule
/// matches it, see [`ad_labels`]).
pub fn evaluate_ads(model: &Forest, trees: &[NamedTree]) -> (usize, Scores) {
    let mut scores = Scores::default();
    let mut pages = 0;
    for named in trees.iter().filter(|t| is_ad_tree(t)) {
        pages += 1;
        evaluate_ads_into(model, named, model.threshold, &mut scores);
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
