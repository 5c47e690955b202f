//! The state every session shares: which session owns which name, the relay and rendezvous registries and
//! the pending pairing and link requests, behind operations named for what a session does.
//!
//! The registries belong to one thread of their own, which runs the operations one at a time, each a
//! bounded amount of work; sessions send it operations and await the answers. So no async worker thread
//! ever waits for the registries (a session waiting for its answer yields), operations that span names
//! and registries (bind a name and list it, match a token and push to its owner) are atomic, and nothing
//! outside this module can hold the state. This interface is also where a second, shared backend goes.

pub mod cluster;
mod owners;
mod pairing;
mod relays;
mod rendezvous;
mod tunnels;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::{mpsc, oneshot};

use crate::clock::{Clock, Millis};
use crate::config::{PairingConfig, RendezvousConfig};
use crate::daily_store::{DailyStore, Restored};
use crate::peer::{AddressGroup, SessionId};
use crate::protocol::names::PairingKey;
use crate::protocol::{Name, ServerMessage};
use crate::push::{ForwardRefused, PushSender};
use crate::registry::{PairingRegistry, RelayRegistry, RendezvousRegistry};
use cluster::names::Delivery;
use cluster::sessions::Ended;
use cluster::{Cluster, StoreError};
use owners::{NameOwners, Role};
use tunnels::{TunnelEnd, Tunnels};

pub use owners::Taken as NameTaken;
pub use pairing::{LinkAnswerError, NoPendingRequest, PairingRefused, TimersRun};
pub use rendezvous::{RendezvousRefused, RendezvousRegistration};

/// Where pushes for a session go: its number and its queue.
#[derive(Clone, Debug)]
pub struct Recipient {
    pub id: SessionId,
    /// Where its connection came from: per-address quotas count by it.
    pub address: AddressGroup,
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

/// The sizes of what the state holds, for /health, /stats and metrics. In cluster mode, this node's part:
/// the registries in Redis are not counted here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateCounts {
    /// Names owned by live sessions.
    pub names: usize,
    /// Sessions holding a pairing code (in cluster mode, this node's).
    pub pairing_codes: usize,
    /// Sessions holding a relay id (in cluster mode, this node's).
    pub relay_ids: usize,
    pub relays: usize,
    pub rendezvous_entries: usize,
    pub daily_points: usize,
    pub dead_drops: usize,
    pub hourly_tokens: usize,
    pub pending_pairs: usize,
    pub pending_links: usize,
}

/// Why a forwarded message was not queued.
#[derive(Debug)]
pub enum Undelivered {
    /// No live session holds the target as its pairing code.
    NoSuchPeer,
    /// The target's queue has no room for it, or never would.
    Refused(ForwardRefused),
}

/// The state could not run an operation.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateFailed {
    /// A bug made it fail; the session is told `internal`.
    #[error("the shared state could not run this operation")]
    Bug,
    /// A store it needs could not be reached or written; the session is told `unavailable`.
    #[error("the store this operation needs is unavailable")]
    Unavailable,
}

/// An operation, run on the state's thread with the registries and the time it runs at.
type Operation = Box<dyn FnOnce(&mut Registries, Millis) + Send>;

/// A cheap, cloneable handle to the shared state. The state's thread ends when the last handle goes.
#[derive(Clone)]
pub struct SharedState(Arc<Inner>);

struct Inner {
    clock: Arc<dyn Clock>,
    operations: mpsc::UnboundedSender<Operation>,
    counts: Arc<LiveCounts>,
    /// In cluster mode, the shared registries in Redis; the state's thread then keeps only what this
    /// node's sessions hold.
    cluster: Option<Cluster>,
    /// Pairing settings; in cluster mode the limits checked in Redis.
    pairing: PairingConfig,
    /// Cluster mode: ended sessions whose holdings Redis could not be told to release yet.
    unreleased: std::sync::Mutex<Vec<Ended>>,
}

/// The registries' sizes after the latest operation, readable without waiting for the state's thread.
#[derive(Debug, Default)]
struct LiveCounts {
    names: AtomicUsize,
    pairing_codes: AtomicUsize,
    relay_ids: AtomicUsize,
    relays: AtomicUsize,
    rendezvous_entries: AtomicUsize,
    daily_points: AtomicUsize,
    dead_drops: AtomicUsize,
    hourly_tokens: AtomicUsize,
    pending_pairs: AtomicUsize,
    pending_links: AtomicUsize,
}

