//! The server's configuration, from flags, environment variables and an optional TOML file.
//!
//! Precedence: a flag, then its environment variable, then the file, then the built-in default. Every
//! default lives in exactly one place: the `default_value` of its flag. Each component has its own
//! section (a struct flattened into [`Config`]) and is handed that section as it is; file keys stay flat,
//! as the flags are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Serialize};

use crate::clock::{Millis, duration_millis};

#[derive(Clone, Debug, PartialEq, Parser, Serialize, Deserialize)]
#[command(name = "zajel-signal", version, about = "Signaling server for Zajel")]
pub struct Config {
    /// TOML file with any of the settings below (keys as the flags, with underscores).
    #[arg(long, env = "ZAJEL_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    #[serde(flatten)]
    pub storage: StorageConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub cluster: ClusterConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub listen: ListenConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub tls: TlsConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub identity: IdentityConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub directory: DirectoryConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub transport: TransportConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub admission: AdmissionConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub sessions: SessionConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub rendezvous: RendezvousConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub pairing: PairingConfig,

    #[command(flatten)]
    #[serde(flatten)]
    pub logging: LoggingConfig,
}

/// What the log looks like. Levels and targets come from `RUST_LOG` [default: info].
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Logging")]
pub struct LoggingConfig {
    /// `text`: one line per event; `json`: one JSON object per line (timestamp, level, fields, the
    /// spans it happened in), for log collectors.
    #[arg(long, env = "ZAJEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    #[serde(default)]
    pub log_format: LogFormat,

    /// Log pairing codes, peer ids and client addresses in clear (otherwise each is written as a short
    /// keyed hash, the same for the same value while the process runs).
    #[arg(long, env = "ZAJEL_LOG_IDS")]
    #[serde(default)]
    pub log_ids: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Many nodes sharing one set of registries.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterConfig {
    /// Redis (7 or later, or Valkey) that the registries of every node are kept in, as
    /// `redis://[user:password@]host:port[/db]`; any node of a Redis Cluster will do. Without it, this
    /// server runs alone with its registries in memory.
    #[arg(long, env = "ZAJEL_REDIS_URL")]
    pub redis_url: Option<String>,
}

/// What the server keeps across restarts.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Storage")]
pub struct StorageConfig {
    /// Directory for what survives a restart: the server's identity key, its development certificate,
    /// and (without --redis-url) the daily points and dead drops; created at start.
    #[arg(long, env = "ZAJEL_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Listening")]
pub struct ListenConfig {
    /// TCP address for WebSocket sessions and the HTTP routes (/health, /ready, /stats, /metrics,
    /// /status, /cert-hash).
    #[arg(long, env = "ZAJEL_WS_LISTEN", default_value = "0.0.0.0:8080")]
    pub ws_listen: SocketAddr,

    /// UDP address for WebTransport (ALPN h3) and raw QUIC (ALPN zajel/1); [::] takes IPv4 too.
    #[arg(long, env = "ZAJEL_QUIC_LISTEN", default_value = "[::]:4433")]
    pub quic_listen: SocketAddr,

    /// Serve wss:// and https:// on the TCP port, with the same certificate as QUIC.
    #[arg(long, env = "ZAJEL_WS_TLS")]
    pub ws_tls: bool,
}

/// The certificate of every TLS endpoint.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Certificates")]
pub struct TlsConfig {
    /// PEM certificate chain [default: certs/cert.pem if it and certs/key.pem exist, else a
    /// development certificate made at start].
    #[arg(long, env = "ZAJEL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) [default: certs/key.pem, with certs/cert.pem].
    #[arg(long, env = "ZAJEL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Extra host names (comma-separated) for the development certificate, which always names
    /// localhost, 127.0.0.1 and ::1.
    #[arg(long, env = "ZAJEL_CERT_HOSTS", value_delimiter = ',')]
    #[serde(default)]
    pub cert_hosts: Vec<String>,
}

/// How this server introduces itself to clients.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Identity")]
pub struct IdentityConfig {
    /// This server's id in `server_info`, `registered` and /health [default: `ed25519:` and the public
    /// key of the identity key in the data directory].
    #[arg(long, env = "ZAJEL_SERVER_ID")]
    pub server_id: Option<String>,

