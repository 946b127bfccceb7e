//! `flood`: hostile senders and one honest provider at once, against a real `hookwise serve`
//! (a child process, SQLite store). Connections that announce 1 MiB bodies and trickle them, a
//! stream of bad-signature requests as fast as wrk sends them, and valid deliveries paced at a
//! provider's rate. Reports what the provider saw (every delivery acknowledged, ack latency),
//! the server's peak memory, and how fast refusals grow the store.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncWriteExt;

use crate::procs::{self, Memory, Server};
use crate::wrk::{self, Expect, Load};

const SECRET: &str = "flood-secret";

/// Loopback address of the honest provider: each sender has an address of its own, as on
/// the internet (wrk's bad signatures come from 127.0.0.1).
const PROVIDER_ADDRESS: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// The loopback address of trickling connection `n` of `addresses`: all of 127.1.0.0/16 is
/// loopback on Linux, so a thousand senders can each have an address of their own.
fn trickler_address(n: usize, addresses: usize) -> std::net::IpAddr {
    let i = n % addresses.max(1);
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(
        127,
        1,
        (i / 250) as u8,
        (i % 250 + 1) as u8,
    ))
}

/// What a flood run is made of.
pub struct Settings {
    pub hookwise: std::path::PathBuf,
    pub seconds: u64,
    /// Connections that announce a 1 MiB body and send it slowly.
    pub tricklers: usize,
    /// Client addresses the trickling connections come from (1: all from one; as many as
    /// connections: each from its own, as from a botnet).
    pub trickler_addresses: usize,
    /// Bytes each trickling connection sends per second.
    pub trickle_bytes_per_s: usize,
    /// wrk connections sending bad signatures.
    pub bad_connections: usize,
    /// Valid deliveries per second.
    pub valid_rate: u64,
}

/// The figures of one run.
pub struct Flood {
    pub valid_sent: usize,
    pub valid_acked: usize,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    pub bad_per_s: f64,
    pub trickle_connections: u64,
    pub trickle_bytes: u64,
    pub memory: Memory,
    /// Store size (database and its write-ahead log) at the start and end of the load: the
    /// valid events themselves included.
    pub store_bytes: (u64, u64),
    /// Bytes of the pages that hold the records of refused requests (the `delivery_attempts`
    /// table and its indexes; accepted deliveries are recorded in their event's row) at the
    /// start and end of the load.
    pub refusal_bytes: (u64, u64),
    /// The server's counters at the end: requests answered `503 overloaded`, connections
    /// closed at once.
    pub overloaded: u64,
    pub connections_refused: u64,
    pub seconds: f64,
}

impl Flood {
    /// Growth of the whole store in MB (10^6 bytes) per minute of load.
    pub fn store_mb_per_min(&self) -> f64 {
        self.per_min(self.store_bytes)
    }

    /// Growth of the refusal records in MB (10^6 bytes) per minute of load.
    pub fn refusal_mb_per_min(&self) -> f64 {
        self.per_min(self.refusal_bytes)
    }

    fn per_min(&self, (start, end): (u64, u64)) -> f64 {
        end.saturating_sub(start) as f64 / 1e6 / (self.seconds / 60.0)
    }

    /// The goals: each one's name, whether it was met, and the figure.
    pub fn goals(&self) -> Vec<(&'static str, bool, String)> {
        vec![
            (
                "every valid delivery acknowledged",
                self.valid_acked == self.valid_sent,
                format!("{} of {}", self.valid_acked, self.valid_sent),
            ),
            (
                "valid ack p99 at most 50 ms",
                self.ack_p99_ms <= 50.0,
                format!("{:.1} ms", self.ack_p99_ms),
            ),
            (
                "peak RSS at most 128 MB",
                self.memory.peak <= 128 * 1024 * 1024,
                format!("{:.0} MB", self.memory.peak as f64 / 1048576.0),
            ),
            (
                "store growth from refusals at most 10 MB a minute",
                self.refusal_mb_per_min() <= 10.0,
                format!("{:.2} MB/min", self.refusal_mb_per_min()),
            ),
        ]
    }
}

/// Bytes of the SQLite store `name` in `dir`: the database and its write-ahead log.
fn store_bytes(dir: &Path, name: &str) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(dir.join(format!("{name}{suffix}"))).ok())
        .map(|m| m.len())
        .sum()
}

