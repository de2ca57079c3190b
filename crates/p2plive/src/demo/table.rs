//! The demo's report as a table for people (stderr).

use super::{DemoExtras, DemoReport};

/// A human-readable table of the report (for stderr).
pub fn table(report: &DemoReport, extras: &DemoExtras) -> String {
    let mut out = String::new();
    let startup: Vec<u64> = report.peers_detail.iter().map(|p| p.startup_ms).collect();
    let max_startup = startup.iter().max().copied().unwrap_or(0);
    let mean_startup = startup.iter().sum::<u64>() / (startup.len().max(1) as u64);
    out.push_str(&format!(
        "p2plive demo: {} peers, s={}, a={}, {} blocks, {} bytes ({:.1} s of media cut in {:.1} s)\n",
        report.peers,
        report.substreams,
        report.block_set,
        report.blocks,
        report.stream_bytes,
        extras.origin.media_seconds,
        extras.origin.wall_ms as f64 / 1000.0,
    ));
    out.push_str(&format!(
        "  P2P ratio {:.3} (ideal {:.3})   CDN bytes / stream bytes {:.3}   startup mean {} ms max {} ms   max lag {} blocks   wall {:.1} s\n",
        report.p2p_ratio,
        report.ideal_p2p_ratio,
        report.cdn_bytes as f64 / report.stream_bytes.max(1) as f64,
        mean_startup,
        max_startup,
        extras.lag_blocks_max,
        extras.wall.as_secs_f64()
    ));
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let rss = &report.process_rss;
    out.push_str(&format!(
        "  demo process RSS (every part in one process): after 60 s of media {}   peak {:.1} MiB   last {:.1} MiB at {:.0} s ({} samples)\n",
        rss.after_warmup_bytes
            .map_or_else(|| "n/a".to_owned(), |b| format!("{:.1} MiB", mib(b))),
        mib(rss.peak_bytes),
        mib(rss.last_bytes),
        rss.last_at_ms as f64 / 1000.0,
        rss.samples
    ));
    out.push_str(&late_lines(report));
    out.push_str(
        "  peer  p2p_ratio  stalls  stall_ms  startup_ms  byte_exact  cdn_prefetch  cdn_urgent\n",
    );
    for p in &report.peers_detail {
        let cdn = extras
            .cdn
            .peers
            .get(&p.id.to_string())
            .copied()
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:>4}  {:>9.3}  {:>6}  {:>8}  {:>10}  {:>10}  {:>12}  {:>10}\n",
            p.id,
            p.p2p_ratio,
            p.stalls,
            p.stall_ms,
            p.startup_ms,
            p.byte_exact,
            cdn.prefetch,
            cdn.fetch
        ));
    }
    out
}

/// The late viewers and killed peers, for the table (empty when there were none).
pub(super) fn late_lines(report: &DemoReport) -> String {
    let mut out = String::new();
    if !report.killed.is_empty() {
        out.push_str(&format!(
            "  killed mid-stream: {} peers {:?}\n",
            report.killed.len(),
            report.killed
        ));
    }
    for p in &report.late_peers {
        out.push_str(&format!(
            "  late peer {}: start block {}, {} ms behind the edge (budget {} ms), {} decode errors, byte-exact {}, stalls {}\n",
            p.id,
            p.start_block,
            p.lag_behind_edge_ms,
            report.lag_budget_ms,
            p.decode_errors.unwrap_or(0),
            p.byte_exact,
            p.stalls
        ));
    }
    for p in &report.late_players {
        out.push_str(&format!(
            "  late player at peer {}: first block {}, {} ms behind the edge (budget {} ms), {} decode errors, byte-exact {}\n",
            p.peer,
            p.first_block,
            p.lag_behind_edge_ms,
            report.lag_budget_ms,
            p.decode_errors,
            p.byte_exact
        ));
    }
    out
}
