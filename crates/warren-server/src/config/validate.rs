//! What the types leave open. `load` runs it and so does the server on start, so that a
//! configuration built in code meets the same rules as a file.

use std::collections::HashMap;

use super::{AppConfig, AppsBackend, Config, ConfigError};

/// Returns the first `field` of `item` below `min` as a problem of `section.field`.
macro_rules! at_least {
    ($item:expr, $section:expr, $min:expr; $($field:ident),+) => {$(
        if ($item.$field as u64) < $min {
            let (key, value) = (format!("{}.{}", $section, stringify!($field)), $item.$field);
            return Err((key, format!("must be at least {}, got {value}", $min)));
        }
    )+};
}

macro_rules! at_most {
    ($item:expr, $section:expr, $max:expr; $($field:ident),+) => {$(
        if ($item.$field as u64) > $max {
            let (key, value) = (format!("{}.{}", $section, stringify!($field)), $item.$field);
            return Err((key, format!("must be at most {}, got {value}", $max)));
        }
    )+};
}

/// Sizes are bounded so that no sum or product of them can overflow, and so that a typo
/// (a size in bytes where kilobytes were meant) is refused rather than obeyed.
const MAX_SIZE_KB: u64 = 16 * 1024;
/// A day: longer timeouts are not timeouts.
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// A problem: the key (`apps.1.id`) and what is wrong with its value.
type Problem = (String, String);

impl Config {
    /// Checks ranges, names, secrets and uniqueness; port 0 (pick a free one) is valid.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check()
            .map_err(|(key, what)| ConfigError::invalid("", &key, what))
    }

    pub(super) fn check(&self) -> Result<(), Problem> {
        let s = &self.server;
        if s.host.is_empty() {
            return Err(("server.host".into(), "must not be empty".into()));
        }
        if self.metrics.host.is_empty() {
            return Err(("metrics.host".into(), "must not be empty".into()));
        }
        at_least!(s, "server", 1; activity_timeout, pong_timeout, max_message_size_kb,
            max_outbound_queue, api_timestamp_tolerance_secs, handshake_timeout_ms,
            request_timeout_ms, http_idle_timeout_secs, write_timeout_ms);
        at_most!(s, "server", MAX_SIZE_KB; max_message_size_kb);
        at_most!(s, "server", 1_000_000; max_outbound_queue);
        at_most!(s, "server", MAX_TIMEOUT_SECS; activity_timeout, pong_timeout,
            http_idle_timeout_secs);
        at_most!(s, "server", MAX_TIMEOUT_SECS * 1000; handshake_timeout_ms, request_timeout_ms,
            write_timeout_ms);
        at_most!(s, "server", MAX_TIMEOUT_SECS * 1000; shutdown_grace_ms);
        at_least!(self.cluster, "cluster", 1000; node_timeout_ms);
        at_least!(self.monitor, "monitor", 1; tap_queue);
        if let Some(token) = &self.monitor.operator_token {
            if token.chars().count() < super::monitor::MIN_OPERATOR_TOKEN {
                let min = super::monitor::MIN_OPERATOR_TOKEN;
                let what = format!("must be at least {min} characters (it grants every app)");
                return Err(("monitor.operator_token".into(), what));
            }
        }
        if s.ingress_threads > 64 {
            let what = format!("must be at most 64, got {}", s.ingress_threads);
            return Err(("server.ingress_threads".into(), what));
        }
        for (i, app) in self.apps.iter().enumerate() {
            app.check(&format!("apps.{i}"))?;
        }
        if let Some(key) = s.tls.as_ref().and_then(|tls| tls.empty_path()) {
            return Err((key.into(), "must not be empty".into()));
        }
        if let Some(node_id) = &s.node_id {
            name("server.node_id", node_id, &['_', '.', '-'], "")?;
        }
        if let Err((key, what)) = self.cluster.nats.check() {
            return Err((format!("cluster.nats.{key}"), what));
        }
        self.cluster.check_parts()?;
        let braces = " (no braces: Redis hash tags)";
        name(
            "cluster.prefix",
            &self.cluster.prefix,
            &['_', '.', ':', '-'],
            braces,
        )?;
        self.apps_source
            .check()
            .map_err(|(field, what)| (format!("apps_source.{field}"), what))?;
        if self.cluster.redis_tls_ca_file.is_some() {
            let key = "cluster.redis_tls_ca_file";
            self.cluster.redis_target().map_err(|e| (key.into(), e))?;
        }
        if self.apps.is_empty() && self.apps_source.backend == AppsBackend::Config {
            let what = "at least one app is required (an [[apps]] section)";
            return Err(("apps".into(), what.into()));
        }
        let (mut ids, mut keys) = (HashMap::new(), HashMap::new());
        for (i, app) in self.apps.iter().enumerate() {
            for (field, value, seen) in [
                ("id", app.id.as_str(), &mut ids),
                ("key", app.key.as_str(), &mut keys),
            ] {
                if let Some(first) = seen.insert(value, i) {
                    let what =
                        format!("duplicate app {field} {value:?} (also apps.{first}.{field})");
                    return Err((format!("apps.{i}.{field}"), what));
                }
            }
        }
        let w = &self.webhooks;
        at_least!(w, "webhooks", 1; batch_max, timeout_ms, max_pending, requests_in_flight);
        at_most!(w, "webhooks", 64; requests_in_flight, threads);
        if w.spool_dir.is_some() && self.cluster.state_target().backend == super::Backend::Redis {
            let what = "is for a single node: with the cluster state in Redis pending \
                webhooks are kept in Redis";
            return Err(("webhooks.spool_dir".into(), what.into()));
        }
        Ok(())
    }
}

