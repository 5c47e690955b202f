//! WebTransport sessions over HTTP/3 (extended CONNECT on path `/`), served like raw QUIC sessions once
//! accepted.

use std::net::IpAddr;
use std::sync::Arc;

use tracing::{Instrument, debug};
use wtransport::endpoint::IncomingSessionFuture;
use wtransport::{VarInt, quinn};

use super::TransportContext;
use super::streams::{CLOSE_GRACE, CloseCode, StreamConnection, serve_connection};
use crate::admission::Handshake;
use crate::metrics::HandshakeStage;
use crate::session::Transport;

/// Completes the HTTP/3 handshake of a connection that negotiated `h3` (within the handshake timeout),
/// checks its request, and serves the session, admitted once its handshake is over.
pub async fn serve(
    connecting: quinn::Connecting,
    ip: IpAddr,
    in_progress: Handshake,
    context: Arc<TransportContext>,
) {
    let failed = || {
        context
            .sessions
            .metrics()
            .handshake_failed(HandshakeStage::WebTransport);
    };
    let handshake = IncomingSessionFuture::with_quic_connecting(connecting);
    let request = match tokio::time::timeout(context.config.handshake_timeout(), handshake).await {
        Ok(Ok(request)) => request,
        Ok(Err(err)) => {
            failed();
            return debug!(error = %err, "WebTransport handshake failed");
        }
        Err(_) => {
            failed();
            return debug!("WebTransport handshake timed out");
        }
    };
    if request.path() != "/" {
        failed();
        return request.not_found().await;
    }
    if !context.config.origin_allowed(request.origin()) {
        failed();
        return request.forbidden().await;
    }
    match request.accept().await {
        Ok(connection) => {
            drop(in_progress);
            let admission = context.sessions.admit(ip);
            // A task of its own, not holding the handshake's state for the session's life.
            context
                .tasks
                .spawn(serve_connection(connection, admission, context.clone()).in_current_span());
        }
        Err(err) => {
            failed();
            debug!(error = %err, "WebTransport session not established");
        }
    }
}

impl StreamConnection for wtransport::Connection {
    const TRANSPORT: Transport = Transport::WebTransport;
    type Send = wtransport::SendStream;
    type Recv = wtransport::RecvStream;

    async fn accept_bi(&self) -> Option<(Self::Send, Self::Recv)> {
        wtransport::Connection::accept_bi(self).await.ok()
    }

    async fn open_uni(&self) -> Option<Self::Send> {
        wtransport::Connection::open_uni(self)
            .await
            .ok()?
            .await
            .ok()
    }

    fn stop_receiving(recv: Self::Recv) {
        recv.stop(VarInt::from_u32(0));
    }

    fn refuse_stream(mut send: Self::Send, recv: Self::Recv) {
        recv.stop(VarInt::from_u32(0));
        let _ = send.reset(VarInt::from_u32(0));
    }

    async fn finish_delivered(send: &mut Self::Send) {
        let _ = send.finish().await;
    }

    /// The session's close first (CLOSE_WEBTRANSPORT_SESSION): a browser's `WebTransport.closed` then
    /// resolves with the code and reason, where it rejects when only the connection closes. The
    /// connection is closed after, by the client (wtransport's does at once) or, when it has not
    /// within the grace, by the server with the same code: Chromium drops its side of the connection
    /// without telling, and closing earlier can overtake its handling of the capsule.
    async fn close(&self, code: CloseCode, reason: &str) {
        let told = async {
            self.close_session(code as u32, reason).await;
            wtransport::Connection::closed(self).await;
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, told).await;
        wtransport::Connection::close(self, VarInt::from_u32(code as u32), reason.as_bytes());
    }

    async fn closed(&self) {
        wtransport::Connection::closed(self).await;
    }
}
