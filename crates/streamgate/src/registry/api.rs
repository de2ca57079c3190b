//! The registry's HTTP handlers (the table in the [module docs](super)).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use tracing::{info, warn};

use super::credentials::{Denied, Kind, Principal};
use super::leases::Takeover;
use super::{
    ForwarderRecord, ForwarderRegistration, MAX_TTL, MAX_WAIT, MIN_TTL, MediaRecord,
    MediaRegistration, Registry, Renewal,
};
use crate::hop::HopClient;
use crate::route::is_valid_name;

fn json_error(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message, "reason": reason, "status": status.as_u16() })),
    )
        .into_response()
}

fn denied(denied: &Denied) -> Response {
    match denied {
        Denied::Unauthenticated => {
            let mut response = json_error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                &denied.to_string(),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"streamgate-registry\""),
            );
            response
        }
        Denied::Forbidden { .. } => {
            json_error(StatusCode::FORBIDDEN, "forbidden", &denied.to_string())
        }
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

impl Registry {
    fn reader(&self, headers: &HeaderMap) -> Result<Principal, Denied> {
        self.credentials.authenticate(authorization(headers))
    }

    fn writer(
        &self,
        headers: &HeaderMap,
        kind: Kind,
        namespace: &str,
    ) -> Result<Principal, Denied> {
        self.credentials
            .authorize_write(authorization(headers), kind, namespace)
    }
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

fn renewal_response(key: &str, renewal: &Renewal) -> Response {
    match renewal {
        Renewal::Registered { previous } => Json(serde_json::json!({
            "status": "registered",
            "previous": previous,
        }))
        .into_response(),
        Renewal::Renewed => Json(serde_json::json!({ "status": "renewed" })).into_response(),
        Renewal::Superseded => json_error(
            StatusCode::CONFLICT,
            "superseded",
            &format!("another instance holds `{key}`; register again"),
        ),
        Renewal::Held { fixed, .. } => json_error(
            StatusCode::CONFLICT,
            "taken",
            &if *fixed {
                format!("`{key}` is declared statically")
            } else {
                format!("`{key}` is held by another instance that is alive")
            },
        ),
        Renewal::Unknown => json_error(
            StatusCode::NOT_FOUND,
            "no_lease",
            "no live lease; register again",
        ),
    }
}

/// Whether the holder registered at `addr` as `instance` is alive: its data plane answers
/// `GET /v1/instance` with that instance id, or does not answer within the deadline (a
/// partitioned holder keeps its key until its lease runs out). A refused connection, another
/// instance id or another answer means it is gone.
pub async fn holder_alive(client: &HopClient, addr: &str, instance: &str) -> bool {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return false;
    };
    let Ok(request) = http::Request::get(format!("http://{addr}{}", crate::media::INSTANCE_PATH))
        .body(Full::new(Bytes::new()))
    else {
        return false;
    };
    let answer = tokio::time::timeout(client.header_timeout(), async {
        let response = client.send(request).await.map_err(|e| e.is_some())?;
        if !response.status().is_success() {
            return Ok(None);
        }
        let body = http_body_util::Limited::new(response.into_body(), 4096)
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        Ok::<_, bool>(serde_json::from_slice::<serde_json::Value>(&body).ok())
    })
    .await;
    match answer {
        // No answer in time: assume it lives.
        Err(_) | Ok(Err(false)) => true,
        // Connection refused or reset: gone.
        Ok(Err(true)) | Ok(Ok(None)) => false,
        Ok(Ok(Some(json))) => json["instance"] == instance,
    }
}

