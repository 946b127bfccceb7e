//! The admin API's bearer token: from the config (`admin.token`), or else generated on first
//! run, kept in a file readable only by its owner beside the config (or, on the embedded
//! default, in the working directory) and reused afterwards. Its value is never printed.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, MIN_ADMIN_TOKEN_LEN, Secret};

/// File name of the generated token.
pub const TOKEN_FILE: &str = "hookwise-admin-token";
/// Random bytes in a generated token (hex-encoded: 64 characters).
const TOKEN_BYTES: usize = 32;
// A generated token must pass the rule a configured one must.
const _: () = assert!(2 * TOKEN_BYTES >= MIN_ADMIN_TOKEN_LEN);

/// Why the token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("admin.token is empty")]
    Empty,
    #[error("cannot read the admin token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the admin token file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the admin token file {0} is empty; delete it to have a new token made")]
    EmptyFile(PathBuf),
    #[error(
        "the admin token in {path} is {length} characters; tokens must be at least \
         {MIN_ADMIN_TOKEN_LEN}: delete the file to have a new token made"
    )]
    ShortFile { path: PathBuf, length: usize },
    #[error(
        "the admin token file {path} may be read by others (mode {mode:o}); run `chmod 600` on it"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("no random numbers from the operating system")]
    Random,
}

/// The token admin requests must carry. Compared in constant time; never printed by `Debug`.
#[derive(Clone)]
pub struct AdminToken {
    /// SHA-256 of the token: comparing digests keeps the comparison constant-time whatever
    /// the length of the presented value.
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest.ct_eq(&other).into()
    }
}

/// The token for `config`: `admin.token` when set, else the stored one, else a new one.
pub fn resolve(config: &Config) -> Result<AdminToken, TokenError> {
    resolve_value(config).map(|t| AdminToken::new(t.expose()))
}

/// The token's text for `config` (to compare against, and to replace wherever it shows up):
/// `admin.token` when set, else the stored one, else a new one.
pub fn resolve_value(config: &Config) -> Result<Secret, TokenError> {
    if let Some(token) = &config.admin.token {
        let value = token.expose().trim();
        if value.is_empty() {
            return Err(TokenError::Empty);
        }
        return Ok(Secret::new(value));
    }
    let path = config.base_dir.join(TOKEN_FILE);
    load_or_create(&path).map(Secret::new)
}

/// The token made on an earlier run, if there is one (nothing is made): what commands other
/// than `serve` must not show either.
pub fn existing(config: &Config) -> Option<Secret> {
    let text = std::fs::read_to_string(config.base_dir.join(TOKEN_FILE)).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| Secret::new(token))
}

/// Reads the token stored at `path`, or makes one, stores it (mode 0600) and says where.
pub fn load_or_create(path: &Path) -> Result<String, TokenError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path)?;
            let token = text.trim();
            if token.is_empty() {
                return Err(TokenError::EmptyFile(path.to_path_buf()));
            }
            let length = token.chars().count();
            if length < MIN_ADMIN_TOKEN_LEN {
                return Err(TokenError::ShortFile {
                    path: path.to_path_buf(),
                    length,
                });
            }
            return Ok(token.to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(TokenError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let mut bytes = [0u8; TOKEN_BYTES];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| TokenError::Random)?;
    let token = hex::encode(bytes);
    let write_err = |source| TokenError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(write_err)?;
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return load_or_create(path),
        Err(e) => return Err(write_err(e)),
    }
    // The token itself is not printed: stderr often ends up in log collectors, and a secret
    // is never logged. The file is readable by its owner only.
    eprintln!(
        "hookwise: made an admin API token; read it from {} (readable only by you)",
        path.display()
    );
    Ok(token)
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), TokenError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| TokenError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), TokenError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        let first = load_or_create(&path).unwrap();
        assert_eq!(first.len(), 2 * TOKEN_BYTES);
        assert!(first.chars().count() >= MIN_ADMIN_TOKEN_LEN);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(load_or_create(&path).unwrap(), first);
        let token = AdminToken::new(&first);
        assert!(token.matches(&first));
        assert!(!token.matches(&first[1..]));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "AdminToken([redacted])");
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        std::fs::write(&path, "abc\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(TokenError::Exposed { mode: 0o644, .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_stored_token_shorter_than_a_configured_one_may_be_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        let short = "x".repeat(MIN_ADMIN_TOKEN_LEN - 1);
        std::fs::write(&path, format!("{short}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let refused = load_or_create(&path);
        assert!(
            matches!(refused, Err(TokenError::ShortFile { length: 31, .. })),
            "{refused:?}"
        );
        std::fs::write(&path, format!("{short}x\n")).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), format!("{short}x"));
    }
}
