//! Transports turn bytes into envelopes for a `Session` and its replies and pushes back into bytes. They
//! know nothing of registries.

pub mod http;
pub mod message_kind;
pub mod quic;
pub mod streams;
pub mod websocket;
pub mod webtransport;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::tls::Certificates;

/// What every transport task needs.
#[derive(Debug)]
pub struct TransportContext {
    pub hub: Hub,
    pub certificates: Arc<Certificates>,
    /// Origins allowed to open WebTransport sessions; empty allows any.
    pub webtransport_origins: Vec<String>,
    pub max_message_size: usize,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl TransportContext {
    /// Whether a WebTransport session from `origin` may open. Requests without an origin (non-browser
    /// clients) are allowed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            Some(origin) if !self.webtransport_origins.is_empty() => self
                .webtransport_origins
                .iter()
                .any(|allowed| allowed == origin),
            _ => true,
        }
    }

    /// The body of `GET /cert-hash`: what a browser passes as `serverCertificateHashes`.
    pub fn cert_hash(&self) -> serde_json::Value {
        json!({
            "algorithm": "sha-256",
            "value": base64::engine::general_purpose::STANDARD.encode(self.certificates.sha256()),
        })
    }

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
