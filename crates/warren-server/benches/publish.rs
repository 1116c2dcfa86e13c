//! The whole delivery path of one node, end to end over loopback: a signed HTTP publish taken
//! in on the ingress runtime, the hub's fan-out, and each connection task's write, until every
//! subscriber has read the frame. A guard for the paths the criterion benchmarks of `delivery`
//! cannot see: the connection task, the ingress hand-off and the HTTP API.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_client::TriggerOptions;
use warren_testkit::api::api_client;
use warren_testkit::raw::{masked_text, raw_tcp_upgrade, read_socket_id};
use warren_testkit::server::start;

/// Reads one server frame (unmasked, under 64 KiB) and returns its payload's length.
async fn read_frame(s: &mut TcpStream) -> usize {
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).await.expect("frame header");
    let len = match hdr[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            s.read_exact(&mut ext).await.expect("length");
            usize::from(u16::from_be_bytes(ext))
        }
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.expect("payload");
    len
}

fn publish_to_subscribers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("publish over HTTP until every subscriber read it");
    group.measurement_time(Duration::from_secs(8));
    for subscribers in [1usize, 100] {
        let (server, client, mut sockets) = rt.block_on(async {
            let server = start().await;
            let mut sockets = Vec::new();
            for _ in 0..subscribers {
                let mut s = raw_tcp_upgrade(&server).await;
                read_socket_id(&mut s).await;
                let subscribe = br#"{"event":"pusher:subscribe","data":{"channel":"bench"}}"#;
                s.write_all(&masked_text(subscribe))
                    .await
                    .expect("subscribe");
                read_frame(&mut s).await; // subscription_succeeded
                sockets.push(s);
            }
            let client = api_client(&server);
            (server, client, sockets)
        });
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            client
                                .trigger(["bench"], "e", "x", TriggerOptions::default())
                                .await
                                .expect("publish");
                            for s in &mut sockets {
                                read_frame(s).await;
                            }
                        }
                        start.elapsed()
                    })
                })
            },
        );
        rt.block_on(async move {
            drop(sockets);
            drop(client);
            drop(server);
        });
    }
    group.finish();
}

criterion_group!(benches, publish_to_subscribers);
criterion_main!(benches);
