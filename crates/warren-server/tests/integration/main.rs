//! Integration tests over real sockets: a real server on a free port, driven by an independent
//! WebSocket client (tokio-tungstenite) and by signed HTTP requests written by hand, checking
//! every byte the protocol promises. The server, the client and the requests come from
//! `warren-testkit`.

mod apps_postgres;
mod apps_postgres_tls;
mod apps_reload;
mod bad_input;
mod cache_channels;
mod channel_listing;
mod chaos;
mod chaos_restart;
mod client_events;
mod cluster;
mod cluster_users;
mod connect;
mod encrypted;
mod extensions;
mod extensions_cluster;
mod failovers;
mod hostile;
mod hostile_volume;
mod http_api;
mod http_auth;
mod inbound_budget;
mod liveness;
mod metrics;
mod monitor;
mod origins;
mod presence;
mod rate_limits;
mod readiness;
mod redis_away;
mod redis_tls;
mod rfc6455;
mod slow_consumer;
mod split;
mod subscribe;
mod subscription_counts;
mod tls;
mod topologies;
mod two_nodes;
mod users;
mod webhooks;
