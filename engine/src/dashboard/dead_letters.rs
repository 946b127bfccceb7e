//! The dead letters page: the executions that failed for good, filtered (source, rule, plugin,
//! since) and paged by keyset; the selected ones, or all that match the filter after a
//! confirmation that shows their count, are retried (each a new generation of its execution,
//! as `hookwise dead-letters retry` does) or purged (as `hookwise dead-letters purge`).

use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::session::Session;
use super::{Dashboard, DashboardError};
use crate::dispatch::ops;
use crate::model::{ExecutionId, Millis};
use crate::store::{Cursor, DeadLetterFilter, DeadLetterQuery};

/// Dead letters per page.
const PAGE_SIZE: i64 = 50;
/// Most dead letters one "all matching" action takes, and the most a count tells exactly.
pub(super) const MAX_MATCHING: i64 = 10_000;
/// Most executions one "selected" action takes (a page's worth, with room).
const MAX_SELECTED: usize = 100;

/// The page's filters and position, from a query string or a form (empty fields are absent).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
struct Filters {
    source: Option<String>,
    rule: Option<String>,
    plugin: Option<String>,
    since: Option<String>,
    /// Set by the confirmation: only dead letters made before this time (milliseconds), so
    /// that what is acted on is what was counted.
    until: Option<i64>,
    #[serde(skip)]
    cursor: Option<Cursor>,
}

/// What a form asks for.
#[derive(Debug, Default, PartialEq)]
struct Action {
    filters: Filters,
    /// `retry` or `purge`.
    verb: Option<String>,
    /// `all` (every dead letter matching the filters) or the selected ones.
    all: bool,
    ids: Vec<ExecutionId>,
    /// After an action: what was done and to how many (shown once on the list).
    done: Option<(String, u64)>,
}

impl Action {
    fn parse(pairs: &[(String, String)], allowed: &[&str]) -> Result<Action, DashboardError> {
        let mut a = Action::default();
        let mut done_verb = None;
        let mut done_n = None;
        for (k, v) in pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(DashboardError::BadRequest(format!(
                    "unknown field `{}`; this page takes: {}",
                    clip(k),
                    allowed.join(", ")
                )));
            }
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            match k.as_str() {
                "source" => a.filters.source = Some(v.to_string()),
                "rule" => a.filters.rule = Some(v.to_string()),
                "plugin" => a.filters.plugin = Some(v.to_string()),
                "since" => a.filters.since = Some(v.to_string()),
                "until" => {
                    a.filters.until = Some(v.parse().map_err(|_| {
                        DashboardError::BadRequest("`until` must be a number".into())
                    })?)
                }
                "cursor" => a.filters.cursor = Some(parse_cursor(v)?),
                "action" => match v {
                    "retry" | "purge" => a.verb = Some(v.to_string()),
                    _ => {
                        return Err(DashboardError::BadRequest(
                            "the action is `retry` or `purge`".into(),
                        ));
                    }
                },
                "scope" => match v {
                    "all" => a.all = true,
                    "selected" => a.all = false,
                    _ => {
                        return Err(DashboardError::BadRequest(
                            "the scope is `all` or `selected`".into(),
                        ));
                    }
                },
                "id" => {
                    if a.ids.len() >= MAX_SELECTED {
                        return Err(DashboardError::BadRequest(format!(
                            "select at most {MAX_SELECTED} dead letters at a time, or act on \
                             all that match the filter"
                        )));
                    }
                    let id = v.parse().map_err(|_| {
                        DashboardError::BadRequest(format!("`{}` is not an execution id", clip(v)))
                    })?;
                    if !a.ids.contains(&id) {
                        a.ids.push(id);
                    }
                }
                "done" => match v {
                    "retried" | "purged" => done_verb = Some(v.to_string()),
                    _ => return Err(DashboardError::BadRequest("unknown `done`".into())),
                },
                "n" => {
                    done_n =
                        Some(v.parse().map_err(|_| {
                            DashboardError::BadRequest("`n` must be a number".into())
                        })?)
                }
                // The CSRF token, checked before the handler runs.
                _ => {}
            }
        }
        a.done = done_verb.zip(done_n);
        Ok(a)
    }
}

impl Filters {
    /// The store query for `limit` dead letters after the cursor, narrowed to `ids` if any.
    fn query(&self, limit: i64, ids: Vec<ExecutionId>) -> Result<DeadLetterQuery, DashboardError> {
        let since = match &self.since {
            None => None,
            Some(s) => Some(
                ops::parse_time(s)
                    .map_err(|e| DashboardError::BadRequest(format!("`since`: {}", clip(&e))))?,
            ),
        };
        Ok(DeadLetterQuery {
            filter: DeadLetterFilter {
                source: self.source.clone(),
                rule_id: self.rule.clone(),
                since,
                until: self.until.map(Millis),
                before: self.cursor,
                limit,
            },
            plugin: self.plugin.clone(),
            ids,
        })
    }

