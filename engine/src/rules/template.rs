//! Templates: `with:` trees, `order_key` and `if:` expressions compiled once, rendered with
//! strict undefined, and `${secret:NAME}` references.
//!
//! Text templates live in the rule set's minijinja environment and are looked up by name.
//! Expressions (`if:`, and strings that are exactly one `{{ expression }}`) are compiled into
//! `Expr` values kept on the rule, so evaluating one needs no look-up and no template state.
//!
//! Secrets are never substituted into rendered text (payload text that happens to contain
//! `${secret:X}` must not leak a secret). Instead each reference becomes a template variable,
//! and a template that uses secrets is rendered twice: once with the real values (the plugin's
//! input) and once with the references themselves (everything that is shown or stored).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Arc, OnceLock};

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, Expression, UndefinedBehavior};
use serde_json::Value;

pub use super::context::RenderContext;
use super::context::{SECRETS_VAR, mj};
use super::reads::PayloadReads;

/// Fuel for one render: bounds loops over huge payloads (minijinja counts instructions and
/// allocated data; one million is far above any sensible rule and far below a stuck worker).
const TEMPLATE_FUEL: u64 = 1_000_000;
/// Longest rendered string, in bytes.
pub const MAX_RENDERED_BYTES: usize = 1 << 20;

/// The compiled templates of a rule set.
pub struct Templates {
    env: Environment<'static>,
    next_id: usize,
    /// The configured secrets, as a template value (`{NAME: value}`).
    secrets: minijinja::Value,
    /// The same names mapped to their references (`{NAME: "${secret:NAME}"}`).
    redacted: minijinja::Value,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("count", &self.next_id)
            .finish_non_exhaustive()
    }
}

/// A compiled `with:` tree (or any templated JSON value).
#[derive(Debug, Clone)]
pub enum TNode {
    /// No template syntax: used as written.
    Literal(Value),
    /// A text template; `secrets` says whether it references any secret.
    Text {
        name: String,
        secrets: bool,
    },
    /// A string that is exactly one `{{ expression }}`: keeps the expression's JSON type.
    Typed(Expr),
    Array(Vec<TNode>),
    Object(Vec<(String, TNode)>),
}

impl TNode {
    fn uses_secrets(&self) -> bool {
        match self {
            TNode::Literal(_) | TNode::Typed(_) => false,
            TNode::Text { secrets, .. } => *secrets,
            TNode::Array(items) => items.iter().any(TNode::uses_secrets),
            TNode::Object(entries) => entries.iter().any(|(_, n)| n.uses_secrets()),
        }
    }
}

/// A compiled expression: an `if:` or the inside of a typed `{{ expression }}`.
#[derive(Clone)]
pub struct Expr {
    /// The expression as written (error messages quote it).
    text: Arc<str>,
    compiled: Arc<Expression<'static, 'static>>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&&*self.text).finish()
    }
}

impl Expr {
    fn compile(text: &str) -> Result<Expr, minijinja::Error> {
        let compiled = expression_env().compile_expression_owned(text.to_string())?;
        Ok(Expr {
            text: text.into(),
            compiled: Arc::new(compiled),
        })
    }

    /// Adds the payload members this expression reads to `reads`.
    pub(super) fn add_reads(&self, reads: &mut PayloadReads) {
        reads.add_variables(&self.compiled.undeclared_variables(true));
    }

    /// The expression's value; an undefined value is an error, as everywhere in templates.
    fn eval(&self, ctx: &minijinja::Value) -> Result<minijinja::Value, String> {
        let value = self
            .compiled
            .eval(ctx.clone())
            .map_err(|e| describe(&e, Some(&self.text)))?;
        if value.is_undefined() {
            return Err(format!("undefined value: `{}`", self.text));
        }
        Ok(value)
    }
}

