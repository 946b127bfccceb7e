//! Running hookwise: open the store, bind the listeners, serve until told to stop, then stop
//! accepting, finish open requests and flush pending commits. The composition root: it builds
//! the shared state and both listeners' states, and nothing below imports it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::admin::AdminToken;
use crate::config::{Config, TlsMode};
use crate::dispatch::Dispatcher;
use crate::ingress::IngressState;
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
        });
        log_listening(&listeners, &tls, app.store.kind());
        let (stop, stop_rx) = watch::channel(false);
        let ingress = Site {
            app: crate::ingress::app(ingress_state.clone()),
            hooks: Some(ingress_state.clone()),
            tls: tls.ingress,
            timeouts: Timeouts::from(&app.config.ingress),
        };
        let admin = Site {
            app: crate::admin::transport::https_only(
                crate::admin::app(admin_state.clone()).merge(crate::dashboard::router(admin_state)),
            ),
            hooks: None,
            tls: tls.admin,
            timeouts: Timeouts::default(),
        };
        let retention = app.config.retention;
        Running {
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
}

type HttpBuilder = auto::Builder<TokioExecutor>;

/// Accepts connections on `listener` until `stop` turns true, then waits (bounded) for open
/// connections to finish.
pub async fn serve(listener: TcpListener, site: Site, mut stop: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .header_read_timeout(site.timeouts.header_read)
        .timer(hyper_util::rt::TokioTimer::new());
    let builder = Arc::new(builder);
    let site = Arc::new(site);
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
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            site: site.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            remote,
        };
        tokio::spawn(connection.serve(stream));
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time and were closed");
    }
}

/// One accepted connection, and what serving it needs.
struct Connection {
    site: Arc<Site>,
    builder: Arc<HttpBuilder>,
    watcher: hyper_util::server::graceful::Watcher,
    remote: SocketAddr,
}

impl Connection {
    /// Serves HTTP on the connection: after the TLS handshake when the site speaks TLS, and
    /// as plain HTTP answered with a reason when a client sends plain HTTP to it.
    async fn serve(self, stream: tokio::net::TcpStream) {
        let remote = self.remote;
        let result = match self.site.tls.clone() {
            None => self.http(stream, false).await,
            Some(acceptor) => {
                let timeout = self.site.timeouts.tls_handshake;
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

    /// Serves HTTP/1 or HTTP/2 on `io` until the client closes it or shutdown drains it.
    async fn http<I>(
        self,
        io: I,
        plain_on_tls: bool,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (site, remote) = (self.site, self.remote);
        let service = TowerToHyperService::new(tower::service_fn(
            move |req: axum::http::Request<hyper::body::Incoming>| {
                route(site.clone(), remote, plain_on_tls, req)
            },
        ));
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        self.watcher.watch(conn.into_owned()).await
    }
}

/// One request: `POST /hooks/{source}` straight to the hooks handler on the ingress, the rest
/// through the site's router with the peer address (and plain-on-TLS mark) attached.
async fn route(
    site: Arc<Site>,
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
