//! The state every session shares: the name directory and the registries behind one lock, the clock, the
//! settings sessions need, and the connection limits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::clock::{Clock, Millis, duration_millis};
use crate::config::Config;
use crate::directory::{Directory, SessionId};
use crate::protocol::RequestLimits;
use crate::protocol::ServerMessage;
use crate::registry::pairing::{PairingEvent, PairingRegistry, PairingTimes};
use crate::registry::{Bounds, RelayRegistry, RendezvousRegistry, Swept, Ttls};
use crate::session::rate::RateLimit;

/// Entries removed per lock acquisition while sweeping, so that requests wait at most one small batch.
const SWEEP_BATCH: usize = 4096;

/// What sessions need to know about this server.
#[derive(Debug)]
pub struct Settings {
    pub server_id: Arc<str>,
    pub endpoint: Option<Arc<str>>,
    pub region: Option<Arc<str>>,
    pub limits: RequestLimits,
    pub push_queue: usize,
    pub push_queue_bytes: usize,
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    pub max_rendezvous_entries: usize,
    pub ttls: Ttls,
    pub bounds: Bounds,
    pub pairing: PairingTimes,
    pub message_rate: RateLimit,
    pub pair_request_rate: RateLimit,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        let server_id = config
            .server_id
            .clone()
            .unwrap_or_else(|| format!("zajel-{:08x}", rand::random::<u32>()));
        Self {
            server_id: server_id.into(),
            endpoint: config.endpoint.as_deref().map(Arc::from),
            region: config.region.as_deref().map(Arc::from),
            limits: RequestLimits {
                max_list_entries: config.max_list_entries,
                max_dead_drop_chars: config.max_dead_drop_chars,
            },
            push_queue: config.push_queue,
            push_queue_bytes: config.push_queue_bytes,
            max_sessions: config.max_sessions,
            max_sessions_per_ip: config.max_sessions_per_ip,
            max_rendezvous_entries: config.max_rendezvous_entries,
            ttls: Ttls {
                daily: duration_millis(Duration::from_secs(config.daily_ttl_secs)),
                hourly: duration_millis(Duration::from_secs(config.hourly_ttl_secs)),
            },
            bounds: Bounds {
                max_results: config.max_rendezvous_results,
                max_peers_per_point: config.max_peers_per_point,
            },
            message_rate: RateLimit {
                burst: config.rate_limit_burst,
                per_minute: config.rate_limit_per_minute,
            },
            pair_request_rate: RateLimit {
                burst: config.pair_request_burst,
                per_minute: config.pair_requests_per_minute,
            },
            pairing: PairingTimes {
                expiry: duration_millis(Duration::from_secs(config.pair_expiry_secs)),
                warning: duration_millis(Duration::from_secs(config.pair_warning_secs)),
                max_pending_per_target: config.max_pending_pairs,
            },
        }
    }
}

/// Everything behind the one lock. Operations that span the directory and a registry (bind a name and
/// register it, match a token and push to its holder) are then atomic without any lock ordering.
#[derive(Debug)]
pub struct State {
    pub directory: Directory,
    pub relays: RelayRegistry,
    pub rendezvous: RendezvousRegistry,
    pub pairing: PairingRegistry,
    pub rng: SmallRng,
}

impl State {
    /// Tells the sessions concerned what happened to their pending requests. Sessions that are gone
    /// simply are not told.
    pub fn deliver_pairing_events(&mut self, events: Vec<PairingEvent>) {
        let remaining_seconds = self.pairing.times().warning / 1000;
        for event in events {
            match event {
                PairingEvent::Expiring { requester, target } => {
                    for (to, peer) in [(&requester, &target), (&target, &requester)] {
                        self.directory.push_to_code(
                            to.as_str(),
                            ServerMessage::PairExpiring {
                                peer_code: peer.clone(),
                                remaining_seconds,
                            },
                        );
                    }
                }
                PairingEvent::TimedOut { requester, target } => {
                    self.directory.push_to_code(
                        requester.as_str(),
                        ServerMessage::PairTimeout { peer_code: target },
                    );
                }
                PairingEvent::LinkTimedOut { phone, web_client } => {
                    for to in [&phone, &web_client] {
                        self.directory.push_to_code(
                            to.as_str(),
                            ServerMessage::LinkTimeout {
                                link_code: phone.clone(),
                            },
                        );
                    }
                }
            }
        }
    }
}

/// A cheap, cloneable handle to the shared state.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

struct Inner {
    settings: Settings,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    sessions: Mutex<SessionCount>,
    next_session_id: AtomicU64,
}

#[derive(Debug, Default)]
struct SessionCount {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The server, or this address, is at its session limit.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the server or this address is at its connection limit")]
pub struct OverCapacity;

/// One admitted session; dropping it frees its place.
#[derive(Debug)]
pub struct Admission {
    hub: Hub,
    ip: IpAddr,
    pub id: SessionId,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("server_id", &self.0.settings.server_id)
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(settings: Settings, clock: Arc<dyn Clock>) -> Self {
        Self::with_rng(settings, clock, SmallRng::from_os_rng())
    }

    /// A hub whose relay shuffling follows `rng`: tests seed it to be deterministic.
    pub fn with_rng(settings: Settings, clock: Arc<dyn Clock>, rng: SmallRng) -> Self {
        let rendezvous = RendezvousRegistry::new(settings.ttls, settings.bounds);
        let pairing = PairingRegistry::new(settings.pairing);
        Self(Arc::new(Inner {
            settings,
            clock,
            state: Mutex::new(State {
                directory: Directory::default(),
                relays: RelayRegistry::new(),
                rendezvous,
                pairing,
                rng,
            }),
            sessions: Mutex::new(SessionCount::default()),
            next_session_id: AtomicU64::new(1),
        }))
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn now(&self) -> Millis {
        self.0.clock.now()
    }

    pub fn wall_time(&self) -> Millis {
        self.0.clock.wall_time()
    }

    /// Locks the shared state. Never hold the guard across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the data it guards stays usable for everyone else.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new session from `ip`, within the total and per-address limits.
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, OverCapacity> {
        let settings = &self.0.settings;
        let mut sessions = self
            .0
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let from_ip = sessions.per_ip.get(&ip).copied().unwrap_or(0);
        if sessions.total >= settings.max_sessions || from_ip >= settings.max_sessions_per_ip {
            return Err(OverCapacity);
        }
        sessions.total += 1;
        sessions.per_ip.insert(ip, from_ip + 1);
        Ok(Admission {
            hub: self.clone(),
            ip,
            id: self.0.next_session_id.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Sessions now open.
    pub fn session_count(&self) -> usize {
        self.0
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// Sends what the pairing timers made due by now (`pair_expiring`, `pair_timeout`, `link_timeout`).
    /// Returns how many events there were.
    pub fn run_pairing_timers(&self) -> usize {
        let now = self.now();
        let mut state = self.state();
        let events = state.pairing.due_events(now);
        let count = events.len();
        state.deliver_pairing_events(events);
        count
    }

    /// Removes up to one batch of rendezvous entries whose time has passed, under one short hold of the
    /// lock. Call again while it reports it is not done.
    pub fn sweep_expired_batch(&self) -> Swept {
        let now = self.now();
        self.state().rendezvous.sweep(now, SWEEP_BATCH)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut sessions = self
            .hub
            .0
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sessions.total -= 1;
        if let Some(count) = sessions.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                sessions.per_ip.remove(&self.ip);
            }
        }
    }
}
