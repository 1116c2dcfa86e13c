//! Server configuration.
//!
//! Warren is configured by one TOML file. Every key can be overridden by an
//! environment variable, and an invalid configuration stops start-up with one
//! clear, single-line message naming the offending key.
//!
//! ```toml
//! [server]
//! host = "127.0.0.1"
//! port = 6001
//! activity_timeout = 120
//! pong_timeout = 30
//! max_message_size_kb = 64
//! max_outbound_queue = 1024
//! api_timestamp_tolerance_secs = 600
//! role = "all"                  # all | push (WebSocket only) | api (HTTP API only)
//! # node_id = "node-1"          # optional; generated at start-up when absent
//!
//! [cluster]
//! backend = "local"             # local (one node, no Redis) | redis
//! redis_url = "redis://127.0.0.1:6379"
//! prefix = "warren"
//! node_timeout_ms = 5000
//!
//! [[apps]]
//! id = "app-id"
//! key = "app-key"
//! secret = "app-secret"
//! enabled = true
//! client_events = true
//! max_connections = 0
//! max_presence_members = 100
//! max_event_payload_kb = 10
//! max_channel_name_length = 200
//! client_event_rate_per_sec = 10
//! max_user_info_bytes = 1024
//! max_user_id_length = 128
//! max_subscriptions_per_connection = 1000
//! ```
//!
//! Every key except `apps[].id`, `apps[].key` and `apps[].secret` has the
//! default shown above (`server.node_id` has none: it is optional). A file
//! without any `[[apps]]` section (or no file at all) configures a single demo app with id `app-id`, key `app-key` and
//! secret `app-secret`; the server should warn loudly about it (see
//! [`Config::uses_demo_secret`]).
//!
//! # Environment overrides
//!
//! A variable named `WARREN_<SECTION>__<KEY>` overrides one key: the part after
//! the `WARREN_` prefix is split at double underscores and lower-cased, so
//! `WARREN_SERVER__PORT=7001` sets `server.port` and
//! `WARREN_APPS__0__SECRET=s3cret` sets `apps[0].secret`. A numeric level
//! indexes the array of tables; an index equal to the number of apps appends a
//! new app. Only variables that start with `WARREN_` and contain `__` after it
//! are considered (so `WARREN_LOG` is ignored).
//!
//! The value is a TOML integer, float or boolean when it parses as one, and a
//! string otherwise. The string keys (`server.host`, `server.role`,
//! `server.node_id`, `cluster.backend`, `cluster.redis_url`, `cluster.prefix`,
//! `apps[].id`, `apps[].key`, `apps[].secret`) always take the value verbatim,
//! so a numeric app id such as `WARREN_APPS__0__ID=123456` or a node id such as
//! `WARREN_SERVER__NODE_ID=1` works.
//!
//! `WARREN_CLUSTER__REDIS_URL` is the one exception: several URLs separated
//! by commas become a list, with blanks around each entry trimmed, so
//! `WARREN_CLUSTER__REDIS_URL=redis://10.0.0.1:6379,redis://10.0.0.2:6379`
//! sets the seed nodes of a Redis Cluster. Only a comma followed by another
//! URL (`scheme://...`) or by nothing separates entries: the host list of
//! `redis+sentinel://h1:26379,h2:26379/mymaster` stays one URL. (`WARREN_CLUSTER__REDIS_URL__0`,
//! `__1`, ... each set one entry of a list, building it when the file has no
//! `cluster.redis_url`.)
//!
//! Overrides are applied to the parsed document before it is checked, so an
//! unknown or mistyped key in the environment is reported exactly like one in
//! the file, naming the variable. When the file has no `[[apps]]` section, the
//! overrides apply on top of the demo app (`WARREN_APPS__0__SECRET` replaces
//! the demo secret).
//!
//! # Cluster
//!
//! `[cluster]` chooses how nodes share channels, presence and events. The
//! default backend, `local`, keeps everything in the process: one node, no
//! Redis. With `backend = "redis"`, every node sharing `cluster.redis_url` and
//! `cluster.prefix` forms one cluster; `server.role` lets a node serve only
//! WebSocket clients (`push`) or only the HTTP API (`api`).
//!
//! `cluster.redis_url` is one URL, or an array of URLs listing the seed nodes
//! of a Redis Cluster. A single URL uses one of the schemes in
//! [`REDIS_URL_SCHEMES`] (`redis://`, `rediss://` for TLS, the `+sentinel`,
//! `-sentinel` and `-cluster` forms); a list of several URLs takes only
//! `redis://` or `rediss://` entries, all with the same scheme. A
//! `redis+sentinel://` URL lists the Sentinel hosts, then names the service:
//! `redis+sentinel://h1:26379,h2:26379/mymaster`. Unix sockets (`unix://`)
//! are not supported. Credentials in a URL never appear in error
//! messages.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Id of the demo app configured when the file has no `[[apps]]` section.
pub const DEMO_APP_ID: &str = "app-id";
/// Key of the demo app configured when the file has no `[[apps]]` section.
pub const DEMO_APP_KEY: &str = "app-key";
/// Secret of the demo app; a server using it must warn loudly.
pub const DEMO_APP_SECRET: &str = "app-secret";
/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "WARREN_";
/// Largest accepted value of `apps[].max_channel_name_length`.
pub const MAX_CHANNEL_NAME_LENGTH_LIMIT: usize = 1000;
/// Longest accepted `server.node_id`, in characters (a generated id must fit).
pub const MAX_NODE_ID_LENGTH: usize = 64;
/// Longest accepted `cluster.prefix`, in characters.
pub const MAX_CLUSTER_PREFIX_LENGTH: usize = 64;
/// Smallest accepted `cluster.node_timeout_ms`.
pub const MIN_NODE_TIMEOUT_MS: u64 = 1000;
/// Default `cluster.redis_url`.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default `cluster.prefix`.
pub const DEFAULT_CLUSTER_PREFIX: &str = "warren";
/// Default `cluster.node_timeout_ms`.
pub const DEFAULT_NODE_TIMEOUT_MS: u64 = 5000;
/// The schemes a `cluster.redis_url` may start with. `unix://` is not
/// supported.
pub const REDIS_URL_SCHEMES: &[&str] = &[
    "redis://",
    "rediss://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis-sentinel://",
    "rediss-sentinel://",
    "redis-cluster://",
    "rediss-cluster://",
];
/// The schemes allowed in a `cluster.redis_url` list of several URLs (the seed
/// nodes of a Redis Cluster).
pub const REDIS_CLUSTER_SEED_SCHEMES: &[&str] = &["redis://", "rediss://"];

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 6001;
const DEFAULT_ACTIVITY_TIMEOUT: u64 = 120;
const DEFAULT_PONG_TIMEOUT: u64 = 30;
const DEFAULT_MAX_MESSAGE_SIZE_KB: usize = 64;
const DEFAULT_MAX_OUTBOUND_QUEUE: usize = 1024;
const DEFAULT_API_TIMESTAMP_TOLERANCE_SECS: u64 = 600;

const DEFAULT_MAX_CONNECTIONS: u64 = 0;
const DEFAULT_MAX_PRESENCE_MEMBERS: usize = 100;
const DEFAULT_MAX_EVENT_PAYLOAD_KB: usize = 10;
const DEFAULT_MAX_CHANNEL_NAME_LENGTH: usize = 200;
const DEFAULT_CLIENT_EVENT_RATE_PER_SEC: u32 = 10;
const DEFAULT_MAX_USER_INFO_BYTES: usize = 1024;
const DEFAULT_MAX_USER_ID_LENGTH: usize = 128;
const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 1000;

/// Keys allowed at the top level of the file.
const ROOT_KEYS: &[&str] = &["server", "cluster", "apps"];
/// Keys allowed in `[server]`, in documentation order.
const SERVER_KEYS: &[&str] = &[
    "host",
    "port",
    "activity_timeout",
    "pong_timeout",
    "max_message_size_kb",
    "max_outbound_queue",
    "api_timestamp_tolerance_secs",
    "role",
    "node_id",
];
/// Keys allowed in `[cluster]`, in documentation order.
const CLUSTER_KEYS: &[&str] = &["backend", "redis_url", "prefix", "node_timeout_ms"];
/// Keys allowed in each `[[apps]]` table, in documentation order.
const APP_KEYS: &[&str] = &[
    "id",
    "key",
    "secret",
    "enabled",
    "client_events",
    "max_connections",
    "max_presence_members",
    "max_event_payload_kb",
    "max_channel_name_length",
    "client_event_rate_per_sec",
    "max_user_info_bytes",
    "max_user_id_length",
    "max_subscriptions_per_connection",
];
/// Keys every `[[apps]]` table must contain.
const APP_REQUIRED_KEYS: &[&str] = &["id", "key", "secret"];

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `[server]` section: listener and connection-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// The `[cluster]` section: how nodes share state. Defaults to the
    /// `local` backend (a single node, no Redis).
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// One `[[apps]]` section per application. Defaults to the single demo
    /// app (`app-id` / `app-key` / `app-secret`) when the file has none.
    #[serde(default = "default_apps")]
    pub apps: Vec<AppConfig>,
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `"127.0.0.1"`; use `"0.0.0.0"` to accept
    /// connections from other machines.
    pub host: String,
    /// TCP port to listen on. Default `6001`; `0` picks a free port.
    pub port: u16,
    /// Seconds of client inactivity after which the client should ping, sent
    /// to clients in `pusher:connection_established`. Default `120`, at least 1.
    pub activity_timeout: u64,
    /// Seconds to wait for the answer to our ping before closing the
    /// connection with code 4201. Default `30`, at least 1.
    pub pong_timeout: u64,
    /// Largest WebSocket message accepted from a client, in KiB. Default `64`,
    /// at least 1.
    pub max_message_size_kb: usize,
    /// Frames queued for one connection before it is closed as a slow
    /// consumer. Default `1024`, at least 1.
    pub max_outbound_queue: usize,
    /// How far (seconds, either way) an HTTP API request's `auth_timestamp`
    /// may be from the server's clock. Default `600`, as Pusher; at least 1.
    pub api_timestamp_tolerance_secs: u64,
    /// What this node serves: `"all"` (default: WebSocket clients and the
    /// HTTP API), `"push"` (WebSocket clients only) or `"api"` (the HTTP API
    /// only). Splitting roles only makes sense with `cluster.backend =
    /// "redis"`, where the nodes share events.
    pub role: Role,
    /// This node's name in the cluster: 1 to 64 characters of
    /// `A-Z a-z 0-9 _ . -`. Optional; a unique id is generated at start-up
    /// when absent. Two live nodes must never share one.
    pub node_id: Option<String>,
}

