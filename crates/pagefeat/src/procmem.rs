//! Memory of a process tree as PSS (issue 15 item 8): the proportional set size from
//! `/proc/PID/smaps_rollup` (Linux >= 4.14), summed over a process, all its descendants and
//! the members of its process group.
//!
//! Summed RSS counts a page shared by N processes N times; Chromium's browser, zygote,
//! renderers and helpers share most of their code and much data, so summed RSS overstates its
//! memory. PSS charges each shared page 1/N to each of its N users, so the sum over the tree
//! counts every page once. RSS is kept beside it, named as such.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `Pss:` and `Rss:` totals of one `smaps_rollup`, kB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    /// Proportional set size, kB (`Pss:`).
    pub pss_kb: u64,
    /// Resident set size, kB (`Rss:`).
    pub rss_kb: u64,
}

/// Memory of a process tree: PSS and RSS summed over its processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeMemory {
    /// Processes read (the root and its descendants still alive when read).
    pub processes: usize,
    /// Summed PSS, kB: each page counted once over the tree.
    pub pss_kb: u64,
    /// Summed RSS, kB: shared pages counted once per process.
    pub rss_kb: u64,
}

impl TreeMemory {
    /// Summed PSS in MB (1 MB = 1024 kB).
    pub fn pss_mb(&self) -> f64 {
        self.pss_kb as f64 / 1024.0
    }

    /// Summed RSS in MB (1 MB = 1024 kB).
    pub fn rss_mb(&self) -> f64 {
        self.rss_kb as f64 / 1024.0
    }
}

fn format_error(path: &Path, what: impl Into<String>) -> Error {
    Error::ProcFormat {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn kb_field(text: &str, name: &str, path: &Path) -> Result<u64> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .ok_or_else(|| format_error(path, format!("no `{name}` line")))?;
    let mut words = line.split_whitespace();
    let value = words
        .next()
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| format_error(path, format!("`{name}` has no number")))?;
    match words.next() {
        Some("kB") => Ok(value),
        other => Err(format_error(
            path,
            format!("`{name}` unit is {other:?}, not kB"),
        )),
    }
}

/// Parses the text of a `smaps_rollup` file (read from `path`, named in errors).
///
/// # Errors
/// [`Error::ProcFormat`] when the `Pss:` or `Rss:` line is missing or not `<n> kB`.
pub fn parse_smaps_rollup(text: &str, path: &Path) -> Result<Rollup> {
    Ok(Rollup {
        pss_kb: kb_field(text, "Pss:", path)?,
        rss_kb: kb_field(text, "Rss:", path)?,
    })
}

/// `/proc/PID/smaps_rollup` of process `pid`.
///
/// # Errors
/// [`Error::ProcRead`] when the file cannot be read (no such process, no permission, a kernel
/// without `smaps_rollup`); [`Error::ProcFormat`].
pub fn rollup(pid: u32) -> Result<Rollup> {
    let path = PathBuf::from(format!("/proc/{pid}/smaps_rollup"));
    let text = fs_err::read_to_string(&path).map_err(|source| Error::ProcRead {
        path: path.clone(),
        source,
    })?;
    parse_smaps_rollup(&text, &path)
}

/// The parent pid and process group from the text of `/proc/PID/stat` (the two fields after
/// the state, which follows the command name in parentheses; the name may itself contain
/// spaces and parentheses).
pub fn parent_of_stat(stat: &str) -> Option<(u32, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    fields.next()?; // state
    let parent = fields.next()?.parse().ok()?;
    let group = fields.next()?.parse().ok()?;
    Some((parent, group))
}

