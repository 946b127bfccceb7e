//! `cluster`: several release `hookwise serve` nodes on one PostgreSQL store, signed events from
//! many clients spread over the live nodes as a load balancer would, and one node killed with
//! SIGKILL part way through and not started again. Every event runs the built-in `write-db`
//! plugin, which inserts one row into a PostgreSQL sink table without a unique key, so a doubled
//! effect shows as a second row. Reports events acknowledged, lost and doubled, how long the
//! killed node's leased work took to be finished by the others, and the ack rate.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::Connection;

use crate::procs::{self, Server};

const SECRET: &str = "cluster-secret";
/// How long a client keeps resending one event before the run fails.
const DELIVERY_LIMIT: Duration = Duration::from_secs(300);
/// How long the nodes may take to finish everything once the load is over.
const IDLE_LIMIT: Duration = Duration::from_secs(600);
/// A client's pause before resending a delivery that failed.
const RESEND_PAUSE: Duration = Duration::from_millis(50);

pub struct Settings {
    pub hookwise: PathBuf,
    pub events: usize,
    pub clients: usize,
    pub nodes: usize,
    /// Acknowledged events before the kill.
    pub kill_after: usize,
    /// `dispatch.lease` of every node.
    pub lease: Duration,
    /// `dispatch.workers` of every node.
    pub workers: u32,
    /// A PostgreSQL server to create the scratch store and sink databases on.
    pub postgres: String,
}

pub struct Cluster {
    pub acked: usize,
    /// Acknowledged events that are not stored.
    pub lost: usize,
    /// Events stored more than once for one delivery id.
    pub stored_twice: usize,
    /// Stored events whose row was written more than once, and rows beyond the first.
    pub doubled: usize,
    pub extra_rows: i64,
    /// Stored events with no row.
    pub missing: usize,
    /// Executions not succeeded once everything was done: dead, pending, running.
    pub unfinished: (i64, i64, i64),
    pub acked_at_kill: usize,
    /// Executions the killed node held leases on when it died.
    pub leased_at_kill: usize,
    /// From the kill until the other nodes had finished all of those.
    pub takeover: Duration,
    /// From the first request until the last acknowledgement.
    pub load: Duration,
    /// From the first request until every execution was done.
    pub total: Duration,
}

impl Cluster {
    fn clean(&self) -> bool {
        self.lost == 0
            && self.stored_twice == 0
            && self.doubled == 0
            && self.missing == 0
            && self.unfinished == (0, 0, 0)
    }
}

/// A scratch PostgreSQL database, dropped by [`Scratch::drop`].
pub(crate) struct Scratch {
    name: String,
    pub(crate) url: String,
}

impl Scratch {
    pub(crate) async fn create(admin: &str, what: &str) -> anyhow::Result<Scratch> {
        let name = format!(
            "hookwise_bench_cluster_{what}_{}",
            uuid::Uuid::now_v7().simple()
        );
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .context("connect to PostgreSQL")?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
        Ok(Scratch {
            url: format!("{base}/{name}"),
            name,
        })
    }

    pub(crate) async fn drop(self, admin: &str) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }
}

fn config(ports: (u16, u16), s: &Settings, store: &str, sink: &str) -> String {
    format!(
        "# hookwise-bench cluster: one node of several on one PostgreSQL store.\n\
         listen: 127.0.0.1:{}\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:{}, token: \"${{env:HOOKWISE_BENCH_TOKEN}}\" }}\n\
         store: \"{store}\"\n\
         rules: rules.yaml\n\
         dispatch: {{ workers: {}, lease: {}ms }}\n\
         sources:\n  - {{ id: github, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         connections:\n  sink: \"{sink}\"\n\
         plugins:\n  - name: write-db\n    allow: {{ db: [sink] }}\n",
        ports.0,
        ports.1,
        s.workers,
        s.lease.as_millis()
    )
}

const RULES: &str = "rules:\n  - id: record\n    source: github\n    events: [push]\n    \
     actions:\n      - plugin: write-db\n        with:\n          connection: sink\n          \
     dialect: postgres\n          table: seen\n          columns: { event_id: \"{{ event.id }}\" }\n        \
     retry: { attempts: 10, backoff: 100ms, max_backoff: 1s }\n";

