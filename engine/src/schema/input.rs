//! Plugin input schemas: the JSON Schema of what a rule's `with:` renders to for one plugin.
//!
//! The built-in plugins' schemas (`schemas/plugins/`) are embedded; any other plugin declares
//! its own in a custom section of its wasm file named [`SECTION`] (a component or a core
//! module; a section inside a component's core module counts too). A plugin that declares none
//! takes any input, as before.
//!
//! Inputs are checked twice. Before any event arrives, a `with:` tree is checked with its
//! templates standing in for what they can render: text with `{{ }}` renders a string of any
//! content, a value that is exactly one `{{ expression }}` renders any JSON value. Every literal
//! part must fit, so a misspelt key or a number where a string belongs is found by `hookwise
//! check`. When an action runs, its rendered input is checked again, exactly.

use std::sync::{Arc, OnceLock};

use jsonschema::ValidationError;
use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value, json};

use super::SchemaError;

/// Name of the custom section in which a plugin declares its input schema (JSON text).
pub const SECTION: &str = "hookwise:input-schema";
/// Longest declared schema accepted, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 256 << 10;
/// Most problems reported for one input.
const MAX_PROBLEMS: usize = 20;

/// What text with `{{ }}` stands for before it is rendered: some string.
const TEXT_TEMPLATE: &str = "\u{0}hookwise: text template\u{0}";
/// What a value that is exactly one `{{ expression }}` stands for: any JSON value.
const ANY_TEMPLATE: &str = "\u{0}hookwise: expression\u{0}";

/// The input schema a built-in plugin is built against (same text as `schemas/plugins/`).
const BUILTIN: &[(&str, &str)] = &[
    (
        "notify",
        include_str!("../../../schemas/plugins/notify.schema.json"),
    ),
    (
        "call-api",
        include_str!("../../../schemas/plugins/call-api.schema.json"),
    ),
    (
        "write-db",
        include_str!("../../../schemas/plugins/write-db.schema.json"),
    ),
];

/// One way an input breaks its plugin's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    /// JSON pointer into the input (`""` is the whole input).
    pub pointer: String,
    /// Whether the problem is the key at `pointer` (an unknown key) rather than its value.
    pub at_key: bool,
    /// What is wrong, without quoting the input's values (they may hold secrets).
    pub message: String,
}

/// A plugin's input schema, compiled for both checks.
pub struct InputSchema {
    schema: Value,
    exact: jsonschema::Validator,
    /// The schema with every place a value goes also taking a template's stand-in; None when
    /// that rewrite does not compile (a `$ref` into a rewritten place): then only rendered
    /// inputs are checked.
    unrendered: Option<(Value, jsonschema::Validator)>,
}

impl std::fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputSchema")
            .field("title", &self.schema.get("title"))
            .finish_non_exhaustive()
    }
}

impl InputSchema {
    /// Compiles a declared schema. It must describe an object (a `with:` block is one).
    pub fn new(schema: Value) -> Result<InputSchema, SchemaError> {
        if !schema.is_object() {
            return Err(SchemaError::Invalid(
                "an input schema is a JSON object".to_string(),
            ));
        }
        let exact =
            jsonschema::validator_for(&schema).map_err(|e| SchemaError::Invalid(e.to_string()))?;
        let rewritten = admit_templates(&schema, false, &probe_stand_ins);
        let unrendered = jsonschema::validator_for(&rewritten)
            .ok()
            .map(|validator| (rewritten, validator));
        Ok(InputSchema {
            schema,
            exact,
            unrendered,
        })
    }

    /// Parses and compiles the JSON text of a declared schema.
    pub fn from_text(text: &[u8]) -> Result<InputSchema, SchemaError> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::Invalid(format!(
                "it is {} bytes, more than {MAX_SCHEMA_BYTES}",
                text.len()
            )));
        }
        let value: Value = serde_json::from_slice(text)
            .map_err(|e| SchemaError::Invalid(format!("not JSON: {e}")))?;
        InputSchema::new(value)
    }

    /// The schema of built-in plugin `name`.
    pub fn builtin(name: &str) -> Option<Arc<InputSchema>> {
        static COMPILED: OnceLock<Vec<(&'static str, Arc<InputSchema>)>> = OnceLock::new();
        COMPILED
            .get_or_init(|| {
                BUILTIN
                    .iter()
                    .filter_map(|(name, text)| {
                        // A built-in schema that does not compile fails the unit tests.
                        let schema = InputSchema::from_text(text.as_bytes()).ok()?;
                        Some((*name, Arc::new(schema)))
                    })
                    .collect()
            })
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
    }

    /// The schema a wasm file declares in its [`SECTION`] custom section, if any. Bytes that
    /// are not wasm declare none: loading them says what is wrong.
    pub fn declared_in(wasm: &[u8]) -> Result<Option<InputSchema>, String> {
        match declared_section(wasm) {
            Some(text) => InputSchema::from_text(text)
                .map(Some)
                .map_err(|e| format!("its `{SECTION}` section: {e}")),
            None => Ok(None),
        }
    }

    /// The schema as declared.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Every way (up to a limit) a rendered input breaks the schema.
    pub fn check_rendered(&self, input: &Value) -> Vec<InputProblem> {
        let mut out = Vec::new();
        for error in self.exact.iter_errors(input) {
            explain(&error, &self.schema, &mut out);
        }
        finish(out)
    }

    /// Every way (up to a limit) an input whose templates are not rendered yet must break the
    /// schema. `probe` is the input with [`text_template`] and [`any_template`] standing in
    /// for its templates.
    pub fn check_unrendered(&self, probe: &Value) -> Vec<InputProblem> {
        let Some((schema, validator)) = &self.unrendered else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for error in validator.iter_errors(probe) {
            explain(&error, schema, &mut out);
        }
        finish(out)
    }
}

