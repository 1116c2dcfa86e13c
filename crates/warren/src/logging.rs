//! The server's log: which events are written, and how.
//!
//! The level is `WARREN_LOG` when it is set, else `[log] level` (`WARREN_LOG__LEVEL`), else
//! `info`: the variable wins so that an operator can turn on `debug` for one run without
//! editing the file. The format is `--log-format`, else `[log] format`, else text. Lines go to
//! standard output; in JSON each is one object (`timestamp`, `level`, `message`, `target` and
//! the event's fields at the top level), and so is the start-up banner, which is written
//! whatever the level, as the text banner is.

use std::io::IsTerminal;
use std::net::SocketAddr;

use tracing_subscriber::EnvFilter;
use warren_server::config::{LogConfig, LogFormat};
use warren_server::Config;

/// The target of the start-up lines, let through at any level.
const START: &str = "warren::start";

/// Installs the subscriber for `serve`. Fails on a `WARREN_LOG` that is not a filter.
pub fn init(log: &LogConfig, format: LogFormat) -> Result<(), String> {
    let directives = match std::env::var("WARREN_LOG") {
        Ok(value) if !value.trim().is_empty() => value,
        _ => log.level.as_str().to_owned(),
    };
    let mut filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| format!("invalid WARREN_LOG {directives:?}: {e}"))?;
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // Colours only for a person at a terminal, not for journald or a file.
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    Ok(())
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
