//! Fuzz targets: one function per parser of outside input, each taking arbitrary bytes and
//! feeding them to the real code. None may panic on any input; where a property must hold
//! (a random signature never verifies, a signed request always does, a fast path agrees with the
//! general one) the function asserts it, so a broken property is a crash too.
//!
//! The cargo-fuzz targets in `fuzz/` call these, and `tests/e2e/fuzz_corpora.rs` replays the
//! committed corpora through them on the stable toolchain. Inputs that carry several fields
//! split on the byte 0xFF, which never occurs in UTF-8 text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::io::AsyncWrite;

use crate::plugin_host::command::exit_error;
use crate::plugin_host::limits::CappedPipe;
use crate::plugin_host::{CallError, check_output, with_panic_message};
use crate::rules::condition::{self, Condition};
use crate::rules::template::{RenderContext, Templates};
use crate::rules::{CompileContext, ConditionTrace, EventView, RuleSet, compile_files};
use crate::verify::{self, Keys, Payload, Provider, Request, VerifyOptions};

/// Separates the fields of one input.
const SEP: u8 = 0xFF;
/// The clock every verification runs at: 2023-11-14T22:13:20Z.
const NOW_SECS: u64 = 1_700_000_000;
/// Root of the shared secrets: long and random, so no input guesses it. Each provider signs
/// with its own secret made from it, so a signature one provider made (and a target compared)
/// cannot pass for another provider's: the fuzzer learns compared values and replays them.
const SECRET: &str = "fz7Qk2Lw9xVb4Rt8Yh1Nc6Jm3Pd5Gs0E";
/// Discord private key (an Ed25519 seed, hex; RFC 8032 test 3).
const DISCORD_PRIVATE: &str = "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7";
/// Standard Webhooks `v1a` private key: `whsk_` + base64 of a 32-byte Ed25519 seed.
const WHSK: &str = "whsk_xaqN9D+fg3vtt0QvMdy3sWbThTUHbwlLhc46LgtEWPc=";
/// SendGrid private key: base64 DER (SEC1) of a P-256 key (the verify unit tests' key).
const SENDGRID_PRIVATE: &str = "MHcCAQEEIEQmZgBEh9DcU9zMl34czK3xov4AYvm9P3r7rNB2dNXtoAoGCCqGSM49AwEHoUQDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
/// URL the signed requests are posted to (Twilio, Square and HubSpot sign it).
const URL: &str = "https://hooks.example.org/hooks/src?x=1";
/// Output cap of the command-ABI targets: small, so inputs reach it.
const MAX_OUTPUT: usize = 256;
/// Secret value the rule and template targets render; redacted output must never show it.
const RULE_SECRET: &str = "rs9Hq4Zt2Wv7Kx1Lm8";

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == SEP).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Headers from `name:value` fields; fields that are not a valid header are skipped.
fn headers_from(parts: &[&[u8]]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for part in parts {
        let Some(colon) = part.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&part[..colon], &part[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

fn hmac_scheme() -> verify::HmacScheme {
    verify::HmacScheme {
        header: "X-Signature".into(),
        algorithm: verify::HmacAlgorithm::Sha256,
        encoding: verify::SignatureEncoding::Hex,
        prefix: Some("sha256=".into()),
        timestamp_header: Some("X-Timestamp".into()),
        signed_content: Some("{timestamp}.{method}.{url}.{body}".into()),
    }
}

fn options(provider: Provider) -> VerifyOptions {
    VerifyOptions {
        tolerance: None,
        hmac: (provider == Provider::Hmac).then(hmac_scheme),
    }
}

/// The shared secret of `provider`, in the form its dashboard shows.
fn secret(provider: Provider) -> String {
    let text = format!("{SECRET}-{}", provider.id());
    match provider {
        // `whsec_` + base64 of the key bytes.
        Provider::StandardWebhooks | Provider::Svix | Provider::Clerk | Provider::Resend => {
            format!("whsec_{}", BASE64.encode(text))
        }
        _ => text,
    }
}

/// What [`verify::sign`] takes as the key of `provider`.
fn signing_key(provider: Provider) -> String {
    match provider {
        Provider::Discord => DISCORD_PRIVATE.to_string(),
        Provider::Sendgrid => SENDGRID_PRIVATE.to_string(),
        _ => secret(provider),
    }
}

/// What [`verify::verify`] takes as the keys of `provider`: the secret, and for public-key
/// schemes the public key matching [`signing_key`] (Standard Webhooks takes both).
fn keys(provider: Provider) -> Keys {
    let public = match provider {
        Provider::Discord => verify::public_key_for(provider, DISCORD_PRIVATE).ok(),
        Provider::Sendgrid => verify::public_key_for(provider, SENDGRID_PRIVATE).ok(),
        Provider::StandardWebhooks => verify::public_key_for(provider, WHSK).ok(),
        _ => None,
    };
    Keys {
        secrets: vec![secret(provider).into()],
        public_keys: public.into_iter().collect(),
    }
}

fn verify_at(provider: Provider, url: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let request = Request {
        method: "POST",
        url,
        headers,
        body,
    };
    verify::verify(
        provider,
        &keys(provider),
        &options(provider),
        &request,
        now(),
    )
    .is_ok()
}

/// Every provider's `verify` on a request made of the input: field 0 the URL, field 1 the body,
/// the rest `name:value` headers. Only `none` (and GitLab, when the token header holds the
/// secret itself) may accept it.
pub fn verify_request(data: &[u8]) {
    let parts = fields(data);
    let url = text(parts.first().copied().unwrap_or_default());
    let body = parts.get(1).copied().unwrap_or_default();
    let headers = headers_from(parts.get(2..).unwrap_or_default());
    for &provider in Provider::ALL {
        let accepted = verify_at(provider, &url, &headers, body);
        let may = provider == Provider::None
            || (provider == Provider::Gitlab
                && headers.get("x-gitlab-token").map(HeaderValue::as_bytes)
                    == Some(secret(provider).as_bytes()));
        assert!(
            !accepted || may,
            "{provider} accepted a request nobody signed"
        );
    }
}

/// The headers each provider's signing sends, their values replaced by the input's fields in
/// turn, then `verify`: this reaches every signature-header parser (`t=...,v1=...`, `v1,sig v1a,sig`,
/// `sha256=...`, timestamps) with the header names it reads. Verification may succeed only when
/// every replaced value is the genuine one, or when the signature is not in a header (Mailgun
/// signs inside the body).
pub fn signature_headers(data: &[u8]) {
    let values = fields(data);
    let body = br#"{"id":"evt_1","type":"push","a":[1,2]}"#;
    for &provider in Provider::ALL {
        let Ok(signed) = verify::sign_request(
            provider,
            &signing_key(provider),
            &options(provider),
            "POST",
            URL,
            body,
            now(),
        ) else {
            continue;
        };
        let mut headers = HeaderMap::new();
        let mut genuine = true;
        for (i, (name, value)) in signed.headers.iter().enumerate() {
            let new = values[i % values.len()].trim_ascii();
            genuine &= new == value.as_bytes();
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(new),
            ) {
                headers.append(name, value);
            }
        }
        let accepted = verify_at(provider, &signed.url, &headers, &signed.body);
        assert!(
            !accepted || genuine || signed.body != body,
            "{provider} accepted headers that are not the signed ones"
        );
    }
}

/// The input as a body, signed by every provider that can sign it, must verify.
pub fn sign_verify(data: &[u8]) {
    for &provider in Provider::ALL {
        let Ok(signed) = verify::sign_request(
            provider,
            &signing_key(provider),
            &options(provider),
            "POST",
            URL,
            data,
            now(),
        ) else {
            continue;
        };
        let parts: Vec<Vec<u8>> = signed
            .headers
            .iter()
            .map(|(k, v)| format!("{k}:{v}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let headers = headers_from(&refs);
        assert!(
            verify_at(provider, &signed.url, &headers, &signed.body),
            "{provider} refused its own signature"
        );
    }
}

/// A generic `hmac` scheme whose `signed_content` template is the input's field 0, signing
/// field 1 as the body: a scheme that validates must sign and verify its own requests.
pub fn hmac_scheme_content(data: &[u8]) {
    let parts = fields(data);
    let scheme = verify::HmacScheme {
        signed_content: Some(text(parts.first().copied().unwrap_or_default())),
        ..hmac_scheme()
    };
    if scheme.validate().is_err() {
        return;
    }
    let body = parts.get(1).copied().unwrap_or_default();
    let opts = VerifyOptions {
        tolerance: None,
        hmac: Some(scheme),
    };
    let Ok(signed) = verify::sign_request(Provider::Hmac, SECRET, &opts, "POST", URL, body, now())
    else {
        return;
    };
    let parts: Vec<Vec<u8>> = signed
        .headers
        .iter()
        .map(|(k, v)| format!("{k}:{v}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let request = Request {
        method: "POST",
        url: &signed.url,
        headers: &headers_from(&refs),
        body: &signed.body,
    };
    let keys = Keys::secrets([SECRET]);
    assert!(
        verify::verify(Provider::Hmac, &keys, &opts, &request, now()).is_ok(),
        "the hmac scheme refused its own signature"
    );
}

/// Config-time checks of keys: the input as a secret and as a public key of every provider.
pub fn check_keys(data: &[u8]) {
    let key = text(data);
    for &provider in Provider::ALL {
        let keys = Keys {
            secrets: vec![key.as_str().into()],
            public_keys: vec![key.clone()],
        };
        let problems = verify::check_keys(provider, &keys);
        assert!(problems.len() <= 2, "one problem per key at most");
        let _ = verify::public_key_for(provider, &key);
    }
}

/// JSON pointers worth asking of a payload: fixed ones, and the paths to its first members.
fn pointers(value: &Value) -> Vec<String> {
    /// How deep and how wide the walk goes: enough to reach nested fields, bounded per input.
    const DEPTH: usize = 4;
    const WIDTH: usize = 3;
    fn walk(value: &Value, at: String, depth: usize, out: &mut Vec<String>) {
        out.push(at.clone());
        if depth == 0 {
            return;
        }
        let escape = crate::yamldoc::escape_pointer_token;
        match value {
            Value::Object(map) => map.iter().take(WIDTH).for_each(|(k, v)| {
                walk(v, format!("{at}/{}", escape(k)), depth - 1, out);
            }),
            Value::Array(items) => items.iter().take(WIDTH).enumerate().for_each(|(i, v)| {
                walk(v, format!("{at}/{i}"), depth - 1, out);
            }),
            _ => {}
        }
    }
    let mut out: Vec<String> = [
        "/id",
        "/type",
        "/event/type",
        "/a/0",
        "/0",
        "/~1x",
        "/~",
        "x",
    ]
    .map(String::from)
    .to_vec();
    walk(value, String::new(), DEPTH, &mut out);
    out
}

/// The payload reading of the input: a payload's stored text reads back as the same value, and
/// the pointer lookup that skips parsing finds what the parsed value holds.
pub fn payload_read(data: &[u8]) {
    let Some(lazy) = read_payload(data) else {
        return;
    };
    let Some(parsed) = read_payload(data) else {
        panic!("Payload::read is not deterministic");
    };
    let value = parsed.value();
    for pointer in pointers(value) {
        assert_eq!(
            lazy.pointer(&pointer).as_deref(),
            value.pointer(&pointer),
            "pointer {pointer:?} disagrees with the parsed value"
        );
    }
    if !value.is_null() {
        let stored = parsed.text();
        let again = read_payload(stored.as_bytes()).map(Payload::into_value);
        assert_eq!(
            again.as_ref(),
            Some(value),
            "the stored text reads back differently"
        );
    }
}

/// A url-encoded form built from the input's fields (name, value, name, value, ...) reads as an
/// object of its fields, the last value of a repeated name winning, unless its only field is a
/// `payload` holding JSON (Slack interactivity).
pub fn form_body(data: &[u8]) {
    let parts = fields(data);
    let pairs: Vec<(String, String)> = parts
        .chunks(2)
        .map(|kv| (text(kv[0]), text(kv.get(1).copied().unwrap_or_default())))
        .collect();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let Some(payload) = read_payload(body.as_bytes()) else {
        panic!("the form {body:?} was refused");
    };
    let value = payload.value();
    let expected: BTreeMap<&str, &str> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if expected.len() == 1
        && let Some(inner) = expected.get("payload")
        && let Ok(json) = serde_json::from_str::<Value>(inner)
    {
        assert_eq!(value, &json);
        return;
    }
    let Some(object) = value.as_object() else {
        panic!("the form {body:?} is not an object");
    };
    assert_eq!(object.len(), expected.len());
    for (k, v) in expected {
        assert_eq!(
            object.get(k).and_then(Value::as_str),
            Some(v),
            "field {k:?}"
        );
    }
}

/// Delivery id, event type and handshake reply of every provider, from a body (field 0) and
/// `name:value` headers (the other fields).
pub fn identify(data: &[u8]) {
    let parts = fields(data);
    let body = parts.first().copied().unwrap_or_default();
    let headers = headers_from(parts.get(1..).unwrap_or_default());
    for &provider in Provider::ALL {
        // As if verified: what follows a good signature must hold for any bytes a provider
        // (or whoever holds its secret) can sign.
        let verified = verify::Verified::operator_supplied(provider, &headers, body);
        let Some(payload) = verified.payload() else {
            return;
        };
        let _ = verified.identify(&payload);
        let _ = verified.handshake(&keys(provider), &payload);
    }
}

/// The payload of `body` as a verified request's body is read.
fn read_payload(body: &[u8]) -> Option<Payload<'_>> {
    static NO_HEADERS: std::sync::LazyLock<http::HeaderMap> =
        std::sync::LazyLock::new(http::HeaderMap::new);
    verify::Verified::operator_supplied(Provider::None, &NO_HEADERS, body).payload()
}

/// What the rule and template targets compile against.
struct RuleWorld {
    sources: Vec<(String, String)>,
    plugins: Vec<String>,
    input_schemas: BTreeMap<String, std::sync::Arc<crate::schema::InputSchema>>,
    secrets: BTreeMap<String, String>,
}

impl RuleWorld {
    fn new() -> RuleWorld {
        RuleWorld {
            sources: vec![
                ("github".into(), "github".into()),
                ("stripe".into(), "stripe".into()),
                ("slack".into(), "slack".into()),
            ],
            plugins: vec!["notify".into(), "call-api".into(), "write-db".into()],
            input_schemas: BTreeMap::new(),
            secrets: BTreeMap::from([("TOKEN".to_string(), RULE_SECRET.to_string())]),
        }
    }

    fn context(&self) -> CompileContext<'_> {
        CompileContext {
            sources: &self.sources,
            plugins: &self.plugins,
            input_schemas: &self.input_schemas,
            secrets: &self.secrets,
        }
    }
}

/// An event of `payload` as the rule engine sees it, passed to `f`.
fn with_event<R>(payload: &Value, f: impl FnOnce(&EventView<'_>) -> R) -> R {
    let headers = BTreeMap::from([
        ("x-github-event".to_string(), "push".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ]);
    let event_type = payload
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("push");
    f(&EventView {
        id: "evt_fuzz",
        source: "github",
        provider: "github",
        event_type,
        received_at: "2023-11-14T22:13:20Z",
        headers: &headers,
        payload: &std::sync::Arc::new(payload.clone()),
    })
}

/// The input as JSON, or as a JSON string of its text when it is not JSON.
fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(text(bytes)))
}

/// A rule file of arbitrary text: compiled, and when it compiles, evaluated against an event.
pub fn rule_file(data: &[u8]) {
    let world = RuleWorld::new();
    let files = [(PathBuf::from("rules/fuzz.yaml"), text(data))];
    let Ok(rules) = compile_files(&files, &world.context()) else {
        return;
    };
    let payload = json!({"ref": "refs/heads/main", "type": "push", "a": [1, "x", null]});
    with_event(&payload, |ev| rules.evaluate_all(ev));
}

/// A config file of arbitrary text, loaded from a folder that does not exist, with no
/// environment variables.
pub fn config_file(data: &[u8]) {
    let path = Path::new("/nonexistent/hookwise-fuzz/hookwise.yaml");
    let _ = crate::config::load_str(path, &text(data), &|_| None);
}

/// Rules that use every operator, combinator, selector, `if` and templates with a secret.
const FIXED_RULES: &str = r#"
rules:
  - id: operators
    source: github
    events: ["*"]
    when:
      any:
        - { path: $.ref, equals: refs/heads/main }
        - { path: $.a, not_equals: 1 }
        - { path: $.name, iequals: ALICE }
        - { path: "$.commits[*].id", in: [1, "2", null, true] }
        - { path: $.x, not_in: [1.5, "y"] }
        - { path: "$..message", contains: deploy }
        - { path: $.list, not_contains: 3 }
        - { path: "$.a[0]", icontains: ab }
        - { path: "$.a[-1]", starts_with: v }
        - { path: $.b.c, ends_with: .md }
        - { path: "$['weird key'][*]", matches: "^[a-z]+\\d*$" }
        - { path: "$.a[?@.n > 2].n", exists: true }
        - { path: $.e, not_empty: true }
        - { path: $.n, gt: 10 }
        - { path: $.n, gte: "2023-01-01T00:00:00Z" }
        - { path: $.n, lt: -1e300 }
        - { path: "$.*", lte: "b" }
        - { header: x-github-event, equals: push }
        - { event: type, starts_with: pu }
        - not: { all: [ { path: $.z, exists: false }, { event: id, equals: x } ] }
    if: "payload.n is number and payload.n > 0 or payload.ref is defined"
    actions:
      - plugin: notify
        with:
          auth: "Bearer ${secret:TOKEN}"
          text: "{{ payload.ref }} by {{ payload.name | default('nobody') }}"
          list: "{{ payload.a }}"
          count: "{{ payload.a | length if payload.a is iterable else 0 }}"
          header: "{{ headers['x-github-event'] }}"
          event: { id: "{{ event.id }}", type: "{{ event.type }}" }
        order_key: "{{ payload.ref }}"
  - id: plain
    source: github
    events: [push]
    when: { path: "$.commits[*].message", contains: "[deploy]" }
    actions:
      - plugin: call-api
        with: { body: "{{ payload | tojson }}", first: "{{ payload.commits[0].id }}" }
"#;

fn fixed_rules() -> Option<&'static RuleSet> {
    static RULES: std::sync::OnceLock<Option<RuleSet>> = std::sync::OnceLock::new();
    RULES
        .get_or_init(|| {
            let world = RuleWorld::new();
            let files = [(PathBuf::from("fuzz.yaml"), FIXED_RULES.to_string())];
            compile_files(&files, &world.context()).ok()
        })
        .as_ref()
}

/// The fixed rules above against an arbitrary JSON payload: matching and rendering never
/// panic, and the redacted inputs show the secret only when the payload itself holds it.
pub fn conditions(data: &[u8]) {
    let Some(rules) = fixed_rules() else {
        panic!("the fixed rules do not compile");
    };
    let payload = json_of(data);
    let evaluation = with_event(&payload, |ev| rules.evaluate_all(ev));
    if payload.to_string().contains(RULE_SECRET) {
        return;
    }
    for planned in evaluation.matched.iter().flat_map(|m| &m.actions) {
        assert!(
            !planned.input_redacted.to_string().contains(RULE_SECRET),
            "a redacted input shows the secret"
        );
    }
}

/// A JSONPath (field 0) over a JSON payload (field 1), through a rule condition: the values the
/// condition selects are those serde_json_path's own query selects.
pub fn json_path(data: &[u8]) {
    let parts = fields(data);
    let path = text(parts.first().copied().unwrap_or_default());
    let payload = json_of(parts.get(1).copied().unwrap_or_default());
    let Ok(cfg) = serde_json::from_value(json!({"path": path, "exists": true})) else {
        return;
    };
    let mut problems = Vec::new();
    let Some(Condition::Leaf(leaf)) = condition::compile(&cfg, "", &mut problems) else {
        return;
    };
    let Ok(reference) = serde_json_path::JsonPath::parse(&path) else {
        panic!("the condition compiled a path serde_json_path refuses: {path:?}");
    };
    let expected = reference.query(&payload).all().len();
    let trace = with_event(&payload, |ev| Condition::Leaf(leaf).evaluate(ev, "when"));
    let ConditionTrace::Leaf(trace) = trace else {
        panic!("a leaf condition traced as a combinator");
    };
    assert_eq!(trace.selected_count, expected, "path {path:?}");
    assert_eq!(trace.result, expected > 0, "path {path:?}");
}

/// A template (field 0) compiled as an action input and as an `if`, rendered against a JSON
/// payload (field 1).
pub fn template(data: &[u8]) {
    let parts = fields(data);
    let source = text(parts.first().copied().unwrap_or_default());
    let payload = json_of(parts.get(1).copied().unwrap_or_default());
    let world = RuleWorld::new();
    let mut templates = Templates::new(&world.secrets);
    let compiled = templates.compile_string(&source, &world.secrets, true);
    let condition = templates.compile_if(&source);
    with_event(&payload, |ev| {
        let ctx = RenderContext::new(ev);
        if let Ok(node) = &compiled {
            let _ = templates.render_tree(node, &ctx, "with");
        }
        if let Ok(expr) = &condition {
            let _ = templates.eval_if(expr, &ctx);
        }
    });
}

/// The bytes, written to a capped pipe as a plugin writes to its stdout or stderr.
fn pipe_with(bytes: &[u8], cap: usize) -> CappedPipe {
    let mut pipe = CappedPipe::new(cap);
    let mut cx = Context::from_waker(Waker::noop());
    // A capped pipe takes every write at once: it is never pending and never fails.
    let _: Poll<_> = Pin::new(&mut pipe).poll_write(&mut cx, bytes);
    pipe
}

/// A command plugin that exited 0 with the input on stdout: its output is refused when over the
/// cap, otherwise taken only when it is JSON.
pub fn command_stdout(data: &[u8]) {
    let stdout = pipe_with(data, MAX_OUTPUT.saturating_add(1));
    let (bytes, truncated) = stdout.contents();
    if truncated {
        return;
    }
    let out_text = String::from_utf8_lossy(&bytes).trim().to_string();
    if out_text.is_empty() {
        return;
    }
    if let Ok(output) = check_output(out_text, MAX_OUTPUT) {
        assert!(output.len() <= MAX_OUTPUT);
        assert!(
            serde_json::from_str::<Value>(&output).is_ok(),
            "took {output:?}"
        );
    }
}

/// A command plugin that failed: field 0 is its stdout (a `{"error":{...}}` outcome or
/// anything else), field 1 its stderr. The error is a plugin error with a bounded message,
/// and a trap's message grows by at most the bounded stderr excerpt.
pub fn command_outcome(data: &[u8]) {
    /// Longest trap message: `trap (` + the 512-byte excerpt `with_panic_message` keeps + `)`.
    const MAX_TRAP: usize = "trap".len() + 2 + 512 + 1;
    let parts = fields(data);
    let stdout = String::from_utf8_lossy(parts.first().copied().unwrap_or_default())
        .trim()
        .to_string();
    let stderr = pipe_with(parts.get(1).copied().unwrap_or_default(), MAX_OUTPUT);
    let code = i32::from(data.first().copied().unwrap_or(1)).max(1);
    match exit_error(code, &stdout, &stderr, MAX_OUTPUT) {
        CallError::Plugin { message, .. } => assert!(message.len() <= MAX_OUTPUT),
        other => panic!("a failed exit became {other:?}"),
    }
    match with_panic_message(Err(CallError::Trap("trap".into())), &stderr) {
        Err(CallError::Trap(message)) => assert!(message.len() <= MAX_TRAP, "{message}"),
        other => panic!("a trap became {other:?}"),
    }
}

/// A fuzz target: arbitrary bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay test and the fuzz/ targets' names.
pub const TARGETS: &[(&str, Target)] = &[
    ("verify_request", verify_request),
    ("signature_headers", signature_headers),
    ("sign_verify", sign_verify),
    ("hmac_scheme_content", hmac_scheme_content),
    ("check_keys", check_keys),
    ("payload_read", payload_read),
    ("form_body", form_body),
    ("identify", identify),
    ("rule_file", rule_file),
    ("config_file", config_file),
    ("conditions", conditions),
    ("json_path", json_path),
    ("template", template),
    ("command_stdout", command_stdout),
    ("command_outcome", command_outcome),
];
