//! The server's log as an operator's log collector reads it: `warren serve --log-format json`
//! as a child process, connection errors caused over real sockets, and every line it prints,
//! on standard output and standard error, parsed as JSON; and the level changed by `SIGHUP`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use warren_testkit::process::{hangup, logged, Warren};
use warren_testkit::ws::connect;
use warren_testkit::WAIT;

/// A `warren serve` child whose output lines are collected as they come.
struct JsonServer {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, standard output's and standard error's.
    seen: Vec<String>,
}

impl JsonServer {
    fn start(envs: &[(&str, &str)]) -> JsonServer {
        let mut command = Warren::at(env!("CARGO_BIN_EXE_warren")).command();
        command
            .args(["serve", "--port", "0", "--log-format", "json"])
            .env("WARREN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("warren starts");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for pipe in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut server = JsonServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
            seen: Vec::new(),
        };
        let banner = server.next_where(|v| v["message"] == "Warren listening");
        server.addr = banner["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {banner}"));
        server
    }

    /// The next line that `wanted` accepts; every line on the way is kept and must be JSON.
    fn next_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no such line; so far:\n{}", self.seen.join("\n")));
            self.seen.push(line.clone());
            let value = parse(&line);
            if wanted(&value) {
                return value;
            }
        }
    }

    /// Stops the server as systemd does (SIGTERM) and returns every line it printed.
    fn stop(mut self) -> Vec<Value> {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.child.wait().expect("exits");
        assert!(status.success(), "{status}");
        // The pipes close with the process; the readers end.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        self.seen.iter().map(|line| parse(line)).collect()
    }
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line as a JSON object with the fields every line has.
fn parse(line: &str) -> Value {
    let value: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    for field in ["timestamp", "level", "message", "target"] {
        assert!(value[field].is_string(), "no {field} in {line}");
    }
    value
}

fn errors(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|v| v["message"] == "connection error")
        .collect()
}

/// Sends `request` on a new connection and reads until the server closes it.
fn exchange(addr: SocketAddr, request: &[u8]) -> (SocketAddr, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let local = s.local_addr().expect("local address");
    s.write_all(request).expect("write");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    (local, answer)
}

