//! The reverse proxy (seed ¶40, ¶46-¶47): the one public port. It parses
//! `/realtime-{service}-{namespace}/{stream}/{n}.flv`, checks the play authorization
//! ([`crate::auth`]: signed URL, `on_play` hook, CORS), resolves the `{service}-{namespace}`
//! segment against the registered forwarders ([`RouteTable`], longest service name first) and
//! serves the stream through a fan-out whose source is one upstream session per stream to
//! that forwarder ([`crate::relay`]): a thousand viewers of a stream are one connection to the
//! forwarder, and survive the forwarder or the media server moving.
//!
//! The table follows the registry through the watched routes ([`RouteWatch`]), so changes
//! arrive within milliseconds; a segment that is not in the table triggers one fresh lookup
//! (at most one per 100 ms) before the proxy answers 404, so a pair registered a moment ago
//! is not refused.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::auth::{self, AuthConfig, Cors, Hook, PlayRequest, auth_response};
use crate::discovery::{Discovery, RouteWatch, Watched, route_table};
use crate::error::{ConfigError, RouteError};
use crate::fanout::{FanoutConfig, Refusal};
use crate::forwarder::RelayHopMetrics;
use crate::hop::{
    ConnectionPolicy, HopBody, HopClient, HopMetrics, error_response, flv_response,
    refusal_response,
};
use crate::relay::{RelayHop, RelayHopConfig, Upstream};
use crate::route::{HlsFile, is_hls_path, parse_public_hls_path};
use crate::route::{PUBLIC_ROUTE, PublicPath, RouteTable, RouteTarget, parse_public_path};

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
    /// How long a stream's upstream session outlives its last viewer, ms (default 1000).
    pub idle_stop_ms: u64,
    /// How long a broken upstream is re-attached while viewers stay connected, ms (default
    /// 10000).
    pub reattach_ms: u64,
    /// Play authorization (`[proxy.auth]`).
    pub auth: AuthConfig,
    /// Fan-out to viewers (`[proxy.fanout]`).
    pub fanout: FanoutConfig,
    /// Connection policy of the public port (`[proxy.connections]`).
    pub connections: ConnectionPolicy,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            connect_timeout_ms: 1000,
            header_timeout_ms: 20_000,
            watch_wait_ms: 25_000,
            idle_stop_ms: 1000,
            reattach_ms: 10_000,
            auth: AuthConfig::default(),
            fanout: FanoutConfig::default(),
            connections: ConnectionPolicy::default(),
        }
    }
}

impl ProxyConfig {
    /// Checks the sections.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.auth.validate()?;
        self.connections.validate("proxy.connections")?;
        self.fanout.settings("proxy.fanout")?;
        Ok(())
    }
}

/// The proxy's request handler and routing table.
#[derive(Debug)]
pub struct Proxy<D> {
    table: RwLock<Option<(Arc<crate::registry::RouteSnapshot>, Arc<RouteTable>)>>,
    routes: RouteWatch,
    discovery: Arc<D>,
    relay: RelayHop,
    /// Plain request/response pass-through (HLS playlists and segments).
    client: HopClient,
    metrics: HopMetrics,
    auth: AuthConfig,
    hook: Option<Hook>,
    cors: Cors,
    /// When a miss last triggered a fresh lookup (misses refresh at most every
    /// [`MISS_REFRESH_EVERY`], so a flood of unknown paths cannot flood the registry).
    last_miss_refresh: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Longest playlist the proxy rewrites, bytes.
const MAX_PLAYLIST_BYTES: usize = 1 << 20;

/// Shortest interval between two lookups caused by unknown segments.
pub const MISS_REFRESH_EVERY: Duration = Duration::from_millis(100);

/// The relay key of a public path: `{segment}/{stream}/{n}`.
fn relay_key(path: &PublicPath) -> String {
    format!("{}/{}/{}", path.segment, path.stream, path.channel)
}

impl<D: Discovery> Proxy<D> {
    /// A proxy routing from `routes` (kept current elsewhere, see [`RouteWatch::spawn`]),
    /// refreshing from `discovery` on a miss.
    ///
    /// # Errors
    /// [`ConfigError`] from [`ProxyConfig::validate`].
    pub fn new(
        config: &ProxyConfig,
        routes: RouteWatch,
        discovery: Arc<D>,
        metrics: RelayHopMetrics,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let settings = config.fanout.settings("proxy.fanout")?;
        if !config.auth.enabled() {
            warn!("play authorization is off: no signing key and no on_play hook configured");
        }
        Ok(Self {
            table: RwLock::new(None),
            routes,
            discovery,
            relay: RelayHop::new(
                RelayHopConfig {
                    connect_timeout: Duration::from_millis(config.connect_timeout_ms),
                    header_timeout: Duration::from_millis(config.header_timeout_ms),
                    idle_stop: Duration::from_millis(config.idle_stop_ms),
                    reattach_within: Duration::from_millis(config.reattach_ms),
                    fanout: settings,
                },
                metrics.fanout,
                metrics.relay,
            ),
            client: HopClient::new(
                Duration::from_millis(config.connect_timeout_ms),
                Duration::from_millis(config.header_timeout_ms),
            ),
            metrics: metrics.hop,
            hook: Hook::new(&config.auth),
            cors: Cors::new(&config.auth),
            auth: config.auth.clone(),
            last_miss_refresh: std::sync::Mutex::new(None),
        })
    }

