//! Webhook signature verification, signing and identification for every supported provider.
//!
//! Everything here is a pure function over the raw body bytes, the request headers, the URL the
//! provider posted to and a clock: no I/O, no async, no panics on any input. Only [`verify`]
//! produces a [`Verified`] value for a request, and only through one is a body read as a payload,
//! identified or answered as a handshake, so code that gets that far knows it was authentic.
//!
//! One file per signature shape; providers that share a shape share a file and a table row:
//! - `body_hmac`: an HMAC of the body (or URL + body) in one header (GitHub, Intercom, Bitbucket,
//!   Jira, Typeform, Shopify, Square, Linear, PagerDuty, DocuSign).
//! - `stripe`: a `t=...,v1=...` header that carries its own timestamp (Stripe, Calendly, Paddle).
//! - `slack`: `v0=` HMAC of `v0:{timestamp}:{body}` with a timestamp header (Slack, Zoom).
//! - `standard_webhooks`: Standard Webhooks and the Svix family (Svix, Clerk, Resend), HMAC `v1`
//!   and Ed25519 `v1a`.
//! - `twilio`, `gitlab`, `mailgun`, `sendgrid`, `hubspot`, `discord`, `twitch`: one provider each.
//! - `generic`: the configurable `hmac` provider and `none`.
//! - `identify`: delivery id, event type and handshakes (Slack, Zoom, Twitch, Discord).
//! - `payload`: the body read as a payload, only as far as someone asks.

mod body_hmac;
mod common;
mod discord;
mod generic;
mod gitlab;
mod hubspot;
mod identify;
mod mailgun;
mod payload;
mod sendgrid;
mod slack;
mod standard_webhooks;
mod stripe;
mod twilio;
mod twitch;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

pub use generic::{HmacAlgorithm, HmacScheme, SignatureEncoding};
pub use identify::{HandshakeReply, Identity};
use identify::{handshake, identify};
pub use payload::Payload;

/// A webhook sender whose signature scheme hookwise knows. The id (see [`Provider::id`]) is what
/// a source's `provider:` key in `hookwise.yaml` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Github,
    Stripe,
    StandardWebhooks,
    Svix,
    Clerk,
    Resend,
    Slack,
    Shopify,
    Twilio,
    Gitlab,
    Paddle,
    Linear,
    Square,
    Mailgun,
    Sendgrid,
    Pagerduty,
    Hubspot,
    Zoom,
    Discord,
    Twitch,
    Intercom,
    Typeform,
    Bitbucket,
    Jira,
    Calendly,
    Docusign,
    /// Generic HMAC, configured with an [`HmacScheme`].
    Hmac,
    /// No verification at all: every request is accepted.
    None,
}

/// Seconds in one minute, for the tolerance column.
const MINUTE: u64 = 60;

/// What keys a provider's signatures are checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Shared secrets (`secrets:`), as the provider's dashboard shows them.
    Secrets,
    /// Public keys (`public_keys:`): the provider signs with a private key.
    PublicKeys,
    /// Either: a shared secret for HMAC signatures, or a public key for asymmetric ones.
    SecretsOrPublicKeys,
}

impl KeyKind {
    /// Whether shared secrets verify this provider's signatures.
    pub fn secrets(self) -> bool {
        matches!(self, KeyKind::Secrets | KeyKind::SecretsOrPublicKeys)
    }

    /// Whether public keys verify this provider's signatures.
    pub fn public_keys(self) -> bool {
        matches!(self, KeyKind::PublicKeys | KeyKind::SecretsOrPublicKeys)
    }
}

/// The signature shape a provider uses: which file of this module checks and makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    BodyHmac,
    Stripe,
    StandardWebhooks,
    Slack,
    Twilio,
    Gitlab,
    Mailgun,
    Sendgrid,
    Hubspot,
    Discord,
    Twitch,
    /// The configurable `hmac` provider.
    Generic,
    /// `none`: nothing is signed.
    Unsigned,
}

