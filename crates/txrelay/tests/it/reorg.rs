//! A reorg that removes a delivered transaction is detected and reported; the transaction is
//! sent again (same bytes) and its new result delivered.

use std::time::Duration;

use alloy::primitives::{U256, keccak256};
use txrelay::event::{Event, EventStatus};
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, Db, RelayProc, anvil, config, events_for, eventually, fund, receiver, receivers,
    register, somebody,
};

async fn reorg_is_reported(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let proxy = RpcProxy::start(anvil.url()).await;
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut settings = config(&db, &[(31337, vec![proxy.url()])]);
    settings.tracking.reorg_watch_blocks = 50;
    let relay = RelayProc::start(&settings, dir.path(), "a").await;
    let alice = Wallet::random();
    fund(&anvil, &[&alice]).await;
    let rules = Registration {
        fixed: vec![receiver(&hooks, &secrets, "hook")],
        ..Registration::default()
    };
    register(&relay.client, "phone", &alice, rules).await;
    let raw = transfer(&alice, 31337, 0, somebody(), U256::from(1), 21_000).unwrap();
    let hash = keccak256(&raw);
    let answer = relay
        .client
        .submit(31337, &raw, alice.address(), "phone", true)
        .await
        .unwrap();
    assert!(answer.accepted().is_some(), "{}", answer.body);
    let first: Event = eventually("the first notice", Duration::from_secs(20), || async {
        events_for(&hooks, "hook", hash).into_iter().next()
    })
    .await;
    assert_eq!(first.status, EventStatus::Mined);
    let block = first.block_number.unwrap();
    let head = anvil.block_number().await.unwrap();
    // Replace the including block (and any after it) with empty ones.
    anvil.reorg(head - block + 1).await.unwrap();
    let events = eventually(
        "the reorg and the new result",
        Duration::from_secs(30),
        || async {
            let events = events_for(&hooks, "hook", hash);
            (events.len() >= 3).then_some(events)
        },
    )
    .await;
    let reorged = events
        .iter()
        .find(|e| e.status == EventStatus::Reorged)
        .unwrap_or_else(|| panic!("no reorg notice: {events:?}"));
    assert_eq!(reorged.block_hash, first.block_hash);
    assert_eq!(reorged.block_number, first.block_number);
    let again = events
        .iter()
        .find(|e| e.status == EventStatus::Mined && e.block_hash != first.block_hash)
        .unwrap_or_else(|| panic!("no new result: {events:?}"));
    let distinct: std::collections::BTreeSet<_> =
        events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(distinct.len(), 3);
    let view = relay.client.transaction(hash).await.unwrap().unwrap();
    assert_eq!(view["status"], "mined");
    assert_eq!(view["reorgs"], 1);
    assert_eq!(
        view["receipt"]["block_hash"],
        format!("{:#x}", again.block_hash.unwrap())
    );
    assert_eq!(proxy.sends_of(hash), 2, "{}", relay.log_tail());
}

on_both_databases!(reorg_is_reported);
