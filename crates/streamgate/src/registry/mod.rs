//! The registry: where media servers announce their unique label and current address, and
//! forwarders their (service, namespace) (seed ¶44, ¶53-¶54).
//!
//! Media servers register with a lease and renew it by heartbeat; a media server that
//! restarts elsewhere registers again under the same label and traffic follows at once,
//! because forwarders resolve their label on every request. A static TOML list can declare
//! entries that never expire. The HTTP API (axum, served by `svckit::serve` with `/healthz`
//! and `/metrics`):
//!
//! | method and path | body / query | answer |
//! |---|---|---|
//! | `PUT /v1/media/{label}` | [`MediaRegistration`] | 200 `{"status":"registered"\|"renewed"}`, 404 heartbeat for an unknown lease, 409 superseded |
//! | `DELETE /v1/media/{label}?instance=ID` | | 204, or 404 |
//! | `GET /v1/media/{label}` | | 200 [`MediaRecord`], or 404 |
//! | `PUT /v1/forwarders/{service}/{namespace}` | [`ForwarderRegistration`] | as for media |
//! | `DELETE /v1/forwarders/{service}/{namespace}?instance=ID` | | 204, or 404 |
//! | `GET /v1/routes?since=V&wait_ms=W` | | [`RouteSnapshot`]; waits up to `W` ms (at most 30 s) while the version is still `V` |

pub mod client;
pub mod leases;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as MetricsRegistry;
use serde::{Deserialize, Serialize};
use svckit::Clock;
use tokio::sync::watch;
use tracing::{info, warn};

pub use client::RegistryClient;
pub use leases::{Leases, Renewal};

use crate::route::is_valid_name;

/// Longest a `GET /v1/routes` long-poll waits.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Shortest lease accepted.
pub const MIN_TTL: Duration = Duration::from_millis(100);
/// Longest lease accepted.
pub const MAX_TTL: Duration = Duration::from_secs(600);

/// A media server as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaRecord {
    /// The unique label forwarders are bound to (seed ¶53).
    pub label: String,
    /// The namespace it serves (seed ¶44).
    pub namespace: String,
    /// Its current HTTP address.
    pub addr: SocketAddr,
    /// The stream names it serves.
    #[serde(default)]
    pub streams: Vec<String>,
    /// The registering process's instance id (`static` for TOML entries).
    #[serde(default = "static_instance")]
    pub instance: String,
}

/// A forwarder as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwarderRecord {
    /// The forwarding service's name: the `{service}` of the public path (seed ¶47).
    pub service: String,
    /// Its namespace: the `{namespace}` of the public path.
    pub namespace: String,
    /// Its current HTTP address.
    pub addr: SocketAddr,
    /// The label of the media server it is bound to.
    pub label: String,
    /// The registering process's instance id (`static` for TOML entries).
    #[serde(default = "static_instance")]
    pub instance: String,
}

fn static_instance() -> String {
    "static".to_owned()
}

/// Everything the registry holds, at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSnapshot {
    /// Changes whenever the content does.
    pub version: u64,
    /// Live media servers.
    pub media: Vec<MediaRecord>,
    /// Live forwarders.
    pub forwarders: Vec<ForwarderRecord>,
}

/// Body of `PUT /v1/media/{label}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaRegistration {
    /// The namespace.
    pub namespace: String,
    /// The current address.
    pub addr: SocketAddr,
    /// The streams served.
    #[serde(default)]
    pub streams: Vec<String>,
    /// The process's instance id.
    pub instance: String,
    /// Lease length in milliseconds (100 to 600000).
    pub ttl_ms: u64,
    /// `true` to renew the lease of `instance` only, `false` to (re-)register.
    #[serde(default)]
    pub heartbeat: bool,
}

