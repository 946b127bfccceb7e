//! Loading `hookwise.yaml`: the embedded default, `${env:NAME}` / `${file:PATH}` secrets,
//! validation of everything at once with file, line and column.
//!
//! The file is checked in three passes, each reporting every problem it finds: YAML syntax,
//! then the JSON Schema generated from [`file::ConfigFile`] (unknown keys, wrong types), then
//! meaning (addresses, paths, secrets, links between sections, in `check`). Only a file that
//! passes all three becomes a runtime [`Config`]. This module holds the runtime types and the
//! first two passes.

mod check;
pub mod file;
pub mod http_grant;
mod scrubbing;
mod secrets;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use check::admin_listen_problem;
pub use secrets::{EnvLookup, Secret};

use crate::schema::SourceSchemas;
use crate::verify::{HmacScheme, Provider};
use crate::yamldoc::{Diagnostic, Document, Position};
use file::ConfigFile;

/// The ingress address of the embedded default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// The admin address of the embedded default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9091";
/// The store of the embedded default, relative to the working directory.
pub const DEFAULT_STORE: &str = "sqlite://hookwise.db";
/// The rules folder of the embedded default.
pub const DEFAULT_RULES: &str = "rules";
/// The config file looked for in the working directory when none is named.
pub const DEFAULT_CONFIG_FILE: &str = "hookwise.yaml";
/// Body size cap of a source that sets none.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;
/// Plugins that ship inside the binary.
pub const BUILTIN_PLUGINS: &[&str] = &["notify", "call-api", "write-db"];

/// How the ingress listener speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Certificate and key from files.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for localhost, made on first run and kept in `dir`.
    SelfSigned { dir: PathBuf },
    /// Plain HTTP: by the operator's explicit choice (`insecure_http`), or behind trusted
    /// proxies, which alone may then use it ([`IngressSettings::proxy_only`]).
    Plain,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
    /// HTTPS with these files; None speaks plain HTTP (see [`admin_listen_problem`]).
    pub tls: Option<TlsFiles>,
    /// Plain HTTP on an address other hosts can reach, by the operator's explicit choice.
    pub insecure_http: bool,
}

/// Shortest admin token, in characters: the token opens every stored payload and replays, so
/// one short enough to guess is refused. (A generated token has 64.)
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// One webhook sender, resolved.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub provider: Provider,
    pub secrets: Vec<Secret>,
    pub public_keys: Vec<String>,
    pub tolerance: Option<Duration>,
    /// Payload schemas, compiled.
    pub schema: Option<SourceSchemas>,
    pub allow_ips: Vec<Cidr>,
    pub rate_limit: Option<file::RateLimitFile>,
    pub max_body: u64,
    pub url: Option<String>,
    pub hmac: Option<HmacScheme>,
}

/// One plugin, resolved.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub name: String,
    /// None for a built-in plugin.
    pub path: Option<PathBuf>,
    pub memory: u64,
    pub timeout: Duration,
    pub fuel: Option<u64>,
    /// Calls that may run at once on this node.
    pub concurrency: Option<u32>,
    pub allow_http: Vec<String>,
    pub allow_db: Vec<String>,
    /// Certificate authorities its HTTPS trusts besides the public web PKI: the config's
    /// `plugin_http.ca_certs`, then its own `http.ca_certs`.
    pub http_ca_certs: CaCerts,
    /// The JSON Schema of its input, when it declares one (every built-in plugin does).
    pub input: Option<Arc<crate::schema::InputSchema>>,
}

/// Certificates (DER) of certificate authorities, read and checked at start-up. Cheap to clone.
pub type CaCerts = Arc<Vec<rustls::pki_types::CertificateDer<'static>>>;

/// Default memory cap of a plugin call.
pub const DEFAULT_PLUGIN_MEMORY: u64 = 64 << 20;
/// Default time cap of a plugin call.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The runtime configuration: everything resolved, parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; None for the embedded default.
    pub file: Option<PathBuf>,
    /// Relative paths are relative to this folder.
    pub base_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: TlsMode,
    pub admin: AdminSettings,
    pub store_url: Secret,
    /// Rule files and folders.
    pub rules: Vec<PathBuf>,
    pub secrets: BTreeMap<String, Secret>,
    pub sources: Vec<Source>,
    pub plugins: Vec<Plugin>,
    /// `plugin_http.ca_certs`: what every plugin's HTTPS trusts besides the public web PKI
    /// (also given to plugin files run outside the config, by `hookwise plugins run`).
    pub plugin_ca_certs: CaCerts,
    pub connections: BTreeMap<String, Secret>,
    pub dispatch: DispatchSettings,
    pub retention: RetentionSettings,
    pub ingress: IngressSettings,
    pub listener: ListenerSettings,
    pub own_events: OwnEventSettings,
}

