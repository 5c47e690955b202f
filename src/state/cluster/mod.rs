//! Cluster mode: the registries every node shares live in Redis, and deliveries to a session on another
//! node go through Redis pub/sub to the node that holds it. This node keeps, in the state's thread, only
//! what its own sessions hold (to deliver their pushes, and to announce it again when Redis comes back).
//!
//! Every operation is one script on one hash slot (see `keys.rs`), so the same code runs on a single
//! Redis and on a Redis Cluster; `docs/cluster.md` lists the keys, the scripts and their cost.

mod holdings;
mod keys;
mod link;
pub mod names;
pub mod pairing;
mod relays;
pub mod rendezvous;
pub(super) mod sessions;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::{FromRedisValue, ScriptInvocation};
use tracing::{info, warn};

use crate::config::RendezvousConfig;
use crate::protocol::ServerMessage;
pub use link::StoreError;
use link::{Link, backoff};

/// How often a node says it lives, and reads which nodes died.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node that has not said it lives for this long is dead: its sessions' names are free, its hourly
/// tokens match no one, and a live node reaps what it held.
const NODE_TIMEOUT: Duration = Duration::from_secs(6);

/// This node's part of the cluster.
pub struct Cluster {
    link: Link,
    /// This node's id, new at every start: a node that restarts is a new node.
    node: String,
    /// Nodes announced but no longer alive, whose records count as free until they are reaped.
    dead: RwLock<Arc<[String]>>,
    rendezvous: RendezvousConfig,
    /// Set when Redis lost what this node's sessions hold; cleared once it is all announced again.
    announce_needed: AtomicBool,
    /// Whether this node's channel of deliveries is subscribed.
    subscribed: AtomicBool,
    /// The subscription made at start, until deliveries are received on it.
    subscription: std::sync::Mutex<Option<redis::aio::PubSub>>,
    /// Heartbeats run one at a time (on a timer, after reconnection, after resubscription).
    beating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the Redis at `url` (a single Redis or any node of a Redis Cluster).
    pub async fn connect(
        url: &str,
        rendezvous: &RendezvousConfig,
    ) -> Result<Self, redis::RedisError> {
        let link = Link::connect(url).await?;
        let node = format!("{:016x}", rand::random::<u64>());
        let mut pubsub = link.client().get_async_pubsub().await?;
        pubsub.subscribe(keys::node_channel(&node)).await?;
        info!(node = %node, redis_cluster = link.is_cluster(), "joined the cluster");
        Ok(Self {
            link,
            node,
            dead: RwLock::new(Arc::from([])),
            rendezvous: rendezvous.clone(),
            announce_needed: AtomicBool::new(false),
            subscribed: AtomicBool::new(true),
            subscription: std::sync::Mutex::new(Some(pubsub)),
            beating: tokio::sync::Mutex::new(()),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether Redis can be reached now, and deliveries to this node arrive.
    pub fn is_available(&self) -> bool {
        self.link.is_available() && self.subscribed.load(Ordering::Acquire)
    }

    /// Passes the nodes known dead to a script, as its last arguments.
    fn add_dead_nodes(&self, invocation: &mut ScriptInvocation<'_>) {
        let dead = self.dead.read().expect("not poisoned").clone();
        for node in dead.iter() {
            invocation.arg(node.as_str());
        }
    }

    /// Sends `message` as a push to the session holding `name` on `node`.
    pub async fn push_to(
        &self,
        node: &str,
        name: &str,
        message: &ServerMessage,
    ) -> Result<(), StoreError> {
        let delivery = names::encode_delivery(&names::Delivery::Push, name, message);
        let _: i64 = self
            .query(
                redis::cmd("PUBLISH")
                    .arg(keys::node_channel(node))
                    .arg(delivery),
            )
            .await?;
        Ok(())
    }

    /// Runs a script.
    async fn call<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.link.connection()?;
        self.link
            .check(invocation.invoke_async(&mut connection).await)
    }

    /// Runs a command.
    async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.link.connection()?;
        self.link.check(command.query_async(&mut connection).await)
    }

    /// Says this node lives and reads which nodes died. Returns whether this node had been given up for
    /// dead (or Redis lost its data): what its sessions hold must then be announced again.
    async fn heartbeat(&self) -> Result<bool, StoreError> {
        let alive_for = NODE_TIMEOUT.as_millis() as u64;
        let before: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(keys::node_alive(&self.node))
                    .arg("1")
                    .arg("PX")
                    .arg(alive_for)
                    .arg("GET"),
            )
            .await?;
        let _: i64 = self
            .query(redis::cmd("SADD").arg(keys::nodes()).arg(&self.node))
            .await?;
        let nodes: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(keys::nodes()))
            .await?;
        let alive: Vec<Option<String>> = self
            .query(
                redis::cmd("MGET").arg(
                    nodes
                        .iter()
                        .map(|node| keys::node_alive(node))
                        .collect::<Vec<_>>(),
                ),
            )
            .await?;
        let dead: Arc<[String]> = nodes
            .into_iter()
            .zip(alive)
            .filter(|(node, alive)| alive.is_none() && *node != self.node)
            .map(|(node, _)| node)
            .collect();
        let mut known = self.dead.write().expect("not poisoned");
        if *known != dead {
            info!(dead = ?dead, "nodes given up for dead");
        }
        *known = dead;
        Ok(before.is_none())
    }
}

