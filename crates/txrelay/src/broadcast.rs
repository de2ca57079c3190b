//! The broadcast worker: sends queued transactions to a node of their chain (seed ¶27) and
//! retries transient failures (seed ¶44-45), taking jobs from the outbox. The outcomes of
//! one claimed batch are recorded in one database transaction.
//!
//! A job claimed for the second time or later (after a transient failure, or because the
//! instance that claimed it crashed) first asks the node whether it already holds the
//! transaction; if so the job is closed without sending: a crash between "sent" and "recorded"
//! does not cause a second broadcast.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use tracing::{debug, info, warn};

use crate::core::tracker::{Attempt, BroadcastStep, after_broadcast};
use crate::core::{Backoff, now_ms};
use crate::error::NodeError;
use crate::metrics::Metrics;
use crate::node::NodeClient;
use crate::state::Shared;
use crate::store::{BroadcastFacts, BroadcastJob, BroadcastOutcome, TxStatus};

/// Re-claimed jobs sent concurrently by one worker.
const CONCURRENCY: usize = 32;
/// First sends per JSON-RPC batch request.
const SEND_BATCH: usize = 100;
/// Handed jobs taken from the inbox at once (whole batches, so up to one batch more).
const DRAIN_JOBS: usize = 1_000;

/// Runs until the relay stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let settings = &shared.settings;
    let mut handed = shared
        .broadcast_rx
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let claim_every = settings
        .poll_interval
        .max(std::time::Duration::from_millis(100));
    let mut last_claim = std::time::Instant::now();
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            jobs = next_handed(&mut handed) => {
                match jobs {
                    // Committed with their submissions and claimed for this instance: send
                    // them now, no claim query and no read of their bytes.
                    Some(mut jobs) => {
                        // What else is handed already goes out with them: fewer, fuller
                        // batches while the writer is ahead.
                        while jobs.len() < DRAIN_JOBS
                            && let Some(Ok(more)) = handed.as_mut().map(|rx| rx.try_recv())
                        {
                            jobs.extend(more);
                        }
                        let finished = send_prepared(&shared, jobs).await;
                        if record(&shared, &finished).await > 0 {
                            shared.wake_delivery.notify_one();
                            shared.wake_sessions.notify_waiters();
                        }
                        // Under steady hand-offs the outbox (retries, rebroadcasts) is still
                        // claimed every poll interval, not only when hand-offs pause.
                        if last_claim.elapsed() < claim_every {
                            continue;
                        }
                    }
                    None => handed = None,
                }
            }
            () = shared.wake_broadcast.notified() => {}
            () = tokio::time::sleep(claim_every) => {}
        }
        last_claim = std::time::Instant::now();
        loop {
            let now = now_ms(shared.clock.as_ref());
            let jobs = match shared
                .store
                .claim_broadcasts(
                    &settings.instance_id,
                    now,
                    settings.broadcast_lease,
                    settings.broadcast_batch,
                )
                .await
            {
                Ok(jobs) => jobs,
                Err(error) => {
                    warn!(%error, "claiming broadcast jobs failed; retrying");
                    break;
                }
            };
            if jobs.is_empty() {
                break;
            }
            let finished = send_all(&shared, jobs).await;
            let notified = record(&shared, &finished).await;
            if notified > 0 {
                shared.wake_delivery.notify_one();
                shared.wake_sessions.notify_waiters();
            }
        }
    }
}

