//! Server configuration: one TOML file, every key overridable from the environment.
//!
//! [`Config::load`] reads the file (`warren.example.toml` shows every key with its default),
//! lays the `WARREN_<SECTION>__<KEY>` variables over it ([`env`]), deserializes, then checks
//! what no type captures ([`Config::validate`]). It returns a valid configuration or one
//! single-line [`ConfigError`] naming where the value came from (the file and line, or the
//! variable), the key, and what is wrong. A file without `[[apps]]` (or no file) configures the
//! demo app `app-id` / `app-key` / `app-secret`, which the server warns about.
//!
//! Sources are combined with figment: each value carries a tag naming its source, so an error
//! names the file or the variable without a second bookkeeping, and extraction reports the
//! failing key's path and the keys a section allows. Unknown keys are refused everywhere.
//!
//! Each value is checked in one place. App ids and keys (the protocol's [`AppId`] and
//! [`AppKey`]) and the Redis URL ([`RedisTarget`]) are parsed while deserializing, into types
//! that cannot hold a bad value. `validate` checks the rest (limits, node id, prefix, secrets,
//! uniqueness); the server runs it again on start, for configurations built in code.

mod env;
mod error;
mod redis_url;
mod source;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::path::Path;

use figment::providers::Serialized;
use figment::Figment;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use warren_protocol::{AppId, AppKey};

pub use error::{ConfigError, Origin};
pub use redis_url::{Endpoint, RedisTarget, Topology};

/// Id of the demo app configured when the file has no `[[apps]]` section.
pub const DEMO_APP_ID: &str = "app-id";
/// Key of the demo app.
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

/// The whole configuration. `Serialize` gives the environment its value types (and leaves
/// the Redis URL out: it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: the listener and connection-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[cluster]`: how nodes share state; `local` (one node, no Redis) by default.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// One `[[apps]]` section per app: at least one, ids and keys unique.
    pub apps: Vec<AppConfig>,
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; `"0.0.0.0"` accepts other machines. Not empty.
    pub host: String,
    /// TCP port; `0` picks a free one.
    pub port: u16,
    /// Seconds of client silence before it should ping (sent in `connection_established`); ≥ 1.
    pub activity_timeout: u64,
    /// Seconds to wait for the answer to our ping before closing with 4201; ≥ 1.
    pub pong_timeout: u64,
    /// Largest WebSocket message accepted from a client, in KiB; ≥ 1.
    pub max_message_size_kb: usize,
    /// Frames queued for one connection before it is closed as a slow consumer; ≥ 1.
    pub max_outbound_queue: usize,
    /// How far (seconds, either way) an HTTP API `auth_timestamp` may be from our clock; ≥ 1.
    pub api_timestamp_tolerance_secs: u64,
    /// What this node serves; splitting roles only makes sense with the `redis` backend.
    pub role: Role,
    /// This node's name in the cluster, 1 to 64 of `A-Z a-z 0-9 _ . -`; generated at
    /// start-up when absent. Two live nodes must never share one.
    pub node_id: Option<String>,
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

/// What a node serves (`server.role`): WebSocket clients and the HTTP API, or one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    All,
    /// WebSocket clients only: the HTTP API answers 404 here.
    Push,
    /// The HTTP API only: WebSocket upgrades are refused here.
    Api,
}

impl Role {
    const NAMES: &'static [&'static str] = &["all", "push", "api"];

    /// Whether the node accepts WebSocket clients (`all` and `push`).
    pub fn serves_websocket(self) -> bool {
        matches!(self, Role::All | Role::Push)
    }

    /// Whether the node serves the HTTP API (`all` and `api`).
    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// How nodes share channels, presence and events (`cluster.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Everything in this process: one node, no Redis.
    #[default]
    Local,
    /// Nodes share state and events through Redis at `cluster.redis_url`.
    Redis,
}

