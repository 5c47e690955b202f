//! Requests: the typed, checked form of an envelope. Parsing accepts every field in camelCase and in
//! snake_case, ignores unknown fields, and names the offending field in every refusal.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::codec::Envelope;
use super::names::{Name, PairingCode, PairingKey, RelayKey};
use super::signal::{Signal, SignalKind, parse_signal};

const DEFAULT_MAX_CONNECTIONS: u32 = 20;
const MAX_CONNECTIONS: std::ops::RangeInclusive<u32> = 1..=1000;
const MAX_CONNECTED_COUNT: u32 = 10_000;
const DEFAULT_RELAY_COUNT: usize = 10;
const MAX_RELAY_COUNT: usize = 100;
const MAX_LABEL_CHARS: usize = 128;

/// The configurable bounds that requests are checked against.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// Entries in `dailyPoints`, and separately in `hourlyTokens`.
    pub max_list_entries: usize,
    /// Characters in one dead-drop payload.
    pub max_dead_drop_chars: usize,
}

#[derive(Debug, PartialEq)]
pub enum Request {
    Ping,
    Heartbeat {
        peer_id: Option<Name>,
    },
    RegisterCode {
        pairing_code: PairingCode,
        public_key: PairingKey,
    },
    RegisterRelay {
        peer_id: Name,
        max_connections: u32,
        public_key: Option<RelayKey>,
    },
    UpdateLoad {
        peer_id: Name,
        connected_count: u32,
    },
    GetRelays {
        peer_id: Name,
        count: usize,
    },
    RegisterRendezvous(RendezvousRequest),
    Signal(Signal),
    /// A `targetCode` that is not a pairing code is `None`: like an unknown code, it is refused with
    /// the generic `pair_error`.
    PairRequest {
        target_code: Option<PairingCode>,
        proposed_name: Option<String>,
    },
    PairResponse {
        target_code: Option<PairingCode>,
        accepted: bool,
    },
    LinkRequest {
        link_code: Option<PairingCode>,
        public_key: PairingKey,
        device_name: Option<String>,
    },
    LinkResponse {
        link_code: PairingCode,
        accepted: bool,
        device_id: Option<String>,
    },
}

#[derive(Debug, PartialEq)]
pub struct RendezvousRequest {
    pub peer_id: Name,
    pub relay_id: Arc<str>,
    /// Each daily point with the dead drop to leave there, if any.
    pub daily_points: Vec<(Name, Option<Arc<str>>)>,
    pub hourly_tokens: Vec<Name>,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("{0}")]
    Invalid(String),
}

impl Request {
    pub fn parse(envelope: Envelope, limits: &RequestLimits) -> Result<Self, RequestError> {
        let Envelope { kind, fields, .. } = envelope;
        match kind.as_str() {
            "ping" => Ok(Self::Ping),
            "heartbeat" => {
                let HeartbeatFields { peer_id } = fields_of(fields)?;
                Ok(Self::Heartbeat { peer_id })
            }
            "register" => parse_register(fields_of(fields)?),
            "update_load" => {
                let fields: UpdateLoadFields = fields_of(fields)?;
                if fields.connected_count > MAX_CONNECTED_COUNT {
                    return Err(invalid(format!(
                        "connectedCount: must be 0 to {MAX_CONNECTED_COUNT}"
                    )));
                }
                Ok(Self::UpdateLoad {
                    peer_id: fields.peer_id,
                    connected_count: fields.connected_count,
                })
            }
            "get_relays" => {
                let fields: GetRelaysFields = fields_of(fields)?;
                let count = match fields.count {
                    None => DEFAULT_RELAY_COUNT,
                    Some(count) => clamp_count(&count)?,
                };
                Ok(Self::GetRelays {
                    peer_id: fields.peer_id,
                    count,
                })
            }
            "register_rendezvous" => {
                parse_rendezvous(fields_of(fields)?, limits).map(Self::RegisterRendezvous)
            }
            "pair_request" => {
                let fields: PairRequestFields = fields_of(fields)?;
                check_label("proposedName", fields.proposed_name.as_deref())?;
                Ok(Self::PairRequest {
                    target_code: PairingCode::try_from(fields.target_code).ok(),
                    proposed_name: fields.proposed_name,
                })
            }
            "pair_response" => {
                let fields: PairResponseFields = fields_of(fields)?;
                Ok(Self::PairResponse {
                    target_code: PairingCode::try_from(fields.target_code).ok(),
                    accepted: fields.accepted,
                })
            }
            "link_request" => {
                let fields: LinkRequestFields = fields_of(fields)?;
                check_label("deviceName", fields.device_name.as_deref())?;
                Ok(Self::LinkRequest {
                    link_code: PairingCode::try_from(fields.link_code).ok(),
                    public_key: fields.public_key,
                    device_name: fields.device_name,
                })
            }
            "link_response" => {
                let fields: LinkResponseFields = fields_of(fields)?;
                check_label("deviceId", fields.device_id.as_deref())?;
                Ok(Self::LinkResponse {
                    link_code: fields.link_code,
                    accepted: fields.accepted,
                    device_id: fields.device_id,
                })
            }
            other => match SignalKind::from_type(other) {
                Some(signal) => parse_signal(signal, fields_of(fields)?).map(Self::Signal),
                None => Err(RequestError::UnknownType(kind)),
            },
        }
    }
}

