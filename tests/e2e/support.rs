//! Helpers shared by the end-to-end tests: fresh databases of each backend and the macro that
//! runs a scenario on each, the built binary and example plugins, one [`Server`] harness (the
//! engine in process or `hookwise serve` as a child, every listener on port 0) and one capturing
//! [`Receiver`] for the calls actions make.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hookwise::store::{GroupCommitSettings, Store};
use serde_json::Value;
use sqlx::Connection;

/// The PostgreSQL server the tests use (trust auth); override with HOOKWISE_TEST_POSTGRES.
pub fn postgres_admin_url() -> String {
    std::env::var("HOOKWISE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A uniquely named PostgreSQL database, dropped by [`TempPostgres::drop_db`].
pub struct TempPostgres {
    pub name: String,
    pub url: String,
}

impl TempPostgres {
    pub async fn create() -> anyhow::Result<TempPostgres> {
        let admin = postgres_admin_url();
        let name = format!("hookwise_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin);
        Ok(TempPostgres {
            url: format!("{base}/{name}"),
            name,
        })
    }

    pub async fn drop_db(self) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }
}

/// The MySQL/MariaDB server the tests use (root, no password); override with HOOKWISE_TEST_MYSQL.
pub fn mysql_admin_url() -> String {
    std::env::var("HOOKWISE_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_string())
}

/// A uniquely named MySQL/MariaDB database, dropped by [`TempMysql::drop_db`].
pub struct TempMysql {
    pub name: String,
    pub url: String,
}

impl TempMysql {
    pub async fn create() -> anyhow::Result<TempMysql> {
        let admin = mysql_admin_url();
        let name = format!("hookwise_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::MySqlConnection::connect(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(TempMysql {
            url: format!("{}/{name}", admin.trim_end_matches('/')),
            name,
        })
    }

    pub async fn drop_db(self) -> anyhow::Result<()> {
        let mut conn = sqlx::MySqlConnection::connect(&mysql_admin_url()).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {}", self.name))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }
}

/// The `hookwise` binary cargo built for these tests.
pub fn hookwise_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hookwise"))
}

/// Polls `url` until it answers 200 or `limit` passes.
pub async fn wait_ready(client: &reqwest::Client, url: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Builds the example plugins in `plugins/examples` once per test run (cargo, for the WASI
/// targets, into the test target's tmp dir so later runs reuse the build); returns that dir.
fn plugin_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples");
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        for (triple, packages) in [
            (
                "wasm32-wasip2",
                vec!["noop", "hostile", "relay", "rust-example"],
            ),
            ("wasm32-wasip1", vec!["command-echo", "core-abi"]),
        ] {
            let mut cmd = Command::new(&cargo);
            cmd.current_dir(&examples)
                .env("CARGO_TARGET_DIR", &target)
                .args(["build", "--release", "--locked", "--target", triple]);
            for p in packages {
                cmd.args(["-p", p]);
            }
            let status = cmd.status().expect("cargo runs");
            assert!(
                status.success(),
                "building example plugins for {triple} failed"
            );
        }
        target
    })
}

/// Path of one built example plugin: `noop`, `hostile`, `relay`, `rust-example` (components) or
/// `command-echo`, `core-abi` (wasip1 core modules).
pub fn wasm(name: &str) -> PathBuf {
    // Libraries (components) get `_` in their file names, binaries keep `-`.
    let (triple, file) = if matches!(name, "command-echo" | "core-abi") {
        ("wasm32-wasip1", name.to_string())
    } else {
        ("wasm32-wasip2", name.replace('-', "_"))
    };
    plugin_dir()
        .join(triple)
        .join("release")
        .join(format!("{file}.wasm"))
}

// ---- databases of every backend ------------------------------------------------------------

/// The databases the store and the `db` capability are tested against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    /// The backend a test named `sqlite`, `postgres` or `mysql` runs on (see
    /// [`on_every_backend!`]).
    pub fn named(name: &str) -> Backend {
        match name {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            "mysql" => Backend::MySql,
            other => panic!("no backend named {other}"),
        }
    }
}

