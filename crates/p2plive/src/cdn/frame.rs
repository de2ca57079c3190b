//! The wire form of the CDN's prefetch subscription: a sequence of [`Frame`]s, each 1 byte
//! kind, 4 bytes big-endian payload length, payload; [`FrameDecoder`] reads them back from
//! chunks in any split (sans-I/O).

use bytes::{BufMut, Bytes, BytesMut};

use crate::block::{Block, BlockInfo};
use crate::error::Error;

/// One unit on the subscription stream. Wire form: 1 byte kind, 4 bytes big-endian payload
/// length, payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame: the number of blocks cut when the subscription started and the first
    /// block it sends (kind 0, 16 bytes).
    Hello {
        /// Blocks cut so far.
        cut: u64,
        /// First block number this subscription covers.
        from: u64,
    },
    /// A block was cut that is not in the subscribed substreams (kind 1, 48 bytes).
    Info(BlockInfo),
    /// A block of a subscribed substream (kind 2, 48 bytes of info then the bytes).
    Block(Block),
    /// The stream ended after `total` blocks (kind 3, 8 bytes).
    End {
        /// Number of blocks in the stream.
        total: u64,
    },
}

const INFO_LEN: usize = 8 + 4 + 4 + 32;

fn put_info(out: &mut BytesMut, info: &BlockInfo) {
    out.put_u64(info.number);
    out.put_u32(info.size);
    out.put_u32(info.duration_ms);
    out.put_slice(&info.sha256);
}

fn get_info(b: &[u8]) -> Option<BlockInfo> {
    let b = b.get(..INFO_LEN)?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&b[16..48]);
    Some(BlockInfo {
        number: u64::from_be_bytes(b[0..8].try_into().ok()?),
        size: u32::from_be_bytes(b[8..12].try_into().ok()?),
        duration_ms: u32::from_be_bytes(b[12..16].try_into().ok()?),
        sha256,
    })
}

impl Frame {
    /// The wire form.
    pub fn encode(&self) -> Bytes {
        let mut payload = BytesMut::new();
        let kind = match self {
            Self::Hello { cut, from } => {
                payload.put_u64(*cut);
                payload.put_u64(*from);
                0
            }
            Self::Info(info) => {
                put_info(&mut payload, info);
                1
            }
            Self::Block(block) => {
                put_info(&mut payload, &block.info);
                payload.put_slice(&block.data);
                2
            }
            Self::End { total } => {
                payload.put_u64(*total);
                3
            }
        };
        let mut out = BytesMut::with_capacity(5 + payload.len());
        out.put_u8(kind);
        out.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        out.put_slice(&payload);
        out.freeze()
    }
}

fn be_u64(b: Option<&[u8]>) -> Option<u64> {
    Some(u64::from_be_bytes(b?.try_into().ok()?))
}

/// Decodes [`Frame`]s from a byte stream delivered in arbitrary chunks (sans-I/O).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

/// Largest frame payload accepted (64 MiB).
const MAX_FRAME: usize = 64 << 20;

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns the frames now complete.
    ///
    /// # Errors
    /// [`Error::Frame`] for an unknown kind, an oversized or short payload.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Frame>, Error> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 5 {
                return Ok(out);
            }
            let kind = self.buf[0];
            let len =
                u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if len > MAX_FRAME {
                return Err(Error::Frame(format!("payload of {len} bytes")));
            }
            if self.buf.len() < 5 + len {
                return Ok(out);
            }
            let frame = self.buf.split_to(5 + len).freeze();
            let p = frame.slice(5..);
            let short = || Error::Frame(format!("kind {kind} with {len} bytes"));
            out.push(match kind {
                0 => Frame::Hello {
                    cut: be_u64(p.get(..8)).ok_or_else(short)?,
                    from: be_u64(p.get(8..16)).ok_or_else(short)?,
                },
                1 => Frame::Info(get_info(&p).ok_or_else(short)?),
                2 => {
                    let info = get_info(&p).ok_or_else(short)?;
                    Frame::Block(Block {
                        info,
                        data: p.slice(INFO_LEN..),
                    })
                }
                3 => Frame::End {
                    total: be_u64(p.get(..8)).ok_or_else(short)?,
                },
                other => return Err(Error::Frame(format!("unknown kind {other}"))),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_any_chunking() {
        let info = BlockInfo::of(7, 1000, b"payload");
        let frames = vec![
            Frame::Hello { cut: 3, from: 1 },
            Frame::Info(info),
            Frame::Block(Block {
                info,
                data: Bytes::from_static(b"payload"),
            }),
            Frame::End { total: 8 },
        ];
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode().to_vec()).collect();
        for chunk in [1, 3, 7, wire.len()] {
            let mut decoder = FrameDecoder::new();
            let got: Vec<Frame> = wire
                .chunks(chunk)
                .flat_map(|c| decoder.push(c).unwrap())
                .collect();
            assert_eq!(got, frames, "chunk {chunk}");
        }
    }

    #[test]
    fn decoder_rejects_garbage() {
        assert!(FrameDecoder::new().push(&[9, 0, 0, 0, 0]).is_err());
        assert!(FrameDecoder::new().push(&[1, 0, 0, 0, 2, 1, 2]).is_err());
        assert!(
            FrameDecoder::new()
                .push(&[2, 0xff, 0xff, 0xff, 0xff])
                .is_err()
        );
    }
}
