//! Admission: what each address (an IPv4 address, or an IPv6 /64) has open and has spent. Connections
//! still in their handshake and open sessions are counted against limits in all and per address, and each
//! address has a budget of rendezvous work shared by all its sessions, so that per-session limits add up.
//!
//! A session holds an [`Admission`] for its whole life and a connection a [`Handshake`] until it becomes a
//! session or fails; dropping either gives the place back. An address's budget outlives its sessions
//! until it has refilled, so reconnecting does not reset it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::clock::{Clock, Millis};
use crate::config::AdmissionConfig;
use crate::peer::{AddressGroup, SessionId};
use crate::rate::{RateLimit, TokenBucket};

/// Admissions between two sweeps of addresses that have nothing open and a full budget.
const FORGET_IDLE_EVERY: u64 = 4096;

/// The server, or this address, is at its session limit.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the server or this address is at its connection limit")]
pub struct OverCapacity;

/// The open sessions and handshakes, counted against the limits. Cheap to clone: clones share them.
#[derive(Clone, Debug)]
pub struct Admissions(Arc<Shared>);

struct Shared {
    config: AdmissionConfig,
    clock: Arc<dyn Clock>,
    open: Mutex<Open>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admissions")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Open {
    sessions: usize,
    handshakes: usize,
    per_address: HashMap<AddressGroup, AddressState>,
    admitted_since_forgetting: u64,
}

impl Open {
    /// What `address` has open of one kind.
    fn held_by(&self, address: AddressGroup, kind: impl Fn(&AddressState) -> usize) -> usize {
        self.per_address.get(&address).map_or(0, kind)
    }
}

/// What one address has open and has spent.
#[derive(Debug)]
struct AddressState {
    sessions: usize,
    handshakes: usize,
    /// Messages its sessions may send, together, earned back over time.
    messages: TokenBucket,
    /// Rendezvous entries its sessions may register, earned back over time.
    rendezvous_entries: TokenBucket,
}

impl AddressState {
    fn is_idle(&mut self, now: Millis) -> bool {
        self.sessions == 0
            && self.handshakes == 0
            && self.messages.is_full(now)
            && self.rendezvous_entries.is_full(now)
    }
}

/// One admitted session; dropping it frees its place.
#[derive(Debug)]
pub struct Admission {
    admissions: Admissions,
    address: AddressGroup,
    id: SessionId,
}

/// One connection in its handshake; dropping it frees its place.
#[derive(Debug)]
pub struct Handshake {
    admissions: Admissions,
    address: AddressGroup,
}

impl Admission {
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The address group the session's connection came from.
    pub fn address(&self) -> AddressGroup {
        self.address
    }

    /// Takes `entries` from the rendezvous budget of the session's address. Returns false, taking
    /// nothing, when the budget does not hold that many now.
    pub fn spend_rendezvous_entries(&self, entries: usize) -> bool {
        self.spend(|state| &mut state.rendezvous_entries, entries as f64)
    }

    /// Takes `messages` from the message rate of the session's address, which all its sessions share.
    pub fn spend_messages(&self, messages: f64) -> bool {
        self.spend(|state| &mut state.messages, messages)
    }

    fn spend(&self, bucket: impl FnOnce(&mut AddressState) -> &mut TokenBucket, cost: f64) -> bool {
        let now = self.admissions.0.clock.now();
        let mut open = self.admissions.open();
        open.per_address
            .get_mut(&self.address)
            .is_some_and(|state| bucket(state).try_take_n(now, cost))
    }
}

