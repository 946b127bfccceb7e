//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! Only hosts granted to the plugin are reachable; the host adds the
//! `Idempotency-Key` header itself. A request with a body carries `Content-Length`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::poll::{self, Pollable};
use crate::bindings::wasi::io::streams::StreamError;

/// Largest chunk handed to one `blocking-write-and-flush` (the WASI limit is 4096).
const WRITE_CHUNK: usize = 4096;
/// The header that carries the request body's length.
const CONTENT_LENGTH: &str = "content-length";
/// Bytes asked for per read of the response body.
const READ_CHUNK: u64 = 64 * 1024;

/// A received response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First header with this name (case-insensitive), when it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The `Retry-After` header as a delay from now (delta-seconds or an HTTP date).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.header("retry-after")?.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let at = parse_http_date(value)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(Duration::from_secs(at.saturating_sub(now)))
    }
}

/// Why a request produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The host refused it: the destination is not granted to this plugin (nothing was sent).
    Refused,
    /// No answer in time (the plugin's own timeout or the host's).
    Timeout,
    /// The request itself is malformed (URL, method, header); retrying cannot help.
    Invalid,
    /// DNS, connection, TLS or protocol failure; usually transient.
    Network,
}

/// A request that produced no response.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Sends one request and reads the whole response.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, String> {
    request(method, url, headers, body, None).map_err(|e| e.message)
}

/// Sends one request and reads the whole response within `timeout` (from the start of the
/// request to the last body byte; `None`: only the host's limit applies). Errors say what
/// kind of failure it was, so callers can tell retryable from fatal.
///
/// A body goes out with its `Content-Length` (a `content-length` in `headers` is replaced),
/// never chunked; so does an empty `POST`, `PUT` or `PATCH` (`Content-Length: 0`).
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Option<Duration>,
) -> Result<Response, Error> {
    let deadline = timeout.map(|t| monotonic_clock::now().saturating_add(nanos(t)));
    let invalid = |m: String| Error::new(ErrorKind::Invalid, m);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid(format!("not an absolute URL: {url}")))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        return Err(invalid(format!("no host in URL: {url}")));
    }
    let method = method.to_ascii_uppercase();
    let length = content_length(&method, body);
    let fields = Fields::new();
    for (name, value) in headers {
        // The length is the body's own; a caller's value could only disagree with it.
        if name.eq_ignore_ascii_case(CONTENT_LENGTH) {
            continue;
        }
        fields
            .append(name, value.as_bytes())
            .map_err(|e| invalid(format!("header {name}: {e:?}")))?;
    }
    if let Some(length) = length {
        fields
            .append(CONTENT_LENGTH, length.to_string().as_bytes())
            .map_err(|e| invalid(format!("header {CONTENT_LENGTH}: {e:?}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let method = match method.as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    };
    request
        .set_method(&method)
        .map_err(|()| invalid("invalid method".to_string()))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("invalid scheme".to_string()))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| invalid(format!("invalid authority {authority:?}")))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|()| invalid(format!("invalid path {path:?}")))?;

    // Without a body resource the host sends none (and no length), as a GET should.
    let outgoing_body = match length {
        Some(_) => Some(
            request
                .body()
                .map_err(|()| invalid("request body already taken".to_string()))?,
        ),
        None => None,
    };
    let future = outgoing_handler::handle(request, None).map_err(classify)?;
    // A body that cannot be written usually means the host refused or failed the request;
    // the response future then says why, so it is consulted before the write error.
    let write_error =
        outgoing_body.and_then(|outgoing| write_body(outgoing, body.unwrap_or_default()).err());

    let response = loop {
        match future.get() {
            Some(result) => {
                break result
                    .map_err(|()| invalid("response already taken".to_string()))?
                    .map_err(classify)?;
            }
            None => wait(&future.subscribe(), deadline)?,
        }
    };
    if let Some(error) = write_error {
        return Err(error);
    }
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| invalid("response body already taken".to_string()))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| invalid("response body stream already taken".to_string()))?;
        loop {
            match stream.read(READ_CHUNK) {
                Ok(chunk) if chunk.is_empty() => wait(&stream.subscribe(), deadline)?,
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error::new(
                        ErrorKind::Network,
                        format!("reading response body: {}", e.to_debug_string()),
                    ));
                }
            }
        }
    }
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The `Content-Length` a request carries: the body's length when there is a body, 0 for a
/// method that is expected to carry one (`POST`, `PUT`, `PATCH`) but has none, else none.
///
/// A known length goes out as `Content-Length` so the host sends the body as is: without
/// it the body would go out chunked, which some receivers refuse (411) or mis-read.
fn content_length(method: &str, body: Option<&[u8]>) -> Option<usize> {
    match body {
        Some(bytes) => Some(bytes.len()),
        None if matches!(method, "POST" | "PUT" | "PATCH") => Some(0),
        None => None,
    }
}

