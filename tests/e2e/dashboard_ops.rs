//! The dashboard pages that act on operations: the overview and the dead letters, and the
//! replay of one execution from an event's timeline. Over HTTP (sessions, CSRF and origin
//! checks, the numbers shown, retry and purge, a new generation of one execution) and in a
//! real browser.

use std::time::{Duration, Instant};

use hookwise::model::{EventId, ExecutionStatus};
use hookwise::store::{DeadLetterFilter, GroupCommitSettings, Store};
use reqwest::StatusCode;
use serde_json::json;

use crate::dashboard::{Dash, cdp, csrf_of, location};
use crate::dispatch::{config_text, config_with_store, send, start, wait_done};
use crate::support::{Answer, Receiver, Server, TempPostgres};

/// Two rules on every push of `gh`: `forward` relays to `/hook`, `mirror` to `/mirror`.
fn rules(receiver: &Receiver) -> String {
    format!(
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}\" }}\n  - id: mirror\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}\" }}\n",
        receiver.url("/hook"),
        receiver.url("/mirror")
    )
}

/// A push to `gh` with a wrong signature: refused with `invalid_signature`.
async fn send_forged(client: &reqwest::Client, server: &Server) {
    let r = client
        .post(format!("{}/hooks/gh", server.base))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", "sha256=00")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// The text of the first element after `marker` in `html`, up to the next `<`.
fn text_after<'a>(html: &'a str, marker: &str) -> Option<&'a str> {
    let start = html.find(marker)? + marker.len();
    let rest = &html[start..];
    let rest = &rest[rest.find('>')? + 1..];
    Some(rest[..rest.find('<')?].trim())
}

/// The part of `html` from `from` to the next `until`.
fn section<'a>(html: &'a str, from: &str, until: &str) -> &'a str {
    let start = html
        .find(from)
        .unwrap_or_else(|| panic!("{from} in {html}"));
    let rest = &html[start..];
    &rest[..rest.find(until).map_or(rest.len(), |e| e + until.len())]
}

/// The value of the form field `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {html}"))
        + marker.len();
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