/// Everything the state's thread owns.
#[derive(Debug)]
struct Registries {
    owners: NameOwners,
    relays: RelayRegistry,
    rendezvous: RendezvousRegistry,
    pairing: PairingRegistry,
    rng: SmallRng,
    /// The names each live session holds, as the registries know them: what its end releases, whatever
    /// the session itself got to know (a session may end while an operation of its is queued).
    held: HashMap<SessionId, SessionNames>,
    /// Where daily entries are kept across restarts, if anywhere.
    daily_store: Option<DailyStore>,
    /// In cluster mode, the hourly entries each live session made, to remove when it ends.
    hourly_in_cluster: HashMap<SessionId, HourlyHeld>,
    /// Cluster mode: pending requests live in Redis, so a released code's are ended there, by whoever
    /// runs the operation that released it (see [`ReleasedCode`]).
    clustered: bool,
    released_codes: Vec<ReleasedCode>,
    /// Device-link tunnels of this node's sessions.
    tunnels: Tunnels,
}

/// The hourly entries a session made in the cluster, by (peer id, token), and the address whose budget
/// they are counted in: what its end removes, and what is announced again if Redis lost it.
#[derive(Debug)]
struct HourlyHeld {
    pub address: AddressGroup,
    pub entries: HashMap<(Name, Name), HourlyEntry>,
}

#[derive(Clone, Debug)]
struct HourlyEntry {
    pub relay_id: Arc<str>,
    pub key: Option<Arc<str>>,
    pub expires: Millis,
}

/// A pairing code given up in cluster mode, with what must end in Redis with it.
#[derive(Debug)]
struct ReleasedCode {
    session: SessionId,
    code: Name,
    /// Codes it had requests waiting for.
    targets: Vec<Name>,
    /// Phones it asked to attach to.
    phones: Vec<Name>,
    /// Its hourly entries (peer id, token), and the address whose budget they are counted in.
    hourly: Option<(AddressGroup, Vec<(Name, Name)>)>,
}

impl From<StoreError> for StateFailed {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unreachable(_) => Self::Unavailable,
            StoreError::Refused(err) => {
                tracing::error!(error = %err, "redis refused an operation");
                Self::Bug
            }
        }
    }
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState").finish_non_exhaustive()
    }
}

impl SharedState {
    /// State whose daily entries follow `daily_store`, starting from what it restored.
    pub fn new(
        clock: Arc<dyn Clock>,
        rendezvous: &RendezvousConfig,
        pairing: &PairingConfig,
        daily_store: DailyStore,
        restored: Vec<Restored>,
    ) -> Self {
        let mut registries = Registries::new(rendezvous, pairing, SmallRng::from_os_rng());
        for Restored {
            point,
            peer_id,
            entry,
        } in restored
        {
            registries.rendezvous.restore_daily(&point, &peer_id, entry);
        }
        registries.daily_store = Some(daily_store);
        Self::start(clock, registries, None, pairing)
    }

    /// State of one node of a cluster: the shared registries are in Redis, reached through `cluster`.
    pub fn clustered(
        clock: Arc<dyn Clock>,
        rendezvous: &RendezvousConfig,
        pairing: &PairingConfig,
        cluster: Cluster,
    ) -> Self {
        let mut registries = Registries::new(rendezvous, pairing, SmallRng::from_os_rng());
        // Reservations are kept in Redis, for every node to see.
        registries.owners = NameOwners::new(0);
        registries.clustered = true;
        Self::start(clock, registries, Some(cluster), pairing)
    }

    /// State held in memory only: nothing survives the process.
    pub fn in_memory(
        clock: Arc<dyn Clock>,
        rendezvous: &RendezvousConfig,
        pairing: &PairingConfig,
    ) -> Self {
        Self::with_rng(clock, rendezvous, pairing, SmallRng::from_os_rng())
    }

