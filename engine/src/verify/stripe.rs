//! Schemes whose signature header carries its own timestamp, `t=<unix>,v1=<hex>`: Stripe,
//! Calendly (same shape) and Paddle (`ts=<unix>;h1=<hex>`, signed as `{ts}:{body}`). The HMAC key
//! is the secret text as shown, Stripe's `whsec_` prefix included.

use super::common::{
    Alg, Enc, Window, check_time, decode_all, find_key, header, hmac, malformed, pairs, parse_secs,
};
use super::{Ctx, Matched, Provider, SignCtx, SignError, SignedRequest, VerifyError};

#[derive(Debug, Clone, Copy)]
struct Spec {
    header: &'static str,
    /// Separates the `k=v` items.
    item_sep: char,
    timestamp_key: &'static str,
    /// Every item with this key is a candidate signature (several during secret rotation).
    signature_key: &'static str,
    /// Between the timestamp and the body in the signed content.
    content_sep: &'static str,
}

fn spec_for(provider: Provider) -> Spec {
    match provider {
        Provider::Paddle => Spec {
            header: "Paddle-Signature",
            item_sep: ';',
            timestamp_key: "ts",
            signature_key: "h1",
            content_sep: ":",
        },
        Provider::Calendly => Spec {
            header: "Calendly-Webhook-Signature",
            item_sep: ',',
            timestamp_key: "t",
            signature_key: "v1",
            content_sep: ".",
        },
        _ => Spec {
            header: "Stripe-Signature",
            item_sep: ',',
            timestamp_key: "t",
            signature_key: "v1",
            content_sep: ".",
        },
    }
}

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let spec = spec_for(ctx.provider);
    let value = header(ctx.req.headers, spec.header)?;
    let mut timestamp = None;
    let mut texts = Vec::new();
    for (k, v) in pairs(value, spec.item_sep) {
        if k == spec.timestamp_key {
            timestamp = Some(v);
        } else if k == spec.signature_key {
            texts.push(v);
        }
    }
    let ts_text = timestamp.ok_or_else(|| {
        malformed(
            spec.header,
            format!("no `{}=` timestamp", spec.timestamp_key),
        )
    })?;
    let ts = parse_secs(spec.header, ts_text)?;
    if texts.is_empty() {
        return Err(malformed(
            spec.header,
            format!("no `{}=` signature", spec.signature_key),
        ));
    }
    let sigs = decode_all(spec.header, Enc::Hex, texts)?;
    let keys = ctx.secret_bytes()?;
    let key_index = find_key(&keys, &sigs, |key| {
        hmac(
            Alg::Sha256,
            key,
            &[
                ts_text.as_bytes(),
                spec.content_sep.as_bytes(),
                ctx.req.body,
            ],
        )
    })?;
    // Stripe, Calendly and Paddle refuse old timestamps only.
    check_time(ctx, ts.saturating_mul(1000), Window::PastOnly)?;
    Ok(Matched {
        timestamp: Some(ts),
        key_index,
    })
}

pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let spec = spec_for(ctx.provider);
    let ts = ctx.now_secs().to_string();
    let mac = hmac(
        Alg::Sha256,
        ctx.secret.as_bytes(),
        &[ts.as_bytes(), spec.content_sep.as_bytes(), ctx.body],
    );
    let value = format!(
        "{}={ts}{}{}={}",
        spec.timestamp_key,
        spec.item_sep,
        spec.signature_key,
        hex::encode(mac)
    );
    Ok(ctx.unchanged(vec![(spec.header.to_owned(), value)]))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Case, Expect, at, run_cases};
    use super::*;

    fn stripe_header(secret: &str, ts: i64, body: &[u8]) -> String {
        let mac = hmac(
            Alg::Sha256,
            secret.as_bytes(),
            &[ts.to_string().as_bytes(), b".", body],
        );
        format!("t={ts},v1={}", hex::encode(mac))
    }

    #[test]
    fn stripe_cases() {
        let secret = "whsec_test_secret";
        let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
        let now = at(1_700_000_000);
        let good = stripe_header(secret, 1_700_000_000, body);
        let other = stripe_header("whsec_other", 1_700_000_000, body);
        let two = format!("{},v1={}", good, "0".repeat(64));
        let swapped = format!("t=1700000000,v0=abc,v1={},{}", "0".repeat(64), &good[13..]);
        run_cases(
            Provider::Stripe,
            &[secret],
            &[
                Case::new("valid", body)
                    .now(now)
                    .header("Stripe-Signature", &good)
                    .expect(Expect::Ok(0)),
                Case::new("several v1, one valid", body)
                    .now(now)
                    .header("Stripe-Signature", &two)
                    .expect(Expect::Ok(0)),
                Case::new("valid entry last, v0 ignored", body)
                    .now(now)
                    .header("Stripe-Signature", &swapped)
                    .expect(Expect::Ok(0)),
                Case::new("tampered", b"{}")
                    .now(now)
                    .header("Stripe-Signature", &good)
                    .expect(Expect::NoMatch),
                Case::new("wrong secret", body)
                    .now(now)
                    .header("Stripe-Signature", &other)
                    .expect(Expect::NoMatch),
                Case::new("expired", body)
                    .now(at(1_700_000_301))
                    .header("Stripe-Signature", &good)
                    .expect(Expect::TooOld),
                Case::new("at the limit", body)
                    .now(at(1_700_000_300))
                    .header("Stripe-Signature", &good)
                    .expect(Expect::Ok(0)),
                // Stripe's libraries check age only, so a future timestamp passes.
                Case::new("future passes", body)
                    .now(at(1_699_990_000))
                    .header("Stripe-Signature", &good)
                    .expect(Expect::Ok(0)),
                Case::new("tolerance off", body)
                    .now(at(1_800_000_000))
                    .tolerance(0)
                    .header("Stripe-Signature", &good)
                    .expect(Expect::Ok(0)),
                Case::new("missing", body)
                    .now(now)
                    .expect(Expect::Missing("Stripe-Signature")),
                Case::new("no timestamp", body)
                    .now(now)
                    .header("Stripe-Signature", "v1=00")
                    .expect(Expect::Malformed),
                Case::new("bad timestamp", body)
                    .now(now)
                    .header("Stripe-Signature", "t=x,v1=00")
                    .expect(Expect::Malformed),
                Case::new("no v1", body)
                    .now(now)
                    .header("Stripe-Signature", "t=1700000000,v0=00")
                    .expect(Expect::Malformed),
                Case::new("garbage", body)
                    .now(now)
                    .header("Stripe-Signature", ",,,=,")
                    .expect(Expect::Malformed),
            ],
        );
        run_cases(
            Provider::Stripe,
            &["whsec_old", secret],
            &[Case::new("rotated", body)
                .now(now)
                .header("Stripe-Signature", &good)
                .expect(Expect::Ok(1))],
        );
    }

    #[test]
    fn paddle_and_calendly_shapes() {
        let body = br#"{"event_id":"evt_1"}"#;
        let ts = 1_700_000_000;
        let paddle = hex::encode(hmac(Alg::Sha256, b"pdl_ntfset_x", &[b"1700000000:", body]));
        let calendly = hex::encode(hmac(Alg::Sha256, b"cal", &[b"1700000000.", body]));
        run_cases(
            Provider::Paddle,
            &["pdl_ntfset_x"],
            &[
                Case::new("valid", body)
                    .now(at(ts + 5))
                    .header("Paddle-Signature", &format!("ts={ts};h1={paddle}"))
                    .expect(Expect::Ok(0)),
                Case::new("rotation: two h1", body)
                    .now(at(ts))
                    .header(
                        "Paddle-Signature",
                        &format!("ts={ts};h1={};h1={paddle}", "1".repeat(64)),
                    )
                    .expect(Expect::Ok(0)),
                Case::new("5 s default tolerance", body)
                    .now(at(ts + 6))
                    .header("Paddle-Signature", &format!("ts={ts};h1={paddle}"))
                    .expect(Expect::TooOld),
                Case::new("comma is not Paddle's separator", body)
                    .now(at(ts))
                    .header("Paddle-Signature", &format!("ts={ts},h1={paddle}"))
                    .expect(Expect::Malformed),
            ],
        );
        run_cases(
            Provider::Calendly,
            &["cal"],
            &[
                Case::new("valid", body)
                    .now(at(ts + 180))
                    .header(
                        "Calendly-Webhook-Signature",
                        &format!("t={ts},v1={calendly}"),
                    )
                    .expect(Expect::Ok(0)),
                Case::new("3 min tolerance", body)
                    .now(at(ts + 181))
                    .header(
                        "Calendly-Webhook-Signature",
                        &format!("t={ts},v1={calendly}"),
                    )
                    .expect(Expect::TooOld),
            ],
        );
    }
}
