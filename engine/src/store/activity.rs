//! Per-minute activity counts: what the overview and the plugins page show, kept as it happens
//! so that reading a day costs the same with ten events or ten million.
//!
//! Every write batch tallies what it stored (deliveries by verdict, refusals by reason, new
//! events, planned executions, finished plugin calls by outcome and duration, dead letters)
//! into one row per (minute, kind, subject, label) and adds it to the `activity` table in the
//! same transaction, so a count never disagrees with the rows it counts. Counting the rows
//! themselves instead cost 4.5-11.6 s per overview with a million events in the last day.

use std::collections::HashMap;

use super::records::{NewDeliveryAttempt, NewEvent, NewExecutionAttempt, NextStep};
use crate::model::{AttemptOutcome, Millis, Verdict};

const MINUTE_MS: i64 = 60_000;

/// Characters of a refusal reason kept as its label (the backfill in the migrations cuts the
/// same way, with `substr`).
pub(crate) const REASON_CHARS: usize = 200;

/// How long activity rows are kept: the overview shows a day; a week more lets an operator
/// look back after a weekend.
pub const KEEP: std::time::Duration = std::time::Duration::from_secs(8 * 24 * 3600);

/// Upper bounds (ms) of the plugin call duration histogram; a last bucket takes the rest.
/// Roughly 1-1.5-2-3-5-7 per decade, so an interpolated percentile is off by at most half a
/// step. The migrations' backfill uses the same bounds.
pub const CALL_MS_BOUNDS: [i64; 31] = [
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1_000, 1_500, 2_000,
    3_000, 5_000, 7_000, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 300_000, 600_000,
];
/// The label of the bucket above every bound.
const CALL_MS_REST: &str = "inf";

/// The shard this process adds its counts under on PostgreSQL, where several nodes write at
/// once: drawn at random once per process, so two nodes almost never share a row (and if
/// they do, they only wait for each other). SQLite has one writer and uses shard 0.
pub(crate) fn node_shard() -> i32 {
    static SHARD: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *SHARD.get_or_init(|| {
        // The random low bits of a v7 id, 1..=1_000_000: never 0, the shard of counts the
        // migration made.
        (uuid::Uuid::now_v7().as_u128() % 1_000_000) as i32 + 1
    })
}

/// What a row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Delivery attempts of a source (subject) by verdict (label).
    Delivery,
    /// Refused attempts of a source by reason.
    Refusal,
    /// Events stored (duplicates are not) of a source; label empty.
    Event,
    /// Executions of a plugin: label `planned` or `dead` (made a dead letter).
    Execution,
    /// Finished calls of a plugin by attempt outcome.
    Call,
    /// Finished calls of a plugin by duration bucket (label: upper bound in ms, or `inf`).
    CallMs,
}

impl Kind {
    pub(crate) const ALL: [Kind; 6] = [
        Kind::Delivery,
        Kind::Refusal,
        Kind::Event,
        Kind::Execution,
        Kind::Call,
        Kind::CallMs,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Delivery => "delivery",
            Kind::Refusal => "refusal",
            Kind::Event => "event",
            Kind::Execution => "execution",
            Kind::Call => "call",
            Kind::CallMs => "call_ms",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "delivery" => Kind::Delivery,
            "refusal" => Kind::Refusal,
            "event" => Kind::Event,
            "execution" => Kind::Execution,
            "call" => Kind::Call,
            "call_ms" => Kind::CallMs,
            _ => return None,
        })
    }
}

/// Labels of [`Kind::Execution`].
pub(crate) const PLANNED: &str = "planned";
pub(crate) const DEAD: &str = "dead";

/// One row to add: `count` more of `kind` for `subject` and `label` in `minute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub minute: i64,
    pub kind: Kind,
    pub subject: String,
    pub label: String,
    pub count: i64,
}

/// The counts of one write batch, summed per row key.
#[derive(Debug, Default)]
pub(crate) struct Tally(HashMap<(i64, Kind, String, String), i64>);

impl Tally {
    fn add(&mut self, at: Millis, kind: Kind, subject: &str, label: &str) {
        let key = (minute_of(at), kind, subject.to_string(), label.to_string());
        *self.0.entry(key).or_insert(0) += 1;
    }

