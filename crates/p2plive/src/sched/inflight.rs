//! [`Inflight`]: the requests a scheduler has in flight, as one flat vector sorted by block
//! (issue 16 item 4: a handful of entries read on every poll and every "have"; a
//! `BTreeMap<u64, Vec<Source>>` put each behind a node and a vector on the heap).

use super::Source;

/// (block, source) pairs sorted by block; the sources of one block in no particular order.
/// At most `max_peer_requests + max_cdn_requests` entries.
#[derive(Debug, Clone, Default)]
pub(super) struct Inflight(Vec<(u64, Source)>);

impl Inflight {
    /// The index of the first entry of `block` or of the first block after it.
    fn start(&self, block: u64) -> usize {
        self.0.partition_point(|(b, _)| *b < block)
    }

    /// The sources asked for `block`.
    pub(super) fn sources(&self, block: u64) -> impl Iterator<Item = &Source> + '_ {
        self.0[self.start(block)..]
            .iter()
            .take_while(move |(b, _)| *b == block)
            .map(|(_, s)| s)
    }

    /// Whether some source was asked for `block`.
    pub(super) fn contains(&self, block: u64) -> bool {
        self.0
            .get(self.start(block))
            .is_some_and(|(b, _)| *b == block)
    }

    /// Records that `source` was asked for `block`.
    pub(super) fn push(&mut self, block: u64, source: Source) {
        let at = self.0.partition_point(|(b, _)| *b <= block);
        self.0.insert(at, (block, source));
    }

    /// Removes one request of `block` from `source`, if any.
    pub(super) fn remove(&mut self, block: u64, source: Source) {
        let start = self.start(block);
        let pos = self.0[start..]
            .iter()
            .take_while(|(b, _)| *b == block)
            .position(|(_, s)| *s == source);
        if let Some(pos) = pos {
            self.0.remove(start + pos);
        }
    }

    /// Drops every request to `source`.
    pub(super) fn remove_source(&mut self, source: Source) {
        self.0.retain(|(_, s)| *s != source);
    }

    /// Drops the requests of blocks below `block`.
    pub(super) fn forget_before(&mut self, block: u64) {
        let end = self.start(block);
        self.0.drain(..end);
    }

    /// Every (block, source) in flight, by block.
    pub(super) fn iter(&self) -> impl Iterator<Item = &(u64, Source)> + '_ {
        self.0.iter()
    }

    /// Number of distinct blocks in flight.
    pub(super) fn blocks(&self) -> usize {
        let mut n = 0;
        let mut last = None;
        for (b, _) in &self.0 {
            if last != Some(*b) {
                n += 1;
                last = Some(*b);
            }
        }
        n
    }
}
