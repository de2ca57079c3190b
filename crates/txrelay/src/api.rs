//! The HTTP API (described by `GET /openapi.json`, the file `openapi.json` in the crate).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/chains/{chain_id}/transactions` | submit a signed transaction (202, or 4xx with a reason) |
//! | `GET /v1/transactions/{hash}` | status, receipt, devices and notifications |
//! | `PUT /v1/devices/{device}/notifications` | register a device's accounts and rules |
//! | `GET /v1/devices/{device}/notifications` | read them back (secrets masked) |
//! | `GET /v1/dead-letters` | notifications that ran out of attempts |
//! | `POST /v1/dead-letters/{id}/replay`, `POST /v1/dead-letters/replay` | queue them again |
//! | `GET /v1/ws` | WebSocket for the "to the recipient account" rule ([`crate::session`]) |
//!
//! Errors answer `{"error": {"reason": CODE, "message": TEXT, "retryable": BOOL}}`.

use std::sync::Arc;

use alloy::primitives::{Address, B256};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{debug, error};

use crate::core::now_ms;
use crate::core::window::{Admission, admit};
use crate::error::{NodeError, RejectReason, StoreError};
use crate::rules::{Registration, RuleError};
use crate::state::Shared;
use crate::store::NotificationRecord;
use crate::validate::{check_nonce, check_transaction};

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route of the API as `(method, path template)`, as the OpenAPI document lists them.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/chains/{chain_id}/transactions"),
    ("get", "/v1/transactions/{hash}"),
    ("put", "/v1/devices/{device}/notifications"),
    ("get", "/v1/devices/{device}/notifications"),
    ("get", "/v1/dead-letters"),
    ("post", "/v1/dead-letters/{id}/replay"),
    ("post", "/v1/dead-letters/replay"),
    ("get", "/v1/ws"),
    ("get", "/openapi.json"),
];

/// Longest device id, in bytes.
pub const MAX_DEVICE_LEN: usize = 128;

/// Body of `POST /v1/chains/{chain_id}/transactions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The signed EIP-2718 transaction as 0x-hex.
    pub raw: String,
    /// The account the device says signed it (0x-hex address).
    pub sender: String,
    /// The sending device's id (its registered rules pick the receivers).
    pub device: String,
    /// Idempotency control (seed ¶30-36): do not resend an identical transaction received
    /// within the window.
    #[serde(default)]
    pub idempotent: bool,
}

/// Answer of an accepted submission (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The transaction hash (for a duplicate: the earlier, identical one's).
    pub tx_hash: B256,
    /// True when an identical transaction was received within the window and nothing is
    /// sent again.
    pub duplicate: bool,
}

/// A failed request, answered as JSON with a status code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    #[error(transparent)]
    Rejected(#[from] RejectReason),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, reason, message, retryable) = match &self {
            Self::Rejected(reason) => (
                StatusCode::from_u16(reason.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
                reason.code(),
                reason.to_string(),
                false,
            ),
            Self::Rule(error) => (
                StatusCode::BAD_REQUEST,
                "invalid_rules",
                error.to_string(),
                false,
            ),
            Self::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                message.clone(),
                false,
            ),
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
                false,
            ),
            Self::Node(error) => {
                debug!(%error, "node unavailable for a request");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "node_unavailable",
                    "no node of the chain answered; try again".to_owned(),
                    true,
                )
            }
            Self::Store(error) => {
                error!(error = %error_chain(error), "database failure in a request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_owned(),
                    true,
                )
            }
        };
        let body = json!({"error": {"reason": reason, "message": message, "retryable": retryable}});
        (status, Json(body)).into_response()
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The router of every API route, over the relay's shared state.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/v1/chains/{chain_id}/transactions", post(submit))
        .route("/v1/transactions/{hash}", get(transaction))
        .route(
            "/v1/devices/{device}/notifications",
            put(put_rules).get(get_rules),
        )
        .route("/v1/dead-letters", get(dead_letters))
        .route("/v1/dead-letters/{id}/replay", post(replay_one))
        .route("/v1/dead-letters/replay", post(replay_all))
        .route("/v1/ws", get(websocket))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .with_state(shared)
}