    /// The public endpoint announced in `server_info` and to the bootstrap directory: the `wss://` URL
    /// of the WebSocket listener as clients reach it [default: null].
    #[arg(long, env = "ZAJEL_ENDPOINT")]
    pub endpoint: Option<String>,

    /// The region announced in `server_info` and to the bootstrap directory [default: null; "unknown"
    /// to the directory].
    #[arg(long, env = "ZAJEL_REGION")]
    pub region: Option<String>,
}

/// Being listed in the Zajel bootstrap directory, where the apps find servers.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Bootstrap directory")]
pub struct DirectoryConfig {
    /// The Zajel bootstrap directory (`https://`) to list this server in: registered at start, a
    /// heartbeat with live counts every --bootstrap-heartbeat-secs, unregistered at shutdown; needs
    /// --endpoint [default: not listed].
    #[arg(long, env = "ZAJEL_BOOTSTRAP_URL")]
    pub bootstrap_url: Option<String>,

    /// Secret the directory expects, sent as `Authorization: Bearer <secret>` with every registration,
    /// heartbeat and unregistration (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "ZAJEL_BOOTSTRAP_SECRET", hide_env_values = true)]
    pub bootstrap_secret: Option<String>,

    /// How often the directory is told that this server lives, in seconds (1 to 120: the apps keep
    /// servers seen in the last two minutes).
    #[arg(long, env = "ZAJEL_BOOTSTRAP_HEARTBEAT_SECS", default_value_t = 60)]
    pub bootstrap_heartbeat_secs: u64,

    /// Allow an `http://` directory and an endpoint that is not `wss://`/`https://` or is a loopback
    /// address: for tests only.
    #[arg(long, env = "ZAJEL_BOOTSTRAP_ALLOW_INSECURE")]
    pub bootstrap_allow_insecure: bool,
}

/// Framing and timing shared by the three transports.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Transports")]
pub struct TransportConfig {
    /// Largest accepted message, in bytes (1 KiB to 16 MiB).
    #[arg(long, env = "ZAJEL_MAX_MESSAGE_SIZE", default_value_t = 262_144)]
    pub max_message_size: usize,

    /// A session with no frame from its client (a WebSocket Pong counts; on QUIC any packet) for this
    /// long is closed, in seconds.
    #[arg(long, env = "ZAJEL_IDLE_TIMEOUT_SECS", default_value_t = 90)]
    pub idle_timeout_secs: u64,

    /// How often the server sends every session a keep-alive (a WebSocket Ping frame, a QUIC PING), in
    /// seconds; shorter than the idle timeout, so that clients that answer on their own stay connected.
    #[arg(long, env = "ZAJEL_PING_INTERVAL_SECS", default_value_t = 25)]
    pub ping_interval_secs: u64,

    /// Time allowed for a connection's TLS or QUIC handshake and its HTTP request head, in seconds.
    #[arg(long, env = "ZAJEL_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10)]
    pub handshake_timeout_secs: u64,

    /// At SIGTERM or SIGINT the server stops accepting and tells every session to go (WebSocket close
    /// 1001, QUIC application close 0 "shutting down", WebTransport the same in its session's close
    /// capsule, then on its connection); it waits this long, in seconds, for their closing handshakes,
    /// then exits. A second signal exits at once.
    #[arg(long, env = "ZAJEL_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,

    /// Origins (comma-separated) allowed to open WebTransport sessions; others get 403, and requests
    /// without an Origin (non-browser clients) are allowed [default: any].
    #[arg(long, env = "ZAJEL_WEBTRANSPORT_ORIGINS", value_delimiter = ',')]
    #[serde(default)]
    pub webtransport_origins: Vec<String>,
}

/// How many sessions the server takes.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Admission")]
pub struct AdmissionConfig {
    /// Most concurrent sessions on this server.
    #[arg(long, env = "ZAJEL_MAX_SESSIONS", default_value_t = 100_000)]
    pub max_sessions: usize,

    /// Most concurrent sessions from one address (an IPv4 address, or an IPv6 /64).
    #[arg(long, env = "ZAJEL_MAX_SESSIONS_PER_IP", default_value_t = 1024)]
    pub max_sessions_per_ip: usize,

