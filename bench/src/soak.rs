//! `soak`: a long steady load on a real `hookwise serve` (a child process, SQLite store) whose
//! every event runs the no-op plugin. First measures the sustained rate of that server under
//! wrk, then offers half of it for many minutes and compares the last minute with the second:
//! resident memory, backlog and ack p99 must stay where they were, and nothing may be lost.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::procs::{self, Server};
use crate::wrk::{self, Expect, Load};

const SECRET: &str = "soak-secret";
/// Connections the paced load may use at once: the same as the run that measures the rate, so
/// that a slow answer delays the schedule only when 64 are open.
const CONNECTIONS: usize = 64;
/// One paced wrk run, one row of the report.
const MINUTE: Duration = Duration::from_secs(60);

pub struct Settings {
    pub hookwise: std::path::PathBuf,
    pub minutes: u64,
    /// Seconds of the wrk run that measures the sustained rate.
    pub measure_seconds: u64,
    /// Offered events per second; measured (half the sustained rate) when None.
    pub rate: Option<u64>,
}

/// One minute of the soak.
#[derive(Clone, Debug, Default)]
pub struct Minute {
    /// Requests started in the minute.
    pub sent: usize,
    /// Of those, answered 2xx.
    pub acked: usize,
    /// Why the others were not, or empty.
    pub failures: String,
    pub ack_p99_ms: f64,
    /// Highest resident memory sampled in the minute, bytes.
    pub rss_max: u64,
    /// Mean of the backlog sampled each second.
    pub backlog_mean: f64,
}

pub struct Soak {
    pub measured_per_s: f64,
    pub rate: u64,
    pub minutes: Vec<Minute>,
    pub acked: usize,
    pub events_stored: u64,
    pub succeeded: u64,
    pub peak_rss: u64,
}

impl Soak {
    /// Whether `last` is within 10% of `second`.
    fn steady(second: f64, last: f64) -> bool {
        (last - second).abs() <= 0.10 * second
    }

    pub fn goals(&self) -> Vec<(&'static str, bool, String)> {
        let (Some(second), Some(last)) = (self.minutes.get(1), self.minutes.last()) else {
            return vec![("at least two minutes", false, String::new())];
        };
        vec![
            (
                "RSS of the last minute within 10% of the second's",
                Self::steady(second.rss_max as f64, last.rss_max as f64),
                format!(
                    "{:.1} -> {:.1} MB",
                    second.rss_max as f64 / 1048576.0,
                    last.rss_max as f64 / 1048576.0
                ),
            ),
            (
                "backlog of the last minute within 10% of the second's",
                Self::steady(second.backlog_mean, last.backlog_mean),
                format!("{:.1} -> {:.1}", second.backlog_mean, last.backlog_mean),
            ),
            (
                "ack p99 of the last minute within 10% of the second's",
                Self::steady(second.ack_p99_ms, last.ack_p99_ms),
                format!("{:.2} -> {:.2} ms", second.ack_p99_ms, last.ack_p99_ms),
            ),
            (
                "events stored = acknowledged",
                self.events_stored == self.acked as u64,
                format!("{} = {}", self.events_stored, self.acked),
            ),
            (
                "executions succeeded = events",
                self.succeeded == self.events_stored,
                format!("{} = {}", self.succeeded, self.events_stored),
            ),
        ]
    }
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

async fn start(s: &Settings, dir: &Path, db: &str, noop: &Path) -> anyhow::Result<Server> {
    let extra = crate::all::noop_extra(noop);
    let ports = procs::free_ports()?;
    let config = crate::all::hookwise_config(ports, db, &extra);
    procs::start_hookwise(&s.hookwise, dir, &config, ports, &[("GH_SECRET", SECRET)]).await
}

/// The sustained rate of a fresh server with the no-op action on every event: wrk (1 thread,
/// 64 connections) for `seconds` after a 2 s warm-up.
async fn measure(s: &Settings, dir: &Path, noop: &Path) -> anyhow::Result<f64> {
    let server = start(s, dir, "measure.db", noop).await?;
    let load = Load::new(SECRET)?;
    let url = format!("{}/hooks/github", server.base);
    let mut runs = Vec::new();
    for seconds in [2, s.measure_seconds] {
        let (script, file, url) = (load.script.clone(), load.good.clone(), url.clone());
        runs.push(
            tokio::task::spawn_blocking(move || {
                wrk::run(
                    &script,
                    &file,
                    &url,
                    64,
                    1,
                    Duration::from_secs(seconds),
                    Expect::Success,
                )
            })
            .await??,
        );
    }
    let client = reqwest::Client::new();
    server.wait_idle(&client, Duration::from_secs(600)).await?;
    server.stop()?;
    Ok(runs.last().context("no wrk run")?.per_s())
}

pub async fn run(s: &Settings) -> anyhow::Result<Soak> {
    wrk::check()?;
    let noop = crate::drain::bench_noop()?;
    let dir = procs::scratch_dir(&s.hookwise, "soak")?;
    std::fs::write(dir.path().join("rules.yaml"), crate::all::NOOP_RULES)?;
    let measured = measure(s, dir.path(), &noop).await?;
    let rate = s.rate.unwrap_or((measured / 2.0) as u64).max(1);
    eprintln!(
        "[soak] sustained {measured:.0}/s; offering {rate}/s for {} minutes",
        s.minutes
    );

    let server = start(s, dir.path(), "soak.db", &noop).await?;
    let client = reqwest::Client::new();
    let before = server.metrics(&client).await?;
    let url = format!("{}/hooks/github", server.base);
    let load = Load::new(SECRET)?;

    let stop = Arc::new(AtomicBool::new(false));
    // The minute (wrk run) under way.
    let current = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, current, pid) = (stop.clone(), current.clone(), server.pid());
        let (admin, client) = (server.admin()?, client.clone());
        // Samples (RSS, backlog) once a second, tagged with their minute.
        tokio::spawn(async move {
            let mut out: Vec<(usize, u64, u64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let minute = current.load(Ordering::Relaxed);
                let backlog = admin.metrics(&client).await.map(|m| m.backlog).unwrap_or(0);
                out.push((minute, rss(pid), backlog));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            out
        })
    };
    // One paced wrk run a minute, back to back: each gives that minute's count and latencies.
    let mut runs = Vec::with_capacity(s.minutes as usize);
    for minute in 0..s.minutes {
        current.store(minute as usize, Ordering::Relaxed);
        let (script, file, url) = (load.script.clone(), load.good.clone(), url.clone());
        let run = tokio::task::spawn_blocking(move || {
            wrk::paced(&script, &file, &url, CONNECTIONS, rate, MINUTE)
        })
        .await??;
        eprintln!(
            "[soak] minute {}: {} started, {} answered, ack p99 {:.2} ms",
            minute + 1,
            run.started,
            run.requests,
            run.p99_us as f64 / 1e3
        );
        runs.push(run);
    }
    stop.store(true, Ordering::Relaxed);
    let mut samples: Vec<Vec<(u64, u64)>> = vec![Vec::new(); runs.len()];
    for (minute, rss, backlog) in sampler.await? {
        if let Some(m) = samples.get_mut(minute) {
            m.push((rss, backlog));
        }
    }
    let after = server.wait_idle(&client, Duration::from_secs(600)).await?;
    let memory = server.stop()?;

