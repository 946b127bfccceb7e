use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "GITHUB_SECRET" => Some("gh-secret".into()),
        "ADMIN_TOKEN" => Some("admin-token-of-at-least-32-chars".into()),
        "TOKEN_31" => Some("t".repeat(31)),
        "TOKEN_32" => Some("t".repeat(32)),
        "SLACK_URL" => Some("https://hooks.slack.example/x".into()),
        "SVIX_GOOD" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        "SVIX_BAD" => Some("whsec_not base64!".into()),
        "EMPTY" => Some(String::new()),
        "SEVEN" => Some("7-bytes".into()),
        "EIGHT" => Some("8-bytes!".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookwise.yaml");
    load_str(&path, text, &env)
}

fn problems(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(list) => list
            .iter()
            .map(|d| format!("{}:{} {}", d.position.line, d.position.column, d.message))
            .collect(),
    }
}

#[test]
fn embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config::embedded_default(dir.path());
    assert!(c.file.is_none());
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.admin.listen.to_string(), DEFAULT_ADMIN_LISTEN);
    assert_eq!(c.store_url.expose(), DEFAULT_STORE);
    assert_eq!(
        c.tls,
        TlsMode::SelfSigned {
            dir: dir.path().to_path_buf()
        }
    );
    assert_eq!(c.rules, vec![dir.path().join("rules")]);
    let names: Vec<_> = c.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, BUILTIN_PLUGINS);
}

