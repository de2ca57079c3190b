//! Two relay instances share one PostgreSQL database: they split the work with
//! `FOR UPDATE SKIP LOCKED`, no transaction is broadcast twice, no notice delivered twice.

use std::collections::BTreeSet;
use std::time::Duration;

use alloy::primitives::{B256, U256, keccak256};
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, Db, RelayProc, anvil, config, eventually, fund, receiver, receivers, register,
    somebody,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_postgres() {
    let db = Db::new(Backend::Postgres);
    let (_node, anvil) = anvil(31337, &["--block-time", "1"]);
    let proxy = RpcProxy::start(anvil.url()).await;
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut settings = config(&db, &[(31337, vec![proxy.url()])]);
    settings.instance_id = "relay-a".to_owned();
    let a = RelayProc::start(&settings, dir.path(), "a").await;
    settings.instance_id = "relay-b".to_owned();
    let b = RelayProc::start(&settings, dir.path(), "b").await;
    let wallets: Vec<Wallet> = (0..4).map(|_| Wallet::random()).collect();
    fund(&anvil, &wallets.iter().collect::<Vec<_>>()).await;
    for (i, wallet) in wallets.iter().enumerate() {
        let rules = Registration {
            fixed: vec![receiver(&hooks, &secrets, "hook")],
            ..Registration::default()
        };
        register(&a.client, &format!("device-{i}"), wallet, rules).await;
    }
    let to = somebody();
    let mut jobs = Vec::new();
    for (i, wallet) in wallets.iter().enumerate() {
        // Each account alternates between the two instances.
        let clients = [a.client.clone(), b.client.clone()];
        let wallet = wallet.clone();
        jobs.push(tokio::spawn(async move {
            let mut hashes = Vec::new();
            for nonce in 0..10_u64 {
                let raw = transfer(&wallet, 31337, nonce, to, U256::from(1), 21_000).unwrap();
                let client = &clients[usize::try_from(nonce % 2).unwrap()];
                let answer = client
                    .submit(31337, &raw, wallet.address(), &format!("device-{i}"), true)
                    .await
                    .unwrap();
                assert!(answer.accepted().is_some(), "{}", answer.body);
                hashes.push(keccak256(&raw));
            }
            hashes
        }));
    }
    let mut hashes: BTreeSet<B256> = BTreeSet::new();
    for job in jobs {
        hashes.extend(job.await.unwrap());
    }
    eventually("every notice", Duration::from_secs(60), || async {
        let delivered: BTreeSet<B256> = hooks
            .deliveries()
            .into_iter()
            .map(|d| d.event.tx_hash)
            .collect();
        hashes.iter().all(|h| delivered.contains(h)).then_some(())
    })
    .await;
    // Both instances did part of the work.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for hash in &hashes {
        assert_eq!(
            proxy.sends_of(*hash),
            1,
            "{hash}\n{}\n{}",
            a.log_tail(),
            b.log_tail()
        );
    }
    assert_eq!(hooks.stats().duplicates, 0, "a notice was delivered twice");
    assert_eq!(hooks.stats().accepted, 40);
    for relay in [&a, &b] {
        let metrics = relay.metrics().await;
        assert!(metrics.contains("txrelay_broadcasts_total"), "{metrics}");
    }
}
