//! Argoverse 2 vector HD maps (data/driving/SOURCE.md §1 and §4; issue 13 item 4: "use the HD
//! maps for at least one map feature"): the `lane_segments` of a `log_map_archive_*.json`, parsed
//! with serde, give lane centrelines in the city frame (the frame of the AV2 tracks). A lane's
//! centreline is its `centerline` when the file has one (motion-forecasting maps), else the mean
//! of its left and right boundaries, both resampled to the same number of points by arc length
//! (sensor-log maps store boundaries only).
//!
//! [`HdMap::lane_context`] gives, for a position and heading, the nearest lane that runs roughly
//! the same way: its heading at the nearest point, the signed distance to its centreline (left of
//! the lane's direction positive) and its heading [`LOOKAHEAD_M`] further along the lane
//! (following the straightest successor where the lane ends). The trajectory model turns these
//! into features relative to the agent's heading ([`crate::model`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::geometry::wrap_angle;

/// A lane further than this from the position is not used \[m\].
pub const MAX_LANE_DISTANCE_M: f64 = 5.0;
/// Distance along the lane at which the heading ahead is taken \[m\].
pub const LOOKAHEAD_M: f64 = 20.0;
/// Cost of a lane pointing the other way, added to its distance when picking the lane: the cost
/// is `distance + HEADING_PENALTY_M · (1 − cos Δheading)` \[m\].
const HEADING_PENALTY_M: f64 = 2.0;
/// Spacing of the resampled boundaries when a lane has no stored centreline \[m\].
const RESAMPLE_SPACING_M: f64 = 1.0;
/// Successor lanes followed at most while looking ahead.
const MAX_SUCCESSOR_HOPS: usize = 8;

#[derive(Debug, Deserialize)]
struct MapJson {
    lane_segments: BTreeMap<String, LaneJson>,
}

#[derive(Debug, Deserialize)]
struct LaneJson {
    id: i64,
    left_lane_boundary: Vec<PointJson>,
    right_lane_boundary: Vec<PointJson>,
    #[serde(default)]
    centerline: Option<Vec<PointJson>>,
    #[serde(default)]
    successors: Vec<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct PointJson {
    x: f64,
    y: f64,
}

/// One lane: id, centreline (city frame, ≥ 2 points) and successor lane ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// Lane segment id.
    pub id: i64,
    /// Centreline points \[m\], in driving direction.
    pub centreline: Vec<[f64; 2]>,
    /// Lanes that continue this one.
    pub successors: Vec<i64>,
}

/// The lanes of one map, with a uniform grid over the centreline segments for
/// [`HdMap::lane_context`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HdMap {
    lanes: Vec<Lane>,
    by_id: HashMap<i64, usize>,
    grid: SegmentGrid,
}

/// Side of a [`SegmentGrid`] cell \[m\].
const CELL_M: f64 = 10.0;

/// Centreline segments `(lane index, segment index)` by grid cell: a segment is listed in every
/// cell its bounding box, grown by [`MAX_LANE_DISTANCE_M`], touches, so the cell of a position
/// lists every segment within that distance of it (and some farther ones), in ascending
/// `(lane, segment)` order: the order of a scan over all segments.
#[derive(Debug, Clone, PartialEq, Default)]
struct SegmentGrid {
    /// Every centreline segment with its geometry, in `(lane, segment)` order.
    segments: Vec<GridSegment>,
    /// Indexes into `segments` by cell, ascending.
    cells: HashMap<(i64, i64), Vec<u32>>,
}

/// One centreline segment of a [`SegmentGrid`]: lane index, segment index and the geometry
/// [`project_on`] needs, computed once per map instead of once per query.
#[derive(Debug, Clone, PartialEq)]
struct GridSegment {
    lane: u32,
    segment: u32,
    geometry: SegmentGeometry,
}

impl SegmentGrid {
    fn cell(v: f64) -> i64 {
        // Saturating float-to-int cast: finite map coordinates are far inside i64.
        (v / CELL_M).floor() as i64
    }

