//! Redis for the cluster tests.
//!
//! Most tests share the Redis at `REDIS_URL` ([`shared_url`]), each under a key prefix of its
//! own ([`unique_prefix`]), so that tests running at once never see each other's state. Tests
//! that stop, restart or cut Redis, or need a Redis Cluster or Sentinel, start `redis-server`
//! processes of their own: [`RedisServer`], [`RedisCluster`], [`RedisSentinel`]. Those run on
//! free ports, in a temporary directory, and are killed with it when the test ends.

mod cli;
mod cluster;
mod processes;
mod sentinel;
mod server;
mod shared;

pub use cli::{cli, cli_ok};
pub use cluster::RedisCluster;
pub use processes::RedisProcesses;
pub use sentinel::{RedisSentinel, SENTINEL_MASTER};
pub use server::RedisServer;
pub use shared::{shared_url, unique_prefix, use_redis, use_shared_redis};
