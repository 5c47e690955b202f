//! WebSocket sessions: JSON text frames and CBOR binary frames, each answered in its own encoding; pushes
//! in the encoding of the session's last request (JSON before the first).

use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};

use super::frame_watch::FrameWatcher;
use super::responses::{HttpResponse, plain};
use super::{TransportContext, session_span};
use crate::metrics::{CloseReason, ErrorSent, HandshakeStage};
use crate::protocol::codec::{self, Encoding};
use crate::protocol::{ErrorCode, RequestId, ServerMessage};
use crate::push::{Push, PushReceiver};
use crate::session::{Session, Transport};

/// How long a closing handshake may take before the connection is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Bytes read from the socket at a time. Small, because idle sessions are the common case and this
/// buffer lives as long as the session: most requests fit in one read, and the rare large message (an
/// SDP offer, a registration with long lists) takes a read per KiB (docs/performance.md).
const READ_BUFFER: usize = 1024;

/// Answers an HTTP request on a WebSocket path: the 101 that upgrades it, or why not.
pub fn upgrade(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    context: &Arc<TransportContext>,
) -> HttpResponse {
    let headers = request.headers();
    let wants_websocket = request.method() == Method::GET
        && header_has_token(headers, &CONNECTION, "upgrade")
        && header_has_token(headers, &UPGRADE, "websocket");
    let metrics = context.sessions.metrics();
    if !wants_websocket {
        metrics.handshake_failed(HandshakeStage::WebSocketUpgrade);
        return plain(
            StatusCode::UPGRADE_REQUIRED,
            "this path serves WebSocket sessions; see GET /health\n",
        );
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        metrics.handshake_failed(HandshakeStage::WebSocketUpgrade);
        let mut response = plain(StatusCode::BAD_REQUEST, "unsupported WebSocket version\n");
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        metrics.handshake_failed(HandshakeStage::WebSocketUpgrade);
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut request);
    let context = context.clone();
    let span = session_span(Transport::WebSocket, peer.ip());
    context.tasks.clone().spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let stream = WebSocketStream::from_raw_socket(
                        FrameWatcher::new(TokioIo::new(upgraded)),
                        Role::Server,
                        Some(websocket_config(
                            context.config.max_message_size,
                            context.sessions.config().push_queue_bytes,
                        )),
                    )
                    .await;
                    run_session(stream, peer.ip(), &context).await;
                }
                Err(err) => {
                    context
                        .sessions
                        .metrics()
                        .handshake_failed(HandshakeStage::WebSocketUpgrade);
                    debug!(error = %err, "WebSocket upgrade failed");
                }
            }
        }
        .instrument(span),
    );
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_ACCEPT, accept)
        .body(Default::default())
        .expect("a valid response")
}

