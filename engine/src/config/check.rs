//! The meaning pass over a config that parsed and matched its schema: addresses, paths,
//! secrets, limits and the links between sections. Every problem is reported, each with the
//! file, line and column of the value it is about; only a config without problems becomes a
//! runtime [`Config`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::file::{self, ConfigFile};
use super::{
    AdminSettings, BACKLOG_PER_WORKER, BUILTIN_PLUGINS, CaCerts, Cidr, Config,
    DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN, DEFAULT_MAX_BODY, DEFAULT_PLUGIN_MEMORY,
    DEFAULT_PLUGIN_TIMEOUT, DEFAULT_RULES, DEFAULT_STORE, DispatchSettings, EnvLookup,
    IngressSettings, ListenerSettings, MIN_ADMIN_TOKEN_LEN, OwnEventSettings, Plugin,
    RetentionSettings, Secret, Source, TlsFiles, TlsMode, default_plugins, http_grant, scrubbing,
    secrets,
};
use crate::model::OWN_SOURCE;
use crate::schema::{self, EventSchemas, SourceSchemas};
use crate::scrub::MIN_SECRET_LEN;
use crate::verify::Provider;
use crate::yamldoc::{Diagnostic, Document};

/// Shortest retention (other than `0s`, forever): shorter would prune events whose
/// retries are still being decided.
const MIN_RETENTION: Duration = Duration::from_secs(60);

/// Most workers a node may run (each may hold a plugin instance).
const MAX_WORKERS: u32 = 1024;
/// Shortest lease: renewals happen at a third of it.
const MIN_LEASE: Duration = Duration::from_secs(1);
/// Shortest `own_events.refusals_spike.window`: shorter counts bursts, not spikes.
const MIN_REFUSALS_WINDOW: Duration = Duration::from_secs(10);
/// Longest `own_events.refusals_spike.window`: the counts of one window are held in memory.
const MAX_REFUSALS_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The longest `dispatch.backlog_wait`: well under every provider's delivery time-out.
const MAX_BACKLOG_WAIT: Duration = Duration::from_secs(2);

/// Most connections or requests at once a listener cap may name.
const MAX_LISTENER_COUNT: u32 = 1_000_000;
/// Most concurrent streams per HTTP/2 connection a config may name.
const MAX_HTTP2_STREAMS: u32 = 10_000;
/// Smallest `max_header_bytes`: hyper's smallest HTTP/1 read buffer (it refuses less).
const MIN_HEADER_BYTES: u32 = 8 << 10;
/// Largest `max_header_bytes`: far beyond any provider's headers.
const MAX_HEADER_BYTES: u32 = 16 << 20;

/// Checks `raw` (read from `path`, whose parsed form is `doc`) and resolves it into a
/// [`Config`], or returns every problem found, in file order.
pub(super) fn resolve(
    doc: &Document,
    base: &Path,
    env: EnvLookup<'_>,
    raw: &ConfigFile,
    path: &Path,
) -> Result<Config, Vec<Diagnostic>> {
    let mut checker = Checker {
        doc,
        base,
        env,
        problems: Vec::new(),
        schemas: HashMap::new(),
    };
    let config = checker.resolve(raw, path);
    let mut problems = checker.problems;
    if problems.is_empty() {
        Ok(config)
    } else {
        problems.sort_by_key(|d| d.position);
        Err(problems)
    }
}

