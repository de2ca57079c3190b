//! Fitting the trajectory model (issue 13 items 2-3, seed ¶49-¶50): one streaming pass over
//! the training windows into sufficient statistics, the ridge penalty chosen on a validation
//! part, the normal equations solved in closed form.
//!
//! [`Trainer`] takes windows one at a time and keeps, whatever the number of windows:
//! - the statistics (`XᵀX`, `XᵀY`, count) of the fit part and of the validation part (whole
//!   tracks go to one side by a hash of the track id, one in five to validation): 2 × 20 × 32
//!   numbers;
//! - the [`clip_hash`] of every clip seen, for deduplication (8 bytes per clip);
//! - a bounded, deterministic sample of at most [`VALIDATION_SAMPLE`] validation windows (those
//!   with the smallest clip hashes), on which each penalty in [`ALPHAS`] is scored by ADE.
//!
//! Memory is therefore bounded by the clip count (the hash set) and [`VALIDATION_SAMPLE`], not
//! by the windows' size, so a scheduled export of millions of clips streams through it batch by
//! batch ([`crate::closed_loop`]). Below [`VALIDATION_SAMPLE`] validation windows the result
//! equals a fit that holds every window in memory.
//!
//! Incremental training (seed ¶50) adds the statistics of the windows whose clips are new to
//! the champion's and solves again with the champion's scaling and penalty: exactly the ridge
//! fit on the union, each clip counted once.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use nalgebra::SMatrix;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clip::STEP_S;
use crate::error::Error;
use crate::model::{AgentWindow, FEATURES, KNOTS, OUTPUTS, TrajectoryModel, displacement};

/// Ridge penalties tried on the validation part.
const ALPHAS: [f64; 5] = [0.001, 0.01, 0.03, 0.1, 0.3];
/// Fewest training windows accepted for a full fit.
pub const MIN_TRAIN_WINDOWS: usize = 20;
/// Fewest training windows accepted for an incremental fit (the prior toward the champion keeps
/// a small update well posed).
pub const MIN_INCREMENTAL_WINDOWS: usize = 5;
/// Most validation windows kept to score the penalties (about 1 KB each, so at most ~100 MB).
pub const VALIDATION_SAMPLE: usize = 100_000;

/// What [`Trainer::finish`] (and [`train`]) did.
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
    /// Validation windows the penalty was scored on (at most [`VALIDATION_SAMPLE`]; 0 for an
    /// incremental fit).
    pub validation_windows: usize,
}

/// A streaming fit: [`Trainer::add`] each `(clip id, window)`, then [`Trainer::finish`].
/// A window whose clip id was added before, or (incremental) is already in the champion's
/// statistics, is skipped, so an incremental fit equals the full fit on the union.
#[derive(Debug)]
pub struct Trainer {
    warm_start: Option<TrajectoryModel>,
    seen: HashSet<u64>,
    given: usize,
    duplicates: usize,
    fit: Accumulator,
    validation: Accumulator,
    fit_sample: Sample,
    validation_sample: Sample,
}

impl Trainer {
    /// A fit from scratch (`warm_start` `None`) or incremental from the champion.
    pub fn new(warm_start: Option<TrajectoryModel>) -> Self {
        let seen = warm_start
            .as_ref()
            .map(|c| c.seen_clips.iter().copied().collect())
            .unwrap_or_default();
        Self {
            warm_start,
            seen,
            given: 0,
            duplicates: 0,
            fit: Accumulator::default(),
            validation: Accumulator::default(),
            fit_sample: Sample::new(VALIDATION_SAMPLE),
            validation_sample: Sample::new(VALIDATION_SAMPLE),
        }
    }

    /// A full fit whose validation sample holds at most `cap` windows (tests).
    #[cfg(test)]
    fn with_sample_cap(cap: usize) -> Self {
        let mut trainer = Self::new(None);
        trainer.fit_sample = Sample::new(cap);
        trainer.validation_sample = Sample::new(cap);
        trainer
    }

    /// Windows given so far (duplicates included).
    pub fn given(&self) -> usize {
        self.given
    }

    /// Adds one window of clip `clip_id` (skipped when that clip was counted already).
    pub fn add(&mut self, clip_id: &str, window: &AgentWindow) {
        self.given += 1;
        let hash = clip_hash(clip_id);
        if !self.seen.insert(hash) {
            self.duplicates += 1;
            return;
        }
        let seq = self.given;
        if self.warm_start.is_some() {
            self.fit.add(window);
        } else if !is_validation(clip_id) {
            self.fit.add(window);
            // Only needed while every window lands on one side (see `finish`).
            if self.validation.rows == 0 {
                self.fit_sample.offer(hash, seq, window);
            }
        } else {
            self.validation.add(window);
            self.validation_sample.offer(hash, seq, window);
            if self.validation.rows == 1 {
                self.fit_sample = Sample::new(0);
            }
        }
    }

