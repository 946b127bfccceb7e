//! Structured conditions: compiled once from `ConditionConfig` (JSONPaths parsed, regexes built,
//! operands normalised), then evaluated against events with a trace of every decision.
//!
//! Semantics (documented in rules.md):
//! - a selector yields zero or more values; a positive operator holds when ANY value satisfies it;
//! - `not_equals`, `not_in`, `not_contains`, `exists: false` and `not_empty: false` are exact
//!   negations of their positive forms: they hold when NO selected value satisfies the positive
//!   operator, so they also hold when nothing is selected;
//! - no type coercion for equality (`"1"` is not `1`, `null` is not `""`); numbers compare by value;
//! - ordering compares numbers with numbers, RFC 3339 times with times, other strings as text,
//!   and a numeric string with a number numerically.

use std::cmp::Ordering;
use std::fmt::Write as _;

use regex::Regex;
use serde_json::{Number, Value};
use serde_json_path::JsonPath;

use super::EventView;
use super::config::{ConditionConfig, EventField, Ordered};
use super::reads::PayloadReads;
use super::trace::{ConditionTrace, LeafTrace, MAX_TRACE_VALUES, truncate};

/// Largest compiled regex program, in bytes (the regex crate's own bound on pattern size).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Deepest nesting of `all`/`any`/`not` accepted.
const MAX_CONDITION_DEPTH: usize = 32;
/// Longest one-line summary of a condition ([`Condition::summary`]).
pub const MAX_SUMMARY: usize = 300;

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Condition {
    Leaf(Box<Leaf>),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

/// A compiled leaf: what to select and how to test it, and the parts of its trace that do not
/// depend on the event, made once.
#[derive(Debug, Clone)]
pub struct Leaf {
    selector: Selector,
    op: Op,
    /// What the selector selects, as traces show it (`Selector::describe`).
    described: String,
    /// The operand as written, bounded for traces (`truncate`).
    expected: Value,
}

#[derive(Debug, Clone)]
enum Selector {
    Path {
        path: JsonPath,
        /// The same path when it is simple enough to be queried directly.
        simple: Option<SimplePath>,
        text: String,
    },
    /// Lower-cased header name.
    Header(String),
    Event(EventField),
}

impl Selector {
    fn describe(&self) -> String {
        match self {
            Selector::Path { text, .. } => text.clone(),
            Selector::Header(name) => format!("header {name}"),
            Selector::Event(field) => format!("event.{}", field.name()),
        }
    }

    /// The values a header or event selector selects (a path selects from the payload).
    fn select_owned(&self, ev: &EventView<'_>) -> Vec<Value> {
        match self {
            Selector::Path { .. } => Vec::new(),
            Selector::Header(name) => ev
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| Value::String(v.clone()))
                .collect(),
            Selector::Event(field) => {
                let text = match field {
                    EventField::Id => ev.id,
                    EventField::Type => ev.event_type,
                    EventField::Source => ev.source,
                    EventField::Provider => ev.provider,
                    EventField::ReceivedAt => ev.received_at,
                };
                vec![Value::String(text.to_string())]
            }
        }
    }
}

/// A JSONPath made only of child segments that name a member (`.name`), take every item
/// (`.*`, `[*]`) or index an array (`[2]`, `[-1]`), as most paths in rules are. Queried
/// directly into one list rather than through serde_json_path's general evaluator, which builds
/// a list per segment; the values selected and their order are the same.
#[derive(Debug, Clone)]
struct SimplePath(Box<[PathStep]>);

#[derive(Debug, Clone)]
enum PathStep {
    Name(Box<str>),
    Wildcard,
    Index(i64),
}

impl SimplePath {
    /// Reads the canonical form serde_json_path prints for a parsed path (`$.a.*[*][0]`), so
    /// the steps are those of its own parse; None for any other segment. A name is taken only
    /// in dotted form, which the printer uses for names without quotes, and only when it is
    /// ASCII (`[A-Za-z_][A-Za-z0-9_]*`).
    fn from_parsed(path: &JsonPath) -> Option<SimplePath> {
        let text = path.to_string();
        let mut rest = text.strip_prefix('$')?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix(".*").or_else(|| rest.strip_prefix("[*]")) {
                steps.push(PathStep::Wildcard);
                rest = after;
            } else if let Some(after) = rest.strip_prefix('.') {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                    return None;
                }
                steps.push(PathStep::Name(name.into()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let (index, after) = after.split_once(']')?;
                let digits = index.strip_prefix('-').unwrap_or(index);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                steps.push(PathStep::Index(index.parse().ok()?));
                rest = after;
            } else {
                return None;
            }
        }
        Some(SimplePath(steps.into()))
    }

    fn query<'v>(&self, root: &'v Value) -> Vec<&'v Value> {
        let mut out = Vec::new();
        select_steps(&self.0, root, &mut out);
        out
    }
}

/// Depth first, which lists the values in the order of a query made segment by segment.
fn select_steps<'v>(steps: &[PathStep], node: &'v Value, out: &mut Vec<&'v Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(node);
        return;
    };
    match (step, node) {
        (PathStep::Name(name), Value::Object(map)) => {
            if let Some(v) = map.get(&**name) {
                select_steps(rest, v, out);
            }
        }
        (PathStep::Wildcard, Value::Array(items)) => {
            for v in items {
                select_steps(rest, v, out);
            }
        }
        (PathStep::Wildcard, Value::Object(map)) => {
            for v in map.values() {
                select_steps(rest, v, out);
            }
        }
        (PathStep::Index(i), Value::Array(items)) => {
            let at = if *i < 0 {
                usize::try_from(i.unsigned_abs())
                    .ok()
                    .and_then(|back| items.len().checked_sub(back))
            } else {
                usize::try_from(*i).ok()
            };
            if let Some(v) = at.and_then(|at| items.get(at)) {
                select_steps(rest, v, out);
            }
        }
        _ => {}
    }
}

