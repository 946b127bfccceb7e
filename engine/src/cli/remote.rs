//! `--admin URL`: the operational commands (`events`, `logs`, `replay`, `dead-letters`) through
//! a node's admin JSON API instead of the store, so they run on any machine that reaches the
//! admin listener and holds its token. A small HTTP/1.1 client (hyper over rustls); answers are
//! read back into the structures the store gives, so one renderer prints both.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::Secret;
use crate::dispatch::ops::{Purged, Replayed, Replays, Story};
use crate::model::{EventId, ExecutionId, Millis};
use crate::scrub::Scrubber;
use crate::store::{DeadLetter, DeadLetterFilter, EventFilter, ListedEvent};

/// Where the operational commands find a node's admin API, and with what token.
#[derive(Debug, Default, Args)]
pub struct AdminArgs {
    /// Run through a hookwise node's admin API instead of opening the store: the URL of its
    /// admin listener, e.g. `http://127.0.0.1:9091` or `https://host:9091`. Any node of a
    /// cluster will do. The token comes from --token-file or HOOKWISE_ADMIN_TOKEN. Replaces
    /// --config.
    #[arg(long, value_name = "URL", help_heading = HEADING)]
    pub admin: Option<String>,
    /// With --admin: a file holding the admin token (the server's `hookwise-admin-token`, or
    /// the value of its `admin.token`). Default: the HOOKWISE_ADMIN_TOKEN environment variable.
    #[arg(long, value_name = "FILE", requires = "admin", help_heading = HEADING)]
    pub token_file: Option<PathBuf>,
    /// With --admin https://...: trust this CA or certificate (PEM), e.g. the admin
    /// listener's self-signed certificate, instead of the public roots.
    #[arg(long, value_name = "FILE", requires = "admin", help_heading = HEADING)]
    pub admin_ca: Option<PathBuf>,
    /// With --admin http://... to another host: send the token over plain HTTP anyway (only
    /// where a trusted network or a TLS tunnel protects the way).
    #[arg(long, requires = "admin", help_heading = HEADING)]
    pub insecure_http: bool,
}

/// Where `--help` lists these options.
const HEADING: &str = "Through a node's admin API";

/// The environment variable the token comes from when no --token-file is given.
pub const TOKEN_ENV: &str = "HOOKWISE_ADMIN_TOKEN";

/// How long to wait for a TCP connection to one address of the node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take in all: a retry of many dead letters plans them one by one
/// on the server (about a millisecond each), so the bound of 100,000 takes minutes.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
/// The largest answer read. A page of events carries their payloads (1 MiB each at most by
/// default), hence the small [`EVENT_PAGE`].
const MAX_ANSWER_BYTES: usize = 256 << 20;
/// Events asked for per page.
const EVENT_PAGE: i64 = 100;
/// Dead letters asked for per page: as many as the API gives (they are small).
const DEAD_LETTER_PAGE: i64 = crate::admin::MAX_PAGE;
/// How much of a server's error detail is shown.
const MAX_DETAIL_CHARS: usize = 300;

/// Why a command could not be done through the admin API. Every message is one line and
/// never holds the token.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("--admin `{url}`: {why}")]
    Url { url: String, why: &'static str },
    #[error(
        "--admin needs the admin token: pass --token-file FILE or set {TOKEN_ENV} (the server keeps a generated one in `hookwise-admin-token` beside its config)"
    )]
    NoToken,
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the admin token from {from} is empty or holds characters an HTTP header cannot carry")]
    BadToken { from: String },
    #[error("--admin-ca {path}: {detail}")]
    Ca { path: PathBuf, detail: String },
    #[error("--admin-ca applies to https:// URLs only; `{0}` is plain HTTP")]
    CaWithoutTls(String),
    #[error(
        "refusing to send the admin token over plain HTTP to {host}, which is not this machine: anyone on the way could read it. Use https:// (the server's `admin.tls`), or pass --insecure-http if a trusted network or tunnel protects the way"
    )]
    PlainHttp { host: String },
    #[error("cannot resolve {host}: {detail}")]
    Resolve { host: String, detail: String },
    #[error("cannot reach the admin listener at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("TLS with {url} failed: {detail}{hint}")]
    Tls {
        url: String,
        detail: String,
        hint: &'static str,
    },
    #[error("cannot set up TLS: {0}")]
    TlsSetup(String),
    #[error("the connection to {url} failed: {detail}")]
    Connection { url: String, detail: String },
    #[error("{url} did not answer within {} s", ANSWER_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("the answer of {url} is larger than {} MiB; ask for fewer with --limit", MAX_ANSWER_BYTES >> 20)]
    TooLarge { url: String },
    #[error(
        "the admin listener at {url} refused the token ({detail}); check --token-file or {TOKEN_ENV}"
    )]
    Unauthorized { url: String, detail: String },
    #[error(
        "the node at {url} has no route {route}: it runs an older hookwise; run the command on it without --admin"
    )]
    NoRoute { url: String, route: String },
    /// A refusal about the thing asked for (no such event, a rule that does not match, an
    /// unfinished execution): the server's words, as the command says them locally.
    #[error("{detail}")]
    Refused {
        status: StatusCode,
        code: String,
        detail: String,
    },
    #[error("{url} answered {status} ({code}): {detail}")]
    Status {
        url: String,
        status: StatusCode,
        code: String,
        detail: String,
    },
    #[error(
        "{url} answered {status} with something that is not the hookwise admin API (not JSON); is it the admin listener (default port 9091)?"
    )]
    NotJson { url: String, status: StatusCode },
    #[error(
        "{url} answered JSON this hookwise does not understand ({detail}); is it the same version?"
    )]
    Unexpected { url: String, detail: String },
}

