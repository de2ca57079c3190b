//! The latency path, counted rather than timed (issue 11 item 3): results of a block are
//! handed to the webhook worker from memory (no claim query, no wait for its poll), the
//! reorg watch ends by block hash without a scan of every tracked row, and first sends go to
//! the node as one JSON-RPC batch.

use std::time::Duration;

use alloy::primitives::{U256, keccak256};
use txrelay::load::{Wallet, transfer};

use crate::support::proxy::RpcProxy;
use crate::support::{
    Backend, Db, RelayProc, anvil, config, eventually, fund, hook_account, receivers, somebody,
    submit_transfer, until_mined,
};

/// Transactions per scenario, each mined in a block of its own (anvil automines).
const TXS: u64 = 8;

/// The sum of the samples of `name` whose labels contain `label` (all when empty).
fn metric(metrics: &str, name: &str, label: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// What a scenario keeps running until it ends.
struct Scenario {
    relay: RelayProc,
    anvil: txrelay::anvil::Anvil,
    _keep: Box<dyn std::any::Any>,
}

/// A relay on one anvil with one webhook receiver; submits `TXS` transactions one at a
/// time, each waited for until its `mined` notification arrived.
async fn mined_one_by_one(backend: Backend, tune: impl FnOnce(&mut txrelay::Config)) -> Scenario {
    let db = Db::new(backend);
    let (node, anvil) = anvil(31337, &[]);
    let (hooks, secrets) = receivers(&["hook"], &[]).await;
    let dir = testkit::tempdir();
    let mut config = config(&db, &[(31337, vec![anvil.url().to_owned()])]);
    config.chains[0].ws_urls = vec![anvil.url().replacen("http://", "ws://", 1)];
    tune(&mut config);
    let relay = RelayProc::start(&config, dir.path(), "a").await;
    let alice = hook_account(&relay, &anvil, &hooks, &secrets).await;
    for nonce in 0..TXS {
        let hash = submit_transfer(&relay.client, &alice, nonce).await;
        until_mined(&hooks, hash).await;
    }
    // The node, receivers, database and directory live as long as the scenario.
    Scenario {
        relay,
        anvil,
        _keep: Box::new((node, hooks, db, dir)),
    }
}

/// The relay's `finalized` chain events once there are `TXS` of them (waits up to 20 s).
async fn all_finalized(relay: &RelayProc) -> u64 {
    eventually("every result final", Duration::from_secs(20), || async {
        let metrics = relay.metrics().await;
        let finalized = metric(
            &metrics,
            "txrelay_chain_events_total",
            "result=\"finalized\"",
        );
        (finalized >= TXS).then_some(finalized)
    })
    .await
}

/// With the webhook worker's poll pushed out to ten minutes, each result still arrives (so
/// it was not waiting for a poll), and the worker made no claim query per block: the
/// follower handed the committed, already-claimed rows over. Fails when results go through
/// `claim_webhooks` (one claim per block, at least `TXS`).
async fn results_are_handed_over_without_claims(backend: Backend) {
    let Scenario { relay, _keep, .. } = mined_one_by_one(backend, |config| {
        config.delivery.poll_interval_ms = 600_000;
    })
    .await;
    let metrics = relay.metrics().await;
    let claims = metric(&metrics, "txrelay_delivery_claim_queries_total", "");
    assert!(
        claims <= 2,
        "{claims} claim queries for {TXS} results (only the start-up claim expected)\n{metrics}"
    );
    let delivered = metric(&metrics, "txrelay_deliveries_total", "result=\"delivered\"");
    assert!(delivered >= TXS, "{metrics}");
}

/// With the periodic full scan pushed out to ten minutes and a reorg watch of two blocks,
/// every result is finalized once the chain has moved past the watch: the follower ends it
/// by block hash as heads arrive. Fails when finality waits for a full scan.
async fn the_reorg_watch_ends_without_full_scans(backend: Backend) {
    let Scenario {
        relay,
        anvil,
        _keep,
    } = mined_one_by_one(backend, |config| {
        config.tracking.full_scan_interval_ms = 600_000;
        config.tracking.reorg_watch_blocks = 2;
    })
    .await;
    for _ in 0..3 {
        anvil.mine().await.unwrap();
    }
    assert_eq!(all_finalized(&relay).await, TXS);
}

/// With no reorg watch (a block is final at its own head) and the full scan pushed out to
/// ten minutes, each result is finalized in the tick that decided it: the follower writes a
/// block's results first and finalizes after them. Fails when finalizing runs before the
/// block's results (the rows are still pending then, and nothing finalizes them later but a
/// full scan).
async fn a_result_final_at_its_own_head_is_finalized_in_its_tick(backend: Backend) {
    let Scenario { relay, _keep, .. } = mined_one_by_one(backend, |config| {
        config.tracking.full_scan_interval_ms = 600_000;
        config.tracking.reorg_watch_blocks = 0;
    })
    .await;
    assert_eq!(all_finalized(&relay).await, TXS);
}

on_both_databases!(results_are_handed_over_without_claims);
on_both_databases!(the_reorg_watch_ends_without_full_scans);
on_both_databases!(a_result_final_at_its_own_head_is_finalized_in_its_tick);

/// On SQLite the relay's own checkpointer copies the write-ahead log into the database file
/// beside the writer (`txrelay_db_wal_checkpoints_total` rises), so no commit pays for it.
/// Fails without the checkpoint worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_is_checkpointed_beside_the_writer() {
    let Scenario { relay, _keep, .. } = mined_one_by_one(Backend::Sqlite, |_| {}).await;
    eventually("a checkpoint", Duration::from_secs(10), || async {
        let metrics = relay.metrics().await;
        (metric(&metrics, "txrelay_db_wal_checkpoints_total", "") > 0).then_some(())
    })
    .await;
}

/// `send_raw_many` puts several signed transactions in one HTTP request (a JSON-RPC batch)
/// and the node takes each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sends_share_one_request() {
    let (_node, anvil) = anvil(31337, &[]);
    let proxy = RpcProxy::start(anvil.url()).await;
    let alice = Wallet::random();
    fund(&anvil, &[&alice]).await;
    let raws: Vec<Vec<u8>> = (0..TXS)
        .map(|nonce| transfer(&alice, 31337, nonce, somebody(), U256::from(1), 21_000).unwrap())
        .collect();
    let client = txrelay::anvil::Anvil::at(31337, &proxy.url()).unwrap();
    let slices: Vec<&[u8]> = raws.iter().map(Vec::as_slice).collect();
    let answers = client.node().send_raw_many(&slices).await.unwrap();
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(proxy.requests_with("eth_sendRawTransaction"), 1);
    assert_eq!(proxy.calls("eth_sendRawTransaction"), TXS);
    let hashes: Vec<_> = raws.iter().map(keccak256).collect();
    let known = anvil.node().known(&hashes).await.unwrap();
    assert!(known.iter().all(|k| *k), "{known:?}");
}

/// The bench's node probe (`txrelay bench --node-receipts`) mines exactly one block of each
/// asked size, each sender's nonces continuing across blocks, and reads every receipt of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_probe_mines_one_block_of_each_size() {
    let dir = testkit::tempdir();
    let rows = txrelay::bench::node_receipts::probe(31337, &[3, 120], dir.path())
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.txs).collect::<Vec<_>>(), [3, 120]);
    for row in &rows {
        assert!(row.min_ms > 0.0 && row.min_ms <= row.median_ms, "{row:?}");
    }
}
