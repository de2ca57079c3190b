//! A webhook receiver for the demo, the benchmark and the tests: an axum server on
//! 127.0.0.1 that serves several named receivers (`POST /hooks/{name}`), verifies every
//! signature with the receiver's secret (Standard Webhooks for `whsec_` secrets,
//! [`crate::webhook::verify_standard`]; the txrelay v1 scheme otherwise,
//! [`crate::webhook::verify`]), dedupes by event id as the webhook contract asks, and records
//! arrival times. It can refuse the first attempt of each event (to exercise retries) and be
//! stopped and restarted on the same port (a receiver that is down for a while).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::event::Event;
use crate::rules::WHSEC_PREFIX;
use crate::webhook::{
    DEFAULT_TOLERANCE_SECS, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WEBHOOK_ID,
    WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, verify, verify_standard,
};

/// One accepted (2xx) delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Receiver name.
    pub receiver: String,
    /// The decoded body.
    pub event: Event,
    /// When it arrived.
    pub arrived: Instant,
    /// Whether this event id had already been accepted by this receiver.
    pub duplicate: bool,
}

#[derive(Debug, Default)]
struct Inner {
    deliveries: Vec<Delivery>,
    seen: HashSet<(String, String)>,
    refused_once: HashSet<(String, String)>,
}

#[derive(Debug)]
struct ReceiverState {
    secrets: BTreeMap<String, String>,
    flaky: HashSet<String>,
    inner: Mutex<Inner>,
    bad_signatures: AtomicU64,
    refused: AtomicU64,
}

/// Counts a receiver keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Accepted deliveries, including duplicates.
    pub accepted: u64,
    /// Accepted deliveries of an event id already seen.
    pub duplicates: u64,
    /// Requests whose signature did not verify (answered 401).
    pub bad_signatures: u64,
    /// First attempts refused on purpose by flaky receivers (answered 503).
    pub refused: u64,
}

/// The receiver server. Dropping it stops the server.
#[derive(Debug)]
pub struct ReceiverServer {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    cancel: CancellationToken,
}

impl Drop for ReceiverServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl ReceiverServer {
    /// Starts receivers named by `secrets` (name -> HMAC secret) on 127.0.0.1 (port 0:
    /// any free port). Receivers in `flaky` answer 503 to the first attempt of each event.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start(
        port: u16,
        secrets: BTreeMap<String, String>,
        flaky: HashSet<String>,
    ) -> std::io::Result<Self> {
        let state = Arc::new(ReceiverState {
            secrets,
            flaky,
            inner: Mutex::new(Inner::default()),
            bad_signatures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let (addr, cancel) = serve(port, Arc::clone(&state)).await?;
        Ok(Self {
            addr,
            state,
            cancel,
        })
    }

    /// `http://127.0.0.1:{port}/hooks/{name}`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/hooks/{name}", self.addr)
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening (connections are refused) while keeping what was received.
    pub fn stop(&mut self) {
        self.cancel.cancel();
    }

    /// Listens again on the same port.
    ///
    /// # Errors
    /// The bind error.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        let (_, cancel) = serve(self.addr.port(), Arc::clone(&self.state)).await?;
        self.cancel = cancel;
        Ok(())
    }

    /// Every accepted delivery so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deliveries
            .clone()
    }

    /// When each transaction's first delivery arrived, for the hashes in `wanted` (one pass
    /// under the lock, no copy of the events: what a waiting benchmark polls, so the
    /// receiver is not held up by copies of everything it received).
    pub fn first_arrivals(
        &self,
        wanted: &HashSet<alloy::primitives::B256>,
    ) -> std::collections::HashMap<alloy::primitives::B256, Instant> {
        let inner = self
            .state
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut first = std::collections::HashMap::with_capacity(wanted.len());
        for delivery in &inner.deliveries {
            if wanted.contains(&delivery.event.tx_hash) {
                first
                    .entry(delivery.event.tx_hash)
                    .or_insert(delivery.arrived);
            }
        }
        first
    }

    /// Accepted deliveries so far, duplicates included (no copy).
    pub fn count(&self) -> usize {
        self.state
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deliveries
            .len()
    }

    /// The counts so far.
    pub fn stats(&self) -> ReceiverStats {
        let inner = self
            .state
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let accepted = inner.deliveries.len() as u64;
        let duplicates = inner.deliveries.iter().filter(|d| d.duplicate).count() as u64;
        ReceiverStats {
            accepted,
            duplicates,
            bad_signatures: self.state.bad_signatures.load(Ordering::Relaxed),
            refused: self.state.refused.load(Ordering::Relaxed),
        }
    }
}

async fn serve(
    port: u16,
    state: Arc<ReceiverState>,
) -> std::io::Result<(SocketAddr, CancellationToken)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let app = axum::Router::new()
        .route("/hooks/{name}", post(receive))
        .with_state(state);
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    Ok((addr, cancel))
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let arrived = Instant::now();
    let Some(secret) = state.secrets.get(&name) else {
        return StatusCode::NOT_FOUND;
    };
    let header = |key: &str| {
        headers
            .get(key)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let now = crate::webhook::unix_secs(&svckit::SystemClock);
    let (verified, id) = if secret.starts_with(WHSEC_PREFIX) {
        let id = header(WEBHOOK_ID);
        let result = verify_standard(
            secret,
            &id,
            &header(WEBHOOK_TIMESTAMP),
            &header(WEBHOOK_SIGNATURE),
            &body,
            now,
            DEFAULT_TOLERANCE_SECS,
        );
        (result, id)
    } else {
        let result = verify(
            secret.as_bytes(),
            &header(TIMESTAMP_HEADER),
            &header(SIGNATURE_HEADER),
            &body,
            now,
            DEFAULT_TOLERANCE_SECS,
        );
        (result, header(EVENT_ID_HEADER))
    };
    if verified.is_err() {
        state.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if id != event.event_id {
        return StatusCode::BAD_REQUEST;
    }
    let key = (name.clone(), event.event_id.clone());
    let mut inner = state.inner.lock().unwrap_or_else(PoisonError::into_inner);
    if state.flaky.contains(&name) && inner.refused_once.insert(key.clone()) {
        state.refused.fetch_add(1, Ordering::Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let duplicate = !inner.seen.insert(key);
    inner.deliveries.push(Delivery {
        receiver: name,
        event,
        arrived,
        duplicate,
    });
    StatusCode::OK
}
