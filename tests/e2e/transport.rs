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

/// A body sent in pieces is stored whole, byte for byte; a body that breaks off before its
/// declared end is refused as incomplete and recorded, and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_pieces_are_whole_or_refused() {
    let server = start("insecure_http: true\nsources:\n  - { id: open, provider: none }\n").await;
    let body = format!("{{\"pieces\":\"{}\",\"end\":true}}", "x".repeat(20_000));
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(7_001) {
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Fewer bytes than announced, then the sender closes its side.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"partial\":")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;

    let (store, _stopped) = server.stop_and_open().await;
    let events = store
        .list_events(&hookwise::store::EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        events[0].event.payload == body,
        "the stored payload differs"
    );
    let attempts = store.list_delivery_attempts(None, 100).await.unwrap();
    let refused: Vec<_> = attempts
        .iter()
        .filter(|a| a.attempt.status == 400)
        .collect();
    assert_eq!(refused.len(), 1, "{attempts:#?}");
    assert!(
        refused[0]
            .attempt
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("body_incomplete"),
        "{refused:#?}"
    );
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

/// A plain-HTTP server with the `listener` caps `caps`, `config` after them, and an open
/// source `open`.
async fn start_capped(caps: &str, config: &str) -> Server {
    start(&format!(
        "insecure_http: true\nlistener: {caps}\n{config}sources:\n  - {{ id: open, provider: none }}\n"
    ))
    .await
}

/// A new connection on which `head` was sent, left open.
async fn connect_and_send(addr: std::net::SocketAddr, head: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// What the server sends next on `stream` within `limit` ("" once it closed the connection);
/// None when it sends nothing in time.
async fn next_answer(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Err(_) => None,
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        // Reset by the server: closed.
        Ok(Err(_)) => Some(String::new()),
    }
}

