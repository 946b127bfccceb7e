//! Crash safety: `hookwise serve` as a child process, 2,000 signed events from 32 clients, a
//! `kill -9` part way through, a restart, and then the books must balance: every acknowledged
//! event stored, every stored event written exactly once by its action (through the DB
//! capability), no execution lost or left leased. Run on SQLite and on PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use hookwise::model::{EventId, ExecutionStatus};
use hookwise::store::{EventFilter, GroupCommitSettings, Store};
use hookwise::verify::{Provider, VerifyOptions};
use sqlx::Row;

use crate::dispatch::SECRET;
use crate::support::{Server, TempPostgres, server, wasm};

const EVENTS: usize = 2_000;
const CLIENTS: usize = 32;
/// Acknowledged events before the kill.
const KILL_AFTER: usize = 700;

fn config(store_url: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: \"{store_url}\"\n\
         rules: rules.yaml\n\
         dispatch: {{ workers: 16, lease: 3s }}\n\
         sources:\n  - {{ id: gh, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         connections:\n  sink: sqlite://sink.db\n\
         plugins:\n  - name: hostile\n    path: {}\n    allow: {{ db: [sink] }}\n",
        wasm("hostile").display()
    )
}

const RULES: &str = r#"rules:
  - id: record
    source: gh
    events: [push]
    actions:
      - plugin: hostile
        with:
          mode: db
          connection: sink
          statements:
            - sql: "INSERT INTO seen (event_id, n) VALUES (?, ?)"
              params: ["{{ event.id }}", "{{ payload.n }}"]
        retry: { attempts: 10, backoff: 100ms, max_backoff: 1s }
"#;

/// `hookwise serve` in `dir`, quiet but for the lines that say where it listens.
async fn spawn(dir: &Path, store_url: &str) -> Server {
    server(config(store_url))
        .in_dir(dir)
        .file("rules.yaml", RULES)
        .env("GH_SECRET", SECRET)
        .args(&["--log", "warn,hookwise::server=info"])
        .spawn()
        .await
}

