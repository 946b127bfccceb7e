//! Rule files as they are written: serde types whose doc comments become the JSON Schema.
//!
//! Nothing here is used for matching: `compile` turns these into `Rule`s once.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::units::DURATION_PATTERN;

/// A rule file: one or more rules.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hookwise rule file")]
pub struct RuleFile {
    /// The rules in this file, evaluated in the order they are written (files in sorted order).
    pub rules: Vec<RuleConfig>,
}

/// One rule: which events it applies to, when it matches, and what it does.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique id of the rule across all rule files (letters, digits, `-`, `_`, `.`). Executions
    /// and their idempotency keys are derived from it, so renaming a rule re-plans its actions.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"), length(max = 128))]
    pub id: String,
    /// What the rule is for, in a sentence. Shown in traces and the dashboard.
    #[serde(default)]
    pub description: Option<String>,
    /// The source id (from the config's `sources`) or a list of source ids.
    pub source: SourceSpec,
    /// Event types this rule applies to: exact types (`push`, `invoice.paid`) or globs where `*`
    /// matches any run of characters and `?` one character (`pull_request.*`, `*`).
    #[schemars(length(min = 1))]
    pub events: Vec<String>,
    /// Structured conditions over the payload, headers and event; the rule matches only when
    /// they hold. Omitted: always holds.
    #[serde(default)]
    pub when: Option<ConditionConfig>,
    /// A template expression (same language as `with:` templates, without `{{ }}`) evaluated
    /// after `when` holds; the rule matches when its value is truthy. A missing field is an error.
    #[serde(default, rename = "if")]
    pub if_expr: Option<String>,
    /// What to do when the rule matches: one execution per action, in this order.
    #[schemars(length(min = 1))]
    pub actions: Vec<ActionConfig>,
}

/// One source id or a list of them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SourceSpec {
    /// A single source id.
    One(String),
    /// Several source ids.
    Many(#[schemars(length(min = 1))] Vec<String>),
}

impl SourceSpec {
    /// The ids, in the order written.
    pub fn ids(&self) -> Vec<&str> {
        match self {
            SourceSpec::One(id) => vec![id.as_str()],
            SourceSpec::Many(ids) => ids.iter().map(String::as_str).collect(),
        }
    }
}

/// One action: a plugin called with a rendered input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Name of the plugin to call (built-in `notify`, `call-api`, `write-db`, or one configured
    /// under `plugins`).
    pub plugin: String,
    /// The plugin's input. Every string in it is a template rendered with the event as context;
    /// a string that is exactly one `{{ expression }}` keeps the expression's JSON type.
    /// `${secret:NAME}` inserts a secret from the config (redacted in every trace).
    #[serde(default)]
    pub with: Option<serde_json::Map<String, Value>>,
    /// How failed attempts are retried. Defaults: 5 attempts, 2s backoff, 10m max backoff.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Time limit for one attempt, e.g. `10s`, `500ms`, `1m`. Default: the plugin's limit.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Template for an ordering key: executions of this action with the same rendered key run one
    /// at a time in event order (for example `{{ payload.data.object.customer }}`).
    #[serde(default)]
    pub order_key: Option<String>,
    /// At most this many executions of this action run at the same time.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: Option<u32>,
}

/// Retry policy of an action. Backoff doubles after each failed attempt, with jitter, up to
/// `max_backoff`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Total number of attempts including the first (1 = no retry). Default 5.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub attempts: Option<u32>,
    /// Wait before the second attempt, e.g. `2s`. Default `2s`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub backoff: Option<String>,
    /// Longest wait between two attempts, e.g. `10m`. Default `10m`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN))]
    pub max_backoff: Option<String>,
}

/// Event fields a condition can look at with `event:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventField {
    /// hookwise's event id.
    Id,
    /// The event type (`push`, `pull_request.opened`, `invoice.paid`).
    Type,
    /// The source id the event arrived on.
    Source,
    /// The provider id of that source.
    Provider,
    /// When hookwise received the event (RFC 3339).
    ReceivedAt,
}

impl EventField {
    /// The name as written in rule files.
    pub fn name(self) -> &'static str {
        match self {
            EventField::Id => "id",
            EventField::Type => "type",
            EventField::Source => "source",
            EventField::Provider => "provider",
            EventField::ReceivedAt => "received_at",
        }
    }
}

