//! Pending pairing and link requests in Redis, kept beside the target's name record (one slot): a hash
//! of requests waiting for a pairing code (requester → `node expires address`), and the one link request
//! waiting for a phone (`web-client node expires key device-name-as-JSON`).
//!
//! The requester's node keeps the request's timers (its own pairing registry, as on one node); when one
//! falls due it asks Redis whether the request still waits, so an answer given on another node wins.
//! The per-code limits (all requests, and those from one address) hold cluster-wide, checked here.

use std::sync::LazyLock;

use redis::Script;

use super::holdings::Holding;
use super::names::SessionAt;
use super::{Cluster, StoreError, keys};
use crate::clock::Millis;
use crate::peer::{AddressGroup, SessionId};
use crate::protocol::names::PairingKey;
use crate::protocol::{Name, ServerMessage};
use crate::registry::pairing::PendingLink;

use super::names::{Delivery, encode_delivery};

/// Reads a name record into `held_node`, `held_key`, `held_roles`, and returns from the script with 0
/// unless a live node holds it as a pairing code. ARGV from `first_dead` on are the dead nodes.
const LIVE_CODE: &str = r"
local function live_code(record, first_dead)
  if not record then return nil end
  local node, session, key, roles = string.match(record, '^(%S+) (%S+) (%S+) (%S+)$')
  if node == '-' or key == '-' or not string.find(roles, 'c', 1, true) then return nil end
  for i = first_dead, #ARGV do
    if ARGV[i] == node then return nil end
  end
  return node
end
";

/// KEYS: the target's record, its pending requests. ARGV: requester, node, session, now, expires,
/// address, most pending, most pending from one address, the `pair_incoming` delivery, dead nodes.
/// Returns 1 when recorded (and the target is pushed the delivery), 0 when refused.
static PAIR_REQUEST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LIVE_CODE}
local target_node = live_code(redis.call('GET', KEYS[1]), 10)
if not target_node then return 0 end
local now = tonumber(ARGV[4])
local dead = {{}}
for i = 10, #ARGV do dead[ARGV[i]] = true end
local waiting, from_address, again = 0, 0, false
local requests = redis.call('HGETALL', KEYS[2])
for i = 1, #requests, 2 do
  local node, session, expires, address = string.match(requests[i + 1], '^(%S+) (%S+) (%S+) (%S+)$')
  if tonumber(expires) <= now or dead[node] then
    redis.call('HDEL', KEYS[2], requests[i])
  elseif requests[i] == ARGV[1] then
    again = true
  else
    waiting = waiting + 1
    if address == ARGV[6] then from_address = from_address + 1 end
  end
end
if not again and (waiting >= tonumber(ARGV[7]) or from_address >= tonumber(ARGV[8])) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6])
local ttl = math.max(1, tonumber(ARGV[5]) - now)
redis.call('PEXPIRE', KEYS[2], ttl, 'NX')
redis.call('PEXPIRE', KEYS[2], ttl, 'GT')
redis.call('PUBLISH', 'zajel:node:' .. target_node, ARGV[9])
return 1
"
    ))
});

/// KEYS: a code's pending requests. ARGV: requester, the node that must have made it (empty: any).
/// Removes the request and returns it (`node session expires address`), if it was waiting.
static PAIR_TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local request = redis.call('HGET', KEYS[1], ARGV[1])
if not request then return false end
if ARGV[2] ~= '' and string.match(request, '^(%S+) ') ~= ARGV[2] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return request
",
    )
});

/// KEYS: a code's pending requests. ARGV: requester, node. Whether that node's request still waits.
static PAIR_WAITING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local request = redis.call('HGET', KEYS[1], ARGV[1])
if not request then return 0 end
if string.match(request, '^(%S+) ') ~= ARGV[2] then return 0 end
return 1
",
    )
});

/// KEYS: a code's pending requests. Removes them all and returns them (requester, request, …).
static PAIRS_END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local requests = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return requests
",
    )
});

