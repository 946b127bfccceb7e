//! The rule engine: YAML rule files compiled once into an indexed `RuleSet`, pure matching of
//! events against it, rendering of action inputs, and traces of every decision.
//!
//! No I/O except `load_paths`, a thin shell over `compile_files`. The reference for users is
//! `docs/rules.md`.

mod compile;
pub mod condition;
pub mod config;
mod context;
pub mod index;
mod live;
mod reads;
pub mod template;
pub mod trace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub use compile::{
    DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, DEFAULT_MAX_BACKOFF, compile_files, load_paths,
};
pub use config::{RuleConfig, RuleFile, rule_file_schema, rule_file_schema_for_editors};
pub use live::{LiveRules, ReloadError, ReloadFailure, ReloadStatus};
pub use reads::PayloadReads;
pub use trace::{
    ActionTrace, ConditionTrace, IfTrace, LeafTrace, RuleTrace, dry_run_json, render_text,
};

use crate::schema::InputSchema;
use crate::units::format_duration;
use crate::yamldoc::Position;
use condition::Condition;
use index::{EventPattern, Index};
use template::{Expr, RenderContext, TNode, Templates};

/// What rule compilation checks references against.
pub struct CompileContext<'a> {
    /// Configured sources: (source id, provider id).
    pub sources: &'a [(String, String)],
    /// Names of the available plugins.
    pub plugins: &'a [String],
    /// The input schemas of the plugins that declare one, by plugin name.
    pub input_schemas: &'a BTreeMap<String, Arc<InputSchema>>,
    /// Secrets rules may reference as `${secret:NAME}`: name -> value.
    pub secrets: &'a BTreeMap<String, String>,
}

/// What rules may refer to: the configured sources (plus an extra one for dry runs), plugins
/// and secrets, owned.
pub struct RuleInputs {
    sources: Vec<(String, String)>,
    plugins: Vec<String>,
    input_schemas: BTreeMap<String, Arc<InputSchema>>,
    secrets: BTreeMap<String, String>,
}

impl RuleInputs {
    pub fn new(config: &crate::config::Config, extra: Option<(String, String)>) -> RuleInputs {
        let mut sources: Vec<(String, String)> = config
            .sources
            .iter()
            .map(|s| (s.id.clone(), s.provider.id().to_string()))
            .collect();
        sources.extend(extra);
        // hookwise's own events: a source no config names, with no provider behind it.
        sources.push((
            crate::model::OWN_SOURCE.to_string(),
            crate::model::OWN_SOURCE.to_string(),
        ));
        RuleInputs {
            sources,
            plugins: config.plugins.iter().map(|p| p.name.clone()).collect(),
            input_schemas: config
                .plugins
                .iter()
                .filter_map(|p| Some((p.name.clone(), p.input.clone()?)))
                .collect(),
            secrets: config
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect(),
        }
    }

    pub fn context(&self) -> CompileContext<'_> {
        CompileContext {
            sources: &self.sources,
            plugins: &self.plugins,
            input_schemas: &self.input_schemas,
            secrets: &self.secrets,
        }
    }
}

/// Rule paths of `config` that exist (the default `rules/` folder is optional).
pub fn rule_paths(config: &crate::config::Config) -> Vec<PathBuf> {
    config
        .rules
        .iter()
        .filter(|p| p.exists())
        .cloned()
        .collect()
}

/// Loads and compiles the rules `config` names, against its sources, plugins and secrets.
pub fn load_for(
    config: &crate::config::Config,
) -> Result<RuleSet, Vec<crate::yamldoc::Diagnostic>> {
    let inputs = RuleInputs::new(config, None);
    load_paths(&rule_paths(config), &inputs.context())
}

/// One event, as the rule engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub provider: &'a str,
    pub event_type: &'a str,
    /// RFC 3339.
    pub received_at: &'a str,
    pub headers: &'a BTreeMap<String, String>,
    /// Shared, so that template contexts refer to it instead of copying it.
    pub payload: &'a Arc<Value>,
}

/// A compiled, indexed set of rules.
pub struct RuleSet {
    rules: Vec<Rule>,
    index: Index,
    templates: Templates,
}

impl std::fmt::Debug for RuleSet {
    // Hand-written: the template environment holds secret values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.rules.iter().map(Rule::id).collect();
        f.debug_struct("RuleSet")
            .field("rules", &ids)
            .finish_non_exhaustive()
    }
}

/// What some rules of a rule set read of a payload (see [`RuleSet::payload_reads`]).
pub struct SelectedReads<'a> {
    rules: &'a [Rule],
    selected: std::borrow::Cow<'a, [usize]>,
}

