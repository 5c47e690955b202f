//! The rendezvous registry: daily meeting points carrying dead drops (kept 48 h) and hourly tokens that
//! make live matches (kept 3 h).
//!
//! Entries expire through one index ordered by expiry time, which a background sweep drains from the
//! front; lookups also skip entries past their time, so answers never depend on when the sweep last ran.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::clock::Millis;
use crate::protocol::Name;

/// Another peer found at the same hourly token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveMatch {
    pub peer_id: Name,
    pub relay_id: Arc<str>,
    pub meeting_point: Name,
}

/// The dead drop another peer left at the same daily point.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadDrop {
    pub peer_id: Name,
    pub dead_drop: Arc<str>,
    pub relay_id: Arc<str>,
    pub meeting_point: Name,
}

/// What one registration found.
#[derive(Debug, Default, PartialEq)]
pub struct Found {
    pub live_matches: Vec<LiveMatch>,
    pub dead_drops: Vec<DeadDrop>,
}

/// One peer's registration.
#[derive(Debug)]
pub struct Registration<'a> {
    pub peer_id: &'a Name,
    pub relay_id: &'a Arc<str>,
    /// Daily points, each with the dead drop to leave there.
    pub daily_points: &'a [(Name, Option<Arc<str>>)],
    pub hourly_tokens: &'a [Name],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Daily,
    Hourly,
}

/// Where an entry sits in the expiry index: its expiry time, then a sequence number that makes the key
/// unique.
type ExpiryKey = (Millis, u64);

#[derive(Debug)]
struct Entry {
    relay_id: Arc<str>,
    dead_drop: Option<Arc<str>>,
    expiry: ExpiryKey,
}

#[derive(Debug)]
struct ExpiryTarget {
    kind: Kind,
    point: Name,
    peer_id: Name,
}

/// How long entries live.
#[derive(Clone, Copy, Debug)]
pub struct Ttls {
    pub daily: Millis,
    pub hourly: Millis,
}

impl Default for Ttls {
    fn default() -> Self {
        Self {
            daily: 48 * 3600 * 1000,
            hourly: 3 * 3600 * 1000,
        }
    }
}

#[derive(Debug, Default)]
pub struct RendezvousRegistry {
    ttls: Ttls,
    daily: HashMap<Name, HashMap<Name, Entry>>,
    hourly: HashMap<Name, HashMap<Name, Entry>>,
    /// The hourly tokens each peer holds, so that a peer's live entries go when its session does.
    hourly_by_peer: HashMap<Name, HashSet<Name>>,
    expiry: BTreeMap<ExpiryKey, ExpiryTarget>,
    next_sequence: u64,
}

impl RendezvousRegistry {
    pub fn new(ttls: Ttls) -> Self {
        Self {
            ttls,
            ..Self::default()
        }
    }

    /// Collects what other peers left at these points and tokens, then stores this peer's entries
    /// (replacing its earlier ones at the same points and tokens). Each other peer appears at most once
    /// in each list, named with the first point or token where it was found.
    pub fn register(&mut self, now: Millis, registration: &Registration<'_>) -> Found {
        let Registration {
            peer_id,
            relay_id,
            daily_points,
            hourly_tokens,
        } = *registration;
        let mut found = Found::default();

        let mut seen = HashSet::new();
        for (point, dead_drop) in daily_points {
            for (other, entry) in self.daily.get(point).into_iter().flatten() {
                let Some(payload) = &entry.dead_drop else {
                    continue;
                };
                if other != peer_id && entry.expiry.0 > now && seen.insert(other.clone()) {
                    found.dead_drops.push(DeadDrop {
                        peer_id: other.clone(),
                        dead_drop: payload.clone(),
                        relay_id: entry.relay_id.clone(),
                        meeting_point: point.clone(),
                    });
                }
            }
            let expires = now.saturating_add(self.ttls.daily);
            self.store(
                Kind::Daily,
                point,
                peer_id,
                relay_id,
                dead_drop.clone(),
                expires,
            );
        }

        seen.clear();
        for token in hourly_tokens {
            for (other, entry) in self.hourly.get(token).into_iter().flatten() {
                if other != peer_id && entry.expiry.0 > now && seen.insert(other.clone()) {
                    found.live_matches.push(LiveMatch {
                        peer_id: other.clone(),
                        relay_id: entry.relay_id.clone(),
                        meeting_point: token.clone(),
                    });
                }
            }
            let expires = now.saturating_add(self.ttls.hourly);
            self.store(Kind::Hourly, token, peer_id, relay_id, None, expires);
            self.hourly_by_peer
                .entry(peer_id.clone())
                .or_default()
                .insert(token.clone());
        }
        found
    }

