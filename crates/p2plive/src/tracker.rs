//! The tracker: peers join a stream, get a substream to prefetch and hold, and learn the other
//! peers (seed 54-59). The number of substreams `s` follows the number of connected peers
//! within configured bounds (seed 50); a peer that leaves or stops sending heartbeats is
//! removed and its substreams are re-homed to the peers holding the fewest.
//!
//! [`Swarm`] is the sans-I/O core (time passed in); [`Tracker`] serves it over HTTP:
//!
//! | method and path | credential | body | answer |
//! | --- | --- | --- | --- |
//! | `POST /streams/{id}/join` | join token | [`JoinRequest`] | [`Joined`]: a random peer id, its session token and the [`View`] (404 for an unknown stream id) |
//! | `POST /streams/{id}/peers/{peer}/heartbeat` | the peer's session token | [`Heartbeat`] | [`View`] (410 when the peer expired, 400 for a value out of range) |
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

mod service;

pub use service::Tracker;

use crate::auth;
use crate::error::Error;
use crate::sched::PeerId;
use crate::substream::Layout;

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
    /// Most peers per stream (default 10000); a join beyond is answered 503.
    pub max_peers: usize,
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
            join_token: Secret::default(),
            max_peers: 10_000,
        }
    }
}

impl TrackerConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    /// [`Error::Config`] when a bound or `a` is 0, or `min > max`.
    pub fn validate(&self) -> Result<(), Error> {
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

/// What a peer learns from the tracker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The asking peer's id.
    pub you: PeerId,
    /// Version of the view; bumped on every change.
    pub version: u64,
    /// The substream layout.
    pub layout: Layout,
    /// Substreams the asking peer holds.
    pub substreams: BTreeSet<u32>,
    /// The held substreams the asking peer prefetches from the CDN.
    pub prefetch: BTreeSet<u32>,
    /// All peers (including the asking one); `None` when the asker's version is current.
    pub peers: Option<Vec<PeerEntry>>,
}

