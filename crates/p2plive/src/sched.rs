//! The sans-I/O scheduling core of a peer: which block to fetch from where, and when the
//! player plays, stalls or finishes. Time is passed in as a value; nothing here does I/O, so
//! the same code drives real QUIC peers and (later) a swarm simulator.
//!
//! Zones (seed 44): a block the player needs within `urgent_blocks` of the playhead is in the
//! *urgent zone* and, when still missing, is fetched straight from the CDN. Further ahead, in the
//! *non-urgent zone*, the peer fetches the blocks of the other substreams from the peers holding
//! them (seed 57-58), in order of the substreams' sequence identifiers, round by round, so the
//! earliest blocks come first when the peer is behind (seed 59-62). Its own substreams arrive by
//! the CDN prefetch subscription (seed 54-55). Blocks are played in number order, which is the
//! order of sequence identifiers (seed 60-61).
//!
//! Mesh (issue 16 item 3, [`neighbours`]): the other peers are the neighbours the tracker
//! gave, each with what it told it holds (a [`BufferMap`], then [`Scheduler::on_have`] per
//! block) and its advertised [`Upload`]. A non-urgent block comes from the neighbour holding
//! it with the most spare upload, sticking to a per-substream parent while the parent keeps
//! up; a neighbour that prefetches the block's substream is asked before it has it (it holds
//! the request). A neighbour that sent no buffer map yet is asked only after another failed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::block::BlockInfo;
use crate::substream::Layout;

mod asked;
mod held;
mod idmap;
mod inflight;
pub mod neighbours;

use asked::Asked;
use held::Held;
use idmap::IdMap;
use inflight::Inflight;
use neighbours::Neighbours;
pub use neighbours::{BufferMap, MAX_MAP_WORDS, Upload};

/// A peer's identifier, handed out by the tracker.
pub type PeerId = u64;

/// Where a block came from or is to be fetched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The CDN's substream prefetch subscription.
    Prefetch,
    /// An urgent fetch of one block from the CDN.
    Cdn,
    /// Another peer, over QUIC.
    Peer(PeerId),
}

/// Tunables of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedConfig {
    /// Size of the urgent zone in blocks: a block missing when fewer than this many blocks
    /// remain before the player needs it is fetched from the CDN (default 2; seed 44).
    pub urgent_blocks: u64,
    /// Blocks buffered before playback starts: the player starts once the live edge is this
    /// many blocks past the start block (default 12, chosen by measurement: with 4, a block
    /// had about 2 s between the live edge and the urgent zone to spread, too little for a
    /// mesh of 50 peers, and the CDN sent 45-50x the stream; seed 44 puts live delays at "a
    /// few tens of seconds"). Also how far behind the live edge a late joiner starts.
    pub playout_delay_blocks: u64,
    /// Most P2P requests in flight at once (default 16).
    pub max_peer_requests: usize,
    /// Most P2P requests in flight to one peer (default 4).
    pub max_requests_per_peer: usize,
    /// How many different peers are asked for one block before waiting for the urgent zone
    /// (default 3).
    pub max_peer_attempts: usize,
    /// Most urgent CDN requests in flight at once (default 4).
    pub max_cdn_requests: usize,
    /// A peer whose link failed is not asked again for this long, in ms (default 2000).
    pub peer_backoff_ms: u64,
    /// A neighbour that refused requests as busy ([`Scheduler::on_busy`]) twice in a row is
    /// not asked again for this long, in ms, doubled for each further refusal in a row up to
    /// 8 times as long; a block it serves resets the count (default 250). After a first
    /// refusal it is asked again at its next advert. Without the backoff a peer asked a busy
    /// neighbour again at each of its adverts: in `p2plive sim` at 2,000 peers, 22 refusals
    /// per block received, 85 % of the simulator's events. Backing off from the first
    /// refusal cost more CDN in a flash crowd (48 peers joining at once: 5.2x the stream
    /// against 4.1x).
    pub busy_backoff_ms: u64,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            urgent_blocks: 2,
            playout_delay_blocks: 12,
            max_peer_requests: 16,
            max_requests_per_peer: 4,
            max_peer_attempts: 3,
            max_cdn_requests: 4,
            peer_backoff_ms: 2000,
            busy_backoff_ms: 250,
        }
    }
}

