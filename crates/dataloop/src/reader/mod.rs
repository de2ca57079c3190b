//! Readers for the bundled real driving logs (issue item 1; seed ¶30: each data source has its
//! own ingest job type). Every reader turns one log into [`LogData`]: trajectories in a metric,
//! planar frame (AV2 city frame, or east/north for comma2k19), optional lead-car radar, the files
//! it read, and per-file / per-row [`Rejection`]s for malformed input (the rest is kept).

pub mod av2_motion;
pub mod av2_sensor;
pub mod comma2k19;
pub mod npy;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, ReadError};

/// The kind of log a path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A comma2k19 segment directory (`global_pose/`, `processed_log/`, NumPy files).
    Comma2k19,
    /// An Argoverse 2 motion-forecasting scenario (`scenario_*.parquet`).
    Av2Motion,
    /// An Argoverse 2 sensor log directory (`annotations.feather`, `city_SE3_egovehicle.feather`).
    Av2Sensor,
}

impl Source {
    /// The name stored in the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Comma2k19 => "comma2k19",
            Self::Av2Motion => "av2_motion",
            Self::Av2Sensor => "av2_sensor",
        }
    }
}

/// A malformed file or row that was left out of a batch (issue item 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    /// The file.
    pub file: PathBuf,
    /// The 0-based row (for tables and arrays), `None` when the whole file is rejected.
    pub row: Option<u64>,
    /// Why.
    pub reason: String,
}

impl Rejection {
    /// A whole-file rejection from a reader error.
    pub fn file(error: &ReadError) -> Self {
        Self {
            file: error.path().to_path_buf(),
            row: None,
            reason: error_chain(error),
        }
    }

    /// A single-row rejection.
    pub fn row(file: &Path, row: u64, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            row: Some(row),
            reason: reason.into(),
        }
    }
}

/// The error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One object's trajectory as recorded (not yet resampled), in the log's planar frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Track id within the log (`ego` for the recording vehicle).
    pub track_id: String,
    /// Object type, lower case (`vehicle`, `pedestrian`, `regular_vehicle`, `ego_vehicle`, ...).
    pub object_type: String,
    /// Sample times \[s, log clock\], increasing.
    pub times_s: Vec<f64>,
    /// Positions \[m\] in the log's planar frame.
    pub xy_m: Vec<[f64; 2]>,
    /// Heading \[rad\] per sample when the source records one.
    pub heading_rad: Option<Vec<f64>>,
}

/// One lead-car radar return (comma2k19 `processed_log/CAN/radar`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadarPoint {
    /// Time \[s, log clock\].
    pub t_s: f64,
    /// Longitudinal distance ahead \[m\].
    pub d_rel_m: f64,
    /// Lateral offset \[m\] (left positive).
    pub y_rel_m: f64,
    /// Relative speed \[m/s\] (negative when closing).
    pub v_rel_mps: f64,
}

/// One log read by a reader.
#[derive(Debug, Clone)]
pub struct LogData {
    /// Which reader produced it.
    pub source: Source,
    /// The log's id (scenario id, directory name).
    pub log_id: String,
    /// City, when the source records one.
    pub city: Option<String>,
    /// Offset added to track times to get Unix seconds, when known; else times are the log's
    /// own clock.
    pub unix_offset_s: Option<f64>,
    /// The tracks (the ego vehicle included when the log has one).
    pub tracks: Vec<Track>,
    /// Radar returns sorted by time (comma2k19 only).
    pub radar: Vec<RadarPoint>,
    /// Files read successfully.
    pub files: Vec<PathBuf>,
    /// Files or rows left out.
    pub rejections: Vec<Rejection>,
}

/// What one input path resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLocation {
    /// Reader to use.
    pub source: Source,
    /// File (AV2 scenario) or directory (the others).
    pub path: PathBuf,
}

/// Finds the logs under `path`: the path itself when it is a log, else every log in its
/// subdirectories (depth-first, sorted by name, at most 4 levels deep).
///
/// # Errors
/// [`Error::UnknownInput`] when nothing is found; [`Error::Io`] when a directory cannot be read.
pub fn discover(path: &Path) -> Result<Vec<LogLocation>, Error> {
    let mut found = Vec::new();
    discover_into(path, 0, &mut found)?;
    if found.is_empty() {
        return Err(Error::UnknownInput(path.to_path_buf()));
    }
    Ok(found)
}