/// What a node serves (`server.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// WebSocket clients and the HTTP API (`"all"`, the default).
    #[default]
    All,
    /// WebSocket clients only (`"push"`): the HTTP API answers 404 here.
    Push,
    /// The HTTP API only (`"api"`): WebSocket upgrades are refused here.
    Api,
}

impl Role {
    /// Whether the node accepts WebSocket clients (`all` and `push`).
    pub fn serves_websocket(self) -> bool {
        matches!(self, Role::All | Role::Push)
    }

    /// Whether the node serves the HTTP API (`all` and `api`).
    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    /// The name used in the configuration file: `"all"`, `"push"` or `"api"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Push => "push",
            Role::Api => "api",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How nodes share channels, presence and events (`cluster.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Everything in this process: a single node, no Redis (`"local"`, the
    /// default).
    #[default]
    Local,
    /// Nodes share state and events through Redis at `cluster.redis_url`
    /// (`"redis"`).
    Redis,
}

impl Backend {
    /// The name used in the configuration file: `"local"` or `"redis"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Redis => "redis",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `"local"` (default: one node, no Redis) or `"redis"`.
    pub backend: Backend,
    /// Where Redis is, used only by the `redis` backend. Default
    /// `"redis://127.0.0.1:6379"`. One URL (`redis://`, `rediss://`, or a
    /// sentinel or cluster form, see [`REDIS_URL_SCHEMES`]), or an array of
    /// `redis://` / `rediss://` URLs: the seed nodes of a Redis Cluster.
    pub redis_url: RedisUrls,
    /// Every Redis key and pub/sub channel starts with it, so two clusters
    /// can share one Redis. Default `"warren"`; 1 to 64 characters of
    /// `A-Z a-z 0-9 _ . : -` (no braces: keys use Redis hash tags `{...}`).
    pub prefix: String,
    /// A node silent for this many milliseconds is declared dead and cleaned
    /// up by the others. Default `5000`, at least 1000.
    pub node_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            backend: Backend::Local,
            redis_url: RedisUrls::default(),
            prefix: DEFAULT_CLUSTER_PREFIX.to_owned(),
            node_timeout_ms: DEFAULT_NODE_TIMEOUT_MS,
        }
    }
}

impl ClusterConfig {
    /// `node_timeout_ms` as a [`std::time::Duration`].
    pub fn node_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.node_timeout_ms)
    }
}

/// One URL, or several (the seed nodes of a Redis Cluster). Deserializes from
/// a TOML string or an array of strings.
///
/// Its `Debug` output shows the URLs as written, passwords included; use
/// [`RedisUrls::redacted`] for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrls(pub Vec<String>);

impl Default for RedisUrls {
    /// The single URL `redis://127.0.0.1:6379`.
    fn default() -> Self {
        RedisUrls(vec![DEFAULT_REDIS_URL.to_owned()])
    }
}

impl RedisUrls {
    /// The URLs, in the order written.
    pub fn urls(&self) -> &[String] {
        &self.0
    }

    /// Whether the URLs name a Redis Cluster: several seed URLs, or one
    /// `redis-cluster://` / `rediss-cluster://` URL.
    pub fn is_cluster(&self) -> bool {
        self.0.len() > 1
            || self.0.iter().any(|url| {
                url.starts_with("redis-cluster://") || url.starts_with("rediss-cluster://")
            })
    }

    /// The URLs joined with `,`, each with its user and password replaced by
    /// `***`: safe to log.
    pub fn redacted(&self) -> String {
        self.0
            .iter()
            .map(|url| redact_url(url))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl<'de> Deserialize<'de> for RedisUrls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UrlsVisitor;

        impl<'de> serde::de::Visitor<'de> for UrlsVisitor {
            type Value = RedisUrls;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Redis URL string or an array of URL strings")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RedisUrls, E> {
                Ok(RedisUrls(vec![value.to_owned()]))
            }

            fn visit_string<E: serde::de::Error>(self, value: String) -> Result<RedisUrls, E> {
                Ok(RedisUrls(vec![value]))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RedisUrls, A::Error> {
                let mut urls = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(url) = seq.next_element::<String>()? {
                    urls.push(url);
                }
                Ok(RedisUrls(urls))
            }
        }

        deserializer.deserialize_any(UrlsVisitor)
    }
}

/// `url` with the user and password replaced by `***`: everything between the
/// scheme and the last `@` (the last one, so that a password containing `@`
/// or `/` never shows; a rare `@` later in the URL only hides more).
fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            activity_timeout: DEFAULT_ACTIVITY_TIMEOUT,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            max_message_size_kb: DEFAULT_MAX_MESSAGE_SIZE_KB,
            max_outbound_queue: DEFAULT_MAX_OUTBOUND_QUEUE,
            api_timestamp_tolerance_secs: DEFAULT_API_TIMESTAMP_TOLERANCE_SECS,
            role: Role::All,
            node_id: None,
        }
    }
}

impl ServerConfig {
    /// `max_message_size_kb` in bytes (saturating).
    pub fn max_message_size_bytes(&self) -> usize {
        self.max_message_size_kb.saturating_mul(1024)
    }
}

/// One `[[apps]]` section: an application with its credentials and limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// App id, used in REST API URLs (`/apps/<id>/events`). Required;
    /// non-empty, only `A-Z a-z 0-9 _ . -`, unique among apps.
    pub id: String,
    /// App key, used by clients in the WebSocket URL (`/app/<key>`) and in
    /// signatures. Required; non-empty, only `A-Z a-z 0-9 _ . -`, unique
    /// among apps.
    pub key: String,
    /// App secret, used to sign REST requests and channel authorizations.
    /// Required; non-empty. Never use the demo secret `app-secret` in
    /// production.
    pub secret: String,
    /// Whether the app accepts connections and API requests. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Whether clients may trigger `client-` events on private and presence
    /// channels. Default `true`.
    #[serde(default = "default_true")]
    pub client_events: bool,
    /// Maximum simultaneous connections for the app; `0` means unlimited.
    /// Default `0`.
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Maximum members of one presence channel. Default `100`, at least 1.
    #[serde(default = "default_max_presence_members")]
    pub max_presence_members: usize,
    /// Largest event payload (`data`), in KiB, accepted from the REST API or
    /// a client event. Default `10`, at least 1.
    #[serde(default = "default_max_event_payload_kb")]
    pub max_event_payload_kb: usize,
    /// Longest accepted channel name, in bytes. Default `200`, between 1 and
    /// 1000.
    #[serde(default = "default_max_channel_name_length")]
    pub max_channel_name_length: usize,
    /// Client events one connection may send per second. Default `10`, at
    /// least 1.
    #[serde(default = "default_client_event_rate_per_sec")]
    pub client_event_rate_per_sec: u32,
    /// Largest presence `user_info`, in bytes of JSON. Default `1024`.
    #[serde(default = "default_max_user_info_bytes")]
    pub max_user_info_bytes: usize,
    /// Longest presence `user_id`, in bytes. Default `128`.
    #[serde(default = "default_max_user_id_length")]
    pub max_user_id_length: usize,
    /// Channels one connection may be subscribed to at once; a subscription beyond it gets a
    /// `pusher:subscription_error`. Default `1000`, at least 1.
    #[serde(default = "default_max_subscriptions_per_connection")]
    pub max_subscriptions_per_connection: usize,
}

impl AppConfig {
    /// An app with the given credentials and every limit at its default.
    pub fn new(id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        AppConfig {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            enabled: true,
            client_events: true,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_presence_members: DEFAULT_MAX_PRESENCE_MEMBERS,
            max_event_payload_kb: DEFAULT_MAX_EVENT_PAYLOAD_KB,
            max_channel_name_length: DEFAULT_MAX_CHANNEL_NAME_LENGTH,
            client_event_rate_per_sec: DEFAULT_CLIENT_EVENT_RATE_PER_SEC,
            max_user_info_bytes: DEFAULT_MAX_USER_INFO_BYTES,
            max_user_id_length: DEFAULT_MAX_USER_ID_LENGTH,
            max_subscriptions_per_connection: DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
        }
    }

    /// The demo app (`app-id` / `app-key` / `app-secret`, client events on).
    pub fn demo() -> Self {
        AppConfig::new(DEMO_APP_ID, DEMO_APP_KEY, DEMO_APP_SECRET)
    }

    /// `max_event_payload_kb` in bytes (saturating).
    pub fn max_event_payload_bytes(&self) -> usize {
        self.max_event_payload_kb.saturating_mul(1024)
    }
}

fn default_apps() -> Vec<AppConfig> {
    vec![AppConfig::demo()]
}

fn default_true() -> bool {
    true
}

fn default_max_connections() -> u64 {
    DEFAULT_MAX_CONNECTIONS
}

fn default_max_presence_members() -> usize {
    DEFAULT_MAX_PRESENCE_MEMBERS
}

fn default_max_event_payload_kb() -> usize {
    DEFAULT_MAX_EVENT_PAYLOAD_KB
}

fn default_max_channel_name_length() -> usize {
    DEFAULT_MAX_CHANNEL_NAME_LENGTH
}

fn default_client_event_rate_per_sec() -> u32 {
    DEFAULT_CLIENT_EVENT_RATE_PER_SEC
}

fn default_max_user_info_bytes() -> usize {
    DEFAULT_MAX_USER_INFO_BYTES
}

fn default_max_user_id_length() -> usize {
    DEFAULT_MAX_USER_ID_LENGTH
}

fn default_max_subscriptions_per_connection() -> usize {
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION
}

impl Default for Config {
    /// Server defaults and the single demo app.
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            cluster: ClusterConfig::default(),
            apps: default_apps(),
        }
    }
}

