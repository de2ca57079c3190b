//! The control plane (issue 16, "Control plane bugs"), in-process over real sockets: a peer's
//! CDN subscription follows every change of its assignment, and the origin rides out a CDN
//! that is down. (Ids, session tokens and range checks at the tracker are tested next to it,
//! in `src/tracker.rs`; the open stall in `src/sched.rs`.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use p2plive::cdn::{Cdn, Manifest};
use p2plive::origin::{Input, OriginConfig};
use p2plive::{PeerConfig, PeerHandle, Tracker, TrackerConfig};
use prometheus_client::registry::Registry;
use svckit::redact::Secret;

use crate::{JOIN_TOKEN, PUBLISH_TOKEN, get_bytes, get_json, make_clip, sha256_hex};

/// Serves `router` on a free loopback port; returns its base URL.
async fn serve(router: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, router)
}

fn serve_on(
    listener: tokio::net::TcpListener,
    router: axum::Router,
) -> (String, tokio::task::JoinHandle<()>) {
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (url, task)
}

/// Every subscription a fake CDN received: (peer id, substreams), in arrival order.
type Subscriptions = Arc<Mutex<Vec<(String, String)>>>;

/// A CDN that records each subscription and never answers it (no `Hello` frame ever comes,
/// so the peers' schedulers never start: the window in which the bug hid).
async fn hold_subscription(
    State(log): State<Subscriptions>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let peer = q.get("peer").cloned().unwrap_or_default();
    let substreams = q.get("substreams").cloned().unwrap_or_default();
    log.lock().unwrap().push((peer, substreams));
    std::future::pending::<()>().await;
    ().into_response()
}

fn last_subscription(log: &Subscriptions, peer: u64) -> Option<String> {
    log.lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(p, _)| *p == peer.to_string())
        .map(|(_, s)| s.clone())
}

/// Bug: a peer could stay subscribed at the CDN to a substream it no longer held (its
/// assignment changed before the subscription's first frame, and only a running scheduler
/// resubscribed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cdn_subscription_follows_every_assignment_change() {
    let log: Subscriptions = Arc::default();
    let cdn = axum::Router::new()
        .route(
            "/streams/{id}/subscribe",
            axum::routing::get(hold_subscription),
        )
        .with_state(log.clone());
    let (cdn_url, cdn_task) = serve(cdn).await;
    let tracker = Tracker::new(&TrackerConfig {
        min_substreams: 4,
        max_substreams: 4,
        join_token: Secret::new(JOIN_TOKEN),
        ..TrackerConfig::default()
    })
    .unwrap();
    let (tracker_url, tracker_task) = serve(tracker.router()).await;
    let config = PeerConfig {
        tracker: tracker_url,
        tracker_token: Secret::new(JOIN_TOKEN),
        cdn: cdn_url,
        heartbeat_ms: 50,
        ..PeerConfig::default()
    };

    // Alone, the first peer holds and prefetches all four substreams.
    let first = PeerHandle::start(config.clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while last_subscription(&log, first.id()).as_deref() != Some("1,2,3,4") {
        assert!(Instant::now() < deadline, "no subscription: {log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Three more join; each takes a substream over from the first.
    let mut peers = vec![first];
    for _ in 0..3 {
        peers.push(PeerHandle::start(config.clone()).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = tracker.entries("live");
        let stale: Vec<_> = peers
            .iter()
            .filter_map(|p| {
                let entry = entries.iter().find(|e| e.id == p.id())?;
                let want: Vec<String> = entry.prefetch.iter().map(u32::to_string).collect();
                let got = last_subscription(&log, p.id());
                (got.as_deref() != Some(want.join(",").as_str())).then_some((p.id(), want, got))
            })
            .collect();
        if entries.len() == 4 && stale.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "subscriptions not reconciled with the assignment (peer, prefetch, subscribed): {stale:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = &tracker.entries("live")[0];
    assert_eq!(first.prefetch.len(), 1, "{first:?}");
    for peer in peers {
        peer.shutdown().await;
    }
    assert!(tracker.entries("live").is_empty(), "every peer left");
    cdn_task.abort();
    tracker_task.abort();
}

/// The CDN in front of which requests are refused with 503 while `down` is set.
#[derive(Clone, Default)]
struct Gate {
    down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
}

async fn gate(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    if gate.down.load(Ordering::SeqCst) {
        gate.refused.fetch_add(1, Ordering::SeqCst);
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    next.run(request).await
}

/// Bug: the origin exited on the first failed PUT when the CDN was down. Now it buffers and
/// retries: first while nothing listens on the CDN's port (connection refused), then while
/// the CDN answers 503; the stream still arrives whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_buffers_and_retries_while_the_cdn_is_down() {
    let dir = testkit::tempdir();
    let clip = make_clip(dir.path(), "outage.ts", 4);
    let ts = bytes::Bytes::from(fs_err::read(&clip).unwrap());
    // A port with nothing listening yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = OriginConfig {
        cdn: format!("http://{addr}"),
        block_ms: 500,
        speed: 8.0,
        publish_token: Secret::new(PUBLISH_TOKEN),
        publish_buffer_blocks: 4,
        cdn_retry_give_up_ms: 30_000,
        ..OriginConfig::default()
    };
    let origin =
        tokio::spawn(async move { p2plive::origin::run(&Input::Ts(ts), &config, |_| {}).await });
    // Connection refused for a while (ordering only, nothing is timed).
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !origin.is_finished(),
        "the origin gave up while the CDN was unreachable"
    );

    let cdn = Cdn::new(&mut Registry::default(), Secret::new(PUBLISH_TOKEN)).unwrap();
    let gated = Gate::default();
    gated.down.store(true, Ordering::SeqCst);
    let router = cdn
        .router()
        .layer(axum::middleware::from_fn_with_state(gated.clone(), gate));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (cdn_url, cdn_task) = serve_on(listener, router);
    let deadline = Instant::now() + Duration::from_secs(20);
    while gated.refused.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline && !origin.is_finished(),
            "the origin stopped retrying"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gated.down.store(false, Ordering::SeqCst);

    let report = tokio::time::timeout(Duration::from_secs(60), origin)
        .await
        .expect("the origin finished")
        .unwrap()
        .expect("the origin published the whole stream");
    assert_eq!(
        report.source_sha256,
        sha256_hex(&fs_err::read(&clip).unwrap())
    );
    let manifest: Manifest =
        serde_json::from_value(get_json(&format!("{cdn_url}/streams/live/manifest")).await)
            .unwrap();
    assert_eq!(manifest.cut, report.blocks);
    assert!(manifest.cut >= 4, "4 s in 1 s GOPs: {}", manifest.cut);
    let end = manifest.end.expect("the stream ended");
    assert_eq!(hex::encode(end.source_sha256), report.source_sha256);
    let mut all = Vec::new();
    for n in 0..manifest.cut {
        all.extend(get_bytes(&format!("{cdn_url}/streams/live/blocks/{n}")).await);
    }
    assert_eq!(sha256_hex(&all), report.source_sha256);
    cdn_task.abort();
}
