//! The sliding window of segments of one stream and its live media playlist (RFC 8216 §4.3).

use std::collections::VecDeque;

use bytes::Bytes;

use super::segmenter::Segment;

/// One segment in the window.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its media sequence number.
    pub seq: u64,
    /// Its duration, ms.
    pub duration_ms: u32,
    /// Its bytes.
    pub data: Bytes,
}

/// The newest segments of a stream, bounded in count and bytes.
#[derive(Debug)]
pub struct Window {
    entries: VecDeque<Entry>,
    max_segments: usize,
    max_bytes: usize,
    bytes: usize,
    next_seq: u64,
    /// Largest segment duration seen, whole seconds rounded up: the playlist's
    /// `EXT-X-TARGETDURATION`, which never decreases (RFC 8216 §6.2.1: it must not change
    /// and every `EXTINF` rounded must stay at or under it).
    target_s: u64,
}

impl Window {
    /// An empty window whose first segment gets `first_seq`, keeping at most `max_segments`
    /// (at least 1) and `max_bytes` (the newest segment is kept even when larger).
    pub fn new(first_seq: u64, max_segments: usize, max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            max_segments: max_segments.max(1),
            max_bytes,
            bytes: 0,
            next_seq: first_seq,
            target_s: 1,
        }
    }

    /// Adds `segment` as the newest, dropping the oldest ones over the bounds; returns its
    /// sequence number.
    pub fn push(&mut self, segment: Segment) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.target_s = self
            .target_s
            .max(u64::from(segment.duration_ms).div_ceil(1000));
        self.bytes += segment.data.len();
        self.entries.push_back(Entry {
            seq,
            duration_ms: segment.duration_ms,
            data: segment.data,
        });
        while self.entries.len() > 1
            && (self.entries.len() > self.max_segments || self.bytes > self.max_bytes)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.data.len();
            }
        }
        seq
    }

    /// Segments held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no segment is ready yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The segment `seq`, while it is in the window.
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        let first = self.entries.front()?.seq;
        self.entries
            .get(usize::try_from(seq.checked_sub(first)?).ok()?)
    }

    /// The segments, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The live playlist: version 3 (decimal `EXTINF`), the target duration, the media
    /// sequence of the oldest segment, and each segment as `seg-{seq}.ts` (relative to the
    /// playlist). `ended` adds `EXT-X-ENDLIST` (the stream stopped).
    pub fn playlist(&self, ended: bool) -> String {
        use std::fmt::Write as _;
        let first = self.entries.front().map_or(self.next_seq, |e| e.seq);
        let mut out = String::with_capacity(128 + 48 * self.entries.len());
        out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_s);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first}");
        for entry in &self.entries {
            let _ = writeln!(
                out,
                "#EXTINF:{}.{:03},\n{}",
                entry.duration_ms / 1000,
                entry.duration_ms % 1000,
                segment_name(entry.seq)
            );
        }
        if ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

/// The file name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("seg-{seq}.ts")
}

/// The sequence number in a segment file name `seg-{seq}.ts`.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".ts")?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(duration_ms: u32, len: usize) -> Segment {
        Segment {
            data: Bytes::from(vec![0x47; len]),
            duration_ms,
            start_ms: 0,
        }
    }

    #[test]
    fn window_is_bounded_by_count_and_bytes() {
        let mut window = Window::new(100, 3, 1000);
        for _ in 0..5 {
            window.push(segment(2000, 100));
        }
        assert_eq!(window.len(), 3);
        assert!(window.get(101).is_none());
        assert_eq!(window.get(102).map(|e| e.seq), Some(102));
        assert_eq!(window.get(104).map(|e| e.seq), Some(104));
        assert!(window.get(105).is_none());
        window.push(segment(2000, 900));
        assert_eq!(window.len(), 2, "bytes bound: 100 + 900 <= 1000");
        assert_eq!(window.bytes(), 1000);
        window.push(segment(2000, 5000));
        assert_eq!(window.len(), 1, "the newest stays even when larger");
        assert_eq!(window.entries().next().map(|e| e.seq), Some(106));
    }

    #[test]
    fn playlist_fields() {
        let mut window = Window::new(7, 6, 1 << 20);
        assert!(window.playlist(false).contains("#EXT-X-MEDIA-SEQUENCE:7\n"));
        window.push(segment(2040, 10));
        window.push(segment(4001, 10));
        window.push(segment(1960, 10));
        let text = window.playlist(false);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXTINF:2.040,\nseg-7.ts\n#EXTINF:4.001,\nseg-8.ts\n#EXTINF:1.960,\nseg-9.ts\n"
        );
        assert!(window.playlist(true).ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(parse_segment_name("seg-8.ts"), Some(8));
        for bad in ["seg-.ts", "seg-8.ts.ts", "seg-x.ts", "8.ts", "seg-+8.ts"] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}
