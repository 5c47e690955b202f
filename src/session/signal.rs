//! The forwarding family: WebRTC offers, answers and ICE candidates, and calls, from one pairing code to
//! another. Payloads are kept as sent (any value of the JSON data model); only the call family's fields
//! that the protocol names are checked.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{RequestError, fields_of, invalid};
use super::{Failure, Session, own_pairing_code};
use crate::protocol::ServerMessage;
use crate::protocol::message::{CALL_FIELDS, Forwarded};
use crate::protocol::names::PairingCode;
use crate::push::ForwardRefused;
use crate::state::Undelivered;

const MAX_SDP_CHARS: usize = 65_536;
/// Why a call may be rejected (PROTOCOL 2.7).
const REJECT_REASONS: [&str; 3] = ["busy", "declined", "timeout"];
/// A signal without a payload, or a call whose payload is not a map (PROTOCOL 2.9).
const MISSING_PAYLOAD: &str = "Missing or invalid payload";
const MAX_CANDIDATE_CHARS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    Offer,
    Answer,
    IceCandidate,
    CallOffer,
    CallAnswer,
    CallReject,
    CallHangup,
    CallIce,
}

impl SignalKind {
    pub fn from_type(kind: &str) -> Option<Self> {
        Some(match kind {
            "offer" => Self::Offer,
            "answer" => Self::Answer,
            "ice_candidate" => Self::IceCandidate,
            "call_offer" => Self::CallOffer,
            "call_answer" => Self::CallAnswer,
            "call_reject" => Self::CallReject,
            "call_hangup" => Self::CallHangup,
            "call_ice" => Self::CallIce,
            _ => return None,
        })
    }

