//! The database of `[apps_source]` and how a connection to it is secured, for the source's
//! task and for `warren apps` alike.
//!
//! The URL's `sslmode`, as the driver parses it, decides:
//! - `require`: TLS, and the server's certificate is verified, chain and host name, against the
//!   authorities of `apps_source.tls_ca_file` when it is set, else the system's. That is
//!   stricter than libpq's `require`, which checks nothing (it is libpq's `verify-full`):
//!   without the check anyone on the path could answer with a certificate of their own and
//!   read the password.
//! - `prefer` (the driver's default) and `disable`: plain. An unverified session would stop
//!   only a passive listener, and `prefer` falls back to plain whenever the server declines, so
//!   an active one can strip it anyway; and a verifying `prefer` would refuse the self-signed
//!   certificate a default Debian PostgreSQL offers, breaking URLs that work today.
//!
//! The session offers no channel binding (`SCRAM-SHA-256-PLUS`): the password exchange is
//! SCRAM inside a session whose certificate was verified.
//!
//! INVARIANT(database-tls-verified): a TLS session to the database exists only with a
//! certificate verified against the configured roots; no connection is TLS without the check.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::RootCertStore;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Connection, Socket};
use tokio_rustls::TlsConnector;

use crate::config::{roots, AppsSourceConfig};

/// What the driver hands out with a [`Client`]: the connection to poll.
pub(crate) type DbConnection = Connection<Socket, Session>;

/// Where the apps' database is, and how to reach it.
pub(crate) struct Database {
    settings: tokio_postgres::Config,
    tls: MakeTls,
    /// The URL for logs and errors (password hidden).
    shown: String,
}

impl Database {
    /// The database `source` names (`None`: no URL), connecting within `connect_timeout`. An
    /// error names the key at fault.
    pub(crate) fn new(
        source: &AppsSourceConfig,
        connect_timeout: Duration,
    ) -> Result<Option<Database>, String> {
        let Some(url) = &source.url else {
            return Ok(None);
        };
        let mut settings = url.settings();
        settings.connect_timeout(connect_timeout);
        // INVARIANT(database-tls-verified): the one connector that makes TLS verifies; without
        // `require` the driver is told `disable`, never handed a connector that does not.
        let tls = if url.requires_tls() {
            let roots = match &source.tls_ca_file {
                Some(path) => {
                    roots::from_file(path).map_err(|e| format!("apps_source.tls_ca_file: {e}"))?
                }
                None => system_roots()?,
            };
            let mut config = roots::client_config(roots)?;
            // What PostgreSQL 17 asks of a client that negotiates TLS directly; older servers
            // ignore it.
            config.alpn_protocols = vec![b"postgresql".to_vec()];
            MakeTls(Some(TlsConnector::from(Arc::new(config))))
        } else {
            // `prefer` would ask the server for TLS: plain, as the module says. With
            // `disable` set, the driver never calls the (empty) connector.
            settings.ssl_mode(SslMode::Disable);
            MakeTls(None)
        };
        let shown = url.to_string();
        Ok(Some(Database {
            settings,
            tls,
            shown,
        }))
    }

    /// A new connection: the client, and the connection the caller must poll.
    pub(crate) async fn connect(&self) -> Result<(Client, DbConnection), tokio_postgres::Error> {
        self.settings.connect(self.tls.clone()).await
    }

    /// The URL without its password.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }
}

/// The system's certificate authorities; none found is an error, not an empty trust list.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unusable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "apps_source.url: sslmode=require, and no system certificate authority was found \
             ({}); set apps_source.tls_ca_file",
            if why.is_empty() {
                "none installed".to_owned()
            } else {
                why.join("; ")
            }
        ));
    }
    Ok(roots)
}

/// A driver error with its causes, on one line: the driver's own text is only the kind
/// ("error performing TLS handshake", "db error"), the reason is in its sources.
pub(crate) fn explain(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text.replace('\n', " ")
}

/// The driver's TLS hook: `None` exactly when the settings say `sslmode=disable`.
#[derive(Clone)]
struct MakeTls(Option<TlsConnector>);

impl MakeTlsConnect<Socket> for MakeTls {
    type Stream = Session;
    type TlsConnect = Handshake;
    type Error = io::Error;

    /// Called for every connection, TLS or not: a bad name fails the handshake, not this.
    fn make_tls_connect(&mut self, host: &str) -> io::Result<Handshake> {
        Ok(Handshake {
            host: host.to_owned(),
            connector: self.0.clone(),
        })
    }
}

/// One handshake, verifying the certificate for `host` (the URL's host name or address).
pub(crate) struct Handshake {
    host: String,
    connector: Option<TlsConnector>,
}

impl TlsConnect<Socket> for Handshake {
    type Stream = Session;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Session>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let connector = self
                .connector
                .ok_or_else(|| io::Error::other("TLS is off (sslmode) yet was asked for"))?;
            let name = ServerName::try_from(self.host).map_err(|e| {
                let what = format!("no host name to verify the certificate against: {e}");
                io::Error::new(io::ErrorKind::InvalidInput, what)
            })?;
            Ok(Session(connector.connect(name, socket).await?))
        })
    }
}

/// A TLS session to the database.
pub(crate) struct Session(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for Session {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for Session {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Session {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
