//! A viewer (seed 55-63): joins the tracker, prefetches its substreams from the CDN and keeps
//! them, fetches the other substreams' blocks from the peers holding them over QUIC, fetches
//! urgent blocks from the CDN, verifies every block against the origin's SHA-256, reassembles
//! the stream and serves it to a local player at `http://127.0.0.1:PORT/live.ts`.
//!
//! The decisions are the sans-I/O [`Scheduler`](crate::sched::Scheduler)'s; this module is
//! its driver: sockets, tasks and timers.
//!
//! Mesh (issue 16 item 3): the peer talks only to the neighbours the tracker gives it (a
//! partial view, updated by deltas), keeps a buffer-map long poll open to each
//! ([`crate::link`]), and serves any block it holds to any neighbour that asks; its upload
//! cap is one token bucket over all its links.
//!
//! HTTP routes of a peer: `GET /live.ts` (the reassembled MPEG-TS, growing live, ending with
//! the stream; a new player starts at the block playing now, the newest complete block near
//! the live edge, which decodes on its own as every block starts with PAT, PMT and a key
//! frame; `?from=start` starts at the first block played that is still held), `GET /live.m3u8`
//! and `GET /hls/{n}.ts` (the same blocks as a live HLS playlist and its segments,
//! [`crate::hls`]), `GET /summary` (JSON [`PeerSummary`]), `/healthz`, `/metrics`.
//!
//! Memory is bounded: a peer keeps the blocks from `window_ms` of media behind its playhead
//! up to what arrived ahead of it, and forgets older ones (blocks, scheduler state, the list
//! of blocks played). A player reading `/live.ts` so slowly that it falls behind the window
//! gets the end of its response (an error), not a gap.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use svckit::redact::Secret;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::link::{HAVE, Identity, Links, MAP_WAIT, MISSING, MapAnswer, Request};
use crate::metrics::{PeerMetrics, PeerSummary};
use crate::rate::RateCap;
use crate::sched::{BufferMap, PeerId, SchedConfig, Upload};
use crate::substream::Layout;
use crate::tracker::{Contact, Heartbeat, JoinRequest, Joined, View};

mod driver;
mod player;

use driver::{Driver, Event};
use player::{Played, hls_segment, live_m3u8, live_ts, summary};

/// Settings of a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerConfig {
    /// Stream id to join (default `live`).
    pub stream: String,
    /// Tracker base URL, e.g. `http://127.0.0.1:7001`.
    pub tracker: String,
    /// The tracker's join token (its `tracker.join_token`; env `P2PLIVE_PEER__TRACKER_TOKEN`).
    pub tracker_token: Secret,
    /// CDN base URL, e.g. `http://127.0.0.1:7000`.
    pub cdn: String,
    /// HTTP listen address for `/live.ts` (default `127.0.0.1:0`, any free port).
    pub http_listen: SocketAddr,
    /// QUIC (UDP) listen address (default `127.0.0.1:0`).
    pub quic_listen: SocketAddr,
    /// Playback rate: media seconds per wall second; must equal the origin's pacing speed
    /// (default 1.0).
    pub speed: f64,
    /// Scheduler tunables.
    pub sched: SchedConfig,
    /// Upload cap of the peer in bytes/s over all its P2P links, 0 = none (one token bucket);
    /// also the upload capacity it advertises to its neighbours.
    pub upload_limit_bytes_per_s: u64,
    /// Download cap per P2P link in bytes/s, 0 = none (token bucket).
    pub download_limit_bytes_per_s: u64,
    /// How long a peer holds a request for a block of its own substream it has not yet
    /// received, in ms (default 2000).
    pub hold_ms: u64,
    /// Give up a P2P request after this long, in ms (default 3000).
    pub request_timeout_ms: u64,
    /// Heartbeat period to the tracker, in ms (default 300).
    pub heartbeat_ms: u64,
    /// Media kept behind the playhead, in ms (default 30000): blocks older than that are
    /// dropped, and requests for them answered "missing".
    pub window_ms: u64,
    /// Blocks listed in the `/live.m3u8` HLS playlist (default 6; [`crate::hls`]).
    pub hls_window_blocks: usize,
    /// Test and demo knob: flip one byte of every block this peer uploads, to exercise the
    /// receivers' SHA-256 checks (default false).
    pub corrupt_uploads: bool,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            stream: "live".to_owned(),
            tracker: "http://127.0.0.1:7001".to_owned(),
            tracker_token: Secret::default(),
            cdn: "http://127.0.0.1:7000".to_owned(),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            quic_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            speed: 1.0,
            sched: SchedConfig::default(),
            upload_limit_bytes_per_s: 0,
            download_limit_bytes_per_s: 0,
            hold_ms: 2000,
            request_timeout_ms: 3000,
            heartbeat_ms: 300,
            window_ms: 30_000,
            hls_window_blocks: crate::hls::DEFAULT_WINDOW_BLOCKS,
            corrupt_uploads: false,
        }
    }
}

