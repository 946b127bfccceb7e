//! Running hookwise: open the store, bind the listeners, serve until told to stop, then stop
//! accepting, finish open requests and flush pending commits. The composition root: it builds
//! the shared state and both listeners' states, and nothing below imports it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::admin::AdminToken;
use crate::config::{Config, ListenerSettings, TlsMode};
use crate::dispatch::Dispatcher;
use crate::ingress::IngressState;
use crate::metrics::Metrics;
use crate::plugin_host::Registry;
use crate::rules::{LiveRules, RuleSet};
use crate::state::AppState;
use crate::store::{GroupCommitSettings, Store, StoreError};
use crate::tls::PlainOnTls;

/// How long open connections get to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors that stop `serve` from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Ingress(#[from] crate::ingress::IngressSetupError),
    #[error("{} problem{} in the rules:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, join_lines(.0))]
    Rules(Vec<crate::yamldoc::Diagnostic>),
    #[error("{} problem{} with plugins:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, join_lines(.0))]
    Plugins(Vec<String>),
    #[error("admin token: {0}")]
    AdminToken(#[from] crate::admin::TokenError),
}

fn join_lines<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| format!("  {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rules to start with. Problems stop a configured server from starting; the embedded
/// default (no config file, so no sources for rules to name) starts without rules instead,
/// with a warning, so that `hookwise serve` works in any folder.
pub fn initial_rules(config: &Config) -> Result<RuleSet, ServeError> {
    match crate::rules::load_for(config) {
        Ok(rules) => Ok(rules),
        Err(problems) if config.file.is_none() => {
            tracing::warn!(
                problems = problems.len(),
                "rules not loaded: the embedded default configures no sources; write a \
                 hookwise.yaml and run `hookwise check`"
            );
            for p in &problems {
                tracing::debug!(problem = %p, "rule problem");
            }
            Ok(RuleSet::empty())
        }
        Err(problems) => Err(ServeError::Rules(problems)),
    }
}

/// The bound listeners, so tests can bind port 0 and learn the addresses.
pub struct Listeners {
    pub ingress: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, ServeError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        };
        Ok(Listeners {
            ingress: bind(config.listen).await?,
            admin: bind(config.admin.listen).await?,
        })
    }
}

/// Opens the store named by `config`.
pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    Store::open(
        config.store_url.expose(),
        &config.base_dir,
        GroupCommitSettings::default(),
    )
    .await
}

/// Serves until `shutdown` completes, then shuts down gracefully.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let tls = Acceptors {
        ingress: tls_acceptor(&config)?,
        admin: crate::admin::transport::acceptor(&config.admin)?,
    };
    let mut config = config;
    // The address the ingress really listens on (port 0 picks one), for the pages that show
    // the URL to give providers.
    if let Ok(addr) = listeners.ingress.local_addr() {
        config.listen = addr;
    }
    let states = States::build(config).await?;
    let running = Running::start(states, listeners, tls);
    shutdown.await;
    running.stop().await;
    Ok(())
}

/// What the listeners and the dispatcher are built from.
struct States {
    app: AppState,
    ingress: IngressState,
    admin: crate::admin::AdminState,
    rules: LiveRules,
    plugins: Registry,
}

impl States {
    /// Resolves the admin token, loads rules and plugins, opens the store.
    async fn build(config: Config) -> Result<States, ServeError> {
        // First, so that every later log line is scrubbed of the token too.
        let admin_token = crate::admin::token::resolve_value(&config)?;
        let scrubber = Arc::new(config.scrubber(Some(admin_token.expose())));
        crate::scrub::logs::install(scrubber.clone());
        let rules = initial_rules(&config)?;
        let plugins = Registry::from_config(&config)
            .await
            .map_err(ServeError::Plugins)?;
        let store = open_store(&config).await?;
        tracing::info!(rules = rules.len(), "rules loaded");
        let rules = LiveRules::new(rules);
        let app = AppState::new(Arc::new(config), store, Some(rules.clone()), scrubber);
        let ingress = match IngressState::new(app.clone()) {
            Ok(ingress) => ingress,
            Err(e) => {
                app.store.close().await;
                return Err(e.into());
            }
        };
        let admin = crate::admin::AdminState::new(
            app.clone(),
            rules.clone(),
            plugins.clone(),
            AdminToken::new(admin_token.expose()),
        );
        Ok(States {
            app,
            ingress,
            admin,
            rules,
            plugins,
        })
    }
}

