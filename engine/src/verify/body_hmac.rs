//! Schemes where one header carries an HMAC of the body (Square: of the URL + body), keyed with
//! the secret text as is: GitHub, Intercom, Bitbucket, Jira, Typeform, Shopify, Square, Linear,
//! PagerDuty and DocuSign. One table row per provider.

use super::common::{
    self, Alg, Enc, Window, check_time, decode_all, find_key, header, hmac, malformed, opt_header,
};
use super::{Ctx, Matched, Provider, SignCtx, SignError, SignedRequest, VerifyError};

/// How the signature sits in its header.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// The whole value is the signature.
    Bare,
    /// `prefix` + signature, e.g. `sha256=...`.
    Prefixed(&'static str),
    /// WebSub `method=signature`, where the method names the hash (Jira).
    MethodPrefixed,
    /// A comma-separated list of `prefix` + signature entries; others are ignored (PagerDuty).
    List(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct SigHeader {
    name: &'static str,
    alg: Alg,
    enc: Enc,
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    Body,
    UrlThenBody,
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    /// Candidate headers in order of preference; the first one present is checked.
    headers: &'static [SigHeader],
    content: Content,
    /// DocuSign: `<name>-1` .. `<name>-100`, one header per active key.
    numbered: bool,
}

const fn h(name: &'static str, alg: Alg, enc: Enc, format: Format) -> SigHeader {
    SigHeader {
        name,
        alg,
        enc,
        format,
    }
}

const fn spec(headers: &'static [SigHeader]) -> Spec {
    Spec {
        headers,
        content: Content::Body,
        numbered: false,
    }
}

/// DocuSign Connect sends at most 100 signature headers, one per HMAC key.
const DOCUSIGN_MAX_KEYS: usize = 100;

/// Linear: the payload's `webhookTimestamp` is in milliseconds.
const LINEAR_TIMESTAMP_FIELD: &str = "webhookTimestamp";

use Alg::{Sha1, Sha256};
use Enc::{Base64, Hex};
use Format::{Bare, List, MethodPrefixed, Prefixed};

/// One row per provider.
const TABLE: &[(Provider, Spec)] = &[
    (
        Provider::Github,
        spec(&[
            h("X-Hub-Signature-256", Sha256, Hex, Prefixed("sha256=")),
            h("X-Hub-Signature", Sha1, Hex, Prefixed("sha1=")),
        ]),
    ),
    (
        Provider::Intercom,
        spec(&[h("X-Hub-Signature", Sha1, Hex, Prefixed("sha1="))]),
    ),
    (
        Provider::Bitbucket,
        spec(&[h("X-Hub-Signature", Sha256, Hex, Prefixed("sha256="))]),
    ),
    (
        Provider::Jira,
        spec(&[h("X-Hub-Signature", Sha256, Hex, MethodPrefixed)]),
    ),
    (
        Provider::Typeform,
        spec(&[h("Typeform-Signature", Sha256, Base64, Prefixed("sha256="))]),
    ),
    (
        Provider::Shopify,
        spec(&[h("X-Shopify-Hmac-Sha256", Sha256, Base64, Bare)]),
    ),
    (
        Provider::Square,
        Spec {
            headers: &[h("x-square-hmacsha256-signature", Sha256, Base64, Bare)],
            content: Content::UrlThenBody,
            numbered: false,
        },
    ),
    (
        Provider::Linear,
        spec(&[h("Linear-Signature", Sha256, Hex, Bare)]),
    ),
    (
        Provider::Pagerduty,
        spec(&[h("X-PagerDuty-Signature", Sha256, Hex, List("v1="))]),
    ),
    (
        Provider::Docusign,
        Spec {
            headers: &[h("X-DocuSign-Signature", Sha256, Base64, Bare)],
            content: Content::Body,
            numbered: true,
        },
    ),
];

fn spec_for(provider: Provider) -> Option<Spec> {
    TABLE
        .iter()
        .find(|(p, _)| *p == provider)
        .map(|(_, spec)| *spec)
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// The signatures in one header value, with the hash each was made with.
fn candidates(sig: &SigHeader, value: &str) -> Result<(Alg, Vec<Vec<u8>>), VerifyError> {
    match sig.format {
        Format::Bare => Ok((sig.alg, decode_all(sig.name, sig.enc, [value])?)),
        Format::Prefixed(prefix) => {
            let rest = strip_prefix_ci(value, prefix)
                .ok_or_else(|| malformed(sig.name, format!("expected `{prefix}<signature>`")))?;
            Ok((sig.alg, decode_all(sig.name, sig.enc, [rest])?))
        }
        Format::MethodPrefixed => {
            let (method, rest) = value
                .split_once('=')
                .ok_or_else(|| malformed(sig.name, "expected `method=signature`"))?;
            let alg = Alg::from_name(method)
                .ok_or_else(|| malformed(sig.name, format!("unsupported method `{method}`")))?;
            Ok((alg, decode_all(sig.name, sig.enc, [rest])?))
        }
        Format::List(prefix) => {
            let entries = value
                .split(',')
                .filter_map(|e| strip_prefix_ci(e.trim(), prefix));
            Ok((sig.alg, decode_all(sig.name, sig.enc, entries)?))
        }
    }
}

/// DocuSign: one signature per active key in `<name>-1` .. `<name>-100`. As in every list of
/// signatures, a malformed one is passed over as long as another decodes.
fn numbered_candidates(
    sig: &SigHeader,
    headers: &http::HeaderMap,
) -> Result<Vec<Vec<u8>>, VerifyError> {
    let mut values = Vec::new();
    for n in 1..=DOCUSIGN_MAX_KEYS {
        let name = format!("{}-{n}", sig.name);
        if let Some(value) = opt_header(headers, &name)? {
            values.push(value);
        }
    }
    let first = format!("{}-1", sig.name);
    if values.is_empty() {
        return Err(VerifyError::MissingHeader(first));
    }
    decode_all(&first, sig.enc, values)
}

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let Some(spec) = spec_for(ctx.provider) else {
        return Err(VerifyError::BadKey(format!(
            "{} is not a body-HMAC provider",
            ctx.provider
        )));
    };
    let headers = ctx.req.headers;
    let first = spec
        .headers
        .first()
        .copied()
        .ok_or(VerifyError::NoSignatureMatched)?;
    let (alg, sigs) = if spec.numbered {
        (first.alg, numbered_candidates(&first, headers)?)
    } else {
        let mut found = None;
        for sig in spec.headers {
            if let Some(value) = opt_header(headers, sig.name)? {
                found = Some((sig, value));
                break;
            }
        }
        let (sig, value) = match found {
            Some(f) => f,
            // Name the preferred header in the error.
            None => (&first, header(headers, first.name)?),
        };
        candidates(sig, value)?
    };
    let url = match spec.content {
        Content::Body => "",
        Content::UrlThenBody => ctx.url()?,
    };
    let keys = ctx.secret_bytes()?;
    let key_index = find_key(&keys, &sigs, |key| {
        hmac(alg, key, &[url.as_bytes(), ctx.req.body])
    })?;
    let timestamp = if ctx.provider == Provider::Linear {
        linear_timestamp(ctx)?
    } else {
        None
    };
    Ok(Matched {
        timestamp,
        key_index,
    })
}

/// Linear puts the send time in the signed body; it must be within a minute of now either way.
fn linear_timestamp(ctx: &Ctx) -> Result<Option<i64>, VerifyError> {
    let field = serde_json::from_slice::<serde_json::Value>(ctx.req.body)
        .ok()
        .and_then(|v| v.get(LINEAR_TIMESTAMP_FIELD).and_then(|t| t.as_i64()));
    let Some(ts_ms) = field else {
        if ctx.tolerance.is_none() {
            return Ok(None);
        }
        return Err(VerifyError::MalformedBody(format!(
            "no integer `{LINEAR_TIMESTAMP_FIELD}` to check the age against"
        )));
    };
    check_time(ctx, ts_ms, Window::BothWays)?;
    Ok(Some(ts_ms.div_euclid(1000)))
}

pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let Some(spec) = spec_for(ctx.provider) else {
        return Err(SignError::BadKey(format!(
            "{} is not a body-HMAC provider",
            ctx.provider
        )));
    };
    let body = if ctx.provider == Provider::Linear {
        linear_body(ctx)?
    } else {
        ctx.body.to_vec()
    };
    let sig = spec
        .headers
        .first()
        .copied()
        .ok_or_else(|| SignError::BadKey("no signature header".into()))?;
    let url = match spec.content {
        Content::Body => "",
        Content::UrlThenBody => ctx.url,
    };
    let mac = hmac(sig.alg, ctx.secret.as_bytes(), &[url.as_bytes(), &body]);
    let encoded = sig.enc.encode(&mac);
    let value = match sig.format {
        Format::Bare => encoded,
        Format::Prefixed(prefix) | Format::List(prefix) => format!("{prefix}{encoded}"),
        Format::MethodPrefixed => format!("sha256={encoded}"),
    };
    let name = if spec.numbered {
        format!("{}-1", sig.name)
    } else {
        sig.name.to_owned()
    };
    let mut headers = vec![(name, value)];
    if ctx.provider == Provider::Github {
        // GitHub still sends the legacy SHA-1 header next to the SHA-256 one.
        let legacy = hmac(Alg::Sha1, ctx.secret.as_bytes(), &[&body]);
        headers.push((
            "X-Hub-Signature".into(),
            format!("sha1={}", hex::encode(legacy)),
        ));
    }
    headers.extend(identity_headers(ctx, &body));
    Ok(SignedRequest {
        url: ctx.url.to_owned(),
        headers,
        body,
    })
}

/// Linear payloads carry `webhookTimestamp`; add it to a JSON object body that lacks it.
fn linear_body(ctx: &SignCtx) -> Result<Vec<u8>, SignError> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(ctx.body) else {
        return Err(SignError::BadBody("Linear bodies are JSON objects".into()));
    };
    let Some(object) = value.as_object_mut() else {
        return Err(SignError::BadBody("Linear bodies are JSON objects".into()));
    };
    if object.contains_key(LINEAR_TIMESTAMP_FIELD) {
        return Ok(ctx.body.to_vec());
    }
    object.insert(LINEAR_TIMESTAMP_FIELD.into(), ctx.now_ms.into());
    serde_json::to_vec(&value).map_err(|e| SignError::BadBody(e.to_string()))
}