/// A fresh database of one backend: a SQLite file in a temp dir, or a uniquely named
/// PostgreSQL or MySQL/MariaDB database, dropped by [`TempDb::drop_db`].
pub enum TempDb {
    Sqlite(tempfile::TempDir, String),
    Postgres(TempPostgres),
    MySql(TempMysql),
}

impl TempDb {
    /// A fresh database; on SQLite the file `file` in a new temp dir.
    pub async fn create(backend: Backend, file: &str) -> TempDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join(file).display());
                TempDb::Sqlite(dir, url)
            }
            Backend::Postgres => TempDb::Postgres(
                TempPostgres::create()
                    .await
                    .expect("PostgreSQL on 127.0.0.1:5432"),
            ),
            Backend::MySql => TempDb::MySql(
                TempMysql::create()
                    .await
                    .expect("MariaDB/MySQL on 127.0.0.1:3306"),
            ),
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TempDb::Sqlite(_, url) => url,
            TempDb::Postgres(pg) => &pg.url,
            TempDb::MySql(my) => &my.url,
        }
    }

    pub async fn drop_db(self) {
        match self {
            TempDb::Sqlite(..) => {}
            TempDb::Postgres(pg) => pg.drop_db().await.expect("drop database"),
            TempDb::MySql(my) => my.drop_db().await.expect("drop database"),
        }
    }
}

/// One `#[tokio::test]` per backend for each scenario of the calling module:
/// `on_every_backend!(group [sqlite, postgres, mysql]: scenario_a, scenario_b)` makes
/// `group::scenario_a::sqlite` and so on, each calling `scenario_a(Backend::Sqlite)`. With
/// `in Fixture` (`on_every_backend!(group [sqlite, postgres] in Place: ...)`) each calls
/// `Fixture::run(backend, scenario)` instead, for scenarios that take a fixture.
macro_rules! on_every_backend {
    ($group:ident $backends:tt: $($scenario:ident),* $(,)?) => {
        mod $group {
            $( $crate::support::on_every_backend!(@tests $scenario $backends
                |backend| super::super::$scenario(backend)); )*
        }
    };
    ($group:ident $backends:tt in $fixture:ident: $($scenario:ident),* $(,)?) => {
        mod $group {
            $( $crate::support::on_every_backend!(@tests $scenario $backends
                |backend| super::super::$fixture::run(backend, super::super::$scenario)); )*
        }
    };
    (@tests $scenario:ident [$($backend:ident),+ $(,)?] |$b:ident| $call:expr) => {
        mod $scenario {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $backend() {
                    let $b = $crate::support::Backend::named(stringify!($backend));
                    $call.await;
                }
            )+
        }
    };
}
pub(crate) use on_every_backend;

// ---- a capturing receiver ------------------------------------------------------------------

/// One request as the [`Receiver`] got it.
#[derive(Debug, Clone)]
pub struct Request {
    /// When it arrived.
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; a body that is not JSON fails the test.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// What the [`Receiver`] answers.
#[derive(Debug, Clone)]
pub struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// `status` with a short body that says it was scripted.
    pub fn status(status: u16) -> Answer {
        Answer::new(status, "scripted")
    }

    pub fn json(status: u16, body: Value) -> Answer {
        Answer::new(status, &body.to_string()).header("content-type", "application/json")
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Answer {
        self.headers.push((name, value.to_string()));
        self
    }

    /// Answers only after `delay`.
    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct ReceiverState {
    /// Answers for the next requests, in order, to any path without its own answer.
    script: VecDeque<Answer>,
    /// Fixed answers by path.
    routes: HashMap<String, Answer>,
    seen: Vec<Request>,
    /// Extra time every request waits before it is answered.
    delay: Duration,
    in_flight: usize,
    max_in_flight: usize,
    /// Requests answered: not those whose caller hung up before the answer was ready.
    answered: usize,
    /// Answer 411 to a request without `Content-Length` or with `Transfer-Encoding`, as
    /// some receivers do.
    length_required: bool,
}

/// One request being answered, counted out of `in_flight` when dropped.
struct InFlight(Arc<Mutex<ReceiverState>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.in_flight -= 1;
        }
    }
}

