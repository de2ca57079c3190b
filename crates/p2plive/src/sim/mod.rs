//! `p2plive sim`: a deterministic discrete-event swarm simulator (issue 16 item 4, step 1).
//!
//! It drives the real sans-I/O cores, the tracker's [`Swarm`] (joins, heartbeats, leaves,
//! views) and one [`Scheduler`] per simulated peer, on a virtual clock: a fixed [`Instant`]
//! base plus a virtual offset in µs. Nothing sleeps and nothing touches the network.
//!
//! Blocks are virtual: the sim accounts `bitrate × block_ms` bytes per block, while the
//! schedulers check a tiny per-block token (the block number's 8 bytes) so SHA-256 stays
//! cheap. Peers join spread over `join_spread_ms`, heartbeat every second (taking the view
//! the tracker answers), and `leave_share` of them leave at half time (what their upload
//! queues still held is lost: the receivers see failed fetches). Churn by replacement
//! (`replace_per_min`, issue 16: "10 % of peers replaced per minute") has a random present
//! peer leave and a new peer join at even intervals over the stream. The origin cuts one
//! block every `block_ms` for `seconds`, then ends the stream; the run goes on until every
//! peer still present has played to the end (or a 60 s drain cap).
//!
//! Policies ([`Policy`]): `least-covered` is today's tracker assignment (its CDN
//! prefetchers per substream grow with the holders) with the mesh; `random` is
//! the seed's random prefetch (every peer prefetches one random substream, seed 44);
//! `no-prefetch` leaves the CDN only the urgent fetches; `cdn-only` takes every block from
//! the CDN.
//!
//! Cost (10,000 peers for 600 s of stream): a peer's "haves" reach its neighbours in batches
//! every `have_batch_ms` (one tick event for the swarm, not one event per block and
//! neighbour), and a peer's scheduler is polled only when something it acts on changed: a
//! have naming a block it wants ([`Scheduler::wants`]), an arrival, a failure, a cut, its
//! player deadline, or a heartbeat answer that changed its view.
//!
//! Upload capacities (capped at `upload_limit_x`) and the link model are in [`net`]. The
//! report is [`Report`], one per policy, printed by [`table`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use serde::Serialize;
use svckit::redact::Secret;

use crate::block::BlockInfo;
use crate::error::Error;
use crate::sched::{Action, PeerId, SchedConfig, Scheduler, Source, Verdict};
use crate::substream::Layout;
use crate::tracker::{Contact, PeerEntry, Session, Swarm, TrackerConfig};

mod mesh;
pub mod net;
mod report;

pub use report::{Report, compare, table};

use net::{Link, Rng};

#[cfg(test)]
mod tests;

/// How blocks are assigned and fetched. Every policy but `cdn-only` runs the same mesh (each
/// peer fetches the blocks it lacks from its neighbours by buffer map and spare upload); they
/// differ in which peers prefetch which substream from the CDN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The tracker's least-covered substream assignment, with
    /// `tracker.cdn_prefetchers_per_substream` CDN prefetchers per substream (default 1),
    /// one more per `tracker.cdn_prefetch_per_holders` holders (default 4); every other peer
    /// gets every block over the mesh (or as urgent from the CDN).
    LeastCovered,
    /// The seed's random prefetch (seed paragraph 44): every peer prefetches one substream
    /// drawn uniformly at random (redrawn into range when `s` changes), so the CDN sends about
    /// `peers / s` copies of the stream.
    Random,
    /// No prefetch: blocks enter the mesh only through urgent CDN fetches.
    NoPrefetch,
    /// No P2P: every block from the CDN.
    CdnOnly,
}

impl Policy {
    /// Every policy, in the order of the comparison table.
    pub const ALL: [Self; 4] = [
        Self::LeastCovered,
        Self::Random,
        Self::NoPrefetch,
        Self::CdnOnly,
    ];

    /// The policy's name as printed.
    pub fn name(self) -> &'static str {
        match self {
            Self::LeastCovered => "least-covered",
            Self::Random => "random",
            Self::NoPrefetch => "no-prefetch",
            Self::CdnOnly => "cdn-only",
        }
    }
}

