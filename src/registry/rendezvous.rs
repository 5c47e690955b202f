//! The rendezvous registry: daily meeting points carrying dead drops (kept 48 h) and hourly tokens that
//! make live matches (kept 3 h).
//!
//! Work is bounded by what a request names and what it gets back, never by what others stored: each point
//! keeps the entries others can find there (daily points: those with a dead drop; hourly tokens: all) in
//! a dense vector, a lookup stops when its list is full, and the entries a lookup passes over (the asker's
//! own, expired ones, peers already listed) are limited per request. A full point refuses newcomers
//! rather than evicting anyone's dead drop, and each address may hold a bounded number of entries.
//!
//! An entry can only be replaced by its owner: the session that made it, or a later session proving the
//! same public key. A peer id taken over by someone else does not overwrite the dead drops left under it.
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
use crate::peer::{AddressGroup, NO_SESSION, SessionId};
use crate::protocol::Name;
use crate::protocol::message::{DeadDrop, LiveMatch};

/// Entries a lookup may pass over, per list and request, beyond one per point it names: enough for any
/// honest request (a point is shared by two contacts), and a fixed bound for a crafted one.
const PASSED_OVER_PER_LIST: usize = 4096;

/// What one registration found.
#[derive(Debug, Default, PartialEq)]
pub struct Found {
    pub live_matches: Vec<LiveMatch>,
    pub dead_drops: Vec<DeadDrop>,
}

/// Who made an entry, and so who may replace it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub session: SessionId,
    pub address: AddressGroup,
    /// The public key the session registered its peer id with as a pairing code (a relay's announced key
    /// proves nothing and owns nothing).
    pub key: Option<Arc<str>>,
}

impl Owner {
    /// The same session, or a session that registered the same public key.
    fn may_replace(&self, earlier: &Owner) -> bool {
        self.session == earlier.session || (self.key.is_some() && self.key == earlier.key)
    }
}

/// One peer's registration.
#[derive(Debug)]
pub struct Registration<'a> {
    pub peer_id: &'a Name,
    pub relay_id: &'a Arc<str>,
    /// Daily points, each with the dead drop to leave there.
    pub daily_points: &'a [(Name, Option<Arc<str>>)],
    pub hourly_tokens: &'a [Name],
    pub owner: &'a Owner,
}

/// Why a registration was refused as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the rendezvous registry is full")]
    RegistryFull,
    #[error("this address holds as many rendezvous entries as it may")]
    AddressFull,
}

/// A daily entry as a durable copy keeps it: everything but the session that made it, which does not
/// outlive the server.
#[derive(Clone, Debug, PartialEq)]
pub struct DailyEntry {
    pub relay_id: Arc<str>,
    pub dead_drop: Option<Arc<str>>,
    pub expires: Millis,
    pub key: Option<Arc<str>>,
    pub address: AddressGroup,
}

/// An entry stored at a daily point, for a durable copy to follow. (Entries leave the copy when they
/// expire, found by their expiry: removals need not be told.)
#[derive(Clone, Debug, PartialEq)]
pub struct DailyChange {
    pub point: Name,
    pub peer_id: Name,
    pub entry: DailyEntry,
    /// The expiry of the earlier entry this one replaced, if it replaced one.
    pub replaces: Option<Millis>,
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
    owner: Owner,
    /// Where the peer stands in its point's `findable`, if others can find it.
    findable_slot: Option<usize>,
}

impl Entry {
    fn is_live(&self, now: Millis) -> bool {
        now < self.expires
    }
}

/// What a rendezvous registry holds, beside its entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RendezvousSizes {
    /// Daily points with at least one entry.
    pub daily_points: usize,
    /// Daily entries carrying a dead drop.
    pub dead_drops: usize,
    /// Hourly tokens with at least one entry.
    pub hourly_tokens: usize,
}

/// The entries at one daily point or hourly token.
#[derive(Debug, Default)]
struct Point {
    entries: HashMap<Name, Entry>,
    /// The peers others can find here, densely, so that lookups visit only them.
    findable: Vec<Name>,
}

