//! Request extractors that authenticate: [`Caller`] (any valid key, rate-limited) and
//! [`Admin`] (an admin key). They run before the body is read, so a request without a valid
//! key, or over its key's rate, costs no parsing, signature recovery or database write.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::error::AppError;
use crate::auth::{Caller, Denied};
use crate::core::now_ms;
use crate::state::Shared;

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, AppError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let now = now_ms(shared.clock.as_ref());
        let outcome = shared.gate.check(&shared.store, header, now).await;
        shared.metrics.auth(match &outcome {
            Ok(_) => "ok",
            Err(Denied::Unauthorized) => "unauthorized",
            Err(Denied::RateLimited(_)) => "rate_limited",
            Err(_) => "error",
        });
        Ok(outcome?)
    }
}

/// A caller with an admin key.
#[derive(Debug, Clone)]
pub(crate) struct Admin(
    #[expect(dead_code, reason = "the extractor's check is its use")] pub(crate) Caller,
);

impl FromRequestParts<Arc<Shared>> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, AppError> {
        let caller = Caller::from_request_parts(parts, shared).await?;
        if caller.admin {
            Ok(Self(caller))
        } else {
            Err(Denied::NotAdmin.into())
        }
    }
}
