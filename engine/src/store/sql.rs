//! The write path's statements, as text that both drivers run: sqlx on PostgreSQL and
//! rusqlite on SQLite's writer thread. One text per statement keeps the backends from drifting
//! apart. Parameters are `$N`, which both databases accept; SQLite binds them by name, so a
//! number may repeat.

use super::{ClaimExclusions, LimitScope, SharedLimit};
use crate::model::EventOutcome;

macro_rules! event_columns {
    () => {
        "id, source, delivery_id, event_type, received_at, headers, payload, status, \
         match_trace, planned_at"
    };
}

macro_rules! activity_insert {
    () => {
        "INSERT INTO activity (minute, kind, subject, label, shard, count) "
    };
}

macro_rules! activity_conflict {
    () => {
        " ON CONFLICT (kind, minute, subject, label, shard) \
         DO UPDATE SET count = activity.count + excluded.count"
    };
}

macro_rules! attempt_columns {
    () => {
        "id, source, received_at, remote_addr, method, path, headers, body, body_size, verdict, \
         status, reason, event_id"
    };
}

/// The head of a multi-row event insert, each row with its accepted delivery attempt's columns
/// (NULL when the attempt has a row of its own: PostgreSQL's writer); rows follow, then
/// [`EVENTS_CONFLICT`].
pub(crate) const INSERT_EVENTS: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ", attempt_id, remote_addr, method, path, body_size, answered) "
);
/// A delivery id seen before stores nothing: the first event stays the event.
pub(crate) const EVENTS_CONFLICT: &str = " ON CONFLICT (source, delivery_id) DO NOTHING";
/// One event row.
pub(crate) const INSERT_EVENT: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (source, delivery_id) DO NOTHING"
);
/// [`INSERT_EVENT`], giving the id of an event stored (no row for a duplicate).
pub(crate) const INSERT_EVENT_RETURNING_ID: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (source, delivery_id) DO NOTHING RETURNING id"
);
/// One event row with its accepted delivery attempt in it (SQLite's writer; docs/store.md):
/// $11 attempt id, $12 remote address, $13 method, $14 path, $15 body size, $16 status answered.
pub(crate) const INSERT_EVENT_WITH_ATTEMPT: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ", attempt_id, remote_addr, method, path, body_size, answered) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
     ON CONFLICT (source, delivery_id) DO NOTHING"
);
/// An accepted attempt kept in its event's row, read as a `delivery_attempts` row.
pub(crate) const ACCEPTED_ATTEMPT_COLUMNS: &str = "attempt_id AS id, source, received_at, \
     remote_addr, method, path, '{}' AS headers, NULL AS body, body_size, 'accepted' AS verdict, \
     answered AS status, NULL AS reason, id AS event_id";
/// [`ACCEPTED_ATTEMPT_COLUMNS`] typed for PostgreSQL, whose `UNION` of subqueries needs the
/// constants' types.
pub(crate) const ACCEPTED_ATTEMPT_COLUMNS_PG: &str = "attempt_id AS id, source, received_at, \
     remote_addr, method, path, '{}'::jsonb AS headers, NULL::bytea AS body, body_size, \
     'accepted' AS verdict, answered AS status, NULL::text AS reason, id AS event_id";
/// The columns of `delivery_attempts`, in the order [`ACCEPTED_ATTEMPT_COLUMNS`] has them.
pub(crate) const ATTEMPT_COLUMNS: &str = attempt_columns!();

/// The id of the event stored first for a (source, delivery id).
pub(crate) const EVENT_ID_BY_DELIVERY: &str =
    "SELECT id FROM events WHERE source = $1 AND delivery_id = $2";

/// The head of a multi-row delivery attempt insert.
pub(crate) const INSERT_ATTEMPTS: &str =
    concat!("INSERT INTO delivery_attempts (", attempt_columns!(), ") ");
/// One delivery attempt row.
pub(crate) const INSERT_ATTEMPT: &str = concat!(
    "INSERT INTO delivery_attempts (",
    attempt_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
);

/// Stores an event's match trace: $1 id, $2 status, $3 trace, $4 now. Returns the event's seq.
pub(crate) const PLAN_EVENT: &str = "UPDATE events SET status = $2, match_trace = $3, \
     planned_at = $4 WHERE id = $1 RETURNING seq";

/// One planned execution; an existing one (same event, rule, action and generation, or same
/// key) is left alone. $10 is the status, $11 the time, $12 the attempts started, $13 and $14
/// the lease's owner and end (NULL unless the planning node runs it: see [`NewExecution`]).
///
/// [`NewExecution`]: super::NewExecution
pub(crate) const INSERT_EXECUTION: &str = "INSERT INTO executions (id, event_id, event_seq, \
     rule_id, action_index, generation, plugin, idempotency_key, order_key, status, attempts, \
     next_attempt_at, created_at, updated_at, lease_owner, lease_until) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12, $11, $11, $11, $13, $14) \
     ON CONFLICT DO NOTHING RETURNING id";

