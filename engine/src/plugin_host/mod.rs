//! The WebAssembly plugin host: one wasmtime `Engine` and `Linker`, bindings
//! generated once from the WIT contract (`plugins/wit`), compiled plugins
//! cached on disk, and a fresh sandboxed `Store` per call with memory, time,
//! fuel, output, log, HTTP and database limits.
//!
//! Two ABIs are supported: components of the `hookwise:plugin/plugin` world
//! (the main one), and WASI preview 1 command modules that read
//! `{"ctx","event","input"}` on stdin and write their output JSON on stdout.

mod apart;
pub mod builtin;
mod cache;
pub(crate) mod command;
mod core_imports;
pub mod db;
pub mod http;
mod inspect;
pub mod limits;
pub mod registry;
pub mod sql;
mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

pub use self::apart::{CompileArgs, compile_into_cache};
pub use self::cache::CacheStats;
pub use self::db::{
    DbBegin, DbError, DbExecutor, DbOutput, DbStatementOutcome, DbStatementRecord, DbTransaction,
    DbTransactionOutcome, DbTransactionRecord,
};
pub use self::http::{HttpCallRecord, HttpGrant, is_restricted};
pub use self::inspect::{Capability, Inspection, Item as InspectedItem};
pub use self::limits::{LOG_TRUNCATED_MARKER, Limits, LogLevel, LogLine, LogStream};
pub use self::registry::{PluginStatus, Registry};
pub use self::sql::{Dialect, SqlExecutor, SqlPool};

use self::cache::{CompileCache, sha256_hex};
use self::db::DbCallState;
use self::http::{HttpHooks, HttpLimits};
use self::limits::{CappedPipe, LogSink, MemoryLimiter, truncate_string};
use self::state::StoreState;

/// Bindings generated once from the WIT contract.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        // Relative to CARGO_MANIFEST_DIR (the macro takes a literal only).
        path: "../plugins/wit",
        world: "hookwise:plugin/plugin",
        imports: {
            "hookwise:plugin/db.execute": async,
        },
        exports: {
            default: async,
        },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

use self::bindings::hookwise::plugin::types as wit;

/// Engine-wide settings.
#[derive(Clone)]
pub struct HostSettings {
    /// Directory for compiled plugins; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch ticker fires; also the granularity of timeouts.
    pub epoch_tick: Duration,
    /// Count fuel (instructions) per call; needed for `Limits::fuel`.
    pub consume_fuel: bool,
    /// Plugin instances that may exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// Largest linear memory any plugin may be granted.
    pub max_memory_bytes: u64,
    /// Implementation of the `db` capability; `None` refuses all statements.
    pub db: Option<Arc<dyn DbExecutor>>,
    /// What plugins' HTTPS trusts: the public web PKI, plus each plugin's extra CAs.
    pub http_tls: http::PluginTls,
}

impl Default for HostSettings {
    fn default() -> Self {
        Self {
            cache_dir: None,
            epoch_tick: Duration::from_millis(5),
            consume_fuel: false,
            max_instances: 100,
            max_memory_bytes: 512 * 1024 * 1024,
            db: None,
            http_tls: http::PluginTls::default(),
        }
    }
}

/// Core instances, memories and tables one component may hold; Rust/C
/// components use a handful, interpreters (Python, JS) a few more.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Bytes of each pooled memory/table kept mapped between calls.
const KEEP_RESIDENT_BYTES: usize = 1024 * 1024;

/// Where a plugin's bytes come from.
#[derive(Debug, Clone)]
pub enum WasmSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// Capabilities granted to a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// `[METHOD[,METHOD]] [scheme://]host[:port]` (HTTPS and 443 unless written),
    /// `*.example.com`, or an address with its port written, such as `http://127.0.0.1:9000`
    /// (the only way to reach loopback/private addresses).
    pub http: Vec<String>,
    /// Names of DB connections the plugin may use.
    pub db: Vec<String>,
}

/// A plugin as configured.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub name: String,
    pub wasm: WasmSource,
    pub limits: Limits,
    pub grants: Grants,
}

/// Which ABI a loaded plugin uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginAbi {
    /// A component of the `hookwise:plugin/plugin` world.
    Component,
    /// A WASI preview 1 command module (stdin/stdout JSON).
    Command,
}

enum PluginKind {
    Component(bindings::PluginPre<StoreState>),
    Command(wasmtime::InstancePre<command::CommandState>),
}