/// An ordering operand with its possible readings precomputed.
#[derive(Debug, Clone)]
struct OrderOperand {
    value: Value,
    time: Option<Instant>,
    number: Option<Num>,
}

#[derive(Debug, Clone)]
enum Op {
    Equals(Value),
    NotEquals(Value),
    IEquals(String),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Contains(Value),
    NotContains(Value),
    IContains(String),
    StartsWith(String),
    EndsWith(String),
    Matches(Box<Regex>),
    Exists(bool),
    NotEmpty(bool),
    Gt(OrderOperand),
    Gte(OrderOperand),
    Lt(OrderOperand),
    Lte(OrderOperand),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Equals(_) => "equals",
            Op::NotEquals(_) => "not_equals",
            Op::IEquals(_) => "iequals",
            Op::In(_) => "in",
            Op::NotIn(_) => "not_in",
            Op::Contains(_) => "contains",
            Op::NotContains(_) => "not_contains",
            Op::IContains(_) => "icontains",
            Op::StartsWith(_) => "starts_with",
            Op::EndsWith(_) => "ends_with",
            Op::Matches(_) => "matches",
            Op::Exists(_) => "exists",
            Op::NotEmpty(_) => "not_empty",
            Op::Gt(_) => "gt",
            Op::Gte(_) => "gte",
            Op::Lt(_) => "lt",
            Op::Lte(_) => "lte",
        }
    }

    /// The operator's verdict over all selected values.
    fn holds(&self, values: &[&Value]) -> bool {
        let any = |f: &dyn Fn(&Value) -> bool| values.iter().any(|v| f(v));
        match self {
            Op::Equals(e) => any(&|v| json_eq(v, e)),
            Op::NotEquals(e) => !any(&|v| json_eq(v, e)),
            Op::IEquals(e) => any(&|v| v.as_str().is_some_and(|s| s.to_lowercase() == *e)),
            Op::In(list) => any(&|v| list.iter().any(|e| json_eq(v, e))),
            Op::NotIn(list) => !any(&|v| list.iter().any(|e| json_eq(v, e))),
            Op::Contains(e) => any(&|v| contains(v, e)),
            Op::NotContains(e) => !any(&|v| contains(v, e)),
            Op::IContains(e) => any(&|v| icontains(v, e)),
            Op::StartsWith(p) => any(&|v| v.as_str().is_some_and(|s| s.starts_with(p.as_str()))),
            Op::EndsWith(p) => any(&|v| v.as_str().is_some_and(|s| s.ends_with(p.as_str()))),
            Op::Matches(re) => any(&|v| v.as_str().is_some_and(|s| re.is_match(s))),
            Op::Exists(want) => values.is_empty() != *want,
            Op::NotEmpty(want) => any(&|v| !is_empty(v)) == *want,
            Op::Gt(e) => any(&|v| compare(v, e) == Some(Ordering::Greater)),
            Op::Gte(e) => {
                any(&|v| matches!(compare(v, e), Some(Ordering::Greater | Ordering::Equal)))
            }
            Op::Lt(e) => any(&|v| compare(v, e) == Some(Ordering::Less)),
            Op::Lte(e) => any(&|v| matches!(compare(v, e), Some(Ordering::Less | Ordering::Equal))),
        }
    }
}

impl Condition {
    /// Adds the payload members this condition's paths read to `reads`.
    pub(super) fn add_reads(&self, reads: &mut PayloadReads) {
        match self {
            Condition::Leaf(leaf) => match &leaf.selector {
                Selector::Path { path, .. } => reads.add_path(&path.to_string()),
                Selector::Header(_) | Selector::Event(_) => {}
            },
            Condition::All(items) | Condition::Any(items) => {
                items.iter().for_each(|c| c.add_reads(reads));
            }
            Condition::Not(inner) => inner.add_reads(reads),
        }
    }

    /// The condition in one line, as an overview shows it: `$.ref equals "refs/heads/main"`,
    /// `all(A; B)`, `any(A | B)`, `not(A)`. Operands are cut like trace values; the whole is
    /// at most about [`MAX_SUMMARY`] characters.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        self.write_summary(&mut out);
        if out.chars().count() > MAX_SUMMARY {
            out = out.chars().take(MAX_SUMMARY).collect();
            out.push_str("...");
        }
        out
    }

    fn write_summary(&self, out: &mut String) {
        if out.len() > MAX_SUMMARY * 4 {
            return;
        }
        let list = |out: &mut String, name: &str, children: &[Condition], sep: &str| {
            out.push_str(name);
            out.push('(');
            for (i, c) in children.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                c.write_summary(out);
            }
            out.push(')');
        };
        match self {
            Condition::Leaf(l) => {
                out.push_str(&format!(
                    "{} {} {}",
                    l.described,
                    l.op.name(),
                    super::trace::short(&l.expected)
                ));
            }
            Condition::All(children) => list(out, "all", children, "; "),
            Condition::Any(children) => list(out, "any", children, " | "),
            Condition::Not(inner) => {
                out.push_str("not(");
                inner.write_summary(out);
                out.push(')');
            }
        }
    }

    /// Evaluates the condition; `at` names it in the trace (`when`, `when.all[1]`, ...).
    pub fn evaluate(&self, ev: &EventView<'_>, at: &str) -> ConditionTrace {
        self.trace(ev, &mut at.to_string())
    }

    /// `evaluate` with the name in a buffer that children extend and restore.
    fn trace(&self, ev: &EventView<'_>, at: &mut String) -> ConditionTrace {
        match self {
            Condition::Leaf(leaf) => ConditionTrace::Leaf(leaf.trace(ev, at.clone())),
            // Every child is evaluated (no short-circuit) so a trace explains all of them;
            // conditions are cheap next to the plugin calls they gate.
            Condition::All(children) => {
                let conditions = trace_children(children, ev, at, "all");
                ConditionTrace::All {
                    at: at.clone(),
                    result: conditions.iter().all(ConditionTrace::result),
                    conditions,
                }
            }
            Condition::Any(children) => {
                let conditions = trace_children(children, ev, at, "any");
                ConditionTrace::Any {
                    at: at.clone(),
                    result: conditions.iter().any(ConditionTrace::result),
                    conditions,
                }
            }
            Condition::Not(inner) => {
                let len = at.len();
                at.push_str(".not");
                let condition = inner.trace(ev, at);
                at.truncate(len);
                ConditionTrace::Not {
                    at: at.clone(),
                    result: !condition.result(),
                    condition: Box::new(condition),
                }
            }
        }
    }
}

