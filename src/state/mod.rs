//! The state every session shares: which session owns which name, the relay and rendezvous registries and
//! the pending pairing and link requests, behind operations named for what a session does.
//!
//! Every operation is one call that takes the lock once, does a bounded amount of work and releases it;
//! nothing outside this module sees the lock. Operations that span names and registries (bind a name and
//! list it, match a token and push to its owner) are therefore atomic. This interface is also where a
//! second, shared backend goes.

mod owners;
mod pairing;
mod relays;
mod rendezvous;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::admission::SessionId;
use crate::clock::{Clock, Millis};
use crate::config::{PairingConfig, RendezvousConfig};
use crate::protocol::names::PairingKey;
use crate::protocol::{Name, ServerMessage};
use crate::push::PushSender;
use crate::registry::{PairingRegistry, RelayRegistry, RendezvousRegistry};
use owners::{NameOwners, Role};

pub use owners::Taken as NameTaken;
pub use pairing::{LinkAnswerError, NoPendingRequest, PairingRefused};
pub use rendezvous::RendezvousRefused;

/// Where pushes for a session go: its number and its queue.
#[derive(Clone, Debug)]
pub struct Recipient {
    pub id: SessionId,
    pub pushes: PushSender,
}

/// The names a session holds. A session may act only for these.
#[derive(Clone, Debug, Default)]
pub struct SessionNames {
    pub pairing_code: Option<Name>,
    pub relay_id: Option<Name>,
    /// Whether `relay_id` is also listed in the relay registry (a rendezvous-only binding is not).
    pub relay_listed: bool,
}

impl SessionNames {
    pub fn is_bound(&self) -> bool {
        self.pairing_code.is_some() || self.relay_id.is_some()
    }

    pub fn holds(&self, name: &str) -> bool {
        self.pairing_code
            .as_ref()
            .is_some_and(|n| n.as_str() == name)
            || self.relay_id.as_ref().is_some_and(|n| n.as_str() == name)
    }
}

/// How a request that waited for an answer was answered.
#[derive(Debug, PartialEq)]
pub enum Answer<T> {
    Rejected,
    Accepted(T),
}

/// The sizes of what the state holds, for /health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateCounts {
    /// Names owned by live sessions.
    pub names: usize,
    pub relays: usize,
    pub rendezvous_entries: usize,
}

/// A cheap, cloneable handle to the shared state.
#[derive(Clone)]
pub struct SharedState(Arc<Inner>);

struct Inner {
    clock: Arc<dyn Clock>,
    max_rendezvous_entries: usize,
    registries: Mutex<Registries>,
}

/// Everything behind the one lock.
#[derive(Debug)]
struct Registries {
    owners: NameOwners,
    relays: RelayRegistry,
    rendezvous: RendezvousRegistry,
    pairing: PairingRegistry,
    rng: SmallRng,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState").finish_non_exhaustive()
    }
}

impl SharedState {
    pub fn new(
        clock: Arc<dyn Clock>,
        rendezvous: &RendezvousConfig,
        pairing: &PairingConfig,
    ) -> Self {
        Self::with_rng(clock, rendezvous, pairing, SmallRng::from_os_rng())
    }

    /// State whose relay shuffling follows `rng`: tests seed it to be deterministic.
    pub fn with_rng(
        clock: Arc<dyn Clock>,
        rendezvous: &RendezvousConfig,
        pairing: &PairingConfig,
        rng: SmallRng,
    ) -> Self {
        Self(Arc::new(Inner {
            clock,
            max_rendezvous_entries: rendezvous.max_rendezvous_entries,
            registries: Mutex::new(Registries {
                owners: NameOwners::default(),
                relays: RelayRegistry::new(),
                rendezvous: RendezvousRegistry::new(rendezvous),
                pairing: PairingRegistry::new(pairing),
                rng,
            }),
        }))
    }

    /// The clock the registries run on; sessions read it too, so that rates and TTLs agree.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    fn now(&self) -> Millis {
        self.0.clock.now()
    }

    /// Never held across an `.await`, and never outside this module.
    fn lock(&self) -> MutexGuard<'_, Registries> {
        // A panic while holding the lock is a bug; the data it guards stays usable for everyone else.
        self.0
            .registries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Binds `code` to the session as its pairing code, with its public key. A session that held another
    /// code gives it up, with everything that code had (see [`Self::release_session`]).
    pub fn bind_code(
        &self,
        session: &Recipient,
        names: &SessionNames,
        code: &Name,
        key: PairingKey,
    ) -> Result<(), NameTaken> {
        let mut registries = self.lock();
        registries.owners.bind(code, session, Role::PairingCode)?;
        registries
            .owners
            .set_code_key(code.as_str(), session.id, key);
        if let Some(old) = &names.pairing_code
            && old != code
        {
            registries.release_code(session.id, old, names.relay_id.as_ref() == Some(old));
        }
        Ok(())
    }

    /// Queues a push for the session holding `code` as its pairing code. Returns false when none does.
    pub fn push_to_code(&self, code: &Name, message: ServerMessage) -> bool {
        self.lock().owners.push_to_code(code.as_str(), message)
    }

    /// Frees every name of an ended session, with its relay listing, its hourly tokens and its pending
    /// requests (whose other sides are told). Its daily points and dead drops stay until they expire:
    /// they exist for peers that are offline.
    pub fn release_session(&self, session: SessionId, names: &SessionNames) {
        let mut registries = self.lock();
        if let Some(code) = &names.pairing_code {
            registries.release_code(session, code, names.relay_id.as_ref() == Some(code));
        }
        if let Some(relay_id) = &names.relay_id {
            registries.release_relay_id(session, relay_id, names.relay_listed);
        }
    }

    /// The sizes of the registries now.
    pub fn counts(&self) -> StateCounts {
        let registries = self.lock();
        StateCounts {
            names: registries.owners.len(),
            relays: registries.relays.len(),
            rendezvous_entries: registries.rendezvous.len(),
        }
    }
}

impl Registries {
    /// The one way a pairing code is given up, whether replaced or its session ended: pending requests
    /// from and to it end (their other sides are told), and its hourly tokens go unless the same name is
    /// still the session's relay id.
    fn release_code(&mut self, session: SessionId, code: &Name, still_relay_id: bool) {
        self.owners
            .release(code.as_str(), session, Role::PairingCode);
        let ended = self.pairing.remove_code(code);
        self.deliver_pairing_events(ended);
        if !still_relay_id {
            self.rendezvous.remove_hourly(code.as_str());
        }
    }

    fn release_relay_id(&mut self, session: SessionId, relay_id: &Name, listed: bool) {
        self.owners
            .release(relay_id.as_str(), session, Role::RelayId);
        self.rendezvous.remove_hourly(relay_id.as_str());
        if listed {
            self.relays.unregister(relay_id.as_str());
        }
    }
}
