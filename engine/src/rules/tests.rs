//! Tests of the whole rule engine: compile errors with positions, evaluation, index selection,
//! secrets, dry-run output.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;

const SECRET_VALUE: &str = "https://hooks.slack.example/services/T000/B000/XYZSECRET";

struct Fixture {
    sources: Vec<(String, String)>,
    plugins: Vec<String>,
    input_schemas: BTreeMap<String, std::sync::Arc<crate::schema::InputSchema>>,
    secrets: BTreeMap<String, String>,
}

impl Fixture {
    fn new() -> Fixture {
        let s = |id: &str| (id.to_string(), id.to_string());
        Fixture {
            sources: vec![s("github"), s("stripe"), s("slack")],
            plugins: vec!["notify".into(), "call-api".into(), "write-db".into()],
            input_schemas: BTreeMap::new(),
            secrets: BTreeMap::from([
                ("SLACK_DEPLOYS_URL".to_string(), SECRET_VALUE.to_string()),
                ("API_TOKEN".to_string(), "tok_live_abcdef123456".to_string()),
            ]),
        }
    }

    fn ctx(&self) -> CompileContext<'_> {
        CompileContext {
            sources: &self.sources,
            plugins: &self.plugins,
            input_schemas: &self.input_schemas,
            secrets: &self.secrets,
        }
    }

    fn compile(&self, files: &[(&str, &str)]) -> Result<RuleSet, Vec<crate::yamldoc::Diagnostic>> {
        let files: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        compile_files(&files, &self.ctx())
    }

    fn set(&self, text: &str) -> RuleSet {
        match self.compile(&[("rules.yaml", text)]) {
            Ok(set) => set,
            Err(diags) => panic!(
                "{}",
                diags
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
}

fn event<'a>(
    source: &'a str,
    event_type: &'a str,
    headers: &'a BTreeMap<String, String>,
    payload: &'a Arc<Value>,
) -> EventView<'a> {
    EventView {
        id: "evt_01",
        source,
        provider: source,
        event_type,
        received_at: "2024-05-01T10:00:00Z",
        headers,
        payload,
    }
}

const DESIGN_EXAMPLE: &str = r#"
rules:
  - id: notify-main-push
    description: Tell #deploys about pushes to main
    source: github
    events: [push]
    when:
      all:
        - { path: $.ref, equals: refs/heads/main }
        - { path: $.commits, not_empty: true }
        - any:
            - { path: $.pusher.name, in: [alice, bob] }
            - { path: "$.commits[*].message", contains: "[deploy]" }
    if: "payload.repository.private == false"
    actions:
      - plugin: notify
        with:
          slack_webhook: "${secret:SLACK_DEPLOYS_URL}"
          text: "{{ payload.pusher.name }} pushed {{ payload.commits | length }} commits"
        retry: { attempts: 6, backoff: 2s, max_backoff: 10m }
        timeout: 10s
"#;

fn push_payload(reference: &str, pusher: &str, private: bool) -> Value {
    json!({
        "ref": reference,
        "repository": {"full_name": "acme/web", "private": private},
        "pusher": {"name": pusher, "email": "x@example.com"},
        "commits": [{"id": "a1", "message": "fix: typo [deploy]"}, {"id": "b2", "message": "docs"}],
    })
}

#[test]
fn design_example_matches_and_renders() {
    let f = Fixture::new();
    let set = f.set(DESIGN_EXAMPLE);
    assert_eq!(set.len(), 1);
    let h = BTreeMap::new();
    let p = Arc::new(push_payload("refs/heads/main", "carol", false));
    let eval = set.evaluate(&event("github", "push", &h, &p));
    assert_eq!(eval.matched.len(), 1, "{}", render_text(&eval));
    let m = &eval.matched[0];
    let a = &m.actions[0];
    assert_eq!(a.plugin, "notify");
    assert_eq!(a.input["slack_webhook"], SECRET_VALUE);
    assert_eq!(
        a.input_redacted["slack_webhook"],
        "${secret:SLACK_DEPLOYS_URL}"
    );
    assert_eq!(a.input["text"], "carol pushed 2 commits");
    assert_eq!(a.retry.attempts, 6);
    assert_eq!(a.retry.backoff, Duration::from_secs(2));
    assert_eq!(a.retry.max_backoff, Duration::from_secs(600));
    assert_eq!(a.timeout, Some(Duration::from_secs(10)));
    let dry = dry_run_json(&eval);
    assert_eq!(
        dry,
        json!({"matched": [{"rule": "notify-main-push", "actions": [{"plugin": "notify", "input": {
            "slack_webhook": "${secret:SLACK_DEPLOYS_URL}", "text": "carol pushed 2 commits"}}]}],
            "not_matched": []})
    );
}

