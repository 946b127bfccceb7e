//! The smallest useful plugin: answers `{"ok": true}`.

use hookwise_plugin_sdk::serde_json::{Value, json};
use hookwise_plugin_sdk::{Context, Event, Plugin, PluginError, export_plugin};

struct Noop;

impl Plugin for Noop {
    type Input = Value;
    type Output = Value;

    fn handle(_ctx: &Context, _event: &Event, _input: Value) -> Result<Value, PluginError> {
        Ok(json!({ "ok": true }))
    }
}

export_plugin!(Noop);