pub async fn run(s: &Settings) -> anyhow::Result<Cluster> {
    anyhow::ensure!(s.nodes >= 2, "a cluster needs at least 2 nodes");
    anyhow::ensure!(
        s.kill_after < s.events,
        "--kill-after must be below --events"
    );
    let store = Scratch::create(&s.postgres, "store").await?;
    let sink = Scratch::create(&s.postgres, "sink").await?;
    let result = run_on(s, &store.url, &sink.url).await;
    store.drop(&s.postgres).await?;
    sink.drop(&s.postgres).await?;
    result
}

async fn run_on(s: &Settings, store_url: &str, sink_url: &str) -> anyhow::Result<Cluster> {
    let sink = sqlx::PgPool::connect(sink_url).await?;
    sqlx::query("CREATE TABLE seen (event_id TEXT NOT NULL)")
        .execute(&sink)
        .await?;
    let store = sqlx::PgPool::connect(store_url).await?;
    let scratch = procs::scratch_dir(&s.hookwise, "cluster")?;
    let mut nodes = Vec::new();
    for i in 0..s.nodes {
        let dir = scratch.path().join(format!("node-{i}"));
        std::fs::create_dir(&dir)?;
        std::fs::write(dir.join("rules.yaml"), RULES)?;
        let ports = procs::free_ports()?;
        let config = config(ports, s, store_url, sink_url);
        nodes.push(
            procs::start_hookwise(&s.hookwise, &dir, &config, ports, &[("GH_SECRET", SECRET)])
                .await?,
        );
    }
    // Every node able to run actions before the load: the kill must find work in flight.
    let client = reqwest::Client::new();
    for node in &nodes {
        wait_plugins_compiled(&client, &node.admin()?).await?;
    }
    eprintln!("{} nodes ready", nodes.len());

    let mut load = Load::start(&nodes, s.events, s.clients);
    while load.acked() < s.kill_after {
        load.check()?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let victim = nodes.remove(nodes.len() / 2);
    let (pid, base) = (victim.pid(), victim.base.clone());
    let killed_at = Instant::now();
    let status = victim.kill()?;
    anyhow::ensure!(
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(9),
        "the node ended with {status}, not by SIGKILL"
    );
    load.remove(&base);
    let acked_at_kill = load.acked();
    let leased = leased_by(&store, pid).await?;
    eprintln!(
        "killed node {pid} after {acked_at_kill} acks; it held {} leases",
        leased.len()
    );
    let takeover = wait_succeeded(&store, &leased, killed_at, s.lease + IDLE_LIMIT).await?;
    eprintln!(
        "its leased work was finished by the others {} ms after the kill",
        takeover.as_millis()
    );
    let (acked, load_time) = load.finish().await?;
    eprintln!(
        "{} events acknowledged in {:.1} s",
        acked.len(),
        load_time.as_secs_f64()
    );
    wait_idle(&store, acked.len()).await?;
    let total = load.started.elapsed();

    let stored: Vec<(String, String)> = sqlx::query_as("SELECT id::text, delivery_id FROM events")
        .fetch_all(&store)
        .await?;
    let stored_ids: HashSet<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    let deliveries: HashSet<&str> = stored.iter().map(|(_, d)| d.as_str()).collect();
    let lost = acked
        .iter()
        .filter(|id| !stored_ids.contains(id.as_str()))
        .count();
    let written: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_id, COUNT(*) FROM seen GROUP BY event_id")
            .fetch_all(&sink)
            .await?;
    let doubled = written.iter().filter(|(_, n)| *n > 1).count();
    let extra_rows = written.iter().map(|(_, n)| (n - 1).max(0)).sum();
    let with_row: HashSet<&str> = written.iter().map(|(id, _)| id.as_str()).collect();
    let missing = stored_ids.difference(&with_row).count();
    let (dead, pending, running): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE status = 'dead'), \
         COUNT(*) FILTER (WHERE status = 'pending'), \
         COUNT(*) FILTER (WHERE status = 'running') FROM executions",
    )
    .fetch_one(&store)
    .await?;

    for node in nodes {
        node.stop()?;
    }
    store.close().await;
    sink.close().await;
    Ok(Cluster {
        acked: acked.len(),
        lost,
        stored_twice: stored.len() - deliveries.len(),
        doubled,
        extra_rows,
        missing,
        unfinished: (dead, pending, running),
        acked_at_kill,
        leased_at_kill: leased.len(),
        takeover,
        load: load_time,
        total,
    })
}

