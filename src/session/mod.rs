//! One client session, whatever its transport: it owns the session's identity, turns each decoded
//! message into exactly one reply, and cleans up after itself when dropped.
//!
//! Transports hand `handle` what they decoded and write back what it returns; message families
//! (`relay`, `rendezvous`, `pairing`, `signal`) add their handlers here without touching any transport.

mod linking;
mod pairing;
pub mod push;
pub mod rate;
mod relay;
mod rendezvous;
mod signal;

use std::sync::{Mutex, PoisonError};

use tracing::debug;

use crate::directory::{Role, SessionId};
use crate::hub::{Admission, Hub, OverCapacity};
use crate::protocol::names::{PairingCode, PairingKey};
use crate::protocol::{
    DecodeError, Envelope, ErrorCode, Name, Request, RequestError, RequestId, ServerMessage,
};
use push::{PushReceiver, PushSender, push_queue};
use rate::TokenBucket;

/// The answer to one request: its message, and the `requestId` it must carry.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub message: ServerMessage,
    pub request_id: Option<RequestId>,
}

/// The ids this session holds. A request may only act for these.
#[derive(Debug, Default)]
struct Identity {
    pairing_code: Option<Name>,
    relay_id: Option<Name>,
    /// Whether `relay_id` is also listed in the relay registry (a rendezvous-only binding is not).
    relay_registered: bool,
}

impl Identity {
    fn is_bound(&self) -> bool {
        self.pairing_code.is_some() || self.relay_id.is_some()
    }

    fn holds(&self, name: &str) -> bool {
        self.pairing_code
            .as_ref()
            .is_some_and(|n| n.as_str() == name)
            || self.relay_id.as_ref().is_some_and(|n| n.as_str() == name)
    }

    /// The session's pairing code, which pairing, linking and forwarding act as.
    fn pairing_code(&self) -> Result<Name, Failure> {
        self.pairing_code.clone().ok_or(Failure::NotRegistered)
    }

    /// A bound session may only act as one of its ids; an unbound one is checked by each request.
    fn check_acts_as(&self, peer_id: &str) -> Result<(), Failure> {
        if self.is_bound() && !self.holds(peer_id) {
            return Err(Failure::PeerIdMismatch);
        }
        Ok(())
    }
}

