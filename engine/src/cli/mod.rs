//! The `hookwise` command line: thin wrappers over library functions.

mod backtest;
mod backup;
mod ops;
mod plugin_run;
pub(crate) mod plugins;
mod remote;
mod scaffold;
mod signing;
mod story;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::rules::{EventView, RuleInputs, rule_paths};
use crate::scrub::Scrubber;
use crate::verify::Provider;

/// hookwise: verify, store and act on webhooks.
#[derive(Debug, Parser)]
#[command(name = "hookwise", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "HOOKWISE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `hookwise=debug,info`.
    #[arg(long, global = true, default_value = "info", env = "HOOKWISE_LOG")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: ingress and admin listeners, the store, rules and plugins.
    ///
    /// With no config file (none named and no ./hookwise.yaml), runs on the embedded default:
    /// https://127.0.0.1:8443 with a self-signed certificate, admin on 127.0.0.1:9091, store
    /// sqlite://hookwise.db in the working directory.
    Serve {
        /// Config file. Default: ./hookwise.yaml when present, else the embedded default.
        #[arg(long, short, env = "HOOKWISE_CONFIG")]
        config: Option<PathBuf>,
        /// Override the ingress address (`host:port`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Override the admin address (`host:port`). One other hosts can reach needs
        /// `admin.tls` (or `admin.insecure_http: true`) in the config.
        #[arg(long)]
        admin_listen: Option<std::net::SocketAddr>,
    },
    /// Check the config, rules and plugins; print every problem with its place.
    ///
    /// Exits 0 when everything is valid, 1 when there are problems.
    Check {
        /// Config file. Default: ./hookwise.yaml when present, else the embedded default.
        #[arg(long, short, env = "HOOKWISE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Dry-run the rules against one event: for every rule, matched or not and why, and the
    /// rendered input of each action of the matched ones. Nothing is stored or run.
    ///
    /// With --against-store, the rules are tried against the newest stored events of their
    /// sources instead (a backtest): per event, matched or not and why, then a summary line.
    Test {
        /// Config file. Default: ./hookwise.yaml when present, else the embedded default.
        #[arg(long, short, env = "HOOKWISE_CONFIG")]
        config: Option<PathBuf>,
        /// Rule files or folders to try instead of the configured rules. Repeatable.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
        /// The source the event comes from. An id that is not configured is taken as a source
        /// of the provider with that id, so rules can be tried before any source exists.
        #[arg(
            long,
            required_unless_present = "against_store",
            conflicts_with = "against_store"
        )]
        source: Option<String>,
        /// The event type. Default: identified from the headers and payload, as ingress does.
        #[arg(long, conflicts_with = "against_store")]
        event_type: Option<String>,
        /// The payload: a JSON (or form-encoded) file.
        #[arg(
            long,
            required_unless_present = "against_store",
            conflicts_with = "against_store"
        )]
        payload: Option<PathBuf>,
        /// A request header, `Name: value`. Repeatable.
        #[arg(
            long = "header",
            value_name = "NAME: VALUE",
            conflicts_with = "against_store"
        )]
        headers: Vec<String>,
        /// Try the rules against the events in the configured store (read only: nothing
        /// runs, nothing is written) instead of one payload.
        #[arg(long)]
        against_store: bool,
        /// With --against-store: only events received since an RFC 3339 time, or an age
        /// such as `24h` or `7d`.
        #[arg(long, requires = "against_store")]
        since: Option<String>,
        /// With --against-store: only events received before this time or age.
        #[arg(long, requires = "against_store")]
        until: Option<String>,
        /// With --against-store: the newest this many events of the rules' sources
        /// (default 100, at most 1000).
        #[arg(long, requires = "against_store")]
        limit: Option<usize>,
        /// With --against-store: only this rule (of the rules tried).
        #[arg(long, requires = "against_store")]
        rule: Option<String>,
        /// Print one JSON object: {"matched": [...], "not_matched": [...]} for one payload;
        /// {"events": [...], "summary": {...}} against the store.
        #[arg(long)]
        json: bool,
    },
    /// Check a request's signature exactly as the listener does; the body comes on stdin.
    ///
    /// Prints `valid` or `invalid: <reason>`. Exits 0 when valid, 1 when invalid, 2 on usage
    /// errors.
    Verify(signing::VerifyArgs),
    /// Print the headers a provider would send with the body on stdin, and a ready curl line.
    Sign(signing::SignArgs),
    /// List stored events, newest first.
    Events(ops::EventsArgs),
    /// The whole story of one event: delivery attempts, rule matches, executions and every
    /// attempt with its logs, HTTP calls and DB statements.
    Logs(ops::LogsArgs),
    /// Run an event's actions again (a new run generation with new idempotency keys, so their
    /// effects happen again), or one finished execution.
    Replay(ops::ReplayArgs),
    /// Executions that failed for good: list, retry or purge them.
    #[command(subcommand)]
    DeadLetters(ops::DeadLetterCommand),
    /// Copy the SQLite store into a new file, consistently, while a server runs on it.
    ///
    /// Prints the file written, its size and the events it holds. A PostgreSQL store is backed
    /// up with pg_dump instead.
    Backup(backup::BackupArgs),
    /// List the configured plugins, inspect a wasm file against the plugin contract, or run
    /// one plugin call locally.
    Plugins {
        #[command(subcommand)]
        command: plugins::PluginsCommand,
    },
    /// Print the JSON Schema of a file format (for editors and `schemas/`).
    Schema {
        #[arg(value_enum)]
        format: SchemaFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemaFormat {
    /// hookwise.yaml
    Config,
    /// Rule files under rules/
    Rules,
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_format, &cli.log);
    match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => {
            crate::process::compile_plugins_apart();
            serve(config, listen, admin_listen)
        }
        Command::Check { config } => check(config),
        Command::Verify(args) => signing::verify_command(args),
        Command::Sign(args) => signing::sign_command(args),
        Command::Events(args) => ops::events(args),
        Command::Logs(args) => ops::logs(args),
        Command::Replay(args) => ops::replay(args),
        Command::DeadLetters(command) => ops::dead_letters(command),
        Command::Backup(args) => backup::run(args),
        Command::Plugins { command } => plugins::run(command),
        Command::Test {
            config,
            rules,
            against_store: true,
            since,
            until,
            limit,
            rule,
            json,
            ..
        } => backtest::run(backtest::BacktestArgs {
            config,
            rules,
            since,
            until,
            limit,
            rule,
            json,
        }),
        Command::Test {
            config,
            rules,
            source,
            event_type,
            payload,
            headers,
            json,
            ..
        } => match (source, payload) {
            (Some(source), Some(payload)) => dry_run(
                config, &rules, &source, event_type, &payload, &headers, json,
            ),
            _ => usage("name --source and --payload, or --against-store"),
        },
        Command::Schema { format } => {
            let schema = match format {
                SchemaFormat::Config => crate::config::config_schema(),
                SchemaFormat::Rules => crate::rules::rule_file_schema_for_editors(),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
    }
}

fn init_tracing(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Every line is scrubbed of secrets once a command has read its config.
        .with_writer(crate::scrub::logs::stderr)
        // Colours only on a terminal: logs piped to files or collectors stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The scrubber of `config` and of the admin token an earlier `serve` made (none is made
/// here), installed for this command's logs too.
fn scrubber_for(config: &Config) -> Arc<Scrubber> {
    let token = crate::admin::token::existing(config);
    let scrubber = Arc::new(config.scrubber(token.as_ref().map(|t| t.expose())));
    crate::scrub::logs::install(scrubber.clone());
    scrubber
}

fn print_problems(problems: &[crate::yamldoc::Diagnostic]) {
    for p in problems {
        eprintln!("{p}");
    }
    eprintln!(
        "{} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
}

fn check(config: Option<PathBuf>) -> ExitCode {
    let config = match Config::discover(config.as_deref()) {
        Ok(config) => config,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::FAILURE;
        }
    };
    let inputs = RuleInputs::new(&config, None);
    match crate::rules::load_paths(&rule_paths(&config), &inputs.context()) {
        Ok(rules) => {
            let what = config
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "embedded default".into());
            println!(
                "ok: {what}; {} rule{}",
                rules.len(),
                if rules.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print_problems(&problems);
            ExitCode::FAILURE
        }
    }
}

use signing::usage;

/// The rules to try: the files given, else the configured ones.
fn rules_to_try(
    config: &Config,
    files: &[PathBuf],
    extra: Option<(String, String)>,
) -> Result<crate::rules::RuleSet, Vec<crate::yamldoc::Diagnostic>> {
    let inputs = RuleInputs::new(config, extra);
    if files.is_empty() {
        crate::rules::load_paths(&rule_paths(config), &inputs.context())
    } else {
        crate::rules::load_paths(files, &inputs.context())
    }
}

fn dry_run(
    config: Option<PathBuf>,
    rule_files: &[PathBuf],
    source: &str,
    event_type: Option<String>,
    payload: &std::path::Path,
    headers: &[String],
    json: bool,
) -> ExitCode {
    let config = match Config::discover(config.as_deref()) {
        Ok(config) => config,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::FAILURE;
        }
    };
    let given = match given_event(&config, source, event_type, payload, headers) {
        Ok(given) => given,
        Err(e) => return usage(e),
    };
    let rules = match rules_to_try(&config, rule_files, given.extra.clone()) {
        Ok(rules) => rules,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::FAILURE;
        }
    };
    let received_at = crate::model::Millis::now().to_rfc3339();
    let view = EventView {
        id: "dry-run",
        source,
        provider: match source {
            // hookwise's own events have no provider: their source stands in, as when served.
            crate::model::OWN_SOURCE => crate::model::OWN_SOURCE,
            _ => given.provider.id(),
        },
        event_type: &given.event_type,
        received_at: &received_at,
        headers: &given.headers,
        payload: &std::sync::Arc::new(given.payload.clone()),
    };
    let evaluation = rules.evaluate_all(&view);
    // Rendered inputs show `${secret:NAME}` already; the payload and headers given may hold a
    // secret value too.
    let scrubber = scrubber_for(&config);
    if json {
        let mut answer = crate::rules::dry_run_json(&evaluation);
        scrubber.scrub_value(&mut answer);
        println!("{answer}");
    } else {
        print!(
            "{}",
            scrubber.scrub(&crate::rules::render_text(&evaluation))
        );
    }
    ExitCode::SUCCESS
}