impl Backend {
    const NAMES: &'static [&'static str] = &["local", "redis"];

    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Reads one of `names` as its index. By hand, because figment would also take a number as
/// a variant index (`role = 1`).
struct Keyword(&'static [&'static str]);

impl de::Visitor<'_> for Keyword {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", figment::error::OneOf(self.0))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<usize, E> {
        let index = self.0.iter().position(|name| *name == value);
        index.ok_or_else(|| E::unknown_variant(value, self.0))
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = deserializer.deserialize_str(Keyword(Self::NAMES))?;
        Ok([Role::All, Role::Push, Role::Api][index])
    }
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = deserializer.deserialize_str(Keyword(Self::NAMES))?;
        Ok([Backend::Local, Backend::Redis][index])
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[cluster]` section. Checked whatever the backend, so a mistake shows before the
/// backend is switched to `redis`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `local` or `redis`.
    pub backend: Backend,
    /// Where Redis is (used by the `redis` backend): one URL, or an array of seed URLs of a
    /// Redis Cluster; see [`RedisTarget`] for the forms.
    #[serde(skip_serializing)]
    pub redis_url: RedisTarget,
    /// Starts every Redis key and pub/sub channel, so two clusters can share one Redis:
    /// 1 to 64 of `A-Z a-z 0-9 _ . : -` (no braces: keys use Redis hash tags `{...}`).
    pub prefix: String,
    /// A node silent this long is declared dead and cleaned up by the others; ≥ 1000.
    pub node_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            backend: Backend::Local,
            redis_url: RedisTarget::default(),
            prefix: "warren".into(),
            node_timeout_ms: 5000,
        }
    }
}

impl ClusterConfig {
    /// `node_timeout_ms` as a [`std::time::Duration`].
    pub fn node_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.node_timeout_ms)
    }
}

/// One `[[apps]]` section: an application's credentials and limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Used in HTTP API URLs (`/apps/<id>/events`). Required, unique.
    #[serde(deserialize_with = "app_id", serialize_with = "as_text")]
    pub id: AppId,
    /// Used by clients in the WebSocket URL (`/app/<key>`) and in signatures. Required, unique.
    #[serde(deserialize_with = "app_key", serialize_with = "as_text")]
    pub key: AppKey,
    /// Signs HTTP API requests and channel authorizations. Required, not empty.
    pub secret: String,
    /// Whether the app accepts connections and API requests.
    #[serde(default = "default::yes")]
    pub enabled: bool,
    /// Whether clients may send `client-` events on private and presence channels.
    #[serde(default = "default::yes")]
    pub client_events: bool,
    /// Simultaneous connections (per node); `0` means unlimited.
    #[serde(default)]
    pub max_connections: u64,
    /// Members of one presence channel; ≥ 1.
    #[serde(default = "default::max_presence_members")]
    pub max_presence_members: usize,
    /// Largest event `data` from the HTTP API or a client, in KiB; ≥ 1.
    #[serde(default = "default::max_event_payload_kb")]
    pub max_event_payload_kb: usize,
    /// Longest channel name, in bytes; 1 to [`MAX_CHANNEL_NAME_LENGTH_LIMIT`].
    #[serde(default = "default::max_channel_name_length")]
    pub max_channel_name_length: usize,
    /// Client events one connection may send per second; ≥ 1.
    #[serde(default = "default::client_event_rate_per_sec")]
    pub client_event_rate_per_sec: u32,
    /// Largest presence `user_info`, in bytes of JSON.
    #[serde(default = "default::max_user_info_bytes")]
    pub max_user_info_bytes: usize,
    /// Longest presence `user_id`, in bytes.
    #[serde(default = "default::max_user_id_length")]
    pub max_user_id_length: usize,
    /// Channels one connection may be subscribed to at once; ≥ 1.
    #[serde(default = "default::max_subscriptions_per_connection")]
    pub max_subscriptions_per_connection: usize,
}

/// The defaults of the app limits, shared by deserialization and [`AppConfig::new`].
mod default {
    pub fn yes() -> bool {
        true
    }
    pub fn max_presence_members() -> usize {
        100
    }
    pub fn max_event_payload_kb() -> usize {
        10
    }
    pub fn max_channel_name_length() -> usize {
        200
    }
    pub fn client_event_rate_per_sec() -> u32 {
        10
    }
    pub fn max_user_info_bytes() -> usize {
        1024
    }
    pub fn max_user_id_length() -> usize {
        128
    }
    pub fn max_subscriptions_per_connection() -> usize {
        1000
    }
}

fn app_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AppId, D::Error> {
    AppId::parse(&String::deserialize(deserializer)?).map_err(de::Error::custom)
}

fn app_key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AppKey, D::Error> {
    AppKey::parse(&String::deserialize(deserializer)?).map_err(de::Error::custom)
}

fn as_text<S: Serializer>(value: &impl AsRef<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.as_ref())
}

impl AppConfig {
    /// An app with these credentials and every limit at its default.
    pub fn new(id: AppId, key: AppKey, secret: impl Into<String>) -> Self {
        AppConfig {
            id,
            key,
            secret: secret.into(),
            enabled: default::yes(),
            client_events: default::yes(),
            max_connections: 0,
            max_presence_members: default::max_presence_members(),
            max_event_payload_kb: default::max_event_payload_kb(),
            max_channel_name_length: default::max_channel_name_length(),
            client_event_rate_per_sec: default::client_event_rate_per_sec(),
            max_user_info_bytes: default::max_user_info_bytes(),
            max_user_id_length: default::max_user_id_length(),
            max_subscriptions_per_connection: default::max_subscriptions_per_connection(),
        }
    }

    /// The demo app (`app-id` / `app-key` / `app-secret`).
    pub fn demo() -> Self {
        let (id, key) = demo_names();
        AppConfig::new(id, key, DEMO_APP_SECRET)
    }

    /// `max_event_payload_kb` in bytes (saturating).
    pub fn max_event_payload_bytes(&self) -> usize {
        self.max_event_payload_kb.saturating_mul(1024)
    }
}

/// The demo app's names: constants, valid as written (not input).
fn demo_names() -> (AppId, AppKey) {
    match (AppId::parse(DEMO_APP_ID), AppKey::parse(DEMO_APP_KEY)) {
        (Ok(id), Ok(key)) => (id, key),
        _ => unreachable!("the demo app's id and key are valid names"),
    }
}

impl Default for Config {
    /// Server defaults and the single demo app.
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            cluster: ClusterConfig::default(),
            apps: vec![AppConfig::demo()],
        }
    }
}

impl Config {
    /// Reads the file (or, with `None`, starts from the defaults), lays over it the
    /// `WARREN_*__*` variables of `env` (usually `std::env::vars()`), and validates.
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
        Config::parse(&text, path, env)
    }

    /// As [`Config::load`], from TOML text that is not a file.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Config::parse(text, None, env)
    }

    fn parse(
        text: &str,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // Joined, the demo app fills in only when the file has no `apps`; it is in place
        // before the environment, so `WARREN_APPS__0__SECRET` changes its secret.
        let base = Figment::from(source::TomlSource::parse(text, file)?)
            .join(Serialized::default("apps", [AppConfig::demo()]));
        let figment = base.clone().merge(env::Overlay::new(&base, env)?);
        let origin = |path: &str| Origin::of(&figment, text, path);
        let config: Config = figment
            .extract()
            .map_err(|e| error::Problem::from_figment(e).into_error(&origin))?;
        config.check().map_err(|p| p.into_error(&origin))?;
        Ok(config)
    }

    /// true when any app uses the demo secret (the server warns loudly).
    pub fn uses_demo_secret(&self) -> bool {
        self.apps.iter().any(|app| app.secret == DEMO_APP_SECRET)
    }
}
