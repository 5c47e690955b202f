//! Watches the bytes a WebSocket client sends for the first frame of each data message, so that a message
//! refused from its frame header (one over the size limit) can still be answered in its own encoding:
//! text frames carry JSON, binary frames CBOR. Only frame headers are read here (RFC 6455, section 5.2);
//! the WebSocket layer behind it parses and checks everything.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::protocol::Encoding;

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;

/// A client stream that remembers the kind of the latest data message whose header went through it.
#[derive(Debug)]
pub struct MessageKindTracker<S> {
    inner: S,
    header: [u8; MAX_HEADER],
    header_len: usize,
    payload_left: u64,
    latest: Option<Encoding>,
}

impl<S> MessageKindTracker<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            header: [0; MAX_HEADER],
            header_len: 0,
            payload_left: 0,
            latest: None,
        }
    }

    /// The encoding of the latest data message the client started, if any.
    pub fn latest_message_encoding(&self) -> Option<Encoding> {
        self.latest
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skipped = bytes
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                self.payload_left -= skipped as u64;
                bytes = &bytes[skipped..];
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if let Some(payload_len) = self.complete_header() {
                match self.header[0] & 0x0f {
                    OPCODE_TEXT => self.latest = Some(Encoding::Json),
                    OPCODE_BINARY => self.latest = Some(Encoding::Cbor),
                    // Continuations keep their message's kind; control frames carry none.
                    _ => {}
                }
                self.header_len = 0;
                self.payload_left = payload_len;
            }
        }
    }

    /// The payload length, once the header read so far is complete.
    fn complete_header(&self) -> Option<u64> {
        if self.header_len < 2 {
            return None;
        }
        let mask_len = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        let (length_len, short_len) = match self.header[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            len => (0, Some(u64::from(len))),
        };
        if self.header_len < 2 + length_len + mask_len {
            return None;
        }
        Some(short_len.unwrap_or_else(|| {
            self.header[2..2 + length_len]
                .iter()
                .fold(0u64, |len, &byte| (len << 8) | u64::from(byte))
        }))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MessageKindTracker<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let this = &mut *self;
            this.observe(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MessageKindTracker<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header for `opcode` with `len` payload bytes, followed by the payload.
    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut bytes = vec![(u8::from(fin) << 7) | opcode];
        match len {
            0..=125 => bytes.push(0x80 | len as u8),
            126..=0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend((len as u16).to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend((len as u64).to_be_bytes());
            }
        }
        bytes.extend([1, 2, 3, 4]);
        bytes.extend(std::iter::repeat_n(0xaa, len));
        bytes
    }

    fn tracker() -> MessageKindTracker<()> {
        MessageKindTracker::new(())
    }

    #[test]
    fn data_frames_of_every_length_form_set_the_kind() {
        for len in [0, 5, 125, 126, 300, 70_000] {
            let mut tracker = tracker();
            tracker.observe(&frame(true, OPCODE_BINARY, len));
            assert_eq!(
                tracker.latest_message_encoding(),
                Some(Encoding::Cbor),
                "{len}"
            );
            tracker.observe(&frame(true, OPCODE_TEXT, len));
            assert_eq!(
                tracker.latest_message_encoding(),
                Some(Encoding::Json),
                "{len}"
            );
        }
    }

    #[test]
    fn control_frames_and_continuations_keep_the_kind() {
        let mut tracker = tracker();
        let mut stream = frame(false, OPCODE_BINARY, 10);
        stream.extend(frame(true, 0x9, 4)); // ping between fragments
        stream.extend(frame(true, 0x0, 10)); // continuation
        tracker.observe(&stream);
        assert_eq!(tracker.latest_message_encoding(), Some(Encoding::Cbor));
    }

    #[test]
    fn headers_split_across_reads_are_followed() {
        let mut stream = frame(true, OPCODE_TEXT, 300);
        stream.extend(frame(true, OPCODE_BINARY, 70_000));
        stream.extend(frame(true, OPCODE_TEXT, 1));
        let mut tracker = tracker();
        let mut seen = Vec::new();
        for chunk in stream.chunks(3) {
            tracker.observe(chunk);
            seen.push(tracker.latest_message_encoding());
        }
        seen.dedup();
        assert_eq!(
            seen,
            [
                None,
                Some(Encoding::Json),
                Some(Encoding::Cbor),
                Some(Encoding::Json)
            ]
        );
    }

    #[test]
    fn an_oversized_header_is_seen_before_its_payload() {
        let mut tracker = tracker();
        tracker.observe(&frame(true, OPCODE_TEXT, 3));
        // Only the header of a huge binary frame has arrived.
        tracker.observe(&[0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9]);
        assert_eq!(tracker.latest_message_encoding(), Some(Encoding::Cbor));
    }
}
