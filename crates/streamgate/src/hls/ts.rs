//! An MPEG-2 transport stream muxer (ISO/IEC 13818-1) for one program of H.264 video and,
//! optionally, AAC audio: 188-byte packets, PAT and PMT (with their CRC-32), PES packets with
//! PTS/DTS, the PCR on the video PID, per-PID continuity counters.
//!
//! Sans-I/O: [`TsMuxer`] appends packets to a byte buffer; the segmenter
//! ([`super::segmenter`]) decides what goes in and where a segment starts.

use bytes::{BufMut, BytesMut};

/// Bytes in a transport stream packet.
pub const PACKET_LEN: usize = 188;
/// The sync byte that starts every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// PID of the program association table.
pub const PID_PAT: u16 = 0x0000;
/// PID of the program map table.
pub const PID_PMT: u16 = 0x1000;
/// PID of the video elementary stream (also the PCR PID).
pub const PID_VIDEO: u16 = 0x0100;
/// PID of the audio elementary stream.
pub const PID_AUDIO: u16 = 0x0101;
/// `stream_type` of H.264 video (Table 2-34).
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// `stream_type` of AAC audio with ADTS framing.
pub const STREAM_TYPE_AAC: u8 = 0x0f;
/// PES `stream_id` of the first video stream.
pub const STREAM_ID_VIDEO: u8 = 0xe0;
/// PES `stream_id` of the first audio stream.
pub const STREAM_ID_AUDIO: u8 = 0xc0;
/// The program number announced in the PAT.
pub const PROGRAM_NUMBER: u16 = 1;

/// Timestamps are 33-bit counts of a 90 kHz clock.
const TS_MASK: u64 = (1 << 33) - 1;

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, initial value all ones, no reflection, no final
/// xor), the checksum of PSI sections (Annex A).
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for byte in data {
        crc ^= u32::from(*byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One PES payload to packetize.
#[derive(Debug, Clone, Copy)]
pub struct Pes<'a> {
    /// The elementary stream's PID.
    pub pid: u16,
    /// The PES `stream_id`.
    pub stream_id: u8,
    /// Presentation time, 90 kHz ticks (wrapped to 33 bits).
    pub pts: u64,
    /// Decoding time, 90 kHz ticks; written only when it differs from `pts`.
    pub dts: u64,
    /// Whether this is a random access point (a key frame): the first packet's adaptation
    /// field says so.
    pub random_access: bool,
    /// Whether to carry the PCR (the decoding time) in the first packet.
    pub pcr: bool,
    /// The elementary stream bytes (an Annex B access unit, ADTS frames).
    pub payload: &'a [u8],
}

/// The muxer: its continuity counters and whether the program has audio.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    has_audio: bool,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
}

impl TsMuxer {
    /// A muxer for a program of H.264 video and, when `has_audio`, AAC audio.
    pub fn new(has_audio: bool) -> Self {
        Self {
            has_audio,
            cc_pat: 0,
            cc_pmt: 0,
            cc_video: 0,
            cc_audio: 0,
        }
    }

    /// Whether the PMT announces an audio stream.
    pub fn has_audio(&self) -> bool {
        self.has_audio
    }

    fn counter(&mut self, pid: u16) -> u8 {
        let cc = match pid {
            PID_PAT => &mut self.cc_pat,
            PID_PMT => &mut self.cc_pmt,
            PID_VIDEO => &mut self.cc_video,
            _ => &mut self.cc_audio,
        };
        let value = *cc;
        *cc = (*cc + 1) & 0x0f;
        value
    }

    /// Appends the PAT and the PMT (one packet each), as every segment starts.
    pub fn write_tables(&mut self, out: &mut BytesMut) {
        // PAT: one program, its PMT on PID_PMT.
        let mut pat = BytesMut::new();
        pat.put_u16(PROGRAM_NUMBER);
        pat.put_u16(0xe000 | PID_PMT);
        self.write_section(out, PID_PAT, 0x00, 0x0001, &pat);
        // PMT: the PCR on the video PID, no program descriptors, then the streams.
        let mut pmt = BytesMut::new();
        pmt.put_u16(0xe000 | PID_VIDEO);
        pmt.put_u16(0xf000);
        for (stream_type, pid) in std::iter::once((STREAM_TYPE_H264, PID_VIDEO))
            .chain(self.has_audio.then_some((STREAM_TYPE_AAC, PID_AUDIO)))
        {
            pmt.put_u8(stream_type);
            pmt.put_u16(0xe000 | pid);
            pmt.put_u16(0xf000);
        }
        self.write_section(out, PID_PMT, 0x02, PROGRAM_NUMBER, &pmt);
    }

