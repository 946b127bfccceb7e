//! Retention: events and delivery attempts older than the configured ages are deleted in the
//! background, in small batches with a pause between them, so ingest (which needs the same
//! write lock on SQLite) never waits behind a long delete. The per-minute activity counts
//! behind the dashboard are kept for [`crate::store::ACTIVITY_KEEP`] whatever the settings.

use std::time::Duration;

use tokio::sync::watch;

use crate::config::RetentionSettings;
use crate::model::Millis;
use crate::store::{ACTIVITY_KEEP, Store, StoreError};

/// Rows deleted per transaction: small enough that a concurrent commit waits milliseconds.
pub const BATCH: i64 = 500;
/// Pause between two batches, so other writers get the lock in between.
pub const PAUSE: Duration = Duration::from_millis(50);
/// How often the pruner wakes when it has caught up.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// Back-off after a store error.
const ERROR_PAUSE: Duration = Duration::from_secs(10);

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub events: u64,
    pub delivery_attempts: u64,
    /// Per-minute activity rows.
    pub activity: u64,
}

/// Deletes everything older than `settings` allows at `now`, batch by batch, pausing `pause`
/// between batches. Stops early (with what it did so far) when `stop` turns true.
pub async fn prune(
    store: &Store,
    settings: &RetentionSettings,
    now: Millis,
    pause: Duration,
    stop: &watch::Receiver<bool>,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    let cutoff = |age: Duration| Millis(now.0.saturating_sub(millis(age)));
    if let Some(age) = settings.events {
        let cutoff = cutoff(age);
        while !*stop.borrow() {
            let n = store.prune_events(cutoff, BATCH).await?;
            pruned.events += n;
            if n < BATCH as u64 {
                break;
            }
            tokio::time::sleep(pause).await;
        }
    }
    if let Some(age) = settings.delivery_attempts {
        let cutoff = cutoff(age);
        while !*stop.borrow() {
            let n = store.prune_delivery_attempts(cutoff, BATCH).await?;
            pruned.delivery_attempts += n;
            if n < BATCH as u64 {
                break;
            }
            tokio::time::sleep(pause).await;
        }
    }
    if !*stop.borrow() {
        pruned.activity = store.prune_activity(cutoff(ACTIVITY_KEEP)).await?;
    }
    Ok(pruned)
}

/// Prunes now and then every [`INTERVAL`] until `stop` turns true.
pub async fn run(store: Store, settings: RetentionSettings, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let wait = match prune(&store, &settings, Millis::now(), PAUSE, &stop).await {
            Ok(p) => {
                if p.events > 0 || p.delivery_attempts > 0 {
                    tracing::info!(
                        events = p.events,
                        delivery_attempts = p.delivery_attempts,
                        "retention: pruned old history"
                    );
                }
                INTERVAL
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention: pruning failed; will retry");
                ERROR_PAUSE
            }
        };
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
