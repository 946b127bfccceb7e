//! `hookwise.yaml` as written. These types are the source of the config's JSON Schema
//! (`schemas/hookwise.schema.json`); their doc comments become its descriptions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::units::{ByteSize, HumanDuration};

/// hookwise configuration. With no file at all, hookwise runs on its embedded default: HTTPS
/// ingress on 127.0.0.1:8443 with a self-signed certificate, admin on 127.0.0.1:9091, the store
/// `sqlite://hookwise.db`, the built-in plugins and `./rules` when present.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address of the ingress listener (HTTPS), `host:port`. Default `127.0.0.1:8443`.
    pub listen: Option<String>,
    /// Certificate and key for the ingress listener. Without them, a self-signed certificate
    /// for localhost is made on first run and kept beside the store.
    pub tls: Option<TlsFile>,
    /// Serve plain HTTP instead of HTTPS on the ingress listener. Only for a listener behind a
    /// TLS-terminating proxy on the same host, or for local tests.
    pub insecure_http: Option<bool>,
    /// Proxies (address ranges) in front of hookwise that terminate TLS. A request from one of
    /// them is trusted for `X-Forwarded-For` (the client address that `allow_ips` and logs see)
    /// and `X-Forwarded-Proto`. Without `tls` and `insecure_http`, naming trusted proxies makes
    /// the listener speak plain HTTP and serve only requests that such a proxy forwarded from
    /// HTTPS (`X-Forwarded-Proto: https`); everything else is refused.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Limits against slow clients on the ingress listener.
    pub timeouts: Option<TimeoutsFile>,
    /// Caps that keep hostile or broken clients from exhausting the ingress listener
    /// (connections, requests at once, HTTP/2 streams, header size, idle connections, refused
    /// requests per client), so valid deliveries keep flowing. Per node.
    pub listener: Option<ListenerFile>,
    /// The admin listener (events, executions, replay, metrics).
    pub admin: Option<AdminFile>,
    /// Where events are stored: `sqlite://PATH` (default `sqlite://hookwise.db`) or
    /// `postgres://user@host/db`. May use `${env:NAME}` / `${file:PATH}`. A password in the URL
    /// is a secret: at least 8 bytes, never shown.
    pub store: Option<String>,
    /// Rule files: a directory, a file, or a list of them. Default `rules/` when present.
    pub rules: Option<OneOrMany>,
    /// Secrets that rules may reference as `${secret:NAME}`. Each value must be
    /// `${env:NAME}` or `${file:PATH}`: secrets are never written in this file. Each is at least
    /// 8 bytes; wherever a value would be stored, logged or shown, `${secret:NAME}` is.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Webhook senders. Each is served at `POST /hooks/{id}`.
    #[serde(default)]
    pub sources: Vec<SourceFile>,
    /// Plugins that rules may name. Built-in plugins need no path.
    #[serde(default)]
    pub plugins: Vec<PluginFile>,
    /// Outbound HTTP settings of every plugin (a plugin's own `http` adds to them).
    pub plugin_http: Option<PluginHttpFile>,
    /// How stored events are matched and their actions run.
    pub dispatch: Option<DispatchFile>,
    /// How long history is kept. Older events (with their executions, attempts and dead
    /// letters) and delivery attempts are pruned in the background. Default 30 days each.
    pub retention: Option<RetentionFile>,
    /// hookwise's own events (source `hookwise`): when an execution keeps failing or becomes a
    /// dead letter, a rules reload is refused, a source's refused requests spike, or the store
    /// comes back after being unavailable. Rules route them like any event.
    pub own_events: Option<OwnEventsFile>,
    /// Databases that plugins may be granted (`allow.db`): `sqlite://`, `postgres://` or
    /// `mysql://` URLs. May use `${env:NAME}` / `${file:PATH}`. A password in a URL is a
    /// secret: at least 8 bytes, never shown.
    #[serde(default)]
    pub connections: BTreeMap<String, String>,
}

/// How long the ingress listener waits for a slow client before giving up on it.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// The TLS handshake. Default `10s`.
    pub tls_handshake: Option<HumanDuration>,
    /// The request line and headers, from the first byte. Default `10s`.
    pub header_read: Option<HumanDuration>,
    /// The whole body, once the headers are read: a request still sending after this gets 408
    /// and is recorded. Default `30s`.
    pub body_read: Option<HumanDuration>,
}

