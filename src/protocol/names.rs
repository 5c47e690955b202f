//! Validated text values of the protocol: names (peer ids, relay ids, points, tokens), pairing codes and
//! public keys. Each type can only hold a value that passed its check, so later layers never re-check.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

const MAX_NAME_CHARS: usize = 128;
const PAIRING_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const PAIRING_CODE_LEN: usize = 6;
const PAIRING_KEY_BYTES: usize = 32;
const MAX_RELAY_KEY_CHARS: usize = 256;

/// A peer id, relay id, daily point or hourly token: 1 to 128 characters of `[A-Za-z0-9_-]`.
/// Cheap to clone, so registries share one allocation per name.
#[derive(Clone, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Name(Arc<str>);

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        // Registries compare clones of one allocation far more often than equal copies.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Hash for Name {
    /// The hash of the text, as `Borrow<str>` requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let valid_chars = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if text.is_empty() || text.len() > MAX_NAME_CHARS || !valid_chars {
            return Err(format!(
                "must be 1 to {MAX_NAME_CHARS} characters of [A-Za-z0-9_-]"
            ));
        }
        Ok(Self(text.into()))
    }
}

impl TryFrom<&str> for Name {
    type Error = String;

    fn try_from(text: &str) -> Result<Self, Self::Error> {
        Self::try_from(text.to_owned())
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A pairing code: exactly 6 characters of an alphabet without the look-alikes 0, O, 1 and I.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct PairingCode(Name);

impl PairingCode {
    pub fn name(&self) -> &Name {
        &self.0
    }
}

impl TryFrom<String> for PairingCode {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let valid = text.len() == PAIRING_CODE_LEN
            && text.bytes().all(|b| PAIRING_CODE_ALPHABET.contains(&b));
        if !valid {
            return Err(INVALID_PAIRING_CODE.to_owned());
        }
        Ok(Self(Name(text.into())))
    }
}

/// A pairing code that is not exactly 6 characters of the code alphabet (PROTOCOL 2.1; text of 2.9).
pub const INVALID_PAIRING_CODE: &str = "Invalid pairing code format";
/// A public key that is not standard base64 (PROTOCOL 2.9).
pub const INVALID_PUBLIC_KEY_FORMAT: &str = "Invalid public key format";
/// A public key that is base64, but not of 32 bytes (PROTOCOL 2.9).
pub const INVALID_PUBLIC_KEY_LENGTH: &str = "Invalid public key length";

/// The public key sent with a pairing-code `register`: standard base64 of exactly 32 bytes, kept as sent.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct PairingKey(Arc<str>);

impl PairingKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as sent, shared.
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl TryFrom<String> for PairingKey {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match base64::engine::general_purpose::STANDARD.decode(&text) {
            Ok(bytes) if bytes.len() == PAIRING_KEY_BYTES => Ok(Self(text.into())),
            Ok(_) => Err(INVALID_PUBLIC_KEY_LENGTH.to_owned()),
            Err(_) => Err(INVALID_PUBLIC_KEY_FORMAT.to_owned()),
        }
    }
}

/// The opaque public key a relay may announce: at most 256 characters.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct RelayKey(Arc<str>);

impl RelayKey {
    pub fn into_shared(self) -> Arc<str> {
        self.0
    }
}

impl TryFrom<String> for RelayKey {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.chars().count() > MAX_RELAY_KEY_CHARS {
            return Err(format!("must be at most {MAX_RELAY_KEY_CHARS} characters"));
        }
        Ok(Self(text.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_alphabet_and_lengths() {
        assert!(Name::try_from("a").is_ok());
        assert!(Name::try_from("peer_1-X").is_ok());
        assert!(Name::try_from("x".repeat(128)).is_ok());
        assert!(Name::try_from("").is_err());
        assert!(Name::try_from("x".repeat(129)).is_err());
        assert!(Name::try_from("has space").is_err());
        assert!(Name::try_from("dot.ted").is_err());
        assert!(Name::try_from("é").is_err());
    }

    #[test]
    fn pairing_codes_exclude_look_alike_characters() {
        assert!(PairingCode::try_from("ABC234".to_owned()).is_ok());
        assert!(PairingCode::try_from("ABC23".to_owned()).is_err());
        assert!(PairingCode::try_from("ABC2345".to_owned()).is_err());
        assert!(PairingCode::try_from("ABCD0O".to_owned()).is_err());
        assert!(PairingCode::try_from("abc234".to_owned()).is_err());
        assert!(PairingCode::try_from("ABCD1I".to_owned()).is_err());
    }

    #[test]
    fn pairing_keys_must_decode_to_32_bytes() {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(PairingKey::try_from(key).is_ok());
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
        assert!(PairingKey::try_from(short).is_err());
        assert!(PairingKey::try_from("not base64!".to_owned()).is_err());
    }

    #[test]
    fn relay_keys_are_bounded() {
        assert!(RelayKey::try_from("k".repeat(256)).is_ok());
        assert!(RelayKey::try_from("k".repeat(257)).is_err());
    }
}
