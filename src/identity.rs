//! Who this server is: an Ed25519 key pair kept in the data directory (made on first start, reused after),
//! from which its `serverId` is derived, and what it announces to clients.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::config::IdentityConfig;
use crate::data_dir::{DataDir, DataDirError};

/// The key's file in the data directory: PKCS#8, as ring writes it.
const KEY_FILE: &str = "server-key.pk8";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("{0} is not an Ed25519 key in PKCS#8; remove it to make a new identity")]
    Unreadable(String),
    #[error("cannot make a key: {0}")]
    Generate(ring::error::Unspecified),
}

/// The server's long-lived key pair.
pub struct ServerKey {
    key_pair: Ed25519KeyPair,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// The key kept in `data_dir`, made and kept there if there is none yet.
    pub fn load_or_create(data_dir: &DataDir) -> Result<Self, IdentityError> {
        let unreadable =
            || IdentityError::Unreadable(data_dir.path().join(KEY_FILE).display().to_string());
        if let Some(pkcs8) = data_dir.read(KEY_FILE)? {
            let key_pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| unreadable())?;
            return Ok(Self { key_pair });
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(IdentityError::Generate)?;
        if !data_dir.create(KEY_FILE, pkcs8.as_ref())? {
            // Another server on this data directory made one first: share it.
            return Self::load_or_create(data_dir);
        }
        let key_pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| unreadable())?;
        Ok(Self { key_pair })
    }

    /// The standard base64 of the 32-byte public key.
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.key_pair.public_key().as_ref())
    }

    /// `ed25519:` and the public key: the id the bootstrap directory and clients know this server by.
    pub fn server_id(&self) -> String {
        format!("ed25519:{}", self.public_key_base64())
    }
}

/// How this server introduces itself: in `server_info`, `registered` and /health.
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    pub server_id: Arc<str>,
    pub endpoint: Option<Arc<str>>,
    pub region: Option<Arc<str>>,
}

impl ServerIdentity {
    /// The configured identity; without a configured id, the one derived from `key`.
    pub fn new(config: &IdentityConfig, key: &ServerKey) -> Self {
        let server_id = config.server_id.clone().unwrap_or_else(|| key.server_id());
        Self {
            server_id: server_id.into(),
            endpoint: config.endpoint.as_deref().map(Arc::from),
            region: config.region.as_deref().map(Arc::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_and_its_server_id_survive_a_restart() {
        let root = std::env::temp_dir().join(format!("zajel-identity-{}", std::process::id()));
        let data_dir = DataDir::open(&root).unwrap();
        let first = ServerKey::load_or_create(&data_dir).unwrap();
        let again = ServerKey::load_or_create(&data_dir).unwrap();
        assert_eq!(first.server_id(), again.server_id());
        let public = BASE64
            .decode(first.server_id().strip_prefix("ed25519:").unwrap())
            .unwrap();
        assert_eq!(public.len(), 32);
        std::fs::write(root.join(KEY_FILE), b"not a key").unwrap();
        assert!(matches!(
            ServerKey::load_or_create(&data_dir),
            Err(IdentityError::Unreadable(_))
        ));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_configured_id_wins_over_the_keys() {
        let root = std::env::temp_dir().join(format!("zajel-identity-cfg-{}", std::process::id()));
        let key = ServerKey::load_or_create(&DataDir::open(&root).unwrap()).unwrap();
        let config = IdentityConfig {
            server_id: Some("configured".into()),
            ..IdentityConfig::default()
        };
        assert_eq!(&*ServerIdentity::new(&config, &key).server_id, "configured");
        let derived = ServerIdentity::new(&IdentityConfig::default(), &key);
        assert_eq!(*derived.server_id, key.server_id());
        std::fs::remove_dir_all(root).unwrap();
    }
}
