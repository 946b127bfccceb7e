//! The overview, the signed-in home: for the last hour and the last day, deliveries accepted
//! and refused per source (with the top refusal reasons), events, executions planned, plugin
//! calls by outcome and dead letters made, as tables and as server-rendered SVG bar charts;
//! and what is true now: the backlog, the dead letters and the acknowledgement latency
//! measured since the process started. The window figures come from the per-minute counts the
//! store keeps as it writes, so the page costs the same at any volume.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::{Extension, State};
use axum::response::Response;

use super::render::escape;
use super::session::Session;
use super::{Dashboard, DashboardError};
use crate::model::{AttemptOutcome, Millis, Verdict};
use crate::store::{Activity, DeadLetterQuery};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// Refusal reasons shown per source.
const REASONS_PER_SOURCE: usize = 3;
/// Dead letters counted for the overview; past it the page says "more than".
const DEAD_LETTER_CAP: i64 = 100_000;

/// A window of the overview: its length and the length of one chart bar.
struct Window {
    id: &'static str,
    title: &'static str,
    span: i64,
    bucket: i64,
    bucket_name: &'static str,
}

const WINDOWS: [Window; 2] = [
    Window {
        id: "hour",
        title: "Last hour",
        span: HOUR,
        bucket: 5 * MINUTE,
        bucket_name: "5 minutes",
    },
    Window {
        id: "day",
        title: "Last day",
        span: 24 * HOUR,
        bucket: HOUR,
        bucket_name: "hour",
    },
];

/// One source's figures in a window.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
struct SourceFigures {
    source: String,
    accepted: i64,
    refused: i64,
    duplicate: i64,
    quarantined: i64,
    handshake: i64,
    events: i64,
    /// The most frequent refusal reasons, with their counts.
    reasons: Vec<(String, i64)>,
}

/// A window's figures, ready for the template.
#[derive(Debug, serde::Serialize)]
struct WindowView {
    id: &'static str,
    title: &'static str,
    bucket_name: &'static str,
    sources: Vec<SourceFigures>,
    total: SourceFigures,
    /// (key, words, count): planned, calls succeeded, calls failed, dead-lettered.
    executions: Vec<(&'static str, &'static str, i64)>,
    /// Accepted and refused per bucket, oldest first.
    bars: Vec<(i64, i64)>,
}

/// `GET /overview`.
pub(super) async fn page(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
) -> Response {
    let result = page_inner(&d, &session).await;
    d.answer(result)
}

async fn page_inner(d: &Dashboard, session: &Session) -> Result<Response, DashboardError> {
    let store = &d.admin.app.store;
    // The window ends just after now, so that what arrived this millisecond counts.
    let until = Millis(Millis::now().0.saturating_add(1));
    let mut windows = Vec::with_capacity(WINDOWS.len());
    let mut charts = Vec::with_capacity(WINDOWS.len());
    for w in &WINDOWS {
        let since = Millis(until.0 - w.span);
        let activity = store.activity(since, until, w.bucket).await?;
        let view = summarize(w, &activity);
        charts.push(minijinja::Value::from_safe_string(chart(
            w, since, &view.bars,
        )));
        windows.push(view);
    }
    let backlog = store.queue_depth().await?;
    let dead_letters = store
        .count_dead_letters(&DeadLetterQuery::default(), DEAD_LETTER_CAP)
        .await?;
    let latency = d.admin.app.metrics.ack_latency();
    let ms = |s: Option<f64>| s.map(|s| format!("{:.1} ms", s * 1000.0));
    d.page(
        "overview.html",
        minijinja::context! {
            csrf => &session.csrf,
            windows => minijinja::Value::from(minijinja::value::Serde(&windows)),
            charts => charts,
            backlog => minijinja::Value::from(minijinja::value::Serde(backlog)),
            dead_letters => dead_letters.min(DEAD_LETTER_CAP),
            dead_letters_more => dead_letters > DEAD_LETTER_CAP,
            latency_count => latency.count,
            latency_p50 => ms(latency.p50),
            latency_p99 => ms(latency.p99),
            latency_p99_capped => latency.p99.is_some_and(|p| p >= latency.top),
            latency_top => format!("{} s", latency.top),
        },
    )
}

