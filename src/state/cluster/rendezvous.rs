//! The rendezvous registry in Redis. Each daily point and each hourly token is its own slot: a hash of
//! entries (peer → `node session key {relayId, deadDrop}`), a sorted set of its entries by expiry, and for
//! daily points a sorted set of the entries others can find (those with a dead drop). A registration
//! runs one script per point or token it names, all at once, and one on its address's budget first.
//!
//! A script looks at most `max_results` + 9 entries (the asker's own, and a few of dead nodes not reaped
//! yet, are passed over) and removes at most 16 expired ones: a crowded point costs what the reply
//! returns, not what the point holds. Keys expire with their latest entry, so points nobody renews
//! vanish by themselves.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use futures_util::future::try_join_all;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::holdings::Holding;
use super::{Cluster, StoreError, keys};
use crate::clock::Millis;
use crate::peer::{AddressGroup, SessionId};
use crate::protocol::Name;
use crate::protocol::message::{DeadDrop, LiveMatch};
use crate::registry::Found;

/// Removes up to 16 entries past their time (KEYS[1] entries, KEYS[2] expiry, KEYS[3] drops if any),
/// and decides what storing ARGV's entry would do: `new`, `replaced`, `kept` (another owner's entry
/// stays) or `full`. ARGV: now, expires, peer, node, session, key (`-` for none), value, max results,
/// max peers.
const STORE: &str = r"
local now = tonumber(ARGV[1])
local function forget(peer)
  redis.call('HDEL', KEYS[1], peer)
  for i = 2, #KEYS do redis.call('ZREM', KEYS[i], peer) end
end
for _, peer in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 16)) do
  forget(peer)
end
local function store()
  local status = 'new'
  local current = redis.call('HGET', KEYS[1], ARGV[3])
  if current then
    local node, session, key = string.match(current, '^(%S+) (%S+) (%S+) ')
    local expired = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[3]) or 0) <= now
    if expired then
      forget(ARGV[3])
    elseif (node == ARGV[4] and session == ARGV[5]) or (ARGV[6] ~= '-' and key == ARGV[6]) then
      status = 'replaced'
    else
      return 'kept'
    end
  end
  if status == 'new' and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[9]) then return 'full' end
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
  return status
end
-- Keys live as long as their latest entry: relative to Redis's clock, as entries are to the node's.
local function live_until(at)
  local ttl = math.max(1, tonumber(at) - now)
  for i = 1, #KEYS do
    redis.call('PEXPIRE', KEYS[i], ttl, 'NX')
    redis.call('PEXPIRE', KEYS[i], ttl, 'GT')
  end
end
";

/// KEYS: entries, expiry, drops of a daily point. ARGV: as `STORE`, then `1` if the entry has a dead
/// drop. Returns the status, then `peer, entry` of up to max-results other peers' drops.
static DAILY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{STORE}
local found = {{}}
local max_results = tonumber(ARGV[8])
for _, peer in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. now, '+inf', 'LIMIT', 0, max_results + 1)) do
  if peer ~= ARGV[3] and #found < max_results * 2 then
    local entry = redis.call('HGET', KEYS[1], peer)
    if entry then
      table.insert(found, peer)
      table.insert(found, entry)
    end
  end
end
local status = store()
if status == 'new' or status == 'replaced' then
  if ARGV[10] == '1' then
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
  else
    redis.call('ZREM', KEYS[3], ARGV[3])
  end
  live_until(ARGV[2])
end
table.insert(found, 1, status)
return found
"
    ))
});

/// KEYS: entries, expiry of an hourly token. ARGV: as `STORE`, then the dead nodes. Returns the status,
/// then `peer, entry` of up to max-results other live peers; entries of dead nodes met are removed.
static HOURLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{STORE}
local dead = {{}}
for i = 10, #ARGV do dead[ARGV[i]] = true end
local found = {{}}
local max_results = tonumber(ARGV[8])
for _, peer in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'LIMIT', 0, max_results + 9)) do
  if peer ~= ARGV[3] and #found < max_results * 2 then
    local entry = redis.call('HGET', KEYS[1], peer)
    if entry then
      local node = string.match(entry, '^(%S+) ')
      if dead[node] then
        forget(peer)
      else
        table.insert(found, peer)
        table.insert(found, entry)
      end
    end
  end
