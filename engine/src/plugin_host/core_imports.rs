//! The `hookwise` import module: the plugin contract for core modules (languages whose tools
//! make WASI preview 1 modules rather than components: Go, C, Zig, AssemblyScript, ...).
//!
//! A core plugin is a WASI command (`_start`). Besides stdin/stdout it may import these
//! functions from module `hookwise`; strings are (pointer, length) pairs of UTF-8 in the
//! module's exported `memory`:
//!
//! | function | what it does |
//! |---|---|
//! | `request_read(ptr, cap) -> i32` | copies up to `cap` bytes of the call's request JSON (`{"ctx","event","input"}`) to `ptr`; returns its whole length |
//! | `output(ptr, len)` | the call succeeds with this output JSON (wins over stdout) |
//! | `error(kind, ptr, len, retry_after_ms: i64)` | the call fails: kind 0 retryable, 1 fatal; `retry_after_ms` < 0 for none |
//! | `log(level, ptr, len)` | one log line: level 0 trace, 1 debug, 2 info, 3 warn, 4 error |
//! | `http_send(ptr, len) -> i32` | sends the request JSON `{"method","url","headers","body"}` through the `allow.http` grant |
//! | `db_execute(conn_ptr, conn_len, sql_ptr, sql_len, params_ptr, params_len) -> i32` | one statement on a granted connection, in the call's transaction |
//! | `result_read(ptr, cap) -> i32` | copies up to `cap` bytes of the last `http_send`/`db_execute` result to `ptr`; returns its whole length |
//!
//! `http_send` and `db_execute` return the length of their result (JSON) when they succeed and
//! minus the length of an error message (never empty) when they fail; either is read with
//! `result_read`. A response is `{"status", "headers": [[name, value]], "body"}` with the body
//! as text, or `"body_base64"` when it is not UTF-8. A `db_execute` result is the same JSON as
//! the component world's `db.execute`. Pointers outside memory trap.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use serde_json::{Value, json};
use wasmtime::{Caller, Extern, Linker};

use super::command::CommandState;
use super::db::DbCallState;
use super::http::HttpHooks;
use super::limits::{LogLevel, LogSink, LogStream, truncate_string};
use super::{CallError, ErrorKind};

/// The import module's name.
pub const MODULE: &str = "hookwise";
/// Longest string a module may hand to the host in one argument.
const MAX_ARGUMENT_BYTES: usize = 16 << 20;

/// What a core plugin's imports act on during one call.
pub(crate) struct CoreCall {
    request: Vec<u8>,
    /// The result of the last `http_send` or `db_execute`.
    result: Vec<u8>,
    /// What `output` or `error` said, if either was called.
    pub(crate) answer: Option<Result<String, CallError>>,
    pub(crate) logs: LogSink,
    pub(crate) http: HttpHooks,
    pub(crate) db: DbCallState,
    max_output: usize,
}

impl CoreCall {
    pub(crate) fn new(
        request: Vec<u8>,
        logs: LogSink,
        http: HttpHooks,
        db: DbCallState,
        max_output: usize,
    ) -> CoreCall {
        CoreCall {
            request,
            result: Vec::new(),
            answer: None,
            logs,
            http,
            db,
            max_output,
        }
    }
}

/// Functions of the module a core plugin imports for its capabilities, for `inspect`: which
/// grant each one calls for.
pub fn capability_of(name: &str) -> Option<super::inspect::Capability> {
    match name {
        "http_send" => Some(super::inspect::Capability::Http),
        "db_execute" => Some(super::inspect::Capability::Db),
        _ => None,
    }
}

/// Every function of the module (what `inspect` accepts).
pub const FUNCTIONS: &[&str] = &[
    "request_read",
    "output",
    "error",
    "log",
    "http_send",
    "db_execute",
    "result_read",
];

