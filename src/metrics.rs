//! The server's Prometheus metrics (`GET /metrics`, text exposition format 0.0.4).
//!
//! What happens is counted as it happens, on handles resolved when the server starts: counting a
//! message is a few atomic additions, never a lookup by label. What the server holds (sessions open,
//! registry sizes, the certificate's expiry, the process's CPU and memory) is read when Prometheus asks,
//! from the counts the server keeps anyway.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use prometheus::core::Collector;
use prometheus::{
    Counter, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::peer::Transport;
use crate::protocol::codec::Encoding;
use crate::protocol::{ErrorCode, ServerMessage};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every request type of the protocol, as the `type` label names it. Anything else a client sends is
/// `other` (a client's own text never becomes a label: that would let it grow the metrics), and bytes
/// that did not decode to a message are `undecodable`.
pub const REQUEST_TYPES: [&str; 19] = [
    "ping",
    "heartbeat",
    "register",
    "key_proof",
    "update_load",
    "get_relays",
    "register_rendezvous",
    "pair_request",
    "pair_response",
    "link_request",
    "link_response",
    "offer",
    "answer",
    "ice_candidate",
    "call_offer",
    "call_answer",
    "call_reject",
    "call_hangup",
    "call_ice",
];
const OTHER_TYPE: usize = REQUEST_TYPES.len();
const UNDECODABLE: usize = REQUEST_TYPES.len() + 1;
const TYPE_LABELS: usize = REQUEST_TYPES.len() + 2;

/// Request handling times, in seconds: from 10 µs (a ping) to a second (a store that is slow to answer).
const HANDLING_BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1, 0.25, 1.0,
];

const TRANSPORTS: [Transport; 3] = [
    Transport::WebSocket,
    Transport::Quic,
    Transport::WebTransport,
];

/// The type of a received message, as metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageType(usize);

impl MessageType {
    pub const UNDECODABLE: Self = Self(UNDECODABLE);

    /// The type named `kind`, or `other`.
    pub fn of(kind: &str) -> Self {
        Self(
            REQUEST_TYPES
                .iter()
                .position(|known| *known == kind)
                .unwrap_or(OTHER_TYPE),
        )
    }

    fn label(index: usize) -> &'static str {
        match index {
            OTHER_TYPE => "other",
            UNDECODABLE => "undecodable",
            known => REQUEST_TYPES[known],
        }
    }
}

/// Why a session ended, as `zajel_sessions_closed_total` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it, or its connection was lost.
    ClientClosed,
    /// Nothing was heard from the client for the idle timeout.
    Idle,
    /// The client did not read its pushes or replies.
    TooSlow,
    ShuttingDown,
    /// The client broke the protocol: a frame too large, invalid text, a WebSocket protocol error.
    ProtocolError,
    /// WebSocket control frames past the session's message rate.
    RateLimited,
    /// The connection failed under the server (a write error, the push stream could not be opened).
    Failed,
}

impl CloseReason {
    const ALL: [Self; 7] = [
        Self::ClientClosed,
        Self::Idle,
        Self::TooSlow,
        Self::ShuttingDown,
        Self::ProtocolError,
        Self::RateLimited,
        Self::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::Idle => "idle",
            Self::TooSlow => "too_slow",
            Self::ShuttingDown => "shutting_down",
            Self::ProtocolError => "protocol_error",
            Self::RateLimited => "rate_limited",
            Self::Failed => "failed",
        }
    }
}

/// The step of a connection's handshake that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeStage {
    /// TLS on the TCP port (`wss://`), failed or timed out.
    Tls,
    /// An HTTP request on a WebSocket path that could not be upgraded.
    WebSocketUpgrade,
    /// A QUIC handshake, failed, timed out, or without a known ALPN.
    Quic,
    /// WebTransport's HTTP/3 handshake or its CONNECT request.
    WebTransport,
}

impl HandshakeStage {
    const ALL: [Self; 4] = [
        Self::Tls,
        Self::WebSocketUpgrade,
        Self::Quic,
        Self::WebTransport,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::WebSocketUpgrade => "websocket_upgrade",
            Self::Quic => "quic",
            Self::WebTransport => "webtransport",
        }
    }
}

