//! Webhook signature schemes, for the relay (signing) and for receivers (verifying).
//!
//! **Standard Webhooks** (the default; <https://www.standardwebhooks.com>, the scheme of Svix
//! and others, with verifier libraries in most languages):
//!
//! | header | value |
//! |---|---|
//! | `webhook-id` | the event id (the same on every redelivery) |
//! | `webhook-timestamp` | Unix seconds when this attempt was signed |
//! | `webhook-signature` | `v1,` + base64(HMAC-SHA256(key, `"{id}.{timestamp}.{body}"`)) |
//!
//! where `key` is the base64-decoded part of the receiver's `whsec_...` secret. The header
//! may list several space-separated signatures (during a secret rotation); one valid is
//! enough.
//!
//! **txrelay v1** (kept as an option, `scheme = "txrelay-v1"`): `X-Txrelay-Event-Id`,
//! `X-Txrelay-Timestamp` and `X-Txrelay-Signature: v1=` + hex(HMAC-SHA256(secret,
//! `"{timestamp}.{body}"`)), the secret's bytes being the key.
//!
//! Receivers refuse timestamps further than the tolerance from their clock (replays) and
//! ignore event ids they have processed: delivery is at least once.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::rules::{SignatureScheme, standard_key};

/// Standard Webhooks: the event id header.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks: the signing time header (Unix seconds).
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks: the signature header (`v1,<base64>`).
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// txrelay v1: the event id header.
pub const EVENT_ID_HEADER: &str = "x-txrelay-event-id";
/// txrelay v1: the signing time header (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-txrelay-timestamp";
/// txrelay v1: the signature header (`v1=<hex>`).
pub const SIGNATURE_HEADER: &str = "x-txrelay-signature";
/// Largest clock difference [`verify`] and [`verify_standard`] accept by default, seconds.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable_key());
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Only reachable if the HMAC implementation started rejecting some key length: an all-zero
/// block-sized key, which never matches a real signature.
#[cold]
fn unreachable_key() -> HmacSha256 {
    <HmacSha256 as Mac>::new(&Default::default())
}

/// The txrelay v1 signature header value for `body` signed at `timestamp` with `secret`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let tag = mac(secret, &[ts.as_bytes(), b".", body])
        .finalize()
        .into_bytes();
    format!("v1={}", hex::encode(tag))
}

/// The Standard Webhooks signature header value (`v1,<base64>`) with the HMAC `key` (the
/// decoded `whsec_` secret).
pub fn sign_standard(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let tag = mac(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body])
        .finalize()
        .into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// The headers signing one delivery of `body` (event `id`, at `timestamp`) under `scheme`
