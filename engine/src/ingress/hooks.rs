//! `POST /hooks/{source}`, from receiving to the ack: check the client (before the body is
//! read), receive with limits, verify the raw bytes, read the payload, answer handshakes,
//! identify, validate, store once, acknowledge, one function per step. Every request,
//! whatever happens to it, becomes a delivery attempt record.

use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::Digest;

use super::{IngressState, SourceRuntime};
use crate::config::{IngressSettings, Source};
use crate::model::{DeliveryAttemptId, EventId, EventStatus, Millis, Verdict};
use crate::scrub::Scrubber;
use crate::state::AppState;
use crate::store::{IngestOutcome, NewDeliveryAttempt, NewEvent};
use crate::tls::PlainOnTls;
use crate::verify;

/// Longest source id or path echoed back or recorded (they come from the client).
const MAX_RECORDED_LEN: usize = 256;
/// Longest delivery id, in bytes: providers' ids are UUIDs or shorter (36-64 bytes), and the
/// id is half of the key every event is stored under once.
const MAX_DELIVERY_ID: usize = 256;

/// Bytes of header names and values a record of a refused request keeps, in all. Anyone can
/// send refused requests, with headers as large as the listener takes (tens of KiB each):
/// kept whole, a flood of them would fill the disk within the retention time.
pub const MAX_REFUSAL_HEADER_BYTES: usize = 8 * 1024;

/// Bytes of a verified but refused request's body its record keeps (an unverified request's
/// body is never kept): enough to see why a provider's delivery was refused.
pub const MAX_KEPT_BODY: usize = 64 * 1024;

/// The key under which a record says what [`bounded_headers`] left out. Parentheses cannot
/// appear in a header name, so no header the client sent can take this key.
pub const CUT_HEADERS_KEY: &str = "(cut)";
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

    /// The refusal's code (`bad_signature`, ...), as hookwise's own events count refusals.
    fn code(&self) -> &'static str {
        match &self.body {
            Reply::Refusal { code, .. } => code,
            _ => "refused",
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
    State(state): State<IngressState>,
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

/// What arrived, apart from the body: what every step reads.
struct Arrival<'a> {
    /// The source id from the path, as the client sent it.
    source_id: &'a str,
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    client: Client,
    /// One reading of the wall clock: the record's time and the signature check's "now".
    arrived: SystemTime,
}

impl Arrival<'_> {
    fn received_at(&self) -> Millis {
        Millis::from_system_time(self.arrived)
    }
}

/// The outcome of one request, and its body as far as a record of the refusal keeps it.
struct Handled {
    outcome: Outcome,
    /// The body, when a record of the request (not an event) keeps it.
    kept_body: Option<Vec<u8>>,
    /// Bytes read (0 when the body was not read).
    body_size: i64,
}

impl From<Outcome> for Handled {
    fn from(outcome: Outcome) -> Handled {
        Handled {
            outcome,
            kept_body: None,
            body_size: 0,
        }
    }
}

/// `POST /hooks/{source_id}`: checks the transport and the client, reads the body within the
/// source's cap, handles it, records what produced no event, answers. Takes the request
/// whole: its headers and URI are moved, not cloned per extractor.
pub async fn receive(
    state: &IngressState,
    source_id: &str,
    peer: Peer,
    request: axum::extract::Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let arrival = Arrival {
        source_id,
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        client: client_address(&state.app.config.ingress, peer.remote, &parts.headers),
        arrived: SystemTime::now(),
    };
    let source = state.app.config.source(source_id);
    let mut handled = match (transport_refusal(state, peer, arrival.headers), source) {
        (Some(refused), _) => refused.into(),
        (None, None) => Outcome::reject(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no source `{}`", clip(source_id)),
        )
        .into(),
        (None, Some(source)) => handle_known(state, source, &arrival, body).await,
    };
    Box::pin(record_refusal(state, source, &arrival, &mut handled)).await;
    state.app.metrics.delivery(
        source.map_or(crate::metrics::UNKNOWN_SOURCE, |s| s.id.as_str()),
        handled.outcome.verdict,
        started.elapsed(),
    );
    respond(handled.outcome)
}

