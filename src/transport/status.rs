//! The live status page (`GET /status`): one self-contained HTML document that polls `/stats` and draws
//! what it reads; and the configured limits `/stats` reports for it.

use serde::Serialize;

use crate::config::Config;

/// The page: inline style and script, nothing fetched but `/stats`.
pub const PAGE: &str = include_str!("status.html");

/// The limits an operator compares the live counts with, as configured.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    pub max_handshakes: usize,
    pub max_message_size: usize,
    pub messages_per_minute_per_session: u32,
    pub messages_per_minute_per_ip: u32,
    pub push_queue: usize,
    pub max_buffered_bytes: usize,
    pub max_rendezvous_entries: usize,
    pub max_rendezvous_entries_per_ip: usize,
    pub max_pending_pairs: usize,
    pub idle_timeout_secs: u64,
    pub drain_secs: u64,
}

impl Limits {
    pub fn of(config: &Config) -> Self {
        Self {
            max_sessions: config.admission.max_sessions,
            max_sessions_per_ip: config.admission.max_sessions_per_ip,
            max_handshakes: config.admission.max_handshakes,
            max_message_size: config.transport.max_message_size,
            messages_per_minute_per_session: config.sessions.rate_limit_per_minute,
            messages_per_minute_per_ip: config.admission.messages_per_minute_per_ip,
            push_queue: config.sessions.push_queue,
            max_buffered_bytes: config.sessions.max_buffered_bytes,
            max_rendezvous_entries: config.rendezvous.max_rendezvous_entries,
            max_rendezvous_entries_per_ip: config.rendezvous.max_rendezvous_entries_per_ip,
            max_pending_pairs: config.pairing.max_pending_pairs,
            idle_timeout_secs: config.transport.idle_timeout_secs,
            drain_secs: config.transport.drain_secs,
        }
    }
}
