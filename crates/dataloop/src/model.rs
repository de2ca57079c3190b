//! Trajectory prediction (issue item 6): history 2 s -> future 3 s in the agent's local frame.
//!
//! The model is a ridge-regularised linear residual over constant velocity, solved in closed
//! form (issue 13 item 3): the normal equations `(XᵀX + λI) W = XᵀY` by Cholesky (`nalgebra`)
//! from sufficient statistics accumulated window by window, so training is one pass over the
//! data plus a 20 × 20 solve per penalty. In the agent frame (origin at the present
//! position, x along the recent direction of travel) it predicts how far the future deviates from
//! what constant velocity gives, at six knots (0.5, 1.0, ... 3.0 s; linear in between, zero at
//! the present). 15 of the 20 features are differences between velocity estimates over nested spans
//! (last sample, 0.3 s, 0.5 s, 1 s, 2 s; successive differences are weakly correlated), an
//! acceleration estimate, a pedestrian-gated velocity, a smoothing term gated to near-still
//! objects (label jitter) and a curvature term; 5 come from the log's HD map where there is one
//! (lane heading relative to the agent's, signed distance to the lane centreline, the lane's
//! heading 20 m ahead; [`crate::hd_map`]) and are 0 with an indicator set where there is none
//! (that indicator is the only constant term). The raw speed is deliberately not a feature and
//! there is no other intercept: the model can only refine constant velocity, no speed-proportional bias
//! learnt in town is extrapolated to the highway, and strong regularisation falls back to
//! constant velocity, which suits the small data (hundreds of windows). The ridge penalty is
//! picked on a validation part of the training windows (whole tracks, by hash); features are
//! scaled by their root mean square on the training windows.
//!
//! Incremental training (seed ¶50) warm-starts from the current model: every artefact keeps
//! the sufficient statistics of all windows its lineage has seen (`XᵀX` and `XᵀY` of the scaled
//! features and targets, 20×20 and 20×12 numbers) and the hashes of their clip ids. An
//! incremental run adds the statistics of the windows whose clips are new to the champion's and
//! solves again: the result is exactly the ridge fit on the union, without re-reading old data
//! and without counting a clip twice. The champion's feature scaling and ridge penalty are kept.
//! The fit itself (statistics, penalty choice, solve) is [`crate::fit`]; this module holds the
//! features, the artefact and the prediction.

use serde::{Deserialize, Serialize};

use crate::clip::{FUTURE_STEPS, HISTORY_STEPS, STEP_S};
use crate::trajectory::Trajectory;

/// Number of input features: 15 kinematic ones and 5 from the HD map (see [`AgentWindow::features`]).
pub const FEATURES: usize = 20;
/// Future steps (10 Hz) at which the residual is predicted; linear in between.
pub const KNOTS: [usize; 6] = [5, 10, 15, 20, 25, 30];
/// Number of outputs: residual (x, y) at each knot.
pub const OUTPUTS: usize = 2 * KNOTS.len();

/// Training mode (seed ¶50).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainMode {
    /// From scratch.
    Full,
    /// Warm start from the current champion.
    Incremental,
}

impl TrainMode {
    /// `full` or `incremental`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
        }
    }
}

/// A window in the agent's local frame: the model's input and target.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentWindow {
    /// History offsets relative to the present position, oldest first (20 × 2) \[m\].
    pub history: Vec<[f64; 2]>,
    /// Ground-truth future positions (30 × 2) \[m\].
    pub future: Vec<[f64; 2]>,
    /// Object class indicators: pedestrian, vehicle-like, static/background.
    pub class: [f64; 3],
    /// The lane at the present position relative to the agent, when the log has an HD map and
    /// a lane is near: lane heading minus the agent's heading \[rad\], signed distance from the
    /// centreline (left positive) \[m\], lane heading 20 m ahead minus the agent's \[rad\].
    pub lane: Option<[f64; 3]>,
}

impl AgentWindow {
    /// Transforms a trajectory into the agent frame. Heading: direction of travel over the
    /// last 0.5 s when it moved more than 0.5 m, else the recorded heading, else the whole
    /// history's displacement, else the x axis.
    pub fn from_trajectory(t: &Trajectory) -> Self {
        let h = t.history();
        let p0 = h[h.len() - 1];
        let recorded = t
            .heading_rad
            .as_ref()
            .and_then(|v| v.get(t.present_index))
            .copied();
        let heading = crate::geometry::agent_heading(h, recorded);
        let (s, c) = heading.sin_cos();
        let local = |p: [f64; 2]| {
            let (dx, dy) = (p[0] - p0[0], p[1] - p0[1]);
            [c * dx + s * dy, -s * dx + c * dy]
        };
        let ty = t.object_type.as_str();
        let class = [
            f64::from(u8::from(ty.contains("pedestrian"))),
            f64::from(u8::from(
                ty.contains("vehicle")
                    || ty.contains("truck")
                    || ty.contains("bus")
                    || ty.contains("car"),
            )),
            f64::from(u8::from(ty.contains("static") || ty.contains("background"))),
        ];
        let lane = t.lane.map(|l| {
            [
                crate::geometry::wrap_angle(l.heading_rad - heading),
                l.offset_m,
                crate::geometry::wrap_angle(l.ahead_heading_rad - heading),
            ]
        });
        Self {
            history: h[..h.len() - 1].iter().map(|&p| local(p)).collect(),
            future: t.future().iter().map(|&p| local(p)).collect(),
            class,
            lane,
        }
    }

