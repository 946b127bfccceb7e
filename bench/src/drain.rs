//! `drain`: a real hookwise server in this process (plain HTTP on loopback, SQLite store), one
//! rule that sends every event to the no-op Rust plugin, and signed GitHub events from many
//! connections. Measures the sustained ingest rate, the drain rate (actions completed per
//! second), and, at a fixed offered load, ack latency and ack-to-done latency.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use hookwise::model::{EventId, Millis};
use hookwise::store::{GroupCommitSettings, Store};
use hookwise::verify::{Provider, VerifyOptions};

const SECRET: &str = "bench-secret";

/// The no-op plugin the whole-server benches run, built into the bench's target folder.
pub fn bench_noop() -> anyhow::Result<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = crate::target_dir(&repo);
    build_noop(&repo, &target.join("bench-plugins"))
}

/// Builds `plugins/examples/noop` for wasm32-wasip2 (release) and returns the component.
pub fn build_noop(repo: &Path, target: &Path) -> anyhow::Result<PathBuf> {
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .current_dir(repo.join("plugins/examples"))
        .env("CARGO_TARGET_DIR", target)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "-p",
            "noop",
        ])
        .status()
        .context("running cargo for the noop plugin")?;
    anyhow::ensure!(status.success(), "building the noop plugin failed");
    Ok(target.join("wasm32-wasip2/release/noop.wasm"))
}

pub struct Server {
    pub base: String,
    pub dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), hookwise::server::ServeError>>,
}

pub async fn start(noop: &Path, workers: u32) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("hookwise.yaml");
    let config = format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: sqlite://hookwise.db\n\
         rules: rules.yaml\n\
         dispatch: {{ workers: {workers} }}\n\
         sources:\n  - {{ id: gh, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         plugins:\n  - name: noop\n    path: {}\n",
        noop.display()
    );
    std::fs::write(&config_path, &config)?;
    std::fs::write(
        dir.path().join("rules.yaml"),
        "rules:\n  - id: all\n    source: gh\n    events: [push]\n    actions:\n      - plugin: noop\n        with: { ref: \"{{ payload.ref }}\" }\n",
    )?;
    let env = |name: &str| (name == "GH_SECRET").then(|| SECRET.to_string());
    let config = hookwise::config::load_str(&config_path, &config, &env)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let listeners = hookwise::server::Listeners::bind(&config).await?;
    let addr = listeners.ingress.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(hookwise::server::run(config, listeners, async {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let ready = Instant::now();
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(60),
            "server not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server {
        base,
        dir,
        stop,
        task,
    })
}

impl Server {
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }

    pub async fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(
            "sqlite://hookwise.db",
            self.dir.path(),
            GroupCommitSettings::default(),
        )
        .await?)
    }
}

/// A signed request for event `n`: about 2 KiB, a GitHub push.
pub fn signed(url: &str, run: &str, n: usize) -> (Vec<u8>, Vec<(String, String)>) {
    signed_with(SECRET, url, run, n)
}

/// A request for event `n` signed with `secret`, under delivery id `{run}-{n}`.
pub fn signed_with(
    secret: &str,
    url: &str,
    run: &str,
    n: usize,
) -> (Vec<u8>, Vec<(String, String)>) {
    let body = crate::payload(n).into_bytes();
    let signed = hookwise::verify::sign_event(
        Provider::Github,
        secret,
        &VerifyOptions::default(),
        "POST",
        url,
        &body,
        SystemTime::now(),
        Some("push"),
    )
    .expect("signing");
    let mut headers: Vec<(String, String)> = signed
        .headers
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("x-github-delivery"))
        .collect();
    headers.push(("x-github-delivery".into(), format!("{run}-{n}")));
    headers.push(("content-type".into(), "application/json".into()));
    (body, headers)
}

async fn post(client: &reqwest::Client, url: &str, run: &str, n: usize) -> anyhow::Result<()> {
    let (body, headers) = signed(url, run, n);
    let mut req = client.post(url).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await?;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    Ok(())
}

pub struct Sustained {
    /// Events acknowledged per second over the whole load.
    pub ingest_per_s: f64,
    /// Actions done per second from the start of the load until the backlog was empty.
    pub drain_per_s: f64,
    pub backlog_at_end: i64,
    /// From one second into the load to its end: events acknowledged and actions done per
    /// second, and the backlog (acknowledged, not done) at the start and end of that window.
    pub window_ingest_per_s: f64,
    pub window_drain_per_s: f64,
    pub window_backlog: (i64, i64),
}

impl Sustained {
    /// The figures of one run, in the order the report names them.
    pub fn describe(&self) -> String {
        format!(
            "{:.0} / {:.0} / {} / {:.0} / {:.0} / {} to {}",
            self.ingest_per_s,
            self.drain_per_s,
            self.backlog_at_end,
            self.window_ingest_per_s,
            self.window_drain_per_s,
            self.window_backlog.0,
            self.window_backlog.1
        )
    }
}

