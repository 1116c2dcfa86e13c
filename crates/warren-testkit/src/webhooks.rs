//! A webhook receiver: a real HTTP/1.1 server in the test process that records every request
//! with its header names exactly as sent, and answers as the test scripts it (a status, or no
//! answer at all), so tests can see retries, batching and what a verifier gets.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::WAIT;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Names as they came on the wire, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// What the receiver answered (`None`: it did not answer).
    pub answered: Option<u16>,
}

impl Delivery {
    /// A header's value, the name compared without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn events(&self) -> Vec<Value> {
        self.json()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The `X-Warren-Webhook-Id` ids, one per event.
    pub fn ids(&self) -> Vec<String> {
        let ids = self.header("x-warren-webhook-id").unwrap_or_default();
        ids.split(',').map(str::to_owned).collect()
    }
}

/// How the receiver answers the next requests.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Silence,
}

/// A running receiver; it stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:<port>/webhooks`.
    pub url: String,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// The answer when nothing is scripted.
    always: Arc<Mutex<Answer>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Answers 200 to everything unless scripted otherwise.
    pub async fn start() -> Receiver {
        Self::on(TcpListener::bind("127.0.0.1:0").await.expect("bind")).await
    }

    /// On a port chosen beforehand (a receiver that comes back after being down).
    pub async fn on_port(port: u16) -> Receiver {
        Self::on(TcpListener::bind(("127.0.0.1", port)).await.expect("bind")).await
    }

    async fn on(listener: TcpListener) -> Receiver {
        let port = listener.local_addr().expect("addr").port();
        let (tx, deliveries) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let always = Arc::new(Mutex::new(Answer::Status(200)));
        let answers = (script.clone(), always.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, tx.clone(), answers.clone()));
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/webhooks"),
            deliveries,
            script,
            always,
            task,
        }
    }

    /// The next `n` requests get `answer`; later ones 200 again.
    pub fn answer_next(&self, n: usize, answer: Answer) {
        let mut script = self.script.lock().expect("lock");
        script.extend(std::iter::repeat_n(answer, n));
    }

    /// From now on every request gets `answer` (what was scripted is forgotten).
    pub fn answer_all(&self, answer: Answer) {
        let mut script = self.script.lock().expect("lock");
        script.clear();
        *self.always.lock().expect("lock") = answer;
    }

    /// The next request, or `None` when none comes within `within`.
    pub async fn next_or_silence(&mut self, within: Duration) -> Option<Delivery> {
        tokio::time::timeout(within, self.deliveries.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next request, whatever it was answered; fails after `within`.
    pub async fn next_within(&mut self, within: Duration) -> Delivery {
        tokio::time::timeout(within, self.deliveries.recv())
            .await
            .expect("a webhook request in time")
            .expect("receiver running")
    }

    /// The next request (within [`WAIT`]).
    pub async fn next(&mut self) -> Delivery {
        self.next_within(WAIT).await
    }

    /// The events of the accepted (2xx) requests, until there are `n` of them.
    pub async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut events = Vec::new();
        while events.len() < n {
            let d = self.next().await;
            if d.answered.is_some_and(|s| (200..300).contains(&s)) {
                events.extend(d.events());
            }
        }
        assert_eq!(events.len(), n, "more events than expected: {events:?}");
        events
    }

    /// Asserts that no request comes within `within`.
    pub async fn assert_silent(&mut self, within: Duration) {
        if let Ok(Some(d)) = tokio::time::timeout(within, self.deliveries.recv()).await {
            panic!("unexpected webhook: {}", String::from_utf8_lossy(&d.body));
        }
    }
}

/// One keep-alive connection: request after request.
async fn serve(
    mut stream: TcpStream,
    tx: mpsc::UnboundedSender<Delivery>,
    (script, always): (Arc<Mutex<VecDeque<Answer>>>, Arc<Mutex<Answer>>),
) {
    let mut buf = Vec::new();
    loop {
        let Some((headers, body)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let answer = script.lock().expect("lock").pop_front();
        let answer = answer.unwrap_or(*always.lock().expect("lock"));
        let answered = match answer {
            Answer::Status(s) => Some(s),
            Answer::Silence => None,
        };
        let _ = tx.send(Delivery {
            headers,
            body,
            answered,
        });
        let Some(status) = answered else {
            // Hold the connection open, unanswered, until the client gives up.
            let mut sink = [0u8; 256];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        };
        let reply = format!("HTTP/1.1 {status} Status\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

type Request = (Vec<(String, String)>, Vec<u8>);

/// Reads one request (head and `content-length` body); `None` at the end of the stream.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Some((headers, body))
}
