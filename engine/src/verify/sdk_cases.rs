//! Hostile-sender cases, one table per scheme that reads a list of signatures: a malformed
//! entry beside a valid signature is passed over, as the provider's own SDK does, and a header
//! whose entries are all malformed is refused with a reason. Cases taken from a provider's SDK
//! test suite name it (repository and path).

use super::common::{Alg, Enc, b64_encode, hmac};
use super::tests::{Case, Expect, at, run_cases, run_cases_with};
use super::{HmacScheme, Keys, Provider, VerifyError, VerifyOptions};

fn malformed(name: &str, reason: &str) -> Expect {
    Expect::Other(VerifyError::MalformedHeader {
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}

fn hex_hmac(key: &str, parts: &[&[u8]]) -> String {
    hex::encode(hmac(Alg::Sha256, key.as_bytes(), parts))
}

/// stripe/stripe-python tests/test_webhook.py: `DUMMY_WEBHOOK_PAYLOAD` and `_SECRET`, signed
/// the way its `generate_header` does.
const STRIPE_PAYLOAD: &str = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\",\n  \"data\": { \"object\": { \"id\": \"rdr_123\", \"object\": \"terminal.reader\" } }\n}";
const STRIPE_SECRET: &str = "whsec_test_secret";

#[test]
fn stripe_and_calendly_pass_over_malformed_v1_entries() {
    let ts = 1_700_000_000;
    let body = STRIPE_PAYLOAD.as_bytes();
    let valid = format!(
        "t={ts},v1={}",
        hex_hmac(STRIPE_SECRET, &[b"1700000000.", body])
    );
    let case = |name: &str, value: &str| {
        Case::new(name, body)
            .now(at(ts))
            .header("Stripe-Signature", value)
    };
    run_cases(
        Provider::Stripe,
        &[STRIPE_SECRET],
        &[
            // stripe-python `test_header_contains_valid_signature`; the issue's first case.
            case(
                "valid, then v1=bad_signature",
                &format!("{valid},v1=bad_signature"),
            )
            .expect(Expect::Ok(0)),
            case(
                "v1=bad_signature, then valid",
                &format!(
                    "t={ts},v1=bad_signature,{}",
                    valid.split_once(',').map_or("", |(_, v)| v)
                ),
            )
            .expect(Expect::Ok(0)),
            case("empty v1 beside valid", &format!("{valid},v1=")).expect(Expect::Ok(0)),
            // stripe-python `test_raise_on_no_valid_signatures_for_payload`: refused.
            case("only v1=bad_signature", &format!("t={ts},v1=bad_signature"))
                .expect(malformed("Stripe-Signature", "signature is not hex")),
            // stripe-python `test_raise_on_no_signatures_with_expected_scheme`.
            case("only v0", &format!("t={ts},v0=abc"))
                .expect(malformed("Stripe-Signature", "no `v1=` signature")),
            case(
                "malformed beside a wrong one",
                &format!("t={ts},v1=zz,v1={}", "0".repeat(64)),
            )
            .expect(Expect::NoMatch),
        ],
    );
    let calendly = format!("t={ts},v1={}", hex_hmac("cal", &[b"1700000000.", body]));
    run_cases(
        Provider::Calendly,
        &["cal"],
        &[Case::new("malformed beside valid", body)
            .now(at(ts))
            .header(
                "Calendly-Webhook-Signature",
                &format!("{calendly},v1=not-hex"),
            )
            .expect(Expect::Ok(0))],
    );
}

#[test]
fn paddle_passes_over_malformed_h1_entries() {
    // PaddleHQ/paddle-python-sdk tests/Unit/Notification/test_Verifier.py
    // `test_validate_paddle_signature_header_integrity`: `h1=dummy` before the valid `h1`,
    // three secrets of which the third "should pass"; the issue's second case.
    run_cases_with(
        Provider::Paddle,
        &Keys::secrets([
            "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_TjIG2BXbm83HPXqNfziwe506sBEdqL/4",
            "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_vB/yIOnTOCWIvpBadM5jzBZPHc7OmdSo",
            "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh",
        ]),
        &VerifyOptions::default(),
        &[Case::new("python sdk: h1=dummy;h1=<valid>", b"hello-world")
            .tolerance(0)
            .header(
                "Paddle-Signature",
                "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02",
            )
            .expect(Expect::Ok(2))],
    );
    // PaddleHQ/paddle-node-sdk src/__tests__/notifications/webhooks-validator.node.test.ts,
    // at its clock (2023-11-01T00:00:00Z, five seconds of tolerance).
    let now = at(1_698_796_800);
    let node = |name: &str, body: &'static [u8], header: &str| {
        Case::new(name, body)
            .now(now)
            .header("Paddle-Signature", header)
    };
    run_cases(
        Provider::Paddle,
        &["VALID_SECRET"],
        &[
            node(
                "node sdk: valid signature",
                br#"{"data": ["1", "2"]}"#,
                "ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9",
            )
            .expect(Expect::Ok(0)),
            node(
                "node sdk: multiple hashes, h2=RANDOM_HASH",
                br#"{"data": "value"}"#,
                "ts=1698796800;h1=28981e941fae76e53db32f3d2a83cb69db41476595e84e1970a1b5d98f62b261;h1=28981e941fae76e53db32f3d2a83cb69db41476595e84e1970a1b5d98f62b261;h2=RANDOM_HASH",
            )
            .expect(Expect::Ok(0)),
            node(
                "node sdk: invalid data, more spaces",
                br#"{ "data": [ "1", "2" ]}"#,
                "ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9",
            )
            .expect(Expect::NoMatch),
            node(
                "node sdk: invalid signature",
                br#"{"data": ["1", "2"]}"#,
                "ts=1234;h1=invalid_signature",
            )
            .expect(malformed("Paddle-Signature", "signature is not hex")),
            node(
                "node sdk: missing h1",
                br#"{"data": ["1", "2"]}"#,
                "ts=1234;h2=invalid_header",
            )
            .expect(malformed("Paddle-Signature", "no `h1=` signature")),
            node(
                "node sdk: missing ts",
                br#"{"data": ["1", "2"]}"#,
                "h1=invalid_header",
            )
            .expect(malformed("Paddle-Signature", "no `ts=` timestamp")),
        ],
    );
}

/// The Standard Webhooks reference vector (standard-webhooks/standard-webhooks
/// libraries/javascript/src/webhook.test.ts `sign function works`).
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: &str = "1614265330";
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
/// A well-formed `v1` signature that matches nothing, from the same test file.
const SW_WRONG: &str = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

#[test]
fn standard_webhooks_pass_over_malformed_entries() {
    let case = |name: &str, list: &str| {
        Case::new(name, SW_BODY)
            .now(at(1_614_265_330))
            .header("webhook-id", SW_ID)
            .header("webhook-timestamp", SW_TS)
            .header("webhook-signature", list)
    };
    for provider in [
        Provider::StandardWebhooks,
        Provider::Svix,
        Provider::Clerk,
        Provider::Resend,
    ] {
        run_cases(
            provider,
            &[SW_SECRET],
            &[
                // webhook.test.ts `multi sig payload is valid`.
                case(
                    "js: multi sig payload",
                    &format!("v1,{SW_WRONG} v2,{SW_WRONG} {SW_SIG} v1,{SW_WRONG}"),
                )
                .expect(Expect::Ok(0)),
                case("not base64, then valid", &format!("v1,@@@ {SW_SIG}")).expect(Expect::Ok(0)),
                case("valid, then empty v1", &format!("{SW_SIG} v1,")).expect(Expect::Ok(0)),
                case("bad v1a beside valid v1", &format!("v1a,%%% {SW_SIG}")).expect(Expect::Ok(0)),
                case("no comma, then valid", &format!("v1 {SW_SIG}")).expect(Expect::Ok(0)),
                // webhook.test.ts `partial signature throws error`: still refused.
                case("js: partial signature", "v1,g0hM9")
                    .expect(malformed("webhook-signature", "signature is not base64")),
                case("js: empty v1", "v1,")
                    .expect(malformed("webhook-signature", "signature is not base64")),
                // webhook.test.ts `invalid signature throws error` (its value has stray
                // trailing bits, so it is not strict base64 either).
                case("js: invalid signature", "v1,dawfeoifkpqwoekfpqoekf")
                    .expect(malformed("webhook-signature", "signature is not base64")),
                case("well-formed but wrong", &format!("v1,{SW_WRONG}")).expect(Expect::NoMatch),
                case("only other versions", &format!("v2,{SW_WRONG}")).expect(malformed(
                    "webhook-signature",
                    "no `v1,` or `v1a,` signature",
                )),
            ],
        );
    }
}

#[test]
fn pagerduty_passes_over_malformed_v1_entries() {
    // PagerDuty/go-pagerduty webhookv3/webhookv3_test.go `TestVerifySignature`: its secret,
    // body and valid signature. Its `extractPayloadSignatures` skips a `v1=` that is not hex
    // and reports a malformed header when none is left.
    const SECRET: &str = "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK";
    const BODY: &str = include_str!("testdata/pagerduty-go-webhookv3.json");
    const VALID: &str = "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd";
    const MISMATCH: &str = "v1=7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5";
    let case = |name: &str, value: &str| {
        Case::new(name, BODY.as_bytes()).header("X-PagerDuty-Signature", value)
    };
    run_cases(
        Provider::Pagerduty,
        &[SECRET],
        &[
            case("go sdk: valid", VALID).expect(Expect::Ok(0)),
            case("go sdk: mismatch", MISMATCH).expect(Expect::NoMatch),
            case("not hex, then valid", &format!("v1=nothex,{VALID}")).expect(Expect::Ok(0)),
            case("mismatch, then valid", &format!("{MISMATCH},{VALID}")).expect(Expect::Ok(0)),
            case("valid, then v2", &format!("{VALID},v2=abc")).expect(Expect::Ok(0)),
            case("only not hex", "v1=nothex")
                .expect(malformed("X-PagerDuty-Signature", "signature is not hex")),
            case("no v1", "v2=abc")
                .expect(malformed("X-PagerDuty-Signature", "no signature found")),
        ],
    );
}

#[test]
fn docusign_passes_over_a_malformed_numbered_header() {
    let body = b"<xml/>";
    let valid = b64_encode(&hmac(Alg::Sha256, b"key", &[body]));
    run_cases(
        Provider::Docusign,
        &["key"],
        &[
            Case::new("malformed -1, valid -2", body)
                .header("X-DocuSign-Signature-1", "%%%")
                .header("X-DocuSign-Signature-2", &valid)
                .expect(Expect::Ok(0)),
            Case::new("only malformed", body)
                .header("X-DocuSign-Signature-1", "%%%")
                .header("X-DocuSign-Signature-2", "!!!")
                .expect(malformed(
                    "X-DocuSign-Signature-1",
                    "signature is not base64",
                )),
        ],
    );
}

#[test]
fn generic_hmac_passes_over_malformed_entries() {
    let scheme: HmacScheme = match serde_json::from_value(serde_json::json!({
        "header": "X-Signature",
        "prefix": "v1=",
    })) {
        Ok(s) => s,
        Err(e) => panic!("test scheme: {e}"),
    };
    let opts = VerifyOptions {
        tolerance: None,
        hmac: Some(scheme),
    };
    let body = br#"{"a":1}"#;
    let valid = format!("v1={}", Enc::Hex.encode(&hmac(Alg::Sha256, b"k", &[body])));
    let case = |name: &str, value: &str| Case::new(name, body).header("X-Signature", value);
    run_cases_with(
        Provider::Hmac,
        &Keys::secrets(["k"]),
        &opts,
        &[
            case("not hex, then valid", &format!("v1=zz, {valid}")).expect(Expect::Ok(0)),
            case("valid, then not hex", &format!("{valid} v1=zz")).expect(Expect::Ok(0)),
            case("only not hex", "v1=zz").expect(malformed("X-Signature", "signature is not hex")),
        ],
    );
}

/// Providers that send exactly one signature have no list to pass over: a malformed value is
/// still refused (their SDKs compare it and find no match; hookwise says why).
#[test]
fn single_signature_headers_still_refuse_malformed_values() {
    let body = br#"{"a":1}"#;
    let table: &[(Provider, &str, &str)] = &[
        (Provider::Github, "X-Hub-Signature-256", "sha256=zz"),
        (Provider::Shopify, "X-Shopify-Hmac-Sha256", "%%%"),
        (Provider::Linear, "Linear-Signature", "nothex"),
        (Provider::Twilio, "X-Twilio-Signature", "%%%"),
    ];
    for (provider, name, value) in table {
        run_cases(
            *provider,
            &["secret-k"],
            &[Case::new(&format!("{provider} malformed"), body)
                .header(name, value)
                .expect(Expect::Malformed)],
        );
    }
}
