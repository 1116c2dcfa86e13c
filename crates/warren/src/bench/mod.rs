//! `warren bench`: a load generator and end-to-end correctness check.
//!
//! Opens N WebSocket connections over C channels (optionally over several server nodes and
//! several loopback source addresses), publishes events at a fixed rate through the signed
//! HTTP API, and reports connect times, deliveries (lost, duplicated, reordered), latency
//! from publish and from the schedule, throughput and, given the server's pid, its memory
//! per connection and CPU per delivered message.

mod publisher;
mod receiver;
mod report;
mod scan;
pub mod webhooks;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tokio::sync::{watch, Semaphore};
use warren_client::{Client, ClientConfig};

use crate::api_commands::ServerSource;
use receiver::{ConnSpec, Shared};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelKind {
    Public,
    Private,
    Presence,
}

impl ChannelKind {
    fn prefix(self) -> &'static str {
        match self {
            ChannelKind::Public => "",
            ChannelKind::Private => "private-",
            ChannelKind::Presence => "presence-",
        }
    }

    fn name(self) -> &'static str {
        match self {
            ChannelKind::Public => "public",
            ChannelKind::Private => "private",
            ChannelKind::Presence => "presence",
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Server URL (http://HOST:PORT or ws://HOST:PORT); repeat to spread the connections
    /// round-robin over several nodes. Default: from the configuration (server.host/port).
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
    /// URL of the HTTP API to publish through (default: the first --url).
    #[arg(long, value_name = "URL")]
    publish_url: Option<String>,
    /// App id (default: the first app of the configuration).
    #[arg(long)]
    app: Option<String>,
    /// App key (default: the selected app's key from the configuration).
    #[arg(long)]
    key: Option<String>,
    /// App secret (default: the selected app's secret from the configuration).
    #[arg(long)]
    secret: Option<String>,
    /// WebSocket connections to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Channels the connections are spread over (connection i joins channel i mod C).
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// Kind of channel; private and presence subscriptions are signed locally.
    #[arg(long, value_enum, default_value_t = ChannelKind::Public)]
    channel_kind: ChannelKind,
    /// Channel names are <kind prefix><this>-<i>.
    #[arg(long, default_value = "bench")]
    channel_prefix: String,
    /// Loopback source addresses to bind connections to, round-robin (e.g.
    /// 127.0.0.1,127.0.0.2): about 28k connections fit per source address.
    #[arg(long, value_delimiter = ',', value_name = "IPS")]
    source_ips: Vec<IpAddr>,
    /// Connection attempts in progress at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds allowed for one connection (TCP, handshake, subscription).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    connect_timeout: u64,
    /// Events published per second (in total, spread round-robin over the channels).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Publish through batch_events with up to this many events per request (1-10).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=10))]
    batch: Option<u16>,
    /// Size of each event's data string in bytes (at least the ~60 bytes of sequence number
    /// and timestamps).
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    payload: usize,
    /// HTTP requests in flight at most.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Milliseconds to wait after publishing for deliveries still in flight.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    drain_ms: u64,
    /// Pid of a server on this machine: report its memory per connection and CPU per
    /// delivered message (from /proc). Repeat for the nodes of a cluster: their figures add up.
    #[arg(long = "server-pid", value_name = "PID")]
    server_pids: Vec<u32>,
    /// Receiver threads (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Exit 0 even when deliveries were lost or duplicated, or connections or publishes
    /// failed.
    #[arg(long)]
    allow_loss: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

/// File descriptors needed besides the connections (runtime, HTTP pool, stdio...).
const FD_MARGIN: u64 = 64;

pub fn run(args: BenchArgs, source: ServerSource) -> ExitCode {
    match execute(args, source) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

struct Target {
    urls: Vec<String>,
    publish_url: String,
    app_id: String,
    key: String,
    secret: String,
}

fn target(args: &BenchArgs, source: &ServerSource) -> Result<Target, String> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let config = warren_server::Config::load(source.config.as_deref(), env)
        .map_err(|e| format!("cannot load the configuration: {e}"))?;
    let app_id = match &args.app {
        Some(id) => id.clone(),
        None => config
            .apps
            .first()
            .map(|a| a.id.to_string())
            .ok_or("the configuration has no app; pass --app, --key and --secret")?,
    };
    let app = config.apps.iter().find(|a| a.id.as_str() == app_id);
    let key = args
        .key
        .clone()
        .or_else(|| app.map(|a| a.key.to_string()))
        .ok_or_else(|| {
            format!("app {app_id:?} is not in the configuration: pass --key and --secret")
        })?;
    let secret = args
        .secret
        .clone()
        .or_else(|| app.map(|a| a.secret.clone()))
        .ok_or_else(|| {
            format!("app {app_id:?} is not in the configuration: pass --key and --secret")
        })?;
    let urls = if args.urls.is_empty() {
        vec![default_url(
            source.host.as_deref().unwrap_or(&config.server.host),
            source.port.unwrap_or(config.server.port),
        )?]
    } else {
        args.urls.clone()
    };
    let publish_url = args.publish_url.clone().unwrap_or_else(|| urls[0].clone());
    Ok(Target {
        urls,
        publish_url: http_url(&publish_url),
        app_id,
        key,
        secret,
    })
}

/// `http://host:port` of a listen address; wildcard addresses become loopback.
fn default_url(host: &str, port: u16) -> Result<String, String> {
    if port == 0 {
        return Err("server.port is 0: pass --url http://HOST:PORT".into());
    }
    let host = match host.trim() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_owned(),
    };
    Ok(format!("http://{host}:{port}"))
}

/// `http://` form of a server URL (for the API).
fn http_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else {
        url.to_owned()
    }
}

