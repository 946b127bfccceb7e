//! The JavaScript (componentize-js) and Python (componentize-py) example
//! plugins, built from pinned registry packages by
//! `plugins/examples/build-lang.sh`, run in the real plugin host without a
//! database (the example's cheap path: log and POST): `fetch()` and Python's
//! `wasi:http` helper through the HTTP grant, refusals, and the `log` import.
//! `lang_examples` runs them through `serve` with a database too.

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hookwise::plugin_host::{
    CallContext, CallError, CallEvent, CallReport, ErrorKind, Grants, HostSettings, Limits,
    LoadedPlugin, LogLevel, LogStream, PluginHost, PluginSpec, WasmSource,
};
use serde_json::{Value, json};

use crate::lang_examples::Lang;
use crate::plugins::{requests, test_server};

/// Memory one call of the JS or Python plugin may use; these calls peak at
/// about 9 MiB (SpiderMonkey) and 12 MiB (CPython).
const LANG_MEMORY_BYTES: u64 = 64 * 1024 * 1024;

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
    let path = match file {
        "js.wasm" => Lang::Js.example(),
        _ => Lang::Python.example(),
    }
    .to_path_buf();
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

/// The line the examples log for `event()` (an empty payload) at attempt 3.
fn expected_line(lang: &str) -> String {
    format!("{lang} plugin: someone pushed 0 commit(s) to unknown (event evt-lang, attempt 3)")
}

/// A call of the example `file` with only a `url`: one POST of the summary to the test
/// server (with the call's idempotency key), recorded, logged and answered.
async fn posts_to_a_granted_server(file: &str, lang: &str) {
    let (addr, seen) = test_server().await;
    let plugin = load(
        file,
        http_grant(format!("http://127.0.0.1:{}", addr.port())),
    );
    let url = format!("http://127.0.0.1:{}/echo?from={lang}", addr.port());
    let report = call(&plugin, json!({ "url": url })).await;
    assert_eq!(
        output(&report),
        json!({
            "posted": {"url": url, "status": 200},
            "text": "someone pushed 0 commit(s) to unknown",
        })
    );
    assert_eq!(
        requests(&seen),
        vec![(
            format!("/echo?from={lang}"),
            Some("idem-lang-7".to_string())
        )]
    );
    let request = seen.one();
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        json!({
            "text": "someone pushed 0 commit(s) to unknown",
            "repository": "unknown",
            "ref": "",
            "after": "",
            "event_id": "evt-lang",
        })
    );
    assert_eq!(report.http_calls.len(), 1, "{:?}", report.http_calls);
    assert_eq!(report.http_calls[0].method, "POST");
    assert_eq!(report.http_calls[0].status, Some(200));
    assert!(!report.http_calls[0].refused);
    assert!(
        report.db_statements.is_empty(),
        "{:?}",
        report.db_statements
    );
    let lines: Vec<_> = report
        .logs
        .iter()
        .filter(|l| l.level == LogLevel::Info)
        .collect();
    assert_eq!(lines.len(), 1, "{:?}", report.logs);
    assert_eq!(lines[0].stream, LogStream::Log);
    assert_eq!(lines[0].message, expected_line(lang));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_fetch_reaches_a_granted_server() {
    posts_to_a_granted_server("js.wasm", "js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_reaches_a_granted_server() {
    posts_to_a_granted_server("python.wasm", "python").await;
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
async fn python_http_to_a_server_not_granted_is_refused() {
    let (addr, seen) = test_server().await;
    let plugin = load(
        "python.wasm",
        http_grant(format!("http://127.0.0.1:{}", addr.port().wrapping_add(1))),
    );
    let url = format!("http://127.0.0.1:{}/echo", addr.port());
    let report = call(&plugin, json!({ "url": url })).await;
    match &report.result {
        Err(CallError::Plugin {
            kind: ErrorKind::Retryable,
            message,
            ..
        }) => {
            // The host's error code, as componentize-py names it.
            assert!(
                message.starts_with(&format!("POST {url}: ")) && message.contains("Denied"),
                "{message}"
            );
        }
        other => panic!("expected the plugin's retryable error, got {other:?}"),
    }
    assert_eq!(report.http_calls.len(), 1, "{:?}", report.http_calls);
    assert!(report.http_calls[0].refused, "{:?}", report.http_calls[0]);
    assert!(seen.seen().is_empty(), "nothing reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_input_without_a_url_is_fatal() {
    let plugin = load("python.wasm", Grants::default());
    let report = call(&plugin, json!({"greeting": "hi"})).await;
    match &report.result {
        Err(CallError::Plugin {
            kind: ErrorKind::Fatal,
            message,
            retry_after: None,
        }) => assert_eq!(message, "input.url is missing"),
        other => panic!("expected the plugin's fatal error, got {other:?}"),
    }
    assert!(report.http_calls.is_empty(), "{:?}", report.http_calls);
}
