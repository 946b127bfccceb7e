//! The asynchronous half of the pipeline (match, plan, run, retry): stored events are matched
//! against the rules and their executions planned (the match trace is stored with the event),
//! then a bounded pool of workers claims executions with leases, runs each through the plugin
//! host, records the attempt and retries, finishes or dead-letters it.
//!
//! Nothing here holds state that a crash could lose: an event is pending until its plan is
//! committed, and an execution is leased until its attempt is committed; an expired lease is
//! claimed again (by this node after a restart, or by another node sharing a PostgreSQL store).

mod backlog;
pub mod backtest;
mod handoff;
pub mod ops;
pub(crate) mod run;

pub use backlog::Backlog;
pub use handoff::Handoff;
use handoff::{Origin, Reservation};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::{Config, DispatchSettings};
use crate::model::{EventStatus, ExecutionId, Millis};
use crate::plugin_host::Registry;
use crate::rules::{Evaluation, EventView, LiveRules, PlannedAction, RuleSet};
use crate::store::{
    ClaimExclusions, EventPlan, IngestOutcome, LimitScope, NewDeliveryAttempt, NewEvent,
    NewExecution, SharedLimit, Store, StoredEvent,
};

/// Executions claimed per free worker slot, beyond the first: claiming ahead keeps the workers
/// busy while the next claim waits for its commit.
const CLAIM_AHEAD: usize = 4;
/// Events matched and planned per transaction.
const PLAN_BATCH: i64 = 256;
/// Longest sleep when nothing is due: bounds how late work planned by another process (a CLI
/// replay, another node) is noticed.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Back-off after a store error, so a broken database does not spin a core.
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// How long running actions get to finish on shutdown before they are given back.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Wakes the dispatcher: the matcher when events were stored, the workers when executions
/// were planned or finished. Cheap to clone; a wake with nobody waiting is remembered. Also
/// carries the backlog of unclaimed executions that ingress waits on.
#[derive(Clone, Default)]
pub struct Wake {
    events: Arc<Notify>,
    work: Arc<Notify>,
    backlog: Arc<Backlog>,
    handoff: Arc<Handoff>,
}

impl Wake {
    /// Wakes for a dispatcher with `settings` (its backlog limit and wait).
    pub fn new(settings: &DispatchSettings) -> Wake {
        Wake {
            backlog: Arc::new(Backlog::new(settings.backlog_limit, settings.backlog_wait)),
            ..Wake::default()
        }
    }

    /// Planned executions this node has not claimed yet.
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// New events are stored.
    pub fn events(&self) {
        self.events.notify_one();
    }

    /// Executions became claimable.
    pub fn work(&self) {
        self.work.notify_one();
    }
}

/// Everything the matcher and the workers share.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) rules: LiveRules,
    pub(crate) plugins: Registry,
    pub(crate) config: Arc<Config>,
    pub(crate) settings: DispatchSettings,
    pub(crate) wake: Wake,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Replaces secret values in the attempts recorded.
    pub(crate) scrubber: Arc<crate::scrub::Scrubber>,
    /// hookwise's own events: when an execution counts as failing, and store outages noticed
    /// while recording attempts (execution events themselves are stored with the attempt).
    pub(crate) own_events: crate::own_events::Emitter,
    /// This process's name in leases.
    pub(crate) owner: String,
    /// Running executions per plugin and per (rule, action), for concurrency limits.
    pub(crate) running: Mutex<Running>,
    /// The limits every node counts together (on PostgreSQL), for the rules they were made
    /// from: every claim sends them, and the rules change only on a reload.
    shared_limits: Mutex<Option<(Arc<RuleSet>, Vec<SharedLimit>)>>,
}

#[derive(Default)]
pub(crate) struct Running {
    plugins: HashMap<String, u32>,
    actions: HashMap<(String, i32), u32>,
}

/// A running dispatcher.
pub struct Dispatcher {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    matcher: tokio::task::JoinHandle<()>,
    workers: tokio::task::JoinHandle<()>,
    listener: tokio::task::JoinHandle<()>,
}