/// The next jobs handed over by the submission writer; never resolves without a channel.
async fn next_handed(
    handed: &mut Option<tokio::sync::mpsc::Receiver<crate::store::HandedJobs>>,
) -> Option<crate::store::HandedJobs> {
    match handed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Records the outcomes of one claimed batch in one database transaction and tells the
/// head follower what was sent; returns the notifications created.
async fn record(shared: &Shared, finished: &[(BroadcastJob, BroadcastOutcome)]) -> usize {
    if finished.is_empty() {
        return 0;
    }
    let now = now_ms(shared.clock.as_ref());
    match shared.store.finish_broadcasts(finished, now).await {
        Ok(created) => {
            for (job, outcome) in finished {
                if matches!(outcome, BroadcastOutcome::Sent)
                    && let Some(follower) = shared.wake_follow.get(&job.chain_id)
                {
                    // It may be in a block the follower has looked at already.
                    follower.sent(job.tx_hash);
                }
            }
            created.iter().sum()
        }
        Err(error) => {
            warn!(%error, count = finished.len(), "recording broadcasts failed; their leases will expire and they are retried");
            0
        }
    }
}

/// Sends one claimed batch: the transactions' bytes are read in one query; first attempts
/// go to their chain's node as JSON-RPC batches of `eth_sendRawTransaction` (one request
/// per [`SEND_BATCH`] transactions instead of one each); re-claimed jobs ask the node first
/// whether it holds the transaction ([`send`]). Answers the outcomes to record (a job
/// without one is left to its lease).
async fn send_all(
    shared: &Arc<Shared>,
    jobs: Vec<BroadcastJob>,
) -> Vec<(BroadcastJob, BroadcastOutcome)> {
    let hashes: Vec<_> = jobs.iter().map(|j| j.tx_hash).collect();
    let mut facts = match shared.store.broadcast_facts_many(&hashes).await {
        Ok(facts) => facts,
        Err(error) => {
            warn!(%error, count = jobs.len(), "reading the jobs' transactions failed");
            return Vec::new();
        }
    };
    let mut prepared = Vec::with_capacity(jobs.len());
    for job in jobs {
        match facts.remove(&job.tx_hash) {
            Some(fact) => prepared.push((job, fact)),
            None => warn!(tx_hash = %job.tx_hash, "a broadcast job's transaction is missing"),
        }
    }
    send_prepared(shared, prepared).await
}

/// [`send_all`] for jobs whose facts are known.
async fn send_prepared(
    shared: &Arc<Shared>,
    jobs: Vec<(BroadcastJob, BroadcastFacts)>,
) -> Vec<(BroadcastJob, BroadcastOutcome)> {
    let mut finished = Vec::with_capacity(jobs.len());
    let mut retried = Vec::new();
    let mut first: BTreeMap<u64, Vec<(BroadcastJob, BroadcastFacts)>> = BTreeMap::new();
    for (job, fact) in jobs {
        if !shared.nodes.contains_key(&job.chain_id) {
            warn!(chain_id = job.chain_id, tx_hash = %job.tx_hash, "job for an unconfigured chain; left for another instance");
            continue;
        }
        if matches!(
            fact.status,
            TxStatus::Mined | TxStatus::Failed | TxStatus::Included
        ) && job.reason == "resubmitted"
        {
            // Already on chain: a resubmission has nothing to send.
            finished.push((job, BroadcastOutcome::Skipped));
        } else if job.attempts > 1 {
            retried.push((job, fact));
        } else {
            first.entry(job.chain_id).or_default().push((job, fact));
        }
    }
    for (chain_id, items) in first {
        let Some(node) = shared.nodes.get(&chain_id) else {
            continue;
        };
        // One batch after another, and at most one transaction of an account per batch, so
        // each account's transactions reach the node in nonce order: a node may handle a
        // batch's entries concurrently (anvil does), and one that sees nonce n+1 before n
        // can leave n+1 queued behind a gap it already closed (foundry-rs/foundry#10122:
        // 40-50 transactions per block instead of 1,000 at 1,000 tx/s).
        let rounds = one_per_sender(items);
        for chunk in rounds.iter().flat_map(|round| round.chunks(SEND_BATCH)) {
            let raws: Vec<&[u8]> = chunk.iter().map(|(_, f)| f.raw.as_slice()).collect();
            match node.send_raw_many(&raws).await {
                Ok(results) => {
                    for ((job, fact), result) in chunk.iter().zip(results) {
                        let result = result.as_ref().map(|_| ());
                        let outcome = settle(shared, node, job, fact, result).await;
                        finished.push((job.clone(), outcome));
                    }
                }
                Err(error) => {
                    for (job, fact) in chunk {
                        let outcome = settle(shared, node, job, fact, Err(&error)).await;
                        finished.push((job.clone(), outcome));
                    }
                }
            }
        }
    }
    let again: Vec<(BroadcastJob, BroadcastOutcome)> = futures::stream::iter(retried)
        .map(|(job, fact)| {
            let shared = Arc::clone(shared);
            async move {
                let outcome = send(&shared, &job, &fact).await;
                outcome.map(|outcome| (job, outcome))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(std::future::ready)
        .collect()
        .await;
    finished.extend(again);
    finished
}

/// Splits `items` into rounds holding at most one transaction per sender, keeping each
/// sender's order (the submission order): round `k` has every sender's `k`-th transaction,
/// in input order.
fn one_per_sender<T: HasSender>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut seen: std::collections::HashMap<alloy::primitives::Address, usize> =
        std::collections::HashMap::new();
    let mut rounds: Vec<Vec<T>> = Vec::new();
    for item in items {
        let round = seen.entry(item.sender()).or_insert(0);
        if *round == rounds.len() {
            rounds.push(Vec::new());
        }
        if let Some(list) = rounds.get_mut(*round) {
            list.push(item);
        }
        *round += 1;
    }
    rounds
}

/// What [`one_per_sender`] groups by.
trait HasSender {
    /// The transaction's sender.
    fn sender(&self) -> alloy::primitives::Address;
}

impl HasSender for (BroadcastJob, BroadcastFacts) {
    fn sender(&self) -> alloy::primitives::Address {
        self.1.sender
    }
}

/// Sends one re-claimed job's transaction unless the node already holds it; answers the
/// outcome to record (`None`: nothing to record, the lease brings the job back).
async fn send(
    shared: &Shared,
    job: &BroadcastJob,
    facts: &BroadcastFacts,
) -> Option<BroadcastOutcome> {
    let node = shared.nodes.get(&job.chain_id)?;
    let outcome = if matches!(node.known(&[job.tx_hash]).await.as_deref(), Ok([true])) {
        Metrics::chain(&shared.metrics.broadcasts, job.chain_id, "known");
        debug!(tx_hash = %job.tx_hash, "node already holds the transaction; not sending again");
        BroadcastOutcome::Sent
    } else {
        let result = node.send_raw(&facts.raw).await;
        settle(shared, node, job, facts, result.as_ref().map(|_| ())).await
    };
    Some(outcome)
}

/// The outcome of one send (`result`: the node's answer), counted and logged.
async fn settle(
    shared: &Shared,
    node: &NodeClient,
    job: &BroadcastJob,
    facts: &BroadcastFacts,
    result: Result<(), &NodeError>,
) -> BroadcastOutcome {
    let now = now_ms(shared.clock.as_ref());
    let step = after_broadcast(
        result,
        Attempt {
            attempts: job.attempts,
            sent_before: facts.broadcast_count > 0,
        },
        &Backoff::new(shared.settings.broadcast_backoff),
        now,
        rand::random::<f64>(),
    );
    if let Err(error) = result
        && error.rpc_kind() == Some(crate::error::RpcErrorKind::NonceTooLow)
    {
        // The cache said nothing (or too little) about this account: learn its nonce now,
        // off the request path, so the next stale submission is refused at once.
        if let Ok(next) = node.nonce(facts.sender).await {
            shared.nonces.set(job.chain_id, facts.sender, next);
        }
    }
    let (label, outcome) = match step {
        BroadcastStep::Sent => ("sent", BroadcastOutcome::Sent),
        BroadcastStep::RetryAt(at) => ("retry", BroadcastOutcome::RetryAt(at)),
        BroadcastStep::NonceConflict => ("conflict", BroadcastOutcome::NonceConflict),
        BroadcastStep::Rejected(reason) => ("rejected", BroadcastOutcome::Rejected(reason)),
    };
    Metrics::chain(&shared.metrics.broadcasts, job.chain_id, label);
    match (result, &outcome) {
        (Ok(()), _) => debug!(tx_hash = %job.tx_hash, reason = %job.reason, "broadcast"),
        (Err(error), BroadcastOutcome::RetryAt(_)) => {
            warn!(tx_hash = %job.tx_hash, attempts = job.attempts, %error, "broadcast failed; will retry");
        }
        (Err(error), _) => info!(tx_hash = %job.tx_hash, %error, "broadcast refused"),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Address;

    impl HasSender for (Address, u32) {
        fn sender(&self) -> Address {
            self.0
        }
    }

    #[test]
    fn a_round_holds_one_transaction_per_sender_in_each_senders_order() {
        let (a, b, c) = (
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
        );
        let items = vec![(a, 0), (b, 0), (a, 1), (a, 2), (c, 0), (b, 1)];
        let rounds = one_per_sender(items);
        assert_eq!(
            rounds,
            vec![
                vec![(a, 0), (b, 0), (c, 0)],
                vec![(a, 1), (b, 1)],
                vec![(a, 2)],
            ]
        );
        assert!(one_per_sender(Vec::<(Address, u32)>::new()).is_empty());
    }
}
