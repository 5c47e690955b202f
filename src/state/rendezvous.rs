//! The rendezvous family's operations: register points and tokens (pushing live matches to the peers
//! found), and reclaim expired entries.

use std::sync::Arc;

use std::collections::HashMap;

use futures_util::future::try_join_all;

use super::cluster::Cluster;
use super::cluster::rendezvous::{ClusterRegistration, EntryOwner};
use super::owners::Role;
use super::{HourlyEntry, HourlyHeld, Recipient, Registries, SharedState, StateFailed};
use crate::clock::Millis;
use crate::protocol::message::LiveMatch;
use crate::protocol::{Name, ServerMessage};
use crate::registry::rendezvous::{Owner, Refused};
use crate::registry::{Found, Registration, Swept};

/// Entries removed per lock acquisition while sweeping, so that requests wait at most one small batch.
const SWEEP_BATCH: usize = 4096;

/// Why a rendezvous registration was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RendezvousRefused {
    #[error(transparent)]
    NoRoom(#[from] Refused),
    #[error("the peer id is held by another session")]
    PeerIdTaken,
}

/// One peer's registration, as it travels to the state's thread.
#[derive(Debug, PartialEq)]
pub struct RendezvousRegistration {
    pub peer_id: Name,
    pub relay_id: Arc<str>,
    /// Daily points, each with the dead drop to leave there.
    pub daily_points: Vec<(Name, Option<Arc<str>>)>,
    pub hourly_tokens: Vec<Name>,
}

impl Registries {
    /// The public key a peer id's owner proved or at least registered: its pairing code's. A relay's key
    /// is not one: anyone may announce any text as its relay key.
    fn owner_key(&self, peer_id: &Name) -> Option<Arc<str>> {
        self.owners
            .code_key(peer_id.as_str())
            .map(|key| key.shared())
    }
}

impl SharedState {
    /// Registers a peer's daily points and hourly tokens, returns what other peers left there, and pushes
    /// `rendezvous_match` to each peer found at an hourly token. With `bind_peer_id`, the peer id first
    /// becomes the session's name (legacy clients register rendezvous without `register`), without
    /// listing it as a relay.
    pub async fn register_rendezvous(
        &self,
        session: &Recipient,
        bind_peer_id: bool,
        registration: RendezvousRegistration,
    ) -> Result<Result<Found, RendezvousRefused>, StateFailed> {
        if let Some(cluster) = self.cluster() {
            return self
                .register_rendezvous_in_cluster(cluster, session, bind_peer_id, registration)
                .await;
        }
        let session = session.clone();
        let (found, written) = self
            .run(move |registries, now| {
                let found =
                    registries.register_rendezvous(&session, bind_peer_id, registration, now);
                let changes = registries.rendezvous.take_daily_changes();
                let written = registries
                    .daily_store
                    .as_ref()
                    .map(|store| store.write(changes));
                (found, written)
            })
            .await?;
        if let Some(written) = written {
            written.wait().await.map_err(|_| StateFailed::Unavailable)?;
        }
        Ok(found)
    }

