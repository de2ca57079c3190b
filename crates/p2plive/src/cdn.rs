//! The CDN edge (seed 54-55): an HTTP server (axum) holding the blocks the origin cut.
//!
//! Routes (`{id}` is the stream id):
//!
//! | method and path | what |
//! | --- | --- |
//! | `PUT /streams/{id}/blocks/{n}` | the origin publishes block `n` (headers `x-duration-ms`, `x-sha256`); blocks must come in order; a repeated PUT of a block already held with the same SHA-256 is a 200 (the origin retries when an answer was lost) |
//! | `POST /streams/{id}/end` | the origin ends the stream (JSON [`EndOfStream`]; a repeat is a 204) |
//! | `GET /streams/{id}/blocks/{n}?peer=P` | block `n`, immutable and cacheable (`Cache-Control: public, max-age=31536000, immutable`, `ETag` = SHA-256), so nginx or any HTTP CDN can sit in front; waits up to 5 s for a block not cut yet |
//! | `GET /streams/{id}/manifest?from=N` | the live edge and the infos of blocks `N..` (JSON [`Manifest`]) |
//! | `GET /streams/{id}/subscribe?peer=P&layout=L&substreams=1,3&from=N` (or `&back=K`: from `K` blocks behind the live edge) | substream prefetch: a body of [`Frame`]s until the stream ends: the info of every block from `N` on as it is cut, with the bytes of those in the listed substreams under layout `L` |
//! | `GET /streams/{id}/stats` | bytes served per peer (JSON [`CdnStats`]) |
//! | `GET /streams/{id}/live.m3u8`, `GET /streams/{id}/hls/{n}.ts` | HLS: a live playlist of the newest blocks held, and its segments ([`crate::hls`]); bytes counted under the label [`HLS_LABEL`] |
//! | `GET /live.m3u8`, `GET /hls/{n}.ts` | the same for stream [`ROOT_STREAM`] |
//!
//! Publishing (`PUT` and `POST .../end`) requires the publish token as
//! `Authorization: Bearer TOKEN` (401 without, 403 when wrong; [`crate::auth`]).
//!
//! Memory is bounded: each stream keeps a sliding window of the newest blocks, at most
//! [`Cdn::window`] of media (default [`DEFAULT_WINDOW_MS`]); an evicted block is answered
//! `410 Gone` naming the blocks still held, and a subscription that falls behind the window
//! continues from its oldest block.
//!
//! Bytes served (block payloads, prefetch and single-block fetches) are counted per peer and
//! exported as the `cdn_bytes_served` Prometheus counter.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use svckit::redact::Secret;
use tokio::sync::watch;

use crate::block::{Block, BlockInfo, Digest256, hex_digest};
use crate::error::Error;
use crate::substream::Layout;

mod frame;
mod hls;

pub use frame::{Frame, FrameDecoder};
pub use hls::{HLS_LABEL, ROOT_STREAM};
pub(crate) use hls::{playlist_response, segment_response};

/// Media the CDN keeps per stream by default, in ms: 30 s.
pub const DEFAULT_WINDOW_MS: u64 = 30_000;

/// Most distinct peer labels counted per stream (in `stats` and `cdn_bytes_served`); bytes
/// for further peers are counted under [`OTHER_PEERS`], so hostile `?peer=` values cannot grow
/// the map without bound.
pub const MAX_PEER_LABELS: usize = 10_000;

/// The label bytes for peers beyond [`MAX_PEER_LABELS`] are counted under.
pub const OTHER_PEERS: &str = "other";

/// Most streams a CDN edge holds; requests naming a further unknown stream id are 404s, so
/// hostile ids cannot grow its state without bound.
pub const MAX_STREAMS: usize = 64;

