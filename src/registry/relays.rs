//! The relay registry: peers offering to relay, with their capacity and load.
//!
//! Peers under half load are also kept, already in their reply form, in a dense vector: picking `count`
//! of them at random is a sample of `count` indices and a copy of each, independent of how many peers
//! are registered.

use std::collections::HashMap;
use std::sync::Arc;

use rand::Rng;

use crate::protocol::Name;
use crate::protocol::message::RelayInfo;

#[derive(Debug)]
struct Relay {
    max_connections: u32,
    connected_count: u32,
    public_key: Option<Arc<str>>,
    /// Position in `available`, while under half load.
    available_slot: Option<usize>,
}

impl Relay {
    fn is_under_half_load(&self) -> bool {
        u64::from(self.connected_count) * 2 < u64::from(self.max_connections)
    }

    fn info(&self, peer_id: &Name) -> RelayInfo {
        RelayInfo {
            peer_id: peer_id.clone(),
            public_key: self.public_key.clone(),
            capacity: f64::from(self.connected_count) / f64::from(self.max_connections),
        }
    }
}

#[derive(Debug, Default)]
pub struct RelayRegistry {
    relays: HashMap<Name, Relay>,
    available: Vec<RelayInfo>,
}

impl RelayRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a relay, or re-registers it: capacity and key are replaced and the load starts at zero.
    pub fn register(&mut self, peer_id: Name, max_connections: u32, public_key: Option<Arc<str>>) {
        let slot = self.relays.get(&peer_id).and_then(|r| r.available_slot);
        self.relays.insert(
            peer_id.clone(),
            Relay {
                max_connections: max_connections.max(1),
                connected_count: 0,
                public_key,
                available_slot: slot,
            },
        );
        self.refresh_availability(peer_id.as_str());
    }

    /// A registered relay's capacity, load and key.
    pub fn listing(&self, peer_id: &str) -> Option<(u32, u32, Option<Arc<str>>)> {
        self.relays.get(peer_id).map(|relay| {
            (
                relay.max_connections,
                relay.connected_count,
                relay.public_key.clone(),
            )
        })
    }

    /// Sets a relay's load. Returns false when the peer is not registered.
    pub fn update_load(&mut self, peer_id: &str, connected_count: u32) -> bool {
        let Some(relay) = self.relays.get_mut(peer_id) else {
            return false;
        };
        relay.connected_count = connected_count;
        self.refresh_availability(peer_id);
        true
    }

    /// Removes a relay. Returns false when it was not registered.
    pub fn unregister(&mut self, peer_id: &str) -> bool {
        let Some(relay) = self.relays.remove(peer_id) else {
            return false;
        };
        if let Some(slot) = relay.available_slot {
            self.remove_available(slot);
        }
        true
    }

    pub fn get(&self, peer_id: &str) -> Option<RelayInfo> {
        let (name, relay) = self.relays.get_key_value(peer_id)?;
        Some(relay.info(name))
    }

    pub fn len(&self) -> usize {
        self.relays.len()
    }

    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// At most `count` relays under half load, never `exclude`, in a uniformly random order.
    /// Costs O(count), whatever the number of registered relays.
    pub fn available(&self, exclude: &str, count: usize, rng: &mut impl Rng) -> Vec<RelayInfo> {
        let excluded_slot = self.relays.get(exclude).and_then(|r| r.available_slot);
        let candidates = self.available.len() - usize::from(excluded_slot.is_some());
        let wanted = count.min(candidates);
        if wanted == 0 {
            return Vec::new();
        }
        // One extra index when the asker is among the available: dropping it (or, if it was not drawn,
        // the last index) leaves a uniform random ordered sample of the others.
        let draw = (wanted + usize::from(excluded_slot.is_some())).min(self.available.len());
        rand::seq::index::sample(rng, self.available.len(), draw)
            .into_iter()
            .filter(|&slot| Some(slot) != excluded_slot)
            .take(wanted)
            .map(|slot| self.available[slot].clone())
            .collect()
    }

    /// Puts a relay into the available set, updates its entry there, or takes it out, as its load says.
    fn refresh_availability(&mut self, peer_id: &str) {
        let (name, relay) = self
            .relays
            .get_key_value(peer_id)
            .expect("refreshing a registered relay");
        match (relay.is_under_half_load(), relay.available_slot) {
            (true, Some(slot)) => self.available[slot] = relay.info(name),
            (true, None) => {
                let info = relay.info(name);
                let slot = self.available.len();
                self.available.push(info);
                self.relays
                    .get_mut(peer_id)
                    .expect("present")
                    .available_slot = Some(slot);
            }
            (false, Some(slot)) => {
                self.relays
                    .get_mut(peer_id)
                    .expect("present")
                    .available_slot = None;
                self.remove_available(slot);
            }
            (false, None) => {}
        }
    }

    fn remove_available(&mut self, slot: usize) {
        self.available.swap_remove(slot);
        if let Some(moved) = self.available.get(slot) {
            self.relays
                .get_mut(&moved.peer_id)
                .expect("available relays are registered")
                .available_slot = Some(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn name(text: &str) -> Name {
        Name::try_from(text).unwrap()
    }

    fn ids(relays: &[RelayInfo]) -> Vec<&str> {
        relays.iter().map(|r| r.peer_id.as_str()).collect()
    }

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(7)
    }

    #[test]
    fn registers_a_relay_with_its_capacity_info() {
        let mut registry = RelayRegistry::new();
        registry.register(name("relay1"), 50, Some("pk1".into()));
        let info = registry.get("relay1").unwrap();
        assert_eq!(info.public_key.as_deref(), Some("pk1"));
        assert_eq!(info.capacity, 0.0);
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn re_registering_replaces_capacity_key_and_resets_load() {
        let mut registry = RelayRegistry::new();
        registry.register(name("relay1"), 10, Some("old".into()));
        registry.update_load("relay1", 4);
        registry.register(name("relay1"), 40, Some("new".into()));
        let info = registry.get("relay1").unwrap();
        assert_eq!(info.public_key.as_deref(), Some("new"));
        assert_eq!(info.capacity, 0.0);
        registry.update_load("relay1", 10);
        assert_eq!(registry.get("relay1").unwrap().capacity, 0.25);
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn only_relays_under_half_load_are_available() {
        let mut registry = RelayRegistry::new();
        for (id, load) in [("low", 4), ("half", 5), ("high", 9)] {
            registry.register(name(id), 10, None);
            registry.update_load(id, load);
        }
        assert_eq!(ids(&registry.available("asker", 10, &mut rng())), ["low"]);
    }

    #[test]
    fn the_asking_peer_is_never_returned() {
        let mut registry = RelayRegistry::new();
        registry.register(name("me"), 10, None);
        registry.register(name("other"), 10, None);
        for seed in 0..50 {
            let relays = registry.available("me", 10, &mut SmallRng::seed_from_u64(seed));
            assert_eq!(ids(&relays), ["other"]);
            let relays = registry.available("me", 1, &mut SmallRng::seed_from_u64(seed));
            assert_eq!(ids(&relays), ["other"]);
        }
    }

    #[test]
    fn at_most_count_relays_are_returned() {
        let mut registry = RelayRegistry::new();
        for i in 0..30 {
            registry.register(name(&format!("r{i}")), 10, None);
        }
        assert_eq!(registry.available("asker", 5, &mut rng()).len(), 5);
        assert_eq!(registry.available("r3", 29, &mut rng()).len(), 29);
        assert_eq!(registry.available("r3", 100, &mut rng()).len(), 29);
    }

    #[test]
    fn relays_are_returned_in_a_fresh_random_order() {
        let mut registry = RelayRegistry::new();
        for i in 0..10 {
            registry.register(name(&format!("r{i}")), 10, None);
        }
        let mut rng = rng();
        let first = registry.available("asker", 10, &mut rng);
        let second = registry.available("asker", 10, &mut rng);
        assert_eq!(first.len(), 10);
        assert_ne!(ids(&first), ids(&second));
        let mut sorted_first = ids(&first);
        let mut sorted_second = ids(&second);
        sorted_first.sort();
        sorted_second.sort();
        assert_eq!(sorted_first, sorted_second);
    }

    #[test]
    fn every_relay_is_drawn_about_equally_often() {
        let mut registry = RelayRegistry::new();
        for i in 0..10 {
            registry.register(name(&format!("r{i}")), 10, None);
        }
        let mut first_place = HashMap::<String, u32>::new();
        let mut rng = rng();
        for _ in 0..10_000 {
            let relays = registry.available("r0", 3, &mut rng);
            *first_place
                .entry(relays[0].peer_id.to_string())
                .or_default() += 1;
        }
        assert!(!first_place.contains_key("r0"));
        assert_eq!(first_place.len(), 9);
        // Expected 1111 each; the bound is far outside sampling noise for a seeded run.
        assert!(
            first_place.values().all(|&n| (900..1350).contains(&n)),
            "{first_place:?}"
        );
    }

    #[test]
    fn update_load_sets_the_count_and_moves_relays_in_and_out() {
        let mut registry = RelayRegistry::new();
        registry.register(name("r"), 10, None);
        assert!(registry.update_load("r", 7));
        assert_eq!(registry.get("r").unwrap().capacity, 0.7);
        assert!(registry.available("x", 10, &mut rng()).is_empty());
        assert!(registry.update_load("r", 2));
        assert_eq!(ids(&registry.available("x", 10, &mut rng())), ["r"]);
        assert!(!registry.update_load("unknown", 1));
    }

    #[test]
    fn unregister_removes_the_relay() {
        let mut registry = RelayRegistry::new();
        for i in 0..5 {
            registry.register(name(&format!("r{i}")), 10, None);
        }
        assert!(registry.unregister("r1"));
        assert!(!registry.unregister("r1"));
        assert!(registry.get("r1").is_none());
        let mut remaining = ids(&registry.available("x", 10, &mut rng()))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        remaining.sort();
        assert_eq!(remaining, ["r0", "r2", "r3", "r4"]);
    }
}
