//! `apps[].allowed_origins`: the web pages whose scripts may open WebSocket connections to an
//! app, parsed into patterns when the configuration is read.
//!
//! A pattern is `scheme://host[:port]`, `host[:port]` (any scheme) or `*` (anything). The
//! host may start with `*.`: `https://*.example.com` allows every subdomain of example.com
//! (at any depth) but not example.com itself. A pattern without a port allows only the
//! scheme's default port, which is how browsers write it (no port in the `Origin` header);
//! `:*` allows any port (`http://localhost:*`). Hosts and schemes are compared without
//! regard to case. An empty list allows every origin.
//!
//! The check is a browser-side defence: it stops other websites from using the app's key in
//! their visitors' browsers. Clients that are not browsers (the mobile SDKs, pusher-js in
//! Node) send no `Origin` header and could send any; a request without one is let through.

use std::fmt;

use figment::value::Value;
use serde::{de, Deserialize, Deserializer};

/// Parsed `allowed_origins`; empty: any origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<OriginPattern>);

impl AllowedOrigins {
    /// Parses each pattern; the error names the first bad one.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        items
            .iter()
            .map(|item| OriginPattern::parse(item.as_ref()))
            .collect::<Result<_, _>>()
            .map(AllowedOrigins)
    }

    /// Whether a WebSocket upgrade with this `Origin` header (`None`: it had none) may go on.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Some(origin) = origin else {
            return true;
        };
        let Some(origin) = Origin::parse(origin) else {
            // `null` (sandboxed frames, files) and anything unreadable: only `*` takes it.
            return self.0.iter().any(|p| *p == OriginPattern::any());
        };
        self.0.iter().any(|p| p.matches(&origin))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One allowed origin (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    /// `None`: any scheme.
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: holds `.example.com`.
    SubdomainsOf(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    /// The scheme's default port: no port in the `Origin` header.
    Default,
    Exact(u16),
    Any,
}

impl OriginPattern {
    fn any() -> Self {
        OriginPattern {
            scheme: None,
            host: HostPattern::Any,
            port: PortPattern::Any,
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not an origin pattern: {why}");
        let lower = text.trim().to_ascii_lowercase();
        if lower == "*" {
            return Ok(Self::any());
        }
        let (scheme, rest) = match lower.split_once("://") {
            Some((scheme, rest)) => {
                if !is_scheme(scheme) {
                    return Err(bad("the scheme must be letters, digits, + - ."));
                }
                (Some(scheme.to_owned()), rest)
            }
            None => (None, lower.as_str()),
        };
        // A trailing slash is a common way of writing an origin; any other path is a mistake.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("an origin has no path, query or user"));
        }
        let (host, port) = split_port(rest).ok_or_else(|| bad("the port must be 1-65535 or *"))?;
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(p) => PortPattern::Exact(port_number(p).ok_or_else(|| bad("bad port"))?),
        };
        let host = match host.strip_prefix("*.") {
            Some(domain) if is_host(domain) => HostPattern::SubdomainsOf(format!(".{domain}")),
            None if is_host(host) => HostPattern::Exact(host.to_owned()),
            _ => {
                return Err(bad(
                    "the host must be a name or address, optionally after `*.`",
                ))
            }
        };
        Ok(OriginPattern { scheme, host, port })
    }

    fn matches(&self, origin: &Origin) -> bool {
        let scheme = self.scheme.as_ref().is_none_or(|s| *s == origin.scheme);
        let host = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == origin.host,
            HostPattern::SubdomainsOf(suffix) => {
                origin.host.len() > suffix.len() && origin.host.ends_with(suffix.as_str())
            }
        };
        let port = match self.port {
            PortPattern::Any => true,
            PortPattern::Default => origin.port.is_none(),
            PortPattern::Exact(p) => origin.port == Some(p),
        };
        scheme && host && port
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.scheme {
            write!(f, "{s}://")?;
        }
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Exact(h) => f.write_str(h)?,
            HostPattern::SubdomainsOf(d) => write!(f, "*{d}")?,
        }
        match self.port {
            PortPattern::Default => Ok(()),
            PortPattern::Exact(p) => write!(f, ":{p}"),
            PortPattern::Any => f.write_str(":*"),
        }
    }
}

