//! Issue 12 item 8 in a browser: headless Chromium plays the proxy's HLS with hls.js and its
//! WebSocket-FLV with mpegts.js (signed URLs, a page on another origin), and the video's
//! `currentTime` advances by more than a second. The players come from `scripts/setup`
//! (npm, `.tools/node_modules/{hls.js,mpegts.js}`), served to the page by the test itself.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::routing::get;
use serde::Deserialize;
use svckit::redact::Secret;
use tokio::sync::mpsc;

use crate::hls::{KEY, signed_query};
use crate::{camera, forwarder, media, proxy_with, registry, rtsp};

/// The page: `?player=hls|mpegts&src=`; twice a second it reports the frames presented,
/// the playback position and the player's errors to `/report`.
const PAGE: &str = r#"<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script src="hls.min.js"></script><script src="mpegts.js"></script><script>
const q = new URLSearchParams(location.search);
const src = q.get('src'), kind = q.get('player');
const v = document.getElementById('v');
let frames = 0; const errors = [];
const count = () => { frames++; v.requestVideoFrameCallback(count); };
v.requestVideoFrameCallback(count);
if (kind === 'hls') {
  const hls = new Hls();
  hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal) errors.push(d.type + ':' + d.details); });
  hls.on(Hls.Events.MANIFEST_PARSED, () => v.play().catch(e => errors.push('play:' + e)));
  hls.loadSource(src); hls.attachMedia(v);
} else {
  if (!mpegts.getFeatureList().mseLivePlayback) errors.push('no MSE live playback');
  const p = mpegts.createPlayer({ type: 'flv', isLive: true, url: src },
    { enableStashBuffer: false, liveBufferLatencyChasing: true });
  p.on(mpegts.Events.ERROR, (t, d, i) => errors.push(t + ':' + d + ':' + JSON.stringify(i)));
  p.attachMediaElement(v); p.load();
  v.play().catch(e => errors.push('play:' + e));
}
setInterval(() => fetch('/report?frames=' + frames + '&position=' + v.currentTime +
  '&errors=' + encodeURIComponent(errors.join('|'))), 500);
</script></body></html>"#;

#[derive(Debug, Clone, Deserialize)]
struct Report {
    frames: u64,
    position: f64,
    errors: String,
}

fn script(package: &str, file: &str) -> Vec<u8> {
    let path: PathBuf = testkit::workspace_root()
        .join(".tools/node_modules")
        .join(package)
        .join("dist")
        .join(file);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup streamgate (npm {package})",
        path.display()
    );
    fs_err::read(path).unwrap()
}

/// Serves the page and both players on 127.0.0.1 and forwards the page's reports.
async fn page_server() -> (String, mpsc::Receiver<Report>) {
    let hls = script("hls.js", "hls.min.js");
    let mpegts = script("mpegts.js", "mpegts.js");
    let (tx, rx) = mpsc::channel(256);
    let js = || [(header::CONTENT_TYPE, "text/javascript")];
    let app = Router::new()
        .route(
            "/play.html",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], PAGE) }),
        )
        .route("/hls.min.js", get(move || async move { (js(), hls) }))
        .route("/mpegts.js", get(move || async move { (js(), mpegts) }))
        .route(
            "/report",
            get(
                |State(tx): State<mpsc::Sender<Report>>, Query(r): Query<Report>| async move {
                    let _ = tx.try_send(r);
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// Chromium plays `src` with `player` until the video presented 25 frames and its
/// `currentTime` advanced more than 1 s; fails on a player error or after 40 s. Returns
/// the position reached.
async fn plays(page: &str, reports: &mut mpsc::Receiver<Report>, player: &str, src: &str) -> f64 {
    let encoded: String = url::form_urlencoded::byte_serialize(src.as_bytes()).collect();
    let _chromium = tokio::task::block_in_place(|| {
        testkit::Peer::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--autoplay-policy=no-user-gesture-required",
                "--user-data-dir={dir}",
                &format!("{page}/play.html?player={player}&src={encoded}"),
            ])
            .ready(testkit::Ready::Started)
            .start()
    });
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut first: Option<Report> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = tokio::time::timeout(left, reports.recv())
            .await
            .unwrap_or_else(|_| panic!("{player}: no progress in time, first report {first:?}"))
            .unwrap();
        assert!(report.errors.is_empty(), "{player}: errors {report:?}");
        if report.frames == 0 {
            continue;
        }
        let start = first.get_or_insert_with(|| report.clone());
        if report.frames >= start.frames + 25 && report.position > start.position + 1.0 {
            return report.position;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_and_mpegts_js_play_the_proxy_in_chromium() {
    testkit::require("chromium");
    let (page, mut reports) = page_server().await;
    let camera = camera();
    let registry = registry().await;
    let _media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[
            ("main_stream", rtsp(&camera, "/main_stream")),
            ("sub_stream", rtsp(&camera, "/sub_stream")),
        ],
        |_| {},
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy_with(&registry, |c| {
        c.auth.keys = [("k1".to_owned(), Secret::new(KEY))].into_iter().collect();
    })
    .await;
    let hls = format!(
        "http://{}/realtime-ServiceA-NameSpaceA/main_stream/0/index.m3u8?{}",
        proxy.addr(),
        signed_query("main_stream")
    );
    plays(&page, &mut reports, "hls", &hls).await;
    while reports.try_recv().is_ok() {}
    let ws = format!(
        "ws://{}/realtime-ServiceA-NameSpaceA/sub_stream/0.flv?{}",
        proxy.addr(),
        signed_query("sub_stream")
    );
    plays(&page, &mut reports, "mpegts", &ws).await;
}
