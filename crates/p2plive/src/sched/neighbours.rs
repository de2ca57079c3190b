//! What a peer knows about its neighbours (issue 16 item 3): which blocks each holds (its
//! buffer map, then one "have" per block it gets) and how much upload it has to spare
//! (advertised capacity minus its current load), and the choice of a source among them.
//!
//! The source of a block of substream `b` is the substream's *parent* (New Coolstreaming's
//! per-substream parent) while the parent holds the block and has upload to spare; otherwise
//! the neighbour holding it with the most spare upload, which becomes the new parent. A
//! parent that leaves the neighbour set, fails a fetch or goes down is dropped, so the next
//! block re-selects. A poll reads every neighbour's held blocks over the wanted span once, as
//! one 64-bit word each ([`Neighbours::holders`]), so choosing a source for each wanted block
//! is a bit test per neighbour ([`Neighbours::pick_in`], tested against the scan
//! [`Neighbours::pick`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::PeerId;
use super::idmap::IdMap;

/// Most 64-block words in a [`BufferMap`] (512 blocks, over 8 minutes of 1 s blocks).
pub const MAX_MAP_WORDS: usize = 8;

/// A compact buffer map: block `first + i` is held when bit `i % 64` of word `i / 64` is set.
/// Blocks before `first` or past the last word are not listed (not held, or too far ahead).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferMap {
    /// The first block the bitmap covers.
    pub first: u64,
    /// The bitmap, at most [`MAX_MAP_WORDS`] words.
    pub bits: Vec<u64>,
}

impl BufferMap {
    /// The map of the held blocks `have`, from the oldest held on, for at most
    /// `64 * MAX_MAP_WORDS` blocks (newer ones are left out).
    pub fn of(have: &BTreeSet<u64>) -> Self {
        Self::of_sorted(have.iter().copied())
    }

    /// [`BufferMap::of`] the held blocks `have`, given in increasing order.
    pub fn of_sorted(have: impl IntoIterator<Item = u64>) -> Self {
        let mut have = have.into_iter().peekable();
        let Some(&first) = have.peek() else {
            return Self::default();
        };
        let span = 64 * MAX_MAP_WORDS as u64;
        let mut bits = Vec::new();
        for n in have.take_while(|n| *n < first.saturating_add(span)) {
            let i = n - first;
            let word = (i / 64) as usize;
            if bits.len() <= word {
                bits.resize(word + 1, 0);
            }
            bits[word] |= 1 << (i % 64);
        }
        Self { first, bits }
    }

    /// Whether block `n` is listed as held.
    pub fn has(&self, n: u64) -> bool {
        let Some(i) = n.checked_sub(self.first) else {
            return false;
        };
        let word = usize::try_from(i / 64).unwrap_or(usize::MAX);
        self.bits
            .get(word)
            .is_some_and(|w| (w >> (i % 64)) & 1 == 1)
    }

    /// The blocks listed, in order (at most [`MAX_MAP_WORDS`] words are read).
    pub fn blocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.bits
            .iter()
            .take(MAX_MAP_WORDS)
            .enumerate()
            .flat_map(move |(w, &word)| {
                (0..64u64)
                    .filter(move |b| (word >> b) & 1 == 1)
                    .map(move |b| self.first.saturating_add(w as u64 * 64 + b))
            })
    }
}

/// Most 64-block words a [`BlockSet`] spans: 8 words, 512 blocks (over 8 minutes of 1 s
/// blocks, as much as a [`BufferMap`] lists and far more than a peer's window keeps).
const SET_WORDS: usize = 8;

/// The blocks a neighbour told it holds, as a bitmap over a sliding span of at most
/// [`SET_WORDS`] aligned 64-block words kept inline (one cache line, no heap): `contains` and
/// `word_at` read one or two words (the scheduler reads every neighbour's word on every
/// poll, the simulator's hottest path). Word `w` (blocks `64 w .. 64 w + 64`) lives in slot
/// `w % SET_WORDS` while `lo <= w < hi`; slots outside the span are zero. A block past the
/// span's end slides the span forward and forgets the oldest blocks; a block before its start
/// that would stretch it beyond the bound is ignored. Within the bound it answers exactly as a
/// set does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct BlockSet {
    /// First word index of the span (`lo == hi`: empty).
    lo: u64,
    /// One past the last word index of the span.
    hi: u64,
    words: [u64; SET_WORDS],
}

