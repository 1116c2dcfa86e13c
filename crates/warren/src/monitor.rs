//! `warren monitor`: the server's tap, live in the terminal (`GET /monitor`, Server-Sent
//! Events). Signed with an app's key and secret (that app's events), or with the operator
//! token (every app's). With the Redis backend, any node shows the whole cluster.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::Value;
use warren_protocol::auth::sign_rest_request;
use warren_server::Config;

use crate::api_commands::{listen_url, ServerSource};

#[derive(Args)]
pub struct MonitorArgs {
    /// Only this app (default: the first app of the configuration, unless the operator token is used).
    #[arg(long)]
    app: Option<String>,
    /// App key to sign with (default: the app's key from the configuration).
    #[arg(long)]
    key: Option<String>,
    /// App secret to sign with (default: the app's secret from the configuration).
    #[arg(long)]
    secret: Option<String>,
    /// Operator token: every app (default: `monitor.operator_token` of the configuration,
    /// when no --app or --key is given).
    #[arg(long, env = "WARREN_MONITOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Only events on channels whose names start with this.
    #[arg(long, value_name = "PREFIX")]
    channel_prefix: Option<String>,
    /// Only events with this name.
    #[arg(long)]
    event: Option<String>,
    /// Server URL, e.g. http://127.0.0.1:6001 (default: from server.host and server.port).
    #[arg(long)]
    url: Option<String>,
    /// One JSON object per line, as the server sends them.
    #[arg(long)]
    json: bool,
}

