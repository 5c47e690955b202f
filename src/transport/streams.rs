//! One session over a QUIC connection, whatever speaks on it (raw QUIC or WebTransport): requests on
//! client-opened bidirectional streams, answered frame by frame, and pushes on one server-opened
//! unidirectional stream that starts with `server_info`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug};

use super::TransportContext;
use crate::admission::{Admission, OverCapacity};
use crate::buffers::SessionBuffers;
use crate::metrics::{CloseReason, ErrorSent};
use crate::protocol::codec::{self, Encoding};
use crate::protocol::framing::{FrameError, read_body_counted, read_length, write_frame};
use crate::protocol::{DecodeError, ErrorCode, ServerMessage};
use crate::push::PushReceiver;
use crate::session::{Session, Transport};

/// How long a refused client has to read its `over_capacity` error before the connection closes.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);
/// How long a session has at shutdown to deliver the replies and pushes it has, before its close.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long a client told that its session is closed (a WebTransport session's close) has to close
/// the connection itself before the server closes it.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// A stream keeps a frame buffer this large between frames; a larger one is given back.
const KEPT_FRAME_CAPACITY: usize = 16 * 1024;

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
    const TRANSPORT: Transport;
    type Send: AsyncWrite + Unpin + Send + 'static;
    type Recv: AsyncRead + Unpin + Send + 'static;

    /// The next request stream; `None` once the connection is closed.
    fn accept_bi(&self) -> impl Future<Output = Option<(Self::Send, Self::Recv)>> + Send;
    /// Opens the push stream; `None` if the connection is closed.
    fn open_uni(&self) -> impl Future<Output = Option<Self::Send>> + Send;
    /// Asks the client to stop sending on this stream (STOP_SENDING).
    fn stop_receiving(recv: Self::Recv);
    /// Refuses a whole stream: STOP_SENDING on its receiving side, RESET_STREAM on its sending side.
    fn refuse_stream(send: Self::Send, recv: Self::Recv);
    /// Finishes a stream (FIN); completes once the client has acknowledged all that was written on it,
    /// or the stream or the connection is gone.
    fn finish_delivered(send: &mut Self::Send) -> impl Future<Output = ()> + Send;
    /// Closes the session with `code` and `reason`; completes when the connection is closed, within
    /// [`CLOSE_GRACE`].
    fn close(&self, code: CloseCode, reason: &str) -> impl Future<Output = ()> + Send;
    /// Completes when the connection is closed, by either side.
    fn closed(&self) -> impl Future<Output = ()> + Send;
}

