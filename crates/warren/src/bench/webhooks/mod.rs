//! `warren bench-webhooks`: presence churn at a fixed rate against one or more nodes whose
//! app sends its webhooks to this process, and a report of what arrived: throughput, lost and
//! duplicated events, and the latency from each join or leave to the request announcing it.
//!
//! The servers must be configured to send the app's webhooks to `--listen` (see
//! `bench/webhooks.sh`), and `--removal-delay-ms` must match their `delay_removal_ms`: it is
//! taken off the removals' latency, which measures the rest.

mod churn;
mod ledger;
mod receiver;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use tokio::sync::watch;

use churn::{Churn, Member};
use ledger::{Ledger, Tally};

#[derive(Args, Debug)]
pub struct WebhookBenchArgs {
    /// Server URL (http://HOST:PORT); repeat to spread the connections over several nodes.
    #[arg(long = "url", value_name = "URL", required = true)]
    urls: Vec<String>,
    /// The app's key.
    #[arg(long, default_value = warren_server::config::DEMO_APP_KEY)]
    key: String,
    /// The app's secret (signs the subscriptions, checks the webhooks' signatures).
    #[arg(long, default_value = warren_server::config::DEMO_APP_SECRET)]
    secret: String,
    /// Where the webhook receiver listens: the address the servers send the app's webhooks to.
    #[arg(long, default_value = "127.0.0.1:6010", value_name = "ADDR")]
    listen: String,
    /// Connections taking turns to join and leave.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Presence channels they are spread over.
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// Joins plus leaves per second, in total.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Seconds of churn.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// The servers' `webhooks.delay_removal_ms`.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    removal_delay_ms: u64,
    /// Milliseconds to wait for webhooks after the last leave, beyond the removal delay.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    drain_ms: u64,
    /// Pid of a server on this machine (repeat for each node): report CPU per webhook event.
    #[arg(long = "server-pid", value_name = "PID")]
    server_pids: Vec<u32>,
    /// Exit 0 even when webhooks were lost or duplicated.
    #[arg(long)]
    allow_loss: bool,
}