fn check_device(device: &str) -> Result<(), AppError> {
    let valid = !device.is_empty()
        && device.len() <= MAX_DEVICE_LEN
        && device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if valid {
        Ok(())
    } else {
        Err(AppError::Rejected(RejectReason::InvalidRequest {
            detail: format!(
                "`device` must be 1..={MAX_DEVICE_LEN} characters of A-Z a-z 0-9 . _ - :"
            ),
        }))
    }
}

fn invalid(detail: impl Into<String>) -> AppError {
    AppError::Rejected(RejectReason::InvalidRequest {
        detail: detail.into(),
    })
}

/// `POST /v1/chains/{chain_id}/transactions` (seed ¶24-36).
async fn submit(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<u64>, PathRejection>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), AppError> {
    let outcome = submit_inner(&shared, path, body).await;
    match &outcome {
        Ok((_, Json(answer))) if answer.duplicate => shared.metrics.submission("duplicate"),
        Ok(_) => shared.metrics.submission("accepted"),
        Err(AppError::Rejected(reason)) => shared.metrics.submission(reason.code()),
        Err(_) => shared.metrics.submission("error"),
    }
    outcome
}

async fn submit_inner(
    shared: &Shared,
    path: Result<Path<u64>, PathRejection>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), AppError> {
    let Path(chain_id) = path.map_err(|e| invalid(format!("chain id: {}", e.body_text())))?;
    let Json(request) = body.map_err(|e| invalid(e.body_text()))?;
    check_device(&request.device)?;
    let sender: Address = request
        .sender
        .trim()
        .parse()
        .map_err(|_| invalid("`sender` is not a 0x-hex account address"))?;
    let node = shared.nodes.get(&chain_id);
    let signed = check_transaction(&request.raw, sender, chain_id, node.is_some())?;
    let registered = if shared.policy.needs_registry(sender) {
        shared.store.account_registered(sender).await?
    } else {
        false
    };
    shared.policy.decide(sender, registered)?;
    let window = shared.settings.idempotency_window;
    if request.idempotent {
        let accepted_at = shared.store.accepted_at(signed.hash).await?;
        let now = now_ms(shared.clock.as_ref());
        if admit(accepted_at, true, now, window) == Admission::Duplicate {
            shared
                .store
                .record_duplicate(signed.hash, &request.device, now)
                .await?;
            return Ok((
                StatusCode::ACCEPTED,
                Json(SubmitResponse {
                    tx_hash: signed.hash,
                    duplicate: true,
                }),
            ));
        }
    }
    let Some(node) = node else {
        return Err(RejectReason::UnknownChain { chain_id }.into());
    };
    let current = node.nonce(sender).await?;
    check_nonce(signed.nonce, current)?;
    let now = now_ms(shared.clock.as_ref());
    let admission = shared
        .store
        .submit(&signed, &request.device, request.idempotent, now, window)
        .await?;
    if admission != Admission::Duplicate {
        shared.wake_broadcast.notify_one();
    }
    debug!(tx_hash = %signed.hash, chain_id, device = %request.device, ?admission, "submission accepted");
    Ok((
        StatusCode::ACCEPTED,
        Json(SubmitResponse {
            tx_hash: signed.hash,
            duplicate: admission == Admission::Duplicate,
        }),
    ))
}

/// The receipt part of a transaction view.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReceiptView {
    block_number: u64,
    block_hash: B256,
    gas_used: u64,
    success: bool,
    revert_reason: Option<String>,
}

/// `GET /v1/transactions/{hash}`.
#[derive(Debug, Clone, Serialize)]
struct TransactionView {
    tx_hash: B256,
    chain_id: u64,
    sender: Address,
    recipient: Option<Address>,
    nonce: u64,
    status: &'static str,
    finalized: bool,
    accepted_at_ms: u64,
    broadcast_count: u64,
    reorgs: u64,
    error: Option<String>,
    receipt: Option<ReceiptView>,
    devices: Vec<String>,
    notifications: Vec<NotificationRecord>,
}

