//! Following heads: by `eth_subscribe("newHeads")` over anvil's WebSocket (on its HTTP port),
//! so a result arrives although polling is set to ten minutes; and by polling alone when the
//! WebSocket endpoint cannot be reached.

use crate::support::{
    Backend, Db, RelayProc, anvil, config, hook_account, receivers, submit_transfer, until_mined,
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
    let alice = hook_account(&relay, &anvil, &hooks, &secrets).await;
    for nonce in 0..3 {
        let hash = submit_transfer(&relay.client, &alice, nonce).await;
        until_mined(&hooks, hash).await;
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
