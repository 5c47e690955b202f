//! One client session, whatever its transport: it owns the session's names, turns each decoded message
//! into exactly one reply, and gives its names back when dropped.
//!
//! Transports hand `handle` what they decoded and write back what it returns. Each message family
//! (`liveness`, `relay`, `rendezvous`, `pairing`, `linking`, `signal`) parses and handles its requests in
//! its own file; shared state is reached only through [`SharedState`]'s operations.

mod fields;
mod key_proof;
mod linking;
mod liveness;
mod pairing;
mod relay;
mod rendezvous;
mod request;
mod signal;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::{Mutex as AsyncMutex, MutexGuard as AsyncMutexGuard};

use tracing::debug;

use crate::admission::{Admission, Admissions, OverCapacity};
use crate::buffers::{BufferBudget, SessionBuffers};
use crate::clock::Clock;
use crate::config::SessionConfig;
use crate::identity::ServerIdentity;
use crate::metrics::{MessageType, Metrics};
use crate::peer::SessionId;
pub use crate::peer::Transport;
use crate::protocol::codec::Encoding;
use crate::protocol::{DecodeError, Envelope, ErrorCode, Name, RequestId, ServerMessage};
use crate::push::{PushReceiver, PushTooLarge, push_queue};
use crate::rate::{RateLimit, TokenBucket};
use crate::state::{Recipient, SessionNames, SharedState, StateFailed};
use fields::RequestError;
use request::Request;

/// Opens sessions: what every session of this server shares (the state, the admission counts, the clock,
/// the session settings and the server's identity). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Sessions(Arc<SessionsInner>);

struct SessionsInner {
    state: SharedState,
    admissions: Admissions,
    /// Sessions open, by [`Transport`].
    open_by_transport: [AtomicUsize; 3],
    buffer_budget: Arc<BufferBudget>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    config: SessionConfig,
    identity: ServerIdentity,
}

impl std::fmt::Debug for SessionsInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsInner")
            .field("server_id", &self.identity.server_id)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new(
        state: SharedState,
        admissions: Admissions,
        config: SessionConfig,
        identity: ServerIdentity,
    ) -> Self {
        Self(Arc::new(SessionsInner {
            clock: state.clock().clone(),
            buffer_budget: BufferBudget::new(config.max_buffered_bytes),
            state,
            admissions,
            open_by_transport: Default::default(),
            metrics: Arc::new(Metrics::new()),
            config,
            identity,
        }))
    }

    pub fn state(&self) -> &SharedState {
        &self.0.state
    }

    pub fn identity(&self) -> &ServerIdentity {
        &self.0.identity
    }

    pub fn config(&self) -> &SessionConfig {
        &self.0.config
    }

    /// The counts of sessions and handshakes against their limits.
    pub fn admissions(&self) -> &Admissions {
        &self.0.admissions
    }

    /// What this server counts for Prometheus.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// Bytes all sessions buffer now.
    pub fn buffered_bytes(&self) -> usize {
        self.0.buffer_budget.used()
    }

    /// Sessions now open.
    pub fn open_count(&self) -> usize {
        self.0.admissions.open_sessions()
    }

    /// Sessions now open on `transport`.
    pub fn open_on(&self, transport: Transport) -> usize {
        self.0.open_by_transport[transport as usize].load(Ordering::Relaxed)
    }

    /// Takes a place for a session from `ip` within the session limits, before it is opened.
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, OverCapacity> {
        self.0.admissions.admit(ip)
    }

    /// Opens a session for a client at `ip` whose pushes are encoded in `encoding` (until the
    /// transport says otherwise). Its first push, already queued, is `server_info`.
    pub fn open(
        &self,
        ip: IpAddr,
        transport: Transport,
        encoding: Encoding,
    ) -> Result<(Session, PushReceiver), OverCapacity> {
        Ok(self.open_admitted(self.admit(ip)?, transport, encoding))
    }

    /// Opens a session for a connection admitted earlier.
    pub fn open_admitted(
        &self,
        admission: Admission,
        transport: Transport,
        encoding: Encoding,
    ) -> (Session, PushReceiver) {
        let shared = &self.0;
        shared.open_by_transport[transport as usize].fetch_add(1, Ordering::Relaxed);
        shared.metrics.session_opened(transport);
        let config = &shared.config;
        let buffers = shared.buffer_budget.open_account(admission.id());
        let (pushes, receiver) = push_queue(
            config.push_queue,
            config.push_queue_bytes,
            encoding,
            buffers.clone(),
            shared.metrics.clone(),
        );
        let server_info = ServerMessage::ServerInfo {
            server_id: shared.identity.server_id.clone(),
            endpoint: shared.identity.endpoint.clone(),
            region: shared.identity.region.clone(),
        };
        pushes
            .push(&server_info)
            .expect("server_info fits any push queue");
        let now = shared.clock.now();
        let session = Session {
            shared: self.0.clone(),
            recipient: Recipient {
                id: admission.id(),
                address: admission.address(),
                pushes,
            },
            buffers,
            admission,
            transport,
            names: AsyncMutex::new(SessionNames::default()),
            challenge: Mutex::new(None),
            buckets: Mutex::new(Buckets {
                messages: TokenBucket::new(
                    RateLimit {
                        burst: config.rate_limit_burst,
                        per_minute: config.rate_limit_per_minute,
                    },
                    now,
                ),
                pair_requests: TokenBucket::new(
                    RateLimit {
                        burst: config.pair_request_burst,
                        per_minute: config.pair_requests_per_minute,
                    },
                    now,
                ),
            }),
        };
        debug!(session = session.id(), "session opened");
        (session, receiver)
    }
}

