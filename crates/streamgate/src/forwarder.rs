//! The forwarding server (seed ¶42, ¶48, ¶53-¶54): one per media server, bound to that
//! server's unique label, never to its address. It resolves the label from the watched
//! routes ([`RouteWatch`]; no registry round trip per viewer), checks that the label belongs
//! to its namespace and that the request was routed to its (service, namespace), and serves
//! each stream through a fan-out whose source is one upstream session to the media server
//! ([`crate::relay`]): a media server that restarts on another address is re-attached as soon
//! as it registers again, and open viewers stay connected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::discovery::{RouteWatch, Watched};
use crate::error::{ConfigError, HopError, RouteError};
use crate::fanout::{FanoutConfig, FanoutMetrics, Refusal};
use crate::hop::{
    ConnectionPolicy, HopBody, HopClient, HopMetrics, error_response, flv_response,
    refusal_response,
};
use crate::media::{INSTANCE_PATH, instance_response};
use crate::proxy::ROUTE_HEADER;
use crate::relay::{RelayHop, RelayHopConfig, RelayMetrics, Upstream};
use crate::route::{is_hls_path, is_valid_name, parse_hls_path, parse_stream_path};

/// The route template a forwarder serves (and logs).
pub const MEDIA_ROUTE: &str = "/{stream}/{n}.flv";

/// Forwarder settings (`[forwarder]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwarderConfig {
    /// The forwarding service's name: the `{service}` of public paths (seed ¶47).
    pub service: String,
    /// Its namespace: the `{namespace}` of public paths (seed ¶44).
    pub namespace: String,
    /// The unique label of the media server it is bound to (seed ¶53).
    pub label: String,
    /// Data-plane listen address (default `127.0.0.1:7420`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Admin listen address for `/healthz` and `/metrics` (default `127.0.0.1:0`).
    pub admin_listen: SocketAddr,
    /// Connect timeout to the media server, ms (default 1000).
    pub connect_timeout_ms: u64,
    /// Time allowed for the media server's response headers, ms (default 15000; must exceed
    /// the media server's RTSP timeout so that its 502 arrives).
    pub header_timeout_ms: u64,
    /// Lease length of its own registration, ms (default 3000).
    pub lease_ms: u64,
    /// How long a stream's upstream session outlives its last viewer, ms (default 1000).
    pub idle_stop_ms: u64,
    /// How long a broken upstream (the media server restarting or moving) is re-attached
    /// while viewers stay connected, ms (default 10000).
    pub reattach_ms: u64,
    /// Fan-out to viewers (`[forwarder.fanout]`).
    pub fanout: FanoutConfig,
    /// Connection policy of the data-plane port (`[forwarder.connections]`).
    pub connections: ConnectionPolicy,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        Self {
            service: String::new(),
            namespace: String::new(),
            label: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            connect_timeout_ms: 1000,
            header_timeout_ms: 15_000,
            lease_ms: 3000,
            idle_stop_ms: 1000,
            reattach_ms: 10_000,
            fanout: FanoutConfig::default(),
            connections: ConnectionPolicy::default(),
        }
    }
}

impl ForwarderConfig {
    /// Checks the names are set and valid.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("forwarder.service", &self.service),
            ("forwarder.namespace", &self.namespace),
            ("forwarder.label", &self.label),
        ] {
            if value.is_empty() {
                return Err(ConfigError::Missing { key });
            }
            if !is_valid_name(value) {
                return Err(ConfigError::Invalid {
                    key: key.to_owned(),
                    value: value.clone(),
                    reason: "must be 1-128 of [A-Za-z0-9_.-]",
                });
            }
        }
        self.connections.validate("forwarder.connections")?;
        self.fanout.settings("forwarder.fanout")?;
        Ok(())
    }
}

/// A running forwarder's request handler.
#[derive(Debug)]
pub struct Forwarder {
    service: String,
    namespace: String,
    label: String,
    instance: String,
    routes: RouteWatch,
    relay: RelayHop,
    /// Plain request/response pass-through (HLS playlists and segments).
    client: HopClient,
    metrics: HopMetrics,
}

/// The metrics a forwarder or the proxy registers.
#[derive(Debug, Clone)]
pub struct RelayHopMetrics {
    /// Requests and open streams.
    pub hop: HopMetrics,
    /// Viewers and skips.
    pub fanout: FanoutMetrics,
    /// Upstream sessions.
    pub relay: RelayMetrics,
}

impl RelayHopMetrics {
    /// Registers all three for `role` (`proxy` or `forwarder`).
    pub fn register(role: &str, registry: &mut prometheus_client::registry::Registry) -> Self {
        Self {
            hop: HopMetrics::register(role, registry),
            fanout: FanoutMetrics::register(&format!("streamgate_{role}"), registry),
            relay: RelayMetrics::register(role, registry),
        }
    }
}

/// The label's current address from `watched`, after checking its namespace.
///
/// # Errors
/// [`HopError::LabelNotRegistered`] or [`HopError::NamespaceMismatch`].
pub fn resolve_label(
    watched: &Watched,
    label: &str,
    namespace: &str,
) -> Result<SocketAddr, HopError> {
    let record = watched
        .snapshot
        .media
        .iter()
        .find(|m| m.label == label)
        .ok_or_else(|| HopError::LabelNotRegistered {
            label: label.to_owned(),
        })?;
    if record.namespace != namespace {
        return Err(HopError::NamespaceMismatch {
            label: label.to_owned(),
            expected: namespace.to_owned(),
            found: record.namespace.clone(),
        });
    }
    Ok(record.addr)
}