#[test]
fn a_full_config_loads() {
    let c = load(
        r#"
listen: 0.0.0.0:8443
insecure_http: true
admin: { listen: 127.0.0.1:9999, token: "${env:ADMIN_TOKEN}" }
store: sqlite://data/hookwise.db
secrets:
  SLACK_DEPLOYS_URL: "${env:SLACK_URL}"
sources:
  - id: github
    provider: github
    secrets: ["${env:GITHUB_SECRET}"]
    tolerance: 5m
    allow_ips: [192.30.252.0/22, "2606:50c0::/32"]
    rate_limit: { per_second: 100 }
    max_body: 2MiB
  - id: internal
    provider: hmac
    secrets: ["${env:GITHUB_SECRET}"]
    hmac: { header: X-Sig, algorithm: sha512, encoding: base64, prefix: "v1=" }
plugins:
  - name: notify
    limits: { memory: 32MiB, timeout: 5s }
    allow: { http: ["hooks.slack.com", "*.example.com", "127.0.0.1:8080"] }
connections:
  analytics: postgres://localhost/analytics
"#,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.tls, TlsMode::Plain);
    assert_eq!(
        c.admin.token.as_ref().map(|t| t.expose()),
        Some("admin-token-of-at-least-32-chars")
    );
    assert_eq!(
        c.secrets["SLACK_DEPLOYS_URL"].expose(),
        "https://hooks.slack.example/x"
    );
    let gh = c.source("github").unwrap();
    assert_eq!(gh.secrets[0].expose(), "gh-secret");
    assert_eq!(gh.tolerance, Some(Duration::from_secs(300)));
    assert_eq!(gh.max_body, 2 << 20);
    assert!(gh.allow_ips[0].contains("192.30.253.7".parse().unwrap()));
    assert!(!gh.allow_ips[0].contains("192.30.248.1".parse().unwrap()));
    assert_eq!(c.source("internal").unwrap().max_body, DEFAULT_MAX_BODY);
    let notify = c.plugins.iter().find(|p| p.name == "notify").unwrap();
    assert_eq!(notify.memory, 32 << 20);
    assert_eq!(notify.timeout, Duration::from_secs(5));
    assert!(c.store_url.expose().ends_with("data/hookwise.db"));
}

#[test]
fn three_mistakes_are_reported_at_once_with_places() {
    let text = "\
listen: 0.0.0.0:8443
insecure_http: true
sources:
  - id: github
    provider: gihtub
    secrets: [\"${env:GITHUB_SECRET}\"]
  - id: stripe
    provider: stripe
    secrets: [\"${env:STRIPE_SECRET}\"]
plugins:
  - name: notify
    colour: blue
";
    let got = problems(text);
    assert_eq!(
        got.len(),
        2,
        "schema errors come first, all of them: {got:#?}"
    );
    assert!(
        got[0].starts_with("5:15 ") && got[0].contains("gihtub"),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("12:5 ") && got[1].contains("unknown key `colour`"),
        "{got:#?}"
    );

    // With the schema satisfied, every problem of meaning is listed, each at its place.
    let text = "\
listen: nowhere
insecure_http: true
sources:
  - id: github
    provider: github
    secrets: [\"${env:GITHUB_SECRET}\"]
  - id: stripe
    provider: stripe
    secrets: [\"${env:STRIPE_SECRET}\"]
  - id: github
    provider: none
plugins:
  - name: label-pr
    allow: { db: [warehouse] }
";
    let got = problems(text);
    let expected = [
        ("1:9 ", "not an address"),
        ("9:15 ", "STRIPE_SECRET"),
        ("10:9 ", "used twice"),
        ("13:5 ", "needs a `path`"),
        ("14:19 ", "no connection named `warehouse`"),
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for ((at, text), line) in expected.iter().zip(&got) {
        assert!(
            line.starts_with(at) && line.contains(text),
            "expected {at}{text}, got {line}"
        );
    }
}

#[test]
fn secrets_must_be_references() {
    let got = problems(
        "insecure_http: true\nsources:\n  - id: gh\n    provider: github\n    secrets: [hunter2]\n",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("5:15 ") && got[0].contains("${env:NAME}"),
        "{got:?}"
    );
    assert!(
        !got[0].contains("hunter2"),
        "a secret must not be echoed: {got:?}"
    );
}

#[test]
fn yaml_syntax_errors_have_places() {
    let got = problems("listen: [unclosed\nstore: x\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("invalid YAML"), "{got:?}");
}

#[test]
fn provider_rules() {
    let got = problems(
        "insecure_http: true\nsources:\n  - { id: d, provider: discord }\n  - { id: s, provider: stripe }\n  - { id: h, provider: hmac, secrets: [\"${env:GITHUB_SECRET}\"] }\n",
    );
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].contains("public_keys"));
    assert!(got[1].contains("at least one secret"));
    assert!(got[2].contains("`hmac` section"));
}

#[test]
fn key_formats_are_checked_when_the_config_loads() {
    let text = r#"insecure_http: true
sources:
  - { id: ok, provider: svix, secrets: ["${env:SVIX_GOOD}"] }
  - id: svix
    provider: svix
    secrets: ["${env:SVIX_GOOD}", "${env:SVIX_BAD}"]
  - id: discord
    provider: discord
    public_keys: ["not-hex"]
  - id: sendgrid
    provider: sendgrid
    public_keys: ["bm90IGEga2V5"]
  - id: gh
    provider: github
    secrets: ["${env:EMPTY}"]
    public_keys: ["abc"]
  - id: sw
    provider: standard-webhooks
    public_keys: ["whpk_c2hvcnQ="]
"#;
    let got = problems(text);
    assert_eq!(got.len(), 6, "{got:#?}");
    assert!(
        got[0].starts_with("6:35 ") && got[0].contains("whsec_ + base64"),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("9:19 ") && got[1].contains("64 hex"),
        "{got:#?}"
    );
    assert!(
        got[2].starts_with("12:19 ") && got[2].contains("P-256"),
        "{got:#?}"
    );
    assert!(
        got[3].starts_with("15:15 ") && got[3].contains("empty"),
        "{got:#?}"
    );
    assert!(
        got[4].starts_with("16:19 ") && got[4].contains("not public keys"),
        "{got:#?}"
    );
    assert!(
        got[5].starts_with("19:19 ") && got[5].contains("32 bytes"),
        "{got:#?}"
    );
    // An unset variable is reported once, as unset, not again as a bad key.
    let got = problems(
        "insecure_http: true\nsources:\n  - { id: s, provider: svix, secrets: [\"${env:UNSET}\"] }\n",
    );
    assert_eq!(got.len(), 1, "{got:#?}");
}

#[test]
fn secrets_shorter_than_eight_bytes_are_refused_everywhere_at_once() {
    let text = r#"insecure_http: true
admin: { token: "${env:SEVEN}" }
store: "postgres://app:short@db/hookwise"
secrets:
  OK: "${env:EIGHT}"
  TOO_SHORT: "${env:SEVEN}"
sources:
  - { id: gh, provider: github, secrets: ["${env:EIGHT}", "${env:SEVEN}"] }
connections:
  ok: "postgres://app:${env:EIGHT}@db/x"
  no_password: "mysql://root@db/x"
  short: "mysql://root:${env:SEVEN}@db/x"
"#;
    let got = problems(text);
    let want = [
        "2:17 this secret is 7 bytes",
        "3:8 the password in this URL is 5 bytes",
        "6:14 this secret is 7 bytes",
        "8:59 this secret is 7 bytes",
        "12:10 the password in this URL is 7 bytes",
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (got, want) in got.iter().zip(want) {
        assert!(
            got.starts_with(want) && got.contains("at least 8 bytes"),
            "{got} does not start with {want}"
        );
        // The message never quotes the value.
        assert!(!got.contains("7-bytes") && !got.contains("short@"), "{got}");
    }
    // Eight bytes are enough; a URL without a password needs none.
    let ok = load(
        "insecure_http: true\n\
         secrets: { OK: \"${env:EIGHT}\" }\nconnections: { a: \"mysql://root@db/x\" }\n",
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn the_scrubber_knows_every_secret_of_the_config() {
    let c = load(
        r#"insecure_http: true
admin: { token: "${env:ADMIN_TOKEN}" }
store: "postgres://app:store-pass%21@db/hookwise"
secrets: { SLACK: "${env:SLACK_URL}" }
sources:
  - { id: gh, provider: github, secrets: ["${env:GITHUB_SECRET}"] }
connections:
  a: "mysql://root:conn-password@db/x"
"#,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let s = c.scrubber(Some("generated-token-0123"));
    let text = "https://hooks.slack.example/x gh-secret admin-token-of-at-least-32-chars \
                store-pass%21 store-pass! \
                conn-password generated-token-0123";
    assert_eq!(
        s.scrub(text),
        "${secret:SLACK} *** *** *** *** *** ***",
        "every kind of secret is replaced"
    );
    let none = Config::embedded_default(std::path::Path::new("."));
    assert!(none.scrubber(None).is_empty());
}

#[test]
fn trusted_proxies_and_timeouts() {
    let c = load(
        "trusted_proxies: [10.0.0.0/8, \"::1\"]\ntimeouts: { header_read: 2s, body_read: 5s }\n",
    )
    .unwrap();
    // Trusted proxies without `tls` or `insecure_http`: plain HTTP, for those proxies only.
    assert_eq!(c.tls, TlsMode::Plain);
    assert!(c.ingress.proxy_only);
    assert!(c.ingress.is_trusted_proxy("10.2.3.4".parse().unwrap()));
    assert!(!c.ingress.is_trusted_proxy("127.0.0.1".parse().unwrap()));
    assert_eq!(c.ingress.header_read_timeout, Duration::from_secs(2));
    assert_eq!(c.ingress.body_read_timeout, Duration::from_secs(5));
    assert_eq!(c.ingress.tls_handshake_timeout, Duration::from_secs(10));
    // With insecure_http, everyone may use plain HTTP; the proxies are trusted for the headers.
    let c = load("insecure_http: true\ntrusted_proxies: [10.0.0.0/8]\n").unwrap();
    assert!(!c.ingress.proxy_only);
    let got = problems("trusted_proxies: [nope]\ntimeouts: { body_read: 0s }\n");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].starts_with("1:19 "), "{got:#?}");
    assert!(got[1].contains("more than 0s"), "{got:#?}");
}

#[test]
fn schema_file_is_current() {
    let generated = serde_json::to_string_pretty(&config_schema()).unwrap() + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/hookwise.schema.json");
    if std::env::var_os("HOOKWISE_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schemas/hookwise.schema.json differs from the Rust types; \
         regenerate it with HOOKWISE_UPDATE_SCHEMAS=1 cargo test -p hookwise schema_file_is_current"
    );
}

#[test]
fn cidrs() {
    let c: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(c.contains("10.1.2.3".parse().unwrap()));
    assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!c.contains("11.0.0.1".parse().unwrap()));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("8.8.8.8".parse().unwrap()));
    let one: Cidr = "::1".parse().unwrap();
    assert!(one.contains("::1".parse().unwrap()));
    for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad}");
    }
}

#[test]
fn retention_defaults_forever_and_limits() {
    let c = load("{}").unwrap();
    assert_eq!(c.retention, RetentionSettings::default());
    assert_eq!(c.retention.events, Some(DEFAULT_RETENTION));
    let c = load("retention: { events: 7d, delivery_attempts: 0s }").unwrap();
    assert_eq!(c.retention.events, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(c.retention.delivery_attempts, None, "0s keeps them forever");
    assert_eq!(
        problems("retention: { events: 10s, attempts: 1d }").len(),
        1,
        "unknown key first"
    );
    let got = problems("retention:\n  events: 10s\n  delivery_attempts: 59s\n");
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("2:") && got[0].contains("at least 1m"),
        "{got:?}"
    );
    assert!(got[1].starts_with("3:"), "{got:?}");
}

#[test]
fn config_durations_take_compound_forms_and_explain_mistakes() {
    let c =
        load("retention: { events: 1d12h }\ntimeouts: { body_read: 1m30s, header_read: 1500ms }\n")
            .unwrap();
    assert_eq!(c.retention.events, Some(Duration::from_secs(36 * 3600)));
    assert_eq!(c.ingress.body_read_timeout, Duration::from_secs(90));
    assert_eq!(c.ingress.header_read_timeout, Duration::from_millis(1500));
    let got = problems("retention:\n  events: 1h2d\ntimeouts: { body_read: 1.5s }\n");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with("2:") && got[0].contains("`1h2d`") && got[0].contains("largest first"),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("3:") && got[1].contains("`1.5s`: use whole numbers"),
        "{got:#?}"
    );
}

#[test]
fn dispatch_backlog_limit_follows_the_workers_unless_given() {
    let c = load("{}").unwrap();
    assert_eq!(c.dispatch.backlog_limit, 256);
    assert_eq!(c.dispatch.backlog_wait, Duration::from_millis(100));
    let c = load("dispatch: { workers: 4 }").unwrap();
    assert_eq!(c.dispatch.backlog_limit, 64);
    let c = load("dispatch: { workers: 4, backlog_limit: 0, backlog_wait: 2s }").unwrap();
    assert_eq!(c.dispatch.backlog_limit, 0);
    assert_eq!(c.dispatch.backlog_wait, Duration::from_secs(2));
    let got = problems("dispatch:\n  backlog_wait: 3s\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("2:") && got[0].contains("at most 2s"),
        "{got:?}"
    );
}

/// A folder with payload schema files for `schema:` tests.
fn schema_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("push.json", r#"{"type": "object", "required": ["ref"]}"#),
        ("pr.json", r#"{"type": "object", "required": ["number"]}"#),
        ("broken.json", "{\n  \"type\": \"object\",\n  oops\n}\n"),
        ("invalid.json", r#"{"type": 5}"#),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn load_in(dir: &Path, text: &str) -> Result<Config, Vec<Diagnostic>> {
    load_str(&dir.join("hookwise.yaml"), text, &env)
}

/// The payload errors a source's schemas find in `payload` posted as `event_type`.
fn payload_errors(c: &Config, source: &str, event_type: &str, payload: &str) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_str(payload).unwrap();
    let incoming = crate::schema::Incoming {
        event_type,
        payload: &value,
        body: payload.as_bytes(),
    };
    c.source(source)
        .and_then(|s| s.schema.as_ref())
        .map(|s| s.check(&incoming, 20))
        .unwrap_or_default()
        .into_iter()
        .map(|e| format!("{} {}", e.pointer, e.message))
        .collect()
}

#[test]
fn payload_schemas_in_three_forms() {
    let dir = schema_dir();
    let c = load_in(
        dir.path(),
        "\
insecure_http: true
sources:
  - { id: gh, provider: github, secrets: [\"${env:GITHUB_SECRET}\"], schema: provider }
  - { id: one, provider: none, schema: push.json }
  - { id: again, provider: none, schema: ./push.json }
  - id: map
    provider: none
    schema:
      push: push.json
      \"pull_request.*\": pr.json
",
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));

    // provider: GitHub's shipped push schema for push, nothing for ping.
    let got = payload_errors(&c, "gh", "push", "{}");
    assert!(
        got.contains(&" \"repository\" is a required property".to_string()),
        "{got:#?}"
    );
    assert_eq!(payload_errors(&c, "gh", "ping", "{}"), Vec::<String>::new());

    // One file for every event, compiled once however often it is named.
    for event_type in ["push", "anything"] {
        assert_eq!(
            payload_errors(&c, "one", event_type, "{}"),
            [" \"ref\" is a required property"]
        );
    }
    match (
        &c.source("one").unwrap().schema,
        &c.source("again").unwrap().schema,
    ) {
        (Some(SourceSchemas::One(a)), Some(SourceSchemas::One(b))) => {
            assert!(std::sync::Arc::ptr_eq(a, b), "one compiled schema per file")
        }
        other => panic!("{other:?}"),
    }

    // A map: exact types and globs; unmatched types are not validated.
    assert_eq!(
        payload_errors(&c, "map", "push", "{}"),
        [" \"ref\" is a required property"]
    );
    assert_eq!(
        payload_errors(&c, "map", "pull_request.opened", "{}"),
        [" \"number\" is a required property"]
    );
    assert_eq!(
        payload_errors(&c, "map", "issues.opened", "{}"),
        Vec::<String>::new()
    );
}

#[test]
fn payload_schema_problems_are_reported_at_once_with_places() {
    let dir = schema_dir();
    let text = "\
insecure_http: true
sources:
  - { id: a, provider: none, schema: missing.json }
  - { id: b, provider: none, schema: broken.json }
  - { id: c, provider: none, schema: invalid.json }
  - { id: d, provider: twilio, secrets: [\"${env:GITHUB_SECRET}\"], schema: provider }
  - { id: e, provider: none, schema: {} }
  - id: f
    provider: none
    schema:
      push: missing.json
      \"pull_request.*\": invalid.json
  - { id: g, provider: none, schema: 7 }
";
    let got = match load_in(dir.path(), text) {
        Ok(_) => panic!("expected problems"),
        Err(list) => list
            .iter()
            .map(|d| format!("{}:{} {}", d.position.line, d.position.column, d.message))
            .collect::<Vec<_>>(),
    };
    // Type errors come first, alone.
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with("13:"), "{got:#?}");

    let text = text.replace("  - { id: g, provider: none, schema: 7 }\n", "");
    let got = match load_in(dir.path(), &text) {
        Ok(_) => panic!("expected problems"),
        Err(list) => list
            .iter()
            .map(|d| format!("{}:{} {}", d.position.line, d.position.column, d.message))
            .collect::<Vec<_>>(),
    };
    let expected = [
        ("3:38 ", "missing.json` does not exist"),
        (
            "4:38 ",
            "broken.json` is not JSON: key must be a string at line 3",
        ),
        ("5:38 ", "invalid.json`: not a valid JSON Schema"),
        (
            "6:75 ",
            "no payload schemas for provider `twilio` (it does for github, stripe",
        ),
        ("7:38 ", "at least one event type"),
        ("11:13 ", "missing.json` does not exist"),
        ("12:25 ", "invalid.json`: not a valid JSON Schema"),
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for ((at, text), line) in expected.iter().zip(&got) {
        assert!(
            line.starts_with(at) && line.contains(text),
            "expected {at}…{text}, got {line}"
        );
    }
}

#[test]
fn http_grants_are_checked_with_the_plugin_host_grammar() {
    // Every form the plugin host accepts passes the config check.
    let c = load(
        r#"insecure_http: true
plugins:
  - name: notify
    allow:
      http: ["hooks.slack.com", "POST api.github.com", "GET,HEAD *.example.com:8443",
             "http://intranet.example", "https://api.example.com:443", "http://127.0.0.1:8080",
             "[::1]:9000"]
"#,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let notify = c.plugins.iter().find(|p| p.name == "notify").unwrap();
    assert_eq!(notify.allow_http.len(), 7);
    // Each bad entry is reported at its place, all at once, saying what is wrong.
    let got = problems(
        r#"insecure_http: true
plugins:
  - name: notify
    allow:
      http: ["https://hooks.slack.com/services/T0", "ftp://files.example", "user@x.com",
             "x.com:0", "ok.example", "PSOT x.com"]
"#,
    );
    assert_eq!(got.len(), 5, "{got:#?}");
    for (problem, (line, needle)) in got.iter().zip([
        ("5:", "path `/services/T0`"),
        ("5:", "unknown scheme \"ftp\""),
        ("5:", "userinfo `user@`"),
        ("6:", "invalid port \"0\""),
        ("6:", "unknown method \"PSOT\""),
    ]) {
        assert!(problem.starts_with(line), "{problem} is not on line {line}");
        assert!(problem.contains(needle), "{problem} lacks {needle}");
    }
}

/// Loads `text` from a folder that holds `cert.pem` and `key.pem`.
fn load_with_cert_files(text: &str) -> Result<Config, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().unwrap();
    for name in ["cert.pem", "key.pem"] {
        std::fs::write(dir.path().join(name), "PEM").unwrap();
    }
    load_str(&dir.path().join("hookwise.yaml"), text, &env)
}

const REACHABLE_PLAIN: &str = "is reachable from other hosts, and plain HTTP would carry the \
                               admin token and every payload readable: set `admin.tls`";

#[test]
fn a_loopback_admin_listener_may_speak_plain_http() {
    for listen in [
        "127.0.0.1:9999",
        "127.8.9.10:9999",
        "\"[::1]:9999\"",
        "\"[::ffff:127.0.0.1]:9999\"",
    ] {
        let c = load(&format!(
            "insecure_http: true\nadmin: {{ listen: {listen} }}\n"
        ))
        .unwrap_or_else(|e| panic!("{listen}: {e:?}"));
        assert!(c.admin.tls.is_none() && !c.admin.insecure_http, "{listen}");
    }
}

#[test]
fn a_reachable_admin_listener_without_tls_is_refused_at_its_listen_key() {
    for (listen, column) in [
        ("0.0.0.0:9999", 11),
        ("10.0.0.5:9999", 11),
        ("\"[::]:9999\"", 11),
    ] {
        let got = problems(&format!(
            "insecure_http: true\nadmin:\n  token: \"${{env:TOKEN_32}}\"\n  listen: {listen}\n"
        ));
        let shown = listen.trim_matches('"');
        let want = format!("4:{column} the admin listener `{shown}` {REACHABLE_PLAIN}");
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with(&want),
            "{}\ndoes not start with\n{want}",
            got[0]
        );
        assert!(got[0].contains("admin.insecure_http: true"), "{}", got[0]);
    }
}

#[test]
fn a_reachable_admin_listener_speaks_over_tls_or_by_explicit_choice() {
    let insecure =
        load("insecure_http: true\nadmin: { listen: 0.0.0.0:9999, insecure_http: true }\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(insecure.admin.insecure_http && insecure.admin.tls.is_none());

    let tls = load_with_cert_files(
        "insecure_http: true\nadmin:\n  listen: 0.0.0.0:9999\n  tls: { cert: cert.pem, key: key.pem }\n",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let files = tls.admin.tls.expect("admin TLS");
    assert_eq!(files.cert, tls.base_dir.join("cert.pem"));
    assert_eq!(files.key, tls.base_dir.join("key.pem"));
    assert!(!tls.admin.insecure_http);
}

#[test]
fn admin_tls_files_must_exist_and_exclude_insecure_http() {
    let got = problems(
        "insecure_http: true\nadmin:\n  listen: 0.0.0.0:9999\n  tls: { cert: nope.pem, key: nokey.pem }\n",
    );
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with("4:16 certificate file `")
            && got[0].ends_with("nope.pem` does not exist"),
        "{}",
        got[0]
    );
    assert!(got[1].starts_with("4:31 key file `"), "{}", got[1]);

    let both = load_with_cert_files(
        "insecure_http: true\nadmin:\n  tls: { cert: cert.pem, key: key.pem }\n  insecure_http: true\n",
    );
    let got: Vec<String> = both.unwrap_err().iter().map(|d| d.to_string()).collect();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].contains("hookwise.yaml:4:18"), "{}", got[0]);
    assert!(got[0].contains("contradict each other"), "{}", got[0]);
}

#[test]
fn an_admin_token_shorter_than_32_characters_is_refused_at_its_key() {
    let got = problems("insecure_http: true\nadmin:\n  token: \"${env:TOKEN_31}\"\n");
    assert_eq!(
        got,
        [
            "3:10 the admin token is 31 characters; it must be at least 32: make one with \
          `openssl rand -hex 32`"
        ]
    );
    // The whole line as `hookwise check` prints it names the file too.
    let printed = load("insecure_http: true\nadmin:\n  token: \"${env:TOKEN_31}\"\n").unwrap_err()
        [0]
    .to_string();
    assert!(printed.contains("hookwise.yaml:3:10"), "{printed}");
    // The value itself is never shown.
    assert!(!printed.contains("ttttttt"), "{printed}");

    let ok = load("insecure_http: true\nadmin:\n  token: \"${env:TOKEN_32}\"\n")
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(ok.admin.token.map(|t| t.expose().len()), Some(32));
}

#[test]
fn an_admin_token_file_is_measured_by_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short"), format!("{}\n", "f".repeat(31))).unwrap();
    std::fs::write(dir.path().join("long"), format!("{}\n", "f".repeat(32))).unwrap();
    let path = dir.path().join("hookwise.yaml");
    let short = load_str(
        &path,
        "insecure_http: true\nadmin: { token: \"${file:short}\" }\n",
        &env,
    );
    let got: Vec<String> = short.unwrap_err().iter().map(|d| d.to_string()).collect();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].contains("hookwise.yaml:2:17") && got[0].contains("31 characters"),
        "{}",
        got[0]
    );
    let long = load_str(
        &path,
        "insecure_http: true\nadmin: { token: \"${file:long}\" }\n",
        &env,
    );
    assert!(long.is_ok(), "{long:?}");
}

#[test]
fn listener_caps_have_defaults_and_are_checked() {
    let c = load("{}").unwrap();
    assert_eq!(c.listener, super::ListenerSettings::default());
    let c = load(
        "listener: { max_connections: 10, max_in_flight: 3, max_in_flight_per_client: 2, \
         http2_max_streams: 8, http2_keep_alive: 5s, max_header_bytes: 16KiB, idle_timeout: 1m30s, \
         refusals_per_client: { per_second: 0 } }\n",
    )
    .unwrap();
    let l = c.listener;
    assert_eq!(
        (
            l.max_connections,
            l.max_in_flight,
            l.max_in_flight_per_client,
            l.http2_max_streams
        ),
        (10, 3, 2, 8)
    );
    assert_eq!(l.http2_keep_alive, Duration::from_secs(5));
    assert_eq!(l.max_header_bytes, 16 << 10);
    let c = load("listener: { max_body_bytes_in_flight: 64MiB }\n").unwrap();
    assert_eq!(c.listener.max_body_bytes_in_flight, 64 << 20);
    let got = problems("listener: { max_body_bytes_in_flight: 1KiB }\n");
    assert!(
        got.len() == 1 && got[0].contains("at least 1MiB"),
        "{got:#?}"
    );
    assert_eq!(l.idle_timeout, Duration::from_secs(90));
    assert_eq!(l.refusals_per_client, None, "0 turns the limit off");
    let c = load("listener: { refusals_per_client: { per_second: 2 } }\n").unwrap();
    let limit = c.listener.refusals_per_client.unwrap();
    assert_eq!((limit.per_second, limit.burst), (2, 2));

    let got = problems(
        "listener:\n  max_connections: 0\n  max_in_flight: 0\n  idle_timeout: 0s\n  \
         max_header_bytes: 1KiB\n  refusals_per_client: { per_second: 5, burst: 0 }\n  \
         max_in_flight_per_client: 0\n",
    );
    assert_eq!(got.len(), 6, "{got:#?}");
    assert!(
        got[0].starts_with("2:20 ") && got[0].contains("between 1 and"),
        "{got:#?}"
    );
    assert!(got[1].starts_with("3:18 "), "{got:#?}");
    assert!(
        got[2].starts_with("4:17 ") && got[2].contains("more than 0s"),
        "{got:#?}"
    );
    assert!(
        got[3].starts_with("5:21 ") && got[3].contains("8KiB"),
        "{got:#?}"
    );
    assert!(
        got[4].starts_with("6:48 ") && got[4].contains("burst"),
        "{got:#?}"
    );
    assert!(
        got[5].starts_with("7:29 ") && got[5].contains("max_in_flight_per_client"),
        "{got:#?}"
    );
}

/// A self-signed CA certificate, PEM.
fn ca_pem(name: &str) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn plugin_ca_certs_add_to_every_plugin_and_to_their_own() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("corp.pem"), ca_pem("corp")).unwrap();
    // Two CAs in one file (a bundle).
    std::fs::write(
        dir.path().join("lab.pem"),
        ca_pem("lab-1") + &ca_pem("lab-2"),
    )
    .unwrap();
    let c = load_in(
        dir.path(),
        "insecure_http: true\n\
         plugin_http: { ca_certs: [corp.pem] }\n\
         plugins:\n  - name: notify\n    http: { ca_certs: [lab.pem] }\n",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.plugin_ca_certs.len(), 1);
    let certs = |name: &str| {
        let plugin = c.plugins.iter().find(|p| p.name == name).unwrap();
        plugin.http_ca_certs.len()
    };
    assert_eq!(certs("notify"), 3);
    // A built-in plugin the config does not list still trusts the global CAs.
    assert_eq!(certs("call-api"), 1);
    // Without the key nothing is added.
    let c = load("insecure_http: true\n").unwrap();
    assert!(c.plugin_ca_certs.is_empty());
    assert!(c.plugins.iter().all(|p| p.http_ca_certs.is_empty()));
}