/// Serves one connection from open to close. `admission` is its place within the session limits,
/// taken before its handshake; without one, the client is told it is over capacity and closed.
pub async fn serve_connection<C: StreamConnection>(
    connection: C,
    admission: Result<Admission, OverCapacity>,
    context: Arc<TransportContext>,
) {
    let metrics = context.sessions.metrics();
    let admission = match admission {
        Ok(admission) => admission,
        Err(over_capacity) => {
            metrics.session_refused(C::TRANSPORT);
            metrics.error_sent(ErrorSent::Code(ErrorCode::OverCapacity));
            return refuse(&connection, &over_capacity.to_string()).await;
        }
    };
    let connection = Arc::new(connection);
    let (session, pushes) = context
        .sessions
        .open_admitted(admission, C::TRANSPORT, Encoding::Cbor);
    let session = Arc::new(session);
    tracing::Span::current().record("id", session.id());
    let buffers = session.buffers().clone();
    // Bytes of request frames this session may hold at once, whatever its number of streams: a stream
    // waits (and the client's flow control with it) until earlier frames are answered.
    let frame_budget = Arc::new(Semaphore::new(2 * context.config.max_message_size));
    // The session's request streams, waited for at shutdown (a tracker is a small allocation; a tokio
    // channel would keep a block of slots for the session's life).
    let streams = TaskTracker::new();
    let accept_requests = async {
        loop {
            let accepted = tokio::select! {
                biased;
                // At shutdown no stream is taken any more; the session ends with its pushes' drain.
                () = context.shutdown.cancelled() => std::future::pending().await,
                accepted = connection.accept_bi() => accepted,
            };
            let Some((send, recv)) = accepted else {
                return;
            };
            // A stream costs a message of the session's rate even if it carries none; its first frame
            // is then paid for.
            if !session.charge_message() {
                C::refuse_stream(send, recv);
                continue;
            }
            context.tasks.spawn(
                streams.track_future(
                    serve_request_stream::<C>(
                        session.clone(),
                        send,
                        recv,
                        frame_budget.clone(),
                        context.config.max_message_size,
                        context.config.idle_timeout(),
                        context.shutdown.clone(),
                    )
                    .in_current_span(),
                ),
            );
        }
    };
    let pushes = serve_pushes(
        &*connection,
        pushes,
        &buffers,
        context.config.idle_timeout(),
        &context.shutdown,
    );
    let reason = tokio::select! {
        // The connection closed under the streams: the client closed it, went silent for the idle
        // timeout, or was lost; QUIC does not tell these apart here.
        () = accept_requests => CloseReason::ClientClosed,
        stopped = pushes => {
            match stopped {
                PushesStopped::Drained => {
                    // The request streams answer what they have read, and are done.
                    streams.close();
                    let _ = Box::pin(tokio::time::timeout(DRAIN_GRACE, streams.wait())).await;
                    close(&*connection, CloseCode::ShuttingDown, "shutting down").await;
                    CloseReason::ShuttingDown
                }
                PushesStopped::Failed => {
                    close(&*connection, CloseCode::PushStreamFailed, "push stream failed").await;
                    CloseReason::Failed
                }
                PushesStopped::Stalled => {
                    close(&*connection, CloseCode::TooSlow, "too slow").await;
                    CloseReason::TooSlow
                }
            }
        }
        () = buffers.must_close() => {
            close(&*connection, CloseCode::TooSlow, "too slow").await;
            CloseReason::TooSlow
        }
    };
    metrics.session_closed(C::TRANSPORT, reason);
    debug!(?reason, "QUIC session ended");
}

/// Closes the session. Boxed: a WebTransport close (its capsule, then waiting for the client) is a
/// large future, which would otherwise make every idle session's task as large.
async fn close<C: StreamConnection>(connection: &C, code: CloseCode, reason: &str) {
    Box::pin(connection.close(code, reason)).await;
}

/// Tells a client it is over the session limit, on a push stream of its own, then closes.
async fn refuse<C: StreamConnection>(connection: &C, reason: &str) {
    let refusal = ServerMessage::error(ErrorCode::OverCapacity, reason);
    let tell = async {
        let mut send = connection.open_uni().await?;
        write_frame(&mut send, &codec::encode(&refusal, None, Encoding::Cbor))
            .await
            .ok()?;
        send.shutdown().await.ok()?;
        // Give the client a moment to read it (it may close first).
        connection.closed().await;
        Some(())
    };
    let _ = tokio::time::timeout(REFUSAL_GRACE, tell).await;
    connection
        .close(CloseCode::OverCapacity, "over_capacity")
        .await;
}

/// Why the push stream stopped.
enum PushesStopped {
    Failed,
    /// A push made no progress for the write timeout: the client does not read.
    Stalled,
    /// The server is shutting down, and what was queued has been delivered (or the grace ran out).
    Drained,
}

