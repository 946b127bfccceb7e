//! The PostgreSQL backend: several hookwise nodes may share one database; work is claimed with
//! `FOR UPDATE SKIP LOCKED` so nodes never run the same execution at once.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

/// Connections per node; writes are batched, so few are needed.
const POOL_SIZE: u32 = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(crate) async fn open(url: &str) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }
}

super::queries::store_queries!(
    PgStore,
    sqlx::Postgres,
    claim_lock = "FOR UPDATE SKIP LOCKED",
    notify = "SELECT pg_notify('hookwise_work', '')"
);

/// The channel work notifications go out on.
pub(crate) const WORK_CHANNEL: &str = "hookwise_work";

impl PgStore {
    /// Listens for work notifications from every node sharing the database.
    pub(crate) async fn listen(&self) -> Result<sqlx::postgres::PgListener, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(WORK_CHANNEL).await?;
        Ok(listener)
    }
}