/// The delivery-id and event-type headers each provider sends next to its signature.
fn identity_headers(ctx: &SignCtx, body: &[u8]) -> Vec<(String, String)> {
    let uuid = common::pseudo_uuid(body, ctx.now_ms);
    let event = |default: &str| ctx.event_type.unwrap_or(default).to_owned();
    let pairs: Vec<(&str, String)> = match ctx.provider {
        Provider::Github => vec![
            ("X-GitHub-Delivery", uuid),
            ("X-GitHub-Event", event("push")),
            ("X-GitHub-Hook-ID", "1".into()),
        ],
        Provider::Bitbucket => vec![
            ("X-Request-UUID", uuid),
            ("X-Event-Key", event("repo:push")),
        ],
        Provider::Jira => vec![("X-Atlassian-Webhook-Identifier", uuid)],
        Provider::Shopify => vec![
            ("X-Shopify-Webhook-Id", uuid),
            ("X-Shopify-Topic", event("orders/create")),
            ("X-Shopify-Triggered-At", common::format_rfc3339(ctx.now_ms)),
        ],
        Provider::Linear => {
            let mut v = vec![("Linear-Delivery", uuid)];
            let kind = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|b| b.get("type").and_then(|t| t.as_str()).map(str::to_owned));
            if let Some(kind) = ctx.event_type.map(str::to_owned).or(kind) {
                v.push(("Linear-Event", kind));
            }
            v
        }
        _ => Vec::new(),
    };
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Case, Expect, at, run_cases};
    use super::*;

    /// docs.github.com, "Validating webhook deliveries": secret "It's a Secret to Everybody",
    /// body "Hello, World!".
    const GITHUB_DOC_SIG: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_published_vector() {
        run_cases(
            Provider::Github,
            &["It's a Secret to Everybody"],
            &[
                Case::new("docs vector", b"Hello, World!")
                    .header("X-Hub-Signature-256", GITHUB_DOC_SIG)
                    .expect(Expect::Ok(0)),
                Case::new("tampered body", b"Hello, World?")
                    .header("X-Hub-Signature-256", GITHUB_DOC_SIG)
                    .expect(Expect::NoMatch),
                Case::new("upper-case hex", b"Hello, World!")
                    .header(
                        "X-Hub-Signature-256",
                        &GITHUB_DOC_SIG.to_uppercase().replace("SHA256=", "sha256="),
                    )
                    .expect(Expect::Ok(0)),
                Case::new("missing header", b"Hello, World!")
                    .expect(Expect::Missing("X-Hub-Signature-256")),
                Case::new("no prefix", b"Hello, World!")
                    .header("X-Hub-Signature-256", &GITHUB_DOC_SIG[7..])
                    .expect(Expect::Malformed),
                Case::new("not hex", b"Hello, World!")
                    .header("X-Hub-Signature-256", "sha256=zz")
                    .expect(Expect::Malformed),
            ],
        );
        run_cases(
            Provider::Github,
            &["old-secret", "It's a Secret to Everybody"],
            &[
                Case::new("rotated: second secret matches", b"Hello, World!")
                    .header("X-Hub-Signature-256", GITHUB_DOC_SIG)
                    .expect(Expect::Ok(1)),
            ],
        );
        run_cases(
            Provider::Github,
            &["wrong"],
            &[Case::new("wrong secret", b"Hello, World!")
                .header("X-Hub-Signature-256", GITHUB_DOC_SIG)
                .expect(Expect::NoMatch)],
        );
    }

    #[test]
    fn github_legacy_sha1_header_is_used_when_alone() {
        let sig = hex::encode(hmac(Alg::Sha1, b"s", &[b"{}"]));
        run_cases(
            Provider::Github,
            &["s"],
            &[
                Case::new("sha1 only", b"{}")
                    .header("X-Hub-Signature", &format!("sha1={sig}"))
                    .expect(Expect::Ok(0)),
                Case::new("sha1 with wrong prefix", b"{}")
                    .header("X-Hub-Signature", &format!("sha256={sig}"))
                    .expect(Expect::Malformed),
            ],
        );
    }

    #[test]
    fn hub_family_prefixes_and_encodings() {
        let body = br#"{"id":1}"#;
        let sha1_hex = hex::encode(hmac(Alg::Sha1, b"k", &[body]));
        let sha256_hex = hex::encode(hmac(Alg::Sha256, b"k", &[body]));
        let sha512_hex = hex::encode(hmac(Alg::Sha512, b"k", &[body]));
        let sha256_b64 = common::b64_encode(&hmac(Alg::Sha256, b"k", &[body]));
        let table: &[(Provider, &str, String, Expect)] = &[
            (
                Provider::Intercom,
                "X-Hub-Signature",
                format!("sha1={sha1_hex}"),
                Expect::Ok(0),
            ),
            (
                Provider::Intercom,
                "X-Hub-Signature",
                format!("sha256={sha256_hex}"),
                Expect::Malformed,
            ),
            (
                Provider::Bitbucket,
                "X-Hub-Signature",
                format!("sha256={sha256_hex}"),
                Expect::Ok(0),
            ),
            (
                Provider::Jira,
                "X-Hub-Signature",
                format!("sha256={sha256_hex}"),
                Expect::Ok(0),
            ),
            (
                Provider::Jira,
                "X-Hub-Signature",
                format!("sha512={sha512_hex}"),
                Expect::Ok(0),
            ),
            (
                Provider::Jira,
                "X-Hub-Signature",
                format!("sha1={sha1_hex}"),
                Expect::Ok(0),
            ),
            (
                Provider::Jira,
                "X-Hub-Signature",
                format!("md5={sha1_hex}"),
                Expect::Malformed,
            ),
            (
                Provider::Jira,
                "X-Hub-Signature",
                format!("sha512={sha256_hex}"),
                Expect::NoMatch,
            ),
            (
                Provider::Typeform,
                "Typeform-Signature",
                format!("sha256={sha256_b64}"),
                Expect::Ok(0),
            ),
            // 64 hex digits are also valid base64, so a hex signature decodes and fails to match.
            (
                Provider::Typeform,
                "Typeform-Signature",
                format!("sha256={sha256_hex}"),
                Expect::NoMatch,
            ),
            (
                Provider::Typeform,
                "Typeform-Signature",
                "sha256=%%".into(),
                Expect::Malformed,
            ),
            (
                Provider::Shopify,
                "X-Shopify-Hmac-Sha256",
                sha256_b64.clone(),
                Expect::Ok(0),
            ),
            (
                Provider::Shopify,
                "X-Shopify-Hmac-Sha256",
                "%%%".into(),
                Expect::Malformed,
            ),
            (
                Provider::Pagerduty,
                "X-PagerDuty-Signature",
                format!("v1={},v1={sha256_hex}", "ab".repeat(32)),
                Expect::Ok(0),
            ),
            (
                Provider::Pagerduty,
                "X-PagerDuty-Signature",
                format!("v2={sha256_hex}"),
                Expect::Malformed,
            ),
            (
                Provider::Docusign,
                "X-DocuSign-Signature-2",
                sha256_b64.clone(),
                Expect::Ok(0),
            ),
        ];
        for (provider, name, value, expect) in table {
            run_cases(
                *provider,
                &["k"],
                &[Case::new(&format!("{provider} {value}"), body)
                    .header(name, value)
                    .expect(expect.clone())],
            );
        }
    }

    #[test]
    fn docusign_several_headers_several_keys() {
        let body = b"<xml/>";
        let sig = |k: &[u8]| common::b64_encode(&hmac(Alg::Sha256, k, &[body]));
        run_cases(
            Provider::Docusign,
            &["old", "new"],
            &[
                Case::new("second header matches second key", body)
                    .header("X-DocuSign-Signature-1", &sig(b"other"))
                    .header("X-DocuSign-Signature-2", &sig(b"new"))
                    .expect(Expect::Ok(1)),
                Case::new("none", body).expect(Expect::Missing("X-DocuSign-Signature-1")),
            ],
        );
    }

    #[test]
    fn square_signs_url_then_body() {
        let url = "https://example.com/hooks/square";
        let body = br#"{"event_id":"e1","type":"payment.updated"}"#;
        let sig = common::b64_encode(&hmac(Alg::Sha256, b"sq", &[url.as_bytes(), body]));
        run_cases(
            Provider::Square,
            &["sq"],
            &[
                Case::new("valid", body)
                    .url(url)
                    .header("x-square-hmacsha256-signature", &sig)
                    .expect(Expect::Ok(0)),
                Case::new("other url", body)
                    .url("https://example.com/hooks/other")
                    .header("x-square-hmacsha256-signature", &sig)
                    .expect(Expect::NoMatch),
                Case::new("no url", body)
                    .url("")
                    .header("x-square-hmacsha256-signature", &sig)
                    .expect(Expect::Other(VerifyError::MissingUrl)),
            ],
        );
    }

    #[test]
    fn linear_checks_webhook_timestamp_both_ways() {
        let now = at(1_700_000_000);
        let body = |ts_ms: i64| {
            format!(r#"{{"type":"Issue","action":"create","webhookTimestamp":{ts_ms}}}"#)
        };
        let sig = |b: &str| hex::encode(hmac(Alg::Sha256, b"lin", &[b.as_bytes()]));
        let cases: Vec<(String, Expect)> = vec![
            (body(1_700_000_000_000 - 59_000), Expect::Ok(0)),
            (body(1_700_000_000_000 - 61_000), Expect::TooOld),
            (body(1_700_000_000_000 + 61_000), Expect::InFuture),
            (
                r#"{"type":"Issue"}"#.into(),
                Expect::Other(VerifyError::MalformedBody(
                    "no integer `webhookTimestamp` to check the age against".into(),
                )),
            ),
        ];
        for (b, expect) in cases {
            run_cases(
                Provider::Linear,
                &["lin"],
                &[Case::new(&b, b.as_bytes())
                    .now(now)
                    .header("Linear-Signature", &sig(&b))
                    .expect(expect)],
            );
        }
    }
}
