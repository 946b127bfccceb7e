//! `hookwise logs` as text: one event's story (delivery attempts, rule matches, executions
//! with their attempts, logs, HTTP calls and DB statements) in the order it happened. One
//! attempt is rendered the same way for `hookwise plugins run`.

use std::fmt::Write;

use serde_json::Value;

use crate::dispatch::ops::Story;
use crate::store::NewExecutionAttempt;

/// Longest output shown inline in a story (`plugins run` shows all of it).
const STORY_OUTPUT_CHARS: usize = 300;

/// The story as text for a terminal.
pub(super) fn render_story(story: &Story) -> String {
    let mut out = String::new();
    let e = &story.event.event;
    let _ = writeln!(
        out,
        "event {}  {} {}  delivery {}  received {}  {}",
        e.id,
        e.source,
        e.event_type,
        e.delivery_id,
        e.received_at.to_rfc3339(),
        story.outcome.as_str()
    );
    let _ = writeln!(out, "\ndelivery attempts:");
    for d in &story.delivery_attempts {
        let a = &d.attempt;
        let _ = writeln!(
            out,
            "  {}  {} {}  from {}{}",
            a.received_at.to_rfc3339(),
            a.verdict.as_str(),
            a.status,
            a.remote_addr.as_deref().unwrap_or("?"),
            a.reason
                .as_deref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "\nrules:");
    match &story.event.match_trace {
        None => {
            let _ = writeln!(out, "  not matched yet");
        }
        Some(trace) => {
            for m in trace["matched"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "  matched      {}", m["rule"].as_str().unwrap_or("?"));
            }
            for m in trace["not_matched"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  not matched  {}: {}",
                    m["rule"].as_str().unwrap_or("?"),
                    m["reason"].as_str().unwrap_or("?")
                );
            }
        }
    }
    let _ = writeln!(out, "\nexecutions:");
    if story.executions.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for xs in &story.executions {
        let x = &xs.execution;
        let _ = writeln!(
            out,
            "  {} action {} ({})  generation {}  {}  {} attempt{}  id {}",
            x.rule_id,
            x.action_index,
            x.plugin,
            x.generation,
            x.status.as_str(),
            x.attempts,
            if x.attempts == 1 { "" } else { "s" },
            x.id
        );
        if let Some(err) = &x.last_error {
            let _ = writeln!(out, "    last error: {err}");
        }
        for at in &xs.attempts {
            render_attempt(&mut out, &at.attempt, AttemptStyle::Story);
        }
    }
    out
}

/// How much of an attempt to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AttemptStyle {
    /// One of many in an event's story: indented under its execution, output cut short.
    Story,
    /// The only one (`plugins run`): not indented, output pretty-printed in full.
    Alone,
}

