//! The Argoverse 2 motion-forecasting protocol (issue 13 item 4; Wilson et al., "Argoverse 2",
//! NeurIPS Datasets & Benchmarks 2021; data/driving/SOURCE.md §1) on a `scenario_*.parquet`:
//! 5 s observed (50 steps at 10 Hz, timesteps 0-49), 6 s predicted (60 steps, 50-109), for the
//! focal track and every scored track (`object_category` 2 or 3) observed over all 110 steps.
//!
//! Metrics (Argoverse definitions): over K hypotheses the best is the one with the smallest final
//! displacement; minFDE_K is its final displacement, minADE_K its average displacement over the
//! 60 steps, and a miss is minFDE_K > [`MISS_THRESHOLD_M`]. Reported at K = 1 and K = 6.
//!
//! Hypotheses ([`hypotheses`]): a base trajectory, then five variants of it made the same way for
//! every base: speed scales 0.6, 1.3 and 0.3 (the displacement from the present scaled), and
//! heading offsets of ±[`HEADING_VARIANT_RAD`] (the trajectory rotated about the present). K = 1 is
//! the base alone. Two bases: constant velocity (velocity of the last two observed samples) and the
//! trajectory model, which sees the last 2 s of the observation (its 2 s -> 3 s window, with the
//! scenario's HD map) and whose 3 s prediction is continued for the last 3 s at the velocity of its
//! final step.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::clip::{HISTORY_STEPS, STEP_S};
use crate::error::{Error, Result};
use crate::geometry::agent_heading;
use crate::hd_map::{self, HdMap};
use crate::model::{AgentWindow, TrajectoryModel, constant_velocity, displacement};
use crate::reader::av2_motion;
use crate::trajectory::Trajectory;

/// Observed steps (5 s).
pub const OBSERVED_STEPS: usize = 50;
/// Predicted steps (6 s).
pub const PREDICTED_STEPS: usize = 60;
/// Final displacement above which a forecast misses \[m\].
pub const MISS_THRESHOLD_M: f64 = 2.0;
/// Hypotheses for the K = 6 metrics.
pub const K: usize = 6;
/// Heading offset of the rotated hypotheses \[rad\].
pub const HEADING_VARIANT_RAD: f64 = 0.12;
/// `(speed scale, heading offset [rad])` of the hypotheses, the base first.
const VARIANTS: [(f64, f64); K] = [
    (1.0, 0.0),
    (0.6, 0.0),
    (1.3, 0.0),
    (1.0, HEADING_VARIANT_RAD),
    (1.0, -HEADING_VARIANT_RAD),
    (0.3, 0.0),
];

/// One agent to forecast: 110 positions in its own frame at the last observed step (x along its
/// heading), so displacements are as in the city frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Track id.
    pub track_id: String,
    /// `true` for the focal track.
    pub focal: bool,
    /// The model's input window (last 2 s observed, the 6 s future as its truth).
    pub window: AgentWindow,
}

/// Metrics at K = 1 and K = 6 over a set of agents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProtocolMetrics {
    /// Agents scored.
    pub agents: usize,
    /// minADE at K = 1 \[m\].
    pub min_ade_k1_m: f64,
    /// minFDE at K = 1 \[m\].
    pub min_fde_k1_m: f64,
    /// Miss rate at K = 1.
    pub miss_rate_k1: f64,
    /// minADE at K = 6 \[m\].
    pub min_ade_k6_m: f64,
    /// minFDE at K = 6 \[m\].
    pub min_fde_k6_m: f64,
    /// Miss rate at K = 6.
    pub miss_rate_k6: f64,
}

/// The protocol's figures on one scenario: the model and constant velocity, for the focal track
/// and for all scored tracks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProtocolReport {
    /// Scenario id.
    pub scenario_id: String,
    /// Whether the scenario's HD map was used.
    pub map: bool,
    /// Model on the focal track.
    pub focal_model: ProtocolMetrics,
    /// Constant velocity on the focal track.
    pub focal_cv: ProtocolMetrics,
    /// Model on every scored track.
    pub scored_model: ProtocolMetrics,
    /// Constant velocity on every scored track.
    pub scored_cv: ProtocolMetrics,
    /// How the K = 6 hypotheses are made.
    pub hypotheses: String,
}

