//! Shared test harness (tables of cases) and the round trip of every provider.

use std::time::{Duration, SystemTime};

use super::*;

/// A fixed clock: `secs` after the Unix epoch.
pub(super) fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// What a case should produce.
#[derive(Debug, Clone)]
pub(super) enum Expect {
    /// Verified, with this key index.
    Ok(usize),
    NoMatch,
    Missing(&'static str),
    Malformed,
    /// A malformed body.
    Body,
    TooOld,
    InFuture,
    Other(VerifyError),
}

/// One request to verify, built step by step.
#[derive(Debug, Clone)]
pub(super) struct Case {
    name: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    method: String,
    url: String,
    now: SystemTime,
    tolerance: Option<u64>,
    expect: Option<Expect>,
}

impl Case {
    pub(super) fn new(name: &str, body: &[u8]) -> Self {
        Case {
            name: name.to_owned(),
            body: body.to_vec(),
            headers: Vec::new(),
            method: "POST".into(),
            url: "https://example.com/hooks/test".into(),
            now: at(1_700_000_000),
            tolerance: None,
            expect: None,
        }
    }

    /// Sets a header, replacing one of the same name.
    pub(super) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(super) fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    pub(super) fn url(mut self, url: &str) -> Self {
        self.url = url.to_owned();
        self
    }

    pub(super) fn method(mut self, method: &str) -> Self {
        self.method = method.to_owned();
        self
    }

    pub(super) fn now(mut self, now: SystemTime) -> Self {
        self.now = now;
        self
    }

    /// Overrides the tolerance (seconds; 0 turns the check off).
    pub(super) fn tolerance(mut self, secs: u64) -> Self {
        self.tolerance = Some(secs);
        self
    }

    pub(super) fn expect(mut self, expect: Expect) -> Self {
        self.expect = Some(expect);
        self
    }
}

pub(super) fn header_map(pairs: &[(String, String)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in pairs {
        let name = http::HeaderName::from_bytes(k.as_bytes());
        let value = http::HeaderValue::from_str(v);
        match (name, value) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => panic!("bad test header {k}: {v}"),
        }
    }
    map
}

pub(super) fn run_cases(provider: Provider, secrets: &[&str], cases: &[Case]) {
    run_cases_with(
        provider,
        &Keys::secrets(secrets.iter().copied()),
        &VerifyOptions::default(),
        cases,
    );
}

pub(super) fn run_cases_with(
    provider: Provider,
    keys: &Keys,
    opts: &VerifyOptions,
    cases: &[Case],
) {
    for case in cases {
        let headers = header_map(&case.headers);
        let req = Request {
            method: &case.method,
            url: &case.url,
            headers: &headers,
            body: &case.body,
        };
        let mut opts = opts.clone();
        if let Some(secs) = case.tolerance {
            opts.tolerance = Some(Duration::from_secs(secs));
        }
        let got = verify(provider, keys, &opts, &req, case.now);
        let ok = match (&case.expect, &got) {
            (Some(Expect::Ok(i)), Ok(v)) => v.matched_key_index() == *i && v.provider() == provider,
            (Some(Expect::NoMatch), Err(VerifyError::NoSignatureMatched)) => true,
            (Some(Expect::Missing(name)), Err(VerifyError::MissingHeader(got))) => {
                got.eq_ignore_ascii_case(name)
            }
            (Some(Expect::Malformed), Err(VerifyError::MalformedHeader { .. })) => true,
            (Some(Expect::Body), Err(VerifyError::MalformedBody(_))) => true,
            (Some(Expect::TooOld), Err(VerifyError::TimestampTooOld { .. })) => true,
            (Some(Expect::InFuture), Err(VerifyError::TimestampInFuture { .. })) => true,
            (Some(Expect::Other(want)), Err(got)) => want == got,
            _ => false,
        };
        assert!(
            ok,
            "{provider} / {}: expected {:?}, got {got:?}",
            case.name, case.expect
        );
    }
}

const HMAC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==";
/// Discord: a hex Ed25519 seed (RFC 8032 TEST 1).
const DISCORD_PRIVATE: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// SendGrid: base64 of a raw P-256 scalar.
const SENDGRID_PRIVATE: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn generic_scheme() -> HmacScheme {
    HmacScheme {
        header: "X-Signature".into(),
        algorithm: HmacAlgorithm::Sha256,
        encoding: SignatureEncoding::Hex,
        prefix: Some("sha256=".into()),
        timestamp_header: Some("X-Timestamp".into()),
        signed_content: Some("{timestamp}.{body}".into()),
    }
}

/// The signing secret and the verification keys of one provider.
fn key_pair(provider: Provider, secret: &str) -> (String, Keys) {
    match provider {
        Provider::Discord | Provider::Sendgrid => {
            let private = if provider == Provider::Discord {
                DISCORD_PRIVATE
            } else {
                SENDGRID_PRIVATE
            };
            let public =
                public_key_for(provider, private).unwrap_or_else(|e| panic!("{provider}: {e}"));
            (private.to_owned(), Keys::public_keys([public]))
        }
        _ => (secret.to_owned(), Keys::secrets([secret])),
    }
}

fn verify_signed(
    provider: Provider,
    keys: &Keys,
    opts: &VerifyOptions,
    signed: &SignedRequest,
    body: &[u8],
    now: SystemTime,
) -> Result<Checked, VerifyError> {
    let headers = header_map(&signed.headers);
    let req = Request {
        method: "POST",
        url: &signed.url,
        headers: &headers,
        body,
    };
    verify(provider, keys, opts, &req, now).map(|v| Checked {
        provider: v.provider(),
        timestamp: v.timestamp(),
        key_index: v.matched_key_index(),
    })
}

/// What [`verify`] found, apart from the request it borrows.
#[derive(Debug, PartialEq)]
struct Checked {
    provider: Provider,
    timestamp: Option<i64>,
    key_index: usize,
}

impl Checked {
    fn provider(&self) -> Provider {
        self.provider
    }

    fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    fn matched_key_index(&self) -> usize {
        self.key_index
    }
}

const ROUND_TRIP_BODY: &[u8] = br#"{"id":"evt_1","type":"test.event","action":"opened"}"#;
const ROUND_TRIP_URL: &str = "https://hooks.example.com/hooks/src?x=1";

fn sign_round_trip(
    provider: Provider,
    secret: &str,
    opts: &VerifyOptions,
    now: SystemTime,
) -> SignedRequest {
    sign_request(
        provider,
        secret,
        opts,
        "POST",
        ROUND_TRIP_URL,
        ROUND_TRIP_BODY,
        now,
    )
    .unwrap_or_else(|e| panic!("{provider}: sign failed: {e}"))
}

/// A request to every provider, signed by it: (now, options, provider, keys, request).
fn signed_by_every_provider() -> (
    SystemTime,
    VerifyOptions,
    Vec<(Provider, Keys, SignedRequest)>,
) {
    let now = at(1_700_000_000);
    let opts = VerifyOptions {
        tolerance: None,
        hmac: Some(generic_scheme()),
    };
    let signed = Provider::ALL
        .iter()
        .map(|&provider| {
            let (secret, keys) = key_pair(provider, HMAC_SECRET);
            let signed = sign_round_trip(provider, &secret, &opts, now);
            (provider, keys, signed)
        })
        .collect();
    (now, opts, signed)
}

/// Ingress builds the public URL only for providers that say they sign it: every other
/// provider must verify with no URL at all, and every one that says so must fail without it.
#[test]
fn only_the_providers_that_sign_the_url_need_it() {
    let (now, opts, signed) = signed_by_every_provider();
    for (provider, keys, mut signed) in signed {
        signed.url = String::new();
        let without_url = verify_signed(provider, &keys, &opts, &signed, &signed.body, now);
        assert_eq!(
            without_url.is_err(),
            provider.signs_url(),
            "{provider}: {without_url:?}"
        );
    }
}

#[test]
fn every_provider_round_trips_and_rejects_tampering() {
    let (now, opts, signed) = signed_by_every_provider();
    for (provider, keys, signed) in signed {
        let verified = verify_signed(provider, &keys, &opts, &signed, &signed.body, now)
            .unwrap_or_else(|e| panic!("{provider}: round trip failed: {e}"));
        assert_eq!(verified.provider(), provider);
        assert_eq!(verified.matched_key_index(), 0);
        if let Some(ts) = verified.timestamp() {
            assert_eq!(ts, 1_700_000_000, "{provider}");
        }

        // The request a minute later is still fine for every provider but Paddle (5 s).
        let later = verify_signed(
            provider,
            &keys,
            &opts,
            &signed,
            &signed.body,
            at(1_700_000_060),
        );
        assert_eq!(
            later.is_ok(),
            provider != Provider::Paddle,
            "{provider}: {later:?}"
        );

        // GitLab sends a token, not a signature; Mailgun signs only its timestamp and token;
        // `none` checks nothing. For these the rest of the body is not covered.
        let covers_body = !matches!(
            provider,
            Provider::Gitlab | Provider::Mailgun | Provider::None
        );
        let tampered = String::from_utf8_lossy(&signed.body)
            .replace("evt_1", "evt_2")
            .into_bytes();
        let got = verify_signed(provider, &keys, &opts, &signed, &tampered, now);
        assert_eq!(
            got.is_err(),
            covers_body,
            "{provider}: tampered body gave {got:?}"
        );

        // A request signed with another secret is refused, and accepted once that secret is
        // added as the second key of a rotation.
        if provider.uses_public_key() || provider == Provider::None {
            continue;
        }
        let other = sign_round_trip(provider, OTHER_SECRET, &opts, now);
        let got = verify_signed(provider, &keys, &opts, &other, &other.body, now);
        assert!(got.is_err(), "{provider}: wrong secret gave {got:?}");
        let rotated = Keys::secrets([HMAC_SECRET, OTHER_SECRET]);
        let got = verify_signed(provider, &rotated, &opts, &other, &other.body, now)
            .map(|v| v.matched_key_index());
        assert_eq!(got, Ok(1), "{provider}: rotation");
    }
}

#[test]
fn sign_refuses_providers_that_rewrite_the_request() {
    let body = br#"{"id":"evt_1"}"#;
    let opts = VerifyOptions::default();
    let url = "https://example.com/h";
    for provider in [Provider::Mailgun, Provider::Linear, Provider::Twilio] {
        assert_eq!(
            sign(provider, "s", &opts, "POST", url, body, at(1)),
            Err(SignError::RewritesRequest(provider))
        );
    }
    assert!(sign(Provider::Twilio, "s", &opts, "POST", url, b"A=1", at(1)).is_ok());
    assert_eq!(
        sign(Provider::Hmac, "s", &opts, "POST", url, body, at(1)),
        Err(SignError::MissingHmacScheme)
    );
}

#[test]
fn event_type_goes_into_the_provider_header() {
    let signed = sign_event(
        Provider::Github,
        "s",
        &VerifyOptions::default(),
        "POST",
        "",
        br#"{"action":"opened"}"#,
        at(1),
        Some("pull_request"),
    )
    .map(|s| s.headers)
    .unwrap_or_default();
    let headers = header_map(&signed);
    let id = identify(
        Provider::Github,
        &headers,
        &Payload::read(br#"{"action":"opened"}"#).expect("JSON"),
    );
    assert_eq!(id.event_type.as_deref(), Some("pull_request.opened"));
    assert!(id.delivery_id.is_some_and(|d| d.len() == 36));
}

#[test]
fn provider_ids_round_trip() {
    assert_eq!(Provider::ALL.len(), 28);
    for &p in Provider::ALL {
        assert_eq!(Provider::from_id(p.id()), Some(p));
        assert_eq!(p.id().parse::<Provider>(), Ok(p));
        assert_eq!(p.to_string(), p.id());
    }
    let err = "gihtub"
        .parse::<Provider>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("gihtub") && err.contains("standard-webhooks") && err.contains("none"),
        "{err}"
    );
    assert_eq!(Provider::Github.default_tolerance(), None);
    assert_eq!(
        Provider::Stripe.default_tolerance(),
        Some(Duration::from_secs(300))
    );
    assert!(Provider::Twilio.signs_url() && !Provider::Github.signs_url());
    assert!(Provider::Sendgrid.uses_public_key() && !Provider::Stripe.uses_public_key());
}

#[test]
fn secrets_never_show_in_debug() {
    let keys = Keys::secrets(["super-secret-value"]);
    let text = format!("{keys:?}");
    assert!(
        !text.contains("super-secret-value") && text.contains("***"),
        "{text}"
    );
}

#[test]
fn error_texts_read_well() {
    let cases = [
        (
            VerifyError::MissingHeader("X-Hub-Signature-256".into()),
            "missing header X-Hub-Signature-256",
        ),
        (
            VerifyError::TimestampTooOld {
                age_secs: 301,
                tolerance_secs: 300,
            },
            "timestamp is 301s old, more than the 300s tolerance",
        ),
        (
            VerifyError::NoSignatureMatched,
            "no signature matched any configured key",
        ),
    ];
    for (err, text) in cases {
        assert_eq!(err.to_string(), text);
    }
}

#[test]
fn no_secret_and_none_provider() {
    let headers = http::HeaderMap::new();
    let req = Request {
        method: "POST",
        url: "",
        headers: &headers,
        body: b"",
    };
    let opts = VerifyOptions::default();
    let got = verify(Provider::Stripe, &Keys::default(), &opts, &req, at(1));
    assert_eq!(
        got,
        Err(VerifyError::MissingHeader("Stripe-Signature".into()))
    );
    let mut headers = http::HeaderMap::new();
    headers.insert("x-gitlab-token", http::HeaderValue::from_static("t"));
    let req = Request {
        headers: &headers,
        ..req
    };
    assert_eq!(
        verify(Provider::Gitlab, &Keys::default(), &opts, &req, at(1)),
        Err(VerifyError::NoSecretConfigured)
    );
    assert!(verify(Provider::None, &Keys::default(), &opts, &req, at(1)).is_ok());
}

/// No input makes verification panic or pass: every provider gets hostile headers and bodies.
#[test]
fn hostile_input_never_panics() {
    let names = [
        "X-Hub-Signature-256",
        "X-Hub-Signature",
        "Stripe-Signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "X-Slack-Signature",
        "X-Slack-Request-Timestamp",
        "X-Shopify-Hmac-Sha256",
        "X-Twilio-Signature",
        "X-Gitlab-Token",
        "Paddle-Signature",
        "Linear-Signature",
        "x-square-hmacsha256-signature",
        "X-Twilio-Email-Event-Webhook-Signature",
        "X-Twilio-Email-Event-Webhook-Timestamp",
        "X-PagerDuty-Signature",
        "X-HubSpot-Signature",
        "X-HubSpot-Signature-Version",
        "X-HubSpot-Signature-v3",
        "X-HubSpot-Request-Timestamp",
        "x-zm-signature",
        "x-zm-request-timestamp",
        "X-Signature-Ed25519",
        "X-Signature-Timestamp",
        "Twitch-Eventsub-Message-Id",
        "Twitch-Eventsub-Message-Timestamp",
        "Twitch-Eventsub-Message-Signature",
        "Typeform-Signature",
        "Calendly-Webhook-Signature",
        "X-DocuSign-Signature-1",
        "X-Signature",
        "X-Timestamp",
    ];
    let values: &[&[u8]] = &[
        b"",
        b"=",
        b",",
        b";",
        b"t=",
        b"v1,",
        b"sha256=",
        b"v0=",
        b"t=99999999999999999999,v1=00",
        b"ts=-9223372036854775808;h1=00",
        b"v1=\xff\xfe",
        b"\x80\x81",
        b"9223372036854775807",
        b"-9223372036854775808",
        b"2023-02-30T25:61:61Z",
        b"v1a,AAAA v1,AAAA",
        b"sha512=00",
    ];
    let bodies: &[&[u8]] = &[
        b"",
        b"\xff",
        b"[]",
        b"{}",
        br#"{"signature":{"timestamp":1e999}}"#,
        b"a=%ZZ&b",
    ];
    let keys = Keys {
        secrets: vec![Secret::new("k"), Secret::new("whsec_")],
        public_keys: vec!["".into(), "whpk_".into(), "zz".into()],
    };
    let opts = VerifyOptions {
        tolerance: None,
        hmac: Some(generic_scheme()),
    };
    for &provider in Provider::ALL {
        for value in values {
            let Ok(value) = http::HeaderValue::from_bytes(value) else {
                continue;
            };
            let mut headers = http::HeaderMap::new();
            for name in names {
                if let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) {
                    headers.insert(name, value.clone());
                }
            }
            for body in bodies {
                for url in ["", "https://[", "https://h:99999/p?bodySHA256=zz", "ü"] {
                    let req = Request {
                        method: "POST",
                        url,
                        headers: &headers,
                        body,
                    };
                    // None of these is a valid signature: every provider refuses every one
                    // (`none` checks nothing and accepts all), without panicking.
                    for now in [at(0), SystemTime::UNIX_EPOCH - Duration::from_secs(5)] {
                        let result = verify(provider, &keys, &opts, &req, now);
                        assert_eq!(
                            result.is_ok(),
                            provider == Provider::None,
                            "{provider:?} {value:?} {body:?} {url:?}: {result:?}"
                        );
                    }
                }
            }
        }
    }
}

