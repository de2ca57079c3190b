//! FLV muxing (Adobe "Video File Format Specification" v10.1, annex E): the 9-byte header, and
//! tags of 11 header bytes + data + the 4-byte `PreviousTagSize` that follows each tag.
//!
//! Every function returns one self-contained [`Bytes`] (a tag together with its trailing
//! `PreviousTagSize`), so a stream is `header()` followed by any sequence of tags, and a tag
//! built once is shared by every viewer without copying.

use bytes::{BufMut, Bytes, BytesMut};

/// FLV tag type of audio data.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type of video data.
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type of script data (`onMetaData`).
pub const TAG_SCRIPT: u8 = 18;
/// Bytes in a tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Bytes in the file header plus `PreviousTagSize0`.
pub const HEADER_LEN: usize = 13;
/// `CodecID` of AVC (H.264) in the video tag header.
pub const CODEC_AVC: u8 = 7;
/// `SoundFormat` of AAC in the audio tag header.
pub const SOUND_AAC: u8 = 10;

/// What a tag carries, as the fan-out and the GOP cache need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// Decoder configuration a viewer needs before any frame: `onMetaData`, the AVC sequence
    /// header, the AAC sequence header.
    Config,
    /// A video key frame (IDR): a viewer may start here.
    KeyFrame,
    /// Any other video frame.
    InterFrame,
    /// An audio frame.
    Audio,
}

/// One muxed tag: its bytes (header, data, `PreviousTagSize`) and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The complete tag, ready to write.
    pub bytes: Bytes,
    /// What it carries.
    pub kind: TagKind,
    /// Its FLV timestamp in milliseconds (the decoding time for video).
    pub timestamp_ms: u32,
}

/// The FLV file header (`FLV`, version 1, flags, data offset 9) and `PreviousTagSize0` = 0.
///
/// The audio flag must only be set when the stream has an audio track: a header that
/// announces audio that never comes makes players wait for it (mpegts.js shows nothing, ffprobe
/// probes for a long time).
pub fn header(has_audio: bool, has_video: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN);
    out.put_slice(b"FLV");
    out.put_u8(1);
    out.put_u8(if has_audio { 0x04 } else { 0 } | if has_video { 0x01 } else { 0 });
    out.put_u32(9);
    out.put_u32(0);
    out.freeze()
}

/// A tag of `tag_type` at `timestamp_ms` whose data is the concatenation of `parts`.
///
/// The timestamp's low 24 bits go in `Timestamp`, its high 8 bits in `TimestampExtended`, so
/// the full 32-bit millisecond range (about 49.7 days) is representable. Data longer than
/// the 24-bit `DataSize` field (16 MiB) is cut, which no video frame here reaches.
pub fn tag(tag_type: u8, timestamp_ms: u32, parts: &[&[u8]]) -> Bytes {
    let data_len: usize = parts
        .iter()
        .map(|p| p.len())
        .sum::<usize>()
        .min(0x00ff_ffff);
    let mut out = BytesMut::with_capacity(TAG_HEADER_LEN + data_len + 4);
    out.put_u8(tag_type);
    put_u24(&mut out, u32::try_from(data_len).unwrap_or(0x00ff_ffff));
    put_u24(&mut out, timestamp_ms & 0x00ff_ffff);
    out.put_u8((timestamp_ms >> 24) as u8);
    put_u24(&mut out, 0);
    let mut remaining = data_len;
    for part in parts {
        let take = part.len().min(remaining);
        out.put_slice(&part[..take]);
        remaining -= take;
    }
    out.put_u32(u32::try_from(TAG_HEADER_LEN + data_len).unwrap_or(u32::MAX));
    out.freeze()
}

fn put_u24(out: &mut BytesMut, value: u32) {
    out.put_slice(&value.to_be_bytes()[1..]);
}

