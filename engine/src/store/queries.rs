//! The store's reads and its occasional writes (leases, replays, pruning), written once for both
//! backends through sqlx.
//!
//! SQLite and PostgreSQL accept the same statements here (`$N` parameters, `ON CONFLICT`,
//! `RETURNING`). The macro expands into an `impl` block on each backend's store type. The
//! group-committed write path is per backend (`postgres.rs` with sqlx, `sqlite_writer.rs` with
//! rusqlite) over the statement texts in `sql.rs`.

/// Most ids in one `IN (...)` list (SQLite allows 32,766 parameters; this keeps statements
/// small and few).
pub(crate) const EVENTS_PER_READ: usize = 128;

/// How far (milliseconds) an event's arrival stamp may be out of step with its place in the
/// arrival sequence, as far as time windows of listings allow for: a request is stamped when
/// it arrives and numbered when its batch is stored, milliseconds later as a rule, up to the
/// body read timeout (30 s by default) for a slow upload. Each bound of a window reads this
/// much further; an event stored later than this after it arrived may be missed at a window's
/// edge.
pub(crate) const ARRIVAL_DISORDER: i64 = 60_000;

macro_rules! store_queries {
    (
        $Store:ident,
        $Db:ty,
        notify = $notify:literal,
        attempts_in_events = $folded:literal,
        accepted_columns = $accepted_columns:expr,
        text = $Text:ty,
        activity_shard = $shard:expr
    ) => {
        use sqlx::{QueryBuilder, Row};
        use uuid::Uuid;

        use crate::model::{EventId, ExecutionId, ExecutionStatus, ExecutionTally, Millis};
        use crate::store::queries::EVENTS_PER_READ;
        use crate::store::text::TextPolicy;
        use crate::store::records::{
            convert, DeadLetterRow, DeliveryAttemptRow, EventRow, ExecutionAttemptRow,
            ExecutionRow, FirstAttemptRow,
        };
        use crate::store::{
            Activity, Cursor, DeadLetter, DeadLetterEntry, DeadLetterQuery,
            DeadLetterFilter, DeliveryAttempt, DeliveryAttemptFilter,
            EventFilter, Execution, ExecutionAttempt, ExecutionCounts, ExecutionFilter,
            NewExecution, QueueDepth, StoreError, StoredEvent,
        };

        /// Inserts planned executions; ones that exist already (same event, rule, action and
        /// generation, or same key) are left alone. Returns the ids created. `executions` have
        /// been through the backend's [`TextPolicy`] already.
        async fn insert_executions(
            tx: &mut sqlx::Transaction<'_, $Db>,
            event: EventId,
            seq: i64,
            executions: &[NewExecution],
            now: Millis,
            tally: &mut crate::store::activity::Tally,
        ) -> Result<Vec<ExecutionId>, StoreError> {
            let mut created = Vec::new();
            for x in executions {
                let leased = x.planned_state();
                let id: Option<Uuid> = sqlx::query_scalar(crate::store::sql::INSERT_EXECUTION)
                .bind(x.id.0)
                .bind(event.0)
                .bind(seq)
                .bind(x.rule_id.as_str())
                .bind(x.action_index)
                .bind(x.generation)
                .bind(x.plugin.as_str())
                .bind(x.idempotency_key.as_str())
                .bind(x.order_key.as_deref())
                .bind(leased.status.as_str())
                .bind(now.0)
                .bind(leased.attempts)
                .bind(leased.owner)
                .bind(leased.until)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(id) = id {
                    created.push(ExecutionId(id));
                    tally.planned(&x.plugin, now);
                }
            }
            Ok(created)
        }

        /// Adds what a transaction did to the per-minute activity counts, under this node's
        /// shard (see `activity.rs`).
        async fn add_activity(
            tx: &mut sqlx::Transaction<'_, $Db>,
            tally: &crate::store::activity::Tally,
        ) -> Result<(), StoreError> {
            if tally.is_empty() {
                return Ok(());
            }
            let rows: Vec<_> = tally.rows().collect();
            let mut q = QueryBuilder::<$Db>::new(crate::store::sql::INSERT_ACTIVITY);
            q.push_values(&rows, |mut b, r| {
                b.push_bind(r.minute)
                    .push_bind(r.kind.as_str())
                    .push_bind(<$Text>::text(&r.subject).into_owned())
                    .push_bind(<$Text>::text(&r.label).into_owned())
                    .push_bind($shard)
                    .push_bind(r.count);
            });
            q.push(crate::store::sql::ACTIVITY_CONFLICT);
            q.build().execute(&mut **tx).await?;
            Ok(())
        }

        /// Tells other hookwise nodes sharing this database that there may be work (on
        /// PostgreSQL, `NOTIFY` delivered at commit; nothing on SQLite, which has one node).
        async fn notify_workers(tx: &mut sqlx::Transaction<'_, $Db>) -> Result<(), StoreError> {
            if !$notify.is_empty() {
                sqlx::query($notify).execute(&mut **tx).await?;
            }
            Ok(())
        }


        fn dead_letter_filter(q: &mut QueryBuilder<'_, $Db>, f: &DeadLetterFilter) {
            if let Some(source) = &f.source {
                q.push(" AND source = ").push_bind(<$Text>::text(source).into_owned());
            }
            if let Some(rule) = &f.rule_id {
                q.push(" AND rule_id = ").push_bind(<$Text>::text(rule).into_owned());
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

        /// [`dead_letter_filter`] narrowed by plugin (one primary-key lookup per dead letter)
        /// and to some executions.
        fn dead_letter_query(q: &mut QueryBuilder<'_, $Db>, d: &DeadLetterQuery) {
            dead_letter_filter(q, &d.filter);
            if let Some(plugin) = &d.plugin {
                q.push(
                    " AND EXISTS (SELECT 1 FROM executions x \
                     WHERE x.id = dead_letters.execution_id AND x.plugin = ",
                )
                .push_bind(<$Text>::text(plugin).into_owned())
                .push(")");
            }
            if !d.ids.is_empty() {
                q.push(" AND execution_id IN (");
                let mut list = q.separated(", ");
                for id in &d.ids {
                    list.push_bind(id.0);
                }
                q.push(")");
            }
        }

        /// A delivery attempt filter's time bounds and page cursor, with `id` the column that
        /// holds the attempt's id.
        fn attempt_times(q: &mut QueryBuilder<'_, $Db>, f: &DeliveryAttemptFilter, id: &str) {
            if let Some(since) = f.since {
                q.push(" AND received_at >= ").push_bind(since.0);
            }
            if let Some(until) = f.until {
                q.push(" AND received_at < ").push_bind(until.0);
            }
            if let Some(before) = f.before {
                keyset(q, "received_at", id, before);
            }
        }

        /// The conditions of an event listing, after a `WHERE`.
        ///
        /// A time window also bounds the sequence numbers read, so that the newest-first scan
        /// starts at the window's end and stops at its start (one seek on `events_received`
        /// for each bound) instead of reading its way through the rest of the history. Seq
        /// follows arrival only roughly (a request is stamped when it arrives and numbered when
        /// stored), so each bound is taken [`ARRIVAL_DISORDER`] wider and the exact
        /// `received_at` condition decides.
        fn event_conditions<'a>(q: &mut QueryBuilder<'a, $Db>, f: &'a EventFilter) {
            use crate::store::queries::ARRIVAL_DISORDER;
            if let Some(source) = &f.source {
                q.push(" AND source = ").push_bind(<$Text>::text(source));
            }
            if let Some(event_type) = &f.event_type {
                q.push(" AND event_type = ").push_bind(<$Text>::text(event_type));
            }
            if let Some(status) = f.status {
                q.push(" AND status = ").push_bind(status.as_str());
            }
            if let Some(outcome) = f.outcome {
                q.push(" AND ").push(crate::store::sql::outcome_condition(outcome));
            }
            if let Some(since) = f.since {
                q.push(" AND seq >= COALESCE((SELECT seq FROM events WHERE received_at >= ")
                    .push_bind(since.0.saturating_sub(ARRIVAL_DISORDER))
                    .push(" ORDER BY received_at LIMIT 1), ")
                    .push_bind(i64::MAX)
                    .push(") AND received_at >= ")
                    .push_bind(since.0);
            }
            if let Some(until) = f.until {
                q.push(" AND seq < COALESCE((SELECT seq FROM events WHERE received_at >= ")
                    .push_bind(until.0.saturating_add(ARRIVAL_DISORDER))
                    .push(" ORDER BY received_at LIMIT 1), ")
                    .push_bind(i64::MAX)
                    .push(") AND received_at < ")
                    .push_bind(until.0);
            }
            if let Some(before) = f.before_seq {
                q.push(" AND seq < ").push_bind(before);
            }
            if let Some(after) = f.after_seq {
                q.push(" AND seq > ").push_bind(after);
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

            pub(crate) async fn get_event(&self, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
                let row: Option<EventRow> = sqlx::query_as("SELECT * FROM events WHERE id = $1")
                    .bind(id.0)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(StoredEvent::try_from).transpose()
            }

            /// The events with these ids, without their match traces (for running actions).
            pub(crate) async fn events_to_run(
                &self,
                ids: &[EventId],
            ) -> Result<Vec<StoredEvent>, StoreError> {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(EVENTS_PER_READ) {
                    let mut q = QueryBuilder::<$Db>::new(
                        "SELECT seq, id, source, delivery_id, event_type, received_at, headers, \
                         payload, status, NULL AS match_trace, planned_at FROM events WHERE id IN (",
                    );
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.0);
                    }
                    q.push(")");
                    let rows: Vec<EventRow> = q.build_query_as().fetch_all(&self.pool).await?;
                    out.extend(convert::<EventRow, StoredEvent>(rows)?);
                }
                Ok(out)
            }

            pub(crate) async fn find_event(
                &self,
                source: &str,
                delivery_id: &str,
            ) -> Result<Option<StoredEvent>, StoreError> {
                let row: Option<EventRow> =
                    sqlx::query_as("SELECT * FROM events WHERE source = $1 AND delivery_id = $2")
                        .bind(<$Text>::text(source))
                        .bind(<$Text>::text(delivery_id))
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(StoredEvent::try_from).transpose()
            }

            pub(crate) async fn list_events(
                &self,
                f: &EventFilter,
            ) -> Result<Vec<StoredEvent>, StoreError> {
                let mut q = QueryBuilder::<$Db>::new("SELECT * FROM events WHERE 1 = 1");
                event_conditions(&mut q, f);
                q.push(" ORDER BY seq DESC LIMIT ").push_bind(f.limit.max(0));
                let rows: Vec<EventRow> = q.build_query_as().fetch_all(&self.pool).await?;
                convert(rows)
            }

            /// The (seq, arrival time, payload) of the events `f` lists, newest first: what a
            /// payload search reads of each candidate, without headers or match traces.
            pub(crate) async fn event_payloads(
                &self,
                f: &EventFilter,
            ) -> Result<Vec<(i64, Millis, String)>, StoreError> {
                let mut q =
                    QueryBuilder::<$Db>::new("SELECT seq, received_at, payload FROM events WHERE 1 = 1");
                event_conditions(&mut q, f);
                q.push(" ORDER BY seq DESC LIMIT ").push_bind(f.limit.max(0));
                let rows = q.build().fetch_all(&self.pool).await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let payload: crate::store::payload::PayloadColumn = row.try_get("payload")?;
                    out.push((row.try_get("seq")?, Millis(row.try_get("received_at")?), payload.0));
                }
                Ok(out)
            }

            /// The events with these sequence numbers, newest first.
            pub(crate) async fn events_by_seq(
                &self,
                seqs: &[i64],
            ) -> Result<Vec<StoredEvent>, StoreError> {
                let mut out = Vec::with_capacity(seqs.len());
                for chunk in seqs.chunks(EVENTS_PER_READ) {
                    let mut q = QueryBuilder::<$Db>::new("SELECT * FROM events WHERE seq IN (");
                    let mut list = q.separated(", ");
                    for seq in chunk {
                        list.push_bind(*seq);
                    }
                    q.push(")");
                    let rows: Vec<EventRow> = q.build_query_as().fetch_all(&self.pool).await?;
                    out.extend(convert::<EventRow, StoredEvent>(rows)?);
                }
                out.sort_by(|a, b| b.seq.cmp(&a.seq));
                Ok(out)
            }

            /// What the current executions of these events add up to, per event (events
            /// without executions are left out): one aggregate per [`EVENTS_PER_READ`] events,
            /// over the `(event_id, rule_id, action_index, generation)` unique index.
            pub(crate) async fn execution_tallies(
                &self,
                ids: &[EventId],
            ) -> Result<Vec<(EventId, ExecutionTally)>, StoreError> {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(EVENTS_PER_READ) {
                    let mut q = QueryBuilder::<$Db>::new(crate::store::sql::EXECUTION_TALLIES);
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.0);
                    }
                    q.push(crate::store::sql::EXECUTION_TALLIES_END);
                    let rows = q.build().fetch_all(&self.pool).await?;
                    for row in rows {
                        let tally = ExecutionTally {
                            total: row.try_get("total")?,
                            unfinished: row.try_get("unfinished")?,
                            retrying: row.try_get("retrying")?,
                            dead: row.try_get("dead")?,
                        };
                        out.push((EventId(row.try_get("event_id")?), tally));
                    }
                }
                Ok(out)
            }

            pub(crate) async fn count_events(&self) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&self.pool).await?)
            }

            pub(crate) async fn list_delivery_attempts(
                &self,
                source: Option<&str>,
                limit: i64,
            ) -> Result<Vec<DeliveryAttempt>, StoreError> {
                self.list_delivery_attempts_filtered(&DeliveryAttemptFilter {
                    source: source.map(str::to_owned),
                    limit,
                    ..Default::default()
                })
                .await
            }

            /// Delivery attempts newest first. Where the backend keeps accepted attempts in
            /// their events' rows (SQLite, `attempts_in_events`), each table gives its newest
            /// `limit` that pass the filter and the two lists are merged.
            pub(crate) async fn list_delivery_attempts_filtered(
                &self,
                f: &DeliveryAttemptFilter,
            ) -> Result<Vec<DeliveryAttempt>, StoreError> {
                let limit = f.limit.max(0);
                let mut q = QueryBuilder::<$Db>::new("");
                if $folded {
                    q.push("SELECT * FROM (");
                }
                q.push("SELECT ")
                    .push(crate::store::sql::ATTEMPT_COLUMNS)
                    .push(" FROM delivery_attempts WHERE 1 = 1");
                if let Some(source) = &f.source {
                    q.push(" AND source = ").push_bind(<$Text>::text(source));
                }
                if let Some(verdict) = f.verdict {
                    q.push(" AND verdict = ").push_bind(verdict.as_str());
                }
                if let Some(event) = f.event_id {
                    q.push(" AND event_id = ").push_bind(event.0);
                }
                attempt_times(&mut q, f, "id");
                q.push(" ORDER BY received_at DESC, id DESC LIMIT ").push_bind(limit);
                if $folded {
                    q.push(") AS kept_apart UNION ALL SELECT * FROM (SELECT ")
                        .push($accepted_columns)
                        .push(" FROM events WHERE attempt_id IS NOT NULL");
                    if let Some(source) = &f.source {
                        q.push(" AND source = ").push_bind(<$Text>::text(source));
                    }
                    if f.verdict.is_some_and(|v| v != crate::model::Verdict::Accepted) {
                        q.push(" AND 0 = 1");
                    }
                    if let Some(event) = f.event_id {
                        q.push(" AND id = ").push_bind(event.0);
                    }
                    attempt_times(&mut q, f, "attempt_id");
                    q.push(" ORDER BY received_at DESC, attempt_id DESC LIMIT ")
                        .push_bind(limit)
                        .push(") AS kept_in_events ORDER BY received_at DESC, id DESC LIMIT ")
                        .push_bind(limit);
                }
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
                    q.push(" AND rule_id = ").push_bind(<$Text>::text(rule));
                }
                if let Some(plugin) = &f.plugin {
                    q.push(" AND plugin = ").push_bind(<$Text>::text(plugin));
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

            pub(crate) async fn sample_events(
                &self,
                f: &crate::store::EventSample,
            ) -> Result<Vec<crate::store::SampledEvent>, StoreError> {
                let mut q = QueryBuilder::<$Db>::new(
                    "SELECT seq, id, source, delivery_id, event_type, received_at, headers, \
                     CASE WHEN LENGTH(payload) <= ",
                );
                q.push_bind(f.max_payload)
                    .push(
                        " THEN payload ELSE '' END AS payload, \
                         CAST(CASE WHEN LENGTH(payload) <= ",
                    )
                    .push_bind(f.max_payload)
                    .push(
                        " THEN 0 ELSE 1 END AS BIGINT) AS payload_skipped, status, \
                         NULL AS match_trace, planned_at FROM events WHERE source = ",
                    )
                    .push_bind(<$Text>::text(&f.source).into_owned())
                    .push(" AND status <> 'quarantined'");
                if let Some(since) = f.since {
                    // Arrival order and time go together: the first event of the window
                    // bounds the index range read (one seek on `events_received`); with no
                    // event in the window, nothing is read.
                    q.push(
                        " AND seq >= COALESCE((SELECT seq FROM events WHERE received_at >= ",
                    )
                    .push_bind(since.0)
                    .push(" ORDER BY received_at LIMIT 1), ")
                    .push_bind(i64::MAX)
                    .push(") AND received_at >= ")
                    .push_bind(since.0);
                }
                if let Some(until) = f.until {
                    q.push(" AND received_at < ").push_bind(until.0);
                }
                if let Some(before) = f.before_seq {
                    q.push(" AND seq < ").push_bind(before);
                }
                q.push(" ORDER BY seq DESC LIMIT ").push_bind(f.limit.max(0));
                let rows = q.build().fetch_all(&self.pool).await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let skipped: i64 = row.try_get("payload_skipped")?;
                    let event: EventRow = sqlx::FromRow::from_row(&row)?;
                    out.push(crate::store::SampledEvent {
                        stored: StoredEvent::try_from(event)?,
                        payload_skipped: skipped != 0,
                    });
                }
                Ok(out)
            }

            pub(crate) async fn last_accepted(
                &self,
                source: &str,
            ) -> Result<Option<Millis>, StoreError> {
                let at: Option<i64> = sqlx::query_scalar(
                    "SELECT received_at FROM events WHERE source = $1 \
                     AND status <> 'quarantined' ORDER BY seq DESC LIMIT 1",
                )
                .bind(<$Text>::text(source))
                .fetch_optional(&self.pool)
                .await?;
                Ok(at.map(Millis))
            }

            /// Activity of the given kinds in `[since, until)`, summed over shards and over
            /// the window's buckets of `bucket` ms (all in one when None). Summed here, not by
            /// the caller: a day of minutes is some 10,000 rows, a day of hours some 200.
            async fn activity_rows(
                &self,
                since: Millis,
                until: Millis,
                bucket: Option<i64>,
                kinds: &[crate::store::activity::Kind],
            ) -> Result<Vec<crate::store::activity::Counted>, StoreError> {
                let (first, last) = crate::store::activity::minutes(since, until);
                let mut q = QueryBuilder::<$Db>::new("SELECT ");
                match bucket {
                    // A minute that began before the window counts in its first bucket.
                    Some(bucket) => {
                        q.push("CASE WHEN minute * 60000 < ")
                            .push_bind(since.0)
                            .push(" THEN 0 ELSE (minute * 60000 - ")
                            .push_bind(since.0)
                            .push(") / ")
                            .push_bind(bucket.max(1))
                            .push(" END");
                    }
                    None => {
                        q.push("CAST(0 AS BIGINT)");
                    }
                }
                q.push(
                    " AS bucket, kind, subject, label, CAST(SUM(count) AS BIGINT) AS n \
                     FROM activity WHERE kind IN (",
                );
                let mut list = q.separated(", ");
                for kind in kinds {
                    list.push_bind(kind.as_str());
                }
                q.push(") AND minute >= ")
                    .push_bind(first)
                    .push(" AND minute <= ")
                    .push_bind(last)
                    .push(" GROUP BY 1, kind, subject, label");
                let rows = q.build().fetch_all(&self.pool).await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push(crate::store::activity::Counted {
                        bucket: row.try_get("bucket")?,
                        kind: row.try_get("kind")?,
                        subject: row.try_get("subject")?,
                        label: row.try_get("label")?,
                        count: row.try_get("n")?,
                    });
                }
                Ok(out)
            }

            pub(crate) async fn plugin_calls(
                &self,
                since: Millis,
                until: Millis,
            ) -> Result<std::collections::BTreeMap<String, crate::store::PluginCalls>, StoreError>
            {
                use crate::store::activity::Kind;
                let rows = self
                    .activity_rows(since, until, None, &[Kind::Call, Kind::CallMs])
                    .await?;
                Ok(crate::store::PluginCalls::of(rows))
            }

            pub(crate) async fn recent_refusals(
                &self,
                since: Millis,
                limit: i64,
            ) -> Result<Vec<crate::store::RefusalCount>, StoreError> {
                let rows = sqlx::query(
                    "SELECT source, reason, COUNT(*) AS n FROM (SELECT source, \
                     COALESCE(reason, '') AS reason FROM delivery_attempts \
                     WHERE received_at >= $1 AND verdict = 'rejected' \
                     ORDER BY received_at DESC LIMIT $2) r GROUP BY source, reason",
                )
                .bind(since.0)
                .bind(limit.max(0))
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push(crate::store::RefusalCount {
                        source: row.try_get(0)?,
                        reason: row.try_get(1)?,
                        count: row.try_get(2)?,
                    });
                }
                Ok(out)
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
                let done = sqlx::query(crate::store::sql::PRUNE_EVENTS)
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
                let done = sqlx::query(crate::store::sql::PRUNE_DELIVERY_ATTEMPTS)
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
                let mut q = QueryBuilder::<$Db>::new("SELECT ");
                q.push(crate::store::sql::ATTEMPT_COLUMNS)
                    .push(" FROM delivery_attempts WHERE event_id = ")
                    .push_bind(event.0);
                if $folded {
                    q.push(" UNION ALL SELECT ")
                        .push($accepted_columns)
                        .push(" FROM events WHERE attempt_id IS NOT NULL AND id = ")
                        .push_bind(event.0);
                }
                q.push(" ORDER BY received_at, id");
                let rows: Vec<DeliveryAttemptRow> = q.build_query_as().fetch_all(&self.pool).await?;
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
                // Order keys are rendered from payloads: outside text.
                let executions = <$Text>::all(executions);
                let executions = executions.as_ref();
                let mut tx = self.pool.begin().await?;
                let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM events WHERE id = $1")
                    .bind(event.0)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(seq) = seq else {
                    return Err(StoreError::NotFound(format!("event {event}")));
                };
                let mut tally = crate::store::activity::Tally::default();
                let created =
                    insert_executions(&mut tx, event, seq, executions, now, &mut tally).await?;
                for id in retire_dead_letters {
                    sqlx::query("DELETE FROM dead_letters WHERE execution_id = $1")
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await?;
                }
                add_activity(&mut tx, &tally).await?;
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
                attempt: i32,
                until: Millis,
            ) -> Result<(), StoreError> {
                let done = sqlx::query(
                    "UPDATE executions SET lease_until = $3 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running' \
                     AND attempts = $4",
                )
                .bind(id.0)
                .bind(<$Text>::text(owner))
                .bind(until.0)
                .bind(attempt)
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
                .bind(<$Text>::text(owner))
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
                // A first attempt kept in its execution's row (see `folds_into_execution`)
                // comes first; the rest have rows of their own.
                let first: Option<FirstAttemptRow> = sqlx::query_as(
                    "SELECT id, first_started_at, first_finished_at, first_output, \
                     first_fuel_used, first_memory_peak FROM executions \
                     WHERE id = $1 AND first_finished_at IS NOT NULL",
                )
                .bind(execution.0)
                .fetch_optional(&self.pool)
                .await?;
                let rows: Vec<ExecutionAttemptRow> = sqlx::query_as(
                    "SELECT * FROM execution_attempts WHERE execution_id = $1 ORDER BY attempt",
                )
                .bind(execution.0)
                .fetch_all(&self.pool)
                .await?;
                let mut attempts: Vec<ExecutionAttempt> =
                    first.map(ExecutionAttempt::from).into_iter().collect();
                attempts.extend(convert::<_, ExecutionAttempt>(rows)?);
                Ok(attempts)
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

            pub(crate) async fn list_dead_letter_entries(
                &self,
                d: &DeadLetterQuery,
            ) -> Result<Vec<DeadLetterEntry>, StoreError> {
                let mut q = QueryBuilder::<$Db>::new(
                    "SELECT d.execution_id, d.event_id, d.source, d.rule_id, d.reason, \
                     d.created_at, x.plugin, x.action_index FROM (SELECT * FROM dead_letters \
                     WHERE 1 = 1",
                );
                dead_letter_query(&mut q, d);
                q.push(" ORDER BY created_at DESC, execution_id DESC LIMIT ")
                    .push_bind(d.filter.limit.max(0))
                    .push(
                        ") d JOIN executions x ON x.id = d.execution_id \
                         ORDER BY d.created_at DESC, d.execution_id DESC",
                    );
                let rows = q.build().fetch_all(&self.pool).await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push(DeadLetterEntry {
                        letter: DeadLetter {
                            execution_id: ExecutionId(row.try_get("execution_id")?),
                            event_id: EventId(row.try_get("event_id")?),
                            source: row.try_get("source")?,
                            rule_id: row.try_get("rule_id")?,
                            reason: row.try_get("reason")?,
                            created_at: Millis(row.try_get("created_at")?),
                        },
                        plugin: row.try_get("plugin")?,
                        action_index: row.try_get("action_index")?,
                    });
                }
                Ok(out)
            }

            pub(crate) async fn count_dead_letters(
                &self,
                d: &DeadLetterQuery,
                cap: i64,
            ) -> Result<i64, StoreError> {
                let mut q = QueryBuilder::<$Db>::new(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM dead_letters WHERE 1 = 1",
                );
                dead_letter_query(&mut q, d);
                q.push(" LIMIT ").push_bind(cap.max(0).saturating_add(1)).push(") c");
                Ok(q.build_query_scalar::<i64>().fetch_one(&self.pool).await?)
            }

            pub(crate) async fn purge_dead_letter_query(
                &self,
                d: &DeadLetterQuery,
            ) -> Result<u64, StoreError> {
                let mut q = QueryBuilder::<$Db>::new(
                    "DELETE FROM dead_letters WHERE execution_id IN \
                     (SELECT execution_id FROM dead_letters WHERE 1 = 1",
                );
                dead_letter_query(&mut q, d);
                q.push(")");
                Ok(q.build().execute(&self.pool).await?.rows_affected())
            }

            /// See [`crate::store::Store::activity`].
            pub(crate) async fn activity(
                &self,
                since: Millis,
                until: Millis,
                bucket: i64,
            ) -> Result<Activity, StoreError> {
                use crate::store::activity::Kind;
                let kinds = [
                    Kind::Delivery,
                    Kind::Refusal,
                    Kind::Event,
                    Kind::Execution,
                    Kind::Call,
                ];
                let rows = self
                    .activity_rows(since, until, Some(bucket), &kinds)
                    .await?;
                Ok(Activity::of(rows))
            }

            pub(crate) async fn prune_activity(&self, cutoff: Millis) -> Result<u64, StoreError> {
                let before = crate::store::activity::minute_of(cutoff);
                let mut pruned = 0;
                for kind in crate::store::activity::Kind::ALL {
                    let done = sqlx::query(crate::store::sql::PRUNE_ACTIVITY)
                        .bind(kind.as_str())
                        .bind(before)
                        .execute(&self.pool)
                        .await?;
                    pruned += done.rows_affected();
                }
                Ok(pruned)
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
