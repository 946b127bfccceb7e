//! What the store keeps, as written (`New*`) and as read back; row types shared by both backends.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::StoreError;
use crate::model::{
    AttemptOutcome, DeliveryAttemptId, EventId, EventOutcome, EventStatus, ExecutionId,
    ExecutionStatus, Millis, Verdict,
};

/// One HTTP request to an ingress route, as it is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDeliveryAttempt {
    pub id: DeliveryAttemptId,
    pub source: String,
    pub received_at: Millis,
    pub remote_addr: Option<String>,
    pub method: String,
    pub path: String,
    /// Request headers, secret values already redacted.
    pub headers: Value,
    /// The body, kept only where it may be replayed later.
    pub body: Option<Vec<u8>>,
    pub body_size: i64,
    /// For an ingest the store decides between accepted, duplicate and quarantined.
    pub verdict: Verdict,
    pub status: u16,
    pub reason: Option<String>,
}

/// A delivery attempt as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    #[serde(flatten)]
    pub attempt: NewDeliveryAttempt,
    pub event_id: Option<EventId>,
}

/// A verified event to store once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub id: EventId,
    pub source: String,
    /// The provider's delivery id (or a digest of the body where the provider sends none).
    pub delivery_id: String,
    pub event_type: String,
    pub received_at: Millis,
    pub headers: Value,
    /// The JSON payload, as text.
    pub payload: String,
    /// `Pending`, or `Quarantined` for a payload that failed validation.
    pub status: EventStatus,
}

/// An event as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewEvent,
    pub match_trace: Option<Value>,
    pub planned_at: Option<Millis>,
}

/// An event as listed: the stored event and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedEvent {
    #[serde(flatten)]
    pub stored: StoredEvent,
    pub outcome: EventOutcome,
}

/// One (event, rule, action) run to plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewExecution {
    pub id: ExecutionId,
    pub rule_id: String,
    pub action_index: i32,
    /// 0 for the first run; a replay plans a new generation.
    pub generation: i32,
    pub plugin: String,
    /// Unique across the store: derived from event, rule, action and generation.
    pub idempotency_key: String,
    pub order_key: Option<String>,
    /// Set when the node planning the execution runs it itself: it is stored leased, with
    /// its first attempt started, as a claim would leave it (no claim is needed).
    pub lease: Option<Lease>,
}

/// A lease on an execution: who holds it, and until when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lease {
    pub owner: String,
    pub until: Millis,
}

/// The columns a planned execution starts with: pending, or leased by the node planning it.
pub(crate) struct PlannedState<'a> {
    pub status: ExecutionStatus,
    pub attempts: i32,
    pub owner: Option<&'a str>,
    pub until: Option<i64>,
}

impl NewExecution {
    /// How this execution is stored when planned.
    pub(crate) fn planned_state(&self) -> PlannedState<'_> {
        match &self.lease {
            Some(lease) => PlannedState {
                status: ExecutionStatus::Running,
                attempts: 1,
                owner: Some(&lease.owner),
                until: Some(lease.until.0),
            },
            None => PlannedState {
                status: ExecutionStatus::Pending,
                attempts: 0,
                owner: None,
                until: None,
            },
        }
    }

    /// The stable idempotency key of (event, rule, action, generation).
    pub fn key_for(event: EventId, rule_id: &str, action_index: i32, generation: i32) -> String {
        format!("{event}:{rule_id}:{action_index}:{generation}")
    }
}

/// An execution as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: ExecutionId,
    pub event_id: EventId,
    pub event_seq: i64,
    pub rule_id: String,
    pub action_index: i32,
    pub generation: i32,
    pub plugin: String,
    pub idempotency_key: String,
    pub order_key: Option<String>,
    pub status: ExecutionStatus,
    /// Attempts started so far (a claim starts one).
    pub attempts: i32,
    pub next_attempt_at: Millis,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Millis>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The record of one attempt, written when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewExecutionAttempt {
    pub attempt: i32,
    pub started_at: Millis,
    pub finished_at: Millis,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    pub output: Option<Value>,
    pub logs: Value,
    pub http_calls: Value,
    pub db_statements: Value,
    pub fuel_used: Option<i64>,
    pub memory_peak: Option<i64>,
}

/// The log lines of an attempt's `logs`: `{"lines": [...]}` as the dispatcher records them, or
/// a bare array (as attempts recorded by older versions may hold); none for anything else.
pub fn log_lines(logs: &Value) -> &[Value] {
    let lines = if logs.is_array() {
        logs
    } else {
        &logs["lines"]
    };
    lines.as_array().map_or(&[], Vec::as_slice)
}

impl NewExecutionAttempt {
    /// `logs` as the dispatcher records them: the lines the plugin logged and whether some
    /// were left out for the attempt's log limit.
    pub fn logs_record(lines: &impl Serialize, truncated: bool) -> Value {
        serde_json::json!({"lines": lines, "truncated": truncated})
    }