    fn is_call(self) -> bool {
        matches!(
            self,
            Self::CallOffer
                | Self::CallAnswer
                | Self::CallReject
                | Self::CallHangup
                | Self::CallIce
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::IceCandidate => "ice_candidate",
            Self::CallOffer => "call_offer",
            Self::CallAnswer => "call_answer",
            Self::CallReject => "call_reject",
            Self::CallHangup => "call_hangup",
            Self::CallIce => "call_ice",
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct Signal {
    pub kind: SignalKind,
    /// None: into the sender's device-link tunnel (`offer`, `answer`, `ice_candidate` only).
    pub target: Option<PairingCode>,
    pub payload: Value,
}

#[derive(Deserialize)]
struct SignalFields {
    target: Option<PairingCode>,
    payload: Value,
}

/// A signal without a target from a session with no live link, and a call without one.
fn missing_target() -> RequestError {
    invalid("Missing required field: target")
}

impl Signal {
    pub(super) fn parse(
        kind: SignalKind,
        mut fields: Map<String, Value>,
    ) -> Result<Self, RequestError> {
        if kind.is_call() && !fields.contains_key("target") {
            read_flat_call(&mut fields);
        }
        let SignalFields { target, payload } = fields_of(fields)?;
        if kind.is_call() && target.is_none() {
            return Err(missing_target());
        }
        check_payload(kind, &payload)?;
        Ok(Self {
            kind,
            target,
            payload,
        })
    }
}

/// Reads a call in the web client's flat shape (`targetId` and the call fields at the top level) as the
/// nested one (PROTOCOL 2.7). A call with `target` is nested, whatever else it carries.
fn read_flat_call(fields: &mut Map<String, Value>) {
    let Some(target) = fields
        .remove("targetId")
        .or_else(|| fields.remove("target_id"))
    else {
        return;
    };
    let payload: Map<String, Value> = CALL_FIELDS
        .iter()
        .filter_map(|field| Some(((*field).to_owned(), fields.remove(*field)?)))
        .collect();
    fields.insert("target".to_owned(), target);
    fields.insert("payload".to_owned(), Value::Object(payload));
}

/// Any payload but null; a call's payload is a map whose named fields are checked.
fn check_payload(kind: SignalKind, payload: &Value) -> Result<(), RequestError> {
    if payload.is_null() {
        return Err(invalid(MISSING_PAYLOAD));
    }
    if kind.is_call() {
        let Value::Object(call) = payload else {
            return Err(invalid(MISSING_PAYLOAD));
        };
        match call.get("callId") {
            Some(Value::String(id)) if is_uuid_v4(id) => {}
            _ => {
                return Err(invalid(
                    "Invalid or missing callId (must be UUID v4 format)",
                ));
            }
        }
        let bounded_text = |field: &str, max: usize| match call.get(field) {
            Some(Value::String(text)) if !text.is_empty() && text.chars().count() <= max => Ok(()),
            Some(Value::String(text)) if field == "sdp" && !text.is_empty() => {
                Err(invalid(format!("SDP too large (max {max} bytes)")))
            }
            _ => Err(invalid(format!(
                "payload.{field}: must be a non-empty string of at most {max} characters"
            ))),
        };
        match kind {
            SignalKind::CallOffer | SignalKind::CallAnswer => bounded_text("sdp", MAX_SDP_CHARS)?,
            SignalKind::CallIce => bounded_text("candidate", MAX_CANDIDATE_CHARS)?,
            SignalKind::CallReject => match call.get("reason") {
                None => {}
                Some(Value::String(reason)) if REJECT_REASONS.contains(&reason.as_str()) => {}
                Some(_) => {
                    return Err(invalid(
                        "payload.reason: must be one of busy, declined, timeout",
                    ));
                }
            },
            _ => {}
        }
    }
    Ok(())
}

impl Session {
    /// Pushes the signal to the session holding the target code, or without a target to the other end
    /// of the session's device-link tunnel, as `{type, from, payload}` with the payload unchanged.
    /// Pushes from one session to one target keep their order: both go through the target's one push
    /// queue, in the order this session handled them.
    pub(super) async fn forward(&self, signal: Signal) -> Result<ServerMessage, Failure> {
        // Held until the push is queued, so that `from` is a code the session still holds.
        let names = self.names().await;
        let from = match (own_pairing_code(&names), &signal.target) {
            (Ok(from), _) => from,
            // Without a code there is no tunnel either.
            (Err(_), None) => return Err(Failure::Request(missing_target())),
            (Err(not_registered), Some(_)) => return Err(not_registered),
        };
        let forwarded = ServerMessage::Forwarded(Forwarded {
            kind: signal.kind.as_str(),
            from,
            payload: signal.payload,
        });
        let delivered = match &signal.target {
            Some(target) => self.state().forward(target.name(), &forwarded).await?,
            None => {
                self.state()
                    .forward_in_tunnel(self.recipient.id, &forwarded)
                    .await?
            }
        };
        delivered.map_err(|undelivered| match (undelivered, signal.target) {
            (Undelivered::NoSuchPeer, Some(target)) => Failure::PeerNotFound(target.name().clone()),
            (Undelivered::NoSuchPeer, None) => Failure::Request(missing_target()),
            (Undelivered::Refused(ForwardRefused::TooLarge(err)), _) => {
                Failure::TooLargeForPeer(err)
            }
            (Undelivered::Refused(ForwardRefused::QueueFull), _) => Failure::PeerBusy,
        })?;
        Ok(ServerMessage::Ack {
            request_type: signal.kind.as_str(),
        })
    }
}

/// `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`, hexadecimal in either case.
fn is_uuid_v4(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            14 => b == b'4',
            19 => matches!(b.to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b'),
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(kind: &str, fields: Value) -> Result<Signal, RequestError> {
        let kind = SignalKind::from_type(kind).unwrap();
        let Value::Object(fields) = fields else {
            panic!("fields are a map")
        };
        Signal::parse(kind, fields)
    }

    const CALL: &str = "123e4567-e89b-42d3-a456-426614174000";

    #[test]
    fn webrtc_payloads_are_forwarded_as_they_are() {
        for kind in ["offer", "answer", "ice_candidate"] {
            let payload = json!({"anything": [1, {"nested": null}], "sdp": ""});
            let signal = parse(kind, json!({"target": "ABC234", "payload": payload})).unwrap();
            assert_eq!(signal.payload, payload);
            assert_eq!(signal.kind.as_str(), kind);
        }
        assert!(
            parse(
                "offer",
                json!({"target": "ABC234", "payload": "plain text"})
            )
            .is_ok()
        );
    }

    #[test]
    fn calls_need_a_uuid_v4_and_bounded_sdp_and_candidates() {
        let ok = |kind: &str, payload: Value| {
            parse(kind, json!({"target": "ABC234", "payload": payload}))
        };
        assert!(ok("call_offer", json!({"callId": CALL, "sdp": "v=0"})).is_ok());
        assert!(ok("call_answer", json!({"callId": CALL, "sdp": "v=0"})).is_ok());
        assert!(ok("call_reject", json!({"callId": CALL})).is_ok());
        assert!(ok("call_hangup", json!({"callId": CALL})).is_ok());
        assert!(
            ok(
                "call_ice",
                json!({"callId": CALL, "candidate": "candidate:1"})
            )
            .is_ok()
        );

        // The texts of PROTOCOL 2.9 where it names them; others name the field.
        for (kind, payload, text) in [
            (
                "call_offer",
                json!({"sdp": "v=0"}),
                "Invalid or missing callId (must be UUID v4 format)",
            ),
            (
                "call_offer",
                json!({"callId": "123e4567-e89b-12d3-a456-426614174000", "sdp": "v"}),
                "Invalid or missing callId (must be UUID v4 format)",
            ),
            (
                "call_offer",
                json!({"callId": "not-a-uuid", "sdp": "v"}),
                "Invalid or missing callId (must be UUID v4 format)",
            ),
            (
                "call_offer",
                json!({"callId": CALL}),
                "payload.sdp: must be a non-empty string of at most 65536 characters",
            ),
            (
                "call_offer",
                json!({"callId": CALL, "sdp": ""}),
                "payload.sdp: must be a non-empty string of at most 65536 characters",
            ),
            (
                "call_answer",
                json!({"callId": CALL, "sdp": "x".repeat(65_537)}),
                "SDP too large (max 65536 bytes)",
            ),
            (
                "call_ice",
                json!({"callId": CALL, "candidate": "x".repeat(1025)}),
                "payload.candidate: must be a non-empty string of at most 1024 characters",
            ),
            (
                "call_hangup",
                json!("not a map"),
                "Missing or invalid payload",
            ),
            ("offer", Value::Null, "Missing or invalid payload"),
        ] {
            match ok(kind, payload) {
                Err(RequestError::Invalid(message)) => assert_eq!(message, text, "{kind}"),
                other => panic!("{kind}: expected invalid_message {text:?}, got {other:?}"),
            }
        }
        assert!(
            ok(
                "call_answer",
                json!({"callId": CALL, "sdp": "x".repeat(65_536)})
            )
            .is_ok()
        );
    }
}
