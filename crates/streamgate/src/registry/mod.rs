//! The registry: where media servers announce their unique label and current address, and
//! forwarders their (service, namespace) (seed ¶44, ¶53-¶54).
//!
//! Media servers and forwarders register with a credential ([`credentials`]) and a lease,
//! and renew it by heartbeat. A label (and a (service, namespace) pair) is unique: a second
//! claim while the holder lives is refused with 409, never a takeover; a claim against a
//! holder whose address no longer answers `GET /v1/instance` with its instance id takes the
//! key at once, so a media server that restarts elsewhere is followed without waiting for
//! its old lease to run out ([`leases`]). Forwarders and the proxy follow the changes by
//! long-polling the routes. A static TOML list can declare entries that never expire. The
//! HTTP API ([`api`], served by `svckit::serve` with `/healthz` and `/metrics`); every call
//! needs `Authorization: Bearer <secret>` (401 without, 403 for a credential whose role or
//! namespaces do not allow the write):
//!
//! | method and path | body / query | answer |
//! |---|---|---|
//! | `PUT /v1/media/{label}` | [`MediaRegistration`] | 200 `{"status":"registered"\|"renewed"}`, 404 heartbeat for an unknown lease, 409 held by another live instance, or superseded |
//! | `DELETE /v1/media/{label}?instance=ID` | | 204, or 404 |
//! | `GET /v1/media/{label}` | | 200 [`MediaRecord`], or 404 |
//! | `PUT /v1/forwarders/{service}/{namespace}` | [`ForwarderRegistration`] | as for media |
//! | `DELETE /v1/forwarders/{service}/{namespace}?instance=ID` | | 204, or 404 |
//! | `GET /v1/routes?since=V&wait_ms=W` | | [`RouteSnapshot`]; waits up to `W` ms (at most 30 s) while the version is still `V` |

pub mod api;
pub mod client;
pub mod credentials;
pub mod leases;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::collections::BTreeMap;

use axum::Router;
use axum::routing::{get, put};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as MetricsRegistry;
use serde::{Deserialize, Serialize};
use svckit::Clock;
use tokio::sync::watch;
use tracing::warn;

pub use client::RegistryClient;
pub use credentials::{Credential, Credentials, Role};
pub use leases::{Leases, Renewal, Takeover};

use crate::error::ConfigError;
use crate::hop::HopClient;

/// Longest a `GET /v1/routes` long-poll waits.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Shortest lease accepted.
pub const MIN_TTL: Duration = Duration::from_millis(100);
/// Longest lease accepted.
pub const MAX_TTL: Duration = Duration::from_secs(600);

/// A media server as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaRecord {
    /// The unique label forwarders are bound to (seed ¶53).
    pub label: String,
    /// The namespace it serves (seed ¶44).
    pub namespace: String,
    /// Its current HTTP address.
    pub addr: SocketAddr,
    /// The stream names it serves.
    #[serde(default)]
    pub streams: Vec<String>,
    /// The registering process's instance id (`static` for TOML entries).
    #[serde(default = "static_instance")]
    pub instance: String,
}

/// A forwarder as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwarderRecord {
    /// The forwarding service's name: the `{service}` of the public path (seed ¶47).
    pub service: String,
    /// Its namespace: the `{namespace}` of the public path.
    pub namespace: String,
    /// Its current HTTP address.
    pub addr: SocketAddr,
    /// The label of the media server it is bound to.
    pub label: String,
    /// The registering process's instance id (`static` for TOML entries).
    #[serde(default = "static_instance")]
    pub instance: String,
}

fn static_instance() -> String {
    "static".to_owned()
}

/// Everything the registry holds, at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSnapshot {
    /// Changes whenever the content does.
    pub version: u64,
    /// Live media servers.
    pub media: Vec<MediaRecord>,
    /// Live forwarders.
    pub forwarders: Vec<ForwarderRecord>,
}

/// Body of `PUT /v1/media/{label}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaRegistration {
    /// The namespace.
    pub namespace: String,
    /// The current address.
    pub addr: SocketAddr,
    /// The streams served.
    #[serde(default)]
    pub streams: Vec<String>,
    /// The process's instance id.
    pub instance: String,
    /// Lease length in milliseconds (100 to 600000).
    pub ttl_ms: u64,
    /// `true` to renew the lease of `instance` only, `false` to (re-)register.
    #[serde(default)]
    pub heartbeat: bool,
}

