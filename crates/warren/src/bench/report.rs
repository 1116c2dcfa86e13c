//! The summary: merged from every connection and thread, printed for people or as JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::publisher::Outcome;
use super::receiver::{histogram, ThreadResult};
use super::BenchArgs;

pub struct Inputs<'a> {
    pub args: &'a BenchArgs,
    pub nodes: usize,
    pub threads: usize,
    pub connect_elapsed: Duration,
    pub results: Vec<ThreadResult>,
    pub outcome: Outcome,
    /// Server RSS before and after connecting, bytes.
    pub rss: Option<(u64, u64)>,
    /// Server CPU ns before and after publishing (and draining).
    pub cpu: Option<(u64, u64)>,
    /// The same, of the server's webhook threads only.
    pub webhooks_cpu: Option<(u64, u64)>,
}

pub struct Summary {
    pub connections: usize,
    pub connected: usize,
    pub connect_failures: usize,
    pub first_connect_error: Option<String>,
    pub channels: usize,
    pub channel_kind: &'static str,
    pub nodes: usize,
    pub threads: usize,
    pub connect_elapsed: Duration,
    pub connect_time: Histogram<u64>,
    pub rate: f64,
    pub duration: f64,
    pub payload: usize,
    pub batch: usize,
    pub published: u64,
    pub publish_errors: u64,
    pub first_publish_error: Option<String>,
    pub publish_elapsed: Duration,
    /// Round trips of accepted publish requests, ns.
    pub publish_request_time: Histogram<u64>,
    pub expected: u64,
    pub received: u64,
    pub unique: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub unexpected: u64,
    pub dropped: u64,
    pub latency_sent: Histogram<u64>,
    pub latency_scheduled: Histogram<u64>,
    /// Deliveries per second, from the first publish to the last receipt.
    pub delivery_rate: f64,
    pub rss_per_connection: Option<f64>,
    pub rss: Option<(u64, u64)>,
    pub cpu_ns: Option<u64>,
    pub cpu_ns_per_delivery: Option<f64>,
    /// Of `cpu_ns`, what the webhook threads used.
    pub webhooks_cpu_ns: Option<u64>,
    /// `cpu_ns` less the webhook threads', per delivery: what delivery costs.
    pub cpu_ns_per_delivery_without_webhooks: Option<f64>,
}

