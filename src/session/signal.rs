//! The forwarding family: offers, answers, ICE candidates and calls, from one pairing code to another.

use super::{Failure, Session};
use crate::protocol::ServerMessage;
use crate::protocol::message::Forwarded;
use crate::protocol::signal::Signal;

impl Session {
    /// Pushes the signal to the session holding the target code, as `{type, from, payload}` with the
    /// payload unchanged. Pushes from one session to one target keep their order: both go through the
    /// target's one push queue, in the order this session handled them.
    pub(super) fn forward(&self, signal: Signal) -> Result<ServerMessage, Failure> {
        let identity = self.identity();
        let from = identity.pairing_code()?;
        let forwarded = ServerMessage::Forwarded(Forwarded {
            kind: signal.kind.as_str(),
            from,
            payload: signal.payload,
        });
        if !self
            .hub
            .state()
            .directory
            .push_to_code(signal.target.name().as_str(), forwarded)
        {
            return Err(Failure::PeerNotFound);
        }
        Ok(ServerMessage::Ack {
            request_type: signal.kind.as_str(),
        })
    }
}
