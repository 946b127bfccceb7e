//! `dashboard`: a real `hookwise serve` (release, SQLite store) filled with a million events
//! that ran actions (most succeeded, about one in fourteen dead-lettered), then every dashboard page
//! and admin API listing asked for many times in a row by one signed-in client on loopback:
//! how long each takes to answer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header;

use crate::procs::{self, Server};
use crate::wrk::{self, Load};

const SECRET: &str = "dashboard-secret";
/// The store's file in the server's folder.
const DATABASE: &str = "dashboard.db";
/// The copy of it whose times are spread out.
const SPREAD_COPY: &str = "dashboard-spread.db";
/// Answers slower than this at p99 miss the goal.
const GOAL: Duration = Duration::from_millis(100);
/// Unmeasured requests before each URL's measured ones (page caches, prepared statements).
const WARMUP: usize = 5;
/// A URL slow enough to take longer than this for its requests is measured with fewer (at
/// least [`MIN_REQUESTS`]); the report gives the count.
const TIME_PER_URL: Duration = Duration::from_secs(20);
const MIN_REQUESTS: usize = 20;

pub struct Settings {
    pub hookwise: PathBuf,
    /// Events to store before measuring.
    pub events: u64,
    /// Measured requests per URL.
    pub requests: usize,
    /// Keep the filled store in this folder (and use it again if it already holds a store).
    pub keep: Option<PathBuf>,
}

/// One URL's answer times.
pub struct Timing {
    pub name: String,
    pub path: String,
    pub p50: Duration,
    pub p99: Duration,
    /// Requests measured.
    pub requests: usize,
}

/// How the stored events' times are laid out when the URLs are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// As they arrived: all within the minutes of the fill, so the overview's "last hour"
    /// covers every one of them.
    AsFilled,
    /// Moved back evenly over the last `days` days (each row keeps its order).
    Days(i64),
}

impl Spread {
    fn name(self) -> String {
        match self {
            Spread::AsFilled => "all in the last hour".into(),
            Spread::Days(1) => "over the last day".into(),
            Spread::Days(n) => format!("over the last {n} days"),
        }
    }
}

/// The spreads measured; each spreads a fresh copy of the filled store.
pub const SPREADS: [Spread; 3] = [Spread::AsFilled, Spread::Days(1), Spread::Days(30)];

pub struct Report {
    pub events: u64,
    pub dead_letters: u64,
    /// Seconds spent filling the store (0 when a kept store was full already).
    pub fill_seconds: f64,
    /// Per spread, every URL's timing.
    pub timings: Vec<(Spread, Vec<Timing>)>,
}

/// The rules of the filled store: every push runs the no-op plugin; a push whose `after`
/// commit starts with `0` (75 of the 1,024 bodies the load cycles through) also calls an API
/// that is never up, once, so it becomes a dead letter.
fn rules() -> String {
    "rules:\n\
     \x20 - id: every-push\n    source: github\n    events: [push]\n    actions:\n\
     \x20     - plugin: noop\n        with: { ref: \"{{ payload.ref }}\" }\n\
     \x20 - id: zero-commits\n    source: github\n    events: [push]\n\
     \x20   when:\n      all:\n        - { path: $.after, starts_with: \"0\" }\n\
     \x20   actions:\n      - plugin: call-api\n\
     \x20       with: { url: \"http://127.0.0.1:1/deploy\", body: { after: \"{{ payload.after }}\" } }\n\
     \x20       retry: { attempts: 1 }\n"
        .to_string()
}

async fn start(s: &Settings, dir: &Path, db: &str, noop: &Path) -> anyhow::Result<Server> {
    let extra = format!(
        "rules: rules.yaml\nplugins:\n  - name: noop\n    path: {}\n  - name: call-api\n    allow: {{ http: [\"http://127.0.0.1:1\"] }}\n",
        noop.display()
    );
    let ports = procs::free_ports()?;
    let config = crate::all::hookwise_config(ports, db, &extra);
    procs::start_hookwise(&s.hookwise, dir, &config, ports, &[("GH_SECRET", SECRET)]).await
}

