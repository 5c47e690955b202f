//! The pairing and device-linking families' operations. Both are a request from one pairing code to
//! another that waits, with a timer, for the other side's answer; both need the two codes live with their
//! keys, and both tell each side what happened by pushes.

use super::{Answer, Recipient, Registries, SharedState, StateFailed};
use crate::clock::Millis;
use crate::peer::AddressGroup;
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
        let (phone, address) = (phone.clone(), session.address);
        self.run(move |registries, now| registries.request_link(now, &phone, link, address))
            .await
    }

    /// Answers the pending link request to `phone`. The web client is pushed `link_rejected`, or
    /// `link_matched` with the phone's key and `device_id`; an acceptance returns the request.
    pub async fn answer_link(
        &self,
        phone: &Name,
        accepted: bool,
        device_id: Option<String>,
    ) -> Result<Result<Answer<PendingLink>, LinkAnswerError>, StateFailed> {
        let phone = phone.clone();
        self.run(move |registries, _| registries.answer_link(&phone, accepted, device_id))
            .await
    }

    /// Sends what the pairing timers made due by now (`pair_expiring`, `pair_timeout`, `link_timeout`),
    /// and forgets the code reservations that ended. Returns how many events there were.
    pub async fn run_pairing_timers(&self) -> Result<usize, StateFailed> {
        self.run(|registries, now| {
            registries.owners.end_reservations(now);
            let events = registries.pairing.due_events(now);
            let count = events.len();
            registries.deliver_pairing_events(events);
            count
        })
        .await
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
