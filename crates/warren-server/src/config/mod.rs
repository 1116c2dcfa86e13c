//! The server's configuration: a TOML file, `WARREN_<SECTION>__<KEY>` variables over it.
//!
//! The keys, their defaults and their meaning are README's configuration table (and
//! `warren.example.toml`); they are not repeated here. Values are checked once, where they
//! become typed: app ids and keys are the protocol's names, the Redis and NATS URLs are parsed by
//! their clients' own types ([`RedisTarget`], [`NatsTarget`]), and [`Config::validate`] checks the rest, so a
//! configuration built in code is held to the same rules as one loaded from a file.

mod load;
mod log;
mod metrics;
mod monitor;
mod nats;
mod net;
mod origins;
mod redis;
pub(crate) mod roots;
mod split;
#[cfg(test)]
mod tests;
mod tls;
mod validate;
mod webhooks;

use std::fmt;

use serde::{de, Deserialize, Deserializer};
use warren_protocol::{AppId, AppKey};

pub use apps_source::{AppsBackend, AppsSourceConfig, PostgresUrl};
pub use load::ConfigError;
pub use log::{LogConfig, LogFormat, LogLevel};
pub use metrics::MetricsConfig;
pub use monitor::{ConsoleConfig, MonitorConfig};
pub use nats::{NatsAuth, NatsTarget};
pub use net::Networks;
pub use origins::AllowedOrigins;
pub use redis::RedisTarget;
pub use split::{ClusterPart, PartTarget};
pub use tls::TlsConfig;
pub use webhooks::{WebhookConfig, WebhooksConfig};

/// The demo app, configured when the file has no `[[apps]]`; the server warns about its secret.
pub const DEMO_APP_ID: &str = "app-id";
pub const DEMO_APP_KEY: &str = "app-key";
pub const DEMO_APP_SECRET: &str = "app-secret";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub cluster: ClusterConfig,
    pub apps: Vec<AppConfig>,
    pub apps_source: AppsSourceConfig,
    pub monitor: MonitorConfig,
    pub console: ConsoleConfig,
    pub webhooks: WebhooksConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub activity_timeout: u64,
    pub pong_timeout: u64,
    pub max_message_size_kb: usize,
    pub max_outbound_queue: usize,
    pub api_timestamp_tolerance_secs: u64,
    pub role: Role,
    /// Threads serving HTTP requests apart from the WebSocket connections (0: share them).
    pub ingress_threads: usize,
    /// Generated at start-up when absent; two live nodes must never share one.
    pub node_id: Option<String>,
    /// A request head (an HTTP request's or a WebSocket upgrade's) must arrive whole in this
    /// many milliseconds.
    pub handshake_timeout_ms: u64,
    /// An API request's body must arrive whole in this many milliseconds.
    pub request_timeout_ms: u64,
    /// A keep-alive HTTP connection with no request is closed after this many seconds.
    pub http_idle_timeout_secs: u64,
    /// A connection whose socket takes no bytes for this many milliseconds is dropped.
    pub write_timeout_ms: u64,
    /// WebSocket connections on this node (0: as many as the process's file limit allows).
    pub max_connections: usize,
    /// WebSocket connections from one client address (0: no limit).
    pub max_connections_per_ip: u32,
    /// New WebSocket connections from one client address per second (0: no limit).
    pub new_connections_per_ip_per_sec: u32,
    /// Client messages all WebSocket connections together may have handled per second, an
    /// upgrade counting as a few; over it, connections are read more slowly. Absent:
    /// [`INBOUND_MESSAGES_PER_SEC_PER_CORE`] per core; 0: no limit.
    pub max_inbound_messages_per_sec: Option<u32>,
    /// Peers whose `X-Forwarded-For` names the client's address (CIDRs or addresses).
    pub trusted_proxies: Networks,
    /// After a stop is asked for, `/ready` answers 503 this many milliseconds while
    /// everything is still served, before the connections are closed.
    pub shutdown_grace_ms: u64,
    /// `[server.tls]`: when set, the listener speaks TLS (wss:// and https://) only.
    pub tls: Option<TlsConfig>,
}

/// The node's inbound budget per core when none is configured: about a tenth of what a core
/// can handle, so that a flood of client messages from many connections at once cannot queue
/// more work ahead of the deliveries than a fraction of a millisecond.
pub const INBOUND_MESSAGES_PER_SEC_PER_CORE: u32 = 20_000;