/// Writes every push, in order, on one unidirectional stream; a push being written stays counted on the
/// session's buffer account. Returns if the stream fails or stalls, or once drained at shutdown.
async fn serve_pushes<C: StreamConnection>(
    connection: &C,
    mut pushes: PushReceiver,
    buffers: &SessionBuffers,
    write_timeout: Duration,
    shutdown: &CancellationToken,
) -> PushesStopped {
    let Some(mut stream) = connection.open_uni().await else {
        return PushesStopped::Failed;
    };
    let mut shutdown = pin!(shutdown.cancelled());
    loop {
        let next = tokio::select! {
            biased;
            () = &mut shutdown => None,
            push = pushes.recv() => Some(push),
        };
        let Some(push) = next else {
            return Box::pin(drain_pushes::<C>(stream, pushes, buffers)).await;
        };
        let Some(push) = push else {
            return PushesStopped::Failed;
        };
        let _writing = buffers.hold_while(push.bytes.len());
        match tokio::time::timeout(write_timeout, write_frame(&mut stream, &push.bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return PushesStopped::Failed,
            Err(_) => return PushesStopped::Stalled,
        }
    }
}

/// At shutdown: writes what is queued, finishes the push stream and waits until the client has it all,
/// within the drain grace.
async fn drain_pushes<C: StreamConnection>(
    mut stream: C::Send,
    mut pushes: PushReceiver,
    buffers: &SessionBuffers,
) -> PushesStopped {
    let drain = async {
        while let Some(push) = pushes.try_recv() {
            let _writing = buffers.hold_while(push.bytes.len());
            if write_frame(&mut stream, &push.bytes).await.is_err() {
                return;
            }
        }
        C::finish_delivered(&mut stream).await;
    };
    let _ = tokio::time::timeout(DRAIN_GRACE, drain).await;
    PushesStopped::Drained
}

/// Answers the frames of one request stream in order, one answer frame each; finishes when the client
/// has finished, or at shutdown once every frame read is answered and the answers delivered. The
/// stream's first frame was paid for when the stream was accepted.
async fn serve_request_stream<C: StreamConnection>(
    session: Arc<Session>,
    mut send: C::Send,
    mut recv: C::Recv,
    frame_budget: Arc<Semaphore>,
    max_message_size: usize,
    write_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut frame = Vec::new();
    let mut paid = true;
    let mut shutdown = pin!(shutdown.cancelled_owned());
    loop {
        let next = tokio::select! {
            biased;
            () = &mut shutdown => None,
            length = read_length(&mut recv, max_message_size) => Some(length),
        };
        let Some(next) = next else {
            // Frames the client sent that were not read yet are not answered: the stream's end tells it.
            C::stop_receiving(recv);
            Box::pin(C::finish_delivered(&mut send)).await;
            return;
        };
        let length = match next {
            Ok(Some(length)) => length,
            Ok(None) => {
                let _ = send.shutdown().await;
                return;
            }
            Err(FrameError::TooLarge(len)) => {
                // Through the session, so that refused frames count towards its rate limit too (once:
                // a stream's first frame was paid for when the stream was accepted).
                let refused = Err(DecodeError {
                    code: ErrorCode::TooLarge,
                    message: format!(
                        "a frame of {len} bytes is over the limit of {max_message_size}"
                    ),
                    request_id: None,
                });
                let refusal = answer(&session, &mut paid, refused).await;
                let bytes = codec::encode(&refusal.message, None, Encoding::Cbor);
                let _ = write_frame(&mut send, &bytes).await;
                let _ = send.shutdown().await;
                C::stop_receiving(recv);
                return;
            }
            Err(err) => return debug!(error = %err, "request stream ended"),
        };
        let Ok(_permits) = frame_budget.acquire_many(length).await else {
            return;
        };
        // Counted as it arrives, not as announced.
        let mut held = session.buffers().hold_while(0);
        if let Err(err) =
            read_body_counted(&mut recv, length, &mut frame, |read| held.grow(read)).await
        {
            return debug!(error = %err, "request stream ended");
        }
        let decoded = codec::decode(&frame, Encoding::Cbor);
        let reply = answer(&session, &mut paid, decoded).await;
        let bytes = codec::encode(&reply.message, reply.request_id.as_ref(), Encoding::Cbor);
        if frame.capacity() > KEPT_FRAME_CAPACITY {
            frame = Vec::new();
        }
        drop(held);
        // A reply waiting for the client to read it stays counted, and waits at most the write timeout.
        let _writing = session.buffers().hold_while(bytes.len());
        match tokio::time::timeout(write_timeout, write_frame(&mut send, &bytes)).await {
            Ok(Ok(())) => {}
            _ => return C::stop_receiving(recv),
        }
    }
}

/// Answers one frame of a stream, charging it unless the stream's acceptance paid for it already.
/// Handling is boxed: it is a large future (every message family's), which would otherwise stay in the
/// stream's task while the stream waits for its next frame.
async fn answer(
    session: &Session,
    paid: &mut bool,
    decoded: Result<crate::protocol::Envelope, DecodeError>,
) -> crate::session::Reply {
    if std::mem::take(paid) {
        Box::pin(session.handle_charged(decoded, Encoding::Cbor)).await
    } else {
        Box::pin(session.handle(decoded, Encoding::Cbor)).await
    }
}
