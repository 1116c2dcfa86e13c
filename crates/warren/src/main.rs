//! `warren`: the push server and its tools. Thin by design: parse arguments, call the libraries.

mod api_commands;
mod apps_command;
mod bench;
mod logging;
mod monitor;
mod reload;
mod system;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use warren_server::config::{AppsBackend, LogFormat};
use warren_server::{Config, Server};

/// The version and the commit it was built from (`build.rs`), as `--version` prints them.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("WARREN_COMMIT"), ")");

#[derive(Parser)]
#[command(
    name = "warren",
    version = VERSION,
    about = "A Pusher Channels compatible push server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Options of `serve`, accepted without the subcommand too (`warren --port 7001`).
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    #[command(flatten)]
    Api(api_commands::ApiCommand),
    /// Load generator and delivery check: N connections, events at a fixed rate, a report.
    Bench(Box<bench::BenchArgs>),
    /// Webhook load: presence joins and leaves at a fixed rate, the webhooks they cause
    /// received here, and a report of their throughput, loss and latency.
    BenchWebhooks(Box<bench::webhooks::WebhookBenchArgs>),
    /// Manage the apps in PostgreSQL ([apps_source] url): list, add, set, remove,
    /// rotate-secret, migrate.
    #[command(subcommand)]
    Apps(apps_command::AppsCommand),
    /// Show what happens on the server (or the cluster) live: connections, subscriptions,
    /// publishes, client events, presence changes.
    Monitor(monitor::MonitorArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file (with WARREN_* overrides applied) and exit.
    Check { file: PathBuf },
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// TOML configuration file; without one, the demo app on 127.0.0.1:6001.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides server.host); API commands call the server there.
    #[arg(long, global = true)]
    host: Option<String>,
    /// Port to listen on (overrides server.port); API commands call the server there.
    #[arg(long, short, global = true)]
    port: Option<u16>,
    /// The server's log format, `text` or `json` (overrides log.format).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Config(ConfigCommand::Check { file })) => config_check(&file),
        Some(Command::Serve(args)) => serve(merge(args, cli.serve)),
        Some(Command::Api(command)) => api_commands::run(
            command,
            api_commands::ServerSource {
                config: cli.serve.config,
                host: cli.serve.host,
                port: cli.serve.port,
            },
        ),
        Some(Command::Monitor(args)) => monitor::run(
            args,
            api_commands::ServerSource {
                config: cli.serve.config,
                host: cli.serve.host,
                port: cli.serve.port,
            },
        ),
        Some(Command::Bench(args)) => bench::run(
            *args,
            api_commands::ServerSource {
                config: cli.serve.config,
                host: cli.serve.host,
                port: cli.serve.port,
            },
        ),
        Some(Command::BenchWebhooks(args)) => bench::webhooks::run(*args),
        Some(Command::Apps(command)) => apps_command::run(command, cli.serve.config),
        None => serve(cli.serve),
    }
}

/// Flags given before the subcommand still count (`warren --port 1 serve`).
fn merge(a: ServeArgs, b: ServeArgs) -> ServeArgs {
    ServeArgs {
        config: a.config.or(b.config),
        host: a.host.or(b.host),
        port: a.port.or(b.port),
        log_format: a.log_format.or(b.log_format),
    }
}