impl ServerConfig {
    /// `max_inbound_messages_per_sec`, the default worked out for this machine (0: no limit).
    pub fn inbound_messages_per_sec(&self) -> u32 {
        self.max_inbound_messages_per_sec.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            INBOUND_MESSAGES_PER_SEC_PER_CORE
                .saturating_mul(u32::try_from(cores).unwrap_or(u32::MAX))
        })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 6001,
            activity_timeout: 120,
            pong_timeout: 30,
            max_message_size_kb: 64,
            max_outbound_queue: 1024,
            api_timestamp_tolerance_secs: 600,
            role: Role::All,
            ingress_threads: 1,
            node_id: None,
            handshake_timeout_ms: 10_000,
            request_timeout_ms: 10_000,
            http_idle_timeout_secs: 60,
            write_timeout_ms: 10_000,
            max_connections: 0,
            max_connections_per_ip: 0,
            new_connections_per_ip_per_sec: 0,
            max_inbound_messages_per_sec: None,
            trusted_proxies: Networks::default(),
            shutdown_grace_ms: 0,
            tls: None,
        }
    }
}

/// An enum written as one of its names, the first one its default. Not serde's derive, which
/// would also take a number for a variant's index (`role = 1`).
macro_rules! names {
    ($(#[$doc:meta])* $name:ident { $first:ident = $text:literal $(, $other:ident = $other_text:literal)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub enum $name { #[default] $first $(, $other)* }

        impl $name {
            const NAMES: &'static [&'static str] = &[$text $(, $other_text)*];

            pub fn as_str(self) -> &'static str {
                Self::NAMES[self as usize]
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = String::deserialize(deserializer)?;
                let index = Self::NAMES.iter().position(|n| *n == name);
                let variant = index.map(|i| [Self::$first $(, Self::$other)*][i]);
                variant.ok_or_else(|| de::Error::unknown_variant(&name, Self::NAMES))
            }
        }
    };
}

// Here, after `names!`, which it uses.
mod apps_source;

names! {
    /// What a node serves: WebSocket clients and the HTTP API, or one of them.
    Role { All = "all", Push = "push", Api = "api" }
}

names! {
    /// How nodes share state: in this process only, or through Redis or NATS.
    Backend { Local = "local", Redis = "redis", Nats = "nats" }
}

names! {
    /// The kinds of webhook event (`apps.webhooks.event_types`).
    WebhookEventType {
        ChannelOccupied = "channel_occupied",
        ChannelVacated = "channel_vacated",
        MemberAdded = "member_added",
        MemberRemoved = "member_removed",
        ClientEvent = "client_event",
        CacheMiss = "cache_miss",
        SubscriptionCount = "subscription_count"
    }
}

impl Role {
    pub fn serves_websocket(self) -> bool {
        self != Role::Api
    }

    pub fn serves_api(self) -> bool {
        self != Role::Push
    }
}

/// Checked whatever the backend, so a mistake shows before `redis` is switched on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    pub backend: Backend,
    pub redis_url: RedisTarget,
    pub nats_url: NatsTarget,
    /// Credentials and TLS for NATS (`[cluster.nats]`).
    pub nats: NatsAuth,
    /// PEM certificate authorities a `rediss://` Redis's certificate is checked against,
    /// instead of the system's.
    pub redis_tls_ca_file: Option<std::path::PathBuf>,
    pub prefix: String,
    pub node_timeout_ms: u64,
    /// `[cluster.fanout]`: events between nodes on a backend of their own.
    pub fanout: Option<ClusterPart>,
    /// `[cluster.state]`: the shared state on a backend of its own.
    pub state: Option<ClusterPart>,
}

impl ClusterConfig {
    /// `redis_url`, trusting `redis_tls_ca_file` when one is set; what every Redis client of
    /// the node connects with. An error is about `redis_tls_ca_file` and names the file.
    pub fn redis_target(&self) -> Result<RedisTarget, String> {
        self.top_level().redis_target()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            backend: Backend::Local,
            redis_url: RedisTarget::default(),
            nats_url: NatsTarget::default(),
            nats: NatsAuth::default(),
            redis_tls_ca_file: None,
            prefix: "warren".into(),
            node_timeout_ms: 5000,
            fanout: None,
            state: None,
        }
    }
}

