//! Group commit: one task owns the write path; every request that arrives while a transaction is
//! being written joins the next one. Callers wait for the commit that holds their row.
//!
//! No timer is involved: under light load each request is its own batch (lowest latency); under
//! heavy load batches grow by themselves up to `max_batch` (highest throughput).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Backend, StoreError, WriteOutcome, WriteRequest};

/// Tuning of the group committer.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitSettings {
    /// Most writes in one transaction.
    pub max_batch: usize,
    /// Most writes waiting for a transaction; submitters wait when it is full (back-pressure).
    pub queue: usize,
}

impl Default for GroupCommitSettings {
    fn default() -> Self {
        // 256 rows of 2 KiB make a ~0.5 MiB transaction: large enough to amortise the fsync,
        // small enough that the first caller in a batch is not kept waiting long.
        GroupCommitSettings {
            max_batch: 256,
            queue: 8192,
        }
    }
}

/// Counters of what the committer wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub batches: u64,
    pub writes: u64,
    pub largest: u64,
}

struct Job {
    request: WriteRequest,
    reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    writes: AtomicU64,
    largest: AtomicU64,
}

pub(super) struct GroupCommitter {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    counters: std::sync::Arc<Counters>,
}

impl GroupCommitter {
    pub(super) fn start(backend: Backend, settings: GroupCommitSettings) -> GroupCommitter {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let counters = std::sync::Arc::new(Counters::default());
        let task = tokio::spawn(run(
            backend,
            rx,
            settings.max_batch.max(1),
            counters.clone(),
        ));
        GroupCommitter {
            sender: Mutex::new(Some(tx)),
            task: tokio::sync::Mutex::new(Some(task)),
            counters,
        }
    }

    pub(super) async fn submit(&self, request: WriteRequest) -> Result<WriteOutcome, StoreError> {
        let sender = match self.sender.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
        .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Job { request, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        drop(sender);
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops taking writes, then waits until everything already taken is committed.
    pub(super) async fn close(&self) {
        match self.sender.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(task) = self.task.lock().await.take() {
            // The task ends once every sender clone is gone and the queue is drained.
            let _ = task.await;
        }
    }

    pub(super) fn stats(&self) -> BatchStats {
        BatchStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            largest: self.counters.largest.load(Ordering::Relaxed),
        }
    }
}

async fn run(
    backend: Backend,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    counters: std::sync::Arc<Counters>,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<WriteRequest>, Vec<_>) =
            jobs.drain(..).map(|j| (j.request, j.reply)).unzip();
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .writes
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        counters
            .largest
            .fetch_max(requests.len() as u64, Ordering::Relaxed);

        match backend.write_batch(&requests).await {
            Ok(outcomes) if outcomes.len() == requests.len() => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Ok(outcomes) => {
                let detail = format!("{} outcomes for {} writes", outcomes.len(), requests.len());
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Corrupt {
                        table: "events",
                        detail: detail.clone(),
                    }));
                }
            }
            Err(err) if requests.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(err));
                }
            }
            Err(_) => {
                // One bad write must not fail its neighbours: write each on its own, so every
                // caller gets its own answer.
                for (request, reply) in requests.into_iter().zip(replies) {
                    let result = backend
                        .write_batch(std::slice::from_ref(&request))
                        .await
                        .and_then(|mut o| {
                            o.pop().ok_or(StoreError::Corrupt {
                                table: "events",
                                detail: "no outcome".into(),
                            })
                        });
                    let _ = reply.send(result);
                }
            }
        }
    }
}
