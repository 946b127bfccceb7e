//! `POST /hooks/{source}` over real HTTPS: every provider signed as the provider would sign,
//! tampered, signed with a wrong secret, delivered twice; and the edge cases of the route.

use std::time::{Duration, SystemTime};

use base64::Engine;
use hookwise::model::Verdict;
use hookwise::verify::{self, HmacScheme, Provider, VerifyOptions};
use serde_json::{Value, json};

use crate::support::{Server, server};

/// RFC 8032 test 1 seed (also in verify's tests).
const DISCORD_PRIVATE: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// The P-256 key of sendgrid-go's webhook test (SEC1 DER, base64).
const SENDGRID_PRIVATE: &str = "MHcCAQEEIEQmZgBEh9DcU9zMl34czK3xov4AYvm9P3r7rNB2dNXtoAoGCCqGSM49AwEHoUQDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";

/// The `signed_content` and public URL of the `hmac-url` sources.
const URL_CONTENT: &str = "{method} {url}.{body}";
const URL_PUBLIC: &str = "https://hooks.example.com/in";

fn hmac_scheme() -> HmacScheme {
    serde_json::from_value(json!({"header": "X-Signature", "algorithm": "sha256", "encoding": "hex", "prefix": "sha256="}))
        .expect("scheme")
}

/// A provider's secret (or private key) in these tests, in the form its dashboard shows;
/// `variant` 0 is the current one, 1 the rotated-out one, 2 one the source does not know.
fn secret(p: Provider, variant: u8) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    match p {
        Provider::StandardWebhooks | Provider::Svix | Provider::Clerk | Provider::Resend => {
            format!("whsec_{}", b64.encode([b'k' + variant; 32]))
        }
        Provider::Stripe => format!("whsec_test_secret_{variant}"),
        Provider::Discord if variant == 0 => DISCORD_PRIVATE.into(),
        Provider::Discord => hex_seed(variant),
        Provider::Sendgrid if variant == 0 => SENDGRID_PRIVATE.into(),
        // Any 32 bytes below the P-256 group order make a private key.
        Provider::Sendgrid => b64.encode([variant; 32]),
        _ => format!("secret-{variant}-for-{}", p.id()),
    }
}

fn hex_seed(variant: u8) -> String {
    std::iter::repeat_n(format!("{:02x}", 0x40 + variant), 32).collect()
}

/// Providers whose signature does not cover the body (documented in docs/providers.md).
fn body_unsigned(p: Provider) -> bool {
    matches!(p, Provider::Mailgun | Provider::Gitlab | Provider::None)
}

async fn start() -> Server {
    start_with("").await
}