/// A started server: its tasks, and how to stop them.
struct Running {
    app: AppState,
    ingress_state: IngressState,
    dispatcher: Dispatcher,
    stop: watch::Sender<bool>,
    ingress: JoinHandle<()>,
    admin: JoinHandle<()>,
    pruner: JoinHandle<()>,
    summaries: JoinHandle<()>,
    reloader: JoinHandle<()>,
    /// Stores hookwise's own events; stopped after the dispatcher, which reports to it.
    announcer: JoinHandle<()>,
    stop_announcer: watch::Sender<bool>,
}

impl Running {
    /// Starts the dispatcher, both listeners and the background tasks.
    fn start(states: States, listeners: Listeners, tls: Acceptors) -> Running {
        let States {
            app,
            ingress: ingress_state,
            admin: admin_state,
            rules,
            plugins,
        } = states;
        let dispatcher = Dispatcher::start(crate::dispatch::Setup {
            store: app.store.clone(),
            rules: rules.clone(),
            plugins,
            config: app.config.clone(),
            wake: app.wake.clone(),
            metrics: app.metrics.clone(),
            scrubber: app.scrubber.clone(),
            own_events: app.own_events.clone(),
        });
        log_listening(&listeners, &tls, app.store.kind());
        let (stop, stop_rx) = watch::channel(false);
        let ingress = Site {
            app: crate::ingress::app(ingress_state.clone()),
            hooks: Some(ingress_state.clone()),
            tls: tls.ingress,
            timeouts: Timeouts::from(&app.config.ingress),
            limits: Limits::ingress(&app.config.listener),
            metrics: app.metrics.clone(),
        };
        let admin = Site {
            app: crate::admin::transport::https_only(
                crate::admin::app(admin_state.clone()).merge(crate::dashboard::router(admin_state)),
            ),
            hooks: None,
            tls: tls.admin,
            timeouts: Timeouts::default(),
            limits: Limits::admin(),
            metrics: app.metrics.clone(),
        };
        let retention = app.config.retention;
        let (stop_announcer, announcer_stop) = watch::channel(false);
        Running {
            announcer: tokio::spawn(crate::announcer::run(app.clone(), announcer_stop)),
            stop_announcer,
            ingress: tokio::spawn(serve(listeners.ingress, ingress, stop_rx.clone())),
            admin: tokio::spawn(serve(listeners.admin, admin, stop_rx.clone())),
            pruner: tokio::spawn(crate::retention::run(
                app.store.clone(),
                retention,
                stop_rx.clone(),
            )),
            summaries: tokio::spawn(summarise_rejections(ingress_state.clone(), stop_rx.clone())),
            reloader: tokio::spawn(rules.watch(app.config.clone(), stop_rx)),
            app,
            ingress_state,
            dispatcher,
            stop,
        }
    }

    /// Stops accepting, finishes open requests, records the refusals counted so far, stops
    /// the dispatcher and flushes the store.
    async fn stop(self) {
        tracing::info!("shutting down: no new connections; finishing open requests");
        self.app.begin_shutdown();
        let _ = self.stop.send(true);
        let _ = self.ingress.await;
        let _ = self.summaries.await;
        flush_rejections(&self.ingress_state).await;
        let _ = self.admin.await;
        let _ = self.reloader.await;
        let _ = self.pruner.await;
        self.dispatcher.shutdown().await;
        let _ = self.stop_announcer.send(true);
        let _ = self.announcer.await;
        self.app.store.close().await;
        tracing::info!("stopped; every acknowledged event is committed");
    }
}

/// The TLS acceptors of the two listeners; None speaks plain HTTP.
struct Acceptors {
    ingress: Option<TlsAcceptor>,
    admin: Option<TlsAcceptor>,
}