/// Caps on the ingress listener, per node.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// Open connections at once. A connection accepted beyond it is closed at once (and
    /// counted in `hookwise_connections_refused_total`). Default 4096.
    pub max_connections: Option<u32>,
    /// Requests handled at once, from their headers to their answer (body reading included).
    /// A request beyond it is answered `503` `overloaded` with `Retry-After: 1` before its body
    /// is read. Default 4096.
    pub max_in_flight: Option<u32>,
    /// Requests of one client address (an IPv6 address by its /64) handled at once, so that
    /// one sender holding requests open cannot take the whole of `max_in_flight`. A request
    /// beyond it is answered `429` `too_many_in_progress` before its body is read. Default 256.
    pub max_in_flight_per_client: Option<u32>,
    /// Concurrent streams (requests) per HTTP/2 connection; a client opens more only as
    /// others finish. Default 64.
    pub http2_max_streams: Option<u32>,
    /// Interval of HTTP/2 keep-alive pings, and how long the answer to one may take before
    /// the connection is closed. Default `20s`.
    pub http2_keep_alive: Option<HumanDuration>,
    /// Largest request line and headers (HTTP/1) or header list (HTTP/2). Default `64KiB`,
    /// at least `8KiB`.
    pub max_header_bytes: Option<ByteSize>,
    /// Bytes of request bodies held at once, by all requests whose body is arriving or being
    /// handled. A request whose next piece would go beyond it is answered `503` `overloaded`
    /// with `Retry-After: 1`. Default `256MiB`, at least `1MiB`.
    pub max_body_bytes_in_flight: Option<ByteSize>,
    /// How long a connection with no request in progress stays open (HTTP/1 keep-alive and
    /// HTTP/2 alike). Default `60s`.
    pub idle_timeout: Option<HumanDuration>,
    /// Refused requests (bad signature, unknown source, address not allowed, too large, ...)
    /// per client address (IPv6 by /64) and second. Accepted requests are never counted, so
    /// an honest sender is never slowed; a client past it gets `429` `refused_too_often` with
    /// `Retry-After` before its body is read. Default 100 a second, burst 200;
    /// `per_second: 0` turns it off.
    pub refusals_per_client: Option<RateLimitFile>,
}

/// The workers that run actions.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchFile {
    /// Actions that may run at once on this node. Default 16.
    pub workers: Option<u32>,
    /// How long a worker holds a claimed action before another node (or a restart) may take it
    /// over; renewed while the action runs. Default `30s`.
    pub lease: Option<HumanDuration>,
    /// Planned executions not yet claimed by a worker on this node above which an arriving
    /// event that matches rules waits before it is stored, so that a burst does not outrun the
    /// workers (0: never wait). Default 16 per worker (256 with 16 workers).
    pub backlog_limit: Option<u32>,
    /// The longest an arriving event waits for the backlog to shrink; it is then stored
    /// anyway. Default `100ms`, at most `2s`.
    pub backlog_wait: Option<HumanDuration>,
}

/// When hookwise emits its own events (source `hookwise`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnEventsFile {
    /// Failed attempts in a row after which an execution that is still retrying is announced
    /// (`execution.failing`, once per execution). Default 3; 0 never.
    pub failing_after: Option<u32>,
    /// When a source's refused requests (bad signature, address not allowed, too large, ...)
    /// are announced (`source.refusals_spike`).
    pub refusals_spike: Option<RefusalsSpikeFile>,
}

/// A spike of refused requests: more than `threshold` of one source within one `window`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefusalsSpikeFile {
    /// Refused requests of one source within one window beyond which the spike is announced,
    /// at most once per window and source. Default 100; 0 never.
    pub threshold: Option<u32>,
    /// The window: windows start at whole multiples of it since the Unix epoch (so that every
    /// node counts the same windows). Default `5m`, at least `10s`, at most `1d`.
    pub window: Option<HumanDuration>,
}

/// How long stored history is kept.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// Age after which an event is deleted with its executions, execution attempts and dead
    /// letters (events still waiting to be matched or with actions still pending or running
    /// are kept). Default `30d`; `0s` keeps events forever.
    pub events: Option<HumanDuration>,
    /// Age after which a delivery attempt (one HTTP request to an ingress route, accepted or
    /// not) is deleted. Default `30d`; `0s` keeps them forever.
    pub delivery_attempts: Option<HumanDuration>,
    /// Refused requests (bad signature, unknown source, ...) recorded one by one per source
    /// and second. The rest of that second are counted into one summary record, so a flood
    /// of bad requests cannot fill the disk or crowd out verified events. Default 50.
    pub rejected_per_second: Option<u32>,
}

/// One path or several.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// PEM files for a listener (the ingress, or the admin listener).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Certificate chain (PEM), leaf first.
    pub cert: String,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// The admin listener.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Address, `host:port`. Default `127.0.0.1:9091`. An address other hosts can reach
    /// (anything but 127.0.0.0/8 and ::1) needs `tls`, or `insecure_http: true`.
    pub listen: Option<String>,
    /// Bearer token for the admin API, as `${env:NAME}` or `${file:PATH}`; at least 32
    /// characters (`openssl rand -hex 32` makes a good one). Without it, hookwise makes one on
    /// first run.
    pub token: Option<String>,
    /// Certificate and key for the admin listener, in the same form as the ingress's `tls`:
    /// the admin API and `/metrics` are then served over HTTPS only.
    pub tls: Option<TlsFile>,
    /// Serve the admin listener as plain HTTP on an address other hosts can reach. Only for a
    /// listener behind a proxy that terminates TLS: without TLS the token and every payload
    /// cross the network readable.
    pub insecure_http: Option<bool>,
}