/// Sends event `n` until it is acknowledged (as a provider redelivers); returns its id, or
/// None when `deadline` passes. `hooks` is the URL of the server running now: a restarted
/// server listens on another port.
async fn deliver(
    client: &reqwest::Client,
    hooks: &RwLock<String>,
    n: usize,
    deadline: Instant,
) -> Option<EventId> {
    let body = serde_json::to_vec(&serde_json::json!({"n": n, "ref": "refs/heads/main"})).unwrap();
    while Instant::now() < deadline {
        let url = hooks.read().unwrap().clone();
        let url = url.as_str();
        let signed = hookwise::verify::sign_event(
            Provider::Github,
            SECRET,
            &VerifyOptions::default(),
            "POST",
            url,
            &body,
            SystemTime::now(),
            Some("push"),
        )
        .unwrap();
        let mut req = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-github-delivery", format!("crash-{n}"))
            .body(body.clone());
        for (k, v) in &signed.headers {
            if !k.eq_ignore_ascii_case("x-github-delivery") {
                req = req.header(k, v);
            }
        }
        if let Ok(resp) = req.send().await
            && resp.status() == 200
            && let Ok(answer) = resp.json::<serde_json::Value>().await
            && let Some(id) = answer["event_id"].as_str()
        {
            return id.parse().ok();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn crash_and_recover(store_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    // The sink: no unique key, so only the effects table can keep a row from being written twice.
    let sink_url = format!("sqlite://{}?mode=rwc", dir.path().join("sink.db").display());
    let sink = sqlx::SqlitePool::connect(&sink_url).await.unwrap();
    sqlx::query("CREATE TABLE seen (event_id TEXT NOT NULL, n INTEGER NOT NULL)")
        .execute(&sink)
        .await
        .unwrap();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let child = spawn(dir.path(), store_url).await;
    let hooks = Arc::new(RwLock::new(format!("{}/hooks/gh", child.base)));
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(std::sync::Mutex::new(HashMap::<usize, EventId>::new()));
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (client, hooks, next, acked) =
            (client.clone(), hooks.clone(), next.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= EVENTS {
                    return;
                }
                let id = deliver(&client, &hooks, n, deadline)
                    .await
                    .expect("delivered before the deadline");
                acked.lock().unwrap().insert(n, id);
            }
        }));
    }
    // Kill -9 part way through, while requests and actions are in flight.
    while acked.lock().unwrap().len() < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = child.kill().await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let acked_at_kill: HashMap<usize, EventId> = acked.lock().unwrap().clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let child = spawn(dir.path(), store_url).await;
    *hooks.write().unwrap() = format!("{}/hooks/gh", child.base);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), EVENTS);

    // Wait until idle: every event planned, every execution finished.
    let store = Store::open(store_url, dir.path(), GroupCommitSettings::default())
        .await
        .unwrap();
    let idle_by = Instant::now() + Duration::from_secs(180);
    loop {
        let counts = store.execution_counts().await.unwrap();
        let pending_events = store.pending_events(1).await.unwrap().len();
        if pending_events == 0
            && counts.pending == 0
            && counts.running == 0
            && counts.succeeded + counts.dead >= EVENTS as i64
        {
            break;
        }
        assert!(
            Instant::now() < idle_by,
            "not idle: {counts:?}, {pending_events} pending events"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every event acknowledged before the kill (and after) is stored, once per delivery id.
    let stored = store
        .list_events(&EventFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let stored_ids: HashSet<EventId> = stored.iter().map(|e| e.event.id).collect();
    assert_eq!(stored.len(), EVENTS, "one stored event per delivery");
    for (n, id) in &acked_at_kill {
        assert!(
            stored_ids.contains(id),
            "event {n} ({id}) was acknowledged before the kill but is not stored"
        );
    }
    for id in acked.values() {
        assert!(stored_ids.contains(id));
    }
    // No execution lost, dead or left leased (checked before the rows: an action that gave up
    // also leaves no row, and its dead letter says why).
    let counts = store.execution_counts().await.unwrap();
    let dead = store
        .list_dead_letters(&hookwise::store::DeadLetterFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    assert_eq!(
        (
            counts.succeeded,
            counts.dead,
            counts.pending,
            counts.running
        ),
        (EVENTS as i64, 0, 0, 0),
        "dead letters: {dead:#?}"
    );
    // Every stored event produced exactly one row.
    let rows = sqlx::query("SELECT event_id, COUNT(*) AS c FROM seen GROUP BY event_id")
        .fetch_all(&sink)
        .await
        .unwrap();
    let mut written = HashSet::new();
    for row in &rows {
        let id: String = row.get("event_id");
        let c: i64 = row.get("c");
        assert_eq!(c, 1, "event {id} was written {c} times");
        written.insert(id.parse::<EventId>().unwrap());
    }
    if written != stored_ids {
        // Everything the store and the sink know of the events whose rows differ, to tell a
        // lost write from a doubled plan or a wrong completion.
        let mut story = String::new();
        for id in stored_ids.symmetric_difference(&written) {
            story.push_str(&format!("event {id}:\n"));
            for x in store.executions_for_event(*id).await.unwrap_or_default() {
                story.push_str(&format!("  {x:?}\n"));
                for a in store.attempts_for_execution(x.id).await.unwrap_or_default() {
                    story.push_str(&format!("    {a:?}\n"));
                }
            }
        }
        let claims: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hookwise_effects")
            .fetch_one(&sink)
            .await
            .unwrap_or(-1);
        panic!(
            "rows and stored events differ: {} stored, {} with a row, {claims} effect claims \
             in the sink\n{story}",
            stored_ids.len(),
            written.len()
        );
    }
    for e in stored.iter().take(50) {
        let xs = store.executions_for_event(e.event.id).await.unwrap();
        assert_eq!(xs.len(), 1);
        assert_eq!(xs[0].status, ExecutionStatus::Succeeded);
        assert!(xs[0].lease_owner.is_none());
    }
    store.close().await;
    sink.close().await;
    child.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_nothing_on_sqlite() {
    crash_and_recover("sqlite://hookwise.db").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_nothing_on_postgres() {
    let pg = TempPostgres::create()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    crash_and_recover(&pg.url).await;
    pg.drop_db().await.unwrap();
}
