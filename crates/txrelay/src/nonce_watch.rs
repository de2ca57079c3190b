//! The follower's nonce watch (issue 11 item 5): each sender's lowest pending transaction
//! with no receipt for `tracking.nonce_watch_after_ms` is checked against the node, and
//! transactions past `tracking.lifetime_seconds` are expired. Decisions come from
//! [`crate::core::overdue`]; outcomes and their notices are written by
//! [`crate::store::overdue`].
//!
//! Per run at most [`WATCH_LIMIT`] transactions are checked, with three JSON-RPC batches
//! (account nonces, `eth_getTransactionByHash`, and receipts by hash for the few whose nonce
//! is used), so the cost is bounded however many transactions wait behind a gap.

use std::collections::{BTreeSet, HashMap};

use alloy::consensus::{Transaction, TxEnvelope};
use alloy::eips::eip2718::Decodable2718;
use alloy::primitives::{Address, B256};
use tracing::{info, warn};

use crate::core::overdue::{Facts, Verdict, expired, judge};
use crate::metrics::Metrics;
use crate::node::{Header, NodeClient, Receipt};
use crate::state::Shared;
use crate::store::overdue::{Lowest, Settle};
use crate::store::{TxRecord, millis_of};

/// Transactions checked (and expired) per run.
pub(crate) const WATCH_LIMIT: u32 = 256;

/// Receipts of the follower's window looked up by hash per replaced transaction to name the
/// one that took its nonce.
const REPLACER_LOOKUPS: usize = 16;

/// Runs the watch for `node`'s chain at `head` (`window`: the follower's receipts of its
/// canonical window, by transaction hash). Answers the transactions sent again.
///
/// # Errors
/// A store or node error; what was written before it stays.
pub(crate) async fn run(
    shared: &Shared,
    node: &NodeClient,
    head: &Header,
    window: &HashMap<B256, Receipt>,
    now: u64,
) -> Result<usize, crate::Error> {
    let chain_id = node.chain_id();
    let lifetime = millis_of(shared.settings.lifetime);
    let old = shared
        .store
        .past_lifetime(chain_id, now.saturating_sub(lifetime), WATCH_LIMIT)
        .await?;
    let old: Vec<&TxRecord> = old
        .iter()
        .filter(|r| expired(r.accepted_at_ms, now, lifetime))
        .collect();
    if !old.is_empty() {
        let outcomes: Vec<(&TxRecord, Settle)> =
            old.iter().map(|r| (*r, Settle::Expired)).collect();
        settle(shared, chain_id, &outcomes, now).await?;
    }
    let cutoff = now.saturating_sub(millis_of(shared.settings.nonce_watch_after));
    let lowest = shared
        .store
        .lowest_pending(chain_id, cutoff, WATCH_LIMIT)
        .await?;
    if lowest.is_empty() {
        return Ok(0);
    }
    let unseen: Vec<B256> = lowest
        .iter()
        .filter(|l| l.watched_since_block.is_none())
        .map(|l| l.record.tx_hash)
        .collect();
    shared.store.mark_watched(&unseen, head.number).await?;
    let batch = shared.settings.receipt_batch_size;
    let senders: Vec<Address> = lowest
        .iter()
        .map(|l| l.record.sender)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut account_nonces = HashMap::with_capacity(senders.len());
    for chunk in senders.chunks(batch) {
        account_nonces.extend(chunk.iter().copied().zip(node.nonces(chunk).await?));
    }
    let hashes: Vec<B256> = lowest.iter().map(|l| l.record.tx_hash).collect();
    let mut held = Vec::with_capacity(hashes.len());
    for chunk in hashes.chunks(batch) {
        held.extend(node.known(chunk).await?);
    }
    // A used nonce means "replaced" only when the node has no receipt for this hash.
    let used: Vec<B256> = lowest
        .iter()
        .filter(|l| account_nonces.get(&l.record.sender).copied().unwrap_or(0) > l.record.nonce)
        .map(|l| l.record.tx_hash)
        .collect();
    let mut mined = BTreeSet::new();
    for chunk in used.chunks(batch) {
        for (hash, receipt) in chunk.iter().zip(node.receipts(chunk).await?) {
            if receipt.is_some() {
                mined.insert(*hash);
            }
        }
    }
    let mut resend: Vec<(&TxRecord, bool)> = Vec::new();
    let mut outcomes: Vec<(&TxRecord, Settle)> = Vec::new();
    for (entry, held) in lowest.iter().zip(held) {
        let record = &entry.record;
        if mined.contains(&record.tx_hash) {
            continue;
        }
        let facts = Facts {
            nonce: record.nonce,
            account_nonce: account_nonces.get(&record.sender).copied().unwrap_or(0),
            held,
            watched_since_block: entry.watched_since_block.unwrap_or(head.number),
            head: head.number,
            fee_cap: fee_cap(entry),
            base_fee: head.base_fee,
            stuck_notified: entry.stuck_notified,
        };
        match judge(&facts, shared.settings.stuck_after_blocks) {
            Verdict::Wait => {}
            Verdict::Resend => resend.push((record, true)),
            Verdict::Replaced => {
                let by = replacer(shared, node, record, window).await;
                outcomes.push((record, Settle::Replaced { by }));
            }
            Verdict::Stuck(reason) => outcomes.push((record, Settle::Stuck(reason))),
        }
    }
    settle(shared, chain_id, &outcomes, now).await?;
    if resend.is_empty() {
        return Ok(0);
    }
    let applied = shared.store.pool_checked_many(&resend, now).await?;
    let mut sent = 0;
    for ((record, _), applied) in resend.iter().zip(applied) {
        if applied.rebroadcast {
            Metrics::chain(&shared.metrics.chain_events, chain_id, "dropped");
            info!(chain_id, tx_hash = %record.tx_hash, nonce = record.nonce,
                "the sender's next transaction is not held by the node; sending the same bytes again");
            sent += 1;
        }
    }
    if sent > 0 {
        shared.wake_broadcast.notify_one();
    }
    Ok(sent)
}

