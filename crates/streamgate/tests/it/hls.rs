//! HLS and WebSocket-FLV out (issue 12 item 8): the live playlist and its segments through
//! the proxy (signed URLs, the signature carried into the segment URIs), decoded by ffmpeg
//! with no error, every segment starting with a key frame, from the same camera pull as
//! HTTP-FLV; a segmenting session only while someone asks.

use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use streamgate::auth;
use svckit::redact::Secret;

use crate::{camera, forwarder, media, open, proxy_with, registry, rtsp, sessions, url};

pub(crate) const KEY: &str = "hls-signing-key-0123456789";

/// `GET url`: status, headers, whole body.
pub(crate) async fn fetch(url: &str) -> (StatusCode, HeaderMap, Bytes) {
    let client = streamgate::viewer::client(Duration::from_secs(30));
    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let response = client.send(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

/// The signed query string of `stream` (channel 0) in `ServiceA-NameSpaceA`, valid 10 min.
pub(crate) fn signed_query(stream: &str) -> String {
    let resource = auth::resource("ServiceA-NameSpaceA", stream, 0);
    let expires = auth::unix_seconds(SystemTime::now()) + 600;
    auth::sign(&resource, "k1", &Secret::new(KEY), expires)
}

/// A parsed live playlist.
#[derive(Debug)]
pub(crate) struct Playlist {
    pub(crate) version: u32,
    pub(crate) target: u64,
    pub(crate) sequence: u64,
    /// (duration s, URI)
    pub(crate) segments: Vec<(f64, String)>,
    pub(crate) ended: bool,
}

pub(crate) fn parse_playlist(text: &str) -> Playlist {
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    let value = |tag: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag} in {text}"))
            .to_owned()
    };
    let mut segments = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(extinf) = line.strip_prefix("#EXTINF:") {
            let duration: f64 = extinf.trim_end_matches(',').parse().unwrap();
            segments.push((duration, lines.next().unwrap().to_owned()));
        }
    }
    Playlist {
        version: value("#EXT-X-VERSION:").parse().unwrap(),
        target: value("#EXT-X-TARGETDURATION:").parse().unwrap(),
        sequence: value("#EXT-X-MEDIA-SEQUENCE:").parse().unwrap(),
        segments,
        ended: text.contains("#EXT-X-ENDLIST"),
    }
}