    /// Most connections in their handshake at once (TLS, QUIC, HTTP head, WebSocket upgrade).
    #[arg(long, env = "ZAJEL_MAX_HANDSHAKES", default_value_t = 4096)]
    pub max_handshakes: usize,

    /// Most connections from one address in their handshake at once.
    #[arg(long, env = "ZAJEL_MAX_HANDSHAKES_PER_IP", default_value_t = 64)]
    pub max_handshakes_per_ip: usize,

    /// Past this many handshakes in progress, a QUIC client must prove its address (a Retry) before
    /// its handshake begins.
    #[arg(long, env = "ZAJEL_HANDSHAKES_BEFORE_RETRY", default_value_t = 256)]
    pub handshakes_before_retry: usize,

    /// Messages the sessions of one address may send per minute, together (and at once), on top of each
    /// session's own rate; past it their messages get `rate_limited`.
    #[arg(long, env = "ZAJEL_MESSAGES_PER_MINUTE_PER_IP", default_value_t = 6000)]
    pub messages_per_minute_per_ip: u32,

    /// Rendezvous entries the sessions of one address may register per minute, together (and at once);
    /// past it their registrations get `rate_limited`.
    #[arg(
        long,
        env = "ZAJEL_RENDEZVOUS_ENTRIES_PER_MINUTE_PER_IP",
        default_value_t = 20_000
    )]
    pub rendezvous_entries_per_minute_per_ip: u32,
}

/// What one session may send and have queued.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Sessions")]
pub struct SessionConfig {
    /// Pushes queued for a session that does not read; past this the session is closed as too slow.
    #[arg(long, env = "ZAJEL_PUSH_QUEUE", default_value_t = 1024)]
    pub push_queue: usize,

    /// Memory pushes queued for one session may hold (forwarded payloads mostly), in bytes; past this
    /// the session is closed as too slow too.
    #[arg(long, env = "ZAJEL_PUSH_QUEUE_BYTES", default_value_t = 8 << 20)]
    pub push_queue_bytes: usize,

    /// Bytes all sessions together may buffer (queued pushes, messages arriving in pieces, request frames
    /// being read); past it the sessions holding the most are closed, the heaviest first.
    #[arg(long, env = "ZAJEL_MAX_BUFFERED_BYTES", default_value_t = 256 << 20)]
    pub max_buffered_bytes: usize,

    /// Messages a session may send at once before the per-minute rate applies; past it, `rate_limited`.
    #[arg(long, env = "ZAJEL_RATE_LIMIT_BURST", default_value_t = 100)]
    pub rate_limit_burst: u32,

    /// Messages a session earns back per minute, beyond its burst.
    #[arg(long, env = "ZAJEL_RATE_LIMIT_PER_MINUTE", default_value_t = 100)]
    pub rate_limit_per_minute: u32,

    /// Pairing requests a session may send at once.
    #[arg(long, env = "ZAJEL_PAIR_REQUEST_BURST", default_value_t = 10)]
    pub pair_request_burst: u32,

    /// Pairing requests a session earns back per minute, beyond its burst.
    #[arg(long, env = "ZAJEL_PAIR_REQUESTS_PER_MINUTE", default_value_t = 10)]
    pub pair_requests_per_minute: u32,

    /// Answer a pairing `register` with a key challenge, and bind the code only once the client proves it
    /// holds the private key of its `publicKey` (`key_proof`); legacy clients cannot.
    #[arg(long, env = "ZAJEL_REQUIRE_KEY_PROOF")]
    pub require_key_proof: bool,

    /// Most entries in one `dailyPoints` list, and in one `hourlyTokens` list (at most 5000: a message
    /// decodes to at most 16384 values).
    #[arg(long, env = "ZAJEL_MAX_LIST_ENTRIES", default_value_t = 1000)]
    pub max_list_entries: usize,

    /// Most characters in one dead-drop payload.
    #[arg(long, env = "ZAJEL_MAX_DEAD_DROP_CHARS", default_value_t = 4096)]
    pub max_dead_drop_chars: usize,
}