/// The traces of `children` of an `all` or `any` (`kind`), named `{at}.{kind}[{i}]`.
fn trace_children(
    children: &[Condition],
    ev: &EventView<'_>,
    at: &mut String,
    kind: &str,
) -> Vec<ConditionTrace> {
    let len = at.len();
    children
        .iter()
        .enumerate()
        .map(|(i, c)| {
            at.push('.');
            at.push_str(kind);
            match u8::try_from(i) {
                // Most conditions have fewer than ten children: no formatting machinery.
                Ok(digit @ 0..=9) => {
                    at.push('[');
                    at.push(char::from(b'0' + digit));
                    at.push(']');
                }
                _ => {
                    let _ = write!(at, "[{i}]");
                }
            }
            let trace = c.trace(ev, at);
            at.truncate(len);
            trace
        })
        .collect()
}

impl Leaf {
    fn trace(&self, ev: &EventView<'_>, at: String) -> LeafTrace {
        let owned;
        let values: Vec<&Value> = match &self.selector {
            Selector::Path {
                simple: Some(simple),
                ..
            } => simple.query(ev.payload),
            Selector::Path { path, .. } => path.query(ev.payload).all(),
            other => {
                owned = other.select_owned(ev);
                owned.iter().collect()
            }
        };
        LeafTrace {
            at,
            selector: self.described.clone(),
            selected: values
                .iter()
                .take(MAX_TRACE_VALUES)
                .map(|v| truncate(v))
                .collect(),
            selected_count: values.len(),
            operator: self.op.name(),
            expected: self.expected.clone(),
            result: self.op.holds(&values),
        }
    }
}

/// A compile problem: JSON pointer (relative to the rule file) and message.
pub type Problem = (String, String);

/// Compiles a condition written at `pointer`; collects every problem found.
pub fn compile(
    cfg: &ConditionConfig,
    pointer: &str,
    problems: &mut Vec<Problem>,
) -> Option<Condition> {
    compile_at(cfg, pointer, 0, problems)
}

