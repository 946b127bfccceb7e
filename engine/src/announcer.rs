//! The task that stores hookwise's own events: it takes them from the emitter's queue (see
//! [`crate::own_events`]) and stores them through the intake arriving events go through (group
//! commit; matched against the rules as they are stored), announces refused rule reloads, and
//! watches the store. Once the store is found unavailable, it tries every second to store
//! `store.unavailable`, which succeeds when the store is back.
//!
//! Nothing waits on it: whoever notices a condition only queues an event.

use std::time::Duration;

use tokio::sync::watch;

use crate::model::Millis;
use crate::own_events::{self, OwnEvent};
use crate::state::AppState;

/// How often an event that could not be stored (the store is unavailable) is tried again, and
/// how often an outage's end is looked for.
const RETRY: Duration = Duration::from_secs(1);
/// How often the store is probed while nothing else uses it, so that an outage is noticed on
/// a quiet server too.
const PROBE: Duration = Duration::from_secs(5);
/// How long stopping may spend storing what is still queued.
const DRAIN: Duration = Duration::from_secs(5);

/// Stores hookwise's own events until `stop` turns true, then gives what is still queued one
/// try each (within [`DRAIN`]). Returns at once when another task took the queue.
pub async fn run(app: AppState, mut stop: watch::Receiver<bool>) {
    let Some(mut queue) = app.take_own_queue() else {
        return;
    };
    let node = format!("{}:{}", crate::dispatch::hostname(), std::process::id());
    let mut failures = app.rules.as_ref().map(|r| r.failures());
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe = tokio::time::interval(PROBE);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // An event the store could not take yet: tried again before the next is taken.
    let mut held: Option<OwnEvent> = None;
    while !*stop.borrow() {
        tokio::select! {
            _ = stop.changed() => break,
            next = queue.recv(), if held.is_none() => match next {
                Some(event) => held = Some(event),
                None => break,
            },
            changed = reload_failed(&mut failures) => {
                if let Some(event) = changed {
                    app.own_events.emit(event);
                }
            }
            _ = retry.tick() => announce_outage(&app, &node).await,
            _ = probe.tick() => {
                if let Err(e) = app.store.ping().await {
                    app.own_events.store_failed(&e);
                }
            }
        }
        if let Some(event) = held.take()
            && !store(&app, event.clone()).await
        {
            held = Some(event);
        }
    }
    let drain = async {
        if let Some(event) = held.take() {
            store(&app, event).await;
        }
        while let Ok(event) = queue.try_recv() {
            store(&app, event).await;
        }
    };
    if tokio::time::timeout(DRAIN, drain).await.is_err() {
        tracing::warn!("some of hookwise's own events were not stored before stopping");
    }
}

/// The next refused rules reload, as an event (None for a change that is not one). Never
/// completes without reloads to watch.
async fn reload_failed(
    failures: &mut Option<watch::Receiver<Option<crate::rules::ReloadFailure>>>,
) -> Option<OwnEvent> {
    let Some(rx) = failures.as_mut() else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        // The rules are gone (never while serving): nothing more to watch.
        *failures = None;
        return None;
    }
    let failure = rx.borrow_and_update().clone();
    failure.as_ref().map(own_events::reload_failed)
}

/// During an outage, stores `store.unavailable` once the store answers again (from the
/// outage's start until then): once that works, the outage is over.
async fn announce_outage(app: &AppState, node: &str) {
    let Some(since) = app.own_events.outage_since() else {
        return;
    };
    // A probe first: a write would wait out the whole outage (up to the pool's connect
    // timeout at a time), and the event must say when the store came back, not when this
    // started waiting for it.
    if let Err(e) = app.store.ping().await {
        app.own_events.store_failed(&e);
        return;
    }
    let event = own_events::store_unavailable(node, since, Millis::now());
    if store(app, event).await {
        app.own_events.outage_over(since);
    }
}

/// Stores `event` (scrubbed of secrets like every record), matched against the rules in
/// force. False when the store is unavailable and the event should be tried again; an event
/// the store refuses for another reason is logged and dropped.
async fn store(app: &AppState, mut event: OwnEvent) -> bool {
    app.scrubber.scrub_value(&mut event.payload);
    let payload = event.payload.clone();
    let kind = event.kind.as_str();
    let (new, attempt) = event.into_records();
    match app.intake().admit(new, attempt, |_| payload).await {
        Ok(stored) => {
            if !stored.duplicate {
                app.metrics.own_event_stored();
            }
            tracing::debug!(
                event = %stored.event_id,
                event_type = kind,
                duplicate = stored.duplicate,
                "hookwise's own event stored"
            );
            true
        }
        Err(e) if own_events::means_unavailable(&e) => {
            app.own_events.store_failed(&e);
            tracing::debug!(event_type = kind, error = %e, "hookwise's own event waits for the store");
            false
        }
        Err(e) => {
            tracing::error!(event_type = kind, error = %e, "cannot store hookwise's own event; dropped");
            true
        }
    }
}