#[test]
fn misses_explain_themselves() {
    let f = Fixture::new();
    let set = f.set(DESIGN_EXAMPLE);
    let h = BTreeMap::new();
    let cases: &[(Value, &str)] = &[
        (
            push_payload("refs/heads/dev", "alice", false),
            r#"when.all[0]: $.ref selected "refs/heads/dev", expected equals "refs/heads/main""#,
        ),
        (
            json!({"ref": "refs/heads/main", "commits": [], "pusher": {"name": "alice"}}),
            "when.all[1]: $.commits selected [], expected not_empty true",
        ),
        (
            json!({"ref": "refs/heads/main", "commits": [{"message": "x"}], "pusher": {"name": "eve"}}),
            "when.all[2]: none of the 2 `any` conditions held (when.all[2].any[0]: $.pusher.name \
             selected \"eve\", expected in [\"alice\",\"bob\"]; ...)",
        ),
        (
            push_payload("refs/heads/main", "alice", true),
            "if: `payload.repository.private == false` is false (value false)",
        ),
        (
            json!({"ref": "refs/heads/main", "commits": [{"message": "x"}], "pusher": {"name": "bob"}}),
            "if error: undefined value",
        ),
    ];
    for (payload, reason) in cases {
        let payload = Arc::new(payload.clone());
        let eval = set.evaluate(&event("github", "push", &h, &payload));
        assert!(eval.matched.is_empty(), "{payload}");
        let got = &eval.not_matched[0].reason;
        assert!(got.starts_with(reason), "got {got}\nwant {reason}");
    }
}

#[test]
fn template_errors_make_the_rule_a_miss_and_plan_nothing() {
    let f = Fixture::new();
    let set = f.set(
        r#"
rules:
  - id: two-actions
    source: github
    events: [push]
    actions:
      - plugin: notify
        with: { text: "ok {{ payload.ref }}" }
      - plugin: call-api
        with: { url: "https://api.example/{{ payload.missing_field }}" }
"#,
    );
    let h = BTreeMap::new();
    let p = Arc::new(json!({"ref": "refs/heads/main"}));
    let eval = set.evaluate(&event("github", "push", &h, &p));
    assert!(eval.matched.is_empty());
    let miss = &eval.not_matched[0];
    assert!(
        miss.reason
            .starts_with("template error: actions[1].with.url: undefined value"),
        "{}",
        miss.reason
    );
    assert!(
        miss.reason.contains("payload.missing_field"),
        "{}",
        miss.reason
    );
    assert_eq!(miss.trace.actions.len(), 2);
    assert!(miss.trace.actions[0].error.is_none());
    assert!(miss.trace.actions[1].error.is_some());
}

#[test]
fn secrets_never_appear_in_traces_dry_runs_or_debug_output() {
    let f = Fixture::new();
    let set = f.set(
        r#"
rules:
  - id: with-secrets
    source: github
    events: ["*"]
    actions:
      - plugin: call-api
        with:
          method: POST
          url: "https://api.example/hook"
          headers: { Authorization: "Bearer ${secret:API_TOKEN}" }
          body: { ref: "{{ payload.ref }}", slack: "${secret:SLACK_DEPLOYS_URL}" }
  - id: failing-after-secret
    source: github
    events: ["*"]
    actions:
      - plugin: notify
        with:
          slack_webhook: "${secret:SLACK_DEPLOYS_URL}"
          text: "{{ payload.nope }}"
"#,
    );
    let h = BTreeMap::new();
    let p = Arc::new(json!({"ref": "refs/heads/main"}));
    let eval = set.evaluate_all(&event("github", "push", &h, &p));
    assert_eq!(eval.matched.len(), 1);
    let real = &eval.matched[0].actions[0].input;
    assert_eq!(
        real["headers"]["Authorization"],
        "Bearer tok_live_abcdef123456"
    );
    assert_eq!(real["body"]["slack"], SECRET_VALUE);
    let outputs = [
        dry_run_json(&eval).to_string(),
        serde_json::to_string(&eval).unwrap_or_default(),
        render_text(&eval),
        format!("{eval:?}"),
        format!("{set:?}"),
    ];
    for out in outputs {
        for secret in f.secrets.values() {
            assert!(!out.contains(secret.as_str()), "secret leaked in: {out}");
        }
        assert!(
            out.contains("${secret:") || out.contains("RuleSet"),
            "{out}"
        );
    }
}

