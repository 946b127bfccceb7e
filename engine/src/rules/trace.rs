//! Match traces: what each condition selected and decided, bounded in size, plus the dry-run
//! JSON and text renderings of an evaluation.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use super::Evaluation;

/// At most this many selected values are kept per condition (the count is kept in full).
pub const MAX_TRACE_VALUES: usize = 10;
/// Strings in traces are cut after this many characters.
pub const MAX_TRACE_STRING: usize = 200;
/// Arrays and objects in traces keep at most this many entries.
pub const MAX_TRACE_ITEMS: usize = 20;
/// Nesting deeper than this is replaced by a marker.
pub const MAX_TRACE_DEPTH: usize = 4;
/// A value shown inside a one-line reason is cut after this many characters.
const MAX_REASON_VALUE: usize = 80;

/// The trace of one condition, nested like the condition itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConditionTrace {
    /// A `{path|header|event, operator}` leaf.
    Leaf(LeafTrace),
    /// `all`: holds when every condition held.
    All {
        at: String,
        result: bool,
        conditions: Vec<ConditionTrace>,
    },
    /// `any`: holds when one condition held.
    Any {
        at: String,
        result: bool,
        conditions: Vec<ConditionTrace>,
    },
    /// `not`: holds when the condition did not.
    Not {
        at: String,
        result: bool,
        condition: Box<ConditionTrace>,
    },
}

/// What one leaf condition looked at and decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeafTrace {
    /// Where the condition is written, e.g. `when.all[1]`.
    pub at: String,
    /// What it selects: a JSONPath, `header x-github-event` or `event.type`.
    pub selector: String,
    /// The selected values (at most `MAX_TRACE_VALUES`, each truncated).
    pub selected: Vec<Value>,
    /// How many values were selected in all.
    pub selected_count: usize,
    pub operator: &'static str,
    pub expected: Value,
    pub result: bool,
}

impl ConditionTrace {
    pub fn result(&self) -> bool {
        match self {
            ConditionTrace::Leaf(l) => l.result,
            ConditionTrace::All { result, .. }
            | ConditionTrace::Any { result, .. }
            | ConditionTrace::Not { result, .. } => *result,
        }
    }

    pub fn at(&self) -> &str {
        match self {
            ConditionTrace::Leaf(l) => &l.at,
            ConditionTrace::All { at, .. }
            | ConditionTrace::Any { at, .. }
            | ConditionTrace::Not { at, .. } => at,
        }
    }

    /// One sentence on why this (failed) condition failed, naming the deciding leaf.
    pub fn failure_reason(&self) -> String {
        match self {
            ConditionTrace::Leaf(l) => leaf_sentence(l),
            ConditionTrace::All { conditions, at, .. } => conditions
                .iter()
                .find(|c| !c.result())
                .map(ConditionTrace::failure_reason)
                .unwrap_or_else(|| format!("{at}: failed")),
            ConditionTrace::Any { conditions, at, .. } => {
                let first = conditions.first().map(ConditionTrace::failure_reason);
                match (conditions.len(), first) {
                    (1, Some(first)) => first,
                    (n, Some(first)) => {
                        format!("{at}: none of the {n} `any` conditions held ({first}; ...)")
                    }
                    (_, None) => format!("{at}: no conditions"),
                }
            }
            ConditionTrace::Not { at, condition, .. } => {
                format!("{at}: `not` failed because {}", condition.success_summary())
            }
        }
    }

    /// A short description of a condition that held (used under `not`).
    fn success_summary(&self) -> String {
        match self {
            ConditionTrace::Leaf(l) => leaf_sentence(l),
            other => format!("{} held", other.at()),
        }
    }
}

/// `when.all[0]: $.ref selected "refs/heads/dev", expected equals "refs/heads/main"`
fn leaf_sentence(l: &LeafTrace) -> String {
    format!(
        "{}: {} selected {}, expected {} {}",
        l.at,
        l.selector,
        selected_text(&l.selected, l.selected_count),
        l.operator,
        short(&l.expected)
    )
}

