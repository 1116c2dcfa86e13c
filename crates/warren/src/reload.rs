//! `SIGHUP` reloads what can change without a restart: the TLS certificate and key
//! (`[server.tls]`), and the configuration file: its apps are applied (added, changed,
//! disabled, removed: see `warren_server::Reloader`), so is `log.level` (unless `WARREN_LOG`
//! pins the level), and every other key that changed is named in a warning, since it takes a
//! restart. A file that does not load is refused with
//! the one message naming the key, and the running configuration stays.

use std::path::PathBuf;

use warren_server::{Config, Reloader, TlsReloader};

/// What a `SIGHUP` reloads.
pub struct OnHangup {
    pub tls: Option<TlsReloader>,
    pub config: Reloader,
    /// The file `serve` read (`None`: no file, nothing to re-read).
    pub file: Option<PathBuf>,
    /// Applied to the re-read file as to the first one (`--host`, `--port`).
    pub overrides: Box<dyn Fn(&mut Config) + Send + Sync>,
}

impl OnHangup {
    fn reload(&self) {
        if let Some(tls) = &self.tls {
            tls.reload_logged();
        }
        let Some(file) = &self.file else {
            return;
        };
        let mut config = match Config::load(Some(file), crate::env_vars()) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!("reload refused, the running configuration stays: {e}");
                return;
            }
        };
        (self.overrides)(&mut config);
        let report = self.config.reload(config);
        let apps = report.apps.map_or("not from the file".to_owned(), |c| {
            format!(
                "{} added, {} changed, {} disabled, {} removed",
                c.added.len(),
                c.changed.len(),
                c.disabled.len(),
                c.removed.len()
            )
        });
        match &report.log_level {
            Some(Ok(level)) => tracing::info!(level = level.as_str(), "log level changed"),
            Some(Err(why)) => tracing::warn!("log.level not applied, the level stays: {why}"),
            None => {}
        }
        tracing::info!(file = %file.display(), apps = %apps, "configuration reloaded");
        if !report.needs_restart.is_empty() {
            tracing::warn!(
                keys = %report.needs_restart.join(", "),
                "changed keys that take effect only after a restart (their running values stay)"
            );
        }
    }
}

/// Reloads on every `SIGHUP` for the life of the process. The handler is in place when this
/// returns, so a `SIGHUP` right after start-up reloads instead of ending the process.
pub fn on_sighup(what: OnHangup) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        what.reload();
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP: no reloads"),
        }
    }
    #[cfg(not(unix))]
    drop(what);
}
