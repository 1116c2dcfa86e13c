//! Encoding server frames and decoding (masked, possibly fragmented) client frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use warren_protocol::codes::ws_close;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Longest header a server frame can have: 2 bytes plus a 64-bit length.
const MAX_HEADER: usize = 10;

fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(MAX_HEADER + payload.len());
    put_header(&mut out, opcode, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// A complete, unmasked text frame: what every subscriber's socket receives, byte for byte.
pub fn text(payload: &[u8]) -> Bytes {
    encode(OP_TEXT, payload)
}

/// The answer to a client's ping frame.
pub fn pong(payload: &[u8]) -> Bytes {
    encode(OP_PONG, payload)
}

/// A close frame with a status code and a reason (cut to the 123 bytes a control frame allows).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OP_CLOSE, &payload)
}

/// The payload of a frame produced by [`text`] (used to relay a frame to other nodes).
pub fn payload_of(frame: &Bytes) -> Bytes {
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return Bytes::new(),
    };
    frame.slice(header.min(frame.len())..)
}

/// A complete message from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The client's close frame: its code (if any) is echoed back.
    Close(Option<u16>),
}

/// A violation of RFC 6455 or of our size limit; the connection is closed with `close_code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("message larger than the {max} bytes allowed")]
    TooBig { max: usize },
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => ws_close::PROTOCOL_ERROR,
            FrameError::TooBig { .. } => ws_close::MESSAGE_TOO_BIG,
            FrameError::InvalidUtf8 => ws_close::INVALID_PAYLOAD,
        }
    }
}

/// Reassembles client messages from the bytes read off a socket.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// A fragmented data message in progress: its opcode and the payload so far.
    fragmented: Option<(u8, BytesMut)>,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            fragmented: None,
        }
    }

    /// Decodes the next complete message from `buf`, consuming its bytes. `Ok(None)` means
    /// more bytes are needed; a frame that would exceed the limit is refused as soon as its
    /// header is read, before its payload is buffered.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        loop {
            let Some((fin, opcode, header_len, payload_len)) = self.parse_header(buf)? else {
                return Ok(None);
            };
            if buf.len() < header_len + payload_len {
                buf.reserve(header_len + payload_len - buf.len());
                return Ok(None);
            }
            let mask = [
                buf[header_len - 4],
                buf[header_len - 3],
                buf[header_len - 2],
                buf[header_len - 1],
            ];
            buf.advance(header_len);
            let mut payload = buf.split_to(payload_len);
            unmask(&mut payload, mask);

            match opcode {
                OP_PING => return Ok(Some(Message::Ping(payload.freeze()))),
                OP_PONG => return Ok(Some(Message::Pong)),
                OP_CLOSE => return close_message(&payload).map(Some),
                OP_TEXT | OP_BINARY if fin => return finish(opcode, payload).map(Some),
                OP_TEXT | OP_BINARY => self.fragmented = Some((opcode, payload)),
                _ => {
                    // OP_CONTINUATION: parse_header has checked a message is in progress.
                    let Some((first_op, mut so_far)) = self.fragmented.take() else {
                        return Err(FrameError::Protocol("continuation without a message"));
                    };
                    so_far.unsplit(payload);
                    if fin {
                        return finish(first_op, so_far).map(Some);
                    }
                    self.fragmented = Some((first_op, so_far));
                }
            }
        }
    }

    /// Reads a frame header; `None` when incomplete. Returns (fin, opcode, header length,
    /// payload length).
    fn parse_header(&self, buf: &[u8]) -> Result<Option<(bool, u8, usize, usize)>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(FrameError::Protocol(
                "reserved bits set without an extension",
            ));
        }
        let opcode = b0 & 0x0f;
        let is_control = opcode & 0x8 != 0;
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {}
            OP_TEXT | OP_BINARY if self.fragmented.is_some() => {
                return Err(FrameError::Protocol(
                    "new message before the previous one ended",
                ))
            }
            OP_TEXT | OP_BINARY => {}
            OP_CONTINUATION if self.fragmented.is_none() => {
                return Err(FrameError::Protocol("continuation without a message"))
            }
            OP_CONTINUATION => {}
            _ => return Err(FrameError::Protocol("unknown opcode")),
        }
        if b1 & 0x80 == 0 {
            return Err(FrameError::Protocol("client frames must be masked"));
        }
        let (len, len_bytes) = match b1 & 0x7f {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([buf[2], buf[3]]) as u64, 2)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 8)
            }
            n => (n as u64, 0),
        };
        if is_control && (!fin || len > 125) {
            return Err(FrameError::Protocol(
                "control frames must be whole and short",
            ));
        }
        let so_far = self.fragmented.as_ref().map_or(0, |(_, b)| b.len()) as u64;
        if !is_control && so_far.saturating_add(len) > self.max_message as u64 {
            return Err(FrameError::TooBig {
                max: self.max_message,
            });
        }
        let header_len = 2 + len_bytes + 4;
        if buf.len() < header_len {
            return Ok(None);
        }
        // Bounded by max_message above (control frames by 125), so it fits a usize.
        Ok(Some((fin, opcode, header_len, len as usize)))
    }
}

fn finish(opcode: u8, payload: BytesMut) -> Result<Message, FrameError> {
    if opcode == OP_TEXT {
        if std::str::from_utf8(&payload).is_err() {
            return Err(FrameError::InvalidUtf8);
        }
        Ok(Message::Text(payload.freeze()))
    } else {
        Ok(Message::Binary(payload.freeze()))
    }
}

