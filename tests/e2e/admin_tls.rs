//! The admin listener's transport as users meet it: HTTPS with `admin.tls` (plain HTTP on that
//! port is refused), and `hookwise check` / `serve` refusing a reachable plain-HTTP admin
//! listener and a short token, each at its place in the file.

use std::path::Path;
use std::process::Stdio;

use crate::support::{TlsAdmin, hookwise_bin, tls_admin_server};

/// A token as long as a generated one.
const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Runs the binary to completion in `dir`; returns its exit code and stderr.
fn run(dir: &Path, args: &[&str], token: &str) -> (i32, String) {
    let output = std::process::Command::new(hookwise_bin())
        .args(args)
        .current_dir(dir)
        .env("ADMIN_TOKEN", token)
        .env_remove("HOOKWISE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run hookwise");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_admin_api_speaks_https_with_admin_tls_and_refuses_plain_http() {
    // Every address, so that the listener is one other hosts can reach: TLS makes that fine.
    let TlsAdmin {
        server: running,
        port: admin,
        base,
        client,
        ..
    } = tls_admin_server("0.0.0.0", ADMIN_TOKEN).await;
    let events = client
        .get(format!("{base}/api/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let body: serde_json::Value = events.json().await.unwrap();
    assert!(body.is_object(), "{body}");
    let metrics = client
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // HTTPS does not stand in for the token.
    let anonymous = client
        .get(format!("{base}/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Plain HTTP to the same port gets a refusal, never the API, even with the right token.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{admin}/api/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    let refusal: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(refusal["code"], "https_required", "{refusal}");
    let plain_health = reqwest::get(format!("http://127.0.0.1:{admin}/healthz"))
        .await
        .unwrap();
    assert_eq!(plain_health.status(), 400);

    running.stop().await;
}

#[test]
fn check_and_serve_refuse_a_reachable_plain_admin_listener_and_a_short_token() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing binds: both commands stop at the config, so any port number does.
    let (port, admin) = (8080, 9091);
    std::fs::write(
        dir.path().join("hookwise.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\ninsecure_http: true\n\
             admin:\n  listen: 0.0.0.0:{admin}\n  token: \"${{env:ADMIN_TOKEN}}\"\n"
        ),
    )
    .unwrap();
    let short = &ADMIN_TOKEN[..31];
    let listen_at = format!(
        "hookwise.yaml:4:11: the admin listener `0.0.0.0:{admin}` is reachable from other hosts"
    );
    let token_at = "hookwise.yaml:5:10: the admin token is 31 characters; it must be at least 32";
    for command in ["check", "serve"] {
        let (code, err) = run(dir.path(), &[command, "--config", "hookwise.yaml"], short);
        assert_eq!(code, 1, "{command}: {err}");
        assert!(
            err.contains(&listen_at),
            "{command}: no {listen_at} in:\n{err}"
        );
        assert!(err.contains("set `admin.tls`"), "{command}: {err}");
        assert!(
            err.contains(token_at),
            "{command}: no {token_at} in:\n{err}"
        );
        assert!(err.contains("2 problems"), "{command}: {err}");
        assert!(!err.contains(short), "{command} showed the token:\n{err}");
    }

    // A long enough token and a loopback address pass; `--admin-listen` cannot undo the rule.
    std::fs::write(
        dir.path().join("hookwise.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\ninsecure_http: true\n\
             admin:\n  listen: 127.0.0.1:{admin}\n  token: \"${{env:ADMIN_TOKEN}}\"\n"
        ),
    )
    .unwrap();
    let (code, err) = run(
        dir.path(),
        &["check", "--config", "hookwise.yaml"],
        ADMIN_TOKEN,
    );
    assert_eq!(code, 0, "{err}");
    let everywhere = format!("0.0.0.0:{admin}");
    let (code, err) = run(
        dir.path(),
        &[
            "serve",
            "--config",
            "hookwise.yaml",
            "--admin-listen",
            &everywhere,
        ],
        ADMIN_TOKEN,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("--admin-listen {everywhere}: the admin listener")),
        "{err}"
    );
}
