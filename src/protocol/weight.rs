//! How much a decoded message weighs: the values it holds and the memory they take, checked while it is
//! decoded (CBOR) or before (JSON), so that a small message cannot unfold into a large one. A map of one
//! entry takes hundreds of bytes once decoded but two on the wire; a message of many is refused.

/// Most values one message may decode to: two full rendezvous lists and their dead drops fit well.
pub const MAX_VALUES: usize = 16_384;
/// Decoded memory allowed per byte on the wire, beyond `BASE_ALLOWANCE`.
const BYTES_PER_WIRE_BYTE: usize = 16;
const BASE_ALLOWANCE: usize = 64 * 1024;

/// The memory decoded values take, as `serde_json::Value` holds them.
const VALUE_BYTES: usize = 32;
/// A map's first node, allocated with its first entry.
const MAP_BYTES: usize = 640;
/// Each map entry's share of the map's nodes.
const ENTRY_BYTES: usize = 64;

/// The message would decode to more than it may.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TooHeavy(String);

/// Adds up a message's values as they are decoded.
#[derive(Debug)]
pub struct Weigher {
    values: usize,
    bytes: usize,
    max_bytes: usize,
}

impl Weigher {
    /// For a message of `wire_len` bytes.
    pub fn new(wire_len: usize) -> Self {
        Self {
            values: 0,
            bytes: 0,
            max_bytes: wire_len
                .saturating_mul(BYTES_PER_WIRE_BYTE)
                .saturating_add(BASE_ALLOWANCE),
        }
    }

    pub fn value(&mut self) -> Result<(), TooHeavy> {
        self.values_n(1)
    }

    fn values_n(&mut self, count: usize) -> Result<(), TooHeavy> {
        self.values += count;
        if self.values > MAX_VALUES {
            return Err(too_many_values());
        }
        self.add(count * VALUE_BYTES)
    }

    pub fn map(&mut self) -> Result<(), TooHeavy> {
        self.add(MAP_BYTES)
    }

    pub fn entry(&mut self) -> Result<(), TooHeavy> {
        self.add(ENTRY_BYTES)
    }

    pub fn text(&mut self, len: usize) -> Result<(), TooHeavy> {
        self.add(len)
    }

    fn add(&mut self, bytes: usize) -> Result<(), TooHeavy> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.max_bytes {
            return Err(TooHeavy(format!(
                "the message would take more than {} bytes once decoded ({BYTES_PER_WIRE_BYTE} times \
                 its size, and {BASE_ALLOWANCE} more)",
                self.max_bytes
            )));
        }
        Ok(())
    }
}

fn too_many_values() -> TooHeavy {
    TooHeavy(format!("the message holds more than {MAX_VALUES} values"))
}

/// Weighs a JSON text before it is decoded, from its tokens: maps, entries (one per `:`), values and
/// string bytes. Malformed JSON weighs what it seems to; the decoder then refuses it.
pub fn weigh_json(bytes: &[u8]) -> Result<Weigher, TooHeavy> {
    let mut weigher = Weigher::new(bytes.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut strings = 0usize;
    let mut entries = 0usize;
    let mut scalars_and_containers = 0usize;
    // The last byte outside strings that was not whitespace: a value starts after `[`, `,` or `:`.
    let mut previous = b'[';
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            weigher.text(1)?;
            continue;
        }
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b'"' => {
                in_string = true;
                strings += 1;
            }
            b'{' => {
                weigher.map()?;
                scalars_and_containers += 1;
            }
            b'[' => scalars_and_containers += 1,
            b':' => {
                weigher.entry()?;
                entries += 1;
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' if matches!(previous, b'[' | b',' | b':') => {
                scalars_and_containers += 1;
            }
            _ => {}
        }
        previous = byte;
        // Keys are strings but not values.
        if scalars_and_containers + strings.saturating_sub(entries) > MAX_VALUES {
            return Err(too_many_values());
        }
    }
    weigher.values_n(scalars_and_containers + strings.saturating_sub(entries))?;
    Ok(weigher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_messages_weigh_little() {
        let points: Vec<String> = (0..1000).map(|i| format!("\"day_{i:022}\"")).collect();
        let registration = format!(
            r#"{{"type":"register_rendezvous","peerId":"p","dailyPoints":[{0}],"hourlyTokens":[{0}]}}"#,
            points.join(",")
        );
        weigh_json(registration.as_bytes()).unwrap();
        let offer = format!(
            r#"{{"type":"offer","target":"ABC234","payload":{{"sdp":"{}"}}}}"#,
            "v=0\\r\\n".repeat(10_000)
        );
        weigh_json(offer.as_bytes()).unwrap();
    }

    #[test]
    fn many_small_maps_are_too_heavy() {
        let maps = vec![r#"{"a":0}"#; 2000].join(",");
        let message = format!(r#"{{"type":"offer","target":"ABC234","payload":[{maps}]}}"#);
        let err = weigh_json(message.as_bytes()).unwrap_err();
        assert!(err.0.contains("decoded"), "{err}");
    }

    #[test]
    fn too_many_values_are_refused_whatever_their_size() {
        let zeros = vec!["0"; MAX_VALUES + 1].join(",");
        let message = format!(r#"{{"type":"offer","payload":[{zeros}]}}"#);
        let err = weigh_json(message.as_bytes()).unwrap_err();
        assert!(err.0.contains("values"), "{err}");
    }

    #[test]
    fn values_are_counted_from_tokens_outside_strings() {
        let message = r#"{"type":"x","list":[1,-2.5e3,true,null,{"k":"{[:,1\"{{"}]}"#;
        let weigher = weigh_json(message.as_bytes()).unwrap();
        // The outer map, "x", the list, its five items, and "{[:,1\"{{".
        assert_eq!(weigher.values, 9);
    }
}
