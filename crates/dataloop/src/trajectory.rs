//! The complex field (seed ¶32, ¶38): one clip's trajectory (history and future) and its
//! labels, stored as native Arrow/Parquet columns of the warehouse, so Spark, DuckDB or Polars
//! read them without a custom decoder (issue 13 item 7).
//!
//! Columns ([`columns`], after the simple fields):
//! - `present_index` (Int64): index of the present sample (end of history) in `trajectory`;
//! - `lane_heading_rad`, `lane_offset_m`, `lane_ahead_heading_rad` (Float64, nullable, all null
//!   or all set): the HD-map lane at the present position ([`LaneContext`]), when the log has a
//!   map and a lane is near;
//! - `trajectory` (`List<Struct>`, Delta `array<struct<...>>`, DuckDB
//!   `STRUCT(t_s DOUBLE, x_m DOUBLE, y_m DOUBLE, heading_rad DOUBLE)[]`): one element per 10 Hz
//!   sample, in time order, with `t_s` (seconds relative to the present sample, -2.0..3.0),
//!   `x_m`, `y_m` (metres in the log's planar frame: AV2 city frame or comma2k19 east/north) and
//!   `heading_rad` (radians, nullable: the recorded heading when the source has one).
//!
//! The clip's `object_type` and `category` are the warehouse's simple columns of those names.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, RecordBatch, StructArray,
};
use deltalake::arrow::buffer::OffsetBuffer;
use deltalake::arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type};

use crate::error::Error;
use crate::hd_map::LaneContext;

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

impl Trajectory {
    /// History samples including the present.
    pub fn history(&self) -> &[[f64; 2]] {
        &self.xy_m[..=self.present_index]
    }

    /// Future samples after the present.
    pub fn future(&self) -> &[[f64; 2]] {
        &self.xy_m[self.present_index + 1..]
    }
}

/// Name of the list column.
pub const COLUMN: &str = "trajectory";
/// Name of the list's element field (what the Delta kernel calls an array's element, so the
/// Arrow type equals the one the Delta schema maps to).
pub const ELEMENT: &str = "element";
/// Children of one sample, in order: `(name, nullable)`, all Float64.
pub const SAMPLE_FIELDS: [(&str, bool); 4] = [
    ("t_s", false),
    ("x_m", false),
    ("y_m", false),
    ("heading_rad", true),
];
/// The per-clip columns stored beside the list, in order (all Float64 but `present_index`).
const SCALAR_COLUMNS: [&str; 4] = [
    "present_index",
    "lane_heading_rad",
    "lane_offset_m",
    "lane_ahead_heading_rad",
];

/// The fields of one sample ([`SAMPLE_FIELDS`]).
pub fn sample_fields() -> Fields {
    Fields::from(
        SAMPLE_FIELDS
            .iter()
            .map(|(n, nullable)| Field::new(*n, DataType::Float64, *nullable))
            .collect::<Vec<_>>(),
    )
}

/// The struct type of one sample.
pub fn sample_type() -> DataType {
    DataType::Struct(sample_fields())
}

/// The type of the `trajectory` column: `List<Struct<t_s, x_m, y_m, heading_rad>>`.
pub fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new(ELEMENT, sample_type(), false)))
}

/// The warehouse fields of the complex field, in order: `present_index`, the three lane
/// columns, `trajectory` (see the module documentation).
pub fn columns() -> Vec<Field> {
    let mut out = vec![Field::new(SCALAR_COLUMNS[0], DataType::Int64, false)];
    out.extend(
        SCALAR_COLUMNS[1..]
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, true)),
    );
    out.push(Field::new(COLUMN, list_type(), false));
    out
}

/// Names of [`columns`].
pub fn column_names() -> [&'static str; 5] {
    [
        SCALAR_COLUMNS[0],
        SCALAR_COLUMNS[1],
        SCALAR_COLUMNS[2],
        SCALAR_COLUMNS[3],
        COLUMN,
    ]
}