async fn transaction(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TransactionView>, AppError> {
    let Path(text) = path.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let hash: B256 = text
        .parse()
        .map_err(|_| AppError::BadRequest("the hash must be 32 bytes of 0x-hex".to_owned()))?;
    let record = shared
        .store
        .transaction(hash)
        .await?
        .ok_or(AppError::NotFound("transaction"))?;
    let devices = shared.store.devices_of(hash).await?;
    let notifications = shared.store.notifications(Some(hash), 1_000).await?;
    Ok(Json(TransactionView {
        tx_hash: record.tx_hash,
        chain_id: record.chain_id,
        sender: record.sender,
        recipient: record.recipient,
        nonce: record.nonce,
        status: record.status.as_str(),
        finalized: record.finalized,
        accepted_at_ms: record.accepted_at_ms,
        broadcast_count: record.broadcast_count,
        reorgs: record.reorgs,
        error: record.error,
        receipt: record.inclusion.map(|i| ReceiptView {
            block_number: i.block_number,
            block_hash: i.block_hash,
            gas_used: i.gas_used,
            success: i.success,
            revert_reason: record.revert_reason.clone(),
        }),
        devices,
        notifications,
    }))
}

/// `PUT /v1/devices/{device}/notifications` (seed ¶40).
async fn put_rules(
    State(shared): State<Arc<Shared>>,
    Path(device): Path<String>,
    body: Result<Json<Registration>, JsonRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    check_device(&device)?;
    let Json(registration) = body.map_err(|e| invalid(e.body_text()))?;
    registration.validate()?;
    let now = now_ms(shared.clock.as_ref());
    shared.store.put_device(&device, &registration, now).await?;
    Ok(Json(masked(&device, &registration)))
}

async fn get_rules(
    State(shared): State<Arc<Shared>>,
    Path(device): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    check_device(&device)?;
    let registration = shared
        .store
        .device(&device)
        .await?
        .ok_or(AppError::NotFound("device"))?;
    Ok(Json(masked(&device, &registration)))
}

/// A registration as JSON with every secret replaced by `***`.
fn masked(device: &str, registration: &Registration) -> serde_json::Value {
    let receiver = |r: &crate::rules::Receiver| json!({"url": r.url.to_string(), "secret": "***"});
    json!({
        "device": device,
        "accounts": registration.accounts,
        "fixed": registration.fixed.iter().map(receiver).collect::<Vec<_>>(),
        "by_recipient": registration.by_recipient.iter()
            .map(|rule| json!({"account": rule.account, "receiver": receiver(&rule.receiver)}))
            .collect::<Vec<_>>(),
        "to_recipient_account": registration.to_recipient_account,
    })
}

async fn dead_letters(
    State(shared): State<Arc<Shared>>,
) -> Result<Json<Vec<NotificationRecord>>, AppError> {
    Ok(Json(shared.store.notifications(None, 1_000).await?))
}

async fn replay_one(
    State(shared): State<Arc<Shared>>,
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

async fn replay_all(
    State(shared): State<Arc<Shared>>,
) -> Result<Json<serde_json::Value>, AppError> {
    let now = now_ms(shared.clock.as_ref());
    let replayed = shared.store.replay(None, now).await?;
    shared.wake_delivery.notify_one();
    Ok(Json(json!({"replayed": replayed})))
}

async fn websocket(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| crate::session::run(socket, shared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut documented = Vec::new();
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                    documented.push((method.clone(), path.clone()));
                }
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
        // Every reject code is documented.
        let text = OPENAPI;
        for code in [
            "invalid_request",
            "malformed_hex",
            "undecodable_transaction",
            "unsupported_type",
            "missing_chain_id",
            "unknown_chain",
            "chain_mismatch",
            "invalid_field",
            "invalid_signature",
            "sender_mismatch",
            "account_denied",
            "account_unknown",
            "nonce_too_low",
            "node_unavailable",
        ] {
            assert!(text.contains(code), "{code} missing from openapi.json");
        }
    }

    #[test]
    fn device_ids_are_checked() {
        assert!(check_device("phone-1.a_b:c").is_ok());
        assert!(check_device("").is_err());
        assert!(check_device("has space").is_err());
        assert!(check_device(&"x".repeat(129)).is_err());
    }
}
