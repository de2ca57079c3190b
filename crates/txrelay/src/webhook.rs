//! Webhook delivery of results (seed ¶39-40, ¶46-47) and its signature scheme.
//!
//! Each notification is POSTed as JSON ([`crate::event::Event`]) with three headers:
//!
//! | header | value |
//! |---|---|
//! | `X-Txrelay-Event-Id` | the event id (the same on every redelivery) |
//! | `X-Txrelay-Timestamp` | Unix seconds when this attempt was signed |
//! | `X-Txrelay-Signature` | `v1=` + hex HMAC-SHA256(secret, `"{timestamp}.{body}"`) |
//!
//! A receiver recomputes the HMAC over the timestamp and the raw body with its secret
//! ([`verify`]), refuses stale timestamps (replays), and ignores event ids it has already
//! processed: delivery is at least once. A 2xx answer counts as delivered; anything else (or
//! no answer within the timeout) is retried with exponential backoff and jitter
//! ([`crate::core::backoff`]) until the attempts run out, then the notification is
//! dead-lettered; `POST /v1/dead-letters/{id}/replay` queues it again.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, warn};

use crate::core::{Backoff, Retry, now_ms};
use crate::state::Shared;
use crate::store::{DeliveryOutcome, WebhookJob};

/// Header carrying the event id.
pub const EVENT_ID_HEADER: &str = "x-txrelay-event-id";
/// Header carrying the signing time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-txrelay-timestamp";
/// Header carrying `v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "x-txrelay-signature";
/// Largest clock difference [`verify`] accepts by default, in seconds.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Most webhook POSTs in flight at once per relay instance.
const MAX_IN_FLIGHT: usize = 128;

/// Most delivery outcomes written per database transaction.
const RECORD_BATCH: usize = 256;

type HmacSha256 = Hmac<Sha256>;

/// The signature header value for `body` signed at `timestamp` (Unix seconds) with `secret`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable_key());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Only reachable if the HMAC implementation started rejecting some key length: an all-zero
/// block-sized key, which never matches a real signature.
#[cold]
fn unreachable_key() -> HmacSha256 {
    <HmacSha256 as Mac>::new(&Default::default())
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
    /// The signature header is not `v1=<64 hex digits>`.
    #[error("signature header is not `v1=<hex>`")]
    BadFormat,
    /// The HMAC does not match (wrong secret or altered body).
    #[error("signature does not match")]
    Mismatch,
}

/// Verifies a delivery as a receiver does: the timestamp within `tolerance_secs` of
/// `now_secs`, then the HMAC in constant time.
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
    let expected = signature_header
        .trim()
        .strip_prefix("v1=")
        .and_then(|digits| hex::decode(digits).ok())
        .filter(|bytes| bytes.len() == 32)
        .ok_or(SignatureError::BadFormat)?;
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable_key());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The webhook worker: claims due notifications, POSTs them (at most 128 at once) and
/// records the outcomes in batches, until the relay stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let (outcomes, mut recorded) = mpsc::unbounded_channel::<DeliveryOutcome>();
    let recorder = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(RECORD_BATCH);
            while recorded.recv_many(&mut batch, RECORD_BATCH).await > 0 {
                if let Err(error) = shared.store.record_deliveries(&batch).await {
                    warn!(%error, count = batch.len(), "recording deliveries failed; their leases will expire and they are sent again");
                }
                batch.clear();
            }
        })
    };
    let settings = &shared.settings;
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            () = shared.wake_delivery.notified() => {}
            () = tokio::time::sleep(settings.delivery_poll_interval) => {}
        }
        loop {
            let free = u32::try_from(permits.available_permits()).unwrap_or(0);
            if free == 0 {
                break;
            }
            let now = now_ms(shared.clock.as_ref());
            let jobs = match shared
                .store
                .claim_webhooks(
                    &settings.instance_id,
                    now,
                    settings.delivery_lease,
                    free.min(settings.delivery_batch),
                )
                .await
            {
                Ok(jobs) => jobs,
                Err(error) => {
                    warn!(%error, "claiming notifications failed; retrying");
                    break;
                }
            };
            if jobs.is_empty() {
                break;
            }
            for job in jobs {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                tokio::spawn(deliver(Arc::clone(&shared), job, outcomes.clone(), permit));
            }
        }
    }
    // Let deliveries in flight record their outcome, briefly.
    drop(outcomes);
    if tokio::time::timeout(Duration::from_secs(1), recorder)
        .await
        .is_err()
    {
        debug!("deliveries still in flight at shutdown; they are sent again after a restart");
    }
}