/// A TCP relay on a port of its own to `upstream` (a database server), which a test can cut
/// (every connection through it dropped, new ones refused, as when a network or a server goes
/// away) and then restore on the same port.
pub struct Relay {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    running: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let relay = Relay {
            addr,
            upstream,
            running: Mutex::new(None),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream;
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the task drops them all.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        *self.running.lock().unwrap() = Some(task);
    }

    /// Drops every connection and stops listening: connecting is refused from now on.
    pub async fn cut(&self) {
        let task = self.running.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the relay's port again");
        self.serve(listener);
    }
}

/// A small HTTP server on loopback standing in for the services actions call (Slack, an API,
/// a webhook receiver): it records every request, any method and path, and answers what it is
/// told (the script, then 200 "ok").
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        async fn any(
            axum::extract::State(state): axum::extract::State<Arc<Mutex<ReceiverState>>>,
            method: http::Method,
            uri: http::Uri,
            headers: http::HeaderMap,
            body: axum::body::Bytes,
        ) -> axum::response::Response {
            use axum::response::IntoResponse;
            let unframed = !headers.contains_key(http::header::CONTENT_LENGTH)
                || headers.contains_key(http::header::TRANSFER_ENCODING);
            let (answer, delay) = {
                let mut s = state.lock().unwrap();
                s.in_flight += 1;
                s.max_in_flight = s.max_in_flight.max(s.in_flight);
                let answer = if s.length_required && unframed {
                    Answer::new(411, "Length Required")
                } else if let Some(fixed) = s.routes.get(uri.path()) {
                    fixed.clone()
                } else {
                    s.script
                        .pop_front()
                        .unwrap_or_else(|| Answer::new(200, "ok"))
                };
                s.seen.push(Request {
                    at: Instant::now(),
                    method: method.to_string(),
                    path: uri.path().to_string(),
                    query: uri.query().map(str::to_string),
                    headers,
                    body: body.to_vec(),
                });
                let delay = s.delay + answer.delay;
                (answer, delay)
            };
            // Counted out when the answer is ready or when the caller gives up (the handler
            // is dropped then).
            let in_flight = InFlight(state.clone());
            tokio::time::sleep(delay).await;
            state.lock().unwrap().answered += 1;
            drop(in_flight);
            let status = http::StatusCode::from_u16(answer.status).expect("scripted status");
            let mut response = (status, answer.body).into_response();
            for (name, value) in answer.headers {
                response.headers_mut().insert(
                    name,
                    http::HeaderValue::from_str(&value).expect("scripted header"),
                );
            }
            response
        }

        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = axum::Router::new().fallback(any).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, state }
    }

    /// A receiver that answers 411 Length Required to any request whose body is not framed
    /// by `Content-Length` (none given, or chunked).
    pub async fn length_required() -> Receiver {
        let receiver = Receiver::start().await;
        receiver.state.lock().unwrap().length_required = true;
        receiver
    }

    /// Answers for the next requests, in order.
    pub fn answer(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// The answer to every request for `path`.
    pub fn route(&self, path: &str, answer: Answer) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), answer);
    }

    /// Every request waits `delay` before it is answered.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn seen(&self) -> Vec<Request> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The only request received.
    pub fn one(&self) -> Request {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "{seen:#?}");
        seen[0].clone()
    }

    /// How many requests got their answer (a caller that hung up during a delay got none).
    pub fn answered(&self) -> usize {
        self.state.lock().unwrap().answered
    }

    /// The most requests that were being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The plugin grant for exactly this receiver (a grant without a scheme means HTTPS).
    pub fn grant(&self) -> String {
        format!("http://{}", self.addr)
    }
}

