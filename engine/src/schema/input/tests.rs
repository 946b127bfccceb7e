use serde_json::json;

use super::*;

fn schema() -> InputSchema {
    InputSchema::new(json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["channel"],
        "properties": {
            "channel": {"type": "string", "pattern": "^#"},
            "count": {"type": "integer", "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
            "meta": {"type": "object", "additionalProperties": false,
                     "properties": {"owner": {"type": "string"}}}
        }
    }))
    .unwrap()
}

fn pointers(problems: &[InputProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.pointer.as_str()).collect()
}

#[test]
fn every_builtin_schema_compiles_and_takes_templates() {
    for name in crate::config::BUILTIN_PLUGINS {
        let schema = InputSchema::builtin(name).unwrap_or_else(|| panic!("{name}"));
        assert!(
            schema.unrendered.is_some(),
            "{name}: the rewrite does not compile"
        );
    }
    assert!(InputSchema::builtin("nope").is_none());
}

#[test]
fn a_misspelt_key_is_reported_at_the_key_with_the_nearest_known_one() {
    let problems = schema().check_unrendered(&json!({"chanel": "#a", "channel": "#b"}));
    assert_eq!(pointers(&problems), ["/chanel"]);
    assert!(problems[0].at_key);
    assert_eq!(
        problems[0].message,
        "unknown key `chanel` (did you mean `channel`?)"
    );
    let nested = schema().check_unrendered(&json!({"channel": "#a", "meta": {"ownr": "x"}}));
    assert_eq!(pointers(&nested), ["/meta/ownr"]);
    let far = schema().check_unrendered(&json!({"channel": "#a", "zzzzzz": 1}));
    assert_eq!(
        far[0].message,
        "unknown key `zzzzzz` (known: channel, count, meta, tags)"
    );
}

#[test]
fn the_builtins_name_misspelt_keys_too() {
    let notify = InputSchema::builtin("notify").unwrap();
    let problems = notify.check_unrendered(&json!({
        "slack_webhook": text_template(),
        "txt": text_template(),
    }));
    assert!(
        problems
            .iter()
            .any(|p| p.pointer == "/txt" && p.at_key && p.message.contains("did you mean `text`")),
        "{problems:?}"
    );
    let call_api = InputSchema::builtin("call-api").unwrap();
    let problems = call_api.check_unrendered(&json!({
        "url": any_template(),
        "heders": {"a": "b"},
    }));
    assert_eq!(pointers(&problems), ["/heders"], "{problems:?}");
    assert!(problems[0].message.contains("did you mean `headers`"));
}

#[test]
fn templates_stand_for_what_they_can_render() {
    let s = schema();
    // An expression can render anything; text any string (pattern and length unknown yet).
    assert!(
        s.check_unrendered(&json!({"channel": text_template(), "count": any_template()}))
            .is_empty()
    );
    assert!(
        s.check_unrendered(&json!({"channel": any_template(), "tags": any_template()}))
            .is_empty()
    );
    assert!(
        s.check_unrendered(&json!({"channel": "#a", "tags": [text_template(), "abc"]}))
            .is_empty()
    );
    // Text renders a string, never an integer.
    let problems = s.check_unrendered(&json!({"channel": "#a", "count": text_template()}));
    assert_eq!(pointers(&problems), ["/count"]);
    assert!(problems[0].message.contains("always renders a string"));
    // Literal parts are checked as written, next to templates.
    let problems = s.check_unrendered(&json!({"channel": text_template(), "count": 0}));
    assert_eq!(pointers(&problems), ["/count"], "{problems:?}");
    assert!(problems[0].message.contains("minimum"), "{problems:?}");
    let problems = s.check_unrendered(&json!({"channel": "no hash", "tags": ["long one"]}));
    assert_eq!(pointers(&problems), ["/channel", "/tags/0"], "{problems:?}");
    // A missing key is missing whatever the templates render.
    let problems = s.check_unrendered(&json!({"count": any_template()}));
    assert_eq!(problems[0].message, "missing key `channel`");
}

#[test]
fn rendered_inputs_are_checked_exactly_without_quoting_values() {
    let s = schema();
    assert!(
        s.check_rendered(&json!({"channel": "#ok", "count": 2}))
            .is_empty()
    );
    let problems = s.check_rendered(&json!({"channel": "secret-value", "count": "2"}));
    assert_eq!(pointers(&problems), ["/channel", "/count"]);
    for p in &problems {
        assert!(!p.message.contains("secret-value"), "{p:?}");
    }
    // The stand-ins are no loophole once rendered.
    assert!(
        !s.check_rendered(&json!({"channel": any_template()}))
            .is_empty()
    );
}

#[test]
fn bad_declarations_are_refused() {
    assert!(InputSchema::from_text(b"not json").is_err());
    assert!(InputSchema::from_text(b"[1]").is_err());
    assert!(InputSchema::from_text(br#"{"type": 12}"#).is_err());
    let huge = format!("{{\"description\": \"{}\"}}", "x".repeat(MAX_SCHEMA_BYTES));
    assert!(InputSchema::from_text(huge.as_bytes()).is_err());
}

#[test]
fn a_schema_is_embedded_in_and_read_from_a_wasm_file() {
    let empty_module = b"\0asm\x01\0\0\0".to_vec();
    assert!(InputSchema::declared_in(&empty_module).unwrap().is_none());
    let first = embed(&empty_module, br#"{"title": "one"}"#).unwrap();
    let declared = InputSchema::declared_in(&first).unwrap().unwrap();
    assert_eq!(declared.schema()["title"], "one");
    // Embedding again replaces the section: one section, the new text.
    let big = format!(
        r#"{{"title": "two", "description": "{}"}}"#,
        "d".repeat(300)
    );
    let second = embed(&first, big.as_bytes()).unwrap();
    assert_eq!(
        InputSchema::declared_in(&second).unwrap().unwrap().schema()["title"],
        "two"
    );
    let third = embed(&second, br#"{"title": "three"}"#).unwrap();
    assert_eq!(third.len(), first.len() + "three".len() - "one".len());
    // A component (its header: magic, version 0x0d, layer 1).
    let component = b"\0asm\x0d\0\x01\0".to_vec();
    assert!(InputSchema::declared_in(&component).unwrap().is_none());
    let with = embed(&component, br#"{"title": "c"}"#).unwrap();
    assert_eq!(
        InputSchema::declared_in(&with).unwrap().unwrap().schema()["title"],
        "c"
    );
    // Not wasm declares nothing (loading it says why); a schema that is not one is an error.
    assert!(InputSchema::declared_in(b"hello").unwrap().is_none());
    let broken = embed(&empty_module, br#"{"title": "t"}"#)
        .unwrap()
        .iter()
        .map(|&b| if b == b'{' { b'[' } else { b })
        .collect::<Vec<u8>>();
    assert!(InputSchema::declared_in(&broken).is_err());
    assert!(embed(&empty_module, b"{").is_err());
}

#[test]
fn nearest_needs_a_close_key() {
    let known = vec!["headers".to_string(), "url".to_string()];
    assert_eq!(nearest("heders", &known), Some("headers"));
    assert_eq!(nearest("uri", &known), Some("url"));
    assert_eq!(nearest("body", &known), None);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}
