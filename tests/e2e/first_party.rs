//! The built-in plugins (`notify`, `call-api`, `write-db`), as embedded in the binary, called
//! through the plugin host against real local HTTP receivers and real SQLite, PostgreSQL and
//! MySQL/MariaDB databases (`write-db`, one test per backend): the
//! exact request each service expects, signatures hookwise's own `verify` accepts, retry
//! classification (500, 429 + Retry-After, timeout, 400), input validation, SQL injection
//! attempts and exactly-once writes; then one event end to end through a running server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hookwise::model::ExecutionStatus;
use hookwise::plugin_host::{
    CallContext, CallError, CallEvent, CallReport, ErrorKind, Grants, HostSettings, Limits,
    LoadedPlugin, PluginHost, PluginSpec, SqlExecutor, SqlPool, WasmSource, builtin,
};
use hookwise::verify::{Keys, Provider, Request, VerifyOptions};
use serde_json::{Value, json};

use crate::support::{Answer, Backend, Receiver, TempDb, on_every_backend};

// ---- calling the embedded plugins ------------------------------------------------------

const KEY: &str = "exec-key-1";

/// A host whose compile cache is shared by all tests (the embedded bytes never change
/// within one build, so each component compiles once per run).
fn host() -> PluginHost {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("first-party-cache");
    PluginHost::new(HostSettings {
        cache_dir: Some(cache),
        max_instances: 16,
        ..HostSettings::default()
    })
    .expect("host")
}

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(10),
        http_timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