    fn build(lanes: &[Lane]) -> Self {
        let mut cells: HashMap<(i64, i64), Vec<u32>> = HashMap::new();
        let mut segments = Vec::new();
        for (li, lane) in lanes.iter().enumerate() {
            for (si, pair) in lane.centreline.windows(2).enumerate() {
                let (a, b) = (pair[0], pair[1]);
                let index = segments.len() as u32;
                segments.push(GridSegment {
                    lane: li as u32,
                    segment: si as u32,
                    geometry: SegmentGeometry::of(a, b),
                });
                let lo = [a[0].min(b[0]), a[1].min(b[1])];
                let hi = [a[0].max(b[0]), a[1].max(b[1])];
                let (x0, x1) = (
                    Self::cell(lo[0] - MAX_LANE_DISTANCE_M),
                    Self::cell(hi[0] + MAX_LANE_DISTANCE_M),
                );
                let (y0, y1) = (
                    Self::cell(lo[1] - MAX_LANE_DISTANCE_M),
                    Self::cell(hi[1] + MAX_LANE_DISTANCE_M),
                );
                for cx in x0..=x1 {
                    for cy in y0..=y1 {
                        cells.entry((cx, cy)).or_default().push(index);
                    }
                }
            }
        }
        Self { segments, cells }
    }

    /// The segments listed in the cell of `p` (none for a non-finite `p`).
    fn near(&self, p: [f64; 2]) -> impl Iterator<Item = &GridSegment> {
        let listed = if p[0].is_finite() && p[1].is_finite() {
            self.cells
                .get(&(Self::cell(p[0]), Self::cell(p[1])))
                .map_or(&[][..], Vec::as_slice)
        } else {
            &[]
        };
        listed.iter().filter_map(|&i| self.segments.get(i as usize))
    }
}

/// The lane around one position (city frame).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LaneContext {
    /// Lane heading at the nearest centreline point \[rad\].
    pub heading_rad: f64,
    /// Signed distance from the centreline, positive left of the lane's direction \[m\].
    pub offset_m: f64,
    /// Lane heading [`LOOKAHEAD_M`] further along the lane \[rad\].
    pub ahead_heading_rad: f64,
}

impl HdMap {
    /// Parses a `log_map_archive_*.json` text (`path` names it in errors).
    ///
    /// # Errors
    /// [`Error::Json`] when the text is not a map of that shape (a missing field, a wrong type);
    /// [`Error::Map`] when a lane has fewer than 2 points on a boundary or non-finite
    /// coordinates.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let parsed: MapJson = serde_json::from_str(text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |id: i64, reason: &str| Error::Map {
            path: path.to_path_buf(),
            reason: format!("lane {id}: {reason}"),
        };
        let mut lanes = Vec::with_capacity(parsed.lane_segments.len());
        for lane in parsed.lane_segments.into_values() {
            let pts = |v: &[PointJson]| -> Vec<[f64; 2]> { v.iter().map(|p| [p.x, p.y]).collect() };
            let (left, right) = (
                pts(&lane.left_lane_boundary),
                pts(&lane.right_lane_boundary),
            );
            if left.len() < 2 || right.len() < 2 {
                return Err(bad(lane.id, "a boundary has fewer than 2 points"));
            }
            let centreline = match &lane.centerline {
                Some(c) if c.len() >= 2 => pts(c),
                Some(_) => return Err(bad(lane.id, "the centerline has fewer than 2 points")),
                None => centreline_of(&left, &right),
            };
            if !centreline.iter().flatten().all(|v| v.is_finite()) {
                return Err(bad(lane.id, "non-finite coordinates"));
            }
            lanes.push(Lane {
                id: lane.id,
                centreline,
                successors: lane.successors,
            });
        }
        let by_id = lanes.iter().enumerate().map(|(i, l)| (l.id, i)).collect();
        let grid = SegmentGrid::build(&lanes);
        Ok(Self { lanes, by_id, grid })
    }

    /// Reads and parses the map file at `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; as [`HdMap::parse`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &text)
    }

    /// The lanes.
    pub fn lanes(&self) -> &[Lane] {
        &self.lanes
    }

    /// The lane around `p` for an agent heading `heading_rad` (see the module docs); `None` when
    /// no lane is within [`MAX_LANE_DISTANCE_M`].
    pub fn lane_context(&self, p: [f64; 2], heading_rad: f64) -> Option<LaneContext> {
        let mut best: Option<(f64, usize, usize, Projection)> = None;
        for seg in self.grid.near(p) {
            let (li, si) = (seg.lane as usize, seg.segment as usize);
            let proj = project_on(&seg.geometry, p);
            if proj.distance_m > MAX_LANE_DISTANCE_M {
                continue;
            }
            let cost = proj.distance_m
                + HEADING_PENALTY_M * (1.0 - wrap_angle(proj.heading_rad - heading_rad).cos());
            if best.as_ref().is_none_or(|b| cost < b.0) {
                best = Some((cost, li, si, proj));
            }
        }
        let (_, li, si, proj) = best?;
        Some(LaneContext {
            heading_rad: proj.heading_rad,
            offset_m: proj.offset_m,
            ahead_heading_rad: self.heading_ahead(li, si, proj.along_m, LOOKAHEAD_M),
        })
    }

    /// The heading `distance_m` further along lane `li` from `along_m` past the start of its
    /// segment `si`, continuing into the straightest successor where a lane ends.
    fn heading_ahead(&self, li: usize, si: usize, along_m: f64, distance_m: f64) -> f64 {
        let (mut li, mut si) = (li, si);
        let mut left = distance_m + along_m;
        let mut hops = 0;
        loop {
            let line = &self.lanes[li].centreline;
            let (a, b) = (line[si], line[si + 1]);
            let len = (b[0] - a[0]).hypot(b[1] - a[1]);
            let heading = (b[1] - a[1]).atan2(b[0] - a[0]);
            if left <= len {
                return heading;
            }
            left -= len;
            if si + 2 < line.len() {
                si += 1;
                continue;
            }
            let next = self.lanes[li]
                .successors
                .iter()
                .filter_map(|id| self.by_id.get(id).copied())
                .min_by(|&x, &y| {
                    let turn = |l: usize| {
                        let c = &self.lanes[l].centreline;
                        wrap_angle((c[1][1] - c[0][1]).atan2(c[1][0] - c[0][0]) - heading).abs()
                    };
                    turn(x).total_cmp(&turn(y))
                });
            match next {
                Some(n) if hops < MAX_SUCCESSOR_HOPS => {
                    li = n;
                    si = 0;
                    hops += 1;
                }
                _ => return heading,
            }
        }
    }
}

