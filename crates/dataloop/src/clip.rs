//! Feature extraction (issue item 2; seed ¶31-¶32): every track (and the ego vehicle) is put
//! on a 10 Hz grid and cut into 5 s windows (2 s history + 3 s future) with a stride; each window
//! is a clip with simple fields (units in the names) and one complex field, its
//! [`Trajectory`].

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::geometry::{UniformSegment, agent_heading, resample, wrap_angle};
use crate::hd_map::HdMap;
use crate::reader::{LogData, RadarPoint, Source};
use crate::trajectory::Trajectory;

/// Sample interval of every window \[s\] (10 Hz).
pub const STEP_S: f64 = 0.1;
/// History samples before the present sample (2 s).
pub const HISTORY_STEPS: usize = 20;
/// Future samples after the present sample (3 s).
pub const FUTURE_STEPS: usize = 30;
/// Samples in a window: history + present + future (51 samples = 5.0 s).
pub const WINDOW_SAMPLES: usize = HISTORY_STEPS + 1 + FUTURE_STEPS;
/// A recording gap longer than this splits a track \[s\].
const MAX_GAP_S: f64 = 0.35;
/// Radius for `agents_nearby` / `pedestrians_nearby` \[m\].
pub const NEARBY_RADIUS_M: f64 = 30.0;
/// Half lane width for picking the lead car among radar returns \[m\].
const LEAD_LANE_HALF_WIDTH_M: f64 = 1.8;
/// Below this speed the heading from the velocity is not trusted \[m/s\].
const MIN_HEADING_SPEED_MPS: f64 = 1.0;

/// The per-track split stored in the `split` column (by a hash of log and track). Kept as a
/// column for queries and older tables; it no longer decides training or evaluation: the
/// evaluation set is whole logs, pinned in the registry ([`crate::pinned`], issue 13 item 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Used for training.
    Train,
    /// Held out for evaluation.
    Eval,
    /// Overlaps an evaluation window of the same track: used for neither.
    Gap,
}

impl Split {
    /// Name stored in the `split` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Eval => "eval",
            Self::Gap => "gap",
        }
    }
}

/// The simple fields of one clip (seed ¶32: int, string, float). Units are in the names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimpleFields {
    /// `source:log_id:track_id:offset_ms`, unique in the store.
    pub clip_id: String,
    /// `comma2k19`, `av2_motion` or `av2_sensor`.
    pub source: String,
    /// Log id (scenario id, directory name).
    pub log_id: String,
    /// Track id (`ego` for the recording vehicle).
    pub track_id: String,
    /// Object type, lower case.
    pub object_type: String,
    /// City, when the source records one.
    pub city: Option<String>,
    /// `train`, `eval` or `gap` (fixed, from a hash of log and track; time-based for ego).
    pub split: String,
    /// Scenario category: `stationary`, `turning`, `braking`, `accelerating`, `cruising`.
    pub category: String,
    /// Window start \[s\]: Unix time for comma2k19 and AV2 sensor logs, the scenario clock for AV2
    /// motion forecasting.
    pub start_time_s: f64,
    /// Window length \[s\] (5.0).
    pub duration_s: f64,
    /// Mean speed \[m/s\].
    pub mean_speed_mps: f64,
    /// Maximum speed \[m/s\].
    pub max_speed_mps: f64,
    /// Maximum longitudinal deceleration \[m/s²\] (0 when never braking).
    pub max_decel_mps2: f64,
    /// Maximum lateral acceleration |v · yaw rate| \[m/s²\].
    pub max_lat_accel_mps2: f64,
    /// Maximum |yaw rate| \[rad/s\], from the velocity direction while faster than 1 m/s.
    pub max_yaw_rate_radps: f64,
    /// Path length \[m\] of the smoothed trajectory.
    pub path_length_m: f64,
    /// Minimum lead-car distance \[m\] (radar, comma2k19 ego only).
    pub lead_distance_m: Option<f64>,
    /// Minimum time to collision with the lead car \[s\] (radar, closing only).
    pub ttc_s: Option<f64>,
    /// Other agents within 30 m at the present sample (radar returns for comma2k19).
    pub agents_nearby: i64,
    /// Pedestrians within 30 m at the present sample.
    pub pedestrians_nearby: i64,
}

/// One window: simple fields plus the complex field.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// The simple fields (warehouse and OLAP store).
    pub simple: SimpleFields,
    /// The complex field (warehouse only, as Arrow IPC bytes).
    pub trajectory: Trajectory,
}

/// Window stride; the window shape itself is fixed by the constants above.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSpec {
    /// Samples between window starts (10 = 1 s).
    pub stride_steps: usize,
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self { stride_steps: 10 }
    }
}

