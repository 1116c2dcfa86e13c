//! `warren bench` against a `warren serve --port 0` child: a short run must deliver every
//! event exactly once. Correctness only: nothing here depends on timing figures.

use serde_json::Value;
use warren_testkit::net::free_port;
use warren_testkit::process::{Served, Warren};

fn warren() -> Warren {
    Warren::at(env!("CARGO_BIN_EXE_warren"))
}

fn serve() -> Served {
    warren().serve(&[], &[])
}

/// Runs `warren bench --json` with `extra` flags; returns the exit code and the summary.
fn bench(served: &Served, extra: &[&str]) -> (i32, Value, String) {
    let url = served.url();
    let pid = served.child.id().to_string();
    let output = warren()
        .command()
        .args([
            "bench",
            "--url",
            &url,
            "--server-pid",
            &pid,
            "--json",
            "--drain-ms",
            "1000",
        ])
        .args(extra)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let summary: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no JSON summary ({e}): {stdout}\n{stderr}"));
    (output.status.code().unwrap_or(-1), summary, stderr)
}

fn assert_exactly_once(
    code: i32,
    s: &Value,
    stderr: &str,
    connections: u64,
    events: u64,
    channels: u64,
) {
    assert_eq!(code, 0, "{s}\n{stderr}");
    assert_eq!(s["connections"]["connected"], connections, "{s}");
    assert_eq!(s["connections"]["failed"], 0, "{s}");
    assert_eq!(s["publish"]["accepted"], events, "{s}");
    assert_eq!(s["publish"]["errors"], 0, "{s}");
    // Every connection is on one of the channels; each channel got events/channels events.
    let expected = connections * events / channels;
    let d = &s["deliveries"];
    assert_eq!(d["expected"], expected, "{s}");
    assert_eq!(d["received"], expected, "{s}");
    assert_eq!(d["unique"], expected, "{s}");
    assert_eq!(d["lost"], 0, "{s}");
    assert_eq!(d["duplicates"], 0, "{s}");
    assert_eq!(d["unexpected"], 0, "{s}");
    assert_eq!(d["dropped_connections"], 0, "{s}");
    assert_eq!(s["latency_from_publish"]["count"], expected, "{s}");
    assert!(s["server"]["rss_after_bytes"].as_u64().is_some(), "{s}");
    assert!(s["server"]["cpu_ns"].as_u64().is_some(), "{s}");
}

#[test]
fn public_channels_deliver_every_event_exactly_once() {
    let served = serve();
    let (code, s, stderr) = bench(
        &served,
        &[
            "--connections",
            "200",
            "--channels",
            "10",
            "--rate",
            "50",
            "--duration",
            "2",
        ],
    );
    assert_exactly_once(code, &s, &stderr, 200, 100, 10);
    assert!(
        stderr.contains("connected 200/200"),
        "progress lines: {stderr}"
    );
}

#[test]
fn private_and_presence_channels_with_batches_and_source_addresses() {
    let served = serve();
    let (code, s, stderr) = bench(
        &served,
        &[
            "--connections",
            "100",
            "--channels",
            "5",
            "--rate",
            "50",
            "--duration",
            "1",
            "--channel-kind",
            "private",
            "--batch",
            "5",
            "--source-ips",
            "127.0.0.1,127.0.0.2",
        ],
    );
    assert_exactly_once(code, &s, &stderr, 100, 50, 5);
    let (code, s, stderr) = bench(
        &served,
        &[
            "--connections",
            "60",
            "--channels",
            "3",
            "--rate",
            "30",
            "--duration",
            "1",
            "--channel-kind",
            "presence",
            "--payload",
            "300",
        ],
    );
    assert_exactly_once(code, &s, &stderr, 60, 30, 3);
}

#[test]
fn failures_exit_non_zero_and_bad_flags_are_explained() {
    // Nothing listens: every connection fails.
    let url = format!("http://127.0.0.1:{}", free_port());
    let output = warren()
        .command()
        .args([
            "bench",
            "--url",
            &url,
            "--connections",
            "3",
            "--duration",
            "0",
            "--drain-ms",
            "0",
            "--quiet",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("0 ok, 3 failed"), "{stdout}");

    // More connections than open files allow.
    let output = warren()
        .command()
        .args(["bench", "--url", &url, "--connections", "100000000"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("open files"), "{stderr}");
}

/// `warren bench-webhooks` against a node sending the demo app's webhooks to it: every join
/// and leave is announced once, and the run says so (its exit code and its report).
#[test]
fn bench_webhooks_sees_every_transition_announced_once() {
    let hook = free_port();
    let url = format!("http://127.0.0.1:{hook}/webhooks");
    let served = warren().serve(
        &[],
        &[
            ("WARREN_APPS__0__ID", "app-id"),
            ("WARREN_APPS__0__KEY", "app-key"),
            ("WARREN_APPS__0__SECRET", "app-secret"),
            ("WARREN_APPS__0__WEBHOOKS__0__URL", &url),
            ("WARREN_WEBHOOKS__DELAY_REMOVAL_MS", "300"),
            ("WARREN_WEBHOOKS__BATCH_WINDOW_MS", "20"),
        ],
    );
    let output = warren()
        .command()
        .args(["bench-webhooks", "--url", &served.url()])
        .args(["--listen", &format!("127.0.0.1:{hook}")])
        .args(["--connections", "20", "--channels", "5", "--rate", "200"])
        .args([
            "--duration",
            "1",
            "--removal-delay-ms",
            "300",
            "--drain-ms",
            "1500",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("20/20 connections"), "{stdout}");
    assert!(stdout.contains("duplicates 0"), "{stdout}");
    assert!(
        stdout.contains("channel_occupied 5, channel_vacated 5"),
        "{stdout}"
    );
    let missing = stdout.matches("(missing 0)").count();
    assert_eq!(missing, 2, "{stdout}");
}
