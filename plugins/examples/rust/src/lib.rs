//! The Rust example plugin: for a GitHub push it logs, POSTs a summary to `input.url` (through
//! the plugin's `allow.http` grant), records the push as a row of `input.table` on
//! `input.connection` (`allow.db`), and answers what it did. Every language's example follows
//! this contract (see `plugins/examples/go/main.go`).
//!
//! ```text
//! input: {"url": "https://...", "connection": "app", "table": "pushes"}
//! ```
//!
//! The table needs the columns (event_id, repository, pusher, commits); `?` placeholders
//! (SQLite, MySQL). Without `connection` and `table` the plugin only logs and POSTs. A missing
//! input key is a fatal error; an HTTP answer of 429 or 5xx is a retryable one (honouring a
//! Retry-After of seconds); any other non-2xx answer is fatal.

use std::time::Duration;

use hookwise_plugin_sdk::serde_json::{Value, json};
use hookwise_plugin_sdk::{Context, Event, Plugin, PluginError, db, export_plugin, http, log};
use serde::Deserialize;

hookwise_plugin_sdk::input_schema!("../input.schema.json");

/// How much of a refusing receiver's answer goes into the error message.
const CLIP_BYTES: usize = 200;
/// Longest table name accepted (PostgreSQL's identifier limit).
const MAX_IDENTIFIER: usize = 63;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    connection: Option<String>,
    #[serde(default)]
    table: Option<String>,
}

/// The part of a GitHub push payload this plugin reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    repository: Repository,
    pusher: Pusher,
    commits: Vec<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Pusher {
    name: String,
}

/// Where the row goes.
struct Target {
    connection: String,
    table: String,
}

struct Example;

impl Plugin for Example {
    type Input = Input;
    type Output = Value;

    fn handle(ctx: &Context, event: &Event, input: Input) -> Result<Value, PluginError> {
        let url = present("url", input.url)?;
        let target = target(input.connection, input.table)?;
        let mut push: Push = event.payload()?;
        if push.repository.full_name.is_empty() {
            push.repository.full_name = "unknown".to_string();
        }
        if push.pusher.name.is_empty() {
            push.pusher.name = "someone".to_string();
        }
        let (pusher, repository, commits) = (
            &push.pusher.name,
            &push.repository.full_name,
            push.commits.len(),
        );
        log::info(&format!(
            "rust plugin: {pusher} pushed {commits} commit(s) to {repository} (event {}, attempt {})",
            event.id, ctx.attempt
        ));

        let text = format!("{pusher} pushed {commits} commit(s) to {repository}");
        let body = json!({
            "text": text,
            "repository": repository,
            "ref": push.git_ref,
            "after": push.after,
            "event_id": event.id,
        });
        let status = post(&url, &body)?;
        log::debug(&format!("rust plugin: the receiver answered {status}"));

        let mut output = json!({
            "posted": {"url": url, "status": status},
            "text": text,
        });
        if let Some(Target { connection, table }) = target {
            let result = db::execute(
                &connection,
                &format!(
                    "INSERT INTO {table} (event_id, repository, pusher, commits) VALUES (?, ?, ?, ?)"
                ),
                &[
                    json!(event.id),
                    json!(repository),
                    json!(pusher),
                    json!(commits),
                ],
            )
            .map_err(PluginError::retryable)?;
            output["inserted"] = json!({
                "connection": connection,
                "table": table,
                "rows_affected": result["rows_affected"].as_u64().unwrap_or(0),
                "already_applied": db::already_applied(&result),
            });
        }
        Ok(output)
    }
}

/// The value of a required input key, or the fatal error that names it.
fn present(key: &str, value: Option<String>) -> Result<String, PluginError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(PluginError::fatal(format!("input.{key} is missing"))),
    }
}

/// Where to insert: both `connection` and `table`, or neither (then nothing is inserted).
fn target(
    connection: Option<String>,
    table: Option<String>,
) -> Result<Option<Target>, PluginError> {
    if connection.is_none() && table.is_none() {
        return Ok(None);
    }
    let connection = present("connection", connection)?;
    let table = present("table", table)?;
    // A table name cannot be a bound parameter: allow plain identifiers only.
    if !identifier(&table) {
        return Err(PluginError::fatal(format!(
            "input.table {table:?} is not a plain identifier"
        )));
    }
    Ok(Some(Target { connection, table }))
}

/// POSTs `body` as JSON; the status of a 2xx answer, else the error the answer calls for.
fn post(url: &str, body: &Value) -> Result<u16, PluginError> {
    let bytes = body.to_string();
    let resp = http::send(
        "POST",
        url,
        &[("content-type", "application/json")],
        Some(bytes.as_bytes()),
    )
    .map_err(|e| PluginError::retryable(format!("POST {url}: {e}")))?;
    match resp.status {
        200..=299 => Ok(resp.status),
        429 | 500..=599 => {
            let mut err = PluginError::retryable(format!("the receiver answered {}", resp.status));
            // Seconds only, as the other examples: an HTTP date is not honoured.
            if let Some(secs) = resp
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|s| *s > 0)
            {
                err = err.retry_after(Duration::from_secs(secs));
            }
            Err(err)
        }
        other => Err(PluginError::fatal(format!(
            "the receiver answered {other}: {}",
            clip(&String::from_utf8_lossy(&resp.body), CLIP_BYTES)
        ))),
    }
}

fn identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_IDENTIFIER
        && s.char_indices()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}

/// At most `n` bytes of `s` (cut at a character boundary), with `...` when cut.
fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

export_plugin!(Example);
