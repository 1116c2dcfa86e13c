//! Reading `server.tls.cert_file` and `key_file` into a chain and a signing key.

use std::path::Path;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::TlsConfig;

/// Why the certificate or key could not be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls.{key} {path}: cannot read: {error}")]
    Read {
        key: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("server.tls.{key} {path}: {what}")]
    Pem {
        key: &'static str,
        path: String,
        what: String,
    },
    #[error("server.tls: {path} and {key_path} do not go together: {error}")]
    Mismatch {
        path: String,
        key_path: String,
        error: rustls::Error,
    },
    #[error("TLS set-up: {0}")]
    Setup(rustls::Error),
}

/// The chain (leaf first) and the key, checked to belong together.
pub(super) fn load(files: &TlsConfig, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(&files.cert_file)?;
    let key = private_key(&files.key_file)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| TlsError::Mismatch {
        path: files.cert_file.display().to_string(),
        key_path: files.key_file.display().to_string(),
        error,
    })
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        key,
        path: path.display().to_string(),
        error,
    })
}

fn pem_error(key: &'static str, path: &Path, what: impl ToString) -> TlsError {
    TlsError::Pem {
        key,
        path: path.display().to_string(),
        what: what.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    const KEY: &str = "cert_file";
    let text = read(KEY, path)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| pem_error(KEY, path, e))?;
    if chain.is_empty() {
        return Err(pem_error(KEY, path, "no CERTIFICATE in the file"));
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const KEY: &str = "key_file";
    let text = read(KEY, path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => pem_error(
            KEY,
            path,
            "no PRIVATE KEY (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY in the file",
        ),
        e => pem_error(KEY, path, e),
    })
}
