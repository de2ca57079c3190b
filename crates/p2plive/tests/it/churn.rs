//! Stop 3 of 10 peers mid-stream (SIGKILL: they stop answering without leaving): the tracker
//! removes them and re-homes their substreams; the other 7 stay byte-exact without stalls.

use std::time::Duration;

use serde_json::Value;

use crate::{Infra, get_bytes, make_clip, sha256_hex, wait_done, wait_joined};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_stay_byte_exact_when_three_of_ten_peers_die() {
    let dir = testkit::tempdir();
    let clip = make_clip(dir.path(), "churn.mp4", 14);
    let infra = Infra::start(&[
        "--min-substreams",
        "10",
        "--max-substreams",
        "10",
        "--peer-timeout-ms",
        "1000",
    ]);
    let speed = 2.0;
    let mut peers: Vec<_> = (0..10).map(|_| infra.peer(speed, &[])).collect();
    let refs: Vec<_> = peers.iter().collect();
    wait_joined(&infra, &refs).await;
    let _origin = infra.origin(clip.to_str().unwrap(), speed);

    infra.wait_cut(5, Duration::from_secs(30)).await;
    let mut dead = Vec::new();
    for victim in [2usize, 5, 8] {
        let id = crate::get_json(&peers[victim].url("/summary")).await["id"].clone();
        peers[victim].child().kill();
        dead.push(id);
    }
    // The tracker notices and re-homes their substreams to the survivors.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = infra.view().await;
        let members = view.as_array().unwrap();
        let covered: std::collections::BTreeSet<u64> = members
            .iter()
            .flat_map(|m| {
                m["substreams"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b.as_u64().unwrap())
            })
            .collect();
        if members.len() == 7 && covered.len() == 10 {
            assert!(members.iter().all(|m| !dead.contains(&m["id"])));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not re-homed: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let source = infra.wait_end(Duration::from_secs(60)).await;
    let survivors: Vec<_> = peers
        .iter()
        .enumerate()
        .filter(|(i, _)| ![2, 5, 8].contains(i))
        .map(|(_, p)| p)
        .collect();
    let summaries = wait_done(&survivors, Duration::from_secs(30)).await;
    for (peer, summary) in survivors.iter().zip(&summaries) {
        assert_eq!(
            summary["output_sha256"],
            Value::String(source.clone()),
            "{summary}"
        );
        assert_eq!(summary["playback"]["stalls"], 0, "{summary}");
        let body = get_bytes(&peer.url("/live.ts?from=start")).await;
        assert_eq!(sha256_hex(&body), source);
    }
}
