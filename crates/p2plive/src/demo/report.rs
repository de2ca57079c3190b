//! The demo's JSON report ([`DemoReport`]) and its checks ([`DemoReport::failures`]).

use serde::{Deserialize, Serialize};

use crate::rss::RssFigures;
/// One peer in the demo report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerDetail {
    /// Tracker id.
    pub id: u64,
    /// Peer bytes / all bytes it received.
    pub p2p_ratio: f64,
    /// Stalls.
    pub stalls: u64,
    /// Stall time in ms.
    pub stall_ms: u64,
    /// Join to first block played, ms (wall time).
    pub startup_ms: u64,
    /// The block it started playing at.
    pub start_block: u64,
    /// Media end of the newest block published when it played its first block, minus the
    /// media start of that block, in ms: how far behind live it plays.
    pub lag_behind_edge_ms: u64,
    /// SHA-256 of the peer's `/live.ts`.
    pub output_sha256: String,
    /// Whether `/live.ts` equals the stream the origin cut (for a late peer: the blocks from
    /// its first one to the end).
    pub byte_exact: bool,
    /// Most blocks the peer held at once.
    pub max_held_blocks: u64,
    /// ffmpeg's decode errors on its `/live.ts` (late peers only; `None` when not checked).
    pub decode_errors: Option<u64>,
}

/// A player that connected mid-stream to a peer's `/live.ts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatePlayer {
    /// The peer it read from.
    pub peer: u64,
    /// The first block it got (found by matching the bytes against the blocks cut).
    pub first_block: u64,
    /// Media end of the newest block published when its first byte arrived, minus the media
    /// start of its first block, in ms.
    pub lag_behind_edge_ms: u64,
    /// Whether it read exactly the blocks from its first one to the stream's end.
    pub byte_exact: bool,
    /// ffmpeg's decode errors on what it read.
    pub decode_errors: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// The demo's JSON report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoReport {
    /// Number of initial peers.
    pub peers: usize,
    /// Number of substreams.
    pub substreams: u32,
    /// Block-set size.
    pub block_set: u32,
    /// Blocks cut.
    pub blocks: u64,
    /// Bytes of the stream.
    pub stream_bytes: u64,
    /// Every block byte the CDN served (prefetch and urgent fetches).
    pub cdn_bytes: u64,
    /// Peer bytes / all bytes received, over every peer (killed ones up to their death).
    pub p2p_ratio: f64,
    /// The ideal P2P ratio of this run: `1 - c * stream_bytes / received`, where `c` is the
    /// number of copies of each substream the CDN prefetches and `received` every byte the
    /// peers received; `1 - 1/s` when every holder prefetches, `1 - 1/peers` with one CDN
    /// prefetcher per substream and no churn.
    pub ideal_p2p_ratio: f64,
    /// Copies of each substream the CDN prefetches (from the tracker's assignment).
    pub cdn_copies: f64,
    /// SHA-256 of the stream the origin cut.
    pub source_sha256: String,
    /// Most blocks the CDN held at once.
    pub cdn_max_held_blocks: u64,
    /// The longest a late viewer may start behind the live edge: one block plus the playout
    /// delay, in ms of media, with the stream's mean block duration (at least the target).
    pub lag_budget_ms: u64,
    /// Initial peers that survived, in join order.
    pub peers_detail: Vec<PeerDetail>,
    /// Ids of the peers killed mid-stream.
    pub killed: Vec<u64>,
    /// Peers that joined mid-stream.
    pub late_peers: Vec<PeerDetail>,
    /// Players that connected mid-stream.
    pub late_players: Vec<LatePlayer>,
    /// Mid-stream events asked for (`--churn`, `--late-peers`, `--late-players`) that did not
    /// run because the origin ended before reaching them; each one fails the demo.
    #[serde(default)]
    pub skipped_events: Vec<String>,
    /// Resident memory of the demo's one process over the stream, sampled every 500 ms from
    /// `/proc/self/status`: it holds the CDN, the tracker, the origin, every peer and player
    /// and the demo's own copy of the stream, so it is not a per-peer figure (a peer run
    /// alone as `p2plive peer` is its own process). "After warm-up" is the first sample after
    /// 60 s of media.
    #[serde(default)]
    pub process_rss: RssFigures,
    /// Bound on `process_rss.peak_bytes` in MiB (`--max-rss-mb`); above it the demo fails.
    #[serde(default)]
    pub max_rss_mib: Option<u64>,
}