/// `(final, average)`-displacement of the hypothesis with the smallest final displacement among
/// the first `k` of `hyps`, as `(minADE, minFDE)` \[m\].
pub fn min_ade_fde(hyps: &[Vec<[f64; 2]>], truth: &[[f64; 2]], k: usize) -> (f64, f64) {
    hyps.iter()
        .take(k.max(1))
        .map(|h| displacement(h, truth))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((f64::NAN, f64::NAN))
}

/// One agent's `((minADE, minFDE) at K = 1, (minADE, minFDE) at K = 6)` \[m\].
pub type AtK = ((f64, f64), (f64, f64));

/// Averages per-agent results into metrics.
pub fn summarise(pairs: &[AtK]) -> ProtocolMetrics {
    let n = pairs.len();
    let d = n.max(1) as f64;
    let mean = |f: &dyn Fn(&AtK) -> f64| pairs.iter().map(f).sum::<f64>() / d;
    ProtocolMetrics {
        agents: n,
        min_ade_k1_m: mean(&|p| p.0.0),
        min_fde_k1_m: mean(&|p| p.0.1),
        miss_rate_k1: mean(&|p| f64::from(u8::from(p.0.1 > MISS_THRESHOLD_M))),
        min_ade_k6_m: mean(&|p| p.1.0),
        min_fde_k6_m: mean(&|p| p.1.1),
        miss_rate_k6: mean(&|p| f64::from(u8::from(p.1.1 > MISS_THRESHOLD_M))),
    }
}

/// The six hypotheses from `base` (60 steps, agent frame, present at the origin): see the module
/// docs.
pub fn hypotheses(base: &[[f64; 2]]) -> Vec<Vec<[f64; 2]>> {
    VARIANTS
        .iter()
        .map(|&(scale, angle)| {
            let (s, c) = angle.sin_cos();
            base.iter()
                .map(|p| [scale * (c * p[0] - s * p[1]), scale * (s * p[0] + c * p[1])])
                .collect()
        })
        .collect()
}

/// Extends a prediction to [`PREDICTED_STEPS`] at the velocity of its last step.
fn extend(mut pred: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    let n = pred.len();
    let (last, prev) = match n {
        0 => ([0.0, 0.0], [0.0, 0.0]),
        1 => (pred[0], [0.0, 0.0]),
        _ => (pred[n - 1], pred[n - 2]),
    };
    let v = [last[0] - prev[0], last[1] - prev[1]];
    for k in 1..=PREDICTED_STEPS.saturating_sub(n) {
        pred.push([last[0] + v[0] * k as f64, last[1] + v[1] * k as f64]);
    }
    pred.truncate(PREDICTED_STEPS);
    pred
}

/// Constant velocity over 60 steps (velocity of the last two observed samples).
fn constant_velocity_60(w: &AgentWindow) -> Vec<[f64; 2]> {
    let v = w.last_velocity();
    (1..=PREDICTED_STEPS)
        .map(|k| [v[0] * k as f64 * STEP_S, v[1] * k as f64 * STEP_S])
        .collect()
}

