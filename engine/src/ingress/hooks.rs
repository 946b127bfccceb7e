//! `POST /hooks/{source}`, from receiving to the ack. Receive with limits, verify the raw bytes,
//! answer handshakes, identify, validate, store once, acknowledge. Every request, whatever
//! happens to it, becomes a delivery attempt record.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::Digest;

use crate::config::{IngressSettings, Source};
use crate::model::{DeliveryAttemptId, EventId, EventStatus, Millis, Verdict};
use crate::scrub::Scrubber;
use crate::server::{AppState, PlainOnTls};
use crate::store::{NewDeliveryAttempt, NewEvent};
use crate::verify::{self, Keys, VerifyOptions};

/// Longest source id or path echoed back or recorded (they come from the client).
const MAX_RECORDED_LEN: usize = 256;
/// Longest delivery id, in bytes: providers' ids are UUIDs or shorter (36-64 bytes), and the
/// id is half of the key every event is stored under once.
const MAX_DELIVERY_ID: usize = 256;
/// Most schema errors listed in a 422 answer.
const MAX_SCHEMA_ERRORS: usize = 20;
/// What redacted header values read as.
const REDACTED: &str = "[redacted]";
/// Headers that carry credentials, whatever the provider.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-gitlab-token",
];

/// Per-source runtime pieces built once at start-up: keys, verify options, rate limiter. (The
/// payload schemas were compiled with the config: `Source::schema`.)
pub struct SourceRuntime {
    keys: Keys,
    opts: VerifyOptions,
    limiter: Option<Mutex<TokenBucket>>,
}

/// Errors that keep the ingress from starting. None today: everything a source needs is checked
/// and compiled when the config loads.
#[derive(Debug, thiserror::Error)]
pub enum IngressSetupError {}

