//! Webhook delivery of results (seed ¶39-40, ¶46-47).
//!
//! Each notification is POSTed as JSON ([`crate::event::Event`]) to the receiver, signed by
//! its scheme ([`signature`]: Standard Webhooks by default). A 2xx answer counts as
//! delivered; anything else (or no answer within `delivery.timeout_ms`) is retried with
//! exponential backoff and jitter ([`crate::core::backoff`]) for up to
//! `delivery.retry_for_seconds` (24 h by default), then dead-lettered;
//! `POST /v1/dead-letters/{id}/replay` queues it again.
//!
//! Each receiver has a circuit breaker ([`crate::core::breaker`]): after
//! `delivery.breaker_failures` consecutive failures its notifications are parked and one
//! probe at a time goes out; when a probe is delivered, every parked notification is made
//! due at once (the drain), so a receiver back after an outage gets its backlog within one
//! probe interval and no manual replay is needed. Parks and the drain reach the store through
//! the same ordered queue as the delivery outcomes, each queued under the breaker's lock, so a
//! park still queued when the receiver comes back is recorded before the drain, not after it
//! (which left that notification parked for the whole park time, a minute).
//!
//! Every delivery resolves the receiver's host again and connects only to an address the
//! outbound policy permits ([`crate::outbound`]); redirects are not followed. The error
//! recorded for the owner (`last_error`) names no address and does not tell a refused
//! connection from a timeout.

pub mod signature;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::header;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, info, warn};
use url::Url;

pub use signature::{
    DEFAULT_TOLERANCE_SECS, EVENT_ID_HEADER, SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER,
    WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, sign, sign_standard, verify, verify_standard,
};

use crate::core::breaker::{Breaker, Permit, Transition};
use crate::core::{Backoff, Retry, now_ms};
use crate::outbound::{Refusal, pinned};
use crate::state::Shared;
use crate::store::{DeliveryOutcome, WebhookJob, millis_of};

/// Most delivery outcomes written per database transaction.
const RECORD_BATCH: usize = 256;
/// Most receivers whose breaker state is kept (idle ones are dropped first).
const MAX_BREAKERS: usize = 10_000;
/// Largest answer body read from a receiver (the status is what counts).
const MAX_ANSWER_BYTES: usize = 4_096;

/// Why one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The outbound policy refused the destination (not a receiver outage).
    Refused(Refusal),
    /// No HTTP answer: refused, reset, timed out (a receiver outage).
    NoAnswer,
    /// An HTTP answer that is not 2xx.
    Status(u16),
    /// The stored secret cannot be opened (a configuration problem).
    Secret,
}

impl Failure {
    /// The text stored as `last_error` for the owner: no addresses, no reachability detail.
    fn owner_text(&self) -> String {
        match self {
            Self::Refused(refusal) => refusal.to_string(),
            Self::NoAnswer => "no HTTP answer from the receiver".to_owned(),
            Self::Status(status) => format!("HTTP {status}"),
            Self::Secret => "the receiver's secret cannot be used; register it again".to_owned(),
        }
    }

    /// Whether it counts against the receiver's breaker (the receiver looks down).
    fn is_outage(&self) -> bool {
        match self {
            Self::NoAnswer => true,
            Self::Status(status) => *status >= 500 || *status == 408 || *status == 429,
            Self::Refused(_) | Self::Secret => false,
        }
    }
}

/// The breakers of the receivers this worker delivers to.
#[derive(Debug, Default)]
struct Breakers {
    by_target: Mutex<HashMap<String, Breaker>>,
}

impl Breakers {
    fn with<T>(&self, target: &str, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut map = self
            .by_target
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_BREAKERS && !map.contains_key(target) {
            map.retain(|_, b| !b.is_idle());
        }
        let breaker = map.entry(target.to_owned()).or_default();
        let answer = f(breaker);
        if breaker.is_idle() {
            map.remove(target);
        }
        answer
    }

