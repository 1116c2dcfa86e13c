//! Changes to a running server: a new set of apps (from the configuration file on `SIGHUP`, or
//! from PostgreSQL), and a re-read configuration file.
//!
//! Every source of apps goes through [`AppsUpdater::apply`]: the snapshot is replaced
//! (`app::LiveApps`), then the connections of disabled (4003) and removed or re-keyed (4001)
//! apps are closed. A re-read file changes the apps (when they come from it), the TLS
//! certificate (the caller reloads it) and `log.level` (when the program that owns the log
//! follows it: [`Reloader::follow_log_level`]); every other key that differs is reported as
//! needing a restart, and the running configuration keeps its old value.

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::app::{App, AppRegistry, AppsChange, LiveApps};
use crate::config::{AppsBackend, Config, LogLevel};
use crate::connections::Connections;

/// Applies sets of apps to the registry and closes what they retire.
pub(crate) struct AppsUpdater {
    pub apps: Arc<LiveApps>,
    pub connections: Arc<Connections>,
}

impl AppsUpdater {
    /// Makes `apps` the apps (from `source`, for the log) and closes the connections of the
    /// versions it retires.
    pub(crate) fn apply(&self, apps: Vec<App>, source: &str) -> AppsChange {
        self.apply_keeping(apps, &[], source)
    }

    /// As [`AppsUpdater::apply`]; the apps of `keep` (ids) missing from `apps` stay as they are.
    pub(crate) fn apply_keeping(
        &self,
        apps: Vec<App>,
        keep: &[String],
        source: &str,
    ) -> AppsChange {
        let change = self.apps.replace_keeping(apps, keep);
        let closed = if change.retired() {
            self.connections.close_retired()
        } else {
            0
        };
        if !change.is_empty() {
            let ids = |ids: &[warren_protocol::AppId]| {
                ids.iter()
                    .map(|id| id.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            tracing::info!(
                source,
                added = %ids(&change.added),
                changed = %ids(&change.changed),
                disabled = %ids(&change.disabled),
                removed = %ids(&change.removed),
                connections_closed = closed,
                "apps changed"
            );
        }
        change
    }

    /// Whether the apps were read at least once.
    pub(crate) fn apps_ready(&self) -> bool {
        self.apps.is_ready()
    }
}

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The apps' change, when they come from the file.
    pub apps: Option<AppsChange>,
    /// Keys whose new value takes effect only after a restart (the old one stays).
    pub needs_restart: Vec<String>,
    /// A changed `log.level`, when it is followed: the level now in force, or why the new one
    /// was not applied (the old one stays).
    pub log_level: Option<Result<LogLevel, String>>,
}

/// Puts a new `log.level` in force, or says why it cannot.
type ApplyLogLevel = Box<dyn Fn(&LogLevel) -> Result<(), String> + Send + Sync>;

/// Re-reads the configuration of a running server (the `warren` binary calls it on `SIGHUP`).
#[derive(Clone)]
pub struct Reloader(Arc<Inner>);

struct Inner {
    /// The configuration in force: what the next reload compares with.
    running: Mutex<Config>,
    /// `None` when the apps do not come from the file (PostgreSQL, an embedder's registry).
    apps: Option<Arc<AppsUpdater>>,
    /// Set by the program that owns the log; unset, `log.level` needs a restart.
    log_level: OnceLock<ApplyLogLevel>,
}

impl Reloader {
    pub(crate) fn new(running: Config, apps: Option<Arc<AppsUpdater>>) -> Self {
        Reloader(Arc::new(Inner {
            running: Mutex::new(running),
            apps,
            log_level: OnceLock::new(),
        }))
    }

    /// From now on a changed `log.level` is handed to `apply` on reload (the server does not
    /// own the process's log: the program that installed it does), instead of being reported
    /// as needing a restart. The first call wins; `false` when one came before.
    pub fn follow_log_level(
        &self,
        apply: impl Fn(&LogLevel) -> Result<(), String> + Send + Sync + 'static,
    ) -> bool {
        self.0.log_level.set(Box::new(apply)).is_ok()
    }