/// The rendezvous registry: lifetimes and bounds.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Rendezvous")]
pub struct RendezvousConfig {
    /// How long daily points and their dead drops are kept, in seconds.
    #[arg(long, env = "ZAJEL_DAILY_TTL_SECS", default_value_t = 48 * 3600)]
    pub daily_ttl_secs: u64,

    /// How long hourly tokens are kept, in seconds.
    #[arg(long, env = "ZAJEL_HOURLY_TTL_SECS", default_value_t = 3 * 3600)]
    pub hourly_ttl_secs: u64,

    /// How often expired rendezvous entries are reclaimed, in seconds.
    #[arg(long, env = "ZAJEL_SWEEP_INTERVAL_SECS", default_value_t = 30)]
    pub sweep_interval_secs: u64,

    /// Most rendezvous entries (daily and hourly together) held at once; past it registrations get
    /// `over_capacity` until expired entries are swept.
    #[arg(
        long,
        env = "ZAJEL_MAX_RENDEZVOUS_ENTRIES",
        default_value_t = 5_000_000
    )]
    pub max_rendezvous_entries: usize,

    /// Most rendezvous entries made from one address (an IPv4 address, or an IPv6 /64) held at once;
    /// past it that address's registrations get `over_capacity` until its entries expire.
    #[arg(
        long,
        env = "ZAJEL_MAX_RENDEZVOUS_ENTRIES_PER_IP",
        default_value_t = 20_000
    )]
    pub max_rendezvous_entries_per_ip: usize,

    /// Most entries in each of `liveMatches` and `deadDrops` of one reply.
    #[arg(long, env = "ZAJEL_MAX_RENDEZVOUS_RESULTS", default_value_t = 100)]
    pub max_rendezvous_results: usize,

    /// Most peers at one daily point or hourly token; past it a newcomer is not stored there (nobody's
    /// entry makes room).
    #[arg(long, env = "ZAJEL_MAX_PEERS_PER_POINT", default_value_t = 1000)]
    pub max_peers_per_point: usize,
}

/// Pending pairing and device-link requests.
#[derive(Clone, Debug, PartialEq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Pairing")]
pub struct PairingConfig {
    /// How long a pairing or link request waits for its answer, in seconds.
    #[arg(long, env = "ZAJEL_PAIR_EXPIRY_SECS", default_value_t = 120)]
    pub pair_expiry_secs: u64,

    /// How long before a pairing request expires both sides get `pair_expiring`, in seconds.
    #[arg(long, env = "ZAJEL_PAIR_WARNING_SECS", default_value_t = 30)]
    pub pair_warning_secs: u64,

    /// Pending pairing requests one pairing code may have waiting for it.
    #[arg(long, env = "ZAJEL_MAX_PENDING_PAIRS", default_value_t = 10)]
    pub max_pending_pairs: usize,

    /// Of one pairing code's pending requests, most from one address (an IPv4 address, or an IPv6 /64).
    #[arg(
        long,
        env = "ZAJEL_MAX_PENDING_PAIRS_PER_IP_PER_CODE",
        default_value_t = 2
    )]
    pub max_pending_pairs_per_ip_per_code: usize,

    /// How long a pairing code whose session ended stays reserved for the public key it was registered
    /// with, in seconds (0: not reserved); a reconnecting client gets its code back.
    #[arg(long, env = "ZAJEL_CODE_RESERVATION_SECS", default_value_t = 120)]
    pub code_reservation_secs: u64,

    /// Pending pairing and link requests from one address, to all codes together.
    #[arg(long, env = "ZAJEL_MAX_PENDING_REQUESTS_PER_IP", default_value_t = 32)]
    pub max_pending_requests_per_ip: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A section's built-in defaults, without reading the environment.
fn defaults_of<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None));
    let matches = command.get_matches_from(["defaults"]);
    T::from_arg_matches(&matches).expect("the defaults parse")
}

macro_rules! default_from_flags {
    ($($section:ty),*) => {$(
        impl Default for $section {
            fn default() -> Self {
                defaults_of()
            }
        }
    )*};
}

default_from_flags!(
    StorageConfig,
    ClusterConfig,
    ListenConfig,
    TlsConfig,
    IdentityConfig,
    DirectoryConfig,
    TransportConfig,
    AdmissionConfig,
    SessionConfig,
    RendezvousConfig,
    PairingConfig
);

