//! The envelope of a frame relayed between nodes over pub/sub:
//! `[version][node id length][node id][socket id length][excluded socket id][frame payload]`.
//!
//! Receivers skip their own node's envelopes (the publisher already delivered locally) and
//! re-frame the payload once for all their local subscribers.

use bytes::{BufMut, Bytes, BytesMut};

const VERSION: u8 = 1;

/// Encodes an envelope; `payload` is the JSON text of the frame.
pub fn encode(instance: &str, except: Option<&str>, payload: &[u8]) -> Bytes {
    let except = except.unwrap_or("");
    let mut out = BytesMut::with_capacity(3 + instance.len() + except.len() + payload.len());
    out.put_u8(VERSION);
    out.put_u8(instance.len().min(255) as u8);
    out.put_slice(&instance.as_bytes()[..instance.len().min(255)]);
    out.put_u8(except.len().min(255) as u8);
    out.put_slice(&except.as_bytes()[..except.len().min(255)]);
    out.put_slice(payload);
    out.freeze()
}

/// A decoded envelope, borrowing from the message.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub origin: &'a str,
    pub except: Option<&'a str>,
    pub payload: &'a [u8],
}

/// Decodes an envelope; `None` for anything malformed (logged by the caller, never trusted).
pub fn decode(msg: &[u8]) -> Option<Envelope<'_>> {
    let (&version, rest) = msg.split_first()?;
    if version != VERSION {
        return None;
    }
    let (origin, rest) = take_short(rest)?;
    let (except, payload) = take_short(rest)?;
    Some(Envelope {
        origin: std::str::from_utf8(origin).ok()?,
        except: Some(std::str::from_utf8(except).ok()?).filter(|s| !s.is_empty()),
        payload,
    })
}

fn take_short(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = buf.split_first()?;
    let len = len as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = encode("node-1~ab", Some("1.2"), b"{\"event\":\"x\"}");
        assert_eq!(
            decode(&e),
            Some(Envelope {
                origin: "node-1~ab",
                except: Some("1.2"),
                payload: b"{\"event\":\"x\"}"
            })
        );
        let e = encode("n", None, b"");
        assert_eq!(decode(&e).map(|e| e.except), Some(None));
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&[2, 0, 0]), None);
        assert_eq!(decode(&[1, 5, b'a']), None);
        assert_eq!(decode(&[1, 1, 0xff, 0]), None);
    }
}
