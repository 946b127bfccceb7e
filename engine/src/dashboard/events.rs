//! The events pages: the list (filters, keyset paging, live updates over server-sent events)
//! and one event's story as a timeline, from the same `Story` as `hookwise logs --json`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::session::Session;
use super::{Dashboard, DashboardError};
use crate::dispatch::ops;
use crate::model::{EventId, EventOutcome};
use crate::store::{EventFilter, ListedEvent, MAX_SEARCH_TEXT, SearchText};

/// Events per page.
const PAGE_SIZE: i64 = 50;
/// Live-update streams open at once on one listener (each polls the store).
pub(super) const MAX_STREAMS: usize = 32;
/// How often a live stream looks for new events.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Most new events one poll sends; past it the page is told to reload instead.
const STREAM_BATCH: i64 = 50;
/// How often an idle stream sends a comment, so that proxies keep it open.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The filters of the list page.
const LIST_FILTERS: &[&str] = &[
    "source",
    "event_type",
    "outcome",
    "since",
    "until",
    "q",
    "cursor",
];
/// The filters of the live stream: the list's, and where the page's newest row is.
const STREAM_FILTERS: &[&str] = &[
    "source",
    "event_type",
    "outcome",
    "since",
    "until",
    "q",
    "after",
];

/// The list's filters, as given in the query string (empty fields count as absent).
#[derive(Debug, Default, Clone, serde::Serialize)]
struct ListQuery {
    source: Option<String>,
    event_type: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Text to find in payloads.
    q: Option<String>,
    cursor: Option<i64>,
    /// For streams: only events after this sequence number.
    after: Option<i64>,
    /// `q`, checked and compiled.
    #[serde(skip)]
    search: Option<SearchText>,
}

impl ListQuery {
    fn parse(raw: Option<String>, allowed: &[&str]) -> Result<ListQuery, DashboardError> {
        let mut q = ListQuery::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(DashboardError::BadRequest(format!(
                    "unknown filter `{}`; this page takes: {}",
                    clip(&k),
                    allowed.join(", ")
                )));
            }
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let number = |what: &str| {
                v.parse::<i64>()
                    .map_err(|_| DashboardError::BadRequest(format!("`{what}` must be a number")))
            };
            match k.as_ref() {
                "source" => q.source = Some(v.to_string()),
                "event_type" => q.event_type = Some(v.to_string()),
                "outcome" => q.outcome = Some(v.to_string()),
                "since" => q.since = Some(v.to_string()),
                "until" => q.until = Some(v.to_string()),
                "q" => {
                    let search = SearchText::new(v)
                        .map_err(|e| DashboardError::BadRequest(format!("`q`: {e}")))?;
                    q.q = Some(search.as_str().to_string());
                    q.search = Some(search);
                }
                "cursor" => q.cursor = Some(number("cursor")?),
                "after" => q.after = Some(number("after")?),
                _ => {}
            }
        }
        Ok(q)
    }

    /// The store filter for `limit` events before the cursor (after `after`, for streams).
    fn filter(&self, limit: i64) -> Result<EventFilter, DashboardError> {
        let outcome = match &self.outcome {
            None => None,
            Some(o) => Some(EventOutcome::parse(o).ok_or_else(|| {
                DashboardError::BadRequest(format!(
                    "`{}` is not an outcome; outcomes: {}",
                    clip(o),
                    outcome_names().join(", ")
                ))
            })?),
        };
        let time = |name: &str, text: &Option<String>| match text {
            None => Ok(None),
            Some(s) => ops::parse_time(s)
                .map(Some)
                .map_err(|e| DashboardError::BadRequest(format!("`{name}`: {}", clip(&e)))),
        };
        Ok(EventFilter {
            source: self.source.clone(),
            event_type: self.event_type.clone(),
            status: None,
            outcome,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            before_seq: self.cursor,
            after_seq: self.after,
            limit,
        })
    }

    /// A query string with these filters and `cursor`/`after` as given.
    fn url(&self, path: &str, cursor: Option<i64>, after: Option<i64>) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("source", &self.source),
            ("event_type", &self.event_type),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
        ] {
            if let Some(v) = v {
                out.append_pair(k, v);
            }
        }
        if let Some(c) = cursor {
            out.append_pair("cursor", &c.to_string());
        }
        if let Some(a) = after {
            out.append_pair("after", &a.to_string());
        }
        let query = out.finish();
        if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        }
    }
}