/// Moves a running execution on, if `$2` still holds its lease: $3 status, $4 next attempt,
/// $5 last error, $6 now; $7 to $11 are the attempt's start, end, output, fuel and memory
/// when the execution's row keeps it (see `folds_into_execution`), else NULL.
/// Returns the execution's plugin (nothing when the lease was lost).
pub(crate) const FINISH_EXECUTION: &str = "UPDATE executions SET status = $3, \
     next_attempt_at = $4, lease_owner = NULL, lease_until = NULL, last_error = $5, \
     updated_at = $6, first_started_at = $7, first_finished_at = $8, first_output = $9, \
     first_fuel_used = $10, first_memory_peak = $11 \
     WHERE id = $1 AND lease_owner = $2 AND status = 'running' \
     RETURNING plugin";

/// Adds to a per-minute activity count (see `activity.rs`): $1 minute, $2 kind, $3 subject,
/// $4 label, $5 shard, $6 count.
pub(crate) const ADD_ACTIVITY: &str = concat!(
    activity_insert!(),
    "VALUES ($1, $2, $3, $4, $5, $6)",
    activity_conflict!()
);
/// The head of a multi-row [`ADD_ACTIVITY`]; rows follow, then [`ACTIVITY_CONFLICT`].
pub(crate) const INSERT_ACTIVITY: &str = activity_insert!();
/// A row whose key exists adds its count to it.
pub(crate) const ACTIVITY_CONFLICT: &str = activity_conflict!();

/// The record of one attempt; written once per (execution, attempt).
pub(crate) const INSERT_EXECUTION_ATTEMPT: &str = "INSERT INTO execution_attempts (id, \
     execution_id, attempt, started_at, finished_at, outcome, error, output, logs, http_calls, \
     db_statements, fuel_used, memory_peak) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (execution_id, attempt) DO NOTHING";

/// Makes execution $1 a dead letter with reason $2 at $3.
pub(crate) const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters (execution_id, event_id, \
     source, rule_id, reason, created_at) \
     SELECT x.id, x.event_id, e.source, x.rule_id, $2, $3 \
     FROM executions x JOIN events e ON e.id = x.event_id WHERE x.id = $1 \
     ON CONFLICT (execution_id) DO UPDATE SET reason = excluded.reason, \
     created_at = excluded.created_at";

/// Expired leases (before $1) make their executions due again: their holder crashed or
/// stalled (the lost attempt stays counted). Uses a partial index, so it costs the same
/// whatever the backlog.
pub(crate) const EXPIRE_LEASES: &str = "UPDATE executions SET status = 'pending', \
     lease_owner = NULL, lease_until = NULL WHERE status = 'running' AND lease_until < $1";

