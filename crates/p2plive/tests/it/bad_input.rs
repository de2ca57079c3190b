//! Bad input: a file that is not video, a peer that uploads corrupt blocks, an unknown stream
//! id at the tracker. Each gets a clear error or is recovered from; nothing received is lost.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{Infra, bin, get_bytes, make_clip, sha256_hex, wait_done, wait_joined};

#[test]
fn a_file_that_is_not_video_is_refused_clearly() {
    let dir = testkit::tempdir();
    let notes = dir.path().join("notes.txt");
    fs_err::write(&notes, "meeting notes, certainly not a video\n".repeat(100)).unwrap();
    for sub in [
        vec!["origin", "--cdn", "http://127.0.0.1:9", "--input"],
        vec!["demo", "--peers", "2", "--input"],
    ] {
        let out = Command::new(bin())
            .args(&sub)
            .arg(&notes)
            .env(crate::ORIGIN_ENV.0, crate::ORIGIN_ENV.1)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{sub:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is not a video stream"),
            "{sub:?}: {stderr}"
        );
        assert!(stderr.contains("notes.txt"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stream_id_at_the_tracker_is_a_clear_error() {
    let infra = Infra::start(&[]);
    let out = tokio::task::spawn_blocking({
        let (tracker, cdn) = (infra.tracker.url(""), infra.cdn_url());
        move || {
            Command::new(bin())
                .args([
                    "peer",
                    "--tracker",
                    &tracker,
                    "--cdn",
                    &cdn,
                    "--stream",
                    "nope",
                ])
                .env(crate::PEER_ENV.0, crate::PEER_ENV.1)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown stream id `nope` at the tracker"),
        "{stderr}"
    );
    // The HTTP answer says the same.
    let response = crate::http()
        .post(infra.tracker.url("/streams/nope/join"))
        .bearer_auth(crate::JOIN_TOKEN)
        .json(&serde_json::json!({"contact": {"quic_addr": "127.0.0.1:1", "http_addr": "", "cert_der_hex": ""}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unknown stream id `nope` at the tracker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_blocks_from_a_peer_are_detected_and_refetched() {
    let dir = testkit::tempdir();
    let clip = make_clip(dir.path(), "corrupt.mp4", 8);
    let infra = Infra::start(&["--min-substreams", "3", "--max-substreams", "3"]);
    let speed = 4.0;
    let liar = infra.peer(speed, &["--corrupt-uploads"]);
    let honest: Vec<_> = (0..2).map(|_| infra.peer(speed, &[])).collect();
    let mut refs: Vec<_> = honest.iter().collect();
    refs.push(&liar);
    wait_joined(&infra, &refs).await;
    let _origin = infra.origin(clip.to_str().unwrap(), speed);
    let source = infra.wait_end(Duration::from_secs(60)).await;
    let summaries = wait_done(&refs, Duration::from_secs(30)).await;
    let mut corrupt_seen = 0;
    for (peer, summary) in refs.iter().zip(&summaries) {
        assert_eq!(
            summary["output_sha256"],
            Value::String(source.clone()),
            "{summary}"
        );
        assert_eq!(summary["playback"]["stalls"], 0, "{summary}");
        assert_eq!(
            sha256_hex(&get_bytes(&peer.url("/live.ts?from=start")).await),
            source
        );
        corrupt_seen += summary["playback"]["corrupt_blocks"].as_u64().unwrap();
    }
    assert!(
        corrupt_seen > 0,
        "the honest peers never noticed: {summaries:#?}"
    );
    let log = honest[0].log() + &honest[1].log();
    assert!(log.contains("does not match the origin's SHA-256"), "{log}");
}
