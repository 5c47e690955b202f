//! Token buckets: a session may send `burst` messages at once, and earns `per_minute` more each minute.

use crate::clock::Millis;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_minute: u32,
}

#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Millis,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Millis) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            refilled_at: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Millis) -> bool {
        self.try_take_n(now, 1.0)
    }

    /// Takes `cost` tokens if there are that many; otherwise takes none.
    pub fn try_take_n(&mut self, now: Millis, cost: f64) -> bool {
        self.refill(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Whether the bucket holds its whole burst at `now`.
    pub fn is_full(&mut self, now: Millis) -> bool {
        self.refill(now);
        self.tokens >= f64::from(self.limit.burst)
    }

    fn refill(&mut self, now: Millis) {
        let elapsed = now.saturating_sub(self.refilled_at) as f64;
        let earned = elapsed * f64::from(self.limit.per_minute) / 60_000.0;
        self.tokens = (self.tokens + earned).min(f64::from(self.limit.burst));
        self.refilled_at = self.refilled_at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let mut bucket = TokenBucket::new(
            RateLimit {
                burst: 100,
                per_minute: 100,
            },
            0,
        );
        assert!((0..100).all(|_| bucket.try_take(0)));
        assert!(!bucket.try_take(0));
        assert!(!bucket.try_take(599), "one token takes 600 ms to earn");
        assert!(bucket.try_take(600));
        assert!(!bucket.try_take(600));
        // A long pause refills up to the burst, not beyond.
        assert!(bucket.is_full(3_600_000));
        assert_eq!((0..200).filter(|_| bucket.try_take(3_600_000)).count(), 100);
        assert!(
            !bucket.try_take_n(3_600_000 + 600, 2.0),
            "a cost over what is left takes nothing"
        );
        assert!(bucket.try_take(3_600_000 + 600));
    }
}
