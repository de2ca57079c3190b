//! Service discovery behind a trait, so the registry can be replaced (by Kubernetes
//! EndpointSlices selected by label, for instance) without touching the proxy or the
//! forwarders (seed ¶43 deploys each server as a pod; ¶53 binds forwarders to labels).
//!
//! Three implementations: [`RegistryClient`] (the HTTP registry with leases, the embedded
//! default), [`EtcdDiscovery`] (etcd v3: keys under leases, a watched cache; no single point
//! of failure) and [`StaticDiscovery`] (a fixed list from TOML). [`AnyDiscovery`] picks one at
//! run time, and [`Registrar`] the matching way to register.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::error::HopError;
use crate::etcd::{EtcdClient, EtcdDiscovery};
use crate::registry::client::{Registrant, keep_registered};
use crate::registry::{ForwarderRecord, MediaRecord, RegistryClient, RouteSnapshot};
use crate::route::{RouteTable, RouteTarget};

/// Looks up media servers by label and the forwarders' routing table.
pub trait Discovery: Send + Sync + 'static {
    /// The media server currently registered under `label`, `None` if none is.
    ///
    /// # Errors
    /// [`HopError::Registry`] when the source cannot be asked.
    fn media(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Option<MediaRecord>, HopError>> + Send;

    /// The routing snapshot. With `since`, the answer may wait up to `wait` for a version
    /// different from `since` (long-poll); a source that never changes waits the full time.
    ///
    /// # Errors
    /// [`HopError::Registry`] when the source cannot be asked.
    fn routes(
        &self,
        since: Option<u64>,
        wait: Duration,
    ) -> impl Future<Output = Result<RouteSnapshot, HopError>> + Send;
}

impl Discovery for RegistryClient {
    async fn media(&self, label: &str) -> Result<Option<MediaRecord>, HopError> {
        Self::media(self, label).await
    }

    async fn routes(&self, since: Option<u64>, wait: Duration) -> Result<RouteSnapshot, HopError> {
        Self::routes(self, since, wait).await
    }
}

impl Discovery for EtcdDiscovery {
    async fn media(&self, label: &str) -> Result<Option<MediaRecord>, HopError> {
        Self::media(self, label).await
    }

    async fn routes(&self, since: Option<u64>, wait: Duration) -> Result<RouteSnapshot, HopError> {
        Self::routes(self, since, wait).await
    }
}

/// Fixed entries (`[discovery]` `media` and `forwarders` lists in TOML).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticDiscovery {
    /// Media servers.
    pub media: Vec<MediaRecord>,
    /// Forwarders.
    pub forwarders: Vec<ForwarderRecord>,
}

impl Discovery for StaticDiscovery {
    async fn media(&self, label: &str) -> Result<Option<MediaRecord>, HopError> {
        Ok(self.media.iter().find(|m| m.label == label).cloned())
    }

    async fn routes(&self, since: Option<u64>, wait: Duration) -> Result<RouteSnapshot, HopError> {
        if since == Some(0) {
            tokio::time::sleep(wait).await;
        }
        Ok(RouteSnapshot {
            version: 0,
            media: self.media.clone(),
            forwarders: self.forwarders.clone(),
        })
    }
}

/// Either discovery source, chosen by configuration.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "the hyper client's size depends on workspace feature unification (hyper-util `http2`, \
              enabled through deltalake's object_store in dataloop); one value per process"
)]
pub enum AnyDiscovery {
    /// The HTTP registry.
    Registry(RegistryClient),
    /// Fixed entries.
    Static(StaticDiscovery),
    /// etcd.
    Etcd(EtcdDiscovery),
}

impl Discovery for AnyDiscovery {
    async fn media(&self, label: &str) -> Result<Option<MediaRecord>, HopError> {
        match self {
            Self::Registry(r) => Discovery::media(r, label).await,
            Self::Static(s) => s.media(label).await,
            Self::Etcd(e) => e.media(label).await,
        }
    }

    async fn routes(&self, since: Option<u64>, wait: Duration) -> Result<RouteSnapshot, HopError> {
        match self {
            Self::Registry(r) => Discovery::routes(r, since, wait).await,
            Self::Static(s) => s.routes(since, wait).await,
            Self::Etcd(e) => e.routes(since, wait).await,
        }
    }
}

