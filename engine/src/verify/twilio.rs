//! Twilio: `X-Twilio-Signature` is base64 HMAC-SHA1 (key: the auth token) of the full URL
//! followed by every form parameter, sorted by name, as name + value. A JSON body is not in the
//! signature; instead the URL carries `bodySHA256` = hex SHA-256 of the body, which must match.
//! Like Twilio's own libraries, the URL is tried with the port removed and with the scheme's
//! default port added, because Twilio signs whichever form it dialled.

use std::collections::BTreeMap;

use super::common::{Alg, Enc, b64_encode, ct_eq, decode_all, find_key, header, hmac, sha256};
use super::{Ctx, Matched, SignCtx, SignError, SignedRequest, VerifyError};

const SIGNATURE: &str = "X-Twilio-Signature";
const BODY_HASH_PARAM: &str = "bodySHA256";

/// A URL cut where Twilio's port handling needs it, without any normalisation (Twilio signs the
/// URL exactly as configured, letter case included).
struct UrlParts<'a> {
    /// `https://` or `user:pass@` included where present.
    scheme: &'a str,
    userinfo: &'a str,
    host: &'a str,
    port: Option<&'a str>,
    /// Path, query and fragment.
    rest: &'a str,
}

fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => {
            let (u, h) = authority.split_at(at + 1);
            (u, h)
        }
        None => ("", authority),
    };
    let (host, port) = if hostport.starts_with('[') {
        // IPv6 literal: the port, if any, follows the closing bracket.
        let close = hostport.find(']')?;
        let (host, after) = hostport.split_at(close + 1);
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(UrlParts {
        scheme,
        userinfo,
        host,
        port,
        rest,
    })
}

/// The URL forms Twilio may have signed: with the port removed, and with the default port added
/// (or the explicit port kept).
fn url_variants(url: &str) -> Result<Vec<String>, VerifyError> {
    let parts = split_url(url).ok_or_else(|| {
        VerifyError::MalformedUrl("expected an absolute URL like https://host/path".into())
    })?;
    let UrlParts {
        scheme,
        userinfo,
        host,
        port,
        rest,
    } = parts;
    let without = format!("{scheme}://{userinfo}{host}{rest}");
    let with = match port {
        Some(_) => Some(url.to_owned()),
        None => {
            let default = if scheme.eq_ignore_ascii_case("https") {
                Some("443")
            } else if scheme.eq_ignore_ascii_case("http") {
                Some("80")
            } else {
                None
            };
            default.map(|p| format!("{scheme}://{userinfo}{host}:{p}{rest}"))
        }
    };
    let mut variants = vec![without];
    if let Some(with) = with.filter(|w| !variants.contains(w)) {
        variants.push(with);
    }
    Ok(variants)
}

/// The query string's parameters (decoded).
fn query_params(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Name + value of every parameter, names sorted, each name's distinct values sorted, as
/// Twilio's libraries build it.
fn param_string(params: &[(String, String)]) -> String {
    let mut grouped: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in params {
        grouped.entry(k).or_default().push(v);
    }
    let mut out = String::new();
    for (key, mut values) in grouped {
        values.sort_unstable();
        values.dedup();
        for value in values {
            out.push_str(key);
            out.push_str(value);
        }
    }
    out
}

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let value = header(ctx.req.headers, SIGNATURE)?;
    let sigs = decode_all(SIGNATURE, Enc::Base64, [value])?;
    let url = ctx.url()?;
    let body_hash = query_params(url)
        .into_iter()
        .find(|(k, _)| k == BODY_HASH_PARAM)
        .map(|(_, v)| v);
    let params = match &body_hash {
        Some(expected) => {
            // JSON (or any non-form) body: signed through its hash in the URL.
            let given = hex::decode(expected.trim()).unwrap_or_default();
            if !ct_eq(&sha256(&[ctx.req.body]), &given) {
                return Err(VerifyError::BodyHashMismatch);
            }
            String::new()
        }
        None => {
            let params: Vec<(String, String)> =
                form_urlencoded::parse(ctx.req.body).into_owned().collect();
            param_string(&params)
        }
    };
    let variants = url_variants(url)?;
    let keys = ctx.secret_bytes()?;
    let mut matched = Err(VerifyError::NoSignatureMatched);
    for variant in &variants {
        matched = find_key(&keys, &sigs, |key| {
            hmac(Alg::Sha1, key, &[variant.as_bytes(), params.as_bytes()])
        });
        if matched.is_ok() {
            break;
        }
    }
    Ok(Matched {
        timestamp: None,
        key_index: matched?,
    })
}

