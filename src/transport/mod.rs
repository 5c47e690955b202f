//! Transports turn bytes into envelopes for a `Session` and its replies and pushes back into bytes. They
//! know nothing of registries.

pub mod http;
pub mod message_kind;
pub mod websocket;

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;

/// What every transport task needs.
#[derive(Debug)]
pub struct TransportContext {
    pub hub: Hub,
    pub max_message_size: usize,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl TransportContext {
    /// The body of `GET /health`.
    pub fn health(&self) -> serde_json::Value {
        let (names, relays, rendezvous_entries) = {
            let state = self.hub.state();
            (
                state.directory.len(),
                state.relays.len(),
                state.rendezvous.len(),
            )
        };
        json!({
            "status": "healthy",
            "serverId": self.hub.settings().server_id,
            "sessions": self.hub.session_count(),
            "names": names,
            "relays": relays,
            "rendezvousEntries": rendezvous_entries,
        })
    }
}
