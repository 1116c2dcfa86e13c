//! `[metrics]`: the Prometheus metrics listener.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` on a listener of its own. Off by default: nothing is counted and no
    /// port is opened (several nodes on one host would otherwise compete for one port).
    pub enabled: bool,
    /// The metrics listener's address; loopback by default, so that only the host (or a
    /// scraper on it) sees the numbers.
    pub host: String,
    /// Its port; `0` picks a free one.
    pub port: u16,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 9601,
        }
    }
}
