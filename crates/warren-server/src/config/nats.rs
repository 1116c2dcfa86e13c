//! `cluster.nats_url` and `[cluster.nats]`: where NATS is and how to log in, parsed once,
//! where read, by the NATS client's own address type (what it accepts is what connects).
//! Warren accepts `nats://` and `tls://` URLs, with `user:password@` when the server wants
//! them, one URL or several (the seeds of a NATS cluster).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use async_nats::{ConnectOptions, ServerAddr};
use serde::{de, Deserialize, Deserializer};

use super::redis::{redact, url_list};

/// The NATS servers to connect to. `Display` and `Debug` hide credentials.
#[derive(Clone)]
pub struct NatsTarget {
    addrs: Vec<ServerAddr>,
    /// As written, joined by commas: what equality compares.
    url: String,
    /// The same, credentials shown as `***`.
    shown: String,
}

impl NatsTarget {
    /// One URL or several; an error names the entry (`[1]`) and hides credentials.
    pub fn parse_list(urls: &[impl AsRef<str>]) -> Result<Self, String> {
        let several = urls.len() > 1;
        let mut addrs = Vec::new();
        let mut shown = Vec::new();
        for (i, url) in urls.iter().map(AsRef::as_ref).enumerate() {
            let redacted = redact(url);
            let entry = |e: String| if several { format!("[{i}]: {e}") } else { e };
            let scheme = url.split_once("://").map_or("", |(s, _)| s);
            if !["nats", "tls"].contains(&scheme) {
                let what = format!("unsupported URL {redacted:?}: expected nats:// or tls://");
                return Err(entry(what));
            }
            let addr = ServerAddr::from_str(url)
                .map_err(|e| entry(format!("invalid NATS URL {redacted:?}: {e}")))?;
            addrs.push(addr);
            shown.push(redacted);
        }
        if addrs.is_empty() {
            return Err("expected at least one URL".into());
        }
        let url = urls.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(",");
        Ok(NatsTarget {
            addrs,
            url,
            shown: shown.join(","),
        })
    }

    /// The servers, for the client.
    pub fn addrs(&self) -> Vec<ServerAddr> {
        self.addrs.clone()
    }

    /// Whether any URL asks for TLS (`tls://`).
    pub fn wants_tls(&self) -> bool {
        self.addrs.iter().any(ServerAddr::tls_required)
    }
}

impl Default for NatsTarget {
    fn default() -> Self {
        NatsTarget::parse_list(&["nats://127.0.0.1:4222"]).expect("the default URL is valid")
    }
}

impl<'de> Deserialize<'de> for NatsTarget {
    /// A URL, a comma-separated list of them, or an array of them.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let split = |text: &str| text.split(',').map(|u| u.trim().to_owned()).collect();
        let urls = url_list(deserializer, "a NATS URL", split)?;
        NatsTarget::parse_list(&urls).map_err(de::Error::custom)
    }
}

impl PartialEq for NatsTarget {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for NatsTarget {}

impl fmt::Display for NatsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for NatsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NatsTarget({})", self.shown)
    }
}

/// `[cluster.nats]`: how to log in to NATS and check it, beside the URL's own
/// `user:password@`. At most one of `token` and `creds_file`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsAuth {
    /// A token the server was configured with.
    pub token: Option<String>,
    /// A `.creds` file (a user JWT and its NKey seed), as `nsc` writes them.
    pub creds_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for the server's certificate, beside the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for servers that verify clients; with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to connect without TLS even to `nats://` URLs.
    pub tls_required: bool,
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsAuth")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("creds_file", &self.creds_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_required", &self.tls_required)
            .finish()
    }
}