/// What the scheduler asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fetch `block` from `from` ([`Source::Cdn`] or [`Source::Peer`]), then report it with
    /// [`Scheduler::on_block`] or [`Scheduler::on_fetch_failed`].
    Fetch {
        /// Block number.
        block: u64,
        /// Where from.
        from: Source,
    },
    /// The player starts playing `block`: append it to the output.
    Play {
        /// Block number.
        block: u64,
    },
    /// The stream ended and its last block has been played.
    Finished,
}

/// The verdict on a block handed to [`Scheduler::on_block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New and matching the origin's SHA-256: keep it.
    Accepted,
    /// Already had it (bytes were spent twice).
    Duplicate,
    /// Does not match the origin's size and SHA-256: dropped; it will be fetched elsewhere.
    Corrupt,
    /// The origin's info for this block is not known yet: dropped.
    Unknown,
}

/// Player state (seed 60-61: blocks play in sequence-identifier order).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Player {
    /// Buffering before the first block.
    Waiting,
    /// Playing `block` since `since` (the block's own start, excluding stalls) until `ends`
    /// (`since` plus its media duration at the playback speed, computed once in `play`).
    Playing {
        block: u64,
        since: Instant,
        ends: Instant,
    },
    /// Needs `block`, missing since `since`.
    Stalled { block: u64, since: Instant },
    /// Played the last block.
    Done,
}

/// Playback figures so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PlaybackStats {
    /// Time from joining to playing the first block, in ms (None before that).
    pub startup_ms: Option<u64>,
    /// Number of stalls (the player needed a block it did not have), including one still
    /// open at the last [`Scheduler::poll`].
    pub stalls: u64,
    /// Total stall time in ms, including the open stall's time so far.
    pub stall_ms: u64,
    /// Whether the player was stalled at the last poll (that stall is already counted).
    pub stalled_now: bool,
    /// Blocks dropped because they did not match the origin's SHA-256.
    pub corrupt_blocks: u64,
    /// Blocks received more than once.
    pub duplicate_blocks: u64,
    /// Blocks the live edge is ahead of the playhead now.
    pub lag_blocks: u64,
    /// Largest lag seen, in blocks.
    pub max_lag_blocks: u64,
    /// Lag behind the live edge now in media milliseconds (sum of the durations of the blocks
    /// cut after the one playing).
    pub lag_ms: u64,
    /// Blocks played.
    pub played: u64,
}

/// The scheduling state of one peer. See the module docs.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedConfig,
    joined_at: Instant,
    /// Playback rate: media seconds per wall second (the origin's pacing speed).
    speed: f64,
    start: u64,
    layout: Layout,
    /// My substreams and the first block the subscription delivers for each, by substream
    /// (a few entries).
    mine: Vec<(u32, u64)>,
    peers: Neighbours,
    /// Peers that failed or refused as busy, and until when they are not asked.
    down: IdMap<Instant>,
    infos: BTreeMap<u64, BlockInfo>,
    /// One past the newest block in `infos` (0 when none): [`Scheduler::cut`], kept so that
    /// the hot path does not walk the tree for it. `infos` never loses its newest entry.
    cut: u64,
    have: Held,
    /// The sources asked for each block now (a handful of entries).
    inflight: Inflight,
    /// Block -> the peers that failed it.
    tried: BTreeMap<u64, BTreeSet<PeerId>>,
    end: Option<u64>,
    player: Player,
    stats: PlaybackStats,
    /// Time of the last poll, for the open stall.
    now: Option<Instant>,
    /// Blocks below this were forgotten ([`Scheduler::forget_before`]).
    forgotten: u64,
    /// The last poll's [`neighbours::Holders`] list, kept for its allocation.
    holders_scratch: Vec<neighbours::Holder>,
}

