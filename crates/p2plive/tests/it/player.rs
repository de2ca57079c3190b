//! A real player reads a peer's `/live.ts`: ffprobe finds the source's streams and duration,
//! and ffmpeg decodes it without an error. Every part runs as its own process.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{Infra, get_bytes, sha256_hex, wait_done, wait_joined};

fn probe(target: &str) -> Value {
    let out = Command::new(testkit::require("ffprobe"))
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name:format=duration",
            "-of",
            "json",
            target,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "ffprobe reported errors on {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn streams(probe: &Value) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap().to_owned(),
                s["codec_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    s.sort();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_reads_a_peer_live_ts_like_the_source() {
    let clip = testkit::data_path("video/big_buck_bunny_640x360_60s.mp4");
    let infra = Infra::start(&["--min-substreams", "3", "--max-substreams", "3"]);
    let speed = 10.0;
    let peers: Vec<_> = (0..3).map(|_| infra.peer(speed, &[])).collect();
    let refs: Vec<_> = peers.iter().collect();
    wait_joined(&infra, &refs).await;
    let _origin = infra.origin(clip.to_str().unwrap(), speed);

    // ffprobe reads the live stream while it is still growing.
    let live = peers[0].url("/live.ts");
    let early = tokio::task::spawn_blocking({
        let live = live.clone();
        move || probe(&live)
    });
    // A player reads all of it from the start, while it plays (the peer keeps only a window).
    let full = tokio::spawn({
        let live = live.clone();
        async move { get_bytes(&live).await }
    });
    let source = infra.wait_end(Duration::from_secs(60)).await;
    wait_done(&refs, Duration::from_secs(30)).await;
    let early = early.await.unwrap();

    let original = probe(clip.to_str().unwrap());
    let body = full.await.unwrap();
    assert_eq!(
        sha256_hex(&body),
        source,
        "peer output is not the stream the origin cut"
    );
    let dir = testkit::tempdir();
    let copy = dir.path().join("live.ts");
    fs_err::write(&copy, &body).unwrap();
    let from_peer = probe(copy.to_str().unwrap());

    assert_eq!(streams(&from_peer), streams(&original), "streams differ");
    assert_eq!(
        streams(&from_peer),
        vec![
            ("audio".into(), "aac".into()),
            ("video".into(), "h264".into())
        ]
    );
    assert_eq!(
        streams(&early),
        streams(&original),
        "live read found other streams"
    );
    let d_source: f64 = original["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let d_peer: f64 = from_peer["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (d_source - d_peer).abs() < 0.5,
        "duration {d_peer} s, source {d_source} s"
    );

    // Prometheus metrics of a peer and of the CDN.
    let metrics = String::from_utf8(get_bytes(&peers[0].url("/metrics")).await).unwrap();
    assert!(
        metrics.contains("peer_received_bytes_total{source=\"peer\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("peer_p2p_ratio"), "{metrics}");
    let metrics = String::from_utf8(get_bytes(&infra.cdn.url("/metrics")).await).unwrap();
    assert!(metrics.contains("cdn_bytes_served_total{"), "{metrics}");

    // A full decode of what the peer served over HTTP (read while it played: the peer keeps
    // only a window) reports no error.
    let out = Command::new(testkit::require("ffmpeg"))
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&copy)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "decode errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first packets of a block: PAT (PID 0), then a PMT.
fn opens_with_pat(data: &[u8]) -> bool {
    data.len() >= 376 && data[0] == 0x47 && data[1] & 0x1f == 0 && data[2] == 0
}

/// ffmpeg's complaints while decoding `path` to nowhere (empty when it decodes cleanly).
fn decode_errors(path: &std::path::Path) -> String {
    let out = Command::new(testkit::require("ffmpeg"))
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg failed on {}", path.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue 16 item 1: blocks end at a key frame and start with PAT and PMT, so a block taken
/// mid-stream decodes on its own, a late player starts near the live edge, and a late peer's
/// output (from its first block) decodes with no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_block_a_late_player_and_a_late_peer_decode_without_errors() {
    let dir = testkit::tempdir();
    let clip = crate::make_clip(dir.path(), "late.ts", 16);
    let infra = Infra::start(&["--min-substreams", "2", "--max-substreams", "2"]);
    let speed = 2.0;
    // A 4-block playout delay: a 16 s clip is too short for the default to start a late
    // peer past block 0.
    let delay = ["--playout-delay-blocks", "4"];
    let early: Vec<_> = (0..2).map(|_| infra.peer(speed, &delay)).collect();
    wait_joined(&infra, &early.iter().collect::<Vec<_>>()).await;
    let _origin = infra.origin(clip.to_str().unwrap(), speed);
    infra.wait_cut(10, Duration::from_secs(30)).await;

    // A player connecting now to an early peer, and a peer joining now.
    let late_player = tokio::spawn({
        let url = early[0].url("/live.ts");
        async move { get_bytes(&url).await }
    });
    let late_peer = infra.peer(speed, &delay);
    let source = infra.wait_end(Duration::from_secs(60)).await;
    let mut all: Vec<&testkit::RunningPeer> = early.iter().collect();
    all.push(&late_peer);
    let summaries = wait_done(&all, Duration::from_secs(30)).await;
    for s in &summaries[..2] {
        assert_eq!(s["output_sha256"], Value::String(source.clone()), "{s}");
    }
    let late_start = summaries[2]["start_block"].as_u64().unwrap();
    assert!(
        late_start >= 2,
        "the late peer started at block {late_start}"
    );

    let played = late_player.await.unwrap();
    let whole = fs_err::read(&clip).unwrap();
    assert!(opens_with_pat(&played));
    // It got the stream from the block the peer was playing when it connected (that peer
    // plays 4 blocks behind the edge, and 10 of 16 were cut), not from block 0: at least 3
    // blocks in.
    assert!(
        whole.ends_with(&played) && played.len() < whole.len() * 13 / 16,
        "the late player got {} of {} bytes: it did not start near the edge",
        played.len(),
        whole.len()
    );
    let late_peer_output = get_bytes(&late_peer.url("/live.ts?from=start")).await;
    assert!(opens_with_pat(&late_peer_output));

    let manifest = crate::get_json(&format!("{}/streams/live/manifest", infra.cdn_url())).await;
    let cut = manifest["cut"].as_u64().unwrap();
    let middle = get_bytes(&format!(
        "{}/streams/live/blocks/{}",
        infra.cdn_url(),
        cut / 2
    ))
    .await;
    assert!(opens_with_pat(&middle));
    for (name, data) in [
        ("block.ts", &middle),
        ("late-player.ts", &played),
        ("late-peer.ts", &late_peer_output),
    ] {
        let path = dir.path().join(name);
        fs_err::write(&path, data).unwrap();
        let errors = decode_errors(&path);
        assert!(errors.is_empty(), "{name}: decode errors: {errors}");
        let probe = probe(path.to_str().unwrap());
        assert_eq!(
            streams(&probe),
            vec![
                ("audio".into(), "aac".into()),
                ("video".into(), "h264".into())
            ],
            "{name}"
        );
    }
}
