//! The durable store: delivery attempts, events, executions, execution attempts and dead letters,
//! on SQLite (embedded default) or PostgreSQL, behind one interface.
//!
//! Ingest writes go through a group committer ([`group`]): concurrent callers share one
//! transaction and one fsync, and each is answered only after that transaction committed.

mod activity;
pub mod backup;
mod group;
mod payload;
mod postgres;
mod queries;
mod records;
mod search;
mod sql;
mod sqlite;
mod sqlite_writer;
mod text;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use activity::{
    Activity, AttemptCount, KEEP as ACTIVITY_KEEP, MAX_REFUSAL_REASONS, PluginCalls,
};
pub use group::{BatchStats, GroupCommitSettings};
pub use records::*;
pub use search::{
    MAX_SEARCH_SCAN, MAX_SEARCH_TEXT, PayloadSearch, ScanStop, SearchText, SearchTextError,
    SearchedEvents,
};
pub use text::NUL_REPLACEMENT;

use crate::model::{
    AttemptOutcome, EventId, EventOutcome, EventStatus, ExecutionId, ExecutionTally, Millis,
};

/// Row counts of the multi-row INSERTs a batch is split into. A few fixed sizes keep the number
/// of distinct statements small, so each one is prepared once and then found in the
/// connection's statement cache; one statement per batch size would be re-prepared (a
/// 128-row VALUES list is thousands of placeholders to parse) on most batches.
const STATEMENT_ROWS: [usize; 5] = [128, 32, 8, 2, 1];

/// Splits `rows` into slices whose lengths are all in [`STATEMENT_ROWS`], largest first.
pub(crate) fn statement_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = STATEMENT_ROWS
            .iter()
            .copied()
            .find(|n| *n <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// Errors from the store. The text is for operators' logs, never for HTTP clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL `{0}`: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the store is shutting down")]
    Closed,
    #[error("cannot start the store's writer: {0}")]
    Thread(std::io::Error),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("the lease on execution {0} is no longer held by this worker")]
    LeaseLost(ExecutionId),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the write was committed but could not be made durable: {0}")]
    Sync(String),
}

/// A write that goes through the group committer.
#[derive(Debug, Clone)]
pub enum WriteRequest {
    /// Store a verified event once, and the delivery attempt that brought it; with `plan`,
    /// the event is stored matched, its executions planned, in the same transaction.
    Ingest {
        event: NewEvent,
        attempt: NewDeliveryAttempt,
        plan: Option<Box<EventPlan>>,
    },
    /// Record a delivery attempt that produced no event (rejected, handshake).
    Attempt(NewDeliveryAttempt),
    /// Record an execution attempt and move the execution on (see [`Store::finish`]).
    Finish(Box<FinishRequest>),
    /// Lease due executions (see [`Store::claim`]).
    Claim(Box<ClaimRequest>),
    /// Store match traces and plan executions (see [`Store::plan`]).
    Plan(Vec<EventPlan>),
}

/// Whether an accepted request's delivery attempt goes into its event's row instead of a
/// `delivery_attempts` row of its own (docs/store.md): it must hold nothing the event's row has
/// no column for (headers are the event's, the body its payload).
pub(crate) fn folds_into_event(event: &NewEvent, attempt: &NewDeliveryAttempt) -> bool {
    attempt.verdict == crate::model::Verdict::Accepted
        && attempt.headers.as_object().is_some_and(|h| h.is_empty())
        && attempt.body.is_none()
        && attempt.reason.is_none()
        && attempt.source == event.source
        && attempt.received_at == event.received_at
}

/// The most output an attempt kept in its execution's row may have, as JSON text: the row is
/// read by every claim and listing, and stays small.
const FIRST_OUTPUT_LIMIT: usize = 256;

/// The length of `value` as JSON text, counted without building the text.
fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A `Value` always serializes (its keys are strings) and counting never fails; were it
    // to, the length would be unknown and the attempt gets a row of its own.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Whether the finished `attempt` goes into its execution's row (the `first_*` columns)
