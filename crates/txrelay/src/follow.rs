//! The head follower: one task per chain follows the head ([`crate::heads`]: `newHeads` by
//! subscription, polling as the fallback). Each new block is linked to the canonical window
//! ([`crate::core::chain`], by parent hash; skipped blocks are fetched) and its receipts are
//! read once (`eth_getBlockReceipts`, or one batch of `eth_getTransactionReceipt` from a node
//! without it) and kept while the block is in the window. The relay's own unfinished
//! transactions are then matched against those receipts; a delivered result is watched for
//! reorgs by comparing its stored block hash with the window, not by fetching it again. Only
//! transactions sent before the window began (once) and those whose rebroadcast timer ran
//! out are looked up by hash (seed ¶37-38: "actively query the execution result by the hash
//! of the first transaction"). Decisions come from [`crate::core::tracker`]; their effects
//! (status, notifications, rebroadcast jobs) are written through the outbox.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use alloy::primitives::B256;
use tracing::{debug, info, warn};

use crate::core::Tracked;
use crate::core::chain::{BlockRef, Canon, Link};
use crate::core::now_ms;
use crate::core::tracker::{Policy, Step, observe, rebroadcast_needed};
use crate::metrics::Metrics;
use crate::node::{Header, NodeClient, Receipt};
use crate::state::Shared;
use crate::store::{Decision, Lease, TxRecord, millis_of};

/// Tracked transactions read per page (every page is read on each tick).
const TRACK_PAGE: u32 = 5_000;

/// Fewest blocks in the canonical window.
const MIN_WINDOW: u64 = 64;

/// Decisions written per database transaction (a block's results, up to this many).
const APPLY_CHUNK: usize = 500;

/// A block's transactions are read, decided and written this many at a time.
const BLOCK_SLICE: usize = 128;

/// A full scan of every tracked row runs at least every this many `full_scan_interval`s
/// (a safety net: finality, timers and new blocks are handled without one).
const SAFETY_SCAN_INTERVALS: u64 = 60;

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
    let Some(wake) = shared.wake_follow.get(&chain_id) else {
        return;
    };
    let (heads_tx, mut heads) = tokio::sync::watch::channel(None);
    let source = crate::heads::HeadSource {
        node: node.clone(),
        ws_urls: chain.ws_urls.clone(),
        subscribe: shared.settings.subscribe_heads,
        poll_interval: shared.settings.poll_interval,
    };
    let clock = Arc::clone(&shared.clock);
    let head_task = tokio::spawn(crate::heads::run(
        source,
        heads_tx,
        shared.cancel.clone(),
        move || now_ms(clock.as_ref()),
    ));
    // The window reaches past the reorg watch, so a delivered result's block is compared
    // with the canonical chain for as long as it is watched.
    let mut blocks = Blocks::new(
        policy
            .confirmations
            .saturating_add(policy.reorg_watch_blocks)
            .saturating_add(2)
            .max(MIN_WINDOW),
    );
    let mut scan = Scan {
        full_due: true,
        last_full_ms: 0,
        last_timers_ms: 0,
        last_head: None,
    };
    loop {
        // A new head (pushed by the subscription or found by the poller), newly sent
        // transactions (the broadcaster's wake-up), or the poll interval for rebroadcast
        // timers: each looks again at the newest head.
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            changed = heads.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = wake.notified() => {}
            () = tokio::time::sleep(shared.settings.poll_interval) => {}
        }
        let Some((head, _seen_ms)) = *heads.borrow_and_update() else {
            continue;
        };
        let (sent, overflowed) = wake.take();
        if overflowed {
            scan.full_due = true;
        }
        match tick(&shared, &node, &policy, head, &mut blocks, &mut scan, &sent).await {
            Ok(()) => {
                let number = blocks.canon.tip().map_or(head.number, |t| t.number);
                shared
                    .metrics
                    .follower_head
                    .get_or_create(&crate::metrics::ChainIdLabels { chain_id })
                    .set(i64::try_from(number).unwrap_or(i64::MAX));
            }
            Err(error) => warn!(chain_id, %error, "tracking tick failed; retrying"),
        }
    }
    head_task.abort();
}

