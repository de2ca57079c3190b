//! The tracker adapts `s` to the number of peers (seed 50): two peers join mid-stream, `s`
//! grows from 3 to 5 from a later block on, and every peer, early or late, reproduces the
//! stream from its start block. One late peer caps its upload per link (token bucket).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::{Infra, get_bytes, get_json, make_clip, sha256_hex, wait_done, wait_joined};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substream_count_follows_the_swarm_and_late_joiners_stay_exact() {
    let dir = testkit::tempdir();
    let clip = make_clip(dir.path(), "adaptive.mp4", 14);
    let infra = Infra::start(&["--min-substreams", "2", "--max-substreams", "8"]);
    let speed = 2.0;
    // A 4-block playout delay, so the late joiners at block 5 start past block 0.
    let delay = ["--playout-delay-blocks", "4"];
    let early: Vec<_> = (0..3).map(|_| infra.peer(speed, &delay)).collect();
    wait_joined(&infra, &early.iter().collect::<Vec<_>>()).await;
    let _origin = infra.origin(clip.to_str().unwrap(), speed);

    infra.wait_cut(5, Duration::from_secs(30)).await;
    let late = [
        infra.peer(speed, &delay),
        infra.peer(
            speed,
            &["--upload-limit", "40000", "--playout-delay-blocks", "4"],
        ),
    ];
    let all: Vec<_> = early.iter().chain(late.iter()).collect();
    wait_joined(&infra, &all).await;
    let view = infra.view().await;
    let held: BTreeSet<u64> = view
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| {
            m["substreams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap())
        })
        .collect();
    assert_eq!(held, (1..=5).collect(), "s follows the 5 peers: {view}");

    let source = infra.wait_end(Duration::from_secs(60)).await;
    let summaries = wait_done(&all, Duration::from_secs(30)).await;
    let manifest = get_json(&format!("{}/streams/live/manifest", infra.cdn_url())).await;
    let blocks = manifest["blocks"].as_array().unwrap().len() as u64;
    for (peer, summary) in all.iter().zip(&summaries) {
        let start = summary["start_block"].as_u64().unwrap();
        let mut expected = Vec::new();
        for n in start..blocks {
            expected
                .extend(get_bytes(&format!("{}/streams/live/blocks/{n}", infra.cdn_url())).await);
        }
        let body = get_bytes(&peer.url("/live.ts?from=start")).await;
        assert_eq!(
            sha256_hex(&body),
            sha256_hex(&expected),
            "peer from block {start}: {summary}"
        );
        if start == 0 {
            assert_eq!(summary["output_sha256"], Value::String(source.clone()));
        }
        assert_eq!(summary["playback"]["stalls"], 0, "{summary}");
    }
    assert!(
        summaries[3]["start_block"].as_u64().unwrap() > 0,
        "late joiners start behind the live edge"
    );
}
