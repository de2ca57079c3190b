//! FLV tags to MPEG-TS segments cut at key frames (RFC 8216 §3.2, §6.2.1).
//!
//! Video: the AVC sequence header's `AVCDecoderConfigurationRecord` gives the SPS and PPS and
//! the NAL length size; every frame becomes an Annex B access unit (an access unit delimiter,
//! the SPS and PPS before each IDR, then its NAL units with start codes) in one PES with
//! PTS = DTS + composition time, both from the FLV timestamps (ms x 90). Audio: each raw AAC
//! frame gets an ADTS header built from the `AudioSpecificConfig`. A segment starts with a PAT
//! and a PMT and the key frame; it ends at the first key frame at least the target duration
//! after its start, and its duration is the distance between the two key frames.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::ts::{PID_AUDIO, PID_VIDEO, Pes, STREAM_ID_AUDIO, STREAM_ID_VIDEO, TsMuxer};
use crate::flv::ReadTag;
use crate::flv::avc::{NAL_AUD, NAL_PPS, NAL_SPS};

/// Why an FLV tag cannot be remuxed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemuxError {
    /// The `AVCDecoderConfigurationRecord` is cut short or inconsistent.
    #[error("malformed AVC decoder configuration record: {reason}")]
    AvcConfig {
        /// What is wrong.
        reason: &'static str,
    },
    /// The `AudioSpecificConfig` is shorter than 2 bytes or uses an explicit sampling rate,
    /// which ADTS cannot carry.
    #[error("unsupported AudioSpecificConfig {config:02x?}")]
    AudioConfig {
        /// Its bytes.
        config: Vec<u8>,
    },
    /// A video frame's length-prefixed NAL units run past its end.
    #[error("truncated NAL unit in a video frame at {timestamp_ms} ms")]
    Truncated {
        /// The frame's FLV timestamp.
        timestamp_ms: u32,
    },
}

/// The parameter sets and NAL length size of an `AVCDecoderConfigurationRecord` (ISO/IEC
/// 14496-15 §5.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// Bytes of each NAL unit length prefix (1, 2 or 4).
    pub length_size: usize,
    /// The SPS and PPS NAL units in Annex B form (each after a 4-byte start code).
    pub annex_b: Bytes,
}

impl AvcConfig {
    /// Parses a record.
    ///
    /// # Errors
    /// [`RemuxError::AvcConfig`] when it is cut short or has no SPS or PPS.
    pub fn parse(record: &[u8]) -> Result<Self, RemuxError> {
        let bad = |reason| RemuxError::AvcConfig { reason };
        if record.len() < 7 || record[0] != 1 {
            return Err(bad("shorter than 7 bytes or version is not 1"));
        }
        let length_size = usize::from(record[4] & 0x03) + 1;
        if length_size == 3 {
            return Err(bad("NAL length size of 3 bytes"));
        }
        let mut annex_b = BytesMut::new();
        let mut offset = 5;
        for (mask, what) in [(0x1f, "SPS"), (0xff, "PPS")] {
            let count = record.get(offset).ok_or(bad("no parameter set count"))? & mask;
            offset += 1;
            if count == 0 {
                return Err(bad(if what == "SPS" { "no SPS" } else { "no PPS" }));
            }
            for _ in 0..count {
                let len = record
                    .get(offset..offset + 2)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                    .ok_or(bad("parameter set length cut short"))?;
                let unit = record
                    .get(offset + 2..offset + 2 + len)
                    .ok_or(bad("parameter set cut short"))?;
                annex_b.put_slice(&[0, 0, 0, 1]);
                annex_b.put_slice(unit);
                offset += 2 + len;
            }
        }
        Ok(Self {
            length_size,
            annex_b: annex_b.freeze(),
        })
    }
}

/// What an ADTS header needs from an `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsConfig {
    /// `audioObjectType` (2 = AAC LC).
    pub object_type: u8,
    /// `samplingFrequencyIndex` (3 = 48 kHz, 4 = 44.1 kHz).
    pub frequency_index: u8,
    /// `channelConfiguration`.
    pub channels: u8,
}

impl AdtsConfig {
    /// Parses the first two bytes of an `AudioSpecificConfig`.
    ///
    /// # Errors
    /// [`RemuxError::AudioConfig`] when it is too short, uses an explicit frequency (index
    /// 15) or an object type above 4 (ADTS has 2 bits for the profile).
    pub fn parse(config: &[u8]) -> Result<Self, RemuxError> {
        let unsupported = || RemuxError::AudioConfig {
            config: config.to_vec(),
        };
        let [a, b, ..] = config else {
            return Err(unsupported());
        };
        let object_type = a >> 3;
        let frequency_index = ((a & 0x07) << 1) | (b >> 7);
        let channels = (b >> 3) & 0x0f;
        if object_type == 0 || object_type > 4 || frequency_index > 12 {
            return Err(unsupported());
        }
        Ok(Self {
            object_type,
            frequency_index,
            channels,
        })
    }

