use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

/// Where a shipped schema's sample payload lives: `tests/fixtures/payloads/` + the path under
/// `schemas/providers/`.
fn fixture_path(shipped: &Shipped) -> PathBuf {
    let relative = shipped
        .path
        .strip_prefix("schemas/providers/")
        .unwrap_or(shipped.path);
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/payloads")
        .join(relative)
}

fn fixture(provider: &str, event: &str) -> Value {
    let shipped = SHIPPED
        .iter()
        .find(|s| s.provider == provider && s.event == event)
        .unwrap_or_else(|| panic!("no shipped schema {provider}/{event}"));
    let path = fixture_path(shipped);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn incoming<'a>(event_type: &'a str, payload: &'a Value, body: &'a [u8]) -> Incoming<'a> {
    Incoming {
        event_type,
        payload,
        body,
    }
}

/// Errors of a payload sent as JSON to a source with `schema: provider`.
fn provider_errors(provider: &str, event_type: &str, payload: &Value) -> Vec<PayloadError> {
    let schemas = SourceSchemas::Provider(provider_schemas(provider).expect("shipped"));
    let body = payload.to_string();
    schemas.check(&incoming(event_type, payload, body.as_bytes()), 20)
}

/// Replaces (or with `None` removes) the value at a JSON pointer.
fn edit(mut value: Value, pointer: &str, new: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer below the root");
    let target = value.pointer_mut(parent).expect("parent exists");
    match (target, new) {
        (Value::Object(map), None) => {
            map.remove(key).expect("key exists");
        }
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_string(), v);
        }
        (Value::Array(items), Some(v)) => {
            items[key.parse::<usize>().expect("index")] = v;
        }
        _ => panic!("cannot edit {pointer}"),
    }
    value
}