struct LoadedInner {
    name: String,
    sha256: String,
    from_cache: bool,
    limits: Limits,
    http_grant: Arc<HttpGrant>,
    db_grants: Arc<Vec<String>>,
    kind: PluginKind,
}

/// A plugin whose spec was checked and whose bytes were read, before it is compiled and
/// linked ([`PluginHost::prepare`], [`PluginHost::link`]).
pub struct PreparedPlugin {
    name: String,
    bytes: Vec<u8>,
    sha256: String,
    abi: PluginAbi,
    compiled: bool,
    limits: Limits,
    http_grant: HttpGrant,
    db_grants: Vec<String>,
}

impl PreparedPlugin {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of WebAssembly.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the compile cache holds its compiled code, so that linking is cheap (about
    /// 10 ms for the largest plugins) rather than a compile (seconds for an interpreter).
    pub fn compiled(&self) -> bool {
        self.compiled
    }
}

/// A compiled, linked plugin, ready to be instantiated per call. Cheap to clone.
#[derive(Clone)]
pub struct LoadedPlugin {
    inner: Arc<LoadedInner>,
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// sha256 of the wasm bytes, hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Whether the compiled code came from the on-disk cache.
    pub fn from_cache(&self) -> bool {
        self.inner.from_cache
    }

    pub fn abi(&self) -> PluginAbi {
        match self.inner.kind {
            PluginKind::Component(_) => PluginAbi::Component,
            PluginKind::Command(_) => PluginAbi::Command,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .field("abi", &self.abi())
            .finish_non_exhaustive()
    }
}

/// Where a call comes from (mirrors the WIT `context`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallContext {
    pub rule_id: String,
    pub action_index: u32,
    pub attempt: u32,
    pub idempotency_key: String,
}

/// The event handed to a plugin (mirrors the WIT `event`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallEvent {
    pub id: String,
    pub source: String,
    pub event_type: String,
    /// RFC 3339.
    pub received_at: String,
    pub headers: Vec<(String, String)>,
    pub payload_json: String,
}

/// Whether a plugin asked to be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Retryable,
    Fatal,
}

/// Why a call did not produce an output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum CallError {
    /// The plugin returned an error (WIT `plugin-error`).
    #[error("plugin error ({kind:?}): {message}")]
    Plugin {
        kind: ErrorKind,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The plugin trapped (panic, unreachable, stack overflow, ...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin exceeded its time limit")]
    Timeout,
    #[error("plugin exceeded its memory limit")]
    MemoryExceeded,
    #[error("plugin ran out of fuel")]
    FuelExhausted,
    #[error("plugin output exceeds the size limit")]
    OutputTooLarge,
    #[error("plugin output is not JSON: {0}")]
    InvalidOutput(String),
    #[error("plugin could not be instantiated: {0}")]
    Instantiate(String),
    /// A database statement or the final commit failed; nothing was applied.
    #[error("database: {0}")]
    Db(String),
}

impl CallError {
    /// A default retry policy: plugin-declared kinds are kept; timeouts,
    /// instantiation (pool exhaustion) and DB failures are transient; traps,
    /// limit breaches and bad output repeat deterministically.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Plugin { kind, .. } => *kind == ErrorKind::Retryable,
            CallError::Timeout | CallError::Instantiate(_) | CallError::Db(_) => true,
            CallError::Trap(_)
            | CallError::MemoryExceeded
            | CallError::FuelExhausted
            | CallError::OutputTooLarge
            | CallError::InvalidOutput(_) => false,
        }
    }
}

/// Everything the host observed about one call.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// The output JSON, or why there is none.
    pub result: Result<String, CallError>,
    pub logs: Vec<LogLine>,
    pub logs_truncated: bool,
    pub http_calls: Vec<HttpCallRecord>,
    pub db_statements: Vec<DbStatementRecord>,
    pub db_transactions: Vec<DbTransactionRecord>,
    pub duration: Duration,
    /// Fuel consumed, when the host counts fuel.
    pub fuel_used: Option<u64>,
    /// Largest total linear memory the plugin held, in bytes.
    pub memory_peak: u64,
}

