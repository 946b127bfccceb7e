//! The rules page: the rules in force (file:line, sources, events, conditions, actions), the
//! outcome of the last reload with its problems, a Reload button, and trying rules (one in
//! force, or pasted YAML) against stored events: the same backtest as `hookwise test
//! --against-store`, nothing run, nothing stored.

use std::sync::Arc;

use axum::extract::{Extension, RawQuery, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::session::Session;
use super::{Dashboard, DashboardError};
use crate::dispatch::backtest::{self, BacktestError, MAX_LIMIT, Window};
use crate::dispatch::ops::parse_time;

/// The name pasted rules go by in problems (`pasted:3:7: ...`).
const PASTED: &str = "pasted";

/// Backtests that run at once in this process; more wait their turn, so that pasted rules
/// cannot take every blocking thread (each backtest is bounded in time and bytes too).
static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The backtest form as sent (empty fields count as absent).
#[derive(Debug, Default, Clone, Serialize)]
struct TryForm {
    rule: String,
    yaml: String,
    limit: String,
    since: String,
    until: String,
}

impl TryForm {
    fn parse(body: &[u8]) -> TryForm {
        let mut f = TryForm {
            limit: backtest::DEFAULT_LIMIT.to_string(),
            ..TryForm::default()
        };
        for (k, v) in form_urlencoded::parse(body) {
            match k.as_ref() {
                "rule" => f.rule = v.trim().to_string(),
                "yaml" => f.yaml = v.into_owned(),
                "limit" => f.limit = v.trim().to_string(),
                "since" => f.since = v.trim().to_string(),
                "until" => f.until = v.trim().to_string(),
                _ => {}
            }
        }
        f
    }

    /// The window asked for, or what is wrong with it.
    fn window(&self) -> Result<Window, String> {
        let limit = if self.limit.is_empty() {
            backtest::DEFAULT_LIMIT
        } else {
            match self.limit.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(format!("the number of events must be 1 to {MAX_LIMIT}")),
            }
        };
        let time = |name: &str, text: &str| {
            if text.is_empty() {
                return Ok(None);
            }
            parse_time(text)
                .map(Some)
                .map_err(|e| format!("{name}: {e}"))
        };
        Ok(Window {
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            limit,
        })
    }
}

/// `GET /rules` (`?edit=ID` puts the file of rule ID in the backtest's text box).
pub(super) async fn page(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    RawQuery(raw): RawQuery,
) -> Response {
    let result = async {
        let mut form = TryForm {
            limit: backtest::DEFAULT_LIMIT.to_string(),
            ..TryForm::default()
        };
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if k == "edit" {
                form.yaml = rule_file_text(&d, &v)?;
            }
        }
        render(&d, &session, &form, None, &[])
    }
    .await;
    d.answer(result)
}

/// The text of the file rule `id` was read from, for editing a copy.
fn rule_file_text(d: &Dashboard, id: &str) -> Result<String, DashboardError> {
    let rules = d.admin.rules.current();
    let Some(rule) = rules.get(id) else {
        return Err(DashboardError::NotFound(format!(
            "no rule `{}` in force",
            id.chars().take(100).collect::<String>()
        )));
    };
    let (file, _) = rule.location();
    match std::fs::read_to_string(file) {
        Ok(text) if text.len() <= backtest::MAX_RULES_TEXT => Ok(text),
        Ok(_) => Err(DashboardError::BadRequest(format!(
            "{} is larger than the {} KiB the text box takes",
            file.display(),
            backtest::MAX_RULES_TEXT / 1024
        ))),
        Err(e) => Err(DashboardError::NotFound(format!(
            "cannot read {}: {e}",
            file.display()
        ))),
    }
}

/// `POST /rules/reload`: compiles the rule files again; the page shows the outcome.
pub(super) async fn reload(State(d): State<Dashboard>) -> Response {
    let rules = d.admin.rules.clone();
    let config = d.admin.app.config.clone();
    // Compiling reads files and builds regexes: off the async workers. The outcome is kept
    // in the rules' status, which the page shows.
    match tokio::task::spawn_blocking(move || rules.reload(&config)).await {
        Ok(_) => Redirect::to("/rules#reload").into_response(),
        Err(e) => d.answer(Err(DashboardError::BadRequest(format!(
            "the reload failed: {e}"
        )))),
    }
}

