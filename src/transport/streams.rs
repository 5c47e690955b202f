//! One session over a QUIC connection, whatever speaks on it (raw QUIC or WebTransport): requests on
//! client-opened bidirectional streams, answered frame by frame, and pushes on one server-opened
//! unidirectional stream that starts with `server_info`.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::TransportContext;
use crate::protocol::codec::{self, Encoding};
use crate::protocol::framing::{FrameError, read_frame, write_frame};
use crate::protocol::{ErrorCode, ServerMessage};
use crate::session::Session;
use crate::session::push::PushReceiver;

/// How long a refused client has to read its `over_capacity` error before the connection closes.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// Application close codes of QUIC and WebTransport connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum CloseCode {
    /// The server is shutting down.
    ShuttingDown = 0,
    /// The server, or this address, is at its session limit.
    OverCapacity = 1,
    /// The client did not read its pushes and the push queue overflowed.
    TooSlow = 2,
    /// The push stream could not be opened or written.
    PushStreamFailed = 3,
}

/// A QUIC connection as sessions use it; implemented for raw QUIC and for WebTransport.
pub trait StreamConnection: Send + Sync + 'static {
    type Send: AsyncWrite + Unpin + Send + 'static;
    type Recv: AsyncRead + Unpin + Send + 'static;

    /// The next request stream; `None` once the connection is closed.
    fn accept_bi(&self) -> impl Future<Output = Option<(Self::Send, Self::Recv)>> + Send;
    /// Opens the push stream; `None` if the connection is closed.
    fn open_uni(&self) -> impl Future<Output = Option<Self::Send>> + Send;
    /// Asks the client to stop sending on this stream (STOP_SENDING).
    fn stop_receiving(recv: Self::Recv);
    fn close(&self, code: CloseCode, reason: &str);
    /// Completes when the connection is closed, by either side.
    fn closed(&self) -> impl Future<Output = ()> + Send;
}

/// Serves one connection from open to close.
pub async fn serve_connection<C: StreamConnection>(
    connection: C,
    ip: IpAddr,
    context: Arc<TransportContext>,
) {
    let connection = Arc::new(connection);
    let (session, pushes) = match Session::open(&context.hub, ip) {
        Ok(opened) => opened,
        Err(over_capacity) => {
            refuse(&*connection, &over_capacity.to_string()).await;
            return;
        }
    };
    let session = Arc::new(session);
    debug!(session = session.id(), %ip, "QUIC session opened");
    let overflowed = pushes.overflow_signal();
    let accept_requests = async {
        while let Some((send, recv)) = connection.accept_bi().await {
            context.tasks.spawn(serve_request_stream::<C>(
                session.clone(),
                send,
                recv,
                context.max_message_size,
            ));
        }
    };
    tokio::select! {
        () = accept_requests => {}
        () = serve_pushes(&*connection, pushes) => {
            connection.close(CloseCode::PushStreamFailed, "push stream failed");
        }
        () = overflowed.notified() => connection.close(CloseCode::TooSlow, "too slow"),
        () = context.shutdown.cancelled() => {
            connection.close(CloseCode::ShuttingDown, "shutting down");
        }
    }
    debug!(session = session.id(), "QUIC session ended");
}

/// Tells a client it is over the session limit, on a push stream of its own, then closes.
async fn refuse<C: StreamConnection>(connection: &C, reason: &str) {
    let refusal = ServerMessage::error(ErrorCode::OverCapacity, reason);
    if let Some(mut send) = connection.open_uni().await {
        let _ = write_frame(&mut send, &codec::encode(&refusal, None, Encoding::Cbor)).await;
        let _ = send.shutdown().await;
        let _ = tokio::time::timeout(REFUSAL_GRACE, connection.closed()).await;
    }
    connection.close(CloseCode::OverCapacity, "over_capacity");
}

/// Writes every push, in order, on one unidirectional stream. Returns only if the stream fails.
async fn serve_pushes<C: StreamConnection>(connection: &C, mut pushes: PushReceiver) {
    let Some(mut stream) = connection.open_uni().await else {
        return;
    };
    while let Some(push) = pushes.recv().await {
        let frame = codec::encode(&push, None, Encoding::Cbor);
        if write_frame(&mut stream, &frame).await.is_err() {
            return;
        }
    }
}

/// Answers the frames of one request stream in order, one answer frame each; finishes when the client
/// has finished.
async fn serve_request_stream<C: StreamConnection>(
    session: Arc<Session>,
    mut send: C::Send,
    mut recv: C::Recv,
    max_message_size: usize,
) {
    let mut frame = Vec::new();
    loop {
        match read_frame(&mut recv, max_message_size, &mut frame).await {
            Ok(true) => {
                let reply = session.handle(codec::decode(&frame, Encoding::Cbor));
                let bytes =
                    codec::encode(&reply.message, reply.request_id.as_ref(), Encoding::Cbor);
                if write_frame(&mut send, &bytes).await.is_err() {
                    return;
                }
            }
            Ok(false) => {
                let _ = send.shutdown().await;
                return;
            }
            Err(FrameError::TooLarge(len)) => {
                let refusal = ServerMessage::error(
                    ErrorCode::TooLarge,
                    format!("a frame of {len} bytes is over the limit of {max_message_size}"),
                );
                let _ =
                    write_frame(&mut send, &codec::encode(&refusal, None, Encoding::Cbor)).await;
                let _ = send.shutdown().await;
                C::stop_receiving(recv);
                return;
            }
            Err(err) => {
                debug!(error = %err, "request stream ended");
                return;
            }
        }
    }
}
