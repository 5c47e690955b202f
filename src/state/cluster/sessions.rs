//! This node's sessions as the cluster sees them: what an ended session held is released in Redis (later,
//! if Redis cannot be reached now), and what live sessions hold is announced again when Redis lost it (it
//! restarted without its data, or gave this node up for dead while it could not reach it).

use tracing::{info, warn};

use super::super::owners::Role;
use super::super::{HourlyHeld, ReleasedCode, SessionNames, SharedState};
use super::{Cluster, StoreError};
use crate::peer::SessionId;

/// A session that ended, with what it held in Redis.
#[derive(Debug)]
pub(in crate::state) struct Ended {
    pub(in crate::state) session: SessionId,
    pub(in crate::state) names: SessionNames,
    pub(in crate::state) hourly: Option<HourlyHeld>,
    pub(in crate::state) released_codes: Vec<ReleasedCode>,
}

impl SharedState {
    /// Gives up in Redis what an ended session held; kept to try again at the next heartbeat when Redis
    /// cannot be reached.
    pub(in crate::state) async fn release_in_cluster(&self, ended: Ended) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        if let Err(err) = self.release_ended(cluster, &ended).await {
            tracing::debug!(error = %err, "an ended session's holdings are released when redis is back");
            self.0.unreleased.lock().expect("not poisoned").push(ended);
        }
    }

    async fn release_ended(&self, cluster: &Cluster, ended: &Ended) -> Result<(), StoreError> {
        let Ended {
            session,
            names,
            hourly,
            released_codes,
        } = ended;
        let session = *session;
        if let Some(hourly) = hourly {
            let entries: Vec<_> = hourly.entries.keys().cloned().collect();
            cluster
                .forget_hourly(session, hourly.address, &entries)
                .await?;
        }
        if let Some(relay_id) = &names.relay_id {
            if names.relay_listed {
                cluster.unregister_relay(session, relay_id.as_str()).await?;
            }
            cluster
                .release(relay_id.as_str(), session, Role::RelayId, 0)
                .await?;
        }
        if let Some(code) = &names.pairing_code {
            let reserve_for = self.0.pairing.code_reservation();
            cluster
                .release(code.as_str(), session, Role::PairingCode, reserve_for)
                .await?;
        }
        for released in released_codes {
            self.end_code_in_cluster(cluster, released).await?;
        }
        Ok(())
    }

    /// Releases what sessions that ended while Redis could not be reached held.
    pub(super) async fn release_unreleased(&self) {
        let ended = std::mem::take(&mut *self.0.unreleased.lock().expect("not poisoned"));
        for ended in ended {
            self.release_in_cluster(ended).await;
        }
    }

    /// Claims again in Redis every name this node's sessions hold, lists their relays and stores their
    /// hourly entries again. A name someone else took meanwhile stays theirs, and the session that held
    /// it here is closed, so that its client comes back with a new one.
    pub(super) async fn announce_again(&self, cluster: &Cluster) -> Result<(), StoreError> {
        let Ok(held) = self
            .run(|registries, now| {
                registries
                    .held
                    .iter()
                    .map(|(&session, names)| {
                        let key = names
                            .pairing_code
                            .as_ref()
                            .and_then(|code| registries.owners.code_key(code.as_str()).cloned());
                        let relay = names
                            .relay_id
                            .as_ref()
                            .filter(|_| names.relay_listed)
                            .and_then(|relay_id| registries.relays.listing(relay_id.as_str()));
                        let hourly = registries.hourly_in_cluster.get(&session).map(|held| {
                            let live: Vec<_> = held
                                .entries
                                .iter()
                                .filter(|(_, entry)| now < entry.expires)
                                .map(|(place, entry)| (place.clone(), entry.clone()))
                                .collect();
                            (held.address, live)
                        });
                        (session, names.clone(), key, relay, hourly)
                    })
                    .collect::<Vec<_>>()
            })
            .await
        else {
            return Ok(());
        };
        let now = self.clock().now();
        let mut lost = Vec::new();
        for (session, names, key, relay, hourly) in held {
            let claims = [
                (names.pairing_code.as_ref(), Role::PairingCode, key.as_ref()),
                (names.relay_id.as_ref(), Role::RelayId, None),
            ];
            for (name, role, key) in claims {
                if let Some(name) = name
                    && !cluster.claim(name.as_str(), session, role, key).await?
                {
                    lost.push(session);
                }
            }
            if let (Some(relay_id), Some((max_connections, load, public_key))) =
                (&names.relay_id, relay)
            {
                cluster
                    .register_relay(session, relay_id, max_connections, public_key.as_ref(), 0)
                    .await?;
                cluster.update_load(session, relay_id, load).await?;
            }
            let Some((address, live)) = hourly else {
                continue;
            };
            for ((peer_id, token), entry) in live {
                cluster
                    .restore_hourly(
                        now,
                        session,
                        address,
                        &peer_id,
                        &token,
                        &entry.relay_id,
                        entry.key.as_deref(),
                        entry.expires,
                    )
                    .await?;
            }
        }
        if !lost.is_empty() {
            warn!(
                sessions = lost.len(),
                "names taken by other nodes meanwhile; closing their sessions here"
            );
            self.tell(move |registries, _| {
                for session in lost {
                    registries.close(session);
                }
            });
        }
        info!("announced again what this node's sessions hold");
        Ok(())
    }
}
