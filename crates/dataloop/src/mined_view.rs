//! What the web view shows for one mined ID list (issue 13 item 8; seed ¶33 visual display,
//! ¶44-¶46 the mined list and the clips taken by it): the first clips of the list taken from
//! the warehouse, each with its history, ground truth and the predictions of the version's own
//! model and of constant velocity, all in the agent frame (present position at the origin,
//! heading along +x, metres), and each clip's ADE.
//!
//! Where the clip's log has an HD map (ingest keeps a copy in the file store,
//! [`crate::hd_map::map_location`]), the lane centrelines within [`LANE_RADIUS_M`] of the
//! present position are drawn under the paths, in the same frame.

use std::collections::HashMap;

use serde::Serialize;

use crate::closed_loop::DataLoop;
use crate::error::{Error, Result};
use crate::hd_map::{self, HdMap};
use crate::model::{AgentWindow, constant_velocity, displacement};
use crate::registry::{Registry, load_model};

/// Most clips one view holds.
pub const MAX_CLIPS: usize = 64;

/// Lane points farther than this from the present position are left out \[m\].
pub const LANE_RADIUS_M: f64 = 60.0;

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
    /// Lane centrelines near the clip (runs of points within [`LANE_RADIUS_M`]), empty where
    /// the log has no map.
    pub lanes: Vec<Vec<[f64; 2]>>,
}

/// The lane centrelines of `map` within [`LANE_RADIUS_M`] of `origin`, in the frame whose origin
/// is `origin` and whose +x axis points along `heading_rad` (each run of nearby points of a lane
/// is one polyline of at least two points).
pub fn lanes_near(map: &HdMap, origin: [f64; 2], heading_rad: f64) -> Vec<Vec<[f64; 2]>> {
    let (s, c) = heading_rad.sin_cos();
    let mut out = Vec::new();
    for lane in map.lanes() {
        let mut run: Vec<[f64; 2]> = Vec::new();
        for p in &lane.centreline {
            let (dx, dy) = (p[0] - origin[0], p[1] - origin[1]);
            if dx.hypot(dy) <= LANE_RADIUS_M {
                run.push([c * dx + s * dy, -s * dx + c * dy]);
            } else if run.len() >= 2 {
                out.push(std::mem::take(&mut run));
            } else {
                run.clear();
            }
        }
        if run.len() >= 2 {
            out.push(run);
        }
    }
    out
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
    let mut maps: HashMap<String, Option<HdMap>> = HashMap::new();
    let mut clips = Vec::with_capacity(taken.len());
    for clip in taken {
        let log_id = crate::clip::log_id_of(&clip.clip_id)
            .unwrap_or_default()
            .to_owned();
        if !maps.contains_key(&log_id) {
            let map = match dl.file_store().get(&hd_map::map_location(&log_id)).await {
                Ok(bytes) => Some(HdMap::parse(
                    std::path::Path::new(&hd_map::map_location(&log_id)),
                    &String::from_utf8_lossy(&bytes),
                )?),
                Err(Error::ObjectStore(deltalake::ObjectStoreError::NotFound { .. })) => None,
                Err(e) => return Err(e),
            };
            maps.insert(log_id.clone(), map);
        }
        let h = clip.trajectory.history();
        let lanes = match (maps.get(&log_id), h.last()) {
            (Some(Some(map)), Some(&origin)) => {
                let recorded = clip
                    .trajectory
                    .heading_rad
                    .as_ref()
                    .and_then(|v| v.get(clip.trajectory.present_index))
                    .copied();
                lanes_near(map, origin, crate::geometry::agent_heading(h, recorded))
            }
            _ => Vec::new(),
        };
        clips.push({
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
                lanes,
            }
        });
    }
    Ok(MinedView {
        version,
        rule,
        warehouse_version: warehouse.version(),
        ids: ids.len(),
        clips,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_near_keeps_nearby_points_in_the_agent_frame() {
        // One lane east along y = 0 with a point every 10 m from x = 0 to 300; the agent stands
        // at (100, 10) heading north.
        let points: Vec<String> = (0..=30)
            .map(|i| format!(r#"{{"x": {}, "y": 0}}"#, i * 10))
            .collect();
        let json = format!(
            r#"{{"lane_segments": {{"1": {{"id": 1,
              "left_lane_boundary": [{{"x": 0, "y": 2}}, {{"x": 300, "y": 2}}],
              "right_lane_boundary": [{{"x": 0, "y": -2}}, {{"x": 300, "y": -2}}],
              "centerline": [{}]}}}}}}"#,
            points.join(",")
        );
        let map = HdMap::parse(std::path::Path::new("test.json"), &json).unwrap();
        let lanes = lanes_near(&map, [100.0, 10.0], std::f64::consts::FRAC_PI_2);
        assert_eq!(lanes.len(), 1);
        let lane = &lanes[0];
        // x in 50..=150 (within 60 m of the agent): 11 points; in the agent frame the lane is
        // the line x = -10 (10 m behind), running toward -y (east is the agent's right).
        assert_eq!(lane.len(), 11, "{lane:?}");
        for p in lane {
            assert!((p[0] + 10.0).abs() < 1e-9, "{p:?}");
        }
        assert!((lane[0][1] - 50.0).abs() < 1e-9 && (lane[10][1] + 50.0).abs() < 1e-9);
        // Far away: nothing.
        assert!(lanes_near(&map, [1000.0, 1000.0], 0.0).is_empty());
    }

    #[test]
    fn the_log_id_is_read_back_from_a_clip_id() {
        assert_eq!(
            crate::clip::log_id_of("av2_motion:0a1e6f0a-1817:138951:0"),
            Some("0a1e6f0a-1817")
        );
        assert_eq!(
            crate::clip::log_id_of("comma2k19:b0c9|2018-07-29:lead:-500"),
            Some("b0c9|2018-07-29")
        );
        assert_eq!(crate::clip::log_id_of("nocolons"), None);
        assert_eq!(crate::clip::log_id_of("a:b"), None);
    }
}
