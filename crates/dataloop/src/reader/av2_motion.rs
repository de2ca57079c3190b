//! Argoverse 2 motion-forecasting scenario reader (data/driving/SOURCE.md §1): one Parquet file
//! of per-track, per-timestep rows at 10 Hz in the city frame. Row time is
//! `start_timestamp [ns] / 1e9 + timestep · 0.1 s`.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::columns::{f64s, i64s, strings};
use super::{LogData, Rejection, Source, Track};
use crate::error::ReadError;

/// AV2 motion-forecasting sample interval \[s\].
const STEP_S: f64 = 0.1;

/// Reads a `scenario_<id>.parquet` file.
pub fn read(path: &Path) -> LogData {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let mut log = LogData {
        source: Source::Av2Motion,
        log_id: stem.trim_start_matches("scenario_").to_owned(),
        city: None,
        unix_offset_s: None,
        tracks: Vec::new(),
        radar: Vec::new(),
        files: Vec::new(),
        rejections: Vec::new(),
    };
    match read_rows(path, &mut log) {
        Ok(()) => log.files.push(path.to_path_buf()),
        Err(error) => {
            log.tracks.clear();
            log.rejections.push(Rejection::file(&error));
        }
    }
    log
}

#[derive(Default)]
struct Samples {
    object_type: String,
    rows: Vec<(f64, [f64; 2], f64)>,
}

fn read_rows(path: &Path, log: &mut LogData) -> Result<(), ReadError> {
    let bytes = fs_err::read(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parquet = |source| ReadError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .map_err(parquet)?
        .build()
        .map_err(parquet)?;
    let layout = |reason: String| ReadError::Layout {
        path: path.to_path_buf(),
        reason,
    };
    let mut tracks: BTreeMap<String, Samples> = BTreeMap::new();
    let mut row_base = 0_u64;
    for batch in reader {
        let batch = batch.map_err(|source| ReadError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
        let track_id = strings(&batch, "track_id").map_err(layout)?;
        let object_type = strings(&batch, "object_type").map_err(layout)?;
        let timestep = i64s(&batch, "timestep").map_err(layout)?;
        let x = f64s(&batch, "position_x").map_err(layout)?;
        let y = f64s(&batch, "position_y").map_err(layout)?;
        let heading = f64s(&batch, "heading").map_err(layout)?;
        let start_ns = f64s(&batch, "start_timestamp").map_err(layout)?;
        let city = strings(&batch, "city").map_err(layout)?;
        let scenario = strings(&batch, "scenario_id").map_err(layout)?;
        for i in 0..batch.num_rows() {
            let row = row_base + i as u64;
            let (Some(id), Some(step)) = (&track_id[i], timestep[i]) else {
                log.rejections
                    .push(Rejection::row(path, row, "track_id or timestep is null"));
                continue;
            };
            if !(x[i].is_finite() && y[i].is_finite() && start_ns[i].is_finite()) || step < 0 {
                log.rejections.push(Rejection::row(
                    path,
                    row,
                    format!(
                        "position ({}, {}), start_timestamp {} or timestep {step} invalid",
                        x[i], y[i], start_ns[i]
                    ),
                ));
                continue;
            }
            if log.city.is_none() {
                log.city.clone_from(&city[i]);
            }
            if let Some(s) = &scenario[i] {
                s.clone_into(&mut log.log_id);
            }
            let t = start_ns[i] / 1e9 + step as f64 * STEP_S;
            let entry = tracks.entry(id.clone()).or_default();
            if entry.object_type.is_empty() {
                entry.object_type = object_type[i]
                    .as_deref()
                    .unwrap_or("unknown")
                    .to_lowercase();
            }
            entry.rows.push((t, [x[i], y[i]], heading[i]));
        }
        row_base += batch.num_rows() as u64;
    }
    for (track_id, mut samples) in tracks {
        samples.rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        samples.rows.dedup_by(|a, b| a.0 == b.0);
        log.tracks.push(Track {
            track_id,
            object_type: samples.object_type,
            times_s: samples.rows.iter().map(|r| r.0).collect(),
            xy_m: samples.rows.iter().map(|r| r.1).collect(),
            heading_rad: Some(samples.rows.iter().map(|r| r.2).collect()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bundled_scenario() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../data/driving/av2_motion_forecasting/scenario_0a1e6f0a-1817-4a98-b02e-db8c9327d151.parquet",
        );
        let log = read(&path);
        assert!(log.rejections.is_empty(), "{:?}", log.rejections);
        assert_eq!(log.tracks.len(), 58);
        assert_eq!(
            log.tracks.iter().map(|t| t.times_s.len()).sum::<usize>(),
            2434
        );
        assert_eq!(log.city.as_deref(), Some("austin"));
        assert_eq!(log.log_id, "0a1e6f0a-1817-4a98-b02e-db8c9327d151");
        let focal = log.tracks.iter().find(|t| t.track_id == "138951").unwrap();
        assert_eq!(focal.times_s.len(), 110);
    }

    #[test]
    fn rejects_a_non_parquet_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scenario_broken.parquet");
        fs_err::write(&path, b"PAR1 this is not parquet").unwrap();
        let log = read(&path);
        assert!(log.tracks.is_empty() && log.files.is_empty());
        assert_eq!(log.rejections.len(), 1);
        assert!(
            log.rejections[0].reason.contains("Parquet"),
            "{:?}",
            log.rejections
        );
    }
}
