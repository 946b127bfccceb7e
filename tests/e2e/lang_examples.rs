//! The example plugin of every language (`plugins/examples/<lang>`), built from pinned registry
//! packages, and what their tests share: a real server with a rule that runs an example against
//! a loopback HTTP receiver and a SQLite file, and `hookwise plugins run` on a `plugins new`
//! template's sample event. Here too: the JavaScript, Python and Rust examples run through
//! `serve` with the contract the Go example set (log, POST, INSERT; a missing input key is
//! fatal).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use hookwise::model::{EventId, ExecutionStatus};
use serde_json::{Value, json};

use crate::dispatch::{send, start, wait_done};
use crate::support::{Receiver, Server, hookwise_bin};

/// First calls compile the module (Go's is about 4 MB, Python's 18 MB) on a busy machine.
const DONE_LIMIT: Duration = Duration::from_secs(120);

/// The table the examples of the Go contract insert into.
pub const PUSHES_TABLE: &str = "CREATE TABLE IF NOT EXISTS pushes \
     (event_id TEXT PRIMARY KEY, repository TEXT, pusher TEXT, commits INTEGER)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Go,
    C,
    Zig,
    AssemblyScript,
    Js,
    Python,
    Rust,
}

impl Lang {
    /// The folder under `plugins/examples` (and `plugins/templates`), the name the examples
    /// log with, and the name of the built module.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Go => "go",
            Lang::C => "c",
            Lang::Zig => "zig",
            Lang::AssemblyScript => "assemblyscript",
            Lang::Js => "js",
            Lang::Python => "python",
            Lang::Rust => "rust",
        }
    }

    /// Where the example's build script writes its module and keeps its tools (the test
    /// target's tmp dir, so later runs reuse them).
    pub fn out_dir(self) -> PathBuf {
        let dir = match self {
            Lang::Go | Lang::C => "lang-go-c",
            Lang::Zig | Lang::AssemblyScript => "lang-zig-as",
            Lang::Js | Lang::Python => "lang-plugins",
            Lang::Rust => "plugins",
        };
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir)
    }

    /// The example module, built once per test process (the build scripts skip an up-to-date
    /// module).
    pub fn example(self) -> &'static Path {
        static BUILT: [OnceLock<PathBuf>; 7] = [const { OnceLock::new() }; 7];
        BUILT[self as usize].get_or_init(|| self.build())
    }

    fn build(self) -> PathBuf {
        let out = self.out_dir();
        let (script, needs) = match self {
            Lang::Rust => return crate::support::wasm("rust-example"),
            Lang::Js | Lang::Python => (
                repo().join("plugins/examples/build-lang.sh"),
                "node/npm and python3 (venv), and the npm registry and PyPI",
            ),
            Lang::AssemblyScript => (
                repo().join("plugins/examples/assemblyscript/build.sh"),
                "node/npm and the npm registry",
            ),
            Lang::Go | Lang::C | Lang::Zig => (
                repo()
                    .join("plugins/examples")
                    .join(self.name())
                    .join("build.sh"),
                "python3 (venv) and PyPI",
            ),
        };
        run_script(Command::new("bash").arg(&script).arg(&out), &script, needs);
        let wasm = out.join(format!("{}.wasm", self.name()));
        assert!(
            wasm.is_file(),
            "{} did not write {}",
            script.display(),
            wasm.display()
        );
        wasm
    }
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a build script; fails the test with its output unless it succeeds.
pub fn run_script(command: &mut Command, script: &Path, needs: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed ({}); it needs {needs} on the first run.\nstdout:\n{}\nstderr:\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// A server with `lang`'s example as the plugin `<lang>-example`, granted `receiver` and the
/// SQLite connection `app` (`app.db` beside the config, with the table `table_ddl` makes), and
/// one rule `<lang>-push` running it on GitHub pushes with `with` (and `retry`, a rule line or
/// empty). Returns the server and a pool on `app.db`.
pub async fn serve(
    lang: Lang,
    receiver: &Receiver,
    with: &str,
    retry: &str,
    table_ddl: &str,
) -> (Server, sqlx::SqlitePool) {
    let name = lang.name();
    let config = format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: sqlite://hookwise.db\n\
         rules: rules.yaml\n\
         sources:\n  - {{ id: gh, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         plugins:\n  - name: {name}-example\n    path: \"{wasm}\"\n    \
           limits: {{ memory: 64MiB, timeout: 30s }}\n    \
           allow: {{ http: [\"{grant}\"], db: [app] }}\n\
         connections:\n  app: sqlite://app.db\n",
        wasm = lang.example().display(),
        grant = receiver.grant(),
    );
    let rules = format!(
        "rules:\n  - id: {name}-push\n    source: gh\n    events: [push]\n    actions:\n\
         \x20     - plugin: {name}-example\n        with: {with}\n{retry}"
    );
    let server = start(&config, &rules).await;
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=rwc",
        server.dir.join("app.db").display()
    ))
    .await
    .expect("open app.db");
    sqlx::query(table_ddl)
        .execute(&pool)
        .await
        .expect("create the table");
    (server, pool)
}

