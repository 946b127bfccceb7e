//! The dashboard pages about configuration: rules (and trying a rule against stored
//! history), plugins and sources; and the same backtest from the command line
//! (`hookwise test --against-store`). Sessions and CSRF, reloads with broken files, hostile
//! pasted YAML, figures from stored attempts on SQLite and PostgreSQL, secrets never shown,
//! and a real browser running a backtest.

use std::time::Duration;

use hookwise::store::{GroupCommitSettings, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::dashboard::{Dash, cdp, csrf_of, location};
use crate::dispatch::{SECRET, config_with_store, send, wait_done};
use crate::support::{Answer, Backend, Receiver, Server, TempPostgres, on_every_backend, server};

/// The store of most tests: SQLite in the server's folder.
const SQLITE: &str = "sqlite://hookwise.db";

/// Two rules on source `gh`: `forward` takes every push; `tags-only` pushes of tags, to a
/// route that refuses (so its one attempt fails for good).
fn rules(receiver: &Receiver) -> String {
    format!(
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}?ref={{{{ payload.ref }}}}\" }}\n  - id: tags-only\n    source: gh\n    events: [push]\n    when:\n      all:\n        - {{ path: $.ref, starts_with: refs/tags/ }}\n    actions:\n      - plugin: relay\n        with: {{ url: \"{}\" }}\n        retry: {{ attempts: 1 }}\n",
        receiver.url("/hook"),
        receiver.url("/fail")
    )
}

/// A server on `store` with those rules; a running `/fail` route answers 400 (fatal).
async fn start_on(receiver: &Receiver, store: &str) -> Server {
    receiver.route("/fail", Answer::status(400));
    server(config_with_store(receiver, "", store))
        .file("rules.yaml", rules(receiver))
        .env("GH_SECRET", SECRET)
        .start()
        .await
}

/// A second handle on the store of a server started on `url`.
async fn open_store(server: &Server, url: &str) -> Store {
    Store::open(url, &server.dir, GroupCommitSettings::default())
        .await
        .expect("open the store")
}

/// A push to a branch and a push of a tag, both run to the end; returns (branch, tag) ids.
async fn two_pushes(server: &Server, url: &str) -> (String, String) {
    let store = open_store(server, url).await;
    let client = reqwest::Client::new();
    let main = send(&client, &server.base, &json!({"ref": "refs/heads/main"})).await;
    wait_done(&store, main, 1, Duration::from_secs(60)).await;
    let tag = send(&client, &server.base, &json!({"ref": "refs/tags/v1.0"})).await;
    wait_done(&store, tag, 2, Duration::from_secs(60)).await;
    (main.to_string(), tag.to_string())
}

/// Whether sending a request failed because the server closed the connection while the body
/// was being written (a broken pipe or a reset, somewhere in the error's sources).
fn broken_write(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            )
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Posts a signed-in, same-origin form.
async fn post(dash: &Dash, cookie: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let origin = dash.origin();
    dash.post_form(
        path,
        Some(cookie),
        &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        form,
    )
    .await
}

/// The backtest form posted with the session's CSRF token; returns (status, page).
async fn backtest(dash: &Dash, cookie: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
    let (_, page) = dash.page("/rules", cookie).await;
    let csrf = csrf_of(&page);
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    let r = post(dash, cookie, "/rules/backtest", &form).await;
    let status = r.status();
    (status, r.text().await.unwrap())
}

/// The text of the first element after `marker` up to the next `<`.
fn text_after<'a>(html: &'a str, marker: &str) -> &'a str {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"))
        + marker.len();
    let rest = &html[start..];
    let start = rest.find('>').unwrap_or(0) + 1;
    let end = rest[start..].find('<').unwrap_or(0) + start;
    rest[start..end].trim()
}

