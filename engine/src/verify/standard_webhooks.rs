//! Standard Webhooks (standardwebhooks.com) and the Svix family that it grew from (Svix, Clerk,
//! Resend). Signed content is `{id}.{timestamp}.{body}`; `webhook-signature` is a space-separated
//! list of `v1,<base64 HMAC-SHA256>` (key: `whsec_` + base64, decoded) and `v1a,<base64 Ed25519>`
//! (key: `whpk_` + base64 public key) entries. Headers are `webhook-*` or `svix-*`.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::common::{
    self, Alg, Window, b64_decode, b64_encode, check_time, find_key, header, hmac, malformed,
    opt_header, parse_secs,
};
use super::{Ctx, Matched, Provider, SignCtx, SignError, SignedRequest, VerifyError};

const SECRET_PREFIX: &str = "whsec_";
const PUBLIC_KEY_PREFIX: &str = "whpk_";
const PRIVATE_KEY_PREFIX: &str = "whsk_";

struct Names {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

const WEBHOOK: Names = Names {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};

const SVIX: Names = Names {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

/// The header names the request uses: `svix-*` when `svix-id` is present, `webhook-*` when
/// `webhook-id` is; otherwise the provider's own names, so a missing header is named right.
/// Verification and [`signed_id`] both read this one set, so the id that dedupes a delivery is
/// always the id its signature covers.
fn names_for(provider: Provider, headers: &http::HeaderMap) -> &'static Names {
    let svix = headers.contains_key(SVIX.id)
        || (!headers.contains_key(WEBHOOK.id) && provider != Provider::StandardWebhooks);
    if svix { &SVIX } else { &WEBHOOK }
}

/// The message id that [`verify`] checked the signature over (`svix-id` or `webhook-id`,
/// whichever set the request was verified with), for deduplication. A second id header added
/// to a replayed request is not signed and is ignored.
pub(super) fn signed_id(provider: Provider, headers: &http::HeaderMap) -> Option<String> {
    opt_header(headers, names_for(provider, headers).id)
        .ok()
        .flatten()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// The decoded signatures of a `webhook-signature` list, by version.
struct Signatures {
    /// HMAC-SHA256 signatures.
    v1: Vec<Vec<u8>>,
    /// Ed25519 signatures.
    v1a: Vec<Vec<u8>>,
}

/// The `v1` (HMAC) and `v1a` (Ed25519) signatures of a `webhook-signature` list. Like the
/// Standard Webhooks and Svix libraries, entries of other versions and entries that do not
/// decode are skipped, so one malformed entry beside a valid one does not refuse the request;
/// a list with nothing usable is malformed.
fn signatures(name: &str, list: &str) -> Result<Signatures, VerifyError> {
    let (mut v1, mut v1a) = (Vec::new(), Vec::new());
    let mut undecodable = false;
    for entry in list.split_whitespace() {
        let Some((version, sig)) = entry.split_once(',') else {
            continue;
        };
        let target = match version {
            "v1" => &mut v1,
            "v1a" => &mut v1a,
            _ => continue,
        };
        match b64_decode(sig).filter(|b| !b.is_empty()) {
            Some(bytes) => target.push(bytes),
            None => undecodable = true,
        }
    }
    if v1.is_empty() && v1a.is_empty() {
        let reason = if undecodable {
            "signature is not base64"
        } else {
            "no `v1,` or `v1a,` signature"
        };
        return Err(malformed(name, reason));
    }
    Ok(Signatures { v1, v1a })
}

/// The HMAC key of a `whsec_` secret (the prefix is optional, as in the reference libraries).
fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let body = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    b64_decode(body).filter(|k| !k.is_empty())
}

/// Config-time check of a `whsec_` secret.
pub(super) fn check_secret(secret: &str) -> Result<(), String> {
    decode_secret(secret)
        .map(|_| ())
        .ok_or_else(|| "the secret is not whsec_ + base64 (as the dashboard shows it)".into())
}

/// Config-time check of a `whpk_` public key.
pub(super) fn check_public_key(key: &str) -> Result<(), String> {
    decode_public_key(key).map(|_| ())
}

fn decode_public_key(key: &str) -> Result<VerifyingKey, String> {
    let body = key.trim();
    let body = body.strip_prefix(PUBLIC_KEY_PREFIX).unwrap_or(body);
    let bytes = b64_decode(body).ok_or("public key is not whpk_ + base64")?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| "public key is not 32 bytes")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "public key is not an Ed25519 point".into())
}