/// The first video packet's flags of the TS at `url`, by ffprobe.
fn first_video_flags(ffprobe: &std::path::Path, url: &str) -> String {
    let out = Command::new(ffprobe)
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args([
            "packet=flags",
            "-read_intervals",
            "%+#1",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_through_the_proxy_decodes_with_key_frame_segments_from_the_same_pull() {
    let ffprobe = testkit::require("ffprobe");
    let ffmpeg = testkit::require("ffmpeg");
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
    let proxy = proxy_with(&registry, |c| {
        c.auth.keys = [("k1".to_owned(), Secret::new(KEY))].into_iter().collect();
    })
    .await;
    let base = "/realtime-ServiceA-NameSpaceA/main_stream/0";
    let query = signed_query("main_stream");

    // Unsigned: refused like FLV.
    let (status, _, body) = fetch(&url(&proxy, &format!("{base}/index.m3u8"))).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));

    // An FLV viewer first, then HLS of the same stream: one RTSP session for both.
    let flv = url(
        &proxy,
        &format!("/realtime-ServiceA-NameSpaceA/main_stream/0.flv?{query}"),
    );
    let mut viewer = open(&flv).await;
    assert_eq!(viewer.status(), 200);
    viewer
        .until_key_frame(Duration::from_secs(15))
        .await
        .unwrap()
        .unwrap();

    let playlist_url = url(&proxy, &format!("{base}/index.m3u8?{query}"));
    let (status, headers, body) = fetch(&playlist_url).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(headers["cache-control"], "no-cache");
    let first = parse_playlist(&String::from_utf8_lossy(&body));
    assert_eq!(first.version, 3);
    assert!(!first.ended, "no ENDLIST while live");
    assert!(!first.segments.is_empty());
    for (_, uri) in &first.segments {
        assert!(
            uri.starts_with("seg-") && uri.ends_with(&format!(".ts?{query}")),
            "{uri}"
        );
    }

    // Decoded by ffmpeg's HLS demuxer, through the proxy, with no error.
    let out = tokio::task::block_in_place(|| {
        Command::new(&ffmpeg)
            .args(["-nostdin", "-v", "error", "-i", &playlist_url])
            .args(["-t", "4", "-f", "null", "-"])
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "",
        "decode errors"
    );

    // The window has moved on meanwhile: real durations, target = ceil(max), every segment
    // from a key frame, immutable, signed like the playlist.
    let (_, _, body) = fetch(&playlist_url).await;
    let later = parse_playlist(&String::from_utf8_lossy(&body));
    assert!(
        later.sequence + later.segments.len() as u64 > first.sequence + 1,
        "{later:?}"
    );
    assert!(later.segments.len() >= 2, "{later:?}");
    let longest = later.segments.iter().map(|s| s.0).fold(0.0, f64::max);
    // The target never decreases (RFC 8216 §6.2.1: it must not change), so an older, longer
    // segment may have set it; every segment lasts at most 2 s + one 1 s GOP.
    assert!(
        later.target >= longest.ceil() as u64 && later.target <= 3,
        "{later:?}"
    );
    for (duration, uri) in &later.segments {
        // The clip has a key frame every second: a 2 s target cuts at 2 s (+ one frame).
        assert!((1.9..=3.1).contains(duration), "{duration} s in {later:?}");
        let segment_url = url(&proxy, &format!("{base}/{uri}"));
        let (status, headers, data) = fetch(&segment_url).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "video/mp2t");
        assert!(
            headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert_eq!(data.len() % 188, 0);
        assert!(data.chunks(188).all(|p| p[0] == 0x47), "sync bytes");
        let flags = tokio::task::block_in_place(|| first_video_flags(&ffprobe, &segment_url));
        assert!(
            flags.starts_with('K'),
            "{uri}: first video packet flags {flags:?}"
        );
        let unsigned = url(
            &proxy,
            &format!("{base}/{}", uri.split('?').next().unwrap()),
        );
        assert_eq!(fetch(&unsigned).await.0, 401);
    }
    // A segment that fell out of the window.
    let gone = url(
        &proxy,
        &format!("{base}/seg-{}.ts?{query}", later.sequence - 1),
    );
    assert_eq!(fetch(&gone).await.0, 404);
    assert_eq!(sessions(&camera, "/main_stream"), 1, "{}", camera.log());
    drop(viewer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_segments_only_while_asked_and_refuses_like_flv() {
    let camera = camera();
    let registry = registry().await;
    let media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("sub_stream", rtsp(&camera, "/sub_stream"))],
        |c| {
            c.idle_stop_ms = 300;
            c.hls.idle_stop_ms = 1500;
        },
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy_with(&registry, |_| {}).await;
    let base = "/realtime-ServiceA-NameSpaceA";
    // Unknown stream, malformed file, unknown service: the FLV answers.
    assert_eq!(
        fetch(&url(&proxy, &format!("{base}/nope/0/index.m3u8")))
            .await
            .0,
        404
    );
    assert_eq!(
        fetch(&url(&proxy, &format!("{base}/sub_stream/0/live.m3u8")))
            .await
            .0,
        400
    );
    assert_eq!(
        fetch(&url(
            &proxy,
            "/realtime-ServiceZ-NameSpaceA/sub_stream/0/index.m3u8"
        ))
        .await
        .0,
        404
    );
    assert_eq!(
        fetch(&url(&proxy, &format!("{base}/sub_stream/0/seg-1.ts")))
            .await
            .0,
        404
    );
    assert!(
        crate::running_streams(&media).await.is_empty(),
        "nothing pulled yet"
    );

    let playlist = url(&proxy, &format!("{base}/sub_stream/0/index.m3u8"));
    let (status, _, body) = fetch(&playlist).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let first = parse_playlist(&String::from_utf8_lossy(&body));
    let hls = |body: &serde_json::Value| body["hls"].as_array().unwrap().len();
    let (_, streams, _) = crate::get(&format!("http://{}/v1/streams", media.metrics_addr())).await;
    assert_eq!(hls(&streams), 1, "{streams}");
    assert_eq!(
        crate::running_streams(&media).await,
        vec!["sub_stream".to_owned()]
    );

    // Nobody asks: the session ends after its idle time, then the pull after its linger.
    let started = std::time::Instant::now();
    loop {
        let (_, streams, _) =
            crate::get(&format!("http://{}/v1/streams", media.metrics_addr())).await;
        if hls(&streams) == 0 && streams["running"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still segmenting: {streams}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "stopped before its idle time"
    );
    // Segments of the old session are gone; a new session numbers on from a later second.
    let old = url(
        &proxy,
        &format!("{base}/sub_stream/0/{}", first.segments[0].1),
    );
    assert_eq!(fetch(&old).await.0, 404);
    let (status, _, body) = fetch(&playlist).await;
    assert_eq!(status, 200);
    let second = parse_playlist(&String::from_utf8_lossy(&body));
    assert!(
        second.sequence > first.sequence,
        "{first:?} then {second:?}"
    );
    assert_eq!(
        sessions(&camera, "/sub_stream"),
        2,
        "a new pull for the new session"
    );
}
