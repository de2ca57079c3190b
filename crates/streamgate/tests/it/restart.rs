//! A media server process killed (`SIGKILL`) and started again on a new port: requests get
//! 503 while it is gone, the lease runs out, and the same URL plays again once it has
//! re-registered, because the forwarder resolves its label on every request.

use std::time::{Duration, Instant};

use testkit::{Peer, Ready, RunningPeer};

use crate::{bin, camera, forwarder, get, open, proxy, registry, registry_client, rtsp, url};

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
                format!("aux_stream={camera_url}"),
                "--set".to_owned(),
                "media.lease_ms=1000".to_owned(),
            ])
            .env("STREAMGATE_DISCOVERY__TOKEN", crate::TOKEN)
            .ready(Ready::Tcp)
            .start()
    })
}

async fn wait_for_label(registry: &streamgate::Running, port: Option<u16>) -> Instant {
    let client = registry_client(registry);
    let started = Instant::now();
    loop {
        let record = client.media("media-r").await.unwrap();
        if record.map(|r| r.addr.port()) == port {
            return Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "registry never showed {port:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_a_restarted_media_server() {
    let camera = camera();
    let registry = registry().await;
    let _fwd = forwarder(&registry, "ServiceR", "NameSpaceR", "media-r").await;
    let proxy = proxy(&registry).await;
    let address = url(&proxy, "/realtime-ServiceR-NameSpaceR/aux_stream/0.flv");

    let mut first = media_process(&registry, &rtsp(&camera, "/aux_stream"));
    wait_for_label(&registry, Some(first.port())).await;
    let mut viewer = open(&address).await;
    assert_eq!(viewer.status(), 200);
    assert!(
        viewer
            .until_key_frame(Duration::from_secs(15))
            .await
            .unwrap()
            .is_some()
    );

    first.child().kill();
    // Still registered, but gone.
    let (status, body, _) = get(&address).await;
    assert_eq!(
        (status, body["origin"].as_str()),
        (503, Some("upstream")),
        "{body}"
    );
    // The open stream ends instead of hanging.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = viewer.next_tag().await {}
    })
    .await;
    assert!(ended.is_ok(), "the viewer's stream did not end");
    // After the 1 s lease: not registered at all.
    wait_for_label(&registry, None).await;
    let (status, body, _) = get(&address).await;
    assert_eq!(
        (status, body["origin"].as_str()),
        (503, Some("registry")),
        "{body}"
    );

    let second = media_process(&registry, &rtsp(&camera, "/aux_stream"));
    assert_ne!(second.port(), first.port());
    let registered = wait_for_label(&registry, Some(second.port())).await;
    let mut viewer = open(&address).await;
    assert_eq!(
        viewer.status(),
        200,
        "the first request after re-registration plays"
    );
    let (_, _, at) = viewer
        .until_key_frame(Duration::from_secs(15))
        .await
        .unwrap()
        .expect("no key frame after the restart");
    assert!(at > registered);
}
