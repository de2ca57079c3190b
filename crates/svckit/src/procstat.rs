//! Resource use of whole process groups read from Linux `/proc` (`proc(5)`): CPU time and
//! resident memory of every process whose process group is `pgid` (the children started by
//! [`crate::process::ProcessSpec`] lead their own group, so a browser's or a server's helpers
//! are counted with it). Used by benchmarks that put a system beside its peers in one run.

use std::path::Path;

/// Clock ticks per second of `utime`/`stime` in `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`,
/// 100 on Linux for every architecture the workspace builds on).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// What a process group used, summed over its processes at the moment of reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GroupUsage {
    /// User plus system CPU time, seconds (of the processes alive now).
    pub cpu_seconds: f64,
    /// Resident set (`VmRSS`), bytes; pages shared between processes count once per process.
    pub rss_bytes: u64,
    /// How many processes the group has.
    pub processes: usize,
}

/// The usage of process group `pgid`; zeros when `/proc` is not readable or the group is
/// gone.
pub fn group_usage(pgid: u32) -> GroupUsage {
    let mut usage = GroupUsage::default();
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return usage;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let dir = Path::new("/proc").join(pid);
        let Ok(stat) = fs_err::read_to_string(dir.join("stat")) else {
            continue;
        };
        let Some(fields) = stat_fields(&stat) else {
            continue;
        };
        if fields.pgrp != pgid {
            continue;
        }
        usage.processes += 1;
        usage.cpu_seconds += (fields.utime + fields.stime) as f64 / CLOCK_TICKS_PER_SECOND;
        usage.rss_bytes += status_kb(&dir.join("status"), "VmRSS:") * 1024;
    }
    usage
}

/// The fields of `/proc/PID/stat` used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatFields {
    pgrp: u32,
    utime: u64,
    stime: u64,
}

/// Parses `/proc/PID/stat`: the fields after the command's closing parenthesis are
/// `state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ...`.
fn stat_fields(stat: &str) -> Option<StatFields> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(StatFields {
        pgrp: fields.get(2)?.parse().ok()?,
        utime: fields.get(11)?.parse().ok()?,
        stime: fields.get(12)?.parse().ok()?,
    })
}

/// A `KEY: N kB` line of `/proc/PID/status`, kB (0 when absent).
pub fn status_kb(path: &Path, key: &str) -> u64 {
    fs_err::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_spaces_and_parentheses_in_the_command() {
        let stat = "4242 (a (b) c) S 1 4240 4240 0 -1 4194560 10 0 0 0 250 75 0 0 20 0 1 0";
        assert_eq!(
            stat_fields(stat),
            Some(StatFields {
                pgrp: 4240,
                utime: 250,
                stime: 75
            })
        );
        assert_eq!(stat_fields("garbage"), None);
    }

    #[test]
    fn this_process_group_uses_cpu_and_memory() {
        let pgid = nix::unistd::getpgrp().as_raw().unsigned_abs();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let usage = group_usage(pgid);
        assert!(usage.processes >= 1);
        assert!(usage.rss_bytes > 0);
        assert!(usage.cpu_seconds >= 0.0);
        assert!(status_kb(Path::new("/proc/self/status"), "VmRSS:") > 0);
    }
}
