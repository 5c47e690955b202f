//! The wire protocol: envelopes and their encodings, checked requests, and the messages the server sends.

mod cbor;
pub mod codec;
pub mod framing;
pub mod message;
pub mod names;
pub mod request;
pub mod signal;

pub use codec::{DecodeError, Encoding, Envelope, RequestId};
pub use message::{ErrorCode, ServerMessage};
pub use names::Name;
pub use request::{Request, RequestError, RequestLimits};
