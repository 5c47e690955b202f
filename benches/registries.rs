//! Registry operations at scale: `cargo bench --bench registries`.
//!
//! available-relays: pick 10 relays among 1k, 100k or 1M registered ones.
//! rendezvous-register: one peer registers one daily point (with a dead drop) and one hourly token,
//! each already held by another peer, against 100k or 1M stored entries.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use zajel_signal::config::RendezvousConfig;
use zajel_signal::peer::AddressGroup;
use zajel_signal::protocol::Name;
use zajel_signal::registry::rendezvous::Owner;
use zajel_signal::registry::{Registration, RelayRegistry, RendezvousRegistry};

const NOW: u64 = 1_700_000_000_000;

fn name(text: String) -> Name {
    Name::try_from(text).expect("a valid name")
}

fn available_relays(c: &mut Criterion) {
    let mut group = c.benchmark_group("available-relays");
    for relays in [1_000usize, 100_000, 1_000_000] {
        let mut registry = RelayRegistry::new();
        for i in 0..relays {
            registry.register(name(format!("relay-{i}")), 20, Some(Arc::from("pk")));
        }
        let mut rng = SmallRng::seed_from_u64(1);
        group.bench_with_input(BenchmarkId::from_parameter(relays), &relays, |b, _| {
            b.iter(|| black_box(registry.available("relay-0", 10, &mut rng)))
        });
    }
    group.finish();
}

/// One owner for every entry: ownership is not what these measure.
const OWNER: Owner = Owner {
    session: 1,
    address: AddressGroup::V4(std::net::Ipv4Addr::LOCALHOST),
    key: None,
};

/// A registry holding `entries` entries: half daily points with dead drops, half hourly tokens, two
/// peers per point.
fn filled_rendezvous(entries: usize) -> RendezvousRegistry {
    let mut registry = RendezvousRegistry::new(&RendezvousConfig {
        max_rendezvous_entries_per_ip: usize::MAX,
        ..RendezvousConfig::default()
    });
    let relay: Arc<str> = Arc::from("relay");
    let points_per_kind = entries / 4;
    for i in 0..points_per_kind {
        let daily = [(name(format!("day-{i}")), Some(Arc::from("sealed")))];
        let hourly = [name(format!("hour-{i}"))];
        for peer in [format!("a-{i}"), format!("b-{i}")] {
            let peer = name(peer);
            registry
                .register(
                    NOW,
                    &Registration {
                        peer_id: &peer,
                        relay_id: &relay,
                        daily_points: &daily,
                        hourly_tokens: &hourly,
                        owner: &OWNER,
                    },
                )
                .expect("room");
        }
    }
    assert_eq!(registry.len(), points_per_kind * 4);
    registry
}

fn rendezvous_register(c: &mut Criterion) {
    let mut group = c.benchmark_group("rendezvous-register");
    for entries in [100_000usize, 1_000_000] {
        let mut registry = filled_rendezvous(entries);
        let points = entries / 4;
        // Newcomers, each always at the same point, so that the registry keeps its size: each
        // re-registration replaces the newcomer's earlier entries.
        let relay: Arc<str> = Arc::from("relay-n");
        let requests: Vec<_> = (0..4096)
            .map(|i| {
                let point = (i * 7919) % points;
                (
                    name(format!("new-{i}")),
                    [(name(format!("day-{point}")), Some(Arc::<str>::from("drop")))],
                    [name(format!("hour-{point}"))],
                )
            })
            .collect();
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(entries), &entries, |b, _| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let (newcomer, daily, hourly) = &requests[i % requests.len()];
                let found = registry.register(
                    NOW + 1,
                    &Registration {
                        peer_id: newcomer,
                        relay_id: &relay,
                        daily_points: daily,
                        hourly_tokens: hourly,
                        owner: &OWNER,
                    },
                );
                black_box(found)
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = registries;
    config = config();
    targets = available_relays, rendezvous_register
}
criterion_main!(registries);