#[test]
fn typed_single_expressions_keep_json_types() {
    let f = Fixture::new();
    let set = f.set(
        r#"
rules:
  - id: typed
    source: stripe
    events: [invoice.paid]
    actions:
      - plugin: write-db
        with:
          connection: analytics
          table: invoices
          mode: upsert
          key: [id]
          columns:
            id: "{{ payload.data.object.id }}"
            amount: "{{ payload.data.object.amount_paid }}"
            amount_text: "{{ payload.data.object.amount_paid | string }}"
            paid: "{{ payload.data.object.paid }}"
            lines: "{{ payload.data.object.lines.data | length }}"
            currency: "{{ payload.data.object.currency | upper }}"
            metadata: "{{ payload.data.object.metadata }}"
            literal_number: 7
        order_key: "{{ payload.data.object.customer }}"
        concurrency: 4
"#,
    );
    let h = BTreeMap::new();
    let p = Arc::new(json!({"type": "invoice.paid", "data": {"object": {
        "id": "in_1", "amount_paid": 2000, "paid": true, "currency": "usd", "customer": "cus_9",
        "lines": {"data": [{"id": "il_1"}, {"id": "il_2"}]}, "metadata": {"plan": "pro"}}}}));
    let eval = set.evaluate(&event("stripe", "invoice.paid", &h, &p));
    let a = &eval.matched[0].actions[0];
    assert_eq!(
        a.input["columns"],
        json!({"id": "in_1", "amount": 2000, "amount_text": "2000", "paid": true, "lines": 2,
               "currency": "USD", "metadata": {"plan": "pro"}, "literal_number": 7})
    );
    assert_eq!(a.input["key"], json!(["id"]));
    assert_eq!(a.order_key.as_deref(), Some("cus_9"));
    assert_eq!(a.concurrency, Some(4));
    assert_eq!(a.retry, RetryPolicy::default());
}

const INDEXED: &str = r#"
rules:
  - id: gh-push
    source: github
    events: [push]
    actions: [{ plugin: notify, with: { text: push } }]
  - id: gh-pr
    source: github
    events: ["pull_request.*"]
    actions: [{ plugin: notify, with: { text: pr } }]
  - id: any-source-all
    source: [github, stripe]
    events: ["*"]
    actions: [{ plugin: notify, with: { text: all } }]
  - id: stripe-invoice
    source: stripe
    events: [invoice.paid, "invoice.payment_*"]
    actions: [{ plugin: notify, with: { text: inv } }]
"#;

#[test]
fn index_selects_candidates_and_evaluate_all_explains_the_rest() {
    let f = Fixture::new();
    let set = f.set(INDEXED);
    let h = BTreeMap::new();
    let p = Arc::new(json!({}));
    let cases: &[(&str, &str, &[&str])] = &[
        ("github", "push", &["gh-push", "any-source-all"]),
        (
            "github",
            "pull_request.opened",
            &["gh-pr", "any-source-all"],
        ),
        ("github", "pull_request", &["any-source-all"]),
        (
            "stripe",
            "invoice.payment_failed",
            &["any-source-all", "stripe-invoice"],
        ),
        ("slack", "event_callback", &[]),
    ];
    for (source, ty, want) in cases {
        let eval = set.evaluate(&event(source, ty, &h, &p));
        let got: Vec<&str> = eval.matched.iter().map(|m| m.rule.as_str()).collect();
        assert_eq!(got, *want, "{source} {ty}");
        assert!(eval.not_matched.is_empty());
        let all = set.evaluate_all(&event(source, ty, &h, &p));
        assert_eq!(all.matched.len() + all.not_matched.len(), set.len());
    }
    let all = set.evaluate_all(&event("github", "push", &h, &p));
    let reasons: Vec<(&str, &str)> = all
        .not_matched
        .iter()
        .map(|m| (m.rule.as_str(), m.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("gh-pr", "event type push does not match [pull_request.*]"),
            ("stripe-invoice", "source github is not in [stripe]"),
        ]
    );
    let rule = set
        .get("gh-pr")
        .map(|r| r.applies_to("github", "pull_request.closed"));
    assert_eq!(rule, Some(true));
}

/// Finds the one diagnostic containing `fragment` and returns (line, column).
fn position_of(diags: &[crate::yamldoc::Diagnostic], fragment: &str) -> (usize, usize) {
    let found: Vec<_> = diags
        .iter()
        .filter(|d| d.message.contains(fragment))
        .collect();
    assert_eq!(found.len(), 1, "{fragment}: {diags:#?}");
    (found[0].position.line, found[0].position.column)
}

