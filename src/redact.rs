//! Identifiers in logs. Pairing codes, peer ids and client addresses are written as a short keyed hash
//! unless the operator asked for them in clear (`--log-ids`): the same value gives the same hash for the
//! life of the process, so one client's lines can still be followed, but the value cannot be read back
//! (the key is random, made at start and never written anywhere).

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use ring::hmac;
use ring::rand::SystemRandom;

static IN_CLEAR: AtomicBool = AtomicBool::new(false);

/// Whether identifiers are logged in clear, from now on. Set once at start.
pub fn log_in_clear(in_clear: bool) {
    IN_CLEAR.store(in_clear, Ordering::Relaxed);
}

/// `value` as logs may show it: in clear with `--log-ids`, else hashed. Formatting happens only if the
/// event is logged.
pub fn redacted<T: fmt::Display>(value: T) -> Redacted<T> {
    Redacted(value)
}

pub struct Redacted<T>(T);

impl<T: fmt::Display> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_redacted(f, &self.0, IN_CLEAR.load(Ordering::Relaxed))
    }
}

impl<T: fmt::Display> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Hashes are 6 bytes: enough to tell a few million clients apart in a log, too few to search for a
/// value without the key.
const SHOWN_BYTES: usize = 6;

fn write_redacted(
    f: &mut fmt::Formatter<'_>,
    value: &impl fmt::Display,
    in_clear: bool,
) -> fmt::Result {
    if in_clear {
        return write!(f, "{value}");
    }
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .expect("the system's random generator works")
    });
    let tag = hmac::sign(key, value.to_string().as_bytes());
    f.write_str("~")?;
    for byte in &tag.as_ref()[..SHOWN_BYTES] {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shown<'a>(&'a str, bool);

    impl fmt::Display for Shown<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_redacted(f, &self.0, self.1)
        }
    }

    #[test]
    fn values_are_hashed_the_same_way_each_time_unless_in_clear() {
        let hashed = Shown("ABCDE2", false).to_string();
        assert!(!hashed.contains("ABCDE2"));
        assert_eq!(hashed.len(), 1 + 2 * SHOWN_BYTES, "{hashed}");
        assert_eq!(Shown("ABCDE2", false).to_string(), hashed);
        assert_ne!(Shown("ABCDE3", false).to_string(), hashed);
        assert_eq!(Shown("203.0.113.7", true).to_string(), "203.0.113.7");
    }
}
