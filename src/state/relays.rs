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
        if self.bind_relay_id(session, peer_id, true).await?.is_err() {
            if let Some(cluster) = self.cluster() {
                cluster
                    .release(peer_id.as_str(), session.id, Role::RelayId, 0)
                    .await?;
            }
            return Ok(Err(NameTaken));
        }
        let (name, key) = (peer_id.clone(), public_key.clone());
        // In cluster mode the listing is kept here too, to be listed again if Redis loses it.
        let listed_here = self
            .run(move |registries, _| {
                registries
                    .relays
                    .register(name.clone(), max_connections, key);
                (!registries.clustered).then(|| {
                    registries
                        .relays
                        .available(name.as_str(), count, &mut registries.rng)
                })
            })
            .await?;
        match (self.cluster(), listed_here) {
            (Some(cluster), _) => Ok(Ok(cluster
                .register_relay(
                    session.id,
                    peer_id,
                    max_connections,
                    public_key.as_ref(),
                    count,
                )
                .await?)),
            (None, listed) => Ok(Ok(listed.unwrap_or_default())),
        }
    }

    /// Binds `peer_id` to the session as its relay id in this node's record of its sessions.
    pub(super) async fn bind_relay_id(
        &self,
        session: &Recipient,
        peer_id: &Name,
        listed: bool,
    ) -> Result<Result<(), NameTaken>, StateFailed> {
        let (session, peer_id) = (session.clone(), peer_id.clone());
        self.run(move |registries, now| {
            registries
                .owners
                .bind(&peer_id, &session, Role::RelayId, None, now)?;
            let names = registries.held.entry(session.id).or_default();
            names.relay_id = Some(peer_id);
            names.relay_listed |= listed;
            Ok(())
        })
        .await
    }

    /// Sets the load of the session's listed relay.
    pub async fn update_load(
        &self,
        session: &Recipient,
        peer_id: &Name,
        connected_count: u32,
    ) -> Result<(), StateFailed> {
        if let Some(cluster) = self.cluster() {
            cluster
                .update_load(session.id, peer_id, connected_count)
                .await?;
        }
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
        if let Some(cluster) = self.cluster() {
            return Ok(cluster.list_relays(exclude, count).await?);
        }
        let exclude = exclude.clone();
        self.run(move |registries, _| {
            registries
                .relays
                .available(exclude.as_str(), count, &mut registries.rng)
        })
        .await
    }
}
