//! The `notify` plugin: one message to one destination, chosen by which target key the
//! input has: `slack_webhook`, `slack_token` (chat.postMessage), `discord_webhook`,
//! `teams_webhook` (a Workflows webhook with an Adaptive Card), `webhook` (any JSON
//! receiver, optionally signed with the Standard Webhooks scheme) or `email` (SendGrid,
//! Postmark, Mailgun or Resend). Each request has the shape the service documents.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hookwise_first_party::{
    HmacAlgorithm, base64 as b64, check_header_name, check_header_value, check_url, percent_encode,
    status_error, transport_error, with_query,
};
use hookwise_plugin_sdk::serde_json::{self, Map, Value, json};
use hookwise_plugin_sdk::{Context, Event, Plugin, PluginError, export_plugin, http, log};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The keys that pick a destination; exactly one must be present.
const TARGETS: [&str; 6] = [
    "slack_webhook",
    "slack_token",
    "discord_webhook",
    "teams_webhook",
    "webhook",
    "email",
];
/// Discord refuses messages longer than this many characters.
const DISCORD_MAX_CONTENT: usize = 2000;
/// ...and more embeds than this.
const DISCORD_MAX_EMBEDS: usize = 10;
/// Slack truncates/refuses texts beyond 40,000 characters.
const SLACK_MAX_TEXT: usize = 40_000;
/// Slack accepts at most 50 blocks in a message.
const SLACK_MAX_BLOCKS: usize = 50;
/// Recipients per message (Postmark's limit, the lowest of the supported mail APIs).
const MAX_RECIPIENTS: usize = 50;
const DEFAULT_SLACK_API: &str = "https://slack.com/api";
const JSON: &str = "application/json";

struct Notify;

impl Plugin for Notify {
    type Input = Value;
    type Output = Value;

    fn handle(ctx: &Context, event: &Event, input: Value) -> Result<Value, PluginError> {
        let Value::Object(input) = input else {
            return Err(PluginError::fatal("notify: the input must be an object"));
        };
        let present: Vec<&str> = TARGETS
            .iter()
            .copied()
            .filter(|k| input.contains_key(*k))
            .collect();
        let target = match present.as_slice() {
            [one] => *one,
            [] => {
                return Err(PluginError::fatal(format!(
                    "notify: no destination; give one of {}",
                    TARGETS.join(", ")
                )));
            }
            many => {
                return Err(PluginError::fatal(format!(
                    "notify: one destination per action, got {}",
                    many.join(" and ")
                )));
            }
        };
        let input = Value::Object(input);
        match target {
            "slack_webhook" => slack_webhook(parse(input)?),
            "slack_token" => slack_api(parse(input)?),
            "discord_webhook" => discord(parse(input)?),
            "teams_webhook" => teams(parse(input)?),
            "webhook" => webhook(ctx, event, parse(input)?),
            _ => email(parse(input)?),
        }
    }
}

export_plugin!(Notify);

fn parse<T: DeserializeOwned>(input: Value) -> Result<T, PluginError> {
    serde_json::from_value(input).map_err(|e| PluginError::fatal(format!("notify: {e}")))
}

fn bad(message: impl Into<String>) -> PluginError {
    PluginError::fatal(format!("notify: {}", message.into()))
}

/// Sends a JSON body and classifies the answer; returns the response on 2xx.
fn post_json(
    what: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Result<http::Response, PluginError> {
    let body = body.to_string();
    let mut all = vec![("content-type", JSON)];
    all.extend_from_slice(headers);
    send(what, "POST", url, &all, body.as_bytes())
}

fn send(
    what: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<http::Response, PluginError> {
    let response = http::request(method, url, headers, Some(body), None)
        .map_err(|e| transport_error(what, e))?;
    log::info(&format!(
        "{what}: {method} {} -> {}",
        redact(url),
        response.status
    ));
    if (200..300).contains(&response.status) {
        Ok(response)
    } else {
        Err(status_error(what, &response))
    }
}

/// Webhook URLs carry their secret in the path: log the scheme and host only.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            format!("{scheme}://{host}/…")
        }
        None => "(invalid URL)".to_string(),
    }
}

/// Copies the optional fields that are set.
fn put<T: serde::Serialize>(body: &mut Map<String, Value>, key: &str, value: &Option<T>) {
    if let Some(v) = value
        && let Ok(v) = serde_json::to_value(v)
    {
        body.insert(key.to_string(), v);
    }
}

// ---- Slack -----------------------------------------------------------------------------