/// Body of `PUT /v1/forwarders/{service}/{namespace}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwarderRegistration {
    /// The current address.
    pub addr: SocketAddr,
    /// The media server's label it is bound to.
    pub label: String,
    /// The process's instance id.
    pub instance: String,
    /// Lease length in milliseconds (100 to 600000).
    pub ttl_ms: u64,
    /// `true` to renew the lease of `instance` only, `false` to (re-)register.
    #[serde(default)]
    pub heartbeat: bool,
}

/// Registry settings (`[registry]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// HTTP listen address (default `127.0.0.1:7400`).
    pub listen: SocketAddr,
    /// How often expired leases are swept, in ms (default 100).
    pub sweep_ms: u64,
    /// Media servers declared statically (never expire).
    pub media: Vec<MediaRecord>,
    /// Forwarders declared statically (never expire).
    pub forwarders: Vec<ForwarderRecord>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            sweep_ms: 100,
            media: Vec::new(),
            forwarders: Vec::new(),
        }
    }
}

/// The registry service: shared state plus the version watch.
#[derive(Debug, Clone)]
pub struct Registry {
    state: Arc<Mutex<Leases>>,
    version: watch::Sender<u64>,
    clock: Arc<dyn Clock>,
    entries: Gauge,
}

impl Registry {
    /// A registry holding `config`'s static entries, using `clock` for leases, registering
    /// its metric (`streamgate_registry_entries`) in `metrics`.
    pub fn new(
        config: &RegistryConfig,
        clock: Arc<dyn Clock>,
        metrics: &mut MetricsRegistry,
    ) -> Self {
        let mut leases = Leases::new();
        for record in &config.media {
            leases.add_static_media(record.clone());
        }
        for record in &config.forwarders {
            leases.add_static_forwarder(record.clone());
        }
        let entries = Gauge::default();
        metrics.register(
            "streamgate_registry_entries",
            "Live media servers plus forwarders",
            entries.clone(),
        );
        let (version, _) = watch::channel(leases.version());
        let registry = Self {
            state: Arc::new(Mutex::new(leases)),
            version,
            clock,
            entries,
        };
        registry.publish();
        registry
    }

    fn with<R>(&self, f: impl FnOnce(&mut Leases) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    fn publish(&self) {
        let now = self.clock.now();
        let (version, count) = self.with(|l| {
            let snap = l.snapshot(now);
            (l.version(), snap.media.len() + snap.forwarders.len())
        });
        self.entries.set(i64::try_from(count).unwrap_or(i64::MAX));
        self.version.send_if_modified(|v| {
            let changed = *v != version;
            *v = version;
            changed
        });
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> RouteSnapshot {
        let now = self.clock.now();
        self.with(|l| l.snapshot(now))
    }

    /// Drops expired leases now (the sweeper calls this every `sweep_ms`).
    pub fn sweep(&self) {
        let now = self.clock.now();
        let gone = self.with(|l| l.expire(now));
        for key in &gone {
            warn!(key = %key, "lease expired");
        }
        if !gone.is_empty() {
            self.publish();
        }
    }

    /// Runs [`Registry::sweep`] every `every` until the task is aborted.
    pub fn spawn_sweeper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                registry.sweep();
            }
        })
    }

    /// The API router (without `/healthz` and `/metrics`, which `svckit::serve` adds).
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/v1/media/{label}",
                put(put_media).get(get_media).delete(delete_media),
            )
            .route(
                "/v1/forwarders/{service}/{namespace}",
                put(put_forwarder).delete(delete_forwarder),
            )
            .route("/v1/routes", get(get_routes))
            .with_state(self.clone())
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The lease, or why it is refused.
fn check_ttl(ttl_ms: u64) -> Result<Duration, String> {
    let ttl = Duration::from_millis(ttl_ms);
    if (MIN_TTL..=MAX_TTL).contains(&ttl) {
        Ok(ttl)
    } else {
        Err(format!("ttl_ms `{ttl_ms}` must be between 100 and 600000"))
    }
}