/// Checks the client first, then reads the body within the source's cap and time limit and
/// takes it through the steps. Checks before work: a client the source refuses (its address,
/// its rate) is answered before its body is read, so it costs no read and no buffer.
async fn handle_known(
    state: &IngressState,
    source: &Source,
    arrival: &Arrival<'_>,
    body: axum::body::Body,
) -> Handled {
    let delivery = Delivery {
        state,
        source,
        arrival,
    };
    let runtime = match check_client(&delivery) {
        Ok(runtime) => runtime,
        Err(refused) => return refused.outcome.into(),
    };
    // Held until the answer: the body read is what a client holding requests open stretches.
    let Some(_entered) = state.in_flight.enter(arrival.client.ip) else {
        let (code, detail) = super::clients::TOO_MANY_IN_PROGRESS;
        let mut refused = Outcome::reject(StatusCode::TOO_MANY_REQUESTS, code, detail);
        refused.retry_after = Some(1);
        return refused.into();
    };
    // Held until the answer, with the body.
    let mut held = state.body_bytes.hold_nothing();
    let read = read_body(
        &state.app.config.ingress,
        source,
        arrival.headers,
        body,
        &mut held,
    );
    let bytes = match read.await {
        Ok(bytes) => bytes,
        Err(refused) => {
            if refused.status == StatusCode::SERVICE_UNAVAILABLE {
                state.app.metrics.overloaded();
            }
            return refused.into();
        }
    };
    // Boxed: the steps' state is allocated once the body is in. Inline, it would size the
    // future of every request from its first byte, while a slow body holds it for seconds.
    let stop = Box::pin(handle(&delivery, runtime, &bytes)).await;
    Handled {
        outcome: stop.outcome,
        body_size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        kept_body: stop
            .keep_body
            .then(|| bytes[..bytes.len().min(MAX_KEPT_BODY)].to_vec()),
    }
}

/// The body, unless it is declared or turns out larger than the source's cap, or is not
/// received within the time limit.
async fn read_body(
    settings: &IngressSettings,
    source: &Source,
    headers: &HeaderMap,
    body: axum::body::Body,
    held: &mut super::clients::HeldBytes<'_>,
) -> Result<axum::body::Bytes, Outcome> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > source.max_body) {
        return Err(too_large(source.max_body));
    }
    let max = usize::try_from(source.max_body).unwrap_or(usize::MAX);
    let limit = settings.body_read_timeout;
    match tokio::time::timeout(limit, collect_body(body, max, held)).await {
        Err(_) => Err(Outcome::reject(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the body was not received within {}s", limit.as_secs_f64()),
        )),
        Ok(Err(BodyError::TooLarge)) => Err(too_large(source.max_body)),
        Ok(Err(BodyError::Overloaded)) => {
            let mut overloaded = Outcome::reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many request bodies are arriving at once; retry shortly",
            );
            overloaded.retry_after = Some(1);
            Err(overloaded)
        }
        Ok(Err(BodyError::BrokenOff)) => Err(Outcome::reject(
            StatusCode::BAD_REQUEST,
            "body_incomplete",
            "the body broke off before its end",
        )),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// Why a body could not be read whole.
#[derive(Debug, PartialEq)]
enum BodyError {
    /// It holds more than the cap.
    TooLarge,
    /// The connection failed, or the body ended before its declared length.
    BrokenOff,
    /// The listener holds as many body bytes as it may.
    Overloaded,
}

