//! The HTTP service's router (no socket: `Router::oneshot`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

use crate::support::{labels_only, pipeline};

async fn post(
    router: axum::Router,
    uri: &str,
    body: &'static str,
) -> (StatusCode, serde_json::Value) {
    let response = router
        .oneshot(Request::post(uri).body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn post_html_returns_the_tree_and_detections() {
    let rt = crate::support::runtime();
    rt.block_on(async {
        let pipeline = Arc::new(pipeline(labels_only()));
        let mut registry = Registry::default();
        let router = pagefeat::serve::router(pipeline, &mut registry);
        let (status, json) = post(
            router.clone(),
            "/extract?url=https://news.example.org/a",
            "<html><body><h1>Hi</h1><div id=div-gpt-ad-1 style='width:300px;height:250px'></div></body></html>",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["stat_tree"]["url"], "https://news.example.org/a");
        assert_eq!(json["stat_tree"]["nodes"][0]["type"], "LayoutView");
        assert_eq!(json["detections"]["page"], "https://news.example.org/a");
        // No model loaded: ad_nodes counts the filter-list matches (the GPT slot), and the
        // answer says no classifier was loaded (a `false` soft404 is not a verdict).
        assert_eq!(json["detections"]["ad_nodes"], 1);
        assert_eq!(json["models"], serde_json::json!({"ad": false, "soft404": false}));
        let (status, json) = post(router.clone(), "/extract", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(json["error"].as_str().unwrap().contains("empty"));
        let (status, _) = post(router, "/extract?profile=viewport", "no tags here").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    });
}

/// A page that takes the embedded engine well over 100 ms (2,000 paragraphs).
fn heavy_page() -> String {
    format!(
        "<html><body>{}</body></html>",
        "<p>Some words of a long article, <b>bold</b> and <i>not</i>.</p>".repeat(2_000)
    )
}

fn router_with(serve: pagefeat::config::ServeConfig) -> axum::Router {
    use pagefeat::config::Config;
    let config = Config {
        serve,
        ..Config::default()
    };
    let clock: Arc<dyn svckit::Clock> = Arc::new(svckit::SystemClock);
    let pipeline = Arc::new(pagefeat::extract::Pipeline::new(
        config,
        Arc::new(labels_only()),
        clock,
    ));
    pagefeat::serve::router(pipeline, &mut Registry::default())
}

async fn post_owned(router: axum::Router, body: String) -> (StatusCode, Option<String>, String) {
    let response = router
        .oneshot(Request::post("/extract").body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry, String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn requests_over_the_cap_get_503_with_retry_after() {
    let rt = crate::support::runtime();
    rt.block_on(async {
        let router = router_with(pagefeat::config::ServeConfig {
            max_concurrent: 1,
            request_deadline_ms: 600_000,
            ..pagefeat::config::ServeConfig::default()
        });
        let page = heavy_page();
        let answers = futures::future::join_all(
            (0..4).map(|_| tokio::spawn(post_owned(router.clone(), page.clone()))),
        )
        .await;
        let answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
        let ok = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
        let busy: Vec<_> = answers
            .iter()
            .filter(|a| a.0 == StatusCode::SERVICE_UNAVAILABLE)
            .collect();
        assert!(
            ok >= 1,
            "{:?}",
            answers.iter().map(|a| a.0).collect::<Vec<_>>()
        );
        assert!(
            !busy.is_empty(),
            "{:?}",
            answers.iter().map(|a| a.0).collect::<Vec<_>>()
        );
        for (_, retry, body) in busy {
            assert_eq!(retry.as_deref(), Some("1"));
            assert!(body.contains("\"busy\""), "{body}");
        }
    });
}

#[test]
fn a_request_past_its_deadline_gets_503() {
    let rt = crate::support::runtime();
    rt.block_on(async {
        let router = router_with(pagefeat::config::ServeConfig {
            request_deadline_ms: 100,
            ..pagefeat::config::ServeConfig::default()
        });
        let (status, _, body) = post_owned(router, heavy_page()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"deadline\""), "{body}");
    });
}

/// One HTTP/1.1 request over a plain socket; returns (status, body).
fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serve_process_answers_health_metrics_and_extract() {
    let peer = testkit::Peer::new(env!("CARGO_BIN_EXE_pagefeat"))
        .args(["serve", "--listen", "127.0.0.1:{port}"])
        .ready(testkit::Ready::Http("/healthz"))
        .start();
    let (status, body) = http(peer.addr(), "GET", "/healthz", "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        peer.addr(),
        "POST",
        "/extract?profile=viewport",
        "<html><body><p>hello</p></body></html>",
    );
    assert_eq!(status, 200, "{body}");
    // Chunked or not, the JSON object is in the body.
    assert!(
        body.contains("\"PROFILE_VIEWPORT\"") && body.contains("LayoutView"),
        "{body}"
    );
    let (status, body) = http(peer.addr(), "POST", "/extract", "\u{0}\u{1}binary");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(peer.addr(), "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(body.contains("pagefeat_pages_total 1"), "{body}");
    assert!(body.contains("pagefeat_rejected_total 1"), "{body}");
}
