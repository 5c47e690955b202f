//! Transports turn bytes into envelopes for a `Session` and its replies and pushes back into bytes. They
//! know nothing of registries.

pub mod frame_watch;
pub mod http;
pub mod quic;
mod responses;
pub mod status;
pub mod streams;
pub mod websocket;
pub mod webtransport;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use base64::Engine as _;

use hyper::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::TransportConfig;
use crate::metrics::Holdings;
use crate::redact::redacted;
use crate::session::{Sessions, Transport};
use crate::tls::Certificates;
use status::Limits;

/// The span every event of one client's connection happens in, from its handshake to its close: its
/// transport (recorded once known, for QUIC), the client's address (redacted unless `--log-ids`), and
/// its session's number once it has a session. At debug level, so that it costs nothing otherwise.
pub fn session_span(transport: Transport, ip: IpAddr) -> tracing::Span {
    tracing::debug_span!(
        "session",
        transport = transport.label(),
        peer = %redacted(ip),
        id = tracing::field::Empty,
    )
}

/// What every transport task needs.
#[derive(Debug)]
pub struct TransportContext {
    pub sessions: Sessions,
    pub certificates: Arc<Certificates>,
    pub config: TransportConfig,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// When the server started, for `uptime`.
    pub started: Instant,
    /// What `/stats` reports as the configured limits.
    pub limits: Limits,
}

impl TransportContext {
    pub fn new(
        sessions: Sessions,
        certificates: Arc<Certificates>,
        config: TransportConfig,
        limits: Limits,
    ) -> Self {
        Self {
            sessions,
            certificates,
            config,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            started: Instant::now(),
            limits,
        }
    }

    /// The body of `GET /cert-hash`: what a browser passes as `serverCertificateHashes`.
    pub fn cert_hash(&self) -> serde_json::Value {
        let base64 = |hash: &[u8; 32]| base64::engine::general_purpose::STANDARD.encode(hash);
        let hashes = self.certificates.sha256s();
        json!({
            "algorithm": "sha-256",
            "value": base64(&hashes[0]),
            "values": hashes.iter().map(base64).collect::<Vec<_>>(),
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
            "version": env!("CARGO_PKG_VERSION"),
            "uptime": self.started.elapsed().as_secs_f64(),
            "sessions": self.sessions.open_count(),
            "names": counts.names,
            "relays": counts.relays,
            "rendezvousEntries": counts.rendezvous_entries,
            "handshakes": self.sessions.admissions().handshakes(),
            "bufferedBytes": self.sessions.buffered_bytes(),
            "quicRetries": self.sessions.metrics().quic_retries(),
            "cluster": cluster,
        })
    }

    /// The body of `GET /stats`: the counts the Zajel servers publish (`uptime` in seconds, as theirs),
    /// then sessions by transport, the totals the status page draws rates from, the certificate's
    /// expiry and the configured limits.
    pub fn stats(&self) -> serde_json::Value {
        let identity = self.sessions.identity();
        let counts = self.sessions.state().counts();
        let metrics = self.sessions.metrics();
        let expires_at = self
            .certificates
            .not_after()
            .and_then(|not_after| not_after.duration_since(UNIX_EPOCH).ok())
            .map(|since_epoch| since_epoch.as_secs());
        json!({
            "serverId": identity.server_id,
            "endpoint": identity.endpoint,
            "region": identity.region,
            "uptime": self.started.elapsed().as_secs_f64(),
            "connections": self.sessions.open_count(),
            "relayConnections": counts.relay_ids,
            "signalingConnections": counts.pairing_codes,
            "activeCodes": counts.pairing_codes,
            "sessionsByTransport": {
                Transport::WebSocket.label(): self.sessions.open_on(Transport::WebSocket),
                Transport::Quic.label(): self.sessions.open_on(Transport::Quic),
                Transport::WebTransport.label(): self.sessions.open_on(Transport::WebTransport),
            },
            "version": env!("CARGO_PKG_VERSION"),
            "messagesReceived": metrics.messages_received_total(),
            "errorsSent": metrics.errors_sent_total(),
            "certificate": {"expiresAt": expires_at},
            "limits": self.limits,
        })
    }

    /// The body of `GET /metrics`: every metric, with what the server holds now.
    pub fn metrics(&self) -> String {
        let sessions = &self.sessions;
        let counts = sessions.state().counts();
        sessions.metrics().render(&Holdings {
            sessions: [
                Transport::WebSocket,
                Transport::Quic,
                Transport::WebTransport,
            ]
            .map(|transport| sessions.open_on(transport)),
            handshakes_in_progress: sessions.admissions().handshakes(),
            buffered_bytes: sessions.buffered_bytes(),
            relays: counts.relays,
            daily_points: counts.daily_points,
            dead_drops: counts.dead_drops,
            hourly_tokens: counts.hourly_tokens,
            rendezvous_entries: counts.rendezvous_entries,
            pairing_codes: counts.pairing_codes,
            pending_pair_requests: counts.pending_pairs,
            pending_link_requests: counts.pending_links,
            certificate_not_after: self.certificates.not_after(),
        })
    }

    /// The answer to `GET /ready`: 200 while serving; 503 once shutting down, or while the cluster's
    /// store is unreachable (a load balancer should send new clients elsewhere).
    pub fn readiness(&self) -> (StatusCode, serde_json::Value) {
        let store_reachable = self
            .sessions
            .state()
            .cluster()
            .is_none_or(|cluster| cluster.is_available());
        if self.shutdown.is_cancelled() {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"ready": false, "reason": "shutting down"}),
            )
        } else if !store_reachable {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"ready": false, "reason": "store unreachable"}),
            )
        } else {
            (StatusCode::OK, json!({"ready": true}))
        }
    }
}
