//! The per-event template context (`payload`, `headers`, `source`, `event`), built once per
//! event and shared by every template of every rule.
//!
//! The payload is not converted into template values as a whole: templates see it through
//! `JsonNode`, which looks into the JSON when a template reads a field, so the cost follows what
//! templates read rather than the size of the payload. What templates see is the same as over a
//! converted payload: items are converted exactly as minijinja converts serde values, arrays are
//! sequences and objects are maps with the same keys in the same order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr};
use serde_json::Value;

/// Template variable holding the secrets map (real or redacted).
pub(super) const SECRETS_VAR: &str = "__hookwise_secrets";

/// The variables of a context, sorted as a map of them lists them.
const NAMES: &[&str] = &["event", "headers", "payload", "source"];
/// The same with the secrets variable (`_` sorts before letters).
const NAMES_WITH_SECRETS: &[&str] = &[SECRETS_VAR, "event", "headers", "payload", "source"];

/// The per-event template context: `payload`, `headers`, `source`, `event`.
#[derive(Clone)]
pub struct RenderContext {
    vars: Vars,
    /// `vars` as a template value, made once per event.
    plain: minijinja::Value,
}

/// The variables templates see. Hand-written `Debug`: the secrets map may hold real values.
#[derive(Clone)]
struct Vars {
    payload: minijinja::Value,
    headers: minijinja::Value,
    source: minijinja::Value,
    event: minijinja::Value,
    /// Only in the context of templates that use secrets.
    secrets: Option<minijinja::Value>,
}

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vars")
            .field("payload", &self.payload)
            .field("headers", &self.headers)
            .field("source", &self.source)
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

impl RenderContext {
    /// Builds the context for one event. The payload is shared, not copied, and read lazily by
    /// the templates that use it.
    pub fn new(ev: &super::EventView<'_>) -> RenderContext {
        // Names lower-cased; of names that differ only in case, the last in order wins.
        let headers: BTreeMap<String, &str> = ev
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
            .collect();
        let headers = headers
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), v.to_string()))
            .collect();
        // Sorted by name.
        let event = [
            ("id", ev.id),
            ("provider", ev.provider),
            ("received_at", ev.received_at),
            ("source", ev.source),
            ("type", ev.event_type),
        ]
        .map(|(k, v)| (Cow::Borrowed(k), v.to_string()));
        let vars = Vars {
            payload: json_value(ev.payload, &[], ev.payload),
            headers: minijinja::Value::from_object(StrMap(headers)),
            source: minijinja::Value::from(ev.source),
            event: minijinja::Value::from_object(StrMap(event.into())),
            secrets: None,
        };
        RenderContext {
            plain: minijinja::Value::from_object(vars.clone()),
            vars,
        }
    }

    /// The context of templates that do not use secrets.
    pub(super) fn value(&self) -> minijinja::Value {
        self.plain.clone()
    }

    /// The context of templates that use secrets: `secrets` is the real or the redacted map.
    pub(super) fn with_secrets(&self, secrets: &minijinja::Value) -> minijinja::Value {
        let mut vars = self.vars.clone();
        vars.secrets = Some(secrets.clone());
        minijinja::Value::from_object(vars)
    }
}

/// Converts any serializable value into a template value.
pub(super) fn mj<T: serde::Serialize + ?Sized>(value: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

impl Object for Vars {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<minijinja::Value> {
        match key {
            "payload" => Some(self.payload.clone()),
            "headers" => Some(self.headers.clone()),
            "source" => Some(self.source.clone()),
            "event" => Some(self.event.clone()),
            SECRETS_VAR => self.secrets.clone(),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(self.names())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.names().len())
    }
}

impl Vars {
    fn names(&self) -> &'static [&'static str] {
        if self.secrets.is_some() {
            NAMES_WITH_SECRETS
        } else {
            NAMES
        }
    }
}

/// A map of strings sorted by key, each key once (headers, event fields), seen by templates as
/// the same map converted into template values would be; entries are converted when read.
#[derive(Debug)]
struct StrMap(Vec<(Cow<'static, str>, String)>);

impl StrMap {
    fn get(&self, key: &str) -> Option<minijinja::Value> {
        let at = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(minijinja::Value::from(self.0[at].1.as_str()))
    }
}

impl Object for StrMap {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.get(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<minijinja::Value> {
        self.get(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_rev_key_value_enumerator(|this| {
            Box::new(this.0.iter().map(|(k, v)| {
                (
                    minijinja::Value::from(&**k),
                    minijinja::Value::from(v.as_str()),
                )
            }))
        })
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// One step from a JSON array or object to one of its items.
#[derive(Debug, Clone)]
enum Step {
    Key(Box<str>),
    Index(usize),
}

/// A JSON array or object inside a payload, seen by templates as a sequence or a map: the
/// payload and the steps from its root to the node.
#[derive(Debug)]
struct JsonNode {
    root: Arc<Value>,
    path: Box<[Step]>,
}

impl JsonNode {
    /// The JSON value of this node. The path was walked when the node was made and the payload
    /// never changes, so the `Null` fallback is never taken.
    fn json(&self) -> &Value {
        let mut node: &Value = &self.root;
        for step in &*self.path {
            let next = match step {
                Step::Key(k) => node.get(&**k),
                Step::Index(i) => node.get(*i),
            };
            node = next.unwrap_or(&Value::Null);
        }
        node
    }

    /// The template value of `item`, found one `step` below this node.
    fn item(&self, step: Step, item: &Value) -> minijinja::Value {
        match item {
            Value::Array(_) | Value::Object(_) => {
                let mut path = Vec::with_capacity(self.path.len() + 1);
                path.extend_from_slice(&self.path);
                path.push(step);
                json_value(&self.root, &path, item)
            }
            scalar => mj(scalar),
        }
    }
}

/// `value`, found at `path` in `root`, as a template value: scalars converted, arrays and
/// objects as nodes.
fn json_value(root: &Arc<Value>, path: &[Step], value: &Value) -> minijinja::Value {
    match value {
        Value::Array(_) | Value::Object(_) => minijinja::Value::from_object(JsonNode {
            root: root.clone(),
            path: path.into(),
        }),
        scalar => mj(scalar),
    }
}

// Mirrors minijinja's own objects for converted values: `Vec<Value>` for arrays (a sequence
// indexed by `as_usize`) and a `BTreeMap<Value, Value>` for objects (string keys, sorted, a
// key-value enumerator that can run in reverse).
impl Object for JsonNode {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.json() {
            Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        match self.json() {
            Value::Array(items) => {
                let i = key.as_usize()?;
                Some(self.item(Step::Index(i), items.get(i)?))
            }
            Value::Object(map) => {
                let k = key.as_str()?;
                Some(self.item(Step::Key(k.into()), map.get(k)?))
            }
            _ => None,
        }
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<minijinja::Value> {
        match self.json() {
            Value::Object(map) => Some(self.item(Step::Key(key.into()), map.get(key)?)),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.json() {
            Value::Array(items) => Enumerator::Seq(items.len()),
            Value::Object(_) => self.mapped_rev_key_value_enumerator(|this| {
                let map = this.json().as_object();
                Box::new(map.into_iter().flatten().map(|(k, v)| {
                    (
                        minijinja::Value::from(k.as_str()),
                        this.item(Step::Key(k.as_str().into()), v),
                    )
                }))
            }),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.json() {
            Value::Array(items) => Some(items.len()),
            Value::Object(map) => Some(map.len()),
            _ => Some(0),
        }
    }
}