struct Projection {
    distance_m: f64,
    offset_m: f64,
    heading_rad: f64,
    along_m: f64,
}

/// A centreline segment `a`-`b` prepared for [`project_on`].
#[derive(Debug, Clone, PartialEq)]
struct SegmentGeometry {
    a: [f64; 2],
    /// Length \[m\].
    len: f64,
    /// Direction `a` -> `b` \[rad\].
    heading_rad: f64,
    /// Unit vector `a` -> `b` (unused when `len` < 1e-9).
    u: [f64; 2],
}

impl SegmentGeometry {
    fn of(a: [f64; 2], b: [f64; 2]) -> Self {
        let d = [b[0] - a[0], b[1] - a[1]];
        let len = d[0].hypot(d[1]);
        Self {
            a,
            len,
            heading_rad: d[1].atan2(d[0]),
            u: [d[0] / len, d[1] / len],
        }
    }
}

/// Projects `p` on the segment `a`-`b`.
#[cfg(test)]
fn project(a: [f64; 2], b: [f64; 2], p: [f64; 2]) -> Projection {
    project_on(&SegmentGeometry::of(a, b), p)
}

/// Projects `p` on the segment `g`.
fn project_on(g: &SegmentGeometry, p: [f64; 2]) -> Projection {
    let (a, len, heading_rad, u) = (g.a, g.len, g.heading_rad, g.u);
    let r = [p[0] - a[0], p[1] - a[1]];
    if len < 1e-9 {
        let dist = r[0].hypot(r[1]);
        return Projection {
            distance_m: dist,
            offset_m: dist,
            heading_rad,
            along_m: 0.0,
        };
    }
    let along = (r[0] * u[0] + r[1] * u[1]).clamp(0.0, len);
    let foot = [a[0] + u[0] * along, a[1] + u[1] * along];
    let distance_m = (p[0] - foot[0]).hypot(p[1] - foot[1]);
    let cross = u[0] * r[1] - u[1] * r[0];
    Projection {
        distance_m,
        offset_m: if cross >= 0.0 {
            distance_m
        } else {
            -distance_m
        },
        heading_rad,
        along_m: along,
    }
}