fn outcome_names() -> Vec<&'static str> {
    EventOutcome::ALL.iter().map(|o| o.as_str()).collect()
}

fn clip(s: &str) -> &str {
    const MAX: usize = 100;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Dashboard {
    /// Listed events as JSON values with every secret value replaced.
    fn scrubbed(&self, events: &[ListedEvent]) -> Vec<Value> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let mut v = json!({
                "seq": e.stored.seq,
                "id": e.stored.event.id.to_string(),
                "source": e.stored.event.source,
                "event_type": e.stored.event.event_type,
                "received_at": e.stored.event.received_at.0,
                "outcome": e.outcome.as_str(),
            });
            self.admin.app.scrubber.scrub_value(&mut v);
            out.push(v);
        }
        out
    }
}

/// `GET /events`: one page of events, newest first.
pub(super) async fn list(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    RawQuery(raw): RawQuery,
) -> Response {
    let result = list_inner(&d, &session, raw).await;
    d.answer(result)
}

async fn list_inner(
    d: &Dashboard,
    session: &Session,
    raw: Option<String>,
) -> Result<Response, DashboardError> {
    let query = ListQuery::parse(raw, LIST_FILTERS)?;
    // One more than shown: whether an older page exists, without counting.
    let filter = query.filter(PAGE_SIZE + 1)?;
    // With a search, also the newest event read (kept or not), where live updates start.
    let (mut events, searched, newest_seen) = match &query.search {
        None => (
            d.admin.app.store.list_events_with_outcomes(&filter).await?,
            None,
            None,
        ),
        Some(text) => {
            let app = &d.admin.app;
            let found = ops::search_events(&app.store, &app.scrubber, &filter, text).await?;
            let stop = found.stopped_at.map(|stop| (found.scanned, stop));
            (found.events, stop, found.newest_seen)
        }
    };
    let more = events.len() as i64 > PAGE_SIZE;
    events.truncate(PAGE_SIZE as usize);
    let next_url = more
        .then(|| {
            events
                .last()
                .map(|e| query.url("/events", Some(e.stored.seq), None))
        })
        .flatten();
    // A search that reached its bound before filling the page goes on from where it stopped.
    let search_stop = searched.map(|(scanned, stop)| {
        minijinja::context! {
            scanned => thousands(scanned),
            back_to => stop.received_at.0,
            url => query.url("/events", Some(stop.seq), None),
        }
    });
    // Live updates only on the newest page, where new events belong.
    let live_url = query.cursor.is_none().then(|| {
        let newest = newest_seen
            .or_else(|| events.first().map(|e| e.stored.seq))
            .unwrap_or(0);
        query.url("/events/stream", None, Some(newest))
    });
    let first_url = query
        .cursor
        .is_some()
        .then(|| query.url("/events", None, None));
    d.page(
        "events.html",
        minijinja::context! {
            csrf => &session.csrf,
            filter => minijinja::Value::from(minijinja::value::Serde(&query)),
            outcomes => outcome_names(),
            max_search => MAX_SEARCH_TEXT,
            events => minijinja::Value::from(minijinja::value::Serde(d.scrubbed(&events))),
            next_url => next_url,
            first_url => first_url,
            live_url => live_url,
            search_stop => search_stop,
        },
    )
}

/// `n` with a comma every three digits, as the page writes counts.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `GET /events/{id}`: the event's story.
pub(super) async fn page(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let result = page_inner(&d, &session, &id).await;
    d.answer(result)
}

