//! The API's error answer: `{"error": {"reason": CODE, "message": TEXT, "retryable": BOOL}}`
//! with a status code per reason (listed in `openapi.json`). 4xx are logged at debug level;
//! 5xx bodies are generic and the detail goes to the log (style.md 2.3 item 7).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{debug, error};

use crate::auth::Denied;
use crate::auth::siwe::SiweError;
use crate::core::ratelimit::retry_after_secs;
use crate::error::{NodeError, RejectReason, StoreError};
use crate::outbound::Refusal;
use crate::rules::RuleError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    /// Validation of a submission failed.
    #[error(transparent)]
    Rejected(#[from] RejectReason),
    /// A registration is unusable.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A receiver URL's destination is refused by the outbound policy.
    #[error(transparent)]
    Outbound(#[from] Refusal),
    /// An EIP-4361 proof was refused.
    #[error(transparent)]
    Proof(#[from] SiweError),
    /// Authentication or a limit refused the request.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Something named in the path does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller's tenant may not do this.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// The request conflicts with an earlier one (`Idempotency-Key`).
    #[error("{1}")]
    Conflict(&'static str, String),
    /// The relay cannot take the request now (`backlog_full`).
    #[error("{1}")]
    Unavailable(&'static str, String),
    /// No node answered.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::error::Error> for AppError {
    fn from(error: crate::error::Error) -> Self {
        match error {
            crate::error::Error::Store(e) => Self::Store(e),
            crate::error::Error::Node(e) => Self::Node(e),
            other => Self::Unavailable("internal", other.to_string()),
        }
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

impl AppError {
    /// The status and JSON body this error answers with (kept for `Idempotency-Key`).
    pub(crate) fn status_and_body(&self) -> (StatusCode, serde_json::Value) {
        let (status, reason, message, retryable, _) = self.parts();
        (status, body(reason, &message, retryable))
    }

    /// Status, reason code, message, retryable, `Retry-After` seconds.
    fn parts(&self) -> (StatusCode, &'static str, String, bool, Option<u64>) {
        let plain = |status, reason, message: String| (status, reason, message, false, None);
        match self {
            Self::Rejected(reason) => plain(
                StatusCode::from_u16(reason.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
                reason.code(),
                reason.to_string(),
            ),
            Self::Rule(error) => plain(StatusCode::BAD_REQUEST, "invalid_rules", error.to_string()),
            Self::Outbound(refusal) => plain(
                StatusCode::UNPROCESSABLE_ENTITY,
                "receiver_not_allowed",
                refusal.to_string(),
            ),
            Self::Proof(error) => plain(StatusCode::FORBIDDEN, "invalid_proof", error.to_string()),
            Self::Denied(denied) => match denied {
                Denied::Unauthorized => {
                    plain(StatusCode::UNAUTHORIZED, "unauthorized", denied.to_string())
                }
                Denied::NotAdmin => plain(StatusCode::FORBIDDEN, "admin_only", denied.to_string()),
                Denied::RateLimited(wait) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests; retry after the Retry-After seconds".to_owned(),
                    true,
                    Some(retry_after_secs(*wait)),
                ),
                Denied::TooManySockets(_) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_sockets",
                    denied.to_string(),
                    true,
                    Some(1),
                ),
                Denied::Store(error) => {
                    error!(error = %error_chain(error), "database failure checking a key");
                    internal()
                }
            },
            Self::BadRequest(message) => {
                plain(StatusCode::BAD_REQUEST, "invalid_request", message.clone())
            }
            Self::NotFound(what) => plain(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            Self::Forbidden(reason, message) => {
                plain(StatusCode::FORBIDDEN, reason, message.clone())
            }
            Self::Conflict(reason, message) => plain(StatusCode::CONFLICT, reason, message.clone()),
            Self::Unavailable(reason, message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                reason,
                message.clone(),
                true,
                Some(1),
            ),
            Self::Node(error) => {
                debug!(%error, "node unavailable for a request");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "node_unavailable",
                    "no node of the chain answered; try again".to_owned(),
                    true,
                    Some(1),
                )
            }
            Self::Store(error) => {
                error!(error = %error_chain(error), "database failure in a request");
                internal()
            }
        }
    }
}

fn internal() -> (StatusCode, &'static str, String, bool, Option<u64>) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error".to_owned(),
        true,
        None,
    )
}

/// The error body for `reason` and `message`.
pub(crate) fn body(reason: &str, message: &str, retryable: bool) -> serde_json::Value {
    json!({"error": {"reason": reason, "message": message, "retryable": retryable}})
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, reason, message, retryable, retry_after) = self.parts();
        if status.is_client_error() {
            debug!(%status, reason, "request refused");
        }
        let mut response = (status, Json(body(reason, &message, retryable))).into_response();
        if let Some(secs) = retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"txrelay\""),
            );
        }
        response
    }
}
