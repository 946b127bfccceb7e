//! `hookwise serve` as users run it: the real binary, real listeners, graceful shutdown.

use std::time::Duration;

use crate::support::{ServerSpec, TempPostgres, insecure_client, server, wait_ready};

/// The embedded default: no config file, HTTPS with a self-signed certificate made on first run.
#[tokio::test]
async fn embedded_default_serves_health_over_https_and_stops_on_sigterm() {
    let server = ServerSpec::without_config()
        .args(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .ready_at("/healthz")
        .spawn()
        .await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let client = insecure_client();
    let health = format!("{}/healthz", server.base);
    assert_eq!(
        client
            .get(&health)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let admin_health = reqwest::get(format!("{}/healthz", server.admin))
        .await
        .unwrap();
    assert_eq!(admin_health.status(), 200);

    // Plain HTTP on the HTTPS port gets no service, only an answer that says HTTPS is needed.
    let plain = reqwest::get(format!("http://{}/healthz", server.addr))
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    assert!(plain.text().await.unwrap().contains("https_required"));
    // The defaults landed in the working directory.
    assert!(server.dir.join("hookwise.db").is_file());
    assert!(server.dir.join(hookwise::tls::SELF_SIGNED_CERT).is_file());

    // The built-in plugins were compiled into the empty cache by processes of their own (the
    // compiler's memory is not the server's), and the server loaded what they stored.
    server.wait_plugins_compiled().await;
    let cache = server.dir.join(hookwise::plugin_host::registry::CACHE_DIR);
    let compiled = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|f| f.as_ref().unwrap().path().extension() == Some("cwasm".as_ref()))
        .count();
    assert_eq!(compiled, hookwise::plugin_host::builtin::names().count());
    let stderr = server.stderr();
    assert_eq!(
        stderr.matches("compiled_apart=true").count(),
        compiled,
        "{stderr}"
    );
    assert!(!stderr.contains("compiling here"), "{stderr}");

    // SIGTERM; the harness fails unless the exit is graceful and in time.
    server.stop().await;
}

/// A config file with plain HTTP (operator opt-in), on PostgreSQL: ready, and stored there.
#[tokio::test]
async fn config_file_with_postgres_store() {
    let pg = TempPostgres::create().await.expect("PostgreSQL");
    let server = server(format!(
        "listen: 127.0.0.1:0\ninsecure_http: true\nadmin: {{ listen: 127.0.0.1:0 }}\nstore: {}\n",
        pg.url
    ))
    .spawn()
    .await;
    assert!(server.base.starts_with("http://"), "{}", server.base);
    let stderr = server.stderr();
    assert!(stderr.contains("store=\"postgres\""), "{stderr}");
    // No SQLite file beside the config: the store is the database.
    assert!(!server.dir.join("hookwise.db").exists());
    server.stop().await;
    pg.drop_db().await.unwrap();
}

/// In process: the library's `run` with listeners on port 0, stopped by a future.
#[tokio::test]
async fn library_run_stops_when_told() {
    let server =
        server("listen: 127.0.0.1:0\ninsecure_http: true\nadmin: { listen: 127.0.0.1:0 }\n")
            .start()
            .await;
    let addr = server.addr;
    // The harness stops it through the shutdown future and fails unless `run` returns Ok in
    // time.
    let _dir = server.stop().await;
    let client = insecure_client();
    assert!(
        client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
    assert!(
        !wait_ready(
            &client,
            &format!("http://{addr}/readyz"),
            Duration::from_millis(200)
        )
        .await
    );
}