/// Signed 24-bit big-endian (FLV's `CompositionTime`), saturating to its range.
fn si24(value: i32) -> [u8; 3] {
    let clamped = value.clamp(-0x0080_0000, 0x007f_ffff);
    let b = clamped.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// The AVC sequence header: a key-frame video tag with `AVCPacketType` 0 whose data is the
/// `AVCDecoderConfigurationRecord` (see [`super::avc::decoder_configuration_record`]).
pub fn avc_sequence_header(timestamp_ms: u32, record: &[u8]) -> Tag {
    Tag {
        bytes: tag(
            TAG_VIDEO,
            timestamp_ms,
            &[&[0x10 | CODEC_AVC, 0, 0, 0, 0], record],
        ),
        kind: TagKind::Config,
        timestamp_ms,
    }
}

/// A video frame: `FrameType` 1 (key) or 2 (inter), `CodecID` 7, `AVCPacketType` 1 (NAL
/// units), the composition time offset `pts - dts` in ms (signed 24 bits), then the frame's
/// length-prefixed NAL units. `timestamp_ms` is the decoding time.
pub fn avc_frame(timestamp_ms: u32, composition_ms: i32, key: bool, avcc: &[u8]) -> Tag {
    let frame_type = if key { 0x10 } else { 0x20 };
    let cts = si24(composition_ms);
    Tag {
        bytes: tag(
            TAG_VIDEO,
            timestamp_ms,
            &[&[frame_type | CODEC_AVC, 1, cts[0], cts[1], cts[2]], avcc],
        ),
        kind: if key {
            TagKind::KeyFrame
        } else {
            TagKind::InterFrame
        },
        timestamp_ms,
    }
}

/// The composition time offset (`pts - dts`, ms) of a video frame tag, `None` for other tags.
pub fn composition_ms(tag: &Tag) -> Option<i32> {
    let data = tag.bytes.get(TAG_HEADER_LEN..TAG_HEADER_LEN + 5)?;
    if tag.bytes[0] & 0x1f != TAG_VIDEO || data[1] != 1 {
        return None;
    }
    let raw = i32::from_be_bytes([0, data[2], data[3], data[4]]);
    Some(if raw & 0x0080_0000 != 0 {
        raw - 0x0100_0000
    } else {
        raw
    })
}

/// A copy of `tag` at `timestamp_ms` and, when given and `tag` is a video frame, with the
/// composition offset `composition_ms` (signed 24 bits, saturating). The payload is unchanged.
pub fn retimed(tag: &Tag, timestamp_ms: u32, composition_ms: Option<i32>) -> Tag {
    let mut bytes = BytesMut::from(&tag.bytes[..]);
    if bytes.len() >= TAG_HEADER_LEN {
        bytes[4..7].copy_from_slice(&timestamp_ms.to_be_bytes()[1..]);
        bytes[7] = (timestamp_ms >> 24) as u8;
    }
    if let Some(cts) = composition_ms
        && self::composition_ms(tag).is_some()
    {
        bytes[TAG_HEADER_LEN + 2..TAG_HEADER_LEN + 5].copy_from_slice(&si24(cts));
    }
    Tag {
        bytes: bytes.freeze(),
        kind: tag.kind,
        timestamp_ms,
    }
}

/// The first byte of every AAC audio tag: `SoundFormat` 10, and for AAC always rate 3
/// (44 kHz), 16-bit, stereo, as the specification requires; the real values come from the
/// `AudioSpecificConfig`.
const AAC_FLAGS: u8 = (SOUND_AAC << 4) | (3 << 2) | (1 << 1) | 1;

/// The AAC sequence header: `AACPacketType` 0 with the `AudioSpecificConfig` (ISO/IEC
/// 14496-3 §1.6.2.1, the SDP's `config=`).
pub fn aac_sequence_header(timestamp_ms: u32, audio_specific_config: &[u8]) -> Tag {
    Tag {
        bytes: tag(
            TAG_AUDIO,
            timestamp_ms,
            &[&[AAC_FLAGS, 0], audio_specific_config],
        ),
        kind: TagKind::Config,
        timestamp_ms,
    }
}

/// One raw AAC frame (`AACPacketType` 1, no ADTS header).
pub fn aac_frame(timestamp_ms: u32, raw: &[u8]) -> Tag {
    Tag {
        bytes: tag(TAG_AUDIO, timestamp_ms, &[&[AAC_FLAGS, 1], raw]),
        kind: TagKind::Audio,
        timestamp_ms,
    }
}

/// What `onMetaData` says about the stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metadata {
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Frames per second, when known.
    pub framerate: Option<f64>,
    /// Whether an AAC track follows.
    pub has_audio: bool,
}