/// The state of `stream`, created when unknown and fewer than [`MAX_STREAMS`] exist.
fn state_of<'a>(
    streams: &'a mut HashMap<String, StreamState>,
    stream: &str,
) -> Result<&'a mut StreamState, AppError> {
    if !streams.contains_key(stream) && streams.len() >= MAX_STREAMS {
        return Err(AppError(
            StatusCode::NOT_FOUND,
            format!("unknown stream `{stream}` (this edge holds {MAX_STREAMS} streams)"),
        ));
    }
    Ok(streams
        .entry(stream.to_owned())
        .or_insert_with(StreamState::new))
}

/// How long `GET /blocks/{n}` waits for a block that is not cut yet.
const BLOCK_WAIT: Duration = Duration::from_secs(5);

/// The body of `POST /streams/{id}/end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndOfStream {
    /// Number of blocks cut.
    pub blocks: u64,
    /// Bytes cut.
    pub source_bytes: u64,
    /// SHA-256 over all bytes cut (the stream every peer must reproduce).
    #[serde(with = "hex_digest")]
    pub source_sha256: Digest256,
}

/// The answer of `GET /streams/{id}/manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Stream id.
    pub stream: String,
    /// Blocks cut so far (the live edge is `cut - 1`).
    pub cut: u64,
    /// The oldest block still held (older ones were evicted from the window).
    pub first: u64,
    /// Set once the origin ended the stream.
    pub end: Option<EndOfStream>,
    /// Infos of the blocks from `from` on.
    pub blocks: Vec<BlockInfo>,
}

/// Bytes one peer got from the CDN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerBytes {
    /// Block bytes sent on the prefetch subscription.
    pub prefetch: u64,
    /// Block bytes sent on single-block (urgent) fetches.
    pub fetch: u64,
}

/// The answer of `GET /streams/{id}/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdnStats {
    /// Per peer id (`"-"` for requests naming no peer).
    pub peers: BTreeMap<String, PeerBytes>,
    /// Sum over all peers.
    pub total: u64,
    /// Blocks held now.
    pub held_blocks: u64,
    /// Most blocks held at once so far.
    pub max_held_blocks: u64,
}

#[derive(Debug)]
struct StreamState {
    /// The window: blocks `first..first + blocks.len()`.
    blocks: VecDeque<Block>,
    /// Number of `blocks[0]`.
    first: u64,
    /// Media duration of the blocks held, ms.
    held_ms: u64,
    max_held: usize,
    end: Option<EndOfStream>,
    /// Bumped on every new block and at the end.
    changed: watch::Sender<u64>,
    served: BTreeMap<String, PeerBytes>,
}

/// Where a block number falls relative to the window.
enum Lookup<'a> {
    Held(&'a Block),
    Evicted,
    NotCut,
}

impl StreamState {
    /// Blocks cut so far.
    fn cut(&self) -> u64 {
        self.first + self.blocks.len() as u64
    }