    /// The 7-byte ADTS header (MPEG-4, no CRC) of a raw frame of `raw_len` bytes.
    pub fn header(&self, raw_len: usize) -> [u8; 7] {
        let len = (raw_len + 7).min(0x1fff);
        [
            0xff,
            0xf1,
            ((self.object_type - 1) << 6)
                | (self.frequency_index << 2)
                | ((self.channels >> 2) & 1),
            ((self.channels & 3) << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            ((len as u8 & 0x07) << 5) | 0x1f,
            0xfc,
        ]
    }
}

/// A finished segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The transport stream bytes (a whole number of 188-byte packets).
    pub data: Bytes,
    /// Its duration: from its first key frame to the next segment's, ms.
    pub duration_ms: u32,
    /// The decoding time of its first key frame, ms on the stream's unwrapped timeline.
    pub start_ms: i64,
}

#[derive(Debug)]
struct Open {
    start_ms: i64,
    last_video_ms: i64,
    data: BytesMut,
}

/// Unwraps FLV's 32-bit millisecond timestamps into a monotonic-ish 64-bit timeline.
#[derive(Debug, Default, Clone, Copy)]
struct Unwrap {
    last: Option<u32>,
    epoch: i64,
}

impl Unwrap {
    fn map(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last {
            // A jump back by more than half the range is a wrap.
            if ts < last && last - ts > u32::MAX / 2 {
                self.epoch += 1 << 32;
            }
        }
        self.last = Some(ts);
        self.epoch + i64::from(ts)
    }
}

/// The segmenter of one stream; see the module docs.
#[derive(Debug)]
pub struct Segmenter {
    target_ms: i64,
    muxer: TsMuxer,
    avc: Option<AvcConfig>,
    adts: Option<AdtsConfig>,
    open: Option<Open>,
    clock: Unwrap,
    frame_ms: Option<i64>,
}

/// 90 kHz ticks of `ms` (33-bit wrap is the muxer's).
fn ticks(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0) * 90
}

impl Segmenter {
    /// A segmenter cutting at the first key frame `target` after a segment's start, for a
    /// stream whose FLV header announces audio when `has_audio`.
    pub fn new(target: Duration, has_audio: bool) -> Self {
        Self {
            target_ms: i64::try_from(target.as_millis()).unwrap_or(i64::MAX),
            muxer: TsMuxer::new(has_audio),
            avc: None,
            adts: None,
            open: None,
            clock: Unwrap::default(),
            frame_ms: None,
        }
    }

    /// Feeds one FLV tag; returns the segment it completed, if any.
    ///
    /// # Errors
    /// [`RemuxError`] for a malformed configuration or frame (the tag is skipped; the
    /// segmenter stays usable).
    pub fn push(&mut self, tag: &ReadTag) -> Result<Option<Segment>, RemuxError> {
        if tag.is_avc_sequence_header() {
            self.avc = Some(AvcConfig::parse(tag.data.get(5..).unwrap_or_default())?);
            return Ok(None);
        }
        if tag.is_aac_sequence_header() {
            self.adts = Some(AdtsConfig::parse(tag.data.get(2..).unwrap_or_default())?);
            return Ok(None);
        }
        if tag.is_video_frame() {
            return self.video(tag);
        }
        if tag.is_audio_frame() {
            self.audio(tag);
        }
        Ok(None)
    }

