//! The pairing family: `register {pairingCode, publicKey}`, then `pair_request` and `pair_response`
//! between pairing codes. The pushes their timers make (`pair_expiring`, `pair_timeout`) are delivered by
//! the shared state (`state/pairing.rs`).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{RequestError, check_label, fields_of, invalid};
use super::{Failure, Session, own_pairing_code};
use crate::protocol::ServerMessage;
use crate::protocol::names::{PairingCode, PairingKey};
use crate::redact::redacted;
use crate::state::Answer;

/// One text for every refused request, so that pairing codes cannot be enumerated.
pub const PAIR_REQUEST_REFUSED: &str = "Pair request could not be processed";
pub const NO_PENDING_REQUEST: &str = "No pending request from this peer";

#[derive(Debug, PartialEq)]
pub struct RegisterCode {
    pairing_code: PairingCode,
    public_key: PairingKey,
}

impl RegisterCode {
    /// From the fields of a `register` with a pairing code.
    pub(super) fn new(
        pairing_code: PairingCode,
        public_key: Option<String>,
    ) -> Result<Self, RequestError> {
        let public_key = public_key.ok_or_else(|| invalid("Missing required field: publicKey"))?;
        // The key's own texts (PROTOCOL 2.9) say what is wrong with it.
        let public_key = PairingKey::try_from(public_key).map_err(invalid)?;
        Ok(Self {
            pairing_code,
            public_key,
        })
    }
}

/// A `targetCode` that is not a pairing code is `None`: like an unknown code, it is refused with the
/// generic `pair_error`.
#[derive(Debug, PartialEq)]
pub struct PairRequest {
    target_code: Option<PairingCode>,
    proposed_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PairRequestFields {
    #[serde(alias = "target_code")]
    target_code: String,
    #[serde(alias = "proposed_name")]
    proposed_name: Option<String>,
}

impl PairRequest {
    pub(super) fn parse(fields: Map<String, Value>) -> Result<Self, RequestError> {
        let fields: PairRequestFields = fields_of(fields)?;
        check_label("proposedName", fields.proposed_name.as_deref())?;
        Ok(Self {
            target_code: PairingCode::try_from(fields.target_code).ok(),
            proposed_name: fields.proposed_name,
        })
    }
}

/// The answer to the request from `target_code` (the requester).
#[derive(Debug, PartialEq)]
pub struct PairResponse {
    target_code: Option<PairingCode>,
    accepted: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PairResponseFields {
    #[serde(alias = "target_code")]
    target_code: String,
    accepted: bool,
}

impl PairResponse {
    pub(super) fn parse(fields: Map<String, Value>) -> Result<Self, RequestError> {
        let fields: PairResponseFields = fields_of(fields)?;
        Ok(Self {
            target_code: PairingCode::try_from(fields.target_code).ok(),
            accepted: fields.accepted,
        })
    }
}

impl Session {
    /// Binds a pairing code, replacing (and freeing) the session's earlier one.
    pub(super) async fn register_code(
        &self,
        register: RegisterCode,
    ) -> Result<ServerMessage, Failure> {
        if self.shared.config.require_key_proof {
            return self.challenge(register.pairing_code, register.public_key);
        }
        self.bind_code(register.pairing_code, register.public_key)
            .await
    }

    /// Binds the code, once registered (and its key proven, where proofs are required).
    pub(super) async fn bind_code(
        &self,
        pairing_code: PairingCode,
        public_key: PairingKey,
    ) -> Result<ServerMessage, Failure> {
        let code = pairing_code.name().clone();
        let mut names = self.names().await;
        self.state()
            .bind_code(&self.recipient, &code, public_key)
            .await?
            .map_err(|_| Failure::CodeCollision)?;
        names.pairing_code = Some(code.clone());
        tracing::debug!(code = %redacted(&code), "pairing code registered");
        Ok(ServerMessage::RegisteredCode {
            pairing_code: code,
            server_id: self.shared.identity.server_id.clone(),
        })
    }

    pub(super) async fn pair_request(
        &self,
        request: PairRequest,
    ) -> Result<ServerMessage, Failure> {
        let names = self.names().await;
        let requester = own_pairing_code(&names)?;
        let target = request
            .target_code
            .ok_or(Failure::PairError(PAIR_REQUEST_REFUSED))?;
        tracing::debug!(
            from = %redacted(&requester),
            to = %redacted(target.name()),
            "pairing requested"
        );
        self.state()
            .request_pairing(
                &self.recipient,
                &requester,
                target.name(),
                request.proposed_name,
            )
            .await?
            .map_err(|_| Failure::PairError(PAIR_REQUEST_REFUSED))?;
        Ok(ServerMessage::Ack {
            request_type: "pair_request",
        })
    }

    /// Answers a pending request from the requester to this session's code.
    pub(super) async fn pair_response(
        &self,
        response: PairResponse,
    ) -> Result<ServerMessage, Failure> {
        let names = self.names().await;
        let responder = own_pairing_code(&names)?;
        let requester = response
            .target_code
            .ok_or(Failure::PairError(NO_PENDING_REQUEST))?;
        let requester = requester.name();
        match self
            .state()
            .answer_pairing(&responder, requester, response.accepted)
            .await?
            .map_err(|_| Failure::PairError(NO_PENDING_REQUEST))?
        {
            Answer::Rejected => Ok(ServerMessage::Ack {
                request_type: "pair_response",
            }),
            Answer::Accepted(requester_key) => Ok(ServerMessage::PairMatched {
                peer_code: requester.clone(),
                peer_public_key: requester_key,
                is_initiator: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::session::request::tests::invalid_message;

    /// The texts of PROTOCOL 2.9, which clients show people.
    #[test]
    fn pairing_register_checks_code_and_key() {
        let message =
            invalid_message(r#"{"type":"register","pairingCode":"ABC23O","publicKey":"x"}"#);
        assert_eq!(message, "Invalid pairing code format");
        let message = invalid_message(r#"{"type":"register","pairingCode":"ABC234"}"#);
        assert_eq!(message, "Missing required field: publicKey");
        let message =
            invalid_message(r#"{"type":"register","pairingCode":"ABC234","publicKey":"AAAA"}"#);
        assert_eq!(message, "Invalid public key length");
        let message = invalid_message(
            r#"{"type":"register","pairingCode":"ABC234","publicKey":"not base64!"}"#,
        );
        assert_eq!(message, "Invalid public key format");
        let message = invalid_message(r#"{"type":"offer","target":"abc","payload":{}}"#);
        assert_eq!(message, "Invalid target code format");
    }
}
