//! One upstream pull per stream however many viewers watch, stopped after the idle time, and
//! started again by the next viewer.

use std::time::{Duration, Instant};

use crate::{
    camera, counter, forwarder, media, open, proxy, registry, rtsp, running_streams, sessions, url,
};

const VIEWERS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_viewers_share_one_rtsp_session_which_stops_when_idle() {
    let camera = camera();
    let registry = registry().await;
    let media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("sub_stream", rtsp(&camera, "/sub_stream"))],
        |c| c.idle_stop_ms = 1000,
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy(&registry).await;
    let address = url(&proxy, "/realtime-ServiceA-NameSpaceA/sub_stream/0.flv");

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..VIEWERS {
        let address = address.clone();
        tasks.spawn(async move {
            let mut viewer = open(&address).await;
            assert_eq!(viewer.status(), 200);
            viewer
                .until_key_frame(Duration::from_secs(15))
                .await
                .unwrap()
                .is_some()
        });
    }
    let mut started = 0;
    while let Some(ok) = tasks.join_next().await {
        started += usize::from(ok.unwrap());
    }
    assert_eq!(started, VIEWERS, "every viewer got a key frame");
    assert_eq!(sessions(&camera, "/sub_stream"), 1, "camera side");
    assert_eq!(
        counter(&media, "streamgate_rtsp_sessions_total", "sub_stream").await,
        1.0
    );

    // All viewers are gone (their tasks ended); the pull stops after the 1 s idle time.
    let left = Instant::now();
    while running_streams(&media)
        .await
        .contains(&"sub_stream".to_owned())
    {
        assert!(
            left.elapsed() < Duration::from_secs(10),
            "the pull did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        left.elapsed() >= Duration::from_millis(900),
        "stopped before the idle time"
    );

    let mut again = open(&address).await;
    assert_eq!(again.status(), 200);
    assert!(
        again
            .until_key_frame(Duration::from_secs(15))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        sessions(&camera, "/sub_stream"),
        2,
        "a new pull after the stop"
    );
    assert_eq!(
        counter(&media, "streamgate_rtsp_sessions_total", "sub_stream").await,
        2.0
    );
}
