//! The Zig and AssemblyScript example plugins: core modules that log, call HTTP and write to a
//! database through the `hookwise` import module. Each is built from pinned registry packages
//! by its own `plugins/examples/<lang>/build.sh`, then run by a real server from a rule against
//! a loopback receiver and a SQLite file; and each language's `hookwise plugins new` template
//! (with its SDK) builds into a module that fits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use hookwise::model::{EventId, ExecutionStatus};
use serde_json::{Value, json};

use crate::dispatch::{send, start, wait_done};
use crate::support::{Receiver, Server, hookwise_bin};

#[derive(Debug, Clone, Copy)]
enum Lang {
    Zig,
    AssemblyScript,
}

impl Lang {
    /// The folder under `plugins/examples`, `plugins/sdk` and `plugins/templates`, which is
    /// also the name of the built module (`OUT_DIR/<name>.wasm`).
    fn name(self) -> &'static str {
        match self {
            Lang::Zig => "zig",
            Lang::AssemblyScript => "assemblyscript",
        }
    }

    /// Where the build scripts put their tools and modules (shared by both languages).
    fn out_dir() -> PathBuf {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("lang-zig-as")
    }

    /// The example module, built once per test run (the script skips an up-to-date build).
    fn wasm(self) -> &'static Path {
        static ZIG: OnceLock<PathBuf> = OnceLock::new();
        static AS: OnceLock<PathBuf> = OnceLock::new();
        let cell = match self {
            Lang::Zig => &ZIG,
            Lang::AssemblyScript => &AS,
        };
        cell.get_or_init(|| {
            let script = repo()
                .join("plugins/examples")
                .join(self.name())
                .join("build.sh");
            let out = Lang::out_dir();
            run_script(
                Command::new("bash").arg(&script).arg(&out),
                &script,
                match self {
                    Lang::Zig => "python3 (venv) and PyPI",
                    Lang::AssemblyScript => "node/npm and the npm registry",
                },
            );
            let wasm = out.join(format!("{}.wasm", self.name()));
            assert!(
                wasm.is_file(),
                "{} did not write {}",
                script.display(),
                wasm.display()
            );
            wasm
        })
    }

    /// The environment variable a template's build script takes to use an installed
    /// compiler, and its value: the compiler the example's build installed.
    fn compiler_env(self) -> (&'static str, String) {
        let tools = Lang::out_dir().join("tools");
        match self {
            Lang::Zig => (
                "ZIG",
                format!("{} -m ziglang", tools.join("zig-venv/bin/python").display()),
            ),
            Lang::AssemblyScript => (
                "ASC",
                format!(
                    "node {}",
                    tools
                        .join("as/node_modules/assemblyscript/bin/asc.js")
                        .display()
                ),
            ),
        }
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a build script; fails the test with its output unless it succeeds.
fn run_script(command: &mut Command, script: &Path, needs: &str) {
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

/// A server whose plugin `example` is `lang`'s module, granted `receiver` and the SQLite
/// database `app` (`app.db` beside the config, with an empty `pushes` table), and whose rule
/// `push` runs it on GitHub pushes with `with`.
async fn serve(lang: Lang, receiver: &Receiver, with: &str) -> (Server, sqlx::SqlitePool) {
    let config = format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: sqlite://hookwise.db\n\
         rules: rules.yaml\n\
         sources:\n  - {{ id: gh, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         plugins:\n  - name: example\n    path: {}\n    allow: {{ http: [\"{}\"], db: [app] }}\n\
         connections:\n  app: sqlite://app.db\n",
        lang.wasm().display(),
        receiver.grant(),
    );
    let rules = format!(
        "rules:\n  - id: push\n    source: gh\n    events: [push]\n    actions:\n\
         \x20     - plugin: example\n        with: {with}\n\
         \x20       retry: {{ attempts: 3, backoff: 100ms, max_backoff: 1s }}\n"
    );
    let server = start(&config, &rules).await;
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=rwc",
        server.dir.join("app.db").display()
    ))
    .await
    .expect("open app.db");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS pushes \
         (event_id TEXT NOT NULL, event_type TEXT NOT NULL, ref TEXT, status INTEGER NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create the pushes table");
    (server, pool)
}

/// `hookwise logs EVENT --json`: the one execution's attempts.
fn attempts(server: &Server, event: EventId) -> Vec<Value> {
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

async fn example_logs_posts_and_inserts(lang: Lang) {
    let receiver = Receiver::start().await;
    let with = format!(
        "{{ url: \"{}\", connection: app, table: pushes }}",
        receiver.url(&format!("/{}", lang.name()))
    );
    let (server, pool) = serve(lang, &receiver, &with).await;
    let client = reqwest::Client::new();
    let event = send(
        &client,
        &server.base,
        &json!({"ref": "refs/heads/main", "after": "abc123", "pusher": {"name": "alice"}}),
    )
    .await;
    let store = server.store().await;
    wait_done(&store, event, 1, Duration::from_secs(60)).await;
    let xs = store.executions_for_event(event).await.unwrap();
    assert_eq!(xs[0].status, ExecutionStatus::Succeeded, "{xs:#?}");
    assert_eq!(xs[0].attempts, 1);

    // HTTP: the receiver got the POST, with the event's summary and the execution's key.
    let req = receiver.one();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, format!("/{}", lang.name()));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("idempotency-key"),
        Some(xs[0].idempotency_key.as_str())
    );
    assert_eq!(
        req.json(),
        json!({"event": event.to_string(), "event_type": "push", "ref": "refs/heads/main", "from": lang.name()})
    );

    // Database: the row is committed in the SQLite file.
    let rows: Vec<(String, String, Option<String>, i64)> =
        sqlx::query_as("SELECT event_id, event_type, ref, status FROM pushes")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![(
            event.to_string(),
            "push".to_string(),
            Some("refs/heads/main".to_string()),
            200
        )]
    );

    // The stored attempt tells it all: log lines, the HTTP call, the SQL statement, the output.
    let attempts = attempts(&server, event);
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0];
    assert_eq!(a["outcome"], "succeeded", "{a:#}");
    let lines: Vec<(&str, &str)> = a["logs"]["lines"]
        .as_array()
        .expect("log lines")
        .iter()
        .map(|l| {
            (
                l["level"].as_str().unwrap_or(""),
                l["message"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let url = receiver.url(&format!("/{}", lang.name()));
    let first = format!(
        "{} plugin: event {event} (push from gh), attempt 1",
        lang.name()
    );
    let second = format!("POST {url} -> 200");
    assert_eq!(
        lines,
        vec![
            ("info", first.as_str()),
            ("debug", second.as_str()),
            ("info", "inserted 1 row(s) into pushes"),
        ],
        "{a:#}"
    );
    let calls = a["http_calls"].as_array().expect("http calls");
    assert_eq!(calls.len(), 1, "{a:#}");
    assert_eq!(calls[0]["method"], "POST");
    assert_eq!(calls[0]["url"], url);
    assert_eq!(calls[0]["status"], 200);
    let statements = a["db_statements"]["statements"]
        .as_array()
        .expect("statements");
    assert_eq!(statements.len(), 1, "{a:#}");
    assert_eq!(statements[0]["connection"], "app");
    assert_eq!(
        statements[0]["sql"],
        "INSERT INTO pushes (event_id, event_type, ref, status) VALUES (?, ?, ?, ?)"
    );
    assert_eq!(statements[0]["outcome"]["status"], "ok");
    assert_eq!(statements[0]["outcome"]["rows_affected"], 1);
    assert_eq!(
        a["output"],
        json!({"event": event.to_string(), "posted": url, "status": 200, "table": "pushes", "rows_affected": 1})
    );

    // And the text story names the same three things.
    let (code, text) = server.cli(&["logs", &event.to_string()]);
    assert_eq!(code, 0);
    for needle in [
        format!("log info: {} plugin: event {event}", lang.name()),
        format!("http POST {url} -> 200"),
        "db app: INSERT INTO pushes (event_id, event_type, ref, status) VALUES (?, ?, ?, ?) -> ok"
            .to_string(),
    ] {
        assert!(text.contains(&needle), "`{needle}` missing from:\n{text}");
    }

    pool.close().await;
    store.close().await;
    server.stop().await;
}

async fn example_without_a_table_fails_for_good(lang: Lang) {
    let receiver = Receiver::start().await;
    let with = format!("{{ url: \"{}\", connection: app }}", receiver.url("/never"));
    let (server, pool) = serve(lang, &receiver, &with).await;
    let client = reqwest::Client::new();
    let event = send(&client, &server.base, &json!({"ref": "refs/heads/main"})).await;
    let store = server.store().await;
    wait_done(&store, event, 1, Duration::from_secs(60)).await;
    let xs = store.executions_for_event(event).await.unwrap();
    // Dead after one attempt though the rule allows three: fatal errors are not retried.
    assert_eq!(xs[0].status, ExecutionStatus::Dead, "{xs:#?}");
    assert_eq!(xs[0].attempts, 1, "{xs:#?}");
    assert!(
        xs[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("input lacks `table`")),
        "{xs:#?}"
    );
    let attempts = attempts(&server, event);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "fatal", "{:#}", attempts[0]);
    assert!(receiver.seen().is_empty(), "nothing was sent");
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pushes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    pool.close().await;
    store.close().await;
    server.stop().await;
}

/// What `hookwise plugins new NAME --lang LANG` makes: the template with the SDK. Its build
/// script (with the compiler the example's build installed, so no network) makes a module that
/// `hookwise plugins inspect` says fits.
fn template_builds_and_fits(lang: Lang) {
    let (var, compiler) = lang.compiler_env();
    lang.wasm(); // installs the compiler
    let parent = tempfile::tempdir().unwrap();
    let status = Command::new(hookwise_bin())
        .args([
            "plugins",
            "new",
            "push-summary",
            "--lang",
            lang.name(),
            "--dir",
            "project",
        ])
        .current_dir(parent.path())
        .status()
        .expect("run hookwise plugins new");
    assert!(status.success());
    let project = parent.path().join("project");

    let script = project.as_path().join("build.sh");
    run_script(
        Command::new("bash")
            .arg(&script)
            .env(var, &compiler)
            .current_dir(project.as_path()),
        &script,
        "the compiler the example's build installed",
    );
    let wasm = project.as_path().join("push-summary.wasm");
    let out = Command::new(hookwise_bin())
        .args(["plugins", "inspect"])
        .arg(&wasm)
        .output()
        .expect("run hookwise plugins inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("fits: yes"), "{text}");
    assert!(text.contains("_start exported: yes"), "{text}");
    // The handler may POST its summary; it never touches a database.
    assert!(text.contains("needs: allow.http\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zig_example_logs_posts_and_inserts() {
    example_logs_posts_and_inserts(Lang::Zig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zig_example_without_a_table_fails_for_good() {
    example_without_a_table_fails_for_good(Lang::Zig).await;
}

#[test]
fn zig_template_builds_and_fits() {
    template_builds_and_fits(Lang::Zig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assemblyscript_example_logs_posts_and_inserts() {
    example_logs_posts_and_inserts(Lang::AssemblyScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assemblyscript_example_without_a_table_fails_for_good() {
    example_without_a_table_fails_for_good(Lang::AssemblyScript).await;
}

#[test]
fn assemblyscript_template_builds_and_fits() {
    template_builds_and_fits(Lang::AssemblyScript);
}
