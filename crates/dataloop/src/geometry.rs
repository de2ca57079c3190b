//! Frames and resampling: quaternion rotation, yaw, ECEF -> local east/north/up, and the
//! uniform 10 Hz grid every trajectory is put on before windows are cut.

/// WGS-84 semi-major axis \[m\].
const WGS84_A_M: f64 = 6_378_137.0;
/// WGS-84 first eccentricity squared.
const WGS84_E2: f64 = 6.694_379_990_14e-3;

/// A unit quaternion `(w, x, y, z)` (scalar first, as in Argoverse 2 files).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quaternion {
    /// Scalar part.
    pub w: f64,
    /// Vector part x.
    pub x: f64,
    /// Vector part y.
    pub y: f64,
    /// Vector part z.
    pub z: f64,
}

impl Quaternion {
    /// Euclidean norm; 1 for a rotation.
    pub fn norm(&self) -> f64 {
        (self.w * self.w + self.x * self.x + self.y * self.y + self.z * self.z).sqrt()
    }

    /// Rotates the 3-vector `v` by this (unit) quaternion: `R(q) · v`.
    pub fn rotate(&self, v: [f64; 3]) -> [f64; 3] {
        let Self { w, x, y, z } = *self;
        let r = [
            [
                1.0 - 2.0 * (y * y + z * z),
                2.0 * (x * y - w * z),
                2.0 * (x * z + w * y),
            ],
            [
                2.0 * (x * y + w * z),
                1.0 - 2.0 * (x * x + z * z),
                2.0 * (y * z - w * x),
            ],
            [
                2.0 * (x * z - w * y),
                2.0 * (y * z + w * x),
                1.0 - 2.0 * (x * x + y * y),
            ],
        ];
        [
            r[0][0] * v[0] + r[0][1] * v[1] + r[0][2] * v[2],
            r[1][0] * v[0] + r[1][1] * v[1] + r[1][2] * v[2],
            r[2][0] * v[0] + r[2][1] * v[1] + r[2][2] * v[2],
        ]
    }

    /// The Hamilton product `self · other` (apply `other` first, then `self`).
    #[must_use]
    pub fn mul(&self, other: &Self) -> Self {
        let (a, b) = (self, other);
        Self {
            w: a.w * b.w - a.x * b.x - a.y * b.y - a.z * b.z,
            x: a.w * b.x + a.x * b.w + a.y * b.z - a.z * b.y,
            y: a.w * b.y - a.x * b.z + a.y * b.w + a.z * b.x,
            z: a.w * b.z + a.x * b.y - a.y * b.x + a.z * b.w,
        }
    }

    /// Yaw (rotation about +z) \[rad, -π..π\] of the rotated x axis.
    pub fn yaw_rad(&self) -> f64 {
        let x_axis = self.rotate([1.0, 0.0, 0.0]);
        x_axis[1].atan2(x_axis[0])
    }
}

/// A local east/north/up tangent frame at a reference point given in ECEF.
#[derive(Debug, Clone, Copy)]
pub struct EnuFrame {
    origin_ecef_m: [f64; 3],
    east: [f64; 3],
    north: [f64; 3],
    up: [f64; 3],
    /// Geodetic latitude of the origin \[rad\].
    pub lat_rad: f64,
    /// Longitude of the origin \[rad\].
    pub lon_rad: f64,
}

impl EnuFrame {
    /// The tangent frame at `origin_ecef_m` (WGS-84, Bowring's latitude formula).
    pub fn at(origin_ecef_m: [f64; 3]) -> Self {
        let [x, y, z] = origin_ecef_m;
        let lon = y.atan2(x);
        let p = x.hypot(y);
        let b = WGS84_A_M * (1.0 - WGS84_E2).sqrt();
        let ep2 = (WGS84_A_M * WGS84_A_M - b * b) / (b * b);
        let theta = (z * WGS84_A_M).atan2(p * b);
        let lat = (z + ep2 * b * theta.sin().powi(3))
            .atan2(p - WGS84_E2 * WGS84_A_M * theta.cos().powi(3));
        let (sl, cl) = lat.sin_cos();
        let (so, co) = lon.sin_cos();
        Self {
            origin_ecef_m,
            east: [-so, co, 0.0],
            north: [-sl * co, -sl * so, cl],
            up: [cl * co, cl * so, sl],
            lat_rad: lat,
            lon_rad: lon,
        }
    }

