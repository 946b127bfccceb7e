//! `all`: every headline figure in one run on one machine. Over HTTP, with wrk as the load
//! generator: a bare axum server that only answers 200 (the ceiling), hookwise's durable ingest,
//! its bad-signature reject path, and ingest while draining through the no-op plugin. In this
//! process: the plugin call and rule matching at 10, 1,000 and 10,000 rules. The HTTP paths
//! run in rounds (bare, ingest, reject, back to back) so that the load of the shared machine
//! weighs on all of them alike; ratios to the bare server of the same run are what compare
//! across machines.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procs::{self, Memory, Server};
use crate::wrk::{self, Expect, Load};
use crate::{median, plugins};

/// The GitHub source's secret in every hookwise config of this benchmark.
const SECRET: &str = "bench-secret";
/// How long a backlog may take to empty before the run is called failed.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

pub struct Settings {
    /// Rounds of bare / ingest / reject runs; each figure is the median over the rounds.
    pub rounds: usize,
    /// Seconds of load per run.
    pub seconds: u64,
    /// Seconds of unmeasured load on each freshly started server.
    pub warmup: u64,
    pub connections: usize,
    /// wrk thread counts: every HTTP figure is measured once per count (a harness shape).
    pub threads: Vec<usize>,
    /// Ingest-with-drain runs (each waits for its backlog to empty).
    pub drain_runs: usize,
    /// Runs of the plugin-call and rule-matching measurements.
    pub inproc_runs: usize,
    pub plugin_calls: usize,
    pub rule_events: usize,
    /// The `hookwise` binary to run.
    pub hookwise: PathBuf,
    /// Where to put `perf record -g` profiles of one extra (unmeasured) ingest, reject and
    /// drain run each, when given.
    pub perf: Option<PathBuf>,
}

/// wrk runs of one path, with hookwise's writes per group-commit transaction in each.
#[derive(Default)]
struct PathRuns(Vec<wrk::Run>, Vec<f64>);

impl PathRuns {
    fn writes_per_commit(&self) -> String {
        if self.1.is_empty() {
            "-".into()
        } else {
            format!("{:.1}", median(self.1.clone()))
        }
    }
    fn rate(&self) -> f64 {
        median(self.0.iter().map(|r| r.per_s()).collect())
    }
    fn p50_ms(&self) -> f64 {
        median(self.0.iter().map(|r| r.p50_us as f64 / 1e3).collect())
    }
    fn p99_ms(&self) -> f64 {
        median(self.0.iter().map(|r| r.p99_us as f64 / 1e3).collect())
    }
    /// The server's CPU time per request, median over the runs.
    fn cpu_us(&self) -> String {
        let runs: Vec<f64> = self.0.iter().filter_map(|r| r.server_cpu_us).collect();
        if runs.is_empty() {
            "-".into()
        } else {
            format!("{:.1} us", median(runs))
        }
    }
    fn runs_text(&self) -> String {
        let runs: Vec<String> = self.0.iter().map(|r| format!("{:.0}", r.per_s())).collect();
        runs.join(", ")
    }
    fn socket_errors(&self) -> u64 {
        self.0.iter().map(|r| r.socket_errors()).sum()
    }
}

/// How long the load runs before the sustained window starts: the backlog fills to its
/// working level in the first moments of a run.
const SUSTAINED_AFTER: Duration = Duration::from_secs(1);

/// Rates over the sustained window of a drain run, from hookwise's own counters.
struct Sustained {
    /// Events stored per second.
    ingest_per_s: f64,
    /// Actions done per second.
    drain_per_s: f64,
    /// Executions pending or running when the window started and when it ended.
    backlog_at_start: u64,
    backlog_at_end: u64,
}

impl Sustained {
    fn ratio(&self) -> f64 {
        self.drain_per_s / self.ingest_per_s
    }
}

