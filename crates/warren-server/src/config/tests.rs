//! The configuration's behaviour, from files and variables to values or one-line errors.

use std::path::Path;

use warren_protocol::{AppId, AppKey};

use super::env::split_url_list;
use super::*;

/// An app with valid names (test input, so a bad name panics).
fn app(id: &str, key: &str, secret: &str) -> AppConfig {
    AppConfig::new(
        AppId::parse(id).expect("valid id"),
        AppKey::parse(key).expect("valid key"),
        secret,
    )
}

fn redis(url: &str) -> RedisTarget {
    RedisTarget::parse(url).expect("valid Redis URL")
}

fn seeds(urls: &[&str]) -> RedisTarget {
    RedisTarget::parse_list(urls).expect("valid Redis URLs")
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(text: &str, vars: &[(&str, &str)]) -> Config {
    match Config::from_toml_str(text, env(vars)) {
        Ok(config) => config,
        Err(error) => panic!("unexpected error: {error}"),
    }
}

/// The error message, checked to be a single line.
fn error(text: &str, vars: &[(&str, &str)]) -> String {
    let message = Config::from_toml_str(text, env(vars))
        .expect_err("configuration should be rejected")
        .to_string();
    assert!(!message.contains('\n'), "multi-line message: {message}");
    message
}

const ONE_APP: &str = r#"
    [[apps]]
    id = "a1"
    key = "k1"
    secret = "s1"
"#;

#[test]
fn defaults() {
    let config = Config::load(None, env(&[])).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.server.host, "127.0.0.1");
    assert_eq!(config.server.port, 6001);
    assert_eq!(config.server.activity_timeout, 120);
    assert_eq!(config.server.pong_timeout, 30);
    assert_eq!(config.server.max_message_size_kb, 64);
    assert_eq!(config.server.max_message_size_bytes(), 65536);
    assert_eq!(config.server.max_outbound_queue, 1024);
    assert_eq!(config.server.role, Role::All);
    assert!(config.server.role.serves_websocket());
    assert!(config.server.role.serves_api());
    assert_eq!(config.server.node_id, None);
    assert_eq!(config.cluster.backend, Backend::Local);
    assert_eq!(config.cluster.redis_url, redis("redis://127.0.0.1:6379"));
    assert_eq!(
        config.cluster.redis_url.to_string(),
        "redis://127.0.0.1:6379"
    );
    assert!(!config.cluster.redis_url.is_cluster());
    assert_eq!(config.cluster.prefix, "warren");
    assert_eq!(config.cluster.node_timeout_ms, 5000);
    assert_eq!(
        config.cluster.node_timeout(),
        std::time::Duration::from_secs(5)
    );
    assert_eq!(config.apps.len(), 1);
    let demo = &config.apps[0];
    assert_eq!(
        (demo.id.as_str(), demo.key.as_str(), demo.secret.as_str()),
        ("app-id", "app-key", "app-secret")
    );
    assert!(demo.enabled);
    assert!(demo.client_events);
    assert_eq!(demo.max_connections, 0);
    assert_eq!(demo.max_presence_members, 100);
    assert_eq!(demo.max_event_payload_kb, 10);
    assert_eq!(demo.max_event_payload_bytes(), 10240);
    assert_eq!(demo.max_channel_name_length, 200);
    assert_eq!(demo.client_event_rate_per_sec, 10);
    assert_eq!(demo.max_user_info_bytes, 1024);
    assert_eq!(demo.max_user_id_length, 128);
    assert!(config.uses_demo_secret());
    config.validate().unwrap();

    // App fields left out of a file take the same defaults.
    let config = parse(ONE_APP, &[]);
    assert_eq!(config.apps, vec![app("a1", "k1", "s1")]);
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.cluster, ClusterConfig::default());
    assert!(!config.uses_demo_secret());

    // An empty [cluster] section is the same as none.
    let config = parse(&format!("[cluster]\n{ONE_APP}"), &[]);
    assert_eq!(config.cluster, ClusterConfig::default());
}

#[test]
fn full_file() {
    let text = r#"
        [server]
        host = "0.0.0.0"
        port = 7000
        activity_timeout = 60
        pong_timeout = 5
        max_message_size_kb = 128
        max_outbound_queue = 16
        role = "push"
        node_id = "push-1.eu_west"

        [cluster]
        backend = "redis"
        redis_url = "rediss://:p4ss@redis.internal:6380/0"
        prefix = "warren:prod"
        node_timeout_ms = 2500

        [[apps]]
        id = "123456"
        key = "key.one"
        secret = "very secret"
        enabled = false
        client_events = false
        max_connections = 500
        max_presence_members = 50
        max_event_payload_kb = 20
        max_channel_name_length = 164
        client_event_rate_per_sec = 3
        max_user_info_bytes = 2048
        max_user_id_length = 64
        max_subscriptions_per_connection = 50

        [[apps]]
        id = "second_app"
        key = "key-two"
        secret = "app-secret"
    "#;
    let config = parse(text, &[]);
    let expected = Config {
        server: ServerConfig {
            host: "0.0.0.0".to_owned(),
            port: 7000,
            activity_timeout: 60,
            pong_timeout: 5,
            max_message_size_kb: 128,
            max_outbound_queue: 16,
            api_timestamp_tolerance_secs: 600,
            role: Role::Push,
            node_id: Some("push-1.eu_west".to_owned()),
        },
        cluster: ClusterConfig {
            backend: Backend::Redis,
            redis_url: redis("rediss://:p4ss@redis.internal:6380/0"),
            prefix: "warren:prod".to_owned(),
            node_timeout_ms: 2500,
        },
        apps: vec![
            AppConfig {
                id: AppId::parse("123456").unwrap(),
                key: AppKey::parse("key.one").unwrap(),
                secret: "very secret".to_owned(),
                enabled: false,
                client_events: false,
                max_connections: 500,
                max_presence_members: 50,
                max_event_payload_kb: 20,
                max_channel_name_length: 164,
                client_event_rate_per_sec: 3,
                max_user_info_bytes: 2048,
                max_user_id_length: 64,
                max_subscriptions_per_connection: 50,
            },
            app("second_app", "key-two", "app-secret"),
        ],
    };
    assert_eq!(config, expected);
    assert!(config.uses_demo_secret());
    let target = &config.cluster.redis_url;
    let server = Endpoint {
        host: "redis.internal".into(),
        port: 6380,
    };
    let topology = Topology::Standalone {
        server,
        db: Some(0),
    };
    assert_eq!(target.topology, topology);
    assert!(target.tls);
    assert_eq!(target.username, None);
    assert_eq!(target.password.as_deref(), Some("p4ss"));
}

