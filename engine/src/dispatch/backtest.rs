//! Backtests: rules tried against the events already stored, as `hookwise test
//! --against-store` and the dashboard's rules page do. Each event is matched exactly as the
//! dispatcher would match it (same `RuleSet`, same traces, inputs rendered and redacted);
//! nothing runs and nothing is written.
//!
//! Everything is bounded, because the rules may be pasted by anyone signed in: the rule text
//! (size, YAML nesting and node count, checked before the YAML is parsed for real), the
//! number of events, the payload bytes read, and the time spent matching.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::EventParts;
use crate::config::Config;
use crate::model::Millis;
use crate::rules::{Evaluation, RuleInputs, RuleSet};
use crate::store::{EventSample, SampledEvent, Store, StoreError};
use crate::yamldoc::{Diagnostic, Position};

/// Events tried when no number is given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most events one backtest tries.
pub const MAX_LIMIT: usize = 1000;
/// Longest rule text taken (pasted rules; files are the operator's own).
pub const MAX_RULES_TEXT: usize = 256 * 1024;
/// Deepest YAML nesting taken in rule text (real rule files need about 10).
pub const MAX_YAML_DEPTH: usize = 64;
/// Most YAML nodes taken in rule text.
pub const MAX_YAML_NODES: usize = 50_000;
/// Most aliases (`*name`) taken in rule text: each may stand for a whole subtree.
pub const MAX_YAML_ALIASES: usize = 64;
/// Longest payload read, in characters (or stored bytes when compressed); longer events are
/// listed as not tried.
pub const MAX_PAYLOAD: i64 = 1 << 20;
/// Payload bytes one backtest parses in all; past it the backtest stops where it is.
pub const MAX_PAYLOAD_TOTAL: usize = 64 << 20;
/// Longest a backtest spends matching; past it the backtest stops where it is.
pub const MAX_TIME: Duration = Duration::from_secs(10);
/// A rendered input larger than this (as JSON text) is shown cut, like trace values.
const MAX_SHOWN_INPUT: usize = 16 * 1024;
/// Events read per query: the payloads held at once.
const PAGE: i64 = 25;

/// Which events to try: the newest `limit` of the rules' sources received in `[since, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub limit: usize,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no rule `{0}` among the rules tried")]
    NoRule(String),
    #[error("the rules name no source, so no stored event can match them")]
    NoSources,
    #[error("the matching task failed: {0}")]
    Task(String),
}

/// One stored event and what the rules made of it.
#[derive(Debug, Clone, Serialize)]
pub struct TriedEvent {
    pub id: String,
    pub seq: i64,
    pub source: String,
    pub event_type: String,
    pub received_at: String,
    /// Whether at least one rule matched.
    pub matched: bool,
    /// Why the event was not tried (payload too large or unreadable); then no rule is listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_tried: Option<String>,
    /// Every rule of the event's source, matched or not and why (inputs redacted and bounded).
    pub evaluation: Evaluation,
}