impl SelectedReads<'_> {
    fn each(&self) -> impl Iterator<Item = &PayloadReads> {
        self.selected
            .iter()
            .filter_map(|&n| self.rules.get(n))
            .map(|r| &r.payload_reads)
    }

    /// Whether one of the rules may read the whole payload.
    pub fn reads_all(&self) -> bool {
        self.each().any(PayloadReads::reads_all)
    }

    /// Whether one of the rules may read the top-level member `name`.
    pub fn reads(&self, name: &str) -> bool {
        self.each().any(|r| r.reads(name))
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    id: String,
    description: Option<String>,
    sources: Vec<String>,
    events: Vec<EventPattern>,
    when: Option<Condition>,
    if_expr: Option<IfExpr>,
    actions: Vec<Action>,
    /// What its conditions and templates read of a payload.
    payload_reads: PayloadReads,
    file: PathBuf,
    position: Position,
}

#[derive(Debug)]
struct IfExpr {
    text: String,
    expr: Expr,
}

/// A compiled action.
#[derive(Debug)]
pub struct Action {
    plugin: String,
    with: TNode,
    /// The plugin's input schema: every rendered input is checked against it.
    input_schema: Option<Arc<InputSchema>>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    order_key: Option<TNode>,
    concurrency: Option<u32>,
}

impl Rule {
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    pub fn sources(&self) -> &[String] {
        &self.sources
    }
    /// The `events:` entries as written.
    pub fn events(&self) -> impl Iterator<Item = &str> {
        self.events.iter().map(EventPattern::as_str)
    }
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }
    /// The file the rule was read from and where the rule starts in it.
    pub fn location(&self) -> (&Path, Position) {
        (&self.file, self.position)
    }
    /// The `when:` conditions and the `if:` expression in one line each, for overviews.
    pub fn conditions_summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(when) = &self.when {
            out.push(format!("when {}", when.summary()));
        }
        if let Some(i) = &self.if_expr {
            out.push(format!("if {}", i.text));
        }
        out
    }
    /// Whether the index would select this rule for (source, event type).
    pub fn applies_to(&self, source: &str, event_type: &str) -> bool {
        self.sources.iter().any(|s| s == source)
            && self.events.iter().any(|e| e.matches(event_type))
    }
}

impl Action {
    pub fn plugin(&self) -> &str {
        &self.plugin
    }
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    pub fn concurrency(&self) -> Option<u32> {
        self.concurrency
    }
}

/// How an action's failed attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt.
    pub backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: DEFAULT_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based), before jitter: `backoff`
    /// doubled per attempt, capped at `max_backoff`. None when no attempt is left.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt == 0 || attempt >= self.attempts {
            return None;
        }
        let factor = 2u32.checked_pow(attempt - 1).unwrap_or(u32::MAX);
        Some(
            self.backoff
                .checked_mul(factor)
                .unwrap_or(self.max_backoff)
                .min(self.max_backoff),
        )
    }
}

impl Serialize for RetryPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("RetryPolicy", 3)?;
        st.serialize_field("attempts", &self.attempts)?;
        st.serialize_field("backoff", &format_duration(self.backoff))?;
        st.serialize_field("max_backoff", &format_duration(self.max_backoff))?;
        st.end()
    }
}

fn serialize_timeout<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// One action to plan for a matched rule.
#[derive(Clone, Serialize)]
pub struct PlannedAction {
    pub plugin: String,
    /// Position of the action in the rule (part of the idempotency key).
    pub index: usize,
    /// The rendered input, secrets included: for the plugin only, never shown or stored.
    #[serde(skip)]
    pub input: Value,
    /// The rendered input with every secret shown as `${secret:NAME}`.
    #[serde(rename = "input")]
    pub input_redacted: Value,
    pub retry: RetryPolicy,
    #[serde(serialize_with = "serialize_timeout")]
    pub timeout: Option<Duration>,
    pub order_key: Option<String>,
    pub concurrency: Option<u32>,
}

impl std::fmt::Debug for PlannedAction {
    // Hand-written so the secret-bearing input never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedAction")
            .field("plugin", &self.plugin)
            .field("index", &self.index)
            .field("input", &self.input_redacted)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("order_key", &self.order_key)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// A rule that matched, with its planned actions.
#[derive(Debug, Clone, Serialize)]
pub struct RuleMatch {
    pub rule: String,
    pub actions: Vec<PlannedAction>,
    pub trace: RuleTrace,
}

/// A rule that did not match (or failed to render), and why in one sentence.
#[derive(Debug, Clone, Serialize)]
pub struct RuleMiss {
    pub rule: String,
    pub reason: String,
    pub trace: RuleTrace,
}

/// The result of matching one event: one entry per rule considered, in rule-set order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluation {
    pub matched: Vec<RuleMatch>,
    pub not_matched: Vec<RuleMiss>,
}