// ---- a hookwise server ---------------------------------------------------------------------

/// How to start a [`Server`]: its config and files, its environment, how to tell it is ready.
/// [`ServerSpec::start`] runs the library's `run` in this process; [`ServerSpec::spawn`] runs
/// `hookwise serve`. Either way every listener binds port 0 and the harness reads the bound
/// addresses back (from the listeners in process, from the `listening` log lines of a child).
pub struct ServerSpec {
    config: Option<String>,
    files: Vec<(String, String)>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    dir: Option<PathBuf>,
    ready: String,
}

/// Starts building a [`Server`] whose `hookwise.yaml` is `config`.
pub fn server(config: impl Into<String>) -> ServerSpec {
    ServerSpec {
        config: Some(config.into()),
        ..ServerSpec::without_config()
    }
}

impl ServerSpec {
    /// A server with no config file: the embedded default (only as a child).
    pub fn without_config() -> ServerSpec {
        ServerSpec {
            config: None,
            files: Vec::new(),
            env: Vec::new(),
            args: Vec::new(),
            dir: None,
            ready: "/readyz".to_string(),
        }
    }

    /// Another file beside the config (rules, schemas).
    pub fn file(mut self, name: &str, text: impl Into<String>) -> ServerSpec {
        self.files.push((name.to_string(), text.into()));
        self
    }

    /// An environment variable the config may name (`${env:NAME}`).
    pub fn env(mut self, name: &str, value: impl Into<String>) -> ServerSpec {
        self.env.push((name.to_string(), value.into()));
        self
    }