/// The TLS acceptor the config asks for, if any.
fn tls_acceptor(config: &Config) -> Result<Option<TlsAcceptor>, ServeError> {
    Ok(match &config.tls {
        TlsMode::Files { cert, key } => Some(crate::tls::acceptor_from_files(cert, key)?),
        TlsMode::SelfSigned { dir } => {
            let (acceptor, cert) = crate::tls::self_signed(dir)?;
            tracing::info!(cert = %cert.display(), "ingress uses a self-signed certificate");
            Some(acceptor)
        }
        TlsMode::Plain => None,
    })
}

fn log_listening(listeners: &Listeners, tls: &Acceptors, store: &str) {
    let scheme = |tls: &Option<TlsAcceptor>| if tls.is_some() { "https" } else { "http" };
    if let Ok(addr) = listeners.ingress.local_addr() {
        let scheme = scheme(&tls.ingress);
        tracing::info!(%addr, %scheme, store, "ingress listening");
    }
    if let Ok(addr) = listeners.admin.local_addr() {
        let scheme = scheme(&tls.admin);
        tracing::info!(%addr, %scheme, "admin listening");
    }
}

/// Records, every second, the summaries of refused requests counted in the seconds that
/// ended, until `stop`. (At shutdown, once the ingress stopped, [`flush_rejections`] records
/// the rest.)
async fn summarise_rejections(state: IngressState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for summary in state.rejections.ended(Some(crate::model::Millis::now())) {
            crate::ingress::hooks::queue_summary(&state.app, summary).await;
        }
    }
}

/// Records the summaries of every refused request counted so far.
async fn flush_rejections(state: &IngressState) {
    for summary in state.rejections.ended(None) {
        crate::ingress::hooks::queue_summary(&state.app, summary).await;
    }
}

/// How long a connection may take over each step before it is dropped.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub tls_handshake: Duration,
    pub header_read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::from(&crate::config::IngressSettings::default())
    }
}

impl From<&crate::config::IngressSettings> for Timeouts {
    fn from(s: &crate::config::IngressSettings) -> Self {
        Timeouts {
            tls_handshake: s.tls_handshake_timeout,
            header_read: s.header_read_timeout,
        }
    }
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Open connections the admin listener serves at once: operators, scripts and a metrics
/// scraper need a handful.
const ADMIN_MAX_CONNECTIONS: u32 = 64;

/// How often a listener at its connection cap says so in the log.
const REFUSALS_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// hyper's smallest HTTP/1 read buffer: it panics on less (the config refuses less too).
const MIN_HTTP1_BUFFER: usize = 8 << 10;

/// The caps of one listener (`listener:` in the config, for the ingress).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: u32,
    /// Requests handled at once; None: no cap (the admin listener, whose clients hold the
    /// token).
    pub max_in_flight: Option<u32>,
    pub http2_max_streams: u32,
    pub http2_keep_alive: Duration,
    pub max_header_bytes: u32,
    pub idle_timeout: Duration,
}

impl Limits {
    /// The ingress listener's caps.
    pub fn ingress(s: &ListenerSettings) -> Limits {
        Limits {
            max_connections: s.max_connections,
            max_in_flight: Some(s.max_in_flight),
            http2_max_streams: s.http2_max_streams,
            http2_keep_alive: s.http2_keep_alive,
            max_header_bytes: s.max_header_bytes,
            idle_timeout: s.idle_timeout,
        }
    }

    /// The admin listener's caps: few connections, the ingress defaults otherwise.
    pub fn admin() -> Limits {
        Limits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            max_in_flight: None,
            ..Limits::ingress(&ListenerSettings::default())
        }
    }
}

/// What one listener serves, and how.
pub struct Site {
    /// The routes.
    pub app: Router,
    /// With it, `POST /hooks/{source}` goes straight to [`crate::ingress::hooks::receive`]
    /// rather than through `app`'s router: the route every provider calls skips route
    /// matching, path-parameter extraction and the request extensions that carry the peer
    /// address.
    pub hooks: Option<IngressState>,
    pub tls: Option<TlsAcceptor>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// Where refused connections and overloaded requests are counted.
    pub metrics: Arc<Metrics>,
}

