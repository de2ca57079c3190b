//! Substreams: which block belongs to which substream (seed paragraphs 14, 18, 50-53).
//!
//! The stream's blocks are numbered from 0 in time order (seed 10, 49). With `s` substreams and
//! block sets of `a` blocks, the `b`-th substream (1 <= b <= s) holds
//!
//! * `a = 1`: y_b = { s*n + b - 1 : n >= 0 } (seed 14, 50), and
//! * `a > 1`: y_b = { a*s*n + a*(b-1) + k : n >= 0, 0 <= k < a } (seed 18, 53).
//!
//! The substream's *sequence identifier* is its smallest block number, `a*(b-1)` (seed 19, 58).
//!
//! Because the tracker adapts `s` to the number of connected peers (seed 50), a stream's
//! [`Layout`] is a list of [`Epoch`]s: each applies the formula above to the blocks from its
//! `from_block` on, counting block numbers relative to `from_block`. A layout with one epoch
//! starting at block 0 is exactly the seed's formula.

use serde::{Deserialize, Serialize};

use crate::error::LayoutError;

/// One substream layout `(s, a)` applied from block `from_block` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Epoch {
    /// First block number this layout applies to.
    pub from_block: u64,
    /// Number of substreams `s` (at least 1).
    pub substreams: u32,
    /// Blocks per block set `a` (at least 1; seed 17, 53).
    pub block_set: u32,
}

impl Epoch {
    /// An epoch starting at `from_block`.
    ///
    /// # Errors
    /// [`LayoutError::Zero`] when `substreams` or `block_set` is 0.
    pub fn new(from_block: u64, substreams: u32, block_set: u32) -> Result<Self, LayoutError> {
        if substreams == 0 || block_set == 0 {
            return Err(LayoutError::Zero {
                substreams,
                block_set,
            });
        }
        Ok(Self {
            from_block,
            substreams,
            block_set,
        })
    }

    /// The substream (1-based `b`) holding `block`, for a block at or after `from_block`.
    pub fn substream_of(&self, block: u64) -> u32 {
        let rel = block.saturating_sub(self.from_block);
        let set = rel / u64::from(self.block_set.max(1));
        // `set % s` is below `s`, a u32.
        (set % u64::from(self.substreams.max(1))) as u32 + 1
    }

    /// The sequence identifier of substream `b` in this epoch: its smallest block number,
    /// `from_block + a*(b-1)` (seed 19, 58).
    pub fn sequence_id(&self, substream: u32) -> u64 {
        self.from_block
            .saturating_add(u64::from(self.block_set) * u64::from(substream.saturating_sub(1)))
    }

    /// The round `n` of the seed's formula that `block` falls in.
    pub fn round_of(&self, block: u64) -> u64 {
        let rel = block.saturating_sub(self.from_block);
        rel / (u64::from(self.block_set) * u64::from(self.substreams))
    }
}

/// The substream layout of a stream: epochs in increasing `from_block` order, the first
/// starting at block 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    epochs: Vec<Epoch>,
}

impl Layout {
    /// A fixed layout: `s` substreams of block sets of `a` from block 0 on.
    ///
    /// # Errors
    /// [`LayoutError::Zero`] when `substreams` or `block_set` is 0.
    pub fn fixed(substreams: u32, block_set: u32) -> Result<Self, LayoutError> {
        Ok(Self {
            epochs: vec![Epoch::new(0, substreams, block_set)?],
        })
    }

    /// A layout from a list of epochs.
    ///
    /// # Errors
    /// [`LayoutError::Epochs`] when the list is empty, does not start at block 0 or is not in
    /// strictly increasing `from_block` order; [`LayoutError::Zero`] for a zero `s` or `a`.
    pub fn from_epochs(epochs: Vec<Epoch>) -> Result<Self, LayoutError> {
        if epochs.first().map(|e| e.from_block) != Some(0)
            || epochs
                .windows(2)
                .any(|w| w[0].from_block >= w[1].from_block)
        {
            return Err(LayoutError::Epochs);
        }
        for e in &epochs {
            Epoch::new(e.from_block, e.substreams, e.block_set)?;
        }
        Ok(Self { epochs })
    }

