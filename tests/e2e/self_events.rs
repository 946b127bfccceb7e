//! hookwise's own events (source `hookwise`) against a running server: a dead letter becomes an
//! `execution.dead_lettered` event that a rule routes with the built-in `call-api`, and the
//! dead letter of that action emits nothing more; an execution that keeps failing is announced
//! once; a refused rules reload, a spike of refused requests and an outage of the store are
//! announced; nothing from outside can post to the source.

use std::time::{Duration, Instant, SystemTime};

use hookwise::model::{EventId, ExecutionStatus};
use hookwise::store::{EventFilter, GroupCommitSettings, Store, StoredEvent};
use hookwise::verify::{Provider, VerifyOptions};
use serde_json::{Value, json};

use crate::dispatch::{SECRET, post, send, wait_done};
use crate::support::{
    Answer, Backend, Receiver, Relay, Server, TempDb, TempPostgres, on_every_backend, server,
};

/// Config of a test server on `store`: source `gh` (GitHub), the built-in `call-api` granted
/// `receiver`, an execution announced as failing after 2 failed attempts, a spike past 3
/// refusals a minute.
fn config(receiver: &Receiver, store: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: \"{store}\"\n\
         rules: rules.yaml\n\
         dispatch: {{ workers: 4, lease: 5s }}\n\
         sources:\n  - {{ id: gh, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         plugins:\n  - name: call-api\n    allow: {{ http: [\"{}\"] }}\n\
         own_events:\n  failing_after: 2\n  refusals_spike: {{ threshold: 3, window: 1m }}\n",
        receiver.grant()
    )
}

/// `work` calls `/work` for every push (4 attempts, fast back-off); `alert` posts every dead
/// letter to `/alerts`, once; `failing` posts every failing execution to `/failing`.
fn rules(receiver: &Receiver) -> String {
    format!(
        "rules:\n\
         \x20 - id: work\n    source: gh\n    events: [push]\n    actions:\n      - plugin: call-api\n        with: {{ url: \"{work}\", body: {{ n: \"{{{{ payload.n }}}}\" }} }}\n        retry: {{ attempts: 4, backoff: 100ms, max_backoff: 200ms }}\n\
         \x20 - id: alert\n    source: hookwise\n    events: [execution.dead_lettered]\n    actions:\n      - plugin: call-api\n        with:\n          url: \"{alerts}\"\n          body:\n            execution: \"{{{{ payload.execution_id }}}}\"\n            rule: \"{{{{ payload.rule_id }}}}\"\n            source: \"{{{{ payload.source }}}}\"\n            reason: \"{{{{ payload.reason }}}}\"\n        retry: {{ attempts: 1 }}\n\
         \x20 - id: failing\n    source: hookwise\n    events: [execution.failing]\n    actions:\n      - plugin: call-api\n        with:\n          url: \"{failing}\"\n          body: {{ execution: \"{{{{ payload.execution_id }}}}\", attempts: \"{{{{ payload.attempts }}}}\" }}\n",
        work = receiver.url("/work"),
        alerts = receiver.url("/alerts"),
        failing = receiver.url("/failing"),
    )
}

async fn start(receiver: &Receiver, store: &str) -> Server {
    server(config(receiver, store))
        .file("rules.yaml", rules(receiver))
        .env("GH_SECRET", SECRET)
        .start()
        .await
}

async fn open(server: &Server, db: &TempDb) -> Store {
    match db {
        TempDb::Sqlite(..) => server.store().await,
        _ => Store::open(db.url(), &server.dir, GroupCommitSettings::default())
            .await
            .expect("open the store"),
    }
}

/// The store URL the server uses for `db`: on SQLite the file in the server's own folder.
fn store_url(db: &TempDb) -> String {
    match db {
        TempDb::Sqlite(..) => "sqlite://hookwise.db".to_string(),
        _ => db.url().to_string(),
    }
}

