//! What the first-party plugins share: turning HTTP outcomes into retryable or fatal
//! errors the same way everywhere, cutting response bodies down for the execution log,
//! HMAC signing, and small input checks.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hookwise_plugin_sdk::PluginError;
use hookwise_plugin_sdk::http::{self, ErrorKind, Response};

/// Bytes of a response body kept in log lines and error messages.
pub const MAX_LOGGED_BODY: usize = 2048;

/// Turns a transport failure into a plugin error: refusals (the host did not grant the
/// destination) and malformed requests are fatal, timeouts and network errors retryable.
pub fn transport_error(what: &str, error: http::Error) -> PluginError {
    let message = format!("{what}: {}", error.message);
    match error.kind {
        ErrorKind::Refused => PluginError::fatal(format!(
            "{message} (grant the destination in the plugin's `allow.http`: `host` means HTTPS \
             on port 443 only, write `http://host` or `host:port` for the rest)"
        )),
        ErrorKind::Invalid => PluginError::fatal(message),
        ErrorKind::Timeout => PluginError::retryable(format!("{what}: timed out")),
        ErrorKind::Network => PluginError::retryable(message),
    }
}

/// The usual classification of an answer that is not a success: 408, 429 and 5xx are
/// retryable (honouring `Retry-After`), any other status is fatal.
pub fn status_error(what: &str, response: &Response) -> PluginError {
    let message = format!(
        "{what} answered {}: {}",
        response.status,
        body_excerpt(&response.body, MAX_LOGGED_BODY)
    );
    if is_retryable_status(response.status) {
        let error = PluginError::retryable(message);
        match response.retry_after() {
            Some(after) => error.retry_after(after),
            None => error,
        }
    } else {
        PluginError::fatal(message)
    }
}

/// 408 Request Timeout, 425 Too Early, 429 Too Many Requests and every 5xx.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500..=599)
}

/// A retryable error with an explicit delay.
pub fn retry_later(message: String, after: Option<Duration>) -> PluginError {
    let error = PluginError::retryable(message);
    match after {
        Some(after) => error.retry_after(after),
        None => error,
    }
}

/// The body as text, cut to `max` bytes (on a character boundary) with a marker.
pub fn body_excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    truncate(text.trim(), max)
}

/// `text` cut to at most `max` bytes on a character boundary, with `…[truncated]` appended
/// when something was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated {} bytes]", &text[..end], text.len() - end)
}

/// Hash functions for HMAC signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// HMAC of `content` with `key`.
pub fn hmac(algorithm: HmacAlgorithm, key: &[u8], content: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], content: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(content);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match algorithm {
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, content),
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, content),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, content),
    }
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a host.
pub fn check_url(field: &str, url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{field}` must be an http:// or https:// URL, got {url:?}"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{field}` is not a valid URL: {url:?}"));
    }
    Ok(())
}

/// Header names: RFC 9110 tokens.
pub fn check_header_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid header name"))
    }
}

/// Header values must not contain line breaks (header injection) or other controls.
pub fn check_header_value(name: &str, value: &str) -> Result<(), String> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        Err(format!("header {name} contains a control character"))
    } else {
        Ok(())
    }
}

/// Percent-encodes a URL path segment or query component (RFC 3986 unreserved kept).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends `name=value` pairs to `url`'s query string.
pub fn with_query(url: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return url.to_string();
    }
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let mut out = base.to_string();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    if base.ends_with('?') || base.ends_with('&') {
        sep = '\0';
    }
    for (name, value) in pairs {
        if sep != '\0' {
            out.push(sep);
        }
        sep = '&';
        out.push_str(&percent_encode(name));
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_char_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("aé", 2), "a…[truncated 2 bytes]");
    }

    #[test]
    fn query_strings() {
        let q = vec![("a b".to_string(), "x&y".to_string())];
        assert_eq!(with_query("http://h/p", &q), "http://h/p?a%20b=x%26y");
        assert_eq!(
            with_query("http://h/p?z=1", &q),
            "http://h/p?z=1&a%20b=x%26y"
        );
        assert_eq!(with_query("http://h/p#f", &q), "http://h/p?a%20b=x%26y#f");
    }

    #[test]
    fn hmac_sha256_known_answer() {
        // RFC 4231 test case 2.
        let mac = hmac(
            HmacAlgorithm::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
        );
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