fn compile_at(
    cfg: &ConditionConfig,
    pointer: &str,
    depth: usize,
    problems: &mut Vec<Problem>,
) -> Option<Condition> {
    if depth > MAX_CONDITION_DEPTH {
        problems.push((
            pointer.to_string(),
            format!("conditions nest deeper than {MAX_CONDITION_DEPTH}"),
        ));
        return None;
    }
    let selectors: Vec<&str> = [
        cfg.path.as_ref().map(|_| "path"),
        cfg.header.as_ref().map(|_| "header"),
        cfg.event.as_ref().map(|_| "event"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let combinators: Vec<&str> = [
        cfg.all.as_ref().map(|_| "all"),
        cfg.any.as_ref().map(|_| "any"),
        cfg.not.as_ref().map(|_| "not"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let operators = operator_names(cfg);

    if !combinators.is_empty() {
        if combinators.len() > 1 || !selectors.is_empty() || !operators.is_empty() {
            let mut keys = combinators.clone();
            keys.extend(&selectors);
            keys.extend(&operators);
            problems.push((
                pointer.to_string(),
                format!(
                    "a condition is either one combinator (all, any, not) or a leaf; this one has {}",
                    quoted(&keys)
                ),
            ));
            return None;
        }
        return compile_combinator(cfg, pointer, depth, problems);
    }

    let selector = match selectors.as_slice() {
        [_] => compile_selector(cfg, pointer, problems)?,
        [] => {
            let msg = if operators.is_empty() {
                "empty condition: expected `path`, `header` or `event` with an operator, or `all`, \
                 `any` or `not`"
                    .to_string()
            } else {
                format!(
                    "condition with {} needs `path`, `header` or `event`",
                    quoted(&operators)
                )
            };
            problems.push((pointer.to_string(), msg));
            return None;
        }
        many => {
            problems.push((
                pointer.to_string(),
                format!(
                    "a condition selects with one of path, header, event; this one has {}",
                    quoted(many)
                ),
            ));
            return None;
        }
    };
    match operators.as_slice() {
        [_] => {}
        [] => {
            problems.push((
                pointer.to_string(),
                "condition has no operator (equals, not_equals, iequals, in, not_in, contains, \
                 not_contains, icontains, starts_with, ends_with, matches, exists, not_empty, gt, \
                 gte, lt, lte)"
                    .to_string(),
            ));
            return None;
        }
        many => {
            problems.push((
                pointer.to_string(),
                format!(
                    "one operator per condition; this one has {} (combine conditions with `all`)",
                    quoted(many)
                ),
            ));
            return None;
        }
    }
    let (op, expected) = compile_operator(cfg, pointer, problems)?;
    Some(Condition::Leaf(Box::new(Leaf {
        described: selector.describe(),
        selector,
        op,
        expected: truncate(&expected),
    })))
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn operator_names(cfg: &ConditionConfig) -> Vec<&'static str> {
    let present: [(&'static str, bool); 17] = [
        ("equals", cfg.equals.is_some()),
        ("not_equals", cfg.not_equals.is_some()),
        ("iequals", cfg.iequals.is_some()),
        ("in", cfg.in_list.is_some()),
        ("not_in", cfg.not_in.is_some()),
        ("contains", cfg.contains.is_some()),
        ("not_contains", cfg.not_contains.is_some()),
        ("icontains", cfg.icontains.is_some()),
        ("starts_with", cfg.starts_with.is_some()),
        ("ends_with", cfg.ends_with.is_some()),
        ("matches", cfg.matches.is_some()),
        ("exists", cfg.exists.is_some()),
        ("not_empty", cfg.not_empty.is_some()),
        ("gt", cfg.gt.is_some()),
        ("gte", cfg.gte.is_some()),
        ("lt", cfg.lt.is_some()),
        ("lte", cfg.lte.is_some()),
    ];
    present
        .into_iter()
        .filter(|(_, p)| *p)
        .map(|(n, _)| n)
        .collect()
}

fn compile_combinator(
    cfg: &ConditionConfig,
    pointer: &str,
    depth: usize,
    problems: &mut Vec<Problem>,
) -> Option<Condition> {
    let list = |name: &str, items: &[ConditionConfig], problems: &mut Vec<Problem>| {
        if items.is_empty() {
            problems.push((
                format!("{pointer}/{name}"),
                format!("`{name}` needs at least one condition"),
            ));
            return None;
        }
        let compiled: Vec<Option<Condition>> = items
            .iter()
            .enumerate()
            .map(|(i, c)| compile_at(c, &format!("{pointer}/{name}/{i}"), depth + 1, problems))
            .collect();
        compiled.into_iter().collect::<Option<Vec<_>>>()
    };
    if let Some(items) = &cfg.all {
        return list("all", items, problems).map(Condition::All);
    }
    if let Some(items) = &cfg.any {
        return list("any", items, problems).map(Condition::Any);
    }
    let inner = cfg.not.as_deref()?;
    compile_at(inner, &format!("{pointer}/not"), depth + 1, problems)
        .map(|c| Condition::Not(Box::new(c)))
}

fn compile_selector(
    cfg: &ConditionConfig,
    pointer: &str,
    problems: &mut Vec<Problem>,
) -> Option<Selector> {
    if let Some(text) = &cfg.path {
        let depth = path_nesting(text);
        if depth > MAX_PATH_NESTING {
            problems.push((
                format!("{pointer}/path"),
                format!(
                    "JSONPath `{}` nests brackets and parentheses {depth} deep; at most \
                     {MAX_PATH_NESTING} are allowed",
                    clip_path_text(text)
                ),
            ));
            return None;
        }
        if escape_cut_short(text) {
            problems.push((
                format!("{pointer}/path"),
                format!(
                    "invalid JSONPath `{}`: a `\\u` escape needs four hex digits",
                    clip_path_text(text)
                ),
            ));
            return None;
        }
        return match parse_path(text) {
            Some(Ok(path)) => Some(Selector::Path {
                simple: SimplePath::from_parsed(&path),
                path,
                text: text.clone(),
            }),
            Some(Err(e)) => {
                problems.push((
                    format!("{pointer}/path"),
                    format!(
                        "invalid JSONPath `{text}`: {} (at character {}); paths start with `$`, \
                         e.g. `$.pull_request.title`",
                        e.message(),
                        e.position() + 1
                    ),
                ));
                None
            }
            None => {
                problems.push((
                    format!("{pointer}/path"),
                    format!(
                        "invalid JSONPath `{}`: the JSONPath parser failed on it (an escape \
                         such as `\\u` cut short?)",
                        clip_path_text(text)
                    ),
                ));
                None
            }
        };
    }
    if let Some(name) = &cfg.header {
        let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !valid {
            problems.push((
                format!("{pointer}/header"),
                format!("invalid header name `{name}`"),
            ));
            return None;
        }
        return Some(Selector::Header(name.to_ascii_lowercase()));
    }
    cfg.event.map(Selector::Event)
}

fn compile_operator(
    cfg: &ConditionConfig,
    pointer: &str,
    problems: &mut Vec<Problem>,
) -> Option<(Op, Value)> {
    let s = |v: &String| Value::String(v.clone());
    let list = |l: &Vec<Value>| Value::Array(l.clone());
    let ordered = |o: &Ordered| OrderOperand {
        value: o.to_value(),
        time: match o {
            Ordered::Text(t) => parse_time(t),
            Ordered::Number(_) => None,
        },
        number: match o {
            Ordered::Number(n) => Num::from_number(n),
            Ordered::Text(t) => Num::parse(t),
        },
    };
    let out = if let Some(v) = &cfg.equals {
        (Op::Equals(v.clone()), v.clone())
    } else if let Some(v) = &cfg.not_equals {
        (Op::NotEquals(v.clone()), v.clone())
    } else if let Some(v) = &cfg.iequals {
        (Op::IEquals(v.to_lowercase()), s(v))
    } else if let Some(v) = &cfg.in_list {
        (Op::In(v.clone()), list(v))
    } else if let Some(v) = &cfg.not_in {
        (Op::NotIn(v.clone()), list(v))
    } else if let Some(v) = &cfg.contains {
        (Op::Contains(v.clone()), v.clone())
    } else if let Some(v) = &cfg.not_contains {
        (Op::NotContains(v.clone()), v.clone())
    } else if let Some(v) = &cfg.icontains {
        (Op::IContains(v.to_lowercase()), s(v))
    } else if let Some(v) = &cfg.starts_with {
        (Op::StartsWith(v.clone()), s(v))
    } else if let Some(v) = &cfg.ends_with {
        (Op::EndsWith(v.clone()), s(v))
    } else if let Some(v) = &cfg.matches {
        match regex::RegexBuilder::new(v)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(re) => (Op::Matches(Box::new(re)), s(v)),
            Err(e) => {
                problems.push((
                    format!("{pointer}/matches"),
                    format!("invalid regex `{v}`: {}", regex_message(&e)),
                ));
                return None;
            }
        }
    } else if let Some(v) = cfg.exists {
        (Op::Exists(v), Value::Bool(v))
    } else if let Some(v) = cfg.not_empty {
        (Op::NotEmpty(v), Value::Bool(v))
    } else if let Some(v) = &cfg.gt {
        (Op::Gt(ordered(v)), v.to_value())
    } else if let Some(v) = &cfg.gte {
        (Op::Gte(ordered(v)), v.to_value())
    } else if let Some(v) = &cfg.lt {
        (Op::Lt(ordered(v)), v.to_value())
    } else if let Some(v) = &cfg.lte {
        (Op::Lte(ordered(v)), v.to_value())
    } else {
        return None;
    };
    Some(out)
}

/// The regex crate's errors draw a multi-line diagram; keep the sentence.
fn regex_message(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim().to_string())
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::String(s), Value::String(e)) => s.contains(e.as_str()),
        (Value::Array(items), e) => items.iter().any(|x| json_eq(x, e)),
        (Value::Object(map), Value::String(key)) => map.contains_key(key),
        _ => false,
    }
}

/// `expected` is already lower-cased.
fn icontains(actual: &Value, expected: &str) -> bool {
    match actual {
        Value::String(s) => s.to_lowercase().contains(expected),
        Value::Array(items) => items
            .iter()
            .any(|x| x.as_str().is_some_and(|s| s.to_lowercase() == expected)),
        _ => false,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// A number read exactly when it is an integer, as f64 otherwise.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn from_number(n: &Number) -> Option<Num> {
        if let Some(i) = n.as_i64() {
            Some(Num::Int(i128::from(i)))
        } else if let Some(u) = n.as_u64() {
            Some(Num::Int(i128::from(u)))
        } else {
            n.as_f64().map(Num::Float)
        }
    }

    fn parse(text: &str) -> Option<Num> {
        let t = text.trim();
        if let Ok(i) = t.parse::<i128>() {
            return Some(Num::Int(i));
        }
        t.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Num::Float)
    }

    fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            // Precision loss only beyond 2^53, where exact ordering between an integer and a
            // fraction no longer matters for webhook data.
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

fn num_cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    Num::from_number(a)?.cmp(Num::from_number(b)?)
}

