//! Memory follows received bytes: connections that send only a frame header declaring a large
//! payload cost what arrived, not what was declared. The figure is in docs/RELIABILITY.md.

use tokio::io::AsyncWriteExt;
use warren_testkit::process::Warren;
use warren_testkit::raw::raw_tcp_upgrade;

const CONNECTIONS: usize = 2000;
/// The bound of issue 13: less than 8 KiB per connection, all included.
const MAX_BYTES_PER_CONNECTION: u64 = 8 * 1024;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_only_frames_cost_what_arrived_not_what_they_declare() {
    let server = Warren::at(env!("CARGO_BIN_EXE_warren")).serve(&[], &[]);
    let pid = server.child.id();
    // A first connection warms up what every connection shares (runtime, buffers, tables).
    let _warm = raw_tcp_upgrade(&server).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let before = rss_bytes(pid);

    // A masked binary frame header declaring 65,535 bytes (within the 64 KiB message limit,
    // so the server waits for the payload), and nothing after it.
    let header = [0x82u8, 0x80 | 126, 0xff, 0xff, 1, 2, 3, 4];
    let mut sockets = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut s = raw_tcp_upgrade(&server).await;
        s.write_all(&header).await.expect("header");
        sockets.push(s);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = rss_bytes(pid);
    let per_connection = after.saturating_sub(before) / CONNECTIONS as u64;
    println!("RSS {before} -> {after} bytes: {per_connection} bytes per connection");
    assert!(
        per_connection < MAX_BYTES_PER_CONNECTION,
        "{per_connection} bytes per connection"
    );
    drop(sockets);
}