    /// `/dead-letters` with these filters (not `until`), and `extra` pairs.
    fn url(&self, cursor: Option<Cursor>, extra: &[(&str, String)]) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("source", &self.source),
            ("rule", &self.rule),
            ("plugin", &self.plugin),
            ("since", &self.since),
        ] {
            if let Some(v) = v {
                out.append_pair(k, v);
            }
        }
        if let Some(c) = cursor {
            out.append_pair("cursor", &cursor_text(c));
        }
        for (k, v) in extra {
            out.append_pair(k, v);
        }
        let query = out.finish();
        if query.is_empty() {
            "/dead-letters".to_string()
        } else {
            format!("/dead-letters?{query}")
        }
    }

    fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.rule.is_none()
            && self.plugin.is_none()
            && self.since.is_none()
    }
}

/// A cursor as `MILLIS.EXECUTION_ID`.
fn cursor_text(c: Cursor) -> String {
    format!("{}.{}", c.at.0, c.id)
}

fn parse_cursor(text: &str) -> Result<Cursor, DashboardError> {
    let bad = || DashboardError::BadRequest("`cursor` is not a dead-letter position".into());
    let (at, id) = text.split_once('.').ok_or_else(bad)?;
    Ok(Cursor {
        at: Millis(at.parse().map_err(|_| bad())?),
        id: id.parse().map_err(|_| bad())?,
    })
}

fn clip(s: &str) -> &str {
    const MAX: usize = 100;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn pairs(text: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(text).into_owned().collect()
}

/// How many `count` is, in words for the page ("more than 10000" past the cap).
fn how_many(count: i64) -> String {
    if count > MAX_MATCHING {
        format!("more than {MAX_MATCHING}")
    } else {
        count.to_string()
    }
}

/// `GET /dead-letters`: one page of dead letters, newest first.
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
    let a = Action::parse(
        &pairs(raw.unwrap_or_default().as_bytes()),
        &["source", "rule", "plugin", "since", "cursor", "done", "n"],
    )?;
    let f = &a.filters;
    let store = &d.admin.app.store;
    let mut entries = store
        .list_dead_letter_entries(&f.query(PAGE_SIZE + 1, Vec::new())?)
        .await?;
    let more = entries.len() as i64 > PAGE_SIZE;
    entries.truncate(PAGE_SIZE as usize);
    let matching = store
        .count_dead_letters(
            &Filters {
                cursor: None,
                ..f.clone()
            }
            .query(0, Vec::new())?,
            MAX_MATCHING,
        )
        .await?;
    let next_url = more
        .then(|| {
            entries.last().map(|e| {
                f.url(
                    Some(Cursor {
                        at: e.letter.created_at,
                        id: e.letter.execution_id.0,
                    }),
                    &[],
                )
            })
        })
        .flatten();
    let first_url = f.cursor.is_some().then(|| f.url(None, &[]));
    let mut rows = serde_json::to_value(&entries).unwrap_or(serde_json::Value::Null);
    d.admin.app.scrubber.scrub_value(&mut rows);
    d.page(
        "dead_letters.html",
        minijinja::context! {
            csrf => &session.csrf,
            filter => minijinja::Value::from(minijinja::value::Serde(f)),
            filtered => !f.is_empty(),
            entries => minijinja::Value::from(minijinja::value::Serde(&rows)),
            matching => matching,
            matching_text => how_many(matching),
            next_url => next_url,
            first_url => first_url,
            done => a.done.as_ref().map(|(verb, n)| minijinja::context! { verb => verb, n => n }),
        },
    )
}

