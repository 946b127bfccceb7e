//! `hookwise plugins run`: one plugin call from the command line, in the sandbox and with the
//! limits `serve` gives it, shown the way `hookwise logs` shows an attempt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use serde::Serialize;
use serde_json::Value;

use super::ops::Out;
use super::story::{AttemptStyle, render_attempt};
use crate::config::{CaCerts, Config, Plugin, Secret};
use crate::dispatch::EventParts;
use crate::dispatch::run::{attempt_record, call_event, scrub_attempt};
use crate::model::{EventId, EventStatus, Millis};
use crate::plugin_host::http::PluginTls;
use crate::plugin_host::registry::{connect_granted, spec_for};
use crate::plugin_host::{
    CallContext, CallError, CallEvent, CallReport, HostSettings, LoadedPlugin, PluginAbi,
    PluginHost, PluginSpec, WasmSource, builtin,
};
use crate::schema::InputSchema;
use crate::scrub::Scrubber;
use crate::store::{NewEvent, NewExecutionAttempt};
use crate::units::{ByteSize, HumanDuration, format_duration};

/// The rule id a local call carries in its context.
const RULE_ID: &str = "plugins-run";
/// Exit status when the call could not be made (bad flags, files, config or plugin), as clap's.
const CANNOT_RUN: u8 = 2;
/// Exit status when the call was made and failed (an error, a trap, a limit).
const CALL_FAILED: u8 = 1;
/// Pool slots of the host of one call. The pool reserves core instances per slot for a
/// component of a few; a componentize-py component holds more than one slot's share (the call
/// failed with "maximum concurrent limit of 8 for core instances reached"), so the host gets
/// the share of a few slots. Only address space is reserved for them.
const POOL_SLOTS: u32 = 4;

/// `hookwise plugins run`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("event_from").required(true).args(["payload", "event"])))]
pub struct RunArgs {
    /// The plugin: a .wasm file (a component or a WASI command module), the name of a
    /// built-in plugin (notify, call-api, write-db), or the name of a plugin in the config
    /// (which then runs with the config's limits and grants, plus the ones given here).
    #[arg(value_name = "FILE.wasm|NAME")]
    pub plugin: String,
    /// The event's payload: a JSON (or form-encoded) file. Needs --source.
    #[arg(long, value_name = "FILE", requires = "source")]
    pub payload: Option<PathBuf>,
    /// With --payload: the source the event comes from. An id that is not configured is taken
    /// as a source of the provider with that id (github, stripe, none, ...).
    #[arg(long, requires = "payload")]
    pub source: Option<String>,
    /// With --payload: the event type. Default: identified from the headers and payload, as
    /// ingress does.
    #[arg(long, requires = "payload")]
    pub event_type: Option<String>,
    /// With --payload: a request header, `Name: value`. Repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE", requires = "payload")]
    pub headers: Vec<String>,
    /// Instead of --payload: a stored event (its id, as `hookwise events` lists it), read from
    /// the configured store.
    #[arg(long, value_name = "EVENT_ID")]
    pub event: Option<String>,
    /// The action's input (what a rule's `with:` renders to): JSON, or `@FILE` to read it from
    /// a file. `${secret:NAME}` in its strings takes a secret of the config.
    #[arg(long, value_name = "JSON|@FILE", default_value = "{}")]
    pub input: String,
    /// Let the plugin make HTTP requests to a host, in the grammar of `allow.http` in the
    /// config (`api.example.com` is HTTPS on 443; `http://127.0.0.1:8080`, `POST host`, ...).
    /// Repeatable.
    #[arg(long = "allow-http", value_name = "GRANT")]
    pub allow_http: Vec<String>,
    /// A database connection the plugin may be granted with --allow-db: sqlite://FILE,
    /// postgres://..., mysql://... (as under `connections:` in the config). Repeatable.
    #[arg(long = "connection", value_name = "NAME=URL")]
    pub connections: Vec<String>,
    /// Let the plugin run SQL on a connection (from --connection or the config). Repeatable.
    #[arg(long = "allow-db", value_name = "NAME")]
    pub allow_db: Vec<String>,
    /// Memory limit, e.g. 64MiB (default: the config's for a configured plugin, else 64MiB).
    #[arg(long)]
    pub memory: Option<ByteSize>,
    /// Time limit, e.g. 10s (default: the config's for a configured plugin, else 10s).
    #[arg(long)]
    pub timeout: Option<HumanDuration>,
    /// Fuel limit (about one unit per instruction). Default: unlimited, but counted.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// The idempotency key of the call. Default: a new one each run, so database writes apply
    /// again; give the same key twice to see the second run find them already applied.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Config file, for its sources, connections, secrets and plugins. Default:
    /// ./hookwise.yaml when present, else the embedded default.
    #[arg(long, short, env = "HOOKWISE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Why the call could not be made: a line, and details (a wasm file's problems, say).
struct CannotRun {
    message: String,
    details: Vec<String>,
}

impl From<String> for CannotRun {
    fn from(message: String) -> Self {
        CannotRun {
            message,
            details: Vec::new(),
        }
    }
}

impl CannotRun {
    fn report(&self, scrubber: &Scrubber) -> ExitCode {
        eprintln!("error: {}", scrubber.scrub(&self.message));
        for detail in &self.details {
            eprintln!("  - {}", scrubber.scrub(detail));
        }
        ExitCode::from(CANNOT_RUN)
    }
}

/// Everything one call needs, read from the command line and the config.
struct Prepared {
    spec: PluginSpec,
    /// The plugin's bytes, to inspect when it does not load.
    bytes: Vec<u8>,
    /// What its HTTPS trusts besides the public web PKI.
    ca_certs: CaCerts,
    input: String,
    idempotency_key: String,
}

/// What a call did, for printing.
struct Done {
    plugin: LoadedPlugin,
    event: CallEvent,
    ctx: CallContext,
    report: CallReport,
    attempt: NewExecutionAttempt,
}

pub fn run(args: RunArgs) -> ExitCode {
    let mut config = match Config::discover(args.config.as_deref()) {
        Ok(config) => config,
        Err(problems) => {
            super::print_problems(&problems);
            return ExitCode::from(CANNOT_RUN);
        }
    };
    // Before the scrubber is made: passwords in the URLs given are hidden like the config's.
    let added = add_connections(&mut config, &args.connections);
    let scrubber = super::scrubber_for(&config);
    if let Err(e) = added {
        return CannotRun::from(e).report(&scrubber);
    }
    let prepared = match prepare(&args, &config) {
        Ok(p) => p,
        Err(e) => return e.report(&scrubber),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return CannotRun::from(format!("cannot start the async runtime: {e}"))
                .report(&scrubber);
        }
    };
    let done = runtime.block_on(call(&args, &config, prepared, &scrubber));
    match done {
        Ok(done) => print(&done, args.json, Out(scrubber.clone())),
        Err(e) => e.report(&scrubber),
    }
}