    fn video(&mut self, tag: &ReadTag) -> Result<Option<Segment>, RemuxError> {
        let Some(avc) = self.avc.clone() else {
            return Ok(None);
        };
        let dts = self.clock.map(tag.timestamp_ms);
        let key = tag.is_key_frame();
        let mut done = None;
        if key {
            let cut = self
                .open
                .as_ref()
                .is_none_or(|open| dts - open.start_ms >= self.target_ms);
            if cut {
                done = self.close(dts);
                let mut data = BytesMut::with_capacity(256 * 1024);
                self.muxer.write_tables(&mut data);
                self.open = Some(Open {
                    start_ms: dts,
                    last_video_ms: dts,
                    data,
                });
            }
        }
        let Some(open) = self.open.as_mut() else {
            // Nothing before the first key frame is decodable.
            return Ok(done);
        };
        if dts > open.last_video_ms {
            self.frame_ms = Some(dts - open.last_video_ms);
        }
        open.last_video_ms = open.last_video_ms.max(dts);
        let pts = dts + i64::from(tag.composition_ms().unwrap_or(0));
        let frame = tag.data.get(5..).unwrap_or_default();
        let mut unit = BytesMut::with_capacity(frame.len() + avc.annex_b.len() + 16);
        unit.put_slice(&[0, 0, 0, 1, NAL_AUD, 0xf0]);
        if key {
            unit.put_slice(&avc.annex_b);
        }
        let mut offset = 0;
        while offset < frame.len() {
            let len = frame
                .get(offset..offset + avc.length_size)
                .map(|b| b.iter().fold(0usize, |acc, x| (acc << 8) | usize::from(*x)))
                .ok_or(RemuxError::Truncated {
                    timestamp_ms: tag.timestamp_ms,
                })?;
            let start = offset + avc.length_size;
            let nal = frame.get(start..start + len).ok_or(RemuxError::Truncated {
                timestamp_ms: tag.timestamp_ms,
            })?;
            let nal_type = nal.first().map_or(0, |b| b & 0x1f);
            // In-band delimiters are replaced by ours, in-band parameter sets of a key frame
            // by the configuration's.
            if !(nal_type == NAL_AUD || key && matches!(nal_type, NAL_SPS | NAL_PPS)) {
                unit.put_slice(&[0, 0, 1]);
                unit.put_slice(nal);
            }
            offset = start + len;
        }
        self.muxer.write_pes(
            &mut open.data,
            &Pes {
                pid: PID_VIDEO,
                stream_id: STREAM_ID_VIDEO,
                pts: ticks(pts),
                dts: ticks(dts),
                random_access: key,
                pcr: true,
                payload: &unit,
            },
        );
        Ok(done)
    }

    fn audio(&mut self, tag: &ReadTag) {
        let (Some(adts), Some(open), true) =
            (self.adts, self.open.as_mut(), self.muxer.has_audio())
        else {
            return;
        };
        // Audio runs on the video's clock: place it by its distance to the last video
        // timestamp (so it follows the video's wraps).
        let last = self.clock.last.unwrap_or(tag.timestamp_ms);
        let delta = i64::from(tag.timestamp_ms.wrapping_sub(last).cast_signed());
        let ms = self.clock.epoch + i64::from(last) + delta;
        let raw = tag.data.get(2..).unwrap_or_default();
        let mut frame = BytesMut::with_capacity(raw.len() + 7);
        frame.put_slice(&adts.header(raw.len()));
        frame.put_slice(raw);
        self.muxer.write_pes(
            &mut open.data,
            &Pes {
                pid: PID_AUDIO,
                stream_id: STREAM_ID_AUDIO,
                pts: ticks(ms),
                dts: ticks(ms),
                random_access: false,
                pcr: false,
                payload: &frame,
            },
        );
    }

    fn close(&mut self, end_ms: i64) -> Option<Segment> {
        let open = self.open.take()?;
        Some(Segment {
            data: open.data.freeze(),
            duration_ms: u32::try_from((end_ms - open.start_ms).max(1)).unwrap_or(u32::MAX),
            start_ms: open.start_ms,
        })
    }