impl Scheduler {
    /// A scheduler for a peer that joined at `joined_at` and plays from block `start` at
    /// `speed` times real time, under `layout`.
    pub fn new(
        config: SchedConfig,
        joined_at: Instant,
        start: u64,
        speed: f64,
        layout: Layout,
    ) -> Self {
        Self {
            config,
            joined_at,
            speed: if speed > 0.0 { speed } else { 1.0 },
            start,
            layout,
            mine: Vec::new(),
            peers: Neighbours::default(),
            down: IdMap::default(),
            infos: BTreeMap::new(),
            cut: 0,
            have: Held::default(),
            inflight: Inflight::default(),
            tried: BTreeMap::new(),
            end: None,
            player: Player::Waiting,
            stats: PlaybackStats::default(),
            now: None,
            forgotten: 0,
            holders_scratch: Vec::new(),
        }
    }

    /// The start block a peer joining now should play from, given `cut` blocks cut so far:
    /// `playout_delay_blocks` behind the live edge (0 for a stream not started yet).
    pub fn start_block(config: &SchedConfig, cut: u64) -> u64 {
        cut.saturating_sub(config.playout_delay_blocks)
    }

    /// The first block played.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Replaces the layout and this peer's substreams: `mine` maps each substream to the first
    /// block its prefetch subscription delivers.
    pub fn set_assignment(&mut self, layout: Layout, mine: BTreeMap<u32, u64>) {
        self.layout = layout;
        self.mine = mine.into_iter().collect();
    }

    /// Replaces the neighbours and the substreams each prefetches (asked for new blocks of
    /// those before they told they have them). What is known of the neighbours that stay is
    /// kept; a parent no longer listed is re-selected.
    pub fn set_peers(&mut self, peers: BTreeMap<PeerId, BTreeSet<u32>>) {
        self.down.retain(|id, _| peers.contains_key(id));
        self.peers.set(peers);
    }

    /// Neighbour `peer` holds the blocks of `map` (its full buffer map: replaces what it told
    /// before). Ignored for a peer that is not a neighbour.
    pub fn on_buffer_map(&mut self, peer: PeerId, map: &BufferMap) {
        let forgotten = self.forgotten;
        if let Some(n) = self.peers.peers.get_mut(&peer) {
            n.have = map.blocks().filter(|b| *b >= forgotten).collect();
            n.map_known = true;
        }
    }

    /// A "have" with the upload the sender advertised with it: [`Scheduler::on_have`] and
    /// [`Scheduler::on_upload`] in one neighbour lookup, then [`Scheduler::wants`] of the
    /// block (whether or not `peer` is a neighbour: the have and advert of a peer that is not
    /// are ignored). A have of a forgotten block still records the advert.
    pub fn on_have_advert(&mut self, peer: PeerId, block: u64, upload: Upload) -> bool {
        if let Some(n) = self.peers.peers.get_mut(&peer) {
            n.upload = Some(upload);
            if block >= self.forgotten {
                n.have.insert(block);
                n.map_known = true;
            }
        }
        self.wants(block)
    }

    /// Neighbour `peer` got `block` (a "have"). Ignored for a peer that is not a neighbour.
    pub fn on_have(&mut self, peer: PeerId, block: u64) {
        if block < self.forgotten {
            return;
        }
        if let Some(n) = self.peers.peers.get_mut(&peer) {
            n.have.insert(block);
            n.map_known = true;
        }
    }

    /// Neighbour `peer` advertised its upload. Ignored for a peer that is not a neighbour.
    pub fn on_upload(&mut self, peer: PeerId, upload: Upload) {
        if let Some(n) = self.peers.peers.get_mut(&peer) {
            n.upload = Some(upload);
        }
    }

    /// This peer's buffer map, to send to its neighbours.
    pub fn buffer_map(&self) -> BufferMap {
        BufferMap::of_sorted(self.have.iter())
    }

