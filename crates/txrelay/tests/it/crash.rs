//! Durability: the relay is killed with SIGKILL in the middle of a load and restarted on the
//! same database; every accepted transaction is mined and notified, none is broadcast twice.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{B256, U256, keccak256};
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, Db, RelayProc, anvil, config, eventually, fund, receiver, receivers, register,
    somebody,
};

const WALLETS: usize = 3;
const PER_WALLET: u64 = 20;

async fn kill_mid_load_and_restart(backend: Backend) {
    let db = Db::new(backend);
    // Blocks every second: at the kill, transactions and notifications are in flight.
    let (_node, anvil) = anvil(31337, &["--block-time", "1"]);
    let proxy = RpcProxy::start(anvil.url()).await;
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut relay =
        RelayProc::start(&config(&db, &[(31337, vec![proxy.url()])]), dir.path(), "a").await;
    let wallets: Vec<Wallet> = (0..WALLETS).map(|_| Wallet::random()).collect();
    fund(&anvil, &wallets.iter().collect::<Vec<_>>()).await;
    for (i, wallet) in wallets.iter().enumerate() {
        let rules = Registration {
            fixed: vec![receiver(&hooks, &secrets, "hook")],
            ..Registration::default()
        };
        register(&relay.client, &format!("device-{i}"), wallet, rules).await;
    }

    // One submitter per account, in nonce order, retrying each transaction until it gets a
    // 202 (as a device does when the relay is unreachable).
    let accepted: Arc<Mutex<BTreeSet<B256>>> = Arc::default();
    let client = relay.client.clone();
    let mut submitters = Vec::new();
    for (i, wallet) in wallets.iter().enumerate() {
        let (wallet, client, accepted) = (wallet.clone(), client.clone(), Arc::clone(&accepted));
        submitters.push(tokio::spawn(async move {
            let to = somebody();
            for nonce in 0..PER_WALLET {
                let raw = transfer(&wallet, 31337, nonce, to, U256::from(1), 21_000).unwrap();
                loop {
                    match client
                        .submit(31337, &raw, wallet.address(), &format!("device-{i}"), true)
                        .await
                    {
                        Ok(answer) if answer.accepted().is_some() => break,
                        Ok(answer) => assert!(answer.status >= 500, "refused: {}", answer.body),
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                accepted.lock().unwrap().insert(keccak256(&raw));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }));
    }
    let total = WALLETS * usize::try_from(PER_WALLET).unwrap();
    eventually(
        "half the load accepted",
        Duration::from_secs(60),
        || async { (accepted.lock().unwrap().len() >= total / 2).then_some(()) },
    )
    .await;
    // Work in flight at the kill: accepted transactions whose notice has not arrived.
    let at_kill = accepted.lock().unwrap().len();
    assert!(
        hooks.deliveries().len() < at_kill,
        "nothing was in flight at the kill"
    );
    relay.crash_and_restart();
    for submitter in submitters {
        submitter.await.unwrap();
    }
    let hashes = accepted.lock().unwrap().clone();
    assert_eq!(hashes.len(), total);

    eventually(
        "every notice after the restart",
        Duration::from_secs(90),
        || async {
            let delivered: BTreeSet<B256> = hooks
                .deliveries()
                .into_iter()
                .map(|d| d.event.tx_hash)
                .collect();
            hashes.iter().all(|h| delivered.contains(h)).then_some(())
        },
    )
    .await;
    for hash in &hashes {
        let view = relay.client.transaction(*hash).await.unwrap().unwrap();
        assert_eq!(view["status"], "mined", "{view}");
        assert_eq!(
            proxy.sends_of(*hash),
            1,
            "{hash} broadcast twice\n{}",
            relay.log_tail()
        );
    }
    assert_eq!(hooks.stats().bad_signatures, 0);
}

on_both_databases!(kill_mid_load_and_restart);