/// What a dispatcher is started with.
pub struct Setup {
    pub store: Store,
    pub rules: LiveRules,
    pub plugins: Registry,
    pub config: Arc<Config>,
    /// Shared with ingress, which wakes the dispatcher and waits on its backlog.
    pub wake: Wake,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Replaces secret values in the attempts recorded.
    pub scrubber: Arc<crate::scrub::Scrubber>,
    /// hookwise's own events: when an execution counts as failing, and store outages noticed
    /// while recording attempts (execution events themselves are stored with the attempt).
    pub own_events: crate::own_events::Emitter,
}

impl Dispatcher {
    /// Starts the matcher, the workers and the listener for other nodes' work.
    pub fn start(setup: Setup) -> Dispatcher {
        let Setup {
            store,
            rules,
            plugins,
            config,
            wake,
            metrics,
            scrubber,
            own_events,
        } = setup;
        let owner = format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        );
        let shared = Arc::new(Shared {
            store,
            rules,
            plugins,
            settings: config.dispatch.clone(),
            config,
            wake,
            metrics,
            scrubber,
            own_events,
            owner,
            running: Mutex::new(Running::default()),
            shared_limits: Mutex::new(None),
        });
        // Arrivals hand the executions this node can run at once straight to its workers,
        // in the places claims leave free of the few per worker that may wait.
        shared.wake.handoff.open(
            &shared.owner,
            shared.settings.lease,
            waiting_places(workers_of(&shared.settings)),
            shared.plugins.clone(),
        );
        let (stop, stop_rx) = watch::channel(false);
        let matcher = tokio::spawn(match_loop(shared.clone(), stop_rx.clone()));
        let workers = tokio::spawn(claim_loop(shared.clone(), stop_rx));
        // Other nodes sharing a PostgreSQL store announce new work with NOTIFY.
        let listener = {
            let store = shared.store.clone();
            let wake = shared.wake.clone();
            tokio::spawn(async move {
                store
                    .listen_for_work(|| {
                        wake.events();
                        wake.work();
                    })
                    .await;
            })
        };
        // A plugin compiling in the background: its actions become claimable when it is done.
        for compiled in shared.plugins.compiles() {
            let wake = shared.wake.clone();
            tokio::spawn(async move {
                compiled.await;
                wake.work();
            });
        }
        Dispatcher {
            shared,
            stop,
            matcher,
            workers,
            listener,
        }
    }

    pub fn wake(&self) -> Wake {
        self.shared.wake.clone()
    }

    /// Stops claiming, lets running actions finish within a grace period, gives the rest back.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.listener.abort();
        let _ = self.matcher.await;
        let _ = self.workers.await;
    }
}

/// This machine's name (for leases and hookwise's own events).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hookwise".to_string())
}

/// Waits for `notify`, a stop, or `timeout`, whichever comes first.
async fn wait(notify: &Notify, stop: &mut watch::Receiver<bool>, timeout: Duration) {
    if *stop.borrow() {
        return;
    }
    tokio::select! {
        _ = notify.notified() => {}
        _ = stop.changed() => {}
        _ = tokio::time::sleep(timeout) => {}
    }
}

// ---- matching and planning ---------------------------------------------------------------

async fn match_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match plan_pending(&shared).await {
            Ok(0) => wait(&shared.wake.events, &mut stop, IDLE_POLL).await,
            Ok(_) => shared.wake.work(),
            Err(e) => {
                tracing::error!(error = %e, "matching stored events failed; retrying");
                wait(&shared.wake.events, &mut stop, ERROR_PAUSE).await;
            }
        }
    }
}

/// Matches and plans one batch of pending events; returns how many.
async fn plan_pending(shared: &Shared) -> Result<usize, crate::store::StoreError> {
    let events = shared.store.pending_events(PLAN_BATCH).await?;
    if events.is_empty() {
        return Ok(0);
    }
    let rules = shared.rules.current();
    let plans: Vec<EventPlan> = events
        .iter()
        .map(|e| plan_event(&rules, &shared.config, e, 0))
        .collect();
    let planned: usize = plans.iter().map(|p| p.executions.len()).sum();
    let commit = shared.store.plan(&plans);
    let created = commit_counted(&shared.wake.backlog, planned, commit, Vec::len).await?;
    tracing::debug!(
        events = events.len(),
        executions = created.len(),
        "events planned"
    );
    Ok(events.len())
}

