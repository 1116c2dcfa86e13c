//! The configuration's behaviour, from files and variables to values or one-line errors.

use std::path::{Path, PathBuf};

use figment::Source;
use fred::types::config::ServerConfig as Servers;
use warren_protocol::{AppId, AppKey};

use super::*;

/// An app with valid names (test input, so a bad name panics).
fn app(id: &str, key: &str, secret: &str) -> AppConfig {
    let id = AppId::parse(id).expect("valid id");
    AppConfig::new(id, AppKey::parse(key).expect("valid key"), secret)
}

fn redis(url: &str) -> RedisTarget {
    RedisTarget::parse(url).expect("valid Redis URL")
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    let pair = |(k, v): &(&str, &str)| (k.to_string(), v.to_string());
    vars.iter().map(pair).collect()
}

/// TOML text that is not a file: errors name no file.
fn parse_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::parse(text, Source::Custom(String::new()), env(vars))
}

fn parse(text: &str, vars: &[(&str, &str)]) -> Config {
    parse_text(text, vars).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

/// The error message, checked to be a single line.
fn error(text: &str, vars: &[(&str, &str)]) -> String {
    let message = parse_text(text, vars).expect_err("refused").to_string();
    assert!(!message.contains('\n'), "multi-line message: {message}");
    message
}

/// Asserts that `message` starts with `invalid configuration: {start}` (origin and key) and
/// contains `gist`.
#[track_caller]
fn assert_refused(message: &str, start: &str, gist: &str) {
    let start = format!("invalid configuration: {start}");
    assert!(
        message.starts_with(&start),
        "{message}\ndoes not start with {start}"
    );
    assert!(message.contains(gist), "{message}\ndoes not contain {gist}");
}

const ONE_APP: &str = "[[apps]]\nid = \"a1\"\nkey = \"k1\"\nsecret = \"s1\"\n";

#[test]
fn defaults() {
    let config = Config::load(None, env(&[])).unwrap();
    assert_eq!(config, Config::default());
    let server = &config.server;
    assert_eq!((server.host.as_str(), server.port), ("127.0.0.1", 6001));
    assert_eq!((server.activity_timeout, server.pong_timeout), (120, 30));
    assert_eq!(
        (server.max_message_size_kb, server.max_outbound_queue),
        (64, 1024)
    );
    assert_eq!(server.api_timestamp_tolerance_secs, 600);
    assert_eq!((server.role, &server.node_id), (Role::All, &None));
    assert_eq!(config.cluster.backend, Backend::Local);
    assert_eq!(
        config.cluster.redis_url.to_string(),
        "redis://127.0.0.1:6379"
    );
    assert_eq!(
        (
            config.cluster.prefix.as_str(),
            config.cluster.node_timeout_ms
        ),
        ("warren", 5000)
    );
    let demo = &config.apps[..];
    assert_eq!(demo, [app("app-id", "app-key", "app-secret")]);
    let demo = &demo[0];
    assert!(demo.enabled && demo.client_events);
    assert_eq!((demo.max_connections, demo.max_presence_members), (0, 100));
    assert_eq!(
        (demo.max_event_payload_kb, demo.max_channel_name_length),
        (10, 200)
    );
    assert_eq!(
        (demo.client_event_rate_per_sec, demo.max_user_info_bytes),
        (10, 1024)
    );
    assert_eq!(demo.max_user_id_length, 128);
    assert_eq!(demo.max_subscriptions_per_connection, 1000);
    assert_eq!(
        (demo.user_authentication_timeout, demo.watchlist_events),
        (0, false),
        "users: no sign-in deadline and no watchlist events unless asked for"
    );
    assert_eq!(demo.cache_ttl_secs, 1800);
    assert!(!demo.subscription_count_events);
    assert!(config.uses_demo_secret());
    config.validate().unwrap();

    // App fields left out of a file take the same defaults; empty sections are no sections.
    let config = parse(&format!("[server]\n[cluster]\n{ONE_APP}"), &[]);
    assert_eq!(config.apps, vec![app("a1", "k1", "s1")]);
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.cluster, ClusterConfig::default());
    assert!(!config.uses_demo_secret());
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
        api_timestamp_tolerance_secs = 30
        role = "push"
        node_id = "push-1.eu_west"
        handshake_timeout_ms = 2000
        request_timeout_ms = 3000
        http_idle_timeout_secs = 20
        write_timeout_ms = 4000
        max_connections = 50000
        max_connections_per_ip = 100
        new_connections_per_ip_per_sec = 20
        max_inbound_messages_per_sec = 30000
        trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]

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
        subscribe_rate_per_sec = 7
        max_user_info_bytes = 2048
        max_user_id_length = 64
        max_subscriptions_per_connection = 50
        user_authentication_timeout = 30
        watchlist_events = true
        cache_ttl_secs = 60
        subscription_count_events = true

        [[apps]]
        id = "second_app"
        key = "key-two"
        secret = "app-secret"
    "#;
    let expected = Config {
        server: ServerConfig {
            host: "0.0.0.0".to_owned(),
            port: 7000,
            activity_timeout: 60,
            pong_timeout: 5,
            max_message_size_kb: 128,
            max_outbound_queue: 16,
            api_timestamp_tolerance_secs: 30,
            role: Role::Push,
            ingress_threads: 1,
            node_id: Some("push-1.eu_west".to_owned()),
            handshake_timeout_ms: 2000,
            request_timeout_ms: 3000,
            http_idle_timeout_secs: 20,
            write_timeout_ms: 4000,
            max_connections: 50_000,
            max_connections_per_ip: 100,
            new_connections_per_ip_per_sec: 20,
            max_inbound_messages_per_sec: Some(30_000),
            trusted_proxies: Networks(vec![
                "10.0.0.0/8".parse().expect("cidr"),
                "192.0.2.1/32".parse().expect("cidr"),
            ]),
            shutdown_grace_ms: 0,
            tls: None,
        },
        cluster: ClusterConfig {
            backend: Backend::Redis,
            redis_url: redis("rediss://:p4ss@redis.internal:6380/0"),
            redis_tls_ca_file: None,
            prefix: "warren:prod".to_owned(),
            node_timeout_ms: 2500,
            ..Default::default()
        },
        apps: vec![
            AppConfig {
                enabled: false,
                client_events: false,
                max_connections: 500,
                max_presence_members: 50,
                max_event_payload_kb: 20,
                max_channel_name_length: 164,
                client_event_rate_per_sec: 3,
                subscribe_rate_per_sec: 7,
                max_user_info_bytes: 2048,
                max_user_id_length: 64,
                max_subscriptions_per_connection: 50,
                user_authentication_timeout: 30,
                watchlist_events: true,
                cache_ttl_secs: 60,
                subscription_count_events: true,
                ..app("123456", "key.one", "very secret")
            },
            app("second_app", "key-two", "app-secret"),
        ],
        apps_source: crate::config::AppsSourceConfig::default(),
        monitor: MonitorConfig::default(),
        console: ConsoleConfig::default(),
        webhooks: Default::default(),
        log: Default::default(),
        metrics: Default::default(),
    };
    let config = parse(text, &[]);
    assert_eq!(config, expected);
    assert!(config.uses_demo_secret());
    let client = config.cluster.redis_url.client_config();
    assert_eq!(
        client.server,
        Servers::new_centralized("redis.internal", 6380)
    );
    assert!(client.tls.is_some());
    assert_eq!(
        (client.username.as_deref(), client.password.as_deref()),
        (None, Some("p4ss"))
    );
    assert_eq!(client.database, Some(0));
}