/// `POST /rules/backtest`: the rules tried against stored events; the page with the result.
pub(super) async fn try_rules(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    request: Request,
) -> Response {
    // The body was read, bounded, by `require_session` (the CSRF check).
    let bytes =
        match axum::body::to_bytes(request.into_body(), super::access::MAX_BACKTEST_FORM_BYTES)
            .await
        {
            Ok(bytes) => bytes,
            Err(_) => {
                return d.answer(Err(DashboardError::BadRequest(
                    "the form is too large".into(),
                )));
            }
        };
    let form = TryForm::parse(&bytes);
    let result = try_inner(&d, &session, &form).await;
    d.answer(result)
}

async fn try_inner(
    d: &Dashboard,
    session: &Session,
    form: &TryForm,
) -> Result<Response, DashboardError> {
    let window = match form.window() {
        Ok(w) => w,
        Err(problem) => return render(d, session, form, None, &[problem]),
    };
    let _turn = RUNNING
        .acquire()
        .await
        .map_err(|e| DashboardError::BadRequest(format!("backtests are closed: {e}")))?;
    let config = d.admin.app.config.clone();
    let (rules, only) = if form.yaml.trim().is_empty() {
        let only = (!form.rule.is_empty()).then_some(form.rule.as_str());
        (d.admin.rules.current(), only)
    } else {
        let text = form.yaml.clone();
        let compile_config = config.clone();
        // Compiling builds regexes and templates: off the async workers.
        let compiled = tokio::task::spawn_blocking(move || {
            backtest::compile_text(PASTED, &text, &compile_config)
        })
        .await
        .map_err(|e| DashboardError::BadRequest(format!("the rules could not be compiled: {e}")))?;
        match compiled {
            Ok(rules) => (Arc::new(rules), None),
            Err(problems) => {
                let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return render(d, session, form, None, &problems);
            }
        }
    };
    let done = match backtest::run(&d.admin.app.store, config, rules, only, window).await {
        Ok(done) => done,
        Err(BacktestError::Store(e)) => return Err(e.into()),
        Err(e) => return render(d, session, form, None, &[e.to_string()]),
    };
    let rule_counts: Vec<Value> = done
        .summary
        .rules
        .iter()
        .map(|(rule, n)| json!({"rule": rule, "matched": n}))
        .collect();
    let mut result = json!({
        "rule_counts": rule_counts,
        "summary": done.summary,
        "summary_line": done.summary_line(),
        "events": done.events,
    });
    d.admin.app.scrubber.scrub_value(&mut result);
    render(d, session, form, Some(result), &[])
}

/// The rules page; with a backtest's `result` or its `problems` when there are.
fn render(
    d: &Dashboard,
    session: &Session,
    form: &TryForm,
    result: Option<Value>,
    problems: &[String],
) -> Result<Response, DashboardError> {
    let set = d.admin.rules.current();
    let rules: Vec<Value> = set
        .rules()
        .map(|r| {
            let (file, pos) = r.location();
            json!({
                "id": r.id(),
                "description": r.description(),
                "file": file.display().to_string(),
                "line": pos.line,
                "edit_url": format!(
                    "/rules?{}",
                    form_urlencoded::Serializer::new(String::new())
                        .append_pair("edit", r.id())
                        .finish()
                ),
                "sources": r.sources(),
                "events": r.events().collect::<Vec<_>>(),
                "conditions": r.conditions_summary(),
                "actions": r.actions().iter().map(|a| json!({
                    "plugin": a.plugin(),
                    "retry": a.retry(),
                    "timeout": a.timeout().map(crate::units::format_duration),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut status = serde_json::to_value(d.admin.rules.status()).unwrap_or(Value::Null);
    let mut rules = Value::Array(rules);
    let scrubber = &d.admin.app.scrubber;
    scrubber.scrub_value(&mut status);
    scrubber.scrub_value(&mut rules);
    let view = |v: &Value| minijinja::Value::from(minijinja::value::Serde(v.clone()));
    d.page(
        "rules.html",
        minijinja::context! {
            csrf => &session.csrf,
            status => view(&status),
            rules => view(&rules),
            form => minijinja::Value::from(minijinja::value::Serde(form)),
            max_limit => MAX_LIMIT,
            problems => problems.to_vec(),
            result => result.as_ref().map(view),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_takes_its_fields_and_checks_the_window() {
        let f = TryForm::parse(b"rule=r1&yaml=rules%3A%0A&limit=20&since=24h&csrf=x&other=1");
        assert_eq!(f.rule, "r1");
        assert_eq!(f.yaml, "rules:\n");
        let w = f.window().unwrap();
        assert_eq!(w.limit, 20);
        assert!(w.since.is_some());
        assert!(w.until.is_none());
        assert_eq!(TryForm::parse(b"").window().unwrap().limit, 100);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "since=soon",
            "until=later",
        ] {
            assert!(TryForm::parse(bad.as_bytes()).window().is_err(), "{bad}");
        }
    }
}