    /// A delivery attempt recorded with `verdict` (the store's, for an ingest). hookwise's own
    /// events came over no HTTP request: their records are not counted as deliveries (their
    /// events are). A request posted to `/hooks/hookwise` from outside is refused, and counted.
    pub(crate) fn delivery(&mut self, a: &NewDeliveryAttempt, verdict: Verdict) {
        if a.source == crate::model::OWN_SOURCE && verdict != Verdict::Rejected {
            return;
        }
        self.add(a.received_at, Kind::Delivery, &a.source, verdict.as_str());
        if verdict == Verdict::Rejected {
            let reason = reason_label(a.reason.as_deref());
            self.add(a.received_at, Kind::Refusal, &a.source, &reason);
        }
    }

    /// An event stored for the first time.
    pub(crate) fn event(&mut self, e: &NewEvent) {
        self.add(e.received_at, Kind::Event, &e.source, "");
    }

    /// An execution of `plugin` planned at `at`.
    pub(crate) fn planned(&mut self, plugin: &str, at: Millis) {
        self.add(at, Kind::Execution, plugin, PLANNED);
    }

    /// A call of `plugin` finished, and where its execution went (`now`: when it was written).
    pub(crate) fn finished(
        &mut self,
        plugin: &str,
        a: &NewExecutionAttempt,
        next: &NextStep,
        now: Millis,
    ) {
        self.add(a.finished_at, Kind::Call, plugin, a.outcome.as_str());
        let ms = a.finished_at.0.saturating_sub(a.started_at.0).max(0);
        self.add(a.finished_at, Kind::CallMs, plugin, &call_ms_label(ms));
        if matches!(next, NextStep::Dead(_)) {
            self.add(now, Kind::Execution, plugin, DEAD);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn rows(&self) -> impl Iterator<Item = Row> + '_ {
        self.0
            .iter()
            .map(|((minute, kind, subject, label), count)| Row {
                minute: *minute,
                kind: *kind,
                subject: subject.clone(),
                label: label.clone(),
                count: *count,
            })
    }
}

/// A refusal reason as counted: the first [`REASON_CHARS`] characters, empty when none.
fn reason_label(reason: Option<&str>) -> String {
    reason.unwrap_or("").chars().take(REASON_CHARS).collect()
}

/// The duration bucket of a call of `ms` milliseconds.
pub(crate) fn call_ms_label(ms: i64) -> String {
    CALL_MS_BOUNDS
        .iter()
        .find(|&&bound| ms <= bound)
        .map_or_else(|| CALL_MS_REST.to_string(), |bound| bound.to_string())
}

/// The minute (of the Unix epoch) that holds `at`.
pub(crate) fn minute_of(at: Millis) -> i64 {
    at.0.div_euclid(MINUTE_MS)
}

/// The minute rows of `[since, until)`: every minute that overlaps it.
pub(crate) fn minutes(since: Millis, until: Millis) -> (i64, i64) {
    (
        minute_of(since),
        minute_of(Millis(until.0.saturating_sub(1))),
    )
}

/// Activity rows as read back, summed over shards and over the minutes of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counted {
    /// Whole bucket lengths since the window's start.
    pub bucket: i64,
    pub kind: String,
    pub subject: String,
    pub label: String,
    pub count: i64,
}

/// Most (source, reason) pairs of refused deliveries that [`Activity`] holds.
pub const MAX_REFUSAL_REASONS: usize = 50;

/// What happened in a time window, per source and per bucket of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// Delivery attempts per (bucket, source, verdict).
    pub attempts: Vec<AttemptCount>,
    /// Events stored per (bucket, source).
    pub events: Vec<(i64, String, i64)>,
    /// Executions planned in the window.
    pub planned: i64,
    /// Plugin calls finished in the window, per attempt outcome.
    pub calls: Vec<(String, i64)>,
    /// Refused attempts per (source, reason), most frequent first.
    pub refusals: Vec<(String, String, i64)>,
    /// Executions made dead letters in the window.
    pub dead_letters: i64,
}

/// Delivery attempts of one source with one verdict in one bucket of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptCount {
    /// Whole `bucket` lengths since the window's start.
    pub bucket: i64,
    pub source: String,
    pub verdict: String,
    pub count: i64,
}