fn selected_text(values: &[Value], count: usize) -> String {
    match values {
        [] => "nothing".to_string(),
        [one] if count == 1 => short(one),
        _ => {
            let shown: Vec<String> = values.iter().take(3).map(short).collect();
            let more = if count > shown.len() { ", ..." } else { "" };
            format!("{count} values [{}{more}]", shown.join(", "))
        }
    }
}

/// A value as compact JSON, cut to a length fit for one line.
pub fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_REASON_VALUE {
        return text;
    }
    let cut: String = text.chars().take(MAX_REASON_VALUE).collect();
    format!("{cut}...")
}

/// A copy of `value` bounded in size for traces.
pub fn truncate(value: &Value) -> Value {
    truncate_at(value, 0)
}

fn truncate_at(value: &Value, depth: usize) -> Value {
    match value {
        // The byte length bounds the character count: most strings are not counted at all.
        Value::String(s) if s.len() > MAX_TRACE_STRING && s.chars().count() > MAX_TRACE_STRING => {
            let cut: String = s.chars().take(MAX_TRACE_STRING).collect();
            Value::String(format!("{cut}... ({} chars)", s.chars().count()))
        }
        Value::Array(items) if depth >= MAX_TRACE_DEPTH => {
            Value::String(format!("[... {} items]", items.len()))
        }
        Value::Object(map) if depth >= MAX_TRACE_DEPTH => {
            Value::String(format!("{{... {} keys}}", map.len()))
        }
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .take(MAX_TRACE_ITEMS)
                .map(|v| truncate_at(v, depth + 1))
                .collect();
            if items.len() > MAX_TRACE_ITEMS {
                out.push(Value::String(format!(
                    "... {} more",
                    items.len() - MAX_TRACE_ITEMS
                )));
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .take(MAX_TRACE_ITEMS)
                .map(|(k, v)| (k.clone(), truncate_at(v, depth + 1)))
                .collect();
            if map.len() > MAX_TRACE_ITEMS {
                out.insert(
                    "...".to_string(),
                    json!(format!("{} more keys", map.len() - MAX_TRACE_ITEMS)),
                );
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The `if:` part of a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IfTrace {
    pub expression: String,
    /// False when `when` failed first (the expression was not evaluated).
    pub evaluated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One action of a matched rule, as rendered (redacted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionTrace {
    pub index: usize,
    pub plugin: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything that was decided about one rule for one event. Contains no secret values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleTrace {
    pub rule: String,
    pub matched: bool,
    /// Why the index did not select the rule (only from `evaluate_all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_miss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<ConditionTrace>,
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub if_trace: Option<IfTrace>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionTrace>,
}

/// `{"matched": [{"rule", "actions": [{"plugin", "input"}]}], "not_matched": [{"rule", "reason"}]}`
/// with every input redacted.
pub fn dry_run_json(eval: &Evaluation) -> Value {
    let matched: Vec<Value> = eval
        .matched
        .iter()
        .map(|m| {
            let actions: Vec<Value> = m
                .actions
                .iter()
                .map(|a| json!({"plugin": a.plugin, "input": a.input_redacted}))
                .collect();
            json!({"rule": m.rule, "actions": actions})
        })
        .collect();
    let not_matched: Vec<Value> = eval
        .not_matched
        .iter()
        .map(|m| json!({"rule": m.rule, "reason": m.reason}))
        .collect();
    json!({"matched": matched, "not_matched": not_matched})
}

/// A human-readable report: every rule, matched or not and why, each condition with what it
/// selected, the `if` value, and the rendered (redacted) inputs of matched rules.
pub fn render_text(eval: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} rule(s) matched, {} did not",
        eval.matched.len(),
        eval.not_matched.len()
    );
    for m in &eval.matched {
        let _ = writeln!(out, "\nMATCHED {}", m.rule);
        write_conditions(&mut out, &m.trace);
        for a in &m.actions {
            let input = serde_json::to_string_pretty(&a.input_redacted).unwrap_or_default();
            let _ = writeln!(out, "  action[{}] {}:", a.index, a.plugin);
            for line in input.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    for m in &eval.not_matched {
        let _ = writeln!(out, "\nNOT MATCHED {}: {}", m.rule, m.reason);
        write_conditions(&mut out, &m.trace);
    }
    out
}

fn write_conditions(out: &mut String, trace: &RuleTrace) {
    if let Some(when) = &trace.when {
        write_condition(out, when, 1);
    }
    if let Some(i) = &trace.if_trace {
        let verdict = match (&i.error, i.result, &i.value) {
            (Some(e), _, _) => format!("error: {e}"),
            (None, Some(r), Some(v)) => {
                format!("{} ({})", if r { "true" } else { "false" }, short(v))
            }
            _ => "not evaluated".to_string(),
        };
        let _ = writeln!(out, "  if {}: {verdict}", i.expression);
    }
    for a in &trace.actions {
        if let Some(e) = &a.error {
            let _ = writeln!(out, "  action[{}] {}: {e}", a.index, a.plugin);
        }
    }
}

fn write_condition(out: &mut String, c: &ConditionTrace, depth: usize) {
    let pad = "  ".repeat(depth);
    let mark = |r: bool| if r { "ok  " } else { "FAIL" };
    match c {
        ConditionTrace::Leaf(l) => {
            let _ = writeln!(
                out,
                "{pad}[{}] {}: {} selected {} ({} {})",
                mark(l.result),
                l.at,
                l.selector,
                selected_text(&l.selected, l.selected_count),
                l.operator,
                short(&l.expected)
            );
        }
        ConditionTrace::All {
            at,
            result,
            conditions,
        } => {
            let _ = writeln!(out, "{pad}[{}] {at}: all of", mark(*result));
            for child in conditions {
                write_condition(out, child, depth + 1);
            }
        }
        ConditionTrace::Any {
            at,
            result,
            conditions,
        } => {
            let _ = writeln!(out, "{pad}[{}] {at}: any of", mark(*result));
            for child in conditions {
                write_condition(out, child, depth + 1);
            }
        }
        ConditionTrace::Not {
            at,
            result,
            condition,
        } => {
            let _ = writeln!(out, "{pad}[{}] {at}: not", mark(*result));
            write_condition(out, condition, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_bounds_strings_arrays_objects_and_depth() {
        let long = "x".repeat(1000);
        let v = truncate(&json!(long));
        assert!(v.as_str().is_some_and(|s| s.len() < 260), "{v}");
        let many: Vec<u32> = (0..100).collect();
        let v = truncate(&json!(many));
        assert_eq!(v.as_array().map(Vec::len), Some(MAX_TRACE_ITEMS + 1));
        let deep = json!({"a": {"b": {"c": {"d": {"e": [1]}}}}});
        assert_eq!(truncate(&deep)["a"]["b"]["c"]["d"], json!("{... 1 keys}"));
        let wide: serde_json::Map<String, Value> =
            (0..50).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let v = truncate(&Value::Object(wide));
        assert_eq!(v.as_object().map(|m| m.len()), Some(MAX_TRACE_ITEMS + 1));
    }

    fn leaf(at: &str, result: bool, selected: Vec<Value>) -> ConditionTrace {
        ConditionTrace::Leaf(LeafTrace {
            at: at.to_string(),
            selector: "$.commits".to_string(),
            selected_count: selected.len(),
            selected,
            operator: "not_empty",
            expected: json!(true),
            result,
        })
    }

    #[test]
    fn reasons_name_the_deciding_leaf() {
        let t = ConditionTrace::All {
            at: "when.all".into(),
            result: false,
            conditions: vec![
                leaf("when.all[0]", true, vec![]),
                leaf("when.all[1]", false, vec![json!([])]),
            ],
        };
        assert_eq!(
            t.failure_reason(),
            "when.all[1]: $.commits selected [], expected not_empty true"
        );
        let t = ConditionTrace::Any {
            at: "when".into(),
            result: false,
            conditions: vec![
                leaf("when.any[0]", false, vec![]),
                leaf("when.any[1]", false, vec![]),
            ],
        };
        assert_eq!(
            t.failure_reason(),
            "when: none of the 2 `any` conditions held (when.any[0]: $.commits selected \
             nothing, expected not_empty true; ...)"
        );
        let t = ConditionTrace::Not {
            at: "when.not".into(),
            result: false,
            condition: Box::new(leaf("when.not", true, vec![json!(1), json!(2)])),
        };
        assert!(
            t.failure_reason().contains("2 values [1, 2]"),
            "{}",
            t.failure_reason()
        );
    }
}