/// instead of a row of its own: a first attempt that succeeded, whose plugin logged, called
/// and ran nothing ([`NewExecutionAttempt::recorded_nothing`]), with an output of at most
/// [`FIRST_OUTPUT_LIMIT`] bytes of JSON. `output_len` measures that output; it is called only
/// once everything else holds, so a store that does not serialize the output anyway pays for
/// measuring it only then.
pub(crate) fn folds_into_execution(
    attempt: &NewExecutionAttempt,
    next: &NextStep,
    output_len: impl FnOnce() -> usize,
) -> bool {
    attempt.attempt == 1
        && attempt.outcome == AttemptOutcome::Succeeded
        && *next == NextStep::Succeeded
        && attempt.error.is_none()
        && attempt.recorded_nothing()
        && output_len() <= FIRST_OUTPUT_LIMIT
}

/// The parts of [`Store::claim`].
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub owner: String,
    pub limit: i64,
    pub lease: Duration,
    pub now: Millis,
    pub busy: ClaimExclusions,
}

/// The parts of [`Store::finish`].
#[derive(Debug, Clone)]
pub struct FinishRequest {
    pub id: ExecutionId,
    pub owner: String,
    pub attempt: NewExecutionAttempt,
    pub next: NextStep,
    /// One of hookwise's own events that this finish causes (the execution is dead, or failing):
    /// stored pending, in the same transaction, if the lease was held, and never otherwise.
    pub announces: Option<Announcement>,
}

/// An event to store as it comes, unmatched, with the record of its delivery.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub event: NewEvent,
    pub attempt: NewDeliveryAttempt,
}

/// What a write came to.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    Ingested(IngestOutcome),
    Recorded,
    Finished,
    /// A finish whose lease was no longer held: nothing was written.
    LeaseLost,
    /// The executions a claim leased, oldest first.
    Claimed(Vec<Execution>),
    /// The executions a plan created.
    Planned(Vec<ExecutionId>),
}

/// The answer to an ingest: the event's id (the earlier one for a duplicate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IngestOutcome {
    pub event_id: EventId,
    pub duplicate: bool,
    /// The stored event's place in the arrival order (none for a duplicate).
    #[serde(skip)]
    pub seq: Option<i64>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Runs `$body` with `$b` bound to the concrete backend.
macro_rules! with_backend {
    ($self:expr, $b:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($b) => $body,
            Backend::Postgres($b) => $body,
        }
    };
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    committer: Arc<group::GroupCommitter>,
}

/// Filters for listing events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub source: Option<String>,
    /// Only events of this type (exact match; read over the `(event_type, seq)` index).
    pub event_type: Option<String>,
    pub status: Option<crate::model::EventStatus>,
    /// Only events with this outcome (decided in the query, so pages stay full).
    pub outcome: Option<EventOutcome>,
    /// Received at or after.
    pub since: Option<Millis>,
    /// Received before.
    pub until: Option<Millis>,
    /// Only events that arrived before this one (for paging, newest first).
    pub before_seq: Option<i64>,
    /// Only events that arrived after this one (for live updates).
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// The match result of one event, to store with its planned executions.
#[derive(Debug, Clone)]
pub struct EventPlan {
    pub event: EventId,
    /// The match trace as JSON text: it is only ever stored, so it is serialized once, straight
    /// from the evaluation (building a `Value` tree of it first took about 2% of an event's CPU).
    pub match_trace: Box<serde_json::value::RawValue>,
    pub executions: Vec<NewExecution>,
}

/// What a claim must skip because this node has no capacity for it right now, and the
/// concurrency limits that hold across every node sharing the store.
#[derive(Debug, Clone, Default)]
pub struct ClaimExclusions {
    /// Plugins at their concurrency limit.
    pub plugins: Vec<String>,
    /// (rule id, action index) pairs at their concurrency limit.
    pub actions: Vec<(String, i32)>,
    /// Every concurrency limit configured. A claim on a store several nodes share leases no
    /// more than each allows, counting what every node runs; on SQLite (one node) the node's
    /// own counts above are exact and these are not needed.
    pub shared: Vec<SharedLimit>,
}

/// A concurrency limit counted over every node: at most `limit` executions of `scope` leased
/// at once.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedLimit {
    pub scope: LimitScope,
    pub limit: u32,
}