impl RuleSet {
    /// A rule set with no rules.
    pub fn empty() -> RuleSet {
        RuleSet {
            rules: Vec::new(),
            index: Index::default(),
            templates: Templates::new(&BTreeMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in order (files in the order given, rules in the order written).
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Whether the index selects any rule for (source, event type): when it selects none,
    /// [`RuleSet::evaluate`] looks at nothing else and finds no match.
    pub fn selects_any(&self, source: &str, event_type: &str) -> bool {
        !self.index.candidates(source, event_type).is_empty()
    }

    /// What the rules the index selects for (source, event type) read of a payload: what a
    /// payload parsed for matching an event of that source and type must hold.
    pub fn payload_reads(&self, source: &str, event_type: &str) -> SelectedReads<'_> {
        SelectedReads {
            rules: &self.rules,
            selected: self.index.candidates(source, event_type),
        }
    }

    /// Matches an event against the rules the index selects for its (source, event type).
    pub fn evaluate(&self, ev: &EventView<'_>) -> Evaluation {
        let mut out = Evaluation::default();
        let mut ctx = None;
        for &n in self.index.candidates(ev.source, ev.event_type).iter() {
            if let Some(rule) = self.rules.get(n) {
                self.evaluate_rule(rule, ev, &mut ctx, &mut out);
            }
        }
        out
    }

    /// Like `evaluate`, but also lists the rules the index did not select, with the reason
    /// (for dry runs, where every rule should be accounted for).
    pub fn evaluate_all(&self, ev: &EventView<'_>) -> Evaluation {
        let candidates = self.index.candidates(ev.source, ev.event_type);
        let mut out = Evaluation::default();
        let mut ctx = None;
        for (n, rule) in self.rules.iter().enumerate() {
            if candidates.binary_search(&n).is_ok() {
                self.evaluate_rule(rule, ev, &mut ctx, &mut out);
                continue;
            }
            let reason = if !rule.sources.iter().any(|s| s == ev.source) {
                format!(
                    "source {} is not in [{}]",
                    ev.source,
                    rule.sources.join(", ")
                )
            } else {
                let events: Vec<&str> = rule.events().collect();
                format!(
                    "event type {} does not match [{}]",
                    ev.event_type,
                    events.join(", ")
                )
            };
            out.not_matched.push(RuleMiss {
                rule: rule.id.clone(),
                trace: RuleTrace {
                    rule: rule.id.clone(),
                    matched: false,
                    index_miss: Some(reason.clone()),
                    when: None,
                    if_trace: None,
                    actions: Vec::new(),
                },
                reason,
            });
        }
        out
    }

    fn evaluate_rule(
        &self,
        rule: &Rule,
        ev: &EventView<'_>,
        ctx: &mut Option<RenderContext>,
        out: &mut Evaluation,
    ) {
        let mut trace = RuleTrace {
            rule: rule.id.clone(),
            matched: false,
            index_miss: None,
            when: None,
            if_trace: None,
            actions: Vec::new(),
        };
        let miss = |reason: String, mut trace: RuleTrace, out: &mut Evaluation| {
            trace.matched = false;
            out.not_matched.push(RuleMiss {
                rule: rule.id.clone(),
                reason,
                trace,
            });
        };

        let when_failure = rule.when.as_ref().and_then(|when| {
            let t = when.evaluate(ev, "when");
            let failure = (!t.result()).then(|| t.failure_reason());
            trace.when = Some(t);
            failure
        });
        if let Some(reason) = when_failure {
            trace.if_trace = rule.if_expr.as_ref().map(|i| IfTrace {
                expression: i.text.clone(),
                evaluated: false,
                value: None,
                result: None,
                error: None,
            });
            return miss(reason, trace, out);
        }

        let ctx = ctx.get_or_insert_with(|| RenderContext::new(ev));
        if let Some(i) = &rule.if_expr {
            let mut t = IfTrace {
                expression: i.text.clone(),
                evaluated: true,
                value: None,
                result: None,
                error: None,
            };
            let reason = match self.templates.eval_if(&i.expr, ctx) {
                Ok((value, truthy)) => {
                    let reason = (!truthy).then(|| {
                        format!("if: `{}` is false (value {})", i.text, trace::short(&value))
                    });
                    t.value = Some(trace::truncate(&value));
                    t.result = Some(truthy);
                    reason
                }
                Err(e) => {
                    let reason = format!("if error: {e}");
                    t.error = Some(e);
                    Some(reason)
                }
            };
            trace.if_trace = Some(t);
            if let Some(reason) = reason {
                return miss(reason, trace, out);
            }
        }

        let mut planned = Vec::new();
        let mut failure = None;
        for (index, action) in rule.actions.iter().enumerate() {
            let mut at = ActionTrace {
                index,
                plugin: action.plugin.clone(),
                input: None,
                order_key: None,
                error: None,
            };
            match self.render(action, index, ctx) {
                Ok(p) => {
                    at.input = Some(p.input_redacted.clone());
                    at.order_key.clone_from(&p.order_key);
                    planned.push(p);
                }
                Err(e) => {
                    failure.get_or_insert_with(|| e.reason());
                    at.error = Some(e.detail);
                }
            }
            trace.actions.push(at);
        }
        if let Some(reason) = failure {
            // All or nothing: a rule whose inputs cannot all be rendered plans no action.
            return miss(reason, trace, out);
        }
        trace.matched = true;
        out.matched.push(RuleMatch {
            rule: rule.id.clone(),
            actions: planned,
            trace,
        });
    }
}

impl RuleSet {
    /// Renders one action of a rule for an event, without evaluating the rule's conditions
    /// (they were evaluated when the event was planned). Used when the action runs, so that
    /// rendered inputs, which may hold secrets, are never stored.
    pub fn render_action(
        &self,
        rule_id: &str,
        index: usize,
        ev: &EventView<'_>,
    ) -> Result<PlannedAction, String> {
        let rule = self
            .get(rule_id)
            .ok_or_else(|| format!("rule `{rule_id}` is not loaded any more"))?;
        let action = rule.actions.get(index).ok_or_else(|| {
            format!(
                "rule `{rule_id}` has no action {index} any more (it has {})",
                rule.actions.len()
            )
        })?;
        let ctx = RenderContext::new(ev);
        self.render(action, index, &ctx).map_err(|e| e.reason())
    }

    fn render(
        &self,
        action: &Action,
        index: usize,
        ctx: &RenderContext,
    ) -> Result<PlannedAction, RenderFailure> {
        let rendered = self
            .templates
            .render_tree(&action.with, ctx, format_args!("actions[{index}].with"))
            .map_err(RenderFailure::template)?;
        if let Some(schema) = &action.input_schema {
            // The input as shown, secrets as `${secret:NAME}` references: what the rule wrote
            // is checked, and no message can quote a secret.
            let problems = schema.check_rendered(&rendered.redacted);
            if !problems.is_empty() {
                return Err(RenderFailure::input(&action.plugin, index, &problems));
            }
        }
        let order_key = match &action.order_key {
            Some(node) => Some(
                self.templates
                    .render_tree(node, ctx, format_args!("actions[{index}].order_key"))
                    .map(|r| key_text(r.real))
                    .map_err(RenderFailure::template)?,
            ),
            None => None,
        };
        Ok(PlannedAction {
            plugin: action.plugin.clone(),
            index,
            input: rendered.real,
            input_redacted: rendered.redacted,
            retry: action.retry,
            timeout: action.timeout,
            order_key,
            concurrency: action.concurrency,
        })
    }
}

/// Why an action's input could not be made: a template failed, or the rendered input does not
/// fit the plugin's input schema.
struct RenderFailure {
    template: bool,
    /// What went wrong, as the trace shows it.
    detail: String,
}

impl RenderFailure {
    fn template(e: impl std::fmt::Display) -> RenderFailure {
        RenderFailure {
            template: true,
            detail: e.to_string(),
        }
    }

    fn input(
        plugin: &str,
        index: usize,
        problems: &[crate::schema::InputProblem],
    ) -> RenderFailure {
        let listed: Vec<String> = problems
            .iter()
            .map(|p| {
                let at = crate::yamldoc::display_pointer(&format!("/with{}", p.pointer));
                format!("actions[{index}].{at}: {}", p.message)
            })
            .collect();
        RenderFailure {
            template: false,
            detail: format!(
                "the input does not fit plugin `{plugin}`'s input schema: {}",
                listed.join("; ")
            ),
        }
    }

    /// Why the rule planned nothing, or why the action cannot run.
    fn reason(&self) -> String {
        if self.template {
            format!("template error: {}", self.detail)
        } else {
            self.detail.clone()
        }
    }
}

fn key_text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