/// Adds the `hookwise` module to a command linker.
pub(crate) fn add_to_linker(linker: &mut Linker<CommandState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "request_read",
        |mut caller: Caller<'_, CommandState>, ptr: i32, cap: i32| -> wasmtime::Result<i32> {
            let request = std::mem::take(&mut caller.data_mut().core.request);
            let copied = copy_out(&mut caller, ptr, cap, &request);
            caller.data_mut().core.request = request;
            copied
        },
    )?;
    linker.func_wrap(
        MODULE,
        "result_read",
        |mut caller: Caller<'_, CommandState>, ptr: i32, cap: i32| -> wasmtime::Result<i32> {
            let result = std::mem::take(&mut caller.data_mut().core.result);
            let copied = copy_out(&mut caller, ptr, cap, &result);
            caller.data_mut().core.result = result;
            copied
        },
    )?;
    linker.func_wrap(
        MODULE,
        "output",
        |mut caller: Caller<'_, CommandState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let text = read_string(&mut caller, ptr, len, "output")?;
            let core = &mut caller.data_mut().core;
            core.answer = Some(super::check_output(text, core.max_output));
            Ok(())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "error",
        |mut caller: Caller<'_, CommandState>,
         kind: i32,
         ptr: i32,
         len: i32,
         retry_after_ms: i64|
         -> wasmtime::Result<()> {
            let message = read_string(&mut caller, ptr, len, "error")?;
            let core = &mut caller.data_mut().core;
            core.answer = Some(Err(CallError::Plugin {
                kind: if kind == 1 {
                    ErrorKind::Fatal
                } else {
                    ErrorKind::Retryable
                },
                message: truncate_string(message, core.max_output),
                retry_after: u64::try_from(retry_after_ms)
                    .ok()
                    .map(std::time::Duration::from_millis),
            }));
            Ok(())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "log",
        |mut caller: Caller<'_, CommandState>,
         level: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<()> {
            let message = read_string(&mut caller, ptr, len, "log")?;
            let level = match level {
                0 => LogLevel::Trace,
                1 => LogLevel::Debug,
                3 => LogLevel::Warn,
                4 => LogLevel::Error,
                _ => LogLevel::Info,
            };
            caller
                .data_mut()
                .core
                .logs
                .push(level, LogStream::Log, &message);
            Ok(())
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "http_send",
        |mut caller: Caller<'_, CommandState>, (ptr, len): (i32, i32)| {
            Box::new(async move {
                let request = read_bytes(&mut caller, ptr, len, "http_send")?;
                let hooks = caller.data().core.http.clone();
                let result = send(&hooks, &request).await;
                Ok(settle(&mut caller.data_mut().core, result))
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "db_execute",
        |mut caller: Caller<'_, CommandState>,
         (conn_ptr, conn_len, sql_ptr, sql_len, params_ptr, params_len): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                let connection = read_string(&mut caller, conn_ptr, conn_len, "db_execute")?;
                let sql = read_string(&mut caller, sql_ptr, sql_len, "db_execute")?;
                let params = read_string(&mut caller, params_ptr, params_len, "db_execute")?;
                let core = &mut caller.data_mut().core;
                let result = core.db.execute(connection, sql, params).await;
                Ok(settle(core, result))
            })
        },
    )?;
    Ok(())
}

/// Keeps a result for `result_read`; returns its length, negative for an error.
fn settle(core: &mut CoreCall, result: Result<String, String>) -> i32 {
    let (ok, mut text) = match result {
        Ok(text) => (true, text),
        Err(text) if text.is_empty() => (false, "error".to_string()),
        Err(text) => (false, text),
    };
    if text.len() > i32::MAX as usize {
        text = truncate_string(text, i32::MAX as usize);
    }
    let len = text.len() as i32;
    core.result = text.into_bytes();
    if ok { len } else { -len }
}

fn memory(caller: &mut Caller<'_, CommandState>, what: &str) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(wasmtime::format_err!(
            "hookwise.{what}: the module exports no `memory`"
        )),
    }
}

