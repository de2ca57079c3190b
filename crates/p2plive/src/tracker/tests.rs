//! Unit tests of [`super`].

use super::*;

fn contact(n: u64) -> Contact {
    Contact {
        quic_addr: format!("127.0.0.1:{n}"),
        http_addr: String::new(),
        cert_der_hex: String::new(),
    }
}

fn session(id: PeerId) -> Session {
    Session {
        id,
        token: Secret::new(format!("session-token-of-{id}")),
    }
}

fn token(id: PeerId) -> Option<String> {
    Some(session(id).token.expose().to_owned())
}

/// Joins peer number `n` (id `n + 1`, as the first tests were written with ids in join
/// order).
fn add(swarm: &mut Swarm, now: Instant, n: u64) -> PeerId {
    swarm.join(now, contact(n), &session(n + 1)).unwrap()
}

fn fixed(s: u32) -> TrackerConfig {
    TrackerConfig {
        min_substreams: s,
        max_substreams: s,
        ..TrackerConfig::default()
    }
}

fn coverage(swarm: &Swarm) -> Vec<usize> {
    (1..=swarm.layout().current().substreams)
        .map(|b| swarm.holders(b))
        .collect()
}

#[test]
fn joins_get_the_least_covered_substream() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(fixed(4)).unwrap();
    let ids: Vec<PeerId> = (0..6).map(|n| add(&mut swarm, t0, n)).collect();
    let subs: Vec<BTreeSet<u32>> = ids
        .iter()
        .map(|id| swarm.view(*id, 0).unwrap().substreams)
        .collect();
    // The first peer held all four until others came; each newcomer took one over.
    assert_eq!(subs[0], BTreeSet::from([1]));
    assert_eq!(subs[1], BTreeSet::from([4]));
    assert_eq!(subs[2], BTreeSet::from([3]));
    assert_eq!(subs[3], BTreeSet::from([2]));
    // Then the least covered.
    assert_eq!(subs[4], BTreeSet::from([1]));
    assert_eq!(subs[5], BTreeSet::from([2]));
    assert_eq!(coverage(&swarm), vec![2, 2, 1, 1]);
}

#[test]
fn dead_peers_are_removed_and_substreams_rehomed() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(fixed(10)).unwrap();
    let ids: Vec<PeerId> = (0..10).map(|n| add(&mut swarm, t0, n)).collect();
    let later = t0 + Duration::from_millis(1000);
    for id in &ids[3..] {
        swarm
            .heartbeat(later, *id, token(*id).as_deref(), 5)
            .unwrap();
    }
    let dead = swarm.expire(t0 + Duration::from_millis(2000));
    assert_eq!(dead, ids[..3].to_vec());
    assert!(
        coverage(&swarm).iter().all(|&c| c == 1),
        "{:?}",
        coverage(&swarm)
    );
    let total: usize = swarm.entries().iter().map(|e| e.substreams.len()).sum();
    assert_eq!(total, 10);
    assert!(matches!(
        swarm.heartbeat(later, ids[0], token(ids[0]).as_deref(), 5),
        Err(Error::UnknownPeer(_))
    ));
    // A clean leave re-homes too.
    swarm.leave(ids[3], token(ids[3]).as_deref()).unwrap();
    assert!(coverage(&swarm).iter().all(|&c| c == 1));
}

#[test]
fn substream_count_follows_peer_count_within_bounds() {
    let t0 = Instant::now();
    let config = TrackerConfig {
        min_substreams: 2,
        max_substreams: 4,
        ..TrackerConfig::default()
    };
    let mut swarm = Swarm::new(config).unwrap();
    let a = add(&mut swarm, t0, 1);
    assert_eq!(swarm.layout().current().substreams, 2);
    assert_eq!(swarm.view(a, 0).unwrap().substreams, BTreeSet::from([1, 2]));
    let ids: Vec<PeerId> = (2..=5).map(|n| add(&mut swarm, t0, n)).collect();
    assert_eq!(swarm.layout().current().substreams, 4, "capped at max");
    assert!(coverage(&swarm).iter().all(|&c| c >= 1));
    // Blocks were cut: the next change applies from a later block.
    swarm.heartbeat(t0, a, token(a).as_deref(), 20).unwrap();
    for id in &ids[1..] {
        swarm.leave(*id, token(*id).as_deref()).unwrap();
    }
    let layout = swarm.layout().clone();
    assert_eq!(layout.current().substreams, 2);
    assert_eq!(layout.current().from_block, 24);
    assert_eq!(layout.epoch_of(23).substreams, 4);
    assert!(coverage(&swarm).iter().all(|&c| c >= 1));
}

