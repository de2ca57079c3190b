//! Unit tests of [`super`].

use super::*;

const MS: Duration = Duration::from_millis(1);

fn info(n: u64) -> BlockInfo {
    BlockInfo::of(n, 1000, &data(n))
}

fn data(n: u64) -> Vec<u8> {
    vec![n as u8; 188]
}

/// The tunables these tests were written for: a 4-block playout delay (the default is
/// larger, for the mesh), the rest default.
fn config() -> SchedConfig {
    SchedConfig {
        playout_delay_blocks: 4,
        ..SchedConfig::default()
    }
}

/// Peer 1 of a 4-substream, 4-peer swarm (holds substream 1) with peers 2..=4.
fn swarm(start: u64) -> (Scheduler, Instant) {
    let t0 = Instant::now();
    let layout = Layout::fixed(4, 1).unwrap();
    let mut s = Scheduler::new(config(), t0, start, 1.0, layout.clone());
    s.set_assignment(layout, BTreeMap::from([(1, 0)]));
    s.set_peers(
        (2..=4)
            .map(|id| (id, BTreeSet::from([id as u32])))
            .collect(),
    );
    (s, t0)
}

fn fetches(actions: &[Action]) -> Vec<(u64, Source)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fetch { block, from } => Some((*block, *from)),
            _ => None,
        })
        .collect()
}

#[test]
fn fetches_other_substreams_from_their_holders_in_sequence_order() {
    let (mut s, t0) = swarm(0);
    for n in 0..3 {
        s.on_info(info(n));
    }
    let actions = s.poll(t0);
    // Still buffering (playback starts once 4 blocks are cut): nothing urgent yet, block 0
    // is mine (prefetch), 1 and 2 from peers 2 and 3, in order.
    assert_eq!(
        fetches(&actions),
        vec![(1, Source::Peer(2)), (2, Source::Peer(3))]
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Play { .. })));
}

#[test]
fn plays_in_order_without_stalls_when_blocks_arrive_in_time() {
    let (mut s, t0) = swarm(0);
    let mut now = t0;
    let mut played = Vec::new();
    for n in 0..8 {
        s.on_info(info(n));
        let from = if n % 4 == 0 {
            Source::Prefetch
        } else {
            Source::Peer(n % 4 + 1)
        };
        assert_eq!(s.on_block(n, from, &data(n)), Verdict::Accepted);
        for a in s.poll(now) {
            if let Action::Play { block } = a {
                played.push(block);
            }
        }
        now += Duration::from_secs(1);
    }
    s.on_end(8);
    for _ in 0..10 {
        for a in s.poll(now) {
            if let Action::Play { block } = a {
                played.push(block);
            }
        }
        now += Duration::from_secs(1);
    }
    assert_eq!(played, (0..8).collect::<Vec<_>>());
    assert!(s.finished());
    let stats = s.stats();
    assert_eq!(stats.stalls, 0);
    assert_eq!(stats.startup_ms, Some(3000));
    assert_eq!(stats.played, 8);
}

#[test]
fn urgent_blocks_come_from_the_cdn_and_stalls_are_counted() {
    let (mut s, t0) = swarm(0);
    for n in 0..6 {
        s.on_info(info(n));
    }
    s.on_block(0, Source::Prefetch, &data(0));
    let actions = s.poll(t0);
    // Playback starts (cut 6 >= 0 + 4): blocks 1 and 2 are urgent -> CDN.
    assert_eq!(actions[0], Action::Play { block: 0 });
    let f = fetches(&actions);
    assert!(
        f.contains(&(1, Source::Cdn)) && f.contains(&(2, Source::Cdn)),
        "{f:?}"
    );
    assert!(f.contains(&(3, Source::Peer(4))), "{f:?}");
    // Block 1 arrives 300 ms late: one stall of 300 ms.
    assert!(fetches(&s.poll(t0 + 1000 * MS)).is_empty());
    assert_eq!(s.stats().stalls, 0, "not late yet");
    assert_eq!(s.on_block(1, Source::Cdn, &data(1)), Verdict::Accepted);
    let actions = s.poll(t0 + 1300 * MS);
    assert_eq!(actions[0], Action::Play { block: 1 });
    assert_eq!(s.stats().stalls, 1);
    assert_eq!(s.stats().stall_ms, 300);
    assert!(!s.stats().stalled_now);
}

