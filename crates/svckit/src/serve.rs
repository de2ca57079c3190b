//! HTTP serving with `/healthz`, `/metrics` and graceful shutdown (style.md 2.2; pingora's
//! `Server::run_forever` and axum's graceful-shutdown example are the models).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use tracing::{info, info_span, warn};

/// Content type of the `/metrics` answer: the OpenMetrics text format, which Prometheus reads.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Accepting connections failed (the listener broke).
    #[error("serving `{service}` failed")]
    Io {
        /// The service name given to [`ServeOptions::new`].
        service: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
}

/// How [`serve`] runs a service.
///
/// Built with [`ServeOptions::new`] and the `&mut`-free builder methods below.
#[derive(Debug)]
pub struct ServeOptions {
    service: String,
    registry: Registry,
    grace_period: Duration,
    request_timeout: Option<Duration>,
}

impl ServeOptions {
    /// Options for the service `service` (used in logs and health answers) whose metrics are in
    /// `registry`. Defaults: a 10 s grace period and no request timeout.
    ///
    /// `serve` adds two metric families to `registry`: `http_requests` (a counter) and
    /// `http_request_duration_seconds` (a histogram of time to response headers), both labelled
    /// with `method`, the route template `route` and `status`.
    pub fn new(service: impl Into<String>, registry: Registry) -> Self {
        Self {
            service: service.into(),
            registry,
            grace_period: Duration::from_secs(10),
            request_timeout: None,
        }
    }

    /// The longest time in-flight requests get to finish after shutdown starts; after it the
    /// remaining connections (for example endless video streams) are dropped.
    #[must_use]
    pub fn grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// Answer `408 Request Timeout` when a handler takes longer than `timeout` to produce its
    /// response headers. The body of a streaming response is not limited.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }
}

/// Labels of the per-request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Per-request metric handles, shared by the middleware.
#[derive(Clone, Debug)]
struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, Histogram>,
}

impl HttpMetrics {
    fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RequestLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, in seconds",
            durations.clone(),
        );
        Self {
            requests,
            durations,
        }
    }
}

/// Buckets from 100 µs to about 105 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 4.0, 11))
}

/// Runs `app` on `listener` until `shutdown` completes, then drains for at most the grace
/// period.
///
/// Adds `GET /healthz` (200, JSON `{"status":"ok","service":NAME}`) and `GET /metrics` (the
/// registry in Prometheus/OpenMetrics text), a trace span per request that records the method
/// and the route template (never the raw URI), and request metrics. `app` must not define those
/// two paths itself.
///
/// Pass [`shutdown_signal`]`()?` as `shutdown` for SIGINT/SIGTERM, a
/// `CancellationToken::cancelled_owned()` to stop from code, or both with `tokio::select!`.
///
/// # Errors
/// [`ServeError::Io`] when the listener fails.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let ServeOptions {
        service,
        mut registry,
        grace_period,
        request_timeout,
    } = options;
    let metrics = HttpMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    let health_name = service.clone();
    let mut app = app
        .route(
            "/healthz",
            get(move || {
                let name = health_name.clone();
                async move { axum::Json(serde_health(&name)) }
            }),
        )
        .route("/metrics", get(render_metrics).with_state(registry))
        .layer(middleware::from_fn_with_state(metrics, record_request))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("<unmatched>", MatchedPath::as_str);
                info_span!("request", method = %request.method(), route)
            }),
        );
    if let Some(timeout) = request_timeout {
        app = app.layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    }

    let local = listener.local_addr().ok();
    info!(service = %service, addr = ?local, "listening");
    let stop = CancellationToken::new();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(|source| ServeError::Io { service, source }),
        () = shutdown => {}
    }
    info!(service = %service, grace_period_ms = grace_period.as_millis(), "shutting down");
    stop.cancel();
    match tokio::time::timeout(grace_period, server).await {
        Ok(result) => result.map_err(|source| ServeError::Io { service, source }),
        Err(_) => {
            warn!(service = %service, "grace period over; dropping open connections");
            Ok(())
        }
    }
}

fn serde_health(service: &str) -> std::collections::BTreeMap<&'static str, String> {
    [("status", "ok".to_owned()), ("service", service.to_owned())]
        .into_iter()
        .collect()
}

async fn render_metrics(State(registry): State<Arc<Registry>>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(METRICS_CONTENT_TYPE),
            )],
            body,
        )
            .into_response(),
        Err(error) => {
            warn!(%error, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn record_request(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .durations
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// SIGINT and SIGTERM handlers, installed at once so that a signal sent right after start-up is
/// never missed. It is a `Future` that completes on the first of them.
#[derive(Debug)]
pub struct ShutdownSignal {
    interrupt: Signal,
    terminate: Signal,
}

/// Installs the SIGINT/SIGTERM handlers now; the returned value completes on the first of them.
///
/// Must be called inside a tokio runtime. Once installed, the handlers stay for the life of the
/// process, so these signals no longer kill it by default.
///
/// # Errors
/// The I/O error from registering a signal handler.
pub fn shutdown_signal() -> io::Result<ShutdownSignal> {
    Ok(ShutdownSignal {
        interrupt: signal(SignalKind::interrupt())?,
        terminate: signal(SignalKind::terminate())?,
    })
}

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.interrupt.poll_recv(cx).is_ready() || self.terminate.poll_recv(cx).is_ready() {
            info!("shutdown signal received");
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
