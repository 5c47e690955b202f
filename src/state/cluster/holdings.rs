//! What a node's sessions hold in Redis (names, hourly entries, pending requests), listed in a set of
//! the node's own, so that when the node dies a live node finds and removes all of it: the cluster
//! forgets a dead node's sessions within one node timeout and one reaping pass, whatever they held.
//!
//! Every removal checks, in the item's own slot, that the dead node still owns the item, so a name taken
//! over meanwhile by a live session stays with it.

use std::sync::LazyLock;

use redis::Script;
use tracing::info;

use super::{Cluster, StoreError, keys};
use crate::redact::redacted;

/// Members reaped per step, so that no call grows with what a node held.
const REAP_BATCH: usize = 256;
/// How long a node may take to reap another before a third tries.
const REAPER_LEASE_MS: u64 = 30_000;

/// KEYS: a name's record. ARGV: the dead node. Deletes the record if that node holds it.
static REAP_NAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local record = redis.call('GET', KEYS[1])
if record and string.match(record, '^(%S+) ') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// One thing a node's session holds in Redis.
#[derive(Clone, Copy, Debug)]
pub enum Holding<'a> {
    Name(&'a str),
    Hourly {
        token: &'a str,
        peer: &'a str,
        /// The address whose budget the entry is counted in, as text.
        address: &'a str,
    },
    Pairing {
        target: &'a str,
        requester: &'a str,
    },
    Link {
        phone: &'a str,
        web_client: &'a str,
    },
}

impl Holding<'_> {
    fn member(&self) -> String {
        match self {
            Self::Name(name) => format!("n {name}"),
            Self::Hourly {
                token,
                peer,
                address,
            } => format!("h {token} {peer} {address}"),
            Self::Pairing { target, requester } => format!("p {target} {requester}"),
            Self::Link { phone, web_client } => format!("l {phone} {web_client}"),
        }
    }
}

impl Cluster {
    /// Lists what this node's sessions now hold.
    pub(super) async fn hold(&self, holdings: &[Holding<'_>]) -> Result<(), StoreError> {
        self.change_holdings("SADD", holdings).await
    }

    /// Takes off the list what this node's sessions gave up.
    pub(super) async fn unhold(&self, holdings: &[Holding<'_>]) -> Result<(), StoreError> {
        self.change_holdings("SREM", holdings).await
    }

    async fn change_holdings(
        &self,
        command: &str,
        holdings: &[Holding<'_>],
    ) -> Result<(), StoreError> {
        if holdings.is_empty() {
            return Ok(());
        }
        let mut change = redis::cmd(command);
        change.arg(keys::node_holdings(&self.node));
        for holding in holdings {
            change.arg(holding.member());
        }
        let _: i64 = self.query(&change).await?;
        Ok(())
    }

    /// Removes what a dead node held, unless another node is doing it. Returns once all of it is gone
    /// and the node forgotten, or another node took the job.
    pub(super) async fn reap(&self, dead: &str) -> Result<(), StoreError> {
        let taken: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(keys::node_reaper(dead))
                    .arg(&self.node)
                    .arg("NX")
                    .arg("PX")
                    .arg(REAPER_LEASE_MS),
            )
            .await?;
        if taken.is_none() {
            return Ok(());
        }
        let holdings = keys::node_holdings(dead);
        let mut reaped = 0usize;
        loop {
            let members: Vec<String> = self
                .query(redis::cmd("SPOP").arg(&holdings).arg(REAP_BATCH))
                .await?;
            if members.is_empty() {
                break;
            }
            reaped += members.len();
            for member in &members {
                self.reap_one(dead, member).await?;
            }
        }
        let _: i64 = self
            .query(redis::cmd("SREM").arg(keys::nodes()).arg(dead))
            .await?;
        let _: i64 = self
            .query(redis::cmd("DEL").arg(keys::node_reaper(dead)))
            .await?;
        info!(node = %dead, reaped, "a dead node's holdings were removed");
        Ok(())
    }

    async fn reap_one(&self, dead: &str, member: &str) -> Result<(), StoreError> {
        let parts: Vec<&str> = member.split(' ').collect();
        match parts.as_slice() {
            ["n", name] => {
                let mut reap = REAP_NAME.key(keys::name(name));
                reap.arg(dead);
                let _: i64 = self.call(&reap).await?;
                self.unlist_relay(name, dead, None).await?;
            }
            ["h", token, peer, address] => {
                self.forget_hourly_of(dead, None, token, peer, address)
                    .await?;
            }
            ["p", target, requester] => {
                self.take_pairing_of(requester, target, dead).await?;
            }
            ["l", phone, web_client] => {
                self.take_link_of(phone, web_client).await?;
            }
            _ => tracing::warn!(member = %redacted(member), "an unreadable holding was skipped"),
        }
        Ok(())
    }
}
