//! Outbound HTTP for plugins: the address policy (no loopback/private/link-local/metadata
//! targets unless granted by exact `ip:port`), and the `wasi:http` send hook that enforces it
//! and the plugin's `http` grant (scheme, host, port, method), resolves DNS itself, connects to
//! the address it checked, caps time and response size, adds `Idempotency-Key`, and records
//! every request. HTTPS trusts the public web PKI, plus the CAs the config gives a plugin.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

pub use crate::config::http_grant::HttpGrant;
use crate::config::http_grant::{Scheme, normalise_host};

/// Header the host sets on every outbound request.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Time allowed for resolving a host name.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an unsent request's body is read, and for how long, before its refusal or
/// failure is answered (see [`drain_unsent`]).
const DRAIN_BYTES: usize = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Addresses a plugin may only reach when granted by exact `ip:port`:
/// loopback, private, link-local, CGNAT, unspecified, multicast, reserved
/// and cloud metadata addresses (IPv4-mapped/NAT64/6to4 forms included).
pub fn is_restricted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_restricted_v4(v4),
        IpAddr::V6(v6) => is_restricted_v6(v6),
    }
}

/// Azure's platform endpoint (the others' metadata services sit in
/// link-local or CGNAT space, which is refused anyway).
const AZURE_WIRESERVER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

fn is_restricted_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()                          // 127/8
        || ip.is_private()                    // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()                 // 169.254/16 (AWS/GCP/Azure metadata)
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0                             // "this network"
        || (a == 100 && (b & 0xc0) == 64)     // CGNAT 100.64/10 (Alibaba metadata)
        || (a == 192 && b == 0 && c == 0)     // IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18)     // benchmarking 198.18/15
        || a >= 240                           // reserved
        || ip == AZURE_WIRESERVER
}

fn is_restricted_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_restricted_v4(v4);
    }
    // NAT64 64:ff9b::/96 embeds an IPv4 address in the last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        return is_restricted_v4(embedded_v4(s[6], s[7]));
    }
    // 6to4 2002::/16 embeds one in bits 16..48.
    if s[0] == 0x2002 {
        return is_restricted_v4(embedded_v4(s[1], s[2]));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00              // unique local fc00::/7 (incl. fd00:ec2::254)
        || (s[0] & 0xffc0) == 0xfe80              // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0              // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8)     // documentation
        || (s[0] == 0x2001 && s[1] == 0)          // Teredo
        || s[..6].iter().all(|&x| x == 0) // IPv4-compatible ::a.b.c.d
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// What the host recorded about one outbound request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpCallRecord {
    pub method: String,
    /// Scheme, host, port and path; never the query string or userinfo.
    pub url: String,
    /// Response status, when a response arrived.
    pub status: Option<u16>,
    /// Why the request failed or was refused.
    pub error: Option<String>,
    /// True when the grant or address policy refused the request (nothing was sent).
    pub refused: bool,
    /// Time until the response headers arrived (or the failure).
    pub duration: Duration,
    /// Response body bytes the plugin read.
    pub response_bytes: u64,
}

#[derive(Debug)]
struct PendingRecord {
    record: HttpCallRecord,
    bytes: Arc<AtomicU64>,
}

/// Per-call HTTP limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    pub(crate) timeout: Duration,
    pub(crate) max_response_bytes: u64,
    pub(crate) max_requests: usize,
}

/// What plugins' HTTPS trusts: the public web PKI (webpki roots) for every plugin, and for
/// plugins given extra certificate authorities, those too. Cheap to clone.
#[derive(Clone, Default)]
pub struct PluginTls {
    /// The client configuration of each plugin with extra CAs, built once.
    extra: Arc<HashMap<String, Arc<rustls::ClientConfig>>>,
}

