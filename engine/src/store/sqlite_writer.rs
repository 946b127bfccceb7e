//! SQLite's one writer: a connection owned by the group committer's thread, which writes each
//! batch in one transaction.
//!
//! Through sqlx, every SQLite statement runs on a worker thread of its connection: each
//! statement, each returned row and the BEGIN and COMMIT cross threads, and on a busy 2-core
//! machine every crossing waits for a CPU (a batch of a few dozen ingests made a dozen of them).
//! Here the thread that collects a batch also runs it, with statements prepared once and kept
//! in the connection's cache; the only crossings are the requests coming in and the answers
//! going out. SQLite allows one writer at a time anyway, so nothing is lost by having one.
//!
//! Reads, and the rare writes outside group commit (lease renewals, replays, pruning), stay on
//! sqlx's pool: SQLite's WAL lets them run beside this connection.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSql, ValueRef};
use rusqlite::{Connection, OpenFlags, Statement, TransactionBehavior};
use uuid::Uuid;

use super::activity::Tally;
use super::payload::{self, Packed};
use super::records::{ExecutionRow, NewDeliveryAttempt, NewEvent, NewExecution};
use super::{
    ClaimRequest, EventPlan, FinishRequest, IngestOutcome, StoreError, WriteOutcome, WriteRequest,
    sql,
};
use crate::model::{EventId, EventStatus, ExecutionId, Millis, Verdict};

/// Prepared statements kept per connection: the write path has about a dozen, and a claim
/// with busy plugins or actions makes a few more.
const STATEMENT_CACHE: usize = 64;

/// How often the writer copies the WAL back into the database file, between batches. Each
/// checkpoint ends with an fsync of the database file that the next batch waits for, so
/// small and frequent keeps the tail short: by hand (wrk, 64 connections, 2 KiB events),
/// every 25 ms gave 28,600 events/s with p99 8.9 ms and a 7 MB WAL; every 50 ms 29,800/s,
/// 13.8 ms, 15 MB; every 1 s 29,100/s, 188 ms, 268 MB.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(25);

pub(super) struct SqliteWriter {
    conn: Connection,
    last_checkpoint: Instant,
    wal: WalFile,
}

/// The database's write-ahead log, synced after commits.
#[derive(Debug, Clone)]
pub(super) struct WalFile {
    path: PathBuf,
}

impl WalFile {
    /// The WAL of the database at `path` (SQLite names it `PATH-wal`).
    pub(super) fn of_database(path: &Path) -> WalFile {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        WalFile {
            path: PathBuf::from(wal),
        }
    }

    /// Writes everything committed to the WAL so far through to the disk (fdatasync). Opened
    /// each time (a few microseconds beside the sync): the sync is of the file, whatever
    /// descriptor asks for it, and a fresh one can never point at a file SQLite replaced.
    pub(super) fn sync(&self) -> std::io::Result<()> {
        std::fs::File::open(&self.path)?.sync_data()
    }
}