/// Execution ids of the dead letters listed on a page, in page order.
fn listed_dead(html: &str) -> Vec<String> {
    html.split("<tr data-execution=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// Waits until `check` holds for the store, or panics with what was last seen.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn dead_of(store: &Store, rule: &str) -> usize {
    store
        .list_dead_letters(&DeadLetterFilter {
            rule_id: Some(rule.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ops_pages_need_a_session_a_csrf_token_and_the_same_origin() {
    let receiver = Receiver::start().await;
    let server = start(&config_text(&receiver, ""), &rules(&receiver)).await;
    let dash = Dash::new(&server);
    let origin = dash.origin();
    let store = server.store().await;
    let event = send(
        &reqwest::Client::new(),
        &server.base,
        &json!({"ref": "refs/heads/main"}),
    )
    .await;
    wait_done(&store, event, 2, Duration::from_secs(30)).await;
    let x = store.executions_for_event(event).await.unwrap()[0].id;

    // Without a session: pages send to the sign-in page, posts are refused.
    for path in ["/overview", "/dead-letters", "/dead-letters?source=gh"] {
        let r = dash.get(path, None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(r.headers()), Some("/sign-in"), "{path}");
    }
    let posts = [
        "/dead-letters/confirm".to_string(),
        "/dead-letters/act".to_string(),
        format!("/executions/{x}/replay/preview"),
        format!("/executions/{x}/replay"),
    ];
    for path in &posts {
        let r = dash
            .post_form(
                path,
                None,
                &[("origin", &origin)],
                &[("action", "purge"), ("scope", "all"), ("until", "1")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }

    // The overview is the signed-in home.
    let cookie = dash.sign_in().await;
    assert_eq!(
        location(dash.get("/", Some(&cookie)).await.headers()),
        Some("/overview")
    );
    let (status, html) = dash.page("/overview", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&html);
    for link in [
        "href=\"/overview\"",
        "href=\"/events\"",
        "href=\"/dead-letters\"",
    ] {
        assert!(html.contains(link), "{link} in the navigation");
    }

    // With a session but without the token, with a stale one, or from another origin: 403,
    // and nothing happens.
    for path in &posts {
        let form = [
            ("action", "purge"),
            ("scope", "all"),
            ("until", "99999999999999"),
        ];
        let r = dash
            .post_form(path, Some(&cookie), &[("origin", &origin)], &form)
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "no token: {path}");
        let mut stale = form.to_vec();
        stale.push(("csrf", "0000"));
        let r = dash
            .post_form(path, Some(&cookie), &[("origin", &origin)], &stale)
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "stale token: {path}");
        let mut good = form.to_vec();
        good.push(("csrf", &csrf));
        let r = dash
            .post_form(
                path,
                Some(&cookie),
                &[("origin", "http://evil.example")],
                &good,
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "foreign origin: {path}");
        let r = dash
            .post_form(
                path,
                Some(&cookie),
                &[("origin", &origin), ("sec-fetch-site", "cross-site")],
                &good,
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "cross-site: {path}");
    }
    assert_eq!(store.executions_for_event(event).await.unwrap().len(), 2);

    // Bad input is a 400 page, never a panic.
    for path in [
        "/dead-letters?cursor=nope",
        "/dead-letters?since=soon",
        "/dead-letters?bogus=1",
    ] {
        let (status, html) = dash.page(path, &cookie).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {html}");
    }
    // "All matching" without the confirmation's time bound, nothing selected, a bad id, an
    // unknown action.
    for form in [
        &[("action", "purge"), ("scope", "all")][..],
        &[("action", "retry")][..],
        &[("action", "retry"), ("id", "x")][..],
        &[("action", "explode")][..],
    ] {
        let mut form = form.to_vec();
        form.push(("csrf", &csrf));
        let r = dash
            .post_form(
                "/dead-letters/act",
                Some(&cookie),
                &[("origin", &origin)],
                &form,
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{form:?}");
    }
    let r = dash
        .post_form(
            "/executions/nope/replay/preview",
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = dash
        .post_form(
            &format!("/executions/{}/replay", EventId::new()),
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    store.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overview_counts_what_was_sent() {
    let receiver = Receiver::start().await;
    // Every `mirror` action fails for good: dead letters.
    receiver.route("/mirror", Answer::status(400));
    let server = start(&config_text(&receiver, ""), &rules(&receiver)).await;
    let store = server.store().await;
    let client = reqwest::Client::new();
    for n in 0..3 {
        let event = send(&client, &server.base, &json!({"n": n})).await;
        wait_done(&store, event, 2, Duration::from_secs(30)).await;
    }
    send_forged(&client, &server).await;
    send_forged(&client, &server).await;

    let dash = Dash::new(&server);
    let cookie = dash.sign_in().await;
    // Refused attempts are written without holding up their answers: wait for them.
    let start = Instant::now();
    let html = loop {
        let (status, page) = dash.page("/overview", &cookie).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let table = section(&page, "id=\"deliveries-hour\"", "</table>");
        if text_after(table, "<td class=\"refused\"") == Some("2") {
            break page;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for window in ["hour", "day"] {
        let table = section(&html, &format!("id=\"deliveries-{window}\""), "</table>");
        let row = section(table, "<tr data-source=\"gh\">", "</tr>");
        assert_eq!(
            text_after(row, "<td class=\"accepted\""),
            Some("3"),
            "{row}"
        );
        assert_eq!(text_after(row, "<td class=\"refused\""), Some("2"), "{row}");
        assert_eq!(
            text_after(row, "<td class=\"events-count\""),
            Some("3"),
            "{row}"
        );
        assert!(row.contains("invalid_signature"), "the top reason: {row}");
        assert!(row.contains("×2"), "{row}");
        let tally = section(&html, &format!("id=\"executions-{window}\""), "</ul>");
        assert_eq!(
            text_after(tally, "data-status=\"succeeded\""),
            Some("3"),
            "{tally}"
        );
        assert_eq!(
            text_after(tally, "data-status=\"dead\""),
            Some("3"),
            "{tally}"
        );
        // Two actions per event: three events planned six executions.
        assert_eq!(
            text_after(tally, "data-status=\"planned\""),
            Some("6"),
            "{tally}"
        );
        // The chart: an inline SVG whose bars add up to what was sent.
        let svg = section(
            &html,
            &format!("<svg class=\"chart\" id=\"chart-{window}\""),
            "</svg>",
        );
        assert!(svg.contains("3 accepted and 2 refused deliveries"), "{svg}");
        assert!(svg.contains("class=\"accepted\"") && svg.contains("class=\"refused\""));
    }
    assert_eq!(
        text_after(
            section(&html, "id=\"dead-letter-count\"", "</div>"),
            "<a href=\"/dead-letters\""
        ),
        Some("3")
    );
    assert!(html.contains("since this server process started"), "{html}");
    // Three signed deliveries were answered: the latency has numbers.
    let latency = section(&html, "id=\"latency\"", "</div>");
    assert!(latency.contains(" ms"), "{latency}");
    assert!(!html.contains("style="), "no inline style (CSP)");
    store.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_filtered_retried_and_purged() {
    let receiver = Receiver::start().await;
    receiver.route("/mirror", Answer::status(400));
    // The first three `forward` calls fail for good too; later ones (retries) succeed.
    receiver.answer([
        Answer::status(400),
        Answer::status(400),
        Answer::status(400),
    ]);
    let server = start(&config_text(&receiver, ""), &rules(&receiver)).await;
    let store = server.store().await;
    let client = reqwest::Client::new();
    let mut events = Vec::new();
    for n in 0..3 {
        let event = send(&client, &server.base, &json!({"n": n})).await;
        wait_done(&store, event, 2, Duration::from_secs(30)).await;
        events.push(event);
    }
    assert_eq!(dead_of(&store, "forward").await, 3);
    assert_eq!(dead_of(&store, "mirror").await, 3);

    let dash = Dash::new(&server);
    let origin = dash.origin();
    let cookie = dash.sign_in().await;
    let (status, html) = dash.page("/dead-letters", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&html);
    assert_eq!(listed_dead(&html).len(), 6, "{html}");
    assert!(html.contains("6 dead letters match."), "{html}");
    assert!(html.contains("fatal: "), "the last error: {html}");
    for id in listed_dead(&html) {
        assert!(
            html.contains(&format!("<label for=\"select-{id}\"")),
            "each checkbox has a label"
        );
    }

    // Filters: rule, plugin, source.
    let (_, forward) = dash.page("/dead-letters?rule=forward", &cookie).await;
    let forward_ids = listed_dead(&forward);
    assert_eq!(forward_ids.len(), 3, "{forward}");
    assert!(
        forward.contains("3 dead letters match this filter."),
        "{forward}"
    );
    let (_, relay) = dash.page("/dead-letters?plugin=relay", &cookie).await;
    assert_eq!(listed_dead(&relay).len(), 6);
    let (_, none) = dash
        .page("/dead-letters?plugin=nope&source=gh", &cookie)
        .await;
    assert_eq!(listed_dead(&none).len(), 0);
    assert!(none.contains("No dead letters match."), "{none}");
    let (_, other) = dash.page("/dead-letters?source=other", &cookie).await;
    assert_eq!(listed_dead(&other).len(), 0);

    // Retry one selected dead letter: it runs again (the receiver now answers 200) and
    // leaves the list; the others stay.
    let picked = forward_ids[0].clone();
    let x = store
        .get_execution(picked.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let r = dash
        .post_form(
            "/dead-letters/act",
            Some(&cookie),
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
            &[
                ("csrf", &csrf),
                ("rule", "forward"),
                ("scope", "selected"),
                ("action", "retry"),
                ("id", &picked),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(r.headers()),
        Some("/dead-letters?rule=forward&done=retried&n=1")
    );
    wait_done(&store, x.event_id, 3, Duration::from_secs(30)).await;
    let again = store.executions_for_event(x.event_id).await.unwrap();
    let new = again
        .iter()
        .find(|e| e.generation == 1)
        .expect("a new generation");
    assert_eq!(
        (new.rule_id.as_str(), new.status),
        ("forward", ExecutionStatus::Succeeded)
    );
    let (_, after) = dash
        .page("/dead-letters?rule=forward&done=retried&n=1", &cookie)
        .await;
    assert!(after.contains("1 dead letter retried."), "{after}");
    let left = listed_dead(&after);
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&picked));

    // Purge all that match `rule=mirror`, after a confirmation that shows their count.
    let r = dash
        .post_form(
            "/dead-letters/confirm",
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf), ("rule", "mirror"), ("action", "purge")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let confirm = r.text().await.unwrap();
    assert!(confirm.contains("Purge 3 dead letters?"), "{confirm}");
    assert_eq!(dead_of(&store, "mirror").await, 3, "nothing purged yet");
    let until = hidden(&confirm, "until");
    let r = dash
        .post_form(
            "/dead-letters/act",
            Some(&cookie),
            &[("origin", &origin)],
            &[
                ("csrf", &csrf),
                ("rule", "mirror"),
                ("scope", "all"),
                ("action", "purge"),
                ("until", &until),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(r.headers()),
        Some("/dead-letters?rule=mirror&done=purged&n=3")
    );
    assert_eq!(dead_of(&store, "mirror").await, 0);
    assert_eq!(
        dead_of(&store, "forward").await,
        2,
        "the others are untouched"
    );
    // The executions stay, as history.
    for event in &events {
        assert!(store.executions_for_event(*event).await.unwrap().len() >= 2);
    }

    // Retry all that match, confirmed: both remaining run again.
    let r = dash
        .post_form(
            "/dead-letters/confirm",
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf), ("action", "retry")],
        )
        .await;
    let confirm = r.text().await.unwrap();
    assert!(confirm.contains("Retry 2 dead letters?"), "{confirm}");
    let until = hidden(&confirm, "until");
    let r = dash
        .post_form(
            "/dead-letters/act",
            Some(&cookie),
            &[("origin", &origin)],
            &[
                ("csrf", &csrf),
                ("scope", "all"),
                ("action", "retry"),
                ("until", &until),
            ],
        )
        .await;
    assert_eq!(
        location(r.headers()),
        Some("/dead-letters?done=retried&n=2")
    );
    assert_eq!(dead_of(&store, "forward").await, 0);
    for event in &events {
        if *event != x.event_id {
            wait_done(&store, *event, 3, Duration::from_secs(30)).await;
        }
    }
    let (_, empty) = dash.page("/dead-letters", &cookie).await;
    assert!(empty.contains("No dead letters."), "{empty}");
    store.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_execution_is_replayed_from_the_timeline_as_a_new_generation() {
    let receiver = Receiver::start().await;
    let server = start(&config_text(&receiver, ""), &rules(&receiver)).await;
    let store = server.store().await;
    let event = send(
        &reqwest::Client::new(),
        &server.base,
        &json!({"ref": "refs/heads/main"}),
    )
    .await;
    wait_done(&store, event, 2, Duration::from_secs(30)).await;
    let xs = store.executions_for_event(event).await.unwrap();
    let mirror = xs.iter().find(|x| x.rule_id == "mirror").unwrap();

    let dash = Dash::new(&server);
    let origin = dash.origin();
    let cookie = dash.sign_in().await;
    let (status, page) = dash.page(&format!("/events/{event}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&page);
    for x in &xs {
        assert!(
            page.contains(&format!("action=\"/executions/{}/replay/preview\"", x.id)),
            "a replay button per finished execution"
        );
    }

    // The dry run shows what would run; nothing has.
    let r = dash
        .post_form(
            &format!("/executions/{}/replay/preview", mirror.id),
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let preview = r.text().await.unwrap();
    let planned = section(&preview, "id=\"planned\"", "</table>");
    assert!(planned.contains("mirror"), "{planned}");
    assert!(planned.contains("<td>1</td>"), "generation 1: {planned}");
    assert!(
        preview.contains(&format!("action=\"/executions/{}/replay\"", mirror.id)),
        "{preview}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.executions_for_event(event).await.unwrap().len(), 2);

    // Confirmed: a new generation of just that execution.
    let r = dash
        .post_form(
            &format!("/executions/{}/replay", mirror.id),
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = format!("/events/{event}");
    assert_eq!(location(r.headers()), Some(back.as_str()));
    wait_done(&store, event, 3, Duration::from_secs(30)).await;
    let after = store.executions_for_event(event).await.unwrap();
    let new: Vec<_> = after.iter().filter(|x| x.generation == 1).collect();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].rule_id, "mirror");
    assert_eq!(new[0].action_index, mirror.action_index);
    assert_eq!(new[0].status, ExecutionStatus::Succeeded);
    let (_, page) = dash.page(&back, &cookie).await;
    assert!(page.contains("generation 1"), "{page}");
    store.close().await;
    server.stop().await;
}

/// A real browser: sign in, see the overview and its chart, open the dead letters, select one
/// and retry it, see it leave the list. No console errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ops_pages_in_a_real_browser() {
    let receiver = Receiver::start().await;
    receiver.route("/mirror", Answer::status(400));
    let server = start(&config_text(&receiver, ""), &rules(&receiver)).await;
    let store = server.store().await;
    let client = reqwest::Client::new();
    let mut events = Vec::new();
    for n in 0..2 {
        let event = send(&client, &server.base, &json!({"n": n})).await;
        wait_done(&store, event, 2, Duration::from_secs(30)).await;
        events.push(event);
    }
    send_forged(&client, &server).await;
    let dead = store
        .list_dead_letters(&DeadLetterFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    // Retried, the action succeeds.
    receiver.route("/mirror", Answer::status(200));
    let picked = dead[0].execution_id;

    let profile = tempfile::tempdir().unwrap();
    let mut browser = cdp::Browser::launch(profile.path()).await;
    let base = server.admin.clone();
    browser
        .sign_in(&format!("{base}/"), &server.admin_token())
        .await;
    assert_eq!(
        browser
            .eval("document.querySelectorAll('svg.chart rect.accepted').length > 0")
            .await,
        json!(true)
    );
    assert_eq!(
        browser
            .eval("document.querySelector('#chart-hour').getBoundingClientRect().width > 500")
            .await,
        json!(true),
        "the chart takes the page's width"
    );
    let text = browser.eval("document.body.innerText").await;
    assert!(
        text.as_str().unwrap_or_default().contains("Last day"),
        "{text}"
    );

    // Dead letters, through the navigation.
    browser
        .eval("document.querySelector('nav a[href=\"/dead-letters\"]').click(); true")
        .await;
    browser
        .wait_for("location.pathname === '/dead-letters' && document.readyState === 'complete'")
        .await;
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#dead-letters tr[data-execution]').length")
            .await,
        json!(2)
    );
    // Select through the label (as a keyboard or a click on it would), then retry.
    browser
        .eval(&format!(
            "document.querySelector('label[for=\"select-{picked}\"]').click(); \
             document.getElementById('select-{picked}').checked"
        ))
        .await;
    assert_eq!(
        browser
            .eval(&format!(
                "document.getElementById('select-{picked}').checked"
            ))
            .await,
        json!(true)
    );
    browser
        .eval("document.getElementById('retry-selected').click(); true")
        .await;
    browser
        .wait_for(
            "location.search.includes('done=retried') && document.readyState === 'complete' \
             && document.getElementById('done') !== null",
        )
        .await;
    assert_eq!(
        browser
            .eval(&format!(
                "document.querySelector('tr[data-execution=\"{picked}\"]') === null"
            ))
            .await,
        json!(true),
        "the retried one left the list"
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#dead-letters tr[data-execution]').length")
            .await,
        json!(1)
    );
    let x = store.get_execution(picked).await.unwrap().unwrap();
    wait_until("the retried execution ran again", || {
        let store = store.clone();
        async move {
            store
                .executions_for_event(x.event_id)
                .await
                .unwrap()
                .iter()
                .any(|e| e.generation == 1 && e.status != ExecutionStatus::Pending)
        }
    })
    .await;

    // Nothing makes the page wider than the window.
    browser.navigate(&format!("{base}/overview")).await;
    browser
        .wait_for("location.pathname === '/overview' && document.readyState === 'complete'")
        .await;
    assert_eq!(
        browser
            .eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        json!(true)
    );
    let errors = browser.close().await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
    store.close().await;
    server.stop().await;
}

/// The overview's counts and the dead letters' filters, retry and purge on PostgreSQL, where
/// every delivery attempt has a row of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ops_pages_on_postgres() {
    let pg = TempPostgres::create()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let receiver = Receiver::start().await;
    receiver.route("/mirror", Answer::status(400));
    let server = start(
        &config_with_store(&receiver, "", &pg.url),
        &rules(&receiver),
    )
    .await;
    let store = Store::open(&pg.url, &server.dir, GroupCommitSettings::default())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    for n in 0..2 {
        let event = send(&client, &server.base, &json!({"n": n})).await;
        wait_done(&store, event, 2, Duration::from_secs(30)).await;
    }
    send_forged(&client, &server).await;

    let dash = Dash::new(&server);
    let origin = dash.origin();
    let cookie = dash.sign_in().await;
    // Wait on the hour, which the page counts first: the refusal may be committed between the
    // two windows' queries, and then only the day would hold it.
    let start = Instant::now();
    let html = loop {
        let (status, page) = dash.page("/overview", &cookie).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let table = section(&page, "id=\"deliveries-hour\"", "</table>");
        if text_after(table, "<td class=\"refused\"") == Some("1") {
            break page;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let row = section(
        section(&html, "id=\"deliveries-hour\"", "</table>"),
        "<tr data-source=\"gh\">",
        "</tr>",
    );
    assert_eq!(
        text_after(row, "<td class=\"accepted\""),
        Some("2"),
        "{row}"
    );
    assert_eq!(
        text_after(row, "<td class=\"events-count\""),
        Some("2"),
        "{row}"
    );
    assert!(row.contains("invalid_signature"), "{row}");
    let tally = section(&html, "id=\"executions-day\"", "</ul>");
    assert_eq!(
        text_after(tally, "data-status=\"dead\""),
        Some("2"),
        "{tally}"
    );

    let (_, page) = dash
        .page("/dead-letters?plugin=relay&rule=mirror", &cookie)
        .await;
    let csrf = csrf_of(&page);
    assert_eq!(listed_dead(&page).len(), 2, "{page}");
    let (_, page) = dash.page("/dead-letters?plugin=other", &cookie).await;
    assert_eq!(listed_dead(&page).len(), 0);
    // Paging: one dead letter is older than the other.
    let (_, page) = dash.page("/dead-letters", &cookie).await;
    let ids = listed_dead(&page);
    let first = store
        .get_execution(ids[0].parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let dead = store
        .list_dead_letters(&DeadLetterFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead[0].execution_id, first.id, "newest first");
    let cursor = format!("{}.{}", dead[0].created_at.0, dead[0].execution_id);
    let (status, older) = dash
        .page(&format!("/dead-letters?cursor={cursor}"), &cookie)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed_dead(&older), vec![ids[1].clone()]);

    let r = dash
        .post_form(
            "/dead-letters/confirm",
            Some(&cookie),
            &[("origin", &origin)],
            &[("csrf", &csrf), ("plugin", "relay"), ("action", "purge")],
        )
        .await;
    let confirm = r.text().await.unwrap();
    assert!(confirm.contains("Purge 2 dead letters?"), "{confirm}");
    let until = hidden(&confirm, "until");
    let r = dash
        .post_form(
            "/dead-letters/act",
            Some(&cookie),
            &[("origin", &origin)],
            &[
                ("csrf", &csrf),
                ("plugin", "relay"),
                ("scope", "all"),
                ("action", "purge"),
                ("until", &until),
            ],
        )
        .await;
    assert_eq!(
        location(r.headers()),
        Some("/dead-letters?plugin=relay&done=purged&n=2")
    );
    assert_eq!(dead_of(&store, "mirror").await, 0);
    store.close().await;
    server.stop().await;
    pg.drop_db().await.unwrap();
}
