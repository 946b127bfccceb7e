//! The load generator for `all`: wrk 4.1.0 (Debian's package) with a Lua script that sends
//! pre-signed GitHub pushes under unique delivery ids and reports latency percentiles as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hookwise::verify::{Provider, VerifyOptions};

/// The wrk release the figures in BENCHMARKS.md were taken with (Debian bookworm's package).
pub const WRK_VERSION: &str = "4.1.0";
/// How to install it; `bench/run.sh` does this when wrk is missing.
pub const WRK_INSTALL: &str = "apt-get install -y wrk=4.1.0-3+b2";

const SCRIPT: &str = include_str!("../wrk/signed.lua");

/// Distinct signed bodies per request file; requests cycle through them.
const BODIES: usize = 1024;

/// Checks that wrk is installed and returns its version line.
pub fn check() -> anyhow::Result<String> {
    let out = Command::new("wrk")
        .arg("--version")
        .output()
        .with_context(|| {
            format!("wrk is not installed: run bench/run.sh, or install it with `{WRK_INSTALL}`")
        })?;
    // wrk prints its version with the usage text and exits 1.
    let text = String::from_utf8_lossy(&out.stdout);
    // "wrk debian/4.1.0-3+b2 [epoll] Copyright ...": keep the name and version.
    let line = text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    anyhow::ensure!(
        line.starts_with("wrk"),
        "`wrk --version` printed no version; install it with `{WRK_INSTALL}`"
    );
    if !line.contains(WRK_VERSION) {
        eprintln!(
            "warning: {line}; the figures in BENCHMARKS.md were taken with wrk {WRK_VERSION}"
        );
    }
    Ok(line)
}

/// The Lua script and request files for one benchmark, in a temporary folder.
pub struct Load {
    _dir: tempfile::TempDir,
    pub script: PathBuf,
    /// Requests signed with the source's secret.
    pub good: PathBuf,
    /// The same requests signed with another secret: every one is rejected.
    pub bad: PathBuf,
    /// Bytes in each body.
    pub body_bytes: usize,
}

impl Load {
    /// Writes the script and request files; bodies are signed for `secret`.
    pub fn new(secret: &str) -> anyhow::Result<Load> {
        let dir = tempfile::Builder::new().prefix("hookwise-wrk-").tempdir()?;
        let script = dir.path().join("signed.lua");
        std::fs::write(&script, SCRIPT)?;
        let good = dir.path().join("good.txt");
        let bad = dir.path().join("bad.txt");
        let mut good_text = String::new();
        let mut bad_text = String::new();
        let mut body_bytes = 0;
        for i in 0..BODIES {
            let body = crate::payload(i);
            body_bytes = body_bytes.max(body.len());
            anyhow::ensure!(!body.contains(['\n', '\t']), "a body must fit on one line");
            for (text, key) in [
                (&mut good_text, secret),
                (&mut bad_text, "not-the-source-secret"),
            ] {
                text.push_str(&signature(key, &body)?);
                text.push('\t');
                text.push_str(&body);
                text.push('\n');
            }
        }
        std::fs::write(&good, good_text)?;
        std::fs::write(&bad, bad_text)?;
        Ok(Load {
            _dir: dir,
            script,
            good,
            bad,
            body_bytes,
        })
    }
}

/// `X-Hub-Signature-256` of `body` under `secret`, made by hookwise's own signer.
fn signature(secret: &str, body: &str) -> anyhow::Result<String> {
    let signed = hookwise::verify::sign_event(
        Provider::Github,
        secret,
        &VerifyOptions::default(),
        "POST",
        "http://127.0.0.1/hooks/github",
        body.as_bytes(),
        SystemTime::now(),
        Some("push"),
    )
    .map_err(|e| anyhow::anyhow!("signing: {e:?}"))?;
    signed
        .headers
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-hub-signature-256"))
        .map(|(_, v)| v)
        .context("the GitHub signer made no X-Hub-Signature-256")
}