#[test]
fn env_overrides_keys_of_the_file() {
    let vars = [
        ("WARREN_SERVER__PORT", "7001"),
        ("WARREN_APPS__0__SECRET", "s3cret"),
        ("warren_server__host", "0.0.0.0"),
        ("WARREN_SERVER__ROLE", "api"),
        ("WARREN_CLUSTER__BACKEND", "redis"),
        ("WARREN_CLUSTER__REDIS_URL", "rediss://c:3"),
        ("WARREN_CLUSTER__NODE_TIMEOUT_MS", "3000"),
        ("WARREN_LOG", "debug"),
        ("WARREN_SERVER", "ignored"),
        ("PATH", "/usr/bin"),
    ];
    let text = format!("[server]\nrole = \"push\"\n[cluster]\nprefix = \"f\"\n{ONE_APP}");
    let config = parse(&text, &vars);
    assert_eq!(
        (config.server.host.as_str(), config.server.port),
        ("0.0.0.0", 7001)
    );
    assert_eq!(config.server.role, Role::Api);
    assert_eq!(config.apps, vec![app("a1", "k1", "s3cret")]);
    let cluster = ClusterConfig {
        backend: Backend::Redis,
        redis_url: redis("rediss://c:3"),
        redis_tls_ca_file: None,
        prefix: "f".to_owned(),
        node_timeout_ms: 3000,
        ..Default::default()
    };
    assert_eq!(config.cluster, cluster);
}

#[test]
fn env_text_stays_text_where_the_key_is_text() {
    let vars = [
        ("WARREN_APPS__0__ID", "123456"),
        ("WARREN_APPS__0__SECRET", "true"),
        ("WARREN_APPS__0__CLIENT_EVENTS", "false"),
        ("WARREN_APPS__0__MAX_CONNECTIONS", "10"),
        ("WARREN_SERVER__NODE_ID", "007"),
        ("WARREN_CLUSTER__PREFIX", "1.5"),
    ];
    let config = parse(ONE_APP, &vars);
    let app = &config.apps[0];
    assert_eq!((app.id.as_str(), app.secret.as_str()), ("123456", "true"));
    assert!(!app.client_events);
    assert_eq!(app.max_connections, 10);
    assert_eq!(config.server.node_id.as_deref(), Some("007"));
    assert_eq!(config.cluster.prefix, "1.5");
}

#[test]
fn env_adds_apps_at_the_next_index() {
    let vars = [
        // Out of order on purpose: index 2 needs index 1 first.
        ("WARREN_APPS__2__SECRET", "s3"),
        ("WARREN_APPS__2__KEY", "k3"),
        ("WARREN_APPS__2__ID", "a3"),
        ("WARREN_APPS__1__MAX_CONNECTIONS", "10"),
        ("WARREN_APPS__1__SECRET", "s2"),
        ("WARREN_APPS__1__KEY", "k2"),
        ("WARREN_APPS__1__ID", "424242"),
    ];
    let second = AppConfig {
        max_connections: 10,
        ..app("424242", "k2", "s2")
    };
    let expected = vec![app("a1", "k1", "s1"), second.clone(), app("a3", "k3", "s3")];
    assert_eq!(parse(ONE_APP, &vars).apps, expected);

    // Without [[apps]], index 0 is the demo app and index 1 a new one.
    let config = parse("", &vars[3..]);
    assert_eq!(config.apps, vec![AppConfig::demo(), second]);
    let config = Config::load(None, env(&[("WARREN_APPS__0__SECRET", "s")])).unwrap();
    assert_eq!(config.apps, vec![app("app-id", "app-key", "s")]);

    // A new app still needs its credentials.
    let message = error(ONE_APP, &[("WARREN_APPS__1__ID", "a2")]);
    assert_refused(
        &message,
        "WARREN_APPS__1__ID: apps.1.key: ",
        "missing field `key`",
    );
    let message = error(ONE_APP, &[("WARREN_APPS__3__ID", "a4")]);
    assert_refused(
        &message,
        "WARREN_APPS__3__ID: ",
        "`3` is not an index from 0 to 1",
    );
    let message = error(ONE_APP, &[("WARREN_APPS__FIRST__ID", "a4")]);
    assert_refused(
        &message,
        "WARREN_APPS__FIRST__ID: ",
        "`first` is not an index",
    );
    let message = error("[server]\nport = 1\n", &[("WARREN_SERVER__PORT__X", "1")]);
    assert_refused(&message, "WARREN_SERVER__PORT__X: ", "not a table");
}