pub fn run(args: WebhookBenchArgs) -> ExitCode {
    let valid = args.connections > 0
        && args.channels > 0
        && args.rate.is_finite()
        && args.rate > 0.0
        && args.duration.is_finite()
        && args.duration > 0.0;
    if !valid {
        eprintln!("error: --connections, --channels, --rate and --duration must be positive");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime
        .map_err(|e| e.to_string())
        .and_then(|r| r.block_on(bench(args)))
    {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

async fn bench(args: WebhookBenchArgs) -> Result<ExitCode, String> {
    crate::system::raise_nofile_limit().map_err(|e| format!("open files limit: {e}"))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let ledger = Arc::new(Ledger::new(Duration::from_millis(args.removal_delay_ms)));
    receiver::spawn(listener, Arc::from(args.secret.as_str()), ledger.clone());

    let mut ws_urls = Vec::new();
    for url in &args.urls {
        ws_urls.push(super::resolve(url, &args.key).await?.1);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let churn = Arc::new(Churn {
        key: args.key.clone(),
        secret: args.secret.clone(),
        run: format!("r{}x{}", std::process::id(), rand_suffix()),
        ledger: ledger.clone(),
        stop: stop_rx,
        connected: AtomicU64::new(0),
        succeeded: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    // Every connection makes `rate / connections` transitions a second, their beats spread
    // evenly over one period so the total rate is smooth; a second to connect first.
    let period = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let start = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut tasks = Vec::with_capacity(args.connections);
    for index in 0..args.connections {
        let member = Member {
            index,
            ws_url: ws_urls[index % ws_urls.len()].to_string(),
            channel: format!("presence-hooks-{}", index % args.channels),
            period,
            first: start + period.mul_f64(index as f64 / args.connections as f64),
        };
        tasks.push(tokio::spawn(churn::run(churn.clone(), member)));
    }
    tokio::time::sleep_until(start).await;
    let cpu_before = crate::system::total(&args.server_pids, crate::system::cpu_ns);
    let hooks_cpu =
        || crate::system::total(&args.server_pids, crate::system::webhook_threads_cpu_ns);
    let hooks_cpu_before = hooks_cpu();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let _ = stop_tx.send(true);
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(e.to_string()),
        }
    }
    tokio::time::sleep(Duration::from_millis(args.removal_delay_ms + args.drain_ms)).await;
    let cpu_after = crate::system::total(&args.server_pids, crate::system::cpu_ns);
    let hooks_cpu_after = hooks_cpu();

    let tally = ledger.tally();
    let connected = churn.connected.load(Ordering::Relaxed);
    println!(
        "churn: {connected}/{} connections over {} nodes, {} presence channels, {} joins + {} \
         leaves in {:.1} s ({:.0}/s); {} subscriptions succeeded, {} refused",
        args.connections,
        args.urls.len(),
        args.channels,
        tally.joins,
        tally.leaves,
        args.duration,
        (tally.joins + tally.leaves) as f64 / args.duration,
        churn.succeeded.load(Ordering::Relaxed),
        churn.errors.load(Ordering::Relaxed),
    );
    if let Some(first) = failures.first() {
        println!("connections failed: {} (first: {first})", failures.len());
    }
    print_tally(&tally);
    if let Some((before, after)) = cpu_before.zip(cpu_after) {
        let cpu = Duration::from_nanos(after.saturating_sub(before));
        println!(
            "server CPU: {:.2} s in all, {:.1} µs per transition (join or leave, its presence \
             work and its webhook)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / (tally.joins + tally.leaves).max(1) as f64
        );
        let hooks = hooks_cpu_before.zip(hooks_cpu_after);
        if let Some(hooks) = hooks.map(|(b, a)| Duration::from_nanos(a.saturating_sub(b))) {
            println!(
                "  of which the webhook threads (markers, queues, requests): {:.2} s, {:.1} µs \
                 per webhook event received",
                hooks.as_secs_f64(),
                hooks.as_secs_f64() * 1e6 / tally.events.max(1) as f64
            );
        }
    }
    // Every channel ends empty: each one occupied must have been vacated once.
    let count = |name: &str| {
        let found = tally.other_events.iter().find(|(n, _)| n == name);
        found.map_or(0, |(_, c)| *c)
    };
    let balanced = count("channel_occupied") == count("channel_vacated");
    if !balanced {
        println!("channel_occupied and channel_vacated do not pair up: a removal flapped");
    }
    let clean = balanced
        && tally.missing_added == 0
        && tally.missing_removed == 0
        && tally.duplicates == 0
        && tally.bad_signatures == 0
        && failures.is_empty();
    Ok(if clean || args.allow_loss {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_tally(t: &Tally) {
    let per_sec = |n: u64| n as f64 / t.span.as_secs_f64().max(1e-3);
    println!(
        "webhooks: {} events in {} requests ({:.1} per request), {:.0} events/s while they came; \
         {} bad signatures",
        t.events,
        t.requests,
        t.events as f64 / t.requests.max(1) as f64,
        per_sec(t.events),
        t.bad_signatures,
    );
    let others: Vec<String> = t
        .other_events
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    println!(
        "  member_added {} (missing {}), member_removed {} (missing {}), duplicates {}, \
         unknown users {}; {}",
        t.added,
        t.missing_added,
        t.removed,
        t.missing_removed,
        t.duplicates,
        t.unknown,
        if others.is_empty() {
            "no other events".to_owned()
        } else {
            others.join(", ")
        },
    );
    print_latency("join -> member_added POST", &t.added_latency);
    print_latency(
        "leave -> member_removed POST, beyond the removal delay",
        &t.removed_latency,
    );
}

fn print_latency(what: &str, h: &Histogram<u64>) {
    if h.is_empty() {
        println!("  latency {what}: no samples");
        return;
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  latency {what}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}
