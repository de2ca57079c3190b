//! `txrelay bench`: one anvil chain, one relay (SQLite) and a webhook receiver on 127.0.0.1,
//! measured in one run against the peer "submit straight to anvil and poll for receipts".
//!
//! Rows:
//! - submission throughput: `eth_sendRawTransaction` to anvil vs `POST /v1/chains/{id}/
//!   transactions` to the relay (validation, nonce lookup, idempotency, durable outbox, 202);
//! - end to end: from the first submission until every receipt is seen by a 50 ms poller
//!   (direct) vs until every signed webhook has arrived (relay);
//! - latency after inclusion: from the including block first being seen (a 10 ms observer)
//!   to the receipt seen by the poller (direct) or the webhook arriving (relay), p50 and p99.
//!
//! - sustained (with [`BenchOptions::sustain`]): a fixed offered rate for a fixed time, with
//!   the backlog at the start and end of the offer ([`sustain`]);
//! - the node's own `eth_getBlockReceipts` time by block size ([`node_receipts`]), the floor
//!   under the latency rows.
//!
//! All processes share this machine's cores; the figures are for that mix.

pub mod node_receipts;
pub mod sustain;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget};
use serde::Serialize;
use serde_json::json;
use tracing::info;

use crate::anvil::{Anvil, BlockObserver, DevChain, percentile_ms};
use crate::client::RelayClient;
use crate::config::{AccountMode, ChainConfig, Config};
use crate::load::{Wallet, transfer};
use crate::receiver::ReceiverServer;
use crate::rules::{Receiver, Registration};

/// Chain id of the benchmark chain.
pub const CHAIN_ID: u64 = 31337;
/// Accounts per side.
pub const ACCOUNTS: usize = 20;

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Transactions per side.
    pub txs: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// anvil's block interval (its `--block-time`).
    pub block_time: Duration,
    /// Show progress on stderr.
    pub progress: bool,
    /// The sustained row: offered rate and seconds (`None`: no such row). With `txs == 0`
    /// only this row runs.
    pub sustain: Option<sustain::Sustain>,
}

/// One measured row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Transactions.
    pub txs: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Transactions per second.
    pub tx_per_s: f64,
    /// Median latency after inclusion, ms (end-to-end rows).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency after inclusion, ms.
    pub p99_ms: Option<f64>,
}

/// The benchmark's rows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchReport {
    /// Requests in flight.
    pub concurrency: usize,
    /// anvil's block interval, seconds.
    pub block_time_s: f64,
    /// The rows.
    pub rows: Vec<Row>,
    /// Receipt-related JSON-RPC requests the relay made per relayed transaction
    /// (`eth_getBlockReceipts` and `eth_getTransactionReceipt` entries; goal <= 2).
    pub receipt_rpcs_per_tx: f64,
    /// The sustained row, when asked for.
    pub sustained: Option<sustain::SustainReport>,
}

impl BenchReport {
    /// The rows as an aligned text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<58} {:>6} {:>8} {:>9} {:>9} {:>9}",
            "measurement", "txs", "seconds", "tx/s", "p50 ms", "p99 ms"
        );
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        for row in &self.rows {
            let _ = writeln!(
                out,
                "{:<58} {:>6} {:>8.2} {:>9.1} {:>9} {:>9}",
                row.name,
                row.txs,
                row.seconds,
                row.tx_per_s,
                cell(row.p50_ms),
                cell(row.p99_ms)
            );
        }
        if !self.rows.is_empty() {
            let _ = writeln!(
                out,
                "relay: receipt-related RPCs per transaction: {:.2}",
                self.receipt_rpcs_per_tx
            );
        }
        if let Some(s) = &self.sustained {
            let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
            let _ = writeln!(
                out,
                "relay sustained: offered {:.0} tx/s for {:.1} s: accepted {:.1} tx/s, delivered {:.1} tx/s \
                 in the window, backlog {} -> {} (peak {}; every {} s: {}), drained {} s after, offer slots \
                 delayed {}, refused {}{}, notification after inclusion p50 {} / p99 {} ms",
                s.offered_per_s,
                s.seconds,
                s.accepted_per_s,
                s.delivered_per_s,
                s.backlog_start,
                s.backlog_end,
                s.backlog_peak,
                sustain::SAMPLE_EVERY.as_secs(),
                s.backlog_samples
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                cell(s.drained_after_s),
                s.not_offered,
                s.refused,
                if s.refusals.is_empty() {
                    String::new()
                } else {
                    let why: Vec<String> = s
                        .refusals
                        .iter()
                        .map(|(why, n)| format!("{why}: {n}"))
                        .collect();
                    format!(" ({})", why.join(", "))
                },
                cell(s.p50_ms),
                cell(s.p99_ms)
            );
        }
        let _ = write!(
            out,
            "({} requests in flight; a block every {} s; latency = from the including block first seen to the receipt/notification)",
            self.concurrency, self.block_time_s
        );
        out
    }
}