/// The arrays of [`columns`] for `trajectories`, one row each.
///
/// # Errors
/// [`Error::Arrow`] when the arrays do not fit the types (a bug); [`Error::Trajectory`] for a
/// trajectory whose arrays have different lengths.
pub fn to_columns(trajectories: &[&Trajectory]) -> Result<Vec<ArrayRef>, Error> {
    let samples: usize = trajectories.iter().map(|t| t.t_s.len()).sum();
    let (mut t_s, mut x, mut y) = (
        Vec::with_capacity(samples),
        Vec::with_capacity(samples),
        Vec::with_capacity(samples),
    );
    let mut heading: Vec<Option<f64>> = Vec::with_capacity(samples);
    let mut lengths = Vec::with_capacity(trajectories.len());
    for tr in trajectories {
        let n = tr.t_s.len();
        let bad_heading = tr.heading_rad.as_ref().is_some_and(|h| h.len() != n);
        if tr.xy_m.len() != n || bad_heading || tr.present_index >= n {
            return Err(Error::Trajectory {
                clip_id: tr.clip_id.clone(),
                reason: format!(
                    "{n} times, {} positions, {:?} headings, present index {}",
                    tr.xy_m.len(),
                    tr.heading_rad.as_ref().map(Vec::len),
                    tr.present_index
                ),
            });
        }
        t_s.extend_from_slice(&tr.t_s);
        x.extend(tr.xy_m.iter().map(|p| p[0]));
        y.extend(tr.xy_m.iter().map(|p| p[1]));
        match &tr.heading_rad {
            Some(h) => heading.extend(h.iter().copied().map(Some)),
            None => heading.extend(std::iter::repeat_n(None, n)),
        }
        lengths.push(n);
    }
    let values = StructArray::try_new(
        sample_fields(),
        vec![
            Arc::new(Float64Array::from(t_s)),
            Arc::new(Float64Array::from(x)),
            Arc::new(Float64Array::from(y)),
            Arc::new(Float64Array::from(heading)),
        ],
        None,
    )?;
    let list = ListArray::try_new(
        Arc::new(Field::new(ELEMENT, sample_type(), false)),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(values),
        None,
    )?;
    let lane = |f: fn(&LaneContext) -> f64| -> ArrayRef {
        Arc::new(
            trajectories
                .iter()
                .map(|t| t.lane.as_ref().map(f))
                .collect::<Float64Array>(),
        )
    };
    Ok(vec![
        Arc::new(Int64Array::from_iter_values(
            trajectories
                .iter()
                .map(|t| i64::try_from(t.present_index).unwrap_or(i64::MAX)),
        )),
        lane(|l| l.heading_rad),
        lane(|l| l.offset_m),
        lane(|l| l.ahead_heading_rad),
        Arc::new(list),
    ])
}

/// The complex-field columns of a batch (found by name, whatever other columns it has),
/// decoded row by row with [`Columns::get`].
#[derive(Debug)]
pub struct Columns {
    present_index: ArrayRef,
    lane: [ArrayRef; 3],
    offsets: OffsetBuffer<i32>,
    t_s: ArrayRef,
    x_m: ArrayRef,
    y_m: ArrayRef,
    heading_rad: ArrayRef,
    list_nulls: Option<deltalake::arrow::buffer::NullBuffer>,
}

impl Columns {
    /// Finds the columns of [`columns`] in `batch` (types as stored, or what DataFusion hands
    /// back for them: numeric children are cast to Float64).
    ///
    /// # Errors
    /// [`Error::Trajectory`] (naming `context`) when a column is missing or not of that shape.
    pub fn of(batch: &RecordBatch, context: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::Trajectory {
            clip_id: context.to_owned(),
            reason,
        };
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| bad(format!("column `{name}` missing")))
        };
        let f64_of = |a: &ArrayRef, name: &str| {
            deltalake::arrow::compute::cast(a, &DataType::Float64)
                .map_err(|e| bad(format!("`{name}` is not numeric: {e}")))
        };
        let present_index =
            deltalake::arrow::compute::cast(&column(SCALAR_COLUMNS[0])?, &DataType::Int64)
                .map_err(|e| bad(format!("`present_index` is not an integer: {e}")))?;
        let lane = [
            f64_of(&column(SCALAR_COLUMNS[1])?, SCALAR_COLUMNS[1])?,
            f64_of(&column(SCALAR_COLUMNS[2])?, SCALAR_COLUMNS[2])?,
            f64_of(&column(SCALAR_COLUMNS[3])?, SCALAR_COLUMNS[3])?,
        ];
        let list = column(COLUMN)?;
        let list = list
            .as_list_opt::<i32>()
            .ok_or_else(|| bad(format!("`{COLUMN}` is {}, not a list", list.data_type())))?;
        let values = list
            .values()
            .as_struct_opt()
            .ok_or_else(|| bad(format!("`{COLUMN}` elements are not structs")))?;
        let child = |name: &str| {
            values
                .column_by_name(name)
                .ok_or_else(|| bad(format!("`{COLUMN}` elements have no `{name}`")))
                .and_then(|c| f64_of(c, name))
        };
        Ok(Self {
            present_index,
            lane,
            offsets: list.offsets().clone(),
            t_s: child("t_s")?,
            x_m: child("x_m")?,
            y_m: child("y_m")?,
            heading_rad: child("heading_rad")?,
            list_nulls: list.nulls().cloned(),
        })
    }

    /// The trajectory of row `i`, labelled with `clip_id`, `object_type` and `category`.
    ///
    /// # Errors
    /// [`Error::Trajectory`] for a null list, a present index beyond the samples, a null
    /// coordinate or time, or lane columns that are only partly set.
    pub fn get(
        &self,
        i: usize,
        clip_id: &str,
        object_type: &str,
        category: &str,
    ) -> Result<Trajectory, Error> {
        let bad = |reason: String| Error::Trajectory {
            clip_id: clip_id.to_owned(),
            reason,
        };
        if self.list_nulls.as_ref().is_some_and(|n| n.is_null(i)) {
            return Err(bad("the trajectory is null".to_owned()));
        }
        let (start, end) = (
            usize::try_from(self.offsets[i]).unwrap_or(0),
            usize::try_from(self.offsets[i + 1]).unwrap_or(0),
        );
        let (t, x, y, h) = (
            self.t_s.as_primitive::<Float64Type>(),
            self.x_m.as_primitive::<Float64Type>(),
            self.y_m.as_primitive::<Float64Type>(),
            self.heading_rad.as_primitive::<Float64Type>(),
        );
        let mut t_s = Vec::with_capacity(end - start);
        let mut xy_m = Vec::with_capacity(end - start);
        let mut heading = Vec::with_capacity(end - start);
        let mut has_heading = true;
        for k in start..end {
            if t.is_null(k) || x.is_null(k) || y.is_null(k) {
                return Err(bad(format!(
                    "sample {} has a null time or position",
                    k - start
                )));
            }
            t_s.push(t.value(k));
            xy_m.push([x.value(k), y.value(k)]);
            if h.is_null(k) {
                has_heading = false;
            } else {
                heading.push(h.value(k));
            }
        }
        let p = self.present_index.as_primitive::<Int64Type>();
        let present_index = usize::try_from(p.value(i))
            .ok()
            .filter(|&p| p < xy_m.len())
            .ok_or_else(|| {
                bad(format!(
                    "present_index {} beyond {} samples",
                    p.value(i),
                    xy_m.len()
                ))
            })?;
        let lane_at = |k: usize| {
            let a = self.lane[k].as_primitive::<Float64Type>();
            (!a.is_null(i)).then(|| a.value(i))
        };
        let lane = match (lane_at(0), lane_at(1), lane_at(2)) {
            (Some(heading_rad), Some(offset_m), Some(ahead_heading_rad)) => Some(LaneContext {
                heading_rad,
                offset_m,
                ahead_heading_rad,
            }),
            (None, None, None) => None,
            _ => return Err(bad("lane columns are only partly set".to_owned())),
        };
        Ok(Trajectory {
            clip_id: clip_id.to_owned(),
            object_type: object_type.to_owned(),
            category: category.to_owned(),
            present_index,
            t_s,
            xy_m,
            heading_rad: has_heading.then_some(heading),
            lane,
        })
    }
}