/// Walks the config once, collecting problems instead of stopping at the first.
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
        let admin = self.admin(raw, listen);

        let insecure = raw.insecure_http.unwrap_or(false);
        let tls = match (&raw.tls, insecure) {
            (Some(_), true) => {
                self.problem(
                    "/insecure_http",
                    "`insecure_http: true` and `tls` contradict each other",
                );
                TlsMode::Plain
            }
            (Some(t), false) => {
                let TlsFiles { cert, key } = self.tls_files("/tls", t);
                TlsMode::Files { cert, key }
            }
            (None, true) => TlsMode::Plain,
            (None, false) if !raw.trusted_proxies.is_empty() => TlsMode::Plain,
            (None, false) => TlsMode::SelfSigned {
                dir: self.base.to_path_buf(),
            },
        };
        let ingress = self.ingress(raw, tls == TlsMode::Plain && !insecure);
        let listener = self.listener(raw);

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
        let plugin_ca_certs = CaCerts::new(match &raw.plugin_http {
            Some(http) => self.ca_certs("/plugin_http", &http.ca_certs),
            None => Vec::new(),
        });
        let plugins = self.plugins(raw, &connections, &plugin_ca_certs);
        let dispatch = self.dispatch(raw);
        let retention = self.retention(raw);
        let own_events = self.own_events(raw);

        Config {
            file: Some(path.to_path_buf()),
            base_dir: self.base.to_path_buf(),
            listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443))),
            tls,
            admin,
            store_url,
            rules,
            secrets: secret_map,
            sources,
            plugins,
            plugin_ca_certs,
            connections,
            dispatch,
            retention,
            ingress,
            listener,
            own_events,
        }
    }

    /// The certificate and key files named at `pointer`, which must exist.
    fn tls_files(&mut self, pointer: &str, t: &file::TlsFile) -> TlsFiles {
        TlsFiles {
            cert: self.existing_file(&format!("{pointer}/cert"), &t.cert, "certificate file"),
            key: self.existing_file(&format!("{pointer}/key"), &t.key, "key file"),
        }
    }

    /// The certificates of the CA files listed at `{pointer}/ca_certs`: each file must exist
    /// and hold PEM certificates only a CA could have (each parsed as a trust anchor).
    fn ca_certs(&mut self, pointer: &str, files: &[String]) -> Vec<CertificateDer<'static>> {
        let mut out = Vec::new();
        for (j, p) in files.iter().enumerate() {
            let full = self.path(p);
            match read_ca_file(&full) {
                Ok(certs) => out.extend(certs),
                Err(e) => self.problem(&format!("{pointer}/ca_certs/{j}"), e),
            }
        }
        out
    }

    /// The admin listener: its address (apart from the ingress's, and reachable from other
    /// hosts only over TLS or by explicit choice), token and TLS.
    fn admin(&mut self, raw: &ConfigFile, ingress: Option<SocketAddr>) -> AdminSettings {
        let admin_raw = raw.admin.clone().unwrap_or_default();
        let listen = self.addr(
            "/admin/listen",
            admin_raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
        );
        if let (Some(a), Some(b)) = (ingress, listen)
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
            .map(|t| self.admin_token("/admin/token", t));
        let insecure_http = admin_raw.insecure_http.unwrap_or(false);
        let tls = match (&admin_raw.tls, insecure_http) {
            (Some(_), true) => {
                self.problem(
                    "/admin/insecure_http",
                    "`admin.insecure_http: true` and `admin.tls` contradict each other",
                );
                None
            }
            (Some(t), false) => Some(self.tls_files("/admin/tls", t)),
            (None, _) => None,
        };
        let settings = AdminSettings {
            listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9091))),
            token,
            tls,
            insecure_http,
        };
        if listen.is_some()
            && let Some(problem) = admin_listen_problem(&settings)
        {
            self.problem("/admin/listen", problem);
        }
        settings
    }

    /// Resolves `admin.token`: a secret reference whose value is at least
    /// [`MIN_ADMIN_TOKEN_LEN`] characters.
    fn admin_token(&mut self, pointer: &str, raw: &str) -> Secret {
        let before = self.problems.len();
        let token = self.secret(pointer, raw);
        let length = token.expose().trim().chars().count();
        if self.problems.len() == before && length < MIN_ADMIN_TOKEN_LEN {
            self.problem(
                pointer,
                format!(
                    "the admin token is {length} characters; it must be at least \
                     {MIN_ADMIN_TOKEN_LEN}: make one with `openssl rand -hex 32`"
                ),
            );
        }
        token
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

    /// The listener caps: each count at least 1 (`refusals_per_client.per_second` 0 turns
    /// that limit off), each duration more than 0s, headers within hyper's bounds.
    fn listener(&mut self, raw: &ConfigFile) -> ListenerSettings {
        let mut out = ListenerSettings::default();
        let Some(l) = &raw.listener else {
            return out;
        };
        for (name, value, slot, max) in [
            (
                "max_connections",
                l.max_connections,
                &mut out.max_connections,
                MAX_LISTENER_COUNT,
            ),
            (
                "max_in_flight",
                l.max_in_flight,
                &mut out.max_in_flight,
                MAX_LISTENER_COUNT,
            ),
            (
                "max_in_flight_per_client",
                l.max_in_flight_per_client,
                &mut out.max_in_flight_per_client,
                MAX_LISTENER_COUNT,
            ),
            (
                "http2_max_streams",
                l.http2_max_streams,
                &mut out.http2_max_streams,
                MAX_HTTP2_STREAMS,
            ),
        ] {
            match value {
                None => {}
                Some(n) if n == 0 || n > max => self.problem(
                    &format!("/listener/{name}"),
                    format!("{name} must be between 1 and {max}"),
                ),
                Some(n) => *slot = n,
            }
        }
        for (name, value, slot) in [
            (
                "http2_keep_alive",
                l.http2_keep_alive,
                &mut out.http2_keep_alive,
            ),
            ("idle_timeout", l.idle_timeout, &mut out.idle_timeout),
        ] {
            match value {
                None => {}
                Some(d) if d.0.is_zero() => self.problem(
                    &format!("/listener/{name}"),
                    format!("{name} must be more than 0s"),
                ),
                Some(d) => *slot = d.0,
            }
        }
        if let Some(size) = l.max_header_bytes {
            match u32::try_from(size.0) {
                Ok(n) if (MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&n) => {
                    out.max_header_bytes = n;
                }
                _ => self.problem(
                    "/listener/max_header_bytes",
                    "max_header_bytes must be between 8KiB and 16MiB",
                ),
            }
        }
        if let Some(size) = l.max_body_bytes_in_flight {
            if size.0 >= 1 << 20 {
                out.max_body_bytes_in_flight = size.0;
            } else {
                self.problem(
                    "/listener/max_body_bytes_in_flight",
                    "max_body_bytes_in_flight must be at least 1MiB",
                );
            }
        }
        if let Some(r) = &l.refusals_per_client {
            let burst = r.burst.unwrap_or(r.per_second);
            out.refusals_per_client = if r.per_second == 0 {
                None
            } else if burst == 0 {
                self.problem(
                    "/listener/refusals_per_client/burst",
                    "the burst must be at least 1 (set per_second: 0 to turn the limit off)",
                );
                None
            } else {
                Some(super::RefusalLimit {
                    per_second: r.per_second,
                    burst,
                })
            };
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

    fn own_events(&mut self, raw: &ConfigFile) -> OwnEventSettings {
        let mut out = OwnEventSettings::default();
        let Some(o) = &raw.own_events else {
            return out;
        };
        if let Some(n) = o.failing_after {
            out.failing_after = n;
        }
        let Some(spike) = &o.refusals_spike else {
            return out;
        };
        if let Some(n) = spike.threshold {
            out.refusals_threshold = n;
        }
        if let Some(window) = &spike.window {
            if window.0 < MIN_REFUSALS_WINDOW || window.0 > MAX_REFUSALS_WINDOW {
                self.problem(
                    "/own_events/refusals_spike/window",
                    "the window must be between 10s and 1d",
                );
            } else {
                out.refusals_window = window.0;
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
            if s.id == OWN_SOURCE {
                self.problem(
                    &at("id"),
                    format!(
                        "source id `{OWN_SOURCE}` is reserved for hookwise's own events \
                         (rules name it without configuring it); choose another id"
                    ),
                );
            } else if !seen.insert(s.id.clone()) {
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

    /// The input schema plugin file `file` declares. A file that cannot be read was reported
    /// already.
    fn declared_input(&mut self, pointer: &str, file: &Path) -> Option<Arc<schema::InputSchema>> {
        let bytes = std::fs::read(file).ok()?;
        match schema::InputSchema::declared_in(&bytes) {
            Ok(declared) => declared.map(Arc::new),
            Err(e) => {
                self.problem(pointer, format!("plugin file {}: {e}", file.display()));
                None
            }
        }
    }

    fn plugins(
        &mut self,
        raw: &ConfigFile,
        connections: &BTreeMap<String, Secret>,
        global_ca_certs: &CaCerts,
    ) -> Vec<Plugin> {
        let mut out = default_plugins();
        for plugin in &mut out {
            plugin.http_ca_certs = global_ca_certs.clone();
        }
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
            let input = match &path {
                Some(file) => self.declared_input(&at("path"), file),
                None => schema::InputSchema::builtin(&p.name),
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
            let http_ca_certs = match &p.http {
                Some(http) if !http.ca_certs.is_empty() => {
                    let own = self.ca_certs(&format!("/plugins/{i}/http"), &http.ca_certs);
                    let mut all: Vec<_> = global_ca_certs.iter().cloned().collect();
                    all.extend(own);
                    CaCerts::new(all)
                }
                _ => global_ca_certs.clone(),
            };
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
                http_ca_certs,
                input,
            };
            match out.iter_mut().find(|existing| existing.name == plugin.name) {
                Some(existing) => *existing = plugin,
                None => out.push(plugin),
            }
        }
        out
    }
}

/// Why the admin listener may not speak as configured, if it may not: plain HTTP on an
/// address other hosts can reach would carry the token and every payload readable, so it
/// needs `admin.tls`, or `admin.insecure_http: true` where a proxy in front terminates TLS.
pub fn admin_listen_problem(admin: &AdminSettings) -> Option<String> {
    if admin.tls.is_some() || admin.insecure_http || is_loopback(admin.listen.ip()) {
        return None;
    }
    Some(format!(
        "the admin listener `{}` is reachable from other hosts, and plain HTTP would carry the \
         admin token and every payload readable: set `admin.tls` (cert and key), listen on \
         127.0.0.1, or set `admin.insecure_http: true` if a proxy in front terminates TLS",
        admin.listen
    ))
}

/// Whether `ip` is this host only: 127.0.0.0/8, ::1, or 127.0.0.0/8 mapped into IPv6.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Most bytes a CA file may have: far more than a bundle of every public root (about 200 kB).
const MAX_CA_FILE_BYTES: u64 = 4 << 20;

/// Reads the certificates of a CA file (PEM); the error says what is wrong with it.
fn read_ca_file(full: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let shown = full.display();
    let size = match std::fs::metadata(full) {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(_) => return Err(format!("CA certificate file `{shown}` is not a file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("CA certificate file `{shown}` does not exist"));
        }
        Err(e) => return Err(format!("cannot read CA certificate file `{shown}`: {e}")),
    };
    if size > MAX_CA_FILE_BYTES {
        return Err(format!(
            "CA certificate file `{shown}` is {size} bytes; at most {MAX_CA_FILE_BYTES} are read"
        ));
    }
    let bytes = std::fs::read(full)
        .map_err(|e| format!("cannot read CA certificate file `{shown}`: {e}"))?;
    if !bytes.windows(PEM_BEGIN.len()).any(|w| w == PEM_BEGIN) {
        return Err(format!(
            "CA certificate file `{shown}` is not PEM (no `-----BEGIN CERTIFICATE-----` block); \
             a DER file converts with `openssl x509 -inform der -in FILE -out FILE.pem`"
        ));
    }
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA certificate file `{shown}` is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "CA certificate file `{shown}` holds no certificate (no `BEGIN CERTIFICATE` block)"
        ));
    }
    for (k, cert) in certs.iter().enumerate() {
        let mut roots = rustls::RootCertStore::empty();
        if let Err(e) = roots.add(cert.clone()) {
            return Err(format!(
                "certificate {} in CA certificate file `{shown}` is not a usable certificate: {e}",
                k + 1
            ));
        }
    }
    Ok(certs)
}

/// The start of a PEM block.
const PEM_BEGIN: &[u8] = b"-----BEGIN ";

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