/// Bug: a stall that never ended (the run stopped while the player waited) was never
/// counted.
#[test]
fn a_stall_still_open_at_the_end_of_a_run_is_counted() {
    let (mut s, t0) = swarm(0);
    for n in 0..6 {
        s.on_info(info(n));
    }
    s.on_block(0, Source::Prefetch, &data(0));
    s.poll(t0);
    // Block 1 never comes; the run is read 2.5 s later.
    s.poll(t0 + 1000 * MS);
    s.poll(t0 + 3500 * MS);
    let stats = s.stats();
    assert_eq!(stats.stalls, 1, "{stats:?}");
    assert_eq!(stats.stall_ms, 2500);
    assert!(stats.stalled_now);
    // It is counted once, also when it ends later.
    assert_eq!(s.on_block(1, Source::Cdn, &data(1)), Verdict::Accepted);
    s.poll(t0 + 4000 * MS);
    let stats = s.stats();
    assert_eq!(
        (stats.stalls, stats.stall_ms, stats.stalled_now),
        (1, 3000, false)
    );
}

#[test]
fn corrupt_block_is_dropped_and_fetched_elsewhere() {
    let (mut s, t0) = swarm(0);
    for n in 0..4 {
        s.on_info(info(n));
    }
    s.poll(t0);
    let mut bad = data(2);
    bad[100] ^= 1;
    assert_eq!(s.on_block(2, Source::Peer(3), &bad), Verdict::Corrupt);
    assert!(!s.has(2));
    let f = fetches(&s.poll(t0));
    // Not peer 3 again: another peer.
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, 2);
    assert_ne!(f[0].1, Source::Peer(3));
    assert_eq!(s.on_block(2, f[0].1, &data(2)), Verdict::Accepted);
    assert_eq!(s.stats().corrupt_blocks, 1);
    assert_eq!(s.on_block(2, Source::Cdn, &data(2)), Verdict::Duplicate);
}

#[test]
fn dead_holder_falls_back_to_other_peers_then_cdn() {
    let (mut s, t0) = swarm(0);
    for n in 0..4 {
        s.on_info(info(n));
    }
    s.poll(t0);
    s.peer_down(3, t0);
    let f = fetches(&s.poll(t0));
    // Block 2's holder is down; nobody else tried yet, so it waits for the urgent zone.
    assert!(f.is_empty(), "{f:?}");
    s.on_block(0, Source::Prefetch, &data(0));
    s.on_info(info(4));
    let actions = s.poll(t0);
    assert!(fetches(&actions).contains(&(2, Source::Cdn)), "{actions:?}");
    // After the back-off the peer is asked again (for block 3's neighbour 6, say).
    for n in 5..8 {
        s.on_info(info(n));
    }
    let later = s.poll(t0 + Duration::from_millis(2001));
    assert!(fetches(&later).contains(&(6, Source::Peer(3))), "{later:?}");
}

#[test]
fn blocks_of_my_substream_wait_for_the_prefetch_until_urgent() {
    let (mut s, t0) = swarm(0);
    for n in 0..9 {
        s.on_info(info(n));
    }
    let f = fetches(&s.poll(t0));
    // Blocks 4 and 8 are mine and not urgent: left to the prefetch. Block 0 is urgent.
    assert!(!f.iter().any(|(b, _)| *b == 4 || *b == 8), "{f:?}");
    assert!(f.contains(&(0, Source::Cdn)), "{f:?}");
    assert!(f.contains(&(1, Source::Cdn)), "{f:?}");
    assert!(f.contains(&(2, Source::Peer(3))), "{f:?}");
}

