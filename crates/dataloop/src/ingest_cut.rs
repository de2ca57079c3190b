//! The CPU side of an ingest ([`crate::closed_loop::DataLoop::ingest`]): the batch id, and
//! one log read with its HD map and cut into warehouse rows ([`cut_log`], run on the blocking
//! pool, [`CUT_AHEAD`] logs ahead of the one being written), with the 64-bit clip-id key of
//! the in-batch duplicate check.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::RecordBatch;
use sha2::{Digest, Sha256};

use crate::clip::{self, WindowSpec};
use crate::error::Result;
use crate::hd_map::{self, HdMap};
use crate::reader::{self, Rejection};
use crate::warehouse;

/// The ingest batch id: UTC time stamp and the first 8 hex digits of a SHA-256 over the input
/// paths and the time (nanoseconds).
pub(crate) fn batch_id_of(locations: &[reader::LogLocation], stamp: &DateTime<Utc>) -> String {
    let mut hasher = Sha256::new();
    for l in locations {
        hasher.update(l.path.to_string_lossy().as_bytes());
    }
    hasher.update(stamp.timestamp_nanos_opt().unwrap_or(0).to_le_bytes());
    format!(
        "{}-{}",
        stamp.format("%Y%m%dT%H%M%S"),
        &hex::encode(hasher.finalize())[..8]
    )
}

/// Logs read and cut ahead of the one being written during an ingest.
pub(crate) const CUT_AHEAD: usize = 2;

/// One log read and cut into warehouse rows ([`cut_log`]).
pub(crate) struct CutLog {
    /// Reader used.
    pub(crate) source: &'static str,
    /// Log id.
    pub(crate) log_id: String,
    /// Files read successfully (the HD map counts).
    pub(crate) files: usize,
    /// Rejected files and rows (the HD map's first).
    pub(crate) rejections: Vec<Rejection>,
    /// The HD map file, when it was read.
    pub(crate) map: Option<PathBuf>,
    /// Clips cut.
    pub(crate) clips: usize,
    /// Their warehouse rows (`warehouse_schema`), `None` when no clip was cut.
    pub(crate) rows: Option<RecordBatch>,
}

/// Reads the log at `location` with its HD map and cuts it into warehouse rows of batch
/// `batch_id` in partition `ingest_date` (CPU work, run on the blocking pool).
///
/// # Errors
/// [`Error::Arrow`] / [`Error::Trajectory`] when the rows cannot be built (a bug); unreadable
/// or malformed input is a rejection, not an error.
pub(crate) fn cut_log(
    location: &reader::LogLocation,
    spec: WindowSpec,
    batch_id: &str,
    ingest_date: &str,
) -> Result<CutLog> {
    let log = reader::read_log(location);
    let mut rejections = Vec::new();
    let (map, map_files) = map_of(location, &mut rejections);
    let map_path = if map.is_some() {
        hd_map::find(&location.path)
    } else {
        None
    };
    let clips = clip::extract(&log, spec, map.as_ref());
    tracing::info!(source = log.source.as_str(), log_id = %log.log_id, clips = clips.len(), rejected = log.rejections.len(), "log read");
    for r in &log.rejections {
        tracing::warn!(file = %r.file.display(), row = ?r.row, reason = %r.reason, "rejected");
    }
    rejections.extend(log.rejections.iter().cloned());
    let rows = if clips.is_empty() {
        None
    } else {
        Some(warehouse::warehouse_batch(&clips, batch_id, ingest_date)?)
    };
    Ok(CutLog {
        source: log.source.as_str(),
        files: map_files + log.files.len(),
        log_id: log.log_id,
        rejections,
        map: map_path,
        clips: clips.len(),
        rows,
    })
}

/// 64-bit key of a clip id for the in-batch duplicate check, which compares ids of one log
/// only (about a thousand per log, so a collision is out of reach in practice).
pub(crate) fn id_key(clip_id: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::hash::DefaultHasher::new();
    clip_id.hash(&mut h);
    h.finish()
}

/// The HD map of the log at `location` and the number of map files read (0 or 1); a map that
/// cannot be read or parsed is rejected as a whole file (the log is then cut without lanes).
pub(crate) fn map_of(
    location: &reader::LogLocation,
    rejections: &mut Vec<Rejection>,
) -> (Option<HdMap>, usize) {
    let Some(path) = hd_map::find(&location.path) else {
        return (None, 0);
    };
    match HdMap::load(&path) {
        Ok(map) => {
            tracing::debug!(map = %path.display(), lanes = map.lanes().len(), "HD map read");
            (Some(map), 1)
        }
        Err(e) => {
            tracing::warn!(map = %path.display(), error = %e.chain(), "HD map rejected");
            rejections.push(Rejection {
                file: path,
                row: None,
                reason: e.chain(),
            });
            (None, 0)
        }
    }
}
