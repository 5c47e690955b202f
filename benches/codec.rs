//! Writing replies: `cargo bench --bench codec`.
//!
//! reply-encode: a `get_relays` reply listing 10 relays, with its `requestId`, as JSON and as CBOR.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use zajel_signal::protocol::codec::{Encoding, RequestId, encode};
use zajel_signal::protocol::message::RelayInfo;
use zajel_signal::protocol::{Name, ServerMessage};

fn reply_encode(c: &mut Criterion) {
    let relays = (0..10)
        .map(|i| RelayInfo {
            peer_id: Name::try_from(format!("relay-{i}")).expect("a valid name"),
            public_key: None,
            capacity: 0.25,
        })
        .collect();
    let reply = ServerMessage::Relays { relays };
    let id = RequestId::Number(12_345);
    let mut group = c.benchmark_group("reply-encode");
    for (label, encoding) in [("json", Encoding::Json), ("cbor", Encoding::Cbor)] {
        group.bench_function(label, |b| {
            b.iter(|| black_box(encode(&reply, Some(&id), encoding)))
        });
    }
    group.finish();
}

criterion_group!(benches, reply_encode);
criterion_main!(benches);
