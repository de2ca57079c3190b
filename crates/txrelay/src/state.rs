//! The state shared by the API handlers and the workers: settings, the store, one node client
//! per chain, metrics, the outbound HTTP client and the wake-up signals between workers.
//!
//! It sits below the API and the workers in the module order: [`crate::relay`] builds it and
//! starts the workers; the workers and the API only read it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use svckit::Clock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::node::NodeClient;
use crate::store::Store;
use crate::validate::AccountPolicy;

/// State shared by the API handlers and the workers.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The validated configuration.
    pub(crate) settings: Settings,
    /// The database.
    pub(crate) store: Store,
    /// One client per configured chain, by chain id.
    pub(crate) nodes: BTreeMap<u64, NodeClient>,
    /// Which accounts may submit.
    pub(crate) policy: AccountPolicy,
    /// Wall time source (a test clock in unit tests).
    pub(crate) clock: Arc<dyn Clock>,
    /// Metric handles.
    pub(crate) metrics: Metrics,
    /// The HTTP client for webhook deliveries.
    pub(crate) http: reqwest::Client,
    /// Wakes the broadcast worker (new jobs).
    pub(crate) wake_broadcast: Notify,
    /// Wakes the webhook worker (new notifications).
    pub(crate) wake_delivery: Notify,
    /// Wakes WebSocket sessions (new account events).
    pub(crate) wake_sessions: Notify,
    /// Numbers WebSocket sessions of this instance.
    pub(crate) session_seq: AtomicU64,
    /// Cancelled when the relay stops.
    pub(crate) cancel: CancellationToken,
}
