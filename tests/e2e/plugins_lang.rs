//! The JavaScript (componentize-js) and Python (componentize-py) example
//! plugins, built from pinned registry packages by
//! `plugins/examples/build-lang.sh`, run in the real plugin host: `fetch()`
//! through the HTTP grant, and the `log` import from Python.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hookwise::plugin_host::{
    CallContext, CallError, CallEvent, CallReport, ErrorKind, Grants, HostSettings, Limits,
    LoadedPlugin, LogLevel, LogStream, PluginHost, PluginSpec, WasmSource,
};
use serde_json::{Value, json};

use crate::plugins::{requests, test_server};

/// Memory one call of the JS or Python plugin may use; these calls peak at
/// about 9 MiB (SpiderMonkey) and 12 MiB (CPython).
const LANG_MEMORY_BYTES: u64 = 64 * 1024 * 1024;

/// Builds both language plugins once per test run into the test target's tmp dir (the
/// script skips up-to-date components); returns that dir.
fn lang_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/build-lang.sh");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lang-plugins");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed ({}); it needs node/npm and python3 (venv), and the npm registry and \
             PyPI on the first run.\nstdout:\n{}\nstderr:\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        out
    })
}

/// One host for the whole module, with a compile cache that outlives the run:
/// compiling SpiderMonkey or CPython takes seconds, loading them from the
/// cache milliseconds.
fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| {
        PluginHost::new(HostSettings {
            cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("lang-compile-cache")),
            max_instances: 8,
            max_memory_bytes: LANG_MEMORY_BYTES,
            ..HostSettings::default()
        })
        .expect("host")
    })
}

fn limits() -> Limits {
    Limits {
        memory_bytes: LANG_MEMORY_BYTES,
        timeout: Duration::from_secs(10),
        ..Limits::default()
    }
}

/// Loads `js.wasm` or `python.wasm`. Loads are serialised so that tests
/// starting together compile a component once and then hit the cache.
fn load(file: &str, grants: Grants) -> LoadedPlugin {
    static LOADING: Mutex<()> = Mutex::new(());
    let path = lang_dir().join(file);
    let _one_at_a_time = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    host()
        .load(PluginSpec {
            name: file.trim_end_matches(".wasm").to_string(),
            wasm: WasmSource::Path(path),
            limits: limits(),
            grants,
        })
        .unwrap_or_else(|e| panic!("{file} loads: {e}"))
}

fn ctx() -> CallContext {
    CallContext {
        rule_id: "rule-lang".into(),
        action_index: 2,
        attempt: 3,
        idempotency_key: "idem-lang-7".into(),
    }
}

fn event() -> CallEvent {
    CallEvent {
        id: "evt-lang".into(),
        source: "github".into(),
        event_type: "push".into(),
        received_at: "2026-01-01T00:00:00Z".into(),
        headers: vec![],
        payload_json: "{}".into(),
    }
}

async fn call(plugin: &LoadedPlugin, input: Value) -> CallReport {
    host().call(plugin, ctx(), event(), input.to_string()).await
}

fn output(report: &CallReport) -> Value {
    match &report.result {
        Ok(out) => serde_json::from_str(out).expect("output is JSON"),
        Err(e) => panic!("call failed: {e:?}; logs: {:?}", report.logs),
    }
}

fn http_grant(entry: String) -> Grants {
    Grants {
        http: vec![entry],
        db: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_fetch_reaches_a_granted_server() {
    let (addr, seen) = test_server().await;
    let plugin = load(
        "js.wasm",
        http_grant(format!("http://127.0.0.1:{}", addr.port())),
    );
    let url = format!("http://127.0.0.1:{}/echo?from=js", addr.port());
    let report = call(&plugin, json!({ "url": url })).await;
    assert_eq!(
        output(&report),
        json!({"status": 200, "body": "hello from the test server"})
    );
    let requests = requests(&seen);
    assert_eq!(
        requests,
        vec![("/echo?from=js".to_string(), Some("idem-lang-7".to_string()))]
    );
    assert_eq!(report.http_calls.len(), 1, "{:?}", report.http_calls);
    assert_eq!(report.http_calls[0].status, Some(200));
    assert!(!report.http_calls[0].refused);
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.level == LogLevel::Info && l.message.contains("GET http://127.0.0.1")),
        "{:?}",
        report.logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_fetch_to_a_server_not_granted_is_refused() {
    let (addr, seen) = test_server().await;
    // Another port on the same address is granted, this one is not.
    let plugin = load(
        "js.wasm",
        http_grant(format!("http://127.0.0.1:{}", addr.port().wrapping_add(1))),
    );
    let url = format!("http://127.0.0.1:{}/echo", addr.port());
    let report = call(&plugin, json!({ "url": url })).await;
    match &report.result {
        Err(CallError::Plugin {
            kind: ErrorKind::Retryable,
            message,
            retry_after,
        }) => {
            assert!(
                message.contains(&format!("fetch {url} failed")),
                "{message}"
            );
            assert_eq!(*retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected the plugin's retryable error, got {other:?}"),
    }
    assert_eq!(report.http_calls.len(), 1, "{:?}", report.http_calls);
    assert!(report.http_calls[0].refused, "{:?}", report.http_calls[0]);
    assert!(seen.seen().is_empty(), "nothing reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_plugin_echoes_and_logs() {
    let plugin = load("python.wasm", Grants::default());
    let report = call(&plugin, json!({"greeting": "hi"})).await;
    assert_eq!(
        output(&report),
        json!({
            "rule_id": "rule-lang",
            "action_index": 2,
            "attempt": 3,
            "idempotency_key": "idem-lang-7",
            "event_id": "evt-lang",
            "event_type": "push",
            "input": {"greeting": "hi"},
        })
    );
    let lines: Vec<_> = report
        .logs
        .iter()
        .filter(|l| l.message.contains("python plugin"))
        .collect();
    assert_eq!(lines.len(), 1, "{:?}", report.logs);
    assert_eq!(lines[0].level, LogLevel::Info);
    assert_eq!(lines[0].stream, LogStream::Log);
    assert_eq!(lines[0].message, "python plugin: event evt-lang attempt 3");
}