#[test]
fn only_k_holders_per_substream_prefetch_from_the_cdn() {
    let t0 = Instant::now();
    let mut config = fixed(2);
    config.cdn_prefetchers_per_substream = 0;
    let all = {
        let mut swarm = Swarm::new(config.clone()).unwrap();
        (0..6).for_each(|n| {
            add(&mut swarm, t0, n);
        });
        swarm.entries()
    };
    assert!(
        all.iter().all(|e| e.prefetch == e.substreams),
        "k = 0: every holder"
    );
    config.cdn_prefetchers_per_substream = 1;
    config.cdn_prefetch_per_holders = 0;
    let mut swarm = Swarm::new(config).unwrap();
    let ids: Vec<PeerId> = (0..6).map(|n| add(&mut swarm, t0, n)).collect();
    let prefetching: usize = swarm.entries().iter().map(|e| e.prefetch.len()).sum();
    assert_eq!(prefetching, 2, "one CDN prefetcher per substream");
    for b in 1..=2 {
        assert_eq!(
            swarm
                .entries()
                .iter()
                .filter(|e| e.prefetch.contains(&b))
                .count(),
            1
        );
    }
    // The prefetcher of a substream leaves: the next holder takes over.
    let first = swarm
        .entries()
        .into_iter()
        .find(|e| !e.prefetch.is_empty())
        .unwrap();
    swarm.leave(first.id, token(first.id).as_deref()).unwrap();
    for b in 1..=2 {
        assert_eq!(
            swarm
                .entries()
                .iter()
                .filter(|e| e.prefetch.contains(&b))
                .count(),
            1
        );
    }
    assert!(ids.len() == 6);
}

#[test]
fn unchanged_version_omits_peers() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(fixed(2)).unwrap();
    let a = add(&mut swarm, t0, 1);
    let v = swarm.view(a, 0).unwrap();
    assert!(v.peers.is_some());
    assert!(swarm.view(a, v.version).unwrap().peers.is_none());
    assert!(
        Swarm::new(TrackerConfig {
            min_substreams: 3,
            max_substreams: 2,
            ..TrackerConfig::default()
        })
        .is_err()
    );
}

#[test]
fn malformed_contacts_and_joins_beyond_max_peers_are_refused() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(TrackerConfig {
        max_peers: 2,
        ..fixed(2)
    })
    .unwrap();
    for bad in [
        Contact {
            quic_addr: "not an address".to_owned(),
            ..contact(1)
        },
        Contact {
            http_addr: "x".repeat(100),
            ..contact(1)
        },
        Contact {
            cert_der_hex: "zz".to_owned(),
            ..contact(1)
        },
        Contact {
            cert_der_hex: "ab".repeat(MAX_CERT_HEX),
            ..contact(1)
        },
    ] {
        let error = swarm.join(t0, bad, &session(1)).unwrap_err();
        assert!(matches!(error, Error::BadContact(_)), "{error}");
    }
    add(&mut swarm, t0, 0);
    add(&mut swarm, t0, 1);
    let full = swarm.join(t0, contact(3), &session(3)).unwrap_err();
    assert!(matches!(full, Error::SwarmFull(2)), "{full}");
    assert_eq!(swarm.entries().len(), 2);
}

