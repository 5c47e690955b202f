//! Proof that a client holds the private key of the pairing key it registers (`--require-key-proof`,
//! off by default: legacy clients cannot answer). `register {pairingCode, publicKey}` is answered with a
//! challenge: an ephemeral X25519 key of the server's and a nonce. The client answers
//! `key_proof {pairingCode, proof}`, where `proof` is the standard base64 of
//! HMAC-SHA256(key: X25519(its private key, the server's key), message: "zajel key proof" ‖ nonce ‖
//! pairing code); only the holder of the private key can compute it. The code is bound when the proof
//! checks out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{RequestError, fields_of, invalid};
use super::{Failure, Session};
use crate::clock::Millis;
use crate::protocol::ServerMessage;
use crate::protocol::names::{PairingCode, PairingKey};

/// What the proof's MAC covers, before the nonce and the pairing code.
const CONTEXT: &[u8] = b"zajel key proof";
/// How long a challenge may wait for its proof.
const CHALLENGE_LIFETIME: Millis = 30_000;

/// A challenge waiting for its proof: one per session, the latest.
pub(super) struct PendingChallenge {
    code: PairingCode,
    public_key: PairingKey,
    secret: EphemeralPrivateKey,
    nonce: [u8; 32],
    expires: Millis,
}

impl std::fmt::Debug for PendingChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingChallenge")
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, PartialEq)]
pub struct KeyProof {
    pairing_code: PairingCode,
    proof: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyProofFields {
    #[serde(alias = "pairing_code")]
    pairing_code: PairingCode,
    proof: String,
}

impl KeyProof {
    pub(super) fn parse(fields: Map<String, Value>) -> Result<Self, RequestError> {
        let KeyProofFields {
            pairing_code,
            proof,
        } = fields_of(fields)?;
        Ok(Self {
            pairing_code,
            proof,
        })
    }
}

/// The message a proof's MAC covers.
fn proof_message(nonce: &[u8], code: &str) -> Vec<u8> {
    [CONTEXT, nonce, code.as_bytes()].concat()
}

impl Session {
    /// Answers a pairing `register` with a challenge, remembered until its proof comes.
    pub(super) fn challenge(
        &self,
        code: PairingCode,
        public_key: PairingKey,
    ) -> Result<ServerMessage, Failure> {
        let random = SystemRandom::new();
        let secret =
            EphemeralPrivateKey::generate(&X25519, &random).map_err(|_| Failure::Internal)?;
        let server_key = secret.compute_public_key().map_err(|_| Failure::Internal)?;
        let mut nonce = [0u8; 32];
        random.fill(&mut nonce).map_err(|_| Failure::Internal)?;
        let reply = ServerMessage::KeyChallenge {
            pairing_code: code.name().clone(),
            server_key: BASE64.encode(server_key.as_ref()),
            nonce: BASE64.encode(nonce),
        };
        *self.pending_challenge() = Some(PendingChallenge {
            code,
            public_key,
            secret,
            nonce,
            expires: self.shared.clock.now().saturating_add(CHALLENGE_LIFETIME),
        });
        Ok(reply)
    }

    /// Checks a proof against the session's challenge for that code; a good one binds the code.
    pub(super) async fn key_proof(&self, answer: KeyProof) -> Result<ServerMessage, Failure> {
        let pending = self
            .pending_challenge()
            .take_if(|pending| pending.code == answer.pairing_code);
        let Some(pending) = pending.filter(|pending| self.shared.clock.now() < pending.expires)
        else {
            return Err(Failure::Request(invalid(
                "pairingCode: no key challenge waits for this code on this session (register first)",
            )));
        };
        let proof = BASE64
            .decode(&answer.proof)
            .map_err(|_| invalid("proof: must be standard base64"))?;
        let client_key = BASE64
            .decode(pending.public_key.shared().as_bytes())
            .expect("pairing keys are checked base64");
        let message = proof_message(&pending.nonce, pending.code.name().as_str());
        let proven = agreement::agree_ephemeral(
            pending.secret,
            &UnparsedPublicKey::new(&X25519, client_key),
            |shared| {
                let key = hmac::Key::new(hmac::HMAC_SHA256, shared);
                hmac::verify(&key, &message, &proof).is_ok()
            },
        )
        .unwrap_or(false);
        if !proven {
            return Err(Failure::Request(invalid(
                "proof: does not prove the private key of this publicKey",
            )));
        }
        self.bind_code(pending.code, pending.public_key).await
    }
}