/// An error the server answered with: a protocol error code, or a pairing, link or registration refusal
/// (which have message types of their own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSent {
    Code(ErrorCode),
    CodeCollision,
    PairError,
    LinkError,
}

impl ErrorSent {
    fn index(self) -> usize {
        match self {
            Self::Code(code) => code as usize,
            Self::CodeCollision => ErrorCode::ALL.len(),
            Self::PairError => ErrorCode::ALL.len() + 1,
            Self::LinkError => ErrorCode::ALL.len() + 2,
        }
    }

    fn all() -> impl Iterator<Item = Self> {
        ErrorCode::ALL.into_iter().map(Self::Code).chain([
            Self::CodeCollision,
            Self::PairError,
            Self::LinkError,
        ])
    }

    fn label(self) -> &'static str {
        match self {
            Self::Code(code) => code.as_str(),
            Self::CodeCollision => "code_collision",
            Self::PairError => "pair_error",
            Self::LinkError => "link_error",
        }
    }
}

/// Pairing (`pair_request`) or device linking (`link_request`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Introduction {
    Pair = 0,
    Link = 1,
}

/// What became of a pairing or link request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Made and waiting for its answer.
    Requested = 0,
    /// Refused when made (no such code, too many pending, the requester's own code).
    Refused = 1,
    Matched = 2,
    Rejected = 3,
    TimedOut = 4,
}

impl Outcome {
    const ALL: [Self; 5] = [
        Self::Requested,
        Self::Refused,
        Self::Matched,
        Self::Rejected,
        Self::TimedOut,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Refused => "refused",
            Self::Matched => "matched",
            Self::Rejected => "rejected",
            Self::TimedOut => "timed_out",
        }
    }
}

/// Why a push was not queued for its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushDropped {
    /// The session's queue was full (a server push then closes the session as too slow; a forwarded
    /// message is refused to its sender).
    QueueFull = 0,
    /// Larger than the session's queue may ever hold.
    TooLarge = 1,
}

/// What the server holds when metrics are read: the gauges' values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Holdings {
    /// Sessions open, by [`Transport`].
    pub sessions: [usize; 3],
    pub handshakes_in_progress: usize,
    pub buffered_bytes: usize,
    pub relays: usize,
    pub daily_points: usize,
    pub dead_drops: usize,
    pub hourly_tokens: usize,
    pub rendezvous_entries: usize,
    pub pairing_codes: usize,
    pub pending_pair_requests: usize,
    pub pending_link_requests: usize,
    /// When the certificate presented now stops being valid.
    pub certificate_not_after: Option<SystemTime>,
}

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    sessions_opened: [IntCounter; 3],
    sessions_closed: Vec<[IntCounter; 3]>,
    sessions_refused: [IntCounter; 3],
    handshakes_failed: Vec<IntCounter>,
    /// By type label, then encoding (JSON, CBOR).
    messages: Vec<[IntCounter; 2]>,
    handling: Vec<Histogram>,
    errors: Vec<IntCounter>,
    pushes_queued: IntCounter,
    pushes_sent: IntCounter,
    pushes_dropped: [IntCounter; 2],
    rendezvous_matches: IntCounter,
    dead_drops_returned: IntCounter,
    relays_listed: IntCounter,
    quic_retries: IntCounter,
    /// By [`Introduction`], then [`Outcome`].
    introductions: [[IntCounter; 5]; 2],
    gauges: Gauges,
    /// Serialises reads: the process counters are brought up to date by each.
    reading: Mutex<()>,
}

/// The metrics set when read.
struct Gauges {
    sessions_open: [IntGauge; 3],
    handshakes_in_progress: IntGauge,
    buffered_bytes: IntGauge,
    registry: IntGaugeVec,
    certificate_expires_in: Gauge,
    cpu_seconds: Counter,
    resident_bytes: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let transports = |family: &IntCounterVec, rest: &[&str]| -> [IntCounter; 3] {
            TRANSPORTS.map(|transport| {
                let mut labels = vec![transport.label()];
                labels.extend_from_slice(rest);
                family.with_label_values(&labels)
            })
        };

