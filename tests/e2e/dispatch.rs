//! Dispatch against a running server: signed events in, actions run through real plugins to
//! a local HTTP receiver that fails on purpose; retries, back-off, `Retry-After`, dead letters,
//! replays, order keys and concurrency limits, and the story `hookwise logs` tells.

use std::time::{Duration, Instant, SystemTime};

use hookwise::model::{EventId, ExecutionStatus};
use hookwise::store::{DeadLetterFilter, GroupCommitSettings, Store};
use hookwise::verify::{Provider, VerifyOptions};
use serde_json::{Value, json};

use crate::support::{Answer, Receiver, Server, TempPostgres, server, wasm};

pub const SECRET: &str = "dispatch-test-secret";

/// Config of a test server: plain HTTP on a random port, SQLite in `dir`, source `gh`
/// (GitHub), the `relay` example plugin granted `receiver`, and `rules`.
pub fn config_text(receiver: &Receiver, plugin_extra: &str) -> String {
    config_with_store(receiver, plugin_extra, "sqlite://hookwise.db")
}

pub fn config_with_store(receiver: &Receiver, plugin_extra: &str, store: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: \"{store}\"\n\
         rules: rules.yaml\n\
         dispatch: {{ workers: 8, lease: 5s }}\n\
         sources:\n  - {{ id: gh, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         plugins:\n  - name: relay\n    path: {}\n    allow: {{ http: [\"http://{}\"] }}\n{plugin_extra}",
        wasm("relay").display(),
        receiver.addr
    )
}

/// A server in this process with `config` and `rules`, the `gh` secret in its environment.
pub async fn start(config: &str, rules: &str) -> Server {
    server(config)
        .file("rules.yaml", rules)
        .env("GH_SECRET", SECRET)
        .start()
        .await
}

/// POSTs a GitHub-signed push event; returns its event id.
pub async fn send(client: &reqwest::Client, base: &str, payload: &Value) -> EventId {
    let resp = post(client, base, payload).await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let answer: Value = resp.json().await.unwrap();
    answer["event_id"].as_str().unwrap().parse().unwrap()
}

