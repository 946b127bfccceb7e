//! One attempt of one execution: render the action's input, call the plugin in a fresh
//! sandbox while renewing the lease, record the attempt and decide what comes next.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::{EventParts, KnownEvent, Shared, Slot};
use crate::model::{AttemptOutcome, Millis};
use crate::own_events::{self, Origin};
use crate::plugin_host::{CallContext, CallError, CallEvent, CallReport};
use crate::rules::RetryPolicy;
use crate::scrub::Scrubber;
use crate::store::{Announcement, Execution, NewEvent, NewExecutionAttempt, NextStep, StoreError};

/// Longest wait a plugin's `retry_after` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Everything a call needs.
struct PreparedCall {
    plugin: crate::plugin_host::LoadedPlugin,
    ctx: CallContext,
    event: CallEvent,
    input: String,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    /// When the event arrived, for the ack-to-done latency.
    received_at: Millis,
}

/// A call, or why there can be no call.
enum Prepared {
    Call(Box<PreparedCall>),
    /// Nothing to run: the rule, action or plugin is gone or the input does not render. With
    /// the execution's event, when it could be read.
    Fatal(String, Option<Origin>),
}

/// Runs one attempt of `x` in `slot`, which is given back once the plugin call is over (the
/// attempt is recorded after). `event` is `x`'s event when the claim read it already.
pub(crate) async fn run_execution(
    shared: &Shared,
    x: &Execution,
    event: Option<Arc<KnownEvent>>,
    slot: Slot,
    hard_stop: watch::Receiver<bool>,
) {
    let started_at = Millis::now();
    let prepared = match prepare(shared, x, event).await {
        Ok(p) => p,
        Err(e) => {
            // The event could not be read: give the execution back for a later try.
            tracing::error!(event = %x.event_id, execution = %x.id, error = %e, "cannot load the event of an execution");
            let _ = shared.store.release(x.id, &shared.owner).await;
            return;
        }
    };
    let call = match prepared {
        Prepared::Fatal(reason, origin) => {
            drop(slot);
            finish_fatal(shared, x, started_at, &reason, origin.as_ref()).await;
            return;
        }
        Prepared::Call(call) => *call,
    };
    let PreparedCall {
        plugin,
        ctx,
        event,
        input,
        retry,
        timeout,
        received_at,
    } = call;
    let origin = Origin {
        source: event.source.clone(),
        event_type: event.event_type.clone(),
    };
    if !lease_still_held(shared, x).await {
        return;
    }
    let host = shared.plugins.host();
    let call = async {
        let call = host.call(&plugin, ctx, event, input);
        match timeout.filter(|t| *t < plugin.limits().timeout) {
            // The action's own timeout is shorter than the plugin's: dropping the call stops
            // the guest where it is.
            Some(t) => tokio::time::timeout(t, call)
                .await
                .unwrap_or_else(|_| timed_out(t)),
            None => call.await,
        }
    };
    let Some(report) = call_under_lease(shared, x, call, hard_stop).await else {
        return;
    };
    drop(slot);
    shared.metrics.plugin_call(&x.plugin, report.duration);

    let finished_at = Millis::now();
    let mut attempt = attempt_record(x.attempts, started_at, finished_at, &report);
    scrub_attempt(&shared.scrubber, &mut attempt);
    let next = scrub_step(
        &shared.scrubber,
        next_step(&report.result, x.attempts, &retry, finished_at),
    );
    log_attempt(x, &attempt, &report);
    finish(shared, x, &attempt, next, Some(received_at), Some(&origin)).await;
}

/// Records an attempt that could not call the plugin (the rule, action or plugin is gone, or
/// the input does not render) and dead-letters the execution.
async fn finish_fatal(
    shared: &Shared,
    x: &Execution,
    started_at: Millis,
    reason: &str,
    origin: Option<&Origin>,
) {
    let reason = shared.scrubber.scrub(reason).into_owned();
    let attempt = NewExecutionAttempt {
        attempt: x.attempts,
        started_at,
        finished_at: Millis::now(),
        outcome: AttemptOutcome::Fatal,
        error: Some(reason.clone()),
        output: None,
        logs: NewExecutionAttempt::no_logs(),
        http_calls: NewExecutionAttempt::no_http_calls(),
        db_statements: NewExecutionAttempt::no_db_statements(),
        fuel_used: None,
        memory_peak: None,
    };
    let next = NextStep::Dead(format!("fatal: {reason}"));
    finish(shared, x, &attempt, next, None, origin).await;
}

