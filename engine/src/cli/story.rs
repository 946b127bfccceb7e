//! `hookwise logs` as text: one event's story (delivery attempts, rule matches, executions
//! with their attempts, logs, HTTP calls and DB statements) in the order it happened.

use serde_json::Value;

use crate::dispatch::ops::Story;

/// The story as text for a terminal.
pub(super) fn render_story(story: &Story) -> String {
    use std::fmt::Write;
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
            let a = &at.attempt;
            let _ = writeln!(
                out,
                "    attempt {}  {}  {}  {} ms{}",
                a.attempt,
                a.started_at.to_rfc3339(),
                a.outcome.as_str(),
                a.finished_at.0 - a.started_at.0,
                a.error
                    .as_deref()
                    .map(|e| format!("  error: {e}"))
                    .unwrap_or_default()
            );
            for line in log_lines(&a.logs) {
                let _ = writeln!(
                    out,
                    "      log {}: {}",
                    line["level"].as_str().unwrap_or("?"),
                    line["message"].as_str().unwrap_or("")
                );
            }
            for call in a.http_calls.as_array().into_iter().flatten() {
                let result = match (call["status"].as_u64(), call["error"].as_str()) {
                    (Some(status), _) => status.to_string(),
                    (None, Some(err)) => format!("failed: {err}"),
                    _ => "no answer".to_string(),
                };
                let _ = writeln!(
                    out,
                    "      http {} {} -> {}",
                    call["method"].as_str().unwrap_or("?"),
                    call["url"].as_str().unwrap_or("?"),
                    result
                );
            }
            for st in a.db_statements["statements"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let _ = writeln!(
                    out,
                    "      db {}: {} -> {}",
                    st["connection"].as_str().unwrap_or("?"),
                    st["sql"].as_str().unwrap_or("?"),
                    st["outcome"]["status"].as_str().unwrap_or("?")
                );
            }
            if let Some(output) = &a.output {
                let _ = writeln!(out, "      output: {}", clip(&output.to_string(), 300));
            }
        }
    }
    out
}

/// Log lines of an attempt: `{"lines": [...]}` as the dispatcher writes them, or a bare array.
fn log_lines(logs: &Value) -> impl Iterator<Item = &Value> {
    let lines = if logs.is_array() {
        logs
    } else {
        &logs["lines"]
    };
    lines.as_array().into_iter().flatten()
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
    fn log_lines_read_both_shapes() {
        let wrapped = serde_json::json!({"lines": [{"message": "a"}, {"message": "b"}]});
        let bare = serde_json::json!([{"message": "a"}]);
        assert_eq!(log_lines(&wrapped).count(), 2);
        assert_eq!(log_lines(&bare).count(), 1);
        assert_eq!(log_lines(&serde_json::json!(null)).count(), 0);
    }
}