impl NatsAuth {
    /// The first problem, as (key under `cluster.nats`, what is wrong).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.token.is_some() && self.creds_file.is_some() {
            return Err(("token", "use either token or creds_file, not both".into()));
        }
        if matches!(&self.token, Some(t) if t.is_empty()) {
            return Err(("token", "must not be empty".into()));
        }
        let files = [
            ("creds_file", &self.creds_file),
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
        ];
        for (key, file) in files {
            match file {
                Some(path) if path.as_os_str().is_empty() => {
                    return Err((key, "must not be empty".into()))
                }
                Some(path) if !path.is_file() => {
                    return Err((key, format!("no such file: {}", path.display())))
                }
                _ => {}
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            let what = "tls_cert_file and tls_key_file go together";
            return Err(("tls_cert_file", what.into()));
        }
        Ok(())
    }

    /// The client's options for these credentials and TLS settings.
    pub async fn connect_options(&self, target: &NatsTarget) -> Result<ConnectOptions, String> {
        let mut options = ConnectOptions::new();
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| format!("cluster.nats.creds_file {}: {e}", path.display()))?;
        }
        if let Some(ca) = &self.tls_ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.tls_required || target.wants_tls() {
            options = options.require_tls(true);
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use figment::Source;

    use crate::config::{Backend, Config, ConfigError};

    const ONE_APP: &str = "[[apps]]\nid = \"a1\"\nkey = \"k1\"\nsecret = \"s1\"\n";

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let text = format!("{text}{ONE_APP}");
        Config::parse(&text, Source::Custom(String::new()), vars)
    }

    fn refused(text: &str, vars: &[(&str, &str)]) -> String {
        let message = parse(text, vars).expect_err("refused").to_string();
        assert!(!message.contains('\n'), "multi-line message: {message}");
        message
    }

    #[test]
    fn one_url_a_list_or_the_environment() {
        let text = "[cluster]\nbackend = \"nats\"\nnats_url = \"nats://u:pw@h1:4222\"\n";
        let config = parse(text, &[]).expect("valid");
        assert_eq!(config.cluster.backend, Backend::Nats);
        assert_eq!(config.cluster.nats_url.to_string(), "nats://***@h1:4222");
        assert_eq!(config.cluster.nats_url.addrs().len(), 1);
        let text = "[cluster]\nnats_url = [\"nats://h1:4222\", \"tls://h2:4443\"]\n";
        let target = parse(text, &[]).expect("valid").cluster.nats_url;
        assert_eq!(target.addrs().len(), 2);
        assert!(target.wants_tls());
        let vars = [("WARREN_CLUSTER__NATS_URL", "nats://a:1,nats://b:2")];
        let target = parse("", &vars).expect("valid").cluster.nats_url;
        assert_eq!(target.to_string(), "nats://a:1,nats://b:2");
        let vars = [("WARREN_CLUSTER__NATS__TOKEN", "s3cret")];
        let auth = parse("", &vars).expect("valid").cluster.nats;
        assert_eq!(auth.token.as_deref(), Some("s3cret"));
        assert!(
            !format!("{auth:?}").contains("s3cret"),
            "the token is shown"
        );
    }

    #[test]
    fn bad_urls_name_the_key_and_hide_credentials() {
        for (value, gist) in [
            ("\"redis://h:1\"", "expected nats:// or tls://"),
            (
                "\"nats://u:hunter2@h:x\"",
                "invalid NATS URL \"nats://***@h:x\"",
            ),
            ("[\"nats://h:1\", \"ws://h:2\"]", "[1]: unsupported URL"),
            ("[]", "expected at least one URL"),
            ("3", "expected a NATS URL"),
        ] {
            let message = refused(&format!("[cluster]\nnats_url = {value}\n"), &[]);
            assert!(message.contains("cluster.nats_url"), "{message}");
            assert!(message.contains(gist), "{message} lacks {gist}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn credentials_and_tls_are_checked_at_load() {
        let both = "[cluster.nats]\ntoken = \"t\"\ncreds_file = \"Cargo.toml\"\n";
        let message = refused(both, &[]);
        assert!(message.contains("cluster.nats.token"), "{message}");
        let missing = "[cluster.nats]\ntls_ca_file = \"/no/such/ca.pem\"\n";
        let message = refused(missing, &[]);
        assert!(message.contains("cluster.nats.tls_ca_file"), "{message}");
        assert!(message.contains("no such file"), "{message}");
        let half = "[cluster.nats]\ntls_cert_file = \"Cargo.toml\"\n";
        let message = refused(half, &[]);
        assert!(message.contains("cluster.nats.tls_cert_file"), "{message}");
        let unknown = "[cluster.nats]\npassword = \"x\"\n";
        assert!(refused(unknown, &[]).contains("password"));
        let fine = "[cluster.nats]\ntls_required = true\ntls_ca_file = \"Cargo.toml\"\n";
        assert!(parse(fine, &[]).expect("valid").cluster.nats.tls_required);
    }
}
