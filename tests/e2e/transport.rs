//! How requests reach the ingress: plain HTTP behind trusted proxies (X-Forwarded-Proto and
//! X-Forwarded-For), and the timeouts that protect the listener from slow clients.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Server, server};

/// A plain-HTTP server in this process with `config` after its listeners, ready once
/// `/healthz` answers: load balancers' checks carry no X-Forwarded-Proto.
async fn start(config: &str) -> Server {
    server(format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\n{config}"
    ))
    .ready_at("/healthz")
    .start()
    .await
}

/// Requests to one source of a transport test server.
trait Post {
    async fn post(&self, source: &str, headers: &[(&str, &str)]) -> (u16, Value);
}

impl Post for Server {
    async fn post(&self, source: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .post(format!("http://{}/hooks/{source}", self.addr))
            .header("content-type", "application/json")
            .body(format!("{{\"n\": {}}}", rand_id()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn rand_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_forward_https_and_the_client_address() {
    let server = start(
        "trusted_proxies: [127.0.0.1/32, 10.0.0.0/8]\nsources:\n  - { id: open, provider: none }\n  - { id: guarded, provider: none, allow_ips: [203.0.113.0/24] }\n",
    )
    .await;
    let https = ("x-forwarded-proto", "https");

    // From a trusted proxy but not forwarded from HTTPS: refused, and the reason says so.
    let (status, answer) = server.post("open", &[]).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("https_required"))
    );
    let (status, answer) = server.post("open", &[("x-forwarded-proto", "http")]).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("https_required"))
    );
    let (status, answer) = server.post("open", &[https]).await;
    assert_eq!(status, 200, "{answer}");

    // The client is the right-most X-Forwarded-For entry that is not a trusted proxy; what
    // the client wrote further left does not count.
    let (status, answer) = server
        .post(
            "guarded",
            &[
                https,
                ("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.1.1.1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = server
        .post(
            "guarded",
            &[https, ("x-forwarded-for", "203.0.113.9, 198.51.100.7")],
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("address_not_allowed"))
    );
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or("")
            .contains("198.51.100.7"),
        "{answer}"
    );
    // Without X-Forwarded-For the proxy itself is the client.
    let (status, _) = server.post("guarded", &[https]).await;
    assert_eq!(status, 403);

    let (store, _stopped) = server.stop_and_open().await;
    let attempts = store.list_delivery_attempts(None, 100).await.unwrap();
    assert_eq!(attempts.len(), 6, "{attempts:#?}");
    let remote: Vec<String> = attempts
        .iter()
        .filter_map(|a| a.attempt.remote_addr.clone())
        .collect();
    assert!(
        remote
            .iter()
            .any(|r| r.starts_with("203.0.113.9 via 127.0.0.1:")),
        "{remote:#?}"
    );
    assert!(
        remote
            .iter()
            .any(|r| r.starts_with("198.51.100.7 via 127.0.0.1:")),
        "{remote:#?}"
    );
    assert_eq!(
        attempts
            .iter()
            .filter(|a| a
                .attempt
                .reason
                .as_deref()
                .unwrap_or("")
                .starts_with("https_required"))
            .count(),
        2
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_from_an_untrusted_peer_is_refused() {
    let server =
        start("trusted_proxies: [10.0.0.0/8]\nsources:\n  - { id: open, provider: none }\n").await;
    let (status, answer) = server.post("open", &[("x-forwarded-proto", "https")]).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("https_required"))
    );
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or("")
            .contains("127.0.0.1"),
        "{answer}"
    );
    let (store, _stopped) = server.stop_and_open().await;
    assert_eq!(store.count_events().await.unwrap(), 0);
    store.close().await;
}

/// Sends `head` and then nothing more; returns what the server answered before closing.
async fn stall(addr: std::net::SocketAddr, head: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // The server's own timeouts end this; the outer bound only keeps a broken server from
    // hanging the test.
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server kept a stalled connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let server = start(
        "insecure_http: true\ntimeouts: { header_read: 1s, body_read: 1s }\nsources:\n  - { id: open, provider: none }\n",
    )
    .await;
    let addr = server.addr;

    // A body that never arrives in full: 408, recorded with its reason.
    let answer = stall(
        addr,
        "POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"partial\":",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");

    // Headers that never end: the connection is closed.
    let answer = stall(addr, "POST /hooks/open HTTP/1.1\r\nhost: x\r\n").await;
    assert!(!answer.contains("200 OK"), "{answer}");

    let (store, _stopped) = server.stop_and_open().await;
    let attempts = store.list_delivery_attempts(None, 100).await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0].attempt.status, 408);
    assert_eq!(store.count_events().await.unwrap(), 0);
    store.close().await;
}

/// Checks before work: a client the source refuses is answered as soon as its headers are in,
/// without waiting for (or reading) its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_is_answered_before_its_body_is_read() {
    // A long body read limit: were the body awaited, there would be no answer for a minute.
    let server = start(
        "insecure_http: true\ntimeouts: { body_read: 60s }\nsources:\n  - { id: guarded, provider: none, allow_ips: [203.0.113.0/24] }\n",
    )
    .await;
    // 127.0.0.1 is outside 203.0.113.0/24. The body is announced and never sent in full.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /hooks/guarded HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"partial\":",
        )
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    // Far below the 60 s body read limit: only an answer that does not wait for the body
    // arrives in time.
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered before the body arrived")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("address_not_allowed"), "{answer}");
    drop(stream);

    let (store, _stopped) = server.stop_and_open().await;
    let attempts = store.list_delivery_attempts(None, 100).await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let refused = &attempts[0].attempt;
    assert_eq!(
        (refused.status, refused.body_size),
        (403, 0),
        "{refused:#?}"
    );
    store.close().await;
}
