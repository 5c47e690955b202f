//! Bytes to envelopes and messages to bytes, in the two encodings: JSON (WebSocket text frames) and CBOR
//! (WebSocket binary frames, QUIC and WebTransport frames). Both decode to the JSON data model, so a value
//! that came in as CBOR can always go out as JSON.

use serde::Serialize;
use serde_json::{Map, Value};

use super::cbor::{self, CborError};
use super::message::{ErrorCode, ServerMessage};
use super::weight::{self, TooHeavy};

/// How one message is written on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Cbor,
}

/// A request's `requestId`, echoed unchanged on every reply to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RequestId {
    Text(String),
    Number(u64),
}

/// A decoded message before its fields are checked: its `type`, its `requestId` and all of its fields.
#[derive(Debug)]
pub struct Envelope {
    pub kind: String,
    pub request_id: Option<RequestId>,
    pub fields: Map<String, Value>,
}

/// Why bytes did not make an envelope. The `request_id` is kept where it could be read, so that even a
/// refusal reaches the request that caused it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    pub request_id: Option<RequestId>,
}

impl DecodeError {
    fn malformed(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Malformed,
            message: message.into(),
            request_id: None,
        }
    }
}

pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<Envelope, DecodeError> {
    match encoding {
        Encoding::Json => decode_json(bytes),
        Encoding::Cbor => decode_cbor(bytes),
    }
}

impl From<TooHeavy> for DecodeError {
    fn from(err: TooHeavy) -> Self {
        Self {
            code: ErrorCode::TooLarge,
            message: err.to_string(),
            request_id: None,
        }
    }
}

fn decode_json(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    weight::weigh_json(bytes)?;
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(fields)) => into_envelope(fields),
        Ok(_) => Err(DecodeError::malformed("a message must be a map")),
        Err(_) => Err(DecodeError::malformed(
            "Invalid message format: JSON parse error",
        )),
    }
}

fn decode_cbor(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let map = cbor::read_map(bytes).map_err(|err| match err {
        CborError::Malformed(message) => DecodeError::malformed(message),
        CborError::TooHeavy(err) => DecodeError::from(err),
    })?;
    let envelope = into_envelope(map.fields)?;
    match map.outside_model {
        None => Ok(envelope),
        Some(message) => Err(DecodeError {
            code: ErrorCode::InvalidMessage,
            message,
            request_id: envelope.request_id,
        }),
    }
}

fn into_envelope(mut fields: Map<String, Value>) -> Result<Envelope, DecodeError> {
    let request_id = read_request_id(&fields).map_err(|message| DecodeError {
        code: ErrorCode::InvalidMessage,
        message: message.to_owned(),
        request_id: None,
    })?;
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => {
            return Err(DecodeError {
                code: ErrorCode::Malformed,
                message: "a message needs a text `type`".to_owned(),
                request_id,
            });
        }
    };
    Ok(Envelope {
        kind,
        request_id,
        fields,
    })
}

fn read_request_id(fields: &Map<String, Value>) -> Result<Option<RequestId>, &'static str> {
    let (camel, snake) = (fields.get("requestId"), fields.get("request_id"));
    if camel.is_some() && snake.is_some() {
        return Err("requestId: given twice (requestId and request_id)");
    }
    match camel.or(snake) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(RequestId::Text(text.clone()))),
        Some(Value::Number(number)) => number
            .as_u64()
            .map(|n| Some(RequestId::Number(n)))
            .ok_or("requestId: must be text or an unsigned integer"),
        Some(_) => Err("requestId: must be text or an unsigned integer"),
    }
}