impl PluginTls {
    /// Adds `certs` to what the HTTPS of the plugin called `plugin` trusts. Empty `certs`
    /// changes nothing. Fails on a certificate that is no usable trust anchor.
    pub fn with_extra_roots(
        mut self,
        plugin: &str,
        certs: &[CertificateDer<'static>],
    ) -> Result<Self, rustls::Error> {
        if certs.is_empty() {
            return Ok(self);
        }
        let mut roots = webpki_root_store();
        for cert in certs {
            roots.add(cert.clone())?;
        }
        let config = client_config(roots)?;
        Arc::make_mut(&mut self.extra).insert(plugin.to_string(), config);
        Ok(self)
    }

    /// The client configuration of `plugin`'s HTTPS: None means the shared default
    /// (webpki roots only).
    pub(crate) fn for_plugin(&self, plugin: &str) -> Option<Arc<rustls::ClientConfig>> {
        self.extra.get(plugin).cloned()
    }
}

/// State shared between the store and the request futures of one call.
#[derive(Debug)]
struct CallHttpState {
    grant: Arc<HttpGrant>,
    /// The plugin's own TLS client configuration; None uses the default one.
    tls: Option<Arc<rustls::ClientConfig>>,
    idempotency_key: Option<HeaderValue>,
    limits: HttpLimits,
    records: Mutex<Vec<PendingRecord>>,
}

/// The `WasiHttpHooks` of one call (clones share the call's records).
#[derive(Clone)]
pub(crate) struct HttpHooks {
    state: Arc<CallHttpState>,
}

/// Why the host refused a request before connecting.
#[derive(Debug)]
enum Refusal {
    NotGranted(String),
    Restricted(String),
    TooMany,
}

impl HttpHooks {
    pub(crate) fn new(
        grant: Arc<HttpGrant>,
        tls: Option<Arc<rustls::ClientConfig>>,
        idempotency_key: &str,
        limits: HttpLimits,
    ) -> Self {
        Self {
            state: Arc::new(CallHttpState {
                grant,
                tls,
                idempotency_key: HeaderValue::from_str(idempotency_key).ok(),
                limits,
                records: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Sends one request as the `wasi:http` hook does: grant, address policy, limits,
    /// `Idempotency-Key`, record. The second value drives the connection while the body is
    /// read.
    pub(crate) async fn send(&self, request: http::Request<WasiBody>) -> SendResult {
        self.state.clone().send(request).await
    }

    /// The records so far (byte counts read at this moment).
    pub(crate) fn records(&self) -> Vec<HttpCallRecord> {
        let records = self.state.records.lock().unwrap_or_else(|e| e.into_inner());
        records
            .iter()
            .map(|p| HttpCallRecord {
                response_bytes: p.bytes.load(Ordering::Relaxed),
                ..p.record.clone()
            })
            .collect()
    }
}

/// Reads the body of a request that was refused or failed before it was sent (at most
/// `DRAIN_BYTES`, for at most `DRAIN_TIME`) and drops it. A guest may write its body after it
/// handed the request over (JavaScript's `fetch` does): dropping the body at once closed the
/// stream under that write, which the JavaScript runtime turned into a trap instead of the
/// refusal, depending on which side ran first.
async fn drain_unsent(mut body: WasiBody) {
    let read = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen = seen.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
            if seen > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// The guest's request body as hyper sends it: a task forwards the guest's frames, and once
/// hyper stops wanting them (the server answered, or closed the connection, before it read
/// the whole body) reads the rest like [`drain_unsent`]. Handing the guest's body to hyper
/// directly closed it under the guest's writes in that case, and the JavaScript runtime
/// traps on such a write (a POST to a server answering without reading the body trapped).
fn pumped(mut body: WasiBody) -> PumpedBody {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let failed = frame.is_err();
            if tx.send(frame).await.is_err() {
                drain_unsent(body).await;
                return;
            }
            if failed {
                return;
            }
        }
    });
    PumpedBody { rx }
}

/// See [`pumped`].
struct PumpedBody {
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, HttpError>>,
}

impl Body for PumpedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        self.rx.poll_recv(cx)
    }
}

pub(crate) type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
pub(crate) type SendResult = Result<(http::Response<WasiBody>, IoFuture), HttpError>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let state = self.state.clone();
        Box::new(async move { state.send(request).await })
    }
}