/// The body's bytes, unless it holds more than `max` or breaks off.
///
/// A body that arrives in one piece is taken as it is, without a copy. A body that arrives in
/// pieces has each piece copied out as it comes, to a buffer of exactly its size, and joined
/// at the end: each piece hyper hands over is a slice of that connection's read buffer, and
/// keeping the pieces would keep every buffer they came from (about 8 KiB for a piece of any
/// size), so a thousand connections trickling their bodies would hold several times what
/// they sent. (One growing buffer would hold up to twice what arrived.)
async fn collect_body(
    body: axum::body::Body,
    max: usize,
    held: &mut super::clients::HeldBytes<'_>,
) -> Result<axum::body::Bytes, BodyError> {
    use http_body::Body as _;
    use http_body_util::BodyExt;
    let mut body = http_body_util::Limited::new(body, max);
    let mut pieces: Vec<axum::body::Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match e.is::<http_body_util::LengthLimitError>() {
            true => BodyError::TooLarge,
            false => BodyError::BrokenOff,
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry no body bytes
        };
        if !held.take(data.len()) {
            return Err(BodyError::Overloaded);
        }
        if pieces.is_empty() && body.is_end_stream() {
            return Ok(data);
        }
        total += data.len();
        pieces.push(axum::body::Bytes::copy_from_slice(&data));
    }
    if let [one] = pieces.as_slice() {
        return Ok(one.clone());
    }
    let mut whole = Vec::with_capacity(total);
    for piece in &pieces {
        whole.extend_from_slice(piece);
    }
    Ok(whole.into())
}

/// Records a request that produced no event (accepted, duplicate and quarantined requests were
/// recorded with their event). Under a flood of refusals, most are counted in a summary
/// rather than recorded one by one (see `rejections`).
async fn record_refusal(
    state: &IngressState,
    source: Option<&Source>,
    arrival: &Arrival<'_>,
    handled: &mut Handled,
) {
    let outcome = &handled.outcome;
    if matches!(
        outcome.verdict,
        Verdict::Accepted | Verdict::Duplicate | Verdict::Quarantined
    ) {
        return;
    }
    state.clients.refused(arrival.client.ip, outcome.status);
    if let Some(source) = source.filter(|_| outcome.verdict == Verdict::Rejected) {
        let at = arrival.received_at();
        state.app.own_events.refused(&source.id, outcome.code(), at);
    }
    // The source id, path and reason may quote what the client sent: scrubbed too.
    let scrub = |text: &str| state.app.scrubber.scrub(text).into_owned();
    let describe = |headers: Value, body: Option<Vec<u8>>| NewDeliveryAttempt {
        id: DeliveryAttemptId::new(),
        source: scrub(clip(arrival.source_id)),
        received_at: arrival.received_at(),
        remote_addr: Some(arrival.client.describe()),
        method: arrival.method.to_string(),
        path: scrub(&clip_path(arrival.uri)),
        headers,
        body,
        body_size: handled.body_size,
        verdict: outcome.verdict,
        status: outcome.status.as_u16(),
        reason: outcome.reason().map(|r| scrub(&r)),
    };
    let admitted = if outcome.verdict == Verdict::Rejected {
        let key = source.map_or(crate::metrics::UNKNOWN_SOURCE, |s| s.id.as_str());
        // A summary does not hold one request's headers.
        state
            .rejections
            .admit(key, arrival.received_at(), || describe(json!({}), None))
    } else {
        super::rejections::Admitted {
            record: true,
            summary: None,
        }
    };
    if admitted.record {
        // Scrubbed first, then cut: a cut never leaves part of a secret unscrubbed.
        let headers = bounded_headers(
            redacted_headers(arrival.headers, &state.app.scrubber),
            MAX_REFUSAL_HEADER_BYTES,
        );
        let attempt = describe(headers, handled.kept_body.take());
        if outcome.verdict == Verdict::Rejected {
            tracing::info!(
                source = clip(arrival.source_id),
                status = outcome.status.as_u16(),
                reason = attempt.reason.as_deref().unwrap_or(""),
                "delivery rejected"
            );
        }
        queue_attempt(&state.app, attempt).await;
    }
    if let Some(summary) = admitted.summary {
        queue_summary(&state.app, summary).await;
    }
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

/// One request of a known source: what the steps from [`check_client`] on share.
struct Delivery<'a> {
    state: &'a IngressState,
    source: &'a Source,
    arrival: &'a Arrival<'a>,
}

