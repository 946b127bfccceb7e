//! Group commit: one writer owns the write path; every request that arrives while a transaction
//! is being written joins the next one. Callers wait for the commit that holds their row.
//!
//! Under light load each request is its own batch (lowest latency); under heavy load batches
//! grow by themselves up to `max_batch` (highest throughput). On SQLite, commits also come at
//! most every [`MIN_COMMIT_GAP`], so that steady load makes batches of many writes rather than
//! a stream of small commits that each write their shared pages again.
//!
//! On SQLite the writer is a thread that owns the one writing connection and runs each batch
//! itself ([`super::sqlite_writer`]); on PostgreSQL it is a task that writes through sqlx.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::postgres::PgStore;
use super::sqlite_writer::{SqliteWriter, WalFile};
use super::{StoreError, WriteOutcome, WriteRequest};

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
    /// Batches that failed as a whole and were written again write by write.
    pub split: u64,
}

/// Who writes the batches.
pub(super) enum Writer {
    Sqlite(SqliteWriter),
    Postgres(PgStore),
}

type Reply = oneshot::Sender<Result<WriteOutcome, StoreError>>;

struct Job {
    request: WriteRequest,
    /// None for a write nobody waits for; a failure is logged instead.
    reply: Option<Reply>,
    /// Written in a transaction of its own (for measuring what group commit buys).
    alone: bool,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    writes: AtomicU64,
    largest: AtomicU64,
    split: AtomicU64,
}

impl Counters {
    fn count(&self, writes: usize) {
        let writes = writes as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
        self.largest.fetch_max(writes, Ordering::Relaxed);
    }
}

pub(super) struct GroupCommitter {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    /// Resolves (as an error: its sender is dropped) when the writer has stopped.
    stopped: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
    counters: Arc<Counters>,
}

impl GroupCommitter {
    pub(super) fn start(
        writer: Writer,
        settings: GroupCommitSettings,
    ) -> Result<GroupCommitter, StoreError> {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let (stopped_tx, stopped) = oneshot::channel::<()>();
        let counters = Arc::new(Counters::default());
        let batches = Batches {
            rx,
            max: settings.max_batch.max(1),
            carry: None,
            counters: counters.clone(),
        };
        match writer {
            Writer::Sqlite(sqlite) => {
                std::thread::Builder::new()
                    .name("hookwise-sqlite-writer".into())
                    .spawn(move || {
                        write_on_thread(sqlite, batches);
                        drop(stopped_tx);
                    })
                    .map_err(StoreError::Thread)?;
            }
            Writer::Postgres(pg) => {
                tokio::spawn(async move {
                    write_in_task(pg, batches).await;
                    drop(stopped_tx);
                });
            }
        }
        Ok(GroupCommitter {
            sender: Mutex::new(Some(tx)),
            stopped: tokio::sync::Mutex::new(Some(stopped)),
            counters,
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        match self.sender.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
        .ok_or(StoreError::Closed)
    }

    /// Queues `request` and waits until the transaction holding it committed.
    pub(super) async fn submit(&self, request: WriteRequest) -> Result<WriteOutcome, StoreError> {
        self.submit_job(request, false).await
    }

    /// Like [`GroupCommitter::submit`], in a transaction of its own.
    pub(super) async fn submit_alone(
        &self,
        request: WriteRequest,
    ) -> Result<WriteOutcome, StoreError> {
        self.submit_job(request, true).await
    }

    async fn submit_job(
        &self,
        request: WriteRequest,
        alone: bool,
    ) -> Result<WriteOutcome, StoreError> {
        let sender = self.sender()?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            reply: Some(reply),
            alone,
        };
        sender.send(job).await.map_err(|_| StoreError::Closed)?;
        drop(sender);
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `request` without waiting for its commit; waits only while the queue is full.
    /// A failure to write it is logged.
    pub(super) async fn submit_detached(&self, request: WriteRequest) -> Result<(), StoreError> {
        let job = Job {
            request,
            reply: None,
            alone: false,
        };
        self.sender()?
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Stops taking writes, then waits until everything already taken is committed.
    pub(super) async fn close(&self) {
        match self.sender.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(stopped) = self.stopped.lock().await.take() {
            // The writer stops once every sender clone is gone and the queue is drained.
            let _ = stopped.await;
        }
    }

    pub(super) fn stats(&self) -> BatchStats {
        BatchStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            largest: self.counters.largest.load(Ordering::Relaxed),
            split: self.counters.split.load(Ordering::Relaxed),
        }
    }
}

/// The queue, cut into batches.
struct Batches {
    rx: mpsc::Receiver<Job>,
    max: usize,
    /// A job taken from the queue that must start the next batch.
    carry: Option<Job>,
    counters: Arc<Counters>,
}

impl Batches {
    /// `first` and the jobs queued behind it, up to `max`; a job to be written alone is a
    /// batch of its own.
    fn after(&mut self, first: Job) -> (Vec<WriteRequest>, Vec<Option<Reply>>) {
        let mut requests = Vec::with_capacity(self.max.min(64));
        let mut replies = Vec::with_capacity(self.max.min(64));
        let alone = first.alone;
        requests.push(first.request);
        replies.push(first.reply);
        while !alone && requests.len() < self.max {
            match self.rx.try_recv() {
                Ok(job) if job.alone => {
                    self.carry = Some(job);
                    break;
                }
                Ok(job) => {
                    requests.push(job.request);
                    replies.push(job.reply);
                }
                Err(_) => break,
            }
        }
        self.counters.count(requests.len());
        (requests, replies)
    }
}

/// Answers each caller of a written batch through `answer`. Returns the batch back when it
/// failed as a whole and holds several writes: one bad write must not fail its neighbours, so
/// each is then written on its own and every caller gets its own answer.
fn answer_batch(
    requests: Vec<WriteRequest>,
    replies: Vec<Option<Reply>>,
    result: Result<Vec<WriteOutcome>, StoreError>,
    counters: &Counters,
    answer: &mut impl FnMut(Option<Reply>, Result<WriteOutcome, StoreError>),
) -> Option<(Vec<WriteRequest>, Vec<Option<Reply>>)> {
    match result {
        Ok(outcomes) if outcomes.len() == requests.len() => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                answer(reply, Ok(outcome));
            }
            None
        }
        Ok(outcomes) => {
            let detail = format!("{} outcomes for {} writes", outcomes.len(), requests.len());
            for reply in replies {
                answer(
                    reply,
                    Err(StoreError::Corrupt {
                        table: "events",
                        detail: detail.clone(),
                    }),
                );
            }
            None
        }
        Err(err) if requests.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                answer(reply, Err(err));
            }
            None
        }
        Err(err) => {
            counters.split.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                error = %err,
                writes = requests.len(),
                "a group-commit batch failed; writing its writes one by one"
            );
            Some((requests, replies))
        }
    }
}