/// Blocks the follower knows: the canonical window and the receipts of its blocks, so a
/// transaction is matched to its block once and watched for reorgs by block hash.
#[derive(Debug)]
struct Blocks {
    /// The newest canonical blocks.
    canon: Canon,
    /// Receipts of the window's blocks by transaction hash.
    receipts: HashMap<B256, Receipt>,
    /// The transactions of each block in `receipts`, by block hash (with its number).
    block_txs: HashMap<B256, (u64, Vec<B256>)>,
    /// Unix ms since which every block is in the window: a transaction sent later is
    /// found in a block's receipts and needs no lookup by hash.
    covered_since_ms: Option<u64>,
    /// Transactions sent before `covered_since_ms` already looked up by hash once.
    looked_up: HashSet<B256>,
    /// Transactions of the window's blocks whose records a block read already decided: the
    /// broadcaster's later "sent" wake-up for them changes nothing, so it costs no second
    /// read. Forgotten with their block.
    read_in_block: HashSet<B256>,
}

impl Blocks {
    fn new(depth: u64) -> Self {
        Self {
            canon: Canon::new(depth),
            receipts: HashMap::new(),
            block_txs: HashMap::new(),
            covered_since_ms: None,
            looked_up: HashSet::new(),
            read_in_block: HashSet::new(),
        }
    }

    /// Adopts `head` and the blocks between it and the window (fetching headers by parent
    /// hash and each new block's receipts). Answers the blocks reorged out.
    async fn advance(
        &mut self,
        node: &NodeClient,
        head: Header,
        batch: usize,
        now: u64,
    ) -> Result<Advanced, crate::Error> {
        let (removed, reset) = if self.canon.tip().map(|t| t.hash) == Some(head.hash) {
            (Vec::new(), false)
        } else {
            self.link_head(node, head, now).await?
        };
        let mut read = Vec::new();
        let result = self.read_receipts(node, batch, &mut read).await;
        let oldest_read = read.into_iter().min();
        // Blocks adopted but not read are read on a later tick; what was read is decided now.
        if let Err(error) = result
            && oldest_read.is_none()
        {
            return Err(error);
        }
        Ok(Advanced {
            removed,
            oldest_read,
            reset,
        })
    }

    /// Links `head` to the window (fetching headers by parent hash) and adopts it; answers
    /// the blocks reorged out, and whether the window started afresh (at start, or after a
    /// gap it could not bridge).
    async fn link_head(
        &mut self,
        node: &NodeClient,
        head: Header,
        now: u64,
    ) -> Result<(Vec<BlockRef>, bool), crate::Error> {
        let mut segment = vec![head.block_ref()];
        let mut gap = false;
        while let Some(first) = segment.last().copied() {
            match self.canon.link(&first) {
                Link::Known | Link::Connects => break,
                Link::NeedParent { hash, .. } => {
                    if segment.len() as u64 >= self.canon.depth() {
                        gap = true;
                        break;
                    }
                    match node.header_by_hash(hash).await? {
                        Some(parent) => segment.push(parent.block_ref()),
                        None => {
                            gap = true;
                            break;
                        }
                    }
                }
            }
        }
        segment.reverse();
        let reset = gap || self.canon.is_empty();
        if reset {
            // Blocks before this segment were not seen: transactions sent before now are
            // looked up by hash once.
            self.canon.reset();
            self.covered_since_ms = Some(now);
            self.looked_up.clear();
        }
        let removed = self.canon.adopt(&segment);
        Ok((removed, reset))
    }

