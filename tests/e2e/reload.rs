//! Hot reload of rules against a running `hookwise serve` (the real binary): a broken rule file
//! is reported with its location and the old rules keep working; a fixed file takes over, on
//! SIGHUP and by itself when the file changes.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwise::store::{GroupCommitSettings, Store};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::dispatch::{Receiver, SECRET, config_text, send, wait_done};
use crate::support::{free_port, hookwise_bin, wait_ready};

fn rule_to(receiver: &crate::dispatch::Receiver, path: &str) -> String {
    format!(
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}\" }}\n",
        receiver.url(path)
    )
}

/// Broken on line 7, column 24: `equal` is not an operator.
const BROKEN: &str = "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    when:\n      all:\n        - { path: $.a, equal: 1 }\n    actions: [{ plugin: relay }]\n";

async fn wait_for_log(lines: &Arc<Mutex<Vec<String>>>, from: usize, needle: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = lines.lock().unwrap()[from..]
            .iter()
            .find(|l| l.contains(needle))
        {
            return line.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no log line with `{needle}`; got:\n{}",
            lines.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_rules_keep_the_old_ones_and_fixed_rules_take_over() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config_text(&receiver, "").replacen(
        "listen: 127.0.0.1:0",
        &format!("listen: 127.0.0.1:{port}"),
        1,
    );
    std::fs::write(dir.path().join("hookwise.yaml"), config).unwrap();
    let rules_file = dir.path().join("rules.yaml");
    std::fs::write(&rules_file, rule_to(&receiver, "/old")).unwrap();

    let mut child = tokio::process::Command::new(hookwise_bin())
        .args(["serve", "--config", "hookwise.yaml"])
        .current_dir(dir.path())
        .env("GH_SECRET", SECRET)
        .env("HOOKWISE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start hookwise");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        let mut reader = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });
    }
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    assert!(wait_ready(&client, &format!("{base}/readyz"), Duration::from_secs(60)).await);
    let store = Store::open(
        "sqlite://hookwise.db",
        dir.path(),
        GroupCommitSettings::default(),
    )
    .await
    .unwrap();
    let pid = child.id().unwrap().to_string();
    let hup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };

    let e1 = send(&client, &base, &json!({"n": 1})).await;
    wait_done(&store, e1, 1, Duration::from_secs(30)).await;

    // A broken file: reported with its place, and the old rules stay in force.
    let mark = lines.lock().unwrap().len();
    std::fs::write(&rules_file, BROKEN).unwrap();
    hup();
    let line = wait_for_log(&lines, mark, "rule reload failed").await;
    let all = lines.lock().unwrap()[mark..].join("\n");
    assert!(
        all.contains("rules.yaml:7:24") && all.contains("equal"),
        "{line}\n{all}"
    );
    let e2 = send(&client, &base, &json!({"n": 2})).await;
    wait_done(&store, e2, 1, Duration::from_secs(30)).await;

    // Fixed, without a signal: the watcher notices the file changed.
    let mark = lines.lock().unwrap().len();
    std::fs::write(&rules_file, rule_to(&receiver, "/new")).unwrap();
    wait_for_log(&lines, mark, "rules reloaded").await;
    let e3 = send(&client, &base, &json!({"n": 3})).await;
    wait_done(&store, e3, 1, Duration::from_secs(30)).await;

    let paths: Vec<(i64, String)> = receiver
        .seen()
        .iter()
        .map(|s| (s.body["n"].as_i64().unwrap(), s.path.clone()))
        .collect();
    assert_eq!(
        paths,
        vec![(1, "/old".into()), (2, "/old".into()), (3, "/new".into())]
    );
    store.close().await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