/// Everything hookwise knows about one provider: one row of [`PROVIDERS`], which every
/// question about a provider reads (its id, keys, tolerance, whether it signs the URL, which
/// file verifies and signs it).
#[derive(Debug)]
struct Descriptor {
    provider: Provider,
    /// What a source's `provider:` key names.
    id: &'static str,
    scheme: Scheme,
    keys: KeyKind,
    /// Whether the signature covers the URL the provider posted to.
    signs_url: bool,
    /// How old (and, for some, how far ahead) a signed timestamp may be, in seconds. `None`:
    /// the provider signs no timestamp or publishes no limit.
    tolerance_secs: Option<u64>,
}

impl Descriptor {
    /// A row with shared secrets, no signed URL and no tolerance.
    const fn new(provider: Provider, id: &'static str, scheme: Scheme) -> Descriptor {
        Descriptor {
            provider,
            id,
            scheme,
            keys: KeyKind::Secrets,
            signs_url: false,
            tolerance_secs: None,
        }
    }

    const fn keys(mut self, keys: KeyKind) -> Descriptor {
        self.keys = keys;
        self
    }

    const fn signs_url(mut self) -> Descriptor {
        self.signs_url = true;
        self
    }

    const fn tolerance(mut self, secs: u64) -> Descriptor {
        self.tolerance_secs = Some(secs);
        self
    }
}

/// Every provider, in the order of [`Provider`]'s variants (checked when compiling).
///
/// Public keys: Standard Webhooks signs `v1` with a `whsec_` secret or `v1a` with an Ed25519
/// key pair whose public half is `whpk_` + base64 (standard-webhooks/standard-webhooks,
/// `spec/standard-webhooks.md`, "Signature scheme"). Svix, and Clerk and Resend, which deliver
/// through Svix, show a `whsec_` secret, and Svix's own verification library checks `v1`
/// signatures only (svix/svix-webhooks, `javascript/src/webhook.ts`: entries whose version is
/// not `v1` are skipped): secrets only.
const PROVIDERS: &[Descriptor] = &[
    Descriptor::new(Provider::Github, "github", Scheme::BodyHmac),
    Descriptor::new(Provider::Stripe, "stripe", Scheme::Stripe).tolerance(5 * MINUTE),
    Descriptor::new(
        Provider::StandardWebhooks,
        "standard-webhooks",
        Scheme::StandardWebhooks,
    )
    .keys(KeyKind::SecretsOrPublicKeys)
    .tolerance(5 * MINUTE),
    Descriptor::new(Provider::Svix, "svix", Scheme::StandardWebhooks).tolerance(5 * MINUTE),
    Descriptor::new(Provider::Clerk, "clerk", Scheme::StandardWebhooks).tolerance(5 * MINUTE),
    Descriptor::new(Provider::Resend, "resend", Scheme::StandardWebhooks).tolerance(5 * MINUTE),
    Descriptor::new(Provider::Slack, "slack", Scheme::Slack).tolerance(5 * MINUTE),
    Descriptor::new(Provider::Shopify, "shopify", Scheme::BodyHmac),
    Descriptor::new(Provider::Twilio, "twilio", Scheme::Twilio).signs_url(),
    Descriptor::new(Provider::Gitlab, "gitlab", Scheme::Gitlab),
    // Paddle's SDKs allow five seconds.
    Descriptor::new(Provider::Paddle, "paddle", Scheme::Stripe).tolerance(5),
    Descriptor::new(Provider::Linear, "linear", Scheme::BodyHmac).tolerance(MINUTE),
    Descriptor::new(Provider::Square, "square", Scheme::BodyHmac).signs_url(),
    // Mailgun and Zoom ask for a freshness check without a number: hookwise uses five minutes.
    Descriptor::new(Provider::Mailgun, "mailgun", Scheme::Mailgun).tolerance(5 * MINUTE),
    Descriptor::new(Provider::Sendgrid, "sendgrid", Scheme::Sendgrid).keys(KeyKind::PublicKeys),
    Descriptor::new(Provider::Pagerduty, "pagerduty", Scheme::BodyHmac),
    Descriptor::new(Provider::Hubspot, "hubspot", Scheme::Hubspot)
        .signs_url()
        .tolerance(5 * MINUTE),
    Descriptor::new(Provider::Zoom, "zoom", Scheme::Slack).tolerance(5 * MINUTE),
    Descriptor::new(Provider::Discord, "discord", Scheme::Discord).keys(KeyKind::PublicKeys),
    Descriptor::new(Provider::Twitch, "twitch", Scheme::Twitch).tolerance(10 * MINUTE),
    Descriptor::new(Provider::Intercom, "intercom", Scheme::BodyHmac),
    Descriptor::new(Provider::Typeform, "typeform", Scheme::BodyHmac),
    Descriptor::new(Provider::Bitbucket, "bitbucket", Scheme::BodyHmac),
    Descriptor::new(Provider::Jira, "jira", Scheme::BodyHmac),
    Descriptor::new(Provider::Calendly, "calendly", Scheme::Stripe).tolerance(3 * MINUTE),
    Descriptor::new(Provider::Docusign, "docusign", Scheme::BodyHmac),
    // Applies only when the scheme names a timestamp header.
    Descriptor::new(Provider::Hmac, "hmac", Scheme::Generic).tolerance(5 * MINUTE),
    Descriptor::new(Provider::None, "none", Scheme::Unsigned),
];

