//! `hookwise plugins list` and `hookwise plugins inspect`: what the configured
//! plugins are (each loaded through the real host), and what a wasm file is
//! and whether it fits the plugin contract. `plugins run` lives in `plugin_run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;

use super::{print_problems, usage};
use crate::config::{Config, Plugin};
use crate::plugin_host::registry::spec_for;
use crate::plugin_host::{
    Capability, HostSettings, InspectedItem, Inspection, PluginAbi, PluginHost, WasmSource,
};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Compile the plugin on stdin into a compile cache: what `hookwise serve` runs for each
    /// plugin it must compile, so that the compiler's memory is not the server's.
    #[command(hide = true)]
    Compile(crate::plugin_host::CompileArgs),
    /// Every configured plugin (built-ins too): path, ABI, sha256, limits and grants. Each is
    /// loaded through the plugin host, so a broken file shows its error.
    ///
    /// Exits 0 when every plugin loads, 1 when any fails (or the config has problems).
    List {
        /// Config file. Default: ./hookwise.yaml when present, else the embedded default.
        #[arg(long, short, env = "HOOKWISE_CONFIG")]
        config: Option<PathBuf>,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// What a wasm file is (component or WASI command module), its imports and exports,
    /// whether it fits the hookwise:plugin/plugin world, and the grants it would need.
    ///
    /// Exits 0 when it fits, 1 when it does not (with the reasons), 2 when the file cannot be
    /// read or is not WebAssembly.
    Inspect {
        /// The .wasm file.
        file: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Declare a plugin's input schema: writes the JSON Schema into the wasm file (a custom
    /// section named `hookwise:input-schema`, replacing one that is there). For toolchains that
    /// cannot add the section themselves; the file runs exactly as before.
    SetInputSchema {
        /// The .wasm file (rewritten in place).
        file: PathBuf,
        /// The JSON Schema of the plugin's input.
        schema: PathBuf,
    },
    /// Start a plugin project: the handler with a worked example, a build script using pinned
    /// packages, the language's SDK, an input schema, a sample event and input, and a README.
    New {
        /// The plugin's name (lowercase letters, digits, `-` and `_`, starting with a letter).
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: super::scaffold::Lang,
        /// Where to write it (must not exist). Default: ./NAME.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run one plugin call locally, in the sandbox and with the limits `serve` gives it, and
    /// print the attempt as `hookwise logs` shows it.
    ///
    /// The event comes from a payload file or the store; the output has the outcome and
    /// output, log lines, HTTP calls, SQL statements, time, memory and fuel. Nothing is stored,
    /// but the plugin's HTTP calls and database writes really happen.
    ///
    /// Exits 0 when the plugin returned ok, 1 when it returned an error, trapped or hit a
    /// limit, 2 when the call could not be made (bad flags, unreadable files, a wasm file that
    /// does not fit, a connection that does not open).
    Run(Box<super::plugin_run::RunArgs>),
}

pub fn run(command: PluginsCommand) -> ExitCode {
    match command {
        PluginsCommand::Compile(args) => compile(&args),
        PluginsCommand::List { config, json } => list(config.as_deref(), json),
        PluginsCommand::Inspect { file, json } => inspect(&file, json),
        PluginsCommand::New { name, lang, dir } => new_project(&name, lang, dir),
        PluginsCommand::SetInputSchema { file, schema } => set_input_schema(&file, &schema),
        PluginsCommand::Run(args) => super::plugin_run::run(*args),
    }
}

fn set_input_schema(file: &Path, schema: &Path) -> ExitCode {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| usage(format_args!("cannot read {}: {e}", path.display())))
    };
    let (wasm, text) = match (read(file), read(schema)) {
        (Ok(wasm), Ok(text)) => (wasm, text),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let out = match crate::schema::input::embed(&wasm, &text) {
        Ok(out) => out,
        Err(e) => {
            return usage(format_args!(
                "cannot set the input schema of {} from {}: {e}",
                file.display(),
                schema.display()
            ));
        }
    };
    // Written beside it and renamed over it, so a failure leaves the file as it was.
    let partial = file.with_extension("wasm.partial");
    match std::fs::write(&partial, &out).and_then(|()| std::fs::rename(&partial, file)) {
        Ok(()) => {
            println!(
                "{}: input schema set from {}",
                file.display(),
                schema.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            usage(format_args!("cannot write {}: {e}", file.display()))
        }
    }
}

fn new_project(name: &str, lang: super::scaffold::Lang, dir: Option<PathBuf>) -> ExitCode {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    match super::scaffold::write(name, lang, &dir) {
        Ok((files, build)) => {
            println!("wrote {} ({} files):", dir.display(), files.len());
            for file in &files {
                println!("  {file}");
            }
            println!("next: cd {} && {build}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => usage(e),
    }
}

/// A host for one-off loading: no compile cache, one instance slot, fuel counted (so plugins
/// with a fuel budget load as they do in a server).
fn cli_host() -> Result<PluginHost, ExitCode> {
    PluginHost::new(HostSettings {
        max_instances: 1,
        consume_fuel: true,
        ..HostSettings::default()
    })
    .map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Ok,
    /// A built-in plugin without wasm in this build.
    Unavailable,
    Error,
}

#[derive(Debug, Serialize)]
struct ListedLimits {
    memory_bytes: u64,
    timeout_ms: u128,
    fuel: Option<u64>,
    concurrency: Option<u32>,
}

#[derive(Debug, Serialize)]
struct ListedGrants {
    http: Vec<String>,
    db: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    /// None for a built-in plugin.
    path: Option<PathBuf>,
    builtin: bool,
    status: Status,
    abi: Option<PluginAbi>,
    sha256: Option<String>,
    limits: ListedLimits,
    grants: ListedGrants,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn listed(host: &PluginHost, plugin: &Plugin) -> Listed {
    let mut out = Listed {
        name: plugin.name.clone(),
        path: plugin.path.clone(),
        builtin: plugin.path.is_none(),
        status: Status::Unavailable,
        abi: None,
        sha256: None,
        limits: ListedLimits {
            memory_bytes: plugin.memory,
            timeout_ms: plugin.timeout.as_millis(),
            fuel: plugin.fuel,
            concurrency: plugin.concurrency,
        },
        grants: ListedGrants {
            http: plugin.allow_http.clone(),
            db: plugin.allow_db.clone(),
        },
        error: None,
    };
    let wasm = match &plugin.path {
        Some(path) => WasmSource::Path(path.clone()),
        None => match crate::plugin_host::builtin::component(&plugin.name) {
            Some(bytes) => WasmSource::Bytes(bytes.to_vec()),
            None => {
                out.error = Some("built-in plugin without wasm in this build".to_string());
                return out;
            }
        },
    };
    match host.load(spec_for(plugin, wasm)) {
        Ok(loaded) => {
            out.status = Status::Ok;
            out.abi = Some(loaded.abi());
            out.sha256 = Some(loaded.sha256().to_string());
        }
        Err(e) => {
            out.status = Status::Error;
            out.error = Some(e.to_string());
        }
    }
    out
}

fn abi_name(abi: PluginAbi) -> &'static str {
    match abi {
        PluginAbi::Component => "component",
        PluginAbi::Command => "wasip1 command",
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

fn print_listed(p: &Listed) {
    let place = match &p.path {
        Some(path) => path.display().to_string(),
        None => "built-in".to_string(),
    };
    println!("{}  {place}", p.name);
    match p.status {
        Status::Ok => println!(
            "  abi: {}  sha256: {}",
            p.abi.map(abi_name).unwrap_or("?"),
            p.sha256.as_deref().unwrap_or("?")
        ),
        Status::Unavailable => println!("  unavailable: no wasm for this built-in in this build"),
        Status::Error => println!("  error: {}", p.error.as_deref().unwrap_or("?")),
    }
    let limits = &p.limits;
    println!(
        "  limits: memory {} MiB, timeout {} ms, fuel {}, concurrency {}",
        limits.memory_bytes / (1024 * 1024),
        limits.timeout_ms,
        limits
            .fuel
            .map(|f| f.to_string())
            .unwrap_or_else(|| "unlimited".into()),
        limits
            .concurrency
            .map(|c| c.to_string())
            .unwrap_or_else(|| "unlimited".into()),
    );
    println!(
        "  grants: http {}; db {}",
        list_or_none(&p.grants.http),
        list_or_none(&p.grants.db)
    );
}

fn list(config: Option<&Path>, json: bool) -> ExitCode {
    let config = match Config::discover(config) {
        Ok(config) => config,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::FAILURE;
        }
    };
    let host = match cli_host() {
        Ok(host) => host,
        Err(code) => return code,
    };
    let plugins: Vec<Listed> = config.plugins.iter().map(|p| listed(&host, p)).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plugins).unwrap_or_default()
        );
    } else {
        for p in &plugins {
            print_listed(p);
        }
    }
    let failed = plugins
        .iter()
        .filter(|p| matches!(p.status, Status::Error))
        .count();
    if failed > 0 {
        eprintln!(
            "{failed} plugin{} failed to load",
            if failed == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Serialize)]
struct InspectOutput<'a> {
    file: &'a Path,
    #[serde(flatten)]
    inspection: &'a Inspection,
    /// For command modules: whether `_start` is exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    has_start: Option<bool>,
}

fn print_items(title: &str, items: &[InspectedItem]) {
    println!("{title}:");
    if items.is_empty() {
        println!("  (none)");
    }
    for item in items {
        if item.functions.is_empty() {
            println!("  {} ({})", item.name, item.kind);
        } else {
            println!(
                "  {} ({}): {}",
                item.name,
                item.kind,
                item.functions.join(", ")
            );
        }
    }
}

fn inspect(file: &Path, json: bool) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => return usage(format_args!("cannot read {}: {e}", file.display())),
    };
    let host = match cli_host() {
        Ok(host) => host,
        Err(code) => return code,
    };
    let inspection = match host.inspect(&file.display().to_string(), &bytes) {
        Ok(inspection) => inspection,
        Err(e) => return usage(e),
    };
    let has_start = (inspection.abi == PluginAbi::Command).then(|| {
        inspection
            .exports
            .iter()
            .any(|e| e.name == "_start" && e.kind == "func")
    });
    if json {
        let out = InspectOutput {
            file,
            inspection: &inspection,
            has_start,
        };
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!("file: {}", file.display());
        println!("sha256: {}", inspection.sha256);
        match inspection.abi {
            PluginAbi::Component => println!("kind: component"),
            PluginAbi::Command => println!("kind: core module (WASI preview 1 command ABI)"),
        }
        print_items("imports", &inspection.imports);
        print_items("exports", &inspection.exports);
        if let Some(has_start) = has_start {
            println!("_start exported: {}", if has_start { "yes" } else { "no" });
        }
        let needs: Vec<&str> = inspection
            .needs
            .iter()
            .map(|c| Capability::config_key(*c))
            .collect();
        println!(
            "needs: {}",
            if needs.is_empty() {
                "no grants".to_string()
            } else {
                needs.join(", ")
            }
        );
        match &inspection.input_schema {
            Some(schema) => println!(
                "input schema: {}",
                serde_json::to_string(schema).unwrap_or_default()
            ),
            None => println!("input schema: none declared (any input)"),
        }
        if inspection.fits {
            println!("fits: yes");
        } else {
            println!("fits: no");
            for problem in &inspection.problems {
                println!("  - {problem}");
            }
        }
    }
    if inspection.fits {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn compile(args: &crate::plugin_host::CompileArgs) -> ExitCode {
    let mut wasm = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut wasm) {
        eprintln!("reading the plugin from stdin: {e}");
        return ExitCode::from(2);
    }
    match crate::plugin_host::compile_into_cache(args, &wasm) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