/// Writes one message, with the `requestId` of the request it answers, if any.
///
/// The `requestId` is added to the message's map as written, not to a copy of the message as a value:
/// replies are on every request's path. (`#[serde(flatten)]` would make CBOR maps of indefinite length,
/// which minimal clients may not read.) Server messages are maps with a `type` and no `requestId` of
/// their own.
pub fn encode(
    message: &ServerMessage,
    request_id: Option<&RequestId>,
    encoding: Encoding,
) -> Vec<u8> {
    let bytes = encode_value(message, encoding);
    match (request_id, encoding) {
        (None, _) => bytes,
        (Some(id), Encoding::Json) => with_json_entry(bytes, id),
        (Some(id), Encoding::Cbor) => with_cbor_entry(bytes, id),
    }
}

/// A JSON object with `"requestId": id` added last.
fn with_json_entry(mut object: Vec<u8>, id: &RequestId) -> Vec<u8> {
    debug_assert!(
        object.len() > 2 && object.ends_with(b"}"),
        "a non-empty object"
    );
    object.pop();
    object.extend_from_slice(b",\"requestId\":");
    serde_json::to_writer(&mut object, id).expect("request ids serialize as JSON");
    object.push(b'}');
    object
}

/// A CBOR map of definite length with `"requestId": id` added last: its header counts one entry more.
fn with_cbor_entry(map: Vec<u8>, id: &RequestId) -> Vec<u8> {
    let mut decoder = ciborium_ll::Decoder::from(&map[..]);
    let Ok(ciborium_ll::Header::Map(Some(entries))) = decoder.pull() else {
        unreachable!("server messages are maps of definite length");
    };
    let entries_start = decoder.offset();
    let mut out = Vec::with_capacity(map.len() + 24);
    let mut encoder = ciborium_ll::Encoder::from(&mut out);
    encoder
        .push(ciborium_ll::Header::Map(Some(entries + 1)))
        .expect("writing to memory");
    out.extend_from_slice(&map[entries_start..]);
    ciborium::into_writer("requestId", &mut out).expect("writing to memory");
    ciborium::into_writer(id, &mut out).expect("request ids serialize as CBOR");
    out
}