/// Where the steps stop for one request: its outcome, and whether a record of it keeps the
/// body (requests refused after verification, so an operator can see what was sent).
struct Stop {
    outcome: Outcome,
    keep_body: bool,
}

impl Stop {
    /// A refusal whose record does not keep the body.
    fn refuse(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Stop {
        Stop {
            outcome: Outcome::reject(status, code, detail),
            keep_body: false,
        }
    }

    /// A refusal of a verified request: its record keeps the body.
    fn refuse_verified(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Stop {
        Stop {
            keep_body: true,
            ..Stop::refuse(status, code, detail)
        }
    }

    /// An answer that is not a refusal.
    fn answer(outcome: Outcome) -> Stop {
        Stop {
            outcome,
            keep_body: false,
        }
    }
}

/// The steps after reading the body of a client [`check_client`] let in: verify, read,
/// answer handshakes, identify, validate, store, acknowledge. Each `?` is where a request
/// may stop.
async fn handle(d: &Delivery<'_>, runtime: &SourceRuntime, body: &[u8]) -> Stop {
    let steps = async {
        // Nothing below runs for an unverified request: the steps take `Verified`.
        let verified = verify_signature(d, runtime, body)?;
        spend_budget(d, runtime)?;
        let payload = read_payload(&verified)?;
        if let Some(answer) = answer_handshake(&verified, runtime, &payload) {
            return Ok(answer);
        }
        let identity = identify(&verified, &payload)?;
        let errors = validate(d.source, &identity, &payload);
        let stored = store(d, identity, payload, &errors).await?;
        Ok(acknowledge(stored, errors))
    };
    match steps.await {
        Ok(stop) | Err(stop) => stop,
    }
}

/// Checks the client against the source's `allow_ips`; returns the source's runtime pieces.
fn check_client<'a>(d: &Delivery<'a>) -> Result<&'a SourceRuntime, Stop> {
    let (source, client) = (d.source, d.arrival.client);
    if let Err(wait) = d.state.clients.check(client.ip) {
        let (code, detail) = super::clients::REFUSED_TOO_OFTEN;
        let mut stop = Stop::refuse(StatusCode::TOO_MANY_REQUESTS, code, detail);
        stop.outcome.retry_after = Some(wait);
        return Err(stop);
    }
    if !source.allow_ips.is_empty() && !source.allow_ips.iter().any(|c| c.contains(client.ip)) {
        return Err(Stop::refuse(
            StatusCode::FORBIDDEN,
            "address_not_allowed",
            format!("{} may not post to this source", client.ip),
        ));
    }
    let Some(runtime) = d.state.sources.get(&source.id) else {
        // IngressState::new made one for every configured source; this is a bug, not bad input.
        return Err(Stop::refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "source not prepared",
        ));
    };
    Ok(runtime)
}