/// The socket address and WebSocket URL of a server URL.
async fn resolve(url: &str, key: &str) -> Result<(SocketAddr, Arc<str>), String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| format!("{url}: only http:// and ws:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let has_port = match hostport.rsplit_once(':') {
        Some((h, p)) => p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')),
        None => false,
    };
    let hostport_with_port = if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:80")
    };
    let addr = tokio::net::lookup_host(&hostport_with_port)
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let ws = format!(
        "ws://{hostport}{path}/app/{key}?protocol=7&client=warren-bench&version={}&flash=false",
        env!("CARGO_PKG_VERSION")
    );
    Ok((addr, Arc::from(ws)))
}

fn execute(args: BenchArgs, source: ServerSource) -> Result<ExitCode, String> {
    if args.connections == 0 || args.channels == 0 {
        return Err("--connections and --channels must be at least 1".into());
    }
    let rate_ok = args.rate > 0.0 && args.rate.is_finite();
    let duration_ok = args.duration >= 0.0 && args.duration.is_finite();
    if !rate_ok || !duration_ok {
        return Err("--rate must be positive and --duration non-negative".into());
    }
    let target = target(&args, &source)?;
    let limit = crate::system::raise_nofile_limit()
        .map_err(|e| format!("cannot read the open files limit: {e}"))?;
    let needed = args.connections as u64 + args.in_flight as u64 + FD_MARGIN;
    if needed > limit {
        return Err(format!(
            "{} connections need about {needed} open files, but this process may open {limit} \
             (the hard RLIMIT_NOFILE); use fewer --connections, or raise the hard limit \
             (ulimit -Hn, /etc/security/limits.conf, LimitNOFILE=) and run again. The server \
             needs as many on its side.",
            args.connections
        ));
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, 256);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(bench(args, target, threads))
}