/// Commits `planned` new executions with the backlog counting them: counted before the commit,
/// so no claim can see work the count does not hold yet; those not stored after all (`stored`
/// of the result says how many were, a failed commit stores none) withdrawn after it.
async fn commit_counted<T, E>(
    backlog: &Backlog,
    planned: usize,
    commit: impl std::future::Future<Output = Result<T, E>>,
    stored: impl FnOnce(&T) -> usize,
) -> Result<T, E> {
    backlog.planned(planned);
    let result = commit.await;
    let stored = result.as_ref().map_or(0, stored);
    backlog.withdrawn(planned.saturating_sub(stored));
    result
}

/// The dispatcher's side of ingress: stores each arriving event once, matched and planned when
/// the rules are matched as events arrive, with its executions counted in the backlog, and
/// wakes the dispatcher.
pub struct Intake<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    /// `None`: events are stored unmatched, and the matcher plans them.
    pub rules: Option<&'a LiveRules>,
    pub wake: &'a Wake,
    pub metrics: &'a Arc<crate::metrics::Metrics>,
}

impl Intake<'_> {
    /// Stores `event` with its delivery `attempt` in one transaction; a valid event is stored
    /// with its plan. `payload` gives the parsed payload, called only when some rule is
    /// selected for the event's source and type; given a filter, it may leave out the
    /// top-level members the filter refuses (see [`PayloadFilter`]).
    pub async fn admit(
        &self,
        event: NewEvent,
        attempt: NewDeliveryAttempt,
        payload: impl FnOnce(PayloadFilter<'_>) -> Value,
    ) -> Result<IngestOutcome, crate::store::StoreError> {
        let quarantined = event.status == EventStatus::Quarantined;
        // Matched and planned in the transaction that stores the event: rule matching costs
        // microseconds, and the event is then written once, not stored and updated.
        let current = self.rules.map(LiveRules::current);
        let (plan, matched_with) = match &current {
            Some(rules) if !quarantined => {
                let (plan, matched_with) = plan_arrival(rules, self.config, &event, payload);
                (Some(plan), matched_with)
            }
            _ => (None, None),
        };
        let matched = plan.is_some();
        let planned = plan.as_ref().map_or(0, |p| p.executions.len());
        if planned > 0 {
            // Backpressure: while the workers are behind, the arrival waits (boundedly) before
            // adding to their backlog.
            let waited = self.wake.backlog.admit().await;
            if !waited.is_zero() {
                self.metrics.backlog_wait(waited);
            }
        }
        // What this node can run at once is stored leased to it and handed to its workers
        // after the commit (handoff.rs); the rest waits for a claim.
        let mut plan = plan;
        let reservation = match (&current, plan.as_mut()) {
            (Some(rules), Some(plan)) if planned > 0 && self.store.stores_as_given(&event) => {
                self.wake.handoff.reserve(&mut plan.executions, rules)
            }
            _ => None,
        };
        let to_claim = planned - reservation.as_ref().map_or(0, Reservation::len);
        let stored_count = move |o: &IngestOutcome| if o.duplicate { 0 } else { planned };
        let stored = match reservation {
            None => {
                let commit = self.store.ingest_planned(event, attempt, plan);
                commit_counted(&self.wake.backlog, planned, commit, stored_count).await?
            }
            // Committed leases must reach the workers even when this caller goes away (the
            // sender closed its connection): the commit and the hand-off run as a task.
            Some(reservation) => {
                let (wake, store, metrics) = (
                    self.wake.clone(),
                    self.store.clone(),
                    Arc::clone(self.metrics),
                );
                tokio::spawn(async move {
                    let commit = store.ingest_planned(event.clone(), attempt, plan);
                    let stored =
                        commit_counted(&wake.backlog, planned, commit, stored_count).await?;
                    if let Some(seq) = stored.seq {
                        let (parts, rendered) = matched_with
                            .map_or((None, None), |m| (Some(m.parts), Some(m.rendered)));
                        let event = KnownEvent {
                            stored: StoredEvent {
                                seq,
                                event,
                                match_trace: None,
                                planned_at: Some(Millis::now()),
                            },
                            parts,
                            rendered,
                        };
                        hand_over(reservation, event, &store, &wake, &metrics).await;
                    }
                    Ok::<_, crate::store::StoreError>(stored)
                })
                .await
                .map_err(|_| crate::store::StoreError::Closed)??
            }
        };
        if !stored.duplicate && !quarantined {
            match (matched, to_claim) {
                (false, _) => self.wake.events(),
                (true, 0) => {}
                (true, _) => self.wake.work(),
            }
        }
        Ok(stored)
    }
}

