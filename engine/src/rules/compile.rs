//! Rule files -> `RuleSet`: parse with positions, check against the generated JSON Schema, compile
//! conditions and templates, check the links to sources, plugins and secrets, and report every
//! problem in every file at once with file, line and column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::config::{RuleConfig, rule_file_schema};
use super::index::{EventPattern, Index};
use super::reads::PayloadReads;
use super::template::{TNode, Templates};
use super::{Action, CompileContext, IfExpr, RetryPolicy, Rule, RuleSet, condition};
use crate::schema::input;
use crate::units::parse_duration;
use crate::yamldoc::{Diagnostic, Document, Position, display_pointer, escape_pointer_token};

/// Default total attempts of an action (the first one included).
pub const DEFAULT_ATTEMPTS: u32 = 5;
/// Default wait before the second attempt.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(2);
/// Default longest wait between attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Longest accepted `max_backoff` and `timeout`: anything longer is a typo, not a policy.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Directory levels `load_paths` descends.
const MAX_DIR_DEPTH: usize = 32;

const OPERATOR_LIST: &str = "equals, not_equals, iequals, in, not_in, contains, not_contains, \
                             icontains, starts_with, ends_with, matches, exists, not_empty, gt, \
                             gte, lt, lte; combinators all, any, not; selectors path, header, event";

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            jsonschema::validator_for(&rule_file_schema())
                .map_err(|e| format!("internal error: the rule file schema does not compile: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Compiles rule files (path, text). Pure: no I/O. Returns every problem at once.
pub fn compile_files(
    files: &[(PathBuf, String)],
    ctx: &CompileContext<'_>,
) -> Result<RuleSet, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let validator = match validator() {
        Ok(v) => v,
        Err(message) => {
            let file = files.first().map(|(p, _)| p.clone()).unwrap_or_default();
            return Err(vec![Diagnostic {
                file,
                position: Position { line: 1, column: 1 },
                pointer: String::new(),
                message,
            }]);
        }
    };
    let mut templates = Templates::new(ctx.secrets);
    let mut rules: Vec<Rule> = Vec::new();
    let mut seen: HashMap<String, (PathBuf, Position)> = HashMap::new();

    for (path, text) in files {
        let mut file_diags = Vec::new();
        let doc = match Document::parse(path, text) {
            Ok(doc) => doc,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        if let Some(d) = duplicate_key_error(&doc, text) {
            diags.push(d);
            continue;
        }
        let schema_errors: Vec<Diagnostic> = doc
            .schema_errors(validator, |_| false)
            .into_iter()
            .map(|mut d| {
                if !d.message.starts_with("unknown key") {
                    d.position = node_position(&doc, &d.pointer);
                }
                explain_unknown_key(d)
            })
            .collect();
        let items = doc
            .value
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, item) in items.iter().enumerate() {
            let base = format!("/rules/{i}");
            let under = |p: &str| p == base || p.starts_with(&format!("{base}/"));
            if schema_errors.iter().any(|d| under(&d.pointer)) {
                continue;
            }
            let cfg: RuleConfig = match serde_json::from_value(item.clone()) {
                Ok(cfg) => cfg,
                Err(e) => {
                    file_diags.push(error_at(&doc, &base, format!("invalid rule: {e}")));
                    continue;
                }
            };
            let id_pos = doc.position(&format!("{base}/id"));
            if let Some((first_file, first_pos)) = seen.get(&cfg.id) {
                file_diags.push(error_at(
                    &doc,
                    &format!("{base}/id"),
                    format!(
                        "duplicate rule id `{}` (first defined at {}:{}:{})",
                        cfg.id,
                        first_file.display(),
                        first_pos.line,
                        first_pos.column
                    ),
                ));
                continue;
            }
            seen.insert(cfg.id.clone(), (path.clone(), id_pos));
            if let Some(rule) = compile_rule(&doc, &base, cfg, ctx, &mut templates, &mut file_diags)
            {
                rules.push(rule);
            }
        }
        file_diags.extend(schema_errors);
        file_diags.sort_by_key(|d| d.position);
        file_diags.dedup();
        diags.extend(file_diags);
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut index = Index::default();
    for (n, rule) in rules.iter().enumerate() {
        index.insert(n, &rule.sources, &rule.events);
    }
    Ok(RuleSet {
        rules,
        index,
        templates,
    })
}

/// A diagnostic at the node `pointer`. For a mapping the position is that of its first key:
/// yaml-rust2 marks a block mapping's start at the first key's `:`, which reads as off by a few
/// columns.
fn error_at(doc: &Document, pointer: &str, message: impl Into<String>) -> Diagnostic {
    let mut d = doc.error_at(pointer, message);
    d.position = node_position(doc, pointer);
    d
}

fn node_position(doc: &Document, pointer: &str) -> Position {
    match doc.value.pointer(pointer) {
        Some(Value::Object(map)) if !map.is_empty() => map
            .keys()
            .map(|k| doc.key_position(&format!("{pointer}/{}", escape_pointer_token(k))))
            .min()
            .unwrap_or_else(|| doc.position(pointer)),
        _ => doc.position(pointer),
    }
}

/// serde_yaml accepts duplicate keys when it builds a JSON value (the last one wins), so they
/// are looked for separately: a second parse into serde_yaml's own mapping type, which refuses them.
fn duplicate_key_error(doc: &Document, text: &str) -> Option<Diagnostic> {
    let err = serde_yaml::from_str::<serde_yaml::Value>(text).err()?;
    let message = err.to_string();
    if !message.contains("duplicate") {
        return None;
    }
    let position = duplicate_key_pointer(&message)
        .map(|p| doc.key_position(&p))
        .or_else(|| {
            err.location().map(|l| Position {
                line: l.line(),
                column: l.column(),
            })
        })
        .unwrap_or(Position { line: 1, column: 1 });
    let message = match message.split_once(" at line ") {
        Some((head, _)) => head.to_string(),
        None => message,
    };
    Some(Diagnostic {
        file: doc.file.clone(),
        position,
        pointer: String::new(),
        message: format!("invalid YAML: {message}"),
    })
}

/// `rules[0]: duplicate entry with key "id" at ...` -> `/rules/0/id`, whose recorded key position
/// is the later (duplicate) occurrence. None when the message has another shape.
fn duplicate_key_pointer(message: &str) -> Option<String> {
    let (path, rest) = message.split_once(": duplicate entry with key \"")?;
    let key = rest.split_once('"')?.0;
    let mut pointer = String::new();
    for part in path.split('.') {
        let (name, indexes) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            pointer.push('/');
            pointer.push_str(&escape_pointer_token(name));
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            pointer.push('/');
            pointer.push_str(index.strip_suffix(']')?);
        }
    }
    pointer.push('/');
    pointer.push_str(&escape_pointer_token(key));
    Some(pointer)
}

/// Unknown keys inside conditions are almost always misspelt operators: say which exist.
fn explain_unknown_key(mut d: Diagnostic) -> Diagnostic {
    if d.message.starts_with("unknown key") && d.pointer.contains("/when") {
        d.message = format!("{} in condition (known: {OPERATOR_LIST})", d.message);
    }
    d
}

fn compile_rule(
    doc: &Document,
    base: &str,
    cfg: RuleConfig,
    ctx: &CompileContext<'_>,
    templates: &mut Templates,
    diags: &mut Vec<Diagnostic>,
) -> Option<Rule> {
    let before = diags.len();
    let known_sources: Vec<&str> = ctx.sources.iter().map(|(id, _)| id.as_str()).collect();
    let source_ids = cfg.source.ids();
    let many = matches!(cfg.source, super::config::SourceSpec::Many(_));
    for (j, id) in source_ids.iter().enumerate() {
        if !known_sources.contains(id) {
            let at = if many {
                format!("{base}/source/{j}")
            } else {
                format!("{base}/source")
            };
            // `hookwise` (always known) is not a configured source.
            let configured: Vec<&str> = known_sources
                .iter()
                .copied()
                .filter(|s| *s != crate::model::OWN_SOURCE)
                .collect();
            diags.push(error_at(
                doc,
                &at,
                format!(
                    "unknown source `{id}` (configured: {}; or `{}` for hookwise's own events)",
                    list_or_none(&configured),
                    crate::model::OWN_SOURCE
                ),
            ));
        }
    }
    for (j, e) in cfg.events.iter().enumerate() {
        if e.trim().is_empty() {
            diags.push(error_at(
                doc,
                &format!("{base}/events/{j}"),
                "empty event type",
            ));
        }
    }

    let mut problems = Vec::new();
    let when = cfg
        .when
        .as_ref()
        .and_then(|c| condition::compile(c, &format!("{base}/when"), &mut problems));
    for (pointer, message) in problems.drain(..) {
        diags.push(error_at(doc, &pointer, message));
    }

    let if_expr = match &cfg.if_expr {
        Some(text) => match templates.compile_if(text) {
            Ok(expr) => Some(IfExpr {
                text: text.clone(),
                expr,
            }),
            Err(message) => {
                diags.push(error_at(
                    doc,
                    &format!("{base}/if"),
                    format!("invalid `if` expression: {message}"),
                ));
                None
            }
        },
        None => None,
    };

    let mut actions = Vec::new();
    for (j, a) in cfg.actions.iter().enumerate() {
        let at = format!("{base}/actions/{j}");
        if !ctx.plugins.iter().any(|p| p == &a.plugin) {
            let known: Vec<&str> = ctx.plugins.iter().map(String::as_str).collect();
            diags.push(error_at(
                doc,
                &format!("{at}/plugin"),
                format!(
                    "unknown plugin `{}` (configured: {})",
                    a.plugin,
                    list_or_none(&known)
                ),
            ));
        }
        let with_value = Value::Object(a.with.clone().unwrap_or_default());
        let with = templates.compile_tree(
            &with_value,
            &format!("{at}/with"),
            ctx.secrets,
            &mut problems,
        );
        let template_problems = !problems.is_empty();
        for (pointer, message) in problems.drain(..) {
            let shown = display_pointer(&pointer);
            diags.push(error_at(
                doc,
                &pointer,
                format!("invalid template in {shown}: {message}"),
            ));
        }
        let input_schema = ctx.input_schemas.get(&a.plugin).cloned();
        if let Some(schema) = &input_schema
            && !template_problems
        {
            for p in schema.check_unrendered(&stand_in(&with)) {
                let pointer = format!("{at}/with{}", p.pointer);
                let message = format!(
                    "{}: {} (input of plugin `{}`)",
                    display_pointer(&pointer),
                    p.message,
                    a.plugin
                );
                diags.push(if p.at_key {
                    doc.error_at_key(&pointer, message)
                } else {
                    error_at(doc, &pointer, message)
                });
            }
        }
        let duration = |text: &Option<String>, key: &str, diags: &mut Vec<Diagnostic>| {
            let text = text.as_deref()?;
            match parse_duration(text) {
                Ok(d) if d <= MAX_DURATION => Some(d),
                Ok(_) => {
                    diags.push(error_at(
                        doc,
                        &format!("{at}/{key}"),
                        format!("`{text}` is longer than 24h"),
                    ));
                    None
                }
                Err(error) => {
                    diags.push(error_at(doc, &format!("{at}/{key}"), error.to_string()));
                    None
                }
            }
        };
        let retry_cfg = a.retry.clone().unwrap_or_default();
        let retry = RetryPolicy {
            attempts: retry_cfg.attempts.unwrap_or(DEFAULT_ATTEMPTS),
            backoff: duration(&retry_cfg.backoff, "retry/backoff", diags)
                .unwrap_or(DEFAULT_BACKOFF),
            max_backoff: duration(&retry_cfg.max_backoff, "retry/max_backoff", diags)
                .unwrap_or(DEFAULT_MAX_BACKOFF),
        };
        if retry.backoff > retry.max_backoff {
            diags.push(error_at(
                doc,
                &format!("{at}/retry"),
                "retry.backoff is longer than retry.max_backoff",
            ));
        }
        let timeout = duration(&a.timeout, "timeout", diags);
        if timeout == Some(Duration::ZERO) {
            diags.push(error_at(
                doc,
                &format!("{at}/timeout"),
                "timeout must be longer than 0s",
            ));
        }
        let order_key = match &a.order_key {
            Some(text) => match templates.compile_string(text, ctx.secrets, false) {
                Ok(node) => Some(node),
                Err(message) => {
                    diags.push(error_at(
                        doc,
                        &format!("{at}/order_key"),
                        format!("invalid order_key: {message}"),
                    ));
                    None
                }
            },
            None => None,
        };
        actions.push(Action {
            plugin: a.plugin.clone(),
            with,
            input_schema,
            retry,
            timeout,
            order_key,
            concurrency: a.concurrency,
        });
    }

    if diags.len() > before {
        return None;
    }
    let mut payload_reads = PayloadReads::default();
    if let Some(when) = &when {
        when.add_reads(&mut payload_reads);
    }
    if let Some(i) = &if_expr {
        i.expr.add_reads(&mut payload_reads);
    }
    for action in &actions {
        templates.add_reads(&action.with, &mut payload_reads);
        if let Some(key) = &action.order_key {
            templates.add_reads(key, &mut payload_reads);
        }
    }
    Some(Rule {
        id: cfg.id,
        description: cfg.description,
        sources: source_ids.iter().map(|s| s.to_string()).collect(),
        events: cfg.events.iter().map(|e| EventPattern::new(e)).collect(),
        when,
        if_expr,
        actions,
        payload_reads,
        file: doc.file.clone(),
        position: doc.position(base),
    })
}

/// A `with:` tree with its templates replaced by what they stand for before rendering (see
/// `InputSchema::check_unrendered`).
fn stand_in(node: &TNode) -> Value {
    match node {
        TNode::Literal(v) => v.clone(),
        TNode::Text { .. } => input::text_template(),
        TNode::Typed(_) => input::any_template(),
        TNode::Array(items) => Value::Array(items.iter().map(stand_in).collect()),
        TNode::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), stand_in(v)))
                .collect(),
        ),
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Reads rule files (directories recursively: `*.yaml`/`*.yml` in sorted order) and compiles
/// them. Unreadable paths are diagnostics like any other problem.
pub fn load_paths(paths: &[PathBuf], ctx: &CompileContext<'_>) -> Result<RuleSet, Vec<Diagnostic>> {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    for path in paths {
        let mut found = Vec::new();
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => collect_dir(path, 0, &mut found, &mut diags),
            Ok(_) => found.push(path.clone()),
            Err(e) => diags.push(io_diagnostic(path, &e)),
        }
        found.sort();
        for file in found {
            match std::fs::read_to_string(&file) {
                Ok(text) => files.push((file, text)),
                Err(e) => diags.push(io_diagnostic(&file, &e)),
            }
        }
    }
    let compiled = compile_files(&files, ctx);
    match compiled {
        Ok(set) if diags.is_empty() => Ok(set),
        Ok(_) => Err(diags),
        Err(more) => {
            diags.extend(more);
            Err(diags)
        }
    }
}

fn collect_dir(dir: &Path, depth: usize, out: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>) {
    if depth > MAX_DIR_DEPTH {
        diags.push(Diagnostic {
            file: dir.to_path_buf(),
            position: Position { line: 1, column: 1 },
            pointer: String::new(),
            message: format!("directories nest deeper than {MAX_DIR_DEPTH} levels"),
        });
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diags.push(io_diagnostic(dir, &e));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                diags.push(io_diagnostic(dir, &e));
                continue;
            }
        };
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => collect_dir(&path, depth + 1, out, diags),
            Ok(meta) if meta.is_file() => {
                let ext = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or_default();
                if ext == "yaml" || ext == "yml" {
                    out.push(path);
                }
            }
            Ok(_) => {}
            Err(e) => diags.push(io_diagnostic(&path, &e)),
        }
    }
}

fn io_diagnostic(path: &Path, err: &std::io::Error) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        position: Position { line: 1, column: 1 },
        pointer: String::new(),
        message: format!("cannot read: {err}"),
    }
}
