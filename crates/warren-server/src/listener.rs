//! Accepting TCP connections and telling WebSocket upgrades from HTTP API requests, so both
//! share one port. With `server.tls` every connection is TLS first: the handshake and the
//! request head share `server.handshake_timeout_ms`, and the socket gate's slot is taken before
//! `accept` exactly as on the plain path.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::connection;
use crate::connection_errors::{ConnectionError, Kind};
use crate::gate::{self, Gate, SocketSlot};
use crate::http_connection::{self, Deadlines};
use crate::tls::Tls;
use crate::transport::Transport;
use crate::ws::handshake::{self, Head};

/// Pending connections the kernel may hold during a connection storm.
const LISTEN_BACKLOG: u32 = 8192;

pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last_err = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(l) => return Ok(l),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "no address")))
}

/// Where accepted connections go.
#[derive(Clone)]
pub(crate) struct Routes {
    /// WebSocket upgrades; `None` on a node that serves the HTTP API only.
    pub websocket: Option<Arc<connection::Context>>,
    pub http: axum::Router,
    /// The runtime HTTP connections are served on (`None`: this one); see `Ingress`.
    pub ingress: Option<tokio::runtime::Handle>,
    /// How long a request head, an idle keep-alive connection and a stalled write may take.
    pub deadlines: Deadlines,
    /// Who may hold a socket: the file budget, the node's and each address's caps.
    pub gate: Arc<Gate>,
    /// `Some`: every connection is TLS (`server.tls`).
    pub tls: Option<Arc<Tls>>,
}

/// Accepts connections until `shutdown` flips.
pub(crate) async fn serve(
    listener: TcpListener,
    routes: Routes,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // INVARIANT(sockets-within-file-limit): room first, then accept.
        let slot = tokio::select! {
            s = routes.gate.socket() => s,
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let routes = routes.clone();
                tokio::spawn(async move { route(stream, peer, slot, routes).await });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                ConnectionError::new(Kind::AcceptFailed, None, &e).report();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn route(tcp: TcpStream, peer: SocketAddr, slot: SocketSlot, routes: Routes) {
    let _ = tcp.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(1024);
    // INVARIANT(tls-handshake-within-head-deadline): a client that stalls the TLS handshake
    // is dropped as one that trickles its request head.
    let opened = tokio::time::timeout(routes.deadlines.head, async {
        let mut stream = match &routes.tls {
            None => Transport::Plain(tcp),
            Some(tls) => Transport::tls(tcp, tls.config()).await?,
        };
        let head = read_head(&mut stream, &mut buf).await?;
        Ok::<_, io::Error>((stream, head))
    });
    let (mut stream, head) = match opened.await {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return head_failed(peer, &buf, &e),
        Err(_) => {
            let reason = if buf.is_empty() {
                "no request arrived in time"
            } else {
                "the request head did not arrive whole in time"
            };
            return ConnectionError::new(Kind::HandshakeTimeout, Some(peer), &reason).report();
        }
    };
    match head {
        Some(Head::WebSocket(upgrade)) => match routes.websocket {
            Some(cx) => {
                let client = routes
                    .gate
                    .client_address(peer.ip(), upgrade.forwarded_for.as_deref());
                match routes.gate.websocket(slot, client) {
                    Ok(slot) => {
                        buf.advance(upgrade.head_len);
                        // Admits the connection and hands it to a small task of its own: this
                        // routing future (sized for the HTTP branch too) ends here.
                        connection::serve(stream, buf, upgrade, slot, cx).await;
                    }
                    Err(refused) => {
                        tracing::debug!(%client, ?refused, "upgrade refused");
                        cx.metrics.refused(refusal_label(&refused));
                        let (status, reason) = refused.status();
                        ConnectionError::new(
                            Kind::UpgradeRefused,
                            Some(peer),
                            &format_args!("{} (client {client})", refused.message()),
                        )
                        .code(status)
                        .report();
                        let answer = handshake::http_error(status, reason, refused.message());
                        let _ = tokio::time::timeout(
                            routes.deadlines.write,
                            stream.send(answer.as_bytes()),
                        )
                        .await;
                    }
                }
            }
            None => {
                let why = "This node serves the HTTP API only (server.role = \"api\")";
                let answer = handshake::http_error(404, "Not Found", why);
                let _ =
                    tokio::time::timeout(routes.deadlines.write, stream.send(answer.as_bytes()))
                        .await;
            }
        },
        Some(Head::BadUpgrade(why)) => {
            ConnectionError::new(Kind::BadRequest, Some(peer), &why)
                .code(400)
                .report();
            let answer = handshake::http_error(400, "Bad Request", why);
            let _ =
                tokio::time::timeout(routes.deadlines.write, stream.send(answer.as_bytes())).await;
        }
        Some(Head::WrongVersion) => {
            let why = "unsupported Sec-WebSocket-Version";
            ConnectionError::new(Kind::BadRequest, Some(peer), &why)
                .code(426)
                .report();
            let answer = handshake::wrong_version();
            let _ =
                tokio::time::timeout(routes.deadlines.write, stream.send(answer.as_bytes())).await;
        }
        Some(Head::Http) | None => {
            let prefix = buf.freeze();
            match routes.ingress {
                None => {
                    http_connection::serve(stream, peer, prefix, routes.http, routes.deadlines)
                        .await;
                    drop(slot);
                }
                Some(runtime) => {
                    // INVARIANT(ingress-apart-from-connections): HTTP is served on its own
                    // runtime; the socket moves to that runtime's reactor.
                    let Ok(stream) = stream.detach() else {
                        return;
                    };
                    runtime.spawn(async move {
                        let _slot = slot;
                        if let Ok(stream) = stream.attach() {
                            http_connection::serve(
                                stream,
                                peer,
                                prefix,
                                routes.http,
                                routes.deadlines,
                            )
                            .await;
                        }
                    });
                }
            }
        }
    }
}

/// A request head cut short. A connection closed before its first byte is not an error: load
/// balancers' TCP health checks do just that.
fn head_failed(peer: SocketAddr, buf: &BytesMut, e: &io::Error) {
    if buf.is_empty() && e.kind() == io::ErrorKind::UnexpectedEof {
        return;
    }
    ConnectionError::new(Kind::HandshakeAborted, Some(peer), e).report();
}

/// Reads until the request head is complete. `None`: not parseable as HTTP (hyper answers it).
async fn read_head(stream: &mut Transport, buf: &mut BytesMut) -> io::Result<Option<Head>> {
    loop {
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match handshake::parse_head(buf) {
            Ok(Some(head)) => return Ok(Some(head)),
            Ok(None) if buf.len() < handshake::MAX_HEAD => {}
            Ok(None) | Err(_) => return Ok(None),
        }
    }
}

/// The metrics' name for a refusal at the gate (`warren_connections_refused_total{reason}`).
fn refusal_label(refused: &gate::Refused) -> &'static str {
    match refused {
        gate::Refused::NodeFull => "node_full",
        gate::Refused::TooManyFromAddress => "too_many_from_address",
        gate::Refused::TooFastFromAddress => "too_fast_from_address",
    }
}
