//! The `warren` binary as an operator uses it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use warren_testkit::process::Warren;

fn warren() -> Command {
    Warren::at(env!("CARGO_BIN_EXE_warren")).command()
}

fn repo_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name)
}

#[test]
fn example_config_is_valid() {
    let out = warren()
        .args(["config", "check"])
        .arg(repo_file("warren.example.toml"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn invalid_config_names_the_key_and_fails() {
    let dir = std::env::temp_dir().join(format!("warren-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[server]\nprot = 1\n").expect("write");
    let out = warren()
        .args(["config", "check"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.prot"), "{err}");

    std::fs::write(&file, "[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"\"\n").expect("write");
    let out = warren()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("apps.0.secret"));
}

#[test]
fn env_overrides_apply_to_config_check() {
    let out = warren()
        .args(["config", "check"])
        .arg(repo_file("warren.example.toml"))
        .env("WARREN_SERVER__PORT", "not-a-port")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.port"));
}

#[test]
fn serve_prints_a_banner_with_the_address_credentials_and_demo_warning() {
    let mut child = warren()
        .args(["serve", "--port", "0"])
        .env("WARREN_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = String::new();
    for _ in 0..6 {
        match lines.next() {
            Some(Ok(l)) => {
                banner.push_str(&l);
                banner.push('\n');
            }
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner.contains("listening on 127.0.0.1:"), "{banner}");
    assert!(banner.contains("key=app-key secret=app-secret"), "{banner}");
    assert!(banner.contains("WARNING"), "{banner}");
}

#[test]
fn version_names_the_release_and_the_commit() {
    let out = warren().arg("--version").output().expect("runs");
    assert!(out.status.success());
    // The commit of this checkout, as build.rs asked git for it; "unknown" without git.
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let expected = format!("warren {} ({commit})\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}