#[test]
fn env_overrides_server_port_and_app_secret() {
    let config = parse(
        ONE_APP,
        &[
            ("WARREN_SERVER__PORT", "7001"),
            ("WARREN_APPS__0__SECRET", "s3cret"),
            ("warren_server__host", "0.0.0.0"),
            ("WARREN_LOG", "debug"),
            ("WARREN_SERVER", "ignored"),
            ("PATH", "/usr/bin"),
        ],
    );
    assert_eq!(config.server.port, 7001);
    assert_eq!(config.server.host, "0.0.0.0");
    assert_eq!(config.apps[0].secret, "s3cret");
    assert_eq!(config.apps[0].id.as_str(), "a1");

    // String keys take the value verbatim even when it looks like a number.
    let config = parse(
        ONE_APP,
        &[
            ("WARREN_APPS__0__ID", "123456"),
            ("WARREN_APPS__0__SECRET", "true"),
            ("WARREN_APPS__0__CLIENT_EVENTS", "false"),
        ],
    );
    assert_eq!(config.apps[0].id.as_str(), "123456");
    assert_eq!(config.apps[0].secret, "true");
    assert!(!config.apps[0].client_events);

    // Without [[apps]], overrides apply on top of the demo app.
    let config = Config::load(None, env(&[("WARREN_APPS__0__SECRET", "s3cret")])).unwrap();
    assert_eq!(config.apps, vec![app("app-id", "app-key", "s3cret")]);
    assert!(!config.uses_demo_secret());
}

#[test]
fn env_override_creates_app() {
    let config = parse(
        ONE_APP,
        &[
            // Deliberately out of order: index 2 needs index 1 first.
            ("WARREN_APPS__2__SECRET", "s3"),
            ("WARREN_APPS__2__KEY", "k3"),
            ("WARREN_APPS__2__ID", "a3"),
            ("WARREN_APPS__1__MAX_CONNECTIONS", "10"),
            ("WARREN_APPS__1__SECRET", "s2"),
            ("WARREN_APPS__1__KEY", "k2"),
            ("WARREN_APPS__1__ID", "a2"),
        ],
    );
    let mut second = app("a2", "k2", "s2");
    second.max_connections = 10;
    assert_eq!(
        config.apps,
        vec![app("a1", "k1", "s1"), second, app("a3", "k3", "s3"),]
    );

    // A created app still needs its credentials; the message names the variable.
    assert_eq!(
        error(ONE_APP, &[("WARREN_APPS__1__ID", "a2")]),
        "invalid configuration: WARREN_APPS__1__ID: apps[1].key: required key is missing \
         (every app needs id, key and secret)"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_APPS__3__ID", "a4")]),
        "invalid configuration: WARREN_APPS__3__ID: index 3 is out of range: apps has 1 \
         entries (use index 1 to append one)"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_APPS__FIRST__ID", "a4")]),
        "invalid configuration: WARREN_APPS__FIRST__ID: apps is an array, so `first` must \
         be a numeric index"
    );
    assert_eq!(
        error("[server]\nport = 1\n", &[("WARREN_SERVER__PORT__X", "1")]),
        "invalid configuration: WARREN_SERVER__PORT__X: server.port is not a table (found \
         integer), so it has no key `x`"
    );
    assert_eq!(
        error("", &[("WARREN_SERVER____PORT", "1")]),
        "invalid configuration: WARREN_SERVER____PORT: empty level in the name (levels are \
         separated by exactly two underscores, e.g. WARREN_SERVER__PORT)"
    );
}

#[test]
fn unknown_key_in_file() {
    assert_eq!(
        error("[server]\nprot = 6001\n", &[]),
        "invalid configuration: unknown key `server.prot` (expected one of host, port, \
         activity_timeout, pong_timeout, max_message_size_kb, max_outbound_queue, \
         api_timestamp_tolerance_secs, role, node_id)"
    );
    assert_eq!(
        error("[sever]\nport = 6001\n", &[]),
        "invalid configuration: unknown key `sever` (expected one of server, cluster, apps)"
    );
    assert_eq!(
        error(
            "[cluster]\nbackend = \"redis\"\nredis_urls = \"redis://h\"\n",
            &[]
        ),
        "invalid configuration: unknown key `cluster.redis_urls` (expected one of backend, \
         redis_url, prefix, node_timeout_ms)"
    );
    let message = error(&format!("{ONE_APP}\nsecert = \"x\"\n"), &[]);
    assert!(
        message.starts_with(
            "invalid configuration: unknown key `apps[0].secert` (expected one of id, key, secret,"
        ),
        "{message}"
    );
}

#[test]
fn unknown_key_in_env() {
    assert_eq!(
        error(ONE_APP, &[("WARREN_SERVER__PROT", "7001")]),
        "invalid configuration: WARREN_SERVER__PROT: unknown key `server.prot` (expected one \
         of host, port, activity_timeout, pong_timeout, max_message_size_kb, \
         max_outbound_queue, api_timestamp_tolerance_secs, role, node_id)"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_SRVER__PORT", "7001")]),
        "invalid configuration: WARREN_SRVER__PORT: unknown key `srver` (expected one of \
         server, cluster, apps)"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_CLUSTER__TIMEOUT_MS", "3000")]),
        "invalid configuration: WARREN_CLUSTER__TIMEOUT_MS: unknown key \
         `cluster.timeout_ms` (expected one of backend, redis_url, prefix, node_timeout_ms)"
    );
    let message = error(ONE_APP, &[("WARREN_APPS__0__SECERT", "x")]);
    assert!(
        message.starts_with(
            "invalid configuration: WARREN_APPS__0__SECERT: unknown key `apps[0].secert`"
        ),
        "{message}"
    );
}