/// The HTML of one backtest event's entry.
fn tried_entry<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("data-event=\"{id}\""))
        .unwrap_or_else(|| panic!("event {id} in {html}"));
    let end = html[start..]
        .find("</li>")
        .map_or(html.len(), |e| e + start);
    &html[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_need_a_session_and_posts_their_csrf_token() {
    let receiver = Receiver::start().await;
    let server = start_on(&receiver, SQLITE).await;
    let dash = Dash::new(&server);
    for path in ["/rules", "/plugins", "/sources", "/rules?edit=forward"] {
        let r = dash.get(path, None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(r.headers()), Some("/sign-in"), "{path}");
    }
    for path in ["/rules/reload", "/rules/backtest"] {
        let r = dash
            .post_form(path, None, &[], &[("rule", "forward")])
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let cookie = dash.sign_in().await;
    let (status, page) = dash.page("/rules", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&page);
    for path in ["/rules/reload", "/rules/backtest"] {
        // No CSRF token, a wrong one, and the right one from another site.
        let r = post(&dash, &cookie, path, &[("rule", "forward")]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        let r = post(
            &dash,
            &cookie,
            path,
            &[("csrf", "0000"), ("rule", "forward")],
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        let r = dash
            .post_form(
                path,
                Some(&cookie),
                &[
                    ("origin", "http://evil.example"),
                    ("sec-fetch-site", "cross-site"),
                ],
                &[("csrf", &csrf)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // The pages link to each other, and every page of the nav is there.
    for path in ["/rules", "/plugins", "/sources"] {
        let (status, html) = dash.page(path, &cookie).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        for link in [
            "href=\"/events\"",
            "href=\"/rules\"",
            "href=\"/plugins\"",
            "href=\"/sources\"",
        ] {
            assert!(html.contains(link), "{link} on {path}");
        }
        assert!(!html.contains("<script>"), "no inline script on {path}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_page_shows_places_and_the_last_reload_with_its_errors() {
    let receiver = Receiver::start().await;
    let server = start_on(&receiver, SQLITE).await;
    let dash = Dash::new(&server);
    let cookie = dash.sign_in().await;
    let (_, html) = dash.page("/rules", &cookie).await;
    // file:line of each rule, its conditions and actions.
    assert!(html.contains("rules.yaml:2</code>"), "{html}");
    assert!(html.contains("rules.yaml:8</code>"), "{html}");
    assert!(
        html.contains("when all($.ref starts_with &quot;refs&#x2f;tags&#x2f;&quot;)"),
        "{html}"
    );
    assert!(html.contains("id=\"reload-ok\""), "{html}");

    // A broken rule file: the reload fails with the problem's line and column, the rules in
    // force stay.
    let file = server.dir.join("rules.yaml");
    std::fs::write(
        &file,
        "rules:\n  - id: forward\n    source: gh\n    events: [push]\n    actions:\n      - plugin: nope\n",
    )
    .unwrap();
    let csrf = csrf_of(&html);
    let r = post(&dash, &cookie, "/rules/reload", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(r.headers()), Some("/rules#reload"));
    let (_, html) = dash.page("/rules", &cookie).await;
    assert!(html.contains("id=\"reload-error\""), "{html}");
    assert!(html.contains("failed; the rules in force stay"), "{html}");
    assert!(html.contains("rules.yaml:6:17: "), "{html}");
    assert!(html.contains("nope"), "{html}");
    assert!(html.contains("2 rules in force"), "{html}");

    // Fixed again: the reload succeeds and the new rule is in force.
    std::fs::write(
        &file,
        "rules:\n  - id: only-one\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: { url: \"http://127.0.0.1:9/\" }\n",
    )
    .unwrap();
    let r = post(&dash, &cookie, "/rules/reload", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = dash.page("/rules", &cookie).await;
    assert!(html.contains("id=\"reload-ok\""), "{html}");
    assert!(html.contains("1 rule in force"), "{html}");
    assert!(html.contains("<code>only-one</code>"), "{html}");

    // "Try a copy" puts the rule's file in the text box.
    let (status, html) = dash.page("/rules?edit=only-one", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("  - id: only-one\n"), "{html}");
    let (status, _) = dash.page("/rules?edit=missing", &cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backtest_shows_matches_reasons_inputs_and_refuses_hostile_yaml() {
    let receiver = Receiver::start().await;
    let server = start_on(&receiver, SQLITE).await;
    let (main, tag) = two_pushes(&server, SQLITE).await;
    let dash = Dash::new(&server);
    let cookie = dash.sign_in().await;
    let store = server.store().await;
    let executions_before = store.execution_counts().await.unwrap();
    let events_before = store.count_events().await.unwrap();

    // One rule in force: the tag matched, the branch did not, and why.
    let (status, html) = backtest(&dash, &cookie, &[("rule", "tags-only"), ("limit", "10")]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("2 events, 1 matched"), "{html}");
    let hit = tried_entry(&html, &tag);
    assert!(
        hit.contains("<strong>matched</strong> <code>tags-only</code>"),
        "{hit}"
    );
    let miss = tried_entry(&html, &main);
    assert!(
        miss.contains("<strong>not matched</strong> <code>tags-only</code>"),
        "{miss}"
    );
    assert!(miss.contains("starts_with"), "{miss}");
    assert!(miss.contains("refs&#x2f;heads&#x2f;main"), "{miss}");
    assert!(
        !miss.contains("<code>forward</code>"),
        "only the rule asked about: {miss}"
    );

    // Pasted rules: rendered inputs for matches; the limit and the window apply.
    let yaml = "rules:\n  - id: pasted-rule\n    source: gh\n    events: [push]\n    when:\n      all:\n        - { path: $.ref, equals: refs/heads/main }\n    actions:\n      - plugin: relay\n        with: { url: \"http://127.0.0.1:9/\", body: \"branch {{ payload.ref }}\" }\n";
    let (status, html) = backtest(&dash, &cookie, &[("yaml", yaml), ("limit", "10")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("2 events, 1 matched"), "{html}");
    let hit = tried_entry(&html, &main);
    assert!(hit.contains("\"branch refs/heads/main\""), "{hit}");
    let (_, html) = backtest(&dash, &cookie, &[("yaml", yaml), ("limit", "1")]).await;
    assert!(html.contains("1 event, 0 matched"), "newest first: {html}");
    let (_, html) = backtest(
        &dash,
        &cookie,
        &[
            ("yaml", yaml),
            ("since", "2000-01-01T00:00:00Z"),
            ("until", "2001-01-01T00:00:00Z"),
        ],
    )
    .await;
    assert!(html.contains("0 events, 0 matched"), "{html}");
    assert!(html.contains("No stored events"), "{html}");

    // A template that would loop for ever runs out of fuel: a reason, not a hang.
    let looping = "rules:\n  - id: loops\n    source: gh\n    events: [push]\n    actions:\n      - plugin: relay\n        with: { url: \"{% for i in range(1000000000) %}x{% endfor %}\" }\n";
    let (status, html) = backtest(&dash, &cookie, &[("yaml", looping)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("2 events, 0 matched"), "{html}");
    assert!(html.contains("template error"), "{html}");

    // Bad YAML: the loader's problems with line:column, nothing tried.
    let cases: Vec<(String, &str)> = vec![
        ("rules: [\n  - id: x\n".to_string(), "pasted:"),
        ("rules:\n  - id: x\n    source: gh\n    events: [push]\n    actions:\n      - plugin: nope\n".to_string(), "pasted:6:17: "),
        ("rules:\n  - id: x\n    source: nowhere\n    events: [push]\n    actions:\n      - plugin: relay\n".to_string(), "pasted:3:"),
        (format!("rules:\n{}x\n", "- ".repeat(5000)), "deeper than 64 levels"),
        (format!("rules: {}", "[".repeat(300)), "pasted:1:"),
        ("a".repeat(300 * 1024), "at most 256 KiB"),
        ("just text\n".to_string(), "pasted:"),
    ];
    for (text, expected) in &cases {
        let (status, html) = backtest(&dash, &cookie, &[("yaml", text)]).await;
        assert_eq!(status, StatusCode::OK, "{expected}");
        assert!(html.contains("id=\"backtest-problems\""), "{expected}");
        assert!(html.contains("Nothing was tried"), "{expected}");
        assert!(
            html.contains(expected),
            "{expected} in {}",
            &html[..html.len().min(4000)]
        );
        assert!(!html.contains("id=\"backtest-summary\""), "{expected}");
    }
    // A body past the limit is refused before it is read whole: answered 413, or, when the
    // answer comes while the client is still sending, the connection is closed under the
    // client's write (reqwest then reports the broken write, not the answer).
    let (_, page) = dash.page("/rules", &cookie).await;
    let csrf = csrf_of(&page);
    let huge = "%".repeat(1 << 20);
    let origin = dash.origin();
    let sent = dash
        .try_post_form(
            "/rules/backtest",
            Some(&cookie),
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
            &[("csrf", &csrf), ("yaml", &huge)],
        )
        .await;
    match sent {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(
            broken_write(&e),
            "the oversized form failed otherwise than by a closed connection: {e:?}"
        ),
    }
    // A new client: the refused request's connection is closed by the server, and a pooled
    // client could send the next request on it before it saw the close (IncompleteMessage).
    let dash = Dash::new(&server);
    let (status, _) = dash.page("/rules", &cookie).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the dashboard answers after the refusal"
    );
    // Bad numbers and times, and a rule that is not in force.
    for (fields, expected) in [
        (vec![("limit", "1001")], "1 to 1000"),
        (vec![("limit", "0")], "1 to 1000"),
        (vec![("since", "soon")], "since: "),
        (vec![("rule", "missing")], "no rule `missing`"),
    ] {
        let (status, html) = backtest(&dash, &cookie, &fields).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(expected), "{expected} in {html}");
    }

    // Nothing ran and nothing was stored.
    assert_eq!(store.execution_counts().await.unwrap(), executions_before);
    assert_eq!(store.count_events().await.unwrap(), events_before);
    assert!(dash.page("/events", &cookie).await.0 == StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_against_store_on_the_command_line() {
    let receiver = Receiver::start().await;
    let server = start_on(&receiver, SQLITE).await;
    let (main, tag) = two_pushes(&server, SQLITE).await;
    let store = server.store().await;
    let executions_before = store.execution_counts().await.unwrap();

    let (code, out) = server.cli(&["test", "--against-store"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{tag} ")), "{out}");
    assert!(out.contains("MATCHED tags-only"), "{out}");
    assert!(
        out.contains("NOT MATCHED tags-only: when.all[0]: $.ref selected \"refs/heads/main\""),
        "{out}"
    );
    assert!(
        out.contains("/hook?ref=refs/tags/v1.0\""),
        "rendered input: {out}"
    );
    assert!(out.trim_end().ends_with("2 events, 2 matched"), "{out}");

    // Other rules from a file, one rule, JSON.
    std::fs::write(
        server.dir.join("try.yaml"),
        "rules:\n  - id: main-only\n    source: gh\n    events: [push]\n    when:\n      all:\n        - { path: $.ref, equals: refs/heads/main }\n    actions:\n      - plugin: relay\n        with: { url: \"http://127.0.0.1:9/\" }\n",
    )
    .unwrap();
    let (code, out) = server.cli(&[
        "test",
        "--rules",
        "try.yaml",
        "--against-store",
        "--since",
        "1h",
        "--limit",
        "5",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["summary"]["events"], json!(2));
    assert_eq!(answer["summary"]["matched"], json!(1));
    assert_eq!(answer["summary"]["rules"]["main-only"], json!(1));
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events[0]["id"], json!(tag), "newest first");
    assert_eq!(events[0]["not_matched"][0]["rule"], json!("main-only"));
    assert!(
        events[0]["not_matched"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("equals")
    );
    assert_eq!(events[1]["matched"][0]["rule"], json!("main-only"));
    assert_eq!(events[1]["id"], json!(main));

    let (code, out) = server.cli(&[
        "test",
        "--against-store",
        "--limit",
        "1",
        "--rule",
        "forward",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("1 event, 1 matched"), "{out}");
    assert!(!out.contains("tags-only"), "{out}");

    // Usage errors, and a broken rule file with its place.
    assert_eq!(
        server
            .cli(&["test", "--against-store", "--limit", "5000"])
            .0,
        2
    );
    assert_eq!(
        server
            .cli(&["test", "--against-store", "--since", "soon"])
            .0,
        2
    );
    assert_eq!(
        server.cli(&["test", "--against-store", "--source", "gh"]).0,
        2
    );
    assert_eq!(server.cli(&["test", "--limit", "5"]).0, 2);
    std::fs::write(server.dir.join("bad.yaml"), "rules:\n  - id: b\n    source: gh\n    events: [push]\n    actions:\n      - plugin: nope\n").unwrap();
    let out = std::process::Command::new(crate::support::hookwise_bin())
        .args([
            "test",
            "--rules",
            "bad.yaml",
            "--against-store",
            "--config",
            "hookwise.yaml",
        ])
        .current_dir(&server.dir)
        .env("GH_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:6:17: "), "{err}");

    // Nothing ran.
    assert_eq!(store.execution_counts().await.unwrap(), executions_before);
    server.stop().await;
}

/// Plugins and sources pages, and the backtest's reads, on one backend.
async fn figures_and_sources(backend: Backend) {
    let receiver = Receiver::start().await;
    let pg = match backend {
        Backend::Postgres => Some(
            TempPostgres::create()
                .await
                .expect("PostgreSQL on 127.0.0.1:5432"),
        ),
        _ => None,
    };
    let store_url = pg.as_ref().map_or(SQLITE.to_string(), |p| p.url.clone());
    let server = start_on(&receiver, &store_url).await;
    let (_, tag) = two_pushes(&server, &store_url).await;
    // A refused delivery: a bad signature.
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/hooks/gh", server.base))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "d-1")
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());

    let dash = Dash::new(&server);
    let cookie = dash.sign_in().await;
    let (status, html) = dash.page("/plugins", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let row = {
        let start = html.find("data-plugin=\"relay\"").expect("the relay row");
        &html[start..start + html[start..].find("</tr>").unwrap()]
    };
    assert_eq!(text_after(row, "class=\"calls\""), "3", "{row}");
    assert_eq!(text_after(row, "class=\"failures\""), "1 (33.3%)", "{row}");
    assert!(row.contains("ABI component"), "{row}");
    assert!(row.contains("sha256 "), "{row}");
    assert!(row.contains(&receiver.addr.to_string()), "the grant: {row}");
    assert!(row.contains(" ms</td>"), "percentiles: {row}");
    assert!(
        html.contains("data-plugin=\"notify\""),
        "built-in plugins too: {html}"
    );

    // The refusal is written through the group committer: wait until the page counts it.
    let started = std::time::Instant::now();
    let html = loop {
        let (status, html) = dash.page("/sources", &cookie).await;
        assert_eq!(status, StatusCode::OK);
        if html.contains("class=\"refused\">1<") || started.elapsed() > Duration::from_secs(10) {
            break html;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!html.contains(SECRET), "a secret value on the sources page");
    let row = {
        let start = html.find("data-source=\"gh\"").expect("the gh row");
        &html[start..start + html[start..].find("</tr>").unwrap()]
    };
    assert!(row.contains("github"), "{row}");
    assert!(
        row.contains(&format!(
            "http:&#x2f;&#x2f;{}&#x2f;hooks&#x2f;gh",
            server.addr
        )),
        "{row}"
    );
    assert_eq!(text_after(row, "class=\"secrets\""), "1", "{row}");
    assert_eq!(text_after(row, "class=\"refused\""), "1", "{row}");
    assert!(row.contains("<time>"), "last accepted: {row}");
    assert!(row.contains("signature"), "the refusal's reason: {row}");

    // The backtest reads the same store.
    let (status, html) = backtest(&dash, &cookie, &[("rule", "tags-only")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("2 events, 1 matched"), "{html}");
    assert!(tried_entry(&html, &tag).contains("<strong>matched</strong>"));
    server.stop().await;
    if let Some(pg) = pg {
        pg.drop_db().await.expect("drop the database");
    }
}

on_every_backend!(pages_on [sqlite, postgres]: figures_and_sources);

/// A real browser: sign in, open the rules page, try a rule against the stored events, read
/// the result; no console errors, and no page wider than the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backtest_in_a_real_browser() {
    let receiver = Receiver::start().await;
    let server = start_on(&receiver, SQLITE).await;
    let (main, tag) = two_pushes(&server, SQLITE).await;

    let profile = tempfile::tempdir().unwrap();
    let mut browser = cdp::Browser::launch(profile.path()).await;
    let base = server.admin.clone();
    browser
        .sign_in(&format!("{base}/rules"), &server.admin_token())
        .await;
    // Through the nav link, as a keyboard user would follow it.
    browser
        .eval("document.querySelector('nav a[href=\"/rules\"]').click(); true")
        .await;
    browser
        .wait_for(
            "location.pathname === '/rules' && document.getElementById('backtest-run') !== null",
        )
        .await;
    let listed = browser
        .eval("document.getElementById('rules').innerText")
        .await;
    let listed = listed.as_str().unwrap_or_default();
    assert!(
        listed.contains("rules.yaml:2") && listed.contains("tags-only"),
        "{listed}"
    );
    // Every form control has a label.
    assert_eq!(
        browser
            .eval(
                "Array.from(document.querySelectorAll('#try select, #try textarea, #try input:not([type=hidden])'))\
                 .filter(e => !e.labels || e.labels.length === 0).length"
            )
            .await,
        json!(0)
    );

    browser
        .eval(
            "document.getElementById('bt-rule').value = 'tags-only'; \
             document.getElementById('bt-limit').value = '10'; \
             document.getElementById('backtest-run').click(); true",
        )
        .await;
    browser
        .wait_for("document.getElementById('backtest-summary') !== null && document.readyState === 'complete'")
        .await;
    let summary = browser
        .eval("document.getElementById('backtest-summary').innerText")
        .await;
    assert!(
        summary
            .as_str()
            .unwrap_or_default()
            .contains("2 events, 1 matched"),
        "{summary}"
    );
    let hit = browser
        .eval(&format!(
            "document.querySelector('[data-event=\"{tag}\"]').innerText"
        ))
        .await;
    assert!(
        hit.as_str()
            .unwrap_or_default()
            .contains("matched tags-only"),
        "{hit}"
    );
    let miss = browser
        .eval(&format!(
            "document.querySelector('[data-event=\"{main}\"]').innerText"
        ))
        .await;
    let miss = miss.as_str().unwrap_or_default();
    assert!(
        miss.contains("not matched tags-only") && miss.contains("starts_with"),
        "{miss}"
    );

    // Pasted YAML with a mistake: the problem with its place.
    browser
        .eval(
            "document.getElementById('bt-yaml').value = 'rules:\\n  - id: x\\n    source: gh\\n    events: [push]\\n    actions:\\n      - plugin: nope\\n'; \
             document.getElementById('backtest-run').click(); true",
        )
        .await;
    browser
        .wait_for("document.getElementById('backtest-problems') !== null && document.readyState === 'complete'")
        .await;
    let problems = browser
        .eval("document.getElementById('backtest-problems').innerText")
        .await;
    assert!(
        problems
            .as_str()
            .unwrap_or_default()
            .contains("pasted:6:17"),
        "{problems}"
    );

    // No page is wider than the window (wide tables scroll inside their box).
    for path in ["/rules", "/plugins", "/sources"] {
        browser.navigate(&format!("{base}{path}")).await;
        browser
            .wait_for(&format!(
                "location.pathname === '{path}' && document.readyState === 'complete'"
            ))
            .await;
        let wide = browser
            .eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await;
        assert_eq!(wide, json!(true), "{path} fits 1280 px");
    }

    let errors = browser.close().await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
    server.stop().await;
}