    /// Open receivers whose probe is due at `now_ms`, with the probe slot reserved.
    fn due_probes(&self, now_ms: u64) -> Vec<String> {
        let mut map = self
            .by_target
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.iter_mut()
            .filter(|(_, b)| b.is_open() && b.next_probe_at_ms() <= now_ms)
            .filter_map(|(target, b)| (b.permit(now_ms) == Permit::Probe).then(|| target.clone()))
            .collect()
    }

    /// When the next probe of any open receiver is due.
    fn next_probe_at(&self) -> Option<u64> {
        let map = self
            .by_target
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.values()
            .filter(|b| b.is_open())
            .map(Breaker::next_probe_at_ms)
            .min()
    }
}

/// What the worker's tasks share.
struct Worker {
    shared: Arc<Shared>,
    breakers: Breakers,
    outcomes: mpsc::UnboundedSender<DeliveryOutcome>,
    permits: Arc<Semaphore>,
}

impl Worker {
    /// How long parked notifications wait before they are looked at again (if no probe has
    /// drained them first): ten probe intervals, at least a minute.
    fn park_ms(&self) -> u64 {
        millis_of(self.shared.settings.breaker.probe_max)
            .saturating_mul(10)
            .max(60_000)
    }
}

/// The webhook worker: claims due notifications, POSTs them (at most
/// `delivery.max_in_flight` at once), probes open receivers, and records the outcomes in
/// batches, until the relay stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let (outcomes, mut recorded) = mpsc::unbounded_channel::<DeliveryOutcome>();
    let recorder = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(RECORD_BATCH);
            while recorded.recv_many(&mut batch, RECORD_BATCH).await > 0 {
                match shared.store.record_deliveries(&batch).await {
                    Ok(0) => {}
                    Ok(drained) => {
                        info!(drained, "recovered receivers' parked notifications are due");
                        shared.wake_delivery.notify_one();
                    }
                    Err(error) => {
                        warn!(%error, count = batch.len(), "recording deliveries failed; their leases will expire and they are sent again");
                    }
                }
                batch.clear();
            }
        })
    };
    let permits = Arc::new(Semaphore::new(
        usize::try_from(shared.settings.delivery_in_flight).unwrap_or(128),
    ));
    let worker = Arc::new(Worker {
        shared: Arc::clone(&shared),
        breakers: Breakers::default(),
        outcomes,
        permits,
    });
    let settings = &shared.settings;
    let mut handoff = shared
        .handoff_rx
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    loop {
        let now = now_ms(shared.clock.as_ref());
        let until_probe = worker
            .breakers
            .next_probe_at()
            .map_or(settings.delivery_poll_interval, |at| {
                Duration::from_millis(at.saturating_sub(now)).min(settings.delivery_poll_interval)
            });
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            jobs = next_handed(&mut handoff) => {
                match jobs {
                    // Committed and claimed by the follower: send them now, no claim query.
                    Some(jobs) => {
                        dispatch(&worker, jobs).await;
                        continue;
                    }
                    None => handoff = None,
                }
            }
            () = shared.wake_delivery.notified() => {}
            () = tokio::time::sleep(until_probe) => {}
        }
        probe(&worker).await;
        claim_and_send(&worker).await;
    }
    // Let deliveries in flight record their outcome, briefly.
    drop(worker);
    if tokio::time::timeout(Duration::from_secs(1), recorder)
        .await
        .is_err()
    {
        debug!("deliveries still in flight at shutdown; they are sent again after a restart");
    }
}

