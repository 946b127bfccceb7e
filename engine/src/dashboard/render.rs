//! The dashboard's HTML: templates compiled into the binary and rendered with autoescaping
//! (every `.html` template escapes what it prints), plus a foldable view of JSON values.

use std::fmt::Write;

use minijinja::{Environment, Value};

use crate::model::Millis;

/// Deepest JSON nesting shown as folds; deeper values are shown as compact JSON text.
const MAX_TREE_DEPTH: usize = 32;
/// Longest string shown whole inside a JSON tree (longer ones are cut, with a note).
const MAX_TREE_STRING: usize = 10_000;

/// The templates, each by file name (`.html`: escaped by minijinja's default policy).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("events.html", include_str!("templates/events.html")),
    ("event.html", include_str!("templates/event.html")),
    ("error.html", include_str!("templates/error.html")),
    ("replay.html", include_str!("templates/replay.html")),
    ("overview.html", include_str!("templates/overview.html")),
    (
        "dead_letters.html",
        include_str!("templates/dead_letters.html"),
    ),
    (
        "dead_letters_confirm.html",
        include_str!("templates/dead_letters_confirm.html"),
    ),
    (
        "replay_execution.html",
        include_str!("templates/replay_execution.html"),
    ),
    ("rules.html", include_str!("templates/rules.html")),
    ("plugins.html", include_str!("templates/plugins.html")),
    ("sources.html", include_str!("templates/sources.html")),
];

/// The template environment, built once per listener.
pub fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // The default policy escapes `.html` templates; said again here so that a change of
    // default cannot turn it off.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    env.add_filter("time", |ms: i64| Millis(ms).to_rfc3339());
    env.add_filter("tree", |v: Value| -> Value {
        let json = serde_json::to_value(&v).unwrap_or(serde_json::Value::Null);
        Value::from_safe_string(json_tree(&json))
    });
    Ok(env)
}

/// `text` with the five HTML-significant characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// `value` as nested `<details>` (objects and arrays fold; leaves are escaped text).
pub fn json_tree(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_tree(&mut out, None, value, 0);
    out
}

fn write_tree(out: &mut String, key: Option<&str>, value: &serde_json::Value, depth: usize) {
    use serde_json::Value as J;
    let label = key
        .map(|k| format!("<span class=\"k\">{}</span>: ", escape(k)))
        .unwrap_or_default();
    let children: Vec<(String, &J)> = match value {
        J::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        J::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        leaf => {
            let _ = write!(out, "<div class=\"leaf\">{label}{}</div>", leaf_html(leaf));
            return;
        }
    };
    let (open, close) = if value.is_array() {
        ("[", "]")
    } else {
        ("{", "}")
    };
    if depth >= MAX_TREE_DEPTH {
        let _ = write!(
            out,
            "<div class=\"leaf\">{label}<code>{}</code></div>",
            escape(&value.to_string())
        );
        return;
    }
    // The outer levels start open: most payloads are read from the top.
    let open_attr = if depth < 2 { " open" } else { "" };
    let _ = write!(
        out,
        "<details{open_attr}><summary>{label}{open}<span class=\"n\">{} item{}</span>{close}</summary>",
        children.len(),
        if children.len() == 1 { "" } else { "s" }
    );
    for (k, v) in &children {
        write_tree(out, Some(k), v, depth + 1);
    }
    out.push_str("</details>");
}

fn leaf_html(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => {
            let (shown, cut) = match s.char_indices().nth(MAX_TREE_STRING) {
                Some((i, _)) => (&s[..i], true),
                None => (s.as_str(), false),
            };
            format!(
                "<span class=\"s\">\"{}\"</span>{}",
                escape(shown),
                if cut { " <em>(cut)</em>" } else { "" }
            )
        }
        other => format!("<span class=\"v\">{}</span>", escape(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn escape_covers_every_significant_character() {
        assert_eq!(
            escape(r#"<script>alert('x" & y')</script>"#),
            "&lt;script&gt;alert(&#x27;x&quot; &amp; y&#x27;)&lt;/script&gt;"
        );
    }

    #[test]
    fn json_tree_folds_and_escapes_keys_and_values() {
        let html = json_tree(&json!({"<b>": ["<script>x</script>", 1, null], "ok": true}));
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("&lt;b&gt;"));
        assert_eq!(html.matches("<details").count(), 2);
        assert_eq!(
            html.matches("<details").count(),
            html.matches("</details>").count()
        );
    }

    #[test]
    fn json_tree_depth_is_bounded() {
        let mut deep = json!("<i>");
        for _ in 0..100 {
            deep = json!([deep]);
        }
        let html = json_tree(&deep);
        assert_eq!(html.matches("<details").count(), MAX_TREE_DEPTH);
        assert!(!html.contains("<i>"));
    }

    #[test]
    fn templates_escape_what_they_print() {
        let env = environment().unwrap();
        let html = env
            .get_template("error.html")
            .unwrap()
            .render(minijinja::context! { title => "x", message => "<script>alert(1)</script>" })
            .unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
        assert!(!html.contains("<script>alert"));
    }
}