impl Point {
    fn make_findable(&mut self, peer_id: &Name, findable: bool) {
        let slot = self
            .entries
            .get(peer_id)
            .and_then(|entry| entry.findable_slot);
        match (findable, slot) {
            (true, None) => {
                let slot = self.findable.len();
                self.findable.push(peer_id.clone());
                if let Some(entry) = self.entries.get_mut(peer_id) {
                    entry.findable_slot = Some(slot);
                }
            }
            (false, Some(slot)) => {
                if let Some(entry) = self.entries.get_mut(peer_id) {
                    entry.findable_slot = None;
                }
                self.findable.swap_remove(slot);
                if let Some(moved) = self.findable.get(slot)
                    && let Some(entry) = self.entries.get_mut(moved)
                {
                    entry.findable_slot = Some(slot);
                }
            }
            _ => {}
        }
    }

    fn remove(&mut self, peer_id: &str) -> Option<Entry> {
        let name = self.entries.get_key_value(peer_id)?.0.clone();
        self.make_findable(&name, false);
        self.entries.remove(peer_id)
    }
}

/// What became of one entry a registration asked to store.
#[derive(Debug, PartialEq, Eq)]
enum Stored {
    New,
    /// Replaced an entry that would have expired at this time.
    Replaced(Millis),
    /// Another owner's entry stays in its place.
    Kept,
    /// The point holds as many peers as it may.
    PointFull,
}

/// The entry an expiry item stands for.
#[derive(Debug)]
struct ExpiryItem {
    point: Name,
    peer_id: Name,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Daily,
    Hourly,
}

/// The entries of one kind (daily or hourly): point → peer → entry, with their expiry index.
#[derive(Debug)]
struct Table {
    kind: Kind,
    ttl: Millis,
    points: HashMap<Name, Point>,
    expiry: Deadlines<ExpiryItem>,
    /// Entries others can find, at every point: for daily points, the dead drops.
    findable: usize,
}

impl Table {
    fn new(kind: Kind, ttl: Millis) -> Self {
        Self {
            kind,
            ttl,
            points: HashMap::new(),
            expiry: Deadlines::default(),
            findable: 0,
        }
    }

    fn len(&self) -> usize {
        self.expiry.len()
    }

    fn is_findable(&self, dead_drop: &Option<Arc<str>>) -> bool {
        self.kind == Kind::Hourly || dead_drop.is_some()
    }

    /// Whether storing `owner`'s entry for `peer_id` at `point` would add an entry to `owner`'s address.
    fn would_add(&self, point: &Name, peer_id: &Name, owner: &Owner, max_peers: usize) -> bool {
        match self.points.get(point) {
            None => true,
            Some(at_point) => match at_point.entries.get(peer_id) {
                Some(existing) => {
                    owner.may_replace(&existing.owner) && existing.owner.address != owner.address
                }
                None => at_point.entries.len() < max_peers,
            },
        }
    }

    /// Stores a peer's entry at a point, or replaces it, expiring at `expires`; see [`Stored`].
    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        point: &Name,
        peer_id: &Name,
        relay_id: &Arc<str>,
        dead_drop: Option<Arc<str>>,
        owner: &Owner,
        expires: Millis,
        max_peers: usize,
        per_address: &mut HashMap<AddressGroup, usize>,
    ) -> Stored {
        let findable = self.is_findable(&dead_drop);
        let at_point = self.points.entry(point.clone()).or_default();
        let findable_before = at_point.findable.len();
        if let Some(existing) = at_point.entries.get_mut(peer_id) {
            if !owner.may_replace(&existing.owner) {
                return Stored::Kept;
            }
            if existing.owner.address != owner.address {
                forget_one(per_address, existing.owner.address);
                *per_address.entry(owner.address).or_default() += 1;
            }
            let replaced = existing.expires;
            existing.relay_id = relay_id.clone();
            existing.dead_drop = dead_drop;
            existing.expires = expires;
            existing.owner = owner.clone();
            at_point.make_findable(peer_id, findable);
            self.findable = self.findable + at_point.findable.len() - findable_before;
            return Stored::Replaced(replaced);
        }
        if at_point.entries.len() >= max_peers {
            return Stored::PointFull;
        }
        let deadline = self.expiry.insert(
            expires,
            ExpiryItem {
                point: point.clone(),
                peer_id: peer_id.clone(),
            },
        );
        at_point.entries.insert(
            peer_id.clone(),
            Entry {
                relay_id: relay_id.clone(),
                dead_drop,
                expires,
                deadline,
                owner: owner.clone(),
                findable_slot: None,
            },
        );
        at_point.make_findable(peer_id, findable);
        self.findable = self.findable + at_point.findable.len() - findable_before;
        *per_address.entry(owner.address).or_default() += 1;
        Stored::New
    }

    /// Removes an entry and its expiry item.
    fn remove(
        &mut self,
        point: &str,
        peer_id: &str,
        per_address: &mut HashMap<AddressGroup, usize>,
    ) {
        if let Some(entry) = self.remove_entry(point, peer_id) {
            self.expiry.remove(entry.deadline);
            forget_one(per_address, entry.owner.address);
        }
    }

    /// Removes an entry from the point maps only.
    fn remove_entry(&mut self, point: &str, peer_id: &str) -> Option<Entry> {
        let at_point = self.points.get_mut(point)?;
        let findable_before = at_point.findable.len();
        let removed = at_point.remove(peer_id);
        self.findable = self.findable + at_point.findable.len() - findable_before;
        if at_point.entries.is_empty() {
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
        per_address: &mut HashMap<AddressGroup, usize>,
        mut on_removed: impl FnMut(Name, Name),
    ) -> bool {
        for _ in 0..budget {
            let Some(item) = self.expiry.pop_due(now) else {
                return true;
            };
            let Some(entry) = self
                .points
                .get_mut(&item.point)
                .and_then(|at_point| at_point.entries.get_mut(&item.peer_id))
            else {
                debug_assert!(false, "every expiry item stands for an entry");
                continue;
            };
            if entry.is_live(now) {
                entry.deadline = self.expiry.insert(entry.expires, item);
            } else if let Some(removed) =
                self.remove_entry(item.point.as_str(), item.peer_id.as_str())
            {
                forget_one(per_address, removed.owner.address);
                on_removed(item.point, item.peer_id);
            }
        }
        !self.expiry.any_due(now)
    }
}