impl Admissions {
    pub fn new(config: AdmissionConfig, clock: Arc<dyn Clock>) -> Self {
        Self(Arc::new(Shared {
            config,
            clock,
            open: Mutex::new(Open::default()),
            next_id: AtomicU64::new(1),
        }))
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        // The counts stay consistent whatever panicked while holding the lock: each update is one step.
        self.0.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new session from `ip`, within the total and per-address limits.
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, OverCapacity> {
        let config = &self.0.config;
        let address = AddressGroup::from(ip);
        let now = self.0.clock.now();
        let mut open = self.open();
        let from_address = open.held_by(address, |state| state.sessions);
        if open.sessions >= config.max_sessions || from_address >= config.max_sessions_per_ip {
            return Err(OverCapacity);
        }
        open.sessions += 1;
        self.address_state(&mut open, address, now).sessions += 1;
        open.admitted_since_forgetting += 1;
        if open.admitted_since_forgetting >= FORGET_IDLE_EVERY {
            open.admitted_since_forgetting = 0;
            open.per_address.retain(|_, state| !state.is_idle(now));
        }
        Ok(Admission {
            admissions: self.clone(),
            address,
            id: self.0.next_id.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Whether a session from `ip` would be admitted now.
    pub fn has_room(&self, ip: IpAddr) -> bool {
        let config = &self.0.config;
        let open = self.open();
        let from_address = open.held_by(AddressGroup::from(ip), |state| state.sessions);
        open.sessions < config.max_sessions && from_address < config.max_sessions_per_ip
    }

    /// Past this many handshakes in progress, QUIC clients prove their address (a Retry) before theirs
    /// begins.
    pub fn handshakes_before_retry(&self) -> usize {
        self.0.config.handshakes_before_retry
    }

    /// Counts a connection from `ip` that has not finished its handshake, within the total and
    /// per-address limits of handshakes in progress.
    pub fn begin_handshake(&self, ip: IpAddr) -> Result<Handshake, OverCapacity> {
        let config = &self.0.config;
        let address = AddressGroup::from(ip);
        let now = self.0.clock.now();
        let mut open = self.open();
        let from_address = open.held_by(address, |state| state.handshakes);
        if open.handshakes >= config.max_handshakes || from_address >= config.max_handshakes_per_ip
        {
            return Err(OverCapacity);
        }
        open.handshakes += 1;
        self.address_state(&mut open, address, now).handshakes += 1;
        Ok(Handshake {
            admissions: self.clone(),
            address,
        })
    }

    fn address_state<'a>(
        &self,
        open: &'a mut Open,
        address: AddressGroup,
        now: Millis,
    ) -> &'a mut AddressState {
        let config = &self.0.config;
        open.per_address
            .entry(address)
            .or_insert_with(|| AddressState {
                sessions: 0,
                handshakes: 0,
                messages: TokenBucket::new(
                    RateLimit {
                        burst: config.messages_per_minute_per_ip,
                        per_minute: config.messages_per_minute_per_ip,
                    },
                    now,
                ),
                rendezvous_entries: TokenBucket::new(
                    RateLimit {
                        burst: config.rendezvous_entries_per_minute_per_ip,
                        per_minute: config.rendezvous_entries_per_minute_per_ip,
                    },
                    now,
                ),
            })
    }

    /// Sessions now open.
    pub fn open_sessions(&self) -> usize {
        self.open().sessions
    }

    /// Connections now in their handshake.
    pub fn handshakes(&self) -> usize {
        self.open().handshakes
    }

    /// Gives back what `address` had open, forgetting the address once nothing is left to remember.
    fn release(&self, address: AddressGroup, session: bool) {
        let now = self.0.clock.now();
        let mut open = self.open();
        if session {
            open.sessions -= 1;
        } else {
            open.handshakes -= 1;
        }
        if let Some(state) = open.per_address.get_mut(&address) {
            if session {
                state.sessions -= 1;
            } else {
                state.handshakes -= 1;
            }
            if state.is_idle(now) {
                open.per_address.remove(&address);
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admissions.release(self.address, true);
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.admissions.release(self.address, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn admissions(config: AdmissionConfig) -> (Admissions, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(0));
        (Admissions::new(config, clock.clone()), clock)
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn handshakes_are_limited_apart_from_sessions() {
        let (admissions, _) = admissions(AdmissionConfig {
            max_handshakes_per_ip: 2,
            max_sessions_per_ip: 1,
            ..AdmissionConfig::default()
        });
        let first = admissions.begin_handshake(HOME).unwrap();
        let _second = admissions.begin_handshake(HOME).unwrap();
        assert_eq!(admissions.begin_handshake(HOME).err(), Some(OverCapacity));
        let _session = admissions
            .admit(HOME)
            .expect("handshakes take no session's place");
        drop(first);
        assert!(admissions.begin_handshake(HOME).is_ok());
        assert_eq!(admissions.handshakes(), 1);
    }

    #[test]
    fn an_address_budget_is_shared_by_its_sessions_and_survives_reconnecting() {
        let (admissions, clock) = admissions(AdmissionConfig {
            rendezvous_entries_per_minute_per_ip: 1000,
            ..AdmissionConfig::default()
        });
        let first = admissions.admit(HOME).unwrap();
        let second = admissions.admit(HOME).unwrap();
        assert!(first.spend_rendezvous_entries(600));
        assert!(
            !second.spend_rendezvous_entries(600),
            "the address has 400 left"
        );
        assert!(second.spend_rendezvous_entries(400));
        drop((first, second));
        let again = admissions.admit(HOME).unwrap();
        assert!(
            !again.spend_rendezvous_entries(1),
            "a new session from the address starts from what the address has left"
        );
        clock.advance(Duration::from_secs(30));
        assert!(again.spend_rendezvous_entries(500));
        drop(again);
        clock.advance(Duration::from_secs(60));
        assert!(
            admissions
                .admit(HOME)
                .unwrap()
                .spend_rendezvous_entries(1000),
            "refilled"
        );
    }
}