#[test]
fn unknown_keys_are_refused() {
    let message = error("[server]\nprot = 6001\n", &[]);
    assert_refused(&message, "server.prot: ", "unknown field: found `prot`");
    assert!(message.contains("`port`"), "{message}");
    let message = error("[sever]\nport = 6001\n", &[]);
    assert_refused(&message, "sever: ", "unknown field: found `sever`");
    let message = error(&format!("{ONE_APP}secert = \"x\"\n"), &[]);
    assert_refused(&message, "apps.0.secert: ", "unknown field: found `secert`");
    // From the environment, even into a section the file has.
    let message = error("[server]\nport = 1\n", &[("WARREN_SERVER__PROT", "7001")]);
    assert_refused(
        &message,
        "WARREN_SERVER__PROT: server.prot: ",
        "unknown field",
    );
    let message = error(ONE_APP, &[("WARREN_SRVER__PORT", "7001")]);
    assert_refused(&message, "WARREN_SRVER__PORT: srver: ", "unknown field");
    let message = error(ONE_APP, &[("WARREN_APPS__0__SECERT", "x")]);
    assert_refused(
        &message,
        "WARREN_APPS__0__SECERT: apps.0.secert: ",
        "unknown field",
    );
}

#[test]
fn wrong_types_name_the_key() {
    for (text, key, gist) in [
        (
            "[server]\nport = \"x\"\n",
            "server.port",
            "found string \"x\", expected u16",
        ),
        (
            "[server]\nport = 70000\n",
            "server.port",
            "`70000`, expected u16",
        ),
        (
            "[cluster]\nnode_timeout_ms = -1\n",
            "cluster.node_timeout_ms",
            "expected u64",
        ),
        (
            "[server]\nnode_id = 7\n",
            "server.node_id",
            "expected a string",
        ),
        (
            "[[apps]]\nenabled = \"maybe\"\n",
            "apps.0.enabled",
            "expected a boolean",
        ),
        (
            "[apps]\nid = \"a\"\n",
            "apps",
            "found map, expected a sequence",
        ),
        ("server = 1\n", "server", "expected struct ServerConfig"),
    ] {
        assert_refused(&error(text, &[]), &format!("{key}: "), gist);
    }
    for (var, value, key, gist) in [
        (
            "WARREN_SERVER__PORT",
            "abc",
            "server.port",
            "string \"abc\", expected u16",
        ),
        (
            "WARREN_APPS__0__ENABLED",
            "maybe",
            "apps.0.enabled",
            "expected a boolean",
        ),
        (
            "WARREN_CLUSTER__NODE_TIMEOUT_MS",
            "5s",
            "cluster.node_timeout_ms",
            "5s",
        ),
    ] {
        let message = error(ONE_APP, &[(var, value)]);
        assert_refused(&message, &format!("{var}: {key}: "), gist);
    }
}

#[test]
fn role_and_backend_are_names() {
    for (name, role, websocket, api) in [
        ("all", Role::All, true, true),
        ("push", Role::Push, true, false),
        ("api", Role::Api, false, true),
    ] {
        let config = parse(&format!("[server]\nrole = \"{name}\"\n"), &[]);
        assert_eq!(config.server.role, role);
        assert_eq!(
            (role.serves_websocket(), role.serves_api()),
            (websocket, api)
        );
        assert_eq!((role.to_string(), role.as_str()), (name.to_owned(), name));
    }
    let config = parse("[cluster]\nbackend = \"redis\"\n", &[]);
    assert_eq!(config.cluster.backend, Backend::Redis);
    assert_eq!(Backend::Redis.to_string(), "redis");
    let message = error("[server]\nrole = \"API\"\n", &[]);
    assert_refused(&message, "server.role: ", "unknown variant: found `API`");
    assert!(message.contains("`all`, `push`, `api`"), "{message}");
    // A number is not a variant's index.
    assert_refused(
        &error("[server]\nrole = 1\n", &[]),
        "server.role: ",
        "expected a string",
    );
    let message = error(ONE_APP, &[("WARREN_CLUSTER__BACKEND", "memory")]);
    let start = "WARREN_CLUSTER__BACKEND: cluster.backend: ";
    assert_refused(&message, start, "unknown variant: found `memory`");
}

#[test]
fn values_out_of_range() {
    // Port 0 means "pick a free port".
    assert_eq!(parse("[server]\nport = 0\n", &[]).server.port, 0);
    for key in [
        "activity_timeout",
        "pong_timeout",
        "max_message_size_kb",
        "max_outbound_queue",
        "api_timestamp_tolerance_secs",
    ] {
        let expected = format!("invalid configuration: server.{key}: must be at least 1, got 0");
        assert_eq!(error(&format!("[server]\n{key} = 0\n"), &[]), expected);
    }
    for key in [
        "max_presence_members",
        "max_event_payload_kb",
        "max_channel_name_length",
        "client_event_rate_per_sec",
        "subscribe_rate_per_sec",
        "max_subscriptions_per_connection",
        "cache_ttl_secs",
    ] {
        let expected = format!("invalid configuration: apps.0.{key}: must be at least 1, got 0");
        assert_eq!(error(&format!("{ONE_APP}{key} = 0\n"), &[]), expected);
    }
    assert_eq!(
        parse("[server]\ningress_threads = 0\n", &[])
            .server
            .ingress_threads,
        0
    );
    assert_eq!(
        error("[server]\ningress_threads = 65\n", &[]),
        "invalid configuration: server.ingress_threads: must be at most 64, got 65"
    );
    let config = parse(&format!("{ONE_APP}max_channel_name_length = 1000\n"), &[]);
    assert_eq!(config.apps[0].max_channel_name_length, 1000);
    assert_eq!(
        error(&format!("{ONE_APP}max_channel_name_length = 1001\n"), &[]),
        "invalid configuration: apps.0.max_channel_name_length: must be at most 1000, got 1001"
    );
    assert_eq!(
        error("[cluster]\nnode_timeout_ms = 999\n", &[]),
        "invalid configuration: cluster.node_timeout_ms: must be at least 1000, got 999"
    );
    assert_eq!(
        error("[server]\nhost = \"\"\n", &[]),
        "invalid configuration: server.host: must not be empty"
    );
}

