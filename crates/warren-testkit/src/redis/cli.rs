//! `redis-cli`, for looking into a Redis of the test's own and for operator actions
//! (failover, killing clients).

use std::process::{Command, Output};

fn run(port: u16, args: &[&str]) -> Output {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs")
}

/// `redis-cli -p PORT ARGS...`'s output, whatever its exit status: for polling a Redis that
/// may not be ready yet.
pub fn cli(port: u16, args: &[&str]) -> String {
    String::from_utf8_lossy(&run(port, args).stdout).into_owned()
}

/// Like [`cli`], for commands that must succeed.
pub fn cli_ok(port: u16, args: &[&str]) -> String {
    let out = run(port, args);
    assert!(out.status.success(), "redis-cli {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
