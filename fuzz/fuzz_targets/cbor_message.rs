//! Any bytes through the CBOR reader (as a QUIC, WebTransport or WebSocket binary frame): an envelope or
//! a clean error, never a panic, and never more decoded than the weight allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zajel_signal::protocol::codec::{Encoding, decode, encode};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(envelope) = decode(bytes, Encoding::Cbor) {
        // What was read can be written back in either encoding.
        let _ = encode(
            &zajel_signal::protocol::ServerMessage::Pong,
            envelope.request_id.as_ref(),
            Encoding::Json,
        );
    }
});
