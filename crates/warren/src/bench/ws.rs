//! The receivers' WebSocket client, kept to what the bench needs and as cheap as possible
//! per message: the HTTP/1.1 upgrade by hand over the raw TCP stream, then server frames
//! parsed in place from one reusable per-connection buffer (no allocation and no copy per
//! message), and masked client frames for the few messages the bench sends.
//!
//! The framing itself is the project's one codec, `warren_protocol::wsframe`, which the server
//! uses too: its `FrameReader` is the allocation-free reader this bench needs (the header
//! parsing it shares with the server's decoder is inlined into it), `encode_masked` builds
//! the client frames. This module only adds the socket: the upgrade, reads and writes.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
pub use warren_protocol::wsframe::{
    encode_masked as encode_frame, Frame, FrameReader, OP_PONG, OP_TEXT,
};

/// Largest HTTP response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A cheap, well-mixed 64-bit value from a seed (splitmix64).
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `Sec-WebSocket-Key`: 16 bytes derived from `seed`, in base64.
pub fn websocket_key(seed: u64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&mix(seed).to_le_bytes());
    bytes[8..].copy_from_slice(&mix(!seed).to_le_bytes());
    base64(&bytes)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// One client connection after the upgrade.
pub struct WsClient {
    pub stream: TcpStream,
    pub reader: FrameReader,
    /// The mask of every frame this connection sends.
    pub mask: [u8; 4],
    /// Frames waiting to be sent (see `flush`).
    pub out: Vec<u8>,
}

impl WsClient {
    /// The HTTP/1.1 upgrade to `url` (`ws://host[:port]/path?query`) over `stream`. Bytes
    /// the server sent after the response head are kept as the start of the frame stream.
    pub async fn handshake(mut stream: TcpStream, url: &str, seed: u64) -> Result<Self, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            websocket_key(seed)
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut reader = FrameReader::new();
        loop {
            if let Some(pos) = find(reader.buffered(), b"\r\n\r\n") {
                let head = &reader.buffered()[..pos];
                let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
                let status_line = status_line.strip_suffix(b"\r").unwrap_or(status_line);
                let mut parts = status_line.split(|&b| b == b' ');
                let version_ok = parts.next().is_some_and(|v| v.starts_with(b"HTTP/1."));
                if !version_ok || parts.next() != Some(b"101") {
                    return Err(format!(
                        "HTTP error: {}",
                        String::from_utf8_lossy(status_line)
                    ));
                }
                reader.consume(pos + 4);
                let mix = mix(seed ^ 0x6d61_736b).to_le_bytes();
                return Ok(Self {
                    stream,
                    reader,
                    mask: [mix[0], mix[1], mix[2], mix[3]],
                    out: Vec::new(),
                });
            }
            if reader.buffered().len() >= MAX_HEAD {
                return Err(format!("response head over {MAX_HEAD} bytes"));
            }
            let n = stream
                .read(reader.spare())
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed during the handshake".into());
            }
            reader.filled(n);
        }
    }

    /// Queues a masked frame.
    pub fn queue(&mut self, opcode: u8, payload: &[u8]) {
        encode_frame(opcode, payload, self.mask, &mut self.out);
    }

    /// Sends the queued frames.
    pub async fn flush(&mut self) -> io::Result<()> {
        let result = self.stream.write_all(&self.out).await;
        self.out.clear();
        result
    }

    /// Reads what the socket has into the buffer: the number of bytes read, 0 at the end of
    /// the stream. A read shorter than the free space tells tokio the socket is drained, so
    /// the next poll waits for readiness without another system call.
    pub fn poll_read_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(self.reader.spare());
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        self.reader.filled(n);
        Poll::Ready(Ok(n))
    }

    /// Reads once more; the end of the stream is an error.
    pub async fn read_some(&mut self) -> Result<(), String> {
        match std::future::poll_fn(|cx| self.poll_read_some(cx)).await {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The next text message (copied: for the opening exchange only), answering pings on
    /// the way.
    pub async fn next_text(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match self.reader.next().map_err(|e| e.to_string())? {
                Some(Frame::Text(text)) => return Ok(text.to_vec()),
                Some(Frame::Ping(payload)) => {
                    encode_frame(OP_PONG, payload, self.mask, &mut self.out);
                    self.flush().await.map_err(|e| e.to_string())?;
                }
                Some(Frame::Close(payload)) => return Err(describe_close(payload)),
                None => self.read_some().await?,
            }
        }
    }
}

