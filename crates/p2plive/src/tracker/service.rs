//! The tracker's HTTP service (routes in the [parent module](super)): one [`Swarm`] per
//! configured stream behind a mutex, with bearer-token checks ([`crate::auth`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use svckit::redact::Secret;

use super::{Heartbeat, JoinRequest, Joined, PeerEntry, Session, Swarm, TrackerConfig, View};
use crate::auth;
use crate::cdn::AppError;
use crate::error::Error;
use crate::sched::PeerId;

/// The tracker service: one [`Swarm`] per configured stream.
#[derive(Debug, Clone)]
pub struct Tracker {
    swarms: Arc<Mutex<BTreeMap<String, Swarm>>>,
    join_token: Secret,
}

impl Tracker {
    /// A tracker serving `config.streams`.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid bounds or a join token missing or shorter than 16
    /// characters.
    pub fn new(config: &TrackerConfig) -> Result<Self, Error> {
        auth::require_token(
            &config.join_token,
            "tracker.join_token (env P2PLIVE_TRACKER__JOIN_TOKEN)",
        )?;
        let mut swarms = BTreeMap::new();
        for id in &config.streams {
            swarms.insert(id.clone(), Swarm::new(config.clone())?);
        }
        Ok(Self {
            swarms: Arc::new(Mutex::new(swarms)),
            join_token: config.join_token.clone(),
        })
    }

    fn with<T>(
        &self,
        stream: &str,
        f: impl FnOnce(&mut Swarm) -> Result<T, Error>,
    ) -> Result<T, AppError> {
        let mut swarms = self.swarms.lock().unwrap_or_else(PoisonError::into_inner);
        let swarm = swarms.get_mut(stream).ok_or_else(|| {
            AppError(
                StatusCode::NOT_FOUND,
                Error::UnknownStream(stream.to_owned()).to_string(),
            )
        })?;
        f(swarm).map_err(|e| {
            let status = match e {
                Error::UnknownPeer(_) => StatusCode::GONE,
                Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                Error::Forbidden(_) => StatusCode::FORBIDDEN,
                Error::IdTaken(_) | Error::SwarmFull(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            AppError(status, e.to_string())
        })
    }

    /// The members of `stream` (empty for an unknown stream).
    pub fn entries(&self, stream: &str) -> Vec<PeerEntry> {
        let swarms = self.swarms.lock().unwrap_or_else(PoisonError::into_inner);
        swarms.get(stream).map(Swarm::entries).unwrap_or_default()
    }

    /// Expires silent peers in every swarm; call periodically. Returns the removed ids.
    pub fn expire(&self, now: Instant) -> Vec<(String, PeerId)> {
        let mut swarms = self.swarms.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (stream, swarm) in swarms.iter_mut() {
            for id in swarm.expire(now) {
                tracing::info!(stream = %stream, peer = id, "peer timed out; substreams re-homed");
                out.push((stream.clone(), id));
            }
        }
        out
    }

    /// The routes listed in the module docs.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/streams/{id}/join", post(join))
            .route("/streams/{id}/peers/{peer}/heartbeat", post(heartbeat))
            .route("/streams/{id}/peers/{peer}", delete(leave))
            .route("/streams/{id}/view", get(view))
            .with_state(self.clone())
    }

    /// Runs [`Tracker::expire`] every 250 ms until the returned task is aborted.
    pub fn spawn_expiry(&self) -> tokio::task::JoinHandle<()> {
        let tracker = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                tracker.expire(Instant::now());
            }
        })
    }
}

/// A JSON body, with every rejection (syntax, a number that does not fit its field, a missing
/// field) answered 400 with the parser's message.
fn json_body<T>(body: Result<axum::Json<T>, JsonRejection>) -> Result<T, AppError> {
    body.map(|axum::Json(v)| v)
        .map_err(|rejection| AppError(StatusCode::BAD_REQUEST, rejection.body_text()))
}