    /// State held in memory only, whose relay shuffling follows `rng`: tests seed it to be deterministic.
    pub fn with_rng(
        clock: Arc<dyn Clock>,
        rendezvous: &RendezvousConfig,
        pairing: &PairingConfig,
        rng: SmallRng,
    ) -> Self {
        Self::start(
            clock,
            Registries::new(rendezvous, pairing, rng),
            None,
            pairing,
        )
    }

    fn start(
        clock: Arc<dyn Clock>,
        registries: Registries,
        cluster: Option<Cluster>,
        pairing: &PairingConfig,
    ) -> Self {
        let (operations, queue) = mpsc::unbounded_channel();
        let counts = Arc::new(LiveCounts::default());
        let thread_clock = clock.clone();
        let thread_counts = counts.clone();
        std::thread::Builder::new()
            .name("zajel-state".into())
            .spawn(move || run_operations(registries, queue, thread_clock, thread_counts))
            .expect("the state's thread starts");
        Self(Arc::new(Inner {
            clock,
            operations,
            counts,
            cluster,
            pairing: pairing.clone(),
            unreleased: std::sync::Mutex::new(Vec::new()),
        }))
    }

    /// This node's part of the cluster, in cluster mode.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.0.cluster.as_ref()
    }

    /// The clock the registries run on; sessions read it too, so that rates and TTLs agree.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    /// Runs `operation` on the state's thread and returns its answer.
    async fn run<R: Send + 'static>(
        &self,
        operation: impl FnOnce(&mut Registries, Millis) -> R + Send + 'static,
    ) -> Result<R, StateFailed> {
        let (answer, answered) = oneshot::channel();
        self.tell(move |registries, now| {
            let _ = answer.send(operation(registries, now));
        });
        answered.await.map_err(|_| StateFailed::Bug)
    }

    /// Queues `operation` without waiting for it; operations run in the order they were queued.
    fn tell(&self, operation: impl FnOnce(&mut Registries, Millis) + Send + 'static) {
        // The thread runs as long as any handle exists, so the queue is open.
        let _ = self.0.operations.send(Box::new(operation));
    }

    /// Completes once every operation queued before it has run.
    pub async fn settled(&self) -> Result<(), StateFailed> {
        self.run(|_, _| ()).await
    }

    /// Binds `code` to the session as its pairing code, with its public key. A session that held another
    /// code gives it up, with everything that code had (see [`Self::release_session`]).
    pub async fn bind_code(
        &self,
        session: &Recipient,
        code: &Name,
        key: PairingKey,
    ) -> Result<Result<(), NameTaken>, StateFailed> {
        if let Some(cluster) = self.cluster()
            && !cluster
                .claim(code.as_str(), session.id, Role::PairingCode, Some(&key))
                .await?
        {
            return Ok(Err(NameTaken));
        }
        let (recipient, name) = (session.clone(), code.clone());
        let bound = self
            .run(move |registries, now| {
                let (session, code) = (recipient, name);
                registries
                    .owners
                    .bind(&code, &session, Role::PairingCode, Some(&key), now)?;
                registries
                    .owners
                    .set_code_key(code.as_str(), session.id, key);
                let names = registries.held.entry(session.id).or_default();
                let old = names.pairing_code.replace(code.clone());
                let relay_id = names.relay_id.clone();
                match old {
                    Some(old) if old != code => {
                        let still_relay_id = relay_id.as_ref() == Some(&old);
                        registries.release_code(session.id, &old, still_relay_id, None);
                        let released = std::mem::take(&mut registries.released_codes);
                        Ok(Some((old, released)))
                    }
                    _ => Ok(None),
                }
            })
            .await?;
        match (self.cluster(), bound) {
            (Some(cluster), Ok(Some((old, released)))) => {
                cluster
                    .release(old.as_str(), session.id, Role::PairingCode, 0)
                    .await?;
                self.end_in_cluster(released).await;
                Ok(Ok(()))
            }
            (Some(cluster), Err(NameTaken)) => {
                // Redis gave the name; this node's record did not: it is not the session's anywhere.
                cluster
                    .release(code.as_str(), session.id, Role::PairingCode, 0)
                    .await?;
                Ok(Err(NameTaken))
            }
            (_, bound) => Ok(bound.map(|_| ())),
        }
    }

    /// Forwards a message another client sent to the session holding `target` as its pairing code,
    /// wherever it is. Encoded and queued on the caller's task: its cost is the sender's.
    pub async fn forward(
        &self,
        target: &Name,
        message: &ServerMessage,
    ) -> Result<Result<(), Undelivered>, StateFailed> {
        let code = target.clone();
        let here = self
            .run(move |registries, _| registries.owners.pushes_of_code(code.as_str()).cloned())
            .await?;
        if let Some(pushes) = here {
            return Ok(pushes.forward(message).map_err(Undelivered::Refused));
        }
        let Some(cluster) = self.cluster() else {
            return Ok(Err(Undelivered::NoSuchPeer));
        };
        let delivered = cluster
            .deliver(target.as_str(), &Delivery::Forward, true, message)
            .await?;
        Ok(if delivered {
            Ok(())
        } else {
            Err(Undelivered::NoSuchPeer)
        })
    }

    /// Queues a message that another node delivered for the session holding `name` here.
    fn deliver_here(&self, name: &str, delivery: Delivery, message: serde_json::Value) {
        let name = name.to_owned();
        // Only a link needs this node's id: not copied on every push's way.
        let this_node = matches!(delivery, Delivery::Linked { .. })
            .then(|| self.cluster().map(|cluster| cluster.node().to_owned()))
            .flatten();
        self.tell(move |registries, _| {
            let message = ServerMessage::Relayed(message);
            match delivery {
                Delivery::Push => {
                    registries.owners.push(&name, message);
                }
                Delivery::Linked { phone, at } => {
                    if let Some(web_client) = registries.owners.code_holder(&name) {
                        let this_node = this_node.expect("deliveries come in cluster mode only");
                        let end = TunnelEnd::at(phone, at, &this_node);
                        registries.tunnels.open(web_client, end);
                        registries.owners.push(&name, message);
                    }
                }
                Delivery::Forward => {
                    if let Some(pushes) = registries.owners.pushes_of_code(&name) {
                        // A full queue drops what another client sent, as on one node.
                        let _ = pushes.forward(&message);
                    }
                }
            }
        });
    }

    /// Frees every name of an ended session, with its relay listing, its hourly tokens and its pending
    /// requests (whose other sides are told); its pairing code stays reserved for its key for a while.
    /// Its daily points and dead drops stay until they expire: they exist for peers that are offline.
    /// Queued, not awaited: a session ending cannot wait, and whatever anyone asks after this runs after
    /// it.
    pub fn release_session(&self, session: SessionId) {
        let (released, names) = oneshot::channel();
        self.tell(move |registries, now| {
            let hourly = registries.hourly_in_cluster.remove(&session);
            let Some(names) = registries.held.remove(&session) else {
                return;
            };
            // The relay id first: a code that is also the relay id is then free to be reserved.
            if let Some(relay_id) = &names.relay_id {
                registries.release_relay_id(session, relay_id, names.relay_listed);
            }
            if let Some(code) = &names.pairing_code {
                registries.release_code(session, code, false, Some(now));
            }
            let released_codes = std::mem::take(&mut registries.released_codes);
            let _ = released.send((names, hourly, released_codes));
        });
        // Without a runtime (the process is ending), a dead node's holdings are reaped by the others.
        if self.cluster().is_some()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let state = self.clone();
            runtime.spawn(async move {
                if let Ok((names, hourly, released_codes)) = names.await {
                    state
                        .release_in_cluster(Ended {
                            session,
                            names,
                            hourly,
                            released_codes,
                        })
                        .await;
                }
            });
        }
    }

    /// The sizes of the registries after the latest operation.
    pub fn counts(&self) -> StateCounts {
        let counts = &self.0.counts;
        StateCounts {
            names: counts.names.load(Ordering::Relaxed),
            pairing_codes: counts.pairing_codes.load(Ordering::Relaxed),
            relay_ids: counts.relay_ids.load(Ordering::Relaxed),
            relays: counts.relays.load(Ordering::Relaxed),
            rendezvous_entries: counts.rendezvous_entries.load(Ordering::Relaxed),
            daily_points: counts.daily_points.load(Ordering::Relaxed),
            dead_drops: counts.dead_drops.load(Ordering::Relaxed),
            hourly_tokens: counts.hourly_tokens.load(Ordering::Relaxed),
            pending_pairs: counts.pending_pairs.load(Ordering::Relaxed),
            pending_links: counts.pending_links.load(Ordering::Relaxed),
        }
    }
}