/// What one wrk run measured.
#[derive(Clone, Debug)]
pub struct Run {
    /// Requests answered.
    pub requests: u64,
    /// Requests started (sent or being sent).
    pub started: u64,
    pub duration_us: u64,
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    /// Answers that were not 2xx or 3xx.
    pub status: u64,
    /// Of those, how many of each status (paced runs only; several threads may repeat one).
    pub statuses: Vec<(u16, u64)>,
    pub timeout: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// CPU time the server process used per request over the run (set by the caller, which
    /// knows the process).
    pub server_cpu_us: Option<f64>,
}

impl Run {
    fn parse(json: &str) -> anyhow::Result<Run> {
        let v: serde_json::Value = serde_json::from_str(json)?;
        let field = |name: &str| {
            v[name]
                .as_u64()
                .with_context(|| format!("no `{name}` in {json}"))
        };
        Ok(Run {
            requests: field("requests")?,
            started: field("started")?,
            duration_us: field("duration_us")?,
            connect: field("connect")?,
            read: field("read")?,
            write: field("write")?,
            status: field("status")?,
            statuses: v["statuses"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, n)| Some((k.parse().ok()?, n.as_u64()?)))
                        .collect()
                })
                .unwrap_or_default(),
            timeout: field("timeout")?,
            p50_us: field("p50_us")?,
            p99_us: field("p99_us")?,
            server_cpu_us: None,
        })
    }

    pub fn per_s(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    /// Socket errors of any kind (not HTTP statuses).
    pub fn socket_errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// How a run is expected to be answered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every answer 2xx.
    Success,
    /// No answer 2xx (the reject path).
    Rejected,
}

/// Runs wrk against `url` for `duration` with `connections` over `threads` threads, sending the
/// requests of `requests`.
pub fn run(
    script: &Path,
    requests: &Path,
    url: &str,
    connections: usize,
    threads: usize,
    duration: Duration,
    expect: Expect,
) -> anyhow::Result<Run> {
    let run = invoke(script, requests, url, connections, threads, duration, &[])?;
    match expect {
        Expect::Success => anyhow::ensure!(
            run.status == 0,
            "{} of {} answers were not 2xx",
            run.status,
            run.requests
        ),
        Expect::Rejected => anyhow::ensure!(
            run.status == run.requests,
            "{} of {} bad-signature requests were accepted",
            run.requests - run.status,
            run.requests
        ),
    }
    Ok(run)
}

/// How long a paced run sends nothing before it ends, so that its last requests are answered
/// (and counted) within the run.
pub const PACED_QUIET: Duration = Duration::from_secs(1);

/// Runs wrk (one thread) for `duration`, starting `rate` requests a second on a fixed schedule
/// over at most `connections` connections, none in the last [`PACED_QUIET`]. Answers are
/// counted, not checked: the caller reports the failures.
pub fn paced(
    script: &Path,
    requests: &Path,
    url: &str,
    connections: usize,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Run> {
    anyhow::ensure!(
        duration > PACED_QUIET,
        "a paced run must last more than {PACED_QUIET:?}"
    );
    let sending = duration - PACED_QUIET;
    let pacing = [rate.to_string(), format!("{:.3}", sending.as_secs_f64())];
    invoke(script, requests, url, connections, 1, duration, &pacing)
}

fn invoke(
    script: &Path,
    requests: &Path,
    url: &str,
    connections: usize,
    threads: usize,
    duration: Duration,
    script_args: &[String],
) -> anyhow::Result<Run> {
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let out = Command::new("wrk")
        .arg(format!("--threads={threads}"))
        .arg(format!("--connections={connections}"))
        .arg(format!("--duration={}s", duration.as_secs().max(1)))
        // Long enough that a slow answer is measured rather than dropped.
        .arg("--timeout=10s")
        .arg("--script")
        .arg(script)
        .arg(url)
        .arg("--")
        .arg(requests)
        .arg(&run_id)
        .args(script_args)
        .output()
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed ({}): {}{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let json = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK_JSON "))
        .with_context(|| format!("no result line in wrk's output:\n{stdout}"))?;
    let run = Run::parse(json).context("parsing wrk's result line")?;
    anyhow::ensure!(run.requests > 0, "wrk completed no request:\n{stdout}");
    Ok(run)
}