/// `POST /dead-letters/confirm`: how many dead letters match the filter, and a form that acts
/// on exactly those (made before now).
pub(super) async fn confirm(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> Response {
    let result = async {
        let mut a = Action::parse(
            &pairs(&body),
            &["csrf", "source", "rule", "plugin", "since", "action"],
        )?;
        let Some(verb) = a.verb.clone() else {
            return Err(DashboardError::BadRequest(
                "say which action: `retry` or `purge`".into(),
            ));
        };
        let back_url = a.filters.url(None, &[]);
        // What is acted on is what is counted now: the window is fixed (an age such as `1h`
        // becomes a time) and dead letters made from now on are left out.
        if let Some(since) = &a.filters.since {
            let at = ops::parse_time(since)
                .map_err(|e| DashboardError::BadRequest(format!("`since`: {}", clip(&e))))?;
            a.filters.since = Some(at.to_rfc3339());
        }
        a.filters.until = Some(Millis::now().0.saturating_add(1));
        let count = d
            .admin
            .app
            .store
            .count_dead_letters(&a.filters.query(0, Vec::new())?, MAX_MATCHING)
            .await?;
        d.page(
            "dead_letters_confirm.html",
            minijinja::context! {
                csrf => &session.csrf,
                verb => verb,
                filter => minijinja::Value::from(minijinja::value::Serde(&a.filters)),
                filtered => !a.filters.is_empty(),
                count => count,
                count_text => how_many(count),
                capped => count > MAX_MATCHING,
                max => MAX_MATCHING,
                back_url => back_url,
            },
        )
    }
    .await;
    d.answer(result)
}

/// `POST /dead-letters/act`: retries or purges the selected dead letters, or all that match
/// the filter (as confirmed); then back to the list with what was done.
pub(super) async fn act(State(d): State<Dashboard>, body: Bytes) -> Response {
    let result = async {
        let a = Action::parse(
            &pairs(&body),
            &[
                "csrf", "source", "rule", "plugin", "since", "until", "action", "scope", "id",
            ],
        )?;
        let Some(verb) = a.verb.clone() else {
            return Err(DashboardError::BadRequest(
                "say which action: `retry` or `purge`".into(),
            ));
        };
        if a.all && a.filters.until.is_none() {
            return Err(DashboardError::BadRequest(
                "acting on all matching dead letters needs the confirmation step".into(),
            ));
        }
        if !a.all && a.ids.is_empty() {
            return Err(DashboardError::BadRequest(
                "no dead letter selected: tick some, or act on all that match the filter".into(),
            ));
        }
        let ids = if a.all { Vec::new() } else { a.ids.clone() };
        let store = &d.admin.app.store;
        let limit = if a.all {
            MAX_MATCHING
        } else {
            MAX_SELECTED as i64
        };
        let query = a.filters.query(limit, ids)?;
        let (done, n) = if verb == "retry" {
            let mut n = 0u64;
            for dead in store.list_dead_letter_entries(&query).await? {
                ops::replay_execution(store, dead.letter.execution_id, false).await?;
                n += 1;
            }
            if n > 0 {
                d.admin.app.wake.work();
            }
            ("retried", n)
        } else {
            ("purged", store.purge_dead_letter_query(&query).await?)
        };
        let back = Filters {
            until: None,
            ..a.filters.clone()
        };
        Ok(
            Redirect::to(&back.url(None, &[("done", done.to_string()), ("n", n.to_string())]))
                .into_response(),
        )
    }
    .await;
    d.answer(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> Vec<(String, String)> {
        pairs(text.as_bytes())
    }

    const ALL: &[&str] = &[
        "csrf", "source", "rule", "plugin", "since", "until", "action", "scope", "id", "cursor",
        "done", "n",
    ];

    #[test]
    fn forms_are_parsed_strictly() {
        let id = ExecutionId::new();
        let a = Action::parse(
            &form(&format!(
                "csrf=x&source=gh&rule=&plugin=relay&action=retry&scope=selected&id={id}&id={id}"
            )),
            ALL,
        )
        .unwrap();
        assert_eq!(a.filters.source.as_deref(), Some("gh"));
        assert_eq!(a.filters.rule, None);
        assert_eq!(a.verb.as_deref(), Some("retry"));
        assert!(!a.all);
        assert_eq!(a.ids, vec![id], "duplicates are taken once");
        for bad in [
            "action=delete",
            "scope=some",
            "id=nope",
            "until=soon",
            "cursor=12",
            "cursor=x.y",
            "bogus=1",
            "done=exploded&n=1",
        ] {
            assert!(Action::parse(&form(bad), ALL).is_err(), "{bad}");
        }
        let many: String = (0..=MAX_SELECTED)
            .map(|_| format!("id={}&", ExecutionId::new()))
            .collect();
        assert!(Action::parse(&form(&many), ALL).is_err());
        assert!(Action::parse(&form("plugin=relay"), &["source"]).is_err());
    }

    #[test]
    fn cursor_and_urls_round_trip() {
        let c = Cursor {
            at: Millis(1_700_000_000_123),
            id: ExecutionId::new().0,
        };
        assert_eq!(parse_cursor(&cursor_text(c)).unwrap(), c);
        let f = Filters {
            source: Some("g h&x".into()),
            plugin: Some("relay".into()),
            until: Some(5),
            ..Filters::default()
        };
        let url = f.url(Some(c), &[("done", "purged".into()), ("n", "3".into())]);
        assert!(
            url.starts_with("/dead-letters?source=g+h%26x&plugin=relay&cursor="),
            "{url}"
        );
        assert!(url.ends_with("&done=purged&n=3"), "{url}");
        assert!(!url.contains("until"));
        let back = Action::parse(&form(url.split_once('?').unwrap().1), ALL).unwrap();
        assert_eq!(back.filters.source.as_deref(), Some("g h&x"));
        assert_eq!(back.filters.cursor, Some(c));
        assert_eq!(back.done, Some(("purged".to_string(), 3)));
        assert_eq!(Filters::default().url(None, &[]), "/dead-letters");
    }

    #[test]
    fn counts_past_the_cap_are_said_as_such() {
        assert_eq!(how_many(3), "3");
        assert_eq!(how_many(MAX_MATCHING), MAX_MATCHING.to_string());
        assert_eq!(
            how_many(MAX_MATCHING + 1),
            format!("more than {MAX_MATCHING}")
        );
    }
}
