//! Authoring kit for hookwise plugins written in Rust.
//!
//! A plugin implements [`Plugin`] and registers it with [`export_plugin!`]:
//!
//! ```ignore
//! use hookwise_plugin_sdk::{Context, Event, Plugin, PluginError, export_plugin, serde_json};
//!
//! struct Noop;
//! impl Plugin for Noop {
//!     type Input = serde_json::Value;
//!     type Output = serde_json::Value;
//!     fn handle(_: &Context, _: &Event, _: Self::Input) -> Result<Self::Output, PluginError> {
//!         Ok(serde_json::json!({ "ok": true }))
//!     }
//! }
//! export_plugin!(Noop);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` (crate-type `cdylib`).

pub mod db;
pub mod http;
pub mod log;

pub use serde;
pub use serde_json;

/// Raw bindings generated from `plugins/wit` (world `hookwise:plugin/plugin`).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "hookwise:plugin/plugin",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "hookwise_plugin_sdk::bindings",
    });
}

use bindings::hookwise::plugin::types as wit;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Where a call comes from.
#[derive(Debug, Clone)]
pub struct Context {
    pub rule_id: String,
    pub action_index: u32,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Stable across retries of the same (event, rule, action).
    pub idempotency_key: String,
}

/// The verified webhook event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub event_type: String,
    /// RFC 3339.
    pub received_at: String,
    pub headers: Vec<(String, String)>,
    /// The payload as JSON text; see [`Event::payload`].
    pub payload_json: String,
}

impl Event {
    /// Deserialises the payload into `T` (a fatal error if it does not fit).
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_str(&self.payload_json)
            .map_err(|e| PluginError::fatal(format!("event payload: {e}")))
    }

    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Whether the host should retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Retryable,
    Fatal,
}

/// An error the plugin reports (as opposed to a trap).
#[derive(Debug, Clone)]
pub struct PluginError {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl PluginError {
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Fatal,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Asks the host not to retry before `after`.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

/// What a plugin implements.
pub trait Plugin {
    /// The rendered `with:` block, deserialised from JSON.
    type Input: DeserializeOwned;
    /// Serialised to JSON as the action's output.
    type Output: Serialize;

    fn handle(
        ctx: &Context,
        event: &Event,
        input: Self::Input,
    ) -> Result<Self::Output, PluginError>;
}

/// Glue called by [`export_plugin!`]; not part of the stable API.
#[doc(hidden)]
pub fn __run<P: Plugin>(
    ctx: wit::Context,
    event: wit::Event,
    input: String,
) -> Result<wit::Outcome, wit::PluginError> {
    let ctx = Context {
        rule_id: ctx.rule_id,
        action_index: ctx.action_index,
        attempt: ctx.attempt,
        idempotency_key: ctx.idempotency_key,
    };
    let event = Event {
        id: event.id,
        source: event.source,
        event_type: event.event_type,
        received_at: event.received_at,
        headers: event.headers,
        payload_json: event.payload,
    };
    let result = serde_json::from_str::<P::Input>(&input)
        .map_err(|e| PluginError::fatal(format!("invalid input: {e}")))
        .and_then(|input| P::handle(&ctx, &event, input))
        .and_then(|output| {
            serde_json::to_string(&output)
                .map_err(|e| PluginError::fatal(format!("output is not serialisable: {e}")))
        });
    match result {
        Ok(output) => Ok(wit::Outcome { output }),
        Err(e) => Err(wit::PluginError {
            kind: match e.kind {
                ErrorKind::Retryable => wit::ErrorKind::Retryable,
                ErrorKind::Fatal => wit::ErrorKind::Fatal,
            },
            message: e.message,
            retry_after_ms: e
                .retry_after
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }),
    }
}

/// Declares the JSON Schema of the plugin's input (what a rule's `with:` renders to), read from
/// a file at compile time with a path relative to the file that uses the macro. hookwise checks
/// every rule's `with:` against it when rules are loaded (`hookwise check` names the file, line
/// and column of a misspelt key) and every rendered input before a call.
///
/// ```ignore
/// hookwise_plugin_sdk::input_schema!("../input.schema.json");
/// ```
///
/// The schema travels inside the wasm file, in a custom section named `hookwise:input-schema`.
#[macro_export]
macro_rules! input_schema {
    ($file:literal) => {
        #[used]
        #[unsafe(link_section = "hookwise:input-schema")]
        static __HOOKWISE_INPUT_SCHEMA: [u8; include_bytes!($file).len()] = *include_bytes!($file);
    };
}

/// Exports a [`Plugin`] implementation as the component's `handle`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        struct __HookwiseExport;

        impl $crate::bindings::Guest for __HookwiseExport {
            fn handle(
                ctx: $crate::bindings::hookwise::plugin::types::Context,
                event: $crate::bindings::hookwise::plugin::types::Event,
                input: ::std::string::String,
            ) -> ::std::result::Result<
                $crate::bindings::hookwise::plugin::types::Outcome,
                $crate::bindings::hookwise::plugin::types::PluginError,
            > {
                $crate::__run::<$plugin>(ctx, event, input)
            }
        }

        $crate::bindings::export!(__HookwiseExport with_types_in $crate::bindings);
    };
}