/// What a [`SharedLimit`] counts.
#[derive(Debug, Clone, PartialEq)]
pub enum LimitScope {
    /// The executions of a plugin (its `limits.concurrency`).
    Plugin(String),
    /// The executions of one action of a rule (its `concurrency`): rule id, action index.
    Action(String, i32),
}

/// Filters for listing dead letters.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub source: Option<String>,
    pub rule_id: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Only dead letters after this one in the listing (for paging, newest first).
    pub before: Option<Cursor>,
    pub limit: i64,
}

/// Dead letters picked on the dashboard: a [`DeadLetterFilter`], narrowed to one plugin and
/// to some executions.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterQuery {
    pub filter: DeadLetterFilter,
    pub plugin: Option<String>,
    /// Only these executions (empty: any).
    pub ids: Vec<ExecutionId>,
}

/// A dead letter with what its execution ran.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetterEntry {
    #[serde(flatten)]
    pub letter: DeadLetter,
    pub plugin: String,
    pub action_index: i32,
}

/// A place in a listing ordered newest first: the time and id of the last row seen. Rows
/// strictly after it (older, or as old with a smaller id) come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: Millis,
    pub id: uuid::Uuid,
}

/// Filters for listing delivery attempts.
#[derive(Debug, Clone, Default)]
pub struct DeliveryAttemptFilter {
    pub source: Option<String>,
    pub verdict: Option<crate::model::Verdict>,
    pub event_id: Option<EventId>,
    /// Received at or after.
    pub since: Option<Millis>,
    /// Received before.
    pub until: Option<Millis>,
    pub before: Option<Cursor>,
    pub limit: i64,
}

/// Filters for listing executions.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub status: Option<crate::model::ExecutionStatus>,
    pub rule_id: Option<String>,
    pub plugin: Option<String>,
    pub event_id: Option<EventId>,
    /// Planned at or after.
    pub since: Option<Millis>,
    pub before: Option<Cursor>,
    pub limit: i64,
}

/// Which events a rule backtest reads: one source's newest events, older than `before_seq`,
/// received in `[since, until)`, quarantined ones left out (rules never see them).
#[derive(Debug, Clone, Default)]
pub struct EventSample {
    pub source: String,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub before_seq: Option<i64>,
    pub limit: i64,
    /// Payloads longer than this (in characters, or stored bytes for compressed ones) are
    /// not read: the event comes back with an empty payload and `payload_skipped`.
    pub max_payload: i64,
}

/// An event read for a backtest.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledEvent {
    pub stored: StoredEvent,
    /// The payload was longer than [`EventSample::max_payload`] and was not read.
    pub payload_skipped: bool,
}

/// Refused deliveries of one source with one reason, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalCount {
    pub source: String,
    pub reason: String,
    pub count: i64,
}

/// Work waiting, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    /// Events stored but not yet matched.
    pub pending_events: i64,
    /// Executions waiting to run (first time or for a retry).
    pub pending_executions: i64,
    /// Executions claimed by a worker right now.
    pub running_executions: i64,
}

/// The file of a `sqlite://PATH` store URL (relative paths against `base`); None for any
/// other URL.
pub fn sqlite_path(url: &str, base: &Path) -> Option<std::path::PathBuf> {
    let path = Path::new(url.strip_prefix("sqlite://")?);
    Some(if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    })
}

