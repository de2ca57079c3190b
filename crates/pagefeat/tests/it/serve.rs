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
        // No model loaded: ad_nodes counts the filter-list matches (the GPT slot).
        assert_eq!(json["detections"]["ad_nodes"], 1);
        let (status, json) = post(router.clone(), "/extract", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(json["error"].as_str().unwrap().contains("empty"));
        let (status, _) = post(router, "/extract?profile=viewport", "no tags here").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    });
}
