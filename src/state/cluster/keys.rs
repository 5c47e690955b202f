//! The key layout in Redis. Every key an atomic operation touches carries the same hash tag (the part in
//! braces), so that each operation is one hash slot and runs unchanged on a Redis Cluster.

/// Everything zajel-signal stores starts with this.
const PREFIX: &str = "zajel:";

/// The record of a name (a pairing code or a relay peer id): who holds it, with which key and roles.
pub fn name(name: &str) -> String {
    format!("{PREFIX}{{n:{name}}}")
}

/// Pending pairing requests to a pairing code: requester → request. Same slot as the code's record.
pub fn pairing_requests(target: &str) -> String {
    format!("{PREFIX}{{n:{target}}}:pairs")
}

/// The pending link request to a phone's pairing code. Same slot as the code's record.
pub fn link_request(phone: &str) -> String {
    format!("{PREFIX}{{n:{phone}}}:link")
}

/// The entries at a daily point (peer → entry), their expiry index and the findable ones (with a drop).
pub fn daily(point: &str) -> [String; 3] {
    let base = format!("{PREFIX}{{d:{point}}}");
    [
        format!("{base}:entries"),
        format!("{base}:expiry"),
        format!("{base}:drops"),
    ]
}

/// The entries at an hourly token (peer → entry) and their expiry index.
pub fn hourly(token: &str) -> [String; 2] {
    let base = format!("{PREFIX}{{h:{token}}}");
    [format!("{base}:entries"), format!("{base}:expiry")]
}

/// The rendezvous entries an address holds, by expiry: its budget.
pub fn address_entries(address: impl std::fmt::Display) -> String {
    format!("{PREFIX}{{a:{address}}}")
}

/// Listed relays (id → record) and the ids of those under half load.
pub fn relays() -> [String; 2] {
    [
        format!("{PREFIX}{{relays}}:info"),
        format!("{PREFIX}{{relays}}:open"),
    ]
}

/// What a node's sessions hold, so that others can remove it when the node dies.
pub fn node_holdings(node: &str) -> String {
    format!("{PREFIX}{{held:{node}}}")
}

/// Taken by the node that reaps a dead node, so that one does.
pub fn node_reaper(node: &str) -> String {
    format!("{PREFIX}{{nodes}}:reaper:{node}")
}

/// Every node that announced itself and was not reaped yet.
pub fn nodes() -> String {
    format!("{PREFIX}{{nodes}}")
}

/// A node's heartbeat: exists while the node lives.
pub fn node_alive(node: &str) -> String {
    format!("{PREFIX}{{nodes}}:alive:{node}")
}

/// The pub/sub channel of deliveries to a node's sessions.
pub fn node_channel(node: &str) -> String {
    format!("{PREFIX}node:{node}")
}
