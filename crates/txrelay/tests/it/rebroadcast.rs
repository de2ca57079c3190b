//! A transaction dropped from the node's pool is sent again with the same bytes; one that
//! is still pending is left alone.

use std::time::Duration;

use alloy::primitives::{U256, keccak256};
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, Db, RelayProc, anvil, config, events_for, eventually, fund, receiver, receivers,
    register, somebody,
};

async fn dropped_transaction_is_rebroadcast(backend: Backend) {
    let db = Db::new(backend);
    // No mining until the test says so: transactions stay in the pool.
    let (_node, anvil) = anvil(31337, &["--no-mining"]);
    let proxy = RpcProxy::start(anvil.url()).await;
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut settings = config(&db, &[(31337, vec![proxy.url()])]);
    settings.tracking.rebroadcast_after_ms = 400;
    let relay = RelayProc::start(&settings, dir.path(), "a").await;
    let (alice, carol) = (Wallet::random(), Wallet::random());
    fund(&anvil, &[&alice, &carol]).await;
    for (device, wallet) in [("phone", &alice), ("tablet", &carol)] {
        let rules = Registration {
            fixed: vec![receiver(&hooks, &secrets, "hook")],
            ..Registration::default()
        };
        register(&relay.client, device, wallet, rules).await;
    }
    let dropped = transfer(&alice, 31337, 0, somebody(), U256::from(1), 21_000).unwrap();
    let kept = transfer(&carol, 31337, 0, somebody(), U256::from(1), 21_000).unwrap();
    let (dropped_hash, kept_hash) = (keccak256(&dropped), keccak256(&kept));
    for (raw, wallet, device) in [(&dropped, &alice, "phone"), (&kept, &carol, "tablet")] {
        let answer = relay
            .client
            .submit(31337, raw, wallet.address(), device, true)
            .await
            .unwrap();
        assert!(answer.accepted().is_some(), "{}", answer.body);
    }
    eventually("both broadcast", Duration::from_secs(20), || async {
        (proxy.sends_of(dropped_hash) == 1 && proxy.sends_of(kept_hash) == 1).then_some(())
    })
    .await;
    anvil.drop_transaction(dropped_hash).await.unwrap();
    eventually(
        "the dropped one sent again",
        Duration::from_secs(20),
        || async { (proxy.sends_of(dropped_hash) == 2).then_some(()) },
    )
    .await;
    // Several more timeouts pass: the one still in the pool is not resent.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(proxy.sends_of(kept_hash), 1, "{}", relay.log_tail());
    anvil.mine().await.unwrap();
    eventually(
        "both mined and notified",
        Duration::from_secs(20),
        || async {
            (!events_for(&hooks, "hook", dropped_hash).is_empty()
                && !events_for(&hooks, "hook", kept_hash).is_empty())
            .then_some(())
        },
    )
    .await;
    let view = relay
        .client
        .transaction(dropped_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view["status"], "mined");
    assert_eq!(view["broadcast_count"], 2);
    assert_eq!(proxy.sends_of(dropped_hash), 2);
}

on_both_databases!(dropped_transaction_is_rebroadcast);