impl BlockSet {
    /// The word of blocks `64 w .. 64 w + 64` (0 outside the span).
    fn word(&self, w: u64) -> u64 {
        if w >= self.lo && w < self.hi {
            self.words[(w % SET_WORDS as u64) as usize]
        } else {
            0
        }
    }

    /// Zeroes the slots of word indices `from..to` (all slots when that is the whole ring).
    fn clear_words(&mut self, from: u64, to: u64) {
        if to.saturating_sub(from) >= SET_WORDS as u64 {
            self.words = [0; SET_WORDS];
            return;
        }
        for w in from..to {
            self.words[(w % SET_WORDS as u64) as usize] = 0;
        }
    }

    /// Whether block `n` is in the set.
    pub(super) fn contains(&self, n: u64) -> bool {
        (self.word(n / 64) >> (n % 64)) & 1 == 1
    }

    /// The blocks `lo..lo + 64` as one word: bit `i` set when block `lo + i` is in the set
    /// (blocks past `u64::MAX` are not).
    pub(super) fn word_at(&self, lo: u64) -> u64 {
        let (w, shift) = (lo / 64, lo % 64);
        let low = self.word(w) >> shift;
        if shift == 0 {
            low
        } else {
            low | self.word(w + 1) << (64 - shift)
        }
    }

    /// Adds block `n` (see the type's docs for blocks outside the span).
    pub(super) fn insert(&mut self, n: u64) {
        let w = n / 64;
        let span = SET_WORDS as u64;
        if self.lo == self.hi {
            self.lo = w;
            self.hi = w + 1;
        } else if w < self.lo {
            if self.hi - w > span {
                return;
            }
            self.lo = w;
        } else if w >= self.hi {
            let lo = (w + 1).saturating_sub(span).max(self.lo);
            self.clear_words(self.lo, lo.min(self.hi));
            self.lo = lo;
            self.hi = w + 1;
        }
        self.words[(w % span) as usize] |= 1 << (n % 64);
    }

    /// Drops the blocks below `n`.
    pub(super) fn forget_before(&mut self, n: u64) {
        let w = n / 64;
        if w >= self.hi {
            self.clear_words(self.lo, self.hi);
            self.lo = w;
            self.hi = w;
            return;
        }
        if w > self.lo {
            self.clear_words(self.lo, w);
            self.lo = w;
        }
        if w == self.lo {
            self.words[(w % SET_WORDS as u64) as usize] &= u64::MAX << (n % 64);
        }
    }
}

impl FromIterator<u64> for BlockSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut set = Self::default();
        for n in iter {
            set.insert(n);
        }
        set
    }
}

/// The upload a neighbour advertises with its buffer map and haves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Its upload capacity (its cap, or its measured link rate), bytes/s.
    pub cap_bytes_per_s: u64,
    /// Bytes it has queued to upload now (its current load over the next second).
    pub queued_bytes: u64,
}

/// One neighbour as the scheduler knows it.
#[derive(Debug, Clone, Default)]
pub(super) struct Neighbour {
    /// The substreams it prefetches from the CDN (it will hold their new blocks).
    pub(super) prefetch: BTreeSet<u32>,
    /// Blocks it told it holds.
    pub(super) have: BlockSet,
    /// Whether it sent a buffer map (else it is asked only as a last resort).
    pub(super) map_known: bool,
    /// Its last advertised upload.
    pub(super) upload: Option<Upload>,
    /// Busy refusals in a row (reset when it serves a block).
    pub(super) refusals: u32,
    /// `prefetch` as bits (bit `b - 1` for substream `b`, substreams 1 to 64) and whether it
    /// holds a substream above 64, kept by [`Neighbours::set`] for [`Neighbours::holders`].
    prefetch_bits: (u64, bool),
}

/// The substreams `prefetch` as bits (bit `b - 1` for substream `b`, 1 to 64), and whether
/// one is outside them.
fn prefetch_bits(prefetch: &BTreeSet<u32>) -> (u64, bool) {
    let mut bits = 0u64;
    let mut wide = false;
    for &b in prefetch {
        match b.checked_sub(1).filter(|i| *i < 64) {
            Some(i) => bits |= 1 << i,
            None => wide = true,
        }
    }
    (bits, wide)
}