/// The plugin, its input and the idempotency key, from the flags.
fn prepare(args: &RunArgs, config: &Config) -> Result<Prepared, CannotRun> {
    let input = read_input(&args.input, &config.secrets)?;
    let (spec, bytes, ca_certs) = choose_plugin(args, config)?;
    check_input(&spec.name, &bytes, &input)?;
    let idempotency_key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| format!("{RULE_ID}:{}", uuid::Uuid::now_v7()));
    Ok(Prepared {
        spec,
        bytes,
        ca_certs,
        input,
        idempotency_key,
    })
}

/// Refuses an input that does not fit the plugin's input schema, as a rule's would be.
fn check_input(name: &str, bytes: &[u8], input: &str) -> Result<(), String> {
    let schema = match InputSchema::declared_in(bytes) {
        Ok(Some(schema)) => std::sync::Arc::new(schema),
        Ok(None) if builtin::component(name) == Some(bytes) => match InputSchema::builtin(name) {
            Some(schema) => schema,
            None => return Ok(()),
        },
        Ok(None) => return Ok(()),
        Err(e) => return Err(format!("the plugin's input schema: {e}")),
    };
    let value: Value = serde_json::from_str(input).map_err(|e| format!("--input: {e}"))?;
    let problems = schema.check_rendered(&value);
    if problems.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = problems
        .iter()
        .map(|p| {
            let at = if p.pointer.is_empty() {
                "(input)"
            } else {
                &p.pointer
            };
            format!("{at}: {}", p.message)
        })
        .collect();
    Err(format!(
        "--input does not fit the plugin's input schema: {}",
        listed.join("; ")
    ))
}