end
local status = store()
if status == 'new' or status == 'replaced' then live_until(ARGV[2]) end
table.insert(found, 1, status)
return found
"
    ))
});

/// KEYS: entries, expiry of an hourly token. ARGV: peer, node, session (empty: any of the node's).
/// Removes the entry if the session made it.
static FORGET_HOURLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return 0 end
local node, session = string.match(entry, '^(%S+) (%S+) ')
if node ~= ARGV[2] or (ARGV[3] ~= '' and session ~= ARGV[3]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
",
    )
});

/// KEYS: an address's budget. ARGV: now, the most entries it may hold, then `member, expires` pairs for
/// the entries a registration would make. Returns 0 (storing nothing) when they do not fit.
static SPEND_BUDGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 64)
if #stale > 0 then redis.call('ZREM', KEYS[1], unpack(stale)) end
local adding = 0
local latest = now
for i = 3, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not score or tonumber(score) <= now then adding = adding + 1 end
  latest = math.max(latest, tonumber(ARGV[i + 1]))
end
if redis.call('ZCARD', KEYS[1]) + adding > tonumber(ARGV[2]) then return 0 end
for i = 3, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], math.max(1, latest - now), 'NX')
redis.call('PEXPIRE', KEYS[1], math.max(1, latest - now), 'GT')
return 1
",
    )
});

/// KEYS: an address's budget. ARGV: members to take off it.
static REFUND_BUDGET: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('ZREM', KEYS[1], unpack(ARGV))"));

/// An entry's value past its owner: what lookups return.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryValue {
    relay_id: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_drop: Option<Arc<str>>,
}

/// Who stores an entry: where its session is, the key that owns it, and the address whose budget pays.
#[derive(Debug)]
pub struct EntryOwner<'a> {
    pub session: SessionId,
    pub key: Option<&'a str>,
    pub address: AddressGroup,
}

/// One registration as the cluster stores it.
#[derive(Debug)]
pub struct ClusterRegistration<'a> {
    pub peer_id: &'a Name,
    pub relay_id: &'a Arc<str>,
    pub daily_points: &'a [(Name, Option<Arc<str>>)],
    pub hourly_tokens: &'a [Name],
    pub owner: EntryOwner<'a>,
}

/// The address holds as many rendezvous entries as it may.
#[derive(Debug, PartialEq, Eq)]
pub struct AddressFull;

/// A peer found at an hourly token, with the node its session is on.
#[derive(Debug)]
pub struct LiveMatchAt {
    pub live_match: LiveMatch,
    pub node: String,
}

