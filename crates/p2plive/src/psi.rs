//! Program-specific information (ISO/IEC 13818-1 §2.4.4) and random access points: enough of
//! the PAT and PMT to know which packets are tables and which PID carries the video, and
//! whether a packet starts a key frame (an H.264 IDR, an HEVC IRAP picture, an MPEG-2
//! sequence header), so the cutter can start every block where a decoder can start.
//!
//! Everything here reads untrusted bytes with bounds-checked slicing: a malformed table is
//! ignored, never a panic.

use std::collections::BTreeSet;

use crate::ts::{PACKET_SIZE, pid};

/// PID of the program association table.
pub const PAT_PID: u16 = 0x0000;
/// PID of the service description table (ffmpeg writes it before the PAT).
pub const SDT_PID: u16 = 0x0011;

/// Whether the packet starts a PES packet or a section (`payload_unit_start_indicator`).
pub fn payload_unit_start(packet: &[u8]) -> bool {
    packet.get(1).is_some_and(|b| b & 0x40 != 0)
}

/// Whether the adaptation field sets `random_access_indicator`.
pub fn random_access(packet: &[u8]) -> bool {
    packet.len() >= PACKET_SIZE && packet[3] & 0x20 != 0 && packet[4] > 0 && packet[5] & 0x40 != 0
}

/// The packet's payload (after the header and the adaptation field), if it has one.
pub fn payload(packet: &[u8]) -> Option<&[u8]> {
    if packet.len() < PACKET_SIZE || packet[3] & 0x10 == 0 {
        return None;
    }
    let at = if packet[3] & 0x20 != 0 {
        5 + usize::from(packet[4])
    } else {
        4
    };
    packet.get(at..PACKET_SIZE)
}

/// The section carried by a PSI packet that starts one (after the pointer field).
fn section(packet: &[u8]) -> Option<&[u8]> {
    if !payload_unit_start(packet) {
        return None;
    }
    let p = payload(packet)?;
    let pointer = usize::from(*p.first()?);
    let s = p.get(1 + pointer..)?;
    let length = (usize::from(*s.get(1)? & 0x0f) << 8) | usize::from(*s.get(2)?);
    // The section without its CRC-32.
    s.get(..(3 + length).checked_sub(4)?)
}

/// The video codecs whose key frames the cutter recognises, by PMT `stream_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Video {
    /// MPEG-1/2 video (stream types 0x01, 0x02): a sequence header starts a key frame.
    Mpeg2,
    /// H.264 (0x1b): an IDR slice or an SPS.
    H264,
    /// H.265 (0x24): an IRAP picture or a VPS.
    Hevc,
}

impl Video {
    fn of_stream_type(stream_type: u8) -> Option<Self> {
        match stream_type {
            0x01 | 0x02 => Some(Self::Mpeg2),
            0x1b => Some(Self::H264),
            0x24 => Some(Self::Hevc),
            _ => None,
        }
    }
}

/// What the PAT and PMTs seen so far say.
#[derive(Debug, Default, Clone)]
pub struct Programs {
    pmt_pids: BTreeSet<u16>,
    video: Option<(u16, Video)>,
}

impl Programs {
    /// Nothing known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns from a PAT or PMT packet; other packets are ignored.
    pub fn observe(&mut self, packet: &[u8]) {
        let pid = pid(packet);
        if pid == PAT_PID {
            if let Some(s) = section(packet).filter(|s| s.first() == Some(&0x00)) {
                let pmts: BTreeSet<u16> = s
                    .get(8..)
                    .unwrap_or_default()
                    .chunks_exact(4)
                    .filter(|e| e[0] != 0 || e[1] != 0) // program 0 is the network PID
                    .map(|e| (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]))
                    .collect();
                if !pmts.is_empty() {
                    self.pmt_pids = pmts;
                }
            }
        } else if self.pmt_pids.contains(&pid)
            && let Some(s) = section(packet).filter(|s| s.first() == Some(&0x02))
            && self.video.is_none()
        {
            self.video = first_video(s);
        }
    }

    /// Whether packets on `pid` carry tables (PAT, SDT, a PMT) rather than media.
    pub fn is_table(&self, pid: u16) -> bool {
        pid == PAT_PID || pid == SDT_PID || self.pmt_pids.contains(&pid)
    }

    /// Whether `pid` is a PMT's.
    pub fn is_pmt(&self, pid: u16) -> bool {
        self.pmt_pids.contains(&pid)
    }

    /// The video PID and codec, once a PMT named one.
    pub fn video(&self) -> Option<(u16, Video)> {
        self.video
    }

    /// Whether `packet` starts a key frame of the video: a PES start on the video PID whose
    /// first bytes hold an IDR/IRAP picture or a parameter set, or that the muxer flagged as
    /// a random access point.
    pub fn is_key_frame(&self, packet: &[u8]) -> bool {
        let Some((video_pid, video)) = self.video else {
            return false;
        };
        if pid(packet) != video_pid || !payload_unit_start(packet) {
            return false;
        }
        random_access(packet) || payload(packet).is_some_and(|p| starts_key_frame(p, video))
    }
}

