//! The handlers of the admin API. Each parses its query or body strictly (an unknown or
//! malformed parameter is a 400 with the reason), then calls the store or `dispatch::ops`, the
//! same functions the CLI uses.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminState, ApiError, OPENAPI};
use crate::dispatch::ops::{self, ReplayError};
use crate::model::{
    EventId, EventOutcome, EventStatus, ExecutionId, ExecutionStatus, Millis, Verdict,
};
use crate::store::{
    Cursor, DeadLetterFilter, DeliveryAttemptFilter, EventFilter, ExecutionFilter, SearchText,
    StoreError,
};

/// Items per page unless `limit` says otherwise.
const DEFAULT_LIMIT: i64 = 50;
/// Most items per page.
pub(crate) const MAX_LIMIT: i64 = 1000;
/// Most dead letters one retry request replays: as many as `hookwise dead-letters retry` takes.
const MAX_RETRY: i64 = ops::MAX_DEAD_LETTER_BATCH;

type ApiResult = Result<Response, ApiError>;

fn ok(value: impl serde::Serialize) -> ApiResult {
    Ok(Json(value).into_response())
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> ApiError {
        let detail = e.to_string();
        match e {
            ReplayError::Store(e) => ApiError::internal(e),
            ReplayError::NoEvent(_) | ReplayError::NoExecution(_) => ApiError::not_found(detail),
            ReplayError::Quarantined(_) | ReplayError::Unfinished(..) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", detail)
            }
            ReplayError::RuleDidNotMatch(..) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "rule_did_not_match",
                detail,
            ),
        }
    }
}

