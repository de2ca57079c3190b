//! [`Held`]: the blocks a peer holds, as an inline bitmap over a window of block numbers
//! (issue 16 item 4: the simulator's cost). The scheduler asks "do I hold block n" for every
//! block of the wanted span on every poll and for every neighbour's "have"; a `BTreeSet` made
//! each of those a descent through heap nodes (cache misses at 10,000 simulated peers).

use std::collections::BTreeSet;

/// 64-block words in the inline window: 512 blocks (over 8 minutes of 1 s blocks, far more
/// than a peer's window keeps).
const WORDS: usize = 8;

/// A set of block numbers that answers exactly as a `BTreeSet<u64>` does (tested against
/// one). Blocks in the words `lo .. lo + WORDS` (block `64 w + i` is bit `i` of word `w`, kept
/// in slot `w % WORDS`) are bits of an inline ring; any other block is kept in `far`, an
/// ordered set that stays empty while the blocks held span less than the window. The window
/// moves forward when blocks are forgotten ([`Held::forget_before`]) or when a block past its
/// end arrives while its oldest words are empty.
#[derive(Debug, Clone, Default)]
pub(super) struct Held {
    /// First word index of the window.
    lo: u64,
    /// The window's words by slot; a slot's word index is the one in `lo .. lo + WORDS`
    /// congruent to it modulo `WORDS`.
    words: [u64; WORDS],
    /// Blocks outside the window.
    far: BTreeSet<u64>,
    /// Number of blocks held (window and `far`).
    len: usize,
}

impl Held {
    /// The slot of word `w`, when `w` is inside the window.
    fn slot(&self, w: u64) -> Option<usize> {
        (w >= self.lo && w - self.lo < WORDS as u64).then(|| (w % WORDS as u64) as usize)
    }

    /// Whether block `n` is held.
    pub(super) fn contains(&self, n: u64) -> bool {
        match self.slot(n / 64) {
            Some(s) => (self.words[s] >> (n % 64)) & 1 == 1,
            None => !self.far.is_empty() && self.far.contains(&n),
        }
    }

    /// Number of blocks held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Moves the window to start at word `lo` (every block in the words it leaves must be
    /// gone already) and takes the blocks of `far` that now fall inside it.
    fn rebase(&mut self, lo: u64) {
        self.lo = lo;
        if self.far.is_empty() {
            return;
        }
        let from = lo.saturating_mul(64);
        let to = lo.saturating_add(WORDS as u64).saturating_mul(64);
        let inside: Vec<u64> = self.far.range(from..to).copied().collect();
        for n in inside {
            self.far.remove(&n);
            if let Some(s) = self.slot(n / 64) {
                self.words[s] |= 1 << (n % 64);
            }
        }
    }

    /// Adds block `n`; returns whether it was new.
    pub(super) fn insert(&mut self, n: u64) -> bool {
        let w = n / 64;
        if self.len == 0 {
            // One word of room behind the first block (blocks arrive about in order).
            self.lo = w.saturating_sub(1);
        } else if self.slot(w).is_none() && w > self.lo {
            // Past the window's end: slide it forward over empty words.
            let lo = w + 1 - WORDS as u64;
            let leaving = lo.saturating_sub(self.lo).min(WORDS as u64);
            let empty = (0..leaving).all(|k| {
                let word = self.lo + k;
                self.words[(word % WORDS as u64) as usize] == 0
            });
            if empty {
                self.rebase(lo);
            }
        }
        let new = match self.slot(w) {
            Some(s) => {
                let bit = 1 << (n % 64);
                let new = self.words[s] & bit == 0;
                self.words[s] |= bit;
                new
            }
            None => self.far.insert(n),
        };
        self.len += usize::from(new);
        new
    }

    /// The smallest block held.
    #[cfg(test)]
    pub(super) fn first(&self) -> Option<u64> {
        let far = self.far.first().copied();
        if let Some(f) = far.filter(|f| *f < self.lo.saturating_mul(64)) {
            return Some(f);
        }
        let window = (0..WORDS as u64).find_map(|k| {
            let w = self.lo + k;
            let word = self.words[(w % WORDS as u64) as usize];
            (word != 0).then(|| w * 64 + u64::from(word.trailing_zeros()))
        });
        window.or(far)
    }

    /// Drops the blocks below `n`.
    pub(super) fn forget_before(&mut self, n: u64) {
        let w = n / 64;
        for k in 0..WORDS as u64 {
            let word = self.lo + k;
            let s = (word % WORDS as u64) as usize;
            if word < w {
                self.len -= self.words[s].count_ones() as usize;
                self.words[s] = 0;
            } else if word == w {
                let kept = self.words[s] & (u64::MAX << (n % 64));
                self.len -= (self.words[s] ^ kept).count_ones() as usize;
                self.words[s] = kept;
            }
        }
        if !self.far.is_empty() {
            let kept = self.far.split_off(&n);
            self.len -= self.far.len();
            self.far = kept;
        }
        if w > self.lo {
            // The words left behind are zero now.
            self.rebase(w);
        }
    }

    /// The blocks held, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let start = self.lo.saturating_mul(64);
        let below = self.far.range(..start).copied();
        let window = (0..WORDS as u64).flat_map(move |k| {
            let w = self.lo + k;
            let word = self.words[(w % WORDS as u64) as usize];
            (0..64u64)
                .filter(move |i| (word >> i) & 1 == 1)
                .map(move |i| w * 64 + i)
        });
        let above = self.far.range(start..).copied();
        below.chain(window).chain(above)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::net::Rng;

    /// Random inserts and forgets, in a window moving forward with stragglers far behind
    /// and far ahead, answer as a `BTreeSet` does: `insert`'s result, `contains`, `first`,
    /// `len` and the ordered iteration.
    #[test]
    fn answers_as_a_btree_set() {
        for seed in 0..20 {
            let mut rng = Rng::new(seed);
            let mut set = Held::default();
            let mut model = BTreeSet::new();
            let mut edge = rng.next_u64() % 5000;
            for step in 0..4000u64 {
                edge += rng.next_u64() % 2;
                let r = rng.next_u64() % 100;
                if r < 5 {
                    let floor = edge.saturating_sub(rng.next_u64() % 600);
                    set.forget_before(floor);
                    model = model.split_off(&floor);
                } else {
                    let n = match r {
                        5..=7 => edge + 500 + rng.next_u64() % 3000,
                        8..=9 => edge.saturating_sub(600 + rng.next_u64() % 3000),
                        _ => edge.saturating_sub(rng.next_u64() % 70),
                    };
                    assert_eq!(set.insert(n), model.insert(n), "seed {seed} step {step}");
                }
                let probe = edge.saturating_sub(rng.next_u64() % 800) + rng.next_u64() % 400;
                assert_eq!(set.contains(probe), model.contains(&probe), "seed {seed}");
                assert_eq!(set.len(), model.len(), "seed {seed} step {step}");
                assert_eq!(
                    set.first(),
                    model.first().copied(),
                    "seed {seed} step {step}"
                );
            }
            assert!(set.iter().eq(model.iter().copied()), "seed {seed}");
        }
    }
}