/// One webhook sender.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// The source's id: letters, digits, `-` and `_`. Requests go to `POST /hooks/{id}`.
    pub id: String,
    /// How requests are signed: a provider id (github, stripe, standard-webhooks, ...),
    /// `hmac` (generic, see `hmac`) or `none`.
    #[schemars(schema_with = "provider_schema")]
    pub provider: String,
    /// Signing secrets, as `${env:NAME}` or `${file:PATH}`, each at least 8 bytes. Several are
    /// tried in turn, so a secret can be rotated without downtime.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Public keys for providers that sign with one (Discord, SendGrid, Standard Webhooks v1a),
    /// in the form the provider's dashboard shows.
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// Largest accepted age (and future skew) of a signed timestamp. Default: the provider's.
    /// `0s` turns the check off.
    pub tolerance: Option<HumanDuration>,
    /// JSON Schemas this source's payloads must match; a payload that does not is answered 422
    /// and stored as quarantined. `provider`: the schemas hookwise ships for this provider,
    /// chosen by event type (event types without one are not validated). A file path
    /// (relative to this file): one schema for every event. A map from event type (exact, or a
    /// glob such as `pull_request.*`) to a file: a schema per event type.
    pub schema: Option<SchemaFile>,
    /// Only these client addresses (CIDRs such as `192.30.252.0/22`) may post. Default: any.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// Requests per second from this source, beyond which it gets 429 with `Retry-After`.
    pub rate_limit: Option<RateLimitFile>,
    /// Largest accepted body. Default `1MiB`.
    pub max_body: Option<ByteSize>,
    /// The public URL the provider posts to, for providers that sign the URL (Twilio, Square,
    /// HubSpot). Default: rebuilt from the request.
    pub url: Option<String>,
    /// Settings of the generic `hmac` provider.
    pub hmac: Option<crate::verify::HmacScheme>,
}

/// A source's `schema:`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SchemaFile {
    /// `provider` (the schemas hookwise ships for the source's provider), or a JSON Schema file
    /// for every event (relative to this file; write `./provider` for a file of that name).
    One(String),
    /// Event type (exact, or a glob where `*` matches any run of characters and `?` one) ->
    /// JSON Schema file (relative to this file). An exact type wins over globs, and the glob
    /// with the most literal characters over other globs. Unmatched events are not validated.
    ByEvent(BTreeMap<String, String>),
}

fn provider_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let ids: Vec<&str> = crate::verify::Provider::ALL
        .iter()
        .map(|p| p.id())
        .collect();
    schemars::json_schema!({ "type": "string", "enum": ids })
}

/// A rate limit.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed in a burst above the sustained rate. Default: `per_second`.
    pub burst: Option<u32>,
}

/// One plugin.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginFile {
    /// The name rules use (`plugin: NAME`).
    pub name: String,
    /// The WebAssembly component (relative to this file). Built-in plugins need none.
    pub path: Option<String>,
    /// Resource limits per call.
    pub limits: Option<LimitsFile>,
    /// Capabilities granted to the plugin. Nothing is granted by default.
    pub allow: Option<AllowFile>,
    /// Outbound HTTP settings of this plugin, added to the top-level `plugin_http`.
    pub http: Option<PluginHttpFile>,
}

/// How plugins' outbound HTTPS connects.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginHttpFile {
    /// Certificate authorities that plugins' HTTPS requests trust besides the public web PKI
    /// (the Mozilla root store built into hookwise): PEM files (relative to this file), each
    /// holding one `BEGIN CERTIFICATE` block or more, for services whose certificates a private
    /// CA issued. Each file is read and checked at start-up. Trusting a CA grants no host:
    /// `allow.http` still decides where a plugin may send requests.
    #[serde(default)]
    pub ca_certs: Vec<String>,
}

/// Resource limits of one plugin call.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Largest linear memory. Default `64MiB`.
    pub memory: Option<ByteSize>,
    /// Wall-clock time per call. Default `10s`.
    pub timeout: Option<HumanDuration>,
    /// Fuel (roughly, WebAssembly instructions) per call. Default: unmetered.
    pub fuel: Option<u64>,
    /// Calls of this plugin that may run at once on one hookwise node. Default: only the
    /// worker pool (`dispatch.workers`) limits them.
    pub concurrency: Option<u32>,
}

/// Capabilities of one plugin.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowFile {
    /// Where the plugin may send HTTP requests, each `[METHOD[,METHOD...] ][SCHEME://]HOST[:PORT]`.
    /// Without a scheme and port an entry means HTTPS on port 443 only: `api.example.com`,
    /// `*.example.com` (subdomains); `http://host` is plain HTTP on 80, `host:8443` HTTPS on
    /// 8443, `POST host` only that method. Private and loopback addresses need their address
    /// and port written: `http://127.0.0.1:8080`.
    #[serde(default)]
    pub http: Vec<String>,
    /// Names of `connections` the plugin may use.
    #[serde(default)]
    pub db: Vec<String>,
}