/// Builds what each configured source needs at request time.
pub fn prepare(sources: &[Source]) -> Result<HashMap<String, SourceRuntime>, IngressSetupError> {
    let mut out = HashMap::new();
    for s in sources {
        let limiter = s.rate_limit.as_ref().map(|r| {
            Mutex::new(TokenBucket::new(
                f64::from(r.per_second),
                f64::from(r.burst.unwrap_or(r.per_second)),
            ))
        });
        let keys = Keys {
            secrets: s.secrets.clone(),
            public_keys: s.public_keys.clone(),
        };
        let opts = VerifyOptions {
            tolerance: s.tolerance,
            hmac: s.hmac.clone(),
        };
        out.insert(
            s.id.clone(),
            SourceRuntime {
                keys,
                opts,
                limiter,
            },
        );
    }
    Ok(out)
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64) -> TokenBucket {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how many whole seconds until one is there.
    fn take(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// What goes back in the response body.
enum Reply {
    Json(Value),
    /// The usual answer to a stored event, `{"event_id": ..., "duplicate": ...}`: serialized
    /// straight from its parts.
    Ack {
        event_id: EventId,
        duplicate: bool,
    },
    /// A refusal, `{"code": ..., "detail": ...}`: serialized straight from its parts.
    Refusal {
        code: &'static str,
        detail: String,
    },
    /// A handshake answer in the form the provider expects.
    Raw {
        content_type: &'static str,
        body: Vec<u8>,
    },
}

/// The answer to one request, and how it is recorded.
struct Outcome {
    status: StatusCode,
    verdict: Verdict,
    body: Reply,
    /// Response headers beyond content type (Retry-After).
    retry_after: Option<u64>,
    reason: Option<String>,
}

impl Outcome {
    fn reject(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Outcome {
        Outcome {
            status,
            verdict: Verdict::Rejected,
            body: Reply::Refusal {
                code,
                detail: detail.into(),
            },
            retry_after: None,
            reason: None,
        }
    }

    /// Why, for the record: made only when a record is written, not for every refusal.
    fn reason(&self) -> Option<String> {
        match (&self.reason, &self.body) {
            (Some(reason), _) => Some(reason.clone()),
            (None, Reply::Refusal { code, detail }) => Some(format!("{code}: {detail}")),
            (None, _) => None,
        }
    }
}

/// Where a request came from, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub remote: SocketAddr,
    /// Plain HTTP arrived on a listener that speaks HTTPS.
    pub plain_on_tls: bool,
}

/// The source id in a `/hooks/{source}` path, when the listener can take the request straight
/// to [`receive`]: one segment, nothing to percent-decode. Other paths under `/hooks/` go
/// through the router, which decodes them or answers 404.
pub fn source_of(path: &str) -> Option<&str> {
    let id = path.strip_prefix("/hooks/")?;
    (!id.is_empty() && !id.contains(['/', '%'])).then_some(id)
}

/// The route handler, for the requests the listener does not take to [`receive`] itself.
pub async fn routed(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let extensions = request.extensions();
    let Some(&ConnectInfo(remote)) = extensions.get::<ConnectInfo<SocketAddr>>() else {
        // The server inserts it for every connection; this is a bug, not bad input.
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let plain_on_tls = extensions.get::<PlainOnTls>().is_some();
    let peer = Peer {
        remote,
        plain_on_tls,
    };
    receive(&state, &source_id, peer, request).await
}

/// `POST /hooks/{source_id}`: reads the body within the source's cap, then delegates.
/// Takes the request whole: its headers and URI are moved, not cloned per extractor.
pub async fn receive(
    state: &AppState,
    source_id: &str,
    peer: Peer,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let http::request::Parts {
        method,
        uri,
        headers,
        ..
    } = parts;
    let Peer {
        remote,
        plain_on_tls,
    } = peer;
    let started = Instant::now();
    // One reading of the wall clock: the record's time and the signature check's "now".
    let arrived = SystemTime::now();
    let received_at = Millis::from_system_time(arrived);
    let source = state.config.source(source_id);
    let mut recorded_body = None;
    let mut body_size = 0i64;
    let client = client_address(&state.config.ingress, remote, &headers);
    let outcome = match (
        transport_refusal(state, plain_on_tls, remote, &headers),
        source,
    ) {
        (Some(refused), _) => refused,
        (None, None) => Outcome::reject(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no source `{}`", clip(source_id)),
        ),
        (None, Some(source)) => {
            let max = usize::try_from(source.max_body).unwrap_or(usize::MAX);
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > source.max_body) {
                too_large(source.max_body)
            } else {
                let limit = state.config.ingress.body_read_timeout;
                match tokio::time::timeout(limit, axum::body::to_bytes(body, max)).await {
                    Err(_) => Outcome::reject(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        format!("the body was not received within {}s", limit.as_secs_f64()),
                    ),
                    Ok(Err(_)) => too_large(source.max_body),
                    Ok(Ok(bytes)) => {
                        body_size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
                        let (outcome, keep) = handle(
                            state, source, client, &method, &uri, &headers, &bytes, arrived,
                        )
                        .await;
                        if keep {
                            recorded_body = Some(bytes.to_vec());
                        }
                        outcome
                    }
                }
            }
        }
    };

    // Accepted, duplicate and quarantined requests were recorded with their event; the rest here.
    if !matches!(
        outcome.verdict,
        Verdict::Accepted | Verdict::Duplicate | Verdict::Quarantined
    ) {
        // The source id, path and reason may quote what the client sent: scrubbed too.
        let scrub = |text: &str| state.scrubber.scrub(text).into_owned();
        let describe = |headers: serde_json::Value, body: Option<Vec<u8>>| NewDeliveryAttempt {
            id: DeliveryAttemptId::new(),
            source: scrub(clip(source_id)),
            received_at,
            remote_addr: Some(client.describe()),
            method: method.to_string(),
            path: scrub(&clip_path(&uri)),
            headers,
            body,
            body_size,
            verdict: outcome.verdict,
            status: outcome.status.as_u16(),
            reason: outcome.reason().map(|r| scrub(&r)),
        };
        let admitted = if outcome.verdict == Verdict::Rejected {
            let key = source.map_or(crate::metrics::UNKNOWN_SOURCE, |s| s.id.as_str());
            // A summary does not hold one request's headers.
            state.rejections.admit(key, received_at, || {
                describe(serde_json::Value::Object(Default::default()), None)
            })
        } else {
            crate::ingress::rejections::Admitted {
                record: true,
                summary: None,
            }
        };
        if admitted.record {
            let attempt = describe(redacted_headers(&headers, &state.scrubber), recorded_body);
            if outcome.verdict == Verdict::Rejected {
                tracing::info!(
                    source = clip(source_id),
                    status = outcome.status.as_u16(),
                    reason = attempt.reason.as_deref().unwrap_or(""),
                    "delivery rejected"
                );
            }
            queue_attempt(state, attempt).await;
        }
        if let Some(summary) = admitted.summary {
            queue_summary(state, summary).await;
        }
    }
    state.metrics.delivery(
        source.map_or(crate::metrics::UNKNOWN_SOURCE, |s| s.id.as_str()),
        outcome.verdict,
        started.elapsed(),
    );
    respond(outcome)
}

/// Queues the record of a request that produced no event. Not awaited: the sender of a
/// refused request is promised nothing, so its answer does not wait for a disk.
pub(crate) async fn queue_attempt(state: &AppState, attempt: NewDeliveryAttempt) {
    if let Err(e) = state.store.queue_attempt(attempt).await {
        tracing::error!(error = %e, "cannot record a delivery attempt");
    }
}

/// Queues the summary of refused requests that were counted, not recorded one by one.
pub(crate) async fn queue_summary(state: &AppState, summary: NewDeliveryAttempt) {
    tracing::warn!(
        source = %summary.source,
        detail = summary.reason.as_deref().unwrap_or(""),
        "refused requests counted, not recorded one by one"
    );
    queue_attempt(state, summary).await;
}

fn respond(outcome: Outcome) -> Response {
    let mut response = match outcome.body {
        Reply::Json(value) => (outcome.status, axum::Json(value)).into_response(),
        Reply::Ack {
            event_id,
            duplicate,
        } => {
            #[derive(serde::Serialize)]
            struct Ack {
                event_id: EventId,
                duplicate: bool,
            }
            let ack = Ack {
                event_id,
                duplicate,
            };
            (outcome.status, axum::Json(ack)).into_response()
        }
        Reply::Refusal { code, detail } => {
            #[derive(serde::Serialize)]
            struct Refusal<'a> {
                code: &'a str,
                detail: &'a str,
            }
            let refusal = Refusal {
                code,
                detail: &detail,
            };
            (outcome.status, axum::Json(refusal)).into_response()
        }
        Reply::Raw { content_type, body } => {
            (outcome.status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
    };
    if let Some(secs) = outcome.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn too_large(max: u64) -> Outcome {
    Outcome::reject(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is larger than {max} bytes"),
    )
}

/// Steps 2-6 for a request whose body is read. Returns the outcome and whether to keep the body
/// with a recorded (non-event) attempt.
#[allow(clippy::too_many_arguments)]
async fn handle(
    state: &AppState,
    source: &Source,
    client: Client,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    arrived: SystemTime,
) -> (Outcome, bool) {
    let received_at = Millis::from_system_time(arrived);
    if !source.allow_ips.is_empty() && !source.allow_ips.iter().any(|c| c.contains(client.ip)) {
        return (
            Outcome::reject(
                StatusCode::FORBIDDEN,
                "address_not_allowed",
                format!("{} may not post to this source", client.ip),
            ),
            false,
        );
    }
    let Some(runtime) = state.ingress.get(&source.id) else {
        // prepare() made one for every configured source; this is a bug, not bad input.
        return (
            Outcome::reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "source not prepared",
            ),
            false,
        );
    };
    if let Some(limiter) = runtime.limiter.as_ref() {
        let verdict = match limiter.lock() {
            Ok(mut bucket) => bucket.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Err(wait) = verdict {
            let mut o = Outcome::reject(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests a second",
                    source
                        .rate_limit
                        .as_ref()
                        .map(|r| r.per_second)
                        .unwrap_or(0)
                ),
            );
            o.retry_after = Some(wait);
            return (o, false);
        }
    }

    // Step 2: verify the raw bytes. Nothing below runs for an unverified request.
    // Built only for the sources whose signature covers it (an `hmac` scheme may, with `{url}`).
    let (keys, opts) = (&runtime.keys, &runtime.opts);
    let url = if verify::needs_url(source.provider, opts) {
        public_url(state, source, uri, headers)
    } else {
        String::new()
    };
    let request = verify::Request {
        method: method.as_str(),
        url: &url,
        headers,
        body,
    };
    let verified = match verify::verify(source.provider, keys, opts, &request, arrived) {
        Ok(v) => v,
        Err(e) => {
            return (
                Outcome::reject(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()),
                false,
            );
        }
    };

    // Step 3: parse, answer handshakes, identify.
    if std::str::from_utf8(body).is_err() {
        return (
            Outcome::reject(
                StatusCode::BAD_REQUEST,
                "invalid_utf8",
                "the body is not UTF-8",
            ),
            true,
        );
    }
    let Some(payload) = verify::Payload::read(body) else {
        return (
            Outcome::reject(
                StatusCode::BAD_REQUEST,
                "malformed_payload",
                "the body is neither JSON nor form-encoded",
            ),
            true,
        );
    };
    if let Some(reply) = verify::handshake(verified.provider(), keys, &payload) {
        let outcome = Outcome {
            status: StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
            verdict: Verdict::Handshake,
            body: Reply::Raw {
                content_type: reply.content_type,
                body: reply.body,
            },
            retry_after: None,
            reason: Some("provider handshake answered".into()),
        };
        return (outcome, false);
    }
    let identity = verify::identify(verified.provider(), headers, &payload);
    let delivery_id = identity
        .delivery_id
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(sha2::Sha256::digest(body))));
    if let Some(why) = delivery_id_problem(&delivery_id) {
        return (
            Outcome::reject(StatusCode::BAD_REQUEST, "invalid_delivery_id", why),
            true,
        );
    }
    let event_type = identity.event_type.unwrap_or_else(|| "unknown".to_string());

    // Step 4: validate. Invalid payloads are stored as quarantined, never dropped.
    let errors = source
        .schema
        .as_ref()
        .map(|schemas| {
            let incoming = crate::schema::Incoming {
                event_type: &event_type,
                payload: payload.value(),
                body,
            };
            schemas.check(&incoming, MAX_SCHEMA_ERRORS)
        })
        .unwrap_or_default();
    let quarantined = !errors.is_empty();

    // Step 5: persist once (group commit), with the delivery attempt in the same transaction.
    let event = NewEvent {
        id: EventId::new(),
        source: source.id.clone(),
        delivery_id,
        event_type: event_type.clone(),
        received_at,
        headers: redacted_headers(headers, &state.scrubber),
        payload: payload.text(),
        status: if quarantined {
            EventStatus::Quarantined
        } else {
            EventStatus::Pending
        },
    };
    let (status, verdict, reason) = if quarantined {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Verdict::Quarantined,
            Some(format!(
                "payload does not match the schema ({} errors)",
                errors.len()
            )),
        )
    } else {
        (StatusCode::OK, Verdict::Accepted, None)
    };
    let attempt = NewDeliveryAttempt {
        id: DeliveryAttemptId::new(),
        source: source.id.clone(),
        received_at,
        remote_addr: Some(client.describe()),
        method: method.to_string(),
        path: clip_path(uri),
        headers: json!({}),
        body: quarantined.then(|| body.to_vec()),
        body_size: i64::try_from(body.len()).unwrap_or(i64::MAX),
        verdict,
        status: status.as_u16(),
        reason,
    };
    // Steps 7-8 (match, plan), in the transaction that stores the event: rule matching
    // costs microseconds, and the event is then written once, not stored and updated.
    let plan = match &state.rules {
        Some(rules) if !quarantined => Some(crate::dispatch::plan_arrival(
            &rules.current(),
            &state.config,
            &event,
            || payload.into_value(),
        )),
        _ => None,
    };
    let planned = plan.as_ref().map(|p| p.executions.len());
    let backlog = state.wake.backlog();
    if let Some(n) = planned.filter(|n| *n > 0) {
        // Backpressure: while the workers are behind, the arrival waits (boundedly) before
        // adding to their backlog. Counted before the commit, so no claim can see work the
        // count does not hold yet.
        let waited = backlog.admit().await;
        if !waited.is_zero() {
            state.metrics.backlog_wait(waited);
        }
        backlog.planned(n);
    }
    let stored = state.store.ingest_planned(event, attempt, plan).await;
    let new_work = planned.unwrap_or(0);
    match stored {
        Ok(stored) => {
            match planned {
                _ if stored.duplicate || quarantined => backlog.withdrawn(new_work),
                Some(0) => {}
                Some(_) => state.wake.work(),
                None => state.wake.events(),
            }
            tracing::debug!(
                event = %stored.event_id,
                source = %source.id,
                event_type = %event_type,
                duplicate = stored.duplicate,
                quarantined,
                "event stored"
            );
            // Step 6: acknowledge.
            if quarantined && !stored.duplicate {
                let body = json!({
                    "event_id": stored.event_id,
                    "duplicate": false,
                    "code": "invalid_payload",
                    "errors": errors,
                });
                (
                    Outcome {
                        status,
                        verdict,
                        body: Reply::Json(body),
                        retry_after: None,
                        reason: None,
                    },
                    false,
                )
            } else {
                let verdict = if stored.duplicate {
                    Verdict::Duplicate
                } else {
                    verdict
                };
                let body = Reply::Ack {
                    event_id: stored.event_id,
                    duplicate: stored.duplicate,
                };
                (
                    Outcome {
                        status: StatusCode::OK,
                        verdict,
                        body,
                        retry_after: None,
                        reason: None,
                    },
                    false,
                )
            }
        }
        Err(e) => {
            backlog.withdrawn(new_work);
            tracing::error!(error = %e, source = %source.id, "cannot store an event");
            let mut o = Outcome::reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the event could not be stored; retry later",
            );
            o.retry_after = Some(1);
            (o, false)
        }
    }
}

