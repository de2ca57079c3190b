//! The tracker: peers join a stream, get a substream to prefetch and hold, and learn a
//! bounded set of neighbours (seed 54-59; issue 16 item 3: a partial view of at most
//! [`TrackerConfig::neighbours`] peers, [`mesh`], and then only its changes). The number of substreams `s` follows the number of connected peers
//! within configured bounds (seed 50); a peer that leaves or stops sending heartbeats is
//! removed and its substreams are re-homed to the peers holding the fewest.
//!
//! [`Swarm`] is the sans-I/O core (time passed in); [`Tracker`] serves it over HTTP:
//!
//! | method and path | credential | body | answer |
//! | --- | --- | --- | --- |
//! | `POST /streams/{id}/join` | join token | [`JoinRequest`] | [`Joined`]: a random peer id, its session token and the [`View`] (404 for an unknown stream id) |
//! | `POST /streams/{id}/peers/{peer}/heartbeat` | the peer's session token | [`Heartbeat`] | [`View`]: the neighbours in full when its version is 0 or too old, else only those linked, changed or removed since (410 when the peer expired, 400 for a value out of range) |
//! | `DELETE /streams/{id}/peers/{peer}` | the peer's session token | | 204 (410 when unknown) |
//! | `GET /streams/{id}/view` | join token | | all members, a JSON array of [`PeerEntry`] |
//!
//! Credentials are `Authorization: Bearer TOKEN` headers ([`crate::auth`]): 401 when missing,
//! 403 when wrong, so no peer can heartbeat for or remove another. Peer ids are random 64-bit
//! values ([`Session::random`]), so ids from before a tracker restart never name a peer that
//! joined after it. Every value a peer reports is range-checked before any arithmetic
//! ([`MAX_REPORTED_CUT`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use svckit::redact::Secret;

pub mod mesh;
mod service;

pub use service::Tracker;

use crate::auth;
use crate::error::Error;
use crate::sched::PeerId;
use crate::substream::Layout;

/// Default neighbours per peer ([`TrackerConfig::neighbours`]).
pub const DEFAULT_NEIGHBOURS: usize = 24;

/// Allowed neighbours per peer (issue 16 item 3: 16 to 32).
pub const NEIGHBOURS_RANGE: std::ops::RangeInclusive<usize> = 16..=32;

/// Tracker settings for every stream it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// Stream ids the tracker serves; joining any other is an error (default `["live"]`).
    pub streams: Vec<String>,
    /// Lower bound of `s` (default 1).
    pub min_substreams: u32,
    /// Upper bound of `s` (default 16).
    pub max_substreams: u32,
    /// Blocks per block set `a` (default 1; seed 17).
    pub block_set: u32,
    /// A peer silent for this long is removed, in ms (default 1500).
    pub peer_timeout_ms: u64,
    /// A change of `s` takes effect this many blocks after the newest block a peer reported,
    /// so every peer learns it first (default 4).
    pub epoch_lead_blocks: u64,
    /// How many holders of a substream prefetch it from the CDN. `k >= 1` (default 1): only the
    /// `k` longest-standing holders do and the others replicate it from peers, so the CDN sends
    /// each substream at most `k` times however many peers there are (seed 55: the substreams
    /// are sent to the devices so that each stores one; with more viewers than substreams the
    /// extra holders get theirs over P2P). 0 means every holder prefetches its substream from
    /// the CDN, which caps the P2P ratio at `1 - 1/s`.
    pub cdn_prefetchers_per_substream: u32,
    /// One more CDN prefetcher per this many holders of a substream, `n` (default 4, chosen
    /// by measurement; 0: off): with `n >= 1` a substream with `h` holders has
    /// `max(k, h / n)` prefetchers, so the seeds of a large swarm grow with it (sim, 1,000
    /// peers, 120 s: one prefetcher per substream gave P2P 0.52 and CDN 497x the stream, as
    /// blocks had too little time to spread; `n = 4` gives 0.965 and 36x; a 50-peer swarm of
    /// 10 substreams keeps one). Ignored when `k` is 0.
    pub cdn_prefetch_per_holders: u32,
    /// Most peers per stream (default 10000); a join beyond is answered 503.
    pub max_peers: usize,
    /// Neighbours per peer, `k` (default 24, 16 to 32): the tracker gives each peer a random,
    /// stable set of at most `k` other peers (its partial view, [`mesh`]), refreshed when one
    /// of them leaves; peers exchange blocks only with their neighbours.
    pub neighbours: usize,
    /// The join token peers must present to join (and operators to read the view); required
    /// by [`Tracker::new`], at least 16 characters (env `P2PLIVE_TRACKER__JOIN_TOKEN`).
    pub join_token: Secret,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            streams: vec!["live".to_owned()],
            min_substreams: 1,
            max_substreams: 16,
            block_set: 1,
            peer_timeout_ms: 1500,
            epoch_lead_blocks: 4,
            cdn_prefetchers_per_substream: 1,
            cdn_prefetch_per_holders: 4,
            join_token: Secret::default(),
            max_peers: 10_000,
            neighbours: DEFAULT_NEIGHBOURS,
        }
    }
}

