//! The servers `all` puts under load, each in a child process of its own so that wrk, the
//! server and this process are measured as they would run apart: the bare axum server (this
//! binary's hidden `bare` subcommand) and the real `hookwise serve`. Each one's peak resident
//! memory is read from /proc before it is stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long a server may take to answer /readyz, or to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A folder for one bench's servers, next to the hookwise binary: on the build disk (as a real
/// store would be, not a tmpfs /tmp), and ignored by git. Removed when dropped.
pub fn scratch_dir(hookwise: &Path, bench: &str) -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("hookwise-bench-{bench}-"))
        .tempdir_in(hookwise.parent().unwrap_or(Path::new(".")))?)
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Two different loopback ports nothing listens on right now (ingress and admin).
pub fn free_ports() -> anyhow::Result<(u16, u16)> {
    let a = std::net::TcpListener::bind("127.0.0.1:0")?;
    let b = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// A server running as a child process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Admin base URL and bearer token (hookwise only).
    admin: Option<(String, String)>,
    log: PathBuf,
}

/// The bare axum server: this binary's `bare` subcommand; it answers 200 to every request.
pub async fn start_bare(log_dir: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let log = log_dir.join("bare.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new(std::env::current_exe()?)
        .args(["bare", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting the bare server")?;
    let mut server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        admin: None,
        log,
    };
    server.wait_ready().await?;
    Ok(server)
}

/// `hookwise serve` on `config` (in `dir`, which also gets its log), with the given secrets in
/// its environment. The config must read the admin token from `${env:HOOKWISE_BENCH_TOKEN}`
/// and listen where `ports` say.
pub async fn start_hookwise(
    hookwise: &Path,
    dir: &Path,
    config: &str,
    ports: (u16, u16),
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let config_path = dir.join("hookwise.yaml");
    std::fs::write(&config_path, config)?;
    let token = uuid::Uuid::now_v7().simple().to_string();
    let log = dir.join("hookwise.log");
    let out = std::fs::File::create(&log)?;
    let mut command = Command::new(hookwise);
    command
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .current_dir(dir)
        .env("HOOKWISE_BENCH_TOKEN", &token)
        .env("HOOKWISE_LOG", "info")
        .env("HOOKWISE_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", hookwise.display()))?;
    let mut server = Server {
        child,
        base: format!("http://127.0.0.1:{}", ports.0),
        admin: Some((format!("http://127.0.0.1:{}", ports.1), token)),
        log,
    };
    server.wait_ready().await?;
    Ok(server)
}

/// Resident memory of a server, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Peak resident set over the process's life (VmHWM).
    pub peak: u64,
    /// Resident now: anonymous memory (heap, stacks) and file-backed pages (the binary).
    pub anon: u64,
    pub file: u64,
}

impl Memory {
    /// The one with the higher peak.
    pub fn max(self, other: Memory) -> Memory {
        if other.peak > self.peak { other } else { self }
    }
}

/// Figures read from hookwise's /metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics {
    /// Events stored (duplicates excluded).
    pub events: u64,
    /// Execution attempts that succeeded.
    pub succeeded: u64,
    /// Execution attempts that failed (retryable or fatal).
    pub failed: u64,
    /// Events not matched yet, and executions pending or running.
    pub backlog: u64,
    /// Whether the queue gauges were there (they are left out when the store did not answer).
    pub has_backlog: bool,
    /// Group-commit transactions, and the writes they carried.
    pub commits: u64,
    pub commit_writes: u64,
    /// Requests answered `503 overloaded`, and connections closed at once, by the listeners'
    /// caps.
    pub overloaded: u64,
    pub connections_refused: u64,
}

impl Metrics {
    /// Writes per group-commit transaction since `before`.
    pub fn writes_per_commit(&self, before: &Metrics) -> f64 {
        (self.commit_writes - before.commit_writes) as f64
            / (self.commits - before.commits).max(1) as f64
    }
}