type HttpBuilder = auto::Builder<TokioExecutor>;

/// What every connection of one listener shares.
struct Shared {
    site: Site,
    builder: HttpBuilder,
    /// Permits for requests handled at once (`max_in_flight`).
    in_flight: Option<Semaphore>,
}

/// The HTTP/1 and HTTP/2 settings of a listener.
fn http_builder(timeouts: &Timeouts, limits: &Limits) -> HttpBuilder {
    let header_bytes = usize::try_from(limits.max_header_bytes).unwrap_or(usize::MAX);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .header_read_timeout(timeouts.header_read)
        .max_buf_size(header_bytes.max(MIN_HTTP1_BUFFER))
        .timer(TokioTimer::new());
    builder
        .http2()
        .max_concurrent_streams(limits.http2_max_streams)
        .keep_alive_interval(limits.http2_keep_alive)
        .keep_alive_timeout(limits.http2_keep_alive)
        .max_header_list_size(limits.max_header_bytes)
        .timer(TokioTimer::new());
    builder
}

/// Accepts connections on `listener` until `stop` turns true, then waits (bounded) for open
/// connections to finish.
///
/// A connection accepted beyond `max_connections` is closed at once rather than left in the
/// kernel's queue: its sender learns at once and may retry, the queue keeps moving for the
/// connections that will be served, and the refusal can be counted and logged.
pub async fn serve(listener: TcpListener, site: Site, mut stop: watch::Receiver<bool>) {
    let max_connections = site.limits.max_connections;
    // Every open connection holds one slot: all slots back means every connection ended.
    let slots = Arc::new(Semaphore::new(to_usize(max_connections)));
    let shared = Arc::new(Shared {
        builder: http_builder(&site.timeouts, &site.limits),
        in_flight: site
            .limits
            .max_in_flight
            .map(|n| Semaphore::new(to_usize(n))),
        site,
    });
    let mut refusals = RefusalsLog::default();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            shared.site.metrics.connection_refused();
            refusals.refused(remote, max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            shared: shared.clone(),
            stop: stop.clone(),
            remote,
            _slot: slot,
        };
        tokio::spawn(connection.serve(stream));
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(max_connections))
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time and were closed");
    }
}

fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Says, at most once a second, that connections are being refused, and how many.
#[derive(Default)]
struct RefusalsLog {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

impl RefusalsLog {
    fn refused(&mut self, remote: SocketAddr, max_connections: u32) {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < REFUSALS_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            %remote,
            refused = self.unlogged,
            max_connections,
            "connection cap reached: closing new connections at once"
        );
        self.last = Some(now);
        self.unlogged = 0;
    }
}

/// One accepted connection, and what serving it needs.
struct Connection {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    remote: SocketAddr,
    /// Its place under `max_connections`, given back when the connection ends.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    /// Serves HTTP on the connection: after the TLS handshake when the site speaks TLS, and
    /// as plain HTTP answered with a reason when a client sends plain HTTP to it.
    async fn serve(self, stream: tokio::net::TcpStream) {
        let remote = self.remote;
        let result = match self.shared.site.tls.clone() {
            None => self.http(stream, false).await,
            Some(acceptor) => {
                let timeout = self.shared.site.timeouts.tls_handshake;
                // Peek at the first byte: plain HTTP gets an answer that says why it is
                // refused, instead of a failed handshake the sender cannot read.
                let mut first = [0u8; 1];
                match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
                    Ok(Ok(1)) if first[0] != TLS_HANDSHAKE_RECORD => self.http(stream, true).await,
                    Ok(Ok(1)) => match tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => self.http(tls_stream, false).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    },
                    Ok(_) => return,
                    Err(_) => {
                        tracing::debug!(%remote, "client sent nothing in time");
                        return;
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
        }
    }

    /// Serves HTTP/1 or HTTP/2 on `io` until the client closes it, it stays idle for
    /// `idle_timeout`, or shutdown drains it.
    async fn http<I>(
        self,
        io: I,
        plain_on_tls: bool,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            shared,
            mut stop,
            remote,
            _slot,
        } = self;
        let activity = Activity::default();
        let on_request = activity.clone();
        let service_shared = shared.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |req: axum::http::Request<hyper::body::Incoming>| {
                let shared = service_shared.clone();
                let busy = on_request.begin();
                async move {
                    let answer = shared.answer(remote, plain_on_tls, req).await;
                    drop(busy);
                    answer
                }
            },
        ));
        let conn = shared
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => return result,
            _ = stopping(&mut stop) => {}
            _ = activity.idle_for(shared.site.limits.idle_timeout) => {
                tracing::debug!(%remote, "idle connection closed");
            }
        }
        // Finishes the requests in progress (HTTP/2: the streams already open), then closes.
        conn.as_mut().graceful_shutdown();
        match tokio::time::timeout(DRAIN_TIMEOUT, conn).await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }
}

