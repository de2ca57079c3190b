//! HLS for standard players (issue 16 item 2): a sliding-window live media playlist
//! (RFC 8216) whose segments are the blocks, served as `GET /live.m3u8` by every peer and by
//! the CDN.
//!
//! The playlist lists the newest complete blocks a node holds, at most a configurable window
//! of them (default [`DEFAULT_WINDOW_BLOCKS`]), consecutive in block number:
//!
//! ```text
//! #EXTM3U
//! #EXT-X-VERSION:3
//! #EXT-X-TARGETDURATION:2
//! #EXT-X-MEDIA-SEQUENCE:17
//! #EXTINF:1.040,
//! hls/17.ts
//! #EXTINF:1.960,
//! hls/18.ts
//! ```
//!
//! - The media sequence number of a segment is its block number, so `#EXT-X-MEDIA-SEQUENCE`
//!   is the number of the first block listed (RFC 8216 §4.3.3.2) and advances as the window
//!   slides.
//! - `#EXT-X-TARGETDURATION` is the ceiling of the longest listed block duration in whole
//!   seconds (at least 1), so every `#EXTINF` rounded to the nearest integer is within it
//!   (§4.3.3.1).
//! - `#EXT-X-ENDLIST` is added once the stream ended, never while it is live (§4.3.3.4).
//! - Segment URIs are relative, `hls/<block>.ts` (the `.ts` extension is what ffmpeg's HLS
//!   demuxer checks segments against); each is the block's bytes, `video/mp2t`.
//! - No `#EXT-X-DISCONTINUITY`: the listed blocks are consecutive pieces of one MPEG-TS stream
//!   (same programs, continuous timestamps), and every block starts with PAT and PMT, so a
//!   block cut on time (not at a key frame, [`crate::block`]) is still no discontinuity in the
//!   RFC's sense (§4.3.2.3: a change of encoding, timestamps or format).

use std::fmt::Write as _;

/// Blocks a playlist lists by default: 6 (about 6 s of media at the default 1 s target).
pub const DEFAULT_WINDOW_BLOCKS: usize = 6;

/// `Content-Type` of a playlist (RFC 8216 §4).
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";

/// `Content-Type` of a segment (an MPEG-TS block).
pub const SEGMENT_CONTENT_TYPE: &str = "video/mp2t";

/// One listed block: its number (the segment's media sequence number) and media duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Block number.
    pub number: u64,
    /// Media duration in milliseconds.
    pub duration_ms: u32,
}

/// The URI of block `number` in a playlist, relative to the playlist's own URL.
pub fn segment_uri(number: u64) -> String {
    format!("hls/{number}.ts")
}

/// The block number in a segment file name `"<n>.ts"`, `None` for anything else.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".ts")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The newest run of consecutive blocks among `newest_first` (blocks in descending number
/// order, newest first), at most `window` long, returned oldest first. The run stops at the
/// first gap, so media sequence numbers stay block numbers.
pub fn window_of(newest_first: impl IntoIterator<Item = Segment>, window: usize) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::with_capacity(window.min(64));
    for segment in newest_first {
        if out.len() >= window {
            break;
        }
        if let Some(last) = out.last()
            && last.number.checked_sub(1) != Some(segment.number)
        {
            break;
        }
        out.push(segment);
    }
    out.reverse();
    out
}

/// The text of a live media playlist listing `segments` (oldest first, consecutive numbers),
/// ended with `#EXT-X-ENDLIST` when `ended`. An empty list gives a valid playlist with no
/// segments (a player reloads it), target duration 1 s.
pub fn render(segments: &[Segment], ended: bool) -> String {
    let longest_ms = segments.iter().map(|s| s.duration_ms).max().unwrap_or(0);
    let target = u64::from(longest_ms).div_ceil(1000).max(1);
    let sequence = segments.first().map_or(0, |s| s.number);
    let mut out = String::with_capacity(96 + 32 * segments.len());
    out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    // Writing to a String cannot fail.
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{sequence}");
    for s in segments {
        let _ = writeln!(
            out,
            "#EXTINF:{}.{:03},\n{}",
            s.duration_ms / 1000,
            s.duration_ms % 1000,
            segment_uri(s.number)
        );
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(number: u64, duration_ms: u32) -> Segment {
        Segment {
            number,
            duration_ms,
        }
    }

    #[test]
    fn a_live_playlist_lists_the_window_with_its_first_number_and_longest_duration() {
        let text = render(&[seg(17, 1040), seg(18, 1960), seg(19, 1000)], false);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:17\n\
             #EXTINF:1.040,\nhls/17.ts\n#EXTINF:1.960,\nhls/18.ts\n#EXTINF:1.000,\nhls/19.ts\n"
        );
        assert!(!text.contains("ENDLIST"));
        // A 2.001 s block needs a target of 3 s.
        assert!(render(&[seg(0, 2001)], false).contains("#EXT-X-TARGETDURATION:3\n"));
    }

    #[test]
    fn an_ended_stream_ends_its_playlist_and_an_empty_one_is_valid() {
        assert!(render(&[seg(3, 900)], true).ends_with("hls/3.ts\n#EXT-X-ENDLIST\n"));
        assert_eq!(
            render(&[], false),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        );
    }

    #[test]
    fn the_window_is_the_newest_consecutive_run() {
        let held = [seg(9, 1), seg(8, 1), seg(7, 1), seg(5, 1), seg(4, 1)];
        let numbers = |w: Vec<Segment>| w.iter().map(|s| s.number).collect::<Vec<_>>();
        assert_eq!(numbers(window_of(held, 2)), vec![8, 9]);
        assert_eq!(
            numbers(window_of(held, 6)),
            vec![7, 8, 9],
            "stops at the gap"
        );
        assert!(window_of(held, 0).is_empty());
        assert!(window_of([], 6).is_empty());
    }

    #[test]
    fn segment_names_are_numbers_with_the_ts_extension() {
        assert_eq!(parse_segment_name("42.ts"), Some(42));
        for bad in [
            "42",
            ".ts",
            "+4.ts",
            "4a.ts",
            "99999999999999999999.ts",
            "4.ts.ts",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}
