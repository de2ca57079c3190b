//! Starting and stopping a relay: the store, one [`NodeClient`] per chain, the shared state
//! ([`crate::state`]), the workers (broadcast, one head follower per chain, webhook delivery,
//! maintenance), the public API on [`crate::server`] and the operations listener
//! (`/healthz`, `/readyz`, `/metrics`) through `svckit::serve`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::registry::Registry;
use svckit::{Clock, ServeOptions};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use url::Url;

use crate::auth::{Gate, GateSettings};
use crate::config::Settings;
use crate::error::Error;
use crate::metrics::{ChainLabels, Metrics};
use crate::node::NodeClient;
use crate::outbound::Outbound;
use crate::state::{NonceCache, Shared};
use crate::store::Store;
use crate::validate::AccountPolicy;

/// How long in-flight requests get when the relay stops.
const GRACE: Duration = Duration::from_secs(5);

/// A running relay. Dropping it does not stop it; call [`Running::stop`].
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    ops_addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    servers: Vec<tokio::task::JoinHandle<Result<(), Error>>>,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let bind_error = |source| Error::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

async fn nodes(settings: &Settings, metrics: &Metrics) -> Result<BTreeMap<u64, NodeClient>, Error> {
    let mut nodes = BTreeMap::new();
    for (chain_id, chain) in &settings.chains {
        let failovers = metrics
            .failovers
            .get_or_create(&ChainLabels {
                chain_id: *chain_id,
                result: "failover".to_owned(),
            })
            .clone();
        let node = NodeClient::new(
            *chain_id,
            chain.rpc_urls.clone(),
            settings.rpc_timeout,
            settings.node_cooldown,
            failovers,
        )
        .counting(metrics.node_requests.clone());
        match node.remote_chain_id().await {
            Ok(reported) if reported == *chain_id => {}
            Ok(reported) => {
                let urls: Vec<String> = chain.rpc_urls.iter().map(ToString::to_string).collect();
                return Err(Error::ChainIdMismatch {
                    url: urls.join(", "),
                    configured: *chain_id,
                    reported,
                });
            }
            Err(error) => {
                warn!(chain_id, %error, "no node of the chain answers at start-up; serving it anyway");
            }
        }
        nodes.insert(*chain_id, node);
    }
    Ok(nodes)
}

/// The outbound policy: the configured lists, and the relay's own endpoints refused.
async fn outbound(settings: &Settings, own_ports: Vec<u16>) -> Outbound {
    let mut internal: Vec<Url> = settings
        .chains
        .values()
        .flat_map(|c| c.rpc_urls.iter().chain(&c.ws_urls))
        .map(|u| u.expose().clone())
        .collect();
    if settings.database_url.expose().scheme() != "sqlite" {
        internal.push(settings.database_url.expose().clone());
    }
    Outbound::new(
        settings.outbound_allow.clone(),
        settings.outbound_deny.clone(),
        own_ports,
        Outbound::endpoints_of(&internal).await,
    )
}

