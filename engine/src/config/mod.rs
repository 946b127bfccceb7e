//! Loading `hookwise.yaml`: the embedded default, `${env:NAME}` / `${file:PATH}` secrets,
//! validation of everything at once with file, line and column.
//!
//! The file is checked in three passes, each reporting every problem it finds: YAML syntax,
//! then the JSON Schema generated from [`file::ConfigFile`] (unknown keys, wrong types), then
//! meaning (addresses, paths, secrets, links between sections). Only a file that passes all
//! three becomes a runtime [`Config`].

pub mod file;
pub mod http_grant;
mod scrubbing;
mod secrets;
pub mod units;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub use secrets::{EnvLookup, Secret};

use crate::schema::{self, EventSchemas, SourceSchemas};
use crate::scrub::MIN_SECRET_LEN;
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

/// The admin listener.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
}

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
}

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
    pub connections: BTreeMap<String, Secret>,
    pub dispatch: DispatchSettings,
    pub retention: RetentionSettings,
    pub ingress: IngressSettings,
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
/// Shortest retention (other than `0s`, forever): shorter would prune events whose
/// retries are still being decided.
const MIN_RETENTION: Duration = Duration::from_secs(60);

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            events: Some(DEFAULT_RETENTION),
            delivery_attempts: Some(DEFAULT_RETENTION),
            rejected_per_second: DEFAULT_REJECTED_PER_SECOND,
        }
    }
}

/// Most workers a node may run (each may hold a plugin instance).
const MAX_WORKERS: u32 = 1024;
/// Shortest lease: renewals happen at a third of it.
const MIN_LEASE: Duration = Duration::from_secs(1);
/// The default `dispatch.backlog_limit`, per worker.
const BACKLOG_PER_WORKER: u32 = 16;
/// The longest `dispatch.backlog_wait`: well under every provider's delivery time-out.
const MAX_BACKLOG_WAIT: Duration = Duration::from_secs(2);

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
            },
            store_url: Secret::new(DEFAULT_STORE),
            rules: vec![dir.join(DEFAULT_RULES)],
            secrets: BTreeMap::new(),
            sources: Vec::new(),
            plugins: default_plugins(),
            connections: BTreeMap::new(),
            dispatch: DispatchSettings::default(),
            retention: RetentionSettings::default(),
            ingress: IngressSettings::default(),
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

