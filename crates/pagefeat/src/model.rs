//! A random forest for binary labels (seed ¶99-¶102: a model trained offline on labelled
//! StatNode trees): bagged smartcore decision trees, each grown on a bootstrap sample of the
//! rows and a random subset of the feature columns. The forest's score for a row is the mean
//! of the trees' class-1 probabilities, in [0, 1]. Models are saved as JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};

use crate::error::{Error, Result};

type Tree = DecisionTreeClassifier<f64, u32, DenseMatrix<f64>, Vec<u32>>;

/// Forest settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    /// Number of trees.
    pub trees: usize,
    /// Maximum depth of each tree.
    pub max_depth: u16,
    /// Minimum samples in a leaf.
    pub min_samples_leaf: usize,
    /// Fraction of feature columns each tree sees, in (0, 1].
    pub feature_fraction: f64,
    /// Seed of the bootstrap and column draws.
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self {
            trees: 40,
            max_depth: 12,
            min_samples_leaf: 2,
            feature_fraction: 0.6,
            seed: 7,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Member {
    columns: Vec<usize>,
    /// Classes the tree saw, ascending (the columns of its probability matrix).
    classes: Vec<u32>,
    tree: Tree,
}

/// A trained forest with its feature names and decision threshold.
#[derive(Debug, Serialize, Deserialize)]
pub struct Forest {
    /// What the model predicts ("ad", "soft404").
    pub name: String,
    /// Feature names, in column order.
    pub features: Vec<String>,
    /// Score at or above which a row is positive.
    pub threshold: f64,
    /// Rows and positives seen in training.
    pub trained_on: (usize, usize),
    members: Vec<Member>,
}

/// A small deterministic generator (xorshift64*) for the bootstrap draws.
#[derive(Debug, Clone)]
pub struct Draws(u64);

impl Draws {
    /// A generator from `seed` (0 is replaced by a fixed constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next value in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v % n.max(1) as u64) as usize
    }
}

impl Forest {
    /// Trains on `rows` (one feature vector per sample) with labels `labels`.
    ///
    /// # Errors
    /// [`Error::Training`] with fewer than 4 rows, only one class, rows of different lengths,
    /// or a learner failure.
    pub fn fit(
        name: &'static str,
        features: &[&str],
        rows: &[Vec<f64>],
        labels: &[bool],
        params: ForestParams,
    ) -> Result<Self> {
        let fail = |reason: String| Error::Training {
            model: name,
            reason,
        };
        let positives = labels.iter().filter(|l| **l).count();
        if rows.len() < 4 || rows.len() != labels.len() {
            return Err(fail(format!(
                "{} rows, {} labels",
                rows.len(),
                labels.len()
            )));
        }
        if positives == 0 || positives == rows.len() {
            return Err(fail("only one class in the training data".to_owned()));
        }
        if rows.iter().any(|r| r.len() != features.len()) {
            return Err(fail("a row has the wrong number of features".to_owned()));
        }
        let mut draws = Draws::new(params.seed);
        let width = features.len();
        let take = ((width as f64 * params.feature_fraction).ceil() as usize).clamp(1, width);
        let mut members = Vec::with_capacity(params.trees);
        for t in 0..params.trees {
            let mut columns: Vec<usize> = (0..width).collect();
            for i in 0..width {
                let j = i + draws.below(width - i);
                columns.swap(i, j);
            }
            columns.truncate(take);
            columns.sort_unstable();
            // A bootstrap sample needs both classes; draw again (a few times) when it has one.
            let mut picks: Vec<usize> = Vec::new();
            for _ in 0..8 {
                picks = (0..rows.len()).map(|_| draws.below(rows.len())).collect();
                let positive = picks.iter().filter(|&&r| labels[r]).count();
                if positive > 0 && positive < picks.len() {
                    break;
                }
            }
            if picks.iter().all(|&r| labels[r]) || picks.iter().all(|&r| !labels[r]) {
                continue;
            }
            let y: Vec<u32> = picks.iter().map(|&r| u32::from(labels[r])).collect();
            let mut classes: Vec<u32> = y.clone();
            classes.sort_unstable();
            classes.dedup();
            let matrix = column_major(rows, &picks, &columns).map_err(|e| fail(e.to_string()))?;
            let tree_params = DecisionTreeClassifierParameters::default()
                .with_max_depth(params.max_depth)
                .with_min_samples_leaf(params.min_samples_leaf);
            let tree_params = DecisionTreeClassifierParameters {
                seed: Some(params.seed.wrapping_add(t as u64)),
                ..tree_params
            };
            let tree = Tree::fit(&matrix, &y, tree_params).map_err(|e| fail(e.to_string()))?;
            members.push(Member {
                columns,
                classes,
                tree,
            });
        }
        if members.is_empty() {
            return Err(fail("no bootstrap sample had both classes".to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            features: features.iter().map(|s| (*s).to_owned()).collect(),
            threshold: 0.5,
            trained_on: (rows.len(), positives),
            members,
        })
    }

    /// Scores rows: the mean class-1 probability over the trees, each in [0, 1].
    ///
    /// # Errors
    /// [`Error::Model`] when a row has the wrong width or a tree fails to predict.
    pub fn score(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let bad = |reason: String| Error::Model {
            path: self.name.clone().into(),
            reason,
        };
        if rows.iter().any(|r| r.len() != self.features.len()) {
            return Err(bad(format!(
                "rows must have {} features",
                self.features.len()
            )));
        }
        let mut sums = vec![0.0; rows.len()];
        for member in &self.members {
            let all: Vec<usize> = (0..rows.len()).collect();
            let matrix =
                column_major(rows, &all, &member.columns).map_err(|e| bad(e.to_string()))?;
            let Some(positive_column) = member.classes.iter().position(|c| *c == 1) else {
                continue; // a tree that saw no positives adds 0
            };
            let proba = member
                .tree
                .predict_proba(&matrix)
                .map_err(|e| bad(e.to_string()))?;
            for (i, sum) in sums.iter_mut().enumerate() {
                *sum += *proba.get((i, positive_column));
            }
        }
        let n = self.members.len().max(1) as f64;
        Ok(sums.into_iter().map(|s| s / n).collect())
    }

    /// Saves the model as JSON.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Model`] when it does not serialise.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(self).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        fs_err::write(path, text).map_err(|e| Error::io("writing", path, e))
    }