/// [`start`], with `extra` top-level config.
async fn start_with(extra: &str) -> Server {
    let mut config =
        format!("listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\n{extra}sources:\n");
    for p in Provider::ALL {
        let id = p.id();
        match p {
            Provider::None => config.push_str("  - { id: none, provider: none }\n"),
            Provider::Discord | Provider::Sendgrid => {
                let public = verify::public_key_for(*p, &secret(*p, 0)).expect("public key");
                config.push_str(&format!("  - {{ id: {id}, provider: {id}, public_keys: [\"{public}\"] }}\n"));
            }
            Provider::Hmac => config.push_str(
                "  - { id: hmac, provider: hmac, secrets: [\"${env:OLD_HMAC}\", \"${env:HMAC}\"], \
                 hmac: { header: X-Signature, algorithm: sha256, encoding: hex, prefix: \"sha256=\" } }\n",
            ),
            _ => {
                let env = env_name(*p);
                config.push_str(&format!("  - {{ id: {id}, provider: {id}, secrets: [\"${{env:OLD_{env}}}\", \"${{env:{env}}}\"] }}\n"))
            }
        }
    }
    // Generic HMAC over the URL: rebuilt from the request, and the configured public one.
    for (id, url) in [("hmac-url", ""), ("hmac-url-public", URL_PUBLIC)] {
        let url = if url.is_empty() {
            String::new()
        } else {
            format!("url: \"{url}\", ")
        };
        config.push_str(&format!(
            "  - {{ id: {id}, provider: hmac, {url}secrets: [\"${{env:HMAC}}\"], \
             hmac: {{ header: X-Signature, prefix: \"sha256=\", signed_content: \"{URL_CONTENT}\" }} }}\n"
        ));
    }
    config.push_str("  - { id: small, provider: none, max_body: 1KiB }\n");
    config
        .push_str("  - { id: limited, provider: none, rate_limit: { per_second: 1, burst: 2 } }\n");
    config.push_str(
        "  - { id: gh-limited, provider: github, secrets: [\"${env:GITHUB}\"], \
         rate_limit: { per_second: 1, burst: 2 } }\n",
    );
    config.push_str("  - { id: guarded, provider: none, allow_ips: [10.0.0.0/8] }\n");
    config.push_str("  - { id: strict, provider: none, schema: strict.schema.json }\n");
    // Payload schemas: the ones hookwise ships, and one per event type.
    config.push_str(
        "  - { id: gh-shipped, provider: github, secrets: [\"${env:GITHUB}\"], schema: provider }\n",
    );
    config.push_str(
        "  - { id: gh-map, provider: github, secrets: [\"${env:GITHUB}\"], \
         schema: { push: push.schema.json, \"pull_request.*\": pr.schema.json } }\n",
    );
    // OLD_<PROVIDER> is a rotated-out secret of the right form: every valid request below
    // matches the second secret, which is how a rotation looks.
    let mut spec = server(config)
        .file(
            "strict.schema.json",
            r#"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}"#,
        )
        .file(
            "push.schema.json",
            r#"{"type": "object", "required": ["ref"], "properties": {"ref": {"type": "string"}}}"#,
        )
        .file(
            "pr.schema.json",
            r#"{"type": "object", "required": ["number"], "properties": {"number": {"type": "integer"}}}"#,
        );
    for p in Provider::ALL {
        let name = env_name(*p);
        spec = spec
            .env(&format!("OLD_{name}"), secret(*p, 1))
            .env(&name, secret(*p, 0));
    }
    spec.start().await
}