struct Resampled<'a> {
    track_id: &'a str,
    object_type: &'a str,
    /// The same number for every segment of tracks with this `track_id` (they are not each
    /// other's neighbours in [`nearby`]).
    track: usize,
    /// `object_type` names a pedestrian.
    pedestrian: bool,
    segment: UniformSegment,
}

/// Cuts every track of `log` into clips; with the log's HD map, each clip's trajectory carries
/// the lane at its present position ([`HdMap::lane_context`]).
pub fn extract(log: &LogData, spec: WindowSpec, map: Option<&HdMap>) -> Vec<Clip> {
    let mut track_numbers: HashMap<&str, usize> = HashMap::new();
    let segments: Vec<Resampled<'_>> = log
        .tracks
        .iter()
        .flat_map(|track| {
            let next = track_numbers.len();
            let number = *track_numbers.entry(&track.track_id).or_insert(next);
            resample(
                &track.times_s,
                &track.xy_m,
                track.heading_rad.as_deref(),
                STEP_S,
                MAX_GAP_S,
            )
            .into_iter()
            .map(move |segment| Resampled {
                track_id: &track.track_id,
                object_type: &track.object_type,
                track: number,
                pedestrian: track.object_type.contains("pedestrian"),
                segment,
            })
        })
        .collect();
    let log_t0 = log
        .tracks
        .iter()
        .filter_map(|t| t.times_s.first().copied())
        .fold(f64::INFINITY, f64::min);
    let stride = spec.stride_steps.max(1);
    let mut clips = Vec::new();
    for seg in &segments {
        let n = seg.segment.xy_m.len();
        if n < WINDOW_SAMPLES {
            continue;
        }
        let starts: Vec<usize> = (0..=n - WINDOW_SAMPLES).step_by(stride).collect();
        let splits = splits_for(log, seg.track_id, starts.len(), stride);
        for (k, &start) in starts.iter().enumerate() {
            let mut clip = make_clip(log, seg, &segments, start, log_t0, splits[k]);
            if let Some(map) = map {
                let t = &clip.trajectory;
                let recorded = t
                    .heading_rad
                    .as_ref()
                    .and_then(|h| h.get(t.present_index))
                    .copied();
                let heading = agent_heading(t.history(), recorded);
                clip.trajectory.lane = map.lane_context(t.xy_m[t.present_index], heading);
            }
            clips.push(clip);
        }
    }
    clips
}

/// The `split` column of the windows of one track segment (see [`Split`]): agents by a hash of log and track (20 %
/// evaluation); ego tracks (one per log) by time: the last quarter of windows is evaluation and the
/// windows overlapping them are `gap`.
fn splits_for(log: &LogData, track_id: &str, windows: usize, stride: usize) -> Vec<Split> {
    if track_id != "ego" {
        let digest = Sha256::digest(format!("{}/{}", log.log_id, track_id).as_bytes());
        let split = if digest[0] % 5 == 0 {
            Split::Eval
        } else {
            Split::Train
        };
        return vec![split; windows];
    }
    let first_eval = (windows * 3).div_ceil(4);
    let overlap = (WINDOW_SAMPLES - 1) / stride;
    (0..windows)
        .map(|k| {
            if k >= first_eval {
                Split::Eval
            } else if k + overlap >= first_eval {
                Split::Gap
            } else {
                Split::Train
            }
        })
        .collect()
}