/// Starts a relay with `settings`, reading time from `clock`.
///
/// Opens and migrates the database (a new SQLite file is created with mode 0600), checks each
/// chain's id against a node that answers (a chain whose nodes are all down is served anyway:
/// submissions are queued until one is back), releases the claims this instance held before a
/// restart, starts the workers, and serves the API on `settings.listen` and the operations
/// endpoints on `settings.ops_listen` (port 0 picks a free port, see [`Running::addr`]).
///
/// # Errors
/// [`Error::Store`], [`Error::ChainIdMismatch`] or [`Error::Bind`].
pub async fn start(settings: Settings, clock: Arc<dyn Clock>) -> Result<Running, Error> {
    crate::store::prepare_sqlite_file(&settings.database_url)?;
    let store = Store::open(&settings.database_url, settings.max_connections).await?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    registry.sub_registry_with_prefix("txrelay").register(
        "db_commits",
        "Database transactions committed by this instance (submissions are group-committed)",
        store.commits(),
    );
    registry.sub_registry_with_prefix("txrelay").register(
        "db_wal_checkpoints",
        "SQLite write-ahead-log checkpoints run beside the writer that found a log to copy",
        store.checkpoints(),
    );
    let nodes = nodes(&settings, &metrics).await?;
    let released = store.release_claims(&settings.instance_id).await?;
    if released > 0 {
        info!(released, instance = %settings.instance_id, "released claims held before a restart");
    }
    let (listener, addr) = bind(settings.listen).await?;
    let (ops_listener, ops_addr) = bind(settings.ops_listen).await?;
    let outbound = outbound(&settings, vec![addr.port(), ops_addr.port()]).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_default();
    let gate = Gate::new(GateSettings {
        quota: settings.key_quota,
        lookup_quota: settings.key_lookup_quota,
        cache_ms: crate::store::millis_of(settings.key_cache),
        max_sockets: settings.max_sockets_per_key,
    });
    let wake_follow = nodes
        .keys()
        .map(|id| (*id, crate::state::FollowSignal::default()))
        .collect();
    let grants = crate::state::GrantCache::new(settings.key_cache);
    let cancel = CancellationToken::new();
    let (broadcast_handoff, broadcast_rx) =
        tokio::sync::mpsc::channel(crate::store::group::HANDOFF_BATCHES);
    let (submits, writer) = crate::store::GroupCommit::start(
        store.clone(),
        settings.group_commit,
        Some(crate::store::Handoff {
            instance: settings.instance_id.clone(),
            lease: settings.broadcast_lease,
            jobs: broadcast_handoff,
        }),
        cancel.clone(),
    );
    let (handoff, handoff_rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        policy: AccountPolicy::new(
            settings.account_mode,
            settings.allow.clone(),
            settings.deny.clone(),
        ),
        settings,
        store,
        submits,
        nodes,
        gate,
        outbound,
        nonces: NonceCache::default(),
        grants,
        tracked: AtomicU64::new(0),
        clock,
        metrics,
        http,
        wake_broadcast: Notify::new(),
        wake_delivery: Notify::new(),
        handoff,
        handoff_rx: std::sync::Mutex::new(Some(handoff_rx)),
        broadcast_rx: std::sync::Mutex::new(Some(broadcast_rx)),
        wake_follow,
        wake_sessions: Notify::new(),
        session_seq: AtomicU64::new(0),
        readiness: tokio::sync::Mutex::new(None),
        cancel,
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let _ = writer.await;
    });
    tasks.spawn(crate::broadcast::run(Arc::clone(&shared)));
    tasks.spawn(crate::webhook::run(Arc::clone(&shared)));
    tasks.spawn(crate::backlog::run(Arc::clone(&shared)));
    tasks.spawn(crate::retention::run(Arc::clone(&shared)));
    tasks.spawn(crate::checkpoint::run(Arc::clone(&shared)));
    for chain_id in shared.nodes.keys() {
        tasks.spawn(crate::follow::run(Arc::clone(&shared), *chain_id));
    }
    // Resume whatever was pending before a restart at once.
    shared.wake_broadcast.notify_one();
    shared.wake_delivery.notify_one();
    let limits = shared.settings.listener;
    let api = tokio::spawn(crate::server::serve(
        listener,
        crate::api::router(Arc::clone(&shared)),
        limits,
        shared.cancel.clone(),
        GRACE,
    ));
    let ops = tokio::spawn(svckit::serve(
        ops_listener,
        crate::api::readiness_router().with_state(Arc::clone(&shared)),
        ServeOptions::new("txrelay", registry).grace_period(GRACE),
        shared.cancel.clone().cancelled_owned(),
    ));
    let servers = vec![
        tokio::spawn(async move {
            match api.await {
                Ok(result) => result.map_err(|source| Error::Bind { addr, source }),
                Err(_) => Ok(()),
            }
        }),
        tokio::spawn(async move {
            match ops.await {
                Ok(result) => result.map_err(Error::from),
                Err(_) => Ok(()),
            }
        }),
    ];
    info!(%addr, %ops_addr, instance = %shared.settings.instance_id, chains = ?shared.nodes.keys().collect::<Vec<_>>(), "relay started");
    Ok(Running {
        addr,
        ops_addr,
        shared,
        tasks,
        servers,
    })
}

impl Running {
    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the operations listener (`/healthz`, `/readyz`, `/metrics`).
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The newest block number of `chain_id` the head follower has read and decided on
    /// (`txrelay_follower_head`; 0 before its first tick).
    pub fn follower_head(&self, chain_id: u64) -> u64 {
        let head = self
            .shared
            .metrics
            .follower_head
            .get_or_create(&crate::metrics::ChainIdLabels { chain_id })
            .get();
        u64::try_from(head).unwrap_or(0)
    }

    /// Receipt-related JSON-RPC requests made to `chain_id`'s nodes so far
    /// (`eth_getBlockReceipts` plus each `eth_getTransactionReceipt` batch entry, from
    /// `txrelay_node_requests_total`).
    pub fn receipt_requests(&self, chain_id: u64) -> u64 {
        ["eth_getBlockReceipts", "eth_getTransactionReceipt"]
            .into_iter()
            .map(|method| {
                self.shared
                    .metrics
                    .node_requests
                    .get_or_create(&crate::metrics::MethodLabels {
                        chain_id,
                        method: method.to_owned(),
                    })
                    .get()
            })
            .sum()
    }

    /// The relay's database (for demos and benchmarks that read counts or create keys).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Stops the API and the workers (in-flight requests get the grace period) and closes
    /// the database.
    ///
    /// # Errors
    /// [`Error::Serve`] when a listener had failed.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.shared.cancel.cancel();
        let mut served = Ok(());
        for server in self.servers.drain(..) {
            if let Ok(Err(error)) = server.await {
                served = Err(error);
            }
        }
        while self.tasks.join_next().await.is_some() {}
        self.shared.store.close().await;
        info!("relay stopped");
        served
    }

    /// Runs until `shutdown` completes (e.g. [`svckit::shutdown_signal`]), then stops.
    ///
    /// # Errors
    /// See [`Running::stop`].
    pub async fn run_until<F>(self, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()>,
    {
        let cancel = self.shared.cancel.clone();
        tokio::select! {
            () = shutdown => {}
            () = cancel.cancelled() => {}
        }
        self.stop().await
    }
}