impl SqliteWriter {
    /// Opens the writer's connection on a database that exists and is migrated.
    pub(super) fn open(path: &Path, busy_timeout: Duration) -> Result<SqliteWriter, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(busy_timeout)?;
        // The same settings as the pool's connections (sqlite.rs); the WAL journal is a
        // property of the file, set when the pool created it.
        // NORMAL: a commit writes the WAL without syncing it. The committer has the WAL
        // synced by another thread ([`WalFile::sync`]) before it answers anyone whose write
        // the commit holds, which makes each answered write as durable as FULL would, while
        // the next batch is being written. Checkpoints still sync the WAL before copying it
        // and the database file after.
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;",
        )?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(SqliteWriter {
            conn,
            last_checkpoint: Instant::now(),
            wal: WalFile::of_database(path),
        })
    }

    /// The WAL file of this writer's database, to sync.
    pub(super) fn wal(&self) -> WalFile {
        self.wal.clone()
    }

    /// Copies the WAL back into the database file when [`CHECKPOINT_EVERY`] has passed since
    /// the last time. Called between batches, after their callers were answered.
    ///
    /// Only here can a checkpoint catch up: no commit lands while it runs (this thread makes
    /// them all), so it copies every frame, and the next transaction starts the WAL again
    /// from its beginning, reusing the file's blocks. A checkpoint from another connection
    /// never caught up under steady load, and the WAL grew by the whole write stream (1.9 GB
    /// in 10 s of ingest).
    pub(super) fn checkpoint_if_due(&mut self) {
        if self.last_checkpoint.elapsed() < CHECKPOINT_EVERY {
            return;
        }
        self.last_checkpoint = Instant::now();
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
            });
        match done {
            Ok((frames, copied)) => {
                tracing::trace!(frames, copied, "WAL checkpoint");
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
        }
    }

    /// Writes a batch in one transaction. Duplicated (source, delivery id) pairs, also within
    /// the batch, resolve to the event stored first.
    pub(super) fn write_batch(
        &mut self,
        batch: &[WriteRequest],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        // IMMEDIATE takes the write lock at BEGIN: a deferred transaction that reads first could
        // find the lock taken when it comes to write and have to start over.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut w = Written {
            now: Millis::now(),
            tally: Tally::default(),
            attempts: Vec::with_capacity(batch.len()),
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for request in batch {
            match request {
                WriteRequest::Ingest {
                    event,
                    attempt,
                    plan,
                } => {
                    let outcome = ingest(&tx, event, attempt, plan.as_deref(), &mut w)?;
                    outcomes.push(WriteOutcome::Ingested(outcome));
                }
                WriteRequest::Attempt(attempt) => {
                    w.tally.delivery(attempt, attempt.verdict);
                    w.attempts.push((attempt, attempt.verdict, None));
                    outcomes.push(WriteOutcome::Recorded);
                }
                WriteRequest::Finish(f) => {
                    let held = finish(&tx, f, &mut w.tally)?;
                    if let Some(a) = f.announces.as_ref().filter(|_| held) {
                        ingest(&tx, &a.event, &a.attempt, None, &mut w)?;
                    }
                    outcomes.push(if held {
                        WriteOutcome::Finished
                    } else {
                        WriteOutcome::LeaseLost
                    });
                }
                WriteRequest::Plan(plans) => {
                    outcomes.push(WriteOutcome::Planned(plan(&tx, plans, &mut w.tally)?));
                }
                WriteRequest::Claim(c) => outcomes.push(WriteOutcome::Claimed(claim(&tx, c)?)),
            }
        }
        let Written {
            tally, attempts, ..
        } = w;
        for (a, verdict, event_id) in attempts {
            let event_id = event_id.map(|id| id.into_bytes());
            execute(
                &tx,
                sql::INSERT_ATTEMPT,
                &[
                    &a.id.0.as_bytes().as_slice(),
                    &a.source,
                    &a.received_at.0,
                    &a.remote_addr,
                    &a.method,
                    &a.path,
                    &json(&a.headers)?,
                    &a.body,
                    &a.body_size,
                    &verdict.as_str(),
                    &i32::from(a.status),
                    &a.reason,
                    &event_id.as_ref().map(|b| b.as_slice()),
                ],
            )?;
        }
        add_activity(&tx, &tally)?;
        tx.commit()?;
        Ok(outcomes)
    }
}

/// What a batch has written so far that is added at its end: the delivery attempts kept in
/// rows of their own, and the activity counts.
struct Written<'b> {
    now: Millis,
    tally: Tally,
    attempts: Vec<(&'b NewDeliveryAttempt, Verdict, Option<Uuid>)>,
}

