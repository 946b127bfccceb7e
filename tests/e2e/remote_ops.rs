//! The operational commands through a node's admin API (`--admin URL`): `events`, `logs`,
//! `replay` and `dead-letters list|retry|purge` print exactly what the same command prints on
//! the server (text and `--json`), on SQLite and PostgreSQL; what they change is what the local
//! dry run said they would. And the refusals: a wrong or missing token, a node that cannot be
//! reached, an answer that is not the API, plain HTTP beyond this host, HTTPS without trust.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use hookwise::model::{EventId, EventOutcome, Millis};
use hookwise::store::{EventFilter, GroupCommitSettings, Store};
use hookwise::verify::{Provider, VerifyOptions};
use serde_json::{Value, json};

use crate::dispatch::{SECRET, config_text, config_with_store, send, start, wait_done};
use crate::support::{
    Answer, Backend, Receiver, Server, TempPostgres, hookwise_bin, on_every_backend,
    tls_admin_server,
};

/// What one run of the binary gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    /// Exit 1 with one line on stderr, no panic, nothing on stdout; that line.
    fn one_line_failure(&self) -> &str {
        assert_eq!(self.code, 1, "{self:?}");
        assert!(self.stdout.is_empty(), "{self:?}");
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        let line = self.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{self:?}");
        assert!(line.starts_with("error: "), "{self:?}");
        line
    }
}