/// Spends one unit of the source's `rate_limit` on a verified delivery. Only verified ones
/// spend it: requests anyone can send (bad signatures) must not use up the budget of the real
/// provider's deliveries.
fn spend_budget(d: &Delivery<'_>, runtime: &SourceRuntime) -> Result<(), Stop> {
    let Some(limiter) = runtime.limiter.as_ref() else {
        return Ok(());
    };
    let taken = match limiter.lock() {
        Ok(mut bucket) => bucket.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    let Err(wait) = taken else {
        return Ok(());
    };
    let per_second = d.source.rate_limit.as_ref().map_or(0, |r| r.per_second);
    let mut stop = Stop::refuse(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("more than {per_second} verified deliveries a second"),
    );
    stop.outcome.retry_after = Some(wait);
    Err(stop)
}

/// The URL the provider posted to, for the sources whose signature covers it (an `hmac` scheme
/// may, with `{url}`); empty for the others, which need not build it.
fn signed_url(d: &Delivery<'_>, runtime: &SourceRuntime) -> String {
    if verify::needs_url(d.source.provider, &runtime.opts) {
        public_url(&d.state.app, d.source, d.arrival.uri, d.arrival.headers)
    } else {
        String::new()
    }
}

/// Checks the signature over the raw bytes.
fn verify_signature<'a>(
    d: &Delivery<'a>,
    runtime: &SourceRuntime,
    body: &'a [u8],
) -> Result<verify::Verified<'a>, Stop> {
    let (source, arrival) = (d.source, d.arrival);
    let url = signed_url(d, runtime);
    let request = verify::Request {
        method: arrival.method.as_str(),
        url: &url,
        headers: arrival.headers,
        body,
    };
    verify::verify(
        source.provider,
        &runtime.keys,
        &runtime.opts,
        &request,
        arrival.arrived,
    )
    .map_err(|e| Stop::refuse(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()))
}

/// Reads the verified body as a payload: UTF-8, and JSON or a form.
fn read_payload<'a>(verified: &verify::Verified<'a>) -> Result<verify::Payload<'a>, Stop> {
    if std::str::from_utf8(verified.body()).is_err() {
        return Err(Stop::refuse_verified(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            "the body is not UTF-8",
        ));
    }
    verified.payload().ok_or_else(|| {
        Stop::refuse_verified(
            StatusCode::BAD_REQUEST,
            "malformed_payload",
            "the body is neither JSON nor form-encoded",
        )
    })
}

/// The answer to a provider's handshake (URL verification, ping), when the payload is one.
fn answer_handshake(
    verified: &verify::Verified<'_>,
    runtime: &SourceRuntime,
    payload: &verify::Payload<'_>,
) -> Option<Stop> {
    let reply = verified.handshake(&runtime.keys, payload)?;
    Some(Stop::answer(Outcome {
        status: StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
        verdict: Verdict::Handshake,
        body: Reply::Raw {
            content_type: reply.content_type,
            body: reply.body,
        },
        retry_after: None,
        reason: Some("provider handshake answered".into()),
    }))
}

/// What an event is stored under: its delivery id (the provider's, else a hash of the body)
/// and event type.
struct Identified {
    delivery_id: String,
    event_type: String,
}

/// Finds the delivery id and event type, and checks that the id can be a key.
fn identify(
    verified: &verify::Verified<'_>,
    payload: &verify::Payload<'_>,
) -> Result<Identified, Stop> {
    let identity = verified.identify(payload);
    let delivery_id = identity.delivery_id.unwrap_or_else(|| {
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(verified.body()))
        )
    });
    if let Some(why) = delivery_id_problem(&delivery_id) {
        return Err(Stop::refuse_verified(
            StatusCode::BAD_REQUEST,
            "invalid_delivery_id",
            why,
        ));
    }
    let event_type = identity.event_type.unwrap_or_else(|| "unknown".to_string());
    Ok(Identified {
        delivery_id,
        event_type,
    })
}

/// Checks the payload against the source's schema for its event type. Invalid payloads are
/// stored as quarantined, never dropped: the errors say why.
fn validate(
    source: &Source,
    identity: &Identified,
    payload: &verify::Payload<'_>,
) -> Vec<crate::schema::PayloadError> {
    let Some(schemas) = source.schema.as_ref() else {
        return Vec::new();
    };
    let incoming = crate::schema::Incoming {
        event_type: &identity.event_type,
        payload: payload.value(),
        body: payload.body(),
    };
    schemas.check(&incoming, MAX_SCHEMA_ERRORS)
}