    /// Reads the receipts of every canonical block of the window that has none yet, oldest
    /// first: a block whose receipts the node did not serve yet, or whose call failed (a
    /// deadline under load), is tried again on the next tick rather than skipped, so no
    /// transaction in it waits for its rebroadcast timer. Forgets blocks that left the window.
    ///
    /// # Errors
    /// The node's error for the first block that failed (the blocks before it are kept).
    async fn read_receipts(
        &mut self,
        node: &NodeClient,
        batch: usize,
        read: &mut Vec<u64>,
    ) -> Result<(), crate::Error> {
        let (Some(oldest), Some(tip)) = (self.canon.oldest(), self.canon.tip()) else {
            return Ok(());
        };
        let mut result = Ok(());
        for number in oldest..=tip.number {
            let Some(hash) = self.canon.hash_at(number) else {
                continue;
            };
            if self.block_txs.contains_key(&hash) {
                continue;
            }
            match node.block_receipts(hash, batch).await {
                Ok(Some(receipts)) => {
                    let hashes = receipts.iter().map(|r| r.tx_hash).collect();
                    for receipt in receipts {
                        self.receipts.insert(receipt.tx_hash, receipt);
                    }
                    self.block_txs.insert(hash, (number, hashes));
                    read.push(number);
                }
                // Not served yet: later blocks may be, the next tick tries this one again.
                Ok(None) => {}
                Err(error) => {
                    result = Err(error.into());
                    break;
                }
            }
        }
        // Forget blocks that left the window (reorged out or older than its depth).
        let canon = &self.canon;
        let receipts = &mut self.receipts;
        let read_in_block = &mut self.read_in_block;
        self.block_txs.retain(|hash, (number, txs)| {
            let keep = canon.hash_at(*number) == Some(*hash);
            if !keep {
                for tx in txs.iter() {
                    if receipts.get(tx).is_some_and(|r| r.block_hash == *hash) {
                        receipts.remove(tx);
                        read_in_block.remove(tx);
                    }
                }
            }
            keep
        });
        result
    }

    /// The transactions of the canonical blocks numbered `from..=to` whose receipts are read.
    fn txs_between(&self, from: u64, to: u64) -> Vec<B256> {
        let mut txs = Vec::new();
        for number in from..=to {
            if let Some(hash) = self.canon.hash_at(number)
                && let Some((_, block)) = self.block_txs.get(&hash)
            {
                txs.extend_from_slice(block);
            }
        }
        txs
    }

    /// Whether `record`'s recorded block is still canonical as far as the window knows
    /// (outside the window: assumed so).
    fn still_canonical(&self, number: u64, hash: B256) -> bool {
        self.canon
            .hash_at(number)
            .is_none_or(|canonical| canonical == hash)
    }
}

/// What [`Blocks::advance`] did.
struct Advanced {
    /// Blocks that left the canonical chain.
    removed: Vec<BlockRef>,
    /// The lowest number of the blocks whose receipts were read by this call.
    oldest_read: Option<u64>,
    /// The window started afresh: every tracked row must be read once.
    reset: bool,
}

/// When the follower last read every tracked transaction, and the head it last decided at.
#[derive(Debug)]
struct Scan {
    /// A full scan is due at the next tick (start, a fresh window, reorg, a dropped sent
    /// hash).
    full_due: bool,
    /// Unix ms of the last full scan.
    last_full_ms: u64,
    /// Unix ms of the last read of due rebroadcast timers.
    last_timers_ms: u64,
    /// The head of the last tick.
    last_head: Option<u64>,
}

/// What the follower needs to look at for one record.
enum Look {
    /// Decide with this receipt (or `None`: not in any known block).
    Decide(Option<Box<Receipt>>),
    /// Ask the node for the receipt by hash first.
    ByHash,
    /// Nothing can have changed.
    Skip,
}