    /// Loads a model saved with [`Forest::save`].
    ///
    /// # Errors
    /// [`Error::Model`] when the file is missing or does not parse.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            reason: format!("{e} (train first with `pagefeat train`)"),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

/// The matrix of `rows[picks[i]][columns[j]]` (picks x columns), built column-major in one
/// allocation (what `DenseMatrix::from_2d_vec` makes from a copied `Vec<Vec<_>>`).
fn column_major(
    rows: &[Vec<f64>],
    picks: &[usize],
    columns: &[usize],
) -> std::result::Result<DenseMatrix<f64>, smartcore::error::Failed> {
    let mut values = Vec::with_capacity(picks.len() * columns.len());
    for &c in columns {
        values.extend(picks.iter().map(|&r| rows[r][c]));
    }
    DenseMatrix::new(picks.len(), columns.len(), values, true)
}

/// Precision, recall and F1 of binary predictions against labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// False negatives.
    pub fn_: usize,
    /// True negatives.
    pub tn: usize,
}

impl Scores {
    /// Counts one prediction.
    pub fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    /// tp / (tp + fp); 0 when nothing was predicted positive.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn); 0 when there are no positives.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forest_learns_a_threshold_and_round_trips() {
        let rows: Vec<Vec<f64>> = (0..60)
            .map(|i| vec![f64::from(i), f64::from(i % 7)])
            .collect();
        let labels: Vec<bool> = (0..60).map(|i| i >= 30).collect();
        let forest =
            Forest::fit("t", &["a", "b"], &rows, &labels, ForestParams::default()).expect("fit");
        let scores = forest
            .score(&[vec![5.0, 1.0], vec![55.0, 2.0]])
            .expect("score");
        assert!(scores[0] < 0.5 && scores[1] > 0.5, "{scores:?}");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("m.json");
        forest.save(&path).expect("save");
        let back = Forest::load(&path).expect("load");
        assert_eq!(back.score(&[vec![55.0, 2.0]]).expect("score")[0], scores[1]);
    }

    #[test]
    fn scores_count() {
        let mut s = Scores::default();
        for (p, a) in [(true, true), (true, false), (false, true), (false, false)] {
            s.add(p, a);
        }
        assert_eq!((s.precision(), s.recall(), s.f1()), (0.5, 0.5, 0.5));
    }
}