    /// Solves: for a full fit, each penalty in [`ALPHAS`] on the fit part, scored on the
    /// validation sample, then the best one on all windows (when one side is empty, every window
    /// serves for both); for an incremental fit, the champion's penalty on its statistics plus
    /// the new windows'. `progress` is called with solves done out of the total.
    ///
    /// # Errors
    /// [`Error::TooFewWindows`] under [`MIN_TRAIN_WINDOWS`] (full) or
    /// [`MIN_INCREMENTAL_WINDOWS`] (incremental) windows given, or (full) new windows;
    /// [`Error::Fit`] when the normal equations cannot be solved or the champion's statistics
    /// are malformed.
    pub fn finish(
        self,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(TrajectoryModel, TrainSummary), Error> {
        let needed = if self.warm_start.is_some() {
            MIN_INCREMENTAL_WINDOWS
        } else {
            MIN_TRAIN_WINDOWS
        };
        if self.given < needed {
            return Err(Error::TooFewWindows {
                needed,
                got: self.given,
            });
        }
        let fresh = self.given - self.duplicates;
        if self.duplicates > 0 {
            tracing::info!(
                duplicates = self.duplicates,
                "training skipped windows already counted"
            );
        }
        let mut seen_clips: Vec<u64> = self.seen.into_iter().collect();
        seen_clips.sort_unstable();
        let fit = self.fit.stats();
        let validation = self.validation.stats();
        if let Some(champion) = &self.warm_start {
            let mut model = fit_incremental(champion, &fit.merged(&validation))?;
            model.seen_clips = seen_clips;
            progress(1, 1);
            return Ok((
                model,
                TrainSummary {
                    windows: fresh,
                    duplicates: self.duplicates,
                    alpha: champion.alpha,
                    validation_ade_m: None,
                    validation_windows: 0,
                },
            ));
        }
        if fresh < needed {
            return Err(Error::TooFewWindows { needed, got: fresh });
        }
        let all = fit.merged(&validation);
        let (fit_stats, scored) = if fit.rows == 0 || validation.rows == 0 {
            let mut sample = self.fit_sample.into_windows();
            sample.extend(self.validation_sample.into_windows());
            (all.clone(), sample)
        } else {
            (fit, self.validation_sample.into_windows())
        };
        let scale = all.scale();
        let total = ALPHAS.len() + 1;
        let mut best: Option<(f64, f64)> = None;
        for (i, &alpha) in ALPHAS.iter().enumerate() {
            let model = fit_stats.fit(&scale, alpha)?;
            let ade = mean_ade(&model, scored.iter());
            if best.is_none_or(|(_, b)| ade < b) {
                best = Some((alpha, ade));
            }
            progress(i + 1, total);
        }
        let (alpha, validation_ade_m) =
            best.map_or((ALPHAS[ALPHAS.len() - 1], None), |(a, v)| (a, Some(v)));
        let mut model = all.fit(&scale, alpha)?;
        model.seen_clips = seen_clips;
        progress(total, total);
        Ok((
            model,
            TrainSummary {
                windows: fresh,
                duplicates: self.duplicates,
                alpha,
                validation_ade_m,
                validation_windows: scored.len(),
            },
        ))
    }
}

/// Trains a model on `windows` held in memory (each with its clip id): a [`Trainer`] fed in
/// order. `warm_start` is the champion for an incremental fit.
///
/// # Errors
/// As [`Trainer::finish`].
pub fn train(
    windows: &[(String, AgentWindow)],
    warm_start: Option<&TrajectoryModel>,
    progress: impl FnMut(usize, usize),
) -> Result<(TrajectoryModel, TrainSummary), Error> {
    let mut trainer = Trainer::new(warm_start.cloned());
    for (id, w) in windows {
        trainer.add(id, w);
    }
    trainer.finish(progress)
}

/// `true` when the window of `clip_id` goes to the validation part: whole tracks go to one side
/// (the id without its `:offset_ms` suffix), one in five by SHA-256.
fn is_validation(clip_id: &str) -> bool {
    let track = clip_id.rsplit_once(':').map_or(clip_id, |(t, _)| t);
    Sha256::digest(track.as_bytes())[0] % 5 == 0
}

/// The 64-bit key of a clip id in [`TrajectoryModel::seen_clips`] (the first 8 bytes of its
/// SHA-256).
pub fn clip_hash(clip_id: &str) -> u64 {
    let digest = Sha256::digest(clip_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// At most [`VALIDATION_SAMPLE`] windows: those with the smallest clip hashes (a max-heap on the
/// hash), returned in the order they were added.
#[derive(Debug)]
struct Sample {
    cap: usize,
    heap: BinaryHeap<Sampled>,
}

#[derive(Debug)]
struct Sampled {
    hash: u64,
    seq: usize,
    window: AgentWindow,
}

impl PartialEq for Sampled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Sampled {}
impl PartialOrd for Sampled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sampled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.hash, self.seq).cmp(&(other.hash, other.seq))
    }
}

