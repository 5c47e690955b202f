//! Waits between retries of something that failed (Redis, the bootstrap directory): doubling from a first
//! wait to a last, each with jitter, so that many servers failing together do not retry in step.

use std::time::Duration;

pub struct Backoff {
    first: Duration,
    next: Duration,
    last: Duration,
}

impl Backoff {
    pub fn new(first: Duration, last: Duration) -> Self {
        Self {
            first,
            next: first,
            last,
        }
    }

    /// The wait before the next attempt, jittered; each call doubles the one after, up to the last.
    pub fn next_wait(&mut self) -> Duration {
        let wait = jittered(self.next);
        self.next = (self.next * 2).min(self.last);
        wait
    }

    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_wait()).await;
    }

    /// After a success: the next failure waits the first wait again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// `wait` scaled by a random factor in [0.5, 1.5).
fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(0.5 + rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_last_with_jitter() {
        let (first, last) = (Duration::from_millis(100), Duration::from_millis(400));
        let mut backoff = Backoff::new(first, last);
        for base in [100, 200, 400, 400] {
            let wait = backoff.next_wait();
            let base = Duration::from_millis(base);
            assert!(
                wait >= base / 2 && wait < base * 3 / 2,
                "{wait:?} around {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_wait() < first * 3 / 2);
    }
}