impl TrackerConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    /// [`Error::Config`] when a bound or `a` is 0, `min > max`, or `neighbours` is outside
    /// [`NEIGHBOURS_RANGE`].
    pub fn validate(&self) -> Result<(), Error> {
        if !NEIGHBOURS_RANGE.contains(&self.neighbours) {
            return Err(Error::Config(format!(
                "neighbours ({}) must be in {}..={}",
                self.neighbours,
                NEIGHBOURS_RANGE.start(),
                NEIGHBOURS_RANGE.end()
            )));
        }
        if self.min_substreams == 0
            || self.block_set == 0
            || self.min_substreams > self.max_substreams
        {
            return Err(Error::Config(format!(
                "need 1 <= min_substreams ({}) <= max_substreams ({}) and block_set ({}) >= 1",
                self.min_substreams, self.max_substreams, self.block_set
            )));
        }
        Ok(())
    }
}

/// How to reach a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// QUIC address, `127.0.0.1:port`.
    pub quic_addr: String,
    /// HTTP address of the peer's player endpoint.
    pub http_addr: String,
    /// The peer's self-signed TLS certificate (DER, hex): the only certificate accepted when
    /// connecting to it (pinning).
    pub cert_der_hex: String,
}

/// The longest certificate accepted in a contact, in hex characters (8 KiB of DER).
pub const MAX_CERT_HEX: usize = 16 * 1024;

impl Contact {
    /// Checks the contact a peer sent: `quic_addr` a socket address, `http_addr` empty or a
    /// socket address, `cert_der_hex` hex of at most [`MAX_CERT_HEX`] characters.
    ///
    /// # Errors
    /// [`Error::BadContact`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        let addr = |field: &str, value: &str, empty_ok: bool| {
            if (empty_ok && value.is_empty())
                || (value.len() <= 64 && value.parse::<std::net::SocketAddr>().is_ok())
            {
                Ok(())
            } else {
                Err(Error::BadContact(format!(
                    "{field} is not an IP:port address ({} bytes)",
                    value.len()
                )))
            }
        };
        addr("quic_addr", &self.quic_addr, false)?;
        addr("http_addr", &self.http_addr, true)?;
        let cert = &self.cert_der_hex;
        if cert.len() > MAX_CERT_HEX
            || !cert.len().is_multiple_of(2)
            || !cert.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Error::BadContact(format!(
                "cert_der_hex must be hex of at most {MAX_CERT_HEX} characters ({} given)",
                cert.len()
            )));
        }
        Ok(())
    }
}

/// Body of `POST /streams/{id}/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// How to reach the joining peer.
    pub contact: Contact,
}

/// The largest `cut` a heartbeat may report: 2^48 blocks (8.9 million years of 1 s blocks).
/// Anything above is refused with a 400, so the epoch arithmetic cannot overflow.
pub const MAX_REPORTED_CUT: u64 = 1 << 48;