/// Takes one entry off an address's count.
fn forget_one(per_address: &mut HashMap<AddressGroup, usize>, address: AddressGroup) {
    if let Some(count) = per_address.get_mut(&address) {
        *count -= 1;
        if *count == 0 {
            per_address.remove(&address);
        }
    }
}

/// One list being collected for a reply: bounded in length and in the entries it may pass over.
struct Collecting<'a, T> {
    found: &'a mut Vec<T>,
    max_results: usize,
    passed_over: usize,
    may_pass_over: usize,
}

impl<T> Collecting<'_, T> {
    fn is_done(&self) -> bool {
        self.found.len() >= self.max_results || self.passed_over >= self.may_pass_over
    }

    /// Looks through what others can find at `point`, listing each other live peer not listed yet.
    fn look_at(
        &mut self,
        table: &Table,
        point: &Name,
        peer_id: &Name,
        now: Millis,
        seen: &mut HashSet<Name>,
        make: impl Fn(&Name, &Entry) -> T,
    ) {
        let Some(at_point) = table.points.get(point) else {
            return;
        };
        for other in &at_point.findable {
            if self.is_done() {
                return;
            }
            let entry = &at_point.entries[other];
            if other == peer_id || !entry.is_live(now) || !seen.insert(other.clone()) {
                self.passed_over += 1;
                continue;
            }
            self.found.push(make(other, entry));
        }
    }
}

#[derive(Debug)]
pub struct RendezvousRegistry {
    /// Entries in each of `liveMatches` and `deadDrops` of one reply.
    max_results: usize,
    /// Peers at one daily point, and at one hourly token.
    max_peers_per_point: usize,
    /// Entries in all, daily and hourly.
    max_entries: usize,
    /// Entries made from one address.
    max_entries_per_address: usize,
    daily: Table,
    hourly: Table,
    /// The hourly tokens each peer holds, so that a peer's live entries go when its session does.
    hourly_by_peer: HashMap<Name, HashSet<Name>>,
    /// Entries held per address.
    per_address: HashMap<AddressGroup, usize>,
    /// Peers already reported in the registration being answered; kept to reuse its allocation.
    seen: HashSet<Name>,
    /// Changes to daily entries since the caller last took them.
    daily_changes: Vec<DailyChange>,
}

impl RendezvousRegistry {
    pub fn new(config: &RendezvousConfig) -> Self {
        Self {
            max_results: config.max_rendezvous_results,
            max_peers_per_point: config.max_peers_per_point,
            max_entries: config.max_rendezvous_entries,
            max_entries_per_address: config.max_rendezvous_entries_per_ip,
            daily: Table::new(Kind::Daily, config.daily_ttl()),
            hourly: Table::new(Kind::Hourly, config.hourly_ttl()),
            hourly_by_peer: HashMap::new(),
            per_address: HashMap::new(),
            seen: HashSet::new(),
            daily_changes: Vec::new(),
        }
    }