fn make_clip(
    log: &LogData,
    seg: &Resampled<'_>,
    all: &[Resampled<'_>],
    start: usize,
    log_t0: f64,
    split: Split,
) -> Clip {
    let xy = &seg.segment.xy_m[start..start + WINDOW_SAMPLES];
    let t_start = seg.segment.t0_s + start as f64 * STEP_S;
    let t_present = t_start + HISTORY_STEPS as f64 * STEP_S;
    let k = kinematics(xy, STEP_S);
    let category = categorise(&k).to_owned();
    let offset_ms = ((t_start - log_t0) * 1000.0).round() as i64;
    // `log_id_of` reads this format back.
    let clip_id = format!(
        "{}:{}:{}:{offset_ms}",
        log.source.as_str(),
        log.log_id,
        seg.track_id
    );
    let present = xy[HISTORY_STEPS];
    let (agents_nearby, pedestrians_nearby) = if log.source == Source::Comma2k19 {
        (radar_nearby(&log.radar, t_present), 0)
    } else {
        nearby(all, seg.track, present, t_present)
    };
    let (lead_distance_m, ttc_s) = if log.source == Source::Comma2k19 && seg.track_id == "ego" {
        lead_and_ttc(&log.radar, t_start, WINDOW_SAMPLES)
    } else {
        (None, None)
    };
    let simple = SimpleFields {
        clip_id: clip_id.clone(),
        source: log.source.as_str().to_owned(),
        log_id: log.log_id.clone(),
        track_id: seg.track_id.to_owned(),
        object_type: seg.object_type.to_owned(),
        city: log.city.clone(),
        split: split.as_str().to_owned(),
        category: category.clone(),
        start_time_s: t_start + log.unix_offset_s.unwrap_or(0.0),
        duration_s: (WINDOW_SAMPLES - 1) as f64 * STEP_S,
        mean_speed_mps: k.mean_speed_mps,
        max_speed_mps: k.max_speed_mps,
        max_decel_mps2: k.max_decel_mps2,
        max_lat_accel_mps2: k.max_lat_accel_mps2,
        max_yaw_rate_radps: k.max_yaw_rate_radps,
        path_length_m: k.path_length_m,
        lead_distance_m,
        ttc_s,
        agents_nearby,
        pedestrians_nearby,
    };
    let trajectory = Trajectory {
        clip_id,
        object_type: seg.object_type.to_owned(),
        category,
        present_index: HISTORY_STEPS,
        t_s: (0..WINDOW_SAMPLES)
            .map(|i| (i as f64 - HISTORY_STEPS as f64) * STEP_S)
            .collect(),
        xy_m: xy.to_vec(),
        heading_rad: seg
            .segment
            .heading_rad
            .as_ref()
            .map(|h| h[start..start + WINDOW_SAMPLES].to_vec()),
        lane: None,
    };
    Clip { simple, trajectory }
}

/// Motion statistics of a uniformly sampled path.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Kinematics {
    /// Mean speed \[m/s\].
    pub mean_speed_mps: f64,
    /// Maximum speed \[m/s\].
    pub max_speed_mps: f64,
    /// Maximum deceleration \[m/s²\], ≥ 0.
    pub max_decel_mps2: f64,
    /// Maximum |lateral acceleration| \[m/s²\].
    pub max_lat_accel_mps2: f64,
    /// Maximum |yaw rate| \[rad/s\].
    pub max_yaw_rate_radps: f64,
    /// Path length \[m\].
    pub path_length_m: f64,
    /// Speed at the first and last sample \[m/s\].
    pub speed_first_last_mps: (f64, f64),
    /// Net heading change \[rad\] between the first and last moving sample.
    pub heading_change_rad: f64,
}

/// Centred moving average over 5 samples (shrinking at the ends): suppresses label jitter before
/// differentiating.
pub fn smooth(xy: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let n = xy.len();
    (0..n)
        .map(|i| {
            let half = 2.min(i).min(n - 1 - i);
            let (lo, hi) = (i - half, i + half);
            let count = (hi - lo + 1) as f64;
            let sum = xy[lo..=hi]
                .iter()
                .fold([0.0, 0.0], |a, p| [a[0] + p[0], a[1] + p[1]]);
            [sum[0] / count, sum[1] / count]
        })
        .collect()
}

/// Speed, acceleration, yaw-rate and path statistics of `xy` sampled every `dt_s`.
pub fn kinematics(xy: &[[f64; 2]], dt_s: f64) -> Kinematics {
    let n = xy.len();
    if n < 3 {
        return Kinematics::default();
    }
    let p = smooth(xy);
    let velocity: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            let (a, b) = (i.saturating_sub(1), (i + 1).min(n - 1));
            let span = (b - a) as f64 * dt_s;
            [(p[b][0] - p[a][0]) / span, (p[b][1] - p[a][1]) / span]
        })
        .collect();
    let speed: Vec<f64> = velocity.iter().map(|v| v[0].hypot(v[1])).collect();
    // The velocity direction of each moving sample, computed once (each is used by up to four
    // differences below); NaN where not moving, never read there.
    let heading: Vec<f64> = velocity
        .iter()
        .zip(&speed)
        .map(|(v, &s)| {
            if s > MIN_HEADING_SPEED_MPS {
                v[1].atan2(v[0])
            } else {
                f64::NAN
            }
        })
        .collect();
    let mut k = Kinematics {
        mean_speed_mps: speed.iter().sum::<f64>() / n as f64,
        max_speed_mps: speed.iter().copied().fold(0.0, f64::max),
        path_length_m: p
            .windows(2)
            .map(|w| (w[1][0] - w[0][0]).hypot(w[1][1] - w[0][1]))
            .sum(),
        speed_first_last_mps: (speed[0], speed[n - 1]),
        ..Kinematics::default()
    };
    for i in 1..n - 1 {
        let accel = (speed[i + 1] - speed[i - 1]) / (2.0 * dt_s);
        k.max_decel_mps2 = k.max_decel_mps2.max(-accel);
        if speed[i - 1] > MIN_HEADING_SPEED_MPS && speed[i + 1] > MIN_HEADING_SPEED_MPS {
            let yaw_rate = wrap_angle(heading[i + 1] - heading[i - 1]) / (2.0 * dt_s);
            k.max_yaw_rate_radps = k.max_yaw_rate_radps.max(yaw_rate.abs());
            k.max_lat_accel_mps2 = k.max_lat_accel_mps2.max((speed[i] * yaw_rate).abs());
        }
    }
    let mut moving = (0..n).filter(|&i| speed[i] > MIN_HEADING_SPEED_MPS);
    if let Some(first) = moving.next() {
        let (mut total, mut last) = (0.0, first);
        for i in moving {
            total += wrap_angle(heading[i] - heading[last]);
            last = i;
        }
        k.heading_change_rad = if last > first { total } else { 0.0 };
    }
    k
}