/// hookwise's own events stored so far, oldest first.
async fn own_events(store: &Store) -> Vec<StoredEvent> {
    let mut events = store
        .list_events(&EventFilter {
            source: Some("hookwise".into()),
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    events.reverse();
    events
}

/// Waits until `count` own events of `event_type` are stored; returns them.
async fn wait_own(store: &Store, event_type: &str, count: usize) -> Vec<StoredEvent> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found: Vec<StoredEvent> = own_events(store)
            .await
            .into_iter()
            .filter(|e| e.event.event_type == event_type)
            .collect();
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {event_type} event: {:#?}",
            own_events(store).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the receiver got a request for `path`; returns the requests for it.
async fn wait_seen(receiver: &Receiver, path: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: Vec<Value> = receiver
            .seen()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.json())
            .collect();
        if !seen.is_empty() {
            return seen;
        }
        assert!(Instant::now() < deadline, "nothing posted to {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn payload(e: &StoredEvent) -> Value {
    serde_json::from_str(&e.event.payload).unwrap()
}

on_every_backend!(dead_letters_become_events [sqlite, postgres]: a_dead_letter_is_routed_and_its_alert_feeds_nothing);

/// A fatal failure (400) makes a dead letter, which becomes one `execution.dead_lettered`
/// event; the `alert` rule posts it to `/alerts` with the built-in `call-api`. `/alerts`
/// answers 400 too: that action becomes a dead letter as well, and no event follows it.
async fn a_dead_letter_is_routed_and_its_alert_feeds_nothing(backend: Backend) {
    let db = TempDb::create(backend, "hookwise.db").await;
    let receiver = Receiver::start().await;
    receiver.route("/work", Answer::status(400));
    receiver.route("/alerts", Answer::status(400));
    let server = start(&receiver, &store_url(&db)).await;
    let store = open(&server, &db).await;
    let client = reqwest::Client::new();

    let event = send(&client, &server.base, &json!({"n": 7})).await;
    wait_done(&store, event, 1, Duration::from_secs(60)).await;
    let dead = store.executions_for_event(event).await.unwrap().remove(0);
    assert_eq!(dead.status, ExecutionStatus::Dead);

    let own = wait_own(&store, "execution.dead_lettered", 1).await;
    let p = payload(&own[0]);
    assert_eq!(p["execution_id"], dead.id.to_string(), "{p:#}");
    assert_eq!(p["event_id"], event.to_string());
    assert_eq!(
        (&p["source"], &p["event_type"]),
        (&json!("gh"), &json!("push"))
    );
    assert_eq!(
        (&p["rule_id"], &p["action_index"]),
        (&json!("work"), &json!(0))
    );
    assert_eq!(
        (&p["plugin"], &p["attempts"]),
        (&json!("call-api"), &json!(1))
    );
    assert!(
        p["reason"].as_str().unwrap().starts_with("fatal: ") && p["last_error"].is_string(),
        "{p:#}"
    );
    assert_eq!(
        own[0].event.delivery_id,
        format!("execution.dead_lettered:{}", dead.id)
    );

    // Emitted again (after a crash, or by another node): a duplicate, nothing new stored.
    let again = hookwise::own_events::OwnEvent {
        kind: hookwise::own_events::Kind::DeadLettered,
        delivery_id: own[0].event.delivery_id.clone(),
        payload: p.clone(),
        at: hookwise::model::Millis::now(),
    };
    let (new, attempt) = again.into_records();
    let stored = store.ingest(new, attempt).await.unwrap();
    assert_eq!((stored.event_id, stored.duplicate), (own[0].event.id, true));

    // The rule on source `hookwise` routed it.
    let posted = wait_seen(&receiver, "/alerts").await;
    assert_eq!(posted[0]["execution"], dead.id.to_string());
    assert_eq!(
        (&posted[0]["rule"], &posted[0]["source"]),
        (&json!("work"), &json!("gh"))
    );

    // The alert's own action failed for good: a dead letter, and no event about it.
    let alert = own[0].event.id;
    wait_done(&store, alert, 1, Duration::from_secs(60)).await;
    let alert_x = store.executions_for_event(alert).await.unwrap().remove(0);
    assert_eq!(alert_x.status, ExecutionStatus::Dead);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = own_events(&store).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    let (code, list) = server.cli(&["dead-letters", "list", "--json"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list:#}");

    // Shown like any event: the CLI, the admin API.
    let (code, out) = server.cli(&["events", "--source", "hookwise"]);
    assert_eq!(code, 0);
    assert!(out.contains("execution.dead_lettered"), "{out}");
    let (code, out) = server.cli(&["logs", &alert.to_string()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("execution.dead_lettered") && out.contains("alert"),
        "{out}"
    );
    admin_lists_it(&server, alert).await;

    store.close().await;
    server.stop().await;
    db.drop_db().await;
}

/// The admin API lists `event` under source `hookwise` and tells its story.
async fn admin_lists_it(server: &Server, event: EventId) {
    let token = server.admin_token();
    let client = reqwest::Client::new();
    let get = |path: String| {
        client
            .get(format!("{}{path}", server.admin))
            .bearer_auth(token.trim())
            .send()
    };
    let list: Value = get("/api/v1/events?source=hookwise".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], event.to_string(), "{list:#}");
    let story = get(format!("/api/v1/events/{event}")).await.unwrap();
    assert_eq!(story.status(), 200);
    let story: Value = story.json().await.unwrap();
    assert_eq!(story["outcome"], "dead", "{story:#}");

    // The dashboard lists it under its source and tells its story.
    let dash = crate::dashboard::Dash::new(server);
    let cookie = dash.sign_in().await;
    let (status, html) = dash.page("/events?source=hookwise", &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains(&event.to_string()), "{html}");
    let (status, html) = dash.page(&format!("/events/{event}"), &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains("execution.dead_lettered"), "{html}");
}

/// An execution that fails again and again is announced once, when it has failed
/// `failing_after` (2) attempts, and again when it gives up (a dead letter).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_execution_failing_again_and_again_is_announced_once() {
    let receiver = Receiver::start().await;
    receiver.route("/work", Answer::status(503));
    let server = start(&receiver, "sqlite://hookwise.db").await;
    let store = server.store().await;
    let client = reqwest::Client::new();

    let event = send(&client, &server.base, &json!({"n": 1})).await;
    wait_done(&store, event, 1, Duration::from_secs(60)).await;
    let x = store.executions_for_event(event).await.unwrap().remove(0);
    assert_eq!((x.status, x.attempts), (ExecutionStatus::Dead, 4));

    let failing = wait_own(&store, "execution.failing", 1).await;
    let p = payload(&failing[0]);
    assert_eq!(
        (&p["execution_id"], &p["attempts"]),
        (&json!(x.id.to_string()), &json!(2))
    );
    assert!(p["next_attempt_at"].is_string(), "{p:#}");
    let posted = wait_seen(&receiver, "/failing").await;
    assert_eq!(posted[0]["execution"], x.id.to_string());
    wait_own(&store, "execution.dead_lettered", 1).await;
    // Routed alerts succeed (200): they add nothing. Attempts 3 and 4 announced nothing more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all: Vec<String> = own_events(&store)
        .await
        .iter()
        .map(|e| e.event.event_type.clone())
        .collect();
    assert_eq!(all, ["execution.failing", "execution.dead_lettered"]);
    assert_eq!(wait_seen(&receiver, "/failing").await.len(), 1);
    store.close().await;
    server.stop().await;
}

/// A rules file broken while serving: the reload is refused and announced, with the problem
/// as `hookwise check` prints it; the rules in force still route it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_rules_reload_is_announced() {
    let receiver = Receiver::start().await;
    let reload_rule = format!(
        "{}\n  - id: reload\n    source: hookwise\n    events: [rules.reload_failed]\n    actions:\n      - plugin: call-api\n        with: {{ url: \"{}\", body: {{ error: \"{{{{ payload.error }}}}\", file: \"{{{{ payload.file }}}}\" }} }}\n",
        rules(&receiver).trim_end(),
        receiver.url("/reload")
    );
    let server = server(config(&receiver, "sqlite://hookwise.db"))
        .file("rules.yaml", reload_rule)
        .env("GH_SECRET", SECRET)
        .start()
        .await;
    let store = server.store().await;
    // `equal` is not an operator: line 7, column 24.
    let broken = "rules:\n  - id: work\n    source: gh\n    events: [push]\n    when:\n      all:\n        - { path: $.a, equal: 1 }\n    actions: [{ plugin: call-api }]\n";
    std::fs::write(server.dir.join("rules.yaml"), broken).unwrap();

    let own = wait_own(&store, "rules.reload_failed", 1).await;
    let p = payload(&own[0]);
    let error = p["error"].as_str().unwrap();
    assert!(
        error.contains("rules.yaml:7:24") && error.contains("equal"),
        "{p:#}"
    );
    assert!(p["file"].as_str().unwrap().ends_with("rules.yaml"), "{p:#}");
    let posted = wait_seen(&receiver, "/reload").await;
    assert!(
        posted[0]["error"]
            .as_str()
            .unwrap()
            .contains("rules.yaml:7:24")
    );
    store.close().await;
    server.stop().await;
}

/// Requests with bad signatures past the threshold are announced once per window, naming the
/// reason; nothing posted to `/hooks/hookwise` from outside is taken, and nothing is stored
/// for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_spike_once_and_the_source_cannot_be_posted_to() {
    let receiver = Receiver::start().await;
    let server = start(&receiver, "sqlite://hookwise.db").await;
    let store = server.store().await;
    let client = reqwest::Client::new();

    // Signed right, posted to the reserved source: an unknown source.
    let url = format!("{}/hooks/hookwise", server.base);
    let body = br#"{"execution_id": "forged"}"#.to_vec();
    let signed = hookwise::verify::sign_event(
        Provider::Github,
        SECRET,
        &VerifyOptions::default(),
        "POST",
        &url,
        &body,
        SystemTime::now(),
        Some("execution.dead_lettered"),
    )
    .unwrap();
    let mut req = client.post(&url).body(body);
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    let answer = req.send().await.unwrap();
    assert_eq!(answer.status(), 404);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["code"], "unknown_source");

    // Eight bad signatures: however the minute's windows fall, one holds more than 3.
    for n in 0..8 {
        let answer = client
            .post(format!("{}/hooks/gh", server.base))
            .header("x-github-event", "push")
            .header("x-github-delivery", format!("bad-{n}"))
            .header("x-hub-signature-256", "sha256=00")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
    }
    let spikes = wait_own(&store, "source.refusals_spike", 1).await;
    let p = payload(&spikes[0]);
    assert_eq!(
        (&p["source"], &p["count"]),
        (&json!("gh"), &json!(4)),
        "{p:#}"
    );
    assert_eq!(p["window"], "1m");
    assert!(p["top_reasons"][0]["reason"].is_string(), "{p:#}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = own_events(&store).await;
    assert!(
        all.iter()
            .all(|e| e.event.event_type == "source.refusals_spike")
            && all.len() <= 2,
        "{all:#?}"
    );
    store.close().await;
    server.stop().await;
}

/// `url` (a PostgreSQL URL) with its host and port replaced by `addr`, and the host and port it
/// named.
fn through(url: &str, addr: std::net::SocketAddr) -> (String, std::net::SocketAddr) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, rest) = rest.split_once('@').map_or(("", rest), |(u, r)| (u, r));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let at = if user.is_empty() { "" } else { "@" };
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(host)
        .expect("the database's address")
        .next()
        .expect("an address");
    (format!("{scheme}://{user}{at}{addr}/{path}"), upstream)
}

