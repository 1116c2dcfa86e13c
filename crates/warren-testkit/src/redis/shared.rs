//! The shared Redis, and pointing a server's configuration at a Redis.

use std::sync::atomic::{AtomicU32, Ordering};

use warren_server::config::{Backend, Config, RedisTarget};

/// The Redis the test command provides: `REDIS_URL`, by default redis://127.0.0.1:6379.
pub fn shared_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses, now or in an earlier run against the same Redis: `tag`,
/// the process id, a counter and the time.
pub fn unique_prefix(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{tag}{:x}x{n}x{nanos:x}", std::process::id())
}

/// Points a configuration at Redis (`urls`: one URL, or a Redis Cluster's seeds) under
/// `prefix`. Tests pass a short `node_timeout_ms`, so that a dead node is cleaned up quickly.
pub fn use_redis(
    config: &mut Config,
    urls: Vec<String>,
    prefix: impl Into<String>,
    node_timeout_ms: u64,
) {
    config.cluster.backend = Backend::Redis;
    config.cluster.redis_url = RedisTarget::parse_list(&urls).expect("valid Redis URLs");
    config.cluster.prefix = prefix.into();
    config.cluster.node_timeout_ms = node_timeout_ms;
}

/// Points a configuration at the shared Redis under `prefix` (from [`unique_prefix`]; nodes
/// of one cluster share it).
pub fn use_shared_redis(config: &mut Config, prefix: impl Into<String>, node_timeout_ms: u64) {
    use_redis(config, vec![shared_url()], prefix, node_timeout_ms);
}
