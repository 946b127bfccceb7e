//! Text from outside (payload strings, headers, paths, plugin logs, errors and outputs) as each
//! database can hold it, applied in one place per backend.
//!
//! PostgreSQL refuses U+0000 in `TEXT` (`invalid byte sequence`) and the `\u0000` escape in
//! `JSONB` (`unsupported Unicode escape sequence`): one such character would fail the write, and
//! with it the batch it shares a transaction with, or loop an execution whose attempt can never
//! be recorded. So on PostgreSQL every U+0000 becomes U+FFFD (the replacement character) before
//! anything is bound: visibly replaced, never refused. SQLite keeps U+0000 as it came (its
//! `TEXT` values carry their length, and JSON is stored as text with the escape), so its
//! writes are [`Lossless`].
//!
//! Every type a write carries names all its fields below, text or not: a field added to one of
//! them does not compile until it is placed, so no column can forget the rule.

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

use super::records::{NewDeliveryAttempt, NewEvent, NewExecution, NewExecutionAttempt, NextStep};
use super::{
    Announcement, ClaimExclusions, ClaimRequest, EventPlan, FinishRequest, LimitScope, SharedLimit,
    WriteRequest,
};

/// What U+0000 becomes on PostgreSQL.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// A value whose text may hold U+0000.
pub(crate) trait OutsideText {
    /// Whether some text in it holds U+0000.
    fn has_nul(&self) -> bool;
    /// Replaces every U+0000 in its text with [`NUL_REPLACEMENT`].
    fn replace_nul(&mut self);
}

/// How a backend takes outside text: the values it is about to bind, as it can hold them.
pub(crate) trait TextPolicy {
    /// `values` as the backend can hold them; borrowed when they need no change.
    fn all<T: OutsideText + Clone>(values: &[T]) -> Cow<'_, [T]>;
    /// `text` as the backend can hold it (and so as it was stored, for lookups).
    fn text(text: &str) -> Cow<'_, str>;
}

/// SQLite: everything as it came.
pub(crate) struct Lossless;

impl TextPolicy for Lossless {
    fn all<T: OutsideText + Clone>(values: &[T]) -> Cow<'_, [T]> {
        Cow::Borrowed(values)
    }

    fn text(text: &str) -> Cow<'_, str> {
        Cow::Borrowed(text)
    }
}

/// PostgreSQL: U+0000 replaced by [`NUL_REPLACEMENT`].
pub(crate) struct NulReplaced;

impl TextPolicy for NulReplaced {
    fn all<T: OutsideText + Clone>(values: &[T]) -> Cow<'_, [T]> {
        // A scan finds nothing in nearly every batch: copy only the rare one that needs it.
        if !values.iter().any(OutsideText::has_nul) {
            return Cow::Borrowed(values);
        }
        let mut owned = values.to_vec();
        for value in &mut owned {
            value.replace_nul();
        }
        Cow::Owned(owned)
    }

    fn text(text: &str) -> Cow<'_, str> {
        if text.contains('\0') {
            Cow::Owned(without_nul(text))
        } else {
            Cow::Borrowed(text)
        }
    }
}

/// `text` with every U+0000 replaced by [`NUL_REPLACEMENT`].
fn without_nul(text: &str) -> String {
    text.replace('\0', NUL_REPLACEMENT.encode_utf8(&mut [0; 4]))
}

impl OutsideText for String {
    fn has_nul(&self) -> bool {
        self.contains('\0')
    }

    fn replace_nul(&mut self) {
        if self.has_nul() {
            *self = without_nul(self);
        }
    }
}

impl<T: OutsideText> OutsideText for Option<T> {
    fn has_nul(&self) -> bool {
        self.as_ref().is_some_and(OutsideText::has_nul)
    }

    fn replace_nul(&mut self) {
        if let Some(value) = self {
            value.replace_nul();
        }
    }
}

impl<T: OutsideText> OutsideText for Vec<T> {
    fn has_nul(&self) -> bool {
        self.iter().any(OutsideText::has_nul)
    }

    fn replace_nul(&mut self) {
        for value in self {
            value.replace_nul();
        }
    }
}

impl<T: OutsideText> OutsideText for Box<T> {
    fn has_nul(&self) -> bool {
        self.as_ref().has_nul()
    }

    fn replace_nul(&mut self) {
        self.as_mut().replace_nul();
    }
}

/// A busy action: (rule id, action index).
impl OutsideText for (String, i32) {
    fn has_nul(&self) -> bool {
        self.0.has_nul()
    }

    fn replace_nul(&mut self) {
        self.0.replace_nul();
    }
}

/// JSON: string values and object keys. (Depth is bounded by whoever built the value: parsed
/// JSON by serde_json's recursion limit.)
/// JSON text holds U+0000 only as the escape `\u0000` (a control character is never written
/// raw), so a scan of the text finds every one; it may also find an escaped backslash followed
/// by `u0000`, which only costs a reparse that changes nothing.
impl OutsideText for Box<RawValue> {
    fn has_nul(&self) -> bool {
        self.get().contains("\\u0000")
    }

