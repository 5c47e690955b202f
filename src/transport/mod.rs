//! Transports turn bytes into envelopes for a `Session` and its replies and pushes back into bytes. They
//! know nothing of registries.

pub mod frame_watch;
pub mod http;
pub mod quic;
mod responses;
pub mod streams;
pub mod websocket;
pub mod webtransport;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::TransportConfig;
use crate::session::Sessions;
use crate::tls::Certificates;

/// What every transport task needs.
#[derive(Debug)]
pub struct TransportContext {
    pub sessions: Sessions,
    pub certificates: Arc<Certificates>,
    pub config: TransportConfig,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// QUIC Retries sent: clients asked to prove their address before their handshake.
    pub quic_retries: AtomicU64,
}

impl TransportContext {
    /// The body of `GET /cert-hash`: what a browser passes as `serverCertificateHashes`.
    pub fn cert_hash(&self) -> serde_json::Value {
        json!({
            "algorithm": "sha-256",
            "value": base64::engine::general_purpose::STANDARD.encode(self.certificates.sha256()),
        })
    }

    /// The body of `GET /health`.
    pub fn health(&self) -> serde_json::Value {
        let state = self.sessions.state();
        let counts = state.counts();
        let cluster = state.cluster().map(|cluster| {
            json!({
                "node": cluster.node(),
                "redis": if cluster.is_available() { "ok" } else { "unreachable" },
            })
        });
        let healthy = cluster
            .as_ref()
            .is_none_or(|cluster| cluster["redis"] == "ok");
        json!({
            "status": if healthy { "healthy" } else { "degraded" },
            "serverId": self.sessions.identity().server_id,
            "sessions": self.sessions.open_count(),
            "names": counts.names,
            "relays": counts.relays,
            "rendezvousEntries": counts.rendezvous_entries,
            "handshakes": self.sessions.admissions().handshakes(),
            "bufferedBytes": self.sessions.buffered_bytes(),
            "quicRetries": self.quic_retries.load(Ordering::Relaxed),
            "cluster": cluster,
        })
    }
}
