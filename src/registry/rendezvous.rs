//! The rendezvous registry: daily meeting points carrying dead drops (kept 48 h) and hourly tokens that
//! make live matches (kept 3 h).
//!
//! Each table keeps one expiry index, ordered by time, with one item per entry; a background sweep drains
//! it from the front. A re-registration only moves its entry's expiry time forward and leaves the index
//! alone: the item, still keyed by the earlier time, is moved to the entry's real time when the sweep
//! reaches it. Items therefore never come after their entry's real expiry, so one sweep removes every
//! expired entry, and requests pay for the index only when they create an entry, at its newest end.
//! Lookups skip entries past their time, so answers never depend on when the sweep last ran.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::deadlines::{DeadlineKey, Deadlines};
use crate::clock::Millis;
use crate::config::RendezvousConfig;
use crate::protocol::Name;
use crate::protocol::message::{DeadDrop, LiveMatch};

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

/// The result of one bounded sweep step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swept {
    /// Entries removed.
    pub removed: usize,
    /// Whether every expired entry is gone; if not, call again.
    pub done: bool,
}

#[derive(Debug)]
struct Entry {
    relay_id: Arc<str>,
    dead_drop: Option<Arc<str>>,
    expires: Millis,
    /// The entry's one item in the expiry index, filed under a time no later than `expires`.
    deadline: DeadlineKey,
}

impl Entry {
    fn is_live(&self, now: Millis) -> bool {
        now < self.expires
    }
}

/// The entry an expiry item stands for.
#[derive(Debug)]
struct ExpiryItem {
    point: Name,
    peer_id: Name,
}

/// The entries of one kind (daily or hourly): point → peer → entry, with their expiry index.
#[derive(Debug, Default)]
struct Table {
    ttl: Millis,
    points: HashMap<Name, HashMap<Name, Entry>>,
    expiry: Deadlines<ExpiryItem>,
}

impl Table {
    fn new(ttl: Millis) -> Self {
        Self {
            ttl,
            ..Self::default()
        }
    }

    fn len(&self) -> usize {
        self.expiry.len()
    }

    /// Live entries of other peers at `point`.
    fn others_at<'a>(
        &'a self,
        point: &Name,
        peer_id: &'a Name,
        now: Millis,
    ) -> impl Iterator<Item = (&'a Name, &'a Entry)> {
        self.points
            .get(point)
            .into_iter()
            .flatten()
            .filter(move |(other, entry)| *other != peer_id && entry.is_live(now))
    }

    /// Stores a peer's entry at a point, or replaces it, expiring one TTL from `now`. A new entry at a
    /// point already holding `max_peers` entries takes the place of the one closest to expiry; that peer
    /// is returned.
    fn store(
        &mut self,
        point: &Name,
        peer_id: &Name,
        relay_id: &Arc<str>,
        dead_drop: Option<Arc<str>>,
        now: Millis,
        max_peers: usize,
    ) -> Option<Name> {
        let expires = now.saturating_add(self.ttl);
        let at_point = self.points.get_mut(point);
        if let Some(existing) = at_point.and_then(|at_point| at_point.get_mut(peer_id)) {
            existing.relay_id = relay_id.clone();
            existing.dead_drop = dead_drop;
            existing.expires = expires;
            return None;
        }
        let evicted = self.evict_if_full(point, max_peers);
        let deadline = self.expiry.insert(
            expires,
            ExpiryItem {
                point: point.clone(),
                peer_id: peer_id.clone(),
            },
        );
        let entry = Entry {
            relay_id: relay_id.clone(),
            dead_drop,
            expires,
            deadline,
        };
        self.points
            .entry(point.clone())
            .or_default()
            .insert(peer_id.clone(), entry);
        evicted
    }

    fn evict_if_full(&mut self, point: &Name, max_peers: usize) -> Option<Name> {
        let at_point = self.points.get(point)?;
        if at_point.len() < max_peers {
            return None;
        }
        let (oldest, _) = at_point.iter().min_by_key(|(_, entry)| entry.expires)?;
        let oldest = oldest.clone();
        self.remove(point.as_str(), oldest.as_str());
        Some(oldest)
    }

    /// Removes an entry and its expiry item.
    fn remove(&mut self, point: &str, peer_id: &str) {
        if let Some(entry) = self.remove_entry(point, peer_id) {
            self.expiry.remove(entry.deadline);
        }
    }

    /// Removes an entry from the point maps only.
    fn remove_entry(&mut self, point: &str, peer_id: &str) -> Option<Entry> {
        let at_point = self.points.get_mut(point)?;
        let removed = at_point.remove(peer_id);
        if at_point.is_empty() {
            self.points.remove(point);
        }
        removed
    }

    /// Visits up to `budget` due expiry items: removes the entries that expired, telling `on_removed`
    /// their point and peer, and refiles the items of re-registered entries under their real time.
    /// Returns whether nothing due is left.
    fn sweep(
        &mut self,
        now: Millis,
        budget: usize,
        mut on_removed: impl FnMut(Name, Name),
    ) -> bool {
        for _ in 0..budget {
            let Some(item) = self.expiry.pop_due(now) else {
                return true;
            };
            let Some(entry) = self
                .points
                .get_mut(&item.point)
                .and_then(|at_point| at_point.get_mut(&item.peer_id))
            else {
                debug_assert!(false, "every expiry item stands for an entry");
                continue;
            };
            if entry.is_live(now) {
                entry.deadline = self.expiry.insert(entry.expires, item);
            } else {
                self.remove_entry(item.point.as_str(), item.peer_id.as_str());
                on_removed(item.point, item.peer_id);
            }
        }
        !self.expiry.any_due(now)
    }
}

