//! Hot reload of rules against a running `hookwise serve` (the real binary): a broken rule file
//! is reported with its location and the old rules keep working; a fixed file takes over, on
//! SIGHUP and by itself when the file changes.

use std::time::Duration;

use serde_json::json;

use crate::dispatch::{SECRET, config_text, send, wait_done};
use crate::support::{Receiver, server};

fn rule_to(receiver: &Receiver, path: &str) -> String {
    format!(
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}\" }}\n",
        receiver.url(path)
    )
}

/// Broken on line 7, column 24: `equal` is not an operator.
const BROKEN: &str = "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    when:\n      all:\n        - { path: $.a, equal: 1 }\n    actions: [{ plugin: relay }]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_rules_keep_the_old_ones_and_fixed_rules_take_over() {
    let receiver = Receiver::start().await;
    let server = server(config_text(&receiver, ""))
        .file("rules.yaml", rule_to(&receiver, "/old"))
        .env("GH_SECRET", SECRET)
        .env("HOOKWISE_LOG", "info")
        .spawn()
        .await;
    let rules_file = server.dir.join("rules.yaml");
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let store = server.store().await;

    let e1 = send(&client, &base, &json!({"n": 1})).await;
    wait_done(&store, e1, 1, Duration::from_secs(30)).await;

    // A broken file: reported with its place, and the old rules stay in force.
    let mark = server.log_mark();
    std::fs::write(&rules_file, BROKEN).unwrap();
    server.signal("HUP");
    let line = server.wait_for_log(mark, "rule reload failed").await;
    let all = server.log_since(mark);
    assert!(
        all.contains("rules.yaml:7:24") && all.contains("equal"),
        "{line}\n{all}"
    );
    let e2 = send(&client, &base, &json!({"n": 2})).await;
    wait_done(&store, e2, 1, Duration::from_secs(30)).await;

    // Fixed, without a signal: the watcher notices the file changed.
    let mark = server.log_mark();
    std::fs::write(&rules_file, rule_to(&receiver, "/new")).unwrap();
    server.wait_for_log(mark, "rules reloaded").await;
    let e3 = send(&client, &base, &json!({"n": 3})).await;
    wait_done(&store, e3, 1, Duration::from_secs(30)).await;

    let paths: Vec<(i64, String)> = receiver
        .seen()
        .iter()
        .map(|s| (s.json()["n"].as_i64().unwrap(), s.path.clone()))
        .collect();
    assert_eq!(
        paths,
        vec![(1, "/old".into()), (2, "/old".into()), (3, "/new".into())]
    );
    store.close().await;
    server.stop().await;
}

/// Executions a node started as their event arrived, without a claim.
const HANDED: &str = "hookwise_handed_executions_total";

/// A rule whose input names one payload member: the payload of an event it is matched with is
/// parsed only that far.
fn rule_reading(receiver: &Receiver, member: &str) -> String {
    format!(
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}{{{{ payload.{member} }}}}\" }}\n",
        receiver.url("/")
    )
}

/// An execution handed to a worker as its event arrived carries the payload parsed only as far
/// as the rules of that moment read it. When the rules are reloaded before the worker takes it,
/// its input is rendered by the new rules, which may read other members: the payload is parsed
/// again, whole, and nothing the new rules read is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_execution_waiting_through_a_reload_renders_with_the_whole_payload() {
    let receiver = Receiver::start().await;
    // One worker: while it is held by a call, the next execution waits for it.
    let config = config_text(&receiver, "").replace("workers: 8", "workers: 1");
    assert!(config.contains("workers: 1"));
    let server = server(config)
        .file("rules.yaml", rule_reading(&receiver, "ref"))
        .env("GH_SECRET", SECRET)
        .env("HOOKWISE_LOG", "info")
        .spawn()
        .await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let store = server.store().await;
    let push = |n: u32| json!({"ref": format!("ref-{n}"), "after": format!("after-{n}")});

    // Once the plugin is ready, hold the worker in a call and let the next event arrive.
    let e0 = send(&client, &base, &push(0)).await;
    wait_done(&store, e0, 1, Duration::from_secs(60)).await;
    let handed_before = server.metric(HANDED).await;
    receiver.set_delay(Duration::from_secs(3));
    let e1 = send(&client, &base, &push(1)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while receiver.seen().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            receiver.seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e2 = send(&client, &base, &push(2)).await;
    let mark = server.log_mark();
    std::fs::write(
        server.dir.join("rules.yaml"),
        rule_reading(&receiver, "after"),
    )
    .unwrap();
    server.signal("HUP");
    server.wait_for_log(mark, "rules reloaded").await;
    assert_eq!(
        receiver.seen().len(),
        2,
        "the third call starts after the reload"
    );
    receiver.set_delay(Duration::ZERO);
    for e in [e1, e2] {
        wait_done(&store, e, 1, Duration::from_secs(30)).await;
        let x = &store.executions_for_event(e).await.unwrap()[0];
        assert_eq!(
            x.status,
            hookwise::model::ExecutionStatus::Succeeded,
            "{x:#?}"
        );
    }
    let paths: Vec<String> = receiver.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/ref-0", "/ref-1", "/after-2"]);

    // Both were handed over with their events (not claimed from the store, which reads the
    // payload whole anyway).
    assert_eq!(server.metric(HANDED).await, handed_before + 2.0);
    store.close().await;
    server.stop().await;
}
