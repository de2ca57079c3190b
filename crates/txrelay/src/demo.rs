//! `txrelay demo`: the whole relay against two real anvil chains on 127.0.0.1.
//!
//! Five devices, each sending from its own account, register different rules (seed ¶43):
//! fixed receivers, receivers per recipient account, and "to the recipient account" over the
//! WebSocket. They send 200 transactions over chains 31337 and 1337001 (one reverting contract
//! call per chain), then 20 idempotent duplicates, then five invalid submissions (a bad
//! signature, a wrong chain id, an unknown account, an undecodable envelope, a used nonce).
//! Chain 31337 is configured with a dead node URL in front of the real one (failover).
//! Webhook receivers verify every HMAC signature; one of them refuses each event's first
//! attempt (retries); WebSocket clients log in as the five recipient accounts.
//!
//! The report is the JSON; any failed check makes the command exit 2.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tracing::info;

use crate::anvil::{BlockObserver, DevChain, free_port, percentile_ms};
use crate::client::RelayClient;
use crate::config::{AccountMode, ChainConfig, Config};
use crate::event::{Event, EventStatus};
use crate::load::{Wallet, call, reverting_code, transfer};
use crate::receiver::ReceiverServer;
use crate::rules::{Receiver, RecipientRule, Registration, Target};

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
struct Sent {
    chain_id: u64,
    hash: B256,
    raw: Vec<u8>,
    sender: Address,
    device: String,
    recipient: Address,
    reverts: bool,
}

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

fn secret() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// An invalid submission: what it is, chain, bytes, declared sender, acceptable reasons.
type InvalidCase<'a> = (&'a str, u64, Vec<u8>, Address, &'a [&'a str]);

/// Deliveries received over the WebSocket: (account, event, arrival).
type WsLog = Arc<Mutex<Vec<(Address, Event, Instant)>>>;