async fn page_inner(
    d: &Dashboard,
    session: &Session,
    id: &str,
) -> Result<Response, DashboardError> {
    let id: EventId = id
        .parse()
        .map_err(|_| DashboardError::BadRequest(format!("`{}` is not an event id", clip(id))))?;
    let Some(story) = ops::story(&d.admin.app.store, id).await? else {
        return Err(DashboardError::NotFound(format!("no event {id}")));
    };
    let mut story = serde_json::to_value(&story)
        .map_err(|e| DashboardError::BadRequest(format!("cannot show the event: {e}")))?;
    d.admin.app.scrubber.scrub_value(&mut story);
    let (payload_json, payload_text) = payload_view(&story["event"]["payload"]);
    for d in story["delivery_attempts"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        // The stored body is for replays; the payload is shown below.
        if let Some(map) = d.as_object_mut() {
            map.remove("body");
        }
    }
    for x in story["executions"].as_array_mut().into_iter().flatten() {
        for a in x["attempts"].as_array_mut().into_iter().flatten() {
            a["log_lines"] = Value::from(crate::store::log_lines(&a["logs"]));
        }
    }
    d.page(
        "event.html",
        minijinja::context! {
            csrf => &session.csrf,
            event => minijinja::Value::from(minijinja::value::Serde(&story["event"])),
            outcome => minijinja::Value::from(minijinja::value::Serde(&story["outcome"])),
            trace => minijinja::Value::from(minijinja::value::Serde(&story["event"]["match_trace"])),
            delivery_attempts => minijinja::Value::from(minijinja::value::Serde(&story["delivery_attempts"])),
            executions => minijinja::Value::from(minijinja::value::Serde(&story["executions"])),
            payload_json => minijinja::Value::from(minijinja::value::Serde(&payload_json)),
            payload_text => payload_text,
        },
    )
}

/// The payload parsed for the foldable view, or its text when it is not JSON.
fn payload_view(payload: &Value) -> (Option<Value>, Option<String>) {
    match payload {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => (Some(v), None),
            Err(_) => (None, Some(text.clone())),
        },
        Value::Null => (None, None),
        other => (Some(other.clone()), None),
    }
}

/// `GET /events/stream`: new events of the list's filters as server-sent events (`event`
/// with the row as JSON; `gap` when more arrived than one poll sends; `signed-out` before
/// the stream closes because the session ended).
pub(super) async fn stream(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match ListQuery::parse(raw, STREAM_FILTERS) {
        Ok(q) => q,
        Err(e) => return d.answer(Err(e)),
    };
    let filter = match query.filter(STREAM_BATCH) {
        Ok(f) => f,
        Err(e) => return d.answer(Err(e)),
    };
    let Ok(permit) = d.streams.clone().try_acquire_owned() else {
        return d.error_page(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too many live views are open; close one and reload",
        );
    };
    let live = Live {
        d: d.clone(),
        session,
        filter,
        search: query.search,
        after: query.after.unwrap_or(0),
        queue: VecDeque::new(),
        first: true,
        done: false,
        _permit: permit,
    };
    let events = futures::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((Ok::<Event, std::convert::Infallible>(event), live))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT))
        .into_response()
}