/// The agents of the scenario at `path` (focal and scored tracks with all 110 steps), with the
/// lane context from `map`.
///
/// # Errors
/// [`Error::Scenario`] when the file cannot be read or lacks the protocol's columns.
pub fn agents(path: &Path, map: Option<&HdMap>) -> Result<(String, Vec<Agent>)> {
    let log = av2_motion::read(path);
    if let Some(r) = log.rejections.first() {
        return Err(Error::Scenario {
            path: path.to_path_buf(),
            reason: format!("{} ({} rejections)", r.reason, log.rejections.len()),
        });
    }
    let (categories, focal) = categories(path)?;
    let total = OBSERVED_STEPS + PREDICTED_STEPS;
    let mut out = Vec::new();
    for track in &log.tracks {
        let scored = categories.get(&track.track_id).is_some_and(|&c| c >= 2);
        if !scored || track.xy_m.len() != total {
            continue;
        }
        let first = OBSERVED_STEPS - 1 - HISTORY_STEPS;
        let xy = track.xy_m[first..].to_vec();
        let heading = track.heading_rad.as_ref().map(|h| h[first..].to_vec());
        let mut t = Trajectory {
            clip_id: format!("av2_motion:{}:{}:protocol", log.log_id, track.track_id),
            object_type: track.object_type.clone(),
            category: String::new(),
            present_index: HISTORY_STEPS,
            t_s: (0..xy.len())
                .map(|i| (i as f64 - HISTORY_STEPS as f64) * STEP_S)
                .collect(),
            xy_m: xy,
            heading_rad: heading,
            lane: None,
        };
        if let Some(map) = map {
            let recorded = t.heading_rad.as_ref().map(|h| h[HISTORY_STEPS]);
            let h = agent_heading(t.history(), recorded);
            t.lane = map.lane_context(t.xy_m[HISTORY_STEPS], h);
        }
        out.push(Agent {
            focal: focal.as_deref() == Some(track.track_id.as_str()),
            track_id: track.track_id.clone(),
            window: AgentWindow::from_trajectory(&t),
        });
    }
    Ok((log.log_id, out))
}

