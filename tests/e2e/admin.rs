//! The admin listener against a running server: bearer-token auth, the JSON API (the same
//! story as `hookwise logs --json`, paging, filters, replays, reloads), `/metrics` parsed with a
//! strict Prometheus text-format parser, and JSON logs that never show a secret.

use std::collections::BTreeMap;
use std::time::Duration;

use hookwise::model::ExecutionStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::dispatch::{config_text, send, start, wait_done};
use crate::support::{Answer, Receiver, Server, server};

const FAST_RETRY: &str = "        retry: { attempts: 3, backoff: 100ms, max_backoff: 1s }\n";

fn forward_rule(receiver: &Receiver) -> String {
    format!(
        "rules:\n  - id: forward\n    description: relay pushes\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}\" }}\n{FAST_RETRY}",
        receiver.url("/hook")
    )
}

/// The token the server generated on first run.
struct Admin {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    fn new(server: &Server) -> Admin {
        Admin {
            client: reqwest::Client::new(),
            base: server.admin.clone(),
            token: server.admin_token(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /api/v1/plugins`' list once no plugin is compiling any more.
    async fn plugins_compiled(&self) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (status, plugins) = self.get("/api/v1/plugins").await;
            assert_eq!(status, 200, "{plugins}");
            let list = plugins["plugins"].as_array().unwrap().clone();
            if list.iter().all(|p| p["status"] != "compiling") {
                return list;
            }
            assert!(std::time::Instant::now() < deadline, "{list:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metrics(&self) -> Metrics {
        let r = self
            .client
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        parse_prometheus(&r.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_routes_need_the_bearer_token_in_the_header() {
    let receiver = Receiver::start().await;
    let server = start(&config_text(&receiver, ""), &forward_rule(&receiver)).await;
    let token = server.admin_token();
    assert_eq!(token.len(), 64, "32 random bytes, hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = server.dir.join(hookwise::admin::token::TOKEN_FILE);
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let client = reqwest::Client::new();
    let admin = &server.admin;

    // Health checks answer anyone.
    for path in ["/healthz", "/readyz"] {
        let r = client.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }

    let refused = |r: reqwest::Response, code: &'static str| async move {
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["detail"].is_string());
    };
    for path in [
        "/api/v1/events",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/no-such-route",
        "/anything",
    ] {
        // No token.
        let r = client.get(format!("{admin}{path}")).send().await.unwrap();
        refused(r, "unauthorized").await;
        // A wrong token, including the right one's prefix, and another scheme.
        for wrong in [
            format!("Bearer {}", &token[..63]),
            "Bearer ".to_string(),
            "Bearer x".to_string(),
            format!("Basic {token}"),
            token.clone(),
        ] {
            let r = client
                .get(format!("{admin}{path}"))
                .header("authorization", wrong)
                .send()
                .await
                .unwrap();
            refused(r, "unauthorized").await;
        }
        // The right token in the query string, with or without the header.
        for param in ["token", "access_token", "TOKEN"] {
            let r = client
                .get(format!("{admin}{path}?{param}={token}"))
                .send()
                .await
                .unwrap();
            refused(r, "token_in_query").await;
            let r = client
                .get(format!("{admin}{path}?{param}={token}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            refused(r, "token_in_query").await;
        }
    }
    // POSTs too.
    let r = client
        .post(format!("{admin}/api/v1/rules/reload"))
        .send()
        .await
        .unwrap();
    refused(r, "unauthorized").await;

    // The admin routes do not exist on the ingress listener, token or not.
    for path in ["/api/v1/events", "/metrics", "/api/v1/openapi.json"] {
        let r = client
            .get(format!("{}{path}", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path} on the ingress port");
    }
    let r = client
        .post(format!("{}/api/v1/rules/reload", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());

    // With the token: answers, and the served document is the committed one.
    let r = client
        .get(format!("{admin}/api/v1/openapi.json"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let served: Value = r.json().await.unwrap();
    let committed: Value = serde_json::from_str(hookwise::admin::OPENAPI).unwrap();
    assert_eq!(served, committed);
    let r = client
        .get(format!("{admin}/api/v1/no-such-route"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Bad input is a 400 with a reason, never a panic.
    let a = Admin::new(&server);
    for path in [
        "/api/v1/events?limit=0",
        "/api/v1/events?limit=abc",
        "/api/v1/events?limit=1001",
        "/api/v1/events?status=weird",
        "/api/v1/events?outcome=planned",
        "/api/v1/events?since=yesterday",
        "/api/v1/events?cursor=x",
        "/api/v1/events?bogus=1",
        "/api/v1/events?source=a&source=b",
        "/api/v1/executions?status=done",
        "/api/v1/executions?cursor=12_nope",
        "/api/v1/executions?event_id=123",
        "/api/v1/delivery-attempts?verdict=maybe",
        "/api/v1/dead-letters?until=%ff",
        "/api/v1/events/not-a-uuid",
        "/api/v1/executions/not-a-uuid",
    ] {
        let (status, body) = a.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["code"], "bad_request", "{path}");
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    let r = client
        .post(format!("{admin}/api/v1/dead-letters/retry"))
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (status, _) = a
        .post(
            "/api/v1/dead-letters/retry",
            json!({"dry_run": true, "surprise": 1}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = a
        .get(&format!("/api/v1/events/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404, "{body}");
    server.stop().await;
}

/// Backpressure (docs/dispatch.md): one worker, held 1.5 s by a slow receiver, takes at most
/// 4 executions ahead (handed to it or claimed), so from the 6th event on this node has work
/// no worker has started. With
/// `backlog_limit: 1`, the next arrival waits its full `backlog_wait`, is stored anyway, and
/// the wait shows on `/metrics`. With the limit off, the same arrivals never wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn arrivals_wait_while_the_workers_are_behind_and_are_stored_anyway() {
    for limit in [1, 0] {
        let receiver = Receiver::start().await;
        receiver.set_delay(Duration::from_millis(1_500));
        let config = config_text(&receiver, "").replace(
            "dispatch: { workers: 8, lease: 5s }",
            &format!(
                "dispatch: {{ workers: 1, lease: 5s, backlog_limit: {limit}, backlog_wait: 400ms }}"
            ),
        );
        assert!(config.contains("backlog_limit"), "{config}");
        let server = start(&config, &forward_rule(&receiver)).await;
        let a = Admin::new(&server);
        // The counts below assume a worker that claims from the start: not one whose plugin
        // is still compiling (a first start), whose end would shrink the backlog mid-wait.
        a.plugins_compiled().await;
        let client = reqwest::Client::new();
        let mut events = Vec::new();
        for n in 0..6 {
            events.push(send(&client, &server.base, &json!({"n": n})).await);
        }
        let sent = std::time::Instant::now();
        events.push(send(&client, &server.base, &json!({"n": 6})).await);
        let took = sent.elapsed();
        let m = a.metrics().await;
        let waits = m.value("hookwise_backlog_waits_total", &[]);
        let waited = m.value("hookwise_backlog_wait_seconds_total", &[]);
        if limit == 1 {
            assert!(waits >= 1.0, "{waits}");
            assert!(waited >= 0.4, "{waited}");
            assert!(took >= Duration::from_millis(400), "{took:?}");
        } else {
            assert_eq!(waits, 0.0);
            assert_eq!(waited, 0.0);
        }
        // Nothing was refused or lost: every event was stored, and each runs once.
        let store = server.store().await;
        for ev in &events {
            assert!(store.get_event(*ev).await.unwrap().is_some());
        }
        if limit == 1 {
            for ev in &events {
                wait_done(&store, *ev, 1, Duration::from_secs(60)).await;
            }
            assert_eq!(receiver.answered(), 7, "{:#?}", receiver.seen());
        }
        store.close().await;
        server.stop().await;
    }
}

/// An arriving event's executions are stored leased to the node and handed straight to its
/// workers, without a claim, unless something must be counted or waited on first: a
/// concurrency limit (on the action or its plugin) or an order key. Either way each runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn arriving_executions_go_straight_to_the_workers_unless_limited_or_ordered() {
    let cases = [
        ("", "", true),
        ("        concurrency: 2\n", "", false),
        ("", "    limits: { concurrency: 2 }\n", false),
        ("        order_key: \"{{ payload.n }}\"\n", "", false),
    ];
    for (action_extra, plugin_extra, handed) in cases {
        let receiver = Receiver::start().await;
        let rules = format!("{}{action_extra}", forward_rule(&receiver));
        let server = start(&config_text(&receiver, plugin_extra), &rules).await;
        let a = Admin::new(&server);
        // A plugin still compiling cannot take work at once: its executions wait for a claim.
        a.plugins_compiled().await;
        let client = reqwest::Client::new();
        let mut events = Vec::new();
        for n in 0..6 {
            events.push(send(&client, &server.base, &json!({"n": n})).await);
        }
        let store = server.store().await;
        for ev in &events {
            wait_done(&store, *ev, 1, Duration::from_secs(60)).await;
            let xs = store.executions_for_event(*ev).await.unwrap();
            assert_eq!(xs[0].status, ExecutionStatus::Succeeded, "{xs:#?}");
            assert_eq!(xs[0].attempts, 1, "{xs:#?}");
        }
        assert_eq!(receiver.answered(), 6, "{:#?}", receiver.seen());
        let m = a.metrics().await;
        let expected = if handed { 6.0 } else { 0.0 };
        assert_eq!(
            m.value("hookwise_handed_executions_total", &[]),
            expected,
            "action `{action_extra}`, plugin `{plugin_extra}`"
        );
        store.close().await;
        server.stop().await;
    }
}

/// `since` takes the one duration grammar on both the API and the CLI, `7d` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn since_takes_days_and_compound_ages_on_the_api_and_the_cli() {
    let receiver = Receiver::start().await;
    let server = start(&config_text(&receiver, ""), &forward_rule(&receiver)).await;
    let a = Admin::new(&server);
    let client = reqwest::Client::new();
    let event = send(&client, &server.base, &json!({"ref": "refs/heads/main"})).await;

    for since in ["7d", "1h30m", "2d12h", "90000ms"] {
        let (status, events) = a.get(&format!("/api/v1/events?since={since}")).await;
        assert_eq!(status, 200, "{since}: {events}");
        assert_eq!(events["items"][0]["id"], event.to_string(), "{since}");
        let (code, text) = server.cli(&["events", "--since", since, "--json"]);
        assert_eq!(code, 0, "{since}");
        let listed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(listed[0]["id"], event.to_string(), "{since}: {listed}");
    }
    let (status, body) = a.get("/api/v1/events?since=1h2d").await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("largest first"), "{detail}");
    let (code, _) = server.cli(&["events", "--since", "1.5h"]);
    assert_eq!(code, 2, "a bad age is a usage error");

    // The CLI filters by type and by an upper bound on arrival, as the API does.
    let listed = |args: &[&str]| {
        let mut all = vec!["events", "--json"];
        all.extend_from_slice(args);
        let (code, text) = server.cli(&all);
        assert_eq!(code, 0, "{args:?}: {text}");
        let listed: Value = serde_json::from_str(&text).unwrap();
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let only = vec![event.to_string()];
    assert_eq!(listed(&["--event-type", "push"]), only);
    assert_eq!(
        listed(&["--event-type", "pull_request"]),
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&["--until", "1h"]),
        Vec::<String>::new(),
        "arrived within the hour"
    );
    assert_eq!(listed(&["--until", "2099-01-01T00:00:00Z"]), only);
    let (code, _) = server.cli(&["events", "--until", "yesterday"]);
    assert_eq!(code, 2, "a bad time is a usage error");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_endpoint_tells_the_same_story_as_logs_json_and_metrics_move() {
    let receiver = Receiver::start().await;
    receiver.answer([Answer::status(503), Answer::status(503)]);
    let server = start(&config_text(&receiver, ""), &forward_rule(&receiver)).await;
    let a = Admin::new(&server);
    let before = a.metrics().await;

    let client = reqwest::Client::new();
    let event = send(&client, &server.base, &json!({"ref": "refs/heads/main"})).await;
    // A bad signature and an unknown source, for the rejection counters.
    let r = client
        .post(format!("{}/hooks/gh", server.base))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("{}/hooks/nope", server.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let store = server.store().await;
    wait_done(&store, event, 1, Duration::from_secs(30)).await;

    // The story: the same JSON as `hookwise logs --json`.
    let (status, story) = a.get(&format!("/api/v1/events/{event}")).await;
    assert_eq!(status, 200, "{story}");
    let (code, text) = server.cli(&["logs", &event.to_string(), "--json"]);
    assert_eq!(code, 0);
    let cli_story: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(story, cli_story);
    assert_eq!(story["outcome"], "succeeded");
    let attempts = story["executions"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["outcome"], "retryable");
    assert_eq!(attempts[1]["outcome"], "retryable");
    assert_eq!(attempts[2]["outcome"], "succeeded");
    assert_eq!(attempts[2]["http_calls"][0]["status"], 200);
    assert_eq!(story["delivery_attempts"][0]["verdict"], "accepted");
    assert_eq!(
        story["event"]["match_trace"]["matched"][0]["rule"],
        "forward"
    );

    // The lists, filtered.
    let (_, xs) = a
        .get(&format!(
            "/api/v1/executions?event_id={event}&status=succeeded&plugin=relay&rule=forward"
        ))
        .await;
    assert_eq!(xs["items"].as_array().unwrap().len(), 1, "{xs}");
    let x_id = xs["items"][0]["id"].as_str().unwrap().to_string();
    let (_, none) = a.get("/api/v1/executions?status=dead").await;
    assert_eq!(none["items"], json!([]));
    assert_eq!(none["next_cursor"], Value::Null);
    let (status, one) = a.get(&format!("/api/v1/executions/{x_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one, story["executions"][0]);
    let (_, rejected) = a
        .get("/api/v1/delivery-attempts?verdict=rejected&source=gh")
        .await;
    assert_eq!(rejected["items"].as_array().unwrap().len(), 1, "{rejected}");
    assert!(
        rejected["items"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid_signature")
    );
    let (_, mine) = a
        .get(&format!("/api/v1/delivery-attempts?event_id={event}"))
        .await;
    assert_eq!(mine["items"], story["delivery_attempts"]);
    let (_, events) = a
        .get("/api/v1/events?source=gh&status=planned&since=1h")
        .await;
    assert_eq!(events["items"][0]["id"], event.to_string());

    // The metrics moved.
    let after = a.metrics().await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(
        grew(
            "hookwise_deliveries_total",
            &[("source", "gh"), ("verdict", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        grew(
            "hookwise_deliveries_total",
            &[("source", "gh"), ("verdict", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        grew(
            "hookwise_deliveries_total",
            &[("source", "_unknown"), ("verdict", "rejected")]
        ),
        1.0
    );
    assert_eq!(grew("hookwise_events_total", &[("source", "gh")]), 1.0);
    assert_eq!(
        grew(
            "hookwise_executions_total",
            &[("plugin", "relay"), ("outcome", "retryable")]
        ),
        2.0
    );
    assert_eq!(
        grew(
            "hookwise_executions_total",
            &[("plugin", "relay"), ("outcome", "succeeded")]
        ),
        1.0
    );
    assert_eq!(grew("hookwise_dead_letters_total", &[]), 0.0);
    assert_eq!(grew("hookwise_ack_latency_seconds_count", &[]), 3.0);
    assert_eq!(grew("hookwise_ack_to_done_seconds_count", &[]), 1.0);
    assert!(
        after.value("hookwise_ack_to_done_seconds_sum", &[]) >= 0.15,
        "two back-offs"
    );
    assert_eq!(
        grew(
            "hookwise_plugin_call_duration_seconds_count",
            &[("plugin", "relay")]
        ),
        3.0
    );
    assert!(grew("hookwise_group_commit_batch_size_count", &[]) >= 1.0);
    assert!(grew("hookwise_group_commit_batch_size_sum", &[]) >= 3.0);
    assert!(after.value("hookwise_group_commit_batch_size_max", &[]) >= 1.0);
    for queue in ["events_pending", "executions_pending", "executions_running"] {
        assert_eq!(
            after.value("hookwise_queue_depth", &[("queue", queue)]),
            0.0,
            "{queue}"
        );
    }
    store.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_replays_rules_and_plugins_through_the_api() {
    let receiver = Receiver::start().await;
    receiver.answer([Answer::status(400), Answer::status(400)]);
    let server = start(&config_text(&receiver, ""), &forward_rule(&receiver)).await;
    let a = Admin::new(&server);
    let client = reqwest::Client::new();
    let store = server.store().await;
    let mut events = Vec::new();
    for n in 0..3 {
        let e = send(&client, &server.base, &json!({"n": n})).await;
        wait_done(&store, e, 1, Duration::from_secs(30)).await;
        events.push(e);
    }

    // Paging: two pages of events, newest first, no overlap. (Of source `gh`: each dead letter
    // also became one of hookwise's own events, on source `hookwise`.)
    let (_, first) = a.get("/api/v1/events?source=gh&limit=2").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, second) = a
        .get(&format!("/api/v1/events?source=gh&limit=2&cursor={cursor}"))
        .await;
    let ids: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = events.iter().rev().map(ToString::to_string).collect();
    assert_eq!(ids, expected);
    assert_eq!(second["next_cursor"], Value::Null);
    // Each listed event says what became of it: two dead letters, one success.
    let outcomes: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|e| &e["outcome"])
        .collect();
    assert_eq!(
        outcomes,
        [&json!("succeeded"), &json!("dead"), &json!("dead")]
    );
    let (_, dead_story) = a.get(&format!("/api/v1/events/{}", events[0])).await;
    assert_eq!(dead_story["outcome"], "dead");
    assert_eq!(dead_story["event"]["status"], "planned");
    let (code, text) = server.cli(&["events", "--source", "gh"]);
    assert_eq!(code, 0);
    let last_words: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(last_words, ["succeeded", "dead", "dead"], "{text}");
    let (_, dead_only) = a.get("/api/v1/events?source=gh&outcome=dead").await;
    let dead_ids: Vec<&str> = dead_only["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(dead_ids, [events[1].to_string(), events[0].to_string()]);
    let (code, text) = server.cli(&["events", "--source", "gh", "--outcome", "dead", "--json"]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed, dead_only["items"]);
    let (code, _) = server.cli(&["events", "--outcome", "planned"]);
    assert_eq!(code, 2, "planned is a status, not an outcome");
    // The same for executions and delivery attempts (cursor of time and id).
    for list in ["executions", "delivery-attempts"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            // Delivery attempts of `gh`: hookwise's own events have theirs too.
            let only = if list == "delivery-attempts" {
                "source=gh&"
            } else {
                ""
            };
            let path = match &cursor {
                Some(c) => format!("/api/v1/{list}?{only}limit=2&cursor={c}"),
                None => format!("/api/v1/{list}?{only}limit=2"),
            };
            let (status, page) = a.get(&path).await;
            assert_eq!(status, 200, "{page}");
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["id"].clone()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 3, "{list}: {seen:?}");
        let unique: std::collections::BTreeSet<String> =
            seen.iter().map(|v| v.to_string()).collect();
        assert_eq!(unique.len(), 3, "{list}");
    }

    // Two dead letters (fatal 400s).
    let (_, dead) = a.get("/api/v1/dead-letters?rule=forward").await;
    assert_eq!(dead["items"].as_array().unwrap().len(), 2, "{dead}");
    assert!(
        dead["items"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("fatal")
    );
    let (_, dead_page) = a.get("/api/v1/dead-letters?limit=1").await;
    let c = dead_page["next_cursor"].as_str().unwrap();
    let (_, rest) = a
        .get(&format!("/api/v1/dead-letters?limit=1&cursor={c}"))
        .await;
    assert_ne!(rest["items"][0], dead_page["items"][0]);
    // A dry run plans nothing.
    let (status, dry) = a
        .post(
            "/api/v1/dead-letters/retry",
            json!({"rule": "forward", "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["planned"].as_array().unwrap().len(), 2);
    let (_, still) = a.get("/api/v1/dead-letters").await;
    assert_eq!(still["items"].as_array().unwrap().len(), 2);
    // A real retry runs both again (the receiver answers 200 now) as generation 1.
    let (status, done) = a.post("/api/v1/dead-letters/retry", json!({})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["planned"][0]["generation"], 1);
    for e in &events[..2] {
        wait_done(&store, *e, 2, Duration::from_secs(30)).await;
    }
    let (_, empty) = a.get("/api/v1/dead-letters").await;
    assert_eq!(empty["items"], json!([]));
    // The replays succeeded: the latest generation counts.
    let (_, now) = a.get("/api/v1/events?source=gh&limit=3").await;
    let outcomes: Vec<&Value> = now["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["outcome"])
        .collect();
    assert_eq!(outcomes, [&json!("succeeded"); 3], "{now}");

    // Replays of one event and one execution.
    let (status, r) = a
        .post(
            &format!("/api/v1/events/{}/replay", events[2]),
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(
        (status, r["planned"][0]["generation"].clone()),
        (StatusCode::OK, json!(1))
    );
    let (status, r) = a
        .post(
            &format!("/api/v1/events/{}/replay", events[2]),
            json!({"rule": "other"}),
        )
        .await;
    assert_eq!(status, 422, "{r}");
    let x = &store.executions_for_event(events[2]).await.unwrap()[0];
    let (status, r) = a
        .post(&format!("/api/v1/executions/{}/replay", x.id), json!({}))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["planned"][0]["replaces"], x.id.to_string());
    wait_done(&store, events[2], 2, Duration::from_secs(30)).await;
    let (status, _) = a
        .post(
            &format!("/api/v1/executions/{}/replay", uuid::Uuid::now_v7()),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);

    // Rules and their reload.
    let (_, rules) = a.get("/api/v1/rules").await;
    assert_eq!(rules["rules"][0]["id"], "forward");
    assert_eq!(rules["rules"][0]["sources"], json!(["gh"]));
    assert_eq!(rules["rules"][0]["events"], json!(["push"]));
    assert_eq!(rules["rules"][0]["line"], 2);
    assert!(
        rules["rules"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("rules.yaml")
    );
    assert_eq!(rules["status"]["rules"], 1);
    assert_eq!(rules["status"]["last_error"], Value::Null);
    let rules_file = server.dir.join("rules.yaml");
    let good = std::fs::read_to_string(&rules_file).unwrap();
    std::fs::write(&rules_file, "rules:\n  - id: broken\n    source: gh\n    events: [push]\n    actions:\n      - plugin: no-such-plugin\n").unwrap();
    let (status, failed) = a.post("/api/v1/rules/reload", json!({})).await;
    assert_eq!(status, 422, "{failed}");
    assert_eq!(failed["code"], "invalid_rules");
    let problems = failed["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().contains("no-such-plugin")),
        "{problems:?}"
    );
    let (_, kept) = a.get("/api/v1/rules").await;
    assert_eq!(kept["rules"][0]["id"], "forward", "the old rules stay");
    assert!(kept["status"]["last_error"]["problems"].is_array());
    std::fs::write(&rules_file, good.replace("id: forward", "id: forward2")).unwrap();
    let (status, ok) = a.post("/api/v1/rules/reload", json!({})).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["rules"], 1);
    let (_, now) = a.get("/api/v1/rules").await;
    assert_eq!(now["rules"][0]["id"], "forward2");

    // Plugins: the configured one is loaded with its limits and grants; built-ins come from
    // the components embedded in the binary (compiled in the background on a first start).
    let list = a.plugins_compiled().await;
    let relay = list.iter().find(|p| p["name"] == "relay").unwrap();
    assert_eq!(relay["status"], "ready");
    assert_eq!(
        relay["allow"]["http"],
        json!([format!("http://{}", receiver.addr)])
    );
    assert_eq!(relay["limits"]["memory_bytes"], 64 << 20);
    assert_eq!(relay["sha256"].as_str().unwrap().len(), 64);
    let notify = list.iter().find(|p| p["name"] == "notify").unwrap();
    assert_eq!(notify["status"], "ready");
    assert_eq!(notify["sha256"].as_str().unwrap().len(), 64);

    let xs = store.executions_for_event(events[0]).await.unwrap();
    assert_eq!(
        xs.iter()
            .map(|x| (x.generation, x.status))
            .collect::<Vec<_>>(),
        vec![(0, ExecutionStatus::Dead), (1, ExecutionStatus::Succeeded)]
    );
    store.close().await;
    server.stop().await;
}

/// JSON logs of the real binary carry event ids and never a secret: not the webhook secret,
/// not the admin token, whatever requests come in.
#[tokio::test]
async fn json_logs_carry_ids_and_never_a_secret() {
    const WEBHOOK_SECRET: &str = "s3cr3t-webhook-value-7f1c";
    const ADMIN_TOKEN: &str = "adm1n-token-value-93be-4c1d-a07e-5f2b";
    let server = server(
        "listen: 127.0.0.1:0\ninsecure_http: true\n\
         admin: { listen: 127.0.0.1:0, token: \"${env:ADMIN_TOKEN}\" }\n\
         sources:\n  - { id: gh, provider: github, secrets: [\"${env:GH_SECRET}\"] }\n",
    )
    .env("GH_SECRET", WEBHOOK_SECRET)
    .env("ADMIN_TOKEN", ADMIN_TOKEN)
    .args(&["--log-format", "json", "--log", "debug"])
    .spawn()
    .await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let admin = server.admin.clone();

    // A signed event with the secret in a header and in its payload, a bad signature.
    let url = format!("{base}/hooks/gh");
    let body = format!(r#"{{"ref":"refs/heads/main","note":"{WEBHOOK_SECRET}"}}"#).into_bytes();
    let signed = hookwise::verify::sign_event(
        hookwise::verify::Provider::Github,
        WEBHOOK_SECRET,
        &hookwise::verify::VerifyOptions::default(),
        "POST",
        &url,
        &body,
        std::time::SystemTime::now(),
        Some("push"),
    )
    .unwrap();
    let mut req = client
        .post(&url)
        .header("x-leak", WEBHOOK_SECRET)
        .body(body.clone());
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    let answer: Value = req.send().await.unwrap().json().await.unwrap();
    let event_id = answer["event_id"].as_str().expect("stored").to_string();
    let r = client
        .post(&url)
        .header("x-github-event", "push")
        .header("x-hub-signature-256", format!("sha256={WEBHOOK_SECRET}"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Admin calls with the right token, a wrong one, and the token in the query.
    let r = client
        .get(format!("{admin}/api/v1/events/{event_id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let story: Value = r.json().await.unwrap();
    assert_eq!(
        story["delivery_attempts"][0]["verdict"], "accepted",
        "{story}"
    );
    let r = client
        .get(format!("{admin}/api/v1/events?token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{admin}/metrics"))
        .bearer_auth(format!("{ADMIN_TOKEN}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The story shows neither the header nor the payload (stored as sent) with the secret.
    assert!(!story.to_string().contains(WEBHOOK_SECRET), "{story}");
    assert!(
        story["event"]["payload"]
            .as_str()
            .is_some_and(|p| p.contains(r#""note":"***""#)),
        "{story}"
    );

    let stderr = server.stop().await.stderr;
    assert!(!stderr.is_empty());
    assert!(
        !stderr.contains(WEBHOOK_SECRET),
        "the webhook secret leaked:\n{stderr}"
    );
    assert!(
        !stderr.contains(ADMIN_TOKEN),
        "the admin token leaked:\n{stderr}"
    );
    let mut stored_line = None;
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if v["fields"]["message"] == "event stored" {
            stored_line = Some(v);
        }
    }
    let stored = stored_line.unwrap_or_else(|| panic!("no `event stored` line:\n{stderr}"));
    assert_eq!(stored["fields"]["event"], event_id.as_str());
    assert_eq!(stored["fields"]["source"], "gh");
}

// ---- a strict parser of the Prometheus text exposition format (0.0.4) ----------------------

/// Label pairs, sorted by name.
type Labels = Vec<(String, String)>;

/// Samples by name and sorted labels.
struct Metrics {
    samples: BTreeMap<(String, Labels), f64>,
}

impl Metrics {
    /// The value of a sample; 0 when absent (a counter that has not moved yet).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut key: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        key.sort();
        self.samples
            .get(&(name.to_string(), key))
            .copied()
            .unwrap_or(0.0)
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `text`, panicking on anything the format does not allow: a sample without a TYPE
/// before it, a family declared twice, bad names, labels or values, duplicate samples,
/// histogram buckets that are not cumulative or that disagree with `_count`.
fn parse_prometheus(text: &str) -> Metrics {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_else(|| panic!("{at}"));
            let value = parts.next().unwrap_or_else(|| panic!("{at}")).to_string();
            assert!(is_name(name), "{at}");
            match kind {
                "HELP" => assert!(
                    helps.insert(name.into(), value).is_none(),
                    "HELP twice: {at}"
                ),
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"]
                            .contains(&value.as_str()),
                        "{at}"
                    );
                    assert!(
                        types.insert(name.into(), value).is_none(),
                        "TYPE twice: {at}"
                    );
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.starts_with('#'), "{at}");
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line
                    .rfind('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {at}"));
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close], &at),
                    &line[close + 1..],
                )
            }
            None => {
                let space = line.find(' ').unwrap_or_else(|| panic!("{at}"));
                (&line[..space], Vec::new(), &line[space..])
            }
        };
        assert!(is_name(name), "{at}");
        let mut fields = rest.trim_start_matches(' ').split(' ');
        let value = fields.next().unwrap_or_else(|| panic!("{at}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {at}")),
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp: {at}"));
        }
        assert!(fields.next().is_none(), "{at}");
        // The family this sample belongs to must have been declared.
        let family = [
            name,
            name.strip_suffix("_bucket").unwrap_or(""),
            name.strip_suffix("_sum").unwrap_or(""),
            name.strip_suffix("_count").unwrap_or(""),
        ]
        .into_iter()
        .find(|f| !f.is_empty() && types.contains_key(*f))
        .unwrap_or_else(|| panic!("sample of an undeclared family: {at}"));
        let kind = types[family].as_str();
        if kind == "counter" {
            assert!(value >= 0.0, "negative counter: {at}");
        }
        if name.ends_with("_bucket") && kind == "histogram" {
            assert!(
                labels.iter().any(|(k, _)| k == "le"),
                "bucket without le: {at}"
            );
        }
        assert!(
            samples.insert((name.to_string(), labels), value).is_none(),
            "duplicate sample: {at}"
        );
    }
    // Histograms: buckets cumulative, +Inf equal to _count.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), v) in &samples {
            if *name != format!("{family}_bucket") {
                continue;
            }
            let le = labels.iter().find(|(k, _)| k == "le").unwrap();
            let bound: f64 = if le.1 == "+Inf" {
                f64::INFINITY
            } else {
                le.1.parse().unwrap()
            };
            let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            series.entry(rest).or_default().push((bound, *v));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}: not cumulative"
            );
            let inf = buckets.last().unwrap();
            assert!(inf.0.is_infinite(), "{family}: no +Inf bucket");
            let count = samples[&(format!("{family}_count"), labels.clone())];
            assert_eq!(inf.1, count, "{family}: +Inf bucket != _count");
            assert!(samples.contains_key(&(format!("{family}_sum"), labels)));
        }
    }
    Metrics { samples }
}

fn parse_labels(text: &str, at: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(is_name(&name), "bad label name `{name}`: {at}");
        assert_eq!(chars.next(), Some('"'), "label value not quoted: {at}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?}: {at}"),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated label value: {at}"),
            }
        }
        assert!(
            out.iter().all(|(k, _): &(String, String)| *k != name),
            "label twice: {at}"
        );
        out.push((name, value));
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(c) => panic!("unexpected `{c}` after a label: {at}"),
        }
    }
    out.sort();
    out
}

/// A plugin compiles in the background and does not hold up the others: with an empty
/// compile cache, a plugin whose compile ends in an error (a core module without `_start`)
/// does not stop the server, the other plugin's action runs, the broken one's action waits
/// (not dead-lettered), and the API says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_that_fails_to_compile_in_the_background_holds_up_only_its_own_actions() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The smallest core module: valid WebAssembly, but no `_start` to run.
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x01\0\0\0").unwrap();
    let config = config_text(
        &receiver,
        &format!("  - name: broken\n    path: {}\n", broken.display()),
    );
    let rules = format!(
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n\
         \x20     - plugin: relay\n        with: {{ url: \"{}\" }}\n\
         \x20     - plugin: broken\n        with: {{}}\n",
        receiver.url("/hook")
    );
    let server = start(&config, &rules).await;
    let a = Admin::new(&server);
    let client = reqwest::Client::new();
    let event = send(&client, &server.base, &json!({"ref": "refs/heads/main"})).await;
    let store = server.store().await;

    // relay's action runs; broken's waits, planned and unclaimed.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let broken_status = loop {
        let (_, plugins) = a.get("/api/v1/plugins").await;
        let list = plugins["plugins"].as_array().unwrap().clone();
        let status = |name: &str| list.iter().find(|p| p["name"] == name).unwrap().clone();
        let xs = store.executions_for_event(event).await.unwrap();
        let relay_done = xs
            .iter()
            .any(|x| x.plugin == "relay" && x.status == ExecutionStatus::Succeeded);
        if relay_done && status("broken")["status"] == "unavailable" {
            break status("broken");
        }
        assert!(std::time::Instant::now() < deadline, "{list:#?}\n{xs:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = broken_status["reason"].as_str().unwrap();
    assert!(reason.contains("_start"), "{reason}");
    receiver.one();
    // Given time, the broken plugin's action is still waiting, never attempted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let xs = store.executions_for_event(event).await.unwrap();
    let waiting = xs.iter().find(|x| x.plugin == "broken").unwrap();
    assert_eq!(
        (waiting.status, waiting.attempts),
        (ExecutionStatus::Pending, 0),
        "{xs:#?}"
    );
    store.close().await;
    server.stop().await;
}