/// The next batch handed over by the head follower; never resolves without a channel.
async fn next_handed(
    handoff: &mut Option<mpsc::UnboundedReceiver<Vec<WebhookJob>>>,
) -> Option<Vec<WebhookJob>> {
    match handoff {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends `jobs` (claimed by this instance), each when a permit is free; parks those of
/// open receivers.
async fn dispatch(worker: &Arc<Worker>, jobs: Vec<WebhookJob>) {
    let shared = &worker.shared;
    let now = now_ms(shared.clock.as_ref());
    for job in jobs {
        // Decided and queued under the breaker's lock, so a drain (queued under the same lock
        // when a probe closes the circuit) is recorded after this park, never before it.
        let held = worker.breakers.with(&job.url, |b| {
            let held = b.permit(now) == Permit::Hold;
            if held {
                let _ = worker.outcomes.send(DeliveryOutcome::Parked {
                    id: job.id,
                    until_ms: now.saturating_add(worker.park_ms()),
                });
            }
            held
        });
        if held {
            shared.metrics.delivery("webhook", "parked");
            continue;
        }
        let Ok(permit) = Arc::clone(&worker.permits).acquire_owned().await else {
            return;
        };
        tokio::spawn(deliver(Arc::clone(worker), job, permit));
    }
}

/// Sends one probe to every open receiver whose probe is due.
async fn probe(worker: &Arc<Worker>) {
    let shared = &worker.shared;
    let now = now_ms(shared.clock.as_ref());
    for target in worker.breakers.due_probes(now) {
        let claimed = shared
            .store
            .claim_probe(
                &shared.settings.instance_id,
                &target,
                now,
                shared.settings.delivery_lease,
            )
            .await;
        match claimed {
            Ok(Some(job)) => {
                let Ok(permit) = Arc::clone(&worker.permits).acquire_owned().await else {
                    return;
                };
                shared.metrics.delivery("webhook", "probe");
                tokio::spawn(deliver(Arc::clone(worker), job, permit));
            }
            Ok(None) => worker.breakers.with(&target, |b| b.probe_skipped(now)),
            Err(error) => {
                warn!(%error, "claiming a probe failed");
                worker.breakers.with(&target, |b| b.probe_skipped(now));
            }
        }
    }
}

/// Claims due notifications while permits are free; parks those of open receivers.
async fn claim_and_send(worker: &Arc<Worker>) {
    let shared = &worker.shared;
    let settings = &shared.settings;
    loop {
        let free = u32::try_from(worker.permits.available_permits()).unwrap_or(0);
        if free == 0 {
            break;
        }
        let now = now_ms(shared.clock.as_ref());
        shared.metrics.delivery_claims.inc();
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
        dispatch(worker, jobs).await;
    }
}

/// One POST of `job`: resolve and check the destination, sign, send to a checked address.
async fn attempt(shared: &Shared, job: &WebhookJob) -> Result<(), Failure> {
    let secret = shared
        .settings
        .secrets
        .open(&job.sealed_secret)
        .map_err(|_| Failure::Secret)?;
    let url: Url = job
        .url
        .parse()
        .map_err(|_| Failure::Refused(Refusal::BadUrl))?;
    let addrs = shared
        .outbound
        .resolve(&url)
        .await
        .map_err(Failure::Refused)?;
    let timestamp = now_ms(shared.clock.as_ref()) / 1000;
    let headers = signature::headers(
        job.scheme,
        &secret,
        &job.event_id,
        timestamp,
        job.payload.as_bytes(),
    )
    .ok_or(Failure::Secret)?;
    let mut last = Failure::NoAnswer;
    // Two addresses at most: a second A/AAAA record covers one dead address.
    for addr in addrs.iter().take(2) {
        let Some((target, host)) = pinned(&url, *addr) else {
            continue;
        };
        let mut request = shared
            .http
            .post(target)
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("txrelay/", env!("CARGO_PKG_VERSION")),
            )
            .timeout(shared.settings.delivery_timeout)
            .body(job.payload.clone());
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                // Read a little of the answer so the connection can be reused; ignore it.
                let _ = tokio::time::timeout(Duration::from_millis(200), async {
                    let mut response = response;
                    let mut read = 0;
                    while let Ok(Some(chunk)) = response.chunk().await {
                        read += chunk.len();
                        if read > MAX_ANSWER_BYTES {
                            break;
                        }
                    }
                })
                .await;
                return if status.is_success() {
                    Ok(())
                } else {
                    Err(Failure::Status(status.as_u16()))
                };
            }
            Err(error) => {
                debug!(event_id = %job.event_id, %error, "webhook POST got no answer");
                last = Failure::NoAnswer;
            }
        }
    }
    Err(last)
}

