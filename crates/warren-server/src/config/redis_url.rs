//! `cluster.redis_url`: the Redis deployment the `redis` backend uses, parsed once.
//!
//! A [`RedisTarget`] is the whole answer (topology, TLS, credentials): the configuration
//! deserializes into it and the Redis backend only translates it into client settings, so no
//! URL is checked twice and none travels further. It lives with the configuration because its
//! rules are about what an operator may write, not about the client library.
//!
//! Forms (`rediss` for `redis` means TLS in each): `redis://[user:pass@]host[:port][/db]`, one
//! server; a list of several `redis://` URLs, or `redis-cluster://host[:port][?node=host:port
//! ...]`, the seed nodes of a Redis Cluster; `redis+sentinel://host[:port][,host[:port]...]
//! /service[/db]`, or `redis-sentinel://host[:port][/db]?sentinelServiceName=service[&node=
//! host:port...]`, the primary of `service` found through those Sentinels. Ports default to
//! 6379, 26379 for Sentinels. Credentials are what precedes the last `@`, percent-decoded;
//! `Display`, `Debug` and error messages show the URLs as written, credentials as `***`.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, SeqAccess, Visitor};

/// Which Redis to use and how to reach it; only parsing makes one, so it is always complete.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub topology: Topology,
    /// Connect with TLS (`rediss`).
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The URLs as written, credentials redacted: what `Display` shows.
    shown: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server; `db` is the database to select.
    Standalone { server: Endpoint, db: Option<u8> },
    /// The primary of `service`, asked of these Sentinels and followed across failovers.
    Sentinel {
        sentinels: Vec<Endpoint>,
        service: String,
        db: Option<u8>,
    },
    /// A Redis Cluster, discovered from these seed nodes.
    Cluster { seeds: Vec<Endpoint> },
}

/// A host (an IPv6 address keeps its brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Copy, PartialEq)]
enum Form {
    Plain,
    Cluster,
    /// `redis+sentinel://`: hosts in the authority, service in the path.
    SentinelPath,
    /// `redis-sentinel://`, the client library's: service and further hosts in the query.
    SentinelQuery,
}

/// In the order messages list them.
const SCHEMES: &[(&str, Form, bool)] = &[
    ("redis://", Form::Plain, false),
    ("rediss://", Form::Plain, true),
    ("redis+sentinel://", Form::SentinelPath, false),
    ("rediss+sentinel://", Form::SentinelPath, true),
    ("redis-sentinel://", Form::SentinelQuery, false),
    ("rediss-sentinel://", Form::SentinelQuery, true),
    ("redis-cluster://", Form::Cluster, false),
    ("rediss-cluster://", Form::Cluster, true),
];

impl Default for RedisTarget {
    /// `redis://127.0.0.1:6379`.
    fn default() -> Self {
        let server = Endpoint {
            host: "127.0.0.1".into(),
            port: 6379,
        };
        let topology = Topology::Standalone { server, db: None };
        let shown = "redis://127.0.0.1:6379".into();
        let (username, password) = (None, None);
        RedisTarget {
            topology,
            tls: false,
            username,
            password,
            shown,
        }
    }
}