/// Stores the event once (group commit), with its delivery attempt in the same transaction,
/// and, when it is valid, its plan (see `dispatch::Intake`).
async fn store(
    d: &Delivery<'_>,
    identity: Identified,
    payload: verify::Payload<'_>,
    errors: &[crate::schema::PayloadError],
) -> Result<IngestOutcome, Stop> {
    let quarantined = !errors.is_empty();
    let event = new_event(d, identity, &payload, quarantined);
    let attempt = accepted_attempt(d, payload.body(), errors);
    let event_type = event.event_type.clone();
    let stored = d
        .state
        .app
        .intake()
        .admit(event, attempt, |keep| payload.into_members(keep))
        .await;
    match stored {
        Ok(stored) => {
            tracing::debug!(
                event = %stored.event_id,
                source = %d.source.id,
                event_type = %event_type,
                duplicate = stored.duplicate,
                quarantined,
                "event stored"
            );
            Ok(stored)
        }
        Err(e) => {
            d.state.app.own_events.store_failed(&e);
            tracing::error!(error = %e, source = %d.source.id, "cannot store an event");
            let mut stop = Stop::refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the event could not be stored; retry later",
            );
            stop.outcome.retry_after = Some(1);
            Err(stop)
        }
    }
}

/// The event to store: pending, or quarantined when its payload failed validation.
fn new_event(
    d: &Delivery<'_>,
    identity: Identified,
    payload: &verify::Payload<'_>,
    quarantined: bool,
) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        source: d.source.id.clone(),
        delivery_id: identity.delivery_id,
        event_type: identity.event_type,
        received_at: d.arrival.received_at(),
        headers: redacted_headers(d.arrival.headers, &d.state.app.scrubber),
        payload: payload.text(),
        status: if quarantined {
            EventStatus::Quarantined
        } else {
            EventStatus::Pending
        },
    }
}

/// The delivery attempt stored with the event. A quarantined event's attempt keeps the body
/// and the number of schema errors.
fn accepted_attempt(
    d: &Delivery<'_>,
    body: &[u8],
    errors: &[crate::schema::PayloadError],
) -> NewDeliveryAttempt {
    let quarantined = !errors.is_empty();
    let (status, verdict, reason) = if quarantined {
        let reason = format!(
            "payload does not match the schema ({} errors)",
            errors.len()
        );
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Verdict::Quarantined,
            Some(reason),
        )
    } else {
        (StatusCode::OK, Verdict::Accepted, None)
    };
    NewDeliveryAttempt {
        id: DeliveryAttemptId::new(),
        source: d.source.id.clone(),
        received_at: d.arrival.received_at(),
        remote_addr: Some(d.arrival.client.describe()),
        method: d.arrival.method.to_string(),
        path: clip_path(d.arrival.uri),
        headers: json!({}),
        body: quarantined.then(|| body.to_vec()),
        body_size: i64::try_from(body.len()).unwrap_or(i64::MAX),
        verdict,
        status: status.as_u16(),
        reason,
    }
}