    /// Applies what can change live from `new` (already loaded and validated): the apps, and
    /// `log.level` when it is followed. Returns the keys that differ but need a restart; they
    /// keep their running values.
    pub fn reload(&self, new: Config) -> ReloadReport {
        let mut running = self.0.running.lock();
        let apply_level = self.0.log_level.get();
        let mut report = ReloadReport {
            apps: None,
            needs_restart: restart_keys(&running, &new, apply_level.is_some()),
            log_level: None,
        };
        if let (Some(apply), true) = (apply_level, running.log.level != new.log.level) {
            let applied = apply(&new.log.level).map(|()| new.log.level.clone());
            if applied.is_ok() {
                running.log.level = new.log.level.clone();
            }
            report.log_level = Some(applied);
        }
        let from_file = new.apps_source.backend == AppsBackend::Config
            && running.apps_source.backend == AppsBackend::Config;
        if let (Some(updater), true) = (&self.0.apps, from_file) {
            // The webhook endpoints follow the apps (`webhooks::fleet`).
            let apps = new.apps.iter().map(App::from_config).collect();
            report.apps = Some(updater.apply(apps, "configuration file"));
            running.apps = new.apps;
        }
        report
    }
}

/// Lists each `$field` of `$old.$section` and `$new.$section` that differs.
macro_rules! differing {
    ($out:ident, $old:expr, $new:expr, $section:literal; $($field:ident),+) => {$(
        if $old.$field != $new.$field {
            $out.push(concat!($section, ".", stringify!($field)).to_owned());
        }
    )+};
}

/// The keys outside the apps whose values differ; none of them changes live (`log.level` does
/// when `level_live`). The TLS files are re-read by the caller; changing their paths needs a
/// restart.
fn restart_keys(old: &Config, new: &Config, level_live: bool) -> Vec<String> {
    let mut keys = Vec::new();
    let (s, n) = (&old.server, &new.server);
    differing!(keys, s, n, "server"; host, port, activity_timeout, pong_timeout,
        max_message_size_kb, max_outbound_queue, api_timestamp_tolerance_secs, role,
        ingress_threads, node_id, handshake_timeout_ms, request_timeout_ms,
        http_idle_timeout_secs, write_timeout_ms, max_connections, max_connections_per_ip,
        new_connections_per_ip_per_sec, trusted_proxies, shutdown_grace_ms, tls);
    differing!(keys, old, new, ""; cluster, apps_source, monitor, console, webhooks);
    let (l, n) = (&old.log, &new.log);
    differing!(keys, l, n, "log"; format, connection_error_lines, connection_error_window_secs);
    if !level_live {
        differing!(keys, l, n, "log"; level);
    }
    differing!(keys, old, new, ""; metrics);
    for key in &mut keys {
        // A whole section: `cluster`, not `.cluster`.
        if let Some(section) = key.strip_prefix('.') {
            *key = section.to_owned();
        }
    }
    if old.apps_source.backend == AppsBackend::Postgres && old.apps != new.apps {
        keys.push("apps (the apps come from PostgreSQL: [[apps]] is not read)".into());
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_keys_name_what_differs() {
        let old = Config::default();
        let mut new = Config::default();
        new.server.activity_timeout = 5;
        new.metrics.port = 1;
        new.apps[0].max_connections = 3;
        assert_eq!(
            restart_keys(&old, &new, false),
            ["server.activity_timeout", "metrics"]
        );
    }

    #[test]
    fn the_log_level_is_live_only_when_followed() {
        let old = Config::default();
        let mut new = Config::default();
        new.log.level = LogLevel::parse("debug").unwrap();
        new.log.format = crate::config::LogFormat::Json;
        assert_eq!(restart_keys(&old, &new, false), ["log.format", "log.level"]);
        assert_eq!(restart_keys(&old, &new, true), ["log.format"]);

        let reloader = Reloader::new(old, None);
        let report = reloader.reload(new.clone());
        assert_eq!(report.needs_restart, ["log.format", "log.level"]);
        assert_eq!(report.log_level, None);

        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        assert!(reloader.follow_log_level(move |level| {
            into.lock().push(level.as_str().to_owned());
            Ok(())
        }));
        assert!(!reloader.follow_log_level(|_| Ok(())), "the first one wins");
        let report = reloader.reload(new.clone());
        assert_eq!(report.needs_restart, ["log.format"]);
        assert_eq!(report.log_level, Some(Ok(new.log.level.clone())));
        // In force now: the same level again is no change.
        assert_eq!(reloader.reload(new).log_level, None);
        assert_eq!(*seen.lock(), ["debug"]);

        // Refused (WARREN_LOG wins, say): said so, and the running level stays.
        let pinned = Reloader::new(Config::default(), None);
        pinned.follow_log_level(|_| Err("pinned".into()));
        let mut debug = Config::default();
        debug.log.level = LogLevel::parse("debug").unwrap();
        for _ in 0..2 {
            let report = pinned.reload(debug.clone());
            assert_eq!(report.log_level, Some(Err("pinned".into())));
            assert!(
                report.needs_restart.is_empty(),
                "{:?}",
                report.needs_restart
            );
        }
    }
}
