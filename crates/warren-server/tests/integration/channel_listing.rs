//! `GET /channels` on a large app in Redis: read a page at a time, so the listing is whole and
//! Redis keeps answering everyone else meanwhile.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warren_testkit::api::api_get;
use warren_testkit::redis::{cli_ok, unique_prefix, use_redis, RedisServer};
use warren_testkit::server::{start_with, TestServer};

/// Fills the app's channel table the way subscriptions do: `count` channels `c-1`...,
/// each with 2 subscriptions, in one script.
fn occupy(redis: &RedisServer, prefix: &str, count: usize) {
    let script = "for i = 1, tonumber(ARGV[1]) do redis.call('HSET', KEYS[1], 'c-' .. i, 2) end";
    let key = format!("{{{prefix}:app-id}}:ch");
    cli_ok(
        redis.port(),
        &["EVAL", script, "1", &key, &count.to_string()],
    );
}

async fn node(redis: &RedisServer, prefix: &str) -> TestServer {
    let url = redis.url();
    start_with(|c| use_redis(c, vec![url], prefix, 2000)).await
}

fn listed(body: &serde_json::Value) -> usize {
    body["channels"].as_object().map_or(0, |m| m.len())
}

#[tokio::test]
async fn a_listing_over_many_pages_is_whole() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("listing");
    occupy(&redis, &prefix, 2_345);
    let key = format!("{{{prefix}:app-id}}");
    cli_ok(
        redis.port(),
        &["HSET", &format!("{key}:ch"), "presence-room", "3"],
    );
    cli_ok(
        redis.port(),
        &[
            "HSET",
            &format!("{key}:m:presence-room"),
            "u1",
            "2",
            "u2",
            "1",
        ],
    );
    let server = node(&redis, &prefix).await;

    let all = api_get(&server, "/apps/app-id/channels", &[]).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(listed(&all.json()), 2_346);
    let some = api_get(
        &server,
        "/apps/app-id/channels",
        &[("filter_by_prefix", "c-12")],
    )
    .await;
    // c-12, c-120...c-129, c-1200...c-1299
    assert_eq!(listed(&some.json()), 1 + 10 + 100, "{}", some.body);
    let presence = api_get(
        &server,
        "/apps/app-id/channels",
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
    )
    .await;
    assert_eq!(
        presence.json()["channels"],
        serde_json::json!({"presence-room": {"user_count": 2}}),
        "{}",
        presence.body
    );
}

/// `PING` every millisecond on a connection of its own until `stop`, each one's wait counted
/// from when it was due (so a stall counts once for every ping it held up, not once).
fn ping_latencies(port: u16, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    let start = Instant::now();
    let mut due = start;
    while !stop.load(Ordering::Relaxed) {
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        s.write_all(b"PING\r\n").expect("ping");
        s.read_exact(&mut buf).expect("pong");
        out.push(due.elapsed());
        due += Duration::from_millis(1);
    }
    out
}

/// The figure of docs/RELIABILITY.md: Redis' answer time to other clients while
/// `GET /channels` lists 100,000 channels (run with `--ignored --nocapture`).
#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn listing_100k_channels_leaves_redis_responsive() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("listing100k");
    occupy(&redis, &prefix, 100_000);
    let server = node(&redis, &prefix).await;
    let quiet = {
        let stop = Arc::new(AtomicBool::new(false));
        let (port, s) = (redis.port(), stop.clone());
        let pinger = std::thread::spawn(move || ping_latencies(port, s));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        pinger.join().expect("pinger")
    };
    // Every command that holds Redis for more than a millisecond, whoever sent it.
    cli_ok(
        redis.port(),
        &["CONFIG", "SET", "slowlog-log-slower-than", "1000"],
    );
    cli_ok(redis.port(), &["CONFIG", "SET", "slowlog-max-len", "10000"]);
    cli_ok(redis.port(), &["SLOWLOG", "RESET"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (port, s) = (redis.port(), stop.clone());
    let pinger = std::thread::spawn(move || ping_latencies(port, s));
    let mut listings = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = api_get(&server, "/apps/app-id/channels", &[]).await;
        listings.push(t.elapsed());
        assert_eq!(listed(&r.json()), 100_000);
    }
    stop.store(true, Ordering::Relaxed);
    let busy = pinger.join().expect("pinger");
    let slow = cli_ok(redis.port(), &["SLOWLOG", "LEN"]);
    // Each entry: id, time, duration (µs), ...: the durations are the third lines of each.
    let log = cli_ok(redis.port(), &["SLOWLOG", "GET", "10000"]);
    let longest = log
        .lines()
        .collect::<Vec<_>>()
        .windows(3)
        .filter(|w| {
            w[0].parse::<u64>().is_ok() && w[1].parse::<u64>().is_ok_and(|t| t > 1_000_000_000)
        })
        .filter_map(|w| w[2].parse::<u64>().ok())
        .max();
    let p = |v: &[Duration], q: f64| {
        let mut v = v.to_vec();
        v.sort();
        v[((v.len() - 1) as f64 * q) as usize]
    };
    println!(
        "GET /channels over 100,000 channels: {:?} per listing; other clients' PING meanwhile: \
         p50 {:?}, p99 {:?}, max {:?} ({} pings); quiet: p50 {:?}, p99 {:?}; commands \
         holding Redis over 1 ms: {} (longest {:?} µs)",
        listings.iter().sum::<Duration>() / listings.len() as u32,
        p(&busy, 0.5),
        p(&busy, 0.99),
        busy.iter().max().copied().unwrap_or_default(),
        busy.len(),
        p(&quiet, 0.5),
        p(&quiet, 0.99),
        slow.trim(),
        longest,
    );
}
