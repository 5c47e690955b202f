//! The pairing and device-linking families' operations. Both are a request from one pairing code to
//! another that waits, with a timer, for the other side's answer; both need the two codes live with their
//! keys, and both tell each side what happened by pushes.

use super::cluster::pairing::PairRequest;
use super::cluster::{Cluster, StoreError};
use super::tunnels::TunnelEnd;
use super::{Answer, Recipient, Registries, ReleasedCode, SharedState, StateFailed};
use crate::clock::Millis;
use crate::peer::{AddressGroup, SessionId};
use crate::protocol::names::PairingKey;
use crate::protocol::{Name, ServerMessage};
use crate::registry::pairing::{PairingEvent, PendingLink};

/// A pairing or link request that cannot be made: the target is not a live pairing code, is the
/// requester itself, or has no room. Clients are told one generic text, so that pairing codes cannot be
/// enumerated.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the request could not be made")]
pub struct PairingRefused;

/// The answer is to no pending request (never made, answered already, or timed out).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("no pending request")]
pub struct NoPendingRequest;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkAnswerError {
    #[error("no pending link request")]
    NoPendingLink,
    #[error("the phone's pairing code has no key")]
    PhoneNotRegistered,
}

impl SharedState {
    /// Records a pairing request from `requester` to `target` and pushes `pair_incoming` to the target,
    /// with the requester's current key.
    pub async fn request_pairing(
        &self,
        session: &Recipient,
        requester: &Name,
        target: &Name,
        proposed_name: Option<String>,
    ) -> Result<Result<(), PairingRefused>, StateFailed> {
        if let Some(cluster) = self.cluster() {
            return self
                .request_pairing_in_cluster(cluster, session, requester, target, proposed_name)
                .await;
        }
        let (requester, target, address) = (requester.clone(), target.clone(), session.address);
        self.run(move |registries, now| {
            registries.request_pairing(now, &requester, &target, proposed_name, address)
        })
        .await
    }

    /// Answers the pending request from `requester` to `responder`. The requester is pushed
    /// `pair_rejected`, or `pair_matched` with the responder's key; an acceptance returns the requester's
    /// key. Both keys are the ones registered now: a side that re-registered its code with a new key is
    /// matched with that one.
    pub async fn answer_pairing(
        &self,
        responder: &Name,
        requester: &Name,
        accepted: bool,
    ) -> Result<Result<Answer<PairingKey>, NoPendingRequest>, StateFailed> {
        if let Some(cluster) = self.cluster() {
            return self
                .answer_pairing_in_cluster(cluster, responder, requester, accepted)
                .await;
        }
        let (responder, requester) = (responder.clone(), requester.clone());
        self.run(move |registries, _| registries.answer_pairing(&responder, &requester, accepted))
            .await
    }

    /// Records a web client's request to attach to `phone` and pushes `link_request` to the phone.
    pub async fn request_link(
        &self,
        session: &Recipient,
        phone: &Name,
        link: PendingLink,
    ) -> Result<Result<(), PairingRefused>, StateFailed> {
        if let Some(cluster) = self.cluster() {
            return self
                .request_link_in_cluster(cluster, session, phone, link)
                .await;
        }
        let (phone, address) = (phone.clone(), session.address);
        self.run(move |registries, now| registries.request_link(now, &phone, link, address))
            .await
    }

    /// Answers the pending link request to `phone`, from `phone_session`. The web client is pushed
    /// `link_rejected`, or `link_matched` with the phone's key and `device_id`, and the two sessions are
    /// then the ends of a tunnel; an acceptance returns the request.
    pub async fn answer_link(
        &self,
        phone_session: SessionId,
        phone: &Name,
        accepted: bool,
        device_id: Option<String>,
    ) -> Result<Result<Answer<PendingLink>, LinkAnswerError>, StateFailed> {
        if let Some(cluster) = self.cluster() {
            return self
                .answer_link_in_cluster(cluster, phone_session, phone, accepted, device_id)
                .await;
        }
        let phone = phone.clone();
        self.run(move |registries, _| {
            registries.answer_link(phone_session, &phone, accepted, device_id)
        })
        .await
    }

