//! Starting and stopping a relay: the store, one [`NodeClient`] per chain, the workers
//! (broadcast, one head follower per chain, webhook delivery) and the HTTP API served through
//! `svckit::serve` (with `/healthz` and `/metrics`).

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

use crate::config::Settings;
use crate::error::Error;
use crate::metrics::{ChainLabels, Metrics};
use crate::node::NodeClient;
use crate::state::Shared;
use crate::store::Store;
use crate::validate::AccountPolicy;

/// A running relay. Dropping it does not stop it; call [`Running::stop`].
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    server: tokio::task::JoinHandle<Result<(), svckit::ServeError>>,
}

/// Starts a relay with `settings`, reading time from `clock`.
///
/// Opens and migrates the database, checks each chain's id against a node that answers (a
/// chain whose nodes are all down is served anyway: submissions answer 503 until one is
/// back), releases the claims this instance held before a restart, starts the workers and
/// serves the API on `settings.listen` (port 0 picks a free port, see [`Running::addr`]).
///
/// # Errors
/// [`Error::Store`], [`Error::ChainIdMismatch`] or [`Error::Bind`].
pub async fn start(settings: Settings, clock: Arc<dyn Clock>) -> Result<Running, Error> {
    let store = Store::open(&settings.database_url, settings.max_connections).await?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
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
        );
        match node.remote_chain_id().await {
            Ok(reported) if reported == *chain_id => {}
            Ok(reported) => {
                return Err(Error::ChainIdMismatch {
                    url: chain
                        .rpc_urls
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
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
    let released = store.release_claims(&settings.instance_id).await?;
    if released > 0 {
        info!(released, instance = %settings.instance_id, "released claims held before a restart");
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: settings.listen,
        source,
    })?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    let shared = Arc::new(Shared {
        policy: AccountPolicy::new(
            settings.account_mode,
            settings.allow.clone(),
            settings.deny.clone(),
        ),
        settings,
        store,
        nodes,
        clock,
        metrics,
        http,
        wake_broadcast: Notify::new(),
        wake_delivery: Notify::new(),
        wake_sessions: Notify::new(),
        session_seq: AtomicU64::new(0),
        cancel: CancellationToken::new(),
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::broadcast::run(Arc::clone(&shared)));
    tasks.spawn(crate::webhook::run(Arc::clone(&shared)));
    for chain_id in shared.nodes.keys() {
        tasks.spawn(crate::follow::run(Arc::clone(&shared), *chain_id));
    }
    // Resume whatever was pending before a restart at once.
    shared.wake_broadcast.notify_one();
    shared.wake_delivery.notify_one();
    let options = ServeOptions::new("txrelay", registry).grace_period(Duration::from_secs(5));
    let server = tokio::spawn(svckit::serve(
        listener,
        crate::api::router(Arc::clone(&shared)),
        options,
        shared.cancel.clone().cancelled_owned(),
    ));
    info!(%addr, instance = %shared.settings.instance_id, chains = ?shared.nodes.keys().collect::<Vec<_>>(), "relay started");
    Ok(Running {
        addr,
        shared,
        tasks,
        server,
    })
}

impl Running {
    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The relay's database (for demos and benchmarks that read counts).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Stops the API and the workers (in-flight requests get the grace period) and closes
    /// the database.
    ///
    /// # Errors
    /// [`Error::Serve`] when the API had failed.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.shared.cancel.cancel();
        let served = match self.server.await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Ok(()),
        };
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