/// POSTs a GitHub-signed push event to source `gh`; returns the answer, whatever it is.
pub async fn post(client: &reqwest::Client, base: &str, payload: &Value) -> reqwest::Response {
    let url = format!("{base}/hooks/gh");
    let body = serde_json::to_vec(payload).unwrap();
    let signed = hookwise::verify::sign_event(
        Provider::Github,
        SECRET,
        &VerifyOptions::default(),
        "POST",
        &url,
        &body,
        SystemTime::now(),
        Some("push"),
    )
    .unwrap();
    let mut req = client
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

/// Waits until every execution of `event` is finished (succeeded or dead) and there are
/// `expected` of them.
pub async fn wait_done(store: &Store, event: EventId, expected: usize, limit: Duration) {
    let start = Instant::now();
    loop {
        let xs = store.executions_for_event(event).await.unwrap();
        if xs.len() == expected
            && xs
                .iter()
                .all(|x| matches!(x.status, ExecutionStatus::Succeeded | ExecutionStatus::Dead))
        {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "event {event} not done after {limit:?}: {xs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn forward_rule(receiver: &Receiver, extra: &str) -> String {
    format!(
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}\" }}\n{extra}",
        receiver.url("/hook")
    )
}

const FAST_RETRY: &str = "        retry: { attempts: 4, backoff: 100ms, max_backoff: 1s }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retried_twice_then_succeeded_and_logs_tell_the_whole_story() {
    let receiver = Receiver::start().await;
    receiver.answer([Answer::status(503), Answer::status(502)]);
    let server = start(
        &config_text(&receiver, ""),
        &forward_rule(&receiver, FAST_RETRY),
    )
    .await;
    let client = reqwest::Client::new();
    let event = send(
        &client,
        &server.base,
        &json!({"ref": "refs/heads/main", "n": 1}),
    )
    .await;
    let store = server.store().await;
    wait_done(&store, event, 1, Duration::from_secs(30)).await;

    let xs = store.executions_for_event(event).await.unwrap();
    assert_eq!(xs[0].status, ExecutionStatus::Succeeded);
    assert_eq!(xs[0].attempts, 3);
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    // Every attempt carried the same idempotency key: the execution's.
    assert!(
        seen.iter()
            .all(|s| s.header("idempotency-key") == Some(xs[0].idempotency_key.as_str())),
        "{seen:?}"
    );
    assert_eq!(seen[0].json()["n"], 1);
    assert_eq!(seen[0].path, "/hook");
    // Back-off: at least half of 100 ms, then of 200 ms (equal jitter).
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(50));
    assert!(seen[2].at - seen[1].at >= Duration::from_millis(100));

    let (code, text) = server.cli(&["logs", &event.to_string()]);
    assert_eq!(code, 0);
    for needle in [
        "delivery attempts:",
        "accepted 200",
        "matched      forward",
        "forward action 0 (relay)  generation 0  succeeded  3 attempts",
        "attempt 1",
        "retryable",
        "receiver answered 503",
        "receiver answered 502",
        "attempt 3",
        "succeeded",
        &format!("http POST {} -> 503", receiver.url("/hook")),
        &format!("http POST {} -> 200", receiver.url("/hook")),
        "log info: POST",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let (code, json_text) = server.cli(&["logs", &event.to_string(), "--json"]);
    assert_eq!(code, 0);
    let story: Value = serde_json::from_str(&json_text).unwrap();
    let attempts = story["executions"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["outcome"], "retryable");
    assert_eq!(attempts[2]["outcome"], "succeeded");
    assert_eq!(attempts[2]["http_calls"][0]["status"], 200);
    assert_eq!(
        story["event"]["match_trace"]["matched"][0]["rule"],
        "forward"
    );
    store.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fatal_and_exhausted_actions_become_dead_letters_and_replay_runs_them_again() {
    let receiver = Receiver::start().await;
    // Event 1: a fatal 400. Event 2: 503 until attempts run out (4).
    receiver.answer([Answer::status(400)]);
    let server = start(
        &config_text(&receiver, ""),
        &forward_rule(&receiver, FAST_RETRY),
    )
    .await;
    let client = reqwest::Client::new();
    let store = server.store().await;
    let fatal = send(&client, &server.base, &json!({"n": "fatal"})).await;
    wait_done(&store, fatal, 1, Duration::from_secs(30)).await;
    receiver.answer([
        Answer::status(503),
        Answer::status(503),
        Answer::status(503),
        Answer::status(503),
    ]);
    let exhausted = send(&client, &server.base, &json!({"n": "exhausted"})).await;
    wait_done(&store, exhausted, 1, Duration::from_secs(30)).await;

    let fatal_x = &store.executions_for_event(fatal).await.unwrap()[0];
    assert_eq!(
        (fatal_x.status, fatal_x.attempts),
        (ExecutionStatus::Dead, 1)
    );
    let exhausted_x = &store.executions_for_event(exhausted).await.unwrap()[0];
    assert_eq!(
        (exhausted_x.status, exhausted_x.attempts),
        (ExecutionStatus::Dead, 4)
    );
    let (code, list) = server.cli(&["dead-letters", "list", "--json"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&list).unwrap();
    let reasons: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{list}");
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("fatal: ") && r.contains("400"))
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("gave up after 4 attempts"))
    );

    // A dry run changes nothing.
    let (code, out) = server.cli(&["dead-letters", "retry", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("would plan").count(), 2, "{out}");
    assert_eq!(
        store
            .list_dead_letters(&DeadLetterFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        2
    );
    // The receiver is fixed: retrying the dead letters runs both again, as generation 1.
    let before = receiver.seen().len();
    let (code, out) = server.cli(&["dead-letters", "retry"]);
    assert_eq!(code, 0, "{out}");
    wait_done(&store, fatal, 2, Duration::from_secs(30)).await;
    wait_done(&store, exhausted, 2, Duration::from_secs(30)).await;
    for ev in [fatal, exhausted] {
        let xs = store.executions_for_event(ev).await.unwrap();
        assert_eq!(xs[1].generation, 1);
        assert_eq!(xs[1].status, ExecutionStatus::Succeeded);
        assert_ne!(xs[1].idempotency_key, xs[0].idempotency_key);
    }
    assert_eq!(receiver.seen().len(), before + 2);
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

    // Replaying an event (all its rules) and one execution each plan one more generation.
    let (code, out) = server.cli(&["replay", &fatal.to_string()]);
    assert_eq!(code, 0, "{out}");
    wait_done(&store, fatal, 3, Duration::from_secs(30)).await;
    let first = store.executions_for_event(exhausted).await.unwrap()[0].id;
    let (code, out) = server.cli(&["replay", "--execution", &first.to_string()]);
    assert_eq!(code, 0, "{out}");
    wait_done(&store, exhausted, 3, Duration::from_secs(30)).await;
    assert_eq!(receiver.seen().len(), before + 4);
    // Unknown ids and rules that do not match are clear errors.
    let (code, _) = server.cli(&["replay", &EventId::new().to_string()]);
    assert_eq!(code, 1);
    let (code, _) = server.cli(&["replay", &fatal.to_string(), "--rule", "nope"]);
    assert_eq!(code, 1);
    let (code, _) = server.cli(&["replay", "not-an-id"]);
    assert_eq!(code, 2);
    store.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_after_from_the_receiver_is_honoured() {
    let receiver = Receiver::start().await;
    receiver.answer([Answer::status(429).header("retry-after", "2")]);
    let server = start(
        &config_text(&receiver, ""),
        &forward_rule(&receiver, FAST_RETRY),
    )
    .await;
    let client = reqwest::Client::new();
    let store = server.store().await;
    let event = send(&client, &server.base, &json!({"n": 1})).await;
    wait_done(&store, event, 1, Duration::from_secs(30)).await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2);
    // 2 s asked for, where the policy alone would have waited 50-100 ms.
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(2),
        "{:?}",
        seen[1].at - seen[0].at
    );
    store.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_key_runs_one_at_a_time_in_arrival_order() {
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(30));
    let rules = format!(
        "{}        order_key: \"{{{{ payload.repo }}}}\"\n",
        forward_rule(&receiver, FAST_RETRY)
    );
    let server = start(&config_text(&receiver, ""), &rules).await;
    let client = reqwest::Client::new();
    let store = server.store().await;
    let mut events = Vec::new();
    for n in 0..12 {
        let repo = if n % 3 == 0 { "other" } else { "one" };
        events.push(send(&client, &server.base, &json!({"repo": repo, "n": n})).await);
    }
    for ev in &events {
        wait_done(&store, *ev, 1, Duration::from_secs(60)).await;
    }
    let seen = receiver.seen();
    let order = |repo: &str| -> Vec<i64> {
        seen.iter()
            .filter(|s| s.json()["repo"] == repo)
            .map(|s| s.json()["n"].as_i64().unwrap())
            .collect()
    };
    let one = order("one");
    let mut sorted = one.clone();
    sorted.sort();
    assert_eq!(one, sorted, "repo one ran out of order: {one:?}");
    let other = order("other");
    let mut sorted = other.clone();
    sorted.sort();
    assert_eq!(other, sorted, "repo other ran out of order: {other:?}");
    assert_eq!(one.len() + other.len(), 12);
    // Within one key, never two at once: each request starts after the previous one ended,
    // so at least the receiver's 30 ms after the previous one arrived. Two keys may overlap
    // each other, never more.
    for repo in ["one", "other"] {
        let arrivals: Vec<Instant> = seen
            .iter()
            .filter(|s| s.json()["repo"] == repo)
            .map(|s| s.at)
            .collect();
        for pair in arrivals.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_millis(30),
                "repo {repo}: a request came {:?} after the one before it",
                pair[1] - pair[0]
            );
        }
    }
    assert!(
        receiver.max_in_flight() <= 2,
        "{}",
        receiver.max_in_flight()
    );
    store.close().await;
    server.stop().await;
}

