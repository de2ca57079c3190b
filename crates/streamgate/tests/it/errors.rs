//! Every error path and its status, with a JSON reason.

use std::time::Duration;

use streamgate::registry::MediaRegistration;

use crate::{forwarder, get, media, proxy, registry, registry_client, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_answers_its_status_with_a_reason() {
    let registry = registry().await;
    // A closed port (nothing listens) and a silent one (accepts, never answers RTSP).
    let closed = streamgate::cluster::free_port().unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let media_a = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[
            ("dead_stream", format!("rtsp://127.0.0.1:{closed}/dead")),
            (
                "mute_stream",
                format!("rtsp://127.0.0.1:{silent_port}/mute"),
            ),
        ],
        |c| c.rtsp_timeout_ms = 1000,
    )
    .await;
    let _fa = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    // A forwarder bound to a label no media server registered.
    let _fg = forwarder(&registry, "ServiceG", "NameSpaceA", "media-ghost").await;
    // A media server registered at an address where nothing runs any more.
    let gone_port = streamgate::cluster::free_port().unwrap();
    let status = registry_client(&registry)
        .put_media(
            "media-gone",
            &MediaRegistration {
                namespace: "NameSpaceA".to_owned(),
                addr: format!("127.0.0.1:{gone_port}").parse().unwrap(),
                streams: vec!["main_stream".to_owned()],
                instance: "crashed".to_owned(),
                ttl_ms: 60_000,
                heartbeat: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let _fx = forwarder(&registry, "ServiceX", "NameSpaceA", "media-gone").await;
    let proxy = proxy(&registry).await;

    // (path, status, origin, a part of the reason or None for generic 5xx text)
    let cases: &[(&str, u16, &str, &str)] = &[
        (
            "/realtime-ServiceA-NameSpaceA/main_stream/zero.flv",
            400,
            "downstream",
            "channel `{n}`",
        ),
        (
            "/realtime-ServiceA-NameSpaceA/main_stream",
            400,
            "downstream",
            "expected",
        ),
        (
            "/live/main_stream.flv",
            400,
            "downstream",
            "must start with `/realtime-`",
        ),
        (
            "/realtime-ServiceZ-NameSpaceA/main_stream/0.flv",
            404,
            "downstream",
            "unknown service in `ServiceZ-NameSpaceA`",
        ),
        (
            "/realtime-ServiceA-NameSpaceZ/main_stream/0.flv",
            404,
            "downstream",
            "unknown namespace `NameSpaceZ` for service `ServiceA`",
        ),
        (
            "/realtime-ServiceA-NameSpaceA/no_such_stream/0.flv",
            404,
            "downstream",
            "unknown stream `no_such_stream`",
        ),
        (
            "/realtime-ServiceA-NameSpaceA/dead_stream/0.flv",
            502,
            "camera",
            "camera unreachable",
        ),
        (
            "/realtime-ServiceA-NameSpaceA/mute_stream/0.flv",
            502,
            "camera",
            "camera unreachable",
        ),
        (
            "/realtime-ServiceG-NameSpaceA/main_stream/0.flv",
            503,
            "registry",
            "media server not registered",
        ),
        (
            "/realtime-ServiceX-NameSpaceA/main_stream/0.flv",
            503,
            "upstream",
            "upstream unavailable",
        ),
    ];
    for (path, status, origin, reason) in cases {
        let (got, body, took) = get(&url(&proxy, path)).await;
        assert_eq!(got, *status, "{path}: {body}");
        assert_eq!(body["origin"], *origin, "{path}: {body}");
        assert_eq!(body["status"], *status, "{path}");
        let text = body["error"].as_str().unwrap_or_default();
        assert!(text.contains(reason), "{path}: {text}");
        if *status == 404 {
            assert!(took < Duration::from_secs(2), "{path}: 404 after {took:?}");
        }
        if path.contains("mute_stream") {
            // The RTSP timeout (1 s) decides, not the proxy's or forwarder's limits.
            assert!(took >= Duration::from_millis(1000), "{path}: {took:?}");
            assert!(took < Duration::from_secs(4), "{path}: {took:?}");
        }
    }
    assert_eq!(
        crate::counter(&media_a, "streamgate_rtsp_failures_total", "dead_stream").await,
        1.0
    );
    drop(silent);
}
