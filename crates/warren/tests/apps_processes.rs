//! The binary and its apps: `SIGHUP` applies the file's apps (and refuses a bad file, keeping
//! the running configuration), and `warren apps` manages the PostgreSQL table, over TLS when
//! the URL says `sslmode=require`.

use std::path::Path;
use std::process::Output;

use warren_testkit::postgres::{PostgresServer, TestDatabase};
use warren_testkit::process::{hangup, logged, Warren};
use warren_testkit::tls::TestCa;
use warren_testkit::ws::{self, close_code, PUSHER_JS_QUERY};

fn warren() -> Warren {
    Warren::at(env!("CARGO_BIN_EXE_warren"))
}

fn apps_file(path: &Path, apps: &[(&str, &str)], extra: &str) {
    let mut text = String::from(extra);
    for (id, key) in apps {
        text += &format!("\n[[apps]]\nid = \"{id}\"\nkey = \"{key}\"\nsecret = \"{id}-secret\"\n");
    }
    std::fs::write(path, text).expect("write the configuration");
}

fn path(key: &str) -> String {
    format!("/app/{key}?{PUSHER_JS_QUERY}")
}

#[tokio::test]
async fn sighup_applies_a_good_file_and_refuses_a_bad_one() {
    let dir = std::env::temp_dir().join(format!("warren-apps-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("warren.toml");
    apps_file(
        &file,
        &[("first", "first-key"), ("second", "second-key")],
        "",
    );
    let config = file.display().to_string();
    let (served, log) = warren().serve_logged(&["--config", &config], &[]);
    let mut second = ws::established(ws::raw(&served, &path("second-key")).await).await;
    let mut first = ws::established(ws::raw(&served, &path("first-key")).await).await;

    // The second app removed, a third added, a key that needs a restart changed.
    let server = "[server]\nactivity_timeout = 60\n";
    apps_file(
        &file,
        &[("first", "first-key"), ("third", "third-key")],
        server,
    );
    hangup(&served);
    let reloaded = logged(&log, "configuration reloaded");
    assert!(
        reloaded.contains("1 added") && reloaded.contains("1 removed"),
        "{reloaded}"
    );
    let warned = logged(&log, "only after a restart");
    assert!(warned.contains("server.activity_timeout"), "{warned}");
    assert_eq!(close_code(&mut second.ws).await, Some(4001));
    ws::established(ws::raw(&served, &path("third-key")).await).await;

    // A bad file: one message naming the key; the running apps stay.
    std::fs::write(
        &file,
        "[[apps]]\nid = \"first\"\nkey = \"first-key\"\nsecret = \"\"\n",
    )
    .unwrap();
    hangup(&served);
    let refused = logged(&log, "reload refused");
    assert!(refused.contains("apps.0.secret"), "{refused}");
    ws::established(ws::raw(&served, &path("third-key")).await).await;
    first.assert_silent().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `warren apps ARGS` against the database at `url`.
fn apps(url: &str, args: &[&str]) -> Output {
    warren()
        .command()
        .arg("apps")
        .args(args)
        .env("WARREN_APPS_SOURCE__URL", url)
        .output()
        .expect("warren runs")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn warren_apps_manages_the_table_with_the_servers_rules() {
    let db = TestDatabase::create();
    let url = db.url();
    let added = apps(
        url,
        &[
            "add",
            "--id",
            "a1",
            "--key",
            "k1",
            "--secret",
            "s1",
            "--max-connections",
            "5",
        ],
    );
    assert!(added.status.success(), "{}", text(&added));
    let twice = apps(url, &["add", "--id", "a1", "--key", "k9", "--secret", "s"]);
    assert_eq!(twice.status.code(), Some(1), "{}", text(&twice));

    // A value the servers would refuse is refused, naming the column, and not written.
    let bad = apps(url, &["set", "--id", "a1", "--max-event-payload-kb", "0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad).contains("max_event_payload_kb"),
        "{}",
        text(&bad)
    );
    let hooks = apps(
        url,
        &["set", "--id", "a1", "--webhooks", r#"[{"url":"ftp://x"}]"#],
    );
    assert!(text(&hooks).contains("webhooks.0.url"), "{}", text(&hooks));

    let disabled = apps(url, &["set", "--id", "a1", "--enabled", "false"]);
    assert!(disabled.status.success(), "{}", text(&disabled));
    let rotated = apps(url, &["rotate-secret", "--id", "a1", "--grace-secs", "60"]);
    assert!(rotated.status.success(), "{}", text(&rotated));
    let secret = String::from_utf8_lossy(&rotated.stdout).trim().to_owned();
    assert_eq!(
        secret.len(),
        64,
        "a generated secret is printed: {secret:?}"
    );

    let listed = apps(url, &["list"]);
    let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
    let row = listing
        .lines()
        .find(|l| l.starts_with("a1\t"))
        .expect("a1 listed");
    assert!(
        row.starts_with("a1\tk1\tfalse\tprevious secret valid until"),
        "{row}"
    );

    assert!(apps(url, &["remove", "--id", "a1"]).status.success());
    let gone = apps(url, &["remove", "--id", "a1"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(text(&gone).contains("no app with id"), "{}", text(&gone));
}

#[test]
fn warren_apps_without_a_database_is_a_usage_error() {
    let output = warren()
        .command()
        .args(["apps", "list"])
        .output()
        .expect("warren runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("WARREN_APPS_SOURCE__URL"),
        "{}",
        text(&output)
    );
}

/// `warren apps ARGS` (or any command) with the database at `url`, trusting `ca_file`.
fn over_tls(args: &[&str], url: &str, ca_file: &Path) -> Output {
    warren()
        .command()
        .args(args)
        .env("WARREN_APPS_SOURCE__URL", url)
        .env("WARREN_APPS_SOURCE__TLS_CA_FILE", ca_file)
        .output()
        .expect("warren runs")
}

#[tokio::test]
async fn tls_to_the_database_from_the_environment_and_a_refusal_logged_with_its_reason() {
    let ca = TestCa::new();
    let pg = PostgresServer::start_tls(&ca);
    let db = TestDatabase::create_on(&pg.url());
    pg.require_tls();
    let url = format!("{}?sslmode=require", db.url());
    let ca_file = ca.path("pg-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("writes the CA");
    let add = ["apps", "add", "--id", "a1", "--key", "k1", "--secret", "s1"];
    let added = over_tls(&add, &url, &ca_file);
    assert!(added.status.success(), "{}", text(&added));

    // `config check` reads the CA file and names the key when it holds no certificate.
    let junk = ca.path("junk.pem");
    std::fs::write(&junk, "no certificate here").expect("writes");
    let file = ca.path("warren.toml");
    std::fs::write(&file, "[apps_source]\nbackend = \"postgres\"\n").expect("writes");
    let file = file.display().to_string();
    let checked = over_tls(&["config", "check", &file], &url, &junk);
    assert_eq!(checked.status.code(), Some(1), "{}", text(&checked));
    assert!(
        text(&checked).contains("apps_source.tls_ca_file"),
        "{}",
        text(&checked)
    );

    // A node that trusts another authority is refused, and its log says why.
    let stranger = TestCa::new();
    let stranger_file = stranger.path("other-ca.pem");
    std::fs::write(&stranger_file, stranger.pem()).expect("writes the other CA");
    let source = |ca: &Path| {
        [
            ("WARREN_APPS_SOURCE__BACKEND", "postgres".to_owned()),
            ("WARREN_APPS_SOURCE__URL", url.clone()),
            ("WARREN_APPS_SOURCE__TLS_CA_FILE", ca.display().to_string()),
        ]
    };
    let env = source(&stranger_file);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_refused, log) = warren().serve_logged(&[], &env);
    let line = logged(&log, "apps source (PostgreSQL) unreachable");
    assert!(line.contains("invalid peer certificate"), "{line}");

    // The right authority: the node reads the app and serves it.
    let env = source(&ca_file);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (served, log) = warren().serve_logged(&[], &env);
    logged(&log, "apps source (PostgreSQL) connected");
    ws::established(ws::raw(&served, &path("k1")).await).await;
}