/// The window's counts per source, its totals and its chart bars.
fn summarize(w: &Window, a: &Activity) -> WindowView {
    let mut sources: BTreeMap<String, SourceFigures> = BTreeMap::new();
    let buckets = usize::try_from(w.span / w.bucket).unwrap_or(0);
    let mut bars = vec![(0i64, 0i64); buckets];
    for c in &a.attempts {
        let f = figures(&mut sources, &c.source);
        let bar = usize::try_from(c.bucket).ok().and_then(|i| bars.get_mut(i));
        match Verdict::parse(&c.verdict) {
            Some(Verdict::Accepted) => {
                f.accepted += c.count;
                if let Some(bar) = bar {
                    bar.0 += c.count;
                }
            }
            Some(Verdict::Rejected) => {
                f.refused += c.count;
                if let Some(bar) = bar {
                    bar.1 += c.count;
                }
            }
            Some(Verdict::Duplicate) => f.duplicate += c.count,
            Some(Verdict::Quarantined) => f.quarantined += c.count,
            Some(Verdict::Handshake) => f.handshake += c.count,
            None => {}
        }
    }
    for (_, source, n) in &a.events {
        figures(&mut sources, source).events += n;
    }
    for (source, reason, n) in &a.refusals {
        let f = figures(&mut sources, source);
        if f.reasons.len() < REASONS_PER_SOURCE {
            let reason = if reason.is_empty() {
                "no reason recorded".to_string()
            } else {
                reason.clone()
            };
            f.reasons.push((reason, *n));
        }
    }
    let sources: Vec<SourceFigures> = sources.into_values().collect();
    let mut total = SourceFigures {
        source: "all sources".to_string(),
        ..SourceFigures::default()
    };
    for f in &sources {
        total.accepted += f.accepted;
        total.refused += f.refused;
        total.duplicate += f.duplicate;
        total.quarantined += f.quarantined;
        total.handshake += f.handshake;
        total.events += f.events;
    }
    let succeeded = AttemptOutcome::Succeeded.as_str();
    let calls = |ok: bool| -> i64 {
        a.calls
            .iter()
            .filter(|(outcome, _)| (outcome == succeeded) == ok)
            .map(|(_, n)| n)
            .sum()
    };
    let executions = vec![
        ("planned", "executions planned", a.planned),
        ("succeeded", "calls succeeded", calls(true)),
        ("failed", "calls failed", calls(false)),
        ("dead", "dead letters made", a.dead_letters),
    ];
    WindowView {
        id: w.id,
        title: w.title,
        bucket_name: w.bucket_name,
        sources,
        total,
        executions,
        bars,
    }
}

/// The figures of `source`, made empty when first seen.
fn figures<'a>(
    sources: &'a mut BTreeMap<String, SourceFigures>,
    source: &str,
) -> &'a mut SourceFigures {
    sources
        .entry(source.to_string())
        .or_insert_with(|| SourceFigures {
            source: source.to_string(),
            ..SourceFigures::default()
        })
}