/// A peer's credentials, issued by the tracker at join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The peer id: random, 64 bits, never 0.
    pub id: PeerId,
    /// The session token the peer presents on its heartbeats and its `DELETE`.
    pub token: Secret,
}

impl Session {
    /// A fresh random id and 256-bit token.
    ///
    /// # Errors
    /// [`Error::Random`] when the system random source fails.
    pub fn random() -> Result<Self, Error> {
        Ok(Self {
            id: auth::new_peer_id()?,
            token: auth::new_token()?,
        })
    }
}

/// The answer of `POST /streams/{id}/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The session token for this peer's heartbeats and `DELETE` (its id is `view.you`).
    pub session_token: Secret,
    /// The view, with all peers.
    pub view: View,
}

/// Body of a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Blocks the peer knows were cut.
    pub cut: u64,
    /// The view version the peer has; the answer omits `peers` when it is current.
    pub version: u64,
}

/// A peer as the tracker lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// Peer id.
    pub id: PeerId,
    /// How to reach it.
    pub contact: Contact,
    /// Substreams it holds (1-based).
    pub substreams: BTreeSet<u32>,
    /// The held substreams it prefetches from the CDN (the others it replicates from peers).
    pub prefetch: BTreeSet<u32>,
}

/// What a peer learns from the tracker: its assignment and its neighbourhood, in full or as
/// the changes since the version it has ([`mesh`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The asking peer's id.
    pub you: PeerId,
    /// Version of the view; bumped on every change of the swarm.
    pub version: u64,
    /// The substream layout.
    pub layout: Layout,
    /// Substreams the asking peer holds.
    pub substreams: BTreeSet<u32>,
    /// The held substreams the asking peer prefetches from the CDN.
    pub prefetch: BTreeSet<u32>,
    /// The asker's whole neighbour set (at most [`TrackerConfig::neighbours`] peers, never
    /// the asker), replacing what it had; `None` when a delta (or nothing) is enough.
    pub peers: Option<Vec<PeerEntry>>,
    /// With `peers` = `None`: neighbours linked, or whose entry changed, since the asker's
    /// version (add or replace them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<PeerEntry>,
    /// With `peers` = `None`: neighbours no longer in the asker's set since its version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<PeerId>,
}