#[test]
fn neighbours_config_is_checked() {
    for bad in [0, 15, 33] {
        let config = TrackerConfig {
            neighbours: bad,
            ..TrackerConfig::default()
        };
        assert!(matches!(Swarm::new(config), Err(Error::Config(_))), "{bad}");
    }
    assert_eq!(TrackerConfig::default().neighbours, 24);
}

/// Issue 16 item 3: every join or leave made every peer download the whole swarm (792 KB at
/// 1,000 peers). Now a view lists at most `neighbours` peers, and after a leave a heartbeat
/// answer carries only the change in the asker's neighbourhood.
#[test]
fn a_heartbeat_after_a_leave_carries_only_a_bounded_delta() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(fixed(16)).unwrap();
    let ids: Vec<PeerId> = (0..300).map(|n| add(&mut swarm, t0, n)).collect();
    let k = TrackerConfig::default().neighbours;
    let views: BTreeMap<PeerId, View> = ids
        .iter()
        .map(|id| (*id, swarm.view(*id, 0).unwrap()))
        .collect();
    for view in views.values() {
        let peers = view.peers.as_ref().unwrap();
        assert!(!peers.is_empty() && peers.len() <= k, "{}", peers.len());
        assert!(peers.iter().all(|p| p.id != view.you));
    }
    let full_bytes = serde_json::to_vec(&views[&ids[0]]).unwrap().len();
    // A current peer gets nothing more.
    let v = swarm.view(ids[0], views[&ids[0]].version).unwrap();
    assert!(v.peers.is_none() && v.changed.is_empty() && v.removed.is_empty());

    let gone = ids[150];
    let former = swarm.neighbours(gone);
    swarm.leave(gone, token(gone).as_deref()).unwrap();
    let mut delta_bytes = 0;
    for id in ids.iter().filter(|id| **id != gone) {
        let before = &views[id];
        let view = swarm.view(*id, before.version).unwrap();
        assert!(view.peers.is_none(), "a delta, not the full view");
        let size = serde_json::to_vec(&view).unwrap().len();
        let bare = serde_json::to_vec(&View {
            changed: Vec::new(),
            removed: Vec::new(),
            ..view.clone()
        })
        .unwrap()
        .len();
        delta_bytes += size - bare;
        // The leaver, and at most one link given up to repair another peer's set.
        assert_eq!(view.removed.contains(&gone), former.contains(id));
        assert!(view.removed.len() <= 2, "{:?}", view.removed);
        assert!(view.changed.len() <= 3, "{:?}", view.changed.len());
        // Applying the delta gives the tracker's current neighbourhood.
        let mut known: BTreeMap<PeerId, PeerEntry> = BTreeMap::new();
        before.apply_to(&mut known);
        view.apply_to(&mut known);
        let now: BTreeSet<PeerId> = known.keys().copied().collect();
        assert_eq!(now, swarm.neighbours(*id));
    }
    // The whole churn event costs the swarm a few full views, not 300.
    assert!(
        delta_bytes < 8 * full_bytes,
        "{delta_bytes} B of deltas vs {full_bytes} B per full view"
    );
}

/// With `cdn_prefetch_per_holders`, the prefetchers of a substream grow with its holders:
/// 1 substream, 12 holders, one per 4 holders: 3 prefetchers; 5 leave: 7 holders, 1.
#[test]
fn prefetchers_grow_with_the_holders() {
    let mut config = fixed(1);
    config.cdn_prefetch_per_holders = 4;
    let mut swarm = Swarm::new(config).unwrap();
    let now = Instant::now();
    let ids: Vec<PeerId> = (1..=12).map(|n| add(&mut swarm, now, n)).collect();
    let prefetching = |swarm: &Swarm| {
        swarm
            .entries()
            .iter()
            .filter(|e| e.prefetch.contains(&1))
            .count()
    };
    assert_eq!(prefetching(&swarm), 3);
    for id in &ids[..5] {
        swarm.leave(*id, token(*id).as_deref()).unwrap();
    }
    assert_eq!(prefetching(&swarm), 1);
}