/// Most CDN bytes per copy of the stream the CDN prefetches before the demo fails (issue 16:
/// "CDN bytes <= 1.2x the stream").
pub const CDN_BUDGET: f64 = 1.2;

impl DemoReport {
    /// The demo's checks: every surviving and late peer byte-exact without stalls; without
    /// churn a P2P ratio within 0.05 of the ideal and CDN bytes at most [`CDN_BUDGET`] times the copies it
    /// prefetches; every late viewer byte-exact,
    /// decoded without errors and started within [`DemoReport::lag_budget_ms`] of the edge.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .skipped_events
            .iter()
            .map(|e| format!("mid-stream event not run: {e}"))
            .collect();
        for p in self.peers_detail.iter().chain(&self.late_peers) {
            if !p.byte_exact {
                out.push(format!("peer {} output is not byte-exact", p.id));
            }
            if p.stalls > 0 {
                out.push(format!(
                    "peer {} stalled {} times ({} ms)",
                    p.id, p.stalls, p.stall_ms
                ));
            }
        }
        for p in &self.late_peers {
            if p.decode_errors != Some(0) {
                out.push(format!(
                    "late peer {}: {:?} decode errors",
                    p.id, p.decode_errors
                ));
            }
            if p.lag_behind_edge_ms > self.lag_budget_ms {
                out.push(format!(
                    "late peer {} started {} ms behind the edge (budget {} ms)",
                    p.id, p.lag_behind_edge_ms, self.lag_budget_ms
                ));
            }
        }
        for p in &self.late_players {
            if !p.byte_exact || p.decode_errors > 0 {
                out.push(format!(
                    "late player at peer {}: byte-exact {}, {} decode errors",
                    p.peer, p.byte_exact, p.decode_errors
                ));
            }
            if p.lag_behind_edge_ms > self.lag_budget_ms {
                out.push(format!(
                    "late player at peer {} started {} ms behind the edge (budget {} ms)",
                    p.peer, p.lag_behind_edge_ms, self.lag_budget_ms
                ));
            }
        }
        if let Some(max) = self.max_rss_mib
            && let Some(over) = self.process_rss.over("demo process", max)
        {
            out.push(over);
        }
        let cdn_budget = CDN_BUDGET * self.cdn_copies.max(1.0) * self.stream_bytes as f64;
        // After a kill the dead holders' substreams come from the CDN until the tracker
        // re-homes them, so the budget applies to runs without churn.
        if self.killed.is_empty() && self.cdn_bytes as f64 > cdn_budget {
            out.push(format!(
                "CDN sent {:.2}x the stream (budget {CDN_BUDGET}x per prefetched copy, {} copies)",
                self.cdn_bytes as f64 / self.stream_bytes.max(1) as f64,
                self.cdn_copies
            ));
        }
        // Likewise the ideal ratio assumes the same holders all along.
        let ideal = self.ideal_p2p_ratio;
        let floor = ideal - 0.05;
        if self.killed.is_empty() && self.p2p_ratio < floor {
            out.push(format!(
                "P2P ratio {:.3} below {floor:.2} (ideal {ideal:.2})",
                self.p2p_ratio
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DemoReport {
        DemoReport {
            peers: 2,
            substreams: 2,
            block_set: 1,
            blocks: 10,
            stream_bytes: 1000,
            cdn_bytes: 1000,
            p2p_ratio: 0.5,
            ideal_p2p_ratio: 0.5,
            cdn_copies: 1.0,
            source_sha256: String::new(),
            cdn_max_held_blocks: 10,
            lag_budget_ms: 2000,
            peers_detail: Vec::new(),
            killed: Vec::new(),
            late_peers: Vec::new(),
            late_players: Vec::new(),
            skipped_events: Vec::new(),
            process_rss: RssFigures {
                peak_bytes: 60 << 20,
                ..RssFigures::default()
            },
            max_rss_mib: None,
        }
    }

    #[test]
    fn peak_rss_above_the_bound_fails_the_demo() {
        let mut r = report();
        assert_eq!(r.failures(), Vec::<String>::new());
        r.max_rss_mib = Some(64);
        assert_eq!(r.failures(), Vec::<String>::new());
        r.max_rss_mib = Some(50);
        let failures = r.failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("peak RSS 60.0 MiB"), "{failures:?}");
    }
}
