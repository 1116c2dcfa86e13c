//! `[log]`: the log's format and level (read by the `warren` binary, which sets up the
//! subscriber), and how many lines connection errors may take (read by the server).
//!
//! The level is a `tracing` filter directive (`info`, `warn,warren_server::cluster=debug`),
//! parsed here so that `warren config check` refuses a wrong one. `WARREN_LOG`, when set, wins
//! over it: the binary decides that, not this module.

use std::fmt;
use std::num::NonZeroU64;

use serde::{de, Deserialize, Deserializer};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: LogLevel,
    /// Lines one kind of connection error may take in each window; the rest are counted.
    pub connection_error_lines: u32,
    pub connection_error_window_secs: NonZeroU64,
}

impl LogConfig {
    pub const DEFAULT_CONNECTION_ERROR_LINES: u32 = 10;
    pub const DEFAULT_CONNECTION_ERROR_WINDOW_SECS: u64 = 10;
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: LogLevel::default(),
            connection_error_lines: Self::DEFAULT_CONNECTION_ERROR_LINES,
            connection_error_window_secs: NonZeroU64::new(
                Self::DEFAULT_CONNECTION_ERROR_WINDOW_SECS,
            )
            .unwrap_or(NonZeroU64::MIN),
        }
    }
}

/// How a log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For people: one line of text per event.
    #[default]
    Text,
    /// For log collectors: one JSON object per line.
    Json,
}

impl LogFormat {
    pub const NAMES: &'static [&'static str] = &["text", "json"];

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unknown log format `{s}`, expected `text` or `json`"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse()
            .map_err(|_| de::Error::unknown_variant(&name, Self::NAMES))
    }
}

/// A filter directive that `tracing_subscriber::EnvFilter` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevel(String);

impl LogLevel {
    pub fn parse(directives: &str) -> Result<Self, String> {
        let directives = directives.trim();
        if directives.is_empty() {
            return Err("must not be empty (e.g. \"info\")".into());
        }
        EnvFilter::builder()
            .parse(directives)
            .map_err(|e| format!("not a log filter: {e}"))?;
        Ok(LogLevel(directives.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LogLevel {
    fn default() -> Self {
        LogLevel("info".into())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        LogLevel::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::parse(text, figment::Source::Custom(String::new()), env).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_text_at_info() {
        let config = parse("", &[]).expect("valid");
        assert_eq!(config.log, LogConfig::default());
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(config.log.level.as_str(), "info");
        assert_eq!(config.log.connection_error_lines, 10);
        assert_eq!(config.log.connection_error_window_secs.get(), 10);
    }

    #[test]
    fn keys_from_the_file_and_the_environment() {
        let text = "[log]\nformat = \"json\"\nlevel = \"warn,warren_server=debug\"\n";
        let config = parse(text, &[("WARREN_LOG__CONNECTION_ERROR_LINES", "3")]).expect("valid");
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.log.level.as_str(), "warn,warren_server=debug");
        assert_eq!(config.log.connection_error_lines, 3);
        let config = parse("", &[("WARREN_LOG__FORMAT", "json")]).expect("valid");
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn wrong_values_are_refused_with_their_key() {
        let err = parse("[log]\nformat = \"xml\"\n", &[]).unwrap_err();
        assert!(err.contains("log.format") && err.contains("xml"), "{err}");
        let err = parse("[log]\nlevel = \"warren=loud\"\n", &[]).unwrap_err();
        assert!(err.contains("log.level"), "{err}");
        let err = parse("", &[("WARREN_LOG__LEVEL", " ")]).unwrap_err();
        assert!(
            err.contains("WARREN_LOG__LEVEL") && err.contains("log.level"),
            "{err}"
        );
        let err = parse("[log]\nconnection_error_window_secs = 0\n", &[]).unwrap_err();
        assert!(err.contains("log.connection_error_window_secs"), "{err}");
    }

    #[test]
    fn warren_log_is_not_a_configuration_variable() {
        // The binary reads it as the level; the configuration must not refuse it.
        parse("", &[("WARREN_LOG", "debug")]).expect("valid");
    }
}