/// A query string, checked against the parameters a route takes.
struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(raw: Option<String>, allowed: &[&str]) -> Result<Params, ApiError> {
        let mut out = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{}`; this route takes: {}",
                    clip(&k),
                    allowed.join(", ")
                )));
            }
            if out.insert(k.to_string(), v.to_string()).is_some() {
                return Err(ApiError::bad_request(format!(
                    "query parameter `{k}` is given twice"
                )));
            }
        }
        Ok(Params(out))
    }

    fn text(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn parsed<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Option<T>,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => parse(v).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!("`{key}`: `{}` is not {what}", clip(v)))
            }),
        }
    }

    fn time(&self, key: &str) -> Result<Option<Millis>, ApiError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => ops::parse_time(v)
                .map(Some)
                .map_err(|e| ApiError::bad_request(format!("`{key}`: {}", clip(&e)))),
        }
    }

    fn limit(&self) -> Result<i64, ApiError> {
        let limit = self
            .parsed("limit", |v| v.parse::<i64>().ok(), "a number")?
            .unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "`limit` must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok(limit)
    }

    fn cursor(&self) -> Result<Option<Cursor>, ApiError> {
        self.parsed("cursor", decode_cursor, "a cursor from a `next_cursor`")
    }
}

/// A cursor as clients see it: `MILLIS_UUID` of the last row of a page.
fn encode_cursor(at: Millis, id: uuid::Uuid) -> String {
    format!("{}_{}", at.0, id.simple())
}

fn decode_cursor(text: &str) -> Option<Cursor> {
    let (at, id) = text.split_once('_')?;
    Some(Cursor {
        at: Millis(at.parse().ok()?),
        id: uuid::Uuid::try_parse(id).ok()?,
    })
}

/// A page of items and the cursor of the next page, when there may be one.
fn page<T: serde::Serialize>(items: &[T], limit: i64, next: impl Fn(&T) -> String) -> ApiResult {
    let next_cursor = (items.len() as i64 >= limit)
        .then(|| items.last().map(next))
        .flatten();
    ok(json!({"items": items, "next_cursor": next_cursor}))
}

fn clip(s: &str) -> &str {
    const MAX: usize = 100;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn event_id(text: &str) -> Result<EventId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("`{}` is not an event id", clip(text))))
}

fn execution_id(text: &str) -> Result<ExecutionId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("`{}` is not an execution id", clip(text))))
}

/// A JSON body; empty means all defaults.
fn body<T: serde::de::DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found("no such admin route; see /api/v1/openapi.json")
}

pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub(super) async fn metrics(State(s): State<AdminState>) -> Response {
    let queue = match s.app.store.queue_depth().await {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the queue depth");
            None
        }
    };
    let text = s.app.metrics.render(queue, s.app.store.batch_stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub(super) async fn delivery_attempts(
    State(s): State<AdminState>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(
        q,
        &[
            "source", "verdict", "event_id", "since", "until", "limit", "cursor",
        ],
    )?;
    let filter = DeliveryAttemptFilter {
        source: p.text("source"),
        verdict: p.parsed(
            "verdict",
            Verdict::parse,
            "a verdict (accepted, duplicate, quarantined, handshake, rejected)",
        )?,
        event_id: p.parsed("event_id", |v| v.parse().ok(), "an event id")?,
        since: p.time("since")?,
        until: p.time("until")?,
        before: p.cursor()?,
        limit: p.limit()?,
    };
    let items = s.app.store.list_delivery_attempts_filtered(&filter).await?;
    page(&items, filter.limit, |a| {
        encode_cursor(a.attempt.received_at, a.attempt.id.0)
    })
}

pub(super) async fn events(State(s): State<AdminState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(
        q,
        &[
            "source",
            "event_type",
            "status",
            "outcome",
            "since",
            "until",
            "q",
            "limit",
            "cursor",
        ],
    )?;
    let filter = EventFilter {
        source: p.text("source"),
        event_type: p.text("event_type"),
        status: p.parsed(
            "status",
            EventStatus::parse,
            "an event status (pending, planned, quarantined)",
        )?,
        outcome: p.parsed(
            "outcome",
            EventOutcome::parse,
            "an event outcome (pending, quarantined, no_match, running, failing, succeeded, dead)",
        )?,
        since: p.time("since")?,
        until: p.time("until")?,
        before_seq: p.parsed(
            "cursor",
            |v| v.parse::<i64>().ok(),
            "a cursor from a `next_cursor`",
        )?,
        limit: p.limit()?,
        ..EventFilter::default()
    };
    let Some(text) = p.text("q") else {
        let items = s.app.store.list_events_with_outcomes(&filter).await?;
        return page(&items, filter.limit, |e| e.stored.seq.to_string());
    };
    let text = SearchText::new(&text).map_err(|e| ApiError::bad_request(format!("`q`: {e}")))?;
    let found = ops::search_events(&s.app.store, &s.app.scrubber, &filter, &text).await?;
    // A full page continues after its last event; a search that reached its bound first
    // continues after the last event it read.
    let next_cursor = match found.stopped_at {
        Some(stop) => Some(stop.seq),
        None => (found.events.len() as i64 >= filter.limit)
            .then(|| found.events.last().map(|e| e.stored.seq))
            .flatten(),
    };
    ok(json!({
        "items": found.events,
        "next_cursor": next_cursor.map(|c| c.to_string()),
        "search": {
            "scanned": found.scanned,
            "complete": found.stopped_at.is_none(),
            "searched_back_to": found.stopped_at.map(|s| s.received_at),
        },
    }))
}

/// The whole story of one event: exactly what `hookwise logs --json` prints.
pub(super) async fn event(State(s): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let id = event_id(&id)?;
    match ops::story(&s.app.store, id).await? {
        Some(story) => ok(story),
        None => Err(ApiError::not_found(format!("no event {id}"))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayEventBody {
    /// Only this rule's actions.
    rule: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

pub(super) async fn replay_event(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let id = event_id(&id)?;
    let req: ReplayEventBody = body(&bytes)?;
    let rules = s.rules.current();
    let planned = ops::replay_event(
        &s.app.store,
        &s.app.config,
        &rules,
        id,
        req.rule.as_deref(),
        req.dry_run,
    )
    .await?;
    if !req.dry_run {
        s.app.wake.work();
    }
    ok(ops::Replays {
        dry_run: req.dry_run,
        planned,
    })
}

pub(super) async fn executions(State(s): State<AdminState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(
        q,
        &[
            "status", "rule", "plugin", "event_id", "since", "limit", "cursor",
        ],
    )?;
    let filter = ExecutionFilter {
        status: p.parsed(
            "status",
            ExecutionStatus::parse,
            "an execution status (pending, running, succeeded, dead)",
        )?,
        rule_id: p.text("rule"),
        plugin: p.text("plugin"),
        event_id: p.parsed("event_id", |v| v.parse().ok(), "an event id")?,
        since: p.time("since")?,
        before: p.cursor()?,
        limit: p.limit()?,
    };
    let items = s.app.store.list_executions(&filter).await?;
    page(&items, filter.limit, |x| {
        encode_cursor(x.created_at, x.id.0)
    })
}

/// One execution with every attempt (the execution's part of the event's story).
pub(super) async fn execution(State(s): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let id = execution_id(&id)?;
    let Some(execution) = s.app.store.get_execution(id).await? else {
        return Err(ApiError::not_found(format!("no execution {id}")));
    };
    let attempts = s.app.store.attempts_for_execution(id).await?;
    ok(ops::ExecutionStory {
        execution,
        attempts,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRunBody {
    #[serde(default)]
    dry_run: bool,
}

pub(super) async fn replay_execution(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let id = execution_id(&id)?;
    let req: DryRunBody = body(&bytes)?;
    let planned = ops::replay_execution(&s.app.store, id, req.dry_run).await?;
    if !req.dry_run {
        s.app.wake.work();
    }
    ok(ops::Replays {
        dry_run: req.dry_run,
        planned: vec![planned],
    })
}

pub(super) async fn dead_letters(State(s): State<AdminState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q, &["source", "rule", "since", "until", "limit", "cursor"])?;
    let filter = DeadLetterFilter {
        source: p.text("source"),
        rule_id: p.text("rule"),
        since: p.time("since")?,
        until: p.time("until")?,
        before: p.cursor()?,
        limit: p.limit()?,
    };
    let items = ops::dead_letters(&s.app.store, &filter).await?;
    page(&items, filter.limit, |d| {
        encode_cursor(d.created_at, d.execution_id.0)
    })
}

/// The body of a dead-letter retry or purge: which dead letters, and for a retry how many
/// at most and whether only to show what would be planned.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterBody {
    source: Option<String>,
    rule: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    #[serde(default)]
    dry_run: bool,
}

impl DeadLetterBody {
    /// The dead letters this body selects, at most `limit`.
    fn filter(&self, limit: i64) -> Result<DeadLetterFilter, ApiError> {
        let time = |key: &str, v: &Option<String>| -> Result<Option<Millis>, ApiError> {
            v.as_deref()
                .map(ops::parse_time)
                .transpose()
                .map_err(|e| ApiError::bad_request(format!("`{key}`: {}", clip(&e))))
        };
        Ok(DeadLetterFilter {
            source: self.source.clone(),
            rule_id: self.rule.clone(),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            before: None,
            limit,
        })
    }
}

pub(super) async fn retry_dead_letters(State(s): State<AdminState>, bytes: Bytes) -> ApiResult {
    let req: DeadLetterBody = body(&bytes)?;
    let limit = req.limit.unwrap_or(MAX_RETRY);
    if !(1..=MAX_RETRY).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {MAX_RETRY}"
        )));
    }
    let filter = req.filter(limit)?;
    let planned = ops::retry_dead_letters(&s.app.store, &filter, req.dry_run).await?;
    if !req.dry_run && !planned.is_empty() {
        s.app.wake.work();
    }
    ok(ops::Replays {
        dry_run: req.dry_run,
        planned,
    })
}

/// Deletes the selected dead letters (all of them when the body selects nothing), as
/// `hookwise dead-letters purge` does; their executions stay in the history.
pub(super) async fn purge_dead_letters(State(s): State<AdminState>, bytes: Bytes) -> ApiResult {
    let req: DeadLetterBody = body(&bytes)?;
    if req.limit.is_some() || req.dry_run {
        return Err(ApiError::bad_request(
            "a purge deletes every dead letter selected by `source`, `rule`, `since` and \
             `until`; it takes no `limit` or `dry_run`",
        ));
    }
    // Every match goes: the store ignores the limit when it deletes.
    let filter = req.filter(MAX_RETRY)?;
    ok(ops::purge_dead_letters(&s.app.store, &filter).await?)
}

/// The rules in force (id, sources, events, file:line) and the last reload's outcome.
pub(super) async fn rules(State(s): State<AdminState>) -> ApiResult {
    let set = s.rules.current();
    let rules: Vec<Value> = set
        .rules()
        .map(|r| {
            let (file, pos) = r.location();
            json!({
                "id": r.id(),
                "description": r.description(),
                "sources": r.sources(),
                "events": r.events().collect::<Vec<_>>(),
                "plugins": r.actions().iter().map(|a| a.plugin()).collect::<Vec<_>>(),
                "file": file.display().to_string(),
                "line": pos.line,
                "column": pos.column,
            })
        })
        .collect();
    ok(json!({"status": s.rules.status(), "rules": rules}))
}

/// Compiles the rule files again: 200 with the new status, or 422 with every problem while the
/// rules in force stay.
pub(super) async fn reload_rules(State(s): State<AdminState>) -> ApiResult {
    let rules = s.rules.clone();
    let config = s.app.config.clone();
    // Compiling reads files and builds regexes: off the async workers.
    let result = tokio::task::spawn_blocking(move || rules.reload(&config))
        .await
        .map_err(ApiError::internal)?;
    match result {
        Ok(n) => ok(json!({"reloaded": true, "rules": n, "status": s.rules.status()})),
        Err(problems) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            format!(
                "{} problem{} in the rules; the rules in force stay",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ),
        )
        .with(json!({"problems": problems, "status": s.rules.status()}))),
    }
}

/// The configured plugins: whether each is loaded, its limits and its grants.
pub(super) async fn plugins(State(s): State<AdminState>) -> ApiResult {
    let list: Vec<Value> = s
        .app
        .config
        .plugins
        .iter()
        .map(|p| {
            let mut entry = json!({
                "name": p.name,
                "builtin": p.path.is_none(),
                "path": p.path.as_ref().map(|p| p.display().to_string()),
                "limits": {
                    "memory_bytes": p.memory,
                    "timeout_ms": u64::try_from(p.timeout.as_millis()).unwrap_or(u64::MAX),
                    "fuel": p.fuel,
                    "concurrency": p.concurrency,
                },
                "allow": {"http": p.allow_http, "db": p.allow_db},
            });
            s.plugins.status(&p.name).describe(&mut entry);
            entry
        })
        .collect();
    ok(json!({"plugins": list}))
}