/// Reads the event, builds the host with the granted connections, loads the plugin and calls it.
async fn call(
    args: &RunArgs,
    config: &Config,
    prepared: Prepared,
    scrubber: &Scrubber,
) -> Result<Done, CannotRun> {
    let event = read_event(args, config).await?;
    let host = build_host(config, &prepared.spec, &prepared.ca_certs).await?;
    let plugin = load(&host, prepared.spec, prepared.bytes)?;
    let ctx = CallContext {
        rule_id: RULE_ID.to_string(),
        action_index: 0,
        attempt: 1,
        idempotency_key: prepared.idempotency_key,
    };
    let started_at = Millis::now();
    let report = host
        .call(&plugin, ctx.clone(), event.clone(), prepared.input)
        .await;
    let mut attempt = attempt_record(1, started_at, Millis::now(), &report);
    scrub_attempt(scrubber, &mut attempt);
    Ok(Done {
        plugin,
        event,
        ctx,
        report,
        attempt,
    })
}

/// `--input`: JSON, or `@FILE`; `${secret:NAME}` in its strings replaced by the secret.
fn read_input(text: &str, secrets: &BTreeMap<String, Secret>) -> Result<String, String> {
    let (text, what) = match text.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("--input: cannot read {path}: {e}"))?,
            format!("--input {path}"),
        ),
        None => (text.to_string(), "--input".to_string()),
    };
    let mut value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{what} is not JSON: {e}"))?;
    insert_secrets(&mut value, secrets).map_err(|e| format!("{what}: {e}"))?;
    Ok(value.to_string())
}

/// Replaces `${secret:NAME}` in every string of `value` with the secret's value.
fn insert_secrets(value: &mut Value, secrets: &BTreeMap<String, Secret>) -> Result<(), String> {
    match value {
        Value::String(text) if text.contains(SECRET_OPEN) => {
            *text = with_secrets(text, secrets)?;
        }
        Value::Array(items) => {
            for item in items {
                insert_secrets(item, secrets)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                insert_secrets(item, secrets)?;
            }
        }
        _ => {}
    }
    Ok(())
}

const SECRET_OPEN: &str = "${secret:";

