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
//! ```
//!
//! Every key except `apps[].id`, `apps[].key` and `apps[].secret` has the
//! default shown above. A file without any `[[apps]]` section (or no file at
//! all) configures a single demo app with id `app-id`, key `app-key` and
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
//! string otherwise. The string keys (`server.host`, `apps[].id`, `apps[].key`,
//! `apps[].secret`) always take the value verbatim, so a numeric app id such as
//! `WARREN_APPS__0__ID=123456` works.
//!
//! Overrides are applied to the parsed document before it is checked, so an
//! unknown or mistyped key in the environment is reported exactly like one in
//! the file, naming the variable. When the file has no `[[apps]]` section, the
//! overrides apply on top of the demo app (`WARREN_APPS__0__SECRET` replaces
//! the demo secret).

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

/// Keys allowed at the top level of the file.
const ROOT_KEYS: &[&str] = &["server", "apps"];
/// Keys allowed in `[server]`, in documentation order.
const SERVER_KEYS: &[&str] = &[
    "host",
    "port",
    "activity_timeout",
    "pong_timeout",
    "max_message_size_kb",
    "max_outbound_queue",
    "api_timestamp_tolerance_secs",
];
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

impl Default for Config {
    /// Server defaults and the single demo app.
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
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

    /// Check the values: timeouts and sizes at least 1, at least one app,
    /// app ids and keys non-empty, URL-safe and unique, secrets non-empty,
    /// app limits in range. A port of 0 (pick a free port) is allowed.
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

/// Ids and keys appear in URLs: non-empty, only `A-Z a-z 0-9 _ . -`.
fn check_identifier(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(bad) => Err(invalid(
            key,
            format!(
                "invalid character {bad:?} in {value:?} (only A-Z, a-z, 0-9, '_', '.' and '-' are allowed)"
            ),
        )),
        None => Ok(()),
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
    if let Some(server) = doc.get("server") {
        let table = server.as_table().ok_or_else(|| {
            invalid(
                "server",
                format!(
                    "must be a table (a [server] section), found {}",
                    server.type_str()
                ),
            )
        })?;
        check_keys(table, "server", SERVER_KEYS)?;
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

/// The TOML value of an environment variable: verbatim for string keys,
/// otherwise an integer, float or boolean when it parses as one, else a string.
fn env_value(levels: &[String], raw: &str) -> toml::Value {
    let levels: Vec<&str> = levels.iter().map(String::as_str).collect();
    let string_key = match levels.as_slice() {
        ["server", "host"] => true,
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
        assert!(!config.uses_demo_secret());
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
             api_timestamp_tolerance_secs)"
        );
        assert_eq!(
            error("[sever]\nport = 6001\n", &[]),
            "invalid configuration: unknown key `sever` (expected one of server, apps)"
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
             max_outbound_queue, api_timestamp_tolerance_secs)"
        );
        assert_eq!(
            error(ONE_APP, &[("WARREN_SRVER__PORT", "7001")]),
            "invalid configuration: WARREN_SRVER__PORT: unknown key `srver` (expected one of \
             server, apps)"
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
        assert_eq!(serde_fields::<AppConfig>(), APP_KEYS);
        assert_eq!(serde_fields::<Config>(), ROOT_KEYS);
    }
}
