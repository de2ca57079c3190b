//! Bounded latency: a viewer reading at half rate is skipped ahead and never falls more than
//! 3 s behind live; a viewer joining a 10 s-GOP camera starts with the cached key frame (at
//! most one GOP old) and catches up with live.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::{
    camera, camera_with_files, counter, forwarder, make_clip, media, open, proxy, registry, rtsp,
    url,
};

/// Reads video frames for `window` and records when each timestamp arrived.
async fn record_arrivals(
    viewer: &mut streamgate::viewer::Viewer,
    window: Duration,
) -> HashMap<u32, Instant> {
    let until = tokio::time::Instant::now() + window;
    let mut seen = HashMap::new();
    while let Ok(Ok(Some((tag, at)))) = tokio::time::timeout_at(until, viewer.next_tag()).await {
        if tag.is_video_frame() {
            seen.entry(tag.timestamp_ms).or_insert(at);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_rate_reader_never_falls_more_than_3_s_behind() {
    let camera = camera();
    let registry = registry().await;
    let _media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("sub_stream", rtsp(&camera, "/sub_stream"))],
        |_| {},
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy(&registry).await;
    let address = url(&proxy, "/realtime-ServiceA-NameSpaceA/sub_stream/0.flv");
    let mut fast = open(&address).await;
    assert!(
        fast.until_key_frame(Duration::from_secs(15))
            .await
            .unwrap()
            .is_some()
    );
    // A viewer whose network link is its bottleneck: a small receive buffer, so its backlog
    // waits at the proxy (on loopback, the kernel's default 128 KiB would hold 3 s of this
    // 0.3 Mbit/s stream out of the server's sight).
    let client = streamgate::viewer::client_with_recv_buffer(4 * 1024, Duration::from_secs(10));
    let mut slow = streamgate::viewer::Viewer::open(&client, &address)
        .await
        .unwrap();
    assert_eq!(slow.status(), 200);
    assert!(
        slow.until_key_frame(Duration::from_secs(5))
            .await
            .unwrap()
            .is_some()
    );

    // The fast viewer records live arrivals; the slow one consumes stream time at half the
    // rate it is produced, for 10 s.
    const READ_FOR: Duration = Duration::from_secs(10);
    let reference =
        tokio::spawn(
            async move { record_arrivals(&mut fast, READ_FOR + Duration::from_secs(1)).await },
        );
    let started = Instant::now();
    let mut consumed = Vec::new();
    let mut stream_time = 0_u64;
    let mut last_ts: Option<u32> = None;
    while started.elapsed() < READ_FOR {
        let Some((tag, _)) = slow.next_tag().await.unwrap() else {
            break;
        };
        if !tag.is_video_frame() {
            continue;
        }
        // Advance by the frame's duration (a skip's jump counts as one frame).
        let step = last_ts.map_or(40, |l| {
            u64::from(tag.timestamp_ms.saturating_sub(l)).min(40)
        });
        last_ts = Some(tag.timestamp_ms);
        stream_time += step;
        consumed.push((tag.timestamp_ms, Instant::now()));
        let due = started + Duration::from_millis(stream_time * 2);
        tokio::time::sleep_until(due.into()).await;
    }
    let arrivals = reference.await.unwrap();
    let behind: Vec<Duration> = consumed
        .iter()
        .filter_map(|(ts, at)| Some(at.saturating_duration_since(*arrivals.get(ts)?)))
        .collect();
    assert!(behind.len() >= 100, "{} frames matched", behind.len());
    let worst = behind.iter().max().copied().unwrap();
    let skips = counter(
        &proxy,
        "streamgate_proxy_viewer_skips_total",
        "ServiceA-NameSpaceA/sub_stream/0",
    )
    .await;
    eprintln!("half-rate reader: at most {worst:?} behind live, skipped {skips} times");
    assert!(
        worst <= Duration::from_secs(3),
        "the slow viewer fell {worst:?} behind live"
    );
    // Without skips it would be 5 s behind after 10 s of half-rate reading.
    assert!(skips >= 1.0, "the slow viewer was never skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_of_a_10_s_gop_camera_starts_at_most_one_gop_behind_and_catches_up() {
    let dir = testkit::tempdir();
    let clip = make_clip(dir.path(), "gop10.mp4", 14, 250);
    let camera = camera_with_files(&[("gop10", &clip)]);
    let registry = registry().await;
    let _media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("gop10", rtsp(&camera, "/once/gop10"))],
        |_| {},
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy(&registry).await;
    let address = url(&proxy, "/realtime-ServiceA-NameSpaceA/gop10/0.flv");
    let mut early = open(&address).await;
    let (_, key, key_at) = early
        .until_key_frame(Duration::from_secs(15))
        .await
        .unwrap()
        .expect("no key frame");
    // Follow the stream until 4.5 s into the 10 s group of pictures.
    let mut arrivals = HashMap::new();
    loop {
        let (tag, at) = early.next_tag().await.unwrap().unwrap();
        if tag.is_video_frame() {
            arrivals.insert(tag.timestamp_ms, at);
            assert!(!tag.is_key_frame(), "a second key frame within 10 s");
            if tag.timestamp_ms >= key.timestamp_ms + 4500 {
                break;
            }
        }
    }
    let requested = Instant::now();
    let mut late = open(&address).await;
    let early_task = tokio::spawn(async move {
        let more = record_arrivals(&mut early, Duration::from_secs(3)).await;
        arrivals.extend(more);
        arrivals
    });
    let (_, first, first_at) = late
        .until_key_frame(Duration::from_secs(2))
        .await
        .unwrap()
        .expect("the late viewer waited for the next key frame instead of starting at once");
    assert!(
        first_at - requested < Duration::from_millis(1500),
        "first frame after {:?}",
        first_at - requested
    );
    assert!(
        key_at.elapsed() <= Duration::from_secs(10),
        "the first picture is the cached key frame, at most one GOP old"
    );
    // A player presents frame f at first_at + (ts(f) - ts(first)). For live frames (the
    // ones the early viewer also got), how far behind their live arrival is that?
    let mut live = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(Some((tag, _)))) = tokio::time::timeout_at(until, late.next_tag()).await {
        if tag.is_video_frame() {
            live.push(tag.timestamp_ms);
        }
    }
    let arrivals = early_task.await.unwrap();
    let lags: Vec<i64> = live
        .iter()
        .filter_map(|ts| {
            let arrived = arrivals.get(ts)?;
            let presented = first_at + Duration::from_millis(u64::from(ts - first.timestamp_ms));
            Some(i64::try_from(presented.saturating_duration_since(*arrived).as_millis()).unwrap())
        })
        .collect();
    assert!(lags.len() >= 25, "{} live frames matched", lags.len());
    let worst = lags.iter().max().copied().unwrap();
    assert!(
        worst <= 1500,
        "a 1x player of the late viewer stays {worst} ms behind live (v1: the GOP's age, 4.5 s)"
    );
}
