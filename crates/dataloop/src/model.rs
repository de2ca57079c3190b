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

use std::collections::HashSet;

use nalgebra::SMatrix;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clip::{FUTURE_STEPS, HISTORY_STEPS, STEP_S};
use crate::error::Error;
use crate::trajectory::Trajectory;

/// Number of input features: 15 kinematic ones and 5 from the HD map (see [`AgentWindow::features`]).
pub const FEATURES: usize = 20;
/// Future steps (10 Hz) at which the residual is predicted; linear in between.
pub const KNOTS: [usize; 6] = [5, 10, 15, 20, 25, 30];
/// Number of outputs: residual (x, y) at each knot.
pub const OUTPUTS: usize = 2 * KNOTS.len();
/// Ridge penalties tried on the validation part.
const ALPHAS: [f64; 5] = [0.001, 0.01, 0.03, 0.1, 0.3];
/// Fewest training windows accepted for a full fit.
pub const MIN_TRAIN_WINDOWS: usize = 20;
/// Fewest training windows accepted for an incremental fit (the prior toward the champion keeps
/// a small update well posed).
pub const MIN_INCREMENTAL_WINDOWS: usize = 5;

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
    /// [`clip_hash`]es of the clips in those statistics, sorted; stored beside the JSON
    /// artefact (`vNNNN.seen`, see [`crate::registry::save_model`]), not in it.
    #[serde(skip)]
    pub seen_clips: Vec<u64>,
}

/// What [`train`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainSummary {
    /// Windows added to the statistics (new clips only).
    pub windows: usize,
    /// Windows skipped because their clip was already counted.
    pub duplicates: usize,
    /// Chosen ridge penalty.
    pub alpha: f64,
    /// Validation ADE of the chosen penalty \[m\] (full training only).
    pub validation_ade_m: Option<f64>,
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

/// Trains a model on `windows` (each with its clip id, used for the validation split and for
/// deduplication). `warm_start` is the champion for [`TrainMode::Incremental`]. `progress` is
/// called with the number of solves done out of the total.
///
/// A window whose clip id came earlier in `windows`, or (incremental) is already in the
/// champion's statistics, is skipped, so an incremental fit equals the full fit on the union.
///
/// # Errors
/// [`Error::TooFewWindows`] under [`MIN_TRAIN_WINDOWS`] (full) or [`MIN_INCREMENTAL_WINDOWS`]
/// (incremental) windows given; [`Error::Fit`] when the normal equations cannot be solved.
pub fn train(
    windows: &[(String, AgentWindow)],
    warm_start: Option<&TrajectoryModel>,
    mut progress: impl FnMut(usize, usize),
) -> Result<(TrajectoryModel, TrainSummary), Error> {
    let needed = if warm_start.is_some() {
        MIN_INCREMENTAL_WINDOWS
    } else {
        MIN_TRAIN_WINDOWS
    };
    if windows.len() < needed {
        return Err(Error::TooFewWindows {
            needed,
            got: windows.len(),
        });
    }
    let mut seen: HashSet<u64> = warm_start
        .map(|c| c.seen_clips.iter().copied().collect())
        .unwrap_or_default();
    let fresh: Vec<&(String, AgentWindow)> = windows
        .iter()
        .filter(|(id, _)| seen.insert(clip_hash(id)))
        .collect();
    let duplicates = windows.len() - fresh.len();
    if duplicates > 0 {
        tracing::info!(duplicates, "training skipped windows already counted");
    }
    let mut seen_clips: Vec<u64> = seen.into_iter().collect();
    seen_clips.sort_unstable();
    if let Some(champion) = warm_start {
        let mut model = fit_incremental(champion, fresh.iter().map(|(_, w)| w))?;
        model.seen_clips = seen_clips;
        progress(1, 1);
        return Ok((
            model,
            TrainSummary {
                windows: fresh.len(),
                duplicates,
                alpha: champion.alpha,
                validation_ade_m: None,
            },
        ));
    }
    if fresh.len() < needed {
        return Err(Error::TooFewWindows {
            needed,
            got: fresh.len(),
        });
    }
    let (fit_part, val_part): (Vec<_>, Vec<_>) = fresh.iter().partition(|(id, _)| {
        // Whole tracks go to one side: the id without its `:offset_ms` suffix.
        let track = id.rsplit_once(':').map_or(id.as_str(), |(t, _)| t);
        Sha256::digest(track.as_bytes())[0] % 5 != 0
    });
    let whole = val_part.is_empty() || fit_part.is_empty();
    let (fit_part, val_part) = if whole {
        (fresh.clone(), fresh.clone())
    } else {
        (fit_part, val_part)
    };
    // Each window's features are computed once: the final fit's statistics are the fit part's
    // plus the validation part's.
    let fit_stats = Stats::of(fit_part.iter().map(|(_, w)| w));
    let all_stats = if whole {
        fit_stats.clone()
    } else {
        fit_stats.merged(&Stats::of(val_part.iter().map(|(_, w)| w)))
    };
    let scale = all_stats.scale();
    let total = ALPHAS.len() + 1;
    let mut best: Option<(f64, f64)> = None;
    for (i, &alpha) in ALPHAS.iter().enumerate() {
        let model = fit_stats.fit(&scale, alpha)?;
        let ade = mean_ade(&model, val_part.iter().map(|(_, w)| w));
        if best.is_none_or(|(_, b)| ade < b) {
            best = Some((alpha, ade));
        }
        progress(i + 1, total);
    }
    let (alpha, validation_ade_m) =
        best.map_or((ALPHAS[ALPHAS.len() - 1], None), |(a, v)| (a, Some(v)));
    let mut model = all_stats.fit(&scale, alpha)?;
    model.seen_clips = seen_clips;
    progress(total, total);
    Ok((
        model,
        TrainSummary {
            windows: fresh.len(),
            duplicates,
            alpha,
            validation_ade_m,
        },
    ))
}

