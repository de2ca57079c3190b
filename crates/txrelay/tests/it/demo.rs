//! `txrelay demo --json` and the command line's error handling.

use std::process::Command;

use serde_json::Value;

#[test]
fn demo_passes_its_checks_and_reports_in_the_issue_shape() {
    testkit::require("anvil");
    let out = Command::new(env!("CARGO_BIN_EXE_txrelay"))
        .args(["demo", "--json"])
        // The demo finds anvil like `make demo` does: on PATH or in ./.tools/bin.
        .current_dir(testkit::workspace_root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "accepted",
            "chains",
            "duplicates",
            "invalid_rejected",
            "latency_after_inclusion_ms",
            "mined",
            "notifications",
            "reverted",
            "submitted"
        ]
    );
    assert_eq!(report["chains"], serde_json::json!([31337, 1337001]));
    assert_eq!(report["accepted"], 200);
    assert_eq!(report["duplicates"], 20);
    assert_eq!(report["invalid_rejected"], 5);
    assert_eq!(report["mined"], 198);
    assert_eq!(report["reverted"], 2);
    let notes = &report["notifications"];
    assert_eq!(notes["lost"], 0);
    assert_eq!(notes["expected"], notes["delivered"]);
    assert!(notes["expected"].as_u64().unwrap() >= 200);
    let p50 = report["latency_after_inclusion_ms"]["p50"]
        .as_f64()
        .unwrap();
    let p99 = report["latency_after_inclusion_ms"]["p99"]
        .as_f64()
        .unwrap();
    assert!(p50 > 0.0 && p50 <= p99);
}

#[test]
fn serve_refuses_a_bad_configuration_naming_the_key() {
    let dir = testkit::tempdir();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\n[tracking]\npoll_interval = 5\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_txrelay"))
        .args(["serve", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("poll_interval"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_txrelay"))
        .args([
            "serve",
            "--chain",
            "31337=http://127.0.0.1:1",
            "--database",
            "mysql://x",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database.url"), "{stderr}");
}