/// A client of one node's admin API.
pub struct AdminClient {
    target: Target,
    token: Secret,
    /// Set for https:// URLs.
    tls: Option<tokio_rustls::TlsConnector>,
    insecure_http: bool,
}

/// The admin listener's place, from `--admin`.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    https: bool,
    /// Without brackets around an IPv6 address.
    host: String,
    port: u16,
    /// The path the API sits under (empty, or e.g. `/hookwise` behind a proxy), without a
    /// trailing slash.
    prefix: String,
    /// The URL as shown in messages: scheme, host and port (and the prefix).
    shown: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, AdminError> {
        let bad = |why| AdminError::Url {
            url: redacted(url),
            why,
        };
        let authority = url.split_once("://").map_or("", |(_, rest)| {
            rest.split(['/', '?', '#']).next().unwrap_or("")
        });
        if authority.contains('@') {
            return Err(bad(
                "put no credentials in the URL; the token comes from --token-file or HOOKWISE_ADMIN_TOKEN",
            ));
        }
        let uri: Uri = url
            .parse()
            .map_err(|_| bad("not a URL; write it like http://127.0.0.1:9091"))?;
        let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            Some(_) => return Err(bad("the scheme must be http:// or https://")),
            None => {
                return Err(bad(
                    "name the scheme, e.g. http://127.0.0.1:9091 or https://host:9091",
                ));
            }
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if uri.query().is_some() {
            return Err(bad("the URL takes no query string"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let prefix = uri.path().trim_end_matches('/').to_string();
        let scheme = if https { "https" } else { "http" };
        Ok(Target {
            https,
            shown: format!("{scheme}://{}{prefix}", authority.as_str()),
            host,
            port,
            prefix,
        })
    }

    /// The Host header: the authority as given (an IPv6 address in brackets).
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.https, self.port) {
            (true, 443) | (false, 80) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

/// One page of a list, as the API answers it.
#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Aborts the connection task when the exchange ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AdminClient {
    /// A client of the admin API at `args.admin`, with the token and trust `args` name.
    pub fn new(args: &AdminArgs) -> Result<AdminClient, AdminError> {
        let url = args.admin.as_deref().unwrap_or_default();
        let target = Target::parse(url)?;
        let token = read_token(args.token_file.as_deref())?;
        let tls = match (&args.admin_ca, target.https) {
            (Some(_), false) => return Err(AdminError::CaWithoutTls(target.shown)),
            (ca, true) => Some(tls_connector(ca.as_deref())?),
            (None, false) => None,
        };
        Ok(AdminClient {
            target,
            token,
            tls,
            insecure_http: args.insecure_http,
        })
    }

    /// Replaces the token wherever it would show in this command's output.
    pub fn scrubber(&self) -> Scrubber {
        Scrubber::new([(None, self.token.expose())])
    }

    /// The newest events matching `filter`, page by page up to its limit.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<ListedEvent>, AdminError> {
        let mut query = Query::default();
        query.opt("source", filter.source.as_deref());
        query.opt("event_type", filter.event_type.as_deref());
        query.opt("status", filter.status.map(|s| s.as_str()));
        query.opt("outcome", filter.outcome.map(|o| o.as_str()));
        query.time("since", filter.since);
        query.time("until", filter.until);
        let first = filter.before_seq.map(|seq| seq.to_string());
        self.all_pages("/api/v1/events", query, filter.limit, EVENT_PAGE, first)
            .await
    }

    /// The newest dead letters matching `filter`, page by page up to its limit.
    pub async fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, AdminError> {
        let mut query = Query::default();
        query.opt("source", filter.source.as_deref());
        query.opt("rule", filter.rule_id.as_deref());
        query.time("since", filter.since);
        query.time("until", filter.until);
        let first = filter
            .before
            .map(|c| format!("{}_{}", c.at.0, c.id.simple()));
        self.all_pages(
            "/api/v1/dead-letters",
            query,
            filter.limit,
            DEAD_LETTER_PAGE,
            first,
        )
        .await
    }

    /// The story of `event`, or None when the node has no such event.
    pub async fn story(&self, event: EventId) -> Result<Option<Story>, AdminError> {
        match self
            .call(Method::GET, &format!("/api/v1/events/{event}"), None)
            .await
        {
            Ok(story) => Ok(Some(story)),
            Err(AdminError::Refused { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replays `event` (only `rule`'s actions, when given) with the node's rules in force.
    pub async fn replay_event(
        &self,
        event: EventId,
        rule: Option<&str>,
        dry_run: bool,
    ) -> Result<Vec<Replayed>, AdminError> {
        let route = format!("/api/v1/events/{event}/replay");
        let body = json!({"rule": rule, "dry_run": dry_run});
        let replays: Replays = self.call(Method::POST, &route, Some(body)).await?;
        Ok(replays.planned)
    }

    /// Replays one finished execution.
    pub async fn replay_execution(
        &self,
        execution: ExecutionId,
        dry_run: bool,
    ) -> Result<Replayed, AdminError> {
        let route = format!("/api/v1/executions/{execution}/replay");
        let body = json!({"dry_run": dry_run});
        let replays: Replays = self.call(Method::POST, &route, Some(body)).await?;
        replays
            .planned
            .into_iter()
            .next()
            .ok_or_else(|| AdminError::Unexpected {
                url: self.target.shown.clone(),
                detail: "an execution replay that planned nothing".into(),
            })
    }

    /// Retries the dead letters `filter` selects, at most its limit.
    pub async fn retry_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        dry_run: bool,
    ) -> Result<Vec<Replayed>, AdminError> {
        let mut body = selection(filter);
        body["limit"] = json!(filter.limit);
        body["dry_run"] = json!(dry_run);
        let replays: Replays = self
            .call(Method::POST, "/api/v1/dead-letters/retry", Some(body))
            .await?;
        Ok(replays.planned)
    }

    /// Deletes the dead letters `filter` selects (all of them; a purge has no limit).
    pub async fn purge_dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Purged, AdminError> {
        self.call(
            Method::POST,
            "/api/v1/dead-letters/purge",
            Some(selection(filter)),
        )
        .await
    }

    /// Every item of a list up to `limit`, asking `page` at a time, from cursor `first` on.
    async fn all_pages<T: DeserializeOwned>(
        &self,
        route: &str,
        query: Query,
        limit: i64,
        page: i64,
        first: Option<String>,
    ) -> Result<Vec<T>, AdminError> {
        let mut items: Vec<T> = Vec::new();
        let mut cursor = first;
        loop {
            let left = limit - items.len() as i64;
            let mut query = query.clone();
            query.add("limit", &left.min(page).to_string());
            query.opt("cursor", cursor.as_deref());
            let answer: Page<T> = self
                .call(Method::GET, &format!("{route}?{}", query.finish()), None)
                .await?;
            let got = answer.items.len();
            items.extend(answer.items);
            match answer.next_cursor {
                Some(next) if got > 0 && (items.len() as i64) < limit => cursor = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// One request, its answer read as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        body: Option<Value>,
    ) -> Result<T, AdminError> {
        let answer = self.exchange(method, route, body).await?;
        serde_json::from_value(answer).map_err(|e| AdminError::Unexpected {
            url: self.target.shown.clone(),
            detail: clip(&e.to_string()),
        })
    }

    /// Sends one request and reads its answer: the JSON of a 2xx, or the refusal it says.
    async fn exchange(
        &self,
        method: Method,
        route: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let request = self.request(method.clone(), route, body)?;
        let (status, bytes) = tokio::time::timeout(ANSWER_TIMEOUT, self.send(request))
            .await
            .map_err(|_| AdminError::Timeout {
                url: self.target.shown.clone(),
            })??;
        self.read_answer(status, &bytes, &method, route)
    }

    fn request(
        &self,
        method: Method,
        route: &str,
        body: Option<Value>,
    ) -> Result<Request<Full<Bytes>>, AdminError> {
        let from = || AdminError::BadToken {
            from: "the token given".into(),
        };
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
            .map_err(|_| from())?;
        bearer.set_sensitive(true);
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{route}", self.target.prefix))
            .header(header::HOST, self.target.host_header())
            .header(header::AUTHORIZATION, bearer)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("hookwise/", env!("CARGO_PKG_VERSION")),
            );
        if !bytes.is_empty() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        builder
            .body(Full::new(bytes))
            .map_err(|e| AdminError::Connection {
                url: self.target.shown.clone(),
                detail: format!("cannot build the request: {e}"),
            })
    }

    /// Connects, sends `request` and reads the whole answer (up to [`MAX_ANSWER_BYTES`]).
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), AdminError> {
        let url = || self.target.shown.clone();
        let failed = |e: hyper::Error| AdminError::Connection {
            url: url(),
            detail: e.to_string(),
        };
        let io = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(failed)?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            // Errors surface on the request and answer below.
            let _ = connection.await;
        }));
        let response = sender.send_request(request).await.map_err(failed)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    AdminError::TooLarge { url: url() }
                } else {
                    AdminError::Connection {
                        url: url(),
                        detail: e.to_string(),
                    }
                }
            })?;
        Ok((status, body.to_bytes()))
    }

    /// A connection to the node: TCP to the first address that answers, then TLS for https.
    async fn connect(&self) -> Result<Box<dyn Io>, AdminError> {
        let t = &self.target;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((t.host.as_str(), t.port))
            .await
            .map_err(|e| AdminError::Resolve {
                host: t.host.clone(),
                detail: e.to_string(),
            })?
            .collect();
        // The token goes in the first bytes sent: in plain text only to this machine.
        if !t.https && !self.insecure_http && addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(AdminError::PlainHttp {
                host: t.host.clone(),
            });
        }
        let mut last = String::from("no address");
        let mut stream = None;
        for addr in addrs {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no answer from {addr} within {CONNECT_TIMEOUT:?}"),
            }
        }
        let Some(stream) = stream else {
            return Err(AdminError::Unreachable {
                url: t.shown.clone(),
                detail: last,
            });
        };
        let Some(tls) = &self.tls else {
            return Ok(Box::new(stream));
        };
        let name = ServerName::try_from(t.host.clone()).map_err(|_| AdminError::Url {
            url: t.shown.clone(),
            why: "the host is not a name TLS can check",
        })?;
        match tls.connect(name, stream).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(e) => Err(tls_failure(&t.shown, &e)),
        }
    }

    /// The JSON of a 2xx answer, or the error the answer stands for.
    fn read_answer(
        &self,
        status: StatusCode,
        bytes: &[u8],
        method: &Method,
        route: &str,
    ) -> Result<Value, AdminError> {
        let url = self.target.shown.clone();
        let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
            return Err(AdminError::NotJson { url, status });
        };
        if status.is_success() {
            return Ok(value);
        }
        let (Some(code), Some(detail)) = (value["code"].as_str(), value["detail"].as_str()) else {
            return Err(AdminError::NotJson { url, status });
        };
        let (code, detail) = (code.to_string(), clip(detail));
        Err(match status {
            StatusCode::UNAUTHORIZED => AdminError::Unauthorized { url, detail },
            // The API's answer for a path it does not serve.
            StatusCode::NOT_FOUND if detail.starts_with("no such admin route") => {
                let path = route.split('?').next().unwrap_or(route);
                AdminError::NoRoute {
                    url,
                    route: format!("{method} {path}"),
                }
            }
            StatusCode::NOT_FOUND | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {
                AdminError::Refused {
                    status,
                    code,
                    detail,
                }
            }
            _ => AdminError::Status {
                url,
                status,
                code,
                detail,
            },
        })
    }
}

