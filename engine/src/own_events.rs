//! hookwise's own events (source `hookwise`): their types and payloads, the bounded queue that
//! carries them from where a condition is noticed to the task that stores them ([`Emitter`]),
//! and the trackers that decide when a condition is worth an event (refusal spikes, store
//! outages). Noticing never waits and never fails: on a full queue the event is dropped,
//! counted (`hookwise_own_events_dropped_total`) and logged. The execution events
//! (`execution.dead_lettered`, `execution.failing`) do not take the queue: the dispatcher
//! stores them in the transaction that records the attempt causing them.
//!
//! Each event has a delivery id derived from its condition (`execution.dead_lettered:<id>`, ...),
//! so an event emitted twice (after a crash, or by two nodes sharing a PostgreSQL store) is
//! stored once, the second time recorded as a duplicate delivery.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use tokio::sync::mpsc;

use crate::config::OwnEventSettings;
use crate::metrics::Metrics;
pub use crate::model::OWN_SOURCE as SOURCE;
use crate::model::{DeliveryAttemptId, EventId, EventStatus, Millis, Verdict};
use crate::rules::ReloadFailure;
use crate::store::{Execution, NewDeliveryAttempt, NewEvent, StoreError};
use crate::units::format_duration;

/// Events waiting to be stored. Conditions come in ones and twos (a dead letter, a reload); a
/// thousand waiting means the store is far behind, and holding more would only hold memory.
pub const QUEUE: usize = 1024;

/// Reasons listed in a `source.refusals_spike` event, most frequent first.
const TOP_REASONS: usize = 5;

/// What the delivery record of an own event says it came by (nothing came over HTTP).
pub const METHOD: &str = "EMIT";

/// The types of hookwise's own events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An execution became a dead letter.
    DeadLettered,
    /// An execution failed `own_events.failing_after` attempts in a row and is still retrying.
    Failing,
    /// A rules reload was refused; the rules in force stay.
    ReloadFailed,
    /// A source's refused requests passed the threshold within a window.
    RefusalsSpike,
    /// The store answers again after being unavailable.
    StoreUnavailable,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::DeadLettered,
        Kind::Failing,
        Kind::ReloadFailed,
        Kind::RefusalsSpike,
        Kind::StoreUnavailable,
    ];

    /// The event type rules name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DeadLettered => "execution.dead_lettered",
            Kind::Failing => "execution.failing",
            Kind::ReloadFailed => "rules.reload_failed",
            Kind::RefusalsSpike => "source.refusals_spike",
            Kind::StoreUnavailable => "store.unavailable",
        }
    }
}

/// One of hookwise's own events, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnEvent {
    pub kind: Kind,
    /// Derived from the condition, so that emitting it again stores nothing new.
    pub delivery_id: String,
    pub payload: Value,
    pub at: Millis,
}

impl OwnEvent {
    fn new(kind: Kind, key: impl std::fmt::Display, payload: Value, at: Millis) -> OwnEvent {
        OwnEvent {
            kind,
            delivery_id: format!("{}:{key}", kind.as_str()),
            payload,
            at,
        }
    }

    /// The event to store, and the record of its delivery (no HTTP request: it comes from
    /// `hookwise`, with no headers and no body).
    pub fn into_records(self) -> (NewEvent, NewDeliveryAttempt) {
        let payload = self.payload.to_string();
        let event = NewEvent {
            id: EventId::new(),
            source: SOURCE.to_string(),
            delivery_id: self.delivery_id,
            event_type: self.kind.as_str().to_string(),
            received_at: self.at,
            headers: json!({}),
            payload,
            status: EventStatus::Pending,
        };
        let attempt = NewDeliveryAttempt {
            id: DeliveryAttemptId::new(),
            source: SOURCE.to_string(),
            received_at: self.at,
            remote_addr: Some(SOURCE.to_string()),
            method: METHOD.to_string(),
            path: self.kind.as_str().to_string(),
            headers: json!({}),
            body: None,
            body_size: i64::try_from(event.payload.len()).unwrap_or(i64::MAX),
            verdict: Verdict::Accepted,
            status: 200,
            reason: None,
        };
        (event, attempt)
    }
}

/// The event an execution belongs to, as its own events name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub source: String,
    pub event_type: String,
}

impl Origin {
    /// Whether the execution ran for one of hookwise's own events: its failures emit nothing,
    /// so that a rule whose action fails on them cannot feed itself.
    pub fn is_own(&self) -> bool {
        self.source == SOURCE
    }
}

