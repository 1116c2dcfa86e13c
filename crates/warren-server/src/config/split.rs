//! `[cluster.fanout]` and `[cluster.state]`: the cluster's two jobs on servers of their own.
//!
//! Fan-out (events between nodes) and state (counts, presence, users, quotas) normally share
//! one backend, named by `cluster.backend` and its URL keys. Either section moves its job to a
//! backend (and server) of its own; a job without a section keeps the top-level backend. A
//! section's server and its credentials go together: a section that names its own URL uses its
//! own TLS and login keys (none unless given), one that does not inherits the top-level URL
//! and its keys with it, so a top-level `rediss://` CA never applies to another server.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Backend, ClusterConfig, NatsAuth, NatsTarget, RedisTarget};

/// One `[cluster.fanout]` or `[cluster.state]` section, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterPart {
    /// `"redis"` or `"nats"` (a job of one node needs no section).
    pub backend: Backend,
    pub redis_url: Option<RedisTarget>,
    pub redis_tls_ca_file: Option<PathBuf>,
    pub nats_url: Option<NatsTarget>,
    pub nats: Option<NatsAuth>,
}

/// Where one job of the cluster runs, the top-level keys filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartTarget {
    pub backend: Backend,
    pub redis_url: RedisTarget,
    pub redis_tls_ca_file: Option<PathBuf>,
    pub nats_url: NatsTarget,
    pub nats: NatsAuth,
}

impl PartTarget {
    /// `redis_url`, trusting `redis_tls_ca_file` when one is set (an error is about that key).
    pub fn redis_target(&self) -> Result<RedisTarget, String> {
        let Some(path) = &self.redis_tls_ca_file else {
            return Ok(self.redis_url.clone());
        };
        if !self.redis_url.uses_tls() {
            return Err(format!("{} is not a rediss:// URL", self.redis_url));
        }
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        self.redis_url
            .clone()
            .trusting(&pem)
            .map_err(|e| format!("{shown}: {e}"))
    }

    /// The server this job talks to, for logs and the banner (credentials hidden).
    pub fn shown(&self) -> String {
        match self.backend {
            Backend::Redis => self.redis_url.to_string(),
            Backend::Nats => self.nats_url.to_string(),
            Backend::Local => String::new(),
        }
    }
}

impl ClusterConfig {
    /// Whether fan-out and state were given sections of their own.
    pub fn is_split(&self) -> bool {
        self.fanout.is_some() || self.state.is_some()
    }

    /// Where events between nodes travel.
    pub fn fanout_target(&self) -> PartTarget {
        self.part(self.fanout.as_ref())
    }

    /// Where the shared state lives (and, with it, webhook queues and markers).
    pub fn state_target(&self) -> PartTarget {
        self.part(self.state.as_ref())
    }

    /// The top-level keys alone.
    pub(super) fn top_level(&self) -> PartTarget {
        PartTarget {
            backend: self.backend,
            redis_url: self.redis_url.clone(),
            redis_tls_ca_file: self.redis_tls_ca_file.clone(),
            nats_url: self.nats_url.clone(),
            nats: self.nats.clone(),
        }
    }

    fn part(&self, section: Option<&ClusterPart>) -> PartTarget {
        let top = self.top_level();
        let Some(section) = section else {
            return top;
        };
        // A server and its credentials go together (see the module doc).
        let (redis_url, redis_tls_ca_file) = match &section.redis_url {
            Some(url) => (url.clone(), section.redis_tls_ca_file.clone()),
            None => (
                top.redis_url,
                section.redis_tls_ca_file.clone().or(top.redis_tls_ca_file),
            ),
        };
        let (nats_url, nats) = match &section.nats_url {
            Some(url) => (url.clone(), section.nats.clone().unwrap_or_default()),
            None => (top.nats_url, section.nats.clone().unwrap_or(top.nats)),
        };
        PartTarget {
            backend: section.backend,
            redis_url,
            redis_tls_ca_file,
            nats_url,
            nats,
        }
    }

