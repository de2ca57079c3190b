//! `txrelay demo`: the whole relay against two real anvil chains on 127.0.0.1.
//!
//! Five devices, each sending from its own account, register different rules (seed ¶43):
//! fixed receivers, receivers per recipient account, and "to the recipient account" over the
//! WebSocket. They send 200 transactions over chains 31337 and 1337001 (one reverting contract
//! call per chain), then 20 idempotent duplicates, then five invalid submissions (a bad
//! signature, a wrong chain id, an unknown account, an undecodable envelope, a used nonce),
//! and the bytes of a mined transaction once more (answered with its receipt).
//! Authentication is on: the demo makes an admin key as an operator would, and with it the
//! demo tenant's key; devices register their accounts with EIP-4361 proofs.
//! Chain 31337 is configured with a dead node URL in front of the real one (failover).
//! Webhook receivers verify every HMAC signature; one of them refuses each event's first
//! attempt (retries); WebSocket clients log in as the five recipient accounts.
//!
//! The demo is a sequence of named steps ([`run`] lists them), each a function of the
//! [`setup`], [`traffic`] or [`check`] module working on one shared [`Demo`] context. The
//! report is the JSON; any failed check makes the command exit 2.

mod check;
mod setup;
mod traffic;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use alloy::primitives::{Address, B256};
use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::anvil::{BlockObserver, DevChain};
use crate::client::RelayClient;
use crate::event::Event;
use crate::load::Wallet;
use crate::receiver::ReceiverServer;
use crate::relay::Running;
use crate::rules::Registration;

/// The two chains of the demo.
pub const CHAINS: [u64; 2] = [31337, 1337001];
/// Sending accounts (one device each).
pub const ACCOUNTS: usize = 5;
/// Transactions per account and chain.
pub const PER_ACCOUNT: u64 = 20;
/// Revert text of the demo's contract.
pub const REVERT_REASON: &str = "demo: always reverts";

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Show progress bars on stderr.
    pub progress: bool,
}

/// Notification counts of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotificationCounts {
    /// (receiver, transaction) results the rules call for.
    pub expected: usize,
    /// Of those, delivered (verified signature, or acknowledged over the WebSocket).
    pub delivered: usize,
    /// Expected but never delivered.
    pub lost: usize,
    /// Deliveries of an event id the receiver had already accepted.
    pub duplicate_deliveries: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// The demo's report (the JSON shape).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DemoReport {
    /// Chain ids.
    pub chains: Vec<u64>,
    /// Every submission made.
    pub submitted: usize,
    /// Answered 202 with `duplicate: false`.
    pub accepted: usize,
    /// Answered 202 with `duplicate: true`.
    pub duplicates: usize,
    /// Answered 4xx.
    pub invalid_rejected: usize,
    /// Confirmed with receipt status 1.
    pub mined: usize,
    /// Confirmed reverted.
    pub reverted: usize,
    /// Notifications.
    pub notifications: NotificationCounts,
    /// From the including block first being seen to the notification's arrival.
    pub latency_after_inclusion_ms: Latency,
}

/// The report and the checks that failed (empty: success).
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The figures.
    pub report: DemoReport,
    /// Failed checks, in words.
    pub failures: Vec<String>,
}

/// One accepted transaction of the demo.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    chain_id: u64,
    hash: B256,
    raw: Vec<u8>,
    sender: Address,
    device: String,
    recipient: Address,
    reverts: bool,
}

/// Deliveries received over the WebSocket: (account, event, arrival).
type WsLog = Arc<Mutex<Vec<(Address, Event, Instant)>>>;

/// Everything the steps share: the processes and servers started, the accounts, the rules and
/// the tally of what happened so far.
struct Demo {
    progress: bool,
    chains: Vec<DevChain>,
    observers: BTreeMap<u64, BlockObserver>,
    receivers: ReceiverServer,
    secrets: BTreeMap<String, String>,
    running: Running,
    client: RelayClient,
    senders: Vec<Wallet>,
    recipients: Vec<Wallet>,
    stranger: Wallet,
    contract: Address,
    rules: BTreeMap<String, Registration>,
    ws_log: WsLog,
    ws_stop: tokio_util::sync::CancellationToken,
    tally: Tally,
    // Removed last, after every process using it has stopped.
    _dir: tempfile::TempDir,
}

/// What the steps counted.
#[derive(Debug, Default)]
struct Tally {
    submitted: usize,
    accepted: Vec<Sent>,
    duplicates: usize,
    invalid_rejected: usize,
    /// Final status by hash (`mined`, `failed`, `rejected`).
    finals: BTreeMap<B256, String>,
    failures: Vec<String>,
}

/// Runs the demo's steps in order.
///
/// # Errors
/// When a component cannot be started (anvil missing: run `scripts/setup`) or a step fails
/// outright; failed checks are reported in [`DemoOutcome::failures`] instead.
pub async fn run(options: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let mut demo = setup::start(options.progress).await?;
    setup::fund_accounts(&demo).await?;
    setup::register_devices(&mut demo).await?;
    setup::open_sessions(&demo).await?;
    let plan = traffic::plan(&demo)?;
    traffic::submit_all(&mut demo, plan).await;
    traffic::submit_duplicates(&mut demo).await;
    traffic::submit_invalid(&mut demo).await?;
    check::await_results(&mut demo).await?;
    traffic::resubmit_used_nonce(&mut demo).await?;
    let expected = check::expected_notifications(&demo);
    check::await_notifications(&demo, &expected).await;
    let report = check::report(&mut demo, &expected);
    let Demo {
        running,
        observers,
        chains,
        tally,
        ..
    } = demo;
    running.stop().await?;
    drop(observers);
    drop(chains);
    if report.submitted == 0 {
        bail!("nothing was submitted");
    }
    Ok(DemoOutcome {
        report,
        failures: tally.failures,
    })
}

/// A progress bar on stderr (hidden without `progress`).
fn bar(progress: bool, len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_owned());
    bar
}
