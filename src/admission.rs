//! Admission: how many sessions are open, in all and per address, and each one's number. A session holds
//! an [`Admission`] for its whole life; dropping it gives the place back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::AdmissionConfig;
use crate::peer::{AddressGroup, SessionId};

/// The server, or this address, is at its session limit.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the server or this address is at its connection limit")]
pub struct OverCapacity;

/// The open sessions, counted against the limits. Cheap to clone: clones share the counts.
#[derive(Clone, Debug)]
pub struct Admissions(Arc<Counts>);

#[derive(Debug)]
struct Counts {
    config: AdmissionConfig,
    open: Mutex<OpenSessions>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct OpenSessions {
    total: usize,
    per_address: HashMap<AddressGroup, usize>,
}

/// One admitted session; dropping it frees its place.
#[derive(Debug)]
pub struct Admission {
    admissions: Admissions,
    address: AddressGroup,
    id: SessionId,
}

impl Admission {
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The address group the session's connection came from.
    pub fn address(&self) -> AddressGroup {
        self.address
    }
}

impl Admissions {
    pub fn new(config: AdmissionConfig) -> Self {
        Self(Arc::new(Counts {
            config,
            open: Mutex::new(OpenSessions::default()),
            next_id: AtomicU64::new(1),
        }))
    }

    fn open_sessions(&self) -> MutexGuard<'_, OpenSessions> {
        // The counts stay consistent whatever panicked while holding the lock: each update is one step.
        self.0.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new session from `ip`, within the total and per-address limits.
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, OverCapacity> {
        let config = &self.0.config;
        let address = AddressGroup::from(ip);
        let mut open = self.open_sessions();
        let from_address = open.per_address.get(&address).copied().unwrap_or(0);
        if open.total >= config.max_sessions || from_address >= config.max_sessions_per_ip {
            return Err(OverCapacity);
        }
        open.total += 1;
        open.per_address.insert(address, from_address + 1);
        Ok(Admission {
            admissions: self.clone(),
            address,
            id: self.0.next_id.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Sessions now open.
    pub fn open(&self) -> usize {
        self.open_sessions().total
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.admissions.open_sessions();
        open.total -= 1;
        if let Some(count) = open.per_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.per_address.remove(&self.address);
            }
        }
    }
}