impl Neighbour {
    /// Spare upload in bytes over the next second: advertised capacity minus its queue and
    /// the `mine` bytes this peer already asked it for. Unknown capacity counts as 0.
    pub(super) fn spare(&self, mine: u64) -> i128 {
        let up = self.upload.unwrap_or_default();
        i128::from(up.cap_bytes_per_s) - i128::from(up.queued_bytes) - i128::from(mine)
    }
}

/// One neighbour in a [`Holders`] snapshot.
#[derive(Debug, Clone, Copy)]
pub(super) struct Holder {
    id: PeerId,
    /// Bit `i`: it holds block `lo + i`.
    bits: u64,
    /// Its spare upload before this peer's requests ([`Neighbour::spare`] of 0).
    spare: i128,
    /// Bit `b - 1`: it prefetches substream `b` (substreams 1 to 64).
    prefetch: u64,
    /// It sent a buffer map.
    map_known: bool,
}

/// The neighbours' held blocks in `lo..lo + 64` and their spare upload, for one poll.
#[derive(Debug, Clone)]
pub(super) struct Holders {
    lo: u64,
    /// The union of the neighbours' words: blocks some neighbour holds.
    any: u64,
    /// Some neighbour prefetches a substream above 64 (not in the `prefetch` words).
    wide: bool,
    list: Vec<Holder>,
}

impl Holders {
    /// The snapshot's list, for [`Neighbours::holders`] to reuse.
    pub(super) fn into_list(self) -> Vec<Holder> {
        self.list
    }
}

/// The neighbours and the per-substream parents.
#[derive(Debug, Default)]
pub(super) struct Neighbours {
    pub(super) peers: IdMap<Neighbour>,
    /// Substream -> its parent.
    pub(super) parents: BTreeMap<u32, PeerId>,
    /// Times a parent was (re-)selected.
    pub(super) parent_changes: u64,
}

impl Neighbours {
    /// Replaces the neighbour set (id -> prefetched substreams), keeping what is known about
    /// the ones that stay; parents that left are dropped.
    pub(super) fn set(&mut self, peers: BTreeMap<PeerId, BTreeSet<u32>>) {
        self.peers.retain(|id, _| peers.contains_key(id));
        for (id, prefetch) in peers {
            let n = self.peers.get_or_default(id);
            n.prefetch_bits = prefetch_bits(&prefetch);
            n.prefetch = prefetch;
        }
        let peers = &self.peers;
        self.parents.retain(|_, p| peers.contains_key(p));
    }

    /// Marks `peer`'s upload as full (it refused a request) until its next advert; returns
    /// its busy refusals in a row, this one included (0 for a peer that is not a neighbour).
    pub(super) fn saturate(&mut self, peer: PeerId) -> u32 {
        let Some(n) = self.peers.get_mut(&peer) else {
            return 0;
        };
        let cap = n.upload.map_or(0, |u| u.cap_bytes_per_s);
        n.upload = Some(Upload {
            cap_bytes_per_s: cap,
            queued_bytes: cap,
        });
        n.refusals = n.refusals.saturating_add(1);
        n.refusals
    }

    /// `peer` served a block: its busy refusals in a row start again from 0.
    pub(super) fn served(&mut self, peer: PeerId) {
        if let Some(n) = self.peers.get_mut(&peer) {
            n.refusals = 0;
        }
    }

    /// Drops `peer` as parent of any substream (it failed or went down).
    pub(super) fn drop_parent(&mut self, peer: PeerId) {
        self.parents.retain(|_, p| *p != peer);
    }

    /// Forgets held blocks below `block`.
    pub(super) fn forget_before(&mut self, block: u64) {
        for n in self.peers.values_mut() {
            n.have.forget_before(block);
        }
    }