/// Whether `x`'s lease is still this node's to run it under, renewed first when less than
/// half of it is left: an execution may wait for a worker under its lease (claimed ahead, or
/// handed over as its event arrived) longer than that, and once the lease runs out the
/// execution is due again and another worker may claim it. False when it was lost (or ran
/// out and cannot be renewed): this attempt does not run.
async fn lease_still_held(shared: &Shared, x: &Execution) -> bool {
    let lease = shared.settings.lease;
    let now = Millis::now();
    let left = x
        .lease_until
        .map_or(0, |until| until.0.saturating_sub(now.0));
    if left > i64::try_from(lease.as_millis() / 2).unwrap_or(i64::MAX) {
        return true;
    }
    let until = now.saturating_add(lease);
    match shared
        .store
        .renew_lease(x.id, &shared.owner, x.attempts, until)
        .await
    {
        Ok(()) => true,
        Err(StoreError::LeaseLost(_)) => {
            tracing::warn!(event = %x.event_id, execution = %x.id, "lease lost while waiting for a worker; another worker runs it");
            false
        }
        Err(e) => {
            tracing::warn!(execution = %x.id, error = %e, "lease renewal failed");
            left > 0
        }
    }
}

/// Runs the plugin `call`, renewing `x`'s lease meanwhile. `None` when the attempt stops
/// without a report: the lease was lost (another worker has the execution now), or shutdown
/// reached its deadline (the execution is given back).
async fn call_under_lease(
    shared: &Shared,
    x: &Execution,
    call: impl std::future::Future<Output = CallReport>,
    mut hard_stop: watch::Receiver<bool>,
) -> Option<CallReport> {
    tokio::pin!(call);
    let lease = shared.settings.lease;
    let mut renew = tokio::time::interval(lease / 3);
    renew.tick().await;
    loop {
        tokio::select! {
            report = &mut call => return Some(report),
            _ = renew.tick() => {
                let until = Millis::now().saturating_add(lease);
                match shared.store.renew_lease(x.id, &shared.owner, x.attempts, until).await {
                    Ok(()) => {}
                    Err(StoreError::LeaseLost(_)) => {
                        tracing::warn!(event = %x.event_id, execution = %x.id, "lease lost while running; stopping this attempt");
                        return None;
                    }
                    Err(e) => tracing::warn!(execution = %x.id, error = %e, "lease renewal failed"),
                }
            }
            _ = hard_stop.changed() => {
                tracing::warn!(execution = %x.id, "shutdown deadline reached; giving the action back");
                let _ = shared.store.release(x.id, &shared.owner).await;
                return None;
            }
        }
    }
}

/// The record of attempt number `attempt` whose plugin call ended with `report` (what the
/// store keeps and `hookwise logs` shows; `hookwise plugins run` shows it too).
pub(crate) fn attempt_record(
    attempt: i32,
    started_at: Millis,
    finished_at: Millis,
    report: &CallReport,
) -> NewExecutionAttempt {
    let (outcome, error, output) = match &report.result {
        Ok(out) => (
            AttemptOutcome::Succeeded,
            None,
            Some(serde_json::from_str(out).unwrap_or(Value::String(out.clone()))),
        ),
        Err(e) if e.is_retryable() => (AttemptOutcome::Retryable, Some(e.to_string()), None),
        Err(e) => (AttemptOutcome::Fatal, Some(e.to_string()), None),
    };
    NewExecutionAttempt {
        attempt,
        started_at,
        finished_at,
        outcome,
        error,
        output,
        logs: NewExecutionAttempt::logs_record(&report.logs, report.logs_truncated),
        http_calls: serde_json::to_value(&report.http_calls).unwrap_or(Value::Null),
        db_statements: NewExecutionAttempt::db_record(
            &report.db_statements,
            &report.db_transactions,
        ),
        fuel_used: report
            .fuel_used
            .map(|f| i64::try_from(f).unwrap_or(i64::MAX)),
        memory_peak: Some(i64::try_from(report.memory_peak).unwrap_or(i64::MAX)),
    }
}

