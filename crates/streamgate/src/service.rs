//! Starting each part on its sockets: the registry, a media server, a forwarder, the proxy.
//! The CLI runs one of them per process (`streamgate registry | media | forwarder | proxy`);
//! tests may run several in one process. Each returns a [`Running`] handle with the bound
//! addresses; dropping it (or [`Running::stop`]) stops the part.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry as MetricsRegistry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::discovery::{AnyDiscovery, Registrar, RouteWatch};
use crate::error::Error;
use crate::forwarder::{Forwarder, ForwarderConfig, RelayHopMetrics};
use crate::hop::{ConnectionMetrics, ConnectionPolicy};
use crate::media::{MediaConfig, MediaServer};
use crate::proxy::{Proxy, ProxyConfig};
use crate::registry::client::{Registrant, instance_id};
use crate::registry::{ForwarderRecord, MediaRecord, Registry, RegistryConfig};

/// Grace period for open responses when an admin or API server stops.
const GRACE: Duration = Duration::from_secs(1);

/// A started part.
#[derive(Debug)]
pub struct Running {
    name: &'static str,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    registered: Option<watch::Receiver<bool>>,
    on_stop: Option<OnStop>,
}

/// What ends a part's open streams when it stops.
#[derive(Debug)]
enum OnStop {
    Media(MediaServer),
    Forwarder(Arc<Forwarder>),
    Proxy(Arc<Proxy<AnyDiscovery>>),
}

impl OnStop {
    fn run(self) {
        match self {
            Self::Media(media) => media.shutdown(),
            Self::Forwarder(forwarder) => forwarder.shutdown(),
            Self::Proxy(proxy) => proxy.shutdown(),
        }
    }
}

impl Running {
    /// The main (data-plane or API) address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin address (`/healthz`, `/metrics`) when it is a separate port.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The address serving `/metrics`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.admin_addr.unwrap_or(self.addr)
    }

    /// Waits until the part's registration is accepted, up to `timeout`; true when it is
    /// (always true for parts that do not register).
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let Some(mut rx) = self.registered.clone() else {
            return true;
        };
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A future that completes when the part is told to stop.
    pub fn stopped(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.stop.clone().cancelled_owned()
    }

    /// Stops the part: deregisters, ends open streams, closes the sockets, and waits for its
    /// tasks.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(on_stop) = self.on_stop.take() {
            on_stop.run();
        }
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(GRACE * 3, task).await;
        }
        info!(part = self.name, "stopped");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(on_stop) = self.on_stop.take() {
            on_stop.run();
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Io {
        what: "binding",
        addr,
        source,
    })
}

/// Binds a data-plane port under `policy` (its backlog).
fn bind_plane(addr: SocketAddr, policy: &ConnectionPolicy) -> Result<TcpListener, Error> {
    crate::hop::bind(addr, policy).map_err(|source| Error::Io {
        what: "binding",
        addr,
        source,
    })
}

fn local(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}

fn spawn_serve(
    name: &'static str,
    listener: TcpListener,
    router: axum::Router,
    metrics: MetricsRegistry,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        let options = svckit::ServeOptions::new(name, metrics).grace_period(GRACE);
        if let Err(error) = svckit::serve(listener, router, options, shutdown).await {
            tracing::error!(%error, service = name, "server stopped");
        }
    })
}

/// Starts the registry's API on `config.listen`.
///
/// # Errors
/// [`Error::Io`] when the address cannot be bound.
pub async fn start_registry(config: &RegistryConfig) -> Result<Running, Error> {
    let listener = bind(config.listen).await?;
    let addr = local(&listener, config.listen);
    let mut metrics = MetricsRegistry::default();
    let registry = Registry::new(config, Arc::new(svckit::SystemClock), &mut metrics)?;
    let stop = CancellationToken::new();
    let sweeper = registry.spawn_sweeper(Duration::from_millis(config.sweep_ms));
    let server = spawn_serve(
        "streamgate-registry",
        listener,
        registry.router(),
        metrics,
        &stop,
    );
    let stop_sweeper = stop.clone();
    let sweeper_guard = tokio::spawn(async move {
        stop_sweeper.cancelled().await;
        sweeper.abort();
    });
    info!(%addr, "registry listening");
    Ok(Running {
        name: "registry",
        addr,
        admin_addr: None,
        stop,
        tasks: vec![server, sweeper_guard],
        registered: None,
        on_stop: None,
    })
}