    /// One PSI section (`table_id`, `id` is the transport stream id or program number) with
    /// `body` after the common header, in one packet padded with 0xff.
    fn write_section(&mut self, out: &mut BytesMut, pid: u16, table_id: u8, id: u16, body: &[u8]) {
        let mut section = BytesMut::with_capacity(12 + body.len());
        section.put_u8(table_id);
        // section_syntax_indicator, '0', reserved, section_length (after this field, CRC
        // included).
        let length = u16::try_from(5 + body.len() + 4).unwrap_or(0x3ff) & 0x3ff;
        section.put_u16(0xb000 | length);
        section.put_u16(id);
        section.put_u8(0xc1); // reserved, version 0, current_next_indicator
        section.put_u8(0); // section_number
        section.put_u8(0); // last_section_number
        section.put_slice(body);
        let crc = crc32_mpeg2(&section);
        section.put_u32(crc);
        let start = out.len();
        out.put_u8(SYNC_BYTE);
        out.put_u16(0x4000 | pid); // payload_unit_start_indicator
        let cc = self.counter(pid);
        out.put_u8(0x10 | cc);
        out.put_u8(0); // pointer_field
        out.put_slice(&section);
        out.resize(start + PACKET_LEN, 0xff);
    }

    /// Appends `pes` as PES packet(s) cut into transport packets; the last one is stuffed
    /// through its adaptation field.
    pub fn write_pes(&mut self, out: &mut BytesMut, pes: &Pes<'_>) {
        let header = pes_header(pes);
        let total = header.len() + pes.payload.len();
        let mut written = 0;
        let mut first = true;
        while written < total {
            let start = out.len();
            // Adaptation field content (after its length byte) of this packet.
            let mut adaptation = BytesMut::new();
            if first && (pes.random_access || pes.pcr) {
                let mut flags = 0u8;
                if pes.random_access {
                    flags |= 0x40;
                }
                if pes.pcr {
                    flags |= 0x10;
                }
                adaptation.put_u8(flags);
                if pes.pcr {
                    put_pcr(&mut adaptation, pes.dts & TS_MASK);
                }
            }
            let has_field = !adaptation.is_empty();
            let room = PACKET_LEN - 4 - if has_field { 1 + adaptation.len() } else { 0 };
            let left = total - written;
            let (take, stuffing) = if left >= room {
                (room, 0)
            } else if has_field {
                (left, room - left)
            } else {
                // An adaptation field of `room - left` bytes: its length byte, then the
                // flags byte and 0xff stuffing when there is space for them.
                (left, room - left)
            };
            let adaptation_len = if has_field {
                Some(adaptation.len() + stuffing)
            } else if stuffing > 0 {
                Some(stuffing - 1)
            } else {
                None
            };
            out.put_u8(SYNC_BYTE);
            let pusi = if first { 0x4000 } else { 0 };
            out.put_u16(pusi | pes.pid);
            let cc = self.counter(pes.pid);
            let control = if adaptation_len.is_some() { 0x30 } else { 0x10 };
            out.put_u8(control | cc);
            if let Some(len) = adaptation_len {
                out.put_u8(u8::try_from(len).unwrap_or(183));
                if has_field {
                    out.put_slice(&adaptation);
                    out.put_bytes(0xff, stuffing);
                } else if len > 0 {
                    out.put_u8(0); // no flags
                    out.put_bytes(0xff, len - 1);
                }
            }
            // The payload bytes: the PES header first, then the elementary stream.
            let mut remaining = take;
            while remaining > 0 {
                if written < header.len() {
                    let n = remaining.min(header.len() - written);
                    out.put_slice(&header[written..written + n]);
                    written += n;
                    remaining -= n;
                } else {
                    let offset = written - header.len();
                    out.put_slice(&pes.payload[offset..offset + remaining]);
                    written += remaining;
                    remaining = 0;
                }
            }
            debug_assert_eq!(out.len() - start, PACKET_LEN);
            first = false;
        }
    }
}