impl Default for Config {
    /// The built-in defaults, without reading the environment.
    fn default() -> Self {
        let command = Self::command().mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(["zajel-signal"]);
        Self::from_arg_matches(&matches).expect("the defaults parse")
    }
}

/// Fails with `reason` for setting `name` unless `ok`.
fn check(name: &'static str, ok: bool, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: reason.to_owned(),
        })
    }
}

/// The error of a file whose values do not fit their settings, naming the first key at fault: sections
/// are flattened, which loses the key in serde's own error.
fn name_the_key(config: &Config, file: &toml::Table, err: toml::de::Error) -> String {
    let Ok(current) = toml::Table::try_from(config) else {
        return err.to_string();
    };
    for (key, value) in file {
        let mut one = current.clone();
        one.insert(key.clone(), value.clone());
        if let Err(one_err) = one.try_into::<Config>() {
            return format!("`{key}`: {}", one_err.message());
        }
    }
    err.to_string()
}

/// Durations in seconds: at least one second, at most 30 days.
fn check_seconds(name: &'static str, secs: u64) -> Result<(), ConfigError> {
    check(
        name,
        (1..=30 * 24 * 3600).contains(&secs),
        "must be 1 s to 30 days",
    )
}

fn secs_to_millis(secs: u64) -> Millis {
    duration_millis(Duration::from_secs(secs))
}

impl Config {
    /// Reads flags, environment variables and the TOML file they name. Exits with usage on bad flags.
    pub fn load() -> Result<Self, ConfigError> {
        let matches = Self::command().get_matches();
        let from_flags = Self::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
        let config = match from_flags.config.clone() {
            None => from_flags,
            Some(path) => {
                let file_text =
                    std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?;
                from_flags.overlay_file(&file_text, &path, |key| {
                    matches!(
                        matches.value_source(key),
                        None | Some(ValueSource::DefaultValue)
                    )
                })?
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Takes each setting from the file where `unset(key)` says neither a flag nor the environment gave it.
    fn overlay_file(
        self,
        file_text: &str,
        path: &Path,
        unset: impl Fn(&str) -> bool,
    ) -> Result<Self, ConfigError> {
        let file_error = |message: String| ConfigError::File {
            path: path.to_owned(),
            message,
        };
        let file: toml::Table = toml::from_str(file_text).map_err(|e| file_error(e.to_string()))?;
        let mut merged = toml::Table::try_from(&self).map_err(|e| file_error(e.to_string()))?;
        // Sections are flattened, which serde cannot combine with `deny_unknown_fields`: the flags are
        // the list of known keys.
        let command = Self::command();
        let file_keys = file.clone();
        for (key, value) in file {
            if key == "config" {
                return Err(file_error("`config` cannot be set in the file".into()));
            }
            if !command
                .get_arguments()
                .any(|arg| arg.get_id() == key.as_str())
            {
                return Err(file_error(format!("unknown setting `{key}`")));
            }
            if unset(&key) {
                merged.insert(key, value);
            }
        }
        let mut config: Self = match merged.clone().try_into() {
            Ok(config) => config,
            Err(err) => return Err(file_error(name_the_key(&self, &file_keys, err))),
        };
        config.config = self.config;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tls.validate()?;
        self.directory.validate(&self.identity)?;
        self.transport.validate()?;
        self.admission.validate()?;
        self.sessions.validate()?;
        self.rendezvous.validate()?;
        self.pairing.validate()?;
        check(
            "push_queue_bytes",
            self.sessions.push_queue_bytes >= 4 * self.transport.max_message_size,
            "must hold at least four messages of max_message_size",
        )?;
        check(
            "max_buffered_bytes",
            self.sessions.max_buffered_bytes >= self.sessions.push_queue_bytes,
            "must hold at least one session's push_queue_bytes",
        )?;
        check(
            "max_rendezvous_entries",
            self.rendezvous.max_rendezvous_entries >= self.sessions.max_list_entries * 2,
            "must hold at least one full registration (2 x max_list_entries)",
        )?;
        check(
            "rendezvous_entries_per_minute_per_ip",
            self.admission.rendezvous_entries_per_minute_per_ip as usize
                >= self.sessions.max_list_entries * 2,
            "must allow at least one full registration (2 x max_list_entries)",
        )?;
        check(
            "max_rendezvous_entries_per_ip",
            (self.sessions.max_list_entries * 2..=self.rendezvous.max_rendezvous_entries)
                .contains(&self.rendezvous.max_rendezvous_entries_per_ip),
            "must hold at least one full registration (2 x max_list_entries), and at most \
             max_rendezvous_entries",
        )
    }
}

impl TlsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            "tls_cert",
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "tls_cert and tls_key go together",
        )
    }
}