/// Errors of host set-up and plugin loading.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("creating the wasmtime engine: {0}")]
    Engine(String),
    #[error("setting up the plugin linker: {0}")]
    Linker(String),
    #[error("compile cache directory {path}: {source}")]
    CacheDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {name}: reading {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {name}: not a WebAssembly component or core module")]
    NotWasm { name: String },
    #[error("plugin {name}: compiling: {message}")]
    Compile { name: String, message: String },
    #[error("plugin {name}: cannot be linked (imports the host does not provide?): {message}")]
    Link { name: String, message: String },
    #[error("plugin {name}: {}", problems.join("; "))]
    InvalidSpec { name: String, problems: Vec<String> },
}

/// Increments the engine's epoch every tick until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hookwise-epoch".to_string())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The ticker only sleeps and increments; a panic there is not ours to report.
            let _ = thread.join();
        }
    }
}

struct HostInner {
    engine: Engine,
    linker: Linker<StoreState>,
    command_linker: wasmtime::Linker<command::CommandState>,
    cache: CompileCache,
    settings: HostSettings,
    _ticker: EpochTicker,
}

/// The plugin host. Cheap to clone; all clones share the engine and cache.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

impl PluginHost {
    pub fn new(settings: HostSettings) -> Result<Self, HostError> {
        let engine = Engine::new(&engine_config(&settings))
            .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let linker = component_linker(&engine).map_err(|e| HostError::Linker(format!("{e:#}")))?;
        let command_linker =
            command::linker(&engine).map_err(|e| HostError::Linker(format!("{e:#}")))?;
        let cache = CompileCache::new(&engine, settings.cache_dir.clone()).map_err(|source| {
            HostError::CacheDir {
                path: settings.cache_dir.clone().unwrap_or_default(),
                source,
            }
        })?;
        let ticker = EpochTicker::start(engine.clone(), settings.epoch_tick)
            .map_err(|e| HostError::Engine(format!("starting the epoch ticker: {e}")))?;
        Ok(Self {
            inner: Arc::new(HostInner {
                engine,
                linker,
                command_linker,
                cache,
                settings,
                _ticker: ticker,
            }),
        })
    }

    /// Hits and compiles of the compile cache since this host started.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Validates, compiles (or loads from the cache) and links a plugin.
    pub fn load(&self, spec: PluginSpec) -> Result<LoadedPlugin, HostError> {
        self.link(self.prepare(spec)?)
    }

    /// The cheap first step of [`Self::load`]: checks the spec, reads the bytes and tells
    /// a component from a core module. Whether [`Self::link`] will compile or load the
    /// compiled code from the cache is [`PreparedPlugin::compiled`].
    pub fn prepare(&self, spec: PluginSpec) -> Result<PreparedPlugin, HostError> {
        let name = spec.name;
        let mut problems = Vec::new();
        let http_grant = match HttpGrant::parse(&spec.grants.http) {
            Ok(grant) => grant,
            Err(mut errors) => {
                problems.append(&mut errors);
                HttpGrant::default()
            }
        };
        problems.extend(check_limits(&spec.limits, &self.inner.settings));
        if spec.grants.db.iter().any(|c| c.trim().is_empty()) {
            problems.push("db grant: empty connection name".to_string());
        }
        if !problems.is_empty() {
            return Err(HostError::InvalidSpec { name, problems });
        }
        let bytes = match spec.wasm {
            WasmSource::Bytes(bytes) => bytes,
            WasmSource::Path(path) => std::fs::read(&path).map_err(|source| HostError::Read {
                name: name.clone(),
                path,
                source,
            })?,
        };
        let Some(abi) = detect_abi(&bytes) else {
            return Err(HostError::NotWasm { name });
        };
        let sha256 = sha256_hex(&bytes);
        let compiled = self.inner.cache.has(&sha256, abi);
        Ok(PreparedPlugin {
            name,
            bytes,
            sha256,
            abi,
            compiled,
            limits: spec.limits,
            http_grant,
            db_grants: spec.grants.db,
        })
    }