/// The whole backtest.
#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    /// Newest first.
    pub events: Vec<TriedEvent>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Events read (tried or not).
    pub events: usize,
    /// Events at least one rule matched.
    pub matched: usize,
    /// Events not tried (see [`TriedEvent::not_tried`]).
    pub not_tried: usize,
    /// Per rule tried: how many events it matched.
    pub rules: BTreeMap<String, usize>,
    /// The sources read.
    pub sources: Vec<String>,
    /// Set when the backtest stopped before `limit` events: the time or byte budget ran out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl Backtest {
    /// `N events, M matched` and what stopped it, if anything.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        let mut line = format!(
            "{} event{}, {} matched",
            s.events,
            if s.events == 1 { "" } else { "s" },
            s.matched
        );
        if s.not_tried > 0 {
            line.push_str(&format!(", {} not tried", s.not_tried));
        }
        if let Some(why) = &s.stopped {
            line.push_str(&format!(" (stopped early: {why})"));
        }
        line
    }

    /// The text report: one block per event (matched rules with their inputs, the others
    /// with the reason), then the summary line.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for e in &self.events {
            let _ = writeln!(
                out,
                "{} {} {} {} {}",
                e.id,
                e.received_at,
                e.source,
                e.event_type,
                if e.matched { "MATCHED" } else { "not matched" }
            );
            if let Some(why) = &e.not_tried {
                let _ = writeln!(out, "  not tried: {why}");
            }
            for m in &e.evaluation.matched {
                let _ = writeln!(out, "  MATCHED {}", m.rule);
                for a in &m.actions {
                    let _ = writeln!(
                        out,
                        "    action[{}] {}: {}",
                        a.index, a.plugin, a.input_redacted
                    );
                }
            }
            for m in &e.evaluation.not_matched {
                let _ = writeln!(out, "  NOT MATCHED {}: {}", m.rule, m.reason);
            }
        }
        let _ = writeln!(out, "{}", self.summary_line());
        out
    }

    /// `{"events": [{"id", "source", "event_type", "received_at", "matched": [...],
    /// "not_matched": [...]}], "summary": {...}}`, each event's rules as `hookwise test
    /// --json` shows them.
    pub fn to_json(&self) -> Value {
        let events: Vec<Value> = self
            .events
            .iter()
            .map(|e| {
                let mut v = crate::rules::dry_run_json(&e.evaluation);
                v["id"] = Value::from(e.id.clone());
                v["source"] = Value::from(e.source.clone());
                v["event_type"] = Value::from(e.event_type.clone());
                v["received_at"] = Value::from(e.received_at.clone());
                if let Some(why) = &e.not_tried {
                    v["not_tried"] = Value::from(why.clone());
                }
                v
            })
            .collect();
        serde_json::json!({"events": events, "summary": self.summary})
    }
}

/// Compiles rule text (a paste, named `name` in problems) against `config`'s sources, plugins
/// and secrets, after checking its size and shape; every problem has its line and column.
pub fn compile_text(name: &str, text: &str, config: &Config) -> Result<RuleSet, Vec<Diagnostic>> {
    let file = PathBuf::from(name);
    check_shape(&file, text).map_err(|d| vec![d])?;
    let inputs = RuleInputs::new(config, None);
    let rules =
        crate::rules::compile_files(&[(file.clone(), text.to_string())], &inputs.context())?;
    if rules.is_empty() {
        return Err(vec![problem(
            &file,
            Position { line: 1, column: 1 },
            "no rules: write `rules:` and a list of rules",
        )]);
    }
    Ok(rules)
}