/// Logs an attempt: a failed one at info, a successful one at debug (the store's record of
/// every attempt is what `hookwise logs` shows; a line per success would cost busy nodes a
/// write per action).
fn log_attempt(x: &Execution, attempt: &NewExecutionAttempt, report: &CallReport) {
    macro_rules! log_at {
        ($level:expr) => {
            tracing::event!(
                $level,
                event = %x.event_id,
                execution = %x.id,
                rule = %x.rule_id,
                action = x.action_index,
                plugin = %x.plugin,
                attempt = x.attempts,
                outcome = attempt.outcome.as_str(),
                duration_ms = report.duration.as_millis() as u64,
                error = attempt.error.as_deref().unwrap_or(""),
                "action attempt finished"
            )
        };
    }
    if attempt.outcome == AttemptOutcome::Succeeded {
        log_at!(tracing::Level::DEBUG);
    } else {
        log_at!(tracing::Level::INFO);
    }
}

/// Replaces secret values in everything the attempt records: the plugin saw secrets rendered
/// into its input and may echo them into its error, output or logs; the host's own records
/// (URLs called, SQL run) may hold them too.
pub(crate) fn scrub_attempt(scrubber: &Scrubber, attempt: &mut NewExecutionAttempt) {
    if scrubber.is_empty() {
        return;
    }
    if let Some(error) = attempt.error.as_mut() {
        scrubber.scrub_string(error);
    }
    if let Some(output) = attempt.output.as_mut() {
        scrubber.scrub_value(output);
    }
    scrubber.scrub_value(&mut attempt.logs);
    scrubber.scrub_value(&mut attempt.http_calls);
    scrubber.scrub_value(&mut attempt.db_statements);
}

/// `next` with secret values replaced in a dead letter's reason (it quotes the plugin's error).
fn scrub_step(scrubber: &Scrubber, next: NextStep) -> NextStep {
    match next {
        NextStep::Dead(reason) => NextStep::Dead(scrubber.scrub(&reason).into_owned()),
        other => other,
    }
}

fn timed_out(t: Duration) -> CallReport {
    CallReport {
        result: Err(CallError::Timeout),
        logs: Vec::new(),
        logs_truncated: false,
        http_calls: Vec::new(),
        db_statements: Vec::new(),
        db_transactions: Vec::new(),
        duration: t,
        fuel_used: None,
        memory_peak: 0,
    }
}

/// What a reduced attempt record says instead of what the plugin said.
const REDUCED_NOTE: &str = "the full record of this attempt could not be stored, so its \
    error, output, logs, HTTP calls and DB statements were left out (hookwise's log says why)";

/// Records the attempt; `received_at` is the event's arrival, for the ack-to-done latency.
/// Once recorded, a dead letter or an execution now failing is announced (hookwise's own
/// events), unless it ran for one of them (`origin`; unknown when the event is gone).
///
/// When the store refuses the record itself (not the lease), the attempt is recorded again
/// reduced ([`reduced`]): left unrecorded, its lease would run out and the action run again,
/// and again, for as long as the same record is refused.
async fn finish(
    shared: &Shared,
    x: &Execution,
    attempt: &NewExecutionAttempt,
    next: NextStep,
    received_at: Option<Millis>,
    origin: Option<&Origin>,
) {
    let dead = matches!(next, NextStep::Dead(_));
    let succeeded = next == NextStep::Succeeded;
    // An execution of hookwise's own event announces nothing (no loops).
    let origin = origin.filter(|o| !o.is_own());
    let announces = origin.and_then(|o| announcement(shared, x, o, attempt, &next));
    let mut announced = announces.is_some();
    let mut recorded = shared
        .store
        .finish_announcing(x.id, &shared.owner, attempt, next.clone(), announces)
        .await;
    if let Err(e) = &recorded
        // Not for a lost lease or a closing store (nothing can be recorded), nor a commit
        // that was made but not synced (the record is in).
        && !matches!(
            e,
            StoreError::LeaseLost(_) | StoreError::Closed | StoreError::Sync(_)
        )
    {
        tracing::error!(event = %x.event_id, execution = %x.id, error = %e, "recording an attempt failed; recording it without what the plugin said");
        shared.own_events.store_failed(e);
        let (small, small_next) = reduced(attempt, &next);
        // What is announced is what is recorded: the reduced record.
        let announces = origin.and_then(|o| announcement(shared, x, o, &small, &small_next));
        announced = announces.is_some();
        recorded = shared
            .store
            .finish_announcing(x.id, &shared.owner, &small, small_next, announces)
            .await;
    }
    match recorded {
        Ok(()) => {
            if announced {
                shared.metrics.own_event_stored();
                shared.wake.events();
            }
            shared
                .metrics
                .attempt_recorded(&x.plugin, attempt.outcome, dead);
            // Replays (later generations) would measure how old the event is, not latency.
            if let Some(at) = received_at.filter(|_| succeeded && x.generation == 0) {
                let ms = u64::try_from(Millis::now().0.saturating_sub(at.0)).unwrap_or(0);
                shared.metrics.done(Duration::from_millis(ms));
            }
        }
        Err(StoreError::LeaseLost(_)) => {
            tracing::warn!(event = %x.event_id, execution = %x.id, "lease lost before the attempt was recorded; another worker runs it again")
        }
        // The lease runs out and the execution is claimed again: at least once.
        Err(e) => {
            shared.own_events.store_failed(&e);
            tracing::error!(event = %x.event_id, execution = %x.id, error = %e, "recording an attempt failed")
        }
    }
}

