//! One store suite, run unchanged against a SQLite file and a fresh PostgreSQL database.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hookwise::model::{
    AttemptOutcome, DeliveryAttemptId, EventId, EventOutcome, EventStatus, ExecutionId,
    ExecutionStatus, Millis, Verdict,
};
use hookwise::store::{
    Announcement, ClaimExclusions, Cursor, DeadLetterFilter, DeliveryAttemptFilter, EventFilter,
    EventPlan, ExecutionFilter, GroupCommitSettings, LimitScope, NewDeliveryAttempt, NewEvent,
    NewExecution, NewExecutionAttempt, NextStep, PayloadSearch, QueueDepth, ScanStop, SearchText,
    SharedLimit, Store, StoreError,
};
use serde_json::json;

use crate::support::{Backend, TempPostgres, on_every_backend};

/// Where a suite run keeps its data, and how to open a second, independent handle on it.
enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(TempPostgres),
}

impl Place {
    /// Runs `scenario` in a fresh place on `backend`, then drops the place's database.
    async fn run(backend: Backend, scenario: impl AsyncFnOnce(&Place)) {
        let place = match backend {
            Backend::Sqlite => Place::Sqlite(tempfile::tempdir().expect("temp dir")),
            Backend::Postgres => Place::Postgres(
                TempPostgres::create()
                    .await
                    .expect("PostgreSQL on 127.0.0.1:5432"),
            ),
            Backend::MySql => panic!("the store does not run on MySQL"),
        };
        scenario(&place).await;
        place.finish().await;
    }

    async fn open(&self) -> Store {
        let (url, base) = match self {
            Place::Sqlite(dir) => ("sqlite://store.db".to_string(), dir.path().to_path_buf()),
            Place::Postgres(pg) => (pg.url.clone(), std::env::temp_dir()),
        };
        Store::open(&url, &base, GroupCommitSettings::default())
            .await
            .expect("open store")
    }

    /// `text` as this store gives it back: PostgreSQL holds U+0000 as U+FFFD.
    fn stored(&self, text: &str) -> String {
        match self {
            Place::Sqlite(_) => text.to_string(),
            Place::Postgres(_) => text.replace('\0', "\u{FFFD}"),
        }
    }

    /// [`Place::stored`] for every string and key of a JSON value.
    fn stored_json(&self, value: &serde_json::Value) -> serde_json::Value {
        match self {
            Place::Sqlite(_) => value.clone(),
            // serde_json writes U+0000 as this escape (and the test data holds no `\\u0000`).
            Place::Postgres(_) => {
                serde_json::from_str(&value.to_string().replace("\\u0000", "\u{FFFD}"))
                    .expect("JSON")
            }
        }
    }

    /// Replaces the per-minute activity counts with ones counted from the stored rows, by the
    /// migration that brought them in.
    async fn count_activity_from_rows(&self) {
        let migration = match self {
            Place::Sqlite(_) => include_str!("../../engine/migrations/sqlite/0009_activity.sql"),
            Place::Postgres(_) => {
                include_str!("../../engine/migrations/postgres/0009_activity.sql")
            }
        };
        let count = &migration[migration.find("INSERT INTO activity").expect("backfill")..];
        let statements = format!("DELETE FROM activity; {count}");
        match self {
            Place::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                sqlx::raw_sql(&statements).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Place::Postgres(pg) => {
                let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
                sqlx::raw_sql(&statements).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// How many rows of its own `execution`'s attempts have (some live in its row instead).
    async fn attempt_rows(&self, execution: ExecutionId) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM execution_attempts WHERE execution_id = $1",
            &[execution.0],
        )
        .await
    }

    /// The count a `SELECT COUNT(*)` `query` reads from the store directly, with `ids` bound
    /// to its parameters in order.
    async fn count(&self, query: &str, ids: &[uuid::Uuid]) -> i64 {
        match self {
            Place::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                let mut q = sqlx::query_scalar(query);
                for id in ids {
                    q = q.bind(*id);
                }
                let n = q.fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
            Place::Postgres(pg) => {
                let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
                let mut q = sqlx::query_scalar(query);
                for id in ids {
                    q = q.bind(*id);
                }
                let n = q.fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
        }
    }

    async fn finish(self) {
        if let Place::Postgres(pg) = self {
            pg.drop_db().await.expect("drop test database");
        }
    }
}

pub fn event(source: &str, delivery: &str) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        source: source.into(),
        delivery_id: delivery.into(),
        event_type: "push".into(),
        received_at: Millis::now(),
        headers: json!({"x-github-event": "push"}),
        payload: json!({"ref": "refs/heads/main", "n": delivery}).to_string(),
        status: EventStatus::Pending,
    }
}

pub fn attempt(source: &str, verdict: Verdict, status: u16) -> NewDeliveryAttempt {
    NewDeliveryAttempt {
        id: DeliveryAttemptId::new(),
        source: source.into(),
        received_at: Millis::now(),
        remote_addr: Some("127.0.0.1:5000".into()),
        method: "POST".into(),
        path: format!("/hooks/{source}"),
        headers: json!({"x-hub-signature-256": "[redacted]"}),
        body: None,
        body_size: 42,
        verdict,
        status,
        reason: None,
    }
}

fn run_attempt(n: i32, outcome: AttemptOutcome, error: Option<&str>) -> NewExecutionAttempt {
    NewExecutionAttempt {
        attempt: n,
        started_at: Millis::now(),
        finished_at: Millis::now(),
        outcome,
        error: error.map(str::to_string),
        output: Some(json!({"ok": outcome == AttemptOutcome::Succeeded})),
        logs: json!([{"level": "info", "message": "hello"}]),
        http_calls: json!([]),
        db_statements: json!([]),
        fuel_used: Some(1234),
        memory_peak: Some(65536),
    }
}

fn execution(event: EventId, rule: &str, index: i32) -> NewExecution {
    NewExecution {
        id: ExecutionId::new(),
        rule_id: rule.into(),
        action_index: index,
        generation: 0,
        plugin: "notify".into(),
        idempotency_key: NewExecution::key_for(event, rule, index, 0),
        order_key: None,
        lease: None,
    }
}

fn plan_of(event: EventId, trace: &serde_json::Value, executions: &[NewExecution]) -> EventPlan {
    EventPlan {
        event,
        match_trace: serde_json::value::to_raw_value(trace).expect("JSON"),
        executions: executions.to_vec(),
    }
}

on_every_backend!(
    suite [sqlite, postgres] in Place:
    duplicate_delivery_is_recorded_not_stored_twice,
    concurrent_inserts_land_exactly_once,
    callers_are_answered_only_after_commit,
    rejected_requests_are_recorded,
    planning_is_idempotent,
    events_can_be_stored_planned,
    claim_finish_retry_and_dead_letter,
    a_finish_stores_its_announcement_or_nothing,
    expired_leases_are_reclaimed,
    shared_limits_count_what_every_owner_leased,
    close_flushes_pending_writes,
    order_keys_and_busy_lists_shape_claims,
    replay_plans_a_new_generation_and_retires_dead_letters,
    listings_filter_and_page,
    retention_prunes_only_old_rows_while_ingest_continues,
    payloads_read_back_exactly_whatever_their_form,
    accepted_attempts_are_listed_wherever_they_are_kept,
    first_attempts_read_back_wherever_they_are_kept,
    outside_text_with_nul_is_stored_without_failing_a_batch,
    listed_events_carry_their_outcome,
    events_list_by_type_and_window,
    payload_search_reads_a_bounded_number_of_candidates,
    activity_counts_what_each_write_did,
);

async fn duplicate_delivery_is_recorded_not_stored_twice(place: &Place) {
    let store = place.open().await;
    let first = store
        .ingest(
            event("github", "d-1"),
            attempt("github", Verdict::Accepted, 202),
        )
        .await
        .unwrap();
    assert!(!first.duplicate);
    let second = store
        .ingest(
            event("github", "d-1"),
            attempt("github", Verdict::Accepted, 202),
        )
        .await
        .unwrap();
    assert!(
        second.duplicate,
        "the same (source, delivery id) is a duplicate"
    );
    assert_eq!(
        second.event_id, first.event_id,
        "a duplicate answers with the first event's id"
    );
    // Another source may reuse the delivery id.
    let other = store
        .ingest(
            event("stripe", "d-1"),
            attempt("stripe", Verdict::Accepted, 202),
        )
        .await
        .unwrap();
    assert!(!other.duplicate);
    assert_eq!(store.count_events().await.unwrap(), 2);

    let attempts = store
        .delivery_attempts_for_event(first.event_id)
        .await
        .unwrap();
    let verdicts: Vec<_> = attempts.iter().map(|a| a.attempt.verdict).collect();
    assert_eq!(verdicts, [Verdict::Accepted, Verdict::Duplicate]);
    let stored = store
        .get_event(first.event_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.event.delivery_id, "d-1");
    assert_eq!(stored.event.status, EventStatus::Pending);
    store.close().await;
}

async fn concurrent_inserts_land_exactly_once(place: &Place) {
    const EVENTS: usize = 1_000;
    const TASKS: usize = 64;
    let store = place.open().await;
    // Every delivery id is sent twice, by two different tasks.
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in (t..EVENTS * 2).step_by(TASKS) {
                let delivery = format!("d-{}", i % EVENTS);
                let answer = store
                    .ingest(
                        event("github", &delivery),
                        attempt("github", Verdict::Accepted, 202),
                    )
                    .await
                    .expect("ingest");
                answers.push((delivery, answer));
            }
            answers
        }));
    }
    let mut fresh = HashSet::new();
    let mut ids = std::collections::HashMap::new();
    let mut duplicates = 0;
    for h in handles {
        for (delivery, answer) in h.await.unwrap() {
            if answer.duplicate {
                duplicates += 1;
            } else {
                assert!(fresh.insert(delivery.clone()), "{delivery} stored twice");
            }
            let id = *ids.entry(delivery).or_insert(answer.event_id);
            assert_eq!(
                id, answer.event_id,
                "both sends of one delivery share one event id"
            );
        }
    }
    assert_eq!(fresh.len(), EVENTS);
    assert_eq!(duplicates, EVENTS);
    assert_eq!(store.count_events().await.unwrap(), EVENTS as i64);
    let stats = store.batch_stats();
    assert_eq!(stats.writes, (EVENTS * 2) as u64);
    assert!(
        stats.largest > 1,
        "concurrent writes share transactions: {stats:?}"
    );
    store.close().await;
}

