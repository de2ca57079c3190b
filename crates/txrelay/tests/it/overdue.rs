//! Late transactions (issue 11 item 5), against real anvil with mining under the test's
//! control: one the node loses is sent again by the nonce watch long before the rebroadcast
//! timer; one behind a nonce gap gets one `stuck` notice and later its `mined` one; one whose
//! nonce another transaction took is `replaced`; one past its lifetime is `expired`; an
//! `Idempotency-Key` answers the first answer again and refuses another body; at
//! `tracking.max_tracked` unfinished transactions a new one gets 503 `backlog_full` until some
//! are final.

use std::time::Duration;

use alloy::consensus::TxEip1559;
use alloy::primitives::{B256, Bytes, TxKind, U256, keccak256};
use serde_json::json;
use txrelay::event::EventStatus;
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, Db, RelayProc, anvil, config, events_for, eventually, fund, receiver, receivers,
    register, somebody, status,
};

/// Submits `raw` from `wallet` as `device` and answers its hash.
async fn submit(relay: &RelayProc, wallet: &Wallet, device: &str, raw: &[u8]) -> B256 {
    let answer = relay
        .client
        .submit(31337, raw, wallet.address(), device, false)
        .await
        .unwrap();
    assert!(answer.accepted().is_some(), "{}", answer.body);
    keccak256(raw)
}

/// Waits for an event of `kind` for `hash` at receiver `hook`.
async fn until_event(
    hooks: &txrelay::receiver::ReceiverServer,
    hash: B256,
    kind: EventStatus,
) -> txrelay::event::Event {
    eventually(
        &format!("a {} notice", kind.as_str()),
        Duration::from_secs(30),
        || async {
            events_for(hooks, "hook", hash)
                .into_iter()
                .find(|e| e.status == kind)
        },
    )
    .await
}

/// A relay on a non-mining anvil (behind a counting proxy) with two funded wallets, each
/// registered as its own device whose one receiver is `hooks`' webhook `hook`.
struct Rig {
    relay: RelayProc,
    proxy: RpcProxy,
    anvil: txrelay::anvil::Anvil,
    hooks: txrelay::receiver::ReceiverServer,
    wallets: [Wallet; 2],
    _node: testkit::RunningPeer,
    _dir: tempfile::TempDir,
    _db: Db,
}

async fn rig(backend: Backend, devices: [&str; 2], tune: impl FnOnce(&mut txrelay::Config)) -> Rig {
    let db = Db::new(backend);
    let (node, anvil) = anvil(31337, &["--no-mining"]);
    let proxy = RpcProxy::start(anvil.url()).await;
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut settings = config(&db, &[(31337, vec![proxy.url()])]);
    settings.tracking.full_scan_interval_ms = 200;
    tune(&mut settings);
    let relay = RelayProc::start(&settings, dir.path(), "a").await;
    let wallets = [Wallet::random(), Wallet::random()];
    fund(&anvil, &[&wallets[0], &wallets[1]]).await;
    for (device, wallet) in devices.iter().zip(&wallets) {
        let rules = Registration {
            fixed: vec![receiver(&hooks, &secrets, "hook")],
            ..Registration::default()
        };
        register(&relay.client, device, wallet, rules).await;
    }
    Rig {
        relay,
        proxy,
        anvil,
        hooks,
        wallets,
        _node: node,
        _dir: dir,
        _db: db,
    }
}