#[test]
fn only_a_window_behind_the_playhead_is_remembered() {
    let (mut s, t0) = swarm(0);
    let mut now = t0;
    let mut most = 0;
    for n in 0..100 {
        s.on_info(info(n));
        let from = if n % 4 == 0 {
            Source::Prefetch
        } else {
            Source::Peer(n % 4 + 1)
        };
        s.on_block(n, from, &data(n));
        s.poll(now);
        // 1 s blocks, a 5 s window.
        let keep = s.window_start(5000);
        s.forget_before(keep);
        most = most.max(s.tracked());
        now += Duration::from_secs(1);
    }
    assert!(s.stats().played > 90, "{:?}", s.stats());
    // 5 behind + the playing one + 4 ahead (playout delay), in infos and in the held set.
    assert!(most <= 2 * 11, "{most} entries");
    let keep = s.window_start(5000);
    assert!((90..=96).contains(&keep), "{keep}");
    // A late answer for a forgotten block is not kept.
    assert_eq!(s.on_block(3, Source::Cdn, &data(3)), Verdict::Unknown);
    assert!(!s.has(3));
}

#[test]
fn late_joiner_starts_behind_the_live_edge() {
    let config = config();
    assert_eq!(Scheduler::start_block(&config, 0), 0);
    assert_eq!(Scheduler::start_block(&config, 3), 0);
    assert_eq!(Scheduler::start_block(&config, 30), 26);
}

/// Peer 1 of a 4-substream swarm whose neighbours 2..=4 prefetch nothing: blocks come only
/// from what the neighbours told they hold.
fn mesh(start: u64) -> (Scheduler, Instant) {
    let t0 = Instant::now();
    let layout = Layout::fixed(4, 1).unwrap();
    let mut s = Scheduler::new(config(), t0, start, 1.0, layout.clone());
    s.set_assignment(layout, BTreeMap::from([(1, 0)]));
    s.set_peers((2..=4).map(|id| (id, BTreeSet::new())).collect());
    (s, t0)
}

fn upload(cap: u64, queued: u64) -> Upload {
    Upload {
        cap_bytes_per_s: cap,
        queued_bytes: queued,
    }
}

#[test]
fn picks_the_neighbour_holding_the_block_with_the_most_spare_upload() {
    let (mut s, t0) = mesh(0);
    for n in 0..3 {
        s.on_info(info(n));
    }
    // Nobody told it has anything: nothing to fetch from (and nothing is urgent yet).
    assert!(fetches(&s.poll(t0)).is_empty());
    s.on_have(2, 1);
    s.on_upload(2, upload(100_000, 90_000));
    s.on_buffer_map(3, &BufferMap::of(&BTreeSet::from([0, 1])));
    s.on_upload(3, upload(100_000, 10_000));
    s.on_have(4, 2);
    s.on_upload(4, upload(100_000, 0));
    // Block 1: 2 and 3 hold it, 3 has more to spare; block 2: only 4 holds it.
    assert_eq!(
        fetches(&s.poll(t0)),
        vec![(1, Source::Peer(3)), (2, Source::Peer(4))]
    );
    assert_eq!(s.parent(2), Some(3));
    assert_eq!(s.parent(3), Some(4));
}