    /// The sections' rules, as (key, what is wrong).
    pub(super) fn check_parts(&self) -> Result<(), (String, String)> {
        for (name, section) in [("fanout", &self.fanout), ("state", &self.state)] {
            let Some(section) = section else { continue };
            if section.backend == Backend::Local {
                let what = "must be \"redis\" or \"nats\" (one node needs no section)";
                return Err((format!("cluster.{name}.backend"), what.into()));
            }
            if let Some(Err((key, what))) = section.nats.as_ref().map(NatsAuth::check) {
                return Err((format!("cluster.{name}.nats.{key}"), what));
            }
        }
        if self.is_split() && self.backend == Backend::Local {
            let (given, missing) = match (&self.fanout, &self.state) {
                (Some(_), None) => ("fanout", "state"),
                (None, Some(_)) => ("state", "fanout"),
                _ => ("", ""),
            };
            if !missing.is_empty() {
                let what = format!(
                    "is needed with [cluster.{given}] (or a cluster.backend for both jobs)"
                );
                return Err((format!("cluster.{missing}"), what));
            }
        }
        for (name, target) in [
            ("fanout", self.fanout_target()),
            ("state", self.state_target()),
        ] {
            let named = match name {
                "fanout" => self.fanout.is_some(),
                _ => self.state.is_some(),
            };
            if named && target.backend == Backend::Redis && target.redis_tls_ca_file.is_some() {
                let key = format!("cluster.{name}.redis_tls_ca_file");
                target.redis_target().map_err(|e| (key, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::Source;

    use super::super::{Config, ConfigError};
    use super::*;

    const ONE_APP: &str = "[[apps]]\nid = \"a1\"\nkey = \"k1\"\nsecret = \"s1\"\n";

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::parse(
            &format!("{text}{ONE_APP}"),
            Source::Custom(String::new()),
            vars,
        )
    }

    fn refused(text: &str, vars: &[(&str, &str)]) -> String {
        let message = parse(text, vars).expect_err("refused").to_string();
        assert!(!message.contains('\n'), "multi-line message: {message}");
        message
    }

    #[test]
    fn without_sections_both_jobs_are_the_top_level_backend() {
        let text = "[cluster]\nbackend = \"redis\"\nredis_url = \"redis://r:6379\"\n";
        let cluster = parse(text, &[]).expect("valid").cluster;
        assert!(!cluster.is_split());
        for part in [cluster.fanout_target(), cluster.state_target()] {
            assert_eq!(part.backend, Backend::Redis);
            assert_eq!(part.shown(), "redis://r:6379");
        }
    }

    #[test]
    fn state_in_redis_and_fanout_on_nats() {
        let text = "[cluster.state]\nbackend = \"redis\"\nredis_url = \"redis://s:6379\"\n\
                    [cluster.fanout]\nbackend = \"nats\"\nnats_url = \"nats://f:4222\"\n";
        let cluster = parse(text, &[]).expect("valid").cluster;
        assert!(cluster.is_split());
        assert_eq!(
            cluster.backend,
            Backend::Local,
            "the top level is only a default"
        );
        let (fanout, state) = (cluster.fanout_target(), cluster.state_target());
        assert_eq!(
            (fanout.backend, fanout.shown()),
            (Backend::Nats, "nats://f:4222".into())
        );
        assert_eq!(
            (state.backend, state.shown()),
            (Backend::Redis, "redis://s:6379".into())
        );
    }

    #[test]
    fn one_section_takes_the_other_job_from_the_top_level() {
        let text = "[cluster]\nbackend = \"redis\"\nredis_url = \"redis://s:6379\"\n\
                    [cluster.fanout]\nbackend = \"redis\"\nredis_url = \"redis://f:6379\"\n";
        let cluster = parse(text, &[]).expect("valid").cluster;
        assert_eq!(cluster.state_target().shown(), "redis://s:6379");
        assert_eq!(cluster.fanout_target().shown(), "redis://f:6379");
        // A section without a URL uses the top-level server.
        let text = "[cluster]\nbackend = \"redis\"\nnats_url = \"nats://n:4222\"\n\
                    [cluster.fanout]\nbackend = \"nats\"\n";
        let cluster = parse(text, &[]).expect("valid").cluster;
        assert_eq!(cluster.fanout_target().shown(), "nats://n:4222");
    }

    #[test]
    fn variables_set_the_sections() {
        let vars = [
            ("WARREN_CLUSTER__BACKEND", "redis"),
            ("WARREN_CLUSTER__FANOUT__BACKEND", "nats"),
            (
                "WARREN_CLUSTER__FANOUT__NATS_URL",
                "nats://a:4222,nats://b:4222",
            ),
        ];
        let cluster = parse("", &vars).expect("valid").cluster;
        let fanout = cluster.fanout_target();
        assert_eq!(fanout.backend, Backend::Nats);
        assert_eq!(fanout.nats_url.addrs().len(), 2);
        assert_eq!(cluster.state_target().backend, Backend::Redis);
    }

    #[test]
    fn a_server_and_its_credentials_go_together() {
        let text = "[cluster]\nbackend = \"nats\"\nnats_url = \"nats://top:4222\"\n\
                    [cluster.nats]\ntoken = \"top-secret\"\n\
                    [cluster.state]\nbackend = \"nats\"\nnats_url = \"nats://other:4222\"\n";
        let cluster = parse(text, &[]).expect("valid").cluster;
        assert_eq!(
            cluster.state_target().nats.token,
            None,
            "not sent to another server"
        );
        assert_eq!(
            cluster.fanout_target().nats.token.as_deref(),
            Some("top-secret")
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let local = "[cluster.state]\nbackend = \"local\"\n";
        let message = refused(local, &[]);
        assert!(message.contains("cluster.state.backend"), "{message}");
        let alone = "[cluster.fanout]\nbackend = \"nats\"\n";
        let message = refused(alone, &[]);
        assert!(message.contains("cluster.state: is needed"), "{message}");
        let unknown = "[cluster.fanout]\nbackend = \"nats\"\nurl = \"x\"\n";
        let message = refused(unknown, &[("WARREN_CLUSTER__BACKEND", "redis")]);
        assert!(message.contains("cluster.fanout"), "{message}");
        let missing =
            "[cluster]\nbackend = \"redis\"\n[cluster.fanout]\nredis_url = \"redis://f\"\n";
        let message = refused(missing, &[]);
        assert!(message.contains("cluster.fanout.backend"), "{message}");
        let auth = "[cluster]\nbackend = \"redis\"\n[cluster.fanout]\nbackend = \"nats\"\n\
                    [cluster.fanout.nats]\ntoken = \"\"\n";
        let message = refused(auth, &[]);
        assert!(message.contains("cluster.fanout.nats.token"), "{message}");
        let ca = "[cluster]\nbackend = \"nats\"\n[cluster.state]\nbackend = \"redis\"\n\
                  redis_url = \"redis://s:6379\"\nredis_tls_ca_file = \"Cargo.toml\"\n";
        let message = refused(ca, &[]);
        assert!(
            message.contains("cluster.state.redis_tls_ca_file"),
            "{message}"
        );
        let url = "[cluster]\nbackend = \"nats\"\n[cluster.state]\nbackend = \"redis\"\n\
                   redis_url = \"http://s\"\n";
        let message = refused(url, &[]);
        assert!(message.contains("cluster.state.redis_url"), "{message}");
    }

    #[test]
    fn spooled_webhooks_follow_the_state() {
        let text = "[cluster]\nbackend = \"nats\"\n[cluster.state]\nbackend = \"redis\"\n\
                    [webhooks]\nspool_dir = \"/tmp/x\"\n";
        let message = refused(text, &[]);
        assert!(message.contains("webhooks.spool_dir"), "{message}");
        let text = "[cluster]\nbackend = \"redis\"\n[cluster.state]\nbackend = \"nats\"\n\
                    [webhooks]\nspool_dir = \"/tmp/x\"\n";
        assert!(parse(text, &[]).is_ok(), "the state is not in Redis");
    }
}
