//! Step 3 of the event path: which delivery this is (for exactly-once storage), what type of
//! event it carries (for rule matching), and the replies to providers' endpoint handshakes.
//! Call these only on a request that [`super::verify`] accepted.
//!
//! | provider | delivery id | event type |
//! |---|---|---|
//! | github | `X-GitHub-Delivery` | `X-GitHub-Event` + `.` + body `action` when present (`pull_request.opened`, `push`) |
//! | stripe | body `id` | body `type` |
//! | standard-webhooks, svix, clerk, resend | the signed `svix-id` (when present), else `webhook-id` | body `type` |
//! | slack | body `event_id` | body `event.type`, else `type`; `slash_command` for slash commands |
//! | shopify | `X-Shopify-Webhook-Id` | `X-Shopify-Topic` |
//! | twilio | `I-Twilio-Idempotency-Token` | body `EventType`, else `message.<MessageStatus or SmsStatus>`, else `call.<CallStatus>` |
//! | gitlab | `X-Gitlab-Event-UUID` | body `object_kind`, else `X-Gitlab-Event` |
//! | paddle | body `event_id` | body `event_type` |
//! | linear | `Linear-Delivery` | body `type` + `.` + `action` (`Issue.create`) |
//! | square | body `event_id` | body `type` |
//! | mailgun | body `event-data.id` | body `event-data.event` |
//! | sendgrid | `sg_event_id` of a one-event batch | `event` shared by every event of the batch, else `batch` |
//! | pagerduty | body `event.id` | body `event.event_type` |
//! | hubspot | `eventId` of a one-event batch | `subscriptionType` shared by every event, else `batch` |
//! | zoom | `x-zm-trackingid` | body `event` |
//! | discord | body `id` | body `event.type` (webhook events), else the interaction type name (`PING`, `APPLICATION_COMMAND`, ...) |
//! | twitch | `Twitch-Eventsub-Message-Id` | `Twitch-Eventsub-Subscription-Type` (body `subscription.type`); the message type for `webhook_callback_verification` and `revocation` |
//! | intercom | body `id` | body `topic` |
//! | typeform | body `event_id` | body `event_type` |
//! | bitbucket | `X-Request-UUID` | `X-Event-Key` |
//! | jira | `X-Atlassian-Webhook-Identifier` | body `webhookEvent` |
//! | calendly | — | body `event` |
//! | docusign | — | body `event` |
//! | hmac, none | `webhook-id`, else `Idempotency-Key`, else body `id` | body `type`, else `event`, else `event_type` |

use serde_json::Value;

use super::Payload;
use super::common::hmac;
use super::common::{Alg, opt_header};
use super::{Keys, Provider, standard_webhooks};

/// The provider's own name for a delivery and its event type, where it gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub delivery_id: Option<String>,
    pub event_type: Option<String>,
}

/// The response a provider's endpoint handshake expects instead of normal processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Discord interaction types, indexed by their number.
const DISCORD_INTERACTIONS: &[(i64, &str)] = &[
    (1, "PING"),
    (2, "APPLICATION_COMMAND"),
    (3, "MESSAGE_COMPONENT"),
    (4, "APPLICATION_COMMAND_AUTOCOMPLETE"),
    (5, "MODAL_SUBMIT"),
];

/// A string (or number) at a JSON pointer, non-empty.
fn at(payload: &Value, pointer: &str) -> Option<String> {
    text(payload.pointer(pointer))
}

/// A string or number as text; `None` for anything else and for the empty string.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn hdr(headers: &http::HeaderMap, name: &str) -> Option<String> {
    opt_header(headers, name)
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// For batch payloads (a JSON array of events): the id of a single-event batch, and the type all
/// events share (`batch` when they differ).
fn batch(payload: &Value, id_field: &str, type_field: &str) -> Identity {
    let Some(events) = payload.as_array() else {
        return Identity {
            delivery_id: at(payload, &format!("/{id_field}")),
            event_type: at(payload, &format!("/{type_field}")),
        };
    };
    let delivery_id = match events.as_slice() {
        [only] => at(only, &format!("/{id_field}")),
        _ => None,
    };
    let types: Vec<Option<String>> = events
        .iter()
        .map(|e| at(e, &format!("/{type_field}")))
        .collect();
    let event_type = match types.first() {
        Some(first) if types.iter().all(|t| t == first) => first.clone(),
        Some(_) => Some("batch".to_owned()),
        None => None,
    };
    Identity {
        delivery_id,
        event_type,
    }
}