/// The facts every execution event carries.
fn execution_payload(
    x: &Execution,
    origin: &Origin,
    last_error: Option<&str>,
    at: Millis,
) -> Value {
    json!({
        "execution_id": x.id,
        "event_id": x.event_id,
        "source": origin.source,
        "event_type": origin.event_type,
        "rule_id": x.rule_id,
        "action_index": x.action_index,
        "generation": x.generation,
        "plugin": x.plugin,
        "attempts": x.attempts,
        "last_error": last_error,
        "at": at.to_rfc3339(),
    })
}

/// `execution.dead_lettered` for `x`, which became a dead letter with `reason`.
pub fn dead_lettered(
    x: &Execution,
    origin: &Origin,
    reason: &str,
    last_error: Option<&str>,
    at: Millis,
) -> OwnEvent {
    let mut payload = execution_payload(x, origin, last_error, at);
    payload["reason"] = json!(reason);
    OwnEvent::new(Kind::DeadLettered, x.id, payload, at)
}

/// `execution.failing` for `x`, which failed its attempts so far and retries at `next_attempt`.
pub fn failing(
    x: &Execution,
    origin: &Origin,
    last_error: Option<&str>,
    next_attempt: Millis,
    at: Millis,
) -> OwnEvent {
    let mut payload = execution_payload(x, origin, last_error, at);
    payload["next_attempt_at"] = json!(next_attempt.to_rfc3339());
    OwnEvent::new(Kind::Failing, x.id, payload, at)
}

/// `rules.reload_failed` for `failure`. Identical problems are one condition: announced once
/// per hour at most, by however many nodes found them.
pub fn reload_failed(failure: &ReloadFailure) -> OwnEvent {
    let error = failure.problems.join("\n");
    let digest = sha2::Sha256::digest(error.as_bytes());
    let hour = failure.at.0.div_euclid(3_600_000);
    let key = format!("{}:{hour}", hex::encode(&digest[..8]));
    let payload = json!({
        "error": error,
        "problems": failure.problems,
        "file": failure.files.first(),
        "files": failure.files,
        "at": failure.at.to_rfc3339(),
    });
    OwnEvent::new(Kind::ReloadFailed, key, payload, failure.at)
}

/// `store.unavailable`: `node` found the store unavailable from `since` until `until`.
pub fn store_unavailable(node: &str, since: Millis, until: Millis) -> OwnEvent {
    let ms = until.0.saturating_sub(since.0).max(0);
    let payload = json!({
        "node": node,
        "since": since.to_rfc3339(),
        "until": until.to_rfc3339(),
        "duration": format_duration(Duration::from_millis(ms.unsigned_abs())),
        "duration_ms": ms,
    });
    OwnEvent::new(
        Kind::StoreUnavailable,
        format!("{node}:{}", since.0),
        payload,
        until,
    )
}

/// Whether `e` says the store cannot be reached or written right now (rather than that one
/// write was refused, or that the store is shutting down).
pub fn means_unavailable(e: &StoreError) -> bool {
    match e {
        StoreError::Database(e) => match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed => true,
            // Connection exceptions, insufficient resources, operator intervention.
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("53") || c.starts_with("57")),
            _ => false,
        },
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
            f.code,
            rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::OutOfMemory
        ),
        StoreError::Sync(_) => true,
        _ => false,
    }
}

/// The refused requests of one source in the current window.
struct RefusalWindow {
    start: i64,
    count: u64,
    reasons: BTreeMap<&'static str, u64>,
    announced: bool,
}

/// Where conditions are reported: queues hookwise's own events for the task that stores them.
/// Cheap to clone.
#[derive(Clone)]
pub struct Emitter(Arc<Inner>);

struct Inner {
    queue: mpsc::Sender<OwnEvent>,
    metrics: Arc<Metrics>,
    settings: OwnEventSettings,
    /// Per configured source (the only keys: refusals of unknown sources are not counted).
    refusals: Mutex<HashMap<String, RefusalWindow>>,
    /// When the store was first found unavailable, in milliseconds; 0 while it is available.
    outage_since: AtomicI64,
}

impl Emitter {
    /// An emitter with `settings` whose events wait, at most `capacity` of them, in the
    /// returned receiver; drops are counted in `metrics`.
    pub fn new(
        settings: OwnEventSettings,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Emitter, mpsc::Receiver<OwnEvent>) {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let inner = Inner {
            queue,
            metrics,
            settings,
            refusals: Mutex::default(),
            outage_since: AtomicI64::new(0),
        };
        (Emitter(Arc::new(inner)), receiver)
    }

    pub fn settings(&self) -> &OwnEventSettings {
        &self.0.settings
    }

