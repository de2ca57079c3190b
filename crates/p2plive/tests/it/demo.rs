//! `p2plive demo` on other inputs than the bundled clip: a generated MP4 and a generated TS.

use std::process::Command;

use serde_json::Value;

use crate::{bin, make_clip};

fn run_demo(args: &[&str]) -> Value {
    let out = Command::new(bin())
        .arg("demo")
        .args(args)
        .arg("--json")
        // Short clips: a late viewer's catch-up from the CDN would dominate the totals.
        .args(late_viewers(args))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).unwrap()
}

/// No late viewers unless the test asks for them (`--churn` tests do).
fn late_viewers(args: &[&str]) -> Vec<&'static str> {
    if args.contains(&"--churn") {
        Vec::new()
    } else {
        vec!["--late-peers", "0", "--late-players", "0"]
    }
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
    // The lag budget is one block plus the playout delay, in ms of 1 s blocks.
    let buffer = report["lag_budget_ms"].as_u64().unwrap() / 1000;
    for p in report["peers_detail"].as_array().unwrap() {
        // Window (about 4, 5 with short blocks) + the block playing + the playout buffer
        // ahead.
        let held = p["max_held_blocks"].as_u64().unwrap();
        assert!(
            (1..=5 + buffer).contains(&held),
            "peer held {held} of {blocks} blocks: {p}"
        );
    }
}

/// Issue 16 "Done when": with a third of the peers killed mid-stream the survivors stay
/// byte-exact without stalls, and a late peer and a late player decode with 0 errors and
/// start within one block plus the playout delay of the live edge. The input has a 4 s GOP
/// (as a VOD file may), so without the live encode (`--encode copy`) a viewer joining between
/// key frames sees undecodable frames: that run must report them.
#[test]
fn churn_and_late_viewers_join_near_the_edge_and_decode_cleanly() {
    let dir = testkit::tempdir();
    let clip = crate::make_clip_with_gop(dir.path(), "gop4.mp4", 16, 100);
    let args = [
        "--peers",
        "6",
        "--substreams",
        "6",
        "--speed",
        "4",
        "--churn",
        "0.34",
        // A 16 s clip: with 4 blocks of playout delay the late peer (at 8 s) starts past
        // block 0.
        "--playout-delay-blocks",
        "4",
        "--input",
        clip.to_str().unwrap(),
    ];
    let report = run_demo(&args);
    let killed = report["killed"].as_array().unwrap();
    assert_eq!(killed.len(), 2, "{report}");
    check(&report, 4);
    let budget = report["lag_budget_ms"].as_u64().unwrap();
    assert!(budget > 0);
    let late = report["late_peers"].as_array().unwrap();
    assert_eq!(late.len(), 1);
    for p in late {
        assert_eq!(p["byte_exact"], Value::Bool(true), "{p}");
        assert_eq!(p["decode_errors"], 0, "{p}");
        assert_eq!(p["stalls"], 0, "{p}");
        assert!(
            p["start_block"].as_u64().unwrap() > 0,
            "joined mid-stream: {p}"
        );
        assert!(p["lag_behind_edge_ms"].as_u64().unwrap() <= budget, "{p}");
    }
    let players = report["late_players"].as_array().unwrap();
    assert_eq!(players.len(), 1);
    for p in players {
        assert_eq!(p["byte_exact"], Value::Bool(true), "{p}");
        assert_eq!(p["decode_errors"], 0, "{p}");
        assert!(p["first_block"].as_u64().unwrap() > 0, "{p}");
        assert!(p["lag_behind_edge_ms"].as_u64().unwrap() <= budget, "{p}");
    }

    // The same file remuxed as is: blocks are cut on time between its key frames, and the
    // demo's own check reports the late viewers' decode errors.
    let out = Command::new(bin())
        .arg("demo")
        .args(["--peers", "3", "--substreams", "3", "--speed", "4"])
        .args(["--playout-delay-blocks", "4"])
        .args([
            "--encode",
            "copy",
            "--input",
            clip.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a mid-GOP join must fail the check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("decode errors"), "{stderr}");
}

/// An input the origin cannot cut to its end (a few TS packets, then noise) must not leave the
/// churn step waiting for progress that never comes: the demo ends and reports.
#[test]
fn an_origin_that_stops_early_does_not_hang_the_mid_stream_events() {
    let dir = testkit::tempdir();
    let junk = dir.path().join("junk.ts");
    let mut packet = vec![0x47, 0x1f, 0xff, 0x10];
    packet.resize(188, 0xff);
    let mut data = packet.repeat(30);
    // Bytes with no sync byte: the cutter skips them, so the origin's progress stays at
    // 5,640 of 205,640 bytes, below the 40 % the churn step waits for.
    data.extend((0..200_000u32).map(|i| (i % 71) as u8 + 1));
    fs_err::write(&junk, &data).unwrap();
    let mut child = Command::new(bin())
        .arg("demo")
        .args([
            "--peers",
            "2",
            "--substreams",
            "2",
            "--churn",
            "0.5",
            "--json",
        ])
        .arg("--input")
        .arg(&junk)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo still runs 60 s after an origin that stopped early");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // It ends, failing its own checks (nothing was killed, P2P 0): exit 2, not a hang.
    assert_eq!(status.code(), Some(2), "{status:?}");
}
