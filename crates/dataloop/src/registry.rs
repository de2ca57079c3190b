//! The model registry (issue item 7; seed ¶55, ¶64-¶65): every trained model is a
//! versioned JSON artefact under `models/`, and `registry.json` records for each version the
//! trigger, its ID list, the warehouse version, the training mode, the metrics and whether it was
//! promoted to champion; it also holds the pinned evaluation set ([`EvalPin`]) every version is
//! scored on. Files are replaced atomically (write to a temporary name, rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::Metrics;
use crate::model::{TrainMode, TrajectoryModel};
use crate::pinned::{EvalPin, PinnedReport};

/// What started a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRecord {
    /// `scheduled` or `manual`.
    pub kind: String,
    /// Rule name (`adhoc` for a predicate); `None` for scheduled runs.
    pub rule: Option<String>,
    /// The predicate that ran on the OLAP store.
    pub predicate: Option<String>,
    /// Parameter values.
    pub params: BTreeMap<String, String>,
    /// `file://` URL of the ID list (manual) or of the full export (scheduled).
    pub id_list: Option<String>,
    /// Clips the trigger selected.
    pub clips: usize,
    /// When it fired (RFC 3339, UTC).
    pub fired_at: String,
}

/// One model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// 1, 2, ...
    pub version: u32,
    /// The trigger.
    pub trigger: TriggerRecord,
    /// Warehouse (Delta) version the data was read at.
    pub warehouse_version: i64,
    /// Full or incremental.
    pub mode: TrainMode,
    /// Champion version the incremental run started from.
    pub parent_version: Option<u32>,
    /// Training windows used in this run.
    pub train_windows: usize,
    /// Chosen ridge penalty.
    pub alpha: f64,
    /// Metrics on the evaluation set (the pinned set's windows, see `pinned`).
    pub metrics: Metrics,
    /// Scores on the pinned evaluation set: all and moving windows, per category, model vs
    /// constant velocity (absent in records written before the set was pinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<PinnedReport>,
    /// Logs whose clips were given to training in this run (never a pinned log).
    #[serde(default)]
    pub train_logs: Vec<String>,
    /// The champion's (or constant velocity's, with no champion) ADE and FDE on the same
    /// windows when this version was judged \[m\].
    pub baseline_ade_fde_m: (f64, f64),
    /// Whether this version became the champion.
    pub promoted: bool,
    /// Artefact path relative to the data directory.
    pub artefact: String,
}

/// The registry file's content.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Registry {
    /// Current champion version.
    pub champion: Option<u32>,
    /// All versions, oldest first.
    pub versions: Vec<ModelVersion>,
    /// The evaluation set: chosen once by the first trigger, then fixed (issue 13 item 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_pin: Option<EvalPin>,
}

impl Registry {
    /// Loads `<data_dir>/registry.json` (empty when absent).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Json`].
    pub fn load(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("registry.json");
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = fs_err::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path, source })
    }

    /// Writes `<data_dir>/registry.json` atomically.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        write_json(&data_dir.join("registry.json"), self)
    }

    /// The next version number.
    pub fn next_version(&self) -> u32 {
        self.versions.last().map_or(1, |v| v.version + 1)
    }

    /// The champion's record.
    pub fn champion_record(&self) -> Option<&ModelVersion> {
        let c = self.champion?;
        self.versions.iter().find(|v| v.version == c)
    }

    /// Loads the champion's artefact.
    ///
    /// # Errors
    /// [`Error::NoChampion`] when there is none; [`Error::Io`] / [`Error::Json`].
    pub fn champion_model(&self, data_dir: &Path) -> Result<(u32, TrajectoryModel)> {
        let record = self
            .champion_record()
            .ok_or_else(|| Error::NoChampion(data_dir.join("registry.json")))?;
        Ok((
            record.version,
            load_model(&data_dir.join(&record.artefact))?,
        ))
    }
}

/// Saves a model artefact as `models/v{version:04}.json` and the clip hashes its statistics
/// hold ([`TrajectoryModel::seen_clips`]) as `models/v{version:04}.seen` (sorted little-endian
/// `u64`s, 8 bytes per clip); returns the JSON's relative path.
///
/// # Errors
/// [`Error::Io`].
pub fn save_model(data_dir: &Path, version: u32, model: &TrajectoryModel) -> Result<String> {
    let rel = format!("models/v{version:04}.json");
    let path = data_dir.join(&rel);
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let seen = seen_path(&path);
    let tmp = seen.with_extension("seen.tmp");
    let bytes: Vec<u8> = model
        .seen_clips
        .iter()
        .flat_map(|h| h.to_le_bytes())
        .collect();
    fs_err::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    fs_err::rename(&tmp, &seen).map_err(|e| Error::io(&seen, e))?;
    write_json(&path, model)?;
    Ok(rel)
}

/// Loads a model artefact and its clip hashes (none for an artefact written before they were
/// kept: its incremental successors cannot skip clips it already counted).
///
/// # Errors
/// [`Error::Io`] or [`Error::Json`] (also for a `.seen` file whose length is not a multiple
/// of 8); [`Error::Fit`] for an artefact whose weights do not have this build's shape.
pub fn load_model(path: &Path) -> Result<TrajectoryModel> {
    let text = fs_err::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut model: TrajectoryModel = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if model.weights.len() != crate::model::FEATURES * crate::model::OUTPUTS
        || model.feature_scale.len() != crate::model::FEATURES
    {
        return Err(Error::Fit(format!(
            "`{}` has {} feature scales and {} weights; this build's model has {} features and {} outputs (an artefact of another feature set)",
            path.display(),
            model.feature_scale.len(),
            model.weights.len(),
            crate::model::FEATURES,
            crate::model::OUTPUTS
        )));
    }
    let seen = seen_path(path);
    match fs_err::read(&seen) {
        Ok(bytes) if bytes.len() % 8 == 0 => {
            model.seen_clips = bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    u64::from_le_bytes(b)
                })
                .collect();
        }
        Ok(bytes) => {
            return Err(Error::io(
                &seen,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} bytes is not a whole number of 8-byte clip hashes",
                        bytes.len()
                    ),
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %seen.display(), "model has no clip hashes; cannot deduplicate against it");
        }
        Err(e) => return Err(Error::io(&seen, e)),
    }
    Ok(model)
}

fn seen_path(json: &Path) -> PathBuf {
    json.with_extension("seen")
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp: PathBuf = path.with_extension("json.tmp");
    fs_err::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    fs_err::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
