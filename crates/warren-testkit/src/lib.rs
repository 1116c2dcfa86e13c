//! The one test harness of the Warren workspace: every crate's integration tests start
//! servers, Redis and clients through it, so that no harness exists twice.
//!
//! | module | what it is for |
//! | --- | --- |
//! | [`server`] | a Warren server in the test process, on a free port |
//! | [`process`] | `warren serve` as a child process, for tests of the binary |
//! | [`redis`] | the shared Redis at `REDIS_URL`, or `redis-server` processes of the test's own |
//! | [`nats`] | the shared NATS (`NATS_URL`, or 127.0.0.1:4222), or a `nats-server` of the test's own |
//! | [`split`] | a configuration with fan-out and state on servers of their own |
//! | [`ws`] | a small Pusher WebSocket client that checks every frame it reads |
//! | [`raw`] | bytes no client library would send, and close codes read from raw bytes |
//! | [`http`] | raw HTTP/1.1 requests and their responses |
//! | [`monitor`] | the monitor stream (`/monitor`), signed or with an operator token |
//! | [`signing`] | API request signatures built by hand, as the official SDKs build them |
//! | [`api`] | signed requests to the demo app, by hand or through `warren-client` |
//! | [`fake`] | a scripted Pusher server, for behaviour the real one does not show on demand |
//! | [`proxy`] | TCP proxies: one that counts connections, one that delays every byte |
//! | [`net`] | free ports and waiting for a port to open |
//! | [`postgres`] | a database of the test's own on the shared PostgreSQL, or a PostgreSQL server of its own |
//! | [`webhooks`] | a webhook receiver: a real HTTP server that records requests and answers as scripted |
//! | [`tls`] | a certificate authority made by the test, the certificates it issues, and clients that trust it |
//!
//! Everything talks to the demo app of the default configuration ([`KEY`], [`SECRET`],
//! [`APP_ID`]) and waits at most [`WAIT`] for anything that should happen.
//!
//! # A dev-dependency only
//!
//! The kit depends on `warren-server` and `warren-client`, and those crates dev-depend on the
//! kit. Cargo allows that: dev-dependencies are not part of a library's own dependency graph,
//! so there is no cycle. A crate's integration tests link the same build of the library that
//! the kit links, so a `warren_server::Config` made in a test is the one the kit takes. (A
//! library's unit tests are a separate build of it, whose types differ from the kit's: the kit
//! is for integration tests only.) The `warren` binary cannot be a dependency at all, so its
//! tests hand the kit the binary's path ([`process::Warren::at`]). The crate is
//! `publish = false`.

use std::time::Duration;

pub mod api;
mod demo;
pub mod endpoint;
pub mod fake;
pub mod http;
pub mod monitor;
pub mod nats;
pub mod net;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod server;
pub mod signing;
pub mod split;
pub mod tls;
pub mod webhooks;
pub mod ws;

pub use demo::{APP_ID, KEY, MASTER_KEY, SECRET};
pub use endpoint::Endpoint;

/// How long a test waits for anything that should happen: long enough for a loaded CI
/// machine, short enough that a broken server fails quickly.
pub const WAIT: Duration = Duration::from_secs(5);
