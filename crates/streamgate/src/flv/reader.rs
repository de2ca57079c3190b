//! An incremental FLV reader (sans-I/O): feed it bytes as they arrive with
//! [`FlvReader::push`], take complete tags with [`FlvReader::next_tag`]. Viewers in the demo,
//! the bench and the tests use it to find key frames and timestamps in a live stream.

use bytes::{Buf, Bytes, BytesMut};

use super::mux::{HEADER_LEN, TAG_AUDIO, TAG_HEADER_LEN, TAG_SCRIPT, TAG_VIDEO};
use crate::error::FlvError;

/// The FLV file header as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    /// The audio flag.
    pub has_audio: bool,
    /// The video flag.
    pub has_video: bool,
}

/// One tag as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadTag {
    /// 8 audio, 9 video, 18 script data.
    pub tag_type: u8,
    /// The full 32-bit timestamp in milliseconds.
    pub timestamp_ms: u32,
    /// The tag's data (after the 11-byte header, without `PreviousTagSize`).
    pub data: Bytes,
    /// The complete tag as read: header, data and `PreviousTagSize` (shares `data`'s
    /// buffer; a relay forwards it without copying).
    pub raw: Bytes,
    /// Offset of the tag in the stream, in bytes.
    pub offset: u64,
}

impl ReadTag {
    /// A video tag whose `FrameType` is 1 (key frame), including the AVC sequence header.
    pub fn is_video_key(&self) -> bool {
        self.tag_type == TAG_VIDEO && self.data.first().is_some_and(|b| b >> 4 == 1)
    }

    /// A video tag carrying NAL units of a key frame (not the sequence header).
    pub fn is_key_frame(&self) -> bool {
        self.is_video_key() && self.data.get(1) == Some(&1)
    }

    /// A video tag carrying NAL units (`AVCPacketType` 1).
    pub fn is_video_frame(&self) -> bool {
        self.tag_type == TAG_VIDEO && self.data.get(1) == Some(&1)
    }

    /// The AVC sequence header (`AVCPacketType` 0).
    pub fn is_avc_sequence_header(&self) -> bool {
        self.tag_type == TAG_VIDEO && self.data.get(1) == Some(&0)
    }

    /// The AAC sequence header (`AACPacketType` 0).
    pub fn is_aac_sequence_header(&self) -> bool {
        self.tag_type == TAG_AUDIO && self.data.get(1) == Some(&0)
    }

    /// A raw AAC frame.
    pub fn is_audio_frame(&self) -> bool {
        self.tag_type == TAG_AUDIO && self.data.get(1) == Some(&1)
    }

    /// A script-data tag (`onMetaData`).
    pub fn is_script(&self) -> bool {
        self.tag_type == TAG_SCRIPT
    }

    /// The video composition time offset (`pts - dts`) in ms, for video frames.
    pub fn composition_ms(&self) -> Option<i32> {
        if !self.is_video_frame() {
            return None;
        }
        let b = self.data.get(2..5)?;
        let raw = i32::from_be_bytes([0, b[0], b[1], b[2]]);
        Some(if raw & 0x0080_0000 != 0 {
            raw - 0x0100_0000
        } else {
            raw
        })
    }
}

/// Largest tag data [`FlvReader::new`] accepts, bytes (a 4K key frame is a few hundred KB).
pub const DEFAULT_MAX_TAG_BYTES: usize = 8 << 20;

/// The incremental reader; see the module docs.
#[derive(Debug)]
pub struct FlvReader {
    buf: BytesMut,
    header: Option<FlvHeader>,
    offset: u64,
    max_tag_bytes: usize,
}

impl Default for FlvReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvReader {
    /// A reader expecting the FLV header first, accepting tags of up to
    /// [`DEFAULT_MAX_TAG_BYTES`] of data.
    pub fn new() -> Self {
        Self::with_max_tag_bytes(DEFAULT_MAX_TAG_BYTES)
    }

