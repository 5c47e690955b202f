//! Names held across the cluster: a pairing code or relay peer id is held by one live session of one
//! node, claimed atomically in its record; deliveries to a name go to the node holding it.
//!
//! A record is `node session key roles`: `key` is the pairing key (`-` when the name is not held as a
//! code), `roles` is `c` (pairing code), `r` (relay id) or both. A code whose session ended stays reserved
//! for its key a while as `- - key -`, expiring by itself. A record of a node known dead is free.

use std::sync::LazyLock;

use redis::Script;

use super::super::owners::Role;
use super::holdings::Holding;
use super::keys;
use super::{Cluster, StoreError};
use crate::clock::Millis;
use crate::peer::SessionId;
use crate::protocol::names::PairingKey;
use crate::protocol::{Name, ServerMessage};

/// The letter of a role in a name's record.
fn letter(role: Role) -> &'static str {
    match role {
        Role::PairingCode => "c",
        Role::RelayId => "r",
    }
}

/// KEYS: the name's record. ARGV: node, session, role letter, key (`-` for none), then the dead nodes.
/// Returns 1 when the session now holds the name, 2 when another session of this node does, 0 when a
/// session of another node does or it is reserved for another key.
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
  elseif held_node == node then
    return 2
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
/// reserved for its key (0: not at all). Does nothing unless the session holds the name. Returns 2 when
/// the node no longer holds the name, 1 when the session still holds it in its other role.
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
  return 1
elseif ARGV[3] == 'c' and held_key ~= '-' and tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], '- - ' .. held_key .. ' -', 'PX', ARGV[4])
else
  redis.call('DEL', KEYS[1])
end
return 2
",
    )
});

/// KEYS: the name's record. ARGV: the delivery (see [`Delivery`]), `1` if the name must be held as a
/// pairing code, the `node session` that must hold it (empty: any), then the dead nodes. Publishes the
/// delivery to the node holding the name; returns 1 if one does.
static DELIVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local held_node, held_session, held_key, held_roles = string.match(current, '^(%S+) (%S+) (%S+) (%S+)$')
if held_node == '-' then return 0 end
if ARGV[2] == '1' and not string.find(held_roles, 'c', 1, true) then return 0 end
if ARGV[3] ~= '' and ARGV[3] ~= held_node .. ' ' .. held_session then return 0 end
for i = 4, #ARGV do
  if ARGV[i] == held_node then return 0 end
end
redis.call('PUBLISH', 'zajel:node:' .. held_node, ARGV[1])
return 1
",
    )
});

/// KEYS: the name's record. ARGV: the `node session` that must hold it. Returns the pairing key the name
/// is held with by that session, if it holds it as a pairing code.
static CODE_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then return false end
local held_node, held_session, held_key, held_roles = string.match(current, '^(%S+) (%S+) (%S+) (%S+)$')
if held_key == '-' or held_node .. ' ' .. held_session ~= ARGV[1] then return false end
return held_key
",
    )
});

/// A session somewhere in the cluster: the one that made a pending request, to which its answer goes
/// (and nobody who took its code since).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAt {
    pub node: String,
    pub session: SessionId,
}

impl SessionAt {
    /// From the `node session …` a pending request starts with.
    pub fn read(stored: &str) -> Option<Self> {
        let mut parts = stored.split(' ');
        Some(Self {
            node: parts.next()?.to_owned(),
            session: parts.next()?.parse().ok()?,
        })
    }

    fn spelled(&self) -> String {
        format!("{} {}", self.node, self.session)
    }
}

/// How a delivered message is queued on the receiving node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A push from the server: a session that does not read its pushes is closed.
    Push,
    /// A message another client sent: it is dropped when the target's queue is full.
    Forward,
    /// A web client's `link_matched`, pushed; from then on its session's signals without a target go
    /// to the phone's session, which holds `phone` (PROTOCOL 2.8).
    Linked { phone: Name, at: SessionAt },
}

/// One delivery as it crosses Redis: the delivery letter (for a link, then `node session phone `), the
/// name, a space, the message as JSON.
pub fn encode_delivery(delivery: &Delivery, name: &str, message: &ServerMessage) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(name.len() + 128);
    match delivery {
        Delivery::Push => bytes.push(b'p'),
        Delivery::Forward => bytes.push(b'f'),
        Delivery::Linked { phone, at } => {
            bytes.push(b'l');
            bytes.extend_from_slice(format!("{} {phone} ", at.spelled()).as_bytes());
        }
    }
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(b' ');
    serde_json::to_writer(&mut bytes, message).expect("server messages serialize as JSON");
    bytes
}

