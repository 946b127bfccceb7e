//! Helpers every scheme shares: HMAC, encodings, constant-time comparison, header access,
//! `k=v` lists, timestamp checks and RFC 3339 dates.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Mac, digest::KeyInit};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use super::{Ctx, VerifyError};
use std::time::Duration;

/// A hash function for HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Alg {
    /// The algorithm named by a WebSub-style prefix such as `sha256` in `sha256=...`.
    pub(super) fn from_name(name: &str) -> Option<Alg> {
        match name.to_ascii_lowercase().as_str() {
            "sha1" => Some(Alg::Sha1),
            "sha256" => Some(Alg::Sha256),
            "sha384" => Some(Alg::Sha384),
            "sha512" => Some(Alg::Sha512),
            _ => None,
        }
    }
}

/// HMAC of the concatenation of `parts` under `key`.
pub(super) fn hmac(alg: Alg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC takes keys of any length, so this never fails; an empty result never matches.
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        Alg::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(key, parts),
        Alg::Sha256 => run::<hmac::Hmac<sha2::Sha256>>(key, parts),
        Alg::Sha384 => run::<hmac::Hmac<sha2::Sha384>>(key, parts),
        Alg::Sha512 => run::<hmac::Hmac<sha2::Sha512>>(key, parts),
    }
}

/// Plain SHA-256 of the concatenation of `parts`.
pub(super) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// Constant-time equality; empty values never match.
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    !a.is_empty() && bool::from(a.ct_eq(b))
}

/// How a signature is written in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Enc {
    Hex,
    Base64,
}

impl Enc {
    pub(super) fn encode(self, bytes: &[u8]) -> String {
        match self {
            Enc::Hex => hex::encode(bytes),
            Enc::Base64 => STANDARD.encode(bytes),
        }
    }

    /// Decodes hex (either case) or base64 (with or without padding).
    pub(super) fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Enc::Hex => hex_decode(text),
            Enc::Base64 => b64_decode(text),
        }
        .filter(|b| !b.is_empty())
    }
}

/// Hex, either case. (The `hex` crate's decoder, through its iterator adapters, took as long
/// as the rest of a GitHub signature check on the reject path.)
pub(super) fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 2);
    for pair in text.chunks_exact(2) {
        out.push((nibble(pair[0])? << 4) | nibble(pair[1])?);
    }
    Some(out)
}

pub(super) fn b64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
}

pub(super) fn b64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A header's value, trimmed; missing or non-ASCII values are errors.
pub(super) fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    opt_header(headers, name)?.ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

/// A header's value, trimmed, if present; present but not visible ASCII is an error.
pub(super) fn opt_header<'a>(
    headers: &'a http::HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, VerifyError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| malformed(name, "not visible ASCII")),
    }
}

pub(super) fn malformed(name: &str, reason: impl Into<String>) -> VerifyError {
    VerifyError::MalformedHeader {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Splits `a=1,b=2` style lists (any separator) into trimmed `(key, value)` pairs; items with no
/// `=` are skipped. Values keep any later `=` (base64 padding).
pub(super) fn pairs(text: &str, sep: char) -> impl Iterator<Item = (&str, &str)> {
    text.split(sep)
        .filter_map(|item| item.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// Decodes the candidate signatures, skipping any that do not decode: one malformed entry must
/// not sink a header that also carries a valid signature, and every provider SDK that lists
/// signatures (Stripe, Paddle, PagerDuty, Standard Webhooks) skips it the same way. A header
/// whose entries all fail to decode is malformed, and so is one with no entry at all.
pub(super) fn decode_all<'a>(
    name: &str,
    enc: Enc,
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Vec<u8>>, VerifyError> {
    let mut out = Vec::new();
    let mut undecodable = false;
    for text in texts.into_iter().filter(|t| !t.is_empty()) {
        match enc.decode(text) {
            Some(bytes) => out.push(bytes),
            None => undecodable = true,
        }
    }
    if out.is_empty() {
        let what = match (undecodable, enc) {
            (false, _) => "no signature found",
            (true, Enc::Hex) => "signature is not hex",
            (true, Enc::Base64) => "signature is not base64",
        };
        return Err(malformed(name, what));
    }
    Ok(out)
}

/// The index of the first key whose expected signature equals any candidate (each comparison in
/// constant time).
pub(super) fn find_key<K>(
    keys: &[K],
    candidates: &[Vec<u8>],
    mut expected: impl FnMut(&K) -> Vec<u8>,
) -> Result<usize, VerifyError> {
    for (index, key) in keys.iter().enumerate() {
        let want = expected(key);
        if candidates.iter().any(|c| ct_eq(&want, c)) {
            return Ok(index);
        }
    }
    Err(VerifyError::NoSignatureMatched)
}

/// Parses a Unix timestamp in seconds from a header value.
pub(super) fn parse_secs(name: &str, text: &str) -> Result<i64, VerifyError> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|s| s.checked_mul(1000).is_some())
        .ok_or_else(|| malformed(name, "timestamp is not an integer number of seconds"))
}

/// Parses a Unix timestamp in milliseconds from a header value.
pub(super) fn parse_millis(name: &str, text: &str) -> Result<i64, VerifyError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| malformed(name, "timestamp is not an integer number of milliseconds"))
}

/// Whether a timestamp may also be too far in the future, or only too old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Window {
    /// Only old timestamps are refused (the provider checks age only).
    PastOnly,
    /// Timestamps too far either side of now are refused.
    BothWays,
}