    fn lookup(&self, n: u64) -> Lookup<'_> {
        if n < self.first {
            return Lookup::Evicted;
        }
        usize::try_from(n - self.first)
            .ok()
            .and_then(|i| self.blocks.get(i))
            .map_or(Lookup::NotCut, Lookup::Held)
    }

    /// Appends the next block and evicts the oldest while more than `window_ms` of media is
    /// held (the newest block always stays).
    fn push(&mut self, block: Block, window_ms: u64) {
        self.held_ms += u64::from(block.info.duration_ms);
        self.blocks.push_back(block);
        while self.blocks.len() > 1 && self.held_ms > window_ms {
            if let Some(old) = self.blocks.pop_front() {
                self.held_ms -= u64::from(old.info.duration_ms);
                self.first += 1;
            }
        }
        self.max_held = self.max_held.max(self.blocks.len());
    }

    fn evicted(&self, n: u64) -> AppError {
        AppError(
            StatusCode::GONE,
            format!(
                "block {n} was evicted: the CDN holds blocks {}..{} (its window)",
                self.first,
                self.cut()
            ),
        )
    }

    fn new() -> Self {
        Self {
            blocks: VecDeque::new(),
            first: 0,
            held_ms: 0,
            max_held: 0,
            end: None,
            changed: watch::channel(0).0,
            served: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServedLabels {
    stream: String,
    peer: String,
    kind: &'static str,
}

/// The CDN's state, shared by its handlers.
#[derive(Debug, Clone)]
pub struct Cdn {
    streams: Arc<Mutex<HashMap<String, StreamState>>>,
    served: Family<ServedLabels, Counter>,
    publish_token: Secret,
    window_ms: u64,
    hls_window: usize,
}

type Shared = Arc<Mutex<HashMap<String, StreamState>>>;

fn lock(streams: &Shared) -> std::sync::MutexGuard<'_, HashMap<String, StreamState>> {
    streams.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An HTTP error answer of the CDN and tracker: status plus `{"error": message}`.
#[derive(Debug)]
pub(crate) struct AppError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

#[derive(Debug, Deserialize)]
struct PeerQuery {
    peer: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FromQuery {
    from: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct SubscribeQuery {
    peer: Option<String>,
    layout: String,
    substreams: String,
    from: Option<u64>,
    back: Option<u64>,
}

impl Cdn {
    /// An empty CDN accepting blocks from whoever presents `publish_token`; registers the
    /// `cdn_bytes_served` counter family in `registry`.
    ///
    /// # Errors
    /// [`Error::Config`] when the token is shorter than 16 characters.
    pub fn new(registry: &mut Registry, publish_token: Secret) -> Result<Self, Error> {
        crate::auth::require_token(
            &publish_token,
            "cdn.publish_token (env P2PLIVE_CDN__PUBLISH_TOKEN)",
        )?;
        let served = Family::<ServedLabels, Counter>::default();
        registry.register(
            "cdn_bytes_served",
            "Block bytes served by the CDN, per stream, peer and kind (prefetch or fetch)",
            served.clone(),
        );
        Ok(Self {
            streams: Arc::new(Mutex::new(HashMap::new())),
            served,
            publish_token,
            window_ms: DEFAULT_WINDOW_MS,
            hls_window: crate::hls::DEFAULT_WINDOW_BLOCKS,
        })
    }

    /// Keeps at most `window_ms` of media per stream (at least the newest block).
    #[must_use]
    pub fn window(mut self, window_ms: u64) -> Self {
        self.window_ms = window_ms;
        self
    }

    /// Lists at most `blocks` blocks in each HLS playlist (default
    /// [`crate::hls::DEFAULT_WINDOW_BLOCKS`]; at least 1).
    #[must_use]
    pub fn hls_window(mut self, blocks: usize) -> Self {
        self.hls_window = blocks.max(1);
        self
    }

    /// The routes listed in the module docs.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/streams/{id}/blocks/{n}", put(put_block).get(get_block))
            .route("/streams/{id}/end", post(end_stream))
            .route("/streams/{id}/manifest", get(manifest))
            .route("/streams/{id}/subscribe", get(subscribe))
            .route("/streams/{id}/stats", get(stats))
            .route("/streams/{id}/live.m3u8", get(hls::stream_playlist))
            .route("/streams/{id}/hls/{segment}", get(hls::stream_segment))
            .route("/live.m3u8", get(hls::root_playlist))
            .route("/hls/{segment}", get(hls::root_segment))
            .with_state(self.clone())
    }

    /// Bytes served per peer for `stream`.
    pub fn stats(&self, stream: &str) -> CdnStats {
        let streams = lock(&self.streams);
        let mut out = CdnStats::default();
        if let Some(state) = streams.get(stream) {
            out.peers.clone_from(&state.served);
            out.total = state.served.values().map(|p| p.prefetch + p.fetch).sum();
            out.held_blocks = state.blocks.len() as u64;
            out.max_held_blocks = state.max_held as u64;
        }
        out
    }

    fn count(&self, stream: &str, peer: &str, prefetch: bool, bytes: u64) {
        let mut streams = lock(&self.streams);
        let mut peer = peer;
        if let Some(state) = streams.get_mut(stream) {
            if !state.served.contains_key(peer) && state.served.len() >= MAX_PEER_LABELS {
                peer = OTHER_PEERS;
            }
            let entry = state.served.entry(peer.to_owned()).or_default();
            if prefetch {
                entry.prefetch += bytes;
            } else {
                entry.fetch += bytes;
            }
        }
        self.served
            .get_or_create(&ServedLabels {
                stream: stream.to_owned(),
                peer: peer.to_owned(),
                kind: if prefetch { "prefetch" } else { "fetch" },
            })
            .inc_by(bytes);
    }

    /// A receiver notified on every change of `stream` (created empty when unknown: an edge
    /// may be asked before the origin starts).
    ///
    /// # Errors
    /// 404 when the stream is unknown and [`MAX_STREAMS`] streams exist already.
    fn watch(&self, stream: &str) -> Result<watch::Receiver<u64>, AppError> {
        let mut streams = lock(&self.streams);
        Ok(state_of(&mut streams, stream)?.changed.subscribe())
    }
}

async fn put_block(
    State(cdn): State<Cdn>,
    Path((id, n)): Path<(String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, AppError> {
    crate::auth::check_bearer(&headers, &cdn.publish_token)?;
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let duration_ms = header_str("x-duration-ms")
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| {
            AppError(
                StatusCode::BAD_REQUEST,
                "missing or bad x-duration-ms".into(),
            )
        })?;
    let mut sha = [0u8; 32];
    header_str("x-sha256")
        .and_then(|v| hex::decode_to_slice(v, &mut sha).ok())
        .ok_or_else(|| AppError(StatusCode::BAD_REQUEST, "missing or bad x-sha256".into()))?;
    let info = BlockInfo::of(n, duration_ms, &body);
    if info.sha256 != sha {
        return Err(AppError(
            StatusCode::BAD_REQUEST,
            format!("block {n}: body does not match x-sha256"),
        ));
    }
    let mut streams = lock(&cdn.streams);
    let state = state_of(&mut streams, &id)?;
    let expected = state.cut();
    match state.lookup(n) {
        Lookup::Held(held) if held.info == info => return Ok(StatusCode::OK),
        // Accepted before and evicted since: a late retry.
        Lookup::Evicted => return Ok(StatusCode::OK),
        _ => {}
    }
    if state.end.is_some() || n != expected {
        return Err(AppError(
            StatusCode::CONFLICT,
            format!(
                "expected block {expected}, got {n} (blocks must come in order, before the end)"
            ),
        ));
    }
    state.push(Block { info, data: body }, cdn.window_ms);
    state.changed.send_modify(|v| *v += 1);
    Ok(StatusCode::CREATED)
}

async fn end_stream(
    State(cdn): State<Cdn>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<axum::Json<EndOfStream>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, AppError> {
    crate::auth::check_bearer(&headers, &cdn.publish_token)?;
    let axum::Json(end) =
        body.map_err(|rejection| AppError(StatusCode::BAD_REQUEST, rejection.body_text()))?;
    let mut streams = lock(&cdn.streams);
    let state = state_of(&mut streams, &id)?;
    if state.end == Some(end) {
        return Ok(StatusCode::NO_CONTENT);
    }
    if end.blocks != state.cut() {
        return Err(AppError(
            StatusCode::CONFLICT,
            format!(
                "end says {} blocks, {} were published",
                end.blocks,
                state.cut()
            ),
        ));
    }
    state.end = Some(end);
    state.changed.send_modify(|v| *v += 1);
    Ok(StatusCode::NO_CONTENT)
}

async fn get_block(
    State(cdn): State<Cdn>,
    Path((id, n)): Path<(String, u64)>,
    Query(q): Query<PeerQuery>,
) -> Result<Response, AppError> {
    let mut changes = cdn.watch(&id)?;
    let deadline = tokio::time::Instant::now() + BLOCK_WAIT;
    let block = loop {
        {
            let streams = lock(&cdn.streams);
            if let Some(state) = streams.get(&id) {
                match state.lookup(n) {
                    Lookup::Held(block) => break block.clone(),
                    Lookup::Evicted => return Err(state.evicted(n)),
                    Lookup::NotCut => {}
                }
                if state.end.is_some() {
                    return Err(AppError(
                        StatusCode::NOT_FOUND,
                        format!("block {n} is past the end"),
                    ));
                }
            }
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => {
                return Err(AppError(
                    StatusCode::NOT_FOUND,
                    format!("block {n} not cut yet"),
                ));
            }
        }
    };
    let peer = q.peer.unwrap_or_else(|| "-".to_owned());
    cdn.count(&id, &peer, false, u64::from(block.info.size));
    let etag = format!("\"{}\"", hex::encode(block.info.sha256));
    let mut response = block.data.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&block.info.duration_ms.to_string()) {
        h.insert("x-duration-ms", v);
    }
    Ok(response)
}

async fn manifest(
    State(cdn): State<Cdn>,
    Path(id): Path<String>,
    Query(q): Query<FromQuery>,
) -> Result<axum::Json<Manifest>, AppError> {
    let streams = lock(&cdn.streams);
    let state = streams
        .get(&id)
        .ok_or_else(|| AppError(StatusCode::NOT_FOUND, format!("unknown stream `{id}`")))?;
    let skip = q.from.unwrap_or(0).saturating_sub(state.first);
    Ok(axum::Json(Manifest {
        stream: id.clone(),
        cut: state.cut(),
        first: state.first,
        end: state.end,
        blocks: state
            .blocks
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .map(|b| b.info)
            .collect(),
    }))
}

async fn stats(State(cdn): State<Cdn>, Path(id): Path<String>) -> axum::Json<CdnStats> {
    axum::Json(cdn.stats(&id))
}

async fn subscribe(
    State(cdn): State<Cdn>,
    Path(id): Path<String>,
    Query(q): Query<SubscribeQuery>,
) -> Result<Response, AppError> {
    let layout = Layout::from_query(&q.layout)
        .map_err(|e| AppError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let substreams: BTreeSet<u32> = q
        .substreams
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| {
            AppError(
                StatusCode::BAD_REQUEST,
                format!("bad substreams `{}`", q.substreams),
            )
        })?;
    let peer = q.peer.unwrap_or_else(|| "-".to_owned());
    let mut changes = cdn.watch(&id)?;
    let (cut, first) = lock(&cdn.streams)
        .get(&id)
        .map_or((0, 0), |s| (s.cut(), s.first));
    let mut next = q
        .from
        .unwrap_or_else(|| cut.saturating_sub(q.back.unwrap_or(0)))
        .max(first);
    let from = next;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        if tx
            .send(Ok(Frame::Hello { cut, from }.encode()))
            .await
            .is_err()
        {
            return;
        }
        loop {
            // Collect what is new under the lock, send outside it.
            let (batch, end) = {
                let streams = lock(&cdn.streams);
                let Some(state) = streams.get(&id) else {
                    return;
                };
                // A subscriber behind the window continues from its oldest block.
                next = next.max(state.first);
                let skip = usize::try_from(next - state.first).unwrap_or(usize::MAX);
                let batch: Vec<Block> = state.blocks.iter().skip(skip).cloned().collect();
                (batch, state.end)
            };
            for block in batch {
                next = block.info.number + 1;
                let size = u64::from(block.info.size);
                let (frame, payload) =
                    if substreams.contains(&layout.substream_of(block.info.number)) {
                        (Frame::Block(block), size)
                    } else {
                        (Frame::Info(block.info), 0)
                    };
                // Count only what was handed to a live connection.
                if tx.send(Ok(frame.encode())).await.is_err() {
                    return;
                }
                if payload > 0 {
                    cdn.count(&id, &peer, true, payload);
                }
            }
            if let Some(end) = end
                && next >= end.blocks
            {
                let _ = tx.send(Ok(Frame::End { total: end.blocks }.encode())).await;
                return;
            }
            // Wait for news; stop when the subscriber went away.
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// An mpsc receiver as a `Stream`.
pub(crate) fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[cfg(test)]
mod tests;