/// Ids tried per join before giving up (a collision of random 64-bit ids is ~2^-64).
const JOIN_ID_ATTEMPTS: usize = 4;

async fn join(
    State(t): State<Tracker>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<axum::Json<JoinRequest>, JsonRejection>,
) -> Result<axum::Json<Joined>, AppError> {
    auth::check_bearer(&headers, &t.join_token)?;
    let req = json_body(body)?;
    t.with(&stream, |swarm| {
        let mut last = Error::Random;
        for _ in 0..JOIN_ID_ATTEMPTS {
            let session = Session::random()?;
            match swarm.join(Instant::now(), req.contact.clone(), &session) {
                Ok(id) => {
                    tracing::info!(stream = %stream, peer = id, "peer joined");
                    return Ok(Joined {
                        session_token: session.token,
                        view: swarm.view(id, 0)?,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    })
    .map(axum::Json)
}

async fn heartbeat(
    State(t): State<Tracker>,
    Path((stream, peer)): Path<(String, PeerId)>,
    headers: HeaderMap,
    body: Result<axum::Json<Heartbeat>, JsonRejection>,
) -> Result<axum::Json<View>, AppError> {
    let hb = json_body(body)?;
    let token = auth::bearer(&headers);
    t.with(&stream, |swarm| {
        swarm.heartbeat(Instant::now(), peer, token, hb.cut)?;
        swarm.view(peer, hb.version)
    })
    .map(axum::Json)
}

async fn leave(
    State(t): State<Tracker>,
    Path((stream, peer)): Path<(String, PeerId)>,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    let token = auth::bearer(&headers);
    t.with(&stream, |swarm| {
        swarm.leave(peer, token)?;
        tracing::info!(stream = %stream, peer, "peer left; substreams re-homed");
        Ok(StatusCode::NO_CONTENT)
    })
}

async fn view(
    State(t): State<Tracker>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Vec<PeerEntry>>, AppError> {
    auth::check_bearer(&headers, &t.join_token)?;
    t.with(&stream, |swarm| Ok(swarm.entries())).map(axum::Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Contact;

    fn contact(n: u64) -> Contact {
        Contact {
            quic_addr: format!("127.0.0.1:{n}"),
            http_addr: String::new(),
            cert_der_hex: String::new(),
        }
    }

    // --- Control plane over HTTP (issue 16, "Control plane bugs"). ---

    const JOIN_TOKEN: &str = "join-token-for-tests";

    fn tracker() -> Router {
        let config = TrackerConfig {
            min_substreams: 1,
            max_substreams: 4,
            join_token: Secret::new(JOIN_TOKEN),
            ..TrackerConfig::default()
        };
        Tracker::new(&config).unwrap().router()
    }

    /// Sends `method uri` with an optional bearer token and raw JSON body.
    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    async fn join_http(app: &Router, n: u64) -> (PeerId, String) {
        let body = serde_json::to_string(&JoinRequest {
            contact: contact(n),
        })
        .unwrap();
        let (status, answer) =
            call(app, "POST", "/streams/live/join", Some(JOIN_TOKEN), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let joined: Joined = serde_json::from_value(answer).unwrap();
        (joined.view.you, joined.session_token.expose().to_owned())
    }

    async fn members(app: &Router) -> Vec<PeerId> {
        let (status, view) = call(app, "GET", "/streams/live/view", Some(JOIN_TOKEN), "").await;
        assert_eq!(status, StatusCode::OK);
        let entries: Vec<PeerEntry> = serde_json::from_value(view).unwrap();
        entries.iter().map(|e| e.id).collect()
    }

    fn heartbeat_body(cut: &str) -> String {
        format!(r#"{{"cut":{cut},"version":0}}"#)
    }

    #[tokio::test]
    async fn joining_and_reading_the_view_need_the_join_token() {
        let app = tracker();
        let body = serde_json::to_string(&JoinRequest {
            contact: contact(1),
        })
        .unwrap();
        let (status, _) = call(&app, "POST", "/streams/live/join", None, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&app, "POST", "/streams/live/join", Some("guess"), &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(&app, "GET", "/streams/live/view", None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(members(&app).await.is_empty());
        assert!(
            Tracker::new(&TrackerConfig::default()).is_err(),
            "no join token configured"
        );
    }

    /// Bug: after a tracker restart two peers got the same sequential id, and the old peer's
    /// DELETE removed the new one.
    #[tokio::test]
    async fn a_peer_from_before_a_restart_cannot_remove_one_that_joined_after_it() {
        let before = tracker();
        let (old_id, old_token) = join_http(&before, 1).await;
        let after = tracker(); // the restarted tracker: empty
        let (new_id, _) = join_http(&after, 2).await;
        assert_ne!(old_id, new_id, "ids must not repeat across restarts");
        let uri = format!("/streams/live/peers/{old_id}");
        let (status, _) = call(&after, "DELETE", &uri, Some(&old_token), "").await;
        assert_eq!(status, StatusCode::GONE, "the old id names nobody");
        // Even naming the new peer's id, the old peer's token does not match.
        let uri = format!("/streams/live/peers/{new_id}");
        let (status, _) = call(&after, "DELETE", &uri, Some(&old_token), "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(members(&after).await, vec![new_id]);
    }

    /// Bug: anyone could DELETE any peer.
    #[tokio::test]
    async fn nobody_can_remove_or_heartbeat_for_another_peer() {
        let app = tracker();
        let (a, a_token) = join_http(&app, 1).await;
        let (b, b_token) = join_http(&app, 2).await;
        let b_uri = format!("/streams/live/peers/{b}");
        let (status, _) = call(&app, "DELETE", &b_uri, None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&app, "DELETE", &b_uri, Some(&a_token), "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let hb = format!("/streams/live/peers/{b}/heartbeat");
        let (status, _) = call(&app, "POST", &hb, Some(&a_token), &heartbeat_body("3")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(&app, "POST", &hb, None, &heartbeat_body("3")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(members(&app).await.len(), 2);
        let (status, _) = call(&app, "POST", &hb, Some(&b_token), &heartbeat_body("3")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(&app, "DELETE", &b_uri, Some(&b_token), "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(members(&app).await, vec![a]);
    }

    /// Bug: a heartbeat with `cut = 2^64 - 2` wrapped the epoch arithmetic.
    #[tokio::test]
    async fn a_heartbeat_that_would_overflow_gets_a_400_and_changes_nothing() {
        let app = tracker();
        let (a, token) = join_http(&app, 1).await;
        let hb = format!("/streams/live/peers/{a}/heartbeat");
        for cut in [
            (u64::MAX - 1).to_string(),
            u64::MAX.to_string(),
            "18446744073709551616".to_owned(), // 2^64: does not fit a u64
            "-1".to_owned(),
            ((1u64 << 48) + 1).to_string(),
        ] {
            let (status, answer) =
                call(&app, "POST", &hb, Some(&token), &heartbeat_body(&cut)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "cut {cut}: {answer}");
            assert!(answer["error"].as_str().is_some(), "{answer}");
        }
        let (status, _) = call(&app, "POST", &hb, Some(&token), &heartbeat_body("10")).await;
        assert_eq!(status, StatusCode::OK);
        // The next change of s takes effect after the real cut, not after a wrapped one.
        let body = serde_json::to_string(&JoinRequest {
            contact: contact(2),
        })
        .unwrap();
        let (status, answer) =
            call(&app, "POST", "/streams/live/join", Some(JOIN_TOKEN), &body).await;
        assert_eq!(status, StatusCode::OK);
        let joined: Joined = serde_json::from_value(answer).unwrap();
        let epochs = joined.view.layout.epochs().to_vec();
        assert_eq!(epochs.len(), 2, "{epochs:?}");
        assert_eq!(epochs[1].from_block, 14);
    }
}