/// An event described on the command line (`--source`, `--payload`, `--header`,
/// `--event-type`), read as the listener would read it after verification.
struct GivenEvent {
    provider: Provider,
    /// `(source id, provider id)` when the source is not configured but names a provider.
    extra: Option<(String, String)>,
    event_type: String,
    delivery_id: Option<String>,
    /// Lower-case names.
    headers: BTreeMap<String, String>,
    payload: serde_json::Value,
    /// The payload as the store keeps it: a JSON body as sent, a form as JSON.
    payload_text: String,
}

/// Reads the event given by `source`, `payload` (a file) and `headers`; the event type is
/// `event_type` or identified as ingress does. Errors are usage errors.
fn given_event(
    config: &Config,
    source: &str,
    event_type: Option<String>,
    payload: &std::path::Path,
    headers: &[String],
) -> Result<GivenEvent, String> {
    let (provider, extra) = match config.source(source) {
        Some(s) => (s.provider, None),
        // hookwise's own events: rules may always name their source; nothing signs them.
        None if source == crate::model::OWN_SOURCE => (Provider::None, None),
        None => match Provider::from_id(source) {
            Some(p) => (p, Some((source.to_string(), p.id().to_string()))),
            None => {
                return Err(format!(
                    "`{source}` is neither a configured source nor a provider id"
                ));
            }
        },
    };
    let mut header_map = BTreeMap::new();
    let mut http_headers = http::HeaderMap::new();
    for h in headers {
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!("--header `{h}` is not `Name: value`"));
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                http_headers.append(n, v);
            }
            _ => return Err(format!("--header `{h}` is not a valid header")),
        }
        header_map.insert(name, value);
    }
    let body =
        std::fs::read(payload).map_err(|e| format!("cannot read {}: {e}", payload.display()))?;
    let input = crate::verify::Verified::operator_supplied(provider, &http_headers, &body);
    let Some(read) = input.payload() else {
        return Err(format!(
            "{} is neither JSON nor form-encoded",
            payload.display()
        ));
    };
    let identity = input.identify(&read);
    let Some(event_type) = event_type.or(identity.event_type) else {
        return Err(
            "cannot tell the event type from headers and payload; pass --event-type".to_string(),
        );
    };
    let payload_text = read.text();
    Ok(GivenEvent {
        provider,
        extra,
        event_type,
        delivery_id: identity.delivery_id,
        headers: header_map,
        payload: read.into_value(),
        payload_text,
    })
}

fn serve(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    admin_listen: Option<std::net::SocketAddr>,
) -> ExitCode {
    let mut config = match Config::discover(config.as_deref()) {
        Ok(c) => c,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = listen {
        config.listen = addr;
    }
    if let Some(addr) = admin_listen {
        config.admin.listen = addr;
        if let Some(problem) = crate::config::admin_listen_problem(&config.admin) {
            eprintln!("error: --admin-listen {addr}: {problem}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listeners = crate::server::Listeners::bind(&config).await?;
        crate::server::run(config, listeners, crate::server::shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "hookwise stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
