//! The relay family: `register {peerId}`, `update_load`, `get_relays`.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{RequestError, fields_of, invalid};
use super::{Failure, Session, check_acts_as};
use crate::protocol::names::RelayKey;
use crate::protocol::{Name, ServerMessage};
use crate::redact::redacted;

const DEFAULT_MAX_CONNECTIONS: u32 = 20;
const MAX_CONNECTIONS: std::ops::RangeInclusive<u32> = 1..=1000;
const MAX_CONNECTED_COUNT: u32 = 10_000;
const DEFAULT_RELAY_COUNT: usize = 10;
const MAX_RELAY_COUNT: usize = 100;
/// Relays listed in a `registered` reply.
const RELAYS_IN_REGISTERED: usize = 10;

#[derive(Debug, PartialEq)]
pub struct RegisterRelay {
    peer_id: Name,
    max_connections: u32,
    public_key: Option<RelayKey>,
}

impl RegisterRelay {
    /// From the fields of a `register` without a pairing code.
    pub(super) fn new(
        peer_id: Option<Name>,
        max_connections: Option<u32>,
        public_key: Option<String>,
    ) -> Result<Self, RequestError> {
        let peer_id =
            peer_id.ok_or_else(|| invalid("Missing required field: peerId (or pairingCode)"))?;
        let max_connections = max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if !MAX_CONNECTIONS.contains(&max_connections) {
            return Err(invalid(format!(
                "maxConnections: must be {} to {}",
                MAX_CONNECTIONS.start(),
                MAX_CONNECTIONS.end()
            )));
        }
        let public_key = public_key
            .map(RelayKey::try_from)
            .transpose()
            .map_err(|err| invalid(format!("publicKey: {err}")))?;
        Ok(Self {
            peer_id,
            max_connections,
            public_key,
        })
    }
}

#[derive(Debug, PartialEq)]
pub struct UpdateLoad {
    peer_id: Name,
    connected_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateLoadFields {
    #[serde(alias = "peer_id")]
    peer_id: Name,
    #[serde(alias = "connected_count")]
    connected_count: u32,
}

impl UpdateLoad {
    pub(super) fn parse(fields: Map<String, Value>) -> Result<Self, RequestError> {
        let UpdateLoadFields {
            peer_id,
            connected_count,
        } = fields_of(fields)?;
        if connected_count > MAX_CONNECTED_COUNT {
            return Err(invalid(format!(
                "connectedCount: must be 0 to {MAX_CONNECTED_COUNT}"
            )));
        }
        Ok(Self {
            peer_id,
            connected_count,
        })
    }
}

#[derive(Debug, PartialEq)]
pub struct GetRelays {
    /// The peer to leave out.
    peer_id: Name,
    count: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetRelaysFields {
    #[serde(alias = "peer_id")]
    peer_id: Name,
    count: Option<serde_json::Number>,
}

impl GetRelays {
    pub(super) fn parse(fields: Map<String, Value>) -> Result<Self, RequestError> {
        let GetRelaysFields { peer_id, count } = fields_of(fields)?;
        let count = match count {
            None => DEFAULT_RELAY_COUNT,
            Some(count) => clamp_count(&count)?,
        };
        Ok(Self { peer_id, count })
    }
}

/// Any integer is a valid `count`: it is clamped into range, as the protocol says; only non-integers fail.
fn clamp_count(count: &serde_json::Number) -> Result<usize, RequestError> {
    let clamped = if let Some(n) = count.as_i64() {
        n.clamp(1, MAX_RELAY_COUNT as i64) as usize
    } else if count.is_u64() {
        MAX_RELAY_COUNT
    } else {
        return Err(invalid("count: must be an integer"));
    };
    Ok(clamped)
}

impl Session {
    pub(super) async fn register_relay(
        &self,
        register: RegisterRelay,
    ) -> Result<ServerMessage, Failure> {
        let RegisterRelay {
            peer_id,
            max_connections,
            public_key,
        } = register;
        let mut names = self.names().await;
        if names
            .relay_id
            .as_ref()
            .is_some_and(|bound| *bound != peer_id)
        {
            return Err(Failure::PeerIdMismatch);
        }
        let relays = self
            .state()
            .register_relay(
                &self.recipient,
                &peer_id,
                max_connections,
                public_key.map(RelayKey::into_shared),
                RELAYS_IN_REGISTERED,
            )
            .await?
            .map_err(|_| Failure::PeerIdTaken)?;
        names.relay_id = Some(peer_id.clone());
        names.relay_listed = true;
        tracing::debug!(peer_id = %redacted(&peer_id), "relay registered");
        Ok(ServerMessage::RegisteredRelay {
            peer_id,
            server_id: self.shared.identity.server_id.clone(),
            relays,
        })
    }

