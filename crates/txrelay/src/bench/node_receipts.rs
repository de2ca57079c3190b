//! The node's own cost of a block's receipts, by block size: the floor under the relay's
//! "notification after inclusion" latency (issue 11 item 3), measured in the same run as the
//! relay rows.
//!
//! A fresh anvil with mining off gets `n` signed transfers, mines them as one block
//! (`evm_mine`) and answers `eth_getBlockReceipts` for it three times, read through the
//! same [`crate::node::NodeClient::block_receipts`] the head follower uses. The median per
//! size shows how the answer grows with the block: anvil builds each receipt of the block
//! separately and looks the block up again for each one (foundry's `mined_block_receipts`),
//! so its cost grows with the square of the block's transactions, where a node that keeps
//! receipts per block answers in time linear in them.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::anvil::DevChain;
use crate::load::{Wallet, transfer};

/// Senders of the probe's transfers (each block's transactions spread over them).
const SENDERS: usize = 50;
/// Timed reads of each block's receipts.
const READS: usize = 3;
/// Transactions per `eth_sendRawTransaction` batch.
const SEND_BATCH: usize = 250;

/// One block size's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeReceiptsRow {
    /// Transactions in the block (as mined).
    pub txs: usize,
    /// Median of [`READS`] reads of the block's receipts, ms.
    pub median_ms: f64,
    /// Fastest read, ms.
    pub min_ms: f64,
    /// `median_ms` per transaction of the block, microseconds.
    pub us_per_tx: f64,
}

/// Mines one block of each of `sizes` transactions on a fresh anvil (mining off, chain
/// `chain_id`, its log in `dir`) and times reading its receipts.
///
/// # Errors
/// anvil missing or failing, a transfer refused, or a mined block holding other than the
/// transactions sent (the figure would then describe another size).
pub async fn probe(
    chain_id: u64,
    sizes: &[usize],
    dir: &Path,
) -> anyhow::Result<Vec<NodeReceiptsRow>> {
    let path = dir.to_path_buf();
    let chain = tokio::task::spawn_blocking(move || {
        DevChain::start(
            chain_id,
            None,
            &["--no-mining", "--gas-limit", "300000000"],
            &path,
        )
    })
    .await?
    .context("starting anvil (run scripts/setup)")?;
    let anvil = chain.anvil();
    let node = anvil.node();
    let senders: Vec<Wallet> = (0..SENDERS).map(|_| Wallet::random()).collect();
    for wallet in &senders {
        anvil
            .set_balance(wallet.address(), U256::from(10_u64).pow(U256::from(21)))
            .await?;
    }
    let sink = Wallet::random().address();
    let mut nonces = vec![0_u64; SENDERS];
    let mut rows = Vec::with_capacity(sizes.len());
    for &size in sizes {
        let raws = sign_block(chain_id, &senders, &mut nonces, size, sink)?;
        for batch in raws.chunks(SEND_BATCH) {
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            for answer in node.send_raw_many(&refs).await? {
                answer.context("anvil refused a probe transfer")?;
            }
        }
        anvil.mine().await?;
        let (hash, mined) = latest_block(node).await?;
        if mined != size {
            bail!("the probe block holds {mined} transactions, {size} were sent");
        }
        let mut times = Vec::with_capacity(READS);
        for _ in 0..READS {
            let started = Instant::now();
            let receipts = node
                .block_receipts(hash, SEND_BATCH)
                .await?
                .context("anvil has no receipts for the block it just mined")?;
            times.push(started.elapsed());
            if receipts.len() != size {
                bail!("{} receipts for a block of {size}", receipts.len());
            }
        }
        times.sort_unstable();
        let ms = |d: Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
        let median_ms = ms(times[READS / 2]);
        rows.push(NodeReceiptsRow {
            txs: size,
            median_ms,
            min_ms: ms(times[0]),
            us_per_tx: if size > 0 {
                (median_ms * 1000.0 / size as f64 * 10.0).round() / 10.0
            } else {
                0.0
            },
        });
    }
    Ok(rows)
}

/// `size` transfers spread over `senders`, continuing each sender's nonce in `nonces`.
fn sign_block(
    chain_id: u64,
    senders: &[Wallet],
    nonces: &mut [u64],
    size: usize,
    to: Address,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut raws = Vec::with_capacity(size);
    for i in 0..size {
        let k = i % senders.len();
        raws.push(transfer(
            &senders[k],
            chain_id,
            nonces[k],
            to,
            U256::from(1),
            21_000,
        )?);
        nonces[k] += 1;
    }
    Ok(raws)
}

/// The newest block's hash and transaction count.
async fn latest_block(node: &crate::node::NodeClient) -> anyhow::Result<(B256, usize)> {
    let block: Value = node
        .call("eth_getBlockByNumber", json!(["latest", false]))
        .await?;
    let hash = block
        .get("hash")
        .and_then(Value::as_str)
        .and_then(|h| h.parse::<B256>().ok())
        .context("the latest block has no hash")?;
    let txs = block
        .get("transactions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Ok((hash, txs))
}

/// The rows as an aligned text table.
pub fn table(rows: &[NodeReceiptsRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<58} {:>6} {:>9} {:>9} {:>9}",
        "node: anvil eth_getBlockReceipts, one block of", "txs", "median ms", "min ms", "us/tx"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<58} {:>6} {:>9.1} {:>9.1} {:>9.1}",
            "", row.txs, row.median_ms, row.min_ms, row.us_per_tx
        );
    }
    let _ = write!(
        out,
        "(mining off, one evm_mine per size; read as the relay's follower reads a block)"
    );
    out
}