/// Message fields shared by incoming webhooks and chat.postMessage.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackMessage {
    #[serde(default)]
    text: Option<String>,
    /// Block Kit blocks, sent as given.
    #[serde(default)]
    blocks: Option<Vec<Value>>,
    /// Legacy attachments, sent as given.
    #[serde(default)]
    attachments: Option<Vec<Value>>,
    #[serde(default)]
    thread_ts: Option<String>,
    #[serde(default)]
    mrkdwn: Option<bool>,
    #[serde(default)]
    unfurl_links: Option<bool>,
    #[serde(default)]
    unfurl_media: Option<bool>,
}

impl SlackMessage {
    fn check(&self) -> Result<(), PluginError> {
        let text = self.text.as_deref().unwrap_or("");
        if text.trim().is_empty() && self.blocks.is_none() && self.attachments.is_none() {
            return Err(bad(
                "a Slack message needs `text`, `blocks` or `attachments`",
            ));
        }
        if text.chars().count() > SLACK_MAX_TEXT {
            return Err(bad(format!(
                "`text` is longer than Slack's {SLACK_MAX_TEXT} characters"
            )));
        }
        if let Some(blocks) = &self.blocks {
            if blocks.len() > SLACK_MAX_BLOCKS {
                return Err(bad(format!(
                    "Slack accepts at most {SLACK_MAX_BLOCKS} blocks, got {}",
                    blocks.len()
                )));
            }
            if let Some(i) = blocks
                .iter()
                .position(|b| !b.get("type").is_some_and(Value::is_string))
            {
                return Err(bad(format!(
                    "`blocks[{i}]` is not a Block Kit block (no `type`)"
                )));
            }
        }
        Ok(())
    }

    fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        put(&mut body, "text", &self.text);
        put(&mut body, "blocks", &self.blocks);
        put(&mut body, "attachments", &self.attachments);
        put(&mut body, "thread_ts", &self.thread_ts);
        put(&mut body, "mrkdwn", &self.mrkdwn);
        put(&mut body, "unfurl_links", &self.unfurl_links);
        put(&mut body, "unfurl_media", &self.unfurl_media);
        body
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackWebhookInput {
    slack_webhook: String,
    #[serde(flatten)]
    message: SlackMessage,
}

fn slack_webhook(input: SlackWebhookInput) -> Result<Value, PluginError> {
    check_url("slack_webhook", &input.slack_webhook).map_err(bad)?;
    input.message.check()?;
    let response = post_json(
        "Slack webhook",
        &input.slack_webhook,
        &[],
        &Value::Object(input.message.body()),
    )?;
    Ok(json!({ "target": "slack_webhook", "status": response.status }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackApiInput {
    /// A bot token (`xoxb-...`) with the `chat:write` scope.
    slack_token: String,
    channel: String,
    #[serde(flatten)]
    message: SlackMessage,
    #[serde(default)]
    reply_broadcast: Option<bool>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    icon_emoji: Option<String>,
    #[serde(default)]
    icon_url: Option<String>,
    /// Base URL of the Web API (default `https://slack.com/api`).
    #[serde(default)]
    slack_api_url: Option<String>,
}

/// Slack Web API errors that are worth retrying (the rest are the caller's mistake).
const SLACK_RETRYABLE: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

fn slack_api(input: SlackApiInput) -> Result<Value, PluginError> {
    if input.slack_token.trim().is_empty() {
        return Err(bad("`slack_token` is empty"));
    }
    check_header_value("authorization", &input.slack_token).map_err(bad)?;
    if input.channel.trim().is_empty() {
        return Err(bad("`channel` is empty"));
    }
    input.message.check()?;
    let base = input
        .slack_api_url
        .as_deref()
        .unwrap_or(DEFAULT_SLACK_API)
        .trim_end_matches('/');
    check_url("slack_api_url", base).map_err(bad)?;
    let url = format!("{base}/chat.postMessage");
    let mut body = input.message.body();
    body.insert("channel".into(), Value::String(input.channel.clone()));
    put(&mut body, "reply_broadcast", &input.reply_broadcast);
    put(&mut body, "username", &input.username);
    put(&mut body, "icon_emoji", &input.icon_emoji);
    put(&mut body, "icon_url", &input.icon_url);
    let auth = format!("Bearer {}", input.slack_token);
    let response = send(
        "Slack chat.postMessage",
        "POST",
        &url,
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("authorization", &auth),
        ],
        Value::Object(body).to_string().as_bytes(),
    )?;
    // The Web API answers 200 with `"ok": false` for most errors.
    let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if answer.get("ok") == Some(&Value::Bool(true)) {
        return Ok(json!({
            "target": "slack_token",
            "channel": answer.get("channel").cloned().unwrap_or(Value::Null),
            "ts": answer.get("ts").cloned().unwrap_or(Value::Null),
        }));
    }
    let error = answer
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unknown_error");
    let message = format!("Slack chat.postMessage failed: {error}");
    if SLACK_RETRYABLE.contains(&error) {
        Err(hookwise_first_party::retry_later(
            message,
            response.retry_after(),
        ))
    } else {
        Err(PluginError::fatal(message))
    }
}

// ---- Discord ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscordInput {
    discord_webhook: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    embeds: Option<Vec<Value>>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
    #[serde(default)]
    tts: Option<bool>,
    /// Default `{"parse": []}`: nobody is pinged by text that came from an event.
    #[serde(default)]
    allowed_mentions: Option<Value>,
    /// Post into this thread of the webhook's channel.
    #[serde(default)]
    thread_id: Option<String>,
}

fn discord(input: DiscordInput) -> Result<Value, PluginError> {
    check_url("discord_webhook", &input.discord_webhook).map_err(bad)?;
    let content = input.content.as_deref().unwrap_or("");
    let embeds = input.embeds.as_deref().unwrap_or(&[]);
    if content.trim().is_empty() && embeds.is_empty() {
        return Err(bad("a Discord message needs `content` or `embeds`"));
    }
    if content.chars().count() > DISCORD_MAX_CONTENT {
        return Err(bad(format!(
            "`content` is longer than Discord's {DISCORD_MAX_CONTENT} characters"
        )));
    }
    if embeds.len() > DISCORD_MAX_EMBEDS {
        return Err(bad(format!(
            "Discord accepts at most {DISCORD_MAX_EMBEDS} embeds, got {}",
            embeds.len()
        )));
    }
    if let Some(i) = embeds.iter().position(|e| !e.is_object()) {
        return Err(bad(format!("`embeds[{i}]` is not an object")));
    }
    let mut body = Map::new();
    put(&mut body, "content", &input.content);
    put(&mut body, "embeds", &input.embeds);
    put(&mut body, "username", &input.username);
    put(&mut body, "avatar_url", &input.avatar_url);
    put(&mut body, "tts", &input.tts);
    body.insert(
        "allowed_mentions".into(),
        input
            .allowed_mentions
            .clone()
            .unwrap_or_else(|| json!({ "parse": [] })),
    );
    // `wait=true` makes Discord confirm the message was saved and return it.
    let mut query = vec![("wait".to_string(), "true".to_string())];
    if let Some(thread) = &input.thread_id {
        query.push(("thread_id".to_string(), thread.clone()));
    }
    let url = with_query(&input.discord_webhook, &query);
    let response = post_json("Discord webhook", &url, &[], &Value::Object(body))?;
    let message: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok(json!({
        "target": "discord_webhook",
        "status": response.status,
        "message_id": message.get("id").cloned().unwrap_or(Value::Null),
    }))
}

// ---- Microsoft Teams -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamsInput {
    /// The URL of a Teams Workflows "When a Teams webhook request is received" flow.
    teams_webhook: String,
    /// A complete Adaptive Card, sent as given.
    #[serde(default)]
    card: Option<Value>,
    /// Or a card built from a title, a text, facts and a link.
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    facts: Option<Map<String, Value>>,
    #[serde(default)]
    link: Option<TeamsLink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamsLink {
    url: String,
    #[serde(default)]
    title: Option<String>,
}

/// Adaptive Card schema version Teams renders everywhere.
const ADAPTIVE_CARD_VERSION: &str = "1.4";

fn teams(input: TeamsInput) -> Result<Value, PluginError> {
    check_url("teams_webhook", &input.teams_webhook).map_err(bad)?;
    let simple = input.title.is_some()
        || input.text.is_some()
        || input.facts.is_some()
        || input.link.is_some();
    let card = match (input.card, simple) {
        (Some(_), true) => {
            return Err(bad(
                "give either `card` or `title`/`text`/`facts`/`link`, not both",
            ));
        }
        (Some(card), false) => {
            if card.get("type").and_then(Value::as_str) != Some("AdaptiveCard") {
                return Err(bad(
                    "`card` must be an Adaptive Card (`\"type\": \"AdaptiveCard\"`)",
                ));
            }
            card
        }
        (None, true) => simple_card(input.title, input.text, input.facts, input.link)?,
        (None, false) => return Err(bad("a Teams message needs `card` or `text`")),
    };
    let body = json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    });
    let response = post_json("Teams webhook", &input.teams_webhook, &[], &body)?;
    Ok(json!({ "target": "teams_webhook", "status": response.status }))
}

