//! The device-linking family: a web client asks to attach to a phone's identity (`link_request`, by
//! the phone's pairing code) and the phone answers (`link_response`).

use super::{Failure, Session};
use crate::protocol::ServerMessage;
use crate::protocol::names::{PairingCode, PairingKey};
use crate::registry::pairing::PendingLink;

/// One text for every refused link request, so that pairing codes cannot be enumerated.
pub const LINK_REQUEST_REFUSED: &str = "Link request could not be processed";
pub const NO_PENDING_LINK: &str = "No pending link request";

impl Session {
    /// From the web client: asks the phone holding `link_code` to link it.
    pub(super) fn link_request(
        &self,
        link_code: Option<PairingCode>,
        public_key: PairingKey,
        device_name: Option<String>,
    ) -> Result<ServerMessage, Failure> {
        let identity = self.identity();
        let web_client = identity.pairing_code()?;
        let link_code = link_code.ok_or(Failure::LinkError(LINK_REQUEST_REFUSED))?;
        let now = self.hub.now();
        let mut state = self.hub.state();
        let state = &mut *state;
        let phone = link_code.name();
        if *phone == web_client || state.directory.code_key(phone.as_str()).is_none() {
            return Err(Failure::LinkError(LINK_REQUEST_REFUSED));
        }
        state
            .pairing
            .request_link(
                now,
                phone,
                PendingLink {
                    web_client,
                    web_client_key: public_key.clone(),
                    device_name: device_name.clone(),
                },
            )
            .map_err(|_| Failure::LinkError(LINK_REQUEST_REFUSED))?;
        state.directory.push_to_code(
            phone.as_str(),
            ServerMessage::LinkRequest {
                link_code: phone.clone(),
                public_key,
                device_name,
                expires_in: state.pairing.times().expiry,
            },
        );
        Ok(ServerMessage::Ack {
            request_type: "link_request",
        })
    }

    /// From the phone, which must own `link_code`: accepts or refuses the pending link request.
    pub(super) fn link_response(
        &self,
        link_code: PairingCode,
        accepted: bool,
        device_id: Option<String>,
    ) -> Result<ServerMessage, Failure> {
        let identity = self.identity();
        let phone = link_code.name();
        if identity.pairing_code.as_ref() != Some(phone) {
            return Err(Failure::Request(crate::protocol::RequestError::Invalid(
                "linkCode: must be this session's own pairing code".into(),
            )));
        }
        let mut state = self.hub.state();
        let link = state
            .pairing
            .take_link(phone)
            .ok_or(Failure::LinkError(NO_PENDING_LINK))?;
        if !accepted {
            state.directory.push_to_code(
                link.web_client.as_str(),
                ServerMessage::LinkRejected {
                    link_code: phone.clone(),
                },
            );
            return Ok(ServerMessage::Ack {
                request_type: "link_response",
            });
        }
        let phone_key = state
            .directory
            .code_key(phone.as_str())
            .cloned()
            .ok_or(Failure::NotRegistered)?;
        state.directory.push_to_code(
            link.web_client.as_str(),
            ServerMessage::LinkMatchedWebClient {
                link_code: phone.clone(),
                peer_public_key: phone_key,
                is_initiator: true,
                device_id,
            },
        );
        Ok(ServerMessage::LinkMatchedPhone {
            link_code: phone.clone(),
            peer_public_key: link.web_client_key,
            is_initiator: false,
            web_client_code: link.web_client,
            device_name: link.device_name,
        })
    }
}