/// `n` points spaced evenly by arc length along `line` (≥ 2 points).
fn resample_by_length(line: &[[f64; 2]], n: usize) -> Vec<[f64; 2]> {
    let cumulative: Vec<f64> = std::iter::once(0.0)
        .chain(line.windows(2).scan(0.0, |acc, w| {
            *acc += (w[1][0] - w[0][0]).hypot(w[1][1] - w[0][1]);
            Some(*acc)
        }))
        .collect();
    let total = cumulative[cumulative.len() - 1];
    (0..n)
        .map(|k| {
            let s = total * k as f64 / (n - 1) as f64;
            let i = cumulative
                .partition_point(|&c| c <= s)
                .clamp(1, line.len() - 1);
            let (s0, s1) = (cumulative[i - 1], cumulative[i]);
            let f = if s1 > s0 { (s - s0) / (s1 - s0) } else { 0.0 };
            let (a, b) = (line[i - 1], line[i]);
            [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])]
        })
        .collect()
}

/// The mean of the two boundaries resampled to the same number of points.
fn centreline_of(left: &[[f64; 2]], right: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let length = |l: &[[f64; 2]]| -> f64 {
        l.windows(2)
            .map(|w| (w[1][0] - w[0][0]).hypot(w[1][1] - w[0][1]))
            .sum()
    };
    let n =
        ((length(left).max(length(right)) / RESAMPLE_SPACING_M).ceil() as usize + 1).clamp(2, 500);
    let (l, r) = (resample_by_length(left, n), resample_by_length(right, n));
    l.iter()
        .zip(&r)
        .map(|(a, b)| [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0])
        .collect()
}

/// The vector map of the AV2 log at `log_path`, when there is one: `map/log_map_archive_*.json`
/// inside a sensor-log directory, or `log_map_archive_<scenario id>.json` beside a
/// `scenario_<id>.parquet` file.
pub fn find(log_path: &Path) -> Option<PathBuf> {
    if log_path.is_dir() {
        let dir = log_path.join("map");
        let mut found: Vec<PathBuf> = fs_err::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_map_file(p))
            .collect();
        found.sort();
        return found.into_iter().next();
    }
    let stem = log_path.file_stem()?.to_str()?;
    let id = stem.strip_prefix("scenario_")?;
    let candidate = log_path
        .parent()?
        .join(format!("log_map_archive_{id}.json"));
    candidate.is_file().then_some(candidate)
}

/// File-store location of the copy of a log's HD map that ingest keeps for the web view:
/// `maps/<log id>.json`, with every character other than ASCII letters, digits, `-`, `_` and
/// `.` replaced by `_`.
pub fn map_location(log_id: &str) -> String {
    let safe: String = log_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("maps/{safe}.json")
}

fn is_map_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("log_map_archive_") && n.ends_with(".json"))
}

#[cfg(test)]
mod tests {
    use std::f64::consts::FRAC_PI_2;

    use super::*;

