//! The rendezvous family's operations: register points and tokens (pushing live matches to the peers
//! found), and reclaim expired entries.

use super::owners::Role;
use super::{Recipient, SharedState};
use crate::protocol::ServerMessage;
use crate::protocol::message::LiveMatch;
use crate::registry::{Found, Registration, Swept};

/// Entries removed per lock acquisition while sweeping, so that requests wait at most one small batch.
const SWEEP_BATCH: usize = 4096;

/// Why a rendezvous registration was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RendezvousRefused {
    #[error("the rendezvous registry is full")]
    Full,
    #[error("the peer id is held by another session")]
    PeerIdTaken,
}

impl SharedState {
    /// Registers a peer's daily points and hourly tokens, returns what other peers left there, and pushes
    /// `rendezvous_match` to each peer found at an hourly token. With `bind_peer_id`, the peer id first
    /// becomes the session's name (legacy clients register rendezvous without `register`), without
    /// listing it as a relay.
    pub fn register_rendezvous(
        &self,
        session: &Recipient,
        bind_peer_id: bool,
        registration: &Registration<'_>,
    ) -> Result<Found, RendezvousRefused> {
        let now = self.now();
        let mut registries = self.lock();
        // Counting every point as new is conservative (re-registrations replace), and O(1).
        let adding = registration.daily_points.len() + registration.hourly_tokens.len();
        if registries.rendezvous.len() + adding > self.0.max_rendezvous_entries {
            return Err(RendezvousRefused::Full);
        }
        if bind_peer_id {
            registries
                .owners
                .bind(registration.peer_id, session, Role::RelayId)
                .map_err(|_| RendezvousRefused::PeerIdTaken)?;
        }
        let found = registries.rendezvous.register(now, registration);
        for earlier in &found.live_matches {
            registries.owners.push(
                earlier.peer_id.as_str(),
                ServerMessage::RendezvousMatch {
                    peer: LiveMatch {
                        peer_id: registration.peer_id.clone(),
                        relay_id: registration.relay_id.clone(),
                        meeting_point: earlier.meeting_point.clone(),
                    },
                },
            );
        }
        Ok(found)
    }

    /// Removes up to one batch of rendezvous entries whose time has passed, under one short hold of the
    /// lock. Call again while it reports it is not done.
    pub fn sweep_expired_batch(&self) -> Swept {
        let now = self.now();
        self.lock().rendezvous.sweep(now, SWEEP_BATCH)
    }
}