    /// Collects what other peers left at these points and tokens, then stores this peer's entries
    /// (replacing its earlier ones at the same points and tokens, where it owns them). Each other peer
    /// appears at most once in each list, named with the first point or token where it was found; each
    /// list holds at most `max_results` entries. Refused as a whole, storing nothing, when the entries it
    /// would add do not fit the registry or its owner's address.
    ///
    /// If `now` went back between calls, entries would still expire correctly for lookups, but the sweep
    /// might reach some of them late; the server's clock is monotonic.
    pub fn register(
        &mut self,
        now: Millis,
        registration: &Registration<'_>,
    ) -> Result<Found, Refused> {
        let Registration {
            peer_id,
            relay_id,
            daily_points,
            hourly_tokens,
            owner,
        } = *registration;
        let max_peers = self.max_peers_per_point;
        let adding = daily_points
            .iter()
            .filter(|(point, _)| self.daily.would_add(point, peer_id, owner, max_peers))
            .count()
            + hourly_tokens
                .iter()
                .filter(|token| self.hourly.would_add(token, peer_id, owner, max_peers))
                .count();
        if self.len() + adding > self.max_entries {
            return Err(Refused::RegistryFull);
        }
        let held = self.per_address.get(&owner.address).copied().unwrap_or(0);
        if held + adding > self.max_entries_per_address {
            return Err(Refused::AddressFull);
        }

        let mut found = Found::default();
        let mut dead_drops = Collecting {
            found: &mut found.dead_drops,
            max_results: self.max_results,
            passed_over: 0,
            may_pass_over: daily_points.len() + PASSED_OVER_PER_LIST,
        };
        for (point, dead_drop) in daily_points {
            dead_drops.look_at(
                &self.daily,
                point,
                peer_id,
                now,
                &mut self.seen,
                |other, entry| DeadDrop {
                    peer_id: other.clone(),
                    dead_drop: entry
                        .dead_drop
                        .clone()
                        .expect("findable daily entries have a drop"),
                    relay_id: entry.relay_id.clone(),
                    meeting_point: point.clone(),
                },
            );
            let stored = self.daily.store(
                point,
                peer_id,
                relay_id,
                dead_drop.clone(),
                owner,
                now.saturating_add(self.daily.ttl),
                max_peers,
                &mut self.per_address,
            );
            let replaces = match stored {
                Stored::New => None,
                Stored::Replaced(expires) => Some(expires),
                Stored::Kept | Stored::PointFull => continue,
            };
            self.daily_changes.push(DailyChange {
                point: point.clone(),
                peer_id: peer_id.clone(),
                entry: DailyEntry {
                    relay_id: relay_id.clone(),
                    dead_drop: dead_drop.clone(),
                    expires: now.saturating_add(self.daily.ttl),
                    key: owner.key.clone(),
                    address: owner.address,
                },
                replaces,
            });
        }
        self.forget_seen();

        let mut live_matches = Collecting {
            found: &mut found.live_matches,
            max_results: self.max_results,
            passed_over: 0,
            may_pass_over: hourly_tokens.len() + PASSED_OVER_PER_LIST,
        };
        for token in hourly_tokens {
            live_matches.look_at(
                &self.hourly,
                token,
                peer_id,
                now,
                &mut self.seen,
                |other, entry| LiveMatch {
                    peer_id: other.clone(),
                    relay_id: entry.relay_id.clone(),
                    meeting_point: token.clone(),
                },
            );
            let stored = self.hourly.store(
                token,
                peer_id,
                relay_id,
                None,
                owner,
                now.saturating_add(self.hourly.ttl),
                max_peers,
                &mut self.per_address,
            );
            if stored == Stored::New {
                self.hourly_by_peer
                    .entry(peer_id.clone())
                    .or_default()
                    .insert(token.clone());
            }
        }
        self.forget_seen();
        Ok(found)
    }

