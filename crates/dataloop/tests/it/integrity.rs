//! Integrity (issue 13 item 5): re-ingesting a log adds no rows, concurrent triggers in
//! separate processes get distinct versions and none is lost, a corrupt champion is an error,
//! and operations report the warehouse version they read.

use std::process::{Command, Stdio};

use crate::{bin, dataloop, dataloop_ok, last_json, sql_ids};

#[test]
fn reingesting_a_log_adds_no_rows() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    let first = last_json(&dataloop_ok(
        &data,
        &["ingest", "--input", "data/driving", "--json"],
        0,
    ));
    let clips = first["clips"].as_u64().unwrap();
    assert!(clips > 100, "{first}");
    assert_eq!(first["duplicates"], 0, "{first}");
    assert_eq!(first["read_version"], 0, "{first}");
    assert_eq!(first["warehouse_version"], 1, "{first}");

    // The same logs again, and one of them given twice in one batch: nothing new.
    for inputs in [vec!["data/driving"], vec!["data/driving/comma2k19_segment"]] {
        let mut args = vec!["ingest"];
        for i in &inputs {
            args.extend(["--input", i]);
        }
        args.push("--json");
        let again = last_json(&dataloop_ok(&data, &args, 0));
        assert_eq!(again["clips"], 0, "{again}");
        assert!(again["duplicates"].as_u64().unwrap() > 0, "{again}");
        assert_eq!(again["read_version"], 1, "{again}");
        assert_eq!(again["warehouse_version"], 1, "no commit: {again}");
        assert_eq!(again["olap_rows"].as_u64().unwrap(), clips, "{again}");
    }
    let again = last_json(&dataloop_ok(
        &data,
        &["ingest", "--input", "data/driving", "--json"],
        0,
    ));
    assert_eq!(again["duplicates"].as_u64().unwrap(), clips);
    let ids = sql_ids(&data, "SELECT clip_id FROM warehouse");
    assert_eq!(ids.len() as u64, clips);
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "no clip stored twice");
    assert_eq!(sql_ids(&data, "SELECT clip_id FROM olap"), ids);

    // Within one batch: a log given twice is stored once.
    let fresh = dir.path().join("fresh");
    let twice = last_json(&dataloop_ok(
        &fresh,
        &[
            "ingest",
            "--input",
            "data/driving/comma2k19_segment",
            "--input",
            "data/driving/comma2k19_segment",
            "--json",
        ],
        0,
    ));
    assert_eq!(twice["duplicates"], twice["clips"], "{twice}");
    assert_eq!(
        sql_ids(&fresh, "SELECT clip_id FROM warehouse").len() as u64,
        twice["clips"].as_u64().unwrap()
    );
}

#[test]
fn concurrent_triggers_get_distinct_versions() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    dataloop_ok(&data, &["ingest", "--input", "data/driving", "--json"], 0);
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(bin())
                .arg("--data-dir")
                .arg(&data)
                .args(["trigger", "--scheduled", "--json"])
                .current_dir(testkit::workspace_root())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut versions: Vec<u64> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let outcome = last_json(&stdout);
            assert_eq!(outcome["warehouse_version"], 1, "{outcome}");
            outcome["model_version"].as_u64().unwrap()
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, [1, 2, 3]);
    let registry: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(data.join("registry.json")).unwrap()).unwrap();
    let recorded: Vec<u64> = registry["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(recorded, [1, 2, 3], "no run lost");
    for v in 1..=3 {
        assert!(data.join(format!("models/v{v:04}.json")).exists());
    }
}

#[test]
fn a_corrupt_champion_is_an_error() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    dataloop_ok(&data, &["ingest", "--input", "data/driving", "--json"], 0);
    let first = last_json(&dataloop_ok(
        &data,
        &["trigger", "--scheduled", "--json"],
        0,
    ));
    assert_eq!(
        first["promoted"], true,
        "the bundled data's first model beats CV: {first}"
    );
    fs_err::write(data.join("models/v0001.json"), "{\"weights\": [1.0, ").unwrap();

    for args in [
        &["trigger", "--scheduled", "--json"][..],
        &["trigger", "--rule", "hard_braking", "--json"][..],
        &[
            "eval",
            "--input",
            "data/driving/comma2k19_segment",
            "--json",
        ][..],
    ] {
        let output = dataloop(&data, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("champion model v1") && stderr.contains("v0001.json"),
            "{args:?}: {stderr}"
        );
    }
    let registry: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(data.join("registry.json")).unwrap()).unwrap();
    assert_eq!(
        registry["versions"].as_array().unwrap().len(),
        1,
        "nothing recorded"
    );
    assert_eq!(registry["champion"], 1);
}