/// What stands for text with `{{ }}` in a probe for [`InputSchema::check_unrendered`].
pub fn text_template() -> Value {
    Value::String(TEXT_TEMPLATE.to_string())
}

/// What stands for a value that is exactly one `{{ expression }}` in a probe.
pub fn any_template() -> Value {
    Value::String(ANY_TEMPLATE.to_string())
}

fn finish(mut out: Vec<InputProblem>) -> Vec<InputProblem> {
    out.dedup();
    out.truncate(MAX_PROBLEMS);
    out
}

/// `schema` as editors should offer it for a rule's `with:`: wherever a value goes, a string
/// with `{{ }}` or `${secret:` is taken too (`hookwise check` finds what it cannot render to).
pub fn for_editors(schema: &Value) -> Value {
    let editor_stand_ins =
        |_takes_a_string: bool| vec![json!({"type": "string", "pattern": "\\{\\{|\\$\\{secret:"})];
    let mut out = admit_templates(schema, false, &editor_stand_ins);
    if let Value::Object(map) = &mut out {
        map.remove("$schema");
        map.remove("$id");
    }
    out
}

/// The schemas a value in the probe of [`InputSchema::check_unrendered`] may be instead of
/// what the schema wants: the stand-in of an expression always, the stand-in of text where a
/// string may go.
fn probe_stand_ins(takes_a_string: bool) -> Vec<Value> {
    let mut out = vec![json!({"const": ANY_TEMPLATE})];
    if takes_a_string {
        out.push(json!({"const": TEXT_TEMPLATE}));
    }
    out
}

/// The schema with every subschema that applies to a value inside the input wrapped in an
/// `anyOf` of the `stand_ins` and itself. `not` and `if` are left as they are: a stand-in there
/// could only make a check stricter.
fn admit_templates(schema: &Value, wrap: bool, stand_ins: &dyn Fn(bool) -> Vec<Value>) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let rewritten = match key.as_str() {
            // Subschemas of values inside this one.
            "properties" | "patternProperties" | "$defs" | "definitions" => {
                map_object(value, |s| admit_templates(s, true, stand_ins))
            }
            "additionalProperties"
            | "unevaluatedProperties"
            | "items"
            | "additionalItems"
            | "unevaluatedItems"
            | "contains" => match value {
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|s| admit_templates(s, true, stand_ins))
                        .collect(),
                ),
                other => admit_templates(other, true, stand_ins),
            },
            "prefixItems" => map_array(value, |s| admit_templates(s, true, stand_ins)),
            // Subschemas of this same value: the wrapper around it already admits stand-ins.
            "allOf" | "anyOf" | "oneOf" => {
                map_array(value, |s| admit_templates(s, false, stand_ins))
            }
            "then" | "else" | "dependentSchemas" => match value {
                Value::Object(_) if key == "dependentSchemas" => {
                    map_object(value, |s| admit_templates(s, false, stand_ins))
                }
                other => admit_templates(other, false, stand_ins),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), rewritten);
    }
    let rewritten = Value::Object(out);
    if !wrap {
        return rewritten;
    }
    let mut branches = stand_ins(takes_a_string(map));
    branches.push(rewritten);
    json!({ "anyOf": branches })
}

fn map_object(value: &Value, f: impl Fn(&Value) -> Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), f(v))).collect()),
        other => other.clone(),
    }
}

fn map_array(value: &Value, f: impl Fn(&Value) -> Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(f).collect()),
        other => other.clone(),
    }
}

/// Whether a subschema's `type` lets a string through (no `type` does).
fn takes_a_string(schema: &Map<String, Value>) -> bool {
    match schema.get("type") {
        None => true,
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
        Some(_) => true,
    }
}

