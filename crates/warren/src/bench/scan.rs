//! The receiving side's per-message work: a small scan of the frame instead of JSON parsing.
//!
//! Bench events look like `{"event":"bench","channel":"bench-3","data":"17 <scheduled ns>
//! <sent ns> xxxx"}`: the data string holds only digits, spaces and padding, so it is never
//! escaped and can be read straight from the frame bytes.

/// What a frame is, as far as the bench cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned {
    Bench {
        seq: u64,
        scheduled_ns: u64,
        sent_ns: u64,
    },
    Ping,
    Other,
}

/// The name of the events the bench publishes.
pub const EVENT: &str = "bench";

/// Classifies one text frame. `event` is the bench event name.
pub fn scan_frame(frame: &[u8], event: &[u8]) -> Scanned {
    let Some(name) = string_field(frame, b"event") else {
        return Scanned::Other;
    };
    if name == event {
        let Some(data) = string_field(frame, b"data") else {
            return Scanned::Other;
        };
        let mut parts = data.split(|&b| b == b' ');
        let mut number = || parts.next().and_then(parse_u64);
        match (number(), number(), number()) {
            (Some(seq), Some(scheduled_ns), Some(sent_ns)) => Scanned::Bench {
                seq,
                scheduled_ns,
                sent_ns,
            },
            _ => Scanned::Other,
        }
    } else if name == b"pusher:ping" {
        Scanned::Ping
    } else {
        Scanned::Other
    }
}

/// The raw (unescaped) contents of the first string value of `"key"`, if the value is a
/// string. Escapes are not decoded: the value ends at the first unescaped quote.
pub fn string_field<'a>(frame: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(pos) = find(&frame[from..], key) {
        let start = from + pos;
        from = start + key.len();
        // The key must be a whole JSON string: `"key"` followed by optional spaces and ':'.
        if start == 0 || frame[start - 1] != b'"' || frame.get(from) != Some(&b'"') {
            continue;
        }
        let mut i = from + 1;
        while matches!(frame.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        if frame.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while matches!(frame.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        if frame.get(i) != Some(&b'"') {
            return None;
        }
        let value_start = i + 1;
        let mut j = value_start;
        while j < frame.len() {
            match frame[j] {
                b'\\' => j += 2,
                b'"' => return Some(&frame[value_start..j]),
                _ => j += 1,
            }
        }
        return None;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &haystack[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// The socket id from `connection_established`, whose data is a JSON string holding
/// `{\"socket_id\":\"123.456\",...}` (escaped inside the frame).
pub fn scan_socket_id(frame: &[u8]) -> Option<&str> {
    let pos = find(frame, b"socket_id")?;
    let rest = &frame[pos + b"socket_id".len()..];
    let start = rest.iter().position(u8::is_ascii_digit)?;
    let rest = &rest[start..];
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(rest.len());
    let id = std::str::from_utf8(&rest[..end]).ok()?;
    warren_protocol::SocketId::parse(id).ok().map(|_| id)
}

/// The data string of a bench event: sequence number, scheduled and actual send times in
/// nanoseconds since the Unix epoch, padded with `x` to `payload` bytes.
pub fn event_data(seq: u64, scheduled_ns: u64, sent_ns: u64, payload: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(payload.max(64));
    let _ = write!(s, "{seq} {scheduled_ns} {sent_ns}");
    if s.len() < payload {
        s.push(' ');
        while s.len() < payload {
            s.push('x');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &[u8] = EVENT.as_bytes();

    #[test]
    fn bench_events_are_read_from_the_frame() {
        let data = event_data(17, 1_700_000_000_000_000_000, 1_700_000_000_000_000_500, 80);
        assert_eq!(data.len(), 80);
        let frame = format!(r#"{{"event":"bench","channel":"bench-3","data":"{data}"}}"#);
        assert_eq!(
            scan_frame(frame.as_bytes(), EV),
            Scanned::Bench {
                seq: 17,
                scheduled_ns: 1_700_000_000_000_000_000,
                sent_ns: 1_700_000_000_000_000_500
            }
        );
        // Other field orders and spacing (other servers) work too; short payloads have no padding.
        let data = event_data(1, 2, 3, 0);
        assert_eq!(data, "1 2 3");
        let frame = format!(r#"{{ "data" : "{data}", "channel": "c", "event" : "bench" }}"#);
        assert_eq!(
            scan_frame(frame.as_bytes(), EV),
            Scanned::Bench {
                seq: 1,
                scheduled_ns: 2,
                sent_ns: 3
            }
        );
    }

    #[test]
    fn other_frames() {
        let cases: &[&[u8]] = &[
            br#"{"event":"pusher:ping","data":"{}"}"#,
            br#"{"event":"pusher:pong","data":"{}"}"#,
            br#"{"event":"bench2","channel":"c","data":"1 2 3"}"#,
            br#"{"event":"bench","channel":"c","data":"1 2"}"#,
            br#"{"event":"bench","channel":"c","data":"a 2 3"}"#,
            br#"{"event":"bench","channel":"c","data":{"x":1}}"#,
            br#"{"event":"bench","channel":"c","data":"99999999999999999999999 2 3"}"#,
            br#"{"channel":"event","data":"1 2 3"}"#,
            br#"{"xevent":"bench","data":"1 2 3"}"#,
            br#"{"event":"bench","data":"1 2 3"#,
            b"",
            b"\"",
            b"not json at all",
        ];
        for c in cases {
            let expected = if c.starts_with(br#"{"event":"pusher:ping""#) {
                Scanned::Ping
            } else {
                Scanned::Other
            };
            assert_eq!(
                scan_frame(c, EV),
                expected,
                "{}",
                String::from_utf8_lossy(c)
            );
        }
        // An escaped quote inside a value does not end it.
        assert_eq!(
            string_field(br#"{"a":"x\"y","b":"z"}"#, b"b"),
            Some(&b"z"[..])
        );
        assert_eq!(
            string_field(br#"{"a":"x\"y"}"#, b"a"),
            Some(&br#"x\"y"#[..])
        );
    }

    #[test]
    fn socket_ids() {
        let frame = br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#;
        assert_eq!(scan_socket_id(frame), Some("123.456"));
        assert_eq!(
            scan_socket_id(br#"{"data":"{\"socket_id\":\"12\"}"}"#),
            None
        );
        assert_eq!(scan_socket_id(b"{}"), None);
    }
}