    /// Arguments after `hookwise serve [--config hookwise.yaml]` (a child only).
    pub fn args(mut self, args: &[&str]) -> ServerSpec {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Runs in `dir` (which outlives the server) instead of a fresh temp dir.
    pub fn in_dir(mut self, dir: &Path) -> ServerSpec {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// The ingress path polled until it answers 200 (default `/readyz`).
    pub fn ready_at(mut self, path: &str) -> ServerSpec {
        self.ready = path.to_string();
        self
    }

    /// Writes the config and files; returns the temp dir made, if any, and the dir.
    fn prepare(&self) -> (Option<tempfile::TempDir>, PathBuf) {
        let (temp, dir) = match &self.dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::tempdir().expect("temp dir");
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        if let Some(config) = &self.config {
            std::fs::write(dir.join(CONFIG_FILE), config).expect("write config");
        }
        for (name, text) in &self.files {
            std::fs::write(dir.join(name), text).expect("write file");
        }
        (temp, dir)
    }

    /// The engine in this process: the library's `run` on listeners bound to port 0.
    pub async fn start(self) -> Server {
        let (temp, dir) = self.prepare();
        let config_path = dir.join(CONFIG_FILE);
        let text = self
            .config
            .as_deref()
            .expect("an in-process server needs a config");
        let env = |name: &str| {
            self.env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let config = hookwise::config::load_str(&config_path, text, &env)
            .unwrap_or_else(|e| panic!("{e:#?}"));
        let scheme = match config.tls {
            hookwise::config::TlsMode::Plain => "http",
            _ => "https",
        };
        let listeners = hookwise::server::Listeners::bind(&config)
            .await
            .expect("bind listeners");
        let addr = listeners.ingress.local_addr().expect("ingress address");
        let admin = listeners.admin.local_addr().expect("admin address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(hookwise::server::run(config, listeners, async {
            let _ = stopped.await;
        }));
        let server = Server {
            base: format!("{scheme}://{addr}"),
            addr,
            admin: format!("http://{admin}"),
            dir,
            temp,
            env: self.env,
            process: Process::InProcess {
                stop: Some(stop),
                task,
            },
        };
        server.wait_ready(&self.ready).await;
        server
    }

    /// `hookwise serve` as a child process, its stderr collected line by line.
    pub async fn spawn(self) -> Server {
        let (temp, dir) = self.prepare();
        let mut command = tokio::process::Command::new(hookwise_bin());
        command.arg("serve");
        if self.config.is_some() {
            command.args(["--config", CONFIG_FILE]);
        }
        let mut child = command
            .args(&self.args)
            .current_dir(&dir)
            .env_remove("HOOKWISE_CONFIG")
            .env_remove("HOOKWISE_LOG")
            .env_remove("HOOKWISE_LOG_FORMAT")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start hookwise");
        let log = ChildLog::read(child.stderr.take().expect("stderr"));
        let ingress = log.listening("ingress listening").await;
        let admin = log.listening("admin listening").await;
        let server = Server {
            base: format!("{}://{}", ingress.scheme, ingress.addr),
            addr: ingress.addr,
            admin: format!("http://{}", admin.addr),
            dir,
            temp,
            env: self.env,
            process: Process::Child { child, log },
        };
        server.wait_ready(&self.ready).await;
        server
    }
}

/// The config file a [`Server`] reads, in its dir.
pub const CONFIG_FILE: &str = "hookwise.yaml";

/// How long a server may take to become ready: the first start in a test run compiles the
/// built-in plugins, which takes long on a busy machine.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// A running hookwise engine, in process or as a child; see [`ServerSpec`].
pub struct Server {
    /// The ingress, `http(s)://127.0.0.1:PORT`.
    pub base: String,
    pub addr: SocketAddr,
    /// The admin listener, `http://127.0.0.1:PORT`.
    pub admin: String,
    /// The folder holding the config, the SQLite store and the admin token.
    pub dir: PathBuf,
    temp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    process: Process,
}

enum Process {
    InProcess {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<Result<(), hookwise::server::ServeError>>,
    },
    Child {
        child: tokio::process::Child,
        log: ChildLog,
    },
}

/// What is left of a stopped [`Server`]: its folder and its stderr (a child's only).
pub struct Stopped {
    pub dir: PathBuf,
    pub temp: Option<tempfile::TempDir>,
    pub stderr: String,
}

impl Stopped {
    /// A handle on the SQLite store the server wrote.
    pub async fn store(&self) -> Store {
        open_sqlite_store(&self.dir).await
    }
}

async fn open_sqlite_store(dir: &Path) -> Store {
    Store::open("sqlite://hookwise.db", dir, GroupCommitSettings::default())
        .await
        .expect("open the store")
}

/// `hookwise serve` whose admin listener speaks HTTPS (`admin.tls`, a self-signed pair for
/// localhost made the way the ingress makes its own) on `admin_host`, with `token`.
pub struct TlsAdmin {
    pub server: Server,
    /// The admin listener's port.
    pub port: u16,
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// A client that trusts that certificate and nothing else, following no redirects.
    pub client: reqwest::Client,
    /// The listener's self-signed certificate (PEM).
    pub cert: PathBuf,
    _tls: tempfile::TempDir,
}

/// Starts a [`TlsAdmin`] server and waits until its admin listener answers over HTTPS.
pub async fn tls_admin_server(admin_host: &str, token: &str) -> TlsAdmin {
    let tls = tempfile::tempdir().expect("temp dir");
    let (_, cert) = hookwise::tls::self_signed(tls.path()).expect("self-signed pair");
    let key = tls.path().join(hookwise::tls::SELF_SIGNED_KEY);
    let server = server(format!(
        "listen: 127.0.0.1:0\ninsecure_http: true\n\
         admin:\n  listen: {admin_host}:0\n  token: \"${{env:ADMIN_TOKEN}}\"\n  \
         tls: {{ cert: \"{}\", key: \"{}\" }}\n",
        cert.display(),
        key.display()
    ))
    .env("ADMIN_TOKEN", token)
    .spawn()
    .await;
    let port = server
        .admin
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .expect("admin port");
    let pem = std::fs::read(&cert).expect("certificate");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let base = format!("https://127.0.0.1:{port}");
    assert!(
        wait_ready(&client, &format!("{base}/healthz"), READY_LIMIT).await,
        "no HTTPS answer on {base}"
    );
    TlsAdmin {
        server,
        port,
        base,
        client,
        cert,
        _tls: tls,
    }
}

/// A client that accepts the self-signed certificates test servers use.
pub fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

impl Server {
    async fn wait_ready(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        let ready = wait_ready(&insecure_client(), &url, READY_LIMIT).await;
        assert!(ready, "no answer on {url}; stderr:\n{}", self.stderr());
    }

