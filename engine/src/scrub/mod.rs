//! Replacing secret values by their names (`${secret:NAME}`, or `***` for secrets without one)
//! in text and JSON before hookwise stores, logs or answers it.
//!
//! A [`Scrubber`] is built once from the loaded config. It finds every secret value in the
//! forms a recorder, a plugin or a client produces: as is, JSON-escaped (with and without `\/`
//! and `\uXXXX` escapes), and percent-encoded. All needles are searched in one pass (one regex
//! of escaped literals, which the regex crate runs as a multi-literal search); at a position
//! where several match, the longest wins. Pure: no I/O.

pub mod logs;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// The shortest secret hookwise accepts: shorter values occur in ordinary text too often to be
/// replaced reliably (a 4-byte secret would turn up inside ids and timestamps).
pub const MIN_SECRET_LEN: usize = 8;
/// What a secret without a name (admin token, source secret, URL password) is replaced by.
pub const UNNAMED: &str = "***";
/// Compiled-regex budget. Far above what any real set of secrets needs (a few KiB of
/// needles compile to well under 1 MiB); past it the scrubber falls back to one search per
/// needle instead of failing.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

/// Finds and replaces secret values. Cheap to share (`Arc`); an empty one does nothing and
/// costs one branch per call.
#[derive(Default)]
pub struct Scrubber {
    finder: Finder,
    /// Every needle (a secret value in one of its forms) and what replaces it.
    replacements: HashMap<Box<str>, Arc<str>>,
}

impl std::fmt::Debug for Scrubber {
    // Hand-written: the needles are the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("needles", &self.replacements.len())
            .finish()
    }
}

/// How needles are found.
#[derive(Default)]
enum Finder {
    /// No secrets: nothing to find.
    #[default]
    Nothing,
    /// All needles in one search, longest first at each position.
    Regex(regex::Regex),
    /// Needles longest first, one search each (when the regex would be too large).
    OneByOne(Vec<Box<str>>),
}