impl View {
    /// Applies this view's neighbourhood to `known` (id -> entry): replaced by `peers` when
    /// given, else `changed` added or replaced and `removed` dropped.
    pub fn apply_to(&self, known: &mut BTreeMap<PeerId, PeerEntry>) {
        if let Some(peers) = &self.peers {
            known.clear();
            known.extend(
                peers
                    .iter()
                    .filter(|p| p.id != self.you)
                    .map(|p| (p.id, p.clone())),
            );
            return;
        }
        for id in &self.removed {
            known.remove(id);
        }
        for p in self.changed.iter().filter(|p| p.id != self.you) {
            known.insert(p.id, p.clone());
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    contact: Contact,
    substreams: BTreeSet<u32>,
    /// The held substreams it prefetches from the CDN.
    prefetch: BTreeSet<u32>,
    last_seen: Instant,
    /// SHA-256 of the session token.
    token: [u8; 32],
    /// Join order: older members have smaller numbers.
    seq: u64,
}

/// The sans-I/O state of one stream's swarm.
#[derive(Debug)]
pub struct Swarm {
    config: TrackerConfig,
    members: BTreeMap<PeerId, Member>,
    /// Substream -> its holders by join order.
    holders: BTreeMap<u32, BTreeSet<(u64, PeerId)>>,
    graph: mesh::Graph,
    layout: Layout,
    next_seq: u64,
    version: u64,
    max_cut: u64,
    /// Members whose entry (holdings or prefetch set) changed during the current operation.
    touched: BTreeSet<PeerId>,
}

impl Swarm {
    /// An empty swarm; `s` starts at the lower bound.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid bounds.
    pub fn new(config: TrackerConfig) -> Result<Self, Error> {
        config.validate()?;
        let layout = Layout::fixed(config.min_substreams, config.block_set)?;
        Ok(Self {
            graph: mesh::Graph::new(config.neighbours),
            config,
            members: BTreeMap::new(),
            holders: BTreeMap::new(),
            layout,
            next_seq: 0,
            version: 1,
            max_cut: 0,
            touched: BTreeSet::new(),
        })
    }

    /// The current layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the swarm has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The neighbours of `peer` (its partial view), by id.
    pub fn neighbours(&self, peer: PeerId) -> BTreeSet<PeerId> {
        self.graph.neighbours(peer).collect()
    }

    /// A new peer joins at `now` with the credentials `session` (drawn by the caller, e.g.
    /// [`Session::random`]): `s` is adapted, then the peer gets the least-covered substream
    /// and its neighbours. Returns its id.
    ///
    /// # Errors
    /// [`Error::BadContact`] for a malformed contact; [`Error::SwarmFull`] at `max_peers`;
    /// [`Error::IdTaken`] when `session.id` is already a member's (draw again).
    pub fn join(
        &mut self,
        now: Instant,
        contact: Contact,
        session: &Session,
    ) -> Result<PeerId, Error> {
        contact.validate()?;
        if self.members.len() >= self.config.max_peers {
            return Err(Error::SwarmFull(self.members.len()));
        }
        let id = session.id;
        if self.members.contains_key(&id) {
            return Err(Error::IdTaken(id));
        }
        self.version += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.members.insert(
            id,
            Member {
                contact,
                substreams: BTreeSet::new(),
                prefetch: BTreeSet::new(),
                last_seen: now,
                token: auth::digest(session.token.expose()),
                seq,
            },
        );
        self.graph.join(id, self.version);
        if !self.adapt() {
            self.assign_newcomer(id);
        }
        self.publish();
        Ok(id)
    }

    /// Member ids oldest first.
    fn by_age(&self) -> Vec<PeerId> {
        let mut ids: Vec<(u64, PeerId)> = self.members.iter().map(|(id, m)| (m.seq, *id)).collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Checks that `token` is `peer`'s session token (constant-time).
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] when the peer is not a member, [`Error::Unauthorized`] when no
    /// token was given, [`Error::Forbidden`] when it is not this peer's.
    pub fn authenticate(&self, peer: PeerId, token: Option<&str>) -> Result<(), Error> {
        let m = self.members.get(&peer).ok_or(Error::UnknownPeer(peer))?;
        let token = token.ok_or(Error::Unauthorized(peer))?;
        if auth::digests_equal(&auth::digest(token), &m.token) {
            Ok(())
        } else {
            Err(Error::Forbidden(peer))
        }
    }

    /// `peer` now holds `substream`.
    fn hold(&mut self, peer: PeerId, substream: u32) {
        let Some(m) = self.members.get_mut(&peer) else {
            return;
        };
        if m.substreams.insert(substream) {
            self.holders
                .entry(substream)
                .or_default()
                .insert((m.seq, peer));
            self.touched.insert(peer);
            self.refresh_prefetch(substream);
        }
    }

    /// `peer` no longer holds `substream`.
    fn unhold(&mut self, peer: PeerId, substream: u32) {
        let Some(m) = self.members.get_mut(&peer) else {
            return;
        };
        if m.substreams.remove(&substream) {
            m.prefetch.remove(&substream);
            if let Some(h) = self.holders.get_mut(&substream) {
                h.remove(&(m.seq, peer));
            }
            self.touched.insert(peer);
            self.refresh_prefetch(substream);
        }
    }

    /// Removes a member and its holdings (the caller re-homes).
    fn remove_member(&mut self, peer: PeerId) {
        let held: Vec<u32> = self
            .members
            .get(&peer)
            .map(|m| m.substreams.iter().copied().collect())
            .unwrap_or_default();
        for b in held {
            self.unhold(peer, b);
        }
        self.members.remove(&peer);
        self.touched.remove(&peer);
        self.graph.leave(peer, self.version);
    }

    /// Gives the first `cdn_prefetchers_per_substream` holders of `substream` by join order
    /// (all when 0; more with `cdn_prefetch_per_holders`) the prefetch of it. O(k) for
    /// k >= 1: one hold or unhold moves `k` by at most one, so the first `k + 1` holders are
    /// all that can change.
    fn refresh_prefetch(&mut self, substream: u32) {
        let Some(h) = self.holders.get(&substream) else {
            return;
        };
        let mut k = self.config.cdn_prefetchers_per_substream as usize;
        let per = self.config.cdn_prefetch_per_holders as usize;
        if k > 0 && per > 0 {
            k = k.max(h.len() / per);
        }
        let look = if k == 0 { usize::MAX } else { k + 1 };
        let ranked: Vec<(usize, PeerId)> = h
            .iter()
            .take(look)
            .enumerate()
            .map(|(i, (_, id))| (i, *id))
            .collect();
        for (i, id) in ranked {
            let should = k == 0 || i < k;
            if let Some(m) = self.members.get_mut(&id) {
                let changed = if should {
                    m.prefetch.insert(substream)
                } else {
                    m.prefetch.remove(&substream)
                };
                if changed {
                    self.touched.insert(id);
                }
            }
        }
    }

    /// Ends an operation: the members whose entry changed are logged in their neighbours'
    /// deltas at the current version.
    fn publish(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        for id in touched {
            if self.members.contains_key(&id) {
                self.graph.touch(id, self.version);
            }
        }
    }

    /// Gives a newcomer the least-covered substream. When every substream is held and some
    /// peer holds several (there were fewer peers than substreams), the newcomer takes one of
    /// them over instead, so the load spreads.
    fn assign_newcomer(&mut self, id: PeerId) {
        let s = self.layout.current().substreams;
        let least = (1..=s).min_by_key(|b| (self.holders(*b), *b)).unwrap_or(1);
        let busiest = self
            .members
            .iter()
            .filter(|(other, _)| **other != id)
            .max_by_key(|(_, m)| (m.substreams.len(), std::cmp::Reverse(m.seq)))
            .map(|(other, m)| (*other, m.substreams.len(), m.substreams.last().copied()));
        let pick = match busiest {
            Some((other, held, Some(last))) if self.holders(least) > 0 && held > 1 => {
                self.unhold(other, last);
                last
            }
            _ => least,
        };
        self.hold(id, pick);
    }

    fn holders(&self, substream: u32) -> usize {
        self.holders.get(&substream).map_or(0, BTreeSet::len)
    }

    /// Sets `s = clamp(peers, min, max)`; on a change adds an epoch and reassigns every peer
    /// round-robin in join order. Returns whether it reassigned.
    fn adapt(&mut self) -> bool {
        let n = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        let s = n.clamp(self.config.min_substreams, self.config.max_substreams);
        // `max_cut <= MAX_REPORTED_CUT` (heartbeat checks it), so this cannot wrap.
        let from = if self.max_cut == 0 {
            0
        } else {
            self.max_cut.saturating_add(self.config.epoch_lead_blocks)
        };
        let changed = self
            .layout
            .push(from, s, self.config.block_set)
            .unwrap_or(false);
        if changed || self.members.values().all(|m| m.substreams.is_empty()) {
            let ids = self.by_age();
            for id in &ids {
                let held: Vec<u32> = self.members[id].substreams.iter().copied().collect();
                for b in held {
                    self.unhold(*id, b);
                }
            }
            if !ids.is_empty() {
                for b in 1..=s {
                    self.hold(ids[(b as usize - 1) % ids.len()], b);
                }
                // More peers than substreams: the extra peers also hold one, least covered.
                for &id in ids.iter().skip(s as usize) {
                    let least = (1..=s).min_by_key(|b| (self.holders(*b), *b)).unwrap_or(1);
                    self.hold(id, least);
                }
            }
            return true;
        }
        false
    }

    /// A heartbeat at `now` from `peer`, presenting `token`, which has seen `cut` blocks.
    ///
    /// # Errors
    /// The errors of [`Swarm::authenticate`]; [`Error::OutOfRange`] when `cut` exceeds
    /// [`MAX_REPORTED_CUT`] or `cut + epoch_lead_blocks` overflows (nothing changes then).
    pub fn heartbeat(
        &mut self,
        now: Instant,
        peer: PeerId,
        token: Option<&str>,
        cut: u64,
    ) -> Result<(), Error> {
        self.authenticate(peer, token)?;
        if cut > MAX_REPORTED_CUT || cut.checked_add(self.config.epoch_lead_blocks).is_none() {
            return Err(Error::OutOfRange {
                field: "cut",
                value: cut,
                reason: format!("at most {MAX_REPORTED_CUT} blocks"),
            });
        }
        if let Some(m) = self.members.get_mut(&peer) {
            m.last_seen = now;
        }
        self.max_cut = self.max_cut.max(cut);
        Ok(())
    }

    /// Removes `peer`, presenting `token` (it left), and re-homes its substreams.
    ///
    /// # Errors
    /// The errors of [`Swarm::authenticate`]; nothing is removed then.
    pub fn leave(&mut self, peer: PeerId, token: Option<&str>) -> Result<(), Error> {
        self.authenticate(peer, token)?;
        self.version += 1;
        self.remove_member(peer);
        self.rehome();
        Ok(())
    }

    /// Removes the peers silent since before `now - peer_timeout`; returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let timeout = Duration::from_millis(self.config.peer_timeout_ms);
        let dead: Vec<PeerId> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last_seen) > timeout)
            .map(|(id, _)| *id)
            .collect();
        if !dead.is_empty() {
            self.version += 1;
            for id in &dead {
                self.remove_member(*id);
            }
            self.rehome();
        }
        dead
    }

    fn rehome(&mut self) {
        if !self.adapt() {
            let s = self.layout.current().substreams;
            for b in 1..=s {
                if self.holders(b) > 0 {
                    continue;
                }
                let target = self
                    .members
                    .iter()
                    .min_by_key(|(_, m)| (m.substreams.len(), m.seq))
                    .map(|(id, _)| *id);
                if let Some(id) = target {
                    self.hold(id, b);
                }
            }
        }
        self.publish();
    }

    fn entry(&self, id: PeerId) -> Option<PeerEntry> {
        self.members.get(&id).map(|m| PeerEntry {
            id,
            contact: m.contact.clone(),
            substreams: m.substreams.clone(),
            prefetch: m.prefetch.clone(),
        })
    }

    /// The view for `peer`, which has view version `known_version` (0: none): its whole
    /// neighbour set when it has none or too old a version, else only the neighbours linked,
    /// changed or removed since then (nothing when current). O(k), never the whole swarm.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] when the peer is not a member.
    pub fn view(&self, peer: PeerId, known_version: u64) -> Result<View, Error> {
        let m = self.members.get(&peer).ok_or(Error::UnknownPeer(peer))?;
        let mut view = View {
            you: peer,
            version: self.version,
            layout: self.layout.clone(),
            substreams: m.substreams.clone(),
            prefetch: m.prefetch.clone(),
            peers: None,
            changed: Vec::new(),
            removed: Vec::new(),
        };
        if known_version == self.version {
            return Ok(view);
        }
        let delta = self.graph.delta(peer, known_version, self.version);
        let entries: Vec<PeerEntry> = delta
            .changed
            .iter()
            .filter_map(|id| self.entry(*id))
            .collect();
        if delta.full {
            view.peers = Some(entries);
        } else {
            view.changed = entries;
            view.removed = delta.removed;
        }
        Ok(view)
    }

    /// All members, oldest first (the operator's `GET /streams/{id}/view`; peers never get
    /// this).
    pub fn entries(&self) -> Vec<PeerEntry> {
        self.by_age()
            .into_iter()
            .filter_map(|id| self.entry(id))
            .collect()
    }
}

#[cfg(test)]
mod tests;
