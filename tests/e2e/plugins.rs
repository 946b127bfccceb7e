//! Integration tests of the plugin host against real components built from
//! `plugins/examples` (no mocks): limits, containment, HTTP grants, DB
//! exactly-once, the compile cache and the command-module ABI.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookwise::plugin_host::{
    CallContext, CallError, CallEvent, CallReport, DbExecutor, DbStatementOutcome,
    DbTransactionOutcome, ErrorKind, Grants, HostError, HostSettings, LOG_TRUNCATED_MARKER, Limits,
    LoadedPlugin, PluginAbi, PluginHost, PluginSpec, SqlExecutor, SqlPool, WasmSource,
};
use serde_json::{Value, json};

use crate::support::{Answer, Backend, Receiver, TempDb, TempPostgres, on_every_backend, wasm};

fn settings() -> HostSettings {
    HostSettings {
        max_instances: 16,
        max_memory_bytes: 128 * 1024 * 1024,
        ..HostSettings::default()
    }
}

fn host() -> PluginHost {
    PluginHost::new(settings()).expect("host")
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 32 * 1024 * 1024,
        timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

fn load(host: &PluginHost, name: &str, limits: Limits, grants: Grants) -> LoadedPlugin {
    host.load(PluginSpec {
        name: name.to_string(),
        wasm: WasmSource::Path(wasm(name)),
        limits,
        grants,
    })
    .expect("plugin loads")
}

fn ctx(key: &str) -> CallContext {
    CallContext {
        rule_id: "rule-1".into(),
        action_index: 0,
        attempt: 1,
        idempotency_key: key.into(),
    }
}

fn event() -> CallEvent {
    CallEvent {
        id: "evt-1".into(),
        source: "github".into(),
        event_type: "push".into(),
        received_at: "2026-01-01T00:00:00Z".into(),
        headers: vec![("x-github-event".into(), "push".into())],
        payload_json: r#"{"ref":"refs/heads/main"}"#.into(),
    }
}

async fn call(host: &PluginHost, plugin: &LoadedPlugin, input: Value) -> CallReport {
    call_with_key(host, plugin, input, "key-1").await
}

async fn call_with_key(
    host: &PluginHost,
    plugin: &LoadedPlugin,
    input: Value,
    key: &str,
) -> CallReport {
    host.call(plugin, ctx(key), event(), input.to_string())
        .await
}

fn output(report: &CallReport) -> Value {
    match &report.result {
        Ok(out) => serde_json::from_str(out).expect("output is JSON"),
        Err(e) => panic!("call failed: {e:?}; logs: {:?}", report.logs),
    }
}

// ---------- well-behaved plugins ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_plugin_returns_its_output() {
    let host = host();
    let noop = load(&host, "noop", limits(), Grants::default());
    assert_eq!(noop.abi(), PluginAbi::Component);
    let report = call(&host, &noop, json!({})).await;
    assert_eq!(report.result, Ok(r#"{"ok":true}"#.to_string()));
    assert!(report.logs.is_empty());
    assert!(report.memory_peak > 0);
    assert_eq!(report.fuel_used, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_sees_context_and_event() {
    let host = host();
    let plugin = load(&host, "hostile", limits(), Grants::default());
    let out = output(&call_with_key(&host, &plugin, json!({"mode": "ok"}), "abc").await);
    assert_eq!(
        out,
        json!({"ok": true, "attempt": 1, "key": "abc", "event": "evt-1"})
    );
}

/// Instance slots are reused (pooling allocator) and reset to the module's initial memory
/// (only the touched pages, where the kernel has PAGEMAP_SCAN): nothing of one call may be
/// visible to the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_starts_from_fresh_memory() {
    let host = host();
    let plugin = load(&host, "hostile", limits(), Grants::default());
    for _ in 0..5 {
        let out = output(&call(&host, &plugin, json!({"mode": "remember"})).await);
        assert_eq!(out, json!({"calls_before": 0, "dirty_words": 0}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_a_fatal_plugin_error() {
    let host = host();
    let plugin = load(&host, "hostile", limits(), Grants::default());
    let report = call(&host, &plugin, json!({"mode": "no-such-mode"})).await;
    assert!(
        matches!(&report.result, Err(CallError::Plugin { kind: ErrorKind::Fatal, message, .. }) if message.contains("invalid input")),
        "{:?}",
        report.result
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_error_carries_retry_hint() {
    let host = host();
    let plugin = load(&host, "hostile", limits(), Grants::default());
    let report = call(&host, &plugin, json!({"mode": "retryable"})).await;
    assert_eq!(
        report.result,
        Err(CallError::Plugin {
            kind: ErrorKind::Retryable,
            message: "try later".into(),
            retry_after: Some(Duration::from_millis(1500)),
        })
    );
}

// ---------- hostile plugins ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_times_out() {
    let host = host();
    let plugin = load(
        &host,
        "hostile",
        Limits {
            timeout: Duration::from_millis(300),
            ..limits()
        },
        Grants::default(),
    );
    let report = call(&host, &plugin, json!({"mode": "loop"})).await;
    assert_eq!(report.result, Err(CallError::Timeout));
    assert!(
        report.duration < Duration::from_secs(3),
        "{:?}",
        report.duration
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_memory_cap() {
    let host = host();
    let cap = 16 * 1024 * 1024;
    let plugin = load(
        &host,
        "hostile",
        Limits {
            memory_bytes: cap,
            ..limits()
        },
        Grants::default(),
    );
    let report = call(&host, &plugin, json!({"mode": "memory"})).await;
    assert_eq!(report.result, Err(CallError::MemoryExceeded));
    assert!(
        report.memory_peak <= cap && report.memory_peak > cap / 2,
        "{}",
        report.memory_peak
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_traps() {
    let host = host();
    let plugin = load(&host, "hostile", limits(), Grants::default());
    // Rust keeps address-taken locals on a shadow stack in linear memory;
    // overflowing it runs off the bottom of memory.
    let shadow = call(&host, &plugin, json!({"mode": "recursion"})).await;
    match &shadow.result {
        Err(CallError::Trap(msg)) => assert!(msg.contains("out of bounds"), "{msg}"),
        other => panic!("expected an out-of-bounds trap, got {other:?}"),
    }
    let native = call(&host, &plugin, json!({"mode": "native-recursion"})).await;
    match &native.result {
        Err(CallError::Trap(msg)) => assert!(msg.contains("stack"), "{msg}"),
        other => panic!("expected a stack overflow trap, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_output_is_refused() {
    let host = host();
    let plugin = load(
        &host,
        "hostile",
        Limits {
            max_output_bytes: 1024,
            ..limits()
        },
        Grants::default(),
    );
    let small = call(&host, &plugin, json!({"mode": "big-output", "bytes": 100})).await;
    assert!(small.result.is_ok());
    let big = call(
        &host,
        &plugin,
        json!({"mode": "big-output", "bytes": 10_000}),
    )
    .await;
    assert_eq!(big.result, Err(CallError::OutputTooLarge));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_flood_is_truncated_with_a_marker() {
    let host = host();
    let max_log_bytes = 4096;
    let plugin = load(
        &host,
        "hostile",
        Limits {
            max_log_bytes,
            max_log_lines: 100,
            ..limits()
        },
        Grants::default(),
    );
    let report = call(
        &host,
        &plugin,
        json!({"mode": "log-flood", "lines": 20_000, "line_bytes": 100}),
    )
    .await;
    assert_eq!(output(&report), json!({"logged": 20_000}));
    assert!(report.logs_truncated);
    let kept: usize = report.logs[..report.logs.len() - 1]
        .iter()
        .map(|l| l.message.len())
        .sum();
    assert!(kept <= max_log_bytes);
    assert!(report.logs.len() <= 101);
    let last = report
        .logs
        .last()
        .map(|l| l.message.clone())
        .unwrap_or_default();
    assert!(last.starts_with(LOG_TRUNCATED_MARKER), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_and_panic_are_reported_as_traps() {
    let host = host();
    let plugin = load(&host, "hostile", limits(), Grants::default());
    let trap = call(&host, &plugin, json!({"mode": "trap"})).await;
    assert!(
        matches!(&trap.result, Err(CallError::Trap(m)) if m.contains("unreachable")),
        "{:?}",
        trap.result
    );
    let panic = call(&host, &plugin, json!({"mode": "panic"})).await;
    match &panic.result {
        Err(CallError::Trap(m)) => assert!(m.contains("panics on purpose"), "{m}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(
        panic
            .logs
            .iter()
            .any(|l| l.message.contains("panics on purpose"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_has_no_files_env_or_args() {
    let host = host();
    let plugin = load(&host, "hostile", limits(), Grants::default());
    let out = output(&call(&host, &plugin, json!({"mode": "snoop"})).await);
    assert_eq!(out["file"], json!(false), "{out}");
    assert_eq!(out["dir"], json!(false), "{out}");
    assert_eq!(out["env"], json!([]));
    assert_eq!(out["home"], Value::Null);
    assert_eq!(out["args"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_is_counted_and_enforced() {
    let host = PluginHost::new(HostSettings {
        consume_fuel: true,
        ..settings()
    })
    .expect("host");
    let plugin = load(
        &host,
        "hostile",
        Limits {
            fuel: Some(5_000_000),
            ..limits()
        },
        Grants::default(),
    );
    let ok = call(&host, &plugin, json!({"mode": "ok"})).await;
    assert!(ok.result.is_ok());
    assert!(
        ok.fuel_used.is_some_and(|f| f > 0 && f < 5_000_000),
        "{:?}",
        ok.fuel_used
    );
    let looped = call(&host, &plugin, json!({"mode": "loop"})).await;
    assert_eq!(looped.result, Err(CallError::FuelExhausted));
}

/// Hostile calls run next to well-behaved ones on a single-threaded
/// runtime: the epoch callback yields, so the good calls finish long before
/// the bad ones are stopped.
#[tokio::test(flavor = "current_thread")]
async fn hostile_calls_do_not_disturb_a_concurrent_good_call() {
    let host = host();
    let slow = Limits {
        timeout: Duration::from_secs(2),
        memory_bytes: 16 * 1024 * 1024,
        ..limits()
    };
    let hostile = load(&host, "hostile", slow, Grants::default());
    let noop = load(&host, "noop", limits(), Grants::default());
    let started = Instant::now();
    let mut bad = Vec::new();
    for mode in ["loop", "memory", "recursion", "trap", "panic"] {
        let (host, plugin) = (host.clone(), hostile.clone());
        bad.push(tokio::spawn(async move {
            let r = call(&host, &plugin, json!({"mode": mode})).await;
            (mode, r.result, started.elapsed())
        }));
    }
    let mut good_done = Duration::ZERO;
    for _ in 0..5 {
        let r = call(&host, &noop, json!({})).await;
        assert_eq!(r.result, Ok(r#"{"ok":true}"#.to_string()));
        good_done = started.elapsed();
    }
    for task in bad {
        let (mode, result, finished) = task.await.expect("task");
        assert!(result.is_err(), "{mode} should fail");
        if mode == "loop" {
            assert_eq!(result, Err(CallError::Timeout));
            assert!(
                good_done < finished,
                "good calls finished at {good_done:?}, loop at {finished:?}"
            );
        }
    }
}

// ---------- HTTP ----------

/// A capturing receiver on 127.0.0.1 (shared with `plugins_lang`): `/echo` answers a fixed
/// text, `/big` answers 100 kB, `/slow` answers after 5 s.
pub(crate) async fn test_server() -> (SocketAddr, Receiver) {
    let receiver = Receiver::start().await;
    receiver.route("/echo", Answer::new(200, "hello from the test server"));
    receiver.route("/big", Answer::new(200, &"b".repeat(100_000)));
    receiver.route(
        "/slow",
        Answer::new(200, "too late").after(Duration::from_secs(5)),
    );
    (receiver.addr, receiver)
}

/// (path and query, Idempotency-Key header) of each request `receiver` saw.
pub(crate) fn requests(receiver: &Receiver) -> Vec<(String, Option<String>)> {
    receiver
        .seen()
        .iter()
        .map(|r| {
            let target = match &r.query {
                Some(q) => format!("{}?{q}", r.path),
                None => r.path.clone(),
            };
            (target, r.header("idempotency-key").map(str::to_string))
        })
        .collect()
}

fn http_grants(entries: &[String]) -> Grants {
    Grants {
        http: entries.to_vec(),
        db: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_granted_address_works_and_is_recorded() {
    let (addr, seen) = test_server().await;
    let host = host();
    let plugin = load(
        &host,
        "hostile",
        limits(),
        http_grants(&[format!("http://{addr}")]),
    );
    let url = format!("http://{addr}/echo?token=secret");
    let report = call_with_key(
        &host,
        &plugin,
        json!({"mode": "http", "method": "GET", "url": url}),
        "idem-42",
    )
    .await;
    assert_eq!(
        output(&report),
        json!({"status": 200, "body": "hello from the test server"})
    );
    let requests = requests(&seen);
    assert_eq!(
        requests,
        vec![(
            "/echo?token=secret".to_string(),
            Some("idem-42".to_string())
        )]
    );
    assert_eq!(report.http_calls.len(), 1);
    let rec = &report.http_calls[0];
    assert_eq!(rec.method, "GET");
    assert_eq!(rec.url, format!("http://{addr}/echo"));
    assert_eq!(rec.status, Some(200));
    assert!(!rec.refused);
    assert_eq!(
        rec.response_bytes,
        "hello from the test server".len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refusals_happen_before_connecting() {
    let (addr, seen) = test_server().await;
    let port = addr.port();
    let host = host();
    // (grant, url, why)
    let cases: Vec<(Vec<String>, String, &str)> = vec![
        (
            vec![],
            format!("http://127.0.0.1:{port}/echo"),
            "loopback without grant",
        ),
        (
            vec![format!("http://127.0.0.1:{}", port.wrapping_add(1))],
            format!("http://127.0.0.1:{port}/echo"),
            "other port granted",
        ),
        (
            vec![format!("POST http://127.0.0.1:{port}")],
            format!("http://127.0.0.1:{port}/echo"),
            "method not granted",
        ),
        (
            vec![],
            format!("http://[::1]:{port}/echo"),
            "ipv6 loopback without grant",
        ),
        (
            vec!["http://10.0.0.1".into()],
            "http://10.0.0.1/".into(),
            "private address granted by name only",
        ),
        (
            vec![],
            "http://10.0.0.1/".into(),
            "private address not granted",
        ),
        (
            vec!["http://169.254.169.254".into()],
            "http://169.254.169.254/latest/meta-data/".into(),
            "metadata address",
        ),
        (
            vec![format!("http://localhost:{port}")],
            format!("http://localhost:{port}/echo"),
            "name resolving to loopback",
        ),
        (
            vec!["http://api.example.com".into()],
            "http://other.example.org/".into(),
            "host not granted",
        ),
        (
            vec!["http://*.example.com".into()],
            "http://example.com/".into(),
            "wildcard does not cover the apex",
        ),
    ];
    for (grants, url, why) in cases {
        let plugin = load(&host, "hostile", limits(), http_grants(&grants));
        let report = call(
            &host,
            &plugin,
            json!({"mode": "http", "method": "GET", "url": url}),
        )
        .await;
        match &report.result {
            Err(CallError::Plugin {
                kind: ErrorKind::Retryable,
                message,
                ..
            }) => assert!(
                message.contains("HttpRequestDenied")
                    || message.contains("DestinationIpProhibited"),
                "{why}: {message}"
            ),
            other => panic!("{why}: expected a refusal, got {other:?}"),
        }
        assert_eq!(report.http_calls.len(), 1, "{why}");
        assert!(
            report.http_calls[0].refused,
            "{why}: {:?}",
            report.http_calls[0]
        );
    }
    assert!(seen.seen().is_empty(), "nothing reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_response_size_is_capped() {
    let (addr, _seen) = test_server().await;
    let host = host();
    let plugin = load(
        &host,
        "hostile",
        Limits {
            max_http_response_bytes: 1000,
            ..limits()
        },
        http_grants(&[format!("http://{addr}")]),
    );
    let report = call(
        &host,
        &plugin,
        json!({"mode": "http", "method": "GET", "url": format!("http://{addr}/big")}),
    )
    .await;
    assert!(
        matches!(&report.result, Err(CallError::Plugin { .. })),
        "{:?}",
        report.result
    );
    assert!(
        report.http_calls[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("body size")),
        "{:?}",
        report.http_calls
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_time_is_capped() {
    let (addr, _seen) = test_server().await;
    let host = host();
    let plugin = load(
        &host,
        "hostile",
        Limits {
            http_timeout: Duration::from_millis(300),
            ..limits()
        },
        http_grants(&[format!("http://{addr}")]),
    );
    let started = Instant::now();
    let report = call(
        &host,
        &plugin,
        json!({"mode": "http", "method": "GET", "url": format!("http://{addr}/slow")}),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(
            &report.result,
            Err(CallError::Plugin {
                kind: ErrorKind::Retryable,
                ..
            })
        ),
        "{:?}",
        report.result
    );
    assert!(
        report.http_calls[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timeout")),
        "{:?}",
        report.http_calls
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_count_is_capped() {
    let (addr, _seen) = test_server().await;
    let host = host();
    let plugin = load(
        &host,
        "hostile",
        Limits {
            max_http_requests: 0,
            ..limits()
        },
        http_grants(&[format!("http://{addr}")]),
    );
    let report = call(
        &host,
        &plugin,
        json!({"mode": "http", "method": "GET", "url": format!("http://{addr}/echo")}),
    )
    .await;
    assert!(report.result.is_err());
    assert!(report.http_calls[0].refused);
}

// ---------- DB ----------

/// A host whose connection `app` is a fresh database of one backend, holding
/// `items (id, name TEXT NOT NULL, qty BIGINT NULL)`.
struct DbFixture {
    backend: Backend,
    host: PluginHost,
    /// An independent handle for checking what was committed.
    pool: SqlPool,
    db: TempDb,
}

impl DbFixture {
    async fn new(backend: Backend) -> DbFixture {
        let db = TempDb::create(backend, "app.db").await;
        let (url, items) = match backend {
            Backend::Sqlite => (
                db.url().to_string(),
                "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)",
            ),
            Backend::Postgres => (
                db.url().to_string(),
                "CREATE TABLE items (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, qty BIGINT)",
            ),
            // Exercise the `mariadb://` spelling too.
            Backend::MySql => (
                db.url().replacen("mysql://", "mariadb://", 1),
                "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
                 name TEXT NOT NULL, qty BIGINT) ENGINE=InnoDB",
            ),
        };
        let pool: SqlPool = match backend {
            Backend::Sqlite => sqlx::SqlitePool::connect(&url)
                .await
                .expect("sqlite")
                .into(),
            Backend::Postgres => sqlx::PgPool::connect(&url).await.expect("postgres").into(),
            Backend::MySql => sqlx::MySqlPool::connect(&url.replacen("mariadb://", "mysql://", 1))
                .await
                .expect("mysql")
                .into(),
        };
        match &pool {
            SqlPool::Sqlite(p) => sqlx::query(items).execute(p).await.map(|_| ()),
            SqlPool::Postgres(p) => sqlx::query(items).execute(p).await.map(|_| ()),
            SqlPool::MySql(p) => sqlx::query(items).execute(p).await.map(|_| ()),
        }
        .expect("create items");
        let mut exec = SqlExecutor::new();
        exec.connect("app", &url).await.expect("connect app");
        let executor: Arc<dyn DbExecutor> = Arc::new(exec);
        let host = PluginHost::new(HostSettings {
            db: Some(executor),
            ..settings()
        })
        .expect("host");
        DbFixture {
            backend,
            host,
            pool,
            db,
        }
    }

    /// `sql` written with `?` placeholders, in the fixture's dialect.
    fn sql(&self, sql: &str) -> String {
        if self.backend != Backend::Postgres {
            return sql.to_string();
        }
        let mut out = String::new();
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }

    async fn count(&self, sql: &str) -> i64 {
        match &self.pool {
            SqlPool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            SqlPool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            SqlPool::MySql(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .expect("count")
    }

    async fn names(&self) -> Vec<String> {
        let sql = "SELECT name FROM items ORDER BY id";
        match &self.pool {
            SqlPool::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            SqlPool::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            SqlPool::MySql(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        }
        .expect("names")
    }

    /// Closes every handle and drops the database.
    async fn close(self) {
        let DbFixture { host, pool, db, .. } = self;
        drop(host);
        match pool {
            SqlPool::Sqlite(p) => p.close().await,
            SqlPool::Postgres(p) => p.close().await,
            SqlPool::MySql(p) => p.close().await,
        }
        db.drop_db().await;
    }
}

fn db_grants() -> Grants {
    Grants {
        http: vec![],
        db: vec!["app".into()],
    }
}

on_every_backend!(
    every_backend [sqlite, postgres, mysql]:
    db_writes_apply_once_per_idempotency_key,
    concurrent_attempts_with_one_key_apply_once,
    failing_statement_rolls_back_everything,
    failed_call_rolls_back_db_writes,
    injection_looking_values_are_bound_verbatim,
    db_statement_and_row_limits,
    hostile_sql_is_refused_before_it_runs,
);

async fn db_writes_apply_once_per_idempotency_key(backend: Backend) {
    let fx = DbFixture::new(backend).await;
    let plugin = load(&fx.host, "hostile", limits(), db_grants());
    let input = json!({"mode": "db", "connection": "app", "statements": [
        {"sql": fx.sql("INSERT INTO items (name, qty) VALUES (?, ?)"), "params": ["first", null]},
        {"sql": fx.sql("SELECT name, qty FROM items WHERE name = ?"), "params": ["first"]},
    ]});
    let first = call_with_key(&fx.host, &plugin, input.clone(), "exec-1").await;
    let out = output(&first);
    assert_eq!(out["results"][0]["rows_affected"], json!(1));
    assert_eq!(
        out["results"][1]["rows"],
        json!([{"name": "first", "qty": null}])
    );
    assert_eq!(
        first.db_transactions[0].outcome,
        DbTransactionOutcome::Committed
    );
    assert_eq!(first.db_statements.len(), 2);

    let second = call_with_key(&fx.host, &plugin, input.clone(), "exec-1").await;
    let out = output(&second);
    assert_eq!(out["results"][0], json!({"already_applied": true}));
    assert_eq!(
        second.db_transactions[0].outcome,
        DbTransactionOutcome::AlreadyApplied
    );
    assert_eq!(fx.count("SELECT COUNT(*) FROM items").await, 1);

    // Keys are compared exactly (MySQL's default collation would fold case).
    for key in ["exec-2", "EXEC-1", "exec-1 "] {
        let other = call_with_key(&fx.host, &plugin, input.clone(), key).await;
        assert!(other.result.is_ok(), "{key}: {:?}", other.result);
    }
    assert_eq!(fx.count("SELECT COUNT(*) FROM items").await, 4);
    assert_eq!(fx.count("SELECT COUNT(*) FROM hookwise_effects").await, 4);
    fx.close().await;
}

async fn concurrent_attempts_with_one_key_apply_once(backend: Backend) {
    let fx = DbFixture::new(backend).await;
    let plugin = load(&fx.host, "hostile", limits(), db_grants());
    let mut statements = vec![json!({"sql": "INSERT INTO items (name) VALUES ('once')"})];
    // Hold the transaction open a little so that the attempts overlap.
    match backend {
        Backend::Postgres => {
            statements.push(json!({"sql": "SELECT 1 AS slept FROM pg_sleep(0.2)"}))
        }
        Backend::MySql => statements.push(json!({"sql": "SELECT SLEEP(0.2) AS slept"})),
        Backend::Sqlite => {}
    }
    let input = json!({"mode": "db", "connection": "app", "statements": statements});
    let attempts: Vec<_> = (0..4)
        .map(|_| {
            let (host, plugin, input) = (fx.host.clone(), plugin.clone(), input.clone());
            tokio::spawn(async move { call_with_key(&host, &plugin, input, "same-key").await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        let report = attempt.await.expect("task");
        assert!(report.result.is_ok(), "{:?}", report.result);
        outcomes.push(report.db_transactions[0].outcome.clone());
    }
    let committed = outcomes
        .iter()
        .filter(|o| **o == DbTransactionOutcome::Committed)
        .count();
    assert_eq!(committed, 1, "{outcomes:?}");
    assert_eq!(fx.count("SELECT COUNT(*) FROM items").await, 1);
    fx.close().await;
}

async fn failing_statement_rolls_back_everything(backend: Backend) {
    let fx = DbFixture::new(backend).await;
    let plugin = load(&fx.host, "hostile", limits(), db_grants());
    let bad = json!({"mode": "db", "connection": "app", "ignore_errors": true, "statements": [
        {"sql": fx.sql("INSERT INTO items (name) VALUES (?)"), "params": ["kept?"]},
        {"sql": "INSERT INTO missing_table (x) VALUES (1)"},
        {"sql": "INSERT INTO items (name) VALUES ('after')"},
    ]});
    let report = call_with_key(&fx.host, &plugin, bad, "exec-9").await;
    // The plugin swallowed the error and returned Ok; the host still refuses
    // to count the call as a success because nothing was committed.
    assert!(
        matches!(&report.result, Err(CallError::Db(m)) if m.contains("missing_table")),
        "{:?}",
        report.result
    );
    assert_eq!(
        report.db_transactions[0].outcome,
        DbTransactionOutcome::RolledBack
    );
    assert_eq!(fx.count("SELECT COUNT(*) FROM items").await, 0);
    assert_eq!(fx.count("SELECT COUNT(*) FROM hookwise_effects").await, 0);

    // The key was not consumed: a corrected retry applies.
    let good = json!({"mode": "db", "connection": "app", "statements": [
        {"sql": fx.sql("INSERT INTO items (name) VALUES (?)"), "params": ["retried"]},
    ]});
    let retry = call_with_key(&fx.host, &plugin, good, "exec-9").await;
    assert!(retry.result.is_ok(), "{:?}", retry.result);
    assert_eq!(fx.names().await, vec!["retried".to_string()]);
    fx.close().await;
}

async fn failed_call_rolls_back_db_writes(backend: Backend) {
    let fx = DbFixture::new(backend).await;
    let plugin = load(&fx.host, "hostile", limits(), db_grants());
    // The second statement fails (NOT NULL); the plugin returns a fatal error.
    let input = json!({"mode": "db", "connection": "app", "statements": [
        {"sql": "INSERT INTO items (name) VALUES ('x')"},
        {"sql": fx.sql("INSERT INTO items (name) VALUES (?)"), "params": [null]},
    ]});
    let report = call(&fx.host, &plugin, input).await;
    assert!(
        matches!(
            report.result,
            Err(CallError::Plugin {
                kind: ErrorKind::Fatal,
                ..
            })
        ),
        "{:?}",
        report.result
    );
    assert_eq!(fx.count("SELECT COUNT(*) FROM items").await, 0);
    assert_eq!(fx.count("SELECT COUNT(*) FROM hookwise_effects").await, 0);
    fx.close().await;
}

async fn injection_looking_values_are_bound_verbatim(backend: Backend) {
    let fx = DbFixture::new(backend).await;
    let plugin = load(&fx.host, "hostile", limits(), db_grants());
    let hostile = [
        "x'); DROP TABLE items; --",
        "' OR '1'='1",
        "Robert\"); DELETE FROM hookwise_effects; --",
        "$1 ? \\' \\\\",
    ];
    let mut statements: Vec<Value> = hostile
        .iter()
        .map(|v| json!({"sql": fx.sql("INSERT INTO items (name) VALUES (?)"), "params": [v]}))
        .collect();
    statements.push(json!({
        "sql": fx.sql("SELECT COUNT(*) AS n FROM items WHERE name = ?"),
        "params": ["' OR '1'='1"],
    }));
    let input = json!({"mode": "db", "connection": "app", "statements": statements});
    let out = output(&call_with_key(&fx.host, &plugin, input, "inject").await);
    assert_eq!(out["results"][4]["rows"], json!([{"n": 1}]));
    assert_eq!(fx.names().await, hostile.map(String::from).to_vec());
    assert_eq!(fx.count("SELECT COUNT(*) FROM hookwise_effects").await, 1);
    fx.close().await;
}

async fn db_statement_and_row_limits(backend: Backend) {
    let fx = DbFixture::new(backend).await;
    let plugin = load(
        &fx.host,
        "hostile",
        Limits {
            max_db_statements: 2,
            max_db_rows: 2,
            ..limits()
        },
        db_grants(),
    );
    let rows = json!({"mode": "db", "connection": "app", "statements": [
        {"sql": "INSERT INTO items (name) VALUES ('a'), ('b'), ('c')"},
        {"sql": "SELECT name FROM items ORDER BY name"},
    ]});
    let out = output(&call_with_key(&fx.host, &plugin, rows, "rows").await);
    assert_eq!(out["results"][0]["rows_affected"], json!(3));
    assert_eq!(
        out["results"][1]["rows"],
        json!([{"name": "a"}, {"name": "b"}])
    );
    assert_eq!(out["results"][1]["truncated"], json!(true));

    let too_many = json!({"mode": "db", "connection": "app", "statements": [
        {"sql": "INSERT INTO items (name) VALUES ('d')"},
        {"sql": "INSERT INTO items (name) VALUES ('e')"},
        {"sql": "INSERT INTO items (name) VALUES ('f')"},
    ]});
    let report = call_with_key(&fx.host, &plugin, too_many, "many").await;
    assert!(
        matches!(&report.result, Err(CallError::Plugin { message, .. }) if message.contains("statement limit")),
        "{:?}",
        report.result
    );
    assert_eq!(fx.count("SELECT COUNT(*) FROM items").await, 3);
    fx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_connection_must_be_granted() {
    let fx = DbFixture::new(Backend::Sqlite).await;
    let plugin = load(&fx.host, "hostile", limits(), Grants::default());
    let input = json!({"mode": "db", "connection": "app", "statements": [
        {"sql": "INSERT INTO items (name) VALUES ('x')"},
    ]});
    let report = call(&fx.host, &plugin, input).await;
    assert!(
        matches!(&report.result, Err(CallError::Plugin { message, .. }) if message.contains("not granted")),
        "{:?}",
        report.result
    );
    assert_eq!(fx.count("SELECT COUNT(*) FROM items").await, 0);
    fx.close().await;
}

/// Every statement a plugin granted `app` must not run, for `backend`: the guard refuses
/// each before it reaches the database, even though the tests connect as a superuser.
fn refused_statements(backend: Backend, dir: &std::path::Path) -> Vec<String> {
    let file = |name: &str| dir.join(name).display().to_string();
    let mut all: Vec<String> = [
        // Another database: hookwise's own store, in the SQLite case.
        format!("ATTACH DATABASE '{}' AS h", file("store.db")),
        "DETACH DATABASE h".to_string(),
        // Transactions belong to the host.
        "BEGIN".to_string(),
        "COMMIT".to_string(),
        "ROLLBACK".to_string(),
        "SAVEPOINT s".to_string(),
        "RELEASE SAVEPOINT s".to_string(),
        "PRAGMA writable_schema = ON".to_string(),
        "VACUUM".to_string(),
        format!("VACUUM INTO '{}'", file("vacuumed.db")),
        // Schema changes.
        "CREATE TABLE evil (a INTEGER)".to_string(),
        "DROP TABLE items".to_string(),
        "ALTER TABLE items ADD COLUMN z INTEGER".to_string(),
        "CREATE INDEX evil_idx ON items (name)".to_string(),
        // Several statements in one call.
        "INSERT INTO items (name) VALUES ('two'); DELETE FROM items".to_string(),
        "SELECT 1; SELECT 2".to_string(),
        // The host's exactly-once table, in every spelling.
        "SELECT * FROM hookwise_effects".to_string(),
        "DELETE FROM hookwise_effects".to_string(),
        "DELETE FROM HOOKWISE_EFFECTS".to_string(),
        "INSERT INTO hookwise_effects (idempotency_key) VALUES ('forged')".to_string(),
        "UPDATE hookwise_effects SET idempotency_key = 'x'".to_string(),
        "WITH d AS (SELECT idempotency_key FROM \"hookwise_effects\") SELECT * FROM d".to_string(),
        // Roles and sessions.
        "SET ROLE postgres".to_string(),
        "RESET ROLE".to_string(),
        "SET SESSION AUTHORIZATION postgres".to_string(),
        // Files, programs and extensions.
        "SELECT load_extension('/tmp/evil.so')".to_string(),
        format!("SELECT writefile('{}', 'x')", file("written")),
        format!("COPY items FROM PROGRAM 'touch {}'", file("program-ran")),
        format!("COPY items TO '{}'", file("copied")),
        "SELECT pg_read_file('/etc/passwd')".to_string(),
        "SELECT lo_import('/etc/passwd')".to_string(),
        format!("SELECT lo_export(1, '{}')", file("exported")),
        "SELECT set_config('role', 'postgres', false)".to_string(),
        "SELECT load_file('/etc/passwd')".to_string(),
        "LOAD DATA INFILE '/etc/passwd' INTO TABLE items".to_string(),
        format!("SELECT name FROM items INTO OUTFILE '{}'", file("outfile")),
        format!(
            "SELECT name FROM items INTO DUMPFILE '{}'",
            file("dumpfile")
        ),
    ]
    .into();
    match backend {
        Backend::Postgres => {
            all.push("SELECT * INTO evil FROM items".to_string());
            all.push("SELECT query_to_xml('select * from items', true, false, '')".to_string());
            all.push("SELECT * FROM U&\"hookwise\\005feffects\"".to_string());
            all.push("DO $$ BEGIN DELETE FROM items; END $$".to_string());
        }
        Backend::MySql => {
            all.push("SELECT 1 /*! , load_file('/etc/passwd') */".to_string());
            all.push("HANDLER items OPEN".to_string());
        }
        Backend::Sqlite => {
            all.push("INSERT INTO sqlite_master VALUES ('table', 'x', 'x', 0, '')".to_string());
        }
    }
    all
}

async fn hostile_sql_is_refused_before_it_runs(backend: Backend) {
    let fx = DbFixture::new(backend).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A stand-in for hookwise's own store, for ATTACH to aim at.
    let store = dir.path().join("store.db");
    let store_pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", store.display()))
        .await
        .expect("store");
    sqlx::query("CREATE TABLE events (id TEXT, status TEXT)")
        .execute(&store_pool)
        .await
        .expect("events");
    let plugin = load(&fx.host, "hostile", limits(), db_grants());

    for (i, sql) in refused_statements(backend, dir.path()).iter().enumerate() {
        let input = json!({"mode": "db", "connection": "app", "ignore_errors": true, "statements": [
            {"sql": fx.sql("INSERT INTO items (name) VALUES (?)"), "params": [format!("before {i}")]},
            {"sql": sql},
        ]});
        let report = call_with_key(&fx.host, &plugin, input, &format!("hostile-{i}")).await;
        assert!(
            matches!(&report.result, Err(CallError::Db(m)) if m.contains("refused by the host")),
            "{backend:?} {sql}: {:?}",
            report.result
        );
        let refused = &report.db_statements[1];
        assert!(
            matches!(&refused.outcome, DbStatementOutcome::Refused { reason } if reason.contains("refused by the host")),
            "{backend:?} {sql}: {:?}",
            refused.outcome
        );
        assert_eq!(
            report.db_transactions[0].outcome,
            DbTransactionOutcome::RolledBack,
            "{backend:?} {sql}"
        );
    }

    // Nothing any of them tried happened: no rows, no claims, the table and the attached
    // store untouched, no file written.
    assert_eq!(fx.count("SELECT COUNT(*) FROM items").await, 0);
    assert_eq!(fx.count("SELECT COUNT(*) FROM hookwise_effects").await, 0);
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&store_pool)
        .await
        .expect("store is intact");
    assert_eq!(events, 0);
    store_pool.close().await;
    let written: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("store.db"))
        .collect();
    assert!(written.is_empty(), "{backend:?} wrote {written:?}");

    // Exactly once still holds afterwards: the connection is usable, a call applies, its
    // retry applies nothing.
    let good = json!({"mode": "db", "connection": "app", "statements": [
        {"sql": fx.sql("INSERT INTO items (name) VALUES (?)"), "params": ["once"]},
    ]});
    for _ in 0..3 {
        let first = call_with_key(&fx.host, &plugin, good.clone(), "after-hostile").await;
        assert!(first.result.is_ok(), "{backend:?}: {:?}", first.result);
    }
    assert_eq!(fx.names().await, vec!["once".to_string()]);
    assert_eq!(fx.count("SELECT COUNT(*) FROM hookwise_effects").await, 1);
    fx.close().await;
}

/// A connection whose user may only read and write its tables (not create any) works when
/// the owner created `hookwise_effects`, as docs/plugins.md recommends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_least_privilege_postgres_role_is_enough() {
    let pg = TempPostgres::create()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let role = format!("hookwise_app_{}", uuid::Uuid::now_v7().simple());
    let owner = sqlx::PgPool::connect(&pg.url).await.expect("owner");
    for sql in [
        "CREATE TABLE items (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, qty BIGINT)".to_string(),
        "CREATE TABLE hookwise_effects (idempotency_key TEXT PRIMARY KEY NOT NULL, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            .to_string(),
        format!("CREATE ROLE {role} LOGIN"),
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_string(),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT, INSERT ON items, hookwise_effects TO {role}"),
        format!("GRANT USAGE ON SEQUENCE items_id_seq TO {role}"),
    ] {
        sqlx::query(&sql).execute(&owner).await.expect(&sql);
    }
    let url = pg.url.replacen("postgres@", &format!("{role}@"), 1);
    let mut exec = SqlExecutor::new();
    exec.connect("app", &url).await.expect("the role connects");
    let executor: Arc<dyn DbExecutor> = Arc::new(exec);
    let host = PluginHost::new(HostSettings {
        db: Some(executor),
        ..settings()
    })
    .expect("host");
    let plugin = load(&host, "hostile", limits(), db_grants());
    let input = json!({"mode": "db", "connection": "app", "statements": [
        {"sql": "INSERT INTO items (name) VALUES ($1)", "params": ["least"]},
    ]});
    for _ in 0..2 {
        let report = call_with_key(&host, &plugin, input.clone(), "least-key").await;
        assert!(report.result.is_ok(), "{:?}", report.result);
    }
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM items")
        .fetch_all(&owner)
        .await
        .expect("names");
    assert_eq!(names, vec!["least".to_string()]);
    drop(host);
    owner.close().await;
    pg.drop_db().await.expect("drop database");
    let admin = sqlx::PgPool::connect(&crate::support::postgres_admin_url())
        .await
        .expect("admin");
    sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
        .execute(&admin)
        .await
        .expect("drop role");
    admin.close().await;
}

/// Runs one SELECT through the plugin and returns its only row.
async fn select_row(fx: &DbFixture, sql: &str) -> Value {
    let plugin = load(&fx.host, "hostile", limits(), db_grants());
    let input = json!({"mode": "db", "connection": "app", "statements": [{"sql": sql}]});
    let out =
        output(&call_with_key(&fx.host, &plugin, input, &format!("select-{}", sql.len())).await);
    out["results"][0]["rows"][0].clone()
}

/// Runs one statement that must fail, and returns its error.
async fn statement_error(fx: &DbFixture, sql: &str) -> String {
    let plugin = load(&fx.host, "hostile", limits(), db_grants());
    let input = json!({"mode": "db", "connection": "app", "ignore_errors": true, "statements": [{"sql": sql}]});
    let report = call_with_key(&fx.host, &plugin, input, "failing").await;
    match report.result {
        Err(CallError::Db(message)) => message,
        other => panic!("expected a DB error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_column_types_as_json() {
    let fx = DbFixture::new(Backend::Postgres).await;
    let row = select_row(
        &fx,
        "SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 1.5::float4 AS f4, 2.25::float8 AS f8, \
         12.50::numeric(10,2) AS num, -0.001::numeric AS small, true AS b, 'hi'::text AS t, \
         'v'::varchar AS vc, 'c'::char(2) AS ch, '\\x0102ff'::bytea AS bytes, NULL::int4 AS nul, \
         '{\"a\":[1]}'::jsonb AS j, '2024-02-29 13:14:15.5+00'::timestamptz AS ts, \
         '2024-02-29 13:14:15'::timestamp AS ts_local, '2024-02-29'::date AS d, \
         '13:14:15.000123'::time AS tm, '0e5c2f04-5f0b-4c6e-9c1a-2b7e7f3a1b2c'::uuid AS u",
    )
    .await;
    assert_eq!(
        row,
        json!({
            "i2": 1, "i4": 2, "i8": 3, "f4": 1.5, "f8": 2.25,
            "num": "12.50", "small": "-0.001", "b": true, "t": "hi", "vc": "v", "ch": "c ",
            "bytes": "0102ff", "nul": null, "j": {"a": [1]},
            "ts": "2024-02-29T13:14:15.5Z", "ts_local": "2024-02-29T13:14:15",
            "d": "2024-02-29", "tm": "13:14:15.000123",
            "u": "0e5c2f04-5f0b-4c6e-9c1a-2b7e7f3a1b2c",
        })
    );
    let error = statement_error(&fx, "SELECT '1 day'::interval AS iv").await;
    assert!(
        error.contains("\"iv\"") && error.contains("INTERVAL"),
        "{error}"
    );
    fx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_column_types_as_json() {
    let fx = DbFixture::new(Backend::MySql).await;
    let row = select_row(
        &fx,
        "SELECT CAST(-3 AS SIGNED) AS i, CAST(7 AS UNSIGNED) AS u, 2.25e0 AS f, \
         CAST(12.50 AS DECIMAL(10,2)) AS num, 'hi' AS t, X'0102ff' AS bytes, NULL AS nul, \
         CAST('2024-02-29 13:14:15.5' AS DATETIME(1)) AS dt, DATE '2024-02-29' AS d, \
         CAST('13:14:15' AS TIME) AS tm, CAST('-26:03:04' AS TIME) AS neg",
    )
    .await;
    assert_eq!(
        row,
        json!({
            "i": -3, "u": 7, "f": 2.25, "num": "12.50", "t": "hi", "bytes": "0102ff",
            "nul": null, "dt": "2024-02-29T13:14:15.5", "d": "2024-02-29",
            "tm": "13:14:15", "neg": "-26:03:04",
        })
    );
    fx.close().await;
}

// ---------- compile cache ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_load_is_a_cache_hit_even_after_restart() {
    let cache = tempfile::tempdir().expect("tempdir");
    let with_cache = || HostSettings {
        cache_dir: Some(cache.path().to_path_buf()),
        ..settings()
    };
    let first_host = PluginHost::new(with_cache()).expect("host");
    let first = load(&first_host, "noop", limits(), Grants::default());
    assert!(!first.from_cache());
    assert_eq!(first_host.cache_stats().compiled, 1);
    assert_eq!(first_host.cache_stats().hits, 0);
    drop(first);
    drop(first_host);

    // A "restart": a new host over the same directory.
    let second_host = PluginHost::new(with_cache()).expect("host");
    let second = load(&second_host, "noop", limits(), Grants::default());
    assert!(second.from_cache());
    assert_eq!(second_host.cache_stats().hits, 1);
    assert_eq!(second_host.cache_stats().compiled, 0);
    let report = call(&second_host, &second, json!({})).await;
    assert_eq!(report.result, Ok(r#"{"ok":true}"#.to_string()));

    // Without a cache directory nothing is cached.
    let uncached = host();
    assert!(!load(&uncached, "noop", limits(), Grants::default()).from_cache());
    assert!(!load(&uncached, "noop", limits(), Grants::default()).from_cache());
    assert_eq!(uncached.cache_stats().compiled, 2);
}

// ---------- load-time validation ----------

#[test]
fn bad_specs_report_every_problem() {
    let host = host();
    let err = host
        .load(PluginSpec {
            name: "bad".into(),
            wasm: WasmSource::Bytes(vec![]),
            limits: Limits {
                timeout: Duration::ZERO,
                memory_bytes: 1 << 40,
                ..Limits::default()
            },
            grants: Grants {
                http: vec!["https://x.com/path".into(), "ok.example.com".into()],
                db: vec![" ".into()],
            },
        })
        .err();
    match err {
        Some(HostError::InvalidSpec { problems, .. }) => {
            assert_eq!(problems.len(), 4, "{problems:?}")
        }
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
    let not_wasm = host
        .load(PluginSpec {
            name: "junk".into(),
            wasm: WasmSource::Bytes(b"definitely not wasm".to_vec()),
            limits: Limits::default(),
            grants: Grants::default(),
        })
        .err();
    assert!(
        matches!(not_wasm, Some(HostError::NotWasm { .. })),
        "{not_wasm:?}"
    );
}

// ---------- command-module ABI ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_module_abi() {
    let host = host();
    let plugin = load(
        &host,
        "command-echo",
        Limits {
            timeout: Duration::from_millis(500),
            max_log_bytes: 2048,
            ..limits()
        },
        Grants::default(),
    );
    assert_eq!(plugin.abi(), PluginAbi::Command);

    let ok = call_with_key(&host, &plugin, json!({"mode": "ok", "n": 1}), "k-7").await;
    assert_eq!(
        output(&ok),
        json!({"echo": {"mode": "ok", "n": 1}, "key": "k-7", "event": "evt-1"})
    );
    assert!(ok.logs.iter().any(|l| l.message == "command-echo mode=ok"));

    let fatal = call(&host, &plugin, json!({"mode": "fatal"})).await;
    assert_eq!(
        fatal.result,
        Err(CallError::Plugin {
            kind: ErrorKind::Fatal,
            message: "bad input".into(),
            retry_after: None
        })
    );

    let crash = call(&host, &plugin, json!({"mode": "crash"})).await;
    assert!(
        matches!(&crash.result, Err(CallError::Plugin { kind: ErrorKind::Retryable, message, .. }) if message.starts_with("exit status 3")),
        "{:?}",
        crash.result
    );

    let looped = call(&host, &plugin, json!({"mode": "loop"})).await;
    assert_eq!(looped.result, Err(CallError::Timeout));

    // 100k separate writes to stderr take longer than the 500 ms above: 14 s in a debug
    // build on a quiet 2-core machine, over 30 s beside other tests. The limit only has to
    // let the call finish; what is checked is the truncation.
    let patient = load(
        &host,
        "command-echo",
        Limits {
            timeout: Duration::from_secs(120),
            max_log_bytes: 2048,
            ..limits()
        },
        Grants::default(),
    );
    let flood = call(&host, &patient, json!({"mode": "stderr-flood"})).await;
    assert_eq!(output(&flood), json!({"flooded": true}));
    assert!(flood.logs_truncated);
}

/// A core module with log, HTTP and database through the `hookwise` import module: the same
/// grants, records, transaction and exactly-once as a component.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_modules_get_log_http_and_db_through_the_import_module() {
    let (addr, seen) = test_server().await;
    let fx = DbFixture::new(Backend::Sqlite).await;
    let grants = Grants {
        http: vec![format!("http://{addr}")],
        db: vec!["app".into()],
    };
    let plugin = load(&fx.host, "core-abi", limits(), grants);
    assert_eq!(plugin.abi(), PluginAbi::Command);
    let input = json!({
        "url": format!("http://{addr}/echo"),
        "connection": "app",
        "sql": "INSERT INTO items (name, qty) VALUES (?, ?)",
        "params": ["core", 3],
    });
    let first = call_with_key(&fx.host, &plugin, input.clone(), "core-1").await;
    let out = output(&first);
    assert_eq!(out["event"], "evt-1");
    assert_eq!(out["key"], "core-1");
    assert_eq!(out["payload_ref"], "refs/heads/main");
    assert_eq!(out["http"]["status"], 200);
    assert_eq!(out["http"]["body"], "hello from the test server");
    assert_eq!(out["db"]["rows_affected"], json!(1), "{out}");
    let levels: Vec<&str> = first.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        levels,
        ["level 0", "level 1", "level 2", "level 3", "level 4"]
    );
    assert_eq!(
        requests(&seen),
        vec![("/echo".to_string(), Some("core-1".to_string()))]
    );
    assert_eq!(seen.seen()[0].body, br#"{"ref":"refs/heads/main"}"#);
    assert_eq!(first.http_calls.len(), 1);
    assert_eq!(first.http_calls[0].status, Some(200));
    assert_eq!(first.db_statements.len(), 1);
    assert_eq!(
        first.db_transactions[0].outcome,
        DbTransactionOutcome::Committed
    );
    assert_eq!(fx.names().await, vec!["core".to_string()]);

    // A retry with the same key applies nothing again in the database; its HTTP request carries
    // the same Idempotency-Key, for the receiver to see it is the same call.
    let again = call_with_key(&fx.host, &plugin, input, "core-1").await;
    assert_eq!(output(&again)["db"], json!({"already_applied": true}));
    assert_eq!(fx.count("SELECT COUNT(*) FROM items").await, 1);
    assert_eq!(requests(&seen)[1], requests(&seen)[0]);

    // Ungranted: a refusal recorded, nothing sent, and the error reaches the module.
    let refused = call_with_key(
        &fx.host,
        &plugin,
        json!({"url": "http://127.0.0.1:9/x", "connection": "nope"}),
        "core-2",
    )
    .await;
    let out = output(&refused);
    assert!(
        out["http"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("denied")
            || out["http"]["error"]
                .as_str()
                .unwrap_or("")
                .contains("refused"),
        "{out}"
    );
    assert!(refused.http_calls[0].refused);
    assert!(
        out["db"]["error"].as_str().unwrap_or("").contains("nope"),
        "{out}"
    );
    assert_eq!(requests(&seen).len(), 2);
    fx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_module_answers_errors_and_bad_calls() {
    let host = host();
    let plugin = load(&host, "core-abi", limits(), Grants::default());

    let fatal = call(&host, &plugin, json!({"mode": "fatal"})).await;
    assert_eq!(
        fatal.result,
        Err(CallError::Plugin {
            kind: ErrorKind::Fatal,
            message: "the input says fatal".into(),
            retry_after: None
        })
    );
    // `error` wins over the exit status that follows it.
    let retry = call(&host, &plugin, json!({"mode": "retry"})).await;
    assert_eq!(
        retry.result,
        Err(CallError::Plugin {
            kind: ErrorKind::Retryable,
            message: "try later".into(),
            retry_after: Some(Duration::from_millis(1500))
        })
    );
    // A pointer outside memory traps; it does not take the host down.
    let oob = call(&host, &plugin, json!({"mode": "out-of-bounds"})).await;
    assert!(
        matches!(&oob.result, Err(CallError::Trap(message)) if message.contains("outside memory")),
        "{:?}",
        oob.result
    );
    // A request that is not JSON is an error the module reads, with its length negative.
    let bad = output(&call(&host, &plugin, json!({"mode": "bad-http"})).await);
    let message = bad["error"].as_str().unwrap_or_default();
    assert!(message.starts_with("invalid request JSON"), "{bad}");
    assert_eq!(bad["n"], json!(-(message.len() as i64)));
    // Without `output`, stdout is the answer as before.
    let stdout = call(&host, &plugin, json!({"mode": "stdout"})).await;
    assert_eq!(output(&stdout), json!({"from": "stdout"}));
}

// ---------- cost ----------

/// Per-call cost of the no-op plugin (fresh store + instance per call).
/// Run with `cargo test --release -- --ignored --nocapture per_call_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn per_call_cost() {
    let host = host();
    let noop = load(&host, "noop", limits(), Grants::default());
    for _ in 0..50 {
        call(&host, &noop, json!({})).await;
    }
    let n = 2000;
    let started = Instant::now();
    for _ in 0..n {
        let r = call(&host, &noop, json!({})).await;
        assert!(r.result.is_ok());
    }
    let per_call = started.elapsed() / n;
    eprintln!("noop component: {per_call:?} per call over {n} sequential calls");
    let cmd = load(&host, "command-echo", limits(), Grants::default());
    let started = Instant::now();
    for _ in 0..200 {
        let r = call(&host, &cmd, json!({})).await;
        assert!(r.result.is_ok());
    }
    eprintln!(
        "command module: {:?} per call over 200 calls",
        started.elapsed() / 200
    );
}