/// Turns one validation error into problems a person can act on: an unknown key at the key
/// with the nearest known one; for alternatives (`oneOf`, `anyOf`) the problems of the one that
/// came closest; for a template stand-in, what the template can and cannot render.
fn explain(error: &ValidationError<'_>, schema: &Value, out: &mut Vec<InputProblem>) {
    let pointer = error.instance_path().as_str().to_string();
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let known = known_keys(schema, error.schema_path().as_str());
            for key in unexpected {
                let mut message = format!("unknown key `{key}`");
                if let Some(near) = nearest(key, &known) {
                    message.push_str(&format!(" (did you mean `{near}`?)"));
                } else if !known.is_empty() && known.len() <= 16 {
                    message.push_str(&format!(" (known: {})", known.join(", ")));
                }
                out.push(InputProblem {
                    pointer: format!("{pointer}/{}", crate::yamldoc::escape_pointer_token(key)),
                    at_key: true,
                    message,
                });
            }
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            if error.instance().as_str() == Some(TEXT_TEMPLATE) {
                out.push(InputProblem {
                    pointer,
                    at_key: false,
                    message: "text with `{{ }}` always renders a string, and a string does not \
                              fit here (a value that is exactly one `{{ expression }}` keeps the \
                              expression's type)"
                        .to_string(),
                });
                return;
            }
            // A stand-in wrapper: the written value broke the schema it wraps (the last branch).
            let branch = if is_stand_in_wrapper(context) {
                context.last()
            } else {
                // The alternative that knows the most of the keys written, then the one with
                // the fewest problems.
                context
                    .iter()
                    .filter(|b| !b.is_empty())
                    .min_by_key(|b| (unknown_keys(b), b.len()))
            };
            match branch {
                Some(errors) if !errors.is_empty() => {
                    for e in errors {
                        explain(e, schema, out);
                    }
                }
                _ => out.push(plain(error, pointer)),
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            out.push(InputProblem {
                pointer,
                at_key: false,
                message: format!("missing key `{name}`"),
            });
        }
        _ => out.push(plain(error, pointer)),
    }
}

fn plain(error: &ValidationError<'_>, pointer: String) -> InputProblem {
    InputProblem {
        at_key: false,
        message: error.masked().to_string(),
        pointer,
    }
}

fn unknown_keys(errors: &[ValidationError<'static>]) -> usize {
    errors
        .iter()
        .map(|e| match e.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => unexpected.len(),
            _ => 0,
        })
        .sum()
}

fn is_stand_in_wrapper(context: &[Vec<ValidationError<'static>>]) -> bool {
    let Some([first]) = context.first().map(Vec::as_slice) else {
        return false;
    };
    matches!(first.kind(), ValidationErrorKind::Constant { expected_value }
        if expected_value.as_str() == Some(ANY_TEMPLATE))
}

/// The property names of the schema object holding the keyword at `schema_path`.
fn known_keys(schema: &Value, schema_path: &str) -> Vec<String> {
    let parent = schema_path.rsplit_once('/').map_or("", |(p, _)| p);
    schema
        .pointer(parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The known key a misspelt `key` most likely meant: at most a third of its letters apart.
fn nearest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d > 0 && *d <= k.chars().count().div_ceil(3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(previous + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

/// The text of the first [`SECTION`] custom section anywhere in `wasm` (top level, or in a
/// module or component nested in a component), up to where the bytes stop being wasm.
fn declared_section(wasm: &[u8]) -> Option<&[u8]> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::CustomSection(section) = payload.ok()?
            && section.name() == SECTION
        {
            return Some(section.data());
        }
    }
    None
}

/// `wasm` with its input schema set to `schema` (JSON text): every top-level [`SECTION`]
/// section is removed and one is appended. The result runs exactly as before: hosts skip
/// custom sections they do not know.
pub fn embed(wasm: &[u8], schema: &[u8]) -> Result<Vec<u8>, String> {
    InputSchema::from_text(schema).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(wasm.len() + schema.len() + 32);
    let mut depth = 0usize;
    let mut copied = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("not a wasm file: {e}"))?;
        match &payload {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::CustomSection(section)
                if depth == 0 && section.name() == SECTION =>
            {
                // Custom sections are: id 0, size, then the name and data.
                let data_end = section.data_offset() + section.data().len();
                let start = section_start(wasm, section.range().start)?;
                out.extend_from_slice(&wasm[copied..start]);
                copied = data_end;
            }
            _ => {}
        }
    }
    out.extend_from_slice(&wasm[copied..]);
    let mut body = Vec::new();
    leb128(&mut body, SECTION.len());
    body.extend_from_slice(SECTION.as_bytes());
    body.extend_from_slice(schema);
    out.push(0);
    leb128(&mut out, body.len());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Where the custom section whose contents start at `contents` begins: its id byte (0) and a
/// LEB128 size come before.
fn section_start(wasm: &[u8], contents: usize) -> Result<usize, String> {
    // The size is 1 to 5 bytes; its last byte has the high bit clear, the others set.
    for size_len in 1..=5 {
        let Some(start) = contents.checked_sub(size_len + 1) else {
            break;
        };
        let size = &wasm[start + 1..contents];
        let well_formed = size.last().is_some_and(|b| b & 0x80 == 0)
            && size[..size.len() - 1].iter().all(|b| b & 0x80 != 0);
        if wasm[start] == 0 && well_formed {
            return Ok(start);
        }
    }
    Err("cannot find where a custom section starts".to_string())
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests;
