//! The head follower: one task per chain polls the head and, when it moved (or a rebroadcast
//! timer is due), asks the node for the receipts of the relay's own unfinished transactions
//! only, in JSON-RPC batches (seed ¶37-38: "actively query the execution result by the hash
//! of the first transaction"). Decisions come from [`crate::core::tracker`]; their effects
//! (status, notifications, rebroadcast jobs) are written through the outbox.

use std::collections::HashSet;
use std::sync::Arc;

use alloy::primitives::B256;
use tracing::{debug, info, warn};

use crate::core::now_ms;
use crate::core::tracker::{Policy, Step, observe, rebroadcast_needed};
use crate::metrics::Metrics;
use crate::node::{Head, NodeClient};
use crate::state::Shared;
use crate::store::{Decision, TxRecord};

/// Most transactions examined per chain and tick.
const TRACK_LIMIT: u32 = 20_000;

/// Decisions written per database transaction.
const APPLY_CHUNK: usize = 100;

/// Runs the follower of `chain_id` until the relay stops.
pub(crate) async fn run(shared: Arc<Shared>, chain_id: u64) {
    let Some(node) = shared.nodes.get(&chain_id).cloned() else {
        return;
    };
    let Some(chain) = shared.settings.chains.get(&chain_id) else {
        return;
    };
    let policy = Policy {
        confirmations: chain.confirmations,
        reorg_watch_blocks: shared.settings.reorg_watch_blocks,
        rebroadcast_after_ms: u64::try_from(shared.settings.rebroadcast_after.as_millis())
            .unwrap_or(u64::MAX),
    };
    let mut checked = Checked::default();
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            () = tokio::time::sleep(shared.settings.poll_interval) => {}
        }
        let head = match node.head().await {
            Ok(head) => head,
            Err(error) => {
                debug!(chain_id, %error, "head poll failed");
                continue;
            }
        };
        if let Err(error) = tick(&shared, &node, &policy, head, &mut checked).await {
            warn!(chain_id, %error, "tracking tick failed; retrying");
        }
    }
}

/// What the last ticks asked the node about at the current head.
#[derive(Debug, Default)]
struct Checked {
    /// The head of those receipts.
    head: Option<Head>,
    /// Transactions whose receipts were fetched at that head.
    hashes: HashSet<B256>,
}

async fn tick(
    shared: &Shared,
    node: &NodeClient,
    policy: &Policy,
    head: Head,
    checked: &mut Checked,
) -> Result<(), crate::Error> {
    let chain_id = node.chain_id();
    let records = shared.store.tracked(chain_id, TRACK_LIMIT).await?;
    if records.is_empty() {
        return Ok(());
    }
    let now = now_ms(shared.clock.as_ref());
    let timer_due = |r: &TxRecord| {
        r.tracked().is_some_and(|t| {
            t.phase == crate::core::Phase::Pending
                && now.saturating_sub(t.last_activity_ms) >= policy.rebroadcast_after_ms
        })
    };
    // A new head: look at everything. The same head: only at transactions that became
    // tracked since (sent after the last look, possibly already in this head's block) and at
    // those whose rebroadcast timer ran out.
    let new_head = checked.head != Some(head);
    let records: Vec<TxRecord> = if new_head {
        records
    } else {
        records
            .into_iter()
            .filter(|r| !checked.hashes.contains(&r.tx_hash) || timer_due(r))
            .collect()
    };
    if records.is_empty() {
        return Ok(());
    }
    let hashes: Vec<B256> = records.iter().map(|r| r.tx_hash).collect();
    let mut receipts = Vec::with_capacity(hashes.len());
    for chunk in hashes.chunks(shared.settings.receipt_batch_size) {
        receipts.extend(node.receipts(chunk).await?);
    }
    if new_head {
        checked.head = Some(head);
        checked.hashes.clear();
    }
    checked.hashes.extend(hashes.iter().copied());
    let mut pool_checks: Vec<&TxRecord> = Vec::new();
    let mut decisions: Vec<Decision<'_>> = Vec::new();
    for (record, receipt) in records.iter().zip(&receipts) {
        let Some(tracked) = record.tracked() else {
            continue;
        };
        let step = observe(&tracked, receipt.as_ref(), head.number, now, policy);
        let failed_result = match step {
            Step::Wait => continue,
            Step::CheckPool => {
                pool_checks.push(record);
                continue;
            }
            Step::Include {
                inclusion,
                confirm: true,
                ..
            } => !inclusion.success,
            Step::Confirm => record.inclusion.is_some_and(|i| !i.success),
            _ => false,
        };
        let revert_reason = if failed_result {
            node.revert_reason(record.tx_hash).await
        } else {
            None
        };
        if matches!(step, Step::Include { .. } | Step::Confirm) {
            shared
                .nonces
                .raise(chain_id, record.sender, record.nonce.saturating_add(1));
        }
        decisions.push(Decision {
            record,
            step,
            receipt: receipt.clone(),
            revert_reason,
            seen_at_ms: Some(now),
        });
    }
    let mut rebroadcasts = 0;
    // One database transaction per chunk; receivers are woken after each.
    for chunk in decisions.chunks(APPLY_CHUNK) {
        let applied = shared
            .store
            .apply_steps(chunk, policy.confirmations, now)
            .await?;
        let mut notified = 0;
        for (decision, applied) in chunk.iter().zip(applied) {
            if applied.changed {
                Metrics::chain(
                    &shared.metrics.chain_events,
                    chain_id,
                    label(decision.record, &decision.step),
                );
                if matches!(
                    decision.step,
                    Step::Reorged { .. }
                        | Step::Include {
                            reorged_from: Some(_),
                            ..
                        }
                ) {
                    info!(chain_id, tx_hash = %decision.record.tx_hash, "reorg removed the transaction from its block");
                }
            }
            notified += applied.notifications;
            rebroadcasts += usize::from(applied.rebroadcast);
        }
        if notified > 0 {
            shared.wake_delivery.notify_one();
            shared.wake_sessions.notify_waiters();
        }
    }
    if !pool_checks.is_empty() {
        let hashes: Vec<B256> = pool_checks.iter().map(|r| r.tx_hash).collect();
        let known = node.known(&hashes).await?;
        for (record, in_pool) in pool_checks.iter().zip(known) {
            let rebroadcast = rebroadcast_needed(in_pool);
            let applied = shared.store.pool_checked(record, rebroadcast, now).await?;
            if applied.rebroadcast {
                Metrics::chain(&shared.metrics.chain_events, chain_id, "dropped");
                info!(chain_id, tx_hash = %record.tx_hash, "no receipt and not in the node's pool; sending the same bytes again");
                rebroadcasts += 1;
            }
        }
    }
    if rebroadcasts > 0 {
        shared.wake_broadcast.notify_one();
    }
    Ok(())
}

/// The metric label of an applied decision.
fn label(record: &TxRecord, step: &Step) -> &'static str {
    let result = |success: bool| if success { "mined" } else { "failed" };
    match step {
        Step::Include { confirm: false, .. } => "included",
        Step::Include { inclusion, .. } => result(inclusion.success),
        Step::Confirm => result(record.inclusion.is_some_and(|i| i.success)),
        Step::Finalize => "finalized",
        Step::Reorged { .. } => "reorged",
        Step::Wait | Step::CheckPool => "wait",
    }
}