/// Writes `outcomes`, counts them and wakes the deliverers.
async fn settle(
    shared: &Shared,
    chain_id: u64,
    outcomes: &[(&TxRecord, Settle)],
    now: u64,
) -> Result<(), crate::Error> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let applied = shared.store.settle_overdue(outcomes, now).await?;
    let mut notified = 0;
    for ((record, settle), applied) in outcomes.iter().zip(applied) {
        if !applied.changed {
            continue;
        }
        let label = match settle {
            Settle::Replaced { .. } => "replaced",
            Settle::Stuck(_) => "stuck",
            Settle::Expired => "expired",
        };
        Metrics::chain(&shared.metrics.chain_events, chain_id, label);
        info!(chain_id, tx_hash = %record.tx_hash, nonce = record.nonce, outcome = label, "late transaction");
        notified += applied.notifications;
    }
    if notified > 0 {
        shared.wake_delivery.notify_one();
        shared.wake_sessions.notify_waiters();
    }
    Ok(())
}

/// The fee cap of a stored transaction (EIP-1559 `max_fee_per_gas`, or the gas price).
fn fee_cap(entry: &Lowest) -> Option<u128> {
    TxEnvelope::decode_2718_exact(&entry.raw)
        .ok()
        .map(|envelope| envelope.max_fee_per_gas())
}

/// The transaction that took `record`'s nonce: another relay transaction with that sender
/// and nonce in a block, else one of the sender's transactions in the follower's window
/// (up to [`REPLACER_LOOKUPS`] looked up by hash); `None` when neither is found.
async fn replacer(
    shared: &Shared,
    node: &NodeClient,
    record: &TxRecord,
    window: &HashMap<B256, Receipt>,
) -> Option<B256> {
    match shared.store.included_with_nonce(record).await {
        Ok(Some(hash)) => return Some(hash),
        Ok(None) => {}
        Err(error) => warn!(%error, "replacing transaction lookup failed"),
    }
    let candidates: Vec<B256> = window
        .values()
        .filter(|r| r.from == record.sender && r.tx_hash != record.tx_hash)
        .map(|r| r.tx_hash)
        .take(REPLACER_LOOKUPS)
        .collect();
    if candidates.is_empty() {
        return None;
    }
    match node.nonces_of(&candidates).await {
        Ok(nonces) => candidates
            .into_iter()
            .zip(nonces)
            .find_map(|(hash, nonce)| (nonce == Some(record.nonce)).then_some(hash)),
        Err(error) => {
            warn!(%error, "replacing transaction lookup failed");
            None
        }
    }
}