impl CallHttpState {
    async fn send(self: Arc<Self>, request: http::Request<WasiBody>) -> SendResult {
        let started = Instant::now();
        let bytes = Arc::new(AtomicU64::new(0));
        let index = {
            let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
            // Past the limit only the first refusal is recorded, so a plugin
            // looping on requests cannot grow the record list.
            if records.len() > self.limits.max_requests {
                return Err(HttpError::HttpRequestDenied);
            }
            records.push(PendingRecord {
                record: HttpCallRecord {
                    method: request.method().to_string(),
                    url: redact(request.uri()),
                    status: None,
                    error: None,
                    refused: false,
                    duration: Duration::ZERO,
                    response_bytes: 0,
                },
                bytes: bytes.clone(),
            });
            records.len() - 1
        };
        let (parts, body) = request.into_parts();
        let mut body = Some(body);
        let result = if index >= self.limits.max_requests {
            Err(SendError::Refused(Refusal::TooMany))
        } else {
            match tokio::time::timeout(
                self.limits.timeout,
                self.send_checked(parts, &mut body, bytes),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(SendError::Failed(HttpError::ConnectionTimeout)),
            }
        };
        if let Some(body) = body {
            drain_unsent(body).await;
        }
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pending) = records.get_mut(index) {
            pending.record.duration = started.elapsed();
            match &result {
                Ok((response, _)) => pending.record.status = Some(response.status().as_u16()),
                Err(SendError::Refused(refusal)) => {
                    pending.record.refused = true;
                    pending.record.error = Some(refusal.to_string());
                }
                Err(SendError::Failed(e)) => pending.record.error = Some(e.to_string()),
            }
        }
        result.map_err(|e| match e {
            SendError::Refused(Refusal::Restricted(_)) => HttpError::DestinationIpProhibited,
            SendError::Refused(Refusal::NotGranted(_) | Refusal::TooMany) => {
                HttpError::HttpRequestDenied
            }
            SendError::Failed(e) => e,
        })
    }

    /// Sends the request of `parts` and the body in `body`, which it takes only once every
    /// check passed and a connection is open.
    async fn send_checked(
        &self,
        parts: http::request::Parts,
        body: &mut Option<WasiBody>,
        counter: Arc<AtomicU64>,
    ) -> Result<(http::Response<WasiBody>, IoFuture), SendError> {
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let uri = parts.uri.clone();
        let scheme = uri
            .scheme_str()
            .and_then(Scheme::parse)
            .ok_or(SendError::Failed(HttpError::HttpRequestUriInvalid))?;
        let host = uri
            .host()
            .map(normalise_host)
            .ok_or(SendError::Failed(HttpError::HttpRequestUriInvalid))?;
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        let method = parts.method.clone();
        if !self.grant.allows(&method, scheme, &host, port) {
            return Err(SendError::Refused(Refusal::NotGranted(format!(
                "{method} {}://{host}:{port} is not granted",
                scheme.as_str()
            ))));
        }
        let candidates: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                match tokio::time::timeout(
                    DNS_TIMEOUT,
                    tokio::net::lookup_host((host.as_str(), port)),
                )
                .await
                {
                    Ok(Ok(addrs)) => addrs.collect(),
                    Ok(Err(e)) => {
                        return Err(SendError::Failed(HttpError::DnsError {
                            rcode: Some(e.to_string()),
                            info_code: None,
                        }));
                    }
                    Err(_) => return Err(SendError::Failed(HttpError::DnsTimeout)),
                }
            }
        };
        let allowed: Vec<SocketAddr> = candidates
            .iter()
            .copied()
            .filter(|addr| {
                !is_restricted(addr.ip()) || self.grant.address_granted(&method, scheme, *addr)
            })
            .collect();
        if allowed.is_empty() {
            return Err(SendError::Refused(Refusal::Restricted(format!(
                "{host}:{port} resolves only to restricted addresses ({candidates:?}); grant the exact address and port (`{}://ip:port`) to allow",
                scheme.as_str()
            ))));
        }
        let mut last_error = None;
        let mut stream = None;
        for addr in allowed {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(stream) = stream else {
            return Err(SendError::Failed(match last_error {
                Some(e) => HttpError::Connect(e),
                None => HttpError::ConnectionRefused,
            }));
        };
        let io: Box<dyn Io> = if scheme == Scheme::Https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| SendError::Failed(HttpError::TlsCertificateError))?;
            let config = match &self.tls {
                Some(config) => config.clone(),
                None => tls_config().map_err(|_| SendError::Failed(HttpError::TlsProtocolError))?,
            };
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| SendError::Failed(HttpError::Tls(e)))?;
            Box::new(tls)
        } else {
            Box::new(stream)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Failed(HttpError::Hyper(e)))?;
        let conn = AbortOnDrop(tokio::spawn(conn));

        let Some(body) = body.take() else {
            // Only this function takes the body, once.
            return Err(SendError::Failed(HttpError::InternalError(None)));
        };
        let mut request = http::Request::from_parts(parts, pumped(body));
        // The origin-form target goes on the wire; scheme and authority were
        // checked above and the Host header is set by wasmtime-wasi-http.
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        *request.uri_mut() = Uri::builder()
            .path_and_query(path)
            .build()
            .map_err(|_| SendError::Failed(HttpError::HttpRequestUriInvalid))?;
        if let Some(key) = &self.idempotency_key {
            request
                .headers_mut()
                .insert(IDEMPOTENCY_KEY_HEADER, key.clone());
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SendError::Failed(HttpError::Hyper(e)))?;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.limits.max_response_bytes) {
            return Err(SendError::Failed(HttpError::HttpResponseBodySize(declared)));
        }
        let max = self.limits.max_response_bytes;
        let response = response.map(|incoming| {
            LimitedBody {
                inner: incoming,
                remaining: max,
                counter,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
            }
            .boxed_unsync()
        });
        let io: IoFuture = Box::new(async move {
            // wasmtime runs this future as the response's worker task and aborts it when the
            // guest drops the response. Until then it drives the connection, so that bodies
            // larger than what arrived with the headers can be read to the end.
            let mut conn = conn;
            match (&mut conn.0).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(HttpError::Hyper(e)),
                Err(_) => Ok(()),
            }
        });
        Ok((response, io))
    }
}