fn header_has_token(headers: &HeaderMap, name: &hyper::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

fn websocket_config(max_message_size: usize, push_queue_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Write each message as it is sent instead of collecting a buffer first.
        .write_buffer_size(0)
        // Room for one outgoing message: a forwarded payload from a CBOR client may grow up to six
        // times as JSON (control characters become \u0001), a rendezvous reply of a hundred dead drops
        // as much, and a push as much as a push queue holds.
        .max_write_buffer_size(max_message_size.saturating_mul(8).max(push_queue_bytes))
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
}

/// Why a session's loop stopped.
#[derive(Debug)]
enum Ending {
    ClientClosed,
    Idle,
    TooLarge,
    /// A text frame that is not UTF-8: RFC 6455 requires failing the connection.
    InvalidText,
    /// A frame that breaks the WebSocket protocol (unmasked, reserved bits, bad opcode...).
    ProtocolViolation,
    TooSlow,
    Stalled,
    /// Control frames (Pings, Pongs) past the session's message rate.
    RateLimited,
    Shutdown,
    Broken(WsError),
}

impl Ending {
    fn reason(&self) -> CloseReason {
        match self {
            Self::ClientClosed => CloseReason::ClientClosed,
            Self::Idle => CloseReason::Idle,
            Self::TooLarge | Self::InvalidText | Self::ProtocolViolation => {
                CloseReason::ProtocolError
            }
            Self::TooSlow | Self::Stalled => CloseReason::TooSlow,
            Self::RateLimited => CloseReason::RateLimited,
            Self::Shutdown => CloseReason::ShuttingDown,
            Self::Broken(_) => CloseReason::Failed,
        }
    }
}

struct Connection<S> {
    stream: WebSocketStream<S>,
    /// The encoding of the last request, which pushes follow.
    encoding: Encoding,
    idle_timeout: Duration,
    ping_interval: Duration,
}

/// Serves one WebSocket session from open to close.
pub async fn run_session<S>(
    stream: WebSocketStream<FrameWatcher<S>>,
    ip: IpAddr,
    context: &TransportContext,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = Connection {
        stream,
        encoding: Encoding::Json,
        idle_timeout: context.config.idle_timeout(),
        ping_interval: context.config.ping_interval(),
    };
    let opened = context
        .sessions
        .open(ip, Transport::WebSocket, Encoding::Json);
    let metrics = context.sessions.metrics();
    let (session, mut pushes) = match opened {
        Ok(opened) => opened,
        Err(over_capacity) => {
            metrics.session_refused(Transport::WebSocket);
            metrics.error_sent(ErrorSent::Code(ErrorCode::OverCapacity));
            let refusal = ServerMessage::error(ErrorCode::OverCapacity, over_capacity.to_string());
            connection
                .close_with(Some(&refusal), CloseCode::Again, "over capacity")
                .await;
            return;
        }
    };
    tracing::Span::current().record("id", session.id());
    let buffers = session.buffers().clone();
    connection.stream.get_mut().count_on(buffers.clone());
    let ending = tokio::select! {
        ending = connection.serve(&session, &mut pushes, &context.shutdown) => ending,
        () = buffers.must_close() => Ending::TooSlow,
    };
    debug!(?ending, "WebSocket session ending");
    metrics.session_closed(Transport::WebSocket, ending.reason());
    // The session's names, relay listing and hourly tokens go now, not after the closing handshake, so
    // that a client reconnecting at once can take its name again.
    drop(session);
    match ending {
        Ending::TooLarge => {
            metrics.error_sent(ErrorSent::Code(ErrorCode::TooLarge));
            // The refusal goes out in the encoding of the message refused, known from its first frame.
            if let Some(encoding) = connection.stream.get_ref().latest_message_encoding() {
                connection.encoding = encoding;
            }
            let refusal = ServerMessage::error(
                ErrorCode::TooLarge,
                format!(
                    "messages are limited to {} bytes",
                    context.config.max_message_size
                ),
            );
            connection
                .close_with(Some(&refusal), CloseCode::Size, "message too large")
                .await;
        }
        Ending::InvalidText => {
            // The refused message was a text frame, so its answer is JSON.
            connection.encoding = Encoding::Json;
            metrics.error_sent(ErrorSent::Code(ErrorCode::Malformed));
            let refusal =
                ServerMessage::error(ErrorCode::Malformed, "text frames must be valid UTF-8");
            connection
                .close_with(Some(&refusal), CloseCode::Invalid, "invalid UTF-8")
                .await;
        }
        Ending::ProtocolViolation => {
            connection
                .close_with(None, CloseCode::Protocol, "WebSocket protocol error")
                .await;
        }
        Ending::Idle => connection.close_with(None, CloseCode::Normal, "idle").await,
        Ending::RateLimited => {
            connection
                .close_with(
                    None,
                    CloseCode::Policy,
                    "control frames over the message rate",
                )
                .await;
        }
        Ending::Shutdown => {
            // What was queued for the client goes before the close frame.
            let flush = async {
                while let Some(push) = pushes.try_recv() {
                    connection.send_encoded(push).await.ok()?;
                }
                Some(())
            };
            let _ = timeout(CLOSE_GRACE, flush).await;
            connection
                .close_with(None, CloseCode::Away, "shutting down")
                .await
        }
        Ending::ClientClosed => {
            // The answer to the client's close frame is queued; let it reach the client.
            let _ = timeout(CLOSE_GRACE, connection.stream.flush()).await;
        }
        Ending::Broken(err) => debug!(error = %err, "WebSocket connection failed"),
        // The client does not read: nothing more can be delivered.
        Ending::TooSlow | Ending::Stalled => {}
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Serves requests and pushes until the session ends. A shutdown is seen between messages: the
    /// message being handled is answered first.
    async fn serve(
        &mut self,
        session: &Session,
        pushes: &mut PushReceiver,
        shutdown: &CancellationToken,
    ) -> Ending {
        // `server_info`, queued when the session opened, goes out before anything is read, so that it
        // is the first frame even for a client that sends without waiting.
        if let Some(server_info) = pushes.try_recv()
            && let Err(ending) = self.send_encoded(server_info).await
        {
            return ending;
        }
        // One timer per session: it wakes for the next Ping or, once a Ping is unanswered for long
        // enough, for the idle deadline.
        let mut deadline = Instant::now() + self.idle_timeout;
        let mut next_ping = Instant::now() + self.ping_interval;
        let mut pong_owed = false;
        let mut shutdown = pin!(shutdown.cancelled());
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return Ending::Shutdown,
                incoming = self.stream.next() => {
                    deadline = Instant::now() + self.idle_timeout;
                    let (bytes, encoding) = match incoming {
                        None => return Ending::ClientClosed,
                        Some(Err(WsError::Capacity(_))) => return Ending::TooLarge,
                        Some(Err(WsError::Utf8(_))) => return Ending::InvalidText,
                        Some(Err(WsError::Protocol(_))) => return Ending::ProtocolViolation,
                        Some(Err(err)) => return Ending::Broken(err),
                        Some(Ok(Message::Text(text))) => (text.into(), Encoding::Json),
                        Some(Ok(Message::Binary(bytes))) => (bytes, Encoding::Cbor),
                        // The WebSocket layer has queued the answer; it is sent once the session is
                        // over.
                        Some(Ok(Message::Close(_))) => return Ending::ClientClosed,
                        // The answer to the server's own Ping is free.
                        Some(Ok(Message::Pong(_))) if pong_owed => {
                            pong_owed = false;
                            continue;
                        }
                        // Pings are answered by the WebSocket layer itself, but cost like a message.
                        Some(Ok(_)) => {
                            if !session.charge_control_frame() {
                                return Ending::RateLimited;
                            }
                            continue;
                        }
                    };
                    self.encoding = encoding;
                    pushes.follow_encoding(encoding);
                    // Boxed: handling a request is a large future (every message family's), which
                    // would otherwise stay in this session's task while it is idle.
                    let reply =
                        Box::pin(session.handle(codec::decode(&bytes, encoding), encoding)).await;
                    // WebSocket has no acks: a request that succeeded with no reply gets none, as
                    // the legacy servers did.
                    if matches!(reply.message, ServerMessage::Ack { .. }) {
                        continue;
                    }
                    if let Err(ending) = self.send(&reply.message, reply.request_id.as_ref()).await {
                        return ending;
                    }
                }
                Some(push) = pushes.recv() => {
                    if let Err(ending) = self.send_encoded(push).await {
                        return ending;
                    }
                }
                () = sleep_until(next_ping.min(deadline)) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ending::Idle;
                    }
                    next_ping = now + self.ping_interval;
                    pong_owed = true;
                    if let Err(ending) = self.send_frame(Message::Ping(Default::default())).await {
                        return ending;
                    }
                }
            }
        }
    }

    async fn send(
        &mut self,
        message: &ServerMessage,
        request_id: Option<&RequestId>,
    ) -> Result<(), Ending> {
        let bytes = codec::encode(message, request_id, self.encoding);
        self.send_encoded(Push {
            encoding: self.encoding,
            bytes,
        })
        .await
    }

    /// Sends a message already encoded, as a text frame (JSON) or a binary frame (CBOR).
    async fn send_encoded(&mut self, Push { encoding, bytes }: Push) -> Result<(), Ending> {
        let frame = match encoding {
            Encoding::Json => {
                Message::text(String::from_utf8(bytes).expect("JSON encodes to UTF-8"))
            }
            Encoding::Cbor => Message::binary(bytes),
        };
        self.send_frame(frame).await
    }

    async fn send_frame(&mut self, frame: Message) -> Result<(), Ending> {
        match timeout(self.idle_timeout, self.stream.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(Ending::Broken(err)),
            Err(_) => Err(Ending::Stalled),
        }
    }

    /// Sends a last message, if any, then a close frame, and waits briefly for the client's answer.
    async fn close_with(&mut self, last: Option<&ServerMessage>, code: CloseCode, reason: &str) {
        let closing = async {
            if let Some(message) = last {
                self.send(message, None).await.ok()?;
            }
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            self.stream.close(Some(frame)).await.ok()?;
            while let Some(Ok(_)) = self.stream.next().await {}
            Some(())
        };
        let _ = timeout(CLOSE_GRACE, closing).await;
    }
}
