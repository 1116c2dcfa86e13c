//! A client's socket: plain TCP, or TLS over it (`server.tls`). Everything above the listener
//! (HTTP, WebSocket connections) takes a [`Transport`] and is the same code either way.
//!
//! The plain variant is the `TcpStream` itself, each call one `match` away from it: the plain
//! path costs what it cost before TLS existed.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::stream::{Detached, TlsStream};

pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// A [`Transport`] apart from any runtime, on its way to another one.
pub(crate) enum DetachedTransport {
    Plain(std::net::TcpStream),
    Tls(Box<Detached>),
}

impl DetachedTransport {
    /// Registers the socket with the current runtime.
    pub(crate) fn attach(self) -> io::Result<Transport> {
        Ok(match self {
            DetachedTransport::Plain(s) => Transport::Plain(TcpStream::from_std(s)?),
            DetachedTransport::Tls(s) => Transport::Tls(Box::new(s.attach()?)),
        })
    }
}

impl Transport {
    /// The server side of a TLS handshake on `tcp` (the caller bounds how long it may take).
    pub(crate) async fn tls(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        Ok(Transport::Tls(Box::new(
            TlsStream::accept(tcp, config).await?,
        )))
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => s.tcp(),
        }
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// Takes the socket off this runtime (see [`DetachedTransport::attach`]).
    pub(crate) fn detach(self) -> io::Result<DetachedTransport> {
        Ok(match self {
            Transport::Plain(s) => DetachedTransport::Plain(s.into_std()?),
            Transport::Tls(s) => DetachedTransport::Tls(Box::new(s.detach()?)),
        })
    }

    /// Ready when a read may find bytes (or the end of the stream).
    pub(crate) fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(s) => s.poll_read_ready(cx),
            Transport::Tls(s) => s.poll_read_ready(cx),
        }
    }

    /// Reads what has arrived without waiting; `Ok(0)`: the end of the stream.
    pub(crate) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.try_read_buf(buf),
            Transport::Tls(s) => s.try_read_buf(buf),
        }
    }

    /// Writes what the socket takes without waiting.
    pub(crate) fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) if bufs.len() == 1 => s.try_write(&bufs[0]),
            Transport::Plain(s) => s.try_write_vectored(bufs),
            Transport::Tls(s) => s.try_write_vectored(bufs),
        }
    }

    /// Sends bytes written but not yet sent, without waiting: `Ok(true)` once none are left
    /// (always, on a plain socket).
    pub(crate) fn try_flush(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(s) => s.try_flush(),
        }
    }

    /// Waits until the socket may take bytes.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.writable().await,
            Transport::Tls(s) => s.writable().await,
        }
    }

    /// Writes `bytes` whole and sends them (TLS buffers until flushed).
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await?;
        self.flush().await
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
