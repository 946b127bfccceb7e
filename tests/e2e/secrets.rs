//! No secret value is stored or shown. `hookwise serve` (the real binary) runs a `notify` action
//! whose webhook URL is a secret (its path the secret part) and whose `Authorization` header
//! carries another, and the `hostile` plugin echoing both into its log, its error and its
//! output; a delivery carries a secret in a header, another in its URL. Afterwards no secret
//! (nor the admin token, nor the store's password) occurs in `hookwise logs`, `events` or
//! `dead-letters`, in any admin API answer, on the server's stderr, in the raw bytes of the
//! SQLite store or in a `pg_dump` of the PostgreSQL store; `${secret:NAME}` stands where the
//! named ones were. Run on both stores.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use hookwise::verify::{Provider, VerifyOptions};
use serde_json::Value;

use crate::support::{Receiver, TempPostgres, hookwise_bin, server, wasm};

/// The secret part of the webhook URL (a Slack-style path).
const HOOK_PATH: &str = "/services/T0S3CR3T/B0S3CR3T/hk7f3a9c1e5d";
/// A tail of [`HOOK_PATH`] that occurs nowhere unless the URL leaked.
const HOOK_TAIL: &str = "hk7f3a9c1e5d";
const API_TOKEN: &str = "apitok-9e4c1b7a2f60";
const GH_SECRET: &str = "ghsec-2d8f6a1c9b34";
const STORE_PASSWORD: &str = "storepw-51c0e9d7";

fn config(store: &str, receiver: &Receiver) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: \"{store}\"\n\
         rules: rules.yaml\n\
         dispatch: {{ workers: 4, lease: 5s }}\n\
         secrets:\n  HOOK_URL: \"${{env:HOOK_URL}}\"\n  API_TOKEN: \"${{env:API_TOKEN}}\"\n\
         sources:\n  - {{ id: gh, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         plugins:\n  - name: notify\n    allow: {{ http: [\"http://{}\"] }}\n\
         \x20 - name: hostile\n    path: {}\n",
        receiver.addr,
        wasm("hostile").display()
    )
}

const RULES: &str = r#"rules:
  - id: notify-secret-url
    source: gh
    events: [push]
    actions:
      - plugin: notify
        with:
          webhook: "${secret:HOOK_URL}"
          headers: { Authorization: "Bearer ${secret:API_TOKEN}" }
          body: { text: "push to {{ payload.ref }}" }
  - id: echo-output
    source: gh
    events: [push]
    actions:
      - plugin: hostile
        with:
          mode: say
          log: "calling ${secret:HOOK_URL} with ${secret:API_TOKEN}"
          output: { hook: "${secret:HOOK_URL}", tokens: ["Bearer ${secret:API_TOKEN}"] }
  - id: echo-error
    source: gh
    events: [push]
    actions:
      - plugin: hostile
        with:
          mode: say
          log: "about to fail with ${secret:API_TOKEN}"
          error: "cannot reach ${secret:HOOK_URL} with ${secret:API_TOKEN}"
        retry: { attempts: 1 }
"#;

/// An admin API client.
struct Admin {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    /// The answer's raw text (what is checked for secrets) and its JSON.
    async fn get(&self, path: &str) -> (String, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (text, json)
    }
}