#[test]
fn a_parent_that_leaves_is_replaced_by_the_next_best_holder() {
    let (mut s, t0) = mesh(0);
    for n in 0..3 {
        s.on_info(info(n));
    }
    for id in 2..=4 {
        s.on_have(id, 1);
    }
    s.on_upload(2, upload(100_000, 50_000));
    s.on_upload(3, upload(100_000, 0));
    s.on_upload(4, upload(100_000, 20_000));
    assert_eq!(fetches(&s.poll(t0)), vec![(1, Source::Peer(3))]);
    assert_eq!(s.parent(2), Some(3));
    assert_eq!(s.on_block(1, Source::Peer(3), &data(1)), Verdict::Accepted);
    // The parent of substream 2 leaves the neighbour set.
    s.set_peers([2, 4].into_iter().map(|id| (id, BTreeSet::new())).collect());
    assert_eq!(s.parent(2), None);
    // The next block of substream 2 (block 5) goes to the best remaining holder, 4.
    for n in 3..6 {
        s.on_info(info(n));
    }
    for id in [2, 4] {
        s.on_have(id, 5);
    }
    let got: Vec<(u64, Source)> = fetches(&s.poll(t0))
        .into_iter()
        .filter(|(b, _)| *b == 5)
        .collect();
    assert_eq!(got, vec![(5, Source::Peer(4))]);
    assert_eq!(s.parent(2), Some(4));
}

#[test]
fn a_parent_that_fails_a_fetch_is_reselected() {
    let (mut s, t0) = mesh(0);
    for n in 0..3 {
        s.on_info(info(n));
    }
    for id in [2, 3] {
        s.on_have(id, 1);
    }
    s.on_upload(2, upload(100_000, 50_000));
    s.on_upload(3, upload(100_000, 0));
    assert_eq!(fetches(&s.poll(t0)), vec![(1, Source::Peer(3))]);
    s.on_fetch_failed(1, Source::Peer(3));
    assert_eq!(s.parent(2), None);
    assert_eq!(fetches(&s.poll(t0)), vec![(1, Source::Peer(2))]);
    assert_eq!(s.parent(2), Some(2));
}

/// Deadline-aware urgent zone: a block already requested from a peer is not fetched from
/// the CDN as well while another block is still to play before it; once it is the next
/// block needed, the CDN is asked.
#[test]
fn a_block_coming_from_a_peer_waits_until_it_is_the_next_needed() {
    let (mut s, t0) = swarm(0);
    for n in 0..3 {
        s.on_info(info(n));
    }
    // Buffering: blocks 1 and 2 are asked of their substreams' prefetchers.
    let f = fetches(&s.poll(t0));
    assert!(f.contains(&(1, Source::Peer(2))), "{f:?}");
    assert!(f.contains(&(2, Source::Peer(3))), "{f:?}");
    for n in 3..6 {
        s.on_info(info(n));
    }
    s.on_block(0, Source::Prefetch, &data(0));
    // Playing 0: blocks 1 and 2 are urgent. Block 1 is next: the CDN is asked too; block 2
    // stays with its peer.
    let f = fetches(&s.poll(t0 + 100 * MS));
    assert!(f.contains(&(1, Source::Cdn)), "{f:?}");
    assert!(!f.contains(&(2, Source::Cdn)), "{f:?}");
    // Block 1 arrives; when it plays, block 2 is next and still missing: now the CDN.
    s.on_block(1, Source::Peer(2), &data(1));
    let f = fetches(&s.poll(t0 + 1100 * MS));
    assert!(f.contains(&(2, Source::Cdn)), "{f:?}");
}

/// `wants` is what a have can change: a block not held, not requested, not forgotten and not
/// coming by the peer's own prefetch subscription.
#[test]
fn wants_only_blocks_a_have_could_start_a_fetch_for() {
    let (mut s, t0) = swarm(0);
    for n in 0..3 {
        s.on_info(info(n));
    }
    // Block 0 is substream 1, mine: it comes by the prefetch subscription.
    assert!(!s.wants(0));
    assert!(s.wants(1) && s.wants(2));
    // Polling (still buffering) asks peers 2 and 3 for blocks 1 and 2: in flight, no longer
    // wanted.
    let asked = fetches(&s.poll(t0));
    assert_eq!(asked, vec![(1, Source::Peer(2)), (2, Source::Peer(3))]);
    for (block, _) in &asked {
        assert!(!s.wants(*block), "block {block} is in flight");
    }
    // A fetch that failed makes it wanted again; a block held is not.
    s.on_fetch_failed(1, Source::Peer(2));
    assert!(s.wants(1));
    assert_eq!(s.on_block(2, Source::Peer(3), &data(2)), Verdict::Accepted);
    assert!(!s.wants(2));
    // A new block of another substream is wanted; a forgotten one is not.
    s.on_info(info(5));
    assert!(s.wants(5));
    s.forget_before(2);
    assert!(!s.wants(1));
}

