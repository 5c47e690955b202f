//! The relay family: `register {peerId}`, `update_load`, `get_relays`.

use super::{Failure, Session};
use crate::directory::Role;
use crate::protocol::names::RelayKey;
use crate::protocol::{Name, ServerMessage};

/// Relays listed in a `registered` reply.
const RELAYS_IN_REGISTERED: usize = 10;

impl Session {
    pub(super) fn register_relay(
        &self,
        peer_id: Name,
        max_connections: u32,
        public_key: Option<RelayKey>,
    ) -> Result<ServerMessage, Failure> {
        let mut identity = self.identity();
        if identity
            .relay_id
            .as_ref()
            .is_some_and(|bound| *bound != peer_id)
        {
            return Err(Failure::PeerIdMismatch);
        }
        let mut state = self.hub.state();
        state
            .directory
            .bind(&peer_id, self.id(), &self.pushes, Role::RelayId)
            .map_err(|_| Failure::PeerIdTaken)?;
        identity.relay_id = Some(peer_id.clone());
        identity.relay_registered = true;
        let public_key = public_key.map(RelayKey::into_shared);
        state
            .relays
            .register(peer_id.clone(), max_connections, public_key);
        let state = &mut *state;
        let relays = state
            .relays
            .available(peer_id.as_str(), RELAYS_IN_REGISTERED, &mut state.rng);
        Ok(ServerMessage::RegisteredRelay {
            peer_id,
            server_id: self.hub.settings().server_id.clone(),
            relays,
        })
    }

    pub(super) fn update_load(
        &self,
        peer_id: Name,
        connected_count: u32,
    ) -> Result<ServerMessage, Failure> {
        let identity = self.identity();
        identity.check_acts_as(peer_id.as_str())?;
        if !identity.relay_registered || identity.relay_id.as_ref() != Some(&peer_id) {
            return Err(Failure::NotRegistered);
        }
        self.hub
            .state()
            .relays
            .update_load(peer_id.as_str(), connected_count);
        Ok(ServerMessage::LoadUpdated {
            peer_id,
            connected_count,
        })
    }

    /// Read-only, so an unbound session may ask too; `peerId` is then only the peer to leave out.
    pub(super) fn get_relays(&self, peer_id: Name, count: usize) -> Result<ServerMessage, Failure> {
        self.identity().check_acts_as(peer_id.as_str())?;
        let mut state = self.hub.state();
        let state = &mut *state;
        let relays = state
            .relays
            .available(peer_id.as_str(), count, &mut state.rng);
        Ok(ServerMessage::Relays { relays })
    }
}
