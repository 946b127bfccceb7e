//! Twitch EventSub: `Twitch-Eventsub-Message-Signature` is `sha256=` + hex HMAC-SHA256 of
//! message id + timestamp + body; the timestamp is RFC 3339 (nanosecond precision) and messages
//! older than ten minutes are refused.

use super::common::{
    self, Alg, Enc, Window, check_time, decode_all, find_key, header, hmac, malformed,
};
use super::{Ctx, Matched, SignCtx, SignError, SignedRequest, VerifyError};

const ID: &str = "Twitch-Eventsub-Message-Id";
const TIMESTAMP: &str = "Twitch-Eventsub-Message-Timestamp";
const SIGNATURE: &str = "Twitch-Eventsub-Message-Signature";

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let headers = ctx.req.headers;
    let id = header(headers, ID)?;
    let ts_text = header(headers, TIMESTAMP)?;
    let value = header(headers, SIGNATURE)?;
    let ts_ms = common::parse_rfc3339(ts_text)
        .ok_or_else(|| malformed(TIMESTAMP, "timestamp is not an RFC 3339 date-time"))?;
    let sig = value
        .strip_prefix("sha256=")
        .ok_or_else(|| malformed(SIGNATURE, "expected `sha256=<hex>`"))?;
    let sigs = decode_all(SIGNATURE, Enc::Hex, [sig])?;
    let keys = ctx.secret_bytes()?;
    let key_index = find_key(&keys, &sigs, |key| {
        hmac(
            Alg::Sha256,
            key,
            &[id.as_bytes(), ts_text.as_bytes(), ctx.req.body],
        )
    })?;
    check_time(ctx, ts_ms, Window::PastOnly)?;
    Ok(Matched {
        timestamp: Some(ts_ms.div_euclid(1000)),
        key_index,
    })
}

pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let id = common::pseudo_uuid(ctx.body, ctx.now_ms);
    let ts = common::format_rfc3339(ctx.now_ms);
    let mac = hmac(
        Alg::Sha256,
        ctx.secret.as_bytes(),
        &[id.as_bytes(), ts.as_bytes(), ctx.body],
    );
    let payload = serde_json::from_slice::<serde_json::Value>(ctx.body).ok();
    let is_challenge = payload
        .as_ref()
        .is_some_and(|p| p.get("challenge").is_some());
    let subscription = ctx
        .event_type
        .map(str::to_owned)
        .or_else(|| {
            payload
                .as_ref()
                .and_then(|p| p.pointer("/subscription/type"))
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "channel.follow".to_owned());
    let message_type = if is_challenge {
        "webhook_callback_verification"
    } else {
        "notification"
    };
    Ok(ctx.unchanged(vec![
        (ID.to_owned(), id),
        ("Twitch-Eventsub-Message-Retry".to_owned(), "0".to_owned()),
        (
            "Twitch-Eventsub-Message-Type".to_owned(),
            message_type.to_owned(),
        ),
        (SIGNATURE.to_owned(), format!("sha256={}", hex::encode(mac))),
        (TIMESTAMP.to_owned(), ts),
        ("Twitch-Eventsub-Subscription-Type".to_owned(), subscription),
        (
            "Twitch-Eventsub-Subscription-Version".to_owned(),
            "1".to_owned(),
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use super::super::Provider;
    use super::super::tests::{Case, Expect, at, run_cases};
    use super::*;

    #[test]
    fn cases() {
        let body = br#"{"subscription":{"type":"channel.follow"},"event":{}}"#;
        let id = "e76c6bd4-55c9-4987-8304-da1588d8988b";
        let ts = "2023-11-14T22:13:20.123456789Z";
        // 2023-11-14T22:13:20Z is Unix 1700000000.
        let sig = format!(
            "sha256={}",
            hex::encode(hmac(
                Alg::Sha256,
                b"twitch-secret",
                &[id.as_bytes(), ts.as_bytes(), body]
            ))
        );
        let base = |name: &str| {
            Case::new(name, body)
                .now(at(1_700_000_000))
                .header(ID, id)
                .header(TIMESTAMP, ts)
                .header(SIGNATURE, &sig)
        };
        run_cases(
            Provider::Twitch,
            &["twitch-secret"],
            &[
                base("valid").expect(Expect::Ok(0)),
                base("tampered").body(b"{}").expect(Expect::NoMatch),
                base("other id").header(ID, "x").expect(Expect::NoMatch),
                base("10 min old")
                    .now(at(1_700_000_600))
                    .expect(Expect::Ok(0)),
                base("expired")
                    .now(at(1_700_000_601))
                    .expect(Expect::TooOld),
                base("unix timestamp")
                    .header(TIMESTAMP, "1700000000")
                    .expect(Expect::Malformed),
                base("no prefix")
                    .header(SIGNATURE, &sig[7..])
                    .expect(Expect::Malformed),
                Case::new("missing", body).expect(Expect::Missing(ID)),
            ],
        );
        run_cases(
            Provider::Twitch,
            &["old", "twitch-secret"],
            &[base("rotated").expect(Expect::Ok(1))],
        );
    }
}
