//! `POST /v1/chains/{chain_id}/transactions` (seed ¶24-36) and
//! `GET /v1/transactions/{hash}` (¶37-38).
//!
//! A submission is checked in this order, the first failure answering: the key (401/429,
//! before the body is read), the device (403 unless the key's tenant owns it), the
//! transaction itself ([`check_transaction`], 4xx), the account policy (403), then what the
//! relay already knows: a transaction already in a block answers 200 with its status and
//! receipt (a duplicate of a mined transaction is not an error); one in flight answers 202
//! `duplicate: true` within the idempotency window. A nonce below the account's cached
//! nonce answers 422 `nonce_too_low`. No node is asked in the request path: the nonce cache
//! is kept current by mined transactions and by the broadcaster, so submissions are accepted
//! and queued while every node is down.
//!
//! With an `Idempotency-Key` header (1 to 255 visible ASCII characters, as in payment APIs),
//! the first answer is kept for `idempotency.key_ttl_seconds`: the same key with the same
//! body answers it again (header `Idempotent-Replayed: true`), the same key with another body
//! answers 409 `idempotency_key_reused`, and while the first request is still running, 409
//! `idempotency_key_in_progress`. Answers 5xx and 429 are not kept.

use std::sync::Arc;

use alloy::primitives::{Address, B256};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::debug;

use super::error::AppError;
use super::{invalid, owned_device};
use crate::auth::Caller;
use crate::core::now_ms;
use crate::core::window::{Admission, admit};
use crate::error::RejectReason;
use crate::node::Receipt;
use crate::state::Shared;
use crate::store::idempotency::Begin;
use crate::store::{NotificationRecord, QueueError, Submission, TxRecord, TxStatus};
use crate::validate::check_transaction;