fn simple_card(
    title: Option<String>,
    text: Option<String>,
    facts: Option<Map<String, Value>>,
    link: Option<TeamsLink>,
) -> Result<Value, PluginError> {
    let mut body = Vec::new();
    if let Some(title) = title {
        body.push(json!({
            "type": "TextBlock", "text": title, "size": "Medium", "weight": "Bolder", "wrap": true
        }));
    }
    if let Some(text) = text {
        body.push(json!({ "type": "TextBlock", "text": text, "wrap": true }));
    }
    if let Some(facts) = facts {
        let facts: Vec<Value> = facts
            .into_iter()
            .map(|(title, value)| {
                let value = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                json!({ "title": title, "value": value })
            })
            .collect();
        body.push(json!({ "type": "FactSet", "facts": facts }));
    }
    if body.is_empty() {
        return Err(bad("a Teams message needs `title`, `text` or `facts`"));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "body": body,
    });
    if let Some(link) = link {
        check_url("link.url", &link.url).map_err(bad)?;
        card["actions"] = json!([{
            "type": "Action.OpenUrl",
            "title": link.title.unwrap_or_else(|| "Open".to_string()),
            "url": link.url,
        }]);
    }
    Ok(card)
}

// ---- generic JSON webhook --------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookInput {
    webhook: String,
    /// The JSON to send; default `{"type", "timestamp", "data"}` from the event.
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    /// `whsec_` + base64 (as Standard Webhooks senders show it): adds `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature`.
    #[serde(default)]
    signing_secret: Option<String>,
}

/// Headers the signer sets itself; a rule may not override them.
const SIGNATURE_HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

fn webhook(ctx: &Context, event: &Event, input: WebhookInput) -> Result<Value, PluginError> {
    check_url("webhook", &input.webhook).map_err(bad)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in input.headers.unwrap_or_default() {
        check_header_name(&name).map_err(bad)?;
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(bad(format!("header {name}: the value must be a string"))),
        };
        check_header_value(&name, &value).map_err(bad)?;
        let lower = name.to_ascii_lowercase();
        if lower == "content-type" || lower == "content-length" || lower == "host" {
            return Err(bad(format!("header {name} is set by hookwise")));
        }
        if input.signing_secret.is_some() && SIGNATURE_HEADERS.contains(&lower.as_str()) {
            return Err(bad(format!("header {name} is set by the signature")));
        }
        headers.push((name, value));
    }
    let body = match input.body {
        Some(body) => body,
        None => {
            let data: Value = serde_json::from_str(&event.payload_json).unwrap_or(Value::Null);
            json!({ "type": event.event_type, "timestamp": event.received_at, "data": data })
        }
    };
    let body = body.to_string();
    if let Some(secret) = &input.signing_secret {
        let key = standard_webhooks_key(secret)?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        // Stable across retries, so receivers can drop duplicates by message id.
        let id = format!("msg_{}", ctx.idempotency_key);
        let signed = format!("{id}.{timestamp}.{body}");
        let signature = b64(&hookwise_first_party::hmac(
            HmacAlgorithm::Sha256,
            &key,
            signed.as_bytes(),
        ));
        headers.push(("webhook-id".into(), id));
        headers.push(("webhook-timestamp".into(), timestamp));
        headers.push(("webhook-signature".into(), format!("v1,{signature}")));
    }
    let mut all: Vec<(&str, &str)> = vec![("content-type", JSON)];
    all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let response = send("webhook", "POST", &input.webhook, &all, body.as_bytes())?;
    Ok(json!({
        "target": "webhook",
        "status": response.status,
        "signed": input.signing_secret.is_some(),
    }))
}

/// The HMAC key of a Standard Webhooks secret: the base64 after `whsec_`.
fn standard_webhooks_key(secret: &str) -> Result<Vec<u8>, PluginError> {
    let encoded = secret.trim().strip_prefix("whsec_").ok_or_else(|| {
        bad("`signing_secret` must be a Standard Webhooks secret: `whsec_` + base64")
    })?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| bad(format!("`signing_secret` is not valid base64: {e}")))?;
    if key.len() < 24 {
        return Err(bad(
            "`signing_secret` is too short (at least 24 bytes of key)",
        ));
    }
    Ok(key)
}

// ---- e-mail ----------------------------------------------------------------------------

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum MailProvider {
    Sendgrid,
    Postmark,
    Mailgun,
    Resend,
}

