//! The metrics of one running server, rendered in the Prometheus text exposition format
//! (version 0.0.4) for `GET /metrics` on the admin listener.
//!
//! Hand-written rather than built on a metrics crate: a handful of counters and histograms with
//! fixed label sets need little code, no registry and no dependency, and the names, labels and
//! bounds stay visible in one file. Counters and histograms live in memory (they restart at zero
//! with the process, as Prometheus expects); queue depth and group-commit figures are read when
//! scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::model::{AttemptOutcome, Verdict};
use crate::store::{BatchStats, QueueDepth};

/// The label value that stands for a source that is not configured: the path segment comes
/// from the client, so it never becomes a label (that would let anyone grow the metrics).
pub const UNKNOWN_SOURCE: &str = "_unknown";

/// Bucket bounds (seconds) of the ingress acknowledgement latency.
const ACK_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bucket bounds (seconds) from an event's arrival to one of its actions succeeding; retries
/// back off for minutes, hence the long tail.
const DONE_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Bucket bounds (seconds) of one plugin call.
const CALL_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A histogram with fixed bounds; lock-free to observe.
struct Histogram {
    bounds: &'static [f64],
    /// One count per bound (observations at most that bound, not cumulative) plus +Inf.
    counts: Vec<AtomicU64>,
    /// Sum of observations in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The `q` quantile (0 to 1) in seconds, estimated as Prometheus' `histogram_quantile`
    /// does: linearly within the bucket that holds it. None without observations; past the
    /// last bound, that bound.
    fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, n) in counts.iter().enumerate() {
            if *n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = self.bounds.get(i) else {
                    return self.bounds.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                return Some(lower + (upper - lower) * (rank - below as f64) / *n as f64);
            }
            below += n;
        }
        self.bounds.last().copied()
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

/// Percentiles of a latency histogram since the process started (seconds, estimated from
/// the histogram's buckets).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// The histogram's largest bound: a percentile there means "at least this".
    pub top: f64,
}

/// The counters and histograms of one server. Shared by the ingress, the dispatcher and the
/// admin listener.
pub struct Metrics {
    /// By source, then verdict.
    deliveries: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    events: Mutex<BTreeMap<String, u64>>,
    executions: Mutex<BTreeMap<(String, &'static str), u64>>,
    dead_letters: AtomicU64,
    backlog_waits: AtomicU64,
    backlog_wait_nanos: AtomicU64,
    handed: AtomicU64,
    connections_refused: AtomicU64,
    overloaded: AtomicU64,
    own_events_dropped: AtomicU64,
    ack_latency: Histogram,
    ack_to_done: Histogram,
    plugin_calls: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            deliveries: Mutex::default(),
            events: Mutex::default(),
            executions: Mutex::default(),
            dead_letters: AtomicU64::new(0),
            backlog_waits: AtomicU64::new(0),
            backlog_wait_nanos: AtomicU64::new(0),
            handed: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            own_events_dropped: AtomicU64::new(0),
            ack_latency: Histogram::new(ACK_BUCKETS),
            ack_to_done: Histogram::new(DONE_BUCKETS),
            plugin_calls: Mutex::default(),
        }
    }
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    *map.entry(key).or_default() += 1;
}

impl Metrics {
    /// One request to an ingress route was answered after `took`. `source` must be a
    /// configured source id, or [`UNKNOWN_SOURCE`].
    pub fn delivery(&self, source: &str, verdict: Verdict, took: Duration) {
        {
            let mut map = lock(&self.deliveries);
            // Looked up by `&str` first: no allocation once a source has been seen.
            match map.get_mut(source) {
                Some(verdicts) => *verdicts.entry(verdict.as_str()).or_default() += 1,
                None => {
                    map.insert(source.to_string(), BTreeMap::from([(verdict.as_str(), 1)]));
                }
            }
        }
        if matches!(verdict, Verdict::Accepted | Verdict::Quarantined) {
            let mut map = lock(&self.events);
            match map.get_mut(source) {
                Some(n) => *n += 1,
                None => {
                    map.insert(source.to_string(), 1);
                }
            }
        }
        self.ack_latency.observe(took);
    }

    /// The ingress acknowledgement latency since the process started.
    pub fn ack_latency(&self) -> LatencySummary {
        LatencySummary {
            count: self.ack_latency.count(),
            p50: self.ack_latency.quantile(0.5),
            p99: self.ack_latency.quantile(0.99),
            top: ACK_BUCKETS.last().copied().unwrap_or(0.0),
        }
    }

