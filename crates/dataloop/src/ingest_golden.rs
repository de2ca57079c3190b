//! Golden test of the ingest cut: every bundled log is read, cut into clips (with its HD map)
//! and turned into warehouse and OLAP rows; a digest over every cell (floats by their bits) must
//! equal the one recorded before the ingest path was optimised, so a faster reader, cutter or
//! row builder stores exactly what the earlier one stored.

use std::path::PathBuf;

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Float64Type, Int64Type};
use sha2::{Digest, Sha256};

use crate::clip::{self, WindowSpec};
use crate::hd_map::{self, HdMap};
use crate::reader;
use crate::rows::{simple_batch, warehouse_batch};

/// Digest of the rows of the bundled logs, recorded with the code before the ingest
/// optimisations of issue 13 item 2.
const GOLDEN: &str = "427f1d89651cd621883f9702800f359887e080851a2f74660ebcca527b665652";

fn hash_array(h: &mut Sha256, a: &dyn Array) {
    h.update(format!("{:?}|{}|", a.data_type(), a.len()).as_bytes());
    for i in 0..a.len() {
        h.update([u8::from(a.is_valid(i))]);
    }
    match a.data_type() {
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            for i in 0..s.len() {
                h.update(s.value(i).as_bytes());
                h.update([0]);
            }
        }
        DataType::Float64 => {
            for v in a.as_primitive::<Float64Type>().values() {
                h.update(v.to_bits().to_le_bytes());
            }
        }
        DataType::Int64 => {
            for v in a.as_primitive::<Int64Type>().values() {
                h.update(v.to_le_bytes());
            }
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            for o in l.value_offsets() {
                h.update(o.to_le_bytes());
            }
            hash_array(h, l.values().as_ref());
        }
        DataType::Struct(_) => {
            for c in a.as_struct().columns() {
                hash_array(h, c.as_ref());
            }
        }
        other => panic!("no digest for {other:?}"),
    }
}

fn hash_batch(h: &mut Sha256, b: &RecordBatch) {
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        h.update(f.name().as_bytes());
        hash_array(h, c.as_ref());
    }
}

#[test]
fn bundled_logs_cut_to_the_recorded_rows() {
    let input = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/driving"));
    let mut h = Sha256::new();
    let mut clips_total = 0;
    for location in reader::discover(&input).unwrap() {
        let log = reader::read_log(&location);
        let map = hd_map::find(&location.path).map(|p| HdMap::load(&p).unwrap());
        let clips = clip::extract(&log, WindowSpec::default(), map.as_ref());
        clips_total += clips.len();
        h.update(log.log_id.as_bytes());
        h.update(format!("{:?}", log.rejections).as_bytes());
        hash_batch(
            &mut h,
            &warehouse_batch(&clips, "batch", "2026-01-01").unwrap(),
        );
        let simple: Vec<&clip::SimpleFields> = clips.iter().map(|c| &c.simple).collect();
        hash_batch(&mut h, &simple_batch(&simple, "batch").unwrap());
    }
    let digest = format!("{:x}", h.finalize());
    assert_eq!((clips_total, digest.as_str()), (2430, GOLDEN));
}