    /// The second step of [`Self::load`]: compiles (or loads from the cache) and links.
    pub fn link(&self, prepared: PreparedPlugin) -> Result<LoadedPlugin, HostError> {
        let PreparedPlugin {
            name,
            bytes,
            sha256,
            abi,
            limits,
            http_grant,
            db_grants,
            ..
        } = prepared;
        let engine = &self.inner.engine;
        let (kind, from_cache) = match abi {
            PluginAbi::Component => {
                let (component, hit) = self
                    .inner
                    .cache
                    .component(engine, &sha256, &bytes)
                    .map_err(|e| HostError::Compile {
                        name: name.clone(),
                        message: format!("{e:#}"),
                    })?;
                let link_error = |e: wasmtime::Error| HostError::Link {
                    name: name.clone(),
                    message: format!("{e:#}"),
                };
                let pre = self
                    .inner
                    .linker
                    .instantiate_pre(&component)
                    .map_err(link_error)?;
                let pre = bindings::PluginPre::new(pre).map_err(link_error)?;
                (PluginKind::Component(pre), hit)
            }
            PluginAbi::Command => {
                let (module, hit) =
                    self.inner
                        .cache
                        .module(engine, &sha256, &bytes)
                        .map_err(|e| HostError::Compile {
                            name: name.clone(),
                            message: format!("{e:#}"),
                        })?;
                if module.get_export("_start").is_none() {
                    return Err(HostError::InvalidSpec {
                        name,
                        problems: vec![
                            "core module has no `_start` export (not a WASI command)".to_string(),
                        ],
                    });
                }
                let pre = self
                    .inner
                    .command_linker
                    .instantiate_pre(&module)
                    .map_err(|e| HostError::Link {
                        name: name.clone(),
                        message: format!("{e:#}"),
                    })?;
                (PluginKind::Command(pre), hit)
            }
        };
        Ok(LoadedPlugin {
            inner: Arc::new(LoadedInner {
                name,
                sha256,
                from_cache,
                limits,
                http_grant: Arc::new(http_grant),
                db_grants: Arc::new(db_grants),
                kind,
            }),
        })
    }

    /// Runs one call in a fresh sandbox. Never panics on plugin behaviour:
    /// every failure is a `CallError` in the report.
    pub async fn call(
        &self,
        plugin: &LoadedPlugin,
        ctx: CallContext,
        event: CallEvent,
        input_json: String,
    ) -> CallReport {
        let started = Instant::now();
        let mut report = match &plugin.inner.kind {
            PluginKind::Component(pre) => {
                self.call_component(plugin, pre, ctx, event, input_json)
                    .await
            }
            PluginKind::Command(pre) => {
                command::call(self, plugin, pre, ctx, event, input_json).await
            }
        };
        report.duration = started.elapsed();
        report
    }