impl Sample {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            heap: BinaryHeap::new(),
        }
    }

    fn offer(&mut self, hash: u64, seq: usize, window: &AgentWindow) {
        if self.heap.len() >= self.cap {
            match self.heap.peek() {
                Some(top) if (hash, seq) < (top.hash, top.seq) => {
                    self.heap.pop();
                }
                _ => return,
            }
        }
        self.heap.push(Sampled {
            hash,
            seq,
            window: window.clone(),
        });
    }

    fn into_windows(self) -> Vec<AgentWindow> {
        let mut kept = self.heap.into_vec();
        kept.sort_unstable_by_key(|s| s.seq);
        kept.into_iter().map(|s| s.window).collect()
    }
}

/// `XᵀX` (features × features).
type Gram = SMatrix<f64, FEATURES, FEATURES>;
/// `XᵀY` (features × outputs), also the shape of the weights.
type Xty = SMatrix<f64, FEATURES, OUTPUTS>;

/// Running sums for [`Stats`]: plain arrays (the upper triangle of `XᵀX`), not matrix
/// products: this loop is the whole cost of training and also runs in debug builds.
#[derive(Debug, Clone)]
struct Accumulator {
    rows: usize,
    gram: [[f64; FEATURES]; FEATURES],
    xty: [[f64; OUTPUTS]; FEATURES],
}

impl Default for Accumulator {
    fn default() -> Self {
        Self {
            rows: 0,
            gram: [[0.0; FEATURES]; FEATURES],
            xty: [[0.0; OUTPUTS]; FEATURES],
        }
    }
}

impl Accumulator {
    fn add(&mut self, w: &AgentWindow) {
        let x = w.features();
        let y = targets(w);
        for (i, &xi) in x.iter().enumerate() {
            for (g, &xj) in self.gram[i][i..].iter_mut().zip(&x[i..]) {
                *g += xi * xj;
            }
            for (t, &yk) in self.xty[i].iter_mut().zip(&y) {
                *t += xi * yk;
            }
        }
        self.rows += 1;
    }

    fn stats(&self) -> Stats {
        Stats {
            rows: self.rows,
            gram: Gram::from_fn(|i, j| self.gram[i.min(j)][i.max(j)]),
            xty: Xty::from_fn(|i, k| self.xty[i][k]),
        }
    }
}

/// Sufficient statistics of a set of windows: count, `XᵀX` and `XᵀY` of the unscaled features
/// and the knot-residual targets.
#[derive(Debug, Clone)]
struct Stats {
    rows: usize,
    gram: Gram,
    xty: Xty,
}

impl Stats {
    #[cfg(test)]
    fn of<'a>(windows: impl Iterator<Item = &'a AgentWindow>) -> Self {
        let mut acc = Accumulator::default();
        for w in windows {
            acc.add(w);
        }
        acc.stats()
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

/// Adds the statistics `added` to the champion's statistics and solves again (see the module docs).
fn fit_incremental(champion: &TrajectoryModel, added: &Stats) -> Result<TrajectoryModel, Error> {
    if champion.gram.len() != FEATURES * FEATURES
        || champion.xty.len() != FEATURES * OUTPUTS
        || champion.feature_scale.len() != FEATURES
    {
        return Err(Error::Fit(
            "champion artefact has malformed statistics".to_owned(),
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{constant_velocity, test_trajectory as trajectory};

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
        let incremental =
            fit_incremental(&first, &Stats::of(all[35..].iter().map(|(_, w)| w))).unwrap();
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
    fn the_validation_sample_is_bounded_and_keeps_the_smallest_hashes() {
        // Ids with an offset suffix, one track each, so the tracks split both ways.
        let all: Vec<(String, AgentWindow)> = windows(0..400)
            .into_iter()
            .enumerate()
            .map(|(i, (_, w))| (format!("synthetic:log:{i}:0"), w))
            .collect();
        let validation: Vec<&(String, AgentWindow)> =
            all.iter().filter(|(id, _)| is_validation(id)).collect();
        assert!(validation.len() > 40, "{}", validation.len());
        let mut bounded = Trainer::with_sample_cap(10);
        for (id, w) in &all {
            bounded.add(id, w);
        }
        let mut hashes: Vec<u64> = validation.iter().map(|(id, _)| clip_hash(id)).collect();
        hashes.sort_unstable();
        let mut kept: Vec<u64> = bounded
            .validation_sample
            .heap
            .iter()
            .map(|s| s.hash)
            .collect();
        kept.sort_unstable();
        assert_eq!(kept, hashes[..10]);
        assert!(bounded.fit_sample.heap.is_empty());
        let (model, summary) = bounded.finish(|_, _| {}).unwrap();
        assert_eq!(summary.validation_windows, 10);
        assert_eq!(summary.windows, 400);
        // The statistics are those of every window, whatever the sample's size.
        let (unbounded, full) = train(&all, None, |_, _| {}).unwrap();
        assert_eq!(full.validation_windows, validation.len());
        assert!(max_rel_diff(&model.gram, &unbounded.gram) < 1e-12);
    }

    #[test]
    fn too_few_windows_is_an_error() {
        assert!(matches!(
            train(&[], None, |_, _| {}),
            Err(Error::TooFewWindows { .. })
        ));
    }
}
