//! TLS for tests: a certificate authority made on the spot (no private key is ever committed),
//! the server certificates it issues written to files a server loads (`server.tls`), and
//! clients that trust that authority only: WebSockets over `wss://` and HTTPS requests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_tungstenite::{Connector, MaybeTlsStream};
use warren_server::config::TlsConfig;

use serde_json::Value;

use crate::signing::{now_secs, signed_target};
use crate::ws::{established, Socket, Ws, PUSHER_JS_QUERY};
use crate::{Endpoint, KEY, SECRET, WAIT};

/// A certificate authority of the test's own, with a directory for the files it writes
/// (removed when the authority is dropped).
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
}

/// A server certificate (for `localhost` and `127.0.0.1`) and its key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate's DER bytes: what a client sees as the peer certificate.
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Warren test CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = std::env::temp_dir().join(format!(
            "warren-tls-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        Self { cert, key, dir }
    }

    /// The authority's certificate, PEM (what clients are told to trust).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A new server certificate for `localhost` and `127.0.0.1`, named `common_name`.
    pub fn issue(&self, common_name: &str) -> Issued {
        let key = KeyPair::generate().expect("server key");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Writes `issued` to `cert.pem` and `key.pem` in the authority's directory (over what
    /// is there) and returns them as a server's `server.tls`.
    pub fn install(&self, issued: &Issued) -> TlsConfig {
        let files = self.files();
        write(&files.cert_file, &issued.cert_pem);
        write(&files.key_file, &issued.key_pem);
        files
    }

    /// Where [`TestCa::install`] writes.
    pub fn files(&self) -> TlsConfig {
        TlsConfig {
            cert_file: self.dir.join("cert.pem"),
            key_file: self.dir.join("key.pem"),
        }
    }

    /// A file in the authority's directory, for tests that write their own.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A rustls client configuration that trusts this authority and nothing else.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert.der().to_vec()))
            .expect("CA certificate is valid");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// An HTTPS client that trusts this authority and nothing else.
    pub fn https_client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.pem().as_bytes()).expect("CA PEM");
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(WAIT)
            .build()
            .expect("HTTPS client")
    }

    /// Opens `wss://127.0.0.1:{port}{path_and_query}`; the handshake's error if it fails.
    pub async fn handshake(
        &self,
        to: &impl Endpoint,
        path_and_query: &str,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!("wss://{}{}", to.addr(), path_and_query);
        let connector = Connector::Rustls(self.client_config());
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector));
        let (ws, _) = tokio::time::timeout(WAIT, connecting)
            .await
            .expect("handshake in time")?;
        Ok(ws)
    }

    /// As [`TestCa::handshake`], over a socket the test connected itself (to set its
    /// buffers, say).
    pub async fn handshake_over(
        &self,
        tcp: TcpStream,
        path_and_query: &str,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!("wss://{}{}", tcp.peer_addr().expect("peer"), path_and_query);
        let connector = Connector::Rustls(self.client_config());
        let connecting =
            tokio_tungstenite::client_async_tls_with_config(url, tcp, None, Some(connector));
        let (ws, _) = tokio::time::timeout(WAIT, connecting)
            .await
            .expect("handshake in time")?;
        Ok(ws)
    }

    /// Connects to the demo app over `wss://` as pusher-js would (`forceTLS`).
    pub async fn connect(&self, to: &impl Endpoint) -> Socket {
        let path = format!("/app/{KEY}?{PUSHER_JS_QUERY}");
        let ws = self.handshake(to, &path).await.expect("wss handshake");
        established(ws).await
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A signed POST of `body` to `path` of the demo app's API over HTTPS (`client` from
/// [`TestCa::https_client`]): the status and the body.
pub async fn https_api_post(
    client: &reqwest::Client,
    to: &impl Endpoint,
    path: &str,
    body: &Value,
) -> reqwest::Result<(u16, String)> {
    let body = body.to_string();
    let target = signed_target("POST", path, &[], &body, KEY, SECRET, now_secs());
    let response = client
        .post(format!("https://{}{target}", to.addr()))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// The certificate the server presented on `ws` (DER).
pub fn peer_certificate(ws: &Ws) -> Vec<u8> {
    match ws.get_ref() {
        MaybeTlsStream::Rustls(tls) => {
            let (_, session) = tls.get_ref();
            let chain = session
                .peer_certificates()
                .expect("the server sent a chain");
            chain[0].to_vec()
        }
        _ => panic!("not a TLS WebSocket"),
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