    /// The parent (the neighbour blocks of `substream` come from by preference), if any.
    pub fn parent(&self, substream: u32) -> Option<PeerId> {
        self.peers.parents.get(&substream).copied()
    }

    /// Times a substream parent was (re-)selected.
    pub fn parent_changes(&self) -> u64 {
        self.peers.parent_changes
    }

    /// Marks a peer unreachable at `now`: it is not asked for `peer_backoff_ms`, and its
    /// requests in flight count as failed.
    pub fn peer_down(&mut self, peer: PeerId, now: Instant) {
        self.down.insert(
            peer,
            now + Duration::from_millis(self.config.peer_backoff_ms),
        );
        self.peers.drop_parent(peer);
        self.inflight.remove_source(Source::Peer(peer));
    }

    /// The origin published `info` (learned from the CDN). Infos of forgotten blocks are
    /// ignored.
    pub fn on_info(&mut self, info: BlockInfo) {
        if info.number >= self.forgotten {
            self.cut = self.cut.max(info.number.saturating_add(1));
            self.infos.insert(info.number, info);
        }
    }

    /// The oldest block to keep for a window of `window_ms` of media behind the playhead:
    /// the block playing (or awaited) and the blocks before it whose durations add up to at
    /// most `window_ms`. While buffering, the start block.
    pub fn window_start(&self, window_ms: u64) -> u64 {
        let playhead = match self.player {
            Player::Waiting => return self.start.max(self.forgotten),
            Player::Playing { block, .. } | Player::Stalled { block, .. } => block,
            Player::Done => return self.forgotten,
        };
        let mut kept = 0u64;
        let mut from = playhead;
        for (n, info) in self.infos.range(..playhead).rev() {
            kept += u64::from(info.duration_ms);
            if kept > window_ms {
                break;
            }
            from = *n;
        }
        from.max(self.forgotten)
    }

    /// Drops everything known about blocks below `block` (they are behind the window): their
    /// infos, the held set, failed attempts and requests in flight. A block below it that
    /// arrives later is [`Verdict::Unknown`].
    pub fn forget_before(&mut self, block: u64) {
        if block <= self.forgotten {
            return;
        }
        self.forgotten = block;
        // Keep the newest info so `cut` stays right. Entries go from the front one by one
        // (a second's worth per call), not by `split_off`, which rebuilds the trees.
        while self.infos.len() > 1
            && self
                .infos
                .first_key_value()
                .is_some_and(|(n, _)| *n < block)
        {
            self.infos.pop_first();
        }
        self.have.forget_before(block);
        self.peers.forget_before(block);
        while self
            .tried
            .first_key_value()
            .is_some_and(|(n, _)| *n < block)
        {
            self.tried.pop_first();
        }
        self.inflight.forget_before(block);
    }

    /// Number of block infos, held-block entries and pending attempts kept (for tests of the
    /// window).
    pub fn tracked(&self) -> usize {
        self.infos.len() + self.have.len() + self.tried.len() + self.inflight.blocks()
    }

    /// The origin ended the stream after `total` blocks.
    pub fn on_end(&mut self, total: u64) {
        self.end = Some(total);
    }

    /// Number of blocks cut so far, as far as this peer knows.
    pub fn cut(&self) -> u64 {
        self.cut
    }

    /// Whether the block is held.
    pub fn has(&self, block: u64) -> bool {
        self.have.contains(block)
    }

    /// Whether a neighbour's "have" of `block` can start a fetch: the block is not held, not
    /// requested, not forgotten and not expected from this peer's own prefetch subscription.
    /// A driver may skip [`Scheduler::poll`] after haves for which this is false (the player
    /// deadline, arrivals and failures still need their polls).
    pub fn wants(&self, block: u64) -> bool {
        block >= self.forgotten
            && !self.have.contains(block)
            && !self.inflight.contains(block)
            && !self.expected_by_prefetch(block)
    }