#[derive(Debug)]
enum SendError {
    Refused(Refusal),
    Failed(HttpError),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotGranted(why) => write!(f, "refused: {why}"),
            Refusal::Restricted(why) => write!(f, "refused: {why}"),
            Refusal::TooMany => write!(f, "refused: too many requests in one call"),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The default TLS client configuration (webpki roots, ring), built once.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, rustls::Error>> = OnceLock::new();
    CONFIG
        .get_or_init(|| client_config(webpki_root_store()))
        .clone()
}

/// The public web PKI: the Mozilla roots compiled into hookwise.
fn webpki_root_store() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    }
}

/// A TLS client configuration (ring, safe protocol versions) trusting `roots`.
fn client_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
}

/// Response body that enforces the size cap and the request deadline, and
/// counts the bytes the plugin read.
struct LimitedBody {
    inner: hyper::body::Incoming,
    remaining: u64,
    counter: Arc<AtomicU64>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(None))));
                    }
                    this.remaining -= len;
                    this.counter.fetch_add(len, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::Hyper(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// `scheme://host[:port]/path`, without userinfo or query string.
fn redact(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("https");
    let host = uri.host().unwrap_or("");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{host}{port}{}", uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_addresses() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "168.63.129.16",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(is_restricted(ip), "{ip} should be restricted");
        }
        for ip in [
            "93.184.216.34",
            "140.82.112.3",
            "2606:4700::6810:85e5",
            "100.128.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(!is_restricted(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn redaction_drops_query_and_userinfo() {
        let uri: Uri = "https://user:pw@api.example.com:8443/v1/x?token=secret"
            .parse()
            .unwrap_or_default();
        assert_eq!(redact(&uri), "https://api.example.com:8443/v1/x");
    }
}