    /// Removes every hourly token of a peer (its session ended: a live match with it would be useless).
    /// Its daily points stay: dead drops are for peers that are offline.
    pub fn remove_hourly(&mut self, peer_id: &str) {
        for token in self.hourly_by_peer.remove(peer_id).into_iter().flatten() {
            if let Some(entry) = remove_entry(&mut self.hourly, token.as_str(), peer_id) {
                self.expiry.remove(&entry.expiry);
            }
        }
    }

    /// Removes up to `budget` entries whose time is past; returns how many it removed. Callers loop while
    /// it returns `budget`, releasing their lock in between, so one sweep never stalls requests for long.
    pub fn sweep(&mut self, now: Millis, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget {
            let Some(entry) = self.expiry.first_entry() else {
                break;
            };
            if entry.key().0 > now {
                break;
            }
            let target = entry.remove();
            match target.kind {
                Kind::Daily => {
                    remove_entry(
                        &mut self.daily,
                        target.point.as_str(),
                        target.peer_id.as_str(),
                    );
                }
                Kind::Hourly => {
                    remove_entry(
                        &mut self.hourly,
                        target.point.as_str(),
                        target.peer_id.as_str(),
                    );
                    if let Some(tokens) = self.hourly_by_peer.get_mut(&target.peer_id) {
                        tokens.remove(&target.point);
                        if tokens.is_empty() {
                            self.hourly_by_peer.remove(&target.peer_id);
                        }
                    }
                }
            }
            removed += 1;
        }
        removed
    }

    /// Stored entries, expired or not, daily and hourly together.
    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    fn store(
        &mut self,
        kind: Kind,
        point: &Name,
        peer_id: &Name,
        relay_id: &Arc<str>,
        dead_drop: Option<Arc<str>>,
        expires: Millis,
    ) {
        let expiry = (expires, self.next_sequence);
        self.next_sequence += 1;
        let entries = match kind {
            Kind::Daily => &mut self.daily,
            Kind::Hourly => &mut self.hourly,
        };
        let entry = Entry {
            relay_id: relay_id.clone(),
            dead_drop,
            expiry,
        };
        let replaced = entries
            .entry(point.clone())
            .or_default()
            .insert(peer_id.clone(), entry);
        if let Some(replaced) = replaced {
            self.expiry.remove(&replaced.expiry);
        }
        self.expiry.insert(
            expiry,
            ExpiryTarget {
                kind,
                point: point.clone(),
                peer_id: peer_id.clone(),
            },
        );
    }
}

