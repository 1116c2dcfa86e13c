//! RFC 6455 conformance, one row per case: what a client sends after (or instead of) a valid
//! upgrade, and what the server must answer. Each row cites the RFC section or the Autobahn
//! TestSuite case it follows. Valid sequences are followed by a close frame with 1000, which
//! the server echoes: so every row ends in the close code that proves the verdict.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use warren_testkit::raw::{last_close_code, raw_tcp_upgrade, read_socket_id, read_until_closed};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::{Endpoint, KEY};

/// The server's message limit in these tests: 1 KiB.
const LIMIT_KB: usize = 1;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame as a client sends it: `first` is FIN, RSV and opcode; `len` the 7-bit length
/// field to write when it should differ from the payload's (`None`: the payload's own).
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(0x81, payload)
}

fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(0x88, &payload)
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// The server closes with `close_code` after `send` (followed by a close with 1000, which a
/// conforming server echoes when `send` was valid).
struct Case {
    cite: &'static str,
    what: &'static str,
    send: Vec<u8>,
    close_code: u16,
}

fn case(cite: &'static str, what: &'static str, send: Vec<u8>, close_code: u16) -> Case {
    Case {
        cite,
        what,
        send,
        close_code,
    }
}

const OK: u16 = 1000;
const PROTOCOL: u16 = 1002;
const INVALID_DATA: u16 = 1007;
const TOO_BIG: u16 = 1009;

fn cases() -> Vec<Case> {
    let ping = br#"{"event":"pusher:ping"}"#;
    let limit = LIMIT_KB * 1024;
    let mut rows = vec![
        case("Autobahn 1.1.1", "empty text message", text(b""), OK),
        case("Autobahn 1.1.2", "text message", text(ping), OK),
        case(
            "Autobahn 1.2.1",
            "binary message (refused with pusher:error, open)",
            frame(0x82, b"\x01\x02"),
            OK,
        ),
        case("Autobahn 2.1", "empty ping", frame(0x89, b""), OK),
        case(
            "Autobahn 2.4",
            "ping with 125 bytes",
            frame(0x89, &[b'p'; 125]),
            OK,
        ),
        case(
            "Autobahn 2.5 / RFC 5.5",
            "ping with 126 bytes",
            frame(0x89, &[b'p'; 126]),
            PROTOCOL,
        ),
        case(
            "Autobahn 2.10",
            "ten pings in a row",
            frame(0x89, b"x").repeat(10),
            OK,
        ),
        case(
            "Autobahn 3.1 / RFC 5.2",
            "RSV1 without an extension",
            frame(0xc1, b"x"),
            PROTOCOL,
        ),
        case("Autobahn 3.2", "RSV2", frame(0xa1, b"x"), PROTOCOL),
        case("Autobahn 3.3", "RSV3", frame(0x91, b"x"), PROTOCOL),
        case(
            "Autobahn 3.7",
            "RSV on a close frame",
            frame(0xf8, b""),
            PROTOCOL,
        ),
        case(
            "Autobahn 4.1.1 / RFC 5.2",
            "reserved data opcode 3",
            frame(0x83, b""),
            PROTOCOL,
        ),
        case(
            "Autobahn 4.1.5",
            "reserved data opcode 7",
            frame(0x87, b"x"),
            PROTOCOL,
        ),
        case(
            "Autobahn 4.2.1",
            "reserved control opcode 11",
            frame(0x8b, b""),
            PROTOCOL,
        ),
        case(
            "Autobahn 4.2.5",
            "reserved control opcode 15",
            frame(0x8f, b"x"),
            PROTOCOL,
        ),
        case(
            "Autobahn 5.1 / RFC 5.5",
            "fragmented ping",
            cat(&[frame(0x09, b"a"), frame(0x80, b"b")]),
            PROTOCOL,
        ),
        case(
            "Autobahn 5.2",
            "fragmented pong",
            cat(&[frame(0x0a, b"a"), frame(0x80, b"b")]),
            PROTOCOL,
        ),
        case(
            "Autobahn 5.3 / RFC 5.4",
            "text in two fragments",
            cat(&[
                frame(0x01, b"{\"event\":"),
                frame(0x80, b"\"pusher:ping\"}"),
            ]),
            OK,
        ),
        case(
            "Autobahn 5.6",
            "a ping between fragments",
            cat(&[
                frame(0x01, b"{\"ev"),
                frame(0x89, b"p"),
                frame(0x80, b"ent\":\"pusher:ping\"}"),
            ]),
            OK,
        ),
        case(
            "Autobahn 5.9 / RFC 5.4",
            "continuation with no message",
            frame(0x80, b"x"),
            PROTOCOL,
        ),
        case(
            "Autobahn 5.10",
            "continuation, not final, with no message",
            frame(0x00, b"x"),
            PROTOCOL,
        ),
        case(
            "Autobahn 5.18",
            "a new text message before the last one ended",
            cat(&[frame(0x01, b"a"), frame(0x81, b"b")]),
            PROTOCOL,
        ),
        case(
            "RFC 5.4",
            "ten thousand empty continuations, then the end",
            cat(&[
                frame(0x01, b"{\"event\":\"pusher:ping\"}"),
                frame(0x00, b"").repeat(10_000),
                frame(0x80, b""),
            ]),
            OK,
        ),
        case(
            "Autobahn 6.3.1 / RFC 8.1",
            "invalid UTF-8 in a text frame",
            text(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
            INVALID_DATA,
        ),
        case(
            "Autobahn 6.4.1",
            "invalid UTF-8 split across fragments",
            cat(&[frame(0x01, b"\xce\xba\xe1"), frame(0x80, b"\xbd\xb9\xff")]),
            INVALID_DATA,
        ),
        case(
            "Autobahn 6.2.3",
            "valid UTF-8 split inside a character",
            cat(&[frame(0x01, b"{\"event\":\"\xce"), frame(0x80, b"\xba\"}")]),
            OK,
        ),
        case(
            "Autobahn 7.3.1 / RFC 5.5.1",
            "close with no payload",
            frame(0x88, b""),
            OK,
        ),
        case(
            "Autobahn 7.3.2",
            "close with a one-byte payload",
            frame(0x88, b"\x03"),
            PROTOCOL,
        ),
        case(
            "Autobahn 7.3.4",
            "close with a reason",
            close(1000, b"bye"),
            OK,
        ),
        case(
            "Autobahn 7.3.6 / RFC 5.5",
            "close with a 126-byte payload",
            frame(0x88, &[b'r'; 126]),
            PROTOCOL,
        ),
        case(
            "Autobahn 7.5.1 / RFC 5.5.1",
            "close reason not UTF-8",
            close(
                1000,
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
            ),
            INVALID_DATA,
        ),
        case(
            "RFC 5.1",
            "an unmasked frame",
            vec![0x81, 0x01, b'x'],
            PROTOCOL,
        ),
        case(
            "RFC 5.2",
            "a 64-bit length with its top bit set",
            vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4],
            PROTOCOL,
        ),
        case(
            "Autobahn 9.1 / RFC 10.4",
            "one text frame over the limit",
            text(&vec![b'x'; limit + 1]),
            TOO_BIG,
        ),
        case(
            "Autobahn 9.2",
            "one binary frame over the limit",
            frame(0x82, &vec![b'x'; limit + 1]),
            TOO_BIG,
        ),
        case(
            "RFC 10.4",
            "fragments that add up to more than the limit",
            cat(&[
                frame(0x01, &vec![b'x'; limit - 10]),
                frame(0x00, &[b'x'; 8]),
                frame(0x80, &[b'x'; 8]),
            ]),
            TOO_BIG,
        ),
        case(
            "RFC 10.4",
            "a message of exactly the limit",
            text(&vec![b' '; limit]),
            OK,
        ),
    ];
    // Autobahn 7.7.x / 7.9.x, RFC 7.4: codes a peer may send are echoed; the others are
    // protocol errors.
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        rows.push(case(
            "Autobahn 7.7 / RFC 7.4",
            "a close code one may send",
            close(code, b""),
            code,
        ));
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        rows.push(case(
            "Autobahn 7.9 / RFC 7.4",
            "a close code no one may send",
            close(code, b""),
            PROTOCOL,
        ));
    }
    rows
}

