//! The client frame decoder, fed the same bytes in arbitrary chunks, must say exactly what a
//! simple reference decoder says of the whole input at once: the same messages, then the same
//! error (by its close code) or the same "need more bytes". The reference is written for
//! clarity from RFC 6455, with none of the real decoder's incremental state, so a chunk
//! boundary that changes an answer is a bug in the real one.
//!
//! Input: byte 0 picks the message limit (small, so oversize cases are reached), byte 1 seeds
//! the chunk sizes, the rest is what the client sent.

use bytes::BytesMut;
use warren_protocol::wsframe::{is_sendable_close_code, Decoder, Message};

/// What a decoder made of an input: its messages, and how it stopped.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Message>,
    /// The close code of the error that ended it; `None`: it wants more bytes.
    error: Option<u16>,
}

pub fn check(data: &[u8]) {
    let [limit, seed, wire @ ..] = data else {
        return;
    };
    let max_message = 1 + usize::from(*limit) * 4;
    let expected = reference(wire, max_message);
    let got = chunked(wire, max_message, *seed);
    assert_eq!(got, expected, "limit {max_message}, seed {seed}");
}

/// The real decoder, fed in chunks of 1 to 16 bytes chosen by `seed`.
fn chunked(wire: &[u8], max_message: usize, seed: u8) -> Outcome {
    let mut decoder = Decoder::new(max_message);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut state = u32::from(seed) | 1;
    let mut at = 0;
    while at < wire.len() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let take = 1 + (state as usize % 16).min(wire.len() - at - 1);
        buf.extend_from_slice(&wire[at..at + take]);
        at += take;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        messages,
                        error: Some(e.close_code()),
                    }
                }
            }
        }
    }
    Outcome {
        messages,
        error: None,
    }
}

const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const TOO_BIG: u16 = 1009;

/// The whole input at once, frame after frame.
fn reference(wire: &[u8], max_message: usize) -> Outcome {
    let mut messages = Vec::new();
    // A fragmented text (true) or binary (false) message so far.
    let mut partial: Option<(bool, Vec<u8>)> = None;
    let mut rest = wire;
    let stop = |messages, error| Outcome { messages, error };
    loop {
        if rest.len() < 2 {
            return stop(messages, None);
        }
        let (fin, rsv, opcode) = (rest[0] & 0x80 != 0, rest[0] & 0x70, rest[0] & 0x0f);
        let (masked, len7) = (rest[1] & 0x80 != 0, u64::from(rest[1] & 0x7f));
        let control = opcode >= 8;
        if rsv != 0 || !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            return stop(messages, Some(PROTOCOL_ERROR));
        }
        if control && (!fin || len7 > 125) {
            return stop(messages, Some(PROTOCOL_ERROR));
        }
        let (length, at) = match len7 {
            126 if rest.len() >= 4 => (u64::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 if rest.len() >= 10 => {
                if rest[2] & 0x80 != 0 {
                    return stop(messages, Some(PROTOCOL_ERROR));
                }
                let mut n = [0u8; 8];
                n.copy_from_slice(&rest[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            126 | 127 => return stop(messages, None),
            n => (n, 2),
        };
        let header = at + if masked { 4 } else { 0 };
        if rest.len() < header {
            return stop(messages, None);
        }
        if !masked {
            return stop(messages, Some(PROTOCOL_ERROR));
        }
        match (opcode, &partial) {
            (1 | 2, Some(_)) | (0, None) => return stop(messages, Some(PROTOCOL_ERROR)),
            _ => {}
        }
        let so_far = partial.as_ref().map_or(0, |(_, p)| p.len() as u64);
        if !control && so_far + length > max_message as u64 {
            return stop(messages, Some(TOO_BIG));
        }
        let length = length as usize;
        if rest.len() < header + length {
            return stop(messages, None);
        }
        let mask = &rest[at..header];
        let payload: Vec<u8> = rest[header..header + length]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        rest = &rest[header + length..];
        let data_message = |text: bool, bytes: Vec<u8>| {
            if text {
                String::from_utf8(bytes)
                    .map(|s| Message::Text(s.into()))
                    .map_err(|_| INVALID_PAYLOAD)
            } else {
                Ok(Message::Binary(bytes.into()))
            }
        };
        let message = match opcode {
            9 => Message::Ping(payload.into()),
            10 => Message::Pong,
            8 => match payload.as_slice() {
                [] => Message::Close(None),
                [_] => return stop(messages, Some(PROTOCOL_ERROR)),
                [a, b, reason @ ..] => {
                    let code = u16::from_be_bytes([*a, *b]);
                    if !is_sendable_close_code(code) {
                        return stop(messages, Some(PROTOCOL_ERROR));
                    }
                    if std::str::from_utf8(reason).is_err() {
                        return stop(messages, Some(INVALID_PAYLOAD));
                    }
                    Message::Close(Some(code))
                }
            },
            1 | 2 if !fin => {
                partial = Some((opcode == 1, payload));
                continue;
            }
            1 | 2 => match data_message(opcode == 1, payload) {
                Ok(m) => m,
                Err(code) => return stop(messages, Some(code)),
            },
            _ => {
                let Some((text, mut so_far)) = partial.take() else {
                    return stop(messages, Some(PROTOCOL_ERROR));
                };
                so_far.extend_from_slice(&payload);
                if !fin {
                    partial = Some((text, so_far));
                    continue;
                }
                match data_message(text, so_far) {
                    Ok(m) => m,
                    Err(code) => return stop(messages, Some(code)),
                }
            }
        };
        messages.push(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        out.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        out
    }

    #[test]
    fn the_reference_reads_what_rfc_6455_describes() {
        let mut wire = masked(0x01, b"he");
        wire.extend(masked(0x89, b"p"));
        wire.extend(masked(0x80, b"llo"));
        let out = reference(&wire, 100);
        assert_eq!(
            out.messages,
            vec![Message::Ping("p".into()), Message::Text("hello".into())]
        );
        assert_eq!(out.error, None);
        assert_eq!(reference(&masked(0x81, b"hello"), 3).error, Some(TOO_BIG));
        assert_eq!(
            reference(&[0x81, 0x05, b'h'], 100).error,
            Some(PROTOCOL_ERROR)
        );
        assert_eq!(
            reference(&masked(0x81, &[0xff]), 100).error,
            Some(INVALID_PAYLOAD)
        );
    }

    #[test]
    fn both_agree_on_a_sample_whatever_the_chunks() {
        let mut wire = masked(0x81, b"{\"event\":\"x\"}");
        wire.extend(masked(0x88, &[0x03, 0xe8]));
        for seed in 0..=255u8 {
            let mut input = vec![40, seed];
            input.extend_from_slice(&wire);
            check(&input);
        }
    }
}
