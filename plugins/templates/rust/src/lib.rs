//! __NAME__: a hookwise plugin.
//!
//! A worked example to change: it reads its input (`with:` in a rule), reads the GitHub push in
//! the event's payload, logs, and returns an output that hookwise records. It shows both kinds
//! of error: fatal (a bad input: retrying cannot help) and retryable (hookwise tries again later,
//! with backoff).

use std::time::Duration;

use hookwise_plugin_sdk::serde_json::{Value, json};
use hookwise_plugin_sdk::{Context, Event, Plugin, PluginError, export_plugin, log};
use serde::Deserialize;

// The JSON Schema of the input: `hookwise check` validates every rule's `with:` against it.
hookwise_plugin_sdk::input_schema!("../input.schema.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    greeting: String,
    /// `"outage"` pretends the service behind this plugin is down (a retryable error).
    #[serde(default)]
    simulate: Option<String>,
}

struct Handler;

impl Plugin for Handler {
    type Input = Input;
    type Output = Value;

    fn handle(ctx: &Context, event: &Event, input: Input) -> Result<Value, PluginError> {
        if input.simulate.as_deref() == Some("outage") {
            return Err(PluginError::retryable("the service is down; try again later")
                .retry_after(Duration::from_secs(30)));
        }
        let payload: Value = event.payload()?;
        let Some(pusher) = payload["pusher"]["name"].as_str() else {
            return Err(PluginError::fatal("the payload has no pusher.name: not a push?"));
        };
        let commits = payload["commits"].as_array().map_or(0, Vec::len);
        let repository = payload["repository"]["full_name"].as_str().unwrap_or("?");
        log::info(&format!(
            "event {} (attempt {}): {pusher} pushed {commits} commit(s) to {repository}",
            event.id, ctx.attempt
        ));
        Ok(json!({
            "message": format!("{} {pusher}: {commits} commit(s) to {repository}", input.greeting),
        }))
    }
}

export_plugin!(Handler);