/// Hands the executions `reservation` leased, committed with `event`, to this node's workers;
/// gives them back for a claim when the dispatcher stopped meanwhile.
async fn hand_over(
    reservation: Reservation,
    event: KnownEvent,
    store: &Store,
    wake: &Wake,
    metrics: &crate::metrics::Metrics,
) {
    let owner = reservation.owner().to_string();
    let n = reservation.len();
    match reservation.deliver(event) {
        Ok(()) => metrics.handed(n),
        Err(back) => {
            for x in back {
                release(store, &owner, &x).await;
            }
            wake.work();
        }
    }
}

/// Owned parts of an event that the rule engine borrows.
pub(crate) struct EventParts {
    pub(crate) id: String,
    pub(crate) provider: String,
    pub(crate) received_at: String,
    pub(crate) headers: std::collections::BTreeMap<String, String>,
    pub(crate) payload: Arc<Value>,
    /// `payload` holds only the members the rules it was matched with read: other rules
    /// (after a reload) need it parsed again.
    pub(crate) pruned: bool,
}

impl EventParts {
    pub(crate) fn new(config: &Config, e: &StoredEvent) -> EventParts {
        let payload = serde_json::from_str(&e.event.payload).unwrap_or(Value::Null);
        EventParts::of(config, &e.event, payload)
    }

    /// The parts of `e`, whose payload is already parsed as `payload`.
    pub(crate) fn of(config: &Config, e: &NewEvent, payload: Value) -> EventParts {
        let headers = match &e.headers {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            _ => Default::default(),
        };
        EventParts {
            id: e.id.to_string(),
            provider: match config.source(&e.source) {
                Some(s) => s.provider.id().to_string(),
                // hookwise's own events have no provider: their source stands in.
                None if e.source == crate::model::OWN_SOURCE => e.source.clone(),
                None => String::new(),
            },
            received_at: e.received_at.to_rfc3339(),
            headers,
            payload: Arc::new(payload),
            pruned: false,
        }
    }

    pub(crate) fn view<'a>(&'a self, e: &'a NewEvent) -> EventView<'a> {
        EventView {
            id: &self.id,
            source: &e.source,
            provider: &self.provider,
            event_type: &e.event_type,
            received_at: &self.received_at,
            headers: &self.headers,
            payload: &self.payload,
        }
    }
}

/// Matches one event and lists the executions of generation `generation` it needs.
pub fn plan_event(
    rules: &RuleSet,
    config: &Config,
    event: &StoredEvent,
    generation: i32,
) -> EventPlan {
    plan_parts(
        rules,
        &EventParts::new(config, event),
        &event.event,
        generation,
    )
    .0
}

/// The top-level payload members the rules selected for an event read, when they read only
/// some: a payload given for matching must hold at least those (of an object). `None`: the
/// whole payload.
pub type PayloadFilter<'a> = Option<&'a dyn Fn(&str) -> bool>;

/// What an arriving event was matched with: its parts, and the inputs its actions rendered.
struct MatchedWith {
    parts: EventParts,
    rendered: Rendered,
}

