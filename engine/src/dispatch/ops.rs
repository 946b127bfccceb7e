//! Operations on stored work that the CLI, the admin API and the dashboard share: the whole
//! story of one event, searching payloads, replays, and dead-letter handling.
//!
//! A replay plans a new *generation* of executions, with new idempotency keys: the effects of
//! the replayed actions happen again (receivers that dedupe on `Idempotency-Key` see a new
//! key, DB writes through the capability apply again). That is the point of a replay.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::model::{EventId, EventOutcome, ExecutionId, ExecutionStatus, ExecutionTally, Millis};
use crate::rules::RuleSet;
use crate::scrub::Scrubber;
use crate::store::{
    DeadLetter, DeadLetterFilter, DeliveryAttempt, EventFilter, Execution, ExecutionAttempt,
    MAX_SEARCH_SCAN, NewExecution, PayloadSearch, SearchText, SearchedEvents, Store, StoreError,
    StoredEvent,
};

/// Everything hookwise knows about one event. It reads back from its JSON (the admin API's
/// answer) as it was, so that the CLI renders the same story from either.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Story {
    pub event: StoredEvent,
    /// What became of the event, as `hookwise events` lists it.
    pub outcome: EventOutcome,
    pub delivery_attempts: Vec<DeliveryAttempt>,
    pub executions: Vec<ExecutionStory>,
}

/// An execution with every attempt recorded. In JSON the execution's fields sit at the top,
/// `attempts` holds the records and `attempts_started` the execution's count of attempts
/// started, so that no key appears twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "ExecutionStoryJson", from = "ExecutionStoryJson")]
pub struct ExecutionStory {
    pub execution: Execution,
    pub attempts: Vec<ExecutionAttempt>,
}

/// [`ExecutionStory`] as JSON.
#[derive(Serialize, Deserialize)]
struct ExecutionStoryJson {
    id: ExecutionId,
    event_id: EventId,
    event_seq: i64,
    rule_id: String,
    action_index: i32,
    generation: i32,
    plugin: String,
    idempotency_key: String,
    order_key: Option<String>,
    status: ExecutionStatus,
    attempts_started: i32,
    next_attempt_at: Millis,
    lease_owner: Option<String>,
    lease_until: Option<Millis>,
    last_error: Option<String>,
    created_at: Millis,
    updated_at: Millis,
    attempts: Vec<ExecutionAttempt>,
}

impl From<ExecutionStory> for ExecutionStoryJson {
    fn from(story: ExecutionStory) -> ExecutionStoryJson {
        let x = story.execution;
        ExecutionStoryJson {
            id: x.id,
            event_id: x.event_id,
            event_seq: x.event_seq,
            rule_id: x.rule_id,
            action_index: x.action_index,
            generation: x.generation,
            plugin: x.plugin,
            idempotency_key: x.idempotency_key,
            order_key: x.order_key,
            status: x.status,
            attempts_started: x.attempts,
            next_attempt_at: x.next_attempt_at,
            lease_owner: x.lease_owner,
            lease_until: x.lease_until,
            last_error: x.last_error,
            created_at: x.created_at,
            updated_at: x.updated_at,
            attempts: story.attempts,
        }
    }
}

impl From<ExecutionStoryJson> for ExecutionStory {
    fn from(j: ExecutionStoryJson) -> ExecutionStory {
        ExecutionStory {
            execution: Execution {
                id: j.id,
                event_id: j.event_id,
                event_seq: j.event_seq,
                rule_id: j.rule_id,
                action_index: j.action_index,
                generation: j.generation,
                plugin: j.plugin,
                idempotency_key: j.idempotency_key,
                order_key: j.order_key,
                status: j.status,
                attempts: j.attempts_started,
                next_attempt_at: j.next_attempt_at,
                lease_owner: j.lease_owner,
                lease_until: j.lease_until,
                last_error: j.last_error,
                created_at: j.created_at,
                updated_at: j.updated_at,
            },
            attempts: j.attempts,
        }
    }
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

/// The events of `filter` whose payload holds `text`, newest first, reading at most
/// [`MAX_SEARCH_SCAN`] candidates. Payloads are searched as they are shown: with every secret
/// value replaced by its name, so that a search cannot tell whether a payload holds a secret.
pub async fn search_events(
    store: &Store,
    scrubber: &Scrubber,
    filter: &EventFilter,
    text: &SearchText,
) -> Result<SearchedEvents, StoreError> {
    let keep = |payload: &str| text.matches(&scrubber.scrub(payload));
    let search = PayloadSearch {
        keep: &keep,
        max_scanned: MAX_SEARCH_SCAN,
    };
    store.search_events(filter, &search).await
}

/// A `since`/`until` bound: an RFC 3339 time, or an age before now such as `1h`, `30m` or `7d`.
pub fn parse_time(text: &str) -> Result<Millis, String> {
    if let Some(ms) = crate::rfc3339::parse_millis(text) {
        return Ok(Millis(ms));
    }
    let age = crate::units::parse_duration(text)
        .map_err(|e| format!("neither an RFC 3339 time nor an age: {e}"))?;
    let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    Ok(Millis(Millis::now().0.saturating_sub(age)))
}

/// An execution a replay plans (or would plan, in a dry run).
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// What a replay planned, as the CLI prints it with `--json` and the admin API answers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replays {
    pub dry_run: bool,
    pub planned: Vec<Replayed>,
}

/// How many dead letters a purge deleted, as the CLI prints it with `--json` and the admin API
/// answers it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Purged {
    pub purged: u64,
}

/// Most dead letters one list or retry takes: the CLI's bound and the admin API's for a retry.
pub const MAX_DEAD_LETTER_BATCH: i64 = 100_000;

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
        lease: None,
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

/// Deletes the dead letters matching `filter` (their executions stay in the history).
pub async fn purge_dead_letters(
    store: &Store,
    filter: &DeadLetterFilter,
) -> Result<Purged, StoreError> {
    let purged = store.purge_dead_letters(filter).await?;
    Ok(Purged { purged })
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