/// `url` as it may be shown: without credentials before the host or anything after a `?`.
fn redacted(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or("");
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            let hidden = if host.len() < authority.len() {
                "***@"
            } else {
                ""
            };
            format!("{scheme}://{hidden}{host}{path}")
        }
        None => url.to_string(),
    }
}

/// The body naming the dead letters `filter` selects.
fn selection(filter: &DeadLetterFilter) -> Value {
    json!({
        "source": filter.source,
        "rule": filter.rule_id,
        "since": filter.since.map(Millis::to_rfc3339),
        "until": filter.until.map(Millis::to_rfc3339),
    })
}

/// The token: from `file` when given, else from [`TOKEN_ENV`].
fn read_token(file: Option<&Path>) -> Result<Secret, AdminError> {
    let (text, from) = match file {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|source| AdminError::TokenFile {
                path: path.to_path_buf(),
                source,
            })?,
            path.display().to_string(),
        ),
        None => match std::env::var(TOKEN_ENV) {
            Ok(text) => (text, TOKEN_ENV.to_string()),
            Err(_) => return Err(AdminError::NoToken),
        },
    };
    let token = text.trim();
    if token.is_empty() || HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        return Err(AdminError::BadToken { from });
    }
    Ok(Secret::new(token))
}

/// TLS for https:// admin URLs: the certificates in `ca` when given, else the public (webpki)
/// roots; HTTP/1.1 only.
fn tls_connector(ca: Option<&Path>) -> Result<tokio_rustls::TlsConnector, AdminError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let bad = |detail: String| AdminError::Ca {
                path: path.to_path_buf(),
                detail,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in the file".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AdminError::TlsSetup(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A failed TLS handshake, with what to do about the usual causes.
fn tls_failure(url: &str, e: &std::io::Error) -> AdminError {
    let detail = e.to_string();
    let hint = if detail.contains("certificate") {
        "; for a self-signed or private certificate, pass it (or its CA) with --admin-ca FILE"
    } else if detail.contains("corrupt message") || detail.contains("InvalidContentType") {
        "; does the admin listener speak plain HTTP? Then use http://"
    } else {
        ""
    };
    AdminError::Tls {
        url: url.to_string(),
        detail,
        hint,
    }
}

/// A server's words, on one line and not too long.
fn clip(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL_CHARS)
        .collect();
    if text.chars().count() > MAX_DETAIL_CHARS {
        format!("{line}...")
    } else {
        line
    }
}