/// `hookwise logs EVENT --json` of this server: the one execution's attempts.
pub fn attempts(server: &Server, event: EventId) -> Vec<Value> {
    let (code, text) = server.cli(&["logs", &event.to_string(), "--json"]);
    assert_eq!(code, 0, "{text}");
    let story: Value = serde_json::from_str(&text).expect("logs --json is JSON");
    let executions = story["executions"].as_array().expect("executions");
    assert_eq!(executions.len(), 1, "{story:#}");
    executions[0]["attempts"]
        .as_array()
        .expect("attempts")
        .clone()
}

/// A GitHub push whose pusher's name needs JSON escaping (quotes, a backslash, non-ASCII).
const PUSHER: &str = "Zoë \"zo\" O'Brien \\ ☕";

fn push_payload() -> Value {
    json!({
        "ref": "refs/heads/main",
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "59b20b8d5c6ff8d09518216e0d2f3f7b7a5e4e2a",
        "repository": {"id": 1296269, "name": "hello-world", "full_name": "octo-org/hello-world"},
        "pusher": {"name": PUSHER, "email": "zo@example.com"},
        "commits": [
            {"id": "59b20b8d", "message": "Fix the \"quoted\" bug\n\nand more", "author": {"name": "Mona"}},
            {"id": "a10867b1", "message": "Add naïve café ☕ [x] {y}", "author": {"name": "Zo"}},
        ],
    })
}

/// The Go contract through a served rule: one POST of JSON derived from the event (with the
/// execution's idempotency key), one row in the SQLite file, and the stored attempt's log
/// line, HTTP call, SQL statement and output.
pub async fn example_posts_inserts_and_logs(lang: Lang) {
    let name = lang.name();
    let receiver = Receiver::start().await;
    let url = receiver.url(&format!("/{name}"));
    let with = format!("{{ url: \"{url}\", connection: app, table: pushes }}");
    let (server, pool) = serve(lang, &receiver, &with, "", PUSHES_TABLE).await;
    let client = reqwest::Client::new();
    let event = send(&client, &server.base, &push_payload()).await;
    let store = server.store().await;
    wait_done(&store, event, 1, DONE_LIMIT).await;

    let executions = store.executions_for_event(event).await.unwrap();
    let x = &executions[0];
    assert_eq!(
        (x.status, x.attempts),
        (ExecutionStatus::Succeeded, 1),
        "{executions:#?}"
    );
    let text = format!("{PUSHER} pushed 2 commit(s) to octo-org/hello-world");

    // HTTP: one POST of JSON derived from the event, with the execution's idempotency key.
    let req = receiver.one();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, format!("/{name}"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("idempotency-key"),
        Some(x.idempotency_key.as_str())
    );
    assert_eq!(
        req.json(),
        json!({
            "text": text,
            "repository": "octo-org/hello-world",
            "ref": "refs/heads/main",
            "after": "59b20b8d5c6ff8d09518216e0d2f3f7b7a5e4e2a",
            "event_id": event.to_string(),
        })
    );

    // DB: the row is in the SQLite file (committed with the call).
    let rows: Vec<(String, String, String, i64)> =
        sqlx::query_as("SELECT event_id, repository, pusher, commits FROM pushes")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![(
            event.to_string(),
            "octo-org/hello-world".to_string(),
            PUSHER.to_string(),
            2
        )]
    );

    // The stored attempt: the log line, the HTTP call, the SQL statement and the output.
    let attempts = attempts(&server, event);
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let attempt = &attempts[0];
    assert_eq!(attempt["outcome"], "succeeded", "{attempt:#}");
    let lines = attempt["logs"]["lines"].as_array().unwrap();
    let expected_line = format!(
        "{name} plugin: {PUSHER} pushed 2 commit(s) to octo-org/hello-world (event {event}, attempt 1)"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "info" && l["message"] == expected_line.as_str()),
        "no info line `{expected_line}` in {lines:#?}"
    );
    let calls = attempt["http_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["method"], "POST");
    assert_eq!(calls[0]["url"], url.as_str());
    assert_eq!(calls[0]["status"], 200);
    assert_eq!(calls[0]["refused"], false);
    let statements = attempt["db_statements"]["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{statements:#?}");
    assert_eq!(statements[0]["connection"], "app");
    assert_eq!(
        statements[0]["sql"],
        "INSERT INTO pushes (event_id, repository, pusher, commits) VALUES (?, ?, ?, ?)"
    );
    assert_eq!(statements[0]["params"], 4);
    assert_eq!(statements[0]["outcome"]["status"], "ok");
    assert_eq!(statements[0]["outcome"]["rows_affected"], 1);
    assert_eq!(
        attempt["output"],
        json!({
            "posted": {"url": url, "status": 200},
            "inserted": {"connection": "app", "table": "pushes", "rows_affected": 1, "already_applied": false},
            "text": text,
        })
    );

    // The same story as text.
    let (code, text_story) = server.cli(&["logs", &event.to_string()]);
    assert_eq!(code, 0);
    for needle in [
        format!("{name}-push action 0 ({name}-example)"),
        "succeeded  1 attempt".to_string(),
        format!("log info: {expected_line}"),
        format!("http POST {url} -> 200"),
        "db app: INSERT INTO pushes (event_id, repository, pusher, commits) VALUES (?, ?, ?, ?) -> ok"
            .to_string(),
    ] {
        assert!(
            text_story.contains(&needle),
            "`{needle}` missing from:\n{text_story}"
        );
    }
    pool.close().await;
    store.close().await;
    server.stop().await;
}

