//! Resident memory of a process over a run (issue 16 item 5: "a 600 s input keeps every
//! process's RSS flat"): `VmRSS` read from `/proc/<pid>/status` (Linux, proc(5)), sampled
//! during the run; [`RssTrack`] keeps the first sample after a warm-up, the peak and the last.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Default bound on a process's peak RSS, in MiB (issue 16: "<= 50 MB per peer").
pub const DEFAULT_MAX_RSS_MIB: u64 = 50;

/// `VmRSS` of `status` (the text of `/proc/<pid>/status`) in bytes; `None` when the line is
/// missing or malformed (kernel threads have none).
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    (fields.next()? == "kB").then_some(kib.checked_mul(1024)?)
}

/// The resident set size of process `pid`, in bytes.
///
/// # Errors
/// [`Error::Io`] when `/proc/<pid>/status` cannot be read (the process is gone, or this is not
/// Linux); [`Error::Config`] when it has no `VmRSS` line.
pub fn read_rss(pid: u32) -> Result<u64, Error> {
    let path = std::path::PathBuf::from(format!("/proc/{pid}/status"));
    let status = fs_err::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    parse_vm_rss(&status).ok_or_else(|| Error::Config(format!("{}: no VmRSS line", path.display())))
}

/// RSS figures of one process over a run, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RssFigures {
    /// The first sample taken after the warm-up (`None` if the run ended before it).
    pub after_warmup_bytes: Option<u64>,
    /// When `after_warmup_bytes` was taken, ms since the start.
    pub after_warmup_at_ms: Option<u64>,
    /// The largest sample.
    pub peak_bytes: u64,
    /// The last sample.
    pub last_bytes: u64,
    /// When the last sample was taken, ms since the start.
    pub last_at_ms: u64,
    /// Samples taken.
    pub samples: u64,
}

impl RssFigures {
    /// A failure message when the peak exceeds `max_mib` MiB, naming `who`.
    pub fn over(&self, who: &str, max_mib: u64) -> Option<String> {
        let max = max_mib.saturating_mul(1 << 20);
        (self.peak_bytes > max).then(|| {
            format!(
                "{who}: peak RSS {:.1} MiB above {max_mib} MiB",
                self.peak_bytes as f64 / f64::from(1 << 20)
            )
        })
    }
}

/// Folds RSS samples into [`RssFigures`]; time is a value (`at` since the run started).
#[derive(Debug, Clone, Default)]
pub struct RssTrack {
    warmup: Duration,
    figures: RssFigures,
}

impl RssTrack {
    /// A track whose "after warm-up" figure is the first sample at or after `warmup`.
    pub fn new(warmup: Duration) -> Self {
        Self {
            warmup,
            figures: RssFigures::default(),
        }
    }

    /// Adds a sample of `bytes` taken `at` after the start.
    pub fn sample(&mut self, at: Duration, bytes: u64) {
        let f = &mut self.figures;
        let at_ms = u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
        if f.after_warmup_bytes.is_none() && at >= self.warmup {
            f.after_warmup_bytes = Some(bytes);
            f.after_warmup_at_ms = Some(at_ms);
        }
        f.peak_bytes = f.peak_bytes.max(bytes);
        f.last_bytes = bytes;
        f.last_at_ms = at_ms;
        f.samples += 1;
    }

    /// The figures so far.
    pub fn figures(&self) -> RssFigures {
        self.figures
    }
}

/// The glibc malloc tunable every p2plive process runs with (issue 16 item 5): a fixed mmap
/// threshold of 64 KiB. Block buffers (tens to hundreds of KB, one per block, freed as the
/// window slides) then come from `mmap` and go back to the kernel when freed. With glibc's
/// default the threshold rises to the size of the first such buffer freed (mallopt(3),
/// `M_MMAP_THRESHOLD`: dynamic adjustment), later buffers come from the heap, and the RSS of
/// the demo's process (every part in one process, 600 s of media) grew 98 -> 118 MiB after
/// warm-up, against 87 -> 95 MiB with this threshold. Setting it disables the adjustment.
pub const MALLOC_TUNABLE: &str = "glibc.malloc.mmap_threshold=65536";

/// The `GLIBC_TUNABLES` value (tunables(7): `name=value` pairs joined by `:`) to run with,
/// given the current one: `current` with [`MALLOC_TUNABLE`] added, or `None` when `current`
/// already sets an mmap threshold (the operator's choice stays).
pub fn malloc_tunables(current: Option<&str>) -> Option<String> {
    let current = current.unwrap_or("").trim_matches(':');
    if current
        .split(':')
        .any(|pair| pair.split('=').next() == Some("glibc.malloc.mmap_threshold"))
    {
        return None;
    }
    Some(if current.is_empty() {
        MALLOC_TUNABLE.to_owned()
    } else {
        format!("{current}:{MALLOC_TUNABLE}")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn malloc_tunables_add_the_threshold_once_and_keep_the_operators() {
        assert_eq!(malloc_tunables(None).as_deref(), Some(MALLOC_TUNABLE));
        assert_eq!(malloc_tunables(Some("")).as_deref(), Some(MALLOC_TUNABLE));
        let with = format!("glibc.malloc.arena_max=2:{MALLOC_TUNABLE}");
        assert_eq!(
            malloc_tunables(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some(with.as_str())
        );
        // Already set (ours, or the operator's own value): nothing to change, no re-exec loop.
        assert_eq!(malloc_tunables(Some(&with)), None);
        assert_eq!(
            malloc_tunables(Some("glibc.malloc.mmap_threshold=1048576")),
            None
        );
    }

    use super::*;

    #[test]
    fn vm_rss_parses_from_proc_status() {
        let status = "Name:\tp2plive\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
        // This very process has one, between 1 MiB and 10 GiB.
        let me = read_rss(std::process::id()).unwrap();
        assert!((1 << 20..10 << 30).contains(&me), "{me}");
    }

    #[test]
    fn track_keeps_first_after_warmup_peak_and_last_and_the_bound_can_fail() {
        let mut track = RssTrack::new(Duration::from_secs(60));
        for (s, mib) in [(0, 10), (30, 70), (60, 40), (90, 45), (600, 41)] {
            track.sample(Duration::from_secs(s), mib << 20);
        }
        let f = track.figures();
        assert_eq!(f.after_warmup_bytes, Some(40 << 20));
        assert_eq!(f.after_warmup_at_ms, Some(60_000));
        assert_eq!(f.peak_bytes, 70 << 20);
        assert_eq!(
            (f.last_bytes, f.last_at_ms, f.samples),
            (41 << 20, 600_000, 5)
        );
        let over = f.over("peer 7", DEFAULT_MAX_RSS_MIB).unwrap();
        assert!(
            over.contains("peer 7") && over.contains("70.0 MiB"),
            "{over}"
        );
        assert_eq!(f.over("peer 7", 70), None);
    }
}
