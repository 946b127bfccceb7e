//! Plugin input schemas: `hookwise check` finds a `with:` that cannot fit the plugin's schema
//! at its file, line and column, for the built-in plugins and for a plugin that declares its
//! schema in its wasm file; a rendered input that does not fit plans nothing.

use serde_json::Value;

use crate::cli::run;
use crate::support::wasm;

/// A config with one GitHub source and the relay example plugin, and `rules` as its only
/// rule file.
fn project(rules: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let relay = wasm("relay");
    std::fs::write(
        dir.path().join("hookwise.yaml"),
        format!(
            "listen: 127.0.0.1:8443\nsources:\n  - id: github\n    provider: github\n    \
             secrets: [\"${{file:secret.txt}}\"]\nplugins:\n  - name: relay\n    path: {}\n    \
             allow:\n      http: [\"http://127.0.0.1:9\"]\nrules: [rules.yaml]\n",
            relay.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "a-long-enough-secret").unwrap();
    dir
}

const RULES: &str = "\
rules:
  - id: tell
    source: github
    events: [push]
    actions:
      - plugin: notify
        with:
          slack_webhook: \"https://hooks.slack.com/services/T/B/X\"
          text: \"{{ payload.pusher.name }} pushed\"
          unfurl_links: \"{{ payload.repository.private }}\"
  - id: relay
    source: github
    events: [push]
    actions:
      - plugin: relay
        with:
          url: \"http://127.0.0.1:9/{{ payload.ref }}\"
          body: { ref: \"{{ payload.ref }}\" }
";

#[test]
fn check_names_a_misspelt_key_in_with_at_its_place() {
    let dir = project(RULES);
    let (code, out, err) = run(dir.path(), &["check"]);
    assert_eq!(code, 0, "{out}{err}");

    // A built-in plugin's key, misspelt.
    let dir = project(&RULES.replace("          text:", "          txt:"));
    let (code, _, err) = run(dir.path(), &["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "rules.yaml:9:11: rules[0].actions[0].with.txt: unknown key `txt` (did you mean \
             `text`?) (input of plugin `notify`)"
        ),
        "{err}"
    );

    // A key of a plugin that declares its schema in its wasm file, misspelt.
    let dir = project(&RULES.replace("          body:", "          bdy:"));
    let (code, _, err) = run(dir.path(), &["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "rules.yaml:18:11: rules[1].actions[0].with.bdy: unknown key `bdy` (did you mean \
             `body`?) (input of plugin `relay`)"
        ),
        "{err}"
    );
    assert!(err.contains("1 problem"), "{err}");

    // Text renders a string, which a boolean cannot be; a literal of the wrong type neither.
    let wrong = RULES.replace(
        "\"{{ payload.repository.private }}\"",
        "\"private: {{ payload.repository.private }}\"",
    );
    let dir = project(&wrong.replace("url: \"http://127.0.0.1:9/{{ payload.ref }}\"", "url: 12"));
    let (code, _, err) = run(dir.path(), &["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("rules.yaml:10:25: rules[0].actions[0].with.unfurl_links: text with `{{ }}` always renders a string"),
        "{err}"
    );
    assert!(
        err.contains("rules.yaml:17:16: rules[1].actions[0].with.url: "),
        "{err}"
    );
    assert!(err.contains("2 problems"), "{err}");
}

#[test]
fn inspect_shows_the_declared_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(
        dir.path(),
        &[
            "plugins",
            "inspect",
            &wasm("relay").display().to_string(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let inspection: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspection["input_schema"]["title"], "relay input");
    let (code, out, _) = run(
        dir.path(),
        &["plugins", "inspect", &wasm("noop").display().to_string()],
    );
    assert_eq!(code, 0);
    assert!(out.contains("input schema: none declared"), "{out}");
}

#[test]
fn a_rendered_input_that_does_not_fit_plans_nothing() {
    let dir = project(RULES);
    std::fs::write(
        dir.path().join("push.json"),
        r#"{"ref": "refs/heads/main", "pusher": {"name": "alice"}, "repository": {"private": "yes"}}"#,
    )
    .unwrap();
    let (code, out, err) = run(
        dir.path(),
        &[
            "test",
            "--source",
            "github",
            "--event-type",
            "push",
            "--payload",
            "push.json",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    let missed = answer["not_matched"].as_array().unwrap();
    assert_eq!(missed.len(), 1, "{answer:#}");
    let reason = missed[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "the input does not fit plugin `notify`'s input schema: \
             actions[0].with.unfurl_links:"
        ),
        "{reason}"
    );
    assert_eq!(answer["matched"][0]["rule"], "relay", "{answer:#}");
}

#[test]
fn set_input_schema_declares_one_for_any_toolchain() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("noop.wasm");
    std::fs::copy(wasm("noop"), &plugin).unwrap();
    let schema = dir.path().join("input.schema.json");
    std::fs::write(
        &schema,
        r#"{"title": "noop input", "type": "object", "additionalProperties": false,
            "properties": {"channel": {"type": "string"}}}"#,
    )
    .unwrap();
    let file = plugin.display().to_string();
    let (code, out, err) = run(
        dir.path(),
        &["plugins", "set-input-schema", &file, "input.schema.json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    // Twice: replaced, not added.
    let (code, _, _) = run(
        dir.path(),
        &["plugins", "set-input-schema", &file, "input.schema.json"],
    );
    assert_eq!(code, 0);
    let (code, out, err) = run(dir.path(), &["plugins", "inspect", &file, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let inspection: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspection["input_schema"]["title"], "noop input");
    assert_eq!(inspection["fits"], true);

    std::fs::write(dir.path().join("bad.json"), r#"{"type": 12}"#).unwrap();
    let (code, _, err) = run(
        dir.path(),
        &["plugins", "set-input-schema", &file, "bad.json"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a valid JSON Schema"), "{err}");
    std::fs::write(dir.path().join("text.wasm"), "not wasm").unwrap();
    let (code, _, err) = run(
        dir.path(),
        &[
            "plugins",
            "set-input-schema",
            "text.wasm",
            "input.schema.json",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a wasm file"), "{err}");
    // The plugin is untouched by the refusals and still runs as before.
    let (code, _, _) = run(dir.path(), &["plugins", "inspect", &file]);
    assert_eq!(code, 0);
}
