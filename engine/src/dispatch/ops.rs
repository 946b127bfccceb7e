//! Operations on stored work that the CLI and the admin API share: the whole story of one
//! event, replays, and dead-letter handling.
//!
//! A replay plans a new *generation* of executions, with new idempotency keys: the effects of
//! the replayed actions happen again (receivers that dedupe on `Idempotency-Key` see a new
//! key, DB writes through the capability apply again). That is the point of a replay.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::model::{EventId, EventOutcome, ExecutionId, ExecutionStatus, ExecutionTally, Millis};
use crate::rules::RuleSet;
use crate::store::{
    DeadLetter, DeadLetterFilter, DeliveryAttempt, Execution, ExecutionAttempt, NewExecution,
    Store, StoreError, StoredEvent,
};

/// Everything hookwise knows about one event.
#[derive(Debug, Clone, Serialize)]
pub struct Story {
    pub event: StoredEvent,
    /// What became of the event, as `hookwise events` lists it.
    pub outcome: EventOutcome,
    pub delivery_attempts: Vec<DeliveryAttempt>,
    pub executions: Vec<ExecutionStory>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecutionStory {
    #[serde(flatten)]
    pub execution: Execution,
    pub attempts: Vec<ExecutionAttempt>,
}

/// The story of `event`, or None when there is no such event.
pub async fn story(store: &Store, event: EventId) -> Result<Option<Story>, StoreError> {
    let Some(stored) = store.get_event(event).await? else {
        return Ok(None);
    };
    let delivery_attempts = store.delivery_attempts_for_event(event).await?;
    let mut executions = Vec::new();
    for x in store.executions_for_event(event).await? {
        let attempts = store.attempts_for_execution(x.id).await?;
        executions.push(ExecutionStory {
            execution: x,
            attempts,
        });
    }
    let outcome = outcome_of(&stored, &executions);
    Ok(Some(Story {
        event: stored,
        outcome,
        delivery_attempts,
        executions,
    }))
}

/// The outcome of `event` given all its executions: the latest generation of each action
/// counts, as in the store's listing.
fn outcome_of(event: &StoredEvent, executions: &[ExecutionStory]) -> EventOutcome {
    let mut latest: HashMap<(&str, i32), &Execution> = HashMap::new();
    for x in executions.iter().map(|x| &x.execution) {
        let slot = latest
            .entry((x.rule_id.as_str(), x.action_index))
            .or_insert(x);
        if x.generation > slot.generation {
            *slot = x;
        }
    }
    let mut tally = ExecutionTally::default();
    for x in latest.values() {
        tally.add(x.status, x.attempts);
    }
    EventOutcome::of(event.event.status, &tally)
}

/// A `since`/`until` bound: an RFC 3339 time, or an age before now such as `1h`, `30m` or `7d`.
pub fn parse_time(text: &str) -> Result<Millis, String> {
    if let Some(ms) = crate::rfc3339::parse_millis(text) {
        return Ok(Millis(ms));
    }
    let age = crate::config::units::parse_duration(text)
        .map_err(|e| format!("neither an RFC 3339 time nor an age: {e}"))?;
    let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    Ok(Millis(Millis::now().0.saturating_sub(age)))
}

/// An execution a replay plans (or would plan, in a dry run).
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    pub event_id: EventId,
    pub rule_id: String,
    pub action_index: i32,
    pub plugin: String,
    pub generation: i32,
    pub idempotency_key: String,
    /// The execution this one retries, for execution and dead-letter replays.
    pub replaces: Option<ExecutionId>,
}

/// Why a replay could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no event {0}")]
    NoEvent(EventId),
    #[error("no execution {0}")]
    NoExecution(ExecutionId),
    #[error("event {0} was quarantined (its payload failed validation); it has no actions")]
    Quarantined(EventId),
    #[error("execution {0} is still {1}; only finished executions can be replayed")]
    Unfinished(ExecutionId, &'static str),
    #[error("rule `{0}` did not match event {1} with the current rules")]
    RuleDidNotMatch(String, EventId),
}

/// Replays `event`: matches it against the current `rules` and plans a new generation of the
/// actions of every matched rule (or only of `rule`).
pub async fn replay_event(
    store: &Store,
    config: &Config,
    rules: &RuleSet,
    event: EventId,
    rule: Option<&str>,
    dry_run: bool,
) -> Result<Vec<Replayed>, ReplayError> {
    let stored = store
        .get_event(event)
        .await?
        .ok_or(ReplayError::NoEvent(event))?;
    if stored.event.status == crate::model::EventStatus::Quarantined {
        return Err(ReplayError::Quarantined(event));
    }
    let generation = store.next_generation(event).await?;
    let mut plan = super::plan_event(rules, config, &stored, generation);
    if let Some(rule) = rule {
        plan.executions.retain(|x| x.rule_id == rule);
        if plan.executions.is_empty() {
            return Err(ReplayError::RuleDidNotMatch(rule.to_string(), event));
        }
    }
    let out = plan
        .executions
        .iter()
        .map(|x| replayed(event, x, None))
        .collect();
    if !dry_run {
        store.plan_replay(event, &plan.executions, &[]).await?;
    }
    Ok(out)
}

/// Replays one finished execution: the same rule and action, as a new generation. Its dead
/// letter, if any, is retired.
pub async fn replay_execution(
    store: &Store,
    execution: ExecutionId,
    dry_run: bool,
) -> Result<Replayed, ReplayError> {
    let x = store
        .get_execution(execution)
        .await?
        .ok_or(ReplayError::NoExecution(execution))?;
    if matches!(
        x.status,
        ExecutionStatus::Pending | ExecutionStatus::Running
    ) {
        return Err(ReplayError::Unfinished(execution, x.status.as_str()));
    }
    let generation = store.next_generation(x.event_id).await?;
    let new = NewExecution {
        id: ExecutionId::new(),
        rule_id: x.rule_id.clone(),
        action_index: x.action_index,
        generation,
        plugin: x.plugin.clone(),
        idempotency_key: NewExecution::key_for(x.event_id, &x.rule_id, x.action_index, generation),
        order_key: x.order_key.clone(),
    };
    let out = replayed(x.event_id, &new, Some(x.id));
    if !dry_run {
        store
            .plan_replay(x.event_id, std::slice::from_ref(&new), &[x.id])
            .await?;
    }
    Ok(out)
}

/// Retries the dead letters matching `filter`: each is replayed as a new generation and
/// leaves the dead-letter list.
pub async fn retry_dead_letters(
    store: &Store,
    filter: &DeadLetterFilter,
    dry_run: bool,
) -> Result<Vec<Replayed>, ReplayError> {
    let mut out = Vec::new();
    for dead in store.list_dead_letters(filter).await? {
        out.push(replay_execution(store, dead.execution_id, dry_run).await?);
    }
    Ok(out)
}

/// Dead letters matching `filter`, newest first.
pub async fn dead_letters(
    store: &Store,
    filter: &DeadLetterFilter,
) -> Result<Vec<DeadLetter>, StoreError> {
    store.list_dead_letters(filter).await
}

fn replayed(event: EventId, x: &NewExecution, replaces: Option<ExecutionId>) -> Replayed {
    Replayed {
        event_id: event,
        rule_id: x.rule_id.clone(),
        action_index: x.action_index,
        plugin: x.plugin.clone(),
        generation: x.generation,
        idempotency_key: x.idempotency_key.clone(),
        replaces,
    }
}

/// The story as text for a terminal.
pub fn render_story(story: &Story) -> String {
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
