//! Reading the first HTTP request on a connection and, for WebSocket upgrades, answering it.
//!
//! The listener reads just enough to see the request head; a WebSocket upgrade is answered
//! here, anything else is handed, bytes and all, to the HTTP server.

use base64::Engine;
use sha1::{Digest, Sha1};

/// Requests whose head is larger than this are refused before they are parsed.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 48;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the first request on a connection is.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A valid WebSocket upgrade; `head_len` bytes of the buffer belong to it.
    WebSocket(Upgrade),
    /// An upgrade request that RFC 6455 does not allow (wrong method, headers or key).
    BadUpgrade(&'static str),
    /// An upgrade for another WebSocket version: answered 400 with the version we speak
    /// (RFC 6455 section 4.4).
    WrongVersion,
    /// Ordinary HTTP: served by the HTTP API.
    Http,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    pub path: String,
    pub query: String,
    pub accept: String,
    pub head_len: usize,
    /// `X-Forwarded-For`, believed only from a trusted proxy (`gate`).
    pub forwarded_for: Option<String>,
    /// `Origin`: the page a browser opened the connection from (`apps[].allowed_origins`).
    pub origin: Option<String>,
}

/// Parses the request head in `buf`; `Ok(None)` when it has not all arrived yet.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let is_upgrade = header("upgrade").is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
    });
    if !is_upgrade {
        return Ok(Some(Head::Http));
    }
    if req.method != Some("GET") {
        return Ok(Some(Head::BadUpgrade("WebSocket upgrades must use GET")));
    }
    // RFC 6455 section 4.2.1: `Connection` includes the `Upgrade` token, and the key is 16
    // bytes in base64.
    let connection_upgrade = header("connection").is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("upgrade"))
    });
    if !connection_upgrade {
        return Ok(Some(Head::BadUpgrade(
            "the Connection header must include Upgrade",
        )));
    }
    if header("sec-websocket-version") != Some("13") {
        return Ok(Some(Head::WrongVersion));
    }
    let Some(key) = header("sec-websocket-key").filter(|k| is_websocket_key(k)) else {
        return Ok(Some(Head::BadUpgrade(
            "Sec-WebSocket-Key must be 16 bytes in base64",
        )));
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Head::WebSocket(Upgrade {
        path: path.to_owned(),
        query: query.to_owned(),
        accept: accept_key(key),
        head_len,
        forwarded_for: header("x-forwarded-for").map(str::to_owned),
        origin: header("origin").map(str::to_owned),
    })))
}

/// Whether `key` is base64 of exactly 16 bytes, as a client's nonce must be.
fn is_websocket_key(key: &str) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|nonce| nonce.len() == 16)
}

/// `Sec-WebSocket-Accept` for a client's key.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The `101 Switching Protocols` answer.
pub fn switching_protocols(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

/// A minimal HTTP error answer for requests that never reach the HTTP server.
pub fn http_error(status: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The answer to an upgrade for another WebSocket version: 400, naming the one we speak.
pub fn wrong_version() -> String {
    let body = "Sec-WebSocket-Version must be 13";
    format!(
        "HTTP/1.1 400 Bad Request\r\nSec-WebSocket-Version: 13\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn recognizes_upgrades() {
        let req = b"GET /app/key?protocol=7&client=js HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nextra";
        let Some(Head::WebSocket(up)) = parse_head(req).unwrap() else {
            panic!("not an upgrade")
        };
        assert_eq!(up.path, "/app/key");
        assert_eq!(up.query, "protocol=7&client=js");
        assert_eq!(up.head_len, req.len() - 5);
    }

    #[test]
    fn plain_http_bad_upgrades_and_partial_heads() {
        assert_eq!(
            parse_head(b"GET /apps/1/channels HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(),
            Some(Head::Http)
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost:").unwrap(), None);
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: a\r\n\r\n")
                .unwrap(),
            Some(Head::BadUpgrade(_))
        ));
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").unwrap(),
            Some(Head::BadUpgrade(_))
        ));
        // RFC 6455 section 4.2.1, one row per rule: (request head after the request line, answer).
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        let cases: [(String, &str); 6] = [
            (format!("Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n{key}"), "ok"),
            (format!("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{key}"), "bad"),
            (format!("Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\n{key}"), "bad"),
            (format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n{key}"), "version"),
            ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x\r\n".to_owned(), "bad"),
            ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n".to_owned(), "bad"),
        ];
        for (headers, expected) in cases {
            let req = format!("GET /app/k HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
            let got = match parse_head(req.as_bytes()).unwrap() {
                Some(Head::WebSocket(_)) => "ok",
                Some(Head::BadUpgrade(_)) => "bad",
                Some(Head::WrongVersion) => "version",
                other => panic!("{other:?} for {headers:?}"),
            };
            assert_eq!(got, expected, "{headers:?}");
        }
        assert!(parse_head(b"\x00\x01garbage\r\n\r\n").is_err());
    }
}