/// Sends signed pushes with wrk until the store holds `events`, then waits for every action.
/// Whether it sent any.
async fn fill(
    server: &Server,
    client: &reqwest::Client,
    events: u64,
    already: u64,
) -> anyhow::Result<bool> {
    let load = Load::new(SECRET)?;
    let url = format!("{}/hooks/github", server.base);
    let mut sent = false;
    loop {
        // The server counts the events it stored since it started.
        let stored = already + server.metrics(client).await?.events;
        if stored >= events {
            break;
        }
        // wrk at the server's whole rate: about 5,000 events a second with one action each on
        // two cores; short runs so as not to overshoot by much.
        let seconds = ((events - stored) / 4000).clamp(1, 30);
        let (script, file, url) = (load.script.clone(), load.good.clone(), url.clone());
        let run = tokio::task::spawn_blocking(move || {
            wrk::run(
                &script,
                &file,
                &url,
                64,
                1,
                Duration::from_secs(seconds),
                wrk::Expect::Success,
            )
        })
        .await??;
        sent = true;
        eprintln!(
            "[dashboard] {} events stored, +{} at {:.0}/s",
            stored,
            run.requests,
            run.per_s()
        );
    }
    server.wait_idle(client, Duration::from_secs(1800)).await?;
    Ok(sent)
}

/// Events and dead letters in the store at `db` (none when there is no such file).
async fn count(db: &Path) -> anyhow::Result<(u64, u64)> {
    use sqlx::Connection;
    if !db.exists() {
        return Ok((0, 0));
    }
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let (events, dead): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM dead_letters)")
            .fetch_one(&mut conn)
            .await?;
    conn.close().await?;
    Ok((events.max(0) as u64, dead.max(0) as u64))
}

/// Signs in through the form, as a browser does; the client keeps the session cookie.
async fn sign_in(client: &reqwest::Client, admin: &str, token: &str) -> anyhow::Result<String> {
    let answer = client
        .post(format!("{admin}/sign-in"))
        .header(header::ORIGIN, admin)
        .form(&[("token", token)])
        .send()
        .await?;
    anyhow::ensure!(
        answer.status().is_redirection(),
        "sign-in answered {}",
        answer.status()
    );
    let cookie = answer
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("sign-in set no cookie")?;
    Ok(cookie.to_string())
}

/// Asks for `path` WARMUP + `requests` times and times the measured ones.
async fn time(
    client: &reqwest::Client,
    base: &str,
    auth: (&header::HeaderName, &str),
    name: &str,
    path: &str,
    requests: usize,
) -> anyhow::Result<Timing> {
    let mut took = Vec::with_capacity(requests);
    let mut measuring = Instant::now();
    for i in 0..WARMUP + requests {
        if took.len() >= MIN_REQUESTS && measuring.elapsed() > TIME_PER_URL {
            break;
        }
        if i == WARMUP {
            measuring = Instant::now();
        }
        let started = Instant::now();
        let answer = client
            .get(format!("{base}{path}"))
            .header(auth.0, auth.1)
            .send()
            .await?;
        let status = answer.status();
        let body = answer.bytes().await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            status.is_success(),
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        if i >= WARMUP {
            took.push(elapsed);
        }
    }
    took.sort();
    anyhow::ensure!(!took.is_empty(), "no request of {path} measured");
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    Ok(Timing {
        name: name.to_string(),
        path: path.to_string(),
        p50: at(0.50),
        p99: at(0.99),
        requests: took.len(),
    })
}

/// The `seq` cursor halfway down the event list, and one event id from there.
async fn middle(
    client: &reqwest::Client,
    admin: &procs::Admin,
    events: u64,
) -> anyhow::Result<(i64, String)> {
    let first = admin.get_json(client, "/api/v1/events?limit=1").await?;
    let newest = first["items"][0]["seq"]
        .as_i64()
        .with_context(|| format!("no seq in the event listing: {first}"))?;
    let cursor = newest - (events / 2) as i64;
    let page = admin
        .get_json(client, &format!("/api/v1/events?limit=1&cursor={cursor}"))
        .await?;
    let id = page["items"][0]["id"]
        .as_str()
        .with_context(|| format!("no event before seq {cursor}: {page}"))?
        .to_string();
    Ok((cursor, id))
}

/// The migration that makes the per-minute activity counts and fills them from the rows.
const ACTIVITY_MIGRATION: &str = include_str!("../../engine/migrations/sqlite/0009_activity.sql");