#[test]
fn node_id_and_prefix_are_names() {
    let config = parse("[server]\nnode_id = \"node-1.eu_west\"\n", &[]);
    assert_eq!(config.server.node_id.as_deref(), Some("node-1.eu_west"));
    let longest = "n".repeat(64);
    let text = format!("[server]\nnode_id = \"{longest}\"\n[cluster]\nprefix = \"{longest}\"\n");
    let config = parse(&text, &[]);
    assert_eq!(
        (config.server.node_id.unwrap(), config.cluster.prefix),
        (longest.clone(), longest)
    );
    let config = parse("[cluster]\nprefix = \"warren:prod-eu_1.v2\"\n", &[]);
    assert_eq!(config.cluster.prefix, "warren:prod-eu_1.v2");

    let node_id = "must be 1 to 64 of A-Z a-z 0-9 _ . -, got";
    let prefix = "must be 1 to 64 of A-Z a-z 0-9 _ . : - (no braces: Redis hash tags), got";
    for (text, expected) in [
        (
            "[server]\nnode_id = \"\"\n",
            format!("server.node_id: {node_id} \"\""),
        ),
        (
            "[server]\nnode_id = \"n:1\"\n",
            format!("server.node_id: {node_id} \"n:1\""),
        ),
        (
            "[cluster]\nprefix = \"w{1}\"\n",
            format!("cluster.prefix: {prefix} \"w{{1}}\""),
        ),
        (
            "[cluster]\nprefix = \"a/b\"\n",
            format!("cluster.prefix: {prefix} \"a/b\""),
        ),
    ] {
        assert_eq!(
            error(text, &[]),
            format!("invalid configuration: {expected}")
        );
    }
    let text = format!("[cluster]\nprefix = \"{}\"\n", "p".repeat(65));
    assert_refused(&error(&text, &[]), "cluster.prefix: ", "must be 1 to 64");
    let message = error(ONE_APP, &[("WARREN_SERVER__NODE_ID", "a b")]);
    assert_refused(
        &message,
        "WARREN_SERVER__NODE_ID: server.node_id: ",
        "got \"a b\"",
    );
}

#[test]
fn apps_need_valid_unique_credentials() {
    let text = "[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"\n";
    let twice = format!("{text}{text}");
    assert_eq!(
        error(&twice, &[]),
        "invalid configuration: apps.1.id: duplicate app id \"a\" (also apps.0.id)"
    );
    let vars = [("WARREN_APPS__1__ID", "b")];
    let message = error(&twice, &vars);
    assert_refused(
        &message,
        "apps.1.key: ",
        "duplicate app key \"k\" (also apps.0.key)",
    );
    let vars = [
        ("WARREN_APPS__1__KEY", "app-key"),
        ("WARREN_APPS__1__ID", "x"),
        ("WARREN_APPS__1__SECRET", "s"),
    ];
    let message = error("", &vars);
    assert_refused(
        &message,
        "WARREN_APPS__1__KEY: apps.1.key: ",
        "duplicate app key",
    );

    let message = error("[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"\"\n", &[]);
    assert_eq!(
        message,
        "invalid configuration: apps.0.secret: must not be empty"
    );
    let message = error(ONE_APP, &[("WARREN_APPS__0__SECRET", "")]);
    assert_refused(
        &message,
        "WARREN_APPS__0__SECRET: apps.0.secret: ",
        "must not be empty",
    );
    let message = error("[[apps]]\nid = \"a\"\nkey = \"k\"\n", &[]);
    assert_refused(&message, "apps.0.secret: ", "missing field `secret`");
    let message = error("apps = []\n", &[]);
    assert_refused(&message, "apps: ", "at least one app is required");

    // The rule and its words are the protocol's AppId/AppKey.
    let message = error(
        "[[apps]]\nid = \"my app\"\nkey = \"k\"\nsecret = \"s\"\n",
        &[],
    );
    let gist = "app id contains characters outside [-a-zA-Z0-9_.]: \"my app\"";
    assert_refused(&message, "apps.0.id: ", gist);
    let message = error(ONE_APP, &[("WARREN_APPS__0__KEY", "a/b")]);
    assert_refused(
        &message,
        "WARREN_APPS__0__KEY: apps.0.key: ",
        "app key contains",
    );
    let message = error("[[apps]]\nid = \"\"\nkey = \"k\"\nsecret = \"s\"\n", &[]);
    assert_refused(&message, "apps.0.id: ", "app id must not be empty");
}