    /// Sends what the pairing timers made due by now (`pair_expiring`, `pair_timeout`, `link_timeout`),
    /// and forgets the code reservations that ended.
    pub async fn run_pairing_timers(&self) -> Result<TimersRun, StateFailed> {
        if let Some(cluster) = self.cluster() {
            let events = self
                .run(|registries, now| registries.pairing.due_events(now))
                .await?;
            let run = TimersRun::of(&events);
            for event in events {
                self.settle_in_cluster(cluster, event).await?;
            }
            return Ok(run);
        }
        self.run(|registries, now| {
            registries.owners.end_reservations(now);
            let events = registries.pairing.due_events(now);
            let run = TimersRun::of(&events);
            registries.deliver_pairing_events(events);
            run
        })
        .await
    }
}

/// What a run of the pairing timers found due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimersRun {
    /// Events of every kind: warnings and timeouts.
    pub events: usize,
    pub pairs_timed_out: usize,
    pub links_timed_out: usize,
}

impl TimersRun {
    fn of(events: &[PairingEvent]) -> Self {
        let mut run = Self {
            events: events.len(),
            ..Self::default()
        };
        for event in events {
            match event {
                PairingEvent::TimedOut { .. } => run.pairs_timed_out += 1,
                PairingEvent::LinkTimedOut { .. } => run.links_timed_out += 1,
                PairingEvent::Expiring { .. } => {}
            }
        }
        run
    }
}

/// Cluster mode: the pending requests are in Redis, beside their targets; this node keeps the timers
/// of the requests its sessions made.
impl SharedState {
    async fn request_pairing_in_cluster(
        &self,
        cluster: &Cluster,
        session: &Recipient,
        requester: &Name,
        target: &Name,
        proposed_name: Option<String>,
    ) -> Result<Result<(), PairingRefused>, StateFailed> {
        let (from, to, address) = (requester.clone(), target.clone(), session.address);
        let local: Result<_, PairingRefused> = self
            .run(move |registries, now| {
                let key = registries.owners.code_key(from.as_str()).cloned();
                let key = key.ok_or(PairingRefused)?;
                registries
                    .pairing
                    .request(now, &from, &to, address)
                    .map_err(|_| PairingRefused)?;
                Ok((key, now, registries.pairing.expiry()))
            })
            .await?;
        let Ok((key, now, expiry)) = local else {
            return Ok(Err(PairingRefused));
        };
        let config = &self.0.pairing;
        let recorded = cluster
            .request_pairing(PairRequest {
                requester,
                session: session.id,
                target,
                address,
                now,
                expires: now.saturating_add(expiry),
                max_pending: config.max_pending_pairs,
                max_pending_from_address: config.max_pending_pairs_per_ip_per_code,
                incoming: ServerMessage::PairIncoming {
                    from_code: requester.clone(),
                    from_public_key: key,
                    expires_in: expiry,
                    proposed_name,
                },
            })
            .await;
        if recorded.as_ref().is_ok_and(|recorded| *recorded) {
            return Ok(Ok(()));
        }
        let (from, to) = (requester.clone(), target.clone());
        self.tell(move |registries, _| {
            registries.pairing.take(&from, &to);
        });
        recorded?;
        Ok(Err(PairingRefused))
    }

