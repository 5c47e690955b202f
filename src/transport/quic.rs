//! The UDP port: one QUIC endpoint offering ALPN `h3` (WebTransport) and `zajel/1` (raw QUIC), each
//! connection dispatched by the protocol it negotiated.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::{Instrument, debug};
use wtransport::quinn;

use super::streams::{CLOSE_GRACE, CloseCode, DRAIN_GRACE, StreamConnection, serve_connection};
use super::webtransport;
use super::{TransportContext, session_span};
use crate::config::TransportConfig;
use crate::metrics::HandshakeStage;
use crate::redact::redacted;
use crate::session::Transport;
use crate::tls::Certificates;

pub const ALPN_WEBTRANSPORT: &[u8] = b"h3";
pub const ALPN_ZAJEL: &[u8] = b"zajel/1";

/// Request streams a client may have open at once. quinn keeps an entry for every stream a client may
/// open from the connection's start (at 128, 10 KB of tables per connection, idle or not); a client
/// with more requests in flight opens the next stream as soon as an earlier one finishes.
const MAX_REQUEST_STREAMS: u32 = 16;
/// Unidirectional streams a client may open: HTTP/3 needs its control and two QPACK streams.
const MAX_CLIENT_UNI_STREAMS: u32 = 8;
/// Bytes a client may send on one stream ahead of the server's reading, and on all its streams together.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 128 * 1024;
/// Bytes quinn may have in flight to one client, not yet acknowledged.
const SEND_WINDOW: u32 = 256 * 1024;
/// Receive and send buffers of the UDP socket all connections share. The system default (208 KiB) is
/// overflowed by a few hundred handshakes at once (each client's first flight is padded to 1200 bytes and
/// retransmitted when lost), and a dropped Initial costs its client a second; the kernel caps this at
/// `net.core.rmem_max` / `wmem_max` (docs/performance.md).
const UDP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Datagrams are not part of the protocol, but WebTransport clients expect them to be allowed; nothing
/// reads them, so their buffers stay small.
const DATAGRAM_BUFFER: usize = 16 * 1024;

/// Binds the UDP endpoint.
pub fn bind(
    addr: SocketAddr,
    certificates: &Arc<Certificates>,
    config: &TransportConfig,
) -> std::io::Result<quinn::Endpoint> {
    let tls = certificates.server_config(true, &[ALPN_WEBTRANSPORT, ALPN_ZAJEL]);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .expect("a TLS 1.3 configuration with a QUIC cipher suite");
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(MAX_REQUEST_STREAMS.into())
        .max_concurrent_uni_streams(MAX_CLIENT_UNI_STREAMS.into())
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(config.idle_timeout())
                .expect("idle timeout within QUIC's range"),
        ))
        // PROTOCOL 2.6: the server keeps sessions alive; a client's ACK is the life that resets the
        // idle timer, so a suspended app whose stack still answers stays connected.
        .keep_alive_interval(Some(config.ping_interval()))
        // Small windows: the server reads frames as they arrive (and counts them on the session's
        // buffer account), so these only bound what quinn holds for streams waiting their turn.
        .stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW))
        .receive_window(quinn::VarInt::from_u32(CONNECTION_WINDOW))
        // What quinn may hold unacknowledged for a client, outside the session's buffer account.
        .send_window(u64::from(SEND_WINDOW))
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_BUFFER);
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server_config.transport_config(Arc::new(transport));
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server_config),
        udp_socket(addr)?,
        Arc::new(quinn::TokioRuntime),
    )
}