    async fn call_component(
        &self,
        plugin: &LoadedPlugin,
        pre: &bindings::PluginPre<StoreState>,
        ctx: CallContext,
        event: CallEvent,
        input_json: String,
    ) -> CallReport {
        let limits = &plugin.inner.limits;
        let stdout = CappedPipe::new(limits.max_log_bytes);
        let stderr = CappedPipe::new(limits.max_log_bytes);
        let (http, db) = self.capabilities(plugin, &ctx.idempotency_key);
        let state = StoreState {
            wasi: sandbox_wasi(&stdout, &stderr),
            http_ctx: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            http,
            limiter: MemoryLimiter::new(limits.memory_bytes),
            logs: LogSink::new(limits.max_log_bytes, limits.max_log_lines),
            stdout,
            stderr,
            db,
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        let initial_fuel = self.prepare_store(&mut store, limits);

        let wit_ctx = wit::Context {
            rule_id: ctx.rule_id,
            action_index: ctx.action_index,
            attempt: ctx.attempt,
            idempotency_key: ctx.idempotency_key,
        };
        let wit_event = wit::Event {
            id: event.id,
            source: event.source,
            event_type: event.event_type,
            received_at: event.received_at,
            headers: event.headers,
            payload: event.payload_json,
        };
        let run = async {
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .map_err(Failure::Instantiate)?;
            instance
                .call_handle(&mut store, &wit_ctx, &wit_event, &input_json)
                .await
                .map_err(Failure::Run)
        };
        let outcome = tokio::time::timeout(limits.timeout, run).await;
        let memory_exceeded = store.data().limiter.exceeded;
        let result = match outcome {
            Err(_elapsed) => Err(CallError::Timeout),
            Ok(Err(Failure::Instantiate(e))) => Err(match e.downcast_ref::<Trap>() {
                Some(_) => classify_error(&e, memory_exceeded),
                None => CallError::Instantiate(format!("{e:#}")),
            }),
            Ok(Err(Failure::Run(e))) => Err(classify_error(&e, memory_exceeded)),
            Ok(Ok(Ok(outcome))) => check_output(outcome.output, limits.max_output_bytes),
            Ok(Ok(Err(error))) => Err(CallError::Plugin {
                kind: match error.kind {
                    wit::ErrorKind::Retryable => ErrorKind::Retryable,
                    wit::ErrorKind::Fatal => ErrorKind::Fatal,
                },
                message: truncate_string(error.message, limits.max_output_bytes),
                retry_after: error.retry_after_ms.map(Duration::from_millis),
            }),
        };
        let fuel_used = initial_fuel.map(|initial| initial - store.get_fuel().unwrap_or(0));
        let state = store.into_data();
        let memory_peak = state.limiter.peak();
        let mut logs = state.logs;
        logs.push_stdio(LogStream::Stdout, LogLevel::Info, &state.stdout);
        logs.push_stdio(LogStream::Stderr, LogLevel::Warn, &state.stderr);
        let result = with_panic_message(result, &state.stderr);
        let (result, http_calls, db) = settle_capabilities(result, &state.http, state.db).await;
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

    /// The HTTP hooks and the database state of one call of `plugin`: its grants and limits,
    /// and the call's idempotency key.
    fn capabilities(
        &self,
        plugin: &LoadedPlugin,
        idempotency_key: &str,
    ) -> (HttpHooks, DbCallState) {
        let limits = &plugin.inner.limits;
        let http = HttpHooks::new(
            plugin.inner.http_grant.clone(),
            self.inner.settings.http_tls.for_plugin(&plugin.inner.name),
            idempotency_key,
            HttpLimits {
                timeout: limits.http_timeout,
                max_response_bytes: limits.max_http_response_bytes,
                max_requests: limits.max_http_requests,
            },
        );
        let db = DbCallState::new(
            self.inner.settings.db.clone(),
            plugin.inner.db_grants.clone(),
            idempotency_key,
            limits.max_db_statements,
            limits.max_db_rows,
        );
        (http, db)
    }

    /// Sets the wall-time deadline (epoch callback) and the fuel of a store.
    /// Returns the fuel given, when fuel is counted.
    fn prepare_store<T: 'static>(&self, store: &mut Store<T>, limits: &Limits) -> Option<u64> {
        let deadline = Instant::now() + limits.timeout;
        // Check the clock on every epoch tick; yield to the executor so that
        // a busy plugin cannot starve other calls on the same worker thread.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        if self.inner.settings.consume_fuel {
            let fuel = limits.fuel.unwrap_or(u64::MAX);
            // Only fails when fuel is disabled in the engine, which it is not here.
            let _ = store.set_fuel(fuel);
            Some(fuel)
        } else {
            None
        }
    }
}

enum Failure {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
}

fn engine_config(settings: &HostSettings) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(settings.consume_fuel);
    let instances = settings.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_stacks(instances)
        // Reset the first pages of a reused slot with memset instead of
        // madvise: cheaper for the small memories most plugins use.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the pages a call
        // touched instead of memsetting all KEEP_RESIDENT_BYTES: the full memset was 7% of
        // the CPU of a drain of no-op actions.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .max_memory_size(usize::try_from(settings.max_memory_bytes).unwrap_or(usize::MAX));
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

fn component_linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    // All of WASI p2 is linked so that any toolchain's imports resolve; the
    // per-call `WasiCtx` grants nothing (no dirs, env, args, sockets).
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    bindings::hookwise::plugin::log::add_to_linker::<StoreState, HasSelf<StoreState>>(
        &mut linker,
        |s| s,
    )?;
    bindings::hookwise::plugin::db::add_to_linker::<StoreState, HasSelf<StoreState>>(
        &mut linker,
        |s| s,
    )?;
    Ok(linker)
}

/// A WASI context that grants nothing: no preopened directories, no
/// environment, no arguments, closed stdin, no sockets or name lookup.
/// Stdout/stderr go to capped in-memory pipes that end up in the call's log.
fn sandbox_wasi(stdout: &CappedPipe, stderr: &CappedPipe) -> wasmtime_wasi::WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder.build()
}

fn check_limits(limits: &Limits, settings: &HostSettings) -> Vec<String> {
    let mut problems = Vec::new();
    if limits.memory_bytes > settings.max_memory_bytes {
        problems.push(format!(
            "memory limit {} exceeds the host maximum {}",
            limits.memory_bytes, settings.max_memory_bytes
        ));
    }
    if limits.timeout.is_zero() {
        problems.push("timeout must be greater than zero".to_string());
    }
    if limits.fuel.is_some() && !settings.consume_fuel {
        problems.push("a fuel limit is set but the host does not count fuel".to_string());
    }
    if limits.max_output_bytes == 0 {
        problems.push("max_output_bytes must be greater than zero".to_string());
    }
    problems
}