/// The answer to a stored event: the ack, or for a new quarantined event 422 with the schema
/// errors.
fn acknowledge(stored: IngestOutcome, errors: Vec<crate::schema::PayloadError>) -> Stop {
    if !errors.is_empty() && !stored.duplicate {
        return Stop::answer(Outcome {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            verdict: Verdict::Quarantined,
            body: Reply::Json(json!({
                "event_id": stored.event_id,
                "duplicate": false,
                "code": "invalid_payload",
                "errors": errors,
            })),
            retry_after: None,
            reason: None,
        });
    }
    let verdict = if stored.duplicate {
        Verdict::Duplicate
    } else {
        Verdict::Accepted
    };
    Stop::answer(Outcome {
        status: StatusCode::OK,
        verdict,
        body: Reply::Ack {
            event_id: stored.event_id,
            duplicate: stored.duplicate,
        },
        retry_after: None,
        reason: None,
    })
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
fn transport_refusal(state: &IngressState, peer: Peer, headers: &HeaderMap) -> Option<Outcome> {
    let Peer {
        remote: peer,
        plain_on_tls,
    } = peer;
    if plain_on_tls {
        return Some(Outcome::reject(
            StatusCode::BAD_REQUEST,
            "https_required",
            "this listener speaks HTTPS only; send the request with https://",
        ));
    }
    let ingress = &state.app.config.ingress;
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

/// `headers` (a JSON object of header name to value) cut to at most `max` bytes of names and
/// values, visibly: a value cut short ends with how many bytes were left out, and the headers
/// that no longer fit are counted under [`CUT_HEADERS_KEY`].
pub fn bounded_headers(headers: Value, max: usize) -> Value {
    let Value::Object(map) = headers else {
        return headers;
    };
    let mut out = serde_json::Map::new();
    let mut used = 0usize;
    let (mut left_out, mut left_out_bytes) = (0usize, 0usize);
    for (name, value) in map {
        let text = match value {
            Value::String(text) => text,
            other => other.to_string(),
        };
        let size = name.len() + text.len();
        if used + size <= max {
            used += size;
            out.insert(name, Value::String(text));
            continue;
        }
        // Room for the name and a useful part of the value: cut the value there.
        let room = max.saturating_sub(used + name.len());
        if left_out == 0 && room >= 64 {
            let note_room = room - 32;
            let mut end = note_room.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let cut = format!("{}… ({} bytes cut)", &text[..end], text.len() - end);
            used = max;
            out.insert(name, Value::String(cut));
            continue;
        }
        left_out += 1;
        left_out_bytes += size;
    }
    if left_out > 0 {
        out.insert(
            CUT_HEADERS_KEY.to_string(),
            Value::String(format!(
                "{left_out} more headers ({left_out_bytes} bytes) not kept"
            )),
        );
    }
    Value::Object(out)
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
    use super::{
        CUT_HEADERS_KEY, MAX_DELIVERY_ID, Scrubber, bounded_headers, delivery_id_problem,
        redacted_headers, source_of,
    };
    use serde_json::{Value, json};

    /// Bytes of names and values, as the bound counts them.
    fn size(headers: &Value) -> usize {
        headers
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| k.len() + v.as_str().unwrap().len())
            .sum()
    }

    #[test]
    fn refused_request_headers_are_cut_to_the_bound_visibly() {
        // Small headers stay as they are.
        let small = json!({"content-type": "application/json", "x-a": "1"});
        assert_eq!(bounded_headers(small.clone(), 8192), small);

        // One huge value: cut, and says how much.
        let huge = json!({"x-a": "1", "x-big": "é".repeat(20_000), "x-z": "2"});
        let cut = bounded_headers(huge, 8192);
        let big = cut["x-big"].as_str().unwrap();
        assert!(big.ends_with(" bytes cut)"), "{big}");
        assert!(big.contains("… ("), "{big}");
        assert_eq!(cut["x-a"], "1");
        assert_eq!(
            cut[CUT_HEADERS_KEY], "1 more headers (4 bytes) not kept",
            "{cut}"
        );
        let without_note = {
            let mut c = cut.clone();
            c.as_object_mut().unwrap().remove(CUT_HEADERS_KEY);
            c
        };
        assert!(size(&without_note) <= 8192, "{}", size(&without_note));

        // Many small headers: the ones past the bound are counted, not kept.
        let mut many = serde_json::Map::new();
        for i in 0..2000 {
            many.insert(format!("x-h{i:04}"), Value::String("v".repeat(10)));
        }
        let cut = bounded_headers(Value::Object(many), 8192);
        let note = cut[CUT_HEADERS_KEY].as_str().unwrap();
        assert!(note.ends_with("bytes) not kept"), "{note}");
        let kept = cut.as_object().unwrap().len() - 1;
        let left: usize = note.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(kept + left, 2000);
        let mut without_note = cut.clone();
        without_note
            .as_object_mut()
            .unwrap()
            .remove(CUT_HEADERS_KEY);
        assert!(size(&without_note) <= 8192);
        assert!(size(&without_note) > 8000, "the bound is used, not wasted");
    }

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
