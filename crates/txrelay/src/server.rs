//! The public listener: HTTP/1.1 (hyper) with the limits a listener facing unknown clients
//! needs, which `svckit::serve` (used for the operations listener) does not set:
//!
//! - at most `limits.max_connections` connections at once (further ones wait in the kernel's
//!   accept queue);
//! - `limits.header_timeout_ms` for each request's headers, counted from when the connection
//!   starts waiting for them, so it also closes idle keep-alive connections (slow-loris);
//! - `limits.request_timeout_ms` until the response headers (body upload and handler), then
//!   `408`;
//! - request bodies capped by the router's body limit (`limits.max_body_bytes`, `413`);
//! - graceful shutdown: on stop, connections finish their current request within the grace
//!   period, then are dropped.
//!
//! WebSocket upgrades leave the connection count when they upgrade; sessions are bounded
//! per API key instead (`limits.max_sockets_per_key`). (svckit has no hook for these limits;
//! this module is a candidate for it.)

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{debug, info, info_span, warn};

use crate::config::settings::ListenerLimits;

/// Serves `app` on `listener` with `limits` until `shutdown` is cancelled, then lets open
/// connections finish for at most `grace`.
///
/// # Errors
/// Never for accept failures (they are logged and retried); the `Result` is for symmetry
/// with `svckit::serve`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    shutdown: CancellationToken,
    grace: Duration,
) -> io::Result<()> {
    let app = app
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("<unmatched>", MatchedPath::as_str);
                info_span!("request", method = %request.method(), route)
            }),
        );
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    info!(addr = ?listener.local_addr().ok(), max_connections = limits.max_connections, "API listening");
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer): (_, SocketAddr) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: back off briefly.
                warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let stop = shutdown.clone();
        let header_timeout = limits.header_timeout;
        connections.spawn(async move {
            let _permit = permit;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(grace, connection.as_mut()).await {
                        Ok(result) => result,
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(error) = result {
                debug!(%peer, %error, "connection ended with an error");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    let drained = tokio::time::timeout(grace + Duration::from_millis(500), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("grace period over; dropping open API connections");
    }
    Ok(())
}