/// The first video stream of a PMT section.
fn first_video(s: &[u8]) -> Option<(u16, Video)> {
    let info_len = (usize::from(*s.get(10)? & 0x0f) << 8) | usize::from(*s.get(11)?);
    let mut at = 12 + info_len;
    while let Some(entry) = s.get(at..at + 5) {
        let pid = (u16::from(entry[1] & 0x1f) << 8) | u16::from(entry[2]);
        if let Some(video) = Video::of_stream_type(entry[0]) {
            return Some((pid, video));
        }
        at += 5 + ((usize::from(entry[3] & 0x0f) << 8) | usize::from(entry[4]));
    }
    None
}

/// Whether the PES payload `pes` (starting `00 00 01`) begins a key frame: scans its NAL
/// units (or MPEG-2 start codes) up to the first picture.
fn starts_key_frame(pes: &[u8], video: Video) -> bool {
    if pes.get(..3) != Some(&[0, 0, 1]) {
        return false;
    }
    let header_len = pes.get(8).map_or(0, |l| usize::from(*l));
    let es = pes.get(9 + header_len..).unwrap_or_default();
    let mut i = 0;
    while i + 3 < es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 1 {
            let code = es[i + 3];
            match video {
                Video::H264 => match code & 0x1f {
                    5 | 7 => return true,
                    1 => return false,
                    _ => {}
                },
                Video::Hevc => match (code >> 1) & 0x3f {
                    16..=21 | 32 => return true,
                    0..=9 => return false,
                    _ => {}
                },
                Video::Mpeg2 => match code {
                    0xb3 => return true,
                    0x00 => return false,
                    _ => {}
                },
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ts::SYNC_BYTE;

    fn packet(pid: u16, start: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0xffu8; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = (if start { 0x40 } else { 0 }) | ((pid >> 8) as u8 & 0x1f);
        p[2] = pid as u8;
        p[3] = 0x10;
        p[4..4 + payload.len()].copy_from_slice(payload);
        p
    }

    /// A PAT naming one program whose PMT is on `pmt_pid`.
    pub(crate) fn pat(pmt_pid: u16) -> Vec<u8> {
        let mut s = vec![0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1];
        s.extend([0xe0 | (pmt_pid >> 8) as u8, pmt_pid as u8]);
        s.extend([0; 4]); // CRC (not checked)
        let mut payload = vec![0]; // pointer field
        payload.extend(s);
        packet(PAT_PID, true, &payload)
    }

    /// A PMT on `pmt_pid` with AAC audio on 0x101 and H.264 on `video_pid`.
    pub(crate) fn pmt(pmt_pid: u16, video_pid: u16) -> Vec<u8> {
        let mut s = vec![0x02, 0xb0, 0, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0];
        s.extend([0x0f, 0xe1, 0x01, 0xf0, 0]);
        s.extend([
            0x1b,
            0xe0 | (video_pid >> 8) as u8,
            video_pid as u8,
            0xf0,
            0,
        ]);
        s.extend([0; 4]);
        s[2] = (s.len() - 3) as u8;
        let mut payload = vec![0];
        payload.extend(s);
        packet(pmt_pid, true, &payload)
    }

    /// The first packet of an H.264 access unit on `pid`: IDR (NAL 5) or not (NAL 1).
    pub(crate) fn video(pid: u16, idr: bool) -> Vec<u8> {
        let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x00, 0];
        pes.extend([0, 0, 0, 1, 0x09, 0xf0]); // access unit delimiter
        pes.extend([0, 0, 1, if idr { 0x65 } else { 0x41 }, 0x88]);
        packet(pid, true, &pes)
    }

    /// A continuation packet on `pid`.
    pub(crate) fn more(pid: u16) -> Vec<u8> {
        packet(pid, false, &[0x11; 8])
    }

    #[test]
    fn finds_the_video_pid_and_its_key_frames() {
        let mut programs = Programs::new();
        assert!(!programs.is_key_frame(&video(0x100, true)), "no PMT yet");
        programs.observe(&pat(0x1000));
        assert!(programs.is_pmt(0x1000) && programs.is_table(0) && programs.is_table(0x11));
        programs.observe(&pmt(0x1000, 0x100));
        assert_eq!(programs.video(), Some((0x100, Video::H264)));
        assert!(programs.is_key_frame(&video(0x100, true)));
        assert!(!programs.is_key_frame(&video(0x100, false)));
        assert!(!programs.is_key_frame(&more(0x100)));
        assert!(!programs.is_key_frame(&video(0x101, true)), "audio PID");
    }

    #[test]
    fn malformed_tables_are_ignored() {
        let mut programs = Programs::new();
        for bad in [
            packet(PAT_PID, true, &[0xff]),
            packet(PAT_PID, true, &[0, 0x00, 0xbf, 0xff]),
            packet(0x1000, true, &[0, 0x02, 0xb0, 0x02]),
        ] {
            programs.observe(&bad);
        }
        assert_eq!(programs.video(), None);
        assert!(!starts_key_frame(
            &[0, 0, 1, 0xe0, 0, 0, 0x80, 0, 0xff],
            Video::H264
        ));
    }
}
