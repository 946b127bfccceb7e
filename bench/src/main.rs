//! hookwise benchmarks. Each subcommand prints a Markdown table and, with `--write FILE`,
//! replaces its section of that file (BENCHMARKS.md) between markers.
//!
//! `drain`: a whole server: sustained ingest and drain rates with the no-op plugin, and
//! ack / ack-to-done latency at a fixed offered load.
//!
//! `flood`: hostile senders beside one honest provider; `soak`: a long steady load with an
//! action per event.
//!
//! `dashboard`: a million stored events, and how fast every dashboard page and admin API
//! listing answers.
//!
//! `all`: the headline figures in one command (bench/run.sh): a bare axum server, hookwise's ingest, reject
//! and drain paths under wrk, the plugin call and rule matching, with ratios to the bare server.
//!
//! `cluster`: three nodes on one PostgreSQL under load, one killed with SIGKILL: events lost,
//! effects doubled, and how long the killed node's leased work took to be taken over.
//!
//! `store`: event inserts per second through the group-commit path versus one transaction per
//! insert, on a SQLite file and on PostgreSQL, with 2 KiB payloads from many concurrent tasks.

mod all;
mod cluster;
mod dashboard;
mod drain;
mod flood;
mod plugins;
mod procs;
mod soak;
mod stores;
mod wrk;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookwise::model::{DeliveryAttemptId, EventId, EventStatus, Millis, Verdict};
use hookwise::store::{GroupCommitSettings, NewDeliveryAttempt, NewEvent, Store};
use sqlx::Connection;