fn default_plugins() -> Vec<Plugin> {
    BUILTIN_PLUGINS
        .iter()
        .map(|name| Plugin {
            name: (*name).to_string(),
            path: None,
            memory: DEFAULT_PLUGIN_MEMORY,
            timeout: DEFAULT_PLUGIN_TIMEOUT,
            fuel: None,
            concurrency: None,
            allow_http: Vec::new(),
            allow_db: Vec::new(),
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
    let mut checker = Checker {
        doc: &doc,
        base: &base_dir,
        env,
        problems: Vec::new(),
        schemas: HashMap::new(),
    };
    let config = checker.resolve(&raw, path);
    let mut problems = checker.problems;
    if problems.is_empty() {
        Ok(config)
    } else {
        problems.sort_by_key(|d| d.position);
        Err(problems)
    }
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

struct Checker<'a> {
    doc: &'a Document,
    base: &'a Path,
    env: EnvLookup<'a>,
    problems: Vec<Diagnostic>,
    /// Payload schema files read so far, so each is compiled once however often it is named.
    schemas: HashMap<PathBuf, Result<schema::Schema, String>>,
}

impl Checker<'_> {
    fn problem(&mut self, pointer: &str, message: impl Into<String>) {
        self.problems.push(self.doc.error_at(pointer, message));
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn addr(&mut self, pointer: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    pointer,
                    format!("`{text}` is not an address such as 127.0.0.1:8443"),
                );
                None
            }
        }
    }

    fn existing_file(&mut self, pointer: &str, p: &str, what: &str) -> PathBuf {
        let full = self.path(p);
        if !full.is_file() {
            self.problem(
                pointer,
                format!("{what} `{}` does not exist", full.display()),
            );
        }
        full
    }

    /// Resolves `${env:..}`/`${file:..}` in any string.
    fn interpolate(&mut self, pointer: &str, raw: &str) -> Secret {
        match secrets::interpolate(raw, self.base, self.env) {
            Ok(value) => Secret::new(value),
            Err(e) => {
                self.problem(pointer, e);
                Secret::new(String::new())
            }
        }
    }

    /// Resolves a value that must be a secret reference, never a literal.
    fn secret(&mut self, pointer: &str, raw: &str) -> Secret {
        if !secrets::is_reference(raw) {
            self.problem(
                pointer,
                "write secrets as ${env:NAME} or ${file:PATH}, never in the file itself",
            );
            return Secret::new(String::new());
        }
        let before = self.problems.len();
        let secret = self.interpolate(pointer, raw);
        if self.problems.len() == before {
            self.long_enough(pointer, "this secret", secret.expose().trim());
        }
        secret
    }

    /// Refuses a secret shorter than [`MIN_SECRET_LEN`]: hookwise replaces every secret value
    /// in what it stores, logs and answers, and a short one cannot be told from other text.
    fn long_enough(&mut self, pointer: &str, what: &str, value: &str) {
        if value.len() < MIN_SECRET_LEN {
            let size = match value.len() {
                0 => "empty".to_string(),
                n => format!("{n} bytes"),
            };
            self.problem(
                pointer,
                format!(
                    "{what} is {size}; secrets must be at least {MIN_SECRET_LEN} bytes, so that \
                     hookwise can replace them in everything it stores, logs and answers"
                ),
            );
        }
    }

    /// Resolves a database URL, whose password (if any) is a secret.
    fn url_with_password(&mut self, pointer: &str, raw: &str) -> Secret {
        let before = self.problems.len();
        let url = self.interpolate(pointer, raw);
        if self.problems.len() == before
            && let Some(password) = scrubbing::url_password(url.expose())
        {
            self.long_enough(pointer, "the password in this URL", password);
        }
        url
    }

    fn resolve(&mut self, raw: &ConfigFile, path: &Path) -> Config {
        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = self.addr("/listen", listen_text);
        let admin_raw = raw.admin.clone().unwrap_or_default();
        let admin_listen = self.addr(
            "/admin/listen",
            admin_raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
        );
        if let (Some(a), Some(b)) = (listen, admin_listen)
            && a.port() == b.port()
            && a.port() != 0
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        {
            self.problem(
                "/admin/listen",
                "the admin listener must not share the ingress address",
            );
        }
        let token = admin_raw
            .token
            .as_deref()
            .map(|t| self.secret("/admin/token", t));

        let insecure = raw.insecure_http.unwrap_or(false);
        let tls = match (&raw.tls, insecure) {
            (Some(_), true) => {
                self.problem(
                    "/insecure_http",
                    "`insecure_http: true` and `tls` contradict each other",
                );
                TlsMode::Plain
            }
            (Some(t), false) => TlsMode::Files {
                cert: self.existing_file("/tls/cert", &t.cert, "certificate file"),
                key: self.existing_file("/tls/key", &t.key, "key file"),
            },
            (None, true) => TlsMode::Plain,
            (None, false) if !raw.trusted_proxies.is_empty() => TlsMode::Plain,
            (None, false) => TlsMode::SelfSigned {
                dir: self.base.to_path_buf(),
            },
        };
        let ingress = self.ingress(raw, tls == TlsMode::Plain && !insecure);

        let store_url =
            self.url_with_password("/store", raw.store.as_deref().unwrap_or(DEFAULT_STORE));
        let u = store_url.expose();
        if !(u.starts_with("sqlite://")
            || u.starts_with("postgres://")
            || u.starts_with("postgresql://"))
        {
            self.problem(
                "/store",
                "the store must be sqlite://PATH or postgres://...",
            );
        }

        let rules = match &raw.rules {
            None => vec![self.path(DEFAULT_RULES)],
            Some(list) => {
                let mut out = Vec::new();
                for (i, p) in list.to_vec().iter().enumerate() {
                    let pointer = match list {
                        file::OneOrMany::One(_) => "/rules".to_string(),
                        file::OneOrMany::Many(_) => format!("/rules/{i}"),
                    };
                    let full = self.path(p);
                    if !full.exists() {
                        self.problem(
                            &pointer,
                            format!("rules path `{}` does not exist", full.display()),
                        );
                    }
                    out.push(full);
                }
                out
            }
        };

        let mut secret_map = BTreeMap::new();
        for (name, value) in &raw.secrets {
            let pointer = format!("/secrets/{}", crate::yamldoc::escape_pointer_token(name));
            if !is_identifier(name, false) {
                self.problem(
                    &pointer,
                    format!("secret name `{name}` may use only letters, digits and `_`"),
                );
            }
            let s = self.secret(&pointer, value);
            secret_map.insert(name.clone(), s);
        }

        let mut connections = BTreeMap::new();
        for (name, url) in &raw.connections {
            let pointer = format!(
                "/connections/{}",
                crate::yamldoc::escape_pointer_token(name)
            );
            let resolved = self.url_with_password(&pointer, url);
            let scheme_ok = [
                "sqlite://",
                "sqlite:",
                "postgres://",
                "postgresql://",
                "mysql://",
                "mariadb://",
            ]
            .iter()
            .any(|p| resolved.expose().starts_with(p));
            if !scheme_ok && !resolved.expose().is_empty() {
                self.problem(
                    &pointer,
                    "a connection must be a sqlite://, postgres:// or mysql:// URL",
                );
            }
            connections.insert(name.clone(), resolved);
        }

        let sources = self.sources(raw);
        let plugins = self.plugins(raw, &connections);
        let dispatch = self.dispatch(raw);
        let retention = self.retention(raw);

        Config {
            file: Some(path.to_path_buf()),
            base_dir: self.base.to_path_buf(),
            listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443))),
            tls,
            admin: AdminSettings {
                listen: admin_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9091))),
                token,
            },
            store_url,
            rules,
            secrets: secret_map,
            sources,
            plugins,
            connections,
            dispatch,
            retention,
            ingress,
        }
    }

    fn ingress(&mut self, raw: &ConfigFile, proxy_only: bool) -> IngressSettings {
        let mut out = IngressSettings {
            proxy_only,
            ..IngressSettings::default()
        };
        for (i, c) in raw.trusted_proxies.iter().enumerate() {
            match c.parse::<Cidr>() {
                Ok(cidr) => out.trusted_proxies.push(cidr),
                Err(e) => self.problem(&format!("/trusted_proxies/{i}"), e),
            }
        }
        let Some(t) = &raw.timeouts else {
            return out;
        };
        for (name, value, slot) in [
            (
                "tls_handshake",
                &t.tls_handshake,
                &mut out.tls_handshake_timeout,
            ),
            ("header_read", &t.header_read, &mut out.header_read_timeout),
            ("body_read", &t.body_read, &mut out.body_read_timeout),
        ] {
            if let Some(v) = value {
                if v.0.is_zero() {
                    self.problem(
                        &format!("/timeouts/{name}"),
                        "a timeout must be more than 0s",
                    );
                } else {
                    *slot = v.0;
                }
            }
        }
        out
    }

    fn retention(&mut self, raw: &ConfigFile) -> RetentionSettings {
        let mut out = RetentionSettings::default();
        let Some(r) = &raw.retention else {
            return out;
        };
        if let Some(n) = r.rejected_per_second {
            out.rejected_per_second = n;
        }
        for (field, value, slot) in [
            ("events", r.events, &mut out.events),
            (
                "delivery_attempts",
                r.delivery_attempts,
                &mut out.delivery_attempts,
            ),
        ] {
            match value {
                None => {}
                Some(d) if d.0.is_zero() => *slot = None,
                Some(d) if d.0 < MIN_RETENTION => self.problem(
                    &format!("/retention/{field}"),
                    "retention must be at least 1m (or 0s to keep forever)",
                ),
                Some(d) => *slot = Some(d.0),
            }
        }
        out
    }

    fn dispatch(&mut self, raw: &ConfigFile) -> DispatchSettings {
        let mut out = DispatchSettings::default();
        let Some(d) = &raw.dispatch else {
            return out;
        };
        if let Some(workers) = d.workers {
            if workers == 0 || workers > MAX_WORKERS {
                self.problem(
                    "/dispatch/workers",
                    format!("workers must be between 1 and {MAX_WORKERS}"),
                );
            } else {
                out.workers = workers;
                out.backlog_limit = workers.saturating_mul(BACKLOG_PER_WORKER);
            }
        }
        if let Some(limit) = d.backlog_limit {
            out.backlog_limit = limit;
        }
        if let Some(wait) = &d.backlog_wait {
            if wait.0 > MAX_BACKLOG_WAIT {
                self.problem(
                    "/dispatch/backlog_wait",
                    format!(
                        "the backlog wait may be at most {}s: providers time out deliveries",
                        MAX_BACKLOG_WAIT.as_secs()
                    ),
                );
            } else {
                out.backlog_wait = wait.0;
            }
        }
        if let Some(lease) = &d.lease {
            if lease.0 < MIN_LEASE {
                self.problem("/dispatch/lease", "the lease must be at least 1s");
            } else {
                out.lease = lease.0;
            }
        }
        out
    }

    fn sources(&mut self, raw: &ConfigFile) -> Vec<Source> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, s) in raw.sources.iter().enumerate() {
            let at = |field: &str| format!("/sources/{i}/{field}");
            if !is_identifier(&s.id, true) {
                self.problem(
                    &at("id"),
                    format!(
                        "source id `{}` may use only letters, digits, `-` and `_`",
                        s.id
                    ),
                );
            }
            if !seen.insert(s.id.clone()) {
                self.problem(&at("id"), format!("source id `{}` is used twice", s.id));
            }
            // The schema admits only known ids; `None` stands in if that ever changes.
            let provider = Provider::from_id(&s.provider).unwrap_or(Provider::None);
            // Secrets that resolved without a problem have their format checked below.
            let mut resolved = Vec::new();
            let secrets: Vec<Secret> = s
                .secrets
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    let before = self.problems.len();
                    let secret = self.secret(&format!("/sources/{i}/secrets/{j}"), v);
                    resolved.push(self.problems.len() == before);
                    secret
                })
                .collect();
            let keys = crate::verify::Keys {
                secrets: secrets.clone(),
                public_keys: s.public_keys.clone(),
            };
            for (public, j, message) in crate::verify::check_keys(provider, &keys) {
                if public {
                    self.problem(&format!("/sources/{i}/public_keys/{j}"), message);
                } else if resolved[j] {
                    self.problem(&format!("/sources/{i}/secrets/{j}"), message);
                }
            }
            // Standard Webhooks verifies v1 with a secret or v1a with a public key.
            let either = provider == Provider::StandardWebhooks;
            if provider.uses_public_key() && s.public_keys.is_empty() {
                self.problem(
                    &at("public_keys"),
                    format!("provider `{provider}` needs `public_keys`"),
                );
            } else if !provider.uses_public_key()
                && provider != Provider::None
                && secrets.is_empty()
                && (!either || s.public_keys.is_empty())
            {
                self.problem(
                    &at("secrets"),
                    format!("provider `{provider}` needs at least one secret"),
                );
            }
            match (provider, &s.hmac) {
                (Provider::Hmac, None) => {
                    self.problem(&at("hmac"), "provider `hmac` needs an `hmac` section")
                }
                (Provider::Hmac, Some(h)) => {
                    if let Err(e) = h.validate() {
                        self.problem(&at("hmac"), e);
                    }
                }
                (_, Some(_)) => {
                    self.problem(&at("hmac"), "`hmac` settings apply only to provider `hmac`")
                }
                (_, None) => {}
            }
            let schema = s
                .schema
                .as_ref()
                .and_then(|spec| self.payload_schemas(&at("schema"), spec, provider));
            let mut allow_ips = Vec::new();
            for (j, c) in s.allow_ips.iter().enumerate() {
                match c.parse::<Cidr>() {
                    Ok(cidr) => allow_ips.push(cidr),
                    Err(e) => self.problem(&format!("/sources/{i}/allow_ips/{j}"), e),
                }
            }
            if let Some(r) = &s.rate_limit
                && r.per_second == 0
            {
                self.problem(
                    &at("rate_limit/per_second"),
                    "per_second must be at least 1",
                );
            }
            let max_body = s.max_body.map(|b| b.0).unwrap_or(DEFAULT_MAX_BODY);
            if max_body == 0 {
                self.problem(&at("max_body"), "max_body must be more than 0");
            }
            out.push(Source {
                id: s.id.clone(),
                provider,
                secrets,
                public_keys: s.public_keys.clone(),
                tolerance: s.tolerance.map(|t| t.0),
                schema,
                allow_ips,
                rate_limit: s.rate_limit.clone(),
                max_body,
                url: s.url.clone(),
                hmac: s.hmac.clone(),
            });
        }
        out
    }

    /// Resolves a source's `schema:`, compiling every file it names.
    fn payload_schemas(
        &mut self,
        pointer: &str,
        spec: &file::SchemaFile,
        provider: Provider,
    ) -> Option<SourceSchemas> {
        match spec {
            file::SchemaFile::One(name) if name == schema::PROVIDER_KEYWORD => {
                match schema::provider_schemas(provider.id()) {
                    Ok(shipped) => Some(SourceSchemas::Provider(shipped)),
                    Err(e) => {
                        self.problem(pointer, e.to_string());
                        None
                    }
                }
            }
            file::SchemaFile::One(path) => self.schema_file(pointer, path).map(SourceSchemas::One),
            file::SchemaFile::ByEvent(map) => {
                if map.is_empty() {
                    self.problem(
                        pointer,
                        "map at least one event type to a schema file, or leave `schema` out",
                    );
                    return None;
                }
                let mut entries = Vec::new();
                for (pattern, path) in map {
                    let at = format!(
                        "{pointer}/{}",
                        crate::yamldoc::escape_pointer_token(pattern)
                    );
                    if pattern.trim().is_empty() {
                        self.problems
                            .push(self.doc.error_at_key(&at, "an event type may not be empty"));
                        continue;
                    }
                    if let Some(schema) = self.schema_file(&at, path) {
                        entries.push((pattern.clone(), schema));
                    }
                }
                Some(SourceSchemas::ByEvent(EventSchemas::new(entries)))
            }
        }
    }

    /// Reads and compiles one payload schema file (once per path).
    fn schema_file(&mut self, pointer: &str, p: &str) -> Option<schema::Schema> {
        let full = self.path(p);
        let loaded = self
            .schemas
            .entry(full.clone())
            .or_insert_with(|| load_schema_file(&full))
            .clone();
        match loaded {
            Ok(schema) => Some(schema),
            Err(message) => {
                self.problem(pointer, message);
                None
            }
        }
    }

    fn plugins(&mut self, raw: &ConfigFile, connections: &BTreeMap<String, Secret>) -> Vec<Plugin> {
        let mut out = default_plugins();
        let mut seen = BTreeSet::new();
        for (i, p) in raw.plugins.iter().enumerate() {
            let at = |field: &str| format!("/plugins/{i}/{field}");
            if !is_identifier(&p.name, true) {
                self.problem(
                    &at("name"),
                    format!(
                        "plugin name `{}` may use only letters, digits, `-` and `_`",
                        p.name
                    ),
                );
            }
            if !seen.insert(p.name.clone()) {
                self.problem(&at("name"), format!("plugin `{}` is listed twice", p.name));
            }
            let builtin = BUILTIN_PLUGINS.contains(&p.name.as_str());
            let path = match (&p.path, builtin) {
                (Some(path), _) => Some(self.existing_file(&at("path"), path, "plugin file")),
                (None, true) => None,
                (None, false) => {
                    self.problem(
                        &at("path"),
                        format!("plugin `{}` is not built in, so it needs a `path`", p.name),
                    );
                    None
                }
            };
            let limits = p.limits.clone().unwrap_or_default();
            let allow = p.allow.clone().unwrap_or_default();
            for (j, db) in allow.db.iter().enumerate() {
                if !connections.contains_key(db) {
                    self.problem(
                        &format!("/plugins/{i}/allow/db/{j}"),
                        format!("no connection named `{db}`"),
                    );
                }
            }
            for (j, host) in allow.http.iter().enumerate() {
                if let Err(e) = http_grant::check_entry(host) {
                    self.problem(
                        &format!("/plugins/{i}/allow/http/{j}"),
                        format!("http grant `{host}`: {e}"),
                    );
                }
            }
            let plugin = Plugin {
                name: p.name.clone(),
                path,
                memory: limits.memory.map(|m| m.0).unwrap_or(DEFAULT_PLUGIN_MEMORY),
                timeout: limits
                    .timeout
                    .map(|t| t.0)
                    .unwrap_or(DEFAULT_PLUGIN_TIMEOUT),
                fuel: limits.fuel,
                concurrency: limits.concurrency,
                allow_http: allow.http.clone(),
                allow_db: allow.db.clone(),
            };
            match out.iter_mut().find(|existing| existing.name == plugin.name) {
                Some(existing) => *existing = plugin,
                None => out.push(plugin),
            }
        }
        out
    }
}

/// Reads, parses and compiles a payload schema file; the error says which step failed.
fn load_schema_file(full: &Path) -> Result<schema::Schema, String> {
    let shown = full.display();
    let text = match std::fs::read_to_string(full) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("schema file `{shown}` does not exist"));
        }
        Err(e) => return Err(format!("cannot read schema file `{shown}`: {e}")),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("schema file `{shown}` is not JSON: {e}"))?;
    schema::compile(&value).map_err(|e| format!("schema file `{shown}`: {e}"))
}

fn is_identifier(s: &str, allow_dash: bool) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_dash && c == '-'))
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
