//! The tracker: peers join a stream, get a substream to prefetch and hold, and learn the other
//! peers (seed 54-59). The number of substreams `s` follows the number of connected peers
//! within configured bounds (seed 50); a peer that leaves or stops sending heartbeats is
//! removed and its substreams are re-homed to the peers holding the fewest.
//!
//! [`Swarm`] is the sans-I/O core (time passed in); [`Tracker`] serves it over HTTP:
//!
//! | method and path | body | answer |
//! | --- | --- | --- |
//! | `POST /streams/{id}/join` | [`JoinRequest`] | [`View`] (404 for an unknown stream id) |
//! | `POST /streams/{id}/peers/{peer}/heartbeat` | [`Heartbeat`] | [`View`] (410 when the peer expired) |
//! | `DELETE /streams/{id}/peers/{peer}` | | 204 |
//! | `GET /streams/{id}/view` | | all members, a JSON array of [`PeerEntry`] |

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

use crate::cdn::AppError;
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

/// Body of `POST /streams/{id}/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// How to reach the joining peer.
    pub contact: Contact,
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
}

/// The sans-I/O state of one stream's swarm.
#[derive(Debug)]
pub struct Swarm {
    config: TrackerConfig,
    members: BTreeMap<PeerId, Member>,
    layout: Layout,
    next_id: PeerId,
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
            next_id: 1,
            version: 1,
            max_cut: 0,
        })
    }

    /// The current layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A new peer joins at `now`: `s` is adapted, then the peer gets the least-covered
    /// substream. Returns its id.
    pub fn join(&mut self, now: Instant, contact: Contact) -> PeerId {
        let id = self.next_id;
        self.next_id += 1;
        self.members.insert(
            id,
            Member {
                contact,
                substreams: BTreeSet::new(),
                last_seen: now,
            },
        );
        if !self.adapt() {
            self.assign_newcomer(id);
        }
        self.version += 1;
        id
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
            .max_by_key(|(other, m)| (m.substreams.len(), std::cmp::Reverse(**other)))
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
        let from = if self.max_cut == 0 {
            0
        } else {
            self.max_cut + self.config.epoch_lead_blocks
        };
        let changed = self
            .layout
            .push(from, s, self.config.block_set)
            .unwrap_or(false);
        if changed || self.members.values().all(|m| m.substreams.is_empty()) {
            let ids: Vec<PeerId> = self.members.keys().copied().collect();
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

    /// A heartbeat from `peer` at `now`, which has seen `cut` blocks.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] when the peer expired or never joined.
    pub fn heartbeat(&mut self, now: Instant, peer: PeerId, cut: u64) -> Result<(), Error> {
        let m = self
            .members
            .get_mut(&peer)
            .ok_or(Error::UnknownPeer(peer))?;
        m.last_seen = now;
        self.max_cut = self.max_cut.max(cut);
        Ok(())
    }

    /// Removes a peer (it left) and re-homes its substreams.
    pub fn leave(&mut self, peer: PeerId) -> bool {
        if self.members.remove(&peer).is_none() {
            return false;
        }
        self.rehome();
        true
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
                .min_by_key(|(id, m)| (m.substreams.len(), **id))
                .map(|(id, _)| *id);
            if let Some(m) = target.and_then(|id| self.members.get_mut(&id)) {
                m.substreams.insert(b);
            }
        }
    }

    /// The substreams `peer` prefetches from the CDN: those it holds where it is among the
    /// first `cdn_prefetchers_per_substream` holders by id (all of them when that is 0).
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
                    .iter()
                    .filter(|(_, o)| o.substreams.contains(b))
                    .take(k)
                    .any(|(id, _)| *id == peer)
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

    /// All members.
    pub fn entries(&self) -> Vec<PeerEntry> {
        self.members
            .iter()
            .map(|(id, m)| PeerEntry {
                id: *id,
                contact: m.contact.clone(),
                substreams: m.substreams.clone(),
                prefetch: self.prefetch_of(*id),
            })
            .collect()
    }
}

/// The tracker service: one [`Swarm`] per configured stream.
#[derive(Debug, Clone)]
pub struct Tracker {
    swarms: Arc<Mutex<BTreeMap<String, Swarm>>>,
}

impl Tracker {
    /// A tracker serving `config.streams`.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid bounds.
    pub fn new(config: &TrackerConfig) -> Result<Self, Error> {
        let mut swarms = BTreeMap::new();
        for id in &config.streams {
            swarms.insert(id.clone(), Swarm::new(config.clone())?);
        }
        Ok(Self {
            swarms: Arc::new(Mutex::new(swarms)),
        })
    }