/// Starts a media server: its data plane on `config.listen` (under `config.connections`),
/// its admin port on `config.admin_listen`, and, with a registry, keeps it registered under
/// its label with its bound data-plane address.
///
/// # Errors
/// [`Error::Config`] for an invalid configuration, [`Error::Io`] when binding fails.
pub async fn start_media(
    config: &MediaConfig,
    registry: Option<impl Into<Registrar>>,
) -> Result<Running, Error> {
    let mut metrics = MetricsRegistry::default();
    let instance = instance_id();
    let server = MediaServer::new(config, &instance, &mut metrics)?;
    let connection_metrics = ConnectionMetrics::register("media", &mut metrics);
    let listener = bind_plane(config.listen, &config.connections)?;
    let addr = local(&listener, config.listen);
    let admin = bind(config.admin_listen).await?;
    let admin_addr = local(&admin, config.admin_listen);
    let stop = CancellationToken::new();
    let plane = tokio::spawn(crate::hop::serve(
        listener,
        Arc::new(server.clone()),
        config.connections.clone(),
        connection_metrics,
        stop.clone().cancelled_owned(),
    ));
    let mut tasks = vec![
        plane,
        spawn_serve(
            "streamgate-media",
            admin,
            server.admin_router(),
            metrics,
            &stop,
        ),
    ];
    let mut registered = None;
    if let Some(client) = registry {
        let (tx, rx) = watch::channel(false);
        registered = Some(rx);
        let record = MediaRecord {
            label: config.label.clone(),
            namespace: config.namespace.clone(),
            addr,
            streams: server.streams(),
            instance,
        };
        tasks.push(tokio::spawn(registration(
            client.into(),
            Registrant::Media(record),
            Duration::from_millis(config.lease_ms),
            tx,
            stop.clone(),
        )));
    }
    info!(%addr, %admin_addr, label = %config.label, namespace = %config.namespace, "media server listening");
    Ok(Running {
        name: "media",
        addr,
        admin_addr: Some(admin_addr),
        stop,
        tasks,
        registered,
        on_stop: Some(OnStop::Media(server)),
    })
}

async fn registration(
    registrar: Registrar,
    who: Registrant,
    ttl: Duration,
    tx: watch::Sender<bool>,
    stop: CancellationToken,
) {
    registrar.keep_registered(who, ttl, tx, stop).await;
}