#[test]
fn wrong_type_names_the_key() {
    assert_eq!(
        error("[server]\nport = \"x\"\n", &[]),
        "invalid configuration: server.port: invalid type: string \"x\", expected u16"
    );
    assert_eq!(
        error("[server]\nport = 70000\n", &[]),
        "invalid configuration: server.port: invalid value: integer `70000`, expected u16"
    );
    assert_eq!(
        error(&format!("{ONE_APP}\nmax_connections = -1\n"), &[]),
        "invalid configuration: apps[0].max_connections: invalid value: integer `-1`, \
         expected u64"
    );
    assert_eq!(
        error(&format!("{ONE_APP}\nenabled = \"yes\"\n"), &[]),
        "invalid configuration: apps[0].enabled: invalid type: string \"yes\", expected a \
         boolean"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_SERVER__PORT", "abc")]),
        "invalid configuration: WARREN_SERVER__PORT: server.port: invalid type: string \
         \"abc\", expected u16"
    );
    assert_eq!(
        error("[apps]\nid = \"a\"\n", &[]),
        "invalid configuration: apps: must be an array of tables (one [[apps]] section per \
         app), found table"
    );
    assert_eq!(
        error("server = 1\n", &[]),
        "invalid configuration: server: must be a table (a [server] section), found integer"
    );
}

#[test]
fn duplicate_app_key_and_id() {
    let text = r#"
        [[apps]]
        id = "a"
        key = "k"
        secret = "s"
        [[apps]]
        id = "b"
        key = "k"
        secret = "s"
    "#;
    assert_eq!(
        error(text, &[]),
        "invalid configuration: apps[1].key: duplicate app key \"k\" (also used by apps[0])"
    );
    assert_eq!(
        error(
            text,
            &[("WARREN_APPS__1__ID", "a"), ("WARREN_APPS__1__KEY", "k2")]
        ),
        "invalid configuration: WARREN_APPS__1__ID: apps[1].id: duplicate app id \"a\" (also \
         used by apps[0])"
    );
}

#[test]
fn empty_secret() {
    let text = "[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"\"\n";
    assert_eq!(
        error(text, &[]),
        "invalid configuration: apps[0].secret: must not be empty"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_APPS__0__SECRET", "")]),
        "invalid configuration: WARREN_APPS__0__SECRET: apps[0].secret: must not be empty"
    );
    assert_eq!(
        error("[[apps]]\nid = \"a\"\nkey = \"k\"\n", &[]),
        "invalid configuration: apps[0].secret: required key is missing (every app needs \
         id, key and secret)"
    );
}

#[test]
fn invalid_id_chars() {
    let text = "[[apps]]\nid = \"my app\"\nkey = \"k\"\nsecret = \"s\"\n";
    // The rule and its words are the protocol's AppId/AppKey, the one place names are checked.
    assert_eq!(
        error(text, &[]),
        "invalid configuration: apps[0].id: app id contains characters outside [-a-zA-Z0-9_.]: \
         \"my app\""
    );
    let text = "[[apps]]\nid = \"a\"\nkey = \"k/1\"\nsecret = \"s\"\n";
    assert_eq!(
        error(text, &[]),
        "invalid configuration: apps[0].key: app key contains characters outside \
         [-a-zA-Z0-9_.]: \"k/1\""
    );
    let text = "[[apps]]\nid = \"\"\nkey = \"k\"\nsecret = \"s\"\n";
    assert_eq!(
        error(text, &[]),
        "invalid configuration: apps[0].id: app id must not be empty"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_APPS__0__KEY", "a b")]),
        "invalid configuration: WARREN_APPS__0__KEY: apps[0].key: app key contains characters \
         outside [-a-zA-Z0-9_.]: \"a b\""
    );
}

#[test]
fn no_apps_section_means_demo_app() {
    let config = parse("[server]\nport = 7002\n", &[]);
    assert_eq!(config.server.port, 7002);
    assert_eq!(config.apps, vec![AppConfig::demo()]);
    assert!(config.uses_demo_secret());

    assert_eq!(
        error("apps = []\n", &[]),
        "invalid configuration: apps: at least one app is required (add an [[apps]] section)"
    );
}

#[test]
fn numeric_limits() {
    // Port 0 means "pick a free port".
    assert_eq!(parse("[server]\nport = 0\n", &[]).server.port, 0);
    for key in [
        "activity_timeout",
        "pong_timeout",
        "max_message_size_kb",
        "max_outbound_queue",
        "api_timestamp_tolerance_secs",
    ] {
        assert_eq!(
            error(&format!("[server]\n{key} = 0\n"), &[]),
            format!("invalid configuration: server.{key}: must be at least 1, got 0")
        );
    }
    for key in [
        "max_presence_members",
        "max_event_payload_kb",
        "client_event_rate_per_sec",
    ] {
        assert_eq!(
            error(&format!("{ONE_APP}\n{key} = 0\n"), &[]),
            format!("invalid configuration: apps[0].{key}: must be at least 1, got 0")
        );
    }
    for length in [0, 1001] {
        assert_eq!(
            error(
                &format!("{ONE_APP}\nmax_channel_name_length = {length}\n"),
                &[]
            ),
            format!(
                "invalid configuration: apps[0].max_channel_name_length: must be between 1 \
                 and 1000, got {length}"
            )
        );
    }
    let config = parse(&format!("{ONE_APP}\nmax_channel_name_length = 1000\n"), &[]);
    assert_eq!(config.apps[0].max_channel_name_length, 1000);
    assert_eq!(
        error("[server]\nhost = \"\"\n", &[]),
        "invalid configuration: server.host: must not be empty"
    );
}

#[test]
fn syntax_error_is_one_line_with_position() {
    let message = error("[server]\nport = = 1\n", &[]);
    assert!(
        message.starts_with("invalid configuration: TOML syntax error at line 2, column 8: "),
        "{message}"
    );
    let message = error("[server]\nport = 1\nport = 2\n", &[]);
    assert!(message.contains("duplicate key"), "{message}");
}

