//! The smaller defects of v1: the frames held by the DTS reorder buffer reach the viewer at
//! the end of a session, and an H.265 camera is refused with its real reason.

use std::time::Duration;

use crate::{
    camera, camera_with_files, forwarder, get, make_clip, media, open, proxy, registry, rtsp, url,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_of_a_finished_session_reaches_the_viewer() {
    let dir = testkit::tempdir();
    // 3 s at 25 fps with B-frames: 75 frames, the last two held back by the reorder buffer.
    let clip = make_clip(dir.path(), "short.mp4", 3, 25);
    let camera = camera_with_files(&[("short", &clip)]);
    let registry = registry().await;
    let media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("short", rtsp(&camera, "/once/short"))],
        |c| c.frame_timeout_ms = 1000,
    )
    .await;
    let mut viewer = open(&url(&media, "/short/0.flv")).await;
    assert_eq!(viewer.status(), 200);
    let mut frames = 0;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some((tag, _)) = viewer.next_tag().await.unwrap() {
            frames += u32::from(tag.is_video_frame());
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end with the session");
    assert_eq!(
        frames, 75,
        "every frame of the clip, including the reordered tail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_camera_is_refused_with_its_codec_named() {
    let camera = camera();
    let registry = registry().await;
    let _media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("hevc", rtsp(&camera, "/h265_stream"))],
        |_| {},
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy(&registry).await;
    let (status, body, _) = get(&url(&proxy, "/realtime-ServiceA-NameSpaceA/hevc/0.flv")).await;
    assert_eq!(status, 502, "{body}");
    let reason = body["error"].as_str().unwrap();
    assert!(
        reason.contains("video/h265") && reason.contains("H.264"),
        "the viewer is told the real reason, not \"camera unreachable\": {reason}"
    );
    assert_eq!(body["retry"], "never");
}
