//! Reading what clients send: masked, possibly fragmented frames, reassembled into messages
//! within a size limit checked from each frame's header.

use bytes::{Buf, Bytes, BytesMut};

use super::encode::apply_mask;
use super::header::{
    parse_header, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};
use super::FrameError;

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
            let Some(h) = parse_header(buf)? else {
                return Ok(None);
            };
            let Some(mask) = h.mask else {
                return Err(FrameError::Protocol("client frames must be masked"));
            };
            match h.opcode {
                OP_TEXT | OP_BINARY if self.fragmented.is_some() => {
                    return Err(FrameError::Protocol(
                        "new message before the previous one ended",
                    ))
                }
                OP_CONTINUATION if self.fragmented.is_none() => {
                    return Err(FrameError::Protocol("continuation without a message"))
                }
                _ => {}
            }
            let so_far = self.fragmented.as_ref().map_or(0, |(_, b)| b.len()) as u64;
            if !h.is_control() && so_far.saturating_add(h.payload_len) > self.max_message as u64 {
                return Err(FrameError::TooBig {
                    max: self.max_message,
                });
            }
            // Bounded by max_message above (control frames by 125), so it fits a usize.
            let payload_len = h.payload_len as usize;
            if buf.len() < h.len + payload_len {
                // Nothing is reserved for what the header declares: the buffer grows with the
                // bytes that actually arrive, so a header alone costs no memory.
                return Ok(None);
            }
            buf.advance(h.len);
            let mut payload = buf.split_to(payload_len);
            apply_mask(&mut payload, mask);

            match h.opcode {
                OP_PING => return Ok(Some(Message::Ping(payload.freeze()))),
                OP_PONG => return Ok(Some(Message::Pong)),
                OP_CLOSE => return close_message(&payload).map(Some),
                OP_TEXT | OP_BINARY if h.fin => return finish(h.opcode, payload).map(Some),
                OP_TEXT | OP_BINARY => self.fragmented = Some((h.opcode, payload)),
                _ => {
                    // OP_CONTINUATION: checked above that a message is in progress.
                    let Some((first_op, mut so_far)) = self.fragmented.take() else {
                        return Err(FrameError::Protocol("continuation without a message"));
                    };
                    so_far.unsplit(payload);
                    if h.fin {
                        return finish(first_op, so_far).map(Some);
                    }
                    self.fragmented = Some((first_op, so_far));
                }
            }
        }
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
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(FrameError::Protocol("close frame with a one-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !is_sendable_close_code(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(FrameError::InvalidUtf8);
            }
            Ok(Message::Close(Some(code)))
        }
    }
}

/// Close codes an endpoint may put in a close frame (RFC 6455 section 7.4: the defined codes
/// except 1004-1006 and 1015, which must never be sent; 1012-1014 registered since with IANA;
/// 3000-4999 for libraries and applications). Anything else is a protocol error.
pub fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;
    use crate::wsframe::{encode_masked, put_header};

    /// A masked client frame the way a browser builds it, FIN as given.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        if fin {
            let mut out = Vec::new();
            encode_masked(opcode, payload, mask, &mut out);
            return out;
        }
        let mut out = Vec::new();
        put_header(&mut out, opcode, Some(mask), payload.len());
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], mask);
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
            0x81u8, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
        ];
        assert_eq!(
            decode_all(&huge_len, 1000),
            Err(FrameError::TooBig { max: 1000 })
        );
        assert_eq!(FrameError::TooBig { max: 1 }.close_code(), 1009);
        // RFC 6455 section 5.2: a 64-bit length must have its top bit clear; one that does not
        // is a protocol error (1002), not a message that is too big.
        let top_bit = [0x81u8, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        let refused = decode_all(&top_bit, 1000);
        assert!(
            matches!(refused, Err(FrameError::Protocol(_))),
            "{refused:?}"
        );
        assert_eq!(refused.err().map(|e| e.close_code()), Some(1002));
    }

    #[test]
    fn a_header_alone_reserves_nothing() {
        let frame = client_frame(true, OP_TEXT, &[b'a'; 60_000]);
        let mut buf = BytesMut::from(&frame[..8]);
        let before = buf.capacity();
        let mut d = Decoder::new(64 * 1024);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(
            buf.capacity(),
            before,
            "the declared 60,000 bytes are not reserved"
        );
        buf.extend_from_slice(&frame[8..]);
        assert_eq!(
            d.decode(&mut buf)
                .map(|m| m.map(|m| matches!(m, Message::Text(_)))),
            Ok(Some(true))
        );
    }

    #[test]
    fn close_codes_follow_rfc6455_section_7_4() {
        // (code, accepted): the defined codes, the never-sent ones, the IANA-registered
        // 1012-1014, the reserved ranges and the application range.
        let table: &[(u16, bool)] = &[
            (0, false),
            (999, false),
            (1000, true),
            (1001, true),
            (1002, true),
            (1003, true),
            (1004, false),
            (1005, false),
            (1006, false),
            (1007, true),
            (1011, true),
            (1012, true),
            (1014, true),
            (1015, false),
            (1016, false),
            (2999, false),
            (3000, true),
            (4999, true),
            (5000, false),
            (65535, false),
        ];
        for &(code, accepted) in table {
            let frame = client_frame(true, OP_CLOSE, &code.to_be_bytes());
            let got = decode_all(&frame, 100);
            if accepted {
                assert_eq!(got, Ok(vec![Message::Close(Some(code))]), "code {code}");
            } else {
                assert!(
                    matches!(got, Err(FrameError::Protocol(_))),
                    "code {code}: {got:?}"
                );
            }
        }
    }
}
