//! Blocks: the numbered pieces a live stream is cut into (seed 10, 49).
//!
//! A block is a run of whole 188-byte TS packets, numbered from 0 in time order, about
//! `target` long in media time (default 1 s). Each carries its size, media duration and
//! SHA-256, published by the origin so every receiver can check a block from any source.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ts::{MediaClock, PACKET_SIZE};

/// A SHA-256 digest (32 bytes).
pub type Digest256 = [u8; 32];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Digest256 {
    Sha256::digest(data).into()
}

/// What the origin publishes about one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// Block number, from 0 in time order.
    pub number: u64,
    /// Size in bytes (a multiple of 188).
    pub size: u32,
    /// Media duration in milliseconds, from the stream's PCR/PTS timing.
    pub duration_ms: u32,
    /// SHA-256 of the block's bytes.
    #[serde(with = "hex_digest")]
    pub sha256: Digest256,
}

impl BlockInfo {
    /// The info of `data` as block `number` lasting `duration_ms`.
    pub fn of(number: u64, duration_ms: u32, data: &[u8]) -> Self {
        Self {
            number,
            size: u32::try_from(data.len()).unwrap_or(u32::MAX),
            duration_ms,
            sha256: sha256(data),
        }
    }

    /// Whether `data` is this block: same size and SHA-256.
    pub fn matches(&self, data: &[u8]) -> bool {
        data.len() == self.size as usize && sha256(data) == self.sha256
    }

    /// Media duration.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(u64::from(self.duration_ms))
    }
}

/// A block's info and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Number, size, duration, digest.
    pub info: BlockInfo,
    /// The packets.
    pub data: Bytes,
}

/// Hex (de)serialisation of digests.
pub(crate) mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Cuts a packet stream into blocks (sans-I/O): feed whole packets, get finished blocks.
///
/// A block closes before the first packet whose media time is at least `target` after the
/// block's first packet. Media time comes from [`MediaClock`] (PCR, else PTS). The last block
/// is whatever is left when [`Cutter::finish`] is called.
#[derive(Debug)]
pub struct Cutter {
    target: f64,
    clock: MediaClock,
    next_number: u64,
    current: Vec<u8>,
    block_start: f64,
    /// SHA-256 over every byte cut so far (the source stream).
    source: Sha256,
    source_bytes: u64,
}

/// A block just cut, with the media time its last packet ends at (seconds since stream start),
/// which the origin uses to pace publication.
#[derive(Debug, Clone)]
pub struct CutBlock {
    /// The block.
    pub block: Block,
    /// Media time at the end of the block, in seconds from the stream start.
    pub media_end: f64,
}

impl Cutter {
    /// A cutter aiming at blocks of `target` media time (clamped to at least 1 ms).
    pub fn new(target: Duration) -> Self {
        Self {
            target: target.as_secs_f64().max(0.001),
            clock: MediaClock::new(),
            next_number: 0,
            current: Vec::new(),
            block_start: 0.0,
            source: Sha256::new(),
            source_bytes: 0,
        }
    }

    /// Feeds whole packets (`packets.len()` a multiple of 188; a trailing partial packet is
    /// ignored) and returns the blocks they complete.
    pub fn push(&mut self, packets: &[u8]) -> Vec<CutBlock> {
        let mut out = Vec::new();
        for packet in packets.chunks_exact(PACKET_SIZE) {
            let t = self.clock.observe(packet);
            if !self.current.is_empty() && t - self.block_start >= self.target {
                out.push(self.close(t));
            }
            if self.current.is_empty() {
                self.block_start = t;
            }
            self.current.extend_from_slice(packet);
        }
        out
    }

    fn close(&mut self, end: f64) -> CutBlock {
        let data = std::mem::take(&mut self.current);
        self.source.update(&data);
        self.source_bytes += data.len() as u64;
        let duration_ms = ((end - self.block_start).max(0.0) * 1000.0).round() as u32;
        let info = BlockInfo::of(self.next_number, duration_ms, &data);
        self.next_number += 1;
        CutBlock {
            block: Block {
                info,
                data: Bytes::from(data),
            },
            media_end: end,
        }
    }

    /// Closes the last block (if any bytes are left). Its duration is the media time from its
    /// start to the last timestamp, or the target when the stream carried no later timing.
    pub fn finish(&mut self) -> Option<CutBlock> {
        if self.current.is_empty() {
            return None;
        }
        let mut end = self.clock.now();
        if end <= self.block_start {
            end = self.block_start + self.target;
        }
        Some(self.close(end))
    }

    /// Blocks cut so far.
    pub fn blocks(&self) -> u64 {
        self.next_number
    }

    /// Bytes cut so far and the SHA-256 over them (the stream a peer must reproduce).
    pub fn source(&self) -> (u64, Digest256) {
        (self.source_bytes, self.source.clone().finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::tests::pcr_packet;

    #[test]
    fn cuts_on_media_time_at_whole_packets() {
        // 10 packets per 100 ms of PCR, 3 s of stream.
        let mut stream = Vec::new();
        for i in 0..300u64 {
            stream.extend(pcr_packet(256, i * 270_000));
        }
        let mut cutter = Cutter::new(Duration::from_secs(1));
        let mut blocks: Vec<CutBlock> = stream
            .chunks(188 * 7)
            .flat_map(|c| cutter.push(c))
            .collect();
        blocks.extend(cutter.finish());
        let numbers: Vec<u64> = blocks.iter().map(|b| b.block.info.number).collect();
        assert_eq!(numbers, vec![0, 1, 2]);
        for b in &blocks[..2] {
            assert_eq!(b.block.info.size, 100 * 188);
            assert_eq!(b.block.info.duration_ms, 1000);
        }
        let joined: Vec<u8> = blocks.iter().flat_map(|b| b.block.data.to_vec()).collect();
        assert_eq!(joined, stream);
        let (bytes, digest) = cutter.source();
        assert_eq!(bytes, stream.len() as u64);
        assert_eq!(digest, sha256(&stream));
        assert!(blocks.iter().all(|b| b.block.info.matches(&b.block.data)));
    }

    #[test]
    fn info_rejects_other_bytes() {
        let info = BlockInfo::of(3, 1000, b"abc");
        assert!(info.matches(b"abc"));
        assert!(!info.matches(b"abd"));
        assert!(!info.matches(b"abcd"));
        let json = serde_json::to_string(&info).unwrap();
        let back: BlockInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, info);
    }
}
