//! What the web view shows for one mined ID list (issue 13 item 8; seed ¶33 visual display,
//! ¶44-¶46 the mined list and the clips taken by it): the first clips of the list taken from
//! the warehouse, each with its history, ground truth and the predictions of the version's own
//! model and of constant velocity, all in the agent frame (present position at the origin,
//! heading along +x, metres), and each clip's ADE.
//!
//! The HD maps are read at ingest into lane features and are not kept in the stores, so the
//! view draws no lanes.

use serde::Serialize;

use crate::closed_loop::DataLoop;
use crate::error::{Error, Result};
use crate::model::{AgentWindow, constant_velocity, displacement};
use crate::registry::{Registry, load_model};

/// Most clips one view holds.
pub const MAX_CLIPS: usize = 64;

/// One mined list as the page draws it.
#[derive(Debug, Clone, Serialize)]
pub struct MinedView {
    /// The model version the trigger produced.
    pub version: u32,
    /// The rule that mined the list.
    pub rule: String,
    /// Warehouse (Delta) version the clips were read at.
    pub warehouse_version: i64,
    /// IDs in the list.
    pub ids: usize,
    /// The first `min(limit, ids)` clips found in the warehouse, in list order.
    pub clips: Vec<MinedClip>,
}

/// One clip of a [`MinedView`]; every path is `[x, y]` in metres in the agent frame.
#[derive(Debug, Clone, Serialize)]
pub struct MinedClip {
    /// Clip id.
    pub clip_id: String,
    /// Scenario category.
    pub category: String,
    /// History, oldest first, ending at the present position (the origin), 21 points.
    pub history: Vec<[f64; 2]>,
    /// Ground truth, 30 points.
    pub future: Vec<[f64; 2]>,
    /// The version's model, 30 points.
    pub model: Vec<[f64; 2]>,
    /// Constant velocity, 30 points.
    pub constant_velocity: Vec<[f64; 2]>,
    /// ADE of the model \[m\].
    pub model_ade_m: f64,
    /// ADE of constant velocity \[m\].
    pub cv_ade_m: f64,
}

/// The view of the ID list that `version`'s manual trigger mined, with at most `limit` clips
/// (capped at [`MAX_CLIPS`]), read at the newest warehouse version.
///
/// # Errors
/// [`Error::NoIdList`] for an unknown version or one without an ID list; store, take and model
/// errors.
pub async fn mined_view(dl: &DataLoop, version: u32, limit: usize) -> Result<MinedView> {
    let registry = Registry::load(dl.data_dir())?;
    let record = registry
        .versions
        .iter()
        .find(|v| v.version == version)
        .ok_or(Error::NoIdList {
            version,
            reason: "no such version in the registry",
        })?;
    let rule = match (&record.trigger.rule, record.trigger.kind.as_str()) {
        (Some(rule), "manual") => rule.clone(),
        _ => {
            return Err(Error::NoIdList {
                version,
                reason: "its trigger was scheduled: it exported every clip, not an ID list",
            });
        }
    };
    let ids = dl
        .file_store()
        .get_id_list(&format!("id_lists/v{version:04}-{rule}.txt"))
        .await?;
    let model = load_model(&dl.data_dir().join(&record.artefact))?;
    let warehouse = dl.current_warehouse().await?;
    let shown: Vec<String> = ids.iter().take(limit.min(MAX_CLIPS)).cloned().collect();
    let mut taken = warehouse.take(&shown).await?;
    let order = |id: &str| shown.iter().position(|s| s == id).unwrap_or(usize::MAX);
    taken.sort_by_key(|c| order(&c.clip_id));
    let clips = taken
        .into_iter()
        .map(|clip| {
            let w = AgentWindow::from_trajectory(&clip.trajectory);
            let predicted = model.predict(&w);
            let cv = constant_velocity(&w);
            let (model_ade_m, _) = displacement(&predicted, &w.future);
            let (cv_ade_m, _) = displacement(&cv, &w.future);
            let mut history = w.history.clone();
            history.push([0.0, 0.0]);
            MinedClip {
                clip_id: clip.clip_id,
                category: clip.category,
                history,
                future: w.future,
                model: predicted,
                constant_velocity: cv,
                model_ade_m,
                cv_ade_m,
            }
        })
        .collect();
    Ok(MinedView {
        version,
        rule,
        warehouse_version: warehouse.version(),
        ids: ids.len(),
        clips,
    })
}