/// An environment with the settings of every template: strict undefined, no auto-escaping,
/// bounded fuel, text kept as written.
fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(TEMPLATE_FUEL));
    // Keep text exactly as written: a YAML block scalar's final newline is part of the value.
    if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env
}

/// The environment expressions are compiled in, one for the process. A compiled expression
/// borrows its environment, so a rule could not keep one compiled in its own rule set's
/// environment; expressions own their code and the settings never change, so one shared
/// environment serves every rule set.
fn expression_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(new_environment)
}

/// Where a node is in a rendered tree (`actions[0].with.list[2]`), formatted only when an
/// error names it.
enum At<'a> {
    Root(&'a dyn Display),
    Index(&'a At<'a>, usize),
    Key(&'a At<'a>, &'a str),
}

impl Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Root(at) => at.fmt(f),
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
            At::Key(parent, k) => write!(f, "{parent}.{k}"),
        }
    }
}

/// Rendered output: the plugin's input and its redacted twin.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub real: Value,
    pub redacted: Value,
}

/// Where a template failed (a display path such as `actions[0].with.text`) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct RenderError {
    pub at: String,
    pub message: String,
}

/// A problem found while compiling a template tree: JSON pointer (relative) and message.
pub type CompileProblem = (String, String);

impl Templates {
    /// Adds the payload members the templates of `node` read to `reads`.
    pub(super) fn add_reads(&self, node: &TNode, reads: &mut PayloadReads) {
        match node {
            TNode::Literal(_) => {}
            TNode::Text { name, .. } => match self.env.get_template(name) {
                Ok(template) => {
                    reads.add_template_source(template.source());
                    reads.add_variables(&template.undeclared_variables(true));
                }
                Err(_) => reads.add_whole(),
            },
            TNode::Typed(expr) => expr.add_reads(reads),
            TNode::Array(items) => items.iter().for_each(|n| self.add_reads(n, reads)),
            TNode::Object(entries) => entries.iter().for_each(|(_, n)| self.add_reads(n, reads)),
        }
    }

    pub fn new(secrets: &BTreeMap<String, String>) -> Templates {
        let redacted: BTreeMap<&str, String> = secrets
            .keys()
            .map(|k| (k.as_str(), format!("${{secret:{k}}}")))
            .collect();
        Templates {
            env: new_environment(),
            next_id: 0,
            secrets: mj(secrets),
            redacted: mj(&redacted),
        }
    }

    fn add(&mut self, source: String) -> Result<String, String> {
        let name = format!("t{}", self.next_id);
        self.next_id += 1;
        self.env
            .add_template_owned(name.clone(), source)
            .map_err(|e| describe(&e, None))?;
        Ok(name)
    }

    /// Compiles one string of a `with:` tree (or an `order_key`).
    pub fn compile_string(
        &mut self,
        text: &str,
        known_secrets: &BTreeMap<String, String>,
        allow_secrets: bool,
    ) -> Result<TNode, String> {
        let (translated, uses_secrets) = translate_secrets(text, known_secrets)?;
        if uses_secrets && !allow_secrets {
            return Err("secrets (`${secret:...}`) cannot be used here".to_string());
        }
        if !has_template_syntax(&translated) {
            return Ok(TNode::Literal(Value::String(text.to_string())));
        }
        if !uses_secrets && let Some(expr) = single_expression(&translated) {
            // Only a real expression keeps its type: `{{ a }} and {{ b }}` stays text.
            if let Ok(expr) = Expr::compile(expr) {
                return Ok(TNode::Typed(expr));
            }
        }
        let name = self.add(translated)?;
        Ok(TNode::Text {
            name,
            secrets: uses_secrets,
        })
    }

