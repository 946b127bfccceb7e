//! The web dashboard against a running server: sign-in (wrong token, rate limit, cookie
//! flags), CSRF and cross-site refusals, security headers, escaping of hostile event data,
//! filters, keyset paging, the live stream, replay after a dry-run preview, and a real browser
//! (Debian's chromium, driven over the DevTools protocol) going through sign-in, a live update,
//! a timeline, a replay and sign-out.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hookwise::model::EventId;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::dispatch::{config_text, send, start, wait_done};
use crate::support::{Receiver, Server, TlsAdmin, tls_admin_server};

/// A payload a hostile sender could post: markup in keys and values.
const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=\"window.__xss=1\">";

fn rules(receiver: &Receiver) -> String {
    format!(
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}\" }}\n  - id: tags-only\n    source: gh\n    events: [push]\n    when:\n      all:\n        - {{ path: $.ref, starts_with: refs/tags/ }}\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}\" }}\n",
        receiver.url("/hook"),
        receiver.url("/tags")
    )
}

/// A browser-like client of the dashboard that follows no redirects and keeps one cookie.
pub(crate) struct Dash {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Dash {
    pub(crate) fn new(server: &Server) -> Dash {
        Dash {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.admin.clone(),
            token: server.admin_token(),
        }
    }

    /// Origin header of a same-origin form post.
    pub(crate) fn origin(&self) -> String {
        self.base.clone()
    }

    pub(crate) async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }

    pub(crate) async fn post_form(
        &self,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.try_post_form(path, cookie, headers, form)
            .await
            .unwrap()
    }

    /// [`Dash::post_form`], with the client's error when the request could not be sent whole.
    pub(crate) async fn try_post_form(
        &self,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::Response> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await
    }

    /// Signs in with the right token; returns the `name=value` of the session cookie.
    pub(crate) async fn sign_in(&self) -> String {
        let origin = self.origin();
        let r = self
            .post_form(
                "/sign-in",
                None,
                &[("origin", &origin), ("sec-fetch-site", "same-origin")],
                &[("token", &self.token)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        session_cookie(r.headers()).expect("a session cookie")
    }

    /// A page's HTML, signed in.
    pub(crate) async fn page(&self, path: &str, cookie: &str) -> (StatusCode, String) {
        let r = self.get(path, Some(cookie)).await;
        let status = r.status();
        (status, r.text().await.unwrap())
    }
}

fn set_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let cookie = set_cookie(headers)?;
    cookie.split(';').next().map(|s| s.trim().to_string())
}

pub(crate) fn location(headers: &HeaderMap) -> Option<&str> {
    headers.get(LOCATION).and_then(|v| v.to_str().ok())
}

/// The CSRF token in a signed-in page's sign-out form.
pub(crate) fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a csrf field") + marker.len();
    let end = html[start..].find('"').expect("end of the csrf value") + start;
    html[start..end].to_string()
}

/// Event ids linked from a list page, in page order.
pub(crate) fn listed_ids(html: &str) -> Vec<String> {
    html.split("href=\"/events/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|id| id.len() == 36)
        .map(str::to_string)
        .collect()
}

/// HTML text with the entities the templates write for `/` and `&` turned back.
pub(crate) fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/").replace("&amp;", "&")
}

