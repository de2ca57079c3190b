//! The warehouse is a real Delta table: the Python `deltalake` package (an independent reader,
//! installed from PyPI by scripts/setup) finds the same rows, partitioning, version and
//! trajectory samples.

use std::process::Command;

use crate::{dataloop_ok, last_json, python, sql_ids};

#[test]
fn python_deltalake_reads_the_same_rows() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    let report = last_json(&dataloop_ok(
        &data,
        &["ingest", "--input", "data/driving", "--json"],
        0,
    ));
    let clips = report["clips"].as_u64().unwrap();
    assert!(clips > 100, "{report}");
    assert_eq!(report["warehouse_version"], 1);
    let ours = sql_ids(&data, "SELECT clip_id FROM warehouse");
    assert_eq!(ours.len() as u64, clips);

    let script = r#"
import json, sys
from deltalake import DeltaTable, QueryBuilder
dt = DeltaTable(sys.argv[1])
t = QueryBuilder().register("t", dt).execute("SELECT clip_id, trajectory, ingest_date FROM t ORDER BY clip_id").read_all()
print(json.dumps({
    "version": dt.version(),
    "partitions": dt.metadata().partition_columns,
    "ids": t.column("clip_id").to_pylist(),
    "samples": [[[s["t_s"], s["x_m"], s["y_m"]] for s in b] for b in t.column("trajectory").to_pylist()],
    "dates": sorted(set(t.column("ingest_date").to_pylist())),
}))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(data.join("warehouse"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = last_json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(theirs["version"], 1);
    assert_eq!(theirs["partitions"], serde_json::json!(["ingest_date"]));
    let their_ids: Vec<String> = theirs["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(their_ids, ours);
    // The complex field: the same samples per clip as our own reader sees.
    let ours_rows = last_json(&dataloop_ok(
        &data,
        &[
            "sql",
            "SELECT clip_id, trajectory FROM warehouse ORDER BY clip_id",
            "--json",
        ],
        0,
    ));
    let ours_samples: Vec<Vec<[f64; 3]>> = ours_rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["trajectory"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| ["t_s", "x_m", "y_m"].map(|k| s[k].as_f64().unwrap()))
                .collect()
        })
        .collect();
    let their_samples: Vec<Vec<[f64; 3]>> = theirs["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t.as_array()
                .unwrap()
                .iter()
                .map(|s| [0, 1, 2].map(|k| s[k].as_f64().unwrap()))
                .collect()
        })
        .collect();
    assert_eq!(their_samples, ours_samples);
    assert!(
        their_samples.iter().all(|t| t.len() == 51),
        "trajectories are present"
    );
    assert_eq!(theirs["dates"].as_array().unwrap().len(), 1);
}