async fn bench(args: BenchArgs, target: Target, threads: usize) -> Result<ExitCode, String> {
    let mut nodes = Vec::new();
    for url in &target.urls {
        nodes.push(resolve(url, &target.key).await?);
    }
    let api = Client::new(
        ClientConfig::new(
            target.publish_url.clone(),
            target.app_id.clone(),
            target.key.clone(),
            target.secret.clone(),
        )
        .with_timeout(Duration::from_secs(10)),
    )
    .map_err(|e| e.to_string())?;
    let channels: Vec<String> = (0..args.channels)
        .map(|i| format!("{}{}-{i}", args.channel_kind.prefix(), args.channel_prefix))
        .collect();
    for c in &channels {
        warren_protocol::ChannelName::parse(c, warren_protocol::names::MAX_CHANNEL_NAME_LENGTH)
            .map_err(|e| format!("--channel-prefix gives an invalid channel name: {e}"))?;
    }
    let total_events = (args.rate * args.duration).round() as u64;
    let max_seq = total_events.div_ceil(args.channels as u64) + 1;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        key: target.key.clone(),
        secret: target.secret.clone(),
        kind: args.channel_kind,
        channels: channels.clone(),
        max_seq,
        connect_timeout: Duration::from_secs(args.connect_timeout.max(1)),
        connect_limit: Semaphore::new(args.connect_concurrency.max(1)),
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        received: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        stop: stop_rx,
    });
    let rss_before = crate::system::total(&args.server_pids, crate::system::rss_bytes);

    // Connect.
    let mut per_thread: Vec<Vec<ConnSpec>> = vec![Vec::new(); threads];
    for i in 0..args.connections {
        let (addr, url) = &nodes[i % nodes.len()];
        per_thread[i % threads].push(ConnSpec {
            index: i,
            url: url.clone(),
            addr: *addr,
            source: (!args.source_ips.is_empty())
                .then(|| args.source_ips[i % args.source_ips.len()]),
            channel: i % args.channels,
        });
    }
    let connect_start = Instant::now();
    let mut handles = Vec::new();
    for (t, specs) in per_thread.into_iter().enumerate() {
        let shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("bench-rx-{t}"))
            .spawn(move || receiver::run_thread(t, specs, shared))
            .map_err(|e| format!("cannot start a receiver thread: {e}"))?;
        handles.push(handle);
    }
    let progress = Arc::new(publisher::Progress::default());
    let show = |phase: &str, since: Instant| {
        if args.quiet {
            return;
        }
        let received: u64 = shared
            .received
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum();
        eprintln!(
            "[{phase} {:>4.0}s] connected {}/{} ({} failed)  published {} ({} errors, {} in flight)  received {}",
            since.elapsed().as_secs_f64(),
            shared.connected.load(Ordering::Relaxed),
            args.connections,
            shared.failed.load(Ordering::Relaxed),
            progress.published.load(Ordering::Relaxed),
            progress.errors.load(Ordering::Relaxed),
            progress.in_flight.load(Ordering::Relaxed),
            received,
        );
    };
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        let done = shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed);
        if done >= args.connections {
            break;
        }
        tokio::select! {
            _ = tick.tick() => show("connect", connect_start),
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    let connect_elapsed = connect_start.elapsed();
    show("connect", connect_start);
    // Let the server settle its memory accounting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = crate::system::total(&args.server_pids, crate::system::rss_bytes);

    // Publish.
    let cpu_before = crate::system::total(&args.server_pids, crate::system::cpu_ns);
    let hooks_cpu =
        || crate::system::total(&args.server_pids, crate::system::webhook_threads_cpu_ns);
    let webhooks_cpu_before = hooks_cpu();
    let plan = publisher::Plan {
        channels: Arc::new(channels.clone()),
        rate: args.rate,
        total: total_events,
        batch: args.batch.map_or(1, usize::from),
        payload: args.payload,
        in_flight: args.in_flight,
    };
    let publish_start = Instant::now();
    let publishing = publisher::publish(api, plan, progress.clone());
    tokio::pin!(publishing);
    let outcome = loop {
        tokio::select! {
            outcome = &mut publishing => break outcome,
            _ = tick.tick() => show("publish", publish_start),
        }
    };
    // Drain.
    let drain_until = tokio::time::Instant::now() + Duration::from_millis(args.drain_ms);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(drain_until) => break,
            _ = tick.tick() => show("drain", publish_start),
        }
    }
    let cpu_after = crate::system::total(&args.server_pids, crate::system::cpu_ns);
    let webhooks_cpu_after = hooks_cpu();
    let _ = stop_tx.send(true);
    let mut results = Vec::new();
    for h in handles {
        match tokio::task::spawn_blocking(move || h.join()).await {
            Ok(Ok(r)) => results.push(r),
            _ => return Err("a receiver thread panicked".into()),
        }
    }
    show("done", publish_start);

    let summary = report::Summary::build(report::Inputs {
        args: &args,
        nodes: target.urls.len(),
        threads,
        connect_elapsed,
        results,
        outcome,
        rss: rss_before.zip(rss_after),
        cpu: cpu_before.zip(cpu_after),
        webhooks_cpu: webhooks_cpu_before.zip(webhooks_cpu_after),
    });
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.to_text());
    }
    let failed = summary.lost > 0
        || summary.duplicates > 0
        || summary.connect_failures > 0
        || summary.publish_errors > 0
        || summary.dropped > 0;
    if failed && !args.allow_loss {
        eprintln!(
            "FAILED: {} lost, {} duplicated, {} connections failed, {} dropped, {} publish errors (--allow-loss to exit 0)",
            summary.lost, summary.duplicates, summary.connect_failures, summary.dropped, summary.publish_errors
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