/// The same allocator as the `hookwise` binary, so figures match what it does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "hookwise benchmarks")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The headline figures in one run: a bare axum server (the ceiling), hookwise's durable
    /// ingest, the bad-signature reject path and ingest with drain under wrk, then the plugin
    /// call and rule matching. Needs wrk and a release `hookwise` binary next to this one;
    /// `bench/run.sh` installs and builds both.
    All {
        /// Rounds of bare / ingest / reject runs (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds of load per run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Seconds of unmeasured load on each freshly started server.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// wrk thread counts, comma-separated: every HTTP figure is measured once per count
        /// (one harness shape each).
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
        threads: Vec<usize>,
        /// Ingest-with-drain runs (each waits until its backlog is empty).
        #[arg(long, default_value_t = 3)]
        drain_runs: usize,
        /// Runs of the in-process measurements (plugin call, rule matching).
        #[arg(long, default_value_t = 3)]
        inproc_runs: usize,
        /// Plugin calls per run.
        #[arg(long, default_value_t = 5000)]
        plugin_calls: usize,
        /// Events per rule count per run.
        #[arg(long, default_value_t = 20_000)]
        rule_events: usize,
        /// The hookwise binary. Default: `hookwise` next to this binary.
        #[arg(long)]
        hookwise: Option<PathBuf>,
        /// Also profile one extra ingest, reject and drain run each with `perf record -g`,
        /// writing `*.perf.data` into this folder (those runs are not counted).
        #[arg(long)]
        perf: Option<PathBuf>,
        /// The command to name in the report.
        #[arg(long, default_value = "bench/run.sh")]
        command: String,
        /// Replace the `all` section of this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Hostile senders and one honest provider at once against a release `hookwise serve`:
    /// connections trickling 1 MiB bodies, bad signatures at wrk's full rate, and valid
    /// deliveries at a provider's pace. Needs wrk and a release `hookwise` next to this binary.
    Flood {
        /// Seconds of load.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Connections that announce a 1 MiB body and trickle it.
        #[arg(long, default_value_t = 1000)]
        tricklers: usize,
        /// Client addresses the trickling connections come from: 1 (one sender), or as many
        /// as there are connections (each its own, as from a botnet).
        #[arg(long, default_value_t = 1000)]
        trickler_addresses: usize,
        /// Bytes each trickling connection sends per second.
        #[arg(long, default_value_t = 1024)]
        trickle_bytes_per_s: usize,
        /// wrk connections (one thread) sending bad signatures.
        #[arg(long, default_value_t = 32)]
        bad_connections: usize,
        /// Valid deliveries per second.
        #[arg(long, default_value_t = 100)]
        valid_rate: u64,
        /// The hookwise binary. Default: `hookwise` next to this binary.
        #[arg(long)]
        hookwise: Option<PathBuf>,
        /// The command to name in the report.
        #[arg(long, default_value = "hookwise-bench flood")]
        command: String,
        /// Replace the flood section of this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// A long steady load on a release `hookwise serve` whose every event runs the no-op
    /// plugin, at half its measured sustained rate; compares the last minute with the second.
    Soak {
        /// Minutes of load.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// Seconds of the wrk run that measures the sustained rate.
        #[arg(long, default_value_t = 15)]
        measure_seconds: u64,
        /// Offered events per second (default: half the measured sustained rate).
        #[arg(long)]
        rate: Option<u64>,
        /// The hookwise binary. Default: `hookwise` next to this binary.
        #[arg(long)]
        hookwise: Option<PathBuf>,
        /// The command to name in the report.
        #[arg(long, default_value = "hookwise-bench soak")]
        command: String,
        /// Replace the soak section of this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// A release `hookwise serve` whose SQLite store is filled with events that ran actions
    /// (some dead-lettered), then every dashboard page and admin API listing timed.
    Dashboard {
        /// Events to store before measuring.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Measured requests per URL.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Keep the server's folder (store included) here, and use its store again when it
        /// holds enough events already.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// The hookwise binary. Default: `hookwise` next to this binary.
        #[arg(long)]
        hookwise: Option<PathBuf>,
        /// The command to name in the report.
        #[arg(long, default_value = "hookwise-bench dashboard")]
        command: String,
        /// Replace the dashboard section of this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Several release `hookwise serve` nodes on one PostgreSQL store under load from many
    /// clients, one killed with SIGKILL part way through and not restarted: events acknowledged,
    /// lost and doubled, the time until the killed node's leased work was finished by the
    /// others, and the ack rate. Needs a release `hookwise` next to this binary.
    Cluster {
        /// Events to send.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Concurrent clients, spread over the live nodes.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// hookwise nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Acknowledged events before one node is killed (default: a third of --events).
        #[arg(long)]
        kill_after: Option<usize>,
        /// dispatch.lease of every node, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        lease_ms: u64,
        /// dispatch.workers of every node.
        #[arg(long, default_value_t = 16)]
        workers: u32,
        /// PostgreSQL server to create the scratch store and sink databases on.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres: String,
        /// The hookwise binary. Default: `hookwise` next to this binary.
        #[arg(long)]
        hookwise: Option<PathBuf>,
        /// The command to name in the report.
        #[arg(long, default_value = "hookwise-bench cluster")]
        command: String,
        /// Replace the cluster section of this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Durable ingest on SQLite and on PostgreSQL in one run (same wrk load, alternating
    /// rounds, release `hookwise serve`), then three nodes on one PostgreSQL at a fixed rate:
    /// how long after arrival each action starts. Needs wrk and a release `hookwise`.
    Stores {
        /// Rounds of SQLite then PostgreSQL ingest (the median of each is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds of load per run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Seconds of unmeasured load on each freshly started server.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// wrk threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Events per second offered to the three nodes of the latency run.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Seconds of the latency run.
        #[arg(long, default_value_t = 30)]
        latency_seconds: u64,
        /// PostgreSQL server to create the scratch databases on.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres: String,
        /// The hookwise binary. Default: `hookwise` next to this binary.
        #[arg(long)]
        hookwise: Option<PathBuf>,
        /// The command to name in the report.
        #[arg(long, default_value = "hookwise-bench stores")]
        command: String,
        /// Replace the stores section of this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// A bare axum server that answers 200 to every request: the ceiling `all` compares with.
    #[command(hide = true)]
    Bare {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// Rule matching: cost per event with 10, 1,000 and 10,000 rules over 100 sources x 100
    /// event types.
    Rules {
        /// Rule counts to measure (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "10,1000,10000")]
        counts: Vec<usize>,
        /// Events evaluated per rule count.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Replace the rules section of this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// A whole server with the no-op plugin: sustained ingest vs drain, and latencies at a
    /// fixed offered load.
    Drain {
        /// Concurrent client connections for the sustained run.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Seconds of sustained load per run.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Sustained runs (fresh server each); the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Offered events per second for the latency run.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds of the latency run.
        #[arg(long, default_value_t = 10)]
        paced_seconds: u64,
        /// dispatch.workers of the server.
        #[arg(long, default_value_t = 16)]
        workers: u32,
        /// Replace the drain section of this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Plugin calls with a fresh sandbox per call, and start-up with a cold vs warm compile
    /// cache: the no-op Rust plugin, and the JavaScript and Python examples.
    Plugins {
        /// Calls measured per plugin (the interpreted ones get a tenth).
        #[arg(long, default_value_t = 5000)]
        calls: usize,
        /// Skip the JavaScript and Python plugins (they need node/npm and python3).
        #[arg(long)]
        rust_only: bool,
        /// Replace the plugins section of this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Store inserts: group commit vs one transaction per insert, SQLite and PostgreSQL.
    Store {
        /// Events per group-commit run.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Events per one-transaction-per-insert run (it is much slower).
        #[arg(long, default_value_t = 2_000)]
        single_events: usize,
        /// Concurrent writers (comma-separated: each count is measured).
        #[arg(long, value_delimiter = ',', default_value = "64,256")]
        tasks: Vec<usize>,
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// PostgreSQL server to create a scratch database on.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres: String,
        /// Replace the store section of this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

/// A GitHub push of about 2 KiB, shaped and filled like a real one (most fields of
/// `tests/fixtures/payloads/github/push.json`): its commit ids and messages differ from one `i`
/// to the next, so it compresses as real JSON does, not as filler would.
fn payload(i: usize) -> String {
    const WORDS: &[&str] = &[
        "fix",
        "add",
        "update",
        "remove",
        "refactor",
        "handle",
        "retry",
        "timeout",
        "config",
        "parser",
        "webhook",
        "signature",
        "store",
        "index",
        "query",
        "release",
        "docs",
        "tests",
        "bump",
        "dependency",
        "error",
        "message",
        "cache",
        "when",
        "the",
        "for",
        "in",
        "and",
    ];
    // xorshift64*, seeded by `i`: the same payloads on every run.
    let mut state = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut sha = || format!("{:016x}{:016x}{:08x}", next(), next(), next() as u32);
    let (before, after) = (sha(), sha());
    let commit = |id: String, message: String| {
        serde_json::json!({
            "id": id, "message": message, "timestamp": "2026-11-30T09:12:44Z",
            "url": format!("https://github.com/octo-org/hello-world/commit/{id}"),
            "author": {"name": "Mona Lisa", "email": "monalisa@users.noreply.github.com",
                       "username": "monalisa"},
            "added": [], "removed": [], "modified": ["engine/src/store/mod.rs"],
        })
    };
    let first = commit(sha(), String::new());
    let second_id = sha();
    let mut words = Vec::new();
    let mut next_word = move || WORDS[(next() % WORDS.len() as u64) as usize];
    let first_message: Vec<&str> = (0..8).map(|_| next_word()).collect();
    loop {
        let mut first = first.clone();
        first["message"] = first_message.join(" ").into();
        let body = serde_json::json!({
            "ref": "refs/heads/main", "before": before, "after": after,
            "repository": {
                "id": 1296269, "name": "hello-world", "full_name": "octo-org/hello-world",
                "private": false,
                "owner": {"name": "octo-org", "email": null, "login": "octo-org", "id": 6811672,
                          "url": "https://api.github.com/users/octo-org",
                          "html_url": "https://github.com/octo-org", "type": "Organization",
                          "site_admin": false},
                "html_url": "https://github.com/octo-org/hello-world", "fork": false,
                "url": "https://github.com/octo-org/hello-world",
                "pushed_at": 1764580000 + i, "default_branch": "main", "visibility": "public",
            },
            "pusher": {"name": "monalisa", "email": "monalisa@users.noreply.github.com"},
            "sender": {"login": "monalisa", "id": 583231,
                       "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4",
                       "url": "https://api.github.com/users/monalisa",
                       "html_url": "https://github.com/monalisa", "type": "User",
                       "site_admin": false},
            "created": false, "deleted": false, "forced": false, "base_ref": null,
            "compare": format!(
                "https://github.com/octo-org/hello-world/compare/{}...{}",
                &before[..12],
                &after[..12]
            ),
            "commits": [first, commit(second_id.clone(), words.join(" "))],
        })
        .to_string();
        if body.len() >= 2000 {
            return body;
        }
        words.push(next_word());
    }
}

fn new_event(run: &str, i: usize, body: &str) -> (NewEvent, NewDeliveryAttempt) {
    let now = Millis::now();
    let event = NewEvent {
        id: EventId::new(),
        source: "github".into(),
        delivery_id: format!("{run}-{i}"),
        event_type: "push".into(),
        received_at: now,
        headers: serde_json::json!({"x-github-event": "push", "x-hub-signature-256": "[redacted]"}),
        payload: body.to_string(),
        status: EventStatus::Pending,
    };
    let attempt = NewDeliveryAttempt {
        id: DeliveryAttemptId::new(),
        source: "github".into(),
        received_at: now,
        remote_addr: Some("127.0.0.1:40000".into()),
        method: "POST".into(),
        path: "/hooks/github".into(),
        headers: serde_json::json!({"x-github-event": "push"}),
        body: None,
        body_size: body.len() as i64,
        verdict: Verdict::Accepted,
        status: 202,
        reason: None,
    };
    (event, attempt)
}

/// Inserts `events` events from `tasks` writers; returns events per second.
async fn insert_rate(
    store: &Store,
    events: usize,
    tasks: usize,
    grouped: bool,
) -> anyhow::Result<f64> {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let bodies: Arc<Vec<String>> = Arc::new((0..64).map(payload).collect());
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        let run = run.clone();
        let bodies = bodies.clone();
        handles.push(tokio::spawn(async move {
            for i in (t..events).step_by(tasks) {
                let (event, attempt) = new_event(&run, i, &bodies[i % bodies.len()]);
                let out = if grouped {
                    store.ingest(event, attempt).await?
                } else {
                    store.ingest_ungrouped(event, attempt).await?
                };
                anyhow::ensure!(!out.duplicate, "unexpected duplicate");
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

struct Row {
    store: &'static str,
    path: &'static str,
    writers: usize,
    rate: f64,
    runs: Vec<f64>,
}

async fn bench_store(
    events: usize,
    single_events: usize,
    tasks: &[usize],
    runs: usize,
    postgres: &str,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    // SQLite: a file on the working directory's disk (not tmpfs), as in production.
    let dir = tempfile::Builder::new()
        .prefix("hookwise-bench-")
        .tempdir_in(".")?;
    let pg_name = format!("hookwise_bench_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(postgres)
        .await
        .context("connect to PostgreSQL")?;
    sqlx::query(&format!("CREATE DATABASE {pg_name}"))
        .execute(&mut admin)
        .await?;
    let pg_url = format!(
        "{}/{pg_name}",
        postgres
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(postgres)
    );

    for (name, url) in [
        (
            "SQLite (file, WAL synced before each answer)",
            "sqlite://bench.db".to_string(),
        ),
        ("PostgreSQL", pg_url.clone()),
    ] {
        let store = Store::open(&url, dir.path(), GroupCommitSettings::default()).await?;
        for &writers in tasks {
            for (path, grouped, n) in [
                ("group commit", true, events),
                ("one transaction per insert", false, single_events),
            ] {
                let mut rates = Vec::new();
                for _ in 0..runs {
                    rates.push(insert_rate(&store, n, writers, grouped).await?);
                }
                eprintln!("{name} / {path} / {writers} writers: {rates:?}");
                rows.push(Row {
                    store: name,
                    path,
                    writers,
                    rate: median(rates.clone()),
                    runs: rates,
                });
            }
        }
        let stats = store.batch_stats();
        eprintln!(
            "{name}: group commit batches {} writes {} largest {}",
            stats.batches, stats.writes, stats.largest
        );
        store.close().await;
    }
    sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(rows)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores ({model})")
}

fn replace_section(file: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let begin = format!("<!-- bench:{name}:begin -->");
    let end = format!("<!-- bench:{name}:end -->");
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let section = format!("{begin}\n{body}{end}");
    let new = match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{}{}", &text[..b], section, &text[e + end.len()..])
        }
        _ => format!("{text}\n{section}\n"),
    };
    std::fs::write(file, new)?;
    Ok(())
}

/// Sources and event types the rule benchmark spreads its rules over.
const BENCH_SOURCES: usize = 100;
const BENCH_TYPES: usize = 100;

/// `count` rules, rule `i` on source `s{i % 100}` and type `t{(i / 100) % 100}`, each with a
/// condition, an `if` and a templated action, as people write them.
fn bench_rules(count: usize) -> String {
    let mut text = String::from("rules:\n");
    for i in 0..count {
        text.push_str(&format!(
            "  - id: rule-{i}\n    source: s{}\n    events: [t{}]\n    when:\n      all:\n        - {{ path: $.ref, equals: refs/heads/main }}\n        - {{ path: \"$.commits[*].message\", contains: deploy }}\n    if: \"payload.size > {}\"\n    actions:\n      - plugin: notify\n        with: {{ text: \"{{{{ payload.pusher }}}} pushed {{{{ payload.size }}}} commits\" }}\n",
            i % BENCH_SOURCES,
            (i / BENCH_SOURCES) % BENCH_TYPES,
            i % 3,
        ));
    }
    text
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Rule matching at one rule count.
pub struct RuleRow {
    pub count: usize,
    pub compile: std::time::Duration,
    pub p50_ns: u128,
    pub p99_ns: u128,
    pub matched_per_event: f64,
}

fn rule_rows(counts: &[usize], events: usize) -> anyhow::Result<Vec<RuleRow>> {
    use hookwise::rules::{CompileContext, EventView, compile_files};
    let sources: Vec<(String, String)> = (0..BENCH_SOURCES)
        .map(|s| (format!("s{s}"), "none".to_string()))
        .collect();
    let plugins = vec!["notify".to_string()];
    let secrets = std::collections::BTreeMap::new();
    let input_schemas = std::collections::BTreeMap::new();
    let ctx = CompileContext {
        sources: &sources,
        plugins: &plugins,
        input_schemas: &input_schemas,
        secrets: &secrets,
    };
    let payload = std::sync::Arc::new(serde_json::json!({
        "ref": "refs/heads/main", "size": 3, "pusher": "octocat",
        "commits": [{"message": "fix"}, {"message": "deploy it"}, {"message": "docs"}],
    }));
    let headers = std::collections::BTreeMap::new();
    let mut rows = Vec::new();
    for &count in counts {
        let files = vec![(PathBuf::from("bench.yaml"), bench_rules(count))];
        let started = Instant::now();
        let set = compile_files(&files, &ctx).map_err(|d| anyhow::anyhow!("{:?}", d.first()))?;
        let compile = started.elapsed();
        let mut samples = Vec::with_capacity(events);
        let mut matched = 0usize;
        for e in 0..events {
            // An event for the (source, type) of some rule, spread over all of them.
            let rule = (e * 7_919) % count;
            let source = format!("s{}", rule % BENCH_SOURCES);
            let event_type = format!("t{}", (rule / BENCH_SOURCES) % BENCH_TYPES);
            let view = EventView {
                id: "bench",
                source: &source,
                provider: "none",
                event_type: &event_type,
                received_at: "2026-11-27T00:00:00Z",
                headers: &headers,
                payload: &payload,
            };
            let t = Instant::now();
            let eval = set.evaluate(&view);
            samples.push(t.elapsed().as_nanos());
            matched += eval.matched.len();
        }
        samples.sort_unstable();
        rows.push(RuleRow {
            count,
            compile,
            p50_ns: percentile(&samples, 0.5),
            p99_ns: percentile(&samples, 0.99),
            matched_per_event: matched as f64 / events.max(1) as f64,
        });
    }
    Ok(rows)
}

fn bench_rule_matching(counts: &[usize], events: usize) -> anyhow::Result<String> {
    let mut out = format!(
        "Measured {} on {}; {events} events per row, each on a (source, type) that has rules.\n\n\
         | rules | compile | p50 per event | p99 per event | matched per event | p50 vs 10 rules |\n\
         |---:|---:|---:|---:|---:|---:|\n",
        today(),
        machine()
    );
    let mut base_p50 = None;
    for r in rule_rows(counts, events)? {
        let base = *base_p50.get_or_insert(r.p50_ns);
        out.push_str(&format!(
            "| {} | {:.0} ms | {:.1} us | {:.1} us | {:.2} | {:.2}x |\n",
            r.count,
            r.compile.as_secs_f64() * 1e3,
            r.p50_ns as f64 / 1e3,
            r.p99_ns as f64 / 1e3,
            r.matched_per_event,
            r.p50_ns as f64 / base.max(1) as f64,
        ));
    }
    Ok(out)
}

/// The cargo target folder: `CARGO_TARGET_DIR`, else `target/` in the repository.
fn target_dir(repo: &Path) -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo.join("target"))
}

/// The hookwise binary to put under load: the one given, or `hookwise` next to this binary.
fn hookwise_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has no folder")?
            .join("hookwise"),
    };
    anyhow::ensure!(
        path.is_file(),
        "no hookwise binary at {}: build it with `cargo build --release -p hookwise -p \
         hookwise-bench`",
        path.display()
    );
    Ok(path)
}

/// The `bare` subcommand: answers 200 to every request, after reading its body.
async fn bare(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .fallback(|_body: axum::body::Bytes| async { axum::http::StatusCode::OK });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::All {
            rounds,
            seconds,
            warmup,
            connections,
            threads,
            drain_runs,
            inproc_runs,
            plugin_calls,
            rule_events,
            hookwise,
            perf,
            command,
            write,
        } => {
            let hookwise = hookwise_binary(hookwise)?;
            let settings = all::Settings {
                rounds,
                seconds,
                warmup,
                connections,
                threads,
                drain_runs,
                inproc_runs,
                plugin_calls,
                rule_events,
                hookwise,
                perf,
            };
            let out = all::run(&settings, &command).await?;
            print!("{out}");
            if let Some(file) = write {
                replace_section(&file, "all", &out)?;
            }
        }
        Command::Flood {
            seconds,
            tricklers,
            trickler_addresses,
            trickle_bytes_per_s,
            bad_connections,
            valid_rate,
            hookwise,
            command,
            write,
        } => {
            let settings = flood::Settings {
                hookwise: hookwise_binary(hookwise)?,
                seconds,
                tricklers,
                trickler_addresses,
                trickle_bytes_per_s,
                bad_connections,
                valid_rate,
            };
            let result = flood::run(&settings).await?;
            let out = flood::report(&settings, &result, &command);
            print!("{out}");
            if let Some(file) = write {
                replace_section(&file, "flood", &out)?;
            }
        }
        Command::Soak {
            minutes,
            measure_seconds,
            rate,
            hookwise,
            command,
            write,
        } => {
            let settings = soak::Settings {
                hookwise: hookwise_binary(hookwise)?,
                minutes,
                measure_seconds,
                rate,
            };
            let result = soak::run(&settings).await?;
            let out = soak::report(&settings, &result, &command);
            print!("{out}");
            if let Some(file) = write {
                replace_section(&file, "soak", &out)?;
            }
        }
        Command::Dashboard {
            events,
            requests,
            keep,
            hookwise,
            command,
            write,
        } => {
            let settings = dashboard::Settings {
                hookwise: hookwise_binary(hookwise)?,
                events,
                requests,
                keep,
            };
            let result = dashboard::run(&settings).await?;
            let out = dashboard::report(&settings, &result, &command);
            print!("{out}");
            if let Some(file) = write {
                replace_section(&file, "dashboard", &out)?;
            }
        }
        Command::Cluster {
            events,
            clients,
            nodes,
            kill_after,
            lease_ms,
            workers,
            postgres,
            hookwise,
            command,
            write,
        } => {
            let settings = cluster::Settings {
                hookwise: hookwise_binary(hookwise)?,
                events,
                clients,
                nodes,
                kill_after: kill_after.unwrap_or(events / 3),
                lease: std::time::Duration::from_millis(lease_ms),
                workers,
                postgres,
            };
            let result = cluster::run(&settings).await?;
            let out = cluster::report(&settings, &result, &command);
            print!("{out}");
            if let Some(file) = write {
                replace_section(&file, "cluster", &out)?;
            }
            anyhow::ensure!(
                cluster::clean(&result),
                "events were lost or effects doubled"
            );
        }
        Command::Stores {
            rounds,
            seconds,
            warmup,
            connections,
            threads,
            rate,
            latency_seconds,
            postgres,
            hookwise,
            command,
            write,
        } => {
            let settings = stores::Settings {
                hookwise: hookwise_binary(hookwise)?,
                rounds,
                seconds,
                warmup,
                connections,
                threads,
                rate,
                latency_seconds,
                postgres,
            };
            let result = stores::run(&settings).await?;
            let out = stores::report(&settings, &result, &command);
            print!("{out}");
            if let Some(file) = write {
                replace_section(&file, "stores", &out)?;
            }
        }
        Command::Bare { listen } => bare(listen).await?,
        Command::Rules {
            counts,
            events,
            write,
        } => {
            let out = bench_rule_matching(&counts, events)?;
            print!("{out}");
            if let Some(file) = write {
                replace_section(&file, "rules", &out)?;
            }
        }
        Command::Drain {
            connections,
            seconds,
            runs,
            rate,
            paced_seconds,
            workers,
            write,
        } => {
            let out = bench_drain(connections, seconds, runs, rate, paced_seconds, workers).await?;
            print!("{out}");
            if let Some(file) = write {
                replace_section(&file, "drain", &out)?;
            }
        }
        Command::Plugins {
            calls,
            rust_only,
            write,
        } => {
            let out = bench_plugins(calls, rust_only).await?;
            print!("{out}");
            if let Some(file) = write {
                replace_section(&file, "plugins", &out)?;
            }
        }
        Command::Store {
            events,
            single_events,
            tasks,
            runs,
            postgres,
            write,
        } => {
            let rows = bench_store(events, single_events, &tasks, runs, &postgres).await?;
            let mut out = format!(
                "Measured {} on {}; 2 KiB payloads, median of {runs} runs.\n\n\
                 | store | write path | writers | events/s | runs |\n|---|---|---:|---:|---|\n",
                today(),
                machine()
            );
            for r in &rows {
                let runs: Vec<String> = r.runs.iter().map(|x| format!("{x:.0}")).collect();
                out.push_str(&format!(
                    "| {} | {} | {} | {:.0} | {} |\n",
                    r.store,
                    r.path,
                    r.writers,
                    r.rate,
                    runs.join(", ")
                ));
            }
            // Rows come in pairs: group commit, then one transaction per insert.
            for pair in rows.chunks(2) {
                if let [g, s] = pair {
                    out.push_str(&format!(
                        "\n{}, {} writers: group commit is {:.1}x one transaction per insert.",
                        g.store,
                        g.writers,
                        g.rate / s.rate
                    ));
                }
            }
            out.push('\n');
            print!("{out}");
            if let Some(file) = write {
                replace_section(&file, "store", &out)?;
            }
        }
    }
    Ok(())
}

async fn bench_drain(
    connections: usize,
    seconds: u64,
    runs: usize,
    rate: u64,
    paced_seconds: u64,
    workers: u32,
) -> anyhow::Result<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = target_dir(&repo).join("bench-plugins");
    let noop = drain::build_noop(&repo, &target)?;
    let mut results = Vec::new();
    for run in 0..runs.max(1) {
        let server = drain::start(&noop, workers).await?;
        let r = drain::sustained(&server, connections, seconds).await?;
        eprintln!(
            "run {}: ingest/s / drain/s / backlog at the end of the load / sustained \
             ingest/s / sustained drain/s / sustained backlog: {}",
            run + 1,
            r.describe()
        );
        results.push(r);
        server.stop().await?;
    }
    let server = drain::start(&noop, workers).await?;
    let p = drain::paced(&server, rate, paced_seconds).await?;
    server.stop().await?;

    let ingest = median(results.iter().map(|r| r.ingest_per_s).collect());
    let drained = median(results.iter().map(|r| r.drain_per_s).collect());
    let window_in = median(results.iter().map(|r| r.window_ingest_per_s).collect());
    let window_out = median(results.iter().map(|r| r.window_drain_per_s).collect());
    let window_ratio = median(
        results
            .iter()
            .map(|r| r.window_drain_per_s / r.window_ingest_per_s)
            .collect(),
    );
    let runs_text: Vec<String> = results.iter().map(drain::Sustained::describe).collect();
    Ok(format!(
        "Measured {} on {}; SQLite store (WAL synced before each answer), {workers} workers, the no-op Rust \
         plugin (fresh instance per call), signed 2 KiB GitHub pushes over plain HTTP on \
         loopback from this process.\n\n\
         | figure | value |\n|---|---:|\n\
         | sustained ingest, {connections} connections, {seconds} s (median of {runs}) | {ingest:.0} events/s |\n\
         | drain (actions completed per second over the same runs, until the backlog is empty) | {drained:.0} actions/s |\n\
         | drain / ingest | {:.3} |\n\
         | sustained, from 1 s into the load to its end: events acknowledged / actions done per \
         second | {window_in:.0} / {window_out:.0} |\n\
         | sustained drain / ingest | {window_ratio:.3} |\n\
         | at {} events/s offered for {paced_seconds} s: ack p50 / p99 | {:.1} / {:.1} ms |\n\
         | at {} events/s: ack to action done p50 / p99 | {} / {} ms |\n\n\
         The latency run sent {} events ({} acknowledged). Runs (ingest/s / drain/s / backlog \
         when the load stopped / sustained ingest/s / sustained drain/s / backlog at the start \
         and end of the sustained window): {}.\n",
        today(),
        machine(),
        drained / ingest,
        p.offered_per_s,
        p.ack_p50_ms,
        p.ack_p99_ms,
        p.offered_per_s,
        p.done_p50_ms,
        p.done_p99_ms,
        rate * paced_seconds,
        p.sent,
        runs_text.join("; "),
    ))
}

async fn bench_plugins(calls: usize, rust_only: bool) -> anyhow::Result<String> {
    use hookwise::plugin_host::Grants;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = target_dir(&repo);
    let noop = drain::bench_noop()?;
    let mut rows =
        vec![plugins::measure("Rust (no-op, SDK)", &noop, "{}", &Grants::default(), calls).await?];
    let mut startup = None;
    if !rust_only {
        let (js, python) = plugins::build_lang(&repo, &target.join("bench-lang"))?;
        let addr = plugins::local_server().await?;
        let grants = Grants {
            http: vec![format!("http://{addr}")],
            db: Vec::new(),
        };
        let input = format!("{{\"url\": \"http://{addr}/\"}}");
        rows.push(
            plugins::measure(
                "JavaScript (componentize-js, log + one POST)",
                &js,
                &input,
                &grants,
                calls / 10,
            )
            .await?,
        );
        rows.push(
            plugins::measure(
                "Python (componentize-py, log + one POST)",
                &python,
                &input,
                &grants,
                calls / 10,
            )
            .await?,
        );
        startup =
            Some(plugins::startup(&[("noop", &noop), ("js", &js), ("python", &python)]).await?);
    }
    let mut out = format!(
        "Measured {} on {}; release build, pooling allocator, a fresh Store and instance per \
         call, sequential calls after a warm-up of a tenth as many.\n\n\
         | plugin | .wasm | compile, cold cache | load, warm cache | call p50 | call p99 | calls |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        today(),
        machine()
    );
    for r in &rows {
        out.push_str(&format!(
            "| {} | {:.1} MB | {:.0} ms | {:.1} ms | {:.0} us | {:.0} us | {} |\n",
            r.plugin,
            r.size_bytes as f64 / 1e6,
            r.cold_compile.as_secs_f64() * 1e3,
            r.warm_load.as_secs_f64() * 1e3,
            r.p50.as_secs_f64() * 1e6,
            r.p99.as_secs_f64() * 1e6,
            r.calls
        ));
    }
    if let Some(startup) = startup {
        let ready: Vec<String> = startup
            .ready
            .iter()
            .map(|(name, took)| format!("{name} {:.0} ms", took.as_secs_f64() * 1e3))
            .collect();
        out.push_str(&format!(
            "\nStart-up with an empty compile cache and the three plugins configured: the \
             server could listen after {:.0} ms (it compiles the plugins in the background); \
             each plugin was ready (and its actions claimable) after: {}.\n",
            startup.registry_built.as_secs_f64() * 1e3,
            ready.join(", ")
        ));
    }
    Ok(out)
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    Millis::now().to_rfc3339().chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_are_two_kib_github_pushes_that_differ() {
        let bodies: Vec<String> = (0..64).map(super::payload).collect();
        for body in &bodies {
            assert!(
                (2000..2100).contains(&body.len()),
                "{} bytes: {body}",
                body.len()
            );
            let push: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(push["ref"], "refs/heads/main");
            assert_eq!(push["commits"].as_array().map(Vec::len), Some(2));
        }
        let distinct: std::collections::HashSet<&String> = bodies.iter().collect();
        assert_eq!(distinct.len(), bodies.len());
        assert_eq!(super::payload(7), super::payload(7));
    }
}
