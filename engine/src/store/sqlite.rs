//! The embedded SQLite backend: one file, WAL journal, `synchronous=FULL`.
//!
//! `synchronous=FULL` makes every commit fsync the WAL, so an acknowledged event survives a
//! power cut, not only a crash of the process. Group commit is what keeps this fast: one fsync
//! per batch, not per event (see BENCHMARKS.md).

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
/// How often the WAL is copied back into the database file, off the commit path.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

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
            // Checkpoints run in the background task below, not inside a commit that some
            // caller is waiting for.
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        tokio::spawn(checkpoint_loop(pool.clone()));
        Ok(SqliteStore { pool })
    }
}

/// Copies committed WAL frames into the database file every so often until the pool closes.
/// `PASSIVE` never blocks writers or readers; the WAL restarts from its beginning once a
/// checkpoint caught up, so it stays small.
async fn checkpoint_loop(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
        }
    }
}

super::queries::store_queries!(SqliteStore, sqlx::Sqlite, notify = "");
