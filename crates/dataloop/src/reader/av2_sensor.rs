//! Argoverse 2 sensor-log reader (data/driving/SOURCE.md §2-§3): 3D cuboid track labels in the ego
//! frame (`annotations.feather`, or `annotations_with_ego.feather`, the same table with the ego
//! vehicle added as an `EGO_VEHICLE` track, which is skipped: the ego track comes from the poses)
//! and ego poses (`city_SE3_egovehicle.feather`, ego -> city), both Arrow IPC / Feather v2. Labels are moved to the city frame with the pose nearest in time:
//! `p_city = R(q_pose) · p_ego + t_pose`, heading `yaw(q_pose · q_box)`.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::ipc::reader::FileReader;

use super::columns::{f64s, i64s, utf8};
use super::{LogData, Rejection, Source, Track};
use crate::error::ReadError;
use crate::geometry::Quaternion;

/// A pose further than this from a label's timestamp is not used \[s\].
const MAX_POSE_GAP_S: f64 = 0.05;
/// Accepted deviation of a quaternion's norm from 1.
const QUAT_NORM_TOLERANCE: f64 = 1e-3;
/// The labels file of the sensor dataset.
pub const LABELS_FILE: &str = "annotations.feather";
/// The labels file with the ego vehicle as a track (av2-api scenario-mining test logs), read when
/// [`LABELS_FILE`] is absent.
pub const LABELS_WITH_EGO_FILE: &str = "annotations_with_ego.feather";
/// Category of the ego vehicle's own rows in [`LABELS_WITH_EGO_FILE`] (skipped).
const EGO_CATEGORY: &str = "EGO_VEHICLE";

#[derive(Debug, Clone, Copy)]
struct Pose {
    t_s: f64,
    q: Quaternion,
    t_m: [f64; 3],
}

/// Reads a sensor-log directory. The log id is the directory name.
pub fn read(dir: &Path) -> LogData {
    let mut log = LogData {
        source: Source::Av2Sensor,
        log_id: dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        city: None,
        unix_offset_s: Some(0.0),
        tracks: Vec::new(),
        radar: Vec::new(),
        files: Vec::new(),
        rejections: Vec::new(),
    };
    let poses_path = dir.join("city_SE3_egovehicle.feather");
    let poses = match read_poses(&poses_path, &mut log.rejections) {
        Ok(poses) if poses.len() >= 2 => {
            log.files.push(poses_path.clone());
            poses
        }
        Ok(poses) => {
            log.rejections.push(Rejection {
                file: poses_path,
                row: None,
                reason: format!("{} valid poses, need at least 2", poses.len()),
            });
            return log;
        }
        Err(error) => {
            log.rejections.push(Rejection::file(&error));
            return log;
        }
    };
    log.tracks.push(Track {
        track_id: "ego".to_owned(),
        object_type: "ego_vehicle".to_owned(),
        times_s: poses.iter().map(|p| p.t_s).collect(),
        xy_m: poses.iter().map(|p| [p.t_m[0], p.t_m[1]]).collect(),
        heading_rad: Some(poses.iter().map(|p| p.q.yaw_rad()).collect()),
    });
    let labels_path = [LABELS_FILE, LABELS_WITH_EGO_FILE]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join(LABELS_FILE));
    match read_labels(&labels_path, &poses, &mut log.rejections) {
        Ok(tracks) => {
            log.files.push(labels_path);
            log.tracks.extend(tracks);
        }
        Err(error) => log.rejections.push(Rejection::file(&error)),
    }
    log
}

