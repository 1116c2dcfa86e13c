//! The delivery path's hot parts: building and framing one event, and handing it to N local
//! subscribers through the hub (what a publish costs before the kernel's writes).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use warren_protocol::{outbound, AppId, ChannelName, SocketId};
use warren_server::bench_internals::{frame, Hub, Outbox};

fn build_frame(c: &mut Criterion) {
    let data = format!(r#"{{"seq":1,"payload":"{}"}}"#, "x".repeat(48));
    c.bench_function("event json + frame (64 B data)", |b| {
        b.iter(|| {
            let json = outbound::channel_event("my-event", "my-channel", black_box(&data), None);
            frame::text(json.as_bytes())
        })
    });
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub deliver");
    for n in [1usize, 100, 10_000] {
        let hub = Hub::new();
        let app = AppId::parse("app").expect("app id");
        let channel = ChannelName::parse("bench", 200).expect("channel");
        let outboxes: Vec<Arc<Outbox>> = (0..n).map(|_| Arc::new(Outbox::new(1 << 20))).collect();
        for (i, ob) in outboxes.iter().enumerate() {
            let socket = SocketId::new(1, i as u64);
            hub.join(&app, &channel, socket, ob.clone());
            hub.activate(&app, &channel, socket, []);
        }
        let frame = frame::text(br#"{"event":"e","channel":"bench","data":"{}"}"#);
        let mut drained = VecDeque::new();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                hub.deliver(&app, &channel, black_box(&frame), None);
                // Keep queues short, as writers would.
                for ob in &outboxes {
                    ob.take(&mut drained);
                    drained.clear();
                }
            })
        });
    }
    group.finish();
}

fn outbox_push(c: &mut Criterion) {
    let ob = Outbox::new(1 << 20);
    let frame = Bytes::from_static(b"frame");
    let mut drained = VecDeque::new();
    c.bench_function("outbox push+take", |b| {
        b.iter(|| {
            ob.push(frame.clone());
            ob.take(&mut drained);
            drained.clear();
        })
    });
}

criterion_group!(benches, build_frame, fan_out, outbox_push);
criterion_main!(benches);