    /// Lane 1 runs east from (0, 0) to (10, 0) (boundaries at y = ±2, no centreline stored);
    /// its successors are lane 2 (north, from (10, 0) to (10, 50)) and lane 3 (east, a slight
    /// bend, (10, 0) to (60, 5)); lane 4 runs west along y = 4 (stored centreline).
    const MAP: &str = r#"{"lane_segments": {
      "1": {"id": 1, "lane_type": "VEHICLE", "is_intersection": false,
            "left_lane_boundary": [{"x": 0, "y": 2, "z": 0}, {"x": 10, "y": 2, "z": 0}],
            "right_lane_boundary": [{"x": 0, "y": -2, "z": 0}, {"x": 5, "y": -2, "z": 0}, {"x": 10, "y": -2, "z": 0}],
            "successors": [2, 3], "predecessors": []},
      "2": {"id": 2, "left_lane_boundary": [{"x": 8, "y": 0}, {"x": 8, "y": 50}],
            "right_lane_boundary": [{"x": 12, "y": 0}, {"x": 12, "y": 50}], "successors": []},
      "3": {"id": 3, "left_lane_boundary": [{"x": 10, "y": 2}, {"x": 60, "y": 7}],
            "right_lane_boundary": [{"x": 10, "y": -2}, {"x": 60, "y": 3}], "successors": []},
      "4": {"id": 4, "left_lane_boundary": [{"x": 60, "y": 2}, {"x": 0, "y": 2}],
            "right_lane_boundary": [{"x": 60, "y": 6}, {"x": 0, "y": 6}],
            "centerline": [{"x": 60, "y": 4}, {"x": 0, "y": 4}]}
    }}"#;

    fn map() -> HdMap {
        HdMap::parse(Path::new("hand-made.json"), MAP).unwrap()
    }

    /// [`HdMap::lane_context`]'s choice by a scan over every segment (no grid).
    fn scan(m: &HdMap, p: [f64; 2], heading: f64) -> Option<(usize, usize)> {
        let mut best: Option<(f64, usize, usize)> = None;
        for (li, lane) in m.lanes.iter().enumerate() {
            for si in 0..lane.centreline.len() - 1 {
                let proj = project(lane.centreline[si], lane.centreline[si + 1], p);
                if proj.distance_m > MAX_LANE_DISTANCE_M {
                    continue;
                }
                let cost = proj.distance_m
                    + HEADING_PENALTY_M * (1.0 - wrap_angle(proj.heading_rad - heading).cos());
                if best.is_none_or(|b| cost < b.0) {
                    best = Some((cost, li, si));
                }
            }
        }
        best.map(|(_, li, si)| (li, si))
    }

    #[test]
    fn the_grid_finds_what_a_scan_of_every_segment_finds() {
        let real = HdMap::load(
            &find(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../data/driving/av2_sensor_log_3b3570b4"
            )))
            .unwrap(),
        )
        .unwrap();
        for m in [map(), real] {
            let (mut found, mut checked) = (0, 0);
            // Points around every 7th centreline point, offset up to 6.5 m, four headings.
            for lane in &m.lanes {
                for c in lane.centreline.iter().step_by(7) {
                    for (dx, dy) in [
                        (0.0, 0.0),
                        (3.1, -2.2),
                        (-4.9, 1.3),
                        (0.4, 6.5),
                        (-6.0, -6.0),
                    ] {
                        for heading in [0.0, 1.3, -2.0, 3.0] {
                            let p = [c[0] + dx, c[1] + dy];
                            let want = scan(&m, p, heading);
                            let got = m.lane_context(p, heading);
                            checked += 1;
                            assert_eq!(got.is_some(), want.is_some(), "{p:?} {heading}");
                            if let Some((li, si)) = want {
                                found += 1;
                                let line = &m.lanes[li].centreline;
                                let proj = project(line[si], line[si + 1], p);
                                let got = got.unwrap();
                                assert_eq!(got.offset_m, proj.offset_m, "{p:?} {heading}");
                                assert_eq!(got.heading_rad, proj.heading_rad, "{p:?} {heading}");
                            }
                        }
                    }
                }
            }
            assert!(found > 100 && found < checked, "{found} of {checked}");
        }
    }

    #[test]
    fn centreline_from_boundaries_and_stored() {
        let m = map();
        let lane1 = m.lanes().iter().find(|l| l.id == 1).unwrap();
        assert!(
            lane1.centreline.iter().all(|p| p[1].abs() < 1e-12),
            "{:?}",
            lane1.centreline
        );
        assert_eq!(lane1.centreline.len(), 11, "1 m spacing over 10 m");
        let lane4 = m.lanes().iter().find(|l| l.id == 4).unwrap();
        assert_eq!(lane4.centreline, vec![[60.0, 4.0], [0.0, 4.0]]);
    }

    #[test]
    fn known_distance_and_heading() {
        let m = map();
        // (position, agent heading, lane heading, signed offset, heading 20 m ahead)
        for (p, heading, lane, offset, ahead) in [
            // East-bound at (3, 1.5): 1.5 m left of lane 1; 20 m on is lane 3 (straightest).
            ([3.0, 1.5], 0.0, 0.0, 1.5, (5.0_f64).atan2(50.0)),
            ([3.0, -0.5], 0.2, 0.0, -0.5, (5.0_f64).atan2(50.0)),
            // West-bound at (30, 2.5): lane 4, 1.5 m left of it (its left is south), although
            // lane 3 (centre y = 2 there) is nearer: it points the other way.
            (
                [30.0, 2.5],
                std::f64::consts::PI,
                std::f64::consts::PI,
                1.5,
                std::f64::consts::PI,
            ),
            // On lane 2 heading north.
            ([10.5, 30.0], FRAC_PI_2, FRAC_PI_2, -0.5, FRAC_PI_2),
        ] {
            let c = m.lane_context(p, heading).unwrap();
            assert!(
                wrap_angle(c.heading_rad - lane).abs() < 1e-9,
                "{p:?}: {c:?}"
            );
            assert!((c.offset_m - offset).abs() < 1e-9, "{p:?}: {c:?}");
            assert!(
                wrap_angle(c.ahead_heading_rad - ahead).abs() < 1e-9,
                "{p:?}: {c:?}"
            );
        }
        assert_eq!(
            m.lane_context([30.0, 40.0], 0.0),
            None,
            "no lane within 5 m"
        );
    }

    #[test]
    fn bad_maps_are_typed_errors() {
        let path = Path::new("bad.json");
        assert!(matches!(HdMap::parse(path, "{"), Err(Error::Json { .. })));
        assert!(matches!(
            HdMap::parse(path, r#"{"lane_segments": {"1": {"id": 1}}}"#),
            Err(Error::Json { .. })
        ));
        let short = r#"{"lane_segments": {"7": {"id": 7,
            "left_lane_boundary": [{"x": 0, "y": 0}], "right_lane_boundary": [{"x": 0, "y": 1}, {"x": 1, "y": 1}]}}}"#;
        match HdMap::parse(path, short) {
            Err(Error::Map { reason, .. }) => assert!(reason.contains("lane 7"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lane_features_are_relative_to_the_agent() {
        use crate::clip::{HISTORY_STEPS, STEP_S, WINDOW_SAMPLES};
        use crate::model::AgentWindow;
        use crate::trajectory::Trajectory;
        // 5 m/s along heading 0.2 rad; the lane heads 0 here and 0.5 rad 20 m ahead, 1.5 m to
        // the agent's right (the agent is 1.5 m left of it).
        let heading: f64 = 0.2;
        let make = |object_type: &str, lane: Option<LaneContext>| Trajectory {
            clip_id: "t:0".to_owned(),
            object_type: object_type.to_owned(),
            category: "cruising".to_owned(),
            present_index: HISTORY_STEPS,
            t_s: (0..WINDOW_SAMPLES).map(|i| i as f64 * STEP_S).collect(),
            xy_m: (0..WINDOW_SAMPLES)
                .map(|i| {
                    let d = 5.0 * i as f64 * STEP_S;
                    [d * heading.cos(), d * heading.sin()]
                })
                .collect(),
            heading_rad: None,
            lane,
        };
        let lane = Some(LaneContext {
            heading_rad: 0.0,
            offset_m: 1.5,
            ahead_heading_rad: 0.5,
        });
        let w = AgentWindow::from_trajectory(&make("vehicle", lane));
        let l = w.lane.unwrap();
        assert!(
            (l[0] + 0.2).abs() < 1e-9 && l[1] == 1.5 && (l[2] - 0.3).abs() < 1e-9,
            "{l:?}"
        );
        let f = w.features();
        let want = [
            5.0 * (-0.2_f64).sin(),
            1.5,
            5.0 * 0.3_f64.sin(),
            5.0 * (1.0 - 0.3_f64.cos()),
            0.0,
        ];
        for (got, want) in f[15..].iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{:?}", &f[15..]);
        }
        // No lane, or a pedestrian: the map features are 0 and the indicator is set.
        for t in [make("vehicle", None), make("pedestrian", lane)] {
            let f = AgentWindow::from_trajectory(&t).features();
            assert_eq!(&f[15..], &[0.0, 0.0, 0.0, 0.0, 1.0]);
        }
    }

    #[test]
    fn finds_and_parses_the_bundled_maps() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/driving");
        for (log, lanes) in [
            ("av2_sensor_log_3b3570b4", 150),
            ("av2_sensor_log_3bffdcff", 211),
            (
                "av2_motion_forecasting/scenario_0a1e6f0a-1817-4a98-b02e-db8c9327d151.parquet",
                71,
            ),
        ] {
            let path = find(&root.join(log)).unwrap();
            assert_eq!(HdMap::load(&path).unwrap().lanes().len(), lanes, "{log}");
        }
        assert_eq!(find(&root.join("av2_sensor_log_7fab2350")), None);
    }
}
