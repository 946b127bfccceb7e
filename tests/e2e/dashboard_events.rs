//! The events list's filters against a running server on SQLite and PostgreSQL: event type,
//! time window and payload search (with its bound and how to go on past it), in the page, the
//! admin API and the live stream. Then every dashboard page in a real browser at phone and
//! desktop widths, reached from the keyboard; and the screenshots of `docs/dashboard/`, made
//! by an ignored test from a server holding demo events.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use hookwise::model::{EventId, EventStatus, Millis, Verdict};
use hookwise::store::{
    EventPlan, GroupCommitSettings, MAX_SEARCH_SCAN, MAX_SEARCH_TEXT, NewDeliveryAttempt, NewEvent,
    Store,
};
use hookwise::verify::{Provider, VerifyOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::dashboard::{Dash, cdp, listed_ids, read_stream_until, unescape};
use crate::dispatch::{SECRET, config_with_store, wait_done};
use crate::support::{Answer, Backend, Receiver, Server, TempPostgres, on_every_backend, server};

/// One rule: pushes to `gh` are relayed to the receiver.
fn rules(receiver: &Receiver) -> String {
    format!(
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}\" }}\n",
        receiver.url("/hook")
    )
}

/// A server on a fresh store of `backend`, a handle on that store, and the PostgreSQL
/// database to drop afterwards.
async fn start_on(receiver: &Receiver, backend: Backend) -> (Server, Store, Option<TempPostgres>) {
    let pg = match backend {
        Backend::Postgres => Some(
            TempPostgres::create()
                .await
                .expect("PostgreSQL on 127.0.0.1:5432"),
        ),
        _ => None,
    };
    let url = pg
        .as_ref()
        .map_or("sqlite://hookwise.db".to_string(), |p| p.url.clone());
    let server = server(config_with_store(receiver, "", &url))
        .file("rules.yaml", rules(receiver))
        .env("GH_SECRET", SECRET)
        .start()
        .await;
    let store = Store::open(&url, &server.dir, GroupCommitSettings::default())
        .await
        .expect("open the store");
    (server, store, pg)
}

/// POSTs `payload` signed as `provider` to `/hooks/{source}`, with `event_type` in the
/// provider's header where it has one; returns the event id.
async fn post(
    client: &reqwest::Client,
    base: &str,
    (provider, source, secret): (Provider, &str, &str),
    event_type: Option<&str>,
    payload: &Value,
) -> EventId {
    let url = format!("{base}/hooks/{source}");
    let body = serde_json::to_vec(payload).unwrap();
    let signed = hookwise::verify::sign_event(
        provider,
        secret,
        &VerifyOptions::default(),
        "POST",
        &url,
        &body,
        SystemTime::now(),
        event_type,
    )
    .unwrap();
    let mut req = client
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["event_id"].as_str().unwrap().parse().unwrap()
}

/// A GitHub event of `github_event` (`issues` with an `action` becomes `issues.opened`).
async fn send_github(
    client: &reqwest::Client,
    base: &str,
    github_event: &str,
    payload: &Value,
) -> EventId {
    let gh = (Provider::Github, "gh", SECRET);
    post(client, base, gh, Some(github_event), payload).await
}