/// One look at the newest head. Every unfinished transaction is read (page by page, no
/// cliff however many there are) at start, after a fresh window or a reorg, and as a safety
/// net every [`SAFETY_SCAN_INTERVALS`] × `full_scan_interval`. Between those a tick reads
/// only the rows of the transactions in the blocks read now and in the blocks this head
/// confirms, and of the transactions just sent that are in a block read already; after
/// their results are committed, the blocks this head takes past the reorg watch are
/// finalized by block hash (one statement per block); and every `full_scan_interval` the
/// pending rows whose rebroadcast timer ran out are read. So a busy chain costs one indexed
/// read and one commit per block, not a read of every tracked row.
async fn tick(
    shared: &Shared,
    node: &NodeClient,
    policy: &Policy,
    head: Header,
    blocks: &mut Blocks,
    scan: &mut Scan,
    sent: &[B256],
) -> Result<(), crate::Error> {
    let chain_id = node.chain_id();
    let now = now_ms(shared.clock.as_ref());
    let started = Instant::now();
    let advanced = blocks
        .advance(node, head, shared.settings.receipt_batch_size, now)
        .await?;
    let receipts_ms = started.elapsed().as_millis();
    if !advanced.removed.is_empty() {
        info!(
            chain_id,
            blocks = advanced.removed.len(),
            "reorg: blocks left the canonical chain"
        );
        scan.full_due = true;
    }
    if advanced.reset {
        scan.full_due = true;
    }
    let head_header = head;
    let head = blocks.canon.tip().map_or(head.number, |t| t.number);
    let interval = millis_of(shared.settings.full_scan_interval);
    if scan.full_due
        || now.saturating_sub(scan.last_full_ms) >= interval.saturating_mul(SAFETY_SCAN_INTERVALS)
    {
        scan.full_due = false;
        scan.last_full_ms = now;
        scan.last_timers_ms = now;
        scan.last_head = Some(head);
        let result = full_scan(shared, node, policy, head, blocks, now).await;
        debug!(
            chain_id,
            head,
            receipts_ms,
            total_ms = started.elapsed().as_millis(),
            "full scan"
        );
        return result;
    }
    // The blocks read now, and those whose confirmation count the heads since the last
    // decided one complete: the including block counts as one, so head `h` completes block
    // `h - confirmations + 1`.
    let first_new = scan.last_head.map_or(head, |h| h.saturating_add(1));
    let from = advanced
        .oldest_read
        .unwrap_or(first_new)
        .min(first_new)
        .saturating_sub(policy.confirmations.saturating_sub(1));
    let mut hashes = if first_new <= head || advanced.oldest_read.is_some() {
        blocks.txs_between(from, head)
    } else {
        Vec::new()
    };
    // A sent transaction in a block read before the relay accepted it (a resubmission of
    // another sender's transaction) is read now. One whose record that read decided needs
    // nothing (queued ones included: `TxRecord::tracked_in_block`).
    hashes.extend(
        sent.iter()
            .filter(|h| blocks.receipts.contains_key(*h) && !blocks.read_in_block.contains(*h)),
    );
    hashes.sort_unstable();
    hashes.dedup();
    // In slices: the first results are committed and handed to the webhook worker while
    // the rest of the block is still read and decided.
    let mut decided = HashSet::new();
    let mut read_ms = 0;
    for slice in hashes.chunks(BLOCK_SLICE) {
        let read_started = Instant::now();
        let records = shared.store.tracked_among(chain_id, slice).await?;
        read_ms += read_started.elapsed().as_millis();
        count_rows(shared, chain_id, "block", records.len());
        let unsettled = decide_page(shared, node, policy, head, blocks, &records, now).await?;
        blocks.read_in_block.extend(
            records
                .iter()
                .map(|r| r.tx_hash)
                .filter(|h| !unsettled.contains(h)),
        );
        decided.extend(records.iter().map(|r| r.tx_hash));
    }
    // After the new block's results, which wait for nothing older: blocks whose reorg
    // watch these heads complete.
    finalize(
        shared,
        chain_id,
        policy,
        blocks,
        &decided,
        (first_new, head, now),
    )
    .await?;
    let mut records = Vec::new();
    let mut watch = false;
    if now.saturating_sub(scan.last_timers_ms) >= interval {
        scan.last_timers_ms = now;
        let cutoff = now.saturating_sub(policy.rebroadcast_after_ms);
        let due = shared
            .store
            .due_pending(chain_id, cutoff, TRACK_PAGE)
            .await?;
        count_rows(shared, chain_id, "timer", due.len());
        records.extend(due.into_iter().filter(|r| !decided.contains(&r.tx_hash)));
        watch = true;
    }
    if !records.is_empty() {
        decide_page(shared, node, policy, head, blocks, &records, now).await?;
    }
    if watch {
        let at = Header {
            number: head,
            ..head_header
        };
        // A failed watch is tried again on the next timer; the block's work above stands.
        if let Err(error) = crate::nonce_watch::run(shared, node, &at, &blocks.receipts, now).await
        {
            warn!(chain_id, %error, "nonce watch failed; retrying on the next timer");
        }
    }
    // Only now: a tick that failed is done again from the same head on the next one.
    scan.last_head = Some(head);
    if records.is_empty() && decided.is_empty() {
        return Ok(());
    }
    debug!(
        chain_id,
        head,
        rows = decided.len() + records.len(),
        receipts_ms,
        read_ms,
        total_ms = started.elapsed().as_millis(),
        "tick"
    );
    Ok(())
}