/// Stores `event` (with `plan`, when it was matched) unless its delivery is stored already,
/// and its delivery `attempt`: in the event's row when it can hold it, else at the batch's end.
fn ingest<'b>(
    tx: &Connection,
    event: &NewEvent,
    attempt: &'b NewDeliveryAttempt,
    plan: Option<&EventPlan>,
    w: &mut Written<'b>,
) -> Result<IngestOutcome, StoreError> {
    let headers = json(&event.headers)?;
    let (status, trace, planned_at) = match plan {
        Some(plan) => (
            EventStatus::Planned,
            Some(plan.match_trace.get()),
            Some(w.now.0),
        ),
        None => (event.status, None, None),
    };
    let packed = payload::pack(&event.payload);
    let payload: &dyn ToSql = match &packed {
        Packed::Text(text) => text,
        Packed::Compressed(blob) => blob,
    };
    let event_args: [&dyn ToSql; 10] = [
        &event.id.0.as_bytes().as_slice(),
        &event.source,
        &event.delivery_id,
        &event.event_type,
        &event.received_at.0,
        &headers,
        payload,
        &status.as_str(),
        &trace,
        &planned_at,
    ];
    // An accepted attempt that the event's row can hold whole goes into it.
    let folded = super::folds_into_event(event, attempt);
    let stored = if folded {
        let status = i32::from(attempt.status);
        let attempt_args: [&dyn ToSql; 6] = [
            &attempt.id.0.as_bytes().as_slice(),
            &attempt.remote_addr,
            &attempt.method,
            &attempt.path,
            &attempt.body_size,
            &status,
        ];
        let args: Vec<&dyn ToSql> = event_args.into_iter().chain(attempt_args).collect();
        execute(tx, sql::INSERT_EVENT_WITH_ATTEMPT, &args)?
    } else {
        execute(tx, sql::INSERT_EVENT, &event_args)?
    } == 1;
    // `seq` is the events table's rowid.
    let seq = stored.then(|| tx.last_insert_rowid());
    if let (Some(plan), Some(seq)) = (plan, seq) {
        insert_executions(tx, event.id, seq, &plan.executions, w.now, &mut w.tally)?;
    }
    if stored {
        w.tally.event(event);
    }
    let event_id = if stored {
        event.id.0
    } else {
        query_uuid(
            tx,
            sql::EVENT_ID_BY_DELIVERY,
            &[&event.source, &event.delivery_id],
        )?
        .ok_or_else(|| StoreError::Corrupt {
            table: "events",
            detail: format!(
                "delivery {} of {} neither stored nor found",
                event.delivery_id, event.source
            ),
        })?
    };
    let verdict = if stored {
        attempt.verdict
    } else {
        Verdict::Duplicate
    };
    w.tally.delivery(attempt, verdict);
    if !(stored && folded) {
        w.attempts.push((attempt, verdict, Some(event_id)));
    }
    Ok(IngestOutcome {
        event_id: EventId(event_id),
        duplicate: !stored,
        seq,
    })
}

/// Adds a batch's counts to the per-minute activity rows (one shard: one writer).
fn add_activity(conn: &Connection, tally: &Tally) -> Result<(), StoreError> {
    for row in tally.rows() {
        execute(
            conn,
            sql::ADD_ACTIVITY,
            &[
                &row.minute,
                &row.kind.as_str(),
                &row.subject,
                &row.label,
                &0i32,
                &row.count,
            ],
        )?;
    }
    Ok(())
}

/// Records an attempt and moves the execution on, if the request's owner still holds its
/// lease; returns whether it did.
fn finish(conn: &Connection, f: &FinishRequest, tally: &mut Tally) -> Result<bool, StoreError> {
    let (a, next) = (&f.attempt, &f.next);
    let now = Millis::now();
    let (status, next_at, dead_reason) = next.as_columns(now);
    let id_bytes = f.id.0.as_bytes().as_slice();
    let output = a.output.as_ref().map(json).transpose()?;
    let folded = super::folds_into_execution(a, next, || output.as_ref().map_or(0, String::len));
    let null = &rusqlite::types::Null;
    let first: [&dyn ToSql; 5] = if folded {
        [
            &a.started_at.0,
            &a.finished_at.0,
            &output,
            &a.fuel_used,
            &a.memory_peak,
        ]
    } else {
        [null; 5]
    };
    let columns: [&dyn ToSql; 6] = [
        &id_bytes,
        &f.owner,
        &status.as_str(),
        &next_at.0,
        &a.error,
        &now.0,
    ];
    let args: Vec<&dyn ToSql> = columns.into_iter().chain(first).collect();
    let plugin: Option<String> = query_first(conn, sql::FINISH_EXECUTION, &args)?;
    let Some(plugin) = plugin else {
        return Ok(false);
    };
    tally.finished(&plugin, a, next, now);
    if folded {
        return Ok(true);
    }
    execute(
        conn,
        sql::INSERT_EXECUTION_ATTEMPT,
        &[
            &Uuid::now_v7().as_bytes().as_slice(),
            &id_bytes,
            &a.attempt,
            &a.started_at.0,
            &a.finished_at.0,
            &a.outcome.as_str(),
            &a.error,
            &output,
            &json(&a.logs)?,
            &json(&a.http_calls)?,
            &json(&a.db_statements)?,
            &a.fuel_used,
            &a.memory_peak,
        ],
    )?;
    if let Some(reason) = dead_reason {
        execute(conn, sql::INSERT_DEAD_LETTER, &[&id_bytes, &reason, &now.0])?;
    }
    Ok(true)
}