/// Waits until `event` has been matched against the rules.
async fn wait_matched(store: &Store, event: EventId) {
    let start = Instant::now();
    loop {
        let stored = store.get_event(event).await.unwrap().expect("stored");
        if stored.event.status == EventStatus::Planned {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{event} not matched"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The admin API's answer to `GET /api/v1/events?{query}`.
async fn api_events(server: &Server, query: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/events?{query}", server.admin))
        .bearer_auth(server.admin_token())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

fn item_ids(answer: &Value) -> Vec<String> {
    answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn ids(events: &[EventId]) -> Vec<String> {
    events.iter().map(EventId::to_string).collect()
}

/// Stores `n` events of an unconfigured source straight into the store, already matched
/// (nothing to run), each with a payload of a kilobyte or so; newer than every event before.
async fn bulk_events(store: &Store, n: usize) {
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(16);
    let writes = (0..n).map(|i| {
        let id = EventId::new();
        let event = NewEvent {
            id,
            source: "bulk".into(),
            delivery_id: format!("bulk-{i}"),
            event_type: "filler".into(),
            received_at: Millis::now(),
            headers: json!({}),
            payload: json!({"i": i, "text": filler}).to_string(),
            status: EventStatus::Pending,
        };
        let attempt = NewDeliveryAttempt {
            id: hookwise::model::DeliveryAttemptId::new(),
            source: "bulk".into(),
            received_at: event.received_at,
            remote_addr: None,
            method: "POST".into(),
            path: "/hooks/bulk".into(),
            headers: json!({}),
            body: None,
            body_size: 0,
            verdict: Verdict::Accepted,
            status: 200,
            reason: None,
        };
        let plan = EventPlan {
            event: id,
            match_trace: serde_json::value::to_raw_value(&json!({})).expect("JSON"),
            executions: Vec::new(),
        };
        store.ingest_planned(event, attempt, Some(plan))
    });
    for outcome in futures::future::join_all(writes).await {
        outcome.expect("bulk ingest");
    }
}

/// Event type, time window and payload search narrow the list in the page, the admin API
/// and the live stream; bad values are refused with the reason; a search reads at most
/// [`MAX_SEARCH_SCAN`] events and offers to go on.
async fn filters_search_and_stream(backend: Backend) {
    let receiver = Receiver::start().await;
    let (server, store, pg) = start_on(&receiver, backend).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let main = send_github(
        &client,
        &base,
        "push",
        &json!({"ref": "refs/heads/main", "note": "ordinary"}),
    )
    .await;
    wait_done(&store, main, 1, Duration::from_secs(60)).await;
    let issue = send_github(
        &client,
        &base,
        "issues",
        &json!({"action": "opened", "issue": {"title": "Needle-7f3 in the haystack"}}),
    )
    .await;
    wait_matched(&store, issue).await;
    let dev = send_github(&client, &base, "push", &json!({"ref": "refs/heads/dev"})).await;
    wait_done(&store, dev, 1, Duration::from_secs(60)).await;
    let at = async |id: EventId| store.get_event(id).await.unwrap().unwrap();
    let (main_at, issue_at, dev_at) = (at(main).await, at(issue).await, at(dev).await);
    assert_eq!(issue_at.event.event_type, "issues.opened");
    assert!(main_at.event.received_at < issue_at.event.received_at);
    assert!(issue_at.event.received_at < dev_at.event.received_at);
    let time = |e: &hookwise::store::StoredEvent| e.event.received_at.to_rfc3339();

    // The page: each filter alone and together; ids newest first.
    let dash = Dash::new(&server);
    let cookie = dash.sign_in().await;
    let cases = [
        ("event_type=push".to_string(), vec![dev, main]),
        ("event_type=issues.opened".to_string(), vec![issue]),
        ("event_type=issues".to_string(), vec![]),
        (
            "source=gh&event_type=push&outcome=succeeded".to_string(),
            vec![dev, main],
        ),
        (format!("until={}", time(&dev_at)), vec![issue, main]),
        (
            format!("since={}&until={}", time(&issue_at), time(&dev_at)),
            vec![issue],
        ),
        ("q=needle-7F3".to_string(), vec![issue]),
        ("q=refs%2Fheads".to_string(), vec![dev, main]),
        ("q=needle-7f3&event_type=push".to_string(), vec![]),
        ("q=%22note%22%3A%22ordinary%22".to_string(), vec![main]),
        (
            "q=refs%2Fheads&until=".to_string() + &time(&dev_at),
            vec![main],
        ),
    ];
    for (query, expected) in &cases {
        let (status, html) = dash.page(&format!("/events?{query}"), &cookie).await;
        assert_eq!(status, StatusCode::OK, "{query}: {html}");
        assert_eq!(listed_ids(&html), ids(expected), "{query}");
        // The same filters in the admin API.
        let (status, answer) = api_events(&server, query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {answer}");
        assert_eq!(item_ids(&answer), ids(expected), "API {query}");
    }
    // Every filter shows in the form and goes into the live stream's address.
    let (_, html) = dash
        .page("/events?event_type=push&until=1h&q=refs", &cookie)
        .await;
    let text = unescape(&html);
    assert!(text.contains("name=\"event_type\" id=\"f-event-type\" value=\"push\""));
    assert!(text.contains("name=\"until\" id=\"f-until\" value=\"1h\""));
    assert!(text.contains("data-stream=\"/events/stream?event_type=push&until=1h&q=refs&after="));
    // Search text is reflected into the form as text, never as markup.
    let (status, html) = dash.page("/events?q=%3Cscript%3E%22x%27", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script>\"x"), "{html}");
    assert!(
        html.contains("value=\"&lt;script&gt;&quot;x&#x27;\""),
        "{html}"
    );
    // The search's answer in the API says it read everything.
    let (_, answer) = api_events(&server, "q=NEEDLE-7f3").await;
    assert_eq!(answer["search"]["complete"], json!(true), "{answer}");
    assert_eq!(answer["search"]["scanned"], json!(3), "{answer}");
    assert_eq!(answer["next_cursor"], Value::Null);

    // Bad values: a 400 that names the filter, in the page and in the API.
    let long = "a".repeat(MAX_SEARCH_TEXT + 1);
    for (query, why) in [
        ("until=tomorrow".to_string(), "`until`"),
        ("since=soon".to_string(), "`since`"),
        (format!("q={long}"), "at most 256"),
    ] {
        let (status, html) = dash.page(&format!("/events?{query}"), &cookie).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(html.contains(why), "{why} in {html}");
        let (status, answer) = api_events(&server, &query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "API {query}");
        assert!(answer["detail"].as_str().unwrap_or_default().contains(why));
    }
    let blank = dash.get("/events/stream?q=+", Some(&cookie)).await;
    assert_eq!(
        blank.status(),
        StatusCode::OK,
        "a blank search is no search"
    );
    drop(blank);
    let (status, _) = dash
        .page(
            &format!("/events/stream?until=soon&after={}", dev_at.seq),
            &cookie,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The live stream: only new events of the type and with the text.
    let mut stream = dash
        .get(
            &format!(
                "/events/stream?event_type=issues.opened&q=second-needle&after={}",
                dev_at.seq
            ),
            Some(&cookie),
        )
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    let wrong_type = send_github(
        &client,
        &base,
        "push",
        &json!({"ref": "refs/heads/x", "note": "second-needle"}),
    )
    .await;
    let wrong_text = send_github(
        &client,
        &base,
        "issues",
        &json!({"action": "opened", "issue": {"title": "nothing here"}}),
    )
    .await;
    let right = send_github(
        &client,
        &base,
        "issues",
        &json!({"action": "opened", "issue": {"title": "SECOND-NEEDLE"}}),
    )
    .await;
    let text = read_stream_until(&mut stream, &right.to_string(), Duration::from_secs(30)).await;
    assert!(!text.contains(&wrong_type.to_string()), "{text}");
    assert!(!text.contains(&wrong_text.to_string()), "{text}");
    assert!(!text.contains("event: gap"), "{text}");
    drop(stream);

    // The bound: with more newer events than one search reads, the issue is out of reach;
    // the page says how far it searched and links to where it stopped.
    bulk_events(&store, MAX_SEARCH_SCAN as usize + 10).await;
    let (status, html) = dash.page("/events?q=needle-7f3", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed_ids(&html).is_empty(), "{html}");
    let text = unescape(&html);
    assert!(
        text.contains("Searched 5,000 events back to <time>"),
        "{text}"
    );
    let further = text
        .split("href=\"")
        .find(|rest| rest.contains("id=\"search-further\""))
        .and_then(|rest| rest.split('"').next())
        .expect("a link to search further")
        .to_string();
    assert!(
        further.starts_with("/events?q=needle-7f3&cursor="),
        "{further}"
    );
    let (_, html) = dash.page(&further, &cookie).await;
    assert_eq!(listed_ids(&html), ids(&[issue]));
    assert!(
        !html.contains("id=\"search-further\""),
        "the history ended: {html}"
    );
    // Other filters come first: the source alone reaches the issue in one search.
    let (_, html) = dash.page("/events?source=gh&q=needle-7f3", &cookie).await;
    assert_eq!(listed_ids(&html), ids(&[issue]));
    // The API reports the same stop and continues from it.
    let (_, answer) = api_events(&server, "q=needle-7f3").await;
    assert_eq!(item_ids(&answer), Vec::<String>::new());
    assert_eq!(answer["search"]["complete"], json!(false), "{answer}");
    assert_eq!(answer["search"]["scanned"], json!(MAX_SEARCH_SCAN));
    assert!(answer["search"]["searched_back_to"].is_i64(), "{answer}");
    let cursor = answer["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_string();
    let (_, answer) = api_events(&server, &format!("q=needle-7f3&cursor={cursor}")).await;
    assert_eq!(item_ids(&answer), ids(&[issue]));
    assert_eq!(answer["search"]["complete"], json!(true), "{answer}");

    store.close().await;
    server.stop().await;
    if let Some(pg) = pg {
        pg.drop_db().await.expect("drop the database");
    }
}

on_every_backend!(events_filters_on [sqlite, postgres]: filters_search_and_stream);

// ---- pages in a real browser -----------------------------------------------------------

const STRIPE_SECRET: &str = "whsec_dashboard-demo-stripe";
const SHOP_SECRET: &str = "dashboard-demo-shop-secret";

/// A server holding what a dashboard shows on an ordinary day: three sources, pushes whose
/// action succeeds, a tag whose action fails for good (a dead letter), a payment, an order,
/// an event no rule takes, and a refused delivery. Returns the server and one event to open.
async fn demo_server(receiver: &Receiver) -> (Server, EventId) {
    receiver.route("/fail", Answer::status(400));
    let config = format!(
        "listen: 127.0.0.1:0\n\
         insecure_http: true\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         store: \"sqlite://hookwise.db\"\n\
         rules: rules.yaml\n\
         dispatch: {{ workers: 4, lease: 5s }}\n\
         sources:\n\
         \x20 - {{ id: github, provider: github, secrets: [\"${{env:GH_SECRET}}\"] }}\n\
         \x20 - {{ id: payments, provider: stripe, secrets: [\"${{env:STRIPE_SECRET}}\"] }}\n\
         \x20 - {{ id: shop, provider: shopify, secrets: [\"${{env:SHOP_SECRET}}\"] }}\n\
         plugins:\n  - name: relay\n    path: {}\n    allow: {{ http: [\"http://{}\"] }}\n",
        crate::support::wasm("relay").display(),
        receiver.addr
    );
    let rules = format!(
        "rules:\n\
         \x20 - id: deploy-main\n    description: Tell the deploy hook about pushes to main\n    source: github\n    events: [push]\n    when:\n      all:\n        - {{ path: $.ref, equals: refs/heads/main }}\n    actions:\n      - plugin: relay\n        with: {{ url: \"{hook}\" }}\n\
         \x20 - id: release-notes\n    description: Publish release notes for tags\n    source: github\n    events: [push]\n    when:\n      all:\n        - {{ path: $.ref, starts_with: refs/tags/ }}\n    actions:\n      - plugin: relay\n        with: {{ url: \"{fail}\" }}\n        retry: {{ attempts: 1 }}\n\
         \x20 - id: paid-invoices\n    source: payments\n    events: [invoice.paid]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{hook}\" }}\n\
         \x20 - id: new-orders\n    source: shop\n    events: [orders/create]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{hook}\" }}\n",
        hook = receiver.url("/hook"),
        fail = receiver.url("/fail"),
    );
    let server = server(config)
        .file("rules.yaml", rules)
        .env("GH_SECRET", SECRET)
        .env("STRIPE_SECRET", STRIPE_SECRET)
        .env("SHOP_SECRET", SHOP_SECRET)
        .start()
        .await;
    let store = server.store().await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let github = (Provider::Github, "github", SECRET);
    let mut last = None;
    for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
        let push = json!({
            "ref": "refs/heads/main",
            "after": format!("9f2c{i}e1"),
            "repository": {"full_name": "acme/api", "private": false},
            "pusher": {"name": name},
            "commits": [{"id": format!("9f2c{i}e1"), "message": format!("Fix flaky test #{}", 40 + i)}],
        });
        let id = post(&client, &base, github, Some("push"), &push).await;
        wait_done(&store, id, 1, Duration::from_secs(60)).await;
        last = Some(id);
    }
    let tag = json!({"ref": "refs/tags/v2.4.0", "repository": {"full_name": "acme/api"}, "pusher": {"name": "alice"}});
    let tag = post(&client, &base, github, Some("push"), &tag).await;
    wait_done(&store, tag, 1, Duration::from_secs(60)).await;
    let issue = json!({"action": "opened", "issue": {"number": 812, "title": "Webhook retries look stuck"}});
    let issue = post(&client, &base, github, Some("issues"), &issue).await;
    let invoice = json!({
        "id": "evt_1PdemoInvoicePaid", "type": "invoice.paid", "object": "event",
        "data": {"object": {"id": "in_1Pdemo", "amount_paid": 4900, "currency": "eur"}},
    });
    let payments = (Provider::Stripe, "payments", STRIPE_SECRET);
    let invoice = post(&client, &base, payments, None, &invoice).await;
    wait_done(&store, invoice, 1, Duration::from_secs(60)).await;
    let order =
        json!({"id": 5_512_331, "name": "#1042", "total_price": "86.00", "currency": "EUR"});
    let shop = (Provider::Shopify, "shop", SHOP_SECRET);
    let order = post(&client, &base, shop, Some("orders/create"), &order).await;
    wait_done(&store, order, 1, Duration::from_secs(60)).await;
    wait_matched(&store, issue).await;
    // A delivery with a bad signature, refused.
    let r = client
        .post(format!("{base}/hooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "forged-1")
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    store.close().await;
    (server, last.expect("a push"))
}

/// The dashboard's pages, by the names of their screenshots.
fn pages(event: EventId) -> Vec<(&'static str, String)> {
    vec![
        ("overview", "/overview".to_string()),
        ("events", "/events".to_string()),
        ("event", format!("/events/{event}")),
        ("dead-letters", "/dead-letters".to_string()),
        ("rules", "/rules".to_string()),
        ("plugins", "/plugins".to_string()),
        ("sources", "/sources".to_string()),
    ]
}

/// Opens `path` and waits until it is loaded.
async fn open(browser: &mut cdp::Browser, base: &str, path: &str) {
    browser.navigate(&format!("{base}{path}")).await;
    let pathname = path.split('?').next().unwrap_or(path);
    browser
        .wait_for(&format!(
            "location.pathname === '{pathname}' && document.readyState === 'complete'"
        ))
        .await;
}

/// Every page at a phone's width and at a desktop's: nothing wider than the window, no
/// console errors. The events filter form works from the keyboard alone, and every control
/// is a real, focusable one with a visible focus style.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_fits_a_phone_and_a_desktop_and_works_from_the_keyboard() {
    let receiver = Receiver::start().await;
    let (server, event) = demo_server(&receiver).await;
    let profile = tempfile::tempdir().unwrap();
    let mut browser = cdp::Browser::launch(profile.path()).await;
    let base = server.admin.clone();
    browser
        .sign_in(&format!("{base}/"), &server.admin_token())
        .await;

    let mut too_wide = Vec::new();
    for (width, height, mobile) in [(390, 844, true), (1280, 800, false)] {
        browser.set_viewport(width, height, mobile).await;
        for (_, path) in pages(event) {
            open(&mut browser, &base, &path).await;
            let sizes = browser
                .eval("[document.documentElement.scrollWidth, window.innerWidth]")
                .await;
            assert_eq!(
                sizes[1],
                json!(width),
                "{path}: the window is {width} px wide"
            );
            if sizes[0].as_i64() > sizes[1].as_i64() {
                too_wide.push(format!("{path} at {width} px: {sizes}"));
            }
            // Every control is a real one: no clickable or focusable stand-ins.
            let fake = browser
                .eval(
                    "document.querySelectorAll('[onclick], [role=button], div[tabindex], \
                     span[tabindex], td[tabindex]').length",
                )
                .await;
            assert_eq!(fake, json!(0), "{path}");
        }
    }
    assert!(
        too_wide.is_empty(),
        "pages wider than the window: {too_wide:#?}"
    );

    // The stylesheet gives keyboard focus a visible ring.
    let focus_rules = browser
        .eval(
            "Array.from(document.styleSheets).flatMap(s => Array.from(s.cssRules))\
             .filter(r => r.selectorText && r.selectorText.includes(':focus-visible'))\
             .map(r => r.selectorText + ' ' + r.style.outline).join('\\n')",
        )
        .await;
    let focus_rules = focus_rules.as_str().unwrap_or_default();
    for control in [
        "a:focus-visible",
        "button:focus-visible",
        "input:focus-visible",
        "select:focus-visible",
    ] {
        assert!(focus_rules.contains(control), "{control} in {focus_rules}");
    }
    assert!(focus_rules.contains("solid"), "{focus_rules}");

    // The events filter from the keyboard: Tab from the top of the page to the event type
    // field, type, Enter submits.
    open(&mut browser, &base, "/events").await;
    assert_eq!(
        browser
            .eval("Array.from(document.querySelectorAll('#filters input, #filters select, #filters button')).map(e => e.id).join(' ')")
            .await,
        json!("f-source f-event-type f-outcome f-since f-until f-q f-submit")
    );
    let mut reached = false;
    for _ in 0..30 {
        browser.press("Tab").await;
        if browser.eval("document.activeElement.id").await == json!("f-event-type") {
            reached = true;
            break;
        }
    }
    assert!(reached, "the event type field is reachable with Tab");
    browser.type_text("issues.opened").await;
    browser.press("Enter").await;
    browser
        .wait_for(
            "location.search.includes('event_type=issues.opened') && document.readyState === 'complete'",
        )
        .await;
    let rows = browser
        .eval("Array.from(document.querySelectorAll('#events tr[data-seq] td:nth-child(3)')).map(td => td.textContent)")
        .await;
    assert_eq!(rows, json!(["issues.opened"]));
    // Tab goes on through the form to its button.
    for _ in 0..30 {
        if browser.eval("document.activeElement.id").await == json!("f-submit") {
            break;
        }
        browser.press("Tab").await;
    }
    assert_eq!(
        browser.eval("document.activeElement.id").await,
        json!("f-submit")
    );

    let errors = browser.close().await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
    server.stop().await;
}

/// Where the screenshots live: `docs/dashboard/` of the repository.
fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard")
}

/// Most bytes a screenshot may take in the repository.
const MAX_SCREENSHOT: usize = 200 * 1024;

/// Makes the screenshots of `docs/dashboard/` (each page at 1280x800, the events list at a
/// phone's 390 px too) from a server holding demo events. Ignored: run it by hand after a
/// change to the pages (see docs/dashboard.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "writes docs/dashboard/*.png; run by hand after changing the pages"]
async fn dashboard_screenshots() {
    let receiver = Receiver::start().await;
    let (server, event) = demo_server(&receiver).await;
    let profile = tempfile::tempdir().unwrap();
    let mut browser = cdp::Browser::launch(profile.path()).await;
    let base = server.admin.clone();
    browser
        .sign_in(&format!("{base}/"), &server.admin_token())
        .await;
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut shots = vec![];
    browser.set_viewport(1280, 800, false).await;
    for (name, path) in pages(event) {
        open(&mut browser, &base, &path).await;
        shots.push((format!("{name}.png"), browser.screenshot().await));
    }
    browser.set_viewport(390, 844, true).await;
    open(&mut browser, &base, "/events").await;
    shots.push(("events-phone.png".to_string(), browser.screenshot().await));
    for (file, png) in shots {
        assert!(png.len() < MAX_SCREENSHOT, "{file} is {} bytes", png.len());
        std::fs::write(dir.join(&file), png).unwrap();
    }
    let errors = browser.close().await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
    server.stop().await;
}
