//! The driver of a peer: the task that owns the [`Scheduler`], turns its actions into
//! fetches (QUIC from peers, HTTP from the CDN), keeps the CDN prefetch subscription in step
//! with the tracker's view, keeps a buffer-map long poll open to every neighbour (feeding the
//! scheduler's buffer maps and upload adverts), plays blocks and evicts those behind the
//! window.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{PeerConfig, Shared, lock, send};
use crate::cdn::{Frame, FrameDecoder};
use crate::error::Error;
use crate::link::{FetchError, Links, MAP_WAIT, MapAnswer};
use crate::sched::{Action, PeerId, Scheduler, Source, Verdict};
use crate::substream::Layout;
use crate::tracker::{PeerEntry, View};

#[derive(Debug)]
pub(super) enum Event {
    /// A frame of the subscription with this generation.
    Frame(u64, Frame),
    /// The subscription with this generation ended.
    SubscriptionClosed(u64),
    Fetched {
        block: u64,
        from: Source,
        result: Result<Bytes, FetchError>,
    },
    View(View),
    /// A neighbour's buffer map and upload state.
    Map {
        peer: PeerId,
        answer: MapAnswer,
    },
}

/// Keeps a buffer-map long poll open to `peer` until aborted, sending each answer.
async fn poll_map(links: Links, peer: PeerId, tx: mpsc::UnboundedSender<Event>) {
    let mut since = 0;
    loop {
        let wait = MAP_WAIT + Duration::from_secs(2);
        match tokio::time::timeout(wait, links.buffer_map(peer, since)).await {
            Ok(Ok(answer)) => {
                since = answer.version;
                if tx.send(Event::Map { peer, answer }).is_err() {
                    return;
                }
            }
            Ok(Err(error)) => {
                debug!(peer, %error, "buffer-map poll failed");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(_) => {}
        }
    }
}

pub(super) async fn subscribe(
    http: reqwest::Client,
    url: String,
    generation: u64,
    tx: mpsc::UnboundedSender<Event>,
) {
    let result: Result<(), Error> = async {
        let response = send(&url, http.get(&url)).await?;
        let mut body = response.bytes_stream();
        let mut decoder = FrameDecoder::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| Error::Http {
                url: url.clone(),
                source,
            })?;
            for frame in decoder.push(&chunk)? {
                if tx.send(Event::Frame(generation, frame)).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = result {
        warn!(%error, "substream subscription failed");
    }
    let _ = tx.send(Event::SubscriptionClosed(generation));
}

pub(super) struct Driver {
    pub(super) config: PeerConfig,
    pub(super) shared: Arc<Shared>,
    pub(super) links: Links,
    pub(super) http: reqwest::Client,
    pub(super) tx: mpsc::UnboundedSender<Event>,
    pub(super) joined_at: Instant,
    pub(super) sched: Option<Scheduler>,
    pub(super) view: View,
    /// The neighbours the tracker gave (the partial view).
    pub(super) known: BTreeMap<PeerId, PeerEntry>,
    /// The buffer-map long poll to each neighbour.
    pub(super) pollers: HashMap<PeerId, tokio::task::JoinHandle<()>>,
    pub(super) subscription: Option<tokio::task::JoinHandle<()>>,
    /// The layout and prefetch set of the running subscription.
    pub(super) subscribed: Option<(Layout, BTreeSet<u32>)>,
    /// Generation of the running subscription; events of older ones are dropped.
    pub(super) generation: u64,
    pub(super) version: Arc<Mutex<(u64, u64)>>,
    pub(super) hasher: Sha256,
    pub(super) cancel: CancellationToken,
}

impl Driver {
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>, view: View) {
        view.apply_to(&mut self.known);
        self.apply_peers();
        self.resubscribe(None);
        loop {
            let now = Instant::now();
            let wake = self
                .sched
                .as_ref()
                .and_then(Scheduler::next_deadline)
                .map_or(now + Duration::from_millis(50), |d| {
                    d.min(now + Duration::from_millis(50))
                });
            tokio::select! {
                () = self.cancel.cancelled() => break,
                event = rx.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => break,
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            }
            while let Ok(event) = rx.try_recv() {
                self.handle(event).await;
            }
            self.step();
        }
        if let Some(task) = self.subscription.take() {
            task.abort();
        }
        for (_, task) in self.pollers.drain() {
            task.abort();
        }
    }

    fn substreams_url(&self, from: Option<u64>) -> String {
        let subs: Vec<String> = self.view.prefetch.iter().map(u32::to_string).collect();
        let mut url = format!(
            "{}/streams/{}/subscribe?peer={}&layout={}&substreams={}",
            self.config.cdn,
            self.config.stream,
            self.view.you,
            self.view.layout.to_query(),
            subs.join(",")
        );
        match from {
            Some(from) => url.push_str(&format!("&from={from}")),
            None => url.push_str(&format!("&back={}", self.config.sched.playout_delay_blocks)),
        }
        url
    }

    /// (Re)starts the prefetch subscription from block `from` (None: the first one, from the
    /// start block the CDN picks behind the live edge).
    fn resubscribe(&mut self, from: Option<u64>) {
        if let Some(task) = self.subscription.take() {
            task.abort();
        }
        self.generation += 1;
        self.subscribed = Some((self.view.layout.clone(), self.view.prefetch.clone()));
        let url = self.substreams_url(from);
        debug!(%url, "subscribing");
        self.subscription = Some(tokio::spawn(subscribe(
            self.http.clone(),
            url,
            self.generation,
            self.tx.clone(),
        )));
        if let Some(from) = from {
            self.set_mine(from);
        }
    }

    fn set_mine(&mut self, from: u64) {
        let mine: BTreeMap<u32, u64> = self.view.prefetch.iter().map(|b| (*b, from)).collect();
        *lock(&self.shared.expect) = (Some(self.view.layout.clone()), mine.clone());
        if let Some(sched) = self.sched.as_mut() {
            sched.set_assignment(self.view.layout.clone(), mine);
        }
        lock(&self.shared.summary).substreams = self.view.substreams.iter().copied().collect();
    }

    fn neighbour_prefetch(&self) -> BTreeMap<PeerId, BTreeSet<u32>> {
        self.known
            .values()
            .filter(|p| p.id != self.view.you)
            .map(|p| (p.id, p.prefetch.clone()))
            .collect()
    }

    /// Hands the neighbour set to the links, the scheduler and the buffer-map polls.
    fn apply_peers(&mut self) {
        let me = self.view.you;
        let others: Vec<(PeerId, SocketAddr, String)> = self
            .known
            .values()
            .filter(|p| p.id != me)
            .filter_map(|p| {
                let addr = p.contact.quic_addr.parse().ok()?;
                Some((p.id, addr, p.contact.cert_der_hex.clone()))
            })
            .collect();
        self.links.set_peers(&others);
        let prefetch = self.neighbour_prefetch();
        self.pollers.retain(|id, task| {
            let keep = prefetch.contains_key(id);
            if !keep {
                task.abort();
            }
            keep
        });
        for (id, _, _) in &others {
            self.pollers.entry(*id).or_insert_with(|| {
                tokio::spawn(poll_map(self.links.clone(), *id, self.tx.clone()))
            });
        }
        if let Some(sched) = self.sched.as_mut() {
            sched.set_peers(prefetch);
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Frame(generation, _) | Event::SubscriptionClosed(generation)
                if generation != self.generation => {}
            Event::Frame(_, frame) => self.on_frame(frame),
            Event::SubscriptionClosed(_) => {
                let finished = self.sched.as_ref().is_some_and(Scheduler::finished);
                let ended = self.shared.played_tx.borrow().1;
                if !finished && !ended && !self.cancel.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let from = self.sched.as_ref().map(Scheduler::cut);
                    self.resubscribe(from);
                }
            }
            Event::Fetched {
                block,
                from,
                result,
            } => self.on_fetched(block, from, result).await,
            Event::View(view) => self.on_view(view),
            Event::Map { peer, answer } => {
                if let Some(s) = self.sched.as_mut() {
                    s.on_buffer_map(peer, &answer.map);
                    s.on_upload(peer, answer.upload);
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Hello { cut, from } => {
                if self.sched.is_none() {
                    info!(cut, start = from, "subscribed; playing from block {from}");
                    let mut sched = Scheduler::new(
                        self.config.sched,
                        self.joined_at,
                        from,
                        self.config.speed,
                        self.view.layout.clone(),
                    );
                    sched.set_peers(self.neighbour_prefetch());
                    self.sched = Some(sched);
                    lock(&self.shared.summary).start_block = from;
                    self.set_mine(from);
                }
            }
            Frame::Info(info) => {
                if let Some(s) = self.sched.as_mut() {
                    s.on_info(info);
                }
            }
            Frame::Block(block) => {
                let n = block.info.number;
                self.shared
                    .metrics
                    .received(Source::Prefetch, block.data.len() as u64);
                if let Some(s) = self.sched.as_mut() {
                    s.on_info(block.info);
                    if s.on_block(n, Source::Prefetch, &block.data) == Verdict::Accepted {
                        self.store(n, block.data);
                    }
                }
            }
            Frame::End { total } => {
                if let Some(s) = self.sched.as_mut() {
                    s.on_end(total);
                }
            }
        }
        if let Some(s) = self.sched.as_ref() {
            lock(&self.version).1 = s.cut();
        }
    }

    fn store(&self, n: u64, data: Bytes) {
        let held = {
            let mut blocks = lock(&self.shared.blocks);
            blocks.insert(n, data);
            blocks.len() as u64
        };
        {
            let mut summary = lock(&self.shared.summary);
            summary.held_blocks = held;
            summary.max_held_blocks = summary.max_held_blocks.max(held);
        }
        self.shared.arrived.send_modify(|v| *v += 1);
    }

    /// Forgets the blocks behind the window (module docs).
    fn evict(&mut self) {
        let Some(sched) = self.sched.as_mut() else {
            return;
        };
        let keep_from = sched.window_start(self.config.window_ms);
        if keep_from <= self.shared.keep_from.load(Ordering::Relaxed) {
            return;
        }
        sched.forget_before(keep_from);
        self.shared.keep_from.store(keep_from, Ordering::Relaxed);
        let held = {
            let mut blocks = lock(&self.shared.blocks);
            *blocks = blocks.split_off(&keep_from);
            blocks.len() as u64
        };
        lock(&self.shared.played).evict_before(keep_from);
        lock(&self.shared.summary).held_blocks = held;
        debug!(keep_from, held, "evicted blocks behind the window");
    }

    async fn on_fetched(&mut self, block: u64, from: Source, result: Result<Bytes, FetchError>) {
        let Some(sched) = self.sched.as_mut() else {
            return;
        };
        match result {
            Ok(data) => {
                self.shared.metrics.received(from, data.len() as u64);
                match sched.on_block(block, from, &data) {
                    Verdict::Accepted => self.store(block, data),
                    Verdict::Corrupt => {
                        warn!(
                            block,
                            ?from,
                            "block does not match the origin's SHA-256; dropped, fetching it elsewhere"
                        );
                    }
                    Verdict::Duplicate | Verdict::Unknown => {}
                }
            }
            Err(FetchError::Missing) => sched.on_fetch_failed(block, from),
            Err(error) => {
                debug!(block, ?from, %error, "fetch failed");
                sched.on_fetch_failed(block, from);
                if let Source::Peer(peer) = from {
                    if !matches!(error, FetchError::UnknownPeer) {
                        warn!(peer, %error, "peer unreachable");
                    }
                    sched.peer_down(peer, Instant::now());
                    self.links.reset(peer).await;
                }
            }
        }
    }

    /// A new view. The subscription is reconciled with it every time: whenever the layout or
    /// the prefetch set differs from what the running subscription carries (also before the
    /// subscription's first frame), it is replaced, so the peer never stays subscribed at the
    /// CDN to a substream it no longer prefetches.
    fn on_view(&mut self, view: View) {
        let reassigned = view.prefetch != self.view.prefetch
            || view.substreams != self.view.substreams
            || view.layout != self.view.layout
            || view.you != self.view.you;
        lock(&self.version).0 = view.version;
        view.apply_to(&mut self.known);
        self.view = View {
            peers: None,
            changed: Vec::new(),
            removed: Vec::new(),
            ..view
        };
        lock(&self.shared.summary).id = self.view.you;
        self.apply_peers();
        let stale = self.subscribed.as_ref().is_none_or(|(layout, prefetch)| {
            *layout != self.view.layout || *prefetch != self.view.prefetch
        });
        if stale || (reassigned && self.sched.is_some()) {
            let from = self.sched.as_ref().map(Scheduler::cut);
            info!(substreams = ?self.view.substreams, prefetch = ?self.view.prefetch, from, "assignment changed; resubscribing");
            self.resubscribe(from);
        } else if reassigned {
            lock(&self.shared.summary).substreams = self.view.substreams.iter().copied().collect();
        }
    }

    fn step(&mut self) {
        let Some(sched) = self.sched.as_mut() else {
            return;
        };
        let actions = sched.poll(Instant::now());
        let stats = sched.stats();
        for action in actions {
            match action {
                Action::Fetch { block, from } => self.fetch(block, from),
                Action::Play { block } => {
                    let data = self.shared.block(block).unwrap_or_default();
                    self.hasher.update(&data);
                    let duration_ms = self
                        .sched
                        .as_ref()
                        .and_then(|s| s.info(block))
                        .map_or(0, |i| i.duration_ms);
                    let played = {
                        let mut played = lock(&self.shared.played);
                        played.blocks.push_back(crate::hls::Segment {
                            number: block,
                            duration_ms,
                        });
                        played.len()
                    };
                    lock(&self.shared.summary).output_bytes += data.len() as u64;
                    self.shared.played_tx.send_modify(|v| v.0 = played);
                }
                Action::Finished => {
                    let digest = hex::encode(self.hasher.clone().finalize());
                    info!(output_sha256 = %digest, stalls = stats.stalls, "stream finished");
                    {
                        let mut summary = lock(&self.shared.summary);
                        summary.done = true;
                        summary.output_sha256 = Some(digest);
                    }
                    self.shared.played_tx.send_modify(|v| v.1 = true);
                }
            }
        }
        self.evict();
        self.shared.metrics.playback(&stats);
        let mut summary = lock(&self.shared.summary);
        summary.playback = stats;
        summary.traffic = self.shared.metrics.traffic();
    }

    fn fetch(&self, block: u64, from: Source) {
        let tx = self.tx.clone();
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        match from {
            Source::Peer(peer) => {
                let links = self.links.clone();
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(timeout, links.fetch(peer, block)).await
                    {
                        Ok(result) => result,
                        Err(_) => Err(FetchError::Link("request timed out".to_owned())),
                    };
                    let _ = tx.send(Event::Fetched {
                        block,
                        from,
                        result,
                    });
                });
            }
            Source::Cdn | Source::Prefetch => {
                debug!(
                    block,
                    peer = self.view.you,
                    "urgent zone: fetching the block from the CDN"
                );
                let url = format!(
                    "{}/streams/{}/blocks/{block}?peer={}",
                    self.config.cdn, self.config.stream, self.view.you
                );
                let http = self.http.clone();
                tokio::spawn(async move {
                    let result = async {
                        let response = send(&url, http.get(&url))
                            .await
                            .map_err(|e| FetchError::Link(e.to_string()))?;
                        response
                            .bytes()
                            .await
                            .map_err(|e| FetchError::Link(e.to_string()))
                    }
                    .await;
                    let _ = tx.send(Event::Fetched {
                        block,
                        from: Source::Cdn,
                        result,
                    });
                });
            }
        }
    }
}
