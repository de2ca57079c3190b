//! HLS and WebSocket-FLV out (issue 12 item 8): the live playlist and its segments through
//! the proxy (signed URLs, the signature carried into the segment URIs), decoded by ffmpeg
//! with no error, every segment starting with a key frame, from the same camera pull as
//! HTTP-FLV; WebSocket-FLV with one FLV tag per message.

use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use streamgate::auth;
use streamgate::flv::FlvReader;
use svckit::redact::Secret;
use tokio_tungstenite::tungstenite::Message;

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
    assert_eq!(later.target, longest.ceil() as u64, "{later:?}");
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
async fn websocket_flv_sends_one_tag_per_message_and_refuses_like_flv() {
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
        c.auth.cors_origins = vec!["http://player.example".to_owned()];
    })
    .await;
    let path = "/realtime-ServiceA-NameSpaceA/main_stream/0.flv";
    let query = signed_query("main_stream");
    let connect = |uri: String, origin: Option<&'static str>| async move {
        let stream = tokio::net::TcpStream::connect(proxy_addr(&uri))
            .await
            .unwrap();
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                uri.as_str(),
            )
            .unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        tokio_tungstenite::client_async(request, stream).await
    };
    let ws = |q: &str| format!("ws://{}{path}{q}", proxy.addr());

    // Unsigned, and signed from an origin that is not allowed: HTTP refusals, no upgrade.
    for (uri, origin, status) in [
        (ws(""), None, 401),
        (ws(&format!("?{query}")), Some("http://evil.example"), 403),
    ] {
        match connect(uri, origin).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), status);
            }
            other => panic!("expected HTTP {status}, got {:?}", other.map(|_| ())),
        }
    }

    let (mut socket, response) = connect(ws(&format!("?{query}")), Some("http://player.example"))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    let mut reader = FlvReader::new();
    let mut messages = 0;
    let mut key_frames = 0;
    let mut last_video_dts = None;
    let mut video_frames = 0;
    let mut avc_config = false;
    while video_frames < 75 {
        let message = tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .expect("a message in time")
            .unwrap()
            .unwrap();
        let Message::Binary(data) = message else {
            continue;
        };
        reader.push(&data);
        if messages == 0 {
            assert_eq!(data.len(), 13, "the first message is the FLV header");
            assert!(reader.next_tag().unwrap().is_none());
            let header = reader.header().unwrap();
            assert!(header.has_video && header.has_audio);
        } else {
            let tag = reader.next_tag().unwrap().expect("a whole tag per message");
            assert_eq!(reader.buffered(), 0, "exactly one tag per message");
            if messages == 1 {
                let config =
                    tag.is_script() || tag.is_avc_sequence_header() || tag.is_aac_sequence_header();
                assert!(config, "configuration first, not {tag:?}");
            }
            avc_config |= tag.is_avc_sequence_header();
            if tag.is_video_frame() {
                if video_frames == 0 {
                    assert!(avc_config, "the AVC sequence header before any frame");
                    assert!(tag.is_key_frame(), "the first frame is a key frame");
                }
                video_frames += 1;
                key_frames += usize::from(tag.is_key_frame());
                if let Some(last) = last_video_dts {
                    assert!(tag.timestamp_ms >= last, "DTS goes back");
                }
                last_video_dts = Some(tag.timestamp_ms);
            }
        }
        messages += 1;
    }
    assert!(
        key_frames >= 2,
        "{key_frames} key frames in 75 frames of a 1 s GOP"
    );
    socket.close(None).await.unwrap();

    // An upgraded connection still counts against the per-address cap until it closes.
    let capped = proxy_with(&registry, |c| c.connections.max_connections_per_addr = 1).await;
    let ws = format!("ws://{}{path}", capped.addr());
    let (mut first, _) = connect(ws.clone(), None).await.unwrap();
    assert!(matches!(first.next().await, Some(Ok(Message::Binary(_)))));
    match connect(ws.clone(), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("a second connection got {:?}", other.map(|_| ())),
    }
    first.close(None).await.unwrap();
    drop(first);
    let freed = std::time::Instant::now();
    loop {
        if connect(ws.clone(), None).await.is_ok() {
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "the slot was not freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn proxy_addr(ws_url: &str) -> String {
    ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
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