/// `hookwise ARGS` in `dir` with exactly the `env` given of hookwise's own variables.
fn hookwise(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(hookwise_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("HOOKWISE_CONFIG")
        .env_remove("HOOKWISE_ADMIN_TOKEN")
        .env_remove("HOOKWISE_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("run hookwise");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The commands run two ways: on the server's config (store opened directly), and from a
/// folder without config or store, through the admin API.
struct Both<'a> {
    server: &'a Server,
    token_file: PathBuf,
    elsewhere: tempfile::TempDir,
}

impl Both<'_> {
    fn new(server: &Server) -> Both<'_> {
        Both {
            server,
            token_file: server.dir.join(hookwise::admin::token::TOKEN_FILE),
            elsewhere: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn local(&self, args: &[&str]) -> Run {
        let args = [args, &["--config", crate::support::CONFIG_FILE]].concat();
        hookwise(&self.server.dir, &args, &[("GH_SECRET", SECRET)])
    }

    fn remote(&self, args: &[&str]) -> Run {
        let token_file = self.token_file.display().to_string();
        let args = [
            args,
            &["--admin", &self.server.admin, "--token-file", &token_file],
        ]
        .concat();
        hookwise(self.elsewhere.path(), &args, &[])
    }

    /// Runs `args` both ways, as text and with `--json`: both succeed and print the same.
    /// Returns the text.
    fn same(&self, args: &[&str]) -> String {
        let mut text = String::new();
        for json in [false, true] {
            let args = if json {
                [args, &["--json"]].concat()
            } else {
                args.to_vec()
            };
            let (local, remote) = (self.local(&args), self.remote(&args));
            assert_eq!(local.code, 0, "{args:?} locally: {local:?}");
            assert_eq!(remote.code, 0, "{args:?} through the API: {remote:?}");
            assert_eq!(
                local.stdout, remote.stdout,
                "{args:?}: local (left) and --admin (right) differ"
            );
            if json {
                local.json();
            } else {
                text = local.stdout;
            }
        }
        text
    }

    /// Runs `args` both ways: both fail with exit 1 and say the same. (Locally the store may
    /// log a line too, such as PostgreSQL's notices while migrating.)
    fn same_failure(&self, args: &[&str]) -> String {
        let (local, remote) = (self.local(args), self.remote(args));
        let line = remote.one_line_failure().to_string();
        assert_eq!(local.code, 1, "{local:?}");
        let said: Vec<&str> = local
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(said, [line.as_str()], "{args:?}: {local:?}");
        line
    }
}

/// Rules: every push goes to `/ok` and to `/fail` on the receiver; what they answer decides.
fn rules(receiver: &Receiver) -> String {
    format!(
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n      \
         - plugin: relay\n        with: {{ url: \"{}\" }}\n      \
         - plugin: relay\n        with: {{ url: \"{}\" }}\n        \
         retry: {{ attempts: 2, backoff: 100ms, max_backoff: 1s }}\n",
        receiver.url("/ok"),
        receiver.url("/fail")
    )
}

/// POSTs a GitHub-signed `issues` event (no rule matches it).
async fn send_issue(client: &reqwest::Client, base: &str, n: usize) {
    let url = format!("{base}/hooks/gh");
    let body = serde_json::to_vec(&json!({"n": n})).unwrap();
    let signed = hookwise::verify::sign_event(
        Provider::Github,
        SECRET,
        &VerifyOptions::default(),
        "POST",
        &url,
        &body,
        SystemTime::now(),
        Some("issues"),
    )
    .unwrap();
    let mut req = client
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
}

/// Waits until no event waits to be matched.
/// Waits until each dead execution has become its one `execution.dead_lettered` event (stored
/// in the background), so that the listings stop changing.
async fn wait_own_events(store: &Store) {
    let start = Instant::now();
    let own = EventFilter {
        source: Some("hookwise".into()),
        limit: 1000,
        ..EventFilter::default()
    };
    loop {
        let dead = store.execution_counts().await.unwrap().dead;
        let events = store.list_events(&own).await.unwrap().len();
        if i64::try_from(events).unwrap() == dead {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{events} own events for {dead} dead executions"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_all_matched(store: &Store) {
    let start = Instant::now();
    let pending = EventFilter {
        outcome: Some(EventOutcome::Pending),
        limit: 1,
        ..EventFilter::default()
    };
    while !store
        .list_events_with_outcomes(&pending)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "events unmatched"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `--json` replay answer as the real run prints it: the dry run's, with `dry_run` false.
fn as_done(mut dry_run: Value) -> Value {
    assert_eq!(dry_run["dry_run"], true, "{dry_run}");
    dry_run["dry_run"] = json!(false);
    dry_run
}

/// The text of a real replay, from its dry run's: `planned` for `would plan`, and the summary.
fn as_done_text(dry_run: &str, n: usize) -> String {
    format!(
        "{}{n} execution{} planned; a running server runs them (their effects happen again)\n",
        dry_run.replace("would plan ", "planned "),
        if n == 1 { "" } else { "s" }
    )
}

on_every_backend!(same_output [sqlite, postgres]: every_command_prints_the_same_through_the_admin_api);

async fn every_command_prints_the_same_through_the_admin_api(backend: Backend) {
    let pg = match backend {
        Backend::Postgres => Some(
            TempPostgres::create()
                .await
                .expect("PostgreSQL on 127.0.0.1:5432"),
        ),
        _ => None,
    };
    let store_url = pg
        .as_ref()
        .map_or_else(|| "sqlite://hookwise.db".to_string(), |pg| pg.url.clone());
    let receiver = Receiver::start().await;
    receiver.route("/fail", Answer::status(400));
    let server = start(
        &config_with_store(&receiver, "", &store_url),
        &rules(&receiver),
    )
    .await;
    let store = Store::open(&store_url, &server.dir, GroupCommitSettings::default())
        .await
        .expect("open the store");
    let client = reqwest::Client::new();
    let mut pushes = Vec::new();
    for n in 0..2 {
        let event = send(&client, &server.base, &json!({"n": n})).await;
        // One action succeeds, the other fails for good: a dead letter each.
        wait_done(&store, event, 2, Duration::from_secs(30)).await;
        pushes.push(event);
    }
    // More events than one page of the API holds.
    for n in 0..101 {
        send_issue(&client, &server.base, n).await;
    }
    wait_all_matched(&store).await;
    wait_own_events(&store).await;
    let (a, b) = (pushes[0].to_string(), pushes[1].to_string());
    let both = Both::new(&server);

    // The acceptance check: the same list, as text and JSON.
    let list = both.same(&["dead-letters", "list"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.lines()
            .all(|l| l.contains("fatal: ") && l.contains("forward")),
        "{list}"
    );
    for args in [
        &["events"][..],
        &["events", "--limit", "150"],
        &["events", "--outcome", "dead"],
        &[
            "events", "--source", "gh", "--status", "planned", "--since", "1h", "--limit", "3",
        ],
        &["events", "--source", "nope"],
        &["logs", &a],
        &["logs", &b],
        &[
            "dead-letters",
            "list",
            "--rule",
            "forward",
            "--since",
            "1h",
            "--limit",
            "1",
        ],
        &["dead-letters", "list", "--source", "nope"],
        &["dead-letters", "retry", "--dry-run"],
        &["dead-letters", "purge", "--rule", "nope"],
        &["replay", &a, "--dry-run"],
        &["replay", &a, "--rule", "forward", "--dry-run"],
    ] {
        both.same(args);
    }
    let events = both.local(&["events", "--limit", "150", "--json"]).json();
    // The pushes, the issues, and one of hookwise's own events per dead letter.
    assert_eq!(events.as_array().map(Vec::len), Some(105));
    let story = both.same(&["logs", &a]);
    assert!(
        story.contains("executions:") && story.contains("fatal"),
        "{story}"
    );
    let dead = store.executions_for_event(pushes[0]).await.unwrap();
    let dead = dead
        .iter()
        .find(|x| x.action_index == 1)
        .unwrap()
        .id
        .to_string();
    both.same(&["replay", "--execution", &dead, "--dry-run"]);
    // Refusals say the same too.
    let unknown = EventId::new().to_string();
    let line = both.same_failure(&["logs", &unknown]);
    assert_eq!(line, format!("error: no event {unknown}"));
    let line = both.same_failure(&["replay", &a, "--rule", "nope"]);
    assert!(line.contains("did not match"), "{line}");

    // Retry through the API: exactly what the local dry run predicted. The receiver still
    // fails, so both die again (new dead letters, generation 1).
    let predicted = both.local(&["dead-letters", "retry", "--dry-run", "--json"]);
    let done = both.remote(&["dead-letters", "retry", "--json"]);
    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(done.json(), as_done(predicted.json()));
    for event in &pushes {
        wait_done(&store, *event, 3, Duration::from_secs(30)).await;
    }
    both.same(&["dead-letters", "list"]);
    receiver.route("/fail", Answer::status(200));
    let predicted = both.local(&["dead-letters", "retry", "--dry-run"]);
    let done = both.remote(&["dead-letters", "retry"]);
    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(done.stdout, as_done_text(&predicted.stdout, 2));
    for event in &pushes {
        wait_done(&store, *event, 4, Duration::from_secs(30)).await;
    }
    assert_eq!(both.same(&["dead-letters", "list"]), "no dead letters\n");

    // Replays through the API, of an event and of one execution.
    let predicted = both.local(&["replay", &a, "--dry-run"]);
    let done = both.remote(&["replay", &a]);
    assert_eq!(done.stdout, as_done_text(&predicted.stdout, 2), "{done:?}");
    wait_done(&store, pushes[0], 6, Duration::from_secs(30)).await;
    let predicted = both.local(&["replay", "--execution", &dead, "--dry-run", "--json"]);
    let done = both.remote(&["replay", "--execution", &dead, "--json"]);
    assert_eq!(done.json(), as_done(predicted.json()), "{done:?}");
    wait_done(&store, pushes[0], 7, Duration::from_secs(30)).await;
    let story = both.same(&["logs", &a]);
    assert!(story.contains("generation 3"), "{story}");

    // Purges: two dead letters, the older purged here and the newer through the API; both
    // say the same.
    receiver.route("/fail", Answer::status(400));
    for json in [false, true] {
        let replay_one = |event: &str| {
            let run = both.remote(&["replay", event, "--rule", "forward"]);
            assert_eq!(run.code, 0, "{run:?}");
        };
        let na = store.executions_for_event(pushes[0]).await.unwrap().len();
        let nb = store.executions_for_event(pushes[1]).await.unwrap().len();
        replay_one(&a);
        wait_done(&store, pushes[0], na + 2, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let between = Millis::now().to_rfc3339();
        tokio::time::sleep(Duration::from_millis(20)).await;
        replay_one(&b);
        wait_done(&store, pushes[1], nb + 2, Duration::from_secs(30)).await;
        let json_flag: &[&str] = if json { &["--json"] } else { &[] };
        let local =
            both.local(&[&["dead-letters", "purge", "--until", &between], json_flag].concat());
        let remote = both.remote(&[&["dead-letters", "purge"], json_flag].concat());
        assert_eq!((local.code, remote.code), (0, 0), "{local:?} {remote:?}");
        assert_eq!(local.stdout, remote.stdout);
        if json {
            assert_eq!(remote.json(), json!({"purged": 1}));
        } else {
            assert_eq!(remote.stdout, "purged 1 dead letter\n");
        }
        assert_eq!(both.same(&["dead-letters", "list"]), "no dead letters\n");
    }
    wait_own_events(&store).await;
    both.same(&["events", "--limit", "150"]);
    both.same(&["logs", &b]);

    store.close().await;
    server.stop().await;
    if let Some(pg) = pg {
        pg.drop_db().await.expect("drop database");
    }
}

/// A port on loopback nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_are_one_clear_line_without_the_token() {
    let receiver = Receiver::start().await;
    let server = start(&config_text(&receiver, ""), &rules(&receiver)).await;
    let both = Both::new(&server);
    let real = std::fs::read_to_string(&both.token_file).unwrap();
    let real = real.trim();
    let dir = both.elsewhere.path();
    let wrong = "wrong-token-0123456789abcdef0123456789abcdef";
    let wrong_file = dir.join("wrong-token");
    std::fs::write(&wrong_file, format!("{wrong}\n")).unwrap();
    let wrong_file = wrong_file.display().to_string();
    let admin = server.admin.as_str();
    let list = ["dead-letters", "list"];

    // A wrong token, from a file or from the environment.
    for run in [
        hookwise(
            dir,
            &[&list[..], &["--admin", admin, "--token-file", &wrong_file]].concat(),
            &[],
        ),
        hookwise(
            dir,
            &[&list[..], &["--admin", admin]].concat(),
            &[("HOOKWISE_ADMIN_TOKEN", wrong)],
        ),
    ] {
        let line = run.one_line_failure();
        assert!(line.contains("refused the token"), "{line}");
        assert!(line.contains(admin), "{line}");
        assert!(!line.contains(wrong) && !line.contains(real), "{line}");
    }
    // The right one from the environment works.
    let run = hookwise(
        dir,
        &[&list[..], &["--admin", admin]].concat(),
        &[("HOOKWISE_ADMIN_TOKEN", real)],
    );
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "no dead letters\n"),
        "{run:?}"
    );
    // No token at all.
    let run = hookwise(dir, &[&list[..], &["--admin", admin]].concat(), &[]);
    assert!(run.one_line_failure().contains("--token-file"), "{run:?}");
    let with_token = |url: &str, extra: &[&str]| {
        let args = [&list[..], &["--admin", url], extra].concat();
        hookwise(dir, &args, &[("HOOKWISE_ADMIN_TOKEN", real)])
    };

    // Nothing listens there.
    let port = closed_port().await;
    let url = format!("http://127.0.0.1:{port}");
    let run = with_token(&url, &[]);
    let line = run.one_line_failure();
    assert!(
        line.contains(&format!("cannot reach the admin listener at {url}")),
        "{line}"
    );
    // Something answers, but not the admin API.
    let run = with_token(&receiver.url(""), &[]);
    assert!(
        run.one_line_failure()
            .contains("not the hookwise admin API"),
        "{run:?}"
    );
    // Plain HTTP to another host is refused before anything is sent.
    let started = Instant::now();
    let run = with_token("http://192.0.2.1:9091", &[]);
    let line = run.one_line_failure();
    assert!(
        line.contains("plain HTTP") && line.contains("--insecure-http"),
        "{line}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Not a URL; a URL with credentials (not echoed).
    let run = with_token("127.0.0.1:9091", &[]);
    assert!(run.one_line_failure().contains("http://"), "{run:?}");
    let run = with_token("http://admin:s3cret-password@127.0.0.1:9091", &[]);
    let line = run.one_line_failure();
    assert!(
        line.contains("credentials") && !line.contains("s3cret"),
        "{line}"
    );
    // --admin replaces --config (one named on the command line is a usage error, one
    // exported in HOOKWISE_CONFIG gives way); the admin options need --admin.
    let run = with_token(admin, &["--config", "hookwise.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--admin replaces --config"), "{run:?}");
    let run = hookwise(
        dir,
        &[&list[..], &["--admin", admin]].concat(),
        &[
            ("HOOKWISE_ADMIN_TOKEN", real),
            ("HOOKWISE_CONFIG", "/nonexistent/hookwise.yaml"),
        ],
    );
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "no dead letters\n"),
        "{run:?}"
    );
    let run = hookwise(
        dir,
        &[&list[..], &["--token-file", &wrong_file]].concat(),
        &[],
    );
    assert_eq!(run.code, 2, "{run:?}");
    let run = hookwise(dir, &["dead-letters", "list", "--help"], &[]);
    assert!(run.stdout.contains("--admin <URL>"), "{run:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_admin_with_its_certificate_given() {
    let token = "remote-ops-token-0123456789abcdef0123456789";
    let tls = tls_admin_server("127.0.0.1", token).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = tls.cert.display().to_string();
    let env = [("HOOKWISE_ADMIN_TOKEN", token)];
    let local = hookwise(
        &tls.server.dir,
        &["events", "--config", crate::support::CONFIG_FILE],
        &[("ADMIN_TOKEN", token)],
    );
    assert_eq!(local.code, 0, "{local:?}");
    let run = hookwise(
        dir.path(),
        &["events", "--admin", &tls.base, "--admin-ca", &cert],
        &env,
    );
    assert_eq!((run.code, &run.stdout), (0, &local.stdout), "{run:?}");
    // Without the certificate: not trusted, and the message says what to do.
    let run = hookwise(dir.path(), &["events", "--admin", &tls.base], &env);
    let line = run.one_line_failure();
    assert!(
        line.contains("TLS") && line.contains("--admin-ca"),
        "{line}"
    );
    // Plain HTTP to the HTTPS listener: its refusal, passed on.
    let plain = format!("http://127.0.0.1:{}", tls.port);
    let run = hookwise(dir.path(), &["events", "--admin", &plain], &env);
    assert!(run.one_line_failure().contains("HTTPS only"), "{run:?}");
    // A CA for a plain URL is a mistake worth saying.
    let run = hookwise(
        dir.path(),
        &["events", "--admin", &plain, "--admin-ca", &cert],
        &env,
    );
    assert!(run.one_line_failure().contains("https://"), "{run:?}");
    tls.server.stop().await;
}
