//! Blocks: the numbered pieces a live stream is cut into (seed 10, 49).
//!
//! A block is a run of whole 188-byte TS packets, numbered from 0 in time order, about
//! `target` long in media time (default 1 s). Each carries its size, media duration and
//! SHA-256, published by the origin so every receiver can check a block from any source.
//!
//! Blocks are self-contained (issue 16 item 1): once the stream's PMT names a video PID, a
//! block ends at the first key frame ([`crate::psi`]) at least `target` after its start, and
//! every block starts with the PAT and PMT, so each one decodes on its own and a player or
//! peer can start at any block. The tables ffmpeg writes right before each key frame move
//! into the new block with it; when a muxer did not write them there, copies of the latest
//! PAT and PMT are put first (a repeated packet, ISO/IEC 13818-1 §2.4.3.3), so the stream
//! cut is then not byte-for-byte the input (the source digest is always over what was cut).
//! A stream without a known video PID, or with no key frame within
//! [`MAX_BLOCK_FACTOR`] times the target, is cut on time.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::psi::{PAT_PID, Programs};
use crate::ts::{MediaClock, PACKET_SIZE, pid};

/// A block is cut on time, key frame or not, once it is this many times the target long
/// (longer blocks made the bundled clip, with key frames up to 10.4 s apart, too coarse for
/// the P2P exchange: 18 blocks and P2P 0.65 at 4x, against 32 blocks and 0.90 at 2x).
pub const MAX_BLOCK_FACTOR: f64 = 2.0;

