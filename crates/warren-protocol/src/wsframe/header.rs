//! The frame header, read the same way by both decoders.

use super::FrameError;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The longest header: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame header as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    /// The masking key: every client frame has one, no server frame does.
    pub mask: Option<[u8; 4]>,
    /// Bytes of the header itself.
    pub len: usize,
    pub payload_len: u64,
}

impl Header {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Reads the header at the start of `buf`; `Ok(None)` while it is incomplete. Refuses what
/// no peer may send either way: reserved bits (no extension is negotiated), unknown opcodes,
/// and control frames that are fragmented or longer than 125 bytes.
#[inline(always)]
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    // Data frames without reserved bits pass one test; the rest is checked aside.
    if b0 & 0x70 != 0 || opcode > OP_BINARY {
        check_unusual(b0, b1)?;
    }
    let (payload_len, length_bytes) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 2),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            // RFC 6455 section 5.2: the most significant bit of a 64-bit length must be 0.
            Some(bytes) if bytes[0] & 0x80 != 0 => {
                return Err(FrameError::Protocol(
                    "64-bit payload length with its most significant bit set",
                ))
            }
            Some(bytes) => (u64::from_be_bytes(bytes), 8),
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    let masked = b1 & 0x80 != 0;
    let len = 2 + length_bytes + if masked { 4 } else { 0 };
    let mask = if masked {
        match buf.get(len - 4..len) {
            Some(&[a, b, c, d]) => Some([a, b, c, d]),
            _ => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len,
        payload_len,
    }))
}

/// Reserved bits, reserved opcodes, and control frames that are fragmented or long (a
/// control frame's 7-bit length says whether it is over 125).
#[cold]
fn check_unusual(b0: u8, b1: u8) -> Result<(), FrameError> {
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol(
            "reserved bits set without an extension",
        ));
    }
    let opcode = b0 & 0x0f;
    if !matches!(opcode, OP_CLOSE | OP_PING | OP_PONG) {
        return Err(FrameError::Protocol("unknown opcode"));
    }
    if b0 & 0x80 == 0 || b1 & 0x7f > 125 {
        return Err(FrameError::Protocol(
            "control frames must be whole and short",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_masks_and_incomplete_headers() {
        let h = |buf: &[u8]| parse_header(buf);
        assert_eq!(h(&[]), Ok(None));
        assert_eq!(h(&[0x81]), Ok(None));
        assert_eq!(
            h(&[0x81, 5]),
            Ok(Some(Header {
                fin: true,
                opcode: OP_TEXT,
                mask: None,
                len: 2,
                payload_len: 5
            }))
        );
        assert_eq!(h(&[0x01, 126, 1]), Ok(None));
        let mid = h(&[0x01, 126, 1, 0]).ok().flatten();
        assert_eq!(
            mid.map(|h| (h.fin, h.len, h.payload_len)),
            Some((false, 4, 256))
        );
        let mut long = vec![0x82, 127];
        long.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(h(&long[..9]), Ok(None));
        assert_eq!(
            h(&long).ok().flatten().map(|h| (h.len, h.payload_len)),
            Some((10, 1 << 40))
        );
        // The masking key is part of the header.
        assert_eq!(h(&[0x81, 0x85, 1, 2, 3]), Ok(None));
        let masked = h(&[0x81, 0x85, 1, 2, 3, 4]).ok().flatten();
        assert_eq!(
            masked.map(|h| (h.mask, h.len)),
            Some((Some([1, 2, 3, 4]), 6))
        );
        let mut longest = vec![0x81, 0xff];
        longest.extend_from_slice(&[0; 12]);
        assert_eq!(
            h(&longest).ok().flatten().map(|h| h.len),
            Some(MAX_HEADER_LEN)
        );
    }

    #[test]
    fn refusals() {
        let protocol = |buf: &[u8]| matches!(parse_header(buf), Err(FrameError::Protocol(_)));
        assert!(protocol(&[0xC1, 0])); // RSV1
        assert!(protocol(&[0x83, 0])); // reserved data opcode
        assert!(protocol(&[0x8B, 0])); // reserved control opcode
        assert!(protocol(&[0x09, 0])); // fragmented ping
        assert!(protocol(&[0x89, 126, 0, 126])); // ping over 125 bytes
        assert!(!protocol(&[0x89, 125]));
        assert!(parse_header(&[0x88, 0])
            .ok()
            .flatten()
            .is_some_and(|h| h.is_control()));
    }
}
