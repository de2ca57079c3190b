//! `p2plive bench`: times the hot paths (block cutter, SHA-256 verification, scheduler) on the
//! bundled clip and compares each with a peer program measured in the same run (ffmpeg's
//! segment muxer cutting the same TS at 1 s, `sha256sum` hashing it). Prints a table; nothing
//! is asserted. The last row is the swarm simulator's events per second.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

use crate::block::{BlockInfo, Cutter, sha256};
use crate::sched::{Action, SchedConfig, Scheduler, Source};
use crate::substream::Layout;

/// One measured row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// What was measured.
    pub task: String,
    /// Who did it (`p2plive` or the peer program).
    pub by: String,
    /// Best wall time over the rounds, in ms.
    pub best_ms: f64,
    /// Throughput, as stated in `unit`.
    pub rate: f64,
    /// Unit of `rate`.
    pub unit: String,
}

fn best<F: FnMut() -> anyhow::Result<()>>(rounds: usize, mut f: F) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Runs every measurement `rounds` times on `ts` (read from `ts_path`).
///
/// # Errors
/// A peer program that is missing or fails.
pub fn run(ts: &Bytes, ts_path: &Path, rounds: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut blocks = 0;
    let cut = best(rounds, || {
        let mut cutter = Cutter::new(Duration::from_secs(1));
        blocks = cutter.push(ts).len() + usize::from(cutter.finish().is_some());
        Ok(())
    })?;
    rows.push(Row {
        task: format!(
            "cut {} MB TS into {blocks} 1 s blocks (+SHA-256)",
            ts.len() / 1_000_000
        ),
        by: "p2plive".into(),
        best_ms: cut.as_secs_f64() * 1e3,
        rate: mb_per_s(ts.len(), cut),
        unit: "MB/s".into(),
    });
    if let Some(ffmpeg) = svckit::process::find_program("ffmpeg") {
        let dir = tempfile::tempdir()?;
        let pattern = dir.path().join("seg%04d.ts");
        let d = best(rounds, || {
            let status = std::process::Command::new(&ffmpeg)
                .args(["-nostdin", "-v", "error", "-y", "-i"])
                .arg(ts_path)
                .args([
                    "-map",
                    "0",
                    "-c",
                    "copy",
                    "-f",
                    "segment",
                    "-segment_time",
                    "1",
                ])
                .arg(&pattern)
                .status()
                .context("running ffmpeg")?;
            anyhow::ensure!(status.success(), "ffmpeg segment failed");
            Ok(())
        })?;
        rows.push(Row {
            task: "same TS, ffmpeg -f segment -segment_time 1 (process; cuts at keyframes)".into(),
            by: "ffmpeg".into(),
            best_ms: d.as_secs_f64() * 1e3,
            rate: mb_per_s(ts.len(), d),
            unit: "MB/s".into(),
        });
    }
    let hash = best(rounds, || {
        std::hint::black_box(sha256(ts));
        Ok(())
    })?;
    rows.push(Row {
        task: "SHA-256 of the TS (block verification)".into(),
        by: "p2plive".into(),
        best_ms: hash.as_secs_f64() * 1e3,
        rate: mb_per_s(ts.len(), hash),
        unit: "MB/s".into(),
    });
    if let Some(sum) = svckit::process::find_program("sha256sum") {
        let d = best(rounds, || {
            let out = std::process::Command::new(&sum).arg(ts_path).output()?;
            anyhow::ensure!(out.status.success(), "sha256sum failed");
            Ok(())
        })?;
        rows.push(Row {
            task: "same TS, sha256sum (whole process)".into(),
            by: "sha256sum".into(),
            best_ms: d.as_secs_f64() * 1e3,
            rate: mb_per_s(ts.len(), d),
            unit: "MB/s".into(),
        });
    }
    let n_blocks = 20_000u64;
    let d = best(rounds, || schedule(n_blocks))?;
    rows.push(Row {
        task: format!(
            "scheduler: {n_blocks} blocks, 10 substreams, 9 peers (info, block, poll each)"
        ),
        by: "p2plive".into(),
        best_ms: d.as_secs_f64() * 1e3,
        rate: n_blocks as f64 / d.as_secs_f64().max(1e-9),
        unit: "blocks/s".into(),
    });
    // The swarm simulator (issue 16 "Done when": bench adds its events/s).
    let sim = crate::sim::SimConfig {
        peers: 100,
        seconds: 30,
        ..crate::sim::SimConfig::default()
    };
    let mut events = 0;
    let d = best(rounds.min(2), || {
        events = crate::sim::run(&sim, crate::sim::Policy::LeastCovered)?.events;
        Ok(())
    })?;
    rows.push(Row {
        task: format!("sim: 100 peers, 30 s of stream, least-covered ({events} events)"),
        by: "p2plive".into(),
        best_ms: d.as_secs_f64() * 1e3,
        rate: events as f64 / d.as_secs_f64().max(1e-9),
        unit: "events/s".into(),
    });
    Ok(rows)
}

/// Drives one scheduler through `n` blocks in virtual time, each block arriving from the peer
/// it was requested from.
fn schedule(n: u64) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let layout = Layout::fixed(10, 1)?;
    let mut s = Scheduler::new(SchedConfig::default(), t0, 0, 1.0, layout.clone());
    s.set_assignment(layout, BTreeMap::from([(1, 0)]));
    s.set_peers(
        (2..=10)
            .map(|id| (id, BTreeSet::from([id as u32])))
            .collect(),
    );
    let data = vec![0u8; 188];
    let info = |n: u64| BlockInfo::of(n, 1000, &data);
    let mut pending = Vec::new();
    for block in 0..n {
        let now = t0 + Duration::from_secs(block);
        s.on_info(info(block));
        if block % 10 == 0 {
            s.on_block(block, Source::Prefetch, &data);
        }
        for (b, from) in pending.drain(..) {
            s.on_block(b, from, &data);
        }
        for action in s.poll(now) {
            if let Action::Fetch { block, from } = action {
                pending.push((block, from));
            }
        }
    }
    std::hint::black_box(s.stats());
    Ok(())
}

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<72} {:>10} {:>12} {:>12}\n",
        "task", "by", "best ms", "rate"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<72} {:>10} {:>12.2} {:>12.1} {}\n",
            r.task, r.by, r.best_ms, r.rate, r.unit
        ));
    }
    out
}
