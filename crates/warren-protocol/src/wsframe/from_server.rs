//! Reading what the server sends, as cheaply as possible per message: frames are parsed in
//! place from one reusable buffer, so a message costs no allocation and no copy (the load
//! generator reads a million of them a second through this).
//!
//! Server frames are unmasked (RFC 6455 section 5.1). Fragmented messages are reassembled in a
//! side buffer allocated only when a server fragments; binary messages and pongs are skipped.

use super::header::{
    parse_header, MAX_HEADER_LEN, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};
use super::FrameError;

/// Initial size of a reader's buffer; grown only for larger frames.
pub const BUF_SIZE: usize = 4096;
/// Largest frame, and largest reassembled message, accepted.
pub const MAX_MESSAGE: usize = 1 << 20;

/// A complete server message worth acting on.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A text message (not checked for UTF-8: readers may only scan it).
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
    /// Bytes the incomplete frame at `start` needs in all (at most a header while unknown).
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
    #[inline]
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
    #[inline]
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete message, `None` when more bytes are needed. Errors are protocol
    /// violations: the connection cannot go on.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        if self.release_fragments {
            self.fragments.clear();
            self.release_fragments = false;
        }
        loop {
            let avail = &self.buf[self.start..self.end];
            let Some(h) = parse_header(avail)? else {
                self.need = MAX_HEADER_LEN;
                return Ok(None);
            };
            if h.mask.is_some() {
                return Err(FrameError::Protocol("masked frame from the server"));
            }
            if h.payload_len > MAX_MESSAGE as u64 {
                return Err(FrameError::TooBig { max: MAX_MESSAGE });
            }
            let total = h.len + h.payload_len as usize;
            if avail.len() < total {
                self.need = total;
                return Ok(None);
            }
            let payload = self.start + h.len..self.start + total;
            self.start += total;
            self.need = 0;
            match h.opcode {
                op @ (OP_TEXT | OP_BINARY) => {
                    if self.fragmented.is_some() {
                        return Err(FrameError::Protocol(
                            "new message before the end of a fragmented one",
                        ));
                    }
                    if h.fin {
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
                        return Err(FrameError::Protocol(
                            "continuation frame outside a fragmented message",
                        ));
                    };
                    if self.fragments.len() + payload.len() > MAX_MESSAGE {
                        return Err(FrameError::TooBig { max: MAX_MESSAGE });
                    }
                    self.fragments.extend_from_slice(&self.buf[payload]);
                    if h.fin {
                        self.fragmented = None;
                        if text {
                            self.release_fragments = true;
                            return Ok(Some(Frame::Text(&self.fragments)));
                        }
                        self.fragments.clear();
                    }
                }
                OP_PING => return Ok(Some(Frame::Ping(&self.buf[payload]))),
                OP_CLOSE => return Ok(Some(Frame::Close(&self.buf[payload]))),
                OP_PONG => {}
                // parse_header lets no other opcode through.
                _ => return Err(FrameError::Protocol("unknown opcode")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wsframe::put_header;

    /// An unmasked server frame with this first byte.
    fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        put_header(&mut f, b0, None, payload.len());
        f.extend_from_slice(payload);
        f
    }

    fn text(payload: &[u8]) -> Vec<u8> {
        server_frame(0x80 | OP_TEXT, payload)
    }

    fn describe_close(payload: &[u8]) -> String {
        match payload {
            [a, b, reason @ ..] => format!(
                "close {} {}",
                u16::from_be_bytes([*a, *b]),
                String::from_utf8_lossy(reason)
            ),
            _ => "close".into(),
        }
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
                        out.push(Err(e.to_string()));
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
            let out: Vec<_> = feed(&mut reader, &stream, chunk)
                .into_iter()
                .map(|r| r.unwrap_or_else(|e| e))
                .collect();
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
                Ok("close 4009 Connection is unauthorized".into())
            ]
        );
        let mut reader = FrameReader::new();
        assert_eq!(
            feed(&mut reader, &server_frame(0x80 | OP_CLOSE, b""), 1),
            [Ok("close".to_string())]
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
        let mut too_big = server_frame(OP_TEXT, &[b'a'; 1000]);
        too_big.extend(server_frame(
            0x80 | OP_CONTINUATION,
            &vec![b'a'; MAX_MESSAGE],
        ));
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
            too_big,
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
}