/// The delivery id and event type of a verified request; see the table in this module's docs.
pub fn identify(provider: Provider, headers: &http::HeaderMap, payload: &Payload<'_>) -> Identity {
    let h = |name: &str| hdr(headers, name);
    let p = |pointer: &str| text(payload.pointer(pointer).as_deref());
    let (delivery_id, event_type) = match provider {
        Provider::Github => {
            let event = h("X-GitHub-Event").map(|e| match p("/action") {
                Some(action) => format!("{e}.{action}"),
                None => e,
            });
            (h("X-GitHub-Delivery"), event)
        }
        Provider::Stripe => (p("/id"), p("/type")),
        Provider::StandardWebhooks | Provider::Svix | Provider::Clerk | Provider::Resend => {
            (standard_webhooks::signed_id(provider, headers), p("/type"))
        }
        Provider::Slack => {
            let event = p("/event/type").or_else(|| p("/type")).or_else(|| {
                payload
                    .pointer("/command")
                    .map(|_| "slash_command".to_owned())
            });
            (p("/event_id"), event)
        }
        Provider::Shopify => (h("X-Shopify-Webhook-Id"), h("X-Shopify-Topic")),
        Provider::Twilio => {
            let event = p("/EventType")
                .or_else(|| {
                    p("/MessageStatus")
                        .or_else(|| p("/SmsStatus"))
                        .map(|s| format!("message.{s}"))
                })
                .or_else(|| p("/CallStatus").map(|s| format!("call.{s}")));
            (h("I-Twilio-Idempotency-Token"), event)
        }
        Provider::Gitlab => (
            h("X-Gitlab-Event-UUID"),
            p("/object_kind").or_else(|| h("X-Gitlab-Event")),
        ),
        Provider::Paddle => (p("/event_id"), p("/event_type")),
        Provider::Linear => {
            let event = p("/type").map(|t| match p("/action") {
                Some(action) => format!("{t}.{action}"),
                None => t,
            });
            (h("Linear-Delivery"), event)
        }
        Provider::Square => (p("/event_id"), p("/type")),
        Provider::Mailgun => (p("/event-data/id"), p("/event-data/event")),
        Provider::Sendgrid => return batch(payload.value(), "sg_event_id", "event"),
        Provider::Hubspot => return batch(payload.value(), "eventId", "subscriptionType"),
        Provider::Pagerduty => (p("/event/id"), p("/event/event_type")),
        Provider::Zoom => (h("x-zm-trackingid"), p("/event")),
        Provider::Discord => {
            let event = p("/event/type").or_else(|| {
                let kind = payload.pointer("/type")?.as_i64()?;
                DISCORD_INTERACTIONS
                    .iter()
                    .find(|(n, _)| *n == kind)
                    .map(|(_, name)| (*name).to_owned())
            });
            (p("/id"), event)
        }
        Provider::Twitch => {
            let message_type = h("Twitch-Eventsub-Message-Type");
            let event = match message_type.as_deref() {
                Some(t @ ("webhook_callback_verification" | "revocation")) => Some(t.to_owned()),
                _ => h("Twitch-Eventsub-Subscription-Type").or_else(|| p("/subscription/type")),
            };
            (h("Twitch-Eventsub-Message-Id"), event)
        }
        Provider::Intercom => (p("/id"), p("/topic")),
        Provider::Typeform => (p("/event_id"), p("/event_type")),
        Provider::Bitbucket => (h("X-Request-UUID"), h("X-Event-Key")),
        Provider::Jira => (h("X-Atlassian-Webhook-Identifier"), p("/webhookEvent")),
        Provider::Calendly | Provider::Docusign => (None, p("/event")),
        Provider::Hmac | Provider::None => (
            h("webhook-id")
                .or_else(|| h("Idempotency-Key"))
                .or_else(|| p("/id")),
            p("/type")
                .or_else(|| p("/event"))
                .or_else(|| p("/event_type")),
        ),
    };
    Identity {
        delivery_id,
        event_type,
    }
}