    /// Ends every stream (the proxy stops).
    pub fn shutdown(&self) {
        self.relay.shutdown();
    }

    /// The routing table of the current routes (rebuilt when they change).
    fn table(&self) -> Arc<RouteTable> {
        let current = self.routes.current().snapshot;
        if let Some((snapshot, table)) = &*self.table.read().unwrap_or_else(PoisonError::into_inner)
            && Arc::ptr_eq(snapshot, &current)
        {
            return table.clone();
        }
        let table = Arc::new(route_table(&current));
        for (segment, pairs) in table.ambiguities() {
            warn!(segment, pairs = ?pairs, "several (service, namespace) pairs spell this segment; the longest service wins");
        }
        debug!(
            version = current.version,
            pairs = table.len(),
            "routing table updated"
        );
        *self.table.write().unwrap_or_else(PoisonError::into_inner) =
            Some((current, table.clone()));
        table
    }

    /// Loads the current routes from discovery at once.
    ///
    /// # Errors
    /// The discovery error.
    pub async fn refresh(&self) -> Result<(), crate::error::HopError> {
        let snapshot = self.discovery.routes(None, Duration::ZERO).await?;
        self.routes.install(snapshot);
        Ok(())
    }

    /// Resolves a segment, refreshing the routes once on a miss.
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

    fn upstream(&self, path: &PublicPath) -> Upstream {
        let segment = path.segment.clone();
        Upstream {
            path: path.upstream_path(),
            headers: vec![(ROUTE_HEADER, segment.clone())],
            resolve: Arc::new(move |watched: &Watched| {
                route_table(&watched.snapshot)
                    .resolve(&segment)
                    .map(|t| (t.service.clone(), t.addr))
                    .map_err(|e| Refusal::from_error(&e))
            }),
            routes: self.routes.clone(),
        }
    }

    /// Signature and hook checks for a play request of `path` in `format` (`flv`,
    /// `ws-flv`, `hls`; the hook is asked only when `ask_hook`: not for every HLS segment).
    /// The signature covers the stream, not the file, so the playlist's query string also
    /// authorizes its segments.
    async fn authorize(
        &self,
        parts: &http::request::Parts,
        path: &PublicPath,
        target: &RouteTarget,
        (format, ask_hook): (&str, bool),
        peer: SocketAddr,
    ) -> Result<(), auth::AuthError> {
        let resource = auth::resource(&path.segment, &path.stream, path.channel);
        auth::verify(&self.auth, &resource, parts.uri.query(), SystemTime::now())?;
        if let Some(hook) = &self.hook
            && ask_hook
        {
            hook.check(&PlayRequest {
                action: "on_play",
                service: &target.service,
                namespace: &target.namespace,
                stream: &path.stream,
                channel: path.channel,
                format,
                client: peer.ip(),
                query: parts.uri.query().unwrap_or_default(),
            })
            .await?;
        }
        Ok(())
    }