/// Matches an event as it arrives, so that it is stored matched and planned in the
/// transaction that stores it. `payload` gives its parsed payload, called only when some rule
/// is selected for the event's source and type (most events of a busy source match none, and
/// need neither the parsed payload nor the rest of what rules read).
fn plan_arrival(
    rules: &Arc<RuleSet>,
    config: &Config,
    event: &NewEvent,
    payload: impl FnOnce(PayloadFilter<'_>) -> Value,
) -> (EventPlan, Option<MatchedWith>) {
    if !rules.selects_any(&event.source, &event.event_type) {
        let plan = EventPlan {
            event: event.id,
            match_trace: trace_text(&Evaluation::default()),
            executions: Vec::new(),
        };
        return (plan, None);
    }
    // Parsed only as far as the selected rules read it (about 7% of an event's CPU with one
    // action went into building the whole tree of a 2 KiB push whose rule read one member).
    let reads = rules.payload_reads(&event.source, &event.event_type);
    let keep = |name: &str| reads.reads(name);
    let filter: PayloadFilter<'_> = if reads.reads_all() { None } else { Some(&keep) };
    let mut parts = EventParts::of(config, event, payload(filter));
    parts.pruned = filter.is_some();
    let (plan, evaluation) = plan_parts(rules, &parts, event, 0);
    let rendered = Rendered {
        rules: Arc::clone(rules),
        actions: evaluation
            .matched
            .into_iter()
            .flat_map(|m| {
                let rule = m.rule;
                m.actions.into_iter().map(move |a| (rule.clone(), a))
            })
            .collect(),
    };
    (plan, Some(MatchedWith { parts, rendered }))
}

/// Matches an event and lists the executions of generation `generation` it needs; gives the
/// evaluation too.
fn plan_parts(
    rules: &RuleSet,
    parts: &EventParts,
    event: &NewEvent,
    generation: i32,
) -> (EventPlan, Evaluation) {
    let evaluation = rules.evaluate(&parts.view(event));
    let id = event.id;
    let mut executions = Vec::new();
    for m in &evaluation.matched {
        for a in &m.actions {
            let index = i32::try_from(a.index).unwrap_or(i32::MAX);
            executions.push(NewExecution {
                id: ExecutionId::new(),
                rule_id: m.rule.clone(),
                action_index: index,
                generation,
                plugin: a.plugin.clone(),
                idempotency_key: NewExecution::key_for(id, &m.rule, index, generation),
                order_key: a.order_key.clone(),
                lease: None,
            });
        }
    }
    let plan = EventPlan {
        event: id,
        match_trace: trace_text(&evaluation),
        executions,
    };
    (plan, evaluation)
}

/// `evaluation` as the match trace's JSON text.
fn trace_text(evaluation: &Evaluation) -> Box<RawValue> {
    // Serializing these plain structs cannot fail; `null` (the default) keeps the plan
    // storable if it did.
    serde_json::value::to_raw_value(evaluation).unwrap_or_default()
}

// ---- claiming and running ----------------------------------------------------------------

/// Claimed executions waiting for a worker, with their events when read.
type Claimed = Vec<Queued>;

/// An execution waiting for a worker, with its event when the dispatcher has it.
pub(crate) type Queued = (crate::store::Execution, Option<Arc<KnownEvent>>);

/// An execution's event as the dispatcher has it: read with a claim, or handed over by
/// ingress with the parts its rules read already parsed.
pub(crate) struct KnownEvent {
    pub(crate) stored: StoredEvent,
    pub(crate) parts: Option<EventParts>,
    /// The inputs rendered when ingress matched the event, for the executions it handed over.
    pub(crate) rendered: Option<Rendered>,
}

/// The actions' inputs as rendered when an event was matched. Rendering is a function of the
/// rules and the event alone, so while the rules they came from are still the loaded ones a
/// worker takes them instead of rendering again (about 2% of an event's CPU with one action).
pub(crate) struct Rendered {
    rules: Arc<RuleSet>,
    /// Rule id and action.
    actions: Vec<(String, PlannedAction)>,
}

impl Rendered {
    /// Action `index` of rule `rule_id` as rendered, if `rules` are the rules it came from.
    pub(crate) fn get(
        &self,
        rules: &Arc<RuleSet>,
        rule_id: &str,
        index: usize,
    ) -> Option<&PlannedAction> {
        if !Arc::ptr_eq(&self.rules, rules) {
            return None;
        }
        self.actions
            .iter()
            .find(|(rule, a)| rule == rule_id && a.index == index)
            .map(|(_, a)| a)
    }
}

/// Workers of this node (at least one).
fn workers_of(settings: &DispatchSettings) -> usize {
    settings.workers.max(1) as usize
}

/// Executions that may wait for `workers` at once, claimed or handed over.
fn waiting_places(workers: usize) -> usize {
    workers * CLAIM_AHEAD
}

async fn claim_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let workers = workers_of(&shared.settings);
    let places = waiting_places(workers);
    let slots = Arc::new(Semaphore::new(workers));
    let mut running: JoinSet<()> = JoinSet::new();
    let (hard_stop_tx, hard_stop) = watch::channel(false);
    // What waits for a worker: claimed (the next claim is made while these still run, so the
    // workers do not wait for its commit: claiming overlaps running), and handed over by
    // ingress as it stored them.
    let waiting = shared.wake.handoff.clone();
    let mut claiming: Option<tokio::task::JoinHandle<Result<Claimed, crate::store::StoreError>>> =
        None;
    // After a claim found nothing (or failed): no new claim before this, unless woken.
    let mut idle_until: Option<tokio::time::Instant> = None;

    while !*stop.borrow() {
        while running.try_join_next().is_some() {}
        let due = idle_until.is_none_or(|t| tokio::time::Instant::now() >= t);
        // Claim a batch ahead once a worker's share of the places is free, and at least a
        // worker's worth once nothing claimed waits: arrivals handed over must not keep
        // retries and ordered work from being claimed.
        let (used, claimed) = waiting.waiting();
        if claiming.is_none() && due && (claimed == 0 || used + workers < places) {
            let want = places.saturating_sub(used).max(workers);
            let shared = shared.clone();
            claiming = Some(tokio::spawn(
                async move { claim_batch(&shared, want).await },
            ));
        }
        tokio::select! {
            permit = slots.clone().acquire_owned(), if !waiting.is_empty() => {
                // A worker is free before anything is taken: nothing taken is ever dropped.
                let Ok(permit) = permit else {
                    continue;
                };
                let Some(((execution, event), origin)) = waiting.take() else {
                    continue;
                };
                if origin == Origin::Handed {
                    shared.wake.backlog.claimed(1);
                }
                if !shared.take_capacity(&execution) {
                    // Claimed with others of a plugin or action now at its limit.
                    release(&shared.store, &shared.owner, &execution).await;
                    continue;
                }
                let slot = Slot {
                    shared: shared.clone(),
                    execution: execution.clone(),
                    _permit: permit,
                };
                let shared = shared.clone();
                let hard_stop = hard_stop.clone();
                running.spawn(async move {
                    run::run_execution(&shared, &execution, event, slot, hard_stop).await;
                });
            }
            claimed = in_flight(&mut claiming), if claiming.is_some() => {
                claiming = None;
                idle_until = take_claim(&shared, claimed).await;
            }
            _ = shared.wake.work.notified() => {
                // New or freed work: claim again without waiting out the pause.
                idle_until = None;
            }
            _ = waiting.arrived() => {}
            _ = sleep_until(idle_until), if idle_until.is_some() && claiming.is_none() => {
                idle_until = None;
            }
            _ = running.join_next(), if !running.is_empty() => {}
            _ = stop.changed() => {}
        }
    }

    stop_claiming(&shared, claiming, waiting.close()).await;
    drain(running, hard_stop_tx).await;
}

