//! Building frames: unmasked server frames, each made once into shared bytes so the very
//! same bytes go to every subscriber, and masked client frames appended to a send buffer.

use bytes::{BufMut, Bytes, BytesMut};

use super::header::{OP_CLOSE, OP_PONG, OP_TEXT};

/// Longest header of an unmasked frame: 2 bytes plus a 64-bit length.
const MAX_SERVER_HEADER: usize = 10;

/// Writes a header: `first` is the first byte as it goes out (FIN, reserved bits, opcode),
/// followed by the shortest length encoding and the masking key, if any.
#[inline]
pub fn put_header(out: &mut impl BufMut, first: u8, mask: Option<[u8; 4]>, len: usize) {
    out.put_u8(first);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.put_u8(mask_bit | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(mask_bit | 126);
        out.put_u16(len);
    } else {
        out.put_u8(mask_bit | 127);
        out.put_u64(len as u64);
    }
    if let Some(mask) = mask {
        out.put_slice(&mask);
    }
}

fn server_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(MAX_SERVER_HEADER + payload.len());
    put_header(&mut out, 0x80 | opcode, None, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// A complete, unmasked text frame: what every subscriber's socket receives, byte for byte.
pub fn text(payload: &[u8]) -> Bytes {
    server_frame(OP_TEXT, payload)
}

/// The answer to a client's ping frame.
pub fn pong(payload: &[u8]) -> Bytes {
    server_frame(OP_PONG, payload)
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
    server_frame(OP_CLOSE, &payload)
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

/// Appends a masked client frame (FIN set) to `out`.
pub fn encode_masked(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    put_header(out, 0x80 | opcode, Some(mask), payload.len());
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// Masks or unmasks (the same XOR) a payload whose first byte has mask index 0.
#[inline]
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    // Word-at-a-time XOR: client events can be 10 KB.
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
    use crate::wsframe::{parse_header, OP_BINARY};

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
        assert_eq!(&pong(b"p")[..], &[0x8A, 1, b'p']);
        let c = close(4201, "Pong reply not received");
        assert_eq!(&c[..4], &[0x88, 25, 0x10, 0x69]);
        assert!(close(4000, &"é".repeat(100)).len() <= 127);
    }

    #[test]
    fn masked_frames_read_back() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in [0, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = vec![0xEE]; // appended after what is there
            encode_masked(OP_BINARY, &payload, mask, &mut out);
            let frame = &out[1..];
            let Ok(Some(h)) = parse_header(frame) else {
                panic!("a header for length {len}");
            };
            assert_eq!((h.fin, h.opcode, h.mask), (true, OP_BINARY, Some(mask)));
            assert_eq!(h.payload_len, len as u64);
            let mut body = frame[h.len..].to_vec();
            assert_eq!(body.len(), len);
            apply_mask(&mut body, mask);
            assert_eq!(body, payload, "length {len}");
        }
    }
}
