//! The PostgreSQL backend: several hookwise nodes may share one database; work is claimed with
//! `FOR UPDATE SKIP LOCKED` so nodes never run the same execution at once.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

/// Connections per node; writes are batched, so few are needed.
const POOL_SIZE: u32 = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(crate) async fn open(url: &str) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect(url)
            .await?;
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        // A database that a newer release migrated still opens: migrations only add what
        // older nodes neither write nor need (docs/deploy.md, "Upgrades and migrations"), so
        // during a rolling upgrade a node of the previous release keeps working and restarts.
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        Ok(PgStore { pool })
    }
}

super::queries::store_queries!(
    PgStore,
    sqlx::Postgres,
    notify = "SELECT pg_notify('hookwise_work', '')",
    attempts_in_events = true,
    accepted_columns = super::sql::ACCEPTED_ATTEMPT_COLUMNS_PG,
    text = super::text::NulReplaced,
    activity_shard = super::activity::node_shard()
);

/// The channel work notifications go out on.
pub(crate) const WORK_CHANNEL: &str = "hookwise_work";

impl PgStore {
    /// Listens for work notifications from every node sharing the database.
    pub(crate) async fn listen(&self) -> Result<sqlx::postgres::PgListener, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(WORK_CHANNEL).await?;
        Ok(listener)
    }
}

// ---- the write path: group-committed batches ---------------------------------------------

use std::collections::HashMap;

use sqlx::types::Json;
use sqlx::{Postgres, Transaction};

use super::activity::Tally;
use super::sql;
use super::text::NulReplaced;
use crate::model::{EventStatus, Verdict};
use crate::store::{
    Announcement, ClaimRequest, EventPlan, FinishRequest, IngestOutcome, LimitScope,
    NewDeliveryAttempt, WriteOutcome, WriteRequest,
};