    fn with<T>(
        &self,
        stream: &str,
        f: impl FnOnce(&mut Swarm) -> Result<T, Error>,
    ) -> Result<T, AppError> {
        let mut swarms = self.swarms.lock().unwrap_or_else(PoisonError::into_inner);
        let swarm = swarms.get_mut(stream).ok_or_else(|| {
            AppError(
                StatusCode::NOT_FOUND,
                Error::UnknownStream(stream.to_owned()).to_string(),
            )
        })?;
        f(swarm).map_err(|e| match e {
            Error::UnknownPeer(_) => AppError(StatusCode::GONE, e.to_string()),
            other => AppError(StatusCode::BAD_REQUEST, other.to_string()),
        })
    }

    /// The members of `stream` (empty for an unknown stream).
    pub fn entries(&self, stream: &str) -> Vec<PeerEntry> {
        let swarms = self.swarms.lock().unwrap_or_else(PoisonError::into_inner);
        swarms.get(stream).map(Swarm::entries).unwrap_or_default()
    }

    /// Expires silent peers in every swarm; call periodically. Returns the removed ids.
    pub fn expire(&self, now: Instant) -> Vec<(String, PeerId)> {
        let mut swarms = self.swarms.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (stream, swarm) in swarms.iter_mut() {
            for id in swarm.expire(now) {
                tracing::info!(stream = %stream, peer = id, "peer timed out; substreams re-homed");
                out.push((stream.clone(), id));
            }
        }
        out
    }

    /// The routes listed in the module docs.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/streams/{id}/join", post(join))
            .route("/streams/{id}/peers/{peer}/heartbeat", post(heartbeat))
            .route("/streams/{id}/peers/{peer}", delete(leave))
            .route("/streams/{id}/view", get(view))
            .with_state(self.clone())
    }

    /// Runs [`Tracker::expire`] every 250 ms until the returned task is aborted.
    pub fn spawn_expiry(&self) -> tokio::task::JoinHandle<()> {
        let tracker = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                tracker.expire(Instant::now());
            }
        })
    }
}

async fn join(
    State(t): State<Tracker>,
    Path(stream): Path<String>,
    axum::Json(req): axum::Json<JoinRequest>,
) -> Result<axum::Json<View>, AppError> {
    t.with(&stream, |swarm| {
        let id = swarm.join(Instant::now(), req.contact);
        tracing::info!(stream = %stream, peer = id, "peer joined");
        swarm.view(id, 0)
    })
    .map(axum::Json)
}

async fn heartbeat(
    State(t): State<Tracker>,
    Path((stream, peer)): Path<(String, PeerId)>,
    axum::Json(hb): axum::Json<Heartbeat>,
) -> Result<axum::Json<View>, AppError> {
    t.with(&stream, |swarm| {
        swarm.heartbeat(Instant::now(), peer, hb.cut)?;
        swarm.view(peer, hb.version)
    })
    .map(axum::Json)
}

async fn leave(
    State(t): State<Tracker>,
    Path((stream, peer)): Path<(String, PeerId)>,
) -> Result<StatusCode, AppError> {
    t.with(&stream, |swarm| {
        swarm.leave(peer);
        tracing::info!(stream = %stream, peer, "peer left; substreams re-homed");
        Ok(StatusCode::NO_CONTENT)
    })
}

async fn view(
    State(t): State<Tracker>,
    Path(stream): Path<String>,
) -> Result<axum::Json<Vec<PeerEntry>>, AppError> {
    t.with(&stream, |swarm| Ok(swarm.entries())).map(axum::Json)
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
        let ids: Vec<PeerId> = (0..6).map(|n| swarm.join(t0, contact(n))).collect();
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
        let ids: Vec<PeerId> = (0..10).map(|n| swarm.join(t0, contact(n))).collect();
        let later = t0 + Duration::from_millis(1000);
        for id in &ids[3..] {
            swarm.heartbeat(later, *id, 5).unwrap();
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
            swarm.heartbeat(later, ids[0], 5),
            Err(Error::UnknownPeer(_))
        ));
        // A clean leave re-homes too.
        assert!(swarm.leave(ids[3]));
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
        let a = swarm.join(t0, contact(1));
        assert_eq!(swarm.layout().current().substreams, 2);
        assert_eq!(swarm.view(a, 0).unwrap().substreams, BTreeSet::from([1, 2]));
        let ids: Vec<PeerId> = (2..=5).map(|n| swarm.join(t0, contact(n))).collect();
        assert_eq!(swarm.layout().current().substreams, 4, "capped at max");
        assert!(coverage(&swarm).iter().all(|&c| c >= 1));
        // Blocks were cut: the next change applies from a later block.
        swarm.heartbeat(t0, a, 20).unwrap();
        for id in &ids[1..] {
            swarm.leave(*id);
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
                swarm.join(t0, contact(n));
            });
            swarm.entries()
        };
        assert!(
            all.iter().all(|e| e.prefetch == e.substreams),
            "k = 0: every holder"
        );
        config.cdn_prefetchers_per_substream = 1;
        let mut swarm = Swarm::new(config).unwrap();
        let ids: Vec<PeerId> = (0..6).map(|n| swarm.join(t0, contact(n))).collect();
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
        swarm.leave(first.id);
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
        let a = swarm.join(t0, contact(1));
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
}