/// Refuses `ts_ms` (Unix milliseconds) when it lies outside the context's tolerance.
pub(super) fn check_time(ctx: &Ctx, ts_ms: i64, window: Window) -> Result<(), VerifyError> {
    check_time_at(ctx.now_ms, ctx.tolerance, ts_ms, window)
}

pub(super) fn check_time_at(
    now_ms: i64,
    tolerance: Option<Duration>,
    ts_ms: i64,
    window: Window,
) -> Result<(), VerifyError> {
    let Some(tolerance) = tolerance else {
        return Ok(());
    };
    let tolerance_ms = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
    let age_ms = now_ms.saturating_sub(ts_ms);
    let secs = |ms: i64| u64::try_from(ms / 1000).unwrap_or(0);
    if age_ms > tolerance_ms {
        return Err(VerifyError::TimestampTooOld {
            age_secs: secs(age_ms),
            tolerance_secs: tolerance.as_secs(),
        });
    }
    let ahead_ms = age_ms.saturating_neg();
    if window == Window::BothWays && ahead_ms > tolerance_ms {
        return Err(VerifyError::TimestampInFuture {
            ahead_secs: secs(ahead_ms),
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(())
}

/// Parses an RFC 3339 date-time such as `2023-05-17T17:05:59.123456789Z` to Unix milliseconds.
pub(super) fn parse_rfc3339(text: &str) -> Option<i64> {
    crate::rfc3339::parse_millis(text)
}

/// Formats Unix milliseconds as RFC 3339 UTC with nanosecond digits, as Twitch sends it.
pub(super) fn format_rfc3339(ms: i64) -> String {
    let text = crate::rfc3339::format_millis(ms);
    format!("{}000000Z", text.trim_end_matches('Z'))
}

/// A stable, unique-looking id for signed test requests (no randomness needed): the hex SHA-256
/// of the body and the time, cut to `len` characters.
pub(super) fn pseudo_id(body: &[u8], now_ms: i64, len: usize) -> String {
    let digest = hex::encode(sha256(&[body, &now_ms.to_be_bytes()]));
    digest.chars().take(len).collect()
}

/// A pseudo id shaped like a UUID (8-4-4-4-12 hex digits).
pub(super) fn pseudo_uuid(body: &[u8], now_ms: i64) -> String {
    let h = pseudo_id(body, now_ms, 32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_either_case_and_refuses_the_rest() {
        assert_eq!(hex_decode("00ff7fA0"), Some(vec![0x00, 0xff, 0x7f, 0xa0]));
        assert_eq!(hex_decode(""), Some(vec![]));
        for bad in ["0", "0g", "g0", "0x00", " 00", "00 ", "é0", "+1"] {
            assert_eq!(hex_decode(bad), None, "{bad:?}");
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_decode(&hex::encode(&all)), Some(all.clone()));
        assert_eq!(hex_decode(&hex::encode_upper(&all)), Some(all));
    }

    #[test]
    fn rfc3339_round_trips_and_rejects_garbage() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2023-05-17T17:05:59.123456789Z", Some(1_684_343_159_123)),
            ("2023-05-17T19:05:59+02:00", Some(1_684_343_159_000)),
            ("2000-02-29T12:00:00.5Z", Some(951_825_600_500)),
            ("2023-05-17T17:05:59", None),
            ("2023-13-17T17:05:59Z", None),
            ("2023-05-17T17:05:59.Z", None),
            ("", None),
            ("x", None),
            ("2023-05-17T17:05:59Zjunk", None),
            ("２０２３-05-17T17:05:59Z", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339(text), *want, "{text}");
        }
        for ms in [0, 1_684_343_159_123, 951_825_600_500, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms));
        }
    }

    #[test]
    fn time_window_both_ways_and_past_only() {
        let tol = Some(Duration::from_secs(300));
        let now = 1_000_000_000;
        assert!(check_time_at(now, tol, now - 300_000, Window::BothWays).is_ok());
        assert_eq!(
            check_time_at(now, tol, now - 301_000, Window::BothWays),
            Err(VerifyError::TimestampTooOld {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            check_time_at(now, tol, now + 301_000, Window::BothWays),
            Err(VerifyError::TimestampInFuture {
                ahead_secs: 301,
                tolerance_secs: 300
            })
        );
        assert!(check_time_at(now, tol, now + 301_000, Window::PastOnly).is_ok());
        assert!(check_time_at(now, None, i64::MIN, Window::BothWays).is_ok());
        assert!(check_time_at(now, tol, i64::MAX, Window::BothWays).is_err());
        assert!(check_time_at(now, tol, i64::MIN, Window::BothWays).is_err());
    }

    #[test]
    fn decode_all_skips_bad_entries_but_not_all_of_them() {
        let hex_ok = "00ff";
        assert_eq!(
            decode_all("X", Enc::Hex, ["bad_signature", hex_ok, ""]),
            Ok(vec![vec![0x00, 0xff]])
        );
        assert_eq!(
            decode_all("X", Enc::Hex, ["bad_signature", "0"]),
            Err(malformed("X", "signature is not hex"))
        );
        assert_eq!(
            decode_all("X", Enc::Base64, ["@@@"]),
            Err(malformed("X", "signature is not base64"))
        );
        assert_eq!(
            decode_all("X", Enc::Hex, []),
            Err(malformed("X", "no signature found"))
        );
    }

    #[test]
    fn pairs_keep_padding_and_skip_junk() {
        let got: Vec<_> = pairs("t=1, v1=ab==,junk,v0=", ',').collect();
        assert_eq!(got, vec![("t", "1"), ("v1", "ab=="), ("v0", "")]);
    }
}