    /// `db_statements` as the dispatcher records them: each statement, and each transaction.
    pub fn db_record(statements: &impl Serialize, transactions: &impl Serialize) -> Value {
        serde_json::json!({"statements": statements, "transactions": transactions})
    }

    /// `logs` of an attempt whose plugin logged nothing.
    pub fn no_logs() -> Value {
        Self::logs_record(&[(); 0], false)
    }

    /// `http_calls` of an attempt whose plugin made no HTTP call.
    pub fn no_http_calls() -> Value {
        Value::Array(Vec::new())
    }

    /// `db_statements` of an attempt whose plugin ran no statement.
    pub fn no_db_statements() -> Value {
        Self::db_record(&[(); 0], &[(); 0])
    }

    /// Whether the plugin logged, called and ran nothing in this attempt (the records are the
    /// empty ones above).
    pub(crate) fn recorded_nothing(&self) -> bool {
        let empty = |v: Option<&Value>| v.and_then(Value::as_array).is_some_and(Vec::is_empty);
        let only = |v: &Value, keys: usize| v.as_object().is_some_and(|o| o.len() == keys);
        only(&self.logs, 2)
            && empty(self.logs.get("lines"))
            && self.logs.get("truncated") == Some(&Value::Bool(false))
            && empty(Some(&self.http_calls))
            && only(&self.db_statements, 2)
            && empty(self.db_statements.get("statements"))
            && empty(self.db_statements.get("transactions"))
    }
}

/// An attempt as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionAttempt {
    pub execution_id: ExecutionId,
    #[serde(flatten)]
    pub attempt: NewExecutionAttempt,
}

/// Where an execution goes after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    Succeeded,
    /// Try again at this time.
    RetryAt(Millis),
    /// Give up: the execution becomes a dead letter with this reason.
    Dead(String),
}

impl NextStep {
    /// The execution's status, next attempt time and dead-letter reason after this step.
    pub(crate) fn as_columns(&self, now: Millis) -> (ExecutionStatus, Millis, Option<&str>) {
        match self {
            NextStep::Succeeded => (ExecutionStatus::Succeeded, now, None),
            NextStep::RetryAt(at) => (ExecutionStatus::Pending, *at, None),
            NextStep::Dead(reason) => (ExecutionStatus::Dead, now, Some(reason.as_str())),
        }
    }
}

/// A failed-for-good execution, kept for inspection and replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub execution_id: ExecutionId,
    pub event_id: EventId,
    pub source: String,
    pub rule_id: String,
    pub reason: String,
    pub created_at: Millis,
}

/// Executions by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExecutionCounts {
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub dead: i64,
}

// ---- rows: the columns as both backends return them --------------------------------------