    /// Velocity from the last two history samples (the constant-velocity baseline's) \[m/s\].
    pub fn last_velocity(&self) -> [f64; 2] {
        let last = self.history[self.history.len() - 1];
        // The present sample is the origin.
        [-last[0] / STEP_S, -last[1] / STEP_S]
    }

    /// Mean velocity over the last `steps` samples \[m/s\] (agent frame).
    fn velocity_over(&self, steps: usize) -> [f64; 2] {
        let n = self.history.len();
        let back = self.history[n - steps.min(n)];
        let span = steps.min(n) as f64 * STEP_S;
        [-back[0] / span, -back[1] / span]
    }

    /// Feature vector (unscaled): see the module docs. The last five come from the HD map and
    /// apply to non-pedestrians with a lane within 5 m (`m` = 1, else 0): `m · v · sin(Δh)`,
    /// `m · offset` (clamped to ±3 m), `m · v · sin(Δh_ahead)`, `m · v · (1 − cos(Δh_ahead))`
    /// with `v` the speed over the last 0.5 s and `Δh` lane heading minus agent heading, and the
    /// indicator `1 − m` (no map, no lane near, or a pedestrian).
    pub fn features(&self) -> [f64; FEATURES] {
        let v1 = self.last_velocity();
        let v3 = self.velocity_over(3);
        let v5 = self.velocity_over(5);
        let v10 = self.velocity_over(10);
        let v20 = self.velocity_over(HISTORY_STEPS);
        // Mean velocity of [-1.0, -0.5] s vs [-0.5, 0] s.
        let n = self.history.len();
        let p5 = self.history[n - 5];
        let p10 = self.history[n - 10];
        let v_prev = [
            (p5[0] - p10[0]) / (5.0 * STEP_S),
            (p5[1] - p10[1]) / (5.0 * STEP_S),
        ];
        let accel = [
            (v5[0] - v_prev[0]) / (5.0 * STEP_S),
            (v5[1] - v_prev[1]) / (5.0 * STEP_S),
        ];
        let speed = v5[0].hypot(v5[1]);
        let turn = if speed > 0.5 && v_prev[0].hypot(v_prev[1]) > 0.5 {
            crate::geometry::wrap_angle(v5[1].atan2(v5[0]) - v_prev[1].atan2(v_prev[0]))
        } else {
            0.0
        };
        let ped = self.class[0];
        // Near-still objects (label jitter dominates): their own smoothing weights.
        let slow = f64::from(u8::from(v20[0].hypot(v20[1]) < 1.0));
        let (m, lane) = match self.lane {
            Some(l) if ped == 0.0 => (1.0, l),
            _ => (0.0, [0.0; 3]),
        };
        [
            v3[0] - v1[0],
            v3[1] - v1[1],
            v5[0] - v3[0],
            v5[1] - v3[1],
            v10[0] - v5[0],
            v10[1] - v5[1],
            v20[0] - v10[0],
            v20[1] - v10[1],
            accel[0],
            accel[1],
            ped * v10[0],
            ped * v10[1],
            slow * (v20[0] - v1[0]),
            slow * (v20[1] - v1[1]),
            speed * turn,
            m * speed * lane[0].sin(),
            m * lane[1].clamp(-3.0, 3.0),
            m * speed * lane[2].sin(),
            m * speed * (1.0 - lane[2].cos()),
            1.0 - m,
        ]
    }
}

/// Constant-velocity prediction (velocity from the last two history samples), agent frame.
pub fn constant_velocity(w: &AgentWindow) -> Vec<[f64; 2]> {
    let v = w.last_velocity();
    (1..=FUTURE_STEPS)
        .map(|k| {
            let t = k as f64 * STEP_S;
            [v[0] * t, v[1] * t]
        })
        .collect()
}

/// A trained model: a versioned artefact, stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryModel {
    /// Always `ridge_residual_over_cv`.
    pub kind: String,
    /// Chosen ridge penalty.
    pub alpha: f64,
    /// Per-feature divisor (root mean square on the first training set).
    pub feature_scale: Vec<f64>,
    /// Weights, `FEATURES × OUTPUTS`, row-major; outputs are (x, y) residuals at [`KNOTS`].
    pub weights: Vec<f64>,
    /// Windows all fits of this lineage saw (incremental runs add theirs).
    pub train_windows: usize,
    /// `XᵀX` of the scaled features of those windows, `FEATURES × FEATURES`, row-major.
    pub gram: Vec<f64>,
    /// `XᵀY` (features × knot residual targets), `FEATURES × OUTPUTS`, row-major.
    pub xty: Vec<f64>,
    /// [`crate::fit::clip_hash`]es of the clips in those statistics, sorted; stored beside the JSON
    /// artefact (`vNNNN.seen`, see [`crate::registry::save_model`]), not in it.
    #[serde(skip)]
    pub seen_clips: Vec<u64>,
}