    async fn answer_pairing_in_cluster(
        &self,
        cluster: &Cluster,
        responder: &Name,
        requester: &Name,
        accepted: bool,
    ) -> Result<Result<Answer<PairingKey>, NoPendingRequest>, StateFailed> {
        let Some(made_by) = cluster.take_pairing(requester, responder, false).await? else {
            return Ok(Err(NoPendingRequest));
        };
        // The answer goes to the session that asked: not to whoever holds its code since.
        if !accepted {
            let rejected = ServerMessage::PairRejected {
                peer_code: responder.clone(),
            };
            cluster
                .push_to_session(requester.as_str(), &made_by, &rejected)
                .await?;
            return Ok(Ok(Answer::Rejected));
        }
        let code = responder.clone();
        let responder_key = self
            .run(move |registries, _| registries.owners.code_key(code.as_str()).cloned())
            .await?;
        let requester_key = cluster
            .code_key(requester.as_str(), &made_by)
            .await?
            .and_then(|key| PairingKey::try_from(key).ok());
        let (Some(responder_key), Some(requester_key)) = (responder_key, requester_key) else {
            return Ok(Err(NoPendingRequest));
        };
        let matched = ServerMessage::PairMatched {
            peer_code: responder.clone(),
            peer_public_key: responder_key,
            is_initiator: true,
        };
        cluster
            .push_to_session(requester.as_str(), &made_by, &matched)
            .await?;
        Ok(Ok(Answer::Accepted(requester_key)))
    }

    async fn request_link_in_cluster(
        &self,
        cluster: &Cluster,
        session: &Recipient,
        phone: &Name,
        link: PendingLink,
    ) -> Result<Result<(), PairingRefused>, StateFailed> {
        if *phone == link.web_client {
            return Ok(Err(PairingRefused));
        }
        let (to, waiting, address) = (phone.clone(), link.clone(), session.address);
        let local: Result<_, PairingRefused> = self
            .run(move |registries, now| {
                registries
                    .pairing
                    .request_link(now, &to, waiting, address)
                    .map_err(|_| PairingRefused)?;
                Ok((now, registries.pairing.expiry()))
            })
            .await?;
        let Ok((now, expiry)) = local else {
            return Ok(Err(PairingRefused));
        };
        let request = ServerMessage::LinkRequest {
            link_code: phone.clone(),
            public_key: link.web_client_key.clone(),
            device_name: link.device_name.clone(),
            web_client_code: link.web_client.clone(),
            expires_in: expiry,
        };
        let recorded = cluster
            .request_link(
                phone,
                &link,
                session.id,
                now,
                now.saturating_add(expiry),
                &request,
            )
            .await;
        if recorded.as_ref().is_ok_and(|recorded| *recorded) {
            return Ok(Ok(()));
        }
        let to = phone.clone();
        self.tell(move |registries, _| {
            registries.pairing.take_link(&to);
        });
        recorded?;
        Ok(Err(PairingRefused))
    }

    async fn answer_link_in_cluster(
        &self,
        cluster: &Cluster,
        phone_session: SessionId,
        phone: &Name,
        accepted: bool,
        device_id: Option<String>,
    ) -> Result<Result<Answer<PendingLink>, LinkAnswerError>, StateFailed> {
        let Some((link, made_by)) = cluster.take_link(phone, None).await? else {
            return Ok(Err(LinkAnswerError::NoPendingLink));
        };
        let web_client = link.web_client.as_str();
        if !accepted {
            let rejected = ServerMessage::LinkRejected {
                link_code: phone.clone(),
            };
            cluster
                .push_to_session(web_client, &made_by, &rejected)
                .await?;
            return Ok(Ok(Answer::Rejected));
        }
        let code = phone.clone();
        let Some(phone_key) = self
            .run(move |registries, _| registries.owners.code_key(code.as_str()).cloned())
            .await?
        else {
            return Ok(Err(LinkAnswerError::PhoneNotRegistered));
        };
        let matched = ServerMessage::LinkMatchedWebClient {
            link_code: phone.clone(),
            peer_public_key: phone_key,
            is_initiator: true,
            device_id,
        };
        cluster
            .push_link_matched(web_client, &made_by, phone, phone_session, &matched)
            .await?;
        let web_client_end = TunnelEnd::at(link.web_client.clone(), made_by, cluster.node());
        self.tell(move |registries, _| registries.tunnels.open(phone_session, web_client_end));
        Ok(Ok(Answer::Accepted(link)))
    }