    pub(super) async fn update_load(&self, update: UpdateLoad) -> Result<ServerMessage, Failure> {
        let UpdateLoad {
            peer_id,
            connected_count,
        } = update;
        let names = self.names().await;
        check_acts_as(&names, peer_id.as_str())?;
        if !names.relay_listed || names.relay_id.as_ref() != Some(&peer_id) {
            return Err(Failure::NotRegistered);
        }
        self.state()
            .update_load(&self.recipient, &peer_id, connected_count)
            .await?;
        Ok(ServerMessage::LoadUpdated {
            peer_id,
            connected_count,
        })
    }

    /// Read-only, so an unbound session may ask too; `peerId` is then only the peer to leave out.
    pub(super) async fn get_relays(&self, get: GetRelays) -> Result<ServerMessage, Failure> {
        check_acts_as(&*self.names().await, get.peer_id.as_str())?;
        Ok(ServerMessage::Relays {
            relays: self.state().list_relays(&get.peer_id, get.count).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::request::Request;
    use crate::session::request::tests::{invalid_message, parse};

    #[test]
    fn snake_case_fields_are_accepted() {
        let camel = parse(r#"{"type":"update_load","peerId":"p1","connectedCount":3}"#).unwrap();
        let snake = parse(r#"{"type":"update_load","peer_id":"p1","connected_count":3}"#).unwrap();
        assert_eq!(camel, snake);
    }

    #[test]
    fn relay_register_defaults_and_ranges() {
        let Request::RegisterRelay(RegisterRelay {
            max_connections, ..
        }) = parse(r#"{"type":"register","peerId":"p1"}"#).unwrap()
        else {
            panic!("not a relay register")
        };
        assert_eq!(max_connections, 20);
        let message = invalid_message(r#"{"type":"register","peerId":"p1","maxConnections":0}"#);
        assert!(message.starts_with("maxConnections"), "{message}");
        let message = invalid_message(r#"{"type":"register","peerId":"p1","maxConnections":1001}"#);
        assert!(message.starts_with("maxConnections"), "{message}");
        let message =
            invalid_message(r#"{"type":"register","peerId":"p1","maxConnections":"many"}"#);
        assert!(message.starts_with("maxConnections"), "{message}");
    }

    #[test]
    fn get_relays_count_is_clamped_but_must_be_an_integer() {
        let count = |json: &str| match parse(json).unwrap() {
            Request::GetRelays(GetRelays { count, .. }) => count,
            other => panic!("{other:?}"),
        };
        assert_eq!(count(r#"{"type":"get_relays","peerId":"p"}"#), 10);
        assert_eq!(count(r#"{"type":"get_relays","peerId":"p","count":0}"#), 1);
        assert_eq!(count(r#"{"type":"get_relays","peerId":"p","count":-5}"#), 1);
        assert_eq!(
            count(r#"{"type":"get_relays","peerId":"p","count":500}"#),
            100
        );
        assert_eq!(
            count(r#"{"type":"get_relays","peerId":"p","count":18446744073709551615}"#),
            100
        );
        let message = invalid_message(r#"{"type":"get_relays","peerId":"p","count":2.5}"#);
        assert!(message.starts_with("count"), "{message}");
        invalid_message(r#"{"type":"get_relays","peerId":"p","count":"3"}"#);
    }

    #[test]
    fn update_load_count_is_bounded() {
        let message =
            invalid_message(r#"{"type":"update_load","peerId":"p","connectedCount":10001}"#);
        assert!(message.starts_with("connectedCount"), "{message}");
        invalid_message(r#"{"type":"update_load","peerId":"p","connectedCount":-1}"#);
        let message = invalid_message(r#"{"type":"update_load","connectedCount":1}"#);
        assert!(message.contains("peerId"), "{message}");
    }
}