impl DirectoryConfig {
    fn validate(&self, identity: &IdentityConfig) -> Result<(), ConfigError> {
        let Some(url) = &self.bootstrap_url else {
            return Ok(());
        };
        let insecure = self.bootstrap_allow_insecure;
        let secure_schemes: &[&str] = if insecure {
            &["https", "http"]
        } else {
            &["https"]
        };
        check(
            "bootstrap_url",
            public_url(url, secure_schemes, true).is_some(),
            "must be an https:// URL (http:// only with bootstrap_allow_insecure)",
        )?;
        check_seconds("bootstrap_heartbeat_secs", self.bootstrap_heartbeat_secs)?;
        check(
            "bootstrap_heartbeat_secs",
            self.bootstrap_heartbeat_secs <= 120,
            "must be at most 120 s: the apps keep servers seen in the last two minutes",
        )?;
        let Some(endpoint) = &identity.endpoint else {
            return Err(ConfigError::Invalid {
                name: "endpoint",
                reason: "the bootstrap directory needs the public wss:// URL of this server".into(),
            });
        };
        let endpoint_schemes: &[&str] = if insecure {
            &["wss", "https", "ws", "http"]
        } else {
            &["wss", "https"]
        };
        check(
            "endpoint",
            endpoint.len() <= MAX_ENDPOINT_CHARS
                && public_url(endpoint, endpoint_schemes, insecure).is_some(),
            "must be the public wss:// URL of this server, not a loopback address, at most 2048 \
             characters (others only with bootstrap_allow_insecure)",
        )?;
        if let Some(server_id) = &identity.server_id {
            check(
                "server_id",
                is_directory_id(server_id),
                "the bootstrap directory takes 1 to 128 letters, digits and _ : . + / = -",
            )?;
        }
        Ok(())
    }
}

/// The longest endpoint the bootstrap directory takes.
const MAX_ENDPOINT_CHARS: usize = 2048;

/// `url` if it is absolute, with one of `schemes` and a host that is not a loopback or unspecified
/// address (unless `loopback_allowed`).
fn public_url(url: &str, schemes: &[&str], loopback_allowed: bool) -> Option<hyper::Uri> {
    let uri: hyper::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let host_is_local = host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    (schemes.contains(&scheme.as_str()) && (loopback_allowed || !host_is_local)).then_some(uri)
}

/// The ids the bootstrap directory takes: `^[\w:.+/=-]{1,128}$`.
fn is_directory_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_:.+/=-".contains(&b))
}

impl TransportConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            "max_message_size",
            (1024..=16 << 20).contains(&self.max_message_size),
            "must be 1 KiB to 16 MiB",
        )?;
        check_seconds("idle_timeout_secs", self.idle_timeout_secs)?;
        check(
            "ping_interval_secs",
            (1..self.idle_timeout_secs).contains(&self.ping_interval_secs),
            "must be at least 1 s and shorter than idle_timeout_secs",
        )?;
        check_seconds("handshake_timeout_secs", self.handshake_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn drain_time(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// Whether a WebTransport session from `origin` may open. Requests without an origin (non-browser
    /// clients) are allowed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            Some(origin) if !self.webtransport_origins.is_empty() => self
                .webtransport_origins
                .iter()
                .any(|allowed| allowed == origin),
            _ => true,
        }
    }
}

impl AdmissionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("max_sessions", self.max_sessions),
            ("max_sessions_per_ip", self.max_sessions_per_ip),
            ("max_handshakes", self.max_handshakes),
            ("max_handshakes_per_ip", self.max_handshakes_per_ip),
            (
                "messages_per_minute_per_ip",
                self.messages_per_minute_per_ip as usize,
            ),
        ] {
            check(name, value >= 1, "must be at least 1")?;
        }
        Ok(())
    }
}

