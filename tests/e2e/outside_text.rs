//! Text from outside holding U+0000 (or bytes that are not UTF-8) on its way into the store of
//! a running server, on SQLite and on PostgreSQL: plugin logs, errors (retryable and fatal) and
//! outputs, an HTTP answer a plugin read, a match trace and an order key over a payload string,
//! refused requests to `/hooks/a%00b` and odd header values beside valid deliveries, delivery
//! ids. Every execution reaches its final state once, no write batch fails, and the stored text
//! is what was sent (SQLite) or shows U+FFFD where U+0000 was (PostgreSQL). And should the
//! database refuse an attempt's record all the same, the attempt is recorded without what the
//! plugin said, and the execution still finishes once.

use std::time::{Duration, Instant};

use hookwise::model::{EventId, ExecutionStatus, Verdict};
use hookwise::store::{
    DeadLetterFilter, DeliveryAttemptFilter, Execution, GroupCommitSettings, NUL_REPLACEMENT,
    NewExecutionAttempt, Store, StoredEvent,
};
use serde_json::{Value, json};

use crate::dispatch::{start, wait_done};
use crate::support::{Answer, Receiver, Server, TempPostgres, wasm};

/// The odd text every scenario sends.
const NUL: &str = "a\u{0}b";
/// A header value that is not UTF-8, with a tab (control bytes other than tab never pass
/// HTTP parsing), as it is stored: each byte that is not UTF-8 becomes U+FFFD.
const ODD_HEADER: &[u8] = b"\xff\xfe odd\tv";
const ODD_HEADER_STORED: &str = "\u{FFFD}\u{FFFD} odd\tv";

/// Rules that put the payload's `text` into every place an attempt is recorded. `PORT` is the
/// local server the `http` action reads from.
const RULES: &str = r#"rules:
  - id: say-output
    source: open
    events: [say.output]
    actions:
      - plugin: hostile
        with: { mode: say, log: "{{ payload.text }}", output: { said: "{{ payload.text }}" } }
  - id: say-retryable
    source: open
    events: [say.retryable]
    actions:
      - plugin: hostile
        with: { mode: say, log: "{{ payload.text }}", error: "{{ payload.text }}", retryable: true }
        retry: { attempts: 3, backoff: 100ms, max_backoff: 200ms }
  - id: say-fatal
    source: open
    events: [say.fatal]
    actions:
      - plugin: hostile
        with: { mode: say, error: "{{ payload.text }}" }
  - id: http-answer
    source: open
    events: [http.answer]
    actions:
      - plugin: hostile
        with: { mode: http, method: GET, url: "http://127.0.0.1:PORT/nul" }
  - id: say-boom
    source: open
    events: [say.boom]
    actions:
      - plugin: hostile
        with: { mode: say, log: "{{ payload.text }}", error: "boom {{ payload.text }}", retryable: true }
        retry: { attempts: 2, backoff: 100ms, max_backoff: 200ms }
  - id: traced
    source: open
    events: [traced]
    when:
      all:
        - { path: $.text, starts_with: a }
    actions:
      - plugin: hostile
        with: { mode: ok }
        order_key: "{{ payload.text }}"
"#;

/// What a store gives back for `text`: PostgreSQL holds U+0000 as U+FFFD.
fn stored(postgres: bool, text: &str) -> String {
    if postgres {
        text.replace('\0', NUL_REPLACEMENT.encode_utf8(&mut [0; 4]))
    } else {
        text.to_string()
    }
}

/// Every string in a JSON value, keys included.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.as_str()).chain(strings(v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// A local receiver whose `/nul` answers a body holding U+0000.
async fn nul_server() -> std::net::SocketAddr {
    let receiver = Receiver::start().await;
    receiver.route("/nul", Answer::new(200, "a\u{0}b"));
    receiver.addr
}

fn config(store: &str, http: std::net::SocketAddr) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: \"{store}\"\n\
         rules: rules.yaml\n\
         dispatch: {{ workers: 8, lease: 5s }}\n\
         sources:\n  - {{ id: open, provider: none }}\n\
         plugins:\n  - name: hostile\n    path: {}\n    allow: {{ http: [\"http://{http}\"] }}\n",
        wasm("hostile").display()
    )
}

