//! zajel-signal: the signaling server for Zajel. Peers find relays and each other here, over WebTransport,
//! raw QUIC and WebSocket (JSON or CBOR), with the registries held in memory.
//!
//! Data flows one way: transport → session → shared state → registries; pushes flow back through one
//! bounded queue per session. [`Server`] wires the pieces together; tests and benchmarks start it through
//! this library.

pub mod admission;
pub mod backoff;
pub mod buffers;
pub mod clock;
pub mod config;
pub mod daily_store;
pub mod data_dir;
pub mod directory;
pub mod identity;
pub mod metrics;
pub mod peer;
pub mod protocol;
pub mod push;
pub mod rate;
pub mod redact;
pub mod registry;
pub mod session;
pub mod state;
pub mod tls;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;

use admission::Admissions;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use daily_store::DailyStore;
use data_dir::DataDir;
use directory::{Directory, LiveCounts};
use identity::{ServerIdentity, ServerKey};
use metrics::{Introduction, Metrics};
use session::Sessions;
use state::SharedState;
use state::cluster::Cluster;
use tls::{CertificateSource, Certificates, Refreshed};
use transport::TransportContext;
use transport::status::Limits;

/// How long shutdown waits for the daily store to write what is queued and close.
const STORE_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often pairing timers are checked: warnings and timeouts are due to the second.
const PAIRING_TICK: Duration = Duration::from_secs(1);
/// How often the certificate is checked for renewal or changed files.
const CERTIFICATE_CHECK: Duration = Duration::from_secs(30);
/// How often freed memory is handed back to the system.
const GIVE_BACK_MEMORY: Duration = Duration::from_secs(10);

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
    #[error(transparent)]
    DataDir(#[from] data_dir::DataDirError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    DailyStore(#[from] daily_store::StoreError),
    #[error("cannot reach redis at {url}: {source}")]
    Redis {
        url: String,
        source: redis::RedisError,
    },
}

