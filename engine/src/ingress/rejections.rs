//! How refused requests are recorded under a flood. The first `per_second` refused requests of
//! a source in each second are recorded one by one, headers and all; the rest of that second
//! are counted, and one summary record per source and second says how many there were and
//! how the first of them was refused.
//!
//! A sender without the secret can send as fast as the network allows. Without this bound each
//! of its requests would be a row written and a line logged, so a flood of bad signatures
//! would cost disk, log space and write capacity that verified events need; with it, a flood
//! costs the signature check and a counter. The history still accounts for every request.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::{DeliveryAttemptId, Millis};
use crate::store::NewDeliveryAttempt;

/// Refused requests of one source in one second.
struct Window {
    second: i64,
    recorded: u32,
    counted: u64,
    /// The first counted request, as the summary describes it.
    first: Option<NewDeliveryAttempt>,
}

impl Window {
    fn summary(&mut self, per_second: u32) -> Option<NewDeliveryAttempt> {
        let mut first = self.first.take()?;
        let counted = std::mem::take(&mut self.counted);
        first.id = DeliveryAttemptId::new();
        first.reason = Some(format!(
            "{counted} more refused request{} in this second, counted here rather than recorded \
             one by one (more than {per_second} a second); the first of them: {}",
            if counted == 1 { "" } else { "s" },
            first.reason.as_deref().unwrap_or("no reason given")
        ));
        Some(first)
    }
}

/// Decides which refused requests are recorded one by one. Keys are bounded by the caller
/// (configured source ids, and one key for every unknown source).
pub struct Rejections {
    per_second: u32,
    windows: Mutex<HashMap<String, Window>>,
}

/// What to write for one refused request.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Whether the request gets a record of its own.
    pub record: bool,
    /// The summary of an earlier second of the same key, now complete.
    pub summary: Option<NewDeliveryAttempt>,
}

impl Rejections {
    pub fn new(per_second: u32) -> Rejections {
        Rejections {
            per_second,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a refused request of `key` received at `at`. `describe` is called (once a second
    /// at most) for the first request counted rather than recorded: the summary shows it.
    pub fn admit(
        &self,
        key: &str,
        at: Millis,
        describe: impl FnOnce() -> NewDeliveryAttempt,
    ) -> Admitted {
        let second = at.0.div_euclid(1000);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        // One lookup on the hot path: the key is only copied the first time it is seen.
        let window = match windows.get_mut(key) {
            Some(window) => window,
            None => windows.entry(key.to_string()).or_insert(Window {
                second,
                recorded: 0,
                counted: 0,
                first: None,
            }),
        };
        let mut admitted = Admitted::default();
        if window.second != second {
            admitted.summary = window.summary(self.per_second);
            window.second = second;
            window.recorded = 0;
        }
        if window.recorded < self.per_second {
            window.recorded += 1;
            admitted.record = true;
        } else {
            window.counted += 1;
            if window.first.is_none() {
                window.first = Some(describe());
            }
        }
        admitted
    }

    /// Summaries of the seconds that ended before `now` (all of them when `now` is None, at
    /// shutdown).
    pub fn ended(&self, now: Option<Millis>) -> Vec<NewDeliveryAttempt> {
        let current = now.map(|n| n.0.div_euclid(1000));
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        windows.retain(|_, w| {
            if current.is_some_and(|c| w.second >= c) {
                return true;
            }
            out.extend(w.summary(self.per_second));
            // A quiet source's window goes; it comes back with its next refused request.
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Verdict;

    fn refused(at: i64, reason: &str) -> NewDeliveryAttempt {
        NewDeliveryAttempt {
            id: DeliveryAttemptId::new(),
            source: "gh".into(),
            received_at: Millis(at),
            remote_addr: Some("203.0.113.9".into()),
            method: "POST".into(),
            path: "/hooks/gh".into(),
            headers: serde_json::json!({}),
            body: None,
            body_size: 10,
            verdict: Verdict::Rejected,
            status: 401,
            reason: Some(reason.into()),
        }
    }

    #[test]
    fn records_the_first_per_second_and_counts_the_rest_into_one_summary() {
        let r = Rejections::new(3);
        let base = 1_700_000_000_000;
        let mut recorded = 0;
        let mut described = 0;
        for i in 0..10 {
            let a = r.admit("gh", Millis(base + i), || {
                described += 1;
                refused(base + i, &format!("bad {i}"))
            });
            recorded += usize::from(a.record);
            assert!(a.summary.is_none());
        }
        assert_eq!(recorded, 3);
        assert_eq!(described, 1, "only the first counted request is described");
        // Another source has its own budget.
        assert!(r.admit("other", Millis(base), || refused(base, "x")).record);
        // The next second: recorded again, and the summary of the one before comes out.
        let next = r.admit("gh", Millis(base + 1000), || refused(base + 1000, "next"));
        assert!(next.record);
        let summary = next.summary.expect("summary of the first second");
        let reason = summary.reason.unwrap();
        assert!(reason.starts_with("7 more refused requests"), "{reason}");
        assert!(reason.ends_with("the first of them: bad 3"), "{reason}");
        assert_eq!(summary.status, 401);
        // Nothing was counted in the second still running; at shutdown nothing is left over.
        assert!(r.ended(None).is_empty());
    }

    #[test]
    fn ended_seconds_are_summarised_by_the_ticker_and_at_shutdown() {
        let r = Rejections::new(0);
        let base = 1_700_000_000_000;
        for i in 0..5 {
            assert!(
                !r.admit("gh", Millis(base + i), || refused(base + i, "bad"))
                    .record
            );
        }
        assert!(
            r.ended(Some(Millis(base + 500))).is_empty(),
            "still running"
        );
        let ended = r.ended(Some(Millis(base + 1000)));
        assert_eq!(ended.len(), 1);
        assert!(ended[0].reason.as_deref().unwrap().starts_with("5 more"));
        assert!(r.ended(None).is_empty());
        r.admit("gh", Millis(base + 2000), || refused(base + 2000, "bad"));
        assert_eq!(
            r.ended(None).len(),
            1,
            "shutdown takes the running second too"
        );
    }
}