/// The answer to one request: its message, and the `requestId` it must carry.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub message: ServerMessage,
    pub request_id: Option<RequestId>,
}

/// Why a request failed. Every failure maps to one protocol message, in `into_message`.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Decode(DecodeError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("Not registered. Send register message first.")]
    NotRegistered,
    #[error("Peer not found: {0}")]
    PeerNotFound(Name),
    #[error(transparent)]
    TooLargeForPeer(#[from] PushTooLarge),
    #[error("the receiver has as much waiting as it may (it is not reading now); try again later")]
    PeerBusy,
    #[error("peerId mismatch with registered identity")]
    PeerIdMismatch,
    #[error("Peer ID already in use by another connection")]
    PeerIdTaken,
    #[error("Pairing code already in use. Please reconnect with a new code.")]
    CodeCollision,
    #[error("the rendezvous registry is full; try again later")]
    RegistryFull,
    #[error(
        "this address holds as many rendezvous entries as it may; try again when some have expired"
    )]
    AddressFull,
    #[error("{0}")]
    PairError(&'static str),
    #[error("{0}")]
    LinkError(&'static str),
    #[error("over the message rate; this message was dropped")]
    RateLimited,
    #[error("the server failed to handle this request")]
    Internal,
    #[error("the store this request needs is unavailable; try again later")]
    Unavailable,
}

impl From<StateFailed> for Failure {
    fn from(failed: StateFailed) -> Self {
        match failed {
            StateFailed::Bug => Self::Internal,
            StateFailed::Unavailable => Self::Unavailable,
        }
    }
}

impl Failure {
    fn into_message(self) -> ServerMessage {
        let code = match self {
            Self::Decode(err) => return ServerMessage::error(err.code, err.message),
            Self::Request(RequestError::UnknownType(_)) => ErrorCode::UnknownType,
            Self::Request(RequestError::Invalid(_)) => ErrorCode::InvalidMessage,
            Self::NotRegistered => ErrorCode::NotRegistered,
            Self::PeerNotFound(_) => ErrorCode::PeerNotFound,
            Self::TooLargeForPeer(_) => ErrorCode::TooLarge,
            Self::PeerBusy => ErrorCode::RateLimited,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::PeerIdMismatch => ErrorCode::PeerIdMismatch,
            Self::PeerIdTaken => ErrorCode::PeerIdTaken,
            Self::RegistryFull | Self::AddressFull => ErrorCode::OverCapacity,
            Self::Internal => ErrorCode::Internal,
            Self::Unavailable => ErrorCode::Unavailable,
            Self::CodeCollision => {
                return ServerMessage::CodeCollision {
                    message: "Pairing code already in use. Please reconnect with a new code.",
                };
            }
            Self::PairError(error) => return ServerMessage::PairError { error },
            Self::LinkError(error) => return ServerMessage::LinkError { error },
        };
        ServerMessage::error(code, self.to_string())
    }
}

/// A bound session may only act as one of its names; an unbound one is checked by each request.
fn check_acts_as(names: &SessionNames, peer_id: &str) -> Result<(), Failure> {
    if names.is_bound() && !names.holds(peer_id) {
        return Err(Failure::PeerIdMismatch);
    }
    Ok(())
}

/// The session's pairing code, which pairing, linking and forwarding act as.
fn own_pairing_code(names: &SessionNames) -> Result<Name, Failure> {
    names.pairing_code.clone().ok_or(Failure::NotRegistered)
}

#[derive(Debug)]
pub struct Session {
    shared: Arc<SessionsInner>,
    recipient: Recipient,
    buffers: Arc<SessionBuffers>,
    /// The session's place within the session limits, given back when the session is dropped, and its
    /// address's shared budget.
    admission: Admission,
    transport: Transport,
    /// Held across the state operation of a request that binds a name, so that a session's bindings
    /// happen one at a time (QUIC clients send requests on concurrent streams).
    names: AsyncMutex<SessionNames>,
    buckets: Mutex<Buckets>,
    /// The key challenge waiting for its proof, when proofs are required.
    challenge: Mutex<Option<key_proof::PendingChallenge>>,
}

/// The session's rate limits: one for every message, one more for pairing requests.
#[derive(Debug)]
struct Buckets {
    messages: TokenBucket,
    pair_requests: TokenBucket,
}

impl Session {
    pub fn id(&self) -> SessionId {
        self.recipient.id
    }

    /// What the session buffers, on the account all sessions share; it tells when the session must
    /// close.
    pub fn buffers(&self) -> &Arc<SessionBuffers> {
        &self.buffers
    }

    /// Answers one decoded message, received in `encoding`, which costs one message of the session's
    /// rate and its address's. Never fails: every problem becomes an error reply.
    pub async fn handle(
        &self,
        decoded: Result<Envelope, DecodeError>,
        encoding: Encoding,
    ) -> Reply {
        if !self.charge_message() {
            let kind = self.count_received(&decoded, encoding);
            let request_id = match decoded {
                Ok(envelope) => envelope.request_id,
                Err(err) => err.request_id,
            };
            let reply = Reply {
                message: Failure::RateLimited.into_message(),
                request_id,
            };
            self.shared.metrics.answered(kind, &reply.message, None);
            return reply;
        }
        self.handle_charged(decoded, encoding).await
    }

    /// Answers one decoded message already paid for (see [`Self::charge_message`]).
    pub async fn handle_charged(
        &self,
        decoded: Result<Envelope, DecodeError>,
        encoding: Encoding,
    ) -> Reply {
        let started = Instant::now();
        let kind = self.count_received(&decoded, encoding);
        let (request_id, outcome) = match decoded {
            Err(mut err) => (err.request_id.take(), Err(Failure::Decode(err))),
            Ok(envelope) => {
                let request_id = envelope.request_id.clone();
                let outcome = Request::parse(envelope, &self.shared.config)
                    .map_err(Failure::from)
                    .map(|request| self.dispatch(request));
                let outcome = match outcome {
                    Ok(dispatched) => dispatched.await,
                    Err(failure) => Err(failure),
                };
                (request_id, outcome)
            }
        };
        let message = outcome.unwrap_or_else(Failure::into_message);
        self.shared
            .metrics
            .answered(kind, &message, Some(started.elapsed()));
        Reply {
            message,
            request_id,
        }
    }

    fn count_received(
        &self,
        decoded: &Result<Envelope, DecodeError>,
        encoding: Encoding,
    ) -> MessageType {
        let kind = match decoded {
            Ok(envelope) => MessageType::of(&envelope.kind),
            Err(_) => MessageType::UNDECODABLE,
        };
        self.shared.metrics.message_received(kind, encoding);
        kind
    }

    /// Takes one message from the session's rate and from its address's. Transports charge this way
    /// what costs CPU without being a message (a QUIC stream, a WebSocket Ping). Returns false when
    /// either is spent.
    pub fn charge_message(&self) -> bool {
        // The address first: a message its address refuses takes nothing from the session.
        self.admission.spend_messages(1.0)
            && self.buckets().messages.try_take(self.shared.clock.now())
    }

    /// Charges a WebSocket control frame (Ping, Pong), which the WebSocket layer has answered already.
    /// Returns false when the session's own rate is spent; an address spent by its other sessions
    /// costs this one nothing, so that a neighbour cannot get it closed.
    pub fn charge_control_frame(&self) -> bool {
        let paid = self.buckets().messages.try_take(self.shared.clock.now());
        let _ = self.admission.spend_messages(1.0);
        paid
    }

    async fn dispatch(&self, request: Request) -> Result<ServerMessage, Failure> {
        match request {
            Request::Ping => Ok(ServerMessage::Pong),
            Request::Heartbeat(heartbeat) => self.heartbeat(heartbeat).await,
            Request::RegisterCode(register) => self.register_code(register).await,
            Request::KeyProof(proof) => self.key_proof(proof).await,
            Request::RegisterRelay(register) => self.register_relay(register).await,
            Request::UpdateLoad(update) => self.update_load(update).await,
            Request::GetRelays(get) => self.get_relays(get).await,
            Request::RegisterRendezvous(register) => self.register_rendezvous(register).await,
            Request::Signal(signal) => self.forward(signal).await,
            Request::PairRequest(pair_request) => {
                if !self
                    .buckets()
                    .pair_requests
                    .try_take(self.shared.clock.now())
                {
                    return Err(Failure::RateLimited);
                }
                self.pair_request(pair_request).await
            }
            Request::PairResponse(response) => self.pair_response(response).await,
            Request::LinkRequest(link_request) => self.link_request(link_request).await,
            Request::LinkResponse(response) => self.link_response(response).await,
        }
    }

    fn state(&self) -> &SharedState {
        &self.shared.state
    }

    /// Takes `tokens` more from the session's message rate and its address's, beyond the one every
    /// message costs.
    fn take_tokens(&self, tokens: f64) -> bool {
        tokens == 0.0
            || (self.admission.spend_messages(tokens)
                && self
                    .buckets()
                    .messages
                    .try_take_n(self.shared.clock.now(), tokens))
    }

    fn pending_challenge(&self) -> MutexGuard<'_, Option<key_proof::PendingChallenge>> {
        self.challenge
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn buckets(&self) -> MutexGuard<'_, Buckets> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session's names.
    async fn names(&self) -> AsyncMutexGuard<'_, SessionNames> {
        self.names.lock().await
    }
}

impl Drop for Session {
    /// Gives the session's names back, with what they held (see [`SharedState::release_session`]).
    fn drop(&mut self) {
        self.shared.open_by_transport[self.transport as usize].fetch_sub(1, Ordering::Relaxed);
        self.state().release_session(self.id());
        debug!(session = self.id(), "session closed");
    }
}
