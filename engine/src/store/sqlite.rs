//! The embedded SQLite backend: one file, WAL journal, and every answered write synced to disk.
//!
//! The pool's connections use `synchronous=FULL`: each of their (rare) commits fsyncs the WAL.
//! The group committer's writer commits with `synchronous=NORMAL` and has the WAL synced before
//! it answers anyone (group.rs, sqlite_writer.rs): the same guarantee, one fsync per batch, and
//! the sync of one batch overlapping the writing of the next (see BENCHMARKS.md).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// How long a writer waits for the database lock before giving up.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers and writers share this many connections (SQLite still writes one at a time).
const POOL_SIZE: u32 = 8;
/// Page cache of each pooled (reading) connection, in SQLite's unit: negative is KiB.
const READER_CACHE: &str = "-1024";

#[derive(Clone)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            // Readers' page caches: 1 MiB each (SQLite's default is 2 MiB) for up to
            // POOL_SIZE connections; the writer's connection keeps the default.
            .pragma("cache_size", READER_CACHE)
            // Checkpoints are the writer thread's, between batches (sqlite_writer.rs), not
            // inside a commit that some caller is waiting for.
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

super::queries::store_queries!(
    SqliteStore,
    sqlx::Sqlite,
    notify = "",
    attempts_in_events = true,
    accepted_columns = super::sql::ACCEPTED_ATTEMPT_COLUMNS,
    text = super::text::Lossless,
    activity_shard = 0i32
);