/// Runs the demo.
///
/// # Errors
/// When a component cannot be started (anvil missing: run `scripts/setup`) or a step fails
/// outright; failed checks are reported in [`DemoOutcome::failures`] instead.
#[expect(clippy::too_many_lines, reason = "the demo is one scripted scenario")]
pub async fn run(options: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let dir = tempfile::Builder::new()
        .prefix("txrelay-demo-")
        .tempdir()
        .context("creating a work directory")?;
    let path = dir.path().to_path_buf();
    let chains = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<DevChain>> {
        CHAINS
            .iter()
            .map(|id| {
                DevChain::start(*id, Some(1), &[], &path)
                    .with_context(|| format!("starting anvil for chain {id} (run scripts/setup)"))
            })
            .collect()
    })
    .await??;
    info!(chains = ?CHAINS, "anvil chains started");
    let observers: BTreeMap<u64, BlockObserver> = chains
        .iter()
        .map(|c| (c.chain_id(), BlockObserver::start(c.anvil())))
        .collect();

    // Receivers: "ops" (fixed), "bank" (per recipient), "flaky" (refuses first attempts).
    let secrets: BTreeMap<String, String> = ["ops", "bank", "flaky"]
        .iter()
        .map(|name| ((*name).to_owned(), secret()))
        .collect();
    let receivers = ReceiverServer::start(0, secrets.clone(), HashSet::from(["flaky".to_owned()]))
        .await
        .context("starting the webhook receivers")?;
    let receiver = |name: &str| -> anyhow::Result<Receiver> {
        Ok(Receiver {
            url: receivers.url(name).parse()?,
            secret: svckit::redact::Secret::new(secrets.get(name).cloned().unwrap_or_default()),
        })
    };

    // The relay: chain 31337 lists a dead node URL first, so its first calls fail over.
    let dead_node = format!("http://127.0.0.1:{}", free_port()?);
    let mut config = Config {
        listen: "127.0.0.1:0".parse()?,
        instance_id: "demo".to_owned(),
        chains: chains
            .iter()
            .map(|c| ChainConfig {
                chain_id: c.chain_id(),
                rpc_urls: if c.chain_id() == CHAINS[0] {
                    vec![dead_node.clone(), c.url().to_owned()]
                } else {
                    vec![c.url().to_owned()]
                },
                confirmations: 1,
            })
            .collect(),
        ..Config::default()
    };
    config.database.url = format!("sqlite://{}", dir.path().join("txrelay.db").display());
    config.accounts.mode = AccountMode::Registered;
    config.tracking.poll_interval_ms = 50;
    config.delivery.poll_interval_ms = 50;
    config.delivery.initial_backoff_ms = 200;
    let running = crate::relay::start(config.validate()?, Arc::new(svckit::SystemClock)).await?;
    let client = RelayClient::new(&running.url(""));

    // Accounts and contract.
    let senders: Vec<Wallet> = (0..ACCOUNTS).map(|_| Wallet::random()).collect();
    let recipients: Vec<Wallet> = (0..ACCOUNTS).map(|_| Wallet::random()).collect();
    let stranger = Wallet::random();
    let contract = Address::repeat_byte(0x42);
    for chain in &chains {
        for wallet in senders.iter().chain([&stranger]) {
            chain
                .anvil()
                .set_balance(wallet.address(), U256::from(10_u64).pow(U256::from(21)))
                .await?;
        }
        chain
            .anvil()
            .set_code(contract, &reverting_code(REVERT_REASON))
            .await?;
    }

    // Devices and their rules (seed ¶43).
    let r = |i: usize| recipients[i].address();
    let registrations: Vec<Registration> = vec![
        Registration {
            fixed: vec![receiver("ops")?],
            ..Registration::default()
        },
        Registration {
            by_recipient: vec![
                RecipientRule {
                    account: r(1),
                    receiver: receiver("bank")?,
                },
                RecipientRule {
                    account: r(2),
                    receiver: receiver("flaky")?,
                },
            ],
            ..Registration::default()
        },
        Registration {
            fixed: vec![receiver("flaky")?],
            to_recipient_account: true,
            ..Registration::default()
        },
        Registration {
            fixed: vec![receiver("ops")?, receiver("bank")?],
            ..Registration::default()
        },
        Registration {
            by_recipient: vec![RecipientRule {
                account: r(4),
                receiver: receiver("ops")?,
            }],
            to_recipient_account: true,
            ..Registration::default()
        },
    ];
    let mut rules = BTreeMap::new();
    for (i, mut registration) in registrations.into_iter().enumerate() {
        registration.accounts = vec![senders[i].address()];
        let device = format!("device-{i}");
        client.register(&device, &registration).await?;
        rules.insert(device, registration);
    }

    // WebSocket clients logged in as each recipient account; they acknowledge every event.
    let ws_log: WsLog = Arc::new(Mutex::new(Vec::new()));
    let ws_stop = tokio_util::sync::CancellationToken::new();
    for wallet in &recipients {
        let mut session = client.login(wallet).await?;
        let (log, stop) = (Arc::clone(&ws_log), ws_stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                match session.next_event(Duration::from_millis(200)).await {
                    Ok(event) => {
                        let arrived = Instant::now();
                        let _ = session.ack(&event.event_id).await;
                        log.lock().unwrap_or_else(PoisonError::into_inner).push((
                            session.account(),
                            event,
                            arrived,
                        ));
                    }
                    Err(crate::client::ClientError::Timeout) => {}
                    Err(_) => break,
                }
            }
            session.close().await;
        });
    }

    // 200 signed transactions: 5 accounts x 20 nonces x 2 chains, one reverting call per chain.
    let mut plan: Vec<Vec<Sent>> = Vec::new();
    for chain_id in CHAINS {
        for (i, wallet) in senders.iter().enumerate() {
            let mut stream = Vec::new();
            for nonce in 0..PER_ACCOUNT {
                let reverts = i == 3 && nonce == 10;
                let (recipient, raw) = if reverts {
                    let input = Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]);
                    (
                        contract,
                        call(wallet, chain_id, nonce, contract, input, 60_000)?,
                    )
                } else {
                    let to = r((i + usize::try_from(nonce).unwrap_or(0)) % ACCOUNTS);
                    (
                        to,
                        transfer(
                            wallet,
                            chain_id,
                            nonce,
                            to,
                            U256::from(1_000 + nonce),
                            21_000,
                        )?,
                    )
                };
                stream.push(Sent {
                    chain_id,
                    hash: alloy::primitives::keccak256(&raw),
                    raw,
                    sender: wallet.address(),
                    device: format!("device-{i}"),
                    recipient,
                    reverts,
                });
            }
            plan.push(stream);
        }
    }
    let total: usize = plan.iter().map(Vec::len).sum();
    let progress = bar(options.progress, total as u64, "submitting");
    let mut failures = Vec::new();
    let mut submitted = 0;
    let answers = futures::stream::iter(plan.into_iter().map(|stream| {
        let (client, progress) = (client.clone(), progress.clone());
        async move {
            let mut answers = Vec::new();
            for sent in stream {
                let answer = client
                    .submit(sent.chain_id, &sent.raw, sent.sender, &sent.device, true)
                    .await;
                progress.inc(1);
                answers.push((sent, answer));
            }
            answers
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    progress.finish_and_clear();
    let mut accepted: Vec<Sent> = Vec::new();
    for (sent, answer) in answers.into_iter().flatten() {
        submitted += 1;
        match answer.map(|a| (a.accepted(), a)) {
            Ok((Some(ok), _)) if !ok.duplicate && ok.tx_hash == sent.hash => accepted.push(sent),
            Ok((_, other)) => failures.push(format!(
                "transaction {} answered {} {}",
                sent.hash, other.status, other.body
            )),
            Err(error) => failures.push(format!("transaction {}: {error:#}", sent.hash)),
        }
    }

    // Duplicates: 10 accepted transactions submitted twice more at once, idempotently.
    let mut duplicates = 0;
    let picks: Vec<&Sent> = accepted
        .iter()
        .step_by(accepted.len().max(10) / 10)
        .take(10)
        .collect();
    let dup_answers = futures::future::join_all(picks.iter().flat_map(|sent| {
        let client = &client;
        (0..2)
            .map(move |_| client.submit(sent.chain_id, &sent.raw, sent.sender, &sent.device, true))
    }))
    .await;
    for answer in dup_answers {
        submitted += 1;
        match answer {
            Ok(a) if a.accepted().is_some_and(|ok| ok.duplicate) => duplicates += 1,
            Ok(a) => failures.push(format!("duplicate answered {} {}", a.status, a.body)),
            Err(error) => failures.push(format!("duplicate: {error:#}")),
        }
    }

    // Invalid submissions and the reason each must get.
    let mut bad_sig = transfer(
        &senders[0],
        CHAINS[0],
        PER_ACCOUNT,
        r(0),
        U256::from(1),
        21_000,
    )?;
    if let Some(last) = bad_sig.last_mut() {
        *last ^= 0x55;
    }
    let other_chain = transfer(
        &senders[1],
        CHAINS[0],
        PER_ACCOUNT,
        r(1),
        U256::from(1),
        21_000,
    )?;
    let unknown = transfer(&stranger, CHAINS[0], 0, r(2), U256::from(1), 21_000)?;
    let invalid: Vec<InvalidCase<'_>> = vec![
        (
            "bad signature",
            CHAINS[0],
            bad_sig,
            senders[0].address(),
            &["invalid_signature", "sender_mismatch"],
        ),
        (
            "wrong chain id",
            CHAINS[1],
            other_chain,
            senders[1].address(),
            &["chain_mismatch"],
        ),
        (
            "unknown account",
            CHAINS[0],
            unknown,
            stranger.address(),
            &["account_unknown"],
        ),
        (
            "undecodable",
            CHAINS[0],
            vec![0x02, 0xc0],
            senders[2].address(),
            &["undecodable_transaction"],
        ),
    ];
    let mut invalid_rejected = 0;
    for (what, chain_id, raw, sender, codes) in invalid {
        submitted += 1;
        let answer = client
            .submit(chain_id, &raw, sender, "device-0", true)
            .await?;
        if (400..500).contains(&answer.status) {
            invalid_rejected += 1;
        }
        if !answer.reason().is_some_and(|code| codes.contains(&code)) {
            failures.push(format!(
                "{what}: expected {codes:?}, got {} {}",
                answer.status, answer.body
            ));
        }
    }

    // Wait until every accepted transaction has its final result.
    let progress = bar(
        options.progress,
        accepted.len() as u64,
        "waiting for results",
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut finals: BTreeMap<B256, String> = BTreeMap::new();
    while finals.len() < accepted.len() && Instant::now() < deadline {
        for sent in &accepted {
            if finals.contains_key(&sent.hash) {
                continue;
            }
            if let Some(view) = client.transaction(sent.hash).await?
                && let Some(status @ ("mined" | "failed" | "rejected")) = view["status"].as_str()
            {
                finals.insert(sent.hash, status.to_owned());
                progress.inc(1);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    progress.finish_and_clear();

    // A used nonce is refused once its transaction is mined.
    if let Some(mined) = accepted
        .iter()
        .find(|s| finals.get(&s.hash).is_some_and(|f| f == "mined"))
    {
        submitted += 1;
        let answer = client
            .submit(
                mined.chain_id,
                &mined.raw,
                mined.sender,
                &mined.device,
                false,
            )
            .await?;
        if (400..500).contains(&answer.status) {
            invalid_rejected += 1;
        }
        if answer.reason() != Some("nonce_too_low") {
            failures.push(format!(
                "used nonce: expected nonce_too_low, got {} {}",
                answer.status, answer.body
            ));
        }
    }

    // What the rules call for, then wait for it to arrive.
    let mut expected: BTreeSet<(String, B256)> = BTreeSet::new();
    for sent in &accepted {
        if let Some(registration) = rules.get(&sent.device) {
            for target in registration.targets(Some(sent.recipient)) {
                let key = match target {
                    Target::Webhook { url, .. } => url,
                    Target::Account(account) => format!("{account:#x}"),
                };
                expected.insert((key, sent.hash));
            }
        }
    }
    let delivered_set = |receivers: &ReceiverServer, ws: &WsLog| -> BTreeSet<(String, B256)> {
        let mut set: BTreeSet<(String, B256)> = receivers
            .deliveries()
            .into_iter()
            .filter(|d| matches!(d.event.status, EventStatus::Mined | EventStatus::Failed))
            .map(|d| (receivers.url(&d.receiver), d.event.tx_hash))
            .collect();
        set.extend(
            ws.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter(|(_, e, _)| matches!(e.status, EventStatus::Mined | EventStatus::Failed))
                .map(|(account, e, _)| (format!("{account:#x}"), e.tx_hash)),
        );
        set
    };
    let progress = bar(
        options.progress,
        expected.len() as u64,
        "waiting for notifications",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = delivered_set(&receivers, &ws_log);
        let done = expected.iter().filter(|e| got.contains(e)).count();
        progress.set_position(done as u64);
        if done == expected.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress.finish_and_clear();
    // Let in-flight redeliveries settle before counting duplicates.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws_stop.cancel();
    let got = delivered_set(&receivers, &ws_log);
    let delivered = expected.iter().filter(|e| got.contains(e)).count();

    // Latency after inclusion, checks on contents.
    let mut latencies = Vec::new();
    let mut reverted_notices = 0;
    let webhook_events = receivers
        .deliveries()
        .into_iter()
        .map(|d| (d.event, d.arrived));
    let ws_events: Vec<(Event, Instant)> = ws_log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(_, e, at)| (e.clone(), *at))
        .collect();
    for (event, arrived) in webhook_events.chain(ws_events) {
        if !matches!(event.status, EventStatus::Mined | EventStatus::Failed) {
            continue;
        }
        if event.status == EventStatus::Failed {
            reverted_notices += 1;
            if event.revert_reason.as_deref() != Some(REVERT_REASON) {
                failures.push(format!(
                    "failed notice without the revert reason: {:?}",
                    event.revert_reason
                ));
            }
        }
        if let Some(seen) = event
            .block_number
            .and_then(|b| observers.get(&event.chain_id).and_then(|o| o.first_seen(b)))
        {
            latencies.push(arrived.saturating_duration_since(seen));
        }
    }
    let ws_duplicates = {
        let log = ws_log.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = HashSet::new();
        log.iter()
            .filter(|(account, e, _)| !seen.insert((*account, e.event_id.clone())))
            .count() as u64
    };
    let stats = receivers.stats();
    let mined = finals.values().filter(|s| *s == "mined").count();
    let reverted = finals.values().filter(|s| *s == "failed").count();
    let expected_reverts = accepted.iter().filter(|s| s.reverts).count();

    if stats.bad_signatures > 0 {
        failures.push(format!(
            "{} webhook signatures did not verify",
            stats.bad_signatures
        ));
    }
    if accepted.len() != total {
        failures.push(format!("accepted {} of {total}", accepted.len()));
    }
    if duplicates != 20 {
        failures.push(format!("{duplicates} of 20 duplicates recognised"));
    }
    if mined + reverted != accepted.len() {
        failures.push(format!(
            "{} of {} transactions reached a result",
            mined + reverted,
            accepted.len()
        ));
    }
    if reverted != expected_reverts || reverted_notices == 0 {
        failures.push(format!("{reverted} reverted, expected {expected_reverts}"));
    }
    if delivered != expected.len() {
        failures.push(format!(
            "{} of {} notifications lost",
            expected.len() - delivered,
            expected.len()
        ));
    }
    if stats.refused == 0 {
        failures.push("the flaky receiver was never retried".to_owned());
    }
    info!(
        refused_first_attempts = stats.refused,
        websocket_events = got.iter().filter(|(k, _)| !k.starts_with("http")).count(),
        "deliveries"
    );
    running.stop().await?;
    drop(observers);
    drop(chains);
    let report = DemoReport {
        chains: CHAINS.to_vec(),
        submitted,
        accepted: accepted.len(),
        duplicates,
        invalid_rejected,
        mined,
        reverted,
        notifications: NotificationCounts {
            expected: expected.len(),
            delivered,
            lost: expected.len() - delivered,
            duplicate_deliveries: stats.duplicates + ws_duplicates,
        },
        latency_after_inclusion_ms: Latency {
            p50: percentile_ms(&latencies, 50.0),
            p99: percentile_ms(&latencies, 99.0),
        },
    };
    if report.submitted == 0 {
        bail!("nothing was submitted");
    }
    Ok(DemoOutcome { report, failures })
}