/// POSTs a GitHub-signed push with a secret in a header; returns its event id.
async fn deliver(client: &reqwest::Client, base: &str) -> String {
    let url = format!("{base}/hooks/gh");
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let signed = hookwise::verify::sign_event(
        Provider::Github,
        GH_SECRET,
        &VerifyOptions::default(),
        "POST",
        &url,
        &body,
        SystemTime::now(),
        Some("push"),
    )
    .unwrap();
    let mut req = client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-forwarded-token", format!("token {API_TOKEN}"))
        .body(body);
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    let answer: Value = req.send().await.unwrap().json().await.unwrap();
    answer["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("not stored: {answer}"))
        .to_string()
}

/// Polls until the event's three executions are finished; returns them.
async fn finished_executions(admin: &Admin, event: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, page) = admin
            .get(&format!("/api/v1/executions?event_id={event}"))
            .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let done = items
            .iter()
            .filter(|x| matches!(x["status"].as_str(), Some("succeeded" | "dead")))
            .count();
        if items.len() == 3 && done == 3 {
            return items;
        }
        assert!(Instant::now() < deadline, "executions not done: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until a refused delivery attempt is recorded; returns the page's text and JSON.
async fn refused_attempts(admin: &Admin) -> (String, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (text, page) = admin
            .get("/api/v1/delivery-attempts?verdict=rejected")
            .await;
        if page["items"].as_array().is_some_and(|a| !a.is_empty()) {
            return (text, page);
        }
        assert!(Instant::now() < deadline, "no refused attempt: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Fails when any of `secrets` occurs in `what`, showing where (not the whole of `what`: a
/// store file is megabytes).
fn assert_clean(place: &str, what: &[u8], secrets: &[String]) {
    for (n, secret) in secrets.iter().enumerate() {
        if let Some(at) = what
            .windows(secret.len())
            .position(|w| w == secret.as_bytes())
        {
            let around = &what[at.saturating_sub(200)..(at + secret.len() + 200).min(what.len())];
            panic!(
                "secret #{n} occurs in {place} at byte {at}:\n{}",
                String::from_utf8_lossy(around)
            );
        }
    }
}

/// `url` with `password` added to its user, when it names a user without one.
fn with_password(url: &str, password: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (user, host) = rest.split_once('@')?;
    (!user.contains(':')).then(|| format!("{scheme}://{user}:{password}@{host}"))
}

/// The whole scenario on the store at `store_url`; returns the secrets checked for (the
/// caller checks the store's own bytes with them).
async fn scenario(dir: &Path, store_url: &str, extra_secrets: &[&str]) -> Vec<String> {
    let receiver = Receiver::start().await;
    let hook_url = receiver.url(HOOK_PATH);
    let server = server(config(store_url, &receiver))
        .in_dir(dir)
        .file("rules.yaml", RULES)
        .env("HOOK_URL", hook_url.clone())
        .env("API_TOKEN", API_TOKEN)
        .env("GH_SECRET", GH_SECRET)
        .args(&["--log-format", "json", "--log", "debug"])
        .spawn()
        .await;
    // The token made on first run is a secret too (without a name).
    let token = std::fs::read_to_string(dir.join(hookwise::admin::token::TOKEN_FILE))
        .expect("generated token")
        .trim()
        .to_string();
    let mut secrets: Vec<String> = [HOOK_TAIL, API_TOKEN, GH_SECRET, &token]
        .iter()
        .chain(extra_secrets)
        .map(|s| s.to_string())
        .collect();
    secrets.push(hook_url);
    let client = reqwest::Client::new();
    let admin = Admin {
        client: client.clone(),
        base: server.admin.clone(),
        token,
    };

    let event = deliver(&client, &server.base).await;
    refuse_with_secrets(&client, &server.base).await;
    let executions = finished_executions(&admin, &event).await;
    // The secrets were really used: the receiver got the secret path and header.
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, HOOK_PATH);
    let bearer = format!("Bearer {API_TOKEN}");
    assert_eq!(seen[0].header("authorization"), Some(bearer.as_str()));

    let (story, refused) = check_admin_answers(&admin, &event, &executions, &secrets).await;
    check_names_in_place(&story, &refused);
    // The command line tells the same story without them.
    for args in [
        vec!["logs", &event, "--json"],
        vec!["logs", &event],
        vec!["events", "--json"],
        vec!["dead-letters", "list", "--json"],
    ] {
        let (code, out) = server.cli(&args);
        assert_eq!(code, 0, "hookwise {args:?}");
        assert_clean(&format!("hookwise {args:?}"), out.as_bytes(), &secrets);
        if args[0] == "logs" {
            assert!(out.contains("${secret:HOOK_URL}"), "{out}");
        }
    }

    let stderr = server.stop().await.stderr;
    assert_clean("the server's stderr", stderr.as_bytes(), &secrets);
    // The failed attempt is logged, with the names in place of the values.
    assert!(stderr.contains("${secret:HOOK_URL}"), "{stderr}");
    secrets
}

/// A request refused for its unknown source, with secrets in its source id, its query string
/// and a header.
async fn refuse_with_secrets(client: &reqwest::Client, base: &str) {
    let refused = client
        .post(format!("{base}/hooks/{API_TOKEN}?next={API_TOKEN}"))
        .header("x-leak", GH_SECRET)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
}

/// Fetches every admin answer about the scenario and checks each raw; returns the event's
/// story and the page of refused delivery attempts.
async fn check_admin_answers(
    admin: &Admin,
    event: &str,
    executions: &[Value],
    secrets: &[String],
) -> (Value, Value) {
    let (story_text, story) = admin.get(&format!("/api/v1/events/{event}")).await;
    let mut answers = vec![("event story".to_string(), story_text)];
    let paths = [
        "/api/v1/events",
        "/api/v1/executions",
        "/api/v1/dead-letters",
        "/api/v1/rules",
        "/api/v1/plugins",
        "/metrics",
    ]
    .into_iter()
    .map(String::from)
    .chain(executions.iter().map(|x| {
        format!(
            "/api/v1/executions/{}",
            x["id"].as_str().unwrap_or_default()
        )
    }));
    for path in paths {
        let (text, _) = admin.get(&path).await;
        answers.push((path, text));
    }
    let (refused_text, refused) = refused_attempts(admin).await;
    answers.push(("delivery attempts".into(), refused_text));
    for (place, text) in &answers {
        assert_clean(place, text.as_bytes(), secrets);
    }
    (story, refused)
}

/// `${secret:NAME}` (or `***`) stands where the secrets were.
fn check_names_in_place(story: &Value, refused_page: &Value) {
    let by_rule = |rule: &str| {
        story["executions"]
            .as_array()
            .and_then(|xs| xs.iter().find(|x| x["rule_id"] == rule))
            .cloned()
            .unwrap_or_else(|| panic!("no execution of {rule}: {story}"))
    };
    let notify = by_rule("notify-secret-url");
    assert_eq!(notify["status"], "succeeded", "{notify}");
    assert_eq!(
        notify["attempts"][0]["http_calls"][0]["url"], "${secret:HOOK_URL}",
        "{notify}"
    );
    let output = by_rule("echo-output");
    assert_eq!(output["status"], "succeeded", "{output}");
    assert_eq!(
        output["attempts"][0]["output"],
        serde_json::json!({"hook": "${secret:HOOK_URL}", "tokens": ["Bearer ${secret:API_TOKEN}"]})
    );
    assert!(
        output["attempts"][0]["logs"]
            .to_string()
            .contains("calling ${secret:HOOK_URL} with ${secret:API_TOKEN}"),
        "{output}"
    );
    let failed = by_rule("echo-error");
    assert_eq!(failed["status"], "dead", "{failed}");
    let error = "cannot reach ${secret:HOOK_URL} with ${secret:API_TOKEN}";
    for text in [&failed["attempts"][0]["error"], &failed["last_error"]] {
        assert!(text.as_str().is_some_and(|e| e.contains(error)), "{failed}");
    }
    let delivery_headers = story["event"]["headers"].to_string();
    assert!(
        delivery_headers.contains("token ${secret:API_TOKEN}"),
        "{delivery_headers}"
    );
    let refused = &refused_page["items"][0];
    assert_eq!(
        refused["path"], "/hooks/${secret:API_TOKEN}",
        "{refused_page}"
    );
    assert_eq!(refused["source"], "${secret:API_TOKEN}", "{refused_page}");
    assert_eq!(refused["headers"]["x-leak"], "***", "{refused_page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_is_stored_or_shown_with_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = scenario(dir.path(), "sqlite://hookwise.db", &[]).await;
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("hookwise.db") {
            files += 1;
            let bytes = std::fs::read(entry.path()).unwrap();
            assert_clean(&name, &bytes, &secrets);
        }
    }
    assert!(files >= 1, "no store file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_is_stored_or_shown_with_postgres() {
    let db = TempPostgres::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Trust authentication ignores the password; hookwise must still never show it.
    let (store_url, extra) = match with_password(&db.url, STORE_PASSWORD) {
        Some(url) => (url, vec![STORE_PASSWORD]),
        None => (db.url.clone(), Vec::new()),
    };
    let secrets = scenario(dir.path(), &store_url, &extra).await;
    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", "--dbname", &db.url])
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert_clean("pg_dump", &dump.stdout, &secrets);
    assert!(
        contains(&dump.stdout, "${secret:HOOK_URL}"),
        "the dump holds the attempts"
    );
    db.drop_db().await.unwrap();
}

/// `hookwise test` shows `${secret:NAME}` where the payload or a header given holds a secret
/// value, and where a rendered input holds one.
#[test]
fn a_dry_run_never_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let hook_url = format!("https://hooks.example.com{HOOK_PATH}");
    std::fs::write(
        dir.path().join("hookwise.yaml"),
        "secrets: { HOOK_URL: \"${env:HOOK_URL}\" }\n\
         sources:\n  - { id: gh, provider: github, secrets: [\"${env:GH_SECRET}\"] }\n\
         rules: rules.yaml\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "rules:\n  - id: note\n    source: gh\n    events: [push]\n    actions:\n\
         \x20     - plugin: notify\n        with: { webhook: \"${secret:HOOK_URL}\", body: { text: \"{{ payload.note }}\" } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("push.json"),
        serde_json::json!({"ref": "refs/heads/main", "note": hook_url}).to_string(),
    )
    .unwrap();
    for json in [true, false] {
        let mut cmd = std::process::Command::new(hookwise_bin());
        cmd.args(["test", "--config", "hookwise.yaml", "--source", "gh"])
            .args(["--event-type", "push", "--payload", "push.json"])
            .args(["--header", &format!("X-Leak: {GH_SECRET}")])
            .current_dir(dir.path())
            .env("HOOK_URL", &hook_url)
            .env("GH_SECRET", GH_SECRET);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("run hookwise test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(
            "hookwise test",
            stdout.as_bytes(),
            &[HOOK_TAIL.to_string(), GH_SECRET.to_string()],
        );
        assert!(stdout.contains("${secret:HOOK_URL}"), "{stdout}");
    }
}
