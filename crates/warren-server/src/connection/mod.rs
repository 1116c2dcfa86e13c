//! One WebSocket connection, driven by one task.
//!
//! The task owns the socket and alternates between four things with `select!`: reading client
//! frames, writing whatever the connection's [`Outbox`] holds (all of it in as few `writev`s as
//! possible), the liveness timer (ping after `activity_timeout`, close 4201 when no answer
//! comes), and server shutdown. Protocol decisions are in [`session`]; admission checks in
//! [`admission`].

pub mod admission;
pub mod session;

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};
use warren_protocol::inbound::parse_client_message;
use warren_protocol::{codes::ws_close, outbound, ErrorCode, SocketId};

use crate::outbox::{CloseReason, Outbox};
use crate::server::Shared;
use crate::ws::frame::{self, Decoder, FrameError, Message};
use crate::ws::handshake::{switching_protocols, Upgrade};
use session::Session;

/// How long a closing connection waits for the client to acknowledge before dropping it.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Frames written per `writev` call at most.
const MAX_IOVECS: usize = 64;
/// Initial read buffer: enough for typical Pusher messages; grows only for larger ones.
const READ_BUF: usize = 512;

/// Serves an upgraded connection until it ends. `read_buf` holds any bytes the client sent
/// after its upgrade request.
pub async fn serve(
    mut stream: TcpStream,
    mut read_buf: BytesMut,
    upgrade: Upgrade,
    shared: Arc<Shared>,
) {
    if stream
        .write_all(switching_protocols(&upgrade.accept).as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let (app, _slot) = match admission::admit(shared.apps.as_ref(), &upgrade.path, &upgrade.query) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::debug!(path = %upgrade.path, code = refusal.code.code(), "connection refused");
            let reason = CloseReason {
                code: refusal.code.code(),
                message: refusal.message,
            };
            close_now(&mut stream, Some(&reason)).await;
            return;
        }
    };
    let socket_id = shared.next_socket_id();
    let outbox = Arc::new(Outbox::new(shared.config.max_outbound_queue));
    let mut session = Session::new(shared.clone(), app, socket_id, outbox.clone());
    session.send(&outbound::connection_established(
        socket_id,
        shared.config.activity_timeout,
    ));
    let mut conn = Conn {
        stream,
        read_buf: std::mem::take(&mut read_buf),
        decoder: Decoder::new(shared.config.max_message_size_bytes()),
        outbox,
        queue: VecDeque::new(),
        shared,
        socket_id,
    };
    if conn.read_buf.capacity() < READ_BUF {
        conn.read_buf.reserve(READ_BUF);
    }
    let end = conn.run(&mut session).await;
    session.leave_all().await;
    tracing::debug!(%socket_id, ?end, "connection ended");
}

struct Conn {
    stream: TcpStream,
    read_buf: BytesMut,
    decoder: Decoder,
    outbox: Arc<Outbox>,
    /// Frames taken from the outbox and not yet fully written.
    queue: VecDeque<Bytes>,
    shared: Arc<Shared>,
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

impl Conn {
    async fn run(&mut self, session: &mut Session) -> End {
        let activity = Duration::from_secs(self.shared.config.activity_timeout);
        let pong_wait = Duration::from_secs(self.shared.config.pong_timeout);
        let mut last_seen = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let timer = tokio::time::sleep_until(last_seen + activity);
        tokio::pin!(timer);
        let mut shutdown = self.shared.shutdown.clone();

        loop {
            tokio::select! {
                biased;
                _ = self.outbox.ready() => {
                    let closing = self.outbox.take(&mut self.queue);
                    if self.flush().await.is_err() {
                        return End::WriteFailed;
                    }
                    if let Some(reason) = closing {
                        self.close(&reason).await;
                        return End::ServerClosed(reason.code);
                    }
                }
                read = self.stream.read_buf(&mut self.read_buf) => {
                    match read {
                        Ok(0) | Err(_) => return End::ClientGone,
                        Ok(_) => {}
                    }
                    last_seen = Instant::now();
                    ping_sent = None;
                    if let Some(end) = self.process_input(session).await {
                        return end;
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    match ping_sent {
                        Some(sent) if last_seen < sent => {
                            let reason = CloseReason {
                                code: ErrorCode::PongNotReceived.code(),
                                message: "Pong reply not received in time".into(),
                            };
                            let _ = self.flush().await;
                            self.close(&reason).await;
                            return End::ServerClosed(reason.code);
                        }
                        _ if now >= last_seen + activity => {
                            session.send(outbound::PING);
                            ping_sent = Some(now);
                            timer.as_mut().reset(now + pong_wait);
                        }
                        _ => timer.as_mut().reset(last_seen + activity),
                    }
                }
                _ = shutdown.changed() => {
                    let reason = CloseReason {
                        code: ErrorCode::GenericReconnect.code(),
                        message: "Server is shutting down; reconnect".into(),
                    };
                    self.outbox.take(&mut self.queue);
                    let _ = self.flush().await;
                    self.close(&reason).await;
                    return End::ServerClosed(reason.code);
                }
            }
        }
    }

    /// Handles every complete message in the read buffer.
    async fn process_input(&mut self, session: &mut Session) -> Option<End> {
        loop {
            let msg = match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return Some(self.frame_error(session, e).await),
            };
            match msg {
                Message::Text(text) => match parse_client_message(&text) {
                    Ok(m) => session.handle(m).await,
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
                Message::Close(_) => {
                    self.outbox.take(&mut self.queue);
                    let _ = self.flush().await;
                    let _ = self
                        .stream
                        .write_all(&frame::close(ws_close::NORMAL, ""))
                        .await;
                    let _ = self.stream.shutdown().await;
                    return Some(End::ClientClosed);
                }
            }
        }
        // Give back the memory of a large message once it has been handled.
        if self.read_buf.is_empty() && self.read_buf.capacity() > 4 * READ_BUF {
            self.read_buf = BytesMut::with_capacity(READ_BUF);
        }
        None
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
        linger(&mut self.stream).await;
        End::ServerClosed(e.close_code())
    }

    /// Writes every queued frame, several per syscall.
    async fn flush(&mut self) -> std::io::Result<()> {
        let stall = Duration::from_secs(self.shared.config.pong_timeout);
        while !self.queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = self
                .queue
                .iter()
                .take(MAX_IOVECS)
                .map(|b| IoSlice::new(b))
                .collect();
            // A client that accepts nothing for this long is not coming back.
            let written = tokio::time::timeout(stall, self.stream.write_vectored(&slices))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            drop(slices);
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            advance(&mut self.queue, written);
        }
        if self.queue.capacity() > 4 * MAX_IOVECS {
            self.queue = VecDeque::new();
        }
        Ok(())
    }

    /// Sends `pusher:error` (for Pusher codes) and a close frame with the code, then lets the
    /// client close.
    async fn close(&mut self, reason: &CloseReason) {
        self.queue.clear();
        close_now(&mut self.stream, Some(reason)).await;
    }
}

/// Sends the error and close frames for `reason` and waits briefly for the client to close.
async fn close_now(stream: &mut TcpStream, reason: Option<&CloseReason>) {
    if let Some(r) = reason {
        let mut bytes = Vec::new();
        if r.code >= 4000 {
            bytes.extend_from_slice(&frame::text(
                outbound::error(Some(r.code), &r.message).as_bytes(),
            ));
        }
        bytes.extend_from_slice(&frame::close(r.code, &r.message));
        let _ = tokio::time::timeout(CLOSE_LINGER, stream.write_all(&bytes)).await;
    }
    linger(stream).await;
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