/// The 64-bit key of a clip id in [`TrajectoryModel::seen_clips`] (the first 8 bytes of its
/// SHA-256).
pub fn clip_hash(clip_id: &str) -> u64 {
    let digest = Sha256::digest(clip_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// `XᵀX` (features × features).
type Gram = SMatrix<f64, FEATURES, FEATURES>;
/// `XᵀY` (features × outputs), also the shape of the weights.
type Xty = SMatrix<f64, FEATURES, OUTPUTS>;

/// Sufficient statistics of a set of windows: count, `XᵀX` and `XᵀY` of the unscaled features
/// and the knot-residual targets.
#[derive(Debug, Clone)]
struct Stats {
    rows: usize,
    gram: Gram,
    xty: Xty,
}

impl Stats {
    fn of<'a>(windows: impl Iterator<Item = &'a AgentWindow>) -> Self {
        let mut stats = Self {
            rows: 0,
            gram: Gram::zeros(),
            xty: Xty::zeros(),
        };
        // Plain arrays (the upper triangle of XᵀX), not matrix products: this loop is the
        // whole cost of training and also runs in debug builds.
        let mut gram = [[0.0_f64; FEATURES]; FEATURES];
        let mut xty = [[0.0_f64; OUTPUTS]; FEATURES];
        for w in windows {
            let x = w.features();
            let y = targets(w);
            for (i, &xi) in x.iter().enumerate() {
                for (g, &xj) in gram[i][i..].iter_mut().zip(&x[i..]) {
                    *g += xi * xj;
                }
                for (t, &yk) in xty[i].iter_mut().zip(&y) {
                    *t += xi * yk;
                }
            }
            stats.rows += 1;
        }
        stats.gram = Gram::from_fn(|i, j| gram[i.min(j)][i.max(j)]);
        stats.xty = Xty::from_fn(|i, k| xty[i][k]);
        stats
    }

    fn merged(&self, other: &Self) -> Self {
        Self {
            rows: self.rows + other.rows,
            gram: self.gram + other.gram,
            xty: self.xty + other.xty,
        }
    }

    /// Per-feature root mean square (at least 1e-6).
    fn scale(&self) -> Vec<f64> {
        let n = self.rows.max(1) as f64;
        (0..FEATURES)
            .map(|j| (self.gram[(j, j)] / n).sqrt().max(1e-6))
            .collect()
    }

    /// `XᵀX` and `XᵀY` of the features divided by `scale`.
    fn scaled(&self, scale: &[f64]) -> (Gram, Xty) {
        let gram = Gram::from_fn(|i, j| self.gram[(i, j)] / (scale[i] * scale[j]));
        let xty = Xty::from_fn(|i, k| self.xty[(i, k)] / scale[i]);
        (gram, xty)
    }

    fn fit(&self, scale: &[f64], alpha: f64) -> Result<TrajectoryModel, Error> {
        let (gram, xty) = self.scaled(scale);
        model_from(gram, xty, self.rows, scale.to_vec(), alpha)
    }
}

/// The knot-residual targets of `w`: truth minus constant velocity at [`KNOTS`], (x, y) pairs.
fn targets(w: &AgentWindow) -> [f64; OUTPUTS] {
    let v = w.last_velocity();
    let mut y = [0.0; OUTPUTS];
    for (k, &step) in KNOTS.iter().enumerate() {
        // Constant velocity at `step` is `v · step · STEP_S` ([`constant_velocity`]).
        let t = step as f64 * STEP_S;
        y[2 * k] = w.future[step - 1][0] - v[0] * t;
        y[2 * k + 1] = w.future[step - 1][1] - v[1] * t;
    }
    y
}

/// Solves the ridge normal equations `(XᵀX + alpha·rows·I) W = XᵀY` (Cholesky) for scaled
/// statistics of `rows` windows and packs the model. The penalty `alpha·rows` is the minimiser
/// of `‖Y − XW‖² / (2·rows) + alpha/2 · ‖W‖²`, the objective the ridge penalties in [`ALPHAS`]
/// were chosen for.
fn model_from(
    gram: Gram,
    xty: Xty,
    rows: usize,
    feature_scale: Vec<f64>,
    alpha: f64,
) -> Result<TrajectoryModel, Error> {
    let lambda = alpha * rows.max(1) as f64;
    let system = gram + Gram::identity() * lambda;
    let weights = system
        .cholesky()
        .ok_or_else(|| Error::Fit("XᵀX + λI is not positive definite".to_owned()))?
        .solve(&xty);
    let row_major = |m: &dyn Fn(usize, usize) -> f64, cols: usize| -> Vec<f64> {
        (0..FEATURES)
            .flat_map(|i| (0..cols).map(move |j| (i, j)))
            .map(|(i, j)| m(i, j))
            .collect()
    };
    Ok(TrajectoryModel {
        kind: "ridge_residual_over_cv".to_owned(),
        alpha,
        feature_scale,
        weights: row_major(&|i, j| weights[(i, j)], OUTPUTS),
        train_windows: rows,
        gram: row_major(&|i, j| gram[(i, j)], FEATURES),
        xty: row_major(&|i, j| xty[(i, j)], OUTPUTS),
        seen_clips: Vec::new(),
    })
}

/// Adds `windows` to the champion's statistics and solves again (see the module docs).
fn fit_incremental<'a>(
    champion: &TrajectoryModel,
    windows: impl Iterator<Item = &'a AgentWindow>,
) -> Result<TrajectoryModel, Error> {
    if champion.gram.len() != FEATURES * FEATURES
        || champion.xty.len() != FEATURES * OUTPUTS
        || champion.feature_scale.len() != FEATURES
    {
        return Err(Error::Fit(
            "champion artefact has malformed statistics".to_owned(),
        ));
    }
    let added = Stats::of(windows);
    let (gram, xty) = added.scaled(&champion.feature_scale);
    let gram = gram + Gram::from_row_slice(&champion.gram);
    let xty = xty + Xty::from_row_slice(&champion.xty);
    let mut model = model_from(
        gram,
        xty,
        champion.train_windows + added.rows,
        champion.feature_scale.clone(),
        champion.alpha,
    )?;
    model.kind.clone_from(&champion.kind);
    Ok(model)
}

