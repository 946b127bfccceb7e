//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! Only hosts granted to the plugin are reachable; the host adds the
//! `Idempotency-Key` header itself.

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;

/// Largest chunk handed to one `blocking-write-and-flush` (the WASI limit is 4096).
const WRITE_CHUNK: usize = 4096;
/// Bytes asked for per read of the response body.
const READ_CHUNK: u64 = 64 * 1024;

/// A received response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Sends one request and reads the whole response.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not an absolute URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    let method = match method.to_ascii_uppercase().as_str() {
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
        .map_err(|()| "invalid method".to_string())?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "invalid scheme".to_string())?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "invalid authority".to_string())?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "invalid path".to_string())?;

    let outgoing_body = request
        .body()
        .map_err(|()| "request body already taken".to_string())?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    if let Some(bytes) = body {
        let stream = outgoing_body
            .write()
            .map_err(|()| "request body stream already taken".to_string())?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing request body: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing_body, None).map_err(|e| format!("{e:?}"))?;

    let response = loop {
        match future.get() {
            Some(result) => {
                break result
                    .map_err(|()| "response already taken".to_string())?
                    .map_err(|e| format!("{e:?}"))?;
            }
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| "response body already taken".to_string())?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| "response body stream already taken".to_string())?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(format!("reading response body: {}", e.to_debug_string()));
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