/// Why a configuration could not be loaded. `Display` is one line that names
/// the file, key or environment variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {}: {}", .path.display(), io_message(.error))]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying error (already part of the message).
        error: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("invalid configuration: TOML syntax error{}: {message}", position(.line_column))]
    Syntax {
        /// 1-based line and column of the error, when known.
        line_column: Option<(usize, usize)>,
        /// What the parser expected.
        message: String,
    },
    /// A key that Warren does not know, in the file or in the environment.
    #[error(
        "invalid configuration: {}unknown key `{key}` (expected one of {})",
        env_prefix(.env_var),
        .expected.join(", ")
    )]
    UnknownKey {
        /// Full path of the key, e.g. `server.prot`.
        key: String,
        /// The keys allowed at that place.
        expected: Vec<&'static str>,
        /// The environment variable that introduced the key, if any.
        env_var: Option<String>,
    },
    /// A key with a missing, mistyped or invalid value.
    #[error("invalid configuration: {}{key}: {message}", env_prefix(.env_var))]
    Invalid {
        /// Full path of the key, e.g. `apps[1].key`.
        key: String,
        /// What is wrong with it.
        message: String,
        /// The environment variable that set the key, if any.
        env_var: Option<String>,
    },
    /// An environment variable that cannot be applied to the document.
    #[error("invalid configuration: {var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        message: String,
    },
}

fn env_prefix(env_var: &Option<String>) -> String {
    match env_var {
        Some(var) => format!("{var}: "),
        None => String::new(),
    }
}

fn position(line_column: &Option<(usize, usize)>) -> String {
    match line_column {
        Some((line, column)) => format!(" at line {line}, column {column}"),
        None => String::new(),
    }
}

/// The I/O error's message without the trailing ` (os error N)`.
fn io_message(error: &std::io::Error) -> String {
    let message = error.to_string();
    match message.rfind(" (os error ") {
        Some(start) if message.ends_with(')') => message[..start].to_owned(),
        _ => message,
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
        env_var: None,
    }
}

impl Config {
    /// Parse TOML text, apply env overrides, validate.
    ///
    /// `env` is usually `std::env::vars()`; only `WARREN_*__*` variables are
    /// used.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut doc: toml::Table =
            toml::from_str(text).map_err(|error| syntax_error(text, &error))?;
        let overrides = collect_env_overrides(env)?;
        let origins = apply_env_overrides(&mut doc, &overrides)?;
        let attach = |error| attach_origin(error, &origins);

        check_document(&doc).map_err(attach)?;
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|error| {
                attach(invalid(
                    format_serde_path(error.path()),
                    single_line(error.inner().message()),
                ))
            })?;
        config.validate().map_err(attach)?;
        Ok(config)
    }

    /// Read the file (if `Some`) or start from defaults (if `None`: an empty
    /// document, so `apps` defaults to the demo app), apply env overrides from
    /// `env`, validate.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.to_path_buf(),
                error,
            })?,
            None => String::new(),
        };
        Config::from_toml_str(&text, env)
    }

    /// Check the values: timeouts and sizes at least 1, `server.node_id` (when
    /// set) and `cluster.prefix` short and made of safe characters, Redis
    /// URLs with a supported scheme, `cluster.node_timeout_ms` at least 1000,
    /// at least one app, app ids and keys non-empty, URL-safe and unique,
    /// secrets non-empty, app limits in range. A port of 0 (pick a free port)
    /// is allowed. The cluster keys are checked whatever the backend, so a
    /// mistake shows before the backend is switched to `redis`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        if server.host.is_empty() {
            return Err(invalid("server.host", "must not be empty"));
        }
        at_least_one("server.activity_timeout", server.activity_timeout)?;
        at_least_one("server.pong_timeout", server.pong_timeout)?;
        at_least_one("server.max_message_size_kb", server.max_message_size_kb)?;
        at_least_one("server.max_outbound_queue", server.max_outbound_queue)?;
        at_least_one(
            "server.api_timestamp_tolerance_secs",
            server.api_timestamp_tolerance_secs,
        )?;
        if let Some(node_id) = &server.node_id {
            check_name(
                "server.node_id",
                node_id,
                ID_EXTRA_CHARS,
                MAX_NODE_ID_LENGTH,
            )?;
        }

        let cluster = &self.cluster;
        check_redis_urls("cluster.redis_url", &cluster.redis_url)?;
        check_name(
            "cluster.prefix",
            &cluster.prefix,
            PREFIX_EXTRA_CHARS,
            MAX_CLUSTER_PREFIX_LENGTH,
        )?;
        if cluster.node_timeout_ms < MIN_NODE_TIMEOUT_MS {
            return Err(invalid(
                "cluster.node_timeout_ms",
                format!(
                    "must be at least {MIN_NODE_TIMEOUT_MS}, got {}",
                    cluster.node_timeout_ms
                ),
            ));
        }

        if self.apps.is_empty() {
            return Err(invalid(
                "apps",
                "at least one app is required (add an [[apps]] section)",
            ));
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut keys: HashMap<&str, usize> = HashMap::new();
        for (index, app) in self.apps.iter().enumerate() {
            let at = |field: &str| format!("apps[{index}].{field}");
            check_identifier(&at("id"), &app.id)?;
            check_identifier(&at("key"), &app.key)?;
            if app.secret.is_empty() {
                return Err(invalid(at("secret"), "must not be empty"));
            }
            if let Some(first) = ids.insert(&app.id, index) {
                return Err(invalid(
                    at("id"),
                    format!("duplicate app id {:?} (also used by apps[{first}])", app.id),
                ));
            }
            if let Some(first) = keys.insert(&app.key, index) {
                return Err(invalid(
                    at("key"),
                    format!(
                        "duplicate app key {:?} (also used by apps[{first}])",
                        app.key
                    ),
                ));
            }
            at_least_one(&at("max_presence_members"), app.max_presence_members)?;
            at_least_one(&at("max_event_payload_kb"), app.max_event_payload_kb)?;
            let length = app.max_channel_name_length;
            if !(1..=MAX_CHANNEL_NAME_LENGTH_LIMIT).contains(&length) {
                return Err(invalid(
                    at("max_channel_name_length"),
                    format!("must be between 1 and {MAX_CHANNEL_NAME_LENGTH_LIMIT}, got {length}"),
                ));
            }
            at_least_one(
                &at("client_event_rate_per_sec"),
                app.client_event_rate_per_sec,
            )?;
            at_least_one(
                &at("max_subscriptions_per_connection"),
                app.max_subscriptions_per_connection,
            )?;
        }
        Ok(())
    }

    /// true when any app uses the demo secret "app-secret" (the server warns
    /// loudly).
    pub fn uses_demo_secret(&self) -> bool {
        self.apps.iter().any(|app| app.secret == DEMO_APP_SECRET)
    }
}

/// Rejects a zero count (unsigned integers: zero is their default).
fn at_least_one<T: PartialEq + Default>(key: &str, value: T) -> Result<(), ConfigError> {
    if value == T::default() {
        Err(invalid(key, "must be at least 1, got 0"))
    } else {
        Ok(())
    }
}

/// Characters allowed in ids, keys and node ids besides ASCII letters and
/// digits.
const ID_EXTRA_CHARS: &[char] = &['_', '.', '-'];
/// Characters allowed in `cluster.prefix` besides ASCII letters and digits.
/// No braces: Redis keys use hash tags `{...}`.
const PREFIX_EXTRA_CHARS: &[char] = &['_', '.', ':', '-'];

/// Ids and keys appear in URLs: non-empty, only `A-Z a-z 0-9 _ . -`.
fn check_identifier(key: &str, value: &str) -> Result<(), ConfigError> {
    check_name(key, value, ID_EXTRA_CHARS, usize::MAX)
}

/// Non-empty, at most `max_len` characters, only ASCII letters, digits and
/// `extra`.
fn check_name(key: &str, value: &str, extra: &[char], max_len: usize) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(c)))
    {
        let quoted: Vec<String> = extra.iter().map(|c| format!("{c:?}")).collect();
        let allowed = match quoted.split_last() {
            Some((last, [])) => format!("A-Z, a-z, 0-9 and {last}"),
            Some((last, rest)) => format!("A-Z, a-z, 0-9, {} and {last}", rest.join(", ")),
            None => "A-Z, a-z and 0-9".to_owned(),
        };
        let hint = if matches!(bad, '{' | '}') {
            "; braces are reserved for Redis hash tags"
        } else {
            ""
        };
        return Err(invalid(
            key,
            format!("invalid character {bad:?} in {value:?} (only {allowed} are allowed{hint})"),
        ));
    }
    let length = value.chars().count();
    if length > max_len {
        return Err(invalid(
            key,
            format!("must be at most {max_len} characters, got {length}"),
        ));
    }
    Ok(())
}