/// The href of the "Older" link, unescaped.
fn older_link(html: &str) -> Option<String> {
    let at = html.find("rel=\"next\"")?;
    let start = html[..at].rfind("href=\"")? + "href=\"".len();
    let end = html[start..].find('"')? + start;
    Some(unescape(&html[start..end]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_sign_in_sessions_csrf_and_headers() {
    let receiver = Receiver::start().await;
    let server = start(&config_text(&receiver, ""), &rules(&receiver)).await;
    let dash = Dash::new(&server);
    let origin = dash.origin();

    // Nothing but the sign-in page without a session.
    for path in ["/", "/events", "/events/stream", "/events/x"] {
        let r = dash.get(path, None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(r.headers()), Some("/sign-in"), "{path}");
    }
    let r = dash.post_form("/sign-out", None, &[], &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = dash.get("/events", Some("hookwise_session=forged")).await;
    assert_eq!(location(r.headers()), Some("/sign-in"));

    // The sign-in page and its headers.
    let r = dash.get("/sign-in", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert!(
        h["content-type"].to_str().unwrap().starts_with("text/html"),
        "{h:?}"
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"token\""));
    assert!(!html.contains("<script>"), "no inline script: {html}");
    // Assets come from the binary.
    let r = dash.get("/assets/live.js", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert!(r.text().await.unwrap().contains("EventSource"));
    assert_eq!(
        dash.get("/assets/app.css", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        dash.get("/assets/nope.js", None).await.status(),
        StatusCode::NOT_FOUND
    );

    // Forms are bounded.
    let huge = "x".repeat(9 * 1024);
    let r = dash
        .post_form(
            "/sign-in",
            None,
            &[("origin", &origin)],
            &[("token", &huge)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("too large"));

    // A wrong token: the page again, 401, no cookie.
    let r = dash
        .post_form(
            "/sign-in",
            None,
            &[("origin", &origin)],
            &[("token", "wrong-token")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(r.headers()).is_none());
    assert!(r.text().await.unwrap().contains("Wrong admin token"));

    // The right token from another site: refused, even though it is right.
    let token = dash.token.clone();
    for headers in [
        [
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        [
            ("origin", origin.as_str()),
            ("sec-fetch-site", "cross-site"),
        ],
        [("origin", "null"), ("sec-fetch-site", "same-origin")],
    ] {
        let r = dash
            .post_form("/sign-in", None, &headers, &[("token", &token)])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(set_cookie(r.headers()).is_none());
    }

    // The right token: a session cookie with the flags a session needs.
    let r = dash
        .post_form(
            "/sign-in",
            None,
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
            &[("token", &token)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(r.headers()), Some("/overview"));
    let raw = set_cookie(r.headers()).unwrap();
    let cookie = session_cookie(r.headers()).unwrap();
    let (name, id) = cookie.split_once('=').unwrap();
    assert_eq!(name, "hookwise_session");
    assert_eq!(id.len(), 64, "256 random bits, hex");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(raw.contains(flag), "{flag} in {raw}");
    }
    assert!(!raw.contains("Secure"), "plain HTTP listener: {raw}");
    // A second sign-in makes another session.
    assert_ne!(dash.sign_in().await, cookie);

    let (status, html) = dash.page("/events", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&html);
    assert_eq!(csrf.len(), 64);
    assert_eq!(
        location(dash.get("/", Some(&cookie)).await.headers()),
        Some("/overview")
    );
    assert_eq!(
        location(dash.get("/sign-in", Some(&cookie)).await.headers()),
        Some("/overview")
    );

    // The JSON API keeps its bearer token: the cookie is not a credential there.
    let r = dash.get("/api/v1/events", Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = dash
        .client
        .get(format!("{}/api/v1/events", dash.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Sign-out needs the session's CSRF token and a same-origin request.
    for (headers, form) in [
        (vec![("origin", origin.as_str())], vec![]),
        (
            vec![("origin", origin.as_str())],
            vec![("csrf", "0".repeat(64))],
        ),
        (
            vec![("origin", "https://evil.example")],
            vec![("csrf", csrf.clone())],
        ),
        (
            vec![("sec-fetch-site", "same-site")],
            vec![("csrf", csrf.clone())],
        ),
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = dash
            .post_form("/sign-out", Some(&cookie), &headers, &form)
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{headers:?} {form:?}");
    }
    assert_eq!(
        dash.page("/events", &cookie).await.0,
        StatusCode::OK,
        "still signed in"
    );
    let r = dash
        .post_form(
            "/sign-out",
            Some(&cookie),
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(r.headers()), Some("/sign-in"));
    assert!(set_cookie(r.headers()).unwrap().contains("Max-Age=0"));
    let r = dash.get("/events", Some(&cookie)).await;
    assert_eq!(
        location(r.headers()),
        Some("/sign-in"),
        "the session is gone"
    );

    // Failed sign-ins are capped per client: past the cap even the right token waits.
    for _ in 0..hookwise::dashboard::session::MAX_FAILED_SIGN_INS - 1 {
        let r = dash
            .post_form(
                "/sign-in",
                None,
                &[("origin", &origin)],
                &[("token", "nope")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = dash
        .post_form(
            "/sign-in",
            None,
            &[("origin", &origin)],
            &[("token", &token)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert!(set_cookie(r.headers()).is_none());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_lists_filters_pages_streams_and_escapes() {
    let receiver = Receiver::start().await;
    let server = start(&config_text(&receiver, ""), &rules(&receiver)).await;
    let store = server.store().await;
    let client = reqwest::Client::new();
    let dash = Dash::new(&server);
    let cookie = dash.sign_in().await;

    let hostile = send(
        &client,
        &server.base,
        &json!({"ref": "refs/heads/main", HOSTILE: HOSTILE, "nested": {"deep": [HOSTILE]}}),
    )
    .await;
    wait_done(&store, hostile, 1, Duration::from_secs(30)).await;

    // The event page: its story, with every hostile value as text.
    let (status, html) = dash.page(&format!("/events/{hostile}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
    let text = unescape(&html);
    for expected in [
        "Delivery <span class=\"verdict\">accepted</span>",
        "<strong>matched</strong> <code>forward</code>",
        "<strong>not matched</strong> <code>tags-only</code>",
        "Condition trace",
        "Attempt 1 · succeeded",
        "HTTP POST http://",
        "id=\"payload\"",
        "<details",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    assert!(
        text.contains(&receiver.url("/hook")),
        "the relay's log line"
    );
    let (status, _) = dash.page("/events/not-an-id", &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = dash
        .page(&format!("/events/{}", EventId::new()), &cookie)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The outcome filter, while the hostile event is the only one.
    let (_, succeeded) = dash.page("/events?outcome=succeeded", &cookie).await;
    assert_eq!(listed_ids(&succeeded), vec![hostile.to_string()]);
    let (_, dead) = dash.page("/events?outcome=dead", &cookie).await;
    assert_eq!(listed_ids(&dead), Vec::<String>::new());

    // Replay: a dry-run preview first, then the replay; both need the session's CSRF token.
    let (_, html) = dash.page(&format!("/events/{hostile}"), &cookie).await;
    let csrf = csrf_of(&html);
    let origin = dash.origin();
    let preview = format!("/events/{hostile}/replay/preview");
    let confirm = format!("/events/{hostile}/replay");
    for path in [&preview, &confirm] {
        let r = dash
            .post_form(path, Some(&cookie), &[("origin", &origin)], &[])
            .await;
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "{path} without a CSRF token"
        );
    }
    let r = dash
        .post_form(
            &preview,
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let planned = unescape(&r.text().await.unwrap());
    assert!(
        planned.contains("<td><code>forward</code></td><td>0</td><td>relay</td><td>1</td>"),
        "{planned}"
    );
    assert!(!planned.contains("tags-only"), "{planned}");
    assert!(
        planned.contains(&format!("action=\"{confirm}\"")),
        "{planned}"
    );
    assert_eq!(
        store.executions_for_event(hostile).await.unwrap().len(),
        1,
        "a preview runs nothing"
    );
    let r = dash
        .post_form(
            &confirm,
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(r.headers()),
        Some(format!("/events/{hostile}").as_str())
    );
    wait_done(&store, hostile, 2, Duration::from_secs(30)).await;
    let (_, html) = dash.page(&format!("/events/{hostile}"), &cookie).await;
    assert!(html.contains("generation 1"), "{html}");
    let missing = format!("/events/{}/replay/preview", EventId::new());
    let r = dash
        .post_form(
            &missing,
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Enough events for two pages (50 a page), each with a distinct delivery.
    let mut sent = vec![hostile.to_string()];
    for i in 0..54 {
        let id = send(
            &client,
            &server.base,
            &json!({"ref": "refs/heads/main", "n": i}),
        )
        .await;
        sent.push(id.to_string());
    }
    let (status, first) = dash.page("/events", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let page1 = listed_ids(&first);
    assert_eq!(page1.len(), 50);
    assert_eq!(page1[0], sent[sent.len() - 1], "newest first");
    let older = older_link(&first).expect("an Older link");
    let (_, second) = dash.page(&older, &cookie).await;
    let page2 = listed_ids(&second);
    assert_eq!(page2.len(), 5);
    assert!(older_link(&second).is_none(), "no third page");
    assert!(second.contains("Newest"));
    let all: BTreeSet<String> = page1.iter().chain(&page2).cloned().collect();
    assert_eq!(all, sent.iter().cloned().collect::<BTreeSet<_>>());

    // Filters: source, outcome, since; bad values are a 400 that says why.
    let count = |html: &str| listed_ids(html).len();
    assert_eq!(count(&dash.page("/events?source=gh", &cookie).await.1), 50);
    let (_, none) = dash.page("/events?source=nope", &cookie).await;
    assert_eq!(count(&none), 0);
    assert!(none.contains("No events match"));
    assert_eq!(
        count(&dash.page("/events?since=1h&source=gh", &cookie).await.1),
        50
    );
    let future = "2999-01-01T00:00:00Z";
    assert_eq!(
        count(
            &dash
                .page(&format!("/events?since={future}"), &cookie)
                .await
                .1
        ),
        0
    );
    for (query, why) in [
        ("outcome=great", "is not an outcome"),
        ("since=soon", "`since`"),
        ("cursor=x", "`cursor` must be a number"),
        ("bogus=1", "unknown filter"),
    ] {
        let (status, html) = dash.page(&format!("/events?{query}"), &cookie).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(html.contains(why), "{why} in {html}");
    }
    // Filters carry into the paging and stream links, escaped.
    let (_, filtered) = dash.page("/events?source=gh&outcome=", &cookie).await;
    let older = older_link(&filtered).expect("an Older link");
    assert!(older.starts_with("/events?source=gh&cursor="), "{older}");
    assert!(unescape(&filtered).contains("data-stream=\"/events/stream?source=gh&after="));

    // The live stream: a new event arrives as an `event` message with its row.
    let newest: i64 = first
        .split("data-seq=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("the newest row's seq");
    let mut stream = dash
        .get(&format!("/events/stream?after={newest}"), Some(&cookie))
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let live = send(&client, &server.base, &json!({"ref": "refs/heads/live"})).await;
    let text = read_stream_until(&mut stream, &live.to_string(), Duration::from_secs(15)).await;
    assert!(text.contains("event: event"), "{text}");
    assert!(
        !text.contains(&sent[sent.len() - 1]),
        "only events after `after`: {text}"
    );

    // More new events than one poll sends: the page is told to reload instead.
    let mut behind = dash.get("/events/stream?after=0", Some(&cookie)).await;
    let text = read_stream_until(&mut behind, "event: gap", Duration::from_secs(15)).await;
    assert!(
        !text.contains("event: event"),
        "the gap comes first: {text}"
    );
    read_stream_until(&mut behind, "event: event", Duration::from_secs(15)).await;
    // At most 32 live streams at once: `stream` and `behind` are open, 30 more fit; closing
    // some frees their places.
    let mut open = vec![behind];
    for _ in 0..30 {
        let r = dash.get("/events/stream", Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::OK);
        open.push(r);
    }
    let refused = dash.get("/events/stream", Some(&cookie)).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(open);
    let start = Instant::now();
    loop {
        let r = dash.get("/events/stream", Some(&cookie)).await;
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "closed streams free their places"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Signing out ends the stream.
    let (_, html) = dash.page("/events", &cookie).await;
    let origin = dash.origin();
    let r = dash
        .post_form(
            "/sign-out",
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf_of(&html))],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let text = read_stream_until(&mut stream, "signed-out", Duration::from_secs(15)).await;
    assert!(text.contains("event: signed-out"), "{text}");
    let end = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await;
    assert!(
        matches!(end, Ok(Ok(None))),
        "the stream closes after signed-out: {end:?}"
    );

    server.stop().await;
}

/// Over HTTPS (`admin.tls`) the session cookie is `Secure` with the `__Host-` prefix, and a
/// form posted from the `http://` origin of the same host is cross-site.
#[tokio::test]
async fn dashboard_cookie_is_secure_on_an_https_admin_listener() {
    const ADMIN_TOKEN: &str = "dashboard-tls-test-token-0123456789";
    let TlsAdmin {
        server: running,
        port: admin,
        base,
        client,
        ..
    } = tls_admin_server("127.0.0.1", ADMIN_TOKEN).await;
    let sign_in = |origin: String| {
        client
            .post(format!("{base}/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin)
            .body(format!("token={ADMIN_TOKEN}"))
            .send()
    };
    let plain_origin = sign_in(format!("http://127.0.0.1:{admin}")).await.unwrap();
    assert_eq!(plain_origin.status(), StatusCode::FORBIDDEN);
    let r = sign_in(base.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let raw = set_cookie(r.headers()).expect("a session cookie");
    assert!(raw.starts_with("__Host-hookwise_session="), "{raw}");
    for flag in ["; Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(raw.contains(flag), "{flag} in {raw}");
    }
    let cookie = session_cookie(r.headers()).unwrap();
    let events = client
        .get(format!("{base}/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    running.stop().await;
}

/// Reads server-sent events until `needle` shows up; returns what was read.
pub(crate) async fn read_stream_until(
    stream: &mut reqwest::Response,
    needle: &str,
    limit: Duration,
) -> String {
    let start = Instant::now();
    let mut text = String::new();
    while !text.contains(needle) {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("no `{needle}` in the stream ({other:?}); read: {text}"),
        }
    }
    text
}

/// A real browser: sign in through the form, watch a new event appear without a reload, open
/// its timeline, sign out. Fails (never skips) when chromium is missing: CI installs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_in_a_real_browser() {
    let receiver = Receiver::start().await;
    let server = start(&config_text(&receiver, ""), &rules(&receiver)).await;
    let store = server.store().await;
    let client = reqwest::Client::new();
    let first = send(&client, &server.base, &json!({"ref": "refs/heads/main"})).await;
    wait_done(&store, first, 1, Duration::from_secs(30)).await;

    let profile = tempfile::tempdir().unwrap();
    let mut browser = cdp::Browser::launch(profile.path()).await;
    let base = server.admin.clone();

    // Sign in through the form; signed in, the overview; the events are one link away.
    browser
        .sign_in(&format!("{base}/"), &server.admin_token())
        .await;
    browser
        .eval("document.querySelector('nav a[href=\"/events\"]').click(); true")
        .await;
    browser
        .wait_for("location.pathname === '/events' && document.readyState === 'complete'")
        .await;
    browser
        .wait_for(&format!(
            "document.querySelector('a[href=\"/events/{first}\"]') !== null"
        ))
        .await;

    // A new event appears without a reload (the marker survives).
    browser.eval("window.__noReload = 'kept'; true").await;
    let hostile = send(
        &client,
        &server.base,
        &json!({"ref": "refs/heads/main", "text": HOSTILE}),
    )
    .await;
    browser
        .wait_for(&format!(
            "document.querySelector('#events tr.new a[href=\"/events/{hostile}\"]') !== null"
        ))
        .await;
    assert_eq!(browser.eval("window.__noReload").await, json!("kept"));
    wait_done(&store, hostile, 1, Duration::from_secs(30)).await;

    // Its timeline, with the hostile payload shown as text and never run.
    browser
        .eval(&format!(
            "document.querySelector('a[href=\"/events/{hostile}\"]').click(); true"
        ))
        .await;
    browser
        .wait_for(&format!(
            "location.pathname === '/events/{hostile}' && document.readyState === 'complete'"
        ))
        .await;
    let timeline = browser
        .eval("document.getElementById('timeline').innerText")
        .await;
    let timeline = timeline.as_str().unwrap_or_default();
    for expected in [
        "Delivery accepted",
        "matched forward",
        "not matched tags-only",
        "Attempt 1 · succeeded",
        "HTTP POST http://",
    ] {
        assert!(timeline.contains(expected), "{expected} in {timeline}");
    }
    assert!(
        timeline.contains(&format!("POST {}", receiver.url("/hook"))),
        "{timeline}"
    );
    let payload = browser
        .eval("document.getElementById('payload').textContent")
        .await;
    assert!(
        payload
            .as_str()
            .unwrap_or_default()
            .contains("<script>alert(1)</script>")
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#payload script, #payload img').length")
            .await,
        json!(0)
    );
    assert_eq!(
        browser.eval("typeof window.__xss").await,
        json!("undefined")
    );

    // Replay: the preview shows what would run, the confirmation runs it.
    browser
        .eval("document.getElementById('replay-preview').click(); true")
        .await;
    browser
        .wait_for("document.getElementById('replay-confirm') !== null")
        .await;
    let planned = browser
        .eval("document.getElementById('planned').innerText")
        .await;
    assert!(
        planned.as_str().unwrap_or_default().contains("forward"),
        "{planned}"
    );
    browser
        .eval("document.getElementById('replay-confirm').click(); true")
        .await;
    browser
        .wait_for(&format!(
            "location.pathname === '/events/{hostile}' && document.readyState === 'complete'"
        ))
        .await;
    wait_done(&store, hostile, 2, Duration::from_secs(30)).await;
    browser.navigate(&format!("{base}/events/{hostile}")).await;
    browser
        .wait_for(
            "document.readyState === 'complete' && document.getElementById('timeline') !== null \
             && document.getElementById('timeline').innerText.includes('generation 1')",
        )
        .await;

    // Sign out; the dashboard then sends the browser to the sign-in page.
    browser
        .eval("document.getElementById('sign-out').click(); true")
        .await;
    browser.wait_for("location.pathname === '/sign-in'").await;
    browser.navigate(&format!("{base}/events")).await;
    browser
        .wait_for("location.pathname === '/sign-in' && document.readyState === 'complete'")
        .await;

    let errors = browser.close().await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
    server.stop().await;
}

/// A small Chrome DevTools Protocol client over `--remote-debugging-pipe` (file descriptors 3
/// and 4 of the browser): no port to race for, no WebSocket, no dependency whose generated
/// protocol types must match this chromium's version.
pub(crate) mod cdp {
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::{FromRawFd, RawFd};
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};
    use tokio::sync::mpsc;

    /// How long one wait for the page may take.
    const WAIT: Duration = Duration::from_secs(20);

    pub struct Browser {
        child: std::process::Child,
        commands: std::fs::File,
        messages: mpsc::UnboundedReceiver<Value>,
        session: String,
        next_id: u64,
        /// Console errors, uncaught exceptions and failed loads seen so far.
        errors: Vec<String>,
    }

    /// The chromium binary: `HOOKWISE_CHROMIUM`, else `chromium` on the PATH.
    fn chromium() -> String {
        std::env::var("HOOKWISE_CHROMIUM").unwrap_or_else(|_| "chromium".to_string())
    }

    fn pipe() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
        (fds[0], fds[1])
    }

    impl Browser {
        pub async fn launch(profile: &Path) -> Browser {
            let (cmd_read, cmd_write) = pipe();
            let (msg_read, msg_write) = pipe();
            let mut command = std::process::Command::new(chromium());
            command
                .args([
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--remote-debugging-pipe",
                    "--window-size=1280,800",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg("about:blank")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl).
            unsafe {
                command.pre_exec(move || {
                    for (from, to) in [(cmd_read, 3), (msg_write, 4)] {
                        if from == to {
                            let flags = libc::fcntl(to, libc::F_GETFD);
                            libc::fcntl(to, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                        } else if libc::dup2(from, to) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
            let child = match command.spawn() {
                Ok(child) => child,
                Err(e) => panic!(
                    "cannot start `{}` ({e}): the dashboard browser test needs Debian's \
                     chromium (`apt-get install -y chromium`) or HOOKWISE_CHROMIUM=PATH",
                    chromium()
                ),
            };
            // SAFETY: each descriptor is ours alone from here on; the File owns and closes it.
            let (commands, messages_in) = unsafe {
                libc::close(cmd_read);
                libc::close(msg_write);
                (
                    std::fs::File::from_raw_fd(cmd_write),
                    std::fs::File::from_raw_fd(msg_read),
                )
            };
            let (tx, rx) = mpsc::unbounded_channel();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(messages_in);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(0, &mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if buf.last() == Some(&0) {
                                buf.pop();
                            }
                            if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                                && tx.send(v).is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            });
            let mut browser = Browser {
                child,
                commands,
                messages: rx,
                session: String::new(),
                next_id: 0,
                errors: Vec::new(),
            };
            let target = browser
                .call("Target.createTarget", json!({"url": "about:blank"}))
                .await;
            let target = target["targetId"]
                .as_str()
                .expect("a target id")
                .to_string();
            let attached = browser
                .call(
                    "Target.attachToTarget",
                    json!({"targetId": target, "flatten": true}),
                )
                .await;
            browser.session = attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_string();
            for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
                browser.call(domain, json!({})).await;
            }
            browser
        }

        /// Sends a command and waits for its answer; panics on an error answer.
        async fn call(&mut self, method: &str, params: Value) -> Value {
            match self.try_call(method, params).await {
                Ok(result) => result,
                Err(error) => panic!("{method} failed: {error}"),
            }
        }

        /// Sends a command (to the page once attached) and waits for its answer.
        async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
            self.next_id += 1;
            let id = self.next_id;
            let mut message = json!({"id": id, "method": method, "params": params});
            if !self.session.is_empty() {
                message["sessionId"] = json!(self.session);
            }
            let mut bytes = serde_json::to_vec(&message).unwrap();
            bytes.push(0);
            self.commands.write_all(&bytes).expect("write to chromium");
            let start = Instant::now();
            loop {
                let left = WAIT.saturating_sub(start.elapsed());
                let Ok(Some(message)) = tokio::time::timeout(left, self.messages.recv()).await
                else {
                    panic!("no answer from chromium to {method}");
                };
                if message["id"] == json!(id) {
                    if let Some(error) = message.get("error") {
                        return Err(error.clone());
                    }
                    return Ok(message["result"].clone());
                }
                self.note(&message);
            }
        }

        /// Keeps console errors, exceptions and failed loads.
        fn note(&mut self, message: &Value) {
            let params = &message["params"];
            match message["method"].as_str() {
                Some("Runtime.exceptionThrown") => self
                    .errors
                    .push(format!("exception: {}", params["exceptionDetails"])),
                Some("Runtime.consoleAPICalled") if params["type"] == "error" => self
                    .errors
                    .push(format!("console.error: {}", params["args"])),
                Some("Log.entryAdded") if params["entry"]["level"] == "error" => self
                    .errors
                    .push(format!("log: {}", params["entry"]["text"])),
                _ => {}
            }
        }

        pub async fn navigate(&mut self, url: &str) {
            let answer = self.call("Page.navigate", json!({"url": url})).await;
            assert!(
                answer.get("errorText").is_none(),
                "navigate {url}: {answer}"
            );
        }

        /// Opens `url` signed out, which leads to the sign-in page, signs in there with
        /// `token` through the form, and waits for the overview the dashboard then shows.
        pub async fn sign_in(&mut self, url: &str, token: &str) {
            self.navigate(url).await;
            // The form itself, not only the address: under load the address changes before
            // the page is parsed.
            self.wait_for(
                "location.pathname === '/sign-in' && document.getElementById('sign-in') !== null",
            )
            .await;
            self.eval(&format!(
                "document.getElementById('token').value = {}; \
                 document.getElementById('sign-in').click(); true",
                json!(token)
            ))
            .await;
            self.wait_for(
                "location.pathname === '/overview' && document.readyState === 'complete'",
            )
            .await;
        }

        /// Makes the page `width` x `height` CSS pixels; `mobile` as a phone lays it out
        /// (the viewport meta tag honoured, touch-sized scrollbars).
        pub async fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
            self.call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            )
            .await;
        }

        /// Presses and releases `key` (`Tab`, `Enter`) where the focus is, as a keyboard does.
        pub async fn press(&mut self, key: &str) {
            let (code, text) = match key {
                "Tab" => (9, ""),
                "Enter" => (13, "\r"),
                other => panic!("no key code for {other}"),
            };
            for kind in ["keyDown", "keyUp"] {
                let mut event = json!({
                    "type": kind, "key": key, "code": key,
                    "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code,
                });
                if kind == "keyDown" && !text.is_empty() {
                    event["text"] = json!(text);
                }
                self.call("Input.dispatchKeyEvent", event).await;
            }
        }

        /// Types `text` into the focused field.
        pub async fn type_text(&mut self, text: &str) {
            self.call("Input.insertText", json!({"text": text})).await;
        }

        /// A PNG of what the window shows.
        pub async fn screenshot(&mut self) -> Vec<u8> {
            use base64::Engine as _;
            let shot = self
                .call("Page.captureScreenshot", json!({"format": "png"}))
                .await;
            base64::engine::general_purpose::STANDARD
                .decode(shot["data"].as_str().expect("screenshot data"))
                .expect("base64 screenshot")
        }

        /// The value of `expression` in the page (promises awaited).
        pub async fn eval(&mut self, expression: &str) -> Value {
            let answer = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
                )
                .await;
            if let Some(e) = answer.get("exceptionDetails") {
                panic!("`{expression}` threw: {e}");
            }
            answer["result"]["value"].clone()
        }

        /// Waits until `condition` is true in the page (across navigations).
        pub async fn wait_for(&mut self, condition: &str) {
            let start = Instant::now();
            loop {
                // Between pages there may be no context to evaluate in: try again.
                let answer = self
                    .try_call(
                        "Runtime.evaluate",
                        json!({"expression": condition, "returnByValue": true}),
                    )
                    .await;
                if matches!(answer, Ok(ref a) if a["result"]["value"] == json!(true)) {
                    return;
                }
                if start.elapsed() > WAIT {
                    let url = self.eval("location.href").await;
                    let body = self
                        .eval("document.body ? document.body.innerText : ''")
                        .await;
                    panic!("waited {WAIT:?} for `{condition}` at {url}; page: {body}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        /// Drains the messages left, stops the browser, and returns the errors it reported.
        pub async fn close(mut self) -> Vec<String> {
            while let Ok(message) = self.messages.try_recv() {
                self.note(&message);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            std::mem::take(&mut self.errors)
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