/// Deserializes a present field as `Some`, even when its value is `null` (so `equals: null`
/// compares with null instead of vanishing).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A condition: either a leaf (`path`, `header` or `event`, plus exactly one operator) or exactly
/// one combinator (`all`, `any`, `not`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// JSONPath (RFC 9535) over the payload, e.g. `$.ref` or `$.commits[*].message`.
    #[serde(default)]
    pub path: Option<String>,
    /// A request header, by name (case-insensitive), e.g. `x-github-event`.
    #[serde(default)]
    pub header: Option<String>,
    /// An event field: `id`, `type`, `source`, `provider` or `received_at`.
    #[serde(default)]
    pub event: Option<EventField>,

    /// Holds when a selected value equals this value (same type; numbers by value).
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<Value>")]
    pub equals: Option<Value>,
    /// Holds when no selected value equals this value.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<Value>")]
    pub not_equals: Option<Value>,
    /// Holds when a selected string equals this string ignoring case.
    #[serde(default)]
    pub iequals: Option<String>,
    /// Holds when a selected value equals one of these values.
    #[serde(default, rename = "in")]
    pub in_list: Option<Vec<Value>>,
    /// Holds when no selected value equals any of these values.
    #[serde(default)]
    pub not_in: Option<Vec<Value>>,
    /// Holds when a selected string contains this substring, or a selected array has an element
    /// equal to this value, or a selected object has this key.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<Value>")]
    pub contains: Option<Value>,
    /// Holds when no selected value `contains` this value.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<Value>")]
    pub not_contains: Option<Value>,
    /// Like `contains` for strings (and arrays of strings), ignoring case.
    #[serde(default)]
    pub icontains: Option<String>,
    /// Holds when a selected string starts with this prefix.
    #[serde(default)]
    pub starts_with: Option<String>,
    /// Holds when a selected string ends with this suffix.
    #[serde(default)]
    pub ends_with: Option<String>,
    /// Holds when a selected string matches this regular expression (not anchored: use `^`/`$`).
    #[serde(default)]
    pub matches: Option<String>,
    /// `true`: holds when the path selects at least one value (null counts).
    /// `false`: holds when it selects nothing.
    #[serde(default)]
    pub exists: Option<bool>,
    /// `true`: holds when a selected value is not null, "", [] or {}.
    /// `false`: holds when every selected value is empty (or nothing is selected).
    #[serde(default)]
    pub not_empty: Option<bool>,
    /// Holds when a selected value is greater than this number, string or RFC 3339 time.
    #[serde(default)]
    pub gt: Option<Ordered>,
    /// Holds when a selected value is greater than or equal to this value.
    #[serde(default)]
    pub gte: Option<Ordered>,
    /// Holds when a selected value is less than this value.
    #[serde(default)]
    pub lt: Option<Ordered>,
    /// Holds when a selected value is less than or equal to this value.
    #[serde(default)]
    pub lte: Option<Ordered>,

    /// Holds when every one of these conditions holds.
    #[serde(default)]
    pub all: Option<Vec<ConditionConfig>>,
    /// Holds when at least one of these conditions holds.
    #[serde(default)]
    pub any: Option<Vec<ConditionConfig>>,
    /// Holds when this condition does not hold.
    #[serde(default)]
    pub not: Option<Box<ConditionConfig>>,
}

/// The operand of an ordering operator: a number, or a string (compared as an RFC 3339 time when
/// both sides are one, as text otherwise).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Ordered {
    /// A number.
    Number(serde_json::Number),
    /// A string.
    Text(String),
}

impl Ordered {
    /// As a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Ordered::Number(n) => Value::Number(n.clone()),
            Ordered::Text(s) => Value::String(s.clone()),
        }
    }
}

/// The JSON Schema of rule files, generated from the types above.
pub fn rule_file_schema() -> Value {
    let schema = schemars::schema_for!(RuleFile);
    let mut value = serde_json::to_value(&schema).unwrap_or(Value::Bool(true));
    strip_null(&mut value);
    value
}

/// The JSON Schema of rule files for editors (`schemas/rules.schema.json`): the rule file
/// schema, plus, for an action of a built-in plugin, the keys its `with:` takes with their
/// descriptions, so editors complete and explain them.
pub fn rule_file_schema_for_editors() -> Value {
    let mut schema = rule_file_schema();
    let per_plugin: Vec<Value> = crate::config::BUILTIN_PLUGINS
        .iter()
        .filter_map(|name| {
            let input = crate::schema::InputSchema::builtin(name)?;
            Some(serde_json::json!({
                "if": {"properties": {"plugin": {"const": name}}, "required": ["plugin"]},
                "then": {"properties": {"with": crate::schema::input::for_editors(input.schema())}},
            }))
        })
        .collect();
    if let Some(Value::Object(action)) = schema.pointer_mut("/$defs/ActionConfig") {
        action.insert("allOf".to_string(), Value::Array(per_plugin));
    }
    schema
}

/// Optional fields are written by leaving them out, never as `null`. Removing the `null`
/// alternative schemars adds for `Option` also keeps validation errors precise: an error inside an
/// `anyOf` is reported only as "not valid under any of the schemas", at the parent.
fn strip_null(value: &mut Value) {
    let Value::Object(map) = value else {
        if let Value::Array(items) = value {
            items.iter_mut().for_each(strip_null);
        }
        return;
    };
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            map.insert("type".to_string(), only);
        }
    }
    if map.get("default").is_some_and(Value::is_null) {
        map.remove("default");
    }
    let is_null = |v: &Value| v.get("type").is_some_and(|t| t == "null");
    if let Some(Value::Array(alternatives)) = map.get("anyOf")
        && alternatives.len() == 2
        && let Some(keep) = alternatives.iter().find(|v| !is_null(v))
        && alternatives.iter().any(is_null)
        && let Value::Object(keep) = keep.clone()
    {
        map.remove("anyOf");
        for (k, v) in keep {
            map.entry(k).or_insert(v);
        }
    }
    map.values_mut().for_each(strip_null);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_generated_with_descriptions() {
        let schema = rule_file_schema();
        let text = schema.to_string();
        assert!(text.contains("JSONPath (RFC 9535)"), "{text}");
        assert!(text.contains("additionalProperties"), "{text}");
        assert!(!text.contains("\"null\""), "{text}");
        assert!(!text.contains("\"default\":null"), "{text}");
    }
}