#[test]
fn compile_errors_have_file_line_and_column() {
    let f = Fixture::new();
    // (file text, message fragment, line, column)
    let cases: &[(&str, &str, usize, usize)] = &[
        // bad YAML
        (
            "rules:\n  - id: x\n    events: [push\n",
            "invalid YAML",
            4,
            1,
        ),
        // unknown operator
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    when:\n      all:\n        - { path: $.a, equal: 1 }\n    actions: [{ plugin: notify }]\n",
            "unknown key `equal` in condition",
            7,
            24,
        ),
        // bad JSONPath
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    when: { path: \"$.commits[\", exists: true }\n    actions: [{ plugin: notify }]\n",
            "invalid JSONPath",
            5,
            19,
        ),
        // bad regex
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    when:\n      path: $.ref\n      matches: \"^refs/(heads\"\n    actions: [{ plugin: notify }]\n",
            "invalid regex",
            7,
            16,
        ),
        // template syntax error
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    actions:\n      - plugin: notify\n        with:\n          text: \"{{ payload.ref \"\n",
            "invalid template in rules[0].actions[0].with.text",
            8,
            17,
        ),
        // bad `if` expression
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    if: \"payload.a ==\"\n    actions: [{ plugin: notify }]\n",
            "invalid `if` expression",
            5,
            9,
        ),
        // unknown plugin
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    actions:\n      - plugin: nottify\n",
            "unknown plugin `nottify`",
            6,
            17,
        ),
        // unknown source (in a list)
        (
            "rules:\n  - id: x\n    source: [github, gitlab]\n    events: [push]\n    actions: [{ plugin: notify }]\n",
            "unknown source `gitlab`",
            3,
            22,
        ),
        // unknown secret
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    actions:\n      - plugin: notify\n        with: { url: \"${secret:NOPE}\" }\n",
            "unknown secret `NOPE`",
            7,
            22,
        ),
        // duplicate YAML key
        ("rules:\n  - id: x\n    id: y\n", "duplicate", 3, 5),
        // unknown top-level key
        ("rule:\n  - id: x\n", "unknown key `rule`", 1, 1),
        // missing required field
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n",
            "actions",
            2,
            5,
        ),
        // bad duration
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    actions:\n      - plugin: notify\n        timeout: 10 seconds\n",
            "timeout",
            7,
            18,
        ),
        // two operators in one condition
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    when:\n      not:\n        path: $.a\n        equals: 1\n        in: [2]\n    actions: [{ plugin: notify }]\n",
            "one operator per condition",
            7,
            9,
        ),
    ];
    for (text, fragment, line, column) in cases {
        let diags = match f.compile(&[("bad.yaml", text)]) {
            Ok(_) => panic!("compiled: {text}"),
            Err(d) => d,
        };
        assert!(
            diags
                .iter()
                .all(|d| d.file == std::path::Path::new("bad.yaml"))
        );
        assert_eq!(
            position_of(&diags, fragment),
            (*line, *column),
            "{fragment}\n{text}\n{diags:#?}"
        );
    }
}

#[test]
fn duplicate_ids_across_files_and_all_problems_at_once() {
    let f = Fixture::new();
    let a = "rules:\n  - id: dup\n    source: github\n    events: [push]\n    actions: [{ plugin: notify }]\n";
    let b = "rules:\n  - id: ok\n    source: github\n    events: [push]\n    actions: [{ plugin: nope }]\n  - id: dup\n    source: github\n    events: [push]\n    actions: [{ plugin: notify }]\n";
    let c = "rules: [ {id: z, source: nowhere, events: [x], actions: [{plugin: notify}]} ]\n";
    let d = "rules:\n  - id: [bad\n";
    let diags = match f.compile(&[("a.yaml", a), ("b.yaml", b), ("c.yaml", c), ("d.yaml", d)]) {
        Ok(_) => panic!("compiled"),
        Err(d) => d,
    };
    let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(shown.len(), 4, "{shown:#?}");
    assert!(
        shown[0].starts_with("b.yaml:5:25: unknown plugin `nope`"),
        "{shown:#?}"
    );
    assert!(
        shown[1].starts_with("b.yaml:6:9: duplicate rule id `dup` (first defined at a.yaml:2:9)"),
        "{shown:#?}"
    );
    assert!(
        shown[2].starts_with("c.yaml:1:26: unknown source `nowhere`"),
        "{shown:#?}"
    );
    assert!(shown[3].starts_with("d.yaml:"), "{shown:#?}");
}

#[test]
fn never_panics_on_odd_input() {
    let f = Fixture::new();
    let texts = [
        "",
        "~",
        "[]",
        "rules: 5",
        "rules: [1, 'x', null, {}]",
        "rules:\n  - {id: '', source: [], events: [], actions: []}",
        "rules:\n  - {id: x, source: github, events: [''], actions: [{plugin: notify, with: {a: [1, {b: '{{'}]}}]}",
        "rules:\n  - {id: x, source: github, events: [push], when: {not: {}}, actions: [{plugin: notify}]}",
        "rules:\n  - {id: x, source: github, events: [push], when: {path: $.a, gt: [1]}, actions: [{plugin: notify}]}",
        "rules:\n  - {id: x, source: github, events: [push], actions: [{plugin: notify, retry: {backoff: 1h, max_backoff: 1s}}]}",
        "rules:\n  - {id: x, source: github, events: [push], actions: [{plugin: notify, retry: {attempts: 0}}]}",
        "? [a]\n: b\n",
        "&a [*a]",
        "rules: &x\n  - *x\n",
        "\u{feff}rules: []",
    ];
    for text in texts {
        let _ = f.compile(&[("odd.yaml", text)]);
    }
    // Evaluation over odd payloads never panics either.
    let set = f.set(DESIGN_EXAMPLE);
    let h = BTreeMap::from([("X-Odd".to_string(), "\u{0}".to_string())]);
    for p in [
        json!(null),
        json!([]),
        json!("str"),
        json!({"ref": null, "commits": "x"}),
        json!(1e300),
    ] {
        let _ = set.evaluate_all(&event("github", "push", &h, &Arc::new(p)));
    }
}