/// Bytes of the pages holding refusal records in the SQLite store at `path`, as SQLite's
/// `dbstat` table counts them (the write-ahead log's newer pages included).
async fn refusal_bytes(path: &Path) -> anyhow::Result<u64> {
    use sqlx::ConnectOptions;
    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let bytes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN \
         (SELECT name FROM sqlite_schema WHERE tbl_name = 'delivery_attempts')",
    )
    .fetch_one(&mut db)
    .await
    .context("reading dbstat")?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// One connection after another that announces a 1 MiB body and sends it at `rate` bytes a
/// second, until `stop`; the server cuts each off when its body-read timeout passes.
async fn trickle(
    addr: std::net::SocketAddr,
    from: std::net::IpAddr,
    rate: usize,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
) {
    let head = "POST /hooks/github HTTP/1.1\r\nHost: flood\r\nContent-Type: application/json\r\n\
                X-GitHub-Event: push\r\nX-GitHub-Delivery: trickle\r\n\
                X-Hub-Signature-256: sha256=0000000000000000000000000000000000000000000000000000000000000000\r\n\
                Content-Length: 1048576\r\n\r\n";
    let chunk = vec![b' '; rate.max(1)];
    while !stop.load(Ordering::Relaxed) {
        let connected = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::new(from, 0))?;
            socket.connect(addr).await
        };
        let Ok(mut stream) = connected.await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        connections.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut sent = 0usize;
        while sent < 1 << 20 && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    }
}

/// Valid deliveries at `rate` a second for `seconds`, each under a new delivery id; returns
/// each one's ack latency, None where it was not acknowledged.
async fn provider(base: &str, rate: u64, seconds: u64) -> anyhow::Result<Vec<Option<Duration>>> {
    let url = format!("{base}/hooks/github");
    // From an address of its own, as a provider is: the bad-signature stream (from 127.0.0.1)
    // spends its own client's refusal budget, not the provider's.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .local_address(Some(PROVIDER_ADDRESS))
        .build()?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for n in 0..(rate * seconds) as usize {
        tick.tick().await;
        let (body, headers) = crate::drain::signed_with(SECRET, &url, &run, n);
        let mut req = client.post(&url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            match req.send().await {
                Ok(r) if r.status().is_success() => Some(t.elapsed()),
                Ok(r) => {
                    eprintln!("[flood] a valid delivery was answered {}", r.status());
                    None
                }
                Err(e) => {
                    eprintln!("[flood] a valid delivery failed: {e}");
                    None
                }
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await?);
    }
    Ok(out)
}

pub async fn run(s: &Settings) -> anyhow::Result<Flood> {
    wrk::check()?;
    let dir = procs::scratch_dir(&s.hookwise, "flood")?;
    let ports = procs::free_ports()?;
    let config = crate::all::hookwise_config(ports, "flood.db", "");
    let server: Server = procs::start_hookwise(
        &s.hookwise,
        dir.path(),
        &config,
        ports,
        &[("GH_SECRET", SECRET)],
    )
    .await?;
    let requests = Load::new(SECRET)?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports.0));

    let stop = Arc::new(AtomicBool::new(false));
    let (connections, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tricklers = Vec::new();
    for n in 0..s.tricklers {
        tricklers.push(tokio::spawn(trickle(
            addr,
            trickler_address(n, s.trickler_addresses),
            s.trickle_bytes_per_s,
            stop.clone(),
            connections.clone(),
            bytes.clone(),
        )));
    }
    // The bad-signature stream, off the async threads.
    let bad = {
        let (script, file) = (requests.script.clone(), requests.bad.clone());
        let url = format!("{}/hooks/github", server.base);
        let (connections, seconds) = (s.bad_connections, s.seconds);
        tokio::task::spawn_blocking(move || {
            wrk::run(
                &script,
                &file,
                &url,
                connections,
                1,
                Duration::from_secs(seconds),
                Expect::Rejected,
            )
        })
    };
    // Memory, sampled while the load runs (the peak is the kernel's high-water mark anyway).
    let sampling = {
        let stop = stop.clone();
        let pid = server.pid();
        tokio::spawn(async move {
            let mut rss_max = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    let rss = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                        .unwrap_or(0);
                    rss_max = rss_max.max(rss * 1024);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            rss_max
        })
    };
    // Let the flood build up before the provider's deliveries and the store size count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let store_start = store_bytes(dir.path(), "flood.db");
    let refusals_start = refusal_bytes(&dir.path().join("flood.db")).await?;
    let acks = provider(
        &server.base,
        s.valid_rate,
        s.seconds.saturating_sub(4).max(1),
    )
    .await?;
    let elapsed = started.elapsed();
    let store_end = store_bytes(dir.path(), "flood.db");
    let refusals_end = refusal_bytes(&dir.path().join("flood.db")).await?;
    let bad = bad.await?.context("the bad-signature stream")?;
    stop.store(true, Ordering::Relaxed);
    for t in tricklers {
        t.abort();
    }
    let rss_sampled = sampling.await?;
    let counters = server.metrics(&reqwest::Client::new()).await?;
    let memory = server.stop()?;
    eprintln!(
        "[flood] sampled RSS max {:.0} MB, kernel peak {:.0} MB",
        rss_sampled as f64 / 1048576.0,
        memory.peak as f64 / 1048576.0
    );

    let mut latencies: Vec<f64> = acks
        .iter()
        .flatten()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(f64::total_cmp);
    anyhow::ensure!(!latencies.is_empty(), "no valid delivery was acknowledged");
    let pick = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    Ok(Flood {
        valid_sent: acks.len(),
        valid_acked: latencies.len(),
        ack_p50_ms: pick(0.5),
        ack_p99_ms: pick(0.99),
        ack_max_ms: pick(1.0),
        bad_per_s: bad.per_s(),
        trickle_connections: connections.load(Ordering::Relaxed),
        trickle_bytes: bytes.load(Ordering::Relaxed),
        memory,
        store_bytes: (store_start, store_end),
        refusal_bytes: (refusals_start, refusals_end),
        overloaded: counters.overloaded,
        connections_refused: counters.connections_refused,
        seconds: elapsed.as_secs_f64(),
    })
}