async fn server() -> TestServer {
    start_with(|c| c.server.max_message_size_kb = LIMIT_KB).await
}

#[tokio::test]
async fn frames_are_answered_as_rfc_6455_says() {
    let server = server().await;
    let mut failures = Vec::new();
    for c in cases() {
        let mut s = raw_tcp_upgrade(&server).await;
        read_socket_id(&mut s).await;
        let mut bytes = c.send.clone();
        bytes.extend_from_slice(&close(1000, b""));
        // A server that closes early may refuse the rest: that is its answer, not a failure.
        let _ = s.write_all(&bytes).await;
        let answer = read_until_closed(&mut s).await;
        let got = answer
            .windows(2)
            .rposition(|w| w[0] == 0x88)
            .map(|_| last_close_code(&answer));
        if got != Some(c.close_code) {
            failures.push(format!(
                "{} ({}): expected close {}, got {got:?}",
                c.cite, c.what, c.close_code
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The status line and headers of the answer to an upgrade request with `headers`.
async fn answer_to(to: &impl Endpoint, request_line: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(to.addr()).await.expect("connect");
    let request = format!("{request_line}\r\nHost: x\r\n{headers}\r\n");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        if s.read_exact(&mut byte).await.is_err() {
            break;
        }
        got.push(byte[0]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn handshakes_are_answered_as_rfc_6455_says() {
    let server = server().await;
    let get = format!("GET /app/{KEY}?protocol=7 HTTP/1.1");
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let good =
        format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{key}");
    // (citation, request line, headers, what the answer must contain)
    let rows: Vec<(&str, String, String, &[&str])> = vec![
        ("RFC 4.2.2 (the sample key and its accept value)", get.clone(), good.clone(),
            &["HTTP/1.1 101", "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]),
        ("RFC 4.2.1: tokens are case-insensitive and lists allowed", get.clone(),
            format!("Upgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\nSec-WebSocket-Version: 13\r\n{key}"),
            &["HTTP/1.1 101"]),
        ("RFC 4.2.1 item 1: GET only", format!("POST /app/{KEY}?protocol=7 HTTP/1.1"), good.clone(), &["HTTP/1.1 400"]),
        ("RFC 4.2.1 item 4: Connection must include Upgrade", get.clone(),
            format!("Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\n{key}"),
            &["HTTP/1.1 400"]),
        ("RFC 4.2.1 item 5: the key is 16 bytes in base64", get.clone(),
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n".to_owned(),
            &["HTTP/1.1 400"]),
        ("RFC 4.2.1 item 5: a key is required", get.clone(),
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".to_owned(),
            &["HTTP/1.1 400"]),
        ("RFC 4.4: another version gets 400 and the versions spoken", get.clone(),
            format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n{key}"),
            &["HTTP/1.1 400", "Sec-WebSocket-Version: 13"]),
    ];
    let mut failures = Vec::new();
    for (cite, line, headers, must) in rows {
        let answer = answer_to(&server, &line, &headers).await;
        for part in must {
            if !answer.contains(part) {
                failures.push(format!("{cite}: no {part:?} in {answer:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