/// The parts of a delivery received from Redis, if it is one.
pub fn decode_delivery(bytes: &[u8]) -> Option<(Delivery, &str, serde_json::Value)> {
    let (&letter, rest) = bytes.split_first()?;
    // The message is the rest, spaces and all.
    let parts = if letter == b'l' { 5 } else { 2 };
    let mut words = rest.splitn(parts, |&b| b == b' ');
    let mut word = || std::str::from_utf8(words.next()?).ok();
    let delivery = match letter {
        b'p' => Delivery::Push,
        b'f' => Delivery::Forward,
        b'l' => Delivery::Linked {
            at: SessionAt {
                node: word()?.to_owned(),
                session: word()?.parse().ok()?,
            },
            phone: Name::try_from(word()?).ok()?,
        },
        _ => return None,
    };
    let name = word()?;
    let message = serde_json::from_slice(words.next()?).ok()?;
    Some((delivery, name, message))
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
        // Listed before it is claimed: whatever record this node makes, a reaper will find.
        self.hold(&[Holding::Name(name)]).await?;
        let claimed: i64 = self.call(&invocation).await?;
        if claimed == 0 {
            self.unhold(&[Holding::Name(name)]).await?;
        }
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
        let released: i64 = self.call(&invocation).await?;
        if released == 2 {
            self.unhold(&[Holding::Name(name)]).await?;
        }
        Ok(())
    }

    /// Sends `message` to the session holding `name` (as a pairing code, with `code_only`), wherever it
    /// is. False: no live session holds it.
    pub async fn deliver(
        &self,
        name: &str,
        delivery: &Delivery,
        code_only: bool,
        message: &ServerMessage,
    ) -> Result<bool, StoreError> {
        self.deliver_to(name, None, delivery, code_only, message)
            .await
    }

    /// Sends `message` to the session holding `name`, if it is `holder` (any, if not given).
    async fn deliver_to(
        &self,
        name: &str,
        holder: Option<&SessionAt>,
        delivery: &Delivery,
        code_only: bool,
        message: &ServerMessage,
    ) -> Result<bool, StoreError> {
        let mut invocation = DELIVER.key(keys::name(name));
        invocation
            .arg(encode_delivery(delivery, name, message))
            .arg(if code_only { "1" } else { "0" })
            .arg(holder.map(SessionAt::spelled).unwrap_or_default());
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
        self.deliver(code, &Delivery::Push, true, message).await?;
        Ok(())
    }

    /// Pushes `message` to the session holding `code` as its pairing code if it is `holder`.
    pub async fn push_to_session(
        &self,
        code: &str,
        holder: &SessionAt,
        message: &ServerMessage,
    ) -> Result<(), StoreError> {
        self.deliver_to(code, Some(holder), &Delivery::Push, true, message)
            .await?;
        Ok(())
    }

    /// Pushes a web client's `link_matched` to the session holding `web_client` as its pairing code if
    /// it is `holder`, and links that session to this node's `phone_session`, holding `phone`.
    pub async fn push_link_matched(
        &self,
        web_client: &str,
        holder: &SessionAt,
        phone: &Name,
        phone_session: SessionId,
        matched: &ServerMessage,
    ) -> Result<(), StoreError> {
        let linked = Delivery::Linked {
            phone: phone.clone(),
            at: SessionAt {
                node: self.node.clone(),
                session: phone_session,
            },
        };
        self.deliver_to(web_client, Some(holder), &linked, true, matched)
            .await?;
        Ok(())
    }

    /// Forwards what a client sent to the session holding `code` as its pairing code if it is
    /// `holder`. False: it does not (any more).
    pub async fn forward_to_session(
        &self,
        code: &str,
        holder: &SessionAt,
        message: &ServerMessage,
    ) -> Result<bool, StoreError> {
        self.deliver_to(code, Some(holder), &Delivery::Forward, true, message)
            .await
    }

    /// The key `code` is held with as a pairing code by `holder`, if it still holds it.
    pub async fn code_key(
        &self,
        code: &str,
        holder: &SessionAt,
    ) -> Result<Option<String>, StoreError> {
        let mut invocation = CODE_KEY.key(keys::name(code));
        invocation.arg(holder.spelled());
        self.call(&invocation).await
    }
}
