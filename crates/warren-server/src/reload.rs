//! Changes to a running server: a new set of apps (from the configuration file on `SIGHUP`, or
//! from PostgreSQL), and a re-read configuration file.
//!
//! Every source of apps goes through [`AppsUpdater::apply`]: the snapshot is replaced
//! (`app::LiveApps`), then the connections of disabled (4003) and removed or re-keyed (4001)
//! apps are closed. A re-read file changes the apps (when they come from it) and the TLS
//! certificate (the caller reloads it); every other key that differs is reported as needing a
//! restart, and the running configuration keeps its old value.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::app::{App, AppRegistry, AppsChange, LiveApps};
use crate::config::{AppsBackend, Config};
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
}

/// Re-reads the configuration of a running server (the `warren` binary calls it on `SIGHUP`).
#[derive(Clone)]
pub struct Reloader(Arc<Inner>);

struct Inner {
    /// The configuration in force: what the next reload compares with.
    running: Mutex<Config>,
    /// `None` when the apps do not come from the file (PostgreSQL, an embedder's registry).
    apps: Option<Arc<AppsUpdater>>,
}

impl Reloader {
    pub(crate) fn new(running: Config, apps: Option<Arc<AppsUpdater>>) -> Self {
        Reloader(Arc::new(Inner {
            running: Mutex::new(running),
            apps,
        }))
    }

    /// Applies what can change live from `new` (already loaded and validated): the apps.
    /// Returns the keys that differ but need a restart; they keep their running values.
    pub fn reload(&self, new: Config) -> ReloadReport {
        let mut running = self.0.running.lock();
        let mut report = ReloadReport {
            apps: None,
            needs_restart: restart_keys(&running, &new),
        };
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

/// The keys outside the apps whose values differ; none of them changes live. (The TLS files are
/// re-read by the caller; changing their paths needs a restart.)
fn restart_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let (s, n) = (&old.server, &new.server);
    differing!(keys, s, n, "server"; host, port, activity_timeout, pong_timeout,
        max_message_size_kb, max_outbound_queue, api_timestamp_tolerance_secs, role,
        ingress_threads, node_id, handshake_timeout_ms, request_timeout_ms,
        http_idle_timeout_secs, write_timeout_ms, max_connections, max_connections_per_ip,
        new_connections_per_ip_per_sec, trusted_proxies, shutdown_grace_ms, tls);
    differing!(keys, old, new, ""; cluster, apps_source, monitor, console, webhooks, log,
        metrics);
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
            restart_keys(&old, &new),
            ["server.activity_timeout", "metrics"]
        );
    }
}