        let opened = counter_vec(
            &registry,
            "zajel_sessions_opened_total",
            "Sessions opened, by transport.",
            &["transport"],
        );
        let closed = counter_vec(
            &registry,
            "zajel_sessions_closed_total",
            "Sessions closed, by transport and why.",
            &["transport", "reason"],
        );
        let refused = counter_vec(
            &registry,
            "zajel_sessions_refused_total",
            "Connections refused a session at the session limits (over_capacity), by transport.",
            &["transport"],
        );
        let handshakes = counter_vec(
            &registry,
            "zajel_handshakes_failed_total",
            "Connections whose handshake failed or timed out, by step.",
            &["stage"],
        );
        let messages = counter_vec(
            &registry,
            "zajel_messages_received_total",
            "Messages received from clients, by type and encoding.",
            &["type", "encoding"],
        );
        let handling = HistogramVec::new(
            HistogramOpts::new(
                "zajel_request_duration_seconds",
                "Time from a decoded message to its reply, by type.",
            )
            .buckets(HANDLING_BUCKETS.to_vec()),
            &["type"],
        )
        .expect("valid histogram");
        register(&registry, &handling);
        let errors = counter_vec(
            &registry,
            "zajel_errors_sent_total",
            "Error replies sent, by code (or refusal message type).",
            &["code"],
        );
        let dropped = counter_vec(
            &registry,
            "zajel_pushes_dropped_total",
            "Pushes not queued for their session, by why.",
            &["reason"],
        );
        let introductions = counter_vec(
            &registry,
            "zajel_introductions_total",
            "Pairing and device-link requests, by kind and outcome.",
            &["kind", "outcome"],
        );
        let registry_sizes = gauge_vec(
            &registry,
            "zajel_registry_entries",
            "What the registries hold now, by registry (in cluster mode, this node's part).",
            &["registry"],
        );
        let sessions_open = gauge_vec(
            &registry,
            "zajel_sessions_open",
            "Sessions open now, by transport.",
            &["transport"],
        );
        let build_info = gauge_vec(
            &registry,
            "zajel_build_info",
            "The server's version, as a label; always 1.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let type_labels = || (0..TYPE_LABELS).map(MessageType::label);
        Self {
            sessions_opened: transports(&opened, &[]),
            sessions_closed: CloseReason::ALL
                .iter()
                .map(|reason| transports(&closed, &[reason.label()]))
                .collect(),
            sessions_refused: transports(&refused, &[]),
            handshakes_failed: HandshakeStage::ALL
                .iter()
                .map(|stage| handshakes.with_label_values(&[stage.label()]))
                .collect(),
            messages: type_labels()
                .map(|kind| {
                    [
                        messages.with_label_values(&[kind, "json"]),
                        messages.with_label_values(&[kind, "cbor"]),
                    ]
                })
                .collect(),
            handling: type_labels()
                .map(|kind| handling.with_label_values(&[kind]))
                .collect(),
            errors: ErrorSent::all()
                .map(|error| errors.with_label_values(&[error.label()]))
                .collect(),
            pushes_queued: counter(
                &registry,
                "zajel_pushes_queued_total",
                "Pushes queued for sessions (matches, pairing and call messages, forwarded signals).",
            ),
            pushes_sent: counter(
                &registry,
                "zajel_pushes_sent_total",
                "Pushes taken from their queues to be written to their clients.",
            ),
            pushes_dropped: [
                dropped.with_label_values(&["queue_full"]),
                dropped.with_label_values(&["too_large"]),
            ],
            rendezvous_matches: counter(
                &registry,
                "zajel_rendezvous_matches_total",
                "Live matches on hourly tokens, as returned to the newcomer.",
            ),
            dead_drops_returned: counter(
                &registry,
                "zajel_dead_drops_returned_total",
                "Dead drops returned by rendezvous registrations.",
            ),
            relays_listed: counter(
                &registry,
                "zajel_relays_listed_total",
                "Relays returned by get_relays.",
            ),
            quic_retries: counter(
                &registry,
                "zajel_quic_retries_total",
                "QUIC Retries sent: clients asked to prove their address before a handshake.",
            ),
            introductions: [Introduction::Pair, Introduction::Link].map(|kind| {
                let kind = match kind {
                    Introduction::Pair => "pair",
                    Introduction::Link => "link",
                };
                Outcome::ALL
                    .map(|outcome| introductions.with_label_values(&[kind, outcome.label()]))
            }),
            gauges: Gauges {
                sessions_open: TRANSPORTS
                    .map(|transport| sessions_open.with_label_values(&[transport.label()])),
                handshakes_in_progress: gauge(
                    &registry,
                    "zajel_handshakes_in_progress",
                    "Connections in their handshake now.",
                ),
                buffered_bytes: gauge(
                    &registry,
                    "zajel_buffered_bytes",
                    "Bytes all sessions buffer now (queued pushes, frames being read or written).",
                ),
                registry: registry_sizes,
                certificate_expires_in: {
                    let gauge = Gauge::new(
                        "zajel_certificate_expires_in_seconds",
                        "Seconds until the certificate presented now expires (NaN if unknown).",
                    )
                    .expect("valid gauge");
                    register(&registry, &gauge);
                    gauge
                },
                cpu_seconds: {
                    let counter = Counter::new(
                        "process_cpu_seconds_total",
                        "User and system CPU time spent, in seconds.",
                    )
                    .expect("valid counter");
                    register(&registry, &counter);
                    counter
                },
                resident_bytes: gauge(
                    &registry,
                    "process_resident_memory_bytes",
                    "Resident memory size, in bytes.",
                ),
                open_fds: gauge(
                    &registry,
                    "process_open_fds",
                    "Open file descriptors (sockets included).",
                ),
                max_fds: gauge(
                    &registry,
                    "process_max_fds",
                    "The most file descriptors the process may open.",
                ),
            },
            registry,
            reading: Mutex::new(()),
        }
    }

