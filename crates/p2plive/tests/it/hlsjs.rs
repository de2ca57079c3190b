//! Issue 16 item 2: hls.js in headless Chromium plays a peer's and the CDN's `/live.m3u8`
//! (a page on another origin, so this also needs the playlists' CORS header) and its video
//! frames advance. hls.js comes from `scripts/setup` (npm, `.tools/node_modules/hls.js`;
//! env `HLSJS_MIN_JS` names another copy of `hls.min.js`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::{Infra, wait_joined};

/// The player page: hls.js plays `?src=`, and twice a second the page reports the video
/// frames presented so far, the playback position, and hls.js's fatal errors and the others
/// (which hls.js recovers from, e.g. `bufferSeekOverHole` when it skips the small gap between
/// the audio and video start) to `/report`.
const PAGE: &str = r#"<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script src="hls.min.js"></script><script>
const src = new URLSearchParams(location.search).get('src');
const v = document.getElementById('v');
let frames = 0; const errors = [], recovered = [];
const count = () => { frames++; v.requestVideoFrameCallback(count); };
v.requestVideoFrameCallback(count);
const hls = new Hls();
hls.on(Hls.Events.ERROR, (e, d) => (d.fatal ? errors : recovered).push(d.type + ':' + d.details));
hls.on(Hls.Events.MANIFEST_PARSED, () => v.play().catch(e => errors.push('play:' + e)));
hls.loadSource(src); hls.attachMedia(v);
setInterval(() => fetch('/report?frames=' + frames + '&position=' + v.currentTime +
  '&errors=' + encodeURIComponent(errors.join('|')) +
  '&recovered=' + encodeURIComponent(recovered.join('|'))), 500);
</script></body></html>"#;

#[derive(Debug, Clone, Deserialize)]
struct Report {
    frames: u64,
    position: f64,
    /// hls.js's fatal errors.
    errors: String,
    /// Errors hls.js recovered from (shown in failures).
    recovered: String,
}

fn hlsjs_path() -> PathBuf {
    let path = std::env::var_os("HLSJS_MIN_JS").map_or_else(
        || testkit::workspace_root().join(".tools/node_modules/hls.js/dist/hls.min.js"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "hls.js is missing at {}: run scripts/setup p2plive (npm hls.js)",
        path.display()
    );
    path
}

/// Serves the page and hls.js on 127.0.0.1 and forwards the page's reports.
async fn page_server(script: Vec<u8>) -> (String, mpsc::Receiver<Report>) {
    let (tx, rx) = mpsc::channel(256);
    let app = Router::new()
        .route(
            "/play.html",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], PAGE) }),
        )
        .route(
            "/hls.min.js",
            get(move || async move { ([(header::CONTENT_TYPE, "text/javascript")], script) }),
        )
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

/// Headless Chromium plays `src` through hls.js until its video has presented 50 frames
/// and advanced 1 s; fails on a fatal hls.js error or after 40 s.
async fn plays(page: &str, reports: &mut mpsc::Receiver<Report>, src: &str) {
    let _chromium = testkit::Peer::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--autoplay-policy=no-user-gesture-required",
            "--user-data-dir={dir}",
            &format!("{page}/play.html?src={src}"),
        ])
        .ready(testkit::Ready::Started)
        .start();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut first: Option<Report> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = tokio::time::timeout(left, reports.recv())
            .await
            .unwrap_or_else(|_| panic!("{src}: no progress in time, first report {first:?}"))
            .unwrap();
        assert!(
            report.errors.is_empty(),
            "{src}: fatal hls.js errors: {report:?}"
        );
        if report.frames == 0 {
            continue;
        }
        let start = first.get_or_insert_with(|| report.clone());
        if report.frames >= start.frames + 50 && report.position >= start.position + 1.0 {
            if !report.recovered.is_empty() {
                tracing::info!(src, recovered = %report.recovered, "hls.js recovered");
            }
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlsjs_in_chromium_plays_a_peer_and_the_cdn_live_m3u8() {
    let script = fs_err::read(hlsjs_path()).unwrap();
    testkit::require("chromium");
    let dir = testkit::tempdir();
    let clip = crate::make_clip(dir.path(), "hlsjs.ts", 40);
    let infra = Infra::start(&["--min-substreams", "2", "--max-substreams", "2"]);
    let speed = 1.0;
    // A 4-block playout delay: the peer's playlist lists blocks played, and hls.js fails on
    // a playlist still empty when it loads it.
    let peers: Vec<_> = (0..2)
        .map(|_| infra.peer(speed, &["--playout-delay-blocks", "4"]))
        .collect();
    wait_joined(&infra, &peers.iter().collect::<Vec<_>>()).await;
    let _origin = infra.origin(clip.to_str().unwrap(), speed);
    infra.wait_cut(3, Duration::from_secs(30)).await;

    let (page, mut reports) = page_server(script).await;
    plays(&page, &mut reports, &peers[0].url("/live.m3u8")).await;
    while reports.try_recv().is_ok() {}
    plays(&page, &mut reports, &infra.cdn.url("/live.m3u8")).await;
}