#[test]
fn text_rendering_lists_every_rule() {
    let f = Fixture::new();
    let mut text = String::from(DESIGN_EXAMPLE);
    text.push_str(&INDEXED.replace("rules:\n", ""));
    let set = f.set(&text);
    let h = BTreeMap::new();
    let p = Arc::new(push_payload("refs/heads/main", "alice", false));
    let eval = set.evaluate_all(&event("github", "push", &h, &p));
    let out = render_text(&eval);
    assert!(out.starts_with("3 rule(s) matched, 2 did not"), "{out}");
    assert!(out.contains("MATCHED notify-main-push"), "{out}");
    assert!(
        out.contains(
            "[ok  ] when.all[0]: $.ref selected \"refs/heads/main\" (equals \"refs/heads/main\")"
        ),
        "{out}"
    );
    assert!(
        out.contains("if payload.repository.private == false: true (true)"),
        "{out}"
    );
    assert!(
        out.contains("\"text\": \"alice pushed 2 commits\""),
        "{out}"
    );
    assert!(
        out.contains("NOT MATCHED gh-pr: event type push does not match [pull_request.*]"),
        "{out}"
    );
}

#[test]
fn retry_delays_double_up_to_the_cap() {
    let p = RetryPolicy {
        attempts: 6,
        backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(10),
    };
    let got: Vec<Option<u64>> = (0..=6)
        .map(|a| p.delay_after(a).map(|d| d.as_secs()))
        .collect();
    assert_eq!(
        got,
        vec![None, Some(2), Some(4), Some(8), Some(10), Some(10), None]
    );
    let huge = RetryPolicy {
        attempts: 100,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
    };
    assert_eq!(huge.delay_after(99), Some(Duration::from_secs(60)));
}