/// A plain HTTP client for the loopback CDN and tracker (no TLS, no proxy).
///
/// # Errors
/// [`Error::Http`] when the client cannot be built.
pub fn http_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|source| Error::Http {
            url: String::new(),
            source,
        })
}

/// Sends `request` and turns error statuses into [`Error::Status`] with the body's message.
pub(crate) async fn send(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, Error> {
    let response = request.send().await.map_err(|source| Error::Http {
        url: url.to_owned(),
        source,
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str().map(str::to_owned)))
        .unwrap_or(text);
    Err(Error::Status {
        url: url.to_owned(),
        status: status.as_u16(),
        message,
    })
}

async fn join(
    http: &reqwest::Client,
    config: &PeerConfig,
    contact: &Contact,
) -> Result<Joined, Error> {
    let url = format!("{}/streams/{}/join", config.tracker, config.stream);
    let request = http
        .post(&url)
        .bearer_auth(config.tracker_token.expose())
        .json(&JoinRequest {
            contact: contact.clone(),
        });
    match send(&url, request).await {
        Ok(response) => response
            .json::<Joined>()
            .await
            .map_err(|source| Error::Http { url, source }),
        Err(Error::Status { status: 404, .. }) => Err(Error::UnknownStream(config.stream.clone())),
        Err(other) => Err(other),
    }
}

/// What the peer's HTTP handlers and QUIC server share with its driver.
#[derive(Debug)]
struct Shared {
    blocks: Mutex<BTreeMap<u64, Bytes>>,
    /// Blocks below this number were evicted.
    keep_from: AtomicU64,
    arrived: watch::Sender<u64>,
    /// Bytes queued or being sent to other peers now (the advertised load).
    uploading: AtomicU64,
    played: Mutex<Played>,
    /// (blocks played, finished)
    played_tx: watch::Sender<(usize, bool)>,
    /// Layout and own substreams (with the first block prefetched), for holding requests.
    expect: Mutex<(Option<Layout>, BTreeMap<u32, u64>)>,
    summary: Mutex<PeerSummary>,
    metrics: PeerMetrics,
    config: PeerConfig,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn block(&self, n: u64) -> Option<Bytes> {
        lock(&self.blocks).get(&n).cloned()
    }

    fn expects(&self, n: u64) -> bool {
        let expect = lock(&self.expect);
        let (Some(layout), mine) = &*expect else {
            return false;
        };
        mine.get(&layout.substream_of(n))
            .is_some_and(|&from| n >= from)
    }

    /// The buffer map once its version (blocks stored so far) is above `since`, waiting up
    /// to [`MAP_WAIT`].
    async fn map_after(&self, since: u64) -> MapAnswer {
        let mut arrivals = self.arrived.subscribe();
        let _ = tokio::time::timeout(MAP_WAIT, arrivals.wait_for(|v| *v > since)).await;
        let version = *self.arrived.borrow();
        let held: std::collections::BTreeSet<u64> = lock(&self.blocks).keys().copied().collect();
        let cap = match self.config.upload_limit_bytes_per_s {
            0 => u64::from(u32::MAX),
            cap => cap,
        };
        MapAnswer {
            version,
            map: BufferMap::of(&held),
            upload: Upload {
                cap_bytes_per_s: cap,
                queued_bytes: self.uploading.load(Ordering::Relaxed),
            },
        }
    }

    /// The block, waiting up to `hold_ms` when it is one this peer prefetches.
    async fn wait_for(&self, n: u64) -> Option<Bytes> {
        let mut arrivals = self.arrived.subscribe();
        if let Some(b) = self.block(n) {
            return Some(b);
        }
        if n < self.keep_from.load(Ordering::Relaxed) || !self.expects(n) {
            return None;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.config.hold_ms);
        loop {
            match tokio::time::timeout_at(deadline, arrivals.changed()).await {
                Ok(Ok(())) => {
                    if let Some(b) = self.block(n) {
                        return Some(b);
                    }
                }
                _ => return self.block(n),
            }
        }
    }
}

/// A running peer. Dropping it does not stop it; call [`PeerHandle::shutdown`] or
/// [`PeerHandle::crash`].
#[derive(Debug)]
pub struct PeerHandle {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    quic_addr: SocketAddr,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    endpoint: quinn::Endpoint,
    http: reqwest::Client,
    me: Arc<Mutex<(PeerId, Secret)>>,
}

impl PeerHandle {
    /// Binds the QUIC endpoint and HTTP listener, joins the tracker, and starts the tasks.
    ///
    /// # Errors
    /// [`Error::UnknownStream`] when the tracker does not serve `config.stream`; [`Error::Net`]
    /// when a socket cannot be bound; [`Error::Http`]/[`Error::Status`] when the tracker is
    /// unreachable or refuses (403: a wrong `tracker_token`); [`Error::Quic`] for TLS set-up;
    /// [`Error::Config`] when `tracker_token` is not set.
    pub async fn start(config: PeerConfig) -> Result<Self, Error> {
        crate::auth::require_token(
            &config.tracker_token,
            "peer.tracker_token (env P2PLIVE_PEER__TRACKER_TOKEN)",
        )?;
        let joined_at = Instant::now();
        let identity = Identity::generate()?;
        let endpoint = crate::link::endpoint(config.quic_listen, &identity)?;
        let quic_addr = endpoint.local_addr().map_err(|source| Error::Net {
            what: "reading the QUIC address".to_owned(),
            source,
        })?;
        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| Error::Net {
                what: format!("binding HTTP on {}", config.http_listen),
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| Error::Net {
            what: "reading the HTTP address".to_owned(),
            source,
        })?;
        let http = http_client()?;
        let contact = Contact {
            quic_addr: quic_addr.to_string(),
            http_addr: http_addr.to_string(),
            cert_der_hex: identity.cert_hex(),
        };
        let Joined {
            session_token,
            view,
        } = join(&http, &config, &contact).await?;
        info!(peer = view.you, substreams = ?view.substreams, %quic_addr, %http_addr, "joined");

        let mut registry = Registry::default();
        let metrics = PeerMetrics::new(&mut registry);
        let shared = Arc::new(Shared {
            blocks: Mutex::new(BTreeMap::new()),
            keep_from: AtomicU64::new(0),
            arrived: watch::channel(0).0,
            uploading: AtomicU64::new(0),
            played: Mutex::new(Played::default()),
            played_tx: watch::channel((0, false)).0,
            expect: Mutex::new((None, BTreeMap::new())),
            summary: Mutex::new(PeerSummary {
                id: view.you,
                ..PeerSummary::default()
            }),
            metrics,
            config: config.clone(),
        });
        let cancel = CancellationToken::new();
        let me = Arc::new(Mutex::new((view.you, session_token)));
        let version = Arc::new(Mutex::new((view.version, 0u64)));
        let (tx, rx) = mpsc::unbounded_channel();
        let links = Links::new(endpoint.clone(), config.download_limit_bytes_per_s);
        let mut tasks = Vec::new();

        let app = Router::new()
            .route("/live.ts", get(live_ts))
            .route("/live.m3u8", get(live_m3u8))
            .route("/hls/{segment}", get(hls_segment))
            .route("/summary", get(summary))
            .with_state(shared.clone());
        let options = svckit::ServeOptions::new("p2plive-peer", registry)
            .grace_period(Duration::from_millis(500));
        let stop = cancel.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = svckit::serve(listener, app, options, stop.cancelled_owned()).await
            {
                warn!(%error, "peer HTTP server failed");
            }
        }));
        tasks.push(tokio::spawn(serve_links(endpoint.clone(), shared.clone())));
        tasks.push(tokio::spawn(heartbeats(
            http.clone(),
            config.clone(),
            contact,
            me.clone(),
            version.clone(),
            tx.clone(),
        )));
        let driver = Driver {
            config: config.clone(),
            shared: shared.clone(),
            links,
            http: http.clone(),
            tx,
            joined_at,
            sched: None,
            view: view.clone(),
            known: BTreeMap::new(),
            pollers: std::collections::HashMap::new(),
            subscription: None,
            subscribed: None,
            generation: 0,
            version,
            hasher: Sha256::new(),
            cancel: cancel.clone(),
        };
        tasks.push(tokio::spawn(driver.run(rx, view)));
        Ok(Self {
            shared,
            http_addr,
            quic_addr,
            cancel,
            tasks,
            endpoint,
            http,
            me,
        })
    }

    /// The HTTP address serving `/live.ts`.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The QUIC address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The tracker-assigned id.
    pub fn id(&self) -> PeerId {
        lock(&self.me).0
    }

    /// The current summary.
    pub fn summary(&self) -> PeerSummary {
        lock(&self.shared.summary).clone()
    }

    /// Waits until the last block was played.
    pub async fn wait_done(&self) {
        let mut rx = self.shared.played_tx.subscribe();
        let _ = rx.wait_for(|(_, done)| *done).await;
    }

    /// Leaves the tracker and stops every task.
    pub async fn shutdown(self) {
        // Stop the tasks first: a heartbeat answered "gone" after the DELETE would make the
        // peer join again, leaving an entry behind until it timed out.
        self.cancel.cancel();
        for task in &self.tasks {
            task.abort();
        }
        let (id, token) = lock(&self.me).clone();
        let url = format!(
            "{}/streams/{}/peers/{id}",
            self.shared.config.tracker, self.shared.config.stream
        );
        let request = self.http.delete(&url).bearer_auth(token.expose());
        if let Err(error) = send(&url, request).await {
            debug!(%error, "leaving the tracker failed");
        }
        self.endpoint.close(0u32.into(), b"bye");
    }

    /// Stops every task at once without telling the tracker (like a killed process).
    pub fn crash(self) {
        self.cancel.cancel();
        self.endpoint.close(0u32.into(), b"bye");
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Answers block requests from other peers.
async fn serve_links(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    // One bucket for the whole peer: its cap holds over all its links together.
    let cap = RateCap::new(shared.config.upload_limit_bytes_per_s);
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        let cap = cap.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(answer(send, recv, shared.clone(), cap.clone()));
            }
        });
    }
}

