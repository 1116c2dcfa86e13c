//! The receivers' WebSocket client, kept to what the bench needs and as cheap as possible
//! per message: the HTTP/1.1 upgrade by hand over the raw TCP stream, then server frames
//! parsed in place from one reusable per-connection buffer (no allocation and no copy per
//! message), and masked client frames for the few messages the bench sends.
//!
//! Server frames are unmasked (RFC 6455 section 5.1) and, no extension being offered, have
//! no reserved bits set. Fragmented messages are reassembled (in a side buffer allocated only
//! when a server fragments); binary messages and pongs are skipped.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Initial size of a connection's read buffer; grown only for larger frames.
pub const BUF_SIZE: usize = 4096;
/// Largest frame, and largest reassembled message, accepted.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Largest HTTP response head accepted.
const MAX_HEAD: usize = 16 * 1024;

const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A complete server message the receivers act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A text message (not checked for UTF-8: the bench only scans it).
    Text(&'a [u8]),
    /// A ping, to be answered with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A close frame's payload (status code and reason, possibly empty).
    Close(&'a [u8]),
}

/// Server frames read from a stream: `spare` + `filled` to add bytes, `next` to take
/// complete messages out.
pub struct FrameReader {
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes the incomplete frame at `start` needs in all (0: unknown yet).
    need: usize,
    /// The message being reassembled from fragments.
    fragments: Vec<u8>,
    /// While reassembling: whether the message is text.
    fragmented: Option<bool>,
    /// `fragments` was handed out by the last `next` and must be cleared.
    release_fragments: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    pub fn new() -> Self {
        Self {
            buf: vec![0; BUF_SIZE],
            start: 0,
            end: 0,
            need: 0,
            fragments: Vec::new(),
            fragmented: None,
            release_fragments: false,
        }
    }

    /// Bytes received and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Consumes `n` buffered bytes (at most all of them).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Free space to read into (never empty): the buffer is compacted when the incomplete
    /// frame would not fit where it is, and grown when it would not fit at all.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > BUF_SIZE && self.need <= BUF_SIZE {
                // Back to the usual size after a large frame.
                self.buf.truncate(BUF_SIZE);
                self.buf.shrink_to_fit();
            }
        } else if self.start > 0
            && (self.end == self.buf.len() || self.start + self.need > self.buf.len())
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.need > self.buf.len() {
            self.buf.resize(self.need, 0);
        } else if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() + BUF_SIZE, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into `spare()`.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete message, `None` when more bytes are needed. Errors are protocol
    /// violations: the connection cannot go on.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Frame<'_>>, String> {
        if self.release_fragments {
            self.fragments.clear();
            self.release_fragments = false;
        }
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() < 2 {
                self.need = 2;
                return Ok(None);
            }
            let (b0, b1) = (avail[0], avail[1]);
            if b0 & 0x70 != 0 {
                return Err("frame with reserved bits set (no extension was negotiated)".into());
            }
            if b1 & 0x80 != 0 {
                return Err("masked frame from the server".into());
            }
            let (header, len) = match b1 & 0x7F {
                126 => match avail.get(2..4) {
                    Some(&[a, b]) => (4, u64::from(u16::from_be_bytes([a, b]))),
                    _ => {
                        self.need = 4;
                        return Ok(None);
                    }
                },
                127 => match avail.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                    Some(bytes) => (10, u64::from_be_bytes(bytes)),
                    None => {
                        self.need = 10;
                        return Ok(None);
                    }
                },
                n => (2, u64::from(n)),
            };
            if len > MAX_MESSAGE as u64 {
                return Err(format!("frame of {len} bytes (over {MAX_MESSAGE})"));
            }
            let total = header + len as usize;
            if avail.len() < total {
                self.need = total;
                return Ok(None);
            }
            let payload = self.start + header..self.start + total;
            self.start += total;
            self.need = 0;
            let fin = b0 & 0x80 != 0;
            match b0 & 0x0F {
                op @ (OP_TEXT | OP_BINARY) => {
                    if self.fragmented.is_some() {
                        return Err("new message before the end of a fragmented one".into());
                    }
                    if fin {
                        if op == OP_TEXT {
                            return Ok(Some(Frame::Text(&self.buf[payload])));
                        }
                        continue;
                    }
                    self.fragmented = Some(op == OP_TEXT);
                    self.fragments.clear();
                    self.fragments.extend_from_slice(&self.buf[payload]);
                }
                OP_CONTINUATION => {
                    let Some(text) = self.fragmented else {
                        return Err("continuation frame outside a fragmented message".into());
                    };
                    if self.fragments.len() + payload.len() > MAX_MESSAGE {
                        return Err(format!("message over {MAX_MESSAGE} bytes"));
                    }
                    self.fragments.extend_from_slice(&self.buf[payload]);
                    if fin {
                        self.fragmented = None;
                        if text {
                            self.release_fragments = true;
                            return Ok(Some(Frame::Text(&self.fragments)));
                        }
                        self.fragments.clear();
                    }
                }
                op @ (OP_PING | OP_PONG | OP_CLOSE) => {
                    if !fin || len > 125 {
                        return Err("fragmented or oversized control frame".into());
                    }
                    match op {
                        OP_PING => return Ok(Some(Frame::Ping(&self.buf[payload]))),
                        OP_CLOSE => return Ok(Some(Frame::Close(&self.buf[payload]))),
                        _ => {}
                    }
                }
                op => return Err(format!("unknown opcode {op}")),
            }
        }
    }
}