    pub fn session_opened(&self, transport: Transport) {
        self.sessions_opened[transport as usize].inc();
    }

    pub fn session_closed(&self, transport: Transport, reason: CloseReason) {
        self.sessions_closed[reason as usize][transport as usize].inc();
    }

    pub fn session_refused(&self, transport: Transport) {
        self.sessions_refused[transport as usize].inc();
    }

    pub fn handshake_failed(&self, stage: HandshakeStage) {
        self.handshakes_failed[stage as usize].inc();
    }

    pub fn message_received(&self, kind: MessageType, encoding: Encoding) {
        self.messages[kind.0][encoding as usize].inc();
    }

    /// Counts a reply to a message of type `kind`, and its handling time if it was handled: errors by
    /// code, and what the reply reports (relays listed, live matches and dead drops, pairing and link
    /// outcomes).
    pub fn answered(&self, kind: MessageType, reply: &ServerMessage, took: Option<Duration>) {
        if let Some(took) = took {
            self.handling[kind.0].observe(took.as_secs_f64());
        }
        let request = MessageType::label(kind.0);
        match reply {
            ServerMessage::Error { code, .. } => self.error_sent(ErrorSent::Code(*code)),
            ServerMessage::CodeCollision { .. } => self.error_sent(ErrorSent::CodeCollision),
            ServerMessage::PairError { .. } => {
                self.error_sent(ErrorSent::PairError);
                if request == "pair_request" {
                    self.introduction(Introduction::Pair, Outcome::Refused);
                }
            }
            ServerMessage::LinkError { .. } => {
                self.error_sent(ErrorSent::LinkError);
                if request == "link_request" {
                    self.introduction(Introduction::Link, Outcome::Refused);
                }
            }
            ServerMessage::Relays { relays } => self.relays_listed.inc_by(relays.len() as u64),
            ServerMessage::RendezvousResult {
                live_matches,
                dead_drops,
            } => {
                self.rendezvous_matches.inc_by(live_matches.len() as u64);
                self.dead_drops_returned.inc_by(dead_drops.len() as u64);
            }
            // A pairing or link answer that accepts is answered with the match; one that rejects, with
            // an ack, as is a request made.
            ServerMessage::PairMatched { .. } => {
                self.introduction(Introduction::Pair, Outcome::Matched);
            }
            ServerMessage::LinkMatchedPhone { .. } => {
                self.introduction(Introduction::Link, Outcome::Matched);
            }
            ServerMessage::Ack { request_type } => match *request_type {
                "pair_request" => self.introduction(Introduction::Pair, Outcome::Requested),
                "pair_response" => self.introduction(Introduction::Pair, Outcome::Rejected),
                "link_request" => self.introduction(Introduction::Link, Outcome::Requested),
                "link_response" => self.introduction(Introduction::Link, Outcome::Rejected),
                _ => {}
            },
            _ => {}
        }
    }