/// The outcome of a batch of one.
fn single(result: Result<Vec<WriteOutcome>, StoreError>) -> Result<WriteOutcome, StoreError> {
    result.and_then(|mut o| {
        o.pop().ok_or(StoreError::Corrupt {
            table: "events",
            detail: "no outcome".into(),
        })
    })
}

fn answer(reply: Option<Reply>, result: Result<WriteOutcome, StoreError>) {
    match (reply, result) {
        (Some(reply), result) => {
            let _ = reply.send(result);
        }
        (None, Err(e)) => tracing::error!(error = %e, "a queued write failed"),
        (None, Ok(_)) => {}
    }
}

/// The least time between two SQLite commits. A commit writes every page it touched to the
/// WAL in full, and most of a write's pages (the table's and the time indexes' last pages)
/// are shared with the writes beside it: committing 2.7 writes at a time, a 10-minute soak
/// wrote 63 KB to the disk per 2.8 KB event (200 MB/s at 3,200 events/s); with this gap, 20
/// writes a commit and 24 KB per event (80 MB/s). Requests that arrive at least this far apart
/// are committed at once, as before; under load, commits come at most this often and carry
/// what arrived meanwhile.
const MIN_COMMIT_GAP: std::time::Duration = std::time::Duration::from_millis(2);

/// An answer that waits for the WAL sync that makes its write durable.
type Pending = (Option<Reply>, Result<WriteOutcome, StoreError>);