fn discover_into(path: &Path, depth: usize, found: &mut Vec<LogLocation>) -> Result<(), Error> {
    if path.is_file() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".parquet") && name.starts_with("scenario_") {
            found.push(LogLocation {
                source: Source::Av2Motion,
                path: path.to_path_buf(),
            });
        }
        return Ok(());
    }
    if path.join(av2_sensor::LABELS_FILE).exists()
        || path.join(av2_sensor::LABELS_WITH_EGO_FILE).exists()
        || path.join("city_SE3_egovehicle.feather").exists()
    {
        found.push(LogLocation {
            source: Source::Av2Sensor,
            path: path.to_path_buf(),
        });
        return Ok(());
    }
    if path.join("global_pose").is_dir() {
        found.push(LogLocation {
            source: Source::Comma2k19,
            path: path.to_path_buf(),
        });
        return Ok(());
    }
    if depth >= 4 || !path.is_dir() {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs_err::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        discover_into(&entry, depth + 1, found)?;
    }
    Ok(())
}

/// Reads one log with the reader for its source. Never fails: unreadable files become
/// rejections in the returned [`LogData`].
pub fn read_log(location: &LogLocation) -> LogData {
    match location.source {
        Source::Comma2k19 => comma2k19::read(&location.path),
        Source::Av2Motion => av2_motion::read(&location.path),
        Source::Av2Sensor => av2_sensor::read(&location.path),
    }
}

/// `true` when all values are finite.
pub(crate) fn finite(values: &[f64]) -> bool {
    values.iter().all(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_the_bundled_logs() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/driving");
        let found = discover(&root).unwrap();
        let kinds: Vec<Source> = found.iter().map(|l| l.source).collect();
        assert_eq!(
            kinds,
            [
                Source::Av2Motion,
                Source::Av2Sensor,
                Source::Av2Sensor,
                Source::Av2Sensor,
                Source::Comma2k19
            ]
        );
        assert!(matches!(
            discover(&root.join("SOURCE.md")),
            Err(Error::UnknownInput(_))
        ));
    }
}

/// Typed column access for the Arrow-based readers (AV2 Parquet and Feather).
pub(crate) mod columns {
    use deltalake::arrow::array::{Array, AsArray, RecordBatch};
    use deltalake::arrow::compute::cast;
    use deltalake::arrow::datatypes::{DataType, Float64Type, Int64Type};

    /// Column `name` cast to `f64` (nulls become NaN).
    pub(crate) fn f64s(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, String> {
        let array = cast(column(batch, name)?, &DataType::Float64).map_err(|e| e.to_string())?;
        let typed = array.as_primitive::<Float64Type>();
        Ok((0..typed.len())
            .map(|i| {
                if typed.is_null(i) {
                    f64::NAN
                } else {
                    typed.value(i)
                }
            })
            .collect())
    }

    /// Column `name` cast to `i64` (nulls become `None`).
    pub(crate) fn i64s(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>, String> {
        let array = cast(column(batch, name)?, &DataType::Int64).map_err(|e| e.to_string())?;
        let typed = array.as_primitive::<Int64Type>();
        Ok((0..typed.len())
            .map(|i| (!typed.is_null(i)).then(|| typed.value(i)))
            .collect())
    }

    /// Column `name` cast to a `Utf8` array, to read its values borrowed (no `String` per row).
    pub(crate) fn utf8(
        batch: &RecordBatch,
        name: &str,
    ) -> Result<deltalake::arrow::array::ArrayRef, String> {
        cast(column(batch, name)?, &DataType::Utf8).map_err(|e| e.to_string())
    }

    /// Column `name` cast to strings (nulls become `None`).
    pub(crate) fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, String> {
        let array = cast(column(batch, name)?, &DataType::Utf8).map_err(|e| e.to_string())?;
        let typed = array.as_string::<i32>();
        Ok((0..typed.len())
            .map(|i| (!typed.is_null(i)).then(|| typed.value(i).to_owned()))
            .collect())
    }

    fn column<'a>(
        batch: &'a RecordBatch,
        name: &str,
    ) -> Result<&'a deltalake::arrow::array::ArrayRef, String> {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("column `{name}` is missing"))
    }
}
