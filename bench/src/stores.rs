//! `stores`: hookwise's durable ingest on SQLite and on PostgreSQL, side by side in one run:
//! release `hookwise serve` over plain HTTP on loopback, the same signed 2 KiB GitHub pushes
//! from wrk, rounds alternating between a fresh SQLite file and a fresh PostgreSQL database on
//! the same machine; the median rate of each and their ratio. Then the latency a cluster adds:
//! three nodes on one PostgreSQL store, events at a fixed rate spread over the nodes, each
//! running the no-op plugin; how long after its arrival each action started (read from the
//! store: the first attempt's start minus the event's arrival, so the ack's own time counts).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::all::{self, hookwise_config_for};
use crate::cluster::Scratch;
use crate::procs::{self, Server};
use crate::wrk::{self, Load};
use crate::{machine, median, today};

const SECRET: &str = "stores-secret";
/// How long a server may take to plan and store what it acknowledged.
const IDLE_LIMIT: Duration = Duration::from_secs(600);

pub struct Settings {
    pub hookwise: PathBuf,
    /// Rounds of SQLite then PostgreSQL ingest; the median of each is reported.
    pub rounds: usize,
    pub seconds: u64,
    pub warmup: u64,
    pub connections: usize,
    pub threads: usize,
    /// Events per second offered to the three nodes in the latency run, and for how long.
    pub rate: u64,
    pub latency_seconds: u64,
    /// A PostgreSQL server to create the scratch databases on.
    pub postgres: String,
}

pub struct Stores {
    pub sqlite: Vec<wrk::Run>,
    pub postgres: Vec<wrk::Run>,
    /// Writes per group-commit transaction, per run.
    pub sqlite_batches: Vec<f64>,
    pub postgres_batches: Vec<f64>,
    /// The latency run: events sent, and action start after arrival in ms (sorted).
    pub sent: usize,
    pub starts_ms: Vec<f64>,
}

impl Stores {
    fn rate(runs: &[wrk::Run]) -> f64 {
        median(runs.iter().map(|r| r.per_s()).collect())
    }

    pub fn ratio(&self) -> f64 {
        Self::rate(&self.postgres) / Self::rate(&self.sqlite).max(1.0)
    }