// Row `i` of PROVIDERS and entry `i` of Provider::ALL describe variant `i`: lookups index them.
const _: () = {
    assert!(PROVIDERS.len() == Provider::ALL.len());
    let mut i = 0;
    while i < PROVIDERS.len() {
        assert!(PROVIDERS[i].provider as usize == i);
        assert!(Provider::ALL[i] as usize == i);
        i += 1;
    }
};

impl Provider {
    /// Every provider, in the order the docs list them.
    pub const ALL: &[Provider] = &[
        Provider::Github,
        Provider::Stripe,
        Provider::StandardWebhooks,
        Provider::Svix,
        Provider::Clerk,
        Provider::Resend,
        Provider::Slack,
        Provider::Shopify,
        Provider::Twilio,
        Provider::Gitlab,
        Provider::Paddle,
        Provider::Linear,
        Provider::Square,
        Provider::Mailgun,
        Provider::Sendgrid,
        Provider::Pagerduty,
        Provider::Hubspot,
        Provider::Zoom,
        Provider::Discord,
        Provider::Twitch,
        Provider::Intercom,
        Provider::Typeform,
        Provider::Bitbucket,
        Provider::Jira,
        Provider::Calendly,
        Provider::Docusign,
        Provider::Hmac,
        Provider::None,
    ];

    /// This provider's row of the table.
    fn descriptor(self) -> &'static Descriptor {
        &PROVIDERS[self as usize]
    }

    /// Whether the signature covers the URL the provider posted to, so [`Request::url`] must
    /// be given (the others ignore it). The `hmac` provider signs it only when its scheme says
    /// so: ask [`needs_url`] for a source.
    pub fn signs_url(&self) -> bool {
        self.descriptor().signs_url
    }

    /// The id used in config files and on the command line, e.g. `"standard-webhooks"`.
    pub fn id(&self) -> &'static str {
        self.descriptor().id
    }

    /// The provider with this id (exact, lower case), if any.
    pub fn from_id(id: &str) -> Option<Provider> {
        PROVIDERS.iter().find(|d| d.id == id).map(|d| d.provider)
    }

    /// How old (and, for some providers, how far in the future) a signed timestamp may be before
    /// the request is refused. `None` means the provider signs no timestamp or publishes no limit.
    pub fn default_tolerance(&self) -> Option<Duration> {
        self.descriptor().tolerance_secs.map(Duration::from_secs)
    }

    /// What keys verify this provider's signatures.
    pub fn keys(&self) -> KeyKind {
        self.descriptor().keys
    }

    /// Whether verification uses [`Keys::public_keys`] only, never shared secrets. (Standard
    /// Webhooks accepts either: see [`Provider::keys`].)
    pub fn uses_public_key(&self) -> bool {
        self.descriptor().keys == KeyKind::PublicKeys
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The error of parsing an unknown provider id; its text lists the valid ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider `{given}`; expected one of: {}", valid_ids())]
pub struct UnknownProvider {
    pub given: String,
}

fn valid_ids() -> String {
    Provider::ALL
        .iter()
        .map(Provider::id)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::from_id(s).ok_or_else(|| UnknownProvider {
            given: s.to_owned(),
        })
    }
}

