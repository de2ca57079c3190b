use std::time::Duration;

use axum::Router;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use svckit::{ServeOptions, serve, shutdown_signal};
use tokio::net::TcpListener;

/// Starts the helper on 127.0.0.1, reads `/healthz` and `/metrics`, then stops it with a real
/// SIGTERM sent to this test process (the handlers are installed before the server starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_and_metrics_then_stops_on_sigterm() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut registry = Registry::default();
    let hellos = Counter::<u64>::default();
    registry.register("hellos", "Greetings served", hellos.clone());
    let app = Router::new().route(
        "/hello/{name}",
        get(move || {
            let hellos = hellos.clone();
            async move {
                hellos.inc();
                "hi"
            }
        }),
    );
    let options = ServeOptions::new("svckit-test", registry).grace_period(Duration::from_secs(2));
    let signal = shutdown_signal().unwrap();
    let server = tokio::spawn(serve(listener, app, options, signal));

    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.text().await.unwrap(),
        r#"{"service":"svckit-test","status":"ok"}"#
    );
    for _ in 0..3 {
        let hello = client
            .get(format!("http://{addr}/hello/ann"))
            .send()
            .await
            .unwrap();
        assert_eq!(hello.text().await.unwrap(), "hi");
    }
    let missing = client
        .get(format!("http://{addr}/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = metrics.text().await.unwrap();
    assert!(text.contains("hellos_total 3"), "{text}");
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/hello/{name}",status="200"} 3"#),
        "route template, not the raw path, labels requests:\n{text}"
    );
    assert!(
        text.contains(r#"route="<unmatched>",status="404""#),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "server did not stop on SIGTERM: {stopped:?}"
    );
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "listener still open after shutdown"
    );
}

/// A response that never ends (a live video stream) must not hold shutdown beyond the grace
/// period.
#[tokio::test]
async fn grace_period_bounds_shutdown_with_endless_streams() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/endless",
        get(|| async { axum::body::Body::from_stream(endless_stream()) }),
    );
    let options =
        ServeOptions::new("endless", Registry::default()).grace_period(Duration::from_millis(300));
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        app,
        options,
        stop.clone().cancelled_owned(),
    ));

    let mut response = reqwest::get(format!("http://{addr}/endless"))
        .await
        .unwrap();
    assert!(response.chunk().await.unwrap().is_some());
    let started = std::time::Instant::now();
    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "stopped before the grace period: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "grace period not enforced: {waited:?}"
    );
}

/// Sends a small chunk every 20 ms, forever.
fn endless_stream() -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    futures::stream::unfold(
        tokio::time::interval(Duration::from_millis(20)),
        |mut interval| async move {
            interval.tick().await;
            Some((Ok(bytes::Bytes::from_static(b"frame")), interval))
        },
    )
}
