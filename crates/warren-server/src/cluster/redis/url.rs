//! The Redis client's settings for a [`RedisTarget`].
//!
//! A translation, with no checks: the configuration parsed `cluster.redis_url` into the target
//! once, and a target cannot be malformed. Only setting up TLS (loading the system's root
//! certificates) can still fail.

use fred::types::config::{Config, ServerConfig, TlsConnector};

use crate::config::{Endpoint, RedisTarget, Topology};

pub fn client_config(target: &RedisTarget) -> Result<Config, String> {
    let hosts = |endpoints: &[Endpoint]| -> Vec<(String, u16)> {
        endpoints.iter().map(|e| (e.host.clone(), e.port)).collect()
    };
    let (server, database) = match &target.topology {
        Topology::Standalone { server, db } => (
            ServerConfig::new_centralized(server.host.clone(), server.port),
            *db,
        ),
        Topology::Sentinel {
            sentinels,
            service,
            db,
        } => (
            ServerConfig::new_sentinel(hosts(sentinels), service.clone()),
            *db,
        ),
        Topology::Cluster { seeds } => (ServerConfig::new_clustered(hosts(seeds)), None),
    };
    let tls = match target.tls {
        true => Some(
            TlsConnector::default_rustls()
                .map_err(|e| format!("cannot set up TLS for Redis at {target}: {e}"))?
                .into(),
        ),
        false => None,
    };
    Ok(Config {
        server,
        username: target.username.clone(),
        password: target.password.clone(),
        database,
        tls,
        ..Config::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Config {
        let target = RedisTarget::parse(url).expect("valid URL");
        client_config(&target).expect("client config")
    }

    #[test]
    fn standalone_with_credentials_and_database() {
        let c = config("redis://user:p%40ss@h:1/2");
        assert_eq!(c.server, ServerConfig::new_centralized("h", 1));
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(c.database, Some(2));
        assert!(c.tls.is_none());
    }

    #[test]
    fn both_sentinel_forms_give_the_same_settings() {
        let expected = ServerConfig::new_sentinel(vec![("h1", 26379), ("h2", 26380)], "mymaster");
        let path_form = config("redis+sentinel://h1,h2:26380/mymaster/2");
        assert_eq!(path_form.server, expected);
        assert_eq!(path_form.database, Some(2));
        let query_form = config("redis-sentinel://h1/2?sentinelServiceName=mymaster&node=h2:26380");
        assert_eq!(query_form.server, expected);
        assert_eq!(query_form.database, Some(2));
    }

    #[test]
    fn lists_and_cluster_urls_are_clustered() {
        let target =
            RedisTarget::parse_list(&["redis://:pw@a:7000", "redis://b:7001"]).expect("valid list");
        let c = client_config(&target).expect("client config");
        assert!(c.server.is_clustered());
        assert_eq!(
            c.server,
            ServerConfig::new_clustered(vec![("a", 7000), ("b", 7001)])
        );
        assert_eq!(c.password.as_deref(), Some("pw"));
        assert_eq!(
            config("redis-cluster://a:7000?node=b:7001").server,
            c.server
        );
    }
}