/// Finalizes, by block hash, the canonical blocks whose reorg watch the heads
/// `first_new..=head` complete (a block at number `b` is final at head
/// `b + confirmations + reorg_watch_blocks - 1`), and the final canonical blocks of the
/// transactions `decided` in this tick (a row decided after its block's watch ended, as
/// with no watch at all, is finalized now, not at the next full scan).
async fn finalize(
    shared: &Shared,
    chain_id: u64,
    policy: &Policy,
    blocks: &Blocks,
    decided: &HashSet<B256>,
    (first_new, head, now): (u64, u64, u64),
) -> Result<(), crate::Error> {
    let depth = policy
        .confirmations
        .saturating_add(policy.reorg_watch_blocks);
    let Some(last) = head.saturating_add(1).checked_sub(depth) else {
        return Ok(());
    };
    let first = first_new.saturating_add(1).saturating_sub(depth);
    let mut hashes: Vec<B256> = (first..=last)
        .filter_map(|number| blocks.canon.hash_at(number))
        .collect();
    hashes.extend(
        decided
            .iter()
            .filter_map(|tx| blocks.receipts.get(tx))
            .filter(|r| {
                r.block_number < first && blocks.still_canonical(r.block_number, r.block_hash)
            })
            .map(|r| r.block_hash),
    );
    hashes.sort_unstable();
    hashes.dedup();
    let finalized = shared.store.finalize_blocks(chain_id, &hashes, now).await?;
    if finalized > 0 {
        shared
            .metrics
            .chain_events
            .get_or_create(&crate::metrics::ChainLabels {
                chain_id,
                result: "finalized".to_owned(),
            })
            .inc_by(finalized);
    }
    Ok(())
}

/// Adds `rows` to `txrelay_follower_rows_total{chain_id, result=kind}`.
fn count_rows(shared: &Shared, chain_id: u64, kind: &str, rows: usize) {
    shared
        .metrics
        .follower_rows
        .get_or_create(&crate::metrics::ChainLabels {
            chain_id,
            result: kind.to_owned(),
        })
        .inc_by(u64::try_from(rows).unwrap_or(u64::MAX));
}

/// Reads every tracked transaction, page by page, and decides on each.
async fn full_scan(
    shared: &Shared,
    node: &NodeClient,
    policy: &Policy,
    head: u64,
    blocks: &mut Blocks,
    now: u64,
) -> Result<(), crate::Error> {
    let mut after = None;
    loop {
        let page = shared
            .store
            .tracked_page(node.chain_id(), after, TRACK_PAGE)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.accepted_at_ms, last.tx_hash));
        count_rows(shared, node.chain_id(), "full", page.len());
        let full = page.len() == TRACK_PAGE as usize;
        decide_page(shared, node, policy, head, blocks, &page, now).await?;
        if !full {
            break;
        }
    }
    Ok(())
}