fn invalid(message: String) -> RequestError {
    RequestError::Invalid(message)
}

/// Deserializes the fields of a request, naming the field at fault when they do not fit.
fn fields_of<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, RequestError> {
    serde_path_to_error::deserialize(Value::Object(fields)).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            invalid(inner.to_string())
        } else {
            invalid(format!("{path}: {inner}"))
        }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PairRequestFields {
    #[serde(alias = "target_code")]
    target_code: String,
    #[serde(alias = "proposed_name")]
    proposed_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PairResponseFields {
    #[serde(alias = "target_code")]
    target_code: String,
    accepted: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkRequestFields {
    #[serde(alias = "link_code")]
    link_code: String,
    #[serde(alias = "public_key")]
    public_key: PairingKey,
    #[serde(alias = "device_name")]
    device_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkResponseFields {
    #[serde(alias = "link_code")]
    link_code: PairingCode,
    accepted: bool,
    #[serde(alias = "device_id")]
    device_id: Option<String>,
}

/// Names people give (a proposed name, a device name, a device id): text of bounded length.
fn check_label(field: &str, label: Option<&str>) -> Result<(), RequestError> {
    match label {
        Some(label) if label.chars().count() > MAX_LABEL_CHARS => Err(invalid(format!(
            "{field}: at most {MAX_LABEL_CHARS} characters"
        ))),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
struct HeartbeatFields {
    #[serde(rename = "peerId", alias = "peer_id")]
    peer_id: Option<Name>,
}

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
    if let Some(pairing_code) = fields.pairing_code {
        let public_key = fields
            .public_key
            .ok_or_else(|| invalid("publicKey: missing".to_owned()))?;
        let public_key =
            PairingKey::try_from(public_key).map_err(|err| invalid(format!("publicKey: {err}")))?;
        return Ok(Request::RegisterCode {
            pairing_code,
            public_key,
        });
    }
    let peer_id = fields
        .peer_id
        .ok_or_else(|| invalid("peerId: missing (or pairingCode for a pairing register)".into()))?;
    let max_connections = fields.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !MAX_CONNECTIONS.contains(&max_connections) {
        return Err(invalid(format!(
            "maxConnections: must be {} to {}",
            MAX_CONNECTIONS.start(),
            MAX_CONNECTIONS.end()
        )));
    }
    let public_key = fields
        .public_key
        .map(RelayKey::try_from)
        .transpose()
        .map_err(|err| invalid(format!("publicKey: {err}")))?;
    Ok(Request::RegisterRelay {
        peer_id,
        max_connections,
        public_key,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateLoadFields {
    #[serde(alias = "peer_id")]
    peer_id: Name,
    #[serde(alias = "connected_count")]
    connected_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetRelaysFields {
    #[serde(alias = "peer_id")]
    peer_id: Name,
    count: Option<serde_json::Number>,
}

/// Any integer is a valid `count`: it is clamped into range, as the protocol says; only non-integers fail.
fn clamp_count(count: &serde_json::Number) -> Result<usize, RequestError> {
    let clamped = if let Some(n) = count.as_i64() {
        n.clamp(1, MAX_RELAY_COUNT as i64) as usize
    } else if count.is_u64() {
        MAX_RELAY_COUNT
    } else {
        return Err(invalid("count: must be an integer".to_owned()));
    };
    Ok(clamped)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RendezvousFields {
    #[serde(alias = "peer_id")]
    peer_id: Name,
    #[serde(alias = "daily_points")]
    daily_points: Option<Vec<Name>>,
    #[serde(alias = "hourly_tokens")]
    hourly_tokens: Option<Vec<Name>>,
    #[serde(alias = "dead_drop")]
    dead_drop: Option<String>,
    #[serde(alias = "dead_drops")]
    dead_drops: Option<HashMap<String, String>>,
    #[serde(alias = "relay_id")]
    relay_id: Option<String>,
}

fn parse_rendezvous(
    fields: RendezvousFields,
    limits: &RequestLimits,
) -> Result<RendezvousRequest, RequestError> {
    let daily_points = fields.daily_points.unwrap_or_default();
    let hourly_tokens = fields.hourly_tokens.unwrap_or_default();
    for (field, len) in [
        ("dailyPoints", daily_points.len()),
        ("hourlyTokens", hourly_tokens.len()),
    ] {
        if len > limits.max_list_entries {
            return Err(invalid(format!(
                "{field}: at most {} entries",
                limits.max_list_entries
            )));
        }
    }
    let check_payload = |field: &str, payload: String| -> Result<Option<Arc<str>>, RequestError> {
        if payload.chars().count() > limits.max_dead_drop_chars {
            return Err(invalid(format!(
                "{field}: at most {} characters",
                limits.max_dead_drop_chars
            )));
        }
        // An empty payload leaves no dead drop.
        Ok((!payload.is_empty()).then(|| payload.into()))
    };
    let legacy_drop = fields
        .dead_drop
        .map(|payload| check_payload("deadDrop", payload))
        .transpose()?
        .flatten();
    let mut per_point = HashMap::new();
    for (point, payload) in fields.dead_drops.unwrap_or_default() {
        let field = format!("deadDrops.{point}");
        let payload = check_payload(&field, payload)?;
        per_point.insert(point, payload);
    }
    let daily_points = daily_points
        .into_iter()
        .map(|point| {
            let drop = match per_point.get(point.as_str()) {
                Some(payload) => payload.clone(),
                None => legacy_drop.clone(),
            };
            (point, drop)
        })
        .collect();
    let relay_id = match fields.relay_id {
        None => Arc::from(""),
        Some(text) if text.is_empty() => Arc::from(""),
        Some(text) => {
            let name = Name::try_from(text).map_err(|err| invalid(format!("relayId: {err}")))?;
            Arc::from(name.as_str())
        }
    };
    Ok(RendezvousRequest {
        peer_id: fields.peer_id,
        relay_id,
        daily_points,
        hourly_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::{Encoding, decode};

    const LIMITS: RequestLimits = RequestLimits {
        max_list_entries: 1000,
        max_dead_drop_chars: 4096,
    };

    fn parse(json: &str) -> Result<Request, RequestError> {
        Request::parse(decode(json.as_bytes(), Encoding::Json).unwrap(), &LIMITS)
    }

    fn invalid_message(json: &str) -> String {
        match parse(json) {
            Err(RequestError::Invalid(message)) => message,
            other => panic!("expected invalid_message for {json}, got {other:?}"),
        }
    }

    #[test]
    fn snake_case_fields_are_accepted() {
        let camel = parse(r#"{"type":"update_load","peerId":"p1","connectedCount":3}"#).unwrap();
        let snake = parse(r#"{"type":"update_load","peer_id":"p1","connected_count":3}"#).unwrap();
        assert_eq!(camel, snake);
    }

    #[test]
    fn relay_register_defaults_and_ranges() {
        let Request::RegisterRelay {
            max_connections, ..
        } = parse(r#"{"type":"register","peerId":"p1"}"#).unwrap()
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
    fn pairing_register_checks_code_and_key() {
        let message =
            invalid_message(r#"{"type":"register","pairingCode":"ABC23O","publicKey":"x"}"#);
        assert!(message.starts_with("pairingCode"), "{message}");
        let message = invalid_message(r#"{"type":"register","pairingCode":"ABC234"}"#);
        assert!(message.starts_with("publicKey"), "{message}");
        let message =
            invalid_message(r#"{"type":"register","pairingCode":"ABC234","publicKey":"AAAA"}"#);
        assert!(message.starts_with("publicKey"), "{message}");
    }

    #[test]
    fn get_relays_count_is_clamped_but_must_be_an_integer() {
        let count = |json: &str| match parse(json).unwrap() {
            Request::GetRelays { count, .. } => count,
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

    #[test]
    fn rendezvous_per_point_drops_win_over_the_legacy_drop() {
        let Request::RegisterRendezvous(request) = parse(
            r#"{"type":"register_rendezvous","peer_id":"me","daily_points":["a","b","c"],
                "dead_drop":"legacy","dead_drops":{"b":"for-b","zz":"ignored","c":""}}"#,
        )
        .unwrap() else {
            panic!("not a rendezvous request")
        };
        let drops: Vec<_> = request
            .daily_points
            .iter()
            .map(|(point, drop)| (point.as_str(), drop.as_deref()))
            .collect();
        assert_eq!(
            drops,
            [("a", Some("legacy")), ("b", Some("for-b")), ("c", None)]
        );
        assert_eq!(&*request.relay_id, "");
    }

    #[test]
    fn rendezvous_limits_name_the_field() {
        let points: Vec<String> = (0..1001).map(|i| format!("\"p{i}\"")).collect();
        let message = invalid_message(&format!(
            r#"{{"type":"register_rendezvous","peerId":"me","hourlyTokens":[{}]}}"#,
            points.join(",")
        ));
        assert!(message.starts_with("hourlyTokens"), "{message}");
        let message = invalid_message(&format!(
            r#"{{"type":"register_rendezvous","peerId":"me","dailyPoints":["a"],"deadDrop":"{}"}}"#,
            "x".repeat(4097)
        ));
        assert!(message.starts_with("deadDrop"), "{message}");
        let message = invalid_message(
            r#"{"type":"register_rendezvous","peerId":"me","dailyPoints":["ok","not ok"]}"#,
        );
        assert!(message.starts_with("dailyPoints[1]"), "{message}");
        let message =
            invalid_message(r#"{"type":"register_rendezvous","peerId":"me","relayId":"a b"}"#);
        assert!(message.starts_with("relayId"), "{message}");
    }

    #[test]
    fn unknown_types_are_reported_by_name() {
        assert_eq!(
            parse(r#"{"type":"teleport"}"#),
            Err(RequestError::UnknownType("teleport".into()))
        );
    }
}
