//! The Warren push server as a library.
//!
//! Start at [`server::Server`]: it binds one port that serves both the Pusher WebSocket
//! protocol (`/app/{key}`) and HTTP. The map of the modules and the path of an event are in
//! ARCHITECTURE.md at the repository root.

pub mod api;
pub mod app;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod http;
pub mod hub;
pub mod listener;
pub mod outbox;
pub mod server;
pub mod ws;

pub use config::Config;
pub use server::{RunningServer, Server, ShutdownHandle};
