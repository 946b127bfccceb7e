//! A plugin that misbehaves in the way its input asks for, so the host's
//! limits and capability checks can be tested against real WebAssembly.

use hookwise_plugin_sdk::serde_json::{Value, json};
use hookwise_plugin_sdk::{Context, Event, Plugin, PluginError, db, export_plugin, http, log};
use serde::Deserialize;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
enum Input {
    /// Behaves: echoes the context and input.
    Ok,
    /// Never returns.
    Loop,
    /// Allocates (and touches) 1 MiB blocks until something stops it.
    Memory,
    /// Recurses without bound with a frame in linear memory (Rust's shadow
    /// stack): overflows into an out-of-bounds access.
    Recursion,
    /// Recurses without bound with frames only on the wasm call stack:
    /// exhausts the engine's stack.
    NativeRecursion,
    /// Returns an output of `bytes` bytes.
    BigOutput { bytes: usize },
    /// Logs `lines` lines of `line_bytes` bytes each.
    LogFlood { lines: usize, line_bytes: usize },
    /// Executes `unreachable`.
    Trap,
    /// Panics (which traps).
    Panic,
    /// Tries to read a host file and the environment; reports what it got.
    Snoop,
    /// Reports what an earlier call left in this plugin's memory (a fresh instance finds
    /// nothing), then leaves a mark for the next call to find.
    Remember,
    /// Returns a retryable error with a retry hint.
    Retryable,
    /// Sends one HTTP request.
    Http { method: String, url: String },
    /// Logs `log` (when given), then fails with `error` (retryable when `retryable`) or
    /// returns `output`: echoes text chosen by the test (secrets, odd bytes) into every place
    /// the host records.
    Say {
        #[serde(default)]
        log: Option<String>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        retryable: bool,
        #[serde(default)]
        output: Value,
    },
    /// Runs SQL statements; with `ignore_errors` it returns Ok even when one fails.
    Db {
        connection: String,
        statements: Vec<Statement>,
        #[serde(default)]
        ignore_errors: bool,
    },
    /// Runs each step in order (a log line, an HTTP call, some SQL, ...), stops at the first
    /// error, and returns the steps' outputs.
    Steps { steps: Vec<Input> },
}

#[derive(Deserialize)]
struct Statement {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
}

/// Calls this instance has seen before the current one.
static CALLS: AtomicU64 = AtomicU64::new(0);
/// 8 KiB of statics (two pages) that `Remember` marks.
static SCRATCH: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];

/// Size of one allocation of the memory bomb.
const MIB: usize = 1024 * 1024;

/// Recurses until `depth == limit` (the test passes a limit no stack can reach).
fn recurse(depth: u64, limit: u64, pad: [u64; 16]) -> u64 {
    let pad = black_box(pad);
    if depth >= limit {
        return depth;
    }
    recurse(depth + 1, limit, pad) + pad[(depth % 16) as usize]
}

/// Non-tail recursion that keeps nothing in linear memory.
#[inline(never)]
fn recurse_native(depth: u64, limit: u64) -> u64 {
    if depth >= limit {
        return depth;
    }
    recurse_native(depth + 1, limit).rotate_left(1) ^ depth
}

struct Hostile;

impl Plugin for Hostile {
    type Input = Input;
    type Output = Value;

    fn handle(ctx: &Context, event: &Event, input: Input) -> Result<Value, PluginError> {
        match input {
            Input::Remember => {
                let calls_before = CALLS.fetch_add(1, Ordering::Relaxed);
                let dirty_words = SCRATCH
                    .iter()
                    .filter(|w| w.load(Ordering::Relaxed) != 0)
                    .count();
                for w in &SCRATCH {
                    w.store(0xdead_beef, Ordering::Relaxed);
                }
                Ok(json!({"calls_before": calls_before, "dirty_words": dirty_words}))
            }
            Input::Ok => Ok(json!({
                "ok": true,
                "attempt": ctx.attempt,
                "key": ctx.idempotency_key,
                "event": event.id,
            })),
            Input::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            Input::Memory => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; MIB];
                    block[MIB - 1] = 1;
                    blocks.push(black_box(block));
                }
            }
            Input::Recursion => Ok(json!({ "depth": recurse(0, black_box(u64::MAX), [1; 16]) })),
            Input::NativeRecursion => {
                Ok(json!({ "depth": recurse_native(0, black_box(u64::MAX)) }))
            }
            Input::BigOutput { bytes } => Ok(json!({ "data": "x".repeat(bytes) })),
            Input::LogFlood { lines, line_bytes } => {
                let line = "y".repeat(line_bytes);
                for _ in 0..lines {
                    log::info(&line);
                }
                Ok(json!({ "logged": lines }))
            }
            Input::Trap => {
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_arch = "wasm32"))]
                unreachable!("wasm only")
            }
            Input::Panic => panic!("hostile plugin panics on purpose"),
            Input::Snoop => {
                let file = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string());
                let dir = std::fs::read_dir("/")
                    .map(|d| d.count())
                    .map_err(|e| e.to_string());
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                Ok(json!({
                    "file": file.is_ok(),
                    "file_error": file.err(),
                    "dir": dir.is_ok(),
                    "env": env,
                    "home": std::env::var("HOME").ok(),
                    "args": args,
                }))
            }
            Input::Retryable => {
                Err(PluginError::retryable("try later").retry_after(Duration::from_millis(1500)))
            }
            Input::Http { method, url } => {
                let resp = http::send(&method, &url, &[("x-plugin", "hostile")], None)
                    .map_err(PluginError::retryable)?;
                Ok(json!({
                    "status": resp.status,
                    "body": String::from_utf8_lossy(&resp.body),
                }))
            }
            Input::Say {
                log,
                error,
                retryable,
                output,
            } => {
                if let Some(line) = log {
                    log::info(&line);
                }
                match error {
                    Some(e) if retryable => Err(PluginError::retryable(e)),
                    Some(e) => Err(PluginError::fatal(e)),
                    None => Ok(output),
                }
            }
            Input::Db {
                connection,
                statements,
                ignore_errors,
            } => {
                let mut results = Vec::new();
                for st in statements {
                    match db::execute(&connection, &st.sql, &st.params) {
                        Ok(v) => results.push(v),
                        Err(e) if ignore_errors => results.push(json!({ "error": e })),
                        Err(e) => return Err(PluginError::fatal(e)),
                    }
                }
                Ok(json!({ "results": results }))
            }
            Input::Steps { steps } => {
                let mut outputs = Vec::new();
                for step in steps {
                    outputs.push(Self::handle(ctx, event, step)?);
                }
                Ok(json!({ "steps": outputs }))
            }
        }
    }
}

export_plugin!(Hostile);
