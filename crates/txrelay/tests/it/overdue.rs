//! Late transactions (issue 11 item 5), against real anvil with mining under the test's
//! control: one the node loses is sent again by the nonce watch long before the rebroadcast
//! timer; one behind a nonce gap gets one `stuck` notice and later its `mined` one; one whose
//! nonce another transaction took is `replaced`; one past its lifetime is `expired`; an
//! `Idempotency-Key` answers the first answer again and refuses another body.

use std::time::Duration;

use alloy::consensus::TxEip1559;
use alloy::primitives::{Bytes, TxKind, U256, keccak256};
use serde_json::json;
use txrelay::event::EventStatus;
use txrelay::load::transfer;

use crate::support::rig::{Rig, rig, submit, until_event};
use crate::support::{Backend, events_for, eventually, somebody, status};

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