/// Settings of one simulation run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    /// Number of peers.
    pub peers: usize,
    /// Seconds of stream cut by the origin.
    pub seconds: u64,
    /// Seed of every random draw.
    pub seed: u64,
    /// Stream bitrate, bits/s (default 2 Mbit/s).
    pub bitrate_bps: u64,
    /// Block duration, ms (default 1000).
    pub block_ms: u32,
    /// Mean peer upload as a multiple of the bitrate (default 1.5).
    pub upload_mean_x: f64,
    /// Log-space sigma of the upload distribution (default 0.5).
    pub upload_sigma: f64,
    /// Peer download as a multiple of the bitrate (default 10).
    pub download_x: f64,
    /// RTTs are uniform in `[rtt_min_ms, rtt_max_ms]` (default 20..100).
    pub rtt_min_ms: u64,
    /// See `rtt_min_ms`.
    pub rtt_max_ms: u64,
    /// Joins are spread evenly over this many ms from the start (default 10 000).
    pub join_spread_ms: u64,
    /// Share of the peers that leave at half time (default 0.1).
    pub leave_share: f64,
    /// Share of the peers replaced per minute of stream (default 0): every
    /// `60 s / (peers × share)` a random present peer leaves and a new peer joins.
    pub replace_per_min: f64,
    /// A peer uploads at most this multiple of the bitrate, whatever its capacity (its
    /// configured upload limit, as [`crate::peer::PeerConfig::upload_limit_bytes_per_s`];
    /// default 3.0, 0 = no limit).
    pub upload_limit_x: f64,
    /// A peer refuses a request (the asker sees a failed fetch and asks elsewhere) when its
    /// upload queue already holds this many ms of transfers (default 1000).
    pub max_queue_ms: u64,
    /// "Have" messages reach a peer in batches, every this many ms of virtual time (default
    /// 100): a have is applied at the first batch at or after its arrival, and the peer's
    /// scheduler is polled once per batch, only when a have in it names a block it wants.
    /// Real peers learn their neighbours' blocks by buffer-map long polls, which answer with
    /// every change since the last answer; one event per block and neighbour (24 per block
    /// at 24 neighbours) was most of the simulator's work. 0 is taken as 1.
    pub have_batch_ms: u64,
    /// Scheduler tunables.
    pub sched: SchedConfig,
    /// Tracker settings (its `max_peers` is raised to `peers` when below).
    pub tracker: TrackerConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            peers: 50,
            seconds: 120,
            seed: 1,
            bitrate_bps: 2_000_000,
            block_ms: 1000,
            upload_mean_x: 1.5,
            upload_sigma: 0.5,
            download_x: 10.0,
            rtt_min_ms: 20,
            rtt_max_ms: 100,
            join_spread_ms: 10_000,
            leave_share: 0.1,
            replace_per_min: 0.0,
            upload_limit_x: 3.0,
            max_queue_ms: 1000,
            have_batch_ms: 100,
            sched: SchedConfig::default(),
            tracker: TrackerConfig::default(),
        }
    }
}