/// An `Origin` header as browsers send it: `scheme://host[:port]`, lowercased.
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn parse(header: &str) -> Option<Origin> {
        let lower = header.trim().to_ascii_lowercase();
        let (scheme, rest) = lower.split_once("://")?;
        let (host, port) = split_port(rest)?;
        let port = match port {
            None => None,
            Some(p) => Some(port_number(p)?),
        };
        (is_scheme(scheme) && is_host(host)).then(|| Origin {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
        })
    }
}

/// `host` and the text after its port colon, if any; IPv6 addresses are in brackets.
fn split_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(after) = s.strip_prefix('[') {
        let (inside, rest) = after.split_once(']')?;
        let host = &s[..inside.len() + 2];
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    Some(match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    })
}

fn port_number(p: &str) -> Option<u16> {
    p.parse::<u16>().ok().filter(|&n| n > 0)
}

fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn is_host(h: &str) -> bool {
    if let Some(inside) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inside.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        })
}

impl<'de> Deserialize<'de> for AllowedOrigins {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // An array in the file; in a variable, one string of patterns separated by commas.
        let items: Option<Vec<String>> = match <Value as Deserialize>::deserialize(deserializer)? {
            Value::String(_, text) => Some(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Value::Array(_, items) => items
                .iter()
                .map(|item| item.as_str().map(Into::into))
                .collect(),
            _ => None,
        };
        let items = items.ok_or_else(|| de::Error::custom("expected an array of origins"))?;
        AllowedOrigins::parse(&items).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str]) -> AllowedOrigins {
        AllowedOrigins::parse(patterns).expect("valid patterns")
    }

    #[test]
    fn an_empty_list_and_a_missing_header_allow_anything() {
        assert!(allowed(&[]).allows(Some("https://evil.test")));
        assert!(allowed(&["https://example.com"]).allows(None));
    }

    #[test]
    fn exact_origins_compare_scheme_host_and_port() {
        let a = allowed(&["https://example.com", "http://localhost:3000"]);
        assert!(a.allows(Some("https://example.com")));
        assert!(a.allows(Some("HTTPS://Example.COM")));
        assert!(!a.allows(Some("http://example.com")), "scheme");
        assert!(!a.allows(Some("https://example.com:8443")), "port");
        assert!(!a.allows(Some("https://example.com.evil.test")));
        assert!(a.allows(Some("http://localhost:3000")));
        assert!(!a.allows(Some("http://localhost")));
        assert!(!a.allows(Some("null")));
    }

    #[test]
    fn wildcards_take_subdomains_only() {
        let a = allowed(&["https://*.example.com"]);
        assert!(a.allows(Some("https://app.example.com")));
        assert!(a.allows(Some("https://a.b.example.com")));
        assert!(!a.allows(Some("https://example.com")));
        assert!(!a.allows(Some("https://badexample.com")));
        assert!(!a.allows(Some("http://app.example.com")));
        let any_scheme = allowed(&["*.example.com", "http://localhost:*"]);
        assert!(any_scheme.allows(Some("http://x.example.com")));
        assert!(any_scheme.allows(Some("http://localhost:5173")));
        assert!(allowed(&["*"]).allows(Some("null")));
    }

    #[test]
    fn addresses_and_ports() {
        let a = allowed(&["http://[::1]:8080", "http://127.0.0.1"]);
        assert!(a.allows(Some("http://[::1]:8080")));
        assert!(a.allows(Some("http://127.0.0.1")));
        assert!(!a.allows(Some("http://127.0.0.1:80")));
    }

    #[test]
    fn bad_patterns_are_named() {
        for bad in [
            "https://example.com/path",
            "https://",
            "https://exa mple.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://*",
            "https://a.*.example.com",
            "1http://x",
            "",
        ] {
            let e = AllowedOrigins::parse(&[bad]).expect_err(bad);
            assert!(e.contains(&format!("{:?}", bad)), "{e}");
        }
        assert_eq!(
            allowed(&["HTTPS://*.Example.com:*/"]).0[0].to_string(),
            "https://*.example.com:*"
        );
    }
}
