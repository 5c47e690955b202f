//! Any bytes as a QUIC or WebTransport request stream: frames read in turn until the stream ends or a
//! frame is refused, never a panic and never a buffer beyond the frame limit.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zajel_signal::protocol::framing::read_frame;

const MAX_FRAME: usize = 4096;

fuzz_target!(|bytes: &[u8]| {
    runtime().block_on(async {
        let mut stream = bytes;
        let mut frame = Vec::new();
        while let Ok(true) = read_frame(&mut stream, MAX_FRAME, &mut frame).await {
            assert!(frame.len() <= MAX_FRAME);
        }
    });
});

/// One runtime for every input: making one per input would be most of the work.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}
