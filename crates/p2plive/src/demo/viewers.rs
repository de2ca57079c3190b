//! What the demo's players read and how far behind the live edge they start.
//!
//! A player reads a peer's `GET /live.ts` to its end ([`play`]) and keeps the SHA-256, the
//! time of its first byte and, for late viewers, the bytes themselves. The [`Edge`] records
//! when the origin published each block, so a viewer's start can be placed against the live
//! edge of that moment: `lag_behind_edge_ms` = media end of the newest block published when
//! the viewer got its first block, minus the media start of that block (issue 16, "Done when").

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::block::BlockInfo;

/// What one player read.
#[derive(Debug, Clone, Default)]
pub(super) struct Capture {
    /// SHA-256 (hex) of every byte read.
    pub(super) sha256: String,
    /// When the first byte arrived.
    pub(super) first_byte_at: Option<Instant>,
    /// The bytes, when asked to keep them (late viewers only: a 60 s clip is ~4 MB).
    pub(super) bytes: Option<Vec<u8>>,
}

/// A player: reads `url` (a peer's `/live.ts`) to its end.
pub(super) fn play(
    http: reqwest::Client,
    url: String,
    keep: bool,
) -> tokio::task::JoinHandle<anyhow::Result<Capture>> {
    tokio::spawn(async move {
        let response = http.get(&url).send().await?.error_for_status()?;
        let mut body = response.bytes_stream();
        let mut hasher = Sha256::new();
        let mut capture = Capture {
            bytes: keep.then(Vec::new),
            ..Capture::default()
        };
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if capture.first_byte_at.is_none() && !chunk.is_empty() {
                capture.first_byte_at = Some(Instant::now());
            }
            hasher.update(&chunk);
            if let Some(bytes) = capture.bytes.as_mut() {
                bytes.extend_from_slice(&chunk);
            }
        }
        capture.sha256 = hex::encode(hasher.finalize());
        Ok(capture)
    })
}

/// One published block: when, and its media position.
#[derive(Debug, Clone)]
struct Published {
    at: Instant,
    info: BlockInfo,
    /// Media time at the block's start, ms since the stream's start.
    start_ms: u64,
}

/// The live edge over time: every block the origin published, in order. Cheap to clone
/// (shared); filled from the origin's `on_block` callback.
#[derive(Debug, Clone, Default)]
pub(super) struct Edge(Arc<Mutex<Vec<Published>>>);

impl Edge {
    /// Records that `info` was published now.
    pub(super) fn publish(&self, info: &BlockInfo) {
        let mut blocks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let start_ms = blocks
            .last()
            .map_or(0, |b| b.start_ms + u64::from(b.info.duration_ms));
        tracing::debug!(
            block = info.number,
            duration_ms = info.duration_ms,
            size = info.size,
            start_ms,
            "block published"
        );
        blocks.push(Published {
            at: Instant::now(),
            info: *info,
            start_ms,
        });
    }

    /// Bytes published so far.
    pub(super) fn bytes(&self) -> u64 {
        let blocks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        blocks.iter().map(|b| u64::from(b.info.size)).sum()
    }

    /// Media end (ms) of the newest block published at or before `at` (0 before the first).
    pub(super) fn media_at(&self, at: Instant) -> u64 {
        let blocks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        blocks
            .iter()
            .take_while(|b| b.at <= at)
            .last()
            .map_or(0, |b| b.start_ms + u64::from(b.info.duration_ms))
    }

    /// Media start (ms) of block `number`, if it was published.
    pub(super) fn start_of(&self, number: u64) -> Option<u64> {
        let blocks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        blocks
            .iter()
            .find(|b| b.info.number == number)
            .map(|b| b.start_ms)
    }

    /// Mean block duration, in ms of media (0 before the first block).
    pub(super) fn mean_block_ms(&self) -> u64 {
        let blocks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let total: u64 = blocks.iter().map(|b| u64::from(b.info.duration_ms)).sum();
        total / (blocks.len().max(1) as u64)
    }

    /// Places `bytes` (what a viewer read) in the stream: the number of the block they start
    /// with, and whether they are exactly the blocks from there to the stream's end.
    pub(super) fn locate(&self, bytes: &[u8]) -> Option<(u64, bool)> {
        let blocks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let first = blocks.iter().position(|b| {
            let size = b.info.size as usize;
            bytes.len() >= size && b.info.matches(&bytes[..size])
        })?;
        let mut rest = bytes;
        let mut exact = true;
        for b in &blocks[first..] {
            let size = b.info.size as usize;
            if rest.len() < size || !b.info.matches(&rest[..size]) {
                exact = false;
                break;
            }
            rest = &rest[size..];
        }
        Some((blocks[first].info.number, exact && rest.is_empty()))
    }

    /// How far behind the live edge a viewer started: the media end of the newest block
    /// published at `at` minus the media start of `first`, in ms (0 when it was ahead).
    pub(super) fn lag_ms(&self, first: u64, at: Instant) -> Option<u64> {
        let start = self.start_of(first)?;
        Some(self.media_at(at).saturating_sub(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_finds_the_first_block_and_checks_the_rest() {
        let edge = Edge::default();
        let data: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        for (i, d) in data.iter().enumerate() {
            edge.publish(&BlockInfo::of(i as u64, 1000, d));
        }
        let tail: Vec<u8> = data[2..].concat();
        assert_eq!(edge.locate(&tail), Some((2, true)));
        let mut cut = tail;
        cut.pop();
        assert_eq!(edge.locate(&cut), Some((2, false)));
        assert_eq!(edge.locate(b"nothing of the stream"), None);
        assert_eq!(edge.start_of(2), Some(2000));
        assert_eq!(edge.mean_block_ms(), 1000);
        assert_eq!(edge.lag_ms(2, Instant::now()), Some(2000));
    }
}