impl Activity {
    /// Sums `rows` (already summed per bucket by the query) per source and per tally.
    pub(crate) fn of(rows: Vec<Counted>) -> Activity {
        let mut attempts: HashMap<(i64, String, String), i64> = HashMap::new();
        let mut events: HashMap<(i64, String), i64> = HashMap::new();
        let mut calls: HashMap<String, i64> = HashMap::new();
        let mut refusals: HashMap<(String, String), i64> = HashMap::new();
        let mut out = Activity::default();
        for r in rows {
            match Kind::parse(&r.kind) {
                Some(Kind::Delivery) => {
                    *attempts.entry((r.bucket, r.subject, r.label)).or_insert(0) += r.count;
                }
                Some(Kind::Event) => {
                    *events.entry((r.bucket, r.subject)).or_insert(0) += r.count;
                }
                Some(Kind::Refusal) => {
                    *refusals.entry((r.subject, r.label)).or_insert(0) += r.count;
                }
                Some(Kind::Call) => *calls.entry(r.label).or_insert(0) += r.count,
                Some(Kind::Execution) if r.label == PLANNED => out.planned += r.count,
                Some(Kind::Execution) if r.label == DEAD => out.dead_letters += r.count,
                Some(Kind::Execution | Kind::CallMs) | None => {}
            }
        }
        out.attempts = attempts
            .into_iter()
            .map(|((bucket, source, verdict), count)| AttemptCount {
                bucket,
                source,
                verdict,
                count,
            })
            .collect();
        out.attempts.sort_by(|a, b| {
            (a.bucket, &a.source, &a.verdict).cmp(&(b.bucket, &b.source, &b.verdict))
        });
        out.events = events.into_iter().map(|((b, s), n)| (b, s, n)).collect();
        out.events.sort();
        out.calls = calls.into_iter().collect();
        out.calls.sort();
        let mut refusals: Vec<(String, String, i64)> =
            refusals.into_iter().map(|((s, r), n)| (s, r, n)).collect();
        refusals.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
        refusals.truncate(MAX_REFUSAL_REASONS);
        out.refusals = refusals;
        out
    }
}

/// One plugin's calls in a window: per outcome, and per duration bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginCalls {
    pub calls: i64,
    pub failures: i64,
    /// (upper bound in ms, or None above the last bound; calls), by bound.
    pub durations: Vec<(Option<i64>, i64)>,
}

impl PluginCalls {
    /// Per plugin, from `rows` of [`Kind::Call`] and [`Kind::CallMs`].
    pub(crate) fn of(rows: Vec<Counted>) -> std::collections::BTreeMap<String, PluginCalls> {
        let mut out: std::collections::BTreeMap<String, PluginCalls> = Default::default();
        for r in rows {
            let p = out.entry(r.subject).or_default();
            match Kind::parse(&r.kind) {
                Some(Kind::Call) => {
                    p.calls += r.count;
                    if AttemptOutcome::parse(&r.label) != Some(AttemptOutcome::Succeeded) {
                        p.failures += r.count;
                    }
                }
                Some(Kind::CallMs) => {
                    let bound = r.label.parse::<i64>().ok();
                    match p.durations.iter_mut().find(|(b, _)| *b == bound) {
                        Some((_, n)) => *n += r.count,
                        None => p.durations.push((bound, r.count)),
                    }
                }
                _ => {}
            }
        }
        for p in out.values_mut() {
            // None (above every bound) sorts last.
            p.durations.sort_by_key(|(b, _)| b.unwrap_or(i64::MAX));
        }
        out
    }

