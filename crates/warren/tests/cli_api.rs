//! `warren trigger`, `channels`, `channel`, `users`, `send-to-user` and `terminate` against a
//! `warren serve` child process.

use std::path::PathBuf;
use std::process::Output;

use serde_json::{json, Value};
use warren_testkit::process::{Served, Warren};
use warren_testkit::ws::{connect, presence_data};

fn warren() -> Warren {
    Warren::at(env!("CARGO_BIN_EXE_warren"))
}

fn serve(extra: &[&str]) -> Served {
    warren().serve(extra, &[])
}

/// Runs `warren ARGS` and returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = warren().command().args(args).output().expect("runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "warren {args:?} failed: {err}");
    out
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test]
async fn trigger_publishes_and_reports() {
    let served = serve(&[]);
    let url = served.url();
    let mut sub = connect(&served).await;
    sub.subscribed("news", None).await;

    let out = run_ok(&[
        "trigger",
        "--url",
        &url,
        "--channel",
        "news",
        "--event",
        "update",
        "--data",
        r#"{"x":1}"#,
    ]);
    assert!(
        out.contains(r#"Triggered "update" on 1 channel: news"#),
        "{out}"
    );
    let event = sub.recv().await;
    assert_eq!(
        event,
        json!({"event": "update", "channel": "news", "data": "{\"x\":1}"})
    );

    let out = run_ok(&[
        "trigger",
        "--url",
        &url,
        "--channel",
        "news",
        "--channel",
        "other",
        "--event",
        "e",
        "--data",
        "plain",
        "--info",
        "subscription_count",
        "--json",
    ]);
    assert_eq!(
        json_of(&out),
        json!({"channels": {"news": {"subscription_count": 1}, "other": {"subscription_count": 0}}})
    );
    assert_eq!(sub.recv().await["data"], "plain");

    // --socket-id excludes that connection.
    run_ok(&[
        "trigger",
        "--url",
        &url,
        "--channel",
        "news",
        "--event",
        "skip",
        "--socket-id",
        &sub.socket_id,
    ]);
    run_ok(&[
        "trigger",
        "--url",
        &url,
        "--channel",
        "news",
        "--event",
        "after",
    ]);
    let next = sub.recv().await;
    assert_eq!(next["event"], "after", "the excluded event was delivered");
    assert_eq!(next["data"], "{}", "--data defaults to {{}}");
}

#[tokio::test]
async fn send_to_user_and_terminate_reach_the_users_connections() {
    let served = serve(&[]);
    let url = served.url();
    let mut user = connect(&served).await;
    user.signed_in_as("42").await;
    let mut other = connect(&served).await;
    other.signed_in_as("7").await;

    let out = run_ok(&[
        "send-to-user",
        "42",
        "--event",
        "notice",
        "--data",
        r#"{"n":1}"#,
        "--url",
        &url,
    ]);
    assert!(out.contains(r#"Sent "notice" to user 42"#), "{out}");
    assert_eq!(
        user.recv().await,
        json!({"event": "notice", "channel": "#server-to-user-42", "data": "{\"n\":1}"})
    );

    let out = run_ok(&["terminate", "42", "--url", &url, "--json"]);
    assert_eq!(json_of(&out), json!({}));
    let error = user.recv().await;
    assert_eq!(error["data"]["code"], 4009, "{error}");
    other.assert_silent().await;

    let (code, _, err) = run(&["terminate", "", "--url", &url]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn channels_channel_and_users_print_summaries_and_json() {
    let served = serve(&[]);
    let url = served.url();
    let mut alice = connect(&served).await;
    alice
        .subscribed("presence-room", Some(&presence_data(json!("alice"), None)))
        .await;
    alice.subscribed("news", None).await;

    let out = run_ok(&["channels", "--url", &url]);
    assert!(out.starts_with("2 occupied channels:"), "{out}");
    assert!(
        out.contains("\n  news\n") && out.contains("\n  presence-room"),
        "{out}"
    );
    let out = run_ok(&[
        "channels",
        "--url",
        &url,
        "--prefix",
        "presence-",
        "--info",
        "user_count",
    ]);
    assert!(
        out.contains("1 occupied channel starting with \"presence-\":"),
        "{out}"
    );
    assert!(out.contains("presence-room  user_count=1"), "{out}");
    let out = run_ok(&[
        "channels",
        "--url",
        &url,
        "--prefix",
        "presence-",
        "--info",
        "user_count,subscription_count",
        "--json",
    ]);
    assert_eq!(
        json_of(&out),
        json!({"channels": {"presence-room": {"user_count": 1, "subscription_count": 1}}})
    );
    let out = run_ok(&["channels", "--url", &url, "--prefix", "nothing-"]);
    assert_eq!(
        out.trim(),
        "No occupied channels starting with \"nothing-\""
    );

    let out = run_ok(&[
        "channel",
        "presence-room",
        "--url",
        &url,
        "--info",
        "user_count,subscription_count",
    ]);
    assert_eq!(
        out,
        "presence-room: occupied\n  user_count: 1\n  subscription_count: 1\n"
    );
    let out = run_ok(&["channel", "empty", "--url", &url, "--json"]);
    assert_eq!(json_of(&out), json!({"occupied": false}));

    // A cache channel's kept event.
    run_ok(&[
        "trigger",
        "--url",
        &url,
        "--channel",
        "cache-prices",
        "--event",
        "price",
        "--data",
        "{\"v\":7}",
    ]);
    let out = run_ok(&["channel", "cache-prices", "--url", &url, "--info", "cache"]);
    let shown = "cache-prices: not occupied\n  cache: {\"v\":7} (ttl ";
    assert!(out.starts_with(shown) && out.ends_with("s)\n"), "{out}");

    let out = run_ok(&["users", "presence-room", "--url", &url]);
    assert_eq!(out, "1 user in presence-room:\n  alice\n");
    let out = run_ok(&["users", "presence-room", "--url", &url, "--json"]);
    assert_eq!(json_of(&out), json!({"users": [{"id": "alice"}]}));
}

#[test]
fn errors_exit_non_zero_with_the_servers_status_and_message() {
    let served = serve(&[]);
    let url = served.url();

    let (code, out, err) = run(&["users", "news", "--url", &url]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        err.trim(),
        "error: HTTP 400: Users can only be listed for presence channels"
    );

    let (code, _, err) = run(&["channels", "--url", &url, "--secret", "wrong"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: HTTP 401: Invalid signature"),
        "{err}"
    );

    let (code, _, err) = run(&[
        "channels", "--url", &url, "--app", "nope", "--key", "k", "--secret", "s",
    ]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "error: HTTP 404: Unknown app: nope");

    // Refused before sending: usage errors exit 2.
    let (code, _, err) = run(&[
        "trigger",
        "--url",
        &url,
        "--channel",
        "bad name",
        "--event",
        "e",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("channel name"), "{err}");
    let (code, _, err) = run(&["channels", "--url", &url, "--app", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("\"nope\" is not in the configuration"),
        "{err}"
    );

    // Nobody listening.
    drop(served);
    let (code, _, err) = run(&["channels", "--url", &url]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("error: {url}: request failed")),
        "{err}"
    );
}

#[test]
fn credentials_and_address_come_from_the_configuration() {
    let dir = std::env::temp_dir().join(format!("warren-cli-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file: PathBuf = dir.join("apps.toml");
    std::fs::write(
        &file,
        "[server]\nport = 0\n\n\
         [[apps]]\nid = \"first\"\nkey = \"first-key\"\nsecret = \"first-secret\"\n\n\
         [[apps]]\nid = \"second\"\nkey = \"second-key\"\nsecret = \"second-secret\"\n",
    )
    .expect("writes");
    let config = file.to_str().expect("utf-8 path");
    let served = serve(&["--config", config]);
    let port = served.port.to_string();

    // The first app by default, the address from --port (the file says 0).
    let out = run_ok(&["channels", "--config", config, "--port", &port, "--json"]);
    assert_eq!(json_of(&out), json!({"channels": {}}));
    let out = run_ok(&[
        "channel", "x", "--config", config, "--port", &port, "--app", "second",
    ]);
    assert_eq!(out.trim(), "x: not occupied");
    // A WARREN_* override changes the secret the CLI signs with.
    let output = warren()
        .command()
        .args(["channels", "--config", config, "--port", &port])
        .env("WARREN_APPS__0__SECRET", "overridden")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HTTP 401"));
    // Without --port the file's port 0 cannot be reached.
    let (code, _, err) = run(&["channels", "--config", config]);
    assert_eq!(code, 2);
    assert!(err.contains("--url"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
