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

mod params;
mod rows;

use std::collections::HashMap;

use futures::TryStreamExt;
use futures::stream::BoxStream;
use serde_json::{Map, Value};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{Either, Executor, MySql, Postgres, Sqlite, Transaction};

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

const CLAIM_SQLITE: &str = "INSERT INTO hookwise_effects (idempotency_key, applied_at) \
     VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
     ON CONFLICT (idempotency_key) DO NOTHING";
const CLAIM_POSTGRES: &str = "INSERT INTO hookwise_effects (idempotency_key) VALUES ($1) \
     ON CONFLICT (idempotency_key) DO NOTHING";
const CLAIM_MYSQL: &str = "INSERT IGNORE INTO hookwise_effects (idempotency_key) VALUES (?)";

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
        match &pool {
            SqlPool::Sqlite(p) => {
                p.execute(EFFECTS_TABLE_SQLITE).await?;
            }
            SqlPool::Postgres(p) => {
                p.execute(EFFECTS_TABLE_POSTGRES).await?;
            }
            SqlPool::MySql(p) => {
                p.execute(EFFECTS_TABLE_MYSQL).await?;
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
                    let mut tx = pool.begin().await?;
                    let claimed = sqlx::query(CLAIM_SQLITE)
                        .bind(idempotency_key)
                        .execute(&mut *tx)
                        .await?;
                    if claimed.rows_affected() == 0 {
                        tx.rollback().await?;
                        return Ok(DbBegin::AlreadyApplied);
                    }
                    SqlTransaction::Sqlite(tx)
                }
                SqlPool::Postgres(pool) => {
                    let mut tx = pool.begin().await?;
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

/// The open transaction of one call on one connection.
enum SqlTransaction {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
    MySql(Transaction<'static, MySql>),
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
                SqlTransaction::Sqlite(tx) => {
                    let stream = (&mut **tx).fetch_many(params::sqlite(sql, params));
                    collect(stream, max_rows, |r| r.rows_affected(), rows::sqlite).await
                }
                SqlTransaction::Postgres(tx) => {
                    let stream = (&mut **tx).fetch_many(params::postgres(sql, params));
                    collect(stream, max_rows, |r| r.rows_affected(), rows::postgres).await
                }
                SqlTransaction::MySql(tx) => {
                    let stream = (&mut **tx).fetch_many(params::mysql(sql, params));
                    collect(stream, max_rows, |r| r.rows_affected(), rows::mysql).await
                }
            }
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), DbError>> {
        Box::pin(async move {
            match *self {
                SqlTransaction::Sqlite(tx) => tx.commit().await?,
                SqlTransaction::Postgres(tx) => tx.commit().await?,
                SqlTransaction::MySql(tx) => tx.commit().await?,
            }
            Ok(())
        })
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), DbError>> {
        Box::pin(async move {
            match *self {
                SqlTransaction::Sqlite(tx) => tx.rollback().await?,
                SqlTransaction::Postgres(tx) => tx.rollback().await?,
                SqlTransaction::MySql(tx) => tx.rollback().await?,
            }
            Ok(())
        })
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