/// Every question about public keys gives the same answer for a provider, from its row of the
/// table: (the config check accepts a `whpk_` key, one can be derived, a `v1a` signature
/// verifies with it).
fn public_key_answers(provider: Provider) -> (bool, bool, bool) {
    let private = format!("whsk_{}", common::b64_encode(&[7u8; 32]));
    let public = standard_webhooks_public_key(&private);
    let accepted_by_config = check_keys(provider, &Keys::public_keys([public.clone()])).is_empty();
    let derivable = public_key_for(provider, &private).is_ok();
    // A `v1a` signature (webhook-* headers, which the Svix family reads too).
    let now = at(1_700_000_000);
    let opts = VerifyOptions::default();
    let signed = sign_request(
        Provider::StandardWebhooks,
        &private,
        &opts,
        "POST",
        "",
        b"{}",
        now,
    )
    .expect("a v1a signature");
    let headers = header_map(&signed.headers);
    let req = Request {
        method: "POST",
        url: "",
        headers: &headers,
        body: b"{}",
    };
    let verifies = verify(provider, &Keys::public_keys([public]), &opts, &req, now).is_ok();
    (accepted_by_config, derivable, verifies)
}

fn standard_webhooks_public_key(private: &str) -> String {
    public_key_for(Provider::StandardWebhooks, private).expect("a whsk_ key")
}

