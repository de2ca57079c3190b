//! Device registration (seed ¶40-43): rules, and the accounts a device sends from, each
//! registered with an EIP-4361 proof by the account's key.
//!
//! To register an account, a client asks `POST /v1/auth/nonce` for a single-use nonce (with
//! the domain and URI to sign for), builds the EIP-4361 message for the account with that
//! nonce and an expiration time, signs it with the account's key (`personal_sign`) and posts
//! `{"message": ..., "signature": ...}` to `POST /v1/devices/{device}/accounts`.

use std::sync::Arc;

use alloy::primitives::Address;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::AppError;
use super::{check_device, invalid, owned_device};
use crate::auth::Caller;
use crate::auth::siwe::{Expect, verify};
use crate::core::now_ms;
use crate::rules::Registration;
use crate::state::Shared;
use crate::store::devices::PutDevice;

/// Bytes of randomness in a sign-in nonce (rendered as 32 hex digits).
const NONCE_BYTES: usize = 16;

/// `PUT /v1/devices/{device}/notifications`: registers the device for the caller's tenant
/// (first come) or replaces its rules. Every receiver URL must pass the outbound policy now
/// (it is checked again at each delivery). Answers the registration with generated secrets
/// shown once and given ones masked.
pub(super) async fn put_rules(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(device): Path<String>,
    body: Result<Json<Registration>, JsonRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    check_device(&device)?;
    let Json(mut registration) = body.map_err(|e| invalid(e.body_text()))?;
    registration.validate(shared.settings.max_receivers_per_device)?;
    for receiver in registration.receivers() {
        shared.outbound.resolve(receiver.url.expose()).await?;
    }
    let given: Vec<bool> = registration
        .receivers()
        .map(|r| r.secret.is_some())
        .collect();
    registration.fill_secrets();
    let stored = registration.sealed(&shared.settings.secrets);
    let now = now_ms(shared.clock.as_ref());
    let outcome = shared
        .store
        .put_device(
            &caller.tenant,
            &device,
            &stored,
            shared.settings.max_devices_per_tenant,
            now,
        )
        .await?;
    match outcome {
        PutDevice::Stored => {}
        PutDevice::OwnedByOther => {
            return Err(AppError::Forbidden(
                "device_not_owned",
                format!("device `{device}` is registered by another tenant"),
            ));
        }
        PutDevice::TooMany => {
            return Err(AppError::Forbidden(
                "too_many_devices",
                format!(
                    "this tenant has {} devices, the most allowed",
                    shared.settings.max_devices_per_tenant
                ),
            ));
        }
    }
    let mut answer = stored.masked();
    // Secrets the relay generated are shown this once.
    let generated: Vec<Option<String>> = registration
        .receivers()
        .zip(given)
        .map(|(r, given)| {
            (!given)
                .then(|| r.secret.as_ref().map(|s| s.expose().to_owned()))
                .flatten()
        })
        .collect();
    let (fixed, rest) = generated.split_at(registration.fixed.len());
    let reveal = |list: &mut serde_json::Value, secrets: &[Option<String>], nested: bool| {
        if let Some(items) = list.as_array_mut() {
            for (item, secret) in items.iter_mut().zip(secrets) {
                let receiver = if nested { &mut item["receiver"] } else { item };
                if let Some(secret) = secret {
                    receiver["secret"] = json!(secret);
                }
            }
        }
    };
    reveal(&mut answer["fixed"], fixed, false);
    reveal(&mut answer["by_recipient"], rest, true);
    answer["device"] = json!(device);
    Ok(Json(answer))
}

/// `GET /v1/devices/{device}/notifications`.
pub(super) async fn get_rules(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(device): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    owned_device(&shared, &caller, &device).await?;
    let record = shared
        .store
        .device(&device)
        .await?
        .ok_or(AppError::NotFound("device"))?;
    let mut answer = record.rules.masked();
    answer["device"] = json!(device);
    answer["accounts"] = json!(record.accounts);
    Ok(Json(answer))
}

/// Answer of `POST /v1/auth/nonce`: what an EIP-4361 message for this relay must carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NonceAnswer {
    /// The single-use nonce.
    pub nonce: String,
    /// The domain to sign for.
    pub domain: String,
    /// The URI to put in the message.
    pub uri: String,
    /// Until when the nonce may be used, Unix ms.
    pub expires_at_ms: u64,
}

/// `POST /v1/auth/nonce`.
pub(super) async fn nonce(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<(StatusCode, Json<NonceAnswer>), AppError> {
    let nonce = hex::encode(rand::random::<[u8; NONCE_BYTES]>());
    let now = now_ms(shared.clock.as_ref());
    let sign_in = &shared.settings.sign_in;
    let expires_at_ms = now.saturating_add(crate::store::millis_of(sign_in.nonce_ttl));
    shared
        .store
        .issue_nonce(&caller.tenant, &nonce, expires_at_ms)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NonceAnswer {
            nonce,
            domain: sign_in.domain.clone(),
            uri: sign_in.uri.clone(),
            expires_at_ms,
        }),
    ))
}

/// Body of `POST /v1/devices/{device}/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountProof {
    /// The EIP-4361 message text.
    pub message: String,
    /// Its EIP-191 signature by the account, 0x-hex of 65 bytes.
    pub signature: String,
}

/// `POST /v1/devices/{device}/accounts`: registers the signing account to the device.
pub(super) async fn add_account(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(device): Path<String>,
    body: Result<Json<AccountProof>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    owned_device(&shared, &caller, &device).await?;
    let Json(proof) = body.map_err(|e| invalid(e.body_text()))?;
    let now = now_ms(shared.clock.as_ref());
    let chain_ids: Vec<u64> = shared.nodes.keys().copied().collect();
    let sign_in = &shared.settings.sign_in;
    let message = verify(
        &proof.message,
        &proof.signature,
        &Expect {
            domain: &sign_in.domain,
            nonce: None,
            chain_ids: &chain_ids,
            now_ms: now,
            skew_ms: crate::store::millis_of(sign_in.skew),
            max_validity_ms: crate::store::millis_of(sign_in.max_validity),
        },
    )?;
    if !shared
        .store
        .consume_nonce(&caller.tenant, &message.nonce, now)
        .await?
    {
        return Err(AppError::Proof(crate::auth::siwe::SiweError::WrongNonce));
    }
    let record = json!({"message": proof.message, "signature": proof.signature}).to_string();
    shared
        .store
        .add_account(&device, message.address, &record, now)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"device": device, "account": message.address})),
    ))
}

/// `DELETE /v1/devices/{device}/accounts/{account}`.
pub(super) async fn remove_account(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path((device, account)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    owned_device(&shared, &caller, &device).await?;
    let account: Address = account
        .parse()
        .map_err(|_| invalid("the account must be a 0x-hex address"))?;
    shared.grants.drop_account(&device, account);
    if shared.store.remove_account(&device, account).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound("account"))
    }
}