fn remove_entry(
    entries: &mut HashMap<Name, HashMap<Name, Entry>>,
    point: &str,
    peer_id: &str,
) -> Option<Entry> {
    let at_point = entries.get_mut(point)?;
    let entry = at_point.remove(peer_id);
    if at_point.is_empty() {
        entries.remove(point);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Millis = 3600 * 1000;
    const START: Millis = 1_700_000_000_000;

    fn name(text: &str) -> Name {
        Name::try_from(text).unwrap()
    }

    struct Peer {
        id: Name,
        relay: Arc<str>,
    }

    impl Peer {
        fn new(id: &str, relay: &str) -> Self {
            Self {
                id: name(id),
                relay: relay.into(),
            }
        }

        fn daily(
            &self,
            registry: &mut RendezvousRegistry,
            now: Millis,
            points: &[(&str, Option<&str>)],
        ) -> Found {
            let points: Vec<_> = points
                .iter()
                .map(|(point, drop)| (name(point), drop.map(Arc::from)))
                .collect();
            registry.register(
                now,
                &Registration {
                    peer_id: &self.id,
                    relay_id: &self.relay,
                    daily_points: &points,
                    hourly_tokens: &[],
                },
            )
        }

        fn hourly(&self, registry: &mut RendezvousRegistry, now: Millis, tokens: &[&str]) -> Found {
            let tokens: Vec<_> = tokens.iter().map(|t| name(t)).collect();
            registry.register(
                now,
                &Registration {
                    peer_id: &self.id,
                    relay_id: &self.relay,
                    daily_points: &[],
                    hourly_tokens: &tokens,
                },
            )
        }
    }

    #[test]
    fn daily_points_store_the_dead_drop() {
        let mut registry = RendezvousRegistry::new(Ttls::default());
        let alice = Peer::new("alice", "relay-a");
        let found = alice.daily(&mut registry, START, &[("point1", Some("sealed-for-bob"))]);
        assert_eq!(found, Found::default());
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn a_later_registrant_gets_the_earlier_dead_drop() {
        let mut registry = RendezvousRegistry::new(Ttls::default());
        let alice = Peer::new("alice", "relay-a");
        let bob = Peer::new("bob", "relay-b");
        alice.daily(&mut registry, START, &[("point1", Some("sealed-for-bob"))]);
        let found = bob.daily(&mut registry, START + 1, &[("point1", None)]);
        assert_eq!(
            found.dead_drops,
            [DeadDrop {
                peer_id: name("alice"),
                dead_drop: "sealed-for-bob".into(),
                relay_id: "relay-a".into(),
                meeting_point: name("point1"),
            }]
        );
        assert!(found.live_matches.is_empty());
    }

    #[test]
    fn ones_own_dead_drop_is_never_returned() {
        let mut registry = RendezvousRegistry::new(Ttls::default());
        let alice = Peer::new("alice", "relay-a");
        alice.daily(&mut registry, START, &[("point1", Some("mine"))]);
        let found = alice.daily(&mut registry, START + 1, &[("point1", Some("mine again"))]);
        assert!(found.dead_drops.is_empty());
        assert_eq!(registry.len(), 1, "re-registering replaces the entry");
    }

    #[test]
    fn hourly_tokens_give_live_matches_with_the_earlier_peers_relay() {
        let mut registry = RendezvousRegistry::new(Ttls::default());
        let alice = Peer::new("alice", "relay-a");
        let bob = Peer::new("bob", "relay-b");
        assert!(
            alice
                .hourly(&mut registry, START, &["token1"])
                .live_matches
                .is_empty()
        );
        let found = bob.hourly(&mut registry, START + 1, &["token1"]);
        assert_eq!(
            found.live_matches,
            [LiveMatch {
                peer_id: name("alice"),
                relay_id: "relay-a".into(),
                meeting_point: name("token1"),
            }]
        );
        assert!(found.dead_drops.is_empty());
    }

    #[test]
    fn each_other_peer_appears_once_named_by_the_first_point_found() {
        let mut registry = RendezvousRegistry::new(Ttls::default());
        let alice = Peer::new("alice", "ra");
        let bob = Peer::new("bob", "rb");
        alice.hourly(&mut registry, START, &["t1", "t2", "t3"]);
        alice.daily(
            &mut registry,
            START,
            &[("d1", Some("x")), ("d2", Some("y"))],
        );
        let found = bob.hourly(&mut registry, START, &["t2", "t1", "t3"]);
        assert_eq!(found.live_matches.len(), 1);
        assert_eq!(found.live_matches[0].meeting_point, name("t2"));
        let found = bob.daily(&mut registry, START, &[("d2", None), ("d1", None)]);
        assert_eq!(found.dead_drops.len(), 1);
        assert_eq!(found.dead_drops[0].meeting_point, name("d2"));
        assert_eq!(&*found.dead_drops[0].dead_drop, "y");
    }

    #[test]
    fn empty_dead_drops_are_not_returned() {
        let mut registry = RendezvousRegistry::new(Ttls::default());
        Peer::new("alice", "ra").daily(&mut registry, START, &[("d1", None)]);
        let found = Peer::new("bob", "rb").daily(&mut registry, START, &[("d1", None)]);
        assert!(found.dead_drops.is_empty());
    }

    #[test]
    fn daily_points_expire_after_48_hours() {
        let mut registry = RendezvousRegistry::new(Ttls::default());
        let alice = Peer::new("alice", "ra");
        let bob = Peer::new("bob", "rb");
        alice.daily(&mut registry, START, &[("d1", Some("drop"))]);
        let just_before = START + 48 * HOUR - 1;
        let found = bob.daily(&mut registry, just_before, &[("d1", None)]);
        assert_eq!(found.dead_drops.len(), 1);
        let carol = Peer::new("carol", "rc");
        let found = carol.daily(&mut registry, START + 48 * HOUR, &[("d1", None)]);
        assert!(found.dead_drops.is_empty(), "expired even before any sweep");
        assert_eq!(registry.sweep(START + 48 * HOUR, usize::MAX), 1);
    }

    #[test]
    fn hourly_tokens_expire_after_3_hours() {
        let mut registry = RendezvousRegistry::new(Ttls::default());
        let alice = Peer::new("alice", "ra");
        let bob = Peer::new("bob", "rb");
        alice.hourly(&mut registry, START, &["t1"]);
        assert_eq!(
            bob.hourly(&mut registry, START + 3 * HOUR - 1, &["t1"])
                .live_matches
                .len(),
            1
        );
        let carol = Peer::new("carol", "rc");
        let found = carol.hourly(&mut registry, START + 3 * HOUR, &["t1"]);
        assert_eq!(
            found
                .live_matches
                .iter()
                .map(|m| m.peer_id.as_str())
                .collect::<Vec<_>>(),
            ["bob"],
            "alice's token expired; bob's, registered later, has not"
        );
    }

    #[test]
    fn sweeping_removes_only_expired_entries_within_its_budget() {
        let mut registry = RendezvousRegistry::new(Ttls::default());
        for i in 0..5 {
            Peer::new(&format!("p{i}"), "").hourly(&mut registry, START + i, &["t"]);
        }
        Peer::new("daily", "").daily(&mut registry, START, &[("d", Some("x"))]);
        assert_eq!(registry.len(), 6);
        let later = START + 3 * HOUR + 2;
        assert_eq!(registry.sweep(later, 2), 2);
        assert_eq!(registry.sweep(later, 10), 1);
        assert_eq!(registry.len(), 3);
        assert_eq!(registry.sweep(START + 48 * HOUR, 10), 3);
        assert!(registry.is_empty());
    }

    #[test]
    fn removing_a_peers_hourly_entries_keeps_its_daily_points() {
        let mut registry = RendezvousRegistry::new(Ttls::default());
        let alice = Peer::new("alice", "ra");
        alice.hourly(&mut registry, START, &["t1", "t2"]);
        alice.daily(&mut registry, START, &[("d1", Some("drop"))]);
        registry.remove_hourly("alice");
        assert_eq!(registry.len(), 1);
        let bob = Peer::new("bob", "rb");
        assert!(
            bob.hourly(&mut registry, START, &["t1", "t2"])
                .live_matches
                .is_empty()
        );
        assert_eq!(
            bob.daily(&mut registry, START, &[("d1", None)])
                .dead_drops
                .len(),
            1
        );
    }
}
