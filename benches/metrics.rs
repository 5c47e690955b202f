//! What counting costs a message: `cargo bench --bench metrics`.
//!
//! count-message: everything a session counts for one request (its type looked up from the `type`
//! text, received by type and encoding, the handling time taken and observed, the reply inspected for
//! errors and outcomes), for the first and the last request type in the table, and for an unknown one.
//! render: the whole exposition, as a scrape reads it.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use zajel_signal::metrics::{Holdings, MessageType, Metrics};
use zajel_signal::protocol::ServerMessage;
use zajel_signal::protocol::codec::Encoding;

fn count_message(c: &mut Criterion) {
    let metrics = Metrics::new();
    let mut group = c.benchmark_group("count-message");
    for kind in ["ping", "call_ice", "teleport"] {
        group.bench_function(kind, |b| {
            b.iter(|| {
                let started = Instant::now();
                let kind = MessageType::of(black_box(kind));
                metrics.message_received(kind, Encoding::Cbor);
                metrics.answered(kind, &ServerMessage::Pong, Some(started.elapsed()));
            })
        });
    }
    group.finish();
}

fn render(c: &mut Criterion) {
    let metrics = Metrics::new();
    c.bench_function("render", |b| {
        b.iter(|| black_box(metrics.render(&Holdings::default())))
    });
}

criterion_group!(benches, count_message, render);
criterion_main!(benches);