impl Cluster {
    /// Collects what others left at the points and tokens and stores the peer's entries, as
    /// [`crate::registry::RendezvousRegistry::register`] does on one node. Returns the reply's lists
    /// and, for each live match, the node to push `rendezvous_match` to.
    pub async fn register_rendezvous(
        &self,
        now: Millis,
        registration: &ClusterRegistration<'_>,
    ) -> Result<Result<(Found, Vec<String>), AddressFull>, StoreError> {
        let config = &self.rendezvous;
        let daily_expires = now.saturating_add(config.daily_ttl());
        let hourly_expires = now.saturating_add(config.hourly_ttl());
        if !self
            .spend_budget(now, registration, daily_expires, hourly_expires)
            .await?
        {
            return Ok(Err(AddressFull));
        }
        let owner = &registration.owner;
        let key = owner.key.unwrap_or("-");
        let value = |dead_drop: Option<Arc<str>>| {
            serde_json::to_string(&EntryValue {
                relay_id: registration.relay_id.clone(),
                dead_drop,
            })
            .expect("entries serialize")
        };
        let common =
            |invocation: &mut redis::ScriptInvocation<'_>, expires: Millis, value: String| {
                invocation
                    .arg(now)
                    .arg(expires)
                    .arg(registration.peer_id.as_str())
                    .arg(&self.node)
                    .arg(owner.session)
                    .arg(key)
                    .arg(value)
                    .arg(config.max_rendezvous_results)
                    .arg(config.max_peers_per_point);
            };
        let daily: Vec<_> = registration
            .daily_points
            .iter()
            .map(|(point, dead_drop)| {
                let [entries, expiry, drops] = keys::daily(point.as_str());
                let mut invocation = DAILY.key(entries);
                invocation.key(expiry).key(drops);
                common(&mut invocation, daily_expires, value(dead_drop.clone()));
                invocation.arg(if dead_drop.is_some() { "1" } else { "0" });
                invocation
            })
            .collect();
        let hourly: Vec<_> = registration
            .hourly_tokens
            .iter()
            .map(|token| {
                let [entries, expiry] = keys::hourly(token.as_str());
                let mut invocation = HOURLY.key(entries);
                invocation.key(expiry);
                common(&mut invocation, hourly_expires, value(None));
                self.add_dead_nodes(&mut invocation);
                invocation
            })
            .collect();
        let address = registration.owner.address.to_string();
        let holdings: Vec<_> = registration
            .hourly_tokens
            .iter()
            .map(|token| Holding::Hourly {
                token: token.as_str(),
                peer: registration.peer_id.as_str(),
                address: &address,
            })
            .collect();
        self.hold(&holdings).await?;
        let (daily, hourly) = futures_util::try_join!(
            try_join_all(
                daily
                    .iter()
                    .map(|invocation| self.call::<Vec<String>>(invocation))
            ),
            try_join_all(
                hourly
                    .iter()
                    .map(|invocation| self.call::<Vec<String>>(invocation))
            ),
        )?;