/// The Go contract's fatal path: an input with a connection but no table is dead at once
/// (though the rule allows retries), nothing is sent, nothing is inserted, and the dead
/// letter says why.
pub async fn example_without_table_is_fatal_and_not_retried(lang: Lang) {
    let name = lang.name();
    let receiver = Receiver::start().await;
    let with = format!(
        "{{ url: \"{}\", connection: app }}",
        receiver.url(&format!("/{name}"))
    );
    let retry = "        retry: { attempts: 4, backoff: 100ms, max_backoff: 1s }\n";
    let (server, pool) = serve(lang, &receiver, &with, retry, PUSHES_TABLE).await;
    let client = reqwest::Client::new();
    let event = send(&client, &server.base, &push_payload()).await;
    let store = server.store().await;
    wait_done(&store, event, 1, DONE_LIMIT).await;

    let executions = store.executions_for_event(event).await.unwrap();
    let x = &executions[0];
    assert_eq!(
        (x.status, x.attempts),
        (ExecutionStatus::Dead, 1),
        "{executions:#?}"
    );
    let error = x.last_error.clone().unwrap_or_default();
    assert!(error.contains("input.table is missing"), "{error}");
    assert!(receiver.seen().is_empty(), "nothing was sent");
    let rows: Vec<(String,)> = sqlx::query_as("SELECT event_id FROM pushes")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");

    let (code, list) = server.cli(&["dead-letters", "list", "--json"]);
    assert_eq!(code, 0, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    let reasons: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 1, "{list:#}");
    assert!(
        reasons[0].starts_with("fatal: ") && reasons[0].contains("input.table is missing"),
        "{reasons:?}"
    );
    let attempts = attempts(&server, event);
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0]["outcome"], "fatal", "{:#}", attempts[0]);
    pool.close().await;
    store.close().await;
    server.stop().await;
}

/// `hookwise plugins run WASM --payload PROJECT/event.json --source github --event-type push
/// --input @PROJECT/input.json --json` (the worked example a template's README shows): the
/// call succeeded; returns the JSON.
pub fn run_template(wasm: &Path, project: &Path) -> Value {
    let out = Command::new(hookwise_bin())
        .args(["plugins", "run"])
        .arg(wasm)
        .arg("--payload")
        .arg(project.join("event.json"))
        .args(["--source", "github", "--event-type", "push", "--input"])
        .arg(format!("@{}", project.join("input.json").display()))
        .arg("--json")
        .current_dir(project)
        .output()
        .expect("run hookwise plugins run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "plugins run: {stdout}\n{stderr}");
    let run: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(run["ok"], true, "{run:#}");
    assert_eq!(run["outcome"], "succeeded", "{run:#}");
    run
}

/// `PATH` with this test's `hookwise` first, for build scripts that declare the input schema
/// with `hookwise plugins set-input-schema`.
pub fn path_with_hookwise() -> std::ffi::OsString {
    let bin_dir = hookwise_bin()
        .parent()
        .expect("the hookwise binary is in a folder")
        .to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&path)))
        .expect("PATH joins")
}

/// The info lines of a `plugins run --json`.
pub fn info_lines(run: &Value) -> Vec<String> {
    run["logs"]["lines"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter(|l| l["level"] == "info")
                .filter_map(|l| l["message"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn js_example_posts_inserts_and_logs_through_a_served_rule() {
    example_posts_inserts_and_logs(Lang::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn js_example_without_table_is_fatal_and_not_retried() {
    example_without_table_is_fatal_and_not_retried(Lang::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_example_posts_inserts_and_logs_through_a_served_rule() {
    example_posts_inserts_and_logs(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_example_without_table_is_fatal_and_not_retried() {
    example_without_table_is_fatal_and_not_retried(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_example_posts_inserts_and_logs_through_a_served_rule() {
    example_posts_inserts_and_logs(Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_example_without_table_is_fatal_and_not_retried() {
    example_without_table_is_fatal_and_not_retried(Lang::Rust).await;
}
