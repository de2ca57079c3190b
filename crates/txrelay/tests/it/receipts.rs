//! Receipts per block: the relay reads each new block's receipts once
//! (`eth_getBlockReceipts`, or one batch of `eth_getTransactionReceipt` from a node without
//! it) and watches delivered results for reorgs by block hash, so a batch of transactions
//! costs at most two receipt-related requests each, counted at a proxy in front of anvil.

use std::time::Duration;

use txrelay::event::EventStatus;

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, Db, RelayProc, anvil, config, events_for, eventually, hook_account, receivers,
    submit_transfer, until_mined,
};

/// Transactions in the batch.
const TXS: u64 = 30;

/// How the proxy in front of anvil misbehaves in [`batch`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    /// Forwards everything.
    Plain,
    /// Answers `eth_getBlockReceipts` with "method not found".
    WithoutBlockReceipts,
    /// Fails the first few `eth_getBlockReceipts` after the submissions start (a node past
    /// its deadline under load), with the rebroadcast timer far away: the blocks' receipts
    /// must be read again on a later tick, not skipped.
    FailingBlockReceipts,
}

/// Runs `TXS` transactions through a relay whose RPC goes through a counting proxy (the
/// head subscription straight to anvil) until each one's `mined` notification arrived;
/// answers the proxy.
async fn batch(backend: Backend, node: Node) -> RpcProxy {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let proxy = RpcProxy::start(anvil.url()).await;
    if node == Node::WithoutBlockReceipts {
        proxy.refuse("eth_getBlockReceipts");
    }
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut config = config(&db, &[(31337, vec![proxy.url()])]);
    config.chains[0].ws_urls = vec![anvil.url().replacen("http://", "ws://", 1)];
    if node == Node::FailingBlockReceipts {
        config.tracking.rebroadcast_after_ms = 600_000;
    }
    let relay = RelayProc::start(&config, dir.path(), "a").await;
    let alice = hook_account(&relay, &anvil, &hooks, &secrets).await;
    if node == Node::FailingBlockReceipts {
        proxy.fail_next("eth_getBlockReceipts", 5);
    }
    let mut hashes = Vec::new();
    for nonce in 0..TXS {
        hashes.push(submit_transfer(&relay.client, &alice, nonce).await);
    }
    eventually(
        "every mined notification",
        Duration::from_secs(60),
        || async {
            hashes
                .iter()
                .all(|hash| {
                    events_for(&hooks, "hook", *hash)
                        .iter()
                        .any(|e| e.status == EventStatus::Mined)
                })
                .then_some(())
        },
    )
    .await;
    proxy
}

fn receipt_calls(proxy: &RpcProxy) -> u64 {
    proxy.calls("eth_getBlockReceipts") + proxy.calls("eth_getTransactionReceipt")
}

async fn at_most_two_receipt_rpcs_per_transaction(backend: Backend) {
    let proxy = batch(backend, Node::Plain).await;
    assert!(proxy.calls("eth_getBlockReceipts") > 0);
    let calls = receipt_calls(&proxy);
    assert!(
        calls <= 2 * TXS,
        "{calls} receipt requests for {TXS} transactions"
    );
}

async fn per_hash_batches_without_block_receipts(backend: Backend) {
    let proxy = batch(backend, Node::WithoutBlockReceipts).await;
    // Asked once, then remembered.
    assert_eq!(proxy.calls("eth_getBlockReceipts"), 1);
    let calls = receipt_calls(&proxy);
    assert!(
        calls <= 2 * TXS,
        "{calls} receipt requests for {TXS} transactions"
    );
}

async fn failed_block_receipts_are_read_again(backend: Backend) {
    let proxy = batch(backend, Node::FailingBlockReceipts).await;
    // The five failures were answered and every transaction was still notified (in
    // `batch`), long before the 600 s rebroadcast timer could have found it by hash.
    assert!(proxy.calls("eth_getBlockReceipts") > 5);
}

