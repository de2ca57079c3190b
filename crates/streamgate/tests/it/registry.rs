//! The authenticated registry: a label takeover is refused and the real server keeps
//! serving; a server whose lease was lost or taken registers again instead of stopping.

use std::time::{Duration, Instant};

use streamgate::registry::{MediaRegistration, RegistryClient};

use crate::{camera, forwarder, media, open, proxy, registry, registry_client, rtsp, url};

fn claim(instance: &str, port: u16) -> MediaRegistration {
    MediaRegistration {
        namespace: "NameSpaceA".to_owned(),
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        streams: vec!["sub_stream".to_owned()],
        instance: instance.to_owned(),
        ttl_ms: 60_000,
        heartbeat: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_takeover_is_refused_and_the_real_server_keeps_serving() {
    let camera = camera();
    let registry = registry().await;
    let real = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("sub_stream", rtsp(&camera, "/sub_stream"))],
        |c| c.lease_ms = 3000,
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy(&registry).await;
    let address = url(&proxy, "/realtime-ServiceA-NameSpaceA/sub_stream/0.flv");
    let mut viewer = open(&address).await;
    assert_eq!(viewer.status(), 200);
    assert!(
        viewer
            .until_key_frame(Duration::from_secs(15))
            .await
            .unwrap()
            .is_some()
    );

    let admin = registry_client(&registry);
    let anonymous = RegistryClient::new(&format!("http://{}", registry.addr()));
    let dead = streamgate::cluster::free_port().unwrap();
    // The unauthenticated PUT that evicted the real server in v1.
    assert_eq!(
        anonymous
            .put_media("media-a", &claim("thief", dead))
            .await
            .unwrap(),
        401
    );
    // Even with a valid credential, a second claim on a live label is refused.
    assert_eq!(
        admin
            .put_media("media-a", &claim("thief", dead))
            .await
            .unwrap(),
        409
    );
    let record = admin.media("media-a").await.unwrap().unwrap();
    assert_eq!(record.addr, real.addr(), "the real server keeps its label");

    // Lease lost (removed), then the label taken by an instance that dies: the real server
    // registers again instead of stopping (v1 stopped heartbeating for good on the 409).
    let real_instance = record.instance.clone();
    let removed = admin.delete("media/media-a", &real_instance).await.unwrap();
    assert_eq!(removed, 204);
    assert_eq!(
        admin
            .put_media("media-a", &claim("interloper", dead))
            .await
            .unwrap(),
        200,
        "nobody held the label for a moment"
    );
    let started = Instant::now();
    loop {
        let record = admin.media("media-a").await.unwrap();
        if record.as_ref().is_some_and(|r| r.instance == real_instance) {
            assert_eq!(record.unwrap().addr, real.addr());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the real server did not take its label back: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The open viewer never stopped, and a new one plays.
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut frames = 0;
    while let Ok(Ok(Some((tag, _)))) = tokio::time::timeout_at(until, viewer.next_tag()).await {
        frames += usize::from(tag.is_video_frame());
    }
    assert!(frames >= 15, "{frames} frames in 1 s");
    let mut again = open(&address).await;
    assert_eq!(again.status(), 200);
    assert!(
        again
            .until_key_frame(Duration::from_secs(5))
            .await
            .unwrap()
            .is_some()
    );
}