fn corrupt(table: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.into(),
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DeliveryAttemptRow {
    id: Uuid,
    source: String,
    received_at: i64,
    remote_addr: Option<String>,
    method: String,
    path: String,
    headers: Json<Value>,
    body: Option<Vec<u8>>,
    body_size: i64,
    verdict: String,
    status: i32,
    reason: Option<String>,
    event_id: Option<Uuid>,
}

impl TryFrom<DeliveryAttemptRow> for DeliveryAttempt {
    type Error = StoreError;
    fn try_from(r: DeliveryAttemptRow) -> Result<Self, StoreError> {
        let table = "delivery_attempts";
        Ok(DeliveryAttempt {
            attempt: NewDeliveryAttempt {
                id: DeliveryAttemptId(r.id),
                source: r.source,
                received_at: Millis(r.received_at),
                remote_addr: r.remote_addr,
                method: r.method,
                path: r.path,
                headers: r.headers.0,
                body: r.body,
                body_size: r.body_size,
                verdict: Verdict::parse(&r.verdict)
                    .ok_or_else(|| corrupt(table, format!("verdict {}", r.verdict)))?,
                status: u16::try_from(r.status)
                    .map_err(|_| corrupt(table, format!("status {}", r.status)))?,
                reason: r.reason,
            },
            event_id: r.event_id.map(EventId),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    seq: i64,
    id: Uuid,
    source: String,
    delivery_id: String,
    event_type: String,
    received_at: i64,
    headers: Json<Value>,
    payload: super::payload::PayloadColumn,
    status: String,
    match_trace: Option<Json<Value>>,
    planned_at: Option<i64>,
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        Ok(StoredEvent {
            seq: r.seq,
            event: NewEvent {
                id: EventId(r.id),
                source: r.source,
                delivery_id: r.delivery_id,
                event_type: r.event_type,
                received_at: Millis(r.received_at),
                headers: r.headers.0,
                payload: r.payload.0,
                status: EventStatus::parse(&r.status)
                    .ok_or_else(|| corrupt("events", format!("status {}", r.status)))?,
            },
            match_trace: r.match_trace.map(|j| j.0),
            planned_at: r.planned_at.map(Millis),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ExecutionRow {
    pub(super) id: Uuid,
    pub(super) event_id: Uuid,
    pub(super) event_seq: i64,
    pub(super) rule_id: String,
    pub(super) action_index: i32,
    pub(super) generation: i32,
    pub(super) plugin: String,
    pub(super) idempotency_key: String,
    pub(super) order_key: Option<String>,
    pub(super) status: String,
    pub(super) attempts: i32,
    pub(super) next_attempt_at: i64,
    pub(super) lease_owner: Option<String>,
    pub(super) lease_until: Option<i64>,
    pub(super) last_error: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<ExecutionRow> for Execution {
    type Error = StoreError;
    fn try_from(r: ExecutionRow) -> Result<Self, StoreError> {
        Ok(Execution {
            id: ExecutionId(r.id),
            event_id: EventId(r.event_id),
            event_seq: r.event_seq,
            rule_id: r.rule_id,
            action_index: r.action_index,
            generation: r.generation,
            plugin: r.plugin,
            idempotency_key: r.idempotency_key,
            order_key: r.order_key,
            status: ExecutionStatus::parse(&r.status)
                .ok_or_else(|| corrupt("executions", format!("status {}", r.status)))?,
            attempts: r.attempts,
            next_attempt_at: Millis(r.next_attempt_at),
            lease_owner: r.lease_owner,
            lease_until: r.lease_until.map(Millis),
            last_error: r.last_error,
            created_at: Millis(r.created_at),
            updated_at: Millis(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ExecutionAttemptRow {
    execution_id: Uuid,
    attempt: i32,
    started_at: i64,
    finished_at: i64,
    outcome: String,
    error: Option<String>,
    output: Option<Json<Value>>,
    logs: Json<Value>,
    http_calls: Json<Value>,
    db_statements: Json<Value>,
    fuel_used: Option<i64>,
    memory_peak: Option<i64>,
}

impl TryFrom<ExecutionAttemptRow> for ExecutionAttempt {
    type Error = StoreError;
    fn try_from(r: ExecutionAttemptRow) -> Result<Self, StoreError> {
        Ok(ExecutionAttempt {
            execution_id: ExecutionId(r.execution_id),
            attempt: NewExecutionAttempt {
                attempt: r.attempt,
                started_at: Millis(r.started_at),
                finished_at: Millis(r.finished_at),
                outcome: AttemptOutcome::parse(&r.outcome).ok_or_else(|| {
                    corrupt("execution_attempts", format!("outcome {}", r.outcome))
                })?,
                error: r.error,
                output: r.output.map(|j| j.0),
                logs: r.logs.0,
                http_calls: r.http_calls.0,
                db_statements: r.db_statements.0,
                fuel_used: r.fuel_used,
                memory_peak: r.memory_peak,
            },
        })
    }
}

/// A first attempt kept in its execution's row: it succeeded, with no error, and its plugin
/// logged, called and ran nothing (see `folds_into_execution`).
#[derive(sqlx::FromRow)]
pub(super) struct FirstAttemptRow {
    id: Uuid,
    first_started_at: i64,
    first_finished_at: i64,
    first_output: Option<Json<Value>>,
    first_fuel_used: Option<i64>,
    first_memory_peak: Option<i64>,
}

impl From<FirstAttemptRow> for ExecutionAttempt {
    fn from(r: FirstAttemptRow) -> Self {
        ExecutionAttempt {
            execution_id: ExecutionId(r.id),
            attempt: NewExecutionAttempt {
                attempt: 1,
                started_at: Millis(r.first_started_at),
                finished_at: Millis(r.first_finished_at),
                outcome: AttemptOutcome::Succeeded,
                error: None,
                output: r.first_output.map(|j| j.0),
                logs: NewExecutionAttempt::no_logs(),
                http_calls: NewExecutionAttempt::no_http_calls(),
                db_statements: NewExecutionAttempt::no_db_statements(),
                fuel_used: r.first_fuel_used,
                memory_peak: r.first_memory_peak,
            },
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DeadLetterRow {
    execution_id: Uuid,
    event_id: Uuid,
    source: String,
    rule_id: String,
    reason: String,
    created_at: i64,
}

impl From<DeadLetterRow> for DeadLetter {
    fn from(r: DeadLetterRow) -> Self {
        DeadLetter {
            execution_id: ExecutionId(r.execution_id),
            event_id: EventId(r.event_id),
            source: r.source,
            rule_id: r.rule_id,
            reason: r.reason,
            created_at: Millis(r.created_at),
        }
    }
}

/// Converts rows, stopping at the first corrupt one.
pub(super) fn convert<R, T: TryFrom<R, Error = StoreError>>(
    rows: Vec<R>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(T::try_from).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn log_lines_read_both_shapes() {
        let wrapped = json!({"lines": [{"message": "a"}, {"message": "b"}], "truncated": false});
        let bare = json!([{"message": "a"}]);
        assert_eq!(log_lines(&wrapped).len(), 2);
        assert_eq!(log_lines(&bare), &[json!({"message": "a"})]);
        assert!(log_lines(&json!(null)).is_empty());
        assert!(log_lines(&json!({"lines": "not a list"})).is_empty());
        assert!(log_lines(&NewExecutionAttempt::no_logs()).is_empty());
    }
}
