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
use crate::store::{GroupCommit, Store};
use crate::validate::AccountPolicy;

/// Most accounts whose nonce is cached (the cache is cleared when full).
const NONCE_CACHE_MAX: usize = 200_000;
/// How long a readiness answer is reused.
const READINESS_CACHE: Duration = Duration::from_secs(1);
/// Time allowed for each readiness check.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Most entries each map of [`GrantCache`] holds before it is emptied.
const GRANT_CACHE_MAX: usize = 100_000;

/// Positive answers of the two authorisation reads on the submission path, so a busy device
/// costs no database read per request: a device's owner (immutable once the device exists,
/// so kept until the bound empties the map) and "account registered to device" (kept for
/// `ttl`, dropped at once when this instance removes the account; another instance's removal
/// is seen within `ttl`, as with API key revocation and `auth.key_cache_seconds`). Negative
/// answers are never cached, so a device or account registered a moment ago is seen at once.
#[derive(Debug)]
pub(crate) struct GrantCache {
    ttl_ms: u64,
    owners: Mutex<HashMap<String, Option<String>>>,
    accounts: Mutex<HashMap<(String, Address), u64>>,
}

impl GrantCache {
    /// An empty cache whose account grants live `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            owners: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// The cached owner of `device` (`Some(None)` for a v1 row without one).
    pub(crate) fn owner(&self, device: &str) -> Option<Option<String>> {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(device)
            .cloned()
    }

    /// Remembers that `device` exists and is owned by `tenant`.
    pub(crate) fn set_owner(&self, device: &str, tenant: Option<String>) {
        let mut map = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= GRANT_CACHE_MAX {
            map.clear();
        }
        map.insert(device.to_owned(), tenant);
    }

    /// Whether `account` was seen registered to `device` less than the TTL ago.
    pub(crate) fn account(&self, device: &str, account: Address, now_ms: u64) -> bool {
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(device.to_owned(), account))
            .is_some_and(|at| now_ms.saturating_sub(*at) < self.ttl_ms)
    }

    /// Remembers that `account` is registered to `device` (seen at `now_ms`).
    pub(crate) fn set_account(&self, device: &str, account: Address, now_ms: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        let mut map = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= GRANT_CACHE_MAX {
            map.clear();
        }
        map.insert((device.to_owned(), account), now_ms);
    }

    /// Forgets that `account` is registered to `device` (it was removed).
    pub(crate) fn drop_account(&self, device: &str, account: Address) {
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(device.to_owned(), account));
    }
}

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
    /// The group-commit writer of submissions.
    pub(crate) submits: GroupCommit,
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
    /// Cached device owners and account registrations (the submission path's reads).
    pub(crate) grants: GrantCache,
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
    /// Wakes the head follower of each chain and hands it the hashes just sent.
    pub(crate) wake_follow: BTreeMap<u64, FollowSignal>,
    /// Wakes the webhook worker (new notifications).
    pub(crate) wake_delivery: Notify,
    /// Webhook notifications committed already claimed by this instance (the head
    /// follower's results), handed to the webhook worker to send from memory.
    pub(crate) handoff: tokio::sync::mpsc::UnboundedSender<Vec<crate::store::WebhookJob>>,
    /// The broadcaster's inbox of first broadcast jobs committed with their submissions
    /// ([`crate::store::Handoff`]; taken when it starts).
    pub(crate) broadcast_rx: Mutex<Option<tokio::sync::mpsc::Receiver<crate::store::HandedJobs>>>,
    /// The webhook worker's end of [`Self::handoff`] (taken when it starts).
    pub(crate) handoff_rx:
        Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Vec<crate::store::WebhookJob>>>>,
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

/// Most sent hashes a [`FollowSignal`] holds before it asks for a full scan instead.
pub(crate) const SENT_QUEUE_CAP: usize = 10_000;

/// What the broadcaster tells a chain's head follower: a wake-up and the hashes sent since
/// the follower last looked (bounded by [`SENT_QUEUE_CAP`]; past it the follower scans every
/// tracked transaction once instead), so a transaction already in a block the follower read
/// is decided at once without reading every tracked row.
#[derive(Debug, Default)]
pub(crate) struct FollowSignal {
    notify: Notify,
    sent: Mutex<SentQueue>,
}

#[derive(Debug, Default)]
struct SentQueue {
    hashes: Vec<alloy::primitives::B256>,
    overflowed: bool,
}

impl FollowSignal {
    /// Records that `hash` was sent and wakes the follower.
    pub(crate) fn sent(&self, hash: alloy::primitives::B256) {
        {
            let mut queue = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.hashes.len() < SENT_QUEUE_CAP {
                queue.hashes.push(hash);
            } else {
                queue.overflowed = true;
            }
        }
        self.notify.notify_one();
    }

    /// Resolves at the next wake-up.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The hashes sent since the last call, and whether some were dropped for the bound.
    pub(crate) fn take(&self) -> (Vec<alloy::primitives::B256>, bool) {
        let mut queue = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        let overflowed = std::mem::take(&mut queue.overflowed);
        (std::mem::take(&mut queue.hashes), overflowed)
    }
}
