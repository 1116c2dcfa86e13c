//! One WebSocket connection, driven by one small task.
//!
//! The task owns the socket and waits on two things at once: its [`Outbox`] (frames to write,
//! or a close to act on) and the socket becoming readable. It keeps no timer (the server's
//! liveness sweeper pings idle connections and closes silent ones through the outbox) and no
//! read buffer while idle (one is allocated when bytes arrive and dropped once they are
//! handled). Protocol decisions are in [`session`]; admission checks in [`admission`]. Rare,
//! heavy steps (handling a client message, closing) are boxed, so that the future every
//! connection keeps for its lifetime stays small.

pub mod admission;
pub mod session;
mod signin;

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};
use warren_protocol::inbound::parse_client_message;
use warren_protocol::{codes::ws_close, outbound, SocketId};

use crate::app::AppRegistry;
use crate::connections::Connections;
use crate::node::Node;
use crate::outbox::{CloseReason, Outbox, SLOW_CONSUMER};
use crate::ws::frame::{self, Decoder, FrameError, Message};
use crate::ws::handshake::{switching_protocols, Upgrade};
use session::Session;

/// How long a closing connection waits for the client to acknowledge before dropping it.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Frames written per `writev` call at most.
const MAX_IOVECS: usize = 64;
/// Read buffer allocated when bytes arrive; grows only for larger messages.
const READ_CHUNK: usize = 512;

/// What every WebSocket connection of this node uses.
pub(crate) struct Context {
    pub apps: Arc<dyn AppRegistry>,
    pub node: Arc<Node>,
    pub connections: Arc<Connections>,
    /// Frames queued for one connection before it is closed as a slow consumer.
    pub max_outbound_queue: usize,
    /// Largest message a client may send, in bytes.
    pub max_message_size: usize,
}

/// Serves an upgraded connection until it ends. `read_buf` holds any bytes the client sent
/// after its upgrade request.
pub(crate) async fn serve(
    mut stream: TcpStream,
    read_buf: BytesMut,
    upgrade: Upgrade,
    cx: Arc<Context>,
) {
    if stream
        .write_all(switching_protocols(&upgrade.accept).as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let (app, _slot) = match admission::admit(cx.apps.as_ref(), &upgrade.path, &upgrade.query) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::debug!(path = %upgrade.path, code = refusal.code.code(), "connection refused");
            let reason = CloseReason::new(refusal.code, refusal.message);
            Box::pin(close_now(&mut stream, &reason)).await;
            return;
        }
    };
    drop(upgrade);
    let outbox = Arc::new(Outbox::new(cx.max_outbound_queue));
    if let Some(limit) = app.user_authentication_timeout {
        let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        outbox.require_authentication_by(cx.connections.clock().saturating_add(ms));
    }
    let socket_id = cx.connections.open(outbox.clone());
    let mut session = Session::new(cx.node.clone(), app, socket_id, outbox.clone());
    session.send(&outbound::connection_established(
        socket_id,
        cx.connections.activity_timeout(),
    ));
    let mut conn = Conn {
        stream,
        read_buf,
        decoder: Decoder::new(cx.max_message_size),
        outbox,
        queue: VecDeque::new(),
        connections: cx.connections.clone(),
        socket_id,
    };
    let end = conn.run(&mut session).await;
    // Leave channels (announcing departures) before waiting on the client's side of a close.
    Box::pin(session.leave_all()).await;
    // INVARIANT(empty-registry-means-departed): removed only after leaving every channel.
    cx.connections.remove(socket_id);
    if matches!(end, End::ServerClosed(_)) {
        Box::pin(linger(&mut conn.stream)).await;
    }
    tracing::debug!(%socket_id, ?end, "connection ended");
}

struct Conn {
    stream: TcpStream,
    /// Bytes of a message still arriving; empty (and unallocated) between messages.
    read_buf: BytesMut,
    decoder: Decoder,
    outbox: Arc<Outbox>,
    /// Frames taken from the outbox and not yet fully written.
    queue: VecDeque<Bytes>,
    connections: Arc<Connections>,
    socket_id: SocketId,
}

