//! hookwise: a webhook automation engine. Providers POST events; hookwise verifies each
//! signature, stores each event exactly once, answers fast, then matches the event against YAML
//! rules and runs the actions they name in sandboxed WebAssembly plugins.

pub mod admin;
pub mod announcer;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod dispatch;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod ingress;
pub mod metrics;
pub mod model;
pub mod own_events;
pub mod plugin_host;
pub mod process;
pub mod retention;
pub mod rfc3339;
pub mod rules;
pub mod schema;
pub mod scrub;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod units;
pub mod verify;
pub mod yamldoc;