/// One address or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    fn list(self) -> Vec<String> {
        match self {
            Addresses::One(s) if s.contains(',') => {
                s.split(',').map(|a| a.trim().to_string()).collect()
            }
            Addresses::One(s) => vec![s],
            Addresses::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailInput {
    email: MailProvider,
    api_key: String,
    from: String,
    to: Addresses,
    #[serde(default)]
    cc: Option<Addresses>,
    #[serde(default)]
    bcc: Option<Addresses>,
    #[serde(default)]
    reply_to: Option<String>,
    subject: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    html: Option<String>,
    /// Mailgun: the sending domain.
    #[serde(default)]
    domain: Option<String>,
    /// Postmark: the message stream (default `outbound`).
    #[serde(default)]
    message_stream: Option<String>,
    /// Base URL of the provider's API (e.g. `https://api.eu.mailgun.net`).
    #[serde(default)]
    api_url: Option<String>,
}

/// A checked e-mail, ready to be shaped for a provider.
struct Mail {
    from: Address,
    to: Vec<Address>,
    cc: Vec<Address>,
    bcc: Vec<Address>,
    reply_to: Option<Address>,
    subject: String,
    text: Option<String>,
    html: Option<String>,
}

/// `Name <addr@example.com>` or `addr@example.com`.
struct Address {
    name: Option<String>,
    email: String,
}

impl Address {
    fn parse(field: &str, text: &str) -> Result<Address, PluginError> {
        let text = text.trim();
        if text.chars().any(char::is_control) {
            return Err(bad(format!(
                "`{field}`: addresses may not contain line breaks"
            )));
        }
        let (name, email) = match (text.rfind('<'), text.ends_with('>')) {
            (Some(open), true) => {
                let name = text[..open].trim().trim_matches('"').trim();
                let name = (!name.is_empty()).then(|| name.to_string());
                (name, &text[open + 1..text.len() - 1])
            }
            _ => (None, text),
        };
        let email = email.trim();
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.contains(char::is_whitespace)
                    && !email.contains(['<', '>', ',', ';'])
                    && !domain.contains('@')
            }
            None => false,
        };
        if !valid {
            return Err(bad(format!("`{field}`: {text:?} is not an e-mail address")));
        }
        Ok(Address {
            name,
            email: email.to_string(),
        })
    }

    /// RFC 5322 form, the name quoted when needed.
    fn display(&self) -> String {
        match &self.name {
            Some(name) if name.contains([',', ';', '"', '<', '>', '@', '(', ')']) => {
                format!("\"{}\" <{}>", name.replace('"', "'"), self.email)
            }
            Some(name) => format!("{name} <{}>", self.email),
            None => self.email.clone(),
        }
    }

    fn sendgrid(&self) -> Value {
        let mut v = json!({ "email": self.email });
        if let Some(name) = &self.name {
            v["name"] = Value::String(name.clone());
        }
        v
    }
}

fn addresses(field: &str, list: Option<Addresses>) -> Result<Vec<Address>, PluginError> {
    list.map(Addresses::list)
        .unwrap_or_default()
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| Address::parse(field, a))
        .collect()
}

fn email(input: EmailInput) -> Result<Value, PluginError> {
    if input.api_key.trim().is_empty() {
        return Err(bad("`api_key` is empty"));
    }
    check_header_value("authorization", &input.api_key).map_err(bad)?;
    if input.subject.trim().is_empty() {
        return Err(bad("`subject` is empty"));
    }
    if input.subject.chars().any(char::is_control) {
        return Err(bad("`subject` may not contain line breaks"));
    }
    let text = input.text.filter(|t| !t.is_empty());
    let html = input.html.filter(|t| !t.is_empty());
    if text.is_none() && html.is_none() {
        return Err(bad("an e-mail needs `text` or `html`"));
    }
    let mail = Mail {
        from: Address::parse("from", &input.from)?,
        to: addresses("to", Some(input.to))?,
        cc: addresses("cc", input.cc)?,
        bcc: addresses("bcc", input.bcc)?,
        reply_to: input
            .reply_to
            .as_deref()
            .map(|r| Address::parse("reply_to", r))
            .transpose()?,
        subject: input.subject,
        text,
        html,
    };
    if mail.to.is_empty() {
        return Err(bad("`to` has no recipient"));
    }
    let recipients = mail.to.len() + mail.cc.len() + mail.bcc.len();
    if recipients > MAX_RECIPIENTS {
        return Err(bad(format!(
            "at most {MAX_RECIPIENTS} recipients per message, got {recipients}"
        )));
    }
    if input.domain.is_some() && input.email != MailProvider::Mailgun {
        return Err(bad("`domain` is only used with `email: mailgun`"));
    }
    if input.message_stream.is_some() && input.email != MailProvider::Postmark {
        return Err(bad("`message_stream` is only used with `email: postmark`"));
    }
    let base = |default: &str| -> Result<String, PluginError> {
        let base = input
            .api_url
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/');
        check_url("api_url", base).map_err(bad)?;
        Ok(base.to_string())
    };
    let key = input.api_key.trim();
    match input.email {
        MailProvider::Sendgrid => sendgrid(&base("https://api.sendgrid.com")?, key, &mail),
        MailProvider::Postmark => postmark(
            &base("https://api.postmarkapp.com")?,
            key,
            &mail,
            input.message_stream.as_deref(),
        ),
        MailProvider::Mailgun => {
            let domain = input
                .domain
                .as_deref()
                .filter(|d| !d.trim().is_empty())
                .ok_or_else(|| bad("`email: mailgun` needs `domain` (the sending domain)"))?;
            mailgun(&base("https://api.mailgun.net")?, key, domain, &mail)
        }
        MailProvider::Resend => resend(&base("https://api.resend.com")?, key, &mail),
    }
}

