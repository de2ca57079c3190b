//! What the demo's players read and how far behind the live edge they start.
//!
//! A player reads a peer's `GET /live.ts` to its end ([`play`]) and keeps the SHA-256, the
//! time of its first byte and, for late viewers, the bytes in a temporary file. The [`Edge`] records
//! when the origin published each block, so a viewer's start can be placed against the live
//! edge of that moment: `lag_behind_edge_ms` = media end of the newest block published when
//! the viewer got its first block, minus the media start of that block (issue 16, "Done when").

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::block::BlockInfo;

/// What one player read.
#[derive(Debug, Default)]
pub(super) struct Capture {
    /// SHA-256 (hex) of every byte read.
    pub(super) sha256: String,
    /// When the first byte arrived.
    pub(super) first_byte_at: Option<Instant>,
    /// Bytes read.
    pub(super) len: u64,
    /// The bytes in a temporary file, when asked to keep them (late viewers, for the decode
    /// check and [`Edge::locate`]): on disk, so a long stream costs the demo no memory.
    pub(super) spool: Option<Spool>,
}

/// A file in a temporary directory of its own (deleted when this is dropped).
#[derive(Debug)]
pub(super) struct Spool {
    _dir: tempfile::TempDir,
    pub(super) path: PathBuf,
}

impl Spool {
    fn create() -> std::io::Result<(Self, tokio::fs::File)> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("capture.ts");
        let file = fs_err::File::create(&path)?.into_file();
        Ok((Self { _dir: dir, path }, tokio::fs::File::from_std(file)))
    }
}

/// A player: reads `url` (a peer's `/live.ts`) to its end, spooling the bytes to a file when
/// `keep`.
pub(super) fn play(
    http: reqwest::Client,
    url: String,
    keep: bool,
) -> tokio::task::JoinHandle<anyhow::Result<Capture>> {
    tokio::spawn(async move {
        let mut capture = Capture::default();
        let mut out = None;
        if keep {
            let (spool, file) = Spool::create()?;
            capture.spool = Some(spool);
            out = Some(tokio::io::BufWriter::new(file));
        }
        let response = http.get(&url).send().await?.error_for_status()?;
        let mut body = response.bytes_stream();
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if capture.first_byte_at.is_none() && !chunk.is_empty() {
                capture.first_byte_at = Some(Instant::now());
            }
            hasher.update(&chunk);
            capture.len += chunk.len() as u64;
            if let Some(out) = out.as_mut() {
                out.write_all(&chunk).await?;
            }
        }
        if let Some(out) = out.as_mut() {
            out.flush().await?;
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

    /// Places what a viewer read (`read`, a stream of bytes) in the stream: the number of the
    /// block it starts with, and whether it is exactly the blocks from there to the stream's
    /// end; `None` when it starts with no published block. Reads block by block (memory: the
    /// largest block).
    ///
    /// # Errors
    /// The reader's.
    pub(super) fn locate(&self, mut read: impl Read) -> std::io::Result<Option<(u64, bool)>> {
        let infos: Vec<BlockInfo> = {
            let blocks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            blocks.iter().map(|b| b.info).collect()
        };
        let largest = infos.iter().map(|i| i.size as usize).max().unwrap_or(0);
        let mut head = Vec::with_capacity(largest);
        (&mut read).take(largest as u64).read_to_end(&mut head)?;
        let Some(first) = infos.iter().position(|i| {
            let size = i.size as usize;
            head.len() >= size && i.matches(&head[..size])
        }) else {
            return Ok(None);
        };
        let mut rest = std::io::Cursor::new(head).chain(read);
        let mut buf = Vec::with_capacity(largest);
        let mut exact = true;
        for info in &infos[first..] {
            buf.clear();
            (&mut rest)
                .take(u64::from(info.size))
                .read_to_end(&mut buf)?;
            if !info.matches(&buf) {
                exact = false;
                break;
            }
        }
        let trailing = exact && rest.read(&mut [0u8; 1])? > 0;
        Ok(Some((infos[first].number, exact && !trailing)))
    }

    /// [`Edge::locate`] of the file at `path`, off the async threads.
    ///
    /// # Errors
    /// Opening or reading the file.
    pub(super) async fn locate_file(&self, path: &Path) -> anyhow::Result<Option<(u64, bool)>> {
        let (edge, path) = (self.clone(), path.to_path_buf());
        let found = tokio::task::spawn_blocking(move || {
            let file = fs_err::File::open(&path)?;
            edge.locate(std::io::BufReader::new(file))
        })
        .await??;
        Ok(found)
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
        let locate = |bytes: &[u8]| edge.locate(bytes).unwrap_or_default();
        let tail: Vec<u8> = data[2..].concat();
        assert_eq!(locate(&tail), Some((2, true)));
        let mut cut = tail.clone();
        cut.pop();
        assert_eq!(locate(&cut), Some((2, false)));
        let mut longer = tail.clone();
        longer.push(9);
        assert_eq!(locate(&longer), Some((2, false)), "a trailing byte");
        let mut wrong = tail;
        wrong[12] ^= 1;
        assert_eq!(
            locate(&wrong),
            Some((2, false)),
            "a changed byte in block 3"
        );
        assert_eq!(locate(b"nothing of the stream"), None);
        assert_eq!(edge.start_of(2), Some(2000));
        assert_eq!(edge.mean_block_ms(), 1000);
        assert_eq!(edge.lag_ms(2, Instant::now()), Some(2000));
    }
}