async fn answer(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shared: Arc<Shared>,
    cap: RateCap,
) {
    let Ok(request) = recv.read_to_end(16).await else {
        return;
    };
    let block = match Request::parse(&request) {
        Some(Request::Block(n)) => n,
        Some(Request::Map(since)) => {
            let answer = shared.map_after(since).await;
            let mut out = vec![HAVE];
            if serde_json::to_writer(&mut out, &answer).is_ok()
                && send.write_all(&out).await.is_ok()
            {
                let _ = send.finish();
                let _ = send.stopped().await;
            }
            return;
        }
        None => return,
    };
    let out = match shared.wait_for(block).await {
        Some(data) => {
            let size = data.len() as u64;
            shared.uploading.fetch_add(size, Ordering::Relaxed);
            cap.acquire(size).await;
            shared.uploading.fetch_sub(size, Ordering::Relaxed);
            let mut out = Vec::with_capacity(data.len() + 1);
            out.push(HAVE);
            out.extend_from_slice(&data);
            if shared.config.corrupt_uploads && out.len() > 1 {
                let at = out.len() / 2;
                out[at] ^= 0xff;
            }
            shared.metrics.uploaded(data.len() as u64);
            out
        }
        None => vec![MISSING],
    };
    if send.write_all(&out).await.is_ok() {
        let _ = send.finish();
        // Wait until the peer read everything (or the connection ended) before dropping.
        let _ = send.stopped().await;
    }
}