/// Who sent a request: the peer, or the client a trusted proxy forwarded it for.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// The address `allow_ips` is checked against.
    pub ip: IpAddr,
    /// The connection's peer, when it is a trusted proxy.
    pub via: Option<SocketAddr>,
    peer: SocketAddr,
}

impl Client {
    /// How the delivery attempt records the sender.
    fn describe(&self) -> String {
        match self.via {
            Some(proxy) => format!("{} via {proxy}", self.ip),
            None => self.peer.to_string(),
        }
    }
}

/// The client address: the peer's, unless the peer is a trusted proxy; then the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left were
/// written by the client and can be forged).
pub fn client_address(ingress: &IngressSettings, peer: SocketAddr, headers: &HeaderMap) -> Client {
    let direct = Client {
        ip: peer.ip(),
        via: None,
        peer,
    };
    if !ingress.is_trusted_proxy(peer.ip()) {
        return direct;
    }
    let mut forwarded: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return direct;
        };
        for entry in text.split(',') {
            match parse_forwarded_ip(entry.trim()) {
                Some(ip) => forwarded.push(ip),
                // One unreadable entry makes the chain untrustworthy: use the proxy itself.
                None => return direct,
            }
        }
    }
    let ip = forwarded
        .iter()
        .rev()
        .find(|ip| !ingress.is_trusted_proxy(**ip))
        .or(forwarded.first())
        .copied();
    match ip {
        Some(ip) => Client {
            ip,
            via: Some(peer),
            peer,
        },
        None => direct,
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse().ok())
}

