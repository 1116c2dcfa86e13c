//! `cluster.redis_url`, parsed once, by the Redis client (fred) itself, into the settings the
//! Redis backend connects with: what fred accepts is what works, and no URL is checked twice.
//! Warren adds only its own `redis+sentinel://h1:26379,h2:26379/service[/db]` form, a list of
//! seed URLs for a Redis Cluster, and a shorter list of schemes (no `unix://`).

use std::fmt;

use figment::value::Value;
use fred::types::config::{Config as ClientConfig, ServerConfig, TlsConnector};
use serde::{de, Deserialize, Deserializer};

/// Where Redis is and how to reach it. `Display` and `Debug` hide credentials.
#[derive(Clone)]
pub struct RedisTarget {
    client: ClientConfig,
    /// As written (several URLs joined by commas): what equality compares.
    url: String,
    /// The same, credentials shown as `***`.
    shown: String,
}

impl RedisTarget {
    /// One URL. An error quotes it without its credentials.
    pub fn parse(url: &str) -> Result<Self, String> {
        let shown = redact(url);
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        let kind = scheme.replacen("rediss", "redis", 1);
        if !["redis", "redis+sentinel", "redis-sentinel", "redis-cluster"].contains(&&*kind) {
            let expected = "redis://, rediss://, redis+sentinel://, redis-sentinel://, \
                            redis-cluster:// or their rediss forms";
            return Err(format!("unsupported URL {shown:?}: expected {expected}"));
        }
        let fred_form = sentinel_form(url).unwrap_or_else(|| url.to_owned());
        let client = ClientConfig::from_url(&fred_form)
            .map_err(|e| format!("invalid Redis URL {shown:?}: {}", e.details()))?;
        let server = &client.server;
        if matches!(server, ServerConfig::Sentinel { service_name: s, .. } if s.is_empty()) {
            let what = "no Sentinel service name";
            return Err(format!("invalid Redis URL {shown:?}: {what}"));
        }
        let url = url.to_owned();
        Ok(RedisTarget { client, url, shown })
    }

    /// One URL, or several: the seed nodes of a Redis Cluster, all `redis://` or all
    /// `rediss://`, with the first one's credentials. An error names its entry (`[1]`).
    pub fn parse_list(urls: &[impl AsRef<str>]) -> Result<Self, String> {
        let (several, tls) = (urls.len() > 1, |url: &str| url.starts_with("rediss:"));
        let mut seeds = Vec::new();
        for (i, url) in urls.iter().map(AsRef::as_ref).enumerate() {
            let entry = |e: String| if several { format!("[{i}]: {e}") } else { e };
            let seed = RedisTarget::parse(url).map_err(entry)?;
            let plain = seed.client.server.is_centralized() && tls(url) == tls(urls[0].as_ref());
            if several && !plain {
                let what = "the seeds of a Redis Cluster are all redis:// or all rediss:// URLs";
                return Err(entry(format!("{:?}: {what}", seed.shown)));
            }
            seeds.push(seed);
        }
        let mut seeds = seeds.into_iter();
        let mut target = seeds.next().ok_or("expected at least one URL")?;
        for seed in seeds {
            let mut hosts = target.client.server.hosts();
            hosts.extend(seed.client.server.hosts());
            let policy = Default::default();
            target.client.server = ServerConfig::Clustered { hosts, policy };
            target.client.database = None;
            target.url = format!("{},{}", target.url, seed.url);
            target.shown = format!("{},{}", target.shown, seed.shown);
        }
        Ok(target)
    }

    /// The Redis client's settings.
    pub fn client_config(&self) -> &ClientConfig {
        &self.client
    }

    /// Whether the connection is TLS (`rediss`).
    pub fn uses_tls(&self) -> bool {
        self.client.tls.is_some()
    }

    /// The same target, its TLS connections trusting the certificate authorities of `ca_pem`
    /// (one or more PEM certificates) and no others: for a Redis whose certificate a private
    /// authority issued. Refused for a target without TLS, where it would be silently unused.
    pub fn trusting(mut self, ca_pem: &[u8]) -> Result<Self, String> {
        if !self.uses_tls() {
            return Err(format!("{:?} is not a rediss:// URL", self.shown));
        }
        let config = super::roots::client_config(super::roots::from_pem(ca_pem)?)?;
        self.client.tls = Some(TlsConnector::from(config).into());
        Ok(self)
    }
}

/// `redis+sentinel://auth@h1:p1,h2:p2/service/db` in fred's form:
/// `redis-sentinel://auth@h1:p1/db?sentinelServiceName=service&node=h2:p2`.
fn sentinel_form(url: &str) -> Option<String> {
    let (tls, rest) = url.split_once("+sentinel://")?;
    let (auth, rest) = rest
        .rsplit_once('@')
        .map_or(("", rest), |(auth, rest)| (auth, rest));
    let at = if auth.is_empty() { "" } else { "@" };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (service, db) = path.split_once('/').unwrap_or((path, ""));
    let mut hosts = hosts.split(',');
    let first = hosts.next()?;
    let port = |host: &str| if host.contains(':') { "" } else { ":26379" };
    let nodes: String = hosts.map(|h| format!("&node={h}{}", port(h))).collect();
    Some(format!(
        "{tls}-sentinel://{auth}{at}{first}/{db}?sentinelServiceName={service}{nodes}"
    ))
}

/// What lies between the scheme and the last `@` shown as `***`.
pub(super) fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

/// A comma followed by another URL separates a list (a comma within one URL, as in a Sentinel
/// host list, does not), in a file's string as in `WARREN_CLUSTER__REDIS_URL`.
fn split_list(text: &str) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for piece in text.split(',') {
        match urls.last_mut() {
            Some(last) if !piece.contains("://") => *last = format!("{last},{piece}"),
            _ => urls.push(piece.to_owned()),
        }
    }
    urls.iter().map(|url| url.trim().to_owned()).collect()
}

impl Default for RedisTarget {
    fn default() -> Self {
        RedisTarget::parse("redis://127.0.0.1:6379").expect("the default URL is valid")
    }
}

impl<'de> Deserialize<'de> for RedisTarget {
    /// A URL, a comma-separated list of them, or an array of them.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let urls = url_list(deserializer, "a Redis URL", split_list)?;
        RedisTarget::parse_list(&urls).map_err(de::Error::custom)
    }
}

/// A URL or several: a string (cut into URLs by `split`) or an array of strings; `what` names
/// one URL in the error.
pub(super) fn url_list<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &str,
    split: fn(&str) -> Vec<String>,
) -> Result<Vec<String>, D::Error> {
    let urls: Option<Vec<String>> = match <Value as Deserialize>::deserialize(deserializer)? {
        Value::String(_, text) => Some(split(&text)),
        Value::Array(_, items) => items
            .iter()
            .map(|url| url.as_str().map(Into::into))
            .collect(),
        _ => None,
    };
    urls.ok_or_else(|| de::Error::custom(format!("expected {what} or an array of them")))
}

impl PartialEq for RedisTarget {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for RedisTarget {}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisTarget({})", self.shown)
    }
}
