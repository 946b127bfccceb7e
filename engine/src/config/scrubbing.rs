//! Which values of a loaded config are secrets, for the [`Scrubber`]: the `secrets:` map (by
//! name), source secrets, the admin token and the passwords in connection and store URLs
//! (without a name).

use std::borrow::Cow;

use super::Config;
use crate::scrub::Scrubber;

impl Config {
    /// The scrubber of everything this config holds secret, plus `admin_token` (the one made on
    /// first run when the config sets none).
    pub fn scrubber(&self, admin_token: Option<&str>) -> Scrubber {
        let passwords: Vec<Cow<'_, str>> = self
            .connections
            .values()
            .chain(std::iter::once(&self.store_url))
            .filter_map(|url| url_password(url.expose()))
            .flat_map(|raw| {
                let decoded = percent_decode(raw);
                [Some(Cow::Borrowed(raw)), decoded.map(Cow::Owned)]
            })
            .flatten()
            .collect();
        let named = self
            .secrets
            .iter()
            .map(|(name, value)| (Some(name.as_str()), value.expose()));
        let unnamed = self
            .sources
            .iter()
            .flat_map(|s| s.secrets.iter().map(|x| x.expose()))
            .chain(self.admin.token.as_ref().map(|t| t.expose().trim()))
            .chain(admin_token)
            .chain(passwords.iter().map(|p| p.as_ref()))
            .map(|value| (None, value));
        Scrubber::new(named.chain(unnamed))
    }
}

/// The password of a `scheme://user:password@host/...` URL, as written (percent-encoded).
pub(super) fn url_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `text` with `%XX` decoded, when it has any and decodes to UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_in_urls() {
        let cases: &[(&str, Option<&str>)] = &[
            ("postgres://app:s3cret-pass@db:5432/x", Some("s3cret-pass")),
            ("mysql://root@127.0.0.1:3306/x", None),
            ("postgres://app:@db/x", None),
            ("sqlite://hookwise.db", None),
            (
                "postgres://a:p%40ss:word@db/x?sslmode=require",
                Some("p%40ss:word"),
            ),
            ("postgres://db/x?user=a:b@c", None),
            ("not a url", None),
        ];
        for (url, want) in cases {
            assert_eq!(url_password(url), *want, "{url}");
        }
        assert_eq!(
            percent_decode("p%40ss%3aword").as_deref(),
            Some("p@ss:word")
        );
        assert_eq!(percent_decode("100%"), Some("100%".to_string()));
        assert_eq!(percent_decode("plain"), None);
    }
}