#[test]
fn load_reads_the_file() {
    let dir = std::env::temp_dir().join(format!(
        "warren-config-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("warren.toml");
    std::fs::write(&file, ONE_APP).unwrap();
    let config = Config::load(Some(&file), env(&[("WARREN_SERVER__PORT", "7003")])).unwrap();
    assert_eq!(config.server.port, 7003);
    assert_eq!(config.apps, vec![app("a1", "k1", "s1")]);
    std::fs::remove_dir_all(&dir).unwrap();

    let missing = Path::new("warren-config-test-does-not-exist.toml");
    let error = Config::load(Some(missing), env(&[])).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert_eq!(
        error.to_string(),
        "cannot read warren-config-test-does-not-exist.toml: No such file or directory"
    );
}

#[test]
fn role() {
    for (name, role, websocket, api) in [
        ("all", Role::All, true, true),
        ("push", Role::Push, true, false),
        ("api", Role::Api, false, true),
    ] {
        let config = parse(&format!("[server]\nrole = \"{name}\"\n"), &[]);
        assert_eq!(config.server.role, role);
        assert_eq!(role.serves_websocket(), websocket, "{name}");
        assert_eq!(role.serves_api(), api, "{name}");
        assert_eq!(role.to_string(), name);
    }
    assert_eq!(
        error("[server]\nrole = \"both\"\n", &[]),
        "invalid configuration: server.role: unknown variant `both`, expected one of `all`, \
         `push`, `api`"
    );
    assert_eq!(
        error("[server]\nrole = \"API\"\n", &[]),
        "invalid configuration: server.role: unknown variant `API`, expected one of `all`, \
         `push`, `api`"
    );
    // A number is not a variant index.
    assert_eq!(
        error("[server]\nrole = 1\n", &[]),
        "invalid configuration: server.role: invalid type: integer `1`, expected one of \
         `all`, `push`, `api`"
    );
    assert_eq!(
        error("[server]\nrole = [\"api\"]\n", &[]),
        "invalid configuration: server.role: invalid type: array, expected one of `all`, \
         `push`, `api`"
    );
}

#[test]
fn node_id() {
    let config = parse("[server]\nnode_id = \"node-1.eu_west\"\n", &[]);
    assert_eq!(config.server.node_id.as_deref(), Some("node-1.eu_west"));
    let longest = "n".repeat(64);
    let config = parse(&format!("[server]\nnode_id = \"{longest}\"\n"), &[]);
    assert_eq!(config.server.node_id, Some(longest));

    assert_eq!(
        error("[server]\nnode_id = \"\"\n", &[]),
        "invalid configuration: server.node_id: must not be empty"
    );
    assert_eq!(
        error("[server]\nnode_id = \"node 1\"\n", &[]),
        "invalid configuration: server.node_id: invalid character ' ' in \"node 1\" (only \
         A-Z, a-z, 0-9, '_', '.' and '-' are allowed)"
    );
    assert_eq!(
        error("[server]\nnode_id = \"n:1\"\n", &[]),
        "invalid configuration: server.node_id: invalid character ':' in \"n:1\" (only A-Z, \
         a-z, 0-9, '_', '.' and '-' are allowed)"
    );
    assert_eq!(
        error(
            &format!("[server]\nnode_id = \"{}\"\n", "n".repeat(65)),
            &[]
        ),
        "invalid configuration: server.node_id: must be at most 64 characters, got 65"
    );
    let message = error("[server]\nnode_id = 7\n", &[]);
    assert!(
        message.starts_with("invalid configuration: server.node_id: invalid type: integer `7`"),
        "{message}"
    );
}

#[test]
fn backend() {
    let config = parse("[cluster]\nbackend = \"redis\"\n", &[]);
    assert_eq!(config.cluster.backend, Backend::Redis);
    assert_eq!(Backend::Redis.to_string(), "redis");
    let config = parse("[cluster]\nbackend = \"local\"\n", &[]);
    assert_eq!(config.cluster.backend, Backend::Local);
    assert_eq!(
        error("[cluster]\nbackend = \"memory\"\n", &[]),
        "invalid configuration: cluster.backend: unknown variant `memory`, expected `local` \
         or `redis`"
    );
    assert_eq!(
        error("[cluster]\nbackend = true\n", &[]),
        "invalid configuration: cluster.backend: invalid type: boolean `true`, expected \
         `local` or `redis`"
    );
    assert_eq!(
        error("cluster = \"redis\"\n", &[]),
        "invalid configuration: cluster: must be a table (a [cluster] section), found string"
    );
}

#[test]
fn redis_url_accepted_forms() {
    let endpoint = |host: &str, port| Endpoint {
        host: host.into(),
        port,
    };
    let standalone = |host, port, db| Topology::Standalone {
        server: endpoint(host, port),
        db,
    };
    let sentinel = |hosts: &[(&str, u16)], db| Topology::Sentinel {
        sentinels: hosts.iter().map(|(h, p)| endpoint(h, *p)).collect(),
        service: "mymaster".into(),
        db,
    };
    let cluster = |hosts: &[(&str, u16)]| Topology::Cluster {
        seeds: hosts.iter().map(|(h, p)| endpoint(h, *p)).collect(),
    };
    for (url, topology, tls, password) in [
        (
            "redis://127.0.0.1",
            standalone("127.0.0.1", 6379, None),
            false,
            None,
        ),
        (
            "redis://:secret@redis.internal:6379/2",
            standalone("redis.internal", 6379, Some(2)),
            false,
            Some("secret"),
        ),
        (
            "rediss://user:p%40ss@redis.internal:6380",
            standalone("redis.internal", 6380, None),
            true,
            Some("p@ss"),
        ),
        (
            "redis://[::1]:6380",
            standalone("[::1]", 6380, None),
            false,
            None,
        ),
        (
            "redis+sentinel://sentinel-1/mymaster",
            sentinel(&[("sentinel-1", 26379)], None),
            false,
            None,
        ),
        (
            "redis+sentinel://:pw@s1:26379,s2:26380/mymaster/2",
            sentinel(&[("s1", 26379), ("s2", 26380)], Some(2)),
            false,
            Some("pw"),
        ),
        (
            "rediss+sentinel://s1:26379/mymaster",
            sentinel(&[("s1", 26379)], None),
            true,
            None,
        ),
        (
            "redis-sentinel://s1:26379/0?sentinelServiceName=mymaster",
            sentinel(&[("s1", 26379)], Some(0)),
            false,
            None,
        ),
        (
            "rediss-sentinel://s1/?sentinelServiceName=mymaster&node=s2:26380",
            sentinel(&[("s1", 26379), ("s2", 26380)], None),
            true,
            None,
        ),
        (
            "redis-cluster://node-1:30000?node=node-2:30001",
            cluster(&[("node-1", 30000), ("node-2", 30001)]),
            false,
            None,
        ),
        (
            "rediss-cluster://node-1:30000",
            cluster(&[("node-1", 30000)]),
            true,
            None,
        ),
    ] {
        let config = parse(&format!("[cluster]\nredis_url = \"{url}\"\n"), &[]);
        let target = config.cluster.redis_url;
        assert_eq!(target.topology, topology, "{url}");
        assert_eq!(target.tls, tls, "{url}");
        assert_eq!(target.password.as_deref(), password, "{url}");
        assert_eq!(target.is_cluster(), url.contains("-cluster://"), "{url}");
    }
    assert_eq!(
        redis("rediss://user:pw@h").username.as_deref(),
        Some("user")
    );

    // A list is the seed nodes of a Redis Cluster, sharing the first URL's credentials.
    let text = r#"
        [cluster]
        backend = "redis"
        redis_url = ["redis://:pw@10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://:pw@10.0.0.3"]
    "#;
    let target = parse(text, &[]).cluster.redis_url;
    assert_eq!(
        target.topology,
        cluster(&[("10.0.0.1", 6379), ("10.0.0.2", 6379), ("10.0.0.3", 6379)])
    );
    assert_eq!(target.password.as_deref(), Some("pw"));
    assert!(target.is_cluster());
    let text = "[cluster]\nredis_url = [\"rediss://a:1\", \"rediss://b:2/0\"]\n";
    let target = parse(text, &[]).cluster.redis_url;
    assert!(target.tls && target.is_cluster());
    let same = RedisTarget::parse_list(&["rediss://a:1", "rediss://b:2"]);
    assert_eq!(same.map(|t| t.topology), Ok(target.topology));
    // A list of one URL is that URL, whatever its scheme.
    let url = "redis-sentinel://s:26379/0?sentinelServiceName=mymaster";
    let text = format!("[cluster]\nredis_url = [\"{url}\"]\n");
    assert_eq!(parse(&text, &[]).cluster.redis_url, redis(url));
}

#[test]
fn redis_url_rejected() {
    let check = |value: &str, expected: &str| {
        assert_eq!(
            error(&format!("[cluster]\nredis_url = {value}\n"), &[]),
            format!("invalid configuration: {expected}"),
            "redis_url = {value}"
        );
    };
    check(
        "[]",
        "cluster.redis_url: at least one URL is required (a string, or an array of Redis \
         Cluster seed URLs)",
    );
    check("\"\"", "cluster.redis_url: must not be empty");
    check(
        "\"unix:///var/run/redis.sock\"",
        "cluster.redis_url: unsupported URL \"unix:///var/run/redis.sock\": unix:// sockets \
         are not supported (use redis://host:port or rediss://host:port)",
    );
    check(
        "\"redis+unix:///var/run/redis.sock\"",
        "cluster.redis_url: unsupported URL \"redis+unix:///var/run/redis.sock\": unix:// \
         sockets are not supported (use redis://host:port or rediss://host:port)",
    );
    let schemes = "redis://, rediss://, redis+sentinel://, rediss+sentinel://, \
                   redis-sentinel://, rediss-sentinel://, redis-cluster:// or \
                   rediss-cluster://";
    check(
        "\"127.0.0.1:6379\"",
        &format!(
            "cluster.redis_url: unsupported URL \"127.0.0.1:6379\": must start with {schemes}"
        ),
    );
    check(
        "\"http://redis:6379\"",
        &format!(
            "cluster.redis_url: unsupported URL \"http://redis:6379\": must start with \
             {schemes}"
        ),
    );
    check(
        "\"REDIS://redis:6379\"",
        &format!(
            "cluster.redis_url: unsupported URL \"REDIS://redis:6379\": must start with \
             {schemes}"
        ),
    );
    check(
        "\"redis://\"",
        "cluster.redis_url: URL \"redis://\" has no host after redis://",
    );
    check(
        "\"redis+sentinel://s1:26379,s2:26379\"",
        "cluster.redis_url: URL \"redis+sentinel://s1:26379,s2:26379\" needs the Sentinel \
         service name as its path, e.g. redis+sentinel://host:26379/mymaster",
    );
    check(
        "\"rediss+sentinel://:a/b@s1:26379/\"",
        "cluster.redis_url: URL \"rediss+sentinel://***@s1:26379/\" needs the Sentinel \
         service name as its path, e.g. rediss+sentinel://host:26379/mymaster",
    );
    check(
        "\"redis://host :6379\"",
        "cluster.redis_url: URL \"redis://host :6379\" must not contain whitespace",
    );
    // Credentials never appear in messages.
    check(
        "\"valkey://admin:hunter2@redis:6379\"",
        &format!(
            "cluster.redis_url: unsupported URL \"valkey://***@redis:6379\": must start with \
             {schemes}"
        ),
    );
    // Lists: only Redis Cluster seeds, all with one scheme.
    check(
        "[\"redis://a:1\", \"redis-sentinel://b:2\"]",
        "cluster.redis_url[1]: \"redis-sentinel://b:2\" cannot be in a list: several URLs \
         are the seed nodes of a Redis Cluster and must all start with redis:// or rediss://",
    );
    check(
        "[\"redis-cluster://:pw@a:1\", \"redis://b:2\"]",
        "cluster.redis_url[0]: \"redis-cluster://***@a:1\" cannot be in a list: several \
         URLs are the seed nodes of a Redis Cluster and must all start with redis:// or \
         rediss://",
    );
    check(
        "[\"redis://a:1\", \"rediss://b:2\"]",
        "cluster.redis_url[1]: \"rediss://b:2\" uses rediss:// but the first URL uses \
         redis://: the seed nodes of one Redis Cluster use the same scheme",
    );
    check(
        "[\"redis://:a@h:1\", \"redis://:b@h:2\"]",
        "cluster.redis_url[1]: \"redis://***@h:2\" has other credentials than the first URL: \
         the seed nodes of one Redis Cluster share them (give them on the first URL)",
    );
    check(
        "[\"redis://a:1\", \"redis://b:2/3\"]",
        "cluster.redis_url[1]: \"redis://b:2/3\" names a database, but a Redis Cluster has \
         only database 0",
    );
    check(
        "[\"redis://a:1\", \"unix:///tmp/r.sock\"]",
        "cluster.redis_url[1]: unsupported URL \"unix:///tmp/r.sock\": unix:// sockets are \
         not supported (use redis://host:port or rediss://host:port)",
    );
    check(
        "[\"redis://a:1\", \"\"]",
        "cluster.redis_url[1]: must not be empty",
    );
    // What the Redis client would only refuse when connecting is refused here.
    for (url, problem) in [
        ("redis://h:port", "has an invalid port \"port\""),
        ("redis://h:70000", "has an invalid port \"70000\""),
        ("redis:///0", "has no host"),
        (
            "redis://::1:6379",
            "has an IPv6 host \"::1\" without brackets ([::1]:6379)",
        ),
        (
            "redis://h:1/x",
            "has an invalid database \"x\" (a number from 0 to 255)",
        ),
        ("redis://h:1/2/3", "has an unexpected path segment \"3\""),
        (
            "redis://h:1?timeout=5",
            "has an unsupported parameter \"timeout\"",
        ),
        (
            "redis://a:1,b:2",
            "lists several hosts: only a redis+sentinel:// URL does (a list of redis:// URLs \
             names the seed nodes of a Redis Cluster)",
        ),
        (
            "redis-sentinel://s:26379/0",
            "needs the Sentinel service name, e.g. \
             redis-sentinel://host:26379/0?sentinelServiceName=mymaster",
        ),
        ("redis-cluster://a:1?node=b:x", "has an invalid port \"x\""),
        (
            "redis-cluster://a:1/2",
            "names a database, but a Redis Cluster has only database 0",
        ),
    ] {
        check(
            &format!("\"{url}\""),
            &format!("cluster.redis_url: URL \"{url}\" {problem}"),
        );
    }
    // Wrong types.
    check(
        "6379",
        "cluster.redis_url: invalid type: integer `6379`, expected a Redis URL string or an \
         array of URL strings",
    );
    check(
        "[\"redis://a:1\", 2]",
        "cluster.redis_url[1]: invalid type: integer `2`, expected a string",
    );
}

#[test]
fn redis_url_display_hides_credentials() {
    for (url, shown) in [
        ("redis://h:1", "redis://h:1"),
        ("redis://:pw@h:1/0", "redis://***@h:1/0"),
        ("rediss://u:p@ss@h", "rediss://***@h"),
        ("redis://u:p/w@h:1", "redis://***@h:1"),
        (
            "redis-sentinel://u:p@s/1?sentinelServiceName=m",
            "redis-sentinel://***@s/1?sentinelServiceName=m",
        ),
    ] {
        let target = redis(url);
        assert_eq!(target.to_string(), shown);
        assert_eq!(format!("{target:?}"), format!("RedisTarget({shown})"));
    }
    assert_eq!(redis("rediss://u:p@ss@h").password.as_deref(), Some("p@ss"));
    let list = RedisTarget::parse_list(&["redis://:pw@a:1", "redis://b:2"]);
    assert_eq!(
        list.map(|t| t.to_string()),
        Ok("redis://***@a:1,redis://b:2".to_owned())
    );
    let mut config = Config::default();
    config.cluster.redis_url = redis("redis://:hunter2@h:1");
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn prefix() {
    let config = parse("[cluster]\nprefix = \"warren:prod-eu_1.v2\"\n", &[]);
    assert_eq!(config.cluster.prefix, "warren:prod-eu_1.v2");
    let longest = "p".repeat(64);
    let config = parse(&format!("[cluster]\nprefix = \"{longest}\"\n"), &[]);
    assert_eq!(config.cluster.prefix, longest);

    assert_eq!(
        error("[cluster]\nprefix = \"\"\n", &[]),
        "invalid configuration: cluster.prefix: must not be empty"
    );
    assert_eq!(
        error("[cluster]\nprefix = \"w{1}\"\n", &[]),
        "invalid configuration: cluster.prefix: invalid character '{' in \"w{1}\" (only \
         A-Z, a-z, 0-9, '_', '.', ':' and '-' are allowed; braces are reserved for Redis \
         hash tags)"
    );
    assert_eq!(
        error("[cluster]\nprefix = \"warren/prod\"\n", &[]),
        "invalid configuration: cluster.prefix: invalid character '/' in \"warren/prod\" \
         (only A-Z, a-z, 0-9, '_', '.', ':' and '-' are allowed)"
    );
    assert_eq!(
        error(
            &format!("[cluster]\nprefix = \"{}\"\n", "p".repeat(65)),
            &[]
        ),
        "invalid configuration: cluster.prefix: must be at most 64 characters, got 65"
    );
}

#[test]
fn node_timeout_ms() {
    let config = parse("[cluster]\nnode_timeout_ms = 1000\n", &[]);
    assert_eq!(config.cluster.node_timeout_ms, 1000);
    for value in [0, 999] {
        assert_eq!(
            error(&format!("[cluster]\nnode_timeout_ms = {value}\n"), &[]),
            format!(
                "invalid configuration: cluster.node_timeout_ms: must be at least 1000, got \
                 {value}"
            )
        );
    }
    assert_eq!(
        error("[cluster]\nnode_timeout_ms = -1\n", &[]),
        "invalid configuration: cluster.node_timeout_ms: invalid value: integer `-1`, \
         expected u64"
    );
}

#[test]
fn env_overrides_cluster_keys() {
    let config = parse(
        ONE_APP,
        &[
            ("WARREN_SERVER__ROLE", "api"),
            ("WARREN_SERVER__NODE_ID", "n1"),
            ("WARREN_CLUSTER__BACKEND", "redis"),
            ("WARREN_CLUSTER__REDIS_URL", "redis://h:1"),
            ("WARREN_CLUSTER__PREFIX", "x"),
            ("WARREN_CLUSTER__NODE_TIMEOUT_MS", "3000"),
        ],
    );
    assert_eq!(config.server.role, Role::Api);
    assert_eq!(config.server.node_id.as_deref(), Some("n1"));
    assert_eq!(
        config.cluster,
        ClusterConfig {
            backend: Backend::Redis,
            redis_url: redis("redis://h:1"),
            prefix: "x".to_owned(),
            node_timeout_ms: 3000,
        }
    );

    // Overrides replace values from the file.
    let text = format!(
        "[server]\nrole = \"push\"\nnode_id = \"file\"\n[cluster]\nbackend = \"local\"\n\
         redis_url = [\"redis://a:1\", \"redis://b:2\"]\nprefix = \"f\"\n{ONE_APP}"
    );
    let config = parse(
        &text,
        &[
            ("WARREN_SERVER__ROLE", "all"),
            ("WARREN_SERVER__NODE_ID", "env"),
            ("WARREN_CLUSTER__BACKEND", "redis"),
            ("WARREN_CLUSTER__REDIS_URL", "rediss://c:3"),
        ],
    );
    assert_eq!(config.server.role, Role::All);
    assert_eq!(config.server.node_id.as_deref(), Some("env"));
    assert_eq!(config.cluster.backend, Backend::Redis);
    assert_eq!(config.cluster.redis_url, redis("rediss://c:3"));
    assert_eq!(config.cluster.prefix, "f");

    // Text keys take the value verbatim even when it looks like a number
    // or a boolean.
    let config = parse(
        "",
        &[
            ("WARREN_SERVER__NODE_ID", "007"),
            ("WARREN_CLUSTER__PREFIX", "1.5"),
        ],
    );
    assert_eq!(config.server.node_id.as_deref(), Some("007"));
    assert_eq!(config.cluster.prefix, "1.5");
    assert_eq!(
        error("", &[("WARREN_SERVER__ROLE", "true")]),
        "invalid configuration: WARREN_SERVER__ROLE: server.role: unknown variant `true`, \
         expected one of `all`, `push`, `api`"
    );

    // Errors name the variable.
    assert_eq!(
        error(ONE_APP, &[("WARREN_CLUSTER__BACKEND", "memory")]),
        "invalid configuration: WARREN_CLUSTER__BACKEND: cluster.backend: unknown variant \
         `memory`, expected `local` or `redis`"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_SERVER__NODE_ID", "a b")]),
        "invalid configuration: WARREN_SERVER__NODE_ID: server.node_id: invalid character \
         ' ' in \"a b\" (only A-Z, a-z, 0-9, '_', '.' and '-' are allowed)"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_CLUSTER__PREFIX", "{x}")]),
        "invalid configuration: WARREN_CLUSTER__PREFIX: cluster.prefix: invalid character \
         '{' in \"{x}\" (only A-Z, a-z, 0-9, '_', '.', ':' and '-' are allowed; braces are \
         reserved for Redis hash tags)"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_CLUSTER__NODE_TIMEOUT_MS", "500")]),
        "invalid configuration: WARREN_CLUSTER__NODE_TIMEOUT_MS: cluster.node_timeout_ms: \
         must be at least 1000, got 500"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_CLUSTER__NODE_TIMEOUT_MS", "5s")]),
        "invalid configuration: WARREN_CLUSTER__NODE_TIMEOUT_MS: cluster.node_timeout_ms: \
         invalid type: string \"5s\", expected u64"
    );
    assert_eq!(
        error(
            ONE_APP,
            &[("WARREN_CLUSTER__REDIS_URL", "unix:///tmp/r.sock")]
        ),
        "invalid configuration: WARREN_CLUSTER__REDIS_URL: cluster.redis_url: unsupported \
         URL \"unix:///tmp/r.sock\": unix:// sockets are not supported (use \
         redis://host:port or rediss://host:port)"
    );
}

#[test]
fn env_override_redis_url_list() {
    // A comma-separated value is a list; blanks around entries are trimmed.
    let config = parse(
        ONE_APP,
        &[(
            "WARREN_CLUSTER__REDIS_URL",
            "redis://10.0.0.1:6379, redis://10.0.0.2:6379 ,redis://10.0.0.3:6379",
        )],
    );
    assert_eq!(
        config.cluster.redis_url,
        seeds(&[
            "redis://10.0.0.1:6379",
            "redis://10.0.0.2:6379",
            "redis://10.0.0.3:6379"
        ])
    );
    assert!(config.cluster.redis_url.is_cluster());

    // The list follows the same rules as one in the file.
    assert_eq!(
        error(
            ONE_APP,
            &[(
                "WARREN_CLUSTER__REDIS_URL",
                "redis://a:1,redis-sentinel://b:2"
            )]
        ),
        "invalid configuration: WARREN_CLUSTER__REDIS_URL: cluster.redis_url[1]: \
         \"redis-sentinel://b:2\" cannot be in a list: several URLs are the seed nodes of a \
         Redis Cluster and must all start with redis:// or rediss://"
    );
    assert_eq!(
        error(ONE_APP, &[("WARREN_CLUSTER__REDIS_URL", "redis://a:1,")]),
        "invalid configuration: WARREN_CLUSTER__REDIS_URL: cluster.redis_url[1]: must not \
         be empty"
    );

    // Commas inside one URL (a Sentinel host list) do not split it.
    let sentinel = "redis+sentinel://:pw@s1:26379,s2:26379,s3:26379/mymaster";
    let config = parse(ONE_APP, &[("WARREN_CLUSTER__REDIS_URL", sentinel)]);
    assert_eq!(config.cluster.redis_url, redis(sentinel));
    let config = parse(
        ONE_APP,
        &[(
            "WARREN_CLUSTER__REDIS_URL",
            "redis://:a,b@h1:1,redis://h2:2",
        )],
    );
    assert_eq!(
        config.cluster.redis_url,
        seeds(&["redis://:a,b@h1:1", "redis://h2:2"])
    );
    assert_eq!(config.cluster.redis_url.password.as_deref(), Some("a,b"));
    assert_eq!(
        split_url_list("rediss://:p, w@a:1 , rediss://b:2,"),
        ["rediss://:p, w@a:1", "rediss://b:2", ""]
    );
    assert_eq!(split_url_list(",redis://a:1"), ["", "redis://a:1"]);
    assert_eq!(
        error(ONE_APP, &[("WARREN_CLUSTER__REDIS_URL", ",redis://a:1")]),
        "invalid configuration: WARREN_CLUSTER__REDIS_URL: cluster.redis_url[0]: must not \
         be empty"
    );

    // One variable per entry also builds a list.
    let config = parse(
        ONE_APP,
        &[
            ("WARREN_CLUSTER__REDIS_URL__1", "rediss://b:2"),
            ("WARREN_CLUSTER__REDIS_URL__0", "rediss://a:1"),
        ],
    );
    assert_eq!(
        config.cluster.redis_url,
        seeds(&["rediss://a:1", "rediss://b:2"])
    );
    // ... or replaces one entry of the file's list.
    let text = "[cluster]\nredis_url = [\"redis://a:1\", \"redis://b:2\"]\n";
    let config = parse(text, &[("WARREN_CLUSTER__REDIS_URL__1", "redis://c:3")]);
    assert_eq!(
        config.cluster.redis_url,
        seeds(&["redis://a:1", "redis://c:3"])
    );
    // An entry set from the environment is refused in the variable's name.
    assert_eq!(
        error(text, &[("WARREN_CLUSTER__REDIS_URL__1", "redis://c:x")]),
        "invalid configuration: WARREN_CLUSTER__REDIS_URL__1: cluster.redis_url[1]: URL \
         \"redis://c:x\" has an invalid port \"x\""
    );
}

/// `warren.example.toml` is valid and shows every default.
#[test]
fn example_file_shows_the_defaults() {
    let text = include_str!("../../../../warren.example.toml");
    let config = parse(text, &[]);
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.cluster, ClusterConfig::default());
    assert_eq!(config.apps, vec![app("app-id", "app-key", "change-me")]);
}

/// Errors about a file's value name the file and the key's line; errors about a variable's
/// value name the variable, even when other variables changed the same table.
#[test]
fn errors_name_the_file_and_line_or_the_variable() {
    let dir = std::env::temp_dir().join(format!(
        "warren-config-origin-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("warren.toml");
    let load = |text: &str, vars: &[(&str, &str)]| {
        std::fs::write(&file, text).unwrap();
        let error = Config::load(Some(&file), env(vars)).expect_err("refused");
        error.to_string()
    };
    let at = |line: usize, rest: &str| {
        format!("invalid configuration: {}:{line}: {rest}", file.display())
    };

    let text = "[server]\nport = 6001\nprot = 1\n";
    assert!(load(text, &[]).starts_with(&at(3, "unknown key `server.prot` (expected")));
    let text = "[server]\nhost = \"h\"\n\n[server.x]\n";
    assert!(load(text, &[]).starts_with(&at(4, "unknown key `server.x`")));
    let text = "[server]\nport = \"x\"\n";
    let message = "server.port: invalid type: string \"x\", expected u16";
    assert_eq!(load(text, &[("WARREN_SERVER__HOST", "h")]), at(2, message));
    assert_eq!(
        load(
            &format!("{ONE_APP}[[apps]]\nid = \"a2\"\nkey = \"k2\"\n"),
            &[]
        ),
        at(
            6,
            "apps[1].secret: required key is missing (every app needs id, key and secret)"
        )
    );
    assert_eq!(
        load(
            &format!("{ONE_APP}[[apps]]\nid = \"a1\"\nkey = \"k2\"\nsecret = \"s\"\n"),
            &[]
        ),
        at(
            7,
            "apps[1].id: duplicate app id \"a1\" (also used by apps[0])"
        )
    );
    assert_eq!(
        load("[cluster]\nprefix = \"a b\"\n", &[]),
        at(
            2,
            "cluster.prefix: invalid character ' ' in \"a b\" (only A-Z, a-z, 0-9, '_', '.', \
             ':' and '-' are allowed)"
        )
    );
    assert_eq!(
        load("apps = []\n", &[]),
        at(
            1,
            "apps: at least one app is required (add an [[apps]] section)"
        )
    );
    // The variable, not the file, when the variable set the value.
    assert_eq!(
        load("[server]\nport = 6001\n", &[("WARREN_SERVER__PORT", "x")]),
        "invalid configuration: WARREN_SERVER__PORT: server.port: invalid type: string \"x\", \
         expected u16"
    );
    // The variable name as it was given, in any case.
    assert_eq!(
        load(ONE_APP, &[("warren_Apps__0__secret", "")]),
        "invalid configuration: warren_Apps__0__secret: apps[0].secret: must not be empty"
    );
    // A syntax error names the file; the position is in the message.
    assert!(load("[server\n", &[]).starts_with(&format!(
        "invalid configuration: {}: TOML syntax error at line 1, column 8: ",
        file.display()
    )));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The demo app is in place before the environment: index 0 changes it, index 1 adds one.
#[test]
fn env_builds_on_the_demo_app() {
    let config = Config::load(
        None,
        env(&[
            ("WARREN_APPS__1__ID", "a2"),
            ("WARREN_APPS__1__KEY", "k2"),
            ("WARREN_APPS__1__SECRET", "s2"),
            ("WARREN_APPS__1__ENABLED", "false"),
        ]),
    )
    .unwrap();
    let mut second = app("a2", "k2", "s2");
    second.enabled = false;
    assert_eq!(config.apps, vec![AppConfig::demo(), second]);
    assert_eq!(
        error(
            "",
            &[
                ("WARREN_APPS__1__KEY", "app-key"),
                ("WARREN_APPS__1__ID", "x"),
                ("WARREN_APPS__1__SECRET", "s")
            ]
        ),
        "invalid configuration: WARREN_APPS__1__KEY: apps[1].key: duplicate app key \"app-key\" \
         (also used by apps[0])"
    );
    // A boolean from the environment is `true` or `false`, as in the file.
    assert_eq!(
        error("", &[("WARREN_APPS__0__ENABLED", "yes")]),
        "invalid configuration: WARREN_APPS__0__ENABLED: apps[0].enabled: invalid type: \
         string \"yes\", expected a boolean"
    );
}

/// Built in code, a configuration is checked by `validate`, with no source to name.
#[test]
fn validate_checks_configurations_built_in_code() {
    let mut config = Config::default();
    config.validate().unwrap();
    config.apps.push(AppConfig::demo());
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "invalid configuration: apps[1].id: duplicate app id \"app-id\" (also used by apps[0])"
    );
    let mut config = Config::default();
    config.apps[0].max_subscriptions_per_connection = 0;
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "invalid configuration: apps[0].max_subscriptions_per_connection: must be at least 1, \
         got 0"
    );
    assert!(matches!(
        config.validate(),
        Err(ConfigError::Invalid {
            origin: Origin::Unknown,
            ..
        })
    ));
}