/// Checks every (what, name) pair; the error says which name is invalid.
fn check_names(names: &[(&str, &str)]) -> Result<(), String> {
    for (what, name) in names {
        if !is_valid_name(name) {
            return Err(format!("{what} `{name}` must be 1-128 of [A-Za-z0-9_.-]"));
        }
    }
    Ok(())
}

fn renewal_response(renewal: &Renewal) -> Response {
    match renewal {
        Renewal::Registered { previous } => Json(serde_json::json!({
            "status": "registered",
            "previous": previous,
        }))
        .into_response(),
        Renewal::Renewed => Json(serde_json::json!({ "status": "renewed" })).into_response(),
        Renewal::Superseded => json_error(StatusCode::CONFLICT, "another instance holds this key"),
        Renewal::Unknown => json_error(StatusCode::NOT_FOUND, "no live lease; register again"),
    }
}

async fn put_media(
    State(registry): State<Registry>,
    Path(label): Path<String>,
    Json(body): Json<MediaRegistration>,
) -> Response {
    let ttl = match check_names(&[("label", &label), ("namespace", &body.namespace)])
        .and_then(|()| check_ttl(body.ttl_ms))
    {
        Ok(ttl) => ttl,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let now = registry.clock.now();
    let renewal = if body.heartbeat {
        registry.with(|l| l.heartbeat_media(&label, &body.instance, ttl, now))
    } else {
        let record = MediaRecord {
            label: label.clone(),
            namespace: body.namespace,
            addr: body.addr,
            streams: body.streams,
            instance: body.instance,
        };
        let renewal = registry.with(|l| l.register_media(record, ttl, now));
        if let Renewal::Registered { previous } = &renewal {
            info!(label = %label, addr = %body.addr, previous = ?previous, "media server registered");
        }
        renewal
    };
    registry.publish();
    renewal_response(&renewal)
}

async fn get_media(State(registry): State<Registry>, Path(label): Path<String>) -> Response {
    let now = registry.clock.now();
    match registry.with(|l| l.media(&label, now).cloned()) {
        Some(record) => Json(record).into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            &format!("label `{label}` is not registered"),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct InstanceQuery {
    instance: String,
}

async fn delete_media(
    State(registry): State<Registry>,
    Path(label): Path<String>,
    Query(query): Query<InstanceQuery>,
) -> Response {
    if registry.with(|l| l.remove_media(&label, &query.instance)) {
        info!(label = %label, "media server deregistered");
        registry.publish();
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_error(
            StatusCode::NOT_FOUND,
            &format!("label `{label}` is not held by this instance"),
        )
    }
}

async fn put_forwarder(
    State(registry): State<Registry>,
    Path((service, namespace)): Path<(String, String)>,
    Json(body): Json<ForwarderRegistration>,
) -> Response {
    let ttl = match check_names(&[
        ("service", &service),
        ("namespace", &namespace),
        ("label", &body.label),
    ])
    .and_then(|()| check_ttl(body.ttl_ms))
    {
        Ok(ttl) => ttl,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let now = registry.clock.now();
    let renewal = if body.heartbeat {
        registry.with(|l| l.heartbeat_forwarder(&service, &namespace, &body.instance, ttl, now))
    } else {
        let record = ForwarderRecord {
            service: service.clone(),
            namespace: namespace.clone(),
            addr: body.addr,
            label: body.label,
            instance: body.instance,
        };
        let renewal = registry.with(|l| l.register_forwarder(record, ttl, now));
        info!(service = %service, namespace = %namespace, addr = %body.addr, "forwarder registered");
        renewal
    };
    registry.publish();
    renewal_response(&renewal)
}

async fn delete_forwarder(
    State(registry): State<Registry>,
    Path((service, namespace)): Path<(String, String)>,
    Query(query): Query<InstanceQuery>,
) -> Response {
    if registry.with(|l| l.remove_forwarder(&service, &namespace, &query.instance)) {
        registry.publish();
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_error(
            StatusCode::NOT_FOUND,
            &format!("forwarder `{service}`/`{namespace}` is not held by this instance"),
        )
    }
}

#[derive(Debug, Deserialize)]
struct RoutesQuery {
    since: Option<u64>,
    wait_ms: Option<u64>,
}

async fn get_routes(
    State(registry): State<Registry>,
    Query(query): Query<RoutesQuery>,
) -> Response {
    if let (Some(since), Some(wait_ms)) = (query.since, query.wait_ms) {
        let wait = Duration::from_millis(wait_ms).min(MAX_WAIT);
        let mut rx = registry.version.subscribe();
        let changed = async {
            loop {
                if *rx.borrow_and_update() != since {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        // Timing out just answers with the unchanged snapshot.
        let _ = tokio::time::timeout(wait, changed).await;
    }
    Json(registry.snapshot()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use svckit::TestClock;
    use tower::ServiceExt;

    async fn call(
        router: &Router,
        method: &str,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = http::Request::builder().method(method).uri(uri);
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let response = router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    #[tokio::test]
    async fn register_heartbeat_supersede_and_expire_over_http() {
        let clock = TestClock::new();
        let registry = Registry::new(
            &RegistryConfig::default(),
            Arc::new(clock.clone()),
            &mut MetricsRegistry::default(),
        );
        let router = registry.router();
        let reg = |instance: &str, port: u16, heartbeat: bool| {
            serde_json::json!({
                "namespace": "NameSpaceA", "addr": format!("127.0.0.1:{port}"),
                "streams": ["main_stream"], "instance": instance, "ttl_ms": 1000,
                "heartbeat": heartbeat,
            })
        };
        let (status, body) = call(
            &router,
            "PUT",
            "/v1/media/media-a",
            Some(reg("i1", 9001, false)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, record) = call(&router, "GET", "/v1/media/media-a", None).await;
        assert_eq!(record["addr"], "127.0.0.1:9001");
        let v1 = registry.snapshot().version;
        let (status, _) = call(
            &router,
            "PUT",
            "/v1/media/media-a",
            Some(reg("i2", 9002, false)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(registry.snapshot().version > v1);
        let (status, _) = call(
            &router,
            "PUT",
            "/v1/media/media-a",
            Some(reg("i1", 9001, true)),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "old instance is superseded");
        clock.tick(Duration::from_millis(1000));
        registry.sweep();
        let (status, body) = call(&router, "GET", "/v1/media/media-a", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _) = call(
            &router,
            "PUT",
            "/v1/media/media-a",
            Some(reg("i2", 9002, true)),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "heartbeat after expiry");
        let (status, body) = call(
            &router,
            "PUT",
            "/v1/media/bad%20label",
            Some(reg("i3", 1, false)),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    #[tokio::test]
    async fn routes_long_poll_returns_on_change() {
        let registry = Registry::new(
            &RegistryConfig::default(),
            Arc::new(svckit::SystemClock),
            &mut MetricsRegistry::default(),
        );
        let router = registry.router();
        let (_, snap) = call(&router, "GET", "/v1/routes", None).await;
        let version = snap["version"].as_u64().unwrap();
        let waiting = tokio::spawn({
            let router = router.clone();
            async move {
                call(
                    &router,
                    "GET",
                    &format!("/v1/routes?since={version}&wait_ms=20000"),
                    None,
                )
                .await
            }
        });
        tokio::task::yield_now().await;
        let body = serde_json::json!({
            "addr": "127.0.0.1:9100", "label": "media-a", "instance": "f1", "ttl_ms": 1000
        });
        let (status, _) = call(
            &router,
            "PUT",
            "/v1/forwarders/Service-A/Name-Space-A",
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (_, snap) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(snap["version"].as_u64().unwrap() > version);
        assert_eq!(snap["forwarders"][0]["service"], "Service-A");
        assert_eq!(snap["forwarders"][0]["namespace"], "Name-Space-A");
    }
}