/// Writes the whole body and finishes it. The host checks the bytes written against the
/// `Content-Length` sent: more fail the write, fewer fail `finish`.
fn write_body(outgoing: OutgoingBody, bytes: &[u8]) -> Result<(), Error> {
    let mut result = Ok(());
    {
        // The stream is a child of the body: it must be gone before `finish`.
        let stream = outgoing.write().map_err(|()| {
            Error::new(
                ErrorKind::Invalid,
                "request body stream already taken".to_string(),
            )
        })?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            if let Err(e) = stream.blocking_write_and_flush(chunk) {
                result = Err(Error::new(
                    ErrorKind::Network,
                    format!("writing request body: {e:?}"),
                ));
                break;
            }
        }
    }
    match OutgoingBody::finish(outgoing, None) {
        Err(code) if result.is_ok() => Err(classify(code)),
        _ => result,
    }
}

/// Blocks until `ready` fires, or fails with a timeout once `deadline` has passed.
fn wait(ready: &Pollable, deadline: Option<u64>) -> Result<(), Error> {
    let Some(deadline) = deadline else {
        ready.block();
        return Ok(());
    };
    let timer = monotonic_clock::subscribe_instant(deadline);
    let fired = poll::poll(&[ready, &timer]);
    if fired.contains(&0) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Timeout,
            "timed out waiting for the response",
        ))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Sorts a `wasi:http` error code into the kinds callers act on.
fn classify(code: ErrorCode) -> Error {
    let kind = match &code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => ErrorKind::Refused,
        ErrorCode::DnsTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => ErrorKind::Timeout,
        ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_)
        | ErrorCode::HttpRequestBodySize(_)
        | ErrorCode::HttpProtocolError => ErrorKind::Invalid,
        _ => ErrorKind::Network,
    };
    let message = match kind {
        ErrorKind::Refused => format!("refused by the host (not granted to this plugin): {code:?}"),
        _ => format!("{code:?}"),
    };
    Error::new(kind, message)
}

/// Seconds since the Unix epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(value: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = value.split_whitespace();
    let _weekday = parts.next()?;
    let day: u64 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u64 + 1;
    let year: u64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT"
        || !(1..=31).contains(&day)
        || year < 1970
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), years from March.
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::{content_length, parse_http_date};

    #[test]
    fn requests_with_a_known_body_carry_its_length() {
        assert_eq!(content_length("POST", Some(b"{\"a\":1}")), Some(7));
        assert_eq!(content_length("GET", Some(b"x")), Some(1));
        assert_eq!(content_length("DELETE", Some(b"")), Some(0));
        assert_eq!(content_length("POST", None), Some(0));
        assert_eq!(content_length("PUT", None), Some(0));
        assert_eq!(content_length("PATCH", None), Some(0));
        assert_eq!(content_length("GET", None), None);
        assert_eq!(content_length("HEAD", None), None);
        assert_eq!(content_length("DELETE", None), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
    }
}