    fn start_percentile(&self, p: f64) -> f64 {
        percentile(&self.starts_ms, p)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub async fn run(s: &Settings) -> anyhow::Result<Stores> {
    wrk::check()?;
    let requests = Load::new(SECRET)?;
    let scratch = procs::scratch_dir(&s.hookwise, "stores")?;
    let client = reqwest::Client::new();
    let env = [("GH_SECRET", SECRET)];
    let mut out = Stores {
        sqlite: Vec::new(),
        postgres: Vec::new(),
        sqlite_batches: Vec::new(),
        postgres_batches: Vec::new(),
        sent: 0,
        starts_ms: Vec::new(),
    };
    for round in 0..s.rounds.max(1) {
        for postgres in [false, true] {
            let dir = scratch.path().join(format!("ingest-{round}-{postgres}"));
            std::fs::create_dir(&dir)?;
            let db = if postgres {
                Some(Scratch::create(&s.postgres, "ingest").await?)
            } else {
                None
            };
            let store = match &db {
                Some(db) => db.url.clone(),
                None => "sqlite://hookwise.db".to_string(),
            };
            let ports = procs::free_ports()?;
            let config = hookwise_config_for(ports, &store, "");
            let server = procs::start_hookwise(&s.hookwise, &dir, &config, ports, &env).await?;
            let measured = ingest(&client, &requests, &server, s).await;
            server.stop()?;
            if let Some(db) = db {
                db.drop(&s.postgres).await?;
            }
            let (run, batch) = measured?;
            eprintln!(
                "[stores] round {}: {} ingest {:.0}/s p99 {:.1} ms, {batch:.1} writes per commit",
                round + 1,
                if postgres { "PostgreSQL" } else { "SQLite" },
                run.per_s(),
                run.p99_us as f64 / 1e3
            );
            if postgres {
                out.postgres.push(run);
                out.postgres_batches.push(batch);
            } else {
                out.sqlite.push(run);
                out.sqlite_batches.push(batch);
            }
        }
    }
    let db = Scratch::create(&s.postgres, "latency").await?;
    let latency = action_starts(s, &scratch.path().join("latency"), &db.url).await;
    db.drop(&s.postgres).await?;
    let (sent, starts) = latency?;
    out.sent = sent;
    out.starts_ms = starts;
    Ok(out)
}

/// Warm-up, then one measured wrk run of signed pushes; returns it with the writes per commit.
async fn ingest(
    client: &reqwest::Client,
    requests: &Load,
    server: &Server,
    s: &Settings,
) -> anyhow::Result<(wrk::Run, f64)> {
    all::load_with(requests, true, server, s.connections, s.threads, s.warmup).await?;
    server.wait_idle(client, IDLE_LIMIT).await?;
    let before = server.metrics(client).await?;
    let run = all::load_with(requests, true, server, s.connections, s.threads, s.seconds).await?;
    let after = server.wait_idle(client, IDLE_LIMIT).await?;
    let stored = after.events - before.events;
    anyhow::ensure!(
        stored >= run.requests && stored <= run.requests + s.connections as u64,
        "{stored} events stored for {} acknowledged requests",
        run.requests
    );
    Ok((run, after.writes_per_commit(&before)))
}

/// Three nodes on the store at `store_url`; `s.rate` events a second for `s.latency_seconds`,
/// each to the next node; returns the events sent and each action's start after its event's
/// arrival, in ms, sorted.
async fn action_starts(
    s: &Settings,
    dir: &std::path::Path,
    store_url: &str,
) -> anyhow::Result<(usize, Vec<f64>)> {
    let noop = crate::drain::bench_noop()?;
    let extra = crate::all::noop_extra(&noop);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let node_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir)?;
        std::fs::write(node_dir.join("rules.yaml"), crate::all::NOOP_RULES)?;
        let ports = procs::free_ports()?;
        let config = hookwise_config_for(ports, store_url, &extra);
        nodes.push(
            procs::start_hookwise(
                &s.hookwise,
                &node_dir,
                &config,
                ports,
                &[("GH_SECRET", SECRET)],
            )
            .await?,
        );
    }
    let client = reqwest::Client::new();
    for node in &nodes {
        crate::cluster::wait_plugins_compiled(&client, &node.admin()?).await?;
    }
    let total = (s.rate * s.latency_seconds) as usize;
    let gap = Duration::from_secs_f64(1.0 / s.rate.max(1) as f64);
    let started = Instant::now();
    let mut sending = tokio::task::JoinSet::new();
    for n in 0..total {
        // Paced from the start, not from the previous send: a slow answer does not slow the
        // offered rate.
        tokio::time::sleep_until((started + gap * n as u32).into()).await;
        let url = format!("{}/hooks/github", nodes[n % nodes.len()].base);
        let client = client.clone();
        sending.spawn(async move {
            let (body, headers) = crate::drain::signed_with(SECRET, &url, "latency", n);
            let mut req = client.post(&url).body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.context("posting an event")?;
            anyhow::ensure!(resp.status().is_success(), "answered {}", resp.status());
            Ok(())
        });
    }
    while let Some(sent) = sending.join_next().await {
        sent??;
    }
    let store = sqlx::PgPool::connect(store_url).await?;
    let deadline = Instant::now() + IDLE_LIMIT;
    let starts: Vec<(i64,)> = loop {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT COALESCE(x.first_started_at, a.started_at) - e.received_at \
             FROM executions x JOIN events e ON e.id = x.event_id \
             LEFT JOIN execution_attempts a ON a.execution_id = x.id AND a.attempt = 1 \
             WHERE e.source = 'github' \
             AND (x.first_started_at IS NOT NULL OR a.started_at IS NOT NULL)",
        )
        .fetch_all(&store)
        .await?;
        if rows.len() >= total {
            break rows;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {total} actions started",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    store.close().await;
    for node in nodes {
        node.stop()?;
    }
    let mut ms: Vec<f64> = starts.into_iter().map(|(d,)| d as f64).collect();
    ms.sort_by(f64::total_cmp);
    Ok((total, ms))
}

pub fn report(s: &Settings, r: &Stores, command: &str) -> String {
    let runs = |runs: &[wrk::Run]| {
        runs.iter()
            .map(|r| format!("{:.0}", r.per_s()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let p99 = |runs: &[wrk::Run]| median(runs.iter().map(|r| r.p99_us as f64 / 1e3).collect());
    format!(
        "Measured {} on {}, with `{command}`: release `hookwise serve`, plain HTTP on \
         loopback, no rules; wrk with {} thread(s) and {} connections sending signed 2 KiB \
         GitHub pushes with fresh delivery ids, {} s of warm-up and {} s measured per run, \
         rounds alternating between a new SQLite file and a new PostgreSQL database on this \
         machine; every acknowledged event checked stored.\n\n\
         | store | events/s (median) | runs | p99 ms | writes per commit |\n\
         |---|---:|---|---:|---:|\n\
         | SQLite | {:.0} | {} | {:.1} | {:.1} |\n\
         | PostgreSQL | {:.0} | {} | {:.1} | {:.1} |\n\n\
         PostgreSQL / SQLite: **{:.2}x** (goal: at least 0.5x).\n\n\
         Three nodes on one PostgreSQL store, {} events/s for {} s ({} events) spread over the \
         nodes, each running the no-op plugin: the action started (first attempt) after the \
         event arrived: p50 {:.0} ms, p99 **{:.0} ms**, max {:.0} ms (goal: p99 at most 50 ms).\n",
        today(),
        machine(),
        s.threads,
        s.connections,
        s.warmup,
        s.seconds,
        Stores::rate(&r.sqlite),
        runs(&r.sqlite),
        p99(&r.sqlite),
        median(r.sqlite_batches.clone()),
        Stores::rate(&r.postgres),
        runs(&r.postgres),
        p99(&r.postgres),
        median(r.postgres_batches.clone()),
        r.ratio(),
        s.rate,
        s.latency_seconds,
        r.sent,
        r.start_percentile(50.0),
        r.start_percentile(99.0),
        r.starts_ms.last().copied().unwrap_or(f64::NAN),
    )
}