/// Why a connection ended (for logs).
#[derive(Debug)]
#[allow(dead_code)] // the code is read through `Debug` in the log line
enum End {
    ClientClosed,
    ClientGone,
    ServerClosed(u16),
    WriteFailed,
}

/// What woke the connection.
enum Wake {
    Outbox,
    Readable,
}

impl Conn {
    async fn run(&mut self, session: &mut Session) -> End {
        // Alternate which side is looked at first, so neither a busy outbox nor a chatty
        // client starves the other.
        let mut outbox_first = true;
        // Bytes that arrived with the upgrade request.
        if !self.read_buf.is_empty() {
            if let Some(end) = self.process_input(session).await {
                return end;
            }
        }
        loop {
            let wake = poll_fn(|cx| {
                let outbox = |cx: &mut std::task::Context<'_>| {
                    self.outbox.poll_ready(cx).map(|()| Ok(Wake::Outbox))
                };
                let socket = |cx: &mut std::task::Context<'_>| {
                    self.stream.poll_read_ready(cx).map_ok(|()| Wake::Readable)
                };
                // The second side is only polled (and its waker registered) when the first
                // has nothing: a wake-up costs one readiness check in the common case.
                let first = if outbox_first { outbox(cx) } else { socket(cx) };
                if first.is_ready() {
                    return first;
                }
                if outbox_first {
                    socket(cx)
                } else {
                    outbox(cx)
                }
            })
            .await;
            outbox_first = !outbox_first;
            match wake {
                Ok(Wake::Outbox) => {
                    let closing = self.outbox.take(&mut self.queue);
                    if let Some(reason) = closing {
                        return Box::pin(self.close(reason)).await;
                    }
                    if self.flush().await.is_err() {
                        return End::WriteFailed;
                    }
                }
                Ok(Wake::Readable) => {
                    if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
                        self.read_buf.reserve(READ_CHUNK);
                    }
                    match self.stream.try_read_buf(&mut self.read_buf) {
                        Ok(0) => return End::ClientGone,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(_) => return End::ClientGone,
                    }
                    self.outbox.heard_from(self.connections.clock());
                    if let Some(end) = self.process_input(session).await {
                        return end;
                    }
                }
                Err(_) => return End::ClientGone,
            }
        }
    }

    /// Handles every complete message in the read buffer.
    async fn process_input(&mut self, session: &mut Session) -> Option<End> {
        loop {
            let msg = match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return Some(Box::pin(self.frame_error(session, e)).await),
            };
            match msg {
                Message::Text(text) => match parse_client_message(&text) {
                    Ok(m) => Box::pin(session.handle(m)).await,
                    Err(e) => session.send_error(None, &e.to_string()),
                },
                Message::Binary(_) => session.send_error(
                    None,
                    "Binary messages are not supported: send JSON in text frames",
                ),
                Message::Ping(payload) => {
                    self.outbox.push(frame::pong(&payload));
                }
                Message::Pong => {}
                Message::Close(code) => {
                    Box::pin(self.answer_close(code)).await;
                    return Some(End::ClientClosed);
                }
            }
        }
        // Between messages the connection holds no read buffer.
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        None
    }

    /// A server-initiated close: a slow consumer's backlog is dropped (it is why we close);
    /// otherwise what is queued is written, for a short while at most, then the close.
    async fn close(&mut self, reason: CloseReason) -> End {
        let written = reason.code() != SLOW_CONSUMER
            && matches!(
                tokio::time::timeout(CLOSE_LINGER, self.flush()).await,
                Ok(Ok(()))
            );
        if !written {
            self.queue.clear();
        }
        send_close(&mut self.stream, &reason).await;
        End::ServerClosed(reason.code().code())
    }

    /// The client closed: write what is queued, echo the close with its code, and finish.
    async fn answer_close(&mut self, code: Option<u16>) {
        self.outbox.take(&mut self.queue);
        let _ = tokio::time::timeout(CLOSE_LINGER, self.flush()).await;
        let _ = self
            .stream
            .write_all(&frame::close(echoable(code), ""))
            .await;
        let _ = self.stream.shutdown().await;
    }

    async fn frame_error(&mut self, session: &Session, e: FrameError) -> End {
        tracing::debug!(socket_id = %self.socket_id, error = %e, "closing on a bad frame");
        session.send_error(None, &e.to_string());
        self.outbox.take(&mut self.queue);
        let _ = self.flush().await;
        let _ = self
            .stream
            .write_all(&frame::close(e.close_code(), &e.to_string()))
            .await;
        End::ServerClosed(e.close_code())
    }

    /// Writes every queued frame, several per syscall. Waits (boxed, rarely) only when the
    /// socket is full; a client that accepts nothing for `pong_timeout` is given up on.
    async fn flush(&mut self) -> io::Result<()> {
        while !self.queue.is_empty() {
            match self.write_some() {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => advance(&mut self.queue, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let stall = self.connections.write_stall_limit();
                    Box::pin(tokio::time::timeout(stall, self.stream.writable()))
                        .await
                        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                }
                Err(e) => return Err(e),
            }
        }
        if self.queue.capacity() > MAX_IOVECS {
            self.queue = VecDeque::new();
        }
        Ok(())
    }

    /// One non-blocking write of up to [`MAX_IOVECS`] queued frames.
    fn write_some(&self) -> io::Result<usize> {
        if self.queue.len() == 1 {
            return self.stream.try_write(&self.queue[0]);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for (slot, frame) in slices.iter_mut().zip(self.queue.iter()) {
            *slot = IoSlice::new(frame);
            n += 1;
        }
        self.stream.try_write_vectored(&slices[..n])
    }
}