#[test]
fn load_paths_reads_directories_recursively_in_sorted_order() {
    let f = Fixture::new();
    let dir = std::env::temp_dir().join(format!("hookwise-rules-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let nested = dir.join("b");
    assert!(std::fs::create_dir_all(&nested).is_ok());
    let rule = |id: &str| {
        format!(
            "rules:\n  - id: {id}\n    source: github\n    events: [push]\n    actions: [{{ plugin: notify }}]\n"
        )
    };
    let writes = [
        std::fs::write(dir.join("c.yml"), rule("third")),
        std::fs::write(dir.join("a.yaml"), rule("first")),
        std::fs::write(nested.join("x.yaml"), rule("second")),
        std::fs::write(dir.join("notes.txt"), "not a rule file"),
    ];
    assert!(writes.iter().all(Result::is_ok));
    let set = load_paths(std::slice::from_ref(&dir), &f.ctx());
    let ids: Vec<String> = match &set {
        Ok(set) => set.rules().map(|r| r.id().to_string()).collect(),
        Err(d) => panic!("{d:#?}"),
    };
    assert_eq!(ids, vec!["first", "second", "third"]);
    let missing = load_paths(&[dir.join("nope")], &f.ctx());
    assert!(matches!(missing, Err(d) if d[0].message.starts_with("cannot read")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rule_file_schema_validates_examples_and_names_every_operator() {
    let schema = rule_file_schema();
    let text = schema.to_string();
    for op in [
        "equals",
        "not_equals",
        "iequals",
        "\"in\"",
        "not_in",
        "contains",
        "not_contains",
        "icontains",
        "starts_with",
        "ends_with",
        "matches",
        "exists",
        "not_empty",
        "\"gt\"",
        "gte",
        "\"lt\"",
        "lte",
        "\"all\"",
        "\"any\"",
        "\"not\"",
        "header",
        "\"event\"",
    ] {
        assert!(text.contains(op), "{op}");
    }
    let validator = jsonschema::validator_for(&schema);
    assert!(validator.is_ok());
}

#[test]
fn rule_sets_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
    assert_send_sync::<Evaluation>();
}

#[test]
fn if_is_not_evaluated_when_conditions_fail_and_values_are_traced() {
    let f = Fixture::new();
    let set = f.set(DESIGN_EXAMPLE);
    let h = BTreeMap::new();
    let p = Arc::new(push_payload("refs/heads/dev", "alice", false));
    let eval = set.evaluate(&event("github", "push", &h, &p));
    let trace = serde_json::to_value(&eval.not_matched[0].trace).unwrap_or_default();
    assert_eq!(
        trace["if"],
        json!({"expression": "payload.repository.private == false", "evaluated": false})
    );
    assert_eq!(
        trace["when"]["conditions"][0]["selected"],
        json!(["refs/heads/dev"])
    );
    let p = Arc::new(push_payload("refs/heads/main", "alice", false));
    let eval = set.evaluate(&event("github", "push", &h, &p));
    let trace = serde_json::to_value(&eval.matched[0].trace).unwrap_or_default();
    assert_eq!(trace["if"]["value"], json!(true));
    assert_eq!(
        trace["actions"][0]["input"]["slack_webhook"],
        "${secret:SLACK_DEPLOYS_URL}"
    );
    let planned = serde_json::to_value(&eval.matched[0].actions[0]).unwrap_or_default();
    assert_eq!(
        planned["retry"],
        json!({"attempts": 6, "backoff": "2s", "max_backoff": "10m"})
    );
    assert_eq!(planned["timeout"], "10s");
}

#[test]
fn evaluation_considers_only_indexed_candidates() {
    let f = Fixture::new();
    let mut text = String::from("rules:\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "  - {{ id: r{i}, source: github, events: [type.{i}], when: {{ path: $.n, equals: {i} }}, actions: [{{ plugin: notify }}] }}\n"
        ));
    }
    text.push_str(
        "  - { id: glob, source: stripe, events: ['type.*'], actions: [{ plugin: notify }] }\n",
    );
    let set = f.set(&text);
    assert_eq!(set.len(), 1001);
    let h = BTreeMap::new();
    let p = Arc::new(json!({"n": 7}));
    let eval = set.evaluate(&event("github", "type.7", &h, &p));
    assert_eq!(eval.matched.len() + eval.not_matched.len(), 1);
    assert_eq!(eval.matched[0].rule, "r7");
    let eval = set.evaluate(&event("stripe", "type.7", &h, &p));
    assert_eq!(eval.matched.len(), 1);
    assert_eq!(eval.matched[0].rule, "glob");
}

/// Everything an evaluation produces (full traces, reasons, real and redacted inputs, order keys,
/// the text report, inputs rendered again at run time) for the rules and events in `testdata/`,
/// compared with `testdata/snapshot_expected.json`. Optimising matching, rendering or tracing
/// must not change any of it. After an intended change of output, rewrite the expected file with
/// `HOOKWISE_BLESS=1 cargo test -p hookwise --lib evaluation_snapshot` and review the diff.
#[test]
fn evaluation_snapshot() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rules/testdata");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let f = Fixture::new();
    let set = f.set(&read("snapshot_rules.yaml"));
    let events: Vec<Value> = serde_json::from_str(&read("snapshot_events.json")).unwrap();
    let mut got = Vec::new();
    for (n, e) in events.iter().enumerate() {
        let headers: BTreeMap<String, String> =
            serde_json::from_value(e["headers"].clone()).unwrap();
        let source = e["source"].as_str().unwrap();
        let event_type = e["event_type"].as_str().unwrap();
        let payload = Arc::new(e["payload"].clone());
        let ev = event(source, event_type, &headers, &payload);
        let all = set.evaluate_all(&ev);
        let indexed = set.evaluate(&ev);
        let mut planned = Vec::new();
        for m in &all.matched {
            for a in &m.actions {
                let again = set.render_action(&m.rule, a.index, &ev).map(|p| p.input);
                planned.push(json!({
                    "rule": m.rule, "index": a.index, "input": a.input,
                    "rendered_again_is_equal": again.as_ref() == Ok(&a.input),
                }));
            }
        }
        got.push(json!({
            "event": n,
            "evaluate_all": serde_json::to_value(&all).unwrap(),
            "evaluate": serde_json::to_value(&indexed).unwrap(),
            "real_inputs": planned,
            "dry_run": dry_run_json(&all),
            "text": render_text(&all).lines().collect::<Vec<_>>(),
        }));
    }
    let expected_path = dir.join("snapshot_expected.json");
    if std::env::var_os("HOOKWISE_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
        std::fs::write(&expected_path, text).unwrap();
        return;
    }
    let expected: Vec<Value> = serde_json::from_str(&read("snapshot_expected.json")).unwrap();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(
            serde_json::to_string_pretty(g).unwrap(),
            serde_json::to_string_pretty(e).unwrap(),
            "event {}",
            g["event"]
        );
    }
}

