//! The tracker's neighbour graph (issue 16 item 3): each peer gets a bounded, random and
//! stable set of neighbours (its partial view), and the tracker remembers, per peer, which
//! neighbour entries changed at which view version, so a heartbeat answer carries only the
//! changes since the version the peer has (joins and leaves in its neighbourhood, or a
//! neighbour whose prefetch set changed), never the whole swarm.
//!
//! Links are symmetric. A newcomer links to random members that have room (fewer than `k`
//! neighbours); a member that is full instead gives up one of its links, to a neighbour `d`,
//! and both it and `d` link to the newcomer (an edge split: their degrees stay the same, the
//! newcomer gains two), so every degree stays at most `k` and a join changes O(k) entries.
//! When a peer leaves, its former neighbours are linked with each other where they can and
//! then topped up the same way. Random draws are a hash of the peer ids (random 64-bit
//! values) and a counter, so the graph is a deterministic function of the join and leave
//! sequence, and sampling a member costs O(log N): the first id at or after a random point.

use std::collections::{BTreeMap, BTreeSet};

use crate::sched::PeerId;

/// Tombstones (removed neighbours) remembered per peer, as a multiple of `k`; a peer whose
/// known version is older than the oldest one forgotten gets its full view again.
const TOMBS_PER_LINK: usize = 2;

/// Draws per missing link before giving up (a swarm much larger than `k` fills on the first
/// few).
const DRAWS_PER_LINK: usize = 8;

#[derive(Debug, Clone, Default)]
struct Node {
    neighbours: BTreeSet<PeerId>,
    /// Neighbour id -> the version at which it was linked or its entry last changed.
    changed: BTreeMap<PeerId, u64>,
    /// Former neighbour id -> the version at which the link was removed.
    removed: BTreeMap<PeerId, u64>,
    /// Versions at or below this are too old for a delta (tombstones were dropped).
    floor: u64,
}

/// What changed in one peer's neighbourhood since a version it names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delta {
    /// The full neighbour set is needed (first view, or the known version is too old).
    pub full: bool,
    /// Neighbours linked or changed since then (all neighbours when `full`).
    pub changed: Vec<PeerId>,
    /// Former neighbours removed since then (empty when `full`).
    pub removed: Vec<PeerId>,
}

/// The neighbour graph; see the module docs.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Target (and largest) neighbour count `k`.
    k: usize,
    nodes: BTreeMap<PeerId, Node>,
    draws: u64,
}

