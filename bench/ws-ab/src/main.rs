//! ws-ab: the same push-server harness over three server-side WebSocket implementations.
//!
//! `ws-ab serve --impl tungstenite|tungstenite-4k|fastws|warren --port P [--rate R] [--payload B]`
//!   Accepts WebSocket connections; one task per connection reads (and ignores) client frames
//!   and writes every frame of a shared fan-out (`tokio::sync::broadcast`, the same for all
//!   three). Publishing is started by SIGUSR1 and stopped by SIGUSR2: R events/s of B bytes to
//!   every connection. On SIGUSR2 it waits for the fan-out to drain and prints one line:
//!   `PUBLISHED events=E receivers=N lagged=L cpu_s=X` where X is the process's user+system CPU
//!   (getrusage: the same counters as /proc/PID/stat utime+stime, at microsecond resolution)
//!   between SIGUSR1 and the end of the drain.
//!
//! `ws-ab load --port P --connections N --seconds S [--threads T]`
//!   Opens N raw-TCP WebSocket clients (one fixed handshake, then a byte scanner that counts
//!   text frames), prints `READY connected=N ...` once all are open, then counts frames for S
//!   seconds from the first frame seen and prints `RESULT frames=F seconds=S frames_per_s=...`.
//!   It then keeps the connections open until it is killed.

use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

const BROADCAST_CAPACITY: usize = 1024;
/// Largest client message accepted by Warren's decoder (the harness's clients send none).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Frames written per `writev` at most in the Warren variant (as in Warren's connection task).
const MAX_BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage() };
    let opts = Opts::parse(&args[1..]);
    let result = match cmd.as_str() {
        "serve" => serve(opts),
        "load" => load(opts),
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("ws-ab: {e}");
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!(
        "usage:\n  ws-ab serve --impl tungstenite|tungstenite-4k|fastws|warren --port P [--rate EVENTS_PER_S] [--payload BYTES]\n  \
         ws-ab load --port P --connections N --seconds S [--threads T] [--concurrency C]"
    );
    std::process::exit(2)
}

struct Opts {
    imp: String,
    port: u16,
    rate: f64,
    payload: usize,
    connections: usize,
    seconds: f64,
    threads: usize,
    concurrency: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut o = Opts {
            imp: String::new(),
            port: 0,
            rate: 5.0,
            payload: 64,
            connections: 1000,
            seconds: 10.0,
            threads: 1,
            concurrency: 256,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().unwrap_or_else(|| usage());
            match flag.as_str() {
                "--impl" => o.imp = value.clone(),
                "--port" => o.port = num(flag, value),
                "--rate" => o.rate = num(flag, value),
                "--payload" => o.payload = num(flag, value),
                "--connections" => o.connections = num(flag, value),
                "--seconds" => o.seconds = num(flag, value),
                "--threads" => o.threads = num(flag, value),
                "--concurrency" => o.concurrency = num(flag, value),
                _ => usage(),
            }
        }
        if o.port == 0 {
            usage()
        }
        o
    }
}

fn num<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value.parse().unwrap_or_else(|_| {
        eprintln!("ws-ab: bad value for {flag}: {value}");
        std::process::exit(2)
    })
}

// ---------------------------------------------------------------------------------------------
// serve
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Tungstenite,
    /// tokio-tungstenite with `read_buffer_size` 4 KiB instead of its 128 KiB default.
    Tungstenite4k,
    FastWs,
    Warren,
}

struct Counters {
    lagged: AtomicU64,
}

