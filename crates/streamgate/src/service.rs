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

use crate::discovery::AnyDiscovery;
use crate::error::Error;
use crate::forwarder::{Forwarder, ForwarderConfig};
use crate::hop::HopMetrics;
use crate::media::{MediaConfig, MediaServer};
use crate::proxy::{Proxy, ProxyConfig};
use crate::registry::client::{Registrant, instance_id, keep_registered};
use crate::registry::{ForwarderRecord, MediaRecord, Registry, RegistryClient, RegistryConfig};

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
    on_stop: Option<MediaServer>,
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
        if let Some(media) = self.on_stop.take() {
            media.shutdown();
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
        if let Some(media) = self.on_stop.take() {
            media.shutdown();
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
    let registry = Registry::new(config, Arc::new(svckit::SystemClock), &mut metrics);
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

/// Starts a media server on `config.listen` and, with a registry, keeps it registered under
/// its label with its bound address.
///
/// # Errors
/// [`Error::Config`] for an invalid configuration, [`Error::Io`] when binding fails.
pub async fn start_media(
    config: &MediaConfig,
    registry: Option<RegistryClient>,
) -> Result<Running, Error> {
    let mut metrics = MetricsRegistry::default();
    let server = MediaServer::new(config, &mut metrics)?;
    let listener = bind(config.listen).await?;
    let addr = local(&listener, config.listen);
    let stop = CancellationToken::new();
    let mut tasks = vec![spawn_serve(
        "streamgate-media",
        listener,
        server.router(),
        metrics,
        &stop,
    )];
    let mut registered = None;
    if let Some(client) = registry {
        let (tx, rx) = watch::channel(false);
        registered = Some(rx);
        let record = MediaRecord {
            label: config.label.clone(),
            namespace: config.namespace.clone(),
            addr,
            streams: server.streams(),
            instance: instance_id(),
        };
        tasks.push(tokio::spawn(registration(
            client,
            Registrant::Media(record),
            Duration::from_millis(config.lease_ms),
            tx,
            stop.clone(),
        )));
    }
    info!(%addr, label = %config.label, namespace = %config.namespace, "media server listening");
    Ok(Running {
        name: "media",
        addr,
        admin_addr: None,
        stop,
        tasks,
        registered,
        on_stop: Some(server),
    })
}

async fn registration(
    client: RegistryClient,
    who: Registrant,
    ttl: Duration,
    tx: watch::Sender<bool>,
    stop: CancellationToken,
) {
    keep_registered(client, who, ttl, tx, stop).await;
}

/// Starts a forwarder on `config.listen` (admin on `config.admin_listen`), resolving its
/// label through `discovery`, and with a registry keeps itself registered.
///
/// # Errors
/// [`Error::Config`] for an invalid configuration, [`Error::Io`] when binding fails.
pub async fn start_forwarder(
    config: &ForwarderConfig,
    discovery: AnyDiscovery,
    registry: Option<RegistryClient>,
) -> Result<Running, Error> {
    config.validate()?;
    let listener = bind(config.listen).await?;
    let addr = local(&listener, config.listen);
    let admin = bind(config.admin_listen).await?;
    let admin_addr = local(&admin, config.admin_listen);
    let mut metrics = MetricsRegistry::default();
    let forwarder = Arc::new(Forwarder::new(
        config,
        discovery,
        HopMetrics::register("forwarder", &mut metrics),
    ));
    let stop = CancellationToken::new();
    let plane = tokio::spawn(crate::hop::serve(
        listener,
        forwarder,
        stop.clone().cancelled_owned(),
    ));
    let admin_task = spawn_serve(
        "streamgate-forwarder",
        admin,
        axum::Router::new(),
        metrics,
        &stop,
    );
    let mut tasks = vec![plane, admin_task];
    let mut registered = None;
    if let Some(client) = registry {
        let (tx, rx) = watch::channel(false);
        registered = Some(rx);
        let record = ForwarderRecord {
            service: config.service.clone(),
            namespace: config.namespace.clone(),
            addr,
            label: config.label.clone(),
            instance: instance_id(),
        };
        tasks.push(tokio::spawn(registration(
            client,
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
        on_stop: None,
    })
}

/// Starts the proxy on `config.listen` (admin on `config.admin_listen`), with its routing
/// table kept current from `discovery`.
///
/// # Errors
/// [`Error::Io`] when binding fails.
pub async fn start_proxy(config: &ProxyConfig, discovery: AnyDiscovery) -> Result<Running, Error> {
    let listener = bind(config.listen).await?;
    let addr = local(&listener, config.listen);
    let admin = bind(config.admin_listen).await?;
    let admin_addr = local(&admin, config.admin_listen);
    let mut metrics = MetricsRegistry::default();
    let proxy = Arc::new(Proxy::new(
        config,
        discovery,
        HopMetrics::register("proxy", &mut metrics),
    ));
    if let Err(error) = proxy.refresh().await {
        tracing::warn!(%error, "no routes yet; the table fills when discovery answers");
    }
    let watcher = proxy.spawn_watch();
    let stop = CancellationToken::new();
    let plane = tokio::spawn(crate::hop::serve(
        listener,
        proxy,
        stop.clone().cancelled_owned(),
    ));
    let admin_task = spawn_serve(
        "streamgate-proxy",
        admin,
        axum::Router::new(),
        metrics,
        &stop,
    );
    let stop_watcher = stop.clone();
    let watcher_guard = tokio::spawn(async move {
        stop_watcher.cancelled().await;
        watcher.abort();
    });
    info!(%addr, %admin_addr, "proxy listening");
    Ok(Running {
        name: "proxy",
        addr,
        admin_addr: Some(admin_addr),
        stop,
        tasks: vec![plane, admin_task, watcher_guard],
        registered: None,
        on_stop: None,
    })
}