/// Appends a masked client frame (FIN set) to `out`.
pub fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

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
            match self.reader.next()? {
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

/// Frame codecs for tests: what a server sends, and what a client sent.
#[cfg(test)]
pub mod testing {
    /// An unmasked server frame.
    pub fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xFFFF => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    /// Decodes one masked client frame: opcode and unmasked payload, and its length.
    pub fn client_frame(f: &[u8]) -> (u8, Vec<u8>, usize) {
        assert_eq!(f[0] & 0xF0, 0x80, "FIN, no reserved bits");
        assert_eq!(f[1] & 0x80, 0x80, "client frames are masked");
        let (header, len) = match f[1] & 0x7F {
            126 => (4, u16::from_be_bytes([f[2], f[3]]) as usize),
            127 => (
                10,
                u64::from_be_bytes(f[2..10].try_into().expect("8")) as usize,
            ),
            n => (2, n as usize),
        };
        let mask = &f[header..header + 4];
        let payload = f[header + 4..header + 4 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        (f[0] & 0x0F, payload, header + 4 + len)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn text(payload: &[u8]) -> Vec<u8> {
        server_frame(0x80 | OP_TEXT, payload)
    }

    /// Feeds `bytes` in reads of at most `chunk` bytes; collects what comes out.
    fn feed(reader: &mut FrameReader, bytes: &[u8], chunk: usize) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let spare = reader.spare();
            assert!(!spare.is_empty());
            let n = spare.len().min(chunk).min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            reader.filled(n);
            rest = &rest[n..];
            loop {
                match reader.next() {
                    Ok(Some(Frame::Text(t))) => out.push(Ok(format!("text {}", t.len()))),
                    Ok(Some(Frame::Ping(p))) => {
                        out.push(Ok(format!("ping {}", String::from_utf8_lossy(p))))
                    }
                    Ok(Some(Frame::Close(p))) => out.push(Ok(describe_close(p))),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn several_frames_in_one_read_and_split_frames() {
        let mut stream = Vec::new();
        stream.extend(text(b"one"));
        stream.extend(text(&[b'x'; 125]));
        stream.extend(server_frame(0x80 | OP_PING, b"hi"));
        stream.extend(server_frame(0x80 | OP_PONG, b"ignored"));
        stream.extend(server_frame(0x80 | OP_BINARY, b"skipped"));
        stream.extend(text(&[b'y'; 126])); // 16-bit length
        stream.extend(text(&[b'z'; 65_535])); // largest 16-bit length
        stream.extend(text(&[b'w'; 70_000])); // 64-bit length, larger than the buffer
        stream.extend(text(b""));
        stream.extend(text(b"after"));
        let expected: Vec<Result<String, String>> = [
            "text 3",
            "text 125",
            "ping hi",
            "text 126",
            "text 65535",
            "text 70000",
            "text 0",
            "text 5",
        ]
        .iter()
        .map(|s| Ok(s.to_string()))
        .collect();
        // All at once, and in pieces of every awkward size.
        for chunk in [usize::MAX, 1, 2, 3, 7, 100, 4095, 4096, 5000] {
            let mut reader = FrameReader::new();
            assert_eq!(feed(&mut reader, &stream, chunk), expected, "chunk {chunk}");
            assert!(reader.buffered().is_empty());
            // Back to the usual buffer size once the large frames are consumed.
            reader.spare();
            assert_eq!(reader.buf.len(), BUF_SIZE, "chunk {chunk}");
        }
    }

    #[test]
    fn many_small_frames_stay_in_the_buffer() {
        let mut stream = Vec::new();
        for i in 0..1000 {
            stream.extend(text(format!("message {i}").as_bytes()));
        }
        let mut reader = FrameReader::new();
        let out = feed(&mut reader, &stream, 1500);
        assert_eq!(out.len(), 1000);
        assert_eq!(reader.buf.len(), BUF_SIZE);
    }

    #[test]
    fn fragmented_messages_are_reassembled() {
        let mut stream = Vec::new();
        stream.extend(server_frame(OP_TEXT, b"abc"));
        stream.extend(server_frame(0x80 | OP_PING, b"p")); // control frames may interleave
        stream.extend(server_frame(OP_CONTINUATION, b"def"));
        stream.extend(server_frame(0x80 | OP_CONTINUATION, b"gh"));
        stream.extend(server_frame(OP_BINARY, b"bin"));
        stream.extend(server_frame(0x80 | OP_CONTINUATION, b"ary"));
        stream.extend(text(b"next"));
        for chunk in [usize::MAX, 1, 5] {
            let mut reader = FrameReader::new();
            let out = feed(&mut reader, &stream, chunk);
            let out: Vec<_> = out.into_iter().map(Result::unwrap).collect();
            assert_eq!(out, ["ping p", "text 8", "text 4"], "chunk {chunk}");
            assert!(reader.fragments.is_empty());
        }
    }

    #[test]
    fn close_frames() {
        let mut payload = 4009u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"Connection is unauthorized");
        let mut stream = text(b"last");
        stream.extend(server_frame(0x80 | OP_CLOSE, &payload));
        let mut reader = FrameReader::new();
        assert_eq!(
            feed(&mut reader, &stream, 3),
            [
                Ok("text 4".to_string()),
                Ok("closed by the server: 4009 Connection is unauthorized".into())
            ]
        );
        let mut reader = FrameReader::new();
        assert_eq!(
            feed(&mut reader, &server_frame(0x80 | OP_CLOSE, b""), 1),
            [Ok("closed by the server".to_string())]
        );
    }

    #[test]
    fn protocol_violations() {
        let masked = [0x81, 0x81, 1, 2, 3, 4, b'a' ^ 1];
        let reserved = text(b"x")
            .iter()
            .enumerate()
            .map(|(i, &b)| if i == 0 { b | 0x40 } else { b })
            .collect::<Vec<_>>();
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        let big_ping = server_frame(0x80 | OP_PING, &[0; 126]);
        let split_ping = server_frame(OP_PING, b"");
        let stray = server_frame(0x80 | OP_CONTINUATION, b"x");
        let mut nested = server_frame(OP_TEXT, b"a");
        nested.extend(text(b"b"));
        let unknown = server_frame(0x83, b"");
        for bad in [
            masked.to_vec(),
            reserved,
            huge,
            big_ping,
            split_ping,
            stray,
            nested,
            unknown,
        ] {
            let mut reader = FrameReader::new();
            let out = feed(&mut reader, &bad, usize::MAX);
            assert!(matches!(out.last(), Some(Err(_))), "{bad:?}: {out:?}");
        }
    }

    #[test]
    fn client_frames_are_masked() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in [0, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_frame(OP_TEXT, &payload, mask, &mut out);
            let (op, decoded, used) = client_frame(&out);
            assert_eq!((op, used), (OP_TEXT, out.len()));
            assert_eq!(decoded, payload, "length {len}");
        }
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