    /// Puts back a daily entry a durable copy kept. It belongs to no live session: only a session
    /// proving its key may replace it.
    pub fn restore_daily(&mut self, point: &Name, peer_id: &Name, entry: DailyEntry) {
        let owner = Owner {
            session: NO_SESSION,
            address: entry.address,
            key: entry.key,
        };
        self.daily.store(
            point,
            peer_id,
            &entry.relay_id,
            entry.dead_drop,
            &owner,
            entry.expires,
            usize::MAX,
            &mut self.per_address,
        );
    }

    /// The changes to daily entries since the last call, oldest first.
    pub fn take_daily_changes(&mut self) -> Vec<DailyChange> {
        std::mem::take(&mut self.daily_changes)
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
            self.hourly
                .remove(token.as_str(), peer_id, &mut self.per_address);
        }
    }

    /// Removes expired entries, visiting at most `budget` expiry items so that one call never holds the
    /// caller's lock for long.
    pub fn sweep(&mut self, now: Millis, budget: usize) -> Swept {
        let mut removed = 0;
        let daily_done = self
            .daily
            .sweep(now, budget, &mut self.per_address, |_, _| removed += 1);
        let hourly_by_peer = &mut self.hourly_by_peer;
        let hourly_done =
            self.hourly
                .sweep(now, budget, &mut self.per_address, |token, peer_id| {
                    removed += 1;
                    forget_hourly_token(hourly_by_peer, &peer_id, &token);
                });
        Swept {
            removed,
            done: daily_done && hourly_done,
        }
    }

    /// What the registry holds, expired or not.
    pub fn sizes(&self) -> RendezvousSizes {
        RendezvousSizes {
            daily_points: self.daily.points.len(),
            dead_drops: self.daily.findable,
            hourly_tokens: self.hourly.points.len(),
        }
    }

    /// Stored entries, expired or not, daily and hourly together.
    pub fn len(&self) -> usize {
        self.daily.len() + self.hourly.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries made from `address`, expired or not.
    pub fn held_by(&self, address: AddressGroup) -> usize {
        self.per_address.get(&address).copied().unwrap_or(0)
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
        owner: Owner,
    }

    fn address(last: u8) -> AddressGroup {
        AddressGroup::from(std::net::IpAddr::from([192, 0, 2, last]))
    }

    impl Peer {
        /// A peer whose session is named after its id, so that the same id is the same owner.
        fn new(id: &str, relay: &str) -> Self {
            let session = id.bytes().fold(0, |hash: u64, b| hash * 31 + u64::from(b));
            Self::owned(id, relay, session, None)
        }

        fn owned(id: &str, relay: &str, session: SessionId, key: Option<&str>) -> Self {
            Self {
                id: name(id),
                relay: relay.into(),
                owner: Owner {
                    session,
                    address: address(1),
                    key: key.map(Arc::from),
                },
            }
        }

        fn at_address(mut self, last: u8) -> Self {
            self.owner.address = address(last);
            self
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
            registry
                .register(
                    now,
                    &Registration {
                        peer_id: &self.id,
                        relay_id: &self.relay,
                        daily_points: &points,
                        hourly_tokens: &[],
                        owner: &self.owner,
                    },
                )
                .expect("room for the entries")
        }

        fn hourly(&self, registry: &mut RendezvousRegistry, now: Millis, tokens: &[&str]) -> Found {
            let tokens: Vec<_> = tokens.iter().map(|t| name(t)).collect();
            registry
                .register(
                    now,
                    &Registration {
                        peer_id: &self.id,
                        relay_id: &self.relay,
                        daily_points: &[],
                        hourly_tokens: &tokens,
                        owner: &self.owner,
                    },
                )
                .expect("room for the entries")
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
    fn a_full_point_refuses_newcomers_and_keeps_everyones_dead_drop() {
        let config = RendezvousConfig {
            max_peers_per_point: 3,
            ..RendezvousConfig::default()
        };
        let mut registry = RendezvousRegistry::new(&config);
        for peer in ["p0", "p1", "p2", "p3"] {
            Peer::new(peer, "").daily(&mut registry, START, &[("crowded", Some(peer))]);
        }
        assert_eq!(registry.len(), 3, "p3 was not stored");
        let mut found: Vec<_> = Peer::new("probe", "")
            .daily(&mut registry, START + 1, &[("crowded", None)])
            .dead_drops
            .into_iter()
            .map(|drop| drop.peer_id.to_string())
            .collect();
        found.sort();
        assert_eq!(found, ["p0", "p1", "p2"], "nobody's dead drop made room");
        assert_eq!(registry.len(), 3, "nor did the probe's entry");
        // The owners still update their own entries at the full point.
        Peer::new("p1", "").daily(&mut registry, START + 2, &[("crowded", Some("new"))]);
        let found = Peer::new("probe", "").daily(&mut registry, START + 3, &[("crowded", None)]);
        assert!(
            found
                .dead_drops
                .iter()
                .any(|drop| &*drop.dead_drop == "new")
        );
    }

    #[test]
    fn a_peer_id_taken_over_by_another_owner_keeps_the_earlier_dead_drop() {
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
        let victim = Peer::owned("PHONE2", "", 1, Some("victim-key"));
        victim.daily(&mut registry, START, &[("d", Some("for-my-contact"))]);
        let thief = Peer::owned("PHONE2", "", 2, Some("thief-key"));
        thief.daily(&mut registry, START + 1, &[("d", Some("forged"))]);
        let keyless = Peer::owned("PHONE2", "", 3, None);
        keyless.daily(&mut registry, START + 2, &[("d", Some("forged"))]);
        let found = Peer::new("contact", "").daily(&mut registry, START + 3, &[("d", None)]);
        assert_eq!(&*found.dead_drops[0].dead_drop, "for-my-contact");
        // The owner, back with its key on a new session, replaces it.
        let returning = Peer::owned("PHONE2", "", 4, Some("victim-key"));
        returning.daily(&mut registry, START + 4, &[("d", Some("updated"))]);
        let found = Peer::new("contact", "").daily(&mut registry, START + 5, &[("d", None)]);
        assert_eq!(&*found.dead_drops[0].dead_drop, "updated");
    }

    #[test]
    fn one_address_holds_a_bounded_number_of_entries() {
        let config = RendezvousConfig {
            max_rendezvous_entries_per_ip: 4,
            ..RendezvousConfig::default()
        };
        let mut registry = RendezvousRegistry::new(&config);
        let points: Vec<_> = (0..3).map(|i| (name(&format!("d{i}")), None)).collect();
        let register = |registry: &mut RendezvousRegistry, peer: &Peer, points| {
            registry.register(
                START,
                &Registration {
                    peer_id: &peer.id,
                    relay_id: &peer.relay,
                    daily_points: points,
                    hourly_tokens: &[],
                    owner: &peer.owner,
                },
            )
        };
        let first = Peer::new("first", "");
        register(&mut registry, &first, &points).unwrap();
        register(&mut registry, &first, &points).expect("re-registering adds nothing");
        let second = Peer::new("second", "");
        assert_eq!(
            register(&mut registry, &second, &points),
            Err(Refused::AddressFull),
            "3 more would make 6"
        );
        assert_eq!(registry.len(), 3, "a refused registration stores nothing");
        let elsewhere = Peer::new("second", "").at_address(2);
        register(&mut registry, &elsewhere, &points).expect("another address has room");
        assert_eq!(registry.held_by(address(1)), 3);
        assert_eq!(registry.held_by(address(2)), 3);
        registry.sweep(START + 48 * HOUR, usize::MAX);
        assert_eq!(
            registry.held_by(address(1)),
            0,
            "expired entries leave the count"
        );
    }

    #[test]
    fn lookups_pass_over_a_bounded_number_of_entries_whatever_others_stored() {
        let mut registry = RendezvousRegistry::new(&RendezvousConfig {
            max_rendezvous_entries_per_ip: 5_000_000,
            ..RendezvousConfig::default()
        });
        // 50 peers, each at the same 1000 hourly tokens: every token after the first holds only peers
        // already listed.
        let tokens: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        for i in 0..50 {
            Peer::new(&format!("crowd{i}"), "").hourly(&mut registry, START, &tokens);
        }
        let probe = Peer::new("probe", "");
        let found = probe.hourly(&mut registry, START, &tokens);
        assert_eq!(found.live_matches.len(), 50);
        // Daily points without dead drops cost lookups nothing.
        let points: Vec<_> = tokens.iter().map(|t| (*t, None)).collect();
        for i in 0..50 {
            Peer::new(&format!("crowd{i}"), "").daily(&mut registry, START, &points);
        }
        let mut passed_over = Collecting {
            found: &mut Vec::new(),
            max_results: 100,
            passed_over: 0,
            may_pass_over: usize::MAX,
        };
        for point in &tokens {
            passed_over.look_at(
                &registry.daily,
                &name(point),
                &probe.id,
                START,
                &mut HashSet::new(),
                |_, _| (),
            );
        }
        assert_eq!(passed_over.passed_over, 0, "no findable entry at any point");
        let mut bounded = Collecting {
            found: &mut Vec::new(),
            max_results: 100,
            passed_over: 0,
            may_pass_over: 10,
        };
        let mut seen = HashSet::new();
        for token in &tokens {
            bounded.look_at(
                &registry.hourly,
                &name(token),
                &probe.id,
                START,
                &mut seen,
                |_, _| (),
            );
        }
        assert_eq!(bounded.found.len(), 50, "the crowd, once each");
        assert_eq!(bounded.passed_over, 10, "then it stopped looking");
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

    #[test]
    fn sizes_follow_stores_replacements_removals_and_expiry() {
        let mut registry = RendezvousRegistry::new(&RendezvousConfig::default());
        let sizes = |registry: &RendezvousRegistry| {
            let RendezvousSizes {
                daily_points,
                dead_drops,
                hourly_tokens,
            } = registry.sizes();
            (daily_points, dead_drops, hourly_tokens)
        };
        let alice = Peer::new("alice", "ra");
        let bob = Peer::new("bob", "rb");
        alice.daily(&mut registry, START, &[("d1", Some("x")), ("d2", None)]);
        bob.daily(&mut registry, START, &[("d1", Some("y"))]);
        alice.hourly(&mut registry, START, &["t1", "t2"]);
        bob.hourly(&mut registry, START, &["t1"]);
        assert_eq!(sizes(&registry), (2, 2, 2));
        // Replacing a drop with none, and none with a drop.
        alice.daily(&mut registry, START, &[("d1", None), ("d2", Some("z"))]);
        assert_eq!(sizes(&registry), (2, 2, 2));
        alice.daily(&mut registry, START, &[("d1", None), ("d2", None)]);
        assert_eq!(sizes(&registry), (2, 1, 2));
        registry.remove_hourly("alice");
        assert_eq!(sizes(&registry), (2, 1, 1));
        registry.sweep(START + 48 * HOUR, usize::MAX);
        assert_eq!(sizes(&registry), (0, 0, 0));
    }

    #[test]
    fn daily_changes_follow_what_is_stored_and_restore_keeps_the_owner() {
        let config = RendezvousConfig::default();
        let mut registry = RendezvousRegistry::new(&config);
        let alice = Peer::owned("alice", "relay-a", 7, Some("alice-key"));
        alice.daily(&mut registry, START, &[("point1", Some("sealed"))]);
        alice.hourly(&mut registry, START, &["token1"]);
        let changes = registry.take_daily_changes();
        let stored = DailyEntry {
            relay_id: "relay-a".into(),
            dead_drop: Some("sealed".into()),
            expires: START + config.daily_ttl(),
            key: Some("alice-key".into()),
            address: address(1),
        };
        assert_eq!(
            changes,
            [DailyChange {
                point: name("point1"),
                peer_id: name("alice"),
                entry: stored.clone(),
                replaces: None,
            }]
        );
        assert_eq!(registry.take_daily_changes(), []);
        alice.daily(&mut registry, START + 5, &[("point1", None)]);
        let replaced = registry.take_daily_changes();
        assert_eq!(replaced[0].replaces, Some(START + config.daily_ttl()));
        assert_eq!(replaced[0].entry.dead_drop, None);

        let mut restored = RendezvousRegistry::new(&config);
        restored.restore_daily(&name("point1"), &name("alice"), stored);
        let thief = Peer::owned("alice", "relay-t", 8, Some("other-key"));
        thief.daily(&mut restored, START + 1, &[("point1", Some("forged"))]);
        let bob = Peer::new("bob", "relay-b");
        let found = bob.daily(&mut restored, START + 2, &[("point1", None)]);
        assert_eq!(found.dead_drops[0].dead_drop.as_ref(), "sealed");
        let owner = Peer::owned("alice", "relay-a", 9, Some("alice-key"));
        owner.daily(&mut restored, START + 3, &[("point1", Some("renewed"))]);
        assert!(matches!(
            restored.take_daily_changes().last(),
            Some(DailyChange { entry, replaces: Some(_), .. })
                if entry.dead_drop.as_deref() == Some("renewed")
        ));
    }
}
