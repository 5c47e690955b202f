//! Pure, synchronous registries. They know nothing of sockets, tasks or clocks: callers pass `now` and
//! get back results, including whom to notify.

pub mod deadlines;
pub mod pairing;
pub mod relays;
pub mod rendezvous;

pub use pairing::PairingRegistry;
pub use relays::RelayRegistry;
pub use rendezvous::{Found, Registration, RendezvousRegistry, Swept};