/// Why the way a request arrived refuses it, if it does: plain HTTP on the HTTPS listener, or,
/// when plain HTTP is kept for trusted proxies, a request that is not from one forwarding HTTPS.
fn transport_refusal(
    state: &AppState,
    plain_on_tls: bool,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Option<Outcome> {
    if plain_on_tls {
        return Some(Outcome::reject(
            StatusCode::BAD_REQUEST,
            "https_required",
            "this listener speaks HTTPS only; send the request with https://",
        ));
    }
    let ingress = &state.config.ingress;
    if !ingress.proxy_only {
        return None;
    }
    if !ingress.is_trusted_proxy(peer.ip()) {
        return Some(Outcome::reject(
            StatusCode::FORBIDDEN,
            "https_required",
            format!(
                "plain HTTP is served only to trusted proxies, and {} is not one",
                peer.ip()
            ),
        ));
    }
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if proto.as_deref() != Some("https") {
        return Some(Outcome::reject(
            StatusCode::FORBIDDEN,
            "https_required",
            "the trusted proxy did not forward this request from HTTPS (X-Forwarded-Proto: https)",
        ));
    }
    None
}

/// The URL the provider posted to: the configured one, else rebuilt from Host and the path.
fn public_url(state: &AppState, source: &Source, uri: &Uri, headers: &HeaderMap) -> String {
    if let Some(url) = &source.url {
        return match uri.query() {
            Some(q) if !url.contains('?') => format!("{url}?{q}"),
            _ => url.clone(),
        };
    }
    let scheme = match state.config.tls {
        crate::config::TlsMode::Plain => headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|p| *p == "https" || *p == "http")
            .unwrap_or("http"),
        _ => "https",
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{scheme}://{host}{path}")
}

/// Header names and values as a JSON object: credential headers replaced whole, secret values
/// (of any source or config secret) replaced where they occur.
pub fn redacted_headers(headers: &HeaderMap, scrubber: &Scrubber) -> Value {
    let mut out = serde_json::Map::new();
    for (name, value) in headers {
        let text = if SECRET_HEADERS.contains(&name.as_str()) {
            REDACTED.to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&text);
            }
            _ => {
                out.insert(name.as_str().to_string(), Value::String(text));
            }
        }
    }
    // Scrubbed whole: one search for all headers (scrub_value), not one per header.
    let mut out = Value::Object(out);
    scrubber.scrub_value(&mut out);
    out
}

