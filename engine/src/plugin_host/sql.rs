//! `SqlExecutor`: the `db` capability over named sqlx pools of SQLite,
//! PostgreSQL and MySQL/MariaDB. It owns each dialect's `hookwise_effects`
//! DDL and its race-safe "insert the idempotency key or learn it is there"
//! statement; binding JSON parameters and turning rows into JSON live in
//! `params` and `rows`.
//!
//! Exactly-once per key, even for concurrent attempts: the key row is
//! inserted inside the call's transaction, so a second attempt with the same
//! key blocks on the unique index until the first commits (then it inserts
//! nothing and applies nothing) or rolls back (then it inserts and applies).
//!
//! Every plugin statement passes `guard::check` before it is sent (one data
//! statement, never `hookwise_effects`); on SQLite the connection is also armed
//! with the engine's authorizer for the plugin's part of the transaction
//! (`sqlite_guard`).

mod guard;
mod params;
mod rows;
mod sqlite_guard;

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use futures::stream::BoxStream;
use serde_json::{Map, Value};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{Either, Executor, MySql, Postgres, Sqlite, Transaction};

pub use self::guard::Refused;
use self::sqlite_guard::{GuardError, SqliteGuard};

impl From<GuardError> for DbError {
    fn from(e: GuardError) -> Self {
        match e {
            GuardError::Database(e) => DbError::Database(e),
            GuardError::Install(_) => DbError::Guard(e.to_string()),
        }
    }
}

use super::db::{
    BoxFuture, DbBegin, DbError, DbExecutor, DbOutput, DbTransaction, STATEMENT_TIMEOUT,
};

/// Connections per pool. Each running call holds one for its whole
/// transaction; calls beyond this wait (up to the statement timeout).
const POOL_CONNECTIONS: u32 = 8;
/// SQLite allows one writer at a time; more connections only add waiting.
const SQLITE_POOL_CONNECTIONS: u32 = 4;
/// Bytes of the MySQL key column (`VARBINARY(512)`, within InnoDB's 767-byte
/// index limit). `INSERT IGNORE` would silently truncate a longer key, so
/// longer keys are refused instead.
const MYSQL_MAX_KEY_BYTES: usize = 512;

const EFFECTS_TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS hookwise_effects (
    idempotency_key TEXT PRIMARY KEY NOT NULL,
    applied_at TEXT NOT NULL
)";
const EFFECTS_TABLE_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS hookwise_effects (
    idempotency_key TEXT PRIMARY KEY NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";
/// InnoDB for row locks and transactions; a binary key so that keys differing
/// only in case or trailing spaces stay distinct (`*_bin` collations of
/// VARCHAR still ignore trailing spaces).
const EFFECTS_TABLE_MYSQL: &str = "CREATE TABLE IF NOT EXISTS hookwise_effects (
    idempotency_key VARBINARY(512) NOT NULL PRIMARY KEY,
    applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB";

/// Whether the effects table is there already (in the schema unqualified names resolve to).
const EFFECTS_EXISTS_POSTGRES: &str = "SELECT to_regclass('hookwise_effects') IS NOT NULL";
const EFFECTS_EXISTS_MYSQL: &str = "SELECT COUNT(*) > 0 FROM information_schema.tables \
     WHERE table_schema = DATABASE() AND table_name = 'hookwise_effects'";

const CLAIM_SQLITE: &str = "INSERT INTO hookwise_effects (idempotency_key, applied_at) \
     VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
     ON CONFLICT (idempotency_key) DO NOTHING";
const CLAIM_POSTGRES: &str = "INSERT INTO hookwise_effects (idempotency_key) VALUES ($1) \
     ON CONFLICT (idempotency_key) DO NOTHING";
const CLAIM_MYSQL: &str = "INSERT IGNORE INTO hookwise_effects (idempotency_key) VALUES (?)";
/// PostgreSQL stops a plugin's statement on the server at the host's own statement
/// timeout, so a cancelled call leaves no query running (`SET LOCAL`: this transaction only).
const STATEMENT_TIMEOUT_POSTGRES: &str = "SET LOCAL statement_timeout = 5000";

/// The SQL dialect of a connection; it decides the placeholder syntax
/// plugins write (`?` for SQLite and MySQL, `$1` for PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    /// The dialect of a connection URL, from its scheme.
    pub fn of_url(url: &str) -> Result<Dialect, DbError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            _ => Err(DbError::UnsupportedUrl(scheme.to_string())),
        }
    }
}

