//! hookwise benchmarks. Each subcommand prints a Markdown table and, with `--write FILE`,
//! replaces its section of that file (BENCHMARKS.md) between markers.
//!
//! `store`: event inserts per second through the group-commit path versus one transaction per
//! insert, on a SQLite file and on PostgreSQL, with 2 KiB payloads from many concurrent tasks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookwise::model::{DeliveryAttemptId, EventId, EventStatus, Millis, Verdict};
use hookwise::store::{GroupCommitSettings, NewDeliveryAttempt, NewEvent, Store};
use sqlx::Connection;

#[derive(Parser)]
#[command(about = "hookwise benchmarks")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

/// A payload of about 2 KiB, shaped like a GitHub push.
fn payload(i: usize) -> String {
    let filler = "x".repeat(1_750);
    serde_json::json!({
        "ref": "refs/heads/main",
        "after": format!("{i:040x}"),
        "repository": {"id": 1296269, "full_name": "octocat/Hello-World", "private": false},
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "commits": [{"id": format!("{i:040x}"), "message": filler}],
    })
    .to_string()
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
            "SQLite (file, synchronous=FULL)",
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
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

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    Millis::now().to_rfc3339().chars().take(10).collect()
}