#[test]
fn a_neighbour_that_refused_as_busy_twice_in_a_row_is_left_alone_for_a_doubling_backoff() {
    let (mut s, t0) = mesh(0);
    for n in 0..3 {
        s.on_info(info(n));
    }
    // Only neighbour 3 holds block 1.
    s.on_have(3, 1);
    s.on_upload(3, upload(100_000, 0));
    assert_eq!(fetches(&s.poll(t0)), vec![(1, Source::Peer(3))]);
    // A first refusal: asked again at its next advert.
    s.on_busy(1, Source::Peer(3));
    assert!(fetches(&s.poll(t0 + 10 * MS)).is_empty());
    s.on_upload(3, upload(100_000, 0));
    assert_eq!(fetches(&s.poll(t0 + 20 * MS)), vec![(1, Source::Peer(3))]);
    // A second in a row: not asked within 250 ms of the last poll, despite a fresh advert...
    s.on_busy(1, Source::Peer(3));
    s.on_upload(3, upload(100_000, 0));
    assert!(fetches(&s.poll(t0 + 200 * MS)).is_empty());
    // ... and asked again once it is over.
    assert_eq!(fetches(&s.poll(t0 + 280 * MS)), vec![(1, Source::Peer(3))]);
    // A third doubles it (500 ms from the last poll).
    s.on_busy(1, Source::Peer(3));
    s.on_upload(3, upload(100_000, 0));
    assert!(fetches(&s.poll(t0 + 700 * MS)).is_empty());
    assert_eq!(fetches(&s.poll(t0 + 790 * MS)), vec![(1, Source::Peer(3))]);
    // A block it serves resets the count: the next refusal is a first one again.
    assert_eq!(s.on_block(1, Source::Peer(3), &data(1)), Verdict::Accepted);
    s.on_have(3, 2);
    s.on_upload(3, upload(100_000, 0));
    assert_eq!(fetches(&s.poll(t0 + 800 * MS)), vec![(2, Source::Peer(3))]);
    s.on_busy(2, Source::Peer(3));
    s.on_upload(3, upload(100_000, 0));
    assert_eq!(fetches(&s.poll(t0 + 810 * MS)), vec![(2, Source::Peer(3))]);
}

/// `on_have_advert` is `on_have`, `on_upload` and `wants` in one: two schedulers fed the
/// same haves, adverts and forgets poll the same fetches and want the same blocks.
#[test]
fn a_have_with_its_advert_acts_as_a_have_an_upload_and_a_wants() {
    let (mut a, t0) = mesh(0);
    let (mut b, _) = mesh(0);
    for n in 0..12 {
        a.on_info(info(n));
        b.on_info(info(n));
    }
    let mut rng = crate::sim::net::Rng::new(3);
    for step in 0..400u64 {
        let peer = 2 + rng.next_u64() % 4;
        let block = rng.next_u64() % 12;
        let up = upload(rng.next_u64() % 3000, rng.next_u64() % 3000);
        a.on_have(peer, block);
        a.on_upload(peer, up);
        let wanted = a.wants(block);
        assert_eq!(b.on_have_advert(peer, block, up), wanted, "step {step}");
        if step % 50 == 49 {
            a.forget_before(step / 50);
            b.forget_before(step / 50);
        }
        if step % 7 == 0 {
            let now = t0 + Duration::from_millis(step * 10);
            assert_eq!(fetches(&a.poll(now)), fetches(&b.poll(now)), "step {step}");
        }
    }
}
