//! The checks no type captures: counts of at least one, limits in range, the node id and key
//! prefix (names without a protocol type), secrets, at least one app, unique ids and keys.

use std::collections::HashMap;

use super::error::Problem;
use super::{
    Config, ConfigError, Origin, MAX_CHANNEL_NAME_LENGTH_LIMIT, MAX_CLUSTER_PREFIX_LENGTH,
    MAX_NODE_ID_LENGTH, MIN_NODE_TIMEOUT_MS,
};

impl Config {
    /// Checks the values that deserialization leaves open (see the module doc); a port of 0
    /// (pick a free one) is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|p| p.into_error(&|_| Origin::Unknown))
    }

    pub(super) fn check(&self) -> Result<(), Problem> {
        let server = &self.server;
        if server.host.is_empty() {
            return Err(Problem::at("server.host", "must not be empty"));
        }
        for (path, value) in [
            ("server.activity_timeout", server.activity_timeout),
            ("server.pong_timeout", server.pong_timeout),
            (
                "server.max_message_size_kb",
                server.max_message_size_kb as u64,
            ),
            (
                "server.max_outbound_queue",
                server.max_outbound_queue as u64,
            ),
            (
                "server.api_timestamp_tolerance_secs",
                server.api_timestamp_tolerance_secs,
            ),
        ] {
            at_least_one(path, value)?;
        }
        if let Some(node_id) = &server.node_id {
            check_name(
                "server.node_id",
                node_id,
                &['_', '.', '-'],
                MAX_NODE_ID_LENGTH,
            )?;
        }
        let cluster = &self.cluster;
        // No braces: Redis keys use hash tags `{...}`.
        let prefix_chars = ['_', '.', ':', '-'];
        check_name(
            "cluster.prefix",
            &cluster.prefix,
            &prefix_chars,
            MAX_CLUSTER_PREFIX_LENGTH,
        )?;
        if cluster.node_timeout_ms < MIN_NODE_TIMEOUT_MS {
            let message = format!(
                "must be at least {MIN_NODE_TIMEOUT_MS}, got {}",
                cluster.node_timeout_ms
            );
            return Err(Problem::at("cluster.node_timeout_ms", message));
        }

        if self.apps.is_empty() {
            let message = "at least one app is required (add an [[apps]] section)";
            return Err(Problem::at("apps", message));
        }
        let mut ids = HashMap::new();
        let mut keys = HashMap::new();
        for (index, app) in self.apps.iter().enumerate() {
            let at = |field: &str| format!("apps.{index}.{field}");
            if app.secret.is_empty() {
                return Err(Problem::at(at("secret"), "must not be empty"));
            }
            for (field, value, seen) in [
                ("id", app.id.as_str(), &mut ids),
                ("key", app.key.as_str(), &mut keys),
            ] {
                if let Some(first) = seen.insert(value, index) {
                    let message =
                        format!("duplicate app {field} {value:?} (also used by apps[{first}])");
                    return Err(Problem::at(at(field), message));
                }
            }
            at_least_one(&at("max_presence_members"), app.max_presence_members as u64)?;
            at_least_one(&at("max_event_payload_kb"), app.max_event_payload_kb as u64)?;
            let length = app.max_channel_name_length;
            if !(1..=MAX_CHANNEL_NAME_LENGTH_LIMIT).contains(&length) {
                let message =
                    format!("must be between 1 and {MAX_CHANNEL_NAME_LENGTH_LIMIT}, got {length}");
                return Err(Problem::at(at("max_channel_name_length"), message));
            }
            let rate = app.client_event_rate_per_sec.into();
            at_least_one(&at("client_event_rate_per_sec"), rate)?;
            let subscriptions = app.max_subscriptions_per_connection as u64;
            at_least_one(&at("max_subscriptions_per_connection"), subscriptions)?;
        }
        Ok(())
    }
}

fn at_least_one(path: &str, value: u64) -> Result<(), Problem> {
    match value {
        0 => Err(Problem::at(path, "must be at least 1, got 0")),
        _ => Ok(()),
    }
}

/// Not empty, at most `max_len` characters, only ASCII letters, digits and `extra`.
fn check_name(path: &str, value: &str, extra: &[char], max_len: usize) -> Result<(), Problem> {
    if value.is_empty() {
        return Err(Problem::at(path, "must not be empty"));
    }
    let allowed = |c: &char| c.is_ascii_alphanumeric() || extra.contains(c);
    if let Some(bad) = value.chars().find(|c| !allowed(c)) {
        let quoted: Vec<String> = extra.iter().map(|c| format!("{c:?}")).collect();
        let (last, rest) = quoted
            .split_last()
            .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
        let hint = match bad {
            '{' | '}' => "; braces are reserved for Redis hash tags",
            _ => "",
        };
        let message = format!(
            "invalid character {bad:?} in {value:?} (only A-Z, a-z, 0-9, {} and {last} are \
             allowed{hint})",
            rest.join(", ")
        );
        return Err(Problem::at(path, message));
    }
    let length = value.chars().count();
    if length > max_len {
        let message = format!("must be at most {max_len} characters, got {length}");
        return Err(Problem::at(path, message));
    }
    Ok(())
}
