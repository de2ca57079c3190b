//! The HTTP API (described by `GET /openapi.json`, the file `openapi.json` in the crate).
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /v1/chains/{chain_id}/transactions` | tenant | submit a signed transaction as one of its devices |
//! | `GET /v1/transactions/{hash}` | tenant | status, receipt, its devices and their notifications |
//! | `PUT /v1/devices/{device}/notifications` | tenant | register a device (first come) or replace its rules |
//! | `GET /v1/devices/{device}/notifications` | tenant | read them back (secrets masked) |
//! | `POST /v1/auth/nonce` | tenant | a single-use EIP-4361 nonce |
//! | `POST /v1/devices/{device}/accounts` | tenant | register an account with an EIP-4361 proof |
//! | `DELETE /v1/devices/{device}/accounts/{account}` | tenant | remove it |
//! | `GET /v1/ws` | tenant | WebSocket for the "to the recipient account" rule ([`crate::session`]) |
//! | `GET /v1/dead-letters` | admin | notifications that ran out of time or attempts |
//! | `POST /v1/dead-letters/{id}/replay`, `POST /v1/dead-letters/replay` | admin | queue them again |
//! | `POST /v1/keys`, `GET /v1/keys`, `DELETE /v1/keys/{key_id}` | admin | API keys |
//! | `GET /readyz` | anyone | readiness: the database and a node of every chain answer |
//! | `GET /openapi.json` | anyone | this API |
//!
//! Every other route needs `Authorization: Bearer txr_...` (401 without a valid key, 403 for
//! another tenant's device or transaction, 429 with `Retry-After` over the key's rate).
//! Errors answer `{"error": {"reason": CODE, "message": TEXT, "retryable": BOOL}}`.

pub(crate) mod admin;
mod devices;
pub(crate) mod error;
mod extract;
mod transactions;

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};

pub use admin::{NewKeyRequest, new_key, valid_tenant};
pub use devices::{AccountProof, NonceAnswer};
pub use transactions::{ReceiptView, SubmitRequest, SubmitResponse};

use crate::auth::Caller;
use crate::error::RejectReason;
use crate::state::Shared;
use error::AppError;

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Every route of the API as `(method, path template)`, as the OpenAPI document lists them.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/chains/{chain_id}/transactions"),
    ("get", "/v1/transactions/{hash}"),
    ("put", "/v1/devices/{device}/notifications"),
    ("get", "/v1/devices/{device}/notifications"),
    ("post", "/v1/auth/nonce"),
    ("post", "/v1/devices/{device}/accounts"),
    ("delete", "/v1/devices/{device}/accounts/{account}"),
    ("get", "/v1/ws"),
    ("get", "/v1/dead-letters"),
    ("post", "/v1/dead-letters/{id}/replay"),
    ("post", "/v1/dead-letters/replay"),
    ("post", "/v1/keys"),
    ("get", "/v1/keys"),
    ("delete", "/v1/keys/{key_id}"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
];

/// Longest device id, in bytes.
pub const MAX_DEVICE_LEN: usize = 128;

/// The router of every API route, over the relay's shared state, with the body limit.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    let max_body = shared.settings.listener.max_body_bytes;
    axum::Router::new()
        .route(
            "/v1/chains/{chain_id}/transactions",
            post(transactions::submit),
        )
        .route("/v1/transactions/{hash}", get(transactions::transaction))
        .route(
            "/v1/devices/{device}/notifications",
            put(devices::put_rules).get(devices::get_rules),
        )
        .route("/v1/auth/nonce", post(devices::nonce))
        .route("/v1/devices/{device}/accounts", post(devices::add_account))
        .route(
            "/v1/devices/{device}/accounts/{account}",
            delete(devices::remove_account),
        )
        .route("/v1/ws", get(websocket))
        .route("/v1/dead-letters", get(admin::dead_letters))
        .route("/v1/dead-letters/{id}/replay", post(admin::replay_one))
        .route("/v1/dead-letters/replay", post(admin::replay_all))
        .route("/v1/keys", post(admin::create_key).get(admin::list_keys))
        .route("/v1/keys/{key_id}", delete(admin::revoke_key))
        .merge(readiness_router())
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shared)
}

/// `GET /readyz` alone, for the operations listener.
pub(crate) fn readiness_router() -> axum::Router<Arc<Shared>> {
    axum::Router::new().route("/readyz", get(readyz))
}

/// `GET /readyz`: 200 when the database and at least one node of every chain answer, else
/// 503; the body says which part failed.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let report = shared.readiness().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

/// Checks a device id's syntax.
pub(crate) fn check_device(device: &str) -> Result<(), AppError> {
    let valid = !device.is_empty()
        && device.len() <= MAX_DEVICE_LEN
        && device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "`device` must be 1..={MAX_DEVICE_LEN} characters of A-Z a-z 0-9 . _ - :"
        )))
    }
}

/// A 400 `invalid_request`.
pub(crate) fn invalid(detail: impl Into<String>) -> AppError {
    AppError::Rejected(RejectReason::InvalidRequest {
        detail: detail.into(),
    })
}

/// 403 unless `caller` (or an admin) owns `device`; 403 as well when it does not exist, so
/// device names of other tenants are not revealed.
pub(crate) async fn owned_device(
    shared: &Shared,
    caller: &Caller,
    device: &str,
) -> Result<(), AppError> {
    check_device(device)?;
    let owner = match shared.grants.owner(device) {
        Some(owner) => Some(owner),
        None => {
            let owner = shared.store.device_owner(device).await?;
            if let Some(tenant) = &owner {
                shared.grants.set_owner(device, tenant.clone());
            }
            owner
        }
    };
    match owner {
        Some(Some(tenant)) if tenant == caller.tenant => Ok(()),
        Some(_) if caller.admin => Ok(()),
        _ => Err(AppError::Forbidden(
            "device_not_owned",
            format!("device `{device}` is not registered by this key's tenant"),
        )),
    }
}

/// `GET /v1/ws`: upgrades after authentication and takes one of the key's socket slots.
async fn websocket(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let slot = shared.gate.open_socket(&caller)?;
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| crate::session::run(socket, shared, slot)))
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
        // Every reject code is documented, and so is the security model.
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
            "unauthorized",
            "admin_only",
            "device_not_owned",
            "rate_limited",
            "too_many_sockets",
            "invalid_proof",
            "receiver_not_allowed",
            "idempotency_key_reused",
            "idempotency_key_in_progress",
            "backlog_full",
        ] {
            assert!(OPENAPI.contains(code), "{code} missing from openapi.json");
        }
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["apiKey"]["scheme"], "bearer");
        assert_eq!(doc["security"][0]["apiKey"], serde_json::json!([]));
        for public in ["/openapi.json", "/readyz"] {
            assert_eq!(
                doc["paths"][public]["get"]["security"],
                serde_json::json!([])
            );
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