/// The claim of due executions, returning every column of each claimed row. Parameters, in
/// order: $1 owner, $2 lease end, $3 now, then one per busy plugin, then a (rule id, action
/// index) pair per busy action, then the limit, then (on a shared store) per shared limit its
/// plugin or (rule id, action index), and its limit.
///
/// On a store several nodes share (`shared`), rows are locked with `FOR UPDATE SKIP LOCKED`
/// so two nodes never lease the same one, and the [`ClaimExclusions::shared`] limits are
/// applied: of the due rows of a limited plugin or action, only as many are leased as its limit
/// leaves after the rows leased now by any node. Counting is exact only when claims of shared
/// limits do not overlap: the caller serialises them ([`CLAIM_LOCK`]).
pub(crate) fn claim(busy: &ClaimExclusions, shared: bool) -> String {
    let mut sql = String::from(
        "SELECT x.id, x.plugin, x.rule_id, x.action_index, x.next_attempt_at, x.event_seq \
         FROM executions x \
         WHERE x.status = 'pending' AND x.next_attempt_at <= $3 \
         AND (x.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM executions p \
         WHERE p.rule_id = x.rule_id AND p.order_key = x.order_key \
         AND p.status IN ('pending', 'running') \
         AND (p.event_seq < x.event_seq OR (p.event_seq = x.event_seq \
         AND p.action_index < x.action_index))))",
    );
    // An execution with an order key (above) waits for every earlier unfinished one of the
    // same rule and key: an earlier event, or the same event and an earlier action.
    let mut n = 3;
    let mut next = || {
        n += 1;
        n
    };
    if !busy.plugins.is_empty() {
        let list: Vec<String> = busy
            .plugins
            .iter()
            .map(|_| format!("${}", next()))
            .collect();
        sql.push_str(&format!(" AND x.plugin NOT IN ({})", list.join(", ")));
    }
    for _ in &busy.actions {
        let (rule, action) = (next(), next());
        sql.push_str(&format!(
            " AND NOT (x.rule_id = ${rule} AND x.action_index = ${action})"
        ));
    }
    let lock = if shared {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    sql.push_str(&format!(
        " ORDER BY x.next_attempt_at, x.event_seq LIMIT ${}{lock}",
        next()
    ));
    let candidates = if shared && !busy.shared.is_empty() {
        within_shared_limits(&sql, &busy.shared, &mut next)
    } else {
        sql
    };
    format!(
        "UPDATE executions SET status = 'running', lease_owner = $1, lease_until = $2, \
         attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT c.id FROM ({candidates}) c) RETURNING *"
    )
}

/// The rows of `candidates` (due rows, oldest first) that `limits` let through: each ranked
/// within its plugin and its action, kept while its rank plus the rows of the same plugin or
/// action leased now stays within the limit. (Window functions cannot share a query level with
/// `FOR UPDATE`, hence the nesting.)
fn within_shared_limits(
    candidates: &str,
    limits: &[SharedLimit],
    next: &mut impl FnMut() -> usize,
) -> String {
    let order = "ORDER BY c.next_attempt_at, c.event_seq";
    let mut sql = format!(
        "SELECT r.id FROM (SELECT c.id, c.plugin, c.rule_id, c.action_index, \
         ROW_NUMBER() OVER (PARTITION BY c.plugin {order}) AS plugin_rank, \
         ROW_NUMBER() OVER (PARTITION BY c.rule_id, c.action_index {order}) AS action_rank \
         FROM ({candidates}) c) r WHERE TRUE"
    );
    for limit in limits {
        match limit.scope {
            LimitScope::Plugin(_) => {
                let (plugin, most) = (next(), next());
                sql.push_str(&format!(
                    " AND (r.plugin <> ${plugin} OR r.plugin_rank + (SELECT COUNT(*) \
                     FROM executions l WHERE l.status = 'running' AND l.plugin = ${plugin}) \
                     <= ${most})"
                ));
            }
            LimitScope::Action(..) => {
                let (rule, action, most) = (next(), next(), next());
                sql.push_str(&format!(
                    " AND (r.rule_id <> ${rule} OR r.action_index <> ${action} \
                     OR r.action_rank + (SELECT COUNT(*) FROM executions l \
                     WHERE l.status = 'running' AND l.rule_id = ${rule} \
                     AND l.action_index = ${action}) <= ${most})"
                ));
            }
        }
    }
    sql
}

/// The key of the transaction-scoped advisory lock that serialises the claims of nodes sharing
/// a PostgreSQL store while shared limits apply (any 64-bit constant private to hookwise).
pub(crate) const CLAIM_LOCK: i64 = 0x686f_6f6b_7769_7365; // "hookwise"

/// Tallies the current executions (the latest generation of each action) of the events whose
/// ids follow, as `IN (...)`, then [`EXECUTION_TALLIES_END`]. `retrying` counts unfinished
/// executions after a failed attempt: a retry waits with `attempts > 0`, or runs its second.
pub(crate) const EXECUTION_TALLIES: &str = "SELECT x.event_id, COUNT(*) AS total, \
     SUM(CASE WHEN x.status IN ('pending', 'running') THEN 1 ELSE 0 END) AS unfinished, \
     SUM(CASE WHEN (x.status = 'pending' AND x.attempts > 0) \
     OR (x.status = 'running' AND x.attempts > 1) THEN 1 ELSE 0 END) AS retrying, \
     SUM(CASE WHEN x.status = 'dead' THEN 1 ELSE 0 END) AS dead \
     FROM executions x WHERE x.event_id IN (";

/// The end of [`EXECUTION_TALLIES`].
pub(crate) const EXECUTION_TALLIES_END: &str = ") AND x.generation = (SELECT MAX(y.generation) \
     FROM executions y WHERE y.event_id = x.event_id AND y.rule_id = x.rule_id \
     AND y.action_index = x.action_index) GROUP BY x.event_id";

/// `x` is one of the current executions (the latest generation of its action) of the listed
/// event, `events` in the listing query.
const CURRENT_EXECUTION: &str = "x.event_id = events.id AND x.generation = \
     (SELECT MAX(y.generation) FROM executions y WHERE y.event_id = x.event_id \
     AND y.rule_id = x.rule_id AND y.action_index = x.action_index)";

/// The listing condition that keeps the events with `outcome`: the rules of
/// [`EventOutcome::of`] over the same executions as [`EXECUTION_TALLIES`].
pub(crate) fn outcome_condition(outcome: EventOutcome) -> String {
    let current = |condition: &str| {
        format!("EXISTS (SELECT 1 FROM executions x WHERE {CURRENT_EXECUTION} AND {condition})")
    };
    let dead = current("x.status = 'dead'");
    let retrying = current(
        "((x.status = 'pending' AND x.attempts > 0) OR (x.status = 'running' AND x.attempts > 1))",
    );
    let unfinished = current("x.status IN ('pending', 'running')");
    let unsucceeded = current("x.status <> 'succeeded'");
    let any = "EXISTS (SELECT 1 FROM executions x WHERE x.event_id = events.id)";
    let planned = "events.status = 'planned'";
    match outcome {
        EventOutcome::Pending => "events.status = 'pending'".to_string(),
        EventOutcome::Quarantined => "events.status = 'quarantined'".to_string(),
        EventOutcome::NoMatch => format!("{planned} AND NOT {any}"),
        EventOutcome::Dead => format!("{planned} AND {dead}"),
        EventOutcome::Failing => format!("{planned} AND NOT {dead} AND {retrying}"),
        EventOutcome::Running => {
            format!("{planned} AND NOT {dead} AND NOT {retrying} AND {unfinished}")
        }
        EventOutcome::Succeeded => format!("{planned} AND {any} AND NOT {unsucceeded}"),
    }
}

/// Up to $2 of the oldest events received before $1 whose work is done. Oldest first by
/// `received_at`, so the time index finds them: ordered by `seq`, SQLite scanned the whole
/// table instead (1.9 s at 1.3 million events), holding the write lock every ack waits for.
pub(crate) const PRUNE_EVENTS: &str = "DELETE FROM events WHERE seq IN (SELECT e.seq \
     FROM events e WHERE e.received_at < $1 AND e.status <> 'pending' \
     AND NOT EXISTS (SELECT 1 FROM executions x WHERE x.event_id = e.id \
     AND x.status IN ('pending', 'running')) ORDER BY e.received_at LIMIT $2)";

/// Up to $2 of the oldest delivery attempts received before $1.
pub(crate) const PRUNE_DELIVERY_ATTEMPTS: &str = "DELETE FROM delivery_attempts WHERE id IN \
     (SELECT id FROM delivery_attempts WHERE received_at < $1 ORDER BY received_at LIMIT $2)";

/// Per-minute activity counts of kind $1 older than minute $2: kind by kind, so each delete
/// reads its stretch of the key.
pub(crate) const PRUNE_ACTIVITY: &str = "DELETE FROM activity WHERE kind = $1 AND minute < $2";

#[cfg(test)]
mod tests {
    use super::*;

    /// Statements that run in the background while ingest goes on take SQLite's one write
    /// lock: each must find its rows through an index, never by reading a whole table.
    #[test]
    fn background_deletes_read_an_index_not_a_table() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            conn.execute_batch(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
        for statement in [PRUNE_EVENTS, PRUNE_DELIVERY_ATTEMPTS, PRUNE_ACTIVITY] {
            let mut plan = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
                .unwrap();
            let steps: Vec<String> = plan
                .query_map(rusqlite::params![1_i64, 2_i64], |row| row.get(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                steps.iter().all(|s| !s.starts_with("SCAN")),
                "{statement}\nreads a whole table or index: {steps:#?}"
            );
        }
    }

    #[test]
    fn claim_numbers_every_parameter_once_in_order() {
        let busy = ClaimExclusions {
            plugins: vec!["a".into(), "b".into()],
            actions: vec![("r".into(), 0)],
            shared: vec![
                SharedLimit {
                    scope: LimitScope::Plugin("a".into()),
                    limit: 2,
                },
                SharedLimit {
                    scope: LimitScope::Action("r".into(), 1),
                    limit: 3,
                },
            ],
        };
        let sql = claim(&busy, true);
        assert!(sql.contains("x.plugin NOT IN ($4, $5)"), "{sql}");
        assert!(
            sql.contains("x.rule_id = $6 AND x.action_index = $7"),
            "{sql}"
        );
        assert!(sql.contains("LIMIT $8 FOR UPDATE SKIP LOCKED)"), "{sql}");
        assert!(sql.contains("r.plugin <> $9 OR"), "{sql}");
        assert!(sql.contains("l.plugin = $9) <= $10)"), "{sql}");
        assert!(
            sql.contains("r.rule_id <> $11 OR r.action_index <> $12"),
            "{sql}"
        );
        assert!(sql.contains("l.action_index = $12) <= $13)"), "{sql}");
        assert!(!sql.contains("$14"), "{sql}");
        // One node: no row locks, and its own counts stand in for the shared limits.
        let plain = claim(&busy, false);
        assert!(plain.contains("LIMIT $8) c)"), "{plain}");
        assert!(!plain.contains("$9"), "{plain}");
    }
}
