//! POSTs the event's payload to `url` and classifies the answer the way a careful webhook
//! forwarder should: 2xx is done, 429 and 5xx are retried (honouring `Retry-After` seconds),
//! any other status is a fatal error. The host adds the `Idempotency-Key` header.

use std::time::Duration;

use hookwise_plugin_sdk::serde_json::{Value, json};
use hookwise_plugin_sdk::{Context, Event, Plugin, PluginError, export_plugin, http, log};
use serde::Deserialize;

hookwise_plugin_sdk::input_schema!("../input.schema.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    url: String,
    /// Sent instead of the event payload when given.
    #[serde(default)]
    body: Option<Value>,
}

struct Relay;

impl Plugin for Relay {
    type Input = Input;
    type Output = Value;

    fn handle(ctx: &Context, event: &Event, input: Input) -> Result<Value, PluginError> {
        let body = match input.body {
            Some(v) => v.to_string(),
            None => event.payload_json.clone(),
        };
        let attempt = ctx.attempt.to_string();
        let headers = [
            ("content-type", "application/json"),
            ("x-hookwise-event", event.id.as_str()),
            ("x-hookwise-attempt", attempt.as_str()),
        ];
        let resp = http::send("POST", &input.url, &headers, Some(body.as_bytes()))
            .map_err(|e| PluginError::retryable(format!("POST {}: {e}", input.url)))?;
        log::info(&format!("POST {} -> {}", input.url, resp.status));
        match resp.status {
            200..=299 => Ok(json!({ "status": resp.status })),
            429 | 500..=599 => {
                let mut err = PluginError::retryable(format!("receiver answered {}", resp.status));
                let retry_after = resp
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                    .and_then(|(_, v)| std::str::from_utf8(v).ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if let Some(secs) = retry_after {
                    err = err.retry_after(Duration::from_secs(secs));
                }
                Err(err)
            }
            other => Err(PluginError::fatal(format!("receiver answered {other}"))),
        }
    }
}

export_plugin!(Relay);
