//! Certificate authorities to trust, for the TLS clients the configuration names a CA file for
//! (`cluster.redis_tls_ca_file`, `apps_source.tls_ca_file`): read once, checked at load, and
//! turned into a rustls client configuration on ring, the workspace's one crypto backend.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// The certificates of `pem` (one or more PEM certificates) as trust roots; refused when it
/// holds none, so that a wrong file (a key, an empty file) is never read as "trust nothing".
pub(crate) fn from_pem(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(roots)
}

/// [`from_pem`] of the file at `path`; an error names the file.
pub(crate) fn from_file(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    from_pem(&pem).map_err(|e| format!("{shown}: {e}"))
}

/// A client configuration that verifies servers (chain and name) against `roots` and nothing
/// else, and presents no certificate of its own.
pub(crate) fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
