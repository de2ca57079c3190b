//! `p2plive demo` on other inputs than the bundled clip: a generated MP4 and a generated TS.

use std::process::Command;

use serde_json::Value;

use crate::{bin, make_clip};

fn run_demo(args: &[&str]) -> Value {
    let out = Command::new(bin())
        .arg("demo")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).unwrap()
}

fn check(report: &Value, peers: u64) {
    let detail = report["peers_detail"].as_array().unwrap();
    assert_eq!(detail.len() as u64, peers);
    for p in detail {
        assert_eq!(p["byte_exact"], Value::Bool(true), "{p}");
        assert_eq!(p["output_sha256"], report["source_sha256"]);
        assert_eq!(p["stalls"], 0, "{p}");
    }
    assert!(report["blocks"].as_u64().unwrap() >= 5);
    assert!(report["cdn_bytes"].as_u64().unwrap() >= report["stream_bytes"].as_u64().unwrap() / 2);
}

#[test]
fn demo_on_a_generated_mp4_and_ts() {
    let dir = testkit::tempdir();
    let mp4 = make_clip(dir.path(), "clip.mp4", 8);
    let report = run_demo(&[
        "--peers",
        "4",
        "--substreams",
        "4",
        "--speed",
        "4",
        "--input",
        mp4.to_str().unwrap(),
    ]);
    check(&report, 4);
    let ratio = report["p2p_ratio"].as_f64().unwrap();
    assert!(ratio > 0.6, "P2P ratio {ratio}");

    let ts = make_clip(dir.path(), "clip.ts", 8);
    let report = run_demo(&[
        "--peers",
        "4",
        "--substreams",
        "2",
        "--block-set",
        "2",
        "--speed",
        "4",
        "--input",
        ts.to_str().unwrap(),
    ]);
    check(&report, 4);
    // A TS input is cut as is: the source is the file itself.
    assert_eq!(
        report["source_sha256"],
        crate::sha256_hex(&fs_err::read(&ts).unwrap())
    );
}

/// Bounded memory (issue 16 item 5): with a 4 s window, a 30 s stream in 1 s blocks never
/// has more than a window's worth of blocks at the CDN, nor much more than the window plus
/// the playout buffer at a peer, and every player still gets the whole stream.
#[test]
fn a_stream_longer_than_the_window_keeps_the_held_blocks_bounded() {
    let dir = testkit::tempdir();
    let clip = make_clip(dir.path(), "long.ts", 30);
    let report = run_demo(&[
        "--peers",
        "3",
        "--substreams",
        "3",
        "--speed",
        "4",
        "--block-ms",
        "1000",
        "--window-ms",
        "4000",
        "--input",
        clip.to_str().unwrap(),
    ]);
    check(&report, 3);
    let blocks = report["blocks"].as_u64().unwrap();
    assert!(blocks >= 29, "30 s in 1 s blocks: {blocks}");
    // 4 s of 1 s blocks: 4 (5 when some are shorter).
    let cdn = report["cdn_max_held_blocks"].as_u64().unwrap();
    assert!((1..=5).contains(&cdn), "CDN held {cdn} blocks");
    for p in report["peers_detail"].as_array().unwrap() {
        // Window (about 4) + the block playing + the playout buffer and prefetch ahead.
        let held = p["max_held_blocks"].as_u64().unwrap();
        assert!(
            (1..=16).contains(&held),
            "peer held {held} of {blocks} blocks: {p}"
        );
    }
}