/// Orders a selected value against an ordering operand; None when they are not comparable.
fn compare(actual: &Value, expected: &OrderOperand) -> Option<Ordering> {
    match (actual, &expected.value) {
        (Value::Number(a), Value::Number(_)) => Num::from_number(a)?.cmp(expected.number?),
        (Value::String(a), Value::String(e)) => {
            if let (Some(ta), Some(te)) = (parse_time(a), expected.time) {
                return Some(ta.cmp(&te));
            }
            Some(a.as_str().cmp(e.as_str()))
        }
        // A numeric string against a number (Shopify prices, header values): numerically.
        (Value::String(a), Value::Number(_)) => Num::parse(a)?.cmp(expected.number?),
        (Value::Number(a), Value::String(_)) => Num::from_number(a)?.cmp(expected.number?),
        _ => None,
    }
}

/// A point in time: seconds since the Unix epoch and nanoseconds.
type Instant = crate::rfc3339::Instant;

/// Parses an RFC 3339 date-time (`2024-05-01T10:00:00.5+02:00`) or full-date (`2024-05-01`,
/// taken as midnight UTC).
pub fn parse_time(text: &str) -> Option<Instant> {
    crate::rfc3339::parse(text, true)
}

/// Deepest nesting of brackets and parentheses a JSONPath may have. Paths people write nest
/// two or three (a filter inside a selector); the parser backtracks through nested filters,
/// so its time grows exponentially with their depth (20 levels took seconds to parse).
const MAX_PATH_NESTING: usize = 8;

/// The deepest nesting of `[` and `(` in a JSONPath, counted everywhere (quoted names too:
/// the parser backtracks through what may or may not be a string, and no real path nests
/// brackets inside its strings that deep). A closing bracket with nothing open counts as
/// nothing, so leading ones cannot hide the nesting after them.
fn path_nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for c in text.chars() {
        match c {
            '[' | '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses a JSONPath; None when the parser panicked. serde_json_path 0.7.2 panics on some
/// malformed paths (found by fuzzing: `$['\u` makes its parser report incomplete input, which
/// it declares unreachable), and a rule file must never take the process down.
fn parse_path(text: &str) -> Option<Result<JsonPath, serde_json_path::ParseError>> {
    std::panic::catch_unwind(|| JsonPath::parse(text)).ok()
}

/// Whether a string literal in the path ends inside a `\u` escape (fewer than four characters
/// after the `u`): the input serde_json_path's parser panics on. Checked before parsing, so the
/// parser never sees it; [`parse_path`] catches whatever else it might panic on.
fn escape_cut_short(text: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                if chars.next() == Some('u') && chars.clone().take(4).count() < 4 {
                    return true;
                }
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, _) => {}
        }
    }
    false
}

