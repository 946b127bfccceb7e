//! The executions waiting for this node's workers: those its dispatcher claimed, and those
//! ingress handed straight over as it stored their event.
//!
//! An event that arrives matched is stored with its executions in one transaction. Those the
//! node can run at once (no order key to wait on, no concurrency limit to count, the plugin
//! loaded) are stored leased to this node, with their first attempt started, exactly as a
//! claim would leave them, and handed here with the event they run on after the commit. A
//! worker takes them from here, so they need neither the claim's transaction nor a read of
//! their event: each costs one write to plan and one to record, instead of four round trips
//! through the store.
//!
//! Nothing is lost by it: what is handed here is committed first, and a crash (or an
//! execution dropped on the way) leaves a lease that runs out and is claimed again, as for
//! any claimed execution. Claimed and handed executions share one budget of `capacity`
//! places (handed ones are reserved before their commit), so a node holds no more leased work
//! than a claim alone would leave it: that much is what the other nodes must take over when
//! it dies. When there is no room, an arrival plans its executions for a claim, as before.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::{KnownEvent, Queued};
use crate::model::{ExecutionStatus, Millis};
use crate::plugin_host::Registry;
use crate::rules::RuleSet;
use crate::store::{Execution, Lease, NewExecution};

/// Where a waiting execution came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Claimed,
    Handed,
}

/// The executions waiting for the workers of one node. Closed (taking nothing) until a
/// dispatcher opens it.
#[derive(Default)]
pub struct Handoff {
    inner: Mutex<Inner>,
    /// Signalled when executions are handed.
    arrived: Notify,
}

#[derive(Default)]
struct Inner {
    taker: Option<Taker>,
    /// Places promised to arrivals whose commit is under way.
    reserved: usize,
    /// Claimed by this node's dispatcher: they waited in the store (a retry, an arrival there
    /// was no room for here) and go first.
    claimed: VecDeque<Queued>,
    /// Handed over by ingress.
    handed: VecDeque<Queued>,
}

impl Inner {
    /// Places taken or promised.
    fn used(&self) -> usize {
        self.reserved + self.claimed.len() + self.handed.len()
    }
}

/// The dispatcher taking handed executions.
struct Taker {
    owner: String,
    lease: Duration,
    capacity: usize,
    plugins: Registry,
}

/// Places reserved for the executions of one arrival; given back when dropped undelivered.
pub(crate) struct Reservation {
    handoff: Arc<Handoff>,
    places: usize,
    lease: Lease,
    /// The executions leased, as planned.
    executions: Vec<NewExecution>,
}

impl Handoff {
    /// Starts taking executions for `owner`, who runs `plugins`, leased for `lease` (renewed
    /// by the worker once it runs), at most `capacity` handed ones waiting with the claimed.
    pub(crate) fn open(&self, owner: &str, lease: Duration, capacity: usize, plugins: Registry) {
        let mut inner = self.lock();
        inner.taker = Some(Taker {
            owner: owner.to_string(),
            lease,
            capacity,
            plugins,
        });
    }

    /// Stops taking executions; returns those that were waiting, to give back.
    pub(crate) fn close(&self) -> Vec<Queued> {
        let mut inner = self.lock();
        inner.taker = None;
        let Inner {
            claimed, handed, ..
        } = &mut *inner;
        claimed.drain(..).chain(handed.drain(..)).collect()
    }

    /// Queues what the dispatcher claimed, ahead of what was handed.
    pub(crate) fn claimed(&self, claimed: Vec<Queued>) {
        self.lock().claimed.extend(claimed);
    }

    /// The next execution to run, claimed ones first, and where it came from.
    pub(crate) fn take(&self) -> Option<(Queued, Origin)> {
        let mut inner = self.lock();
        if let Some(next) = inner.claimed.pop_front() {
            return Some((next, Origin::Claimed));
        }
        inner.handed.pop_front().map(|next| (next, Origin::Handed))
    }

    /// Whether executions are waiting.
    pub(crate) fn is_empty(&self) -> bool {
        let inner = self.lock();
        inner.claimed.is_empty() && inner.handed.is_empty()
    }