impl Summary {
    pub fn build(inputs: Inputs<'_>) -> Self {
        let Inputs {
            args,
            nodes,
            threads,
            connect_elapsed,
            results,
            outcome,
            rss,
            cpu,
            webhooks_cpu,
        } = inputs;
        let mut s = Summary {
            connections: args.connections,
            connected: 0,
            connect_failures: 0,
            first_connect_error: None,
            channels: args.channels,
            channel_kind: args.channel_kind.name(),
            nodes,
            threads,
            connect_elapsed,
            connect_time: histogram(),
            rate: args.rate,
            duration: args.duration,
            payload: args.payload,
            batch: args.batch.map_or(1, usize::from),
            published: outcome.accepted.iter().sum(),
            publish_errors: outcome.errors,
            first_publish_error: outcome.first_error.clone(),
            publish_elapsed: outcome.elapsed,
            publish_request_time: outcome.request_time.clone(),
            expected: 0,
            received: 0,
            unique: 0,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            unexpected: 0,
            dropped: 0,
            latency_sent: histogram(),
            latency_scheduled: histogram(),
            delivery_rate: 0.0,
            rss_per_connection: None,
            rss,
            cpu_ns: None,
            cpu_ns_per_delivery: None,
            webhooks_cpu_ns: None,
            cpu_ns_per_delivery_without_webhooks: None,
        };
        let mut last_receipt = 0;
        for t in results {
            let _ = s.latency_sent.add(&t.latency_sent);
            let _ = s.latency_scheduled.add(&t.latency_scheduled);
            let _ = s.connect_time.add(&t.connect_time);
            last_receipt = last_receipt.max(t.last_receipt_ns);
            if s.first_connect_error.is_none() {
                s.first_connect_error = t.first_error;
            }
            for c in t.connections {
                if !c.connected {
                    s.connect_failures += 1;
                    continue;
                }
                s.connected += 1;
                let expected = outcome.accepted.get(c.channel).copied().unwrap_or(0);
                s.expected += expected;
                s.received += c.received;
                s.unique += c.unique;
                s.lost += expected.saturating_sub(c.unique);
                s.duplicates += c.duplicates;
                s.reordered += c.reordered;
                s.unexpected += c.unexpected;
                s.dropped += u64::from(c.dropped);
            }
        }
        if last_receipt > outcome.started_ns {
            let secs = (last_receipt - outcome.started_ns) as f64 / 1e9;
            s.delivery_rate = s.received as f64 / secs;
        }
        if let Some((before, after)) = rss {
            if s.connected > 0 {
                s.rss_per_connection = Some((after as f64 - before as f64) / s.connected as f64);
            }
        }
        if let Some((before, after)) = cpu {
            let used = after.saturating_sub(before);
            s.cpu_ns = Some(used);
            if s.received > 0 {
                s.cpu_ns_per_delivery = Some(used as f64 / s.received as f64);
            }
            if let Some((before, after)) = webhooks_cpu {
                let hooks = after.saturating_sub(before).min(used);
                s.webhooks_cpu_ns = Some(hooks);
                if s.received > 0 {
                    let rest = (used - hooks) as f64 / s.received as f64;
                    s.cpu_ns_per_delivery_without_webhooks = Some(rest);
                }
            }
        }
        s
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        line(format!(
            "warren bench: {} connections over {} {} channel{} on {} node{} ({} receiver thread{})",
            self.connections,
            self.channels,
            self.channel_kind,
            plural(self.channels),
            self.nodes,
            plural(self.nodes),
            self.threads,
            plural(self.threads),
        ));
        line(format!(
            "  connect     {} ok, {} failed in {:.2} s; per connection p50 {} p99 {} max {}",
            self.connected,
            self.connect_failures,
            self.connect_elapsed.as_secs_f64(),
            ns(self.connect_time.value_at_quantile(0.5)),
            ns(self.connect_time.value_at_quantile(0.99)),
            ns(self.connect_time.max()),
        ));
        if let Some(e) = &self.first_connect_error {
            line(format!("              first failure: {e}"));
        }
        line(format!(
            "  publish     {} events accepted, {} failed, at {}/s for {} s ({} B payload{}), took {:.2} s",
            self.published,
            self.publish_errors,
            self.rate,
            self.duration,
            self.payload,
            if self.batch > 1 {
                format!(", batches of {}", self.batch)
            } else {
                String::new()
            },
            self.publish_elapsed.as_secs_f64(),
        ));
        if let Some(e) = &self.first_publish_error {
            line(format!("              first failure: {e}"));
        }
        let rt = &self.publish_request_time;
        line(format!(
            "  requests    publish round trip  p50 {}  p90 {}  p99 {}  max {}",
            ns(rt.value_at_quantile(0.5)),
            ns(rt.value_at_quantile(0.9)),
            ns(rt.value_at_quantile(0.99)),
            ns(rt.max()),
        ));
        line(format!(
            "  deliveries  expected {}, received {}, lost {}, duplicates {}, reordered {}, unexpected {}, connections dropped {}",
            self.expected, self.received, self.lost, self.duplicates, self.reordered, self.unexpected, self.dropped
        ));
        for (what, h) in [
            ("from publish ", &self.latency_sent),
            ("from schedule", &self.latency_scheduled),
        ] {
            line(format!(
                "  latency {what}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                ns(h.value_at_quantile(0.5)),
                ns(h.value_at_quantile(0.9)),
                ns(h.value_at_quantile(0.99)),
                ns(h.value_at_quantile(0.999)),
                ns(h.max()),
            ));
        }
        line(format!(
            "  throughput  {:.0} deliveries/s",
            self.delivery_rate
        ));
        if let Some(per) = self.rss_per_connection {
            let (before, after) = self.rss.unwrap_or_default();
            line(format!(
                "  server RSS  {:.0} B per connection ({:.1} MiB -> {:.1} MiB)",
                per,
                before as f64 / 1048576.0,
                after as f64 / 1048576.0
            ));
        }
        if let Some(cpu) = self.cpu_ns {
            line(format!(
                "  server CPU  {:.2} s over publish + drain, {} per delivered message",
                cpu as f64 / 1e9,
                self.cpu_ns_per_delivery
                    .map_or("-".to_owned(), |n| ns(n.round() as u64)),
            ));
        }
        if let (Some(hooks), Some(rest)) = (
            self.webhooks_cpu_ns.filter(|n| *n > 0),
            self.cpu_ns_per_delivery_without_webhooks,
        ) {
            line(format!(
                "  of which    {:.2} s on the webhook threads; the rest is {} per delivered message",
                hooks as f64 / 1e9,
                ns(rest.round() as u64),
            ));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let quantiles = |h: &Histogram<u64>| {
            json!({
                "p50_ns": h.value_at_quantile(0.5),
                "p90_ns": h.value_at_quantile(0.9),
                "p99_ns": h.value_at_quantile(0.99),
                "p999_ns": h.value_at_quantile(0.999),
                "max_ns": h.max(),
                "count": h.len(),
            })
        };
        json!({
            "connections": {
                "requested": self.connections,
                "connected": self.connected,
                "failed": self.connect_failures,
                "first_error": self.first_connect_error,
                "total_s": self.connect_elapsed.as_secs_f64(),
                "p50_ns": self.connect_time.value_at_quantile(0.5),
                "p99_ns": self.connect_time.value_at_quantile(0.99),
                "max_ns": self.connect_time.max(),
            },
            "channels": self.channels,
            "channel_kind": self.channel_kind,
            "nodes": self.nodes,
            "threads": self.threads,
            "publish": {
                "rate": self.rate,
                "duration_s": self.duration,
                "payload_bytes": self.payload,
                "batch": self.batch,
                "accepted": self.published,
                "errors": self.publish_errors,
                "first_error": self.first_publish_error,
                "elapsed_s": self.publish_elapsed.as_secs_f64(),
                "request_time": quantiles(&self.publish_request_time),
            },
            "deliveries": {
                "expected": self.expected,
                "received": self.received,
                "unique": self.unique,
                "lost": self.lost,
                "duplicates": self.duplicates,
                "reordered": self.reordered,
                "unexpected": self.unexpected,
                "dropped_connections": self.dropped,
                "per_second": self.delivery_rate,
            },
            "latency_from_publish": quantiles(&self.latency_sent),
            "latency_from_schedule": quantiles(&self.latency_scheduled),
            "server": {
                "rss_before_bytes": self.rss.map(|r| r.0),
                "rss_after_bytes": self.rss.map(|r| r.1),
                "rss_per_connection_bytes": self.rss_per_connection,
                "cpu_ns": self.cpu_ns,
                "cpu_ns_per_delivery": self.cpu_ns_per_delivery,
                "webhooks_cpu_ns": self.webhooks_cpu_ns,
                "cpu_ns_per_delivery_without_webhooks": self.cpu_ns_per_delivery_without_webhooks,
            },
        })
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A duration in ns, shown with a fitting unit.
fn ns(v: u64) -> String {
    match v {
        0..=999 => format!("{v} ns"),
        1_000..=999_999 => format!("{:.1} µs", v as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", v as f64 / 1e6),
        _ => format!("{:.2} s", v as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::ns;

    #[test]
    fn units() {
        assert_eq!(ns(999), "999 ns");
        assert_eq!(ns(12_345), "12.3 µs");
        assert_eq!(ns(1_801_234), "1.80 ms");
        assert_eq!(ns(12_345_678), "12.35 ms");
        assert_eq!(ns(12_345_678_901), "12.35 s");
    }
}