fn env_name(p: Provider) -> String {
    p.id().to_uppercase().replace('-', "_")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn post(url: &str, headers: &[(String, String)], body: Vec<u8>) -> (u16, Value, String) {
    let mut req = client().post(url).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

fn opts(p: Provider) -> VerifyOptions {
    VerifyOptions {
        tolerance: None,
        hmac: (p == Provider::Hmac).then(hmac_scheme),
    }
}

/// What `hookwise verify` says of a request, given the keys the source is configured with:
/// true for valid (exit 0), false for invalid (exit 1).
fn cli_says_valid(p: Provider, url: &str, headers: &[(String, String)], body: &[u8]) -> bool {
    use std::io::Write;
    let mut cmd = std::process::Command::new(crate::support::hookwise_bin());
    cmd.args(["verify", "--provider", p.id(), "--url", url]);
    match p {
        Provider::None => {}
        Provider::Discord | Provider::Sendgrid => {
            let public = verify::public_key_for(p, &secret(p, 0)).expect("public key");
            cmd.args(["--public-key", &public]);
        }
        _ => {
            cmd.args(["--secret", &secret(p, 1), "--secret", &secret(p, 0)]);
        }
    }
    if p == Provider::Hmac {
        cmd.args([
            "--hmac-scheme",
            "{header: X-Signature, algorithm: sha256, encoding: hex, prefix: 'sha256='}",
        ]);
    }
    for (k, v) in headers {
        cmd.args(["--header", &format!("{k}: {v}")]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run hookwise verify");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body).expect("write body");
    }
    let out = child.wait_with_output().expect("hookwise verify");
    let text = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => {
            assert_eq!(text.trim(), "valid");
            true
        }
        Some(1) => {
            assert!(text.starts_with("invalid: "), "{text}");
            false
        }
        other => panic!("hookwise verify exited {other:?}: {text}"),
    }
}

/// Posts a request and checks that `hookwise verify` judges it as the listener did.
async fn send(
    p: Provider,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    failures: &mut Vec<String>,
) -> (u16, Value, String) {
    let cli_valid = cli_says_valid(p, url, headers, &body);
    let answer = post(url, headers, body).await;
    if cli_valid != (answer.0 != 401) {
        failures.push(format!(
            "{}: hookwise verify says valid={cli_valid}, the listener {}",
            p.id(),
            answer.0
        ));
    }
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_valid_tampered_wrong_secret_and_duplicate_and_cli_agrees() {
    let server = start().await;
    let mut expected_events = 0;
    let mut failures = Vec::new();
    for p in Provider::ALL {
        let url = format!("{}/hooks/{}", server.base, p.id());
        let body = json!({"id": format!("evt_{}", p.id()), "type": "test.event", "event_id": format!("ev-{}", p.id()), "value": 42}).to_string();
        let (secret, wrong) = (secret(*p, 0), secret(*p, 2));
        let now = SystemTime::now();
        let signed =
            verify::sign_request(*p, &secret, &opts(*p), "POST", &url, body.as_bytes(), now)
                .expect("sign");

        let (status, answer, text) = send(
            *p,
            &signed.url,
            &signed.headers,
            signed.body.clone(),
            &mut failures,
        )
        .await;
        if status != 200 || answer["duplicate"] != json!(false) {
            failures.push(format!("{}: valid request got {status} {text}", p.id()));
            continue;
        }
        expected_events += 1;
        let (status, again, text) = post(&signed.url, &signed.headers, signed.body.clone()).await;
        if status != 200
            || again["duplicate"] != json!(true)
            || again["event_id"] != answer["event_id"]
        {
            failures.push(format!("{}: duplicate got {status} {text}", p.id()));
        }
        if !body_unsigned(*p) {
            let mut tampered = signed.body.clone();
            if let Some(b) = tampered.iter_mut().rev().find(|b| b.is_ascii_digit()) {
                *b = if *b == b'9' { b'8' } else { b'9' };
            }
            let (status, answer, text) =
                send(*p, &signed.url, &signed.headers, tampered, &mut failures).await;
            if status != 401 || answer["code"] != "invalid_signature" {
                failures.push(format!("{}: tampered body got {status} {text}", p.id()));
            }
        }
        if *p != Provider::None {
            let bad =
                verify::sign_request(*p, &wrong, &opts(*p), "POST", &url, body.as_bytes(), now)
                    .expect("sign");
            let (status, _, text) = send(*p, &bad.url, &bad.headers, bad.body, &mut failures).await;
            if status != 401 {
                failures.push(format!("{}: wrong secret got {status} {text}", p.id()));
            }
        }
        // The generic scheme here signs no timestamp, so it has none to expire.
        if let Some(tolerance) = p.default_tolerance().filter(|_| *p != Provider::Hmac) {
            let old = now - tolerance - Duration::from_secs(60);
            let stale =
                verify::sign_request(*p, &secret, &opts(*p), "POST", &url, body.as_bytes(), old)
                    .expect("sign");
            let (status, answer, text) =
                send(*p, &stale.url, &stale.headers, stale.body, &mut failures).await;
            if status != 401 || !answer["detail"].as_str().unwrap_or("").contains("old") {
                failures.push(format!("{}: expired timestamp got {status} {text}", p.id()));
            }
        }
    }
    let (store, _stopped) = server.stop_and_open().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(store.count_events().await.unwrap(), expected_events);
    let attempts = store.list_delivery_attempts(None, 1000).await.unwrap();
    let count = |v: Verdict| attempts.iter().filter(|a| a.attempt.verdict == v).count();
    assert_eq!(count(Verdict::Accepted) as i64, expected_events);
    assert_eq!(count(Verdict::Duplicate) as i64, expected_events);
    assert!(count(Verdict::Rejected) > 40, "every rejection is recorded");
    for a in attempts
        .iter()
        .filter(|a| a.attempt.verdict == Verdict::Rejected)
    {
        assert!(
            a.attempt
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("invalid_signature")),
            "{a:?}"
        );
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_answers_and_are_recorded() {
    let server = start().await;
    let base = server.base.clone();
    let json_headers = vec![("content-type".to_string(), "application/json".to_string())];

    let (status, answer, _) =
        post(&format!("{base}/hooks/nope"), &json_headers, b"{}".to_vec()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("unknown_source"))
    );

    let (status, answer, _) = post(
        &format!("{base}/hooks/small"),
        &json_headers,
        vec![b'x'; 4096],
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (413, Some("body_too_large"))
    );

    let (status, answer, _) = post(
        &format!("{base}/hooks/none"),
        &json_headers,
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("malformed_payload"))
    );

    let (status, answer, _) = post(
        &format!("{base}/hooks/none"),
        &json_headers,
        vec![0xff, 0xfe, b'{'],
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_utf8"))
    );

    // Missing signature headers.
    let (status, answer, _) = post(
        &format!("{base}/hooks/github"),
        &json_headers,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("invalid_signature"))
    );
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or("")
            .contains("missing header"),
        "{answer}"
    );

    // The listener takes plain `/hooks/{source}` paths to the handler itself; the rest go
    // through the router, which decodes the source id and answers the same way.
    let (status, answer, _) = post(
        &format!("{base}/hooks/git%68ub"),
        &json_headers,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("invalid_signature")),
        "{answer}"
    );
    let got = client()
        .get(format!("{base}/hooks/github"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status().as_u16(), 405);

    // Plain HTTP on the HTTPS listener gets no service, but an answer that says why; on
    // /hooks/ it is recorded like any other refused delivery.
    let plain = base.replace("https://", "http://");
    let (status, answer, _) = post(&format!("{plain}/healthz"), &[], Vec::new()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("https_required"))
    );
    let (status, answer, _) = post(
        &format!("{plain}/hooks/github"),
        &json_headers,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("https_required")),
        "{answer}"
    );

    // A signed Slack url_verification is answered at the edge, and nothing is stored.
    let url = format!("{base}/hooks/slack");
    let body = json!({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "token": "x"}).to_string();
    let signed = verify::sign_request(
        Provider::Slack,
        &secret(Provider::Slack, 0),
        &opts(Provider::Slack),
        "POST",
        &url,
        body.as_bytes(),
        SystemTime::now(),
    )
    .unwrap();
    let (status, _, text) = post(&signed.url, &signed.headers, signed.body).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"),
        "{text}"
    );

    let (store, _stopped) = server.stop_and_open().await;
    assert_eq!(store.count_events().await.unwrap(), 0);
    let attempts = store.list_delivery_attempts(None, 100).await.unwrap();
    assert_eq!(attempts.len(), 8, "{attempts:#?}");
    let verdicts: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt.verdict, a.attempt.status))
        .collect();
    assert!(verdicts.contains(&(Verdict::Handshake, 200)));
    assert!(attempts.iter().any(|a| {
        a.attempt.status == 400
            && a.attempt
                .reason
                .as_deref()
                .unwrap_or("")
                .starts_with("https_required")
    }));
    assert!(verdicts.contains(&(Verdict::Rejected, 404)));
    assert!(verdicts.contains(&(Verdict::Rejected, 413)));
    // Bodies of unparseable requests are kept so they can be looked at.
    assert!(
        attempts
            .iter()
            .any(|a| a.attempt.body.as_deref() == Some(&b"{not json"[..]))
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_requests_is_counted_not_recorded_one_by_one() {
    let server = start_with("retention: { rejected_per_second: 2 }\n").await;
    let url = format!("{}/hooks/github", server.base);
    const TASKS: usize = 8;
    const EACH: usize = 15;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            for i in 0..EACH {
                let status = client
                    .post(&url)
                    .header("x-github-event", "push")
                    .header("x-github-delivery", format!("flood-{t}-{i}"))
                    .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
                    .body("{}")
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 401);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let (store, _stopped) = server.stop_and_open().await;
    let attempts = store
        .list_delivery_attempts(Some("github"), 1000)
        .await
        .unwrap();
    let (mut one_by_one, mut counted) = (0, 0);
    for a in &attempts {
        let a = &a.attempt;
        assert_eq!((a.verdict, a.status), (Verdict::Rejected, 401), "{a:?}");
        let reason = a.reason.as_deref().unwrap_or_default();
        match reason.split_once(" more refused request") {
            Some((n, rest)) => {
                counted += n.parse::<usize>().unwrap();
                assert!(rest.contains("signature"), "{reason}");
                assert_eq!(
                    a.headers,
                    json!({}),
                    "a summary has no one request's headers"
                );
            }
            None => {
                one_by_one += 1;
                assert!(a.headers["x-github-delivery"].is_string(), "{a:?}");
            }
        }
    }
    // Every request is accounted for, and most were only counted.
    assert_eq!(one_by_one + counted, TASKS * EACH, "{attempts:#?}");
    assert!(counted > 0, "{attempts:#?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_rate_limit_and_schema_quarantine() {
    let server = start().await;
    let base = server.base.clone();
    let headers = vec![("content-type".to_string(), "application/json".to_string())];

    // 127.0.0.1 is outside 10.0.0.0/8.
    let (status, answer, _) =
        post(&format!("{base}/hooks/guarded"), &headers, b"{}".to_vec()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("address_not_allowed"))
    );

    // A burst of 2, then 429 with Retry-After.
    let mut statuses = Vec::new();
    for i in 0..3 {
        let body = format!("{{\"id\": \"r{i}\"}}").into_bytes();
        let resp = client()
            .post(format!("{base}/hooks/limited"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        statuses.push((
            resp.status().as_u16(),
            resp.headers().get("retry-after").is_some(),
        ));
    }
    assert_eq!(statuses, [(200, false), (200, false), (429, true)]);

    // A payload that breaks the source's schema is stored as quarantined, with the pointer.
    let (status, answer, text) = post(
        &format!("{base}/hooks/strict"),
        &headers,
        br#"{"id": 7}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 422, "{text}");
    assert_eq!(answer["code"], "invalid_payload");
    assert_eq!(answer["errors"][0]["pointer"], "/id");
    let quarantined = answer["event_id"].as_str().unwrap().to_string();
    let (status, _, text) = post(
        &format!("{base}/hooks/strict"),
        &headers,
        br#"{"id": "ok"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{text}");

    let (store, _stopped) = server.stop_and_open().await;
    let id: hookwise::model::EventId = quarantined.parse().unwrap();
    let event = store
        .get_event(id)
        .await
        .unwrap()
        .expect("quarantined event is stored");
    assert_eq!(
        event.event.status,
        hookwise::model::EventStatus::Quarantined
    );
    let attempts = store.delivery_attempts_for_event(id).await.unwrap();
    assert_eq!(attempts[0].attempt.verdict, Verdict::Quarantined);
    assert_eq!(
        attempts[0].attempt.body.as_deref(),
        Some(&br#"{"id": 7}"#[..]),
        "kept for replay"
    );
    store.close().await;
}

/// One request's answer: status, `duplicate`, `event_id`.
async fn answer_of(url: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Value, Value) {
    let (status, answer, _) = post(url, headers, body.to_vec()).await;
    (
        status,
        answer["duplicate"].clone(),
        answer["event_id"].clone(),
    )
}

/// Replaces one header's value (the name compared without case).
fn with_header(headers: &[(String, String)], name: &str, value: String) -> Vec<(String, String)> {
    let mut out: Vec<_> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    out.push((name.to_string(), value));
    out
}

/// Hostile senders: a malformed signature entry beside a valid one is accepted (Stripe,
/// Paddle); a Standard Webhooks request signed with `svix-*` headers and replayed with an
/// added `webhook-id` is a duplicate, not a second event; a generic `hmac` source whose scheme
/// signs `{url}` verifies against the URL the ingress rebuilds (or the configured one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_senders_malformed_entries_signed_ids_and_url_schemes() {
    let server = start().await;
    let base = server.base.clone();
    let now = SystemTime::now();
    let sign = |p: Provider, url: &str, body: &str, opts: &VerifyOptions| {
        verify::sign_request(p, &secret(p, 0), opts, "POST", url, body.as_bytes(), now)
            .expect("sign")
    };
    let header_of = |headers: &[(String, String)], name: &str| -> String {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .expect(name)
    };

    // Stripe: `t=...,v1=<valid>,v1=bad_signature`.
    let url = format!("{base}/hooks/stripe");
    let body = r#"{"id":"evt_hostile","type":"invoice.paid"}"#;
    let signed = sign(Provider::Stripe, &url, body, &VerifyOptions::default());
    let value = format!(
        "{},v1=bad_signature",
        header_of(&signed.headers, "Stripe-Signature")
    );
    let headers = with_header(&signed.headers, "Stripe-Signature", value);
    let (status, duplicate, _) = answer_of(&url, &headers, body.as_bytes()).await;
    assert_eq!((status, duplicate), (200, json!(false)), "stripe");

    // Paddle: `ts=...;h1=dummy;h1=<valid>`.
    let url = format!("{base}/hooks/paddle");
    let body = r#"{"event_id":"evt_hostile","event_type":"transaction.paid"}"#;
    let signed = sign(Provider::Paddle, &url, body, &VerifyOptions::default());
    let value = header_of(&signed.headers, "Paddle-Signature").replacen(";h1=", ";h1=dummy;h1=", 1);
    let headers = with_header(&signed.headers, "Paddle-Signature", value);
    let (status, duplicate, _) = answer_of(&url, &headers, body.as_bytes()).await;
    assert_eq!((status, duplicate), (200, json!(false)), "paddle");

    // Standard Webhooks, signed with the `svix-*` set, then replayed with a new `webhook-id`.
    let url = format!("{base}/hooks/standard-webhooks");
    let body = r#"{"type":"user.created","data":{"id":"u1"}}"#;
    let svix = verify::sign_request(
        Provider::Svix,
        &secret(Provider::StandardWebhooks, 0),
        &VerifyOptions::default(),
        "POST",
        &url,
        body.as_bytes(),
        now,
    )
    .expect("sign");
    let (status, duplicate, first) = answer_of(&url, &svix.headers, body.as_bytes()).await;
    assert_eq!((status, duplicate), (200, json!(false)), "svix-signed");
    let replayed = with_header(&svix.headers, "webhook-id", "msg_replayed".to_string());
    let (status, duplicate, again) = answer_of(&url, &replayed, body.as_bytes()).await;
    assert_eq!(
        (status, duplicate),
        (200, json!(true)),
        "replay with webhook-id"
    );
    assert_eq!(again, first, "the replay names the first event");

    // Generic hmac over `{method} {url}.{body}`.
    let scheme: HmacScheme = serde_json::from_value(
        json!({"header": "X-Signature", "prefix": "sha256=", "signed_content": URL_CONTENT}),
    )
    .expect("scheme");
    let opts = VerifyOptions {
        tolerance: None,
        hmac: Some(scheme),
    };
    let body = r#"{"id":"evt_url"}"#;
    for (source, signed_url) in [
        ("hmac-url", format!("{base}/hooks/hmac-url")),
        ("hmac-url-public", URL_PUBLIC.to_string()),
    ] {
        let url = format!("{base}/hooks/{source}");
        let signed = sign(Provider::Hmac, &signed_url, body, &opts);
        let (status, _, text) = post(&url, &signed.headers, body.as_bytes().to_vec()).await;
        assert_eq!(status, 200, "{source}: {text}");
        // Signed over another URL: refused.
        let elsewhere = sign(Provider::Hmac, "https://elsewhere.example/x", body, &opts);
        let (status, answer, text) = post(&url, &elsewhere.headers, body.as_bytes().to_vec()).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (401, Some("invalid_signature")),
            "{source}: {text}"
        );
    }

    let (store, _stopped) = server.stop_and_open().await;
    assert_eq!(
        store.count_events().await.unwrap(),
        5,
        "stripe, paddle, svix once, two hmac-url"
    );
    store.close().await;
}

/// A sample payload from `tests/fixtures/payloads/`.
fn payload_fixture(path: &str) -> Value {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/payloads")
        .join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{full:?}: {e}"))
}

/// Posts `payload` to a GitHub source as event `event` (the X-GitHub-Event header), signed.
async fn post_github(
    base: &str,
    source: &str,
    event: &str,
    payload: &Value,
) -> (u16, Value, String) {
    let url = format!("{base}/hooks/{source}");
    let p = Provider::Github;
    let signed = verify::sign_event(
        p,
        &secret(p, 0),
        &opts(p),
        "POST",
        &url,
        payload.to_string().as_bytes(),
        SystemTime::now(),
        Some(event),
    )
    .expect("sign");
    post(&signed.url, &signed.headers, signed.body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_and_per_event_payload_schemas() {
    let server = start().await;
    let base = server.base.clone();

    // `schema: provider` on a GitHub source: the shipped push schema.
    let push = payload_fixture("github/push.json");
    let (status, answer, text) = post_github(&base, "gh-shipped", "push", &push).await;
    assert_eq!(
        (status, answer["duplicate"].as_bool()),
        (200, Some(false)),
        "{text}"
    );

    let mut broken = push.clone();
    broken.as_object_mut().unwrap().remove("repository");
    let broken_body = broken.to_string();
    let (status, answer, text) = post_github(&base, "gh-shipped", "push", &broken).await;
    assert_eq!(status, 422, "{text}");
    assert_eq!(answer["code"], "invalid_payload");
    assert_eq!(
        answer["errors"],
        json!([{"pointer": "", "message": "\"repository\" is a required property"}]),
        "{text}"
    );
    let quarantined = answer["event_id"].as_str().unwrap().to_string();

    // A nested type error names its place.
    let mut wrong = push.clone();
    wrong["repository"]["id"] = json!("1296269");
    let (status, answer, text) = post_github(&base, "gh-shipped", "push", &wrong).await;
    assert_eq!(status, 422, "{text}");
    assert_eq!(answer["errors"][0]["pointer"], "/repository/id", "{text}");

    // The schema follows the event name; events without a shipped schema pass unchecked.
    let pr = payload_fixture("github/pull_request.json");
    let (status, _, text) = post_github(&base, "gh-shipped", "pull_request", &pr).await;
    assert_eq!(status, 200, "{text}");
    let (status, answer, text) = post_github(&base, "gh-shipped", "pull_request", &push).await;
    assert_eq!(status, 422, "a push body is not a pull_request: {text}");
    assert!(answer["errors"].as_array().is_some_and(|e| !e.is_empty()));
    let ping = json!({"zen": "Design for failure.", "hook_id": 1});
    let (status, _, text) = post_github(&base, "gh-shipped", "ping", &ping).await;
    assert_eq!(status, 200, "{text}");

    // A map from event type to file: exact types, globs, and unmatched types unchecked.
    let (status, _, text) =
        post_github(&base, "gh-map", "push", &json!({"ref": "refs/heads/main"})).await;
    assert_eq!(status, 200, "{text}");
    let (status, answer, text) = post_github(&base, "gh-map", "push", &json!({"after": "x"})).await;
    assert_eq!(status, 422, "{text}");
    assert_eq!(
        answer["errors"],
        json!([{"pointer": "", "message": "\"ref\" is a required property"}])
    );
    let (status, answer, text) = post_github(
        &base,
        "gh-map",
        "pull_request",
        &json!({"action": "closed", "number": "7"}),
    )
    .await;
    assert_eq!(status, 422, "{text}");
    assert_eq!(answer["errors"][0]["pointer"], "/number");
    let (status, _, text) = post_github(
        &base,
        "gh-map",
        "pull_request",
        &json!({"action": "closed", "number": 7}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, _, text) =
        post_github(&base, "gh-map", "issues", &json!({"action": "opened"})).await;
    assert_eq!(status, 200, "no schema for issues: {text}");

    // The invalid push is stored, visible as quarantined, with its body kept for replay.
    let (store, _stopped) = server.stop_and_open().await;
    let id: hookwise::model::EventId = quarantined.parse().unwrap();
    let listed = store
        .list_events(&hookwise::store::EventFilter {
            source: Some("gh-shipped".into()),
            status: Some(hookwise::model::EventStatus::Quarantined),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        3,
        "broken push, wrong id type, push as pull_request"
    );
    assert!(listed.iter().any(|e| e.event.id == id));
    let event = store.get_event(id).await.unwrap().expect("stored");
    assert_eq!(
        event.event.status,
        hookwise::model::EventStatus::Quarantined
    );
    assert_eq!(event.event.event_type, "push");
    let attempts = store.delivery_attempts_for_event(id).await.unwrap();
    assert_eq!(attempts[0].attempt.verdict, Verdict::Quarantined);
    assert_eq!(attempts[0].attempt.status, 422);
    assert_eq!(
        attempts[0].attempt.body.as_deref(),
        Some(broken_body.as_bytes()),
        "kept for replay"
    );
    store.close().await;
}

/// A source's `rate_limit` is the budget of the provider's verified deliveries: requests
/// with bad signatures, which anyone can send, are refused as such and spend none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_requests_do_not_spend_the_rate_limit() {
    let server = start().await;
    let base = server.base.clone();
    let url = format!("{base}/hooks/gh-limited");
    let forged = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-github-event".to_string(), "push".to_string()),
        ("x-github-delivery".to_string(), "forged".to_string()),
        (
            "x-hub-signature-256".to_string(),
            format!("sha256={}", "0".repeat(64)),
        ),
    ];
    for _ in 0..10 {
        let (status, answer, text) = post(&url, &forged, b"{}".to_vec()).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (401, Some("invalid_signature")),
            "{text}"
        );
    }
    // The whole burst of 2 is still there for the provider; then 429 with Retry-After.
    let mut statuses = Vec::new();
    for i in 0..3 {
        let (status, answer, text) =
            post_github(&base, "gh-limited", "push", &json!({ "n": i })).await;
        statuses.push((status, answer["code"].as_str().map(str::to_string)));
        if status != 200 {
            assert!(text.contains("verified deliveries a second"), "{text}");
        }
    }
    assert_eq!(
        statuses,
        [
            (200, None),
            (200, None),
            (429, Some("rate_limited".to_string()))
        ]
    );
    server.stop().await;
}

/// A refused request's record keeps at most 8 KiB of its headers, says what it cut, and never
/// keeps the body of a request that was not verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_keep_bounded_headers_and_no_body() {
    let server = start().await;
    let url = format!("{}/hooks/github", server.base);
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-github-event".to_string(), "push".to_string()),
        ("x-github-delivery".to_string(), "big-headers".to_string()),
        (
            "x-hub-signature-256".to_string(),
            format!("sha256={}", "0".repeat(64)),
        ),
    ];
    // 50 KB of headers: well within what the listener takes, far more than a record keeps.
    for i in 0..50 {
        headers.push((format!("x-pad-{i:03}"), "p".repeat(1000)));
    }
    let body = format!("{{\"big\": \"{}\"}}", "b".repeat(50_000)).into_bytes();
    let (status, _, text) = post(&url, &headers, body).await;
    assert_eq!(status, 401, "{text}");

    let (store, _stopped) = server.stop_and_open().await;
    let attempts = store.list_delivery_attempts(None, 10).await.unwrap();
    let refused = attempts
        .iter()
        .map(|a| &a.attempt)
        .find(|a| a.status == 401)
        .expect("the refusal is recorded");
    assert_eq!(refused.body, None, "an unverified body is never kept");
    assert!(refused.body_size > 50_000, "{}", refused.body_size);
    let stored = refused.headers.as_object().expect("headers object");
    let note = stored[hookwise::ingress::hooks::CUT_HEADERS_KEY]
        .as_str()
        .expect("the cut is said");
    assert!(note.ends_with("bytes) not kept"), "{note}");
    let kept: usize = stored
        .iter()
        .filter(|(k, _)| *k != hookwise::ingress::hooks::CUT_HEADERS_KEY)
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    assert!(
        kept <= hookwise::ingress::hooks::MAX_REFUSAL_HEADER_BYTES,
        "{kept} bytes of headers kept"
    );
    // What is kept is what came first by name: the headers that explain the refusal.
    assert_eq!(stored["x-github-delivery"], "big-headers");
    assert_eq!(stored["content-type"], "application/json");
    store.close().await;
}
