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
use tokio_rustls::TlsAcceptor;

use crate::admin::AdminToken;
use crate::config::{Config, TlsMode};
use crate::dispatch::Dispatcher;
use crate::ingress::{IngressState, PlainOnTls};
use crate::plugin_host::Registry;
use crate::rules::{LiveRules, RuleSet};
use crate::state::AppState;
use crate::store::{GroupCommitSettings, Store, StoreError};

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
    Tls(#[from] crate::ingress::tls::TlsError),
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
    let tls = match &config.tls {
        TlsMode::Files { cert, key } => Some(crate::ingress::tls::acceptor_from_files(cert, key)?),
        TlsMode::SelfSigned { dir } => {
            let (acceptor, cert) = crate::ingress::tls::self_signed(dir)?;
            tracing::info!(cert = %cert.display(), "ingress uses a self-signed certificate");
            Some(acceptor)
        }
        TlsMode::Plain => None,
    };
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
    let state = AppState::new(
        Arc::new(config),
        store.clone(),
        Some(rules.clone()),
        scrubber.clone(),
    );
    let ingress_state = match IngressState::new(state.clone()) {
        Ok(ingress_state) => ingress_state,
        Err(e) => {
            store.close().await;
            return Err(e.into());
        }
    };
    let admin_state = crate::admin::AdminState::new(
        state.clone(),
        rules.clone(),
        plugins.clone(),
        AdminToken::new(admin_token.expose()),
    );
    let dispatcher = Dispatcher::start(
        store.clone(),
        rules.clone(),
        plugins,
        state.config.clone(),
        state.wake.clone(),
        state.metrics.clone(),
        scrubber,
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Ok(addr) = listeners.ingress.local_addr() {
        tracing::info!(%addr, %scheme, store = store.kind(), "ingress listening");
    }
    if let Ok(addr) = listeners.admin.local_addr() {
        tracing::info!(%addr, "admin listening");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let ingress = tokio::spawn(serve(
        listeners.ingress,
        crate::ingress::app(ingress_state.clone()),
        Some(ingress_state.clone()),
        tls,
        Timeouts::from(&state.config.ingress),
        stop_rx.clone(),
    ));
    let admin = tokio::spawn(serve(
        listeners.admin,
        crate::admin::app(admin_state),
        None,
        None,
        Timeouts::default(),
        stop_rx.clone(),
    ));
    let pruner = tokio::spawn(crate::retention::run(
        store.clone(),
        state.config.retention,
        stop_rx.clone(),
    ));
    let summaries = tokio::spawn(summarise_rejections(ingress_state.clone(), stop_rx.clone()));
    let reloader = tokio::spawn(rules.watch(state.config.clone(), stop_rx));

    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing open requests");
    state.begin_shutdown();
    let _ = stop_tx.send(true);
    let _ = ingress.await;
    let _ = summaries.await;
    flush_rejections(&ingress_state).await;
    let _ = admin.await;
    let _ = reloader.await;
    let _ = pruner.await;
    dispatcher.shutdown().await;
    store.close().await;
    tracing::info!("stopped; every acknowledged event is committed");
    Ok(())
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

/// Accepts connections on `listener` until `stop` turns true, then waits (bounded) for open
/// connections to finish.
///
/// With `hooks`, `POST /hooks/{source}` goes straight to [`crate::ingress::hooks::receive`]
/// rather than through `app`'s router: the route every provider calls skips route matching,
/// path-parameter extraction and the request extensions that carry the peer address.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    hooks: Option<IngressState>,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .header_read_timeout(timeouts.header_read)
        .timer(hyper_util::rt::TokioTimer::new());
    let builder = Arc::new(builder);
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
        let app = app.clone();
        let hooks = hooks.clone();
        let tls = tls.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = |plain_on_tls: bool| {
                TowerToHyperService::new(tower::service_fn(
                    move |mut req: axum::http::Request<hyper::body::Incoming>| {
                        use futures::future::Either;
                        let hook = hooks
                            .as_ref()
                            .filter(|_| req.method() == axum::http::Method::POST)
                            .zip(crate::ingress::hooks::source_of(req.uri().path()));
                        match hook {
                            Some((state, source)) => {
                                let (state, source) = (state.clone(), source.to_owned());
                                let req = req.map(axum::body::Body::new);
                                Either::Left(async move {
                                    let peer = crate::ingress::hooks::Peer {
                                        remote,
                                        plain_on_tls,
                                    };
                                    Ok(crate::ingress::hooks::receive(&state, &source, peer, req)
                                        .await)
                                })
                            }
                            None => {
                                req.extensions_mut().insert(ConnectInfo(remote));
                                if plain_on_tls {
                                    req.extensions_mut().insert(PlainOnTls);
                                }
                                Either::Right(tower::ServiceExt::oneshot(app.clone(), req))
                            }
                        }
                    },
                ))
            };
            let result = match tls {
                Some(acceptor) => {
                    // Peek at the first byte: plain HTTP gets an answer that says why it is
                    // refused, instead of a failed handshake the sender cannot read.
                    let mut first = [0u8; 1];
                    let peeked =
                        tokio::time::timeout(timeouts.tls_handshake, stream.peek(&mut first)).await;
                    match peeked {
                        Ok(Ok(1)) if first[0] != TLS_HANDSHAKE_RECORD => {
                            let conn = builder.serve_connection_with_upgrades(
                                TokioIo::new(stream),
                                service(true),
                            );
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Ok(1)) => {
                            let handshake = tokio::time::timeout(
                                timeouts.tls_handshake,
                                acceptor.accept(stream),
                            );
                            match handshake.await {
                                Ok(Ok(tls_stream)) => {
                                    let conn = builder.serve_connection_with_upgrades(
                                        TokioIo::new(tls_stream),
                                        service(false),
                                    );
                                    watcher.watch(conn.into_owned()).await
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%remote, "TLS handshake timed out");
                                    return;
                                }
                            }
                        }
                        Ok(_) => return,
                        Err(_) => {
                            tracing::debug!(%remote, "client sent nothing in time");
                            return;
                        }
                    }
                }
                None => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service(false));
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time and were closed");
    }
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