/// Caps on the ingress listener (see [`file::ListenerFile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSettings {
    pub max_connections: u32,
    pub max_in_flight: u32,
    pub max_in_flight_per_client: u32,
    pub http2_max_streams: u32,
    pub http2_keep_alive: Duration,
    pub max_header_bytes: u32,
    pub max_body_bytes_in_flight: u64,
    pub idle_timeout: Duration,
    /// None: refused requests are not limited per client.
    pub refusals_per_client: Option<RefusalLimit>,
}

/// Refused requests allowed per client: `per_second` sustained, `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            // Far above what providers open (a few to a few dozen each), far below the
            // descriptors a process gets once raised for a server (65,536 and up).
            max_connections: 4096,
            // As many as connections: a request costs little until its body arrives, and
            // the bodies held at once are bounded by bytes (max_body_bytes_in_flight), so
            // a thousand senders trickling bodies do not crowd out the providers.
            max_in_flight: 4096,
            // A quarter of that: one client holding requests open (bodies trickled a byte
            // at a time) leaves the rest to everyone else, and no provider sends anywhere
            // near 256 deliveries at once from one address.
            max_in_flight_per_client: 256,
            http2_max_streams: 64,
            http2_keep_alive: Duration::from_secs(20),
            max_header_bytes: 64 << 10,
            max_body_bytes_in_flight: 256 << 20,
            idle_timeout: Duration::from_secs(60),
            refusals_per_client: Some(RefusalLimit {
                per_second: 100,
                burst: 200,
            }),
        }
    }
}

/// How the ingress listener treats its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressSettings {
    /// Proxies trusted for `X-Forwarded-For` and `X-Forwarded-Proto`.
    pub trusted_proxies: Vec<Cidr>,
    /// Plain HTTP that only trusted proxies forwarding HTTPS may use (see [`TlsMode::Plain`]).
    pub proxy_only: bool,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Default for IngressSettings {
    fn default() -> Self {
        IngressSettings {
            trusted_proxies: Vec::new(),
            proxy_only: false,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

impl IngressSettings {
    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

/// How long history is kept; None keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    pub events: Option<Duration>,
    pub delivery_attempts: Option<Duration>,
    /// Refused requests recorded one by one per source and second (see
    /// `ingress::rejections`).
    pub rejected_per_second: u32,
}

/// Refused requests recorded one by one per source and second, by default: far more than a
/// misconfigured sender produces, far less than a flood.
pub const DEFAULT_REJECTED_PER_SECOND: u32 = 50;

/// History kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            events: Some(DEFAULT_RETENTION),
            delivery_attempts: Some(DEFAULT_RETENTION),
            rejected_per_second: DEFAULT_REJECTED_PER_SECOND,
        }
    }
}

/// When hookwise emits its own events (see [`file::OwnEventsFile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnEventSettings {
    /// Failed attempts in a row that make an execution `execution.failing`; 0 never.
    pub failing_after: u32,
    /// Refusals of one source in one window beyond which `source.refusals_spike` is emitted;
    /// 0 never.
    pub refusals_threshold: u32,
    pub refusals_window: Duration,
}

impl Default for OwnEventSettings {
    fn default() -> Self {
        OwnEventSettings {
            // Three failures in a row: past a blip, well before most retry policies give up
            // (the default policy tries 5 times).
            failing_after: 3,
            // A misconfigured secret on a busy source, or someone probing, passes this within
            // minutes; a sender that now and then sends a stale retry does not.
            refusals_threshold: 100,
            refusals_window: Duration::from_secs(300),
        }
    }
}

/// The default `dispatch.backlog_limit`, per worker.
const BACKLOG_PER_WORKER: u32 = 16;

/// How actions are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchSettings {
    /// Actions that may run at once on this node.
    pub workers: u32,
    /// Lease on a claimed action, renewed while it runs.
    pub lease: Duration,
    /// Unclaimed executions on this node above which an arriving event that matches rules
    /// waits (0: never). Default 16 per worker.
    pub backlog_limit: u32,
    /// The longest such a wait lasts.
    pub backlog_wait: Duration,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            workers: 16,
            lease: Duration::from_secs(30),
            backlog_limit: 16 * BACKLOG_PER_WORKER,
            backlog_wait: Duration::from_millis(100),
        }
    }
}

