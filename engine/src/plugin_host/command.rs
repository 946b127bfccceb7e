//! The core module ABI: a WASI preview 1 command module reads
//! `{"ctx","event","input"}` JSON on stdin, writes its output JSON on
//! stdout, logs on stderr, and exits 0 on success. A non-zero exit is an
//! error, fatal when stdout holds `{"error":{"kind":"fatal","message":...}}`
//! and retryable otherwise. Same sandbox and limits as components. Log, HTTP
//! and database come through the `hookwise` import module (`core_imports`),
//! which may also carry the request and the answer instead of stdin/stdout.

use std::time::Duration;

use serde_json::{Value, json};
use wasmtime::Store;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use super::core_imports::{self, CoreCall};
use super::limits::{CappedPipe, LogLevel, LogSink, LogStream, MemoryLimiter, truncate_string};
use super::{
    CallContext, CallError, CallEvent, CallReport, ErrorKind, LoadedPlugin, PluginHost,
    check_output, classify_error, settle_capabilities, with_panic_message,
};

pub(crate) struct CommandState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    pub(crate) core: CoreCall,
}

pub(crate) fn linker(
    engine: &wasmtime::Engine,
) -> wasmtime::Result<wasmtime::Linker<CommandState>> {
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut CommandState| &mut s.wasi)?;
    core_imports::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Parses JSON text into a value, or keeps it as a string when it is not JSON.
fn json_or_string(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

pub(crate) async fn call(
    host: &PluginHost,
    plugin: &LoadedPlugin,
    pre: &wasmtime::InstancePre<CommandState>,
    ctx: CallContext,
    event: CallEvent,
    input_json: String,
) -> CallReport {
    let limits = &plugin.inner.limits;
    let (http, db) = host.capabilities(plugin, &ctx.idempotency_key);
    let request = json!({
        "ctx": ctx,
        "event": {
            "id": event.id,
            "source": event.source,
            "event_type": event.event_type,
            "received_at": event.received_at,
            "headers": event.headers,
            "payload": json_or_string(event.payload_json),
        },
        "input": json_or_string(input_json),
    });
    // One byte over the cap tells "too large" apart from "exactly at the cap".
    let stdout = CappedPipe::new(limits.max_output_bytes.saturating_add(1));
    let stderr = CappedPipe::new(limits.max_log_bytes);
    let request = request.to_string();
    let core = CoreCall::new(
        request.clone().into_bytes(),
        LogSink::new(limits.max_log_bytes, limits.max_log_lines),
        http,
        db,
        limits.max_output_bytes,
    );
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdin(MemoryInputPipe::new(request))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    let state = CommandState {
        wasi: builder.build_p1(),
        limiter: MemoryLimiter::new(limits.memory_bytes),
        core,
    };
    let mut store = Store::new(&host.inner.engine, state);
    store.limiter(|s| &mut s.limiter);
    let initial_fuel = host.prepare_store(&mut store, limits);

    let run = async {
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| (true, e))?;
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|e| (true, e))?;
        start
            .call_async(&mut store, ())
            .await
            .map_err(|e| (false, e))
    };
    let outcome = tokio::time::timeout(limits.timeout, run).await;
    let memory_exceeded = store.data().limiter.exceeded;
    let (out_bytes, out_truncated) = stdout.contents();
    let out_text = String::from_utf8_lossy(&out_bytes).trim().to_string();
    let exit_code = match &outcome {
        Ok(Ok(())) => Some(0),
        Ok(Err((_, e))) => e
            .downcast_ref::<wasmtime_wasi::I32Exit>()
            .map(|exit| exit.0),
        Err(_) => None,
    };
    let answer = store.data_mut().core.answer.take();
    let result = match (outcome, exit_code) {
        (Err(_elapsed), _) => Err(CallError::Timeout),
        // What the module said through `hookwise.output` / `hookwise.error` wins over stdout
        // and the exit status (a trap is still a trap).
        (_, Some(_)) if answer.is_some() => answer.unwrap_or(Ok("null".to_string())),
        (_, Some(0)) if out_truncated => Err(CallError::OutputTooLarge),
        (_, Some(0)) if out_text.is_empty() => Ok("null".to_string()),
        (_, Some(0)) => check_output(out_text, limits.max_output_bytes),
        (_, Some(code)) => Err(exit_error(
            code,
            &out_text,
            &stderr,
            limits.max_output_bytes,
        )),
        (Ok(Err((true, e))), None) if e.downcast_ref::<wasmtime::Trap>().is_none() => {
            Err(CallError::Instantiate(format!("{e:#}")))
        }
        (Ok(Err((_, e))), None) => Err(classify_error(&e, memory_exceeded)),
        // Unreachable: `Ok(Ok(()))` always has exit code 0.
        (Ok(Ok(())), None) => Ok("null".to_string()),
    };
    let result = with_panic_message(result, &stderr);
    let fuel_used = initial_fuel.map(|initial| initial - store.get_fuel().unwrap_or(0));
    let memory_peak = store.data().limiter.peak();
    let core = store.into_data().core;
    let mut logs = core.logs;
    logs.push_stdio(LogStream::Stderr, LogLevel::Info, &stderr);
    let (result, http_calls, db) = settle_capabilities(result, &core.http, core.db).await;
    let (logs, logs_truncated) = logs.finish();
    CallReport {
        result,
        logs,
        logs_truncated,
        http_calls,
        db_statements: db.statements,
        db_transactions: db.transactions,
        duration: Duration::ZERO,
        fuel_used,
        memory_peak,
    }
}

/// The error of a non-zero exit: what stdout's `{"error":{...}}` says, or a
/// retryable error naming the exit status and the last stderr line.
pub(crate) fn exit_error(
    code: i32,
    stdout: &str,
    stderr: &CappedPipe,
    max_message: usize,
) -> CallError {
    if let Ok(value) = serde_json::from_str::<Value>(stdout)
        && let Some(error) = value.get("error")
    {
        let kind = match error.get("kind").and_then(Value::as_str) {
            Some("fatal") => ErrorKind::Fatal,
            _ => ErrorKind::Retryable,
        };
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("plugin reported an error")
            .to_string();
        return CallError::Plugin {
            kind,
            message: truncate_string(message, max_message),
            retry_after: error
                .get("retry_after_ms")
                .and_then(Value::as_u64)
                .map(Duration::from_millis),
        };
    }
    let (bytes, _) = stderr.contents();
    let text = String::from_utf8_lossy(&bytes);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    CallError::Plugin {
        kind: ErrorKind::Retryable,
        message: truncate_string(format!("exit status {code}: {last}"), max_message),
        retry_after: None,
    }
}