    /// The origin's info of a block, when known.
    pub fn info(&self, block: u64) -> Option<&BlockInfo> {
        self.infos.get(&block)
    }

    /// A fetch of `block` from `from` returned `data`: checks it against the origin's size and
    /// SHA-256 (a corrupt block from a peer is dropped and that peer is not asked again for it).
    pub fn on_block(&mut self, block: u64, from: Source, data: &[u8]) -> Verdict {
        self.clear_inflight(block, from);
        if block < self.forgotten {
            return Verdict::Unknown;
        }
        let Some(info) = self.infos.get(&block) else {
            return Verdict::Unknown;
        };
        if !info.matches(data) {
            self.stats.corrupt_blocks += 1;
            if let Source::Peer(peer) = from {
                self.tried.entry(block).or_default().insert(peer);
                self.peers.drop_parent(peer);
            }
            return Verdict::Corrupt;
        }
        if let Source::Peer(peer) = from {
            self.peers.served(peer);
        }
        if !self.have.insert(block) {
            self.stats.duplicate_blocks += 1;
            return Verdict::Duplicate;
        }
        self.tried.remove(&block);
        Verdict::Accepted
    }

    /// A fetch failed (the peer did not have the block, timed out or the connection broke).
    pub fn on_fetch_failed(&mut self, block: u64, from: Source) {
        self.clear_inflight(block, from);
        if let Source::Peer(peer) = from {
            self.tried.entry(block).or_default().insert(peer);
            // A parent that failed a block is re-selected for the next one.
            let substream = self.layout.substream_of(block);
            if self.peers.parents.get(&substream) == Some(&peer) {
                self.peers.parents.remove(&substream);
            }
        }
    }

    /// Neighbour `from` refused `block` because its upload queue is full: not a failed
    /// attempt (it may be asked again), but it counts as having no spare upload until it
    /// advertises again ([`Scheduler::on_upload`]); from its second refusal in a row it is not
    /// asked for `busy_backoff_ms` from the last poll (doubling per further refusal, at most
    /// 8x).
    pub fn on_busy(&mut self, block: u64, from: Source) {
        self.clear_inflight(block, from);
        if let Source::Peer(peer) = from {
            let refusals = self.peers.saturate(peer);
            if let Some(now) = self.now.filter(|_| refusals >= 2) {
                let shift = refusals.saturating_sub(2).min(3);
                let ms = self.config.busy_backoff_ms.saturating_mul(1 << shift);
                let until = now + Duration::from_millis(ms);
                match self.down.get_mut(&peer) {
                    Some(entry) => *entry = (*entry).max(until),
                    None => {
                        self.down.insert(peer, until);
                    }
                }
            }
        }
    }

    fn clear_inflight(&mut self, block: u64, from: Source) {
        self.inflight.remove(block, from);
    }

    /// The block the player needs next, once it is past buffering; None while buffering or
    /// done.
    fn next_needed(&self) -> Option<u64> {
        match self.player {
            Player::Waiting => (self.cut() >= self.start + self.config.playout_delay_blocks
                || self.end.is_some())
            .then_some(self.start),
            Player::Playing { block, .. } => Some(block + 1),
            Player::Stalled { block, .. } => Some(block),
            Player::Done => None,
        }
    }

    fn expected_by_prefetch(&self, block: u64) -> bool {
        let b = self.layout.substream_of(block);
        self.mine
            .iter()
            .any(|&(substream, from)| substream == b && block >= from)
    }