/// KEYS: the phone's record, its link request. ARGV: web client, node, session, now, expires, the web
/// client's key, device name as JSON, the `link_request` delivery, dead nodes. Returns 1 when recorded
/// (and the phone pushed the delivery), 0 when the phone is not a live code or waits on another web
/// client.
static LINK_REQUEST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LIVE_CODE}
local phone_node = live_code(redis.call('GET', KEYS[1]), 9)
if not phone_node then return 0 end
local now = tonumber(ARGV[4])
local waiting = redis.call('GET', KEYS[2])
if waiting then
  local web_client, node, session, expires = string.match(waiting, '^(%S+) (%S+) (%S+) (%S+) ')
  local gone = tonumber(expires) <= now
  for i = 9, #ARGV do
    if ARGV[i] == node then gone = true end
  end
  if not gone and web_client ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[2],
  ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7],
  'PX', math.max(1, tonumber(ARGV[5]) - now))
redis.call('PUBLISH', 'zajel:node:' .. phone_node, ARGV[8])
return 1
",
    ))
});

/// KEYS: a phone's link request. ARGV: the web client that must have made it (empty: any). Removes it
/// and returns it, if it was waiting.
static LINK_TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local waiting = redis.call('GET', KEYS[1])
if not waiting then return false end
if ARGV[1] ~= '' and string.match(waiting, '^(%S+) ') ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return waiting
",
    )
});

/// A pairing request as the cluster records it.
#[derive(Debug)]
pub struct PairRequest<'a> {
    pub requester: &'a Name,
    /// The requester's session, to which the answer goes.
    pub session: SessionId,
    pub target: &'a Name,
    pub address: AddressGroup,
    pub now: Millis,
    pub expires: Millis,
    pub max_pending: usize,
    pub max_pending_from_address: usize,
    /// The `pair_incoming` the target is pushed.
    pub incoming: ServerMessage,
}

impl Cluster {
    /// Records a pairing request for the target wherever it is, and pushes it `pair_incoming`. False:
    /// the target is no live pairing code, or has no room for the request.
    pub async fn request_pairing(&self, request: PairRequest<'_>) -> Result<bool, StoreError> {
        let target = request.target.as_str();
        let mut invocation = PAIR_REQUEST.key(keys::name(target));
        invocation
            .key(keys::pairing_requests(target))
            .arg(request.requester.as_str())
            .arg(&self.node)
            .arg(request.session)
            .arg(request.now)
            .arg(request.expires)
            .arg(request.address.to_string())
            .arg(request.max_pending)
            .arg(request.max_pending_from_address)
            .arg(encode_delivery(&Delivery::Push, target, &request.incoming));
        self.add_dead_nodes(&mut invocation);
        let holding = Holding::Pairing {
            target,
            requester: request.requester.as_str(),
        };
        self.hold(&[holding]).await?;
        let recorded: i64 = self.call(&invocation).await?;
        if recorded == 0 {
            self.unhold(&[holding]).await?;
        }
        Ok(recorded == 1)
    }

    /// Takes the request from `requester` to `target`, if it still waits: this node's own (a timer of
    /// its, or its requester left), or, answered by the target, anyone's. Returns the session that made
    /// it.
    pub async fn take_pairing(
        &self,
        requester: &Name,
        target: &Name,
        own: bool,
    ) -> Result<Option<SessionAt>, StoreError> {
        if !own {
            return self
                .take_pairing_of(requester.as_str(), target.as_str(), "")
                .await;
        }
        let taken = self
            .take_pairing_of(requester.as_str(), target.as_str(), &self.node)
            .await?;
        self.unhold(&[Holding::Pairing {
            target: target.as_str(),
            requester: requester.as_str(),
        }])
        .await?;
        Ok(taken)
    }

    /// Takes the request from `requester` to `target` made by `node` (empty: any), if it still waits.
    pub(super) async fn take_pairing_of(
        &self,
        requester: &str,
        target: &str,
        node: &str,
    ) -> Result<Option<SessionAt>, StoreError> {
        let mut invocation = PAIR_TAKE.key(keys::pairing_requests(target));
        invocation.arg(requester).arg(node);
        let taken: Option<String> = self.call(&invocation).await?;
        Ok(taken.as_deref().and_then(SessionAt::read))
    }

