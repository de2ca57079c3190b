//! The state shared by the API handlers and the workers: settings, the store, one node client
//! per chain, the authentication gate, the outbound policy, metrics, caches, and the wake-up
//! signals between workers.
//!
//! It sits below the API and the workers in the module order: [`crate::relay`] builds it and
//! starts the workers; the workers and the API only use it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use serde::Serialize;
use svckit::Clock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::Gate;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::node::NodeClient;
use crate::outbound::Outbound;
use crate::store::Store;
use crate::validate::AccountPolicy;

/// Most accounts whose nonce is cached (the cache is cleared when full).
const NONCE_CACHE_MAX: usize = 200_000;
/// How long a readiness answer is reused.
const READINESS_CACHE: Duration = Duration::from_secs(1);
/// Time allowed for each readiness check.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The next nonce of accounts, as far as the relay has seen (from mined transactions and
/// from the nodes' answers to broadcasts), so the request path never asks a node.
#[derive(Debug, Default)]
pub(crate) struct NonceCache {
    next: Mutex<HashMap<(u64, Address), u64>>,
}

impl NonceCache {
    /// The account's next nonce on `chain_id`, if known.
    pub(crate) fn get(&self, chain_id: u64, account: Address) -> Option<u64> {
        self.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(chain_id, account))
            .copied()
    }

    /// Raises the account's next nonce to at least `next` (nonces never go down, except
    /// through a reorg, after which the node's answer corrects the cache with [`Self::set`]).
    pub(crate) fn raise(&self, chain_id: u64, account: Address, next: u64) {
        let mut map = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= NONCE_CACHE_MAX && !map.contains_key(&(chain_id, account)) {
            map.clear();
        }
        let slot = map.entry((chain_id, account)).or_insert(next);
        *slot = (*slot).max(next);
    }

    /// Sets the account's next nonce as a node reported it.
    pub(crate) fn set(&self, chain_id: u64, account: Address, next: u64) {
        let mut map = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= NONCE_CACHE_MAX {
            map.clear();
        }
        map.insert((chain_id, account), next);
    }
}

/// The answer of `GET /readyz`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Readiness {
    /// Whether the relay can do its work.
    pub(crate) ready: bool,
    /// `ok` or `failed`.
    pub(crate) database: &'static str,
    /// Per chain id: `ok` or `no_node` (no node answered).
    pub(crate) chains: BTreeMap<u64, &'static str>,
}

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
    /// API keys, rate limits, socket counts.
    pub(crate) gate: Gate,
    /// Where webhooks may go.
    pub(crate) outbound: Outbound,
    /// Known account nonces.
    pub(crate) nonces: NonceCache,
    /// Unfinished transactions, as last counted (backpressure and a gauge).
    pub(crate) tracked: AtomicU64,
    /// Wall time source (a test clock in unit tests).
    pub(crate) clock: Arc<dyn Clock>,
    /// Metric handles.
    pub(crate) metrics: Metrics,
    /// The HTTP client for webhook deliveries (no redirects, no proxies).
    pub(crate) http: reqwest::Client,
    /// Wakes the broadcast worker (new jobs).
    pub(crate) wake_broadcast: Notify,
    /// Wakes the head follower of each chain (transactions sent).
    pub(crate) wake_follow: BTreeMap<u64, Notify>,
    /// Wakes the webhook worker (new notifications).
    pub(crate) wake_delivery: Notify,
    /// Wakes WebSocket sessions (new account events).
    pub(crate) wake_sessions: Notify,
    /// Numbers WebSocket sessions of this instance.
    pub(crate) session_seq: AtomicU64,
    /// The last readiness answer and when it was made.
    pub(crate) readiness: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
    /// Cancelled when the relay stops.
    pub(crate) cancel: CancellationToken,
}

impl Shared {
    /// Unfinished transactions, as last counted.
    pub(crate) fn tracked(&self) -> u64 {
        self.tracked.load(Ordering::Relaxed)
    }

    /// Whether the database and at least one node of every chain answer (each within 2 s;
    /// the answer is reused for a second, so probes cannot turn into load).
    pub(crate) async fn readiness(&self) -> Readiness {
        let mut cached = self.readiness.lock().await;
        if let Some((at, report)) = cached.as_ref()
            && at.elapsed() < READINESS_CACHE
        {
            return report.clone();
        }
        let database = match tokio::time::timeout(READINESS_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => "ok",
            _ => "failed",
        };
        let mut chains = BTreeMap::new();
        for (chain_id, node) in &self.nodes {
            let answered = tokio::time::timeout(READINESS_TIMEOUT, node.remote_chain_id()).await;
            let state = match answered {
                Ok(Ok(id)) if id == *chain_id => "ok",
                _ => "no_node",
            };
            chains.insert(*chain_id, state);
        }
        let report = Readiness {
            ready: database == "ok" && chains.values().all(|s| *s == "ok"),
            database,
            chains,
        };
        *cached = Some((Instant::now(), report.clone()));
        report
    }
}
