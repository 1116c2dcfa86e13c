//! The publishing side: events at a fixed rate through the signed HTTP API, several requests
//! in flight, round-robin over the channels.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use warren_client::{ApiRequest, BatchEvent, Client, TriggerOptions};

use super::receiver::{histogram, now_ns};
use super::scan::{event_data, EVENT};

pub struct Plan {
    pub channels: Arc<Vec<String>>,
    pub rate: f64,
    pub total: u64,
    pub batch: usize,
    pub payload: usize,
    pub in_flight: usize,
}

/// Counters the progress line reads while publishing runs.
#[derive(Default)]
pub struct Progress {
    pub published: AtomicU64,
    pub errors: AtomicU64,
    pub in_flight: AtomicU64,
}

pub struct Outcome {
    /// Events accepted by the server, per channel.
    pub accepted: Vec<u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// When publishing started, in ns since the Unix epoch.
    pub started_ns: u64,
    /// Round trip of each accepted request, request sent to answer read (ns): how long the
    /// server takes to accept a publish, which bounds the accepted rate at a given in-flight
    /// limit.
    pub request_time: Histogram<u64>,
}

/// Event `k` goes to channel `k % C` with sequence number `k / C` and is due at
/// `start + k / rate`.
pub async fn publish(client: Client, plan: Plan, progress: Arc<Progress>) -> Outcome {
    let channels = plan.channels.len().max(1);
    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new((0..channels).map(|_| AtomicU64::new(0)).collect());
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let request_time = Arc::new(Mutex::new(histogram()));
    let limit = Arc::new(Semaphore::new(plan.in_flight.max(1)));
    let start = Instant::now();
    let started_ns = now_ns();
    let ns_per_event = 1e9 / plan.rate;
    let batch = plan.batch.max(1) as u64;
    let mut k = 0u64;
    while k < plan.total {
        let group: Vec<u64> = (k..(k + batch).min(plan.total)).collect();
        k += group.len() as u64;
        let last = group[group.len() - 1];
        let due_offset = Duration::from_nanos((last as f64 * ns_per_event) as u64);
        tokio::time::sleep_until(start + due_offset).await;
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let client = client.clone();
        let channels_list = plan.channels.clone();
        let accepted = accepted.clone();
        let progress = progress.clone();
        let first_error = first_error.clone();
        let request_time = request_time.clone();
        let payload = plan.payload;
        progress.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let sent = now_ns();
            let events: Vec<(usize, String)> = group
                .iter()
                .map(|&k| {
                    let channel = (k % channels as u64) as usize;
                    let seq = k / channels as u64;
                    let scheduled = started_ns + (k as f64 * ns_per_event) as u64;
                    (channel, event_data(seq, scheduled, sent, payload))
                })
                .collect();
            let result = if events.len() == 1 && batch == 1 {
                let (channel, data) = &events[0];
                match ApiRequest::trigger(
                    [channels_list[*channel].as_str()],
                    EVENT,
                    data.as_str(),
                    &TriggerOptions::default(),
                ) {
                    Ok(request) => client.execute(&request).await.map(drop),
                    Err(e) => Err(e),
                }
            } else {
                let batch: Vec<BatchEvent> = events
                    .iter()
                    .map(|(channel, data)| BatchEvent {
                        channel: channels_list[*channel].clone(),
                        name: EVENT.to_owned(),
                        data: data.clone(),
                        socket_id: None,
                        info: Vec::new(),
                    })
                    .collect();
                client.trigger_batch(batch).await.map(drop)
            };
            match result {
                Ok(()) => {
                    if let Ok(mut h) = request_time.lock() {
                        let _ = h.record(now_ns().saturating_sub(sent).max(1));
                    }
                    for (channel, _) in &events {
                        accepted[*channel].fetch_add(1, Ordering::Relaxed);
                    }
                    progress
                        .published
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    progress
                        .errors
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    if let Ok(mut first) = first_error.lock() {
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            progress.in_flight.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    // Wait for the requests still in flight.
    let _ = limit.acquire_many(plan.in_flight.max(1) as u32).await;
    let elapsed = start.elapsed();
    Outcome {
        accepted: accepted.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
        errors: progress.errors.load(Ordering::Relaxed),
        first_error: first_error.lock().ok().and_then(|f| f.clone()),
        elapsed,
        started_ns,
        request_time: request_time
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram()),
    }
}