/// Body of `PUT /v1/forwarders/{service}/{namespace}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwarderRegistration {
    /// The current address.
    pub addr: SocketAddr,
    /// The media server's label it is bound to.
    pub label: String,
    /// The process's instance id.
    pub instance: String,
    /// Lease length in milliseconds (100 to 600000).
    pub ttl_ms: u64,
    /// `true` to renew the lease of `instance` only, `false` to (re-)register.
    #[serde(default)]
    pub heartbeat: bool,
}

/// Registry settings (`[registry]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// HTTP listen address (default `127.0.0.1:7400`).
    pub listen: SocketAddr,
    /// How often expired leases are swept, in ms (default 100).
    pub sweep_ms: u64,
    /// Media servers declared statically (never expire).
    pub media: Vec<MediaRecord>,
    /// Forwarders declared statically (never expire).
    pub forwarders: Vec<ForwarderRecord>,
    /// Who may register and read, by credential id.
    pub credentials: BTreeMap<String, Credential>,
    /// Without credentials, accept every request (local experiments only; default false:
    /// a registry without credentials refuses to start).
    pub allow_anonymous: bool,
    /// Deadline for probing a holder before a second claim takes its key, ms (default 500;
    /// a holder that does not answer in time counts as alive).
    pub probe_timeout_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            sweep_ms: 100,
            media: Vec::new(),
            forwarders: Vec::new(),
            credentials: BTreeMap::new(),
            allow_anonymous: false,
            probe_timeout_ms: 500,
        }
    }
}

/// The registry service: shared state plus the version watch.
#[derive(Debug, Clone)]
pub struct Registry {
    state: Arc<Mutex<Leases>>,
    version: watch::Sender<u64>,
    clock: Arc<dyn Clock>,
    entries: Gauge,
    credentials: Arc<Credentials>,
    probe: HopClient,
}

impl Registry {
    /// A registry holding `config`'s static entries, using `clock` for leases, registering
    /// its metric (`streamgate_registry_entries`) in `metrics`.
    ///
    /// # Errors
    /// [`ConfigError`] when no credential is configured (and anonymous access is not
    /// allowed) or a secret is too short.
    pub fn new(
        config: &RegistryConfig,
        clock: Arc<dyn Clock>,
        metrics: &mut MetricsRegistry,
    ) -> Result<Self, ConfigError> {
        let credentials = Credentials::new(&config.credentials, config.allow_anonymous)?;
        let probe_timeout = Duration::from_millis(config.probe_timeout_ms.max(10));
        let mut leases = Leases::new();
        for record in &config.media {
            leases.add_static_media(record.clone());
        }
        for record in &config.forwarders {
            leases.add_static_forwarder(record.clone());
        }
        let entries = Gauge::default();
        metrics.register(
            "streamgate_registry_entries",
            "Live media servers plus forwarders",
            entries.clone(),
        );
        let (version, _) = watch::channel(leases.version());
        let registry = Self {
            state: Arc::new(Mutex::new(leases)),
            version,
            clock,
            entries,
            credentials: Arc::new(credentials),
            probe: HopClient::new(probe_timeout, probe_timeout),
        };
        registry.publish();
        Ok(registry)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Leases) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    fn publish(&self) {
        let now = self.clock.now();
        let (version, count) = self.with(|l| {
            let snap = l.snapshot(now);
            (l.version(), snap.media.len() + snap.forwarders.len())
        });
        self.entries.set(i64::try_from(count).unwrap_or(i64::MAX));
        self.version.send_if_modified(|v| {
            let changed = *v != version;
            *v = version;
            changed
        });
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> RouteSnapshot {
        let now = self.clock.now();
        self.with(|l| l.snapshot(now))
    }

    /// Drops expired leases now (the sweeper calls this every `sweep_ms`).
    pub fn sweep(&self) {
        let now = self.clock.now();
        let gone = self.with(|l| l.expire(now));
        for key in &gone {
            warn!(key = %key, "lease expired");
        }
        if !gone.is_empty() {
            self.publish();
        }
    }

    /// Runs [`Registry::sweep`] every `every` until the task is aborted.
    pub fn spawn_sweeper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                registry.sweep();
            }
        })
    }

    /// The API router (without `/healthz` and `/metrics`, which `svckit::serve` adds).
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/v1/media/{label}",
                put(api::put_media)
                    .get(api::get_media)
                    .delete(api::delete_media),
            )
            .route(
                "/v1/forwarders/{service}/{namespace}",
                put(api::put_forwarder).delete(api::delete_forwarder),
            )
            .route("/v1/routes", get(api::get_routes))
            .with_state(self.clone())
    }
}