/// Why a request failed. Every failure maps to one protocol message, in `into_message`.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Decode(DecodeError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(
        "register as a relay (update_load) or with a pairing code (forwarding) on this session first"
    )]
    NotRegistered,
    #[error("no live session holds that pairing code")]
    PeerNotFound,
    #[error("peerId is not an id of this session")]
    PeerIdMismatch,
    #[error("peerId is held by another session")]
    PeerIdTaken,
    #[error("pairing code already in use")]
    CodeCollision,
    #[error("the rendezvous registry is full; try again later")]
    RegistryFull,
    #[error("{0}")]
    PairError(&'static str),
    #[error("{0}")]
    LinkError(&'static str),
    #[error("over the message rate; this message was dropped")]
    RateLimited,
}

impl Failure {
    fn into_message(self) -> ServerMessage {
        let code = match self {
            Self::Decode(err) => return ServerMessage::error(err.code, err.message),
            Self::Request(RequestError::UnknownType(_)) => ErrorCode::UnknownType,
            Self::Request(RequestError::Invalid(_)) => ErrorCode::InvalidMessage,
            Self::NotRegistered => ErrorCode::NotRegistered,
            Self::PeerNotFound => ErrorCode::PeerNotFound,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::PeerIdMismatch => ErrorCode::PeerIdMismatch,
            Self::PeerIdTaken => ErrorCode::PeerIdTaken,
            Self::RegistryFull => ErrorCode::OverCapacity,
            Self::CodeCollision => {
                return ServerMessage::CodeCollision {
                    message: "Pairing code already in use",
                };
            }
            Self::PairError(error) => return ServerMessage::PairError { error },
            Self::LinkError(error) => return ServerMessage::LinkError { error },
        };
        ServerMessage::error(code, self.to_string())
    }
}

#[derive(Debug)]
pub struct Session {
    hub: Hub,
    admission: Admission,
    pushes: PushSender,
    identity: Mutex<Identity>,
    limits: Mutex<Buckets>,
}

/// The session's rate limits: one for every message, one more for pairing requests.
#[derive(Debug)]
struct Buckets {
    messages: TokenBucket,
    pair_requests: TokenBucket,
}

impl Session {
    /// Opens a session for a client at `ip`. Its first push, already queued, is `server_info`.
    pub fn open(hub: &Hub, ip: std::net::IpAddr) -> Result<(Self, PushReceiver), OverCapacity> {
        Ok(Self::open_admitted(hub, hub.admit(ip)?))
    }

    /// Opens a session for a connection admitted earlier (QUIC admits before the handshake, so that
    /// connections still in their handshake count towards the limits too).
    pub fn open_admitted(hub: &Hub, admission: Admission) -> (Self, PushReceiver) {
        let settings = hub.settings();
        let (pushes, receiver) = push_queue(settings.push_queue, settings.push_queue_bytes);
        pushes.push(ServerMessage::ServerInfo {
            server_id: settings.server_id.clone(),
            endpoint: settings.endpoint.clone(),
            region: settings.region.clone(),
        });
        let session = Self {
            hub: hub.clone(),
            admission,
            pushes,
            identity: Mutex::new(Identity::default()),
            limits: Mutex::new(Buckets {
                messages: TokenBucket::new(settings.message_rate, hub.now()),
                pair_requests: TokenBucket::new(settings.pair_request_rate, hub.now()),
            }),
        };
        debug!(session = session.id(), "session opened");
        (session, receiver)
    }

    pub fn id(&self) -> SessionId {
        self.admission.id
    }

    /// Answers one decoded message. Never fails: every problem becomes an error reply.
    pub fn handle(&self, decoded: Result<Envelope, DecodeError>) -> Reply {
        let now = self.hub.now();
        if !self.buckets().messages.try_take(now) {
            let request_id = match &decoded {
                Ok(envelope) => envelope.request_id.clone(),
                Err(err) => err.request_id.clone(),
            };
            return Reply {
                message: Failure::RateLimited.into_message(),
                request_id,
            };
        }
        let (request_id, outcome) = match decoded {
            Err(mut err) => (err.request_id.take(), Err(Failure::Decode(err))),
            Ok(envelope) => {
                let request_id = envelope.request_id.clone();
                let outcome = Request::parse(envelope, &self.hub.settings().limits)
                    .map_err(Failure::from)
                    .and_then(|request| self.dispatch(request));
                (request_id, outcome)
            }
        };
        Reply {
            message: outcome.unwrap_or_else(Failure::into_message),
            request_id,
        }
    }

    fn dispatch(&self, request: Request) -> Result<ServerMessage, Failure> {
        match request {
            Request::Ping => Ok(ServerMessage::Pong),
            Request::Heartbeat { peer_id } => {
                if let Some(peer_id) = peer_id {
                    self.identity().check_acts_as(peer_id.as_str())?;
                }
                Ok(ServerMessage::HeartbeatAck {
                    timestamp: self.hub.wall_time(),
                })
            }
            Request::RegisterCode {
                pairing_code,
                public_key,
            } => self.register_code(pairing_code, public_key),
            Request::RegisterRelay {
                peer_id,
                max_connections,
                public_key,
            } => self.register_relay(peer_id, max_connections, public_key),
            Request::UpdateLoad {
                peer_id,
                connected_count,
            } => self.update_load(peer_id, connected_count),
            Request::GetRelays { peer_id, count } => self.get_relays(peer_id, count),
            Request::RegisterRendezvous(request) => self.register_rendezvous(request),
            Request::Signal(signal) => self.forward(signal),
            Request::PairRequest {
                target_code,
                proposed_name,
            } => {
                if !self.buckets().pair_requests.try_take(self.hub.now()) {
                    return Err(Failure::RateLimited);
                }
                self.pair_request(target_code, proposed_name)
            }
            Request::PairResponse {
                target_code,
                accepted,
            } => self.pair_response(target_code, accepted),
            Request::LinkRequest {
                link_code,
                public_key,
                device_name,
            } => self.link_request(link_code, public_key, device_name),
            Request::LinkResponse {
                link_code,
                accepted,
                device_id,
            } => self.link_response(link_code, accepted, device_id),
        }
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn identity(&self) -> std::sync::MutexGuard<'_, Identity> {
        self.identity.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Binds a pairing code, replacing (and freeing) the session's earlier one.
    fn register_code(
        &self,
        pairing_code: PairingCode,
        public_key: PairingKey,
    ) -> Result<ServerMessage, Failure> {
        let code = pairing_code.name().clone();
        let mut identity = self.identity();
        let mut state = self.hub.state();
        state
            .directory
            .bind(&code, self.id(), &self.pushes, Role::PairingCode)
            .map_err(|_| Failure::CodeCollision)?;
        state
            .directory
            .set_code_key(code.as_str(), self.id(), public_key);
        if let Some(old) = identity.pairing_code.replace(code.clone())
            && old != code
        {
            state
                .directory
                .release(old.as_str(), self.id(), Role::PairingCode);
            let ended = state.pairing.remove_code(&old);
            state.deliver_pairing_events(ended);
            if identity.relay_id.as_ref() != Some(&old) {
                state.rendezvous.remove_hourly(old.as_str());
            }
        }
        Ok(ServerMessage::RegisteredCode {
            pairing_code: code,
            server_id: self.hub.settings().server_id.clone(),
        })
    }
}

impl Drop for Session {
    /// Frees the session's names, unlists its relay and removes its hourly tokens. Its daily points and
    /// dead drops stay until they expire: they exist for peers that are offline.
    fn drop(&mut self) {
        let identity = std::mem::take(
            self.identity
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let id = self.id();
        let mut state = self.hub.state();
        if let Some(code) = &identity.pairing_code {
            state
                .directory
                .release(code.as_str(), id, Role::PairingCode);
            let ended = state.pairing.remove_code(code);
            state.deliver_pairing_events(ended);
            state.rendezvous.remove_hourly(code.as_str());
        }
        if let Some(relay_id) = &identity.relay_id {
            state
                .directory
                .release(relay_id.as_str(), id, Role::RelayId);
            state.rendezvous.remove_hourly(relay_id.as_str());
            if identity.relay_registered {
                state.relays.unregister(relay_id.as_str());
            }
        }
        debug!(session = id, "session closed");
    }
}