impl AppConfig {
    /// The rules of one app, wherever it comes from (`[[apps]]`, a database row); a problem's
    /// key is `at.<field>` (`<field>` alone when `at` is empty).
    pub(crate) fn check(&self, at: &str) -> Result<(), Problem> {
        let section = if at.is_empty() {
            String::new()
        } else {
            format!("{at}.")
        };
        let key = |field: &str| format!("{section}{field}");
        let fail = |field: &str, what: String| Err((key(field), what));
        let app = self;
        let checked: Result<(), Problem> = (|| {
            at_least!(app, "", 1; max_presence_members, max_event_payload_kb,
                max_channel_name_length, client_event_rate_per_sec, subscribe_rate_per_sec,
                max_subscriptions_per_connection, cache_ttl_secs);
            at_most!(app, "", MAX_SIZE_KB; max_event_payload_kb);
            at_most!(app, "", MAX_SIZE_KB * 1024; max_user_info_bytes);
            Ok(())
        })();
        // The macros name `.<field>`: put the app's place in front.
        checked.map_err(|(k, what)| (key(k.trim_start_matches('.')), what))?;
        if app.max_channel_name_length > 1000 {
            let what = format!("must be at most 1000, got {}", app.max_channel_name_length);
            return fail("max_channel_name_length", what);
        }
        if app.secret.is_empty() {
            return fail("secret", "must not be empty".into());
        }
        for (j, hook) in app.webhooks.iter().enumerate() {
            hook.check()
                .map_err(|(field, what)| (key(&format!("webhooks.{j}.{field}")), what))?;
        }
        Ok(())
    }
}

/// 1 to 64 ASCII letters, digits and `extra` characters.
fn name(key: &str, value: &str, extra: &[char], note: &str) -> Result<(), Problem> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || extra.contains(&c);
    if (1..=64).contains(&value.chars().count()) && value.chars().all(allowed) {
        return Ok(());
    }
    let extra: Vec<String> = extra.iter().map(char::to_string).collect();
    let what = format!(
        "must be 1 to 64 of A-Z a-z 0-9 {}{note}, got {value:?}",
        extra.join(" ")
    );
    Err((key.into(), what))
}
