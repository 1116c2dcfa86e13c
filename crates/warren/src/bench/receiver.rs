//! The subscribers: connections spread over a few OS threads, each running a single-threaded
//! runtime, so that per-message work touches only thread-local state (no locks, no
//! allocation). Each connection keeps its own sequence bookkeeping; each thread keeps the
//! latency histograms; everything is merged when the run ends.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::scan::{scan_frame, scan_socket_id, Scanned, EVENT};
use super::ChannelKind;

/// Everything the receiver threads share (read-mostly).
pub struct Shared {
    pub key: String,
    pub secret: String,
    pub kind: ChannelKind,
    pub channels: Vec<String>,
    /// Sequence numbers per channel stay below this.
    pub max_seq: u64,
    pub connect_timeout: Duration,
    pub connect_limit: Semaphore,
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
    /// Messages received, one counter per thread (each written by its thread only).
    pub received: Vec<AtomicU64>,
    pub stop: watch::Receiver<bool>,
}

/// One connection to open.
#[derive(Clone)]
pub struct ConnSpec {
    pub index: usize,
    pub url: Arc<str>,
    pub addr: SocketAddr,
    pub source: Option<IpAddr>,
    pub channel: usize,
}

/// What one connection saw.
#[derive(Debug, Clone, Default)]
pub struct ConnResult {
    pub channel: usize,
    pub connected: bool,
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Sequence numbers that cannot be ours (beyond what was published).
    pub unexpected: u64,
    /// The server closed the connection (or it broke) before the end of the run.
    pub dropped: bool,
}

/// What one thread's connections saw, merged.
pub struct ThreadResult {
    pub connections: Vec<ConnResult>,
    pub latency_sent: Histogram<u64>,
    pub latency_scheduled: Histogram<u64>,
    pub connect_time: Histogram<u64>,
    pub last_receipt_ns: u64,
    pub first_error: Option<String>,
}

/// Histogram of nanoseconds, 1 ns to 1 hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).unwrap_or_else(|_| {
        // The bounds are constants that hdrhistogram accepts.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

struct Local {
    latency_sent: Histogram<u64>,
    latency_scheduled: Histogram<u64>,
    connect_time: Histogram<u64>,
    last_receipt_ns: u64,
    first_error: Option<String>,
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs thread `t`'s connections until `stop` turns true.
pub fn run_thread(t: usize, specs: Vec<ConnSpec>, shared: Arc<Shared>) -> ThreadResult {
    let local = Rc::new(RefCell::new(Local {
        latency_sent: histogram(),
        latency_scheduled: histogram(),
        connect_time: histogram(),
        last_receipt_ns: 0,
        first_error: None,
    }));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let n = specs.len();
            shared.failed.fetch_add(n, Ordering::Relaxed);
            return ThreadResult {
                connections: vec![ConnResult::default(); n],
                latency_sent: histogram(),
                latency_scheduled: histogram(),
                connect_time: histogram(),
                last_receipt_ns: 0,
                first_error: Some(format!("cannot start a runtime: {e}")),
            };
        }
    };
    let tasks = tokio::task::LocalSet::new();
    let connections = tasks.block_on(&runtime, async {
        let handles: Vec<_> = specs
            .into_iter()
            .map(|spec| {
                let shared = shared.clone();
                let local = local.clone();
                tokio::task::spawn_local(connection(t, spec, shared, local))
            })
            .collect();
        let mut results = Vec::with_capacity(handles.len());
        for h in handles {
            results.push(h.await.unwrap_or_default());
        }
        results
    });
    drop(tasks);
    drop(runtime);
    let local = match Rc::try_unwrap(local) {
        Ok(cell) => cell.into_inner(),
        Err(rc) => {
            let l = rc.borrow();
            Local {
                latency_sent: l.latency_sent.clone(),
                latency_scheduled: l.latency_scheduled.clone(),
                connect_time: l.connect_time.clone(),
                last_receipt_ns: l.last_receipt_ns,
                first_error: l.first_error.clone(),
            }
        }
    };
    ThreadResult {
        connections,
        latency_sent: local.latency_sent,
        latency_scheduled: local.latency_scheduled,
        connect_time: local.connect_time,
        last_receipt_ns: local.last_receipt_ns,
        first_error: local.first_error,
    }
}

type Ws = WebSocketStream<TcpStream>;

async fn connection(
    t: usize,
    spec: ConnSpec,
    shared: Arc<Shared>,
    local: Rc<RefCell<Local>>,
) -> ConnResult {
    let mut result = ConnResult {
        channel: spec.channel,
        ..Default::default()
    };
    let opened = {
        let Ok(_permit) = shared.connect_limit.acquire().await else {
            return result;
        };
        let started = Instant::now();
        match tokio::time::timeout(shared.connect_timeout, open(&spec, &shared)).await {
            Ok(Ok(ws)) => {
                let took = started.elapsed().as_nanos() as u64;
                local
                    .borrow_mut()
                    .connect_time
                    .saturating_record(took.max(1));
                Ok(ws)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "connecting, handshake and subscription took over {:?}",
                shared.connect_timeout
            )),
        }
    };
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(e) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            let mut l = local.borrow_mut();
            if l.first_error.is_none() {
                l.first_error = Some(format!("connection {} ({}): {e}", spec.index, spec.addr));
            }
            return result;
        }
    };
    result.connected = true;
    shared.connected.fetch_add(1, Ordering::Relaxed);

    let mut seen = SeqSet::new(shared.max_seq);
    let mut stop = shared.stop.clone();
    let counter = &shared.received[t];
    let event = EVENT.as_bytes();
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        result.dropped = true;
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                match scan_frame(text.as_bytes(), event) {
                    Scanned::Bench { seq, scheduled_ns, sent_ns } => {
                        let now = now_ns();
                        counter.fetch_add(1, Ordering::Relaxed);
                        result.received += 1;
                        seen.record(seq, &mut result);
                        let mut l = local.borrow_mut();
                        l.latency_sent.saturating_record(now.saturating_sub(sent_ns).max(1));
                        l.latency_scheduled.saturating_record(now.saturating_sub(scheduled_ns).max(1));
                        if now > l.last_receipt_ns {
                            l.last_receipt_ns = now;
                        }
                    }
                    Scanned::Ping => {
                        if ws.send(Message::text(r#"{"event":"pusher:pong","data":{}}"#)).await.is_err() {
                            result.dropped = true;
                            break;
                        }
                    }
                    Scanned::Other => {}
                }
            }
        }
    }
    result
}