impl SimConfig {
    /// Bytes of one block.
    pub fn block_bytes(&self) -> u64 {
        self.bitrate_bps / 8 * u64::from(self.block_ms) / 1000
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The origin cuts block `n` (`n == blocks` ends the stream).
    Cut(u64),
    Join(usize),
    Heartbeat(usize),
    Leave(usize),
    /// Churn: a random present peer leaves and peer slot `n` joins.
    Replace(usize),
    /// `block` reaches peer `to`, sent by `from` (`None`: the CDN); `prefetch` for the
    /// CDN's subscription push.
    Deliver {
        to: usize,
        block: u64,
        from: Option<usize>,
        prefetch: bool,
    },
    /// The have tick: every peer with "haves" due applies them (see [`Have`]).
    Tick,
    /// Peer `to` gets the buffer map of its new neighbour `from`.
    Map {
        to: usize,
        from: usize,
    },
    /// A fetch of `block` by `to` from peer `from` failed.
    Fail {
        to: usize,
        block: u64,
        from: usize,
        /// Refused because the sender's upload queue was full.
        busy: bool,
    },
    /// Poll peer `n`'s scheduler (its player deadline).
    Poll(usize),
}

/// A "have" on its way to a peer: neighbour `from` got `block`; it reaches the receiver at
/// `at` (µs: half the receiver's RTT after the sender kept it) and is applied at the first
/// have tick at or after that (`have_batch_ms`), together with the others due then, as a
/// real peer's buffer-map long poll answers with every change since its last answer.
#[derive(Debug, Clone, Copy)]
struct Have {
    at: u64,
    from: usize,
    block: u64,
}

struct Peer {
    id: PeerId,
    token: Secret,
    link: Link,
    sched: Option<Scheduler>,
    view_version: u64,
    /// The neighbours the tracker gave (its partial view).
    known: BTreeMap<PeerId, PeerEntry>,
    /// The slots of `known` (the peers its haves go to).
    links: Vec<usize>,
    /// Haves sent to it not applied yet.
    inbox: Vec<Have>,
    /// Whether it is listed in [`Sim::dirty`].
    dirty: bool,
    prefetch: BTreeSet<u32>,
    /// The layout last applied to the scheduler.
    layout: Option<Layout>,
    /// First block the prefetch subscription delivers.
    prefetch_from: u64,
    present: bool,
    joined_us: u64,
    left_us: Option<u64>,
    uploaded: u64,
    poll_at: Option<u64>,
    /// Requests held until the prefetched block arrives: block -> requesting peers.
    held: BTreeMap<u64, Vec<usize>>,
    /// Its random draw for [`Policy::Random`] (substream `1 + pick % s`).
    pick: u64,
}

struct Sim<'a> {
    config: &'a SimConfig,
    policy: Policy,
    base: Instant,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    swarm: Swarm,
    peers: Vec<Peer>,
    by_id: BTreeMap<PeerId, usize>,
    cut: u64,
    ended: bool,
    blocks: u64,
    cdn_bytes: u64,
    p2p_bytes: u64,
    /// First copies kept, by origin: from peers, from the CDN; and second copies.
    kept_p2p: u64,
    kept_cdn: u64,
    duplicate_bytes: u64,
    /// Neighbour-entry bytes of all tracker answers, and the joins and leaves.
    tracker_bytes: u64,
    churn_events: u64,
    /// Draws made during the run (churn picks).
    rng: Rng,
    /// Peers present now (for churn picks).
    alive: Vec<usize>,
    /// Peers with a non-empty inbox, in the order they got their first pending have.
    dirty: Vec<usize>,
    /// Whether a [`Event::Tick`] is queued.
    tick_pending: bool,
    /// Busy refusals handled.
    refusals: u64,
}

/// Runs one policy and returns its report.
///
/// # Errors
/// [`Error::Config`] for an invalid tracker configuration; tracker errors would mean a sim
/// bug and are passed on.
pub fn run(config: &SimConfig, policy: Policy) -> Result<Report, Error> {
    let mut tracker = config.tracker.clone();
    tracker.max_peers = tracker.max_peers.max(config.peers);
    let mut rng = Rng::new(config.seed);
    let bitrate = config.bitrate_bps as f64 / 8.0;
    let rtt_span = config.rtt_max_ms.saturating_sub(config.rtt_min_ms) + 1;
    let blocks = config.seconds * 1000 / u64::from(config.block_ms.max(1));
    let replacements =
        (config.peers as f64 * config.replace_per_min.max(0.0) * config.seconds as f64 / 60.0)
            .round() as usize;
    let slots = config.peers + replacements;
    let mut peers = Vec::with_capacity(slots);
    let mut by_id = BTreeMap::new();
    let limit = if config.upload_limit_x > 0.0 {
        config.upload_limit_x * bitrate
    } else {
        f64::INFINITY
    };
    for n in 0..slots {
        let mut id = rng.next_u64();
        while id == 0 || by_id.contains_key(&id) {
            id = rng.next_u64();
        }
        by_id.insert(id, n);
        let upload = rng
            .log_normal(config.upload_mean_x * bitrate, config.upload_sigma)
            .min(limit);
        let rtt_ms = config.rtt_min_ms + rng.next_u64() % rtt_span;
        let pick = rng.next_u64();
        peers.push(Peer {
            id,
            token: Secret::new(format!("sim-token-{n}")),
            link: Link {
                upload,
                download: config.download_x * bitrate,
                rtt_us: rtt_ms * 1000,
                busy_until: 0,
            },
            sched: None,
            view_version: 0,
            known: BTreeMap::new(),
            links: Vec::new(),
            inbox: Vec::new(),
            dirty: false,
            prefetch: BTreeSet::new(),
            layout: None,
            prefetch_from: 0,
            present: false,
            joined_us: 0,
            left_us: None,
            uploaded: 0,
            poll_at: None,
            held: BTreeMap::new(),
            pick,
        });
    }
    let mut sim = Sim {
        config,
        policy,
        base: Instant::now(),
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        swarm: Swarm::new(tracker)?,
        peers,
        by_id,
        cut: 0,
        ended: false,
        blocks,
        cdn_bytes: 0,
        p2p_bytes: 0,
        kept_p2p: 0,
        kept_cdn: 0,
        duplicate_bytes: 0,
        tracker_bytes: 0,
        churn_events: 0,
        rng: Rng::new(config.seed ^ 0x5EED_C4A2),
        alive: Vec::new(),
        dirty: Vec::new(),
        tick_pending: false,
        refusals: 0,
    };
    let block_us = u64::from(config.block_ms) * 1000;
    for n in 0..=blocks {
        sim.push(n * block_us, Event::Cut(n));
    }
    for n in 0..config.peers {
        let at = config.join_spread_ms * 1000 * n as u64 / config.peers.max(1) as u64;
        sim.push(at, Event::Join(n));
    }
    let leaving = (config.peers as f64 * config.leave_share.clamp(0.0, 1.0)).round() as usize;
    let mut order: Vec<usize> = (0..config.peers).collect();
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let half = blocks * block_us / 2;
    for (k, &n) in order.iter().take(leaving).enumerate() {
        sim.push(half + k as u64 * 1000, Event::Leave(n));
    }
    // Churn: replacement k at (k + 1/2) / replacements of the stream.
    let stream_us = blocks * block_us;
    for k in 0..replacements {
        let at = stream_us * (2 * k as u64 + 1) / (2 * replacements as u64);
        sim.push(at, Event::Replace(config.peers + k));
    }
    let cap = blocks * block_us + 60_000_000;
    let wall = Instant::now();
    let mut events = 0u64;
    while let Some(Reverse((at, _, event))) = sim.queue.pop() {
        if at > cap {
            break;
        }
        events += 1;
        sim.now = at;
        sim.handle(event)?;
        if sim.ended && sim.all_done() {
            break;
        }
    }
    let mut report = sim.report();
    report.events = events;
    report.wall_ms = wall.elapsed().as_millis() as u64;
    Ok(report)
}

