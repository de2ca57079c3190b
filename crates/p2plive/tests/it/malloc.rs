//! Bounded memory (issue 16 item 5): every `p2plive` process runs with glibc's mmap threshold
//! fixed ([`p2plive::rss::MALLOC_TUNABLE`]), so freed block buffers go back to the kernel. The
//! binary re-executes itself with `GLIBC_TUNABLES` when it is missing; an operator's own
//! threshold is kept.

use testkit::{Peer, Ready, RunningPeer};

use crate::{JOIN_TOKEN, bin};

fn tracker(tunables: Option<&str>) -> RunningPeer {
    let mut peer = Peer::new(bin())
        .args([
            "tracker",
            "--listen",
            "127.0.0.1:{port}",
            "--stream",
            "live",
        ])
        .env("P2PLIVE_TRACKER__JOIN_TOKEN", JOIN_TOKEN)
        .ready(Ready::Http("/healthz"));
    if let Some(value) = tunables {
        peer = peer.env("GLIBC_TUNABLES", value);
    }
    peer.start()
}

/// The `GLIBC_TUNABLES` entries of process `pid`'s environment, and whether it is the
/// re-executed process (`TUNED_BY_P2PLIVE` set; a `P2PLIVE_` name would be read as
/// configuration).
fn tunables_of(pid: u32) -> (Vec<String>, bool) {
    let environ = fs_err::read(format!("/proc/{pid}/environ")).unwrap();
    let entries: Vec<&str> = environ
        .split(|b| *b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .collect();
    let tunables = entries
        .iter()
        .filter_map(|entry| entry.strip_prefix("GLIBC_TUNABLES="))
        .map(str::to_owned)
        .collect();
    (tunables, entries.contains(&"TUNED_BY_P2PLIVE=malloc"))
}

#[test]
fn every_process_runs_with_a_fixed_mmap_threshold_and_an_operators_own_is_kept() {
    let plain = tracker(None);
    assert_eq!(
        tunables_of(plain.pid()),
        (vec![p2plive::rss::MALLOC_TUNABLE.to_owned()], true)
    );
    // Other tunables are kept and the threshold added (glibc 2.36 rewrites the variable in
    // place while parsing it, so /proc shows only its first entry; the value composed is
    // tested in `rss::tests`): the process was executed again.
    let other = tracker(Some("glibc.malloc.arena_max=2"));
    let (tunables, tuned) = tunables_of(other.pid());
    assert!(tuned && tunables.len() == 1, "{tunables:?}");
    assert!(tunables[0].starts_with("glibc.malloc.arena_max=2"));
    // An operator's own threshold: left as it is, no second exec.
    let own = tracker(Some("glibc.malloc.mmap_threshold=131072"));
    assert_eq!(
        tunables_of(own.pid()),
        (vec!["glibc.malloc.mmap_threshold=131072".to_owned()], false)
    );
}
