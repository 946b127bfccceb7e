//! Discord interactions and webhook events: `X-Signature-Ed25519` is the hex Ed25519 signature of
//! timestamp + body, with the timestamp in `X-Signature-Timestamp`; the key is the application's
//! hex public key. Discord publishes no tolerance, so none applies unless one is configured.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::common::{Enc, Window, check_time, header, malformed, parse_secs};
use super::{Ctx, Matched, SignCtx, SignError, SignedRequest, VerifyError};

const SIGNATURE: &str = "X-Signature-Ed25519";
const TIMESTAMP: &str = "X-Signature-Timestamp";

/// Config-time check of a public key.
pub(super) fn check_public_key(text: &str) -> Result<(), String> {
    decode_public_key(text).map(|_| ()).map_err(|e| match e {
        VerifyError::BadKey(m) => m,
        other => other.to_string(),
    })
}

fn decode_public_key(text: &str) -> Result<VerifyingKey, VerifyError> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| VerifyError::BadKey("public key is not 64 hex characters".into()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| VerifyError::BadKey("public key is not an Ed25519 point".into()))
}

fn decode_private_key(text: &str) -> Result<SigningKey, SignError> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            SignError::BadKey("private key is not 64 hex characters (the seed)".into())
        })?;
    Ok(SigningKey::from_bytes(&bytes))
}

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let sig_text = header(ctx.req.headers, SIGNATURE)?;
    let ts_text = header(ctx.req.headers, TIMESTAMP)?;
    let sig = Enc::Hex
        .decode(sig_text)
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| malformed(SIGNATURE, "signature is not 128 hex characters"))?;
    let keys = ctx
        .public_keys()?
        .iter()
        .map(|k| decode_public_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let message = [ts_text.as_bytes(), ctx.req.body].concat();
    let key_index = keys
        .iter()
        .position(|key| key.verify_strict(&message, &sig).is_ok())
        .ok_or(VerifyError::NoSignatureMatched)?;
    // The timestamp is only read when a tolerance is configured.
    let timestamp = match ctx.tolerance {
        Some(_) => {
            let ts = parse_secs(TIMESTAMP, ts_text)?;
            check_time(ctx, ts.saturating_mul(1000), Window::BothWays)?;
            Some(ts)
        }
        None => ts_text.parse().ok(),
    };
    Ok(Matched {
        timestamp,
        key_index,
    })
}

pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let key = decode_private_key(ctx.secret)?;
    let ts = ctx.now_secs().to_string();
    let sig = key.sign(&[ts.as_bytes(), ctx.body].concat());
    Ok(ctx.unchanged(vec![
        (SIGNATURE.to_owned(), hex::encode(sig.to_bytes())),
        (TIMESTAMP.to_owned(), ts),
    ]))
}

/// The hex public key of a hex private key (seed).
pub(super) fn public_key_for(private_key: &str) -> Result<String, SignError> {
    Ok(hex::encode(
        decode_private_key(private_key)?.verifying_key().as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Case, Expect, at, run_cases_with};
    use super::super::{Keys, Provider, VerifyOptions};
    use super::*;
    use std::time::Duration;

    // RFC 8032 section 7.1, TEST 2: the message is the single byte 0x72 ("r"). Discord signs
    // timestamp + body, so the vector is replayed with timestamp "r" and an empty body.
    const RFC_SECRET: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const RFC_PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const RFC_SIG: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";
    const OTHER_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn rfc8032_vector_and_cases() {
        let rfc = |name: &str| {
            Case::new(name, b"")
                .header(SIGNATURE, RFC_SIG)
                .header(TIMESTAMP, "r")
        };
        let opts = VerifyOptions::default();
        run_cases_with(
            Provider::Discord,
            &Keys::public_keys([RFC_PUBLIC]),
            &opts,
            &[
                rfc("RFC 8032 TEST 2").expect(Expect::Ok(0)),
                rfc("tampered").body(b"x").expect(Expect::NoMatch),
                rfc("short signature")
                    .header(SIGNATURE, "abcd")
                    .expect(Expect::Malformed),
                Case::new("missing", b"")
                    .header(TIMESTAMP, "r")
                    .expect(Expect::Missing(SIGNATURE)),
            ],
        );
        run_cases_with(
            Provider::Discord,
            &Keys::public_keys([OTHER_PUBLIC, RFC_PUBLIC]),
            &opts,
            &[rfc("rotated").expect(Expect::Ok(1))],
        );
        run_cases_with(
            Provider::Discord,
            &Keys::public_keys(["zz"]),
            &opts,
            &[rfc("bad key").expect(Expect::Other(VerifyError::BadKey(
                "public key is not 64 hex characters".into(),
            )))],
        );
        assert_eq!(public_key_for(RFC_SECRET).as_deref(), Ok(RFC_PUBLIC));
    }

    #[test]
    fn configured_tolerance_applies() {
        let body = br#"{"type":1}"#;
        let signed = sign(&SignCtx {
            provider: Provider::Discord,
            secret: RFC_SECRET,
            opts: &VerifyOptions::default(),
            method: "POST",
            url: "",
            body,
            now_ms: 1_700_000_000_000,
            event_type: None,
        })
        .map(|s| s.headers)
        .unwrap_or_default();
        let mut case = Case::new("signed", body);
        for (k, v) in &signed {
            case = case.header(k, v);
        }
        let opts = VerifyOptions {
            tolerance: Some(Duration::from_secs(60)),
            hmac: None,
        };
        run_cases_with(
            Provider::Discord,
            &Keys::public_keys([RFC_PUBLIC]),
            &opts,
            &[
                case.clone().now(at(1_700_000_060)).expect(Expect::Ok(0)),
                case.clone().now(at(1_700_000_061)).expect(Expect::TooOld),
                case.now(at(1_699_999_939)).expect(Expect::InFuture),
            ],
        );
    }
}
