//! The HTTP API with its scheduler as one unit ([`Service`]): bound first, served later, so
//! the demo and the tests can use the address before serving (seed ¶33: the data platform's
//! service; the routes are in [`crate::server`]).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;

use crate::auth::BearerToken;
use crate::closed_loop::DataLoop;
use crate::scheduler::Scheduler;
use crate::server::{self, AppState};

/// Runs the HTTP API (behind `token`) and (when `enabled`) the scheduler until `shutdown`
/// completes.
///
/// # Errors
/// Bind, cron and serve errors.
pub async fn serve(
    dl: DataLoop,
    token: BearerToken,
    listen: &str,
    cron: &str,
    enabled: bool,
    clock: Arc<dyn svckit::Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = start_service(dl, token, listen, cron, enabled, clock).await?;
    service.run(shutdown).await
}

/// A bound, not yet serving API with its scheduler task running.
#[derive(Debug)]
pub struct Service {
    /// Shared state (to run triggers and read outcomes in-process).
    pub state: Arc<AppState>,
    /// The bound listener.
    pub listener: tokio::net::TcpListener,
    /// Metrics registry (the trigger counter; `serve` adds HTTP metrics).
    pub metrics: prometheus_client::registry::Registry,
    /// Cancels the scheduler task.
    pub stop: tokio_util::sync::CancellationToken,
    /// The scheduler task.
    pub task: tokio::task::JoinHandle<()>,
    /// The token the API requires.
    pub token: BearerToken,
}

impl Service {
    /// Serves until `shutdown`, then stops the scheduler.
    ///
    /// # Errors
    /// Serve errors.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let options = svckit::ServeOptions::new("dataloop", self.metrics)
            .grace_period(std::time::Duration::from_secs(5));
        let result = svckit::serve(
            self.listener,
            server::router(self.state.clone(), self.token),
            options,
            shutdown,
        )
        .await;
        self.stop.cancel();
        let _ = self.task.await;
        result.context("serving the HTTP API")
    }
}

/// Binds `listen` and starts the scheduler task (when `enabled`); the API will require `token`.
///
/// # Errors
/// Bind and cron errors.
pub async fn start_service(
    dl: DataLoop,
    token: BearerToken,
    listen: &str,
    cron: &str,
    enabled: bool,
    clock: Arc<dyn svckit::Clock>,
) -> anyhow::Result<Service> {
    let mut metrics = prometheus_client::registry::Registry::default();
    let state = AppState::new(dl, clock.clone(), &mut metrics);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding `{listen}`"))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let task = if enabled {
        let scheduler = Scheduler::new(cron, clock.wall())?;
        tracing::info!(cron, next = ?scheduler.next_due(), "scheduler started");
        tokio::spawn(server::scheduler_loop(
            state.clone(),
            scheduler,
            stop.clone(),
        ))
    } else {
        tokio::spawn(async {})
    };
    tracing::info!(addr = %listener.local_addr()?, "listening");
    Ok(Service {
        state,
        listener,
        metrics,
        stop,
        task,
        token,
    })
}