    /// `p_ecef_m` in this frame: `[east, north, up]` \[m\].
    pub fn to_enu(&self, p_ecef_m: [f64; 3]) -> [f64; 3] {
        let d = [
            p_ecef_m[0] - self.origin_ecef_m[0],
            p_ecef_m[1] - self.origin_ecef_m[1],
            p_ecef_m[2] - self.origin_ecef_m[2],
        ];
        let dot = |a: [f64; 3]| a[0] * d[0] + a[1] * d[1] + a[2] * d[2];
        [dot(self.east), dot(self.north), dot(self.up)]
    }
}

/// A run of samples on a uniform grid: `xy_m[i]` is at `t0_s + i·dt_s`.
#[derive(Debug, Clone, PartialEq)]
pub struct UniformSegment {
    /// Time of the first sample \[s, log clock\].
    pub t0_s: f64,
    /// Sample interval \[s\].
    pub dt_s: f64,
    /// Positions \[m\].
    pub xy_m: Vec<[f64; 2]>,
    /// Heading at each sample \[rad\], when the source has one (nearest original sample).
    pub heading_rad: Option<Vec<f64>>,
}

/// Puts samples `(times_s[i], xy_m[i])` (sorted by time) on a grid of step `dt_s` by linear
/// interpolation, starting at the first sample. A gap longer than `max_gap_s` ends a segment.
/// Segments shorter than two samples are dropped.
pub fn resample(
    times_s: &[f64],
    xy_m: &[[f64; 2]],
    heading_rad: Option<&[f64]>,
    dt_s: f64,
    max_gap_s: f64,
) -> Vec<UniformSegment> {
    let n = times_s.len().min(xy_m.len());
    let mut segments = Vec::new();
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && times_s[end] - times_s[end - 1] <= max_gap_s {
            end += 1;
        }
        if end - start >= 2 {
            segments.push(resample_run(
                &times_s[start..end],
                &xy_m[start..end],
                heading_rad.map(|h| &h[start..end]),
                dt_s,
            ));
        }
        start = end;
    }
    segments
}

fn resample_run(
    times_s: &[f64],
    xy_m: &[[f64; 2]],
    heading_rad: Option<&[f64]>,
    dt_s: f64,
) -> UniformSegment {
    let t0 = times_s[0];
    let t_end = times_s[times_s.len() - 1];
    // +1e-6 s tolerates float noise in "exactly on the grid" timestamps.
    let count = ((t_end - t0) / dt_s + 1e-6).floor() as usize + 1;
    let mut xy = Vec::with_capacity(count);
    let mut heading = heading_rad.map(|_| Vec::with_capacity(count));
    let mut j = 0;
    for i in 0..count {
        let t = t0 + i as f64 * dt_s;
        while j + 2 < times_s.len() && times_s[j + 1] < t {
            j += 1;
        }
        let (ta, tb) = (times_s[j], times_s[j + 1]);
        let f = if tb > ta {
            ((t - ta) / (tb - ta)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (a, b) = (xy_m[j], xy_m[j + 1]);
        xy.push([a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])]);
        if let (Some(out), Some(h)) = (heading.as_mut(), heading_rad) {
            out.push(if f < 0.5 { h[j] } else { h[j + 1] });
        }
    }
    UniformSegment {
        t0_s: t0,
        dt_s,
        xy_m: xy,
        heading_rad: heading,
    }
}

/// An agent's heading at the last point of `history` (oldest first, 10 Hz, the present last):
/// the direction of travel over the last 0.5 s when it moved more than 0.5 m, else `recorded`,
/// else the whole history's displacement when over 0.2 m, else 0 (the x axis) \[rad\].
pub fn agent_heading(history: &[[f64; 2]], recorded: Option<f64>) -> f64 {
    let Some(&p0) = history.last() else {
        return recorded.unwrap_or(0.0);
    };
    let back = history[history.len().saturating_sub(6)];
    let d = [p0[0] - back[0], p0[1] - back[1]];
    let whole = [p0[0] - history[0][0], p0[1] - history[0][1]];
    if d[0].hypot(d[1]) > 0.5 {
        d[1].atan2(d[0])
    } else if let Some(rec) = recorded {
        rec
    } else if whole[0].hypot(whole[1]) > 0.2 {
        whole[1].atan2(whole[0])
    } else {
        0.0
    }
}