/// "closed by the server[: code reason]".
pub fn describe_close(payload: &[u8]) -> String {
    match payload {
        [a, b, reason @ ..] => format!(
            "closed by the server: {} {}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => "closed by the server".into(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Frames for tests, built and read with the shared codec: what a server sends, and what a
/// client sent.
#[cfg(test)]
pub mod testing {
    use warren_protocol::wsframe::{apply_mask, parse_header, put_header};

    /// An unmasked server frame with this first byte.
    pub fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        put_header(&mut f, b0, None, payload.len());
        f.extend_from_slice(payload);
        f
    }

    /// Decodes one masked client frame: opcode and unmasked payload, and its length.
    pub fn client_frame(f: &[u8]) -> (u8, Vec<u8>, usize) {
        let h = match parse_header(f) {
            Ok(Some(h)) => h,
            other => panic!("a complete frame header: {other:?}"),
        };
        assert!(h.fin, "client frames are whole");
        let mask = h.mask.expect("client frames are masked");
        let end = h.len + h.payload_len as usize;
        let mut payload = f[h.len..end].to_vec();
        apply_mask(&mut payload, mask);
        (h.opcode, payload, end)
    }
}

#[cfg(test)]
mod tests {
    use warren_protocol::wsframe::OP_PING;

    use super::testing::*;
    use super::*;

    fn text(payload: &[u8]) -> Vec<u8> {
        server_frame(0x80 | OP_TEXT, payload)
    }

    #[test]
    fn close_reasons() {
        let mut payload = 4009u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"Connection is unauthorized");
        assert_eq!(
            describe_close(&payload),
            "closed by the server: 4009 Connection is unauthorized"
        );
        assert_eq!(describe_close(b""), "closed by the server");
    }

    #[test]
    fn keys() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        let (a, b) = (websocket_key(1), websocket_key(2));
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }

    /// The upgrade keeps what follows the response head; pings (WebSocket and Pusher) are
    /// answered with masked frames.
    #[tokio::test]
    async fn handshake_and_pings_over_tcp() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accepts");
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).await.expect("request");
                request.push(byte[0]);
            }
            let request = String::from_utf8(request).expect("ASCII");
            // The head and the first frames in one write.
            let mut reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                              Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
                .to_vec();
            reply.extend(text(b"hello"));
            reply.extend(server_frame(0x80 | OP_PING, b"ws-ping"));
            reply.extend(text(b"second"));
            s.write_all(&reply).await.expect("writes");
            let mut answer = [0u8; 64];
            let n = s.read(&mut answer).await.expect("reads the pong");
            (request, answer[..n].to_vec())
        });
        let stream = TcpStream::connect(addr).await.expect("connects");
        let url = format!("ws://{addr}/app/key?protocol=7");
        let mut client = WsClient::handshake(stream, &url, 7)
            .await
            .expect("upgrades");
        assert_eq!(client.next_text().await.expect("text"), b"hello");
        assert_eq!(client.next_text().await.expect("text"), b"second");
        let (request, pong) = server.await.expect("server");
        assert!(
            request.starts_with("GET /app/key?protocol=7 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nHost: {addr}\r\n")),
            "{request}"
        );
        assert!(request.contains(&format!("Sec-WebSocket-Key: {}\r\n", websocket_key(7))));
        assert!(request.contains("Sec-WebSocket-Version: 13\r\n"));
        let (op, payload, used) = client_frame(&pong);
        assert_eq!(
            (op, payload.as_slice(), used),
            (OP_PONG, &b"ws-ping"[..], pong.len())
        );
    }

    #[tokio::test]
    async fn refused_upgrades() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accepts");
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
            let mut sink = [0u8; 1024];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let stream = TcpStream::connect(addr).await.expect("connects");
        let err = WsClient::handshake(stream, &format!("ws://{addr}/app/k"), 1)
            .await
            .err()
            .expect("refused");
        assert_eq!(err, "HTTP error: HTTP/1.1 404 Not Found");
    }
}