/// Starts a forwarder: its data plane on `config.listen` (under `config.connections`), its
/// admin port on `config.admin_listen`, its label resolved from the routes of `discovery`
/// (watched, long-polling), and with a registry keeps itself registered.
///
/// # Errors
/// [`Error::Config`] for an invalid configuration, [`Error::Io`] when binding fails.
pub async fn start_forwarder(
    config: &ForwarderConfig,
    discovery: AnyDiscovery,
    registry: Option<impl Into<Registrar>>,
) -> Result<Running, Error> {
    config.validate()?;
    let listener = bind_plane(config.listen, &config.connections)?;
    let addr = local(&listener, config.listen);
    let admin = bind(config.admin_listen).await?;
    let admin_addr = local(&admin, config.admin_listen);
    let mut metrics = MetricsRegistry::default();
    let (routes, watcher) = RouteWatch::spawn(Arc::new(discovery), WATCH_WAIT);
    let instance = instance_id();
    let forwarder = Arc::new(Forwarder::new(
        config,
        &instance,
        routes.clone(),
        RelayHopMetrics::register("forwarder", &mut metrics),
    )?);
    let connection_metrics = ConnectionMetrics::register("forwarder", &mut metrics);
    if !routes.loaded(Duration::from_secs(2)).await {
        tracing::warn!("no routes yet; the label resolves when discovery answers");
    }
    let stop = CancellationToken::new();
    let plane = tokio::spawn(crate::hop::serve(
        listener,
        forwarder.clone(),
        config.connections.clone(),
        connection_metrics,
        stop.clone().cancelled_owned(),
    ));
    let admin_task = spawn_serve(
        "streamgate-forwarder",
        admin,
        axum::Router::new(),
        metrics,
        &stop,
    );
    let mut tasks = vec![plane, admin_task, abort_on(watcher, &stop)];
    let mut registered = None;
    if let Some(client) = registry {
        let (tx, rx) = watch::channel(false);
        registered = Some(rx);
        let record = ForwarderRecord {
            service: config.service.clone(),
            namespace: config.namespace.clone(),
            addr,
            label: config.label.clone(),
            instance,
        };
        tasks.push(tokio::spawn(registration(
            client.into(),
            Registrant::Forwarder(record),
            Duration::from_millis(config.lease_ms),
            tx,
            stop.clone(),
        )));
    }
    info!(%addr, %admin_addr, service = %config.service, namespace = %config.namespace, label = %config.label, "forwarder listening");
    Ok(Running {
        name: "forwarder",
        addr,
        admin_addr: Some(admin_addr),
        stop,
        tasks,
        registered,
        on_stop: Some(OnStop::Forwarder(forwarder)),
    })
}

/// How long one long-poll of the routes waits.
const WATCH_WAIT: Duration = Duration::from_secs(25);

/// A task that aborts `task` once `stop` is cancelled.
fn abort_on(task: JoinHandle<()>, stop: &CancellationToken) -> JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        task.abort();
    })
}

/// Starts the proxy: the public port on `config.listen` (under `config.connections`), its
/// admin port on `config.admin_listen`, its routing table kept current from `discovery`.
///
/// # Errors
/// [`Error::Config`] for an invalid configuration, [`Error::Io`] when binding fails.
pub async fn start_proxy(config: &ProxyConfig, discovery: AnyDiscovery) -> Result<Running, Error> {
    config.validate()?;
    let listener = bind_plane(config.listen, &config.connections)?;
    let addr = local(&listener, config.listen);
    let admin = bind(config.admin_listen).await?;
    let admin_addr = local(&admin, config.admin_listen);
    let mut metrics = MetricsRegistry::default();
    let discovery = Arc::new(discovery);
    let (routes, watcher) = RouteWatch::spawn(
        discovery.clone(),
        Duration::from_millis(config.watch_wait_ms),
    );
    let proxy = Arc::new(Proxy::new(
        config,
        routes.clone(),
        discovery,
        RelayHopMetrics::register("proxy", &mut metrics),
    )?);
    let connection_metrics = ConnectionMetrics::register("proxy", &mut metrics);
    if !routes.loaded(Duration::from_secs(2)).await {
        tracing::warn!("no routes yet; the table fills when discovery answers");
    }
    let stop = CancellationToken::new();
    let plane = tokio::spawn(crate::hop::serve(
        listener,
        proxy.clone(),
        config.connections.clone(),
        connection_metrics,
        stop.clone().cancelled_owned(),
    ));
    let admin_task = spawn_serve(
        "streamgate-proxy",
        admin,
        axum::Router::new(),
        metrics,
        &stop,
    );
    info!(%addr, %admin_addr, "proxy listening");
    Ok(Running {
        name: "proxy",
        addr,
        admin_addr: Some(admin_addr),
        stop: stop.clone(),
        tasks: vec![plane, admin_task, abort_on(watcher, &stop)],
        registered: None,
        on_stop: Some(OnStop::Proxy(proxy)),
    })
}