/// The report for BENCHMARKS.md.
pub fn report(s: &Settings, f: &Flood, command: &str) -> String {
    let mut out = format!(
        "Measured {} on {}, with `{command}`: {} connections from {} client address{} each \
         announcing a 1 MiB body and sending {} bytes a second, wrk 1 thread x {} connections \
         of bad signatures, and a \
         provider sending {} valid signed 2 KiB GitHub pushes a second, for {:.0} s of \
         measured load. hookwise: `{}`, SQLite store, default limits.\n\n\
         | figure | value |\n|---|---:|\n",
        crate::today(),
        crate::machine(),
        s.tricklers,
        s.trickler_addresses,
        if s.trickler_addresses == 1 { "" } else { "es" },
        s.trickle_bytes_per_s,
        s.bad_connections,
        s.valid_rate,
        f.seconds,
        s.hookwise.display()
    );
    for (name, value) in [
        (
            "valid deliveries acknowledged",
            format!("{} of {}", f.valid_acked, f.valid_sent),
        ),
        (
            "valid ack p50 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                f.ack_p50_ms, f.ack_p99_ms, f.ack_max_ms
            ),
        ),
        ("bad signatures refused", format!("{:.0}/s", f.bad_per_s)),
        (
            "trickling connections opened / bytes sent",
            format!("{} / {}", f.trickle_connections, f.trickle_bytes),
        ),
        (
            "requests answered 503 overloaded / connections closed at once",
            format!("{} / {}", f.overloaded, f.connections_refused),
        ),
        (
            "server peak RSS",
            format!("{:.0} MB", f.memory.peak as f64 / 1048576.0),
        ),
        (
            "store growth from refusal records",
            format!(
                "{:.2} MB/min ({} to {} bytes)",
                f.refusal_mb_per_min(),
                f.refusal_bytes.0,
                f.refusal_bytes.1
            ),
        ),
        (
            "store growth, valid events included (database and WAL files)",
            format!(
                "{:.2} MB/min ({} to {} bytes)",
                f.store_mb_per_min(),
                f.store_bytes.0,
                f.store_bytes.1
            ),
        ),
    ] {
        out.push_str(&format!("| {name} | {value} |\n"));
    }
    out.push_str("\n| goal | met | figure |\n|---|---|---:|\n");
    for (name, met, figure) in f.goals() {
        out.push_str(&format!(
            "| {name} | {} | {figure} |\n",
            if met { "yes" } else { "**no**" }
        ));
    }
    out
}
