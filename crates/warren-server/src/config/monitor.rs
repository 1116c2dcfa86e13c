//! `[monitor]` and `[console]`: who may watch the tap, and whether the web console is served.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Grants `/monitor` (and the console) for every app, as `Authorization: Bearer <token>`.
    /// Without it, only requests signed with an app's key and secret are let in, for that app.
    pub operator_token: Option<String>,
    /// Events queued for one watcher before new ones are dropped (and counted).
    pub tap_queue: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            operator_token: None,
            tap_queue: 4096,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the web debug console at `/console` (off by default).
    pub enabled: bool,
}

/// Shortest operator token accepted: it grants every app.
pub const MIN_OPERATOR_TOKEN: usize = 16;