impl Forwarder {
    /// A forwarder for `config` whose registrations carry `instance`, resolving its label
    /// from `routes`.
    ///
    /// # Errors
    /// [`ConfigError`] from [`ForwarderConfig::validate`].
    pub fn new(
        config: &ForwarderConfig,
        instance: &str,
        routes: RouteWatch,
        metrics: RelayHopMetrics,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let settings = config.fanout.settings("forwarder.fanout")?;
        Ok(Self {
            service: config.service.clone(),
            namespace: config.namespace.clone(),
            label: config.label.clone(),
            instance: instance.to_owned(),
            routes,
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
        })
    }

    /// Resolves the label now, from the watched routes (seed ¶54).
    ///
    /// # Errors
    /// [`HopError::LabelNotRegistered`] or [`HopError::NamespaceMismatch`].
    pub fn resolve(&self) -> Result<SocketAddr, HopError> {
        resolve_label(&self.routes.current(), &self.label, &self.namespace)
    }

    /// Ends every stream (the forwarder stops).
    pub fn shutdown(&self) {
        self.relay.shutdown();
    }

    fn upstream(&self, path: &str) -> Upstream {
        let (label, namespace) = (self.label.clone(), self.namespace.clone());
        Upstream {
            path: path.to_owned(),
            headers: Vec::new(),
            resolve: Arc::new(move |watched| {
                resolve_label(watched, &label, &namespace)
                    .map(|addr| (label.clone(), addr))
                    .map_err(|e| Refusal::from_error(&e))
            }),
            routes: self.routes.clone(),
        }
    }

    async fn answer(self: Arc<Self>, request: Request<Incoming>) -> Response<HopBody> {
        let head_of_hls = request.method() == Method::HEAD && is_hls_path(request.uri().path());
        if request.method() != Method::GET && !head_of_hls {
            return crate::hop::method_not_allowed("GET");
        }
        let path = request.uri().path().to_owned();
        if path == INSTANCE_PATH {
            return instance_response(&serde_json::json!({
                "service": self.service,
                "namespace": self.namespace,
                "label": self.label,
                "instance": self.instance,
            }));
        }
        if let Some(route) = request
            .headers()
            .get(ROUTE_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            let mine = format!("{}-{}", self.service, self.namespace);
            if route != mine {
                let error = RouteError::Misdirected {
                    segment: route.to_owned(),
                    served: mine,
                };
                info!(%error, "misdirected request");
                return error_response(&error);
            }
        }
        if is_hls_path(&path) {
            return self.pass_through(request).await;
        }
        let stream = match parse_stream_path(&path) {
            Ok(stream) => stream,
            Err(error) => return error_response(&error),
        };
        let addr = match self.resolve() {
            Ok(addr) => addr,
            Err(error) => {
                warn!(%error, "cannot resolve the label");
                return error_response(&error);
            }
        };
        tracing::Span::current().record("addr", tracing::field::display(addr));
        let join = crate::fanout::viewer::join_for(
            self.relay.fanout(),
            request
                .headers()
                .get(crate::fanout::JOIN_HEADER)
                .and_then(|v| v.to_str().ok()),
        );
        let upstream_path = format!("/{}/{}.flv", stream.stream, stream.channel);
        let written = request.extensions().get::<crate::hop::Written>().cloned();
        match self
            .relay
            .play(&upstream_path, || self.upstream(&upstream_path), join)
            .await
        {
            Ok(viewer) => {
                info!(status = 200, "forwarding");
                flv_response(viewer, written.as_ref())
            }
            Err(refusal) => {
                debug!(%refusal, "upstream refused");
                refusal_response(&refusal)
            }
        }
    }
}

impl Forwarder {
    /// Passes an HLS request (playlist or segment, [`crate::hls`]) to the media server as it
    /// is, and its answer back: these are small request/response exchanges, not streams.
    async fn pass_through(&self, request: Request<Incoming>) -> Response<HopBody> {
        let path = request.uri().path().to_owned();
        if let Err(error) = parse_hls_path(&path) {
            return error_response(&error);
        }
        let addr = match self.resolve() {
            Ok(addr) => addr,
            Err(error) => {
                warn!(%error, "cannot resolve the label");
                return error_response(&error);
            }
        };
        tracing::Span::current().record("addr", tracing::field::display(addr));
        let (parts, _) = request.into_parts();
        match self
            .client
            .forward(&self.label, addr, &parts, &path, &[])
            .await
        {
            Ok(response) => response,
            Err(error) => {
                warn!(%error, "media server unreachable");
                error_response(&error)
            }
        }
    }
}

impl crate::hop::Handler for Forwarder {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<HopBody> {
        let span = info_span!(
            "forward",
            route = MEDIA_ROUTE,
            label = %self.label,
            addr = tracing::field::Empty,
            %peer,
        );
        let metrics = self.metrics.clone();
        let response = self.answer(request).instrument(span.clone()).await;
        metrics.answered(response.status());
        if response.status() == StatusCode::OK
            && response.headers().contains_key(http::header::CACHE_CONTROL)
        {
            metrics.track(response, move |bytes, open| {
                let _entered = span.enter();
                debug!(bytes, open_ms = open.as_millis(), "stream closed");
            })
        } else {
            response
        }
    }
}