/// Whether verifying a source's requests needs [`Request::url`], the URL the provider posted
/// to: for the providers that sign it, and for an `hmac` scheme whose `signed_content` uses
/// `{url}`.
pub fn needs_url(provider: Provider, opts: &VerifyOptions) -> bool {
    provider.signs_url()
        || (provider == Provider::Hmac && opts.hmac.as_ref().is_some_and(HmacScheme::signs_url))
}

/// A secret value (a signing secret exactly as the provider's dashboard shows it, a token, a
/// URL with a password). `Debug` and `Display` print `***`, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text; use only to compute or compare a signature.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// The keys of one source. Several secrets (or public keys) mean rotation: a request signed with
/// any of them is accepted, and [`Verified::matched_key_index`] tells which one matched.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub secrets: Vec<Secret>,
    /// Public keys in the provider's dashboard form: Discord hex Ed25519, SendGrid base64 DER
    /// (SPKI) P-256, Standard Webhooks `whpk_` + base64 Ed25519.
    pub public_keys: Vec<String>,
}

impl Keys {
    /// Keys made of shared secrets only.
    pub fn secrets<S: Into<Secret>>(secrets: impl IntoIterator<Item = S>) -> Self {
        Keys {
            secrets: secrets.into_iter().map(Into::into).collect(),
            public_keys: Vec::new(),
        }
    }

    /// Keys made of public keys only.
    pub fn public_keys<S: Into<String>>(keys: impl IntoIterator<Item = S>) -> Self {
        Keys {
            secrets: Vec::new(),
            public_keys: keys.into_iter().map(Into::into).collect(),
        }
    }
}

/// Per-source verification settings.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// `None`: the provider's default; `Some(Duration::ZERO)`: the timestamp age check is off.
    pub tolerance: Option<Duration>,
    /// Required for the `hmac` provider, ignored by the others.
    pub hmac: Option<HmacScheme>,
}

/// The parts of an incoming request that signatures cover. The headers and body (`'a`) are
/// what a [`Verified`] goes on holding; the method and URL (`'u`) need only last the check.
#[derive(Debug, Clone, Copy)]
pub struct Request<'u, 'a> {
    pub method: &'u str,
    /// The full URL the provider posted to (scheme, host, path, query), as the provider sees it.
    /// Needed by Twilio, Square and HubSpot; behind a proxy this is the public URL.
    pub url: &'u str,
    pub headers: &'a http::HeaderMap,
    /// The raw body bytes, before any parsing.
    pub body: &'a [u8],
}

/// Proof that a request passed its source's signature check, holding what was checked: the
/// headers and the raw body. Only [`verify`] creates one for a request, and reading the body
/// as a payload, identifying it and answering handshakes are its methods, so nothing reaches
/// them unverified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<'a> {
    provider: Provider,
    timestamp: Option<i64>,
    key_index: usize,
    headers: &'a http::HeaderMap,
    body: &'a [u8],
}

impl<'a> Verified<'a> {
    /// Input the operator supplies themselves (a payload file given to `hookwise dry-run`),
    /// which has no signature to check. Never for a request from the network: that is what
    /// [`verify`] is for.
    pub(crate) fn operator_supplied(
        provider: Provider,
        headers: &'a http::HeaderMap,
        body: &'a [u8],
    ) -> Verified<'a> {
        Verified {
            provider,
            timestamp: None,
            key_index: 0,
            headers,
            body,
        }
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The signed timestamp in Unix seconds, for providers that sign one.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// Which key matched: an index into [`Keys::secrets`], or into [`Keys::public_keys`] for
    /// public-key schemes. Lets operators see when the old key of a rotation is no longer used.
    pub fn matched_key_index(&self) -> usize {
        self.key_index
    }

    /// The verified body, byte for byte.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The body as a payload: see [`Payload`]. `None` when it is neither JSON nor a form.
    pub fn payload(&self) -> Option<Payload<'a>> {
        Payload::read(self.body)
    }

    /// The delivery id and event type, from the headers and `payload` (read from this body).
    pub fn identify(&self, payload: &Payload<'_>) -> Identity {
        identify(self.provider, self.headers, payload)
    }

    /// The answer to a provider's handshake (URL verification, ping, challenge), when
    /// `payload` is one.
    pub fn handshake(&self, keys: &Keys, payload: &Payload<'_>) -> Option<HandshakeReply> {
        handshake(self.provider, keys, payload)
    }
}

