//! Group commit of submissions: the API hands each validated submission to a bounded queue;
//! one writer task takes up to `max_batch` of them (waiting at most `linger` for more after
//! the first), records them in one database transaction ([`Store::submit_batch`]) and then
//! answers every waiting request. A request is answered only after its rows are committed,
//! so nothing accepted is lost when the process is killed; a full queue answers at once
//! ([`QueueError::Full`], 503 with `Retry-After` at the API).
//!
//! When a batch fails as a whole (one bad item, a serialization failure on PostgreSQL), its
//! items are written again one database transaction each, so a failure answers only the
//! submission that caused it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Store;
use super::jobs::{BroadcastFacts, BroadcastJob};
use super::outbox::Lease;
use super::submissions::Submission;
use crate::core::window::Admission;
use crate::error::StoreError;

/// Batching of the group-commit writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSettings {
    /// Most submissions per database transaction (at least 1).
    pub max_batch: usize,
    /// How long the writer waits for more after the first submission of a batch (zero:
    /// it takes what is queued and commits at once).
    pub linger: Duration,
    /// Submissions the queue holds before [`QueueError::Full`] (at least 1).
    pub queue: usize,
}

/// The broadcast jobs a committed batch hands to the broadcaster, with their facts.
pub type HandedJobs = Vec<(BroadcastJob, BroadcastFacts)>;

/// Committed batches the broadcaster's inbox holds (at most 256 jobs each).
pub const HANDOFF_BATCHES: usize = 64;

/// Where the writer hands the first broadcast jobs of each committed batch: inserted
/// already claimed by `instance` for `lease`, sent over `jobs` after the commit (the
/// broadcaster sends them without a claim query; a job whose instance stops comes back when
/// its lease ends). `jobs` is bounded: while it is full the writer waits for room before it
/// takes the next batch (backpressure: the submission queue fills and answers "full"), so
/// every account's transactions reach the broadcaster in commit order. (Writing a batch
/// unclaimed instead let later nonces be sent before it, and a node then holds them all
/// behind the gap.)

#[derive(Debug, Clone)]
pub struct Handoff {
    /// This instance (`locked_by`).
    pub instance: String,
    /// How long the broadcaster has to record a handed job before others may take it.
    pub lease: Duration,
    /// The broadcaster's inbox (bounded, see [`HANDOFF_BATCHES`]).
    pub jobs: mpsc::Sender<HandedJobs>,
}

/// Why a submission was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue is full: the writer is behind; retry shortly.
    #[error("the submission queue is full")]
    Full,
    /// The writer has stopped (the relay is shutting down).
    #[error("the submission writer has stopped")]
    Closed,
    /// The database refused the submission.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A submission waiting for its commit.
#[derive(Debug)]
struct Waiting {
    item: Submission,
    reply: oneshot::Sender<Result<Admission, StoreError>>,
}

/// The submitting side of the group-commit writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Waiting>,
}

impl GroupCommit {
    /// Starts the writer on `store`. It stops when `cancel` fires (after committing what is
    /// already queued) or when every [`GroupCommit`] is dropped.
    pub fn start(
        store: Store,
        settings: GroupSettings,
        handoff: Option<Handoff>,
        cancel: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (queue, waiting) = mpsc::channel(settings.queue.max(1));
        let writer = tokio::spawn(run(store, settings, handoff, waiting, cancel));
        (Self { queue }, writer)
    }

    /// Queues `item` and waits until it is committed; answers its admission.
    ///
    /// # Errors
    /// [`QueueError::Full`] at once when the queue is full, [`QueueError::Closed`] when the
    /// writer has stopped, [`QueueError::Store`] when the database refused it.
    pub async fn submit(&self, item: Submission) -> Result<Admission, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Waiting { item, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => QueueError::Full,
                mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            })?;
        Ok(answer.await.map_err(|_| QueueError::Closed)??)
    }
}

async fn run(
    store: Store,
    settings: GroupSettings,
    handoff: Option<Handoff>,
    mut waiting: mpsc::Receiver<Waiting>,
    cancel: CancellationToken,
) {
    let max = settings.max_batch.max(1);
    let mut batch = Vec::with_capacity(max);
    let mut closing = false;
    loop {
        let taken = tokio::select! {
            taken = waiting.recv_many(&mut batch, max) => taken,
            () = cancel.cancelled(), if !closing => {
                // Take no more; commit what is queued, then stop.
                closing = true;
                waiting.close();
                continue;
            }
        };
        if taken == 0 {
            break;
        }
        if batch.len() < max && !settings.linger.is_zero() && !closing {
            let until = tokio::time::Instant::now() + settings.linger;
            while batch.len() < max {
                let more = batch.len();
                match tokio::time::timeout_at(until, waiting.recv_many(&mut batch, max - more))
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        write(&store, handoff.as_ref(), &mut batch).await;
    }
    debug!("submission writer stopped");
}

/// Commits `batch` (emptying it), hands its first broadcast jobs over and answers each
/// submission.
async fn write(store: &Store, handoff: Option<&Handoff>, batch: &mut Vec<Waiting>) {
    let items: Vec<Submission> = batch.iter().map(|w| w.item.clone()).collect();
    // The submissions' own clock (the API's), newest of the batch.
    let now = items.iter().map(|i| i.now_ms).max().unwrap_or_default();
    let lease = handoff.map(|h| Lease {
        instance: &h.instance,
        until_ms: now.saturating_add(u64::try_from(h.lease.as_millis()).unwrap_or(u64::MAX)),
    });
    match store.submit_batch_leased(&items, lease).await {
        Ok((answers, handed)) => {
            for (waiting, answer) in batch.drain(..).zip(answers) {
                let _ = waiting.reply.send(Ok(answer));
            }
            // The batch is committed and its submitters answered; a full inbox makes the
            // writer wait here, in commit order.
            if let Some(handoff) = handoff
                && !handed.is_empty()
                && handoff.jobs.send(handed).await.is_err()
            {
                debug!("broadcaster gone; handed jobs left to their leases");
            }
        }
        Err(error) if batch.len() == 1 => {
            if let Some(waiting) = batch.pop() {
                let _ = waiting.reply.send(Err(error));
            }
        }
        Err(error) => {
            warn!(%error, count = batch.len(), "a submission batch failed; writing its items one by one");
            for waiting in batch.drain(..) {
                let answer = store
                    .submit_batch(std::slice::from_ref(&waiting.item))
                    .await
                    .and_then(|mut a| {
                        a.pop().ok_or(StoreError::Corrupt {
                            what: "submission batch",
                            value: "no answer".to_owned(),
                        })
                    });
                let _ = waiting.reply.send(answer);
            }
        }
    }
}
