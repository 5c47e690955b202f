//! The device-linking family: a web client asks to attach to a phone's identity (`link_request`, by
//! the phone's pairing code) and the phone answers (`link_response`).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{RequestError, check_label, fields_of, invalid};
use super::{Failure, Session, own_pairing_code};
use crate::protocol::ServerMessage;
use crate::protocol::names::{PairingCode, PairingKey};
use crate::registry::pairing::PendingLink;
use crate::state::{Answer, LinkAnswerError};

/// One text for every refused link request, so that pairing codes cannot be enumerated.
pub const LINK_REQUEST_REFUSED: &str = "Link request could not be processed";
pub const NO_PENDING_LINK: &str = "No pending link request";

/// A `linkCode` that is not a pairing code is `None`, refused like an unknown one.
#[derive(Debug, PartialEq)]
pub struct LinkRequest {
    link_code: Option<PairingCode>,
    public_key: PairingKey,
    device_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkRequestFields {
    #[serde(alias = "link_code")]
    link_code: String,
    #[serde(alias = "public_key")]
    public_key: PairingKey,
    #[serde(alias = "device_name")]
    device_name: Option<String>,
}

impl LinkRequest {
    pub(super) fn parse(fields: Map<String, Value>) -> Result<Self, RequestError> {
        let fields: LinkRequestFields = fields_of(fields)?;
        check_label("deviceName", fields.device_name.as_deref())?;
        Ok(Self {
            link_code: PairingCode::try_from(fields.link_code).ok(),
            public_key: fields.public_key,
            device_name: fields.device_name,
        })
    }
}

#[derive(Debug, PartialEq)]
pub struct LinkResponse {
    link_code: PairingCode,
    accepted: bool,
    device_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkResponseFields {
    #[serde(alias = "link_code")]
    link_code: PairingCode,
    accepted: bool,
    #[serde(alias = "device_id")]
    device_id: Option<String>,
}

impl LinkResponse {
    pub(super) fn parse(fields: Map<String, Value>) -> Result<Self, RequestError> {
        let fields: LinkResponseFields = fields_of(fields)?;
        check_label("deviceId", fields.device_id.as_deref())?;
        Ok(Self {
            link_code: fields.link_code,
            accepted: fields.accepted,
            device_id: fields.device_id,
        })
    }
}

impl Session {
    /// From the web client: asks the phone holding `linkCode` to link it.
    pub(super) async fn link_request(
        &self,
        request: LinkRequest,
    ) -> Result<ServerMessage, Failure> {
        let names = self.names().await;
        let web_client = own_pairing_code(&names)?;
        let phone = request
            .link_code
            .ok_or(Failure::LinkError(LINK_REQUEST_REFUSED))?;
        let link = PendingLink {
            web_client,
            web_client_key: request.public_key,
            device_name: request.device_name,
        };
        self.state()
            .request_link(&self.recipient, phone.name(), link)
            .await?
            .map_err(|_| Failure::LinkError(LINK_REQUEST_REFUSED))?;
        Ok(ServerMessage::Ack {
            request_type: "link_request",
        })
    }

    /// From the phone, which must own `linkCode`: accepts or refuses the pending link request.
    pub(super) async fn link_response(
        &self,
        response: LinkResponse,
    ) -> Result<ServerMessage, Failure> {
        let names = self.names().await;
        let phone = response.link_code.name();
        if names.pairing_code.as_ref() != Some(phone) {
            return Err(Failure::Request(invalid(
                "linkCode: must be this session's own pairing code",
            )));
        }
        let answer = self
            .state()
            .answer_link(
                self.recipient.id,
                phone,
                response.accepted,
                response.device_id,
            )
            .await?
            .map_err(|err| match err {
                LinkAnswerError::NoPendingLink => Failure::LinkError(NO_PENDING_LINK),
                LinkAnswerError::PhoneNotRegistered => Failure::NotRegistered,
            })?;
        match answer {
            Answer::Rejected => Ok(ServerMessage::Ack {
                request_type: "link_response",
            }),
            Answer::Accepted(link) => Ok(ServerMessage::LinkMatchedPhone {
                link_code: phone.clone(),
                peer_public_key: link.web_client_key,
                is_initiator: false,
                web_client_code: link.web_client,
                device_name: link.device_name,
            }),
        }
    }
}
