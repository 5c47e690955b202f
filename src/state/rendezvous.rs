//! The rendezvous family's operations: register points and tokens (pushing live matches to the peers
//! found), and reclaim expired entries.

use std::sync::Arc;

use super::owners::Role;
use super::{Recipient, SharedState, StateFailed};
use crate::protocol::message::LiveMatch;
use crate::protocol::{Name, ServerMessage};
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

/// One peer's registration, as it travels to the state's thread.
#[derive(Debug, PartialEq)]
pub struct RendezvousRegistration {
    pub peer_id: Name,
    pub relay_id: Arc<str>,
    /// Daily points, each with the dead drop to leave there.
    pub daily_points: Vec<(Name, Option<Arc<str>>)>,
    pub hourly_tokens: Vec<Name>,
}

impl SharedState {
    /// Registers a peer's daily points and hourly tokens, returns what other peers left there, and pushes
    /// `rendezvous_match` to each peer found at an hourly token. With `bind_peer_id`, the peer id first
    /// becomes the session's name (legacy clients register rendezvous without `register`), without
    /// listing it as a relay.
    pub async fn register_rendezvous(
        &self,
        session: &Recipient,
        bind_peer_id: bool,
        registration: RendezvousRegistration,
    ) -> Result<Result<Found, RendezvousRefused>, StateFailed> {
        let session = session.clone();
        self.run(move |registries, now| {
            let registration = Registration {
                peer_id: &registration.peer_id,
                relay_id: &registration.relay_id,
                daily_points: &registration.daily_points,
                hourly_tokens: &registration.hourly_tokens,
            };
            // Counting every point as new is conservative (re-registrations replace), and O(1).
            let adding = registration.daily_points.len() + registration.hourly_tokens.len();
            if registries.rendezvous.len() + adding > registries.max_rendezvous_entries {
                return Err(RendezvousRefused::Full);
            }
            if bind_peer_id {
                registries
                    .owners
                    .bind(registration.peer_id, &session, Role::RelayId)
                    .map_err(|_| RendezvousRefused::PeerIdTaken)?;
            }
            let found = registries.rendezvous.register(now, &registration);
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
        })
        .await
    }

    /// Removes up to one batch of rendezvous entries whose time has passed, in one operation. Call again
    /// while it reports it is not done.
    pub async fn sweep_expired_batch(&self) -> Result<Swept, StateFailed> {
        self.run(|registries, now| registries.rendezvous.sweep(now, SWEEP_BATCH))
            .await
    }
}