/// `execution.dead_lettered` when `next` makes `x` a dead letter, `execution.failing` when
/// `x` retries after failing as many attempts as make it so: stored with the attempt, in its
/// transaction, so a crash can lose neither without the other.
fn announcement(
    shared: &Shared,
    x: &Execution,
    origin: &Origin,
    attempt: &NewExecutionAttempt,
    next: &NextStep,
) -> Option<Announcement> {
    let at = Millis::now();
    let error = attempt.error.as_deref();
    let mut event = match next {
        NextStep::Dead(reason) => own_events::dead_lettered(x, origin, reason, error, at),
        NextStep::RetryAt(when) if shared.own_events.is_failing(x.attempts) => {
            own_events::failing(x, origin, error, *when, at)
        }
        _ => return None,
    };
    shared.scrubber.scrub_value(&mut event.payload);
    let (event, attempt) = event.into_records();
    Some(Announcement { event, attempt })
}

/// `attempt` and `next` without any text the plugin or the outside world chose (error,
/// output, logs, calls, the dead letter's reason): the same outcome, times and usage, and
/// [`REDUCED_NOTE`] as the error. Every field is named, so a new one is placed here too.
fn reduced(attempt: &NewExecutionAttempt, next: &NextStep) -> (NewExecutionAttempt, NextStep) {
    let NewExecutionAttempt {
        attempt,
        started_at,
        finished_at,
        outcome,
        error: _,
        output: _,
        logs: _,
        http_calls: _,
        db_statements: _,
        fuel_used,
        memory_peak,
    } = attempt;
    let attempt = NewExecutionAttempt {
        attempt: *attempt,
        started_at: *started_at,
        finished_at: *finished_at,
        outcome: *outcome,
        error: Some(REDUCED_NOTE.to_string()),
        output: None,
        logs: NewExecutionAttempt::no_logs(),
        http_calls: NewExecutionAttempt::no_http_calls(),
        db_statements: NewExecutionAttempt::no_db_statements(),
        fuel_used: *fuel_used,
        memory_peak: *memory_peak,
    };
    let next = match next {
        // The reason starts with hookwise's own words (`fatal`, `gave up after N attempts`),
        // then the plugin's error after the first `: ` (see `next_step`).
        NextStep::Dead(reason) => {
            let head = reason.split_once(": ").map_or("failed", |(head, _)| head);
            NextStep::Dead(format!("{head}: {REDUCED_NOTE}"))
        }
        NextStep::Succeeded => NextStep::Succeeded,
        NextStep::RetryAt(at) => NextStep::RetryAt(*at),
    };
    (attempt, next)
}

/// Where an execution goes after an attempt with `result`.
pub(crate) fn next_step(
    result: &Result<String, CallError>,
    attempt: i32,
    retry: &RetryPolicy,
    now: Millis,
) -> NextStep {
    let error = match result {
        Ok(_) => return NextStep::Succeeded,
        Err(e) => e,
    };
    if !error.is_retryable() {
        return NextStep::Dead(format!("fatal: {error}"));
    }
    let attempt = u32::try_from(attempt).unwrap_or(0);
    let Some(backoff) = retry.delay_after(attempt) else {
        return NextStep::Dead(format!(
            "gave up after {attempt} attempt{}: {error}",
            if attempt == 1 { "" } else { "s" }
        ));
    };
    let wait = match error {
        CallError::Plugin {
            retry_after: Some(after),
            ..
        } => (*after).min(MAX_RETRY_AFTER),
        _ => jitter(backoff),
    };
    NextStep::RetryAt(now.saturating_add(wait))
}

