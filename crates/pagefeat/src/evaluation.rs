//! Evaluation held out by site (issue 15, item 1): folds that never put one site on both
//! sides, and precision / recall / F1 with bootstrap 95 % confidence intervals over sites,
//! beside the trivial baselines (always negative, always positive).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{Draws, Scores};

/// The fold (0..k) of each row: the distinct sites, sorted and shuffled with `seed`, are dealt
/// to the folds in turn, so every row of a site lands in the same fold.
pub fn site_folds(sites: &[String], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut distinct: Vec<&String> = sites.iter().collect::<BTreeSet<_>>().into_iter().collect();
    let mut draws = Draws::new(seed);
    for i in (1..distinct.len()).rev() {
        let j = draws.below(i + 1);
        distinct.swap(i, j);
    }
    let fold_of: BTreeMap<&String, usize> = distinct
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, i % k))
        .collect();
    sites
        .iter()
        .map(|s| fold_of.get(s).copied().unwrap_or(0))
        .collect()
}

/// The items outside `fold` (the training part) and the indices of those in it (the held-out
/// part), with `fold_of` from [`site_folds`] (one fold per item).
pub fn split_fold<'a, T>(
    items: &'a [T],
    fold_of: &[usize],
    fold: usize,
) -> (Vec<&'a T>, Vec<usize>) {
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (i, (item, f)) in items.iter().zip(fold_of).enumerate() {
        if *f == fold {
            test.push(i);
        } else {
            train.push(item);
        }
    }
    (train, test)
}

/// A figure with its bootstrap 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The figure on all rows.
    pub value: f64,
    /// 2.5th percentile of the resampled figures.
    pub low: f64,
    /// 97.5th percentile of the resampled figures.
    pub high: f64,
}

/// Precision, recall and F1 with intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// tp / (tp + fp) (0 when nothing is predicted positive).
    pub precision: Interval,
    /// tp / (tp + fn).
    pub recall: Interval,
    /// Harmonic mean of the two.
    pub f1: Interval,
}

/// One evaluated row: its site, the prediction and the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The row's site.
    pub site: String,
    /// Predicted positive.
    pub predicted: bool,
    /// Labelled positive.
    pub actual: bool,
}

/// A model's figures beside the two trivial baselines, on the same rows and resamples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Rows evaluated.
    pub rows: usize,
    /// Distinct sites among them.
    pub sites: usize,
    /// Positive rows.
    pub positives: usize,
    /// Confusion counts of the model.
    pub confusion: Scores,
    /// The model.
    pub model: Figures,
    /// Predicting negative for every row.
    pub always_negative: Figures,
    /// Predicting positive for every row.
    pub always_positive: Figures,
    /// Bootstrap resamples (of sites, with replacement).
    pub resamples: usize,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[pos.min(sorted.len() - 1)]
}

fn figures(per_site: &[Scores], samples: &[Vec<usize>]) -> Figures {
    let total = per_site.iter().fold(Scores::default(), |a, s| add(a, *s));
    let mut p = Vec::with_capacity(samples.len());
    let mut r = Vec::with_capacity(samples.len());
    let mut f = Vec::with_capacity(samples.len());
    for sample in samples {
        let s = sample
            .iter()
            .fold(Scores::default(), |a, &i| add(a, per_site[i]));
        p.push(s.precision());
        r.push(s.recall());
        f.push(s.f1());
    }
    let interval = |mut v: Vec<f64>, value: f64| {
        v.sort_by(f64::total_cmp);
        Interval {
            value,
            low: percentile(&v, 0.025),
            high: percentile(&v, 0.975),
        }
    };
    Figures {
        precision: interval(p, total.precision()),
        recall: interval(r, total.recall()),
        f1: interval(f, total.f1()),
    }
}

fn add(a: Scores, b: Scores) -> Scores {
    Scores {
        tp: a.tp + b.tp,
        fp: a.fp + b.fp,
        fn_: a.fn_ + b.fn_,
        tn: a.tn + b.tn,
    }
}

/// Evaluates `outcomes`: confusion counts and figures with bootstrap intervals, resampling
/// whole sites with replacement `resamples` times (seeded, so the same rows give the same
/// intervals), and the always-negative / always-positive baselines on the same resamples.
pub fn report(outcomes: &[Outcome], resamples: usize, seed: u64) -> Report {
    let sites: Vec<&String> = outcomes
        .iter()
        .map(|o| &o.site)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index: BTreeMap<&String, usize> = sites.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let mut model = vec![Scores::default(); sites.len()];
    let mut negative = vec![Scores::default(); sites.len()];
    let mut positive = vec![Scores::default(); sites.len()];
    for o in outcomes {
        let i = index[&o.site];
        model[i].add(o.predicted, o.actual);
        negative[i].add(false, o.actual);
        positive[i].add(true, o.actual);
    }
    let mut draws = Draws::new(seed);
    let samples: Vec<Vec<usize>> = (0..resamples)
        .map(|_| (0..sites.len()).map(|_| draws.below(sites.len())).collect())
        .collect();
    let confusion = model.iter().fold(Scores::default(), |a, s| add(a, *s));
    Report {
        rows: outcomes.len(),
        sites: sites.len(),
        positives: outcomes.iter().filter(|o| o.actual).count(),
        confusion,
        model: figures(&model, &samples),
        always_negative: figures(&negative, &samples),
        always_positive: figures(&positive, &samples),
        resamples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_keep_sites_together() {
        let sites: Vec<String> = (0..40).map(|i| format!("s{}", i % 13)).collect();
        let folds = site_folds(&sites, 5, 3);
        for (a, fa) in sites.iter().zip(&folds) {
            for (b, fb) in sites.iter().zip(&folds) {
                if a == b {
                    assert_eq!(fa, fb);
                }
            }
        }
        assert_eq!(folds.iter().collect::<BTreeSet<_>>().len(), 5);
    }

    #[test]
    fn intervals_contain_the_value_and_baselines_are_trivial() {
        let outcomes: Vec<Outcome> = (0..60)
            .map(|i| Outcome {
                site: format!("s{}", i / 3),
                predicted: i % 4 == 0 || i % 7 == 0,
                actual: i % 4 == 0 || i % 5 == 0,
            })
            .collect();
        let r = report(&outcomes, 300, 9);
        for f in [r.model.precision, r.model.recall, r.model.f1] {
            assert!(f.low <= f.value && f.value <= f.high, "{f:?}");
            assert!(f.low < f.high, "{f:?}");
        }
        assert_eq!(r.always_negative.recall.value, 0.0);
        assert_eq!(r.always_positive.recall.value, 1.0);
        let prevalence = r.positives as f64 / r.rows as f64;
        assert!((r.always_positive.precision.value - prevalence).abs() < 1e-12);
        assert_eq!(report(&outcomes, 300, 9), r, "seeded");
    }
}
