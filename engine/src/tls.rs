//! TLS for both listeners: certificates from files, or (for the ingress) a self-signed one for
//! localhost made on first run and kept beside the store; and the mark on a request that came
//! as plain HTTP to a listener that speaks HTTPS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Marks a request that arrived as plain HTTP on a listener that speaks HTTPS. It is answered
/// (with a reason and, on the ingress's `/hooks/`, a delivery attempt record) rather than
/// dropped, so the sender learns what is wrong.
#[derive(Debug, Clone, Copy)]
pub struct PlainOnTls;

/// File names of the self-signed pair in its folder.
pub const SELF_SIGNED_CERT: &str = "hookwise-tls-cert.pem";
pub const SELF_SIGNED_KEY: &str = "hookwise-tls-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} `{path}`: {detail}")]
    Read {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Loads certificate chain and key from PEM files into an acceptor (HTTP/2 and HTTP/1.1).
pub fn acceptor_from_files(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read_err = |what, path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        what,
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err("certificate", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err("certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(read_err("certificate", cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err("key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The self-signed pair in `dir`, made first when it is not there. Returns the cert path too,
/// so users can be told what to trust.
pub fn self_signed(dir: &Path) -> Result<(TlsAcceptor, PathBuf), TlsError> {
    let cert_path = dir.join(SELF_SIGNED_CERT);
    let key_path = dir.join(SELF_SIGNED_KEY);
    if !(cert_path.is_file() && key_path.is_file()) {
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let certified = rcgen::generate_simple_self_signed(names)?;
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, certified.cert.pem()).map_err(|source| TlsError::Write {
            path: cert_path.clone(),
            source,
        })?;
        tracing::info!(cert = %cert_path.display(), "made a self-signed certificate for localhost");
    }
    Ok((acceptor_from_files(&cert_path, &key_path)?, cert_path))
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    f.write_all(bytes).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}