/// Decides on one page of tracked records at `head`; answers the records not decided: not
/// tracked as read, or whose decision did not apply because the row changed since it was
/// read (a queued one whose send the broadcaster recorded in between). The broadcaster's
/// wake-up reads those again.
async fn decide_page(
    shared: &Shared,
    node: &NodeClient,
    policy: &Policy,
    head: u64,
    blocks: &mut Blocks,
    records: &[TxRecord],
    now: u64,
) -> Result<Vec<B256>, crate::Error> {
    let chain_id = node.chain_id();
    let mut looks: Vec<(&TxRecord, Tracked, Option<Receipt>)> = Vec::new();
    let mut by_hash: Vec<(&TxRecord, Tracked)> = Vec::new();
    // Rows not decided here: read again on the broadcaster's wake-up.
    let mut unsettled = Vec::new();
    for record in records {
        let tracked = if blocks.receipts.contains_key(&record.tx_hash) {
            record.tracked_in_block()
        } else {
            record.tracked()
        };
        let Some(tracked) = tracked else {
            unsettled.push(record.tx_hash);
            continue;
        };
        match look(blocks, record, &tracked, now, policy) {
            Look::Decide(receipt) => looks.push((record, tracked, receipt.map(|r| *r))),
            Look::ByHash => by_hash.push((record, tracked)),
            Look::Skip => {}
        }
    }
    if !by_hash.is_empty() {
        let hashes: Vec<B256> = by_hash.iter().map(|(r, _)| r.tx_hash).collect();
        let mut receipts = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(shared.settings.receipt_batch_size) {
            receipts.extend(node.receipts(chunk).await?);
        }
        for ((record, tracked), receipt) in by_hash.into_iter().zip(receipts) {
            blocks.looked_up.insert(record.tx_hash);
            looks.push((record, tracked, receipt));
        }
    }
    let mut pool_checks: Vec<&TxRecord> = Vec::new();
    let mut decisions: Vec<Decision<'_>> = Vec::new();
    for (record, tracked, receipt) in looks {
        let step = observe(&tracked, receipt.as_ref(), head, now, policy);
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
            receipt,
            revert_reason,
            seen_at_ms: Some(now),
        });
    }
    let (mut rebroadcasts, lost) = apply(shared, chain_id, policy, &decisions, now).await?;
    unsettled.extend(lost);
    if !pool_checks.is_empty() {
        let hashes: Vec<B256> = pool_checks.iter().map(|r| r.tx_hash).collect();
        let known = node.known(&hashes).await?;
        let checks: Vec<(&TxRecord, bool)> = pool_checks
            .iter()
            .zip(known)
            .map(|(record, in_pool)| (*record, rebroadcast_needed(in_pool)))
            .collect();
        let applied = shared.store.pool_checked_many(&checks, now).await?;
        for ((record, _), applied) in checks.iter().zip(applied) {
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
    Ok(unsettled)
}

/// Where the receipt for `record` comes from: the window's block receipts, the stored
/// receipt while its block is canonical, or the node by hash (transactions sent before the
/// window began, once, and those whose rebroadcast timer ran out).
fn look(blocks: &Blocks, record: &TxRecord, tracked: &Tracked, now: u64, policy: &Policy) -> Look {
    if let Some(receipt) = blocks.receipts.get(&record.tx_hash) {
        return Look::Decide(Some(Box::new(receipt.clone())));
    }
    if let Some(inclusion) = tracked.inclusion {
        if !blocks.still_canonical(inclusion.block_number, inclusion.block_hash) {
            return Look::Decide(None);
        }
        return match &record.receipt {
            Some(stored) if stored.block_hash == inclusion.block_hash => {
                Look::Decide(Some(Box::new(stored.clone())))
            }
            _ => Look::ByHash,
        };
    }
    let timer_due = now.saturating_sub(tracked.last_activity_ms) >= policy.rebroadcast_after_ms;
    let before_window = blocks
        .covered_since_ms
        .is_none_or(|since| record.last_activity_ms < since);
    if timer_due || (before_window && !blocks.looked_up.contains(&record.tx_hash)) {
        Look::ByHash
    } else {
        Look::Skip
    }
}

/// Applies `decisions`, one database transaction per chunk, waking receivers after each;
/// answers the rebroadcasts caused and the records whose decision did not apply.
async fn apply(
    shared: &Shared,
    chain_id: u64,
    policy: &Policy,
    decisions: &[Decision<'_>],
    now: u64,
) -> Result<(usize, Vec<B256>), crate::Error> {
    let mut rebroadcasts = 0;
    let mut unsettled = Vec::new();
    for chunk in decisions.chunks(APPLY_CHUNK) {
        // Webhook rows are committed already claimed by this instance and handed to the
        // webhook worker at once: no claim query, no wait for its next look.
        let lease = Lease {
            instance: &shared.settings.instance_id,
            until_ms: now.saturating_add(millis_of(shared.settings.delivery_lease)),
        };
        let (applied, jobs) = shared
            .store
            .apply_steps_leased(chunk, policy.confirmations, now, Some(lease))
            .await?;
        let handed = jobs.len();
        if !jobs.is_empty() && shared.handoff.send(jobs).is_err() {
            // The worker is gone (shutdown): the leases bring the rows back after a restart.
            debug!(
                chain_id,
                "webhook worker stopped; notifications left to their leases"
            );
        }
        let mut notified = 0;
        for (decision, applied) in chunk.iter().zip(applied) {
            if !applied.changed {
                unsettled.push(decision.record.tx_hash);
            } else {
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
        if notified > handed {
            // Account (WebSocket) notifications; webhook rows were handed over above.
            shared.wake_sessions.notify_waiters();
        }
    }
    Ok((rebroadcasts, unsettled))
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