#[derive(Debug)]
pub struct RendezvousRegistry {
    /// Entries in each of `liveMatches` and `deadDrops` of one reply.
    max_results: usize,
    /// Peers at one daily point, and at one hourly token; a newcomer takes the place of the entry
    /// closest to expiry.
    max_peers_per_point: usize,
    daily: Table,
    hourly: Table,
    /// The hourly tokens each peer holds, so that a peer's live entries go when its session does.
    hourly_by_peer: HashMap<Name, HashSet<Name>>,
    /// Peers already reported in the registration being answered; kept to reuse its allocation.
    seen: HashSet<Name>,
}

impl RendezvousRegistry {
    pub fn new(config: &RendezvousConfig) -> Self {
        Self {
            max_results: config.max_rendezvous_results,
            max_peers_per_point: config.max_peers_per_point,
            daily: Table::new(config.daily_ttl()),
            hourly: Table::new(config.hourly_ttl()),
            hourly_by_peer: HashMap::new(),
            seen: HashSet::new(),
        }
    }

    /// Collects what other peers left at these points and tokens, then stores this peer's entries
    /// (replacing its earlier ones at the same points and tokens). Each other peer appears at most once
    /// in each list, named with the first point or token where it was found; each list holds at most
    /// `max_results` entries.
    ///
    /// If `now` went back between calls, entries would still expire correctly for lookups, but the sweep
    /// might reach some of them late; the server's clock is monotonic.
    pub fn register(&mut self, now: Millis, registration: &Registration<'_>) -> Found {
        let Registration {
            peer_id,
            relay_id,
            daily_points,
            hourly_tokens,
        } = *registration;
        let (max_results, max_peers_per_point) = (self.max_results, self.max_peers_per_point);
        let mut found = Found::default();

        for (point, dead_drop) in daily_points {
            for (other, entry) in self.daily.others_at(point, peer_id, now) {
                if found.dead_drops.len() == max_results {
                    break;
                }
                if let Some(payload) = &entry.dead_drop
                    && self.seen.insert(other.clone())
                {
                    found.dead_drops.push(DeadDrop {
                        peer_id: other.clone(),
                        dead_drop: payload.clone(),
                        relay_id: entry.relay_id.clone(),
                        meeting_point: point.clone(),
                    });
                }
            }
            self.daily.store(
                point,
                peer_id,
                relay_id,
                dead_drop.clone(),
                now,
                max_peers_per_point,
            );
        }

        self.forget_seen();
        for token in hourly_tokens {
            for (other, entry) in self.hourly.others_at(token, peer_id, now) {
                if found.live_matches.len() == max_results {
                    break;
                }
                if self.seen.insert(other.clone()) {
                    found.live_matches.push(LiveMatch {
                        peer_id: other.clone(),
                        relay_id: entry.relay_id.clone(),
                        meeting_point: token.clone(),
                    });
                }
            }
            let evicted =
                self.hourly
                    .store(token, peer_id, relay_id, None, now, max_peers_per_point);
            if let Some(evicted) = evicted {
                forget_hourly_token(&mut self.hourly_by_peer, &evicted, token);
            }
            match self.hourly_by_peer.get_mut(peer_id) {
                Some(tokens) => {
                    if !tokens.contains(token) {
                        tokens.insert(token.clone());
                    }
                }
                None => {
                    self.hourly_by_peer
                        .insert(peer_id.clone(), HashSet::from([token.clone()]));
                }
            }
        }
        self.forget_seen();
        found
    }

