//! `warren serve` with `[server.tls]` reloads its certificate on `SIGHUP`, keeping its
//! connections, and keeps the current certificate when the files do not load.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Instant;

use serde_json::json;
use warren_testkit::process::{Served, Warren};
use warren_testkit::tls::{https_api_post, peer_certificate, TestCa};
use warren_testkit::WAIT;

fn hangup(served: &Served) {
    let pid = libc::pid_t::try_from(served.child.id()).expect("a pid");
    // SAFETY: kill only sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "SIGHUP sent");
}

/// `warren serve --port 0` with `envs`; its log lines (level info) come out of the receiver.
fn serve_logged(envs: &[(&str, &str)]) -> (Served, mpsc::Receiver<String>) {
    let mut command = Warren::at(env!("CARGO_BIN_EXE_warren")).command();
    command
        .args(["serve", "--port", "0"])
        .env("WARREN_LOG", "info")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("warren starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut banner = String::new();
    stdout.read_line(&mut banner).expect("the banner");
    let port = banner
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in the banner: {banner:?}"));
    // Log lines go to stdout or stderr, depending on the log set-up: both are read.
    let (lines, log) = mpsc::channel();
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

/// Waits (at most [`WAIT`]) for a log line containing `text`, and returns it.
fn logged(log: &mpsc::Receiver<String>, text: &str) -> String {
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

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_connections() {
    let ca = TestCa::new();
    let first = ca.issue("first");
    let files = ca.install(&first);
    let (cert, key) = (files.cert_file.display(), files.key_file.display());
    let (cert, key) = (cert.to_string(), key.to_string());
    let (mut served, log) = serve_logged(&[
        ("WARREN_SERVER__TLS__CERT_FILE", &cert),
        ("WARREN_SERVER__TLS__KEY_FILE", &key),
    ]);
    let mut old = ca.connect(&served).await;
    assert!(
        peer_certificate(&old.ws) == first.der,
        "the first certificate"
    );
    old.subscribed("reloaded", None).await;

    let second = ca.issue("second");
    ca.install(&second);
    hangup(&served);
    logged(&log, "TLS certificate reloaded");
    let socket = ca.connect(&served).await;
    assert!(
        peer_certificate(&socket.ws) == second.der,
        "new connections get the new certificate after SIGHUP"
    );

    // A file that does not load: the process lives on and keeps the certificate it has.
    std::fs::write(&files.cert_file, "not PEM").expect("write");
    hangup(&served);
    let failed = logged(&log, "TLS reload failed");
    assert!(failed.contains("server.tls.cert_file"), "{failed}");
    let https = ca.https_client();
    let event = json!({"name": "after", "channel": "reloaded", "data": "still here"});
    let (status, body) = https_api_post(&https, &served, "/apps/app-id/events", &event)
        .await
        .expect("HTTPS publish");
    assert_eq!(status, 200, "{body}");
    let got = old.recv().await;
    assert_eq!(got["data"], "still here", "the old connection lives: {got}");
    let socket = ca.connect(&served).await;
    assert!(
        peer_certificate(&socket.ws) == second.der,
        "a failed reload keeps the current certificate"
    );
    assert!(
        served.child.try_wait().expect("status").is_none(),
        "SIGHUP does not end the process"
    );
    served.kill9();
}
