//! The relay family's operations: list a relay under its peer id, report its load, pick relays.

use std::sync::Arc;

use super::owners::Role;
use super::{NameTaken, Recipient, SharedState, StateFailed};
use crate::protocol::Name;
use crate::protocol::message::RelayInfo;

impl SharedState {
    /// Binds `peer_id` to the session as its relay id and lists it (again: capacity and key are replaced,
    /// the load starts at zero). Returns up to `count` other relays under half load.
    pub async fn register_relay(
        &self,
        session: &Recipient,
        peer_id: &Name,
        max_connections: u32,
        public_key: Option<Arc<str>>,
        count: usize,
    ) -> Result<Result<Vec<RelayInfo>, NameTaken>, StateFailed> {
        if let Some(cluster) = self.cluster()
            && !cluster
                .claim(peer_id.as_str(), session.id, Role::RelayId, None)
                .await?
        {
            return Ok(Err(NameTaken));
        }
        let (session, peer_id) = (session.clone(), peer_id.clone());
        self.run(move |registries, now| {
            registries
                .owners
                .bind(&peer_id, &session, Role::RelayId, None, now)?;
            let names = registries.held.entry(session.id).or_default();
            names.relay_id = Some(peer_id.clone());
            names.relay_listed = true;
            registries
                .relays
                .register(peer_id.clone(), max_connections, public_key);
            Ok(registries
                .relays
                .available(peer_id.as_str(), count, &mut registries.rng))
        })
        .await
    }

    /// Sets a listed relay's load.
    pub async fn update_load(
        &self,
        peer_id: &Name,
        connected_count: u32,
    ) -> Result<(), StateFailed> {
        let peer_id = peer_id.clone();
        self.run(move |registries, _| {
            registries
                .relays
                .update_load(peer_id.as_str(), connected_count);
        })
        .await
    }

    /// Up to `count` relays under half load, never `exclude`, in a fresh random order.
    pub async fn list_relays(
        &self,
        exclude: &Name,
        count: usize,
    ) -> Result<Vec<RelayInfo>, StateFailed> {
        let exclude = exclude.clone();
        self.run(move |registries, _| {
            registries
                .relays
                .available(exclude.as_str(), count, &mut registries.rng)
        })
        .await
    }
}
