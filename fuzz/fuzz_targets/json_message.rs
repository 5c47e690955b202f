//! Any bytes through the JSON decoder and its weighing (a WebSocket text frame): an envelope or a clean
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zajel_signal::protocol::codec::{Encoding, decode};

fuzz_target!(|bytes: &[u8]| {
    let _ = decode(bytes, Encoding::Json);
});
