//! Play authorization at the proxy: unsigned and expired URLs refused with JSON reasons, a
//! signed URL plays, the `on_play` hook decides per stream, CORS preflight answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::http::StatusCode as AxumStatus;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use streamgate::auth;
use svckit::redact::Secret;

use crate::{camera, forwarder, get, media, open, proxy_with, registry, rtsp, url};

const KEY: &str = "test-signing-key-0123456789";

/// An `on_play` hook that allows `sub_stream` only and records what it was told.
async fn hook() -> (
    String,
    Arc<Mutex<Vec<serde_json::Value>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new().route(
        "/on_play",
        axum::routing::post({
            let seen = seen.clone();
            move |Json(play): Json<serde_json::Value>| async move {
                seen.lock().unwrap().push(play.clone());
                if play["stream"] == "sub_stream" {
                    (AxumStatus::OK, Json(serde_json::json!({ "code": 0 })))
                } else {
                    (
                        AxumStatus::FORBIDDEN,
                        Json(serde_json::json!({ "reason": "not in this customer's plan" })),
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/on_play"), seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_expired_urls_are_refused_signed_ones_play_and_the_hook_decides() {
    let camera = camera();
    let registry = registry().await;
    let _media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[
            ("sub_stream", rtsp(&camera, "/sub_stream")),
            ("aux_stream", rtsp(&camera, "/aux_stream")),
        ],
        |_| {},
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let (hook_url, seen, _hook) = hook().await;
    let proxy = proxy_with(&registry, |c| {
        c.auth.keys = [("k1".to_owned(), Secret::new(KEY))].into_iter().collect();
        c.auth.on_play = hook_url;
        c.auth.cors_origins = vec!["https://player.example".to_owned()];
    })
    .await;
    let key = Secret::new(KEY);
    let now = auth::unix_seconds(SystemTime::now());
    let path = |stream: &str| format!("/realtime-ServiceA-NameSpaceA/{stream}/0.flv");
    let signed = |stream: &str, expires: u64| {
        let resource = auth::resource("ServiceA-NameSpaceA", stream, 0);
        format!(
            "{}?{}",
            path(stream),
            auth::sign(&resource, "k1", &key, expires)
        )
    };

    // (request path and query, status, reason)
    let cases = [
        (path("sub_stream"), 401, "unsigned"),
        (signed("sub_stream", now - 10), 403, "expired"),
        (
            signed("aux_stream", now + 300).replace("aux_stream/0.flv", "sub_stream/0.flv"),
            403,
            "bad_signature",
        ),
        (
            signed("sub_stream", now + 300).replace("kid=k1", "kid=k0"),
            403,
            "unknown_key",
        ),
        (signed("aux_stream", now + 300), 403, "hook_denied"),
    ];
    for (request, status, reason) in &cases {
        let (got, body, took) = get(&url(&proxy, request)).await;
        assert_eq!(got, *status, "{request}: {body}");
        assert_eq!(body["reason"], *reason, "{request}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(took < Duration::from_secs(3), "{request}: {took:?}");
    }
    let denied = seen.lock().unwrap().clone();
    assert_eq!(
        denied.len(),
        1,
        "the hook is asked only about signed requests: {denied:?}"
    );
    assert_eq!(denied[0]["stream"], "aux_stream");
    assert_eq!(denied[0]["namespace"], "NameSpaceA");
    assert_eq!(denied[0]["client"], "127.0.0.1");

    let mut viewer = open(&url(&proxy, &signed("sub_stream", now + 300))).await;
    assert_eq!(viewer.status(), 200);
    assert!(
        viewer
            .until_key_frame(Duration::from_secs(15))
            .await
            .unwrap()
            .is_some(),
        "a signed URL the hook allows plays"
    );

    // CORS: a preflight from an allowed origin, and one from another origin.
    let client = streamgate::viewer::client(Duration::from_secs(5));
    for (origin, status) in [
        ("https://player.example", 204),
        ("https://evil.example", 403),
    ] {
        let request = http::Request::builder()
            .method("OPTIONS")
            .uri(url(&proxy, &path("sub_stream")))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.status(), status, "{origin}");
        let allow = response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        if status == 204 {
            assert_eq!(allow.as_deref(), Some(origin));
            assert!(
                response
                    .headers()
                    .contains_key("access-control-allow-methods")
            );
        } else {
            assert_eq!(allow, None);
        }
        let _ = response.into_body().collect().await;
    }
    // A refusal seen by a browser carries the CORS header, so the page can read its reason.
    let request = http::Request::get(url(&proxy, &path("sub_stream")))
        .header("origin", "https://player.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://player.example"
    );
}