/// The state's thread: runs operations in turn until the last handle is gone. An operation that panics
/// (a bug) is abandoned, its caller told [`StateFailed`], and the thread goes on with the next.
fn run_operations(
    mut registries: Registries,
    mut queue: mpsc::UnboundedReceiver<Operation>,
    clock: Arc<dyn Clock>,
    counts: Arc<LiveCounts>,
) {
    while let Some(operation) = queue.blocking_recv() {
        let now = clock.now();
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| operation(&mut registries, now)));
        if ran.is_err() {
            tracing::error!("a shared-state operation panicked; its caller is told `internal`");
        }
        let rendezvous = registries.rendezvous.sizes();
        for (count, value) in [
            (&counts.names, registries.owners.len()),
            (&counts.pairing_codes, registries.owners.codes()),
            (&counts.relay_ids, registries.owners.relay_ids()),
            (&counts.relays, registries.relays.len()),
            (&counts.rendezvous_entries, registries.rendezvous.len()),
            (&counts.daily_points, rendezvous.daily_points),
            (&counts.dead_drops, rendezvous.dead_drops),
            (&counts.hourly_tokens, rendezvous.hourly_tokens),
            (&counts.pending_pairs, registries.pairing.pending_pairs()),
            (&counts.pending_links, registries.pairing.pending_links()),
        ] {
            count.store(value, Ordering::Relaxed);
        }
    }
}

