//! Any bytes as what a WebSocket client sends, through the frame watcher (which reads frame headers to
//! know a message's encoding and count the bytes of unfinished messages), in chunks the first byte
//! chooses: never a panic, and every counted byte given back when the connection goes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncReadExt;
use zajel_signal::buffers::BufferBudget;
use zajel_signal::transport::frame_watch::FrameWatcher;

fuzz_target!(|input: &[u8]| {
    let Some((&chunk, bytes)) = input.split_first() else {
        return;
    };
    let budget = BufferBudget::new(usize::MAX);
    let account = budget.open_account(1);
    runtime().block_on(async {
        let mut watcher = FrameWatcher::new(bytes);
        watcher.count_on(account.clone());
        let mut buffer = vec![0u8; usize::from(chunk).max(1)];
        while let Ok(read) = watcher.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            assert!(watcher.unfinished_bytes() <= bytes.len());
        }
        let _ = watcher.latest_message_encoding();
    });
    assert_eq!(account.held(), 0);
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