/// Sends `pusher:error` (for Pusher codes) and a close frame with the code, then lets the
/// client close.
async fn close_now(stream: &mut TcpStream, reason: &CloseReason) {
    send_close(stream, reason).await;
    linger(stream).await;
}

/// Sends `pusher:error` with the Pusher code, then a close frame with it.
async fn send_close(stream: &mut TcpStream, reason: &CloseReason) {
    let code = reason.code().code();
    let mut bytes = frame::text(outbound::error(Some(code), &reason.message).as_bytes()).to_vec();
    bytes.extend_from_slice(&frame::close(code, &reason.message));
    let _ = tokio::time::timeout(CLOSE_LINGER, stream.write_all(&bytes)).await;
}

/// Half-closes and drains the socket until the client closes (or a short timeout), so the
/// close frame is not lost to a reset.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 256];
    let deadline = Instant::now() + CLOSE_LINGER;
    loop {
        tokio::select! {
            r = stream.read(&mut sink) => {
                if !matches!(r, Ok(n) if n > 0) {
                    return;
                }
            }
            () = sleep_until(deadline) => return,
        }
    }
}

/// The code to answer a client's close with: its own when RFC 6455 allows sending it,
/// otherwise a normal closure.
fn echoable(code: Option<u16>) -> u16 {
    match code {
        Some(c @ (1000..=1003 | 1007..=1011 | 3000..=4999)) => c,
        _ => ws_close::NORMAL,
    }
}

/// Drops `n` written bytes from the front of the queue.
fn advance(queue: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            queue.pop_front();
        } else {
            front.advance(n);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_are_echoed_only_when_sendable() {
        assert_eq!(echoable(Some(1001)), 1001);
        assert_eq!(echoable(Some(4200)), 4200);
        assert_eq!(echoable(Some(1005)), 1000);
        assert_eq!(echoable(Some(1015)), 1000);
        assert_eq!(echoable(Some(2000)), 1000);
        assert_eq!(echoable(None), 1000);
    }

    #[test]
    fn advance_handles_partial_writes() {
        let mut q: VecDeque<Bytes> = [&b"abc"[..], b"de", b"f"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        advance(&mut q, 4);
        assert_eq!(q, [&b"e"[..], b"f"]);
        advance(&mut q, 2);
        assert!(q.is_empty());
    }
}