/// One attempt: outcome, duration and usage, then its log lines, HTTP calls, DB statements
/// and output.
pub(super) fn render_attempt(out: &mut String, a: &NewExecutionAttempt, style: AttemptStyle) {
    let (head, body) = match style {
        AttemptStyle::Story => ("    ", "      "),
        AttemptStyle::Alone => ("", "  "),
    };
    let _ = writeln!(
        out,
        "{head}attempt {}  {}  {}  {} ms{}{}",
        a.attempt,
        a.started_at.to_rfc3339(),
        a.outcome.as_str(),
        a.finished_at.0 - a.started_at.0,
        usage(a),
        a.error
            .as_deref()
            .map(|e| format!("  error: {e}"))
            .unwrap_or_default()
    );
    for line in crate::store::log_lines(&a.logs) {
        let _ = writeln!(
            out,
            "{body}log {}: {}",
            line["level"].as_str().unwrap_or("?"),
            line["message"].as_str().unwrap_or("")
        );
    }
    for call in a.http_calls.as_array().into_iter().flatten() {
        let result = match (call["status"].as_u64(), call["error"].as_str()) {
            (Some(status), _) => status.to_string(),
            // The host's refusals say `refused: why` themselves.
            (None, Some(err)) if call["refused"] == true && err.starts_with("refused") => {
                err.to_string()
            }
            (None, Some(err)) if call["refused"] == true => format!("refused: {err}"),
            (None, Some(err)) => format!("failed: {err}"),
            _ => "no answer".to_string(),
        };
        let _ = writeln!(
            out,
            "{body}http {} {} -> {}{}",
            call["method"].as_str().unwrap_or("?"),
            call["url"].as_str().unwrap_or("?"),
            result,
            took(&call["duration"])
        );
    }
    for st in a.db_statements["statements"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "{body}db {}: {} -> {}{}",
            st["connection"].as_str().unwrap_or("?"),
            st["sql"].as_str().unwrap_or("?"),
            statement_result(&st["outcome"]),
            took(&st["duration"])
        );
    }
    for tx in a.db_statements["transactions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let outcome = &tx["outcome"];
        let _ = writeln!(
            out,
            "{body}db {}: transaction {}{}",
            tx["connection"].as_str().unwrap_or("?"),
            outcome["status"].as_str().unwrap_or("?").replace('_', " "),
            outcome["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    if let Some(output) = &a.output {
        match style {
            AttemptStyle::Story => {
                let _ = writeln!(
                    out,
                    "{body}output: {}",
                    clip(&output.to_string(), STORY_OUTPUT_CHARS)
                );
            }
            AttemptStyle::Alone => {
                let pretty = serde_json::to_string_pretty(output).unwrap_or_default();
                let _ = writeln!(out, "{body}output:");
                for line in pretty.lines() {
                    let _ = writeln!(out, "{body}  {line}");
                }
            }
        }
    }
}

/// `  peak memory 1.2 MiB  fuel 12345`, for what the attempt recorded.
fn usage(a: &NewExecutionAttempt) -> String {
    /// Bytes in a MiB, for the peak memory.
    const MIB: f64 = (1 << 20) as f64;
    let mut text = String::new();
    if let Some(bytes) = a.memory_peak.filter(|b| *b > 0) {
        let _ = write!(text, "  peak memory {:.1} MiB", bytes as f64 / MIB);
    }
    if let Some(fuel) = a.fuel_used {
        let _ = write!(text, "  fuel {fuel}");
    }
    text
}

/// `  (12 ms)` for a recorded duration (`{"secs", "nanos"}`), nothing when there is none.
fn took(duration: &Value) -> String {
    match (duration["secs"].as_u64(), duration["nanos"].as_u64()) {
        (Some(secs), Some(nanos)) => format!(
            "  ({} ms)",
            secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
        ),
        _ => String::new(),
    }
}

/// What one statement did: `ok, 2 rows, 1 affected`, `refused: ...`, `failed: ...`.
fn statement_result(outcome: &Value) -> String {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    match outcome["status"].as_str() {
        Some("ok") => {
            let rows = outcome["rows"].as_u64().unwrap_or(0);
            let affected = outcome["rows_affected"].as_u64().unwrap_or(0);
            format!(
                "ok, {rows} row{} returned, {affected} row{} affected",
                plural(rows),
                plural(affected)
            )
        }
        Some("already_applied") => "already applied by an earlier attempt".to_string(),
        Some("failed") => format!("failed: {}", outcome["error"].as_str().unwrap_or("?")),
        Some("refused") => format!("refused: {}", outcome["reason"].as_str().unwrap_or("?")),
        other => other.unwrap_or("?").to_string(),
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_on_a_character_boundary() {
        assert_eq!(clip("short", 300), "short");
        assert_eq!(clip("abcdef", 3), "abc...");
        // `é` takes bytes 1..3: a cut at byte 2 backs off to 1.
        assert_eq!(clip("aébc", 2), "a...");
    }

    #[test]
    fn an_attempt_shows_its_calls_statements_usage_and_output() {
        use crate::model::{AttemptOutcome, Millis};
        let attempt = NewExecutionAttempt {
            attempt: 2,
            started_at: Millis(1_000),
            finished_at: Millis(1_012),
            outcome: AttemptOutcome::Retryable,
            error: Some("plugin error (Retryable): try later".into()),
            output: Some(serde_json::json!({"a": [1]})),
            logs: serde_json::json!({"lines": [{"level": "info", "message": "hi"}]}),
            http_calls: serde_json::json!([
                {"method": "POST", "url": "http://127.0.0.1:9/h", "status": 503,
                 "duration": {"secs": 0, "nanos": 4_500_000}},
                {"method": "GET", "url": "https://x.example/", "status": null,
                 "error": "host not granted", "refused": true},
                {"method": "PUT", "url": "https://z.example/", "status": null,
                 "error": "refused: too many requests in one call", "refused": true},
                {"method": "GET", "url": "https://y.example/", "status": null,
                 "error": "connection reset", "refused": false},
            ]),
            db_statements: serde_json::json!({
                "statements": [
                    {"connection": "audit", "sql": "INSERT INTO t VALUES (?)",
                     "outcome": {"status": "ok", "rows": 0, "rows_affected": 1},
                     "duration": {"secs": 1, "nanos": 0}},
                    {"connection": "audit", "sql": "ATTACH 'x' AS y",
                     "outcome": {"status": "refused", "reason": "not a data statement"}},
                    {"connection": "audit", "sql": "SELECT 1",
                     "outcome": {"status": "already_applied"}},
                ],
                "transactions": [{"connection": "audit", "outcome": {"status": "rolled_back"}}],
            }),
            fuel_used: Some(1234),
            memory_peak: Some(3 << 19),
        };
        let mut story = String::new();
        render_attempt(&mut story, &attempt, AttemptStyle::Story);
        let expected = [
            "    attempt 2  ",
            "  retryable  12 ms  peak memory 1.5 MiB  fuel 1234  error: plugin error (Retryable): try later",
            "      log info: hi",
            "      http POST http://127.0.0.1:9/h -> 503  (4 ms)",
            "      http GET https://x.example/ -> refused: host not granted",
            "      http PUT https://z.example/ -> refused: too many requests in one call\n",
            "      http GET https://y.example/ -> failed: connection reset",
            "      db audit: INSERT INTO t VALUES (?) -> ok, 0 rows returned, 1 row affected  (1000 ms)",
            "      db audit: ATTACH 'x' AS y -> refused: not a data statement",
            "      db audit: SELECT 1 -> already applied by an earlier attempt",
            "      db audit: transaction rolled back",
            "      output: {\"a\":[1]}",
        ];
        for line in expected {
            assert!(story.contains(line), "`{line}` missing from:\n{story}");
        }
        let mut alone = String::new();
        render_attempt(&mut alone, &attempt, AttemptStyle::Alone);
        assert!(alone.starts_with("attempt 2  "), "{alone}");
        assert!(
            alone.ends_with("  output:\n    {\n      \"a\": [\n        1\n      ]\n    }\n"),
            "{alone}"
        );
    }
}