    /// How many executions wait (or are promised to arrivals) in all, and how many of them
    /// were claimed.
    pub(crate) fn waiting(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.used(), inner.claimed.len())
    }

    /// Resolves when executions are handed (or were, since the last wait).
    pub(crate) async fn arrived(&self) {
        self.arrived.notified().await
    }

    /// Leases the executions of `executions` this node can run at once for it, if there is
    /// room for them all: each gets the lease, and the reservation holds their places until
    /// [`Reservation::deliver`]. `rules` are the rules they were planned with.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        executions: &mut [NewExecution],
        rules: &RuleSet,
    ) -> Option<Reservation> {
        let mut inner = self.lock();
        let used = inner.used();
        let Inner {
            taker, reserved, ..
        } = &mut *inner;
        let taker = taker.as_ref()?;
        let runnable = |x: &NewExecution| {
            x.order_key.is_none()
                && taker.plugins.concurrency(&x.plugin).is_none()
                && taker.plugins.is_ready(&x.plugin)
                && rules
                    .get(&x.rule_id)
                    .and_then(|r| r.actions().get(usize::try_from(x.action_index).ok()?))
                    .is_some_and(|a| a.concurrency().is_none())
        };
        let places = executions.iter().filter(|x| runnable(x)).count();
        if places == 0 || used + places > taker.capacity {
            return None;
        }
        let lease = Lease {
            owner: taker.owner.clone(),
            until: Millis::now().saturating_add(taker.lease),
        };
        let mut leased = Vec::with_capacity(places);
        for x in executions.iter_mut().filter(|x| runnable(x)) {
            x.lease = Some(lease.clone());
            leased.push(x.clone());
        }
        *reserved += places;
        Some(Reservation {
            handoff: Arc::clone(self),
            places,
            lease,
            executions: leased,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Reservation {
    /// How many executions it leased.
    pub(crate) fn len(&self) -> usize {
        self.executions.len()
    }

    /// The owner of the leases.
    pub(crate) fn owner(&self) -> &str {
        &self.lease.owner
    }

    /// Hands the leased executions, committed with `event`, to the workers. Returns them
    /// instead when the dispatcher has stopped meanwhile, for the caller to give back.
    pub(crate) fn deliver(mut self, event: KnownEvent) -> Result<(), Vec<Execution>> {
        let now = Millis::now();
        let (event_id, seq) = (event.stored.event.id, event.stored.seq);
        let event = Arc::new(event);
        let executions: Vec<Execution> = std::mem::take(&mut self.executions)
            .into_iter()
            .map(|x| Execution {
                id: x.id,
                event_id,
                event_seq: seq,
                rule_id: x.rule_id,
                action_index: x.action_index,
                generation: x.generation,
                plugin: x.plugin,
                idempotency_key: x.idempotency_key,
                order_key: x.order_key,
                status: ExecutionStatus::Running,
                attempts: 1,
                next_attempt_at: now,
                lease_owner: Some(self.lease.owner.clone()),
                lease_until: Some(self.lease.until),
                last_error: None,
                created_at: now,
                updated_at: now,
            })
            .collect();
        {
            let mut inner = self.handoff.lock();
            // The places turn from reserved into handed (or are given up, when closed).
            inner.reserved = inner
                .reserved
                .saturating_sub(std::mem::take(&mut self.places));
            if inner.taker.is_none() {
                return Err(executions);
            }
            inner.handed.extend(
                executions
                    .into_iter()
                    .map(|x| (x, Some(Arc::clone(&event)))),
            );
        }
        self.handoff.arrived.notify_one();
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.places > 0 {
            let mut inner = self.handoff.lock();
            inner.reserved = inner.reserved.saturating_sub(self.places);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventId, ExecutionId};

    fn claimed(attempts: i32) -> Queued {
        let now = Millis::now();
        let x = Execution {
            id: ExecutionId::new(),
            event_id: EventId::new(),
            event_seq: 1,
            rule_id: "r".into(),
            action_index: 0,
            generation: 0,
            plugin: "p".into(),
            idempotency_key: "k".into(),
            order_key: None,
            status: ExecutionStatus::Running,
            attempts,
            next_attempt_at: now,
            lease_owner: Some("me".into()),
            lease_until: Some(now),
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        (x, None)
    }

    #[test]
    fn a_closed_handoff_hands_nothing_over_and_gives_back_what_was_claimed() {
        let handoff = Handoff::default();
        assert!(handoff.take().is_none());
        assert!(handoff.is_empty());
        assert!(handoff.close().is_empty());

        // Without a taker, arrivals reserve nothing: they wait for a claim.
        let mut planned = Vec::new();
        assert!(
            Arc::new(Handoff::default())
                .reserve(&mut planned, &RuleSet::empty())
                .is_none()
        );

        handoff.claimed(vec![claimed(1), claimed(2)]);
        assert_eq!(handoff.waiting(), (2, 2));
        let (first, origin) = handoff.take().unwrap();
        assert_eq!((first.0.attempts, origin), (1, Origin::Claimed));
        assert_eq!(handoff.waiting(), (1, 1));
        let back = handoff.close();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0.attempts, 2);
        assert!(handoff.is_empty());
    }
}