    /// The `p`th percentile (0-100) of call durations in ms, interpolated linearly inside its
    /// bucket (as Prometheus's `histogram_quantile` does); above the last bound, that bound.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let total: i64 = self.durations.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        let rank = (p / 100.0 * total as f64).max(1.0);
        let mut below = 0i64;
        let mut lower = 0i64;
        for &(bound, n) in &self.durations {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(upper) = bound else {
                    return Some(lower as f64);
                };
                let inside = (rank - below as f64) / n as f64;
                return Some(lower as f64 + (upper - lower) as f64 * inside);
            }
            below += n;
            if let Some(b) = bound {
                lower = b;
            }
        }
        Some(lower as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(bucket: i64, kind: Kind, subject: &str, label: &str, count: i64) -> Counted {
        Counted {
            bucket,
            kind: kind.as_str().into(),
            subject: subject.into(),
            label: label.into(),
            count,
        }
    }

    #[test]
    fn call_durations_fall_in_the_first_bucket_that_holds_them() {
        assert_eq!(call_ms_label(0), "1");
        assert_eq!(call_ms_label(1), "1");
        assert_eq!(call_ms_label(2), "2");
        assert_eq!(call_ms_label(4), "5");
        assert_eq!(call_ms_label(600_000), "600000");
        assert_eq!(call_ms_label(600_001), "inf");
        assert!(CALL_MS_BOUNDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn windows_cover_every_minute_they_touch() {
        assert_eq!(minutes(Millis(60_000), Millis(120_000)), (1, 1));
        assert_eq!(minutes(Millis(59_999), Millis(120_001)), (0, 2));
    }

    #[test]
    fn rows_sum_into_buckets_sources_and_tallies() {
        let rows = vec![
            counted(0, Kind::Delivery, "gh", "accepted", 5),
            counted(1, Kind::Delivery, "gh", "rejected", 1),
            counted(0, Kind::Refusal, "gh", "invalid_signature: x", 1),
            counted(1, Kind::Refusal, "gh", "invalid_signature: x", 4),
            counted(1, Kind::Refusal, "st", "other", 1),
            counted(0, Kind::Event, "gh", "", 5),
            counted(0, Kind::Execution, "relay", PLANNED, 5),
            counted(0, Kind::Execution, "relay", DEAD, 1),
            counted(0, Kind::Call, "relay", "succeeded", 4),
            counted(0, Kind::Call, "relay", "fatal", 1),
            counted(0, Kind::CallMs, "relay", "5", 5),
            // A kind this version does not know (written by a newer one) is left out.
            counted(0, Kind::Call, "relay", "succeeded", 9).tap_kind("future-kind"),
        ];
        let a = Activity::of(rows);
        assert_eq!(
            a.attempts,
            vec![
                AttemptCount {
                    bucket: 0,
                    source: "gh".into(),
                    verdict: "accepted".into(),
                    count: 5
                },
                AttemptCount {
                    bucket: 1,
                    source: "gh".into(),
                    verdict: "rejected".into(),
                    count: 1
                },
            ]
        );
        assert_eq!(a.events, vec![(0, "gh".into(), 5)]);
        assert_eq!(a.planned, 5);
        assert_eq!(a.dead_letters, 1);
        assert_eq!(a.calls, vec![("fatal".into(), 1), ("succeeded".into(), 4)]);
        assert_eq!(
            a.refusals,
            vec![
                ("gh".into(), "invalid_signature: x".into(), 5),
                ("st".into(), "other".into(), 1)
            ]
        );
    }

    impl Counted {
        fn tap_kind(mut self, kind: &str) -> Counted {
            self.kind = kind.into();
            self
        }
    }

    #[test]
    fn plugin_calls_give_failures_and_interpolated_percentiles() {
        let rows = vec![
            counted(1, Kind::Call, "a", "succeeded", 90),
            counted(2, Kind::Call, "a", "retryable", 6),
            counted(2, Kind::Call, "a", "fatal", 4),
            counted(1, Kind::CallMs, "a", "10", 50),
            counted(2, Kind::CallMs, "a", "10", 30),
            counted(1, Kind::CallMs, "a", "20", 19),
            counted(1, Kind::CallMs, "a", "inf", 1),
        ];
        let calls = PluginCalls::of(rows);
        let a = &calls["a"];
        assert_eq!((a.calls, a.failures), (100, 10));
        assert_eq!(a.durations, vec![(Some(10), 80), (Some(20), 19), (None, 1)]);
        // Rank 50 of 100 lies inside the first bucket (0-10 ms), at 50/80 of it.
        assert_eq!(a.percentile(50.0), Some(6.25));
        // Rank 99: the 19th of 19 in 10-20 ms.
        assert_eq!(a.percentile(99.0), Some(20.0));
        // Rank 100: above every bound, reported as the last bound passed.
        assert_eq!(a.percentile(100.0), Some(20.0));
        assert_eq!(PluginCalls::default().percentile(50.0), None);
    }
}