/// Refuses rule text too large or too deeply nested to parse safely, before it is parsed
/// into values: the size, then one pass over the YAML events counting depth, nodes and aliases.
/// A syntax error is left to the compiler, which reports it with its place.
pub fn check_shape(file: &Path, text: &str) -> Result<(), Diagnostic> {
    if text.len() > MAX_RULES_TEXT {
        return Err(problem(
            file,
            Position { line: 1, column: 1 },
            format!(
                "the rules are {} bytes; at most {} KiB are taken",
                text.len(),
                MAX_RULES_TEXT / 1024
            ),
        ));
    }
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let (mut depth, mut nodes, mut aliases) = (0usize, 0usize, 0usize);
    loop {
        let Ok((event, mark)) = parser.next_token() else {
            return Ok(());
        };
        let at = Position {
            line: mark.line().max(1),
            column: mark.col() + 1,
        };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                nodes += 1;
                if depth > MAX_YAML_DEPTH {
                    return Err(problem(
                        file,
                        at,
                        format!("the YAML nests deeper than {MAX_YAML_DEPTH} levels"),
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::Scalar(..) => nodes += 1,
            Event::Alias(..) => {
                nodes += 1;
                aliases += 1;
                if aliases > MAX_YAML_ALIASES {
                    return Err(problem(
                        file,
                        at,
                        format!("more than {MAX_YAML_ALIASES} YAML aliases"),
                    ));
                }
            }
            _ => {}
        }
        if nodes > MAX_YAML_NODES {
            return Err(problem(
                file,
                at,
                format!("more than {MAX_YAML_NODES} YAML nodes"),
            ));
        }
    }
}

fn problem(file: &Path, position: Position, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        position,
        pointer: String::new(),
        message: message.into(),
    }
}

/// Tries `rules` (only the rule `only`, when given) against the newest stored events of their
/// sources within `window`. Reads `PAGE` events at a time; matching runs off the async workers.
pub async fn run(
    store: &Store,
    config: Arc<Config>,
    rules: Arc<RuleSet>,
    only: Option<&str>,
    window: Window,
) -> Result<Backtest, BacktestError> {
    let tried: Vec<String> = match only {
        Some(id) => {
            if rules.get(id).is_none() {
                return Err(BacktestError::NoRule(id.to_string()));
            }
            vec![id.to_string()]
        }
        None => rules.rules().map(|r| r.id().to_string()).collect(),
    };
    let mut sources: Vec<String> = Vec::new();
    for id in &tried {
        for s in rules.get(id).map(|r| r.sources()).unwrap_or_default() {
            if !sources.contains(s) {
                sources.push(s.clone());
            }
        }
    }
    if sources.is_empty() {
        return Err(BacktestError::NoSources);
    }
    let limit = window.limit.clamp(1, MAX_LIMIT);
    let mut cursors: Vec<Cursor> = sources.iter().map(|s| Cursor::new(s)).collect();
    let mut summary = Summary {
        rules: tried.iter().map(|id| (id.clone(), 0)).collect(),
        sources: sources.clone(),
        ..Summary::default()
    };
    let mut budget = Budget {
        deadline: Instant::now() + MAX_TIME,
        bytes_left: MAX_PAYLOAD_TOTAL,
    };
    let tried = Arc::new(tried);
    let mut events = Vec::new();
    while events.len() < limit && summary.stopped.is_none() {
        let mut batch = Vec::new();
        while batch.len() < PAGE as usize && events.len() + batch.len() < limit {
            match next_newest(store, &mut cursors, &window).await? {
                Some(e) => batch.push(e),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        let (rules, config, tried) = (rules.clone(), config.clone(), tried.clone());
        let (done, left, stopped) =
            tokio::task::spawn_blocking(move || try_batch(&rules, &config, &tried, batch, budget))
                .await
                .map_err(|e| BacktestError::Task(e.to_string()))?;
        budget = left;
        summary.stopped = stopped;
        events.extend(done);
    }
    for e in &events {
        summary.events += 1;
        if e.matched {
            summary.matched += 1;
        }
        if e.not_tried.is_some() {
            summary.not_tried += 1;
        }
        for m in &e.evaluation.matched {
            if let Some(n) = summary.rules.get_mut(&m.rule) {
                *n += 1;
            }
        }
    }
    Ok(Backtest { events, summary })
}

/// One source's events, read a page at a time, newest first.
struct Cursor {
    source: String,
    buffered: VecDeque<SampledEvent>,
    before_seq: Option<i64>,
    done: bool,
}

impl Cursor {
    fn new(source: &str) -> Cursor {
        Cursor {
            source: source.to_string(),
            buffered: VecDeque::new(),
            before_seq: None,
            done: false,
        }
    }

    async fn fill(&mut self, store: &Store, window: &Window) -> Result<(), StoreError> {
        if self.done || !self.buffered.is_empty() {
            return Ok(());
        }
        let page = store
            .sample_events(&EventSample {
                source: self.source.clone(),
                since: window.since,
                until: window.until,
                before_seq: self.before_seq,
                limit: PAGE,
                max_payload: MAX_PAYLOAD,
            })
            .await?;
        self.done = (page.len() as i64) < PAGE;
        self.before_seq = page.last().map(|e| e.stored.seq).or(self.before_seq);
        self.buffered.extend(page);
        Ok(())
    }
}

/// The newest event not taken yet across all sources (a merge of the per-source pages).
async fn next_newest(
    store: &Store,
    cursors: &mut [Cursor],
    window: &Window,
) -> Result<Option<SampledEvent>, StoreError> {
    for c in cursors.iter_mut() {
        c.fill(store, window).await?;
    }
    let newest = cursors
        .iter_mut()
        .filter(|c| !c.buffered.is_empty())
        .max_by_key(|c| c.buffered.front().map(|e| e.stored.seq));
    Ok(newest.and_then(|c| c.buffered.pop_front()))
}

/// What is left to spend.
#[derive(Debug, Clone, Copy)]
struct Budget {
    deadline: Instant,
    bytes_left: usize,
}

/// Matches a batch of events; stops early (with the reason) when the budget runs out.
fn try_batch(
    rules: &RuleSet,
    config: &Config,
    tried: &[String],
    batch: Vec<SampledEvent>,
    mut budget: Budget,
) -> (Vec<TriedEvent>, Budget, Option<String>) {
    let mut out = Vec::with_capacity(batch.len());
    for sampled in batch {
        if Instant::now() >= budget.deadline {
            return (
                out,
                budget,
                Some(format!("matching took more than {}s", MAX_TIME.as_secs())),
            );
        }
        let size = sampled.stored.event.payload.len();
        if !sampled.payload_skipped && size > budget.bytes_left {
            let why = format!("read {} MiB of payloads", MAX_PAYLOAD_TOTAL >> 20);
            return (out, budget, Some(why));
        }
        budget.bytes_left = budget.bytes_left.saturating_sub(size);
        out.push(try_event(rules, config, tried, &sampled));
    }
    (out, budget, None)
}

/// One event against the rules: the rules of its source that are tried, each matched or not.
fn try_event(
    rules: &RuleSet,
    config: &Config,
    tried: &[String],
    sampled: &SampledEvent,
) -> TriedEvent {
    let e = &sampled.stored.event;
    let mut out = TriedEvent {
        id: e.id.to_string(),
        seq: sampled.stored.seq,
        source: e.source.clone(),
        event_type: e.event_type.clone(),
        received_at: e.received_at.to_rfc3339(),
        matched: false,
        not_tried: None,
        evaluation: Evaluation::default(),
    };
    if sampled.payload_skipped {
        out.not_tried = Some(format!(
            "the payload is larger than {} MiB",
            MAX_PAYLOAD >> 20
        ));
        return out;
    }
    let payload: Value = match serde_json::from_str(&e.payload) {
        Ok(v) => v,
        Err(err) => {
            out.not_tried = Some(format!("the stored payload is not readable JSON: {err}"));
            return out;
        }
    };
    let parts = EventParts::of(config, e, payload);
    let mut evaluation = rules.evaluate_all(&parts.view(e));
    // Only the rules asked about, and only those of this event's source: the others were
    // never candidates for it.
    let asked = |id: &str| {
        tried.iter().any(|t| t == id)
            && rules
                .get(id)
                .is_some_and(|r| r.sources().contains(&e.source))
    };
    evaluation.matched.retain(|m| asked(&m.rule));
    evaluation.not_matched.retain(|m| asked(&m.rule));
    for m in &mut evaluation.matched {
        for a in &mut m.actions {
            // The real input may hold secrets: never kept.
            a.input = Value::Null;
            a.input_redacted = bounded(std::mem::take(&mut a.input_redacted));
        }
        for a in &mut m.trace.actions {
            a.input = a.input.take().map(bounded);
        }
    }
    out.matched = !evaluation.matched.is_empty();
    out.evaluation = evaluation;
    out
}

/// A rendered input as shown: whole when small, else cut like trace values.
fn bounded(value: Value) -> Value {
    let size = serde_json::to_string(&value).map(|s| s.len()).unwrap_or(0);
    if size <= MAX_SHOWN_INPUT {
        value
    } else {
        crate::rules::trace::truncate(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> Result<(), String> {
        check_shape(Path::new("pasted"), text).map_err(|d| d.to_string())
    }

    #[test]
    fn shape_check_refuses_hostile_yaml_with_a_place() {
        assert!(shape("rules:\n  - id: a\n").is_ok());
        // Block nesting, which the flow-level limit of the parser does not cover.
        let deep = format!("rules:\n{}x\n", "- ".repeat(10_000));
        let e = shape(&deep).unwrap_err();
        assert!(e.starts_with("pasted:2:"), "{e}");
        assert!(e.contains("deeper than 64"), "{e}");
        let flow = format!("rules: {}", "[".repeat(200));
        assert!(shape(&flow).unwrap_err().contains("deeper than 64"));
        let wide = format!("rules: [{}]", "1, ".repeat(MAX_YAML_NODES + 10));
        assert!(shape(&wide).is_err());
        let huge = "#".repeat(MAX_RULES_TEXT + 1);
        assert!(shape(&huge).unwrap_err().contains("at most 256 KiB"));
        let bomb = format!(
            "a: &a [x, x]\nb: [{}]\n",
            vec!["*a"; MAX_YAML_ALIASES + 1].join(", ")
        );
        assert!(shape(&bomb).unwrap_err().contains("aliases"));
        // Syntax errors are the compiler's to report.
        assert!(shape("rules: [\n").is_ok());
    }

    fn config() -> Config {
        let text = "sources:\n  - { id: gh, provider: none }\n";
        crate::config::load_str(Path::new("hookwise.yaml"), text, &|_| None).unwrap()
    }

    fn sampled(seq: i64, payload: &str, skipped: bool) -> SampledEvent {
        SampledEvent {
            stored: crate::store::StoredEvent {
                seq,
                event: crate::store::NewEvent {
                    id: crate::model::EventId::new(),
                    source: "gh".into(),
                    delivery_id: format!("d{seq}"),
                    event_type: "push".into(),
                    received_at: Millis::now(),
                    headers: serde_json::json!({}),
                    payload: payload.into(),
                    status: crate::model::EventStatus::Planned,
                },
                match_trace: None,
                planned_at: None,
            },
            payload_skipped: skipped,
        }
    }

    #[test]
    fn time_bytes_and_payload_size_are_bounded() {
        let config = config();
        let rules = compile_text(
            "pasted",
            "rules:\n  - id: r\n    source: gh\n    events: [push]\n    when:\n      all:\n        - { path: $.ok, equals: true }\n    actions:\n      - plugin: notify\n        with: { webhook: \"http://x.example/{{ payload.ok }}\" }\n",
            &config,
        )
        .unwrap();
        let tried = vec!["r".to_string()];
        let later = Instant::now() + Duration::from_secs(60);
        let batch = vec![
            sampled(3, r#"{"ok": true}"#, false),
            sampled(2, r#"{"ok": false}"#, false),
            sampled(1, "", true),
            sampled(0, "not json", false),
        ];
        let budget = Budget {
            deadline: later,
            bytes_left: 1000,
        };
        let (done, left, stopped) = try_batch(&rules, &config, &tried, batch.clone(), budget);
        assert_eq!(stopped, None);
        assert_eq!(done.len(), 4);
        assert!(done[0].matched);
        assert_eq!(
            done[0].evaluation.matched[0].actions[0].input,
            Value::Null,
            "no real input kept"
        );
        assert_eq!(
            done[0].evaluation.matched[0].actions[0].input_redacted,
            serde_json::json!({"webhook": "http://x.example/True"})
        );
        assert!(!done[1].matched);
        assert!(done[1].evaluation.not_matched[0].reason.contains("equals"));
        assert!(
            done[2]
                .not_tried
                .as_deref()
                .unwrap()
                .contains("larger than 1 MiB")
        );
        assert!(
            done[3]
                .not_tried
                .as_deref()
                .unwrap()
                .contains("not readable JSON")
        );
        assert_eq!(left.bytes_left, 1000 - 12 - 13 - 8);

        // Out of time: nothing more is tried, and the reason is given.
        let past = Budget {
            deadline: Instant::now(),
            bytes_left: 1000,
        };
        let (done, _, stopped) = try_batch(&rules, &config, &tried, batch.clone(), past);
        assert!(done.is_empty());
        assert!(stopped.unwrap().contains("took more than 10s"));
        // Out of bytes: the event that does not fit is not read.
        let poor = Budget {
            deadline: later,
            bytes_left: 20,
        };
        let (done, _, stopped) = try_batch(&rules, &config, &tried, batch, poor);
        assert_eq!(done.len(), 1);
        assert!(stopped.unwrap().contains("64 MiB of payloads"));
    }

    #[test]
    fn pasted_rules_need_rules_and_get_places() {
        let config = config();
        let e = compile_text("pasted", "rules: []\n", &config).unwrap_err();
        assert!(
            e[0].to_string().starts_with("pasted:1:1: no rules"),
            "{e:?}"
        );
        let e = compile_text("pasted", "# nothing\n", &config).unwrap_err();
        assert!(e[0].to_string().starts_with("pasted:1:1: "), "{e:?}");
        let e = compile_text(
            "pasted",
            "rules:\n  - id: r\n    source: elsewhere\n    events: [push]\n    actions:\n      - plugin: notify\n",
            &config,
        )
        .unwrap_err();
        assert!(
            e.iter().any(|d| d.to_string().starts_with("pasted:3:")),
            "{e:?}"
        );
    }

    #[test]
    fn big_inputs_are_cut_small_ones_kept() {
        let small = serde_json::json!({"text": "hello"});
        assert_eq!(bounded(small.clone()), small);
        let big = serde_json::json!({"text": "x".repeat(MAX_SHOWN_INPUT * 2)});
        let cut = bounded(big);
        assert!(serde_json::to_string(&cut).unwrap().len() < MAX_SHOWN_INPUT);
    }
}