impl RedisTarget {
    /// Parses one URL; the error says what is wrong, quoting the URL without credentials.
    pub fn parse(url: &str) -> Result<Self, String> {
        let shown = redact(url);
        let bad = |what: &str| format!("URL {shown:?} {what}");
        if url.is_empty() {
            return Err("must not be empty".into());
        }
        if url.chars().any(char::is_whitespace) {
            return Err(bad("must not contain whitespace"));
        }
        if ["unix:", "redis+unix:", "rediss+unix:"]
            .iter()
            .any(|s| url.starts_with(s))
        {
            return Err(format!(
                "unsupported URL {shown:?}: unix:// sockets are not supported (use \
                 redis://host:port or rediss://host:port)"
            ));
        }
        let Some(&(scheme, form, tls)) = SCHEMES.iter().find(|(s, ..)| url.starts_with(s)) else {
            let names: Vec<&str> = SCHEMES.iter().map(|(s, ..)| *s).collect();
            let (last, rest) = names.split_last().unwrap_or((&"", &[]));
            let expected = format!("{} or {last}", rest.join(", "));
            return Err(format!(
                "unsupported URL {shown:?}: must start with {expected}"
            ));
        };
        let rest = &url[scheme.len()..];
        if rest.is_empty() {
            return Err(bad(&format!("has no host after {scheme}")));
        }
        let (auth, rest) = rest.rsplit_once('@').map_or(("", rest), |(a, r)| (a, r));
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        if hosts.contains(',') && form != Form::SentinelPath {
            return Err(bad(
                "lists several hosts: only a redis+sentinel:// URL does (a list of redis:// \
                 URLs names the seed nodes of a Redis Cluster)",
            ));
        }
        let sentinel = matches!(form, Form::SentinelPath | Form::SentinelQuery);
        let endpoint = |host: &str| endpoint(host, if sentinel { 26379 } else { 6379 });
        let mut endpoints: Vec<Endpoint> = hosts
            .split(',')
            .map(endpoint)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&e))?;
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let mut service = match form {
            Form::SentinelPath => Some(segments.next().map(decode).ok_or_else(|| {
                let example = format!("{scheme}host:26379/mymaster");
                bad(&format!(
                    "needs the Sentinel service name as its path, e.g. {example}"
                ))
            })?),
            _ => None,
        };
        let db = match segments.next() {
            Some(db) => Some(db.parse::<u8>().map_err(|_| {
                bad(&format!(
                    "has an invalid database {db:?} (a number from 0 to 255)"
                ))
            })?),
            None => None,
        };
        if let Some(extra) = segments.next() {
            return Err(bad(&format!("has an unexpected path segment {extra:?}")));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match (form, pair.split_once('=').unwrap_or((pair, ""))) {
                (Form::Cluster | Form::SentinelQuery, ("node", host)) => {
                    endpoints.push(endpoint(&decode(host)).map_err(|e| bad(&e))?);
                }
                (Form::SentinelQuery, ("sentinelServiceName", name)) => {
                    service = Some(decode(name))
                }
                (_, (name, _)) => {
                    return Err(bad(&format!("has an unsupported parameter {name:?}")))
                }
            }
        }
        let topology = match (form, service.filter(|s| !s.is_empty())) {
            (Form::Plain, _) => Topology::Standalone {
                server: endpoints.remove(0),
                db,
            },
            (Form::Cluster, _) if db.unwrap_or(0) != 0 => {
                return Err(bad(
                    "names a database, but a Redis Cluster has only database 0",
                ));
            }
            (Form::Cluster, _) => Topology::Cluster { seeds: endpoints },
            (_, Some(service)) => Topology::Sentinel {
                sentinels: endpoints,
                service,
                db,
            },
            (_, None) => {
                let example = format!("{scheme}host:26379/0?sentinelServiceName=mymaster");
                return Err(bad(&format!(
                    "needs the Sentinel service name, e.g. {example}"
                )));
            }
        };
        let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
        let given = |s: &str| (!s.is_empty()).then(|| decode(s));
        let (username, password) = (given(user), given(pass));
        Ok(RedisTarget {
            topology,
            tls,
            username,
            password,
            shown,
        })
    }

    /// Parses a list as the file writes one: one URL is that URL, several are the seed nodes
    /// of a Redis Cluster. An error names its entry (`[1]: ...`).
    pub fn parse_list(urls: &[impl AsRef<str>]) -> Result<Self, String> {
        let mut seeds = Seeds::new(urls.len() > 1);
        for (index, url) in urls.iter().enumerate() {
            seeds
                .push(url.as_ref())
                .map_err(|e| format!("[{index}]: {e}"))?;
        }
        seeds.finish()
    }

    /// Whether this is a Redis Cluster (keys spread over shards, sharded pub/sub).
    pub fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster { .. })
    }
}

impl std::str::FromStr for RedisTarget {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        RedisTarget::parse(url)
    }
}