    /// What [`Neighbours::pick_in`] needs of every neighbour for the blocks `lo..lo + 64`,
    /// read once per poll: the blocks it holds there as one word, and its spare upload
    /// before this peer's requests. Picking a source then costs one bit test per neighbour
    /// instead of a set lookup, a map walk and two spare computations.
    /// `list` is any earlier snapshot's list ([`Holders::into_list`]), reused for its
    /// allocation.
    pub(super) fn holders(&self, lo: u64, mut list: Vec<Holder>) -> Holders {
        let mut any = 0;
        let mut wide = false;
        list.clear();
        list.extend(self.peers.iter().map(|(id, n)| {
            let bits = n.have.word_at(lo);
            any |= bits;
            let (prefetch, beyond) = n.prefetch_bits;
            wide |= beyond;
            Holder {
                id: *id,
                bits,
                spare: n.spare(0),
                prefetch,
                map_known: n.map_known,
            }
        }));
        Holders {
            lo,
            any,
            wide,
            list,
        }
    }

    /// The neighbour to hold a request for a block of `substream` it prefetches: among the
    /// usable ones, the least loaded (`load`),
    /// then the lowest id. From `holders` when given (and it covers the substream), else a
    /// walk of the neighbours; both give the same answer.
    pub(super) fn prefetcher(
        &self,
        holders: Option<&Holders>,
        substream: u32,
        usable: impl Fn(PeerId) -> bool,
        load: impl Fn(PeerId) -> usize,
    ) -> Option<PeerId> {
        let bit = substream.checked_sub(1).filter(|i| *i < 64);
        if let (Some(h), Some(bit)) = (holders.filter(|h| !h.wide), bit) {
            return h
                .list
                .iter()
                .filter(|n| (n.prefetch >> bit) & 1 == 1 && usable(n.id))
                .min_by_key(|n| (load(n.id), n.id))
                .map(|n| n.id);
        }
        self.peers
            .iter()
            .filter(|(id, n)| n.prefetch.contains(&substream) && usable(**id))
            .min_by_key(|(id, _)| (load(**id), **id))
            .map(|(id, _)| *id)
    }

    /// The usable neighbour with no buffer map yet, least loaded then lowest id (from
    /// `holders` when given; the same answer as the walk).
    pub(super) fn unmapped(
        &self,
        holders: Option<&Holders>,
        usable: impl Fn(PeerId) -> bool,
        load: impl Fn(PeerId) -> usize,
    ) -> Option<PeerId> {
        if let Some(h) = holders {
            return h
                .list
                .iter()
                .filter(|n| !n.map_known && usable(n.id))
                .min_by_key(|n| (load(n.id), n.id))
                .map(|n| n.id);
        }
        self.peers
            .iter()
            .filter(|(id, n)| !n.map_known && usable(**id))
            .min_by_key(|(id, _)| (load(**id), **id))
            .map(|(id, _)| *id)
    }

    /// [`Neighbours::pick`] for a block in `holders`' 64 blocks, from that snapshot (the same
    /// answer while the neighbours' held blocks and adverts stay as they were when it was
    /// taken). None for a block outside them.
    pub(super) fn pick_in(
        &mut self,
        holders: &Holders,
        block: u64,
        substream: u32,
        usable: impl Fn(PeerId) -> bool,
        mine: impl Fn(PeerId) -> u64,
    ) -> Option<PeerId> {
        let bit = block.checked_sub(holders.lo).filter(|i| *i < 64)?;
        if (holders.any >> bit) & 1 == 0 {
            return None;
        }
        let spare = |h: &Holder| h.spare - i128::from(mine(h.id));
        let candidates = holders
            .list
            .iter()
            .filter(|h| (h.bits >> bit) & 1 == 1 && usable(h.id));
        if let Some(&parent) = self.parents.get(&substream)
            && let Some(h) = holders.list.iter().find(|h| h.id == parent)
            && (h.bits >> bit) & 1 == 1
            && usable(parent)
            && spare(h) > 0
        {
            return Some(parent);
        }
        let best = candidates
            .map(|h| (spare(h), h.id))
            .filter(|(s, _)| *s > 0)
            .max_by_key(|(s, id)| (*s, std::cmp::Reverse(*id)))
            .map(|(_, id)| id)?;
        if self.parents.insert(substream, best) != Some(best) {
            self.parent_changes += 1;
        }
        Some(best)
    }