/// Waits until no plugin of a node is compiling any more (their actions wait meanwhile).
pub(crate) async fn wait_plugins_compiled(
    client: &reqwest::Client,
    admin: &procs::Admin,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let answer = admin.get_json(client, "/api/v1/plugins").await?;
        let plugins = answer["plugins"]
            .as_array()
            .context("no plugin list in /api/v1/plugins")?;
        if plugins.iter().all(|p| p["status"] != "compiling") {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < IDLE_LIMIT,
            "plugins still compiling: {plugins:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The executions process `pid` holds leases on: running, under a lease owner that names the
/// process (`HOST:PID:UUID`, as each dispatcher names itself).
async fn leased_by(store: &sqlx::PgPool, pid: u32) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT id::text, lease_owner FROM executions \
         WHERE status = 'running' AND lease_owner IS NOT NULL",
    )
    .fetch_all(store)
    .await?;
    let pid = pid.to_string();
    Ok(rows
        .into_iter()
        .filter(|(_, owner)| owner.rsplit(':').nth(1) == Some(pid.as_str()))
        .map(|(id, _)| id)
        .collect())
}

/// Waits until every one of `executions` has succeeded; returns how long after `since`.
async fn wait_succeeded(
    store: &sqlx::PgPool,
    executions: &[String],
    since: Instant,
    limit: Duration,
) -> anyhow::Result<Duration> {
    loop {
        let left: Vec<(String, String)> = sqlx::query_as(
            "SELECT id::text, status FROM executions WHERE id::text = ANY($1) \
             AND status <> 'succeeded'",
        )
        .bind(executions)
        .fetch_all(store)
        .await?;
        if left.is_empty() {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(
            left.iter().all(|(_, status)| status != "dead"),
            "a killed node's execution went dead: {left:?}"
        );
        anyhow::ensure!(
            since.elapsed() < limit,
            "the killed node's executions are not finished: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every one of `events` events is planned and every execution finished.
async fn wait_idle(store: &sqlx::PgPool, events: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (pending_events, unfinished, finished): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events WHERE status = 'pending'), \
             (SELECT COUNT(*) FROM executions WHERE status IN ('pending', 'running')), \
             (SELECT COUNT(*) FROM executions WHERE status IN ('succeeded', 'dead'))",
        )
        .fetch_one(store)
        .await?;
        if pending_events == 0 && unfinished == 0 && finished >= events as i64 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < IDLE_LIMIT,
            "not done: {pending_events} events to plan, {unfinished} executions unfinished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Events `0..events` sent by `clients` clients to the live nodes: client `c` to node
/// `c % live`, moving on to the next node when a request fails, resending until acknowledged.
struct Load {
    live: Arc<RwLock<Vec<String>>>,
    acked: Arc<Mutex<Vec<String>>>,
    acked_count: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    started: Instant,
    last_ack: Arc<Mutex<Instant>>,
}

impl Load {
    fn start(nodes: &[Server], events: usize, clients: usize) -> Load {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let live = Arc::new(RwLock::new(
            nodes.iter().map(|n| n.base.clone()).collect::<Vec<_>>(),
        ));
        let run = uuid::Uuid::now_v7().simple().to_string();
        let next = Arc::new(AtomicUsize::new(0));
        let acked = Arc::new(Mutex::new(Vec::with_capacity(events)));
        let acked_count = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let last_ack = Arc::new(Mutex::new(started));
        let clients = (0..clients)
            .map(|c| {
                let (client, live, run, next, acked, acked_count, last_ack) = (
                    client.clone(),
                    live.clone(),
                    run.clone(),
                    next.clone(),
                    acked.clone(),
                    acked_count.clone(),
                    last_ack.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= events {
                            return Ok(());
                        }
                        let id = deliver(&client, &live, c, &run, n).await?;
                        lock(&acked).push(id);
                        acked_count.fetch_add(1, Ordering::Relaxed);
                        *lock(&last_ack) = Instant::now();
                    }
                })
            })
            .collect();
        Load {
            live,
            acked,
            acked_count,
            clients,
            started,
            last_ack,
        }
    }

    fn acked(&self) -> usize {
        self.acked_count.load(Ordering::Relaxed)
    }

    /// Fails when every client has stopped (one that gives up stops).
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.clients.iter().all(|c| c.is_finished()),
            "the clients stopped after {} acknowledgements",
            self.acked()
        );
        Ok(())
    }

    /// Takes a dead node out of the balancer.
    fn remove(&self, base: &str) {
        lock_write(&self.live).retain(|b| b != base);
    }

    /// Waits for every client; returns the acknowledged event ids and the time from the first
    /// request to the last acknowledgement.
    async fn finish(&mut self) -> anyhow::Result<(Vec<String>, Duration)> {
        for c in self.clients.drain(..) {
            c.await??;
        }
        let last = *lock(&self.last_ack);
        Ok((std::mem::take(&mut *lock(&self.acked)), last - self.started))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

/// Sends event `n` from client `c` until a live node acknowledges it; returns its event id.
async fn deliver(
    client: &reqwest::Client,
    live: &RwLock<Vec<String>>,
    c: usize,
    run: &str,
    n: usize,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut turn = c;
    loop {
        let base = {
            let live = live.read().unwrap_or_else(|p| p.into_inner());
            anyhow::ensure!(!live.is_empty(), "no node is left");
            live[turn % live.len()].clone()
        };
        let url = format!("{base}/hooks/github");
        if let Some(id) = post(client, &url, run, n).await {
            return Ok(id);
        }
        anyhow::ensure!(
            started.elapsed() < DELIVERY_LIMIT,
            "event {n} not acknowledged in {DELIVERY_LIMIT:?}"
        );
        turn += 1;
        tokio::time::sleep(RESEND_PAUSE).await;
    }
}

async fn post(client: &reqwest::Client, url: &str, run: &str, n: usize) -> Option<String> {
    let (body, headers) = crate::drain::signed_with(SECRET, url, run, n);
    let mut req = client.post(url).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let answer: serde_json::Value = resp.json().await.ok()?;
    answer["event_id"].as_str().map(str::to_string)
}

pub fn report(s: &Settings, c: &Cluster, command: &str) -> String {
    let (dead, pending, running) = c.unfinished;
    format!(
        "Measured {} on {}, with `{command}`: {} release `hookwise serve` nodes on one \
         PostgreSQL store, {} workers each, `dispatch.lease` {} ms; {} clients sending signed \
         2 KiB GitHub pushes over plain HTTP on loopback, spread over the live nodes; every \
         event runs `write-db`, one row into a PostgreSQL table without a unique key. One node \
         killed with SIGKILL after {} acknowledgements and not started again.\n\n\
         | figure | value |\n|---|---:|\n\
         | events acknowledged | {} |\n\
         | acknowledged but not stored (lost) | {} |\n\
         | stored twice for one delivery | {} |\n\
         | events whose row was written more than once (doubled effects) | {} ({} extra rows) |\n\
         | stored events with no row | {} |\n\
         | executions dead / pending / running at the end | {dead} / {pending} / {running} |\n\
         | leases the killed node held when it died | {} |\n\
         | kill to all of those finished by the other nodes | {:.2} s |\n\
         | ack rate (first request to last ack, kill included) | {:.0} events/s |\n\
         | first request to every action done | {:.1} s |\n\n\
         {}\n",
        crate::today(),
        crate::machine(),
        s.nodes,
        s.workers,
        s.lease.as_millis(),
        s.clients,
        c.acked_at_kill,
        c.acked,
        c.lost,
        c.stored_twice,
        c.doubled,
        c.extra_rows,
        c.missing,
        c.leased_at_kill,
        c.takeover.as_secs_f64(),
        c.acked as f64 / c.load.as_secs_f64().max(f64::EPSILON),
        c.total.as_secs_f64(),
        if c.clean() {
            "Nothing acknowledged was lost and no effect was doubled."
        } else {
            "**Not clean**: see the figures above."
        }
    )
}

/// Whether the run lost or doubled anything (the command then fails, after its report).
pub fn clean(c: &Cluster) -> bool {
    c.clean()
}
