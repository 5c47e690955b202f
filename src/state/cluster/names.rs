//! Names held across the cluster: a pairing code or relay peer id is held by one live session of one
//! node, claimed atomically in its record; deliveries to a name go to the node holding it.
//!
//! A record is `node session key roles`: `key` is the pairing key (`-` when the name is not held as a
//! code), `roles` is `c` (pairing code), `r` (relay id) or both. A code whose session ended stays reserved
//! for its key a while as `- - key -`, expiring by itself. A record of a node known dead is free.

use std::sync::LazyLock;

use redis::Script;

use super::super::owners::Role;
use super::keys;
use super::{Cluster, StoreError};
use crate::clock::Millis;
use crate::peer::SessionId;
use crate::protocol::ServerMessage;
use crate::protocol::names::PairingKey;

/// The letter of a role in a name's record.
fn letter(role: Role) -> &'static str {
    match role {
        Role::PairingCode => "c",
        Role::RelayId => "r",
    }
}

/// KEYS: the name's record. ARGV: node, session, role letter, key (`-` for none), then the dead nodes.
/// Returns 1 when the session now holds the name, 0 when another does or it is reserved for another key.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
local node, session, role, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local roles = role
if current then
  local held_node, held_session, held_key, held_roles = string.match(current, '^(%S+) (%S+) (%S+) (%S+)$')
  if held_node == node and held_session == session then
    if not string.find(held_roles, role, 1, true) then roles = held_roles .. role else roles = held_roles end
    if role == 'r' then key = held_key end
  elseif held_node == '-' then
    if key == '-' or key ~= held_key then return 0 end
  else
    local dead = false
    for i = 5, #ARGV do
      if ARGV[i] == held_node then dead = true end
    end
    if not dead then return 0 end
  end
end
redis.call('SET', KEYS[1], node .. ' ' .. session .. ' ' .. key .. ' ' .. roles)
return 1
",
    )
});

/// KEYS: the name's record. ARGV: node, session, role letter, milliseconds to keep a released code
/// reserved for its key (0: not at all). Does nothing unless the session holds the name.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local held_node, held_session, held_key, held_roles = string.match(current, '^(%S+) (%S+) (%S+) (%S+)$')
if held_node ~= ARGV[1] or held_session ~= ARGV[2] then return 0 end
local roles = string.gsub(held_roles, ARGV[3], '')
local key = held_key
if ARGV[3] == 'c' then key = '-' end
if roles ~= '' then
  redis.call('SET', KEYS[1], held_node .. ' ' .. held_session .. ' ' .. key .. ' ' .. roles)
elseif ARGV[3] == 'c' and held_key ~= '-' and tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], '- - ' .. held_key .. ' -', 'PX', ARGV[4])
else
  redis.call('DEL', KEYS[1])
end
return 1
",
    )
});

/// KEYS: the name's record. ARGV: the delivery (see [`Delivery`]), `1` if the name must be held as a
/// pairing code, then the dead nodes. Publishes the delivery to the node holding the name; returns 1 if
/// one does.
static DELIVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local held_node, held_session, held_key, held_roles = string.match(current, '^(%S+) (%S+) (%S+) (%S+)$')
if held_node == '-' then return 0 end
if ARGV[2] == '1' and not string.find(held_roles, 'c', 1, true) then return 0 end
for i = 3, #ARGV do
  if ARGV[i] == held_node then return 0 end
end
redis.call('PUBLISH', 'zajel:node:' .. held_node, ARGV[1])
return 1
",
    )
});

/// KEYS: the name's record. Returns the pairing key the name is held with, if held as a pairing code by
/// a live node (ARGV: the dead nodes).
static CODE_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then return false end
local held_node, held_session, held_key, held_roles = string.match(current, '^(%S+) (%S+) (%S+) (%S+)$')
if held_node == '-' or held_key == '-' then return false end
for i = 1, #ARGV do
  if ARGV[i] == held_node then return false end