/// POSTs `payload` to `/hooks/{source}` (`webhook-id` as the delivery id when given, and an odd
/// header when asked); returns the status and the JSON answer.
async fn post(
    client: &reqwest::Client,
    base: &str,
    source: &str,
    id: Option<&str>,
    odd_header: bool,
    payload: &Value,
) -> (u16, Value) {
    let mut req = client
        .post(format!("{base}/hooks/{source}"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(payload).unwrap());
    if let Some(id) = id {
        req = req.header("webhook-id", id);
    }
    if odd_header {
        let value = reqwest::header::HeaderValue::from_bytes(ODD_HEADER).unwrap();
        req = req.header("x-odd", value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// POSTs an accepted event to the `open` source; returns its id.
async fn send(client: &reqwest::Client, base: &str, id: &str, payload: &Value) -> EventId {
    let (status, answer) = post(client, base, "open", Some(id), false, payload).await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().parse().unwrap()
}

/// The one execution of `event`, finished.
async fn finished(store: &Store, event: EventId) -> Execution {
    wait_done(store, event, 1, Duration::from_secs(60)).await;
    let mut xs = store.executions_for_event(event).await.unwrap();
    xs.pop().unwrap()
}

/// Delivery attempts of `source` (the name as sent) with `verdict`, once there are `n`.
async fn attempts_of(store: &Store, source: &str, verdict: Verdict, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let listed = store
            .list_delivery_attempts_filtered(&DeliveryAttemptFilter {
                source: Some(source.into()),
                verdict: Some(verdict),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        if listed.len() >= n || start.elapsed() > Duration::from_secs(30) {
            assert_eq!(listed.len(), n, "{listed:#?}");
            return listed
                .iter()
                .map(|a| serde_json::to_value(a).unwrap())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn odd_text_is_stored_and_never_fails_a_write_on_sqlite() {
    odd_text_everywhere(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn odd_text_is_stored_and_never_fails_a_write_on_postgres() {
    let pg = TempPostgres::create()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    odd_text_everywhere(Some(&pg.url)).await;
    pg.drop_db().await.unwrap();
}

async fn odd_text_everywhere(postgres: Option<&str>) {
    let http = nul_server().await;
    let url = postgres.unwrap_or("sqlite://hookwise.db");
    let server = start(
        &config(url, http),
        &RULES.replace("PORT", &http.port().to_string()),
    )
    .await;
    let store = Store::open(url, &server.dir, GroupCommitSettings::default())
        .await
        .unwrap();
    let pg = postgres.is_some();
    let client = reqwest::Client::new();

    plugins_say_odd_text(&server, &store, &client, pg).await;
    odd_requests_beside_valid_ones(&server, &store, &client, pg).await;
    delivery_ids_are_bounded(&server, &store, &client, pg).await;
    assert_eq!(
        server.metric("hookwise_group_commit_splits_total").await,
        0.0,
        "no write batch failed as a whole"
    );
    // Last: a batch holding a refused record does fail (and is split), as it should.
    refused_records_are_recorded_reduced(&server, &store, &client, url).await;

    store.close().await;
    server.stop().await;
}

/// U+0000 in a plugin's log, output, error (retryable: retried, then dead; fatal: dead), in the
/// HTTP answer it read, and in a payload string a rule's trace and order key quote.
async fn plugins_say_odd_text(server: &Server, store: &Store, client: &reqwest::Client, pg: bool) {
    let base = &server.base;
    let odd = stored(pg, NUL);
    let output = send(
        client,
        base,
        "say-1",
        &json!({"type": "say.output", "text": NUL}),
    )
    .await;
    let retryable = send(
        client,
        base,
        "say-2",
        &json!({"type": "say.retryable", "text": NUL}),
    )
    .await;
    let fatal = send(
        client,
        base,
        "say-3",
        &json!({"type": "say.fatal", "text": NUL}),
    )
    .await;
    let http = send(client, base, "say-4", &json!({"type": "http.answer"})).await;
    let traced = send(
        client,
        base,
        "say-5",
        &json!({"type": "traced", "text": NUL}),
    )
    .await;

    // Succeeded once, with its log and output.
    let x = finished(store, output).await;
    assert_eq!(
        (x.status, x.attempts),
        (ExecutionStatus::Succeeded, 1),
        "{x:#?}"
    );
    let attempts = store.attempts_for_execution(x.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0].attempt;
    assert_eq!(a.output, Some(json!({ "said": odd })));
    assert!(strings(&a.logs).contains(&odd.as_str()), "{:?}", a.logs);

    // Retried, then dead, each attempt recorded once with its error.
    let x = finished(store, retryable).await;
    assert_eq!((x.status, x.attempts), (ExecutionStatus::Dead, 3), "{x:#?}");
    let attempts = store.attempts_for_execution(x.id).await.unwrap();
    assert_eq!(attempts.len(), 3);
    for a in &attempts {
        let error = a.attempt.error.as_deref().unwrap_or_default();
        assert!(error.contains(&odd), "{error:?}");
        assert!(strings(&a.attempt.logs).contains(&odd.as_str()));
    }
    let letters = store
        .list_dead_letters(&DeadLetterFilter {
            rule_id: Some("say-retryable".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].reason.starts_with("gave up after 3 attempts"));
    assert!(letters[0].reason.contains(&odd), "{:?}", letters[0].reason);

    // Fatal: dead at once.
    let x = finished(store, fatal).await;
    assert_eq!((x.status, x.attempts), (ExecutionStatus::Dead, 1), "{x:#?}");
    assert!(x.last_error.as_deref().unwrap_or_default().contains(&odd));
    assert_eq!(store.attempts_for_execution(x.id).await.unwrap().len(), 1);

    // The HTTP answer the plugin read comes back in its output.
    let x = finished(store, http).await;
    assert_eq!(
        (x.status, x.attempts),
        (ExecutionStatus::Succeeded, 1),
        "{x:#?}"
    );
    let attempts = store.attempts_for_execution(x.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    let out = attempts[0].attempt.output.clone().unwrap_or_default();
    assert_eq!(out["body"], json!(odd), "{out}");

    // The trace quotes the payload string; the order key is rendered from it.
    let x = finished(store, traced).await;
    assert_eq!(
        (x.status, x.attempts),
        (ExecutionStatus::Succeeded, 1),
        "{x:#?}"
    );
    assert_eq!(x.order_key.as_deref(), Some(odd.as_str()));
    let event: StoredEvent = store.get_event(traced).await.unwrap().unwrap();
    let trace = event.match_trace.expect("stored matched");
    assert!(strings(&trace).contains(&odd.as_str()), "{trace}");
    // The payload is JSON text, kept as it came on both stores.
    assert_eq!(
        serde_json::from_str::<Value>(&event.event.payload).unwrap()["text"],
        json!(NUL)
    );
}

/// Refused requests to `/hooks/a%00b` and requests with a header value that is not UTF-8, sent
/// in the same moment as valid deliveries: all are recorded, and every valid event is stored.
async fn odd_requests_beside_valid_ones(
    server: &Server,
    store: &Store,
    client: &reqwest::Client,
    pg: bool,
) {
    let base = &server.base;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (client, base) = (client.clone(), base.clone());
        tasks.spawn(async move {
            let id = format!("burst-{i}");
            let odd = i % 8 == 0;
            let (status, answer) = post(
                &client,
                &base,
                "open",
                Some(&id),
                odd,
                &json!({"type": "plain", "n": i}),
            )
            .await;
            assert_eq!(status, 200, "{answer}");
        });
    }
    for _ in 0..10 {
        let (client, base) = (client.clone(), base.clone());
        tasks.spawn(async move {
            let (status, answer) = post(
                &client,
                &base,
                "a%00b",
                None,
                true,
                &json!({"type": "plain"}),
            )
            .await;
            assert_eq!(
                (status, answer["code"].as_str()),
                (404, Some("unknown_source"))
            );
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    for i in 0..40 {
        let event = store
            .find_event("open", &format!("burst-{i}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("burst-{i} is stored"));
        if i % 8 == 0 {
            assert_eq!(event.event.headers["x-odd"], json!(ODD_HEADER_STORED));
        }
    }
    // Found by the source as it was named: the store looks it up as it stored it.
    for refused in attempts_of(store, NUL, Verdict::Rejected, 10).await {
        assert_eq!(refused["source"], json!(stored(pg, NUL)));
        assert_eq!(refused["path"], json!("/hooks/a%00b"));
        assert_eq!(refused["headers"]["x-odd"], json!(ODD_HEADER_STORED));
        let reason = refused["reason"].as_str().unwrap();
        assert!(reason.starts_with("unknown_source"), "{reason}");
        assert!(reason.contains(&stored(pg, NUL)), "{reason:?}");
    }
}

/// Delivery ids of 256 bytes are taken, longer ones and ones with a control character are
/// refused with `invalid_delivery_id` (and recorded); an event type holding U+0000 is stored.
async fn delivery_ids_are_bounded(
    server: &Server,
    store: &Store,
    client: &reqwest::Client,
    pg: bool,
) {
    let base = &server.base;
    let plain = json!({"type": "plain"});
    let longest = "i".repeat(256);
    let (status, answer) = post(client, base, "open", Some(&longest), false, &plain).await;
    assert_eq!(status, 200, "{answer}");
    let stored_id = store.find_event("open", &longest).await.unwrap();
    assert!(stored_id.is_some(), "a 256-byte id is stored");

    let (status, answer) = post(client, base, "open", Some(&"i".repeat(257)), false, &plain).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_delivery_id"))
    );
    assert_eq!(
        answer["detail"],
        json!("the delivery id is 257 bytes long; at most 256 are accepted")
    );
    // From the payload (no `webhook-id`: the body's `id`), as Stripe-like senders give it.
    let nul_id = json!({"id": format!("evt_{NUL}"), "type": "plain"});
    let (status, answer) = post(client, base, "open", None, false, &nul_id).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_delivery_id"))
    );
    let refused = attempts_of(store, "open", Verdict::Rejected, 2).await;
    assert!(
        refused.iter().all(|a| a["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid_delivery_id: ")),
        "{refused:#?}"
    );

    // An event type from the payload holding U+0000.
    let typed = json!({"type": format!("odd.{NUL}")});
    let event = send(client, base, "typed-1", &typed).await;
    let stored_event = store.get_event(event).await.unwrap().unwrap();
    assert_eq!(
        stored_event.event.event_type,
        stored(pg, &format!("odd.{NUL}"))
    );
}

/// Makes the server's database refuse every execution attempt whose error mentions `boom`, as
/// a database may refuse text for reasons of its own.
async fn refuse_boom(server: &Server, url: &str) {
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(
            "ALTER TABLE execution_attempts ADD CONSTRAINT refuse_boom \
             CHECK (error IS NULL OR error NOT LIKE '%boom%')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    } else {
        let db = rusqlite::Connection::open(server.dir.join("hookwise.db")).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db.execute_batch(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON execution_attempts \
             WHEN NEW.error LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'boom refused'); END;",
        )
        .unwrap();
    }
}

/// An attempt whose record the database refuses is recorded reduced (no error, output or logs
/// of the plugin's, an error saying so), and the execution moves on as the attempt decided:
/// retried, then dead, each attempt once. Left unrecorded, its lease would run out and the
/// action run again, forever.
async fn refused_records_are_recorded_reduced(
    server: &Server,
    store: &Store,
    client: &reqwest::Client,
    url: &str,
) {
    refuse_boom(server, url).await;
    let event = send(
        client,
        &server.base,
        "boom-1",
        &json!({"type": "say.boom", "text": NUL}),
    )
    .await;
    let x = finished(store, event).await;
    assert_eq!((x.status, x.attempts), (ExecutionStatus::Dead, 2), "{x:#?}");
    let attempts = store.attempts_for_execution(x.id).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    for a in &attempts {
        let error = a.attempt.error.as_deref().unwrap_or_default();
        assert!(error.contains("could not be stored"), "{error}");
        assert!(!error.contains("boom"));
        assert_eq!(
            (&a.attempt.output, &a.attempt.logs),
            (&None, &NewExecutionAttempt::no_logs())
        );
    }
    let letters = store
        .list_dead_letters(&DeadLetterFilter {
            rule_id: Some("say-boom".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let reason = &letters[0].reason;
    assert!(reason.starts_with("gave up after 2 attempts: "), "{reason}");
    assert!(reason.contains("could not be stored") && !reason.contains("boom"));
}