/// SendGrid v3 `POST /v3/mail/send`; answers 202 with no body.
fn sendgrid(base: &str, key: &str, mail: &Mail) -> Result<Value, PluginError> {
    let mut personalization =
        json!({ "to": mail.to.iter().map(Address::sendgrid).collect::<Vec<_>>() });
    if !mail.cc.is_empty() {
        personalization["cc"] = mail.cc.iter().map(Address::sendgrid).collect();
    }
    if !mail.bcc.is_empty() {
        personalization["bcc"] = mail.bcc.iter().map(Address::sendgrid).collect();
    }
    // SendGrid wants text/plain before text/html.
    let mut content = Vec::new();
    if let Some(text) = &mail.text {
        content.push(json!({ "type": "text/plain", "value": text }));
    }
    if let Some(html) = &mail.html {
        content.push(json!({ "type": "text/html", "value": html }));
    }
    let mut body = json!({
        "personalizations": [personalization],
        "from": mail.from.sendgrid(),
        "subject": mail.subject,
        "content": content,
    });
    if let Some(reply_to) = &mail.reply_to {
        body["reply_to"] = reply_to.sendgrid();
    }
    let auth = format!("Bearer {key}");
    let response = post_json(
        "SendGrid",
        &format!("{base}/v3/mail/send"),
        &[("authorization", &auth)],
        &body,
    )?;
    let id = response.header("x-message-id").map(str::to_string);
    Ok(
        json!({ "target": "email", "provider": "sendgrid", "status": response.status, "message_id": id }),
    )
}

/// Postmark `POST /email`; answers 200 with `ErrorCode: 0` and a `MessageID`.
fn postmark(
    base: &str,
    key: &str,
    mail: &Mail,
    stream: Option<&str>,
) -> Result<Value, PluginError> {
    let join = |list: &[Address]| {
        list.iter()
            .map(Address::display)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut body = Map::new();
    body.insert("From".into(), Value::String(mail.from.display()));
    body.insert("To".into(), Value::String(join(&mail.to)));
    if !mail.cc.is_empty() {
        body.insert("Cc".into(), Value::String(join(&mail.cc)));
    }
    if !mail.bcc.is_empty() {
        body.insert("Bcc".into(), Value::String(join(&mail.bcc)));
    }
    body.insert("Subject".into(), Value::String(mail.subject.clone()));
    put(&mut body, "TextBody", &mail.text);
    put(&mut body, "HtmlBody", &mail.html);
    if let Some(reply_to) = &mail.reply_to {
        body.insert("ReplyTo".into(), Value::String(reply_to.display()));
    }
    body.insert(
        "MessageStream".into(),
        Value::String(stream.unwrap_or("outbound").to_string()),
    );
    let response = post_json(
        "Postmark",
        &format!("{base}/email"),
        &[("accept", JSON), ("x-postmark-server-token", key)],
        &Value::Object(body),
    )?;
    let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    match answer.get("ErrorCode").and_then(Value::as_i64) {
        Some(0) | None => Ok(json!({
            "target": "email",
            "provider": "postmark",
            "status": response.status,
            "message_id": answer.get("MessageID").cloned().unwrap_or(Value::Null),
        })),
        Some(code) => Err(PluginError::fatal(format!(
            "Postmark refused the message (ErrorCode {code}): {}",
            answer.get("Message").and_then(Value::as_str).unwrap_or("")
        ))),
    }
}

/// Mailgun `POST /v3/{domain}/messages`, form-encoded, basic auth `api:{key}`.
fn mailgun(base: &str, key: &str, domain: &str, mail: &Mail) -> Result<Value, PluginError> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("from", &mail.from.display());
    for a in &mail.to {
        form.append_pair("to", &a.display());
    }
    for a in &mail.cc {
        form.append_pair("cc", &a.display());
    }
    for a in &mail.bcc {
        form.append_pair("bcc", &a.display());
    }
    form.append_pair("subject", &mail.subject);
    if let Some(text) = &mail.text {
        form.append_pair("text", text);
    }
    if let Some(html) = &mail.html {
        form.append_pair("html", html);
    }
    if let Some(reply_to) = &mail.reply_to {
        form.append_pair("h:Reply-To", &reply_to.display());
    }
    let body = form.finish();
    let auth = format!("Basic {}", b64(format!("api:{key}").as_bytes()));
    let url = format!("{base}/v3/{}/messages", percent_encode(domain.trim()));
    let response = send(
        "Mailgun",
        "POST",
        &url,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &auth),
        ],
        body.as_bytes(),
    )?;
    let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok(json!({
        "target": "email",
        "provider": "mailgun",
        "status": response.status,
        "message_id": answer.get("id").cloned().unwrap_or(Value::Null),
    }))
}