    /// A reader refusing tags whose data exceeds `max_tag_bytes` (so a lying `DataSize`
    /// cannot make it buffer 16 MiB).
    pub fn with_max_tag_bytes(max_tag_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            header: None,
            offset: 0,
            max_tag_bytes,
        }
    }

    /// Bytes received but not yet returned as tags.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The header, once read.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next complete tag, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`FlvError`] on a wrong signature, a `PreviousTagSize` that does not match, a tag
    /// larger than the limit, or an unknown tag type; the reader should then be dropped.
    pub fn next_tag(&mut self) -> Result<Option<ReadTag>, FlvError> {
        if self.header.is_none() {
            if self.buf.len() < HEADER_LEN {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err(FlvError::Signature {
                    found: [self.buf[0], self.buf[1], self.buf[2]],
                });
            }
            let flags = self.buf[4];
            let data_offset =
                u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            // The header may be longer than 9 bytes in later versions; skip what it says.
            if self.buf.len() < data_offset + 4 {
                return Ok(None);
            }
            self.header = Some(FlvHeader {
                has_audio: flags & 0x04 != 0,
                has_video: flags & 0x01 != 0,
            });
            self.buf.advance(data_offset);
            let prev = self.buf.get_u32();
            if prev != 0 {
                return Err(FlvError::PreviousTagSize {
                    offset: data_offset as u64,
                    expected: 0,
                    found: prev,
                });
            }
            self.offset = data_offset as u64 + 4;
        }
        if self.buf.len() < TAG_HEADER_LEN {
            return Ok(None);
        }
        let tag_type = self.buf[0] & 0x1f;
        let data_len = u32::from_be_bytes([0, self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if data_len > self.max_tag_bytes {
            return Err(FlvError::TooLarge {
                offset: self.offset,
                len: data_len,
                max: self.max_tag_bytes,
            });
        }
        let total = TAG_HEADER_LEN + data_len + 4;
        if self.buf.len() < total {
            return Ok(None);
        }
        if !matches!(tag_type, TAG_AUDIO | TAG_VIDEO | TAG_SCRIPT) {
            return Err(FlvError::TagType {
                offset: self.offset,
                tag_type,
            });
        }
        let timestamp_ms = u32::from_be_bytes([self.buf[7], self.buf[4], self.buf[5], self.buf[6]]);
        let raw = self.buf.split_to(total).freeze();
        let prev_bytes = &raw[TAG_HEADER_LEN + data_len..];
        let prev = u32::from_be_bytes([prev_bytes[0], prev_bytes[1], prev_bytes[2], prev_bytes[3]]);
        let expected = u32::try_from(TAG_HEADER_LEN + data_len).unwrap_or(u32::MAX);
        if prev != expected {
            return Err(FlvError::PreviousTagSize {
                offset: self.offset + (TAG_HEADER_LEN + data_len) as u64,
                expected,
                found: prev,
            });
        }
        let offset = self.offset;
        self.offset += total as u64;
        Ok(Some(ReadTag {
            tag_type,
            timestamp_ms,
            data: raw.slice(TAG_HEADER_LEN..TAG_HEADER_LEN + data_len),
            raw,
            offset,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::mux;

    #[test]
    fn reads_what_the_muxer_writes_in_any_chunking() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&mux::header(true, true));
        let tags = [
            mux::avc_sequence_header(0, &[1, 0x64, 0, 0x1e, 0xff, 0xe1]),
            mux::aac_sequence_header(0, &[0x12, 0x10]),
            mux::avc_frame(0, 83, true, &[0, 0, 0, 1, 0x65]),
            mux::aac_frame(20, &[1, 2, 3]),
            mux::avc_frame(0x0100_0000 + 42, -40, false, &[0, 0, 0, 1, 0x41]),
        ];
        for t in &tags {
            stream.extend_from_slice(&t.bytes);
        }
        for chunk in [1, 7, 13, 64, stream.len()] {
            let mut reader = FlvReader::new();
            let mut read = Vec::new();
            for piece in stream.chunks(chunk) {
                reader.push(piece);
                while let Some(tag) = reader.next_tag().unwrap() {
                    read.push(tag);
                }
            }
            assert_eq!(
                reader.header(),
                Some(FlvHeader {
                    has_audio: true,
                    has_video: true
                })
            );
            assert_eq!(read.len(), tags.len(), "chunk {chunk}");
            assert!(read[0].is_avc_sequence_header() && read[0].is_video_key());
            assert!(!read[0].is_key_frame());
            assert!(read[1].is_aac_sequence_header());
            assert!(read[2].is_key_frame());
            assert_eq!(read[2].composition_ms(), Some(83));
            assert!(read[3].is_audio_frame());
            assert_eq!(read[3].timestamp_ms, 20);
            assert_eq!(read[4].timestamp_ms, 0x0100_0000 + 42);
            assert_eq!(read[4].composition_ms(), Some(-40));
            assert_eq!(read[4].raw, tags[4].bytes, "the complete tag as written");
            assert_eq!(reader.offset(), stream.len() as u64);
        }
    }

    #[test]
    fn rejects_garbage() {
        let mut reader = FlvReader::new();
        reader.push(b"GIF89a-not-flv");
        assert!(matches!(reader.next_tag(), Err(FlvError::Signature { .. })));
        let mut reader = FlvReader::new();
        let mut stream = mux::header(false, true).to_vec();
        let mut tag = mux::avc_frame(0, 0, true, &[0, 0, 0, 1, 0x65])
            .bytes
            .to_vec();
        let n = tag.len();
        tag[n - 1] ^= 0xff;
        stream.extend_from_slice(&tag);
        reader.push(&stream);
        assert!(matches!(
            reader.next_tag(),
            Err(FlvError::PreviousTagSize { offset: 34, .. })
        ));
        let mut reader = FlvReader::with_max_tag_bytes(100);
        reader.push(&mux::header(false, true));
        // A tag header declaring 16 MiB of data is refused before anything is buffered.
        reader.push(&[9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(reader.next_tag(), Err(FlvError::TooLarge { .. })));
    }
}
