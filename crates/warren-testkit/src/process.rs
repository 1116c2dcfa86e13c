//! `warren serve` as a child process, for tests of the binary as operators run it.
//!
//! The kit cannot depend on a binary, so the tests hand it the path Cargo gives them:
//! `Warren::at(env!("CARGO_BIN_EXE_warren"))`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use crate::{Endpoint, WAIT};

/// The `warren` binary under test.
pub struct Warren {
    bin: PathBuf,
}

impl Warren {
    pub fn at(bin: impl Into<PathBuf>) -> Warren {
        Warren { bin: bin.into() }
    }

    /// A command running the binary, for tests that run it themselves.
    pub fn command(&self) -> Command {
        Command::new(&self.bin)
    }

    /// Starts `warren serve --port 0 EXTRA...` with `envs` and reads the bound port from the
    /// banner's first line ("Warren x.y.z listening on 127.0.0.1:PORT").
    pub fn serve(&self, extra: &[&str], envs: &[(&str, &str)]) -> Served {
        let mut command = self.command();
        command
            .args(["serve", "--port", "0"])
            .args(extra)
            .env("WARREN_LOG", "warn")
            .stdout(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("warren starts");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        // Log lines may come first (a node waiting for its id to be free, say).
        let mut first = String::new();
        loop {
            first.clear();
            let n = reader.read_line(&mut first).expect("reads the banner");
            if n == 0 || first.contains(" listening on ") {
                break;
            }
        }
        // Keep draining: a closed pipe would make the server's next print fail.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in the banner: {first:?}"));
        Served { child, port }
    }
}

/// A `warren serve` child; killed (SIGKILL) on drop.
pub struct Served {
    pub child: Child,
    pub port: u16,
}

impl Served {
    /// The base URL of its HTTP API.
    pub fn url(&self) -> String {
        self.http_url()
    }

    /// SIGKILL: no goodbye, no cleanup, as when a node dies.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Endpoint for Served {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends `SIGHUP` to the server.
pub fn hangup(served: &Served) {
    let pid = libc::pid_t::try_from(served.child.id()).expect("a pid");
    // SAFETY: kill only sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "SIGHUP sent");
}

impl Warren {
    /// `warren serve --port 0 EXTRA...` with `envs`; its log lines (level info) come out of the
    /// receiver.
    pub fn serve_logged(
        &self,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> (Served, mpsc::Receiver<String>) {
        let mut command = self.command();
        command
            .args(["serve", "--port", "0"])
            .args(extra)
            .env("WARREN_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("warren starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        // Log lines may come before the banner (a database refused at once, say): kept.
        let (mut banner, mut early) = (String::new(), Vec::new());
        loop {
            banner.clear();
            let n = stdout.read_line(&mut banner).expect("the banner");
            if n == 0 || banner.contains(" listening on ") {
                break;
            }
            early.push(banner.trim_end().to_owned());
        }
        let port = banner
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in the banner: {banner:?}"));
        // Log lines go to stdout or stderr, depending on the log set-up: both are read.
        let (lines, log) = mpsc::channel();
        for line in early {
            let _ = lines.send(line);
        }
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let forward = |lines: mpsc::Sender<String>, from: Box<dyn BufRead + Send>| {
            std::thread::spawn(move || {
                for line in from.lines().map_while(Result::ok) {
                    let _ = lines.send(line);
                }
            })
        };
        forward(lines.clone(), Box::new(stdout));
        forward(lines, Box::new(stderr));
        (Served { child, port }, log)
    }
}

/// Waits (at most [`WAIT`]) for a log line containing `text`, and returns it.
pub fn logged(log: &mpsc::Receiver<String>, text: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line with {text:?}"),
        }
    }
}