async fn callers_are_answered_only_after_commit(place: &Place) {
    let store = place.open().await;
    // A second, independent handle sees only committed data.
    let observer = place.open().await;
    let mut handles = Vec::new();
    for t in 0..32 {
        let store = store.clone();
        let observer = observer.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..20 {
                let delivery = format!("c-{t}-{i}");
                let answer = store
                    .ingest(
                        event("github", &delivery),
                        attempt("github", Verdict::Accepted, 202),
                    )
                    .await
                    .unwrap();
                let seen = observer.find_event("github", &delivery).await.unwrap();
                assert_eq!(
                    seen.map(|e| e.event.id),
                    Some(answer.event_id),
                    "answered before commit"
                );
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    observer.close().await;
    store.close().await;
}

async fn rejected_requests_are_recorded(place: &Place) {
    let store = place.open().await;
    let mut bad = attempt("github", Verdict::Rejected, 401);
    bad.reason = Some("signature does not match".into());
    store.record_attempt(bad.clone()).await.unwrap();
    let listed = store
        .list_delivery_attempts(Some("github"), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attempt, bad);
    assert_eq!(listed[0].event_id, None);
    assert_eq!(store.count_events().await.unwrap(), 0);

    let mut quarantined = event("github", "q-1");
    quarantined.status = EventStatus::Quarantined;
    let mut q_attempt = attempt("github", Verdict::Quarantined, 422);
    q_attempt.body = Some(b"{\"not\": \"valid\"}".to_vec());
    let out = store.ingest(quarantined, q_attempt).await.unwrap();
    let stored = store.get_event(out.event_id).await.unwrap().unwrap();
    assert_eq!(stored.event.status, EventStatus::Quarantined);
    let listed = store
        .list_events(&EventFilter {
            status: Some(EventStatus::Quarantined),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let attempts = store
        .delivery_attempts_for_event(out.event_id)
        .await
        .unwrap();
    assert_eq!(attempts[0].attempt.verdict, Verdict::Quarantined);
    assert_eq!(
        attempts[0].attempt.body.as_deref(),
        Some(&b"{\"not\": \"valid\"}"[..])
    );

    // Queued attempts are not waited for, but are written in order: once a later write is
    // answered, they are stored; and closing the store writes the rest.
    let queued: Vec<_> = (0..50)
        .map(|i| attempt("queued", Verdict::Rejected, 400 + i))
        .collect();
    for a in &queued[..25] {
        store.queue_attempt(a.clone()).await.unwrap();
    }
    store
        .record_attempt(attempt("queued-marker", Verdict::Rejected, 401))
        .await
        .unwrap();
    let listed = store
        .list_delivery_attempts(Some("queued"), 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), 25);
    for a in &queued[25..] {
        store.queue_attempt(a.clone()).await.unwrap();
    }
    store.close().await;
    let store = place.open().await;
    let mut listed: Vec<_> = store
        .list_delivery_attempts(Some("queued"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.attempt)
        .collect();
    listed.sort_by_key(|a| a.status);
    assert_eq!(listed, queued);
    store.close().await;
}

async fn events_can_be_stored_planned(place: &Place) {
    let store = Arc::new(place.open().await);
    let trace = json!({"matched": [{"rule": "r1"}]});
    // The same delivery twice at once (one group-commit batch, or two): one event, planned
    // once; the duplicate's plan is dropped.
    let mut answers = Vec::new();
    for _ in 0..2 {
        let store = store.clone();
        let trace = trace.clone();
        answers.push(tokio::spawn(async move {
            let e = event("github", "planned-1");
            let plan = plan_of(
                e.id,
                &trace,
                &[execution(e.id, "r1", 0), execution(e.id, "r2", 0)],
            );
            store
                .ingest_planned(e, attempt("github", Verdict::Accepted, 202), Some(plan))
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for a in answers {
        outcomes.push(a.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| o.duplicate).count(), 1);
    let ev = outcomes[0].event_id;
    assert_eq!(outcomes[1].event_id, ev);
    let stored = store.get_event(ev).await.unwrap().unwrap();
    assert_eq!(stored.event.status, EventStatus::Planned);
    assert_eq!(stored.match_trace, Some(trace));
    assert!(stored.planned_at.is_some());
    assert!(store.pending_events(10).await.unwrap().is_empty());
    let xs = store.executions_for_event(ev).await.unwrap();
    assert_eq!(xs.len(), 2);
    assert!(xs.iter().all(|x| x.status == ExecutionStatus::Pending));
    assert!(xs.iter().all(|x| x.event_seq == stored.seq));
    // Claimable like any planned execution.
    let claimed = store
        .claim(
            "w",
            10,
            Duration::from_secs(30),
            Millis::now(),
            &ClaimExclusions::default(),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    store.close().await;
}

async fn planning_is_idempotent(place: &Place) {
    let store = place.open().await;
    let ev = store
        .ingest(
            event("github", "p-1"),
            attempt("github", Verdict::Accepted, 202),
        )
        .await
        .unwrap()
        .event_id;
    assert_eq!(store.pending_events(10).await.unwrap().len(), 1);
    let trace = json!({"rules": [{"rule": "r1", "matched": true}]});
    let plan = [
        execution(ev, "r1", 0),
        execution(ev, "r1", 1),
        execution(ev, "r2", 0),
    ];
    let created = store.plan(&[plan_of(ev, &trace, &plan)]).await.unwrap();
    assert_eq!(created.len(), 3);
    // Planning again (say after a crash) creates nothing new, even with fresh execution ids.
    let again = [
        execution(ev, "r1", 0),
        execution(ev, "r1", 1),
        execution(ev, "r2", 0),
    ];
    assert!(
        store
            .plan(&[plan_of(ev, &trace, &again)])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.executions_for_event(ev).await.unwrap().len(), 3);
    let stored = store.get_event(ev).await.unwrap().unwrap();
    assert_eq!(stored.event.status, EventStatus::Planned);
    assert_eq!(stored.match_trace, Some(trace));
    assert!(store.pending_events(10).await.unwrap().is_empty());
    // A replay is a new generation with its own keys.
    let mut replay = execution(ev, "r1", 0);
    replay.generation = 1;
    replay.idempotency_key = NewExecution::key_for(ev, "r1", 0, 1);
    assert_eq!(
        store
            .plan(&[plan_of(ev, &json!({}), &[replay])])
            .await
            .unwrap()
            .len(),
        1
    );
    store.close().await;
}

async fn claim_finish_retry_and_dead_letter(place: &Place) {
    let store = place.open().await;
    let ev = store
        .ingest(
            event("github", "x-1"),
            attempt("github", Verdict::Accepted, 202),
        )
        .await
        .unwrap()
        .event_id;
    store
        .plan(&[plan_of(
            ev,
            &json!({}),
            &[execution(ev, "ok", 0), execution(ev, "flaky", 0)],
        )])
        .await
        .unwrap();
    let lease = Duration::from_secs(30);

    let claimed = store
        .claim(
            "worker-a",
            10,
            lease,
            Millis::now(),
            &ClaimExclusions::default(),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        claimed
            .iter()
            .all(|x| x.status == ExecutionStatus::Running && x.attempts == 1)
    );
    assert!(
        store
            .claim(
                "worker-b",
                10,
                lease,
                Millis::now(),
                &ClaimExclusions::default()
            )
            .await
            .unwrap()
            .is_empty(),
        "leased work is not claimed twice"
    );

    let ok = claimed.iter().find(|x| x.rule_id == "ok").unwrap();
    let flaky = claimed.iter().find(|x| x.rule_id == "flaky").unwrap();
    // Someone else's lease cannot be finished.
    let err = store
        .finish(
            ok.id,
            "worker-b",
            &run_attempt(1, AttemptOutcome::Succeeded, None),
            NextStep::Succeeded,
        )
        .await;
    assert!(matches!(err, Err(StoreError::LeaseLost(_))), "{err:?}");
    store
        .finish(
            ok.id,
            "worker-a",
            &run_attempt(1, AttemptOutcome::Succeeded, None),
            NextStep::Succeeded,
        )
        .await
        .unwrap();

    // A retryable failure: back to pending, due later.
    let later = Millis(Millis::now().0 + 60_000);
    store
        .finish(
            flaky.id,
            "worker-a",
            &run_attempt(1, AttemptOutcome::Retryable, Some("503")),
            NextStep::RetryAt(later),
        )
        .await
        .unwrap();
    assert!(
        store
            .claim(
                "worker-a",
                10,
                lease,
                Millis::now(),
                &ClaimExclusions::default()
            )
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let again = store
        .claim(
            "worker-a",
            10,
            lease,
            Millis(later.0 + 1),
            &ClaimExclusions::default(),
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    store
        .finish(
            flaky.id,
            "worker-a",
            &run_attempt(2, AttemptOutcome::Fatal, Some("400 bad request")),
            NextStep::Dead("fatal: 400 bad request".into()),
        )
        .await
        .unwrap();

    let flaky_now = store.get_execution(flaky.id).await.unwrap().unwrap();
    assert_eq!(flaky_now.status, ExecutionStatus::Dead);
    assert_eq!(flaky_now.last_error.as_deref(), Some("400 bad request"));
    let attempts = store.attempts_for_execution(flaky.id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].attempt.outcome, AttemptOutcome::Retryable);
    assert_eq!(
        attempts[1].attempt.logs,
        json!([{"level": "info", "message": "hello"}])
    );
    assert_eq!(attempts[1].attempt.fuel_used, Some(1234));

    let dead = store
        .list_dead_letters(&DeadLetterFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].execution_id,
            dead[0].source.as_str(),
            dead[0].rule_id.as_str()
        ),
        (flaky.id, "github", "flaky")
    );
    let none = store
        .list_dead_letters(&DeadLetterFilter {
            source: Some("stripe".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let counts = store.execution_counts().await.unwrap();
    assert_eq!(
        (
            counts.succeeded,
            counts.dead,
            counts.pending,
            counts.running
        ),
        (1, 1, 0, 0)
    );
    store.close().await;
}

/// Limits shared by the nodes: on PostgreSQL a claim leases no more of a limited plugin or
/// action than its limit leaves after what every owner holds; on SQLite (one node) the
/// dispatcher's own counts keep the limits and the claim takes what is due.
async fn shared_limits_count_what_every_owner_leased(place: &Place) {
    let store = place.open().await;
    let lease = Duration::from_secs(30);
    let ev = ingest_one(&store, "shared-1").await;
    // Five executions of plugin "notify" (rule "a"), three of rule "b"'s action 0.
    let mut xs: Vec<NewExecution> = (0..5).map(|i| execution(ev, "a", i)).collect();
    xs.extend((0..3).map(|_| execution(ev, "b", 0)));
    for (i, x) in xs.iter_mut().enumerate().skip(5) {
        x.plugin = "call-api".into();
        x.generation = i as i32;
        x.idempotency_key = NewExecution::key_for(ev, "b", 0, x.generation);
    }
    store.plan(&[plan_of(ev, &json!({}), &xs)]).await.unwrap();
    let limits = ClaimExclusions {
        shared: vec![
            SharedLimit {
                scope: LimitScope::Plugin("notify".into()),
                limit: 2,
            },
            SharedLimit {
                scope: LimitScope::Action("b".into(), 0),
                limit: 1,
            },
        ],
        ..Default::default()
    };
    let now = Millis::now();
    let claim = |owner: &'static str, limits: ClaimExclusions| {
        let store = store.clone();
        async move { store.claim(owner, 100, lease, now, &limits).await.unwrap() }
    };
    let count = |claimed: &[hookwise::store::Execution], plugin: &str| {
        claimed.iter().filter(|x| x.plugin == plugin).count()
    };
    let first = claim("node-1", limits.clone()).await;
    if matches!(place, Place::Sqlite(_)) {
        assert_eq!(first.len(), 8, "one node: the limits are the dispatcher's");
        store.close().await;
        return;
    }
    assert_eq!((count(&first, "notify"), count(&first, "call-api")), (2, 1));
    // Another node finds every limit used up by the first.
    assert!(claim("node-2", limits.clone()).await.is_empty());
    // One of the first node's notify calls finishes: room for exactly one more, anywhere.
    let done = first.iter().find(|x| x.plugin == "notify").unwrap();
    store
        .finish(
            done.id,
            "node-1",
            &run_attempt(1, AttemptOutcome::Succeeded, None),
            NextStep::Succeeded,
        )
        .await
        .unwrap();
    let second = claim("node-2", limits.clone()).await;
    assert_eq!(
        (count(&second, "notify"), count(&second, "call-api")),
        (1, 0)
    );
    // A lease that ran out no longer counts: its work is due again, within the limit.
    let later = Millis(now.0 + lease.as_millis() as i64 + 1);
    let after = store
        .claim("node-3", 100, lease, later, &limits)
        .await
        .unwrap();
    assert_eq!((count(&after, "notify"), count(&after, "call-api")), (2, 1));
    // Without limits, the rest is taken at once.
    let rest = store
        .claim("node-3", 100, lease, later, &ClaimExclusions::default())
        .await
        .unwrap();
    assert_eq!(rest.len(), 8 - 1 - 3, "{rest:#?}");
    store.close().await;
}

/// An event announced by a finish (hookwise's own, such as a dead letter's) is written in the
/// finish's transaction: not at all when the lease is lost, once when it is held, and recorded
/// as a duplicate delivery when announced again.
async fn a_finish_stores_its_announcement_or_nothing(place: &Place) {
    let store = place.open().await;
    let ev = ingest_one(&store, "announcing").await;
    store
        .plan(&[plan_of(
            ev,
            &json!({}),
            &[execution(ev, "alert", 0), execution(ev, "alert", 1)],
        )])
        .await
        .unwrap();
    let claimed = store
        .claim(
            "worker-a",
            10,
            Duration::from_secs(30),
            Millis::now(),
            &ClaimExclusions::default(),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let announcement = || Announcement {
        event: event("hookwise", "execution.dead_lettered:one"),
        attempt: attempt("hookwise", Verdict::Accepted, 200),
    };
    let dead = || NextStep::Dead("fatal: no".into());
    let failed = run_attempt(1, AttemptOutcome::Fatal, Some("no"));

    let lost = store
        .finish_announcing(
            claimed[0].id,
            "worker-b",
            &failed,
            dead(),
            Some(announcement()),
        )
        .await;
    assert!(matches!(lost, Err(StoreError::LeaseLost(_))), "{lost:?}");
    assert_eq!(store.count_events().await.unwrap(), 1);
    assert!(store.pending_events(10).await.unwrap().is_empty());

    let first = announcement();
    store
        .finish_announcing(
            claimed[0].id,
            "worker-a",
            &failed,
            dead(),
            Some(first.clone()),
        )
        .await
        .unwrap();
    let pending = store.pending_events(10).await.unwrap();
    assert_eq!(pending.len(), 1, "the announced event waits to be matched");
    assert_eq!(pending[0].event.id, first.event.id);
    assert_eq!(pending[0].event.source, "hookwise");
    assert_eq!(pending[0].event.payload, place.stored(&first.event.payload));
    assert_eq!(
        store
            .list_dead_letters(&DeadLetterFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        1,
        "the dead letter was recorded with it"
    );

    // The same condition announced again (another node, a crash before the reply): the
    // execution moves on, the event is not stored twice, the delivery is a duplicate.
    store
        .finish_announcing(
            claimed[1].id,
            "worker-a",
            &failed,
            dead(),
            Some(announcement()),
        )
        .await
        .unwrap();
    assert_eq!(store.count_events().await.unwrap(), 2);
    let mut verdicts: Vec<Verdict> = store
        .list_delivery_attempts(Some("hookwise"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|listed| {
            assert_eq!(listed.event_id, Some(first.event.id));
            listed.attempt.verdict
        })
        .collect();
    verdicts.sort_by_key(|v| v.as_str());
    assert_eq!(verdicts, [Verdict::Accepted, Verdict::Duplicate]);
    store.close().await;
}

async fn expired_leases_are_reclaimed(place: &Place) {
    let store = place.open().await;
    let ev = store
        .ingest(
            event("github", "l-1"),
            attempt("github", Verdict::Accepted, 202),
        )
        .await
        .unwrap()
        .event_id;
    store
        .plan(&[plan_of(ev, &json!({}), &[execution(ev, "r", 0)])])
        .await
        .unwrap();
    let now = Millis::now();
    let first = store
        .claim(
            "crashed-worker",
            1,
            Duration::from_secs(5),
            now,
            &ClaimExclusions::default(),
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // Still leased a moment later; renewable by its owner only.
    assert!(
        store
            .claim(
                "other",
                1,
                Duration::from_secs(5),
                Millis(now.0 + 1_000),
                &ClaimExclusions::default()
            )
            .await
            .unwrap()
            .is_empty()
    );
    let attempt = first[0].attempts;
    store
        .renew_lease(
            first[0].id,
            "crashed-worker",
            attempt,
            Millis(now.0 + 10_000),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .renew_lease(first[0].id, "other", attempt, Millis(now.0 + 10_000))
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    // The holder's lease is for that attempt: an earlier one (a copy of the execution that
    // waited out its lease before the same owner claimed it again) holds nothing.
    assert!(matches!(
        store
            .renew_lease(
                first[0].id,
                "crashed-worker",
                attempt - 1,
                Millis(now.0 + 10_000)
            )
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    // After the lease runs out, another worker takes it over and the crashed one lost it.
    let taken = store
        .claim(
            "other",
            1,
            Duration::from_secs(5),
            Millis(now.0 + 10_001),
            &ClaimExclusions::default(),
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].attempts, 2);
    assert_eq!(taken[0].lease_owner.as_deref(), Some("other"));
    let late = store
        .finish(
            first[0].id,
            "crashed-worker",
            &run_attempt(1, AttemptOutcome::Succeeded, None),
            NextStep::Succeeded,
        )
        .await;
    assert!(matches!(late, Err(StoreError::LeaseLost(_))));
    // Released work goes back to pending without counting an attempt.
    store.release(taken[0].id, "other").await.unwrap();
    let x = store.get_execution(taken[0].id).await.unwrap().unwrap();
    assert_eq!(
        (x.status, x.attempts, x.lease_owner),
        (ExecutionStatus::Pending, 1, None)
    );
    store.close().await;
}

async fn close_flushes_pending_writes(place: &Place) {
    let store = place.open().await;
    let store = Arc::new(store);
    let mut handles = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .ingest(
                    event("github", &format!("f-{i}")),
                    attempt("github", Verdict::Accepted, 202),
                )
                .await
        }));
    }
    tokio::task::yield_now().await;
    store.close().await;
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Closed) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    // Everything that was answered Ok is on disk; nothing answered Ok was lost.
    let reopened = place.open().await;
    assert_eq!(reopened.count_events().await.unwrap(), ok);
    reopened.close().await;
}

async fn ingest_one(store: &Store, delivery: &str) -> EventId {
    store
        .ingest(
            event("github", delivery),
            attempt("github", Verdict::Accepted, 202),
        )
        .await
        .unwrap()
        .event_id
}

/// Up to ten due executions, leased for 30 s to owner "w" at `at`, with no limits in the way.
async fn claim_for_w(store: &Store, at: Millis) -> Vec<hookwise::store::Execution> {
    let lease = Duration::from_secs(30);
    store
        .claim("w", 10, lease, at, &ClaimExclusions::default())
        .await
        .unwrap()
}

async fn order_keys_and_busy_lists_shape_claims(place: &Place) {
    let store = place.open().await;
    let lease = Duration::from_secs(30);
    let none = ClaimExclusions::default();
    assert_eq!(store.next_due().await.unwrap(), None);
    // Three events for one repository (same order key), one for another, one without a key.
    let mut plans = Vec::new();
    let mut ids = Vec::new();
    for (i, key) in [
        Some("repo-1"),
        Some("repo-1"),
        Some("repo-2"),
        None,
        Some("repo-1"),
    ]
    .into_iter()
    .enumerate()
    {
        let ev = ingest_one(&store, &format!("o-{i}")).await;
        let mut x = execution(ev, "ordered", 0);
        x.order_key = key.map(str::to_string);
        ids.push(x.id);
        plans.push(plan_of(ev, &json!({}), &[x]));
    }
    store.plan(&plans).await.unwrap();
    assert!(store.next_due().await.unwrap().is_some());

    let first = store
        .claim("w", 10, lease, Millis::now(), &none)
        .await
        .unwrap();
    let got: HashSet<ExecutionId> = first.iter().map(|x| x.id).collect();
    // Only the oldest of repo-1 runs; repo-2 and the unkeyed one run alongside it.
    assert_eq!(got, HashSet::from([ids[0], ids[2], ids[3]]));
    // Nothing more while the first of repo-1 is unfinished, even after a failed attempt.
    assert!(
        store
            .claim("w", 10, lease, Millis::now(), &none)
            .await
            .unwrap()
            .is_empty()
    );
    let soon = Millis(Millis::now().0 + 50);
    store
        .finish(
            ids[0],
            "w",
            &run_attempt(1, AttemptOutcome::Retryable, Some("503")),
            NextStep::RetryAt(soon),
        )
        .await
        .unwrap();
    let later = Millis(soon.0 + 1);
    let retried = store.claim("w", 10, lease, later, &none).await.unwrap();
    assert_eq!(
        retried.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    store
        .finish(
            ids[0],
            "w",
            &run_attempt(2, AttemptOutcome::Succeeded, None),
            NextStep::Succeeded,
        )
        .await
        .unwrap();
    let second = store.claim("w", 10, lease, later, &none).await.unwrap();
    assert_eq!(
        second.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    // A dead execution does not block the ones after it.
    store
        .finish(
            ids[1],
            "w",
            &run_attempt(1, AttemptOutcome::Fatal, Some("400")),
            NextStep::Dead("fatal".into()),
        )
        .await
        .unwrap();

    // Busy plugins and actions are skipped.
    let busy_plugin = ClaimExclusions {
        plugins: vec!["notify".into()],
        ..Default::default()
    };
    assert!(
        store
            .claim("w", 10, lease, later, &busy_plugin)
            .await
            .unwrap()
            .is_empty()
    );
    let busy_action = ClaimExclusions {
        actions: vec![("ordered".into(), 0)],
        ..Default::default()
    };
    assert!(
        store
            .claim("w", 10, lease, later, &busy_action)
            .await
            .unwrap()
            .is_empty()
    );
    let other_action = ClaimExclusions {
        plugins: vec!["call-api".into()],
        actions: vec![("ordered".into(), 1), ("other".into(), 0)],
        ..Default::default()
    };
    let last = store
        .claim("w", 10, lease, later, &other_action)
        .await
        .unwrap();
    assert_eq!(last.iter().map(|x| x.id).collect::<Vec<_>>(), vec![ids[4]]);
    store.close().await;
}

async fn replay_plans_a_new_generation_and_retires_dead_letters(place: &Place) {
    let store = place.open().await;
    let lease = Duration::from_secs(30);
    let none = ClaimExclusions::default();
    let ev = ingest_one(&store, "r-1").await;
    let first = execution(ev, "r", 0);
    store
        .plan(&[plan_of(ev, &json!({}), std::slice::from_ref(&first))])
        .await
        .unwrap();
    store
        .claim("w", 1, lease, Millis::now(), &none)
        .await
        .unwrap();
    store
        .finish(
            first.id,
            "w",
            &run_attempt(1, AttemptOutcome::Fatal, Some("boom")),
            NextStep::Dead("fatal: boom".into()),
        )
        .await
        .unwrap();
    let dead_filter = DeadLetterFilter {
        rule_id: Some("r".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        store.list_dead_letters(&dead_filter).await.unwrap().len(),
        1
    );

    assert_eq!(store.next_generation(ev).await.unwrap(), 1);
    let mut again = execution(ev, "r", 0);
    again.generation = 1;
    again.idempotency_key = NewExecution::key_for(ev, "r", 0, 1);
    let created = store
        .plan_replay(ev, &[again.clone()], &[first.id])
        .await
        .unwrap();
    assert_eq!(created, vec![again.id]);
    assert!(
        store
            .list_dead_letters(&dead_filter)
            .await
            .unwrap()
            .is_empty()
    );
    // The dead execution stays as history; the new generation is pending.
    let all = store.executions_for_event(ev).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|x| (x.generation, x.status))
            .collect::<Vec<_>>(),
        vec![(0, ExecutionStatus::Dead), (1, ExecutionStatus::Pending)]
    );
    assert_eq!(store.next_generation(ev).await.unwrap(), 2);
    let missing = store.plan_replay(EventId::new(), &[], &[]).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    // Purge removes only what the filter selects.
    let ev2 = ingest_one(&store, "r-2").await;
    let x2 = execution(ev2, "other", 0);
    store
        .plan(&[plan_of(ev2, &json!({}), std::slice::from_ref(&x2))])
        .await
        .unwrap();
    store
        .claim("w", 5, lease, Millis::now(), &none)
        .await
        .unwrap();
    store
        .finish(
            x2.id,
            "w",
            &run_attempt(1, AttemptOutcome::Fatal, None),
            NextStep::Dead("fatal".into()),
        )
        .await
        .unwrap();
    assert_eq!(store.purge_dead_letters(&dead_filter).await.unwrap(), 0);
    let all_dead = DeadLetterFilter {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list_dead_letters(&all_dead).await.unwrap().len(), 1);
    assert_eq!(store.purge_dead_letters(&all_dead).await.unwrap(), 1);
    assert!(store.list_dead_letters(&all_dead).await.unwrap().is_empty());
    store.close().await;
}

/// Pages through a listing with `next` (given the cursor of the previous page's last row)
/// until a short page; returns every row.
async fn all_pages<T, F, Fut>(limit: usize, key: impl Fn(&T) -> Cursor, next: F) -> Vec<T>
where
    F: Fn(Option<Cursor>) -> Fut,
    Fut: std::future::Future<Output = Vec<T>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = next(cursor).await;
        assert!(page.len() <= limit);
        let full = page.len() == limit;
        cursor = page.last().map(&key);
        out.extend(page);
        if !full {
            return out;
        }
    }
}

async fn listings_filter_and_page(place: &Place) {
    let store = place.open().await;
    let none = ClaimExclusions::default();
    let mut events = Vec::new();
    for i in 0..4 {
        events.push(ingest_one(&store, &format!("l-{i}")).await);
    }
    let stripe = store
        .ingest(
            event("stripe", "l-s"),
            attempt("stripe", Verdict::Accepted, 200),
        )
        .await
        .unwrap()
        .event_id;
    events.push(stripe);
    store
        .record_attempt(attempt("github", Verdict::Rejected, 401))
        .await
        .unwrap();
    assert_eq!(
        store.queue_depth().await.unwrap(),
        QueueDepth {
            pending_events: 5,
            pending_executions: 0,
            running_executions: 0
        }
    );

    // Delivery attempts: filters, and pages of 2 that add up to all 6, newest first.
    let by = |f: DeliveryAttemptFilter| {
        let store = store.clone();
        async move { store.list_delivery_attempts_filtered(&f).await.unwrap() }
    };
    let github = by(DeliveryAttemptFilter {
        source: Some("github".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(github.len(), 5);
    let rejected = by(DeliveryAttemptFilter {
        verdict: Some(Verdict::Rejected),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].event_id, None);
    let one = by(DeliveryAttemptFilter {
        event_id: Some(stripe),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].attempt.source, "stripe");
    let future = by(DeliveryAttemptFilter {
        since: Some(Millis(Millis::now().0 + 60_000)),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert!(future.is_empty());
    let everything = by(DeliveryAttemptFilter {
        limit: 100,
        ..Default::default()
    })
    .await;
    let paged = all_pages(
        2,
        |a: &hookwise::store::DeliveryAttempt| Cursor {
            at: a.attempt.received_at,
            id: a.attempt.id.0,
        },
        |before| {
            by(DeliveryAttemptFilter {
                before,
                limit: 2,
                ..Default::default()
            })
        },
    )
    .await;
    assert_eq!(paged, everything);
    assert_eq!(paged.len(), 6);
    assert!(
        paged
            .windows(2)
            .all(|w| (w[0].attempt.received_at, w[0].attempt.id)
                >= (w[1].attempt.received_at, w[1].attempt.id))
    );

    // Executions: two per event (same planning time, so the id breaks ties in paging).
    let mut plans = Vec::new();
    for ev in &events {
        let a = execution(*ev, "r0", 0);
        let mut b = execution(*ev, "r1", 0);
        b.plugin = "call-api".into();
        plans.push(plan_of(*ev, &json!({}), &[a, b]));
    }
    store.plan(&plans).await.unwrap();
    let xs = |f: ExecutionFilter| {
        let store = store.clone();
        async move { store.list_executions(&f).await.unwrap() }
    };
    let call_api = xs(ExecutionFilter {
        plugin: Some("call-api".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(call_api.len(), 5);
    assert!(call_api.iter().all(|x| x.rule_id == "r1"));
    let of_one = xs(ExecutionFilter {
        rule_id: Some("r0".into()),
        event_id: Some(events[2]),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(of_one.len(), 1);
    assert_eq!(of_one[0].event_id, events[2]);
    let all = xs(ExecutionFilter {
        status: Some(ExecutionStatus::Pending),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(all.len(), 10);
    let paged = all_pages(
        3,
        |x: &hookwise::store::Execution| Cursor {
            at: x.created_at,
            id: x.id.0,
        },
        |before| {
            xs(ExecutionFilter {
                before,
                limit: 3,
                ..Default::default()
            })
        },
    )
    .await;
    assert_eq!(paged, all);

    // Queue depth follows claims; dead letters page the same way.
    let claimed = store
        .claim("w", 2, Duration::from_secs(30), Millis::now(), &none)
        .await
        .unwrap();
    assert_eq!(
        store.queue_depth().await.unwrap(),
        QueueDepth {
            pending_events: 0,
            pending_executions: 8,
            running_executions: 2
        }
    );
    for x in &claimed {
        store
            .finish(
                x.id,
                "w",
                &run_attempt(1, AttemptOutcome::Fatal, Some("no")),
                NextStep::Dead("fatal: no".into()),
            )
            .await
            .unwrap();
    }
    let dead = |before| {
        let store = store.clone();
        async move {
            store
                .list_dead_letters(&DeadLetterFilter {
                    before,
                    limit: 1,
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };
    let pages = all_pages(
        1,
        |d: &hookwise::store::DeadLetter| Cursor {
            at: d.created_at,
            id: d.execution_id.0,
        },
        dead,
    )
    .await;
    assert_eq!(pages.len(), 2);
    assert_ne!(pages[0].execution_id, pages[1].execution_id);
    store.close().await;
}

async fn retention_prunes_only_old_rows_while_ingest_continues(place: &Place) {
    const DAY: i64 = 86_400_000;
    /// More than two pruning batches.
    const OLD: usize = 1_100;
    const NEW: usize = 300;
    let store = place.open().await;
    let none = ClaimExclusions::default();
    let old_at = Millis(Millis::now().0 - 40 * DAY);
    let aged = |delivery: String, at: Millis| {
        let mut e = event("github", &delivery);
        e.received_at = at;
        let mut a = attempt("github", Verdict::Accepted, 200);
        a.received_at = at;
        (e, a)
    };

    // Old history: OLD planned events (concurrently, so in group-committed batches), one
    // never matched, and an old rejected request.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..OLD {
        let store = store.clone();
        let (e, a) = aged(format!("old-{i}"), Millis(old_at.0 + i as i64));
        tasks.spawn(async move { store.ingest(e, a).await.unwrap().event_id });
    }
    let mut old = Vec::new();
    while let Some(id) = tasks.join_next().await {
        old.push(id.unwrap());
    }
    let (e, a) = aged("old-unmatched".into(), old_at);
    let unmatched = store.ingest(e, a).await.unwrap().event_id;
    let mut rejected = attempt("github", Verdict::Rejected, 401);
    rejected.received_at = old_at;
    store.record_attempt(rejected).await.unwrap();
    // The first three old events have an execution each: one succeeds, one dies, one is
    // still pending (so its event is kept).
    let mut plans = Vec::new();
    let mut xs = Vec::new();
    for (i, ev) in old.iter().enumerate() {
        let executions = if i < 3 {
            let x = execution(*ev, "r", 0);
            xs.push(x.clone());
            vec![x]
        } else {
            vec![]
        };
        plans.push(plan_of(*ev, &json!({}), &executions));
    }
    store.plan(&plans).await.unwrap();
    let mut claimed = Vec::new();
    while claimed.len() < 2 {
        claimed.extend(
            store
                .claim("w", 1, Duration::from_secs(30), Millis::now(), &none)
                .await
                .unwrap(),
        );
    }
    let (done, dead) = (&claimed[0], &claimed[1]);
    store
        .finish(
            done.id,
            "w",
            &run_attempt(1, AttemptOutcome::Succeeded, None),
            NextStep::Succeeded,
        )
        .await
        .unwrap();
    store
        .finish(
            dead.id,
            "w",
            &run_attempt(1, AttemptOutcome::Fatal, Some("no")),
            NextStep::Dead("fatal: no".into()),
        )
        .await
        .unwrap();
    let still_pending = xs
        .iter()
        .find(|x| x.id != done.id && x.id != dead.id)
        .unwrap()
        .clone();
    let kept_old = store
        .get_execution(still_pending.id)
        .await
        .unwrap()
        .unwrap()
        .event_id;
    // Young history: ten days old, inside the limit.
    let (e, a) = aged("young".into(), Millis(Millis::now().0 - 10 * DAY));
    let young = store.ingest(e, a).await.unwrap().event_id;

    // Prune while new events keep arriving.
    let ingest = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..NEW {
                ids.push(ingest_one(&store, &format!("new-{i}")).await);
            }
            ids
        })
    };
    let settings = hookwise::config::RetentionSettings {
        events: Some(Duration::from_secs(30 * 24 * 3600)),
        delivery_attempts: Some(Duration::from_secs(30 * 24 * 3600)),
        ..Default::default()
    };
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let pruned = hookwise::retention::prune(
        &store,
        &settings,
        Millis::now(),
        Duration::from_millis(5),
        &stop,
    )
    .await
    .unwrap();
    let new = ingest.await.unwrap();

    // Every old planned event went, except the one with a pending execution; with them their
    // executions, attempts and dead letters. Every old delivery attempt went.
    assert_eq!(pruned.events, (OLD - 1) as u64);
    assert_eq!(pruned.delivery_attempts, (OLD + 2) as u64);
    // The per-minute counts of that old history went too (kept a week and a day whatever the
    // settings); those of the new events stay.
    assert!(pruned.activity > 0, "{pruned:?}");
    for ev in &old {
        let kept = store.get_event(*ev).await.unwrap().is_some();
        assert_eq!(kept, *ev == kept_old, "event {ev}");
    }
    for x in [done, dead] {
        assert!(store.get_execution(x.id).await.unwrap().is_none());
        assert!(store.attempts_for_execution(x.id).await.unwrap().is_empty());
    }
    assert!(
        store
            .list_dead_letters(&DeadLetterFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.executions_for_event(kept_old).await.unwrap().len(),
        1,
        "the pending execution and its event stay"
    );
    assert!(store.get_event(unmatched).await.unwrap().is_some());
    assert!(store.get_event(young).await.unwrap().is_some());
    // Everything that arrived during pruning is there, with its delivery attempt.
    for ev in &new {
        assert!(
            store.get_event(*ev).await.unwrap().is_some(),
            "new event {ev}"
        );
        assert_eq!(
            store.delivery_attempts_for_event(*ev).await.unwrap().len(),
            1
        );
    }
    assert_eq!(store.count_events().await.unwrap(), (NEW + 3) as i64);
    let attempts = store
        .list_delivery_attempts_filtered(&DeliveryAttemptFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(attempts.len(), NEW + 1, "the new ones and the young one");

    // A second pass finds nothing more; `0s` (None) keeps everything.
    let again = hookwise::retention::prune(&store, &settings, Millis::now(), Duration::ZERO, &stop)
        .await
        .unwrap();
    assert_eq!(again, hookwise::retention::Pruned::default());
    let forever = hookwise::config::RetentionSettings {
        events: None,
        delivery_attempts: None,
        ..Default::default()
    };
    let far_future = Millis(Millis::now().0 + 1000 * DAY);
    let nothing = hookwise::retention::prune(&store, &forever, far_future, Duration::ZERO, &stop)
        .await
        .unwrap();
    assert_eq!((nothing.events, nothing.delivery_attempts), (0, 0));
    assert!(
        nothing.activity > 0,
        "activity counts age out even so: {nothing:?}"
    );
    store.close().await;
}

/// Payloads come back byte for byte, whether the row holds them as text or (SQLite) as an LZ4
/// block; rows written as text before compression still read; a damaged blob is an error.
async fn payloads_read_back_exactly_whatever_their_form(place: &Place) {
    let push = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/payloads/github/push.json"
    ))
    .expect("fixture");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: String = (0..512)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect();
    let payloads = [
        ("small", r#"{"a":1}"#.to_string()),
        ("push", push.clone()),
        ("noise", json!({ "n": noise }).to_string()),
        (
            "unicode",
            json!({ "text": "héllo wörld ✓ ".repeat(400) }).to_string(),
        ),
        (
            "large",
            json!({ "commits": vec![push.clone(); 150] }).to_string(),
        ),
    ];
    let store = place.open().await;
    let mut ids = Vec::new();
    for (name, payload) in &payloads {
        let mut e = event("github", name);
        e.payload = payload.clone();
        let out = store
            .ingest(e, attempt("github", Verdict::Accepted, 202))
            .await
            .unwrap();
        ids.push(out.event_id);
    }
    for ((name, payload), id) in payloads.iter().zip(&ids) {
        let stored = store.get_event(*id).await.unwrap().expect("stored");
        assert!(stored.event.payload == *payload, "{name} changed");
        let found = store.find_event("github", name).await.unwrap().unwrap();
        assert!(found.event.payload == *payload, "{name} changed");
    }
    let listed = store
        .list_events(&EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), payloads.len());
    for e in &listed {
        let (_, payload) = payloads
            .iter()
            .find(|(name, _)| *name == e.event.delivery_id)
            .unwrap();
        assert!(e.event.payload == *payload);
    }
    store.close().await;

    let Place::Sqlite(dir) = place else { return };
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let forms: Vec<(String, String)> =
        sqlx::query_as("SELECT delivery_id, typeof(payload) FROM events ORDER BY seq")
            .fetch_all(&db)
            .await
            .unwrap();
    let form = |name: &str| forms.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(form("small"), "text", "too short to compress");
    assert_eq!(form("noise"), "text", "nothing to gain");
    assert_eq!(form("push"), "blob");
    assert_eq!(form("unicode"), "blob");
    assert_eq!(form("large"), "blob");
    let (blob_len,): (i64,) =
        sqlx::query_as("SELECT length(payload) FROM events WHERE delivery_id = 'push'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        (blob_len as usize) < push.len() * 3 / 4,
        "{blob_len} bytes for {}",
        push.len()
    );
    // A row as written before compression: the text itself.
    sqlx::query("UPDATE events SET payload = $1 WHERE delivery_id = 'push'")
        .bind(&push)
        .execute(&db)
        .await
        .unwrap();
    // A damaged blob: the tag of an unknown format.
    sqlx::query("UPDATE events SET payload = X'09000100004142' WHERE delivery_id = 'unicode'")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;

    let store = place.open().await;
    let legacy = store.get_event(ids[1]).await.unwrap().expect("stored");
    assert!(legacy.event.payload == push);
    let damaged = store.get_event(ids[3]).await;
    let message = damaged
        .expect_err("a damaged payload is an error")
        .to_string();
    assert!(message.contains("unknown format 9"), "{message}");
    store.close().await;
}

/// An accepted request's attempt as the ingress records it: no headers, body or reason, at the
/// event's time. The store keeps such an attempt in its event's row; listings, filters, pages
/// and an event's trace show it as they show every other attempt.
/// A first attempt that succeeded with nothing but a small output is kept in its execution's
/// row; every other attempt in a row of its own. Either way it reads back as it was given.
async fn first_attempts_read_back_wherever_they_are_kept(place: &Place) {
    let store = place.open().await;
    let ev = ingest_one(&store, "first-1").await;
    let names = ["bare", "logged", "called", "large", "unfinished", "retried"];
    let planned: Vec<NewExecution> = names.iter().map(|n| execution(ev, n, 0)).collect();
    store
        .plan(&[plan_of(ev, &json!({}), &planned)])
        .await
        .unwrap();
    let claimed = claim_for_w(&store, Millis::now()).await;
    assert_eq!(claimed.len(), names.len());
    let id = |rule: &str| claimed.iter().find(|x| x.rule_id == rule).unwrap().id;
    // Nothing logged, called or run: the records as the dispatcher writes them.
    let plain = |n: i32| NewExecutionAttempt {
        logs: NewExecutionAttempt::no_logs(),
        http_calls: NewExecutionAttempt::no_http_calls(),
        db_statements: NewExecutionAttempt::no_db_statements(),
        output: Some(json!({"ok": true, "note": "\u{0}"})),
        ..run_attempt(n, AttemptOutcome::Succeeded, None)
    };
    let mut given = vec![("bare", plain(1), 0)];
    let mut logged = plain(1);
    logged.logs = json!({"lines": [{"level": "info", "message": "hi"}], "truncated": false});
    given.push(("logged", logged, 1));
    let mut called = plain(1);
    called.http_calls = json!([{"method": "POST", "url": "https://example.com/", "status": 200}]);
    given.push(("called", called, 1));
    let mut large = plain(1);
    large.output = Some(json!({"text": "x".repeat(300)}));
    given.push(("large", large, 1));
    let mut unfinished = plain(1);
    unfinished.output = None;
    for (rule, a, _) in &given {
        store
            .finish(id(rule), "w", a, NextStep::Succeeded)
            .await
            .unwrap();
    }
    // An attempt that succeeded but leaves the execution running on (a retry asked for) keeps
    // a row of its own, and so does a success after a failed first attempt.
    let later = Millis(Millis::now().0 + 1);
    store
        .finish(id("unfinished"), "w", &unfinished, NextStep::RetryAt(later))
        .await
        .unwrap();
    let failed = NewExecutionAttempt {
        error: Some("503".into()),
        outcome: AttemptOutcome::Retryable,
        output: None,
        ..plain(1)
    };
    store
        .finish(id("retried"), "w", &failed, NextStep::RetryAt(later))
        .await
        .unwrap();
    let again = claim_for_w(&store, Millis(later.0 + 1)).await;
    assert_eq!(
        again.len(),
        2,
        "the unfinished and the retried one are due again"
    );
    let second = plain(2);
    store
        .finish(id("retried"), "w", &second, NextStep::Succeeded)
        .await
        .unwrap();
    given.push(("unfinished", unfinished, 1));

    for (rule, a, rows) in &given {
        let read = store.attempts_for_execution(id(rule)).await.unwrap();
        assert_eq!(read.len(), 1, "{rule}: {read:?}");
        assert_eq!(read[0].execution_id, id(rule));
        let mut expected = a.clone();
        expected.output = expected.output.as_ref().map(|o| place.stored_json(o));
        assert_eq!(read[0].attempt, expected, "{rule} reads back as given");
        assert_eq!(place.attempt_rows(id(rule)).await, *rows, "{rule}");
    }
    let read = store.attempts_for_execution(id("retried")).await.unwrap();
    let outcomes: Vec<_> = read
        .iter()
        .map(|a| (a.attempt.attempt, a.attempt.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, AttemptOutcome::Retryable),
            (2, AttemptOutcome::Succeeded)
        ]
    );
    assert_eq!(place.attempt_rows(id("retried")).await, 2);
    let bare = store.get_execution(id("bare")).await.unwrap().unwrap();
    assert_eq!(bare.status, ExecutionStatus::Succeeded);
}

async fn accepted_attempts_are_listed_wherever_they_are_kept(place: &Place) {
    let store = place.open().await;
    let base = Millis::now().0;
    let plain = |delivery: &str, i: i64| {
        let mut e = event("github", delivery);
        e.received_at = Millis(base + i);
        let mut a = attempt("github", Verdict::Accepted, 200);
        a.received_at = e.received_at;
        a.headers = json!({});
        a.remote_addr = Some(format!("10.0.0.{i}:4000"));
        a.body_size = 1000 + i;
        (e, a)
    };
    let mut given = Vec::new();
    let mut events = Vec::new();
    for i in 0..3 {
        let (e, a) = plain(&format!("f-{i}"), i);
        given.push(a.clone());
        events.push(store.ingest(e, a).await.unwrap().event_id);
    }
    // One with headers kept, one duplicate of the first, one refused request.
    let (e, mut a) = plain("f-headers", 3);
    a.headers = json!({"x-github-event": "push"});
    given.push(a.clone());
    events.push(store.ingest(e, a).await.unwrap().event_id);
    let (e, a) = plain("f-0", 4);
    let dup = store.ingest(e, a).await.unwrap();
    assert!(dup.duplicate);
    let mut refused = attempt("github", Verdict::Rejected, 401);
    refused.received_at = Millis(base + 5);
    store.record_attempt(refused).await.unwrap();

    let list = |f: DeliveryAttemptFilter| {
        let store = store.clone();
        async move { store.list_delivery_attempts_filtered(&f).await.unwrap() }
    };
    let all = list(DeliveryAttemptFilter {
        limit: 100,
        ..Default::default()
    })
    .await;
    let times: Vec<i64> = all.iter().map(|a| a.attempt.received_at.0 - base).collect();
    assert_eq!(times, [5, 4, 3, 2, 1, 0], "newest first");
    for (a, g) in all[2..].iter().zip(given.iter().rev()) {
        assert_eq!(&a.attempt, g, "kept as given");
    }
    assert_eq!(all[2].event_id, Some(events[3]));
    assert_eq!(all[5].event_id, Some(events[0]));
    assert_eq!(all[1].attempt.verdict, Verdict::Duplicate);
    let accepted = list(DeliveryAttemptFilter {
        verdict: Some(Verdict::Accepted),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(accepted.len(), 4);
    let duplicates = list(DeliveryAttemptFilter {
        verdict: Some(Verdict::Duplicate),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(duplicates.len(), 1);
    let of_first = list(DeliveryAttemptFilter {
        event_id: Some(events[0]),
        limit: 100,
        ..Default::default()
    })
    .await;
    let verdicts: Vec<Verdict> = of_first.iter().map(|a| a.attempt.verdict).collect();
    assert_eq!(verdicts, [Verdict::Duplicate, Verdict::Accepted]);
    let window = list(DeliveryAttemptFilter {
        since: Some(Millis(base + 1)),
        until: Some(Millis(base + 4)),
        limit: 100,
        ..Default::default()
    })
    .await;
    let times: Vec<i64> = window
        .iter()
        .map(|a| a.attempt.received_at.0 - base)
        .collect();
    assert_eq!(times, [3, 2, 1]);
    let paged = all_pages(
        2,
        |a: &hookwise::store::DeliveryAttempt| Cursor {
            at: a.attempt.received_at,
            id: a.attempt.id.0,
        },
        |before| {
            list(DeliveryAttemptFilter {
                before,
                limit: 2,
                ..Default::default()
            })
        },
    )
    .await;
    assert_eq!(paged, all);
    let newest = store
        .list_delivery_attempts(Some("github"), 3)
        .await
        .unwrap();
    assert_eq!(newest, all[..3]);
    let trace = store.delivery_attempts_for_event(events[0]).await.unwrap();
    let verdicts: Vec<Verdict> = trace.iter().map(|a| a.attempt.verdict).collect();
    assert_eq!(verdicts, [Verdict::Accepted, Verdict::Duplicate]);
    assert_eq!(trace[0].attempt, given[0]);
    store.close().await;

    let rows_in_attempts_table = place
        .count("SELECT COUNT(*) FROM delivery_attempts", &[])
        .await;
    // The three plain accepted attempts are in their events' rows, on either backend.
    assert_eq!(rows_in_attempts_table, 3);
}

/// A JSON object from (key, value) pairs: keys here are built at run time.
fn object(pairs: &[(&str, serde_json::Value)]) -> serde_json::Value {
    serde_json::Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// Ingests of ordinary GitHub events `fine-{i}`, to share batches with the writes under test.
fn spawn_ordinary_ingests(
    tasks: &mut tokio::task::JoinSet<Result<(), StoreError>>,
    store: &Store,
    range: std::ops::Range<usize>,
) {
    for i in range {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .ingest(
                    event("github", &format!("fine-{i}")),
                    attempt("github", Verdict::Accepted, 200),
                )
                .await
                .map(|_| ())
        });
    }
}

/// U+0000 in every column that takes text from outside, written in the same moment as ordinary
/// ingests: nothing fails, no batch is split, everything reads back (as it was on SQLite, with
/// U+FFFD on PostgreSQL), and lookups by the same text find it.
async fn outside_text_with_nul_is_stored_without_failing_a_batch(place: &Place) {
    const NUL: &str = "a\u{0}b";
    let store = place.open().await;

    let mut odd = event("github", "odd-1");
    odd.event_type = format!("push.{NUL}");
    odd.headers = object(&[
        (&format!("x-key-{NUL}"), json!(NUL)),
        ("x-fine", json!("ok")),
    ]);
    // A payload is JSON text: U+0000 in it is the six characters of the escape.
    odd.payload = json!({ "text": NUL }).to_string();
    let mut odd_arrival = attempt("github", Verdict::Accepted, 200);
    // No headers: on SQLite this attempt goes into its event's row.
    odd_arrival.headers = json!({});
    odd_arrival.path = format!("/hooks/{NUL}");
    odd_arrival.remote_addr = Some(format!("{NUL} via 10.0.0.1:443"));
    let rule = format!("rule-{NUL}");
    let mut first = execution(odd.id, &rule, 0);
    first.order_key = Some(NUL.into());
    let trace = json!({
        "matched": [{"rule": rule, "conditions": [{"path": "$.text", "values": [NUL]}]}],
        "not_matched": [],
    });
    let mut duplicate_arrival = attempt("github", Verdict::Accepted, 200);
    duplicate_arrival.headers = object(&[("x-odd", json!(NUL))]);
    let mut refused = attempt(NUL, Verdict::Rejected, 404);
    refused.path = "/hooks/a%00b".into();
    refused.reason = Some(format!("unknown_source: no source `{NUL}`"));
    refused.headers = object(&[
        ("x-odd", json!("\u{FFFD}\u{FFFD}\tv")),
        ("x-nul", json!(NUL)),
    ]);

    // Everything at once, beside 64 ordinary ingests.
    let mut tasks = tokio::task::JoinSet::new();
    spawn_ordinary_ingests(&mut tasks, &store, 0..64);
    {
        let (store, odd, arrival) = (store.clone(), odd.clone(), odd_arrival.clone());
        let plan = plan_of(odd.id, &trace, std::slice::from_ref(&first));
        tasks.spawn(async move {
            store
                .ingest_planned(odd, arrival, Some(plan))
                .await
                .map(|_| ())
        });
    }
    {
        let (store, refused) = (store.clone(), refused.clone());
        tasks.spawn(async move { store.record_attempt(refused).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().expect("every write lands");
    }
    // The same delivery again, beside 64 more ordinary ingests. It goes in a second round: sent
    // in the first, it could land before its original and become the stored event itself.
    spawn_ordinary_ingests(&mut tasks, &store, 64..128);
    {
        let (store, mut again, arrival) = (store.clone(), odd.clone(), duplicate_arrival.clone());
        again.id = EventId::new();
        tasks.spawn(async move { store.ingest(again, arrival).await.map(|_| ()) });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().expect("every write lands");
    }
    let stats = store.batch_stats();
    assert_eq!(stats.split, 0, "no batch failed as a whole: {stats:?}");
    assert_eq!(store.count_events().await.unwrap(), 129);

    // The event, its headers, trace and arrival.
    let stored = store.get_event(odd.id).await.unwrap().expect("stored");
    assert_eq!(stored.event.event_type, place.stored(&odd.event_type));
    assert_eq!(stored.event.headers, place.stored_json(&odd.headers));
    assert_eq!(
        stored.event.payload, odd.payload,
        "payload text reads back exactly"
    );
    assert_eq!(stored.match_trace, Some(place.stored_json(&trace)));
    let found = store.find_event("github", "odd-1").await.unwrap();
    assert_eq!(found.map(|e| e.event.id), Some(odd.id));
    let arrivals = store.delivery_attempts_for_event(odd.id).await.unwrap();
    let verdicts: Vec<Verdict> = arrivals.iter().map(|a| a.attempt.verdict).collect();
    assert_eq!(verdicts.len(), 2, "{arrivals:#?}");
    assert!(verdicts.contains(&Verdict::Accepted) && verdicts.contains(&Verdict::Duplicate));
    for a in &arrivals {
        let sent = match a.attempt.verdict {
            Verdict::Accepted => &odd_arrival,
            _ => &duplicate_arrival,
        };
        assert_eq!(a.attempt.path, place.stored(&sent.path));
        assert_eq!(
            a.attempt.remote_addr,
            sent.remote_addr.as_deref().map(|r| place.stored(r))
        );
        assert_eq!(a.attempt.headers, place.stored_json(&sent.headers));
    }

    // The refused request, found by the source it named.
    let listed = store
        .list_delivery_attempts_filtered(&DeliveryAttemptFilter {
            source: Some(NUL.into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let got = &listed[0].attempt;
    assert_eq!(got.source, place.stored(NUL));
    assert_eq!(got.path, "/hooks/a%00b");
    assert_eq!(
        got.reason,
        refused.reason.as_deref().map(|r| place.stored(r))
    );
    assert_eq!(got.headers, place.stored_json(&refused.headers));

    // The execution: its keys, then an attempt full of U+0000 that ends it as a dead letter.
    let planned = store.executions_for_event(odd.id).await.unwrap();
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0].rule_id, place.stored(&rule));
    assert_eq!(
        planned[0].order_key.as_deref(),
        Some(place.stored(NUL).as_str())
    );
    let by_rule = store
        .list_executions(&ExecutionFilter {
            rule_id: Some(rule.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_rule.len(), 1);
    let claimed = store
        .claim(
            "worker",
            10,
            Duration::from_secs(30),
            Millis::now(),
            &ClaimExclusions::default(),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let said = NewExecutionAttempt {
        error: Some(format!("fatal {NUL}")),
        output: Some(object(&[("said", json!(NUL)), (NUL, json!([NUL, 1]))])),
        logs: json!({"lines": [{"level": "info", "message": NUL}], "truncated": false}),
        http_calls: json!([{"url": format!("http://x/{NUL}"), "error": NUL}]),
        db_statements: json!({"statements": [{"sql": NUL}], "transactions": []}),
        ..run_attempt(1, AttemptOutcome::Fatal, None)
    };
    store
        .finish(
            claimed[0].id,
            "worker",
            &said,
            NextStep::Dead(format!("fatal: {NUL}")),
        )
        .await
        .expect("an attempt full of U+0000 is recorded");
    let recorded = store.attempts_for_execution(claimed[0].id).await.unwrap();
    assert_eq!(recorded.len(), 1);
    let got = &recorded[0].attempt;
    assert_eq!(got.error, said.error.as_deref().map(|e| place.stored(e)));
    assert_eq!(
        got.output,
        said.output.as_ref().map(|o| place.stored_json(o))
    );
    assert_eq!(got.logs, place.stored_json(&said.logs));
    assert_eq!(got.http_calls, place.stored_json(&said.http_calls));
    assert_eq!(got.db_statements, place.stored_json(&said.db_statements));
    let dead = store.get_execution(claimed[0].id).await.unwrap().unwrap();
    assert_eq!(dead.status, ExecutionStatus::Dead);
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.last_error, got.error);
    let letters = store
        .list_dead_letters(&DeadLetterFilter {
            rule_id: Some(rule.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, place.stored(&format!("fatal: {NUL}")));

    // A replay whose order key holds U+0000 (written outside group commit).
    let mut again = execution(odd.id, &rule, 0);
    again.generation = 1;
    again.idempotency_key = NewExecution::key_for(odd.id, &rule, 0, 1);
    again.order_key = Some(NUL.into());
    let replayed = store
        .plan_replay(odd.id, &[again], &[claimed[0].id])
        .await
        .unwrap();
    assert_eq!(replayed.len(), 1);
    let replay = store.get_execution(replayed[0]).await.unwrap().unwrap();
    assert_eq!(
        replay.order_key.as_deref(),
        Some(place.stored(NUL).as_str())
    );

    // The matcher's path: an event stored unmatched, then planned with such a trace.
    let later = ingest_one(&store, "odd-2").await;
    let mut third = execution(later, &rule, 0);
    third.order_key = Some(NUL.into());
    let created = store
        .plan(&[plan_of(later, &trace, &[third])])
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    let planned = store.get_event(later).await.unwrap().unwrap();
    assert_eq!(planned.match_trace, Some(place.stored_json(&trace)));
    assert_eq!(store.batch_stats().split, 0);
    store.close().await;
}

/// The outcome of every listed event, by id, read the way the admin API and the CLI read it;
/// checked against the event story, which computes it on its own.
async fn outcomes(store: &Store) -> std::collections::HashMap<EventId, EventOutcome> {
    let listed = store
        .list_events_with_outcomes(&EventFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = std::collections::HashMap::new();
    for e in listed {
        let story = hookwise::dispatch::ops::story(store, e.stored.event.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(story.outcome, e.outcome, "{}", e.stored.event.id);
        out.insert(e.stored.event.id, e.outcome);
    }
    out
}

async fn listed_events_carry_their_outcome(place: &Place) {
    let store = place.open().await;
    let lease = Duration::from_secs(30);
    let none = ClaimExclusions::default();
    let pending = ingest_one(&store, "o-pending").await;
    let mut invalid = event("github", "o-quarantined");
    invalid.status = EventStatus::Quarantined;
    let quarantined = store
        .ingest(invalid, attempt("github", Verdict::Quarantined, 422))
        .await
        .unwrap()
        .event_id;
    let [no_match, ok, failing, dead, running] =
        ["o-no-match", "o-ok", "o-failing", "o-dead", "o-running"].map(|d| ingest_one(&store, d));
    let (no_match, ok, failing, dead, running) = (
        no_match.await,
        ok.await,
        failing.await,
        dead.await,
        running.await,
    );
    let x_ok = execution(ok, "r", 0);
    let x_failing = execution(failing, "r", 0);
    let x_dead = execution(dead, "r", 0);
    let x_dead_sibling = execution(dead, "r", 1);
    store
        .plan(&[
            plan_of(no_match, &json!({}), &[]),
            plan_of(ok, &json!({}), std::slice::from_ref(&x_ok)),
            plan_of(failing, &json!({}), std::slice::from_ref(&x_failing)),
            plan_of(dead, &json!({}), &[x_dead.clone(), x_dead_sibling.clone()]),
        ])
        .await
        .unwrap();
    let claimed = store
        .claim("w", 10, lease, Millis::now(), &none)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    // Claimed, none finished: running, whatever the attempt number says.
    let now = outcomes(&store).await;
    for ev in [ok, failing, dead] {
        assert_eq!(now[&ev], EventOutcome::Running, "{ev}");
    }
    let later = Millis(Millis::now().0 + 3_600_000);
    let steps = [
        (&x_ok, AttemptOutcome::Succeeded, NextStep::Succeeded),
        (
            &x_failing,
            AttemptOutcome::Retryable,
            NextStep::RetryAt(later),
        ),
        (
            &x_dead,
            AttemptOutcome::Fatal,
            NextStep::Dead("fatal: no".into()),
        ),
        (
            &x_dead_sibling,
            AttemptOutcome::Succeeded,
            NextStep::Succeeded,
        ),
    ];
    for (x, outcome, next) in steps {
        store
            .finish(x.id, "w", &run_attempt(1, outcome, None), next)
            .await
            .unwrap();
    }
    let x_running = execution(running, "r", 0);
    store
        .plan(&[plan_of(
            running,
            &json!({}),
            std::slice::from_ref(&x_running),
        )])
        .await
        .unwrap();

    let got = outcomes(&store).await;
    let want = [
        (pending, EventOutcome::Pending),
        (quarantined, EventOutcome::Quarantined),
        (no_match, EventOutcome::NoMatch),
        (ok, EventOutcome::Succeeded),
        (failing, EventOutcome::Failing),
        (dead, EventOutcome::Dead),
        (running, EventOutcome::Running),
    ];
    for (ev, outcome) in want {
        assert_eq!(got[&ev], outcome, "{ev}");
    }
    assert_eq!(got.len(), want.len());
    // The outcome filter, decided in the query, keeps exactly the events with that outcome.
    for (ev, outcome) in want {
        let only = store
            .list_events_with_outcomes(&EventFilter {
                outcome: Some(outcome),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let ids: Vec<EventId> = only.iter().map(|e| e.stored.event.id).collect();
        assert_eq!(ids, [ev], "{outcome:?}");
    }

    // A replay of the dead letter is a new generation: it alone counts for that action.
    let mut again = execution(dead, "r", 0);
    again.generation = 1;
    again.idempotency_key = NewExecution::key_for(dead, "r", 0, 1);
    store
        .plan_replay(dead, std::slice::from_ref(&again), &[x_dead.id])
        .await
        .unwrap();
    assert_eq!(outcomes(&store).await[&dead], EventOutcome::Running);
    let claimed = store
        .claim("w", 10, lease, Millis::now(), &none)
        .await
        .unwrap();
    assert!(claimed.iter().any(|x| x.id == again.id), "{claimed:?}");
    store
        .finish(
            again.id,
            "w",
            &run_attempt(1, AttemptOutcome::Succeeded, None),
            NextStep::Succeeded,
        )
        .await
        .unwrap();
    assert_eq!(outcomes(&store).await[&dead], EventOutcome::Succeeded);
    store.close().await;
}

/// Stores `n` events of `source`, one at a time (so each has its own sequence number), with
/// the type and payload `each(i)` gives and arrival times one second apart from `start`.
async fn ingest_series(
    store: &Store,
    n: usize,
    start: Millis,
    each: impl Fn(usize) -> (&'static str, serde_json::Value),
) -> Vec<EventId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let (event_type, payload) = each(i);
        let mut e = event("github", &format!("series-{i}"));
        e.event_type = event_type.into();
        e.received_at = Millis(start.0 + 1000 * i as i64);
        e.payload = payload.to_string();
        ids.push(
            store
                .ingest(e, attempt("github", Verdict::Accepted, 202))
                .await
                .unwrap()
                .event_id,
        );
    }
    ids
}

async fn listed(store: &Store, filter: EventFilter) -> Vec<EventId> {
    store
        .list_events_with_outcomes(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.stored.event.id)
        .collect()
}

async fn events_list_by_type_and_window(place: &Place) {
    let store = place.open().await;
    let start = Millis(1_700_000_000_000);
    // push, issues.opened, push, issues.opened, ... one second apart.
    let ids = ingest_series(&store, 8, start, |i| {
        let t = if i % 2 == 0 { "push" } else { "issues.opened" };
        (t, json!({"i": i}))
    })
    .await;
    let newest_first = |picked: &[usize]| picked.iter().rev().map(|&i| ids[i]).collect::<Vec<_>>();
    let all = EventFilter {
        limit: 100,
        ..Default::default()
    };
    let typed = |t: &str| EventFilter {
        event_type: Some(t.into()),
        ..all.clone()
    };
    assert_eq!(
        listed(&store, typed("push")).await,
        newest_first(&[0, 2, 4, 6])
    );
    assert_eq!(
        listed(&store, typed("issues.opened")).await,
        newest_first(&[1, 3, 5, 7])
    );
    assert!(
        listed(&store, typed("issues")).await.is_empty(),
        "exact match only"
    );

    // `until` is exclusive, `since` inclusive; both together make a window.
    let at = |i: i64| Millis(start.0 + 1000 * i);
    let until = EventFilter {
        until: Some(at(3)),
        ..all.clone()
    };
    assert_eq!(
        listed(&store, until.clone()).await,
        newest_first(&[0, 1, 2])
    );
    let window = EventFilter {
        since: Some(at(2)),
        until: Some(at(6)),
        event_type: Some("push".into()),
        ..all.clone()
    };
    assert_eq!(listed(&store, window.clone()).await, newest_first(&[2, 4]));
    // Paging within the window, one at a time, by sequence number.
    let first = store
        .list_events(&EventFilter {
            limit: 1,
            ..window.clone()
        })
        .await
        .unwrap();
    assert_eq!(first[0].event.id, ids[4]);
    let second = store
        .list_events(&EventFilter {
            limit: 1,
            before_seq: Some(first[0].seq),
            ..window.clone()
        })
        .await
        .unwrap();
    assert_eq!(second[0].event.id, ids[2]);
    // Live updates: only events after a sequence number.
    let after = EventFilter {
        after_seq: Some(second[0].seq),
        ..typed("push")
    };
    assert_eq!(listed(&store, after).await, newest_first(&[4, 6]));
    // A window with nothing in it, before and after the history.
    for (since, until) in [(None, Some(at(-5))), (Some(at(100)), None)] {
        let empty = EventFilter {
            since,
            until,
            ..all.clone()
        };
        assert!(listed(&store, empty).await.is_empty());
    }
    store.close().await;
}

async fn payload_search_reads_a_bounded_number_of_candidates(place: &Place) {
    let store = place.open().await;
    let start = Millis(1_700_000_000_000);
    // Twelve events; the needle is in the payloads of 1, 2 and 9 (9 in capitals). Payloads of
    // a few hundred bytes of repeating JSON, so that SQLite stores them compressed.
    let filler = "lorem ipsum dolor sit amet ".repeat(20);
    let ids = ingest_series(&store, 12, start, |i| {
        let note = if [1, 2].contains(&i) {
            "a needle here".to_string()
        } else if i == 9 {
            "A NEEDLE THERE".to_string()
        } else {
            "hay".to_string()
        };
        ("push", json!({"i": i, "note": note, "filler": filler}))
    })
    .await;
    let needle = SearchText::new("Needle").unwrap();
    let keep = |payload: &str| needle.matches(payload);
    let search = |max_scanned| PayloadSearch {
        keep: &keep,
        max_scanned,
    };
    let filter = EventFilter {
        limit: 2,
        ..Default::default()
    };

    // Unbounded: a full page of two, newest first, reading down to event 2.
    let found = store
        .search_events(&filter, &search(i64::MAX))
        .await
        .unwrap();
    let kept: Vec<EventId> = found.events.iter().map(|e| e.stored.event.id).collect();
    assert_eq!(kept, vec![ids[9], ids[2]]);
    assert_eq!(found.scanned, 10, "events 11 down to 2");
    assert_eq!(found.stopped_at, None, "the page filled");
    assert_eq!(
        found.newest_seen,
        Some(store.get_event(ids[11]).await.unwrap().unwrap().seq)
    );

    // A bound of 4: events 11 to 8 are read, 9 is kept, and the search says where it stopped.
    let found = store.search_events(&filter, &search(4)).await.unwrap();
    let kept: Vec<EventId> = found.events.iter().map(|e| e.stored.event.id).collect();
    assert_eq!(kept, vec![ids[9]]);
    assert_eq!(found.scanned, 4);
    let eighth = store.get_event(ids[8]).await.unwrap().unwrap();
    assert_eq!(
        found.stopped_at,
        Some(ScanStop {
            seq: eighth.seq,
            received_at: eighth.event.received_at
        })
    );
    // Going on from there: 7 to 4, nothing; then 3 to 0, events 2 and 1, and the end.
    let on = EventFilter {
        before_seq: Some(eighth.seq),
        ..filter.clone()
    };
    let found = store.search_events(&on, &search(4)).await.unwrap();
    assert!(found.events.is_empty());
    let stop = found.stopped_at.expect("stopped at the bound again");
    assert_eq!(stop.received_at, Millis(start.0 + 4000));
    let last = EventFilter {
        before_seq: Some(stop.seq),
        limit: 10,
        ..filter.clone()
    };
    let found = store.search_events(&last, &search(4)).await.unwrap();
    let kept: Vec<EventId> = found.events.iter().map(|e| e.stored.event.id).collect();
    assert_eq!(kept, vec![ids[2], ids[1]]);
    assert_eq!(found.scanned, 4);
    assert_eq!(found.stopped_at, None, "the history ended within the bound");

    // The other filters pick the candidates: only events 0..=3 by time, so 2 and 1 in one read.
    let windowed = EventFilter {
        until: Some(Millis(start.0 + 4000)),
        limit: 10,
        ..Default::default()
    };
    let found = store.search_events(&windowed, &search(4)).await.unwrap();
    assert_eq!(found.events.len(), 2);
    assert_eq!(found.scanned, 4);
    assert_eq!(found.stopped_at, None, "no fifth candidate");
    store.close().await;
}

/// The per-minute counts behind the overview and the plugins page follow every kind of write:
/// deliveries by verdict (a duplicate is no new event), refusals by reason, executions planned
/// (by a plan and by a replay), calls by outcome and duration, dead letters; a lost lease
/// counts nothing.
async fn activity_counts_what_each_write_did(place: &Place) {
    let store = place.open().await;
    let window = |store: &Store| {
        let store = store.clone();
        async move {
            let until = Millis(Millis::now().0 + 1);
            let since = Millis(until.0 - 3_600_000);
            (
                store.activity(since, until, 300_000).await.unwrap(),
                store.plugin_calls(since, until).await.unwrap(),
            )
        }
    };
    let (empty, no_calls) = window(&store).await;
    assert_eq!(empty, hookwise::store::Activity::default());
    assert!(no_calls.is_empty());

    let first = event("github", "a-1");
    let ev = store
        .ingest(first.clone(), attempt("github", Verdict::Accepted, 202))
        .await
        .unwrap()
        .event_id;
    let mut again = first.clone();
    again.id = EventId::new();
    let dup = store
        .ingest(again, attempt("github", Verdict::Accepted, 202))
        .await
        .unwrap();
    assert!(dup.duplicate);
    for reason in [
        Some("invalid_signature: no"),
        Some("invalid_signature: no"),
        None,
    ] {
        let mut bad = attempt("github", Verdict::Rejected, 401);
        bad.reason = reason.map(str::to_string);
        store.record_attempt(bad).await.unwrap();
    }
    let mut relay = execution(ev, "forward", 1);
    relay.plugin = "relay".into();
    store
        .plan(&[plan_of(
            ev,
            &json!({}),
            &[execution(ev, "forward", 0), relay],
        )])
        .await
        .unwrap();

    let claimed = claim_for_w(&store, Millis::now()).await;
    assert_eq!(claimed.len(), 2);
    let notify = claimed.iter().find(|x| x.plugin == "notify").unwrap();
    let relay = claimed.iter().find(|x| x.plugin == "relay").unwrap();
    let mut took_12ms = run_attempt(1, AttemptOutcome::Succeeded, None);
    took_12ms.started_at = Millis(took_12ms.finished_at.0 - 12);
    store
        .finish(notify.id, "w", &took_12ms, NextStep::Succeeded)
        .await
        .unwrap();
    // A lost lease writes nothing, and counts nothing.
    let lost = store
        .finish(
            notify.id,
            "w",
            &run_attempt(2, AttemptOutcome::Succeeded, None),
            NextStep::Succeeded,
        )
        .await;
    assert!(matches!(lost, Err(StoreError::LeaseLost(_))), "{lost:?}");
    let soon = Millis(Millis::now().0 - 1);
    store
        .finish(
            relay.id,
            "w",
            &run_attempt(1, AttemptOutcome::Retryable, Some("503")),
            NextStep::RetryAt(soon),
        )
        .await
        .unwrap();
    let retried = claim_for_w(&store, Millis::now()).await;
    assert_eq!(retried.len(), 1);
    store
        .finish(
            relay.id,
            "w",
            &run_attempt(2, AttemptOutcome::Fatal, Some("400")),
            NextStep::Dead("400".into()),
        )
        .await
        .unwrap();
    // A replay of the dead execution plans one more.
    let mut replayed = execution(ev, "forward", 1);
    replayed.plugin = "relay".into();
    replayed.generation = 1;
    replayed.idempotency_key = NewExecution::key_for(ev, "forward", 1, 1);
    store
        .plan_replay(ev, &[replayed], &[relay.id])
        .await
        .unwrap();

    let (a, calls) = window(&store).await;
    let verdicts: std::collections::BTreeMap<String, i64> = a
        .attempts
        .iter()
        .map(|c| (c.verdict.clone(), c.count))
        .fold(Default::default(), |mut m, (v, n)| {
            *m.entry(v).or_insert(0) += n;
            m
        });
    assert_eq!(
        verdicts,
        [("accepted", 1), ("duplicate", 1), ("rejected", 3)]
            .into_iter()
            .map(|(v, n)| (v.to_string(), n))
            .collect(),
        "{a:?}"
    );
    assert!(
        a.attempts
            .iter()
            .all(|c| c.source == "github" && (0..12).contains(&c.bucket))
    );
    let events: i64 = a.events.iter().map(|(_, _, n)| n).sum();
    assert_eq!(events, 1, "a duplicate is no new event: {a:?}");
    assert_eq!(
        a.refusals,
        vec![
            ("github".into(), "invalid_signature: no".into(), 2),
            ("github".into(), String::new(), 1)
        ]
    );
    assert_eq!(a.planned, 3, "two planned, one replayed");
    assert_eq!(
        a.calls,
        vec![
            ("fatal".into(), 1),
            ("retryable".into(), 1),
            ("succeeded".into(), 1)
        ]
    );
    assert_eq!(a.dead_letters, 1);
    let notify = &calls["notify"];
    assert_eq!((notify.calls, notify.failures), (1, 0));
    assert_eq!(
        notify.durations,
        vec![(Some(15), 1)],
        "12 ms: the 10-15 ms bucket"
    );
    let relay = &calls["relay"];
    assert_eq!((relay.calls, relay.failures), (2, 2));

    // Counting the rows again, as the migration does for a store from before the counts,
    // finds the same figures; only the dead letter is gone, retired by the replay.
    place.count_activity_from_rows().await;
    let (recounted, recounted_calls) = window(&store).await;
    assert_eq!(recounted.dead_letters, 0);
    assert_eq!(
        hookwise::store::Activity {
            dead_letters: a.dead_letters,
            ..recounted
        },
        a
    );
    assert_eq!(recounted_calls, calls);

    // A window that ended before all this counts none of it.
    let long_ago = Millis(Millis::now().0 - 7_200_000);
    assert_eq!(
        store
            .activity(Millis(long_ago.0 - 3_600_000), long_ago, 300_000)
            .await
            .unwrap(),
        hookwise::store::Activity::default()
    );
    store.close().await;
}