    fn forget_seen(&mut self) {
        const KEEP_CAPACITY: usize = 1024;
        self.seen.clear();
        if self.seen.capacity() > KEEP_CAPACITY {
            self.seen.shrink_to(KEEP_CAPACITY);
        }
    }

    /// Removes every hourly token of a peer (its session ended: a live match with it would be useless).
    /// Its daily points stay: dead drops are for peers that are offline.
    pub fn remove_hourly(&mut self, peer_id: &str) {
        for token in self.hourly_by_peer.remove(peer_id).into_iter().flatten() {
            self.hourly.remove(token.as_str(), peer_id);
        }
    }

    /// Removes expired entries, visiting at most `budget` expiry items so that one call never holds the
    /// caller's lock for long.
    pub fn sweep(&mut self, now: Millis, budget: usize) -> Swept {
        let mut removed = 0;
        let daily_done = self.daily.sweep(now, budget, |_, _| removed += 1);
        let hourly_by_peer = &mut self.hourly_by_peer;
        let hourly_done = self.hourly.sweep(now, budget, |token, peer_id| {
            removed += 1;
            forget_hourly_token(hourly_by_peer, &peer_id, &token);
        });
        Swept {
            removed,
            done: daily_done && hourly_done,
        }
    }

    /// Stored entries, expired or not, daily and hourly together.
    pub fn len(&self) -> usize {
        self.daily.len() + self.hourly.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn forget_hourly_token(
    hourly_by_peer: &mut HashMap<Name, HashSet<Name>>,
    peer_id: &Name,
    token: &Name,
) {
    if let Some(tokens) = hourly_by_peer.get_mut(peer_id) {
        tokens.remove(token);
        if tokens.is_empty() {
            hourly_by_peer.remove(peer_id);
        }
    }
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
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
        let alice = Peer::new("alice", "relay-a");
        let found = alice.daily(&mut registry, START, &[("point1", Some("sealed-for-bob"))]);
        assert_eq!(found, Found::default());
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn a_later_registrant_gets_the_earlier_dead_drop() {
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
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
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
        let alice = Peer::new("alice", "relay-a");
        alice.daily(&mut registry, START, &[("point1", Some("mine"))]);
        let found = alice.daily(&mut registry, START + 1, &[("point1", Some("mine again"))]);
        assert!(found.dead_drops.is_empty());
        assert_eq!(registry.len(), 1, "re-registering replaces the entry");
    }

    #[test]
    fn hourly_tokens_give_live_matches_with_the_earlier_peers_relay() {
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
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
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
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
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
        Peer::new("alice", "ra").daily(&mut registry, START, &[("d1", None)]);
        let found = Peer::new("bob", "rb").daily(&mut registry, START, &[("d1", None)]);
        assert!(found.dead_drops.is_empty());
    }

    #[test]
    fn daily_points_expire_after_48_hours() {
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
        let alice = Peer::new("alice", "ra");
        let bob = Peer::new("bob", "rb");
        alice.daily(&mut registry, START, &[("d1", Some("drop"))]);
        let just_before = START + 48 * HOUR - 1;
        let found = bob.daily(&mut registry, just_before, &[("d1", None)]);
        assert_eq!(found.dead_drops.len(), 1);
        let carol = Peer::new("carol", "rc");
        let found = carol.daily(&mut registry, START + 48 * HOUR, &[("d1", None)]);
        assert!(found.dead_drops.is_empty(), "expired even before any sweep");
        assert_eq!(registry.sweep(START + 48 * HOUR, usize::MAX).removed, 1);
    }

    #[test]
    fn hourly_tokens_expire_after_3_hours() {
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
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
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
        for i in 0..5 {
            Peer::new(&format!("p{i}"), "").hourly(&mut registry, START + i, &["t"]);
        }
        Peer::new("daily", "").daily(&mut registry, START, &[("d", Some("x"))]);
        assert_eq!(registry.len(), 6);
        let later = START + 3 * HOUR + 2;
        assert_eq!(
            registry.sweep(later, 2),
            Swept {
                removed: 2,
                done: false
            }
        );
        assert_eq!(
            registry.sweep(later, 10),
            Swept {
                removed: 1,
                done: true
            }
        );
        assert_eq!(registry.len(), 3);
        assert_eq!(registry.sweep(START + 48 * HOUR, 10).removed, 3);
        assert!(registry.is_empty());
    }

    #[test]
    fn re_registrations_keep_one_expiry_item_per_entry() {
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
        let alice = Peer::new("alice", "ra");
        for i in 0..100_000 {
            alice.hourly(&mut registry, START + i, &["t1", "t2"]);
        }
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.hourly.expiry.len(), 2);
        // The live entries still expire at their latest time, not at a stale one.
        let bob = Peer::new("bob", "rb");
        let found = bob.hourly(&mut registry, START + 99_999 + 3 * HOUR - 1, &["t1"]);
        assert_eq!(found.live_matches.len(), 1);
        registry.sweep(START + 99_999 + 3 * HOUR, usize::MAX);
        assert_eq!(registry.len(), 1, "only bob's token is left");
    }

    #[test]
    fn removed_entries_leave_nothing_behind_in_the_expiry_index() {
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
        let tokens: Vec<String> = (0..500).map(|i| format!("t{i}")).collect();
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        for round in 0..20 {
            Peer::new("alice", "ra").hourly(&mut registry, START + round, &tokens);
            registry.remove_hourly("alice");
        }
        assert!(registry.is_empty());
        assert!(registry.hourly.expiry.is_empty());
        assert!(registry.hourly_by_peer.is_empty());
    }

    #[test]
    fn a_full_point_makes_room_by_dropping_the_entry_closest_to_expiry() {
        let config = RendezvousConfig {
            max_rendezvous_results: 100,
            max_peers_per_point: 3,
            ..RendezvousConfig::default()
        };
        let mut registry = RendezvousRegistry::new(&config);
        for (i, peer) in ["p0", "p1", "p2", "p3"].into_iter().enumerate() {
            Peer::new(peer, "").hourly(&mut registry, START + i as Millis, &["crowded"]);
        }
        assert_eq!(registry.len(), 3);
        let found = Peer::new("late", "").hourly(&mut registry, START + 10, &["other"]);
        assert!(found.live_matches.is_empty());
        let mut peers: Vec<_> = Peer::new("probe", "")
            .hourly(&mut registry, START + 11, &["crowded"])
            .live_matches
            .into_iter()
            .map(|m| m.peer_id.to_string())
            .collect();
        peers.sort();
        assert_eq!(peers, ["p1", "p2", "p3"], "p0 made room for p3");
        // The probe's own entry then took p1's place.
        assert_eq!(registry.len(), 4);
        assert!(!registry.hourly_by_peer.contains_key("p0"));
        assert!(!registry.hourly_by_peer.contains_key("p1"));
        assert_eq!(registry.hourly.expiry.len(), registry.len());
    }

    #[test]
    fn each_list_in_a_reply_is_bounded() {
        let config = RendezvousConfig {
            max_rendezvous_results: 5,
            max_peers_per_point: 1000,
            ..RendezvousConfig::default()
        };
        let mut registry = RendezvousRegistry::new(&config);
        for i in 0..20 {
            let peer = Peer::new(&format!("p{i}"), "");
            peer.hourly(&mut registry, START, &["t"]);
            peer.daily(&mut registry, START, &[("d", Some("drop"))]);
        }
        let newcomer = Peer::new("new", "");
        assert_eq!(
            newcomer
                .hourly(&mut registry, START, &["t"])
                .live_matches
                .len(),
            5
        );
        assert_eq!(
            newcomer
                .daily(&mut registry, START, &[("d", None)])
                .dead_drops
                .len(),
            5
        );
    }

    #[test]
    fn removing_a_peers_hourly_entries_keeps_its_daily_points() {
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
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