    /// Compiles a whole `with:` value; every problem is reported with its relative pointer.
    pub fn compile_tree(
        &mut self,
        value: &Value,
        pointer: &str,
        known_secrets: &BTreeMap<String, String>,
        problems: &mut Vec<CompileProblem>,
    ) -> TNode {
        match value {
            Value::String(s) => match self.compile_string(s, known_secrets, true) {
                Ok(node) => node,
                Err(message) => {
                    problems.push((pointer.to_string(), message));
                    TNode::Literal(Value::Null)
                }
            },
            Value::Array(items) => TNode::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        self.compile_tree(v, &format!("{pointer}/{i}"), known_secrets, problems)
                    })
                    .collect(),
            ),
            Value::Object(map) => TNode::Object(
                map.iter()
                    .map(|(k, v)| {
                        let p = format!("{pointer}/{}", crate::yamldoc::escape_pointer_token(k));
                        (k.clone(), self.compile_tree(v, &p, known_secrets, problems))
                    })
                    .collect(),
            ),
            other => TNode::Literal(other.clone()),
        }
    }

    /// Compiles an `if:` expression (written without `{{ }}`).
    pub fn compile_if(&self, expr: &str) -> Result<Expr, String> {
        if expr.contains("${secret:") {
            return Err("secrets (`${secret:...}`) cannot be used in `if`".to_string());
        }
        Expr::compile(expr).map_err(|e| describe(&e, Some(expr)))
    }

    /// Evaluates a compiled `if:` expression: its value as JSON and its truthiness.
    pub fn eval_if(&self, expr: &Expr, ctx: &RenderContext) -> Result<(Value, bool), String> {
        let value = expr.eval(&ctx.value())?;
        let json = to_json(&value)?;
        Ok((json, value.is_true()))
    }

    /// Renders a tree: the real input and the redacted one. `at` names the tree in errors.
    pub fn render_tree(
        &self,
        node: &TNode,
        ctx: &RenderContext,
        at: impl Display,
    ) -> Result<Rendered, RenderError> {
        let at = At::Root(&at);
        if !node.uses_secrets() {
            let value = self.render_node(node, &ctx.value(), &at)?;
            return Ok(Rendered {
                real: value.clone(),
                redacted: value,
            });
        }
        let real = self.render_node(node, &ctx.with_secrets(&self.secrets), &at)?;
        let redacted = self.render_node(node, &ctx.with_secrets(&self.redacted), &at)?;
        Ok(Rendered { real, redacted })
    }

    fn render_node(
        &self,
        node: &TNode,
        ctx: &minijinja::Value,
        at: &At<'_>,
    ) -> Result<Value, RenderError> {
        let fail = |message: String| RenderError {
            at: at.to_string(),
            message,
        };
        match node {
            TNode::Literal(v) => Ok(v.clone()),
            TNode::Text { name, .. } => {
                let template = self
                    .env
                    .get_template(name)
                    .map_err(|e| fail(describe(&e, None)))?;
                let text = template
                    .render(ctx)
                    .map_err(|e| fail(self.describe_in(&e, name)))?;
                if text.len() > MAX_RENDERED_BYTES {
                    return Err(fail(format!(
                        "rendered text is {} bytes, more than the limit of {MAX_RENDERED_BYTES}",
                        text.len()
                    )));
                }
                Ok(Value::String(text))
            }
            TNode::Typed(expr) => {
                let value = expr.eval(ctx).map_err(fail)?;
                to_json(&value).map_err(fail)
            }
            TNode::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| self.render_node(n, ctx, &At::Index(at, i)))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            TNode::Object(entries) => {
                let mut map = serde_json::Map::new();
                for (k, n) in entries {
                    map.insert(k.clone(), self.render_node(n, ctx, &At::Key(at, k))?);
                }
                Ok(Value::Object(map))
            }
        }
    }

    fn describe_in(&self, err: &minijinja::Error, name: &str) -> String {
        let source = self
            .env
            .get_template(name)
            .ok()
            .map(|t| t.source().to_string());
        describe(err, source.as_deref())
    }
}

