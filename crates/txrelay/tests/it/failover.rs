//! Failover: a chain configured with two node URLs keeps working when either is down, and
//! a chain whose only node is down still accepts submissions, which are sent once it returns.

use std::time::Duration;

use alloy::primitives::{B256, U256, keccak256};
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, Db, RelayProc, anvil, config, events_for, eventually, fund, receiver, receivers,
    register, somebody,
};
use txrelay::client::RelayClient;

async fn send(client: &RelayClient, wallet: &Wallet, nonces: std::ops::Range<u64>) -> Vec<B256> {
    let to = somebody();
    let mut hashes = Vec::new();
    for nonce in nonces {
        let raw = transfer(wallet, 31337, nonce, to, U256::from(1), 21_000).unwrap();
        let answer = client
            .submit(31337, &raw, wallet.address(), "phone", true)
            .await
            .unwrap();
        assert!(answer.accepted().is_some(), "{}", answer.body);
        hashes.push(keccak256(&raw));
    }
    hashes
}

async fn one_of_two_nodes_down(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    // Two URLs for the same chain: each a proxy in front of the node.
    let mut first = RpcProxy::start(anvil.url()).await;
    let mut second = RpcProxy::start(anvil.url()).await;
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let relay = RelayProc::start(
        &config(&db, &[(31337, vec![first.url(), second.url()])]),
        dir.path(),
        "a",
    )
    .await;
    let alice = Wallet::random();
    fund(&anvil, &[&alice]).await;
    let rules = Registration {
        fixed: vec![receiver(&hooks, &secrets, "hook")],
        ..Registration::default()
    };
    register(&relay.client, "phone", &alice, rules).await;

    for round in 0..2 {
        // Round 0: the preferred (first) node is down; round 1: the second one is.
        let (down, up) = if round == 0 {
            (&mut first, &mut second)
        } else {
            (&mut second, &mut first)
        };
        down.stop();
        let hashes = send(&relay.client, &alice, round * 5..round * 5 + 5).await;
        eventually(
            "notices through the other node",
            Duration::from_secs(30),
            || async {
                hashes
                    .iter()
                    .all(|h| !events_for(&hooks, "hook", *h).is_empty())
                    .then_some(())
            },
        )
        .await;
        for hash in &hashes {
            assert_eq!(up.sends_of(*hash), 1, "{}", relay.log_tail());
            assert_eq!(down.sends_of(*hash), 0);
        }
        down.restart().await;
    }
    let metrics = relay.metrics().await;
    let failovers: u64 = metrics
        .lines()
        .find(|l| l.starts_with("txrelay_node_failovers_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(failovers >= 2, "{metrics}");
}

/// Every node of the chain down: submissions are still accepted (the nonce check uses the
/// relay's cached account nonce, no node call in the request path), queued durably, and each
/// is broadcast once and notified after the node returns.
async fn every_node_down_accepts_and_sends_later(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let mut only = RpcProxy::start(anvil.url()).await;
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let relay = RelayProc::start(&config(&db, &[(31337, vec![only.url()])]), dir.path(), "a").await;
    let alice = Wallet::random();
    fund(&anvil, &[&alice]).await;
    let rules = Registration {
        fixed: vec![receiver(&hooks, &secrets, "hook")],
        ..Registration::default()
    };
    register(&relay.client, "phone", &alice, rules).await;
    // One transaction while the node is up, so the relay knows the account's nonce.
    let mut hashes = send(&relay.client, &alice, 0..1).await;
    only.stop();
    hashes.extend(send(&relay.client, &alice, 1..11).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    only.restart().await;
    eventually(
        "every notice after the node returned",
        Duration::from_secs(60),
        || async {
            hashes
                .iter()
                .all(|h| !events_for(&hooks, "hook", *h).is_empty())
                .then_some(())
        },
    )
    .await;
    for hash in &hashes {
        assert_eq!(only.sends_of(*hash), 1, "{}", relay.log_tail());
    }
}

on_both_databases!(one_of_two_nodes_down);
on_both_databases!(every_node_down_accepts_and_sends_later);