/// Moves every stored time back so that the events lie evenly over the last `days` days,
/// newest last, keeping each row's order and its distance from its event: an event `k` places
/// from the newest moves back by `k` steps of `days / events`, and its executions, their
/// attempts and dead letters with it. The server must be stopped.
async fn spread(db: &Path, days: i64) -> anyhow::Result<()> {
    use sqlx::Connection;
    let url = format!("sqlite://{}", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    let (newest, count, span): (i64, i64, i64) = sqlx::query_as(
        "SELECT MAX(seq), COUNT(*), MAX(received_at) - MIN(received_at) FROM events",
    )
    .fetch_one(&mut conn)
    .await?;
    // Milliseconds per place, beyond the spacing the events already have.
    let step = ((days * 86_400_000 - span).max(0)) / count.max(1);
    let shift = |seq: &str| format!("(({newest} - {seq}) * {step})");
    let mut tx = conn.begin().await?;
    for statement in [
        // First attempts kept in their executions' rows get rows of their own, which the
        // shift below moves and the activity migration counts.
        "INSERT INTO execution_attempts (id, execution_id, attempt, started_at, finished_at, \
         outcome, error, output, logs, http_calls, db_statements, fuel_used, memory_peak) \
         SELECT randomblob(16), id, 1, first_started_at, first_finished_at, 'succeeded', NULL, \
         first_output, '[]', '[]', '[]', first_fuel_used, first_memory_peak FROM executions \
         WHERE first_finished_at IS NOT NULL"
            .to_string(),
        "UPDATE executions SET first_started_at = NULL, first_finished_at = NULL, \
         first_output = NULL, first_fuel_used = NULL, first_memory_peak = NULL \
         WHERE first_finished_at IS NOT NULL"
            .to_string(),
        format!(
            "UPDATE events SET received_at = received_at - {0}, \
             planned_at = planned_at - {0}",
            shift("seq")
        ),
        format!(
            "UPDATE executions SET created_at = created_at - {0}, \
             updated_at = updated_at - {0}, next_attempt_at = next_attempt_at - {0}",
            shift("event_seq")
        ),
        format!(
            "UPDATE execution_attempts SET \
             started_at = started_at - (SELECT {0} FROM executions x \
               WHERE x.id = execution_attempts.execution_id), \
             finished_at = finished_at - (SELECT {0} FROM executions x \
               WHERE x.id = execution_attempts.execution_id)",
            shift("x.event_seq")
        ),
        format!(
            "UPDATE dead_letters SET created_at = created_at - (SELECT {0} FROM executions x \
               WHERE x.id = dead_letters.execution_id)",
            shift("x.event_seq")
        ),
    ] {
        sqlx::query(&statement)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("spreading the store's times: {statement}"))?;
    }
    // The per-minute counts follow the times: counted again from the rows, as the migration
    // that made them counts a store from before them.
    sqlx::query("DROP TABLE activity").execute(&mut *tx).await?;
    sqlx::raw_sql(ACTIVITY_MIGRATION)
        .execute(&mut *tx)
        .await
        .context("counting the spread store's activity per minute")?;
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Every page and API listing, timed on a running server.
async fn measure(
    server: &Server,
    client: &reqwest::Client,
    s: &Settings,
    events: u64,
) -> anyhow::Result<Vec<Timing>> {
    let admin = server.admin()?;
    let (admin_url, token) = (admin.url().to_string(), admin.token().to_string());
    let cookie = sign_in(client, &admin_url, &token).await?;
    let (cursor, middle_id) = middle(client, &admin, events).await?;
    let pages: Vec<(&str, String)> = vec![
        ("overview", "/overview".into()),
        ("events, newest", "/events".into()),
        ("events, one source", "/events?source=github".into()),
        ("events, succeeded", "/events?outcome=succeeded".into()),
        ("events, dead", "/events?outcome=dead".into()),
        ("events, last hour", "/events?since=1h".into()),
        ("events, one type", "/events?event_type=push".into()),
        // Found in no payload: the search reads its whole bound of events.
        ("events, search", "/events?q=no-such-text".into()),
        ("events, half-way down", format!("/events?cursor={cursor}")),
        ("one event", format!("/events/{middle_id}")),
        ("dead letters", "/dead-letters".into()),
        ("rules", "/rules".into()),
        ("plugins", "/plugins".into()),
        ("sources", "/sources".into()),
    ];
    let api: Vec<(&str, String)> = vec![
        ("events", "/api/v1/events".into()),
        (
            "events, half-way down",
            format!("/api/v1/events?cursor={cursor}"),
        ),
        ("events, search", "/api/v1/events?q=no-such-text".into()),
        ("one event", format!("/api/v1/events/{middle_id}")),
        ("executions", "/api/v1/executions".into()),
        ("dead letters", "/api/v1/dead-letters".into()),
        ("delivery attempts", "/api/v1/delivery-attempts".into()),
        ("rules", "/api/v1/rules".into()),
        ("plugins", "/api/v1/plugins".into()),
    ];
    let bearer = format!("Bearer {token}");
    let with_cookie = (&header::COOKIE, cookie.as_str());
    let with_token = (&header::AUTHORIZATION, bearer.as_str());
    let mut timings = Vec::new();
    for (kind, auth, urls) in [("page", with_cookie, &pages), ("API", with_token, &api)] {
        for (name, path) in urls {
            let name = format!("{kind}: {name}");
            let t = time(client, &admin_url, auth, &name, path, s.requests).await?;
            eprintln!(
                "[dashboard] {}: p50 {:?}, p99 {:?} ({} requests)",
                t.name, t.p50, t.p99, t.requests
            );
            timings.push(t);
        }
    }
    Ok(timings)
}

pub async fn run(s: &Settings) -> anyhow::Result<Report> {
    wrk::check()?;
    let noop = crate::drain::bench_noop()?;
    let scratch = procs::scratch_dir(&s.hookwise, "dashboard")?;
    let dir = match &s.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => scratch.path().to_path_buf(),
    };
    std::fs::write(dir.join("rules.yaml"), rules())?;
    let _ = std::fs::remove_file(dir.join(SPREAD_COPY));
    let (already, _) = count(&dir.join(DATABASE)).await?;
    let mut server = start(s, &dir, DATABASE, &noop).await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let started = Instant::now();
    let filled = fill(&server, &client, s.events, already).await?;
    let fill_seconds = if filled {
        started.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let (events, dead_letters) = count(&dir.join(DATABASE)).await?;
    let mut timings = Vec::new();
    for spread_as in SPREADS {
        if let Spread::Days(days) = spread_as {
            // On a copy, so that a kept store stays as it was filled.
            server.stop()?;
            eprintln!("[dashboard] spreading a copy of the events over {days} days");
            for suffix in ["", "-wal"] {
                let from = dir.join(format!("{DATABASE}{suffix}"));
                let to = dir.join(format!("{SPREAD_COPY}{suffix}"));
                let _ = std::fs::remove_file(&to);
                if from.exists() {
                    std::fs::copy(&from, &to)?;
                }
            }
            let _ = std::fs::remove_file(dir.join(format!("{SPREAD_COPY}-shm")));
            spread(&dir.join(SPREAD_COPY), days).await?;
            server = start(s, &dir, SPREAD_COPY, &noop).await?;
        }
        timings.push((spread_as, measure(&server, &client, s, events).await?));
    }
    server.stop()?;
    Ok(Report {
        events,
        dead_letters,
        fill_seconds,
        timings,
    })
}

pub fn report(settings: &Settings, r: &Report, command: &str) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let filled = if r.fill_seconds > 0.0 {
        format!(
            "stored through the ingress in {:.0} minutes",
            (r.fill_seconds / 60.0).ceil()
        )
    } else {
        "filled through the ingress by an earlier run (`--keep`)".to_string()
    };
    let mut out = format!(
        "Measured {} on {}, with `{command}`: a release `hookwise serve` with a SQLite store \
         holding {} events, {filled}; each ran the no-op plugin, and {} also failed a call \
         once and are dead letters. Each URL asked {} times in a row (after {WARMUP} \
         unmeasured; fewer, as noted, where that took over {} s) by one client on loopback, signed in with the session cookie (pages) or \
         the bearer token (API); times are from sending the request to reading the whole \
         answer, p50 / p99. Three layouts of the same events: as they arrived (all in the \
         last hour, so the overview, plugins and sources pages count every one of them), and \
         a copy with the stored times moved back evenly over the last day and over the last \
         30 days (the default retention).\n\n| URL | |",
        crate::today(),
        crate::machine(),
        r.events,
        r.dead_letters,
        settings.requests,
        TIME_PER_URL.as_secs(),
    );
    for (spread, _) in &r.timings {
        out.push_str(&format!(" {} |", spread.name()));
    }
    out.push_str("\n|---|---|");
    for _ in &r.timings {
        out.push_str("---:|");
    }
    out.push('\n');
    let Some((_, first)) = r.timings.first() else {
        return out;
    };
    for (i, t) in first.iter().enumerate() {
        out.push_str(&format!(
            "| {} | `{}` |",
            t.name,
            t.path.replace('|', "%7C")
        ));
        for (_, timings) in &r.timings {
            match timings.get(i) {
                Some(t) if t.requests < settings.requests => out.push_str(&format!(
                    " {:.1} / {:.1} ms ({} requests) |",
                    ms(t.p50),
                    ms(t.p99),
                    t.requests
                )),
                Some(t) => out.push_str(&format!(" {:.1} / {:.1} ms |", ms(t.p50), ms(t.p99))),
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }
    out.push_str("\n| goal | met | figure |\n|---|---|---:|\n");
    for (spread, timings) in &r.timings {
        let slowest = timings.iter().max_by_key(|t| t.p99);
        let met = timings.iter().all(|t| t.p99 <= GOAL);
        out.push_str(&format!(
            "| every page and API listing at most {} ms p99, events {} | {} | slowest: {} |\n",
            GOAL.as_millis(),
            spread.name(),
            if met { "yes" } else { "**no**" },
            slowest
                .map(|t| format!("{} {:.1} ms", t.name, ms(t.p99)))
                .unwrap_or_default(),
        ));
    }
    out
}