/// Stores match traces and plans executions (see [`super::Store::plan`]).
fn plan(
    conn: &Connection,
    plans: &[EventPlan],
    tally: &mut Tally,
) -> Result<Vec<ExecutionId>, StoreError> {
    let now = Millis::now();
    let mut created = Vec::new();
    for plan in plans {
        let event = plan.event.0.as_bytes().as_slice();
        let seq: Option<i64> = query_first(
            conn,
            sql::PLAN_EVENT,
            &[
                &event,
                &EventStatus::Planned.as_str(),
                &plan.match_trace.get(),
                &now.0,
            ],
        )?;
        let Some(seq) = seq else {
            return Err(StoreError::Corrupt {
                table: "events",
                detail: format!("planning unknown event {}", plan.event),
            });
        };
        created.extend(insert_executions(
            conn,
            plan.event,
            seq,
            &plan.executions,
            now,
            tally,
        )?);
    }
    Ok(created)
}

/// Inserts planned executions of the event with `seq`; ones that exist already are left
/// alone. Returns the ids created.
fn insert_executions(
    conn: &Connection,
    event: EventId,
    seq: i64,
    executions: &[NewExecution],
    now: Millis,
    tally: &mut Tally,
) -> Result<Vec<ExecutionId>, StoreError> {
    let event = event.0.as_bytes().as_slice();
    let mut created = Vec::new();
    for x in executions {
        let leased = x.planned_state();
        let mut stmt = prepared(conn, sql::INSERT_EXECUTION)?;
        bind(
            &mut stmt,
            &[
                &x.id.0.as_bytes().as_slice(),
                &event,
                &seq,
                &x.rule_id,
                &x.action_index,
                &x.generation,
                &x.plugin,
                &x.idempotency_key,
                &x.order_key,
                &leased.status.as_str(),
                &now.0,
                &leased.attempts,
                &leased.owner,
                &leased.until,
            ],
        )?;
        let mut rows = stmt.raw_query();
        if let Some(row) = rows.next()? {
            created.push(ExecutionId(uuid_at(row, 0, "executions")?));
            tally.planned(&x.plugin, now);
        }
    }
    Ok(created)
}

/// Claims due executions (see [`super::Store::claim`]).
fn claim(conn: &Connection, c: &ClaimRequest) -> Result<Vec<super::Execution>, StoreError> {
    execute(conn, sql::EXPIRE_LEASES, &[&c.now.0])?;
    // One node: the dispatcher's own counts keep its limits, so the shared ones are not bound.
    let text = sql::claim(&c.busy, false);
    let lease_until = c.now.saturating_add(c.lease).0;
    let limit = c.limit.max(0);
    let mut args: Vec<&dyn ToSql> = vec![&c.owner, &lease_until, &c.now.0];
    for p in &c.busy.plugins {
        args.push(p);
    }
    for (rule, action) in &c.busy.actions {
        args.push(rule);
        args.push(action);
    }
    args.push(&limit);
    let mut stmt = prepared(conn, &text)?;
    bind(&mut stmt, &args)?;
    let mut rows = stmt.raw_query();
    let mut claimed = Vec::new();
    while let Some(row) = rows.next()? {
        claimed.push(super::Execution::try_from(execution_row(row)?)?);
    }
    claimed.sort_by_key(|x| (x.next_attempt_at, x.event_seq));
    Ok(claimed)
}

