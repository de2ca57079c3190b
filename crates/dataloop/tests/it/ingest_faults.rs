//! Bad input loses nothing else: a corrupt file beside good ones is rejected with its file and
//! reason while the rest of the batch is committed; an ingest killed before its commit leaves the
//! previous table version intact.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{bin, dataloop_ok, last_json, python, sql_ids};

fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs_err::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn corrupt_file_is_rejected_and_the_rest_is_kept() {
    let dir = testkit::tempdir();
    let logs = dir.path().join("logs");
    // Good: the comma2k19 segment and the AV2 scenario. Bad: the sensor log's annotations cut in
    // half (its pose file is fine, so the ego track is kept).
    copy_dir(
        &testkit::data_path("driving/comma2k19_segment"),
        &logs.join("comma"),
    );
    fs_err::create_dir_all(logs.join("scenario")).unwrap();
    fs_err::copy(
        testkit::data_path(
            "driving/av2_motion_forecasting/scenario_0a1e6f0a-1817-4a98-b02e-db8c9327d151.parquet",
        ),
        logs.join("scenario/scenario_0a1e6f0a-1817-4a98-b02e-db8c9327d151.parquet"),
    )
    .unwrap();
    let sensor = logs.join("sensor_broken");
    copy_dir(
        &testkit::data_path("driving/av2_sensor_log_7fab2350"),
        &sensor,
    );
    let bytes = fs_err::read(sensor.join("annotations.feather")).unwrap();
    fs_err::write(
        sensor.join("annotations.feather"),
        &bytes[..bytes.len() / 3],
    )
    .unwrap();

    let data = dir.path().join("data");
    let report = last_json(&dataloop_ok(
        &data,
        &["ingest", "--input", logs.to_str().unwrap(), "--json"],
        2,
    ));
    let rejections = report["rejections"].as_array().unwrap();
    assert_eq!(rejections.len(), 1, "{report}");
    let r = &rejections[0];
    assert!(
        r["file"]
            .as_str()
            .unwrap()
            .ends_with("sensor_broken/annotations.feather"),
        "{r}"
    );
    assert!(r["row"].is_null(), "whole file: {r}");
    assert!(r["reason"].as_str().unwrap().contains("Arrow IPC"), "{r}");
    assert_eq!(report["warehouse_version"], 1);

    let per_source = last_json(&dataloop_ok(
        &data,
        &[
            "sql",
            "SELECT source, count(*) AS n FROM olap GROUP BY source ORDER BY source",
            "--json",
        ],
        0,
    ));
    let sources: Vec<&str> = per_source
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        ["av2_motion", "av2_sensor", "comma2k19"],
        "{per_source}"
    );
    // Only the ego vehicle survives from the broken sensor log.
    let sensor_tracks = sql_ids(
        &data,
        "SELECT DISTINCT track_id AS clip_id FROM olap WHERE source = 'av2_sensor'",
    );
    assert_eq!(sensor_tracks, ["ego"]);
}

#[test]
fn bad_rows_are_rejected_with_their_row_number() {
    let dir = testkit::tempdir();
    let logs = dir.path().join("comma");
    copy_dir(&testkit::data_path("driving/comma2k19_segment"), &logs);
    // Overwrite ECEF position row 5 with NaN (header is 128 bytes, rows are 3 f64).
    let path = logs.join("global_pose/frame_positions");
    let mut bytes = fs_err::read(&path).unwrap();
    let at = 128 + 5 * 24;
    bytes[at..at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    fs_err::write(&path, bytes).unwrap();
    let data = dir.path().join("data");
    let report = last_json(&dataloop_ok(
        &data,
        &["ingest", "--input", logs.to_str().unwrap(), "--json"],
        2,
    ));
    let rejections = report["rejections"].as_array().unwrap();
    assert_eq!(rejections.len(), 1, "{report}");
    assert_eq!(rejections[0]["row"], 5);
    assert!(
        rejections[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("frame_positions")
    );
    // The 1-sample hole is bridged by resampling: all windows are kept.
    assert!(report["clips"].as_u64().unwrap() >= 50, "{report}");
}

#[test]
fn interrupted_ingest_leaves_the_previous_version() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    let first = last_json(&dataloop_ok(
        &data,
        &[
            "ingest",
            "--input",
            "data/driving/av2_motion_forecasting",
            "--json",
        ],
        0,
    ));
    assert_eq!(first["warehouse_version"], 1);
    let rows_before = sql_ids(&data, "SELECT clip_id FROM warehouse");

    // Second batch: killed (SIGKILL) after its data files are written, before the commit.
    let mut peer = testkit::Peer::new(bin().to_str().unwrap())
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "ingest",
            "--input",
            testkit::data_path("driving/av2_sensor_log_7fab2350")
                .to_str()
                .unwrap(),
            "--pause-before-commit",
        ])
        .ready(testkit::Ready::Log("pausing before commit".to_owned()))
        .deadline(Duration::from_secs(120))
        .start();
    peer.child().kill();
    drop(peer);

    let parquet_files = walk(&data.join("warehouse"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count();
    assert!(
        parquet_files >= 2,
        "the killed batch had written its data files ({parquet_files})"
    );
    assert_eq!(sql_ids(&data, "SELECT clip_id FROM warehouse"), rows_before);
    let out = Command::new(python())
        .arg("-c")
        .arg("import sys; from deltalake import DeltaTable; dt = DeltaTable(sys.argv[1]); print(dt.version(), len(dt.file_uris()))")
        .arg(data.join("warehouse"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    assert_eq!(
        parts.next(),
        Some("1"),
        "table version after the kill: {text}"
    );
    let live_files: usize = parts.next().unwrap().parse().unwrap();
    assert!(
        live_files < parquet_files,
        "orphan files are not part of the table"
    );

    // The next ingest commits normally on top of version 1.
    let next = last_json(&dataloop_ok(
        &data,
        &[
            "ingest",
            "--input",
            "data/driving/av2_sensor_log_7fab2350",
            "--json",
        ],
        0,
    ));
    assert_eq!(next["warehouse_version"], 2);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn olap_store_is_rebuilt_from_committed_warehouse_batches() {
    // A crash between the Delta commit and the OLAP write leaves a committed batch without OLAP
    // rows; the next ingest restores them from the warehouse.
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    dataloop_ok(
        &data,
        &[
            "ingest",
            "--input",
            "data/driving/comma2k19_segment",
            "--json",
        ],
        0,
    );
    let committed = sql_ids(&data, "SELECT clip_id FROM warehouse");
    fs_err::remove_dir_all(data.join("olap")).unwrap();
    let report = last_json(&dataloop_ok(
        &data,
        &[
            "ingest",
            "--input",
            "data/driving/av2_motion_forecasting",
            "--json",
        ],
        0,
    ));
    assert_eq!(
        report["olap_rows"].as_u64().unwrap() as usize,
        committed.len() + report["clips"].as_u64().unwrap() as usize
    );
    assert_eq!(
        sql_ids(&data, "SELECT clip_id FROM olap WHERE source = 'comma2k19'"),
        committed
    );
}
