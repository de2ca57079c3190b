//! WebSocket-FLV out (issue 12 item 8): the FLV header and then one FLV tag per binary
//! message through the proxy, refused like FLV before the upgrade, upgraded sockets inside the
//! connection cap, and the bounded-latency rule of HTTP-FLV: a viewer reading at half rate is
//! skipped ahead and never falls more than 3 s behind live.

use std::time::{Duration, Instant};

use futures::StreamExt;
use streamgate::flv::FlvReader;
use svckit::redact::Secret;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::hls::{KEY, signed_query};
use crate::{camera, counter, forwarder, media, open, proxy, proxy_with, registry, rtsp, url};

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
    let freed = Instant::now();
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
async fn a_half_rate_websocket_reader_is_skipped_and_never_falls_more_than_3_s_behind() {
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
    let path = "/realtime-ServiceA-NameSpaceA/sub_stream/0.flv";
    let mut fast = open(&url(&proxy, path)).await;
    assert!(
        fast.until_key_frame(Duration::from_secs(15))
            .await
            .unwrap()
            .is_some()
    );
    // A viewer whose link is its bottleneck: 4 KiB of kernel receive buffer and of
    // WebSocket read buffer, so its backlog waits at the proxy.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(proxy.addr()).await.unwrap();
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut slow, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{}{path}", proxy.addr()),
        stream,
        Some(config),
    )
    .await
    .unwrap();

    const READ_FOR: Duration = Duration::from_secs(10);
    let reference = tokio::spawn(async move {
        let until = tokio::time::Instant::now() + READ_FOR + Duration::from_secs(1);
        let mut seen = std::collections::HashMap::new();
        while let Ok(Ok(Some((tag, at)))) = tokio::time::timeout_at(until, fast.next_tag()).await {
            if tag.is_video_frame() {
                seen.entry(tag.timestamp_ms).or_insert(at);
            }
        }
        seen
    });
    let started = Instant::now();
    let mut reader = FlvReader::new();
    let mut consumed = Vec::new();
    let mut stream_time = 0_u64;
    let mut last_ts: Option<u32> = None;
    while started.elapsed() < READ_FOR {
        let Some(Ok(message)) = slow.next().await else {
            break;
        };
        let Message::Binary(data) = message else {
            continue;
        };
        reader.push(&data);
        let Some(tag) = reader.next_tag().unwrap() else {
            continue;
        };
        if !tag.is_video_frame() {
            continue;
        }
        // Stream time advances by the frame's duration (a skip's jump counts as one frame);
        // it is consumed at half the rate it is produced.
        let step = last_ts.map_or(40, |l| {
            u64::from(tag.timestamp_ms.saturating_sub(l)).min(40)
        });
        last_ts = Some(tag.timestamp_ms);
        stream_time += step;
        consumed.push((tag.timestamp_ms, Instant::now()));
        tokio::time::sleep_until((started + Duration::from_millis(stream_time * 2)).into()).await;
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
    eprintln!("half-rate WebSocket reader: at most {worst:?} behind live, skipped {skips} times");
    assert!(
        worst <= Duration::from_secs(3),
        "fell {worst:?} behind live"
    );
    // Without skips it would be 5 s behind after 10 s of half-rate reading.
    assert!(skips >= 1.0, "the slow viewer was never skipped");
}
