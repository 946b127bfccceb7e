//! A verified body read as a payload, only as far as someone asks.
//!
//! Most events are JSON that no rule and no schema looks into: ingress needs to know that the
//! body is JSON, two or three fields to identify it (often from the headers alone), and the text
//! to store. Building a `serde_json::Value` tree for those costs an allocation per key and per
//! string, and storing it meant writing the tree back out as text; together that was a fifth of
//! the CPU an accepted event cost. So a JSON body is checked once without building anything,
//! single fields are found by reading past everything else, stored as received, and parsed whole
//! only for whoever needs the whole (a schema, a handshake). Rules get the members they read
//! (see `Payload::into_members`).

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A request body that is a payload: JSON, or a form turned into JSON (see [`Payload::read`]).
pub struct Payload<'a> {
    body: &'a [u8],
    /// JSON as sent, as opposed to a form that was turned into JSON (then `value` is set).
    json: bool,
    /// The whole payload, once someone needed it.
    value: OnceLock<Value>,
}

impl fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("bytes", &self.body.len())
            .field("json", &self.json)
            .field("parsed", &self.value.get().is_some())
            .finish()
    }
}

impl<'a> Payload<'a> {
    /// `body` as a payload: JSON as is; a form body (`application/x-www-form-urlencoded`, as
    /// Twilio and Slack slash commands send) as an object of its fields (the last value of a
    /// repeated field wins), or the JSON in its only field `payload` (Slack interactivity).
    /// An empty body is the payload `null`. `None` for anything else, JSON `null` included.
    pub(super) fn read(body: &'a [u8]) -> Option<Payload<'a>> {
        if body.is_empty() {
            return Some(Payload {
                body,
                json: false,
                value: OnceLock::from(Value::Null),
            });
        }
        // As strict as parsing a `Value` (numbers in range, strings valid), without building one.
        if serde_json::from_slice::<Valid>(body).is_ok() {
            if body.trim_ascii() == b"null" {
                return None;
            }
            return Some(Payload {
                body,
                json: true,
                value: OnceLock::new(),
            });
        }
        let form = form(body)?;
        Some(Payload {
            body,
            json: false,
            value: OnceLock::from(form),
        })
    }

    /// The body the payload was read from, byte for byte.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The whole payload, parsed on first use.
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| parse(self.body))
    }

    /// The whole payload, owned.
    pub fn into_value(self) -> Value {
        match self.value.into_inner() {
            Some(value) => value,
            None => parse(self.body),
        }
    }

    /// The payload with, of a top-level object, only the members `keep` accepts (the rest
    /// read past without building anything); the whole payload when `keep` is `None`, when
    /// the payload is not an object, or when it was parsed whole already. Of a member given
    /// twice the last is kept, as in a whole parse.
    pub fn into_members(self, keep: Option<&dyn Fn(&str) -> bool>) -> Value {
        let Some(keep) = keep else {
            return self.into_value();
        };
        if self.value.get().is_some() || self.body.trim_ascii_start().first() != Some(&b'{') {
            return self.into_value();
        }
        let mut de = serde_json::Deserializer::from_slice(self.body);
        de.deserialize_map(Members(keep))
            .unwrap_or_else(|_| parse(self.body))
    }

    /// The value at a JSON pointer (RFC 6901), found without parsing the rest.
    pub fn pointer(&self, pointer: &str) -> Option<Cow<'_, Value>> {
        if let Some(value) = self.value.get() {
            return value.pointer(pointer).map(Cow::Borrowed);
        }
        let tokens = tokens(pointer)?;
        let mut de = serde_json::Deserializer::from_slice(self.body);
        Seek { tokens: &tokens }
            .deserialize(&mut de)
            .ok()
            .flatten()
            .map(Cow::Owned)
    }

    /// The text to store: a JSON body byte for byte, a form as the JSON it was turned into.
    pub fn text(&self) -> String {
        match std::str::from_utf8(self.body) {
            Ok(text) if self.json => text.to_owned(),
            _ => self.value().to_string(),
        }
    }
}