/// Completes once `stop` is true.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The requests in progress on one connection, for its idle timer. (hyper has no idle timeout
/// for HTTP/2, and for HTTP/1 only a header timeout.)
#[derive(Clone, Default)]
struct Activity(Arc<watch::Sender<usize>>);

/// One request in progress; it ends when this is dropped.
struct Busy(Arc<watch::Sender<usize>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Activity {
    /// A request started.
    fn begin(&self) -> Busy {
        self.0.send_modify(|n| *n += 1);
        Busy(self.0.clone())
    }

    /// Completes once no request has been in progress for `limit`.
    async fn idle_for(&self, limit: Duration) {
        let mut in_progress = self.0.subscribe();
        loop {
            let busy = *in_progress.borrow_and_update() > 0;
            let changed = if busy {
                in_progress.changed().await
            } else {
                match tokio::time::timeout(limit, in_progress.changed()).await {
                    Ok(changed) => changed,
                    Err(_) => return,
                }
            };
            if changed.is_err() {
                // The sender lives in `self`: unreachable, but never a busy loop.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Shared {
    /// One request, within `max_in_flight`: beyond it, `503 overloaded` before anything is
    /// read.
    async fn answer(
        &self,
        remote: SocketAddr,
        plain_on_tls: bool,
        req: axum::http::Request<hyper::body::Incoming>,
    ) -> Result<axum::response::Response, std::convert::Infallible> {
        let _permit = match &self.in_flight {
            None => None,
            Some(permits) => match permits.try_acquire() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.site.metrics.overloaded();
                    return Ok(overloaded());
                }
            },
        };
        route(&self.site, remote, plain_on_tls, req).await
    }
}

/// The answer to a request beyond `max_in_flight`.
fn overloaded() -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({
        "code": "overloaded",
        "detail": "too many requests in progress; retry shortly",
    });
    let mut response = (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(body),
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

/// One request: `POST /hooks/{source}` straight to the hooks handler on the ingress, the rest
/// through the site's router with the peer address (and plain-on-TLS mark) attached.
async fn route(
    site: &Site,
    remote: SocketAddr,
    plain_on_tls: bool,
    mut req: axum::http::Request<hyper::body::Incoming>,
) -> Result<axum::response::Response, std::convert::Infallible> {
    let hook = site
        .hooks
        .as_ref()
        .filter(|_| req.method() == axum::http::Method::POST)
        .zip(crate::ingress::hooks::source_of(req.uri().path()));
    if let Some((state, source)) = hook {
        let source = source.to_owned();
        let peer = crate::ingress::hooks::Peer {
            remote,
            plain_on_tls,
        };
        let req = req.map(axum::body::Body::new);
        return Ok(crate::ingress::hooks::receive(state, &source, peer, req).await);
    }
    req.extensions_mut().insert(ConnectInfo(remote));
    if plain_on_tls {
        req.extensions_mut().insert(PlainOnTls);
    }
    tower::ServiceExt::oneshot(site.app.clone(), req).await
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
