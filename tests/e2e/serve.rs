//! `hookwise serve` as users run it: the real binary, real listeners, graceful shutdown.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{free_port, hookwise_bin, wait_ready};

fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The embedded default: no config file, HTTPS with a self-signed certificate made on first run.
#[tokio::test]
async fn embedded_default_serves_health_over_https_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(hookwise_bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .current_dir(dir.path())
        .env_remove("HOOKWISE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start hookwise");
    let client = insecure_client();
    let health = format!("https://127.0.0.1:{port}/healthz");
    assert!(
        wait_ready(&client, &health, Duration::from_secs(30)).await,
        "no answer on {health}"
    );
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
        .get(format!("https://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let admin_health = reqwest::get(format!("http://127.0.0.1:{admin}/healthz"))
        .await
        .unwrap();
    assert_eq!(admin_health.status(), 200);

    // Plain HTTP on the HTTPS port gets no service, only an answer that says HTTPS is needed.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    assert!(plain.text().await.unwrap().contains("https_required"));
    // The defaults landed in the working directory.
    assert!(dir.path().join("hookwise.db").is_file());
    assert!(
        dir.path()
            .join(hookwise::ingress::tls::SELF_SIGNED_CERT)
            .is_file()
    );

    let pid = child.id().expect("pid") as i32;
    // SAFETY-free: `kill` is a plain syscall wrapper; sending SIGTERM to our own child.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops in time")
        .unwrap();
    assert!(exit.success(), "graceful exit, got {exit:?}");
}

/// A config file with plain HTTP (operator opt-in), on PostgreSQL.
#[tokio::test]
async fn config_file_with_postgres_store() {
    let pg = crate::support::TempPostgres::create()
        .await
        .expect("PostgreSQL");
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "listen: 127.0.0.1:{port}\ninsecure_http: true\nadmin: {{ listen: 127.0.0.1:{admin} }}\nstore: {}\n",
        pg.url
    );
    std::fs::write(dir.path().join("hookwise.yaml"), config).unwrap();
    let mut child = tokio::process::Command::new(hookwise_bin())
        .args(["serve", "--config", "hookwise.yaml"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start hookwise");
    let client = insecure_client();
    assert!(
        wait_ready(
            &client,
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_secs(30)
        )
        .await
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
    pg.drop_db().await.unwrap();
}

/// In process: the library's `run` with listeners on port 0, stopped by a future.
#[tokio::test]
async fn library_run_stops_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookwise.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:0\ninsecure_http: true\nadmin: { listen: 127.0.0.1:0 }\n",
    )
    .unwrap();
    let config = hookwise::config::Config::load(&path).unwrap();
    let listeners = hookwise::server::Listeners::bind(&config).await.unwrap();
    let addr = listeners.ingress.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hookwise::server::run(config, listeners, async {
        let _ = stopped.await;
    }));
    let client = insecure_client();
    // Generous: the first start in a test run compiles the built-in plugins, which takes
    // long on a busy machine; readiness is what is checked, not how fast it came.
    assert!(
        wait_ready(
            &client,
            &format!("http://{addr}/readyz"),
            Duration::from_secs(60)
        )
        .await
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    assert!(
        client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}