    /// A second handle on the server's SQLite store.
    pub async fn store(&self) -> Store {
        open_sqlite_store(&self.dir).await
    }

    /// Runs the hookwise binary on this server's config and environment; returns (exit code,
    /// stdout).
    pub fn cli(&self, args: &[&str]) -> (i32, String) {
        let out = std::process::Command::new(hookwise_bin())
            .args(args)
            .args(["--config", CONFIG_FILE])
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run hookwise");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        (out.status.code().unwrap_or(-1), stdout)
    }

    /// The child's stderr so far (empty in process).
    pub fn stderr(&self) -> String {
        match &self.process {
            Process::Child { log, .. } => log.text(),
            Process::InProcess { .. } => String::new(),
        }
    }

    fn log(&self) -> &ChildLog {
        match &self.process {
            Process::Child { log, .. } => log,
            Process::InProcess { .. } => panic!("only a child's log is collected"),
        }
    }

    /// How many stderr lines the child has written, to look only at later ones with
    /// [`Server::wait_for_log`].
    pub fn log_mark(&self) -> usize {
        self.log().lines.lock().unwrap().len()
    }

    /// The first stderr line after `mark` that contains `needle`, waiting up to 30 s for it.
    pub async fn wait_for_log(&self, mark: usize, needle: &str) -> String {
        self.log()
            .wait_for(mark, needle, Duration::from_secs(30))
            .await
    }

    /// The child's stderr lines from `mark` on.
    pub fn log_since(&self, mark: usize) -> String {
        self.log().lines.lock().unwrap()[mark..].join("\n")
    }

    /// Sends `signal` (`HUP`, `TERM`) to the child.
    pub fn signal(&self, signal: &str) {
        let Process::Child { child, .. } = &self.process else {
            panic!("only a child takes signals");
        };
        let pid = child.id().expect("the child runs").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Stops the server gracefully (the shutdown future in process, SIGTERM for a child) and
    /// fails unless it stops cleanly within 30 s.
    pub async fn stop(mut self) -> Stopped {
        self.signal_stop();
        match self.process {
            Process::InProcess { task, .. } => {
                tokio::time::timeout(Duration::from_secs(30), task)
                    .await
                    .expect("stops in time")
                    .expect("the server task ends")
                    .expect("the server stops without an error");
                Stopped {
                    dir: self.dir,
                    temp: self.temp,
                    stderr: String::new(),
                }
            }
            Process::Child { mut child, log } => {
                let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
                    .await
                    .expect("stops on SIGTERM")
                    .expect("wait for hookwise");
                let stderr = log.finish().await;
                assert!(
                    exit.success(),
                    "graceful exit, got {exit:?}; stderr:\n{stderr}"
                );
                Stopped {
                    dir: self.dir,
                    temp: self.temp,
                    stderr,
                }
            }
        }
    }

    fn signal_stop(&mut self) {
        match &mut self.process {
            Process::InProcess { stop, .. } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
            Process::Child { .. } => self.signal("TERM"),
        }
    }

    /// [`Server::stop`], then a handle on the SQLite store it wrote.
    pub async fn stop_and_open(self) -> (Store, Stopped) {
        let stopped = self.stop().await;
        (stopped.store().await, stopped)
    }

    /// The child's process id (None in process, or once it has ended).
    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Child { child, .. } => child.id(),
            Process::InProcess { .. } => None,
        }
    }