/// The endpoint's UDP socket, with room for bursts of handshakes.
fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: a smaller buffer still works, only with more losses under bursts.
    let _ = socket.set_recv_buffer_size(UDP_SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Accepts connections until shutdown.
pub async fn serve(endpoint: quinn::Endpoint, context: Arc<TransportContext>) {
    loop {
        let incoming = tokio::select! {
            () = context.shutdown.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let context_for_task = context.clone();
        context
            .tasks
            .spawn(serve_incoming(incoming, context_for_task));
    }
    // Sessions close themselves: each delivers what it answered and queued (within DRAIN_GRACE for its
    // pushes, then again for its request streams), then a WebTransport session tells its client first
    // and gives it CLOSE_GRACE to close the connection. Closing the endpoint now would cut that short.
    // New connections are refused meanwhile; what is left after that (handshakes in progress) closes
    // with the endpoint.
    endpoint.set_server_config(None);
    let sessions_closing = 2 * DRAIN_GRACE + CLOSE_GRACE;
    let _ = tokio::time::timeout(sessions_closing, endpoint.wait_idle()).await;
    endpoint.close(
        quinn::VarInt::from_u32(CloseCode::ShuttingDown as u32),
        b"shutting down",
    );
}

/// Completes a connection's handshake within the handshake timeout, admits it as a session, and serves
/// it by the protocol it negotiated. Nothing is spent on a connection before it is counted as a handshake
/// in progress: one over the handshake limits, or from an address with no room for a session, is refused
/// at its first packet, and when many handshakes are in progress a client must first prove its address
/// (a Retry) before any cryptography is done for it.
async fn serve_incoming(incoming: quinn::Incoming, context: Arc<TransportContext>) {
    let ip = incoming.remote_address().ip();
    let admissions = context.sessions.admissions();
    if !admissions.has_room(ip) {
        return incoming.refuse();
    }
    let Ok(handshake) = admissions.begin_handshake(ip) else {
        return incoming.refuse();
    };
    if admissions.handshakes() > admissions.handshakes_before_retry()
        && !incoming.remote_address_validated()
        && incoming.may_retry()
    {
        match incoming.retry() {
            Ok(()) => {
                context.sessions.metrics().quic_retry_sent();
            }
            Err(err) => debug!(error = %err, "QUIC retry not sent"),
        }
        return;
    }
    let mut connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(err) => return debug!(error = %err, "QUIC handshake refused"),
    };
    let handshake_data = async {
        let data = connecting.handshake_data().await.ok()?;
        let alpn = data
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .ok()?
            .protocol;
        Some(alpn)
    };
    let handshake_timeout = context.config.handshake_timeout();
    let failed = || {
        context
            .sessions
            .metrics()
            .handshake_failed(HandshakeStage::Quic)
    };
    let peer = redacted(ip);
    let alpn = match tokio::time::timeout(handshake_timeout, handshake_data).await {
        Ok(Some(alpn)) => alpn,
        Ok(None) => {
            failed();
            return debug!(%peer, "QUIC handshake failed");
        }
        Err(_) => {
            failed();
            return debug!(%peer, "QUIC handshake timed out");
        }
    };
    match alpn.as_deref() {
        Some(ALPN_ZAJEL) => match tokio::time::timeout(handshake_timeout, connecting).await {
            Ok(Ok(connection)) => {
                drop(handshake);
                let admission = context.sessions.admit(ip);
                // A task of its own: this one's state (sized for the largest handshake, WebTransport's)
                // would otherwise be kept for the session's life.
                context.tasks.spawn(
                    serve_connection(connection, admission, context.clone())
                        .instrument(session_span(Transport::Quic, ip)),
                );
            }
            Ok(Err(err)) => {
                failed();
                debug!(%peer, error = %err, "QUIC handshake failed");
            }
            Err(_) => {
                failed();
                debug!(%peer, "QUIC handshake timed out");
            }
        },
        Some(ALPN_WEBTRANSPORT) => {
            webtransport::serve(connecting, ip, handshake, context.clone())
                .instrument(session_span(Transport::WebTransport, ip))
                .await;
        }
        other => {
            failed();
            debug!(%peer, alpn = ?other, "connection without a known ALPN");
        }
    }
}

impl StreamConnection for quinn::Connection {
    const TRANSPORT: Transport = Transport::Quic;
    type Send = quinn::SendStream;
    type Recv = quinn::RecvStream;

    async fn accept_bi(&self) -> Option<(Self::Send, Self::Recv)> {
        quinn::Connection::accept_bi(self).await.ok()
    }

    async fn open_uni(&self) -> Option<Self::Send> {
        quinn::Connection::open_uni(self).await.ok()
    }

    fn stop_receiving(mut recv: Self::Recv) {
        let _ = recv.stop(quinn::VarInt::from_u32(0));
    }

    fn refuse_stream(mut send: Self::Send, mut recv: Self::Recv) {
        let _ = recv.stop(quinn::VarInt::from_u32(0));
        let _ = send.reset(quinn::VarInt::from_u32(0));
    }

    async fn finish_delivered(send: &mut Self::Send) {
        if send.finish().is_ok() {
            let _ = send.stopped().await;
        }
    }

    async fn close(&self, code: CloseCode, reason: &str) {
        quinn::Connection::close(
            self,
            quinn::VarInt::from_u32(code as u32),
            reason.as_bytes(),
        );
    }

    async fn closed(&self) {
        quinn::Connection::closed(self).await;
    }
}