/// A pool of one of the supported databases.
#[derive(Debug, Clone)]
pub enum SqlPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

impl SqlPool {
    pub fn dialect(&self) -> Dialect {
        match self {
            SqlPool::Sqlite(_) => Dialect::Sqlite,
            SqlPool::Postgres(_) => Dialect::Postgres,
            SqlPool::MySql(_) => Dialect::MySql,
        }
    }
}

impl From<SqlitePool> for SqlPool {
    fn from(pool: SqlitePool) -> Self {
        SqlPool::Sqlite(pool)
    }
}

impl From<PgPool> for SqlPool {
    fn from(pool: PgPool) -> Self {
        SqlPool::Postgres(pool)
    }
}

impl From<MySqlPool> for SqlPool {
    fn from(pool: MySqlPool) -> Self {
        SqlPool::MySql(pool)
    }
}

/// `DbExecutor` over named pools of SQLite, PostgreSQL and MySQL/MariaDB.
#[derive(Debug, Clone, Default)]
pub struct SqlExecutor {
    pools: HashMap<String, SqlPool>,
}

impl SqlExecutor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Connects `name` to `url` and creates `hookwise_effects` there. The
    /// scheme picks the backend: `sqlite:`, `postgres://`/`postgresql://`,
    /// `mysql://`/`mariadb://`.
    pub async fn connect(&mut self, name: &str, url: &str) -> Result<(), DbError> {
        let pool = match Dialect::of_url(url)? {
            Dialect::Sqlite => SqlPool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(SQLITE_POOL_CONNECTIONS)
                    .acquire_timeout(STATEMENT_TIMEOUT)
                    .connect(url)
                    .await?,
            ),
            Dialect::Postgres => SqlPool::Postgres(
                PgPoolOptions::new()
                    .max_connections(POOL_CONNECTIONS)
                    .acquire_timeout(STATEMENT_TIMEOUT)
                    .connect(url)
                    .await?,
            ),
            Dialect::MySql => {
                // sqlx only knows the `mysql` scheme; MariaDB speaks the same protocol.
                let url = match url.split_once("://") {
                    Some((_, rest)) => format!("mysql://{rest}"),
                    None => url.to_string(),
                };
                SqlPool::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(POOL_CONNECTIONS)
                        .acquire_timeout(STATEMENT_TIMEOUT)
                        .connect(&url)
                        .await?,
                )
            }
        };
        self.add_pool(name, pool).await
    }

    /// Registers an existing pool under `name` and creates `hookwise_effects`.
    pub async fn add_pool(&mut self, name: &str, pool: impl Into<SqlPool>) -> Result<(), DbError> {
        let pool = pool.into();
        // A least-privilege user may lack the right to create tables (CREATE TABLE IF NOT
        // EXISTS checks that right even when the table exists): where the owner created the
        // table already, it is only used.
        match &pool {
            SqlPool::Sqlite(p) => {
                p.execute(EFFECTS_TABLE_SQLITE).await?;
            }
            SqlPool::Postgres(p) => {
                let exists: bool = sqlx::query_scalar(EFFECTS_EXISTS_POSTGRES)
                    .fetch_one(p)
                    .await?;
                if !exists {
                    p.execute(EFFECTS_TABLE_POSTGRES).await?;
                }
            }
            SqlPool::MySql(p) => {
                let exists: bool = sqlx::query_scalar(EFFECTS_EXISTS_MYSQL)
                    .fetch_one(p)
                    .await?;
                if !exists {
                    p.execute(EFFECTS_TABLE_MYSQL).await?;
                }
            }
        }
        self.pools.insert(name.to_string(), pool);
        Ok(())
    }

    /// The dialect of connection `name`, if it is configured.
    pub fn dialect(&self, name: &str) -> Option<Dialect> {
        self.pools.get(name).map(SqlPool::dialect)
    }
}