/// `root` and every process descending from it or in process group `root` (helpers that
/// double-fork, such as Chromium's crash handler, leave the tree but keep the group), root
/// first, read from `/proc/*/stat`.
///
/// # Errors
/// [`Error::ProcRead`] when `/proc` cannot be listed or `root` does not exist.
pub fn process_tree(root: u32) -> Result<Vec<u32>> {
    let proc_dir = Path::new("/proc");
    let root_stat = proc_dir.join(root.to_string()).join("stat");
    fs_err::metadata(&root_stat).map_err(|source| Error::ProcRead {
        path: root_stat,
        source,
    })?;
    let entries = fs_err::read_dir(proc_dir).map_err(|source| Error::ProcRead {
        path: proc_dir.to_path_buf(),
        source,
    })?;
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut group = Vec::new();
    for entry in entries.filter_map(std::result::Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit while the list is read: it is simply not part of the tree.
        let Ok(stat) = fs_err::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((parent, pgrp)) = parent_of_stat(&stat) {
            children.entry(parent).or_default().push(pid);
            if pgrp == root && pid != root {
                group.push(pid);
            }
        }
    }
    let mut tree = vec![root];
    let mut seen: HashSet<u32> = HashSet::from([root]);
    tree.extend(group.into_iter().filter(|pid| seen.insert(*pid)));
    let mut next = 0;
    while next < tree.len() {
        if let Some(kids) = children.get(&tree[next]) {
            tree.extend(kids.iter().copied().filter(|k| seen.insert(*k)));
        }
        next += 1;
    }
    Ok(tree)
}

/// PSS and RSS summed over `root` and its descendants. Descendants that exit while being read
/// are left out.
///
/// # Errors
/// [`Error::ProcRead`] / [`Error::ProcFormat`] when `/proc` or the root's `smaps_rollup`
/// cannot be read.
pub fn tree_memory(root: u32) -> Result<TreeMemory> {
    let pids = process_tree(root)?;
    let mut total = TreeMemory::default();
    for pid in pids {
        match rollup(pid) {
            Ok(r) => {
                total.processes += 1;
                total.pss_kb += r.pss_kb;
                total.rss_kb += r.rss_kb;
            }
            Err(Error::ProcRead { .. }) if pid != root => {
                tracing::debug!(pid, "process left before its smaps_rollup was read");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &str = "\
55d0c0a4b000-7ffd3b1f4000 ---p 00000000 00:00 0                          [rollup]
Rss:              123456 kB
Pss:               45678 kB
Pss_Dirty:         30000 kB
Pss_Anon:          25000 kB
Shared_Clean:      70000 kB
Private_Dirty:     20000 kB
";

    #[test]
    fn parses_pss_and_rss_of_a_rollup() {
        let r = parse_smaps_rollup(ROLLUP, Path::new("x")).unwrap();
        // `Pss_Dirty:` etc. must not be taken for `Pss:`.
        assert_eq!(
            r,
            Rollup {
                pss_kb: 45_678,
                rss_kb: 123_456
            }
        );
        let err = parse_smaps_rollup("Rss: 5 kB\n", Path::new("y")).unwrap_err();
        assert!(matches!(err, Error::ProcFormat { .. }), "{err}");
        let err = parse_smaps_rollup("Rss: 5 kB\nPss: 3 MB\n", Path::new("z")).unwrap_err();
        assert!(err.to_string().contains("not kB"), "{err}");
    }

    #[test]
    fn own_pss_is_positive_and_at_most_rss() {
        let me = rollup(std::process::id()).unwrap();
        assert!(me.pss_kb > 0, "{me:?}");
        assert!(me.pss_kb <= me.rss_kb, "{me:?}");
        let tree = tree_memory(std::process::id()).unwrap();
        assert!(tree.processes >= 1 && tree.pss_kb > 0 && tree.pss_kb <= tree.rss_kb);
    }

    #[test]
    fn process_tree_holds_children() {
        use std::os::unix::process::CommandExt;
        // In a group of its own: found as a descendant, not as a group member.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let tree = process_tree(std::process::id()).unwrap();
        let found = tree.contains(&child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(tree[0], std::process::id());
        assert!(found, "{tree:?} lacks {}", child.id());
    }

    #[test]
    fn stat_parent_survives_odd_command_names() {
        assert_eq!(parent_of_stat("42 (a b) c) S 7 40 42 0"), Some((7, 40)));
        assert_eq!(parent_of_stat("garbage"), None);
    }

    #[test]
    fn missing_process_is_a_typed_error() {
        // pid_max is at most 2^22 on Linux.
        let err = rollup(u32::MAX - 1).unwrap_err();
        assert!(matches!(err, Error::ProcRead { .. }), "{err}");
        assert!(matches!(
            process_tree(u32::MAX - 1),
            Err(Error::ProcRead { .. })
        ));
    }
}
