//! Reading CBOR into the JSON data model, item by item with `ciborium-ll`, so that every kind of CBOR
//! item is decided on explicitly: JSON's types pass; byte strings, tags, `undefined` and other simple
//! values, non-text keys, non-finite floats and integers beyond 64 bits are outside the model.
//!
//! Items outside the model are read to their end and replaced by null, and the first one is reported, so
//! that the rest of the message (its `type`, its `requestId`) can still be read for the error reply.

use ciborium_ll::{Decoder, Header, simple};
use serde_json::{Map, Number, Value};

use super::weight::{TooHeavy, Weigher};

/// Nesting deeper than this is refused as malformed, like serde_json's default limit for JSON.
const MAX_DEPTH: usize = 128;
/// Bytes of text copied per step; a declared length is never trusted for an allocation.
const TEXT_CHUNK: usize = 4096;

/// A CBOR map read into the JSON data model.
#[derive(Debug)]
pub struct CborMap {
    pub fields: Map<String, Value>,
    /// The first item outside the JSON data model, as `field: reason`.
    pub outside_model: Option<String>,
}

/// Why bytes did not make a CBOR map.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// They are not one well-formed CBOR map.
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    TooHeavy(#[from] TooHeavy),
}

fn malformed_text(text: impl Into<String>) -> CborError {
    CborError::Malformed(text.into())
}

pub fn read_map(bytes: &[u8]) -> Result<CborMap, CborError> {
    let mut reader = Reader {
        decoder: Decoder::from(bytes),
        field: String::new(),
        outside_model: None,
        weigher: Weigher::new(bytes.len()),
        wire_len: bytes.len(),
    };
    let mut header = reader.pull()?;
    if let Header::Tag(_) = header {
        reader.outside("tags are not allowed");
        header = reader.pull()?;
    }
    let Header::Map(len) = header else {
        return Err(malformed_text("a message must be a map"));
    };
    let fields = reader.map_entries(len, 1, true)?;
    if reader.decoder.offset() != bytes.len() {
        return Err(malformed_text("trailing bytes after the CBOR message"));
    }
    Ok(CborMap {
        fields,
        outside_model: reader.outside_model,
    })
}

struct Reader<'a> {
    decoder: Decoder<&'a [u8]>,
    /// The top-level field being read, to name it in the report.
    field: String,
    outside_model: Option<String>,
    weigher: Weigher,
    wire_len: usize,
}