async fn lost_and_gapped_transactions(backend: Backend) {
    let Rig {
        relay,
        proxy,
        anvil,
        hooks,
        wallets: [alice, bob],
        // Bound, not `..`: the node, the relay's directory and the database live to the end.
        _node,
        _dir,
        _db,
    } = rig(backend, ["a", "b"], |settings| {
        // The rebroadcast timer cannot be what resends within this test.
        settings.tracking.rebroadcast_after_ms = 600_000;
        settings.tracking.nonce_watch_after_ms = 300;
        settings.tracking.stuck_after_blocks = 2;
    })
    .await;
    let one = U256::from(1);
    let lost = submit(
        &relay,
        &alice,
        "a",
        &transfer(&alice, 31337, 0, somebody(), one, 21_000).unwrap(),
    )
    .await;
    let gapped = submit(
        &relay,
        &bob,
        "b",
        &transfer(&bob, 31337, 1, somebody(), one, 21_000).unwrap(),
    )
    .await;
    eventually("all broadcast", Duration::from_secs(20), || async {
        [lost, gapped]
            .iter()
            .all(|h| proxy.sends_of(*h) == 1)
            .then_some(())
    })
    .await;

    // The node loses alice's transaction: the watch sends it again within about a second.
    anvil.drop_transaction(lost).await.unwrap();
    eventually(
        "the lost one sent again",
        Duration::from_secs(10),
        || async { (proxy.sends_of(lost) == 2).then_some(()) },
    )
    .await;

    // Bob's nonce 0 was never sent: after two blocks one `stuck` notice, and still pending.
    for _ in 0..4 {
        anvil.mine().await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let stuck = until_event(&hooks, gapped, EventStatus::Stuck).await;
    assert_eq!(stuck.error.as_deref(), Some("nonce_gap"), "{stuck:?}");
    assert_eq!(
        status(&relay.client, gapped).await.as_deref(),
        Some("pending")
    );
    until_event(&hooks, lost, EventStatus::Mined).await;
    // The gap filled: both of bob's are mined, and the stuck notice was made once.
    let filler = submit(
        &relay,
        &bob,
        "b",
        &transfer(&bob, 31337, 0, somebody(), one, 21_000).unwrap(),
    )
    .await;
    eventually("bob's sent", Duration::from_secs(20), || async {
        (proxy.sends_of(filler) == 1).then_some(())
    })
    .await;
    anvil.mine().await.unwrap();
    until_event(&hooks, gapped, EventStatus::Mined).await;
    until_event(&hooks, filler, EventStatus::Mined).await;
    let stuck_notices = events_for(&hooks, "hook", gapped)
        .iter()
        .filter(|e| e.status == EventStatus::Stuck)
        .count();
    assert_eq!(stuck_notices, 1);

    let metrics = relay.metrics().await;
    assert!(metrics.contains("result=\"stuck\""), "{metrics}");
}

on_both_databases!(lost_and_gapped_transactions);

async fn replaced_and_expired_transactions_and_idempotency_keys(backend: Backend) {
    let Rig {
        relay,
        proxy,
        anvil,
        hooks,
        wallets: [carol, dave],
        // Bound, not `..`: the node, the relay's directory and the database live to the end.
        _node,
        _dir,
        _db,
    } = rig(backend, ["c", "d"], |settings| {
        settings.tracking.lifetime_seconds = 4;
        settings.tracking.nonce_watch_after_ms = 1_500;
    })
    .await;
    let taken = submit(
        &relay,
        &carol,
        "c",
        &transfer(&carol, 31337, 0, somebody(), U256::from(1), 21_000).unwrap(),
    )
    .await;
    eventually("carol's broadcast", Duration::from_secs(20), || async {
        (proxy.sends_of(taken) == 1).then_some(())
    })
    .await;
    // Carol replaces her pending transaction with a pricier one sent straight to the node,
    // and it is mined (well within the watch's 1.5 s quiet time after her first broadcast).
    let replacement = carol
        .sign_1559(TxEip1559 {
            chain_id: 31337,
            nonce: 0,
            gas_limit: 21_000,
            max_fee_per_gas: 3 * txrelay::load::MAX_FEE_PER_GAS,
            max_priority_fee_per_gas: 3 * txrelay::load::MAX_FEE_PER_GAS,
            to: TxKind::Call(somebody()),
            value: U256::from(2),
            access_list: Default::default(),
            input: Bytes::new(),
        })
        .unwrap();
    anvil.node().send_raw(&replacement).await.unwrap();
    anvil.mine().await.unwrap();
    let replaced = until_event(&hooks, taken, EventStatus::Replaced).await;
    // The follower has the replacement's block in its window: it is named.
    assert_eq!(
        replaced.replaced_by,
        Some(keccak256(&replacement)),
        "{replaced:?}"
    );
    let view = relay.client.transaction(taken).await.unwrap().unwrap();
    assert_eq!(view["status"], "replaced", "{view}");

    // Same key and body: the first answer again; another body: 409.
    let raw = transfer(&dave, 31337, 7, somebody(), U256::from(1), 21_000).unwrap();
    let body = json!({
        "raw": format!("0x{}", hex::encode(&raw)),
        "sender": dave.address(),
        "device": "d",
    });
    let first = relay
        .client
        .submit_with_key(31337, &body, Some("order-17"))
        .await
        .unwrap();
    assert_eq!(first.status, 202, "{}", first.body);
    let again = relay
        .client
        .submit_with_key(31337, &body, Some("order-17"))
        .await
        .unwrap();
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    let other = transfer(&dave, 31337, 8, somebody(), U256::from(1), 21_000).unwrap();
    let mut changed = body.clone();
    changed["raw"] = json!(format!("0x{}", hex::encode(&other)));
    let reused = relay
        .client
        .submit_with_key(31337, &changed, Some("order-17"))
        .await
        .unwrap();
    assert_eq!(reused.status, 409, "{}", reused.body);
    assert_eq!(reused.reason(), Some("idempotency_key_reused"));

    // Nonce 7 never becomes minable: past its 4 s lifetime it is expired, once.
    let hash = keccak256(&raw);
    let expired = until_event(&hooks, hash, EventStatus::Expired).await;
    assert_eq!(expired.error.as_deref(), Some("lifetime_exceeded"));
    assert_eq!(
        status(&relay.client, hash).await.as_deref(),
        Some("expired")
    );
    let sends = proxy.sends_of(hash);
    anvil.mine().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        proxy.sends_of(hash),
        sends,
        "an expired transaction is not sent again"
    );
    let notices = events_for(&hooks, "hook", hash);
    assert_eq!(notices.len(), 1, "{notices:?}");
    let metrics = relay.metrics().await;
    for outcome in ["replaced", "expired"] {
        assert!(
            metrics.contains(&format!("result=\"{outcome}\"")),
            "{outcome}: {metrics}"
        );
    }
}