pub fn run(args: MonitorArgs, source: ServerSource) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(watch(args, source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Stream(m)) => {
            eprintln!("error: {m}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Stream(String),
}

/// How the request is let in.
enum Credentials {
    Token(String),
    Signed {
        app: String,
        key: String,
        secret: String,
    },
}

fn credentials(args: &MonitorArgs, config: &Config) -> Result<Credentials, Failure> {
    let explicit_app = args.app.is_some() || args.key.is_some();
    let token = args.token.clone().or_else(|| {
        (!explicit_app)
            .then(|| config.monitor.operator_token.clone())
            .flatten()
    });
    if let Some(token) = token {
        return Ok(Credentials::Token(token));
    }
    let app_id = match &args.app {
        Some(id) => id.clone(),
        None => config
            .apps
            .first()
            .map(|a| a.id.to_string())
            .ok_or_else(|| Failure::Usage("the configuration has no app; pass --app".into()))?,
    };
    let app = config.apps.iter().find(|a| a.id.as_str() == app_id);
    let missing = |what: &str| {
        Failure::Usage(format!(
            "app {app_id:?} is not in the configuration: pass --{what} (and the other credentials), or --token"
        ))
    };
    let key = match (&args.key, app) {
        (Some(k), _) => k.clone(),
        (None, Some(a)) => a.key.to_string(),
        (None, None) => return Err(missing("key")),
    };
    let secret = match (&args.secret, app) {
        (Some(s), _) => s.clone(),
        (None, Some(a)) => a.secret.clone(),
        (None, None) => return Err(missing("secret")),
    };
    Ok(Credentials::Signed {
        app: app_id,
        key,
        secret,
    })
}

async fn watch(args: MonitorArgs, source: ServerSource) -> Result<(), Failure> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let config = Config::load(source.config.as_deref(), env)
        .map_err(|e| Failure::Usage(format!("cannot load the configuration: {e}")))?;
    let base = match &args.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => listen_url(
            source.host.as_deref().unwrap_or(&config.server.host),
            source.port.unwrap_or(config.server.port),
        )
        .map_err(Failure::Usage)?,
    };
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, value) in [
        ("channel_prefix", &args.channel_prefix),
        ("event", &args.event),
    ] {
        if let Some(v) = value {
            params.push((name.into(), v.clone()));
        }
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let request = match credentials(&args, &config)? {
        Credentials::Token(token) => {
            if let Some(app) = &args.app {
                params.push(("app_id".into(), app.clone()));
            }
            client
                .get(format!("{base}/monitor"))
                .query(&params)
                .bearer_auth(token)
        }
        Credentials::Signed { app, key, secret } => {
            params.push(("app_id".into(), app));
            params.push(("auth_key".into(), key));
            params.push(("auth_timestamp".into(), unix_secs().to_string()));
            params.push(("auth_version".into(), "1.0".into()));
            let signature = sign_rest_request(&secret, "GET", "/monitor", &params);
            params.push(("auth_signature".into(), signature));
            client.get(format!("{base}/monitor")).query(&params)
        }
    };
    let mut response = request
        .send()
        .await
        .map_err(|e| Failure::Stream(format!("{base}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(Failure::Stream(format!("{status}: {message}")));
    }
    let mut pending = String::new();
    let stdout = std::io::stdout();
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Err(Failure::Stream("the server closed the stream".into())),
            Err(e) => return Err(Failure::Stream(e.to_string())),
        };
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Some(data) = line.trim_end().strip_prefix("data: ") else {
                continue;
            };
            let mut out = stdout.lock();
            let written = if args.json {
                writeln!(out, "{data}")
            } else {
                match serde_json::from_str::<Value>(data) {
                    Ok(v) if v["type"] == "attached" => {
                        eprintln!("watching {base} (Ctrl-C to stop)");
                        Ok(())
                    }
                    Ok(v) => writeln!(out, "{}", describe(&v)),
                    Err(_) => writeln!(out, "{data}"),
                }
            };
            // A closed pipe (`warren monitor | head`) ends the command quietly.
            if written.and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One event as a line: time (UTC), node, app, what happened.
fn describe(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let kind = s("type");
    if kind == "dropped" {
        return format!(
            "-- {} events dropped: this monitor reads too slowly",
            v["count"]
        );
    }
    let ms = v["at_ms"].as_u64().unwrap_or(0);
    let day_ms = ms % 86_400_000;
    let time = format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    );
    let what = match kind.as_str() {
        "connection_opened" => format!("{} from {}", s("socket_id"), s("remote")),
        "connection_closed" => {
            let code = v["code"]
                .as_u64()
                .map(|c| format!(" {c}"))
                .unwrap_or_default();
            format!(
                "{} ({}{code}){}",
                s("socket_id"),
                s("reason"),
                traffic(&v["traffic"])
            )
        }
        "traffic" => format!("{}{}", s("socket_id"), traffic(&v["traffic"])),
        "subscribed" | "unsubscribed" => format!("{} {}", s("socket_id"), s("channel")),
        "api_publish" => format!("{} {} {}", s("channel"), s("event"), s("data")),
        "client_event" => format!(
            "{} {} {} from {}",
            s("channel"),
            s("event"),
            s("data"),
            s("socket_id")
        ),
        "member_added" | "member_removed" => format!("{} {}", s("channel"), s("user_id")),
        "webhook_sent" => format!("{} {} {}", s("url"), v["events"], v["status"]),
        _ => v.to_string(),
    };
    format!("{time} {} {} {kind} {what}", s("node"), s("app"))
}

fn traffic(t: &Value) -> String {
    if t.is_null() {
        return String::new();
    }
    format!(
        " in {} msgs/{} B, out {} msgs/{} B",
        t["messages_in"], t["bytes_in"], t["messages_out"], t["bytes_out"]
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::describe;

    #[test]
    fn a_line_per_event_with_utc_time_node_app_and_details() {
        let v = json!({"type":"api_publish","node":"n1","app":"a","at_ms":3_723_004u64,
            "channel":"orders","event":"created","data":"{}"});
        assert_eq!(
            describe(&v),
            "01:02:03.004 n1 a api_publish orders created {}"
        );
        let dropped = json!({"type":"dropped","count":3});
        assert!(describe(&dropped).contains("3 events dropped"));
    }
}