async fn heartbeats(
    http: reqwest::Client,
    config: PeerConfig,
    contact: Contact,
    me: Arc<Mutex<(PeerId, Secret)>>,
    version: Arc<Mutex<(u64, u64)>>,
    tx: mpsc::UnboundedSender<Event>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(config.heartbeat_ms.max(10)));
    loop {
        tick.tick().await;
        let (id, token) = lock(&me).clone();
        let (known, cut) = *lock(&version);
        let url = format!(
            "{}/streams/{}/peers/{id}/heartbeat",
            config.tracker, config.stream
        );
        let request = http
            .post(&url)
            .bearer_auth(token.expose())
            .json(&Heartbeat {
                cut,
                version: known,
            });
        let result = match send(&url, request).await {
            Ok(response) => response
                .json::<View>()
                .await
                .map(|view| (view, token))
                .map_err(|source| Error::Http { url, source }),
            // 410: the tracker expired this peer or restarted; 401/403: it no longer
            // accepts this session. Either way a new session is needed.
            Err(Error::Status {
                status: status @ (401 | 403 | 410),
                ..
            }) => {
                warn!(
                    peer = id,
                    status, "tracker no longer knows this session; joining again"
                );
                join(&http, &config, &contact)
                    .await
                    .map(|joined| (joined.view, joined.session_token))
            }
            Err(other) => Err(other),
        };
        match result {
            Ok((view, token)) => {
                *lock(&me) = (view.you, token);
                if tx.send(Event::View(view)).is_err() {
                    return;
                }
            }
            Err(error) => warn!(%error, "heartbeat failed"),
        }
    }
}