    /// The source for `block` of `substream` among the neighbours holding it that pass
    /// `usable`, with `mine(id)` the bytes already asked of each: the parent while it holds
    /// the block and has spare upload, else the holder with the most spare upload (ties: the
    /// lower id), which becomes the parent. None when no usable neighbour holding it has
    /// upload to spare (wait for another "have" or the urgent zone).
    pub(super) fn pick(
        &mut self,
        block: u64,
        substream: u32,
        usable: impl Fn(PeerId) -> bool,
        mine: impl Fn(PeerId) -> u64,
    ) -> Option<PeerId> {
        let holds = |id: &PeerId, n: &Neighbour| n.have.contains(block) && usable(*id);
        if let Some(&parent) = self.parents.get(&substream)
            && let Some(n) = self.peers.get(&parent)
            && holds(&parent, n)
            && n.spare(mine(parent)) > 0
        {
            return Some(parent);
        }
        let best = self
            .peers
            .iter()
            .filter(|(id, n)| holds(id, n) && n.spare(mine(**id)) > 0)
            .max_by_key(|(id, n)| (n.spare(mine(**id)), std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)?;
        if self.parents.insert(substream, best) != Some(best) {
            self.parent_changes += 1;
        }
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::net::Rng;

    #[test]
    fn block_set_answers_as_a_btree_set_within_its_span() {
        let mut rng = Rng::new(7);
        let mut set = BlockSet::default();
        let mut model = BTreeSet::new();
        let mut floor = 0_u64;
        for step in 0..20_000_u64 {
            // A sliding window of ~300 blocks moving forward, as haves arrive in a swarm.
            let edge = 1000 + step / 10;
            match rng.next_u64() % 10 {
                0 => {
                    floor = floor.max(edge.saturating_sub(300));
                    set.forget_before(floor);
                    model = model.split_off(&floor);
                }
                _ => {
                    let n = edge.saturating_sub(rng.next_u64() % 400);
                    if n >= floor {
                        set.insert(n);
                        model.insert(n);
                    }
                }
            }
            let probe = edge.saturating_sub(rng.next_u64() % 500);
            assert_eq!(
                set.contains(probe),
                model.contains(&probe),
                "step {step} block {probe}"
            );
        }
        for n in 0..3500 {
            assert_eq!(set.contains(n), model.contains(&n), "block {n}");
        }
    }

    #[test]
    fn word_at_matches_contains_on_random_sets() {
        let mut rng = Rng::new(11);
        for round in 0..300 {
            let edge = 500 + rng.next_u64() % 2000;
            let set: BlockSet = (0..rng.next_u64() % 200)
                .map(|_| edge - rng.next_u64() % 300)
                .collect();
            for _ in 0..20 {
                let lo = edge.saturating_sub(rng.next_u64() % 400);
                let word = set.word_at(lo);
                for i in 0..64 {
                    assert_eq!(
                        (word >> i) & 1 == 1,
                        set.contains(lo + i),
                        "round {round} lo {lo} bit {i}"
                    );
                }
            }
        }
    }

    /// `pick_in` over a snapshot gives the answer of the scan `pick`, and leaves the same
    /// parents, on random neighbourhoods, held blocks, adverts, usable sets and loads.
    #[test]
    fn pick_in_answers_as_the_scan_on_random_neighbourhoods() {
        let mut rng = Rng::new(5);
        for round in 0..400 {
            let mut scan = Neighbours::default();
            let count = 1 + rng.next_u64() % 30;
            let lo = 1000 + rng.next_u64() % 64;
            for id in 1..=count {
                let have = (0..rng.next_u64() % 12)
                    .map(|_| lo + rng.next_u64() % 70)
                    .collect();
                let upload = (!rng.next_u64().is_multiple_of(4)).then(|| Upload {
                    cap_bytes_per_s: rng.next_u64() % 40,
                    queued_bytes: rng.next_u64() % 40,
                });
                let prefetch = (0..rng.next_u64() % 3)
                    .map(|_| 1 + (rng.next_u64() % 5) as u32)
                    .collect();
                scan.peers.insert(
                    id * 7,
                    Neighbour {
                        have,
                        upload,
                        prefetch_bits: prefetch_bits(&prefetch),
                        prefetch,
                        map_known: !rng.next_u64().is_multiple_of(4),
                        refusals: 0,
                    },
                );
            }
            for b in 1..=4 {
                if rng.next_u64().is_multiple_of(2) {
                    scan.parents.insert(b, 7 * (1 + rng.next_u64() % count));
                }
            }
            let mut index = Neighbours {
                peers: scan.peers.clone(),
                parents: scan.parents.clone(),
                parent_changes: 0,
            };
            let holders = index.holders(lo, Vec::new());
            let unusable: BTreeSet<PeerId> =
                (0..3).map(|_| 7 * (1 + rng.next_u64() % count)).collect();
            let loads: BTreeMap<PeerId, u64> = (0..5)
                .map(|_| (7 * (1 + rng.next_u64() % count), rng.next_u64() % 30))
                .collect();
            for _ in 0..10 {
                let block = lo + rng.next_u64() % 64;
                let substream = 1 + (rng.next_u64() % 4) as u32;
                let usable = |id: PeerId| !unusable.contains(&id);
                let mine = |id: PeerId| loads.get(&id).copied().unwrap_or(0);
                let a = scan.pick(block, substream, usable, mine);
                let b = index.pick_in(&holders, block, substream, usable, mine);
                assert_eq!(a, b, "round {round} block {block} substream {substream}");
                assert_eq!(scan.parents, index.parents, "round {round}");
            }
            assert_eq!(scan.parent_changes, index.parent_changes, "round {round}");
            let usable = |id: PeerId| !unusable.contains(&id);
            let load = |id: PeerId| loads.get(&id).copied().unwrap_or(0) as usize;
            for b in 1..=5 {
                assert_eq!(
                    index.prefetcher(Some(&holders), b, usable, load),
                    index.prefetcher(None, b, usable, load),
                    "round {round} substream {b}"
                );
            }
            assert_eq!(
                index.unmapped(Some(&holders), usable, load),
                index.unmapped(None, usable, load),
                "round {round}"
            );
            // Outside the snapshot's 64 blocks it answers nothing.
            assert_eq!(index.pick_in(&holders, lo + 64, 1, |_| true, |_| 0), None);
        }
    }

    /// Without forgets, blocks moving forward reuse the ring's slots: the set holds exactly
    /// the blocks of the last `SET_WORDS` aligned words, never a stale bit of an older word.
    #[test]
    fn block_set_slides_forward_without_stale_bits() {
        let mut rng = Rng::new(13);
        let mut set = BlockSet::default();
        let mut model = BTreeSet::new();
        let mut edge = 0_u64;
        for step in 0..5_000_u64 {
            edge += rng.next_u64() % 3 + rng.next_u64() % 2 * (rng.next_u64() % 200);
            let n = edge.saturating_sub(rng.next_u64() % 100);
            set.insert(n);
            model.insert(n);
            let hi = model.last().map_or(0, |m| m / 64);
            let floor = (hi + 1).saturating_sub(SET_WORDS as u64) * 64;
            // What the set may keep: the span's words; a block behind it was ignored.
            model.retain(|m| *m >= floor);
            for probe in edge.saturating_sub(700)..=edge + 64 {
                assert_eq!(
                    set.contains(probe),
                    model.contains(&probe),
                    "step {step} block {probe}"
                );
            }
        }
    }

    #[test]
    fn block_set_stays_bounded_on_far_apart_blocks() {
        let mut set: BlockSet = [5, 64, 130].into_iter().collect();
        assert!(set.contains(5) && set.contains(64) && set.contains(130) && !set.contains(6));
        // A block far ahead slides the span: the old blocks are forgotten.
        set.insert(u64::MAX - 1);
        assert!(set.contains(u64::MAX - 1) && !set.contains(5));
        assert!(set.hi - set.lo <= SET_WORDS as u64);
        // One far behind the span is ignored rather than stretching it.
        set.insert(3);
        assert!(!set.contains(3) && set.hi - set.lo <= SET_WORDS as u64);
        set.forget_before(u64::MAX);
        assert!(!set.contains(u64::MAX - 1));
        // Within the bound, an older block extends the span backwards.
        let mut set: BlockSet = [1000].into_iter().collect();
        set.insert(900);
        assert!(set.contains(900) && set.contains(1000) && !set.contains(901));
    }
}