end
return held_key
",
    )
});

/// How a delivered message is queued on the receiving node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A push from the server: a session that does not read its pushes is closed.
    Push,
    /// A message another client sent: it is dropped when the target's queue is full.
    Forward,
}

impl Delivery {
    fn letter(self) -> u8 {
        match self {
            Self::Push => b'p',
            Self::Forward => b'f',
        }
    }

    fn from_letter(letter: u8) -> Option<Self> {
        match letter {
            b'p' => Some(Self::Push),
            b'f' => Some(Self::Forward),
            _ => None,
        }
    }
}

/// One delivery as it crosses Redis: the delivery letter, the name, a space, the message as JSON.
pub fn encode_delivery(delivery: Delivery, name: &str, message: &ServerMessage) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(name.len() + 128);
    bytes.push(delivery.letter());
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(b' ');
    serde_json::to_writer(&mut bytes, message).expect("server messages serialize as JSON");
    bytes
}

/// The parts of a delivery received from Redis, if it is one.
pub fn decode_delivery(bytes: &[u8]) -> Option<(Delivery, &str, serde_json::Value)> {
    let (&letter, rest) = bytes.split_first()?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let name = std::str::from_utf8(&rest[..space]).ok()?;
    let message = serde_json::from_slice(&rest[space + 1..]).ok()?;
    Some((Delivery::from_letter(letter)?, name, message))
}

impl Cluster {
    /// Claims `name` for the session in `role` (a pairing code with its key). False: another live
    /// session holds it, or it is reserved for another key.
    pub async fn claim(
        &self,
        name: &str,
        session: SessionId,
        role: Role,
        key: Option<&PairingKey>,
    ) -> Result<bool, StoreError> {
        let mut invocation = CLAIM.key(keys::name(name));
        invocation
            .arg(&self.node)
            .arg(session)
            .arg(letter(role))
            .arg(key.map_or("-", |key| key.as_str()));
        self.add_dead_nodes(&mut invocation);
        let claimed: i64 = self.call(&invocation).await?;
        Ok(claimed == 1)
    }

    /// Gives up `name` in `role`; a pairing code is then reserved for its key for `reserve_for`.
    pub async fn release(
        &self,
        name: &str,
        session: SessionId,
        role: Role,
        reserve_for: Millis,
    ) -> Result<(), StoreError> {
        let mut invocation = RELEASE.key(keys::name(name));
        invocation
            .arg(&self.node)
            .arg(session)
            .arg(letter(role))
            .arg(reserve_for);
        let _: i64 = self.call(&invocation).await?;
        Ok(())
    }

    /// Sends `message` to the session holding `name` (as a pairing code, with `code_only`), wherever it
    /// is. False: no live session holds it.
    pub async fn deliver(
        &self,
        name: &str,
        delivery: Delivery,
        code_only: bool,
        message: &ServerMessage,
    ) -> Result<bool, StoreError> {
        let mut invocation = DELIVER.key(keys::name(name));
        invocation
            .arg(encode_delivery(delivery, name, message))
            .arg(if code_only { "1" } else { "0" });
        self.add_dead_nodes(&mut invocation);
        let delivered: i64 = self.call(&invocation).await?;
        Ok(delivered == 1)
    }

    /// Pushes `message` to the session holding `code` as its pairing code, wherever it is; nothing
    /// happens when none does.
    pub async fn push_to_code(
        &self,
        code: &str,
        message: &ServerMessage,
    ) -> Result<(), StoreError> {
        self.deliver(code, Delivery::Push, true, message).await?;
        Ok(())
    }

    /// The key `code` is held with as a pairing code by a live session, wherever it is.
    pub async fn code_key(&self, code: &str) -> Result<Option<String>, StoreError> {
        let mut invocation = CODE_KEY.prepare_invoke();
        invocation.key(keys::name(code));
        self.add_dead_nodes(&mut invocation);
        self.call(&invocation).await
    }
}
