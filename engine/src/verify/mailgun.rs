//! Mailgun: the signature travels in the body. JSON webhooks carry
//! `{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}`; legacy form posts
//! carry `timestamp`, `token` and `signature` fields. The signature is hex HMAC-SHA256 of
//! timestamp + token, keyed with the HTTP webhook signing key.

use super::common::{self, Alg, Enc, Window, check_time, find_key, hmac};
use super::{Ctx, Matched, SignCtx, SignError, SignedRequest, VerifyError};

struct Fields {
    timestamp: String,
    token: String,
    signature: String,
}

fn fields(body: &[u8]) -> Result<Fields, VerifyError> {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let sig = value
            .get("signature")
            .ok_or_else(|| VerifyError::MalformedBody("no `signature` object".into()))?;
        let field = |name: &str| -> Result<String, VerifyError> {
            match sig.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                _ => Err(VerifyError::MalformedBody(format!(
                    "no string `signature.{name}`"
                ))),
            }
        };
        return Ok(Fields {
            timestamp: field("timestamp")?,
            token: field("token")?,
            signature: field("signature")?,
        });
    }
    let mut f = Fields {
        timestamp: String::new(),
        token: String::new(),
        signature: String::new(),
    };
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "timestamp" => f.timestamp = v.into_owned(),
            "token" => f.token = v.into_owned(),
            "signature" => f.signature = v.into_owned(),
            _ => {}
        }
    }
    if f.timestamp.is_empty() || f.token.is_empty() || f.signature.is_empty() {
        return Err(VerifyError::MalformedBody(
            "neither a JSON `signature` object nor timestamp/token/signature form fields".into(),
        ));
    }
    Ok(f)
}

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let f = fields(ctx.req.body)?;
    let ts = f.timestamp.trim().parse::<i64>().map_err(|_| {
        VerifyError::MalformedBody("`signature.timestamp` is not a number of seconds".into())
    })?;
    let sig = Enc::Hex
        .decode(f.signature.trim())
        .ok_or_else(|| VerifyError::MalformedBody("`signature.signature` is not hex".into()))?;
    let keys = ctx.secret_bytes()?;
    let key_index = find_key(&keys, &[sig], |key| {
        hmac(
            Alg::Sha256,
            key,
            &[f.timestamp.as_bytes(), f.token.as_bytes()],
        )
    })?;
    check_time(ctx, ts.saturating_mul(1000), Window::BothWays)?;
    Ok(Matched {
        timestamp: Some(ts),
        key_index,
    })
}

/// Adds the `signature` object to a JSON object body (Mailgun's current webhook format).
pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let mut value = serde_json::from_slice::<serde_json::Value>(ctx.body)
        .map_err(|_| SignError::BadBody("Mailgun webhook bodies are JSON objects".into()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| SignError::BadBody("Mailgun webhook bodies are JSON objects".into()))?;
    let timestamp = ctx.now_secs().to_string();
    let token = common::pseudo_id(ctx.body, ctx.now_ms, 50);
    let mac = hmac(
        Alg::Sha256,
        ctx.secret.as_bytes(),
        &[timestamp.as_bytes(), token.as_bytes()],
    );
    object.insert(
        "signature".into(),
        serde_json::json!({
            "timestamp": timestamp,
            "token": token,
            "signature": hex::encode(mac),
        }),
    );
    let body = serde_json::to_vec(&value).map_err(|e| SignError::BadBody(e.to_string()))?;
    Ok(SignedRequest {
        url: ctx.url.to_owned(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Provider;
    use super::super::tests::{Case, Expect, at, run_cases};
    use super::*;

    fn json_body(key: &str, ts: &str, token: &str) -> String {
        let sig = hex::encode(hmac(
            Alg::Sha256,
            key.as_bytes(),
            &[ts.as_bytes(), token.as_bytes()],
        ));
        format!(
            r#"{{"signature":{{"timestamp":"{ts}","token":"{token}","signature":"{sig}"}},"event-data":{{"id":"ev1","event":"delivered"}}}}"#
        )
    }

    #[test]
    fn json_and_form_cases() {
        let now = at(1_700_000_000);
        let good = json_body("key-1", "1700000000", "tok");
        let form = {
            let sig = hex::encode(hmac(Alg::Sha256, b"key-1", &[b"1700000000", b"tok"]));
            format!("timestamp=1700000000&token=tok&signature={sig}&event=delivered")
        };
        run_cases(
            Provider::Mailgun,
            &["key-1"],
            &[
                Case::new("json", good.as_bytes())
                    .now(now)
                    .expect(Expect::Ok(0)),
                Case::new("form", form.as_bytes())
                    .now(now)
                    .expect(Expect::Ok(0)),
                Case::new(
                    "tampered token",
                    good.replace("\"tok\"", "\"tok2\"").as_bytes(),
                )
                .now(now)
                .expect(Expect::NoMatch),
                Case::new("expired", good.as_bytes())
                    .now(at(1_700_000_301))
                    .expect(Expect::TooOld),
                Case::new("future", good.as_bytes())
                    .now(at(1_699_999_699))
                    .expect(Expect::InFuture),
                Case::new(
                    "wrong key",
                    json_body("other", "1700000000", "tok").as_bytes(),
                )
                .now(now)
                .expect(Expect::NoMatch),
                Case::new("no signature object", br#"{"event-data":{}}"#).expect(Expect::Body),
                Case::new(
                    "not hex",
                    br#"{"signature":{"timestamp":"1","token":"t","signature":"zz"}}"#,
                )
                .expect(Expect::Body),
                Case::new("empty body", b"").expect(Expect::Body),
            ],
        );
        run_cases(
            Provider::Mailgun,
            &["old", "key-1"],
            &[Case::new("rotated", good.as_bytes())
                .now(now)
                .expect(Expect::Ok(1))],
        );
    }
}
