//! Turning Warren's `cluster.redis_url` into a Redis client configuration.
//!
//! Accepted forms:
//! * `redis://[user:pass@]host:port[/db]` and `rediss://...` (TLS): one server;
//! * several `redis://` URLs: the seed nodes of a Redis Cluster;
//! * `redis+sentinel://[user:pass@]host:port[,host:port...]/service_name[/db]` (and
//!   `rediss+sentinel://`): a primary found through Sentinel, followed across failovers;
//! * the client library's own `redis-cluster://` and `redis-sentinel://` forms, as they are.

use fred::types::config::Config;

pub fn client_config(urls: &[String]) -> Result<Config, String> {
    match urls {
        [] => Err("no Redis URL configured".into()),
        [one] => single(one),
        many => cluster_seeds(many),
    }
}

fn single(url: &str) -> Result<Config, String> {
    let fred_url = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        sentinel("redis-sentinel://", rest)?
    } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
        sentinel("rediss-sentinel://", rest)?
    } else {
        url.to_owned()
    };
    Config::from_url(&fred_url).map_err(|e| format!("invalid Redis URL {}: {e}", redact(url)))
}

/// `auth@h1:p1,h2:p2/service[/db]` -> `scheme auth@h1:p1/db?sentinelServiceName=service&node=h2:p2`.
fn sentinel(scheme: &str, rest: &str) -> Result<String, String> {
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (format!("{a}@"), r),
        None => (String::new(), rest),
    };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let service = parts.next().ok_or(
        "a Sentinel URL needs the service name as its path: redis+sentinel://host:26379/mymaster",
    )?;
    let db = parts.next().unwrap_or("0");
    let mut hosts = hosts.split(',').filter(|h| !h.is_empty());
    let first = hosts
        .next()
        .ok_or("a Sentinel URL needs at least one host")?;
    let mut out = format!("{scheme}{auth}{first}/{db}?sentinelServiceName={service}");
    for h in hosts {
        out.push_str("&node=");
        out.push_str(h);
    }
    Ok(out)
}

fn cluster_seeds(urls: &[String]) -> Result<Config, String> {
    let mut it = urls.iter();
    let first = it.next().ok_or("no Redis URL configured")?;
    let (scheme, rest) = if let Some(r) = first.strip_prefix("redis://") {
        ("redis-cluster://", r)
    } else if let Some(r) = first.strip_prefix("rediss://") {
        ("rediss-cluster://", r)
    } else {
        return Err(format!(
            "a list of Redis URLs means Redis Cluster seeds and must use redis:// or rediss://, got {}",
            redact(first)
        ));
    };
    let mut url = format!("{scheme}{}", rest.trim_end_matches('/'));
    let mut sep = '?';
    for other in it {
        let host = other
            .strip_prefix("redis://")
            .or_else(|| other.strip_prefix("rediss://"))
            .ok_or_else(|| format!("not a redis:// URL: {}", redact(other)))?;
        let host = host
            .rsplit_once('@')
            .map_or(host, |(_, h)| h)
            .trim_end_matches('/');
        url.push(sep);
        url.push_str("node=");
        url.push_str(host);
        sep = '&';
    }
    Config::from_url(&url).map_err(|e| format!("invalid Redis Cluster seeds: {e}"))
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_are_translated() {
        assert_eq!(
            sentinel("redis-sentinel://", "h1:26379,h2:26380/mymaster/2").unwrap(),
            "redis-sentinel://h1:26379/2?sentinelServiceName=mymaster&node=h2:26380"
        );
        assert_eq!(
            sentinel("redis-sentinel://", "u:p@h1:26379/mm").unwrap(),
            "redis-sentinel://u:p@h1:26379/0?sentinelServiceName=mm"
        );
        assert!(sentinel("redis-sentinel://", "h1:26379").is_err());
        assert!(client_config(&["redis+sentinel://127.0.0.1:26379/mymaster".into()]).is_ok());
    }

    #[test]
    fn lists_are_cluster_seeds() {
        let cfg = client_config(&[
            "redis://127.0.0.1:7000".into(),
            "redis://127.0.0.1:7001".into(),
        ])
        .unwrap();
        assert!(cfg.server.is_clustered());
        assert!(client_config(&["redis://a:1".into(), "redis+sentinel://b:2/m".into()]).is_err());
        assert!(client_config(&[]).is_err());
    }

    #[test]
    fn single_urls_and_redaction() {
        assert!(!client_config(&["redis://127.0.0.1:6379".into()])
            .unwrap()
            .server
            .is_clustered());
        assert_eq!(redact("redis://user:secret@h:1"), "redis://***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