/// At least one URL, each with a supported scheme and something after it; a
/// list of several is the seed nodes of a Redis Cluster: `redis://` or
/// `rediss://` entries, all with the same scheme. URLs are shown redacted.
fn check_redis_urls(key: &str, urls: &RedisUrls) -> Result<(), ConfigError> {
    let urls = urls.urls();
    if urls.is_empty() {
        return Err(invalid(
            key,
            "at least one URL is required (a string, or an array of Redis Cluster seed URLs)",
        ));
    }
    let several = urls.len() > 1;
    let mut first_scheme: Option<&str> = None;
    for (index, url) in urls.iter().enumerate() {
        let at = if several {
            format!("{key}[{index}]")
        } else {
            key.to_owned()
        };
        let shown = redact_url(url);
        if url.is_empty() {
            return Err(invalid(at, "must not be empty"));
        }
        if url.chars().any(char::is_whitespace) {
            return Err(invalid(
                at,
                format!("URL {shown:?} must not contain whitespace"),
            ));
        }
        if url.starts_with("unix:")
            || url.starts_with("redis+unix:")
            || url.starts_with("rediss+unix:")
        {
            return Err(invalid(
                at,
                format!(
                    "unsupported URL {shown:?}: unix:// sockets are not supported (use \
                     redis://host:port or rediss://host:port)"
                ),
            ));
        }
        let Some(scheme) = REDIS_URL_SCHEMES
            .iter()
            .copied()
            .find(|scheme| url.starts_with(scheme))
        else {
            return Err(invalid(
                at,
                format!(
                    "unsupported URL {shown:?}: must start with {}",
                    join_or(REDIS_URL_SCHEMES)
                ),
            ));
        };
        let rest = &url[scheme.len()..];
        if rest.is_empty() {
            return Err(invalid(
                at,
                format!("URL {shown:?} has no host after {scheme}"),
            ));
        }
        if scheme.contains("+sentinel") {
            let hosts_and_path = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
            let service = hosts_and_path
                .split_once('/')
                .and_then(|(_, path)| path.split('/').find(|part| !part.is_empty()));
            if service.is_none() {
                return Err(invalid(
                    at,
                    format!(
                        "URL {shown:?} needs the Sentinel service name as its path, e.g. \
                         {scheme}host:26379/mymaster"
                    ),
                ));
            }
        }
        if several {
            if !REDIS_CLUSTER_SEED_SCHEMES.contains(&scheme) {
                return Err(invalid(
                    at,
                    format!(
                        "{shown:?} cannot be in a list: several URLs are the seed nodes of a \
                         Redis Cluster and must all start with {}",
                        join_or(REDIS_CLUSTER_SEED_SCHEMES)
                    ),
                ));
            }
            match first_scheme {
                None => first_scheme = Some(scheme),
                Some(first) if first != scheme => {
                    return Err(invalid(
                        at,
                        format!(
                            "{shown:?} uses {scheme} but {key}[0] uses {first}: the seed \
                             nodes of one Redis Cluster use the same scheme"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// `a, b or c`.
fn join_or(items: &[&str]) -> String {
    match items.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn single_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let line_column = error
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column)
        });
    ConfigError::Syntax {
        line_column,
        message: single_line(error.message()),
    }
}

/// A key path as shown in messages: `server.port`, `apps[0].secret`.
fn join_key(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

fn format_serde_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
            }
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                out = join_key(&out, key);
            }
            serde_path_to_error::Segment::Unknown => out = join_key(&out, "?"),
        }
    }
    if out.is_empty() {
        "(document)".to_owned()
    } else {
        out
    }
}

/// Structural checks the derived deserializer reports poorly: unknown keys
/// (with the list of allowed ones), missing app credentials, `[apps]` written
/// instead of `[[apps]]`.
fn check_document(doc: &toml::Table) -> Result<(), ConfigError> {
    check_keys(doc, "", ROOT_KEYS)?;
    for (section, keys) in [("server", SERVER_KEYS), ("cluster", CLUSTER_KEYS)] {
        if let Some(value) = doc.get(section) {
            let table = value.as_table().ok_or_else(|| {
                invalid(
                    section,
                    format!(
                        "must be a table (a [{section}] section), found {}",
                        value.type_str()
                    ),
                )
            })?;
            check_keys(table, section, keys)?;
        }
    }
    // The derived enum deserializer reports a non-string as "invalid type:
    // unit variant, expected string only"; name the allowed values instead.
    for (section, key, allowed) in [
        ("server", "role", "\"all\", \"push\" or \"api\""),
        ("cluster", "backend", "\"local\" or \"redis\""),
    ] {
        let value = doc
            .get(section)
            .and_then(toml::Value::as_table)
            .and_then(|table| table.get(key));
        if let Some(value) = value.filter(|value| !value.is_str()) {
            return Err(invalid(
                format!("{section}.{key}"),
                format!("must be {allowed}, found {}", value.type_str()),
            ));
        }
    }
    if let Some(apps) = doc.get("apps") {
        let apps = apps.as_array().ok_or_else(|| {
            invalid(
                "apps",
                format!(
                    "must be an array of tables (one [[apps]] section per app), found {}",
                    apps.type_str()
                ),
            )
        })?;
        for (index, app) in apps.iter().enumerate() {
            let path = format!("apps[{index}]");
            let table = app.as_table().ok_or_else(|| {
                invalid(
                    path.as_str(),
                    format!("must be a table, found {}", app.type_str()),
                )
            })?;
            check_keys(table, &path, APP_KEYS)?;
            if let Some(missing) = APP_REQUIRED_KEYS
                .iter()
                .find(|key| !table.contains_key(**key))
            {
                return Err(invalid(
                    join_key(&path, missing),
                    "required key is missing (every app needs id, key and secret)",
                ));
            }
        }
    }
    Ok(())
}

fn check_keys(
    table: &toml::Table,
    path: &str,
    allowed: &[&'static str],
) -> Result<(), ConfigError> {
    match table.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(ConfigError::UnknownKey {
            key: join_key(path, key),
            expected: allowed.to_vec(),
            env_var: None,
        }),
        None => Ok(()),
    }
}

/// One `WARREN_A__B__C=value` variable, split into lower-case levels.
#[derive(Debug)]
struct EnvOverride {
    var: String,
    levels: Vec<String>,
    value: String,
}

/// Keeps the `WARREN_*__*` variables, sorted so that lower array indexes are
/// applied first (`WARREN_APPS__1__ID` creates apps[1] before
/// `WARREN_APPS__2__ID` creates apps[2]) whatever the environment's order.
fn collect_env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<EnvOverride>, ConfigError> {
    let mut overrides = Vec::new();
    for (var, value) in env {
        let Some(rest) = strip_prefix_ignore_ascii_case(&var, ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let levels: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        if levels.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "empty level in the name (levels are separated by exactly two \
                          underscores, e.g. WARREN_SERVER__PORT)"
                    .to_owned(),
            });
        }
        overrides.push(EnvOverride { var, levels, value });
    }
    overrides.sort_by(|a, b| compare_levels(&a.levels, &b.levels).then_with(|| a.var.cmp(&b.var)));
    Ok(overrides)
}

fn strip_prefix_ignore_ascii_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

fn compare_levels(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (parse_index(x), parse_index(y)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

fn parse_index(level: &str) -> Option<usize> {
    if level.bytes().all(|b| b.is_ascii_digit()) {
        level.parse().ok()
    } else {
        None
    }
}

/// Applies the overrides to `doc`; returns which variable set or created each
/// key path, to name it in later errors.
fn apply_env_overrides(
    doc: &mut toml::Table,
    overrides: &[EnvOverride],
) -> Result<Vec<(String, String)>, ConfigError> {
    // Without [[apps]] the effective apps are the demo app: overrides apply
    // on top of it, so WARREN_APPS__0__SECRET replaces the demo secret.
    if !doc.contains_key("apps")
        && overrides
            .iter()
            .any(|o| o.levels.first().is_some_and(|level| level == "apps"))
    {
        doc.insert("apps".to_owned(), demo_apps_value());
    }
    let mut root = toml::Value::Table(std::mem::take(doc));
    let mut origins = Vec::new();
    let result = overrides
        .iter()
        .try_for_each(|o| apply_env_override(&mut root, o, &mut origins));
    if let toml::Value::Table(table) = root {
        *doc = table;
    }
    result.map(|()| origins)
}

fn demo_apps_value() -> toml::Value {
    let mut app = toml::Table::new();
    app.insert("id".to_owned(), DEMO_APP_ID.into());
    app.insert("key".to_owned(), DEMO_APP_KEY.into());
    app.insert("secret".to_owned(), DEMO_APP_SECRET.into());
    app.insert("client_events".to_owned(), true.into());
    toml::Value::Array(vec![toml::Value::Table(app)])
}

fn apply_env_override(
    root: &mut toml::Value,
    over: &EnvOverride,
    origins: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    let mut current = root;
    let mut path = String::new();
    for (depth, level) in over.levels.iter().enumerate() {
        let new_value = match over.levels.get(depth + 1) {
            None => env_value(&over.levels, &over.value),
            Some(next) if parse_index(next).is_some() => toml::Value::Array(Vec::new()),
            Some(_) => toml::Value::Table(toml::Table::new()),
        };
        let is_leaf = depth + 1 == over.levels.len();
        let env_error = |message: String| ConfigError::Env {
            var: over.var.clone(),
            message,
        };
        let (child, child_path, created) = match current {
            toml::Value::Table(table) => {
                let child_path = join_key(&path, level);
                let created = !table.contains_key(level.as_str());
                let child = table
                    .entry(level.as_str())
                    .or_insert(toml::Value::Boolean(false));
                (child, child_path, created)
            }
            toml::Value::Array(array) => {
                let Some(index) = parse_index(level) else {
                    return Err(env_error(format!(
                        "{path} is an array, so `{level}` must be a numeric index"
                    )));
                };
                let len = array.len();
                if index > len {
                    return Err(env_error(format!(
                        "index {index} is out of range: {path} has {len} entries (use index {len} to append one)"
                    )));
                }
                if index == len {
                    array.push(toml::Value::Boolean(false));
                }
                (&mut array[index], format!("{path}[{index}]"), index == len)
            }
            other => {
                return Err(env_error(format!(
                    "{path} is not a table (found {}), so it has no key `{level}`",
                    other.type_str()
                )));
            }
        };
        if created || is_leaf {
            *child = new_value;
            origins.push((child_path.clone(), over.var.clone()));
        }
        current = child;
        path = child_path;
    }
    Ok(())
}

/// The TOML value of an environment variable: verbatim for string keys (a
/// comma-separated list of URLs in `cluster.redis_url` becomes an array, see
/// [`split_url_list`]), otherwise an integer, float or boolean when it parses as one,
/// else a string.
fn env_value(levels: &[String], raw: &str) -> toml::Value {
    let levels: Vec<&str> = levels.iter().map(String::as_str).collect();
    let string_key = match levels.as_slice() {
        ["cluster", "redis_url"] if raw.contains(',') => {
            let urls = split_url_list(raw);
            if urls.len() > 1 {
                return toml::Value::Array(urls.into_iter().map(toml::Value::String).collect());
            }
            true // One URL with commas in it: verbatim.
        }
        ["server", "host" | "role" | "node_id"]
        | ["cluster", "backend" | "redis_url" | "prefix"] => true,
        ["cluster", "redis_url", index] => parse_index(index).is_some(),
        ["apps", index, "id" | "key" | "secret"] => parse_index(index).is_some(),
        _ => false,
    };
    if !string_key {
        if let Ok(value) = toml::Value::deserialize(toml::de::ValueDeserializer::new(raw)) {
            if matches!(
                value,
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)
            ) {
                return value;
            }
        }
    }
    toml::Value::String(raw.to_owned())
}

/// Splits a comma-separated list of URLs, trimming blanks around entries. A
/// comma starts a new entry when what follows is another URL (contains
/// `://`) or is blank (an empty entry, reported by validation); other commas
/// stay in the URL verbatim, as in the host list of
/// `redis+sentinel://h1:26379,h2:26379/mymaster` or in a password.
fn split_url_list(raw: &str) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for piece in raw.split(',') {
        let starts_entry = piece.trim().is_empty() || piece.contains("://");
        match urls.last_mut() {
            Some(last) if !starts_entry && !last.trim().is_empty() => {
                last.push(',');
                last.push_str(piece);
            }
            _ => urls.push(piece.to_owned()),
        }
    }
    urls.iter().map(|url| url.trim().to_owned()).collect()
}