    async fn register_rendezvous_in_cluster(
        &self,
        cluster: &Cluster,
        session: &Recipient,
        bind_peer_id: bool,
        registration: RendezvousRegistration,
    ) -> Result<Result<Found, RendezvousRefused>, StateFailed> {
        let peer_id = &registration.peer_id;
        let taken = bind_peer_id
            && (!cluster
                .claim(peer_id.as_str(), session.id, Role::RelayId, None)
                .await?
                || self.bind_relay_id(session, peer_id, false).await?.is_err());
        if taken {
            return Ok(Err(RendezvousRefused::PeerIdTaken));
        }
        let name = peer_id.clone();
        let key = self
            .run(move |registries, _| registries.owner_key(&name))
            .await?;
        let owner_key = key.clone();
        let now = self.clock().now();
        let registered = cluster
            .register_rendezvous(
                now,
                &ClusterRegistration {
                    peer_id,
                    relay_id: &registration.relay_id,
                    daily_points: &registration.daily_points,
                    hourly_tokens: &registration.hourly_tokens,
                    owner: EntryOwner {
                        session: session.id,
                        key: owner_key.as_deref(),
                        address: session.address,
                    },
                },
            )
            .await?;
        let Ok((found, nodes)) = registered else {
            return Ok(Err(RendezvousRefused::NoRoom(Refused::AddressFull)));
        };
        let entry = HourlyEntry {
            relay_id: registration.relay_id.clone(),
            key,
            expires: now.saturating_add(cluster.hourly_ttl()),
        };
        self.hold_hourly(session, peer_id, &registration.hourly_tokens, entry);
        let pushes = found
            .live_matches
            .iter()
            .zip(&nodes)
            .map(|(earlier, node)| {
                let push = ServerMessage::RendezvousMatch {
                    peer: LiveMatch {
                        peer_id: peer_id.clone(),
                        relay_id: registration.relay_id.clone(),
                        meeting_point: earlier.meeting_point.clone(),
                    },
                };
                async move { cluster.push_to(node, earlier.peer_id.as_str(), &push).await }
            });
        try_join_all(pushes).await?;
        Ok(Ok(found))
    }

    /// Records the hourly tokens a session registered in the cluster, so that its end removes them.
    fn hold_hourly(
        &self,
        session: &Recipient,
        peer_id: &Name,
        tokens: &[Name],
        entry: HourlyEntry,
    ) {
        if tokens.is_empty() {
            return;
        }
        let (session, address) = (session.id, session.address);
        let entries: Vec<_> = tokens
            .iter()
            .map(|token| ((peer_id.clone(), token.clone()), entry.clone()))
            .collect();
        self.tell(move |registries, now| {
            let held = registries
                .hourly_in_cluster
                .entry(session)
                .or_insert_with(|| HourlyHeld {
                    address,
                    entries: HashMap::new(),
                });
            held.entries.retain(|_, entry| now < entry.expires);
            held.entries.extend(entries);
        });
    }

    /// Removes up to one batch of rendezvous entries whose time has passed, in one operation. Call again
    /// while it reports it is not done.
    pub async fn sweep_expired_batch(&self) -> Result<Swept, StateFailed> {
        self.run(|registries, now| {
            let swept = registries.rendezvous.sweep(now, SWEEP_BATCH);
            if let Some(store) = &registries.daily_store {
                store.expire(now);
            }
            swept
        })
        .await
    }
}

impl Registries {
    /// The registration itself, on the state's thread; see [`SharedState::register_rendezvous`].
    fn register_rendezvous(
        &mut self,
        session: &Recipient,
        bind_peer_id: bool,
        registration: RendezvousRegistration,
        now: Millis,
    ) -> Result<Found, RendezvousRefused> {
        if bind_peer_id {
            self.owners
                .check_free(&registration.peer_id, session.id, None, now)
                .map_err(|_| RendezvousRefused::PeerIdTaken)?;
        }
        let owner = Owner {
            session: session.id,
            address: session.address,
            key: self.owner_key(&registration.peer_id),
        };
        let found = self.rendezvous.register(
            now,
            &Registration {
                peer_id: &registration.peer_id,
                relay_id: &registration.relay_id,
                daily_points: &registration.daily_points,
                hourly_tokens: &registration.hourly_tokens,
                owner: &owner,
            },
        )?;
        if bind_peer_id {
            self.owners
                .bind(&registration.peer_id, session, Role::RelayId, None, now)
                .map_err(|_| RendezvousRefused::PeerIdTaken)?;
            self.held.entry(session.id).or_default().relay_id = Some(registration.peer_id.clone());
        }
        for earlier in &found.live_matches {
            self.owners.push(
                earlier.peer_id.as_str(),
                ServerMessage::RendezvousMatch {
                    peer: LiveMatch {
                        peer_id: registration.peer_id.clone(),
                        relay_id: registration.relay_id.clone(),
                        meeting_point: earlier.meeting_point.clone(),
                    },
                },
            );
        }
        Ok(found)
    }
}