impl DbExecutor for SqlExecutor {
    fn begin<'a>(
        &'a self,
        connection: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<DbBegin, DbError>> {
        Box::pin(async move {
            let pool = self
                .pools
                .get(connection)
                .ok_or_else(|| DbError::UnknownConnection(connection.to_string()))?;
            let tx = match pool {
                SqlPool::Sqlite(pool) => {
                    let (conn, guard) = clean_sqlite_connection(pool).await?;
                    let mut tx = Transaction::begin(conn, None).await?;
                    let claimed = sqlx::query(CLAIM_SQLITE)
                        .bind(idempotency_key)
                        .execute(&mut *tx)
                        .await?;
                    if claimed.rows_affected() == 0 {
                        tx.rollback().await?;
                        return Ok(DbBegin::AlreadyApplied);
                    }
                    sqlite_guard::set_armed(&mut tx, &guard, true).await?;
                    SqlTransaction::Sqlite(GuardedSqlite {
                        tx: Some(tx),
                        guard,
                    })
                }
                SqlPool::Postgres(pool) => {
                    let mut tx = pool.begin().await?;
                    sqlx::query(STATEMENT_TIMEOUT_POSTGRES)
                        .execute(&mut *tx)
                        .await?;
                    let claimed = sqlx::query(CLAIM_POSTGRES)
                        .bind(idempotency_key)
                        .execute(&mut *tx)
                        .await?;
                    if claimed.rows_affected() == 0 {
                        tx.rollback().await?;
                        return Ok(DbBegin::AlreadyApplied);
                    }
                    SqlTransaction::Postgres(tx)
                }
                SqlPool::MySql(pool) => {
                    if idempotency_key.len() > MYSQL_MAX_KEY_BYTES {
                        return Err(DbError::KeyTooLong {
                            max_bytes: MYSQL_MAX_KEY_BYTES,
                        });
                    }
                    let mut tx = pool.begin().await?;
                    let claimed = sqlx::query(CLAIM_MYSQL)
                        .bind(idempotency_key)
                        .execute(&mut *tx)
                        .await?;
                    if claimed.rows_affected() == 0 {
                        tx.rollback().await?;
                        return Ok(DbBegin::AlreadyApplied);
                    }
                    SqlTransaction::MySql(tx)
                }
            };
            Ok(DbBegin::Open(Box::new(tx)))
        })
    }
}

/// A pooled SQLite connection outside any transaction, with its guard disarmed. A
/// connection an earlier call left inside a transaction (its rollback was refused while
/// armed) is closed and another one taken.
async fn clean_sqlite_connection(
    pool: &SqlitePool,
) -> Result<(PoolConnection<Sqlite>, Arc<SqliteGuard>), DbError> {
    for _ in 0..=SQLITE_POOL_CONNECTIONS {
        let mut conn = pool.acquire().await?;
        let prepared = sqlite_guard::prepare(&mut conn).await?;
        if prepared.clean {
            return Ok((conn, prepared.guard));
        }
        conn.close().await?;
    }
    Err(DbError::Guard(
        "no SQLite connection outside a transaction is available".to_string(),
    ))
}

/// The open transaction of one call on one connection.
enum SqlTransaction {
    Sqlite(GuardedSqlite),
    Postgres(Transaction<'static, Postgres>),
    MySql(Transaction<'static, MySql>),
}

/// A SQLite transaction whose connection is armed for plugin statements. Commit and
/// rollback disarm it first; dropped without either (the call was cancelled), it disarms
/// and rolls back in a task of its own.
struct GuardedSqlite {
    /// `None` once committed or rolled back.
    tx: Option<Transaction<'static, Sqlite>>,
    guard: Arc<SqliteGuard>,
}

impl GuardedSqlite {
    /// Disarms the connection and hands out the transaction for the host's last statement.
    /// The transaction stays in `self` until the connection is disarmed: a call dropped while
    /// this waits (its lease lost, a deadline) leaves it to [`Drop`], which disarms before it
    /// rolls back. Dropped here while armed, its rollback would be refused, and the connection
    /// would hold the database's write lock until a later call found and closed it.
    async fn disarmed(&mut self) -> Result<Transaction<'static, Sqlite>, DbError> {
        let closed = || DbError::Guard("the transaction is already closed".to_string());
        let tx = self.tx.as_mut().ok_or_else(closed)?;
        sqlite_guard::set_armed(tx, &self.guard, false).await?;
        self.tx.take().ok_or_else(closed)
    }
}

impl Drop for GuardedSqlite {
    fn drop(&mut self) {
        let Some(mut tx) = self.tx.take() else {
            return;
        };
        let guard = self.guard.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if sqlite_guard::set_armed(&mut tx, &guard, false)
                    .await
                    .is_ok()
                {
                    let _ = tx.rollback().await;
                }
            });
        }
        // Without a runtime the transaction's own drop asks for a rollback; if the armed
        // guard refuses it, the next call finds the connection unclean and closes it.
    }
}