impl Reader<'_> {
    fn bytes_left(&mut self) -> usize {
        self.wire_len.saturating_sub(self.decoder.offset())
    }

    fn pull(&mut self) -> Result<Header, CborError> {
        self.decoder.pull().map_err(|err| malformed(&err))
    }

    fn outside(&mut self, reason: &str) {
        if self.outside_model.is_none() {
            self.outside_model = Some(if self.field.is_empty() {
                reason.to_owned()
            } else {
                format!("{}: {reason}", self.field)
            });
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, CborError> {
        let header = self.pull()?;
        self.value_after(header, depth)
    }

    /// Every item, however it was reached, passes here: the one place the nesting depth and the values'
    /// weight are checked.
    fn value_after(&mut self, header: Header, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH {
            return Err(malformed_text(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        self.weigher.value()?;
        Ok(match header {
            Header::Positive(n) => Value::from(n),
            Header::Negative(n) => match i64::try_from(n) {
                // CBOR stores -1 - value.
                Ok(n) => Value::from(-1 - n),
                Err(_) => {
                    self.outside("integers must fit in 64 bits");
                    Value::Null
                }
            },
            Header::Float(float) => match Number::from_f64(float) {
                Some(number) => Value::Number(number),
                None => {
                    self.outside("non-finite numbers are not allowed");
                    Value::Null
                }
            },
            Header::Simple(simple::FALSE) => Value::Bool(false),
            Header::Simple(simple::TRUE) => Value::Bool(true),
            Header::Simple(simple::NULL) => Value::Null,
            Header::Simple(_) => {
                self.outside("simple values other than false, true and null are not allowed");
                Value::Null
            }
            Header::Tag(_) => {
                self.outside("tags are not allowed");
                self.value(depth + 1)?;
                Value::Null
            }
            Header::Bytes(len) => {
                self.skip_bytes(len)?;
                self.outside("byte strings are not allowed");
                Value::Null
            }
            Header::Text(len) => Value::String(self.text(len)?),
            Header::Array(len) => {
                // Never more room than the bytes left could fill.
                let left = self.bytes_left();
                let mut items = Vec::with_capacity(len.unwrap_or(0).min(1024).min(left));
                match len {
                    Some(len) => {
                        for _ in 0..len {
                            items.push(self.value(depth + 1)?);
                        }
                    }
                    None => loop {
                        match self.pull()? {
                            Header::Break => break,
                            header => items.push(self.value_after(header, depth + 1)?),
                        }
                    },
                }
                Value::Array(items)
            }
            Header::Map(len) => Value::Object(self.map_entries(len, depth + 1, false)?),
            Header::Break => return Err(malformed_text("unexpected break")),
        })
    }

    fn map_entries(
        &mut self,
        len: Option<usize>,
        depth: usize,
        top_level: bool,
    ) -> Result<Map<String, Value>, CborError> {
        let mut map = Map::new();
        let mut remaining = len;
        loop {
            let key_header = match remaining {
                Some(0) => break,
                Some(n) => {
                    remaining = Some(n - 1);
                    self.pull()?
                }
                None => match self.pull()? {
                    Header::Break => break,
                    header => header,
                },
            };
            let key = match key_header {
                Header::Text(len) => Some(self.text(len)?),
                other => {
                    self.value_after(other, depth)?;
                    self.outside("map keys must be text");
                    None
                }
            };
            if top_level && let Some(key) = &key {
                self.field.clone_from(key);
            }
            let value = self.value(depth)?;
            if let Some(key) = key {
                if map.is_empty() {
                    self.weigher.map()?;
                }
                self.weigher.entry()?;
                map.insert(key, value);
            }
        }
        if top_level {
            self.field.clear();
        }
        Ok(map)
    }

    fn text(&mut self, len: Option<usize>) -> Result<String, CborError> {
        let mut text = String::new();
        let mut buffer = [0u8; TEXT_CHUNK];
        let mut segments = self.decoder.text(len);
        while let Some(mut segment) = segments.pull().map_err(|err| malformed(&err))? {
            while let Some(chunk) = segment.pull(&mut buffer).map_err(|err| malformed(&err))? {
                self.weigher.text(chunk.len())?;
                text.push_str(chunk);
            }
        }
        Ok(text)
    }

    fn skip_bytes(&mut self, len: Option<usize>) -> Result<(), CborError> {
        let mut buffer = [0u8; TEXT_CHUNK];
        let mut segments = self.decoder.bytes(len);
        while let Some(mut segment) = segments.pull().map_err(|err| malformed(&err))? {
            while segment
                .pull(&mut buffer)
                .map_err(|err| malformed(&err))?
                .is_some()
            {}
        }
        Ok(())
    }
}

fn malformed<E: std::fmt::Debug>(err: &ciborium_ll::Error<E>) -> CborError {
    match err {
        ciborium_ll::Error::Io(_) => malformed_text("not CBOR: truncated"),
        ciborium_ll::Error::Syntax(offset) => {
            malformed_text(format!("not CBOR: invalid item at byte {offset}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outside(bytes: &[u8]) -> Option<String> {
        read_map(bytes).unwrap().outside_model
    }

    #[test]
    fn json_types_pass() {
        // {"a": [1, -2, 1.5, true, false, null, "x"], "b": {"c": 18446744073709551615}}
        let value = json!({"a": [1, -2, 1.5, true, false, null, "x"], "b": {"c": u64::MAX}});
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).unwrap();
        let map = read_map(&bytes).unwrap();
        assert_eq!(Value::Object(map.fields), value);
        assert_eq!(map.outside_model, None);
    }

    #[test]
    fn indefinite_lengths_and_segmented_text_are_read() {
        // {_ "k": [_ 1, 2], "t": (_ "ab", "c")}
        let bytes = [
            0xbf, 0x61, b'k', 0x9f, 0x01, 0x02, 0xff, 0x61, b't', 0x7f, 0x62, b'a', b'b', 0x61,
            b'c', 0xff, 0xff,
        ];
        let map = read_map(&bytes).unwrap();
        assert_eq!(Value::Object(map.fields), json!({"k": [1, 2], "t": "abc"}));
    }

    #[test]
    fn items_outside_the_json_model_are_reported_with_their_field() {
        // {"x": h'01'}, {"x": 1(0)}, {"x": undefined}, {"x": simple(16)}, {"x": NaN}, {1: 2}, {"x": -2^64}
        assert_eq!(
            outside(&[0xa1, 0x61, b'x', 0x41, 0x01]).as_deref(),
            Some("x: byte strings are not allowed")
        );
        assert!(
            outside(&[0xa1, 0x61, b'x', 0xc1, 0x00])
                .unwrap()
                .contains("tags")
        );
        assert!(
            outside(&[0xa1, 0x61, b'x', 0xf7])
                .unwrap()
                .contains("simple")
        );
        assert!(
            outside(&[0xa1, 0x61, b'x', 0xf0])
                .unwrap()
                .contains("simple")
        );
        assert!(
            outside(&[0xa1, 0x61, b'x', 0xf9, 0x7e, 0x00])
                .unwrap()
                .contains("non-finite")
        );
        assert!(
            outside(&[0xa1, 0x01, 0x02])
                .unwrap()
                .contains("keys must be text")
        );
        let min = [
            0xa1, 0x61, b'x', 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(outside(&min).unwrap().contains("64 bits"));
        // A tag around the whole message.
        assert!(outside(&[0xd9, 0xd9, 0xf7, 0xa0]).unwrap().contains("tags"));
    }

    #[test]
    fn the_rest_of_the_map_is_still_read_after_an_item_outside_the_model() {
        // {"x": h'0102', "requestId": "r"}
        let bytes = [
            0xa2, 0x61, b'x', 0x42, 1, 2, 0x69, b'r', b'e', b'q', b'u', b'e', b's', b't', b'I',
            b'd', 0x61, b'r',
        ];
        let map = read_map(&bytes).unwrap();
        assert_eq!(map.fields["requestId"], "r");
        assert_eq!(map.fields["x"], Value::Null);
    }

    #[test]
    fn broken_cbor_is_malformed() {
        for bytes in [
            &[][..],
            &[0xa1, 0x61],                               // truncated
            &[0xa1, 0x61, b'x', 0x63, 0xff, 0xfe, 0xfd], // invalid UTF-8
            &[0x83, 0x01, 0x02, 0x03],                   // not a map
            &[0xa0, 0x00],                               // trailing bytes
            &[0xa1, 0x61, b'x', 0xff],                   // stray break
            &[
                0xa1, 0x61, b'x', 0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ], // huge text
        ] {
            assert!(read_map(bytes).is_err(), "{bytes:?}");
        }
        // Nesting through definite arrays, indefinite arrays, maps and non-text keys alike.
        for opener in [&[0x81][..], &[0x9f], &[0xbf, 0x61, b'k'], &[0xa1]] {
            let mut deep = vec![0xa1, 0x61, b'x'];
            for _ in 0..100_000 {
                deep.extend_from_slice(opener);
            }
            assert!(read_map(&deep).is_err(), "{opener:?}");
        }
    }

    #[test]
    fn one_entry_maps_are_refused_before_they_take_memory() {
        // {"p": [{"": 0}, {"": 0}, ...]}: 3 bytes on the wire, hundreds once decoded, each.
        let mut bytes = vec![0xa1, 0x61, b'p', 0x9f];
        for _ in 0..4000 {
            bytes.extend_from_slice(&[0xa1, 0x60, 0x00]);
        }
        bytes.push(0xff);
        assert!(matches!(read_map(&bytes), Err(CborError::TooHeavy(_))));
    }
}
