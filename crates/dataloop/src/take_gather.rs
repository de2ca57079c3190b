//! The gather that puts a take's rows in `clip_id` order ([`crate::take::assemble`]).
//!
//! Arrow's `interleave` gathers a `List` column value by value: for the take's `trajectory`
//! (`List<Struct<4 x Float64>>`, 51 samples per row) that is one `(batch, index)` pair per
//! sample and child. [`gather`] copies each row's samples as one contiguous slice per child
//! instead, and falls back to `interleave` for every other layout (nulls in the list or its
//! struct, children that are not `Float64`).

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBufferBuilder, Float64Array, ListArray, RecordBatch,
    StructArray,
};
use deltalake::arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use deltalake::arrow::compute::interleave;
use deltalake::arrow::datatypes::{DataType, Float64Type};

use crate::error::Result;

/// The rows `order` (`(batch, row)` pairs) of `batches` (one schema) as one batch.
///
/// # Errors
/// [`crate::error::Error::Arrow`] when the batches' columns do not match.
pub(crate) fn gather(batches: &[&RecordBatch], order: &[(usize, usize)]) -> Result<RecordBatch> {
    let Some(first) = batches.first() else {
        return Err(deltalake::arrow::error::ArrowError::InvalidArgumentError(
            "no batch to gather from".into(),
        )
        .into());
    };
    let schema = first.schema();
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            match gather_float_struct_lists(&arrays, order) {
                Some(list) => Ok(list),
                None => Ok(interleave(&arrays, order)?),
            }
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// `order` of `arrays` when they are `List<Struct<Float64...>>` without list or struct nulls,
/// by one slice copy per row and child; `None` for any other layout.
fn gather_float_struct_lists(arrays: &[&dyn Array], order: &[(usize, usize)]) -> Option<ArrayRef> {
    let lists: Vec<&ListArray> = arrays
        .iter()
        .map(|a| a.as_list_opt::<i32>())
        .collect::<Option<_>>()?;
    let structs: Vec<&StructArray> = lists
        .iter()
        .map(|l| l.values().as_struct_opt())
        .collect::<Option<_>>()?;
    let first = structs.first()?;
    let children = first.num_columns();
    if lists.iter().any(|l| l.null_count() > 0)
        || structs
            .iter()
            .any(|s| s.null_count() > 0 || s.num_columns() != children)
    {
        return None;
    }
    let values: Vec<Vec<&Float64Array>> = (0..children)
        .map(|c| {
            structs
                .iter()
                .map(|s| s.column(c).as_primitive_opt::<Float64Type>())
                .collect::<Option<Vec<_>>>()
        })
        .collect::<Option<_>>()?;
    let mut offsets = Vec::with_capacity(order.len() + 1);
    offsets.push(0i32);
    let mut total = 0usize;
    for &(k, r) in order {
        let o = lists.get(k)?.value_offsets();
        total += usize::try_from(o.get(r + 1)? - o.get(r)?).ok()?;
        offsets.push(i32::try_from(total).ok()?);
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(children);
    for child in &values {
        let mut out: Vec<f64> = Vec::with_capacity(total);
        let has_nulls = child.iter().any(|a| a.null_count() > 0);
        let mut valid = has_nulls.then(|| BooleanBufferBuilder::new(total));
        for &(k, r) in order {
            let o = lists[k].value_offsets();
            let (start, end) = (usize::try_from(o[r]).ok()?, usize::try_from(o[r + 1]).ok()?);
            let a = child[k];
            out.extend_from_slice(a.values().get(start..end)?);
            if let Some(v) = valid.as_mut() {
                match a.nulls() {
                    Some(n) => v.append_buffer(&n.inner().slice(start, end - start)),
                    None => v.append_n(end - start, true),
                }
            }
        }
        let nulls = valid.map(|mut v| NullBuffer::new(v.finish()));
        columns.push(Arc::new(Float64Array::new(ScalarBuffer::from(out), nulls)));
    }
    let DataType::Struct(fields) = first.data_type() else {
        return None;
    };
    let items = StructArray::try_new(fields.clone(), columns, None).ok()?;
    let DataType::List(item) = lists.first()?.data_type() else {
        return None;
    };
    let list = ListArray::try_new(
        Arc::clone(item),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(items),
        None,
    )
    .ok()?;
    Some(Arc::new(list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::compute::interleave_record_batch;
    use deltalake::arrow::datatypes::{Field, Fields, Schema};

    /// A batch of `rows` trajectories (row `i` has `i % 3` samples), ids `p0`, `p1`, ...;
    /// `heading` is null on every other sample.
    fn batch(prefix: &str, rows: usize) -> RecordBatch {
        let fields = Fields::from(vec![
            Field::new("t", DataType::Float64, false),
            Field::new("h", DataType::Float64, true),
        ]);
        let lens: Vec<usize> = (0..rows).map(|i| i % 3).collect();
        let n: usize = lens.iter().sum();
        let t = Float64Array::from_iter_values((0..n).map(|v| v as f64));
        let h: Float64Array = (0..n)
            .map(|v| (v % 2 == 0).then_some(-(v as f64)))
            .collect();
        let items = StructArray::new(fields.clone(), vec![Arc::new(t), Arc::new(h)], None);
        let item = Arc::new(Field::new("element", DataType::Struct(fields), false));
        let list = ListArray::new(
            Arc::clone(&item),
            OffsetBuffer::from_lengths(lens),
            Arc::new(items),
            None,
        );
        let ids = deltalake::arrow::array::StringArray::from_iter_values(
            (0..rows).map(|i| format!("{prefix}{i}")),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("trajectory", DataType::List(item), false),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(list)]).unwrap_or_else(|e| {
            panic!("test batch: {e}");
        })
    }

    #[test]
    fn gather_equals_interleave_on_sliced_lists_with_null_children() {
        let a = batch("a", 7);
        let b = batch("b", 9).slice(2, 6);
        let order = [(1, 3), (0, 0), (0, 6), (1, 0), (0, 2), (1, 5), (0, 4)];
        let want = interleave_record_batch(&[&a, &b], &order).unwrap_or_else(|e| panic!("{e}"));
        let got = gather(&[&a, &b], &order).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want);
        let lists = [a.column(1).as_ref(), b.column(1).as_ref()];
        assert!(gather_float_struct_lists(&lists, &order).is_some());
        let list = got.column(1).as_list::<i32>();
        assert!(list.values().as_struct().column(1).null_count() > 0);
    }

    #[test]
    fn gather_falls_back_for_other_layouts() {
        let a = batch("a", 4);
        let ids = a.project(&[0]).unwrap_or_else(|e| panic!("{e}"));
        let order = [(0, 3), (0, 1)];
        let got = gather(&[&ids], &order).unwrap_or_else(|e| panic!("{e}"));
        let want = interleave_record_batch(&[&ids], &order).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want);
        assert!(gather(&[], &order).is_err());
    }
}