/// A short message for a minijinja error, naming the failing expression when known.
fn describe(err: &minijinja::Error, source: Option<&str>) -> String {
    let mut out = err.kind().to_string();
    if let Some(detail) = err.detail() {
        out.push_str(": ");
        out.push_str(detail);
    }
    if let (Some(source), Some(range)) = (source, err.range())
        && let Some(snippet) = source.get(range)
        && !snippet.is_empty()
    {
        out.push_str(&format!(" at `{snippet}`"));
    }
    if let Some(line) = err.line()
        && line > 1
    {
        out.push_str(&format!(" (template line {line})"));
    }
    out
}

fn to_json(value: &minijinja::Value) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("value cannot be turned into JSON: {e}"))
}

fn has_template_syntax(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// `{{ expr }}` (with optional whitespace control) -> `expr`; None for anything else.
fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
    let inner = inner.trim();
    (!inner.is_empty()).then_some(inner)
}

/// Rewrites every `${secret:NAME}` into a template variable lookup. Errors on malformed or
/// unknown names and on references inside `{{ }}`, `{% %}` or `{# #}`.
fn translate_secrets(
    text: &str,
    known: &BTreeMap<String, String>,
) -> Result<(String, bool), String> {
    const OPEN: &str = "${secret:";
    if !text.contains(OPEN) {
        return Ok((text.to_string(), false));
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    let mut in_tag: Option<&str> = None;
    let mut used = false;
    while !rest.is_empty() {
        if let Some(close) = in_tag {
            if rest.starts_with(close) {
                out.push_str(close);
                rest = &rest[close.len()..];
                in_tag = None;
                continue;
            }
            if rest.starts_with(OPEN) {
                return Err(
                    "`${secret:...}` can only be used in plain text, not inside \
                            `{{ }}`, `{% %}` or `{# #}`"
                        .to_string(),
                );
            }
        } else {
            for (open, close) in [("{{", "}}"), ("{%", "%}"), ("{#", "#}")] {
                if rest.starts_with(open) {
                    in_tag = Some(close);
                }
            }
            if in_tag.is_some() {
                out.push_str(&rest[..2]);
                rest = &rest[2..];
                continue;
            }
            if let Some(after) = rest.strip_prefix(OPEN) {
                let end = after
                    .find('}')
                    .ok_or("unterminated `${secret:` reference")?;
                let name = &after[..end];
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!(
                        "invalid secret name `{name}` (letters, digits and `_`, e.g. SLACK_URL)"
                    ));
                }
                if !known.contains_key(name) {
                    let names: Vec<&str> = known.keys().map(String::as_str).collect();
                    return Err(format!(
                        "unknown secret `{name}` (configured: {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ));
                }
                out.push_str(&format!("{{{{ {SECRETS_VAR}.{name} }}}}"));
                used = true;
                rest = &after[end + 1..];
                continue;
            }
        }
        let ch_len = rest.chars().next().map_or(1, char::len_utf8);
        out.push_str(&rest[..ch_len]);
        rest = &rest[ch_len..];
    }
    Ok((out, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secrets() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "SLACK_URL".to_string(),
            "https://hooks.example/T0/SECRET".to_string(),
        )])
    }

    fn ctx(payload: &Value) -> RenderContext {
        let payload = &Arc::new(payload.clone());
        let headers = BTreeMap::from([("X-GitHub-Event".to_string(), "push".to_string())]);
        let ev = super::super::EventView {
            id: "ev_1",
            source: "github",
            provider: "github",
            event_type: "push",
            received_at: "2024-05-01T10:00:00Z",
            headers: &headers,
            payload,
        };
        RenderContext::new(&ev)
    }

    fn render(template: &str, payload: Value) -> Result<Value, String> {
        let s = secrets();
        let mut t = Templates::new(&s);
        let node = t.compile_string(template, &s, true)?;
        t.render_tree(&node, &ctx(&payload), "with.x")
            .map(|r| r.real)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn strings_render_with_types_kept_for_single_expressions() {
        let payload = json!({"n": 3, "name": "alice", "list": [1, 2], "flag": false, "nil": null});
        let cases: &[(&str, Result<Value, &str>)] = &[
            ("plain text", Ok(json!("plain text"))),
            ("{{ payload.name }}", Ok(json!("alice"))),
            ("{{ payload.n }}", Ok(json!(3))),
            ("{{- payload.n -}}", Ok(json!(3))),
            ("{{ payload.list }}", Ok(json!([1, 2]))),
            ("{{ payload.flag }}", Ok(json!(false))),
            ("{{ payload.nil }}", Ok(json!(null))),
            ("{{ payload.n | string }}", Ok(json!("3"))),
            ("#{{ payload.n }}", Ok(json!("#3"))),
            (
                "{{ payload.n }} and {{ payload.name }}",
                Ok(json!("3 and alice")),
            ),
            ("{{ payload.list | length }} items", Ok(json!("2 items"))),
            ("{{ headers['x-github-event'] }}", Ok(json!("push"))),
            ("{{ event.type }}/{{ source }}", Ok(json!("push/github"))),
            ("{{ payload.list | tojson }}", Ok(json!("[1, 2]"))),
            ("{{ payload.missing }}", Err("undefined value")),
            ("x {{ payload.missing }}", Err("undefined value")),
            ("{{ payload.missing.deeper }}", Err("undefined value")),
            (
                "{% for x in payload.missing %}{% endfor %}",
                Err("undefined value"),
            ),
            ("{{ payload.name.missing }}", Err("undefined value")),
        ];
        for (template, want) in cases {
            let got = render(template, payload.clone());
            match (want, &got) {
                (Ok(v), Ok(g)) => assert_eq!(g, v, "{template}"),
                (Err(fragment), Err(e)) => assert!(e.contains(fragment), "{template}: {e}"),
                _ => panic!("{template}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn undefined_errors_name_the_expression() {
        let err = render("{{ payload.missing }}", json!({})).unwrap_err();
        assert!(err.contains("payload.missing"), "{err}");
        assert!(err.starts_with("with.x:"), "{err}");
    }

    #[test]
    fn secrets_render_real_and_redacted() {
        let s = secrets();
        let mut t = Templates::new(&s);
        let mut problems = Vec::new();
        let tree = json!({"url": "${secret:SLACK_URL}", "text": "hi {{ payload.name }}",
                          "nested": ["Bearer ${secret:SLACK_URL}"]});
        let node = t.compile_tree(&tree, "", &s, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let out = t
            .render_tree(&node, &ctx(&json!({"name": "bob"})), "with")
            .unwrap();
        assert_eq!(out.real["url"], "https://hooks.example/T0/SECRET");
        assert_eq!(
            out.real["nested"][0],
            "Bearer https://hooks.example/T0/SECRET"
        );
        assert_eq!(out.redacted["url"], "${secret:SLACK_URL}");
        assert_eq!(out.redacted["text"], "hi bob");
        assert!(!out.redacted.to_string().contains("SECRET\""));
        assert!(!out.redacted.to_string().contains("hooks.example"));
    }

    #[test]
    fn payload_text_never_expands_secrets() {
        let out = render(
            "{{ payload.title }}",
            json!({"title": "${secret:SLACK_URL}"}),
        )
        .unwrap();
        assert_eq!(out, json!("${secret:SLACK_URL}"));
    }

    #[test]
    fn secret_reference_errors() {
        let s = secrets();
        let cases: &[(&str, &str)] = &[
            ("${secret:NOPE}", "unknown secret `NOPE`"),
            ("${secret:bad-name}", "invalid secret name"),
            ("${secret:SLACK_URL", "unterminated"),
            ("{{ '${secret:SLACK_URL}' }}", "plain text"),
            ("{% if x %}${secret:SLACK_URL}{% endif %}", ""),
        ];
        for (text, fragment) in cases {
            let mut t = Templates::new(&s);
            let got = t.compile_string(text, &s, true);
            if fragment.is_empty() {
                assert!(got.is_ok(), "{text}: {got:?}");
            } else {
                let err = got.err().unwrap_or_default();
                assert!(err.contains(fragment), "{text}: {err}");
            }
        }
        let mut t = Templates::new(&s);
        assert!(t.compile_string("${secret:SLACK_URL}", &s, false).is_err());
    }

    #[test]
    fn syntax_errors_are_compile_errors() {
        let s = secrets();
        let mut t = Templates::new(&s);
        for text in [
            "{{ payload.x ",
            "{% if %}",
            "{% for x in y %}",
            "{{ payload.x }",
        ] {
            assert!(t.compile_string(text, &s, true).is_err(), "{text}");
        }
        assert!(t.compile_if("payload.x ==").is_err());
        assert!(t.compile_if("payload.x == 1 %}{% set y = 2").is_err());
    }

    #[test]
    fn if_expressions_evaluate_truthiness() {
        let s = secrets();
        let payload = json!({"private": false, "n": 0, "name": "a", "list": []});
        let cases: &[(&str, Result<bool, &str>)] = &[
            ("payload.private == false", Ok(true)),
            ("payload.private", Ok(false)),
            ("payload.n", Ok(false)),
            ("payload.name", Ok(true)),
            ("payload.list", Ok(false)),
            ("payload.missing is defined", Ok(false)),
            ("payload.missing", Err("undefined")),
            ("payload.missing.x == 1", Err("undefined")),
            (
                "event.type == 'push' and headers['x-github-event'] == 'push'",
                Ok(true),
            ),
        ];
        for (expr, want) in cases {
            let t = Templates::new(&s);
            let expr_ = t.compile_if(expr).unwrap();
            let got = t.eval_if(&expr_, &ctx(&payload)).map(|(_, b)| b);
            match (want, &got) {
                (Ok(b), Ok(g)) => assert_eq!(g, b, "{expr}"),
                (Err(fragment), Err(e)) => assert!(e.contains(fragment), "{expr}: {e}"),
                _ => panic!("{expr}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn huge_loops_run_out_of_fuel() {
        let got = render(
            "{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}",
            json!({}),
        );
        let err = got.err().unwrap_or_default();
        assert!(err.contains("fuel"), "{err}");
    }

    #[test]
    fn rendered_text_is_bounded() {
        let got = render("x{{ 'y' * 1100000 }}", json!({}));
        let err = got.err().unwrap_or_default();
        assert!(err.contains("more than the limit"), "{err}");
    }

    /// Headers with names that differ only in case.
    fn many_headers() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("X-GitHub-Event".to_string(), "push".to_string()),
            ("Content-Type".to_string(), "text/plain".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
            ("X-Hub-Signature-256".to_string(), "sha256=abc".to_string()),
        ])
    }

    /// The context as templates saw it before `RenderContext` read the payload lazily: built
    /// as a map of values converted as a whole. Every template must render the same (value or
    /// error message) over both.
    fn converted_context(payload: &Value) -> minijinja::Value {
        let headers: BTreeMap<String, String> = many_headers()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let event = BTreeMap::from([
            ("id", "ev_1"),
            ("type", "push"),
            ("source", "github"),
            ("provider", "github"),
            ("received_at", "2024-05-01T10:00:00Z"),
        ]);
        let mut base = BTreeMap::new();
        base.insert("payload".to_string(), mj(payload));
        base.insert("headers".to_string(), mj(&headers));
        base.insert("source".to_string(), minijinja::Value::from("github"));
        base.insert("event".to_string(), mj(&event));
        minijinja::Value::from(base)
    }

    #[test]
    fn lazy_payload_renders_like_a_converted_one() {
        let payloads = [
            json!({
                "ref": "refs/heads/main", "size": 3, "ratio": 0.5, "big": 18446744073709551615u64,
                "neg": -2, "nil": null, "t": true, "s": "", "empty_a": [], "empty_o": {},
                "labels": ["bug", "Urgent", "bug"], "nums": [3, 1, 2],
                "zeta": 1, "alpha": {"b": 2, "a": 1, "c": {"d": [1, {"e": "f"}]}},
                "repo": {"full_name": "acme/web", "private": false, "owner": {"login": "octo"}},
                "commits": [{"id": "b2", "message": "docs", "n": 2},
                            {"id": "a1", "message": "fix [deploy]", "n": 1}],
                "1": "numeric key", "with space": "x", "unicode": "été ☃",
            }),
            json!(["first", 2, {"three": 3}, [4, [5]], null, true]),
            json!("just a string"),
            json!(42),
            json!(null),
            json!({}),
        ];
        let templates = [
            "{{ payload }}",
            "{{ payload | tojson }}",
            "{{ payload | tojson(indent=2) }}",
            "{{ payload | pprint }}",
            "{{ payload | string }}",
            "{{ payload | length }}",
            "{{ payload | list }}",
            "{{ payload | first }}",
            "{{ payload | last }}",
            "{{ payload | reverse | list }}",
            "{{ payload | dictsort }}",
            "{{ payload | dictsort(reverse=true) }}",
            "{{ payload | items | list }}",
            "{{ payload | sort }}",
            "{{ payload | unique | list }}",
            "{{ payload | batch(2) | list }}",
            "{{ payload | slice(2) | list }}",
            "{{ payload | join('|') }}",
            "{{ payload | map('string') | list }}",
            "{{ payload | select | list }}",
            "{{ payload | reject('none') | list }}",
            "{{ payload | max }}",
            "{{ payload | min }}",
            "{{ payload | sum }}",
            "{{ payload | default('d') }}",
            "{{ payload | bool }}",
            "{{ payload is mapping }}",
            "{{ payload is sequence }}",
            "{{ payload is iterable }}",
            "{{ payload is string }}",
            "{{ payload is none }}",
            "{{ payload is defined }}",
            "{{ payload is true }}",
            "{{ payload == payload }}",
            "{{ payload != {} }}",
            "{{ payload == [] }}",
            "{{ payload < payload }}",
            "{{ [payload, payload] | unique | list }}",
            "{{ [payload, 1] | sort }}",
            "{{ 'ref' in payload }}",
            "{{ 2 in payload }}",
            "{{ payload + [1] }}",
            "{{ payload ~ '!' }}",
            "{{ payload * 2 }}",
            "{{ payload[0] }}",
            "{{ payload[-1] }}",
            "{{ payload[1:3] }}",
            "{{ payload[::-1] }}",
            "{{ payload[1] }}",
            "{{ payload['1'] }}",
            "{{ payload.ref }}",
            "{{ payload.ref | upper }}",
            "{{ payload.ref[5:] }}",
            "{{ payload.size + 1 }}",
            "{{ payload.ratio * 2 }}",
            "{{ payload.big }}",
            "{{ payload.big + 1 }}",
            "{{ payload.neg | abs }}",
            "{{ payload.nil }}",
            "{{ payload.nil is none }}",
            "{{ payload.t and payload.s }}",
            "{{ payload.empty_a | length }} {{ payload.empty_o | length }}",
            "{{ payload.empty_a == [] and payload.empty_o == {} }}",
            "{{ payload.labels }}",
            "{{ payload.labels | sort | join(',') }}",
            "{{ payload.labels | unique | list }}",
            "{{ payload.labels.0 }}",
            "{{ payload.labels[-1] }}",
            "{{ payload.labels[10] }}",
            "{{ payload.labels.x }}",
            "{{ payload.nums | sort }} {{ payload.nums | max }} {{ payload.nums | sum }}",
            "{{ payload.alpha }}",
            "{{ payload.alpha.c.d[1].e }}",
            "{{ payload.alpha['c']['d'][-1] }}",
            "{{ payload.alpha | dictsort }}",
            "{{ payload.alpha.keys() }}",
            "{{ payload.alpha.values() }}",
            "{{ payload.alpha.items() }}",
            "{{ payload.alpha.get('b') }}",
            "{{ payload.alpha | attr('b') }}",
            "{{ payload.repo == {'full_name': 'acme/web', 'private': false, 'owner': {'login': 'octo'}} }}",
            "{{ payload.repo.owner == payload.repo.owner }}",
            "{{ payload.repo | tojson }}",
            "{{ payload.commits | sort(attribute='id') }}",
            "{{ payload.commits | sort(attribute='n', reverse=true) | map(attribute='id') | join }}",
            "{{ payload.commits | map(attribute='message') | list }}",
            "{{ payload.commits | selectattr('n', 'gt', 1) | list }}",
            "{{ payload.commits | rejectattr('id', 'equalto', 'a1') | list }}",
            "{{ payload.commits | groupby('id') }}",
            "{{ payload.commits | sum(attribute='n') }}",
            "{{ payload.commits | max(attribute='n') }}",
            "{{ payload.commits | first | tojson }}",
            "{{ payload.commits[0].missing }}",
            "{{ payload.commits.missing }}",
            "{{ payload.size.missing }}",
            "{{ payload.missing }}",
            "{{ payload.missing.deeper }}",
            "{{ payload.missing is defined }}",
            "{{ payload.unicode | length }} {{ payload.unicode | upper }} {{ payload.unicode[1] }}",
            "{{ payload['with space'] }}",
            "{% for c in payload.commits %}{{ loop.index }}/{{ loop.length }}:{{ c.id }}{{ loop.cycle(',', ';') }}{% endfor %}",
            "{% for k, v in payload.alpha | items %}{{ k }}={{ v }};{% endfor %}",
            "{% for k in payload %}{{ k }};{% endfor %}",
            "{% for x in payload | reverse %}{{ x }};{% endfor %}",
            "{% for x in payload.labels if x != 'bug' %}{{ x }}{% else %}none{% endfor %}",
            "{% set ns = namespace(total=0) %}{% for c in payload.commits %}{% set ns.total = ns.total + c.n %}{% endfor %}{{ ns.total }}",
            "{{ headers }} {{ event }} {{ source }} {{ headers['x-github-event'] }} {{ event.type }}",
            "{{ event | dictsort }} {{ headers | tojson }} {{ headers | length }}",
            "{{ headers | list }} {{ event | list }} {{ headers | reverse | list }}",
            "{{ headers['content-type'] }} {{ headers.missing }}",
            "{{ headers['Content-Type'] }}",
            "{% for k, v in headers | items %}{{ k }}={{ v }};{% endfor %}",
            "{{ event == {'id': 'ev_1', 'provider': 'github', 'received_at': '2024-05-01T10:00:00Z', 'source': 'github', 'type': 'push'} }}",
            "{{ debug() }}",
        ];
        let s = secrets();
        let headers = many_headers();
        for payload in &payloads {
            let converted = converted_context(payload);
            let lazy = RenderContext::new(&super::super::EventView {
                id: "ev_1",
                source: "github",
                provider: "github",
                event_type: "push",
                received_at: "2024-05-01T10:00:00Z",
                headers: &headers,
                payload: &Arc::new(payload.clone()),
            });
            for template in templates {
                let mut t = Templates::new(&s);
                let node = t.compile_string(template, &s, true).unwrap();
                let at = At::Root(&"with.x");
                let want = t.render_node(&node, &converted, &at);
                let got = t.render_node(&node, &lazy.value(), &at);
                assert_eq!(got, want, "{template} over {payload}");
            }
        }
    }
}