fn encode_value(value: &impl Serialize, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Json => serde_json::to_vec(value).expect("server messages serialize as JSON"),
        Encoding::Cbor => {
            let mut bytes = Vec::with_capacity(128);
            ciborium::into_writer(value, &mut bytes).expect("server messages serialize as CBOR");
            bytes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value as Cbor;

    fn cbor(value: &Cbor) -> Vec<u8> {
        let mut bytes = Vec::new();
        ciborium::into_writer(value, &mut bytes).unwrap();
        bytes
    }

    fn text(s: &str) -> Cbor {
        Cbor::Text(s.to_owned())
    }

    #[test]
    fn a_request_id_is_added_to_the_map_as_written_in_both_encodings() {
        // Maps of every header size: 1 entry, 22, 23 (whose header takes a byte more with the id), 300.
        let wide = |entries: usize| {
            ServerMessage::Relayed(Value::Object(
                (0..entries)
                    .map(|i| (format!("k{i}"), Value::from(i)))
                    .collect(),
            ))
        };
        let messages = [
            ServerMessage::Pong,
            ServerMessage::error(ErrorCode::Malformed, "text with \"quotes\" and }"),
            wide(22),
            wide(23),
            wide(300),
        ];
        for message in &messages {
            for id in [RequestId::Number(7), RequestId::Text("r-1}".into())] {
                let mut expected = serde_json::to_value(message).unwrap();
                expected["requestId"] = serde_json::to_value(&id).unwrap();
                let json = encode(message, Some(&id), Encoding::Json);
                assert_eq!(serde_json::from_slice::<Value>(&json).unwrap(), expected);
                let cbor = encode(message, Some(&id), Encoding::Cbor);
                let decoded: Cbor = ciborium::from_reader(&cbor[..]).unwrap();
                let Cbor::Map(entries) = &decoded else {
                    panic!("a map")
                };
                assert_eq!(entries.len(), expected.as_object().unwrap().len());
                assert_eq!(decoded.deserialized::<Value>().unwrap(), expected);
            }
        }
    }

    #[test]
    fn json_and_cbor_decode_to_the_same_envelope() {
        let json = br#"{"type":"ping","requestId":7,"extra":[1,"a",null]}"#;
        let from_json = decode(json, Encoding::Json).unwrap();
        let from_cbor = decode(
            &cbor(&Cbor::Map(vec![
                (text("type"), text("ping")),
                (text("requestId"), Cbor::Integer(7.into())),
                (
                    text("extra"),
                    Cbor::Array(vec![Cbor::Integer(1.into()), text("a"), Cbor::Null]),
                ),
            ])),
            Encoding::Cbor,
        )
        .unwrap();
        assert_eq!(from_json.kind, "ping");
        assert_eq!(from_json.request_id, Some(RequestId::Number(7)));
        assert_eq!(from_json.fields, from_cbor.fields);
        assert_eq!(from_cbor.request_id, Some(RequestId::Number(7)));
    }

    #[test]
    fn garbage_is_malformed() {
        for (bytes, encoding) in [
            (&b"{not json"[..], Encoding::Json),
            (b"[1,2]", Encoding::Json),
            (b"{\"type\":5}", Encoding::Json),
            (b"{}", Encoding::Json),
            (b"\xff\xfe", Encoding::Cbor),
            (b"\xa1\x64ty", Encoding::Cbor),
            (b"\x83\x01\x02\x03", Encoding::Cbor),
        ] {
            let err = decode(bytes, encoding).unwrap_err();
            assert_eq!(err.code, ErrorCode::Malformed, "{bytes:?}");
        }
    }

    #[test]
    fn cbor_outside_the_json_model_is_invalid_and_keeps_the_request_id() {
        for (field, value) in [
            ("payload", Cbor::Bytes(vec![1, 2])),
            ("payload", Cbor::Tag(1, Box::new(Cbor::Integer(5.into())))),
            (
                "payload",
                Cbor::Map(vec![(Cbor::Integer(1.into()), Cbor::Null)]),
            ),
            ("payload", Cbor::Float(f64::NAN)),
            (
                "payload",
                Cbor::Integer((-(1i128 << 64)).try_into().unwrap()),
            ),
        ] {
            let bytes = cbor(&Cbor::Map(vec![
                (text("type"), text("ping")),
                (text("requestId"), text("r1")),
                (text(field), value),
            ]));
            let err = decode(&bytes, Encoding::Cbor).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidMessage);
            assert!(err.message.starts_with("payload"), "{}", err.message);
            assert_eq!(err.request_id, Some(RequestId::Text("r1".into())));
        }
    }

    #[test]
    fn trailing_bytes_after_cbor_are_malformed() {
        let mut bytes = cbor(&Cbor::Map(vec![(text("type"), text("ping"))]));
        bytes.push(0);
        assert_eq!(
            decode(&bytes, Encoding::Cbor).unwrap_err().code,
            ErrorCode::Malformed
        );
    }

    #[test]
    fn request_ids_must_be_text_or_unsigned() {
        let err = decode(br#"{"type":"ping","requestId":-1}"#, Encoding::Json).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidMessage);
        let err = decode(br#"{"type":"ping","requestId":{}}"#, Encoding::Json).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidMessage);
        let both = br#"{"type":"ping","requestId":1,"request_id":2}"#;
        assert_eq!(
            decode(both, Encoding::Json).unwrap_err().code,
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn replies_carry_the_request_id_in_definite_length_cbor() {
        let bytes = encode(
            &ServerMessage::Pong,
            Some(&RequestId::Text("abc".into())),
            Encoding::Cbor,
        );
        // 0xa2: a map of exactly two entries.
        assert_eq!(bytes[0], 0xa2);
        let value: Cbor = ciborium::from_reader(&bytes[..]).unwrap();
        let entries = value.into_map().unwrap();
        assert!(entries.contains(&(text("type"), text("pong"))));
        assert!(entries.contains(&(text("requestId"), text("abc"))));
    }
}
