//! Routing with hyphenated service and namespace names through the one public port, and the
//! forwarder's check that its label belongs to its namespace.

use std::time::Duration;

use crate::{camera, forwarder, media, open, proxy, registry, rtsp, running_streams, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyphenated_names_route_by_the_longest_registered_service() {
    let camera = camera();
    let registry = registry().await;
    // Two media servers serving a stream of the same name from different cameras.
    let east = media(
        &registry,
        "media-east",
        "east-1",
        &[("cam_1", rtsp(&camera, "/sub_stream"))],
        |_| {},
    )
    .await;
    let gw = media(
        &registry,
        "media-gw",
        "1",
        &[("cam_1", rtsp(&camera, "/aux_stream"))],
        |_| {},
    )
    .await;
    let west = media(
        &registry,
        "media-west",
        "gw-west",
        &[("cam_1", rtsp(&camera, "/sub_stream"))],
        |_| {},
    )
    .await;
    // "cam-gw-east-1" is spelled by ("cam-gw", "east-1") and by ("cam-gw-east", "1").
    let _f1 = forwarder(&registry, "cam-gw", "east-1", "media-east").await;
    let _f2 = forwarder(&registry, "cam-gw-east", "1", "media-gw").await;
    let _f3 = forwarder(&registry, "cam", "gw-west", "media-west").await;
    // A forwarder of namespace east-1 bound to a label of namespace 1.
    let _f4 = forwarder(&registry, "thief", "east-1", "media-gw").await;
    let proxy = proxy(&registry).await;

    let cases = [
        // (public path, media server expected to pull, the other one)
        ("/realtime-cam-gw-east-1/cam_1/0.flv", &gw, &east),
        ("/realtime-cam-gw-west/cam_1/0.flv", &west, &gw),
    ];
    for (path, expected, other) in cases {
        let before_other = running_streams(other).await;
        let mut viewer = open(&url(&proxy, path)).await;
        assert_eq!(viewer.status(), 200, "{path}");
        let (before, key, _) = viewer
            .until_key_frame(Duration::from_secs(15))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{path}: no key frame"));
        assert!(key.is_key_frame());
        assert!(before.iter().any(|t| t.is_avc_sequence_header()));
        assert!(
            running_streams(expected)
                .await
                .contains(&"cam_1".to_owned()),
            "{path} reached the wrong media server"
        );
        assert_eq!(running_streams(other).await, before_other, "{path}");
    }

    // The forwarder refuses a label registered in another namespace than its own.
    let before = running_streams(&gw).await;
    let (status, body, _) = crate::get(&url(&proxy, "/realtime-thief-east-1/cam_1/0.flv")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["error"],
        "label `media-gw` belongs to namespace `1`, not `east-1`"
    );
    assert_eq!(running_streams(&gw).await, before, "nothing was pulled");

    // The namespace segment alone decides: ServiceA-like pairs with a missing namespace 404.
    let (status, body, _) = crate::get(&url(&proxy, "/realtime-cam-gw-east-2/cam_1/0.flv")).await;
    assert_eq!(status, 404);
    assert_eq!(
        body["error"],
        "unknown namespace `2` for service `cam-gw-east`"
    );
}