/// A path as quoted in a problem: its first 80 characters.
fn clip_path_text(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn cond(yaml: &str) -> Condition {
        let cfg: ConditionConfig = serde_yaml::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        let c = compile(&cfg, "", &mut problems);
        assert!(problems.is_empty(), "{yaml}: {problems:?}");
        c.unwrap()
    }

    /// The problems of compiling a condition, as `pointer: message` lines.
    fn cond_problems(yaml: &str) -> Vec<String> {
        let cfg: ConditionConfig = serde_yaml::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        let _ = compile(&cfg, "", &mut problems);
        problems
            .into_iter()
            .map(|(at, why)| format!("{at}: {why}"))
            .collect()
    }

    fn eval_with(yaml: &str, payload: &Value, headers: &BTreeMap<String, String>) -> bool {
        let payload = &Arc::new(payload.clone());
        let ev = EventView {
            id: "ev_1",
            source: "github",
            provider: "github",
            event_type: "pull_request.opened",
            received_at: "2024-05-01T10:00:00Z",
            headers,
            payload,
        };
        cond(yaml).evaluate(&ev, "when").result()
    }

    fn payload() -> Value {
        json!({
            "ref": "refs/heads/main",
            "n": 3, "f": 2.5, "zero": 0, "neg": -4, "big": 18446744073709551615u64,
            "price": "199.00", "name": "Alice", "nil": null, "empty_s": "", "empty_a": [], "empty_o": {},
            "t": true, "labels": ["bug", "Urgent"], "nums": [1, 5, 9],
            "obj": {"k": 1},
            "at": "2024-05-01T12:00:00+02:00",
            "commits": [{"message": "fix [deploy]"}, {"message": "docs"}],
        })
    }

    #[test]
    fn summaries_read_like_the_rule_and_are_bounded() {
        let c = cond(
            "all: [{path: $.ref, equals: refs/heads/main}, {any: [{header: x-kind, in: [a, b]}, {not: {path: $.n, gt: 3}}]}]",
        );
        assert_eq!(
            c.summary(),
            "all($.ref equals \"refs/heads/main\"; any(header x-kind in [\"a\",\"b\"] | not($.n gt 3)))"
        );
        let long = format!("{{path: $.ref, equals: \"{}\"}}", "x".repeat(2000));
        let many = format!("any: [{}]", vec![long; 50].join(", "));
        let s = cond(&many).summary();
        assert!(s.chars().count() <= MAX_SUMMARY + 3, "{}", s.len());
        assert!(s.ends_with("..."), "{s}");
    }

    #[test]
    fn operators_table() {
        let p = payload();
        let h = BTreeMap::from([("X-GitHub-Event".to_string(), "push".to_string())]);
        let cases: &[(&str, bool)] = &[
            // equals: typed, numbers by value
            ("{path: $.ref, equals: refs/heads/main}", true),
            ("{path: $.ref, equals: refs/heads/dev}", false),
            ("{path: $.n, equals: 3}", true),
            ("{path: $.n, equals: 3.0}", true),
            ("{path: $.n, equals: '3'}", false),
            ("{path: $.price, equals: 199}", false),
            ("{path: $.nil, equals: null}", true),
            ("{path: $.missing, equals: null}", false),
            ("{path: $.empty_s, equals: null}", false),
            ("{path: $.zero, equals: false}", false),
            ("{path: $.t, equals: true}", true),
            ("{path: $.labels, equals: [bug, Urgent]}", true),
            ("{path: $.obj, equals: {k: 1.0}}", true),
            ("{path: $.big, equals: 18446744073709551615}", true),
            // not_equals: negation, holds on missing
            ("{path: $.ref, not_equals: refs/heads/dev}", true),
            ("{path: $.ref, not_equals: refs/heads/main}", false),
            ("{path: $.missing, not_equals: x}", true),
            // iequals
            ("{path: $.name, iequals: ALICE}", true),
            ("{path: $.name, iequals: bob}", false),
            ("{path: $.n, iequals: '3'}", false),
            // in / not_in
            ("{path: $.name, in: [Bob, Alice]}", true),
            ("{path: $.name, in: [alice]}", false),
            ("{path: $.n, in: [1, 3.0]}", true),
            ("{path: $.missing, in: [null]}", false),
            ("{path: $.name, not_in: [Bob]}", true),
            ("{path: $.name, not_in: [Alice]}", false),
            ("{path: $.missing, not_in: [Alice]}", true),
            // contains: substring, array element, object key
            ("{path: $.ref, contains: heads}", true),
            ("{path: $.ref, contains: tags}", false),
            ("{path: $.labels, contains: bug}", true),
            ("{path: $.labels, contains: urgent}", false),
            ("{path: $.nums, contains: 5}", true),
            ("{path: $.obj, contains: k}", true),
            ("{path: $.n, contains: 3}", false),
            ("{path: $.ref, not_contains: tags}", true),
            ("{path: $.labels, not_contains: bug}", false),
            ("{path: $.missing, not_contains: x}", true),
            // icontains
            ("{path: $.ref, icontains: HEADS}", true),
            ("{path: $.labels, icontains: URGENT}", true),
            ("{path: $.labels, icontains: urg}", false),
            ("{path: $.n, icontains: '3'}", false),
            // starts_with / ends_with / matches
            ("{path: $.ref, starts_with: refs/heads/}", true),
            ("{path: $.ref, starts_with: refs/tags/}", false),
            ("{path: $.ref, ends_with: /main}", true),
            ("{path: $.n, starts_with: '3'}", false),
            (
                "{path: $.ref, matches: '^refs/heads/(main|release/.*)$'}",
                true,
            ),
            ("{path: $.ref, matches: 'heads'}", true),
            ("{path: $.ref, matches: '^heads'}", false),
            ("{path: $.n, matches: '3'}", false),
            // exists / not_empty
            ("{path: $.nil, exists: true}", true),
            ("{path: $.missing, exists: true}", false),
            ("{path: $.missing, exists: false}", true),
            ("{path: $.ref, exists: false}", false),
            ("{path: $.ref, not_empty: true}", true),
            ("{path: $.nil, not_empty: true}", false),
            ("{path: $.empty_s, not_empty: true}", false),
            ("{path: $.empty_a, not_empty: true}", false),
            ("{path: $.empty_o, not_empty: true}", false),
            ("{path: $.zero, not_empty: true}", true),
            ("{path: $.t, not_empty: true}", true),
            ("{path: $.missing, not_empty: true}", false),
            ("{path: $.empty_a, not_empty: false}", true),
            ("{path: $.missing, not_empty: false}", true),
            ("{path: $.commits, not_empty: false}", false),
            // ordering: numbers, numeric strings, text, times
            ("{path: $.n, gt: 2}", true),
            ("{path: $.n, gt: 3}", false),
            ("{path: $.n, gte: 3}", true),
            ("{path: $.f, lt: 3}", true),
            ("{path: $.neg, lte: -4}", true),
            ("{path: $.big, gt: 9223372036854775807}", true),
            ("{path: $.price, gt: 100}", true),
            ("{path: $.price, lt: 100}", false),
            ("{path: $.n, lt: '10'}", true),
            ("{path: $.name, gt: 'Aaron'}", true),
            ("{path: $.name, gt: 5}", false),
            ("{path: $.t, gt: 0}", false),
            ("{path: $.nil, lt: 1}", false),
            ("{path: $.missing, lt: 1}", false),
            ("{path: $.at, gt: '2024-05-01T09:59:59Z'}", true),
            ("{path: $.at, gt: '2024-05-01T10:00:00Z'}", false),
            ("{path: $.at, gte: '2024-05-01T10:00:00Z'}", true),
            ("{path: $.at, lt: '2024-05-02'}", true),
            // multi-valued paths: any value satisfies
            ("{path: '$.commits[*].message', contains: '[deploy]'}", true),
            ("{path: '$.commits[*].message', equals: docs}", true),
            ("{path: '$.commits[*].message', not_equals: docs}", false),
            (
                "{path: '$.commits[*].message', not_contains: '[skip]'}",
                true,
            ),
            ("{path: '$.nums[*]', gt: 8}", true),
            ("{path: '$.nums[*]', gt: 9}", false),
            ("{path: '$.nums[?@ > 4]', exists: true}", true),
            ("{path: '$.commits[*].author', exists: true}", false),
            ("{path: '$..message', matches: '^docs$'}", true),
            // headers (case-insensitive names) and event fields
            ("{header: x-github-event, equals: push}", true),
            ("{header: X-GITHUB-EVENT, equals: push}", true),
            ("{header: x-github-event, equals: 1}", false),
            ("{header: x-missing, exists: false}", true),
            ("{header: x-missing, not_equals: push}", true),
            ("{event: source, in: [github, gitlab]}", true),
            ("{event: type, matches: '^pull_request\\.'}", true),
            ("{event: provider, equals: stripe}", false),
            ("{event: received_at, gt: '2024-01-01'}", true),
            ("{event: id, equals: ev_1}", true),
            // combinators
            (
                "{all: [{path: $.n, equals: 3}, {path: $.t, equals: true}]}",
                true,
            ),
            (
                "{all: [{path: $.n, equals: 3}, {path: $.t, equals: false}]}",
                false,
            ),
            (
                "{any: [{path: $.n, equals: 4}, {path: $.t, equals: true}]}",
                true,
            ),
            (
                "{any: [{path: $.n, equals: 4}, {path: $.t, equals: false}]}",
                false,
            ),
            ("{not: {path: $.n, equals: 4}}", true),
            ("{not: {path: $.n, equals: 3}}", false),
            ("{not: {not: {path: $.n, equals: 3}}}", true),
            (
                "{all: [{any: [{path: $.missing, exists: true}, {not: {path: $.ref, contains: tags}}]}]}",
                true,
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(eval_with(yaml, &p, &h), *want, "{yaml}");
        }
    }

    #[test]
    fn negative_operators_are_exact_negations() {
        let p = payload();
        let h = BTreeMap::new();
        let pairs = [
            ("equals: docs", "not_equals: docs"),
            ("in: [docs, x]", "not_in: [docs, x]"),
            ("contains: fix", "not_contains: fix"),
            ("exists: true", "exists: false"),
            ("not_empty: true", "not_empty: false"),
        ];
        for path in [
            "$.missing",
            "'$.commits[*].message'",
            "$.ref",
            "$.nil",
            "$.empty_a",
        ] {
            for (pos, neg) in pairs {
                let a = eval_with(&format!("{{path: {path}, {pos}}}"), &p, &h);
                let b = eval_with(&format!("{{path: {path}, {neg}}}"), &p, &h);
                assert_ne!(a, b, "{path} {pos} / {neg}");
            }
        }
    }

    #[test]
    fn traces_record_selection_and_results() {
        let p = payload();
        let h = BTreeMap::new();
        let ev = EventView {
            id: "e",
            source: "github",
            provider: "github",
            event_type: "push",
            received_at: "",
            headers: &h,
            payload: &Arc::new(p),
        };
        let c = cond(
            "{all: [{path: $.ref, equals: refs/heads/main}, {path: $.empty_a, not_empty: true}]}",
        );
        let t = c.evaluate(&ev, "when");
        assert!(!t.result());
        assert_eq!(
            t.failure_reason(),
            "when.all[1]: $.empty_a selected [], expected not_empty true"
        );
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(
            json["conditions"][0]["selected"],
            json!(["refs/heads/main"])
        );
        assert_eq!(json["conditions"][0]["operator"], "equals");
        assert_eq!(json["conditions"][0]["result"], true);
        assert_eq!(json["kind"], "all");
    }

    #[test]
    fn simple_paths_select_what_serde_json_path_selects() {
        let payloads = [
            payload(),
            json!({"a": {"b": [{"c": 1}, {"c": [2, 3]}, {"d": 4}], "e": {"z": 1, "y": [5]}},
                   "*": 5, "1": 6, "_x9": 7}),
            json!([[1, 2], {"a": 3}, "s", null]),
            json!("text"),
            json!(null),
        ];
        let simple = [
            "$",
            "$.ref",
            "$.commits",
            "$.commits[*]",
            "$.commits[*].message",
            "$.commits.*.message",
            "$.*",
            "$[*]",
            "$.*.*",
            "$[*][*]",
            "$.labels[0]",
            "$.labels[-1]",
            "$.labels[-2]",
            "$.labels[-3]",
            "$.labels[2]",
            "$.nums[-4]",
            "$.obj.k",
            "$.a.b[*].c",
            "$.a.b[*].c[*]",
            "$.a.b[1].c[-1]",
            "$.a.e.*",
            "$.a.e.*[0]",
            "$._x9",
            "$[0]",
            "$[-1]",
            "$[0][1]",
            "$[1].a",
            "$.missing.deeper",
            "$.ref.x",
            "$.n[0]",
            "$.n.*",
        ];
        let general = [
            "$['ref']",
            "$[\"a\"]",
            "$..message",
            "$.commits[?@.message]",
            "$.nums[0:2]",
            "$.labels[0,1]",
            "$['*']",
            "$['1']",
            "$.été",
        ];
        for text in simple {
            let path = JsonPath::parse(text).unwrap();
            let fast = SimplePath::from_parsed(&path).unwrap_or_else(|| panic!("{text}"));
            for p in &payloads {
                let want = path.query(p).all();
                let got = fast.query(p);
                assert_eq!(got.len(), want.len(), "{text} over {p}");
                assert!(
                    got.iter().zip(&want).all(|(a, b)| std::ptr::eq(*a, *b)),
                    "{text} over {p}: {got:?} vs {want:?}"
                );
            }
        }
        for text in general {
            let path = JsonPath::parse(text).unwrap();
            assert!(SimplePath::from_parsed(&path).is_none(), "{text}");
        }
    }

    #[test]
    fn deeply_nested_paths_are_refused_before_parsing() {
        // Found by fuzzing: twenty nested filters with descendant segments took the parser
        // seconds. (The unclosed brackets make it fail to parse as well; the depth is
        // measured first.)
        let nested = format!("$.a{}", "[?@..b".repeat(20));
        let problems = cond_problems(&format!("{{path: '{nested}', exists: true}}"));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("nests brackets and parentheses") && p.contains("at most 8")),
            "{problems:?}"
        );
        // Eight levels are fine, brackets inside strings do not count.
        let eight = format!("${}{}", "[?@.a".repeat(7), "[0]]]]]]]]");
        assert_eq!(path_nesting(&eight), 8);
        assert!(cond_problems(&format!("{{path: \"{eight}\", exists: true}}")).is_empty());
        // Found by fuzzing too: closing brackets first, then twenty nested filters, once hid
        // the nesting from the count.
        let hidden = format!("$]]){}", "[?@.ts".repeat(20));
        assert_eq!(path_nesting(&hidden), 20);
        assert!(!cond_problems(&format!("{{path: '{hidden}', exists: true}}")).is_empty());
        assert_eq!(path_nesting("$['[[[' ]"), 4, "quoted brackets count");
    }

    #[test]
    fn a_path_the_parser_panics_on_is_a_problem_not_a_crash() {
        // Found by fuzzing: a `\u` escape cut short at the end of a quoted name.
        let problems = cond_problems(r#"{path: "$['$.>ra\\u", exists: true}"#);
        assert!(
            problems.iter().any(|p| p.contains("four hex digits")),
            "{problems:?}"
        );
        assert!(escape_cut_short(r"$['a\u12"));
        assert!(!escape_cut_short(r"$['a\u1234']"));
        assert!(!escape_cut_short(r"$.a\u"), "outside a string literal");
        // Whatever else the parser panics on is caught and reported too.
        assert!(parse_path("$.a").is_some_and(|p| p.is_ok()));
    }

    #[test]
    fn many_selected_values_are_bounded_in_traces() {
        let p = json!({"items": (0..1000).collect::<Vec<u32>>()});
        let h = BTreeMap::new();
        let ev = EventView {
            id: "e",
            source: "s",
            provider: "s",
            event_type: "t",
            received_at: "",
            headers: &h,
            payload: &Arc::new(p),
        };
        let t = cond("{path: '$.items[*]', equals: 999}").evaluate(&ev, "when");
        let ConditionTrace::Leaf(l) = &t else {
            panic!("leaf expected")
        };
        assert!(l.result);
        assert_eq!(l.selected.len(), MAX_TRACE_VALUES);
        assert_eq!(l.selected_count, 1000);
    }

    #[test]
    fn compile_problems_are_reported_with_pointers() {
        let cases: &[(&str, &str, &str)] = &[
            ("{path: '$.[', equals: 1}", "/path", "invalid JSONPath"),
            ("{path: 'ref', equals: 1}", "/path", "invalid JSONPath"),
            (
                "{path: $.a, matches: '(unclosed'}",
                "/matches",
                "invalid regex",
            ),
            ("{path: $.a}", "", "no operator"),
            (
                "{path: $.a, equals: 1, in: [1]}",
                "",
                "one operator per condition",
            ),
            ("{equals: 1}", "", "needs `path`"),
            (
                "{path: $.a, header: x, equals: 1}",
                "",
                "one of path, header, event",
            ),
            ("{all: [], path: $.a}", "", "either one combinator"),
            ("{all: []}", "/all", "at least one"),
            (
                "{any: [{path: $.a, equals: 1}, {path: '$$'}]}",
                "/any/1/path",
                "invalid JSONPath",
            ),
            ("{}", "", "empty condition"),
            (
                "{header: 'bad name', equals: 1}",
                "/header",
                "invalid header name",
            ),
        ];
        for (yaml, pointer, fragment) in cases {
            let cfg: ConditionConfig = serde_yaml::from_str(yaml).unwrap();
            let mut problems = Vec::new();
            let c = compile(&cfg, "", &mut problems);
            assert!(c.is_none(), "{yaml}");
            assert!(
                problems
                    .iter()
                    .any(|(p, m)| p == pointer && m.contains(fragment)),
                "{yaml}: {problems:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut yaml = "{path: $.a, exists: true}".to_string();
        for _ in 0..40 {
            yaml = format!("{{not: {yaml}}}");
        }
        let cfg: ConditionConfig = serde_yaml::from_str(&yaml).unwrap();
        let mut problems = Vec::new();
        assert!(compile(&cfg, "", &mut problems).is_none());
        assert!(
            problems.iter().any(|(_, m)| m.contains("deeper")),
            "{problems:?}"
        );
    }

    #[test]
    fn rfc3339_times() {
        let cases: &[(&str, Option<Instant>)] = &[
            ("1970-01-01T00:00:00Z", Some((0, 0))),
            ("1970-01-01T01:00:00+01:00", Some((0, 0))),
            ("2024-02-29T00:00:00Z", Some((1_709_164_800, 0))),
            ("2024-02-30T00:00:00Z", None),
            (
                "2024-05-01T10:00:00.25Z",
                Some((1_714_557_600, 250_000_000)),
            ),
            ("2024-05-01", Some((1_714_521_600, 0))),
            ("2024-05-01T10:00:00", None),
            ("2024-13-01T00:00:00Z", None),
            ("not a time", None),
            ("2024-05-01T10:00:00.Z", None),
            ("2024-05-01T10:00:00+0100", None),
            ("", None),
            ("é024-05-01", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_time(text), *want, "{text}");
        }
    }
}