/// A key frame this close to the target (as a share of it, at most [`KEY_FRAME_SLACK_MAX_S`])
/// ends the block: a live encoder with a GOP equal to the block target puts its key frames
/// exactly on the boundary, where the media clock (PCR, audio interleaving) can read a few
/// ms short; without the slack every such block would run a whole GOP longer.
pub const KEY_FRAME_SLACK: f64 = 0.1;
/// Upper bound of the key-frame slack, in seconds of media.
pub const KEY_FRAME_SLACK_MAX_S: f64 = 0.1;

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
/// A block closes before the first key frame whose media time is at least `target` after
/// the block's first packet, together with the tables right before it (module docs); without
/// video, before the first packet that far. Media time comes from [`MediaClock`] (PCR, else
/// PTS). The last block is whatever is left when [`Cutter::finish`] is called.
#[derive(Debug)]
pub struct Cutter {
    target: f64,
    clock: MediaClock,
    programs: Programs,
    /// The latest PAT and PMT packets.
    pat: Option<[u8; PACKET_SIZE]>,
    pmt: Option<[u8; PACKET_SIZE]>,
    /// Where the run of table packets at the end of `current` starts.
    tables_from: Option<usize>,
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
            programs: Programs::new(),
            pat: None,
            pmt: None,
            tables_from: None,
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
            let pid = pid(packet);
            self.programs.observe(packet);
            let table = self.programs.is_table(pid);
            let elapsed = t - self.block_start;
            if !self.current.is_empty() && !table {
                let cut = if self.programs.video().is_some() {
                    let slack = (self.target * KEY_FRAME_SLACK).min(KEY_FRAME_SLACK_MAX_S);
                    (elapsed + slack >= self.target && self.programs.is_key_frame(packet))
                        || elapsed >= self.target * MAX_BLOCK_FACTOR
                } else {
                    elapsed >= self.target
                };
                if cut {
                    out.push(self.close_at(t));
                    self.block_start = t;
                }
            }
            if self.current.is_empty() {
                self.block_start = t;
            }
            if table {
                self.tables_from.get_or_insert(self.current.len());
                if let Ok(copy) = <[u8; PACKET_SIZE]>::try_from(packet) {
                    if pid == PAT_PID {
                        self.pat = Some(copy);
                    } else if self.programs.is_pmt(pid) {
                        self.pmt = Some(copy);
                    }
                }
            } else {
                self.tables_from = None;
            }
            self.current.extend_from_slice(packet);
        }
        out
    }

    /// Closes the block before the run of tables at the end of `current` (they open the next
    /// block), and starts the next block with the PAT and PMT.
    fn close_at(&mut self, end: f64) -> CutBlock {
        let split = self.tables_from.take().unwrap_or(self.current.len());
        let carried = self.current.split_off(split);
        let block = self.close(end);
        let has_pat = carried.chunks_exact(PACKET_SIZE).any(|p| pid(p) == PAT_PID);
        let has_pmt = carried
            .chunks_exact(PACKET_SIZE)
            .any(|p| self.programs.is_pmt(pid(p)));
        if !(has_pat && has_pmt) {
            if let Some(pat) = self.pat {
                self.current.extend_from_slice(&pat);
            }
            if let Some(pmt) = self.pmt {
                self.current.extend_from_slice(&pmt);
            }
        }
        self.current.extend_from_slice(&carried);
        block
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
        assert_eq!(joined, stream, "no video: cut on time, byte for byte");
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

    /// A synthetic stream: PAT/PMT, then 25 video frames per second with a PCR on each, a
    /// key frame every `gop` frames; `tables_at_key` repeats the tables before each key frame
    /// (as ffmpeg does).
    fn video_stream(seconds: u64, gop: u64, tables_at_key: bool) -> Vec<u8> {
        use crate::psi::tests::{more, pat, pmt, video};
        let mut out = Vec::new();
        for frame in 0..seconds * 25 {
            let key = frame % gop == 0;
            if frame == 0 || (key && tables_at_key) {
                out.extend(pat(0x1000));
                out.extend(pmt(0x1000, 0x100));
            }
            let mut first = video(0x100, key);
            // A PCR in an adaptation field ahead of the payload.
            let pcr = pcr_packet(0x100, frame * 27_000_000 / 25);
            first[3] = 0x30;
            first[4..12].copy_from_slice(&pcr[4..12]);
            let pes = video(0x100, key);
            first[12..12 + 40].copy_from_slice(&pes[4..44]);
            out.extend(first);
            out.extend(more(0x101));
            out.extend(more(0x100));
        }
        out
    }

    fn cut(stream: &[u8], target: Duration) -> Vec<CutBlock> {
        let mut cutter = Cutter::new(target);
        let mut blocks: Vec<CutBlock> = stream
            .chunks(188 * 5)
            .flat_map(|c| cutter.push(c))
            .collect();
        blocks.extend(cutter.finish());
        blocks
    }

    fn starts_with_tables_then_key_frame(block: &[u8]) -> bool {
        let p: Vec<&[u8]> = block.chunks_exact(PACKET_SIZE).collect();
        let mut programs = Programs::new();
        programs.observe(p[0]);
        programs.observe(p[1]);
        pid(p[0]) == PAT_PID && pid(p[1]) == 0x1000 && programs.is_key_frame(p[2])
    }

    #[test]
    fn a_key_frame_just_short_of_the_target_ends_the_block() {
        // 1 s GOP (25 frames), target 1.04 s: the key frames read 40 ms short of the target,
        // within the slack, so blocks stay one GOP long instead of two.
        let stream = video_stream(8, 25, true);
        let blocks = cut(&stream, Duration::from_millis(1040));
        for b in &blocks[..blocks.len() - 1] {
            assert_eq!(b.block.info.duration_ms, 1000, "one GOP per block");
        }
        // Beyond the slack the next key frame is taken.
        let blocks = cut(&stream, Duration::from_millis(1200));
        assert_eq!(blocks[0].block.info.duration_ms, 2000);
    }

    #[test]
    fn blocks_end_at_the_first_key_frame_after_the_target_and_start_with_pat_and_pmt() {
        // 1.5 s GOP, 1 s target: blocks of 1.5 s, each opening with PAT, PMT and a key frame.
        let stream = video_stream(9, 37, true);
        let blocks = cut(&stream, Duration::from_secs(1));
        assert_eq!(blocks.len(), 7, "ceil(225 / 37) GOPs");
        for b in &blocks {
            assert!(starts_with_tables_then_key_frame(&b.block.data));
        }
        for b in &blocks[..blocks.len() - 1] {
            assert_eq!(b.block.info.duration_ms, 1480, "37 frames at 25 fps");
        }
        // ffmpeg-style input (tables before each key frame) is cut byte for byte.
        let joined: Vec<u8> = blocks.iter().flat_map(|b| b.block.data.to_vec()).collect();
        assert_eq!(joined, stream);
    }

    #[test]
    fn tables_are_repeated_when_the_muxer_did_not_put_them_before_the_key_frame() {
        let stream = video_stream(6, 25, false);
        let blocks = cut(&stream, Duration::from_secs(1));
        assert_eq!(blocks.len(), 6);
        for b in &blocks {
            assert!(starts_with_tables_then_key_frame(&b.block.data));
        }
        // Each later block got a copy of the PAT and PMT: 2 packets more each.
        let joined: usize = blocks.iter().map(|b| b.block.data.len()).sum();
        assert_eq!(joined, stream.len() + 5 * 2 * PACKET_SIZE);
    }

    #[test]
    fn without_a_key_frame_a_block_is_cut_on_time_at_twice_the_target() {
        // One key frame only: blocks of 2 x 0.5 s.
        let stream = video_stream(6, 1000, true);
        let blocks = cut(&stream, Duration::from_millis(500));
        assert_eq!(
            blocks.len(),
            6,
            "{:?}",
            blocks
                .iter()
                .map(|b| b.block.info.duration_ms)
                .collect::<Vec<_>>()
        );
        assert_eq!(blocks[0].block.info.duration_ms, 1000);
    }
}