/// One ingest-with-drain run.
struct DrainRun {
    load: wrk::Run,
    events: u64,
    /// Events per second over the whole run: from the start of the load until the last action
    /// completed.
    drain_per_s: f64,
    /// The load after its first [`SUSTAINED_AFTER`].
    sustained: Sustained,
    /// Actions not done yet when the load stopped.
    backlog_at_end: u64,
    /// Actions per second from the end of the load until the backlog was empty.
    after_load_per_s: Option<f64>,
    /// Writes per group-commit transaction over the run (ingest and dispatch alike).
    writes_per_commit: f64,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The config of a benchmarked server: plain HTTP on `ports`, a GitHub source, the SQLite file
/// `store` in its folder, and `extra`.
pub(crate) fn hookwise_config(ports: (u16, u16), store: &str, extra: &str) -> String {
    hookwise_config_for(ports, &format!("sqlite://{store}"), extra)
}

/// [`hookwise_config`] with the store at `store_url` (SQLite or PostgreSQL).
pub(crate) fn hookwise_config_for(ports: (u16, u16), store_url: &str, extra: &str) -> String {
    format!(
        "# hookwise-bench: plain HTTP on loopback, a GitHub source.\n\
         listen: 127.0.0.1:{}\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:{}, token: \"${{env:HOOKWISE_BENCH_TOKEN}}\" }}\n\
         store: \"{store_url}\"\n\
         sources:\n  - {{ id: github, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         {extra}",
        ports.0, ports.1
    )
}

/// The rules of a server whose every event runs the no-op plugin (see [`noop_extra`]).
pub(crate) const NOOP_RULES: &str = "rules:\n  - id: every-push\n    source: github\n    events: [push]\n    actions:\n      - plugin: noop\n        with: { ref: \"{{ payload.ref }}\" }\n";

/// The config lines that give a server [`NOOP_RULES`] (in its `rules.yaml`) and the no-op
/// plugin at `noop`.
pub(crate) fn noop_extra(noop: &Path) -> String {
    format!(
        "rules: rules.yaml\nplugins:\n  - name: noop\n    path: {}\n",
        noop.display()
    )
}

/// Runs wrk with `threads` off the async threads.
async fn load(
    load: &Load,
    good: bool,
    server: &Server,
    s: &Settings,
    threads: usize,
    seconds: u64,
) -> anyhow::Result<wrk::Run> {
    load_with(load, good, server, s.connections, threads, seconds).await
}

/// wrk with `connections` and `threads` against `server` for `seconds`, off the async threads;
/// the good (or badly signed) requests of `load`. Counts the server's CPU per request.
pub(crate) async fn load_with(
    load: &Load,
    good: bool,
    server: &Server,
    connections: usize,
    threads: usize,
    seconds: u64,
) -> anyhow::Result<wrk::Run> {
    let requests = if good { &load.good } else { &load.bad };
    let (requests, url) = (requests.clone(), format!("{}/hooks/github", server.base));
    let expect = if good {
        Expect::Success
    } else {
        Expect::Rejected
    };
    let script = load.script.clone();
    let cpu_before = server.cpu()?;
    let mut run = tokio::task::spawn_blocking(move || {
        wrk::run(
            &script,
            &requests,
            &url,
            connections,
            threads,
            Duration::from_secs(seconds),
            expect,
        )
    })
    .await??;
    let used = server.cpu()?.saturating_sub(cpu_before);
    run.server_cpu_us = Some(used.as_secs_f64() * 1e6 / run.requests.max(1) as f64);
    Ok(run)
}

/// `perf record -g` on `pid` for `seconds`, into `out`; returns the running recorder.
fn perf_record(pid: u32, seconds: u64, out: &Path) -> anyhow::Result<std::process::Child> {
    std::process::Command::new("perf")
        .args(["record", "-g", "-F", "499", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .args(["--", "sleep", &seconds.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting perf (apt-get install linux-perf)")
}

pub async fn run(s: &Settings, command: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    let load_start = loadavg();
    let wrk_version = wrk::check()?;
    anyhow::ensure!(
        s.hookwise.is_file(),
        "no hookwise binary at {}: build it with `cargo build --release -p hookwise -p \
         hookwise-bench` (bench/run.sh does)",
        s.hookwise.display()
    );
    let noop = crate::drain::bench_noop()?;
    let requests = Load::new(SECRET)?;
    let scratch = procs::scratch_dir(&s.hookwise, "all")?;
    let ingest_dir = scratch.path().join("ingest");
    let drain_dir = scratch.path().join("drain");
    std::fs::create_dir_all(&ingest_dir)?;
    std::fs::create_dir_all(&drain_dir)?;
    std::fs::write(drain_dir.join("rules.yaml"), NOOP_RULES)?;
    let client = reqwest::Client::new();
    let env = [("GH_SECRET", SECRET)];
    let drain_extra = noop_extra(&noop);
    anyhow::ensure!(
        !s.threads.is_empty() && !s.threads.contains(&0),
        "--threads needs at least one wrk thread count, each 1 or more"
    );

    // 0. A first start in each folder compiles the plugins into its cache (as the first start
    // of a new installation does); every measured server then starts with a warm cache.
    let mut cold_start = Memory::default();
    for (dir, extra) in [(&ingest_dir, ""), (&drain_dir, drain_extra.as_str())] {
        let ports = procs::free_ports()?;
        let config = hookwise_config(ports, "first-start.db", extra);
        let server = procs::start_hookwise(&s.hookwise, dir, &config, ports, &env).await?;
        cold_start = cold_start.max(server.stop()?);
    }

    // 1. Per harness shape: rounds of bare / ingest / reject, then ingest while draining.
    let mut loads = Vec::new();
    let mut shapes = Vec::new();
    for &threads in &s.threads {
        let dirs = (scratch.path(), ingest_dir.as_path(), drain_dir.as_path());
        shapes.push(
            measure_shape(
                threads,
                &requests,
                dirs,
                &drain_extra,
                &client,
                s,
                &mut loads,
            )
            .await?,
        );
    }

    // 2. In this process: the plugin call and rule matching.
    loads.push(loadavg());
    let mut plugin_rows = Vec::new();
    for _ in 0..s.inproc_runs.max(1) {
        plugin_rows.push(
            plugins::measure(
                "Rust (no-op, SDK)",
                &noop,
                "{}",
                &hookwise::plugin_host::Grants::default(),
                s.plugin_calls,
            )
            .await?,
        );
    }
    let mut rule_runs = Vec::new();
    for _ in 0..s.inproc_runs.max(1) {
        rule_runs.push(crate::rule_rows(&[10, 1_000, 10_000], s.rule_events)?);
    }
    let load_end = loadavg();

    // 3. Profiles, when asked for: extra runs that are not counted.
    if let Some(dir) = &s.perf {
        profile(
            dir,
            &requests,
            &ingest_dir,
            &drain_dir,
            &drain_extra,
            &client,
            s,
        )
        .await?;
    }

    let report = Report {
        s,
        command,
        wrk_version,
        body_bytes: requests.body_bytes,
        load_start,
        load_end,
        loads,
        shapes,
        cold_start,
        plugin_p50_us: median(
            plugin_rows
                .iter()
                .map(|r| r.p50.as_secs_f64() * 1e6)
                .collect(),
        ),
        plugin_p99_us: median(
            plugin_rows
                .iter()
                .map(|r| r.p99.as_secs_f64() * 1e6)
                .collect(),
        ),
        plugin_runs: plugin_rows
            .iter()
            .map(|r| r.p50.as_secs_f64() * 1e6)
            .collect(),
        rule_runs,
        elapsed: started.elapsed(),
    };
    Ok(report.render())
}

/// The HTTP figures of one harness shape: wrk with one thread count.
struct Shape {
    threads: usize,
    bare: PathRuns,
    ingest: PathRuns,
    reject: PathRuns,
    drains: Vec<DrainRun>,
    bare_memory: Memory,
    ingest_memory: Memory,
    drain_memory: Memory,
}

/// Rounds of bare / ingest / reject, then the ingest-with-drain runs, with wrk on `threads`
/// threads. The bare server runs in `dirs.0`, ingest in `dirs.1`, drain in `dirs.2`; `loads`
/// gets the load average before each run.
async fn measure_shape(
    threads: usize,
    requests: &Load,
    dirs: (&Path, &Path, &Path),
    drain_extra: &str,
    client: &reqwest::Client,
    s: &Settings,
    loads: &mut Vec<String>,
) -> anyhow::Result<Shape> {
    let (bare_dir, ingest_dir, drain_dir) = dirs;
    let env = [("GH_SECRET", SECRET)];
    eprintln!(
        "[all] wrk {threads} thread(s), load average {}; bare server",
        loadavg()
    );
    let bare = procs::start_bare(bare_dir).await?;
    load(requests, true, &bare, s, threads, s.warmup).await?;
    let mut shape = Shape {
        threads,
        bare: PathRuns::default(),
        ingest: PathRuns::default(),
        reject: PathRuns::default(),
        drains: Vec::new(),
        bare_memory: Memory::default(),
        ingest_memory: Memory::default(),
        drain_memory: Memory::default(),
    };
    for round in 0..s.rounds {
        loads.push(loadavg());
        let r = load(requests, true, &bare, s, threads, s.seconds).await?;
        eprintln!(
            "[all] {threads}t round {}: bare {:.0}/s p99 {:.1} ms (load average {})",
            round + 1,
            r.per_s(),
            r.p99_us as f64 / 1e3,
            loadavg()
        );
        shape.bare.0.push(r);

        let ports = procs::free_ports()?;
        let store = format!("ingest-{threads}t-{round}.db");
        let config = hookwise_config(ports, &store, "");
        let server = procs::start_hookwise(&s.hookwise, ingest_dir, &config, ports, &env).await?;
        load(requests, true, &server, s, threads, s.warmup).await?;
        server.wait_idle(client, DRAIN_LIMIT).await?;
        let before = server.metrics(client).await?;
        let r = load(requests, true, &server, s, threads, s.seconds).await?;
        eprintln!(
            "[all] {threads}t round {}: ingest {:.0}/s p99 {:.1} ms",
            round + 1,
            r.per_s(),
            r.p99_us as f64 / 1e3
        );
        server.wait_idle(client, DRAIN_LIMIT).await?;
        let after = server.metrics(client).await?;
        check_stored(after.events - before.events, &r, s)?;
        shape.ingest.0.push(r);
        shape.ingest.1.push(after.writes_per_commit(&before));
        let before = after;
        let r = load(requests, false, &server, s, threads, s.seconds).await?;
        eprintln!(
            "[all] {threads}t round {}: reject {:.0}/s p99 {:.1} ms",
            round + 1,
            r.per_s(),
            r.p99_us as f64 / 1e3
        );
        shape.reject.0.push(r);
        let after = server.wait_idle(client, DRAIN_LIMIT).await?;
        anyhow::ensure!(after.events == before.events, "a bad signature was stored");
        shape.reject.1.push(after.writes_per_commit(&before));
        shape.ingest_memory = shape.ingest_memory.max(server.stop()?);
    }
    shape.bare_memory = bare.stop()?;

    // Ingest while draining through the no-op plugin; fresh server and store per run.
    for run in 0..s.drain_runs {
        loads.push(loadavg());
        let ports = procs::free_ports()?;
        let store = format!("drain-{threads}t-{run}.db");
        let config = hookwise_config(ports, &store, drain_extra);
        let server = procs::start_hookwise(&s.hookwise, drain_dir, &config, ports, &env).await?;
        load(requests, true, &server, s, threads, s.warmup).await?;
        server.wait_idle(client, DRAIN_LIMIT).await?;
        let d = drain_run(requests, &server, client, s, threads).await?;
        eprintln!(
            "[all] {threads}t drain run {}: ingest {:.0}/s, drain {:.0}/s, backlog at end of \
             load {}, after the load {:.0}/s (load average {})",
            run + 1,
            d.load.per_s(),
            d.drain_per_s,
            d.backlog_at_end,
            d.after_load_per_s.unwrap_or(0.0),
            loadavg()
        );
        shape.drains.push(d);
        shape.drain_memory = shape.drain_memory.max(server.stop()?);
    }
    Ok(shape)
}

async fn drain_run(
    requests: &Load,
    server: &Server,
    client: &reqwest::Client,
    s: &Settings,
    threads: usize,
) -> anyhow::Result<DrainRun> {
    let before = server.metrics(client).await?;
    let started = Instant::now();
    // The sustained window starts once the load has warmed up and ends with the load.
    let warm = async {
        tokio::time::sleep(SUSTAINED_AFTER).await;
        let m = server.metrics(client).await;
        (Instant::now(), m)
    };
    let (r, (warm_at, warm)) =
        tokio::join!(load(requests, true, server, s, threads, s.seconds), warm);
    let (r, warm) = (r?, warm?);
    let load_end = Instant::now();
    let at_end = server.metrics(client).await?;
    let backlog_at_end =
        (at_end.events - before.events).saturating_sub(at_end.succeeded - before.succeeded);
    let window = load_end.duration_since(warm_at).as_secs_f64();
    let sustained = Sustained {
        ingest_per_s: (at_end.events - warm.events) as f64 / window,
        drain_per_s: (at_end.succeeded - warm.succeeded) as f64 / window,
        backlog_at_start: warm.backlog,
        backlog_at_end: at_end.backlog,
    };
    let (done, events, writes_per_commit) = loop {
        let m = server.metrics(client).await?;
        anyhow::ensure!(
            m.failed == before.failed,
            "{} no-op actions failed",
            m.failed - before.failed
        );
        let events = m.events - before.events;
        let succeeded = m.succeeded - before.succeeded;
        if m.has_backlog && m.backlog == 0 && succeeded >= events {
            break (Instant::now(), events, m.writes_per_commit(&before));
        }
        anyhow::ensure!(
            started.elapsed() < DRAIN_LIMIT,
            "{succeeded} of {events} actions done after {DRAIN_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    check_stored(events, &r, s)?;
    let after_load = done.duration_since(load_end).as_secs_f64();
    Ok(DrainRun {
        load: r,
        events,
        drain_per_s: events as f64 / done.duration_since(started).as_secs_f64(),
        sustained,
        backlog_at_end,
        after_load_per_s: (backlog_at_end > 0 && after_load > 0.0)
            .then(|| backlog_at_end as f64 / after_load),
        writes_per_commit,
    })
}

/// Every acknowledged request is a stored event. wrk counts only the answers it read before
/// its time was up, so up to one request per connection more may have been stored.
fn check_stored(stored: u64, r: &wrk::Run, s: &Settings) -> anyhow::Result<()> {
    anyhow::ensure!(
        stored >= r.requests && stored <= r.requests + s.connections as u64,
        "{stored} events stored for {} acknowledged requests",
        r.requests
    );
    Ok(())
}

/// One extra ingest, reject and drain run each under `perf record -g`, into `dir`, with wrk
/// on the first of the thread counts.
async fn profile(
    dir: &Path,
    requests: &Load,
    ingest_dir: &Path,
    drain_dir: &Path,
    drain_extra: &str,
    client: &reqwest::Client,
    s: &Settings,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let threads = s.threads[0];
    let env = [("GH_SECRET", SECRET)];
    let ports = procs::free_ports()?;
    let config = hookwise_config(ports, "perf-ingest.db", "");
    let server = procs::start_hookwise(&s.hookwise, ingest_dir, &config, ports, &env).await?;
    load(requests, true, &server, s, threads, s.warmup).await?;
    server.wait_idle(client, DRAIN_LIMIT).await?;
    for (name, good) in [("ingest", true), ("reject", false)] {
        let out = dir.join(format!("{name}.perf.data"));
        let mut perf = perf_record(server.pid(), s.seconds.saturating_sub(2).max(1), &out)?;
        let r = load(requests, good, &server, s, threads, s.seconds).await?;
        perf.wait()?;
        eprintln!(
            "[all] profiled {name}: {:.0}/s (perf slows it) -> {}",
            r.per_s(),
            out.display()
        );
        server.wait_idle(client, DRAIN_LIMIT).await?;
    }
    server.stop()?;
    let ports = procs::free_ports()?;
    let config = hookwise_config(ports, "perf-drain.db", drain_extra);
    let server = procs::start_hookwise(&s.hookwise, drain_dir, &config, ports, &env).await?;
    let out = dir.join("drain.perf.data");
    let mut perf = perf_record(server.pid(), s.seconds * 2, &out)?;
    let d = drain_run(requests, &server, client, s, threads).await?;
    perf.wait()?;
    eprintln!(
        "[all] profiled drain: ingest {:.0}/s, drain {:.0}/s -> {}",
        d.load.per_s(),
        d.drain_per_s,
        out.display()
    );
    server.stop()?;
    Ok(())
}

struct Report<'a> {
    s: &'a Settings,
    command: &'a str,
    wrk_version: String,
    body_bytes: usize,
    load_start: String,
    load_end: String,
    loads: Vec<String>,
    shapes: Vec<Shape>,
    /// The first start of hookwise, compiling the plugins into an empty cache.
    cold_start: Memory,
    plugin_p50_us: f64,
    plugin_p99_us: f64,
    plugin_runs: Vec<f64>,
    rule_runs: Vec<Vec<crate::RuleRow>>,
    elapsed: Duration,
}

/// One goal and what this run measured: once per harness shape, or once for the in-process
/// figures.
struct Goal {
    what: &'static str,
    /// The bound, as written in the table.
    bound: &'static str,
    /// (shape name or "", measured, shown).
    measured: Vec<(String, f64, String)>,
    /// `true`: measured must be at least `limit`; `false`: at most.
    at_least: bool,
    limit: f64,
}

impl Goal {
    /// A goal measured once per shape, by `figure`, shown by `show`.
    fn per_shape(
        what: &'static str,
        bound: &'static str,
        shapes: &[Shape],
        at_least: bool,
        limit: f64,
        figure: impl Fn(&Shape) -> f64,
        show: impl Fn(f64) -> String,
    ) -> Goal {
        let measured = shapes
            .iter()
            .map(|shape| {
                let value = figure(shape);
                (shape.name(), value, show(value))
            })
            .collect();
        Goal {
            what,
            bound,
            measured,
            at_least,
            limit,
        }
    }

    fn shown(&self) -> String {
        let shown: Vec<String> = self
            .measured
            .iter()
            .map(|(shape, _, shown)| {
                if shape.is_empty() {
                    shown.clone()
                } else {
                    format!("{shown} ({shape})")
                }
            })
            .collect();
        shown.join(", ")
    }

    fn verdict(&self) -> String {
        let missed: Vec<String> = self
            .measured
            .iter()
            .filter(|(_, measured, _)| {
                !if self.at_least {
                    *measured >= self.limit
                } else {
                    *measured <= self.limit
                }
            })
            .map(|(shape, measured, _)| {
                let by = if self.at_least {
                    format!(
                        "by {:.0}% (at {:.0}% of the goal)",
                        (1.0 - measured / self.limit) * 100.0,
                        measured / self.limit * 100.0
                    )
                } else {
                    format!(
                        "by {:.0}% ({:.2}x the bound)",
                        (measured / self.limit - 1.0) * 100.0,
                        measured / self.limit
                    )
                };
                if shape.is_empty() {
                    by
                } else {
                    format!("{shape} {by}")
                }
            })
            .collect();
        if missed.is_empty() {
            "met".into()
        } else {
            format!("**missed**: {}", missed.join("; "))
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

impl Shape {
    fn name(&self) -> String {
        match self.threads {
            1 => "wrk 1 thread".into(),
            n => format!("wrk {n} threads"),
        }
    }

    /// Events per second stored while each runs one no-op action, median over the runs.
    fn drain_ingest(&self) -> f64 {
        median(self.drains.iter().map(|d| d.load.per_s()).collect())
    }

    fn drain_p99_ms(&self) -> f64 {
        median(
            self.drains
                .iter()
                .map(|d| d.load.p99_us as f64 / 1e3)
                .collect(),
        )
    }

    fn drain_ratio(&self) -> f64 {
        median(self.drains.iter().map(|d| d.sustained.ratio()).collect())
    }

    /// hookwise's highest peak resident memory under this shape's loads.
    fn hookwise_peak_mib(&self) -> f64 {
        self.ingest_memory.max(self.drain_memory).peak as f64 / MIB
    }

    /// The tables of this shape: the HTTP paths, then the drain.
    fn render(&self, connections: usize, out: &mut String) {
        let bare = self.bare.rate();
        let drain_ingest = self.drain_ingest();
        out.push_str(&format!(
            "**{}, {} connections.**\n\n\
             | path | requests/s | vs bare | latency p50 | latency p99 | server CPU per request \
             | writes per commit | runs (requests/s) |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
            self.name(),
            connections
        ));
        let rows: [(&str, &PathRuns); 3] = [
            ("bare axum server, answers 200", &self.bare),
            (
                "hookwise durable ingest (202 after the commit; no rules)",
                &self.ingest,
            ),
            ("hookwise bad-signature reject (401)", &self.reject),
        ];
        for (name, runs) in rows {
            let rate = runs.rate();
            out.push_str(&format!(
                "| {name} | {rate:.0} | {:.2}x | {:.1} ms | {:.1} ms | {} | {} | {} |\n",
                rate / bare,
                runs.p50_ms(),
                runs.p99_ms(),
                runs.cpu_us(),
                runs.writes_per_commit(),
                runs.runs_text()
            ));
        }
        let drain_runs: Vec<String> = self
            .drains
            .iter()
            .map(|d| format!("{:.0}", d.load.per_s()))
            .collect();
        out.push_str(&format!(
            "| hookwise ingest while draining (one rule, the no-op plugin) | {drain_ingest:.0} \
             | {:.2}x | {:.1} ms | {:.1} ms | {:.1} us | {:.1} | {} |\n\n",
            drain_ingest / bare,
            median(
                self.drains
                    .iter()
                    .map(|d| d.load.p50_us as f64 / 1e3)
                    .collect()
            ),
            self.drain_p99_ms(),
            median(
                self.drains
                    .iter()
                    .filter_map(|d| d.load.server_cpu_us)
                    .collect()
            ),
            median(self.drains.iter().map(|d| d.writes_per_commit).collect()),
            drain_runs.join(", ")
        ));
        let errors = self.bare.socket_errors()
            + self.ingest.socket_errors()
            + self.reject.socket_errors()
            + self
                .drains
                .iter()
                .map(|d| d.load.socket_errors())
                .sum::<u64>();
        if errors > 0 {
            out.push_str(&format!(
                "wrk counted {errors} socket errors (connect, read, write or timeout) over these \
                 runs.\n\n"
            ));
        }

        let after: Vec<f64> = self
            .drains
            .iter()
            .filter_map(|d| d.after_load_per_s)
            .collect();
        let drain_detail: Vec<String> = self
            .drains
            .iter()
            .map(|d| {
                format!(
                    "{:.0} / {:.0} / {:.3} ({} to {}) / {:.0} / {} / {}",
                    d.sustained.ingest_per_s,
                    d.sustained.drain_per_s,
                    d.sustained.ratio(),
                    d.sustained.backlog_at_start,
                    d.sustained.backlog_at_end,
                    d.drain_per_s,
                    d.backlog_at_end,
                    d.events
                )
            })
            .collect();
        out.push_str(&format!(
            "| drain (no-op plugin, fresh instance per call), {} | value |\n|---|---:|\n\
             | sustained ({}s into the load to its end): events stored per second | {:.0} |\n\
             | sustained: actions done per second | {:.0} |\n\
             | sustained: drain / ingest of the same runs | {:.3} |\n\
             | whole run: actions done per second, from the start of the load until the backlog \
             is empty | {:.0} |\n\
             | whole run: drain / ingest (the backlog left when the load stops counts against \
             it) | {:.3} |\n\
             | actions per second after the load stopped, until the backlog was empty | {} |\n\n\
             Drain runs (sustained: events stored/s / actions done/s / ratio (executions pending \
             or running at the start and end of the window); whole run: actions done/s / \
             backlog when the load stopped / events): {}.\n\n",
            self.name(),
            SUSTAINED_AFTER.as_secs(),
            median(
                self.drains
                    .iter()
                    .map(|d| d.sustained.ingest_per_s)
                    .collect()
            ),
            median(
                self.drains
                    .iter()
                    .map(|d| d.sustained.drain_per_s)
                    .collect()
            ),
            self.drain_ratio(),
            median(self.drains.iter().map(|d| d.drain_per_s).collect()),
            median(
                self.drains
                    .iter()
                    .map(|d| d.drain_per_s / d.load.per_s())
                    .collect()
            ),
            if after.is_empty() {
                "no backlog".to_string()
            } else {
                format!("{:.0}", median(after))
            },
            drain_detail.join("; ")
        ));
    }
}

impl Report<'_> {
    /// The median over the runs of one rule-count row's figure, in microseconds; `figure`
    /// picks it from the row (its p50 or its p99).
    fn rule_us(&self, index: usize, figure: fn(&crate::RuleRow) -> u128) -> f64 {
        median(
            self.rule_runs
                .iter()
                .filter_map(|rows| rows.get(index))
                .map(|r| figure(r) as f64 / 1e3)
                .collect(),
        )
    }

    fn render(&self) -> String {
        let s = self.s;
        let shapes: Vec<String> = self.shapes.iter().map(Shape::name).collect();
        let mut out = format!(
            "Measured {} on {}, load average {} at the start and {} at the end (1, 5, 15 \
             minutes; the benchmark's own processes count in it). The run took {:.1} minutes.\n\n\
             Command: `{}`. {}, {} connections, {}: {}. For each: {} s per run after {} s of unmeasured warm-up per server; {} \
             rounds of bare / ingest / reject back to back, then {} ingest-with-drain runs; each \
             figure is the median over the runs. Every request is a GitHub push of at most {} \
             bytes, with the fields of a real one and its own commit ids and messages (so it \
             compresses as real JSON does), signed with `X-Hub-Signature-256` and carrying its \
             own `X-GitHub-Delivery`. hookwise: the release binary, `hookwise serve` in a \
             process of its own, plain HTTP on loopback (`insecure_http`), SQLite file store \
             (WAL synced before each answer, group commit), default settings, log level info to \
             a file. Load average before each run: {}.\n\n",
            crate::today(),
            crate::machine(),
            self.load_start,
            self.load_end,
            self.elapsed.as_secs_f64() / 60.0,
            self.command,
            self.wrk_version,
            s.connections,
            match shapes.len() {
                1 => "one harness shape".to_string(),
                n => format!("{n} harness shapes measured one after the other"),
            },
            shapes.join(", "),
            s.seconds,
            s.warmup,
            s.rounds,
            s.drain_runs,
            self.body_bytes,
            self.loads.join("; "),
        );
        for shape in &self.shapes {
            shape.render(s.connections, &mut out);
        }

        out.push_str(&format!(
            "| in this process | p50 | p99 | runs (p50) |\n|---|---:|---:|---|\n\
             | plugin call, no-op Rust plugin, fresh instance per call ({} calls per run) | \
             {:.0} us | {:.0} us | {} |\n",
            s.plugin_calls,
            self.plugin_p50_us,
            self.plugin_p99_us,
            self.plugin_runs
                .iter()
                .map(|p| format!("{p:.0} us"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let counts: Vec<usize> = self
            .rule_runs
            .first()
            .map(|rows| rows.iter().map(|r| r.count).collect())
            .unwrap_or_default();
        for (i, count) in counts.iter().enumerate() {
            let runs: Vec<String> = self
                .rule_runs
                .iter()
                .filter_map(|rows| rows.get(i))
                .map(|r| format!("{:.1} us", r.p50_ns as f64 / 1e3))
                .collect();
            out.push_str(&format!(
                "| rule matching, {count} rules ({} events per run) | {:.1} us | {:.1} us | {} |\n",
                s.rule_events,
                self.rule_us(i, |r| r.p50_ns),
                self.rule_us(i, |r| r.p99_ns),
                runs.join(", ")
            ));
        }
        out.push_str(
            "\n| resident memory | peak (VmHWM) | at the end: heap and stacks (RssAnon) | at the \
             end: mapped files (RssFile) |\n|---|---:|---:|---:|\n",
        );
        let mut memories = Vec::new();
        for shape in &self.shapes {
            let name = shape.name();
            memories.push((
                format!("hookwise, ingest and reject runs, {name} (the largest server)"),
                shape.ingest_memory,
            ));
            memories.push((
                format!("hookwise, ingest-with-drain runs, {name} (the largest server)"),
                shape.drain_memory,
            ));
        }
        memories.push((
            "hookwise, first start: compiling the plugins into an empty cache, no load".into(),
            self.cold_start,
        ));
        for shape in &self.shapes {
            memories.push((
                format!("bare axum server, {}", shape.name()),
                shape.bare_memory,
            ));
        }
        for (name, m) in memories {
            out.push_str(&format!(
                "| {name} | {:.1} MiB | {:.1} MiB | {:.1} MiB |\n",
                m.peak as f64 / MIB,
                m.anon as f64 / MIB,
                m.file as f64 / MIB
            ));
        }
        out.push('\n');

        let rule_10k = counts
            .iter()
            .position(|&c| c == 10_000)
            .map(|i| self.rule_us(i, |r| r.p50_ns))
            .unwrap_or(f64::NAN);
        let ratio = |x: f64| format!("{x:.2}x");
        let ms = |x: f64| format!("{x:.1} ms");
        let in_process = |value: f64, shown: String| vec![(String::new(), value, shown)];
        let shapes = &self.shapes;
        let goals = [
            Goal::per_shape(
                "durable ingest vs bare server",
                "at least 0.25x",
                shapes,
                true,
                0.25,
                |x| x.ingest.rate() / x.bare.rate(),
                ratio,
            ),
            Goal::per_shape(
                "bad-signature rejects vs bare server",
                "at least 0.85x",
                shapes,
                true,
                0.85,
                |x| x.reject.rate() / x.bare.rate(),
                ratio,
            ),
            Goal::per_shape(
                "events with one no-op action vs bare server",
                "at least 0.2x",
                shapes,
                true,
                0.2,
                |x| x.drain_ingest() / x.bare.rate(),
                ratio,
            ),
            Goal::per_shape(
                "ack latency p99, events with one no-op action at 64 connections",
                "at most 20 ms",
                shapes,
                false,
                20.0,
                Shape::drain_p99_ms,
                ms,
            ),
            Goal::per_shape(
                "drain vs ingest, sustained (same runs)",
                "at least 1.0x",
                shapes,
                true,
                1.0,
                Shape::drain_ratio,
                |x| format!("{x:.3}x"),
            ),
            Goal::per_shape(
                "ack latency p99, durable ingest at 64 connections",
                "at most 20 ms",
                shapes,
                false,
                20.0,
                |x| x.ingest.p99_ms(),
                ms,
            ),
            Goal {
                what: "plugin call p50, fresh instance",
                bound: "at most 30 us",
                measured: in_process(self.plugin_p50_us, format!("{:.0} us", self.plugin_p50_us)),
                at_least: false,
                limit: 30.0,
            },
            Goal {
                what: "rule matching p50, 10,000 rules",
                bound: "at most 10 us",
                measured: in_process(rule_10k, format!("{rule_10k:.1} us")),
                at_least: false,
                limit: 10.0,
            },
            Goal::per_shape(
                "peak resident memory, hookwise under load (warm plugin cache)",
                "at most 64 MB (taken as MiB)",
                shapes,
                false,
                64.0,
                Shape::hookwise_peak_mib,
                |x| format!("{x:.1} MiB"),
            ),
        ];
        out.push_str("| goal | bound | this run | verdict |\n|---|---|---|---|\n");
        for g in &goals {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                g.what,
                g.bound,
                g.shown(),
                g.verdict()
            ));
        }
        out
    }
}