    /// Tells both sides what a timer of this node's request made due, if the request still waits in
    /// Redis (an answer on another node took it already otherwise).
    async fn settle_in_cluster(
        &self,
        cluster: &Cluster,
        event: PairingEvent,
    ) -> Result<(), StateFailed> {
        match event {
            PairingEvent::Expiring { requester, target } => {
                if cluster.pairing_waits(&requester, &target).await? {
                    let remaining_seconds = self.0.pairing.warning() / 1000;
                    for (to, peer) in [(&requester, &target), (&target, &requester)] {
                        let expiring = ServerMessage::PairExpiring {
                            peer_code: peer.clone(),
                            remaining_seconds,
                        };
                        cluster.push_to_code(to.as_str(), &expiring).await?;
                    }
                }
            }
            PairingEvent::TimedOut { requester, target } => {
                if cluster
                    .take_pairing(&requester, &target, true)
                    .await?
                    .is_some()
                {
                    let timeout = ServerMessage::PairTimeout { peer_code: target };
                    cluster.push_to_code(requester.as_str(), &timeout).await?;
                }
            }
            PairingEvent::LinkTimedOut { phone, web_client } => {
                if cluster
                    .take_link(&phone, Some(&web_client))
                    .await?
                    .is_some()
                {
                    let timeout = ServerMessage::LinkTimeout {
                        link_code: phone.clone(),
                    };
                    for to in [&phone, &web_client] {
                        cluster.push_to_code(to.as_str(), &timeout).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends in Redis what released pairing codes had pending, telling the other sides as one node does:
    /// requesters waiting for a code time out at once, and link requests either way.
    pub(super) async fn end_in_cluster(&self, released: Vec<ReleasedCode>) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        for code in released {
            if let Err(err) = self.end_code_in_cluster(cluster, &code).await {
                tracing::debug!(error = ?err, "a released code's requests stay in redis until they expire");
            }
        }
    }

    pub(super) async fn end_code_in_cluster(
        &self,
        cluster: &Cluster,
        released: &ReleasedCode,
    ) -> Result<(), StoreError> {
        let ReleasedCode {
            session,
            code,
            targets,
            phones,
            hourly,
        } = released;
        for target in targets {
            cluster.take_pairing(code, target, true).await?;
        }
        for phone in phones {
            if cluster.take_link(phone, Some(code)).await?.is_some() {
                let timeout = ServerMessage::LinkTimeout {
                    link_code: phone.clone(),
                };
                cluster.push_to_code(phone.as_str(), &timeout).await?;
            }
        }
        for (requester, made_by) in cluster.end_pairings_to(code).await? {
            let timeout = ServerMessage::PairTimeout {
                peer_code: code.clone(),
            };
            cluster
                .push_to_session(&requester, &made_by, &timeout)
                .await?;
        }
        if let Some((link, made_by)) = cluster.take_link(code, None).await? {
            let timeout = ServerMessage::LinkTimeout {
                link_code: code.clone(),
            };
            cluster
                .push_to_session(link.web_client.as_str(), &made_by, &timeout)
                .await?;
        }
        if let Some((address, entries)) = hourly {
            cluster.forget_hourly(*session, *address, entries).await?;
        }
        Ok(())
    }
}

impl Registries {
    fn request_pairing(
        &mut self,
        now: Millis,
        requester: &Name,
        target: &Name,
        proposed_name: Option<String>,
        address: AddressGroup,
    ) -> Result<(), PairingRefused> {
        let registries = self;
        let (true, Some(requester_key)) = (
            registries.owners.code_key(target.as_str()).is_some(),
            registries.owners.code_key(requester.as_str()).cloned(),
        ) else {
            return Err(PairingRefused);
        };
        registries
            .pairing
            .request(now, requester, target, address)
            .map_err(|_| PairingRefused)?;
        let expires_in = registries.pairing.expiry();
        registries.owners.push_to_code(
            target.as_str(),
            ServerMessage::PairIncoming {
                from_code: requester.clone(),
                from_public_key: requester_key,
                expires_in,
                proposed_name,
            },
        );
        Ok(())
    }

    fn answer_pairing(
        &mut self,
        responder: &Name,
        requester: &Name,
        accepted: bool,
    ) -> Result<Answer<PairingKey>, NoPendingRequest> {
        let registries = self;
        if !registries.pairing.take(requester, responder) {
            return Err(NoPendingRequest);
        }
        if !accepted {
            registries.owners.push_to_code(
                requester.as_str(),
                ServerMessage::PairRejected {
                    peer_code: responder.clone(),
                },
            );
            return Ok(Answer::Rejected);
        }
        let (Some(responder_key), Some(requester_key)) = (
            registries.owners.code_key(responder.as_str()).cloned(),
            registries.owners.code_key(requester.as_str()).cloned(),
        ) else {
            return Err(NoPendingRequest);
        };
        registries.owners.push_to_code(
            requester.as_str(),
            ServerMessage::PairMatched {
                peer_code: responder.clone(),
                peer_public_key: responder_key,
                is_initiator: true,
            },
        );
        Ok(Answer::Accepted(requester_key))
    }

    fn request_link(
        &mut self,
        now: Millis,
        phone: &Name,
        link: PendingLink,
        address: AddressGroup,
    ) -> Result<(), PairingRefused> {
        let registries = self;
        if *phone == link.web_client || registries.owners.code_key(phone.as_str()).is_none() {
            return Err(PairingRefused);
        }
        let push = ServerMessage::LinkRequest {
            link_code: phone.clone(),
            public_key: link.web_client_key.clone(),
            device_name: link.device_name.clone(),
            web_client_code: link.web_client.clone(),
            expires_in: registries.pairing.expiry(),
        };
        registries
            .pairing
            .request_link(now, phone, link, address)
            .map_err(|_| PairingRefused)?;
        registries.owners.push_to_code(phone.as_str(), push);
        Ok(())
    }

    fn answer_link(
        &mut self,
        phone_session: SessionId,
        phone: &Name,
        accepted: bool,
        device_id: Option<String>,
    ) -> Result<Answer<PendingLink>, LinkAnswerError> {
        let registries = self;
        let link = registries
            .pairing
            .take_link(phone)
            .ok_or(LinkAnswerError::NoPendingLink)?;
        if !accepted {
            registries.owners.push_to_code(
                link.web_client.as_str(),
                ServerMessage::LinkRejected {
                    link_code: phone.clone(),
                },
            );
            return Ok(Answer::Rejected);
        }
        let phone_key = registries
            .owners
            .code_key(phone.as_str())
            .cloned()
            .ok_or(LinkAnswerError::PhoneNotRegistered)?;
        registries.owners.push_to_code(
            link.web_client.as_str(),
            ServerMessage::LinkMatchedWebClient {
                link_code: phone.clone(),
                peer_public_key: phone_key,
                is_initiator: true,
                device_id,
            },
        );
        if let Some(web_client_session) = registries.owners.code_holder(link.web_client.as_str()) {
            let end = |code: &Name, session| TunnelEnd {
                code: code.clone(),
                session,
                node: None,
            };
            let tunnels = &mut registries.tunnels;
            tunnels.open(phone_session, end(&link.web_client, web_client_session));
            tunnels.open(web_client_session, end(phone, phone_session));
        }
        Ok(Answer::Accepted(link))
    }

    /// Tells the sessions concerned what happened to their pending requests. Sessions that are gone
    /// simply are not told.
    pub(super) fn deliver_pairing_events(&mut self, events: Vec<PairingEvent>) {
        let remaining_seconds = self.pairing.warning() / 1000;
        for event in events {
            match event {
                PairingEvent::Expiring { requester, target } => {
                    for (to, peer) in [(&requester, &target), (&target, &requester)] {
                        self.owners.push_to_code(
                            to.as_str(),
                            ServerMessage::PairExpiring {
                                peer_code: peer.clone(),
                                remaining_seconds,
                            },
                        );
                    }
                }
                PairingEvent::TimedOut { requester, target } => {
                    self.owners.push_to_code(
                        requester.as_str(),
                        ServerMessage::PairTimeout { peer_code: target },
                    );
                }
                PairingEvent::LinkTimedOut { phone, web_client } => {
                    for to in [&phone, &web_client] {
                        self.owners.push_to_code(
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