fn serve(opts: Opts) -> io::Result<()> {
    let imp = match opts.imp.as_str() {
        "tungstenite" => Impl::Tungstenite,
        "tungstenite-4k" => Impl::Tungstenite4k,
        "fastws" => Impl::FastWs,
        "warren" => Impl::Warren,
        _ => usage(),
    };
    // The default multi-threaded runtime: one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], opts.port)))?;
        let listener = socket.listen(8192)?;
        let (tx, _) = broadcast::channel::<Bytes>(BROADCAST_CAPACITY);
        let counters = Arc::new(Counters {
            lagged: AtomicU64::new(0),
        });
        tokio::spawn(publisher(imp, tx.clone(), counters.clone(), opts.rate, opts.payload));
        println!("LISTENING pid={} impl={}", std::process::id(), opts.imp);
        io::stdout().flush()?;
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            let counters = counters.clone();
            tokio::spawn(async move {
                match imp {
                    Impl::Tungstenite => conn_tungstenite(tcp, tx, counters, None).await,
                    Impl::Tungstenite4k => conn_tungstenite(tcp, tx, counters, Some(4096)).await,
                    Impl::FastWs => conn_fastws(tcp, tx, counters).await,
                    Impl::Warren => conn_warren(tcp, tx, counters).await,
                }
            });
        }
    })
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A `payload`-byte ASCII event (Pusher-like JSON), different for every sequence number.
fn event_payload(seq: u64, payload: usize) -> Vec<u8> {
    let mut s = format!("{{\"event\":\"bench\",\"channel\":\"all\",\"data\":\"{seq} ");
    while s.len() + 2 < payload {
        s.push('x');
    }
    s.push_str("\"}");
    s.into_bytes()
}

async fn publisher(imp: Impl, tx: broadcast::Sender<Bytes>, counters: Arc<Counters>, rate: f64, payload: usize) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut start = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
    let mut stop = signal(SignalKind::user_defined2()).expect("SIGUSR2 handler");
    loop {
        start.recv().await;
        let cpu0 = cpu_seconds();
        let receivers = tx.receiver_count();
        let mut events = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let body = event_payload(events, payload);
                    // Warren frames an event once and every connection writes those bytes; the
                    // two crates get the payload and frame it per connection, as they must.
                    let item = match imp {
                        Impl::Warren => warren_server::ws::frame::text(&body),
                        _ => Bytes::from(body),
                    };
                    let _ = tx.send(item);
                    events += 1;
                }
                _ = stop.recv() => break,
            }
        }
        // Let every connection write what is queued for it (they keep up at the chosen rates).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu = cpu_seconds() - cpu0;
        println!(
            "PUBLISHED events={events} receivers={receivers} lagged={} cpu_s={cpu:.6}",
            counters.lagged.load(Ordering::Relaxed)
        );
        let _ = io::stdout().flush();
    }
}

