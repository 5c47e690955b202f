//! Property test: the rendezvous registry, driven by random registrations, clock advances, session ends
//! and sweeps, answers exactly as a plain model that scans every entry.

use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;
use zajel_signal::clock::Millis;
use zajel_signal::config::RendezvousConfig;
use zajel_signal::peer::AddressGroup;
use zajel_signal::protocol::Name;
use zajel_signal::protocol::message::{DeadDrop, LiveMatch};
use zajel_signal::registry::rendezvous::Owner;
use zajel_signal::registry::{Found, Registration, RendezvousRegistry};

/// Entry lifetimes, in milliseconds: the model's, and the registry's through its configuration.
struct Ttls {
    daily: Millis,
    hourly: Millis,
}

const TTLS: Ttls = Ttls {
    daily: 48 * 3600 * 1000,
    hourly: 3 * 3600 * 1000,
};

fn config() -> RendezvousConfig {
    RendezvousConfig {
        daily_ttl_secs: TTLS.daily / 1000,
        hourly_ttl_secs: TTLS.hourly / 1000,
        ..RendezvousConfig::default()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        peer: u8,
        /// The session registering: an entry is replaced only by the session that made it.
        session: u8,
        relay: u8,
        daily: Vec<(u8, Option<u8>)>,
        hourly: Vec<u8>,
    },
    Advance(Millis),
    SessionEnded(u8),
    Sweep(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (
            0u8..4,
            0u8..2,
            0u8..2,
            prop::collection::vec((0u8..5, prop::option::of(0u8..3)), 0..4),
            prop::collection::vec(0u8..5, 0..4),
        )
            .prop_map(|(peer, session, relay, daily, hourly)| {
                Op::Register { peer, session, relay, daily, hourly }
            }),
        3 => prop_oneof![
            // The TTL boundaries themselves, where an off-by-one would hide.
            Just(TTLS.hourly),
            Just(TTLS.hourly - 1),
            Just(TTLS.daily),
            Just(TTLS.daily - 1),
            Just(1),
            0..=3_600_000u64,
            0..=50 * 3_600_000u64,
        ]
        .prop_map(Op::Advance),
        1 => (0u8..4).prop_map(Op::SessionEnded),
        1 => (1usize..4).prop_map(Op::Sweep),
    ]
}

fn name(prefix: &str, i: u8) -> Name {
    Name::try_from(format!("{prefix}{i}")).unwrap()
}

fn payload(i: u8) -> Arc<str> {
    // Payload 0 is the empty string's stand-in: no dead drop.
    Arc::from(format!("drop-{i}"))
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Daily,
    Hourly,
}

/// One stored entry, as plainly as possible.
#[derive(Clone, Debug)]
struct ModelEntry {
    kind: Kind,
    point: Name,
    peer: Name,
    relay: Arc<str>,
    drop: Option<Arc<str>>,
    expires: Millis,
    session: u64,
}

#[derive(Default)]
struct Model {
    entries: Vec<ModelEntry>,
}

impl Model {
    fn register(&mut self, now: Millis, registration: &Registration<'_>) -> Found {
        let mut found = Found::default();
        for (point, drop) in registration.daily_points {
            for entry in &self.entries {
                let is_new_peer = !found.dead_drops.iter().any(|d| d.peer_id == entry.peer);
                if entry.kind == Kind::Daily
                    && entry.point == *point
                    && entry.peer != *registration.peer_id
                    && entry.expires > now
                    && entry.drop.is_some()
                    && is_new_peer
                {
                    found.dead_drops.push(DeadDrop {
                        peer_id: entry.peer.clone(),
                        dead_drop: entry.drop.clone().unwrap(),
                        relay_id: entry.relay.clone(),
                        meeting_point: point.clone(),
                    });
                }
            }
            self.store(
                Kind::Daily,
                point,
                registration,
                drop.clone(),
                now + TTLS.daily,
            );
        }
        for token in registration.hourly_tokens {
            for entry in &self.entries {
                let is_new_peer = !found.live_matches.iter().any(|m| m.peer_id == entry.peer);
                if entry.kind == Kind::Hourly
                    && entry.point == *token
                    && entry.peer != *registration.peer_id
                    && entry.expires > now
                    && is_new_peer
                {
                    found.live_matches.push(LiveMatch {
                        peer_id: entry.peer.clone(),
                        relay_id: entry.relay.clone(),
                        meeting_point: token.clone(),
                    });
                }
            }
            self.store(Kind::Hourly, token, registration, None, now + TTLS.hourly);
        }
        found
    }

    fn store(
        &mut self,
        kind: Kind,
        point: &Name,
        registration: &Registration<'_>,
        drop: Option<Arc<str>>,
        expires: Millis,
    ) {
        let same =
            |e: &ModelEntry| e.kind == kind && e.point == *point && e.peer == *registration.peer_id;
        if self
            .entries
            .iter()
            .any(|e| same(e) && e.session != registration.owner.session)
        {
            // Another session's entry stays.
            return;
        }
        self.entries.retain(|e| !same(e));
        self.entries.push(ModelEntry {
            kind,
            point: point.clone(),
            peer: registration.peer_id.clone(),
            relay: registration.relay_id.clone(),
            drop,
            expires,
            session: registration.owner.session,
        });
    }

    fn session_ended(&mut self, peer: &Name) {
        self.entries
            .retain(|e| !(e.kind == Kind::Hourly && e.peer == *peer));
    }

    fn sweep(&mut self, now: Millis) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.expires > now);
        before - self.entries.len()
    }
}

fn sorted(mut found: Found) -> Found {
    found.live_matches.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
    found.dead_drops.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
    found
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn registry_answers_like_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut registry = RendezvousRegistry::new(&config());
        let mut model = Model::default();
        let mut now: Millis = 1_700_000_000_000;
        for op in ops {
            match op {
                Op::Register { peer, session, relay, daily, hourly } => {
                    let peer_id = name("peer", peer);
                    let relay_id: Arc<str> = Arc::from(format!("relay{relay}"));
                    let daily: Vec<(Name, Option<Arc<str>>)> = daily
                        .into_iter()
                        .map(|(point, drop)| (name("x", point), drop.filter(|&d| d > 0).map(payload)))
                        .collect();
                    let hourly: Vec<Name> = hourly.into_iter().map(|t| name("x", t)).collect();
                    let owner = Owner {
                        session: session.into(),
                        address: AddressGroup::from(IpAddr::from([192, 0, 2, 1])),
                        key: None,
                    };
                    let registration = Registration {
                        peer_id: &peer_id,
                        relay_id: &relay_id,
                        daily_points: &daily,
                        hourly_tokens: &hourly,
                        owner: &owner,
                    };
                    let expected = sorted(model.register(now, &registration));
                    let actual = sorted(registry.register(now, &registration).expect("room"));
                    prop_assert_eq!(actual, expected);
                }
                Op::Advance(by) => now += by,
                Op::SessionEnded(peer) => {
                    let peer_id = name("peer", peer);
                    registry.remove_hourly(peer_id.as_str());
                    model.session_ended(&peer_id);
                }
                Op::Sweep(budget) => {
                    // Small budgets: the sweep must finish over several bounded steps.
                    let mut removed = 0;
                    loop {
                        let swept = registry.sweep(now, budget);
                        removed += swept.removed;
                        if swept.done {
                            break;
                        }
                    }
                    prop_assert_eq!(removed, model.sweep(now));
                }
            }
            prop_assert_eq!(registry.len(), model.entries.len());
        }
    }
}
