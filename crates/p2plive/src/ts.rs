//! MPEG-TS packets (ISO/IEC 13818-1 §2.4.3): 188-byte packets starting with the sync byte
//! 0x47, the PCR in the adaptation field and the PTS in PES headers, used to cut blocks on
//! whole packets and to pace a file at its real-time rate.

/// Size of one MPEG transport stream packet, in bytes.
pub const PACKET_SIZE: usize = 188;

/// The sync byte that starts every packet.
pub const SYNC_BYTE: u8 = 0x47;

/// PCR ticks per second (27 MHz system clock).
const PCR_HZ: f64 = 27_000_000.0;
/// PTS ticks per second (90 kHz).
const PTS_HZ: f64 = 90_000.0;
/// The 33-bit PTS/PCR base wraps around at this value (in 90 kHz ticks).
const WRAP_90K: u64 = 1 << 33;

/// What a byte prefix looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// MPEG transport stream (sync bytes every 188 bytes).
    MpegTs,
    /// ISO BMFF / MP4 (`ftyp` box first).
    Mp4,
    /// Neither.
    Unknown,
}

/// Guesses the container from the first bytes of a file: TS when the first up to five
/// packets start with 0x47, MP4 when bytes 4..8 are `ftyp`.
pub fn sniff(prefix: &[u8]) -> Container {
    if prefix.len() >= 8 && &prefix[4..8] == b"ftyp" {
        return Container::Mp4;
    }
    let packets = (prefix.len() / PACKET_SIZE).min(5);
    if packets >= 1 && (0..packets).all(|i| prefix[i * PACKET_SIZE] == SYNC_BYTE) {
        return Container::MpegTs;
    }
    Container::Unknown
}

/// The 13-bit packet identifier of a packet.
pub fn pid(packet: &[u8]) -> u16 {
    (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2])
}

/// The PCR of a packet in 27 MHz ticks, when its adaptation field carries one.
pub fn pcr(packet: &[u8]) -> Option<u64> {
    if packet.len() < PACKET_SIZE || packet[3] & 0x20 == 0 {
        return None;
    }
    let af_len = usize::from(packet[4]);
    if af_len < 7 || packet[5] & 0x10 == 0 {
        return None;
    }
    let b = &packet[6..12];
    let base = (u64::from(b[0]) << 25)
        | (u64::from(b[1]) << 17)
        | (u64::from(b[2]) << 9)
        | (u64::from(b[3]) << 1)
        | (u64::from(b[4]) >> 7);
    let ext = (u64::from(b[4] & 1) << 8) | u64::from(b[5]);
    Some(base * 300 + ext)
}

/// The PTS of a packet in 90 kHz ticks, when it starts a PES packet that carries one.
pub fn pts(packet: &[u8]) -> Option<u64> {
    if packet.len() < PACKET_SIZE || packet[1] & 0x40 == 0 || packet[3] & 0x10 == 0 {
        return None;
    }
    let mut at = 4;
    if packet[3] & 0x20 != 0 {
        at += 1 + usize::from(packet[4]);
    }
    let pes = packet.get(at..at + 14)?;
    if pes[0..3] != [0, 0, 1] || pes[7] & 0x80 == 0 {
        return None;
    }
    let p = &pes[9..14];
    Some(
        (u64::from(p[0] & 0x0e) << 29)
            | (u64::from(p[1]) << 22)
            | (u64::from(p[2] & 0xfe) << 14)
            | (u64::from(p[3]) << 7)
            | (u64::from(p[4]) >> 1),
    )
}

/// Media time of a packet stream in seconds since its first timestamp, from the PCR of the
/// first PID seen carrying one or, until a PCR shows up, from PES PTS values. Handles the
/// 33-bit wrap-around.
#[derive(Debug, Default, Clone)]
pub struct MediaClock {
    pcr_pid: Option<u16>,
    first: Option<f64>,
    last_raw: Option<f64>,
    offset: f64,
    /// Latest media time, in seconds since the first timestamp.
    now: f64,
    uses_pts: bool,
}

impl MediaClock {
    /// A clock that has seen no packets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the timing in `packet` (one whole packet) and returns the media time after it, in
    /// seconds since the first timestamp (0 until a timestamp is seen). Never goes backwards.
    pub fn observe(&mut self, packet: &[u8]) -> f64 {
        let raw = if let Some(pcr) = pcr(packet) {
            let pid = pid(packet);
            if self.pcr_pid.is_none() {
                self.pcr_pid = Some(pid);
                if self.uses_pts {
                    // Re-anchor: continue from the current media time.
                    self.uses_pts = false;
                    self.first = None;
                    self.offset = self.now;
                    self.last_raw = None;
                }
            }
            (self.pcr_pid == Some(pid)).then_some(pcr as f64 / PCR_HZ)
        } else if self.pcr_pid.is_none() {
            pts(packet).map(|pts| {
                self.uses_pts = true;
                pts as f64 / PTS_HZ
            })
        } else {
            None
        };
        if let Some(mut raw) = raw {
            let wrap = WRAP_90K as f64 / PTS_HZ;
            if let Some(last) = self.last_raw {
                if raw + wrap / 2.0 < last {
                    self.offset += wrap;
                } else if self.uses_pts && raw > last + wrap / 2.0 {
                    // A PTS from a stream slightly behind the clock across a wrap: ignore.
                    raw = last;
                }
            }
            self.last_raw = Some(raw);
            let first = *self.first.get_or_insert(raw);
            let t = raw - first + self.offset;
            if t > self.now {
                self.now = t;
            }
        }
        self.now
    }

    /// Latest media time in seconds.
    pub fn now(&self) -> f64 {
        self.now
    }
}

