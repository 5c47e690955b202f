//! The connection to Redis: one multiplexed connection (a single Redis) or a cluster connection (a Redis
//! Cluster, found by asking the server at the URL), shared by every operation of this node; whether Redis
//! can be reached now; and reconnection with backoff when it cannot.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::backoff::Backoff;

/// How long one request may wait for Redis before the node counts it as unreachable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection waits double from the first to the last, with jitter.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// A connection to a single Redis or to a Redis Cluster; cheap to clone, each clone shares the socket(s).
#[derive(Clone)]
pub(super) enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// Redis could not be reached (or did not answer in time): what needs it is answered `unavailable`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis is unreachable: {0}")]
    Unreachable(RedisError),
    /// Redis answered with an error: a script or a key holds what this code did not expect.
    #[error("redis refused a command: {0}")]
    Refused(RedisError),
}

impl From<RedisError> for StoreError {
    fn from(err: RedisError) -> Self {
        if err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_cluster_error()
            || err.is_unrecoverable_error()
        {
            Self::Unreachable(err)
        } else {
            Self::Refused(err)
        }
    }
}

/// This node's way to Redis.
pub(super) struct Link {
    client: Client,
    cluster: bool,
    current: Mutex<Option<Connection>>,
    available: AtomicBool,
    /// Wakes the reconnection loop.
    broken: Notify,
}

impl Link {
    /// Connects to the Redis at `url`; a Redis Cluster is recognised and used as one.
    pub async fn connect(url: &str) -> Result<Self, RedisError> {
        let client = Client::open(url)?;
        let mut probe = client
            .get_multiplexed_async_connection_with_config(&connection_config())
            .await?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut probe)
            .await?;
        let cluster = info.contains("cluster_enabled:1");
        let link = Self {
            client,
            cluster,
            current: Mutex::new(None),
            available: AtomicBool::new(false),
            broken: Notify::new(),
        };
        let connection = link.open().await?;
        link.restore(connection);
        Ok(link)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    async fn open(&self) -> Result<Connection, RedisError> {
        if self.cluster {
            let client =
                redis::cluster::ClusterClient::builder([self.client.get_connection_info().clone()])
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(1)
                    .build()?;
            Ok(Connection::Cluster(client.get_async_connection().await?))
        } else {
            Ok(Connection::Single(
                self.client
                    .get_multiplexed_async_connection_with_config(&connection_config())
                    .await?,
            ))
        }
    }

    fn restore(&self, connection: Connection) {
        *self.current.lock().expect("not poisoned") = Some(connection);
        self.available.store(true, Ordering::Release);
    }

    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Acquire)
    }

    /// The connection to use now, or an error when Redis is known to be unreachable.
    pub fn connection(&self) -> Result<Connection, StoreError> {
        self.current
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| {
                StoreError::Unreachable(RedisError::from((
                    redis::ErrorKind::Io,
                    "not connected to redis",
                )))
            })
    }

    /// Looks at the outcome of a request: an unreachable Redis marks the link broken (once), which wakes
    /// the reconnection loop.
    pub fn check<T>(&self, result: Result<T, RedisError>) -> Result<T, StoreError> {
        result.map_err(|err| {
            let err = StoreError::from(err);
            if matches!(err, StoreError::Unreachable(_)) {
                self.mark_broken();
            }
            err
        })
    }

    pub fn mark_broken(&self) {
        if self.available.swap(false, Ordering::AcqRel) {
            warn!("redis is unreachable; requests that need it are answered `unavailable`");
            *self.current.lock().expect("not poisoned") = None;
        }
        self.broken.notify_one();
    }

    /// Waits until the link is broken, then reconnects with backoff; returns once connected again.
    pub async fn reconnect_when_broken(&self) {
        loop {
            self.broken.notified().await;
            if !self.is_available() {
                break;
            }
        }
        let mut retry = backoff();
        loop {
            retry.wait().await;
            match self.open().await {
                Ok(connection) => {
                    self.restore(connection);
                    info!("redis is reachable again");
                    return;
                }
                Err(err) => tracing::debug!(error = %err, "redis still unreachable"),
            }
        }
    }
}

/// Waits between attempts to reach Redis.
pub(super) fn backoff() -> Backoff {
    Backoff::new(FIRST_RETRY, LAST_RETRY)
}

fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}