/// Resend `POST /emails`; answers 200 with the new e-mail's `id`.
fn resend(base: &str, key: &str, mail: &Mail) -> Result<Value, PluginError> {
    let list = |l: &[Address]| -> Value { l.iter().map(Address::display).collect() };
    let mut body = json!({
        "from": mail.from.display(),
        "to": list(&mail.to),
        "subject": mail.subject,
    });
    if !mail.cc.is_empty() {
        body["cc"] = list(&mail.cc);
    }
    if !mail.bcc.is_empty() {
        body["bcc"] = list(&mail.bcc);
    }
    if let Some(reply_to) = &mail.reply_to {
        body["reply_to"] = Value::String(reply_to.display());
    }
    if let Some(text) = &mail.text {
        body["text"] = Value::String(text.clone());
    }
    if let Some(html) = &mail.html {
        body["html"] = Value::String(html.clone());
    }
    let auth = format!("Bearer {key}");
    let response = post_json(
        "Resend",
        &format!("{base}/emails"),
        &[("authorization", &auth)],
        &body,
    )?;
    let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok(json!({
        "target": "email",
        "provider": "resend",
        "status": response.status,
        "message_id": answer.get("id").cloned().unwrap_or(Value::Null),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of a refusal, or a note that there was none.
    fn refusal<T>(result: Result<T, PluginError>) -> String {
        match result {
            Ok(_) => "accepted".to_string(),
            Err(e) => {
                assert_eq!(
                    e.kind,
                    hookwise_plugin_sdk::ErrorKind::Fatal,
                    "{}",
                    e.message
                );
                e.message
            }
        }
    }

    #[test]
    fn webhook_urls_are_logged_without_their_secret_path() {
        for (url, logged) in [
            (
                "https://hooks.slack.com/services/T0/B0/secret",
                "https://hooks.slack.com/…",
            ),
            (
                "http://127.0.0.1:9000/x?token=t#f",
                "http://127.0.0.1:9000/…",
            ),
            ("https://example.com", "https://example.com/…"),
            ("not a url", "(invalid URL)"),
        ] {
            assert_eq!(redact(url), logged, "{url}");
        }
    }

    #[test]
    fn addresses_parse_with_and_without_names() {
        let a = Address::parse("to", " Ada Lovelace <ada@example.com> ").unwrap();
        assert_eq!(
            (a.name.as_deref(), a.email.as_str()),
            (Some("Ada Lovelace"), "ada@example.com")
        );
        assert_eq!(a.display(), "Ada Lovelace <ada@example.com>");
        assert_eq!(
            a.sendgrid(),
            json!({"email": "ada@example.com", "name": "Ada Lovelace"})
        );

        let quoted = Address::parse("to", "\"Ops, on call\" <ops@example.com>").unwrap();
        assert_eq!(quoted.display(), "\"Ops, on call\" <ops@example.com>");

        let bare = Address::parse("to", "ops@example.com").unwrap();
        assert_eq!(bare.display(), "ops@example.com");
        assert_eq!(bare.sendgrid(), json!({"email": "ops@example.com"}));
    }

    #[test]
    fn bad_addresses_and_header_injection_are_refused() {
        for text in [
            "",
            "no-at-sign",
            "@example.com",
            "ada@localhost",
            "ada@.example.com",
            "ada@example.com.",
            "ada@exa mple.com",
            "a@b@example.com",
            "<ada@example.com",
            "ada@example.com\r\nBcc: victim@example.com",
            "Ada <ada@example.com>\nX-Injected: 1",
        ] {
            let message = refusal(Address::parse("to", text));
            assert!(message.contains("`to`:"), "{text:?}: {message}");
        }
    }

    #[test]
    fn address_lists_split_on_commas_and_skip_blanks() {
        let list = addresses(
            "cc",
            Some(Addresses::One("a@example.com, b@example.com,".to_string())),
        )
        .unwrap();
        let emails: Vec<&str> = list.iter().map(|a| a.email.as_str()).collect();
        assert_eq!(emails, ["a@example.com", "b@example.com"]);
        let many = addresses(
            "bcc",
            Some(Addresses::Many(vec!["c@example.com".into(), " ".into()])),
        )
        .unwrap();
        assert_eq!(many.len(), 1);
        assert!(addresses("cc", None).unwrap().is_empty());
        assert!(refusal(addresses("cc", Some(Addresses::One("x".into())))).contains("`cc`"));
    }

    #[test]
    fn standard_webhooks_secrets_are_checked() {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(
            standard_webhooks_key(&format!("whsec_{key}")).unwrap(),
            vec![7u8; 32]
        );
        assert!(refusal(standard_webhooks_key(&key)).contains("whsec_"));
        assert!(refusal(standard_webhooks_key("whsec_not base64!")).contains("base64"));
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert!(refusal(standard_webhooks_key(&format!("whsec_{short}"))).contains("too short"));
    }

    fn slack(input: Value) -> Result<SlackMessage, PluginError> {
        parse::<SlackMessage>(input)
    }

    #[test]
    fn slack_messages_need_content_within_slack_limits() {
        let ok = slack(json!({"text": "deployed", "mrkdwn": false})).unwrap();
        assert!(ok.check().is_ok());
        assert_eq!(
            ok.body(),
            json!({"text": "deployed", "mrkdwn": false})
                .as_object()
                .cloned()
                .unwrap()
        );

        let blocks = slack(json!({"blocks": [{"type": "section"}]})).unwrap();
        assert!(blocks.check().is_ok());

        for (input, expected) in [
            (json!({"text": "  "}), "needs `text`"),
            (
                json!({"text": "x".repeat(SLACK_MAX_TEXT + 1)}),
                "longer than",
            ),
            (
                json!({"blocks": vec![json!({"type": "divider"}); SLACK_MAX_BLOCKS + 1]}),
                "at most",
            ),
            (
                json!({"blocks": [{"type": "divider"}, {"text": "no type"}]}),
                "`blocks[1]`",
            ),
        ] {
            let message = refusal(slack(input).and_then(|m| m.check()));
            assert!(message.contains(expected), "{message}");
        }
        assert!(refusal(slack(json!({"text": "x", "colour": "red"}))).contains("colour"));
    }

    #[test]
    fn teams_simple_cards_hold_title_text_facts_and_link() {
        let mut facts = Map::new();
        facts.insert("env".to_string(), json!("prod"));
        facts.insert("commits".to_string(), json!(3));
        let card = simple_card(
            Some("Deploy".into()),
            Some("main is live".into()),
            Some(facts),
            Some(TeamsLink {
                title: None,
                url: "https://example.com/run/1".into(),
            }),
        )
        .unwrap();
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], ADAPTIVE_CARD_VERSION);
        assert_eq!(card["body"][0]["text"], "Deploy");
        assert_eq!(card["body"][1]["text"], "main is live");
        assert_eq!(
            card["body"][2]["facts"],
            json!([{"title": "commits", "value": "3"}, {"title": "env", "value": "prod"}])
        );
        assert_eq!(card["actions"][0]["title"], "Open");
        assert_eq!(card["actions"][0]["url"], "https://example.com/run/1");

        assert!(refusal(simple_card(None, None, None, None)).contains("needs `title`"));
        let bad_link = simple_card(
            Some("t".into()),
            None,
            None,
            Some(TeamsLink {
                title: None,
                url: "javascript:alert(1)".into(),
            }),
        );
        let message = refusal(bad_link);
        assert!(message.contains("link.url"), "{message}");
    }
}