/// SQLite: commits batch after batch, and hands each batch's answers to a second thread that
/// syncs the WAL before it sends them. So the sync of one batch overlaps the writing of the
/// next, and no caller hears of a commit before it is on disk.
fn write_on_thread(mut writer: SqliteWriter, mut batches: Batches) {
    let (to_sync, synced) = std::sync::mpsc::channel::<Vec<Pending>>();
    let wal = writer.wal();
    let syncer = std::thread::Builder::new()
        .name("hookwise-sqlite-sync".into())
        .spawn(move || sync_on_thread(&wal, &synced));
    let syncer = match syncer {
        Ok(handle) => Some(handle),
        Err(e) => {
            // Without a thread of its own, each batch is synced here before its answers.
            tracing::warn!(error = %e, "cannot start the WAL sync thread; syncing inline");
            None
        }
    };
    let inline_wal = writer.wal();
    let mut last_commit = std::time::Instant::now();
    loop {
        let first = match batches.carry.take() {
            Some(job) => job,
            None => match batches.rx.blocking_recv() {
                Some(job) => job,
                None => break,
            },
        };
        // Under steady load, let what arrives in the rest of the gap join this batch.
        if let Some(rest) = MIN_COMMIT_GAP.checked_sub(last_commit.elapsed()) {
            std::thread::sleep(rest);
        }
        let (requests, replies) = batches.after(first);
        let result = writer.write_batch(&requests);
        last_commit = std::time::Instant::now();
        let mut pending: Vec<Pending> = Vec::with_capacity(replies.len());
        let mut keep = |reply: Option<Reply>, result| pending.push((reply, result));
        let counters = &batches.counters;
        if let Some((requests, replies)) =
            answer_batch(requests, replies, result, counters, &mut keep)
        {
            for (request, reply) in requests.into_iter().zip(replies) {
                let result = single(writer.write_batch(std::slice::from_ref(&request)));
                keep(reply, result);
            }
        }
        if syncer.is_some() {
            if let Err(std::sync::mpsc::SendError(pending)) = to_sync.send(pending) {
                answer_synced(&inline_wal, pending);
            }
        } else {
            answer_synced(&inline_wal, pending);
        }
        writer.checkpoint_if_due();
    }
    drop(to_sync);
    if let Some(syncer) = syncer {
        let _ = syncer.join();
    }
}

/// Syncs the WAL once for every batch that is waiting, then answers their callers.
fn sync_on_thread(wal: &WalFile, batches: &std::sync::mpsc::Receiver<Vec<Pending>>) {
    while let Ok(mut pending) = batches.recv() {
        while let Ok(more) = batches.try_recv() {
            pending.extend(more);
        }
        answer_synced(wal, pending);
    }
}

/// Answers after the WAL is synced. When the sync fails, no write is reported as done: the
/// rows are committed but may not be on disk, so callers hear an error and their senders
/// retry (ingest is idempotent on the delivery id).
fn answer_synced(wal: &WalFile, pending: Vec<Pending>) {
    let synced = if pending.iter().any(|(_, r)| r.is_ok()) {
        wal.sync()
    } else {
        Ok(())
    };
    match synced {
        Ok(()) => {
            for (reply, result) in pending {
                answer(reply, result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "syncing the WAL failed");
            for (reply, result) in pending {
                let result = result.and_then(|_| Err(StoreError::Sync(e.to_string())));
                answer(reply, result);
            }
        }
    }
}

async fn write_in_task(pg: PgStore, mut batches: Batches) {
    loop {
        let first = match batches.carry.take() {
            Some(job) => job,
            None => match batches.rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let (requests, replies) = batches.after(first);
        let result = pg.write_batch(&requests).await;
        let counters = &batches.counters;
        if let Some((requests, replies)) =
            answer_batch(requests, replies, result, counters, &mut answer)
        {
            for (request, reply) in requests.into_iter().zip(replies) {
                let result = single(pg.write_batch(std::slice::from_ref(&request)).await);
                answer(reply, result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting() -> (
        Option<Reply>,
        oneshot::Receiver<Result<WriteOutcome, StoreError>>,
    ) {
        let (reply, answer) = oneshot::channel();
        (Some(reply), answer)
    }

    #[test]
    fn commits_are_answered_only_once_the_wal_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(dir.path().join("x.db-wal"), b"frames").unwrap();
        let (reply, mut answer) = waiting();
        answer_synced(
            &WalFile::of_database(&db),
            vec![(reply, Ok(WriteOutcome::Recorded))],
        );
        assert!(matches!(answer.try_recv(), Ok(Ok(WriteOutcome::Recorded))));
    }

    #[test]
    fn a_failed_sync_answers_every_committed_write_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // No WAL file: the sync fails, as a failing disk would.
        let wal = WalFile::of_database(&dir.path().join("missing.db"));
        let (first, mut first_answer) = waiting();
        let (second, mut second_answer) = waiting();
        answer_synced(
            &wal,
            vec![
                (first, Ok(WriteOutcome::Recorded)),
                (second, Err(StoreError::NotFound("execution x".into()))),
            ],
        );
        assert!(matches!(
            first_answer.try_recv(),
            Ok(Err(StoreError::Sync(_)))
        ));
        // A write that had failed keeps its own error.
        assert!(matches!(
            second_answer.try_recv(),
            Ok(Err(StoreError::NotFound(_)))
        ));
    }
}