on_both_databases!(at_most_two_receipt_rpcs_per_transaction);
on_both_databases!(failed_block_receipts_are_read_again);
on_both_databases!(per_hash_batches_without_block_receipts);

/// A transaction's block costs the follower the rows of that block's transactions, not a
/// read of every unfinished one: with 100 transactions stuck behind a nonce gap and the
/// periodic full scan pushed out to 10 minutes, 10 transactions mined one block each are
/// all notified, and the follower read far fewer rows than 10 blocks x 110 tracked, and
/// fewer than two per mined transaction.
async fn a_block_reads_only_its_transactions(backend: Backend) {
    const GAPPED: u64 = 100;
    const MINED: u64 = 10;
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut config = config(&db, &[(31337, vec![anvil.url().to_owned()])]);
    config.chains[0].ws_urls = vec![anvil.url().replacen("http://", "ws://", 1)];
    config.tracking.full_scan_interval_ms = 600_000;
    let relay = RelayProc::start(&config, dir.path(), "a").await;
    let alice = hook_account(&relay, &anvil, &hooks, &secrets).await;
    let submit = |nonce: u64| submit_transfer(&relay.client, &alice, nonce);
    for nonce in 1_000..1_000 + GAPPED {
        submit(nonce).await;
    }
    let mut mined = Vec::new();
    for nonce in 0..MINED {
        let hash = submit(nonce).await;
        until_mined(&hooks, hash).await;
        mined.push(hash);
    }
    let metrics = relay.metrics().await;
    let rows = |kind: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("txrelay_follower_rows_total")
                    && l.contains(&format!("result=\"{kind}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let (full, block) = (rows("full"), rows("block"));
    // The follower's head gauge has reached the blocks it decided on.
    let head: u64 = metrics
        .lines()
        .find(|l| l.starts_with("txrelay_follower_head{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(head >= MINED, "follower head {head}\n{metrics}");
    assert!(block >= MINED, "block rows {block}\n{metrics}");
    // With one confirmation a transaction is decided in its own block: the next block does
    // not read it again (it did: 22-23 rows for 10 blocks; now 12-14, the rest from
    // broadcasts waking the follower after their block was read).
    assert!(
        block < 2 * MINED,
        "block rows {block} for {MINED} one-transaction blocks"
    );
    assert!(
        full + block <= 3 * (GAPPED + MINED),
        "full {full} + block {block} rows for {MINED} blocks with {} tracked",
        GAPPED + MINED
    );
}

on_both_databases!(a_block_reads_only_its_transactions);

/// A transaction in a block is decided from that block even while the relay has not yet
/// recorded its send (the node's answer to `eth_sendRawTransaction` still on its way): with
/// the answers held 8 s, the mined notification arrives while the relay still shows no
/// broadcast, instead of a tick after the broadcaster's record.
async fn a_block_decides_a_transaction_whose_send_is_not_recorded(backend: Backend) {
    let db = Db::new(backend);
    let (_node, anvil) = anvil(31337, &[]);
    let proxy = RpcProxy::start(anvil.url()).await;
    proxy.hold_answers("eth_sendRawTransaction", Duration::from_secs(8));
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut config = config(&db, &[(31337, vec![proxy.url()])]);
    config.chains[0].ws_urls = vec![anvil.url().replacen("http://", "ws://", 1)];
    config.broadcast.rpc_timeout_ms = 20_000;
    let relay = RelayProc::start(&config, dir.path(), "a").await;
    let alice = hook_account(&relay, &anvil, &hooks, &secrets).await;
    let hash = submit_transfer(&relay.client, &alice, 0).await;
    until_mined(&hooks, hash).await;
    let view = relay.client.transaction(hash).await.unwrap().unwrap();
    assert_eq!(view["status"], "mined", "{view}");
    assert_eq!(
        view["broadcast_count"], 0,
        "decided only after the send was recorded: {view}"
    );
}

on_both_databases!(a_block_decides_a_transaction_whose_send_is_not_recorded);