#[derive(Debug, Clone)]
struct Member {
    contact: Contact,
    substreams: BTreeSet<u32>,
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
    layout: Layout,
    next_seq: u64,
    version: u64,
    max_cut: u64,
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
            config,
            members: BTreeMap::new(),
            layout,
            next_seq: 0,
            version: 1,
            max_cut: 0,
        })
    }

    /// The current layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A new peer joins at `now` with the credentials `session` (drawn by the caller, e.g.
    /// [`Session::random`]): `s` is adapted, then the peer gets the least-covered substream.
    /// Returns its id.
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
        let seq = self.next_seq;
        self.next_seq += 1;
        self.members.insert(
            id,
            Member {
                contact,
                substreams: BTreeSet::new(),
                last_seen: now,
                token: auth::digest(session.token.expose()),
                seq,
            },
        );
        if !self.adapt() {
            self.assign_newcomer(id);
        }
        self.version += 1;
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
            .map(|(other, m)| (*other, m.substreams.len()));
        let pick = match busiest {
            Some((other, held)) if self.holders(least) > 0 && held > 1 => {
                let moved = self
                    .members
                    .get_mut(&other)
                    .and_then(|m| m.substreams.pop_last());
                moved.unwrap_or(least)
            }
            _ => least,
        };
        if let Some(m) = self.members.get_mut(&id) {
            m.substreams.insert(pick);
        }
    }

    fn holders(&self, substream: u32) -> usize {
        self.members
            .values()
            .filter(|m| m.substreams.contains(&substream))
            .count()
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
            for m in self.members.values_mut() {
                m.substreams.clear();
            }
            if !ids.is_empty() {
                for b in 1..=s {
                    let id = ids[(b as usize - 1) % ids.len()];
                    if let Some(m) = self.members.get_mut(&id) {
                        m.substreams.insert(b);
                    }
                }
                // More peers than substreams: the extra peers also hold one, least covered.
                for &id in ids.iter().skip(s as usize) {
                    let least = (1..=s).min_by_key(|b| (self.holders(*b), *b)).unwrap_or(1);
                    if let Some(m) = self.members.get_mut(&id) {
                        m.substreams.insert(least);
                    }
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
        self.members.remove(&peer);
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
        for id in &dead {
            self.members.remove(id);
        }
        if !dead.is_empty() {
            self.rehome();
        }
        dead
    }

    fn rehome(&mut self) {
        self.version += 1;
        if self.adapt() {
            return;
        }
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
            if let Some(m) = target.and_then(|id| self.members.get_mut(&id)) {
                m.substreams.insert(b);
            }
        }
    }

    /// The substreams `peer` prefetches from the CDN: those it holds where it is among the
    /// first `cdn_prefetchers_per_substream` holders by join order (all of them when that
    /// is 0).
    fn prefetch_of(&self, peer: PeerId) -> BTreeSet<u32> {
        let Some(m) = self.members.get(&peer) else {
            return BTreeSet::new();
        };
        let k = self.config.cdn_prefetchers_per_substream as usize;
        if k == 0 {
            return m.substreams.clone();
        }
        m.substreams
            .iter()
            .copied()
            .filter(|b| {
                self.members
                    .values()
                    .filter(|o| o.substreams.contains(b) && o.seq < m.seq)
                    .count()
                    < k
            })
            .collect()
    }

    /// The view for `peer`; `peers` is omitted when `known_version` is current.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] when the peer is not a member.
    pub fn view(&self, peer: PeerId, known_version: u64) -> Result<View, Error> {
        let m = self.members.get(&peer).ok_or(Error::UnknownPeer(peer))?;
        Ok(View {
            you: peer,
            version: self.version,
            layout: self.layout.clone(),
            substreams: m.substreams.clone(),
            prefetch: self.prefetch_of(peer),
            peers: (known_version != self.version).then(|| self.entries()),
        })
    }

    /// All members, oldest first.
    pub fn entries(&self) -> Vec<PeerEntry> {
        let k = self.config.cdn_prefetchers_per_substream as usize;
        let mut prefetchers: BTreeMap<u32, usize> = BTreeMap::new();
        self.by_age()
            .into_iter()
            .filter_map(|id| self.members.get(&id).map(|m| (id, m)))
            .map(|(id, m)| {
                let prefetch = m
                    .substreams
                    .iter()
                    .copied()
                    .filter(|b| {
                        let n = prefetchers.entry(*b).or_default();
                        *n += 1;
                        k == 0 || *n <= k
                    })
                    .collect();
                PeerEntry {
                    id,
                    contact: m.contact.clone(),
                    substreams: m.substreams.clone(),
                    prefetch,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(n: u64) -> Contact {
        Contact {
            quic_addr: format!("127.0.0.1:{n}"),
            http_addr: String::new(),
            cert_der_hex: String::new(),
        }
    }

    fn session(id: PeerId) -> Session {
        Session {
            id,
            token: Secret::new(format!("session-token-of-{id}")),
        }
    }

    fn token(id: PeerId) -> Option<String> {
        Some(session(id).token.expose().to_owned())
    }

    /// Joins peer number `n` (id `n + 1`, as the first tests were written with ids in join
    /// order).
    fn add(swarm: &mut Swarm, now: Instant, n: u64) -> PeerId {
        swarm.join(now, contact(n), &session(n + 1)).unwrap()
    }

    fn fixed(s: u32) -> TrackerConfig {
        TrackerConfig {
            min_substreams: s,
            max_substreams: s,
            ..TrackerConfig::default()
        }
    }

    fn coverage(swarm: &Swarm) -> Vec<usize> {
        (1..=swarm.layout().current().substreams)
            .map(|b| swarm.holders(b))
            .collect()
    }

    #[test]
    fn joins_get_the_least_covered_substream() {
        let t0 = Instant::now();
        let mut swarm = Swarm::new(fixed(4)).unwrap();
        let ids: Vec<PeerId> = (0..6).map(|n| add(&mut swarm, t0, n)).collect();
        let subs: Vec<BTreeSet<u32>> = ids
            .iter()
            .map(|id| swarm.view(*id, 0).unwrap().substreams)
            .collect();
        // The first peer held all four until others came; each newcomer took one over.
        assert_eq!(subs[0], BTreeSet::from([1]));
        assert_eq!(subs[1], BTreeSet::from([4]));
        assert_eq!(subs[2], BTreeSet::from([3]));
        assert_eq!(subs[3], BTreeSet::from([2]));
        // Then the least covered.
        assert_eq!(subs[4], BTreeSet::from([1]));
        assert_eq!(subs[5], BTreeSet::from([2]));
        assert_eq!(coverage(&swarm), vec![2, 2, 1, 1]);
    }

    #[test]
    fn dead_peers_are_removed_and_substreams_rehomed() {
        let t0 = Instant::now();
        let mut swarm = Swarm::new(fixed(10)).unwrap();
        let ids: Vec<PeerId> = (0..10).map(|n| add(&mut swarm, t0, n)).collect();
        let later = t0 + Duration::from_millis(1000);
        for id in &ids[3..] {
            swarm
                .heartbeat(later, *id, token(*id).as_deref(), 5)
                .unwrap();
        }
        let dead = swarm.expire(t0 + Duration::from_millis(2000));
        assert_eq!(dead, ids[..3].to_vec());
        assert!(
            coverage(&swarm).iter().all(|&c| c == 1),
            "{:?}",
            coverage(&swarm)
        );
        let total: usize = swarm.entries().iter().map(|e| e.substreams.len()).sum();
        assert_eq!(total, 10);
        assert!(matches!(
            swarm.heartbeat(later, ids[0], token(ids[0]).as_deref(), 5),
            Err(Error::UnknownPeer(_))
        ));
        // A clean leave re-homes too.
        swarm.leave(ids[3], token(ids[3]).as_deref()).unwrap();
        assert!(coverage(&swarm).iter().all(|&c| c == 1));
    }

    #[test]
    fn substream_count_follows_peer_count_within_bounds() {
        let t0 = Instant::now();
        let config = TrackerConfig {
            min_substreams: 2,
            max_substreams: 4,
            ..TrackerConfig::default()
        };
        let mut swarm = Swarm::new(config).unwrap();
        let a = add(&mut swarm, t0, 1);
        assert_eq!(swarm.layout().current().substreams, 2);
        assert_eq!(swarm.view(a, 0).unwrap().substreams, BTreeSet::from([1, 2]));
        let ids: Vec<PeerId> = (2..=5).map(|n| add(&mut swarm, t0, n)).collect();
        assert_eq!(swarm.layout().current().substreams, 4, "capped at max");
        assert!(coverage(&swarm).iter().all(|&c| c >= 1));
        // Blocks were cut: the next change applies from a later block.
        swarm.heartbeat(t0, a, token(a).as_deref(), 20).unwrap();
        for id in &ids[1..] {
            swarm.leave(*id, token(*id).as_deref()).unwrap();
        }
        let layout = swarm.layout().clone();
        assert_eq!(layout.current().substreams, 2);
        assert_eq!(layout.current().from_block, 24);
        assert_eq!(layout.epoch_of(23).substreams, 4);
        assert!(coverage(&swarm).iter().all(|&c| c >= 1));
    }

    #[test]
    fn only_k_holders_per_substream_prefetch_from_the_cdn() {
        let t0 = Instant::now();
        let mut config = fixed(2);
        config.cdn_prefetchers_per_substream = 0;
        let all = {
            let mut swarm = Swarm::new(config.clone()).unwrap();
            (0..6).for_each(|n| {
                add(&mut swarm, t0, n);
            });
            swarm.entries()
        };
        assert!(
            all.iter().all(|e| e.prefetch == e.substreams),
            "k = 0: every holder"
        );
        config.cdn_prefetchers_per_substream = 1;
        let mut swarm = Swarm::new(config).unwrap();
        let ids: Vec<PeerId> = (0..6).map(|n| add(&mut swarm, t0, n)).collect();
        let prefetching: usize = swarm.entries().iter().map(|e| e.prefetch.len()).sum();
        assert_eq!(prefetching, 2, "one CDN prefetcher per substream");
        for b in 1..=2 {
            assert_eq!(
                swarm
                    .entries()
                    .iter()
                    .filter(|e| e.prefetch.contains(&b))
                    .count(),
                1
            );
        }
        // The prefetcher of a substream leaves: the next holder takes over.
        let first = swarm
            .entries()
            .into_iter()
            .find(|e| !e.prefetch.is_empty())
            .unwrap();
        swarm.leave(first.id, token(first.id).as_deref()).unwrap();
        for b in 1..=2 {
            assert_eq!(
                swarm
                    .entries()
                    .iter()
                    .filter(|e| e.prefetch.contains(&b))
                    .count(),
                1
            );
        }
        assert!(ids.len() == 6);
    }

    #[test]
    fn unchanged_version_omits_peers() {
        let t0 = Instant::now();
        let mut swarm = Swarm::new(fixed(2)).unwrap();
        let a = add(&mut swarm, t0, 1);
        let v = swarm.view(a, 0).unwrap();
        assert!(v.peers.is_some());
        assert!(swarm.view(a, v.version).unwrap().peers.is_none());
        assert!(
            Swarm::new(TrackerConfig {
                min_substreams: 3,
                max_substreams: 2,
                ..TrackerConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn malformed_contacts_and_joins_beyond_max_peers_are_refused() {
        let t0 = Instant::now();
        let mut swarm = Swarm::new(TrackerConfig {
            max_peers: 2,
            ..fixed(2)
        })
        .unwrap();
        for bad in [
            Contact {
                quic_addr: "not an address".to_owned(),
                ..contact(1)
            },
            Contact {
                http_addr: "x".repeat(100),
                ..contact(1)
            },
            Contact {
                cert_der_hex: "zz".to_owned(),
                ..contact(1)
            },
            Contact {
                cert_der_hex: "ab".repeat(MAX_CERT_HEX),
                ..contact(1)
            },
        ] {
            let error = swarm.join(t0, bad, &session(1)).unwrap_err();
            assert!(matches!(error, Error::BadContact(_)), "{error}");
        }
        add(&mut swarm, t0, 0);
        add(&mut swarm, t0, 1);
        let full = swarm.join(t0, contact(3), &session(3)).unwrap_err();
        assert!(matches!(full, Error::SwarmFull(2)), "{full}");
        assert_eq!(swarm.entries().len(), 2);
    }
}
