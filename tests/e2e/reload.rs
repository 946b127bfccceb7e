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
