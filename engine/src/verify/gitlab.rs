//! GitLab: no signature, the secret token itself comes back in `X-Gitlab-Token`. It is compared
//! with every configured secret in constant time (over SHA-256 digests, so the length of the
//! secret does not leak either).

use super::common::{self, ct_eq, header, sha256};
use super::{Ctx, Matched, SignCtx, SignError, SignedRequest, VerifyError};

const TOKEN: &str = "X-Gitlab-Token";

pub(super) fn verify(ctx: &Ctx) -> Result<Matched, VerifyError> {
    let token = header(ctx.req.headers, TOKEN)?;
    // An empty token proves nothing, whatever the secrets are; a blank secret never matches.
    if token.is_empty() {
        return Err(VerifyError::NoSignatureMatched);
    }
    let given = sha256(&[token.as_bytes()]);
    let secrets = ctx.secrets()?;
    let key_index = secrets
        .iter()
        .map(|s| s.expose().trim())
        .position(|s| !s.is_empty() && ct_eq(&sha256(&[s.as_bytes()]), &given))
        .ok_or(VerifyError::NoSignatureMatched)?;
    Ok(Matched {
        timestamp: None,
        key_index,
    })
}

pub(super) fn sign(ctx: &SignCtx) -> Result<SignedRequest, SignError> {
    let uuid = common::pseudo_uuid(ctx.body, ctx.now_ms);
    Ok(ctx.unchanged(vec![
        (TOKEN.to_owned(), ctx.secret.to_owned()),
        (
            "X-Gitlab-Event".to_owned(),
            ctx.event_type.unwrap_or("Push Hook").to_owned(),
        ),
        ("X-Gitlab-Event-UUID".to_owned(), uuid.clone()),
        ("X-Gitlab-Webhook-UUID".to_owned(), uuid),
    ]))
}

#[cfg(test)]
mod tests {
    use super::super::Provider;
    use super::super::tests::{Case, Expect, run_cases};
    use super::*;

    #[test]
    fn token_cases() {
        let body = br#"{"object_kind":"push"}"#;
        run_cases(
            Provider::Gitlab,
            &["old-token", "s3cret"],
            &[
                Case::new("current token", body)
                    .header(TOKEN, "s3cret")
                    .expect(Expect::Ok(1)),
                Case::new("old token", body)
                    .header(TOKEN, "old-token")
                    .expect(Expect::Ok(0)),
                Case::new("wrong token", body)
                    .header(TOKEN, "s3cre")
                    .expect(Expect::NoMatch),
                Case::new("empty token", body)
                    .header(TOKEN, "")
                    .expect(Expect::NoMatch),
                Case::new("missing", body).expect(Expect::Missing(TOKEN)),
            ],
        );
    }

    /// A blank secret (whitespace only; the config check refuses it, but keys can be built
    /// elsewhere) never matches, not even an empty or blank token.
    #[test]
    fn blank_secrets_and_tokens_never_match() {
        let body = br#"{"object_kind":"push"}"#;
        run_cases(
            Provider::Gitlab,
            &["   ", "s3cret"],
            &[
                Case::new("empty token", body)
                    .header(TOKEN, "")
                    .expect(Expect::NoMatch),
                Case::new("blank token", body)
                    .header(TOKEN, "   ")
                    .expect(Expect::NoMatch),
                Case::new("the real secret still works", body)
                    .header(TOKEN, "s3cret")
                    .expect(Expect::Ok(1)),
            ],
        );
        run_cases(
            Provider::Gitlab,
            &[""],
            &[Case::new("empty secret, empty token", body)
                .header(TOKEN, "")
                .expect(Expect::NoMatch)],
        );
        let problems =
            super::super::check_keys(Provider::Gitlab, &super::super::Keys::secrets([" \t "]));
        assert_eq!(
            problems,
            vec![(
                false,
                0,
                "the secret is empty or only whitespace".to_string()
            )]
        );
    }
}
