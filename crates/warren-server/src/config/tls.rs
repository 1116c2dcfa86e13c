//! `[server.tls]`: the certificate and key files that make the main listener speak TLS.
//!
//! Only the paths live here; the files are read when the server binds (and again on every
//! reload), by `crate::tls`, so a configuration check does not need the key's permissions.

use std::path::PathBuf;

use serde::Deserialize;

/// Both files are PEM: the certificate chain (leaf first) and its private key (PKCS#8,
/// PKCS#1 RSA or SEC1 EC).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TlsConfig {
    /// The key (`server.tls.cert_file`) of an empty path, if one is.
    pub(super) fn empty_path(&self) -> Option<&'static str> {
        if self.cert_file.as_os_str().is_empty() {
            Some("server.tls.cert_file")
        } else if self.key_file.as_os_str().is_empty() {
            Some("server.tls.key_file")
        } else {
            None
        }
    }
}