impl Scrubber {
    /// A scrubber of `secrets`: (name, value) pairs, the name None for secrets without one.
    /// When one value has several names, the first named one wins over unnamed ones. Values
    /// shorter than [`MIN_SECRET_LEN`] are ignored (the config refuses them).
    pub fn new<'a>(secrets: impl IntoIterator<Item = (Option<&'a str>, &'a str)>) -> Scrubber {
        Scrubber::with_limit(secrets, REGEX_SIZE_LIMIT)
    }

    fn with_limit<'a>(
        secrets: impl IntoIterator<Item = (Option<&'a str>, &'a str)>,
        size_limit: usize,
    ) -> Scrubber {
        let mut replacements: HashMap<Box<str>, (bool, Arc<str>)> = HashMap::new();
        for (name, value) in secrets {
            if value.len() < MIN_SECRET_LEN {
                continue;
            }
            let replacement: Arc<str> = match name {
                Some(name) => format!("${{secret:{name}}}").into(),
                None => UNNAMED.into(),
            };
            for needle in forms(value) {
                let named = name.is_some();
                match replacements.get(needle.as_str()) {
                    Some((true, _)) => {}
                    Some((false, _)) if !named => {}
                    _ => {
                        replacements.insert(needle.into(), (named, replacement.clone()));
                    }
                }
            }
        }
        let replacements: HashMap<Box<str>, Arc<str>> = replacements
            .into_iter()
            .map(|(needle, (_, with))| (needle, with))
            .collect();
        let mut needles: Vec<Box<str>> = replacements.keys().cloned().collect();
        // Longest first, so that at one position the longest needle wins; then by text, so
        // the search does not depend on hash order.
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        let finder = if needles.is_empty() {
            Finder::Nothing
        } else {
            let pattern = needles
                .iter()
                .map(|n| regex::escape(n))
                .collect::<Vec<_>>()
                .join("|");
            match regex::RegexBuilder::new(&pattern)
                .size_limit(size_limit)
                .build()
            {
                Ok(regex) => Finder::Regex(regex),
                Err(_) => Finder::OneByOne(needles),
            }
        };
        Scrubber {
            finder,
            replacements,
        }
    }

    /// True when there is no secret to replace.
    pub fn is_empty(&self) -> bool {
        matches!(self.finder, Finder::Nothing)
    }

    /// Whether `text` holds a secret in any of its forms.
    pub fn finds(&self, text: &str) -> bool {
        match &self.finder {
            Finder::Nothing => false,
            Finder::Regex(regex) => regex.is_match(text),
            Finder::OneByOne(needles) => needles.iter().any(|n| text.contains(&**n)),
        }
    }

    /// `text` with every secret replaced; borrowed when there was none.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.finder {
            Finder::Nothing => Cow::Borrowed(text),
            Finder::Regex(regex) => {
                let mut found = regex.find_iter(text).peekable();
                if found.peek().is_none() {
                    return Cow::Borrowed(text);
                }
                let mut out = String::with_capacity(text.len());
                let mut copied = 0;
                for m in found {
                    out.push_str(&text[copied..m.start()]);
                    out.push_str(self.replacement(m.as_str()));
                    copied = m.end();
                }
                out.push_str(&text[copied..]);
                Cow::Owned(out)
            }
            Finder::OneByOne(needles) => {
                let mut out = Cow::Borrowed(text);
                for needle in needles {
                    if out.contains(&**needle) {
                        out = Cow::Owned(out.replace(&**needle, self.replacement(needle)));
                    }
                }
                out
            }
        }
    }

    /// Replaces every secret in `text` in place.
    pub fn scrub_string(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }

    /// Replaces every secret in the strings, keys and numbers of `value`. A number that holds
    /// a secret becomes a string.
    pub fn scrub_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        // One search over all the text first: a search has a fixed cost (about 0.2 us) that
        // one per string would pay many times over, and most values hold no secret.
        let mut all = String::new();
        gather(value, &mut all);
        if self.finds(&all) {
            self.scrub_tree(value);
        }
    }

    fn scrub_tree(&self, value: &mut Value) {
        match value {
            Value::String(s) => self.scrub_string(s),
            Value::Number(n) => {
                let text = n.to_string();
                if let Cow::Owned(clean) = self.scrub(&text) {
                    *value = Value::String(clean);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_tree(v)),
            Value::Object(map) if map.keys().any(|k| self.finds(k)) => {
                let old = std::mem::take(map);
                for (key, mut v) in old {
                    self.scrub_tree(&mut v);
                    map.insert(self.scrub(&key).into_owned(), v);
                }
            }
            Value::Object(map) => map.values_mut().for_each(|v| self.scrub_tree(v)),
            Value::Null | Value::Bool(_) => {}
        }
    }

    fn replacement(&self, needle: &str) -> &str {
        // Every needle found is a key; UNNAMED stands in should that ever not hold.
        self.replacements
            .get(needle)
            .map(|r| &**r)
            .unwrap_or(UNNAMED)
    }
}

/// Appends the text of `value` (keys, strings, numbers) to `into`, a newline after each. A
/// needle found across two pieces only costs a walk that then replaces nothing.
fn gather(value: &Value, into: &mut String) {
    use std::fmt::Write;
    match value {
        Value::String(s) => {
            into.push_str(s);
            into.push('\n');
        }
        Value::Number(n) => {
            let _ = writeln!(into, "{n}");
        }
        Value::Array(items) => items.iter().for_each(|v| gather(v, into)),
        Value::Object(map) => {
            for (key, v) in map {
                into.push_str(key);
                into.push('\n');
                gather(v, into);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// The forms in which `value` may turn up: as is, JSON-escaped (plain, with `\/`, with
/// `\uXXXX` for non-ASCII, both), percent-encoded (upper- and lower-case hex) and
/// form-encoded. Deduplicated; the value itself first.
fn forms(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    for (slash, ascii) in [(false, false), (true, false), (false, true), (true, true)] {
        out.push(json_escape(value, slash, ascii));
    }
    out.push(percent_encode(value, true, false));
    out.push(percent_encode(value, false, false));
    out.push(percent_encode(value, true, true));
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| seen.insert(f.clone()));
    out
}

/// `value` as it reads inside a JSON string. `slash` escapes `/` as `\/` (PHP, some Java
/// encoders); `ascii` writes non-ASCII as `\uXXXX` (Python's default).
fn json_escape(value: &str, slash: bool, ascii: bool) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if slash => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `value` with every byte but the URL-unreserved ones (`A-Z a-z 0-9 - . _ ~`) written as
/// `%XX`; `form` writes a space as `+` (`application/x-www-form-urlencoded`).
fn percent_encode(value: &str, upper: bool, form: bool) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            b' ' if form => out.push('+'),
            b if upper => {
                let _ = write!(out, "%{b:02X}");
            }
            b => {
                let _ = write!(out, "%{b:02x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