fn mean_ade<'a>(model: &TrajectoryModel, windows: impl Iterator<Item = &'a AgentWindow>) -> f64 {
    let mut sum = 0.0;
    let mut n = 0;
    for w in windows {
        let pred = model.predict(w);
        sum += displacement(&pred, &w.future).0;
        n += 1;
    }
    if n == 0 { f64::NAN } else { sum / f64::from(n) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::WINDOW_SAMPLES;

    fn trajectory(id: usize, speed: f64, accel: f64, heading: f64, noise: f64) -> Trajectory {
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

    #[test]
    fn agent_frame_aligns_with_travel() {
        let w = AgentWindow::from_trajectory(&trajectory(0, 10.0, 0.0, 2.0, 0.0));
        let v = w.last_velocity();
        assert!((v[0] - 10.0).abs() < 1e-6 && v[1].abs() < 1e-6, "{v:?}");
        assert!((w.future[29][0] - 30.0).abs() < 1e-6, "{:?}", w.future[29]);
        let cv = constant_velocity(&w);
        let (ade, fde) = displacement(&cv, &w.future);
        assert!(ade < 1e-6 && fde < 1e-6);
    }

    #[test]
    fn learns_to_beat_constant_velocity_on_noisy_decelerating_tracks() {
        let make = |range: std::ops::Range<usize>| -> Vec<(String, AgentWindow)> {
            range
                .map(|i| {
                    let speed = 5.0 + (i % 7) as f64;
                    let t = trajectory(i, speed, -1.0, i as f64 * 0.3, 0.15);
                    (t.clip_id.clone(), AgentWindow::from_trajectory(&t))
                })
                .collect()
        };
        let train_set = make(0..80);
        let test_set = make(100..140);
        let (model, summary) = train(&train_set, None, |_, _| {}).unwrap();
        assert_eq!(summary.windows, 80);
        let score = |f: &dyn Fn(&AgentWindow) -> Vec<[f64; 2]>| {
            test_set
                .iter()
                .map(|(_, w)| displacement(&f(w), &w.future).0)
                .sum::<f64>()
                / test_set.len() as f64
        };
        let model_ade = score(&|w| model.predict(w));
        let cv_ade = score(&constant_velocity);
        assert!(model_ade < 0.8 * cv_ade, "model {model_ade} vs cv {cv_ade}");
        // Warm start: an incremental fit keeps the champion's scaling and penalty and adds its
        // windows to the champion's statistics.
        let (inc, _) = train(&make(200..240), Some(&model), |_, _| {}).unwrap();
        assert_eq!(inc.feature_scale, model.feature_scale);
        assert_eq!(inc.train_windows, 80 + 40);
        let inc_ade = score(&|w| inc.predict(w));
        let full_union = Stats::of(
            train_set
                .iter()
                .chain(make(200..240).iter())
                .map(|(_, w)| w),
        )
        .fit(&model.feature_scale, model.alpha)
        .unwrap();
        let union_ade = score(&|w| full_union.predict(w));
        assert!(
            inc_ade < cv_ade,
            "incremental {inc_ade} vs cv {cv_ade}, model {model_ade}, union {union_ade}"
        );
    }

    fn windows(range: std::ops::Range<usize>) -> Vec<(String, AgentWindow)> {
        range
            .map(|i| {
                let t = trajectory(i, 4.0 + (i % 5) as f64, -0.8, i as f64 * 0.7, 0.1);
                (t.clip_id.clone(), AgentWindow::from_trajectory(&t))
            })
            .collect()
    }

    fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
        let max_b = b.iter().map(|w| w.abs()).fold(0.0, f64::max).max(1e-9);
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
            / max_b
    }

    #[test]
    fn incremental_equals_full_fit_on_the_union() {
        let all = windows(0..60);
        let stats = Stats::of(all.iter().map(|(_, w)| w));
        let scale = stats.scale();
        let first = Stats::of(all[..35].iter().map(|(_, w)| w))
            .fit(&scale, 0.05)
            .unwrap();
        let incremental = fit_incremental(&first, all[35..].iter().map(|(_, w)| w)).unwrap();
        let full = stats.fit(&scale, 0.05).unwrap();
        assert_eq!(incremental.train_windows, 60);
        assert!(max_rel_diff(&incremental.gram, &full.gram) < 1e-12);
        assert!(max_rel_diff(&incremental.weights, &full.weights) < 1e-9);
    }

    #[test]
    fn incremental_training_counts_each_clip_once() {
        // The champion saw clips 0..40; the increment brings 20..60, half of them known.
        let (champion, _) = train(&windows(0..40), None, |_, _| {}).unwrap();
        assert_eq!(champion.seen_clips.len(), 40);
        let (inc, summary) = train(&windows(20..60), Some(&champion), |_, _| {}).unwrap();
        assert_eq!((summary.windows, summary.duplicates), (20, 20));
        assert_eq!(inc.train_windows, 60);
        assert_eq!(inc.seen_clips.len(), 60);
        let union = Stats::of(windows(0..60).iter().map(|(_, w)| w))
            .fit(&champion.feature_scale, champion.alpha)
            .unwrap();
        assert!(max_rel_diff(&inc.weights, &union.weights) < 1e-9);
        // The same increment again adds nothing and changes nothing.
        let (again, summary) = train(&windows(20..60), Some(&inc), |_, _| {}).unwrap();
        assert_eq!((summary.windows, summary.duplicates), (0, 40));
        assert_eq!(again.train_windows, 60);
        assert!(max_rel_diff(&again.weights, &inc.weights) < 1e-12);
    }

    #[test]
    fn targets_are_truth_minus_constant_velocity_at_the_knots() {
        for (_, w) in windows(0..5) {
            let cv = constant_velocity(&w);
            let y = targets(&w);
            for (k, &step) in KNOTS.iter().enumerate() {
                assert!((y[2 * k] - (w.future[step - 1][0] - cv[step - 1][0])).abs() < 1e-12);
                assert!((y[2 * k + 1] - (w.future[step - 1][1] - cv[step - 1][1])).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn statistics_are_x_transpose_x_and_x_transpose_y() {
        let all = windows(0..7);
        let stats = Stats::of(all.iter().map(|(_, w)| w));
        let x: Vec<[f64; FEATURES]> = all.iter().map(|(_, w)| w.features()).collect();
        let y: Vec<[f64; OUTPUTS]> = all.iter().map(|(_, w)| targets(w)).collect();
        for i in 0..FEATURES {
            for j in 0..FEATURES {
                let want: f64 = x.iter().map(|r| r[i] * r[j]).sum();
                assert!((stats.gram[(i, j)] - want).abs() < 1e-9 * want.abs().max(1.0));
            }
            for k in 0..OUTPUTS {
                let want: f64 = x.iter().zip(&y).map(|(r, t)| r[i] * t[k]).sum();
                assert!((stats.xty[(i, k)] - want).abs() < 1e-9 * want.abs().max(1.0));
            }
        }
        assert_eq!(stats.rows, 7);
    }

    #[test]
    fn closed_form_solves_the_normal_equations() {
        let all = windows(0..50);
        let stats = Stats::of(all.iter().map(|(_, w)| w));
        let scale = stats.scale();
        let model = stats.fit(&scale, 0.01).unwrap();
        // (XᵀX + λI) W − XᵀY = 0 on the scaled statistics.
        let (gram, xty) = stats.scaled(&scale);
        let w = Xty::from_row_slice(&model.weights);
        let residual = (gram + Gram::identity() * (0.01 * 50.0)) * w - xty;
        assert!(residual.amax() < 1e-9 * xty.amax().max(1.0), "{residual}");
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

    #[test]
    fn too_few_windows_is_an_error() {
        assert!(matches!(
            train(&[], None, |_, _| {}),
            Err(Error::TooFewWindows { .. })
        ));
    }
}