#[test]
fn rule_durations_take_compound_forms_and_explain_mistakes() {
    let f = Fixture::new();
    let set = f.set(
        "rules:\n  - {id: x, source: github, events: [push], actions: [{plugin: notify, timeout: 1m30s, retry: {backoff: 1500ms, max_backoff: 1h30m}}]}\n",
    );
    let action = &set.rules[0].actions[0];
    assert_eq!(action.timeout, Some(Duration::from_secs(90)));
    assert_eq!(action.retry.backoff, Duration::from_millis(1500));
    assert_eq!(action.retry.max_backoff, Duration::from_secs(5400));
    let day = f.set(
        "rules:\n  - {id: x, source: github, events: [push], actions: [{plugin: notify, timeout: 1d}]}\n",
    );
    assert_eq!(
        day.rules[0].actions[0].timeout,
        Some(Duration::from_secs(86_400))
    );

    let diags = f
        .compile(&[(
            "r.yaml",
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    actions:\n      - plugin: notify\n        timeout: 30s1m\n        retry: { backoff: 1.5s, max_backoff: 2d }\n",
        )])
        .unwrap_err();
    let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(
        shown[0].starts_with("r.yaml:7:")
            && shown[0].contains("`30s1m`")
            && shown[0].contains("largest first"),
        "{shown:#?}"
    );
    assert!(
        shown[1].starts_with("r.yaml:8:") && shown[1].contains("`1.5s`: use whole numbers"),
        "{shown:#?}"
    );
}

/// A secret can go only into an action's input (which is redacted in every trace); in `if`
/// or an order key it would be evaluated into traces, so the rule is refused where it says so.
#[test]
fn secrets_are_refused_outside_action_inputs() {
    let f = Fixture::new();
    let cases = [
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    if: '${secret:API_TOKEN} == 1'\n    actions: [{plugin: notify}]\n",
            "odd.yaml:5:9: invalid `if` expression: secrets (`${secret:...}`) cannot be used in `if`",
        ),
        (
            "rules:\n  - id: x\n    source: github\n    events: [push]\n    actions: [{plugin: notify, order_key: '${secret:API_TOKEN}'}]\n",
            "odd.yaml:5:43: invalid order_key: secrets (`${secret:...}`) cannot be used here",
        ),
    ];
    for (text, expected) in cases {
        let errors: Vec<String> = match f.compile(&[("odd.yaml", text)]) {
            Ok(_) => vec!["compiled".to_string()],
            Err(diags) => diags.iter().map(|d| d.to_string()).collect(),
        };
        assert_eq!(errors, [expected], "{text}");
    }
}

fn with_builtin_schemas() -> Fixture {
    let mut f = Fixture::new();
    for name in crate::config::BUILTIN_PLUGINS {
        let schema = crate::schema::InputSchema::builtin(name).unwrap();
        f.input_schemas.insert(name.to_string(), schema);
    }
    f
}

#[test]
fn with_is_checked_against_the_plugins_input_schema_at_its_place() {
    let f = with_builtin_schemas();
    // The design example (a secret and text templates) fits notify's schema.
    f.set(DESIGN_EXAMPLE);
    let misspelt = DESIGN_EXAMPLE.replace("          text:", "          txt:");
    let diags = f.compile(&[("rules.yaml", &misspelt)]).unwrap_err();
    let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        shown.contains(
            &"rules.yaml:19:11: rules[0].actions[0].with.txt: unknown key `txt` (did you mean \
              `text`?) (input of plugin `notify`)"
                .to_string()
        ),
        "{shown:#?}"
    );
    // Text renders a string: a number field cannot take it; one expression can be anything.
    let rule = |timeout: &str| {
        format!(
            "rules:\n  - id: r\n    source: github\n    events: [push]\n    actions:\n      \
             - plugin: call-api\n        with:\n          url: \"{{{{ payload.url }}}}\"\n          \
             expect: {timeout}\n"
        )
    };
    f.set(&rule("\"{{ payload.codes }}\""));
    f.set(&rule("[\"2xx\", \"{{ payload.code }}\"]"));
    let diags = f
        .compile(&[("rules.yaml", &rule("\"codes: {{ payload.codes }}\""))])
        .unwrap_err();
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(
        diags[0].position,
        crate::yamldoc::Position {
            line: 9,
            column: 19
        }
    );
    assert!(
        diags[0].message.contains("always renders a string"),
        "{}",
        diags[0]
    );
}

