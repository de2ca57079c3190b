//! The complex field (seed ¶32, ¶38): one clip's trajectory (history and future) and its
//! labels, serialised as an Arrow IPC stream into one binary column of the warehouse.
//!
//! Layout (`dataloop.trajectory.v1`): columns `t_s` (f64, seconds relative to the present
//! sample, -2.0..3.0), `x_m`, `y_m` (f64, the log's planar frame: AV2 city frame or comma2k19
//! east/north), `heading_rad` (f64, nullable: recorded heading when the source has one);
//! schema metadata `format`, `clip_id`, `object_type`, `category`, `present_index`, and, when
//! the log has an HD map with a lane near the present position, `lane_heading_rad`,
//! `lane_offset_m` and `lane_ahead_heading_rad` ([`LaneContext`], decimal text).

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use deltalake::arrow::ipc::reader::StreamReader;
use deltalake::arrow::ipc::writer::StreamWriter;

use crate::error::Error;
use crate::hd_map::LaneContext;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "dataloop.trajectory.v1";

/// A window's trajectory with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// The clip this belongs to.
    pub clip_id: String,
    /// Object type label (lower case).
    pub object_type: String,
    /// Scenario category label (`stationary`, `turning`, `braking`, `accelerating`, `cruising`).
    pub category: String,
    /// Index of the present sample (end of history) in the arrays.
    pub present_index: usize,
    /// Sample times relative to the present \[s\].
    pub t_s: Vec<f64>,
    /// Positions \[m\].
    pub xy_m: Vec<[f64; 2]>,
    /// Recorded heading per sample \[rad\], when the source has one.
    pub heading_rad: Option<Vec<f64>>,
    /// The lane at the present position (city frame), when the log has an HD map and a lane
    /// is near.
    pub lane: Option<LaneContext>,
}

/// Metadata keys of [`LaneContext`]'s fields.
const LANE_KEYS: [&str; 3] = [
    "lane_heading_rad",
    "lane_offset_m",
    "lane_ahead_heading_rad",
];

impl Trajectory {
    /// History samples including the present.
    pub fn history(&self) -> &[[f64; 2]] {
        &self.xy_m[..=self.present_index]
    }

    /// Future samples after the present.
    pub fn future(&self) -> &[[f64; 2]] {
        &self.xy_m[self.present_index + 1..]
    }

    /// Serialises to Arrow IPC stream bytes.
    ///
    /// # Errors
    /// [`Error::Arrow`] if the writer fails (it does not for well-formed input).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let metadata: HashMap<String, String> = [
            ("format", FORMAT.to_owned()),
            ("clip_id", self.clip_id.clone()),
            ("object_type", self.object_type.clone()),
            ("category", self.category.clone()),
            ("present_index", self.present_index.to_string()),
        ]
        .into_iter()
        .chain(self.lane.iter().flat_map(|l| {
            LANE_KEYS
                .into_iter()
                .zip([l.heading_rad, l.offset_m, l.ahead_heading_rad])
                .map(|(k, v)| (k, v.to_string()))
        }))
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let schema = Arc::new(
            Schema::new(vec![
                Field::new("t_s", DataType::Float64, false),
                Field::new("x_m", DataType::Float64, false),
                Field::new("y_m", DataType::Float64, false),
                Field::new("heading_rad", DataType::Float64, true),
            ])
            .with_metadata(metadata),
        );
        let heading: Float64Array = match &self.heading_rad {
            Some(h) => h.iter().copied().map(Some).collect(),
            None => std::iter::repeat_n(None::<f64>, self.t_s.len()).collect(),
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Float64Array::from(self.t_s.clone())),
                Arc::new(Float64Array::from_iter_values(
                    self.xy_m.iter().map(|p| p[0]),
                )),
                Arc::new(Float64Array::from_iter_values(
                    self.xy_m.iter().map(|p| p[1]),
                )),
                Arc::new(heading),
            ],
        )?;
        let mut out = Vec::new();
        let mut writer = StreamWriter::try_new(&mut out, &schema)?;
        writer.write(&batch)?;
        writer.finish()?;
        drop(writer);
        Ok(out)
    }

    /// Parses bytes written by [`Trajectory::encode`].
    ///
    /// # Errors
    /// [`Error::Trajectory`] when the bytes are not this layout (`clip_id` names the row).
    pub fn decode(clip_id: &str, bytes: &[u8]) -> Result<Self, Error> {
        let bad = |reason: String| Error::Trajectory {
            clip_id: clip_id.to_owned(),
            reason,
        };
        let reader =
            StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| bad(e.to_string()))?;
        let schema = reader.schema();
        let meta = schema.metadata();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!("format is not {FORMAT}")));
        }
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(format!("metadata `{k}` missing")))
        };
        let present_index: usize = get("present_index")?
            .parse()
            .map_err(|_| bad("present_index is not a number".to_owned()))?;
        let lane_values: Vec<Option<&String>> = LANE_KEYS.iter().map(|k| meta.get(*k)).collect();
        let lane = match lane_values.as_slice() {
            [Some(h), Some(o), Some(a)] => {
                let num = |v: &String| {
                    v.parse::<f64>()
                        .map_err(|_| bad(format!("lane metadata `{v}` is not a number")))
                };
                Some(LaneContext {
                    heading_rad: num(h)?,
                    offset_m: num(o)?,
                    ahead_heading_rad: num(a)?,
                })
            }
            [None, None, None] => None,
            _ => return Err(bad("lane metadata is incomplete".to_owned())),
        };
        let mut t_s = Vec::new();
        let mut xy_m = Vec::new();
        let mut heading = Vec::new();
        let mut has_heading = true;
        for batch in reader {
            let batch = batch.map_err(|e| bad(e.to_string()))?;
            let col = |i: usize| {
                batch
                    .column(i)
                    .as_primitive_opt::<Float64Type>()
                    .ok_or_else(|| bad(format!("column {i} is not f64")))
            };
            let (t, x, y, h) = (col(0)?, col(1)?, col(2)?, col(3)?);
            for i in 0..batch.num_rows() {
                t_s.push(t.value(i));
                xy_m.push([x.value(i), y.value(i)]);
                if h.is_null(i) {
                    has_heading = false;
                } else {
                    heading.push(h.value(i));
                }
            }
        }
        if present_index >= xy_m.len() {
            return Err(bad(format!(
                "present_index {present_index} beyond {} samples",
                xy_m.len()
            )));
        }
        Ok(Self {
            clip_id: get("clip_id")?,
            object_type: get("object_type")?,
            category: get("category")?,
            present_index,
            t_s,
            xy_m,
            heading_rad: has_heading.then_some(heading),
            lane,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_heading() {
        let lane = Some(LaneContext {
            heading_rad: 0.1 + 0.2,
            offset_m: -1.0 / 3.0,
            ahead_heading_rad: -3.0,
        });
        for (heading, lane) in [(None, None), (Some(vec![0.1, 0.2, 0.3]), lane)] {
            let t = Trajectory {
                clip_id: "a:b:c:0".to_owned(),
                object_type: "vehicle".to_owned(),
                category: "cruising".to_owned(),
                present_index: 1,
                t_s: vec![-0.1, 0.0, 0.1],
                xy_m: vec![[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]],
                heading_rad: heading,
                lane,
            };
            let bytes = t.encode().unwrap();
            assert_eq!(Trajectory::decode("a:b:c:0", &bytes).unwrap(), t);
        }
        assert!(matches!(
            Trajectory::decode("x", b"garbage"),
            Err(Error::Trajectory { .. })
        ));
    }
}
