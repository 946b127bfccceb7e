//! Payload schemas (the validate step after identification): the provider schemas shipped inside the binary
//! (`schemas/providers/`), the schemas a source names, compiled once at start-up; which schema an
//! event is checked against; validation errors as JSON pointers. Pure: no files, no HTTP. The
//! config reads a source's schema files and hands their JSON here.

pub mod input;
mod shipped;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::model::glob_match;

pub use input::{InputProblem, InputSchema};
pub use shipped::{SHIPPED, Shipped, provider_schemas, providers_with_schemas};

/// Why a schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// `schema: provider` on a provider hookwise ships no schemas for.
    #[error(
        "hookwise ships no payload schemas for provider `{provider}` (it does for {shipped}); \
         name a schema file instead"
    )]
    NotShipped { provider: String, shipped: String },
    /// A schema built into the binary does not compile: a bug caught by the unit tests.
    #[error("internal error: the built-in schema {path} does not compile: {detail}")]
    Builtin { path: &'static str, detail: String },
    /// Not a JSON Schema this validator accepts.
    #[error("not a valid JSON Schema: {0}")]
    Invalid(String),
}

/// The `schema:` value that selects the schemas hookwise ships for the source's provider.
pub const PROVIDER_KEYWORD: &str = "provider";

/// A compiled JSON Schema, shared by every source and event type that uses it.
pub type Schema = Arc<jsonschema::Validator>;

/// Compiles one JSON Schema (any draft `$schema` names; 2020-12 when it names none). The schema
/// is checked against its meta-schema; references outside the document are not fetched, so they
/// fail here rather than at request time.
pub fn compile(schema: &Value) -> Result<Schema, SchemaError> {
    jsonschema::validator_for(schema)
        .map(Arc::new)
        .map_err(|e| SchemaError::Invalid(e.to_string()))
}

/// One way a payload breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayloadError {
    /// JSON pointer to the offending value (`""` is the whole payload; a missing property is
    /// reported at the object that lacks it).
    pub pointer: String,
    /// What is wrong, without quoting the payload's values.
    pub message: String,
}

/// Every way (up to `limit`) `payload` breaks `schema`.
pub fn validate(
    schema: &jsonschema::Validator,
    payload: &Value,
    limit: usize,
) -> Vec<PayloadError> {
    schema
        .iter_errors(payload)
        .take(limit)
        .map(|e| PayloadError {
            pointer: e.instance_path().as_str().to_string(),
            message: e.masked().to_string(),
        })
        .collect()
}

/// What the schema choice looks at in one verified request.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The identified event type (`pull_request.opened`, `invoice.paid`, `orders/create`).
    pub event_type: &'a str,
    /// The parsed payload.
    pub payload: &'a Value,
    /// The raw body, to tell a JSON body from a form-encoded one.
    pub body: &'a [u8],
}

/// The schemas one source validates its payloads against.
#[derive(Clone)]
pub enum SourceSchemas {
    /// `schema: provider`: the schemas hookwise ships for the source's provider.
    Provider(ProviderSchemas),
    /// `schema: FILE`: one schema for every event.
    One(Schema),
    /// `schema: {EVENT_TYPE: FILE, ...}`: a schema per event type or glob.
    ByEvent(EventSchemas),
}

impl SourceSchemas {
    /// The schema this event must match, if any.
    pub fn select(&self, incoming: &Incoming<'_>) -> Option<&jsonschema::Validator> {
        match self {
            SourceSchemas::Provider(p) => p.select(incoming),
            SourceSchemas::One(schema) => Some(schema),
            SourceSchemas::ByEvent(map) => map.select(incoming.event_type),
        }
        .map(|s| s.as_ref())
    }

    /// Every way (up to `limit`) the event breaks its schema; empty when it has none.
    pub fn check(&self, incoming: &Incoming<'_>, limit: usize) -> Vec<PayloadError> {
        self.select(incoming)
            .map(|schema| validate(schema, incoming.payload, limit))
            .unwrap_or_default()
    }
}

impl fmt::Debug for SourceSchemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSchemas::Provider(p) => write!(f, "Provider({})", p.provider),
            SourceSchemas::One(_) => f.write_str("One(..)"),
            SourceSchemas::ByEvent(map) => f
                .debug_tuple("ByEvent")
                .field(&map.patterns().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// How a provider's shipped schemas are picked for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selector {
    /// By the event type up to its first `.` (GitHub: `pull_request.opened` -> `pull_request`).
    BaseName,
    /// By the whole event type (Shopify topics: `orders/create`).
    Exact,
    /// One envelope for every event (Stripe, Standard Webhooks).
    Envelope,
    /// The Events API envelope for JSON bodies with `type: event_callback`; slash commands and
    /// interactivity (form-encoded) have none (Slack).
    SlackEventsApi,
}

/// The shipped schemas of one provider, compiled.
#[derive(Clone)]
pub struct ProviderSchemas {
    provider: &'static str,
    selector: Selector,
    /// Keyed by [`Shipped::event`].
    schemas: HashMap<&'static str, Schema>,
}

impl ProviderSchemas {
    /// The provider id these schemas are for.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    fn select(&self, incoming: &Incoming<'_>) -> Option<&Schema> {
        let key = match self.selector {
            Selector::BaseName => incoming
                .event_type
                .split_once('.')
                .map_or(incoming.event_type, |(base, _)| base),
            Selector::Exact => incoming.event_type,
            Selector::Envelope => shipped::ENVELOPE,
            Selector::SlackEventsApi => {
                let callback = incoming.payload.get("type").and_then(Value::as_str)
                    == Some(shipped::SLACK_EVENT_CALLBACK);
                if !callback || !is_json(incoming.body) {
                    return None;
                }
                shipped::SLACK_EVENT_CALLBACK
            }
        };
        self.schemas.get(key)
    }
}

/// Whether `body` is a JSON document (rather than a form that merely parsed into an object).
fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// Schemas by event type: exact types, then globs (`*` any run of characters, `?` one).
#[derive(Clone, Default)]
pub struct EventSchemas {
    exact: HashMap<String, Schema>,
    /// Most specific first: more literal characters, then by pattern.
    globs: Vec<(String, Schema)>,
}

impl EventSchemas {
    /// Builds the map; an exact type wins over any glob, and of several matching globs the one
    /// with the most literal characters wins (ties: the first in alphabetical order).
    pub fn new(entries: impl IntoIterator<Item = (String, Schema)>) -> EventSchemas {
        let mut out = EventSchemas::default();
        for (pattern, schema) in entries {
            if is_glob(&pattern) {
                out.globs.push((pattern, schema));
            } else {
                out.exact.insert(pattern, schema);
            }
        }
        out.globs
            .sort_by(|(a, _), (b, _)| literal_len(b).cmp(&literal_len(a)).then_with(|| a.cmp(b)));
        out
    }

    fn select(&self, event_type: &str) -> Option<&Schema> {
        self.exact.get(event_type).or_else(|| {
            self.globs
                .iter()
                .find(|(g, _)| glob_match(g, event_type))
                .map(|(_, s)| s)
        })
    }

    fn patterns(&self) -> impl Iterator<Item = &str> {
        self.exact
            .keys()
            .map(String::as_str)
            .chain(self.globs.iter().map(|(g, _)| g.as_str()))
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

fn literal_len(pattern: &str) -> usize {
    pattern.chars().filter(|c| !matches!(c, '*' | '?')).count()
}

#[cfg(test)]
mod tests;