/// A query string, built up pair by pair.
#[derive(Clone, Default)]
struct Query(Vec<(&'static str, String)>);

impl Query {
    fn add(&mut self, key: &'static str, value: &str) {
        self.0.push((key, value.to_string()));
    }

    fn opt(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.add(key, v);
        }
    }

    /// A time as RFC 3339 with milliseconds: the instant the command computed, whatever the
    /// node's clock says.
    fn time(&mut self, key: &'static str, value: Option<Millis>) {
        if let Some(t) = value {
            self.add(key, &t.to_rfc3339());
        }
    }

    fn finish(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            out.append_pair(k, v);
        }
        out.finish()
    }
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("target", &self.target.shown)
            .field("token", &self.token)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_are_read_or_refused_with_a_reason() {
        let t = Target::parse("http://127.0.0.1:9091").unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.prefix.as_str()),
            (false, "127.0.0.1", 9091, "")
        );
        assert_eq!(t.host_header(), "127.0.0.1:9091");
        let t = Target::parse("https://admin.example/hookwise/").unwrap();
        assert_eq!(
            (t.https, t.port, t.prefix.as_str()),
            (true, 443, "/hookwise")
        );
        assert_eq!(t.host_header(), "admin.example");
        assert_eq!(t.shown, "https://admin.example/hookwise");
        let t = Target::parse("HTTP://[::1]:9091").unwrap();
        assert_eq!(
            (t.host.as_str(), t.host_header()),
            ("::1", "[::1]:9091".into())
        );
        for (url, why) in [
            ("127.0.0.1:9091", "scheme"),
            ("ftp://host", "http:// or https://"),
            ("http://user:pw@host:9091", "credentials"),
            ("http://host:9091/?token=x", "query"),
            ("not a url", "not a URL"),
        ] {
            let e = Target::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("pw") && !e.contains("token=x"), "{e}");
        }
    }

    #[test]
    fn server_details_are_shown_on_one_short_line() {
        assert_eq!(clip("no event x"), "no event x");
        assert_eq!(clip("a\nb"), "a b");
        let long = "é".repeat(MAX_DETAIL_CHARS + 5);
        assert_eq!(clip(&long).chars().count(), MAX_DETAIL_CHARS + 3);
    }

    #[test]
    fn query_strings_are_encoded() {
        let mut q = Query::default();
        q.add("source", "a b&c");
        q.opt("rule", None);
        q.time("since", Some(Millis(0)));
        assert_eq!(
            q.finish(),
            "source=a+b%26c&since=1970-01-01T00%3A00%3A00.000Z"
        );
    }
}