/// Wraps an angle to -π..π.
pub fn wrap_angle(a: f64) -> f64 {
    let two_pi = std::f64::consts::TAU;
    let mut r = (a + std::f64::consts::PI) % two_pi;
    if r < 0.0 {
        r += two_pi;
    }
    r - std::f64::consts::PI
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn quaternion_rotation_cases() {
        let half = std::f64::consts::FRAC_1_SQRT_2;
        // (quaternion, input, expected output)
        let cases = [
            (
                Quaternion {
                    w: 1.0,
                    x: 0.0,
                    y: 0.0,
                    z: 0.0,
                },
                [1.0, 2.0, 3.0],
                [1.0, 2.0, 3.0],
            ),
            // 90° about z: x -> y
            (
                Quaternion {
                    w: half,
                    x: 0.0,
                    y: 0.0,
                    z: half,
                },
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
            ),
            // 180° about z
            (
                Quaternion {
                    w: 0.0,
                    x: 0.0,
                    y: 0.0,
                    z: 1.0,
                },
                [1.0, 1.0, 0.0],
                [-1.0, -1.0, 0.0],
            ),
            // 90° about x: y -> z
            (
                Quaternion {
                    w: half,
                    x: half,
                    y: 0.0,
                    z: 0.0,
                },
                [0.0, 1.0, 0.0],
                [0.0, 0.0, 1.0],
            ),
        ];
        for (q, v, want) in cases {
            let got = q.rotate(v);
            for k in 0..3 {
                assert!(close(got[k], want[k], 1e-12), "{q:?} {v:?} -> {got:?}");
            }
        }
        let yaw90 = Quaternion {
            w: half,
            x: 0.0,
            y: 0.0,
            z: half,
        };
        assert!(close(yaw90.yaw_rad(), std::f64::consts::FRAC_PI_2, 1e-12));
        let composed = yaw90.mul(&yaw90);
        assert!(close(composed.yaw_rad().abs(), std::f64::consts::PI, 1e-12));
    }

    #[test]
    fn enu_of_points_near_origin() {
        // San Francisco area, ECEF of lat 37.5 deg, lon -122.3 deg on the ellipsoid.
        let (lat, lon) = (37.5_f64.to_radians(), (-122.3_f64).to_radians());
        let n = WGS84_A_M / (1.0 - WGS84_E2 * lat.sin().powi(2)).sqrt();
        let origin = [
            n * lat.cos() * lon.cos(),
            n * lat.cos() * lon.sin(),
            n * (1.0 - WGS84_E2) * lat.sin(),
        ];
        let frame = EnuFrame::at(origin);
        assert!(close(frame.lat_rad, lat, 1e-9));
        assert!(close(frame.lon_rad, lon, 1e-12));
        // 100 m along the east unit vector.
        let east = [-lon.sin(), lon.cos(), 0.0];
        let p = [
            origin[0] + 100.0 * east[0],
            origin[1] + 100.0 * east[1],
            origin[2],
        ];
        let enu = frame.to_enu(p);
        assert!(
            close(enu[0], 100.0, 1e-6) && close(enu[1], 0.0, 1e-6),
            "{enu:?}"
        );
    }

    #[test]
    fn resample_cases() {
        // (times, expected segment lengths)
        let cases: [(&[f64], &[usize]); 4] = [
            (&[0.0, 0.1, 0.2, 0.3], &[4]),
            (&[0.0, 0.05, 0.1, 0.15, 0.2], &[3]),
            (&[0.0, 0.1, 0.2, 1.0, 1.1], &[3, 2]),
            (&[0.0, 1.0, 2.0], &[]),
        ];
        for (times, want) in cases {
            let xy: Vec<[f64; 2]> = times.iter().map(|t| [t * 10.0, -t]).collect();
            let segments = resample(times, &xy, None, 0.1, 0.35);
            let lens: Vec<usize> = segments.iter().map(|s| s.xy_m.len()).collect();
            assert_eq!(lens, want, "times {times:?}");
            for s in &segments {
                for (i, p) in s.xy_m.iter().enumerate() {
                    let t = s.t0_s + i as f64 * 0.1;
                    assert!(close(p[0], t * 10.0, 1e-9) && close(p[1], -t, 1e-9));
                }
            }
        }
    }

    #[test]
    fn wrap_angle_cases() {
        for (a, want) in [
            (0.0, 0.0),
            (3.5, 3.5 - std::f64::consts::TAU),
            (-3.5, -3.5 + std::f64::consts::TAU),
            (7.0, 7.0 - std::f64::consts::TAU),
        ] {
            assert!(close(wrap_angle(a), want, 1e-12), "{a}");
        }
    }
}