        let max_results = config.max_rendezvous_results;
        let mut found = Found::default();
        let mut seen = HashSet::new();
        for ((point, _), reply) in registration.daily_points.iter().zip(&daily) {
            for (peer, entry) in others(reply) {
                if found.dead_drops.len() < max_results
                    && let Some((peer_id, value, _)) = read_entry(peer, entry)
                    && let Some(dead_drop) = value.dead_drop
                    && seen.insert(peer_id.clone())
                {
                    found.dead_drops.push(DeadDrop {
                        peer_id,
                        dead_drop,
                        relay_id: value.relay_id,
                        meeting_point: point.clone(),
                    });
                }
            }
        }
        seen.clear();
        let mut nodes = Vec::new();
        for (token, reply) in registration.hourly_tokens.iter().zip(&hourly) {
            for (peer, entry) in others(reply) {
                if found.live_matches.len() < max_results
                    && let Some((peer_id, value, node)) = read_entry(peer, entry)
                    && seen.insert(peer_id.clone())
                {
                    found.live_matches.push(LiveMatch {
                        peer_id,
                        relay_id: value.relay_id,
                        meeting_point: token.clone(),
                    });
                    nodes.push(node.to_owned());
                }
            }
        }
        Ok(Ok((found, nodes)))
    }

    pub fn hourly_ttl(&self) -> Millis {
        self.rendezvous.hourly_ttl()
    }

    /// Stores again an hourly entry a live session made, after Redis lost it; it expires when it
    /// would have.
    #[allow(clippy::too_many_arguments)]
    pub async fn restore_hourly(
        &self,
        now: Millis,
        session: SessionId,
        address: AddressGroup,
        peer_id: &Name,
        token: &Name,
        relay_id: &Arc<str>,
        key: Option<&str>,
        expires: Millis,
    ) -> Result<(), StoreError> {
        let address_text = address.to_string();
        self.hold(&[Holding::Hourly {
            token: token.as_str(),
            peer: peer_id.as_str(),
            address: &address_text,
        }])
        .await?;
        let mut budget = SPEND_BUDGET.key(keys::address_entries(address));
        budget
            .arg(now)
            .arg(self.rendezvous.max_rendezvous_entries_per_ip)
            .arg(budget_member("h", token.as_str(), peer_id.as_str()))
            .arg(expires);
        let _: i64 = self.call(&budget).await?;
        let value = serde_json::to_string(&EntryValue {
            relay_id: relay_id.clone(),
            dead_drop: None,
        })
        .expect("entries serialize");
        let [entries, expiry] = keys::hourly(token.as_str());
        let mut store = HOURLY.key(entries);
        store
            .key(expiry)
            .arg(now)
            .arg(expires)
            .arg(peer_id.as_str())
            .arg(&self.node)
            .arg(session)
            .arg(key.unwrap_or("-"))
            .arg(value)
            .arg(0)
            .arg(self.rendezvous.max_peers_per_point);
        self.add_dead_nodes(&mut store);
        let _: Vec<String> = self.call(&store).await?;
        Ok(())
    }

    /// Spends the address's budget for the entries a registration would make.
    async fn spend_budget(
        &self,
        now: Millis,
        registration: &ClusterRegistration<'_>,
        daily_expires: Millis,
        hourly_expires: Millis,
    ) -> Result<bool, StoreError> {
        let mut invocation = SPEND_BUDGET.key(keys::address_entries(registration.owner.address));
        invocation
            .arg(now)
            .arg(self.rendezvous.max_rendezvous_entries_per_ip);
        let peer = registration.peer_id.as_str();
        for (point, _) in registration.daily_points {
            invocation
                .arg(budget_member("d", point.as_str(), peer))
                .arg(daily_expires);
        }
        for token in registration.hourly_tokens {
            invocation
                .arg(budget_member("h", token.as_str(), peer))
                .arg(hourly_expires);
        }
        let spent: i64 = self.call(&invocation).await?;
        Ok(spent == 1)
    }

    /// Removes a session's hourly entries, and gives their place back to its address's budget.
    pub async fn forget_hourly(
        &self,
        session: SessionId,
        address: AddressGroup,
        entries: &[(Name, Name)],
    ) -> Result<(), StoreError> {
        let address = address.to_string();
        let session = session.to_string();
        let forgets = entries.iter().map(|(peer_id, token)| {
            self.forget_hourly_of(
                &self.node,
                Some(&session),
                token.as_str(),
                peer_id.as_str(),
                &address,
            )
        });
        try_join_all(forgets).await?;
        let holdings: Vec<_> = entries
            .iter()
            .map(|(peer_id, token)| Holding::Hourly {
                token: token.as_str(),
                peer: peer_id.as_str(),
                address: &address,
            })
            .collect();
        self.unhold(&holdings).await
    }

    /// Removes the hourly entry of `peer` at `token` made by `node` (by its `session`, if given), and
    /// gives its place back to the budget of `address`.
    pub(super) async fn forget_hourly_of(
        &self,
        node: &str,
        session: Option<&str>,
        token: &str,
        peer: &str,
        address: &str,
    ) -> Result<(), StoreError> {
        let [entries, expiry] = keys::hourly(token);
        let mut forget = FORGET_HOURLY.key(entries);
        forget
            .key(expiry)
            .arg(peer)
            .arg(node)
            .arg(session.unwrap_or_default());
        let forgotten: i64 = self.call(&forget).await?;
        if forgotten == 1 {
            let mut refund = REFUND_BUDGET.key(keys::address_entries(address));
            refund.arg(budget_member("h", token, peer));
            let _: i64 = self.call(&refund).await?;
        }
        Ok(())
    }
}

/// An entry's place in its address's budget.
fn budget_member(kind: &str, point: &str, peer: &str) -> String {
    format!("{kind}:{point}:{peer}")
}

/// The `peer, entry` pairs after a script's status.
fn others(reply: &[String]) -> impl Iterator<Item = (&str, &str)> {
    reply
        .get(1..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|pair| (pair[0].as_str(), pair[1].as_str()))
}

/// A stored entry: its peer, its value, and the node of the session that made it.
fn read_entry<'a>(peer: &str, entry: &'a str) -> Option<(Name, EntryValue, &'a str)> {
    let mut parts = entry.splitn(4, ' ');
    let node = parts.next()?;
    let value = serde_json::from_str(parts.nth(2)?).ok()?;
    Some((Name::try_from(peer).ok()?, value, node))
}
