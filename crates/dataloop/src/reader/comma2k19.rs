//! comma2k19 segment reader (data/driving/SOURCE.md §3): the ego trajectory from
//! `global_pose/frame_times` + `frame_positions` (ECEF, 20 Hz) put into a local east/north frame
//! at the first pose, Unix time from `frame_gps_times` (GPS week, seconds of week), and lead-car
//! radar from `processed_log/CAN/radar/{t,value}` (columns `dRel, yRel, vRel, aRel, yvRel,
//! address, new_track`).

use std::path::Path;

use super::npy::{Matrix, read_f64};
use super::{LogData, RadarPoint, Rejection, Source, Track, finite};
use crate::geometry::EnuFrame;

/// Unix time of the GPS epoch (1980-01-06) \[s\].
const GPS_EPOCH_UNIX_S: f64 = 315_964_800.0;
/// GPS - UTC leap seconds since 2017-01-01 (the segment is from 2018).
const GPS_LEAP_S: f64 = 18.0;
/// Seconds in a GPS week.
const WEEK_S: f64 = 604_800.0;

/// Reads the segment directory `dir`. The log id is the directory name.
pub fn read(dir: &Path) -> LogData {
    let log_id = dir.file_name().map_or_else(
        || "comma2k19".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut log = LogData {
        source: Source::Comma2k19,
        log_id,
        city: None,
        unix_offset_s: None,
        tracks: Vec::new(),
        radar: Vec::new(),
        files: Vec::new(),
        rejections: Vec::new(),
    };
    let pose = dir.join("global_pose");
    let times = load(&pose.join("frame_times"), Some(1), &mut log);
    let positions = load(&pose.join("frame_positions"), Some(3), &mut log);
    if let (Some(times), Some(positions)) = (&times, &positions) {
        log.tracks
            .extend(ego_track(times, positions, &pose, &mut log.rejections));
        if let Some(gps) = load(&pose.join("frame_gps_times"), Some(2), &mut log)
            && gps.rows == times.rows
            && gps.rows > 0
        {
            let (week, sow) = (gps.data[0], gps.data[1]);
            if week.is_finite() && sow.is_finite() {
                let unix = GPS_EPOCH_UNIX_S + week * WEEK_S + sow - GPS_LEAP_S;
                log.unix_offset_s = Some(unix - times.data[0]);
            }
        }
    }
    let radar_dir = dir.join("processed_log/CAN/radar");
    if radar_dir.is_dir() {
        let t = load(&radar_dir.join("t"), Some(1), &mut log);
        let value = load(&radar_dir.join("value"), Some(7), &mut log);
        if let (Some(t), Some(value)) = (t, value) {
            log.radar = radar_points(&t, &value, &radar_dir.join("value"), &mut log.rejections);
        }
    }
    log
}

/// Loads an array, recording the file as read or rejected. `cols` checks the column count.
fn load(path: &Path, cols: Option<usize>, log: &mut LogData) -> Option<Matrix> {
    match read_f64(path) {
        Ok(m) if cols.is_none_or(|c| c == m.cols) => {
            log.files.push(path.to_path_buf());
            Some(m)
        }
        Ok(m) => {
            log.rejections.push(Rejection {
                file: path.to_path_buf(),
                row: None,
                reason: format!("expected {} columns, found {}", cols.unwrap_or(0), m.cols),
            });
            None
        }
        Err(error) => {
            log.rejections.push(Rejection::file(&error));
            None
        }
    }
}

fn ego_track(
    times: &Matrix,
    positions: &Matrix,
    pose_dir: &Path,
    rejections: &mut Vec<Rejection>,
) -> Option<Track> {
    if times.rows != positions.rows {
        rejections.push(Rejection {
            file: pose_dir.join("frame_positions"),
            row: None,
            reason: format!(
                "{} positions for {} frame times",
                positions.rows, times.rows
            ),
        });
        return None;
    }
    let positions_file = pose_dir.join("frame_positions");
    let mut frame = None;
    let mut track = Track {
        track_id: "ego".to_owned(),
        object_type: "ego_vehicle".to_owned(),
        times_s: Vec::with_capacity(times.rows),
        xy_m: Vec::with_capacity(times.rows),
        heading_rad: None,
    };
    let mut last_t = f64::NEG_INFINITY;
    for i in 0..times.rows {
        let t = times.data[i];
        let p = positions.row(i);
        if !t.is_finite() || t <= last_t {
            rejections.push(Rejection::row(
                &pose_dir.join("frame_times"),
                i as u64,
                format!("time {t} is not finite or not increasing"),
            ));
            continue;
        }
        if !finite(p) || p.iter().map(|v| v * v).sum::<f64>().sqrt() < 6.0e6 {
            rejections.push(Rejection::row(
                &positions_file,
                i as u64,
                format!("ECEF position {p:?} is not finite or not near the Earth's surface"),
            ));
            continue;
        }
        let frame = frame.get_or_insert_with(|| EnuFrame::at([p[0], p[1], p[2]]));
        let enu = frame.to_enu([p[0], p[1], p[2]]);
        track.times_s.push(t);
        track.xy_m.push([enu[0], enu[1]]);
        last_t = t;
    }
    (track.times_s.len() >= 2).then_some(track)
}

fn radar_points(
    t: &Matrix,
    value: &Matrix,
    value_file: &Path,
    rejections: &mut Vec<Rejection>,
) -> Vec<RadarPoint> {
    if t.rows != value.rows {
        rejections.push(Rejection {
            file: value_file.to_path_buf(),
            row: None,
            reason: format!("{} radar rows for {} times", value.rows, t.rows),
        });
        return Vec::new();
    }
    let mut points = Vec::with_capacity(t.rows);
    for i in 0..t.rows {
        let row = value.row(i);
        // aRel and yvRel are NaN throughout the dataset; only dRel, yRel, vRel are required.
        if !t.data[i].is_finite() || !finite(&row[..3]) {
            rejections.push(Rejection::row(
                value_file,
                i as u64,
                format!("radar dRel/yRel/vRel {:?} not finite", &row[..3]),
            ));
            continue;
        }
        points.push(RadarPoint {
            t_s: t.data[i],
            d_rel_m: row[0],
            y_rel_m: row[1],
            v_rel_mps: row[2],
        });
    }
    points.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bundled_segment() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/driving/comma2k19_segment");
        let log = read(&dir);
        assert!(log.rejections.is_empty(), "{:?}", log.rejections);
        assert_eq!(log.tracks.len(), 1);
        let ego = &log.tracks[0];
        assert_eq!(ego.times_s.len(), 1200);
        // Highway speed: 60 s at 8..20 m/s covers roughly 0.5..1.2 km.
        let path: f64 = ego
            .xy_m
            .windows(2)
            .map(|w| (w[1][0] - w[0][0]).hypot(w[1][1] - w[0][1]))
            .sum();
        assert!((400.0..1500.0).contains(&path), "path {path}");
        assert_eq!(log.radar.len(), 10_100);
        // 2018-08-02 in Unix seconds.
        let start = log.unix_offset_s.unwrap() + ego.times_s[0];
        assert!(
            (1_533_168_000.0..1_533_254_400.0).contains(&start),
            "{start}"
        );
    }
}
