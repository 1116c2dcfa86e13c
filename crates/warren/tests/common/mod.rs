//! Running `warren serve` as a child process, shared by the binary's integration tests.

#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `warren serve --port 0` child; killed (SIGKILL) on drop.
pub struct Served {
    pub child: Child,
    pub port: u16,
}

impl Served {
    /// Starts `warren serve --port 0 EXTRA...` with `envs` and reads the bound port from the
    /// banner's first line ("Warren x.y.z listening on 127.0.0.1:PORT").
    pub fn start(extra: &[&str], envs: &[(&str, &str)]) -> Served {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
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
        let mut first = String::new();
        reader.read_line(&mut first).expect("reads the banner");
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no goodbye, no cleanup.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill9();
    }
}