/// PostgreSQL becomes unreachable under a serving node (the connections to it are cut, new ones
/// refused): a delivery is refused with 503 and Retry-After, the node is not ready; once the
/// database is back, the node is ready again and stores one `store.unavailable` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_of_the_store_is_announced_when_it_is_over() {
    let pg = TempPostgres::create()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let (_, upstream) = through(&pg.url, "127.0.0.1:1".parse().unwrap());
    let relay = Relay::start(upstream).await;
    let (relayed, _) = through(&pg.url, relay.addr);
    let receiver = Receiver::start().await;
    let server = start(&receiver, &relayed).await;
    let client = reqwest::Client::new();
    send(&client, &server.base, &json!({"n": 1})).await;

    relay.cut().await;
    let cut_at = Instant::now();
    let answer = post(&client, &server.base, &json!({"n": 2})).await;
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "1");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["code"], "store_unavailable", "{body:#}");
    let ready = client
        .get(format!("{}/readyz", server.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    relay.restore().await;
    let outage = cut_at.elapsed();

    let store = Store::open(&pg.url, &server.dir, GroupCommitSettings::default())
        .await
        .expect("open the store");
    let announced = wait_own(&store, "store.unavailable", 1).await;
    assert_eq!(announced.len(), 1, "{announced:#?}");
    let p = payload(&announced[0]);
    assert!(p["node"].as_str().is_some_and(|n| !n.is_empty()), "{p:#}");
    let ms = p["duration_ms"].as_i64().expect("duration_ms");
    assert!(
        ms > 0 && u128::try_from(ms).unwrap() <= outage.as_millis() + 10_000,
        "outage of {ms} ms announced, {outage:?} measured: {p:#}"
    );
    // Deliveries are stored again.
    send(&client, &server.base, &json!({"n": 3})).await;
    store.close().await;
    server.stop().await;
    pg.drop_db().await.expect("drop test database");
}