impl Server {
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "server exited ({status}) while starting:\n{}",
                    self.log_tail()
                );
            }
            let ok = client
                .get(format!("{}/readyz", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = self.child.kill();
                anyhow::bail!("server not ready in time:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The process id, for `perf record -p`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process has used so far, user and system, all its threads (utime and
    /// stime of /proc/PID/stat, in clock ticks of 10 ms: Linux's USER_HZ is 100).
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .context("reading /proc/PID/stat")?;
        // The command name, in parentheses, may hold spaces: count the fields after it.
        let (_, rest) = stat.rsplit_once(')').context("no `)` in /proc/PID/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 (utime) and 15 (stime) of the line; the first after the name is field 3.
        let ticks = |field: usize| -> anyhow::Result<u64> {
            fields
                .get(field - 3)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("no field {field} in /proc/PID/stat"))
        };
        Ok(Duration::from_millis((ticks(14)? + ticks(15)?) * 10))
    }

    /// Resident memory of the process from /proc/PID/status.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("reading /proc/PID/status")?;
        let kib = |field: &str| -> anyhow::Result<u64> {
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {field} in /proc/PID/status"))?;
            Ok(kib * 1024)
        };
        Ok(Memory {
            peak: kib("VmHWM:")?,
            anon: kib("RssAnon:")?,
            file: kib("RssFile:")?,
        })
    }

    /// Stops the server (SIGTERM, then SIGKILL if it lingers) and returns its memory as it
    /// was just before.
    pub fn stop(mut self) -> anyhow::Result<Memory> {
        let memory = self.memory()?;
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        while self.child.try_wait()?.is_none() {
            if started.elapsed() > STOP_TIMEOUT {
                eprintln!("server {pid} did not stop after SIGTERM; killing it");
                self.child.kill()?;
                self.child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(memory)
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to end.
    pub fn kill(mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    /// Reads hookwise's /metrics (admin listener).
    pub async fn metrics(&self, client: &reqwest::Client) -> anyhow::Result<Metrics> {
        self.admin()?.metrics(client).await
    }

    /// Waits until nothing is left to do (no event to match, no execution pending or running).
    pub async fn wait_idle(
        &self,
        client: &reqwest::Client,
        limit: Duration,
    ) -> anyhow::Result<Metrics> {
        self.admin()?.wait_idle(client, limit).await
    }

    /// Where this server's admin listener is, to read its metrics from another task.
    pub fn admin(&self) -> anyhow::Result<Admin> {
        let (url, token) = self.admin.clone().context("not a hookwise server")?;
        Ok(Admin { url, token })
    }
}

/// A hookwise server's admin listener: base URL and bearer token.
#[derive(Clone)]
pub struct Admin {
    url: String,
    token: String,
}

impl Admin {
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// GETs `path` (e.g. `/api/v1/events`) with the token and reads its JSON answer.
    pub async fn get_json(
        &self,
        client: &reqwest::Client,
        path: &str,
    ) -> anyhow::Result<serde_json::Value> {
        Ok(client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Reads hookwise's /metrics.
    pub async fn metrics(&self, client: &reqwest::Client) -> anyhow::Result<Metrics> {
        let text = client
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let mut m = Metrics::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let value = value as u64;
            if name.starts_with("hookwise_events_total") {
                // hookwise's own events (a refusal spike under the reject load) are not the
                // load's.
                if !name.contains("source=\"hookwise\"") {
                    m.events += value;
                }
            } else if name.starts_with("hookwise_executions_total") {
                if name.contains("outcome=\"succeeded\"") {
                    m.succeeded += value;
                } else {
                    m.failed += value;
                }
            } else if name == "hookwise_group_commit_batch_size_count" {
                m.commits = value;
            } else if name == "hookwise_group_commit_batch_size_sum" {
                m.commit_writes = value;
            } else if name.starts_with("hookwise_requests_overloaded_total") {
                m.overloaded += value;
            } else if name.starts_with("hookwise_connections_refused_total") {
                m.connections_refused += value;
            } else if name.starts_with("hookwise_queue_depth") {
                m.backlog += value;
                m.has_backlog = true;
            }
        }
        Ok(m)
    }

    /// Waits until nothing is left to do (no event to match, no execution pending or running).
    pub async fn wait_idle(
        &self,
        client: &reqwest::Client,
        limit: Duration,
    ) -> anyhow::Result<Metrics> {
        let started = Instant::now();
        loop {
            let m = self.metrics(client).await?;
            if m.has_backlog && m.backlog == 0 {
                return Ok(m);
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "backlog of {} not done after {limit:?}",
                m.backlog
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only if `stop` was not called (an error on the way): never leave a server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