#[test]
fn plugin_ca_cert_problems_are_reported_at_once_at_their_places() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("text.pem"), "not a certificate\n").unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.path().join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let text = "insecure_http: true\n\
                plugin_http:\n  ca_certs: [missing.pem, text.pem]\n\
                plugins:\n  - name: notify\n    http:\n      ca_certs:\n        - key.pem\n        - garbage.pem\n";
    let got = match load_in(dir.path(), text) {
        Ok(_) => panic!("expected problems"),
        Err(list) => list
            .iter()
            .map(|d| format!("{}:{} {}", d.position.line, d.position.column, d.message))
            .collect::<Vec<_>>(),
    };
    assert_eq!(got.len(), 4, "{got:#?}");
    for (problem, (line, needle)) in got.iter().zip([
        ("3:14 ", "missing.pem` does not exist"),
        ("3:27 ", "text.pem` is not PEM"),
        ("8:11 ", "key.pem` holds no certificate"),
        ("9:11 ", "certificate 1 in CA certificate file"),
    ]) {
        assert!(problem.starts_with(line), "{problem} is not at {line}");
        assert!(problem.contains(needle), "{problem} lacks {needle}");
    }
}

#[test]
fn the_source_id_hookwise_is_reserved() {
    let text = "sources:\n  - { id: gh, provider: none }\n  - id: hookwise\n    provider: none\n";
    let got = problems(text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("3:9 ") && got[0].contains("`hookwise` is reserved"),
        "{got:#?}"
    );
}

