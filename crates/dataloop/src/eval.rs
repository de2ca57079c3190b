//! Evaluation (issue item 7; seed ¶54: offline metrics and a pass rate per case): ADE, FDE and
//! miss rate (FDE > 2 m) of a model beside the constant-velocity baseline on the same windows,
//! and the pass rate (not a miss) per scenario category.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{AgentWindow, TrajectoryModel, constant_velocity, displacement};

/// A prediction whose final displacement exceeds this is a miss \[m\].
pub const MISS_THRESHOLD_M: f64 = 2.0;

/// Pass rates and displacement errors of one scenario category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryPass {
    /// Windows in the category.
    pub windows: usize,
    /// Share of the model's predictions with FDE ≤ 2 m.
    pub pass_rate: f64,
    /// Same for constant velocity.
    pub cv_pass_rate: f64,
    /// Model ADE over the category's windows \[m\] (0 in records written before it was kept).
    #[serde(default)]
    pub ade_m: f64,
    /// Model FDE \[m\].
    #[serde(default)]
    pub fde_m: f64,
    /// Constant velocity's ADE on the same windows \[m\].
    #[serde(default)]
    pub cv_ade_m: f64,
    /// Constant velocity's FDE \[m\].
    #[serde(default)]
    pub cv_fde_m: f64,
}

/// Metrics of one evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Evaluated windows.
    pub windows: usize,
    /// Mean average displacement error of the model \[m\].
    pub ade_m: f64,
    /// Mean final displacement error of the model \[m\].
    pub fde_m: f64,
    /// Share of windows with model FDE > 2 m.
    pub miss_rate: f64,
    /// Constant velocity's ADE on the same windows \[m\].
    pub cv_ade_m: f64,
    /// Constant velocity's FDE \[m\].
    pub cv_fde_m: f64,
    /// Constant velocity's miss rate.
    pub cv_miss_rate: f64,
    /// Pass rates per scenario category.
    pub per_category: BTreeMap<String, CategoryPass>,
}

/// Evaluates `model` (or constant velocity alone when `None`) on `(category, window)` pairs.
pub fn evaluate(model: Option<&TrajectoryModel>, windows: &[(String, AgentWindow)]) -> Metrics {
    let n = windows.len();
    let mut sums = [0.0_f64; 6];
    // Per category: windows, model passes, CV passes, and sums of ADE, FDE, CV ADE, CV FDE.
    let mut cats: BTreeMap<String, (usize, usize, usize, [f64; 4])> = BTreeMap::new();
    for (category, w) in windows {
        let cv = constant_velocity(w);
        let pred = model.map_or_else(|| cv.clone(), |m| m.predict(w));
        let (ade, fde) = displacement(&pred, &w.future);
        let (cv_ade, cv_fde) = displacement(&cv, &w.future);
        let (miss, cv_miss) = (fde > MISS_THRESHOLD_M, cv_fde > MISS_THRESHOLD_M);
        for (s, v) in sums.iter_mut().zip([
            ade,
            fde,
            f64::from(u8::from(miss)),
            cv_ade,
            cv_fde,
            f64::from(u8::from(cv_miss)),
        ]) {
            *s += v;
        }
        let entry = cats.entry(category.clone()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(!miss);
        entry.2 += usize::from(!cv_miss);
        for (sum, v) in entry.3.iter_mut().zip([ade, fde, cv_ade, cv_fde]) {
            *sum += v;
        }
    }
    let d = n.max(1) as f64;
    Metrics {
        windows: n,
        ade_m: sums[0] / d,
        fde_m: sums[1] / d,
        miss_rate: sums[2] / d,
        cv_ade_m: sums[3] / d,
        cv_fde_m: sums[4] / d,
        cv_miss_rate: sums[5] / d,
        per_category: cats
            .into_iter()
            .map(|(k, (total, pass, cv_pass, sums))| {
                let d = total as f64;
                (
                    k,
                    CategoryPass {
                        windows: total,
                        pass_rate: pass as f64 / d,
                        cv_pass_rate: cv_pass as f64 / d,
                        ade_m: sums[0] / d,
                        fde_m: sums[1] / d,
                        cv_ade_m: sums[2] / d,
                        cv_fde_m: sums[3] / d,
                    },
                )
            })
            .collect(),
    }
}

/// Relative ADE gain below which a candidate counts as equal to the champion (a refit on the
/// same statistics differs from it by rounding only).
const MIN_RELATIVE_GAIN: f64 = 1e-9;

/// `true` when `candidate` is better than `champion`: lower ADE (by more than rounding) and an
/// FDE no worse (issue item 7: "becomes the champion only if it beats the current one").
pub fn beats(candidate: &Metrics, champion_ade_m: f64, champion_fde_m: f64) -> bool {
    candidate.ade_m < champion_ade_m * (1.0 - MIN_RELATIVE_GAIN)
        && candidate.fde_m <= champion_fde_m * (1.0 + MIN_RELATIVE_GAIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(future_offset: f64) -> AgentWindow {
        // Moving at 1 m/s along x; the truth drifts sideways by `future_offset` at the end.
        AgentWindow {
            history: (0..20).map(|i| [-(20 - i) as f64 * 0.1, 0.0]).collect(),
            future: (1..=30)
                .map(|k| [k as f64 * 0.1, future_offset * k as f64 / 30.0])
                .collect(),
            class: [0.0, 1.0, 0.0],
            lane: None,
        }
    }

    #[test]
    fn metrics_table() {
        // (sideways drift, expected CV FDE, miss)
        for (drift, fde, miss) in [(0.0, 0.0, 0.0), (3.0, 3.0, 1.0), (1.5, 1.5, 0.0)] {
            let m = evaluate(None, &[("cruising".to_owned(), window(drift))]);
            assert!((m.cv_fde_m - fde).abs() < 1e-9, "{drift}: {m:?}");
            assert!(
                (m.cv_ade_m - drift * 15.5 / 30.0).abs() < 1e-9,
                "{drift}: {m:?}"
            );
            assert_eq!(m.cv_miss_rate, miss);
            assert_eq!(m.per_category["cruising"].cv_pass_rate, 1.0 - miss);
            assert!((m.per_category["cruising"].cv_fde_m - fde).abs() < 1e-9);
            assert_eq!(m.per_category["cruising"].cv_ade_m, m.cv_ade_m);
            assert_eq!(m.ade_m, m.cv_ade_m, "no model means CV");
        }
        assert!(beats(
            &evaluate(None, &[("a".to_owned(), window(0.0))]),
            0.1,
            0.1
        ));
        assert!(!beats(
            &evaluate(None, &[("a".to_owned(), window(3.0))]),
            0.1,
            0.1
        ));
        // A refit that differs from the champion by rounding only is not better.
        let m = evaluate(None, &[("a".to_owned(), window(1.0))]);
        assert!(!beats(&m, m.ade_m * (1.0 + 1e-14), m.fde_m));
        assert!(beats(&m, m.ade_m * 1.01, m.fde_m));
    }
}
