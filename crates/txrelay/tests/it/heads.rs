//! Following heads: by `eth_subscribe("newHeads")` over anvil's WebSocket (on its HTTP port),
//! so a result arrives although polling is set to ten minutes; and by polling alone when the
//! WebSocket endpoint cannot be reached.

use std::time::Duration;

use alloy::primitives::{U256, keccak256};
use txrelay::event::EventStatus;
use txrelay::load::{Wallet, transfer};
use txrelay::rules::Registration;

use crate::support::{
    Backend, Db, RelayProc, anvil, config, events_for, eventually, fund, receiver, receivers,
    register, somebody,
};

/// Runs one transaction through a relay with `tracking.poll_interval_ms = poll_ms` and
/// `ws_urls` (empty: derived from the RPC URL), and waits for its `mined` notification.
async fn mined_notification(backend: Backend, poll_ms: u64, ws_urls: Vec<String>) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut config = config(&db, &[(31337, vec![anvil.url().to_owned()])]);
    config.tracking.poll_interval_ms = poll_ms;
    config.chains[0].ws_urls = ws_urls;
    let relay = RelayProc::start(&config, dir.path(), "a").await;
    let alice = Wallet::random();
    fund(&anvil, &[&alice]).await;
    register(
        &relay.client,
        "phone",
        &alice,
        Registration {
            fixed: vec![receiver(&hooks, &secrets, "hook")],
            ..Registration::default()
        },
    )
    .await;
    for nonce in 0..3 {
        let raw = transfer(&alice, 31337, nonce, somebody(), U256::from(1), 21_000).unwrap();
        let answer = relay
            .client
            .submit(31337, &raw, alice.address(), "phone", false)
            .await
            .unwrap();
        assert!(answer.accepted().is_some(), "{}", answer.body);
        let hash = keccak256(&raw);
        eventually(
            "the mined notification",
            Duration::from_secs(20),
            || async {
                events_for(&hooks, "hook", hash)
                    .iter()
                    .any(|e| e.status == EventStatus::Mined)
                    .then_some(())
            },
        )
        .await;
    }
}

async fn subscription_delivers_without_polling(backend: Backend) {
    // Ten minutes between polls: within the test's 20 s only a pushed head can move it.
    mined_notification(backend, 600_000, Vec::new()).await;
}

async fn polling_delivers_without_websocket(backend: Backend) {
    // A port nobody listens on: the subscription never comes up.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", closed.local_addr().unwrap());
    drop(closed);
    mined_notification(backend, 50, vec![url]).await;
}

on_both_databases!(subscription_delivers_without_polling);
on_both_databases!(polling_delivers_without_websocket);