async fn deliver(worker: Arc<Worker>, job: WebhookJob, _permit: OwnedSemaphorePermit) {
    let shared = &worker.shared;
    let result = attempt(shared, &job).await;
    let now = now_ms(shared.clock.as_ref());
    let outcome = match result {
        Ok(()) => {
            shared.metrics.delivery("webhook", "delivered");
            let waited = now.saturating_sub(job.created_at_ms);
            shared
                .metrics
                .delivery_seconds
                .observe(waited as f64 / 1000.0);
            if let Some(seen) = job.included_seen_at_ms {
                let since = now.saturating_sub(seen);
                shared
                    .metrics
                    .inclusion_to_delivery_seconds
                    .observe(since as f64 / 1000.0);
            }
            let closed = worker.breakers.with(&job.url, |b| {
                let closed = b.succeeded() == Transition::Closed;
                if closed {
                    // In order after every park queued while the circuit was open.
                    let _ = worker.outcomes.send(DeliveryOutcome::DrainReceiver {
                        target: job.url.clone(),
                        at_ms: now,
                    });
                }
                closed
            });
            if closed {
                info!(receiver = %job.url, "receiver back: its parked notifications are due");
            }
            debug!(
                event_id = %job.event_id,
                attempts = job.attempts,
                since_created_ms = waited,
                since_seen_ms = job.included_seen_at_ms.map(|seen| now.saturating_sub(seen)),
                "webhook delivered"
            );
            DeliveryOutcome::Delivered {
                id: job.id,
                at_ms: now,
            }
        }
        Err(failure) => {
            let breaker = &shared.settings.breaker;
            let deadline = job
                .created_at_ms
                .saturating_add(millis_of(shared.settings.delivery_retry_for));
            let backoff = Backoff::new(shared.settings.delivery_backoff);
            let retry = backoff.after_failure(job.attempts, now, rand::random::<f64>());
            let park_until = now.saturating_add(worker.park_ms());
            // The breaker's verdict and the park it implies are queued under its lock, in
            // order with a drain (see `dispatch`).
            let (opened, retry_at_ms) = worker.breakers.with(&job.url, |b| {
                let opened = failure.is_outage() && b.failed(now, breaker) == Transition::Opened;
                if opened {
                    let _ = worker.outcomes.send(DeliveryOutcome::ParkReceiver {
                        target: job.url.clone(),
                        now_ms: now,
                        until_ms: park_until,
                    });
                }
                let retry_at_ms = match retry {
                    Retry::At(at) if at < deadline => {
                        Some(if b.is_open() { at.max(park_until) } else { at })
                    }
                    _ => None,
                };
                // The recorder is gone only at shutdown; the lease then brings it back.
                let _ = worker.outcomes.send(DeliveryOutcome::Failed {
                    id: job.id,
                    retry_at_ms,
                    error: failure.owner_text(),
                });
                (opened, retry_at_ms)
            });
            if opened {
                warn!(receiver = %job.url, "receiver failing; circuit open, probing it");
            }
            if retry_at_ms.is_some() {
                shared.metrics.delivery("webhook", "failed");
            } else {
                shared.metrics.delivery("webhook", "dead");
                warn!(event_id = %job.event_id, attempts = job.attempts, error = ?failure, "webhook dead-lettered");
            }
            debug!(event_id = %job.event_id, attempts = job.attempts, error = ?failure, "webhook delivery failed");
            return;
        }
    };
    // The recorder is gone only at shutdown; the lease then brings the notification back.
    let _ = worker.outcomes.send(outcome);
}

/// Seconds since the Unix epoch of `clock`, for [`verify`].
pub fn unix_secs(clock: &dyn svckit::Clock) -> u64 {
    now_ms(clock) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_texts_reveal_no_reachability() {
        for failure in [Failure::NoAnswer, Failure::Refused(Refusal::NotAllowed)] {
            let text = failure.owner_text();
            for leak in ["refused", "timed out", "127.0.0.1", "reset", "dns"] {
                assert!(!text.to_lowercase().contains(leak), "{text}");
            }
        }
        assert_eq!(Failure::Status(503).owner_text(), "HTTP 503");
        assert!(Failure::NoAnswer.is_outage());
        assert!(Failure::Status(503).is_outage());
        assert!(!Failure::Status(404).is_outage());
        assert!(!Failure::Refused(Refusal::NotAllowed).is_outage());
    }
}