impl Store {
    /// Opens (creating when needed) and migrates the store at `url`, relative paths against `base`.
    pub async fn open(
        url: &str,
        base: &Path,
        settings: GroupCommitSettings,
    ) -> Result<Store, StoreError> {
        let (backend, writer) = if let Some(path) = sqlite_path(url, base) {
            let store = sqlite::SqliteStore::open(&path).await?;
            let writer = sqlite_writer::SqliteWriter::open(&path, sqlite::BUSY_TIMEOUT)?;
            (Backend::Sqlite(store), group::Writer::Sqlite(writer))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let store = postgres::PgStore::open(url).await?;
            (
                Backend::Postgres(store.clone()),
                group::Writer::Postgres(store),
            )
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let committer = Arc::new(group::GroupCommitter::start(writer, settings)?);
        Ok(Store { backend, committer })
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether several nodes may share this store (PostgreSQL): their claims then count the
    /// [`ClaimExclusions::shared`] limits over all of them.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Whether `event` is stored exactly as given, so that reading it back gives the same
    /// value (PostgreSQL replaces U+0000 in text: `text.rs`).
    pub fn stores_as_given(&self, event: &NewEvent) -> bool {
        use text::OutsideText;
        match self.backend {
            Backend::Sqlite(_) => true,
            Backend::Postgres(_) => !event.has_nul(),
        }
    }

    /// Stores `event` once (group-committed) and records the delivery attempt that brought it.
    /// Returns after the transaction holding both has committed.
    pub async fn ingest(
        &self,
        event: NewEvent,
        attempt: NewDeliveryAttempt,
    ) -> Result<IngestOutcome, StoreError> {
        self.ingest_planned(event, attempt, None).await
    }

    /// [`Store::ingest`], storing the event already matched: with its match trace and its
    /// executions planned (from `plan`, whose `event` must be `event.id`), in the same
    /// transaction. A duplicate stores nothing of the plan.
    pub async fn ingest_planned(
        &self,
        event: NewEvent,
        attempt: NewDeliveryAttempt,
        plan: Option<EventPlan>,
    ) -> Result<IngestOutcome, StoreError> {
        let plan = plan.map(Box::new);
        match self
            .committer
            .submit(WriteRequest::Ingest {
                event,
                attempt,
                plan,
            })
            .await?
        {
            WriteOutcome::Ingested(outcome) => Ok(outcome),
            other => Err(StoreError::Corrupt {
                table: "events",
                detail: format!("ingest answered as {other:?}"),
            }),
        }
    }

    /// Records a delivery attempt that produced no event (group-committed).
    pub async fn record_attempt(&self, attempt: NewDeliveryAttempt) -> Result<(), StoreError> {
        self.committer
            .submit(WriteRequest::Attempt(attempt))
            .await
            .map(|_| ())
    }

    /// Queues a delivery attempt that produced no event for the next group commit, without
    /// waiting for it: the sender of a rejected request is promised nothing, so its answer
    /// need not wait for a disk. Waits only while the commit queue is full (back-pressure).
    /// [`Store::close`] writes everything queued; a failed write is logged.
    pub async fn queue_attempt(&self, attempt: NewDeliveryAttempt) -> Result<(), StoreError> {
        self.committer
            .submit_detached(WriteRequest::Attempt(attempt))
            .await
    }

    /// The same write as [`Store::ingest`] in a transaction of its own, bypassing group
    /// commit. Only for measuring what group commit buys (see `bench/`).
    pub async fn ingest_ungrouped(
        &self,
        event: NewEvent,
        attempt: NewDeliveryAttempt,
    ) -> Result<IngestOutcome, StoreError> {
        let request = WriteRequest::Ingest {
            event,
            attempt,
            plan: None,
        };
        let outcome = match &self.backend {
            // SQLite writes one transaction at a time whoever runs it: through the writer.
            Backend::Sqlite(_) => self.committer.submit_alone(request).await?,
            Backend::Postgres(pg) => pg
                .write_batch(std::slice::from_ref(&request))
                .await?
                .pop()
                .ok_or(StoreError::Corrupt {
                    table: "events",
                    detail: "no ingest outcome".into(),
                })?,
        };
        match outcome {
            WriteOutcome::Ingested(o) => Ok(o),
            other => Err(StoreError::Corrupt {
                table: "events",
                detail: format!("ingest answered as {other:?}"),
            }),
        }
    }

    /// Waits until every write submitted so far is committed, then stops the group committer.
    /// Later writes fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        self.committer.close().await;
        with_backend!(self, b => b.close().await)
    }

    /// Sizes of the batches the group committer wrote (for metrics and tests).
    pub fn batch_stats(&self) -> group::BatchStats {
        self.committer.stats()
    }

    pub async fn get_event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        with_backend!(self, b => b.get_event(id).await)
    }

