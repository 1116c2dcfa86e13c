//! `warren apps list|add|set|remove|rotate-secret|migrate`: the apps table in PostgreSQL.
//!
//! The database is the configuration's `[apps_source] url` (`--config FILE`, or
//! `WARREN_APPS_SOURCE__URL`), and the table its `table`. Every change is checked against the
//! servers' own rules before it is committed (`warren_server::apps_source::admin`), and the
//! servers see it within a moment (the table's trigger notifies them). Exit status: 0 done,
//! 1 refused or failed, 2 a usage or configuration problem.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use warren_server::apps_source::admin::{self, Admin, AdminError};
use warren_server::Config;

#[derive(Subcommand)]
pub enum AppsCommand {
    /// List the apps: id, key, enabled, and why the servers refuse a row, if they do.
    List,
    /// Add an app; settings not given take their defaults.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        secret: String,
        #[command(flatten)]
        fields: AppFields,
    },
    /// Change the given settings of an app (`--enabled false` disables it: its connections
    /// close with 4003).
    Set {
        #[arg(long)]
        id: String,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        #[command(flatten)]
        fields: AppFields,
    },
    /// Remove an app: its connections close with 4001.
    Remove {
        #[arg(long)]
        id: String,
    },
    /// Give an app a new secret (generated and printed when not given); the old one stays
    /// valid for the grace period, for API and authorization signatures.
    RotateSecret {
        #[arg(long)]
        id: String,
        #[arg(long)]
        secret: Option<String>,
        /// Seconds the old secret stays valid.
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        grace_secs: u64,
    },
    /// Create the table (or bring it to this version's schema); every command does it first.
    Migrate,
}

/// An app's settings, as in `[[apps]]`; only those given are written.
#[derive(Args, Default)]
pub struct AppFields {
    #[arg(long, value_name = "BOOL")]
    enabled: Option<bool>,
    #[arg(long, value_name = "BOOL")]
    client_events: Option<bool>,
    #[arg(long, value_name = "N")]
    max_connections: Option<u64>,
    #[arg(long, value_name = "N")]
    max_presence_members: Option<u64>,
    #[arg(long, value_name = "KB")]
    max_event_payload_kb: Option<u64>,
    #[arg(long, value_name = "N")]
    max_channel_name_length: Option<u64>,
    #[arg(long, value_name = "N")]
    client_event_rate_per_sec: Option<u64>,
    #[arg(long, value_name = "N")]
    subscribe_rate_per_sec: Option<u64>,
    #[arg(long, value_name = "BYTES")]
    max_user_info_bytes: Option<u64>,
    #[arg(long, value_name = "N")]
    max_user_id_length: Option<u64>,
    #[arg(long, value_name = "N")]
    max_subscriptions_per_connection: Option<u64>,
    #[arg(long, value_name = "SECS")]
    user_authentication_timeout: Option<u64>,
    #[arg(long, value_name = "BOOL")]
    watchlist_events: Option<bool>,
    #[arg(long, value_name = "SECS")]
    cache_ttl_secs: Option<u64>,
    #[arg(long, value_name = "BOOL")]
    subscription_count_events: Option<bool>,
    /// The endpoints as a JSON array, as in `[[apps.webhooks]]`:
    /// `[{"url":"https://...","event_types":["channel_occupied"]}]`.
    #[arg(long, value_name = "JSON")]
    webhooks: Option<String>,
    /// Comma-separated origin patterns (empty: any origin).
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',')]
    allowed_origins: Option<Vec<String>>,
    #[arg(long, value_name = "N")]
    api_request_rate_per_sec: Option<u64>,
    #[arg(long, value_name = "N")]
    api_event_rate_per_sec: Option<u64>,
}

/// Puts each given `$field` of `$from` into `$map` under its own name.
macro_rules! given {
    ($map:ident, $from:ident; $($field:ident),+) => {$(
        if let Some(value) = $from.$field {
            $map.insert(stringify!($field).to_owned(), Value::from(value));
        }
    )+};
}