#[test]
fn every_shipped_schema_compiles_and_names_its_source() {
    for s in SHIPPED {
        let value: Value =
            serde_json::from_str(s.text).unwrap_or_else(|e| panic!("{}: {e}", s.path));
        assert_eq!(
            value["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{}",
            s.path
        );
        let id = value["$id"].as_str().unwrap_or_default();
        let relative = s.path.trim_start_matches("schemas/");
        assert_eq!(
            id,
            format!("https://hookwise.dev/schemas/{relative}"),
            "{}",
            s.path
        );
        assert!(value["title"].is_string(), "{} has a title", s.path);
        let description = value["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("https://"),
            "{}: the description names the provider's documentation",
            s.path
        );
        compile(&value).unwrap_or_else(|e| panic!("{}: {e}", s.path));
        let p = provider_schemas(s.provider).unwrap_or_else(|e| panic!("{}: {e}", s.path));
        assert_eq!(p.provider(), s.provider);
        assert!(p.schemas.contains_key(s.event), "{}", s.path);
    }
}

#[test]
fn every_shipped_file_is_registered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/providers");
    let mut on_disk = Vec::new();
    for provider in std::fs::read_dir(&dir).unwrap() {
        let provider = provider.unwrap().path();
        for file in std::fs::read_dir(&provider).unwrap() {
            let file = file.unwrap().path();
            let relative = file
                .strip_prefix(dir.parent().unwrap().parent().unwrap())
                .unwrap();
            on_disk.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    on_disk.sort();
    let mut registered: Vec<String> = SHIPPED.iter().map(|s| s.path.to_string()).collect();
    registered.sort();
    assert_eq!(on_disk, registered, "schemas/providers/ and SHIPPED differ");
}

#[test]
fn every_shipped_schema_accepts_its_documented_sample() {
    for s in SHIPPED {
        let sample = fixture(s.provider, s.event);
        let schema = compile(&serde_json::from_str(s.text).unwrap()).unwrap();
        let errors = validate(&schema, &sample, 20);
        assert!(errors.is_empty(), "{}: {errors:#?}", s.path);
    }
}

#[test]
fn broken_payloads_are_reported_at_their_pointers() {
    // (provider, shipped event, event type posted, edit, expected error). An edit is `-POINTER`
    // (remove) or `POINTER=JSON` (replace); the expected error is `POINTER: part of the message`.
    let cases = [
        (
            "github",
            "push",
            "push",
            "-/repository",
            ": \"repository\" is a required property",
        ),
        (
            "github",
            "push",
            "push",
            "/repository/id=\"1296269\"",
            "/repository/id: \"integer\"",
        ),
        (
            "github",
            "push",
            "push",
            "-/commits/0/author",
            "/commits/0: \"author\" is a required",
        ),
        (
            "github",
            "push",
            "push",
            "/head_commit/message=7",
            "/head_commit: ",
        ),
        (
            "github",
            "pull_request",
            "pull_request.opened",
            "-/pull_request/head/sha",
            "/pull_request/head: \"sha\"",
        ),
        (
            "github",
            "pull_request",
            "pull_request.opened",
            "/number=\"42\"",
            "/number: \"integer\"",
        ),
        (
            "github",
            "issues",
            "issues.opened",
            "-/issue/number",
            "/issue: \"number\"",
        ),
        (
            "github",
            "release",
            "release.published",
            "/release/draft=\"no\"",
            "/release/draft: \"boolean\"",
        ),
        (
            "github",
            "workflow_run",
            "workflow_run.completed",
            "-/workflow_run/conclusion",
            "/workflow_run: \"conclusion\"",
        ),
        (
            "stripe",
            "event",
            "invoice.paid",
            "-/type",
            ": \"type\" is a required property",
        ),
        (
            "stripe",
            "event",
            "invoice.paid",
            "/data/object=\"in_1\"",
            "/data/object: \"object\"",
        ),
        (
            "stripe",
            "event",
            "invoice.paid",
            "/created=\"yesterday\"",
            "/created: \"integer\"",
        ),
        (
            "standard-webhooks",
            "event",
            "contact.created",
            "/timestamp=1667507170",
            "/timestamp: \"string\"",
        ),
        (
            "standard-webhooks",
            "event",
            "contact.created",
            "-/data",
            ": \"data\" is a required property",
        ),
        (
            "slack",
            "event_callback",
            "app_mention",
            "/event_time=\"1764580200\"",
            "/event_time: \"integer\"",
        ),
        (
            "slack",
            "event_callback",
            "app_mention",
            "-/event/type",
            "/event: \"type\" is a required",
        ),
        (
            "shopify",
            "orders/create",
            "orders/create",
            "/line_items/0/quantity=\"1\"",
            "/line_items/0/quantity: ",
        ),
        (
            "shopify",
            "orders/create",
            "orders/create",
            "/total_price=403.0",
            "/total_price: \"string\"",
        ),
    ];
    for (provider, event, event_type, change, want) in cases {
        let payload = match change.strip_prefix('-') {
            Some(pointer) => edit(fixture(provider, event), pointer, None),
            None => {
                let (pointer, value) = change.split_once('=').expect("POINTER=JSON");
                let value = serde_json::from_str(value).expect("JSON");
                edit(fixture(provider, event), pointer, Some(value))
            }
        };
        let (want_pointer, want_message) = want.split_once(": ").expect("POINTER: message");
        let errors = provider_errors(provider, event_type, &payload);
        assert!(
            errors
                .iter()
                .any(|e| e.pointer == want_pointer && e.message.contains(want_message)),
            "{provider} {event_type}, {change}: want {want}, got {errors:#?}"
        );
    }
}

#[test]
fn messages_do_not_quote_payload_values() {
    let payload = edit(
        fixture("github", "push"),
        "/repository/id",
        Some(json!("token-ghp_s3cr3t")),
    );
    let errors = provider_errors("github", "push", &payload);
    assert!(!errors.is_empty());
    assert!(
        errors.iter().all(|e| !e.message.contains("s3cr3t")),
        "{errors:#?}"
    );
}

#[test]
fn errors_are_bounded() {
    let schema = compile(&json!({"type": "array", "items": {"type": "integer"}})).unwrap();
    let payload = Value::Array(vec![json!("x"); 100]);
    assert_eq!(validate(&schema, &payload, 5).len(), 5);
    assert_eq!(validate(&schema, &json!([1, 2]), 5), Vec::new());
}

#[test]
fn github_schemas_are_chosen_by_the_event_name() {
    let github = SourceSchemas::Provider(provider_schemas("github").unwrap());
    let push = fixture("github", "push");
    let body = push.to_string();
    let has_schema = |event_type: &str| {
        github
            .select(&incoming(event_type, &push, body.as_bytes()))
            .is_some()
    };
    for (event_type, want) in [
        ("push", true),
        ("pull_request.opened", true),
        ("pull_request.synchronize", true),
        ("issues.labeled", true),
        ("release.published", true),
        ("workflow_run.completed", true),
        // Not `pull_request`: the base name is compared whole.
        ("pull_request_review.submitted", false),
        ("ping", false),
        ("check_run.completed", false),
        ("unknown", false),
    ] {
        assert_eq!(has_schema(event_type), want, "{event_type}");
    }
    // The push schema is the one chosen for push: a pull_request body fails it.
    let pr = fixture("github", "pull_request");
    assert!(!provider_errors("github", "push", &pr).is_empty());
    assert!(provider_errors("github", "pull_request.opened", &pr).is_empty());
}

#[test]
fn envelopes_apply_to_every_event_type() {
    for (provider, event) in [("stripe", "event"), ("standard-webhooks", "event")] {
        let mut payload = fixture(provider, event);
        payload["type"] = json!("anything.at_all");
        assert!(provider_errors(provider, "anything.at_all", &payload).is_empty());
        assert!(!provider_errors(provider, "anything.at_all", &json!({})).is_empty());
    }
}

#[test]
fn stripe_thin_events_are_accepted() {
    let thin = json!({
        "id": "evt_test_65R9Ijk8dKMXn7aBC",
        "object": "v2.core.event",
        "type": "v1.billing.meter.error_report_triggered",
        "livemode": false,
        "created": "2026-11-30T19:55:43.000Z",
        "related_object": {"id": "mtr_test_123", "type": "billing.meter", "url": "/v1/billing/meters/mtr_test_123"}
    });
    assert_eq!(
        provider_errors("stripe", "v1.billing.meter.error_report_triggered", &thin),
        Vec::new()
    );
}

#[test]
fn slack_envelope_applies_to_json_event_callbacks_only() {
    let slack = SourceSchemas::Provider(provider_schemas("slack").unwrap());
    let callback = fixture("slack", "event_callback");
    let json_body = callback.to_string();
    assert!(
        slack
            .select(&incoming("app_mention", &callback, json_body.as_bytes()))
            .is_some()
    );

    // A slash command: form-encoded, parsed into an object of strings.
    let form = b"token=x&team_id=T1&command=%2Fdeploy&text=api";
    let slash = json!({"token": "x", "team_id": "T1", "command": "/deploy", "text": "api"});
    assert!(
        slack
            .select(&incoming("slash_command", &slash, form))
            .is_none()
    );

    // Interactivity: a form whose `payload` field is JSON. Even one claiming `event_callback`
    // is not an Events API body.
    let inner = json!({"type": "event_callback", "team": {"id": "T1"}});
    let form = format!(
        "payload={}",
        form_urlencoded::byte_serialize(inner.to_string().as_bytes()).collect::<String>()
    );
    assert!(
        slack
            .select(&incoming("event_callback", &inner, form.as_bytes()))
            .is_none()
    );

    // Other JSON bodies (app_rate_limited) have no shipped schema either.
    let limited = json!({"token": "x", "type": "app_rate_limited", "team_id": "T1", "minute_rate_limited": 1, "api_app_id": "A1"});
    let body = limited.to_string();
    assert!(
        slack
            .select(&incoming("app_rate_limited", &limited, body.as_bytes()))
            .is_none()
    );
}

#[test]
fn shopify_schemas_are_chosen_by_topic() {
    let order = fixture("shopify", "orders/create");
    assert!(provider_errors("shopify", "orders/create", &order).is_empty());
    assert!(!provider_errors("shopify", "orders/create", &json!({})).is_empty());
    // No shipped schema for other topics: not validated.
    assert!(provider_errors("shopify", "orders/updated", &json!({})).is_empty());
    assert!(provider_errors("shopify", "products/create", &json!({})).is_empty());
}

#[test]
fn providers_without_shipped_schemas_are_named_in_the_error() {
    assert_eq!(
        providers_with_schemas(),
        ["github", "stripe", "standard-webhooks", "slack", "shopify"]
    );
    let err = provider_schemas("twilio").err().expect("none shipped");
    let text = err.to_string();
    assert!(
        text.contains("`twilio`") && text.contains("github, stripe"),
        "{text}"
    );
}

#[test]
fn one_schema_applies_to_every_event() {
    let schema = compile(&json!({"type": "object", "required": ["id"]})).unwrap();
    let one = SourceSchemas::One(schema);
    let empty = json!({});
    for event_type in ["push", "anything", "unknown"] {
        let errors = one.check(&incoming(event_type, &empty, b"{}"), 20);
        assert_eq!(errors.len(), 1, "{event_type}");
        assert_eq!(errors[0].pointer, "");
    }
}

#[test]
fn event_maps_prefer_exact_types_then_the_most_specific_glob() {
    let tagged = |tag: &str| -> Schema { compile(&json!({"required": [tag]})).unwrap() };
    let map = SourceSchemas::ByEvent(EventSchemas::new([
        ("*".to_string(), tagged("any")),
        ("pull_request.*".to_string(), tagged("pr")),
        ("pull_request.closed".to_string(), tagged("closed")),
        ("pull_*.opened".to_string(), tagged("pull_opened")),
        ("push".to_string(), tagged("push")),
    ]));
    let empty = json!({});
    let chosen = |event_type: &str| -> Vec<String> {
        map.check(&incoming(event_type, &empty, b"{}"), 20)
            .into_iter()
            .map(|e| e.message)
            .collect()
    };
    assert_eq!(chosen("push"), ["\"push\" is a required property"]);
    assert_eq!(
        chosen("pull_request.closed"),
        ["\"closed\" is a required property"]
    );
    // `pull_request.*` has more literal characters than `pull_*.opened`.
    assert_eq!(
        chosen("pull_request.opened"),
        ["\"pr\" is a required property"]
    );
    assert_eq!(
        chosen("pull_x.opened"),
        ["\"pull_opened\" is a required property"]
    );
    assert_eq!(chosen("issues.opened"), ["\"any\" is a required property"]);

    let narrow = SourceSchemas::ByEvent(EventSchemas::new([("push".to_string(), tagged("push"))]));
    assert!(
        narrow
            .check(&incoming("ping", &empty, b"{}"), 20)
            .is_empty(),
        "unmatched: not validated"
    );
}

#[test]
fn globs() {
    for (g, t, want) in [
        ("pull_request.*", "pull_request.opened", true),
        ("pull_request.*", "pull_request", false),
        ("*.created", "customer.subscription.created", true),
        ("invoice.?aid", "invoice.paid", true),
        ("*", "", true),
        ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "aXXbYY", false),
        ("orders/*", "orders/create", true),
    ] {
        assert_eq!(glob_match(g, t), want, "{g} vs {t}");
    }
}

#[test]
fn bad_schemas_are_refused_without_panicking() {
    for schema in [
        json!({"type": 5}),
        json!({"type": "object", "required": "id"}),
        json!({"$ref": "https://example.com/elsewhere.json"}),
        json!({"$ref": "#/$defs/missing"}),
        json!({"pattern": "("}),
    ] {
        assert!(
            matches!(compile(&schema), Err(SchemaError::Invalid(_))),
            "{schema} should not compile"
        );
    }
    assert!(compile(&json!(true)).is_ok());
}
