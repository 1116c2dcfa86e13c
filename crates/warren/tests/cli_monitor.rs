//! `warren monitor` against a `warren serve` child process: live lines, `--json`, the
//! operator token, and a clear error when the server refuses.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};

use serde_json::{json, Value};
use warren_testkit::api::api_post;
use warren_testkit::process::{Served, Warren};
use warren_testkit::ws::connect;
use warren_testkit::WAIT;

const TOKEN: &str = "operator-token-for-the-cli-test";

fn warren() -> Warren {
    Warren::at(env!("CARGO_BIN_EXE_warren"))
}

/// `warren monitor ARGS` running, its stdout and stderr lines arriving on one channel.
struct Watching {
    child: Child,
    lines: Receiver<String>,
}

impl Watching {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = warren().command();
        command
            .arg("monitor")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("warren monitor starts");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let readers: [Box<dyn std::io::Read + Send>; 2] = [Box::new(stdout), Box::new(stderr)];
        for output in readers {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Watching { child, lines }
    }

    /// The next line containing `needle`.
    fn line_with(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {needle:?}"),
            }
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn publish(served: &Served, channel: &str) {
    let body = json!({"name":"update","channel":channel,"data":"{\"x\":1}"});
    assert_eq!(
        api_post(served, "/apps/app-id/events", body).await.status,
        200
    );
}

#[tokio::test]
async fn json_mode_prints_one_object_per_line_from_the_attached_line_on() {
    let served = warren().serve(&[], &[]);
    let watching = Watching::start(&["--url", &served.url(), "--json"], &[]);
    let attached: Value = serde_json::from_str(&watching.line_with("attached")).expect("JSON");
    assert_eq!(attached["app"], "app-id");
    let mut sub = connect(&served).await;
    sub.subscribed("news", None).await;
    publish(&served, "news").await;
    let opened: Value =
        serde_json::from_str(&watching.line_with("connection_opened")).expect("JSON");
    assert_eq!(opened["socket_id"], sub.socket_id.as_str());
    let published: Value = serde_json::from_str(&watching.line_with("api_publish")).expect("JSON");
    assert_eq!(
        (
            &published["channel"],
            &published["event"],
            &published["data"]
        ),
        (&json!("news"), &json!("update"), &json!("{\"x\":1}"))
    );
}

#[tokio::test]
async fn text_mode_with_the_operator_token_and_filters() {
    let served = warren().serve(&[], &[("WARREN_MONITOR__OPERATOR_TOKEN", TOKEN)]);
    let args = [
        "--url",
        &served.url(),
        "--token",
        TOKEN,
        "--channel-prefix",
        "orders-",
    ];
    let watching = Watching::start(&args, &[]);
    // The note on stderr says the tap is in place.
    watching.line_with("watching");
    publish(&served, "news").await;
    publish(&served, "orders-1").await;
    let line = watching.line_with("api_publish");
    assert!(
        line.contains(" app-id api_publish orders-1 update {\"x\":1}"),
        "{line}"
    );
}

#[test]
fn a_refused_signature_is_an_error_with_the_reason() {
    let served = warren().serve(&[], &[]);
    let out = warren()
        .command()
        .args([
            "monitor",
            "--url",
            &served.url(),
            "--app",
            "app-id",
            "--key",
            "app-key",
        ])
        .args(["--secret", "wrong"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("signature"), "{err}");
}
