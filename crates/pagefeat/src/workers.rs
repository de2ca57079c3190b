//! Background workers (seed ¶68): rendering hands layout snapshots over a bounded channel;
//! worker threads build the StatTrees and run recognition, so none of it runs on the rendering
//! path. A full channel makes the sender wait (back-pressure) instead of growing memory.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::layout::LayoutSnapshot;
use crate::recognize::{PageResult, Recognizer};

/// One unit of work: the page's snapshots.
#[derive(Debug)]
pub struct Job {
    /// The page's name.
    pub page: String,
    /// The snapshot to build the panorama tree from.
    pub main: LayoutSnapshot,
    /// The parse-end snapshot (Chromium), for popups that appeared later.
    pub parse_end: Option<LayoutSnapshot>,
    /// The page's dead-link feature row ([`crate::deadlink::row`]), when a soft-404 model is
    /// loaded.
    pub deadlink_row: Option<Vec<f64>>,
    /// Capture time.
    pub captured: SystemTime,
}

type Envelope = (Job, oneshot::Sender<PageResult>);

/// A pool of worker threads fed by a bounded channel.
#[derive(Debug)]
pub struct Workers {
    sender: Option<mpsc::Sender<Envelope>>,
    threads: Vec<JoinHandle<()>>,
}

/// A result that will arrive from a worker.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<PageResult>);

impl Pending {
    /// Waits for the result from synchronous code.
    ///
    /// # Errors
    /// [`Error::WorkersGone`] when the worker died.
    pub fn wait(self) -> Result<PageResult> {
        self.0.blocking_recv().map_err(|_| Error::WorkersGone)
    }

    /// Waits for the result from async code.
    ///
    /// # Errors
    /// [`Error::WorkersGone`] when the worker died.
    pub async fn wait_async(self) -> Result<PageResult> {
        self.0.await.map_err(|_| Error::WorkersGone)
    }
}

impl Workers {
    /// Starts `threads` workers (at least 1) sharing `recognizer`, with room for `capacity`
    /// queued jobs (at least 1).
    pub fn start(threads: usize, capacity: usize, recognizer: &Arc<Recognizer>) -> Self {
        let (sender, receiver) = mpsc::channel::<Envelope>(capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let threads = (0..threads.max(1))
            .map(|n| {
                let receiver = Arc::clone(&receiver);
                let recognizer = Arc::clone(recognizer);
                std::thread::Builder::new()
                    .name(format!("pagefeat-worker-{n}"))
                    .spawn(move || {
                        loop {
                            let next = receiver
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .blocking_recv();
                            let Some((job, reply)) = next else { break };
                            let result = recognizer.recognize(
                                &job.page,
                                &job.main,
                                job.parse_end.as_ref(),
                                job.deadlink_row.as_deref(),
                                job.captured,
                            );
                            tracing::debug!(page = %job.page, nodes = result.tree.nodes.len(), "recognised");
                            let _ = reply.send(result);
                        }
                    })
            })
            .filter_map(std::result::Result::ok)
            .collect();
        Self {
            sender: Some(sender),
            threads,
        }
    }

    /// Queues `job` from synchronous code, waiting while the channel is full.
    ///
    /// # Errors
    /// [`Error::WorkersGone`] when the workers stopped.
    pub fn submit(&self, job: Job) -> Result<Pending> {
        let (reply, pending) = oneshot::channel();
        self.sender
            .as_ref()
            .ok_or(Error::WorkersGone)?
            .blocking_send((job, reply))
            .map_err(|_| Error::WorkersGone)?;
        Ok(Pending(pending))
    }

    /// Queues `job` from async code, waiting while the channel is full.
    ///
    /// # Errors
    /// [`Error::WorkersGone`] when the workers stopped.
    pub async fn submit_async(&self, job: Job) -> Result<Pending> {
        let (reply, pending) = oneshot::channel();
        self.sender
            .as_ref()
            .ok_or(Error::WorkersGone)?
            .send((job, reply))
            .await
            .map_err(|_| Error::WorkersGone)?;
        Ok(Pending(pending))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.sender = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
