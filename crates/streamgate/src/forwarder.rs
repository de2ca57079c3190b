//! The forwarding server (seed ¶42, ¶48, ¶53-¶54): one per media server, bound to that
//! server's unique label, never to its address. For every request it resolves the label to
//! the address registered right now, forwards the request there and streams the answer back,
//! so a media server that restarts on another address is reached as soon as it registers
//! again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::discovery::Discovery;
use crate::error::{Classify, ConfigError, HopError};
use crate::hop::{HopBody, HopClient, HopMetrics, error_response, json_response};
use crate::route::is_valid_name;

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
        Ok(())
    }
}

/// A running forwarder's request handler.
#[derive(Debug)]
pub struct Forwarder<D> {
    label: String,
    discovery: D,
    client: HopClient,
    metrics: HopMetrics,
    /// The address last resolved, used when the registry itself cannot be asked.
    last_known: Mutex<Option<SocketAddr>>,
}

impl<D: Discovery> Forwarder<D> {
    /// A forwarder for `config`'s label, resolving through `discovery`.
    pub fn new(config: &ForwarderConfig, discovery: D, metrics: HopMetrics) -> Self {
        Self {
            label: config.label.clone(),
            discovery,
            client: HopClient::new(
                Duration::from_millis(config.connect_timeout_ms),
                Duration::from_millis(config.header_timeout_ms),
            ),
            metrics,
            last_known: Mutex::new(None),
        }
    }

    /// Resolves the label now (seed ¶54).
    ///
    /// # Errors
    /// [`HopError::LabelNotRegistered`], or [`HopError::Registry`] when the registry is
    /// unreachable and no address was ever resolved.
    pub async fn resolve(&self) -> Result<SocketAddr, HopError> {
        match self.discovery.media(&self.label).await {
            Ok(Some(record)) => {
                *self
                    .last_known
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(record.addr);
                Ok(record.addr)
            }
            Ok(None) => Err(HopError::LabelNotRegistered {
                label: self.label.clone(),
            }),
            Err(error) => {
                let last = *self
                    .last_known
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match last {
                    Some(addr) => {
                        warn!(label = %self.label, %error, %addr, "registry unreachable; using the last known address");
                        Ok(addr)
                    }
                    None => Err(error),
                }
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
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let addr = match self.resolve().await {
            Ok(addr) => addr,
            Err(error) => {
                warn!(%error, origin = ?error.origin(), "cannot resolve the label");
                return error_response(&error);
            }
        };
        tracing::Span::current().record("addr", tracing::field::display(addr));
        match self
            .client
            .forward(&self.label, addr, &parts, &path, &[])
            .await
        {
            Ok(response) => {
                info!(status = response.status().as_u16(), "forwarding");
                response
            }
            Err(error) => {
                warn!(%error, origin = ?error.origin(), "media server unreachable");
                error_response(&error)
            }
        }
    }
}

impl<D: Discovery> crate::hop::Handler for Forwarder<D> {
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
