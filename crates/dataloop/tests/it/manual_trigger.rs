//! The manual trigger's ID list (written through object_store to the file store) equals what the
//! same SQL predicate returns in `dataloop sql`; training, evaluation and the registry follow; the
//! champion then evaluates a log with `dataloop eval` without ingesting it.

use crate::{dataloop_ok, last_json, sql_ids};

#[test]
fn id_list_equals_sql_and_models_are_registered() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    dataloop_ok(&data, &["ingest", "--input", "data/driving", "--json"], 0);

    let scheduled = last_json(&dataloop_ok(
        &data,
        &["trigger", "--scheduled", "--json"],
        0,
    ));
    assert_eq!(scheduled["kind"], "scheduled");
    assert_eq!(scheduled["mode"], "full");
    assert_eq!(scheduled["model_version"], 1);
    let total = sql_ids(&data, "SELECT clip_id FROM warehouse").len();
    assert_eq!(
        scheduled["clips"].as_u64().unwrap() as usize,
        total,
        "full export"
    );
    // Every row streamed into training exactly once: the pinned log's windows are evaluated,
    // all others trained on, and no copy of the export is left in the file store.
    assert_eq!(
        scheduled["train_windows"].as_u64().unwrap() + scheduled["eval_windows"].as_u64().unwrap(),
        total as u64,
        "{scheduled}"
    );
    let exports = data.join("file_store/exports");
    assert!(
        !exports.exists() || std::fs::read_dir(&exports).unwrap().next().is_none(),
        "the scheduled export left a copy in {}",
        exports.display()
    );

    let predicate = "mean_speed_mps >= 1.0 AND agents_nearby >= {min_agents}";
    let manual = last_json(&dataloop_ok(
        &data,
        &[
            "trigger",
            "--rule",
            predicate,
            "--param",
            "min_agents=2",
            "--json",
        ],
        0,
    ));
    assert_eq!(manual["kind"], "manual");
    assert_eq!(manual["rule"], "adhoc");
    assert_eq!(
        manual["mode"],
        if scheduled["promoted"] == true {
            "incremental"
        } else {
            "full"
        }
    );
    let list_path = manual["id_list"]
        .as_str()
        .unwrap()
        .trim_start_matches("file://")
        .to_owned();
    assert!(
        list_path.starts_with(
            data.canonicalize()
                .unwrap()
                .join("file_store/id_lists")
                .to_str()
                .unwrap()
        ),
        "{list_path}"
    );
    let listed: Vec<String> = fs_err::read_to_string(&list_path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let expected = sql_ids(
        &data,
        "SELECT clip_id FROM olap WHERE mean_speed_mps >= 1.0 AND agents_nearby >= 2",
    );
    assert!(!expected.is_empty());
    assert_eq!(listed, expected);
    assert_eq!(manual["clips"].as_u64().unwrap() as usize, expected.len());

    // A named rule with a parameter override, and a bad parameter.
    let named = last_json(&dataloop_ok(
        &data,
        &[
            "trigger",
            "--rule",
            "moving_in_traffic",
            "--param",
            "min_agents=1",
            "--json",
        ],
        0,
    ));
    let listed: Vec<String> = fs_err::read_to_string(
        named["id_list"]
            .as_str()
            .unwrap()
            .trim_start_matches("file://"),
    )
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        listed,
        sql_ids(
            &data,
            "SELECT clip_id FROM olap WHERE mean_speed_mps >= 1.0 AND agents_nearby >= 1"
        )
    );
    let bad = crate::dataloop(
        &data,
        &["trigger", "--rule", "hard_braking", "--param", "nope=1"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no {nope} placeholder"));

    let report = dataloop_ok(&data, &["report"], 0);
    assert_eq!(
        report
            .lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
            .count(),
        3,
        "{report}"
    );
    let svg = fs_err::read_to_string(data.join("metrics.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("model ADE"),
        "plot written"
    );

    let eval = last_json(&dataloop_ok(
        &data,
        &[
            "eval",
            "--input",
            "data/driving/av2_sensor_log_7fab2350",
            "--json",
        ],
        0,
    ));
    for key in [
        "windows",
        "ade_m",
        "fde_m",
        "miss_rate",
        "cv_ade_m",
        "cv_fde_m",
        "cv_miss_rate",
    ] {
        assert!(eval[key].is_number(), "{key} in {eval}");
    }
    assert!(eval["windows"].as_u64().unwrap() > 100);
    // eval does not ingest.
    assert_eq!(sql_ids(&data, "SELECT clip_id FROM warehouse").len(), total);
}