/// Component or core module, from the preamble.
fn detect_abi(bytes: &[u8]) -> Option<PluginAbi> {
    const MAGIC: &[u8] = b"\0asm";
    const MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];
    // Component binaries have version 0x0d and layer 1.
    const COMPONENT_LAYER: [u8; 2] = [1, 0];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return None;
    }
    if bytes[4..8] == MODULE_VERSION {
        Some(PluginAbi::Command)
    } else if bytes[6..8] == COMPONENT_LAYER {
        Some(PluginAbi::Component)
    } else {
        None
    }
}

/// Ends a call's capabilities: what its HTTP hooks recorded, and its database work committed
/// when `result` is a success (rolled back otherwise). A statement that failed, or a commit that
/// did, turns a success into a database error.
async fn settle_capabilities(
    result: Result<String, CallError>,
    http: &HttpHooks,
    db: DbCallState,
) -> (Result<String, CallError>, Vec<HttpCallRecord>, db::DbFinish) {
    let http_calls = http.records();
    let mut db = db.finish(result.is_ok()).await;
    let result = match (result, db.error.take()) {
        (Ok(_), Some(error)) => Err(CallError::Db(error)),
        (result, _) => result,
    };
    (result, http_calls, db)
}

/// Maps a wasmtime error after instantiation or during the call.
fn classify_error(error: &wasmtime::Error, memory_exceeded: bool) -> CallError {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout,
        Some(Trap::OutOfFuel) => CallError::FuelExhausted,
        // A guest whose allocation was refused usually aborts (unreachable).
        Some(_) if memory_exceeded => CallError::MemoryExceeded,
        Some(trap) => CallError::Trap(trap.to_string()),
        None if memory_exceeded => CallError::MemoryExceeded,
        None => CallError::Trap(format!("{error:#}")),
    }
}

/// Adds the guest's panic message (from stderr) to a trap.
pub(crate) fn with_panic_message(
    result: Result<String, CallError>,
    stderr: &CappedPipe,
) -> Result<String, CallError> {
    /// Longest stderr excerpt attached to a trap message.
    const MAX_EXCERPT: usize = 512;
    match result {
        Err(CallError::Trap(message)) => {
            let (bytes, _) = stderr.contents();
            let text = String::from_utf8_lossy(&bytes);
            let excerpt = match text.find("panicked at") {
                Some(at) => text[at..].trim().to_string(),
                None => String::new(),
            };
            if excerpt.is_empty() {
                Err(CallError::Trap(message))
            } else {
                Err(CallError::Trap(format!(
                    "{message} ({})",
                    truncate_string(excerpt, MAX_EXCERPT)
                )))
            }
        }
        other => other,
    }
}

/// Enforces the output cap and that the output is JSON.
pub(crate) fn check_output(output: String, max_bytes: usize) -> Result<String, CallError> {
    if output.len() > max_bytes {
        return Err(CallError::OutputTooLarge);
    }
    // Parsed whole, not skimmed (`IgnoredAny` takes `222E763`, a number no JSON value can
    // hold, which the store would then keep as text): the output is stored as JSON.
    serde_json::from_str::<serde_json::Value>(&output)
        .map_err(|e| CallError::InvalidOutput(e.to_string()))?;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_detection() {
        assert_eq!(detect_abi(b"\0asm\x01\0\0\0"), Some(PluginAbi::Command));
        assert_eq!(detect_abi(b"\0asm\x0d\0\x01\0"), Some(PluginAbi::Component));
        assert_eq!(detect_abi(b"\0asm"), None);
        assert_eq!(detect_abi(b"garbage!"), None);
    }

    #[test]
    fn output_checks() {
        assert_eq!(check_output("{}".into(), 2), Ok("{}".to_string()));
        // Found by fuzzing: a number out of every JSON value's range is not JSON output.
        assert!(matches!(
            check_output("222E763".into(), 64),
            Err(CallError::InvalidOutput(_))
        ));
        assert_eq!(
            check_output("{} ".into(), 2),
            Err(CallError::OutputTooLarge)
        );
        assert!(matches!(
            check_output("nope".into(), 100),
            Err(CallError::InvalidOutput(_))
        ));
    }
}
