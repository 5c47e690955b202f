//! The wire protocol: envelopes and their encodings, validated names, framing, and the messages the
//! server sends. Requests are parsed by the message families that handle them (`session/`).

mod cbor;
pub mod codec;
pub mod framing;
pub mod message;
pub mod names;
mod weight;

pub use codec::{DecodeError, Encoding, Envelope, RequestId};
pub use message::{ErrorCode, ServerMessage};
pub use names::Name;
