//! SendGrid (Twilio Email) signed Event Webhook: `X-Twilio-Email-Event-Webhook-Signature` is a
//! base64 DER ECDSA P-256/SHA-256 signature over timestamp + body, with the timestamp in
//! `X-Twilio-Email-Event-Webhook-Timestamp`. The verification key is the base64 DER (SPKI)
//! public key the dashboard shows. SendGrid publishes no timestamp tolerance.

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _};

use super::common::{Window, b64_decode, b64_encode, check_time, header, malformed, parse_secs};
use super::{Ctx, Matched, SignCtx, SignError, SignedRequest, VerifyError};

const SIGNATURE: &str = "X-Twilio-Email-Event-Webhook-Signature";
const TIMESTAMP: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// Strips PEM armour if present, leaving the base64 body.
fn pem_body(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// Config-time check of a public key.
pub(super) fn check_public_key(text: &str) -> Result<(), String> {
    decode_public_key(text).map(|_| ()).map_err(|e| match e {
        VerifyError::BadKey(m) => m,
        other => other.to_string(),
    })
}

fn decode_public_key(text: &str) -> Result<VerifyingKey, VerifyError> {
    let der = b64_decode(&pem_body(text))
        .ok_or_else(|| VerifyError::BadKey("public key is not base64".into()))?;
    VerifyingKey::from_public_key_der(&der)
        .map_err(|_| VerifyError::BadKey("public key is not a DER (SPKI) P-256 key".into()))
}

fn decode_private_key(text: &str) -> Result<SigningKey, SignError> {
    let der = b64_decode(&pem_body(text))
        .ok_or_else(|| SignError::BadKey("private key is not base64 DER".into()))?;
    if let Ok(key) = SigningKey::from_pkcs8_der(&der) {
        return Ok(key);
    }
    if let Ok(secret) = p256::SecretKey::from_sec1_der(&der) {
        return Ok(secret.into());
    }
    SigningKey::from_slice(&der).map_err(|_| {
        SignError::BadKey("private key is not PKCS#8, SEC1 or a raw P-256 scalar".into())
    })
}

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let sig_text = header(ctx.req.headers, SIGNATURE)?;
    let ts_text = header(ctx.req.headers, TIMESTAMP)?;
    let ts = parse_secs(TIMESTAMP, ts_text)?;
    let der =
        b64_decode(sig_text).ok_or_else(|| malformed(SIGNATURE, "signature is not base64"))?;
    let sig = Signature::from_der(&der)
        .map_err(|_| malformed(SIGNATURE, "signature is not a DER ECDSA signature"))?;
    let keys = ctx
        .public_keys()?
        .iter()
        .map(|k| decode_public_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let message = [ts_text.as_bytes(), ctx.req.body].concat();
    // Signatures with a high S value are accepted too, as SendGrid's own libraries do.
    let low_s = sig.normalize_s().unwrap_or(sig);
    let key_index = keys
        .iter()
        .position(|key| key.verify(&message, &low_s).is_ok())
        .ok_or(VerifyError::NoSignatureMatched)?;
    check_time(ctx, ts.saturating_mul(1000), Window::BothWays)?;
    Ok(Matched {
        timestamp: Some(ts),
        key_index,
    })
}

pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let key = decode_private_key(ctx.secret)?;
    let ts = ctx.now_secs().to_string();
    let sig: Signature = key.sign(&[ts.as_bytes(), ctx.body].concat());
    let der: DerSignature = sig.to_der();
    Ok(ctx.unchanged(vec![
        (SIGNATURE.to_owned(), b64_encode(der.as_bytes())),
        (TIMESTAMP.to_owned(), ts),
    ]))
}

/// The base64 DER (SPKI) public key of a private key given to `sign`.
pub(super) fn public_key_for(private_key: &str) -> Result<String, SignError> {
    let key = decode_private_key(private_key)?;
    let der = key
        .verifying_key()
        .to_public_key_der()
        .map_err(|e| SignError::BadKey(e.to_string()))?;
    Ok(b64_encode(der.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Case, Expect, at, run_cases_with};
    use super::super::{Keys, Provider, VerifyOptions};
    use super::*;

    // The fixture shared by SendGrid's helper libraries (sendgrid-csharp
    // RequestValidatorTests.cs, sendgrid-nodejs eventwebhook tests, sendgrid-go
    // eventwebhook_test.go, which also publishes the private key).
    const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const PRIVATE_KEY: &str = "MHcCAQEEIEQmZgBEh9DcU9zMl34czK3xov4AYvm9P3r7rNB2dNXtoAoGCCqGSM49AwEHoUQDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const OTHER_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
    const PAYLOAD: &[u8] =
        br#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;
    const SIG: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const BAD_SIG: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
    const TS: &str = "1588788367";

    fn case(name: &str) -> Case {
        Case::new(name, PAYLOAD)
            .now(at(1_588_788_367))
            .header(SIGNATURE, SIG)
            .header(TIMESTAMP, TS)
    }

    #[test]
    fn published_fixture() {
        let opts = VerifyOptions::default();
        run_cases_with(
            Provider::Sendgrid,
            &Keys::public_keys([PUBLIC_KEY]),
            &opts,
            &[
                case("fixture").expect(Expect::Ok(0)),
                case("bad payload").body(b"payload").expect(Expect::NoMatch),
                case("bad signature")
                    .header(SIGNATURE, BAD_SIG)
                    .expect(Expect::NoMatch),
                case("bad timestamp")
                    .header(TIMESTAMP, "1388788367")
                    .expect(Expect::NoMatch),
                case("timestamp not a number")
                    .header(TIMESTAMP, "timestamp")
                    .expect(Expect::Malformed),
                case("signature not DER")
                    .header(SIGNATURE, "AAAA")
                    .expect(Expect::Malformed),
                Case::new("missing", PAYLOAD)
                    .header(TIMESTAMP, TS)
                    .expect(Expect::Missing(SIGNATURE)),
            ],
        );
        run_cases_with(
            Provider::Sendgrid,
            &Keys::public_keys([OTHER_KEY, PUBLIC_KEY]),
            &opts,
            &[case("rotated").expect(Expect::Ok(1))],
        );
        run_cases_with(
            Provider::Sendgrid,
            &Keys::public_keys([OTHER_KEY]),
            &opts,
            &[case("bad key").expect(Expect::NoMatch)],
        );
        run_cases_with(
            Provider::Sendgrid,
            &Keys::default(),
            &opts,
            &[case("no key").expect(Expect::Other(VerifyError::NoPublicKeyConfigured))],
        );
        run_cases_with(
            Provider::Sendgrid,
            &Keys::public_keys(["not a key"]),
            &opts,
            &[
                case("garbage key").expect(Expect::Other(VerifyError::BadKey(
                    "public key is not base64".into(),
                ))),
            ],
        );
    }

    #[test]
    fn published_private_key_matches_public_key() {
        assert_eq!(public_key_for(PRIVATE_KEY).as_deref(), Ok(PUBLIC_KEY));
    }
}
