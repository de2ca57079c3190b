//! Credentials of the control plane: random session tokens and peer ids, bearer tokens on
//! HTTP requests, and their constant-time check.
//!
//! Three secrets guard the HTTP listeners (README "Tokens"):
//!
//! | secret | configured as | required by |
//! | --- | --- | --- |
//! | join token | `tracker.join_token`, given to peers as `peer.tracker_token` | `POST .../join`, `GET .../view` at the tracker |
//! | session token | issued by the tracker at join, one per peer | that peer's heartbeats and `DELETE` |
//! | publish token | `cdn.publish_token`, given to the origin as `origin.publish_token` | `PUT .../blocks/{n}`, `POST .../end` at the CDN |
//!
//! The origin's HTTP push ingest (`http://ADDR/ingest`) requires `origin.ingest_token`.
//! Every token travels as `Authorization: Bearer TOKEN`; a missing or malformed header is a
//! 401, a wrong token a 403.

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};
use svckit::redact::Secret;

use crate::cdn::AppError;
use crate::error::Error;

/// The shortest token accepted in configuration, in bytes (16 characters).
pub const MIN_TOKEN_LEN: usize = 16;

/// Fills `out` from the operating system's CSPRNG (through rustls' ring provider).
///
/// # Errors
/// [`Error::Random`] when the random source fails (it does not on Linux).
pub fn random_bytes(out: &mut [u8]) -> Result<(), Error> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(out)
        .map_err(|_| Error::Random)
}

/// A new random token: 32 random bytes, hex (64 characters).
///
/// # Errors
/// The errors of [`random_bytes`].
pub fn new_token() -> Result<Secret, Error> {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes)?;
    Ok(Secret::new(hex::encode(bytes)))
}

/// A random 64-bit peer id (never 0): ids handed out by two tracker runs do not collide
/// (probability about `n^2 / 2^65` for `n` peers).
///
/// # Errors
/// The errors of [`random_bytes`].
pub fn new_peer_id() -> Result<u64, Error> {
    loop {
        let mut bytes = [0u8; 8];
        random_bytes(&mut bytes)?;
        let id = u64::from_be_bytes(bytes);
        if id != 0 {
            return Ok(id);
        }
    }
}

/// SHA-256 of a token: what the tracker stores instead of the token itself.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time equality of two 32-byte digests (the time does not depend on where they
/// differ).
pub fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `presented` equals `expected`, in time independent of their contents (both are
/// hashed first, so their lengths do not leak either).
pub fn token_matches(presented: &str, expected: &str) -> bool {
    digests_equal(&digest(presented), &digest(expected))
}

/// Checks a configured token.
///
/// # Errors
/// [`Error::Config`] naming `what` (the setting and its environment variable) when the token
/// is shorter than [`MIN_TOKEN_LEN`].
pub fn require_token(token: &Secret, what: &str) -> Result<(), Error> {
    if token.expose().len() < MIN_TOKEN_LEN {
        return Err(Error::Config(format!(
            "{what} must be set to a secret of at least {MIN_TOKEN_LEN} characters"
        )));
    }
    Ok(())
}

/// The bearer token of a request, if the `Authorization` header is `Bearer TOKEN`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Checks the request's bearer token against `expected`.
///
/// # Errors
/// 401 when the header is missing or malformed, 403 when the token is wrong.
pub(crate) fn check_bearer(headers: &HeaderMap, expected: &Secret) -> Result<(), AppError> {
    let presented = bearer(headers).ok_or_else(|| {
        AppError(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer TOKEN` header".to_owned(),
        )
    })?;
    if token_matches(presented, expected.expose()) {
        Ok(())
    } else {
        Err(AppError(StatusCode::FORBIDDEN, "wrong token".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compared_by_value() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 64);
        assert!(token_matches(a.expose(), a.expose()));
        assert!(!token_matches(a.expose(), b.expose()));
        assert!(!token_matches("", a.expose()));
        assert_ne!(new_peer_id().unwrap(), new_peer_id().unwrap());
        assert!(require_token(&Secret::new("short"), "x").is_err());
        assert!(require_token(&a, "x").is_ok());
    }

    #[test]
    fn bearer_header_is_parsed_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        let expected = Secret::new("0123456789abcdef");
        h.insert(
            header::AUTHORIZATION,
            "bearer 0123456789abcdef".parse().unwrap(),
        );
        assert!(check_bearer(&h, &expected).is_ok());
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdeX".parse().unwrap(),
        );
        assert_eq!(
            check_bearer(&h, &expected).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        h.remove(header::AUTHORIZATION);
        assert_eq!(
            check_bearer(&h, &expected).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
    }
}
