//! What the handlers of both listeners share: the config, the store, the rules, the dispatcher's
//! wake-ups, the metrics and the scrubber. The lowest layer of the server: the listeners'
//! modules (`ingress`, `admin`, `health`) import it, and it imports none of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::config::Config;
use crate::dispatch::{Intake, Wake};
use crate::metrics::Metrics;
use crate::own_events::{Emitter, OwnEvent};
use crate::rules::LiveRules;
use crate::scrub::Scrubber;
use crate::store::Store;

/// What every handler shares. Cheap to clone: one reference count per request, not one per
/// part.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

/// The parts of [`AppState`].
pub struct AppParts {
    pub config: Arc<Config>,
    pub store: Store,
    /// Tells the dispatcher that events were stored.
    pub wake: Wake,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The rules, when events are matched as they arrive (`serve`); without them events are
    /// stored unmatched and the dispatcher matches them.
    pub rules: Option<LiveRules>,
    /// Replaces secret values in what is recorded, logged and answered.
    pub scrubber: Arc<Scrubber>,
    /// Where conditions worth one of hookwise's own events are reported.
    pub own_events: Emitter,
    /// The queue of those events, until the task that stores them takes it.
    own_queue: Mutex<Option<mpsc::Receiver<OwnEvent>>>,
    shutting_down: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl AppState {
    /// The state of a server on `store`; with `rules`, events are matched as they arrive.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        rules: Option<LiveRules>,
        scrubber: Arc<Scrubber>,
    ) -> AppState {
        let wake = Wake::new(&config.dispatch);
        let metrics = Arc::new(Metrics::default());
        let (own_events, own_queue) =
            Emitter::new(config.own_events, crate::own_events::QUEUE, metrics.clone());
        AppState(Arc::new(AppParts {
            rules,
            scrubber,
            config,
            store,
            wake,
            metrics,
            own_events,
            own_queue: Mutex::new(Some(own_queue)),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// The queue of hookwise's own events, for the one task that stores them (None once
    /// taken).
    pub fn take_own_queue(&self) -> Option<mpsc::Receiver<OwnEvent>> {
        self.own_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Where arriving events are stored, matched and planned.
    pub fn intake(&self) -> Intake<'_> {
        Intake {
            store: &self.store,
            config: &self.config,
            rules: self.rules.as_ref(),
            wake: &self.wake,
            metrics: &self.metrics,
        }
    }

    /// Whether shutdown began: readiness then answers 503 so load balancers stop sending.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Marks the start of shutdown (see [`AppState::is_shutting_down`]).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }
}