/// An upgrade without its `Sec-WebSocket-Key`: 400.
const BAD_UPGRADE: &[u8] =
    b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn upgrade(key: &str) -> Vec<u8> {
    format!(
        "GET /app/{key}?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes()
}

/// Upgrades to the demo app and reads the 101 head and `connection_established`.
fn connected(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&upgrade("app-key")).expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("101 head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // One text frame, short enough for a 7-bit length.
    let mut header = [0u8; 2];
    s.read_exact(&mut header).expect("frame header");
    let mut payload = vec![0u8; usize::from(header[1] & 0x7f)];
    s.read_exact(&mut payload).expect("connection_established");
    assert!(String::from_utf8_lossy(&payload).contains("connection_established"));
    s
}

#[test]
fn each_connection_error_is_one_json_line_with_kind_peer_socket_and_reason() {
    let mut server = JsonServer::start(&[("WARREN_SERVER__HANDSHAKE_TIMEOUT_MS", "300")]);
    let addr = server.addr;
    let mut expected: HashMap<&str, SocketAddr> = HashMap::new();
    // A load balancer's TCP check (connect, close) is no error: no line may come of it.
    drop(TcpStream::connect(addr).expect("connect"));

    let (peer, answer) = exchange(addr, BAD_UPGRADE);
    assert!(answer.starts_with(b"HTTP/1.1 400"));
    expected.insert("bad_request", peer);

    let (peer, answer) = exchange(addr, &upgrade("no-such-key"));
    assert!(answer.starts_with(b"HTTP/1.1 101"));
    expected.insert("app_refused", peer);

    // Half a request head, then nothing: the server gives up after the handshake timeout.
    let (peer, _) = exchange(addr, b"GET /app/app-key HTTP/1.1\r\nHost:");
    expected.insert("handshake_timeout", peer);

    // An unmasked frame from a client breaks RFC 6455: close 1002.
    let mut ws = connected(addr);
    expected.insert("protocol_error", ws.local_addr().expect("local"));
    ws.write_all(&[0x81, 0x02, b'h', b'i']).expect("write");
    let _ = ws.read_to_end(&mut Vec::new());

    // Gone without a close frame.
    let ws = connected(addr);
    expected.insert("client_gone", ws.local_addr().expect("local"));
    drop(ws);
    server.next_where(|v| v["kind"] == "client_gone");

    let lines = server.stop();
    let errors = errors(&lines);
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for error in &errors {
        let kind = error["kind"].as_str().expect("kind");
        let peer = expected
            .get(kind)
            .unwrap_or_else(|| panic!("unexpected {error}"));
        assert_eq!(error["peer"], peer.to_string(), "{error}");
        assert_eq!(error["level"], "INFO", "{error}");
        assert!(
            error["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{error}"
        );
        let code = error["code"].as_u64();
        match kind {
            "bad_request" => assert_eq!(code, Some(400)),
            "app_refused" => assert_eq!(code, Some(4001)),
            "protocol_error" => assert_eq!(code, Some(1002)),
            _ => assert_eq!(code, None, "{error}"),
        }
        let has_socket = error["socket_id"]
            .as_str()
            .is_some_and(|id| id.contains('.'));
        let should = matches!(kind, "protocol_error" | "client_gone");
        assert_eq!(has_socket, should, "{error}");
    }
    let kinds: Vec<_> = errors.iter().map(|e| e["kind"].as_str()).collect();
    for kind in expected.keys() {
        assert!(kinds.contains(&Some(*kind)), "{kind} not in {kinds:?}");
    }
}

#[test]
fn a_flood_of_failed_handshakes_takes_a_bounded_number_of_lines() {
    const CLIENTS: usize = 10_000;
    const THREADS: usize = 4;
    const LINES: u64 = 5;
    // A window longer than the test: what is suppressed is reported when the server stops.
    let server = JsonServer::start(&[
        ("WARREN_LOG__CONNECTION_ERROR_LINES", "5"),
        ("WARREN_LOG__CONNECTION_ERROR_WINDOW_SECS", "3600"),
    ]);
    let addr = server.addr;
    let clients: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..CLIENTS / THREADS {
                    let (_, answer) = exchange(addr, BAD_UPGRADE);
                    assert!(answer.starts_with(b"HTTP/1.1 400"));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let lines = server.stop();
    let errors = errors(&lines);
    assert_eq!(errors.len() as u64, LINES, "{errors:#?}");
    assert!(errors.iter().all(|e| e["kind"] == "bad_request"));
    let suppressed: Vec<_> = lines.iter().filter(|v| v["suppressed"].is_u64()).collect();
    assert_eq!(suppressed.len(), 1, "{suppressed:#?}");
    let line = suppressed[0];
    let rest = CLIENTS as u64 - LINES;
    assert_eq!(line["kind"], "bad_request");
    assert_eq!(line["suppressed"], rest);
    assert_eq!(
        line["message"],
        format!("{rest} similar connection errors suppressed")
    );
    // The banner (three lines), the five errors, the count, the shutdown notice.
    assert!(lines.len() < 20, "{} lines: {lines:#?}", lines.len());
}

#[test]
fn text_is_the_default_and_the_level_comes_from_the_configuration() {
    // `[log] level = "warn"` hides the connection errors (informational); WARREN_LOG wins.
    let run = |envs: &[(&str, &str)]| {
        let mut command = Warren::at(env!("CARGO_BIN_EXE_warren")).command();
        command
            .args(["serve", "--port", "0"])
            .env_remove("WARREN_LOG")
            .env("WARREN_LOG__LEVEL", "warn")
            .stdout(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("starts");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("banner");
        assert!(first.starts_with("Warren "), "text banner: {first}");
        let port: u16 = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let (_, answer) = exchange(SocketAddr::from(([127, 0, 0, 1], port)), BAD_UPGRADE);
        assert!(answer.starts_with(b"HTTP/1.1 400"));
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let mut rest = String::new();
        out.read_to_string(&mut rest).expect("output");
        let _ = child.wait();
        rest
    };
    let quiet = run(&[]);
    assert!(!quiet.contains("connection error"), "{quiet}");
    let loud = run(&[("WARREN_LOG", "info")]);
    let line = loud
        .lines()
        .find(|l| l.contains("connection error"))
        .unwrap_or_else(|| panic!("{loud}"));
    assert!(line.contains("kind=bad_request"), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
}

/// The first line `warren serve` prints with `envs` and `args`, and the process killed.
fn first_line(args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut command = Warren::at(env!("CARGO_BIN_EXE_warren")).command();
    command
        .args(["serve", "--port", "0"])
        .args(args)
        .env_remove("WARREN_LOG")
        .stdout(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a line");
    let _ = child.kill();
    let _ = child.wait();
    first
}

#[test]
fn the_format_comes_from_the_configuration_and_the_flag_wins() {
    let json = first_line(&[], &[("WARREN_LOG__FORMAT", "json")]);
    assert_eq!(parse(&json)["message"], "Warren listening", "{json}");
    let text = first_line(&["--log-format", "text"], &[("WARREN_LOG__FORMAT", "json")]);
    assert!(text.starts_with("Warren "), "{text}");
}

#[test]
fn a_warren_log_that_is_no_filter_stops_the_start() {
    let out = Warren::at(env!("CARGO_BIN_EXE_warren"))
        .command()
        .args(["serve", "--port", "0"])
        .env("WARREN_LOG", "warren=loud")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid WARREN_LOG"), "{err}");
}

/// Lines of `log` up to the first containing `text` (included); panics after [`WAIT`].
fn lines_until(log: &mpsc::Receiver<String>, text: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = log
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {text:?} after {lines:#?}"));
        lines.push(line);
        if lines.last().is_some_and(|l| l.contains(text)) {
            return lines;
        }
    }
}

#[tokio::test]
async fn sighup_applies_the_log_level_and_names_a_format_change() {
    let dir = std::env::temp_dir().join(format!("warren-log-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let file = dir.join("warren.toml");
    std::fs::write(&file, "[log]\nlevel = \"info\"\n").expect("writes the configuration");
    let config = file.display().to_string();
    // An empty WARREN_LOG is no WARREN_LOG: the file's level is in force.
    let (served, log) = Warren::at(env!("CARGO_BIN_EXE_warren"))
        .serve_logged(&["--config", &config], &[("WARREN_LOG", "")]);

    // At info, a connection's end (a debug line) is not written.
    connect(&served).await.close().await;
    let debug = "info,warren_server::connection=debug";
    let text = format!("[log]\nlevel = \"{debug}\"\nformat = \"json\"\n");
    std::fs::write(&file, text).expect("writes the configuration");
    hangup(&served);
    let before = lines_until(&log, "configuration reloaded");
    assert!(
        !before.iter().any(|l| l.contains("connection ended")),
        "{before:#?}"
    );
    let changed = before.iter().find(|l| l.contains("log level changed"));
    assert!(changed.is_some_and(|l| l.contains(debug)), "{before:#?}");
    // The format needs a restart: named, and the log stays text.
    let warned = logged(&log, "only after a restart");
    assert!(warned.contains("log.format"), "{warned}");
    assert!(!warned.contains("log.level"), "{warned}");

    connect(&served).await.close().await;
    let ended = logged(&log, "connection ended");
    assert!(
        ended.contains("DEBUG") && !ended.starts_with('{'),
        "{ended}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_warren_log_pins_the_level_through_sighup() {
    let dir = std::env::temp_dir().join(format!("warren-log-pin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let file = dir.join("warren.toml");
    std::fs::write(&file, "[log]\nlevel = \"info\"\n").expect("writes the configuration");
    let config = file.display().to_string();
    let (served, log) = Warren::at(env!("CARGO_BIN_EXE_warren"))
        .serve_logged(&["--config", &config], &[("WARREN_LOG", "info")]);
    std::fs::write(&file, "[log]\nlevel = \"debug\"\n").expect("writes the configuration");
    hangup(&served);
    let refused = logged(&log, "log.level not applied");
    assert!(refused.contains("WARREN_LOG"), "{refused}");
    let _ = std::fs::remove_dir_all(&dir);
}
