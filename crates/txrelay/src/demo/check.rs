//! The demo's checking steps: wait for every result, work out which notifications the rules
//! call for, wait for them, and compute the report.

use std::collections::{BTreeSet, HashSet};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use tracing::info;

use super::{CHAINS, Demo, DemoReport, Latency, NotificationCounts, REVERT_REASON, WsLog, bar};
use crate::anvil::percentile_ms;
use crate::event::{Event, EventStatus};
use crate::receiver::ReceiverServer;

/// (receiver URL or account, transaction) pairs.
pub(super) type Expected = BTreeSet<(String, B256)>;

/// Step 9: polls `GET /v1/transactions/{hash}` until every accepted transaction has a final
/// status (at most 90 s).
pub(super) async fn await_results(demo: &mut Demo) -> anyhow::Result<()> {
    let accepted = &demo.tally.accepted;
    let progress = bar(demo.progress, accepted.len() as u64, "waiting for results");
    let deadline = Instant::now() + Duration::from_secs(90);
    let finals = &mut demo.tally.finals;
    while finals.len() < accepted.len() && Instant::now() < deadline {
        for sent in accepted {
            if finals.contains_key(&sent.hash) {
                continue;
            }
            if let Some(view) = demo.client.transaction(sent.hash).await?
                && let Some(status @ ("mined" | "failed" | "rejected")) = view["status"].as_str()
            {
                finals.insert(sent.hash, status.to_owned());
                progress.inc(1);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    progress.finish_and_clear();
    Ok(())
}

/// Step 11: what the rules call for, per accepted transaction.
pub(super) fn expected_notifications(demo: &Demo) -> Expected {
    let mut expected = Expected::new();
    for sent in &demo.tally.accepted {
        if let Some(registration) = demo.rules.get(&sent.device) {
            for key in registration.target_keys(Some(sent.recipient)) {
                expected.insert((key, sent.hash));
            }
        }
    }
    expected
}

/// The results (mined or failed) received so far, by webhook receiver URL or account.
fn delivered_set(receivers: &ReceiverServer, ws: &WsLog) -> Expected {
    let final_result = |e: &Event| matches!(e.status, EventStatus::Mined | EventStatus::Failed);
    let mut set: Expected = receivers
        .deliveries()
        .into_iter()
        .filter(|d| final_result(&d.event))
        .map(|d| (receivers.url(&d.receiver), d.event.tx_hash))
        .collect();
    set.extend(
        ws.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, e, _)| final_result(e))
            .map(|(account, e, _)| (format!("{account:#x}"), e.tx_hash)),
    );
    set
}

/// Step 12: waits (at most 60 s) until every expected notification arrived, then lets
/// in-flight redeliveries settle and stops the WebSocket clients.
pub(super) async fn await_notifications(demo: &Demo, expected: &Expected) {
    let progress = bar(
        demo.progress,
        expected.len() as u64,
        "waiting for notifications",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = delivered_set(&demo.receivers, &demo.ws_log);
        let done = expected.iter().filter(|e| got.contains(e)).count();
        progress.set_position(done as u64);
        if done == expected.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress.finish_and_clear();
    tokio::time::sleep(Duration::from_millis(500)).await;
    demo.ws_stop.cancel();
}

/// Step 13: latency after inclusion, the contents checks, and the report.
pub(super) fn report(demo: &mut Demo, expected: &Expected) -> DemoReport {
    let got = delivered_set(&demo.receivers, &demo.ws_log);
    let delivered = expected.iter().filter(|e| got.contains(e)).count();
    let ws_events: Vec<(Address, Event, Instant)> = demo
        .ws_log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let webhook_events = demo
        .receivers
        .deliveries()
        .into_iter()
        .map(|d| (d.event, d.arrived));
    let tally = &mut demo.tally;
    let mut latencies = Vec::new();
    let mut reverted_notices = 0;
    for (event, arrived) in
        webhook_events.chain(ws_events.iter().map(|(_, e, at)| (e.clone(), *at)))
    {
        if !matches!(event.status, EventStatus::Mined | EventStatus::Failed) {
            continue;
        }
        if event.status == EventStatus::Failed {
            reverted_notices += 1;
            if event.revert_reason.as_deref() != Some(REVERT_REASON) {
                tally.failures.push(format!(
                    "failed notice without the revert reason: {:?}",
                    event.revert_reason
                ));
            }
        }
        if let Some(seen) = event.block_number.and_then(|b| {
            demo.observers
                .get(&event.chain_id)
                .and_then(|o| o.first_seen(b))
        }) {
            latencies.push(arrived.saturating_duration_since(seen));
        }
    }
    let ws_duplicates = {
        let mut seen = HashSet::new();
        ws_events
            .iter()
            .filter(|(account, e, _)| !seen.insert((*account, e.event_id.clone())))
            .count() as u64
    };
    let stats = demo.receivers.stats();
    let mined = tally.finals.values().filter(|s| *s == "mined").count();
    let reverted = tally.finals.values().filter(|s| *s == "failed").count();
    let expected_reverts = tally.accepted.iter().filter(|s| s.reverts).count();
    if stats.bad_signatures > 0 {
        tally.failures.push(format!(
            "{} webhook signatures did not verify",
            stats.bad_signatures
        ));
    }
    if mined + reverted != tally.accepted.len() {
        tally.failures.push(format!(
            "{} of {} transactions reached a result",
            mined + reverted,
            tally.accepted.len()
        ));
    }
    if reverted != expected_reverts || reverted_notices == 0 {
        tally
            .failures
            .push(format!("{reverted} reverted, expected {expected_reverts}"));
    }
    if delivered != expected.len() {
        tally.failures.push(format!(
            "{} of {} notifications lost",
            expected.len() - delivered,
            expected.len()
        ));
    }
    if stats.refused == 0 {
        tally
            .failures
            .push("the flaky receiver was never retried".to_owned());
    }
    info!(
        refused_first_attempts = stats.refused,
        websocket_events = got.iter().filter(|(k, _)| !k.starts_with("http")).count(),
        "deliveries"
    );
    DemoReport {
        chains: CHAINS.to_vec(),
        submitted: tally.submitted,
        accepted: tally.accepted.len(),
        duplicates: tally.duplicates,
        invalid_rejected: tally.invalid_rejected,
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
    }
}