on_both_databases!(replaced_and_expired_transactions_and_idempotency_keys);

async fn the_tracked_bound_refuses_new_transactions_until_some_are_final(backend: Backend) {
    let Rig {
        relay,
        proxy,
        anvil,
        wallets: [erin, frank],
        // Bound, not `..`: the node, the relay's directory and the database live to the end.
        hooks: _hooks,
        _node,
        _dir,
        _db,
    } = rig(backend, ["e", "f"], |settings| {
        settings.tracking.max_tracked = 2;
        settings.tracking.reorg_watch_blocks = 0;
    })
    .await;
    let one = U256::from(1);
    let first = submit(
        &relay,
        &erin,
        "e",
        &transfer(&erin, 31337, 0, somebody(), one, 21_000).unwrap(),
    )
    .await;
    submit(
        &relay,
        &erin,
        "e",
        &transfer(&erin, 31337, 1, somebody(), one, 21_000).unwrap(),
    )
    .await;
    // Two unfinished: a third is refused at once (counted on acceptance, not only by the
    // once-a-second sample), with a hint to retry.
    let third = transfer(&frank, 31337, 0, somebody(), one, 21_000).unwrap();
    let refused = relay
        .client
        .submit(31337, &third, frank.address(), "f", false)
        .await
        .unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.reason(), Some("backlog_full"));
    eventually("the gauges sampled", Duration::from_secs(10), || async {
        let metrics = relay.metrics().await;
        (metrics.contains("txrelay_tracked_transactions 2")
            && metrics.contains("txrelay_oldest_pending_seconds{kind=\"transaction\"}"))
        .then_some(())
    })
    .await;
    // Mined and final (no reorg watch): the sample frees room and the third is accepted.
    eventually("both broadcast", Duration::from_secs(20), || async {
        (proxy.sends_of(first) == 1).then_some(())
    })
    .await;
    anvil.mine().await.unwrap();
    eventually("room again", Duration::from_secs(20), || async {
        let answer = relay
            .client
            .submit(31337, &third, frank.address(), "f", false)
            .await
            .unwrap();
        answer.accepted().map(|_| ())
    })
    .await;
}

on_both_databases!(the_tracked_bound_refuses_new_transactions_until_some_are_final);
