//! The shared send queue of one stream (sans-I/O): live tags in publish order, each with a
//! sequence number and the instant it was published, bounded in **seconds** (tags older than
//! the retention are dropped) and in **bytes**. Every viewer reads it through its own cursor
//! (a sequence number); a viewer's backlog is the age of the tag at its cursor, which is what
//! the skip decision compares with the allowed delay.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::flv::Tag;

/// One queued tag.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its sequence number (consecutive, starting at 0 for the first tag of the stream).
    pub seq: u64,
    /// When it was published.
    pub at: Instant,
    /// The tag.
    pub tag: Tag,
}

/// The queue; see the module docs.
#[derive(Debug)]
pub struct Ring {
    entries: VecDeque<Entry>,
    next_seq: u64,
    bytes: usize,
    retention: Duration,
    max_bytes: usize,
}

impl Ring {
    /// An empty queue keeping tags for `retention` and at most `max_bytes` of them (the newest
    /// tag is always kept).
    pub fn new(retention: Duration, max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            next_seq: 0,
            bytes: 0,
            retention,
            max_bytes,
        }
    }

    /// Appends `tag` published at `now`; returns its sequence number.
    pub fn push(&mut self, tag: Tag, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += tag.bytes.len();
        self.entries.push_back(Entry { seq, at: now, tag });
        self.prune(now);
        seq
    }

    /// Drops tags older than the retention at `now` and the oldest tags over the byte bound.
    pub fn prune(&mut self, now: Instant) {
        while self.entries.len() > 1
            && let Some(front) = self.entries.front()
            && (now.saturating_duration_since(front.at) > self.retention
                || self.bytes > self.max_bytes)
        {
            self.bytes -= front.tag.bytes.len();
            self.entries.pop_front();
        }
    }

    /// The sequence number the next published tag will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The oldest sequence number still queued (`next_seq` when empty).
    pub fn first_seq(&self) -> u64 {
        self.entries.front().map_or(self.next_seq, |e| e.seq)
    }

    /// The entry with sequence number `seq`, if still queued.
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        let first = self.entries.front()?.seq;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.entries.get(index)
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Tags queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops everything (the stream ended); sequence numbers keep counting.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::mux;

    fn frame(ts: u32, size: usize) -> Tag {
        mux::avc_frame(ts, 0, false, &vec![0; size])
    }

    #[test]
    fn bounded_by_age_and_bytes() {
        let start = Instant::now();
        let mut ring = Ring::new(Duration::from_secs(2), 10_000);
        for i in 0..5_u32 {
            ring.push(
                frame(i * 1000, 100),
                start + Duration::from_secs(u64::from(i)),
            );
        }
        // At t=4 s the tags of t=0 and t=1 are older than 2 s.
        assert_eq!(ring.first_seq(), 2);
        assert_eq!(ring.next_seq(), 5);
        assert!(ring.get(1).is_none());
        assert_eq!(ring.get(3).map(|e| e.tag.timestamp_ms), Some(3000));
        assert!(ring.get(5).is_none());
        let big = frame(5000, 6_000);
        let one = big.bytes.len();
        ring.push(big.clone(), start + Duration::from_secs(4));
        ring.push(big, start + Duration::from_secs(4));
        assert!(ring.bytes() <= 10_000, "{}", ring.bytes());
        assert_eq!(ring.len(), 1, "only the newest fits");
        assert_eq!(ring.bytes(), one);
        let mut tiny = Ring::new(Duration::ZERO, 0);
        tiny.push(frame(0, 10), start);
        assert_eq!(tiny.len(), 1, "the newest tag is always kept");
    }
}
