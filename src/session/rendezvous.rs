//! The rendezvous family: `register_rendezvous`, its reply, and the `rendezvous_match` pushes.

use super::{Failure, Session};
use crate::directory::Role;
use crate::protocol::ServerMessage;
use crate::protocol::request::RendezvousRequest;
use crate::registry::{LiveMatch, Registration};

impl Session {
    pub(super) fn register_rendezvous(
        &self,
        request: RendezvousRequest,
    ) -> Result<ServerMessage, Failure> {
        let mut identity = self.identity();
        let mut state = self.hub.state();
        // Counting every point as new is conservative (re-registrations replace), and O(1).
        let adding = request.daily_points.len() + request.hourly_tokens.len();
        if state.rendezvous.len() + adding > self.hub.settings().max_rendezvous_entries {
            return Err(Failure::RegistryFull);
        }
        if identity.is_bound() {
            identity.check_acts_as(request.peer_id.as_str())?;
        } else {
            // Legacy clients register rendezvous without `register`: the peer id becomes the session's
            // name, without listing it as a relay.
            state
                .directory
                .bind(&request.peer_id, self.id(), &self.pushes, Role::RelayId)
                .map_err(|_| Failure::PeerIdTaken)?;
            identity.relay_id = Some(request.peer_id.clone());
        }
        drop(identity);

        let found = state.rendezvous.register(
            self.hub.now(),
            &Registration {
                peer_id: &request.peer_id,
                relay_id: &request.relay_id,
                daily_points: &request.daily_points,
                hourly_tokens: &request.hourly_tokens,
            },
        );
        for earlier in &found.live_matches {
            state.directory.push(
                earlier.peer_id.as_str(),
                ServerMessage::RendezvousMatch {
                    peer: LiveMatch {
                        peer_id: request.peer_id.clone(),
                        relay_id: request.relay_id.clone(),
                        meeting_point: earlier.meeting_point.clone(),
                    },
                },
            );
        }
        Ok(ServerMessage::RendezvousResult {
            live_matches: found.live_matches,
            dead_drops: found.dead_drops,
        })
    }
}
