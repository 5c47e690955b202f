//! What every message family's parser shares: the error that names the field at fault, reading a
//! request's fields into a typed struct, and bounded labels.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::protocol::names::{
    INVALID_PAIRING_CODE, INVALID_PUBLIC_KEY_FORMAT, INVALID_PUBLIC_KEY_LENGTH,
};

/// Most characters of a name people give (a proposed name, a device name, a device id).
const MAX_LABEL_CHARS: usize = 128;

/// Why a decoded message is not a valid request.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("Unknown message type: {0}")]
    UnknownType(String),
    /// The text starts with the field at fault.
    #[error("{0}")]
    Invalid(String),
}

pub fn invalid(message: impl Into<String>) -> RequestError {
    RequestError::Invalid(message.into())
}

/// Deserializes the fields of a request, naming the field at fault when they do not fit. Fields are
/// accepted in camelCase and in snake_case (the structs say both), and unknown fields are ignored.
///
/// The texts are those of PROTOCOL 2.9 where it names one (the Zajel servers' texts, which clients show
/// people): `Missing required field: <field>`, and a pairing code's or public key's own texts, in which
/// a code other than the sender's own (`pairingCode`) is a target code.
pub fn fields_of<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, RequestError> {
    serde_path_to_error::deserialize(Value::Object(fields)).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        if let Some(field) = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            return invalid(format!("Missing required field: {field}"));
        }
        match inner.as_str() {
            INVALID_PAIRING_CODE if path != "pairingCode" && path != "pairing_code" => {
                invalid(INVALID_TARGET_CODE)
            }
            INVALID_PAIRING_CODE | INVALID_PUBLIC_KEY_FORMAT | INVALID_PUBLIC_KEY_LENGTH => {
                invalid(inner)
            }
            _ if path == "." => invalid(inner),
            _ => invalid(format!("{path}: {inner}")),
        }
    })
}

const INVALID_TARGET_CODE: &str = "Invalid target code format";

/// Names people give: text of bounded length.
pub fn check_label(field: &str, label: Option<&str>) -> Result<(), RequestError> {
    match label {
        Some(label) if label.chars().count() > MAX_LABEL_CHARS => Err(invalid(format!(
            "{field}: at most {MAX_LABEL_CHARS} characters"
        ))),
        _ => Ok(()),
    }
}
