//! The provider payload schemas in `schemas/providers/`, embedded in the binary so `hookwise`
//! works from any directory, and compiled once, on first use.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::{ProviderSchemas, SchemaError, Selector};

/// One schema file hookwise ships.
#[derive(Debug, Clone, Copy)]
pub struct Shipped {
    /// The provider id (`github`, `stripe`, ...).
    pub provider: &'static str,
    /// What selects it: the GitHub event name, the Shopify topic, or [`ENVELOPE`] /
    /// [`SLACK_EVENT_CALLBACK`] for providers with one envelope.
    pub event: &'static str,
    /// Its path in the repository.
    pub path: &'static str,
    /// Its text.
    pub text: &'static str,
}

/// The key of a provider whose every event has the same envelope.
pub(super) const ENVELOPE: &str = "event";
/// The key of the Slack Events API envelope (its body `type`).
pub(super) const SLACK_EVENT_CALLBACK: &str = "event_callback";

macro_rules! shipped {
    ($provider:literal, $event:expr, $file:literal) => {
        Shipped {
            provider: $provider,
            event: $event,
            path: concat!("schemas/providers/", $file),
            text: include_str!(concat!("../../../schemas/providers/", $file)),
        }
    };
}

/// Every shipped schema (docs/providers.md, "Payload schemas", lists them for users).
pub const SHIPPED: &[Shipped] = &[
    shipped!("github", "push", "github/push.json"),
    shipped!("github", "pull_request", "github/pull_request.json"),
    shipped!("github", "issues", "github/issues.json"),
    shipped!("github", "release", "github/release.json"),
    shipped!("github", "workflow_run", "github/workflow_run.json"),
    shipped!("stripe", ENVELOPE, "stripe/event.json"),
    shipped!(
        "standard-webhooks",
        ENVELOPE,
        "standard-webhooks/event.json"
    ),
    shipped!("slack", SLACK_EVENT_CALLBACK, "slack/event_callback.json"),
    shipped!("shopify", "orders/create", "shopify/orders-create.json"),
];

/// How each provider with shipped schemas picks one for an event.
pub(super) fn selector(provider: &str) -> Option<Selector> {
    match provider {
        "github" => Some(Selector::BaseName),
        "shopify" => Some(Selector::Exact),
        "stripe" | "standard-webhooks" => Some(Selector::Envelope),
        "slack" => Some(Selector::SlackEventsApi),
        _ => None,
    }
}

/// Provider ids that have shipped schemas, in [`SHIPPED`] order.
pub fn providers_with_schemas() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for s in SHIPPED {
        if !out.contains(&s.provider) {
            out.push(s.provider);
        }
    }
    out
}

type Compiled = Result<HashMap<&'static str, ProviderSchemas>, SchemaError>;

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let mut out: HashMap<&'static str, ProviderSchemas> = HashMap::new();
        for s in SHIPPED {
            let broken = |detail: String| SchemaError::Builtin {
                path: s.path,
                detail,
            };
            let selector = selector(s.provider)
                .ok_or_else(|| broken("no selector for its provider".into()))?;
            let value: serde_json::Value =
                serde_json::from_str(s.text).map_err(|e| broken(e.to_string()))?;
            let schema = jsonschema::validator_for(&value).map_err(|e| broken(e.to_string()))?;
            out.entry(s.provider)
                .or_insert_with(|| ProviderSchemas {
                    provider: s.provider,
                    selector,
                    schemas: HashMap::new(),
                })
                .schemas
                .insert(s.event, Arc::new(schema));
        }
        Ok(out)
    })
}

/// The compiled shipped schemas of `provider` (an id such as `github`).
pub fn provider_schemas(provider: &str) -> Result<ProviderSchemas, SchemaError> {
    let all = compiled().as_ref().map_err(Clone::clone)?;
    all.get(provider)
        .cloned()
        .ok_or_else(|| SchemaError::NotShipped {
            provider: provider.to_string(),
            shipped: providers_with_schemas().join(", "),
        })
}