    pub fn error_sent(&self, error: ErrorSent) {
        self.errors[error.index()].inc();
    }

    pub fn push_queued(&self) {
        self.pushes_queued.inc();
    }

    pub fn push_sent(&self) {
        self.pushes_sent.inc();
    }

    pub fn push_dropped(&self, why: PushDropped) {
        self.pushes_dropped[why as usize].inc();
    }

    fn introduction(&self, kind: Introduction, outcome: Outcome) {
        self.introductions[kind as usize][outcome as usize].inc();
    }

    /// Messages received since the start, of every type and encoding.
    pub fn messages_received_total(&self) -> u64 {
        self.messages.iter().flatten().map(IntCounter::get).sum()
    }

    /// Error replies sent since the start, of every code.
    pub fn errors_sent_total(&self) -> u64 {
        self.errors.iter().map(IntCounter::get).sum()
    }

    pub fn quic_retry_sent(&self) {
        self.quic_retries.inc();
    }

    /// QUIC Retries sent since the start.
    pub fn quic_retries(&self) -> u64 {
        self.quic_retries.get()
    }

    pub fn introductions_timed_out(&self, kind: Introduction, count: usize) {
        self.introductions[kind as usize][Outcome::TimedOut as usize].inc_by(count as u64);
    }

    /// The exposition of every metric, with the gauges set from `holdings` and the process's own
    /// figures.
    pub fn render(&self, holdings: &Holdings) -> String {
        let _reading = self
            .reading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gauges = &self.gauges;
        for (gauge, open) in gauges.sessions_open.iter().zip(holdings.sessions) {
            gauge.set(as_gauge(open));
        }
        gauges
            .handshakes_in_progress
            .set(as_gauge(holdings.handshakes_in_progress));
        gauges.buffered_bytes.set(as_gauge(holdings.buffered_bytes));
        for (name, size) in [
            ("relays", holdings.relays),
            ("daily_points", holdings.daily_points),
            ("dead_drops", holdings.dead_drops),
            ("hourly_tokens", holdings.hourly_tokens),
            ("rendezvous_entries", holdings.rendezvous_entries),
            ("pairing_codes", holdings.pairing_codes),
            ("pending_pair_requests", holdings.pending_pair_requests),
            ("pending_link_requests", holdings.pending_link_requests),
        ] {
            gauges
                .registry
                .with_label_values(&[name])
                .set(as_gauge(size));
        }
        let seconds_left = holdings
            .certificate_not_after
            .map_or(f64::NAN, |not_after| {
                match not_after.duration_since(SystemTime::now()) {
                    Ok(left) => left.as_secs_f64(),
                    Err(past) => -past.duration().as_secs_f64(),
                }
            });
        gauges.certificate_expires_in.set(seconds_left);
        let process = process::read();
        if let Some(cpu) = process.cpu_seconds {
            let counted = gauges.cpu_seconds.get();
            if cpu > counted {
                gauges.cpu_seconds.inc_by(cpu - counted);
            }
        }
        for (gauge, value) in [
            (&gauges.resident_bytes, process.resident_bytes),
            (&gauges.open_fds, process.open_fds),
            (&gauges.max_fds, process.max_fds),
        ] {
            if let Some(value) = value {
                gauge.set(as_gauge(value));
            }
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("the text encoder writes to a Vec");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

fn as_gauge(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn register(registry: &Registry, collector: &(impl Collector + Clone + 'static)) {
    registry
        .register(Box::new(collector.clone()))
        .expect("every metric is registered once");
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("valid counter");
    register(registry, &counter);
    counter
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect("valid gauge");
    register(registry, &gauge);
    gauge
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let family = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    register(registry, &family);
    family
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let family = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    register(registry, &family);
    family
}

/// The process's CPU time, memory and file descriptors, from the kernel (Linux; elsewhere unknown).
mod process {
    pub struct Figures {
        pub cpu_seconds: Option<f64>,
        pub resident_bytes: Option<usize>,
        pub open_fds: Option<usize>,
        pub max_fds: Option<usize>,
    }

    pub fn read() -> Figures {
        Figures {
            cpu_seconds: cpu_seconds(),
            resident_bytes: resident_bytes(),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count()),
            max_fds: rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .and_then(|(soft, _)| usize::try_from(soft).ok()),
        }
    }

    fn cpu_seconds() -> Option<f64> {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: getrusage writes a whole rusage into the pointer it is given, which points to one.
        let usage = unsafe {
            if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
                return None;
            }
            usage.assume_init()
        };
        let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
        Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
    }

    /// Resident pages (the second field of /proc/self/statm) times the page size.
    fn resident_bytes() -> Option<usize> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf only reads a system constant.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * usize::try_from(page_size).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_type_has_its_own_label_and_anything_else_is_other() {
        for (index, kind) in REQUEST_TYPES.iter().enumerate() {
            assert_eq!(MessageType::of(kind), MessageType(index));
        }
        assert_eq!(MessageType::of("teleport"), MessageType(OTHER_TYPE));
        assert_eq!(MessageType::of("PING"), MessageType(OTHER_TYPE));
    }

    #[test]
    fn counts_appear_with_their_labels() {
        let metrics = Metrics::new();
        metrics.message_received(MessageType::of("get_relays"), Encoding::Cbor);
        metrics.message_received(MessageType::of("get_relays"), Encoding::Cbor);
        metrics.message_received(MessageType::of("teleport"), Encoding::Json);
        metrics.answered(
            MessageType::of("offer"),
            &ServerMessage::error(ErrorCode::PeerNotFound, "gone"),
            None,
        );
        metrics.session_closed(Transport::Quic, CloseReason::TooSlow);
        metrics.answered(
            MessageType::of("link_response"),
            &ServerMessage::Ack {
                request_type: "link_response",
            },
            None,
        );
        metrics.answered(
            MessageType::of("ping"),
            &ServerMessage::Pong,
            Some(Duration::from_micros(30)),
        );
        let text = metrics.render(&Holdings {
            sessions: [3, 2, 1],
            dead_drops: 7,
            ..Holdings::default()
        });
        for line in [
            r#"zajel_messages_received_total{encoding="cbor",type="get_relays"} 2"#,
            r#"zajel_messages_received_total{encoding="json",type="other"} 1"#,
            r#"zajel_messages_received_total{encoding="json",type="ping"} 0"#,
            r#"zajel_errors_sent_total{code="peer_not_found"} 1"#,
            r#"zajel_sessions_closed_total{reason="too_slow",transport="quic"} 1"#,
            r#"zajel_introductions_total{kind="link",outcome="rejected"} 1"#,
            r#"zajel_request_duration_seconds_bucket{type="ping",le="0.00005"} 1"#,
            r#"zajel_request_duration_seconds_bucket{type="ping",le="0.000025"} 0"#,
            r#"zajel_sessions_open{transport="webtransport"} 1"#,
            r#"zajel_registry_entries{registry="dead_drops"} 7"#,
        ] {
            assert!(
                text.lines().any(|got| got == line),
                "{line} missing in\n{text}"
            );
        }
        assert!(
            text.contains("\nzajel_certificate_expires_in_seconds NaN\n"),
            "{text}"
        );
    }

    #[test]
    fn the_process_figures_and_the_certificate_are_read_when_rendered() {
        let metrics = Metrics::new();
        let text = metrics.render(&Holdings {
            certificate_not_after: Some(SystemTime::now() + Duration::from_secs(3 * 86_400 + 60)),
            ..Holdings::default()
        });
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|line| line.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing in\n{text}"));
            line[name.len() + 1..].parse().unwrap()
        };
        let days_left = value("zajel_certificate_expires_in_seconds") / 86_400.0;
        assert!((days_left - 3.0).abs() < 0.01, "{days_left}");
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_cpu_seconds_total") > 0.0);
    }
}
