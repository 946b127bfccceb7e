//! Helpers shared by the end-to-end tests: fresh PostgreSQL and MySQL databases, the built binary,
//! free ports.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

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

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
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
            ("wasm32-wasip2", vec!["noop", "hostile", "relay"]),
            ("wasm32-wasip1", vec!["command-echo"]),
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

/// Path of one built example plugin: `noop`, `hostile`, `relay` (components) or `command-echo`
/// (wasip1).
pub fn wasm(name: &str) -> PathBuf {
    // Libraries (components) get `_` in their file names, binaries keep `-`.
    let (triple, file) = if name == "command-echo" {
        ("wasm32-wasip1", name.to_string())
    } else {
        ("wasm32-wasip2", name.replace('-', "_"))
    };
    plugin_dir()
        .join(triple)
        .join("release")
        .join(format!("{file}.wasm"))
}