impl Config {
    /// The embedded default, rooted at `dir` (normally the working directory).
    pub fn embedded_default(dir: &Path) -> Config {
        let load = load_str(dir.join(DEFAULT_CONFIG_FILE).as_path(), "{}", &|_| None);
        let mut config = match load {
            Ok(config) => config,
            // An empty file is always valid; this arm exists only so nothing can panic here.
            Err(_) => Config::fallback(dir),
        };
        config.file = None;
        config
    }

    fn fallback(dir: &Path) -> Config {
        Config {
            file: None,
            base_dir: dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls: TlsMode::SelfSigned {
                dir: dir.to_path_buf(),
            },
            admin: AdminSettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
                token: None,
                tls: None,
                insecure_http: false,
            },
            store_url: Secret::new(DEFAULT_STORE),
            rules: vec![dir.join(DEFAULT_RULES)],
            secrets: BTreeMap::new(),
            sources: Vec::new(),
            plugins: default_plugins(),
            plugin_ca_certs: CaCerts::default(),
            connections: BTreeMap::new(),
            dispatch: DispatchSettings::default(),
            retention: RetentionSettings::default(),
            ingress: IngressSettings::default(),
            listener: ListenerSettings::default(),
            own_events: OwnEventSettings::default(),
        }
    }

    /// Loads `path` with secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Diagnostic {
                file: path.to_path_buf(),
                position: Position { line: 1, column: 1 },
                pointer: String::new(),
                message: format!("cannot read config file: {e}"),
            }]
        })?;
        load_str(path, &text, &|name| std::env::var(name).ok())
    }

    /// The config named on the command line, else `./hookwise.yaml` when it exists, else the
    /// embedded default.
    pub fn discover(explicit: Option<&Path>) -> Result<Config, Vec<Diagnostic>> {
        match explicit {
            Some(path) => Config::load(path),
            None => {
                let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
                let candidate = cwd.join(DEFAULT_CONFIG_FILE);
                if candidate.is_file() {
                    Config::load(&candidate)
                } else {
                    Ok(Config::embedded_default(&cwd))
                }
            }
        }
    }

    pub fn source(&self, id: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.id == id)
    }
}

impl Plugin {
    /// A plugin as the config gives it when it says nothing about it: default limits, no
    /// grants, no input schema.
    pub fn unconfigured(name: String, path: Option<PathBuf>) -> Plugin {
        Plugin {
            name,
            path,
            memory: DEFAULT_PLUGIN_MEMORY,
            timeout: DEFAULT_PLUGIN_TIMEOUT,
            fuel: None,
            concurrency: None,
            allow_http: Vec::new(),
            allow_db: Vec::new(),
            http_ca_certs: CaCerts::default(),
            input: None,
        }
    }
}

fn default_plugins() -> Vec<Plugin> {
    BUILTIN_PLUGINS
        .iter()
        .map(|name| Plugin {
            input: crate::schema::InputSchema::builtin(name),
            ..Plugin::unconfigured((*name).to_string(), None)
        })
        .collect()
}

/// The JSON Schema of `hookwise.yaml`, generated from [`file::ConfigFile`].
pub fn config_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(ConfigFile);
    serde_json::to_value(&schema).unwrap_or_default()
}

fn config_validator() -> Option<&'static jsonschema::Validator> {
    static VALIDATOR: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::validator_for(&config_schema()).ok())
        .as_ref()
}

/// Loads config text; `env` answers `${env:NAME}`. Every problem is returned at once.
pub fn load_str(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<Config, Vec<Diagnostic>> {
    let doc = Document::parse(path, text).map_err(|d| vec![d])?;
    let mut doc = doc;
    if doc.value.is_null() {
        doc.value = serde_json::json!({});
    }
    let Some(validator) = config_validator() else {
        return Err(vec![doc.error_at(
            "",
            "internal error: the config schema does not compile",
        )]);
    };
    let errors = doc.schema_errors(validator, may_hold_secret);
    if !errors.is_empty() {
        return Err(errors);
    }
    let raw: ConfigFile = serde_json::from_value(doc.value.clone())
        .map_err(|e| vec![doc.error_at("", format!("invalid config: {e}"))])?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    check::resolve(&doc, &base_dir, env, &raw, path)
}

/// Places in the config where a value may be a secret, so errors must not quote it.
fn may_hold_secret(pointer: &str) -> bool {
    [
        "/secrets",
        "/token",
        "/store",
        "/connections",
        "/public_keys",
    ]
    .iter()
    .any(|p| pointer.contains(p))
}

/// An IP network such as `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an address range such as 192.30.252.0/22");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