/// Stable bytes of `t` (labels, present index, every sample's bits, lane), for fingerprints.
pub fn canonical_bytes(t: &Trajectory) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + t.t_s.len() * 32);
    for s in [&t.clip_id, &t.object_type, &t.category] {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&(t.present_index as u64).to_le_bytes());
    out.extend_from_slice(&(t.t_s.len() as u64).to_le_bytes());
    for (k, (time, p)) in t.t_s.iter().zip(&t.xy_m).enumerate() {
        for v in [*time, p[0], p[1]] {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        match t.heading_rad.as_ref().and_then(|h| h.get(k)) {
            Some(h) => {
                out.push(1);
                out.extend_from_slice(&h.to_bits().to_le_bytes());
            }
            None => out.push(0),
        }
    }
    match &t.lane {
        Some(l) => {
            out.push(1);
            for v in [l.heading_rad, l.offset_m, l.ahead_heading_rad] {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        None => out.push(0),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::Schema;

    #[test]
    fn round_trips_with_and_without_heading_and_lane() {
        let lane = Some(LaneContext {
            heading_rad: 0.1 + 0.2,
            offset_m: -1.0 / 3.0,
            ahead_heading_rad: -3.0,
        });
        let make = |heading: Option<Vec<f64>>, lane, n: usize| Trajectory {
            clip_id: format!("a:b:c:{n}"),
            object_type: "vehicle".to_owned(),
            category: "cruising".to_owned(),
            present_index: 1,
            t_s: (0..n).map(|i| i as f64 * 0.1 - 0.1).collect(),
            xy_m: (0..n).map(|i| [i as f64, 1.0 + i as f64]).collect(),
            heading_rad: heading,
            lane,
        };
        let ts = [
            make(None, None, 3),
            make(Some(vec![0.1, 0.2, 0.3, 0.4]), lane, 4),
        ];
        let refs: Vec<&Trajectory> = ts.iter().collect();
        let schema = Arc::new(Schema::new(columns()));
        let batch = RecordBatch::try_new(schema, to_columns(&refs).unwrap()).unwrap();
        let cols = Columns::of(&batch, "test").unwrap();
        for (i, t) in ts.iter().enumerate() {
            assert_eq!(
                &cols
                    .get(i, &t.clip_id, &t.object_type, &t.category)
                    .unwrap(),
                t
            );
        }
        assert_ne!(canonical_bytes(&ts[0]), canonical_bytes(&ts[1]));
        let mut short = ts[0].clone();
        short.xy_m.pop();
        assert!(matches!(
            to_columns(&[&short]),
            Err(Error::Trajectory { .. })
        ));
        assert!(matches!(
            Columns::of(&batch.project(&[0, 1, 2, 3]).unwrap(), "x"),
            Err(Error::Trajectory { .. })
        ));
    }
}