/// A body already checked by [`Payload::read`]; `null` should it fail after all.
fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// A form body as JSON (see [`Payload::read`]); `None` when it is not one.
fn form(body: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.is_empty() || !text.contains('=') {
        return None;
    }
    let mut object = serde_json::Map::new();
    for (k, v) in form_urlencoded::parse(text.as_bytes()) {
        object.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    if object.len() == 1
        && let Some(Value::String(inner)) = object.get("payload")
        && let Ok(value) = serde_json::from_str::<Value>(inner)
    {
        return Some(value);
    }
    Some(Value::Object(object))
}

/// The reference tokens of a JSON pointer, unescaped; `None` when it is not one.
fn tokens(pointer: &str) -> Option<Vec<Cow<'_, str>>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| {
                if t.contains('~') {
                    Cow::Owned(t.replace("~1", "/").replace("~0", "~"))
                } else {
                    Cow::Borrowed(t)
                }
            })
            .collect(),
    )
}

/// A JSON object with only the members its filter accepts (see [`Payload::into_members`]).
struct Members<'f>(&'f dyn Fn(&str) -> bool);

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(MemberName(name)) = map.next_key()? {
            if (self.0)(&name) {
                out.insert(name.into_owned(), map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }
}

/// A member name, borrowed from the body when it has no escapes.
struct MemberName<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = MemberName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<MemberName<'de>, E> {
                Ok(MemberName(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<MemberName<'de>, E> {
                Ok(MemberName(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(NameVisitor)
    }
}

/// Any JSON a `Value` could hold, checked as strictly as parsing one, kept nowhere.
struct Valid;

impl<'de> de::Deserialize<'de> for Valid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Valid, D::Error> {
        d.deserialize_any(ValidVisitor)
    }
}

struct ValidVisitor;

impl<'de> Visitor<'de> for ValidVisitor {
    type Value = Valid;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Valid, E> {
        Ok(Valid)
    }
    // Strings arrive decoded (escapes, surrogate pairs): a string a `Value` would refuse is
    // refused here too.
    fn visit_str<E>(self, _: &str) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_unit<E>(self) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Valid, A::Error> {
        while map.next_key::<Valid>()?.is_some() {
            map.next_value::<Valid>()?;
        }
        Ok(Valid)
    }
}

/// Finds the value at `tokens` and reads past everything else. Like `Value::pointer`, a
/// repeated key counts by its last occurrence.
struct Seek<'t> {
    tokens: &'t [Cow<'t, str>],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        if self.tokens.is_empty() {
            return de::Deserialize::deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        let (first, rest) = split(self.tokens);
        // As `Value::pointer` reads an array index: digits, no leading zero.
        let wanted = (first.bytes().all(|b| b.is_ascii_digit())
            && (first == "0" || !first.starts_with('0')))
        .then(|| first.parse::<usize>().ok())
        .flatten();
        let mut found = None;
        let mut index = 0;
        loop {
            if Some(index) == wanted {
                match seq.next_element_seed(Seek { tokens: rest })? {
                    Some(value) => found = value,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let (first, rest) = split(self.tokens);
        let mut found = None;
        while let Some(hit) = map.next_key_seed(KeyIs(first))? {
            if hit {
                found = map.next_value_seed(Seek { tokens: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

fn split<'t>(tokens: &'t [Cow<'t, str>]) -> (&'t str, &'t [Cow<'t, str>]) {
    match tokens {
        [first, rest @ ..] => (first, rest),
        [] => ("", tokens),
    }
}

/// Whether an object key is the one wanted, compared where it lies in the body.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What parsing the whole body as a `Value` gives, for comparison.
    fn whole(body: &str) -> Option<Value> {
        serde_json::from_str::<Value>(body)
            .ok()
            .filter(|v| !v.is_null())
    }

    #[test]
    fn refuses_what_a_value_refuses() {
        for body in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            r#"{"a":1e400}"#,
            r#"{"a":"tab	in a string"}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} trailing"#,
            r#"{"a":"\q"}"#,
            "null",
            " ",
            "plain text",
            &format!("{}1{}", "[".repeat(200), "]".repeat(200)),
        ] {
            assert_eq!(whole(body), None, "{body}");
            assert!(Payload::read(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn keeps_json_as_sent_and_parses_it_only_when_asked() {
        let body = "{ \"a\" : [1, 2.5, \"\\u00e9\\ud83d\\ude00\"],\n \"b\": {\"c\": null} }";
        let payload = Payload::read(body.as_bytes()).unwrap();
        assert_eq!(payload.text(), body);
        assert!(payload.value.get().is_none());
        assert_eq!(payload.value(), &whole(body).unwrap());
        assert_eq!(payload.into_value(), whole(body).unwrap());
    }

    #[test]
    fn keeps_the_members_asked_for_as_a_whole_parse_has_them() {
        let body = r#" {"ref":"refs/heads/main","commits":[{"id":"a\u00e9","n":1e3}],
            "dup":1,"dup":{"x":[2]},"esc\"aped":"yes","caf\u00e9":true,"skip":{"deep":[[[1]]]}}"#;
        let value = whole(body).unwrap();
        for wanted in [
            &["ref"][..],
            &["commits", "dup"][..],
            &["esc\"aped", "café"][..],
            &["missing"][..],
            &[][..],
        ] {
            let keep = |name: &str| wanted.contains(&name);
            let got = Payload::read(body.as_bytes())
                .unwrap()
                .into_members(Some(&keep));
            let expected: serde_json::Map<String, Value> = value
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(got, Value::Object(expected), "{wanted:?}");
        }
        let all = Payload::read(body.as_bytes()).unwrap().into_members(None);
        assert_eq!(all, value);
        // Anything but an object is parsed whole; so is a form, parsed when it was read.
        let none = |_: &str| false;
        for other in ["[1, {\"a\": 2}]", "\"text\"", "12"] {
            let payload = Payload::read(other.as_bytes()).unwrap();
            assert_eq!(
                payload.into_members(Some(&none)),
                whole(other).unwrap(),
                "{other}"
            );
        }
        let form = Payload::read(b"a=1&b=2").unwrap();
        assert_eq!(form.into_members(Some(&none)), json!({"a": "1", "b": "2"}));
    }

    #[test]
    fn finds_each_pointer_as_value_pointer_does() {
        let body = r#"{"action":"opened","event":{"type":"message","ts":1.5,"n":[10,{"x/y":1,"t~":2}]},
            "dup":1,"dup":2,"":"empty key","esc\"aped":"yes","list":[0,1,2,3,4,5,6,7,8,9,10,11]}"#;
        let value = whole(body).unwrap();
        for pointer in [
            "",
            "/action",
            "/event",
            "/event/type",
            "/event/ts",
            "/event/n/0",
            "/event/n/1",
            "/event/n/1/x~1y",
            "/event/n/1/t~0",
            "/event/n/2",
            "/event/n/01",
            "/event/n/-",
            "/dup",
            "/",
            "/esc\"aped",
            "/list/11",
            "/list/12",
            "/missing",
            "/action/x",
            "no-slash",
        ] {
            let fresh = Payload::read(body.as_bytes()).unwrap();
            assert_eq!(
                fresh.pointer(pointer).map(Cow::into_owned),
                value.pointer(pointer).cloned(),
                "{pointer}"
            );
            // Once parsed, the tree answers.
            let parsed = Payload::read(body.as_bytes()).unwrap();
            parsed.value();
            assert_eq!(
                parsed.pointer(pointer).map(Cow::into_owned),
                value.pointer(pointer).cloned(),
                "{pointer}"
            );
        }
    }

    #[test]
    fn reads_forms_as_json() {
        let payload = Payload::read(b"a=1&b=x%20y&a=2").unwrap();
        assert_eq!(payload.value(), &json!({"a": "2", "b": "x y"}));
        assert_eq!(
            payload.pointer("/b").map(Cow::into_owned),
            Some(json!("x y"))
        );
        assert_eq!(payload.text(), r#"{"a":"2","b":"x y"}"#);
        let slack = Payload::read(b"payload=%7B%22type%22%3A%22block_actions%22%7D").unwrap();
        assert_eq!(slack.into_value(), json!({"type": "block_actions"}));
        assert!(Payload::read(b"not a form").is_none());
        assert!(Payload::read(b"\xff\xfe=1").is_none());
        assert!(Payload::read(b"  ").is_none());
        let empty = Payload::read(b"").unwrap();
        assert_eq!(
            (empty.value(), empty.text().as_str()),
            (&Value::Null, "null")
        );
    }
}