/// A bound server, ready to run.
pub struct Server {
    context: Arc<TransportContext>,
    ws_listener: TcpListener,
    ws_tls: Option<TlsAcceptor>,
    quic_endpoint: wtransport::quinn::Endpoint,
    sweep_interval: Duration,
    daily_store_closed: Option<tokio::sync::oneshot::Receiver<()>>,
    directory: Option<Directory>,
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
        let limits = Limits::of(&config);
        let Config {
            storage,
            cluster,
            listen,
            tls,
            identity,
            directory,
            transport,
            admission,
            sessions,
            rendezvous,
            pairing,
            ..
        } = config;
        let data_dir = DataDir::open(&storage.data_dir)?;
        let server_key = ServerKey::load_or_create(&data_dir)?;
        let certificates = Certificates::load(CertificateSource::from_config(&tls, &data_dir))?;
        let ws_tls = listen.ws_tls.then(|| {
            TlsAcceptor::from(Arc::new(certificates.server_config(false, &[b"http/1.1"])))
        });
        let ws_listener = TcpListener::bind(listen.ws_listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: listen.ws_listen,
                source,
            })?;
        let quic_endpoint = transport::quic::bind(listen.quic_listen, &certificates, &transport)
            .map_err(|source| StartError::Bind {
                addr: listen.quic_listen,
                source,
            })?;
        let (state, daily_store_closed) = match &cluster.redis_url {
            Some(url) => {
                let cluster = Cluster::connect(url, &rendezvous).await.map_err(|source| {
                    StartError::Redis {
                        url: url.clone(),
                        source,
                    }
                })?;
                let state = SharedState::clustered(clock.clone(), &rendezvous, &pairing, cluster);
                (state, None)
            }
            None => {
                let daily_store = DailyStore::open(&data_dir, clock.now())?;
                let state = SharedState::new(
                    clock.clone(),
                    &rendezvous,
                    &pairing,
                    daily_store.store,
                    daily_store.restored,
                );
                (state, Some(daily_store.closed))
            }
        };
        let identity = ServerIdentity::new(&identity, &server_key);
        let directory =
            Directory::from_config(&directory, &identity, server_key.public_key_base64());
        let sessions = Sessions::new(state, Admissions::new(admission, clock), sessions, identity);
        let context = Arc::new(TransportContext::new(
            sessions,
            certificates,
            transport,
            limits,
        ));
        Ok(Self {
            context,
            ws_listener,
            ws_tls,
            quic_endpoint,
            sweep_interval: rendezvous.sweep_interval(),
            daily_store_closed,
            directory,
        })
    }

    /// The bound WebSocket/HTTP address (useful with port 0).
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound UDP address of QUIC and WebTransport.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    /// What the server counts for Prometheus; readable after it stopped.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.context.sessions.metrics()
    }

    /// The certificate every TLS endpoint presents.
    pub fn certificates(&self) -> &Arc<Certificates> {
        &self.context.certificates
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
            quic_endpoint,
            sweep_interval,
            daily_store_closed,
            directory,
        } = self;
        info!(
            addr = %ws_listener.local_addr().expect("bound"),
            tls = ws_tls.is_some(),
            server_id = %context.sessions.identity().server_id,
            "serving WebSocket and HTTP"
        );
        info!(
            quic_addr = %quic_endpoint.local_addr().expect("bound"),
            certificate = ?context.certificates.source(),
            sha256 = %BASE64.encode(context.certificates.sha256()),
            "serving WebTransport (h3) and QUIC (zajel/1)"
        );
        let state = context.sessions.state().clone();
        let sessions = context.sessions.clone();
        let certificates = context.certificates.clone();
        context
            .tasks
            .spawn(every(sweep_interval, context.shutdown.clone(), {
                let state = state.clone();
                async move || sweep_expired(&state).await
            }));
        context.tasks.spawn(every(
            PAIRING_TICK,
            context.shutdown.clone(),
            // A failed run is logged by the state; the next tick tries again.
            async move || {
                if let Ok(run) = state.run_pairing_timers().await {
                    let metrics = sessions.metrics();
                    metrics.introductions_timed_out(Introduction::Pair, run.pairs_timed_out);
                    metrics.introductions_timed_out(Introduction::Link, run.links_timed_out);
                }
            },
        ));
        context.tasks.spawn(every(
            CERTIFICATE_CHECK,
            context.shutdown.clone(),
            async move || refresh_certificates(&certificates),
        ));
        context.tasks.spawn(every(
            GIVE_BACK_MEMORY,
            context.shutdown.clone(),
            async || give_back_freed_memory(),
        ));
        context.tasks.spawn({
            let state = context.sessions.state().clone();
            let shutdown = context.shutdown.clone();
            async move { state.run_cluster(shutdown).await }
        });
        if let Some(directory) = directory {
            let sessions = context.sessions.clone();
            let counts = move || {
                let state = sessions.state().counts();
                LiveCounts {
                    connections: sessions.open_count(),
                    relay_connections: state.relay_ids,
                    signaling_connections: state.pairing_codes,
                    active_codes: state.pairing_codes,
                }
            };
            context
                .tasks
                .spawn(directory.run(counts, context.shutdown.clone()));
        }
        context
            .tasks
            .spawn(transport::quic::serve(quic_endpoint, context.clone()));
        transport::http::serve(ws_listener, ws_tls, context.clone()).await;
        let drain_time = context.config.drain_time();
        info!(
            sessions = context.sessions.open_count(),
            drain_secs = drain_time.as_secs(),
            "draining: every session is told to go"
        );
        context.tasks.close();
        if tokio::time::timeout(drain_time, context.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                sessions = context.sessions.open_count(),
                "some sessions did not close within the drain time"
            );
        }
        // The last handles to the state go with the context; the store then writes what is queued and
        // closes its file.
        drop(context);
        if let Some(closed) = daily_store_closed
            && tokio::time::timeout(STORE_CLOSE_GRACE, closed)
                .await
                .is_err()
        {
            warn!("the daily store did not close in time");
        }
        info!("stopped");
    }
}

/// Runs `tick` every `period` until shutdown; a late tick delays the next rather than bunching them.
async fn every(period: Duration, shutdown: CancellationToken, mut tick: impl AsyncFnMut()) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => tick().await,
        }
    }
}

/// Replaces the certificate when it is due (a development certificate near expiry, changed PEM files).
/// New handshakes get the new one; established sessions keep theirs.
fn refresh_certificates(certificates: &Certificates) {
    match certificates.refresh(std::time::SystemTime::now()) {
        Ok(Refreshed::Replaced) => info!(
            sha256 = %BASE64.encode(certificates.sha256()),
            "certificate replaced"
        ),
        Ok(Refreshed::NextMade) => info!(
            sha256s = ?certificates.sha256s().iter().map(|hash| BASE64.encode(hash)).collect::<Vec<_>>(),
            "next certificate made; /cert-hash lists both until it takes over"
        ),
        Ok(Refreshed::Unchanged) => {}
        Err(err) => warn!(error = %err, "keeping the current certificate"),
    }
}

/// Hands memory freed since the last time back to the system. glibc's allocator keeps freed memory in
/// its arenas for reuse; after a burst of sessions has left, that would keep the process as large as
/// at the burst.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own arenas to the system; it takes
    // no pointer and has no precondition.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Removes every expired rendezvous entry, in small batches, letting sessions run between them.
async fn sweep_expired(state: &SharedState) {
    let mut removed = 0;
    // One batch per operation: sessions' operations run between batches.
    while let Ok(swept) = state.sweep_expired_batch().await {
        removed += swept.removed;
        if swept.done {
            break;
        }
    }
    if removed > 0 {
        tracing::debug!(removed, "swept expired rendezvous entries");
    }
}