/// splitmix64 of `a ^ rotated b`: a well-mixed 64-bit hash of two values.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Graph {
    /// An empty graph where every peer gets at most `k` neighbours (at least 1).
    pub fn new(k: usize) -> Self {
        Self {
            k: k.max(1),
            nodes: BTreeMap::new(),
            draws: 0,
        }
    }

    /// The neighbours of `peer` (empty for an unknown one).
    pub fn neighbours(&self, peer: PeerId) -> impl Iterator<Item = PeerId> + '_ {
        self.nodes
            .get(&peer)
            .into_iter()
            .flat_map(|n| n.neighbours.iter().copied())
    }

    /// Number of neighbours of `peer`.
    pub fn degree(&self, peer: PeerId) -> usize {
        self.nodes.get(&peer).map_or(0, |n| n.neighbours.len())
    }

    fn linked(&self, a: PeerId, b: PeerId) -> bool {
        self.nodes
            .get(&a)
            .is_some_and(|n| n.neighbours.contains(&b))
    }

    fn link(&mut self, a: PeerId, b: PeerId, version: u64) {
        for (x, y) in [(a, b), (b, a)] {
            if let Some(n) = self.nodes.get_mut(&x) {
                n.neighbours.insert(y);
                n.changed.insert(y, version);
                n.removed.remove(&y);
            }
        }
    }

    fn unlink(&mut self, a: PeerId, b: PeerId, version: u64) {
        let keep = self.k * TOMBS_PER_LINK;
        for (x, y) in [(a, b), (b, a)] {
            if let Some(n) = self.nodes.get_mut(&x) {
                n.neighbours.remove(&y);
                n.changed.remove(&y);
                n.removed.insert(y, version);
                while n.removed.len() > keep {
                    let Some((&oldest, &at)) = n.removed.iter().min_by_key(|(_, v)| **v) else {
                        break;
                    };
                    n.removed.remove(&oldest);
                    n.floor = n.floor.max(at);
                }
            }
        }
    }

    /// A random member (other than `not`), or None for a swarm of only `not`.
    fn draw(&mut self, salt: PeerId, not: PeerId) -> Option<PeerId> {
        self.draws = self.draws.wrapping_add(1);
        let point = mix(salt, self.draws);
        self.nodes
            .range(point..)
            .map(|(id, _)| *id)
            .find(|id| *id != not)
            .or_else(|| self.nodes.keys().copied().find(|id| *id != not))
    }

    /// Adds `peer` (at view `version`) and links it to up to `k` random members. Returns the
    /// peers whose neighbour sets changed.
    pub fn join(&mut self, peer: PeerId, version: u64) -> BTreeSet<PeerId> {
        self.nodes.insert(
            peer,
            Node {
                floor: version.saturating_sub(1),
                ..Node::default()
            },
        );
        let mut touched = BTreeSet::from([peer]);
        self.fill(peer, version, &mut touched);
        touched
    }

    /// Tops `peer` up towards `k` neighbours: random members with room get a direct link, a
    /// full one splits one of its links (see the module docs).
    fn fill(&mut self, peer: PeerId, version: u64, touched: &mut BTreeSet<PeerId>) {
        let others = self.nodes.len().saturating_sub(1);
        let want = self.k.min(others);
        if self.degree(peer) >= want {
            return;
        }
        if others <= 2 * self.k {
            // A small swarm: go through every member in a random order.
            let mut order: Vec<PeerId> = self
                .nodes
                .keys()
                .copied()
                .filter(|id| *id != peer)
                .collect();
            order.sort_by_key(|id| mix(peer, *id));
            for other in order {
                if self.degree(peer) >= want {
                    return;
                }
                self.offer(peer, other, version, touched);
            }
            return;
        }
        let mut draws = (want - self.degree(peer)) * DRAWS_PER_LINK;
        while self.degree(peer) < want && draws > 0 {
            draws -= 1;
            if let Some(other) = self.draw(peer, peer) {
                self.offer(peer, other, version, touched);
            }
        }
    }

    /// Links `peer` to `other` directly when `other` has room, else by splitting one of
    /// `other`'s links when `peer` has room for two.
    fn offer(&mut self, peer: PeerId, other: PeerId, version: u64, touched: &mut BTreeSet<PeerId>) {
        if other == peer || self.linked(peer, other) {
            return;
        }
        if self.degree(other) < self.k {
            self.link(peer, other, version);
            touched.insert(other);
            return;
        }
        if self.degree(peer) + 2 > self.k {
            return;
        }
        let split = self
            .neighbours(other)
            .filter(|d| *d != peer && !self.linked(peer, *d))
            .min_by_key(|d| mix(peer ^ other, *d));
        if let Some(d) = split {
            self.unlink(other, d, version);
            self.link(peer, other, version);
            self.link(peer, d, version);
            touched.extend([other, d]);
        }
    }

    /// Removes `peer` (at view `version`) and repairs its former neighbours' sets. Returns
    /// the peers whose neighbour sets changed.
    pub fn leave(&mut self, peer: PeerId, version: u64) -> BTreeSet<PeerId> {
        let former: Vec<PeerId> = self.neighbours(peer).collect();
        for other in &former {
            self.unlink(peer, *other, version);
        }
        self.nodes.remove(&peer);
        let mut touched: BTreeSet<PeerId> = former.iter().copied().collect();
        // Former neighbours first link with each other (each lost one link)...
        for (i, a) in former.iter().enumerate() {
            for b in &former[i + 1..] {
                if self.degree(*a) < self.k && self.degree(*b) < self.k && !self.linked(*a, *b) {
                    self.link(*a, *b, version);
                    break;
                }
            }
        }
        // ...then whoever is still short draws from the swarm.
        for a in &former {
            self.fill(*a, version, &mut touched);
        }
        touched
    }

    /// Records that `peer`'s own entry changed at `version` (e.g. its prefetch set), so
    /// every neighbour's next delta carries it.
    pub fn touch(&mut self, peer: PeerId, version: u64) {
        let neighbours: Vec<PeerId> = self.neighbours(peer).collect();
        for n in neighbours {
            if let Some(node) = self.nodes.get_mut(&n) {
                node.changed.insert(peer, version);
            }
        }
    }

    /// The changes in `peer`'s neighbourhood after version `known` (0: none known), up to
    /// the current version `current`. O(k).
    pub fn delta(&self, peer: PeerId, known: u64, current: u64) -> Delta {
        let Some(node) = self.nodes.get(&peer) else {
            return Delta::default();
        };
        if known == 0 || known < node.floor || known > current {
            return Delta {
                full: true,
                changed: node.neighbours.iter().copied().collect(),
                removed: Vec::new(),
            };
        }
        Delta {
            full: false,
            changed: node
                .changed
                .iter()
                .filter(|(_, v)| **v > known)
                .map(|(id, _)| *id)
                .collect(),
            removed: node
                .removed
                .iter()
                .filter(|(_, v)| **v > known)
                .map(|(id, _)| *id)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64) -> Vec<PeerId> {
        (1..=n).map(|i| mix(i, 77) | 1).collect()
    }

    fn symmetric_and_bounded(g: &Graph, k: usize) {
        for (id, node) in &g.nodes {
            assert!(
                node.neighbours.len() <= k,
                "{id}: {}",
                node.neighbours.len()
            );
            assert!(!node.neighbours.contains(id));
            for n in &node.neighbours {
                assert!(g.linked(*n, *id), "{id} -> {n} not symmetric");
            }
        }
    }

    #[test]
    fn degrees_stay_bounded_and_filled_through_joins_and_leaves() {
        let k = 16;
        let mut g = Graph::new(k);
        let all = ids(400);
        let mut v = 1;
        for id in &all {
            v += 1;
            let touched = g.join(*id, v);
            // A join changes O(k) neighbour sets, not O(N).
            assert!(touched.len() <= 2 * k + 1, "{}", touched.len());
        }
        symmetric_and_bounded(&g, k);
        let short = g
            .nodes
            .values()
            .filter(|n| n.neighbours.len() < k - 1)
            .count();
        assert_eq!(
            short, 0,
            "every peer of a large swarm gets (nearly) k neighbours"
        );
        for id in all.iter().step_by(3) {
            v += 1;
            let touched = g.leave(*id, v);
            assert!(touched.len() <= 2 * k + 1, "{}", touched.len());
        }
        symmetric_and_bounded(&g, k);
        let short = g
            .nodes
            .values()
            .filter(|n| n.neighbours.len() < k - 1)
            .count();
        assert!(short <= 2, "{short} peers left short after the leaves");
    }

    #[test]
    fn a_small_swarm_is_fully_linked() {
        let mut g = Graph::new(24);
        for (i, id) in ids(10).iter().enumerate() {
            g.join(*id, i as u64 + 2);
        }
        assert!(g.nodes.values().all(|n| n.neighbours.len() == 9));
    }

    #[test]
    fn a_delta_names_only_the_changes_since_the_known_version() {
        let mut g = Graph::new(16);
        let all = ids(100);
        for (i, id) in all.iter().enumerate() {
            g.join(*id, i as u64 + 2);
        }
        let current = all.len() as u64 + 1;
        let me = all[0];
        let full = g.delta(me, 0, current);
        assert!(full.full);
        assert_eq!(full.changed.len(), g.degree(me));
        assert!(g.delta(me, current, current).changed.is_empty());
        // One of my neighbours leaves: the next delta names it as removed and at most the
        // replacement links as changed.
        let gone = g.neighbours(me).next().unwrap();
        g.leave(gone, current + 1);
        let d = g.delta(me, current, current + 1);
        assert!(!d.full);
        assert!(d.removed.contains(&gone) && d.removed.len() <= 2, "{d:?}");
        assert!(d.changed.len() <= 2, "{d:?}");
    }
}