impl DbTransaction for SqlTransaction {
    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        max_rows: usize,
    ) -> BoxFuture<'a, Result<DbOutput, DbError>> {
        Box::pin(async move {
            match self {
                SqlTransaction::Sqlite(guarded) => {
                    guard::check(Dialect::Sqlite, sql)?;
                    let tx = guarded
                        .tx
                        .as_mut()
                        .ok_or_else(|| DbError::Guard("the transaction is closed".to_string()))?;
                    guarded.guard.take_denied();
                    // Never from the statement cache: every plugin statement is compiled
                    // while the connection is armed, so the authorizer sees it.
                    let query = params::sqlite(sql, params).persistent(false);
                    let stream = (&mut **tx).fetch_many(query);
                    let result =
                        collect(stream, max_rows, |r| r.rows_affected(), rows::sqlite).await;
                    match (result, guarded.guard.take_denied()) {
                        (Err(_), Some(why)) => Err(DbError::Refused(guard::Refused(why))),
                        (result, _) => result,
                    }
                }
                SqlTransaction::Postgres(tx) => {
                    guard::check(Dialect::Postgres, sql)?;
                    let stream = (&mut **tx).fetch_many(params::postgres(sql, params));
                    collect(stream, max_rows, |r| r.rows_affected(), rows::postgres)
                        .await
                        .map_err(server_timeout_postgres)
                }
                SqlTransaction::MySql(tx) => {
                    guard::check(Dialect::MySql, sql)?;
                    let stream = (&mut **tx).fetch_many(params::mysql(sql, params));
                    collect(stream, max_rows, |r| r.rows_affected(), rows::mysql).await
                }
            }
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), DbError>> {
        Box::pin(async move {
            match *self {
                SqlTransaction::Sqlite(mut guarded) => guarded.disarmed().await?.commit().await?,
                SqlTransaction::Postgres(tx) => tx.commit().await?,
                SqlTransaction::MySql(tx) => tx.commit().await?,
            }
            Ok(())
        })
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), DbError>> {
        Box::pin(async move {
            match *self {
                SqlTransaction::Sqlite(mut guarded) => guarded.disarmed().await?.rollback().await?,
                SqlTransaction::Postgres(tx) => tx.rollback().await?,
                SqlTransaction::MySql(tx) => tx.rollback().await?,
            }
            Ok(())
        })
    }
}

/// PostgreSQL's own statement timeout (SQLSTATE 57014, from `STATEMENT_TIMEOUT_POSTGRES`)
/// is the host's timeout, whichever of the two fires first: transient, not the statement's
/// fault.
fn server_timeout_postgres(error: DbError) -> DbError {
    match &error {
        DbError::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("57014") => {
            DbError::Timeout
        }
        _ => error,
    }
}

/// Reads a statement's results: up to `max_rows` rows as JSON, and the
/// affected-row count the database reports.
async fn collect<Q, R>(
    mut stream: BoxStream<'_, Result<Either<Q, R>, sqlx::Error>>,
    max_rows: usize,
    rows_affected: impl Fn(&Q) -> u64,
    to_json: impl Fn(&R) -> Result<Map<String, Value>, DbError>,
) -> Result<DbOutput, DbError> {
    let mut output = DbOutput::default();
    while let Some(item) = stream.try_next().await? {
        match item {
            Either::Left(done) => output.rows_affected += rows_affected(&done),
            Either::Right(row) => {
                if output.rows.len() >= max_rows {
                    output.truncated = true;
                    break;
                }
                output.rows.push(to_json(&row)?);
            }
        }
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_from_url_scheme() {
        let cases = [
            ("sqlite://a.db", Some(Dialect::Sqlite)),
            ("sqlite::memory:", Some(Dialect::Sqlite)),
            ("postgres://u@h/db", Some(Dialect::Postgres)),
            ("postgresql://u@h/db", Some(Dialect::Postgres)),
            ("mysql://root@h/db", Some(Dialect::MySql)),
            ("MariaDB://root@h/db", Some(Dialect::MySql)),
            ("mssql://h/db", None),
            ("nonsense", None),
        ];
        for (url, expected) in cases {
            assert_eq!(Dialect::of_url(url).ok(), expected, "{url}");
        }
    }
}