fn decode_private_key(key: &str) -> Result<SigningKey, SignError> {
    let body = key.trim();
    let body = body.strip_prefix(PRIVATE_KEY_PREFIX).unwrap_or(body);
    let bytes = b64_decode(body)
        .ok_or_else(|| SignError::BadKey("private key is not whsk_ + base64".into()))?;
    // 32 bytes: the seed; 64 bytes: seed followed by the public key.
    let seed: [u8; 32] = bytes
        .get(..32)
        .filter(|_| bytes.len() == 32 || bytes.len() == 64)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| SignError::BadKey("private key is not 32 or 64 bytes".into()))?;
    Ok(SigningKey::from_bytes(&seed))
}

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let headers = ctx.req.headers;
    let names = names_for(ctx.provider, headers);
    let id = header(headers, names.id)?;
    let ts_text = header(headers, names.timestamp)?;
    let list = header(headers, names.signature)?;
    let ts = parse_secs(names.timestamp, ts_text)?;
    let Signatures { v1, v1a } = signatures(names.signature, list)?;
    if ctx.keys.secrets.is_empty() && ctx.keys.public_keys.is_empty() {
        return Err(VerifyError::NoSecretConfigured);
    }

    let content = [id.as_bytes(), b".", ts_text.as_bytes(), b".", ctx.req.body];
    let mut key_index = Err(VerifyError::NoSignatureMatched);
    if !v1.is_empty() && !ctx.keys.secrets.is_empty() {
        let keys = ctx
            .keys
            .secrets
            .iter()
            .map(|s| {
                decode_secret(s.expose())
                    .ok_or_else(|| VerifyError::BadKey("secret is not whsec_ + base64".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        key_index = find_key(&keys, &v1, |key| hmac(Alg::Sha256, key, &content));
    }
    if key_index.is_err()
        && !v1a.is_empty()
        && ctx.accepts_public_keys()
        && !ctx.keys.public_keys.is_empty()
    {
        let keys = ctx
            .keys
            .public_keys
            .iter()
            .map(|k| decode_public_key(k).map_err(VerifyError::BadKey))
            .collect::<Result<Vec<_>, _>>()?;
        let message = content.concat();
        key_index = keys
            .iter()
            .position(|key| {
                v1a.iter().any(|sig| {
                    Signature::from_slice(sig)
                        .is_ok_and(|sig| key.verify_strict(&message, &sig).is_ok())
                })
            })
            .ok_or(VerifyError::NoSignatureMatched);
    }
    let key_index = key_index?;
    check_time(ctx, ts.saturating_mul(1000), Window::BothWays)?;
    Ok(Matched {
        timestamp: Some(ts),
        key_index,
    })
}

pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let names = if ctx.provider == Provider::StandardWebhooks {
        &WEBHOOK
    } else {
        &SVIX
    };
    let id = format!("msg_{}", common::pseudo_id(ctx.body, ctx.now_ms, 27));
    let ts = ctx.now_secs().to_string();
    let content = [id.as_bytes(), b".", ts.as_bytes(), b".", ctx.body];
    let signature = if ctx.secret.trim().starts_with(PRIVATE_KEY_PREFIX) {
        if !ctx.provider.keys().public_keys() {
            return Err(SignError::BadKey(format!(
                "{} signs with whsec_ secrets only, not key pairs",
                ctx.provider
            )));
        }
        let key = decode_private_key(ctx.secret)?;
        format!(
            "v1a,{}",
            b64_encode(&key.sign(&content.concat()).to_bytes())
        )
    } else {
        let key = decode_secret(ctx.secret)
            .ok_or_else(|| SignError::BadKey("secret is not whsec_ + base64".into()))?;
        format!("v1,{}", b64_encode(&hmac(Alg::Sha256, &key, &content)))
    };
    Ok(ctx.unchanged(vec![
        (names.id.to_owned(), id),
        (names.timestamp.to_owned(), ts),
        (names.signature.to_owned(), signature),
    ]))
}

/// The `whpk_` public key of a `whsk_` private key.
pub(super) fn public_key_for(private_key: &str) -> Result<String, SignError> {
    let key = decode_private_key(private_key)?;
    Ok(format!(
        "{PUBLIC_KEY_PREFIX}{}",
        b64_encode(key.verifying_key().as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Case, Expect, at, run_cases, run_cases_with};
    use super::super::{Keys, VerifyOptions};
    use super::*;

    /// The Standard Webhooks reference vector, shared by the spec's libraries and
    /// svix-webhooks' tests (e.g. go/webhook_test.go `TestWebhookSign`).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn vector(name: &str, prefix: &str) -> Case {
        Case::new(name, BODY)
            .now(at(1_614_265_330))
            .header(&format!("{prefix}-id"), ID)
            .header(&format!("{prefix}-timestamp"), TS)
            .header(&format!("{prefix}-signature"), SIG)
    }

    #[test]
    fn reference_vector_and_cases() {
        for provider in [
            Provider::StandardWebhooks,
            Provider::Svix,
            Provider::Clerk,
            Provider::Resend,
        ] {
            run_cases(
                provider,
                &[SECRET],
                &[
                    vector("spec vector, webhook-*", "webhook").expect(Expect::Ok(0)),
                    vector("spec vector, svix-*", "svix").expect(Expect::Ok(0)),
                    vector("tampered", "webhook")
                        .body(br#"{"test": 2432232315}"#)
                        .expect(Expect::NoMatch),
                    vector("other id", "webhook")
                        .header("webhook-id", "msg_other")
                        .expect(Expect::NoMatch),
                    vector("expired", "webhook")
                        .now(at(1_614_265_631))
                        .expect(Expect::TooOld),
                    vector("future", "webhook")
                        .now(at(1_614_265_029))
                        .expect(Expect::InFuture),
                    vector("list, second valid", "webhook")
                        .header("webhook-signature", &format!("v1,Ym9ndXM= v2,xyz {SIG}"))
                        .expect(Expect::Ok(0)),
                    vector("no v1 entry", "webhook")
                        .header("webhook-signature", "v2,abc")
                        .expect(Expect::Malformed),
                    vector("bad base64", "webhook")
                        .header("webhook-signature", "v1,@@@")
                        .expect(Expect::Malformed),
                    vector("bad timestamp", "webhook")
                        .header("webhook-timestamp", "1614265330.5")
                        .expect(Expect::Malformed),
                    Case::new("missing id", BODY)
                        .header("webhook-timestamp", TS)
                        .header("webhook-signature", SIG)
                        .expect(Expect::Missing(if provider == Provider::StandardWebhooks {
                            "webhook-id"
                        } else {
                            "svix-id"
                        })),
                ],
            );
        }
        run_cases(
            Provider::Svix,
            &["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            &[vector("secret without prefix", "svix").expect(Expect::Ok(0))],
        );
        run_cases(
            Provider::Svix,
            &["whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==", SECRET],
            &[vector("rotated", "svix").expect(Expect::Ok(1))],
        );
        run_cases(
            Provider::Svix,
            &["whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="],
            &[vector("wrong secret", "svix").expect(Expect::NoMatch)],
        );
        run_cases(
            Provider::Svix,
            &["whsec_%%%"],
            &[
                vector("undecodable secret", "svix").expect(Expect::Other(VerifyError::BadKey(
                    "secret is not whsec_ + base64".into(),
                ))),
            ],
        );
    }

    /// A request signed with the `svix-*` headers, replayed with an added `webhook-id`: it still
    /// verifies (the signed headers are intact) and the id that dedupes it is the signed one.
    #[test]
    fn the_dedupe_id_is_the_signed_id() {
        let signed = super::super::tests::header_map(&[
            ("svix-id".into(), ID.into()),
            ("svix-timestamp".into(), TS.into()),
            ("svix-signature".into(), SIG.into()),
        ]);
        let mut replayed = signed.clone();
        replayed.insert("webhook-id", http::HeaderValue::from_static("msg_new"));
        let payload = super::super::Payload::read(BODY).expect("JSON body");
        for provider in [
            Provider::StandardWebhooks,
            Provider::Svix,
            Provider::Clerk,
            Provider::Resend,
        ] {
            for headers in [&signed, &replayed] {
                let req = super::super::Request {
                    method: "POST",
                    url: "",
                    headers,
                    body: BODY,
                };
                let verified = super::super::verify(
                    provider,
                    &Keys::secrets([SECRET]),
                    &VerifyOptions::default(),
                    &req,
                    at(1_614_265_330),
                );
                assert!(verified.is_ok(), "{provider}: {verified:?}");
                let id = super::super::identify(provider, headers, &payload).delivery_id;
                assert_eq!(id.as_deref(), Some(ID), "{provider}");
            }
        }
        // Signed with `webhook-*`, replayed with an added `svix-id`: the `svix-*` set is then
        // the one read, and it is incomplete, so the replay is refused rather than stored anew.
        let mut other = super::super::tests::header_map(&[
            ("webhook-id".into(), ID.into()),
            ("webhook-timestamp".into(), TS.into()),
            ("webhook-signature".into(), SIG.into()),
        ]);
        assert_eq!(
            signed_id(Provider::StandardWebhooks, &other).as_deref(),
            Some(ID)
        );
        other.insert("svix-id", http::HeaderValue::from_static("msg_new"));
        run_cases_with(
            Provider::StandardWebhooks,
            &Keys::secrets([SECRET]),
            &VerifyOptions::default(),
            &[vector("webhook-* plus svix-id", "webhook")
                .header("svix-id", "msg_new")
                .expect(Expect::Missing("svix-timestamp"))],
        );
    }

    #[test]
    fn v1a_ed25519() {
        // RFC 8032 section 7.1, TEST 1 secret key, used here as a whsk_ seed.
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap_or_default();
        let private = format!("whsk_{}", b64_encode(&seed));
        let public = public_key_for(&private).unwrap_or_default();
        assert_eq!(
            public,
            format!(
                "whpk_{}",
                b64_encode(
                    &hex::decode(
                        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
                    )
                    .unwrap_or_default()
                )
            )
        );
        let body = br#"{"type":"user.created"}"#;
        let headers = sign(&SignCtx {
            provider: Provider::StandardWebhooks,
            secret: &private,
            opts: &VerifyOptions::default(),
            method: "POST",
            url: "",
            body,
            now_ms: 1_700_000_000_000,
            event_type: None,
        })
        .map(|s| s.headers)
        .unwrap_or_default();
        let mut case = Case::new("v1a", body).now(at(1_700_000_000));
        for (k, v) in &headers {
            case = case.header(k, v);
        }
        let other_public =
            public_key_for(&format!("whsk_{}", b64_encode(&[7u8; 32]))).unwrap_or_default();
        run_cases_with(
            Provider::StandardWebhooks,
            &Keys::public_keys([other_public.clone(), public.clone()]),
            &VerifyOptions::default(),
            &[
                case.clone().expect(Expect::Ok(1)),
                case.clone().body(b"{}").expect(Expect::NoMatch),
            ],
        );
        run_cases_with(
            Provider::StandardWebhooks,
            &Keys::public_keys([other_public]),
            &VerifyOptions::default(),
            &[case.clone().expect(Expect::NoMatch)],
        );
        run_cases_with(
            Provider::StandardWebhooks,
            &Keys::public_keys(["whpk_AAAA"]),
            &VerifyOptions::default(),
            &[case.expect(Expect::Other(VerifyError::BadKey(
                "public key is not 32 bytes".into(),
            )))],
        );
    }
}