/// "Equal jitter": half the back-off, plus a random part of the other half, so that many
/// executions failing together do not retry together.
fn jitter(backoff: Duration) -> Duration {
    let half = backoff / 2;
    let random = (uuid::Uuid::now_v7().as_u128() % 1_000_000) as u32;
    half + half.mul_f64(f64::from(random) / 1_000_000.0)
}

async fn prepare(
    shared: &Shared,
    x: &Execution,
    known: Option<Arc<KnownEvent>>,
) -> Result<Prepared, StoreError> {
    let known = match known {
        Some(known) => known,
        None => match shared.store.get_event(x.event_id).await? {
            Some(stored) => Arc::new(KnownEvent {
                stored,
                parts: None,
                rendered: None,
            }),
            None => {
                return Ok(Prepared::Fatal(
                    format!("event {} is gone", x.event_id),
                    None,
                ));
            }
        },
    };
    let event = &known.stored;
    let origin = Origin {
        source: event.event.source.clone(),
        event_type: event.event.event_type.clone(),
    };
    // Claims skip plugins still compiling; one claimed just before its plugin's compile
    // finished or failed waits for it here.
    let plugin = match shared.plugins.ready(&x.plugin).await {
        Ok(p) => p,
        Err(why) => return Ok(Prepared::Fatal(why, Some(origin))),
    };
    let rules = shared.rules.current();
    let index = usize::try_from(x.action_index).unwrap_or(usize::MAX);
    let rendered = known.rendered.as_ref();
    let rendered = rendered.and_then(|r| r.get(&rules, &x.rule_id, index));
    // Parsed already when ingress handed the execution over; parsed again whole when it was
    // parsed for the rules that rendered the input and the input must be rendered anew.
    let parsed;
    let parts = match &known.parts {
        Some(parts) if rendered.is_some() || !parts.pruned => parts,
        _ => {
            parsed = EventParts::new(&shared.config, event);
            &parsed
        }
    };
    let planned = match rendered {
        Some(planned) => Cow::Borrowed(planned),
        None => match rules.render_action(&x.rule_id, index, &parts.view(&event.event)) {
            Ok(p) => Cow::Owned(p),
            Err(why) => return Ok(Prepared::Fatal(why, Some(origin))),
        },
    };
    if planned.plugin != x.plugin {
        return Ok(Prepared::Fatal(
            format!(
                "rule `{}` action {} now uses plugin `{}`, not `{}`",
                x.rule_id, x.action_index, planned.plugin, x.plugin
            ),
            Some(origin),
        ));
    }
    let ctx = CallContext {
        rule_id: x.rule_id.clone(),
        action_index: u32::try_from(x.action_index).unwrap_or(0),
        attempt: u32::try_from(x.attempts).unwrap_or(0),
        idempotency_key: x.idempotency_key.clone(),
    };
    Ok(Prepared::Call(Box::new(PreparedCall {
        plugin,
        ctx,
        event: call_event(parts, &event.event),
        input: planned.input.to_string(),
        retry: planned.retry,
        timeout: planned.timeout,
        received_at: event.event.received_at,
    })))
}