/// `connections` clients send as fast as they can for `seconds`; then waits for the backlog.
pub async fn sustained(
    server: &Server,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Sustained> {
    let url = format!("{}/hooks/gh", server.base);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let store = server.store().await?;
    let before = store.execution_counts().await?.succeeded;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, run, next, stop, acked_so_far) = (
            client.clone(),
            url.clone(),
            run.clone(),
            next.clone(),
            stop.clone(),
            acked_so_far.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if post(&client, &url, &run, n).await.is_ok() {
                    sent += 1;
                    acked_so_far.fetch_add(1, Ordering::Relaxed);
                }
            }
            sent
        }));
    }
    let snapshot = async || -> anyhow::Result<(Instant, i64, i64)> {
        let acked = acked_so_far.load(Ordering::Relaxed) as i64;
        let done = store.execution_counts().await?.succeeded - before;
        Ok((Instant::now(), acked, done))
    };
    let warm_up = Duration::from_secs(1).min(Duration::from_secs(seconds) / 2);
    tokio::time::sleep(warm_up).await;
    let (window_start, acked_start, done_start) = snapshot().await?;
    tokio::time::sleep_until((started + Duration::from_secs(seconds)).into()).await;
    let (window_end, acked_end, done_end) = snapshot().await?;
    stop.store(true, Ordering::Relaxed);
    let mut acked = 0;
    for t in tasks {
        acked += t.await?;
    }
    let ingest_window = started.elapsed();
    let counts = store.execution_counts().await?;
    let done_in_window = counts.succeeded - before;
    let backlog_at_end = acked as i64 - done_in_window;
    // Drain the rest, timing the whole run until the last action completed.
    let drain_by = Instant::now() + Duration::from_secs(600);
    loop {
        // Cheap (partial indexes), so polling does not slow the server down.
        let (events, executions) = store.backlog().await?;
        if events == 0 && executions == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < drain_by,
            "backlog did not drain: {events} events, {executions} executions"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = store.execution_counts().await?.succeeded - before;
    anyhow::ensure!(
        done == acked as i64,
        "{done} actions done for {acked} events"
    );
    let total = started.elapsed();
    store.close().await;
    let window = window_end.duration_since(window_start).as_secs_f64();
    Ok(Sustained {
        ingest_per_s: acked as f64 / ingest_window.as_secs_f64(),
        drain_per_s: acked as f64 / total.as_secs_f64(),
        backlog_at_end,
        window_ingest_per_s: (acked_end - acked_start) as f64 / window,
        window_drain_per_s: (done_end - done_start) as f64 / window,
        window_backlog: (acked_start - done_start, acked_end - done_end),
    })
}

pub struct Paced {
    pub offered_per_s: u64,
    pub sent: usize,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub done_p50_ms: i64,
    pub done_p99_ms: i64,
}

/// Offers `rate` events per second for `seconds` (one request started per tick, whatever the
/// previous ones do), then measures ack latency and ack-to-done latency.
pub async fn paced(server: &Server, rate: u64, seconds: u64) -> anyhow::Result<Paced> {
    let url = format!("{}/hooks/gh", server.base);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let total = (rate * seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        tick.tick().await;
        let (client, url, run) = (client.clone(), url.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let (body, headers) = signed(&url, &run, n);
            let mut req = client.post(&url).body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.ok()?;
            let elapsed = t.elapsed();
            let answer: serde_json::Value = resp.json().await.ok()?;
            let id: EventId = answer["event_id"].as_str()?.parse().ok()?;
            Some((elapsed, id, Millis::now()))
        }));
    }
    let mut acks = Vec::new();
    let mut ids = Vec::new();
    for t in tasks {
        if let Some((elapsed, id, _)) = t.await? {
            acks.push(elapsed.as_secs_f64() * 1000.0);
            ids.push(id);
        }
    }
    let store = server.store().await?;
    let mut done = Vec::with_capacity(ids.len());
    let wait_by = Instant::now() + Duration::from_secs(300);
    for id in &ids {
        loop {
            let event = store.get_event(*id).await?.context("acked event missing")?;
            let xs = store.executions_for_event(*id).await?;
            let finished = match xs.first() {
                Some(x) => store
                    .attempts_for_execution(x.id)
                    .await?
                    .iter()
                    .find(|a| a.attempt.outcome == hookwise::model::AttemptOutcome::Succeeded)
                    .map(|a| a.attempt.finished_at),
                None => None,
            };
            if let Some(at) = finished {
                done.push(at.0 - event.event.received_at.0);
                break;
            }
            anyhow::ensure!(Instant::now() < wait_by, "event {id} not done");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    store.close().await;
    acks.sort_by(f64::total_cmp);
    done.sort_unstable();
    let pick = |v: &[f64], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    let pick_i = |v: &[i64], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    anyhow::ensure!(!acks.is_empty(), "no request was acknowledged");
    Ok(Paced {
        offered_per_s: rate,
        sent: acks.len(),
        ack_p50_ms: pick(&acks, 0.5),
        ack_p99_ms: pick(&acks, 0.99),
        done_p50_ms: pick_i(&done, 0.5),
        done_p99_ms: pick_i(&done, 0.99),
    })
}