#[test]
fn syntax_error_is_one_line_with_its_position() {
    let message = error("[server]\nport = = 1\n", &[]);
    assert_refused(
        &message,
        "TOML parse error at line 2, column 8: ",
        "invalid string",
    );
    let message = error("[server]\nport = 1\nport = 2\n", &[]);
    assert_refused(&message, "TOML parse error at line 3", "duplicate key");
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let name = format!(
            "warren-config-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        );
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn load_reads_the_file() {
    let dir = TempDir::new();
    let file = dir.0.join("warren.toml");
    std::fs::write(&file, ONE_APP).unwrap();
    let config = Config::load(Some(&file), env(&[("WARREN_SERVER__PORT", "7003")])).unwrap();
    assert_eq!(config.server.port, 7003);
    assert_eq!(config.apps, vec![app("a1", "k1", "s1")]);

    let missing = Path::new("warren-config-test-does-not-exist.toml");
    let message = Config::load(Some(missing), env(&[]))
        .unwrap_err()
        .to_string();
    let start = "cannot read warren-config-test-does-not-exist.toml: No such file or directory";
    assert!(message.starts_with(start), "{message}");
}

/// A refused value of the file names the file; one of a variable names the variable, also
/// when other variables changed the same table.
#[test]
fn errors_name_the_file_or_the_variable() {
    let dir = TempDir::new();
    let file = dir.0.join("warren.toml");
    let load = |text: &str, vars: &[(&str, &str)]| {
        std::fs::write(&file, text).unwrap();
        let error = Config::load(Some(&file), env(vars)).expect_err("refused");
        error.to_string()
    };
    let in_file = |key: &str| format!("{}: {key}: ", file.display());

    let message = load("[server]\nport = 6001\nprot = 1\n", &[]);
    assert_refused(&message, &in_file("server.prot"), "unknown field");
    let vars = [("WARREN_SERVER__HOST", "h")];
    let message = load("[server]\nport = \"x\"\n", &vars);
    assert_refused(&message, &in_file("server.port"), "expected u16");
    let text = format!("{ONE_APP}[[apps]]\nid = \"a2\"\nkey = \"k2\"\n");
    assert_refused(
        &load(&text, &[]),
        &in_file("apps.1.secret"),
        "missing field",
    );
    let text = format!("{ONE_APP}[[apps]]\nid = \"a1\"\nkey = \"k2\"\nsecret = \"s\"\n");
    assert_refused(&load(&text, &[]), &in_file("apps.1.id"), "duplicate app id");
    let message = load("[cluster]\nprefix = \"a b\"\n", &[]);
    assert_refused(&message, &in_file("cluster.prefix"), "got \"a b\"");
    assert_refused(
        &load("apps = []\n", &[]),
        &in_file("apps"),
        "at least one app",
    );
    let message = load("[cluster]\nredis_url = \"unix:///r.sock\"\n", &[]);
    assert_refused(&message, &in_file("cluster.redis_url"), "unsupported URL");
    let message = load("[server\n", &[]);
    assert_refused(
        &message,
        &format!("{}: TOML parse error at line 1", file.display()),
        "",
    );

    // The variable, when it set the value; its name as it was given.
    let message = load("[server]\nport = 6001\n", &[("WARREN_SERVER__PORT", "x")]);
    assert_refused(
        &message,
        "WARREN_SERVER__PORT: server.port: ",
        "expected u16",
    );
    let message = load(ONE_APP, &[("warren_Apps__0__secret", "")]);
    assert_refused(
        &message,
        "warren_Apps__0__secret: apps.0.secret: ",
        "must not be empty",
    );
}

/// Built in code, a configuration is checked by `validate`, with no origin to name.
#[test]
fn validate_checks_configurations_built_in_code() {
    let mut config = Config::default();
    config.validate().unwrap();
    config.apps.push(AppConfig::demo());
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "invalid configuration: apps.1.id: duplicate app id \"app-id\" (also apps.0.id)"
    );
    let mut config = Config::default();
    config.apps[0].max_subscriptions_per_connection = 0;
    config.cluster.redis_url = redis("redis://:hunter2@h:1");
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "invalid configuration: apps.0.max_subscriptions_per_connection: must be at least 1, got 0"
    );
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn redis_url_forms() {
    fn hosts(hosts: &[(&'static str, u16)]) -> Vec<(&'static str, u16)> {
        hosts.to_vec()
    }
    let sentinel = |h: &[(&'static str, u16)]| Servers::new_sentinel(hosts(h), "mymaster");
    for (url, servers, tls, password, database) in [
        (
            "redis://127.0.0.1",
            Servers::new_centralized("127.0.0.1", 6379),
            false,
            None,
            None,
        ),
        (
            "redis://:secret@redis.internal:6379/2",
            Servers::new_centralized("redis.internal", 6379),
            false,
            Some("secret"),
            Some(2),
        ),
        (
            "rediss://user:p%40ss@redis.internal:6380",
            Servers::new_centralized("redis.internal", 6380),
            true,
            Some("p@ss"),
            None,
        ),
        (
            "redis+sentinel://s1/mymaster",
            sentinel(&[("s1", 26379)]),
            false,
            None,
            None,
        ),
        (
            "redis+sentinel://:pw@s1:26379,s2:26380,s3/mymaster/2",
            sentinel(&[("s2", 26380), ("s3", 26379), ("s1", 26379)]),
            false,
            Some("pw"),
            Some(2),
        ),
        (
            "rediss+sentinel://s1:1/mymaster",
            sentinel(&[("s1", 1)]),
            true,
            None,
            None,
        ),
        (
            "redis-sentinel://s1:26379/0?sentinelServiceName=mymaster&node=s2:26380",
            sentinel(&[("s2", 26380), ("s1", 26379)]),
            false,
            None,
            Some(0),
        ),
        (
            "rediss-cluster://node-1:30000?node=node-2:30001",
            Servers::new_clustered(hosts(&[("node-2", 30001), ("node-1", 30000)])),
            true,
            None,
            None,
        ),
    ] {
        let config = parse(&format!("[cluster]\nredis_url = \"{url}\"\n"), &[]);
        let client = config.cluster.redis_url.client_config();
        assert_eq!(client.server, servers, "{url}");
        assert_eq!(client.tls.is_some(), tls, "{url}");
        assert_eq!(client.password.as_deref(), password, "{url}");
        assert_eq!(client.database, database, "{url}");
    }
    assert_eq!(
        redis("rediss://user:pw@h")
            .client_config()
            .username
            .as_deref(),
        Some("user")
    );

    // A list is the seed nodes of a Redis Cluster, with the first URL's credentials.
    let text = r#"
        [cluster]
        redis_url = ["redis://:pw@10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3"]
    "#;
    let target = parse(text, &[]).cluster.redis_url;
    let seeds = hosts(&[("10.0.0.1", 6379), ("10.0.0.2", 6379), ("10.0.0.3", 6379)]);
    assert_eq!(target.client_config().server, Servers::new_clustered(seeds));
    assert_eq!(target.client_config().password.as_deref(), Some("pw"));
    let list = RedisTarget::parse_list(&["rediss://a:1", "rediss://b:2/0"]).unwrap();
    assert!(list.client_config().server.is_clustered() && list.client_config().tls.is_some());
    assert_eq!(list.client_config().database, None);
    // A list of one URL is that URL, whatever its scheme.
    let url = "redis-sentinel://s:26379/0?sentinelServiceName=mymaster";
    assert_eq!(
        parse(&format!("[cluster]\nredis_url = [\"{url}\"]\n"), &[])
            .cluster
            .redis_url,
        redis(url)
    );
}

#[test]
fn redis_url_refused() {
    let check = |value: &str, key: &str, gist: &str| {
        let message = error(&format!("[cluster]\nredis_url = {value}\n"), &[]);
        assert_refused(&message, &format!("{key}: "), gist);
    };
    let key = "cluster.redis_url";
    let schemes = "expected redis://, rediss://, redis+sentinel://, redis-sentinel://, \
                   redis-cluster:// or their rediss forms";
    for url in [
        "unix:///var/run/redis.sock",
        "redis+unix:///r.sock",
        "127.0.0.1:6379",
        "http://redis:6379",
        "REDIS://h",
        "valkey://h",
        "",
    ] {
        check(
            &format!("\"{url}\""),
            key,
            &format!("unsupported URL \"{url}\": {schemes}"),
        );
    }
    for (url, gist) in [
        ("redis://h:port", "invalid Redis URL \"redis://h:port\""),
        ("redis://", "Invalid or missing host"),
        ("redis://h:1/x", "invalid Redis URL"),
        ("redis://h:1/2/3", "Invalid database path"),
        ("redis://a:1,b:2", "invalid Redis URL"),
        (
            "redis+sentinel://s1:26379,s2:26379",
            "no Sentinel service name",
        ),
        ("redis-sentinel://s:26379/0", "sentinel service name"),
        ("redis-cluster://a:1?node=b:x", "invalid Redis URL"),
    ] {
        check(&format!("\"{url}\""), key, gist);
    }
    check("[]", key, "expected at least one URL");
    let expected = "expected a Redis URL or an array of them";
    check("6379", key, expected);
    check("[\"redis://a:1\", 2]", key, expected);
    let seeds = "the seeds of a Redis Cluster are all redis:// or all rediss:// URLs";
    check(
        "[\"redis://a:1\", \"redis-sentinel://b:2\"]",
        key,
        "[1]: invalid Redis URL",
    );
    check(
        "[\"redis-cluster://a:1\", \"redis://b:2\"]",
        key,
        &format!("[0]: \"redis-cluster://a:1\": {seeds}"),
    );
    check(
        "[\"redis://a:1\", \"rediss://b:2\"]",
        key,
        &format!("[1]: \"rediss://b:2\": {seeds}"),
    );
    check(
        "[\"redis://a:1\", \"unix:///r.sock\"]",
        key,
        "[1]: unsupported URL",
    );
    let message = error(
        ONE_APP,
        &[("WARREN_CLUSTER__REDIS_URL", "unix:///tmp/r.sock")],
    );
    assert_refused(
        &message,
        "WARREN_CLUSTER__REDIS_URL: cluster.redis_url: ",
        "unsupported URL",
    );
}

#[test]
fn redis_url_credentials_are_never_shown() {
    for (url, shown) in [
        ("redis://h:1", "redis://h:1"),
        ("redis://:pw@h:1/0", "redis://***@h:1/0"),
        ("rediss://u:p@ss@h", "rediss://***@h"),
        (
            "redis+sentinel://u:pw@s1,s2/m",
            "redis+sentinel://***@s1,s2/m",
        ),
    ] {
        let target = redis(url);
        assert_eq!(target.to_string(), shown);
        assert_eq!(format!("{target:?}"), format!("RedisTarget({shown})"));
    }
    assert_eq!(
        redis("rediss://u:p@ss@h")
            .client_config()
            .password
            .as_deref(),
        Some("p@ss")
    );
    let list = RedisTarget::parse_list(&["redis://:pw@a:1", "redis://b:2"]).unwrap();
    assert_eq!(list.to_string(), "redis://***@a:1,redis://b:2");
    let message = error("[cluster]\nredis_url = \"redis://:hunter2@h:x\"\n", &[]);
    assert_refused(&message, "cluster.redis_url: ", "\"redis://***@h:x\"");
    assert!(!message.contains("hunter2"), "{message}");
    let message = error("[cluster]\nredis_url = \"valkey://admin:hunter2@h\"\n", &[]);
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn env_redis_url_list() {
    // A comma followed by another URL separates entries; blanks around them are trimmed.
    let urls = "redis://10.0.0.1:6379, redis://10.0.0.2:6379 ,redis://10.0.0.3:6379";
    let config = parse(ONE_APP, &[("WARREN_CLUSTER__REDIS_URL", urls)]);
    let seeds = [
        "redis://10.0.0.1:6379",
        "redis://10.0.0.2:6379",
        "redis://10.0.0.3:6379",
    ];
    assert_eq!(
        config.cluster.redis_url,
        RedisTarget::parse_list(&seeds).unwrap()
    );
    assert!(config
        .cluster
        .redis_url
        .client_config()
        .server
        .is_clustered());
    // Other commas stay in their URL: a Sentinel host list, a password.
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
        config.cluster.redis_url.client_config().password.as_deref(),
        Some("a,b")
    );
    assert!(config
        .cluster
        .redis_url
        .client_config()
        .server
        .is_clustered());
    // Entries follow the rules of a list in the file, and name the variable.
    let message = error(
        ONE_APP,
        &[("WARREN_CLUSTER__REDIS_URL", "redis://a:1,rediss://b:2")],
    );
    assert_refused(
        &message,
        "WARREN_CLUSTER__REDIS_URL: cluster.redis_url: [1]: ",
        "rediss",
    );
    let message = error(ONE_APP, &[("WARREN_CLUSTER__REDIS_URL", ",redis://a:1")]);
    assert_refused(
        &message,
        "WARREN_CLUSTER__REDIS_URL: cluster.redis_url: [0]: ",
        "unsupported URL",
    );
}

/// `warren.example.toml` is valid and shows every default.
#[test]
fn example_file_shows_the_defaults() {
    let config = parse(include_str!("../../../../warren.example.toml"), &[]);
    assert_eq!(config.webhooks, Default::default());
    assert_eq!(config.metrics, Default::default());
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.cluster, ClusterConfig::default());
    assert_eq!(config.monitor, MonitorConfig::default());
    assert_eq!(config.console, ConsoleConfig::default());
    assert_eq!(config.log, super::LogConfig::default());
    assert_eq!(config.apps, vec![app("app-id", "app-key", "change-me")]);
}

#[test]
fn monitor_and_console_keys_from_file_and_env() {
    let text = format!("[monitor]\ntap_queue = 8\n[console]\nenabled = true\n{ONE_APP}");
    let token = ("WARREN_MONITOR__OPERATOR_TOKEN", "0123456789abcdef0123");
    let config = parse(&text, &[token]);
    assert_eq!(
        config.monitor,
        MonitorConfig {
            operator_token: Some("0123456789abcdef0123".into()),
            tap_queue: 8,
        }
    );
    assert!(config.console.enabled);
    assert!(
        !Config::default().console.enabled,
        "the console is off by default"
    );
}

#[test]
fn a_short_operator_token_or_an_empty_tap_queue_is_refused() {
    let mut config = Config::default();
    config.monitor.operator_token = Some("short".into());
    let e = config.validate().expect_err("short token").to_string();
    assert!(e.contains("monitor.operator_token"), "{e}");
    let mut config = Config::default();
    config.monitor.tap_queue = 0;
    let e = config.validate().expect_err("no room").to_string();
    assert!(e.contains("monitor.tap_queue"), "{e}");
}

#[test]
fn sizes_and_timeouts_have_upper_bounds() {
    for (key, value, bound) in [
        ("WARREN_SERVER__MAX_MESSAGE_SIZE_KB", "16385", "16384"),
        ("WARREN_SERVER__WRITE_TIMEOUT_MS", "86400001", "86400000"),
        ("WARREN_SERVER__HTTP_IDLE_TIMEOUT_SECS", "86401", "86400"),
        ("WARREN_APPS__0__MAX_EVENT_PAYLOAD_KB", "99999999", "16384"),
    ] {
        let text = "[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"";
        let err = match parse_text(text, &[(key, value)]) {
            Err(e) => e.to_string(),
            Ok(config) => config.validate().expect_err(key).to_string(),
        };
        assert!(err.contains(&format!("at most {bound}")), "{key}: {err}");
    }
}

#[test]
fn trusted_proxies_come_from_a_variable_as_a_list() {
    let text = "[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"";
    let config = parse(
        text,
        &[("WARREN_SERVER__TRUSTED_PROXIES", "10.0.0.0/8, ::1")],
    );
    assert_eq!(config.server.trusted_proxies.0.len(), 2);
    let message = error(text, &[("WARREN_SERVER__TRUSTED_PROXIES", "10.0.0.0/33")]);
    assert!(message.contains("server.trusted_proxies"), "{message}");
}

#[test]
fn origins_rates_and_the_shutdown_grace_from_file_and_env() {
    let text = r#"
        [server]
        shutdown_grace_ms = 5000
        [[apps]]
        id = "a"
        key = "k"
        secret = "s"
        allowed_origins = ["https://*.example.com", "http://localhost:*"]
        api_request_rate_per_sec = 100
        api_event_rate_per_sec = 1000
    "#;
    let config = parse(text, &[]);
    assert_eq!(config.server.shutdown_grace_ms, 5000);
    let app = &config.apps[0];
    assert!(app.allowed_origins.allows(Some("https://x.example.com")));
    assert!(!app.allowed_origins.allows(Some("https://example.org")));
    assert_eq!(
        (app.api_request_rate_per_sec, app.api_event_rate_per_sec),
        (100, 1000)
    );
    let from_env = parse(
        ONE_APP,
        &[(
            "WARREN_APPS__0__ALLOWED_ORIGINS",
            "https://a.test, https://b.test",
        )],
    );
    let origins = &from_env.apps[0].allowed_origins;
    assert!(origins.allows(Some("https://b.test")) && !origins.allows(Some("https://c.test")));
    assert!(
        AppConfig::demo().allowed_origins.is_empty(),
        "any origin by default"
    );
    let message = error(
        ONE_APP,
        &[("WARREN_APPS__0__ALLOWED_ORIGINS", "https://a.test/path")],
    );
    assert!(message.contains("apps.0.allowed_origins"), "{message}");
    assert!(message.contains("no path"), "{message}");
}

#[test]
fn metrics_are_off_on_loopback_9601_unless_configured() {
    let config = parse("", &[]);
    assert_eq!(
        (
            config.metrics.enabled,
            config.metrics.host.as_str(),
            config.metrics.port
        ),
        (false, "127.0.0.1", 9601)
    );
    let text = "[metrics]\nenabled = true\nhost = \"0.0.0.0\"\n";
    let config = parse(text, &[("WARREN_METRICS__PORT", "9700")]);
    assert_eq!(
        (
            config.metrics.enabled,
            config.metrics.host.as_str(),
            config.metrics.port
        ),
        (true, "0.0.0.0", 9700)
    );
    let mut config = Config::default();
    config.metrics.host.clear();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("metrics.host"), "{e}");
}

#[test]
fn tls_files_from_file_and_env_both_required() {
    let text = format!(
        "[server.tls]\ncert_file = \"/etc/warren/cert.pem\"\nkey_file = \"k.pem\"\n{ONE_APP}"
    );
    let tls = parse(&text, &[]).server.tls.expect("tls section");
    assert_eq!(tls.cert_file, std::path::Path::new("/etc/warren/cert.pem"));
    assert_eq!(tls.key_file, std::path::Path::new("k.pem"));
    let vars = [
        ("WARREN_SERVER__TLS__CERT_FILE", "c.pem"),
        ("WARREN_SERVER__TLS__KEY_FILE", "other.pem"),
    ];
    let tls = parse(ONE_APP, &vars)
        .server
        .tls
        .expect("tls from variables");
    assert_eq!(tls.key_file, std::path::Path::new("other.pem"));
    assert!(parse(ONE_APP, &[]).server.tls.is_none(), "off by default");

    let message = error(ONE_APP, &vars[..1]);
    assert_refused(&message, "", "server.tls.key_file");
    let message = error(&text, &[("WARREN_SERVER__TLS__KEY_FILE", "")]);
    assert_refused(
        &message,
        "WARREN_SERVER__TLS__KEY_FILE: server.tls.key_file",
        "must not be empty",
    );
    let message = error(
        &format!("[server.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nca_file = \"x\"\n{ONE_APP}"),
        &[],
    );
    assert!(message.contains("ca_file"), "{message}");
}

mod app_rows {
    use serde_json::json;

    use crate::config::AppConfig;

    #[test]
    fn a_row_is_read_with_the_defaults_of_the_file() {
        let app = AppConfig::from_json(json!({
            "id": "a1", "key": "k1", "secret": "s1", "max_connections": 5,
            "webhooks": [{"url": "http://127.0.0.1:9/hook"}],
            "allowed_origins": ["https://example.com"], "cache_ttl_secs": null,
        }))
        .unwrap();
        assert_eq!(app.max_connections, 5);
        assert_eq!(app.cache_ttl_secs, 1800);
        assert_eq!(app.webhooks.len(), 1);
    }

    #[test]
    fn a_bad_row_names_its_field() {
        let bad = |row: serde_json::Value| AppConfig::from_json(row).unwrap_err().0;
        assert_eq!(bad(json!({"id": "a1", "key": "k1"})), "secret");
        assert_eq!(
            bad(json!({"id": "a1", "key": "k1", "secret": "s", "max_connections": -1})),
            "max_connections"
        );
        assert_eq!(
            bad(json!({"id": "a1", "key": "k1", "secret": "s", "max_event_payload_kb": 0})),
            "max_event_payload_kb"
        );
        assert_eq!(bad(json!({"id": "a/1", "key": "k1", "secret": "s"})), "id");
        assert_eq!(
            bad(json!({"id": "a1", "key": "k1", "secret": "s", "webhooks": [{"url": "ftp://x"}]})),
            "webhooks.0.url"
        );
        assert_eq!(
            bad(json!({"id": "a1", "key": "k1", "secret": "s", "colour": "blue"})),
            "colour"
        );
        assert_eq!(
            bad(json!({"id": "a1", "key": "k1", "secret": ""})),
            "secret"
        );
    }
}

mod apps_source {
    use crate::config::{AppsBackend, Config};

    fn load(text: &str) -> Result<Config, String> {
        Config::parse(text, figment::Source::Custom("f.toml".into()), Vec::new())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn postgres_needs_a_url_and_a_plain_table_name() {
        let e = load("[apps_source]\nbackend = \"postgres\"\n").unwrap_err();
        assert!(e.contains("apps_source.url"), "{e}");
        let e = load("[apps_source]\nbackend = \"postgres\"\nurl = \"http://x\"\n").unwrap_err();
        assert!(
            e.contains("apps_source.url") && e.contains("postgres://"),
            "{e}"
        );
        let ok =
            "[apps_source]\nbackend = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1/w\"\n";
        let config = load(ok).unwrap();
        assert_eq!(config.apps_source.backend, AppsBackend::Postgres);
        assert_eq!(config.apps_source.table, "warren_apps");
        let e = load(&format!("{ok}table = \"Apps; drop\"\n")).unwrap_err();
        assert!(e.contains("apps_source.table"), "{e}");
        let e = load(&format!("{ok}refresh_interval_secs = 0\n")).unwrap_err();
        assert!(e.contains("apps_source.refresh_interval_secs"), "{e}");
    }
}

#[test]
fn a_redis_ca_file_needs_tls_and_a_readable_certificate() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing.pem");
    let text = |url: &str, path: &std::path::Path| {
        format!(
            "[cluster]\nredis_url = \"{url}\"\nredis_tls_ca_file = \"{}\"\n",
            path.display()
        )
    };
    let message = error(&text("redis://r:6379", &missing), &[]);
    assert_refused(
        &message,
        "cluster.redis_tls_ca_file",
        "is not a rediss:// URL",
    );
    let message = error(&text("rediss://r:6379", &missing), &[]);
    assert_refused(&message, "cluster.redis_tls_ca_file", "cannot read");
    let junk = dir.0.join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let message = error(&text("rediss://r:6379", &junk), &[]);
    assert_refused(&message, "cluster.redis_tls_ca_file", "no certificate");
    let mut config = Config::default();
    config.cluster.redis_url = redis("rediss://:pw@r:6379");
    assert!(
        config.cluster.redis_target().is_ok(),
        "no CA file: the system's roots"
    );
}