/// Sequence numbers seen on one connection: a bitset sized once for the whole run.
struct SeqSet {
    bits: Vec<u64>,
    max: u64,
    highest: Option<u64>,
}

impl SeqSet {
    fn new(max: u64) -> Self {
        Self {
            bits: vec![0; (max as usize).div_ceil(64)],
            max,
            highest: None,
        }
    }

    fn record(&mut self, seq: u64, r: &mut ConnResult) {
        if seq >= self.max {
            r.unexpected += 1;
            return;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.bits[word] & bit != 0 {
            r.duplicates += 1;
            return;
        }
        self.bits[word] |= bit;
        r.unique += 1;
        match self.highest {
            Some(h) if seq < h => r.reordered += 1,
            _ => self.highest = Some(seq),
        }
    }
}

/// TCP (bound to the source address when given), WebSocket handshake,
/// `connection_established`, subscription, `subscription_succeeded`.
async fn open(spec: &ConnSpec, shared: &Shared) -> Result<Ws, String> {
    let socket = match spec.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = spec.source {
        super::system::bind_address_no_port(&socket);
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind to {ip}: {e}"))?;
    }
    let stream = socket
        .connect(spec.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20));
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(&*spec.url, stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let first = next_text(&mut ws).await?;
    let socket_id = scan_socket_id(first.as_bytes())
        .ok_or_else(|| format!("expected connection_established, got {}", clip(&first)))?
        .to_owned();
    let channel = &shared.channels[spec.channel];
    let subscribe = subscribe_message(shared, &socket_id, channel, spec.index);
    ws.send(Message::text(subscribe))
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    loop {
        let text = next_text(&mut ws).await?;
        if text.contains("pusher_internal:subscription_succeeded") {
            return Ok(ws);
        }
        if text.contains("pusher:subscription_error") || text.contains("pusher:error") {
            return Err(format!("subscription refused: {}", clip(&text)));
        }
        if text.contains("\"pusher:ping\"") {
            let _ = ws
                .send(Message::text(r#"{"event":"pusher:pong","data":{}}"#))
                .await;
        }
    }
}

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                    None => "closed by the server".into(),
                })
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection closed".into()),
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// `pusher:subscribe`, signed locally for private and presence channels (user id = the
/// connection's index).
pub fn subscribe_message(shared: &Shared, socket_id: &str, channel: &str, index: usize) -> String {
    use warren_protocol::auth::sign_channel;
    let data = match shared.kind {
        ChannelKind::Public => serde_json::json!({"channel": channel, "auth": ""}),
        ChannelKind::Private => serde_json::json!({
            "channel": channel,
            "auth": sign_channel(&shared.key, &shared.secret, socket_id, channel, None),
        }),
        ChannelKind::Presence => {
            let channel_data = format!(r#"{{"user_id":"{index}"}}"#);
            serde_json::json!({
                "channel": channel,
                "auth": sign_channel(&shared.key, &shared.secret, socket_id, channel, Some(&channel_data)),
                "channel_data": channel_data,
            })
        }
    };
    serde_json::json!({"event": "pusher:subscribe", "data": data}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_bookkeeping() {
        let mut r = ConnResult::default();
        let mut s = SeqSet::new(200);
        for seq in [0, 1, 2, 5, 3, 3, 4, 199, 200, 1000, 130, 130] {
            s.record(seq, &mut r);
        }
        assert_eq!(r.unique, 8); // 0 1 2 5 3 4 199 130
        assert_eq!(r.duplicates, 2); // 3, 130
        assert_eq!(r.reordered, 3); // 3, 4 after 5; 130 after 199
        assert_eq!(r.unexpected, 2); // 200, 1000
    }

    #[test]
    fn subscriptions_are_signed() {
        let (_tx, stop) = watch::channel(false);
        let mut shared = Shared {
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
            kind: ChannelKind::Private,
            channels: vec![],
            max_seq: 1,
            connect_timeout: Duration::from_secs(1),
            connect_limit: Semaphore::new(1),
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            received: vec![],
            stop,
        };
        let m: serde_json::Value = serde_json::from_str(&subscribe_message(
            &shared,
            "1234.1234",
            "private-foobar",
            0,
        ))
        .expect("JSON");
        assert_eq!(
            m["data"]["auth"],
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        shared.kind = ChannelKind::Presence;
        let m: serde_json::Value =
            serde_json::from_str(&subscribe_message(&shared, "1.2", "presence-x", 7))
                .expect("JSON");
        assert_eq!(m["data"]["channel_data"], r#"{"user_id":"7"}"#);
        shared.kind = ChannelKind::Public;
        let m: serde_json::Value =
            serde_json::from_str(&subscribe_message(&shared, "1.2", "x", 7)).expect("JSON");
        assert_eq!(m["data"]["auth"], "");
    }
}