    /// Ends the open segment (the stream ended); its duration runs to one frame after its
    /// last video frame.
    pub fn finish(&mut self) -> Option<Segment> {
        let end = self.open.as_ref()?.last_video_ms + self.frame_ms.unwrap_or(40);
        self.close(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::mux;
    use crate::flv::{FlvReader, ReadTag};
    use crate::hls::ts::{PACKET_LEN, PID_PAT, PID_PMT, read_timestamp};

    /// A record with one 4-byte SPS and one 2-byte PPS, 4-byte NAL lengths.
    const RECORD: [u8; 17] = [
        1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1e, 1, 0, 2, 0x68, 0xce,
    ];

    fn read(tags: &[mux::Tag]) -> Vec<ReadTag> {
        let mut reader = FlvReader::new();
        reader.push(&mux::header(true, true));
        for tag in tags {
            reader.push(&tag.bytes);
        }
        std::iter::from_fn(|| reader.next_tag().unwrap()).collect()
    }

    fn pid(packet: &[u8]) -> u16 {
        u16::from_be_bytes([packet[1], packet[2]]) & 0x1fff
    }

    #[test]
    fn configuration_records() {
        let avc = AvcConfig::parse(&RECORD).unwrap();
        assert_eq!(avc.length_size, 4);
        assert_eq!(
            &avc.annex_b[..],
            &[0, 0, 0, 1, 0x67, 0x64, 0, 0x1e, 0, 0, 0, 1, 0x68, 0xce]
        );
        assert!(AvcConfig::parse(&RECORD[..10]).is_err());
        // AAC LC, 44.1 kHz, stereo.
        let adts = AdtsConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(
            (adts.object_type, adts.frequency_index, adts.channels),
            (2, 4, 2)
        );
        let header = adts.header(100);
        assert_eq!(&header[..2], &[0xff, 0xf1]);
        let len = (usize::from(header[3] & 3) << 11)
            | (usize::from(header[4]) << 3)
            | usize::from(header[5] >> 5);
        assert_eq!(len, 107, "frame length includes the header");
        assert_eq!(header[2] >> 6, 1, "profile = object type - 1");
        assert!(
            AdtsConfig::parse(&[0x17, 0x80]).is_err(),
            "explicit frequency"
        );
    }

    #[test]
    fn segments_start_at_key_frames_after_the_target_with_real_durations() {
        // 25 fps, a key frame every 25 frames (1 s), B-frame style composition offsets,
        // AAC every 23 ms.
        let mut tags = vec![
            mux::avc_sequence_header(0, &RECORD),
            mux::aac_sequence_header(0, &[0x12, 0x10]),
        ];
        for i in 0..130u32 {
            let ts = i * 40;
            let key = i % 25 == 0;
            let nal = if key { 0x65 } else { 0x41 };
            tags.push(mux::avc_frame(
                ts,
                80,
                key,
                &[0, 0, 0, 3, nal, 0x88, i as u8],
            ));
            tags.push(mux::aac_frame(ts + 5, &[0x21, 0x10, i as u8]));
        }
        let mut segmenter = Segmenter::new(Duration::from_secs(2), true);
        let mut segments = Vec::new();
        for tag in read(&tags) {
            if let Some(segment) = segmenter.push(&tag).unwrap() {
                segments.push(segment);
            }
        }
        segments.extend(segmenter.finish());
        let durations: Vec<u32> = segments.iter().map(|s| s.duration_ms).collect();
        assert_eq!(
            durations,
            vec![2000, 2000, 1200],
            "cut at 0, 2 s, 4 s; the rest at the end"
        );
        let starts: Vec<i64> = segments.iter().map(|s| s.start_ms).collect();
        assert_eq!(starts, vec![0, 2000, 4000]);
        for segment in &segments {
            let packets: Vec<&[u8]> = segment.data.chunks(PACKET_LEN).collect();
            assert_eq!(segment.data.len() % PACKET_LEN, 0);
            assert_eq!(pid(packets[0]), PID_PAT);
            assert_eq!(pid(packets[1]), PID_PMT);
            let video = packets[2];
            assert_eq!(pid(video), PID_VIDEO);
            assert_eq!(
                video[5] & 0x40,
                0x40,
                "random_access_indicator on the key frame"
            );
            let pes = &video[5 + usize::from(video[4])..];
            assert_eq!(&pes[..4], &[0, 0, 1, STREAM_ID_VIDEO]);
            let dts = read_timestamp(&pes[14..]).unwrap();
            assert_eq!(dts, u64::try_from(segment.start_ms).unwrap() * 90);
            assert_eq!(
                read_timestamp(&pes[9..]).unwrap(),
                dts + 80 * 90,
                "PTS = DTS + CTS"
            );
            // AUD, SPS, PPS, then the IDR slice.
            let es = &pes[19..];
            assert_eq!(&es[..6], &[0, 0, 0, 1, 9, 0xf0]);
            assert_eq!(&es[6..20], &AvcConfig::parse(&RECORD).unwrap().annex_b[..]);
            assert_eq!(
                &es[20..26],
                &[0, 0, 1, 0x65, 0x88, (segment.start_ms / 40) as u8]
            );
            let audio = packets.iter().filter(|p| pid(p) == PID_AUDIO).count();
            assert!(audio >= 25, "{audio} audio packets");
        }
    }

    #[test]
    fn frames_before_the_first_key_frame_and_configuration_are_dropped() {
        let tags = [
            mux::avc_frame(0, 0, true, &[0, 0, 0, 1, 0x65]),
            mux::avc_sequence_header(40, &RECORD),
            mux::avc_frame(40, 0, false, &[0, 0, 0, 1, 0x41]),
            mux::avc_frame(80, 0, true, &[0, 0, 0, 1, 0x65]),
        ];
        let mut segmenter = Segmenter::new(Duration::from_secs(2), false);
        for tag in read(&tags) {
            assert!(segmenter.push(&tag).unwrap().is_none());
        }
        let only = segmenter.finish().unwrap();
        assert_eq!(only.start_ms, 80);
        assert_eq!(only.duration_ms, 40, "one frame (the last known step)");
        assert_eq!(only.data.len(), 3 * PACKET_LEN, "PAT, PMT, one frame");
    }
}