async fn deliver(
    shared: Arc<Shared>,
    job: WebhookJob,
    outcomes: mpsc::UnboundedSender<DeliveryOutcome>,
    _permit: OwnedSemaphorePermit,
) {
    let timestamp = now_ms(shared.clock.as_ref()) / 1000;
    let signature = sign(job.secret.as_bytes(), timestamp, job.payload.as_bytes());
    let outcome = shared
        .http
        .post(&job.url)
        .header("content-type", "application/json")
        .header(EVENT_ID_HEADER, &job.event_id)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature)
        .timeout(shared.settings.delivery_timeout)
        .body(job.payload.clone())
        .send()
        .await;
    let failure = match outcome {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("HTTP {}", response.status().as_u16())),
        Err(error) if error.is_timeout() => Some(format!(
            "no answer within {:?}",
            shared.settings.delivery_timeout
        )),
        Err(error) => Some(format!("unreachable: {error}")),
    };
    let now = now_ms(shared.clock.as_ref());
    let outcome = match failure {
        None => {
            shared.metrics.delivery("webhook", "delivered");
            let waited = now.saturating_sub(job.created_at_ms);
            shared
                .metrics
                .delivery_seconds
                .observe(waited as f64 / 1000.0);
            debug!(event_id = %job.event_id, attempts = job.attempts, "webhook delivered");
            DeliveryOutcome::Delivered {
                id: job.id,
                at_ms: now,
            }
        }
        Some(error) => {
            let backoff = Backoff::new(shared.settings.delivery_backoff);
            let retry_at_ms = match backoff.after_failure(job.attempts, now, rand::random::<f64>())
            {
                Retry::At(at) => {
                    shared.metrics.delivery("webhook", "failed");
                    Some(at)
                }
                Retry::GiveUp => {
                    shared.metrics.delivery("webhook", "dead");
                    warn!(event_id = %job.event_id, attempts = job.attempts, %error, "webhook dead-lettered");
                    None
                }
            };
            debug!(event_id = %job.event_id, attempts = job.attempts, %error, "webhook delivery failed");
            DeliveryOutcome::Failed {
                id: job.id,
                retry_at_ms,
                error,
            }
        }
    };
    // The recorder is gone only at shutdown; the lease then brings the notification back.
    let _ = outcomes.send(outcome);
}

/// Seconds since the Unix epoch of `clock`, for [`verify`].
pub fn unix_secs(clock: &dyn svckit::Clock) -> u64 {
    now_ms(clock) / 1000
}

/// The default delivery timeout, for receivers that want to mirror it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_failures() {
        let body = br#"{"event_id":"abc","status":"mined"}"#;
        let header = sign(b"0123456789abcdef", 1_700_000_000, body);
        assert!(header.starts_with("v1="));
        assert_eq!(header.len(), 3 + 64);
        assert_eq!(
            verify(
                b"0123456789abcdef",
                "1700000000",
                &header,
                body,
                1_700_000_100,
                300
            ),
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
            verify(
                b"0123456789abcdef",
                "1700000000",
                &header,
                b"{}",
                1_700_000_000,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            verify(
                b"0123456789abcdef",
                "1700000001",
                &header,
                body,
                1_700_000_000,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(
                b"0123456789abcdef",
                "1700000000",
                &header,
                body,
                1_700_001_000,
                300
            ),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            verify(
                b"0123456789abcdef",
                "1700000000",
                "sha256=00",
                body,
                1_700_000_000,
                300
            ),
            Err(SignatureError::BadFormat)
        );
        assert!(matches!(
            verify(b"k", "soon", &header, body, 0, 300),
            Err(SignatureError::BadTimestamp(_))
        ));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256(key="key", "1.The quick brown fox jumps over the lazy dog"), computed
        // independently with Python's hmac module.
        let header = sign(b"key", 1, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            header,
            "v1=3ff4d3cc115b639a16dc5b217aa5c89be41d1e4b54efc356d63d0cd2a65b30f1"
        );
    }
}