    async fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<HopBody> {
        let (mut parts, _) = request.into_parts();
        if parts.method == Method::OPTIONS {
            return self.cors.preflight(&parts.headers);
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return crate::hop::method_not_allowed("GET, HEAD, OPTIONS");
        }
        if is_hls_path(parts.uri.path()) {
            return self.hls(&parts, peer).await;
        }
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
        let websocket = crate::ws::is_upgrade(&parts.headers);
        let format = if websocket { "ws-flv" } else { "flv" };
        if let Err(error) = self
            .authorize(&parts, &path, &target, (format, true), peer)
            .await
        {
            info!(%error, reason = error.reason(), "play refused");
            return auth_response(&error);
        }
        if websocket {
            // Browsers do not preflight WebSockets: the origin is checked here.
            let origin = parts
                .headers
                .get(http::header::ORIGIN)
                .and_then(|v| v.to_str().ok());
            if origin.is_some() && self.cors.allow(origin).is_none() {
                let error = auth::AuthError::Origin {
                    origin: origin.unwrap_or_default().chars().take(200).collect(),
                };
                info!(%error, "WebSocket origin refused");
                return auth_response(&error);
            }
            let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            let written = parts.extensions.get::<crate::hop::Written>().cloned();
            return match self.viewer(&path).await {
                Ok(viewer) => {
                    info!(status = 101, "routing as WebSocket-FLV");
                    crate::ws::accept(&parts.headers, on_upgrade, viewer, written)
                }
                Err(response) => response,
            };
        }
        if parts.method == Method::HEAD {
            let mut response = crate::hop::empty_response(StatusCode::OK);
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("video/x-flv"),
            );
            return response;
        }
        let written = parts.extensions.get::<crate::hop::Written>().cloned();
        self.play(&path, written).await
    }

    /// Joins (or starts) the stream's fan-out and answers with the viewer's FLV stream.
    async fn play(
        self: &Arc<Self>,
        path: &PublicPath,
        written: Option<crate::hop::Written>,
    ) -> Response<HopBody> {
        match self.viewer(path).await {
            Ok(viewer) => {
                info!(status = 200, "routing");
                flv_response(viewer, written.as_ref())
            }
            Err(response) => response,
        }
    }

    /// A viewer of the stream's fan-out (joined as configured), or the refusal's answer.
    async fn viewer(
        self: &Arc<Self>,
        path: &PublicPath,
    ) -> Result<crate::fanout::ViewerStream, Response<HopBody>> {
        let key = relay_key(path);
        let join = crate::fanout::Join::configured(self.relay.fanout());
        self.relay
            .play(&key, || self.upstream(path), join)
            .await
            .map_err(|refusal| {
                if refusal.status.is_server_error() {
                    warn!(%refusal, "upstream refused");
                } else {
                    info!(%refusal, "upstream refused");
                }
                refusal_response(&refusal)
            })
    }

    /// An HLS request (`.../{stream}/{n}/index.m3u8` or `.../seg-{seq}.ts`): routed and
    /// authorized like FLV (the hook is asked for playlists only), passed to the forwarder
    /// without the query string; a playlist's segment URIs get the request's query string
    /// so the player presents the same signature for them.
    async fn hls(&self, parts: &http::request::Parts, peer: SocketAddr) -> Response<HopBody> {
        let (path, file) = match parse_public_hls_path(parts.uri.path()) {
            Ok(parsed) => parsed,
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
        let playlist = file == HlsFile::Playlist;
        if let Err(error) = self
            .authorize(parts, &path, &target, ("hls", playlist), peer)
            .await
        {
            info!(%error, reason = error.reason(), "play refused");
            return auth_response(&error);
        }
        let upstream = format!("/{}/{}/{}", path.stream, path.channel, file.name());
        let response = match self
            .client
            .forward(
                &target.service,
                target.addr,
                parts,
                &upstream,
                &[(ROUTE_HEADER, path.segment.clone())],
            )
            .await
        {
            Ok(response) => response,
            Err(error) => {
                warn!(%error, "forwarder unreachable");
                return error_response(&error);
            }
        };
        let query = parts.uri.query().unwrap_or_default();
        if !playlist || response.status() != StatusCode::OK || query.is_empty() {
            return response;
        }
        let (mut head, body) = response.into_parts();
        let text = match http_body_util::Limited::new(body, MAX_PLAYLIST_BYTES)
            .collect()
            .await
        {
            Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
            Err(error) => {
                let error = crate::error::HopError::Broke {
                    target: target.service.clone(),
                    reason: format!("playlist unreadable: {error}"),
                };
                warn!(%error, "playlist unreadable");
                return error_response(&error);
            }
        };
        head.headers.remove(http::header::CONTENT_LENGTH);
        let body = crate::hls::with_query(&text, query);
        Response::from_parts(
            head,
            http_body_util::Full::new(bytes::Bytes::from(body))
                .map_err(|never: std::convert::Infallible| match never {})
                .boxed(),
        )
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
        let request_headers = request.headers().clone();
        let proxy = self.clone();
        let mut response = proxy.answer(request, peer).instrument(span.clone()).await;
        self.cors.decorate(&request_headers, &mut response);
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