/// Queues what a finished claim brought. Returns until when not to claim again (unless woken):
/// after a claim that found nothing, until the next execution is due; after a failure, a
/// pause.
async fn take_claim(
    shared: &Shared,
    claimed: Result<Result<Claimed, crate::store::StoreError>, tokio::task::JoinError>,
) -> Option<tokio::time::Instant> {
    match claimed {
        Ok(Ok(claimed)) if claimed.is_empty() => {
            Some(tokio::time::Instant::now() + idle_pause(shared).await)
        }
        Ok(Ok(claimed)) => {
            shared.wake.handoff.claimed(claimed);
            None
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "claiming executions failed; retrying");
            Some(tokio::time::Instant::now() + ERROR_PAUSE)
        }
        Err(e) => {
            tracing::error!(error = %e, "the claim task failed; retrying");
            Some(tokio::time::Instant::now() + ERROR_PAUSE)
        }
    }
}

/// Stopping: what was claimed but not started goes back unclaimed.
async fn stop_claiming(
    shared: &Shared,
    claiming: Option<tokio::task::JoinHandle<Result<Claimed, crate::store::StoreError>>>,
    mut waiting: Vec<Queued>,
) {
    if let Some(claim) = claiming
        && let Ok(Ok(claimed)) = claim.await
    {
        waiting.extend(claimed);
    }
    for (execution, _) in waiting {
        release(&shared.store, &shared.owner, &execution).await;
    }
}

/// Shutdown: no more claims. Running actions get a grace period, then are stopped and given
/// back (their attempt is not counted).
async fn drain(mut running: JoinSet<()>, hard_stop: watch::Sender<bool>) {
    if running.is_empty() {
        return;
    }
    tracing::info!(
        running = running.len(),
        "waiting for running actions to finish"
    );
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let _ = hard_stop.send(true);
        while running.join_next().await.is_some() {}
    }
}

