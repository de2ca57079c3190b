//! Warehouse rows as Arrow (re-exported by [`crate::warehouse`]): the simple-field schema shared
//! with the OLAP store, the full warehouse schema with the complex field's native columns
//! ([`crate::trajectory`]), building record batches from clips and decoding read rows back.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};

use crate::clip::{Clip, SimpleFields};
use crate::error::{Error, Result};
use crate::trajectory::{self, Trajectory};
use crate::warehouse::PARTITION_COLUMN;

/// The simple-field columns shared by the warehouse and the OLAP store, in order:
/// `(name, arrow type, nullable)`.
pub const SIMPLE_COLUMNS: [(&str, ArrowType, bool); 20] = [
    ("clip_id", ArrowType::Utf8, false),
    ("source", ArrowType::Utf8, false),
    ("log_id", ArrowType::Utf8, false),
    ("track_id", ArrowType::Utf8, false),
    ("object_type", ArrowType::Utf8, false),
    ("city", ArrowType::Utf8, true),
    ("split", ArrowType::Utf8, false),
    ("category", ArrowType::Utf8, false),
    ("start_time_s", ArrowType::Float64, false),
    ("duration_s", ArrowType::Float64, false),
    ("mean_speed_mps", ArrowType::Float64, false),
    ("max_speed_mps", ArrowType::Float64, false),
    ("max_decel_mps2", ArrowType::Float64, false),
    ("max_lat_accel_mps2", ArrowType::Float64, false),
    ("max_yaw_rate_radps", ArrowType::Float64, false),
    ("path_length_m", ArrowType::Float64, false),
    ("lead_distance_m", ArrowType::Float64, true),
    ("ttc_s", ArrowType::Float64, true),
    ("agents_nearby", ArrowType::Int64, false),
    ("pedestrians_nearby", ArrowType::Int64, false),
];

/// Arrow schema of the simple fields plus `batch_id`.
pub fn simple_schema() -> SchemaRef {
    let mut fields: Vec<Field> = SIMPLE_COLUMNS
        .iter()
        .map(|(n, t, nullable)| Field::new(*n, t.clone(), *nullable))
        .collect();
    fields.push(Field::new("batch_id", ArrowType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Arrow schema of a warehouse row: simple fields, `batch_id`, the complex field's columns
/// ([`trajectory::columns`]: `present_index`, `lane_heading_rad`, `lane_offset_m`,
/// `lane_ahead_heading_rad`, `trajectory`), `ingest_date`.
pub fn warehouse_schema() -> SchemaRef {
    let mut fields: Vec<Field> = simple_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(trajectory::columns());
    fields.push(Field::new(PARTITION_COLUMN, ArrowType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The simple fields of `clips` as one record batch (OLAP layout, also the warehouse prefix).
///
/// # Errors
/// [`Error::Arrow`] if the columns do not fit the schema (a bug).
pub fn simple_batch(clips: &[&SimpleFields], batch_id: &str) -> Result<RecordBatch> {
    let s = |f: fn(&SimpleFields) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(clips.iter().map(|c| f(c))))
    };
    let d = |f: fn(&SimpleFields) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(clips.iter().map(|c| f(c))))
    };
    let o = |f: fn(&SimpleFields) -> Option<f64>| -> ArrayRef {
        Arc::new(clips.iter().map(|c| f(c)).collect::<Float64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        s(|c| &c.clip_id),
        s(|c| &c.source),
        s(|c| &c.log_id),
        s(|c| &c.track_id),
        s(|c| &c.object_type),
        Arc::new(
            clips
                .iter()
                .map(|c| c.city.as_deref())
                .collect::<StringArray>(),
        ),
        s(|c| &c.split),
        s(|c| &c.category),
        d(|c| c.start_time_s),
        d(|c| c.duration_s),
        d(|c| c.mean_speed_mps),
        d(|c| c.max_speed_mps),
        d(|c| c.max_decel_mps2),
        d(|c| c.max_lat_accel_mps2),
        d(|c| c.max_yaw_rate_radps),
        d(|c| c.path_length_m),
        o(|c| c.lead_distance_m),
        o(|c| c.ttc_s),
        Arc::new(Int64Array::from_iter_values(
            clips.iter().map(|c| c.agents_nearby),
        )),
        Arc::new(Int64Array::from_iter_values(
            clips.iter().map(|c| c.pedestrians_nearby),
        )),
        Arc::new(StringArray::from_iter_values(
            clips.iter().map(|_| batch_id),
        )),
    ];
    Ok(RecordBatch::try_new(simple_schema(), columns)?)
}

/// Full warehouse rows for `clips`.
///
/// # Errors
/// [`Error::Arrow`] on a schema mismatch (a bug); [`Error::Trajectory`] for a trajectory whose
/// arrays have different lengths.
pub fn warehouse_batch(clips: &[Clip], batch_id: &str, ingest_date: &str) -> Result<RecordBatch> {
    let simple: Vec<&SimpleFields> = clips.iter().map(|c| &c.simple).collect();
    let prefix = simple_batch(&simple, batch_id)?;
    let trajectories: Vec<&Trajectory> = clips.iter().map(|c| &c.trajectory).collect();
    let mut columns = prefix.columns().to_vec();
    columns.extend(trajectory::to_columns(&trajectories)?);
    columns.push(Arc::new(StringArray::from_iter_values(
        clips.iter().map(|_| ingest_date),
    )));
    Ok(RecordBatch::try_new(warehouse_schema(), columns)?)
}

/// A clip's complex field as read back from the warehouse.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredClip {
    /// Clip id.
    pub clip_id: String,
    /// `train`, `eval` or `gap`.
    pub split: String,
    /// Scenario category.
    pub category: String,
    /// Decoded trajectory.
    pub trajectory: Trajectory,
}

/// Decodes rows with the columns of [`crate::take::TAKE_COLUMNS`] (found by name; strings may
/// be views, as DataFusion returns them).
///
/// # Errors
/// [`Error::Arrow`] for other column types, [`Error::Trajectory`] for a malformed trajectory.
pub fn decode_rows(batches: &[RecordBatch]) -> Result<Vec<StoredClip>> {
    let mut out = Vec::new();
    for b in batches {
        let text = |name: &str| -> Result<ArrayRef> {
            let c = b.column_by_name(name).ok_or_else(|| Error::Trajectory {
                clip_id: "(batch)".to_owned(),
                reason: format!("column `{name}` missing"),
            })?;
            Ok(deltalake::arrow::compute::cast(c, &ArrowType::Utf8)?)
        };
        let (ids, splits, cats, types) = (
            text("clip_id")?,
            text("split")?,
            text("category")?,
            text("object_type")?,
        );
        let (ids, splits, cats, types) = (
            ids.as_string::<i32>(),
            splits.as_string::<i32>(),
            cats.as_string::<i32>(),
            types.as_string::<i32>(),
        );
        let columns = trajectory::Columns::of(b, "(batch)")?;
        for i in 0..b.num_rows() {
            let clip_id = ids.value(i);
            let trajectory = columns.get(i, clip_id, types.value(i), cats.value(i))?;
            out.push(StoredClip {
                clip_id: clip_id.to_owned(),
                split: splits.value(i).to_owned(),
                category: cats.value(i).to_owned(),
                trajectory,
            });
        }
    }
    Ok(out)
}
