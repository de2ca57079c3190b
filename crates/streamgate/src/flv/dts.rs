//! Decoding timestamps for a stream that only carries presentation timestamps.
//!
//! RTP gives each H.264 access unit its presentation time (RFC 6184 §5.1), in decoding order.
//! FLV wants the decoding time as the tag timestamp and `pts - dts` as the composition time.
//! With B-frames the presentation times are not monotonic; the decoding times are the sorted
//! presentation times shifted back by the reordering delay:
//!
//! `dts[i] = (i-th smallest pts) - reorder_frames * frame_duration`
//!
//! The i-th smallest pts is known once `reorder_frames` more frames have arrived (no frame is
//! displayed before more than `reorder_frames` frames that follow it in decoding order: the
//! SPS's `max_num_reorder_frames`). So this holds back exactly `reorder_frames` frames, and
//! none for streams without B-frames (zero-latency cameras). Sans-I/O: timestamps are values in
//! the stream's clock ticks.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A frame with both timestamps, in clock ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed<T> {
    /// Presentation timestamp.
    pub pts: i64,
    /// Decoding timestamp: non-decreasing, and at most `pts` whenever the stream's
    /// reordering depth is as declared.
    pub dts: i64,
    /// The frame.
    pub item: T,
}

/// The reorder buffer; see the module docs.
#[derive(Debug)]
pub struct DtsRecovery<T> {
    reorder_frames: usize,
    frame_ticks: Option<i64>,
    pending: VecDeque<(i64, T)>,
    pts_heap: BinaryHeap<Reverse<i64>>,
    delay: Option<i64>,
    last_dts: Option<i64>,
}

impl<T> DtsRecovery<T> {
    /// A buffer for a stream whose frames may be reordered by up to `reorder_frames`
    /// positions, each lasting `frame_ticks` clock ticks when known. Without a frame duration
    /// the delay is the span of the first `reorder_frames + 1` presentation times, which is at
    /// least the true delay (so `dts <= pts` still holds) at the price of a larger composition
    /// offset.
    pub fn new(reorder_frames: u32, frame_ticks: Option<i64>) -> Self {
        Self {
            reorder_frames: reorder_frames as usize,
            frame_ticks: frame_ticks.filter(|t| *t > 0),
            pending: VecDeque::new(),
            pts_heap: BinaryHeap::new(),
            delay: None,
            last_dts: None,
        }
    }

    /// The reordering depth in frames.
    pub fn reorder_frames(&self) -> usize {
        self.reorder_frames
    }

    /// Frames held back right now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes the next frame in decoding order; returns the frame that leaves the buffer, if
    /// any (always one once `reorder_frames` frames are held).
    pub fn push(&mut self, pts: i64, item: T) -> Option<Timed<T>> {
        self.pending.push_back((pts, item));
        self.pts_heap.push(Reverse(pts));
        if self.pending.len() > self.reorder_frames {
            self.pop()
        } else {
            None
        }
    }

    /// Releases every held frame (at the end of a stream or before a parameter change).
    pub fn flush(&mut self) -> Vec<Timed<T>> {
        let mut out = Vec::with_capacity(self.pending.len());
        while let Some(timed) = self.pop() {
            out.push(timed);
        }
        out
    }

    fn pop(&mut self) -> Option<Timed<T>> {
        let delay = *self.delay.get_or_insert_with(|| match self.frame_ticks {
            Some(step) => step * self.reorder_frames as i64,
            None => span(&self.pending),
        });
        let (pts, item) = self.pending.pop_front()?;
        let Reverse(smallest) = self.pts_heap.pop()?;
        let mut dts = (smallest - delay).min(pts);
        if let Some(last) = self.last_dts {
            dts = dts.max(last);
        }
        self.last_dts = Some(dts);
        Some(Timed { pts, dts, item })
    }
}

/// Largest minus smallest presentation time among `frames` (0 for fewer than two).
fn span<T>(frames: &VecDeque<(i64, T)>) -> i64 {
    let max = frames.iter().map(|(p, _)| *p).max().unwrap_or(0);
    let min = frames.iter().map(|(p, _)| *p).min().unwrap_or(0);
    max - min
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `pts` (decoding order, in frame units) through a buffer and returns (pts, dts).
    fn run(reorder: u32, frame: Option<i64>, pts: &[i64]) -> Vec<(i64, i64)> {
        let mut buf = DtsRecovery::new(reorder, frame);
        let mut out = Vec::new();
        for (i, p) in pts.iter().enumerate() {
            if let Some(t) = buf.push(*p, i) {
                out.push((t.pts, t.dts));
            }
        }
        out.extend(buf.flush().into_iter().map(|t| (t.pts, t.dts)));
        out
    }

    #[test]
    fn table() {
        // (name, reorder depth, known frame duration, pts in decoding order, expected dts)
        type Case<'a> = (&'a str, u32, Option<i64>, &'a [i64], &'a [i64]);
        let cases: &[Case<'_>] = &[
            ("no B-frames", 0, None, &[0, 10, 20, 30], &[0, 10, 20, 30]),
            (
                "IPBB, one reorder frame",
                1,
                Some(10),
                &[0, 30, 10, 20, 60, 40, 50],
                &[-10, 0, 10, 20, 30, 40, 50],
            ),
            (
                "B-pyramid, two reorder frames",
                2,
                Some(10),
                &[0, 40, 20, 10, 30, 80, 60, 50, 70],
                &[-20, -10, 0, 10, 20, 30, 40, 50, 60],
            ),
            (
                "B-pyramid, frame duration unknown: the delay is over-estimated",
                2,
                None,
                &[0, 40, 20, 10, 30, 80, 60, 50, 70],
                &[-40, -30, -20, -10, 0, 10, 20, 30, 40],
            ),
            (
                "dropped frame keeps dts monotonic",
                1,
                Some(10),
                &[0, 30, 10, 20, 70, 40],
                &[-10, 0, 10, 20, 30, 40],
            ),
        ];
        for (name, reorder, frame, pts, dts) in cases {
            let got = run(*reorder, *frame, pts);
            let got_pts: Vec<i64> = got.iter().map(|(p, _)| *p).collect();
            let got_dts: Vec<i64> = got.iter().map(|(_, d)| *d).collect();
            assert_eq!(&got_pts, pts, "{name}: order kept");
            assert_eq!(&got_dts, dts, "{name}");
            assert!(got.iter().all(|(p, d)| d <= p), "{name}: dts <= pts");
            assert!(
                got_dts.windows(2).all(|w| w[0] <= w[1]),
                "{name}: monotonic"
            );
        }
    }

    #[test]
    fn holds_back_exactly_the_reorder_depth() {
        let mut buf = DtsRecovery::new(2, Some(10));
        assert!(buf.push(0, ()).is_none());
        assert!(buf.push(30, ()).is_none());
        assert_eq!(buf.pending(), 2);
        assert!(buf.push(10, ()).is_some());
        let mut zero = DtsRecovery::new(0, None);
        assert_eq!(zero.push(5, ()).map(|t| t.dts), Some(5));
    }

    #[test]
    fn reordering_beyond_the_declared_depth_stays_monotonic() {
        // Declared 0 but the stream has B-frames: dts never goes back.
        let got = run(0, None, &[0, 30, 10, 20]);
        let dts: Vec<i64> = got.iter().map(|(_, d)| *d).collect();
        assert_eq!(dts, vec![0, 30, 30, 30]);
    }
}
