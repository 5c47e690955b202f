//! Pure, synchronous registries. They know nothing of sockets, tasks or clocks: callers pass `now` and
//! get back results, including whom to notify.

pub mod pairing;
pub mod relays;
pub mod rendezvous;

pub use relays::{RelayInfo, RelayRegistry};
pub use rendezvous::{
    Bounds, DeadDrop, Found, LiveMatch, Registration, RendezvousRegistry, Swept, Ttls,
};