impl PgStore {
    /// Writes a batch in one transaction. Duplicated (source, delivery id) pairs, also within
    /// the batch, resolve to the event stored first. Outside text is first made storable
    /// (U+0000 replaced: `text.rs`), so no text can fail the batch.
    pub(crate) async fn write_batch(
        &self,
        batch: &[WriteRequest],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let batch = NulReplaced::all(batch);
        let batch = batch.as_ref();
        let mut tx = self.pool.begin().await?;
        if batch.iter().any(counts_shared_limits) {
            // Limits counted over every node hold only if no two claims count at once: each
            // waits for the one before to commit. Taken before anything else the batch
            // writes, so a batch holding it never waits on rows of a batch waiting for it.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(sql::CLAIM_LOCK)
                .execute(&mut *tx)
                .await?;
        }

        let now = Millis::now();
        let ingests: Vec<_> = batch
            .iter()
            .filter_map(|r| match r {
                WriteRequest::Ingest {
                    event,
                    plan,
                    attempt,
                } => Some((event, plan.as_deref(), attempt)),
                WriteRequest::Attempt(_)
                | WriteRequest::Finish(_)
                | WriteRequest::Claim(_)
                | WriteRequest::Plan(_) => None,
            })
            .collect();
        // Stored events, with their seq.
        let mut inserted: HashMap<Uuid, i64> = HashMap::new();
        for chunk in crate::store::statement_chunks(&ingests) {
            let mut q = QueryBuilder::<Postgres>::new(sql::INSERT_EVENTS);
            q.push_values(chunk, |mut row, (e, plan, attempt)| {
                let status = match plan {
                    Some(_) => EventStatus::Planned,
                    None => e.status,
                };
                row.push_bind(e.id.0)
                    .push_bind(e.source.as_str())
                    .push_bind(e.delivery_id.as_str())
                    .push_bind(e.event_type.as_str())
                    .push_bind(e.received_at.0)
                    .push_bind(Json(&e.headers))
                    .push_bind(e.payload.as_str())
                    .push_bind(status.as_str())
                    .push_bind(plan.map(|p| Json(&p.match_trace)))
                    .push_bind(plan.map(|_| now.0));
                // An accepted attempt the row can hold goes into it.
                let folded = crate::store::folds_into_event(e, attempt).then_some(*attempt);
                row.push_bind(folded.map(|a| a.id.0))
                    .push_bind(folded.and_then(|a| a.remote_addr.as_deref()))
                    .push_bind(folded.map(|a| a.method.as_str()))
                    .push_bind(folded.map(|a| a.path.as_str()))
                    .push_bind(folded.map(|a| a.body_size))
                    .push_bind(folded.map(|a| i32::from(a.status)));
            });
            q.push(sql::EVENTS_CONFLICT).push(" RETURNING id, seq");
            for row in q.build().fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<Uuid, _>(0)?, row.try_get::<i64, _>(1)?);
            }
        }
        let mut tally = Tally::default();
        for (e, plan, _) in &ingests {
            if let (Some(plan), Some(seq)) = (plan, inserted.get(&e.id.0)) {
                insert_executions(&mut tx, e.id, *seq, &plan.executions, now, &mut tally).await?;
            }
        }

        // Duplicates: find the id of the event stored first.
        let mut existing: HashMap<(&str, &str), Uuid> = HashMap::new();
        for (e, _, _) in &ingests {
            if inserted.contains_key(&e.id.0) {
                existing
                    .entry((e.source.as_str(), e.delivery_id.as_str()))
                    .or_insert(e.id.0);
            }
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut attempts: Vec<(&NewDeliveryAttempt, Verdict, Option<Uuid>)> =
            Vec::with_capacity(batch.len());
        for request in batch {
            match request {
                WriteRequest::Ingest { event, attempt, .. } => {
                    let key = (event.source.as_str(), event.delivery_id.as_str());
                    let duplicate = !inserted.contains_key(&event.id.0);
                    let event_id = match existing.get(&key) {
                        Some(id) => *id,
                        None => {
                            let id: Uuid = sqlx::query_scalar(sql::EVENT_ID_BY_DELIVERY)
                                .bind(key.0)
                                .bind(key.1)
                                .fetch_one(&mut *tx)
                                .await?;
                            existing.insert(key, id);
                            id
                        }
                    };
                    let verdict = if duplicate {
                        Verdict::Duplicate
                    } else {
                        tally.event(event);
                        attempt.verdict
                    };
                    tally.delivery(attempt, verdict);
                    // Unless the event's row holds it.
                    if duplicate || !crate::store::folds_into_event(event, attempt) {
                        attempts.push((attempt, verdict, Some(event_id)));
                    }
                    outcomes.push(WriteOutcome::Ingested(IngestOutcome {
                        event_id: EventId(event_id),
                        duplicate,
                        seq: inserted.get(&event.id.0).copied(),
                    }));
                }
                WriteRequest::Attempt(attempt) => {
                    tally.delivery(attempt, attempt.verdict);
                    attempts.push((attempt, attempt.verdict, None));
                    outcomes.push(WriteOutcome::Recorded);
                }
                WriteRequest::Finish(f) => {
                    let held = finish_in(&mut tx, f, &mut tally).await?;
                    if let Some(a) = f.announces.as_ref().filter(|_| held) {
                        let (event_id, verdict) = announce_in(&mut tx, a, &mut tally).await?;
                        attempts.push((&a.attempt, verdict, Some(event_id)));
                    }
                    outcomes.push(if held {
                        WriteOutcome::Finished
                    } else {
                        WriteOutcome::LeaseLost
                    });
                }
                WriteRequest::Plan(plans) => {
                    outcomes.push(WriteOutcome::Planned(
                        plan_in(&mut tx, plans, &mut tally).await?,
                    ));
                }
                WriteRequest::Claim(c) => {
                    outcomes.push(WriteOutcome::Claimed(claim_in(&mut tx, c).await?));
                }
            }
        }

        for chunk in crate::store::statement_chunks(&attempts) {
            let mut q = QueryBuilder::<Postgres>::new(sql::INSERT_ATTEMPTS);
            q.push_values(chunk, |mut row, (a, verdict, event_id)| {
                row.push_bind(a.id.0)
                    .push_bind(a.source.as_str())
                    .push_bind(a.received_at.0)
                    .push_bind(a.remote_addr.as_deref())
                    .push_bind(a.method.as_str())
                    .push_bind(a.path.as_str())
                    .push_bind(Json(&a.headers))
                    .push_bind(a.body.as_deref())
                    .push_bind(a.body_size)
                    .push_bind(verdict.as_str())
                    .push_bind(i32::from(a.status))
                    .push_bind(a.reason.as_deref())
                    .push_bind(*event_id);
            });
            q.build().execute(&mut *tx).await?;
        }
        add_activity(&mut tx, &tally).await?;
        if batch.iter().any(gives_work) {
            notify_workers(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// Whether `request` may leave work for another node: an event to plan, executions to run,
/// or an execution moved on. A notification costs a round trip and a queue lock held at
/// commit, so a batch of refusals and events that planned no action sends none.
fn gives_work(request: &WriteRequest) -> bool {
    match request {
        WriteRequest::Ingest { event, plan, .. } => match plan {
            // Executions leased to the node that planned them are its own to run.
            Some(plan) => plan.executions.iter().any(|x| x.lease.is_none()),
            None => event.status == EventStatus::Pending,
        },
        WriteRequest::Attempt(_) => false,
        WriteRequest::Finish(_) | WriteRequest::Plan(_) | WriteRequest::Claim(_) => true,
    }
}

/// Records an attempt and moves the execution on, if `owner` still holds its lease; returns
/// whether it did.
async fn finish_in(
    tx: &mut Transaction<'_, Postgres>,
    f: &FinishRequest,
    tally: &mut Tally,
) -> Result<bool, StoreError> {
    let (id, a, next) = (f.id, &f.attempt, &f.next);
    let now = Millis::now();
    let (status, next_at, dead_reason) = next.as_columns(now);
    // sqlx serializes the output when it binds it; measuring it first walks it once more,
    // and only for an attempt that could otherwise be kept in the row.
    let folded =
        super::folds_into_execution(a, next, || a.output.as_ref().map_or(0, super::json_len));
    let plugin: Option<String> = sqlx::query_scalar(sql::FINISH_EXECUTION)
        .bind(id.0)
        .bind(f.owner.as_str())
        .bind(status.as_str())
        .bind(next_at.0)
        .bind(a.error.as_deref())
        .bind(now.0)
        .bind(folded.then_some(a.started_at.0))
        .bind(folded.then_some(a.finished_at.0))
        .bind(a.output.as_ref().filter(|_| folded).map(Json))
        .bind(a.fuel_used.filter(|_| folded))
        .bind(a.memory_peak.filter(|_| folded))
        .fetch_optional(&mut **tx)
        .await?;
    let Some(plugin) = plugin else {
        return Ok(false);
    };
    tally.finished(&plugin, a, next, now);
    if folded {
        return Ok(true);
    }
    sqlx::query(sql::INSERT_EXECUTION_ATTEMPT)
        .bind(Uuid::now_v7())
        .bind(id.0)
        .bind(a.attempt)
        .bind(a.started_at.0)
        .bind(a.finished_at.0)
        .bind(a.outcome.as_str())
        .bind(a.error.as_deref())
        .bind(a.output.as_ref().map(Json))
        .bind(Json(&a.logs))
        .bind(Json(&a.http_calls))
        .bind(Json(&a.db_statements))
        .bind(a.fuel_used)
        .bind(a.memory_peak)
        .execute(&mut **tx)
        .await?;
    if let Some(reason) = dead_reason {
        sqlx::query(sql::INSERT_DEAD_LETTER)
            .bind(id.0)
            .bind(reason)
            .bind(now.0)
            .execute(&mut **tx)
            .await?;
    }
    Ok(true)
}

/// Stores an announced event, pending, unless its delivery is stored already; returns the
/// stored event's id and the verdict for its delivery attempt (kept in a row of its own).
async fn announce_in(
    tx: &mut Transaction<'_, Postgres>,
    a: &Announcement,
    tally: &mut Tally,
) -> Result<(Uuid, Verdict), StoreError> {
    let e = &a.event;
    let stored: Option<Uuid> = sqlx::query_scalar(sql::INSERT_EVENT_RETURNING_ID)
        .bind(e.id.0)
        .bind(e.source.as_str())
        .bind(e.delivery_id.as_str())
        .bind(e.event_type.as_str())
        .bind(e.received_at.0)
        .bind(Json(&e.headers))
        .bind(e.payload.as_str())
        .bind(e.status.as_str())
        .bind(None::<Json<serde_json::Value>>)
        .bind(None::<i64>)
        .fetch_optional(&mut **tx)
        .await?;
    let (event_id, verdict) = match stored {
        Some(id) => {
            tally.event(e);
            (id, a.attempt.verdict)
        }
        None => {
            let id: Uuid = sqlx::query_scalar(sql::EVENT_ID_BY_DELIVERY)
                .bind(e.source.as_str())
                .bind(e.delivery_id.as_str())
                .fetch_one(&mut **tx)
                .await?;
            (id, Verdict::Duplicate)
        }
    };
    tally.delivery(&a.attempt, verdict);
    Ok((event_id, verdict))
}

/// Whether `request` is a claim that applies limits shared by the nodes.
fn counts_shared_limits(request: &WriteRequest) -> bool {
    matches!(request, WriteRequest::Claim(c) if !c.busy.shared.is_empty())
}

/// Claims due executions (see [`Store::claim`](crate::store::Store::claim)) inside `tx`; a
/// batch with shared limits holds [`sql::CLAIM_LOCK`] from its start.
async fn claim_in(
    tx: &mut Transaction<'_, Postgres>,
    c: &ClaimRequest,
) -> Result<Vec<Execution>, StoreError> {
    sqlx::query(sql::EXPIRE_LEASES)
        .bind(c.now.0)
        .execute(&mut **tx)
        .await?;
    let text = sql::claim(&c.busy, true);
    let mut q = sqlx::query_as::<_, ExecutionRow>(&text)
        .bind(c.owner.as_str())
        .bind(c.now.saturating_add(c.lease).0)
        .bind(c.now.0);
    for p in &c.busy.plugins {
        q = q.bind(p.as_str());
    }
    for (rule, action) in &c.busy.actions {
        q = q.bind(rule.as_str()).bind(*action);
    }
    q = q.bind(c.limit.max(0));
    for limit in &c.busy.shared {
        q = match &limit.scope {
            LimitScope::Plugin(plugin) => q.bind(plugin.as_str()),
            LimitScope::Action(rule, action) => q.bind(rule.as_str()).bind(*action),
        }
        .bind(i64::from(limit.limit));
    }
    let rows = q.fetch_all(&mut **tx).await?;
    let mut claimed: Vec<Execution> = convert(rows)?;
    claimed.sort_by_key(|x| (x.next_attempt_at, x.event_seq));
    Ok(claimed)
}

/// Stores match traces and plans executions (see [`Store::plan`](crate::store::Store::plan))
/// inside `tx`.
async fn plan_in(
    tx: &mut Transaction<'_, Postgres>,
    plans: &[EventPlan],
    tally: &mut Tally,
) -> Result<Vec<ExecutionId>, StoreError> {
    let now = Millis::now();
    let mut created = Vec::new();
    for plan in plans {
        let seq: Option<i64> = sqlx::query_scalar(sql::PLAN_EVENT)
            .bind(plan.event.0)
            .bind(EventStatus::Planned.as_str())
            .bind(Json(&plan.match_trace))
            .bind(now.0)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(seq) = seq else {
            return Err(StoreError::Corrupt {
                table: "events",
                detail: format!("planning unknown event {}", plan.event),
            });
        };
        created.extend(insert_executions(tx, plan.event, seq, &plan.executions, now, tally).await?);
    }
    Ok(created)
}
