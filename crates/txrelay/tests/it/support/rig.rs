//! The rig of the scenarios that control mining: a relay on a non-mining anvil behind a
//! counting proxy, a webhook receiver and two funded wallets, each registered as its own
//! device ([`rig`]), with helpers to submit and to wait for a notice.

use std::time::Duration;

use alloy::primitives::{B256, keccak256};
use txrelay::event::EventStatus;
use txrelay::load::Wallet;
use txrelay::rules::Registration;

use super::proxy::RpcProxy;
use super::{
    Backend, Db, RelayProc, anvil, config, events_for, eventually, fund, receiver, receivers,
    register,
};

/// Submits `raw` from `wallet` as `device` and answers its hash.
pub(crate) async fn submit(relay: &RelayProc, wallet: &Wallet, device: &str, raw: &[u8]) -> B256 {
    let answer = relay
        .client
        .submit(31337, raw, wallet.address(), device, false)
        .await
        .unwrap();
    assert!(answer.accepted().is_some(), "{}", answer.body);
    keccak256(raw)
}

/// Waits for an event of `kind` for `hash` at receiver `hook`.
pub(crate) async fn until_event(
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
pub(crate) struct Rig {
    pub(crate) relay: RelayProc,
    pub(crate) proxy: RpcProxy,
    pub(crate) anvil: txrelay::anvil::Anvil,
    pub(crate) hooks: txrelay::receiver::ReceiverServer,
    pub(crate) wallets: [Wallet; 2],
    pub(crate) _node: testkit::RunningPeer,
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) _db: Db,
}

pub(crate) async fn rig(
    backend: Backend,
    devices: [&str; 2],
    tune: impl FnOnce(&mut txrelay::Config),
) -> Rig {
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
