//! The GOP cache: a late viewer starts at once with the FLV header, the sequence headers and
//! the latest key frame, taken from the cache rather than waiting for the camera.

use std::time::Duration;

use crate::{camera, forwarder, media, open, proxy, registry, rtsp, sessions, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_viewer_starts_with_header_sequence_headers_and_a_cached_key_frame() {
    let camera = camera();
    let registry = registry().await;
    let _media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("main_stream", rtsp(&camera, "/main_stream"))],
        |_| {},
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy(&registry).await;
    let path = url(&proxy, "/realtime-ServiceA-NameSpaceA/main_stream/0.flv");

    // The early viewer keeps the stream running and tracks the newest frame.
    let mut early = open(&path).await;
    if early.status() != 200 {
        let status = early.status();
        panic!(
            "early viewer: {status} {}\ncamera log:\n{}",
            early.text().await.unwrap(),
            camera.log()
        );
    }
    let (_, key, _) = early
        .until_key_frame(Duration::from_secs(15))
        .await
        .unwrap()
        .expect("early viewer: no key frame");
    // Read live frames until the newest is 200-600 ms into a group of pictures (the camera's
    // GOP is 1 s), so the cache holds a group that began in the past and the next key frame
    // is far away.
    let mut last_key = key.timestamp_ms;
    let mut newest = key.timestamp_ms;
    let mut groups = 0;
    loop {
        let (tag, _) = early.next_tag().await.unwrap().unwrap();
        if !tag.is_video_frame() {
            continue;
        }
        if tag.is_key_frame() {
            last_key = tag.timestamp_ms;
            groups += 1;
        }
        newest = newest.max(tag.timestamp_ms);
        let into_group = newest - last_key;
        if groups >= 1 && (200..=600).contains(&into_group) {
            break;
        }
    }

    let mut late = open(&path).await;
    assert_eq!(late.status(), 200);
    let mut first = Vec::new();
    while first.len() < 4 {
        let (tag, _) = late.next_tag().await.unwrap().unwrap();
        first.push(tag);
    }
    let header = late.header().unwrap();
    assert!(
        header.has_video && header.has_audio,
        "the clip has AAC: {header:?}"
    );
    assert!(
        first[0].is_script(),
        "onMetaData first: {:?}",
        first[0].tag_type
    );
    assert!(first[1].is_avc_sequence_header());
    assert!(first[2].is_aac_sequence_header());
    assert!(
        first[3].is_key_frame(),
        "then a key frame, before any other frame"
    );
    assert!(
        first[3].timestamp_ms <= newest,
        "the key frame ({} ms) came from the cache, not from the camera after the join (newest {} ms)",
        first[3].timestamp_ms,
        newest
    );
    assert_eq!(
        sessions(&camera, "/main_stream"),
        1,
        "both viewers share one pull"
    );
}