/// What `txrelay bench` prints: the node probe and one report per run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchOutput {
    /// One report per `--txs` count, then the sustained run.
    pub runs: Vec<BenchReport>,
    /// The node probe ([`node_receipts::probe`]); empty when skipped.
    pub node_receipts: Vec<node_receipts::NodeReceiptsRow>,
}

impl BenchOutput {
    /// The probe's table, then each run's, separated by blank lines.
    pub fn table(&self) -> String {
        let mut parts = Vec::new();
        if !self.node_receipts.is_empty() {
            parts.push(node_receipts::table(&self.node_receipts));
        }
        parts.extend(self.runs.iter().map(BenchReport::table));
        parts.join("\n\n")
    }
}

/// Longest wait for the relay's follower to catch up after the direct rows.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Waits (at most [`CATCH_UP`]) until the relay's head follower has read and decided on
/// every block anvil has now: the direct rows' blocks (thousands of other senders'
/// transactions, as on a busy chain) are read by the relay too, and its own rows start with
/// a follower that is not still reading them.
///
/// # Errors
/// anvil's error, or the follower still behind after [`CATCH_UP`].
async fn catch_up(running: &crate::relay::Running, anvil: &Anvil) -> anyhow::Result<()> {
    let head = anvil.block_number().await?;
    let started = Instant::now();
    while running.follower_head(CHAIN_ID) < head {
        if started.elapsed() > CATCH_UP {
            bail!(
                "the relay's follower is at block {} of {head} after {CATCH_UP:?}",
                running.follower_head(CHAIN_ID)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    info!(
        head,
        waited_ms = started.elapsed().as_millis(),
        "relay follower caught up"
    );
    Ok(())
}

fn row(name: &str, txs: usize, elapsed: Duration, latency: Option<&[Duration]>) -> Row {
    let seconds = elapsed.as_secs_f64();
    Row {
        name: name.to_owned(),
        txs,
        seconds: (seconds * 100.0).round() / 100.0,
        tx_per_s: if seconds > 0.0 {
            ((txs as f64 / seconds) * 10.0).round() / 10.0
        } else {
            0.0
        },
        p50_ms: latency.map(|l| percentile_ms(l, 50.0)),
        p99_ms: latency.map(|l| percentile_ms(l, 99.0)),
    }
}

fn spinner(progress: bool, len: usize, message: &'static str) -> ProgressBar {
    let target = if progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    bar.set_message(message);
    bar
}

/// Signs `txs` transfers from `ACCOUNTS` fresh accounts, nonce-major so each account's
/// nonces go out in order.
fn sign_load(
    wallets: &[Wallet],
    txs: usize,
    to: Address,
) -> anyhow::Result<Vec<(Address, Vec<u8>)>> {
    let mut load = Vec::with_capacity(txs);
    let mut nonce = 0_u64;
    while load.len() < txs {
        for wallet in wallets {
            if load.len() == txs {
                break;
            }
            load.push((
                wallet.address(),
                transfer(wallet, CHAIN_ID, nonce, to, U256::from(1), 21_000)?,
            ));
        }
        nonce += 1;
    }
    Ok(load)
}

/// Runs the benchmark.
///
/// # Errors
/// When a component cannot be started (anvil missing: run `scripts/setup`) or a submission
/// fails.
#[expect(clippy::too_many_lines, reason = "one scripted measurement")]
pub async fn run(options: &BenchOptions) -> anyhow::Result<BenchReport> {
    let dir = tempfile::Builder::new()
        .prefix("txrelay-bench-")
        .tempdir()
        .context("creating a work directory")?;
    let path = dir.path().to_path_buf();
    let block_time = options.block_time;
    let chain = tokio::task::spawn_blocking(move || {
        DevChain::start(
            CHAIN_ID,
            Some(block_time),
            &["--gas-limit", "300000000"],
            &path,
        )
    })
    .await?
    .context("starting anvil (run scripts/setup)")?;
    let anvil = chain.anvil().clone();
    let observer = BlockObserver::start(&anvil);
    let secret = crate::rules::generate_standard_secret();
    let receivers = ReceiverServer::start(
        0,
        BTreeMap::from([("bench".to_owned(), secret.clone())]),
        HashSet::new(),
    )
    .await?;
    let mut config = Config {
        listen: "127.0.0.1:0".parse()?,
        ops_listen: "127.0.0.1:0".parse()?,
        instance_id: "bench".to_owned(),
        chains: vec![ChainConfig {
            chain_id: CHAIN_ID,
            rpc_urls: vec![chain.url().to_owned()],
            ..ChainConfig::default()
        }],
        ..Config::default()
    };
    config.secrets.key = hex::encode(rand::random::<[u8; 32]>());
    config.outbound.allow = vec!["127.0.0.1/32".to_owned()];
    config.limits.requests_per_second = 1_000_000;
    config.limits.burst = 1_000_000;
    config.database.url = format!("sqlite://{}", dir.path().join("bench.db").display());
    config.accounts.mode = AccountMode::Open;
    config.tracking.poll_interval_ms = 50;
    config.delivery.poll_interval_ms = 50;
    let running = crate::relay::start(config.validate()?, Arc::new(svckit::SystemClock)).await?;
    let request = crate::api::NewKeyRequest {
        tenant: "bench".to_owned(),
        admin: false,
        rate_per_second: None,
        burst: None,
        label: None,
    };
    let (key, token) = crate::api::new_key(&request, crate::core::now_ms(&svckit::SystemClock));
    running.store().create_key(&key).await?;
    let client = RelayClient::new(&running.url("")).with_token(&token);
    client
        .register(
            "bench",
            &Registration {
                fixed: vec![Receiver {
                    url: receivers.url("bench").parse()?,
                    secret: Some(svckit::redact::Secret::new(secret)),
                    scheme: crate::rules::SignatureScheme::Standard,
                }],
                ..Registration::default()
            },
        )
        .await?;

    let sink = Wallet::random().address();
    let direct_wallets: Vec<Wallet> = (0..ACCOUNTS).map(|_| Wallet::random()).collect();
    let relay_wallets: Vec<Wallet> = (0..ACCOUNTS).map(|_| Wallet::random()).collect();
    for wallet in direct_wallets.iter().chain(&relay_wallets) {
        anvil
            .set_balance(wallet.address(), U256::from(10_u64).pow(U256::from(21)))
            .await?;
    }
    let direct_load = sign_load(&direct_wallets, options.txs, sink)?;
    let relay_load = sign_load(&relay_wallets, options.txs, sink)?;
    info!(
        txs = options.txs,
        concurrency = options.concurrency,
        "load signed"
    );

    // Direct: submit, then poll receipts every 50 ms.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()?;
    let bar = spinner(options.progress, options.txs, "direct submit");
    let started = Instant::now();
    let results = futures::stream::iter(direct_load.iter().map(|(_, raw)| {
        let (http, url, bar) = (http.clone(), chain.url().to_owned(), bar.clone());
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                          "params": [format!("0x{}", hex::encode(raw))]})
        .to_string();
        async move {
            let answer = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?
                .bytes()
                .await?;
            bar.inc(1);
            Ok::<_, reqwest::Error>(answer)
        }
    }))
    .buffer_unordered(options.concurrency)
    .collect::<Vec<_>>()
    .await;
    let direct_submit = started.elapsed();
    bar.finish_and_clear();
    for answer in results {
        let answer = answer?;
        if !String::from_utf8_lossy(&answer).contains("\"result\"") {
            bail!(
                "anvil refused a direct submission: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    let mut pending: Vec<B256> = direct_load
        .iter()
        .map(|(_, raw)| alloy::primitives::keccak256(raw))
        .collect();
    let mut direct_latency = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        if Instant::now() > deadline {
            bail!("{} direct transactions never got a receipt", pending.len());
        }
        let mut still = Vec::new();
        for chunk in pending.chunks(200) {
            let receipts = anvil.node().receipts(chunk).await?;
            let seen = Instant::now();
            for (hash, receipt) in chunk.iter().zip(receipts) {
                match receipt.and_then(|r| observer.first_seen(r.block_number)) {
                    Some(block_seen) => {
                        direct_latency.push(seen.saturating_duration_since(block_seen));
                    }
                    None => still.push(*hash),
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let direct_total = started.elapsed();
    catch_up(&running, &anvil).await?;

    // Relay: submit, then wait for every webhook.
    let receipt_requests_before = running.receipt_requests(CHAIN_ID);
    let bar = spinner(options.progress, options.txs, "relay submit");
    let started = Instant::now();
    let answers = futures::stream::iter(relay_load.iter().map(|(sender, raw)| {
        let (client, bar) = (client.clone(), bar.clone());
        async move {
            let answer = client.submit(CHAIN_ID, raw, *sender, "bench", true).await;
            bar.inc(1);
            answer
        }
    }))
    .buffer_unordered(options.concurrency)
    .collect::<Vec<_>>()
    .await;
    let relay_submit = started.elapsed();
    bar.finish_and_clear();
    for answer in answers {
        let answer = answer?;
        if answer.accepted().is_none() {
            bail!(
                "the relay refused a submission: {} {}",
                answer.status,
                answer.body
            );
        }
    }
    let wanted: HashSet<B256> = relay_load
        .iter()
        .map(|(_, raw)| alloy::primitives::keccak256(raw))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let arrivals: HashMap<B256, Instant> = loop {
        // Cheap count first: the receiver's lock is shared with the deliveries measured.
        let arrivals = if receivers.count() >= wanted.len() {
            receivers.first_arrivals(&wanted)
        } else {
            HashMap::new()
        };
        if arrivals.len() == wanted.len() {
            break arrivals;
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} notifications arrived",
                receivers.first_arrivals(&wanted).len(),
                wanted.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let relay_total = arrivals.values().max().map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(started)
    });
    let mut relay_latency = Vec::new();
    for delivery in receivers.deliveries() {
        if let Some(seen) = delivery
            .event
            .block_number
            .and_then(|b| observer.first_seen(b))
        {
            relay_latency.push(delivery.arrived.saturating_duration_since(seen));
        }
    }
    if receivers.stats().bad_signatures > 0 {
        bail!("webhook signatures failed to verify");
    }
    let receipt_requests = running
        .receipt_requests(CHAIN_ID)
        .saturating_sub(receipt_requests_before);
    let sustained = match options.sustain {
        Some(sustain) => {
            let txs = u64::from(sustain.rate).saturating_mul(sustain.seconds);
            if txs > sustain::MAX_SUSTAINED_TXS {
                bail!(
                    "--rate x --sustain-seconds is {txs} transactions; at most {}",
                    sustain::MAX_SUSTAINED_TXS
                );
            }
            let wallets: Vec<Wallet> = (0..ACCOUNTS * 4).map(|_| Wallet::random()).collect();
            for wallet in &wallets {
                anvil
                    .set_balance(wallet.address(), U256::from(10_u64).pow(U256::from(21)))
                    .await?;
            }
            let load = sign_load(&wallets, usize::try_from(txs)?, sink)?;
            info!(
                rate = sustain.rate,
                seconds = sustain.seconds,
                "sustained load signed"
            );
            let rig = sustain::Rig {
                client: &client,
                store: running.store(),
                receivers: &receivers,
                observer: &observer,
                chain_id: CHAIN_ID,
                device: "bench",
            };
            Some(sustain::run(&rig, load, sustain, Duration::from_secs(120)).await?)
        }
        None => None,
    };
    running.stop().await?;
    drop(observer);
    drop(chain);
    let rows = vec![
        row(
            "direct: eth_sendRawTransaction to anvil",
            options.txs,
            direct_submit,
            None,
        ),
        row(
            "relay: POST /v1/chains/31337/transactions -> 202",
            options.txs,
            relay_submit,
            None,
        ),
        row(
            "direct: submit until every receipt seen (50 ms poller)",
            options.txs,
            direct_total,
            Some(&direct_latency),
        ),
        row(
            "relay: submit until every signed webhook arrived",
            options.txs,
            relay_total,
            Some(&relay_latency),
        ),
    ];
    let rows = if options.txs == 0 { Vec::new() } else { rows };
    Ok(BenchReport {
        concurrency: options.concurrency,
        block_time_s: options.block_time.as_secs_f64(),
        sustained,
        receipt_rpcs_per_tx: (receipt_requests as f64 / options.txs.max(1) as f64 * 100.0).round()
            / 100.0,
        rows,
    })
}
