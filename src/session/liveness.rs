//! The liveness family: `ping` and `heartbeat`, which only show that the client is there.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{RequestError, fields_of};
use super::{Failure, Session, check_acts_as};
use crate::protocol::{Name, ServerMessage};

#[derive(Debug, PartialEq)]
pub struct Heartbeat {
    /// A bound session may only name one of its own ids here.
    peer_id: Option<Name>,
}

#[derive(Deserialize)]
struct HeartbeatFields {
    #[serde(rename = "peerId", alias = "peer_id")]
    peer_id: Option<Name>,
}

impl Heartbeat {
    pub(super) fn parse(fields: Map<String, Value>) -> Result<Self, RequestError> {
        let HeartbeatFields { peer_id } = fields_of(fields)?;
        Ok(Self { peer_id })
    }
}

impl Session {
    pub(super) async fn heartbeat(&self, heartbeat: Heartbeat) -> Result<ServerMessage, Failure> {
        if let Some(peer_id) = heartbeat.peer_id {
            check_acts_as(&*self.names().await, peer_id.as_str())?;
        }
        Ok(ServerMessage::HeartbeatAck {
            timestamp: self.shared.clock.wall_time(),
        })
    }
}