/// The config lines of a plugin's concurrency limit and of an action's (empty for none).
fn limits(plugin: Option<u32>, action: Option<u32>) -> (String, String) {
    (
        plugin
            .map(|n| format!("    limits: {{ concurrency: {n} }}\n"))
            .unwrap_or_default(),
        action
            .map(|n| format!("        concurrency: {n}\n"))
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_limits_bound_running_actions() {
    // The last case is the control: without limits, more than 3 run at once.
    for (plugin_limit, rule_limit, expected) in
        [(Some(2), None, 2), (None, Some(3), 3), (None, None, 8)]
    {
        let receiver = Receiver::start().await;
        receiver.set_delay(Duration::from_millis(150));
        let (plugin_extra, rule_extra) = limits(plugin_limit, rule_limit);
        let server = start(
            &config_text(&receiver, &plugin_extra),
            &forward_rule(&receiver, &rule_extra),
        )
        .await;
        let client = reqwest::Client::new();
        let store = server.store().await;
        let mut events = Vec::new();
        for n in 0..12 {
            events.push(send(&client, &server.base, &json!({"n": n})).await);
        }
        for ev in &events {
            wait_done(&store, *ev, 1, Duration::from_secs(60)).await;
        }
        assert_eq!(receiver.seen().len(), 12);
        // 8 workers would run 8 at once; the limit holds them to `expected`.
        assert!(
            receiver.max_in_flight() <= expected,
            "limit {expected}, saw {}",
            receiver.max_in_flight()
        );
        if plugin_limit.is_none() && rule_limit.is_none() {
            assert!(receiver.max_in_flight() > 3, "{}", receiver.max_in_flight());
        }
        store.close().await;
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_postgres_store_run_each_action_once() {
    let pg = TempPostgres::create()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(20));
    let config = config_with_store(&receiver, "", &pg.url);
    let rules = forward_rule(&receiver, FAST_RETRY);
    let (a, b) = (start(&config, &rules).await, start(&config, &rules).await);
    let client = reqwest::Client::new();
    let mut events = Vec::new();
    for n in 0..40 {
        let node = if n % 2 == 0 { &a } else { &b };
        events.push(send(&client, &node.base, &json!({"n": n})).await);
    }
    let store = Store::open(&pg.url, &a.dir, GroupCommitSettings::default())
        .await
        .unwrap();
    for ev in &events {
        wait_done(&store, *ev, 1, Duration::from_secs(60)).await;
    }
    let mut ns: Vec<i64> = receiver
        .seen()
        .iter()
        .map(|s| s.json()["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(
        ns,
        (0..40).collect::<Vec<_>>(),
        "each action ran exactly once"
    );
    store.close().await;
    a.stop().await;
    b.stop().await;
    pg.drop_db().await.unwrap();
}

/// Three nodes (in this process) with `config` (which names their one PostgreSQL store) and
/// `rules`.
async fn three_nodes(config: &str, rules: &str) -> Vec<Server> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(start(config, rules).await);
    }
    nodes
}

/// Sends `payloads` round-robin to `nodes` (as a load balancer would), then waits until each
/// event's one execution is finished; stops the nodes.
async fn run_on_nodes(pg: &TempPostgres, nodes: Vec<Server>, payloads: &[Value]) {
    let client = reqwest::Client::new();
    let mut events = Vec::new();
    for (n, payload) in payloads.iter().enumerate() {
        events.push(send(&client, &nodes[n % nodes.len()].base, payload).await);
    }
    let store = Store::open(&pg.url, &nodes[0].dir, GroupCommitSettings::default())
        .await
        .unwrap();
    for ev in &events {
        wait_done(&store, *ev, 1, Duration::from_secs(60)).await;
    }
    store.close().await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_one_postgres_store_hold_concurrency_limits_together() {
    // 3 nodes of 8 workers would run up to 24 at once; each limit counts over all of them.
    // The last case is the control: without limits, more than 3 run at once.
    for (plugin_limit, rule_limit, expected) in
        [(Some(2), None, 2), (None, Some(3), 3), (None, None, 24)]
    {
        let pg = TempPostgres::create()
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        let receiver = Receiver::start().await;
        receiver.set_delay(Duration::from_millis(150));
        let (plugin_extra, rule_extra) = limits(plugin_limit, rule_limit);
        let nodes = three_nodes(
            &config_with_store(&receiver, &plugin_extra, &pg.url),
            &forward_rule(&receiver, &rule_extra),
        )
        .await;
        let payloads: Vec<Value> = (0..18).map(|n| json!({"n": n})).collect();
        run_on_nodes(&pg, nodes, &payloads).await;
        let mut ns: Vec<i64> = receiver
            .seen()
            .iter()
            .map(|s| s.json()["n"].as_i64().unwrap())
            .collect();
        ns.sort();
        assert_eq!(ns, (0..18).collect::<Vec<_>>(), "each action ran once");
        assert!(
            receiver.max_in_flight() <= expected,
            "limit {expected} over three nodes, saw {}",
            receiver.max_in_flight()
        );
        if plugin_limit.is_none() && rule_limit.is_none() {
            assert!(receiver.max_in_flight() > 3, "{}", receiver.max_in_flight());
        }
        pg.drop_db().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_one_postgres_store_keep_order_keys() {
    let pg = TempPostgres::create()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(30));
    let rules = format!(
        "{}        order_key: \"{{{{ payload.repo }}}}\"\n",
        forward_rule(&receiver, FAST_RETRY)
    );
    let nodes = three_nodes(&config_with_store(&receiver, "", &pg.url), &rules).await;
    // Consecutive events of a key arrive at different nodes.
    let payloads: Vec<Value> = (0..24)
        .map(|n| json!({"repo": if n % 4 == 0 { "other" } else { "one" }, "n": n}))
        .collect();
    run_on_nodes(&pg, nodes, &payloads).await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 24);
    for repo in ["one", "other"] {
        let of_repo: Vec<_> = seen.iter().filter(|s| s.json()["repo"] == repo).collect();
        let order: Vec<i64> = of_repo
            .iter()
            .map(|s| s.json()["n"].as_i64().unwrap())
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "repo {repo} ran out of order");
        // Never two of a key at once, whichever node runs them.
        for pair in of_repo.windows(2) {
            assert!(
                pair[1].at - pair[0].at >= Duration::from_millis(30),
                "repo {repo}: a request came {:?} after the one before it",
                pair[1].at - pair[0].at
            );
        }
    }
    assert!(
        receiver.max_in_flight() <= 2,
        "{}",
        receiver.max_in_flight()
    );
    pg.drop_db().await.unwrap();
}