impl SessionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            "push_queue",
            (1..=1 << 20).contains(&self.push_queue),
            "must be 1 to 1048576",
        )?;
        for (name, value) in [
            ("rate_limit_burst", self.rate_limit_burst),
            ("rate_limit_per_minute", self.rate_limit_per_minute),
            ("pair_request_burst", self.pair_request_burst),
            ("pair_requests_per_minute", self.pair_requests_per_minute),
        ] {
            check(name, value >= 1, "must be at least 1")?;
        }
        // Two full lists and a dead drop for each daily point must fit the values a message may hold.
        check(
            "max_list_entries",
            (1..=5000).contains(&self.max_list_entries),
            "must be 1 to 5000",
        )?;
        check(
            "max_dead_drop_chars",
            (1..=1 << 20).contains(&self.max_dead_drop_chars),
            "must be 1 to 1048576",
        )
    }
}

impl RendezvousConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_seconds("daily_ttl_secs", self.daily_ttl_secs)?;
        check_seconds("hourly_ttl_secs", self.hourly_ttl_secs)?;
        check_seconds("sweep_interval_secs", self.sweep_interval_secs)?;
        check(
            "max_rendezvous_results",
            (1..=10_000).contains(&self.max_rendezvous_results),
            "must be 1 to 10000",
        )?;
        check(
            "max_peers_per_point",
            (2..=1_000_000).contains(&self.max_peers_per_point),
            "must be 2 to 1000000",
        )
    }

    pub fn daily_ttl(&self) -> Millis {
        secs_to_millis(self.daily_ttl_secs)
    }

    pub fn hourly_ttl(&self) -> Millis {
        secs_to_millis(self.hourly_ttl_secs)
    }

    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs)
    }
}