    /// The admin API token the server generated on its first start.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join(hookwise::admin::token::TOKEN_FILE))
            .expect("generated token file")
            .trim()
            .to_string()
    }

    /// The value of the sample `sample` (a name, with its labels if it has any) in the
    /// server's `/metrics`, asked with the token the server generated.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = reqwest::Client::new()
            .get(format!("{}/metrics", self.admin))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .expect("the admin API answers")
            .text()
            .await
            .expect("a text answer");
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
    }

    /// Waits until no plugin is compiling any more (a first start compiles them in the
    /// background, and their actions wait meanwhile), asking the admin API with the token
    /// the server generated.
    pub async fn wait_plugins_compiled(&self) {
        let token = self.admin_token();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let answer: Value = client
                .get(format!("{}/api/v1/plugins", self.admin))
                .bearer_auth(&token)
                .send()
                .await
                .expect("the admin API answers")
                .json()
                .await
                .expect("a JSON answer");
            let plugins = answer["plugins"].as_array().expect("a plugin list");
            if plugins.iter().all(|p| p["status"] != "compiling") {
                return;
            }
            assert!(Instant::now() < deadline, "still compiling: {plugins:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the child with SIGKILL; returns how it ended.
    pub async fn kill(self) -> std::process::ExitStatus {
        let Process::Child { mut child, .. } = self.process else {
            panic!("only a child can be killed");
        };
        child.start_kill().expect("kill hookwise");
        child.wait().await.expect("wait for hookwise")
    }
}

/// A child's stderr, read line by line as it comes: at debug level a full pipe would block
/// the server.
struct ChildLog {
    lines: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

/// A listener as a child reported it.
struct Listening {
    addr: SocketAddr,
    scheme: &'static str,
}

impl ChildLog {
    fn read(pipe: tokio::process::ChildStderr) -> ChildLog {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut pipe = tokio::io::BufReader::new(pipe);
            let mut line = Vec::new();
            // Bytes, not `lines()`: one line that is not UTF-8 must not stop the reading.
            while pipe.read_until(b'\n', &mut line).await.unwrap_or(0) > 0 {
                let text = String::from_utf8_lossy(&line);
                sink.lock()
                    .unwrap()
                    .push(text.trim_end_matches(['\n', '\r']).to_string());
                line.clear();
            }
        });
        ChildLog { lines, reader }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    async fn wait_for(&self, mark: usize, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        // Each line is looked at once: at debug level thousands come, and a reader kept
        // waiting for the lock would leave the server blocked on a full pipe.
        let mut from = mark;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                if let Some(line) = lines[from.min(lines.len())..]
                    .iter()
                    .find(|l| l.contains(needle))
                {
                    return line.clone();
                }
                from = from.max(lines.len());
            }
            assert!(
                Instant::now() < deadline && !self.reader.is_finished(),
                "no log line with `{needle}`; got:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address (and scheme) of the `message` line the server logs when a listener is bound
    /// (`ingress listening addr=127.0.0.1:PORT scheme=http`, or the same as JSON).
    async fn listening(&self, message: &str) -> Listening {
        let line = self.wait_for(0, message, READY_LIMIT).await;
        let after = line
            .find("addr")
            .map(|at| &line[at..])
            .unwrap_or_else(|| panic!("no addr in `{line}`"));
        let addr: String = after
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        Listening {
            addr: addr
                .parse()
                .unwrap_or_else(|e| panic!("`{addr}` in `{line}`: {e}")),
            scheme: if line.contains("https") {
                "https"
            } else {
                "http"
            },
        }
    }

    /// Waits for the pipe to close; returns all of stderr.
    async fn finish(self) -> String {
        let _ = self.reader.await;
        self.lines.lock().unwrap().join("\n")
    }
}