/// Why a request failed verification. The text is what `hookwise verify` prints after `invalid: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(String),
    #[error("malformed header {name}: {reason}")]
    MalformedHeader { name: String, reason: String },
    #[error("malformed body: {0}")]
    MalformedBody(String),
    #[error("the request URL is needed for this provider but was not given")]
    MissingUrl,
    #[error("malformed URL: {0}")]
    MalformedUrl(String),
    #[error("the body does not match the bodySHA256 hash in the URL")]
    BodyHashMismatch,
    #[error("no signature matched any configured key")]
    NoSignatureMatched,
    #[error("timestamp is {age_secs}s old, more than the {tolerance_secs}s tolerance")]
    TimestampTooOld { age_secs: u64, tolerance_secs: u64 },
    #[error("timestamp is {ahead_secs}s in the future, more than the {tolerance_secs}s tolerance")]
    TimestampInFuture {
        ahead_secs: u64,
        tolerance_secs: u64,
    },
    #[error("no secret configured for this source")]
    NoSecretConfigured,
    #[error("no public key configured for this source")]
    NoPublicKeyConfigured,
    #[error("bad key: {0}")]
    BadKey(String),
    #[error("the hmac provider needs a scheme (header, algorithm, encoding)")]
    MissingHmacScheme,
}

/// Why [`sign`] could not produce a signed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("bad key: {0}")]
    BadKey(String),
    #[error("the hmac provider needs a scheme (header, algorithm, encoding)")]
    MissingHmacScheme,
    #[error("cannot sign this body: {0}")]
    BadBody(String),
    #[error("malformed URL: {0}")]
    BadUrl(String),
    #[error("{0} signs inside the body or the URL; use sign_request to get the rewritten request")]
    RewritesRequest(Provider),
}

/// A request as the provider would send it: for most providers the URL and body are unchanged
/// and only headers are added; Mailgun puts its signature in the body and Twilio (JSON bodies)
/// adds `bodySHA256` to the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Checks the request's signature for `provider` against every key in `keys`, and the signed
/// timestamp against the tolerance. `now` is the clock (a parameter, so tests can fix it).
pub fn verify<'a>(
    provider: Provider,
    keys: &Keys,
    opts: &VerifyOptions,
    req: &Request<'_, 'a>,
    now: SystemTime,
) -> Result<Verified<'a>, VerifyError> {
    let ctx = Ctx {
        provider,
        keys,
        opts,
        req,
        now_ms: unix_millis(now),
        tolerance: match opts.tolerance {
            Some(t) if t.is_zero() => None,
            Some(t) => Some(t),
            None => provider.default_tolerance(),
        },
    };
    let matched = match provider.descriptor().scheme {
        Scheme::BodyHmac => body_hmac::verify(&ctx)?,
        Scheme::Stripe => stripe::verify(&ctx)?,
        Scheme::StandardWebhooks => standard_webhooks::verify(&ctx)?,
        Scheme::Slack => slack::verify(&ctx)?,
        Scheme::Twilio => twilio::verify(&ctx)?,
        Scheme::Gitlab => gitlab::verify(&ctx)?,
        Scheme::Mailgun => mailgun::verify(&ctx)?,
        Scheme::Sendgrid => sendgrid::verify(&ctx)?,
        Scheme::Hubspot => hubspot::verify(&ctx)?,
        Scheme::Discord => discord::verify(&ctx)?,
        Scheme::Twitch => twitch::verify(&ctx)?,
        Scheme::Generic => generic::verify(&ctx)?,
        Scheme::Unsigned => Matched {
            timestamp: None,
            key_index: 0,
        },
    };
    Ok(Verified {
        provider,
        timestamp: matched.timestamp,
        key_index: matched.key_index,
        headers: req.headers,
        body: req.body,
    })
}

