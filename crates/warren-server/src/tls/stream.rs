//! A client's socket after the TLS handshake: the TCP stream and its rustls session side by
//! side, so that the socket can be used the way the plain path uses a `TcpStream`.
//!
//! The connection task does not `await` reads and writes: it waits for readiness and then
//! reads and writes without blocking (`connection/socket.rs`). So besides `AsyncRead` and
//! `AsyncWrite` (for HTTP and the rare awaited writes) this offers the same non-blocking calls
//! as `TcpStream`, with TLS's two differences made explicit:
//!
//! * **Readable is not only the socket's readiness.** A read may leave decrypted bytes in the
//!   session; [`TlsStream::poll_read_ready`] reports those as readable before it waits on the
//!   socket, so none is left waiting for bytes that never come.
//! * **Written is not yet sent.** A write encrypts into the session's bounded buffer
//!   (rustls' limit, 64 KiB by default) and sends what the socket takes; the rest waits for
//!   [`TlsStream::try_flush`]. A write that finds the buffer still unsent sends that first
//!   and takes nothing new until it is gone, so the buffer never grows past its limit and a
//!   client that stops reading stalls writes exactly as on a plain socket.
//!
//! The handshake is tokio-rustls'; once done the session is taken out of its stream. (It has
//! no way back in, and the socket must be free to move to the ingress runtime.)

use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use rustls::{ServerConfig, ServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Plaintext read at a time when the caller's buffer has no room.
const READ_CHUNK: usize = 4096;

pub(crate) struct TlsStream {
    tcp: TcpStream,
    /// Boxed: a session is a few hundred bytes, the socket beside it a few words.
    tls: Box<ServerConnection>,
}

/// A socket and its session, apart from any runtime (to move a connection to another one).
pub(crate) struct Detached {
    tcp: std::net::TcpStream,
    tls: Box<ServerConnection>,
}

impl Detached {
    /// Registers the socket with the current runtime.
    pub(crate) fn attach(self) -> io::Result<TlsStream> {
        Ok(TlsStream {
            tcp: TcpStream::from_std(self.tcp)?,
            tls: self.tls,
        })
    }
}

impl TlsStream {
    /// Runs the server side of the handshake on `tcp`.
    pub(crate) async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let stream = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        let (tcp, tls) = stream.into_inner();
        Ok(Self {
            tcp,
            tls: Box::new(tls),
        })
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn detach(self) -> io::Result<Detached> {
        Ok(Detached {
            tcp: self.tcp.into_std()?,
            tls: self.tls,
        })
    }

    /// Ready when decrypted bytes wait in the session, the client closed, or the socket has
    /// bytes to read.
    pub(crate) fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let state = self.tls.process_new_packets().map_err(invalid)?;
        if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    /// Reads decrypted bytes into `buf` without waiting, as `TcpStream::try_read_buf`: `Ok(0)`
    /// is the end of the stream, `WouldBlock` that nothing complete has arrived.
    pub(crate) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            match read_plaintext(&mut self.tls, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            // `WouldBlock` from the socket ends the loop (and clears its readiness).
            self.tls.read_tls(&mut Nonblocking(&self.tcp))?;
            self.process()?;
            // A key update or an alert to answer goes out when the socket takes it.
            self.try_flush()?;
        }
    }

    /// Encrypts what fits and sends what the socket takes, without waiting; `WouldBlock`
    /// while earlier bytes are still unsent.
    pub(crate) fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.try_flush()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write_vectored(bufs)?;
        self.try_flush()?;
        Ok(n)
    }

    /// Sends what the session holds, without waiting: `Ok(true)` when all of it is sent,
    /// `Ok(false)` when the socket is full.
    pub(crate) fn try_flush(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Nonblocking(&self.tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Waits until the socket may take bytes again.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Decrypts what arrived; a protocol error is answered with an alert (if the socket takes
    /// it) and ends the connection.
    fn process(&mut self) -> io::Result<()> {
        match self.tls.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.try_flush();
                Err(invalid(e))
            }
        }
    }

    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.try_flush()? {
                return Poll::Ready(Ok(()));
            }
            ready!(self.tcp.poll_write_ready(cx))?;
        }
    }
}

/// Moves decrypted bytes into `buf`'s free room (made if there is none).
fn read_plaintext(tls: &mut ServerConnection, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() == buf.len() {
        buf.reserve(READ_CHUNK);
    }
    let start = buf.len();
    buf.resize(buf.capacity(), 0);
    let read = tls.reader().read(&mut buf[start..]);
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The socket as `std::io` sees it, never waiting (what rustls reads from and writes to).
struct Nonblocking<'a>(&'a TcpStream);

impl Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.tls.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            ready!(this.tcp.poll_read_ready(cx))?;
            match this.tls.read_tls(&mut Nonblocking(&this.tcp)) {
                Ok(_) => {
                    this.process()?;
                    this.try_flush()?;
                }
                // The readiness was stale and is cleared now: poll again to wait for it.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Unsent bytes first: the session's buffer stays within its limit.
        ready!(this.poll_flush_tls(cx))?;
        let n = this.tls.writer().write_vectored(bufs)?;
        this.try_flush()?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_tls(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Sent once: rustls ignores a second call.
        this.tls.send_close_notify();
        ready!(this.poll_flush_tls(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
