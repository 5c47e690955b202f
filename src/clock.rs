//! The time source the registries read, injected so that TTL behaviour is tested exactly, without waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub trait Clock: Send + Sync + 'static {
    /// The time registries run on: never goes back.
    fn now(&self) -> Millis;

    /// The wall-clock time to tell clients (`heartbeat_ack`), which may step with NTP.
    fn wall_time(&self) -> Millis {
        self.now()
    }
}

/// Wall-clock time read once at start and advanced by the monotonic clock, so that a wall-clock step
/// (NTP, a manual change) can neither expire everything at once nor keep entries alive forever.
#[derive(Debug)]
pub struct SystemClock {
    epoch_at_start: Millis,
    start: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            epoch_at_start: unix_millis_now(),
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        self.epoch_at_start + duration_millis(self.start.elapsed())
    }

    fn wall_time(&self) -> Millis {
        unix_millis_now()
    }
}

fn unix_millis_now() -> Millis {
    duration_millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// A clock that moves only when a test moves it.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        Self(AtomicU64::new(start))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(duration_millis(by), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn duration_millis(duration: Duration) -> Millis {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
