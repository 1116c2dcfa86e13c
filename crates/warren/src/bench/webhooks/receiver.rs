//! The webhook endpoint under measurement: a small HTTP/1.1 keep-alive server that checks each
//! request's signature, hands its events to the [`Ledger`] with the arrival time, and answers
//! 200 at once, so what the bench measures is the server's side of the exchange.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::ledger::Ledger;

/// Largest request head and body accepted.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

pub fn spawn(listener: TcpListener, secret: Arc<str>, ledger: Arc<Ledger>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (secret, ledger) = (secret.clone(), ledger.clone());
            tokio::spawn(async move {
                if let Err(e) = serve(stream, &secret, &ledger).await {
                    eprintln!("webhook receiver: {e}");
                }
            });
        }
    });
}

/// Requests on one connection until the server closes it.
async fn serve(mut stream: TcpStream, secret: &str, ledger: &Ledger) -> Result<(), String> {
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        let Some((head_len, content_length, signature)) = read_head(&mut stream, &mut buf).await?
        else {
            return Ok(());
        };
        let end = head_len + content_length;
        while buf.len() < end {
            if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("connection closed inside a body".into());
            }
        }
        let at = Instant::now();
        let body = &buf[head_len..end];
        let signed =
            signature.is_some_and(|s| warren_protocol::auth::verify_webhook(secret, body, &s));
        ledger.request(at, signed, &events(body));
        buf.drain(..end);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
    }
}

/// The next request head: its length, the body's length and the signature header. `None`
/// when the peer closed between requests.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<(usize, usize, Option<String>)>, String> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    request
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                };
                let content_length = header("content-length")
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or("a request without Content-Length")?;
                if content_length > MAX_BODY {
                    return Err(format!("a body of {content_length} bytes"));
                }
                let signature = header("x-pusher-signature").map(str::to_owned);
                return Ok(Some((len, content_length, signature)));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err("request head too large".into()),
            Err(e) => return Err(format!("bad request head: {e}")),
        }
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("connection closed inside a head".into())
            };
        }
    }
}

/// `(name, user_id)` of each event in a webhook body; an unreadable body has none.
fn events(body: &[u8]) -> Vec<(String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Body {
        events: Vec<Event>,
    }
    #[derive(serde::Deserialize)]
    struct Event {
        name: String,
        user_id: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => b.events.into_iter().map(|e| (e.name, e.user_id)).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn counts_signed_events_over_keep_alive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ledger = Arc::new(Ledger::new(Duration::ZERO));
        ledger.joined("u1".into(), Instant::now());
        spawn(listener, Arc::from("s3cret"), ledger.clone());
        let mut stream = TcpStream::connect(addr).await.unwrap();
        for (i, secret) in ["s3cret", "wrong"].iter().enumerate() {
            let body = format!(
                r#"{{"time_ms":{i},"events":[{{"name":"member_added","channel":"presence-x","user_id":"u1"}}]}}"#
            );
            let signature = warren_protocol::auth::sign_webhook(secret, body.as_bytes());
            let request = format!(
                "POST /hooks HTTP/1.1\r\nhost: x\r\nx-pusher-signature: {signature}\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = [0u8; 38];
            stream.read_exact(&mut answer).await.unwrap();
            assert!(answer.starts_with(b"HTTP/1.1 200 OK"));
        }
        let t = ledger.tally();
        assert_eq!((t.requests, t.events, t.added), (2, 2, 2));
        assert_eq!((t.bad_signatures, t.duplicates), (1, 1));
    }
}