/// Where a media server or forwarder keeps its registration, matching [`AnyDiscovery`].
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "as for AnyDiscovery: one value per process"
)]
pub enum Registrar {
    /// The HTTP registry: lease length from the part's own `lease_ms`.
    Registry(RegistryClient),
    /// etcd: lease length from `discovery.lease_ttl_s`.
    Etcd(EtcdClient),
}

impl From<RegistryClient> for Registrar {
    fn from(client: RegistryClient) -> Self {
        Self::Registry(client)
    }
}

impl From<EtcdClient> for Registrar {
    fn from(client: EtcdClient) -> Self {
        Self::Etcd(client)
    }
}

impl Registrar {
    /// Keeps `who` registered until `stop` is cancelled (then deregisters), reporting in
    /// `registered` whether the registration is held; `ttl` is the HTTP registry's lease
    /// (etcd uses its configured TTL). See [`keep_registered`] and
    /// [`crate::etcd::register::keep_registered`].
    pub async fn keep_registered(
        self,
        who: Registrant,
        ttl: Duration,
        registered: watch::Sender<bool>,
        stop: CancellationToken,
    ) {
        match self {
            Self::Registry(client) => keep_registered(client, who, ttl, registered, stop).await,
            Self::Etcd(client) => {
                crate::etcd::register::keep_registered(client, who, registered, stop).await;
            }
        }
    }
}

/// The routing snapshot of a discovery source, kept current by long-polling it: the one place
/// where the proxy's routing table and the forwarder's label come from (no lookup per
/// request; seed ¶54's "determine the label bound to the forwarder" is answered from it).
#[derive(Debug, Clone)]
pub struct RouteWatch {
    tx: Arc<watch::Sender<Watched>>,
}

/// What a [`RouteWatch`] holds.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// The latest snapshot (empty before the first answer).
    pub snapshot: Arc<RouteSnapshot>,
    /// Whether discovery answered at least once.
    pub loaded: bool,
}

impl RouteWatch {
    /// A watch of `discovery`, long-polling with `wait`, until the returned task is aborted.
    pub fn spawn<D: Discovery>(
        discovery: Arc<D>,
        wait: Duration,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, _) = watch::channel(Watched::default());
        let watch = Self { tx: Arc::new(tx) };
        let task = {
            let watch = watch.clone();
            tokio::spawn(async move {
                let mut warned = false;
                loop {
                    let current = watch.current();
                    let since = current.loaded.then_some(current.snapshot.version);
                    match discovery.routes(since, wait).await {
                        Ok(snapshot) => {
                            warned = false;
                            watch.install(snapshot);
                        }
                        Err(error) => {
                            if !warned {
                                warn!(%error, "cannot watch the routes; keeping the current ones");
                                warned = true;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            })
        };
        (watch, task)
    }

    /// A watch that never changes, holding `snapshot` (tests, static set-ups).
    pub fn fixed(snapshot: RouteSnapshot) -> Self {
        let (tx, _) = watch::channel(Watched {
            snapshot: Arc::new(snapshot),
            loaded: true,
        });
        Self { tx: Arc::new(tx) }
    }

    /// Installs `snapshot` if it differs from the current one (by version or content).
    pub fn install(&self, snapshot: RouteSnapshot) {
        self.tx.send_if_modified(|held| {
            if held.loaded && *held.snapshot == snapshot {
                return false;
            }
            *held = Watched {
                snapshot: Arc::new(snapshot),
                loaded: true,
            };
            true
        });
    }

    /// The latest snapshot.
    pub fn current(&self) -> Watched {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every change.
    pub fn changes(&self) -> watch::Receiver<Watched> {
        self.tx.subscribe()
    }

    /// Waits until discovery answered once, up to `within`; true if it did.
    pub async fn loaded(&self, within: Duration) -> bool {
        let mut rx = self.changes();
        tokio::time::timeout(within, rx.wait_for(|w| w.loaded))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The proxy's routing table for a snapshot.
pub fn route_table(snapshot: &RouteSnapshot) -> RouteTable {
    RouteTable::new(snapshot.forwarders.iter().map(|f| RouteTarget {
        service: f.service.clone(),
        namespace: f.namespace.clone(),
        addr: f.addr,
        label: f.label.clone(),
    }))
}