/// The Standard Webhooks spec signs `v1` with a `whsec_` secret or `v1a` with an Ed25519 key
/// pair, the public half serialized as `whpk_` + base64 (standard-webhooks/standard-webhooks,
/// `spec/standard-webhooks.md`, "Signature scheme", the symmetric/asymmetric table).
#[test]
fn standard_webhooks_verifies_with_secrets_or_public_keys() {
    assert_eq!(
        Provider::StandardWebhooks.keys(),
        KeyKind::SecretsOrPublicKeys
    );
    assert_eq!(
        public_key_answers(Provider::StandardWebhooks),
        (true, true, true)
    );
    assert!(check_keys(Provider::StandardWebhooks, &Keys::secrets([HMAC_SECRET])).is_empty());
}

/// Svix shows a `whsec_` secret, and its verification library checks `v1` signatures only:
/// entries of any other version, `v1a` included, are skipped (svix/svix-webhooks,
/// `javascript/src/webhook.ts`, `Webhook.verify`). Clerk and Resend deliver through Svix and
/// point to that library. So these verify with secrets, never public keys.
#[test]
fn svix_clerk_and_resend_verify_with_secrets_only() {
    for provider in [Provider::Svix, Provider::Clerk, Provider::Resend] {
        assert_eq!(provider.keys(), KeyKind::Secrets, "{provider}");
        assert_eq!(
            public_key_answers(provider),
            (false, false, false),
            "{provider}"
        );
        assert!(check_keys(provider, &Keys::secrets([HMAC_SECRET])).is_empty());
        let private = format!("whsk_{}", common::b64_encode(&[7u8; 32]));
        let signed = sign_request(
            provider,
            &private,
            &VerifyOptions::default(),
            "POST",
            "",
            b"{}",
            at(1),
        );
        assert!(signed.is_err(), "{provider} signed with a key pair");
    }
}

/// Discord and SendGrid sign with a private key; their dashboards show the public key.
#[test]
fn discord_and_sendgrid_verify_with_public_keys_only() {
    for provider in [Provider::Discord, Provider::Sendgrid] {
        assert_eq!(provider.keys(), KeyKind::PublicKeys, "{provider}");
        assert!(provider.uses_public_key());
        let problems = check_keys(provider, &Keys::secrets(["a-shared-secret"]));
        assert_eq!(problems.len(), 1, "{provider}: {problems:?}");
    }
    for provider in Provider::ALL {
        let public_only = matches!(provider, Provider::Discord | Provider::Sendgrid);
        assert_eq!(provider.uses_public_key(), public_only, "{provider}");
    }
}

/// One row per provider, looked up by variant: every id maps back to its provider.
#[test]
fn every_provider_has_its_own_row() {
    for provider in Provider::ALL {
        assert_eq!(Provider::from_id(provider.id()), Some(*provider));
        assert_eq!(provider.descriptor().provider, *provider);
    }
}