    /// One plugin call ended.
    pub fn plugin_call(&self, plugin: &str, took: Duration) {
        let histogram = {
            let mut calls = self.plugin_calls.lock().unwrap_or_else(|p| p.into_inner());
            calls
                .entry(plugin.to_string())
                .or_insert_with(|| std::sync::Arc::new(Histogram::new(CALL_BUCKETS)))
                .clone()
        };
        histogram.observe(took);
    }

    /// One attempt of an execution was recorded with `outcome`; `dead` when the execution
    /// became a dead letter.
    pub fn attempt_recorded(&self, plugin: &str, outcome: AttemptOutcome, dead: bool) {
        bump(&self.executions, (plugin.to_string(), outcome.as_str()));
        if dead {
            self.dead_letters.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An arriving event waited `waited` for the dispatch backlog to shrink.
    pub fn backlog_wait(&self, waited: Duration) {
        self.backlog_waits.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.backlog_wait_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// `n` executions were stored leased to this node as their event arrived and handed to
    /// its workers, without a claim.
    pub fn handed(&self, n: usize) {
        self.handed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A connection was closed as soon as it was accepted: the listener had `max_connections`.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered `503 overloaded`: the listener was handling `max_in_flight`
    /// requests, or holding `max_body_bytes_in_flight` bytes of bodies.
    pub fn overloaded(&self) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    /// One of hookwise's own events was stored (not a duplicate).
    pub fn own_event_stored(&self) {
        bump(&self.events, crate::model::OWN_SOURCE.to_string());
    }

    /// One of hookwise's own events was dropped: too many were waiting to be stored.
    pub fn own_event_dropped(&self) {
        self.own_events_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// hookwise's own events dropped so far.
    pub fn own_events_dropped(&self) -> u64 {
        self.own_events_dropped.load(Ordering::Relaxed)
    }

    /// An action of a first-run event succeeded `since_received` after the event arrived.
    pub fn done(&self, since_received: Duration) {
        self.ack_to_done.observe(since_received);
    }

    /// The whole exposition, with the gauges read from the store (None when it did not answer:
    /// the gauges are then left out rather than reported as zero).
    pub fn render(&self, queue: Option<QueueDepth>, batches: BatchStats) -> String {
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "hookwise_deliveries_total",
            "counter",
            "Requests to ingress routes, by source and verdict.",
        );
        for (source, verdicts) in lock(&self.deliveries).iter() {
            for (verdict, n) in verdicts {
                let _ = writeln!(
                    out,
                    "hookwise_deliveries_total{{source=\"{}\",verdict=\"{verdict}\"}} {n}",
                    escape(source)
                );
            }
        }
        family(
            &mut out,
            "hookwise_events_total",
            "counter",
            "Events stored (duplicates excluded), by source.",
        );
        for (source, n) in lock(&self.events).iter() {
            let _ = writeln!(
                out,
                "hookwise_events_total{{source=\"{}\"}} {n}",
                escape(source)
            );
        }
        family(
            &mut out,
            "hookwise_executions_total",
            "counter",
            "Execution attempts recorded, by plugin and outcome (succeeded, retryable, fatal).",
        );
        for ((plugin, outcome), n) in lock(&self.executions).iter() {
            let _ = writeln!(
                out,
                "hookwise_executions_total{{plugin=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(plugin)
            );
        }
        counter(
            &mut out,
            "hookwise_dead_letters_total",
            "Executions that became dead letters.",
            self.dead_letters.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "hookwise_backlog_waits_total",
            "Arriving events that waited because this node had more unclaimed executions than dispatch.backlog_limit.",
            self.backlog_waits.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "hookwise_handed_executions_total",
            "Executions this node started as their event arrived, handed to its workers without a claim.",
            self.handed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "hookwise_backlog_wait_seconds_total",
            "Time arriving events spent in those waits.",
            format_args!(
                "{:.6}",
                self.backlog_wait_nanos.load(Ordering::Relaxed) as f64 / 1e9
            ),
        );
        counter(
            &mut out,
            "hookwise_connections_refused_total",
            "Connections closed as soon as they were accepted because the listener had listener.max_connections open.",
            self.connections_refused.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "hookwise_requests_overloaded_total",
            "Ingress requests answered 503 overloaded because listener.max_in_flight were being handled.",
            self.overloaded.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "hookwise_own_events_dropped_total",
            "hookwise's own events (source hookwise) dropped because too many were waiting to be stored.",
            self.own_events_dropped(),
        );
        family(
            &mut out,
            "hookwise_ack_latency_seconds",
            "histogram",
            "Time from an ingress request's arrival to its answer.",
        );
        self.ack_latency
            .render(&mut out, "hookwise_ack_latency_seconds", "");
        family(
            &mut out,
            "hookwise_ack_to_done_seconds",
            "histogram",
            "Time from an event's arrival to the success of one of its actions (first runs only, not replays).",
        );
        self.ack_to_done
            .render(&mut out, "hookwise_ack_to_done_seconds", "");
        family(
            &mut out,
            "hookwise_plugin_call_duration_seconds",
            "histogram",
            "Duration of plugin calls, by plugin.",
        );
        let calls: Vec<(String, std::sync::Arc<Histogram>)> = lock(&self.plugin_calls)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (plugin, h) in calls {
            h.render(
                &mut out,
                "hookwise_plugin_call_duration_seconds",
                &format!("plugin=\"{}\"", escape(&plugin)),
            );
        }
        if let Some(q) = queue {
            family(
                &mut out,
                "hookwise_queue_depth",
                "gauge",
                "Work waiting now: events not yet matched, executions pending or running.",
            );
            for (queue, n) in [
                ("events_pending", q.pending_events),
                ("executions_pending", q.pending_executions),
                ("executions_running", q.running_executions),
            ] {
                let _ = writeln!(out, "hookwise_queue_depth{{queue=\"{queue}\"}} {n}");
            }
        }
        family(
            &mut out,
            "hookwise_group_commit_batch_size",
            "summary",
            "Writes per group-commit transaction (sum: writes, count: transactions).",
        );
        let _ = writeln!(
            out,
            "hookwise_group_commit_batch_size_sum {}",
            batches.writes
        );
        let _ = writeln!(
            out,
            "hookwise_group_commit_batch_size_count {}",
            batches.batches
        );
        family(
            &mut out,
            "hookwise_group_commit_batch_size_max",
            "gauge",
            "Largest group-commit transaction so far, in writes.",
        );
        let _ = writeln!(
            out,
            "hookwise_group_commit_batch_size_max {}",
            batches.largest
        );
        counter(
            &mut out,
            "hookwise_group_commit_splits_total",
            "Group-commit transactions that failed as a whole and were written again write by write.",
            batches.split,
        );
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A counter without labels: its family and its one sample.
fn counter(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_latency_percentiles_come_from_the_buckets() {
        let m = Metrics::default();
        assert_eq!(m.ack_latency().p50, None);
        assert_eq!(m.ack_latency().count, 0);
        // 98 fast acks (in the 0.5-1 ms bucket), 2 of 20 s (past the last bound).
        for _ in 0..98 {
            m.delivery("gh", Verdict::Accepted, Duration::from_micros(700));
        }
        for _ in 0..2 {
            m.delivery("gh", Verdict::Accepted, Duration::from_secs(20));
        }
        let l = m.ack_latency();
        assert_eq!(l.count, 100);
        let p50 = l.p50.unwrap();
        assert!(p50 > 0.0005 && p50 <= 0.001, "{p50}");
        // The 99th of 100 is one of the slow ones: shown as the largest bound.
        assert_eq!(l.p99, Some(10.0));
        assert_eq!(l.top, 10.0);
    }

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let m = Metrics::default();
        m.delivery("gh", Verdict::Accepted, Duration::from_micros(300));
        m.delivery("gh", Verdict::Accepted, Duration::from_millis(3));
        m.delivery(UNKNOWN_SOURCE, Verdict::Rejected, Duration::from_secs(20));
        m.plugin_call("re\"lay", Duration::from_millis(2));
        m.attempt_recorded("relay", AttemptOutcome::Fatal, true);
        let text = m.render(None, BatchStats::default());
        assert!(text.contains("hookwise_deliveries_total{source=\"gh\",verdict=\"accepted\"} 2"));
        assert!(text.contains("hookwise_events_total{source=\"gh\"} 2"));
        assert!(!text.contains("hookwise_events_total{source=\"_unknown\"}"));
        assert!(text.contains("hookwise_ack_latency_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("hookwise_ack_latency_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("hookwise_ack_latency_seconds_bucket{le=\"10\"} 2"));
        assert!(text.contains("hookwise_ack_latency_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("hookwise_ack_latency_seconds_count 3"));
        assert!(text.contains("plugin=\"re\\\"lay\",le=\"0.005\"} 1"));
        assert!(text.contains("hookwise_dead_letters_total 1"));
        assert!(!text.contains("hookwise_queue_depth"));
    }
}
