//! `warren trigger`, `channels`, `channel`, `users`, `send-to-user` and `terminate`: the HTTP
//! API from the command line, through `warren-client`.
//!
//! Credentials and the server address come from the same configuration as `warren serve`
//! (`--config FILE`, `WARREN_*` variables; the first app unless `--app ID`), and the flags
//! `--url`, `--key`, `--secret` override them. Output is a short summary, or with `--json` the
//! server's answer verbatim. A failed request exits with status 1 and prints the server's
//! status and message; a usage or configuration problem exits with status 2.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use warren_client::{
    ApiError, ApiRequest, ChannelAttribute, ChannelAttributes, ChannelInfo, ChannelsList,
    ChannelsQuery, Client, ClientConfig, TriggerOptions, TriggerResult,
};
use warren_server::Config;

#[derive(Subcommand)]
pub enum ApiCommand {
    /// Publish an event on one or more channels (POST /apps/{id}/events).
    Trigger(TriggerArgs),
    /// List the occupied channels (GET /apps/{id}/channels).
    Channels(ChannelsArgs),
    /// Show one channel's state (GET /apps/{id}/channels/{name}).
    Channel(ChannelArgs),
    /// List the users of a presence channel (GET /apps/{id}/channels/{name}/users).
    Users(UsersArgs),
    /// Send an event to every connection signed in as a user (to its #server-to-user- channel).
    SendToUser(SendToUserArgs),
    /// Close every connection signed in as a user, on every node
    /// (POST /users/{user_id}/terminate_connections).
    Terminate(TerminateArgs),
}

/// Which server and app to talk to, and how to print the answer.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// App id (default: the first app of the configuration).
    #[arg(long)]
    app: Option<String>,
    /// App key (default: the selected app's key from the configuration).
    #[arg(long)]
    key: Option<String>,
    /// App secret (default: the selected app's secret from the configuration).
    #[arg(long)]
    secret: Option<String>,
    /// Server URL, e.g. http://127.0.0.1:6001 (default: from server.host and server.port).
    #[arg(long)]
    url: Option<String>,
    /// Print the server's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
    /// Request timeout in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    timeout: u64,
}