/// with the receiver's `secret`; `None` when a `standard` secret is not a `whsec_` secret
/// (registration refuses those).
pub fn headers(
    scheme: SignatureScheme,
    secret: &str,
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> Option<[(&'static str, String); 3]> {
    match scheme {
        SignatureScheme::Standard => {
            let key = standard_key(secret)?;
            Some([
                (WEBHOOK_ID, id.to_owned()),
                (WEBHOOK_TIMESTAMP, timestamp.to_string()),
                (WEBHOOK_SIGNATURE, sign_standard(&key, id, timestamp, body)),
            ])
        }
        SignatureScheme::TxrelayV1 => Some([
            (EVENT_ID_HEADER, id.to_owned()),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (SIGNATURE_HEADER, sign(secret.as_bytes(), timestamp, body)),
        ]),
    }
}

/// Why a webhook signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The timestamp header is not a number.
    #[error("timestamp header `{0}` is not Unix seconds")]
    BadTimestamp(String),
    /// The timestamp is further from now than the tolerance (a replay or a skewed clock).
    #[error("timestamp {timestamp} is more than {tolerance_secs} s from now ({now})")]
    Stale {
        /// From the header.
        timestamp: u64,
        /// The verifier's time.
        now: u64,
        /// The tolerance.
        tolerance_secs: u64,
    },
    /// The signature header is not in the scheme's format, or the secret is not.
    #[error("signature header or secret is malformed")]
    BadFormat,
    /// The HMAC does not match (wrong secret or altered body).
    #[error("signature does not match")]
    Mismatch,
}

fn fresh(
    timestamp_header: &str,
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<u64, SignatureError> {
    let timestamp: u64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp(timestamp_header.to_owned()))?;
    if timestamp.abs_diff(now_secs) > tolerance_secs {
        return Err(SignatureError::Stale {
            timestamp,
            now: now_secs,
            tolerance_secs,
        });
    }
    Ok(timestamp)
}

/// Verifies a txrelay v1 delivery as a receiver does: the timestamp within `tolerance_secs`
/// of `now_secs`, then the HMAC in constant time.
///
/// # Errors
/// [`SignatureError`].
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let timestamp = fresh(timestamp_header, now_secs, tolerance_secs)?;
    let expected = signature_header
        .trim()
        .strip_prefix("v1=")
        .and_then(|digits| hex::decode(digits).ok())
        .filter(|bytes| bytes.len() == 32)
        .ok_or(SignatureError::BadFormat)?;
    let ts = timestamp.to_string();
    mac(secret, &[ts.as_bytes(), b".", body])
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Verifies a Standard Webhooks delivery as a receiver does: the timestamp within
/// `tolerance_secs` of `now_secs`, then any `v1,` signature of the header in constant time,
/// with the key of the `whsec_` `secret`.
///
/// # Errors
/// [`SignatureError`].
pub fn verify_standard(
    secret: &str,
    id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let timestamp = fresh(timestamp_header, now_secs, tolerance_secs)?;
    let key = standard_key(secret).ok_or(SignatureError::BadFormat)?;
    let ts = timestamp.to_string();
    let mut any = false;
    for candidate in signature_header.split_whitespace() {
        let Some(tag) = candidate
            .strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
        else {
            continue;
        };
        any = true;
        let check = mac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
        if check.verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(if any {
        SignatureError::Mismatch
    } else {
        SignatureError::BadFormat
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txrelay_v1_round_trip_and_failures() {
        let body = br#"{"event_id":"abc","status":"mined"}"#;
        let secret = b"0123456789abcdef";
        let header = sign(secret, 1_700_000_000, body);
        assert!(header.starts_with("v1="));
        assert_eq!(header.len(), 3 + 64);
        assert_eq!(
            verify(secret, "1700000000", &header, body, 1_700_000_100, 300),
            Ok(())
        );
        assert_eq!(
            verify(
                b"another-secret!!",
                "1700000000",
                &header,
                body,
                1_700_000_000,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(secret, "1700000000", &header, b"{}", 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            verify(secret, "1700000001", &header, body, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(secret, "1700000000", &header, body, 1_700_001_000, 300),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            verify(secret, "1700000000", "sha256=00", body, 1_700_000_000, 300),
            Err(SignatureError::BadFormat)
        );
        assert!(matches!(
            verify(b"k", "soon", &header, body, 0, 300),
            Err(SignatureError::BadTimestamp(_))
        ));
    }

    #[test]
    fn txrelay_v1_known_vector() {
        // HMAC-SHA256(key="key", "1.The quick brown fox jumps over the lazy dog"), computed
        // independently with Python's hmac module.
        let header = sign(b"key", 1, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            header,
            "v1=3ff4d3cc115b639a16dc5b217aa5c89be41d1e4b54efc356d63d0cd2a65b30f1"
        );
    }

    /// The test vector of the Standard Webhooks / Svix libraries (secret, id, timestamp,
    /// payload, signature), recomputed here with Python's hmac and base64 modules.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn standard_webhooks_vector_signs_and_verifies() {
        let [(id_header, id), (ts_header, ts), (sig_header, signature)] = headers(
            SignatureScheme::Standard,
            SECRET,
            ID,
            1_614_265_330,
            PAYLOAD,
        )
        .unwrap();
        assert_eq!((id_header, id.as_str()), (WEBHOOK_ID, ID));
        assert_eq!((ts_header, ts.as_str()), (WEBHOOK_TIMESTAMP, "1614265330"));
        assert_eq!(
            (sig_header, signature.as_str()),
            (WEBHOOK_SIGNATURE, SIGNATURE)
        );
        let now = 1_614_265_330;
        assert_eq!(
            verify_standard(SECRET, ID, "1614265330", SIGNATURE, PAYLOAD, now, 300),
            Ok(())
        );
        // One valid signature among several is enough (rotation).
        let two = format!("v1,Zm9v {SIGNATURE}");
        assert_eq!(
            verify_standard(SECRET, ID, "1614265330", &two, PAYLOAD, now, 300),
            Ok(())
        );
        assert_eq!(
            verify_standard(
                SECRET,
                "msg_other",
                "1614265330",
                SIGNATURE,
                PAYLOAD,
                now,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_standard(SECRET, ID, "1614265330", SIGNATURE, PAYLOAD, now + 301, 300),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            verify_standard("not-whsec", ID, "1614265330", SIGNATURE, PAYLOAD, now, 300),
            Err(SignatureError::BadFormat)
        );
        assert!(headers(SignatureScheme::Standard, "plain", ID, 1, PAYLOAD).is_none());
    }
}
