//! Pending pairing and link requests in Redis, kept beside the target's name record (one slot): a hash
//! of requests waiting for a pairing code (requester → `node expires address`), and the one link request
//! waiting for a phone (`web-client node expires key device-name-as-JSON`).
//!
//! The requester's node keeps the request's timers (its own pairing registry, as on one node); when one
//! falls due it asks Redis whether the request still waits, so an answer given on another node wins.
//! The per-code limits (all requests, and those from one address) hold cluster-wide, checked here.

use std::sync::LazyLock;

use redis::Script;

use super::{Cluster, StoreError, keys};
use crate::clock::Millis;
use crate::peer::AddressGroup;
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

/// KEYS: the target's record, its pending requests. ARGV: requester, node, now, expires, address, most
/// pending, most pending from one address, the `pair_incoming` delivery, dead nodes. Returns 1 when
/// recorded (and the target is pushed the delivery), 0 when refused.
static PAIR_REQUEST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LIVE_CODE}
local target_node = live_code(redis.call('GET', KEYS[1]), 9)
if not target_node then return 0 end
local now = tonumber(ARGV[3])
local waiting, from_address, again = 0, 0, false
local requests = redis.call('HGETALL', KEYS[2])
for i = 1, #requests, 2 do
  local node, expires, address = string.match(requests[i + 1], '^(%S+) (%S+) (%S+)$')
  if tonumber(expires) <= now then
    redis.call('HDEL', KEYS[2], requests[i])
  elseif requests[i] == ARGV[1] then
    again = true
  else
    waiting = waiting + 1
    if address == ARGV[5] then from_address = from_address + 1 end
  end
end
if not again and (waiting >= tonumber(ARGV[6]) or from_address >= tonumber(ARGV[7])) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
local ttl = math.max(1, tonumber(ARGV[4]) - now)
redis.call('PEXPIRE', KEYS[2], ttl, 'NX')
redis.call('PEXPIRE', KEYS[2], ttl, 'GT')
redis.call('PUBLISH', 'zajel:node:' .. target_node, ARGV[8])
return 1
"
    ))
});

/// KEYS: a code's pending requests. ARGV: requester, the node that must have made it (empty: any).
/// Removes the request and returns the address it came from, if it was waiting.
static PAIR_TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local request = redis.call('HGET', KEYS[1], ARGV[1])
if not request then return false end
local node, expires, address = string.match(request, '^(%S+) (%S+) (%S+)$')
if ARGV[2] ~= '' and node ~= ARGV[2] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return address
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

/// KEYS: a code's pending requests. Removes them all and returns the requesters.
static PAIRS_END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local requesters = redis.call('HKEYS', KEYS[1])
redis.call('DEL', KEYS[1])
return requesters
",
    )
});

/// KEYS: the phone's record, its link request. ARGV: web client, node, now, expires, the web client's
/// key, device name as JSON, the `link_request` delivery, dead nodes. Returns 1 when recorded (and the
/// phone pushed the delivery), 0 when the phone is not a live code or waits on another web client.
static LINK_REQUEST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LIVE_CODE}
local phone_node = live_code(redis.call('GET', KEYS[1]), 8)
if not phone_node then return 0 end
local now = tonumber(ARGV[3])
local waiting = redis.call('GET', KEYS[2])
if waiting then
  local web_client, node, expires = string.match(waiting, '^(%S+) (%S+) (%S+) ')
  if tonumber(expires) > now and web_client ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6],
  'PX', math.max(1, tonumber(ARGV[4]) - now))
redis.call('PUBLISH', 'zajel:node:' .. phone_node, ARGV[7])
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
            .arg(request.now)
            .arg(request.expires)
            .arg(request.address.to_string())
            .arg(request.max_pending)
            .arg(request.max_pending_from_address)
            .arg(encode_delivery(Delivery::Push, target, &request.incoming));
        self.add_dead_nodes(&mut invocation);
        let recorded: i64 = self.call(&invocation).await?;
        Ok(recorded == 1)
    }

    /// Takes the request from `requester` to `target` (made by `node`, if given), if it still waits.
    pub async fn take_pairing(
        &self,
        requester: &Name,
        target: &Name,
        node: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut invocation = PAIR_TAKE.key(keys::pairing_requests(target.as_str()));
        invocation
            .arg(requester.as_str())
            .arg(node.unwrap_or_default());
        let taken: Option<String> = self.call(&invocation).await?;
        Ok(taken.is_some())
    }

    /// Whether this node's request from `requester` to `target` still waits.
    pub async fn pairing_waits(&self, requester: &Name, target: &Name) -> Result<bool, StoreError> {
        let mut invocation = PAIR_WAITING.key(keys::pairing_requests(target.as_str()));
        invocation.arg(requester.as_str()).arg(&self.node);
        let waiting: i64 = self.call(&invocation).await?;
        Ok(waiting == 1)
    }

    /// Ends every request waiting for `code`; returns their requesters.
    pub async fn end_pairings_to(&self, code: &Name) -> Result<Vec<String>, StoreError> {
        let invocation = PAIRS_END.key(keys::pairing_requests(code.as_str()));
        self.call(&invocation).await
    }

    /// Records a web client's request to attach to `phone`, wherever it is, and pushes it the
    /// `link_request`. False: the phone is no live pairing code, or waits on another web client.
    pub async fn request_link(
        &self,
        phone: &Name,
        link: &PendingLink,
        now: Millis,
        expires: Millis,
        request: &ServerMessage,
    ) -> Result<bool, StoreError> {
        let mut invocation = LINK_REQUEST.key(keys::name(phone.as_str()));
        invocation
            .key(keys::link_request(phone.as_str()))
            .arg(link.web_client.as_str())
            .arg(&self.node)
            .arg(now)
            .arg(expires)
            .arg(link.web_client_key.as_str())
            .arg(serde_json::to_string(&link.device_name).expect("text serializes"))
            .arg(encode_delivery(Delivery::Push, phone.as_str(), request));
        self.add_dead_nodes(&mut invocation);
        let recorded: i64 = self.call(&invocation).await?;
        Ok(recorded == 1)
    }

    /// Takes the link request waiting for `phone` (made by `web_client`, if given).
    pub async fn take_link(
        &self,
        phone: &Name,
        web_client: Option<&Name>,
    ) -> Result<Option<PendingLink>, StoreError> {
        let mut invocation = LINK_TAKE.key(keys::link_request(phone.as_str()));
        invocation.arg(web_client.map_or("", Name::as_str));
        let taken: Option<String> = self.call(&invocation).await?;
        Ok(taken.as_deref().and_then(read_link))
    }
}

/// A link request as [`LINK_REQUEST`] stores it.
fn read_link(stored: &str) -> Option<PendingLink> {
    let mut parts = stored.splitn(5, ' ');
    let web_client = Name::try_from(parts.next()?).ok()?;
    let key = PairingKey::try_from(parts.nth(2)?.to_owned()).ok()?;
    let device_name = serde_json::from_str(parts.next()?).ok()?;
    Some(PendingLink {
        web_client,
        web_client_key: key,
        device_name,
    })
}