/// The record batches of the Feather file `path`, decoding only the columns `wanted` when the
/// file has all of them (a file without one of them is read whole, so the caller reports the
/// missing column as before).
fn read_feather(path: &Path, wanted: &[&str]) -> Result<Vec<RecordBatch>, ReadError> {
    let bytes = fs_err::read(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let arrow = |source| ReadError::Arrow {
        path: path.to_path_buf(),
        source,
    };
    let reader = FileReader::try_new(Cursor::new(bytes.as_slice()), None).map_err(arrow)?;
    let schema = reader.schema();
    let projection: Option<Vec<usize>> = wanted
        .iter()
        .map(|name| schema.index_of(name).ok())
        .collect();
    match projection {
        Some(mut columns) if columns.len() < schema.fields().len() => {
            columns.sort_unstable();
            drop(reader);
            FileReader::try_new(Cursor::new(bytes.as_slice()), Some(columns))
                .map_err(arrow)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(arrow)
        }
        _ => reader.collect::<Result<Vec<_>, _>>().map_err(arrow),
    }
}

fn quaternions(batch: &RecordBatch) -> Result<Vec<Quaternion>, String> {
    let (w, x, y, z) = (
        f64s(batch, "qw")?,
        f64s(batch, "qx")?,
        f64s(batch, "qy")?,
        f64s(batch, "qz")?,
    );
    Ok((0..batch.num_rows())
        .map(|i| Quaternion {
            w: w[i],
            x: x[i],
            y: y[i],
            z: z[i],
        })
        .collect())
}

fn check_row(t: Option<i64>, q: &Quaternion, p: [f64; 3]) -> Result<f64, String> {
    let t = t.ok_or("timestamp_ns is null")?;
    let norm = q.norm();
    if !norm.is_finite() || (norm - 1.0).abs() > QUAT_NORM_TOLERANCE {
        return Err(format!("quaternion norm {norm} is not 1"));
    }
    if !p.iter().all(|v| v.is_finite()) {
        return Err(format!("translation {p:?} is not finite"));
    }
    Ok(t as f64 / 1e9)
}

/// The columns of the poses file that [`read_poses`] uses.
const POSE_COLUMNS: [&str; 8] = [
    "timestamp_ns",
    "qw",
    "qx",
    "qy",
    "qz",
    "tx_m",
    "ty_m",
    "tz_m",
];

fn read_poses(path: &Path, rejections: &mut Vec<Rejection>) -> Result<Vec<Pose>, ReadError> {
    let layout = |reason: String| ReadError::Layout {
        path: path.to_path_buf(),
        reason,
    };
    let mut poses = Vec::new();
    let mut row_base = 0_u64;
    for batch in read_feather(path, &POSE_COLUMNS)? {
        let t = i64s(&batch, "timestamp_ns").map_err(layout)?;
        let q = quaternions(&batch).map_err(layout)?;
        let (x, y, z) = (
            f64s(&batch, "tx_m").map_err(layout)?,
            f64s(&batch, "ty_m").map_err(layout)?,
            f64s(&batch, "tz_m").map_err(layout)?,
        );
        for i in 0..batch.num_rows() {
            let p = [x[i], y[i], z[i]];
            match check_row(t[i], &q[i], p) {
                Ok(t_s) => poses.push(Pose {
                    t_s,
                    q: q[i],
                    t_m: p,
                }),
                Err(reason) => rejections.push(Rejection::row(path, row_base + i as u64, reason)),
            }
        }
        row_base += batch.num_rows() as u64;
    }
    poses.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    poses.dedup_by(|a, b| a.t_s == b.t_s);
    Ok(poses)
}

fn nearest_pose(poses: &[Pose], t_s: f64) -> Option<&Pose> {
    let i = poses.partition_point(|p| p.t_s < t_s);
    let candidates = [i.checked_sub(1), Some(i)];
    candidates
        .into_iter()
        .flatten()
        .filter_map(|j| poses.get(j))
        .min_by(|a, b| (a.t_s - t_s).abs().total_cmp(&(b.t_s - t_s).abs()))
        .filter(|p| (p.t_s - t_s).abs() <= MAX_POSE_GAP_S)
}

type LabelRow = (f64, [f64; 2], f64);

/// The columns of the labels file that [`read_labels`] uses.
const LABEL_COLUMNS: [&str; 10] = [
    "timestamp_ns",
    "track_uuid",
    "category",
    "qw",
    "qx",
    "qy",
    "qz",
    "tx_m",
    "ty_m",
    "tz_m",
];

/// One track being collected: id, lower-case object type, its rows in file order.
type TrackRows = (String, String, Vec<LabelRow>);

fn read_labels(
    path: &Path,
    poses: &[Pose],
    rejections: &mut Vec<Rejection>,
) -> Result<Vec<Track>, ReadError> {
    let layout = |reason: String| ReadError::Layout {
        path: path.to_path_buf(),
        reason,
    };
    // Tracks in first-seen order with an index by id: a row looks its track up by the borrowed
    // id, a `String` is made once per track (not per row). Sorted by id at the end, the order
    // of the former `BTreeMap`.
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut tracks: Vec<TrackRows> = Vec::new();
    let mut row_base = 0_u64;
    for batch in read_feather(path, &LABEL_COLUMNS)? {
        let t = i64s(&batch, "timestamp_ns").map_err(layout)?;
        let uuid = utf8(&batch, "track_uuid").map_err(layout)?;
        let uuid = uuid.as_string::<i32>();
        let category = utf8(&batch, "category").map_err(layout)?;
        let category = category.as_string::<i32>();
        let q = quaternions(&batch).map_err(layout)?;
        let (x, y, z) = (
            f64s(&batch, "tx_m").map_err(layout)?,
            f64s(&batch, "ty_m").map_err(layout)?,
            f64s(&batch, "tz_m").map_err(layout)?,
        );
        for i in 0..batch.num_rows() {
            let row = row_base + i as u64;
            let p = [x[i], y[i], z[i]];
            let t_s = match check_row(t[i], &q[i], p) {
                Ok(t_s) => t_s,
                Err(reason) => {
                    rejections.push(Rejection::row(path, row, reason));
                    continue;
                }
            };
            if uuid.is_null(i) {
                rejections.push(Rejection::row(path, row, "track_uuid is null"));
                continue;
            }
            let id = uuid.value(i);
            let category = (!category.is_null(i)).then(|| category.value(i));
            if category == Some(EGO_CATEGORY) {
                continue;
            }
            let Some(pose) = nearest_pose(poses, t_s) else {
                rejections.push(Rejection::row(
                    path,
                    row,
                    format!("no ego pose within {MAX_POSE_GAP_S} s of {t_s:.3} s"),
                ));
                continue;
            };
            let r = pose.q.rotate(p);
            let city = [r[0] + pose.t_m[0], r[1] + pose.t_m[1]];
            let heading = pose.q.mul(&q[i]).yaw_rad();
            let k = match index.get(id) {
                Some(&k) => k,
                None => {
                    index.insert(id.to_owned(), tracks.len());
                    tracks.push((
                        id.to_owned(),
                        category.unwrap_or("unknown").to_lowercase(),
                        Vec::new(),
                    ));
                    tracks.len() - 1
                }
            };
            if let Some(entry) = tracks.get_mut(k) {
                entry.2.push((t_s, city, heading));
            }
        }
        row_base += batch.num_rows() as u64;
    }
    tracks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(tracks
        .into_iter()
        .map(|(track_id, object_type, mut rows)| {
            rows.sort_by(|a, b| a.0.total_cmp(&b.0));
            rows.dedup_by(|a, b| a.0 == b.0);
            Track {
                track_id,
                object_type,
                times_s: rows.iter().map(|r| r.0).collect(),
                xy_m: rows.iter().map(|r| r.1).collect(),
                heading_rad: Some(rows.iter().map(|r| r.2).collect()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bundled_log() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/driving/av2_sensor_log_7fab2350");
        let log = read(&dir);
        assert!(
            log.rejections.is_empty(),
            "{:?}",
            &log.rejections[..log.rejections.len().min(3)]
        );
        assert_eq!(log.files.len(), 2);
        // 114 labelled tracks + the ego vehicle.
        assert_eq!(log.tracks.len(), 115);
        assert_eq!(
            log.tracks
                .iter()
                .skip(1)
                .map(|t| t.times_s.len())
                .sum::<usize>(),
            11_364
        );
        // SOURCE.md: 36 tracks move more than 2 m in the city frame.
        let moving = log
            .tracks
            .iter()
            .skip(1)
            .filter(|t| {
                let (a, b) = (t.xy_m[0], t.xy_m[t.xy_m.len() - 1]);
                (b[0] - a[0]).hypot(b[1] - a[1]) > 2.0
            })
            .count();
        assert!((30..=40).contains(&moving), "{moving} moving tracks");
    }

    #[test]
    fn reads_the_logs_with_ego_labels() {
        for name in ["av2_sensor_log_3b3570b4", "av2_sensor_log_3bffdcff"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../data/driving")
                .join(name);
            let log = read(&dir);
            assert!(log.rejections.is_empty(), "{name}: {:?}", log.rejections);
            assert!(log.files[1].ends_with(LABELS_WITH_EGO_FILE), "{name}");
            // One ego track (from the poses); the labels' EGO_VEHICLE rows are not a second one.
            let egos = log
                .tracks
                .iter()
                .filter(|t| t.object_type.contains("ego"))
                .count();
            assert_eq!(egos, 1, "{name}");
            assert!(log.tracks.len() > 20, "{name}: {} tracks", log.tracks.len());
        }
    }

    #[test]
    fn truncated_feather_is_rejected_whole() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/driving/av2_sensor_log_7fab2350");
        let dir = tempfile::tempdir().unwrap();
        fs_err::copy(
            src.join("city_SE3_egovehicle.feather"),
            dir.path().join("city_SE3_egovehicle.feather"),
        )
        .unwrap();
        let bytes = fs_err::read(src.join("annotations.feather")).unwrap();
        fs_err::write(
            dir.path().join("annotations.feather"),
            &bytes[..bytes.len() / 2],
        )
        .unwrap();
        let log = read(dir.path());
        assert_eq!(
            log.tracks.len(),
            1,
            "the ego track from the good pose file is kept"
        );
        assert_eq!(log.rejections.len(), 1);
        assert!(log.rejections[0].file.ends_with("annotations.feather"));
        assert!(log.rejections[0].row.is_none());
    }
}
