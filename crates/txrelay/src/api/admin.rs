//! Admin endpoints (an admin key is required): dead letters and their replay, API keys.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::AppError;
use super::extract::Admin;
use super::invalid;
use crate::auth::keys;
use crate::core::now_ms;
use crate::state::Shared;
use crate::store::NotificationRecord;
use crate::store::keys::ApiKey;

/// `GET /v1/dead-letters`.
pub(super) async fn dead_letters(
    State(shared): State<Arc<Shared>>,
    _admin: Admin,
) -> Result<Json<Vec<NotificationRecord>>, AppError> {
    Ok(Json(shared.store.notifications(None, 1_000).await?))
}

/// `POST /v1/dead-letters/{id}/replay`.
pub(super) async fn replay_one(
    State(shared): State<Arc<Shared>>,
    _admin: Admin,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, AppError> {
    let now = now_ms(shared.clock.as_ref());
    let replayed = shared.store.replay(Some(id), now).await?;
    if replayed == 0 {
        return Err(AppError::NotFound("dead letter"));
    }
    shared.wake_delivery.notify_one();
    Ok(Json(json!({"replayed": replayed})))
}

/// `POST /v1/dead-letters/replay`.
pub(super) async fn replay_all(
    State(shared): State<Arc<Shared>>,
    _admin: Admin,
) -> Result<Json<serde_json::Value>, AppError> {
    let now = now_ms(shared.clock.as_ref());
    let replayed = shared.store.replay(None, now).await?;
    shared.wake_delivery.notify_one();
    Ok(Json(json!({"replayed": replayed})))
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    /// The tenant the key acts for (letters, digits, `.`, `_`, `-`, up to 64).
    pub tenant: String,
    /// Whether it is an admin key.
    #[serde(default)]
    pub admin: bool,
    /// Its own request rate per second (default: `limits.requests_per_second`).
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    /// Its own burst (default: `limits.burst`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// A free-text label.
    #[serde(default)]
    pub label: Option<String>,
}

/// Whether `tenant` is a valid tenant name: 1..=64 of A-Z a-z 0-9 `.` `_` `-`.
pub fn valid_tenant(tenant: &str) -> bool {
    (1..=64).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Makes a key for `request` at `now_ms`: the row to store and the bearer token (shown once,
/// never stored).
pub fn new_key(request: &NewKeyRequest, now_ms: u64) -> (ApiKey, String) {
    let generated = keys::generate();
    (
        ApiKey {
            key_id: generated.key_id,
            tenant: request.tenant.clone(),
            secret_sha256: generated.secret_sha256,
            admin: request.admin,
            rate_per_second: request.rate_per_second.filter(|r| *r > 0),
            burst: request.burst.filter(|b| *b > 0),
            label: request.label.clone(),
            created_at_ms: now_ms,
            revoked_at_ms: None,
        },
        generated.token,
    )
}

/// `POST /v1/keys`: 201 with the token, shown this once.
pub(super) async fn create_key(
    State(shared): State<Arc<Shared>>,
    _admin: Admin,
    body: Result<Json<NewKeyRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let Json(request) = body.map_err(|e| invalid(e.body_text()))?;
    if !valid_tenant(&request.tenant) {
        return Err(invalid(
            "`tenant` must be 1..=64 characters of A-Z a-z 0-9 . _ -",
        ));
    }
    let (key, token) = new_key(&request, now_ms(shared.clock.as_ref()));
    shared.store.create_key(&key).await?;
    let mut answer = serde_json::to_value(&key).unwrap_or_default();
    answer["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /v1/keys` (no secrets).
pub(super) async fn list_keys(
    State(shared): State<Arc<Shared>>,
    _admin: Admin,
) -> Result<Json<Vec<ApiKey>>, AppError> {
    Ok(Json(shared.store.api_keys().await?))
}

/// `DELETE /v1/keys/{key_id}`.
pub(super) async fn revoke_key(
    State(shared): State<Arc<Shared>>,
    _admin: Admin,
    Path(key_id): Path<String>,
) -> Result<StatusCode, AppError> {
    let now = now_ms(shared.clock.as_ref());
    if shared.store.revoke_key(&key_id, now).await? {
        shared.gate.forget(&key_id);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound("key"))
    }
}