impl super::SharedState {
    /// Keeps this node in the cluster until `shutdown`: heartbeats, deliveries from other nodes, and
    /// reconnection to Redis after it was lost, each followed by announcing again what this node's
    /// sessions hold.
    pub async fn run_cluster(&self, shutdown: tokio_util::sync::CancellationToken) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.keep_alive(cluster) => {}
            () = self.reconnect(cluster) => {}
            () = self.receive_deliveries(cluster) => {}
        }
    }

    async fn keep_alive(&self, cluster: &Cluster) {
        let mut ticks = tokio::time::interval(HEARTBEAT);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.beat(cluster).await;
        }
    }

    async fn reconnect(&self, cluster: &Cluster) {
        loop {
            cluster.link.reconnect_when_broken().await;
            self.beat(cluster).await;
        }
    }

    /// One heartbeat, while both Redis and this node's deliveries are up (announcing names whose
    /// deliveries would be lost helps no one). When the cluster had given this node up, or Redis lost its
    /// data, what this node's sessions hold is announced again; sessions that ended meanwhile are
    /// released; dead nodes are reaped.
    async fn beat(&self, cluster: &Cluster) {
        let _one_at_a_time = cluster.beating.lock().await;
        if !cluster.is_available() {
            return;
        }
        match cluster.heartbeat().await {
            Ok(true) => cluster.announce_needed.store(true, Ordering::Release),
            Ok(false) => {}
            Err(err) => {
                warn!(error = %err, "cluster heartbeat failed");
                return;
            }
        }
        self.release_unreleased().await;
        if cluster.announce_needed.load(Ordering::Acquire) {
            match self.announce_again(cluster).await {
                Ok(()) => cluster.announce_needed.store(false, Ordering::Release),
                Err(err) => {
                    warn!(error = %err, "announcing this node's holdings again failed; trying again at the next heartbeat")
                }
            }
        }
        let dead = cluster.dead.read().expect("not poisoned").clone();
        for node in dead.iter() {
            if let Err(err) = cluster.reap(node).await {
                warn!(error = %err, node = %node, "reaping a dead node failed; trying again at the next heartbeat");
            }
        }
    }

    /// Delivers what other nodes send this node's sessions, subscribing again (with backoff) whenever
    /// the subscription is lost, and beating at once when it is back.
    async fn receive_deliveries(&self, cluster: &Cluster) {
        let channel = keys::node_channel(&cluster.node);
        let mut retry = backoff();
        loop {
            let at_start = cluster.subscription.lock().expect("not poisoned").take();
            let subscribed = async {
                if let Some(pubsub) = at_start {
                    return Ok(pubsub);
                }
                let mut pubsub = cluster.link.client().get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match subscribed.await {
                Ok(mut pubsub) => {
                    retry.reset();
                    cluster.subscribed.store(true, Ordering::Release);
                    self.beat(cluster).await;
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        match names::decode_delivery(message.get_payload_bytes()) {
                            Some((delivery, name, message)) => {
                                self.deliver_here(name, delivery, message)
                            }
                            None => warn!("an unreadable delivery from the cluster was dropped"),
                        }
                    }
                    cluster.subscribed.store(false, Ordering::Release);
                    warn!("this node's deliveries were cut off; subscribing again");
                }
                Err(err) => {
                    tracing::debug!(error = %err, "cannot subscribe to this node's deliveries yet")
                }
            }
            retry.wait().await;
        }
    }
}