/// The PES header of `pes`: start code, stream id, packet length (0 = unbounded for video
/// longer than 65535 bytes), flags, PTS and, when different, DTS.
fn pes_header(pes: &Pes<'_>) -> BytesMut {
    let with_dts = pes.dts & TS_MASK != pes.pts & TS_MASK;
    let optional = if with_dts { 10 } else { 5 };
    let mut header = BytesMut::with_capacity(9 + optional);
    header.put_slice(&[0, 0, 1, pes.stream_id]);
    let length = 3 + optional + pes.payload.len();
    let length = if pes.stream_id == STREAM_ID_VIDEO {
        u16::try_from(length).unwrap_or(0)
    } else {
        u16::try_from(length).unwrap_or(u16::MAX)
    };
    header.put_u16(length);
    header.put_u8(0x80); // '10', not scrambled, no priority, no alignment flag
    header.put_u8(if with_dts { 0xc0 } else { 0x80 });
    header.put_u8(u8::try_from(optional).unwrap_or(10));
    put_timestamp(&mut header, if with_dts { 0x3 } else { 0x2 }, pes.pts);
    if with_dts {
        put_timestamp(&mut header, 0x1, pes.dts);
    }
    header
}

/// A 33-bit timestamp in the PES layout: 4-bit `prefix`, then 3 + 15 + 15 bits each followed
/// by a marker bit.
fn put_timestamp(out: &mut BytesMut, prefix: u8, ts: u64) {
    let ts = ts & TS_MASK;
    out.put_u8((prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1);
    out.put_u16(((((ts >> 15) & 0x7fff) as u16) << 1) | 1);
    out.put_u16((((ts & 0x7fff) as u16) << 1) | 1);
}

/// The 6-byte PCR: 33-bit base (90 kHz), 6 reserved bits, 9-bit extension (0).
fn put_pcr(out: &mut BytesMut, base: u64) {
    let base = base & TS_MASK;
    out.put_u32((base >> 1) as u32);
    out.put_u8((((base & 1) as u8) << 7) | 0x7e);
    out.put_u8(0);
}

/// Reads a 5-byte PES timestamp (the PTS or DTS field of a PES header), for tests and checks.
pub fn read_timestamp(b: &[u8]) -> Option<u64> {
    let b = b.get(..5)?;
    Some(
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(u16::from_be_bytes([b[1], b[2]]) >> 1) << 15
            | u64::from(u16::from_be_bytes([b[3], b[4]]) >> 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(packet: &[u8]) -> u16 {
        u16::from_be_bytes([packet[1], packet[2]]) & 0x1fff
    }

    #[test]
    fn crc_of_the_check_string() {
        // The CRC-32/MPEG-2 catalogue check value.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn pat_and_pmt_fields_and_crc() {
        let mut muxer = TsMuxer::new(true);
        let mut out = BytesMut::new();
        muxer.write_tables(&mut out);
        assert_eq!(out.len(), 2 * PACKET_LEN);
        let (pat, pmt) = out.split_at(PACKET_LEN);
        assert_eq!(pat[0], SYNC_BYTE);
        assert_eq!(pid(pat), PID_PAT);
        assert_eq!(pat[1] & 0x40, 0x40, "payload_unit_start_indicator");
        assert_eq!(pat[4], 0, "pointer_field");
        let section = &pat[5..];
        assert_eq!(section[0], 0x00, "table_id");
        let len = usize::from(u16::from_be_bytes([section[1], section[2]]) & 0x0fff);
        assert_eq!(len, 13);
        assert_eq!(u16::from_be_bytes([section[8], section[9]]), PROGRAM_NUMBER);
        assert_eq!(
            u16::from_be_bytes([section[10], section[11]]) & 0x1fff,
            PID_PMT
        );
        assert_eq!(crc32_mpeg2(&section[..3 + len]), 0, "CRC over the section");
        assert!(pat[5 + 3 + len..].iter().all(|b| *b == 0xff), "padding");

        assert_eq!(pid(pmt), PID_PMT);
        let section = &pmt[5..];
        assert_eq!(section[0], 0x02, "table_id");
        let len = usize::from(u16::from_be_bytes([section[1], section[2]]) & 0x0fff);
        assert_eq!(crc32_mpeg2(&section[..3 + len]), 0);
        assert_eq!(
            u16::from_be_bytes([section[8], section[9]]) & 0x1fff,
            PID_VIDEO,
            "PCR_PID"
        );
        let streams = &section[12..3 + len - 4];
        assert_eq!(streams.len(), 10);
        assert_eq!(streams[0], STREAM_TYPE_H264);
        assert_eq!(
            u16::from_be_bytes([streams[1], streams[2]]) & 0x1fff,
            PID_VIDEO
        );
        assert_eq!(streams[5], STREAM_TYPE_AAC);
        assert_eq!(
            u16::from_be_bytes([streams[6], streams[7]]) & 0x1fff,
            PID_AUDIO
        );
        let mut video_only = BytesMut::new();
        TsMuxer::new(false).write_tables(&mut video_only);
        let len = usize::from(
            u16::from_be_bytes([video_only[PACKET_LEN + 6], video_only[PACKET_LEN + 7]]) & 0x0fff,
        );
        assert_eq!(len, 9 + 5 + 4, "one stream in the PMT");
    }

    #[test]
    fn pes_fields_pcr_and_continuity_counters() {
        let mut muxer = TsMuxer::new(false);
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut out = BytesMut::new();
        let (pts, dts) = (900_000 + 3600, 900_000);
        muxer.write_pes(
            &mut out,
            &Pes {
                pid: PID_VIDEO,
                stream_id: STREAM_ID_VIDEO,
                pts,
                dts,
                random_access: true,
                pcr: true,
                payload: &payload,
            },
        );
        assert_eq!(out.len() % PACKET_LEN, 0);
        let packets: Vec<&[u8]> = out.chunks(PACKET_LEN).collect();
        assert!(packets.len() >= 6);
        // Continuity counters count up per packet of the PID.
        for (i, packet) in packets.iter().enumerate() {
            assert_eq!(packet[0], SYNC_BYTE);
            assert_eq!(pid(packet), PID_VIDEO);
            assert_eq!(usize::from(packet[3] & 0x0f), i % 16);
            assert_eq!(packet[1] & 0x40 != 0, i == 0, "PUSI only on the first");
        }
        let first = packets[0];
        assert_eq!(first[3] & 0x30, 0x30, "adaptation field and payload");
        let af_len = usize::from(first[4]);
        assert_eq!(af_len, 7);
        assert_eq!(first[5], 0x50, "random_access and PCR flags");
        let pcr_base = u64::from(u32::from_be_bytes([first[6], first[7], first[8], first[9]])) << 1
            | u64::from(first[10] >> 7);
        assert_eq!(pcr_base, dts);
        let pes = &first[5 + af_len..];
        assert_eq!(&pes[..4], &[0, 0, 1, STREAM_ID_VIDEO]);
        assert_eq!(
            usize::from(u16::from_be_bytes([pes[4], pes[5]])),
            3 + 10 + payload.len()
        );
        assert_eq!(pes[7], 0xc0, "PTS and DTS");
        assert_eq!(pes[8], 10);
        assert_eq!(pes[9] >> 4, 3);
        assert_eq!(read_timestamp(&pes[9..]), Some(pts));
        assert_eq!(pes[14] >> 4, 1);
        assert_eq!(read_timestamp(&pes[14..]), Some(dts));
        // Reassembled payload equals the input.
        let mut body = Vec::new();
        for packet in &packets {
            let start = if packet[3] & 0x20 != 0 {
                5 + usize::from(packet[4])
            } else {
                4
            };
            body.extend_from_slice(&packet[start..]);
        }
        assert_eq!(&body[19..], &payload[..]);
        // Another PES on the same PID continues the counter; PTS only when equal to DTS.
        let mut more = BytesMut::new();
        muxer.write_pes(
            &mut more,
            &Pes {
                pid: PID_VIDEO,
                stream_id: STREAM_ID_VIDEO,
                pts: 5,
                dts: 5,
                random_access: false,
                pcr: false,
                payload: &[1, 2, 3],
            },
        );
        assert_eq!(more.len(), PACKET_LEN);
        assert_eq!(usize::from(more[3] & 0x0f), packets.len() % 16);
        let af_len = usize::from(more[4]);
        let pes = &more[5 + af_len..];
        assert_eq!(pes[7], 0x80, "PTS only");
        assert_eq!(read_timestamp(&pes[9..]), Some(5));
        assert_eq!(&pes[14..], &[1, 2, 3]);
    }

    #[test]
    fn one_byte_of_stuffing_is_an_empty_adaptation_field() {
        let mut muxer = TsMuxer::new(true);
        // 184 payload bytes per packet; a PES of 183 bytes needs 1 byte of stuffing.
        let payload = vec![0xaa; 183 - 14];
        let mut out = BytesMut::new();
        muxer.write_pes(
            &mut out,
            &Pes {
                pid: PID_AUDIO,
                stream_id: STREAM_ID_AUDIO,
                pts: 1,
                dts: 1,
                random_access: false,
                pcr: false,
                payload: &payload,
            },
        );
        assert_eq!(out.len(), PACKET_LEN);
        assert_eq!(out[3] & 0x30, 0x30);
        assert_eq!(out[4], 0, "adaptation_field_length 0");
        assert_eq!(&out[5..9], &[0, 0, 1, STREAM_ID_AUDIO]);
    }
}
