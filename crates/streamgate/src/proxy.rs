//! The reverse proxy (seed ¶40, ¶46-¶47): the one public port. It parses
//! `/realtime-{service}-{namespace}/{stream}/{n}.flv`, resolves the `{service}-{namespace}`
//! segment against the registered forwarders ([`RouteTable`], longest service name first),
//! sends `/{stream}/{n}.flv` to that forwarder and streams the answer back.
//!
//! The table follows the registry by long-polling its version, so changes arrive within
//! milliseconds; a segment that is not in the table triggers one fresh lookup (at most one
//! per 100 ms) before the proxy answers 404, so a pair registered a moment ago is not refused.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::discovery::{Discovery, route_table};
use crate::error::{Classify, RouteError};
use crate::hop::{HopBody, HopClient, HopMetrics, error_response, json_response};
use crate::route::{PUBLIC_ROUTE, RouteTable, RouteTarget, parse_public_path};

/// Header carrying the public path's `{service}-{namespace}` segment to the forwarder.
pub const ROUTE_HEADER: &str = "x-streamgate-route";

/// Proxy settings (`[proxy]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// The public listen address (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Admin listen address for `/healthz` and `/metrics` (default `127.0.0.1:0`).
    pub admin_listen: SocketAddr,
    /// Connect timeout to a forwarder, ms (default 1000).
    pub connect_timeout_ms: u64,
    /// Time allowed for a forwarder's response headers, ms (default 20000; must exceed the
    /// forwarder's own header timeout).
    pub header_timeout_ms: u64,
    /// Long-poll wait on the registry's routes, ms (default 25000).
    pub watch_wait_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            connect_timeout_ms: 1000,
            header_timeout_ms: 20_000,
            watch_wait_ms: 25_000,
        }
    }
}

/// The proxy's request handler and routing table.
#[derive(Debug)]
pub struct Proxy<D> {
    table: RwLock<(u64, Arc<RouteTable>)>,
    discovery: D,
    client: HopClient,
    metrics: HopMetrics,
    watch_wait: Duration,
    /// When a miss last triggered a fresh lookup (misses refresh at most every
    /// [`MISS_REFRESH_EVERY`], so a flood of unknown paths cannot flood the registry).
    last_miss_refresh: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Shortest interval between two lookups caused by unknown segments.
pub const MISS_REFRESH_EVERY: Duration = Duration::from_millis(100);

impl<D: Discovery> Proxy<D> {
    /// A proxy with an empty table; call [`Proxy::refresh`] or [`Proxy::spawn_watch`].
    pub fn new(config: &ProxyConfig, discovery: D, metrics: HopMetrics) -> Self {
        Self {
            table: RwLock::new((u64::MAX, Arc::new(RouteTable::default()))),
            discovery,
            client: HopClient::new(
                Duration::from_millis(config.connect_timeout_ms),
                Duration::from_millis(config.header_timeout_ms),
            ),
            metrics,
            watch_wait: Duration::from_millis(config.watch_wait_ms),
            last_miss_refresh: std::sync::Mutex::new(None),
        }
    }

    fn table(&self) -> Arc<RouteTable> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    fn version(&self) -> u64 {
        self.table.read().unwrap_or_else(PoisonError::into_inner).0
    }

    fn install(&self, snapshot: &crate::registry::RouteSnapshot) {
        let table = route_table(snapshot);
        for (segment, pairs) in table.ambiguities() {
            warn!(segment, pairs = ?pairs, "several (service, namespace) pairs spell this segment; the longest service wins");
        }
        debug!(
            version = snapshot.version,
            pairs = table.len(),
            "routing table updated"
        );
        *self.table.write().unwrap_or_else(PoisonError::into_inner) =
            (snapshot.version, Arc::new(table));
    }

    /// Loads the current table from discovery.
    ///
    /// # Errors
    /// The discovery error.
    pub async fn refresh(&self) -> Result<(), crate::error::HopError> {
        let snapshot = self.discovery.routes(None, Duration::ZERO).await?;
        self.install(&snapshot);
        Ok(())
    }

    /// Keeps the table current by long-polling discovery until the task is aborted.
    pub fn spawn_watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let proxy = self.clone();
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                let since = proxy.version();
                let since = (since != u64::MAX).then_some(since);
                match proxy.discovery.routes(since, proxy.watch_wait).await {
                    Ok(snapshot) => {
                        warned = false;
                        if Some(snapshot.version) != since {
                            proxy.install(&snapshot);
                        }
                    }
                    Err(error) => {
                        if !warned {
                            warn!(%error, "cannot watch the routes; keeping the current table");
                            warned = true;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
    }

    /// Resolves a segment, refreshing the table once on a miss.
    async fn resolve(&self, segment: &str) -> Result<RouteTarget, RouteError> {
        let first = self.table().resolve(segment).cloned();
        match first {
            Ok(target) => Ok(target),
            Err(miss) => {
                let now = std::time::Instant::now();
                {
                    let mut last = self
                        .last_miss_refresh
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if last.is_some_and(|t| now.duration_since(t) < MISS_REFRESH_EVERY) {
                        return Err(miss);
                    }
                    *last = Some(now);
                }
                if let Err(error) = self.refresh().await {
                    debug!(%error, "refresh on a miss failed");
                    return Err(miss);
                }
                self.table().resolve(segment).cloned()
            }
        }
    }

    async fn answer(self: Arc<Self>, request: Request<Incoming>) -> Response<HopBody> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({ "error": "only GET and HEAD are served" }),
            );
        }
        let (parts, _) = request.into_parts();
        let path = match parse_public_path(parts.uri.path()) {
            Ok(path) => path,
            Err(error) => {
                debug!(%error, "malformed path");
                return error_response(&error);
            }
        };
        let span = tracing::Span::current();
        span.record("stream", tracing::field::display(&path.stream));
        let target = match self.resolve(&path.segment).await {
            Ok(target) => target,
            Err(error) => {
                info!(%error, segment = %path.segment, "no route");
                return error_response(&error);
            }
        };
        span.record("service", tracing::field::display(&target.service));
        span.record("namespace", tracing::field::display(&target.namespace));
        span.record("label", tracing::field::display(&target.label));
        let upstream = match parts.uri.query() {
            Some(query) => format!("{}?{query}", path.upstream_path()),
            None => path.upstream_path(),
        };
        match self
            .client
            .forward(
                &target.service,
                target.addr,
                &parts,
                &upstream,
                &[(ROUTE_HEADER, path.segment.clone())],
            )
            .await
        {
            Ok(response) => {
                info!(status = response.status().as_u16(), forwarder = %target.addr, "routing");
                response
            }
            Err(error) => {
                warn!(%error, origin = ?error.origin(), "forwarder unreachable");
                error_response(&error)
            }
        }
    }
}

impl<D: Discovery> crate::hop::Handler for Proxy<D> {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<HopBody> {
        let span = info_span!(
            "proxy",
            route = PUBLIC_ROUTE,
            service = tracing::field::Empty,
            namespace = tracing::field::Empty,
            stream = tracing::field::Empty,
            label = tracing::field::Empty,
            %peer,
        );
        let metrics = self.metrics.clone();
        let response = self.answer(request).instrument(span.clone()).await;
        metrics.answered(response.status());
        if response.status().is_success() {
            metrics.track(response, move |bytes, open| {
                let _entered = span.enter();
                debug!(bytes, open_ms = open.as_millis(), "stream closed");
            })
        } else {
            response
        }
    }
}