fn with_secrets(text: &str, secrets: &BTreeMap<String, Secret>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(SECRET_OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + SECRET_OPEN.len()..];
        let Some(end) = after.find('}') else {
            return Err("unterminated `${secret:` reference".to_string());
        };
        let name = &after[..end];
        let Some(secret) = secrets.get(name) else {
            let known: Vec<&str> = secrets.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown secret `{name}` (the config's secrets: {})",
                if known.is_empty() {
                    "none; pass --config".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        out.push_str(secret.expose());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Adds each `--connection NAME=URL` to the config's connections (replacing one of the same
/// name). A relative SQLite path is taken from the working directory.
fn add_connections(config: &mut Config, given: &[String]) -> Result<(), String> {
    for entry in given {
        let Some((name, url)) = entry.split_once('=') else {
            return Err(format!("--connection `{entry}` is not NAME=URL"));
        };
        let (name, url) = (name.trim(), url.trim());
        if name.is_empty() || url.is_empty() {
            return Err(format!("--connection `{entry}` is not NAME=URL"));
        }
        config
            .connections
            .insert(name.to_string(), Secret::new(from_working_dir(url)));
    }
    Ok(())
}

/// `url` with a relative `sqlite://` path made absolute from the working directory (the
/// config's connections are relative to the config's folder instead).
fn from_working_dir(url: &str) -> String {
    match (url.strip_prefix("sqlite://"), std::env::current_dir()) {
        (Some(path), Ok(cwd)) if !path.is_empty() && !path.starts_with('/') => {
            format!("sqlite://{}", cwd.join(path).display())
        }
        _ => url.to_string(),
    }
}

/// The plugin named on the command line, with the limits and grants of the flags (on top of
/// the config's, for a configured plugin), and its bytes.
fn choose_plugin(
    args: &RunArgs,
    config: &Config,
) -> Result<(PluginSpec, Vec<u8>, CaCerts), CannotRun> {
    let file = Path::new(&args.plugin);
    let mut plugin = if file.is_file() {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| args.plugin.clone());
        Plugin {
            http_ca_certs: config.plugin_ca_certs.clone(),
            ..Plugin::unconfigured(name, Some(file.to_path_buf()))
        }
    } else if let Some(configured) = config.plugins.iter().find(|p| p.name == args.plugin) {
        configured.clone()
    } else if builtin::component(&args.plugin).is_some() {
        Plugin {
            http_ca_certs: config.plugin_ca_certs.clone(),
            ..Plugin::unconfigured(args.plugin.clone(), None)
        }
    } else {
        let mut names: Vec<&str> = builtin::names().collect();
        names.extend(config.plugins.iter().map(|p| p.name.as_str()));
        names.sort_unstable();
        names.dedup();
        return Err(format!(
            "`{}` is neither a file nor a plugin name ({})",
            args.plugin,
            names.join(", ")
        )
        .into());
    };
    if let Some(memory) = args.memory {
        plugin.memory = memory.0;
    }
    if let Some(timeout) = args.timeout {
        plugin.timeout = timeout.0;
    }
    if args.fuel.is_some() {
        plugin.fuel = args.fuel;
    }
    plugin.allow_http.extend(args.allow_http.iter().cloned());
    plugin.allow_db.extend(args.allow_db.iter().cloned());
    let bytes = match &plugin.path {
        Some(path) => {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
        None => match builtin::component(&plugin.name) {
            Some(bytes) => bytes.to_vec(),
            None => {
                return Err(format!(
                    "built-in plugin `{}` has no wasm in this build",
                    plugin.name
                )
                .into());
            }
        },
    };
    let spec = spec_for(&plugin, WasmSource::Bytes(bytes.clone()));
    Ok((spec, bytes, plugin.http_ca_certs))
}

/// The event of `--payload` (read as ingress would) or of `--event` (from the store).
async fn read_event(args: &RunArgs, config: &Config) -> Result<CallEvent, CannotRun> {
    let (event, payload) = match (&args.event, &args.payload, &args.source) {
        (Some(id), _, _) => stored_event(config, id).await?,
        (None, Some(payload), Some(source)) => {
            let given = super::given_event(
                config,
                source,
                args.event_type.clone(),
                payload,
                &args.headers,
            )?;
            let event = NewEvent {
                id: EventId::new(),
                source: source.clone(),
                delivery_id: given.delivery_id.unwrap_or_default(),
                event_type: given.event_type,
                received_at: Millis::now(),
                headers: serde_json::to_value(&given.headers).unwrap_or_default(),
                payload: given.payload_text,
                status: EventStatus::Pending,
            };
            (event, given.payload)
        }
        _ => {
            return Err("name --payload with --source, or --event"
                .to_string()
                .into());
        }
    };
    let parts = EventParts::of(config, &event, payload);
    Ok(call_event(&parts, &event))
}

/// A stored event and its parsed payload, from the configured store.
async fn stored_event(config: &Config, id: &str) -> Result<(NewEvent, Value), CannotRun> {
    let id: EventId = id
        .parse()
        .map_err(|_| format!("`{id}` is not an event id"))?;
    let store = crate::server::open_store(config)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let found = store.get_event(id).await;
    store.close().await;
    match found {
        Ok(Some(stored)) => {
            let payload = serde_json::from_str(&stored.event.payload).unwrap_or(Value::Null);
            Ok((stored.event, payload))
        }
        Ok(None) => Err(format!("no event {id} in the store").into()),
        Err(e) => Err(format!("reading event {id}: {e}").into()),
    }
}

/// A host like the server's, for one call of `spec`: the granted connections opened, its CA
/// certificates trusted, fuel counted (so the fuel used is shown), no compile cache.
async fn build_host(
    config: &Config,
    spec: &PluginSpec,
    ca_certs: &CaCerts,
) -> Result<PluginHost, CannotRun> {
    let http_tls = PluginTls::default()
        .with_extra_roots(&spec.name, ca_certs)
        .map_err(|e| format!("a CA certificate: {e}"))?;
    let db = connect_granted(config, spec.grants.db.iter().map(String::as_str))
        .await
        .map_err(|problems| CannotRun {
            message: "cannot open the granted database connections".to_string(),
            details: problems,
        })?;
    PluginHost::new(HostSettings {
        max_instances: POOL_SLOTS,
        consume_fuel: true,
        db,
        http_tls,
        ..HostSettings::default()
    })
    .map_err(|e| e.to_string().into())
}

/// Loads the plugin; when it does not load, says why with the problems `plugins inspect`
/// finds in it.
fn load(host: &PluginHost, spec: PluginSpec, bytes: Vec<u8>) -> Result<LoadedPlugin, CannotRun> {
    let name = spec.name.clone();
    host.load(spec).map_err(|e| CannotRun {
        message: e.to_string(),
        details: host
            .inspect(&name, &bytes)
            .map(|inspection| inspection.problems)
            .unwrap_or_default(),
    })
}

/// `hookwise plugins run --json`: the attempt as `hookwise logs --json` shows it, with the
/// plugin, the event and the context it ran with.
#[derive(Serialize)]
struct RunJson<'a> {
    plugin: PluginJson<'a>,
    event: EventJson<'a>,
    context: &'a CallContext,
    ok: bool,
    #[serde(flatten)]
    attempt: &'a NewExecutionAttempt,
    duration_ms: u64,
    /// When the plugin asked to be retried no sooner than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

#[derive(Serialize)]
struct PluginJson<'a> {
    name: &'a str,
    abi: PluginAbi,
    sha256: &'a str,
}

#[derive(Serialize)]
struct EventJson<'a> {
    id: &'a str,
    source: &'a str,
    event_type: &'a str,
    received_at: &'a str,
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn retry_after(report: &CallReport) -> Option<std::time::Duration> {
    match &report.result {
        Err(CallError::Plugin { retry_after, .. }) => *retry_after,
        _ => None,
    }
}

fn print(done: &Done, json: bool, out: Out) -> ExitCode {
    let Done {
        plugin,
        event,
        ctx,
        report,
        attempt,
    } = done;
    if json {
        out.json(&RunJson {
            plugin: PluginJson {
                name: plugin.name(),
                abi: plugin.abi(),
                sha256: plugin.sha256(),
            },
            event: EventJson {
                id: &event.id,
                source: &event.source,
                event_type: &event.event_type,
                received_at: &event.received_at,
            },
            context: ctx,
            ok: report.result.is_ok(),
            attempt,
            duration_ms: millis(report.duration),
            retry_after_ms: retry_after(report).map(millis),
        });
    } else {
        out.text(&render_text(done));
    }
    match (&report.result, &attempt.error) {
        (Ok(_), _) => ExitCode::SUCCESS,
        (Err(_), error) => {
            // The attempt's error (scrubbed already), on stderr too, for scripts.
            eprintln!("error: {}", error.as_deref().unwrap_or("the call failed"));
            ExitCode::from(CALL_FAILED)
        }
    }
}

/// The call as text: what ran, on what, then the attempt as `hookwise logs` shows it.
fn render_text(done: &Done) -> String {
    use std::fmt::Write;
    let Done {
        plugin,
        event,
        ctx,
        report,
        attempt,
    } = done;
    let mut text = String::new();
    let abi = match plugin.abi() {
        PluginAbi::Component => "component",
        PluginAbi::Command => "wasip1 command",
    };
    let _ = writeln!(
        text,
        "plugin {}  {abi}  sha256 {}",
        plugin.name(),
        plugin.sha256()
    );
    let _ = writeln!(
        text,
        "event {}  {} {}  received {}",
        event.id, event.source, event.event_type, event.received_at
    );
    let _ = writeln!(
        text,
        "context rule {} action {} attempt {}  idempotency key {}",
        ctx.rule_id, ctx.action_index, ctx.attempt, ctx.idempotency_key
    );
    render_attempt(&mut text, attempt, AttemptStyle::Alone);
    if let Some(after) = retry_after(report) {
        let _ = writeln!(text, "  retry after {}", format_duration(after));
    }
    let _ = writeln!(
        text,
        "{}",
        if report.result.is_ok() {
            "ok"
        } else {
            "failed"
        }
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, Secret> {
        BTreeMap::from([(
            "HOOK_URL".to_string(),
            Secret::new("https://hooks.example/abc"),
        )])
    }

    #[test]
    fn input_is_json_with_secrets_inserted() {
        let input = read_input(
            r#"{"url": "${secret:HOOK_URL}/x", "n": [1, "a ${secret:HOOK_URL}"]}"#,
            &secrets(),
        )
        .unwrap();
        let value: Value = serde_json::from_str(&input).unwrap();
        assert_eq!(value["url"], "https://hooks.example/abc/x");
        assert_eq!(value["n"][1], "a https://hooks.example/abc");
        assert!(
            read_input("{", &secrets())
                .unwrap_err()
                .starts_with("--input is not JSON")
        );
        let unknown = read_input(r#""${secret:NOPE}""#, &secrets()).unwrap_err();
        assert!(
            unknown.contains("unknown secret `NOPE`") && unknown.contains("HOOK_URL"),
            "{unknown}"
        );
        let open = read_input(r#""${secret:HOOK_URL""#, &secrets()).unwrap_err();
        assert!(open.contains("unterminated"), "{open}");
        assert!(
            read_input("@/nonexistent/input.json", &secrets())
                .unwrap_err()
                .contains("cannot read")
        );
    }

    #[test]
    fn relative_sqlite_paths_are_taken_from_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            from_working_dir("sqlite://audit.db"),
            format!("sqlite://{}", cwd.join("audit.db").display())
        );
        for url in ["sqlite:///tmp/a.db", "sqlite::memory:", "postgres://u@h/db"] {
            assert_eq!(from_working_dir(url), url);
        }
    }
}