/// The `Idempotency-Key` request header.
pub(super) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Answer header marking a replayed first answer.
pub(super) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Body of `POST /v1/chains/{chain_id}/transactions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The signed EIP-2718 transaction as 0x-hex.
    pub raw: String,
    /// The account the device says signed it (0x-hex address).
    pub sender: String,
    /// The sending device's id (its registered rules pick the receivers); the key's tenant
    /// must own it.
    pub device: String,
    /// Idempotency control (seed ¶30-36): do not resend an identical transaction received
    /// within the window.
    #[serde(default)]
    pub idempotent: bool,
}

/// The receipt part of a transaction view: the node's receipt and the decoded revert reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptView {
    /// The receipt fields.
    #[serde(flatten)]
    pub receipt: Receipt,
    /// Why a failed transaction reverted (`Error(string)`, `panic 0x..` or revert data as
    /// hex), when the node can trace it.
    pub revert_reason: Option<String>,
}

/// Answer of a submission: 202 when accepted or in flight, 200 for a transaction already in
/// a block (with its receipt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The transaction hash (for a duplicate: the earlier, identical one's).
    pub tx_hash: B256,
    /// True when the relay had the transaction already (nothing is sent again).
    pub duplicate: bool,
    /// Its status now (`queued` for a new one).
    pub status: String,
    /// Its receipt, once in a block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptView>,
}

fn receipt_view(record: &TxRecord) -> Option<ReceiptView> {
    record.receipt.clone().map(|receipt| ReceiptView {
        receipt,
        revert_reason: record.revert_reason.clone(),
    })
}

/// `POST /v1/chains/{chain_id}/transactions`.
pub(super) async fn submit(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    path: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let chain_id = match path {
        Ok(Path(id)) => id,
        Err(e) => return invalid(format!("chain id: {}", e.body_text())).into_response(),
    };
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let Some(key) = key else {
        return answer(&shared, &caller, chain_id, &body)
            .await
            .into_response();
    };
    let mut hasher = Sha256::new();
    hasher.update(chain_id.to_be_bytes());
    hasher.update(&body);
    let request_sha256 = hex::encode(hasher.finalize());
    let now = now_ms(shared.clock.as_ref());
    let begin = shared
        .store
        .idempotency_begin(
            &caller.tenant,
            key,
            &request_sha256,
            now,
            shared.settings.idempotency_key_ttl,
        )
        .await;
    match begin {
        Err(error) => AppError::from(error).into_response(),
        Ok(Begin::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response =
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            response
        }
        Ok(Begin::Mismatch) => AppError::Conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was used with another request body".to_owned(),
        )
        .into_response(),
        Ok(Begin::InProgress) => AppError::Conflict(
            "idempotency_key_in_progress",
            "a request with this Idempotency-Key is still being processed".to_owned(),
        )
        .into_response(),
        Ok(Begin::New) => {
            let outcome = answer(&shared, &caller, chain_id, &body).await;
            let (status, text) = match &outcome {
                Ok((status, Json(answer))) => {
                    (*status, serde_json::to_string(answer).unwrap_or_default())
                }
                Err(error) => {
                    let response = error.status_and_body();
                    (response.0, response.1.to_string())
                }
            };
            let keep = !status.is_server_error() && status != StatusCode::TOO_MANY_REQUESTS;
            let stored = if keep {
                shared
                    .store
                    .idempotency_finish(&caller.tenant, key, status.as_u16(), &text)
                    .await
            } else {
                shared.store.idempotency_abort(&caller.tenant, key).await
            };
            if let Err(error) = stored {
                debug!(%error, "recording an Idempotency-Key answer failed");
            }
            outcome.into_response()
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(Some)
        .ok_or_else(|| invalid("`Idempotency-Key` must be 1 to 255 visible ASCII characters"))
}

/// Counts the outcome, then answers.
async fn answer(
    shared: &Shared,
    caller: &Caller,
    chain_id: u64,
    body: &[u8],
) -> Result<(StatusCode, Json<SubmitResponse>), AppError> {
    let outcome = submit_inner(shared, caller, chain_id, body).await;
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
    caller: &Caller,
    chain_id: u64,
    body: &[u8],
) -> Result<(StatusCode, Json<SubmitResponse>), AppError> {
    let request: SubmitRequest =
        serde_json::from_slice(body).map_err(|e| invalid(format!("body: {e}")))?;
    owned_device(shared, caller, &request.device).await?;
    let sender: Address = request
        .sender
        .trim()
        .parse()
        .map_err(|_| invalid("`sender` is not a 0x-hex account address"))?;
    let served = shared.nodes.contains_key(&chain_id);
    let signed = check_transaction(&request.raw, sender, chain_id, served)?;
    let now = now_ms(shared.clock.as_ref());
    let registered = if !shared.policy.needs_registry(sender) {
        false
    } else if shared.grants.account(&request.device, sender, now) {
        true
    } else {
        let registered = shared
            .store
            .account_registered(&request.device, sender)
            .await?;
        if registered {
            shared.grants.set_account(&request.device, sender, now);
        }
        registered
    };
    shared.policy.decide(sender, registered)?;
    let window = shared.settings.idempotency_window;
    if let Some(record) = shared.store.transaction(signed.hash).await? {
        let in_block = matches!(
            record.status,
            TxStatus::Included | TxStatus::Mined | TxStatus::Failed | TxStatus::Replaced
        );
        let duplicate = request.idempotent
            && admit(Some(record.accepted_at_ms), true, now, window) == Admission::Duplicate;
        if in_block || duplicate {
            shared
                .store
                .record_duplicate(signed.hash, &request.device, now)
                .await?;
            let status = if in_block {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            return Ok((
                status,
                Json(SubmitResponse {
                    tx_hash: signed.hash,
                    duplicate: true,
                    status: record.status.as_str().to_owned(),
                    receipt: receipt_view(&record),
                }),
            ));
        }
    }
    if let Some(next) = shared.nonces.get(chain_id, sender)
        && signed.nonce < next
    {
        return Err(RejectReason::NonceTooLow {
            nonce: signed.nonce,
            current: next,
        }
        .into());
    }
    if shared.tracked() >= shared.settings.max_tracked {
        return Err(AppError::Unavailable(
            "backlog_full",
            "the relay tracks as many unfinished transactions as it is configured to; retry later"
                .to_owned(),
        ));
    }
    let hash = signed.hash;
    let submission = Submission {
        signed,
        device: request.device.clone(),
        idempotent: request.idempotent,
        now_ms: now,
        window,
    };
    let admission = match shared.submits.submit(submission).await {
        Ok(admission) => admission,
        Err(QueueError::Full) => {
            return Err(AppError::Unavailable(
                "queue_full",
                "the relay is writing as many submissions as it can; retry shortly".to_owned(),
            ));
        }
        Err(QueueError::Closed) => {
            return Err(AppError::Unavailable(
                "shutting_down",
                "the relay is stopping; retry against another instance".to_owned(),
            ));
        }
        Err(QueueError::Store(error)) => return Err(error.into()),
    };
    // A new transaction's job was handed to the broadcaster with its commit; a resend's
    // job is claimed from the outbox.
    match admission {
        Admission::Resend => shared.wake_broadcast.notify_one(),
        // Counted now, not at the next backlog sample, so a burst cannot overshoot the bound.
        Admission::New => {
            shared
                .tracked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Admission::Duplicate => {}
    }
    debug!(tx_hash = %hash, chain_id, device = %request.device, ?admission, "submission accepted");
    Ok((
        StatusCode::ACCEPTED,
        Json(SubmitResponse {
            tx_hash: hash,
            duplicate: admission == Admission::Duplicate,
            status: TxStatus::Queued.as_str().to_owned(),
            receipt: None,
        }),
    ))
}

/// `GET /v1/transactions/{hash}`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct TransactionView {
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
    replaced_by: Option<B256>,
    receipt: Option<ReceiptView>,
    devices: Vec<String>,
    notifications: Vec<NotificationRecord>,
}

pub(super) async fn transaction(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
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
    let mine = |tenant: &str| caller.admin || tenant == caller.tenant;
    let devices: Vec<String> = shared
        .store
        .devices_of(hash)
        .await?
        .into_iter()
        .filter(|(_, tenant)| tenant.as_deref().is_some_and(mine) || caller.admin)
        .map(|(device, _)| device)
        .collect();
    if devices.is_empty() {
        // Retention may have deleted the transaction and its device links between the two
        // reads: a transaction that is gone is 404, not somebody else's.
        if shared.store.transaction(hash).await?.is_none() {
            return Err(AppError::NotFound("transaction"));
        }
        return Err(AppError::Forbidden(
            "transaction_not_owned",
            "no device of this key's tenant sent this transaction".to_owned(),
        ));
    }
    let notifications = shared
        .store
        .notifications(Some(hash), 1_000)
        .await?
        .into_iter()
        .filter(|n| mine(&n.tenant))
        .collect();
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
        receipt: receipt_view(&record),
        error: record.error,
        replaced_by: record.replaced_by,
        devices,
        notifications,
    }))
}
