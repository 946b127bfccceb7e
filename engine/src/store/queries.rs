//! The store's SQL, written once for both backends.
//!
//! SQLite and PostgreSQL accept the same statements here (`$N` parameters, `ON CONFLICT`,
//! `RETURNING`); the one difference, row locking when claiming work, is a macro argument. The
//! macro expands into an `impl` block on each backend's store type.

macro_rules! store_queries {
    ($Store:ident, $Db:ty, claim_lock = $claim_lock:literal, notify = $notify:literal) => {
        use std::collections::HashMap;

        use sqlx::types::Json;
        use sqlx::{QueryBuilder, Row};
        use uuid::Uuid;

        use crate::model::{EventId, EventStatus, ExecutionId, ExecutionStatus, Millis, Verdict};
        use crate::store::records::{
            convert, DeadLetterRow, DeliveryAttemptRow, EventRow, ExecutionAttemptRow,
            ExecutionRow,
        };
        use crate::store::{
            ClaimExclusions, Cursor, DeadLetter, DeadLetterFilter, DeliveryAttempt,
            DeliveryAttemptFilter, EventFilter, EventPlan, Execution, ExecutionAttempt,
            ExecutionCounts, ExecutionFilter, IngestOutcome, NewDeliveryAttempt, NewExecution,
            NewExecutionAttempt, NextStep, QueueDepth, StoreError, StoredEvent, WriteOutcome,
            WriteRequest,
        };


        /// Inserts planned executions; ones that exist already (same event, rule, action and
        /// generation, or same key) are left alone. Returns the ids created.
        async fn insert_executions(
            tx: &mut sqlx::Transaction<'_, $Db>,
            event: EventId,
            seq: i64,
            executions: &[NewExecution],
            now: Millis,
        ) -> Result<Vec<ExecutionId>, StoreError> {
            let mut created = Vec::new();
            for x in executions {
                let id: Option<Uuid> = sqlx::query_scalar(
                    "INSERT INTO executions (id, event_id, event_seq, rule_id, action_index, \
                     generation, plugin, idempotency_key, order_key, status, attempts, \
                     next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $11, $11) \
                     ON CONFLICT DO NOTHING RETURNING id",
                )
                .bind(x.id.0)
                .bind(event.0)
                .bind(seq)
                .bind(x.rule_id.as_str())
                .bind(x.action_index)
                .bind(x.generation)
                .bind(x.plugin.as_str())
                .bind(x.idempotency_key.as_str())
                .bind(x.order_key.as_deref())
                .bind(ExecutionStatus::Pending.as_str())
                .bind(now.0)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(id) = id {
                    created.push(ExecutionId(id));
                }
            }
            Ok(created)
        }

        /// Tells other hookwise nodes sharing this database that there may be work (on
        /// PostgreSQL, `NOTIFY` delivered at commit; nothing on SQLite, which has one node).
        async fn notify_workers(tx: &mut sqlx::Transaction<'_, $Db>) -> Result<(), StoreError> {
            if !$notify.is_empty() {
                sqlx::query($notify).execute(&mut **tx).await?;
            }
            Ok(())
        }

        /// Records an attempt and moves the execution on, if `owner` still holds its lease;
        /// returns whether it did.
        async fn finish_in(
            tx: &mut sqlx::Transaction<'_, $Db>,
            id: ExecutionId,
            owner: &str,
            a: &NewExecutionAttempt,
            next: &NextStep,
        ) -> Result<bool, StoreError> {
            let now = Millis::now();
            let (status, next_at, dead_reason) = match next {
                NextStep::Succeeded => (ExecutionStatus::Succeeded, now, None),
                NextStep::RetryAt(at) => (ExecutionStatus::Pending, *at, None),
                NextStep::Dead(reason) => (ExecutionStatus::Dead, now, Some(reason.as_str())),
            };
            let done = sqlx::query(
                "UPDATE executions SET status = $3, next_attempt_at = $4, lease_owner = NULL, \
                 lease_until = NULL, last_error = $5, updated_at = $6 \
                 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
            )
            .bind(id.0)
            .bind(owner)
            .bind(status.as_str())
            .bind(next_at.0)
            .bind(a.error.as_deref())
            .bind(now.0)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO execution_attempts (id, execution_id, attempt, started_at, \
                 finished_at, outcome, error, output, logs, http_calls, db_statements, \
                 fuel_used, memory_peak) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (execution_id, attempt) DO NOTHING",
            )
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
                sqlx::query(
                    "INSERT INTO dead_letters (execution_id, event_id, source, rule_id, reason, created_at) \
                     SELECT x.id, x.event_id, e.source, x.rule_id, $2, $3 \
                     FROM executions x JOIN events e ON e.id = x.event_id WHERE x.id = $1 \
                     ON CONFLICT (execution_id) DO UPDATE SET reason = excluded.reason, \
                     created_at = excluded.created_at",
                )
                .bind(id.0)
                .bind(reason)
                .bind(now.0)
                .execute(&mut **tx)
                .await?;
            }
            Ok(true)
        }

        /// Claims due executions (see [`Store::claim`]) inside `tx`.
        async fn claim_in(
            tx: &mut sqlx::Transaction<'_, $Db>,
            owner: &str,
            limit: i64,
            lease: std::time::Duration,
            now: Millis,
            busy: &ClaimExclusions,
        ) -> Result<Vec<Execution>, StoreError> {
            // Expired leases first: their holder crashed or stalled, so the execution is due
            // again (the lost attempt stays counted). Both statements use partial indexes, so
            // a claim costs the same whatever the backlog.
            sqlx::query(
                "UPDATE executions SET status = 'pending', lease_owner = NULL, lease_until = NULL \
                 WHERE status = 'running' AND lease_until < $1",
            )
            .bind(now.0)
            .execute(&mut **tx)
            .await?;
            let mut q = QueryBuilder::<$Db>::new(
                "UPDATE executions SET status = 'running', lease_owner = ",
            );
            q.push_bind(owner)
                .push(", lease_until = ")
                .push_bind(now.saturating_add(lease).0)
                .push(", attempts = attempts + 1, updated_at = ")
                .push_bind(now.0)
                .push(
                    " WHERE id IN (SELECT x.id FROM executions x \
                     WHERE x.status = 'pending' AND x.next_attempt_at <= ",
                )
                .push_bind(now.0)
                // An execution with an order key waits for every earlier unfinished one of
                // the same rule and key (earlier event, or same event and earlier action).
                .push(
                    " AND (x.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM executions p \
                     WHERE p.rule_id = x.rule_id AND p.order_key = x.order_key \
                     AND p.status IN ('pending', 'running') \
                     AND (p.event_seq < x.event_seq OR (p.event_seq = x.event_seq \
                     AND p.action_index < x.action_index))))",
                );
            if !busy.plugins.is_empty() {
                q.push(" AND x.plugin NOT IN (");
                let mut list = q.separated(", ");
                for p in &busy.plugins {
                    list.push_bind(p.as_str());
                }
                q.push(")");
            }
            for (rule, action) in &busy.actions {
                q.push(" AND NOT (x.rule_id = ")
                    .push_bind(rule.as_str())
                    .push(" AND x.action_index = ")
                    .push_bind(*action)
                    .push(")");
            }
            q.push(" ORDER BY x.next_attempt_at, x.event_seq LIMIT ")
                .push_bind(limit.max(0))
                .push(concat!(" ", $claim_lock, ") RETURNING *"));
            let rows: Vec<ExecutionRow> = q.build_query_as().fetch_all(&mut **tx).await?;
            let mut claimed: Vec<Execution> = convert(rows)?;
            claimed.sort_by_key(|x| (x.next_attempt_at, x.event_seq));
            Ok(claimed)
        }


        /// Stores match traces and plans executions (see [`Store::plan`]) inside `tx`.
        async fn plan_in(
            tx: &mut sqlx::Transaction<'_, $Db>,
            plans: &[EventPlan],
        ) -> Result<Vec<ExecutionId>, StoreError> {
            let now = Millis::now();
            let mut created = Vec::new();
            for plan in plans {
                let seq: Option<i64> = sqlx::query_scalar(
                    "UPDATE events SET status = $2, match_trace = $3, planned_at = $4 \
                     WHERE id = $1 RETURNING seq",
                )
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
                created.extend(insert_executions(tx, plan.event, seq, &plan.executions, now).await?);
            }
            Ok(created)
        }

        fn dead_letter_filter(q: &mut QueryBuilder<'_, $Db>, f: &DeadLetterFilter) {
            if let Some(source) = &f.source {
                q.push(" AND source = ").push_bind(source.clone());
            }
            if let Some(rule) = &f.rule_id {
                q.push(" AND rule_id = ").push_bind(rule.clone());
            }
            if let Some(since) = f.since {
                q.push(" AND created_at >= ").push_bind(since.0);
            }
            if let Some(until) = f.until {
                q.push(" AND created_at < ").push_bind(until.0);
            }
            if let Some(before) = f.before {
                keyset(q, "created_at", "execution_id", before);
            }
        }

        /// Rows after `c` in a listing ordered by (`time`, `id`) descending.
        fn keyset(q: &mut QueryBuilder<'_, $Db>, time: &str, id: &str, c: Cursor) {
            q.push(format!(" AND ({time} < "))
                .push_bind(c.at.0)
                .push(format!(" OR ({time} = "))
                .push_bind(c.at.0)
                .push(format!(" AND {id} < "))
                .push_bind(c.id)
                .push("))");
        }

        impl $Store {
            /// Writes a batch in one transaction. Duplicated (source, delivery id) pairs, also
            /// within the batch, resolve to the event stored first.
            pub(crate) async fn write_batch(
                &self,
                batch: &[WriteRequest],
            ) -> Result<Vec<WriteOutcome>, StoreError> {
                let mut tx = self.pool.begin().await?;

                let ingests: Vec<_> = batch
                    .iter()
                    .filter_map(|r| match r {
                        WriteRequest::Ingest { event, .. } => Some(event),
                        WriteRequest::Attempt(_)
                        | WriteRequest::Finish(_)
                        | WriteRequest::Claim(_)
                        | WriteRequest::Plan(_) => None,
                    })
                    .collect();
                let mut inserted: std::collections::HashSet<Uuid> = Default::default();
                for chunk in crate::store::statement_chunks(&ingests) {
                    let mut q = QueryBuilder::<$Db>::new(
                        "INSERT INTO events (id, source, delivery_id, event_type, received_at, \
                         headers, payload, status) ",
                    );
                    q.push_values(chunk, |mut row, e| {
                        row.push_bind(e.id.0)
                            .push_bind(e.source.as_str())
                            .push_bind(e.delivery_id.as_str())
                            .push_bind(e.event_type.as_str())
                            .push_bind(e.received_at.0)
                            .push_bind(Json(&e.headers))
                            .push_bind(e.payload.as_str())
                            .push_bind(e.status.as_str());
                    });
                    q.push(" ON CONFLICT (source, delivery_id) DO NOTHING RETURNING id");
                    for row in q.build().fetch_all(&mut *tx).await? {
                        inserted.insert(row.try_get::<Uuid, _>(0)?);
                    }
                }

                // Duplicates: find the id of the event stored first.
                let mut existing: HashMap<(&str, &str), Uuid> = HashMap::new();
                for e in &ingests {
                    if inserted.contains(&e.id.0) {
                        existing.entry((e.source.as_str(), e.delivery_id.as_str())).or_insert(e.id.0);
                    }
                }
                let mut outcomes = Vec::with_capacity(batch.len());
                let mut attempts: Vec<(&NewDeliveryAttempt, Verdict, Option<Uuid>)> =
                    Vec::with_capacity(batch.len());
                for request in batch {
                    match request {
                        WriteRequest::Ingest { event, attempt } => {
                            let key = (event.source.as_str(), event.delivery_id.as_str());
                            let duplicate = !inserted.contains(&event.id.0);
                            let event_id = match existing.get(&key) {
                                Some(id) => *id,
                                None => {
                                    let id: Uuid = sqlx::query_scalar(
                                        "SELECT id FROM events WHERE source = $1 AND delivery_id = $2",
                                    )
                                    .bind(key.0)
                                    .bind(key.1)
                                    .fetch_one(&mut *tx)
                                    .await?;
                                    existing.insert(key, id);
                                    id
                                }
                            };
                            let verdict = if duplicate { Verdict::Duplicate } else { attempt.verdict };
                            attempts.push((attempt, verdict, Some(event_id)));
                            outcomes.push(WriteOutcome::Ingested(IngestOutcome {
                                event_id: EventId(event_id),
                                duplicate,
                            }));
                        }
                        WriteRequest::Attempt(attempt) => {
                            attempts.push((attempt, attempt.verdict, None));
                            outcomes.push(WriteOutcome::Recorded);
                        }
                        WriteRequest::Finish(f) => {
                            let held = finish_in(&mut tx, f.id, &f.owner, &f.attempt, &f.next).await?;
                            outcomes.push(if held {
                                WriteOutcome::Finished
                            } else {
                                WriteOutcome::LeaseLost
                            });
                        }
                        WriteRequest::Plan(plans) => {
                            outcomes.push(WriteOutcome::Planned(plan_in(&mut tx, plans).await?));
                        }
                        WriteRequest::Claim(c) => {
                            let claimed =
                                claim_in(&mut tx, &c.owner, c.limit, c.lease, c.now, &c.busy).await?;
                            outcomes.push(WriteOutcome::Claimed(claimed));
                        }
                    }
                }

                for chunk in crate::store::statement_chunks(&attempts) {
                    let mut q = QueryBuilder::<$Db>::new(
                        "INSERT INTO delivery_attempts (id, source, received_at, remote_addr, \
                         method, path, headers, body, body_size, verdict, status, reason, event_id) ",
                    );
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
                notify_workers(&mut tx).await?;
                tx.commit().await?;
                Ok(outcomes)
            }

            pub(crate) async fn get_event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
                let row: Option<EventRow> = sqlx::query_as("SELECT * FROM events WHERE id = $1")
                    .bind(id.0)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(StoredEvent::try_from).transpose()
            }

            pub(crate) async fn find_event(
                &self,
                source: &str,
                delivery_id: &str,
            ) -> Result<Option<StoredEvent>, StoreError> {
                let row: Option<EventRow> =
                    sqlx::query_as("SELECT * FROM events WHERE source = $1 AND delivery_id = $2")
                        .bind(source)
                        .bind(delivery_id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(StoredEvent::try_from).transpose()
            }

            pub(crate) async fn list_events(
                &self,
                f: &EventFilter,
            ) -> Result<Vec<StoredEvent>, StoreError> {
                let mut q = QueryBuilder::<$Db>::new("SELECT * FROM events WHERE 1 = 1");
                if let Some(source) = &f.source {
                    q.push(" AND source = ").push_bind(source.as_str());
                }
                if let Some(status) = f.status {
                    q.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(since) = f.since {
                    q.push(" AND received_at >= ").push_bind(since.0);
                }
                if let Some(before) = f.before_seq {
                    q.push(" AND seq < ").push_bind(before);
                }
                q.push(" ORDER BY seq DESC LIMIT ").push_bind(f.limit.max(0));
                let rows: Vec<EventRow> = q.build_query_as().fetch_all(&self.pool).await?;
                convert(rows)
            }

            pub(crate) async fn count_events(&self) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&self.pool).await?)
            }

            pub(crate) async fn list_delivery_attempts(
                &self,
                source: Option<&str>,
                limit: i64,
            ) -> Result<Vec<DeliveryAttempt>, StoreError> {
                let mut q = QueryBuilder::<$Db>::new("SELECT * FROM delivery_attempts WHERE 1 = 1");
                if let Some(source) = source {
                    q.push(" AND source = ").push_bind(source);
                }
                q.push(" ORDER BY received_at DESC, id DESC LIMIT ").push_bind(limit.max(0));
                let rows: Vec<DeliveryAttemptRow> = q.build_query_as().fetch_all(&self.pool).await?;
                convert(rows)
            }

            pub(crate) async fn list_delivery_attempts_filtered(
                &self,
                f: &DeliveryAttemptFilter,
            ) -> Result<Vec<DeliveryAttempt>, StoreError> {
                let mut q = QueryBuilder::<$Db>::new("SELECT * FROM delivery_attempts WHERE 1 = 1");
                if let Some(source) = &f.source {
                    q.push(" AND source = ").push_bind(source.as_str());
                }
                if let Some(verdict) = f.verdict {
                    q.push(" AND verdict = ").push_bind(verdict.as_str());
                }
                if let Some(event) = f.event_id {
                    q.push(" AND event_id = ").push_bind(event.0);
                }
                if let Some(since) = f.since {
                    q.push(" AND received_at >= ").push_bind(since.0);
                }
                if let Some(until) = f.until {
                    q.push(" AND received_at < ").push_bind(until.0);
                }
                if let Some(before) = f.before {
                    keyset(&mut q, "received_at", "id", before);
                }
                q.push(" ORDER BY received_at DESC, id DESC LIMIT ").push_bind(f.limit.max(0));
                let rows: Vec<DeliveryAttemptRow> = q.build_query_as().fetch_all(&self.pool).await?;
                convert(rows)
            }

            pub(crate) async fn list_executions(
                &self,
                f: &ExecutionFilter,
            ) -> Result<Vec<Execution>, StoreError> {
                let mut q = QueryBuilder::<$Db>::new("SELECT * FROM executions WHERE 1 = 1");
                if let Some(status) = f.status {
                    q.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(rule) = &f.rule_id {
                    q.push(" AND rule_id = ").push_bind(rule.as_str());
                }
                if let Some(plugin) = &f.plugin {
                    q.push(" AND plugin = ").push_bind(plugin.as_str());
                }
                if let Some(event) = f.event_id {
                    q.push(" AND event_id = ").push_bind(event.0);
                }
                if let Some(since) = f.since {
                    q.push(" AND created_at >= ").push_bind(since.0);
                }
                if let Some(before) = f.before {
                    keyset(&mut q, "created_at", "id", before);
                }
                q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(f.limit.max(0));
                let rows: Vec<ExecutionRow> = q.build_query_as().fetch_all(&self.pool).await?;
                convert(rows)
            }

            pub(crate) async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
                // Each count matches a partial index (events_pending, executions_due,
                // executions_leased), so a scrape does not scan the tables.
                let pending_events: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE status = 'pending'")
                        .fetch_one(&self.pool)
                        .await?;
                let pending_executions: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM executions WHERE status = 'pending'")
                        .fetch_one(&self.pool)
                        .await?;
                let running_executions: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM executions WHERE status = 'running'")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(QueueDepth {
                    pending_events,
                    pending_executions,
                    running_executions,
                })
            }

            pub(crate) async fn prune_events(&self, cutoff: Millis, batch: i64) -> Result<u64, StoreError> {
                // Executions, their attempts and dead letters follow by ON DELETE CASCADE
                // (SQLite connections enable foreign keys).
                let done = sqlx::query(
                    "DELETE FROM events WHERE seq IN (SELECT e.seq FROM events e \
                     WHERE e.received_at < $1 AND e.status <> 'pending' \
                     AND NOT EXISTS (SELECT 1 FROM executions x WHERE x.event_id = e.id \
                     AND x.status IN ('pending', 'running')) \
                     ORDER BY e.seq LIMIT $2)",
                )
                .bind(cutoff.0)
                .bind(batch.max(0))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            pub(crate) async fn prune_delivery_attempts(
                &self,
                cutoff: Millis,
                batch: i64,
            ) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "DELETE FROM delivery_attempts WHERE id IN (SELECT id FROM delivery_attempts \
                     WHERE received_at < $1 ORDER BY received_at LIMIT $2)",
                )
                .bind(cutoff.0)
                .bind(batch.max(0))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            pub(crate) async fn delivery_attempts_for_event(
                &self,
                event: EventId,
            ) -> Result<Vec<DeliveryAttempt>, StoreError> {
                let rows: Vec<DeliveryAttemptRow> = sqlx::query_as(
                    "SELECT * FROM delivery_attempts WHERE event_id = $1 ORDER BY received_at, id",
                )
                .bind(event.0)
                .fetch_all(&self.pool)
                .await?;
                convert(rows)
            }

            pub(crate) async fn pending_events(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
                let rows: Vec<EventRow> = sqlx::query_as(
                    "SELECT * FROM events WHERE status = 'pending' ORDER BY seq LIMIT $1",
                )
                .bind(limit.max(0))
                .fetch_all(&self.pool)
                .await?;
                convert(rows)
            }

            /// Stores match traces and plans executions for several events in one transaction.
            /// The earliest time something becomes claimable: a pending execution's next
            /// attempt or a running one's lease end.
            pub(crate) async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
                let at: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(t) FROM (\
                     SELECT MIN(next_attempt_at) AS t FROM executions WHERE status = 'pending' \
                     UNION ALL \
                     SELECT MIN(lease_until) AS t FROM executions WHERE status = 'running') u",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(at.map(Millis))
            }

            /// Plans further executions of an already planned event (a replay), in one
            /// transaction that also retires the dead letters being retried.
            pub(crate) async fn plan_replay(
                &self,
                event: EventId,
                executions: &[NewExecution],
                retire_dead_letters: &[ExecutionId],
            ) -> Result<Vec<ExecutionId>, StoreError> {
                let now = Millis::now();
                let mut tx = self.pool.begin().await?;
                let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM events WHERE id = $1")
                    .bind(event.0)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(seq) = seq else {
                    return Err(StoreError::NotFound(format!("event {event}")));
                };
                let created = insert_executions(&mut tx, event, seq, executions, now).await?;
                for id in retire_dead_letters {
                    sqlx::query("DELETE FROM dead_letters WHERE execution_id = $1")
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await?;
                }
                notify_workers(&mut tx).await?;
                tx.commit().await?;
                Ok(created)
            }

            /// The generation a replay of `event` should use: one more than any so far.
            pub(crate) async fn next_generation(&self, event: EventId) -> Result<i32, StoreError> {
                let max: Option<i32> = sqlx::query_scalar(
                    "SELECT MAX(generation) FROM executions WHERE event_id = $1",
                )
                .bind(event.0)
                .fetch_one(&self.pool)
                .await?;
                Ok(max.map_or(0, |g| g + 1))
            }

            /// Deletes the dead letters matching `f` (the executions stay, as history).
            pub(crate) async fn purge_dead_letters(
                &self,
                f: &DeadLetterFilter,
            ) -> Result<u64, StoreError> {
                let mut q = QueryBuilder::<$Db>::new(
                    "DELETE FROM dead_letters WHERE execution_id IN (SELECT execution_id FROM dead_letters WHERE 1 = 1",
                );
                dead_letter_filter(&mut q, f);
                q.push(")");
                Ok(q.build().execute(&self.pool).await?.rows_affected())
            }

            pub(crate) async fn renew_lease(
                &self,
                id: ExecutionId,
                owner: &str,
                until: Millis,
            ) -> Result<(), StoreError> {
                let done = sqlx::query(
                    "UPDATE executions SET lease_until = $3 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id.0)
                .bind(owner)
                .bind(until.0)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::LeaseLost(id));
                }
                Ok(())
            }

            pub(crate) async fn release(&self, id: ExecutionId, owner: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE executions SET status = 'pending', lease_owner = NULL, lease_until = NULL, \
                     attempts = attempts - 1 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id.0)
                .bind(owner)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            pub(crate) async fn get_execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
                let row: Option<ExecutionRow> =
                    sqlx::query_as("SELECT * FROM executions WHERE id = $1")
                        .bind(id.0)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(Execution::try_from).transpose()
            }

            pub(crate) async fn executions_for_event(
                &self,
                event: EventId,
            ) -> Result<Vec<Execution>, StoreError> {
                let rows: Vec<ExecutionRow> = sqlx::query_as(
                    "SELECT * FROM executions WHERE event_id = $1 \
                     ORDER BY generation, rule_id, action_index",
                )
                .bind(event.0)
                .fetch_all(&self.pool)
                .await?;
                convert(rows)
            }

            pub(crate) async fn attempts_for_execution(
                &self,
                execution: ExecutionId,
            ) -> Result<Vec<ExecutionAttempt>, StoreError> {
                let rows: Vec<ExecutionAttemptRow> = sqlx::query_as(
                    "SELECT * FROM execution_attempts WHERE execution_id = $1 ORDER BY attempt",
                )
                .bind(execution.0)
                .fetch_all(&self.pool)
                .await?;
                convert(rows)
            }

            pub(crate) async fn list_dead_letters(
                &self,
                f: &DeadLetterFilter,
            ) -> Result<Vec<DeadLetter>, StoreError> {
                let mut q = QueryBuilder::<$Db>::new("SELECT * FROM dead_letters WHERE 1 = 1");
                dead_letter_filter(&mut q, f);
                q.push(" ORDER BY created_at DESC, execution_id DESC LIMIT ").push_bind(f.limit.max(0));
                let rows: Vec<DeadLetterRow> = q.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(DeadLetter::from).collect())
            }

            pub(crate) async fn execution_counts(&self) -> Result<ExecutionCounts, StoreError> {
                let rows = sqlx::query("SELECT status, COUNT(*) FROM executions GROUP BY status")
                    .fetch_all(&self.pool)
                    .await?;
                let mut counts = ExecutionCounts::default();
                for row in rows {
                    let status: String = row.try_get(0)?;
                    let n: i64 = row.try_get(1)?;
                    match ExecutionStatus::parse(&status) {
                        Some(ExecutionStatus::Pending) => counts.pending = n,
                        Some(ExecutionStatus::Running) => counts.running = n,
                        Some(ExecutionStatus::Succeeded) => counts.succeeded = n,
                        Some(ExecutionStatus::Dead) => counts.dead = n,
                        None => {
                            return Err(StoreError::Corrupt {
                                table: "executions",
                                detail: format!("status {status}"),
                            })
                        }
                    }
                }
                Ok(counts)
            }

            pub(crate) fn is_closed(&self) -> bool {
                self.pool.is_closed()
            }

            pub(crate) async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            pub(crate) async fn close(&self) {
                self.pool.close().await;
            }
        }
    };
}

pub(super) use store_queries;
