//! zajel-signal: the signaling server for Zajel. Peers find relays and each other here, over WebSocket
//! (JSON or CBOR), with the registries held in memory.
//!
//! Data flows one way: transport → session → registries; pushes flow back through one bounded queue per
//! session. [`Server`] wires the pieces together; tests and benchmarks start it through this library.

pub mod clock;
pub mod config;
pub mod directory;
pub mod hub;
pub mod protocol;
pub mod registry;
pub mod session;
pub mod tls;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;
pub use hub::Hub;

use hub::Settings;
use transport::TransportContext;

/// How long shutdown waits for sessions to finish their closing handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A bound server, ready to run.
pub struct Server {
    context: Arc<TransportContext>,
    ws_listener: TcpListener,
    ws_tls: Option<TlsAcceptor>,
    sweep_interval: Duration,
}

impl Server {
    /// Binds the listeners of `config`, with the system clock.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        Self::bind_with_clock(config, Arc::new(SystemClock::new())).await
    }

    /// Binds the listeners of `config`; the registries read time from `clock`.
    pub async fn bind_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        config.validate()?;
        let ws_tls = if config.ws_tls {
            let server_config = tls::load_server_config(&config.tls_cert, &config.tls_key)?;
            Some(TlsAcceptor::from(server_config))
        } else {
            None
        };
        let ws_listener = TcpListener::bind(config.ws_listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.ws_listen,
                source,
            })?;
        let hub = Hub::new(Settings::from_config(&config), clock);
        let context = Arc::new(TransportContext {
            hub,
            max_message_size: config.max_message_size,
            idle_timeout: config.idle_timeout(),
            handshake_timeout: config.handshake_timeout(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        Ok(Self {
            context,
            ws_listener,
            ws_tls,
            sweep_interval: config.sweep_interval(),
        })
    }

    /// The bound WebSocket/HTTP address (useful with port 0).
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn hub(&self) -> &Hub {
        &self.context.hub
    }

    /// Cancelling this token shuts the server down: listeners stop and sessions are closed.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.context.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then closes every session.
    pub async fn run(self) {
        let Self {
            context,
            ws_listener,
            ws_tls,
            sweep_interval,
        } = self;
        info!(
            addr = %ws_listener.local_addr().expect("bound"),
            tls = ws_tls.is_some(),
            server_id = %context.hub.settings().server_id,
            "serving WebSocket and HTTP"
        );
        context.tasks.spawn(sweep_expired(
            context.hub.clone(),
            sweep_interval,
            context.shutdown.clone(),
        ));
        transport::http::serve(ws_listener, ws_tls, context.clone()).await;
        context.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, context.tasks.wait())
            .await
            .is_err()
        {
            warn!("some sessions did not close in time");
        }
        info!("stopped");
    }
}

/// The one background task that removes expired rendezvous entries.
async fn sweep_expired(hub: Hub, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                let mut removed = 0;
                loop {
                    let swept = hub.sweep_expired_batch();
                    removed += swept.removed;
                    if swept.done {
                        break;
                    }
                    // Let sessions run between batches.
                    tokio::task::yield_now().await;
                }
                if removed > 0 {
                    tracing::debug!(removed, "swept expired rendezvous entries");
                }
            }
        }
    }
}
