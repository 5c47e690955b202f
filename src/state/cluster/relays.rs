//! The relay registry in Redis: one hash of listed relays (id → `node session max load key-as-JSON`) and
//! one set of the ids under half load, both in the `{relays}` slot. Picking relays samples the set
//! (`SRANDMEMBER`), so it costs what it returns, not how many relays there are; relays of dead nodes met
//! on the way are removed then.

use std::sync::{Arc, LazyLock};

use rand::seq::SliceRandom;
use redis::Script;

use super::{Cluster, StoreError, keys};
use crate::peer::SessionId;
use crate::protocol::Name;
use crate::protocol::message::RelayInfo;

/// The sampling shared by the scripts that list relays. ARGV from `first_dead` on are the dead nodes.
const SAMPLE: &str = r"
local function sample(exclude, count, first_dead)
  local dead = {}
  for i = first_dead, #ARGV do dead[ARGV[i]] = true end
  local found = {}
  -- Eight more than asked for: the asker itself, and relays of dead nodes not reaped yet.
  local ids = redis.call('SRANDMEMBER', KEYS[2], count + 8)
  for _, id in ipairs(ids) do
    if #found >= count * 4 then break end
    local record = redis.call('HGET', KEYS[1], id)
    if not record then
      redis.call('SREM', KEYS[2], id)
    else
      local node, session, max, load, key = string.match(record, '^(%S+) (%S+) (%S+) (%S+) (.*)$')
      if dead[node] then
        redis.call('SREM', KEYS[2], id)
        redis.call('HDEL', KEYS[1], id)
      elseif id ~= exclude then
        table.insert(found, id)
        table.insert(found, max)
        table.insert(found, load)
        table.insert(found, key)
      end
    end
  end
  return found
end
";

/// KEYS: relays, open relays. ARGV: id, node, session, max connections, key as JSON, count, dead nodes.
static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{SAMPLE}
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' 0 ' .. ARGV[5])
redis.call('SADD', KEYS[2], ARGV[1])
return sample(ARGV[1], tonumber(ARGV[6]), 7)
"
    ))
});

/// KEYS: relays, open relays. ARGV: exclude, count, dead nodes.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{SAMPLE}
return sample(ARGV[1], tonumber(ARGV[2]), 3)
"
    ))
});

/// KEYS: relays, open relays. ARGV: id, node, session, connected count. Only the session that listed the
/// relay changes it.
static UPDATE_LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
local node, session, max, load, key = string.match(record, '^(%S+) (%S+) (%S+) (%S+) (.*)$')
if node ~= ARGV[2] or session ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], node .. ' ' .. session .. ' ' .. max .. ' ' .. ARGV[4] .. ' ' .. key)
if tonumber(ARGV[4]) * 2 < tonumber(max) then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
",
    )
});

/// KEYS: relays, open relays. ARGV: id, node, session (empty: any of the node's).
static UNREGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
local node, session = string.match(record, '^(%S+) (%S+) ')
if node ~= ARGV[2] or (ARGV[3] ~= '' and session ~= ARGV[3]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
",
    )
});

impl Cluster {
    /// Lists (again) the session's relay and returns up to `count` other relays under half load.
    pub async fn register_relay(
        &self,
        session: SessionId,
        peer_id: &Name,
        max_connections: u32,
        public_key: Option<&Arc<str>>,
        count: usize,
    ) -> Result<Vec<RelayInfo>, StoreError> {
        let mut invocation = on_relays(&REGISTER);
        invocation
            .arg(peer_id.as_str())
            .arg(&self.node)
            .arg(session)
            .arg(max_connections.max(1))
            .arg(serde_json::to_string(&public_key).expect("text serializes"))
            .arg(count);
        self.add_dead_nodes(&mut invocation);
        let found: Vec<String> = self.call(&invocation).await?;
        Ok(pick(found, count))
    }

    /// Up to `count` relays under half load, never `exclude`, in a fresh random order.
    pub async fn list_relays(
        &self,
        exclude: &Name,
        count: usize,
    ) -> Result<Vec<RelayInfo>, StoreError> {
        let mut invocation = on_relays(&LIST);
        invocation.arg(exclude.as_str()).arg(count);
        self.add_dead_nodes(&mut invocation);
        let found: Vec<String> = self.call(&invocation).await?;
        Ok(pick(found, count))
    }

    pub async fn update_load(
        &self,
        session: SessionId,
        peer_id: &Name,
        connected_count: u32,
    ) -> Result<(), StoreError> {
        let mut invocation = on_relays(&UPDATE_LOAD);
        invocation
            .arg(peer_id.as_str())
            .arg(&self.node)
            .arg(session)
            .arg(connected_count);
        let _: i64 = self.call(&invocation).await?;
        Ok(())
    }

    pub async fn unregister_relay(
        &self,
        session: SessionId,
        peer_id: &str,
    ) -> Result<(), StoreError> {
        self.unlist_relay(peer_id, &self.node, Some(session)).await
    }

    /// Takes off the list the relay `peer_id` of `node` (of its `session`, if given).
    pub(super) async fn unlist_relay(
        &self,
        peer_id: &str,
        node: &str,
        session: Option<SessionId>,
    ) -> Result<(), StoreError> {
        let mut invocation = on_relays(&UNREGISTER);
        invocation.arg(peer_id).arg(node).arg(
            session
                .map(|session| session.to_string())
                .unwrap_or_default(),
        );
        let _: i64 = self.call(&invocation).await?;
        Ok(())
    }
}

/// `script` on the relay registry's two keys.
fn on_relays(script: &Script) -> redis::ScriptInvocation<'_> {
    let [relays, open] = keys::relays();
    let mut invocation = script.key(relays);
    invocation.key(open);
    invocation
}

/// The relays of a sample (flattened `id max load key` quadruples), shuffled, at most `count`.
fn pick(found: Vec<String>, count: usize) -> Vec<RelayInfo> {
    let mut relays: Vec<RelayInfo> = found
        .chunks_exact(4)
        .filter_map(|relay| {
            let peer_id = Name::try_from(relay[0].as_str()).ok()?;
            let max: f64 = relay[1].parse().ok()?;
            let load: f64 = relay[2].parse().ok()?;
            let public_key: Option<String> = serde_json::from_str(&relay[3]).ok()?;
            Some(RelayInfo {
                peer_id,
                public_key: public_key.map(Arc::from),
                capacity: load / max,
            })
        })
        .collect();
    relays.shuffle(&mut rand::rng());
    relays.truncate(count);
    relays
}
