//! Who a client is to the server: its session's number, the transport it came on, and the group of
//! addresses its connection came from, which every per-address limit counts by.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A session's number, unique for the life of the server; numbers are given from 1.
pub type SessionId = u64;

/// The session of something no live session made (it was kept across a restart).
pub const NO_SESSION: SessionId = 0;

/// The transport a session arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket = 0,
    Quic = 1,
    WebTransport = 2,
}

impl Transport {
    /// The transport's name in `/stats` and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Quic => "quic",
            Self::WebTransport => "webtransport",
        }
    }
}

/// The addresses one client is taken to control: an IPv4 address, or an IPv6 /64 (a home, a phone or a
/// cloud machine is given a whole /64, so counting single IPv6 addresses would limit nothing).
/// IPv4-mapped IPv6 addresses are their IPv4 address, whichever transport they came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressGroup {
    V4(Ipv4Addr),
    /// The first 64 bits of the address.
    V6(u64),
}

impl From<IpAddr> for AddressGroup {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => Self::V6((v6.to_bits() >> 64) as u64),
        }
    }
}

impl fmt::Display for AddressGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => v4.fmt(f),
            Self::V6(prefix) => write!(f, "{}/64", Ipv6Addr::from_bits(u128::from(*prefix) << 64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(text: &str) -> AddressGroup {
        AddressGroup::from(text.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn ipv6_addresses_group_by_their_64_bit_prefix() {
        assert_eq!(group("2001:db8:1:2::1"), group("2001:db8:1:2:ffff::9"));
        assert_ne!(group("2001:db8:1:2::1"), group("2001:db8:1:3::1"));
        assert_eq!(group("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        assert_eq!(group("::ffff:192.0.2.7"), group("192.0.2.7"));
        assert_ne!(group("192.0.2.7"), group("192.0.2.8"));
        assert_eq!(group("::ffff:192.0.2.7").to_string(), "192.0.2.7");
    }
}