fn close_message(payload: &[u8]) -> Result<Message, FrameError> {
    match payload.len() {
        0 => Ok(Message::Close(None)),
        1 => Err(FrameError::Protocol("close frame with a one-byte payload")),
        _ => {
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(FrameError::InvalidUtf8);
            }
            Ok(Message::Close(Some(u16::from_be_bytes([
                payload[0], payload[1],
            ]))))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    // Word-at-a-time XOR: client-to-server traffic is small, but client events can be 10 KB.
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(b) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a masked client frame the way a browser would.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Message>, FrameError> {
        let mut d = Decoder::new(max);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn server_frames_have_minimal_headers() {
        assert_eq!(&text(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let mid = text(&[b'x'; 200]);
        assert_eq!(&mid[..4], &[0x81, 126, 0, 200]);
        let big = text(&vec![b'x'; 70_000]);
        assert_eq!(big[1], 127);
        assert_eq!(big.len(), 70_010);
        assert_eq!(payload_of(&mid).len(), 200);
        assert_eq!(payload_of(&big).len(), 70_000);
        assert_eq!(&payload_of(&text(b"hi"))[..], b"hi");
        let c = close(4201, "Pong reply not received");
        assert_eq!(&c[..4], &[0x88, 25, 0x10, 0x69]);
        assert!(close(4000, &"é".repeat(100)).len() <= 127);
    }

    #[test]
    fn decodes_masked_text_of_every_length_class() {
        for len in [0usize, 1, 7, 8, 125, 126, 65_535, 65_536] {
            let payload = "a".repeat(len);
            let msgs =
                decode_all(&client_frame(true, OP_TEXT, payload.as_bytes()), 1 << 20).unwrap();
            assert_eq!(msgs, vec![Message::Text(Bytes::from(payload))], "len {len}");
        }
    }

    #[test]
    fn byte_by_byte_arrival() {
        let frame = client_frame(true, OP_TEXT, b"{\"event\":\"pusher:ping\"}");
        let mut d = Decoder::new(1024);
        let mut buf = BytesMut::new();
        let mut got = None;
        for (i, b) in frame.iter().enumerate() {
            buf.put_u8(*b);
            let r = d.decode(&mut buf).unwrap();
            if i + 1 < frame.len() {
                assert!(r.is_none());
            } else {
                got = r;
            }
        }
        assert_eq!(
            got,
            Some(Message::Text(Bytes::from_static(
                b"{\"event\":\"pusher:ping\"}"
            )))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn fragments_with_interleaved_control_frames() {
        let mut bytes = client_frame(false, OP_TEXT, b"hel");
        bytes.extend(client_frame(true, OP_PING, b"p"));
        bytes.extend(client_frame(false, OP_CONTINUATION, b"lo "));
        bytes.extend(client_frame(true, OP_CONTINUATION, b"world"));
        bytes.extend(client_frame(true, OP_BINARY, &[1, 2]));
        bytes.extend(client_frame(true, OP_CLOSE, &[0x03, 0xe8]));
        assert_eq!(
            decode_all(&bytes, 1024).unwrap(),
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Text(Bytes::from_static(b"hello world")),
                Message::Binary(Bytes::from_static(&[1, 2])),
                Message::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn protocol_violations() {
        let unmasked = [0x81u8, 0x01, b'a'];
        assert!(matches!(
            decode_all(&unmasked, 100),
            Err(FrameError::Protocol(_))
        ));
        let mut rsv = client_frame(true, OP_TEXT, b"a");
        rsv[0] |= 0x40;
        assert!(matches!(
            decode_all(&rsv, 100),
            Err(FrameError::Protocol(_))
        ));
        let orphan = client_frame(true, OP_CONTINUATION, b"a");
        assert!(matches!(
            decode_all(&orphan, 100),
            Err(FrameError::Protocol(_))
        ));
        let mut interleaved = client_frame(false, OP_TEXT, b"a");
        interleaved.extend(client_frame(true, OP_TEXT, b"b"));
        assert!(matches!(
            decode_all(&interleaved, 100),
            Err(FrameError::Protocol(_))
        ));
        let long_ping = client_frame(true, OP_PING, &[0; 126]);
        assert!(matches!(
            decode_all(&long_ping, 1000),
            Err(FrameError::Protocol(_))
        ));
        let fragmented_ping = client_frame(false, OP_PING, b"");
        assert!(matches!(
            decode_all(&fragmented_ping, 100),
            Err(FrameError::Protocol(_))
        ));
        let bad_op = client_frame(true, 0x3, b"");
        assert!(matches!(
            decode_all(&bad_op, 100),
            Err(FrameError::Protocol(_))
        ));
        let short_close = client_frame(true, OP_CLOSE, &[3]);
        assert!(matches!(
            decode_all(&short_close, 100),
            Err(FrameError::Protocol(_))
        ));
        let bad_utf8 = client_frame(true, OP_TEXT, &[0xff, 0xfe]);
        assert_eq!(decode_all(&bad_utf8, 100), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn oversize_is_refused_from_the_header_alone() {
        // Only the header of a 1 MB frame has arrived: refused without waiting for the payload.
        let header = &client_frame(true, OP_TEXT, &vec![b'a'; 1_000_000])[..14];
        assert_eq!(
            decode_all(header, 1000),
            Err(FrameError::TooBig { max: 1000 })
        );
        let mut fragments = client_frame(false, OP_TEXT, &[b'a'; 600]);
        fragments.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 600]));
        assert_eq!(
            decode_all(&fragments, 1000),
            Err(FrameError::TooBig { max: 1000 })
        );
        let huge_len = [
            0x81u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
        ];
        assert_eq!(
            decode_all(&huge_len, 1000),
            Err(FrameError::TooBig { max: 1000 })
        );
        assert_eq!(FrameError::TooBig { max: 1 }.close_code(), 1009);
    }
}
