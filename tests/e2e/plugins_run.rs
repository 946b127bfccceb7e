//! `hookwise plugins run`, run as the real binary: example plugins and a built-in one calling a
//! real loopback HTTP receiver and writing a real SQLite file, refusals and failures with
//! their exit statuses, `--json`, and a stored event with the config's secrets kept out of
//! the output.

use std::path::Path;

use hookwise::store::{GroupCommitSettings, Store};
use serde_json::{Value, json};

use crate::store::{attempt, event};
use crate::support::{Answer, Receiver, TempPostgres, hookwise_bin, wasm};

/// Runs `hookwise` in `dir` (no config from the environment); returns (exit code, stdout,
/// stderr). Async, so a [`Receiver`] on the test's runtime keeps answering meanwhile.
async fn hookwise(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(hookwise_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("HOOKWISE_CONFIG")
        .output()
        .await
        .expect("run hookwise");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `hookwise plugins run PLUGIN` on a GitHub push (payload file and header) with `extra` flags.
async fn run_on_push(dir: &Path, plugin: &str, extra: &[&str]) -> (i32, String, String) {
    std::fs::write(
        dir.join("push.json"),
        json!({"ref": "refs/heads/main", "pusher": {"name": "alice"}}).to_string(),
    )
    .unwrap();
    let mut args = vec![
        "plugins",
        "run",
        plugin,
        "--payload",
        "push.json",
        "--source",
        "github",
        "--header",
        "X-GitHub-Event: push",
    ];
    args.extend_from_slice(extra);
    hookwise(dir, &args).await
}

fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
}

/// A SQLite file with an empty `audit` table (plugins may not create tables).
async fn audit_db(dir: &Path) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}?mode=rwc", dir.join("audit.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