fn json_reply(value: &Value) -> HandshakeReply {
    HandshakeReply {
        status: 200,
        content_type: "application/json",
        body: value.to_string().into_bytes(),
    }
}

fn text_reply(text: &str) -> HandshakeReply {
    HandshakeReply {
        status: 200,
        content_type: "text/plain",
        body: text.as_bytes().to_vec(),
    }
}

/// The reply to a provider's endpoint handshake, when `payload` is one; `None` for normal events.
///
/// - Slack `url_verification`: the `challenge`, as text.
/// - Zoom `endpoint.url_validation`: `{"plainToken", "encryptedToken"}`, the token's hex
///   HMAC-SHA256 under the first (current) secret; `None` without a secret.
/// - Twitch `webhook_callback_verification` (a body with `challenge` and `subscription`): the
///   challenge, as text.
/// - Discord interaction PING (`type` 1): `{"type":1}`; webhook-event PING (`type` 0 with a
///   `version`): 204 with no body.
pub fn handshake(provider: Provider, keys: &Keys, payload: &Payload<'_>) -> Option<HandshakeReply> {
    if !matches!(
        provider,
        Provider::Slack | Provider::Zoom | Provider::Twitch | Provider::Discord
    ) {
        return None;
    }
    let payload = payload.value();
    match provider {
        Provider::Slack => {
            if payload.get("type")?.as_str()? != "url_verification" {
                return None;
            }
            Some(text_reply(payload.get("challenge")?.as_str()?))
        }
        Provider::Zoom => {
            if payload.get("event")?.as_str()? != "endpoint.url_validation" {
                return None;
            }
            let plain = payload.pointer("/payload/plainToken")?.as_str()?;
            let secret = keys.secrets.first()?;
            let encrypted = hex::encode(hmac(
                Alg::Sha256,
                secret.expose().as_bytes(),
                &[plain.as_bytes()],
            ));
            Some(json_reply(&serde_json::json!({
                "plainToken": plain,
                "encryptedToken": encrypted,
            })))
        }
        Provider::Twitch => {
            payload.get("subscription")?;
            Some(text_reply(payload.get("challenge")?.as_str()?))
        }
        Provider::Discord => match payload.get("type")?.as_i64()? {
            1 if payload.get("version").is_none() => {
                Some(json_reply(&serde_json::json!({ "type": 1 })))
            }
            0 if payload.get("version").is_some() => Some(HandshakeReply {
                status: 204,
                content_type: "text/plain",
                body: Vec::new(),
            }),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                map.append(k, v);
            }
        }
        map
    }

    /// Provider, headers, payload, expected delivery id, expected event type.
    type IdentityCase = (
        Provider,
        Vec<(&'static str, &'static str)>,
        Value,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[test]
    fn identity_table() {
        let cases: Vec<IdentityCase> = vec![
            (
                Provider::Github,
                vec![
                    ("X-GitHub-Delivery", "d1"),
                    ("X-GitHub-Event", "pull_request"),
                ],
                json!({"action": "opened"}),
                Some("d1"),
                Some("pull_request.opened"),
            ),
            (
                Provider::Github,
                vec![("X-GitHub-Event", "push")],
                json!({"ref": "refs/heads/main"}),
                None,
                Some("push"),
            ),
            (
                Provider::Stripe,
                vec![],
                json!({"id": "evt_1", "type": "invoice.paid"}),
                Some("evt_1"),
                Some("invoice.paid"),
            ),
            (
                Provider::StandardWebhooks,
                vec![("webhook-id", "msg_1")],
                json!({"type": "user.created"}),
                Some("msg_1"),
                Some("user.created"),
            ),
            (
                Provider::Clerk,
                vec![("svix-id", "msg_2")],
                json!({"type": "user.updated"}),
                Some("msg_2"),
                Some("user.updated"),
            ),
            (
                Provider::Slack,
                vec![],
                json!({"event_id": "Ev1", "type": "event_callback", "event": {"type": "app_mention"}}),
                Some("Ev1"),
                Some("app_mention"),
            ),
            (
                Provider::Slack,
                vec![],
                json!({"type": "url_verification", "challenge": "c"}),
                None,
                Some("url_verification"),
            ),
            (
                Provider::Slack,
                vec![],
                json!({"command": "/deploy"}),
                None,
                Some("slash_command"),
            ),
            (
                Provider::Shopify,
                vec![
                    ("X-Shopify-Webhook-Id", "w1"),
                    ("X-Shopify-Topic", "orders/create"),
                ],
                json!({}),
                Some("w1"),
                Some("orders/create"),
            ),
            (
                Provider::Twilio,
                vec![("I-Twilio-Idempotency-Token", "t1")],
                json!({"MessageStatus": "delivered"}),
                Some("t1"),
                Some("message.delivered"),
            ),
            (
                Provider::Twilio,
                vec![],
                json!({"CallStatus": "ringing"}),
                None,
                Some("call.ringing"),
            ),
            (
                Provider::Gitlab,
                vec![
                    ("X-Gitlab-Event-UUID", "g1"),
                    ("X-Gitlab-Event", "Push Hook"),
                ],
                json!({"object_kind": "push"}),
                Some("g1"),
                Some("push"),
            ),
            (
                Provider::Gitlab,
                vec![("X-Gitlab-Event", "Push Hook")],
                json!({}),
                None,
                Some("Push Hook"),
            ),
            (
                Provider::Paddle,
                vec![],
                json!({"event_id": "evt_01", "event_type": "transaction.completed"}),
                Some("evt_01"),
                Some("transaction.completed"),
            ),
            (
                Provider::Linear,
                vec![("Linear-Delivery", "l1")],
                json!({"type": "Issue", "action": "create"}),
                Some("l1"),
                Some("Issue.create"),
            ),
            (
                Provider::Square,
                vec![],
                json!({"event_id": "e1", "type": "payment.updated"}),
                Some("e1"),
                Some("payment.updated"),
            ),
            (
                Provider::Mailgun,
                vec![],
                json!({"event-data": {"id": "m1", "event": "delivered"}}),
                Some("m1"),
                Some("delivered"),
            ),
            (
                Provider::Sendgrid,
                vec![],
                json!([{"sg_event_id": "s1", "event": "open"}]),
                Some("s1"),
                Some("open"),
            ),
            (
                Provider::Sendgrid,
                vec![],
                json!([{"sg_event_id": "s1", "event": "open"}, {"sg_event_id": "s2", "event": "click"}]),
                None,
                Some("batch"),
            ),
            (
                Provider::Hubspot,
                vec![],
                json!([{"eventId": 7, "subscriptionType": "contact.creation"}]),
                Some("7"),
                Some("contact.creation"),
            ),
            (
                Provider::Pagerduty,
                vec![],
                json!({"event": {"id": "p1", "event_type": "incident.triggered"}}),
                Some("p1"),
                Some("incident.triggered"),
            ),
            (
                Provider::Zoom,
                vec![("x-zm-trackingid", "z1")],
                json!({"event": "meeting.started"}),
                Some("z1"),
                Some("meeting.started"),
            ),
            (
                Provider::Discord,
                vec![],
                json!({"id": "i1", "type": 2}),
                Some("i1"),
                Some("APPLICATION_COMMAND"),
            ),
            (
                Provider::Discord,
                vec![],
                json!({"version": 1, "type": 1, "event": {"type": "APPLICATION_AUTHORIZED"}}),
                None,
                Some("APPLICATION_AUTHORIZED"),
            ),
            (
                Provider::Twitch,
                vec![
                    ("Twitch-Eventsub-Message-Id", "tw1"),
                    ("Twitch-Eventsub-Message-Type", "notification"),
                    ("Twitch-Eventsub-Subscription-Type", "channel.follow"),
                ],
                json!({}),
                Some("tw1"),
                Some("channel.follow"),
            ),
            (
                Provider::Twitch,
                vec![(
                    "Twitch-Eventsub-Message-Type",
                    "webhook_callback_verification",
                )],
                json!({"challenge": "x"}),
                None,
                Some("webhook_callback_verification"),
            ),
            (
                Provider::Intercom,
                vec![],
                json!({"id": "notif_1", "topic": "conversation.user.created"}),
                Some("notif_1"),
                Some("conversation.user.created"),
            ),
            (
                Provider::Typeform,
                vec![],
                json!({"event_id": "01", "event_type": "form_response"}),
                Some("01"),
                Some("form_response"),
            ),
            (
                Provider::Bitbucket,
                vec![("X-Request-UUID", "b1"), ("X-Event-Key", "repo:push")],
                json!({}),
                Some("b1"),
                Some("repo:push"),
            ),
            (
                Provider::Jira,
                vec![("X-Atlassian-Webhook-Identifier", "j1")],
                json!({"webhookEvent": "jira:issue_created"}),
                Some("j1"),
                Some("jira:issue_created"),
            ),
            (
                Provider::Calendly,
                vec![],
                json!({"event": "invitee.created"}),
                None,
                Some("invitee.created"),
            ),
            (
                Provider::Docusign,
                vec![],
                json!({"event": "envelope-completed"}),
                None,
                Some("envelope-completed"),
            ),
            (
                Provider::Hmac,
                vec![("Idempotency-Key", "k1")],
                json!({"event": "thing.done"}),
                Some("k1"),
                Some("thing.done"),
            ),
            (Provider::None, vec![], json!({}), None, None),
        ];
        for (provider, hs, payload, id, event) in cases {
            let body = payload.to_string();
            let Some(read) = Payload::read(body.as_bytes()) else {
                panic!("{body} is not a payload");
            };
            let got = identify(provider, &headers(&hs), &read);
            assert_eq!(got.delivery_id.as_deref(), id, "{provider} {payload}");
            assert_eq!(got.event_type.as_deref(), event, "{provider} {payload}");
        }
    }

    /// The handshake reply to `payload` sent as a JSON body.
    fn handshake_of(provider: Provider, keys: &Keys, payload: &Value) -> Option<HandshakeReply> {
        let body = payload.to_string();
        handshake(provider, keys, &Payload::read(body.as_bytes())?)
    }

    #[test]
    fn handshakes() {
        let keys = Keys::secrets(["zoom-secret"]);
        let slack = handshake_of(
            Provider::Slack,
            &keys,
            &json!({"type": "url_verification", "challenge": "3eZbrw1a"}),
        );
        assert_eq!(slack.map(|r| r.body), Some(b"3eZbrw1a".to_vec()));
        let zoom = handshake_of(
            Provider::Zoom,
            &keys,
            &json!({"event": "endpoint.url_validation", "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}}),
        );
        let want = hex::encode(hmac(
            Alg::Sha256,
            b"zoom-secret",
            &[b"qgg8vlvZRS6UYooatFL8Aw"],
        ));
        let body: Value = zoom
            .map(|r| serde_json::from_slice(&r.body).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(
            body,
            json!({"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": want})
        );
        assert_eq!(
            handshake_of(
                Provider::Zoom,
                &Keys::default(),
                &json!({"event": "endpoint.url_validation", "payload": {"plainToken": "x"}})
            ),
            None
        );
        let twitch = handshake_of(
            Provider::Twitch,
            &keys,
            &json!({"challenge": "pogchamp-kappa-360noscope-vohiyo", "subscription": {}}),
        );
        assert_eq!(
            twitch.map(|r| (r.content_type, r.body)),
            Some(("text/plain", b"pogchamp-kappa-360noscope-vohiyo".to_vec()))
        );
        let discord = handshake_of(Provider::Discord, &keys, &json!({"type": 1, "id": "x"}));
        assert_eq!(discord.map(|r| r.body), Some(br#"{"type":1}"#.to_vec()));
        let discord_events =
            handshake_of(Provider::Discord, &keys, &json!({"version": 1, "type": 0}));
        assert_eq!(discord_events.map(|r| r.status), Some(204));
        for (provider, payload) in [
            (Provider::Slack, json!({"type": "event_callback"})),
            (Provider::Discord, json!({"type": 2})),
            (Provider::Github, json!({"challenge": "x"})),
            (Provider::Twitch, json!({"event": {}})),
            (Provider::Slack, json!([1, 2])),
        ] {
            assert_eq!(handshake_of(provider, &keys, &payload), None, "{provider}");
        }
    }
}
