//! The canonical chain as the follower last saw it: the hashes of the newest blocks, so a
//! reorg is found by comparing block hashes and parent hashes, never by fetching receipts
//! again (the way consensus clients and indexers follow a chain).
//!
//! A new head either extends the window, is already known, or needs its parents: the
//! follower fetches headers by parent hash until one links to a block in the window (or the
//! window is empty). [`Canon::adopt`] then installs the new segment and answers the blocks it
//! replaced: those were reorged out, and every transaction recorded in them must be looked
//! at again. Sans-I/O: the follower does the fetching.

use std::collections::BTreeMap;

use alloy::primitives::B256;

/// A block header's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// The parent's hash.
    pub parent: B256,
}

/// Where a candidate block attaches to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// It is in the window already: nothing new.
    Known,
    /// Its parent is in the window (or the window is empty, or it is block 0): the segment
    /// from it on can be adopted.
    Connects,
    /// Its parent is not known: fetch the header with this hash (number `number`) next.
    NeedParent {
        /// The parent's number.
        number: u64,
        /// The parent's hash.
        hash: B256,
    },
}

/// The newest `depth` canonical blocks.
#[derive(Debug, Clone)]
pub struct Canon {
    blocks: BTreeMap<u64, BlockRef>,
    depth: u64,
}

impl Canon {
    /// An empty window keeping `depth` blocks (at least 2).
    pub fn new(depth: u64) -> Self {
        Self {
            blocks: BTreeMap::new(),
            depth: depth.max(2),
        }
    }

    /// Blocks kept.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// The newest block.
    pub fn tip(&self) -> Option<BlockRef> {
        self.blocks.values().next_back().copied()
    }

    /// The canonical hash at `number`, if in the window.
    pub fn hash_at(&self, number: u64) -> Option<B256> {
        self.blocks.get(&number).map(|b| b.hash)
    }

    /// Whether the window holds nothing.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The oldest block number kept.
    pub fn oldest(&self) -> Option<u64> {
        self.blocks.keys().next().copied()
    }

    /// Where `block` attaches.
    pub fn link(&self, block: &BlockRef) -> Link {
        if self.hash_at(block.number) == Some(block.hash) {
            return Link::Known;
        }
        let Some(oldest) = self.oldest() else {
            return Link::Connects;
        };
        if block.number == 0 || block.number <= oldest {
            // Below the window's reach: nothing older to compare with.
            return Link::Connects;
        }
        match self.hash_at(block.number - 1) {
            Some(hash) if hash == block.parent => Link::Connects,
            _ => Link::NeedParent {
                number: block.number - 1,
                hash: block.parent,
            },
        }
    }

    /// Installs `segment` (ascending, each block the parent of the next) as canonical and
    /// answers the blocks it replaced (reorged out), oldest first; trims the window to its
    /// depth.
    pub fn adopt(&mut self, segment: &[BlockRef]) -> Vec<BlockRef> {
        let Some(first) = segment.first() else {
            return Vec::new();
        };
        let removed: Vec<BlockRef> = self
            .blocks
            .range(first.number..)
            .map(|(_, b)| *b)
            .filter(|b| {
                segment
                    .iter()
                    .find(|s| s.number == b.number)
                    .is_none_or(|s| s.hash != b.hash)
            })
            .collect();
        self.blocks.retain(|number, _| *number < first.number);
        for block in segment {
            self.blocks.insert(block.number, *block);
        }
        while self.blocks.len() as u64 > self.depth {
            self.blocks.pop_first();
        }
        removed
    }

    /// Forgets everything (the chain moved further than the window can follow).
    pub fn reset(&mut self) {
        self.blocks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64, tag: u8, parent_tag: u8) -> BlockRef {
        let hash = |n: u64, t: u8| {
            let mut bytes = [t; 32];
            bytes[..8].copy_from_slice(&n.to_be_bytes());
            B256::from(bytes)
        };
        BlockRef {
            number,
            hash: hash(number, tag),
            parent: hash(number.saturating_sub(1), parent_tag),
        }
    }

    #[test]
    fn extends_knows_and_walks_back_on_a_reorg() {
        let mut canon = Canon::new(8);
        assert_eq!(canon.link(&block(10, 0xa, 0xa)), Link::Connects);
        assert!(canon.adopt(&[block(10, 0xa, 0xa)]).is_empty());
        assert_eq!(canon.link(&block(11, 0xa, 0xa)), Link::Connects);
        canon.adopt(&[block(11, 0xa, 0xa)]);
        canon.adopt(&[block(12, 0xa, 0xa)]);
        assert_eq!(canon.link(&block(12, 0xa, 0xa)), Link::Known);
        // A competing block 12 (parent 11a) connects and replaces 12a.
        let b12 = block(12, 0xb, 0xa);
        assert_eq!(canon.link(&b12), Link::Connects);
        assert_eq!(canon.adopt(&[b12]), vec![block(12, 0xa, 0xa)]);
        // A head 13c whose parent 12c is unknown: walk back to 11a, then adopt 12c, 13c.
        let c13 = block(13, 0xc, 0xc);
        let Link::NeedParent { number, hash } = canon.link(&c13) else {
            panic!("13c should need its parent");
        };
        let c12 = block(12, 0xc, 0xa);
        assert_eq!((number, hash), (12, c12.hash));
        assert_eq!(canon.link(&c12), Link::Connects);
        assert_eq!(canon.adopt(&[c12, c13]), vec![b12]);
        assert_eq!(canon.tip(), Some(c13));
        // A gap above the tip also walks back.
        assert!(matches!(
            canon.link(&block(15, 0xc, 0xc)),
            Link::NeedParent { number: 14, .. }
        ));
    }

    #[test]
    fn the_window_keeps_its_depth() {
        let mut canon = Canon::new(3);
        for n in 1..=10 {
            canon.adopt(&[block(n, 0xa, 0xa)]);
        }
        assert_eq!(canon.oldest(), Some(8));
        // Anything at or below the oldest block connects (nothing to compare with).
        assert_eq!(canon.link(&block(8, 0xb, 0xb)), Link::Connects);
        canon.reset();
        assert!(canon.is_empty());
    }
}