/// Signs form bodies over URL + parameters; JSON bodies (starting with `{` or `[`) get a
/// `bodySHA256` parameter added to the URL and are signed over the URL alone.
pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    if split_url(ctx.url).is_none() {
        return Err(SignError::BadUrl(
            "Twilio signs the full URL; give an absolute URL like https://host/path".into(),
        ));
    }
    let trimmed = ctx.body.trim_ascii_start();
    let is_json = trimmed.starts_with(b"{") || trimmed.starts_with(b"[");
    let (url, params) = if is_json {
        let sep = if ctx.url.contains('?') { '&' } else { '?' };
        let hash = hex::encode(sha256(&[ctx.body]));
        (
            format!("{}{sep}{BODY_HASH_PARAM}={hash}", ctx.url),
            String::new(),
        )
    } else {
        let params: Vec<(String, String)> = form_urlencoded::parse(ctx.body).into_owned().collect();
        (ctx.url.to_owned(), param_string(&params))
    };
    let mac = hmac(
        Alg::Sha1,
        ctx.secret.as_bytes(),
        &[url.as_bytes(), params.as_bytes()],
    );
    let token = super::common::pseudo_id(ctx.body, ctx.now_ms, 32);
    Ok(SignedRequest {
        url,
        headers: vec![
            (SIGNATURE.to_owned(), b64_encode(&mac)),
            ("I-Twilio-Idempotency-Token".to_owned(), token),
        ],
        body: ctx.body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::Provider;
    use super::super::tests::{Case, Expect, run_cases};
    use super::*;

    // Vectors from Twilio's helper libraries' RequestValidator tests (twilio-php
    // tests/Twilio/Unit/Security/RequestValidatorTest.php, twilio-csharp
    // RequestValidatorTest.cs), which repeat the docs example: auth token "12345".
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const FORM: &[u8] =
        b"CallSid=CA1234567890ABCDE&From=%2B14158675309&Digits=1234&To=%2B18005551212&Caller=%2B14158675309";
    const JSON: &[u8] = br#"{"property": "value", "boolean": true}"#;
    const BODY_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

    fn case(name: &str, url: &str, body: &[u8], sig: &str) -> Case {
        Case::new(name, body).url(url).header(SIGNATURE, sig)
    }

    #[test]
    fn published_vectors() {
        let with_hash = format!("{URL}&bodySHA256={BODY_HASH}");
        let only_hash = format!("https://mycompany.com/myapp.php?bodySHA256={BODY_HASH}");
        run_cases(
            Provider::Twilio,
            &[TOKEN],
            &[
                case("docs example", URL, FORM, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
                    .expect(Expect::Ok(0)),
                case(
                    "repeated values are deduplicated and sorted",
                    URL,
                    b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234",
                    "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "json body via bodySHA256",
                    &with_hash,
                    JSON,
                    "a9nBmqA0ju/hNViExpshrM61xv4=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "only bodySHA256 in query",
                    &only_hash,
                    JSON,
                    "y77kIzt2vzLz71DgmJGsen2scGs=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "json body tampered",
                    &with_hash,
                    b"{}",
                    "a9nBmqA0ju/hNViExpshrM61xv4=",
                )
                .expect(Expect::Other(VerifyError::BodyHashMismatch)),
                case(
                    "port removed (https)",
                    "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
                    FORM,
                    "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "port removed (http)",
                    "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
                    FORM,
                    "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "default port added (https)",
                    URL,
                    FORM,
                    "kvajT1Ptam85bY51eRf/AJRuM3w=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "default port added (http)",
                    "http://mycompany.com/myapp.php?foo=1&bar=2",
                    FORM,
                    "0ZXoZLH/DfblKGATFgpif+LLRf4=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "custom port kept",
                    "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
                    FORM,
                    "CYn1h0gLBdNxDGkKJg6hYohgeD8=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "mixed-case host is signed as written",
                    "https://MyCompany.com/myapp.php?foo=1&bar=2",
                    FORM,
                    "g9IN/x4Cft2g517EjYvEvM/W7LU=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "mixed-case host with the lower-case signature",
                    "https://MyCompany.com/myapp.php?foo=1&bar=2",
                    FORM,
                    "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                )
                .expect(Expect::NoMatch),
                case(
                    "credentials are kept",
                    "http://username:password@MyCompany.com/myapp.php?foo=1&bar=2",
                    FORM,
                    "PJ08CxXr7KLPjEQCTc8LkUSMwSM=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "credentials, default port added",
                    "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
                    FORM,
                    "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=",
                )
                .expect(Expect::Ok(0)),
                case(
                    "tampered param",
                    URL,
                    b"CallSid=CA1234567890ABCDE&Digits=9999",
                    "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                )
                .expect(Expect::NoMatch),
                case(
                    "extra query param",
                    &format!("{URL}&x=1"),
                    FORM,
                    "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                )
                .expect(Expect::NoMatch),
                case("not base64", URL, FORM, "NOT BASE64!").expect(Expect::Malformed),
                case(
                    "relative url",
                    "/myapp.php",
                    FORM,
                    "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                )
                .expect(Expect::Other(VerifyError::MalformedUrl(
                    "expected an absolute URL like https://host/path".into(),
                ))),
                Case::new("missing header", FORM)
                    .url(URL)
                    .expect(Expect::Missing(SIGNATURE)),
            ],
        );
        run_cases(
            Provider::Twilio,
            &["old-token", TOKEN],
            &[case("rotated", URL, FORM, "RSOYDt4T1cUTdK1PDd93/VVr8B8=").expect(Expect::Ok(1))],
        );
        run_cases(
            Provider::Twilio,
            &["wrong"],
            &[
                case("wrong token", URL, FORM, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
                    .expect(Expect::NoMatch),
            ],
        );
    }

    #[test]
    fn body_hash_matches_published_value() {
        assert_eq!(hex::encode(sha256(&[JSON])), BODY_HASH);
    }

    #[test]
    fn url_splitting_never_panics() {
        for url in [
            "",
            "://",
            "https://",
            "https://@",
            "https://[::1",
            "https://[::1]:8080/x",
            "https://h:/",
            "ü://ü@ü:ü/ü",
        ] {
            let _ = url_variants(url);
        }
        assert_eq!(
            url_variants("https://[::1]:8443/x").unwrap_or_default(),
            vec![
                "https://[::1]/x".to_owned(),
                "https://[::1]:8443/x".to_owned()
            ]
        );
    }
}
