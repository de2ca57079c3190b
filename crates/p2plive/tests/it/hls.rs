//! Issue 16 item 2: a peer's and the CDN's `/live.m3u8` are live HLS playlists that ffmpeg's
//! HLS demuxer plays; their media sequence advances while the stream runs, and they end with
//! `#EXT-X-ENDLIST` after the end. Every part runs as its own process.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Infra, http, wait_done, wait_joined};

/// A media playlist as a player reads it (RFC 8216 §4.3), checked for the tags it needs.
#[derive(Debug)]
struct Playlist {
    target: u64,
    sequence: u64,
    /// (duration s, URI)
    segments: Vec<(f64, String)>,
    ended: bool,
}

fn parse(text: &str) -> Playlist {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("#EXTM3U"), "{text}");
    let (mut version, mut target, mut sequence) = (None, None, None);
    let mut segments = Vec::new();
    let mut ended = false;
    let mut pending: Option<f64> = None;
    for line in lines {
        assert!(!ended, "a line after #EXT-X-ENDLIST: {text}");
        if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
            version = Some(v.parse::<u32>().unwrap());
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = Some(v.parse::<u64>().unwrap());
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            sequence = Some(v.parse::<u64>().unwrap());
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let (duration, _title) = v.split_once(',').unwrap();
            pending = Some(duration.parse().unwrap());
        } else if line == "#EXT-X-ENDLIST" {
            ended = true;
        } else if line.starts_with('#') {
            panic!("unexpected tag {line}: {text}");
        } else {
            let duration = pending.take().expect("a URI without #EXTINF");
            segments.push((duration, line.to_owned()));
        }
    }
    assert_eq!(version, Some(3), "{text}");
    let (target, sequence) = (target.unwrap(), sequence.unwrap());
    for (i, (duration, uri)) in segments.iter().enumerate() {
        // Media sequence number = block number; EXTINF rounded <= target duration.
        assert_eq!(uri, &format!("hls/{}.ts", sequence + i as u64), "{text}");
        assert!(duration.round() as u64 <= target, "{text}");
    }
    Playlist {
        target,
        sequence,
        segments,
        ended,
    }
}

async fn playlist(url: &str) -> Playlist {
    let response = http().get(url).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    // A web player (hls.js) on another origin may read it.
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    parse(&response.text().await.unwrap())
}

/// ffmpeg's HLS demuxer reads 3 s of `url` (a live playlist) and decodes them; its errors.
fn ffmpeg_reads(url: &str) -> Result<(), String> {
    let out = Command::new(testkit::require("ffmpeg"))
        .args([
            "-nostdin", "-v", "error", "-i", url, "-t", "3", "-f", "null", "-",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() && stderr.is_empty() {
        Ok(())
    } else {
        Err(format!("{url}: {} {stderr}", out.status))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_a_peer_and_the_cdn_live_m3u8_which_slide_and_end() {
    let dir = testkit::tempdir();
    let clip = crate::make_clip(dir.path(), "hls.ts", 20);
    let infra = Infra::start(&["--min-substreams", "2", "--max-substreams", "2"]);
    let speed = 2.0;
    let peers: Vec<_> = (0..2).map(|_| infra.peer(speed, &[])).collect();
    let refs: Vec<_> = peers.iter().collect();
    wait_joined(&infra, &refs).await;
    let _origin = infra.origin(clip.to_str().unwrap(), speed);

    let peer_m3u8 = peers[0].url("/live.m3u8");
    let cdn_m3u8 = infra.cdn.url("/live.m3u8");
    // Wait until both list at least 3 segments (ffmpeg starts 3 from the live edge).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (p, c) = (playlist(&peer_m3u8).await, cdn_playlist(&cdn_m3u8).await);
        if p.segments.len() >= 3 && c.as_ref().is_some_and(|c| c.segments.len() >= 3) {
            assert!(!p.ended, "ended while live: {p:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no playlist: {p:?} {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let players: Vec<_> = [peer_m3u8.clone(), cdn_m3u8.clone()]
        .into_iter()
        .map(|url| tokio::task::spawn_blocking(move || ffmpeg_reads(&url)))
        .collect();

    // While the stream runs, the peer's and the CDN's media sequence numbers advance.
    let mut seen = (Vec::new(), Vec::new());
    let ended = tokio::spawn({
        let infra_cdn = infra.cdn_url();
        async move {
            loop {
                let m = crate::get_json(&format!("{infra_cdn}/streams/live/manifest")).await;
                if !m["end"].is_null() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    while !ended.is_finished() {
        let p = playlist(&peer_m3u8).await;
        let c = playlist(&cdn_m3u8).await;
        if p.ended || c.ended {
            // Read after the playlists: the origin must have ended the stream by then.
            let m = crate::get_json(&format!("{}/streams/live/manifest", infra.cdn_url())).await;
            assert!(
                !m["end"].is_null(),
                "#EXT-X-ENDLIST while live: {p:?} {c:?}"
            );
        }
        assert!(
            p.segments.len() <= 6 && c.segments.len() <= 6,
            "{p:?} {c:?}"
        );
        assert!(p.target >= 1 && c.target >= 1);
        seen.0.push(p.sequence);
        seen.1.push(c.sequence);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for players in [&seen.0, &seen.1] {
        assert!(
            players.windows(2).all(|w| w[0] <= w[1]),
            "went back: {players:?}"
        );
        assert!(
            players.last() > players.first(),
            "media sequence never advanced: {players:?}"
        );
    }
    for player in players {
        player.await.unwrap().unwrap();
    }

    // After the end both playlists end with #EXT-X-ENDLIST; a segment is its block's bytes.
    wait_done(&refs, Duration::from_secs(30)).await;
    for url in [&peer_m3u8, &cdn_m3u8] {
        let p = playlist(url).await;
        assert!(p.ended, "{url}: no #EXT-X-ENDLIST after the end: {p:?}");
        assert!(!p.segments.is_empty(), "{url}: {p:?}");
    }
    let p = playlist(&peer_m3u8).await;
    let newest = p.sequence + p.segments.len() as u64 - 1;
    let response = http()
        .get(peers[0].url(&format!("/hls/{newest}.ts")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "video/mp2t");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let segment = response.bytes().await.unwrap();
    let block =
        crate::get_bytes(&format!("{}/streams/live/blocks/{newest}", infra.cdn_url())).await;
    assert_eq!(&segment[..], &block[..]);
}

/// The CDN's playlist, `None` before the origin published anything (404).
async fn cdn_playlist(url: &str) -> Option<Playlist> {
    let response = http().get(url).send().await.unwrap();
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    Some(parse(&response.text().await.unwrap()))
}
