//! The figures of a run ([`Report`]) and the comparison table.

use serde::Serialize;

use super::{Policy, Sim, SimConfig, run};
use crate::error::Error;
use crate::sched::Scheduler;

/// The result of one policy's run. Ratios are plain fractions, upload figures multiples of
/// the bitrate (bytes uploaded over the time present, divided by the bitrate).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Policy simulated.
    pub policy: Policy,
    /// Peers simulated.
    pub peers: usize,
    /// Blocks the origin cut.
    pub blocks: u64,
    /// Of the blocks peers kept (first copy of each), the share of bytes that came from
    /// peers. Copies that arrived after another (a late P2P block whose urgent CDN fetch won,
    /// or the reverse) are not counted here but in `duplicate_share`.
    pub p2p_ratio: f64,
    /// Bytes received twice (the second copy of a block) / all bytes received.
    pub duplicate_share: f64,
    /// Bytes the CDN sent (prefetch and urgent fetches).
    pub cdn_bytes: u64,
    /// Bytes of one copy of the stream (`blocks × block size`).
    pub stream_bytes: u64,
    /// Bytes received from peers (every copy).
    pub p2p_bytes: u64,
    /// Share of the blocks played without a stall before them.
    pub continuity: f64,
    /// Startup time (join to first block played) p50, ms.
    pub startup_p50_ms: u64,
    /// Startup time p95, ms.
    pub startup_p95_ms: u64,
    /// Upload per peer, mean, multiples of the bitrate.
    pub upload_mean_x: f64,
    /// Upload per peer, p95.
    pub upload_p95_x: f64,
    /// Upload per peer, max.
    pub upload_max_x: f64,
    /// Tracker bytes per churn event: over the run, the serde_json bytes of the neighbour
    /// entries and removals in every view the tracker answered (joins and heartbeats; an
    /// answer with no change counts 0), divided by the joins and leaves.
    pub tracker_bytes_per_event: u64,
    /// Times a peer's scheduler (re-)selected a substream parent, over all peers.
    pub parent_changes: u64,
    /// Virtual seconds simulated, including the drain.
    pub virtual_secs: f64,
    /// Joins and leaves (churn events) over the run.
    pub churn_events: u64,
    /// Events the simulator handled.
    pub events: u64,
    /// Of those, requests refused because the sender's upload queue was full (the asker
    /// then asks again, often the same prefetcher).
    pub refusals: u64,
    /// Wall time of the run, ms (the only figure that differs between runs of one seed).
    pub wall_ms: u64,
}

impl Report {
    /// CDN bytes over stream bytes.
    pub fn cdn_per_stream(&self) -> f64 {
        if self.stream_bytes == 0 {
            0.0
        } else {
            self.cdn_bytes as f64 / self.stream_bytes as f64
        }
    }
}

impl Sim<'_> {
    pub(super) fn report(&self) -> Report {
        let bitrate = self.config.bitrate_bps as f64 / 8.0;
        let mut played = 0u64;
        let mut late = 0u64;
        let mut startups = Vec::new();
        let mut uploads = Vec::new();
        for p in self.peers.iter().filter(|p| p.sched.is_some()) {
            if let Some(s) = &p.sched {
                let stats = s.stats();
                played += stats.played;
                late += stats.stalls.min(stats.played);
                if let Some(ms) = stats.startup_ms {
                    startups.push(ms);
                }
            }
            let end = p.left_us.unwrap_or(self.now);
            let secs = end.saturating_sub(p.joined_us) as f64 / 1e6;
            if secs > 0.0 {
                uploads.push(p.uploaded as f64 / secs / bitrate);
            }
        }
        startups.sort_unstable();
        uploads.sort_by(f64::total_cmp);
        let received = self.cdn_bytes + self.p2p_bytes;
        Report {
            policy: self.policy,
            peers: self.config.peers,
            blocks: self.blocks,
            p2p_ratio: ratio(self.kept_p2p as f64, (self.kept_p2p + self.kept_cdn) as f64),
            duplicate_share: ratio(self.duplicate_bytes as f64, received as f64),
            cdn_bytes: self.cdn_bytes,
            stream_bytes: self.blocks * self.config.block_bytes(),
            p2p_bytes: self.p2p_bytes,
            continuity: ratio((played - late) as f64, played as f64),
            startup_p50_ms: quantile(&startups, 0.5).unwrap_or(0),
            startup_p95_ms: quantile(&startups, 0.95).unwrap_or(0),
            upload_mean_x: ratio(uploads.iter().sum(), uploads.len() as f64),
            upload_p95_x: quantile(&uploads, 0.95).unwrap_or(0.0),
            upload_max_x: uploads.last().copied().unwrap_or(0.0),
            tracker_bytes_per_event: self
                .tracker_bytes
                .checked_div(self.churn_events)
                .unwrap_or(0),
            parent_changes: self
                .peers
                .iter()
                .filter_map(|p| p.sched.as_ref())
                .map(Scheduler::parent_changes)
                .sum(),
            virtual_secs: self.now as f64 / 1e6,
            churn_events: self.churn_events,
            events: 0,
            refusals: self.refusals,
            wall_ms: 0,
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied()
}

/// Runs each of `policies` for every peer count in `peers` (the rest from `base`); the
/// reports in that order.
///
/// # Errors
/// Those of [`run`].
pub fn compare(
    base: &SimConfig,
    peers: &[usize],
    policies: &[Policy],
) -> Result<Vec<Report>, Error> {
    let mut out = Vec::new();
    for &n in peers {
        let config = SimConfig {
            peers: n,
            ..base.clone()
        };
        for &policy in policies {
            out.push(run(&config, policy)?);
        }
    }
    Ok(out)
}

/// The reports as one text table, a row per (peers, policy).
pub fn table(reports: &[Report]) -> String {
    let mut out = String::from(
        "peers  policy         p2p    dup    cdn/stream  continuity  startup p50/p95 ms  upload mean/p95/max x  tracker B/event  wall s  events/s\n",
    );
    for r in reports {
        out.push_str(&format!(
            "{:<6} {:<14} {:>5.3}  {:>5.3}  {:>10.2}  {:>10.4}  {:>8}/{:<9} {:>6.2}/{:>5.2}/{:>5.2}       {:>10}  {:>6.1}  {:>8.0}\n",
            r.peers,
            r.policy.name(),
            r.p2p_ratio,
            r.duplicate_share,
            r.cdn_per_stream(),
            r.continuity,
            r.startup_p50_ms,
            r.startup_p95_ms,
            r.upload_mean_x,
            r.upload_p95_x,
            r.upload_max_x,
            r.tracker_bytes_per_event,
            r.wall_ms as f64 / 1000.0,
            r.events as f64 / (r.wall_ms.max(1) as f64 / 1000.0),
        ));
    }
    out
}