#[derive(Args)]
pub struct TriggerArgs {
    /// Channel to publish on; repeat for several (at most 100).
    #[arg(long = "channel", value_name = "CHANNEL", required = true)]
    channels: Vec<String>,
    /// Event name.
    #[arg(long)]
    event: String,
    /// Event data, sent verbatim as the event's data string.
    #[arg(long, default_value = "{}")]
    data: String,
    /// Socket id of a connection that should not receive the event.
    #[arg(long)]
    socket_id: Option<String>,
    /// Channel attributes to return: user_count, subscription_count (comma-separated).
    #[arg(long, value_delimiter = ',')]
    info: Vec<ChannelAttribute>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct ChannelsArgs {
    /// Only channels whose name starts with this (user_count needs "presence-").
    #[arg(long)]
    prefix: Option<String>,
    /// Channel attributes to return: user_count, subscription_count (comma-separated).
    #[arg(long, value_delimiter = ',')]
    info: Vec<ChannelAttribute>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct ChannelArgs {
    /// Channel name.
    name: String,
    /// Channel attributes to return: user_count, subscription_count (comma-separated).
    #[arg(long, value_delimiter = ',')]
    info: Vec<ChannelAttribute>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct UsersArgs {
    /// Presence channel name.
    name: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct SendToUserArgs {
    /// User id.
    user: String,
    /// Event name.
    #[arg(long)]
    event: String,
    /// Event data, sent verbatim as the event's data string.
    #[arg(long, default_value = "{}")]
    data: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct TerminateArgs {
    /// User id.
    user: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// Where the server's configuration comes from: the global `--config`, `--host`, `--port`.
pub struct ServerSource {
    pub config: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
}

enum CliError {
    /// Bad flags or configuration: exit 2.
    Usage(String),
    /// The request failed: exit 1.
    Api(ApiError),
    /// The server could not be reached or did not answer: exit 1.
    Unreachable { url: String, error: ApiError },
}

impl From<ApiError> for CliError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidRequest(_) | ApiError::Config(_) => CliError::Usage(e.to_string()),
            other => CliError::Api(other),
        }
    }
}

pub fn run(command: ApiCommand, source: ServerSource) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(command, &source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(CliError::Api(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(CliError::Unreachable { url, error }) => {
            eprintln!("error: {url}: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: ApiCommand, source: &ServerSource) -> Result<(), CliError> {
    match command {
        ApiCommand::Trigger(args) => {
            let options = TriggerOptions {
                socket_id: args.socket_id.clone(),
                info: args.info.clone(),
            };
            let request = ApiRequest::trigger(&args.channels, &args.event, &args.data, &options)?;
            let Some(result) = send::<TriggerResult>(&args.api, source, &request).await? else {
                return Ok(());
            };
            let n = args.channels.len();
            println!(
                "Triggered {:?} on {n} channel{}: {}",
                args.event,
                plural(n),
                args.channels.join(", ")
            );
            for (name, attrs) in &result.channels {
                println!("  {name}{}", format_attributes(attrs));
            }
        }
        ApiCommand::Channels(args) => {
            let query = ChannelsQuery {
                filter_by_prefix: args.prefix.clone(),
                info: args.info.clone(),
            };
            let request = ApiRequest::channels(&query)?;
            let Some(list) = send::<ChannelsList>(&args.api, source, &request).await? else {
                return Ok(());
            };
            let n = list.channels.len();
            let filter = args
                .prefix
                .as_deref()
                .map(|p| format!(" starting with {p:?}"))
                .unwrap_or_default();
            if n == 0 {
                println!("No occupied channels{filter}");
            } else {
                println!("{n} occupied channel{}{filter}:", plural(n));
            }
            for (name, attrs) in &list.channels {
                println!("  {name}{}", format_attributes(attrs));
            }
        }
        ApiCommand::Channel(args) => {
            let request = ApiRequest::channel(&args.name, &args.info)?;
            let Some(info) = send::<ChannelInfo>(&args.api, source, &request).await? else {
                return Ok(());
            };
            let state = if info.occupied {
                "occupied"
            } else {
                "not occupied"
            };
            println!("{}: {state}", args.name);
            if let Some(n) = info.user_count {
                println!("  user_count: {n}");
            }
            if let Some(n) = info.subscription_count {
                println!("  subscription_count: {n}");
            }
            if let Some(cache) = &info.cache {
                let ttl = cache
                    .ttl
                    .map(|t| format!(" (ttl {t}s)"))
                    .unwrap_or_default();
                println!("  cache: {}{ttl}", cache.data);
            }
        }
        ApiCommand::Users(args) => {
            let request = ApiRequest::users(&args.name)?;
            let Some(users) = send::<UsersAnswer>(&args.api, source, &request).await? else {
                return Ok(());
            };
            let n = users.users.len();
            if n == 0 {
                println!("No users in {}", args.name);
            } else {
                println!("{n} user{} in {}:", plural(n), args.name);
            }
            for user in &users.users {
                println!("  {}", user.id);
            }
        }
        ApiCommand::SendToUser(args) => {
            let request = ApiRequest::send_to_user(&args.user, &args.event, &args.data)?;
            if send::<serde_json::Value>(&args.api, source, &request)
                .await?
                .is_some()
            {
                println!("Sent {:?} to user {}", args.event, args.user);
            }
        }
        ApiCommand::Terminate(args) => {
            let request = ApiRequest::terminate_user_connections(&args.user)?;
            if send::<serde_json::Value>(&args.api, source, &request)
                .await?
                .is_some()
            {
                println!("Terminated the connections of user {}", args.user);
            }
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct UsersAnswer {
    users: Vec<UserId>,
}

#[derive(serde::Deserialize)]
struct UserId {
    id: String,
}

/// Sends `request`; with `--json` prints the answer and returns `None`, otherwise decodes it.
async fn send<T: DeserializeOwned>(
    api: &ApiArgs,
    source: &ServerSource,
    request: &ApiRequest,
) -> Result<Option<T>, CliError> {
    let client = client(api, source)?;
    let body = client.execute(request).await.map_err(|e| match e {
        ApiError::Transport(_) => CliError::Unreachable {
            url: client.config().base_url.clone(),
            error: e,
        },
        other => other.into(),
    })?;
    if api.json {
        println!("{}", body.trim_end());
        return Ok(None);
    }
    let text = if body.trim().is_empty() { "{}" } else { &body };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|source| CliError::Api(ApiError::Decode { body, source }))
}

/// The client for the chosen app: flags first, then the configuration.
fn client(api: &ApiArgs, source: &ServerSource) -> Result<Client, CliError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let config = Config::load(source.config.as_deref(), env)
        .map_err(|e| CliError::Usage(format!("cannot load the configuration: {e}")))?;
    let app_id = match &api.app {
        Some(id) => id.clone(),
        None => config
            .apps
            .first()
            .map(|a| a.id.to_string())
            .ok_or_else(|| CliError::Usage("the configuration has no app; pass --app".into()))?,
    };
    let app = config.apps.iter().find(|a| a.id.as_str() == app_id);
    let from_app = |what: &str, value: Option<&str>| -> Result<String, CliError> {
        value.map(str::to_owned).ok_or_else(|| {
            CliError::Usage(format!(
                "app {app_id:?} is not in the configuration: pass --{what} (and the other credentials) or choose another --app"
            ))
        })
    };
    let key = match &api.key {
        Some(k) => k.clone(),
        None => from_app("key", app.map(|a| a.key.as_str()))?,
    };
    let secret = match &api.secret {
        Some(s) => s.clone(),
        None => from_app("secret", app.map(|a| a.secret.as_str()))?,
    };
    let url = match &api.url {
        Some(u) => u.clone(),
        None => server_url(
            source.host.as_deref().unwrap_or(&config.server.host),
            source.port.unwrap_or(config.server.port),
        )?,
    };
    let config = ClientConfig::new(url, app_id, key, secret)
        .with_timeout(Duration::from_secs(api.timeout.max(1)));
    Client::new(config).map_err(|e| CliError::Usage(e.to_string()))
}

/// [`server_url`] for other commands: the problem as text.
pub fn listen_url(host: &str, port: u16) -> Result<String, String> {
    server_url(host, port).map_err(|e| match e {
        CliError::Usage(m) => m,
        CliError::Api(e) | CliError::Unreachable { error: e, .. } => e.to_string(),
    })
}

/// `http://host:port` for a listen address; the wildcard addresses become loopback.
fn server_url(host: &str, port: u16) -> Result<String, CliError> {
    if port == 0 {
        return Err(CliError::Usage(
            "server.port is 0 (a free port chosen at start-up): pass --url http://HOST:PORT".into(),
        ));
    }
    let host = match host.trim() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_owned(),
    };
    Ok(format!("http://{host}:{port}"))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `  user_count=1 subscription_count=2`, or nothing.
fn format_attributes(attrs: &ChannelAttributes) -> String {
    let mut out = String::new();
    if let Some(n) = attrs.user_count {
        out.push_str(&format!("  user_count={n}"));
    }
    if let Some(n) = attrs.subscription_count {
        out.push_str(&format!("  subscription_count={n}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_listen_addresses() {
        let url = |h: &str, p: u16| server_url(h, p).ok();
        assert_eq!(
            url("127.0.0.1", 6001).as_deref(),
            Some("http://127.0.0.1:6001")
        );
        assert_eq!(url("0.0.0.0", 7).as_deref(), Some("http://127.0.0.1:7"));
        assert_eq!(url("::", 7).as_deref(), Some("http://[::1]:7"));
        assert_eq!(url("::1", 7).as_deref(), Some("http://[::1]:7"));
        assert_eq!(
            url("example.com", 80).as_deref(),
            Some("http://example.com:80")
        );
        assert!(url("127.0.0.1", 0).is_none());
    }
}