/// Splits a byte stream into whole 188-byte packets, keeping a partial packet for the next
/// call. A byte stream whose data does not start with 0x47 is resynchronised on the next
/// position where three consecutive packets start with 0x47; skipped bytes are counted.
#[derive(Debug, Default)]
pub struct PacketReader {
    pending: Vec<u8>,
    skipped: u64,
}

impl PacketReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes discarded so far while looking for packet sync.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Adds `data` and returns the whole packets now available, concatenated (a multiple of
    /// 188 bytes).
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut at = 0;
        while self.pending.len() - at >= PACKET_SIZE {
            if self.pending[at] == SYNC_BYTE {
                out.extend_from_slice(&self.pending[at..at + PACKET_SIZE]);
                at += PACKET_SIZE;
                continue;
            }
            // Lost sync: look for 0x47 repeated at 188-byte steps (up to what is buffered).
            match self.find_sync(at + 1) {
                Some(next) => {
                    self.skipped += (next - at) as u64;
                    at = next;
                }
                None => break,
            }
        }
        self.pending.drain(..at);
        out
    }

    fn find_sync(&self, from: usize) -> Option<usize> {
        let buf = &self.pending;
        (from..buf.len()).find(|&i| {
            buf[i] == SYNC_BYTE
                && (1..3).all(|k| buf.get(i + k * PACKET_SIZE).is_none_or(|&b| b == SYNC_BYTE))
        })
    }

    /// Bytes held back (a partial packet) at the end of the input.
    pub fn leftover(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A packet on `pid` with a PCR of `pcr` 27 MHz ticks.
    pub(crate) fn pcr_packet(pid: u16, pcr: u64) -> Vec<u8> {
        let mut p = vec![0xffu8; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = (pid >> 8) as u8 & 0x1f;
        p[2] = pid as u8;
        p[3] = 0x30; // adaptation field + payload
        p[4] = 7;
        p[5] = 0x10;
        let base = pcr / 300;
        let ext = pcr % 300;
        p[6] = (base >> 25) as u8;
        p[7] = (base >> 17) as u8;
        p[8] = (base >> 9) as u8;
        p[9] = (base >> 1) as u8;
        p[10] = (((base & 1) << 7) as u8) | 0x7e | ((ext >> 8) as u8 & 1);
        p[11] = ext as u8;
        p
    }

    fn pes_packet(pid: u16, pts: u64) -> Vec<u8> {
        let mut p = vec![0xffu8; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = 0x40 | ((pid >> 8) as u8 & 0x1f);
        p[2] = pid as u8;
        p[3] = 0x10;
        let pes = &mut p[4..];
        pes[0..3].copy_from_slice(&[0, 0, 1]);
        pes[3] = 0xe0;
        pes[6] = 0x80;
        pes[7] = 0x80;
        pes[8] = 5;
        pes[9] = 0x21 | ((pts >> 29) as u8 & 0x0e);
        pes[10] = (pts >> 22) as u8;
        pes[11] = ((pts >> 14) as u8 & 0xfe) | 1;
        pes[12] = (pts >> 7) as u8;
        pes[13] = ((pts << 1) as u8) | 1;
        p
    }

    #[test]
    fn pcr_and_pts_round_trip() {
        for value in [0u64, 1, 299, 300, 27_000_000, (1 << 33) * 300 - 1] {
            assert_eq!(pcr(&pcr_packet(256, value)), Some(value), "pcr {value}");
        }
        for value in [0u64, 90_000, (1 << 33) - 1] {
            assert_eq!(pts(&pes_packet(257, value)), Some(value), "pts {value}");
        }
        assert_eq!(pid(&pcr_packet(0x1abc, 0)), 0x1abc);
    }

    #[test]
    fn clock_uses_pcr_and_unwraps() {
        let mut clock = MediaClock::new();
        let top = (1u64 << 33) * 300;
        assert_eq!(clock.observe(&pcr_packet(256, top - 27_000_000)), 0.0);
        // Another PID's PCR is ignored.
        assert_eq!(clock.observe(&pcr_packet(300, 5)), 0.0);
        let t = clock.observe(&pcr_packet(256, 27_000_000));
        assert!((t - 2.0).abs() < 1e-6, "{t}");
    }

    #[test]
    fn clock_falls_back_to_pts() {
        let mut clock = MediaClock::new();
        clock.observe(&pes_packet(257, 90_000));
        let t = clock.observe(&pes_packet(257, 180_000));
        assert!((t - 1.0).abs() < 1e-9);
    }

    #[test]
    fn sniffs_containers() {
        let ts: Vec<u8> = (0..3).flat_map(|_| pcr_packet(256, 0)).collect();
        assert_eq!(sniff(&ts), Container::MpegTs);
        assert_eq!(sniff(b"\0\0\0\x20ftypisom...."), Container::Mp4);
        assert_eq!(sniff(b"hello, this is a text file"), Container::Unknown);
        assert_eq!(sniff(b""), Container::Unknown);
    }

    #[test]
    fn reader_keeps_partial_packets_and_resyncs() {
        let stream: Vec<u8> = (0..6).flat_map(|i| pcr_packet(256, i)).collect();
        let mut reader = PacketReader::new();
        let mut out = reader.push(&stream[..100]);
        out.extend(reader.push(&stream[100..400]));
        out.extend(reader.push(&stream[400..]));
        assert_eq!(out, stream);
        assert_eq!(reader.leftover(), 0);

        let mut reader = PacketReader::new();
        let mut noisy = b"junk".to_vec();
        noisy.extend_from_slice(&stream);
        let out = reader.push(&noisy);
        assert_eq!(out, stream);
        assert_eq!(reader.skipped(), 4);
    }
}