    /// The epochs, first starting at block 0.
    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs
    }

    /// The epoch in force for `block`.
    pub fn epoch_of(&self, block: u64) -> Epoch {
        let idx = self.epochs.partition_point(|e| e.from_block <= block);
        self.epochs[idx.saturating_sub(1).min(self.epochs.len() - 1)]
    }

    /// The epoch in force for the newest blocks.
    pub fn current(&self) -> Epoch {
        self.epochs[self.epochs.len() - 1]
    }

    /// The substream `b` (1-based) that holds `block`.
    pub fn substream_of(&self, block: u64) -> u32 {
        self.epoch_of(block).substream_of(block)
    }

    /// The ordering key the scheduler fetches by (seed 58-62): first the round of the block,
    /// then its substream's sequence identifier, then its place inside its block set. For a
    /// single epoch this is the block number's order.
    pub fn fetch_key(&self, block: u64) -> (u64, u64, u64) {
        let epoch = self.epoch_of(block);
        let b = epoch.substream_of(block);
        let rel = block - epoch.from_block;
        (
            epoch.from_block + epoch.round_of(block),
            epoch.sequence_id(b),
            rel % u64::from(epoch.block_set),
        )
    }

    /// Appends an epoch `(s, a)` from `from_block` on. An epoch at or before the last one's
    /// start replaces it (the change had not yet taken effect); an unchanged `(s, a)` adds
    /// nothing. Returns whether the layout changed.
    ///
    /// # Errors
    /// [`LayoutError::Zero`] when `substreams` or `block_set` is 0.
    pub fn push(
        &mut self,
        from_block: u64,
        substreams: u32,
        block_set: u32,
    ) -> Result<bool, LayoutError> {
        let epoch = Epoch::new(from_block, substreams, block_set)?;
        let last = self.current();
        if last.substreams == substreams && last.block_set == block_set {
            return Ok(false);
        }
        while self.epochs.len() > 1 && self.current().from_block >= from_block {
            self.epochs.pop();
        }
        if self.current().from_block >= from_block {
            self.epochs[0] = Epoch {
                from_block: 0,
                ..epoch
            };
            self.epochs.truncate(1);
        } else {
            self.epochs.push(epoch);
        }
        Ok(true)
    }

    /// The blocks of substream `b` in `[from, to)`, in increasing order.
    pub fn blocks_of(&self, substream: u32, from: u64, to: u64) -> impl Iterator<Item = u64> + '_ {
        (from..to).filter(move |&block| self.substream_of(block) == substream)
    }

    /// Text form `from:s:a,from:s:a,...` used in URLs.
    pub fn to_query(&self) -> String {
        self.epochs
            .iter()
            .map(|e| format!("{}:{}:{}", e.from_block, e.substreams, e.block_set))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses [`Layout::to_query`]'s form.
    ///
    /// # Errors
    /// [`LayoutError::Parse`] for malformed text; the errors of [`Layout::from_epochs`].
    pub fn from_query(text: &str) -> Result<Self, LayoutError> {
        let mut epochs = Vec::new();
        for part in text.split(',') {
            let fields: Vec<&str> = part.split(':').collect();
            let parse = |s: &str| s.trim().parse::<u64>().ok();
            let (Some(from), Some(s), Some(a)) = (
                fields.first().and_then(|v| parse(v)),
                fields.get(1).and_then(|v| parse(v)),
                fields.get(2).and_then(|v| parse(v)),
            ) else {
                return Err(LayoutError::Parse(text.to_owned()));
            };
            if fields.len() != 3 {
                return Err(LayoutError::Parse(text.to_owned()));
            }
            let s = u32::try_from(s).map_err(|_| LayoutError::Parse(text.to_owned()))?;
            let a = u32::try_from(a).map_err(|_| LayoutError::Parse(text.to_owned()))?;
            epochs.push(Epoch::new(from, s, a)?);
        }
        Self::from_epochs(epochs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `count` blocks of substream `b` per the seed's formulas, written out directly.
    fn seed_formula(s: u64, a: u64, b: u64, count: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for n in 0.. {
            for k in 0..a {
                out.push(a * s * n + a * (b - 1) + k);
                if out.len() == count {
                    return out;
                }
            }
        }
        out
    }

    #[test]
    fn seed_example_sixth_of_ten_holds_5_15_25() {
        let layout = Layout::fixed(10, 1).unwrap();
        let blocks: Vec<u64> = layout.blocks_of(6, 0, 40).collect();
        assert_eq!(blocks, vec![5, 15, 25, 35]);
        assert_eq!(layout.current().sequence_id(6), 5);
    }

    #[test]
    fn matches_seed_formulas() {
        // (s, a, b, first blocks expected)
        let table: &[(u32, u32, u32, &[u64])] = &[
            (10, 1, 1, &[0, 10, 20, 30]),
            (10, 1, 6, &[5, 15, 25, 35]),
            (10, 1, 10, &[9, 19, 29]),
            (5, 2, 1, &[0, 1, 10, 11, 20, 21]),
            (5, 2, 3, &[4, 5, 14, 15, 24]),
            (5, 2, 5, &[8, 9, 18, 19]),
            (3, 4, 2, &[4, 5, 6, 7, 16, 17]),
            (1, 1, 1, &[0, 1, 2, 3]),
        ];
        for &(s, a, b, expected) in table {
            let layout = Layout::fixed(s, a).unwrap();
            let got: Vec<u64> = layout.blocks_of(b, 0, 200).take(expected.len()).collect();
            assert_eq!(got, expected, "s={s} a={a} b={b}");
            let formula = seed_formula(u64::from(s), u64::from(a), u64::from(b), 30);
            let got: Vec<u64> = layout.blocks_of(b, 0, 10_000).take(30).collect();
            assert_eq!(got, formula, "formula s={s} a={a} b={b}");
            assert_eq!(layout.current().sequence_id(b), formula[0]);
        }
    }

    #[test]
    fn every_block_in_exactly_one_substream() {
        for (s, a) in [(1, 1), (4, 1), (10, 1), (5, 2), (7, 3)] {
            let layout = Layout::fixed(s, a).unwrap();
            for block in 0..500 {
                let holders = (1..=s)
                    .filter(|&b| layout.blocks_of(b, block, block + 1).count() == 1)
                    .count();
                assert_eq!(holders, 1, "block {block} s={s} a={a}");
            }
        }
    }

    #[test]
    fn fetch_order_is_by_sequence_identifier_within_round() {
        let layout = Layout::fixed(5, 2).unwrap();
        let mut blocks: Vec<u64> = (0..30).rev().collect();
        blocks.sort_by_key(|&b| layout.fetch_key(b));
        assert_eq!(blocks, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn epochs_apply_relative_to_their_start() {
        let mut layout = Layout::fixed(2, 1).unwrap();
        assert!(layout.push(10, 3, 1).unwrap());
        assert!(
            !layout.push(12, 3, 1).unwrap(),
            "unchanged layout adds nothing"
        );
        assert_eq!(layout.substream_of(9), 2);
        assert_eq!(layout.substream_of(10), 1);
        assert_eq!(layout.substream_of(11), 2);
        assert_eq!(layout.substream_of(12), 3);
        assert_eq!(layout.substream_of(13), 1);
        // A change before the last epoch took effect replaces it.
        assert!(layout.push(8, 4, 1).unwrap());
        assert_eq!(layout.epochs().len(), 2);
        assert_eq!(layout.substream_of(9), 2);
        // A change at block 0 replaces everything.
        assert!(layout.push(0, 6, 1).unwrap());
        assert_eq!(layout.epochs(), &[Epoch::new(0, 6, 1).unwrap()]);
    }

    #[test]
    fn query_round_trip_and_errors() {
        let mut layout = Layout::fixed(10, 1).unwrap();
        layout.push(40, 8, 2).unwrap();
        let text = layout.to_query();
        assert_eq!(text, "0:10:1,40:8:2");
        assert_eq!(Layout::from_query(&text).unwrap(), layout);
        for bad in [
            "",
            "1:2:1",
            "0:0:1",
            "0:2",
            "0:2:1,0:3:1",
            "x:1:1",
            "0:1:1:1",
        ] {
            assert!(Layout::from_query(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