    /// Whether this node's request from `requester` to `target` still waits.
    pub async fn pairing_waits(&self, requester: &Name, target: &Name) -> Result<bool, StoreError> {
        let mut invocation = PAIR_WAITING.key(keys::pairing_requests(target.as_str()));
        invocation.arg(requester.as_str()).arg(&self.node);
        let waiting: i64 = self.call(&invocation).await?;
        Ok(waiting == 1)
    }

    /// Ends every request waiting for `code`; returns their requesters and the sessions that made them.
    pub async fn end_pairings_to(
        &self,
        code: &Name,
    ) -> Result<Vec<(String, SessionAt)>, StoreError> {
        let invocation = PAIRS_END.key(keys::pairing_requests(code.as_str()));
        let requests: Vec<String> = self.call(&invocation).await?;
        Ok(requests
            .chunks_exact(2)
            .filter_map(|pair| Some((pair[0].clone(), SessionAt::read(&pair[1])?)))
            .collect())
    }

    /// Records a web client's request to attach to `phone`, wherever it is, and pushes it the
    /// `link_request`. False: the phone is no live pairing code, or waits on another web client.
    pub async fn request_link(
        &self,
        phone: &Name,
        link: &PendingLink,
        session: SessionId,
        now: Millis,
        expires: Millis,
        request: &ServerMessage,
    ) -> Result<bool, StoreError> {
        let mut invocation = LINK_REQUEST.key(keys::name(phone.as_str()));
        invocation
            .key(keys::link_request(phone.as_str()))
            .arg(link.web_client.as_str())
            .arg(&self.node)
            .arg(session)
            .arg(now)
            .arg(expires)
            .arg(link.web_client_key.as_str())
            .arg(serde_json::to_string(&link.device_name).expect("text serializes"))
            .arg(encode_delivery(&Delivery::Push, phone.as_str(), request));
        self.add_dead_nodes(&mut invocation);
        let holding = Holding::Link {
            phone: phone.as_str(),
            web_client: link.web_client.as_str(),
        };
        self.hold(&[holding]).await?;
        let recorded: i64 = self.call(&invocation).await?;
        if recorded == 0 {
            self.unhold(&[holding]).await?;
        }
        Ok(recorded == 1)
    }

    /// Takes the link request waiting for `phone`: this node's web client's (a timer of its, or the web
    /// client left), or, answered by the phone, anyone's.
    pub async fn take_link(
        &self,
        phone: &Name,
        own: Option<&Name>,
    ) -> Result<Option<(PendingLink, SessionAt)>, StoreError> {
        let Some(web_client) = own else {
            return self.take_link_of(phone.as_str(), "").await;
        };
        let taken = self
            .take_link_of(phone.as_str(), web_client.as_str())
            .await?;
        self.unhold(&[Holding::Link {
            phone: phone.as_str(),
            web_client: web_client.as_str(),
        }])
        .await?;
        Ok(taken)
    }

    /// Takes the link request waiting for `phone` made by `web_client` (empty: any).
    pub(super) async fn take_link_of(
        &self,
        phone: &str,
        web_client: &str,
    ) -> Result<Option<(PendingLink, SessionAt)>, StoreError> {
        let mut invocation = LINK_TAKE.key(keys::link_request(phone));
        invocation.arg(web_client);
        let taken: Option<String> = self.call(&invocation).await?;
        Ok(taken.as_deref().and_then(read_link))
    }
}

/// A link request as [`LINK_REQUEST`] stores it, and the session that made it.
fn read_link(stored: &str) -> Option<(PendingLink, SessionAt)> {
    let mut parts = stored.splitn(6, ' ');
    let web_client = Name::try_from(parts.next()?).ok()?;
    let made_by = SessionAt {
        node: parts.next()?.to_owned(),
        session: parts.next()?.parse().ok()?,
    };
    let key = PairingKey::try_from(parts.nth(1)?.to_owned()).ok()?;
    let device_name = serde_json::from_str(parts.next()?).ok()?;
    let link = PendingLink {
        web_client,
        web_client_key: key,
        device_name,
    };
    Some((link, made_by))
}