    /// The events with these ids (any order; missing ones are left out), without their match
    /// traces: what running their actions needs, read in a few queries for a whole claim.
    pub async fn events_to_run(&self, ids: &[EventId]) -> Result<Vec<StoredEvent>, StoreError> {
        with_backend!(self, b => b.events_to_run(ids).await)
    }

    pub async fn find_event(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        with_backend!(self, b => b.find_event(source, delivery_id).await)
    }

    /// Events, newest first.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        with_backend!(self, b => b.list_events(filter).await)
    }

    /// Events, newest first, each with its outcome: the listing and one aggregate over the
    /// page's executions, however many events the page holds (see `execution_tallies`).
    pub async fn list_events_with_outcomes(
        &self,
        filter: &EventFilter,
    ) -> Result<Vec<ListedEvent>, StoreError> {
        let events = self.list_events(filter).await?;
        self.with_outcomes(events).await
    }

    /// `events`, each with its outcome (one aggregate over their executions).
    async fn with_outcomes(
        &self,
        events: Vec<StoredEvent>,
    ) -> Result<Vec<ListedEvent>, StoreError> {
        let planned: Vec<EventId> = events
            .iter()
            .filter(|e| e.event.status == EventStatus::Planned)
            .map(|e| e.event.id)
            .collect();
        let tallies: std::collections::HashMap<EventId, ExecutionTally> =
            with_backend!(self, b => b.execution_tallies(&planned).await)?
                .into_iter()
                .collect();
        Ok(events
            .into_iter()
            .map(|stored| {
                let tally = tallies.get(&stored.event.id).copied().unwrap_or_default();
                let outcome = EventOutcome::of(stored.event.status, &tally);
                ListedEvent { stored, outcome }
            })
            .collect())
    }

    /// Up to `filter.limit` events of `filter` whose payload `search` keeps, newest first, with
    /// their outcomes. A bounded scan: the candidates (the events `filter` lists) are read
    /// newest first, [`search::SCAN_CHUNK`] at a time, payloads only, and decoded here
    /// (SQLite rows may hold them compressed, so the database cannot search them); the scan
    /// stops when the page is full, when the candidates run out, or after
    /// `search.max_scanned` candidates, and then says where it stopped
    /// ([`SearchedEvents::stopped_at`]), so that the next search can go on from there.
    pub async fn search_events(
        &self,
        filter: &EventFilter,
        search: &PayloadSearch<'_>,
    ) -> Result<SearchedEvents, StoreError> {
        let want = filter.limit.max(0) as usize;
        let mut kept = Vec::new();
        let mut scanned = 0i64;
        let mut newest_seen = None;
        let mut last = None;
        let mut chunk = filter.clone();
        let stopped_at = 'scan: loop {
            if kept.len() >= want {
                break None;
            }
            let room = search.max_scanned.saturating_sub(scanned);
            if room <= 0 {
                break last;
            }
            // Near the bound, one row more than may be read: whether older candidates exist.
            chunk.limit = room.saturating_add(1).min(search::SCAN_CHUNK);
            let rows = with_backend!(self, b => b.event_payloads(&chunk).await)?;
            let exhausted = (rows.len() as i64) < chunk.limit;
            for (seq, received_at, payload) in rows.into_iter().take(room as usize) {
                scanned += 1;
                newest_seen.get_or_insert(seq);
                last = Some(ScanStop { seq, received_at });
                chunk.before_seq = Some(seq);
                if (search.keep)(&payload) {
                    kept.push(seq);
                    if kept.len() >= want {
                        break 'scan None;
                    }
                }
            }
            if exhausted {
                break None;
            }
        };
        let events = with_backend!(self, b => b.events_by_seq(&kept).await)?;
        Ok(SearchedEvents {
            events: self.with_outcomes(events).await?,
            scanned,
            newest_seen,
            stopped_at,
        })
    }

    pub async fn count_events(&self) -> Result<i64, StoreError> {
        with_backend!(self, b => b.count_events().await)
    }

    /// Delivery attempts of one source (or all), newest first.
    pub async fn list_delivery_attempts(
        &self,
        source: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        with_backend!(self, b => b.list_delivery_attempts(source, limit).await)
    }

    /// Delivery attempts matching `filter`, newest first.
    pub async fn list_delivery_attempts_filtered(
        &self,
        filter: &DeliveryAttemptFilter,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        with_backend!(self, b => b.list_delivery_attempts_filtered(filter).await)
    }

    /// Executions matching `filter`, newest (by planning time) first.
    pub async fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>, StoreError> {
        with_backend!(self, b => b.list_executions(filter).await)
    }

    /// One source's newest events for a backtest (see [`EventSample`]), newest first: read
    /// over the `(source, seq)` index, so only that source's rows are visited.
    pub async fn sample_events(
        &self,
        sample: &EventSample,
    ) -> Result<Vec<SampledEvent>, StoreError> {
        with_backend!(self, b => b.sample_events(sample).await)
    }

    /// When the newest event of `source` that was not quarantined arrived.
    pub async fn last_accepted(&self, source: &str) -> Result<Option<Millis>, StoreError> {
        with_backend!(self, b => b.last_accepted(source).await)
    }

    /// Plugin calls (execution attempts) finished in `[since, until)`, per plugin: by outcome
    /// and by duration, from the per-minute counts (whole minutes: every minute the window
    /// touches counts).
    pub async fn plugin_calls(
        &self,
        since: Millis,
        until: Millis,
    ) -> Result<std::collections::BTreeMap<String, PluginCalls>, StoreError> {
        with_backend!(self, b => b.plugin_calls(since, until).await)
    }

    /// Deletes per-minute activity counts older than `cutoff`.
    pub async fn prune_activity(&self, cutoff: Millis) -> Result<u64, StoreError> {
        with_backend!(self, b => b.prune_activity(cutoff).await)
    }

    /// Refused delivery attempts received at or after `since`, counted per source and reason,
    /// over at most the newest `limit` refusals.
    pub async fn recent_refusals(
        &self,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<RefusalCount>, StoreError> {
        with_backend!(self, b => b.recent_refusals(since, limit).await)
    }

    /// Pending events and pending and running executions, counted now.
    pub async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        with_backend!(self, b => b.queue_depth().await)
    }

    /// Deletes up to `batch` events received before `cutoff`, oldest first, in one short
    /// transaction; their executions, execution attempts and dead letters go with them. Events
    /// still waiting to be matched, or with an execution pending or running, are kept.
    /// Returns how many events were deleted (less than `batch` means nothing older is left).
    pub async fn prune_events(&self, cutoff: Millis, batch: i64) -> Result<u64, StoreError> {
        with_backend!(self, b => b.prune_events(cutoff, batch).await)
    }

    /// Deletes up to `batch` delivery attempts received before `cutoff`, oldest first, in one
    /// short transaction. Returns how many.
    pub async fn prune_delivery_attempts(
        &self,
        cutoff: Millis,
        batch: i64,
    ) -> Result<u64, StoreError> {
        with_backend!(self, b => b.prune_delivery_attempts(cutoff, batch).await)
    }

    pub async fn delivery_attempts_for_event(
        &self,
        event: EventId,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        with_backend!(self, b => b.delivery_attempts_for_event(event).await)
    }

    /// Events still waiting to be matched, oldest first.
    pub async fn pending_events(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        with_backend!(self, b => b.pending_events(limit).await)
    }

    /// Stores the match trace of each event and plans its executions, all in one transaction.
    /// Idempotent: executions that already exist (same event, rule, action, generation) are
    /// left as they are. Returns the ids of the executions created by this call.
    pub async fn plan(&self, plans: &[EventPlan]) -> Result<Vec<ExecutionId>, StoreError> {
        // Through the one writer: on SQLite a second writer would wait on the lock.
        match self
            .committer
            .submit(WriteRequest::Plan(plans.to_vec()))
            .await?
        {
            WriteOutcome::Planned(created) => Ok(created),
            other => Err(StoreError::Corrupt {
                table: "executions",
                detail: format!("plan answered as {other:?}"),
            }),
        }
    }

    /// Claims up to `limit` executions that are due (or whose lease expired) for `owner`, with a
    /// lease of `lease`. Each claim counts as one more attempt. Executions of `busy` plugins and
    /// actions are skipped, and an execution with an order key waits while an earlier one of
    /// the same rule and key is unfinished.
    pub async fn claim(
        &self,
        owner: &str,
        limit: i64,
        lease: Duration,
        now: Millis,
        busy: &ClaimExclusions,
    ) -> Result<Vec<Execution>, StoreError> {
        // Group-committed like ingests and finishes: a claim costs no fsync of its own.
        let request = WriteRequest::Claim(Box::new(ClaimRequest {
            owner: owner.to_string(),
            limit,
            lease,
            now,
            busy: busy.clone(),
        }));
        match self.committer.submit(request).await? {
            WriteOutcome::Claimed(claimed) => Ok(claimed),
            other => Err(StoreError::Corrupt {
                table: "executions",
                detail: format!("claim answered as {other:?}"),
            }),
        }
    }

    /// When the next execution becomes claimable (next attempt or lease end), if any.
    pub async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        with_backend!(self, b => b.next_due().await)
    }

    /// Plans a replay: further executions of a planned event, retiring the dead letters of the
    /// executions being retried, in one transaction.
    pub async fn plan_replay(
        &self,
        event: EventId,
        executions: &[NewExecution],
        retire_dead_letters: &[ExecutionId],
    ) -> Result<Vec<ExecutionId>, StoreError> {
        with_backend!(self, b => b.plan_replay(event, executions, retire_dead_letters).await)
    }

    /// The run generation the next replay of `event` uses.
    pub async fn next_generation(&self, event: EventId) -> Result<i32, StoreError> {
        with_backend!(self, b => b.next_generation(event).await)
    }

    /// Deletes the dead letters matching `filter` (its `limit` is ignored); returns how many.
    pub async fn purge_dead_letters(&self, filter: &DeadLetterFilter) -> Result<u64, StoreError> {
        with_backend!(self, b => b.purge_dead_letters(filter).await)
    }

    /// Dead letters matching `query`, newest first, with their executions' plugin and action.
    pub async fn list_dead_letter_entries(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetterEntry>, StoreError> {
        with_backend!(self, b => b.list_dead_letter_entries(query).await)
    }

    /// How many dead letters match `query` (its limit ignored), counting no further than `cap`:
    /// a result above `cap` means "more than `cap`".
    pub async fn count_dead_letters(
        &self,
        query: &DeadLetterQuery,
        cap: i64,
    ) -> Result<i64, StoreError> {
        with_backend!(self, b => b.count_dead_letters(query, cap).await)
    }

    /// Deletes the dead letters matching `query` (its limit ignored); returns how many.
    pub async fn purge_dead_letter_query(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<u64, StoreError> {
        with_backend!(self, b => b.purge_dead_letter_query(query).await)
    }

    /// Deliveries, events, executions, plugin calls and dead letters of the window
    /// `[since, until)`, counted per `bucket` milliseconds. Read from the per-minute counts
    /// every write keeps (every minute the window touches counts), so the cost grows with the
    /// window's length, never with how much happened in it.
    pub async fn activity(
        &self,
        since: Millis,
        until: Millis,
        bucket: i64,
    ) -> Result<Activity, StoreError> {
        with_backend!(self, b => b.activity(since, until, bucket.max(1)).await)
    }

    /// Extends the lease of a running execution for its attempt number `attempt`; fails with
    /// `LeaseLost` if `owner` lost it, or holds it for a later attempt (the lease ran out and
    /// the same owner claimed it again).
    pub async fn renew_lease(
        &self,
        id: ExecutionId,
        owner: &str,
        attempt: i32,
        until: Millis,
    ) -> Result<(), StoreError> {
        with_backend!(self, b => b.renew_lease(id, owner, attempt, until).await)
    }

    /// Records an attempt and moves the execution on, guarded by the lease. Group-committed:
    /// finishes from many workers (and ingests) share one transaction and one fsync.
    pub async fn finish(
        &self,
        id: ExecutionId,
        owner: &str,
        attempt: &NewExecutionAttempt,
        next: NextStep,
    ) -> Result<(), StoreError> {
        self.finish_announcing(id, owner, attempt, next, None).await
    }

    /// [`Store::finish`], storing `announces` (an event, pending, and its delivery) in the
    /// same transaction when the lease is held: either both are recorded or neither. An
    /// event already stored under its delivery id is left as it is.
    pub async fn finish_announcing(
        &self,
        id: ExecutionId,
        owner: &str,
        attempt: &NewExecutionAttempt,
        next: NextStep,
        announces: Option<Announcement>,
    ) -> Result<(), StoreError> {
        let request = WriteRequest::Finish(Box::new(FinishRequest {
            id,
            owner: owner.to_string(),
            attempt: attempt.clone(),
            next,
            announces,
        }));
        match self.committer.submit(request).await? {
            WriteOutcome::Finished => Ok(()),
            WriteOutcome::LeaseLost => Err(StoreError::LeaseLost(id)),
            other => Err(StoreError::Corrupt {
                table: "executions",
                detail: format!("finish answered as {other:?}"),
            }),
        }
    }

    /// Gives an execution back unclaimed (for graceful shutdown); the attempt is not counted.
    pub async fn release(&self, id: ExecutionId, owner: &str) -> Result<(), StoreError> {
        with_backend!(self, b => b.release(id, owner).await)
    }

    pub async fn get_execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        with_backend!(self, b => b.get_execution(id).await)
    }

    pub async fn executions_for_event(&self, event: EventId) -> Result<Vec<Execution>, StoreError> {
        with_backend!(self, b => b.executions_for_event(event).await)
    }

    pub async fn attempts_for_execution(
        &self,
        execution: ExecutionId,
    ) -> Result<Vec<ExecutionAttempt>, StoreError> {
        with_backend!(self, b => b.attempts_for_execution(execution).await)
    }

    pub async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        with_backend!(self, b => b.list_dead_letters(filter).await)
    }

    /// Work not done yet: (events waiting to be matched, executions pending or running). Cheap
    /// at any size (partial indexes), for metrics and for waiting until idle.
    pub async fn backlog(&self) -> Result<(i64, i64), StoreError> {
        let q = self.queue_depth().await?;
        Ok((
            q.pending_events,
            q.pending_executions + q.running_executions,
        ))
    }

    /// Counts executions by status (for readiness, metrics and tests). Scans the table.
    pub async fn execution_counts(&self) -> Result<ExecutionCounts, StoreError> {
        with_backend!(self, b => b.execution_counts().await)
    }

    /// Waits for work notifications from other nodes sharing the database, calling `wake` for
    /// each; returns only when the store closes. Does nothing on SQLite (one node per file).
    /// Connection losses are retried: notifications are a latency optimisation, never needed
    /// for correctness (workers also poll).
    pub async fn listen_for_work(&self, wake: impl Fn()) {
        let Backend::Postgres(pg) = &self.backend else {
            return;
        };
        loop {
            match pg.listen().await {
                Ok(mut listener) => loop {
                    match listener.recv().await {
                        Ok(_) => wake(),
                        Err(e) => {
                            tracing::debug!(error = %e, "work notifications interrupted");
                            break;
                        }
                    }
                },
                Err(StoreError::Database(sqlx::Error::PoolClosed)) => return,
                Err(e) => tracing::debug!(error = %e, "cannot listen for work notifications"),
            }
            if self.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Whether `close` has run.
    pub fn is_closed(&self) -> bool {
        with_backend!(self, b => b.is_closed())
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_backend!(self, b => b.ping().await)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn statement_chunks_use_few_sizes_and_cover_every_row() {
        for len in 0..600usize {
            let rows: Vec<usize> = (0..len).collect();
            let chunks: Vec<&[usize]> = super::statement_chunks(&rows).collect();
            let joined: Vec<usize> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, rows);
            assert!(
                chunks
                    .iter()
                    .all(|c| super::STATEMENT_ROWS.contains(&c.len()))
            );
        }
    }

    #[test]
    fn json_len_is_the_length_of_the_text() {
        for value in [
            serde_json::json!(null),
            serde_json::json!({"ok": true, "said": "é\u{0}\"", "n": [1, -2.5, 1e300]}),
            serde_json::Value::String("x".repeat(300)),
        ] {
            let text = serde_json::to_string(&value).unwrap();
            assert_eq!(super::json_len(&value), text.len(), "{text}");
        }
    }
}
