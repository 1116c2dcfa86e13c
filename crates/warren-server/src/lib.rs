//! The Warren push server as a library.
//!
//! Start at [`Server`]: [`Server::builder`] composes a server from a [`Config`] (and, for an
//! embedding program, its own [`AppRegistry`] or [`cluster::ClusterBackend`]); the server
//! binds one port that serves both the Pusher WebSocket protocol (`/app/{key}`) and HTTP.
//! [`monitor`] is a tap on what the server (or its cluster) does: attach one with
//! [`RunningServer::monitor`] (example: `examples/monitor_tap.rs`). The
//! map of the modules and the path of an event are in ARCHITECTURE.md at the repository root.
//! [`extend`] explains the extension points: inbound and HTTP API middlewares, custom client
//! events, custom broadcasts and `x-` API routes.
//! With `[server.tls]` ([`config::TlsConfig`]) the port speaks TLS only; [`TlsReloader`]
//! reloads the certificate without closing connections.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let mut config = warren_server::Config::default();
//! config.server.port = 0; // any free port
//! let running = warren_server::Server::builder(config).start().await?;
//! println!("Warren listening on {}", running.addr);
//! // Dropping `running` stops the server: connections are closed with 4200.
//! # Ok(())
//! # }
//! ```

mod api;
mod app;
pub mod apps_source;
pub mod cluster;
pub mod config;
mod connection;
mod connection_errors;
mod connections;
mod console;
pub mod extend;
mod gate;
mod http;
mod http_connection;
mod hub;
mod ingress;
mod listener;
mod metrics;
pub mod monitor;
mod node;
mod outbox;
mod readiness;
mod reload;
mod scrape;
mod server;
mod tls;
mod transport;
mod webhooks;
mod ws;

pub use app::{App, AppRegistry, AppsChange, LiveApps, StaticApps};
pub use config::Config;
pub use reload::{ReloadReport, Reloader};
pub use server::{RunningServer, Server, ServerBuilder, ShutdownHandle};
pub use tls::{TlsError, TlsReloader};

/// The parsers of what arrives from outside, for the fuzz targets and their corpus replay
/// (`crates/warren-fuzz`) only: not an API, and may change at any time.
#[doc(hidden)]
pub mod fuzz_internals {
    pub use crate::cluster::envelope::{
        decode as decode_envelope, encode as encode_envelope,
        encode_announcement as encode_announcement_envelope,
        encode_broadcast as encode_broadcast_envelope, Relayed,
    };
    pub use crate::ws::handshake::{parse_head, Head};

    /// Loads a configuration from TOML text and `WARREN_*` variables, as `warren config check`
    /// does with a file.
    pub fn config_from_toml(
        text: &str,
        env: Vec<(String, String)>,
    ) -> Result<crate::Config, crate::config::ConfigError> {
        crate::Config::parse(text, figment::Source::Custom(String::new()), env)
    }
}

/// The delivery path's parts, for this crate's criterion benchmarks only: not an API, and
/// may change at any time.
#[doc(hidden)]
pub mod bench_internals {
    pub use crate::hub::Hub;
    pub use crate::outbox::Outbox;
    pub use crate::ws::frame;
}