/// Claims up to `want` executions and reads their events.
async fn claim_batch(shared: &Shared, want: usize) -> Result<Claimed, crate::store::StoreError> {
    let busy = shared.exclusions();
    let claimed = shared
        .store
        .claim(
            &shared.owner,
            want as i64,
            shared.settings.lease,
            Millis::now(),
            &busy,
        )
        .await?;
    let first_runs = claimed
        .iter()
        .filter(|x| x.attempts == 1 && x.generation == 0)
        .count();
    shared.wake.backlog.claimed(first_runs);
    let events = events_of(shared, &claimed).await;
    Ok(claimed
        .into_iter()
        .map(|x| {
            let event = events.get(&x.event_id).cloned();
            (x, event)
        })
        .collect())
}

/// How long to wait before claiming again after a claim found nothing: until the next
/// execution is due, at most [`IDLE_POLL`]. A wake (new or freed work) cuts it short.
async fn idle_pause(shared: &Shared) -> Duration {
    match shared.store.next_due().await {
        Ok(Some(at)) if at.0 > Millis::now().0 => {
            Duration::from_millis((at.0 - Millis::now().0).max(1) as u64).min(IDLE_POLL)
        }
        // Due now but not claimable: waiting on an order key or a concurrency limit, which
        // a finishing execution (a wake) frees.
        _ => IDLE_POLL,
    }
}