impl AppFields {
    fn into_map(self) -> Result<Map<String, Value>, String> {
        let mut map = Map::new();
        let f = &self;
        given!(map, f; enabled, client_events, max_connections, max_presence_members,
            max_event_payload_kb, max_channel_name_length, client_event_rate_per_sec,
            subscribe_rate_per_sec, max_user_info_bytes, max_user_id_length,
            max_subscriptions_per_connection, user_authentication_timeout, watchlist_events,
            cache_ttl_secs, subscription_count_events, api_request_rate_per_sec,
            api_event_rate_per_sec);
        if let Some(text) = &self.webhooks {
            let hooks: Value =
                serde_json::from_str(text).map_err(|e| format!("--webhooks: not JSON: {e}"))?;
            map.insert("webhooks".into(), hooks);
        }
        if let Some(origins) = &self.allowed_origins {
            let origins = origins.iter().filter(|o| !o.is_empty()).cloned();
            map.insert(
                "allowed_origins".into(),
                Value::from(origins.collect::<Vec<_>>()),
            );
        }
        Ok(map)
    }
}

/// Runs `command` against the database of the configuration at `config` (or the defaults and
/// `WARREN_*` variables).
pub fn run(command: AppsCommand, config: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(config.as_deref(), crate::env_vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if config.apps_source.url.is_none() {
        eprintln!(
            "no database: set [apps_source] url in the configuration (--config FILE) or \
             WARREN_APPS_SOURCE__URL"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let source = config.apps_source;
    let done = runtime.block_on(async move {
        let mut admin = Admin::connect(&source).await?;
        execute(&mut admin, command).await
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(Failure::Admin(e)) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Admin(AdminError),
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        Failure::Admin(e)
    }
}

async fn execute(admin: &mut Admin, command: AppsCommand) -> Result<(), Failure> {
    match command {
        AppsCommand::Migrate => println!("the apps table is at schema version {}", admin::VERSION),
        AppsCommand::List => {
            println!("ID\tKEY\tENABLED\tNOTE");
            for app in admin.list().await? {
                let note = match (&app.problem, app.previous_secret_until) {
                    (Some(problem), _) => format!("refused by the servers: {problem}"),
                    (None, Some(until)) => format!("previous secret valid until {until} (unix)"),
                    (None, None) => String::new(),
                };
                let shown = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                println!(
                    "{}\t{}\t{}\t{note}",
                    app.id,
                    shown(app.key),
                    shown(app.enabled.map(|e| e.to_string()))
                );
            }
        }
        AppsCommand::Add {
            id,
            key,
            secret,
            fields,
        } => {
            let fields = fields.into_map().map_err(Failure::Usage)?;
            admin.add(&id, &key, &secret, fields).await?;
            println!("added {id}");
        }
        AppsCommand::Set {
            id,
            key,
            secret,
            fields,
        } => {
            let mut fields = fields.into_map().map_err(Failure::Usage)?;
            for (name, value) in [("key", key), ("secret", secret)] {
                if let Some(value) = value {
                    fields.insert(name.into(), Value::from(value));
                }
            }
            if fields.is_empty() {
                return Err(Failure::Usage(
                    "nothing to set: give at least one setting".into(),
                ));
            }
            admin.set(&id, fields).await?;
            println!("changed {id}");
        }
        AppsCommand::Remove { id } => {
            admin.remove(&id).await?;
            println!("removed {id}");
        }
        AppsCommand::RotateSecret {
            id,
            secret,
            grace_secs,
        } => {
            let generated = secret.is_none();
            let secret = secret.unwrap_or_else(admin::generate_secret);
            let grace = Duration::from_secs(grace_secs);
            admin.rotate_secret(&id, &secret, grace).await?;
            let until = SystemTime::now()
                .checked_add(grace)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            if generated {
                println!("{secret}");
            }
            eprintln!("rotated the secret of {id}; the old one is valid until {until} (unix)");
        }
    }
    Ok(())
}