/// `HH:MM` (UTC) of a time.
fn clock(at: Millis) -> String {
    let minutes = at.0.div_euclid(MINUTE).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Accepted (below) and refused (stacked above) deliveries per bucket as an inline SVG bar
/// chart: classes for the colours (the page's CSS), a `<title>` per bar for its numbers, and a
/// text summary for screen readers. Only numbers and escaped text go into it.
fn chart(w: &Window, since: Millis, bars: &[(i64, i64)]) -> String {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 160.0;
    const LEFT: f64 = 44.0;
    const BOTTOM: f64 = 22.0;
    const TOP: f64 = 8.0;
    let plot_w = WIDTH - LEFT - 4.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let max = bars.iter().map(|(a, r)| a + r).max().unwrap_or(0).max(1);
    let (accepted, refused) = bars
        .iter()
        .fold((0, 0), |(a, r), (ba, br)| (a + ba, r + br));
    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.75).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" id=\"chart-{id}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-labelledby=\"chart-{id}-title\">\
         <title id=\"chart-{id}-title\">{title}: {accepted} accepted and {refused} refused \
         deliveries, per {bucket}</title>",
        id = w.id,
        title = escape(w.title),
        bucket = escape(w.bucket_name),
    );
    // Axis and the top value.
    let base = TOP + plot_h;
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{base}\" x2=\"{x2}\" y2=\"{base}\"/>\
         <line class=\"grid\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{x2}\" y2=\"{TOP}\"/>\
         <text class=\"label\" x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text>\
         <text class=\"label\" x=\"{lx}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        x2 = LEFT + plot_w,
        lx = LEFT - 6.0,
        ty = TOP + 10.0,
    );
    for (i, (a, r)) in bars.iter().enumerate() {
        let start = Millis(since.0 + i as i64 * w.bucket);
        let end = Millis(start.0 + w.bucket);
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let ha = plot_h * *a as f64 / max as f64;
        let hr = plot_h * *r as f64 / max as f64;
        let _ = write!(
            svg,
            "<g class=\"bar\"><title>{from}–{to} UTC: {a} accepted, {r} refused</title>\
             <rect class=\"slot\" x=\"{sx:.1}\" y=\"{TOP}\" width=\"{slot:.1}\" height=\"{plot_h}\"/>",
            from = clock(start),
            to = clock(end),
            sx = LEFT + slot * i as f64,
        );
        if *a > 0 {
            let _ = write!(
                svg,
                "<rect class=\"accepted\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{ha:.1}\"/>",
                y = base - ha,
            );
        }
        if *r > 0 {
            let _ = write!(
                svg,
                "<rect class=\"refused\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{hr:.1}\"/>",
                y = base - ha - hr,
            );
        }
        svg.push_str("</g>");
        // Times under the first bar, the middle one and the last.
        if i == 0 || i == bars.len() / 2 || i + 1 == bars.len() {
            let _ = write!(
                svg,
                "<text class=\"label\" x=\"{cx:.1}\" y=\"{ly}\" text-anchor=\"middle\">{t}</text>",
                cx = x + bar_w / 2.0,
                ly = HEIGHT - 6.0,
                t = clock(start),
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AttemptCount;

    fn count(bucket: i64, source: &str, verdict: &str, count: i64) -> AttemptCount {
        AttemptCount {
            bucket,
            source: source.to_string(),
            verdict: verdict.to_string(),
            count,
        }
    }

    #[test]
    fn summary_adds_up_per_source_and_per_bar() {
        let a = Activity {
            attempts: vec![
                count(0, "gh", "accepted", 2),
                count(11, "gh", "accepted", 1),
                count(11, "gh", "rejected", 2),
                count(3, "<b>", "duplicate", 4),
                // Outside the window's bars: counted, not drawn.
                count(99, "gh", "rejected", 1),
            ],
            events: vec![(0, "gh".into(), 2), (11, "gh".into(), 1)],
            planned: 9,
            calls: vec![
                ("fatal".into(), 1),
                ("retryable".into(), 3),
                ("succeeded".into(), 5),
            ],
            refusals: vec![
                ("gh".into(), "bad signature".into(), 2),
                ("gh".into(), String::new(), 1),
            ],
            dead_letters: 2,
        };
        let v = summarize(&WINDOWS[0], &a);
        assert_eq!(v.bars.len(), 12);
        assert_eq!(v.bars[0], (2, 0));
        assert_eq!(v.bars[11], (1, 2));
        let gh = v.sources.iter().find(|s| s.source == "gh").unwrap();
        assert_eq!((gh.accepted, gh.refused, gh.events), (3, 3, 3));
        assert_eq!(
            gh.reasons,
            vec![
                ("bad signature".to_string(), 2),
                ("no reason recorded".to_string(), 1)
            ]
        );
        assert_eq!(v.total.duplicate, 4);
        assert_eq!(v.total.accepted, 3);
        assert_eq!(
            v.executions,
            vec![
                ("planned", "executions planned", 9),
                ("succeeded", "calls succeeded", 5),
                ("failed", "calls failed", 4),
                ("dead", "dead letters made", 2)
            ]
        );
    }

    #[test]
    fn chart_is_an_svg_with_a_bar_per_bucket_and_escaped_text() {
        let w = Window {
            id: "hour",
            title: "<script>",
            span: HOUR,
            bucket: 5 * MINUTE,
            bucket_name: "5 minutes",
        };
        let mut bars = vec![(0, 0); 12];
        bars[3] = (4, 1);
        let svg = chart(&w, Millis(0), &bars);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<g class=\"bar\">").count(), 12);
        assert_eq!(svg.matches("class=\"accepted\"").count(), 1);
        assert_eq!(svg.matches("class=\"refused\"").count(), 1);
        assert!(
            svg.contains("00:15–00:20 UTC: 4 accepted, 1 refused"),
            "{svg}"
        );
        assert!(!svg.contains("<script>"));
        assert!(!svg.contains("style="), "CSP forbids style attributes");
    }

    #[test]
    fn clock_is_utc_hours_and_minutes() {
        assert_eq!(clock(Millis(0)), "00:00");
        assert_eq!(clock(Millis(13 * HOUR + 7 * MINUTE + 59_999)), "13:07");
        assert_eq!(clock(Millis(-MINUTE)), "23:59");
    }
}