/// Receives the next fan-out item; `None` once the channel is closed. Lagging (never expected at
/// the benchmark's rates) is counted and reported.
async fn next_item(rx: &mut broadcast::Receiver<Bytes>, counters: &Counters) -> Option<Bytes> {
    loop {
        match rx.recv().await {
            Ok(b) => return Some(b),
            Err(RecvError::Lagged(n)) => {
                counters.lagged.fetch_add(n, Ordering::Relaxed);
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

// --- (A) tokio-tungstenite: its own handshake, `split()`, `sink.send(Message::Text)` per frame.
// Default configuration, or (`tungstenite-4k`) a 4 KiB read buffer: tungstenite 0.26 zero-fills
// its whole read buffer capacity before every read attempt, so the 128 KiB default is both
// resident memory and a 128 KiB memset each time the read half is polled.

async fn conn_tungstenite(
    tcp: TcpStream,
    tx: broadcast::Sender<Bytes>,
    counters: Arc<Counters>,
    read_buffer: Option<usize>,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{protocol::WebSocketConfig, Message, Utf8Bytes};
    let config = read_buffer.map(|n| WebSocketConfig::default().read_buffer_size(n));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, config).await else {
        return;
    };
    let mut rx = tx.subscribe();
    drop(tx);
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            item = next_item(&mut rx, &counters) => {
                let Some(payload) = item else { break };
                // SAFETY: the publisher only produces ASCII payloads.
                let text = unsafe { Utf8Bytes::from_bytes_unchecked(payload) };
                if sink.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
        }
    }
}

// --- (B) fastwebsockets: handshake by hand (shared with C), `write_frame` per frame.

async fn conn_fastws(tcp: TcpStream, tx: broadcast::Sender<Bytes>, counters: Arc<Counters>) {
    use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
    let Ok((tcp, _rest)) = hand_handshake(tcp).await else {
        return;
    };
    let mut rx = tx.subscribe();
    drop(tx);
    let mut ws = WebSocket::after_handshake(tcp, Role::Server);
    loop {
        tokio::select! {
            frame = ws.read_frame() => match frame {
                Ok(f) if f.opcode == OpCode::Close => break,
                Ok(_) => {}
                Err(_) => break,
            },
            item = next_item(&mut rx, &counters) => {
                let Some(payload) = item else { break };
                if ws.write_frame(Frame::text(Payload::Borrowed(&payload))).await.is_err() {
                    break;
                }
            }
        }
    }
}

// --- (C) Warren: its handshake module, its frame decoder, pre-framed shared bytes, writev.

async fn conn_warren(tcp: TcpStream, tx: broadcast::Sender<Bytes>, counters: Arc<Counters>) {
    use warren_server::ws::frame::{self, Decoder, Message};
    let Ok((mut tcp, mut inbuf)) = hand_handshake(tcp).await else {
        return;
    };
    let mut rx = tx.subscribe();
    drop(tx);
    let mut decoder = Decoder::new(MAX_CLIENT_MESSAGE);
    loop {
        tokio::select! {
            ready = tcp.readable() => {
                if ready.is_err() {
                    break;
                }
                // Read only when there is something to read: no read buffer while idle.
                inbuf.reserve(512);
                match tcp.try_read_buf(&mut inbuf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => break,
                }
                let mut closing = false;
                loop {
                    match decoder.decode(&mut inbuf) {
                        Ok(Some(Message::Close(code))) => {
                            let _ = tcp.write_all(&frame::close(code.unwrap_or(1000), "")).await;
                            closing = true;
                            break;
                        }
                        Ok(Some(Message::Ping(p))) => {
                            if tcp.write_all(&frame::pong(&p)).await.is_err() {
                                closing = true;
                                break;
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tcp.write_all(&frame::close(e.close_code(), "")).await;
                            closing = true;
                            break;
                        }
                    }
                }
                if closing {
                    break;
                }
                if inbuf.is_empty() {
                    inbuf = BytesMut::new();
                }
            }
            item = next_item(&mut rx, &counters) => {
                let Some(first) = item else { break };
                // Whatever else is already queued leaves in the same writev (rare at these rates).
                let mut more: Vec<Bytes> = Vec::new();
                while more.len() + 1 < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(b) => more.push(b),
                        Err(TryRecvError::Lagged(n)) => {
                            counters.lagged.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
                let ok = if more.is_empty() {
                    tcp.write_all(&first).await.is_ok()
                } else {
                    more.insert(0, first);
                    write_all_vectored(&mut tcp, &mut more).await.is_ok()
                };
                if !ok {
                    break;
                }
            }
        }
    }
}

async fn write_all_vectored(tcp: &mut TcpStream, frames: &mut [Bytes]) -> io::Result<()> {
    let mut first = 0;
    while first < frames.len() {
        let slices: Vec<IoSlice<'_>> = frames[first..].iter().map(|b| IoSlice::new(b)).collect();
        let mut n = tcp.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while first < frames.len() && n >= frames[first].len() {
            n -= frames[first].len();
            first += 1;
        }
        if n > 0 {
            frames[first].advance(n);
        }
    }
    Ok(())
}

/// Reads the request head and answers the upgrade with Warren's `ws::handshake` module; returns
/// the stream and any bytes read past the head.
async fn hand_handshake(mut tcp: TcpStream) -> io::Result<(TcpStream, BytesMut)> {
    use warren_server::ws::handshake::{self, Head, MAX_HEAD};
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match handshake::parse_head(&buf) {
            Ok(Some(Head::WebSocket(up))) => {
                tcp.write_all(handshake::switching_protocols(&up.accept).as_bytes())
                    .await?;
                let rest = buf.split_off(up.head_len);
                // Keep only the leftover bytes (normally none), not the head's buffer.
                return Ok((tcp, BytesMut::from(&rest[..])));
            }
            Ok(Some(_)) | Err(_) => return Err(io::ErrorKind::InvalidData.into()),
            Ok(None) if buf.len() >= MAX_HEAD => return Err(io::ErrorKind::InvalidData.into()),
            Ok(None) => buf.reserve(1024),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// load
// ---------------------------------------------------------------------------------------------

fn load(opts: Opts) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    let threads = opts.threads.max(1);
    let frames = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    for t in 0..threads {
        let n = opts.connections / threads + usize::from(t < opts.connections % threads);
        let concurrency = (opts.concurrency / threads).max(1);
        let (frames, connected, failed) = (frames.clone(), connected.clone(), failed.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
                let mut tasks = Vec::with_capacity(n);
                for _ in 0..n {
                    let permit = gate.clone().acquire_owned().await.expect("semaphore");
                    let (frames, connected, failed) = (frames.clone(), connected.clone(), failed.clone());
                    tasks.push(tokio::spawn(async move {
                        let tcp = match client_connect(addr).await {
                            Ok(tcp) => tcp,
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        };
                        connected.fetch_add(1, Ordering::Relaxed);
                        drop(permit);
                        client_count(tcp, &frames).await;
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
    }
    let total = opts.connections as u64;
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < total {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "READY connected={} failed={} connect_s={:.2}",
        connected.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    io::stdout().flush()?;
    // The window starts at the first frame, so it does not depend on when publishing starts.
    let base = frames.load(Ordering::Relaxed);
    while frames.load(Ordering::Relaxed) == base {
        std::thread::sleep(Duration::from_millis(1));
    }
    let t0 = Instant::now();
    let f0 = frames.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(opts.seconds));
    let f1 = frames.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "RESULT frames={} seconds={secs:.3} frames_per_s={:.0}",
        f1 - f0,
        (f1 - f0) as f64 / secs
    );
    io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

async fn client_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(
        b"GET /app/key?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await?;
    // Read the 101 answer byte by byte so no frame byte is consumed with it.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 || head.len() > 4096 {
            return Err(io::ErrorKind::InvalidData.into());
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(io::ErrorKind::InvalidData.into());
    }
    Ok(tcp)
}

/// Counts text frames in the (unmasked) server stream without decoding payloads.
async fn client_count(mut tcp: TcpStream, frames: &AtomicU64) {
    let mut buf = vec![0u8; 4096];
    let mut header = [0u8; 10];
    let mut have = 0usize; // header bytes collected
    let mut skip = 0u64; // payload bytes still to skip
    loop {
        let n = match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut i = 0;
        let mut counted = 0;
        while i < n {
            if skip > 0 {
                let take = (skip.min((n - i) as u64)) as usize;
                skip -= take as u64;
                i += take;
                continue;
            }
            header[have] = buf[i];
            have += 1;
            i += 1;
            if have < 2 {
                continue;
            }
            let need = match header[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            if have < need {
                continue;
            }
            skip = match need {
                4 => u16::from_be_bytes([header[2], header[3]]) as u64,
                10 => u64::from_be_bytes(header[2..10].try_into().unwrap()),
                _ => (header[1] & 0x7f) as u64,
            };
            if header[0] & 0x0f == 0x1 {
                counted += 1;
            }
            have = 0;
        }
        if counted > 0 {
            frames.fetch_add(counted, Ordering::Relaxed);
        }
    }
}