/// The result of the claim in flight (never, when there is none; callers guard on it).
async fn in_flight<T>(
    task: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at` (forever when None; callers guard on it).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The events of claimed executions, read at once for the whole claim. A failed read leaves
/// the map empty: each execution then reads its event itself.
async fn events_of(
    shared: &Shared,
    claimed: &[crate::store::Execution],
) -> HashMap<crate::model::EventId, Arc<KnownEvent>> {
    let mut ids: Vec<_> = claimed.iter().map(|x| x.event_id).collect();
    ids.sort_unstable_by_key(|id| id.0);
    ids.dedup();
    match shared.store.events_to_run(&ids).await {
        Ok(events) => events
            .into_iter()
            .map(|stored| {
                let id = stored.event.id;
                let known = KnownEvent {
                    stored,
                    parts: None,
                    rendered: None,
                };
                (id, Arc::new(known))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the events of claimed executions failed");
            HashMap::new()
        }
    }
}

async fn release(store: &Store, owner: &str, x: &crate::store::Execution) {
    if let Err(e) = store.release(x.id, owner).await {
        tracing::warn!(execution = %x.id, error = %e, "release failed");
    }
}

/// A worker slot, and the concurrency an execution counts against its plugin and action. Given
/// back when dropped: as soon as the plugin call is over, before its attempt is recorded, so
/// the next execution need not wait for that commit.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    execution: crate::store::Execution,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.give_back_capacity(&self.execution);
        self.shared.wake.work();
    }
}

impl Shared {
    /// Plugins and actions at their concurrency limit right now on this node, and on a store
    /// nodes share, every limit, which the claim counts over all of them.
    fn exclusions(&self) -> ClaimExclusions {
        let rules = self.rules.current();
        let mut out = ClaimExclusions::default();
        if self.store.is_shared() {
            out.shared = self.shared_limits(&rules);
        }
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // Compiling in the background, or failed to load: its actions wait.
        out.plugins
            .extend(self.plugins.not_ready().map(str::to_string));
        for (plugin, limit) in self.plugins.limited() {
            if running.plugins.get(plugin).copied().unwrap_or(0) >= limit {
                out.plugins.push(plugin.to_string());
            }
        }
        for ((rule, index), n) in &running.actions {
            let limit = rules
                .get(rule)
                .and_then(|r| r.actions().get(*index as usize))
                .and_then(|a| a.concurrency());
            if limit.is_some_and(|limit| *n >= limit) {
                out.actions.push((rule.clone(), *index));
            }
        }
        out
    }

    /// [`shared_limits`] of `rules`, made once per rule set.
    fn shared_limits(&self, rules: &Arc<RuleSet>) -> Vec<SharedLimit> {
        let mut cached = self.shared_limits.lock().unwrap_or_else(|p| p.into_inner());
        match cached.as_ref() {
            Some((made_from, limits)) if Arc::ptr_eq(made_from, rules) => limits.clone(),
            _ => {
                let limits = shared_limits(&self.plugins, rules);
                *cached = Some((Arc::clone(rules), limits.clone()));
                limits
            }
        }
    }

    /// Counts an execution as running here, unless its plugin or action is at its limit.
    fn take_capacity(&self, x: &crate::store::Execution) -> bool {
        let rules = self.rules.current();
        let action_limit = rules
            .get(&x.rule_id)
            .and_then(|r| r.actions().get(x.action_index as usize))
            .and_then(|a| a.concurrency());
        let plugin_limit = self.plugins.concurrency(&x.plugin);
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let key = (x.rule_id.clone(), x.action_index);
        let p = running.plugins.get(&x.plugin).copied().unwrap_or(0);
        let a = running.actions.get(&key).copied().unwrap_or(0);
        if plugin_limit.is_some_and(|l| p >= l) || action_limit.is_some_and(|l| a >= l) {
            return false;
        }
        *running.plugins.entry(x.plugin.clone()).or_default() += 1;
        *running.actions.entry(key).or_default() += 1;
        true
    }

    fn give_back_capacity(&self, x: &crate::store::Execution) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.plugins.get_mut(&x.plugin) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = running
            .actions
            .get_mut(&(x.rule_id.clone(), x.action_index))
        {
            *n = n.saturating_sub(1);
        }
    }
}

/// Every plugin's and action's concurrency limit, as limits shared by the nodes.
fn shared_limits(plugins: &Registry, rules: &RuleSet) -> Vec<SharedLimit> {
    let plugins = plugins.limited().map(|(plugin, limit)| SharedLimit {
        scope: LimitScope::Plugin(plugin.to_string()),
        limit,
    });
    let actions = rules.rules().flat_map(|rule| {
        rule.actions()
            .iter()
            .enumerate()
            .filter_map(|(index, action)| {
                Some(SharedLimit {
                    scope: LimitScope::Action(rule.id().to_string(), i32::try_from(index).ok()?),
                    limit: action.concurrency()?,
                })
            })
    });
    plugins.chain(actions).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Backlog, PlannedAction, Rendered, RuleSet, commit_counted};

    /// An input rendered at arrival serves only its own action, and only while the rules it
    /// was rendered with are the loaded ones: after a reload the worker renders again.
    #[test]
    fn rendered_inputs_serve_only_their_action_under_their_rules() {
        let rules = Arc::new(RuleSet::empty());
        let action = |index| PlannedAction {
            plugin: "notify".into(),
            index,
            input: serde_json::json!({ "n": index }),
            input_redacted: serde_json::json!({ "n": index }),
            retry: Default::default(),
            timeout: None,
            order_key: None,
            concurrency: None,
        };
        let rendered = Rendered {
            rules: Arc::clone(&rules),
            actions: vec![("a".into(), action(0)), ("a".into(), action(1))],
        };
        let found = rendered.get(&rules, "a", 1).expect("rendered");
        assert_eq!(found.input, serde_json::json!({ "n": 1 }));
        assert!(rendered.get(&rules, "a", 2).is_none(), "no such action");
        assert!(rendered.get(&rules, "b", 0).is_none(), "no such rule");
        let reloaded = Arc::new(RuleSet::empty());
        assert!(rendered.get(&reloaded, "a", 0).is_none(), "other rules");
    }

    /// The count holds the planned executions while the commit runs (a claim in that window
    /// must not find the backlog short), and keeps only what the commit stored.
    #[tokio::test]
    async fn the_backlog_counts_before_the_commit_and_keeps_only_what_it_stored() {
        let backlog = Backlog::default();
        let stored = commit_counted(
            &backlog,
            3,
            async {
                assert_eq!(backlog.unclaimed(), 3, "counted before the commit");
                Ok::<usize, ()>(1)
            },
            |n| *n,
        )
        .await;
        assert_eq!(stored, Ok(1));
        assert_eq!(backlog.unclaimed(), 1);

        // A duplicate delivery stores none of its plan; a failed commit stores nothing.
        let duplicate = commit_counted(&backlog, 2, async { Ok::<usize, ()>(0) }, |n| *n).await;
        assert_eq!(duplicate, Ok(0));
        let failed = commit_counted(&backlog, 4, async { Err::<usize, ()>(()) }, |n| *n).await;
        assert_eq!(failed, Err(()));
        assert_eq!(backlog.unclaimed(), 1);
    }
}