#[test]
fn own_events_settings_have_defaults_and_bounds() {
    let c = load("{}").unwrap();
    assert_eq!(c.own_events, OwnEventSettings::default());
    assert_eq!(c.own_events.failing_after, 3);
    let c =
        load("own_events:\n  failing_after: 0\n  refusals_spike: { threshold: 20, window: 30s }\n")
            .unwrap();
    assert_eq!(
        c.own_events,
        OwnEventSettings {
            failing_after: 0,
            refusals_threshold: 20,
            refusals_window: Duration::from_secs(30),
        }
    );
    let got = problems("own_events:\n  refusals_spike: { window: 1s }\n");
    assert!(
        got.len() == 1 && got[0].starts_with("2:29 ") && got[0].contains("between 10s and 1d"),
        "{got:#?}"
    );
    let got = problems("own_events: { failing: 2 }\n");
    assert!(got[0].contains("failing"), "{got:#?}");
}

#[test]
fn rules_may_name_hookwise_without_a_configured_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookwise.yaml");
    std::fs::write(
        dir.path().join("rules.yaml"),
        "rules:\n  - id: page\n    source: hookwise\n    events: [execution.dead_lettered, source.*]\n    actions:\n      - plugin: notify\n        with: { slack_webhook: \"https://hooks.slack.example/x\", text: \"{{ payload.reason }}\" }\n",
    )
    .unwrap();
    let config = load_str(&path, "rules: rules.yaml\n", &env).unwrap();
    let rules = crate::rules::load_for(&config).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(rules.len(), 1);
    assert!(rules.selects_any("hookwise", "execution.dead_lettered"));
}