/// Checks, before any request arrives, that a source's secrets and public keys have the form
/// `provider` reads them in. Returns one message per bad key: `(is_public_key, index, message)`.
/// Providers whose secrets are free text accept any non-empty secret.
pub fn check_keys(provider: Provider, keys: &Keys) -> Vec<(bool, usize, String)> {
    let row = provider.descriptor();
    let mut problems = Vec::new();
    for (i, secret) in keys.secrets.iter().enumerate() {
        let text = secret.expose();
        // A blank secret would match a blank token (GitLab) or sign with an empty key.
        let problem = if text.trim().is_empty() {
            Some("the secret is empty or only whitespace".to_string())
        } else if !row.keys.secrets() {
            Some(format!(
                "provider `{provider}` verifies with `public_keys`, not secrets"
            ))
        } else if row.scheme == Scheme::StandardWebhooks {
            standard_webhooks::check_secret(text).err()
        } else {
            None
        };
        if let Some(p) = problem {
            problems.push((false, i, p));
        }
    }
    for (i, key) in keys.public_keys.iter().enumerate() {
        let checked = match row.scheme {
            _ if !row.keys.public_keys() => Err(format!(
                "provider `{provider}` verifies with secrets, not public keys"
            )),
            Scheme::Discord => discord::check_public_key(key),
            Scheme::Sendgrid => sendgrid::check_public_key(key),
            Scheme::StandardWebhooks => standard_webhooks::check_public_key(key),
            _ => Ok(()),
        };
        if let Err(p) = checked {
            problems.push((true, i, p));
        }
    }
    problems
}

/// The headers `provider` would send with this request, signed with `secret`.
///
/// `secret` is in the dashboard form [`verify`] takes, except for public-key schemes, where it is
/// the private key: Discord, 64 hex characters (the 32-byte Ed25519 seed); Standard Webhooks
/// `v1a`, `whsk_` + base64 of the 32-byte seed (or the 64-byte seed + public key); SendGrid,
/// base64 DER of a P-256 private key (PKCS#8 or SEC1). [`public_key_for`] derives the matching
/// public key. Mailgun and Twilio with a JSON body change the body or URL, so they need
/// [`sign_request`]; `sign` refuses them with [`SignError::RewritesRequest`].
pub fn sign(
    provider: Provider,
    secret: &str,
    opts: &VerifyOptions,
    method: &str,
    url: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(String, String)>, SignError> {
    let signed = sign_request(provider, secret, opts, method, url, body, now)?;
    if signed.url != url || signed.body != body {
        return Err(SignError::RewritesRequest(provider));
    }
    Ok(signed.headers)
}

/// Like [`sign`], but returns the whole request, whose URL or body may differ from the input
/// (Mailgun puts its signature in the body, Linear needs `webhookTimestamp` in it, Twilio adds
/// `bodySHA256` to the URL of a JSON body).
pub fn sign_request(
    provider: Provider,
    secret: &str,
    opts: &VerifyOptions,
    method: &str,
    url: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<SignedRequest, SignError> {
    sign_event(provider, secret, opts, method, url, body, now, None)
}

/// Like [`sign_request`], and names the event type in the header that carries it for providers
/// that send it in a header (GitHub `X-GitHub-Event`, Shopify `X-Shopify-Topic`, Bitbucket
/// `X-Event-Key`, GitLab `X-Gitlab-Event`, Twitch subscription type, Linear `Linear-Event`);
/// `None` picks a plausible default such as `push`.
#[allow(clippy::too_many_arguments)] // mirrors `sign` plus one optional value
pub fn sign_event(
    provider: Provider,
    secret: &str,
    opts: &VerifyOptions,
    method: &str,
    url: &str,
    body: &[u8],
    now: SystemTime,
    event_type: Option<&str>,
) -> Result<SignedRequest, SignError> {
    let ctx = SignCtx {
        event_type,
        provider,
        secret,
        opts,
        method,
        url,
        body,
        now_ms: unix_millis(now),
    };
    match provider.descriptor().scheme {
        Scheme::BodyHmac => body_hmac::sign(&ctx),
        Scheme::Stripe => stripe::sign(&ctx),
        Scheme::StandardWebhooks => standard_webhooks::sign(&ctx),
        Scheme::Slack => slack::sign(&ctx),
        Scheme::Twilio => twilio::sign(&ctx),
        Scheme::Gitlab => gitlab::sign(&ctx),
        Scheme::Mailgun => mailgun::sign(&ctx),
        Scheme::Sendgrid => sendgrid::sign(&ctx),
        Scheme::Hubspot => hubspot::sign(&ctx),
        Scheme::Discord => discord::sign(&ctx),
        Scheme::Twitch => twitch::sign(&ctx),
        Scheme::Generic => generic::sign(&ctx),
        Scheme::Unsigned => Ok(ctx.unchanged(Vec::new())),
    }
}

/// The public key, in the form [`verify`] takes, that matches a private key given to [`sign`]:
/// Discord hex, SendGrid base64 DER (SPKI), Standard Webhooks `whpk_` + base64.
pub fn public_key_for(provider: Provider, private_key: &str) -> Result<String, SignError> {
    let row = provider.descriptor();
    match row.scheme {
        _ if !row.keys.public_keys() => Err(SignError::BadKey(format!(
            "{provider} uses shared secrets, not key pairs"
        ))),
        Scheme::Discord => discord::public_key_for(private_key),
        Scheme::Sendgrid => sendgrid::public_key_for(private_key),
        Scheme::StandardWebhooks => standard_webhooks::public_key_for(private_key),
        _ => Err(SignError::BadKey(format!(
            "{provider} uses shared secrets, not key pairs"
        ))),
    }
}

/// What a provider module found: the signed timestamp (Unix seconds) and the matching key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Matched {
    timestamp: Option<i64>,
    key_index: usize,
}

/// Everything a provider module needs to verify one request.
struct Ctx<'a> {
    provider: Provider,
    keys: &'a Keys,
    opts: &'a VerifyOptions,
    req: &'a Request<'a, 'a>,
    now_ms: i64,
    /// Resolved tolerance: `None` means no age check.
    tolerance: Option<Duration>,
}