fn execution_row(row: &rusqlite::Row<'_>) -> Result<ExecutionRow, StoreError> {
    let table = "executions";
    let column = |name: &str| row.as_ref().column_index(name);
    Ok(ExecutionRow {
        id: uuid_at(row, column("id")?, table)?,
        event_id: uuid_at(row, column("event_id")?, table)?,
        event_seq: row.get("event_seq")?,
        rule_id: row.get("rule_id")?,
        action_index: row.get("action_index")?,
        generation: row.get("generation")?,
        plugin: row.get("plugin")?,
        idempotency_key: row.get("idempotency_key")?,
        order_key: row.get("order_key")?,
        status: row.get("status")?,
        attempts: row.get("attempts")?,
        next_attempt_at: row.get("next_attempt_at")?,
        lease_owner: row.get("lease_owner")?,
        lease_until: row.get("lease_until")?,
        last_error: row.get("last_error")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

// ---- statements --------------------------------------------------------------------------

/// A statement from the connection's cache (prepared on first use).
fn prepared<'c>(
    conn: &'c Connection,
    text: &str,
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    Ok(conn.prepare_cached(text)?)
}

/// Binds `args` to a statement's `$N` parameters: `$N` takes `args[N - 1]`, however often and
/// in whatever order the text names it.
fn bind(stmt: &mut Statement<'_>, args: &[&dyn ToSql]) -> Result<(), StoreError> {
    for index in 1..=stmt.parameter_count() {
        let number = stmt
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=args.len()).contains(n))
            .ok_or_else(|| {
                rusqlite::Error::InvalidParameterName(
                    stmt.parameter_name(index).unwrap_or("?").to_string(),
                )
            })?;
        stmt.raw_bind_parameter(index, args[number - 1])?;
    }
    Ok(())
}

/// Runs a statement that returns no rows; returns how many rows it changed.
fn execute(conn: &Connection, text: &str, args: &[&dyn ToSql]) -> Result<usize, StoreError> {
    let mut stmt = prepared(conn, text)?;
    bind(&mut stmt, args)?;
    Ok(stmt.raw_execute()?)
}

/// The first column of the first row `text` returns, if any.
fn query_first<T: rusqlite::types::FromSql>(
    conn: &Connection,
    text: &str,
    args: &[&dyn ToSql],
) -> Result<Option<T>, StoreError> {
    let mut stmt = prepared(conn, text)?;
    bind(&mut stmt, args)?;
    let mut rows = stmt.raw_query();
    match rows.next()? {
        Some(row) => Ok(Some(row.get(0)?)),
        None => Ok(None),
    }
}

/// Runs a query whose first column of its first row is a UUID.
fn query_uuid(
    conn: &Connection,
    text: &str,
    args: &[&dyn ToSql],
) -> Result<Option<Uuid>, StoreError> {
    let mut stmt = prepared(conn, text)?;
    bind(&mut stmt, args)?;
    let mut rows = stmt.raw_query();
    match rows.next()? {
        Some(row) => Ok(Some(uuid_at(row, 0, "events")?)),
        None => Ok(None),
    }
}

/// A UUID column, stored as 16 bytes (as sqlx stores them).
fn uuid_at(row: &rusqlite::Row<'_>, index: usize, table: &'static str) -> Result<Uuid, StoreError> {
    match row.get_ref(index)? {
        ValueRef::Blob(bytes) => Uuid::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            table,
            detail: format!("id: {e}"),
        }),
        other => Err(StoreError::Corrupt {
            table,
            detail: format!("id of type {:?}", other.data_type()),
        }),
    }
}

/// A JSON column, as text (as sqlx stores `Json` values).
fn json(value: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        table: "json",
        detail: e.to_string(),
    })
}
