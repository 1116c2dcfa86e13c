//! The subscribers: connections spread over a few OS threads, each running a single-threaded
//! runtime, so that per-message work touches only thread-local state (no locks, no
//! allocation). Each connection keeps its own sequence bookkeeping; each thread keeps the
//! latency histograms; everything is merged when the run ends.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::net::TcpSocket;
use tokio::sync::{watch, Semaphore};

use super::scan::{scan_frame, scan_socket_id, Scanned, EVENT};
use super::ws::{encode_frame, Frame, WsClient, OP_PONG, OP_TEXT};
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
    let stopper = Rc::new(Stopper::new(specs.len()));
    let connections = tasks.block_on(&runtime, async {
        let watching = stopper.clone();
        let stop = shared.stop.clone();
        tokio::task::spawn_local(async move { watching.watch(stop).await });
        let handles: Vec<_> = specs
            .into_iter()
            .enumerate()
            .map(|(slot, spec)| {
                let shared = shared.clone();
                let local = local.clone();
                let stopper = stopper.clone();
                tokio::task::spawn_local(connection(t, slot, spec, shared, local, stopper))
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

async fn connection(
    t: usize,
    slot: usize,
    spec: ConnSpec,
    shared: Arc<Shared>,
    local: Rc<RefCell<Local>>,
    stopper: Rc<Stopper>,
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
    receive(
        &mut ws,
        &stopper,
        slot,
        &local,
        &shared.received[t],
        shared.max_seq,
        &mut result,
    )
    .await;
    result
}

const PUSHER_PONG: &[u8] = br#"{"event":"pusher:pong","data":{}}"#;

/// Receives until the end of the run (or until the connection drops): every wake reads
/// what the socket has and handles every complete frame in the buffer, with one clock
/// reading for the batch (its frames arrived together).
async fn receive(
    ws: &mut WsClient,
    stopper: &Stopper,
    slot: usize,
    local: &RefCell<Local>,
    counter: &AtomicU64,
    max_seq: u64,
    result: &mut ConnResult,
) {
    let mut seen = SeqSet::new(max_seq);
    let event = EVENT.as_bytes();
    loop {
        let now = now_ns();
        let mut delivered = 0u64;
        let mut broken = false;
        {
            let mut l = local.borrow_mut();
            loop {
                match ws.reader.next() {
                    Ok(Some(Frame::Text(text))) => match scan_frame(text, event) {
                        Scanned::Bench {
                            seq,
                            scheduled_ns,
                            sent_ns,
                        } => {
                            delivered += 1;
                            seen.record(seq, result);
                            l.latency_sent
                                .saturating_record(now.saturating_sub(sent_ns).max(1));
                            l.latency_scheduled
                                .saturating_record(now.saturating_sub(scheduled_ns).max(1));
                        }
                        Scanned::Ping => encode_frame(OP_TEXT, PUSHER_PONG, ws.mask, &mut ws.out),
                        Scanned::Other => {}
                    },
                    Ok(Some(Frame::Ping(payload))) => {
                        encode_frame(OP_PONG, payload, ws.mask, &mut ws.out)
                    }
                    Ok(Some(Frame::Close(_))) | Err(_) => {
                        broken = true;
                        break;
                    }
                    Ok(None) => break,
                }
            }
            if delivered > 0 && now > l.last_receipt_ns {
                l.last_receipt_ns = now;
            }
        }
        if delivered > 0 {
            counter.fetch_add(delivered, Ordering::Relaxed);
            result.received += delivered;
        }
        if broken || (!ws.out.is_empty() && ws.flush().await.is_err()) {
            result.dropped = !stopper.stopped();
            return;
        }
        // Wait for more bytes, or for the end of the run (which comes first).
        let read = poll_fn(|cx| {
            if stopper.poll_stopped(slot, cx) {
                return Poll::Ready(None);
            }
            ws.poll_read_some(cx).map(Some)
        })
        .await;
        match read {
            None => return,
            Some(Ok(n)) if n > 0 => {}
            Some(_) => {
                result.dropped = !stopper.stopped();
                return;
            }
        }
    }
}

/// The end of the run as one thread's connections see it: a flag, set (and the waiting
/// connections woken) by one task per thread that watches `Shared::stop`. Checking it costs
/// a `Cell` read per wake, where a `watch::Receiver::changed()` future per wait would take
/// the channel's shared lock twice.
struct Stopper {
    stopped: Cell<bool>,
    /// One slot per connection of the thread: the waker of its task.
    wakers: RefCell<Vec<Option<Waker>>>,
}

impl Stopper {
    fn new(connections: usize) -> Self {
        Self {
            stopped: Cell::new(false),
            wakers: RefCell::new(vec![None; connections]),
        }
    }

    fn stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Whether the run is over; otherwise `cx` is woken when it is.
    fn poll_stopped(&self, slot: usize, cx: &mut Context<'_>) -> bool {
        if self.stopped.get() {
            return true;
        }
        let mut wakers = self.wakers.borrow_mut();
        if let Some(w) = wakers.get_mut(slot) {
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        false
    }

    fn stop(&self) {
        self.stopped.set(true);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }

    /// Sets the flag once `stop` turns true (or its sender is gone).
    async fn watch(&self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        self.stop();
    }
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
async fn open(spec: &ConnSpec, shared: &Shared) -> Result<WsClient, String> {
    let socket = match spec.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = spec.source {
        crate::system::bind_address_no_port(&socket);
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind to {ip}: {e}"))?;
    }
    let stream = socket
        .connect(spec.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut ws = WsClient::handshake(stream, &spec.url, spec.index as u64)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let first = ws.next_text().await?;
    let socket_id = scan_socket_id(&first)
        .ok_or_else(|| format!("expected connection_established, got {}", clip(&first)))?
        .to_owned();
    let channel = &shared.channels[spec.channel];
    let subscribe = subscribe_message(shared, &socket_id, channel, spec.index);
    ws.queue(OP_TEXT, subscribe.as_bytes());
    ws.flush().await.map_err(|e| format!("subscribe: {e}"))?;
    loop {
        let text = ws.next_text().await?;
        let text = String::from_utf8_lossy(&text);
        if text.contains("pusher_internal:subscription_succeeded") {
            return Ok(ws);
        }
        if text.contains("pusher:subscription_error") || text.contains("pusher:error") {
            return Err(format!("subscription refused: {}", clip(text.as_bytes())));
        }
        if text.contains("\"pusher:ping\"") {
            ws.queue(OP_TEXT, PUSHER_PONG);
            let _ = ws.flush().await;
        }
    }
}

fn clip(s: &[u8]) -> String {
    String::from_utf8_lossy(s).chars().take(200).collect()
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
    use super::super::ws::testing::{client_frame, server_frame};
    use super::*;

    fn local() -> RefCell<Local> {
        RefCell::new(Local {
            latency_sent: histogram(),
            latency_scheduled: histogram(),
            connect_time: histogram(),
            last_receipt_ns: 0,
            first_error: None,
        })
    }

    /// A fake server on 127.0.0.1: accepts one connection, reads the upgrade request, and
    /// hands the socket (after the `101` head) to `then`.
    async fn fake_server<F, Fut, T>(then: F) -> (SocketAddr, tokio::task::JoinHandle<T>)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send,
        T: Send + 'static,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accepts");
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).await.expect("request");
                request.push(byte[0]);
            }
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
                .await
                .expect("head");
            then(s).await
        });
        (addr, task)
    }

    fn bench_text(seq: u64, sent_ns: u64) -> Vec<u8> {
        // Scheduled a whole second before it was sent: far more than the histograms'
        // 3-significant-digit resolution, so the two latencies are told apart reliably.
        let data = super::super::scan::event_data(seq, sent_ns - 1_000_000_000, sent_ns, 64);
        let json = format!(r#"{{"event":"bench","channel":"bench-0","data":"{data}"}}"#);
        server_frame(0x81, json.as_bytes())
    }

    /// Deliveries (split over reads, several per read) are counted and timed; both kinds of
    /// ping are answered with masked frames; a close from the server is a dropped
    /// connection.
    #[tokio::test]
    async fn receiving_until_the_server_closes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sent = now_ns();
        let (addr, server) = fake_server(move |mut s| async move {
            let mut bytes = Vec::new();
            for seq in [0, 1, 1, 3, 2] {
                bytes.extend(bench_text(seq, sent));
            }
            // One frame and a half, then the rest, then pings.
            let cut = bytes.len() / 5 + 10;
            s.write_all(&bytes[..cut]).await.expect("writes");
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(&bytes[cut..]).await.expect("writes");
            let mut pings = server_frame(0x89, b"ws");
            pings.extend(server_frame(0x81, br#"{"event":"pusher:ping","data":{}}"#));
            s.write_all(&pings).await.expect("writes");
            let mut answers = Vec::new();
            let mut chunk = [0u8; 256];
            let mut frames = Vec::new();
            while frames.len() < 2 {
                let n = s.read(&mut chunk).await.expect("reads");
                assert!(n > 0, "the client hung up");
                answers.extend_from_slice(&chunk[..n]);
                frames.clear();
                let mut at = 0;
                while at + 2 <= answers.len() {
                    let len = usize::from(answers[at + 1] & 0x7F);
                    if at + 6 + len > answers.len() {
                        break;
                    }
                    let (op, payload, used) = client_frame(&answers[at..]);
                    frames.push((op, payload));
                    at += used;
                }
            }
            s.write_all(&server_frame(0x88, &1001u16.to_be_bytes()))
                .await
                .expect("writes");
            frames
        })
        .await;
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let mut ws = WsClient::handshake(stream, &format!("ws://{addr}/app/k"), 3)
            .await
            .expect("upgrades");
        let (stopper, local, counter) = (Stopper::new(1), local(), AtomicU64::new(0));
        let mut result = ConnResult::default();
        receive(&mut ws, &stopper, 0, &local, &counter, 10, &mut result).await;
        let frames = server.await.expect("server");
        assert_eq!(
            frames,
            [(OP_PONG, b"ws".to_vec()), (OP_TEXT, PUSHER_PONG.to_vec())]
        );
        assert_eq!(counter.load(Ordering::Relaxed), 5);
        assert_eq!(
            (
                result.received,
                result.unique,
                result.duplicates,
                result.reordered
            ),
            (5, 4, 1, 1)
        );
        assert!(result.dropped);
        let l = local.borrow();
        assert_eq!(l.latency_sent.len(), 5);
        assert_eq!(l.latency_scheduled.len(), 5);
        assert!(l.latency_scheduled.min() >= l.latency_sent.min() + 900_000_000);
        assert!(l.last_receipt_ns >= sent);
    }

    /// The end of the run stops a waiting receiver without counting it as dropped.
    #[tokio::test]
    async fn receiving_until_the_end_of_the_run() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (addr, server) = fake_server(move |mut s| async move {
            s.write_all(&bench_text(0, now_ns())).await.expect("writes");
            // Wait for the client to go away.
            let mut sink = [0u8; 64];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let mut ws = WsClient::handshake(stream, &format!("ws://{addr}/app/k"), 4)
            .await
            .expect("upgrades");
        let (stopper, local, counter) = (Stopper::new(1), local(), AtomicU64::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut result = ConnResult::default();
        tokio::join!(
            receive(&mut ws, &stopper, 0, &local, &counter, 10, &mut result),
            stopper.watch(stop_rx),
            async {
                while counter.load(Ordering::Relaxed) == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let _ = stop_tx.send(true);
            }
        );
        drop(ws);
        server.await.expect("server");
        assert_eq!((result.received, result.unique), (1, 1));
        assert!(!result.dropped);
    }

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
