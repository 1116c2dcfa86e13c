//! The server's log: which events are written, and how.
//!
//! The level is `WARREN_LOG` when it is set, else `[log] level` (`WARREN_LOG__LEVEL`), else
//! `info`: the variable wins so that an operator can turn on `debug` for one run without
//! editing the file. `log.level` follows `SIGHUP` ([`LevelControl`]: the filter sits behind
//! tracing-subscriber's reload layer), unless `WARREN_LOG` pins it. The format is
//! `--log-format`, else `[log] format`, else text, fixed for the life of the process. Lines go
//! to standard output; in JSON each is one object (`timestamp`, `level`, `message`, `target`
//! and the event's fields at the top level), and so is the start-up banner, which is written
//! whatever the level, as the text banner is.

use std::io::IsTerminal;
use std::net::SocketAddr;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};
use warren_server::config::{LogConfig, LogFormat, LogLevel};
use warren_server::Config;

/// The target of the start-up lines, let through at any level.
const START: &str = "warren::start";

/// Changes the level of the installed log.
pub struct LevelControl {
    handle: reload::Handle<EnvFilter, Registry>,
    format: LogFormat,
    /// `WARREN_LOG` was set at start: it wins over `log.level`, now and on reloads.
    pinned: bool,
}

impl LevelControl {
    /// Puts `level` in force (for the events logged from now on), or says why not.
    pub fn apply(&self, level: &LogLevel) -> Result<(), String> {
        if self.pinned {
            return Err("WARREN_LOG is set and wins over log.level".into());
        }
        let filter = filter(level.as_str(), self.format)?;
        self.handle.reload(filter).map_err(|e| e.to_string())
    }
}

/// Installs the subscriber for `serve`. Fails on a `WARREN_LOG` that is not a filter.
pub fn init(log: &LogConfig, format: LogFormat) -> Result<LevelControl, String> {
    let pinned = std::env::var("WARREN_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty());
    let directives = pinned.as_deref().unwrap_or(log.level.as_str());
    let filter = filter(directives, format).map_err(|e| format!("invalid WARREN_LOG {e}"))?;
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        // Colours only for a person at a terminal, not for journald or a file.
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::stdout().is_terminal()),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .init(),
    }
    Ok(LevelControl {
        handle,
        format,
        pinned: pinned.is_some(),
    })
}

/// The filter of `directives` with Warren's additions; an error quotes them.
fn filter(directives: &str, format: LogFormat) -> Result<EnvFilter, String> {
    let mut filter = EnvFilter::builder()
        .parse(directives)
        .map_err(|e| format!("{directives:?}: {e}"))?;
    // rustls warns on every handshake about what a client sent (an IP address as SNI, say):
    // nothing an operator can act on, and a client could flood the log with it.
    if !directives.contains("rustls") {
        let quiet = "rustls=error".parse().map_err(|e| format!("{e}"))?;
        filter = filter.add_directive(quiet);
    }
    if format == LogFormat::Json {
        let start = format!("{START}=info")
            .parse()
            .map_err(|e| format!("{e}"))?;
        filter = filter.add_directive(start);
    }
    Ok(filter)
}

/// Why the server cannot run, once the log is set up: a log line in JSON (so that every line
/// a collector reads is JSON), else on standard error as before the log existed.
pub fn fatal(format: LogFormat, message: &str) {
    match format {
        LogFormat::Json => tracing::error!("{message}"),
        LogFormat::Text => eprintln!("{message}"),
    }
}

/// The banner as log lines, for `--log-format json`: what the text banner shows, as fields.
pub fn json_banner(config: &Config, addr: SocketAddr, node_id: &str, version: &str) {
    tracing::info!(
        target: START,
        version,
        %addr,
        node_id,
        role = %config.server.role,
        backend = %config.cluster.state_target().backend,
        fanout = %config.cluster.fanout_target().backend,
        "Warren listening"
    );
    if let Some(url) = config
        .apps_source
        .url
        .as_ref()
        .filter(|_| !crate::apps_from_file(config))
    {
        tracing::info!(target: START, %url, table = %config.apps_source.table, "apps from PostgreSQL");
    }
    for app in config.apps.iter().filter(|_| crate::apps_from_file(config)) {
        tracing::info!(
            target: START,
            app_id = %app.id,
            key = %app.key,
            client_events = app.client_events,
            enabled = app.enabled,
            "app"
        );
    }
    if config.uses_demo_secret() {
        tracing::warn!(
            target: START,
            "an app uses the demo secret \"app-secret\": anyone can sign requests for it; set real \
             credentials before exposing this server"
        );
    }
}