/// The `onMetaData` script tag (AMF0: the string `onMetaData`, then an ECMA array of
/// `width`, `height`, `framerate` when known, `videocodecid` 7, `hasVideo`, `hasAudio` and
/// `audiocodecid` 10 when there is audio).
pub fn metadata(timestamp_ms: u32, meta: &Metadata) -> Tag {
    let mut body = BytesMut::new();
    amf_string(&mut body, "onMetaData");
    let mut entries: Vec<(&str, AmfValue)> = vec![
        ("width", AmfValue::Number(f64::from(meta.width))),
        ("height", AmfValue::Number(f64::from(meta.height))),
        ("videocodecid", AmfValue::Number(f64::from(CODEC_AVC))),
        ("hasVideo", AmfValue::Bool(true)),
        ("hasAudio", AmfValue::Bool(meta.has_audio)),
    ];
    if let Some(fps) = meta.framerate {
        entries.push(("framerate", AmfValue::Number(fps)));
    }
    if meta.has_audio {
        entries.push(("audiocodecid", AmfValue::Number(f64::from(SOUND_AAC))));
    }
    body.put_u8(0x08);
    body.put_u32(u32::try_from(entries.len()).unwrap_or(0));
    for (key, value) in entries {
        amf_key(&mut body, key);
        match value {
            AmfValue::Number(n) => {
                body.put_u8(0x00);
                body.put_f64(n);
            }
            AmfValue::Bool(b) => {
                body.put_u8(0x01);
                body.put_u8(u8::from(b));
            }
        }
    }
    body.put_slice(&[0, 0, 0x09]);
    Tag {
        bytes: tag(TAG_SCRIPT, timestamp_ms, &[&body]),
        kind: TagKind::Config,
        timestamp_ms,
    }
}

enum AmfValue {
    Number(f64),
    Bool(bool),
}

fn amf_key(out: &mut BytesMut, key: &str) {
    out.put_u16(u16::try_from(key.len()).unwrap_or(0));
    out.put_slice(key.as_bytes());
}