/// The scenario category used for the per-category pass rate (issue item 7).
pub fn categorise(k: &Kinematics) -> &'static str {
    let (v0, v1) = k.speed_first_last_mps;
    if k.path_length_m < 1.0 {
        "stationary"
    } else if k.heading_change_rad.abs() > 0.5 {
        "turning"
    } else if v1 < v0 - 2.0 {
        "braking"
    } else if v1 > v0 + 2.0 {
        "accelerating"
    } else {
        "cruising"
    }
}

/// Other agents (segments of other tracks present at `t_s`) within [`NEARBY_RADIUS_M`] of `at`,
/// and how many of them are pedestrians.
fn nearby(all: &[Resampled<'_>], me: usize, at: [f64; 2], t_s: f64) -> (i64, i64) {
    let mut agents = 0;
    let mut pedestrians = 0;
    for other in all.iter().filter(|o| o.track != me) {
        let seg = &other.segment;
        let idx = ((t_s - seg.t0_s) / seg.dt_s).round();
        if idx < 0.0 || idx as usize >= seg.xy_m.len() {
            continue;
        }
        let p = seg.xy_m[idx as usize];
        let (dx, dy) = (p[0] - at[0], p[1] - at[1]);
        // `hypot` is at least the larger leg: farther than the radius along one axis is out,
        // without the (slow) `hypot`.
        if dx.abs() > NEARBY_RADIUS_M || dy.abs() > NEARBY_RADIUS_M {
            continue;
        }
        if dx.hypot(dy) <= NEARBY_RADIUS_M {
            agents += 1;
            if other.pedestrian {
                pedestrians += 1;
            }
        }
    }
    (agents, pedestrians)
}

fn radar_at(radar: &[RadarPoint], t_s: f64) -> &[RadarPoint] {
    let lo = radar.partition_point(|r| r.t_s < t_s - STEP_S / 2.0);
    let hi = radar.partition_point(|r| r.t_s < t_s + STEP_S / 2.0);
    &radar[lo..hi]
}

fn radar_nearby(radar: &[RadarPoint], t_s: f64) -> i64 {
    radar_at(radar, t_s)
        .iter()
        .filter(|r| r.d_rel_m.hypot(r.y_rel_m) <= NEARBY_RADIUS_M)
        .count() as i64
}

/// Minimum lead distance and minimum time to collision over a window's samples.
fn lead_and_ttc(radar: &[RadarPoint], t_start: f64, samples: usize) -> (Option<f64>, Option<f64>) {
    let mut lead: Option<f64> = None;
    let mut ttc: Option<f64> = None;
    for i in 0..samples {
        let t = t_start + i as f64 * STEP_S;
        let in_lane = radar_at(radar, t)
            .iter()
            .filter(|r| r.d_rel_m > 0.0 && r.y_rel_m.abs() <= LEAD_LANE_HALF_WIDTH_M)
            .min_by(|a, b| a.d_rel_m.total_cmp(&b.d_rel_m));
        if let Some(r) = in_lane {
            lead = Some(lead.map_or(r.d_rel_m, |l| l.min(r.d_rel_m)));
            if r.v_rel_mps < -0.1 {
                let t = r.d_rel_m / -r.v_rel_mps;
                ttc = Some(ttc.map_or(t, |x| x.min(t)));
            }
        }
    }
    (lead, ttc)
}

/// The log id inside a clip id (`source:log_id:track_id:offset_ms`, as cut by this module);
/// `None` for an id of another shape.
pub fn log_id_of(clip_id: &str) -> Option<&str> {
    let mut tail = clip_id.rsplitn(3, ':');
    let (_offset, _track, head) = (tail.next()?, tail.next()?, tail.next()?);
    head.split_once(':').map(|(_, log)| log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize, speed_mps: f64, accel_mps2: f64) -> Vec<[f64; 2]> {
        (0..n)
            .map(|i| {
                let t = i as f64 * STEP_S;
                [speed_mps * t + 0.5 * accel_mps2 * t * t, 0.0]
            })
            .collect()
    }

    fn circle(n: usize, speed_mps: f64, radius_m: f64) -> Vec<[f64; 2]> {
        (0..n)
            .map(|i| {
                let a = speed_mps * i as f64 * STEP_S / radius_m;
                [radius_m * a.sin(), radius_m * (1.0 - a.cos())]
            })
            .collect()
    }

    #[test]
    fn kinematics_table() {
        // (name, path, mean speed, max decel, max lat accel, max yaw rate, path length, category)
        let cases = [
            (
                "still",
                vec![[3.0, 4.0]; WINDOW_SAMPLES],
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                "stationary",
            ),
            (
                "cruise 10 m/s",
                line(WINDOW_SAMPLES, 10.0, 0.0),
                10.0,
                0.0,
                0.0,
                0.0,
                50.0,
                "cruising",
            ),
            // 15 m/s braking at 3 m/s²: 15 -> 0 m/s in 5 s.
            (
                "brake",
                line(WINDOW_SAMPLES, 15.0, -3.0),
                7.5,
                3.0,
                0.0,
                0.0,
                37.5,
                "braking",
            ),
            // 10 m/s on a 20 m circle: yaw rate 0.5 rad/s, lateral 5 m/s², 2.5 rad heading change.
            (
                "turn",
                circle(WINDOW_SAMPLES, 10.0, 20.0),
                10.0,
                0.0,
                5.0,
                0.5,
                50.0,
                "turning",
            ),
        ];
        for (name, path, mean, decel, lat, yaw, len, category) in cases {
            let k = kinematics(&path, STEP_S);
            // Smoothing and end effects cost a little accuracy.
            let near = |got: f64, want: f64, tol: f64| (got - want).abs() <= tol;
            assert!(near(k.mean_speed_mps, mean, 0.3), "{name}: mean {k:?}");
            assert!(near(k.max_decel_mps2, decel, 0.3), "{name}: decel {k:?}");
            assert!(near(k.max_lat_accel_mps2, lat, 0.3), "{name}: lat {k:?}");
            assert!(near(k.max_yaw_rate_radps, yaw, 0.03), "{name}: yaw {k:?}");
            assert!(near(k.path_length_m, len, 1.0), "{name}: path {k:?}");
            assert_eq!(categorise(&k), category, "{name}");
        }
    }

    #[test]
    fn radar_lead_and_ttc() {
        // Lead car 20 m ahead closing at 4 m/s (TTC 5 s), plus a car in the next lane at 8 m.
        let radar: Vec<RadarPoint> = (0..60)
            .flat_map(|i| {
                let t = i as f64 * STEP_S;
                [
                    RadarPoint {
                        t_s: t,
                        d_rel_m: 20.0 - 4.0 * t,
                        y_rel_m: 0.2,
                        v_rel_mps: -4.0,
                    },
                    RadarPoint {
                        t_s: t,
                        d_rel_m: 8.0,
                        y_rel_m: 3.5,
                        v_rel_mps: 0.0,
                    },
                ]
            })
            .collect();
        let (lead, ttc) = lead_and_ttc(&radar, 0.0, 11);
        assert!((lead.unwrap() - 16.0).abs() < 1e-9, "{lead:?}");
        assert!((ttc.unwrap() - 4.0).abs() < 1e-9, "{ttc:?}");
        assert_eq!(radar_nearby(&radar, 1.0), 2);
        assert_eq!(lead_and_ttc(&[], 0.0, 11), (None, None));
    }

    #[test]
    fn ego_split_has_gap_before_eval() {
        let log = LogData {
            source: Source::Comma2k19,
            log_id: "x".to_owned(),
            city: None,
            unix_offset_s: None,
            tracks: Vec::new(),
            radar: Vec::new(),
            files: Vec::new(),
            rejections: Vec::new(),
        };
        let s = splits_for(&log, "ego", 12, 10);
        let names: String = s.iter().map(|s| &s.as_str()[..1]).collect();
        assert_eq!(names, "ttttgggggeee");
    }
}