impl Sim<'_> {
    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, event)));
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_micros(self.now)
    }

    fn all_done(&self) -> bool {
        self.peers
            .iter()
            .filter(|p| p.present)
            .all(|p| p.sched.as_ref().is_some_and(Scheduler::finished))
    }

    fn info(&self, block: u64) -> BlockInfo {
        BlockInfo::of(block, self.config.block_ms, &block.to_le_bytes())
    }

    fn handle(&mut self, event: Event) -> Result<(), Error> {
        match event {
            Event::Cut(n) => self.on_cut(n),
            Event::Join(n) => self.on_join(n)?,
            Event::Heartbeat(n) => self.on_heartbeat(n)?,
            Event::Leave(n) => self.on_leave(n)?,
            Event::Replace(n) => {
                if !self.alive.is_empty() {
                    let i = (self.rng.next_u64() % self.alive.len() as u64) as usize;
                    self.on_leave(self.alive[i])?;
                }
                self.on_join(n)?;
            }
            Event::Deliver {
                to,
                block,
                from,
                prefetch,
            } => self.on_deliver(to, block, from, prefetch),
            Event::Tick => self.on_tick(),
            Event::Map { to, from } => self.on_map(to, from),
            Event::Fail {
                to,
                block,
                from,
                busy,
            } => {
                self.refusals += u64::from(busy);
                if self.peers[to].present {
                    let source = Source::Peer(self.peers[from].id);
                    if let Some(s) = self.peers[to].sched.as_mut() {
                        if busy {
                            s.on_busy(block, source);
                        } else {
                            s.on_fetch_failed(block, source);
                        }
                    }
                    self.poll(to);
                }
            }
            Event::Poll(n) => {
                if self.peers[n].poll_at == Some(self.now) {
                    self.peers[n].poll_at = None;
                    self.poll(n);
                }
            }
        }
        Ok(())
    }

    fn on_cut(&mut self, n: u64) {
        if n >= self.blocks {
            self.ended = true;
            for p in 0..self.peers.len() {
                if let Some(s) = self.peers[p].sched.as_mut() {
                    s.on_end(self.blocks);
                }
                self.poll(p);
            }
            return;
        }
        self.cut = n + 1;
        let info = self.info(n);
        let substream = self.swarm.layout().substream_of(n);
        let size = self.config.block_bytes();
        for p in 0..self.peers.len() {
            let peer = &mut self.peers[p];
            if !peer.present {
                continue;
            }
            let Some(s) = peer.sched.as_mut() else {
                continue;
            };
            s.on_info(info);
            if peer.prefetch.contains(&substream) && n >= peer.prefetch_from {
                let at = peer.link.from_cdn(self.now, size);
                self.cdn_bytes += size;
                self.push(
                    at,
                    Event::Deliver {
                        to: p,
                        block: n,
                        from: None,
                        prefetch: true,
                    },
                );
            }
            self.poll(p);
        }
    }

    fn on_join(&mut self, n: usize) -> Result<(), Error> {
        let now = self.instant();
        let session = Session {
            id: self.peers[n].id,
            token: self.peers[n].token.clone(),
        };
        let contact = Contact {
            quic_addr: format!("10.{}.{}.{}:4433", n >> 16 & 255, n >> 8 & 255, n & 255),
            http_addr: String::new(),
            cert_der_hex: String::new(),
        };
        self.swarm.join(now, contact, &session)?;
        let start = Scheduler::start_block(&self.config.sched, self.cut);
        let mut sched = Scheduler::new(
            self.config.sched,
            now,
            start,
            1.0,
            self.swarm.layout().clone(),
        );
        for b in start..self.cut {
            sched.on_info(self.info(b));
        }
        self.alive.push(n);
        let peer = &mut self.peers[n];
        peer.sched = Some(sched);
        peer.present = true;
        peer.joined_us = self.now;
        peer.prefetch_from = start;
        let view = self.swarm.view(peer.id, 0)?;
        self.churn_events += 1;
        self.apply_view(n, &view);
        self.push(self.now + 1_000_000, Event::Heartbeat(n));
        self.poll(n);
        Ok(())
    }

    fn on_heartbeat(&mut self, n: usize) -> Result<(), Error> {
        if !self.peers[n].present {
            return Ok(());
        }
        let now = self.instant();
        let (id, cut) = {
            let p = &self.peers[n];
            (p.id, p.sched.as_ref().map_or(0, Scheduler::cut))
        };
        self.swarm
            .heartbeat(now, id, Some(self.peers[n].token.expose()), cut)?;
        let view = self.swarm.view(id, self.peers[n].view_version)?;
        // Polled only when the view changed something (the player deadline and arrivals
        // have their own polls).
        let changed = self.apply_view(n, &view);
        if let Some(s) = self.peers[n].sched.as_mut() {
            let keep = s.window_start(30_000);
            s.forget_before(keep);
        }
        self.push(self.now + 1_000_000, Event::Heartbeat(n));
        if changed {
            self.poll(n);
        }
        Ok(())
    }

    fn on_leave(&mut self, n: usize) -> Result<(), Error> {
        if !self.peers[n].present {
            return Ok(());
        }
        let id = self.peers[n].id;
        self.swarm.leave(id, Some(self.peers[n].token.expose()))?;
        if let Some(i) = self.alive.iter().position(|&p| p == n) {
            self.alive.swap_remove(i);
        }
        let peer = &mut self.peers[n];
        peer.present = false;
        peer.left_us = Some(self.now);
        let held = std::mem::take(&mut peer.held);
        for (block, askers) in held {
            for to in askers {
                let at = self.now + self.peers[to].link.rtt_us / 2;
                self.push(
                    at,
                    Event::Fail {
                        to,
                        block,
                        from: n,
                        busy: false,
                    },
                );
            }
        }
        self.churn_events += 1;
        Ok(())
    }

    fn on_deliver(&mut self, to: usize, block: u64, from: Option<usize>, prefetch: bool) {
        // Uploads count when they arrive: a queue that outlasts the run was not sent. A
        // sender that left sends nothing more: the receiver sees a failed fetch.
        if let Some(p) = from {
            if !self.peers[p].present {
                if self.peers[to].present {
                    let source = Source::Peer(self.peers[p].id);
                    if let Some(s) = self.peers[to].sched.as_mut() {
                        s.on_fetch_failed(block, source);
                    }
                    self.poll(to);
                }
                return;
            }
            self.peers[p].uploaded += self.config.block_bytes();
        }
        if !self.peers[to].present {
            return;
        }
        let source = match from {
            None if prefetch => Source::Prefetch,
            None => Source::Cdn,
            Some(p) => Source::Peer(self.peers[p].id),
        };
        if from.is_some() {
            self.p2p_bytes += self.config.block_bytes();
        }
        let data = block.to_le_bytes();
        let size = self.config.block_bytes();
        let verdict = self.peers[to]
            .sched
            .as_mut()
            .map(|s| s.on_block(block, source, &data));
        match verdict {
            Some(Verdict::Accepted) if from.is_some() => self.kept_p2p += size,
            Some(Verdict::Accepted) => self.kept_cdn += size,
            Some(Verdict::Duplicate) => self.duplicate_bytes += size,
            _ => {}
        }
        if verdict == Some(Verdict::Accepted) {
            // Tell the neighbours (a "have" each, half an RTT away).
            let links = std::mem::take(&mut self.peers[to].links);
            for &j in &links {
                let at = self.now + self.peers[j].link.rtt_us / 2;
                self.send_have(
                    j,
                    Have {
                        at,
                        from: to,
                        block,
                    },
                );
            }
            self.peers[to].links = links;
        }
        // Serve the requests held for this block, refusing those beyond a full queue.
        if let Some(askers) = self.peers[to].held.remove(&block) {
            for asker in askers {
                if self.queue_full(to) {
                    let at = self.now + self.peers[asker].link.rtt_us / 2;
                    self.push(
                        at,
                        Event::Fail {
                            to: asker,
                            block,
                            from: to,
                            busy: true,
                        },
                    );
                } else {
                    self.send(to, asker, block);
                }
            }
        }
        self.poll(to);
    }

    /// Whether peer `n`'s upload queue holds more than `max_queue_ms` of transfers.
    fn queue_full(&self, n: usize) -> bool {
        self.peers[n].link.busy_until.saturating_sub(self.now) > self.config.max_queue_ms * 1000
    }

    /// Peer `from` sends `block` to `to` over the link model.
    fn send(&mut self, from: usize, to: usize, block: u64) {
        let size = self.config.block_bytes();
        let receiver = self.peers[to].link.clone();
        let at = self.peers[from].link.send(self.now, size, &receiver);
        self.push(
            at,
            Event::Deliver {
                to,
                block,
                from: Some(from),
                prefetch: false,
            },
        );
    }

    fn poll(&mut self, n: usize) {
        let now = self.instant();
        if !self.peers[n].present {
            return;
        }
        let Some(sched) = self.peers[n].sched.as_mut() else {
            return;
        };
        let actions = sched.poll(now);
        let deadline = sched.next_deadline();
        for action in actions {
            let Action::Fetch { block, from } = action else {
                continue;
            };
            match from {
                Source::Cdn | Source::Prefetch => {
                    let size = self.config.block_bytes();
                    self.cdn_bytes += size;
                    let at = self.peers[n].link.from_cdn(self.now, size);
                    self.push(
                        at,
                        Event::Deliver {
                            to: n,
                            block,
                            from: None,
                            prefetch: false,
                        },
                    );
                }
                Source::Peer(id) => self.request(n, id, block),
            }
        }
        if let Some(d) = deadline {
            let at = d.saturating_duration_since(self.base).as_micros() as u64;
            let at = at.max(self.now);
            let p = &mut self.peers[n];
            if p.poll_at.is_none_or(|t| at < t || t < self.now) {
                p.poll_at = Some(at);
                self.push(at, Event::Poll(n));
            }
        }
    }

    /// Peer `to` asks peer `id` for `block`: served when it has it, held when its prefetch
    /// subscription will deliver it, failed otherwise.
    fn request(&mut self, to: usize, id: PeerId, block: u64) {
        let Some(&from) = self.by_id.get(&id) else {
            return;
        };
        let sender = &self.peers[from];
        let has = sender.sched.as_ref().is_some_and(|s| s.has(block));
        let substream = self.swarm.layout().substream_of(block);
        let expects = sender.prefetch.contains(&substream) && block >= sender.prefetch_from;
        let busy = self.queue_full(from);
        if !sender.present || !(has || expects) || busy {
            let at = self.now + self.peers[to].link.rtt_us;
            let busy = sender.present && (has || expects);
            self.push(
                at,
                Event::Fail {
                    to,
                    block,
                    from,
                    busy,
                },
            );
        } else if has {
            self.send(from, to, block);
        } else {
            self.peers[from].held.entry(block).or_default().push(to);
        }
    }
}
