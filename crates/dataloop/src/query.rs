//! Ad-hoc queries (issue item 4; seed ¶33, ¶58): DataFusion SQL over both stores, the
//! Delta table as `warehouse` and the Parquet OLAP table as `olap`, printed as a text table or
//! as JSON rows.

use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::prelude::SessionContext;
use serde_json::{Map, Number, Value};

use crate::error::Result;
use crate::olap::{Olap, session};
use crate::warehouse::Warehouse;

/// A session with `warehouse` and `olap` registered.
///
/// # Errors
/// When a store cannot be registered.
pub async fn stores_session(warehouse: &Warehouse, olap: &Olap) -> Result<SessionContext> {
    let ctx = session();
    warehouse.register(&ctx).await?;
    olap.register(&ctx).await?;
    Ok(ctx)
}

/// Runs `sql` and collects the result.
///
/// # Errors
/// [`crate::Error::Query`] for syntax, planning and execution errors.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Rows as JSON objects. Numbers stay numbers, binary values become `{"bytes": n}`, lists
/// become arrays and structs objects (so `trajectory` is an array of
/// `{"t_s", "x_m", "y_m", "heading_rad"}` objects), other types use Arrow's display form.
pub fn to_json_rows(batches: &[RecordBatch]) -> Vec<Value> {
    let mut rows = Vec::new();
    let options = FormatOptions::default().with_null("null");
    for batch in batches {
        let schema = batch.schema();
        let formatters: Vec<Option<ArrayFormatter<'_>>> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        for i in 0..batch.num_rows() {
            let mut row = Map::new();
            for (j, field) in schema.fields().iter().enumerate() {
                let col = batch.column(j);
                let value = if col.is_null(i) {
                    Value::Null
                } else {
                    cell(col.as_ref(), field.data_type(), i, formatters[j].as_ref())
                };
                row.insert(field.name().clone(), value);
            }
            rows.push(Value::Object(row));
        }
    }
    rows
}

fn cell(col: &dyn Array, ty: &DataType, i: usize, f: Option<&ArrayFormatter<'_>>) -> Value {
    use deltalake::arrow::array::AsArray;
    use deltalake::arrow::datatypes::{
        Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type,
    };
    match ty {
        DataType::Float64 => num_f(col.as_primitive::<Float64Type>().value(i)),
        DataType::Float32 => num_f(f64::from(col.as_primitive::<Float32Type>().value(i))),
        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => Value::from(col.as_primitive::<Int32Type>().value(i)),
        DataType::UInt64 => Value::from(col.as_primitive::<UInt64Type>().value(i)),
        DataType::UInt32 => Value::from(col.as_primitive::<UInt32Type>().value(i)),
        DataType::Boolean => Value::from(col.as_boolean().value(i)),
        DataType::Binary => serde_json::json!({ "bytes": col.as_binary::<i32>().value(i).len() }),
        DataType::LargeBinary => {
            serde_json::json!({ "bytes": col.as_binary::<i64>().value(i).len() })
        }
        DataType::BinaryView => serde_json::json!({ "bytes": col.as_binary_view().value(i).len() }),
        DataType::List(_) => elements(col.as_list::<i32>().value(i).as_ref()),
        DataType::LargeList(_) => elements(col.as_list::<i64>().value(i).as_ref()),
        DataType::Struct(fields) => {
            let s = col.as_struct();
            Value::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(field, child)| (field.name().clone(), nested(child.as_ref(), i)))
                    .collect(),
            )
        }
        _ => Value::String(f.map_or_else(String::new, |f| f.value(i).to_string())),
    }
}

/// The values of `values` (a list's elements) as a JSON array.
fn elements(values: &dyn Array) -> Value {
    Value::Array((0..values.len()).map(|j| nested(values, j)).collect())
}

/// Element `i` of a nested array (null, or a [`cell`] with its own formatter when needed).
fn nested(col: &dyn Array, i: usize) -> Value {
    if col.is_null(i) {
        return Value::Null;
    }
    let options = FormatOptions::default().with_null("null");
    let formatter = match col.data_type() {
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::Struct(_)
        | DataType::Float64
        | DataType::Int64 => None,
        _ => ArrayFormatter::try_new(col, &options).ok(),
    };
    cell(col, col.data_type(), i, formatter.as_ref())
}

fn num_f(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Rows as an aligned text table (binary cells shown as `<n bytes>`).
pub fn to_table(batches: &[RecordBatch]) -> String {
    let Some(first) = batches.first() else {
        return "(no rows)\n".to_owned();
    };
    let schema = first.schema();
    let headers: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for row in to_json_rows(batches) {
        let Value::Object(map) = row else { continue };
        rows.push(
            headers
                .iter()
                .map(|h| match map.get(h) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Object(o)) if o.contains_key("bytes") => {
                        format!("<{} bytes>", o["bytes"])
                    }
                    Some(Value::Array(a)) => format!("<{} items>", a.len()),
                    Some(Value::Number(n)) => n
                        .as_f64()
                        .filter(|_| n.is_f64())
                        .map_or_else(|| n.to_string(), |f| format!("{f:.3}")),
                    Some(v) => v.to_string(),
                    None => String::new(),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..headers.len())
        .map(|j| {
            rows.iter()
                .map(|r| r[j].chars().count())
                .chain([headers[j].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |\n", parts.join(" | "))
    };
    let sep = format!(
        "+{}+\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let mut out = sep.clone();
    out.push_str(&line(&headers));
    out.push_str(&sep);
    for r in &rows {
        out.push_str(&line(r));
    }
    out.push_str(&sep);
    out.push_str(&format!("{} row(s)\n", rows.len()));
    out
}
