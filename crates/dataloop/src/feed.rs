//! Streaming a trigger's selection into training (issue 13 item 2, seed ¶41, ¶46, ¶49): record
//! batches (the scheduled trigger's full export, or a manual trigger's rows taken by id) go
//! through a channel of at most [`FEED_BATCHES`] batches to a blocking thread that decodes them
//! and adds their windows to a [`Trainer`]. Memory is one or two batches in flight plus the
//! trainer's bounded state ([`crate::fit`]), whatever the number of rows; nothing is copied to
//! the file store.

use std::collections::BTreeSet;

use deltalake::arrow::array::RecordBatch;
use futures::{Stream, StreamExt};
use indicatif::ProgressBar;

use crate::error::{Error, Result};
use crate::fit::{TrainSummary, Trainer};
use crate::model::{AgentWindow, TrajectoryModel};
use crate::pinned::{self, EvalPin};
use crate::warehouse;

/// Batches in flight between the producer and the trainer (each at most 8,192 rows from the
/// export scan).
pub const FEED_BATCHES: usize = 2;

/// What [`train_streamed`] produced.
#[derive(Debug)]
pub struct Fed {
    /// The fitted model.
    pub model: TrajectoryModel,
    /// What the fit did.
    pub summary: TrainSummary,
    /// Logs whose clips were trained on, sorted.
    pub train_logs: Vec<String>,
    /// Rows received (the pinned logs' rows included).
    pub rows: usize,
}

/// Trains on `batches` (rows `(clip_id, split, category, trajectory)`, as
/// [`warehouse::decode_rows`] reads them), skipping the clips of the logs in `pin` (the
/// evaluation set is whole logs, whatever a clip's ingest-time `split` label), from `warm` when
/// the fit is incremental. `bar` counts rows and is cleared at the end.
///
/// # Errors
/// The first error of `batches`; decoding errors; [`Trainer::finish`]'s errors.
pub async fn train_streamed(
    mut batches: impl Stream<Item = Result<RecordBatch>> + Unpin,
    pin: &EvalPin,
    warm: Option<TrajectoryModel>,
    bar: ProgressBar,
) -> Result<Fed> {
    let (tx, rx) = tokio::sync::mpsc::channel::<RecordBatch>(FEED_BATCHES);
    let pin = pin.clone();
    let progress = bar.clone();
    let worker = tokio::task::spawn_blocking(move || feed_trainer(rx, &pin, warm, &progress));
    let mut produced = Ok(());
    while let Some(batch) = batches.next().await {
        match batch {
            // A closed channel means the trainer failed: its error is returned below.
            Ok(batch) => {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                produced = Err(e);
                break;
            }
        }
    }
    drop(tx);
    let fed = worker.await.map_err(|e| Error::Fit(e.to_string()))?;
    bar.finish_and_clear();
    produced?;
    fed
}

/// The trainer's side of [`train_streamed`]: decodes each batch, skips the pinned logs' clips,
/// adds the rest and solves when the channel closes.
fn feed_trainer(
    mut rx: tokio::sync::mpsc::Receiver<RecordBatch>,
    pin: &EvalPin,
    warm: Option<TrajectoryModel>,
    bar: &ProgressBar,
) -> Result<Fed> {
    let mut trainer = Trainer::new(warm);
    let mut logs = BTreeSet::new();
    let mut rows = 0;
    while let Some(batch) = rx.blocking_recv() {
        rows += batch.num_rows();
        for c in warehouse::decode_rows(std::slice::from_ref(&batch))? {
            if pin.holds(&c.clip_id) {
                continue;
            }
            if let Some(log) = pinned::log_of_clip(&c.clip_id)
                && !logs.contains(log)
            {
                logs.insert(log.to_owned());
            }
            trainer.add(&c.clip_id, &AgentWindow::from_trajectory(&c.trajectory));
        }
        bar.set_length(bar.length().unwrap_or(0).max(rows as u64));
        bar.set_position(rows as u64);
    }
    tracing::info!(rows, windows = trainer.given(), "training windows streamed");
    let (model, summary) = trainer.finish(|_, _| {})?;
    Ok(Fed {
        model,
        summary,
        train_logs: logs.into_iter().collect(),
        rows,
    })
}