fn amf_string(out: &mut BytesMut, text: &str) {
    out.put_u8(0x02);
    amf_key(out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u24(b: &[u8]) -> u32 {
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    #[test]
    fn header_flags_follow_the_tracks() {
        assert_eq!(
            header(false, true).as_ref(),
            &[b'F', b'L', b'V', 1, 0x01, 0, 0, 0, 9, 0, 0, 0, 0]
        );
        assert_eq!(header(true, true)[4], 0x05);
        assert_eq!(header(true, true).len(), HEADER_LEN);
    }

    #[test]
    fn tag_layout_and_previous_tag_size() {
        let t = tag(TAG_VIDEO, 0x0123_4567, &[&[1, 2], &[3]]);
        assert_eq!(t.len(), TAG_HEADER_LEN + 3 + 4);
        assert_eq!(t[0], TAG_VIDEO);
        assert_eq!(u24(&t[1..4]), 3, "DataSize");
        assert_eq!(u24(&t[4..7]), 0x23_4567, "Timestamp low 24 bits");
        assert_eq!(t[7], 0x01, "TimestampExtended");
        assert_eq!(u24(&t[8..11]), 0, "StreamID");
        assert_eq!(&t[11..14], &[1, 2, 3]);
        assert_eq!(
            u32::from_be_bytes([t[14], t[15], t[16], t[17]]),
            (TAG_HEADER_LEN + 3) as u32
        );
    }

    #[test]
    fn video_tags_carry_frame_type_and_composition_time() {
        let key = avc_frame(40, 83, true, &[0, 0, 0, 1, 0x65]);
        assert_eq!(key.kind, TagKind::KeyFrame);
        let d = &key.bytes[TAG_HEADER_LEN..];
        assert_eq!(d[0], 0x17);
        assert_eq!(d[1], 1, "AVCPacketType NALU");
        assert_eq!(u24(&d[2..5]), 83);
        assert_eq!(&d[5..10], &[0, 0, 0, 1, 0x65]);
        let inter = avc_frame(41, -42, false, &[0, 0, 0, 1, 0x41]);
        assert_eq!(inter.kind, TagKind::InterFrame);
        let d = &inter.bytes[TAG_HEADER_LEN..];
        assert_eq!(d[0], 0x27);
        // -42 as signed 24-bit.
        assert_eq!(u24(&d[2..5]), 0x00ff_ffff - 41);
        let seq = avc_sequence_header(0, &[1, 0x64, 0, 0x1e]);
        assert_eq!(seq.kind, TagKind::Config);
        assert_eq!(
            &seq.bytes[TAG_HEADER_LEN..TAG_HEADER_LEN + 5],
            &[0x17, 0, 0, 0, 0]
        );
    }

    #[test]
    fn retiming_rewrites_timestamps_only() {
        let frame = avc_frame(0x0100_0040, -40, false, &[0, 0, 0, 1, 0x41]);
        assert_eq!(composition_ms(&frame), Some(-40));
        let moved = retimed(&frame, 0x0200_0007, Some(12));
        assert_eq!(moved.timestamp_ms, 0x0200_0007);
        assert_eq!(u24(&moved.bytes[4..7]), 7);
        assert_eq!(moved.bytes[7], 2);
        assert_eq!(composition_ms(&moved), Some(12));
        assert_eq!(
            &moved.bytes[16..],
            &frame.bytes[16..],
            "payload and size unchanged"
        );
        let audio = aac_frame(5, &[1]);
        assert_eq!(composition_ms(&audio), None);
        assert_eq!(retimed(&audio, 9, Some(3)).bytes.len(), audio.bytes.len());
    }

    #[test]
    fn audio_tags() {
        let seq = aac_sequence_header(0, &[0x12, 0x10]);
        assert_eq!(
            &seq.bytes[TAG_HEADER_LEN..TAG_HEADER_LEN + 4],
            &[0xaf, 0, 0x12, 0x10]
        );
        let frame = aac_frame(23, &[0xde, 0xad]);
        assert_eq!(frame.bytes[0], TAG_AUDIO);
        assert_eq!(
            &frame.bytes[TAG_HEADER_LEN..TAG_HEADER_LEN + 4],
            &[0xaf, 1, 0xde, 0xad]
        );
        assert_eq!(frame.kind, TagKind::Audio);
    }

    #[test]
    fn metadata_is_amf0_ecma_array() {
        let tag = metadata(
            0,
            &Metadata {
                width: 640,
                height: 360,
                framerate: Some(25.0),
                has_audio: false,
            },
        );
        let d = &tag.bytes[TAG_HEADER_LEN..tag.bytes.len() - 4];
        assert_eq!(&d[..13], b"\x02\x00\x0aonMetaData");
        assert_eq!(d[13], 0x08);
        assert_eq!(u32::from_be_bytes([d[14], d[15], d[16], d[17]]), 6);
        assert_eq!(&d[d.len() - 3..], &[0, 0, 9]);
        let text = String::from_utf8_lossy(d);
        assert!(text.contains("width") && text.contains("framerate"));
        assert!(!text.contains("audiocodecid"));
    }
}