    fn replace_nul(&mut self) {
        let Ok(mut value) = serde_json::from_str::<Value>(self.get()) else {
            return;
        };
        value.replace_nul();
        if let Ok(text) = serde_json::value::to_raw_value(&value) {
            *self = text;
        }
    }
}

impl OutsideText for Value {
    fn has_nul(&self) -> bool {
        match self {
            Value::String(s) => s.has_nul(),
            Value::Array(items) => items.iter().any(OutsideText::has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || v.has_nul()),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }

    fn replace_nul(&mut self) {
        match self {
            Value::String(s) => s.replace_nul(),
            Value::Array(items) => items.iter_mut().for_each(OutsideText::replace_nul),
            Value::Object(map) if map.keys().any(|k| k.contains('\0')) => {
                // Keys cannot change in place: the map is rebuilt.
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(mut k, mut v)| {
                        k.replace_nul();
                        v.replace_nul();
                        (k, v)
                    })
                    .collect();
            }
            Value::Object(map) => map.values_mut().for_each(OutsideText::replace_nul),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// Implements [`OutsideText`] for a struct from the list of its text fields and the list of
/// the rest; the destructuring names every field, so a new one must be listed to compile.
macro_rules! outside_text {
    (
        $Type:ident {
            text: [$($text:ident),* $(,)?],
            other: [$($other:ident),* $(,)?] $(,)?
        }
    ) => {
        impl OutsideText for $Type {
            fn has_nul(&self) -> bool {
                let $Type { $($text,)* $($other: _,)* } = self;
                false $(|| $text.has_nul())*
            }

            fn replace_nul(&mut self) {
                let $Type { $($text,)* $($other: _,)* } = self;
                $($text.replace_nul();)*
            }
        }
    };
}

outside_text!(NewEvent {
    text: [source, delivery_id, event_type, headers, payload],
    other: [id, received_at, status],
});
outside_text!(NewDeliveryAttempt {
    text: [source, remote_addr, method, path, headers, reason],
    other: [id, received_at, body, body_size, verdict, status],
});
outside_text!(NewExecution {
    text: [rule_id, plugin, idempotency_key, order_key],
    other: [id, action_index, generation, lease],
});
outside_text!(EventPlan {
    text: [match_trace, executions],
    other: [event],
});
outside_text!(NewExecutionAttempt {
    text: [error, output, logs, http_calls, db_statements],
    other: [
        attempt,
        started_at,
        finished_at,
        outcome,
        fuel_used,
        memory_peak
    ],
});
outside_text!(FinishRequest {
    text: [owner, attempt, next, announces],
    other: [id],
});
outside_text!(Announcement {
    text: [event, attempt],
    other: [],
});
outside_text!(ClaimRequest {
    text: [owner, busy],
    other: [limit, lease, now],
});
outside_text!(ClaimExclusions {
    text: [plugins, actions, shared],
    other: [],
});

impl OutsideText for SharedLimit {
    fn has_nul(&self) -> bool {
        match &self.scope {
            LimitScope::Plugin(plugin) => plugin.has_nul(),
            LimitScope::Action(rule, _) => rule.has_nul(),
        }
    }

    fn replace_nul(&mut self) {
        match &mut self.scope {
            LimitScope::Plugin(plugin) => plugin.replace_nul(),
            LimitScope::Action(rule, _) => rule.replace_nul(),
        }
    }
}

impl OutsideText for NextStep {
    fn has_nul(&self) -> bool {
        match self {
            NextStep::Dead(reason) => reason.has_nul(),
            NextStep::Succeeded | NextStep::RetryAt(_) => false,
        }
    }

    fn replace_nul(&mut self) {
        match self {
            NextStep::Dead(reason) => reason.replace_nul(),
            NextStep::Succeeded | NextStep::RetryAt(_) => {}
        }
    }
}

impl OutsideText for WriteRequest {
    fn has_nul(&self) -> bool {
        match self {
            WriteRequest::Ingest {
                event,
                attempt,
                plan,
            } => event.has_nul() || attempt.has_nul() || plan.has_nul(),
            WriteRequest::Attempt(attempt) => attempt.has_nul(),
            WriteRequest::Finish(finish) => finish.has_nul(),
            WriteRequest::Claim(claim) => claim.has_nul(),
            WriteRequest::Plan(plans) => plans.has_nul(),
        }
    }

    fn replace_nul(&mut self) {
        match self {
            WriteRequest::Ingest {
                event,
                attempt,
                plan,
            } => {
                event.replace_nul();
                attempt.replace_nul();
                plan.replace_nul();
            }
            WriteRequest::Attempt(attempt) => attempt.replace_nul(),
            WriteRequest::Finish(finish) => finish.replace_nul(),
            WriteRequest::Claim(claim) => claim.replace_nul(),
            WriteRequest::Plan(plans) => plans.replace_nul(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{DeliveryAttemptId, EventId, EventStatus, Millis, Verdict};

    #[test]
    fn json_strings_and_keys_lose_their_nul_and_keep_the_rest() {
        let mut value = json!({
            "a\u{0}b": ["x\u{0}", 1, null, true, {"deep": "\u{0}\u{0}"}],
            "plain": "no nul here",
        });
        assert!(value.has_nul());
        value.replace_nul();
        assert!(!value.has_nul());
        assert_eq!(
            value,
            json!({
                "a\u{FFFD}b": ["x\u{FFFD}", 1, null, true, {"deep": "\u{FFFD}\u{FFFD}"}],
                "plain": "no nul here",
            })
        );
        // What PostgreSQL refuses in JSONB is the escape, and none is left.
        assert!(!value.to_string().contains("\\u0000"));
    }

    #[test]
    fn json_text_loses_its_nul_escapes_and_keeps_the_rest() {
        let value = json!({"rule": "a\u{0}b", "keys": {"k\u{0}": [1, "\u{0}"]}, "n": 2.5});
        let mut text = serde_json::value::to_raw_value(&value).expect("serializes");
        assert!(text.has_nul());
        text.replace_nul();
        assert!(!text.has_nul());
        let back: Value = serde_json::from_str(text.get()).expect("still JSON");
        assert_eq!(
            back,
            json!({"rule": "a\u{FFFD}b", "keys": {"k\u{FFFD}": [1, "\u{FFFD}"]}, "n": 2.5})
        );
        // An escaped backslash before `u0000` is not U+0000: the text comes back unchanged.
        let lookalike = r#"{"path":"C:\\u0000"}"#;
        let mut text = RawValue::from_string(lookalike.to_string()).expect("JSON");
        text.replace_nul();
        assert_eq!(text.get(), lookalike);
    }

    fn refused_request(path_source: &str) -> WriteRequest {
        WriteRequest::Attempt(NewDeliveryAttempt {
            id: DeliveryAttemptId::new(),
            source: path_source.into(),
            received_at: Millis(1),
            remote_addr: Some("127.0.0.1:1".into()),
            method: "POST".into(),
            path: "/hooks/a%00b".into(),
            headers: json!({"x-odd": "\u{0}"}),
            body: Some(vec![0, 1, 2]),
            body_size: 3,
            verdict: Verdict::Rejected,
            status: 404,
            reason: Some(format!("unknown_source: no source `{path_source}`")),
        })
    }

    #[test]
    fn a_batch_without_nul_is_borrowed_and_one_with_it_is_cleaned_whole() {
        let clean = [refused_request("github")];
        let WriteRequest::Attempt(a) = &clean[0] else {
            unreachable!()
        };
        assert!(a.headers.has_nul(), "the header value holds U+0000");
        let event = NewEvent {
            id: EventId::new(),
            source: "stripe".into(),
            delivery_id: "evt_1".into(),
            event_type: "charge.\u{0}".into(),
            received_at: Millis(1),
            headers: json!({}),
            payload: r#"{"type":"charge.\u0000"}"#.into(),
            status: EventStatus::Pending,
        };
        let batch = vec![
            WriteRequest::Attempt(NewDeliveryAttempt {
                headers: json!({}),
                ..a.clone()
            }),
            refused_request("a\u{0}b"),
            WriteRequest::Ingest {
                attempt: a.clone(),
                event,
                plan: None,
            },
        ];
        assert!(matches!(NulReplaced::all(&batch[..1]), Cow::Borrowed(_)));
        assert!(matches!(Lossless::all(&batch), Cow::Borrowed(_)));
        let cleaned = NulReplaced::all(&batch);
        assert!(matches!(cleaned, Cow::Owned(_)));
        assert!(!cleaned.iter().any(OutsideText::has_nul));
        let WriteRequest::Attempt(refused) = &cleaned[1] else {
            unreachable!()
        };
        assert_eq!(refused.source, "a\u{FFFD}b");
        assert_eq!(
            refused.reason.as_deref(),
            Some("unknown_source: no source `a\u{FFFD}b`")
        );
        // Bytes are not text: a body is kept as it came.
        assert_eq!(refused.body.as_deref(), Some(&[0u8, 1, 2][..]));
        let WriteRequest::Ingest { event, .. } = &cleaned[2] else {
            unreachable!()
        };
        assert_eq!(event.event_type, "charge.\u{FFFD}");
        // The escape in a JSON text is six characters, not U+0000: TEXT holds it as it is.
        assert_eq!(event.payload, r#"{"type":"charge.\u0000"}"#);
    }

    #[test]
    fn lookups_find_what_was_stored() {
        assert_eq!(NulReplaced::text("a\u{0}b"), "a\u{FFFD}b");
        assert!(matches!(NulReplaced::text("ab"), Cow::Borrowed("ab")));
        assert_eq!(Lossless::text("a\u{0}b"), "a\u{0}b");
    }
}
