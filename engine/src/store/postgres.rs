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
    claim_lock = "FOR UPDATE SKIP LOCKED"
);
