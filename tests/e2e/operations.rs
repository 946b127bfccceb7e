//! Operations: plugins' HTTPS trusting a private CA only when the config names it, and
//! `hookwise backup` copying a SQLite store while a server ingests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hookwise::model::EventId;
use hookwise::store::{GroupCommitSettings, Store};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use crate::dispatch::{SECRET, send, wait_done};
use crate::support::{server, wasm};

// ---- a service whose certificate a private CA issued ----------------------------------------

/// An HTTPS server on 127.0.0.1 whose certificate (for the address 127.0.0.1) a fresh private
/// CA signed; it answers 200 to every request that gets through the handshake.
struct PrivateService {
    addr: SocketAddr,
    /// The CA's certificate, PEM.
    ca_pem: String,
    /// Requests answered (a refused handshake never gets one).
    requests: Arc<AtomicUsize>,
}

impl PrivateService {
    async fn start() -> PrivateService {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hookwise test private CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &*ca)
            .unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |_request| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"private")),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        PrivateService {
            addr,
            ca_pem: ca.pem(),
            requests,
        }
    }
}

/// The execution of `rule` in `hookwise logs --json` output.
fn execution<'a>(story: &'a Value, rule: &str) -> &'a Value {
    story["executions"]
        .as_array()
        .and_then(|xs| xs.iter().find(|x| x["rule_id"] == rule))
        .unwrap_or_else(|| panic!("no execution of {rule} in {story:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plugin_https_reaches_a_private_ca_service_only_when_the_ca_is_configured() {
    let service = PrivateService::start().await;
    let grant = format!("https://{}", service.addr);
    let url = format!("https://{}/hook", service.addr);
    let relay = wasm("relay");
    let config = format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         rules: rules.yaml\n\
         sources:\n  - {{ id: gh, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         plugins:\n\
         \x20 - name: trusting\n    path: {relay}\n    allow: {{ http: [\"{grant}\"] }}\n    http: {{ ca_certs: [ca.pem] }}\n\
         \x20 - name: untrusting\n    path: {relay}\n    allow: {{ http: [\"{grant}\"] }}\n",
        relay = relay.display(),
    );
    let rules = ["trusting", "untrusting"]
        .iter()
        .map(|plugin| {
            format!(
                "  - id: via-{plugin}\n    source: gh\n    events: [push]\n    actions:\n      - plugin: {plugin}\n        with: {{ url: \"{url}\" }}\n        retry: {{ attempts: 1 }}\n"
            )
        })
        .collect::<String>();
    let server = server(config)
        .file("ca.pem", service.ca_pem.as_str())
        .file("rules.yaml", format!("rules:\n{rules}"))
        .env("GH_SECRET", SECRET)
        .start()
        .await;
    let client = reqwest::Client::new();
    let event = send(&client, &server.base, &json!({"ref": "refs/heads/main"})).await;
    let store = server.store().await;
    wait_done(&store, event, 2, Duration::from_secs(60)).await;

    let (code, text) = server.cli(&["logs", &event.to_string(), "--json"]);
    assert_eq!(code, 0);
    let story: Value = serde_json::from_str(&text).unwrap();
    // The plugin given the CA reached the service over HTTPS.
    let trusted = execution(&story, "via-trusting");
    assert_eq!(trusted["status"], "succeeded", "{trusted:#}");
    let call = &trusted["attempts"][0]["http_calls"][0];
    assert_eq!(call["status"], 200, "{call:#}");
    assert_eq!(call["url"], url);
    // The other, with the public web PKI only, was refused by its own TLS check; the record
    // says why.
    let untrusted = execution(&story, "via-untrusting");
    assert_eq!(untrusted["status"], "dead", "{untrusted:#}");
    let call = &untrusted["attempts"][0]["http_calls"][0];
    assert!(call["status"].is_null(), "{call:#}");
    let error = call["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
        "{call:#}"
    );
    assert_eq!(service.requests.load(Ordering::SeqCst), 1);
    store.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_that_is_not_pem_stops_the_check_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    std::fs::write(
        dir.path().join("hookwise.yaml"),
        "insecure_http: true\nplugin_http:\n  ca_certs: [ca.pem, gone.pem]\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::hookwise_bin())
        .args(["check", "--config", "hookwise.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hookwise.yaml:3:"), "{stderr}");
    assert!(stderr.contains("ca.pem` is not PEM"), "{stderr}");
    assert!(stderr.contains("gone.pem` does not exist"), "{stderr}");
    assert!(stderr.contains("2 problems"), "{stderr}");
}

// ---- hookwise backup ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_copies_the_store_consistently_while_events_arrive() {
    let server = server(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: { listen: 127.0.0.1:0 }\n\
         sources:\n  - { id: gh, provider: github, secrets: [\"${env:GH_SECRET}\"] }\n",
    )
    .env("GH_SECRET", SECRET)
    .start()
    .await;

    // Events keep arriving, four at a time, until told to stop.
    let acked: Arc<std::sync::Mutex<Vec<EventId>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for worker in 0..4 {
        let (acked, stop, base) = (acked.clone(), stop.clone(), server.base.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = send(&client, &base, &json!({"worker": worker, "n": n})).await;
                acked.lock().unwrap().push(id);
                n += 1;
            }
        }));
    }
    // Some history first, then the backup while sending goes on.
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before: Vec<EventId> = acked.lock().unwrap().clone();
    let backup = server.dir.join("backup.db");
    // The CLI blocks this worker thread; the server runs on the others.
    let (code, out) = tokio::task::block_in_place(|| server.cli(&["backup", "backup.db"]));
    let during = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    for sender in senders {
        sender.await.unwrap();
    }
    let total = acked.lock().unwrap().len();
    assert_eq!(code, 0, "{out}");
    assert!(
        total > during,
        "events kept arriving after the backup ({during} then {total})"
    );

    // What it says it wrote is what is there.
    let size = std::fs::metadata(&backup).unwrap().len();
    assert!(
        out.starts_with("wrote backup.db: ") && out.contains(&format!("({size} bytes)")),
        "{out}"
    );
    let said: i64 = out
        .trim_end()
        .rsplit(", ")
        .next()
        .and_then(|s| s.strip_suffix(" events"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event count in {out}"));
    assert!(
        said >= before.len() as i64 && said <= total as i64,
        "{said} of {total}"
    );

    // SQLite finds the copy sound, and a store opened on it has every event acknowledged
    // before the backup began.
    let check: String = rusqlite::Connection::open(&backup)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let copy = Store::open(
        "sqlite://backup.db",
        &server.dir,
        GroupCommitSettings::default(),
    )
    .await
    .unwrap();
    assert_eq!(copy.count_events().await.unwrap(), said);
    for id in &before {
        assert!(
            copy.get_event(*id).await.unwrap().is_some(),
            "event {id} is missing from the backup"
        );
    }
    copy.close().await;

    // A second backup to the same name is refused and leaves the file alone.
    let (code, _) = server.cli(&["backup", "backup.db"]);
    assert_eq!(code, 1);
    assert_eq!(std::fs::metadata(&backup).unwrap().len(), size);
    let original = server.store().await;
    assert_eq!(original.count_events().await.unwrap(), total as i64);
    original.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_postgres_store_points_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hookwise.yaml"),
        "insecure_http: true\nstore: postgres://postgres@127.0.0.1:5432/hookwise\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::hookwise_bin())
        .args(["backup", "copy.db", "--config", "hookwise.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!dir.path().join("copy.db").exists());
}