/// `object_category` per track and the focal track id.
fn categories(path: &Path) -> Result<(HashMap<String, i64>, Option<String>)> {
    use crate::reader::columns::{i64s, strings};
    let bad = |reason: String| Error::Scenario {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = fs_err::read(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .and_then(|b| b.build())
        .map_err(|e| bad(e.to_string()))?;
    let mut categories = HashMap::new();
    let mut focal = None;
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let ids = strings(&batch, "track_id").map_err(bad)?;
        let cats = i64s(&batch, "object_category").map_err(bad)?;
        let focals = strings(&batch, "focal_track_id").map_err(bad)?;
        for i in 0..batch.num_rows() {
            if let (Some(id), Some(c)) = (&ids[i], cats[i]) {
                categories.insert(id.clone(), c);
            }
            if focal.is_none() {
                focal.clone_from(&focals[i]);
            }
        }
    }
    Ok((categories, focal))
}

/// The two bases' `(K=1, K=6)` results for one agent: `(model, cv)`.
type AgentResult = (AtK, AtK);

fn score(model: Option<&TrajectoryModel>, w: &AgentWindow) -> AgentResult {
    let cv = constant_velocity_60(w);
    let base = match model {
        Some(m) => extend(m.predict(w)),
        None => extend(constant_velocity(w)),
    };
    let truth = &w.future;
    let (h_model, h_cv) = (hypotheses(&base), hypotheses(&cv));
    (
        (
            min_ade_fde(&h_model, truth, 1),
            min_ade_fde(&h_model, truth, K),
        ),
        (min_ade_fde(&h_cv, truth, 1), min_ade_fde(&h_cv, truth, K)),
    )
}

/// Runs the protocol on the scenario at `path` with `model` (constant velocity as the model too
/// when `None`), using the scenario's HD map when one is beside it.
///
/// # Errors
/// [`Error::Scenario`] (also when the scenario has no scored agent); map errors.
pub fn evaluate(path: &Path, model: Option<&TrajectoryModel>) -> Result<ProtocolReport> {
    let map = hd_map::find(path).map(|p| HdMap::load(&p)).transpose()?;
    let (scenario_id, agents) = agents(path, map.as_ref())?;
    if agents.is_empty() {
        return Err(Error::Scenario {
            path: path.to_path_buf(),
            reason: "no scored track observed over all 110 steps".to_owned(),
        });
    }
    let results: Vec<(bool, AgentResult)> = agents
        .iter()
        .map(|a| (a.focal, score(model, &a.window)))
        .collect();
    let pick = |focal_only: bool, model_side: bool| -> ProtocolMetrics {
        let pairs: Vec<_> = results
            .iter()
            .filter(|(f, _)| !focal_only || *f)
            .map(|(_, r)| if model_side { r.0 } else { r.1 })
            .collect();
        summarise(&pairs)
    };
    Ok(ProtocolReport {
        scenario_id,
        map: map.is_some(),
        focal_model: pick(true, true),
        focal_cv: pick(true, false),
        scored_model: pick(false, true),
        scored_cv: pick(false, false),
        hypotheses: format!(
            "base, then speed x0.6, x1.3, heading +{HEADING_VARIANT_RAD} rad, -{HEADING_VARIANT_RAD} rad, speed x0.3 (same for both bases); model base = its 3 s prediction from the last 2 s observed, continued at its final velocity"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ade_fde_takes_the_hypothesis_with_the_smallest_final_error() {
        // Truth: straight along x at 1 m per step for 4 steps.
        let truth = vec![[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]];
        // A: 1 m off sideways throughout (ADE 1, FDE 1).
        let a = truth.iter().map(|p| [p[0], 1.0]).collect::<Vec<_>>();
        // B: 4 m off at the first three steps, exact at the end (ADE 3, FDE 0).
        let b = vec![[1.0, 4.0], [2.0, 4.0], [3.0, 4.0], [4.0, 0.0]];
        let hyps = vec![a, b];
        assert_eq!(min_ade_fde(&hyps, &truth, 1), (1.0, 1.0));
        // K = 2: B has the smaller FDE, so minADE is B's ADE (3), not the smaller ADE (1).
        assert_eq!(min_ade_fde(&hyps, &truth, 2), (3.0, 0.0));
        let m = summarise(&[((1.0, 1.0), (3.0, 0.0)), ((2.0, 5.0), (1.0, 2.5))]);
        assert_eq!(m.agents, 2);
        assert_eq!(
            (m.min_ade_k1_m, m.min_fde_k1_m, m.miss_rate_k1),
            (1.5, 3.0, 0.5)
        );
        assert_eq!(
            (m.min_ade_k6_m, m.min_fde_k6_m, m.miss_rate_k6),
            (2.0, 1.25, 0.5)
        );
    }

    #[test]
    fn hypotheses_scale_and_rotate_about_the_present() {
        let base = vec![[1.0, 0.0], [2.0, 0.0]];
        let h = hypotheses(&base);
        assert_eq!(h.len(), K);
        assert_eq!(h[0], base);
        assert_eq!(h[1][1], [1.2, 0.0]);
        let (s, c) = HEADING_VARIANT_RAD.sin_cos();
        assert!((h[3][1][0] - 2.0 * c).abs() < 1e-12 && (h[3][1][1] - 2.0 * s).abs() < 1e-12);
        assert_eq!(extend(vec![[1.0, 0.0], [2.0, 1.0]]).len(), PREDICTED_STEPS);
        assert_eq!(extend(vec![[1.0, 0.0], [2.0, 1.0]])[2], [3.0, 2.0]);
    }

    #[test]
    fn runs_on_the_bundled_scenario() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../data/driving/av2_motion_forecasting/scenario_0a1e6f0a-1817-4a98-b02e-db8c9327d151.parquet",
        );
        let r = evaluate(&path, None).unwrap();
        assert!(r.map);
        assert_eq!(r.focal_cv.agents, 1);
        assert!(r.scored_cv.agents >= 1);
        // With constant velocity as the model both sides agree (up to rounding: the model side
        // extends a 3 s prediction); K = 6 is never worse than K = 1.
        for (a, b) in [
            (r.focal_model.min_ade_k1_m, r.focal_cv.min_ade_k1_m),
            (r.focal_model.min_fde_k1_m, r.focal_cv.min_fde_k1_m),
            (r.focal_model.min_fde_k6_m, r.focal_cv.min_fde_k6_m),
        ] {
            assert!((a - b).abs() < 1e-9, "{r:?}");
        }
        assert!(r.scored_cv.min_fde_k6_m <= r.scored_cv.min_fde_k1_m);
        // research note: CV on the focal track, 5 s -> 6 s, ADE 4.95 m, FDE 11.20 m.
        assert!((r.focal_cv.min_ade_k1_m - 4.95).abs() < 0.05, "{r:?}");
        assert!((r.focal_cv.min_fde_k1_m - 11.20).abs() < 0.05, "{r:?}");
    }
}