/// Registers with [`Takeover::No`]; when a live holder of another instance keeps the key,
/// probes it and, if it is gone, takes the key over from exactly that holder.
async fn claim(
    registry: &Registry,
    register: impl Fn(&mut super::Leases, Takeover<'_>) -> Renewal,
) -> Renewal {
    let first = registry.with(|l| register(l, Takeover::No));
    let Renewal::Held {
        addr,
        instance,
        fixed: false,
    } = &first
    else {
        return first;
    };
    if holder_alive(&registry.probe, addr, instance).await {
        return first;
    }
    info!(holder = %addr, "the holder does not answer as itself: taking over");
    registry.with(|l| register(l, Takeover::IfHolder(instance)))
}

pub(super) async fn put_media(
    State(registry): State<Registry>,
    Path(label): Path<String>,
    headers: HeaderMap,
    Json(body): Json<MediaRegistration>,
) -> Response {
    let ttl = match check_names(&[("label", &label), ("namespace", &body.namespace)])
        .and_then(|()| check_ttl(body.ttl_ms))
    {
        Ok(ttl) => ttl,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, "invalid", &message),
    };
    let principal = match registry.writer(&headers, Kind::Media, &body.namespace) {
        Ok(principal) => principal,
        Err(refused) => return denied(&refused),
    };
    let renewal = if body.heartbeat {
        let now = registry.clock.now();
        registry.with(|l| l.heartbeat_media(&label, &body.instance, ttl, now))
    } else {
        let record = MediaRecord {
            label: label.clone(),
            namespace: body.namespace,
            addr: body.addr,
            streams: body.streams,
            instance: body.instance,
        };
        let renewal = claim(&registry, |l, takeover| {
            l.register_media(record.clone(), ttl, registry.clock.now(), takeover)
        })
        .await;
        match &renewal {
            Renewal::Registered { previous } => {
                info!(label = %label, addr = %body.addr, previous = ?previous, credential = %principal.id, "media server registered");
            }
            Renewal::Held { addr, .. } => {
                warn!(label = %label, claimant = %body.addr, holder = %addr, credential = %principal.id, "second claim on a live label refused");
            }
            _ => {}
        }
        renewal
    };
    registry.publish();
    renewal_response(&label, &renewal)
}

