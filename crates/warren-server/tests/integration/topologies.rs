//! Redis Cluster (three masters, sharded pub/sub) and Sentinel (with a forced failover),
//! each started by the test from `redis-server` in a temporary directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use warren_server::config::{Backend, RedisUrls};

use crate::harness::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Redis processes of one test, killed on drop.
struct Procs {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Procs {
    fn new(tag: &str) -> Procs {
        let dir = std::env::temp_dir().join(format!(
            "warren-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Procs {
            children: Vec::new(),
            dir,
        }
    }

    fn redis(&mut self, args: &[String]) {
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.children.push(child);
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn base_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn cluster_node(urls: Vec<String>, prefix: &str) -> TestServer {
    let prefix = prefix.to_owned();
    start_with(move |c| {
        c.cluster.backend = Backend::Redis;
        c.cluster.redis_url = RedisUrls(urls);
        c.cluster.prefix = prefix;
        c.cluster.node_timeout_ms = 2000;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_with_three_masters_and_sharded_pubsub() {
    let mut procs = Procs::new("cluster");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for &p in &ports {
        let mut args = base_args(p);
        args.extend(
            ["--cluster-enabled", "yes", "--cluster-config-file"]
                .iter()
                .map(|s| s.to_string()),
        );
        args.push(format!("nodes-{p}.conf"));
        procs.redis(&args);
    }
    ports.iter().for_each(|&p| wait_port(p));
    let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
    create.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
    create.extend(
        ["--cluster-replicas", "0", "--cluster-yes"]
            .iter()
            .map(|s| s.to_string()),
    );
    let created = Command::new("redis-cli")
        .args(&create)
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ports
        .iter()
        .all(|&p| cli(p, &["cluster", "info"]).contains("cluster_state:ok"))
    {
        assert!(Instant::now() < deadline, "cluster did not become ok");
        std::thread::sleep(Duration::from_millis(100));
    }

    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect();
    let a = cluster_node(urls.clone(), "wc").await;
    let b = cluster_node(urls, "wc").await;

    // Many channels, so that they land on every shard.
    let channels: Vec<String> = (0..12).map(|i| format!("presence-shard-{i}")).collect();
    let mut alice = connect(&a).await;
    let mut bob = connect(&b).await;
    for (i, ch) in channels.iter().enumerate() {
        alice
            .subscribed(ch, Some(&presence_data(json!("alice"), None)))
            .await;
        bob.subscribed(ch, Some(&presence_data(json!("bob"), None)))
            .await;
        assert_eq!(alice.recv().await["event"], "pusher_internal:member_added");
        bob.subscribed(&format!("shard-{i}"), None).await;
    }
    for ch in &channels {
        let r = api_post(
            &a,
            "/apps/app-id/events",
            json!({"name":"e","channel":ch,"data":ch}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(bob.recv().await["data"], ch.as_str());
        assert_eq!(alice.recv().await["data"], ch.as_str());
        let users = api_get(&b, &format!("/apps/app-id/channels/{ch}/users"), &[]).await;
        assert_eq!(
            users.json()["users"].as_array().map(Vec::len),
            Some(2),
            "{}",
            users.body
        );
    }
    // Public channels are sharded pub/sub channels spread over more than one shard; presence
    // channels relay in the app's slot, where their state is, so that the state scripts can
    // publish their announcements atomically.
    let shards_used = ports
        .iter()
        .filter(|&&p| {
            cli(p, &["pubsub", "shardchannels", "wc:ev:*"]).contains("wc:ev:app-id:shard-")
        })
        .count();
    assert!(
        shards_used >= 2,
        "sharded channels on {shards_used} shard(s)"
    );
    let presence_shards = ports
        .iter()
        .filter(|&&p| {
            cli(p, &["pubsub", "shardchannels", "{wc:app-id}:pev:*"]).contains("presence-shard-")
        })
        .count();
    assert_eq!(presence_shards, 1);
    for i in 0..12 {
        let r = api_post(
            &a,
            "/apps/app-id/events",
            json!({"name":"p","channel":format!("shard-{i}"),"data":"x"}),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(bob.recv().await["channel"], format!("shard-{i}"));
    }
    let listed = api_get(
        &a,
        "/apps/app-id/channels",
        &[
            ("filter_by_prefix", "presence-shard-"),
            ("info", "user_count"),
        ],
    )
    .await;
    assert_eq!(
        listed.json()["channels"].as_object().map(|m| m.len()),
        Some(12)
    );
    // Departures announced from inside the cluster reach the other node on every channel.
    bob.close().await;
    for _ in &channels {
        assert_eq!(
            alice.recv().await["event"],
            "pusher_internal:member_removed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_urls_follow_a_failover() {
    let mut procs = Procs::new("sentinel");
    let (primary, replica, sentinel) = (free_port(), free_port(), free_port());
    procs.redis(&base_args(primary));
    wait_port(primary);
    let mut r = base_args(replica);
    r.extend([
        "--replicaof".to_owned(),
        "127.0.0.1".to_owned(),
        primary.to_string(),
    ]);
    procs.redis(&r);
    wait_port(replica);
    let conf = procs.dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {primary} 1\n\
             sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 4000\n"
        ),
    )
    .expect("sentinel.conf");
    procs.redis(&[conf.to_string_lossy().into_owned(), "--sentinel".to_owned()]);
    wait_port(sentinel);
    // Wait for the replica to be in sync and known to the sentinel.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cli(replica, &["info", "replication"]).contains("master_link_status:up")
        || !cli(sentinel, &["sentinel", "replicas", "mymaster"]).contains(&replica.to_string())
    {
        assert!(Instant::now() < deadline, "replica/sentinel not ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    let url = vec![format!("redis+sentinel://127.0.0.1:{sentinel}/mymaster")];
    let a = cluster_node(url.clone(), "ws").await;
    let b = cluster_node(url, "ws").await;
    let mut on_a = connect(&a).await;
    let mut on_b = connect(&b).await;
    on_a.subscribed("presence-s", Some(&presence_data(json!("1"), None)))
        .await;
    on_b.subscribed("presence-s", Some(&presence_data(json!("2"), None)))
        .await;
    assert_eq!(on_a.recv().await["event"], "pusher_internal:member_added");
    api_post(
        &a,
        "/apps/app-id/events",
        json!({"name":"e","channel":"presence-s","data":"before"}),
    )
    .await;
    assert_eq!(on_b.recv().await["data"], "before");
    assert_eq!(on_a.recv().await["data"], "before");

    let out = cli(sentinel, &["sentinel", "failover", "mymaster"]);
    assert!(out.contains("OK"), "failover refused: {out}");
    // After the failover the nodes talk to the new primary: writes and delivery work again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let promoted = cli(replica, &["role"]).starts_with("master");
        let r = api_post(
            &a,
            "/apps/app-id/events",
            json!({"name":"probe","channel":"presence-s","data":"after"}),
        )
        .await;
        if promoted && r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after failover: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Drain probes, then check one clean delivery and the shared state.
    let r = api_post(
        &a,
        "/apps/app-id/events",
        json!({"name":"final","channel":"presence-s","data":"after"}),
    )
    .await;
    assert_eq!(r.status, 200);
    loop {
        let m = on_b.recv().await;
        if m["event"] == "final" {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let users = api_get(&b, "/apps/app-id/channels/presence-s/users", &[]).await;
        if users.status == 200 && users.json()["users"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members not restored: {}",
            users.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