/// Names the environment variable behind the key an error is about: the one
/// that set the key itself or created a table containing it.
fn attach_origin(error: ConfigError, origins: &[(String, String)]) -> ConfigError {
    let origin_of = |key: &str| {
        origins
            .iter()
            .filter(|(path, _)| {
                key.strip_prefix(path.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
            .max_by_key(|(path, _)| path.len())
            .map(|(_, var)| var.clone())
    };
    match error {
        ConfigError::UnknownKey {
            key,
            expected,
            env_var: None,
        } => ConfigError::UnknownKey {
            env_var: origin_of(&key),
            key,
            expected,
        },
        ConfigError::Invalid {
            key,
            message,
            env_var: None,
        } => ConfigError::Invalid {
            env_var: origin_of(&key),
            key,
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(text: &str, vars: &[(&str, &str)]) -> Config {
        match Config::from_toml_str(text, env(vars)) {
            Ok(config) => config,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    /// The error message, checked to be a single line.
    fn error(text: &str, vars: &[(&str, &str)]) -> String {
        let message = Config::from_toml_str(text, env(vars))
            .expect_err("configuration should be rejected")
            .to_string();
        assert!(!message.contains('\n'), "multi-line message: {message}");
        message
    }

    const ONE_APP: &str = r#"
        [[apps]]
        id = "a1"
        key = "k1"
        secret = "s1"
    "#;

    #[test]
    fn defaults() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.server.host, "127.0.0.1");
        assert_eq!(config.server.port, 6001);
        assert_eq!(config.server.activity_timeout, 120);
        assert_eq!(config.server.pong_timeout, 30);
        assert_eq!(config.server.max_message_size_kb, 64);
        assert_eq!(config.server.max_message_size_bytes(), 65536);
        assert_eq!(config.server.max_outbound_queue, 1024);
        assert_eq!(config.server.role, Role::All);
        assert!(config.server.role.serves_websocket());
        assert!(config.server.role.serves_api());
        assert_eq!(config.server.node_id, None);
        assert_eq!(config.cluster.backend, Backend::Local);
        assert_eq!(
            config.cluster.redis_url,
            RedisUrls(vec!["redis://127.0.0.1:6379".to_owned()])
        );
        assert!(!config.cluster.redis_url.is_cluster());
        assert_eq!(config.cluster.prefix, "warren");
        assert_eq!(config.cluster.node_timeout_ms, 5000);
        assert_eq!(
            config.cluster.node_timeout(),
            std::time::Duration::from_secs(5)
        );
        assert_eq!(config.apps.len(), 1);
        let app = &config.apps[0];
        assert_eq!(
            (app.id.as_str(), app.key.as_str(), app.secret.as_str()),
            ("app-id", "app-key", "app-secret")
        );
        assert!(app.enabled);
        assert!(app.client_events);
        assert_eq!(app.max_connections, 0);
        assert_eq!(app.max_presence_members, 100);
        assert_eq!(app.max_event_payload_kb, 10);
        assert_eq!(app.max_event_payload_bytes(), 10240);
        assert_eq!(app.max_channel_name_length, 200);
        assert_eq!(app.client_event_rate_per_sec, 10);
        assert_eq!(app.max_user_info_bytes, 1024);
        assert_eq!(app.max_user_id_length, 128);
        assert!(config.uses_demo_secret());
        config.validate().unwrap();

        // App fields left out of a file take the same defaults.
        let config = parse(ONE_APP, &[]);
        assert_eq!(config.apps, vec![AppConfig::new("a1", "k1", "s1")]);
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.cluster, ClusterConfig::default());
        assert!(!config.uses_demo_secret());

        // An empty [cluster] section is the same as none.
        let config = parse(&format!("[cluster]\n{ONE_APP}"), &[]);
        assert_eq!(config.cluster, ClusterConfig::default());
    }

    #[test]
    fn full_file() {
        let text = r#"
            [server]
            host = "0.0.0.0"
            port = 7000
            activity_timeout = 60
            pong_timeout = 5
            max_message_size_kb = 128
            max_outbound_queue = 16
            role = "push"
            node_id = "push-1.eu_west"

            [cluster]
            backend = "redis"
            redis_url = "rediss://:p4ss@redis.internal:6380/0"
            prefix = "warren:prod"
            node_timeout_ms = 2500

            [[apps]]
            id = "123456"
            key = "key.one"
            secret = "very secret"
            enabled = false
            client_events = false
            max_connections = 500
            max_presence_members = 50
            max_event_payload_kb = 20
            max_channel_name_length = 164
            client_event_rate_per_sec = 3
            max_user_info_bytes = 2048
            max_user_id_length = 64
            max_subscriptions_per_connection = 50

            [[apps]]
            id = "second_app"
            key = "key-two"
            secret = "app-secret"
        "#;
        let config = parse(text, &[]);
        let expected = Config {
            server: ServerConfig {
                host: "0.0.0.0".to_owned(),
                port: 7000,
                activity_timeout: 60,
                pong_timeout: 5,
                max_message_size_kb: 128,
                max_outbound_queue: 16,
                api_timestamp_tolerance_secs: 600,
                role: Role::Push,
                node_id: Some("push-1.eu_west".to_owned()),
            },
            cluster: ClusterConfig {
                backend: Backend::Redis,
                redis_url: RedisUrls(vec!["rediss://:p4ss@redis.internal:6380/0".to_owned()]),
                prefix: "warren:prod".to_owned(),
                node_timeout_ms: 2500,
            },
            apps: vec![
                AppConfig {
                    id: "123456".to_owned(),
                    key: "key.one".to_owned(),
                    secret: "very secret".to_owned(),
                    enabled: false,
                    client_events: false,
                    max_connections: 500,
                    max_presence_members: 50,
                    max_event_payload_kb: 20,
                    max_channel_name_length: 164,
                    client_event_rate_per_sec: 3,
                    max_user_info_bytes: 2048,
                    max_user_id_length: 64,
                    max_subscriptions_per_connection: 50,
                },
                AppConfig::new("second_app", "key-two", "app-secret"),
            ],
        };
        assert_eq!(config, expected);
        assert!(config.uses_demo_secret());
    }

    #[test]
    fn env_overrides_server_port_and_app_secret() {
        let config = parse(
            ONE_APP,
            &[
                ("WARREN_SERVER__PORT", "7001"),
                ("WARREN_APPS__0__SECRET", "s3cret"),
                ("warren_server__host", "0.0.0.0"),
                ("WARREN_LOG", "debug"),
                ("WARREN_SERVER", "ignored"),
                ("PATH", "/usr/bin"),
            ],
        );
        assert_eq!(config.server.port, 7001);
        assert_eq!(config.server.host, "0.0.0.0");
        assert_eq!(config.apps[0].secret, "s3cret");
        assert_eq!(config.apps[0].id, "a1");

        // String keys take the value verbatim even when it looks like a number.
        let config = parse(
            ONE_APP,
            &[
                ("WARREN_APPS__0__ID", "123456"),
                ("WARREN_APPS__0__SECRET", "true"),
                ("WARREN_APPS__0__CLIENT_EVENTS", "false"),
            ],
        );
        assert_eq!(config.apps[0].id, "123456");
        assert_eq!(config.apps[0].secret, "true");
        assert!(!config.apps[0].client_events);

        // Without [[apps]], overrides apply on top of the demo app.
        let config = Config::load(None, env(&[("WARREN_APPS__0__SECRET", "s3cret")])).unwrap();
        assert_eq!(
            config.apps,
            vec![AppConfig::new("app-id", "app-key", "s3cret")]
        );
        assert!(!config.uses_demo_secret());
    }

    #[test]
    fn env_override_creates_app() {
        let config = parse(
            ONE_APP,
            &[
                // Deliberately out of order: index 2 needs index 1 first.
                ("WARREN_APPS__2__SECRET", "s3"),
                ("WARREN_APPS__2__KEY", "k3"),
                ("WARREN_APPS__2__ID", "a3"),
                ("WARREN_APPS__1__MAX_CONNECTIONS", "10"),
                ("WARREN_APPS__1__SECRET", "s2"),
                ("WARREN_APPS__1__KEY", "k2"),
                ("WARREN_APPS__1__ID", "a2"),
            ],
        );
        let mut second = AppConfig::new("a2", "k2", "s2");
        second.max_connections = 10;
        assert_eq!(
            config.apps,
            vec![
                AppConfig::new("a1", "k1", "s1"),
                second,
                AppConfig::new("a3", "k3", "s3"),
            ]
        );

        // A created app still needs its credentials; the message names the variable.
        assert_eq!(
            error(ONE_APP, &[("WARREN_APPS__1__ID", "a2")]),
            "invalid configuration: WARREN_APPS__1__ID: apps[1].key: required key is missing \
             (every app needs id, key and secret)"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_APPS__3__ID", "a4")]),
            "invalid configuration: WARREN_APPS__3__ID: index 3 is out of range: apps has 1 \
             entries (use index 1 to append one)"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_APPS__FIRST__ID", "a4")]),
            "invalid configuration: WARREN_APPS__FIRST__ID: apps is an array, so `first` must \
             be a numeric index"
        );
        assert_eq!(
            error("[server]\nport = 1\n", &[("WARREN_SERVER__PORT__X", "1")]),
            "invalid configuration: WARREN_SERVER__PORT__X: server.port is not a table (found \
             integer), so it has no key `x`"
        );
        assert_eq!(
            error("", &[("WARREN_SERVER____PORT", "1")]),
            "invalid configuration: WARREN_SERVER____PORT: empty level in the name (levels are \
             separated by exactly two underscores, e.g. WARREN_SERVER__PORT)"
        );
    }

    #[test]
    fn unknown_key_in_file() {
        assert_eq!(
            error("[server]\nprot = 6001\n", &[]),
            "invalid configuration: unknown key `server.prot` (expected one of host, port, \
             activity_timeout, pong_timeout, max_message_size_kb, max_outbound_queue, \
             api_timestamp_tolerance_secs, role, node_id)"
        );
        assert_eq!(
            error("[sever]\nport = 6001\n", &[]),
            "invalid configuration: unknown key `sever` (expected one of server, cluster, apps)"
        );
        assert_eq!(
            error(
                "[cluster]\nbackend = \"redis\"\nredis_urls = \"redis://h\"\n",
                &[]
            ),
            "invalid configuration: unknown key `cluster.redis_urls` (expected one of backend, \
             redis_url, prefix, node_timeout_ms)"
        );
        let message = error(&format!("{ONE_APP}\nsecert = \"x\"\n"), &[]);
        assert!(
            message.starts_with(
                "invalid configuration: unknown key `apps[0].secert` (expected one of id, key, secret,"
            ),
            "{message}"
        );
    }

    #[test]
    fn unknown_key_in_env() {
        assert_eq!(
            error(ONE_APP, &[("WARREN_SERVER__PROT", "7001")]),
            "invalid configuration: WARREN_SERVER__PROT: unknown key `server.prot` (expected one \
             of host, port, activity_timeout, pong_timeout, max_message_size_kb, \
             max_outbound_queue, api_timestamp_tolerance_secs, role, node_id)"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_SRVER__PORT", "7001")]),
            "invalid configuration: WARREN_SRVER__PORT: unknown key `srver` (expected one of \
             server, cluster, apps)"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_CLUSTER__TIMEOUT_MS", "3000")]),
            "invalid configuration: WARREN_CLUSTER__TIMEOUT_MS: unknown key \
             `cluster.timeout_ms` (expected one of backend, redis_url, prefix, node_timeout_ms)"
        );
        let message = error(ONE_APP, &[("WARREN_APPS__0__SECERT", "x")]);
        assert!(
            message.starts_with(
                "invalid configuration: WARREN_APPS__0__SECERT: unknown key `apps[0].secert`"
            ),
            "{message}"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        assert_eq!(
            error("[server]\nport = \"x\"\n", &[]),
            "invalid configuration: server.port: invalid type: string \"x\", expected u16"
        );
        assert_eq!(
            error("[server]\nport = 70000\n", &[]),
            "invalid configuration: server.port: invalid value: integer `70000`, expected u16"
        );
        assert_eq!(
            error(&format!("{ONE_APP}\nmax_connections = -1\n"), &[]),
            "invalid configuration: apps[0].max_connections: invalid value: integer `-1`, \
             expected u64"
        );
        assert_eq!(
            error(&format!("{ONE_APP}\nenabled = \"yes\"\n"), &[]),
            "invalid configuration: apps[0].enabled: invalid type: string \"yes\", expected a \
             boolean"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_SERVER__PORT", "abc")]),
            "invalid configuration: WARREN_SERVER__PORT: server.port: invalid type: string \
             \"abc\", expected u16"
        );
        assert_eq!(
            error("[apps]\nid = \"a\"\n", &[]),
            "invalid configuration: apps: must be an array of tables (one [[apps]] section per \
             app), found table"
        );
        assert_eq!(
            error("server = 1\n", &[]),
            "invalid configuration: server: must be a table (a [server] section), found integer"
        );
    }

    #[test]
    fn duplicate_app_key_and_id() {
        let text = r#"
            [[apps]]
            id = "a"
            key = "k"
            secret = "s"
            [[apps]]
            id = "b"
            key = "k"
            secret = "s"
        "#;
        assert_eq!(
            error(text, &[]),
            "invalid configuration: apps[1].key: duplicate app key \"k\" (also used by apps[0])"
        );
        assert_eq!(
            error(
                text,
                &[("WARREN_APPS__1__ID", "a"), ("WARREN_APPS__1__KEY", "k2")]
            ),
            "invalid configuration: WARREN_APPS__1__ID: apps[1].id: duplicate app id \"a\" (also \
             used by apps[0])"
        );
    }

    #[test]
    fn empty_secret() {
        let text = "[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"\"\n";
        assert_eq!(
            error(text, &[]),
            "invalid configuration: apps[0].secret: must not be empty"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_APPS__0__SECRET", "")]),
            "invalid configuration: WARREN_APPS__0__SECRET: apps[0].secret: must not be empty"
        );
        assert_eq!(
            error("[[apps]]\nid = \"a\"\nkey = \"k\"\n", &[]),
            "invalid configuration: apps[0].secret: required key is missing (every app needs \
             id, key and secret)"
        );
    }

    #[test]
    fn invalid_id_chars() {
        let text = "[[apps]]\nid = \"my app\"\nkey = \"k\"\nsecret = \"s\"\n";
        assert_eq!(
            error(text, &[]),
            "invalid configuration: apps[0].id: invalid character ' ' in \"my app\" (only A-Z, \
             a-z, 0-9, '_', '.' and '-' are allowed)"
        );
        let text = "[[apps]]\nid = \"a\"\nkey = \"k/1\"\nsecret = \"s\"\n";
        assert!(error(text, &[])
            .starts_with("invalid configuration: apps[0].key: invalid character '/' in \"k/1\""));
        let text = "[[apps]]\nid = \"\"\nkey = \"k\"\nsecret = \"s\"\n";
        assert_eq!(
            error(text, &[]),
            "invalid configuration: apps[0].id: must not be empty"
        );
    }

    #[test]
    fn no_apps_section_means_demo_app() {
        let config = parse("[server]\nport = 7002\n", &[]);
        assert_eq!(config.server.port, 7002);
        assert_eq!(config.apps, vec![AppConfig::demo()]);
        assert!(config.uses_demo_secret());

        assert_eq!(
            error("apps = []\n", &[]),
            "invalid configuration: apps: at least one app is required (add an [[apps]] section)"
        );
    }

    #[test]
    fn numeric_limits() {
        // Port 0 means "pick a free port".
        assert_eq!(parse("[server]\nport = 0\n", &[]).server.port, 0);
        for key in [
            "activity_timeout",
            "pong_timeout",
            "max_message_size_kb",
            "max_outbound_queue",
            "api_timestamp_tolerance_secs",
        ] {
            assert_eq!(
                error(&format!("[server]\n{key} = 0\n"), &[]),
                format!("invalid configuration: server.{key}: must be at least 1, got 0")
            );
        }
        for key in [
            "max_presence_members",
            "max_event_payload_kb",
            "client_event_rate_per_sec",
        ] {
            assert_eq!(
                error(&format!("{ONE_APP}\n{key} = 0\n"), &[]),
                format!("invalid configuration: apps[0].{key}: must be at least 1, got 0")
            );
        }
        for length in [0, 1001] {
            assert_eq!(
                error(
                    &format!("{ONE_APP}\nmax_channel_name_length = {length}\n"),
                    &[]
                ),
                format!(
                    "invalid configuration: apps[0].max_channel_name_length: must be between 1 \
                     and 1000, got {length}"
                )
            );
        }
        let config = parse(&format!("{ONE_APP}\nmax_channel_name_length = 1000\n"), &[]);
        assert_eq!(config.apps[0].max_channel_name_length, 1000);
        assert_eq!(
            error("[server]\nhost = \"\"\n", &[]),
            "invalid configuration: server.host: must not be empty"
        );
    }

    #[test]
    fn syntax_error_is_one_line_with_position() {
        let message = error("[server]\nport = = 1\n", &[]);
        assert!(
            message.starts_with("invalid configuration: TOML syntax error at line 2, column 8: "),
            "{message}"
        );
        let message = error("[server]\nport = 1\nport = 2\n", &[]);
        assert!(message.contains("duplicate key"), "{message}");
    }

    #[test]
    fn load_reads_the_file() {
        let dir = std::env::temp_dir().join(format!(
            "warren-config-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("warren.toml");
        std::fs::write(&file, ONE_APP).unwrap();
        let config = Config::load(Some(&file), env(&[("WARREN_SERVER__PORT", "7003")])).unwrap();
        assert_eq!(config.server.port, 7003);
        assert_eq!(config.apps, vec![AppConfig::new("a1", "k1", "s1")]);
        std::fs::remove_dir_all(&dir).unwrap();

        let missing = Path::new("warren-config-test-does-not-exist.toml");
        let error = Config::load(Some(missing), env(&[])).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }));
        assert_eq!(
            error.to_string(),
            "cannot read warren-config-test-does-not-exist.toml: No such file or directory"
        );
    }

    #[test]
    fn role() {
        for (name, role, websocket, api) in [
            ("all", Role::All, true, true),
            ("push", Role::Push, true, false),
            ("api", Role::Api, false, true),
        ] {
            let config = parse(&format!("[server]\nrole = \"{name}\"\n"), &[]);
            assert_eq!(config.server.role, role);
            assert_eq!(role.serves_websocket(), websocket, "{name}");
            assert_eq!(role.serves_api(), api, "{name}");
            assert_eq!(role.to_string(), name);
        }
        assert_eq!(
            error("[server]\nrole = \"both\"\n", &[]),
            "invalid configuration: server.role: unknown variant `both`, expected one of `all`, \
             `push`, `api`"
        );
        assert_eq!(
            error("[server]\nrole = \"API\"\n", &[]),
            "invalid configuration: server.role: unknown variant `API`, expected one of `all`, \
             `push`, `api`"
        );
        assert_eq!(
            error("[server]\nrole = 1\n", &[]),
            "invalid configuration: server.role: must be \"all\", \"push\" or \"api\", found \
             integer"
        );
        assert_eq!(
            error("[server]\nrole = [\"api\"]\n", &[]),
            "invalid configuration: server.role: must be \"all\", \"push\" or \"api\", found \
             array"
        );
    }

    #[test]
    fn node_id() {
        let config = parse("[server]\nnode_id = \"node-1.eu_west\"\n", &[]);
        assert_eq!(config.server.node_id.as_deref(), Some("node-1.eu_west"));
        let longest = "n".repeat(64);
        let config = parse(&format!("[server]\nnode_id = \"{longest}\"\n"), &[]);
        assert_eq!(config.server.node_id, Some(longest));

        assert_eq!(
            error("[server]\nnode_id = \"\"\n", &[]),
            "invalid configuration: server.node_id: must not be empty"
        );
        assert_eq!(
            error("[server]\nnode_id = \"node 1\"\n", &[]),
            "invalid configuration: server.node_id: invalid character ' ' in \"node 1\" (only \
             A-Z, a-z, 0-9, '_', '.' and '-' are allowed)"
        );
        assert_eq!(
            error("[server]\nnode_id = \"n:1\"\n", &[]),
            "invalid configuration: server.node_id: invalid character ':' in \"n:1\" (only A-Z, \
             a-z, 0-9, '_', '.' and '-' are allowed)"
        );
        assert_eq!(
            error(
                &format!("[server]\nnode_id = \"{}\"\n", "n".repeat(65)),
                &[]
            ),
            "invalid configuration: server.node_id: must be at most 64 characters, got 65"
        );
        let message = error("[server]\nnode_id = 7\n", &[]);
        assert!(
            message.starts_with("invalid configuration: server.node_id: invalid type: integer `7`"),
            "{message}"
        );
    }

    #[test]
    fn backend() {
        let config = parse("[cluster]\nbackend = \"redis\"\n", &[]);
        assert_eq!(config.cluster.backend, Backend::Redis);
        assert_eq!(Backend::Redis.to_string(), "redis");
        let config = parse("[cluster]\nbackend = \"local\"\n", &[]);
        assert_eq!(config.cluster.backend, Backend::Local);
        assert_eq!(
            error("[cluster]\nbackend = \"memory\"\n", &[]),
            "invalid configuration: cluster.backend: unknown variant `memory`, expected `local` \
             or `redis`"
        );
        assert_eq!(
            error("[cluster]\nbackend = true\n", &[]),
            "invalid configuration: cluster.backend: must be \"local\" or \"redis\", found \
             boolean"
        );
        assert_eq!(
            error("cluster = \"redis\"\n", &[]),
            "invalid configuration: cluster: must be a table (a [cluster] section), found string"
        );
    }

    #[test]
    fn redis_url_accepted_forms() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://:secret@redis.internal:6379/2",
            "rediss://user:secret@redis.internal:6380",
            "redis+sentinel://sentinel-1:26379/mymaster",
            "redis+sentinel://:pw@sentinel-1:26379,sentinel-2:26379/mymaster/2",
            "rediss+sentinel://sentinel-1:26379/mymaster",
            "redis-sentinel://sentinel-1:26379/0?sentinelServiceName=mymaster",
            "rediss-sentinel://sentinel-1:26379/0?sentinelServiceName=mymaster",
            "redis-cluster://node-1:30000?node=node-2:30001",
            "rediss-cluster://node-1:30000",
        ] {
            let config = parse(&format!("[cluster]\nredis_url = \"{url}\"\n"), &[]);
            assert_eq!(config.cluster.redis_url, RedisUrls(vec![url.to_owned()]));
            assert_eq!(
                config.cluster.redis_url.is_cluster(),
                url.contains("-cluster://"),
                "{url}"
            );
        }

        // A list is the seed nodes of a Redis Cluster.
        let text = r#"
            [cluster]
            backend = "redis"
            redis_url = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"]
        "#;
        let config = parse(text, &[]);
        assert_eq!(
            config.cluster.redis_url.urls(),
            [
                "redis://10.0.0.1:6379",
                "redis://10.0.0.2:6379",
                "redis://10.0.0.3:6379"
            ]
        );
        assert!(config.cluster.redis_url.is_cluster());
        let text = "[cluster]\nredis_url = [\"rediss://a:1\", \"rediss://b:2\"]\n";
        assert_eq!(parse(text, &[]).cluster.redis_url.urls().len(), 2);
        // A list of one URL is that URL, whatever its scheme.
        let text = "[cluster]\nredis_url = [\"redis-sentinel://s:26379\"]\n";
        assert_eq!(
            parse(text, &[]).cluster.redis_url,
            RedisUrls(vec!["redis-sentinel://s:26379".to_owned()])
        );
    }

    #[test]
    fn redis_url_rejected() {
        let check = |value: &str, expected: &str| {
            assert_eq!(
                error(&format!("[cluster]\nredis_url = {value}\n"), &[]),
                format!("invalid configuration: {expected}"),
                "redis_url = {value}"
            );
        };
        check(
            "[]",
            "cluster.redis_url: at least one URL is required (a string, or an array of Redis \
             Cluster seed URLs)",
        );
        check("\"\"", "cluster.redis_url: must not be empty");
        check(
            "\"unix:///var/run/redis.sock\"",
            "cluster.redis_url: unsupported URL \"unix:///var/run/redis.sock\": unix:// sockets \
             are not supported (use redis://host:port or rediss://host:port)",
        );
        check(
            "\"redis+unix:///var/run/redis.sock\"",
            "cluster.redis_url: unsupported URL \"redis+unix:///var/run/redis.sock\": unix:// \
             sockets are not supported (use redis://host:port or rediss://host:port)",
        );
        let schemes = "redis://, rediss://, redis+sentinel://, rediss+sentinel://, \
                       redis-sentinel://, rediss-sentinel://, redis-cluster:// or \
                       rediss-cluster://";
        check(
            "\"127.0.0.1:6379\"",
            &format!(
                "cluster.redis_url: unsupported URL \"127.0.0.1:6379\": must start with {schemes}"
            ),
        );
        check(
            "\"http://redis:6379\"",
            &format!(
                "cluster.redis_url: unsupported URL \"http://redis:6379\": must start with \
                 {schemes}"
            ),
        );
        check(
            "\"REDIS://redis:6379\"",
            &format!(
                "cluster.redis_url: unsupported URL \"REDIS://redis:6379\": must start with \
                 {schemes}"
            ),
        );
        check(
            "\"redis://\"",
            "cluster.redis_url: URL \"redis://\" has no host after redis://",
        );
        check(
            "\"redis+sentinel://s1:26379,s2:26379\"",
            "cluster.redis_url: URL \"redis+sentinel://s1:26379,s2:26379\" needs the Sentinel \
             service name as its path, e.g. redis+sentinel://host:26379/mymaster",
        );
        check(
            "\"rediss+sentinel://:a/b@s1:26379/\"",
            "cluster.redis_url: URL \"rediss+sentinel://***@s1:26379/\" needs the Sentinel \
             service name as its path, e.g. rediss+sentinel://host:26379/mymaster",
        );
        check(
            "\"redis://host :6379\"",
            "cluster.redis_url: URL \"redis://host :6379\" must not contain whitespace",
        );
        // Credentials never appear in messages.
        check(
            "\"valkey://admin:hunter2@redis:6379\"",
            &format!(
                "cluster.redis_url: unsupported URL \"valkey://***@redis:6379\": must start with \
                 {schemes}"
            ),
        );
        // Lists: only Redis Cluster seeds, all with one scheme.
        check(
            "[\"redis://a:1\", \"redis-sentinel://b:2\"]",
            "cluster.redis_url[1]: \"redis-sentinel://b:2\" cannot be in a list: several URLs \
             are the seed nodes of a Redis Cluster and must all start with redis:// or rediss://",
        );
        check(
            "[\"redis-cluster://:pw@a:1\", \"redis://b:2\"]",
            "cluster.redis_url[0]: \"redis-cluster://***@a:1\" cannot be in a list: several \
             URLs are the seed nodes of a Redis Cluster and must all start with redis:// or \
             rediss://",
        );
        check(
            "[\"redis://a:1\", \"rediss://b:2\"]",
            "cluster.redis_url[1]: \"rediss://b:2\" uses rediss:// but cluster.redis_url[0] \
             uses redis://: the seed nodes of one Redis Cluster use the same scheme",
        );
        check(
            "[\"redis://a:1\", \"unix:///tmp/r.sock\"]",
            "cluster.redis_url[1]: unsupported URL \"unix:///tmp/r.sock\": unix:// sockets are \
             not supported (use redis://host:port or rediss://host:port)",
        );
        check(
            "[\"redis://a:1\", \"\"]",
            "cluster.redis_url[1]: must not be empty",
        );
        // Wrong types.
        check(
            "6379",
            "cluster.redis_url: invalid type: integer `6379`, expected a Redis URL string or an \
             array of URL strings",
        );
        check(
            "[\"redis://a:1\", 2]",
            "cluster.redis_url[1]: invalid type: integer `2`, expected a string",
        );
    }

    #[test]
    fn redis_urls_redacted() {
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact_url("rediss://u:p@ss@h:1"), "rediss://***@h:1");
        assert_eq!(redact_url("redis://u:p/w@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("u:p@h:1"), "***@h:1");
        let urls = RedisUrls(vec!["redis://:pw@a:1".to_owned(), "redis://b:2".to_owned()]);
        assert_eq!(urls.redacted(), "redis://***@a:1,redis://b:2");
    }

    #[test]
    fn prefix() {
        let config = parse("[cluster]\nprefix = \"warren:prod-eu_1.v2\"\n", &[]);
        assert_eq!(config.cluster.prefix, "warren:prod-eu_1.v2");
        let longest = "p".repeat(64);
        let config = parse(&format!("[cluster]\nprefix = \"{longest}\"\n"), &[]);
        assert_eq!(config.cluster.prefix, longest);

        assert_eq!(
            error("[cluster]\nprefix = \"\"\n", &[]),
            "invalid configuration: cluster.prefix: must not be empty"
        );
        assert_eq!(
            error("[cluster]\nprefix = \"w{1}\"\n", &[]),
            "invalid configuration: cluster.prefix: invalid character '{' in \"w{1}\" (only \
             A-Z, a-z, 0-9, '_', '.', ':' and '-' are allowed; braces are reserved for Redis \
             hash tags)"
        );
        assert_eq!(
            error("[cluster]\nprefix = \"warren/prod\"\n", &[]),
            "invalid configuration: cluster.prefix: invalid character '/' in \"warren/prod\" \
             (only A-Z, a-z, 0-9, '_', '.', ':' and '-' are allowed)"
        );
        assert_eq!(
            error(
                &format!("[cluster]\nprefix = \"{}\"\n", "p".repeat(65)),
                &[]
            ),
            "invalid configuration: cluster.prefix: must be at most 64 characters, got 65"
        );
    }

    #[test]
    fn node_timeout_ms() {
        let config = parse("[cluster]\nnode_timeout_ms = 1000\n", &[]);
        assert_eq!(config.cluster.node_timeout_ms, 1000);
        for value in [0, 999] {
            assert_eq!(
                error(&format!("[cluster]\nnode_timeout_ms = {value}\n"), &[]),
                format!(
                    "invalid configuration: cluster.node_timeout_ms: must be at least 1000, got \
                     {value}"
                )
            );
        }
        assert_eq!(
            error("[cluster]\nnode_timeout_ms = -1\n", &[]),
            "invalid configuration: cluster.node_timeout_ms: invalid value: integer `-1`, \
             expected u64"
        );
    }

    #[test]
    fn env_overrides_cluster_keys() {
        let config = parse(
            ONE_APP,
            &[
                ("WARREN_SERVER__ROLE", "api"),
                ("WARREN_SERVER__NODE_ID", "n1"),
                ("WARREN_CLUSTER__BACKEND", "redis"),
                ("WARREN_CLUSTER__REDIS_URL", "redis://h:1"),
                ("WARREN_CLUSTER__PREFIX", "x"),
                ("WARREN_CLUSTER__NODE_TIMEOUT_MS", "3000"),
            ],
        );
        assert_eq!(config.server.role, Role::Api);
        assert_eq!(config.server.node_id.as_deref(), Some("n1"));
        assert_eq!(
            config.cluster,
            ClusterConfig {
                backend: Backend::Redis,
                redis_url: RedisUrls(vec!["redis://h:1".to_owned()]),
                prefix: "x".to_owned(),
                node_timeout_ms: 3000,
            }
        );

        // Overrides replace values from the file.
        let text = format!(
            "[server]\nrole = \"push\"\nnode_id = \"file\"\n[cluster]\nbackend = \"local\"\n\
             redis_url = [\"redis://a:1\", \"redis://b:2\"]\nprefix = \"f\"\n{ONE_APP}"
        );
        let config = parse(
            &text,
            &[
                ("WARREN_SERVER__ROLE", "all"),
                ("WARREN_SERVER__NODE_ID", "env"),
                ("WARREN_CLUSTER__BACKEND", "redis"),
                ("WARREN_CLUSTER__REDIS_URL", "rediss://c:3"),
            ],
        );
        assert_eq!(config.server.role, Role::All);
        assert_eq!(config.server.node_id.as_deref(), Some("env"));
        assert_eq!(config.cluster.backend, Backend::Redis);
        assert_eq!(
            config.cluster.redis_url,
            RedisUrls(vec!["rediss://c:3".to_owned()])
        );
        assert_eq!(config.cluster.prefix, "f");

        // Text keys take the value verbatim even when it looks like a number
        // or a boolean.
        let config = parse(
            "",
            &[
                ("WARREN_SERVER__NODE_ID", "007"),
                ("WARREN_CLUSTER__PREFIX", "1.5"),
            ],
        );
        assert_eq!(config.server.node_id.as_deref(), Some("007"));
        assert_eq!(config.cluster.prefix, "1.5");
        assert_eq!(
            error("", &[("WARREN_SERVER__ROLE", "true")]),
            "invalid configuration: WARREN_SERVER__ROLE: server.role: unknown variant `true`, \
             expected one of `all`, `push`, `api`"
        );

        // Errors name the variable.
        assert_eq!(
            error(ONE_APP, &[("WARREN_CLUSTER__BACKEND", "memory")]),
            "invalid configuration: WARREN_CLUSTER__BACKEND: cluster.backend: unknown variant \
             `memory`, expected `local` or `redis`"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_SERVER__NODE_ID", "a b")]),
            "invalid configuration: WARREN_SERVER__NODE_ID: server.node_id: invalid character \
             ' ' in \"a b\" (only A-Z, a-z, 0-9, '_', '.' and '-' are allowed)"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_CLUSTER__PREFIX", "{x}")]),
            "invalid configuration: WARREN_CLUSTER__PREFIX: cluster.prefix: invalid character \
             '{' in \"{x}\" (only A-Z, a-z, 0-9, '_', '.', ':' and '-' are allowed; braces are \
             reserved for Redis hash tags)"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_CLUSTER__NODE_TIMEOUT_MS", "500")]),
            "invalid configuration: WARREN_CLUSTER__NODE_TIMEOUT_MS: cluster.node_timeout_ms: \
             must be at least 1000, got 500"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_CLUSTER__NODE_TIMEOUT_MS", "5s")]),
            "invalid configuration: WARREN_CLUSTER__NODE_TIMEOUT_MS: cluster.node_timeout_ms: \
             invalid type: string \"5s\", expected u64"
        );
        assert_eq!(
            error(
                ONE_APP,
                &[("WARREN_CLUSTER__REDIS_URL", "unix:///tmp/r.sock")]
            ),
            "invalid configuration: WARREN_CLUSTER__REDIS_URL: cluster.redis_url: unsupported \
             URL \"unix:///tmp/r.sock\": unix:// sockets are not supported (use \
             redis://host:port or rediss://host:port)"
        );
    }

    #[test]
    fn env_override_redis_url_list() {
        // A comma-separated value is a list; blanks around entries are trimmed.
        let config = parse(
            ONE_APP,
            &[(
                "WARREN_CLUSTER__REDIS_URL",
                "redis://10.0.0.1:6379, redis://10.0.0.2:6379 ,redis://10.0.0.3:6379",
            )],
        );
        assert_eq!(
            config.cluster.redis_url.urls(),
            [
                "redis://10.0.0.1:6379",
                "redis://10.0.0.2:6379",
                "redis://10.0.0.3:6379"
            ]
        );
        assert!(config.cluster.redis_url.is_cluster());

        // The list follows the same rules as one in the file.
        assert_eq!(
            error(
                ONE_APP,
                &[(
                    "WARREN_CLUSTER__REDIS_URL",
                    "redis://a:1,redis-sentinel://b:2"
                )]
            ),
            "invalid configuration: WARREN_CLUSTER__REDIS_URL: cluster.redis_url[1]: \
             \"redis-sentinel://b:2\" cannot be in a list: several URLs are the seed nodes of a \
             Redis Cluster and must all start with redis:// or rediss://"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_CLUSTER__REDIS_URL", "redis://a:1,")]),
            "invalid configuration: WARREN_CLUSTER__REDIS_URL: cluster.redis_url[1]: must not \
             be empty"
        );

        // Commas inside one URL (a Sentinel host list) do not split it.
        let sentinel = "redis+sentinel://:pw@s1:26379,s2:26379,s3:26379/mymaster";
        let config = parse(ONE_APP, &[("WARREN_CLUSTER__REDIS_URL", sentinel)]);
        assert_eq!(config.cluster.redis_url.urls(), [sentinel]);
        let config = parse(
            ONE_APP,
            &[(
                "WARREN_CLUSTER__REDIS_URL",
                "redis://:a,b@h1:1,redis://h2:2",
            )],
        );
        assert_eq!(
            config.cluster.redis_url.urls(),
            ["redis://:a,b@h1:1", "redis://h2:2"]
        );
        assert_eq!(
            split_url_list("rediss://:p, w@a:1 , rediss://b:2,"),
            ["rediss://:p, w@a:1", "rediss://b:2", ""]
        );
        assert_eq!(split_url_list(",redis://a:1"), ["", "redis://a:1"]);
        assert_eq!(
            error(ONE_APP, &[("WARREN_CLUSTER__REDIS_URL", ",redis://a:1")]),
            "invalid configuration: WARREN_CLUSTER__REDIS_URL: cluster.redis_url[0]: must not \
             be empty"
        );

        // One variable per entry also builds a list.
        let config = parse(
            ONE_APP,
            &[
                ("WARREN_CLUSTER__REDIS_URL__1", "rediss://b:2"),
                ("WARREN_CLUSTER__REDIS_URL__0", "rediss://a:1"),
            ],
        );
        assert_eq!(
            config.cluster.redis_url.urls(),
            ["rediss://a:1", "rediss://b:2"]
        );
        // ... or replaces one entry of the file's list.
        let text = "[cluster]\nredis_url = [\"redis://a:1\", \"redis://b:2\"]\n";
        let config = parse(text, &[("WARREN_CLUSTER__REDIS_URL__1", "redis://c:3")]);
        assert_eq!(
            config.cluster.redis_url.urls(),
            ["redis://a:1", "redis://c:3"]
        );
    }

    /// `warren.example.toml` is valid and shows every default.
    #[test]
    fn example_file_shows_the_defaults() {
        let text = include_str!("../../../warren.example.toml");
        let config = parse(text, &[]);
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.cluster, ClusterConfig::default());
        assert_eq!(
            config.apps,
            vec![AppConfig::new("app-id", "app-key", "change-me")]
        );
    }

    /// The key lists used for unknown-key messages match the structs' fields,
    /// in order, as listed by serde's own unknown-field message.
    #[test]
    fn key_lists_match_the_structs() {
        fn serde_fields<T: serde::de::DeserializeOwned>() -> Vec<String> {
            let message = match toml::from_str::<T>("bogus = 1") {
                Ok(_) => panic!("unknown field accepted"),
                Err(error) => error.message().to_owned(),
            };
            let (_, expected) = message.split_once("expected").unwrap();
            expected
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        }
        assert_eq!(serde_fields::<ServerConfig>(), SERVER_KEYS);
        assert_eq!(serde_fields::<ClusterConfig>(), CLUSTER_KEYS);
        assert_eq!(serde_fields::<AppConfig>(), APP_KEYS);
        assert_eq!(serde_fields::<Config>(), ROOT_KEYS);
    }
}