/// Posts to `open` until the answer is no longer `refused` (held places come back a moment
/// after their connections end), at most five seconds; the answer then is an acceptance.
async fn accepted_again(server: &Server, refused: u16) {
    let mut status = 0;
    for _ in 0..50 {
        status = server.post("open", &[]).await.0;
        if status != refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!((200..300).contains(&status), "{status}");
}

const HEALTH: &str = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
const PARTIAL_BODY: &str = "POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"partial\":";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_max_connections_is_closed_while_open_ones_are_served() {
    let server = start_capped("{ max_connections: 2 }", "").await;
    // The readiness probe's connection closes with its client; give the server a moment to
    // see it go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_and_send(server.addr, HEALTH).await;
        let answer = next_answer(&mut stream, Duration::from_secs(5)).await;
        assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
        open.push(stream);
    }
    let mut third = connect_and_send(server.addr, HEALTH).await;
    assert_eq!(
        next_answer(&mut third, Duration::from_secs(5))
            .await
            .as_deref(),
        Some(""),
        "the third connection is closed unanswered"
    );
    // The open connections are still served.
    open[0].write_all(HEALTH.as_bytes()).await.unwrap();
    let answer = next_answer(&mut open[0], Duration::from_secs(5)).await;
    assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    // A closed connection frees its place.
    open.pop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_and_send(server.addr, HEALTH).await;
    let answer = next_answer(&mut again, Duration::from_secs(5)).await;
    assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_beyond_max_in_flight_is_answered_overloaded_at_once() {
    let server = start_capped("{ max_in_flight: 2 }", "timeouts: { body_read: 60s }\n").await;
    // Two requests whose bodies never end hold both places.
    let held = [
        connect_and_send(server.addr, PARTIAL_BODY).await,
        connect_and_send(server.addr, PARTIAL_BODY).await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/hooks/open", server.addr))
        .body("{\"n\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "overloaded", "{body}");

    // Once the held requests end, deliveries flow again.
    drop(held);
    accepted_again(&server, 503).await;
}

/// Bodies take at most `max_body_bytes_in_flight` bytes at once: a request whose next piece
/// would go beyond it is answered overloaded, and the bytes come back when requests end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_at_once_are_bounded_in_bytes() {
    let server = start_capped(
        "{ max_body_bytes_in_flight: 1MiB }",
        "timeouts: { body_read: 60s }\n",
    )
    .await;
    let head = "POST /hooks/open HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n";
    let piece = vec![b' '; 700_000];
    let mut first = connect_and_send(server.addr, head).await;
    first.write_all(&piece).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = connect_and_send(server.addr, head).await;
    second.write_all(&piece).await.unwrap();
    let answer = next_answer(&mut second, Duration::from_secs(10))
        .await
        .expect("answered once its body went beyond the bound");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("overloaded"), "{answer}");
    // The first one is still being read; ended, it gives its bytes back.
    assert_eq!(
        next_answer(&mut first, Duration::from_millis(300)).await,
        None
    );
    drop(first);
    accepted_again(&server, 503).await;
}

/// One client holding its requests open takes at most `max_in_flight_per_client` places:
/// its next request is answered at once, another client is served, and the held requests
/// give their places back when they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_hold_every_place_in_flight() {
    let server = start_capped(
        "{ max_in_flight: 8, max_in_flight_per_client: 2 }",
        "timeouts: { body_read: 60s }\n",
    )
    .await;
    let held = [
        connect_and_send(server.addr, PARTIAL_BODY).await,
        connect_and_send(server.addr, PARTIAL_BODY).await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = connect_and_send(server.addr, PARTIAL_BODY).await;
    let answer = next_answer(&mut third, Duration::from_secs(5))
        .await
        .expect("answered before its body arrived");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("too_many_in_progress"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );

    // Another address (127.0.0.2 is loopback too) is served meanwhile.
    let other = reqwest::Client::builder()
        .local_address(Some(std::net::IpAddr::from([127, 0, 0, 2])))
        .build()
        .unwrap();
    let resp = other
        .post(format!("http://{}/hooks/open", server.addr))
        .header("content-type", "application/json")
        .body("{\"n\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    drop(held);
    accepted_again(&server, 429).await;
    drop(third);
    let (store, _stopped) = server.stop_and_open().await;
    let attempts = store.list_delivery_attempts(None, 100).await.unwrap();
    assert!(
        attempts.iter().any(|a| a.attempt.status == 429
            && a.attempt.body_size == 0
            && a.attempt
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("too_many_in_progress"))),
        "{attempts:#?}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let server = start_capped("{ idle_timeout: 1s }", "").await;
    let mut stream = connect_and_send(server.addr, HEALTH).await;
    let answer = next_answer(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    let answered = std::time::Instant::now();
    let closed = next_answer(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(closed.as_deref(), Some(""), "closed, not kept open");
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(5),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_beyond_http2_max_streams_wait_for_a_free_one() {
    use futures::StreamExt;
    use http_body_util::BodyExt;
    use hyper::body::{Bytes, Frame};

    type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;
    // Two requests in flight at most: a third stream served at once would be answered 503.
    let server = start_capped(
        "{ http2_max_streams: 2, max_in_flight: 2 }",
        "timeouts: { body_read: 60s }\n",
    )
    .await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let uri = format!("http://{}/hooks/open", server.addr);
    let send = |body: Body| {
        let mut sender = sender.clone();
        let request = hyper::Request::post(uri.as_str())
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        tokio::spawn(async move { sender.send_request(request).await.map(|r| r.status()) })
    };
    // A body that ends only when `release` is dropped.
    let held = || {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = futures::stream::iter([Ok(Frame::data(Bytes::from_static(b"{\"held\":")))]);
        let rest = futures::stream::once(async move {
            let _ = released.await;
            Ok(Frame::data(Bytes::from_static(b"1}")))
        });
        let body: Body = BodyExt::boxed(http_body_util::StreamBody::new(first.chain(rest)));
        (release, body)
    };
    let (release_a, body_a) = held();
    let (release_b, body_b) = held();
    let a = send(body_a);
    let b = send(body_b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let full: Body = BodyExt::boxed(http_body_util::Full::new(Bytes::from_static(b"{\"n\":3}")));
    let mut third = send(full);
    // The third stream waits for one of the two to end instead of being served beside them.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut third)
            .await
            .is_err(),
        "a third stream was answered while two were open"
    );
    drop(release_a);
    let first = a.await.unwrap().unwrap();
    assert!(first.is_success(), "{first}");
    let third = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a stream was free")
        .unwrap()
        .unwrap();
    assert!(third.is_success(), "{third}");
    drop(release_b);
    assert!(b.await.unwrap().unwrap().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refused_too_often_is_answered_429_until_its_budget_refills() {
    const TOKEN: &str = "gitlab-token-for-tests";
    let server = server(
        "listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0 }\ninsecure_http: true\n\
         timeouts: { body_read: 60s }\n\
         listener: { refusals_per_client: { per_second: 2, burst: 2 } }\n\
         sources:\n  - { id: gl, provider: gitlab, secrets: [\"${env:GL_TOKEN}\"] }\n",
    )
    .env("GL_TOKEN", TOKEN)
    .ready_at("/healthz")
    .start()
    .await;
    let deliver = |token: &'static str| {
        let url = format!("http://{}/hooks/gl", server.addr);
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("x-gitlab-token", token)
                .header("x-gitlab-event", "Push Hook")
                .header("x-gitlab-event-uuid", format!("u-{}", rand_id()))
                .header("content-type", "application/json")
                .body("{\"object_kind\":\"push\"}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").cloned();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, retry_after, body)
        }
    };
    // The budget: two refusals.
    for _ in 0..2 {
        assert_eq!(deliver("wrong-token-here").await.0, 401);
    }
    // The third is answered before its body is read (the body never arrives in full).
    let mut stream = connect_and_send(
        server.addr,
        "POST /hooks/gl HTTP/1.1\r\nhost: x\r\nx-gitlab-token: wrong\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"partial\":",
    )
    .await;
    let answer = next_answer(&mut stream, Duration::from_secs(10))
        .await
        .expect("answered before the body arrived");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("refused_too_often"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    drop(stream);
    for _ in 0..2 {
        let (status, _, body) = deliver("wrong-token-here").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (429, Some("refused_too_often"))
        );
    }
    // Until the budget refills, the client is refused whatever it sends...
    let (status, retry_after, _) = deliver(TOKEN).await;
    assert_eq!(status, 429);
    let wait: u64 = retry_after
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("Retry-After");
    // ... and once it has (the 429s did not spend it), a valid delivery is accepted.
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    let (status, _, body) = deliver(TOKEN).await;
    assert!((200..300).contains(&status), "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_idle_timeout() {
    use http_body_util::BodyExt;
    let server = start_capped("{ idle_timeout: 1s }", "").await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{}/healthz", server.addr))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await;
    let answered = std::time::Instant::now();
    // The client keeps the connection; only the server's idle timer ends it.
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the server closed the idle connection")
        .unwrap()
        .ok();
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(5),
        "{after:?}"
    );
    drop(sender);
}