/// Why a delivery id cannot be the key an event is stored under, if it cannot: longer than
/// [`MAX_DELIVERY_ID`] bytes, or holding a control character (U+0000 above all, which some
/// databases cannot store). Ids from payloads (Stripe's `id`, ...) can hold anything.
fn delivery_id_problem(id: &str) -> Option<String> {
    if id.len() > MAX_DELIVERY_ID {
        return Some(format!(
            "the delivery id is {} bytes long; at most {MAX_DELIVERY_ID} are accepted",
            id.len()
        ));
    }
    let (at, c) = id.char_indices().find(|(_, c)| c.is_control())?;
    Some(format!(
        "the delivery id holds a control character (U+{:04X} at byte {at})",
        u32::from(c)
    ))
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(MAX_RECORDED_LEN) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn clip_path(uri: &Uri) -> String {
    // The query string may carry tokens; the path is enough to tell the route.
    let path = uri.path();
    clip(path).to_string()
}

#[cfg(test)]
mod tests {
    use super::{MAX_DELIVERY_ID, Scrubber, delivery_id_problem, redacted_headers, source_of};

    #[test]
    fn delivery_ids_are_bounded_and_free_of_control_characters() {
        for ok in [
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_string(),
            "evt_1NG8Du2eZvKYlo2CUI79vXWy".to_string(),
            "ünïcödé ✓".to_string(),
            "x".repeat(MAX_DELIVERY_ID),
        ] {
            assert_eq!(delivery_id_problem(&ok), None, "{ok}");
        }
        let long = delivery_id_problem(&"x".repeat(MAX_DELIVERY_ID + 1));
        assert_eq!(
            long.as_deref(),
            Some("the delivery id is 257 bytes long; at most 256 are accepted")
        );
        // Bytes, not characters: 128 two-byte characters are 256 bytes, 129 are too many.
        assert_eq!(delivery_id_problem(&"é".repeat(128)), None);
        assert!(delivery_id_problem(&"é".repeat(129)).is_some());
        assert_eq!(
            delivery_id_problem("evt_\u{0}1").as_deref(),
            Some("the delivery id holds a control character (U+0000 at byte 4)")
        );
        for odd in ["a\nb", "a\tb", "a\u{7f}", "a\u{9b}"] {
            assert!(delivery_id_problem(odd).is_some(), "{odd:?}");
        }
    }

    #[test]
    fn recorded_headers_hide_credentials_and_secret_values() {
        let scrubber = Scrubber::new([(None, "webhook-secret-1"), (Some("TOKEN"), "api-token-22")]);
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer anything"),
            ("x-hub-signature-256", "sha256=webhook-secret-1"),
            ("x-forwarded", "a api-token-22 b"),
            ("x-forwarded", "second"),
            ("user-agent", "GitHub-Hookshot/1"),
        ] {
            headers.append(name, http::HeaderValue::from_static(value));
        }
        assert_eq!(
            redacted_headers(&headers, &scrubber),
            serde_json::json!({
                "authorization": "[redacted]",
                "x-hub-signature-256": "sha256=***",
                "x-forwarded": "a ${secret:TOKEN} b, second",
                "user-agent": "GitHub-Hookshot/1",
            })
        );
    }

    #[test]
    fn only_plain_one_segment_paths_skip_the_router() {
        assert_eq!(source_of("/hooks/github"), Some("github"));
        assert_eq!(source_of("/hooks/my-source_2"), Some("my-source_2"));
        // The router decodes these, or answers 404.
        for path in [
            "/hooks/",
            "/hooks",
            "/hooks/git%68ub",
            "/hooks/a/b",
            "/hooks/a/",
            "/hooksgithub",
            "/healthz",
        ] {
            assert_eq!(source_of(path), None, "{path}");
        }
    }
}