fn read_bytes(
    caller: &mut Caller<'_, CommandState>,
    ptr: i32,
    len: i32,
    what: &str,
) -> wasmtime::Result<Vec<u8>> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    if len > MAX_ARGUMENT_BYTES {
        return Err(wasmtime::format_err!(
            "hookwise.{what}: an argument of {len} bytes is more than {MAX_ARGUMENT_BYTES}"
        ));
    }
    let memory = memory(caller, what)?;
    let mut out = vec![0; len];
    memory.read(&caller, ptr, &mut out).map_err(|_| {
        wasmtime::format_err!("hookwise.{what}: {len} bytes at {ptr} are outside memory")
    })?;
    Ok(out)
}

fn read_string(
    caller: &mut Caller<'_, CommandState>,
    ptr: i32,
    len: i32,
    what: &str,
) -> wasmtime::Result<String> {
    let bytes = read_bytes(caller, ptr, len, what)?;
    // Text from a plugin is recorded as it came, minus what is not UTF-8.
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()))
}

/// Copies up to `cap` bytes of `data` to `ptr`; returns the length of all of `data`.
fn copy_out(
    caller: &mut Caller<'_, CommandState>,
    ptr: i32,
    cap: i32,
    data: &[u8],
) -> wasmtime::Result<i32> {
    let n = data.len().min(cap.max(0) as usize);
    if n > 0 {
        let memory = memory(caller, "read")?;
        memory
            .write(&mut *caller, ptr as u32 as usize, &data[..n])
            .map_err(|_| {
                wasmtime::format_err!("hookwise: {n} bytes at {ptr} are outside memory")
            })?;
    }
    Ok(i32::try_from(data.len()).unwrap_or(i32::MAX))
}

/// A request as a core plugin writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CoreRequest {
    #[serde(default = "get")]
    method: String,
    url: String,
    /// `{"name": "value"}` or `[["name", "value"], ...]`.
    #[serde(default)]
    headers: Option<Value>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

fn get() -> String {
    "GET".to_string()
}

/// Sends one request through the call's HTTP hooks (grant, address policy, limits, record)
/// and reads the whole response.
async fn send(hooks: &HttpHooks, request: &[u8]) -> Result<String, String> {
    let request: CoreRequest =
        serde_json::from_slice(request).map_err(|e| format!("invalid request JSON: {e}"))?;
    let body = match (request.body, request.body_base64) {
        (Some(_), Some(_)) => return Err("give `body` or `body_base64`, not both".to_string()),
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => {
            use base64::Engine as _;
            Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("body_base64: {e}"))?,
            )
        }
        (None, None) => Bytes::new(),
    };
    let uri: http::Uri = request
        .url
        .parse()
        .map_err(|e| format!("url {:?}: {e}", request.url))?;
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(uri.clone());
    if let Some(authority) = uri.authority() {
        builder = builder.header(http::header::HOST, authority.as_str());
    }
    for (name, value) in header_pairs(request.headers)? {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .map_err(|e| format!("invalid request: {e}"))?;
    let (response, io) = hooks.send(request).await.map_err(|e| e.to_string())?;
    // The connection is driven while the body is read, and dropped with it.
    let driver = tokio::spawn(Box::into_pin(io));
    let (parts, body) = response.into_parts();
    let collected = body.collect().await;
    driver.abort();
    let bytes = collected.map_err(|e| e.to_string())?.to_bytes();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut answer = json!({"status": parts.status.as_u16(), "headers": headers});
    match std::str::from_utf8(&bytes) {
        Ok(text) => answer["body"] = Value::String(text.to_string()),
        Err(_) => {
            use base64::Engine as _;
            answer["body_base64"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes));
        }
    }
    Ok(answer.to_string())
}

fn header_pairs(headers: Option<Value>) -> Result<Vec<(String, String)>, String> {
    let bad = || "headers: an object of strings or a list of [name, value] pairs".to_string();
    match headers {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                _ => Err(bad()),
            })
            .collect(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|pair| match pair {
                Value::Array(mut p) if p.len() == 2 => match (p.remove(0), p.remove(0)) {
                    (Value::String(k), Value::String(v)) => Ok((k, v)),
                    _ => Err(bad()),
                },
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}
