//! `[apps_source]`: where the apps come from: the file's `[[apps]]` (the default) or a
//! PostgreSQL table. The URL is parsed here, by the driver that uses it, so a bad one is
//! refused with the configuration, not at the first connection; so is a `tls_ca_file` that
//! holds no certificate, or that would go unused (a URL without `sslmode=require`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer};

names! {
    /// Where apps are read from.
    AppsBackend { Config = "config", Postgres = "postgres" }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppsSourceConfig {
    pub backend: AppsBackend,
    /// `postgres://user:password@host:port/database`; required with `backend = "postgres"`.
    pub url: Option<PostgresUrl>,
    /// PEM certificate authorities the database's certificate is verified against, instead
    /// of the system's (`sslmode=require` only).
    pub tls_ca_file: Option<PathBuf>,
    /// The table of apps (created by the migration); a plain lower-case SQL name.
    pub table: String,
    /// Seconds between full reads of the table, the safety net under LISTEN/NOTIFY.
    pub refresh_interval_secs: u64,
}

impl Default for AppsSourceConfig {
    fn default() -> Self {
        AppsSourceConfig {
            backend: AppsBackend::Config,
            url: None,
            tls_ca_file: None,
            table: "warren_apps".into(),
            refresh_interval_secs: 30,
        }
    }
}

/// A PostgreSQL connection URL, parsed by `tokio-postgres`; shown without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// The driver's settings for this URL.
    pub fn settings(&self) -> tokio_postgres::Config {
        // Parsed once already (`FromStr`); parsing the same text again cannot fail.
        tokio_postgres::Config::from_str(&self.0).unwrap_or_default()
    }

    /// Whether the URL asks for TLS (`sslmode=require`). The driver's other modes, `disable`
    /// and `prefer` (its default), connect in plain: see `apps_source::database`.
    pub fn requires_tls(&self) -> bool {
        self.settings().get_ssl_mode() == tokio_postgres::config::SslMode::Require
    }
}

impl FromStr for PostgresUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err("must be a postgres:// URL".into());
        }
        tokio_postgres::Config::from_str(text).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        Ok(PostgresUrl(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for PostgresUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// The URL with its password (if any) replaced, for logs and errors.
impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        let scheme_end = s.find("://").map_or(0, |i| i + 3);
        let (head, rest) = s.split_at(scheme_end);
        match rest.split_once('@') {
            Some((user, host)) if !user.contains('/') => {
                let user = user.split(':').next().unwrap_or_default();
                write!(f, "{head}{user}:***@{host}")
            }
            _ => f.write_str(s),
        }
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl AppsSourceConfig {
    /// What `validate` checks: a URL with the postgres backend, a table name that needs no
    /// quoting, a refresh interval from 1 s to a day, a CA file that holds certificates and
    /// is used.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.backend == AppsBackend::Postgres && self.url.is_none() {
            return Err(("url", "is required with backend = \"postgres\"".into()));
        }
        if let Some(path) = &self.tls_ca_file {
            if !self.url.as_ref().is_some_and(PostgresUrl::requires_tls) {
                let what = "is used only with sslmode=require in apps_source.url";
                return Err(("tls_ca_file", what.into()));
            }
            super::roots::from_file(path).map_err(|e| ("tls_ca_file", e))?;
        }
        let t = &self.table;
        let ok = (1..=48).contains(&t.len())
            && t.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            let what =
                format!("must be 1 to 48 of a-z 0-9 _ (not starting with a digit), got {t:?}");
            return Err(("table", what));
        }
        if !(1..=86_400).contains(&self.refresh_interval_secs) {
            let what = format!(
                "must be from 1 to 86400, got {}",
                self.refresh_interval_secs
            );
            return Err(("refresh_interval_secs", what));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::parse(text, figment::Source::Custom("f.toml".into()), env)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_ca_file_needs_sslmode_require_and_a_certificate() {
        let ca = warren_testkit::tls::TestCa::new();
        let (good, junk) = (ca.path("ca.pem"), ca.path("junk.pem"));
        std::fs::write(&good, ca.pem()).unwrap();
        std::fs::write(&junk, "not a certificate").unwrap();
        let text = |mode: &str, file: &std::path::Path| {
            format!(
                "[apps_source]\nbackend = \"postgres\"\n\
                 url = \"postgres://warren:pw@db/w?sslmode={mode}\"\n\
                 tls_ca_file = \"{}\"\n",
                file.display()
            )
        };
        let config = load(&text("require", &good), &[]).expect("valid");
        assert_eq!(config.apps_source.tls_ca_file.as_deref(), Some(&*good));
        for (mode, file, gist) in [
            ("prefer", &good, "only with sslmode=require"),
            ("disable", &good, "only with sslmode=require"),
            ("require", &ca.path("missing.pem"), "cannot read"),
            ("require", &junk, "no certificate"),
        ] {
            let e = load(&text(mode, file), &[]).unwrap_err();
            assert!(
                e.contains("apps_source.tls_ca_file") && e.contains(gist),
                "{e}"
            );
        }
        // From the environment too, and checked the same way.
        let url = "postgres://db/w?sslmode=require";
        let env = [
            ("WARREN_APPS_SOURCE__URL", url),
            ("WARREN_APPS_SOURCE__TLS_CA_FILE", good.to_str().unwrap()),
        ];
        let config = load("", &env).expect("valid");
        assert_eq!(config.apps_source.tls_ca_file.as_deref(), Some(&*good));
        assert!(config.apps_source.url.is_some_and(|u| u.requires_tls()));
        let env = [
            env[0],
            ("WARREN_APPS_SOURCE__TLS_CA_FILE", junk.to_str().unwrap()),
        ];
        let e = load("", &env).unwrap_err();
        assert!(
            e.contains("apps_source.tls_ca_file") && e.contains("no certificate"),
            "{e}"
        );
    }

    #[test]
    fn sslmode_is_the_drivers() {
        let url = |text: &str| text.parse::<PostgresUrl>();
        assert!(!url("postgres://db/w").unwrap().requires_tls(), "prefer");
        assert!(!url("postgres://db/w?sslmode=disable")
            .unwrap()
            .requires_tls());
        assert!(url("postgres://db/w?sslmode=require")
            .unwrap()
            .requires_tls());
        // libpq's verifying modes are not the driver's: refused rather than misread.
        assert!(url("postgres://db/w?sslmode=verify-full").is_err());
    }

    #[test]
    fn the_password_is_never_shown() {
        let url: PostgresUrl = "postgres://warren:s3cret@db:5432/apps".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://warren:***@db:5432/apps");
        assert!(!format!("{url:?}").contains("s3cret"));
        let bare: PostgresUrl = "postgres://db/apps".parse().unwrap();
        assert_eq!(bare.to_string(), "postgres://db/apps");
        assert!("mysql://db".parse::<PostgresUrl>().is_err());
    }
}