impl PairingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_seconds("pair_expiry_secs", self.pair_expiry_secs)?;
        check(
            "pair_warning_secs",
            self.pair_warning_secs < self.pair_expiry_secs,
            "must be shorter than pair_expiry_secs",
        )?;
        check(
            "max_pending_pairs",
            (1..=1000).contains(&self.max_pending_pairs),
            "must be 1 to 1000",
        )?;
        check(
            "max_pending_pairs_per_ip_per_code",
            (1..=self.max_pending_pairs).contains(&self.max_pending_pairs_per_ip_per_code),
            "must be 1 to max_pending_pairs",
        )?;
        check(
            "code_reservation_secs",
            self.code_reservation_secs <= 24 * 3600,
            "must be at most one day",
        )?;
        check(
            "max_pending_requests_per_ip",
            self.max_pending_requests_per_ip >= 1,
            "must be at least 1",
        )
    }

    /// From a request to its timeout.
    pub fn expiry(&self) -> Millis {
        secs_to_millis(self.pair_expiry_secs)
    }

    /// How long before the timeout both sides are warned.
    pub fn warning(&self) -> Millis {
        secs_to_millis(self.pair_warning_secs)
    }

    /// How long a released pairing code stays reserved for its key.
    pub fn code_reservation(&self) -> Millis {
        secs_to_millis(self.code_reservation_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_protocol() {
        let config = Config::default();
        assert_eq!(config.listen.ws_listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.transport.max_message_size, 256 * 1024);
        assert_eq!(config.sessions.max_list_entries, 1000);
        assert_eq!(config.rendezvous.daily_ttl_secs, 48 * 3600);
        assert_eq!(config.rendezvous.hourly_ttl_secs, 3 * 3600);
        assert_eq!(config.transport.idle_timeout_secs, 90);
        assert_eq!(config.transport.ping_interval_secs, 25);
        assert_eq!(config.sessions.push_queue, 1024);
        assert_eq!(config.identity.endpoint, None);
        assert_eq!(config.listen.quic_listen, "[::]:4433".parse().unwrap());
        assert_eq!(config.rendezvous, RendezvousConfig::default());
        config.validate().unwrap();
    }

    #[test]
    fn the_file_fills_what_flags_left_unset() {
        let text = r#"
            region = "eu-west"
            max_list_entries = 50
            ws_listen = "127.0.0.1:9000"
        "#;
        let flags_gave = ["ws_listen"];
        let mut from_flags = Config::default();
        from_flags.listen.ws_listen = "127.0.0.1:7000".parse().unwrap();
        let config = from_flags
            .overlay_file(text, Path::new("x.toml"), |key| !flags_gave.contains(&key))
            .unwrap();
        assert_eq!(config.identity.region.as_deref(), Some("eu-west"));
        assert_eq!(config.sessions.max_list_entries, 50);
        assert_eq!(config.listen.ws_listen, "127.0.0.1:7000".parse().unwrap());
    }

    #[test]
    fn unknown_or_mistyped_file_keys_are_errors() {
        for (text, key) in [
            ("no_such_setting = 1", "no_such_setting"),
            (
                "region = \"eu\"\nmax_list_entries = \"many\"",
                "max_list_entries",
            ),
        ] {
            let result = Config::default().overlay_file(text, Path::new("x.toml"), |_| true);
            match result {
                Err(ConfigError::File { message, .. }) => {
                    assert!(message.contains(key), "{text}: {message}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_bootstrap_directory_needs_a_public_wss_endpoint_and_an_https_url() {
        let invalid =
            |directory: DirectoryConfig, endpoint: Option<&str>, server_id: Option<&str>| {
                let mut config = Config {
                    directory,
                    ..Config::default()
                };
                config.identity.endpoint = endpoint.map(str::to_owned);
                config.identity.server_id = server_id.map(str::to_owned);
                match config.validate() {
                    Ok(()) => None,
                    Err(ConfigError::Invalid { name, .. }) => Some(name),
                    Err(other) => panic!("{other}"),
                }
            };
        let secure = DirectoryConfig {
            bootstrap_url: Some("https://bootstrap.example/".into()),
            ..DirectoryConfig::default()
        };
        let insecure = DirectoryConfig {
            bootstrap_allow_insecure: true,
            ..secure.clone()
        };
        let public = Some("wss://signal.example.org");
        assert_eq!(invalid(secure.clone(), public, None), None);
        assert_eq!(
            invalid(secure.clone(), Some("https://signal.example.org"), None),
            None
        );
        assert_eq!(invalid(secure.clone(), None, None), Some("endpoint"));
        for endpoint in [
            "ws://signal.example.org",
            "wss://localhost:8080",
            "wss://127.0.0.1",
            "wss://[::1]:443",
            "wss://0.0.0.0",
            "signal.example.org",
        ] {
            assert_eq!(
                invalid(secure.clone(), Some(endpoint), None),
                Some("endpoint"),
                "{endpoint}"
            );
        }
        assert_eq!(
            invalid(insecure.clone(), Some("ws://127.0.0.1:8080"), None),
            None
        );
        let long = format!("wss://signal.example.org/{}", "a".repeat(2048));
        assert_eq!(
            invalid(insecure.clone(), Some(&long), None),
            Some("endpoint")
        );

        let plain_http = DirectoryConfig {
            bootstrap_url: Some("http://bootstrap.example".into()),
            ..DirectoryConfig::default()
        };
        assert_eq!(invalid(plain_http, public, None), Some("bootstrap_url"));
        let plain_http_allowed = DirectoryConfig {
            bootstrap_url: Some("http://127.0.0.1:9000".into()),
            ..insecure.clone()
        };
        assert_eq!(invalid(plain_http_allowed, public, None), None);

        assert_eq!(
            invalid(secure.clone(), public, Some("has space")),
            Some("server_id")
        );
        assert_eq!(
            invalid(secure.clone(), public, Some("ed25519:a+b/c=")),
            None
        );
        let too_slow = DirectoryConfig {
            bootstrap_heartbeat_secs: 121,
            ..secure
        };
        assert_eq!(
            invalid(too_slow, public, None),
            Some("bootstrap_heartbeat_secs")
        );
        // Without a directory, none of this is asked.
        assert_eq!(
            invalid(
                DirectoryConfig::default(),
                Some("ws://localhost"),
                Some("a b")
            ),
            None
        );
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        let mut config = Config::default();
        config.transport.max_message_size = 10;
        assert!(config.validate().is_err());
        let mut config = Config::default();
        config.transport.ping_interval_secs = config.transport.idle_timeout_secs;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                name: "ping_interval_secs",
                ..
            })
        ));
    }
}
