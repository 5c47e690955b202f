//! Requests: the typed, checked form of an envelope, one variant per message type. Each message family
//! parses its own requests (next to their handlers); this is only the table from `type` to family.

use serde::Deserialize;

use super::fields::{RequestError, fields_of};
use super::key_proof::KeyProof;
use super::linking::{LinkRequest, LinkResponse};
use super::liveness::Heartbeat;
use super::pairing::{PairRequest, PairResponse, RegisterCode};
use super::relay::{GetRelays, RegisterRelay, UpdateLoad};
use super::rendezvous::RegisterRendezvous;
use super::signal::{Signal, SignalKind};
use crate::config::SessionConfig;
use crate::protocol::Name;
use crate::protocol::codec::Envelope;
use crate::protocol::names::PairingCode;

#[derive(Debug, PartialEq)]
pub enum Request {
    Ping,
    Heartbeat(Heartbeat),
    RegisterCode(RegisterCode),
    KeyProof(KeyProof),
    RegisterRelay(RegisterRelay),
    UpdateLoad(UpdateLoad),
    GetRelays(GetRelays),
    RegisterRendezvous(RegisterRendezvous),
    Signal(Signal),
    PairRequest(PairRequest),
    PairResponse(PairResponse),
    LinkRequest(LinkRequest),
    LinkResponse(LinkResponse),
}

impl Request {
    pub fn parse(envelope: Envelope, config: &SessionConfig) -> Result<Self, RequestError> {
        let Envelope { kind, fields, .. } = envelope;
        Ok(match kind.as_str() {
            "ping" => Self::Ping,
            "heartbeat" => Self::Heartbeat(Heartbeat::parse(fields)?),
            "register" => parse_register(fields_of(fields)?)?,
            "key_proof" => Self::KeyProof(KeyProof::parse(fields)?),
            "update_load" => Self::UpdateLoad(UpdateLoad::parse(fields)?),
            "get_relays" => Self::GetRelays(GetRelays::parse(fields)?),
            "register_rendezvous" => {
                Self::RegisterRendezvous(RegisterRendezvous::parse(fields, config)?)
            }
            "pair_request" => Self::PairRequest(PairRequest::parse(fields)?),
            "pair_response" => Self::PairResponse(PairResponse::parse(fields)?),
            "link_request" => Self::LinkRequest(LinkRequest::parse(fields)?),
            "link_response" => Self::LinkResponse(LinkResponse::parse(fields)?),
            other => match SignalKind::from_type(other) {
                Some(signal) => Self::Signal(Signal::parse(signal, fields)?),
                None => return Err(RequestError::UnknownType(kind)),
            },
        })
    }
}

/// `register` is two requests: with a `pairingCode` it binds a pairing code (the pairing family),
/// otherwise a relay peer id (the relay family).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterFields {
    #[serde(alias = "pairing_code")]
    pairing_code: Option<PairingCode>,
    #[serde(alias = "public_key")]
    public_key: Option<String>,
    #[serde(alias = "peer_id")]
    peer_id: Option<Name>,
    #[serde(alias = "max_connections")]
    max_connections: Option<u32>,
}

fn parse_register(fields: RegisterFields) -> Result<Request, RequestError> {
    match fields.pairing_code {
        Some(pairing_code) => {
            RegisterCode::new(pairing_code, fields.public_key).map(Request::RegisterCode)
        }
        None => RegisterRelay::new(fields.peer_id, fields.max_connections, fields.public_key)
            .map(Request::RegisterRelay),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::protocol::codec::{Encoding, decode};

    pub fn parse(json: &str) -> Result<Request, RequestError> {
        let config = SessionConfig::default();
        Request::parse(decode(json.as_bytes(), Encoding::Json).unwrap(), &config)
    }

    pub fn invalid_message(json: &str) -> String {
        match parse(json) {
            Err(RequestError::Invalid(message)) => message,
            other => panic!("expected invalid_message for {json}, got {other:?}"),
        }
    }

    #[test]
    fn unknown_types_are_reported_by_name() {
        assert_eq!(
            parse(r#"{"type":"teleport"}"#),
            Err(RequestError::UnknownType("teleport".into()))
        );
    }
}
