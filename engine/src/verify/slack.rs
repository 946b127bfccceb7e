//! The `v0` scheme: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`, with the timestamp in its
//! own header. Slack and Zoom use the same construction under different header names.

use super::common::{
    Alg, Enc, Window, check_time, decode_all, find_key, header, hmac, malformed, parse_secs,
};
use super::{Ctx, Matched, Provider, SignCtx, SignError, SignedRequest, VerifyError};

const VERSION: &str = "v0";

struct Spec {
    signature: &'static str,
    timestamp: &'static str,
}

fn spec_for(provider: Provider) -> Spec {
    match provider {
        Provider::Zoom => Spec {
            signature: "x-zm-signature",
            timestamp: "x-zm-request-timestamp",
        },
        _ => Spec {
            signature: "X-Slack-Signature",
            timestamp: "X-Slack-Request-Timestamp",
        },
    }
}

fn basestring_mac(key: &[u8], ts: &str, body: &[u8]) -> Vec<u8> {
    hmac(
        Alg::Sha256,
        key,
        &[VERSION.as_bytes(), b":", ts.as_bytes(), b":", body],
    )
}

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let spec = spec_for(ctx.provider);
    let value = header(ctx.req.headers, spec.signature)?;
    let ts_text = header(ctx.req.headers, spec.timestamp)?;
    let ts = parse_secs(spec.timestamp, ts_text)?;
    let sig = value
        .strip_prefix("v0=")
        .ok_or_else(|| malformed(spec.signature, "expected `v0=<hex>`"))?;
    let sigs = decode_all(spec.signature, Enc::Hex, [sig])?;
    let keys = ctx.secret_bytes()?;
    let key_index = find_key(&keys, &sigs, |key| {
        basestring_mac(key, ts_text, ctx.req.body)
    })?;
    // Slack refuses requests more than five minutes away from now, either way.
    check_time(ctx, ts.saturating_mul(1000), Window::BothWays)?;
    Ok(Matched {
        timestamp: Some(ts),
        key_index,
    })
}

pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let spec = spec_for(ctx.provider);
    let ts = ctx.now_secs().to_string();
    let mac = basestring_mac(ctx.secret.as_bytes(), &ts, ctx.body);
    Ok(ctx.unchanged(vec![
        (
            spec.signature.to_owned(),
            format!("v0={}", hex::encode(mac)),
        ),
        (spec.timestamp.to_owned(), ts),
    ]))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Case, Expect, at, run_cases};
    use super::*;

    /// The worked example in Slack's "Verifying requests from Slack"
    /// (api.slack.com/authentication/verifying-requests-from-slack).
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TS: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slack_published_vector_and_cases() {
        let body = DOC_BODY.as_bytes();
        let now = at(1_531_420_618);
        let base = |name: &str, b: &[u8]| {
            Case::new(name, b)
                .now(now)
                .header("X-Slack-Signature", DOC_SIG)
                .header("X-Slack-Request-Timestamp", DOC_TS)
        };
        run_cases(
            Provider::Slack,
            &[DOC_SECRET],
            &[
                base("docs vector", body).expect(Expect::Ok(0)),
                base("tampered", b"token=x").expect(Expect::NoMatch),
                base("5 min later", body)
                    .now(at(1_531_420_918))
                    .expect(Expect::Ok(0)),
                base("expired", body)
                    .now(at(1_531_420_919))
                    .expect(Expect::TooOld),
                base("future", body)
                    .now(at(1_531_420_317))
                    .expect(Expect::InFuture),
                Case::new("missing timestamp", body)
                    .header("X-Slack-Signature", DOC_SIG)
                    .expect(Expect::Missing("X-Slack-Request-Timestamp")),
                Case::new("missing signature", body)
                    .header("X-Slack-Request-Timestamp", DOC_TS)
                    .expect(Expect::Missing("X-Slack-Signature")),
                Case::new("no v0=", body)
                    .now(now)
                    .header("X-Slack-Signature", &DOC_SIG[3..])
                    .header("X-Slack-Request-Timestamp", DOC_TS)
                    .expect(Expect::Malformed),
                Case::new("timestamp not a number", body)
                    .now(now)
                    .header("X-Slack-Signature", DOC_SIG)
                    .header("X-Slack-Request-Timestamp", "soon")
                    .expect(Expect::Malformed),
            ],
        );
        run_cases(
            Provider::Slack,
            &["wrong", DOC_SECRET],
            &[base("rotated", body).expect(Expect::Ok(1))],
        );
        run_cases(
            Provider::Slack,
            &["wrong"],
            &[base("wrong secret", body).expect(Expect::NoMatch)],
        );
    }

    #[test]
    fn zoom_uses_its_own_headers() {
        let body = br#"{"event":"meeting.started","event_ts":1700000000000}"#;
        let mac = basestring_mac(b"zoom-secret", "1700000000", body);
        run_cases(
            Provider::Zoom,
            &["zoom-secret"],
            &[
                Case::new("valid", body)
                    .now(at(1_700_000_010))
                    .header("x-zm-signature", &format!("v0={}", hex::encode(&mac)))
                    .header("x-zm-request-timestamp", "1700000000")
                    .expect(Expect::Ok(0)),
                Case::new("slack headers are not zoom's", body)
                    .header("X-Slack-Signature", &format!("v0={}", hex::encode(&mac)))
                    .header("X-Slack-Request-Timestamp", "1700000000")
                    .expect(Expect::Missing("x-zm-signature")),
            ],
        );
    }
}