pub(super) async fn get_media(
    State(registry): State<Registry>,
    Path(label): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = registry.reader(&headers) {
        return denied(&refused);
    }
    let now = registry.clock.now();
    match registry.with(|l| l.media(&label, now).cloned()) {
        Some(record) => Json(record).into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            "not_registered",
            &format!("label `{label}` is not registered"),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct InstanceQuery {
    instance: String,
}

pub(super) async fn delete_media(
    State(registry): State<Registry>,
    Path(label): Path<String>,
    headers: HeaderMap,
    Query(query): Query<InstanceQuery>,
) -> Response {
    let now = registry.clock.now();
    let namespace = registry.with(|l| l.media(&label, now).map(|r| r.namespace.clone()));
    if let Some(namespace) = &namespace
        && let Err(refused) = registry.writer(&headers, Kind::Media, namespace)
    {
        return denied(&refused);
    }
    if registry.with(|l| l.remove_media(&label, &query.instance)) {
        info!(label = %label, "media server deregistered");
        registry.publish();
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_error(
            StatusCode::NOT_FOUND,
            "not_held",
            &format!("label `{label}` is not held by this instance"),
        )
    }
}

pub(super) async fn put_forwarder(
    State(registry): State<Registry>,
    Path((service, namespace)): Path<(String, String)>,
    headers: HeaderMap,
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
        Err(message) => return json_error(StatusCode::BAD_REQUEST, "invalid", &message),
    };
    let principal = match registry.writer(&headers, Kind::Forwarder, &namespace) {
        Ok(principal) => principal,
        Err(refused) => return denied(&refused),
    };
    let renewal = if body.heartbeat {
        let now = registry.clock.now();
        registry.with(|l| l.heartbeat_forwarder(&service, &namespace, &body.instance, ttl, now))
    } else {
        let record = ForwarderRecord {
            service: service.clone(),
            namespace: namespace.clone(),
            addr: body.addr,
            label: body.label,
            instance: body.instance,
        };
        let renewal = claim(&registry, |l, takeover| {
            l.register_forwarder(record.clone(), ttl, registry.clock.now(), takeover)
        })
        .await;
        if matches!(renewal, Renewal::Registered { .. }) {
            info!(service = %service, namespace = %namespace, addr = %body.addr, credential = %principal.id, "forwarder registered");
        }
        renewal
    };
    registry.publish();
    renewal_response(&format!("{service}/{namespace}"), &renewal)
}

pub(super) async fn delete_forwarder(
    State(registry): State<Registry>,
    Path((service, namespace)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<InstanceQuery>,
) -> Response {
    if let Err(refused) = registry.writer(&headers, Kind::Forwarder, &namespace) {
        return denied(&refused);
    }
    if registry.with(|l| l.remove_forwarder(&service, &namespace, &query.instance)) {
        registry.publish();
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_error(
            StatusCode::NOT_FOUND,
            "not_held",
            &format!("forwarder `{service}`/`{namespace}` is not held by this instance"),
        )
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RoutesQuery {
    since: Option<u64>,
    wait_ms: Option<u64>,
}

pub(super) async fn get_routes(
    State(registry): State<Registry>,
    headers: HeaderMap,
    Query(query): Query<RoutesQuery>,
) -> Response {
    if let Err(refused) = registry.reader(&headers) {
        return denied(&refused);
    }
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
    use crate::registry::credentials::{Credential, Role};
    use crate::registry::{RegistryConfig, Router};
    use axum::body::Body;
    use prometheus_client::registry::Registry as MetricsRegistry;
    use std::sync::Arc;
    use svckit::TestClock;
    use svckit::redact::Secret;
    use tower::ServiceExt;

    const ADMIN: &str = "admin-secret-0123456789";

    fn config() -> RegistryConfig {
        let credential = |secret: &str, role, namespaces: &[&str]| Credential {
            secret: Secret::new(secret),
            role,
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        };
        RegistryConfig {
            credentials: [
                ("admin".to_owned(), credential(ADMIN, Role::Admin, &[])),
                (
                    "media-b".to_owned(),
                    credential("media-b-secret-0123456789", Role::Media, &["NameSpaceB"]),
                ),
            ]
            .into_iter()
            .collect(),
            probe_timeout_ms: 300,
            ..RegistryConfig::default()
        }
    }

    async fn call(
        router: &Router,
        method: &str,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        call_as(router, Some(ADMIN), method, uri, body).await
    }

    async fn call_as(
        router: &Router,
        secret: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(secret) = secret {
            request = request.header("authorization", format!("Bearer {secret}"));
        }
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
            &config(),
            Arc::new(clock.clone()),
            &mut MetricsRegistry::default(),
        )
        .unwrap();
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
        assert_eq!(
            status,
            StatusCode::OK,
            "nothing answers at 9001: the holder is gone"
        );
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
            &config(),
            Arc::new(svckit::SystemClock),
            &mut MetricsRegistry::default(),
        )
        .unwrap();
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

    /// A data plane answering `GET /v1/instance` as `instance`.
    async fn live_holder(instance: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/v1/instance",
            axum::routing::get(move || async move {
                Json(serde_json::json!({ "label": "media-a", "instance": instance }))
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_second_claim_on_a_live_label_is_refused_and_credentials_are_required() {
        let registry = Registry::new(
            &config(),
            Arc::new(svckit::SystemClock),
            &mut MetricsRegistry::default(),
        )
        .unwrap();
        let router = registry.router();
        let (holder, server) = live_holder("real").await;
        let claim = |instance: &str, addr: String| {
            serde_json::json!({
                "namespace": "NameSpaceA", "addr": addr, "streams": ["main_stream"],
                "instance": instance, "ttl_ms": 60000,
            })
        };
        let (status, body) = call(
            &router,
            "PUT",
            "/v1/media/media-a",
            Some(claim("real", holder.to_string())),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // No credential, a wrong one, and one for another namespace.
        for (secret, expected) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("wrong-secret-0123456789"), StatusCode::UNAUTHORIZED),
            (Some("media-b-secret-0123456789"), StatusCode::FORBIDDEN),
        ] {
            let (status, body) = call_as(
                &router,
                secret,
                "PUT",
                "/v1/media/media-a",
                Some(claim("thief", "127.0.0.1:9".to_owned())),
            )
            .await;
            assert_eq!(status, expected, "{secret:?}: {body}");
        }
        let (status, _) = call_as(&router, None, "GET", "/v1/routes", None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "reads need a credential too"
        );
        // An authenticated second claim while the holder answers as itself: refused.
        let (status, body) = call(
            &router,
            "PUT",
            "/v1/media/media-a",
            Some(claim("thief", "127.0.0.1:9".to_owned())),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["reason"], "taken");
        let (_, record) = call(&router, "GET", "/v1/media/media-a", None).await;
        assert_eq!(
            record["addr"],
            holder.to_string(),
            "the real server keeps its label"
        );
        assert_eq!(record["instance"], "real");
        // The holder dies: the next claim takes the label at once.
        server.abort();
        let _ = server.await;
        let (status, body) = call(
            &router,
            "PUT",
            "/v1/media/media-a",
            Some(claim("restarted", "127.0.0.1:9".to_owned())),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, record) = call(&router, "GET", "/v1/media/media-a", None).await;
        assert_eq!(record["instance"], "restarted");
    }
}