    /// Advances the player to `now` and decides the fetches to start. Call after every event
    /// and at the latest at [`Scheduler::next_deadline`].
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.now = Some(self.now.map_or(now, |last| last.max(now)));
        self.advance_player(now, &mut actions);
        if self.player == Player::Done {
            return actions;
        }
        self.down.retain(|_, until| *until > now);
        self.plan_fetches(&mut actions);
        self.update_lag();
        actions
    }

    fn block_duration(&self, block: u64) -> Duration {
        let media = self.infos.get(&block).map_or(0, |i| i.duration_ms);
        Duration::from_secs_f64(f64::from(media) / 1000.0 / self.speed)
    }

    fn advance_player(&mut self, now: Instant, actions: &mut Vec<Action>) {
        loop {
            match self.player {
                Player::Waiting => {
                    if self.next_needed().is_some() && self.has(self.start) {
                        self.stats.startup_ms =
                            Some(now.saturating_duration_since(self.joined_at).as_millis() as u64);
                        self.play(self.start, now, actions);
                    } else if self.end.is_some_and(|end| end <= self.start) {
                        self.player = Player::Done;
                        actions.push(Action::Finished);
                        return;
                    } else {
                        return;
                    }
                }
                Player::Playing { block, ends, .. } => {
                    if now < ends {
                        return;
                    }
                    let next = block + 1;
                    if self.end.is_some_and(|end| next >= end) {
                        self.player = Player::Done;
                        actions.push(Action::Finished);
                        return;
                    }
                    if self.has(next) {
                        self.play(next, ends, actions);
                    } else {
                        self.player = Player::Stalled {
                            block: next,
                            since: ends,
                        };
                    }
                }
                Player::Stalled { block, since } => {
                    if self.end.is_some_and(|end| block >= end) {
                        self.player = Player::Done;
                        actions.push(Action::Finished);
                        return;
                    }
                    if !self.has(block) {
                        return;
                    }
                    let waited = now.saturating_duration_since(since);
                    // A block arriving within a millisecond of its time is not a stall.
                    if waited >= Duration::from_millis(1) {
                        self.stats.stalls += 1;
                        self.stats.stall_ms += waited.as_millis() as u64;
                    }
                    self.play(block, now, actions);
                }
                Player::Done => return,
            }
        }
    }

    fn play(&mut self, block: u64, since: Instant, actions: &mut Vec<Action>) {
        let ends = since + self.block_duration(block);
        self.player = Player::Playing { block, since, ends };
        self.stats.played += 1;
        actions.push(Action::Play { block });
    }

    fn inflight_from(&self, block: u64, pred: impl Fn(&Source) -> bool) -> bool {
        self.inflight.sources(block).any(pred)
    }

    fn plan_fetches(&mut self, actions: &mut Vec<Action>) {
        let cut = self.cut();
        let first = match self.player {
            Player::Waiting => self.start,
            Player::Playing { block, .. } => block + 1,
            Player::Stalled { block, .. } => block,
            Player::Done => return,
        };
        let urgent_end = self
            .next_needed()
            .map_or(first, |n| n + self.config.urgent_blocks);
        // Urgent zone: straight from the CDN (seed 44).
        let mut cdn_inflight = self
            .inflight
            .iter()
            .filter(|(_, s)| *s == Source::Cdn)
            .count();
        for block in first..urgent_end.min(cut) {
            if cdn_inflight >= self.config.max_cdn_requests {
                break;
            }
            if self.has(block) || self.inflight_from(block, |s| *s == Source::Cdn) {
                continue;
            }
            // Deadline-aware: a block already coming from a peer is left to it until it is
            // the next block the player needs (a CDN fetch takes far less than a block's
            // time), so a P2P copy in flight is not doubled by the CDN.
            if self.next_needed().is_some_and(|next| block > next)
                && self.inflight_from(block, |s| matches!(s, Source::Peer(_)))
            {
                continue;
            }
            self.inflight.push(block, Source::Cdn);
            cdn_inflight += 1;
            actions.push(Action::Fetch {
                block,
                from: Source::Cdn,
            });
        }
        // Non-urgent zone: other substreams from neighbours, by sequence identifier, round by
        // round.
        // Requests in flight per peer: (peer, requests, bytes asked), a few entries.
        let mut asked = Asked::default();
        let mut total = 0;
        for (block, source) in self.inflight.iter() {
            if let Source::Peer(p) = source {
                let size = self.infos.get(block).map_or(0, |i| u64::from(i.size));
                asked.add(*p, size);
                total += 1;
            }
        }
        let mut wanted: Vec<u64> = (urgent_end.max(first)..cut)
            .filter(|&b| {
                !self.has(b) && !self.inflight.contains(b) && !self.expected_by_prefetch(b)
            })
            .collect();
        // The neighbours' held blocks over the wanted span as one word each (the span is the
        // non-urgent zone, a dozen blocks; a wider one, for a peer far behind, walks the
        // neighbours per block).
        let span = wanted.first().zip(wanted.last());
        let holders = span.filter(|(lo, hi)| *hi - *lo < 64).map(|(lo, _)| {
            self.peers
                .holders(*lo, std::mem::take(&mut self.holders_scratch))
        });
        wanted.sort_by_key(|&b| self.layout.fetch_key(b));
        for block in wanted {
            if total >= self.config.max_peer_requests {
                break;
            }
            let tried = self.tried.get(&block);
            if tried.is_some_and(|t| t.len() >= self.config.max_peer_attempts) {
                continue;
            }
            let substream = self.layout.substream_of(block);
            let down = &self.down;
            let max_per_peer = self.config.max_requests_per_peer;
            let usable = |id: PeerId| {
                !down.contains_key(&id)
                    && !tried.is_some_and(|t| t.contains(&id))
                    && asked.requests(id) < max_per_peer
            };
            let load = |id: PeerId| asked.requests(id);
            // A neighbour that told it holds the block, by spare upload (parent first).
            let mine = |id| asked.bytes(id);
            let pick = match &holders {
                Some(h) => self.peers.pick_in(h, block, substream, usable, mine),
                None => self.peers.pick(block, substream, usable, mine),
            }
            .or_else(|| {
                // A neighbour that prefetches the block's substream holds the request.
                self.peers
                    .prefetcher(holders.as_ref(), substream, usable, load)
            })
            .or_else(|| {
                // Only ask a neighbour with no buffer map after another was tried: it has
                // the block only if it already fetched it.
                tried.is_some_and(|t| !t.is_empty()).then_some(())?;
                self.peers.unmapped(holders.as_ref(), usable, load)
            });
            let Some(peer) = pick else { continue };
            asked.add(
                peer,
                self.infos.get(&block).map_or(0, |i| u64::from(i.size)),
            );
            total += 1;
            self.inflight.push(block, Source::Peer(peer));
            actions.push(Action::Fetch {
                block,
                from: Source::Peer(peer),
            });
        }
        if let Some(h) = holders {
            self.holders_scratch = h.into_list();
        }
    }

    fn update_lag(&mut self) {
        let playing = match self.player {
            Player::Playing { block, .. } => block,
            Player::Stalled { block, .. } => block.saturating_sub(1),
            Player::Waiting | Player::Done => return,
        };
        let edge = self.cut().saturating_sub(1);
        let lag = edge.saturating_sub(playing);
        self.stats.lag_blocks = lag;
        self.stats.max_lag_blocks = self.stats.max_lag_blocks.max(lag);
        self.stats.lag_ms = self
            .infos
            .range(playing + 1..)
            .map(|(_, i)| u64::from(i.duration_ms))
            .sum();
    }

    /// The next time the player's state changes by itself (the playing block ends), if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.player {
            Player::Playing { ends, .. } => Some(ends),
            _ => None,
        }
    }

    /// Whether the last block has been played.
    pub fn finished(&self) -> bool {
        self.player == Player::Done
    }

    /// Playback figures so far. A stall still open at the last poll counts (as one stall
    /// lasting until that poll): a run that ends while the player waits shows it.
    pub fn stats(&self) -> PlaybackStats {
        let mut stats = self.stats;
        if let (Player::Stalled { since, .. }, Some(now)) = (self.player, self.now) {
            let waited = now.saturating_duration_since(since);
            if waited >= Duration::from_millis(1) {
                stats.stalls += 1;
                stats.stall_ms += waited.as_millis() as u64;
                stats.stalled_now = true;
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests;
