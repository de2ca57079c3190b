//! The complex field is native Arrow/Parquet (issue 13 item 7): DuckDB (an independent reader
//! from PyPI, installed by scripts/setup) reads the warehouse's Parquet data files written by
//! the real ingest and finds `trajectory` as a LIST of STRUCT with typed children, with the same
//! sample values `dataloop sql` returns for the same clips.

use std::process::Command;

use serde_json::Value;

use crate::{dataloop_ok, last_json, python};

/// `[t_s, x_m, y_m, heading_rad]` of every sample of a JSON trajectory (an array of objects).
fn samples(v: &Value) -> Vec<[Option<f64>; 4]> {
    v.as_array()
        .unwrap_or_else(|| panic!("trajectory is not an array: {v}"))
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_f64();
            [f("t_s"), f("x_m"), f("y_m"), f("heading_rad")]
        })
        .collect()
}

#[test]
fn duckdb_reads_trajectories_as_list_of_struct() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    dataloop_ok(&data, &["ingest", "--input", "data/driving", "--json"], 0);

    // A few clips of every source: the first and last id of each, by clip id.
    let picked = last_json(&dataloop_ok(
        &data,
        &[
            "sql",
            "SELECT min(clip_id) AS a, max(clip_id) AS b FROM warehouse GROUP BY source ORDER BY source",
            "--json",
        ],
        0,
    ));
    let mut ids: Vec<String> = picked
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| [r["a"].as_str().unwrap(), r["b"].as_str().unwrap()])
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids.dedup();
    assert!(ids.len() >= 4, "{picked}");
    let list = ids
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ");

    let script = r#"
import duckdb, json, sys
files, ids = sys.argv[1] + "/*/*.parquet", sys.argv[2]
con = duckdb.connect()
types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{files}')").fetchall()}
rows = con.execute(
    f"SELECT clip_id, trajectory, present_index, trajectory[present_index + 1].t_s AS present_t "
    f"FROM read_parquet('{files}') WHERE clip_id IN ({ids}) ORDER BY clip_id").fetchall()
lengths = con.execute(f"SELECT min(len(trajectory)), max(len(trajectory)), count(*) FROM read_parquet('{files}')").fetchone()
print(json.dumps({
    "types": types,
    "rows": [{"clip_id": r[0], "trajectory": r[1], "present_index": r[2], "present_t": r[3]} for r in rows],
    "lengths": list(lengths),
}))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(data.join("warehouse"))
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck = last_json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        duck["types"]["trajectory"],
        "STRUCT(t_s DOUBLE, x_m DOUBLE, y_m DOUBLE, heading_rad DOUBLE)[]",
        "{}",
        duck["types"]
    );
    assert_eq!(duck["types"]["present_index"], "BIGINT");
    assert_eq!(duck["types"]["lane_offset_m"], "DOUBLE");
    // 5 s windows at 10 Hz: 51 samples each, in every row.
    assert_eq!(duck["lengths"][0], 51, "{}", duck["lengths"]);
    assert_eq!(duck["lengths"][1], 51, "{}", duck["lengths"]);

    let ours = last_json(&dataloop_ok(
        &data,
        &[
            "sql",
            &format!(
                "SELECT clip_id, trajectory, present_index FROM warehouse WHERE clip_id IN ({list}) ORDER BY clip_id"
            ),
            "--json",
        ],
        0,
    ));
    let (duck_rows, our_rows) = (duck["rows"].as_array().unwrap(), ours.as_array().unwrap());
    assert_eq!(duck_rows.len(), ids.len());
    assert_eq!(our_rows.len(), ids.len());
    let mut with_heading = 0;
    for (d, o) in duck_rows.iter().zip(our_rows) {
        assert_eq!(d["clip_id"], o["clip_id"]);
        assert_eq!(d["present_index"], o["present_index"]);
        let (ds, os) = (samples(&d["trajectory"]), samples(&o["trajectory"]));
        assert_eq!(ds.len(), 51);
        assert_eq!(ds, os, "samples of {} differ", d["clip_id"]);
        assert!(
            ds.iter()
                .all(|s| s[0].is_some() && s[1].is_some() && s[2].is_some())
        );
        // The present sample is at t = 0 (DuckDB lists are 1-based).
        assert_eq!(d["present_t"].as_f64(), Some(0.0), "{d}");
        with_heading += usize::from(ds.iter().all(|s| s[3].is_some()));
    }
    assert!(with_heading > 0, "some source records headings");
}
