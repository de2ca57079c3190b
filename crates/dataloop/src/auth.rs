//! Bearer-token authentication of `dataloop serve` (issue 13 item 6; RFC 6750): every API route
//! but `/healthz` and `/metrics` requires `Authorization: Bearer <token>`.
//!
//! The token is kept as its SHA-256 digest only, and a presented token is hashed and compared
//! with the stored digest in constant time (no early exit on the first differing byte; hashing
//! first also hides the token's length).

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::{MIN_TOKEN_BYTES, ServeConfig};
use crate::error::{Error, Result};

/// The token `serve` accepts, as a SHA-256 digest.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

impl BearerToken {
    /// The token `token` (surrounding whitespace trimmed).
    ///
    /// # Errors
    /// [`Error::Token`] when it is shorter than [`MIN_TOKEN_BYTES`] bytes.
    pub fn new(token: &str) -> Result<Self> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_BYTES {
            return Err(Error::Token(format!(
                "the token must be at least {MIN_TOKEN_BYTES} bytes (got {})",
                token.len()
            )));
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// The token `config` names: `serve.token`, or else the contents of `serve.token_file`.
    ///
    /// # Errors
    /// [`Error::Token`] when neither is set, the file is unreadable or the token is too short.
    pub fn from_config(config: &ServeConfig) -> Result<Self> {
        let inline = config.token.expose().trim();
        if !inline.is_empty() {
            return Self::new(inline);
        }
        match &config.token_file {
            Some(path) => Self::new(&read_token_file(path)?),
            None => Err(Error::Token(
                "`dataloop serve` needs one: set serve.token (env DATALOOP_SERVE__TOKEN) or \
                 serve.token_file"
                    .to_owned(),
            )),
        }
    }

    /// Whether `presented` is the token (constant time in its contents).
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let diff = digest
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

fn read_token_file(path: &Path) -> Result<String> {
    fs_err::read_to_string(path).map_err(|e| Error::Token(format!("cannot read token file: {e}")))
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: passes requests carrying the token, answers others `401` with
/// `WWW-Authenticate: Bearer` and a JSON reason.
pub async fn require_bearer(
    State(token): State<Arc<BearerToken>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request.headers().get(header::AUTHORIZATION).map(bearer);
    let reason = match presented {
        Some(Some(t)) if token.matches(t) => return next.run(request).await,
        Some(Some(_)) => "invalid bearer token",
        Some(None) => "the Authorization header is not `Bearer <token>`",
        None => "missing bearer token (Authorization: Bearer <token>)",
    };
    tracing::warn!(
        path = request.uri().path(),
        reason,
        "unauthenticated request refused"
    );
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"dataloop\""),
        )],
        axum::Json(json!({ "error": reason })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_matches_and_short_tokens_are_refused() {
        let token = BearerToken::new("correct horse battery staple").unwrap();
        assert!(token.matches("correct horse battery staple"));
        assert!(!token.matches("correct horse battery stapl"));
        assert!(!token.matches(""));
        assert!(BearerToken::new("short").is_err());
        let config = ServeConfig::default();
        assert!(BearerToken::from_config(&config).is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(&HeaderValue::from_static("Bearer abc")), Some("abc"));
        assert_eq!(
            bearer(&HeaderValue::from_static("bearer  abc ")),
            Some("abc")
        );
        assert_eq!(bearer(&HeaderValue::from_static("Basic abc")), None);
        assert_eq!(bearer(&HeaderValue::from_static("Bearer")), None);
    }
}
