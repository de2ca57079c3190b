//! Service discovery behind a trait, so the registry can be replaced (by Kubernetes
//! EndpointSlices selected by label, for instance) without touching the proxy or the
//! forwarders (seed ¶43 deploys each server as a pod; ¶53 binds forwarders to labels).
//!
//! Two implementations: [`RegistryClient`] (the HTTP registry with leases) and
//! [`StaticDiscovery`] (a fixed list from TOML). [`AnyDiscovery`] picks one at run time.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::HopError;
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
}

impl Discovery for AnyDiscovery {
    async fn media(&self, label: &str) -> Result<Option<MediaRecord>, HopError> {
        match self {
            Self::Registry(r) => Discovery::media(r, label).await,
            Self::Static(s) => s.media(label).await,
        }
    }

    async fn routes(&self, since: Option<u64>, wait: Duration) -> Result<RouteSnapshot, HopError> {
        match self {
            Self::Registry(r) => Discovery::routes(r, since, wait).await,
            Self::Static(s) => s.routes(since, wait).await,
        }
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
