//! Every message the server sends. Field names are camelCase on the wire; the `type` tag is snake_case.

use std::sync::Arc;

use serde::Serialize;

use super::names::{Name, PairingKey};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    ServerInfo {
        server_id: Arc<str>,
        endpoint: Option<Arc<str>>,
        region: Option<Arc<str>>,
    },
    Pong,
    HeartbeatAck {
        /// Server time, milliseconds since the Unix epoch.
        timestamp: u64,
    },
    #[serde(rename = "registered")]
    RegisteredCode {
        pairing_code: Name,
        server_id: Arc<str>,
    },
    #[serde(rename = "registered")]
    RegisteredRelay {
        peer_id: Name,
        server_id: Arc<str>,
        relays: Vec<RelayInfo>,
    },
    CodeCollision {
        message: &'static str,
    },
    /// The answer to a pairing `register` where proofs of key are required: the server's ephemeral X25519
    /// key and a nonce, both standard base64.
    KeyChallenge {
        pairing_code: Name,
        server_key: String,
        nonce: String,
    },
    LoadUpdated {
        peer_id: Name,
        connected_count: u32,
    },
    Relays {
        relays: Vec<RelayInfo>,
    },
    RendezvousResult {
        live_matches: Vec<LiveMatch>,
        dead_drops: Vec<DeadDrop>,
    },
    RendezvousMatch {
        #[serde(rename = "match")]
        peer: LiveMatch,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    PairIncoming {
        from_code: Name,
        from_public_key: PairingKey,
        expires_in: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        proposed_name: Option<String>,
    },
    PairMatched {
        peer_code: Name,
        peer_public_key: PairingKey,
        is_initiator: bool,
    },
    PairRejected {
        peer_code: Name,
    },
    PairExpiring {
        peer_code: Name,
        remaining_seconds: u64,
    },
    PairTimeout {
        peer_code: Name,
    },
    /// A refused pairing request or answer (a message type of its own, for legacy clients).
    PairError {
        error: &'static str,
    },
    /// To the phone: a web client asks to attach to it. `web_client_code` tells the phone's user which
    /// web client asks (its own screen shows its code), so that another one cannot pass for it.
    LinkRequest {
        link_code: Name,
        public_key: PairingKey,
        device_name: Option<String>,
        web_client_code: Name,
        expires_in: u64,
    },
    /// To the web client, once the phone accepted.
    #[serde(rename = "link_matched")]
    LinkMatchedWebClient {
        link_code: Name,
        peer_public_key: PairingKey,
        is_initiator: bool,
        device_id: Option<String>,
    },
    /// To the phone, in answer to its acceptance.
    #[serde(rename = "link_matched")]
    LinkMatchedPhone {
        link_code: Name,
        peer_public_key: PairingKey,
        is_initiator: bool,
        web_client_code: Name,
        device_name: Option<String>,
    },
    LinkRejected {
        link_code: Name,
    },
    LinkTimeout {
        link_code: Name,
    },
    /// A refused link request or answer (a message type of its own, for legacy clients).
    LinkError {
        error: &'static str,
    },
    /// The answer on QUIC and WebTransport to a request that succeeded with no reply of its own
    /// (WebSocket sends nothing then).
    Ack {
        #[serde(rename = "for")]
        request_type: &'static str,
    },
    /// A signal forwarded to its target: `{type, from, payload}`.
    #[serde(untagged)]
    Forwarded(Forwarded),
    /// A message another node of the cluster sent, as it was sent.
    #[serde(untagged)]
    Relayed(serde_json::Value),
}

/// One relay as `get_relays` and `registered` describe it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayInfo {
    pub peer_id: Name,
    pub public_key: Option<Arc<str>>,
    /// The load fraction `connectedCount / maxConnections`.
    pub capacity: f64,
}

/// Another peer found at the same hourly token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveMatch {
    pub peer_id: Name,
    pub relay_id: Arc<str>,
    pub meeting_point: Name,
}

/// The dead drop another peer left at the same daily point.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadDrop {
    pub peer_id: Name,
    pub dead_drop: Arc<str>,
    pub relay_id: Arc<str>,
    pub meeting_point: Name,
}

/// A signal forwarded to its target: `{type, from, payload}`. A call message is pushed in the merged
/// shape that both client families read (PROTOCOL 2.7): each of its payload's call fields is repeated
/// at the top level.
#[derive(Clone, Debug, PartialEq)]
pub struct Forwarded {
    pub kind: &'static str,
    pub from: Name,
    pub payload: serde_json::Value,
}

/// The fields of a call message's payload, which the flat shape carries at the top level.
pub const CALL_FIELDS: [&str; 5] = ["callId", "sdp", "withVideo", "reason", "candidate"];

impl Serialize for Forwarded {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let repeated: Vec<(&str, &serde_json::Value)> = match &self.payload {
            serde_json::Value::Object(payload) if self.kind.starts_with("call_") => CALL_FIELDS
                .iter()
                .filter_map(|field| Some((*field, payload.get(*field)?)))
                .collect(),
            _ => Vec::new(),
        };
        // A map of known length: CBOR clients read definite maps only.
        let mut map = serializer.serialize_map(Some(3 + repeated.len()))?;
        map.serialize_entry("type", self.kind)?;
        map.serialize_entry("from", &self.from)?;
        map.serialize_entry("payload", &self.payload)?;
        for (field, value) in repeated {
            map.serialize_entry(field, value)?;
        }
        map.end()
    }
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }

    /// Roughly the memory a queued message holds, for the push queue's byte bound. Only forwarded
    /// payloads are of a size clients choose; everything else is a few names of bounded length.
    pub fn approximate_size(&self) -> usize {
        const FIXED: usize = std::mem::size_of::<ServerMessage>() + 512;
        match self {
            Self::Forwarded(forwarded) => FIXED + value_size(&forwarded.payload),
            _ => FIXED,
        }
    }
}

/// The memory a decoded value holds, approximately (nesting is bounded by the decoders).
fn value_size(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    const NODE: usize = std::mem::size_of::<Value>();
    NODE + match value {
        Value::String(text) => text.len(),
        Value::Array(items) => items.iter().map(value_size).sum(),
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| key.len() + 2 * NODE + value_size(item))
            .sum(),
        _ => 0,
    }
}

/// The codes of `error` messages (PROTOCOL 2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Malformed,
    UnknownType,
    InvalidMessage,
    TooLarge,
    NotRegistered,
    PeerIdMismatch,
    PeerNotFound,
    RateLimited,
    PeerIdTaken,
    OverCapacity,
    Internal,
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [Self; 12] = [
        Self::Malformed,
        Self::UnknownType,
        Self::InvalidMessage,
        Self::TooLarge,
        Self::NotRegistered,
        Self::PeerIdMismatch,
        Self::PeerNotFound,
        Self::RateLimited,
        Self::PeerIdTaken,
        Self::OverCapacity,
        Self::Internal,
        Self::Unavailable,
    ];

    /// The code as the wire writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownType => "unknown_type",
            Self::InvalidMessage => "invalid_message",
            Self::TooLarge => "too_large",
            Self::NotRegistered => "not_registered",
            Self::PeerIdMismatch => "peer_id_mismatch",
            Self::PeerNotFound => "peer_not_found",
            Self::RateLimited => "rate_limited",
            Self::PeerIdTaken => "peer_id_taken",
            Self::OverCapacity => "over_capacity",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn error_codes_are_listed_in_order_and_named_as_serialized() {
        for (index, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code as usize, index);
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