impl TrajectoryModel {
    /// Predicts the 30 future positions (agent frame) of `w`.
    pub fn predict(&self, w: &AgentWindow) -> Vec<[f64; 2]> {
        let f = w.features();
        let mut knots = [[0.0_f64; 2]; KNOTS.len()];
        for (j, fj) in f.iter().enumerate() {
            let z = fj / self.feature_scale[j];
            for (k, knot) in knots.iter_mut().enumerate() {
                knot[0] += z * self.weights[j * OUTPUTS + 2 * k];
                knot[1] += z * self.weights[j * OUTPUTS + 2 * k + 1];
            }
        }
        constant_velocity(w)
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let r = interpolate(&knots, i + 1);
                [p[0] + r[0], p[1] + r[1]]
            })
            .collect()
    }
}

/// The residual at future step `step` (1-based) from the knot residuals (zero at step 0).
fn interpolate(knots: &[[f64; 2]; KNOTS.len()], step: usize) -> [f64; 2] {
    let mut prev_step = 0;
    let mut prev = [0.0, 0.0];
    for (k, &knot_step) in KNOTS.iter().enumerate() {
        if step <= knot_step {
            let f = (step - prev_step) as f64 / (knot_step - prev_step) as f64;
            return [
                prev[0] + f * (knots[k][0] - prev[0]),
                prev[1] + f * (knots[k][1] - prev[1]),
            ];
        }
        prev_step = knot_step;
        prev = knots[k];
    }
    prev
}

/// (average, final) displacement error between a prediction and the truth \[m\].
pub fn displacement(pred: &[[f64; 2]], truth: &[[f64; 2]]) -> (f64, f64) {
    let errors: Vec<f64> = pred
        .iter()
        .zip(truth)
        .map(|(p, t)| (p[0] - t[0]).hypot(p[1] - t[1]))
        .collect();
    if errors.is_empty() {
        return (0.0, 0.0);
    }
    (
        errors.iter().sum::<f64>() / errors.len() as f64,
        errors[errors.len() - 1],
    )
}

/// A synthetic 5 s track for unit tests: `speed` \[m/s\], `accel` \[m/s²\], `heading`
/// \[rad\], alternating lateral jitter of `noise` \[m\]; clip id `t:{id}`.
#[cfg(test)]
pub(crate) fn test_trajectory(
    id: usize,
    speed: f64,
    accel: f64,
    heading: f64,
    noise: f64,
) -> Trajectory {
    use crate::clip::WINDOW_SAMPLES;
    let (s, c) = heading.sin_cos();
    let xy = (0..WINDOW_SAMPLES)
        .map(|i| {
            let t = i as f64 * STEP_S;
            let d = (speed * t + 0.5 * accel * t * t).max(0.0);
            // Deterministic jitter, alternating sign.
            let j = if (i + id).is_multiple_of(2) {
                noise
            } else {
                -noise
            };
            [100.0 + c * d - s * j, -50.0 + s * d + c * j]
        })
        .collect();
    Trajectory {
        clip_id: format!("t:{id}"),
        object_type: "vehicle".to_owned(),
        category: "cruising".to_owned(),
        present_index: HISTORY_STEPS,
        t_s: (0..WINDOW_SAMPLES)
            .map(|i| (i as f64 - 20.0) * STEP_S)
            .collect(),
        xy_m: xy,
        heading_rad: None,
        lane: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_frame_aligns_with_travel() {
        let w = AgentWindow::from_trajectory(&test_trajectory(0, 10.0, 0.0, 2.0, 0.0));
        let v = w.last_velocity();
        assert!((v[0] - 10.0).abs() < 1e-6 && v[1].abs() < 1e-6, "{v:?}");
        assert!((w.future[29][0] - 30.0).abs() < 1e-6, "{:?}", w.future[29]);
        let cv = constant_velocity(&w);
        let (ade, fde) = displacement(&cv, &w.future);
        assert!(ade < 1e-6 && fde < 1e-6);
    }

    #[test]
    fn knot_interpolation_table() {
        let knots = [
            [1.0, -1.0],
            [2.0, -2.0],
            [4.0, 0.0],
            [4.0, 0.0],
            [4.0, 0.0],
            [10.0, 6.0],
        ];
        // (future step, expected residual)
        for (step, want) in [
            (1, [0.2, -0.2]),
            (5, [1.0, -1.0]),
            (8, [1.6, -1.6]),
            (15, [4.0, 0.0]),
            (28, [7.6, 3.6]),
            (30, [10.0, 6.0]),
        ] {
            let got = interpolate(&knots, step);
            assert!(
                (got[0] - want[0]).abs() < 1e-12 && (got[1] - want[1]).abs() < 1e-12,
                "{step}: {got:?}"
            );
        }
    }
}