    let minutes: Vec<Minute> = runs
        .iter()
        .zip(&samples)
        .map(|(run, s)| Minute {
            sent: run.started as usize,
            acked: (run.requests - run.status) as usize,
            failures: failures(run),
            ack_p99_ms: run.p99_us as f64 / 1e3,
            rss_max: s.iter().map(|x| x.0).max().unwrap_or(0),
            backlog_mean: s.iter().map(|x| x.1 as f64).sum::<f64>() / s.len().max(1) as f64,
        })
        .collect();
    Ok(Soak {
        measured_per_s: measured,
        rate,
        acked: minutes.iter().map(|m| m.acked).sum(),
        minutes,
        events_stored: after.events - before.events,
        succeeded: after.succeeded - before.succeeded,
        peak_rss: memory.peak,
    })
}

/// Why requests of a run were not acknowledged, e.g. "503: 12, unanswered: 3".
fn failures(run: &wrk::Run) -> String {
    let mut out: Vec<String> = run
        .statuses
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect();
    for (what, n) in [
        ("connect errors", run.connect),
        ("read errors", run.read),
        ("write errors", run.write),
        ("timeouts", run.timeout),
        ("unanswered", run.started.saturating_sub(run.requests)),
    ] {
        if n > 0 {
            out.push(format!("{what}: {n}"));
        }
    }
    out.join(", ")
}

pub fn report(settings: &Settings, s: &Soak, command: &str) -> String {
    let mut out = format!(
        "Measured {} on {}, with `{command}`: one rule sends every event to the no-op Rust \
         plugin; wrk (1 thread, 64 connections) measured the sustained rate of that server at \
         {:.0} events/s; then {} signed 2 KiB GitHub pushes a second were offered for {} \
         minutes: one wrk run a minute (1 thread, at most {CONNECTIONS} connections), each \
         request started on a fixed schedule, none in the last second of a minute so that \
         every request is answered within its minute. hookwise: `{}`, SQLite store, default \
         limits. Peak RSS over the whole soak: {:.0} MB.\n\n\
         | minute | sent | acked | not acked | ack p99 | RSS max | backlog (mean) |\n\
         |---:|---:|---:|---|---:|---:|---:|\n",
        crate::today(),
        crate::machine(),
        s.measured_per_s,
        s.rate,
        s.minutes.len(),
        settings.hookwise.display(),
        s.peak_rss as f64 / 1048576.0
    );
    for (i, m) in s.minutes.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} ms | {:.1} MB | {:.1} |\n",
            i + 1,
            m.sent,
            m.acked,
            if m.failures.is_empty() {
                "0"
            } else {
                &m.failures
            },
            m.ack_p99_ms,
            m.rss_max as f64 / 1048576.0,
            m.backlog_mean
        ));
    }
    out.push_str("\n| goal | met | figure |\n|---|---|---:|\n");
    for (name, met, figure) in s.goals() {
        out.push_str(&format!(
            "| {name} | {} | {figure} |\n",
            if met { "yes" } else { "**no**" }
        ));
    }
    out
}
