//! What every message family's parser shares: the error that names the field at fault, reading a
//! request's fields into a typed struct, and bounded labels.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Most characters of a name people give (a proposed name, a device name, a device id).
const MAX_LABEL_CHARS: usize = 128;

/// Why a decoded message is not a valid request.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown message type `{0}`")]
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
pub fn fields_of<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, RequestError> {
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

/// Names people give: text of bounded length.
pub fn check_label(field: &str, label: Option<&str>) -> Result<(), RequestError> {
    match label {
        Some(label) if label.chars().count() > MAX_LABEL_CHARS => Err(invalid(format!(
            "{field}: at most {MAX_LABEL_CHARS} characters"
        ))),
        _ => Ok(()),
    }
}