#[test]
fn a_rendered_input_that_breaks_the_schema_plans_nothing() {
    let f = with_builtin_schemas();
    let set = f.set(
        "rules:\n  - id: r\n    source: github\n    events: [push]\n    actions:\n      \
         - plugin: call-api\n        with:\n          url: \"{{ payload.url }}\"\n",
    );
    let h = BTreeMap::new();
    let fits = Arc::new(json!({"url": "https://example.com/hook"}));
    let eval = set.evaluate(&event("github", "push", &h, &fits));
    assert_eq!(eval.matched.len(), 1, "{}", render_text(&eval));
    let breaks = Arc::new(json!({"url": 12}));
    let eval = set.evaluate(&event("github", "push", &h, &breaks));
    assert!(eval.matched.is_empty());
    let reason = &eval.not_matched[0].reason;
    assert!(
        reason.starts_with(
            "the input does not fit plugin `call-api`'s input schema: actions[0].with.url:"
        ),
        "{reason}"
    );
    let again = set.render_action("r", 0, &event("github", "push", &h, &breaks));
    assert_eq!(again.err().as_deref(), Some(reason.as_str()));
}

/// Ingress parses an arriving payload only as far as the rules selected for it read it: for
/// every way a rule can read a payload, matching and rendering over that pruned payload must
/// give exactly what they give over the whole one.
#[test]
fn a_payload_parsed_as_far_as_its_rules_read_it_matches_as_the_whole_does() {
    let f = Fixture::new();
    let payload = json!({
        "ref": "refs/heads/main",
        "after": "0abc",
        "size": 2,
        "pusher": {"name": "alice"},
        "commits": [{"id": "a1", "message": "fix [deploy]"}, {"id": "b2", "message": "docs"}],
        "repository": {"private": false, "full_name": "acme/web"},
        "x-odd": "odd",
        "deleted": false,
    });
    // (when / if / with of one rule, the members it reads or None for the whole payload)
    let cases: &[(&str, Option<&[&str]>)] = &[
        (
            "when: { path: $.ref, equals: refs/heads/main }",
            Some(&["ref"]),
        ),
        (
            "when: { path: $.deleted, not_equals: true }",
            Some(&["deleted"]),
        ),
        (
            "when: { path: $.missing, exists: false }",
            Some(&["missing"]),
        ),
        (
            "when: { path: \"$.commits[*].message\", contains: deploy }",
            Some(&["commits"]),
        ),
        ("when: { path: \"$['x-odd']\", equals: odd }", None),
        ("when: { path: $..name, equals: alice }", None),
        ("when: { path: $.*, equals: 2 }", None),
        (
            "if: \"payload.repository.private == false and payload.size > 1\"",
            Some(&["repository", "size"]),
        ),
        ("if: \"payload['x-odd'] == 'odd'\"", None),
        ("if: \"payload | length > 3\"", None),
        (
            "with: { text: \"{{ payload.pusher.name }}: {% for c in payload.commits %}{{ c.id }} {% endfor %}\" }",
            Some(&["commits", "pusher"]),
        ),
        (
            "with: { n: \"{{ payload.size }}\", after: \"{{ payload.after }}\" }",
            Some(&["after", "size"]),
        ),
        ("with: { all: \"{{ payload | tojson }}\" }", None),
        (
            "with: { keys: \"{% for k in payload %}{{ k }} {% endfor %}\" }",
            None,
        ),
        ("with: { set: \"{% set p = payload %}{{ p.ref }}\" }", None),
        ("with: { d: \"{{ debug() }}\" }", None),
    ];
    let h = BTreeMap::new();
    for (part, members) in cases {
        let (extra, with) = match part.strip_prefix("with: ") {
            Some(with) => (String::new(), with.to_string()),
            None => (format!("    {part}\n"), "{ text: hi }".to_string()),
        };
        let text = format!(
            "rules:\n  - id: r\n    source: github\n    events: [push]\n{extra}    actions:\n      \
             - plugin: notify\n        with: {with}\n        order_key: \"{{{{ payload.after }}}}\"\n"
        );
        let set = f.set(&text);
        let reads = set.payload_reads("github", "push");
        match members {
            None => assert!(reads.reads_all(), "{part}: reads the whole payload"),
            Some(members) => {
                assert!(!reads.reads_all(), "{part}");
                for m in members.iter().chain(&["after"]) {
                    assert!(reads.reads(m), "{part}: reads {m}");
                }
                let read = |k: &str| members.contains(&k) || k == "after";
                for k in payload.as_object().unwrap().keys() {
                    assert_eq!(reads.reads(k), read(k), "{part}: {k}");
                }
            }
        }
        let pruned: serde_json::Map<String, Value> = payload
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| reads.reads(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let whole = Arc::new(payload.clone());
        let pruned = Arc::new(Value::Object(pruned));
        let over_whole = set.evaluate(&event("github", "push", &h, &whole));
        let over_pruned = set.evaluate(&event("github", "push", &h, &pruned));
        assert_eq!(
            dry_run_json(&over_pruned),
            dry_run_json(&over_whole),
            "{part}"
        );
        // Rules the index does not select for an event read nothing of it.
        let unselected = set.payload_reads("stripe", "push");
        assert!(!unselected.reads_all() && !unselected.reads("ref"));
    }
}
