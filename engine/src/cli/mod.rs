//! The `hookwise` command line: thin wrappers over library functions.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

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
        /// Override the admin address (`host:port`).
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
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_format, &cli.log);
    match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => serve(config, listen, admin_listen),
        Command::Check { config } => check(config),
        Command::Schema { format } => {
            let schema = match format {
                SchemaFormat::Config => crate::config::config_schema(),
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
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
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
    match Config::discover(config.as_deref()) {
        Ok(config) => {
            let what = config
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "embedded default".into());
            println!("ok: {what}");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print_problems(&problems);
            ExitCode::FAILURE
        }
    }
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