async fn audit_notes(pool: &sqlx::SqlitePool) -> Vec<String> {
    sqlx::query_scalar("SELECT note FROM audit ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Hostile's input for: a log line, a POST to `url`, an INSERT on connection `audit`.
fn log_http_sql(url: &str) -> String {
    json!({"mode": "steps", "steps": [
        {"mode": "say", "log": "hello from the plugin"},
        {"mode": "http", "method": "POST", "url": url},
        {"mode": "db", "connection": "audit", "statements": [
            {"sql": "INSERT INTO audit (note) VALUES (?)", "params": ["pushed"]}
        ]},
    ]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_logs_calls_http_and_writes_sqlite_and_the_output_shows_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.answer([Answer::new(200, "thanks")]);
    let pool = audit_db(dir.path()).await;
    let hostile = wasm("hostile").display().to_string();
    let hook = receiver.url("/hook");
    let input = log_http_sql(&hook);
    let grant = receiver.grant();
    let flags = [
        "--input",
        &input,
        "--allow-http",
        &grant,
        "--connection",
        "audit=sqlite://audit.db",
        "--allow-db",
        "audit",
        "--idempotency-key",
        "run-1",
    ];
    let (code, out, err) = run_on_push(dir.path(), &hostile, &flags).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_contains(
        &out,
        &[
            "plugin hostile  component  sha256 ",
            "github push",
            "context rule plugins-run action 0 attempt 1  idempotency key run-1",
            "succeeded",
            "peak memory ",
            "fuel ",
            "log info: hello from the plugin",
            &format!("http POST {hook} -> 200  ("),
            "db audit: INSERT INTO audit (note) VALUES (?) -> ok, 0 rows returned, 1 row affected",
            "db audit: transaction committed",
            "output:",
            "\"status\": 200",
            "\"body\": \"thanks\"",
        ],
    );
    assert!(out.trim_end().ends_with("ok"), "{out}");
    // The request really went out, with the call's idempotency key; the row is really there.
    let sent = receiver.one();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.header("idempotency-key"), Some("run-1"));
    assert_eq!(audit_notes(&pool).await, vec!["pushed"]);

    // The same key again: the database write was applied already, nothing is written twice.
    let (code, out, err) = run_on_push(dir.path(), &hostile, &flags).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_contains(&out, &["-> already applied by an earlier attempt"]);
    assert_eq!(audit_notes(&pool).await, vec!["pushed"]);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_carries_the_output_logs_http_calls_and_sql() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let pool = audit_db(dir.path()).await;
    let hostile = wasm("hostile").display().to_string();
    let hook = receiver.url("/hook");
    let input = log_http_sql(&hook);
    let grant = receiver.grant();
    let (code, out, err) = run_on_push(
        dir.path(),
        &hostile,
        &[
            "--input",
            &input,
            "--allow-http",
            &grant,
            "--connection",
            "audit=sqlite://audit.db",
            "--allow-db",
            "audit",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let run: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(run["ok"], true);
    assert_eq!(run["outcome"], "succeeded");
    assert_eq!(run["plugin"]["name"], "hostile");
    assert_eq!(run["plugin"]["abi"], "component");
    assert_eq!(run["event"]["source"], "github");
    assert_eq!(run["event"]["event_type"], "push");
    assert_eq!(run["context"]["rule_id"], "plugins-run");
    assert_eq!(run["context"]["attempt"], 1);
    let key = run["context"]["idempotency_key"].as_str().unwrap();
    assert!(key.starts_with("plugins-run:"), "{key}");
    assert_eq!(receiver.one().header("idempotency-key"), Some(key));
    assert_eq!(run["output"]["steps"][1]["status"], 200);
    assert_eq!(run["logs"]["lines"][0]["message"], "hello from the plugin");
    assert_eq!(run["http_calls"][0]["method"], "POST");
    assert_eq!(run["http_calls"][0]["url"], hook.as_str());
    assert_eq!(run["http_calls"][0]["status"], 200);
    let statement = &run["db_statements"]["statements"][0];
    assert_eq!(statement["connection"], "audit");
    assert_eq!(statement["sql"], "INSERT INTO audit (note) VALUES (?)");
    assert_eq!(statement["outcome"]["rows_affected"], 1);
    assert_eq!(
        run["db_statements"]["transactions"][0]["outcome"]["status"],
        "committed"
    );
    assert!(run["fuel_used"].as_u64().unwrap() > 0, "{run}");
    assert!(run["memory_peak"].as_u64().unwrap() > 0, "{run}");
    assert!(run["error"].is_null(), "{run}");
    assert_eq!(audit_notes(&pool).await, vec!["pushed"]);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_http_failed_calls_and_bad_arguments_say_why_with_their_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let hostile = wasm("hostile").display().to_string();
    let grant = receiver.grant();

    // A host that was not granted: refused before anything is sent, and the call fails.
    let other = json!({"mode": "http", "method": "GET", "url": "https://example.com/x"});
    let (code, out, err) = run_on_push(
        dir.path(),
        &hostile,
        &["--input", &other.to_string(), "--allow-http", &grant],
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert_contains(&out, &["http GET https://example.com/x -> refused: "]);
    assert!(out.trim_end().ends_with("failed"), "{out}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(receiver.seen().len(), 0);

    // A fatal error from the plugin.
    let fatal = json!({"mode": "say", "log": "giving up", "error": "the order is gone"});
    let (code, out, err) =
        run_on_push(dir.path(), &hostile, &["--input", &fatal.to_string()]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert_contains(&out, &["fatal", "the order is gone", "log info: giving up"]);
    assert_contains(&err, &["the order is gone"]);

    // A retryable one, with the plugin's retry hint.
    let (code, out, _) = run_on_push(
        dir.path(),
        &hostile,
        &["--input", r#"{"mode": "retryable"}"#],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert_contains(&out, &["retryable", "try later", "retry after 1s500ms"]);

    // A panic traps; an endless loop hits the time limit given.
    let (code, out, err) =
        run_on_push(dir.path(), &hostile, &["--input", r#"{"mode": "panic"}"#]).await;
    assert_eq!(code, 1, "{out}");
    assert_contains(&err, &["plugin trapped", "panics on purpose"]);
    let (code, out, err) = run_on_push(
        dir.path(),
        &hostile,
        &["--input", r#"{"mode": "loop"}"#, "--timeout", "300ms"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert_contains(&err, &["time limit"]);

    // Usage errors: exit 2 and a clear message, nothing run.
    let (code, _, err) = hookwise(
        dir.path(),
        &[
            "plugins",
            "run",
            &hostile,
            "--payload",
            "missing.json",
            "--source",
            "github",
        ],
    )
    .await;
    assert_eq!(code, 2);
    assert_contains(&err, &["cannot read missing.json"]);
    let (code, _, err) = run_on_push(dir.path(), &hostile, &["--input", "{not json"]).await;
    assert_eq!(code, 2);
    assert_contains(&err, &["--input is not JSON"]);
    let (code, _, err) = run_on_push(dir.path(), &hostile, &["--input", "@nope.json"]).await;
    assert_eq!(code, 2);
    assert_contains(&err, &["--input: cannot read nope.json"]);
    std::fs::write(dir.path().join("text.wasm"), "not WebAssembly at all").unwrap();
    let (code, _, err) = run_on_push(dir.path(), "text.wasm", &[]).await;
    assert_eq!(code, 2);
    assert_contains(&err, &["not a WebAssembly component or core module"]);
    // A component that does not fit the plugin world: the problems `inspect` finds.
    std::fs::write(dir.path().join("empty.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    let (code, _, err) = run_on_push(dir.path(), "empty.wasm", &[]).await;
    assert_eq!(code, 2, "{err}");
    assert_contains(&err, &["error: ", "\n  - "]);
    let (code, _, err) = run_on_push(dir.path(), "no-such-plugin", &[]).await;
    assert_eq!(code, 2);
    assert_contains(
        &err,
        &[
            "`no-such-plugin` is neither a file nor a plugin name",
            "call-api",
        ],
    );
    let (code, _, err) = run_on_push(dir.path(), &hostile, &["--allow-http", "ftp://x"]).await;
    assert_eq!(code, 2);
    assert_contains(&err, &["unknown scheme"]);
    let (code, _, err) = run_on_push(dir.path(), &hostile, &["--allow-db", "nowhere"]).await;
    assert_eq!(code, 2);
    assert_contains(&err, &["connection `nowhere` is not configured"]);
    let (code, _, _) = hookwise(dir.path(), &["plugins", "run", &hostile]).await;
    assert_eq!(code, 2, "an event is needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_postgres_connection_is_written_and_its_password_never_shown() {
    const PASSWORD: &str = "pw-7c1e9b0d44aa";
    let pg = TempPostgres::create().await.unwrap();
    let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
    sqlx::query("CREATE TABLE audit (id BIGSERIAL PRIMARY KEY, note TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    // The test server trusts local connections, so the password is only there to be hidden.
    let url = pg.url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    );
    assert!(url.contains(PASSWORD), "{url}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hookwise.yaml"),
        format!("listen: 127.0.0.1:8443\nconnections:\n  analytics: \"{url}\"\n"),
    )
    .unwrap();
    // The plugin echoes the password into its log (it could have it from anywhere).
    let input = json!({"mode": "steps", "steps": [
        {"mode": "db", "connection": "analytics", "statements": [
            {"sql": "INSERT INTO audit (note) VALUES ($1) RETURNING id", "params": ["from postgres"]}
        ]},
        {"mode": "say", "log": format!("the password is {PASSWORD}")},
    ]});
    let hostile = wasm("hostile").display().to_string();
    let (code, out, err) = run_on_push(
        dir.path(),
        &hostile,
        &[
            "--config",
            "hookwise.yaml",
            "--allow-db",
            "analytics",
            "--input",
            &input.to_string(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_contains(
        &out,
        &[
            "db analytics: INSERT INTO audit (note) VALUES ($1) RETURNING id -> ok, 1 row returned, 1 row affected",
            "db analytics: transaction committed",
            "log info: the password is ***",
        ],
    );
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "{out}\n{err}"
    );
    let notes: Vec<String> = sqlx::query_scalar("SELECT note FROM audit")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(notes, vec!["from postgres"]);

    // A connection given on the command line that does not open: exit 2, the password hidden.
    let closed = format!("nowhere=postgres://postgres:{PASSWORD}@127.0.0.1:1/nowhere");
    let (code, out, err) = run_on_push(
        dir.path(),
        &hostile,
        &["--connection", &closed, "--allow-db", "nowhere"],
    )
    .await;
    assert_eq!(code, 2, "{out}\n{err}");
    assert_contains(
        &err,
        &["cannot open the granted database connections", "nowhere"],
    );
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD), "{err}");
    pool.close().await;
    pg.drop_db().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_call_api_runs_by_name_against_a_loopback_server() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.answer([Answer::json(201, json!({"data": {"id": "ord_7"}}))]);
    let input = json!({
        "url": receiver.url("/orders"),
        "body": {"ref": "refs/heads/main"},
        "select": {"order": "/data/id"},
    });
    let grant = receiver.grant();
    let (code, out, err) = run_on_push(
        dir.path(),
        "call-api",
        &["--input", &input.to_string(), "--allow-http", &grant],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_contains(
        &out,
        &[
            "plugin call-api  component",
            &format!("http POST {} -> 201", receiver.url("/orders")),
            "\"order\": \"ord_7\"",
        ],
    );
    let sent = receiver.one();
    assert_eq!(sent.path, "/orders");
    assert_eq!(sent.json(), json!({"ref": "refs/heads/main"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_event_runs_with_the_configs_secrets_and_none_is_printed() {
    const TOKEN: &str = "tok-4f9a1c77e2b84d1c";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token.txt"), TOKEN).unwrap();
    std::fs::write(
        dir.path().join("hookwise.yaml"),
        "listen: 127.0.0.1:8443\nstore: sqlite://hookwise.db\n\
         secrets:\n  API_TOKEN: \"${file:token.txt}\"\n\
         sources:\n  - { id: gh, provider: github, secrets: [\"${file:token.txt}\"] }\n",
    )
    .unwrap();
    let store = Store::open(
        "sqlite://hookwise.db",
        dir.path(),
        GroupCommitSettings::default(),
    )
    .await
    .unwrap();
    let stored = event("gh", "d-1");
    let id = stored.id.to_string();
    store
        .ingest(
            stored,
            attempt("gh", hookwise::model::Verdict::Accepted, 202),
        )
        .await
        .unwrap();
    store.close().await;

    let input = json!({"mode": "steps", "steps": [
        {"mode": "ok"},
        {"mode": "say", "log": "using ${secret:API_TOKEN}", "output": {"t": "${secret:API_TOKEN}"}},
    ]});
    let hostile = wasm("hostile").display().to_string();
    let run = |json: bool| {
        let mut args = vec![
            "plugins".to_string(),
            "run".into(),
            hostile.clone(),
            "--event".into(),
            id.clone(),
            "--config".into(),
            "hookwise.yaml".into(),
            "--input".into(),
            input.to_string(),
        ];
        if json {
            args.push("--json".into());
        }
        args
    };
    let args = run(false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = hookwise(dir.path(), &args).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_contains(
        &out,
        &[
            &format!("event {id}  gh push"),
            "log info: using ${secret:API_TOKEN}",
            "\"t\": \"${secret:API_TOKEN}\"",
        ],
    );
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN), "{out}\n{err}");

    let args = run(true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = hookwise(dir.path(), &args).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains(TOKEN), "{out}");
    let run: Value = serde_json::from_str(&out).unwrap();
    // The plugin got the stored event.
    assert_eq!(run["output"]["steps"][0]["event"], id.as_str());
    assert_eq!(run["output"]["steps"][1]["t"], "${secret:API_TOKEN}");
    assert_eq!(run["event"]["id"], id.as_str());

    let (code, _, err) = hookwise(
        dir.path(),
        &[
            "plugins",
            "run",
            &hostile,
            "--event",
            "0190f0f0-0000-7000-8000-000000000000",
            "--config",
            "hookwise.yaml",
        ],
    )
    .await;
    assert_eq!(code, 2);
    assert_contains(&err, &["no event 0190f0f0-0000-7000-8000-000000000000"]);
}
