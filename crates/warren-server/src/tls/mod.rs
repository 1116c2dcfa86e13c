//! Native TLS on the main listener: the certificate it presents, reloaded while connections
//! run, and the TLS side of a client socket (`stream.rs`).
//!
//! rustls on the *ring* provider (the one the Redis and webhook clients already use). One
//! `ServerConfig` serves the node's life; every handshake asks its resolver, [`Certificate`],
//! for the current chain and key. [`TlsReloader::reload`] reads `server.tls.cert_file` and
//! `key_file` again and swaps what the resolver hands out.
//!
//! INVARIANT(tls-reload-keeps-connections): a reload only changes what *new* handshakes get;
//! an established connection holds its own session keys and never asks the resolver again,
//! so nothing is closed. A file that does not load (unreadable, not PEM, no key, a key that
//! does not match the certificate) leaves the current certificate in place.

mod files;
pub(crate) mod stream;

use std::sync::Arc;

use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::TlsConfig;
pub use files::TlsError;

/// The listener's TLS: the configuration every handshake starts from, and how to reload it.
pub(crate) struct Tls {
    config: Arc<ServerConfig>,
    certificate: Arc<Certificate>,
    files: TlsConfig,
}

impl Tls {
    /// Loads the files; an error names the file and what is wrong with it.
    pub(crate) fn load(files: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificate = Arc::new(Certificate(RwLock::new(Arc::new(files::load(
            files, &provider,
        )?))));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        // WebSocket upgrades and the API are HTTP/1.1; say so to clients that offer h2 too.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Self {
            config: Arc::new(config),
            certificate,
            files: files.clone(),
        }))
    }

    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

/// The chain and key new handshakes get.
#[derive(Debug)]
struct Certificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// Reloads the listener's certificate and key from their files (what the `warren` binary does
/// on `SIGHUP`); from [`crate::Server::tls_reloader`] when `[server.tls]` is configured.
#[derive(Clone)]
pub struct TlsReloader(pub(crate) Arc<Tls>);

impl TlsReloader {
    /// Reads both files again. On success new handshakes present the new certificate; open
    /// connections go on undisturbed either way. On an error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let tls = &self.0;
        let loaded = files::load(&tls.files, tls.config.crypto_provider())?;
        *tls.certificate.0.write() = Arc::new(loaded);
        Ok(())
    }

    /// [`TlsReloader::reload`], with the outcome logged: what a signal handler wants.
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert_file = %self.0.files.cert_file.display(),
                "TLS certificate reloaded; new connections get it"
            ),
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; keeping the current certificate")
            }
        }
    }
}

impl std::fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReloader")
            .field("files", &self.0.files)
            .finish()
    }
}