/// `host[:port]` or `[v6]:port`; the error completes "URL ... ".
fn endpoint(text: &str, default_port: u16) -> Result<Endpoint, String> {
    let (host, port) = match text.rfind(':') {
        Some(colon) if !text[colon..].contains(']') => (&text[..colon], Some(&text[colon + 1..])),
        _ => (text, None),
    };
    if host.is_empty() || host == "[]" {
        return Err("has no host".into());
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "has an IPv6 host {host:?} without brackets ([{host}]:6379)"
        ));
    }
    let port = match port {
        Some(port) => port
            .parse()
            .map_err(|_| format!("has an invalid port {port:?}"))?,
        None => default_port,
    };
    Ok(Endpoint {
        host: host.to_owned(),
        port,
    })
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// `url` with what lies between the scheme and the last `@` replaced by `***` (the last one,
/// so that a password containing `@` or `/` never shows).
fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

/// The entries of a list, taken one at a time so that an error is raised while its entry is
/// read, and so names it.
struct Seeds {
    several: bool,
    first: Option<RedisTarget>,
    seeds: Vec<Endpoint>,
    shown: Vec<String>,
}

impl Seeds {
    fn new(several: bool) -> Self {
        let (first, seeds, shown) = (None, Vec::new(), Vec::new());
        Seeds {
            several,
            first,
            seeds,
            shown,
        }
    }

    fn push(&mut self, url: &str) -> Result<(), String> {
        let shown = redact(url);
        let form = SCHEMES.iter().find(|(s, ..)| url.starts_with(s));
        if self.several && form.is_some_and(|(_, form, _)| *form != Form::Plain) {
            return Err(format!(
                "{shown:?} cannot be in a list: several URLs are the seed nodes of a Redis \
                 Cluster and must all start with redis:// or rediss://"
            ));
        }
        let target = RedisTarget::parse(url)?;
        // One URL stands for itself; in a list of several, each entry is a plain server.
        let (true, Topology::Standalone { server, db }) = (self.several, &target.topology) else {
            self.first = Some(target);
            return Ok(());
        };
        if db.unwrap_or(0) != 0 {
            return Err(format!(
                "{shown:?} names a database, but a Redis Cluster has only database 0"
            ));
        }
        let first = self.first.get_or_insert_with(|| target.clone());
        if first.tls != target.tls {
            let scheme = |t: &RedisTarget| if t.tls { "rediss://" } else { "redis://" };
            let (this, first) = (scheme(&target), scheme(first));
            return Err(format!(
                "{shown:?} uses {this} but the first URL uses {first}: the seed nodes of one \
                 Redis Cluster use the same scheme"
            ));
        }
        let credentials = |t: &RedisTarget| (t.username.clone(), t.password.clone());
        if credentials(&target) != (None, None) && credentials(&target) != credentials(first) {
            return Err(format!(
                "{shown:?} has other credentials than the first URL: the seed nodes of one \
                 Redis Cluster share them (give them on the first URL)"
            ));
        }
        self.seeds.push(server.clone());
        self.shown.push(shown);
        Ok(())
    }

    fn finish(self) -> Result<RedisTarget, String> {
        let required = "at least one URL is required (a string, or an array of Redis Cluster \
                        seed URLs)";
        let mut target = self.first.ok_or(required)?;
        if self.several {
            target.topology = Topology::Cluster { seeds: self.seeds };
            target.shown = self.shown.join(",");
        }
        Ok(target)
    }
}

impl<'de> DeserializeSeed<'de> for &mut Seeds {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let url = String::deserialize(deserializer)?;
        self.push(&url).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for RedisTarget {
    /// A URL, or an array of them whose errors name their entry.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Urls;

        impl<'de> Visitor<'de> for Urls {
            type Value = RedisTarget;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Redis URL string or an array of URL strings")
            }

            fn visit_str<E: de::Error>(self, url: &str) -> Result<RedisTarget, E> {
                RedisTarget::parse(url).map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RedisTarget, A::Error> {
                // Whether the list has several entries decides the rules for its first one.
                let mut seeds = Seeds::new(!matches!(seq.size_hint(), Some(0 | 1)));
                while seq.next_element_seed(&mut seeds)?.is_some() {}
                seeds.finish().map_err(de::Error::custom)
            }
        }

        deserializer.deserialize_any(Urls)
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedisTarget {
    /// As `Display`, so that credentials never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisTarget({self})")
    }
}
