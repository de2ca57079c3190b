//! Viewers survive a media-server move: the media server process is killed (`SIGKILL`) under
//! 20 open viewers and started again on a new port; the forwarder re-attaches upstream, every
//! viewer stays connected, the gap stays within one GOP + 1 s, no second FLV header or
//! sequence header reaches the players, and decoding timestamps never go back (checked by our
//! FLV reader in every viewer and by ffprobe as a real client).

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{Peer, Ready, RunningPeer};
use tokio::task::JoinSet;

use crate::{bin, camera, forwarder, proxy, registry, registry_client, rtsp, url};

const VIEWERS: usize = 20;

fn media_process(registry: &streamgate::Running, camera_url: &str) -> RunningPeer {
    tokio::task::block_in_place(|| {
        Peer::new(bin())
            .args([
                "media".to_owned(),
                "--label".to_owned(),
                "media-r".to_owned(),
                "--namespace".to_owned(),
                "NameSpaceR".to_owned(),
                "--listen".to_owned(),
                "127.0.0.1:{port}".to_owned(),
                "--registry".to_owned(),
                format!("http://{}", registry.addr()),
                "--camera".to_owned(),
                format!("sub_stream={camera_url}"),
                "--set".to_owned(),
                "media.lease_ms=3000".to_owned(),
            ])
            .env("STREAMGATE_DISCOVERY__TOKEN", crate::TOKEN)
            .ready(Ready::Tcp)
            .start()
    })
}

async fn wait_for_label(registry: &streamgate::Running, port: u16) -> Instant {
    let client = registry_client(registry);
    let started = Instant::now();
    loop {
        if let Ok(Some(record)) = client.media("media-r").await
            && record.addr.port() == port
        {
            return Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "registry never showed port {port}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn watch(
    address: String,
    until: tokio::time::Instant,
    moved: tokio::sync::watch::Receiver<bool>,
) -> streamgate::viewer::Watched {
    let client = streamgate::viewer::client(Duration::from_secs(30));
    let seen = streamgate::viewer::watch_stream(&client, &address, until, &moved)
        .await
        .unwrap();
    assert_eq!(seen.status, 200);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_viewers_survive_a_media_server_moving() {
    let ffprobe = testkit::require("ffprobe");
    let camera = camera();
    let registry = registry().await;
    let _fwd = forwarder(&registry, "ServiceR", "NameSpaceR", "media-r").await;
    let proxy = proxy(&registry).await;
    let address = url(&proxy, "/realtime-ServiceR-NameSpaceR/sub_stream/0.flv");

    let mut first = media_process(&registry, &rtsp(&camera, "/sub_stream"));
    wait_for_label(&registry, first.port()).await;
    let (moved_tx, moved) = tokio::sync::watch::channel(false);
    let until = tokio::time::Instant::now() + Duration::from_secs(9);
    let mut viewers = JoinSet::new();
    for _ in 0..VIEWERS {
        viewers.spawn(watch(address.clone(), until, moved.clone()));
    }
    // A real client reading across the move: ffprobe's decoding timestamps.
    let probe = {
        let address = address.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(ffprobe)
                .args([
                    "-v",
                    "error",
                    "-analyzeduration",
                    "500000",
                    "-probesize",
                    "65536",
                ])
                .args(["-select_streams", "v", "-read_intervals", "%+7"])
                .args(["-show_entries", "packet=dts", "-of", "csv=p=0", &address])
                .output()
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    first.child().kill();
    let killed = Instant::now();
    let second = media_process(&registry, &rtsp(&camera, "/sub_stream"));
    assert_ne!(second.port(), first.port());
    let registered = wait_for_label(&registry, second.port()).await;
    moved_tx.send_replace(true);
    let registration_ms = (registered - killed).as_millis();

    let mut kept = 0;
    let mut report = Vec::new();
    while let Some(seen) = viewers.join_next().await {
        let seen = seen.unwrap();
        if !seen.ended && seen.frames_after_mark > 0 {
            kept += 1;
        }
        assert!(!seen.dts_went_back, "{seen:?}");
        assert_eq!(
            seen.sequence_headers, 1,
            "sequence header repeated: {seen:?}"
        );
        assert!(
            seen.max_gap <= Duration::from_secs(2),
            "gap over one GOP + 1 s: {seen:?}"
        );
        report.push(seen.max_gap);
    }
    assert_eq!(
        kept, VIEWERS,
        "viewers still connected and playing after the move"
    );
    let worst = report.iter().max().unwrap();
    eprintln!("move: re-registered {registration_ms} ms after the kill, largest gap {worst:?}");

    let out = probe.await.unwrap();
    let dts: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dts.len() >= 100, "ffprobe read {} packets", dts.len());
    assert!(
        dts.windows(2).all(|w| w[0] <= w[1]),
        "ffprobe saw decoding times go back"
    );
    drop(second);
}