    /// Queues `event` without waiting: on a full queue it is dropped, counted and logged.
    pub fn emit(&self, event: OwnEvent) {
        match self.0.queue.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                self.0.metrics.own_event_dropped();
                tracing::warn!(
                    event_type = event.kind.as_str(),
                    delivery_id = %event.delivery_id,
                    "hookwise's own event dropped: too many are waiting to be stored"
                );
            }
            Err(mpsc::error::TrySendError::Closed(event)) => {
                tracing::debug!(
                    event_type = event.kind.as_str(),
                    "hookwise's own event not stored: the server is stopping"
                );
            }
        }
    }

    /// Whether an execution that just failed attempt number `attempts` and retries is now
    /// `execution.failing`: exactly at the configured count, so once per execution.
    pub fn is_failing(&self, attempts: i32) -> bool {
        let n = self.0.settings.failing_after;
        n > 0 && i64::from(attempts) == i64::from(n)
    }

    /// A request to configured source `source` was refused with `reason` (its code) at `at`.
    /// The refusal that takes the window's count past the threshold emits
    /// `source.refusals_spike` (once per window and source).
    pub fn refused(&self, source: &str, reason: &'static str, at: Millis) {
        let settings = &self.0.settings;
        if settings.refusals_threshold == 0 {
            return;
        }
        let window = i64::try_from(settings.refusals_window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let start = at.0 - at.0.rem_euclid(window);
        let spike = {
            let mut windows = self.0.refusals.lock().unwrap_or_else(|p| p.into_inner());
            if !windows.contains_key(source) {
                windows.insert(
                    source.to_string(),
                    RefusalWindow {
                        start,
                        count: 0,
                        reasons: BTreeMap::new(),
                        announced: false,
                    },
                );
            }
            let Some(w) = windows.get_mut(source) else {
                return;
            };
            if w.start != start {
                *w = RefusalWindow {
                    start,
                    count: 0,
                    reasons: BTreeMap::new(),
                    announced: false,
                };
            }
            w.count += 1;
            *w.reasons.entry(reason).or_default() += 1;
            if w.announced || w.count <= u64::from(settings.refusals_threshold) {
                return;
            }
            w.announced = true;
            refusals_spike(source, w, settings, at)
        };
        self.emit(spike);
    }

    /// Notes a failed store operation: when `e` says the store is unavailable, the outage
    /// starts now (unless one is already under way).
    pub fn store_failed(&self, e: &StoreError) {
        if means_unavailable(e) {
            let _ = self.0.outage_since.compare_exchange(
                0,
                Millis::now().0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// When the store outage under way started, if one is.
    pub fn outage_since(&self) -> Option<Millis> {
        match self.0.outage_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Millis(since)),
        }
    }

    /// Ends the outage that started at `since` (announced): a later one starts afresh.
    pub fn outage_over(&self, since: Millis) {
        let _ =
            self.0
                .outage_since
                .compare_exchange(since.0, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

fn refusals_spike(
    source: &str,
    w: &RefusalWindow,
    settings: &OwnEventSettings,
    at: Millis,
) -> OwnEvent {
    let mut reasons: Vec<(&str, u64)> = w.reasons.iter().map(|(r, n)| (*r, *n)).collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<Value> = reasons
        .iter()
        .take(TOP_REASONS)
        .map(|(reason, count)| json!({"reason": reason, "count": count}))
        .collect();
    let payload = json!({
        "source": source,
        "count": w.count,
        "threshold": settings.refusals_threshold,
        "window": format_duration(settings.refusals_window),
        "window_start": Millis(w.start).to_rfc3339(),
        "top_reasons": top,
        "at": at.to_rfc3339(),
    });
    OwnEvent::new(
        Kind::RefusalsSpike,
        format!("{source}:{}", w.start),
        payload,
        at,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitter(settings: OwnEventSettings, capacity: usize) -> (Emitter, mpsc::Receiver<OwnEvent>) {
        Emitter::new(settings, capacity, Arc::default())
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let metrics = Arc::new(Metrics::default());
        let (emitter, mut rx) = Emitter::new(OwnEventSettings::default(), 2, metrics.clone());
        for n in 0..3 {
            emitter.emit(store_unavailable("n", Millis(n), Millis(n + 1)));
        }
        assert_eq!(metrics.own_events_dropped(), 1);
        assert_eq!(rx.try_recv().map(|e| e.at), Ok(Millis(1)));
        assert_eq!(rx.try_recv().map(|e| e.at), Ok(Millis(2)));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_spike_is_announced_once_per_window_with_its_top_reasons() {
        let settings = OwnEventSettings {
            refusals_threshold: 3,
            refusals_window: Duration::from_secs(60),
            ..OwnEventSettings::default()
        };
        let (emitter, mut rx) = emitter(settings, 16);
        let t0 = 600_000; // a window start
        for (i, reason) in ["bad_signature", "bad_signature", "too_large"]
            .into_iter()
            .enumerate()
        {
            emitter.refused("gh", reason, Millis(t0 + i as i64));
        }
        assert!(rx.try_recv().is_err(), "3 is not beyond the threshold");
        emitter.refused("gh", "bad_signature", Millis(t0 + 10));
        let spike = rx.try_recv().expect("a spike");
        assert_eq!(spike.kind, Kind::RefusalsSpike);
        assert_eq!(spike.delivery_id, format!("source.refusals_spike:gh:{t0}"));
        assert_eq!(spike.payload["count"], 4);
        assert_eq!(spike.payload["window"], "1m");
        assert_eq!(
            spike.payload["top_reasons"],
            json!([{"reason": "bad_signature", "count": 3}, {"reason": "too_large", "count": 1}])
        );
        // More refusals in the same window: nothing more. Another source counts apart.
        for i in 0..10 {
            emitter.refused("gh", "bad_signature", Millis(t0 + 20 + i));
        }
        emitter.refused("stripe", "bad_signature", Millis(t0 + 30));
        assert!(rx.try_recv().is_err());
        // The next window starts from zero.
        for i in 0..4 {
            emitter.refused("gh", "bad_signature", Millis(t0 + 60_000 + i));
        }
        let next = rx.try_recv().expect("a spike in the next window");
        assert_eq!(
            next.delivery_id,
            format!("source.refusals_spike:gh:{}", t0 + 60_000)
        );
    }

    #[test]
    fn a_threshold_of_zero_never_announces() {
        let settings = OwnEventSettings {
            refusals_threshold: 0,
            ..OwnEventSettings::default()
        };
        let (emitter, mut rx) = emitter(settings, 16);
        for i in 0..1000 {
            emitter.refused("gh", "bad_signature", Millis(i));
        }
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn failing_is_reached_once() {
        let (emitter, _rx) = emitter(OwnEventSettings::default(), 1);
        let at: Vec<i32> = (1..10).filter(|n| emitter.is_failing(*n)).collect();
        assert_eq!(at, vec![3]);
        let never = OwnEventSettings {
            failing_after: 0,
            ..OwnEventSettings::default()
        };
        let (emitter, _rx) = Emitter::new(never, 1, Arc::default());
        assert!((0..10).all(|n| !emitter.is_failing(n)));
    }

    #[test]
    fn an_outage_starts_once_and_ends_only_as_announced() {
        let (emitter, _rx) = emitter(OwnEventSettings::default(), 1);
        assert_eq!(emitter.outage_since(), None);
        emitter.store_failed(&StoreError::Closed);
        assert_eq!(emitter.outage_since(), None, "closing is not an outage");
        emitter.store_failed(&StoreError::Sync("fsync failed".into()));
        let since = emitter.outage_since().expect("an outage");
        emitter.store_failed(&StoreError::Sync("again".into()));
        assert_eq!(emitter.outage_since(), Some(since));
        emitter.outage_over(Millis(since.0 - 1));
        assert_eq!(emitter.outage_since(), Some(since), "another outage's end");
        emitter.outage_over(since);
        assert_eq!(emitter.outage_since(), None);
    }

    #[test]
    fn delivery_ids_are_derived_from_the_condition() {
        let failure = ReloadFailure {
            at: Millis(7_200_000 + 5),
            problems: vec!["rules/a.yaml:3:7: unknown plugin `x`".into()],
            files: vec!["rules/a.yaml".into()],
        };
        let a = reload_failed(&failure);
        let b = reload_failed(&ReloadFailure {
            at: Millis(7_200_000 + 50_000),
            ..failure.clone()
        });
        assert_eq!(
            a.delivery_id, b.delivery_id,
            "the same problems in the same hour"
        );
        assert!(a.delivery_id.starts_with("rules.reload_failed:"));
        assert_eq!(a.payload["file"], "rules/a.yaml");
        assert_eq!(a.payload["error"], "rules/a.yaml:3:7: unknown plugin `x`");
        let c = reload_failed(&ReloadFailure {
            problems: vec!["rules/a.yaml:4:7: unknown plugin `y`".into()],
            ..failure
        });
        assert_ne!(a.delivery_id, c.delivery_id);
        let outage = store_unavailable("node-1", Millis(1_000), Millis(4_500));
        assert_eq!(outage.delivery_id, "store.unavailable:node-1:1000");
        assert_eq!(outage.payload["duration"], "3s500ms");
        let (event, attempt) = outage.into_records();
        assert_eq!(
            (event.source.as_str(), attempt.source.as_str()),
            (SOURCE, SOURCE)
        );
        assert_eq!(event.event_type, "store.unavailable");
        assert_eq!(attempt.remote_addr.as_deref(), Some(SOURCE));
    }
}
