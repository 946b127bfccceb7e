//! The configurable `hmac` provider, for senders hookwise has no built-in scheme for, and `none`
//! (handled in `mod.rs`: no check at all).

use serde::Deserialize;

use super::common::{Alg, Enc, Window, check_time, decode_all, find_key, header, hmac, malformed};
use super::{Ctx, Matched, SignCtx, SignError, SignedRequest, VerifyError};

/// Timestamps with at least this many digits are taken as milliseconds (13 digits is the year
/// 2001 onwards in milliseconds, and the year 33658 in seconds).
const MILLIS_DIGITS: usize = 13;

/// How a generic HMAC sender signs its requests (the `hmac:` block of a source).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacScheme {
    /// Header that carries the signature, e.g. `X-Signature`. Several signatures may be listed
    /// in it, separated by commas or spaces.
    pub header: String,
    /// Hash function of the HMAC: `sha1`, `sha256` (default) or `sha512`.
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// How the signature is written: `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// Text before the signature in the header, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Header with the Unix timestamp the signature covers (seconds, or milliseconds when it has
    /// 13 or more digits). When set, the source's tolerance applies (default five minutes, either
    /// way).
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// What is signed. Placeholders: `{body}`, `{timestamp}`, `{method}`, `{url}`; `{{` and `}}`
    /// are literal braces. Default `{body}`; e.g. `{timestamp}.{body}`.
    #[serde(default)]
    pub signed_content: Option<String>,
}

/// The hash function of a generic HMAC scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

/// How a generic signature is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// One piece of the signed content.
enum Part {
    Text(String),
    Body,
    Timestamp,
    Method,
    Url,
}

impl HmacScheme {
    /// Checks the scheme once, at config load: header names and the content template.
    pub fn validate(&self) -> Result<(), String> {
        http::HeaderName::from_bytes(self.header.as_bytes())
            .map_err(|_| format!("`{}` is not a valid header name", self.header))?;
        if let Some(ts) = &self.timestamp_header {
            http::HeaderName::from_bytes(ts.as_bytes())
                .map_err(|_| format!("`{ts}` is not a valid header name"))?;
        }
        let parts = self.parts()?;
        if self.timestamp_header.is_none() && parts.iter().any(|p| matches!(p, Part::Timestamp)) {
            return Err("signed_content uses {timestamp} but no timestamp_header is set".into());
        }
        Ok(())
    }

    /// Whether the signed content covers the request URL (`{url}`), which the ingress then
    /// rebuilds as the sender sees it.
    pub fn signs_url(&self) -> bool {
        self.parts()
            .is_ok_and(|parts| parts.iter().any(|p| matches!(p, Part::Url)))
    }

    fn template(&self) -> &str {
        self.signed_content.as_deref().unwrap_or("{body}")
    }

    fn parts(&self) -> Result<Vec<Part>, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = self.template().chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    let part = match name.as_str() {
                        "body" => Part::Body,
                        "timestamp" => Part::Timestamp,
                        "method" => Part::Method,
                        "url" => Part::Url,
                        other => {
                            return Err(format!(
                                "unknown placeholder {{{other}}} in signed_content; use {{body}}, {{timestamp}}, {{method}} or {{url}}"
                            ));
                        }
                    };
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(part);
                }
                '}' => return Err("unmatched `}` in signed_content (write `}}`)".into()),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(parts)
    }

    /// The signed content for one request.
    fn content(&self, body: &[u8], ts: &str, method: &str, url: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(body.len() + 64);
        for part in self.parts()? {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Body => out.extend_from_slice(body),
                Part::Timestamp => out.extend_from_slice(ts.as_bytes()),
                Part::Method => out.extend_from_slice(method.as_bytes()),
                Part::Url => out.extend_from_slice(url.as_bytes()),
            }
        }
        Ok(out)
    }

    fn alg(&self) -> Alg {
        match self.algorithm {
            HmacAlgorithm::Sha1 => Alg::Sha1,
            HmacAlgorithm::Sha256 => Alg::Sha256,
            HmacAlgorithm::Sha512 => Alg::Sha512,
        }
    }

    fn enc(&self) -> Enc {
        match self.encoding {
            SignatureEncoding::Hex => Enc::Hex,
            SignatureEncoding::Base64 => Enc::Base64,
        }
    }
}