/// The event as a plugin gets it: `e` with its `parts`.
pub(crate) fn call_event(parts: &EventParts, e: &NewEvent) -> CallEvent {
    CallEvent {
        id: parts.id.clone(),
        source: e.source.clone(),
        event_type: e.event_type.clone(),
        received_at: parts.received_at.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        payload_json: e.payload.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugin_host::ErrorKind;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
        }
    }

    fn retryable(after: Option<Duration>) -> Result<String, CallError> {
        Err(CallError::Plugin {
            kind: ErrorKind::Retryable,
            message: "503".into(),
            retry_after: after,
        })
    }

    /// A first attempt that succeeded and recorded nothing is kept in its execution's row:
    /// the records the dispatcher writes must be the empty ones the store recognises.
    #[test]
    fn a_quiet_success_is_kept_in_its_execution() {
        let mut report = timed_out(Duration::from_millis(1));
        report.result = Ok("{\"ok\":true}".into());
        let attempt = attempt_record(1, Millis(1), Millis(2), &report);
        assert!(attempt.recorded_nothing(), "{attempt:?}");
        assert!(crate::store::folds_into_execution(
            &attempt,
            &NextStep::Succeeded,
            || 11
        ));
        report.logs_truncated = true;
        let truncated = attempt_record(1, Millis(1), Millis(2), &report);
        assert!(!truncated.recorded_nothing());
        assert!(!crate::store::folds_into_execution(
            &attempt_record(2, Millis(1), Millis(2), &report),
            &NextStep::Succeeded,
            || 11
        ));
    }

    #[test]
    fn success_finishes() {
        assert_eq!(
            next_step(&Ok("{}".into()), 1, &policy(), Millis(0)),
            NextStep::Succeeded
        );
    }

    #[test]
    fn fatal_errors_stop_at_once() {
        let fatal = Err(CallError::Plugin {
            kind: ErrorKind::Fatal,
            message: "400".into(),
            retry_after: None,
        });
        assert!(matches!(
            next_step(&fatal, 1, &policy(), Millis(0)),
            NextStep::Dead(r) if r.starts_with("fatal:")
        ));
        assert!(matches!(
            next_step(
                &Err(CallError::Trap("unreachable".into())),
                1,
                &policy(),
                Millis(0)
            ),
            NextStep::Dead(_)
        ));
    }

    #[test]
    fn retryable_errors_back_off_with_jitter_then_give_up() {
        for _ in 0..100 {
            let NextStep::RetryAt(at) = next_step(&retryable(None), 1, &policy(), Millis(0)) else {
                panic!("expected a retry");
            };
            assert!((1_000..=2_000).contains(&at.0), "{at:?}");
            let NextStep::RetryAt(at) = next_step(&retryable(None), 2, &policy(), Millis(0)) else {
                panic!("expected a retry");
            };
            assert!((2_000..=4_000).contains(&at.0), "{at:?}");
        }
        assert!(matches!(
            next_step(&retryable(None), 3, &policy(), Millis(0)),
            NextStep::Dead(r) if r.starts_with("gave up after 3 attempts")
        ));
    }

    #[test]
    fn a_reduced_record_keeps_the_outcome_and_drops_what_the_plugin_said() {
        let attempt = NewExecutionAttempt {
            attempt: 3,
            started_at: Millis(10),
            finished_at: Millis(20),
            outcome: AttemptOutcome::Retryable,
            error: Some("boom \u{0}".into()),
            output: Some(json!({"said": "\u{0}"})),
            logs: json!({"lines": [{"level": "info", "message": "\u{0}"}], "truncated": false}),
            http_calls: json!([{"url": "http://x/\u{0}"}]),
            db_statements: json!({"statements": ["\u{0}"]}),
            fuel_used: Some(7),
            memory_peak: Some(8),
        };
        let dead = NextStep::Dead("gave up after 3 attempts: boom \u{0}".into());
        let (small, next) = reduced(&attempt, &dead);
        assert_eq!(small.error.as_deref(), Some(REDUCED_NOTE));
        assert_eq!(small.output, None);
        assert_eq!(
            (small.logs, small.http_calls, small.db_statements),
            (
                NewExecutionAttempt::no_logs(),
                NewExecutionAttempt::no_http_calls(),
                NewExecutionAttempt::no_db_statements()
            )
        );
        assert_eq!(
            (
                small.attempt,
                small.outcome,
                small.started_at,
                small.finished_at
            ),
            (3, AttemptOutcome::Retryable, Millis(10), Millis(20))
        );
        assert_eq!((small.fuel_used, small.memory_peak), (Some(7), Some(8)));
        assert_eq!(
            next,
            NextStep::Dead(format!("gave up after 3 attempts: {REDUCED_NOTE}"))
        );
        let fatal = NextStep::Dead("fatal: \u{0}".into());
        assert_eq!(
            reduced(&attempt, &fatal).1,
            NextStep::Dead(format!("fatal: {REDUCED_NOTE}"))
        );
        for step in [NextStep::Succeeded, NextStep::RetryAt(Millis(99))] {
            assert_eq!(reduced(&attempt, &step).1, step);
        }
    }

    #[test]
    fn retry_after_from_the_plugin_is_honoured() {
        let step = next_step(
            &retryable(Some(Duration::from_secs(7))),
            1,
            &policy(),
            Millis(0),
        );
        assert_eq!(step, NextStep::RetryAt(Millis(7_000)));
        let huge = next_step(
            &retryable(Some(Duration::from_secs(10 * 24 * 3600))),
            1,
            &policy(),
            Millis(0),
        );
        assert_eq!(huge, NextStep::RetryAt(Millis(24 * 3600 * 1000)));
    }
}
