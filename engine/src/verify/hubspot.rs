//! HubSpot request signatures. v3 (`X-HubSpot-Signature-v3`): base64 HMAC-SHA256 (key: the app's
//! client secret) of method + URI + body + timestamp, with the millisecond timestamp in
//! `X-HubSpot-Request-Timestamp`, refused after five minutes. v1 and v2 (`X-HubSpot-Signature`,
//! chosen by `X-HubSpot-Signature-Version`): hex SHA-256 (not HMAC) of secret + body (v1) or
//! secret + method + URI + body (v2). HubSpot sends v3 next to the older header; when it is
//! present, v3 is checked, since it also covers the URL and a timestamp.

use super::common::{
    Alg, Enc, Window, b64_encode, check_time, decode_all, find_key, header, hmac, malformed,
    opt_header, parse_millis, sha256,
};
use super::{Ctx, Matched, SignCtx, SignError, SignedRequest, VerifyError};

const V3: &str = "X-HubSpot-Signature-v3";
const TIMESTAMP: &str = "X-HubSpot-Request-Timestamp";
const LEGACY: &str = "X-HubSpot-Signature";
const VERSION: &str = "X-HubSpot-Signature-Version";

/// v3 signs the URI with these percent-escapes decoded (HubSpot's documented list).
const DECODED: &[(&str, char)] = &[
    ("3A", ':'),
    ("2F", '/'),
    ("3F", '?'),
    ("40", '@'),
    ("21", '!'),
    ("24", '$'),
    ("27", '\''),
    ("28", '('),
    ("29", ')'),
    ("2A", '*'),
    ("2C", ','),
    ("3B", ';'),
];