fn parse_timestamp_ms(name: &str, text: &str) -> Result<i64, VerifyError> {
    let digits = text.trim();
    let value: i64 = digits
        .parse()
        .map_err(|_| malformed(name, "timestamp is not an integer"))?;
    if digits.trim_start_matches('-').len() >= MILLIS_DIGITS {
        Ok(value)
    } else {
        value
            .checked_mul(1000)
            .ok_or_else(|| malformed(name, "timestamp out of range"))
    }
}

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let scheme = ctx
        .opts
        .hmac
        .as_ref()
        .ok_or(VerifyError::MissingHmacScheme)?;
    let headers = ctx.req.headers;
    let value = header(headers, &scheme.header)?;
    let ts = match &scheme.timestamp_header {
        Some(name) => {
            let text = header(headers, name)?;
            Some((text, parse_timestamp_ms(name, text)?))
        }
        None => None,
    };
    let entries: Vec<&str> = value.split([',', ' ']).filter(|e| !e.is_empty()).collect();
    let texts: Vec<&str> = match &scheme.prefix {
        Some(prefix) => entries
            .iter()
            .filter_map(|e| e.strip_prefix(prefix.as_str()))
            .collect(),
        None => entries,
    };
    if texts.is_empty() {
        let reason = match &scheme.prefix {
            Some(prefix) => format!("expected `{prefix}<signature>`"),
            None => "no signature found".to_owned(),
        };
        return Err(malformed(&scheme.header, reason));
    }
    let sigs = decode_all(&scheme.header, scheme.enc(), texts)?;
    let ts_text = ts.map_or("", |(text, _)| text);
    // Without the URL a `{url}` scheme can only fail to match; say why instead.
    let url = if scheme.signs_url() { ctx.url()? } else { "" };
    let content = scheme
        .content(ctx.req.body, ts_text, ctx.req.method, url)
        .map_err(|e| VerifyError::BadKey(format!("hmac scheme: {e}")))?;
    let keys = ctx.secret_bytes()?;
    let key_index = find_key(&keys, &sigs, |key| hmac(scheme.alg(), key, &[&content]))?;
    let timestamp = match ts {
        Some((_, ms)) => {
            check_time(ctx, ms, Window::BothWays)?;
            Some(ms.div_euclid(1000))
        }
        None => None,
    };
    Ok(Matched {
        timestamp,
        key_index,
    })
}

pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let scheme = ctx.opts.hmac.as_ref().ok_or(SignError::MissingHmacScheme)?;
    scheme.validate().map_err(SignError::BadKey)?;
    let ts = ctx.now_secs().to_string();
    let content = scheme
        .content(ctx.body, &ts, ctx.method, ctx.url)
        .map_err(SignError::BadKey)?;
    let mac = hmac(scheme.alg(), ctx.secret.as_bytes(), &[&content]);
    let value = format!(
        "{}{}",
        scheme.prefix.as_deref().unwrap_or(""),
        scheme.enc().encode(&mac)
    );
    let mut headers = vec![(scheme.header.clone(), value)];
    if let Some(name) = &scheme.timestamp_header {
        headers.push((name.clone(), ts));
    }
    Ok(ctx.unchanged(headers))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Case, Expect, at, run_cases_with};
    use super::super::{Keys, Provider, VerifyOptions};
    use super::*;

    fn scheme(yaml_like: serde_json::Value) -> HmacScheme {
        serde_json::from_value(yaml_like).unwrap_or_else(|e| panic!("test scheme: {e}"))
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let s = scheme(serde_json::json!({"header": "X-Sig"}));
        assert_eq!(s.algorithm, HmacAlgorithm::Sha256);
        assert_eq!(s.encoding, SignatureEncoding::Hex);
        assert!(
            serde_json::from_value::<HmacScheme>(serde_json::json!({"header": "X", "hdr": 1}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<HmacScheme>(
                serde_json::json!({"header": "X", "algorithm": "md5"})
            )
            .is_err()
        );
    }

    #[test]
    fn validate_reports_template_problems() {
        let bad: &[(serde_json::Value, &str)] = &[
            (
                serde_json::json!({"header": "X", "signed_content": "{nope}"}),
                "unknown placeholder {nope}",
            ),
            (
                serde_json::json!({"header": "X", "signed_content": "{timestamp}.{body}"}),
                "no timestamp_header",
            ),
            (
                serde_json::json!({"header": "X", "signed_content": "a}b"}),
                "unmatched",
            ),
            (
                serde_json::json!({"header": "bad header"}),
                "not a valid header name",
            ),
        ];
        for (value, want) in bad {
            let err = scheme(value.clone()).validate().err().unwrap_or_default();
            assert!(err.contains(want), "{err} should contain {want}");
        }
        assert!(
            scheme(serde_json::json!({"header": "X", "signed_content": "{{x}}{body}"}))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn only_schemes_with_url_placeholder_need_the_url() {
        let with = scheme(serde_json::json!({"header": "X", "signed_content": "{url}|{body}"}));
        let without = scheme(serde_json::json!({"header": "X", "signed_content": "{{url}}{body}"}));
        assert!(with.signs_url());
        assert!(!without.signs_url());
        let opts = |s: &HmacScheme| VerifyOptions {
            tolerance: None,
            hmac: Some(s.clone()),
        };
        assert!(super::super::needs_url(Provider::Hmac, &opts(&with)));
        assert!(!super::super::needs_url(Provider::Hmac, &opts(&without)));
        assert!(!super::super::needs_url(Provider::Github, &opts(&with)));
        assert!(super::super::needs_url(
            Provider::Twilio,
            &VerifyOptions::default()
        ));
    }

    #[test]
    fn cases() {
        let s = scheme(serde_json::json!({
            "header": "X-Signature",
            "algorithm": "sha512",
            "encoding": "base64",
            "prefix": "v1=",
            "timestamp_header": "X-Timestamp",
            "signed_content": "{method} {url} {timestamp}.{body}"
        }));
        let body = br#"{"a":1}"#;
        let url = "https://example.com/hooks/x";
        let content = s
            .content(body, "1700000000", "POST", url)
            .unwrap_or_default();
        let sig = Enc::Base64.encode(&hmac(Alg::Sha512, b"k", &[&content]));
        let ms_content = s
            .content(body, "1700000000000", "POST", url)
            .unwrap_or_default();
        let ms_sig = Enc::Base64.encode(&hmac(Alg::Sha512, b"k", &[&ms_content]));
        let opts = VerifyOptions {
            tolerance: None,
            hmac: Some(s),
        };
        let base = |name: &str| {
            Case::new(name, body)
                .url(url)
                .now(at(1_700_000_000))
                .header("X-Signature", &format!("v1={sig}"))
                .header("X-Timestamp", "1700000000")
        };
        run_cases_with(
            Provider::Hmac,
            &Keys::secrets(["k"]),
            &opts,
            &[
                base("valid").expect(Expect::Ok(0)),
                base("listed with another")
                    .header("X-Signature", &format!("v1=AAAA, v1={sig}"))
                    .expect(Expect::Ok(0)),
                base("milliseconds")
                    .header("X-Signature", &format!("v1={ms_sig}"))
                    .header("X-Timestamp", "1700000000000")
                    .expect(Expect::Ok(0)),
                base("tampered").body(b"{}").expect(Expect::NoMatch),
                base("other method").method("PUT").expect(Expect::NoMatch),
                base("expired")
                    .now(at(1_700_000_301))
                    .expect(Expect::TooOld),
                base("future")
                    .now(at(1_699_999_699))
                    .expect(Expect::InFuture),
                base("no prefix")
                    .header("X-Signature", &sig)
                    .expect(Expect::Malformed),
                Case::new("missing", body)
                    .header("X-Timestamp", "1")
                    .expect(Expect::Missing("X-Signature")),
            ],
        );
        run_cases_with(
            Provider::Hmac,
            &Keys::secrets(["k"]),
            &opts,
            &[
                base("other url")
                    .url("https://example.com/hooks/y")
                    .expect(Expect::NoMatch),
                base("no url given")
                    .url("")
                    .expect(Expect::Other(VerifyError::MissingUrl)),
            ],
        );
        run_cases_with(
            Provider::Hmac,
            &Keys::secrets(["old", "k"]),
            &opts,
            &[base("rotated").expect(Expect::Ok(1))],
        );
        run_cases_with(
            Provider::Hmac,
            &Keys::secrets(["k"]),
            &VerifyOptions::default(),
            &[base("no scheme").expect(Expect::Other(VerifyError::MissingHmacScheme))],
        );
    }
}