impl Registries {
    /// Closes a live session as if it were too slow to read its pushes.
    fn close(&self, session: SessionId) {
        if let Some(names) = self.held.get(&session) {
            for name in [&names.pairing_code, &names.relay_id].into_iter().flatten() {
                self.owners.close_holder(name.as_str());
            }
        }
    }

    fn new(rendezvous: &RendezvousConfig, pairing: &PairingConfig, rng: SmallRng) -> Self {
        Self {
            owners: NameOwners::new(pairing.code_reservation()),
            relays: RelayRegistry::new(),
            rendezvous: RendezvousRegistry::new(rendezvous),
            pairing: PairingRegistry::new(pairing),
            rng,
            held: HashMap::new(),
            daily_store: None,
            hourly_in_cluster: HashMap::new(),
            clustered: false,
            released_codes: Vec::new(),
            tunnels: Tunnels::default(),
        }
    }

    /// The one way a pairing code is given up, whether replaced or its session ended: pending requests
    /// from and to it end (their other sides are told), and its hourly tokens go unless the same name is
    /// still the session's relay id. A code whose session ended at `ended` is reserved for its key.
    fn release_code(
        &mut self,
        session: SessionId,
        code: &Name,
        still_relay_id: bool,
        ended: Option<Millis>,
    ) {
        let key = self.owners.code_key(code.as_str()).cloned();
        self.owners
            .release(code.as_str(), session, Role::PairingCode);
        // A tunnel's ends are sessions with their codes: a code given up ends the tunnel.
        self.tunnels.close(session);
        if let (Some(now), Some(key)) = (ended, key) {
            self.owners.reserve(code, key, now);
        }
        if self.clustered {
            let targets = self.pairing.targets_of(code);
            let phones = self.pairing.phones_of(code);
            // Whom to tell is known in Redis, for requests made from every node.
            self.pairing.remove_code(code);
            let hourly = (!still_relay_id)
                .then(|| self.hourly_in_cluster.get_mut(&session))
                .flatten()
                .map(|held| {
                    let entries: Vec<_> = held
                        .entries
                        .keys()
                        .filter(|(peer_id, _)| peer_id == code)
                        .cloned()
                        .collect();
                    for entry in &entries {
                        held.entries.remove(entry);
                    }
                    (held.address, entries)
                });
            self.released_codes.push(ReleasedCode {
                session,
                code: code.clone(),
                targets,
                phones,
                hourly,
            });
            return;
        }
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
