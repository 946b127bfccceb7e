//! The scrubber as tables: text in, text out.

use serde_json::json;

use super::*;

const HOOK: &str = "https://hooks.example.com/services/T0/B1/abcDEF123";
const TOKEN: &str = "tok-\"quoted\"\\back/slash-é";
const ADMIN: &str = "0123456789abcdef";

fn scrubber() -> Scrubber {
    Scrubber::new([
        (Some("HOOK_URL"), HOOK),
        (Some("API_TOKEN"), TOKEN),
        (None, ADMIN),
        // Too short: ignored rather than replaced everywhere.
        (Some("SHORT"), "abc"),
        (None, ""),
    ])
}

#[test]
fn replaces_every_form_of_every_secret() {
    let s = scrubber();
    let cases: &[(&str, &str)] = &[
        ("nothing here", "nothing here"),
        (HOOK, "${secret:HOOK_URL}"),
        (
            &format!("POST {HOOK} failed; POST {HOOK} again"),
            "POST ${secret:HOOK_URL} failed; POST ${secret:HOOK_URL} again",
        ),
        (&format!("Bearer {ADMIN}."), "Bearer ***."),
        // JSON-escaped, with `\/`, with `\u00e9`.
        (
            r#"{"t":"tok-\"quoted\"\\back/slash-é"}"#,
            r#"{"t":"${secret:API_TOKEN}"}"#,
        ),
        (
            r#"{"t":"tok-\"quoted\"\\back\/slash-\u00e9"}"#,
            r#"{"t":"${secret:API_TOKEN}"}"#,
        ),
        (
            r#"{"u":"https:\/\/hooks.example.com\/services\/T0\/B1\/abcDEF123"}"#,
            r#"{"u":"${secret:HOOK_URL}"}"#,
        ),
        // Percent-encoded, upper and lower case.
        (
            "?next=https%3A%2F%2Fhooks.example.com%2Fservices%2FT0%2FB1%2FabcDEF123&x=1",
            "?next=${secret:HOOK_URL}&x=1",
        ),
        (
            "?next=https%3a%2f%2fhooks.example.com%2fservices%2fT0%2fB1%2fabcDEF123",
            "?next=${secret:HOOK_URL}",
        ),
        // Short configured values are not touched.
        ("abc abc", "abc abc"),
        // A prefix alone is not the secret.
        ("0123456789abcde", "0123456789abcde"),
    ];
    for (text, want) in cases {
        assert_eq!(s.scrub(text), *want, "{text}");
        assert_eq!(s.finds(text), text != want, "{text}");
    }
}

#[test]
fn the_longest_secret_wins_where_two_overlap() {
    let s = Scrubber::new([
        (Some("INNER"), "services1234"),
        (Some("OUTER"), "https://x/services1234/y"),
    ]);
    assert_eq!(
        s.scrub("a https://x/services1234/y b services1234 c"),
        "a ${secret:OUTER} b ${secret:INNER} c"
    );
}

#[test]
fn a_named_secret_wins_over_the_same_value_unnamed() {
    let s = Scrubber::new([(None, "same-value-1"), (Some("NAMED"), "same-value-1")]);
    assert_eq!(s.scrub("same-value-1"), "${secret:NAMED}");
    let s = Scrubber::new([
        (Some("FIRST"), "same-value-1"),
        (Some("SECOND"), "same-value-1"),
    ]);
    assert_eq!(s.scrub("same-value-1"), "${secret:FIRST}");
}

#[test]
fn json_trees_are_scrubbed_in_keys_strings_and_numbers() {
    let s = Scrubber::new([(Some("HOOK_URL"), HOOK), (None, "987654321")]);
    let mut value = json!({
        "url": HOOK,
        "nested": [{"msg": format!("calling {HOOK}")}, 1, true, null],
        HOOK: "as a key",
        "n": 1_987_654_321u64,
        "plain": 42,
        "inner_json": format!("{{\"u\":\"{}\"}}", HOOK.replace('/', "\\/")),
    });
    s.scrub_value(&mut value);
    assert_eq!(
        value,
        json!({
            "url": "${secret:HOOK_URL}",
            "nested": [{"msg": "calling ${secret:HOOK_URL}"}, 1, true, null],
            "${secret:HOOK_URL}": "as a key",
            "n": "1***",
            "plain": 42,
            "inner_json": "{\"u\":\"${secret:HOOK_URL}\"}",
        })
    );
    assert!(!value.to_string().contains("987654321"));
}

#[test]
fn an_empty_scrubber_borrows_and_changes_nothing() {
    let s = Scrubber::new([]);
    assert!(s.is_empty());
    assert!(matches!(s.scrub("anything at all"), Cow::Borrowed(_)));
    let clean = scrubber();
    assert!(matches!(clean.scrub("no secret here"), Cow::Borrowed(_)));
    let mut v = json!({"a": ["b"]});
    s.scrub_value(&mut v);
    assert_eq!(v, json!({"a": ["b"]}));
}

#[test]
fn the_one_by_one_fallback_gives_the_same_answers() {
    let secrets = [
        (Some("HOOK_URL"), HOOK),
        (Some("API_TOKEN"), TOKEN),
        (None, ADMIN),
    ];
    let fallback = Scrubber::with_limit(secrets, 1);
    assert!(matches!(fallback.finder, Finder::OneByOne(_)));
    let regex = Scrubber::new(secrets);
    assert!(matches!(regex.finder, Finder::Regex(_)));
    for text in [
        format!("x {HOOK} y {ADMIN} z"),
        r#"{"t":"tok-\"quoted\"\\back\/slash-\u00e9"}"#.to_string(),
        "https%3A%2F%2Fhooks.example.com%2Fservices%2FT0%2FB1%2FabcDEF123".to_string(),
        "clean".to_string(),
    ] {
        assert_eq!(fallback.scrub(&text), regex.scrub(&text), "{text}");
        assert_eq!(fallback.finds(&text), regex.finds(&text), "{text}");
    }
}

#[test]
fn forms_cover_escapes_and_encodings() {
    let cases: &[(&str, &[&str])] = &[
        ("plain-token-123", &["plain-token-123"]),
        (
            "a/b c\"d",
            &[
                "a/b c\"d",
                "a/b c\\\"d",
                "a\\/b c\\\"d",
                "a%2Fb%20c%22d",
                "a%2fb%20c%22d",
                "a%2Fb+c%22d",
            ],
        ),
        (
            "é\n",
            &["é\n", "é\\n", "\\u00e9\\n", "%C3%A9%0A", "%c3%a9%0a"],
        ),
    ];
    for (value, want) in cases {
        assert_eq!(forms(value), *want, "{value}");
    }
}

#[test]
fn debug_output_does_not_show_the_needles() {
    let text = format!("{:?}", scrubber());
    assert!(
        !text.contains(ADMIN) && !text.contains("hooks.example.com"),
        "{text}"
    );
}