impl Ctx<'_> {
    /// Whether public keys verify this provider's signatures (see [`Provider::keys`]).
    fn accepts_public_keys(&self) -> bool {
        self.provider.keys().public_keys()
    }

    /// The configured secrets, or an error when there are none.
    fn secrets(&self) -> Result<&[Secret], VerifyError> {
        if self.keys.secrets.is_empty() {
            Err(VerifyError::NoSecretConfigured)
        } else {
            Ok(&self.keys.secrets)
        }
    }

    /// The configured secrets as raw HMAC key bytes (the text, used as is).
    fn secret_bytes(&self) -> Result<Vec<&[u8]>, VerifyError> {
        Ok(self
            .secrets()?
            .iter()
            .map(|s| s.expose().as_bytes())
            .collect())
    }

    fn public_keys(&self) -> Result<&[String], VerifyError> {
        if self.keys.public_keys.is_empty() {
            Err(VerifyError::NoPublicKeyConfigured)
        } else {
            Ok(&self.keys.public_keys)
        }
    }

    fn url(&self) -> Result<&str, VerifyError> {
        let url = self.req.url.trim();
        if url.is_empty() {
            Err(VerifyError::MissingUrl)
        } else {
            Ok(url)
        }
    }
}

/// Everything a provider module needs to sign one request.
struct SignCtx<'a> {
    provider: Provider,
    secret: &'a str,
    opts: &'a VerifyOptions,
    method: &'a str,
    url: &'a str,
    body: &'a [u8],
    now_ms: i64,
    event_type: Option<&'a str>,
}

impl SignCtx<'_> {
    fn now_secs(&self) -> i64 {
        self.now_ms.div_euclid(1000)
    }

    /// The request with the given headers and the URL and body unchanged.
    fn unchanged(&self, headers: Vec<(String, String)>) -> SignedRequest {
        SignedRequest {
            url: self.url.to_owned(),
            headers,
            body: self.body.to_vec(),
        }
    }
}

/// Milliseconds since the Unix epoch; clocks before 1970 count as negative.
fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis())
            .map(|ms| -ms)
            .unwrap_or(i64::MIN),
    }
}

#[cfg(test)]
mod sdk_cases;
#[cfg(test)]
mod tests;