fn config_check(file: &std::path::Path) -> ExitCode {
    match Config::load(Some(file), env_vars()) {
        Ok(cfg) => {
            let apps = if apps_from_file(&cfg) {
                let s = if cfg.apps.len() == 1 { "" } else { "s" };
                format!("{} app{s}", cfg.apps.len())
            } else {
                "apps from PostgreSQL".to_owned()
            };
            println!(
                "{}: ok ({apps}, listening on {}:{})",
                file.display(),
                cfg.server.host,
                cfg.server.port
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The environment as UTF-8 pairs; a variable that is not valid UTF-8 cannot be a WARREN_ key.
pub(crate) fn env_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match Config::load(args.config.as_deref(), env_vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let log_format = args.log_format.unwrap_or(config.log.format);
    // What is in force: a reload compares the file's format with it, flag applied.
    config.log.format = log_format;
    let log_level = match logging::init(&config.log, log_format) {
        Ok(control) => control,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Every connection is a file descriptor: use all the operating system allows.
    match system::raise_nofile_limit() {
        Ok(limit) if limit < 4096 => tracing::warn!(
            limit,
            "the open-files limit caps connections; raise the hard limit (ulimit -Hn)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
    if let Some(host) = args.host.clone() {
        config.server.host = host;
    }
    if let Some(port) = args.port {
        config.server.port = port;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            logging::fatal(log_format, &format!("cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match Server::bind(config.clone()).await {
            Ok(s) => s,
            Err(e) => {
                logging::fatal(log_format, &format!("cannot start: {e:#}"));
                return ExitCode::FAILURE;
            }
        };
        let addr = match server.local_addr() {
            Ok(a) => a,
            Err(e) => {
                logging::fatal(log_format, &format!("cannot read the bound address: {e}"));
                return ExitCode::FAILURE;
            }
        };
        let handle = server.shutdown_handle();
        let (host, port, format) = (args.host.clone(), args.port, args.log_format);
        let reloader = server.reloader();
        reloader.follow_log_level(move |level| log_level.apply(level));
        reload::on_sighup(reload::OnHangup {
            tls: server.tls_reloader(),
            config: reloader,
            file: args.config.clone(),
            overrides: Box::new(move |config| {
                if let Some(host) = &host {
                    config.server.host = host.clone();
                }
                if let Some(port) = port {
                    config.server.port = port;
                }
                if let Some(format) = format {
                    config.log.format = format;
                }
            }),
        });
        // After the SIGHUP handler: whoever waits for the banner may send one at once.
        match log_format {
            LogFormat::Text => print_banner(&config, addr, server.node_id()),
            LogFormat::Json => logging::json_banner(&config, addr, server.node_id(), VERSION),
        }
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: closing connections with 4200");
            handle.shutdown();
        });
        // Returns once connections have closed (4200) and left their channels.
        server.run().await;
        ExitCode::SUCCESS
    })
}

fn print_banner(config: &Config, addr: std::net::SocketAddr, node_id: &str) {
    println!("Warren {VERSION} listening on {addr}");
    let s = if config.server.tls.is_some() { "s" } else { "" };
    println!("  WebSocket: ws{s}://{addr}/app/<key>?protocol=7    HTTP: http{s}://{addr}/");
    let cluster = &config.cluster;
    let at = |part: &warren_server::config::PartTarget| match part.shown() {
        shown if shown.is_empty() => part.backend.to_string(),
        shown => format!("{} at {shown}", part.backend),
    };
    let backend = if cluster.is_split() {
        let (fanout, state) = (cluster.fanout_target(), cluster.state_target());
        format!("fan-out {}, state {}", at(&fanout), at(&state))
    } else {
        at(&cluster.state_target())
    };
    println!(
        "  node {node_id}, role {}, cluster backend {backend}",
        config.server.role,
    );
    if let (AppsBackend::Postgres, Some(url)) =
        (config.apps_source.backend, &config.apps_source.url)
    {
        println!(
            "  apps from PostgreSQL at {url}, table {}",
            config.apps_source.table
        );
    }
    for app in config.apps.iter().filter(|_| apps_from_file(config)) {
        // The demo secret is public knowledge; a real one is never written to logs.
        let secret = if app.secret == warren_server::config::DEMO_APP_SECRET {
            app.secret.as_str()
        } else {
            "<hidden>"
        };
        println!(
            "  app id={} key={} secret={secret} client_events={} enabled={}",
            app.id, app.key, app.client_events, app.enabled
        );
    }
    if config.uses_demo_secret() {
        println!(
            "  WARNING: an app uses the demo secret \"app-secret\". Anyone can sign requests for it;\n  \
             set real credentials in a config file (--config) or WARREN_APPS__0__SECRET before exposing this server."
        );
    }
}

/// Whether the apps are the file's `[[apps]]` (else they come from PostgreSQL).
pub(crate) fn apps_from_file(config: &Config) -> bool {
    config.apps_source.backend == AppsBackend::Config
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