fn load(host: &PluginHost, name: &str, grants: Grants, limits: Limits) -> LoadedPlugin {
    let bytes = builtin::component(name).unwrap_or_else(|| panic!("{name} is not built in"));
    host.load(PluginSpec {
        name: name.to_string(),
        wasm: WasmSource::Bytes(bytes.to_vec()),
        limits,
        grants,
    })
    .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

/// Plain HTTP to the receiver's exact address: a grant without a scheme would mean HTTPS.
fn http_grant(capture: &Receiver) -> Grants {
    Grants {
        http: vec![format!("http://{}", capture.addr)],
        db: Vec::new(),
    }
}

fn event() -> CallEvent {
    CallEvent {
        id: "evt-1".into(),
        source: "github".into(),
        event_type: "push".into(),
        received_at: "2026-01-02T03:04:05Z".into(),
        headers: vec![("x-github-event".into(), "push".into())],
        payload_json: r#"{"ref":"refs/heads/main","pusher":{"name":"alice"}}"#.into(),
    }
}

async fn call_with(
    host: &PluginHost,
    plugin: &LoadedPlugin,
    input: Value,
    key: &str,
) -> CallReport {
    let ctx = CallContext {
        rule_id: "rule-1".into(),
        action_index: 0,
        attempt: 1,
        idempotency_key: key.into(),
    };
    host.call(plugin, ctx, event(), input.to_string()).await
}

async fn call(host: &PluginHost, plugin: &LoadedPlugin, input: Value) -> CallReport {
    call_with(host, plugin, input, KEY).await
}

fn output(report: &CallReport) -> Value {
    match &report.result {
        Ok(out) => serde_json::from_str(out).expect("output is JSON"),
        Err(e) => panic!("call failed: {e:?}; logs: {:#?}", report.logs),
    }
}

/// The plugin's error: (kind, message, retry-after).
fn failure(report: &CallReport) -> (ErrorKind, String, Option<Duration>) {
    match &report.result {
        Err(CallError::Plugin {
            kind,
            message,
            retry_after,
        }) => (*kind, message.clone(), *retry_after),
        other => panic!(
            "expected a plugin error, got {other:?}; logs: {:#?}",
            report.logs
        ),
    }
}

fn fatal(report: &CallReport, needle: &str) {
    let (kind, message, _) = failure(report);
    assert_eq!(kind, ErrorKind::Fatal, "{message}");
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

fn retryable(report: &CallReport, needle: &str, after: Option<Duration>) {
    let (kind, message, retry_after) = failure(report);
    assert_eq!(kind, ErrorKind::Retryable, "{message}");
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    assert_eq!(retry_after, after, "{message}");
}

/// Every built-in plugin has a component, and it links against this host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_components_are_embedded_and_load() {
    let host = host();
    for name in hookwise::config::BUILTIN_PLUGINS {
        let plugin = load(&host, name, Grants::default(), limits());
        assert_eq!(plugin.abi(), hookwise::plugin_host::PluginAbi::Component);
    }
}

// ---- notify ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_notify_slack_incoming_webhook_request() {
    let slack = Receiver::start().await;
    let host = host();
    let notify = load(&host, "notify", http_grant(&slack), limits());
    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*alice* pushed"}}]);
    let report = call(
        &host,
        &notify,
        json!({
            "slack_webhook": slack.url("/services/T000/B000/XXXX"),
            "text": "alice pushed 2 commits",
            "blocks": blocks,
            "unfurl_links": false,
        }),
    )
    .await;
    assert_eq!(
        output(&report),
        json!({"target": "slack_webhook", "status": 200})
    );
    let req = slack.one();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/services/T000/B000/XXXX");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("idempotency-key"), Some(KEY));
    assert_eq!(
        req.json(),
        json!({"text": "alice pushed 2 commits", "blocks": blocks, "unfurl_links": false})
    );
    // The webhook URL is a secret: logs show the host only.
    let logs = format!("{:?}", report.logs);
    assert!(!logs.contains("XXXX"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_notify_slack_chat_post_message() {
    let slack = Receiver::start().await;
    slack.answer([
        Answer::json(
            200,
            json!({"ok": true, "channel": "C024BE91L", "ts": "1700000000.000100"}),
        ),
        Answer::json(200, json!({"ok": false, "error": "channel_not_found"})),
        Answer::json(429, json!({"ok": false, "error": "ratelimited"})).header("retry-after", "30"),
    ]);
    let host = host();
    let notify = load(&host, "notify", http_grant(&slack), limits());
    let input = json!({
        "slack_token": "xoxb-test-token",
        "slack_api_url": slack.url("/api"),
        "channel": "C024BE91L",
        "text": "fallback text",
        "blocks": [{"type": "divider"}],
        "thread_ts": "1699999999.000200",
    });
    let report = call(&host, &notify, input.clone()).await;
    assert_eq!(
        output(&report),
        json!({"target": "slack_token", "channel": "C024BE91L", "ts": "1700000000.000100"})
    );
    let req = slack.one();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/chat.postMessage");
    assert_eq!(req.header("authorization"), Some("Bearer xoxb-test-token"));
    assert_eq!(
        req.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        req.json(),
        json!({
            "channel": "C024BE91L",
            "text": "fallback text",
            "blocks": [{"type": "divider"}],
            "thread_ts": "1699999999.000200",
        })
    );
    // `"ok": false` with HTTP 200 is still a failure, and a fatal one for a missing channel.
    fatal(
        &call(&host, &notify, input.clone()).await,
        "channel_not_found",
    );
    retryable(
        &call(&host, &notify, input).await,
        "429",
        Some(Duration::from_secs(30)),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_notify_discord_webhook_request() {
    let discord = Receiver::start().await;
    discord.answer([Answer::json(200, json!({"id": "1180000000000000000"}))]);
    let host = host();
    let notify = load(&host, "notify", http_grant(&discord), limits());
    let embeds = json!([{"title": "PR #7", "description": "Ready", "color": 5814783}]);
    let report = call(
        &host,
        &notify,
        json!({
            "discord_webhook": discord.url("/api/webhooks/123/tok-en"),
            "content": "Review wanted @everyone",
            "embeds": embeds,
            "username": "hookwise",
        }),
    )
    .await;
    assert_eq!(
        output(&report),
        json!({"target": "discord_webhook", "status": 200, "message_id": "1180000000000000000"})
    );
    let req = discord.one();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/webhooks/123/tok-en");
    assert_eq!(req.query.as_deref(), Some("wait=true"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    // Text from events pings nobody unless the rule says so.
    assert_eq!(
        req.json(),
        json!({
            "content": "Review wanted @everyone",
            "embeds": embeds,
            "username": "hookwise",
            "allowed_mentions": {"parse": []},
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_notify_teams_workflow_adaptive_card() {
    let teams = Receiver::start().await;
    teams.answer([Answer::new(202, ""), Answer::new(202, "")]);
    let host = host();
    let notify = load(&host, "notify", http_grant(&teams), limits());
    let url = teams.url("/workflows/abc/triggers/manual/paths/invoke");
    let report = call(
        &host,
        &notify,
        json!({
            "teams_webhook": url,
            "title": "Deploy finished",
            "text": "web 1.2.3 is live",
            "facts": {"service": "web", "version": "1.2.3"},
            "link": {"url": "https://example.com/deploys/9", "title": "Details"},
        }),
    )
    .await;
    assert_eq!(
        output(&report),
        json!({"target": "teams_webhook", "status": 202})
    );
    let req = teams.one();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/workflows/abc/triggers/manual/paths/invoke");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json(),
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": "Deploy finished", "size": "Medium", "weight": "Bolder", "wrap": true},
                        {"type": "TextBlock", "text": "web 1.2.3 is live", "wrap": true},
                        {"type": "FactSet", "facts": [
                            {"title": "service", "value": "web"},
                            {"title": "version", "value": "1.2.3"},
                        ]},
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": "Details", "url": "https://example.com/deploys/9"}],
                },
            }],
        })
    );
    // A full card is passed through untouched.
    let card = json!({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "hi"}]});
    output(&call(&host, &notify, json!({"teams_webhook": url, "card": card})).await);
    assert_eq!(teams.seen()[1].json()["attachments"][0]["content"], card);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_notify_signed_webhook_passes_hookwise_verify() {
    let receiver = Receiver::start().await;
    let host = host();
    let notify = load(&host, "notify", http_grant(&receiver), limits());
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let report = call(
        &host,
        &notify,
        json!({
            "webhook": receiver.url("/inbox"),
            "signing_secret": secret,
            "headers": {"X-Team": "platform"},
        }),
    )
    .await;
    assert_eq!(
        output(&report),
        json!({"target": "webhook", "status": 200, "signed": true})
    );
    let req = receiver.one();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/inbox");
    assert_eq!(req.header("x-team"), Some("platform"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("webhook-id"),
        Some(format!("msg_{KEY}").as_str())
    );
    // The default body follows the Standard Webhooks payload structure.
    assert_eq!(
        req.json(),
        json!({
            "type": "push",
            "timestamp": "2026-01-02T03:04:05Z",
            "data": {"ref": "refs/heads/main", "pusher": {"name": "alice"}},
        })
    );
    let verified = hookwise::verify::verify(
        Provider::StandardWebhooks,
        &Keys::secrets([secret]),
        &VerifyOptions::default(),
        &Request {
            method: "POST",
            url: &receiver.url("/inbox"),
            headers: &req.headers,
            body: &req.body,
        },
        SystemTime::now(),
    );
    assert!(verified.is_ok(), "{verified:?}");
    // A different secret does not verify.
    let other = hookwise::verify::verify(
        Provider::StandardWebhooks,
        &Keys::secrets(["whsec_QWxhZGRpbjpvcGVuIHNlc2FtZSBzZXNhbWU="]),
        &VerifyOptions::default(),
        &Request {
            method: "POST",
            url: &receiver.url("/inbox"),
            headers: &req.headers,
            body: &req.body,
        },
        SystemTime::now(),
    );
    assert!(other.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_notify_email_apis_get_their_documented_requests() {
    let api = Receiver::start().await;
    api.answer([
        Answer::new(202, "").header("x-message-id", "sg-1"),
        Answer::json(
            200,
            json!({"ErrorCode": 0, "Message": "OK", "MessageID": "pm-1"}),
        ),
        Answer::json(200, json!({"id": "rs-1"})),
        Answer::json(
            200,
            json!({"id": "<mg-1@example.org>", "message": "Queued. Thank you."}),
        ),
    ]);
    let host = host();
    let notify = load(&host, "notify", http_grant(&api), limits());
    let mail = |provider: &str| {
        json!({
            "email": provider,
            "api_key": "key-123",
            "api_url": api.url(""),
            "from": "Hookwise Alerts <alerts@example.org>",
            "to": ["oncall@example.org", "Bob <bob@example.org>"],
            "cc": "lead@example.org",
            "reply_to": "support@example.org",
            "subject": "Deploy failed",
            "text": "web 1.2.3 failed",
            "html": "<p>web 1.2.3 failed</p>",
        })
    };

    let mut mailgun = mail("mailgun");
    mailgun["domain"] = json!("mg.example.org");
    let outs: Vec<Value> = {
        let mut outs = Vec::new();
        for input in [mail("sendgrid"), mail("postmark"), mail("resend"), mailgun] {
            outs.push(output(&call(&host, &notify, input).await));
        }
        outs
    };
    let ids: Vec<&Value> = outs.iter().map(|o| &o["message_id"]).collect();
    assert_eq!(
        ids,
        [
            &json!("sg-1"),
            &json!("pm-1"),
            &json!("rs-1"),
            &json!("<mg-1@example.org>")
        ]
    );
    let seen = api.seen();
    assert_eq!(seen.len(), 4);

    let sendgrid = &seen[0];
    assert_eq!(
        (sendgrid.method.as_str(), sendgrid.path.as_str()),
        ("POST", "/v3/mail/send")
    );
    assert_eq!(sendgrid.header("authorization"), Some("Bearer key-123"));
    assert_eq!(sendgrid.header("content-type"), Some("application/json"));
    assert_eq!(
        sendgrid.json(),
        json!({
            "personalizations": [{
                "to": [{"email": "oncall@example.org"}, {"email": "bob@example.org", "name": "Bob"}],
                "cc": [{"email": "lead@example.org"}],
            }],
            "from": {"email": "alerts@example.org", "name": "Hookwise Alerts"},
            "reply_to": {"email": "support@example.org"},
            "subject": "Deploy failed",
            "content": [
                {"type": "text/plain", "value": "web 1.2.3 failed"},
                {"type": "text/html", "value": "<p>web 1.2.3 failed</p>"},
            ],
        })
    );

    let postmark = &seen[1];
    assert_eq!(
        (postmark.method.as_str(), postmark.path.as_str()),
        ("POST", "/email")
    );
    assert_eq!(postmark.header("x-postmark-server-token"), Some("key-123"));
    assert_eq!(postmark.header("accept"), Some("application/json"));
    assert_eq!(postmark.header("content-type"), Some("application/json"));
    assert_eq!(
        postmark.json(),
        json!({
            "From": "Hookwise Alerts <alerts@example.org>",
            "To": "oncall@example.org, Bob <bob@example.org>",
            "Cc": "lead@example.org",
            "Subject": "Deploy failed",
            "TextBody": "web 1.2.3 failed",
            "HtmlBody": "<p>web 1.2.3 failed</p>",
            "ReplyTo": "support@example.org",
            "MessageStream": "outbound",
        })
    );

    let resend = &seen[2];
    assert_eq!(
        (resend.method.as_str(), resend.path.as_str()),
        ("POST", "/emails")
    );
    assert_eq!(resend.header("authorization"), Some("Bearer key-123"));
    assert_eq!(
        resend.json(),
        json!({
            "from": "Hookwise Alerts <alerts@example.org>",
            "to": ["oncall@example.org", "Bob <bob@example.org>"],
            "cc": ["lead@example.org"],
            "reply_to": "support@example.org",
            "subject": "Deploy failed",
            "text": "web 1.2.3 failed",
            "html": "<p>web 1.2.3 failed</p>",
        })
    );

    let mailgun = &seen[3];
    assert_eq!(
        (mailgun.method.as_str(), mailgun.path.as_str()),
        ("POST", "/v3/mg.example.org/messages")
    );
    assert_eq!(
        mailgun.header("authorization"),
        Some("Basic YXBpOmtleS0xMjM=") // base64("api:key-123")
    );
    assert_eq!(
        mailgun.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(String, String)> = form_urlencoded::parse(&mailgun.body)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        vec![
            ("from", "Hookwise Alerts <alerts@example.org>"),
            ("to", "oncall@example.org"),
            ("to", "Bob <bob@example.org>"),
            ("cc", "lead@example.org"),
            ("subject", "Deploy failed"),
            ("text", "web 1.2.3 failed"),
            ("html", "<p>web 1.2.3 failed</p>"),
            ("h:Reply-To", "support@example.org"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_notify_classifies_failures() {
    let receiver = Receiver::start().await;
    receiver.answer([
        Answer::new(500, "boom"),
        Answer::new(429, "slow down").header("retry-after", "7"),
        Answer::new(400, "invalid_payload"),
        Answer::new(200, "ok").after(Duration::from_secs(3)),
    ]);
    let host = host();
    let notify = load(
        &host,
        "notify",
        http_grant(&receiver),
        Limits {
            http_timeout: Duration::from_millis(500),
            ..limits()
        },
    );
    let input = json!({"slack_webhook": receiver.url("/hook"), "text": "hi"});
    retryable(&call(&host, &notify, input.clone()).await, "500", None);
    retryable(
        &call(&host, &notify, input.clone()).await,
        "429",
        Some(Duration::from_secs(7)),
    );
    fatal(
        &call(&host, &notify, input.clone()).await,
        "invalid_payload",
    );
    retryable(&call(&host, &notify, input).await, "timed out", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_notify_refuses_bad_input_without_sending() {
    let receiver = Receiver::start().await;
    let host = host();
    let notify = load(&host, "notify", http_grant(&receiver), limits());
    let url = receiver.url("/x");
    let cases = [
        (json!({"text": "no destination"}), "no destination"),
        (
            json!({"slack_webhook": url, "discord_webhook": url, "text": "x"}),
            "one destination",
        ),
        (
            json!({"slack_webhook": url, "txt": "typo"}),
            "unknown field",
        ),
        (json!({"slack_webhook": url}), "needs `text`"),
        (json!({"slack_webhook": "ftp://x/y", "text": "x"}), "http"),
        (
            json!({"discord_webhook": url, "content": "x".repeat(2001)}),
            "2000",
        ),
        (
            json!({"teams_webhook": url, "card": {"type": "MessageCard"}}),
            "Adaptive Card",
        ),
        (
            json!({"webhook": url, "signing_secret": "not-a-whsec"}),
            "whsec_",
        ),
        (
            json!({"webhook": url, "headers": {"X-Evil": "a\r\nInjected: yes"}}),
            "control character",
        ),
        (
            json!({"email": "sendgrid", "api_key": "k", "from": "a@example.org", "to": "not-an-address", "subject": "s", "text": "t"}),
            "not an e-mail address",
        ),
        (
            json!({"email": "mailgun", "api_key": "k", "from": "a@example.org", "to": "b@example.org", "subject": "s", "text": "t"}),
            "needs `domain`",
        ),
        (
            json!({"email": "pigeon", "api_key": "k", "from": "a@example.org", "to": "b@example.org", "subject": "s", "text": "t"}),
            "unknown variant",
        ),
        (
            json!({"email": "resend", "api_key": "k", "from": "a@example.org", "to": "b@example.org", "subject": "s\r\nBcc: x@example.org", "text": "t"}),
            "line breaks",
        ),
    ];
    for (input, needle) in cases {
        fatal(&call(&host, &notify, input).await, needle);
    }
    assert!(receiver.seen().is_empty(), "{:#?}", receiver.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_notify_without_an_http_grant_is_refused_fatally() {
    let receiver = Receiver::start().await;
    let host = host();
    let notify = load(&host, "notify", Grants::default(), limits());
    let report = call(
        &host,
        &notify,
        json!({"slack_webhook": receiver.url("/hook"), "text": "hi"}),
    )
    .await;
    fatal(&report, "allow.http");
    assert!(report.http_calls[0].refused);
    assert!(receiver.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_grants_name_the_scheme_and_port() {
    let receiver = Receiver::start().await;
    let host = host();
    let addr = receiver.addr;
    // (grant, why it does not cover plain HTTP to the receiver's port)
    let cases = [
        (addr.to_string(), "without a scheme a grant means HTTPS"),
        (format!("https://{addr}"), "HTTPS only"),
        (
            format!("http://{}:{}", addr.ip(), addr.port().wrapping_add(1)),
            "another port",
        ),
        (
            format!("http://{}", addr.ip()),
            "port 80 when none is written",
        ),
    ];
    for (grant, why) in cases {
        let grants = Grants {
            http: vec![grant.clone()],
            db: Vec::new(),
        };
        let notify = load(&host, "notify", grants, limits());
        let report = call(
            &host,
            &notify,
            json!({"slack_webhook": receiver.url("/hook"), "text": "hi"}),
        )
        .await;
        let (kind, message, _) = failure(&report);
        assert_eq!(kind, ErrorKind::Fatal, "{grant} ({why}): {message}");
        assert!(
            message.contains("http://host"),
            "{grant} ({why}): {message}"
        );
        assert!(report.http_calls[0].refused, "{grant} ({why})");
    }
    assert!(receiver.seen().is_empty(), "{:#?}", receiver.seen());
}

/// Checks that every request `capture` saw was framed by a `Content-Length` equal to its body.
fn assert_length_framed(capture: &Receiver) {
    for req in capture.seen() {
        assert_eq!(
            req.header("content-length"),
            Some(req.body.len().to_string().as_str()),
            "{} {}",
            req.method,
            req.path
        );
        assert_eq!(
            req.header("transfer-encoding"),
            None,
            "{} {}",
            req.method,
            req.path
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_bodies_carry_content_length_to_a_receiver_that_refuses_chunked() {
    let receiver = Receiver::length_required().await;
    receiver.answer([
        Answer::new(200, "ok"),
        Answer::json(200, json!({"id": "1180000000000000000"})),
        Answer::new(202, ""),
        Answer::new(200, "ok"),
        Answer::json(200, json!({"id": "rs-1"})),
    ]);
    let host = host();
    let notify = load(&host, "notify", http_grant(&receiver), limits());
    let inputs = [
        json!({"slack_webhook": receiver.url("/slack"), "text": "Zoë pushed ✓"}),
        json!({"discord_webhook": receiver.url("/discord"), "content": "hi"}),
        json!({"teams_webhook": receiver.url("/teams"), "title": "T", "text": "x"}),
        json!({"webhook": receiver.url("/inbox"), "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        json!({"email": "resend", "api_key": "k", "api_url": receiver.url(""), "from": "a@example.org", "to": "b@example.org", "subject": "s", "text": "t"}),
    ];
    for input in inputs {
        output(&call(&host, &notify, input).await);
    }
    assert_eq!(receiver.seen().len(), 5);
    assert_length_framed(&receiver);

    let api = Receiver::length_required().await;
    let call_api = load(&host, "call-api", http_grant(&api), limits());
    // Larger than one 4 KiB body write, so the length spans several.
    let big = "x".repeat(100_000);
    let inputs = [
        json!({"method": "PUT", "url": api.url("/json"), "body": {"version": "1.2.3"}}),
        json!({"url": api.url("/form"), "body": {"a": "b c"}, "body_format": "form"}),
        json!({"method": "PATCH", "url": api.url("/raw"), "body": big, "body_format": "raw"}),
        json!({"method": "DELETE", "url": api.url("/delete"), "body": {"id": 7}}),
        json!({"method": "POST", "url": api.url("/empty")}),
    ];
    for input in inputs {
        output(&call(&host, &call_api, input).await);
    }
    let seen = api.seen();
    assert_eq!(seen.len(), 5, "{seen:#?}");
    assert_eq!(seen[2].body.len(), 100_000);
    assert_eq!(seen[4].header("content-length"), Some("0"));
    assert_length_framed(&api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_call_api_get_sends_no_body_framing() {
    let api = Receiver::start().await;
    let host = host();
    let call_api = load(&host, "call-api", http_grant(&api), limits());
    output(
        &call(
            &host,
            &call_api,
            json!({"method": "GET", "url": api.url("/get")}),
        )
        .await,
    );
    let req = api.one();
    assert_eq!(req.method, "GET");
    assert!(req.body.is_empty());
    assert_eq!(req.header("content-length"), None);
    assert_eq!(req.header("transfer-encoding"), None);
}

// ---- call-api --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_call_api_sends_the_exact_request_and_selects_fields() {
    let api = Receiver::start().await;
    api.answer([Answer::json(
        201,
        json!({"data": {"id": "dep-42", "state": "queued"}, "links": [{"href": "/d/42"}]}),
    )]);
    let host = host();
    let call_api = load(&host, "call-api", http_grant(&api), limits());
    let report = call(
        &host,
        &call_api,
        json!({
            "method": "put",
            "url": api.url("/v1/deployments?dry=false"),
            "query": {"service": "web app", "tag": ["a", "b"]},
            "headers": {"X-Request-Source": "hookwise"},
            "body": {"version": "1.2.3", "services": ["web"]},
            "auth": {"bearer": "tok-123"},
            "expect": [200, 201],
            "timeout": "5s",
            "select": {"id": "/data/id", "link": "/links/0/href", "missing": "/nope"},
        }),
    )
    .await;
    assert_eq!(
        output(&report),
        json!({"status": 201, "selected": {"id": "dep-42", "link": "/d/42", "missing": null}})
    );
    let req = api.one();
    assert_eq!(req.method, "PUT");
    assert_eq!(req.path, "/v1/deployments");
    assert_eq!(
        req.query.as_deref(),
        Some("dry=false&service=web%20app&tag=a&tag=b")
    );
    assert_eq!(req.header("authorization"), Some("Bearer tok-123"));
    assert_eq!(req.header("x-request-source"), Some("hookwise"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("idempotency-key"), Some(KEY));
    assert_eq!(req.json(), json!({"version": "1.2.3", "services": ["web"]}));
    // The response is in the execution log.
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.message.contains("-> 201") && l.message.contains("dep-42")),
        "{:#?}",
        report.logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_call_api_form_raw_and_basic_auth() {
    let api = Receiver::start().await;
    let host = host();
    let call_api = load(&host, "call-api", http_grant(&api), limits());
    output(
        &call(
            &host,
            &call_api,
            json!({
                "url": api.url("/form"),
                "body": {"name": "Zoë & co", "n": 3, "tags": ["x", "y"]},
                "body_format": "form",
                "auth": {"basic": {"username": "user", "password": "p:ss"}},
            }),
        )
        .await,
    );
    output(
        &call(
            &host,
            &call_api,
            json!({
                "method": "PATCH",
                "url": api.url("/raw"),
                "headers": {"Content-Type": "text/csv"},
                "body": "a,b\n1,2\n",
                "body_format": "raw",
            }),
        )
        .await,
    );
    output(&call(&host, &call_api, json!({"url": api.url("/get")})).await);
    let seen = api.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // Fields go out in name order (the rendered input is a JSON object).
    assert_eq!(seen[0].text(), "n=3&name=Zo%C3%AB+%26+co&tags=x&tags=y");
    assert_eq!(seen[0].header("authorization"), Some("Basic dXNlcjpwOnNz"));
    assert_eq!(seen[1].method, "PATCH");
    assert_eq!(seen[1].header("content-type"), Some("text/csv"));
    assert_eq!(seen[1].text(), "a,b\n1,2\n");
    assert_eq!(seen[2].method, "GET");
    assert!(seen[2].body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_call_api_hmac_signature_passes_hookwise_verify() {
    let api = Receiver::start().await;
    let host = host();
    let call_api = load(&host, "call-api", http_grant(&api), limits());
    let scheme = json!({
        "header": "X-Signature",
        "algorithm": "sha512",
        "encoding": "base64",
        "prefix": "v1=",
        "timestamp_header": "X-Timestamp",
        "signed_content": "{timestamp}.{method}.{body}",
    });
    let mut auth = scheme.clone();
    auth["secret"] = json!("s3cret-shared");
    output(
        &call(
            &host,
            &call_api,
            json!({"url": api.url("/signed"), "body": {"a": 1}, "auth": {"hmac": auth}}),
        )
        .await,
    );
    let req = api.one();
    assert!(
        req.header("x-signature")
            .is_some_and(|s| s.starts_with("v1="))
    );
    let opts = VerifyOptions {
        tolerance: None,
        hmac: Some(serde_json::from_value(scheme).unwrap()),
    };
    let check = |secret: &str| {
        hookwise::verify::verify(
            Provider::Hmac,
            &Keys::secrets([secret]),
            &opts,
            &Request {
                method: "POST",
                url: &api.url("/signed"),
                headers: &req.headers,
                body: &req.body,
            },
            SystemTime::now(),
        )
    };
    assert!(
        check("s3cret-shared").is_ok(),
        "{:?}",
        check("s3cret-shared")
    );
    assert!(check("other").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_call_api_classifies_failures() {
    let api = Receiver::start().await;
    api.answer([
        Answer::new(503, "maintenance"),
        Answer::new(429, "slow down").header("retry-after", "12"),
        Answer::new(400, "bad field"),
        Answer::new(200, "late").after(Duration::from_secs(3)),
        Answer::new(404, "gone already"),
        Answer::new(302, "").header("location", "/elsewhere"),
    ]);
    let host = host();
    let call_api = load(&host, "call-api", http_grant(&api), limits());
    let input = json!({"method": "DELETE", "url": api.url("/thing/1")});
    retryable(&call(&host, &call_api, input.clone()).await, "503", None);
    retryable(
        &call(&host, &call_api, input.clone()).await,
        "429",
        Some(Duration::from_secs(12)),
    );
    fatal(&call(&host, &call_api, input.clone()).await, "bad field");
    let mut timed = input.clone();
    timed["timeout"] = json!("300ms");
    retryable(&call(&host, &call_api, timed).await, "timed out", None);
    // 404 is fine when the rule says so (deleting something already gone).
    let mut tolerant = input.clone();
    tolerant["expect"] = json!(["2xx", 404]);
    assert_eq!(
        output(&call(&host, &call_api, tolerant).await),
        json!({"status": 404})
    );
    fatal(&call(&host, &call_api, input).await, "302");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_call_api_logs_a_truncated_response() {
    let api = Receiver::start().await;
    api.answer([Answer::new(200, &"x".repeat(20_000))]);
    let host = host();
    let call_api = load(&host, "call-api", http_grant(&api), limits());
    let report = call(&host, &call_api, json!({"url": api.url("/big")})).await;
    output(&report);
    let line = report
        .logs
        .iter()
        .find(|l| l.message.contains("-> 200"))
        .expect("response logged");
    assert!(line.message.len() < 2300, "{}", line.message.len());
    assert!(line.message.contains("truncated"), "{}", line.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_call_api_refuses_bad_input_without_sending() {
    let api = Receiver::start().await;
    let host = host();
    let call_api = load(&host, "call-api", http_grant(&api), limits());
    let url = api.url("/x");
    let cases = [
        (json!({"url": "not a url"}), "url"),
        (json!({"url": url, "verb": "GET"}), "unknown field"),
        (json!({"url": url, "method": "GE T"}), "not an HTTP method"),
        (
            json!({"url": url, "body": [1], "body_format": "form"}),
            "object",
        ),
        (
            json!({"url": url, "body": {"a": 1}, "body_format": "raw"}),
            "string",
        ),
        (
            json!({"url": url, "auth": {"bearer": "t"}, "headers": {"Authorization": "x"}}),
            "not both",
        ),
        (json!({"url": url, "expect": ["9xx"]}), "expect"),
        (json!({"url": url, "timeout": "forever"}), "timeout"),
        (
            json!({"url": url, "select": {"id": "data.id"}}),
            "JSON Pointer",
        ),
        (
            json!({"url": url, "headers": {"X-A": "1\n2"}}),
            "control character",
        ),
        (
            json!({"url": url, "auth": {"hmac": {"secret": "s", "header": "X-Sig", "signed_content": "{timestamp}"}}}),
            "timestamp_header",
        ),
    ];
    for (input, needle) in cases {
        fatal(&call(&host, &call_api, input).await, needle);
    }
    assert!(api.seen().is_empty());
}

// ---- write-db --------------------------------------------------------------------------

/// A fresh database of one backend, granted to `write-db` as connection `main`, with an
/// independent pool for checking what was committed.
struct Db {
    backend: Backend,
    temp: TempDb,
    pool: SqlPool,
    host: PluginHost,
    plugin: LoadedPlugin,
}

impl Db {
    async fn start(backend: Backend) -> Db {
        Db::start_with(backend, limits()).await
    }

    async fn start_with(backend: Backend, limits: Limits) -> Db {
        let temp = TempDb::create(backend, "app.db").await;
        let url = temp.url().to_string();
        let pool: SqlPool = match backend {
            Backend::Sqlite => sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(2)
                .connect(&url)
                .await
                .unwrap()
                .into(),
            Backend::Postgres => sqlx::PgPool::connect(&url).await.unwrap().into(),
            Backend::MySql => sqlx::MySqlPool::connect(&url).await.unwrap().into(),
        };
        let mut executor = SqlExecutor::new();
        match &pool {
            // SQLite: share the pool, so that a test can hold the database locked.
            SqlPool::Sqlite(p) => executor.add_pool("main", p.clone()).await.unwrap(),
            // The others through the same `connect` a config's `connections` use.
            _ => executor.connect("main", &url).await.unwrap(),
        }
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("first-party-cache");
        let host = PluginHost::new(HostSettings {
            cache_dir: Some(cache),
            max_instances: 16,
            db: Some(Arc::new(executor)),
            ..HostSettings::default()
        })
        .unwrap();
        let grants = Grants {
            http: Vec::new(),
            db: vec!["main".to_string()],
        };
        let plugin = load(&host, "write-db", grants, limits);
        let db = Db {
            backend,
            temp,
            pool,
            host,
            plugin,
        };
        db.exec(match backend {
            Backend::Sqlite | Backend::Postgres => ORDERS,
            Backend::MySql => ORDERS_MYSQL,
        })
        .await;
        db
    }

    /// The rule's `dialect` for this backend.
    fn dialect(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mariadb",
        }
    }

    /// Calls `write-db` with `input`, which gets this backend's `dialect` unless it has one.
    async fn write(&self, mut input: Value, key: &str) -> CallReport {
        if input.get("dialect").is_none() {
            input["dialect"] = json!(self.dialect());
        }
        call_with(&self.host, &self.plugin, input, key).await
    }

    async fn exec(&self, sql: &str) {
        match &self.pool {
            SqlPool::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            SqlPool::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            SqlPool::MySql(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn count(&self, sql: &str) -> i64 {
        match &self.pool {
            SqlPool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            SqlPool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            SqlPool::MySql(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Rows of `orders` as JSON objects, by order_id.
    async fn orders(&self) -> Vec<Value> {
        type Row = (String, Option<String>, String, Option<String>);
        let rows: Vec<Row> = match &self.pool {
            SqlPool::Sqlite(p) => sqlx::query_as(ALL_ORDERS).fetch_all(p).await,
            SqlPool::Postgres(p) => sqlx::query_as(ALL_ORDERS).fetch_all(p).await,
            SqlPool::MySql(p) => {
                sqlx::query_as(&ALL_ORDERS.replace('"', "`"))
                    .fetch_all(p)
                    .await
            }
        }
        .unwrap();
        rows.into_iter()
            .map(|(order_id, total, status, order)| {
                json!({"order_id": order_id, "total": total, "status": status, "order": order})
            })
            .collect()
    }

    /// Closes every handle and drops the database.
    async fn close(self) {
        let Db {
            temp, pool, host, ..
        } = self;
        drop(host);
        match pool {
            SqlPool::Sqlite(p) => p.close().await,
            SqlPool::Postgres(p) => p.close().await,
            SqlPool::MySql(p) => p.close().await,
        }
        temp.drop_db().await;
    }
}

/// `order` is a reserved word: the plugin must quote it.
const ORDERS: &str = "CREATE TABLE orders (
    order_id TEXT PRIMARY KEY NOT NULL,
    total TEXT,
    status TEXT NOT NULL,
    \"order\" TEXT
)";
const ORDERS_MYSQL: &str = "CREATE TABLE orders (
    order_id VARCHAR(64) PRIMARY KEY NOT NULL,
    total TEXT,
    status TEXT NOT NULL,
    `order` TEXT
) ENGINE=InnoDB";

const ALL_ORDERS: &str = "SELECT order_id, total, status, \"order\" FROM orders ORDER BY order_id";

// `first_party::write_db::<scenario>::{sqlite,postgres,mysql}`.
on_every_backend!(
    write_db [sqlite, postgres, mysql]:
    insert_twice_with_one_key_writes_one_row,
    upsert_and_update,
    sql_injection_is_refused_or_bound,
    strings_and_numbers_fit_typed_columns,
    classifies_failures,
    refuses_bad_input,
);

async fn insert_twice_with_one_key_writes_one_row(backend: Backend) {
    let db = Db::start(backend).await;
    let input = json!({
        "connection": "main",
        "table": "orders",
        "columns": {"order_id": "1001", "total": "25.00", "status": "paid", "order": "first"},
    });
    let first = output(&db.write(input.clone(), "exec-a").await);
    assert_eq!(
        first,
        json!({"mode": "insert", "table": "orders", "rows_affected": 1, "already_applied": false})
    );
    // The same execution again (a retry after a lost answer, or a replay): nothing new.
    let again = output(&db.write(input.clone(), "exec-a").await);
    assert_eq!(
        again,
        json!({"mode": "insert", "table": "orders", "already_applied": true})
    );
    assert_eq!(
        db.orders().await,
        vec![json!({"order_id": "1001", "total": "25.00", "status": "paid", "order": "first"})]
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM hookwise_effects").await, 1);
    // A different execution inserting the same key hits the primary key: fatal, rolled back.
    let duplicate = match backend {
        Backend::Sqlite => "UNIQUE",
        Backend::Postgres => "duplicate key",
        Backend::MySql => "Duplicate entry",
    };
    fatal(&db.write(input, "exec-b").await, duplicate);
    assert_eq!(db.orders().await.len(), 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM hookwise_effects").await, 1);
    db.close().await;
}

async fn upsert_and_update(backend: Backend) {
    let db = Db::start(backend).await;
    let upsert = |status: &str, total: &str| {
        json!({
            "connection": "main",
            "table": "orders",
            "mode": "upsert",
            "key": ["order_id"],
            "columns": {"order_id": "7", "total": total, "status": status},
        })
    };
    let inserted = output(&db.write(upsert("pending", "10"), "e1").await);
    assert_eq!(inserted["rows_affected"], 1);
    let updated = output(&db.write(upsert("paid", "12"), "e2").await);
    // MySQL counts an upsert that changed an existing row as 2 (documented).
    let expected = if backend == Backend::MySql { 2 } else { 1 };
    assert_eq!(updated["rows_affected"], expected);
    assert_eq!(
        db.orders().await,
        vec![json!({"order_id": "7", "total": "12", "status": "paid", "order": null})]
    );
    // The same upsert execution again writes nothing, even after the row changed.
    db.write(
        json!({"connection": "main", "table": "orders", "mode": "update", "key": ["order_id"],
               "columns": {"order_id": "7", "total": "13"}}),
        "e2b",
    )
    .await;
    let replay = output(&db.write(upsert("paid", "12"), "e2").await);
    assert_eq!(replay["already_applied"], true);
    assert_eq!(db.orders().await[0]["total"], "13");

    let update = |id: &str, status: &str, if_missing: &str| {
        json!({
            "connection": "main",
            "table": "orders",
            "mode": "update",
            "key": ["order_id"],
            "columns": {"order_id": id, "status": status},
            "if_missing": if_missing,
        })
    };
    assert_eq!(
        output(&db.write(update("7", "refunded", "error"), "e3").await)["rows_affected"],
        1
    );
    assert_eq!(db.orders().await[0]["status"], "refunded");
    // Setting the value the row already has still matches the row (MySQL included).
    assert_eq!(
        output(&db.write(update("7", "refunded", "error"), "e3b").await)["rows_affected"],
        1
    );
    // Twice with one key: applied once.
    let again = output(&db.write(update("7", "disputed", "error"), "e3").await);
    assert_eq!(again["already_applied"], true);
    assert_eq!(db.orders().await[0]["status"], "refunded");
    fatal(&db.write(update("8", "x", "error"), "e4").await, "no row");
    retryable(
        &db.write(update("8", "x", "retry"), "e5").await,
        "no row",
        None,
    );
    assert_eq!(
        output(&db.write(update("8", "x", "ignore"), "e6").await)["rows_affected"],
        0
    );
    assert_eq!(db.orders().await.len(), 1);
    db.close().await;
}

async fn sql_injection_is_refused_or_bound(backend: Backend) {
    let db = Db::start(backend).await;
    // Hostile identifiers never reach the database.
    for (table, columns, key, needle) in [
        (
            "orders; DROP TABLE orders",
            json!({"order_id": "1", "status": "x"}),
            json!([]),
            "plain identifier",
        ),
        (
            "orders\" --",
            json!({"order_id": "1", "status": "x"}),
            json!([]),
            "plain identifier",
        ),
        (
            "orders` --",
            json!({"order_id": "1", "status": "x"}),
            json!([]),
            "plain identifier",
        ),
        (
            "hookwise_effects",
            json!({"idempotency_key": "k", "applied_at": "x"}),
            json!([]),
            "belong to hookwise",
        ),
        (
            "public.hookwise_effects",
            json!({"idempotency_key": "k"}),
            json!([]),
            "belong to hookwise",
        ),
        (
            "orders",
            json!({"order_id": "1", "status\") VALUES ('a','b'); DROP TABLE orders; --": "x"}),
            json!([]),
            "plain identifier",
        ),
        (
            "orders",
            json!({"order_id": "1", "status": "x", "`x`": "y"}),
            json!([]),
            "plain identifier",
        ),
        (
            "orders",
            json!({"order_id": "1", "status": "x", "a/*": "y"}),
            json!([]),
            "plain identifier",
        ),
        (
            "orders",
            json!({"order_id": "1", "status": "x", "order_id) = 1 OR (1": "y"}),
            json!(["order_id) = 1 OR (1"]),
            "plain identifier",
        ),
    ] {
        let mode = if key.as_array().is_some_and(|k| k.is_empty()) {
            "insert"
        } else {
            "upsert"
        };
        let report = db
            .write(
                json!({"connection": "main", "table": table, "mode": mode, "key": key,
                       "columns": columns}),
                "inj",
            )
            .await;
        fatal(&report, needle);
        assert!(
            report.db_statements.is_empty(),
            "{:?}",
            report.db_statements
        );
    }
    // Hostile values are bound as parameters and stored as text, in every mode.
    let evil = "'); DROP TABLE orders; --";
    let quotes = "1' OR '1'='1";
    let pg_json = "\"}', NULL); DROP TABLE orders; --";
    let backslashes = "\\'; DROP TABLE orders; -- $1 ? `x` \"y\"";
    output(
        &db.write(
            json!({"connection": "main", "table": "orders",
                   "columns": {"order_id": evil, "status": quotes, "total": null, "order": pg_json}}),
            "values",
        )
        .await,
    );
    output(
        &db.write(
            json!({"connection": "main", "table": "orders", "mode": "upsert", "key": ["order_id"],
                   "columns": {"order_id": quotes, "status": backslashes, "order": evil}}),
            "values-upsert",
        )
        .await,
    );
    // An update whose key value would match every row if it were spliced in.
    let report = db
        .write(
            json!({"connection": "main", "table": "orders", "mode": "update", "key": ["order_id"],
                   "columns": {"order_id": "x' OR '1'='1", "status": "hacked"},
                   "if_missing": "ignore"}),
            "values-update",
        )
        .await;
    assert_eq!(output(&report)["rows_affected"], 0);
    assert_eq!(
        db.orders().await,
        vec![
            json!({"order_id": evil, "total": null, "status": quotes, "order": pg_json}),
            json!({"order_id": quotes, "total": null, "status": backslashes, "order": evil}),
        ]
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM hookwise_effects").await, 3);
    db.close().await;
}

/// Rule templates render strings and numbers whatever the column types are: `"649.90"` for a
/// decimal column, a numeric id for a text column, a string key for a bigint column. They fit
/// on every backend (PostgreSQL does not convert typed parameters by itself).
async fn strings_and_numbers_fit_typed_columns(backend: Backend) {
    let db = Db::start(backend).await;
    db.exec(match backend {
        Backend::Sqlite => {
            "CREATE TABLE payments (id INTEGER PRIMARY KEY, order_ref TEXT, amount NUMERIC, \
             paid_at TEXT, paid BOOLEAN, meta TEXT, note TEXT DEFAULT 'none')"
        }
        Backend::Postgres => {
            "CREATE TABLE payments (id BIGINT PRIMARY KEY, order_ref TEXT, amount NUMERIC(10,2), \
             paid_at TIMESTAMPTZ, paid BOOLEAN, meta JSONB, note TEXT DEFAULT 'none')"
        }
        Backend::MySql => {
            "CREATE TABLE payments (id BIGINT PRIMARY KEY, order_ref VARCHAR(64), \
             amount DECIMAL(10,2), paid_at DATETIME, paid BOOLEAN, meta JSON, \
             note VARCHAR(16) DEFAULT 'none') ENGINE=InnoDB"
        }
    })
    .await;
    let row = json!({
        "id": 820982911946154508_u64,
        "order_ref": 1001,
        "amount": "649.90",
        "paid_at": "2024-05-01 11:58:00",
        "paid": true,
        "meta": {"gateway": "shopify_payments", "tags": ["a", "b"]},
    });
    let insert = json!({"connection": "main", "table": "payments", "columns": row});
    assert_eq!(output(&db.write(insert, "t1").await)["rows_affected"], 1);
    let matching = "SELECT COUNT(*) FROM payments WHERE id = 820982911946154508 \
                    AND order_ref = '1001' AND paid AND paid_at IS NOT NULL \
                    AND meta IS NOT NULL AND note = 'none' AND amount = ";
    assert_eq!(db.count(&format!("{matching}649.90")).await, 1);
    // Update by a key given as a string, with a number for the decimal.
    let update = json!({"connection": "main", "table": "payments", "mode": "update",
                        "key": ["id"],
                        "columns": {"id": "820982911946154508", "amount": 700, "paid": false}});
    assert_eq!(output(&db.write(update, "t2").await)["rows_affected"], 1);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM payments WHERE amount = 700 AND NOT paid")
            .await,
        1
    );
    // Upsert with a float and a null.
    let upsert = json!({"connection": "main", "table": "payments", "mode": "upsert",
                        "key": ["id"],
                        "columns": {"id": 820982911946154508_u64, "amount": 12.5, "paid_at": null,
                                    "paid": true}});
    output(&db.write(upsert, "t3").await);
    assert_eq!(
        db.count(&format!(
            "{}12.5",
            matching.replace("paid_at IS NOT NULL", "paid_at IS NULL")
        ))
        .await,
        1
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM payments").await, 1);
    // A value the column cannot hold is a fatal error, rolled back.
    let bad = json!({"connection": "main", "table": "payments",
                     "columns": {"id": 2, "amount": "lots"}});
    if backend != Backend::Sqlite {
        // SQLite stores whatever it is given.
        fatal(&db.write(bad, "t4").await, "lots");
        assert_eq!(db.count("SELECT COUNT(*) FROM payments").await, 1);
    }
    db.close().await;
}

async fn classifies_failures(backend: Backend) {
    let db = Db::start_with(
        backend,
        Limits {
            timeout: Duration::from_secs(20),
            ..limits()
        },
    )
    .await;
    // Constraint violations repeat identically: fatal.
    let not_null = match backend {
        Backend::Sqlite => "NOT NULL",
        Backend::Postgres => "not-null",
        Backend::MySql => "cannot be null",
    };
    fatal(
        &db.write(
            json!({"connection": "main", "table": "orders", "columns": {"order_id": "1", "status": null}}),
            "nn",
        )
        .await,
        not_null,
    );
    // Unknown tables too.
    let no_table = match backend {
        Backend::Sqlite => "no such table",
        Backend::Postgres => "does not exist",
        Backend::MySql => "doesn't exist",
    };
    fatal(
        &db.write(
            json!({"connection": "main", "table": "nope", "columns": {"a": 1}}),
            "nt",
        )
        .await,
        no_table,
    );
    // A connection that is not granted is a configuration problem: fatal, with the fix.
    fatal(
        &db.write(
            json!({"connection": "other", "table": "orders", "columns": {"order_id": "1", "status": "x"}}),
            "ng",
        )
        .await,
        "allow",
    );
    // A wrong dialect fails loudly, with a hint when it is the default.
    let wrong = match backend {
        Backend::Sqlite => None,
        Backend::Postgres | Backend::MySql => Some("sqlite"),
    };
    if let Some(dialect) = wrong {
        let report = db
            .write(
                json!({"connection": "main", "dialect": dialect, "table": "orders",
                       "columns": {"order_id": "1", "status": "x", "order": "y"}}),
                "wd",
            )
            .await;
        let (kind, message, _) = failure(&report);
        assert_eq!(kind, ErrorKind::Fatal, "{message}");
        assert_eq!(db.orders().await.len(), 0);
    }
    assert_eq!(db.count("SELECT COUNT(*) FROM hookwise_effects").await, 0);
    // A database (SQLite) or key (the others) held locked by someone else is transient:
    // retryable, after the host's statement timeout at the latest.
    let held = "INSERT INTO orders (order_id, status) VALUES ('2', 'held')";
    let attempt = json!({"connection": "main", "table": "orders",
                         "columns": {"order_id": "2", "status": "x"}});
    let report = match &db.pool {
        SqlPool::Sqlite(p) => {
            let mut locker = p.acquire().await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut *locker)
                .await
                .unwrap();
            let report = db.write(attempt, "locked").await;
            sqlx::raw_sql("ROLLBACK")
                .execute(&mut *locker)
                .await
                .unwrap();
            report
        }
        SqlPool::Postgres(p) => {
            let mut locker = p.begin().await.unwrap();
            sqlx::raw_sql(held).execute(&mut *locker).await.unwrap();
            let report = db.write(attempt, "locked").await;
            locker.rollback().await.unwrap();
            report
        }
        SqlPool::MySql(p) => {
            let mut locker = p.begin().await.unwrap();
            sqlx::raw_sql(held).execute(&mut *locker).await.unwrap();
            let report = db.write(attempt, "locked").await;
            locker.rollback().await.unwrap();
            report
        }
    };
    let (kind, message, _) = failure(&report);
    assert_eq!(kind, ErrorKind::Retryable, "{message}");
    assert_eq!(db.orders().await.len(), 0);
    db.close().await;
}

async fn refuses_bad_input(backend: Backend) {
    let db = Db::start(backend).await;
    let cases = [
        (
            json!({"table": "orders", "columns": {"a": 1}}),
            "connection",
        ),
        (
            json!({"connection": "main", "table": "orders", "columns": {}}),
            "empty",
        ),
        (
            json!({"connection": "main", "table": "orders", "mode": "merge", "columns": {"a": 1}}),
            "unknown variant",
        ),
        (
            json!({"connection": "main", "table": "orders", "mode": "upsert", "columns": {"a": 1}}),
            "needs `key`",
        ),
        (
            json!({"connection": "main", "table": "orders", "mode": "upsert", "key": ["b"], "columns": {"a": 1}}),
            "not in `columns`",
        ),
        (
            json!({"connection": "main", "table": "orders", "mode": "update", "key": ["a"], "columns": {"a": null, "b": 1}}),
            "is null",
        ),
        (
            json!({"connection": "main", "table": "orders", "dialect": "oracle", "columns": {"a": 1}}),
            "unknown variant",
        ),
    ];
    for (input, needle) in cases {
        let report = db.write(input, "bad").await;
        fatal(&report, needle);
        assert!(report.db_statements.is_empty());
    }
    db.close().await;
}

// ---- end to end through a running server -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_party_plugins_run_from_a_served_rule() {
    use crate::dispatch::{send, start, wait_done};

    let receiver = Receiver::start().await;
    let config = format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: sqlite://hookwise.db\n\
         rules: rules.yaml\n\
         sources:\n  - {{ id: gh, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         plugins:\n  \
           - {{ name: notify, allow: {{ http: [\"http://{addr}\"] }} }}\n  \
           - {{ name: write-db, allow: {{ db: [app] }} }}\n\
         connections:\n  app: sqlite://app.db\n",
        addr = receiver.addr
    );
    let rules = format!(
        "rules:\n  - id: push-to-hooks\n    source: gh\n    events: [push]\n    actions:\n\
         \x20     - plugin: write-db\n        with:\n          connection: app\n          table: pushes\n\
         \x20         mode: upsert\n          key: [after]\n          columns:\n\
         \x20           after: \"{{{{ payload.after }}}}\"\n            pusher: \"{{{{ payload.pusher.name }}}}\"\n\
         \x20     - plugin: notify\n        with:\n          webhook: \"{url}\"\n\
         \x20         signing_secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
         \x20         body: {{ text: \"{{{{ payload.pusher.name }}}} pushed {{{{ payload.after }}}}\" }}\n",
        url = receiver.url("/pushes")
    );
    let server = start(&config, &rules).await;
    let app_db = server.dir.join("app.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", app_db.display()))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS pushes (after TEXT PRIMARY KEY, pusher TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let event = send(
        &client,
        &server.base,
        &json!({"ref": "refs/heads/main", "after": "abc123", "pusher": {"name": "alice"}}),
    )
    .await;
    let store = server.store().await;
    wait_done(&store, event, 2, Duration::from_secs(60)).await;
    let executions = store.executions_for_event(event).await.unwrap();
    assert!(
        executions
            .iter()
            .all(|x| x.status == ExecutionStatus::Succeeded),
        "{executions:#?}"
    );
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT after, pusher FROM pushes")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows, vec![("abc123".to_string(), "alice".to_string())]);
    let req = receiver.one();
    assert_eq!(req.path, "/pushes");
    assert_eq!(req.json(), json!({"text": "alice pushed abc123"}));
    let verified = hookwise::verify::verify(
        Provider::StandardWebhooks,
        &Keys::secrets(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]),
        &VerifyOptions::default(),
        &Request {
            method: "POST",
            url: &receiver.url("/pushes"),
            headers: &req.headers,
            body: &req.body,
        },
        SystemTime::now(),
    );
    assert!(verified.is_ok(), "{verified:?}");
    pool.close().await;
    server.stop().await;
}

// ---- input schemas ---------------------------------------------------------------------

fn schema(plugin: &str) -> jsonschema::Validator {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/plugins")
        .join(format!("{plugin}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let value: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&value).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Every rendered input of a built-in plugin in tests/rules/cases fits that plugin's schema,
/// and the schemas refuse what the plugins refuse.
#[test]
fn first_party_schemas_accept_the_example_rules_inputs() {
    let validators: Vec<(&str, jsonschema::Validator)> = hookwise::config::BUILTIN_PLUGINS
        .iter()
        .map(|name| (*name, schema(name)))
        .collect();
    let cases = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/rules/cases");
    let mut checked = 0;
    for entry in std::fs::read_dir(&cases).unwrap() {
        let path = entry.unwrap().path();
        let case: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let matched = case["expect"]["matched"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for rule in matched {
            for action in rule["actions"].as_array().cloned().unwrap_or_default() {
                let plugin = action["plugin"].as_str().unwrap_or("");
                if let Some((_, validator)) = validators.iter().find(|(n, _)| *n == plugin) {
                    let errors: Vec<String> = validator
                        .iter_errors(&action["input"])
                        .map(|e| format!("{} at {}", e, e.instance_path()))
                        .collect();
                    assert!(errors.is_empty(), "{path:?} {plugin}: {errors:?}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} inputs checked");

    let refused = [
        ("notify", json!({"text": "no destination"})),
        ("notify", json!({"slack_webhook": "https://h/x"})),
        (
            "notify",
            json!({"discord_webhook": "https://h/x", "content": "x", "extra": 1}),
        ),
        ("call-api", json!({"method": "GET"})),
        ("call-api", json!({"url": "https://h/x", "expect": ["9xx"]})),
        (
            "write-db",
            json!({"connection": "c", "table": "t; drop", "columns": {"a": 1}}),
        ),
        (
            "write-db",
            json!({"connection": "c", "table": "t", "mode": "upsert", "columns": {"a": 1}}),
        ),
        (
            "write-db",
            json!({"connection": "c", "table": "t", "columns": {"a b": 1}}),
        ),
    ];
    for (plugin, input) in refused {
        let validator = &validators.iter().find(|(n, _)| *n == plugin).unwrap().1;
        assert!(
            !validator.is_valid(&input),
            "{plugin} schema accepts {input}"
        );
    }
}