fn decode_uri(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(pos) = rest.find('%') {
        let (head, tail) = rest.split_at(pos);
        out.push_str(head);
        let code = tail.get(1..3);
        match code.and_then(|c| DECODED.iter().find(|(k, _)| k.eq_ignore_ascii_case(c))) {
            Some((_, ch)) => {
                out.push(*ch);
                rest = tail.get(3..).unwrap_or("");
            }
            None => {
                out.push('%');
                rest = tail.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

fn v3_mac(key: &[u8], method: &str, uri: &str, body: &[u8], ts: &str) -> Vec<u8> {
    hmac(
        Alg::Sha256,
        key,
        &[method.as_bytes(), uri.as_bytes(), body, ts.as_bytes()],
    )
}

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let headers = ctx.req.headers;
    let method = ctx.req.method.to_ascii_uppercase();
    if let Some(value) = opt_header(headers, V3)? {
        let ts_text = header(headers, TIMESTAMP)?;
        let ts_ms = parse_millis(TIMESTAMP, ts_text)?;
        let sigs = decode_all(V3, Enc::Base64, [value])?;
        let uri = decode_uri(ctx.url()?);
        let keys = ctx.secret_bytes()?;
        let key_index = find_key(&keys, &sigs, |key| {
            v3_mac(key, &method, &uri, ctx.req.body, ts_text)
        })?;
        check_time(ctx, ts_ms, Window::PastOnly)?;
        return Ok(Matched {
            timestamp: Some(ts_ms.div_euclid(1000)),
            key_index,
        });
    }
    let value = header(headers, LEGACY)?;
    let version = header(headers, VERSION)?;
    let sigs = decode_all(LEGACY, Enc::Hex, [value])?;
    let uri = match version {
        "v1" => None,
        "v2" => Some(ctx.url()?),
        other => {
            return Err(malformed(
                VERSION,
                format!("unknown version `{other}`; expected v1 or v2"),
            ));
        }
    };
    let keys = ctx.secret_bytes()?;
    let key_index = find_key(&keys, &sigs, |key| match uri {
        None => sha256(&[key, ctx.req.body]).to_vec(),
        Some(uri) => sha256(&[key, method.as_bytes(), uri.as_bytes(), ctx.req.body]).to_vec(),
    })?;
    Ok(Matched {
        timestamp: None,
        key_index,
    })
}

/// Sends v3 plus the v2 legacy header, as HubSpot does for CRM card and workflow requests.
pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let method = ctx.method.to_ascii_uppercase();
    let key = ctx.secret.as_bytes();
    let ts = ctx.now_ms.to_string();
    let v3 = v3_mac(key, &method, &decode_uri(ctx.url), ctx.body, &ts);
    let v2 = sha256(&[key, method.as_bytes(), ctx.url.as_bytes(), ctx.body]);
    Ok(ctx.unchanged(vec![
        (V3.to_owned(), b64_encode(&v3)),
        (TIMESTAMP.to_owned(), ts),
        (LEGACY.to_owned(), hex::encode(v2)),
        (VERSION.to_owned(), "v2".to_owned()),
    ]))
}

#[cfg(test)]
mod tests {
    use super::super::Provider;
    use super::super::tests::{Case, Expect, at, run_cases};
    use super::*;

    // The examples on HubSpot's "Validating requests" page (v1 and v2 request signatures).
    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const V1_BODY: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
    const V1_SIG: &str = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de";
    const V2_URI: &str = "https://www.example.com/webhook_uri";
    const V2_GET_SIG: &str = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e";

    #[test]
    fn published_v1_v2_examples() {
        run_cases(
            Provider::Hubspot,
            &[SECRET],
            &[
                Case::new("v1 docs example", V1_BODY.as_bytes())
                    .header(LEGACY, V1_SIG)
                    .header(VERSION, "v1")
                    .expect(Expect::Ok(0)),
                Case::new("v1 tampered", b"[]")
                    .header(LEGACY, V1_SIG)
                    .header(VERSION, "v1")
                    .expect(Expect::NoMatch),
                Case::new("v2 GET docs example", b"")
                    .method("GET")
                    .url(V2_URI)
                    .header(LEGACY, V2_GET_SIG)
                    .header(VERSION, "v2")
                    .expect(Expect::Ok(0)),
                Case::new("v2 other uri", b"")
                    .method("GET")
                    .url("https://www.example.com/other")
                    .header(LEGACY, V2_GET_SIG)
                    .header(VERSION, "v2")
                    .expect(Expect::NoMatch),
                Case::new("unknown version", b"")
                    .header(LEGACY, V1_SIG)
                    .header(VERSION, "v9")
                    .expect(Expect::Malformed),
                Case::new("missing", b"").expect(Expect::Missing(LEGACY)),
            ],
        );
        run_cases(
            Provider::Hubspot,
            &["old", SECRET],
            &[Case::new("v1 rotated", V1_BODY.as_bytes())
                .header(LEGACY, V1_SIG)
                .header(VERSION, "v1")
                .expect(Expect::Ok(1))],
        );
    }

    #[test]
    fn v3_cases() {
        let url = "https://example.com/hubspot?x=%3A%2f%20";
        let signed_uri = "https://example.com/hubspot?x=:/%20";
        let body = br#"[{"eventId":1}]"#;
        let ts = "1700000000000";
        let sig = b64_encode(&v3_mac(b"cs", "POST", signed_uri, body, ts));
        let base = |name: &str| {
            Case::new(name, body)
                .url(url)
                .now(at(1_700_000_000))
                .header(V3, &sig)
                .header(TIMESTAMP, ts)
        };
        run_cases(
            Provider::Hubspot,
            &["cs"],
            &[
                base("valid, escapes decoded").expect(Expect::Ok(0)),
                base("lower-case method still signs as POST")
                    .method("post")
                    .expect(Expect::Ok(0)),
                base("tampered").body(b"[]").expect(Expect::NoMatch),
                base("expired")
                    .now(at(1_700_000_301))
                    .expect(Expect::TooOld),
                base("seconds are not milliseconds")
                    .header(TIMESTAMP, "1700000000")
                    .expect(Expect::NoMatch),
                Case::new("missing timestamp", body)
                    .header(V3, &sig)
                    .expect(Expect::Missing(TIMESTAMP)),
            ],
        );
        assert_eq!(decode_uri("a%3a%2F%25%ZZ%"), "a:/%25%ZZ%");
    }
}
