//! Backpressure from dispatch to ingress. Ingress and the workers share the same cores; when
//! events arrive faster than their actions run, the backlog would grow for as long as the burst
//! lasts. So an arriving event that matches rules waits, briefly and with a bound, while this
//! node already has more than `dispatch.backlog_limit` planned executions that no worker has
//! claimed yet. Events are never refused for it, and a wait never exceeds
//! `dispatch.backlog_wait`, far below any provider's delivery time-out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// First attempts planned on this node and not yet claimed, with the limit ingress waits at.
#[derive(Debug)]
pub struct Backlog {
    unclaimed: AtomicU64,
    limit: u64,
    max_wait: Duration,
    shrunk: Notify,
}

impl Default for Backlog {
    fn default() -> Self {
        let d = crate::config::DispatchSettings::default();
        Backlog::new(d.backlog_limit, d.backlog_wait)
    }
}

impl Backlog {
    /// A backlog that makes arrivals wait above `limit` (0: never), each at most `max_wait`.
    pub fn new(limit: u32, max_wait: Duration) -> Backlog {
        Backlog {
            unclaimed: AtomicU64::new(0),
            limit: u64::from(limit),
            max_wait,
            shrunk: Notify::new(),
        }
    }

    /// Executions planned and committed, not yet claimed.
    pub fn planned(&self, n: usize) {
        self.unclaimed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// First attempts claimed by a worker. Saturates at zero: a node also claims executions
    /// it did not plan (another node's, or ones planned before a restart).
    pub fn claimed(&self, n: usize) {
        self.shrink(n);
    }

    /// Executions counted by [`Backlog::planned`] that were not stored after all (a duplicate
    /// delivery, a failed commit).
    pub fn withdrawn(&self, n: usize) {
        self.shrink(n);
    }

    fn shrink(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self
            .unclaimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n as u64))
            })
            .unwrap_or(0);
        if before.saturating_sub(n as u64) < self.limit {
            self.shrunk.notify_waiters();
        }
    }

    /// Executions planned on this node that no worker has claimed yet.
    pub fn unclaimed(&self) -> u64 {
        self.unclaimed.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.limit > 0 && self.unclaimed() >= self.limit
    }

    /// Waits while the backlog is at or over its limit, at most `max_wait`. Returns how long
    /// it waited (zero when the backlog was under the limit).
    pub async fn admit(&self) -> Duration {
        if !self.over() {
            return Duration::ZERO;
        }
        let started = Instant::now();
        let deadline = started + self.max_wait;
        loop {
            let shrunk = self.shrunk.notified();
            tokio::pin!(shrunk);
            // Registered before the check, so a claim between the check and the wait wakes it.
            shrunk.as_mut().enable();
            if !self.over() {
                break;
            }
            if tokio::time::timeout_at(deadline, shrunk).await.is_err() {
                break;
            }
        }
        started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn under_the_limit_nothing_waits() {
        let b = Backlog::new(10, Duration::from_secs(60));
        b.planned(9);
        assert_eq!(b.admit().await, Duration::ZERO);
    }

    #[tokio::test]
    async fn a_zero_limit_never_waits() {
        let b = Backlog::new(0, Duration::from_secs(60));
        b.planned(1_000_000);
        assert_eq!(b.admit().await, Duration::ZERO);
    }

    #[tokio::test]
    async fn over_the_limit_an_arrival_waits_the_bound_then_goes_on() {
        let b = Backlog::new(10, Duration::from_millis(50));
        b.planned(10);
        let waited = b.admit().await;
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert_eq!(b.unclaimed(), 10);
    }

    #[tokio::test]
    async fn a_claim_that_brings_the_backlog_under_the_limit_lets_arrivals_in() {
        let b = Arc::new(Backlog::new(10, Duration::from_secs(600)));
        b.planned(12);
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.admit().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.claimed(2);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "still at the limit");
        b.claimed(1);
        // Long before the 600 s bound: the claim woke it.
        let waited = tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("woken by the claim")
            .unwrap();
        assert!(waited >= Duration::from_millis(40), "{waited:?}");
    }

    #[test]
    fn claims_of_work_planned_elsewhere_saturate_at_zero() {
        let b = Backlog::new(10, Duration::from_secs(1));
        b.planned(3);
        b.claimed(5);
        assert_eq!(b.unclaimed(), 0);
        b.planned(1);
        assert_eq!(b.unclaimed(), 1);
    }
}