/// One `[[apps]]` section; only the credentials are required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    #[serde(deserialize_with = "app_id")]
    pub id: AppId,
    #[serde(deserialize_with = "app_key")]
    pub key: AppKey,
    pub secret: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "yes")]
    pub client_events: bool,
    #[serde(default)]
    pub max_connections: u64,
    #[serde(default = "max_presence_members")]
    pub max_presence_members: usize,
    #[serde(default = "max_event_payload_kb")]
    pub max_event_payload_kb: usize,
    #[serde(default = "max_channel_name_length")]
    pub max_channel_name_length: usize,
    #[serde(default = "client_event_rate_per_sec")]
    pub client_event_rate_per_sec: u32,
    #[serde(default = "subscribe_rate_per_sec")]
    pub subscribe_rate_per_sec: u32,
    #[serde(default = "max_user_info_bytes")]
    pub max_user_info_bytes: usize,
    #[serde(default = "max_user_id_length")]
    pub max_user_id_length: usize,
    #[serde(default = "max_subscriptions_per_connection")]
    pub max_subscriptions_per_connection: usize,
    /// Seconds a connection has to sign in or hold an authorized subscription before it is
    /// closed with 4009; 0 switches the check off.
    #[serde(default)]
    pub user_authentication_timeout: u64,
    /// Whether signed-in users get `pusher_internal:watchlist_events` about their watchlist.
    #[serde(default)]
    pub watchlist_events: bool,
    #[serde(default = "cache_ttl_secs")]
    pub cache_ttl_secs: u64,
    #[serde(default)]
    pub subscription_count_events: bool,
    /// Where the app's webhooks go (none: the app sends none).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Web pages that may open WebSocket connections (empty: any).
    #[serde(default)]
    pub allowed_origins: AllowedOrigins,
    /// Signed HTTP API requests per second, cluster-wide (0: no limit).
    #[serde(default)]
    pub api_request_rate_per_sec: u32,
    /// Events published through the HTTP API per second, cluster-wide (0: no limit).
    #[serde(default)]
    pub api_event_rate_per_sec: u32,
}

/// The defaults of an app's settings, for serde and [`AppConfig::new`].
macro_rules! defaults {
    ($($name:ident: $type:ty = $value:expr),* $(,)?) => { $(fn $name() -> $type { $value })* };
}

defaults! {
    yes: bool = true,
    max_presence_members: usize = 100,
    max_event_payload_kb: usize = 10,
    max_channel_name_length: usize = 200,
    client_event_rate_per_sec: u32 = 10,
    subscribe_rate_per_sec: u32 = 50,
    max_user_info_bytes: usize = 1024,
    max_user_id_length: usize = 128,
    max_subscriptions_per_connection: usize = 1000,
    cache_ttl_secs: u64 = 1800,
}

fn app_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AppId, D::Error> {
    AppId::parse(&String::deserialize(deserializer)?).map_err(de::Error::custom)
}

fn app_key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AppKey, D::Error> {
    AppKey::parse(&String::deserialize(deserializer)?).map_err(de::Error::custom)
}

impl AppConfig {
    /// An app with these credentials and every other setting at its default.
    pub fn new(id: AppId, key: AppKey, secret: impl Into<String>) -> Self {
        AppConfig {
            id,
            key,
            secret: secret.into(),
            enabled: yes(),
            client_events: yes(),
            max_connections: 0,
            max_presence_members: max_presence_members(),
            max_event_payload_kb: max_event_payload_kb(),
            max_channel_name_length: max_channel_name_length(),
            client_event_rate_per_sec: client_event_rate_per_sec(),
            subscribe_rate_per_sec: subscribe_rate_per_sec(),
            max_user_info_bytes: max_user_info_bytes(),
            max_user_id_length: max_user_id_length(),
            max_subscriptions_per_connection: max_subscriptions_per_connection(),
            user_authentication_timeout: 0,
            watchlist_events: false,
            cache_ttl_secs: cache_ttl_secs(),
            subscription_count_events: false,
            webhooks: Vec::new(),
            allowed_origins: AllowedOrigins::default(),
            api_request_rate_per_sec: 0,
            api_event_rate_per_sec: 0,
        }
    }

    pub fn demo() -> Self {
        let id = AppId::parse(DEMO_APP_ID).expect("the demo app id is valid");
        let key = AppKey::parse(DEMO_APP_KEY).expect("the demo app key is valid");
        AppConfig::new(id, key, DEMO_APP_SECRET)
    }
}

impl Default for Config {
    /// The server defaults and the demo app.
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            cluster: ClusterConfig::default(),
            apps: vec![AppConfig::demo()],
            apps_source: AppsSourceConfig::default(),
            monitor: MonitorConfig::default(),
            console: ConsoleConfig::default(),
            webhooks: WebhooksConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Config {
    /// Whether an app uses the demo secret (the server warns loudly); never when the apps come
    /// from PostgreSQL (the file's are not read).
    pub fn uses_demo_secret(&self) -> bool {
        self.apps_source.backend == AppsBackend::Config
            && self.apps.iter().any(|app| app.secret == DEMO_APP_SECRET)
    }
}
