//! The pairing family: `pair_request` and `pair_response` between pairing codes, and the pushes their
//! timers make.

use super::{Failure, Session};
use crate::protocol::names::PairingCode;
use crate::protocol::{Name, ServerMessage};

/// One text for every refused request, so that pairing codes cannot be enumerated.
pub const PAIR_REQUEST_REFUSED: &str = "Pair request could not be processed";
pub const NO_PENDING_REQUEST: &str = "No pending request from this peer";

impl Session {
    pub(super) fn pair_request(
        &self,
        target: Option<PairingCode>,
        proposed_name: Option<String>,
    ) -> Result<ServerMessage, Failure> {
        let identity = self.identity();
        let requester = identity.pairing_code()?;
        let target = target.ok_or(Failure::PairError(PAIR_REQUEST_REFUSED))?;
        let now = self.hub.now();
        let mut state = self.hub.state();
        let state = &mut *state;
        let target = target.name();
        // The target must be a live pairing code; the requester's own key goes with the request.
        let (true, Some(requester_key)) = (
            state.directory.code_key(target.as_str()).is_some(),
            state.directory.code_key(requester.as_str()).cloned(),
        ) else {
            return Err(Failure::PairError(PAIR_REQUEST_REFUSED));
        };
        state
            .pairing
            .request(now, &requester, target)
            .map_err(|_| Failure::PairError(PAIR_REQUEST_REFUSED))?;
        state.directory.push_to_code(
            target.as_str(),
            ServerMessage::PairIncoming {
                from_code: requester,
                from_public_key: requester_key,
                expires_in: state.pairing.times().expiry,
                proposed_name,
            },
        );
        Ok(ServerMessage::Ack {
            request_type: "pair_request",
        })
    }

    /// Answers a pending request from `requester` to this session's code.
    pub(super) fn pair_response(
        &self,
        requester: Option<PairingCode>,
        accepted: bool,
    ) -> Result<ServerMessage, Failure> {
        let identity = self.identity();
        let responder = identity.pairing_code()?;
        let requester = requester.ok_or(Failure::PairError(NO_PENDING_REQUEST))?;
        let mut state = self.hub.state();
        let requester: &Name = requester.name();
        if !state.pairing.take(requester, &responder) {
            return Err(Failure::PairError(NO_PENDING_REQUEST));
        }
        if !accepted {
            state.directory.push_to_code(
                requester.as_str(),
                ServerMessage::PairRejected {
                    peer_code: responder,
                },
            );
            return Ok(ServerMessage::Ack {
                request_type: "pair_response",
            });
        }
        // The keys as registered now: a side that re-registered its code with a new key is matched
        // with that one.
        let (Some(responder_key), Some(requester_key)) = (
            state.directory.code_key(responder.as_str()).cloned(),
            state.directory.code_key(requester.as_str()).cloned(),
        ) else {
            return Err(Failure::PairError(NO_PENDING_REQUEST));
        };
        state.directory.push_to_code(
            requester.as_str(),
            ServerMessage::PairMatched {
                peer_code: responder,
                peer_public_key: responder_key,
                is_initiator: true,
            },
        );
        Ok(ServerMessage::PairMatched {
            peer_code: requester.clone(),
            peer_public_key: requester_key,
            is_initiator: false,
        })
    }
}
