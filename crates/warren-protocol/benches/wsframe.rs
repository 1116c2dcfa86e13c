//! Reading server frames as the load generator does: socket-sized reads into one reader,
//! every complete message taken out. Throughput is in messages.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use warren_protocol::wsframe::{text, Frame, FrameReader};

/// A stream of event frames shaped like the bench's (about 200 bytes each).
fn stream(messages: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for seq in 0..messages {
        let json = format!(
            r#"{{"event":"bench","channel":"bench-0","data":"{{\"seq\":{seq},\"scheduled_ns\":1700000000000000000,\"sent_ns\":1700000000000000123,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}"}}"#
        );
        out.extend_from_slice(&text(json.as_bytes()));
    }
    out
}

fn read_all(reader: &mut FrameReader, bytes: &[u8], read_size: usize) -> usize {
    let mut seen = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let spare = reader.spare();
        let n = spare.len().min(read_size).min(rest.len());
        spare[..n].copy_from_slice(&rest[..n]);
        reader.filled(n);
        rest = &rest[n..];
        while let Ok(Some(frame)) = reader.next() {
            if let Frame::Text(t) = frame {
                seen += black_box(t).len();
            }
        }
    }
    seen
}

fn frame_reader(c: &mut Criterion) {
    let messages = 10_000;
    let bytes = stream(messages);
    let mut group = c.benchmark_group("FrameReader");
    group.throughput(Throughput::Elements(messages as u64));
    group.bench_function("server text frames, 4 KiB reads", |b| {
        b.iter(|| {
            let mut reader = FrameReader::new();
            read_all(&mut reader, black_box(&bytes), 4096)
        })
    });
    group.finish();
}

criterion_group!(benches, frame_reader);
criterion_main!(benches);