/// One live stream's position.
struct Live {
    d: Dashboard,
    session: Session,
    filter: EventFilter,
    /// Text new events' payloads must hold.
    search: Option<SearchText>,
    /// The newest sequence number looked at.
    after: i64,
    /// Found, not yet sent (at most one poll's batch).
    queue: VecDeque<Event>,
    first: bool,
    done: bool,
    /// Held while the stream lives: counts against [`MAX_STREAMS`].
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Live {
    /// The next event to send, waiting for new events; None ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if !self.first {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            self.first = false;
            let now = Instant::now();
            if self.d.sessions.get(&self.session.id, now).is_none() {
                self.done = true;
                return Some(
                    Event::default()
                        .event("signed-out")
                        .data("the session ended"),
                );
            }
            if self.d.admin.app.is_shutting_down() {
                return None;
            }
            self.poll().await;
        }
    }

    async fn poll(&mut self) {
        self.filter.after_seq = Some(self.after);
        let found = match &self.search {
            None => self
                .d
                .admin
                .app
                .store
                .list_events_with_outcomes(&self.filter)
                .await
                .map(|events| {
                    let newest = events.first().map(|e| e.stored.seq);
                    let gap = events.len() as i64 >= STREAM_BATCH;
                    (events, newest, gap)
                }),
            Some(text) => {
                let app = &self.d.admin.app;
                ops::search_events(&app.store, &app.scrubber, &self.filter, text)
                    .await
                    .map(|found| {
                        let gap =
                            found.stopped_at.is_some() || found.events.len() as i64 >= STREAM_BATCH;
                        (found.events, found.newest_seen, gap)
                    })
            }
        };
        let (found, newest, gap) = match found {
            Ok(found) => found,
            Err(e) => {
                // The page keeps what it shows; the next poll tries again.
                tracing::warn!(error = %e, "dashboard: live events poll failed");
                return;
            }
        };
        if gap {
            self.queue.push_back(
                Event::default()
                    .event("gap")
                    .data("more new events than shown"),
            );
        }
        // Past every event looked at, kept or not: a search does not read them again.
        self.after = self.after.max(newest.unwrap_or(0));
        let rows: Vec<ListedEvent> = found.into_iter().rev().collect();
        for value in self.d.scrubbed(&rows) {
            self.queue
                .push_back(Event::default().event("event").data(value.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Millis;

    #[test]
    fn list_query_takes_known_filters_and_skips_empty_fields() {
        let q = ListQuery::parse(
            Some("source=gh&outcome=&since=1h&cursor=42".into()),
            &["source", "outcome", "since", "cursor"],
        )
        .unwrap();
        assert_eq!(q.source.as_deref(), Some("gh"));
        assert_eq!(q.outcome, None);
        assert_eq!(q.cursor, Some(42));
        assert_eq!(
            q.url("/events", Some(7), None),
            "/events?source=gh&since=1h&cursor=7"
        );
        assert!(ListQuery::parse(Some("bogus=1".into()), &["source"]).is_err());
        assert!(ListQuery::parse(Some("cursor=x".into()), &["cursor"]).is_err());
        let bad_outcome = ListQuery::parse(Some("outcome=great".into()), &["outcome"]).unwrap();
        assert!(bad_outcome.filter(1).is_err());
        let bad_since = ListQuery::parse(Some("since=soon".into()), &["since"]).unwrap();
        assert!(bad_since.filter(1).is_err());
    }

    #[test]
    fn list_query_takes_type_window_and_search() {
        let q = ListQuery::parse(
            Some(
                "event_type=issues&since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z\
                 &q=+Hello%20World+"
                    .into(),
            ),
            LIST_FILTERS,
        )
        .unwrap();
        let f = q.filter(5).unwrap();
        assert_eq!(f.event_type.as_deref(), Some("issues"));
        assert_eq!(f.since, Some(Millis(1_767_225_600_000)));
        assert_eq!(f.until, Some(Millis(1_767_312_000_000)));
        assert_eq!(f.limit, 5);
        let search = q.search.as_ref().expect("a search");
        assert_eq!(search.as_str(), "Hello World");
        assert!(search.matches(r#"{"greeting":"hello world!"}"#));
        // Every filter goes into the links, the search text trimmed.
        assert_eq!(
            q.url("/events/stream", None, Some(3)),
            "/events/stream?event_type=issues&since=2026-01-01T00%3A00%3A00Z\
             &until=2026-01-02T00%3A00%3A00Z&q=Hello+World&after=3"
        );
        // The stream takes the list's filters, and `after` instead of `cursor`.
        let s = ListQuery::parse(Some("q=x&until=1h&after=9".into()), STREAM_FILTERS).unwrap();
        assert_eq!(s.filter(1).unwrap().after_seq, Some(9));
        assert!(ListQuery::parse(Some("cursor=1".into()), STREAM_FILTERS).is_err());
        assert!(ListQuery::parse(Some("after=1".into()), LIST_FILTERS).is_err());
    }

    #[test]
    fn bad_windows_and_searches_are_refused_with_the_reason() {
        let err = |raw: &str| match ListQuery::parse(Some(raw.into()), LIST_FILTERS)
            .and_then(|q| q.filter(1))
        {
            Err(DashboardError::BadRequest(why)) => why,
            other => panic!("{raw}: {other:?}"),
        };
        assert!(
            err("until=tomorrow").starts_with("`until`: "),
            "{}",
            err("until=tomorrow")
        );
        assert!(err("since=-1h").starts_with("`since`: "));
        let long = format!("q={}", "a".repeat(MAX_SEARCH_TEXT + 1));
        assert_eq!(
            err(&long),
            format!(
                "`q`: the search text is {} bytes long; at most {MAX_SEARCH_TEXT} are searched for",
                MAX_SEARCH_TEXT + 1
            )
        );
        // The longest allowed, and blank (no search), are fine.
        let longest = format!("q={}", "a".repeat(MAX_SEARCH_TEXT));
        assert!(ListQuery::parse(Some(longest), LIST_FILTERS).is_ok());
        let blank = ListQuery::parse(Some("q=+++".into()), LIST_FILTERS).unwrap();
        assert!(blank.search.is_none() && blank.q.is_none());
    }

    #[test]
    fn counts_are_written_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(5_000), "5,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1_000), "-1,000");
    }
}
